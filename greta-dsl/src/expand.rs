//! Expansion of a kernel or device function into its module: embedded AST, definition
//! accessor, typed launch function, and compile-time arity checks of device calls.

use crate::parse::Converter;
use greta_codegen::ast::{FnAst, FnKind, GenericAst, TypeAst};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// What the attribute declares.
pub enum Kind {
    Kernel,
    Device,
}

/// Attribute arguments.
struct Args {
    block: Option<syn::Expr>,
    min_waves: Option<u32>,
    targets: Vec<(String, Span)>,
}

fn parse_args(attr: TokenStream, kind: &Kind) -> syn::Result<Args> {
    let mut args = Args {
        block: None,
        min_waves: None,
        targets: Vec::new(),
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("block") {
            if matches!(kind, Kind::Device) {
                return Err(
                    meta.error("device functions run with their caller's block; remove `block`")
                );
            }
            args.block = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("min_waves") {
            if matches!(kind, Kind::Device) {
                return Err(meta.error(
                    "device functions run with their caller's occupancy; remove `min_waves`",
                ));
            }
            let n: syn::LitInt = meta.value()?.parse()?;
            match n.base10_parse::<u32>() {
                Ok(w @ 1..=8) => {
                    args.min_waves = Some(w);
                    Ok(())
                }
                _ => Err(syn::Error::new(
                    n.span(),
                    "`min_waves` is the waves per SIMD to keep resident: 1 to 8",
                )),
            }
        } else if meta.path.is_ident("target") {
            let s: syn::LitStr = meta.value()?.parse()?;
            args.targets.push((s.value(), s.span()));
            Ok(())
        } else if meta.path.is_ident("targets") {
            let content;
            let value = meta.value()?;
            syn::bracketed!(content in value);
            let list = content.parse_terminated(|p| p.parse::<syn::LitStr>(), syn::Token![,])?;
            args.targets
                .extend(list.into_iter().map(|s| (s.value(), s.span())));
            Ok(())
        } else {
            Err(meta.error(
                "unknown argument; expected `block = N`, `min_waves = N`, `target = \"...\"` or `targets = [...]`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(args)
}

/// Expands the attribute; on any error, emits the errors plus the module skeleton so the
/// rest of the crate still type-checks.
pub fn expand(attr: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors: Vec<syn::Error> = Vec::new();
    let args = parse_args(attr, &kind).unwrap_or_else(|e| {
        errors.push(e);
        Args {
            block: None,
            min_waves: None,
            targets: Vec::new(),
        }
    });
    let mut cv = Converter::new();
    let targets = args
        .targets
        .iter()
        .map(|(n, s)| (n.clone(), cv.span(*s)))
        .collect();
    let fn_kind = match kind {
        Kind::Kernel => {
            let block = match &args.block {
                Some(b) => match cv.expr(b) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                },
                None => None,
            };
            FnKind::Kernel {
                block,
                min_waves: args.min_waves,
            }
        }
        Kind::Device => FnKind::Device,
    };
    let ast = match cv.function(&func, fn_kind, targets) {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let mut arity_checks = Vec::new();
    let mut externs = Vec::new();
    let mut callees: Vec<String> = Vec::new();
    if let (Some(ast), true) = (&ast, errors.is_empty()) {
        let report = greta_codegen::check(ast);
        for (name, span) in &report.externs {
            let span = cv
                .spans
                .get(span.id as usize)
                .copied()
                .unwrap_or_else(Span::call_site);
            let id = format_ident!("{}", name, span = span);
            externs.push(quote_spanned! {span=>
                (#name, ::greta::codegen::ast::ExternValue::extern_const(#id))
            });
        }
        for d in report.diagnostics {
            let span = cv
                .spans
                .get(d.span.id as usize)
                .copied()
                .unwrap_or_else(Span::call_site);
            errors.push(syn::Error::new(span, d.message));
        }
        for call in report.device_calls {
            let span = cv
                .spans
                .get(call.span.id as usize)
                .copied()
                .unwrap_or_else(Span::call_site);
            if !callees.contains(&call.name) {
                callees.push(call.name.clone());
            }
            let module = format_ident!("{}", call.name, span = span);
            let n = call.args;
            let msg = format!(
                "wrong number of arguments in this call of device function `{}`",
                call.name
            );
            arity_checks.push(quote_spanned! {span=>
                const _: () = ::core::assert!(#module::ARITY == #n, #msg);
            });
        }
    }
    let error_tokens: TokenStream = errors.iter().map(syn::Error::to_compile_error).collect();
    let body = match (&ast, errors.is_empty()) {
        (Some(ast), true) => Some(greta_codegen::ast::to_json(ast)),
        _ => None,
    };
    let module = item_module(
        &kind,
        &func,
        ast.as_ref(),
        body,
        &callees,
        &arity_checks,
        &externs,
    );
    quote! { #error_tokens #module }
}

fn definition_body(
    kind: TokenStream,
    json: Option<String>,
    callees: &[String],
    externs: &[TokenStream],
    name: &str,
) -> TokenStream {
    // Callees resolve by rustc at the call sites, so a missing device function is a Rust error.
    let callees = callees.iter().map(|n| {
        let id = format_ident!("{}", n);
        quote! { #id::device_def }
    });
    match json {
        Some(json) => quote! {
            static DEF: ::std::sync::OnceLock<::greta::codegen::#kind> = ::std::sync::OnceLock::new();
            DEF.get_or_init(|| {
                ::greta::codegen::#kind::from_macro(#json, ::core::file!(), &[#(#callees),*], &[#(#externs),*])
            })
        },
        None => {
            let msg = format!("`{name}` did not compile");
            quote! { ::core::panic!(#msg) }
        }
    }
}

/// The module a `#[kernel]` or `#[device]` function expands to.
fn item_module(
    kind: &Kind,
    func: &syn::ItemFn,
    ast: Option<&FnAst>,
    json: Option<String>,
    callees: &[String],
    arity: &[TokenStream],
    externs: &[TokenStream],
) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let docs = func.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let def_type = match kind {
        Kind::Kernel => quote!(KernelDef),
        Kind::Device => quote!(DeviceDef),
    };
    let def = definition_body(def_type, json, callees, externs, &name.to_string());
    let items = match kind {
        Kind::Kernel => {
            let launch = ast.map(launch_fn).unwrap_or_default();
            let spec = ast.map(spec_struct).unwrap_or_default();
            quote! {
                /// The kernel's definition: its DSL source and the device functions it calls.
                pub fn definition() -> &'static ::greta::codegen::KernelDef {
                    #def
                }
                #spec
                #launch
            }
        }
        Kind::Device => {
            let n = func.sig.inputs.len();
            quote! {
                /// Number of parameters, checked at every call site.
                pub const ARITY: usize = #n;
                /// The device function's definition.
                pub fn device_def() -> &'static ::greta::codegen::DeviceDef {
                    #def
                }
            }
        }
    };
    quote! {
        #(#docs)*
        #[allow(non_snake_case, dead_code)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;
            #items
            #(#arity)*
        }
    }
}

/// The host type for a DSL scalar type name (generic names pass through).
fn host_type(name: &str) -> TokenStream {
    match name {
        "f16" => quote!(::greta::half::f16),
        "bf16" => quote!(::greta::half::bf16),
        other => {
            let id = format_ident!("{}", other);
            quote!(#id)
        }
    }
}

/// `pub struct Spec`: one named field per generic parameter (its name lower-cased), so a
/// specialisation chosen at run time is checked by rustc, field by field.
fn spec_struct(ast: &FnAst) -> TokenStream {
    let mut fields = Vec::new();
    let mut values = Vec::new();
    for g in &ast.generics {
        match g {
            GenericAst::Const { name, ty, .. } => {
                let field = format_ident!("{}", name.to_lowercase());
                let ty = format_ident!("{}", ty);
                let doc = format!("`const {name}: {ty}`.");
                fields.push(quote!(#[doc = #doc] pub #field: #ty));
                values.push(quote!(::greta::codegen::SpecValue::Const(self.#field as i128)));
            }
            GenericAst::Type { name, .. } => {
                let field = format_ident!("{}", name.to_lowercase());
                let doc = format!("The element type `{name}`.");
                fields.push(quote!(#[doc = #doc] pub #field: ::greta::codegen::Scalar));
                values.push(quote!(::greta::codegen::SpecValue::Type(self.#field)));
            }
        }
    }
    let doc = format!(
        "A specialisation of `{}`, one field per generic parameter.",
        ast.name
    );
    quote! {
        #[doc = #doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct Spec {
            #(#fields),*
        }

        impl Spec {
            /// The values in the kernel's generic order, as `specialise` and
            /// `Device::launch` take them.
            pub fn values(&self) -> ::std::vec::Vec<::greta::codegen::SpecValue> {
                ::std::vec![#(#values),*]
            }
        }
    }
}

/// `pub fn launch<generics>(device, grid, params...)`.
fn launch_fn(ast: &FnAst) -> TokenStream {
    let mut generic_decls = Vec::new();
    let mut spec = Vec::new();
    for g in &ast.generics {
        match g {
            GenericAst::Const { name, ty, .. } => {
                let id = format_ident!("{}", name);
                let ty = format_ident!("{}", ty);
                generic_decls.push(quote!(const #id: #ty));
                spec.push(quote!(::greta::codegen::SpecValue::Const(#id as i128)));
            }
            GenericAst::Type { name, .. } => {
                let id = format_ident!("{}", name);
                generic_decls.push(quote!(#id: ::greta::runtime::Element));
                spec.push(quote!(::greta::codegen::SpecValue::Type(<#id as ::greta::runtime::Element>::SCALAR)));
            }
        }
    }
    let mut params = Vec::new();
    let mut args = Vec::new();
    for p in &ast.params {
        let id = format_ident!("{}", p.name);
        match &p.ty {
            TypeAst::Slice { elem, mutable, .. } => {
                let TypeAst::Path { name, .. } = &**elem else {
                    continue;
                };
                let t = host_type(name);
                if *mutable {
                    params.push(quote!(#id: &mut ::greta::runtime::Buffer<#t>));
                } else {
                    params.push(quote!(#id: &::greta::runtime::Buffer<#t>));
                }
            }
            TypeAst::Path { name, .. } => {
                let t = host_type(name);
                params.push(quote!(#id: #t));
            }
            TypeAst::Array { .. } => continue,
        }
        args.push(quote!(::greta::runtime::Arg::from(#id)));
    }
    let doc = format!("Launches `{}` on `device` over `grid` blocks.", ast.name);
    quote! {
        #[doc = #doc]
        #[allow(clippy::too_many_arguments)]
        pub fn launch<#(#generic_decls),*>(
            device: &::greta::runtime::Device,
            grid: impl ::core::convert::Into<::greta::runtime::Grid>,
            #(#params),*
        ) -> ::core::result::Result<(), ::greta::runtime::Error> {
            device.launch(definition(), &[#(#spec),*], grid.into(), &[#(#args),*])
        }
    }
}
