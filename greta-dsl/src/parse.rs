//! Conversion of the user's Rust syntax (syn) into the kernel AST. Everything outside the
//! DSL's subset is rejected here with an error at the offending token saying what to write
//! instead.

use greta_codegen::ast::{
    BlockAst, ExprAst, ExprKindAst, FnAst, FnKind, GenericArgAst, GenericAst, ParamAst, StmtAst,
    TypeAst,
};
use greta_codegen::diag::Span;
use greta_codegen::ops::{BinOp, UnOp};
use proc_macro2::Span as PSpan;
use syn::spanned::Spanned;

/// Converts syntax, recording the real span behind every AST span id.
pub struct Converter {
    pub spans: Vec<PSpan>,
}

type R<T> = Result<T, syn::Error>;

fn err<T>(tokens: impl Spanned, msg: impl std::fmt::Display) -> R<T> {
    Err(syn::Error::new(tokens.span(), msg))
}

impl Converter {
    pub fn new() -> Self {
        Converter { spans: Vec::new() }
    }

    /// Records a span; its position comes from the compiler's source map.
    pub fn span(&mut self, s: PSpan) -> Span {
        let ps = s.unwrap();
        self.spans.push(s);
        Span {
            line: ps.line() as u32,
            col: ps.column() as u32,
            id: self.spans.len() as u32 - 1,
        }
    }

    fn sp(&mut self, t: &impl Spanned) -> Span {
        self.span(t.span())
    }

    /// Converts a function item.
    pub fn function(
        &mut self,
        f: &syn::ItemFn,
        kind: FnKind,
        targets: Vec<(String, Span)>,
    ) -> R<FnAst> {
        let sig = &f.sig;
        if let Some(a) = &sig.asyncness {
            return err(a, "kernels cannot be `async`");
        }
        if let Some(v) = &sig.variadic {
            return err(v, "kernels cannot be variadic");
        }
        let mut generics = Vec::new();
        for g in &sig.generics.params {
            generics.push(match g {
                syn::GenericParam::Const(c) => GenericAst::Const {
                    name: c.ident.to_string(),
                    ty: type_ident(&c.ty).ok_or_else(|| {
                        syn::Error::new(
                            c.ty.span(),
                            "const parameters must have an integer type such as `u32`",
                        )
                    })?,
                    span: self.sp(&c.ident),
                },
                syn::GenericParam::Type(t) => GenericAst::Type {
                    name: t.ident.to_string(),
                    span: self.sp(&t.ident),
                },
                syn::GenericParam::Lifetime(l) => {
                    return err(
                        l,
                        "kernels take no lifetime parameters; write `&[T]` without a lifetime",
                    )
                }
            });
        }
        if let Some(w) = &sig.generics.where_clause {
            return err(
                w,
                "`where` clauses are not supported; kernels need no trait bounds",
            );
        }
        let mut params = Vec::new();
        for input in &sig.inputs {
            let syn::FnArg::Typed(pt) = input else {
                return err(input, "kernels take no `self`");
            };
            let syn::Pat::Ident(pi) = &*pt.pat else {
                return err(&pt.pat, "parameters must be plain names, e.g. `x: &[f32]`");
            };
            if pi.mutability.is_some() {
                return err(
                    pi,
                    "parameters cannot be `mut`; copy into a local: `let mut n = n;`",
                );
            }
            params.push(ParamAst {
                name: pi.ident.to_string(),
                ty: self.ty(&pt.ty, true)?,
                span: self.sp(&pi.ident),
            });
        }
        let ret = match &sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, t) => Some(self.ty(t, false)?),
        };
        let body = self.block(&f.block)?;
        Ok(FnAst {
            name: sig.ident.to_string(),
            file: String::new(),
            kind,
            targets,
            generics,
            params,
            ret,
            body,
            span: self.sp(&sig.ident),
            externs: Vec::new(),
        })
    }

    fn ty(&mut self, t: &syn::Type, param: bool) -> R<TypeAst> {
        match t {
            syn::Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
                let seg = &p.path.segments[0];
                let ident = seg.ident.to_string();
                let name = match &seg.arguments {
                    syn::PathArguments::None => ident,
                    // Fragment types name their element type: `FragA<f16>`, `FragC<f32>`.
                    syn::PathArguments::AngleBracketed(a)
                        if matches!(ident.as_str(), "FragA" | "FragB" | "FragC") && a.args.len() == 1 =>
                    {
                        match &a.args[0] {
                            syn::GenericArgument::Type(syn::Type::Path(e))
                                if e.qself.is_none() && e.path.segments.len() == 1 && e.path.segments[0].arguments.is_none() =>
                            {
                                format!("{ident}<{}>", e.path.segments[0].ident)
                            }
                            other => return err(other, "write the fragment's element type: `FragA<f16>`"),
                        }
                    }
                    other => return err(other, "kernel types take no generic arguments (fragments take their element type: `FragC<f32>`)"),
                };
                Ok(TypeAst::Path {
                    name,
                    span: self.sp(t),
                })
            }
            syn::Type::Reference(r) => {
                if !param {
                    return err(t, "references are allowed only as buffer parameters `&[T]` / `&mut [T]`");
                }
                if r.lifetime.is_some() {
                    return err(&r.lifetime, "write buffer parameters without a lifetime: `&[T]`");
                }
                let syn::Type::Slice(s) = &*r.elem else {
                    return err(&r.elem, "buffer parameters are slices: `&[T]` or `&mut [T]`");
                };
                Ok(TypeAst::Slice {
                    elem: Box::new(self.ty(&s.elem, false)?),
                    mutable: r.mutability.is_some(),
                    span: self.sp(t),
                })
            }
            syn::Type::Array(a) => Ok(TypeAst::Array {
                elem: Box::new(self.ty(&a.elem, false)?),
                len: Box::new(self.expr(&a.len)?),
                span: self.sp(t),
            }),
            syn::Type::Paren(p) => self.ty(&p.elem, param),
            syn::Type::Slice(_) => err(t, "a bare slice is not a type here; buffers are `&[T]` parameters"),
            syn::Type::Tuple(tt) if tt.elems.is_empty() => err(t, "write no return type instead of `()`"),
            _ => err(t, "unsupported type; the kernel types are scalars (f32, u32, ...), vectors (f16x8, u32x4, ...), arrays `[T; N]` and buffer parameters `&[T]`"),
        }
    }

    fn block(&mut self, b: &syn::Block) -> R<BlockAst> {
        let mut stmts = Vec::new();
        let mut tail = None;
        let n = b.stmts.len();
        for (i, s) in b.stmts.iter().enumerate() {
            match s {
                syn::Stmt::Local(l) => stmts.push(self.local(l)?),
                syn::Stmt::Expr(e, semi) => {
                    let e = self.expr(e)?;
                    if semi.is_none() && i + 1 == n {
                        tail = Some(Box::new(e));
                    } else {
                        stmts.push(StmtAst::Expr(e));
                    }
                }
                syn::Stmt::Item(syn::Item::Const(c)) => stmts.push(StmtAst::Const {
                    name: c.ident.to_string(),
                    ty: self.ty(&c.ty, false)?,
                    value: self.expr(&c.expr)?,
                    span: self.sp(&c.ident),
                }),
                syn::Stmt::Item(item) => {
                    return err(item, "items (fn, struct, use, ...) cannot be declared inside a kernel; write helpers as `#[greta::device]` functions (`const` items are allowed)")
                }
                syn::Stmt::Macro(m) => {
                    return err(&m.mac.path, "macros are not supported in kernels (except `shared!` in a `let`)")
                }
            }
        }
        Ok(BlockAst {
            stmts,
            tail,
            span: self.sp(b),
        })
    }

    fn local(&mut self, l: &syn::Local) -> R<StmtAst> {
        let (pat, ty) = match &l.pat {
            syn::Pat::Type(pt) => (&*pt.pat, Some(self.ty(&pt.ty, false)?)),
            p => (p, None),
        };
        let syn::Pat::Ident(pi) = pat else {
            return err(pat, "bind one name per `let` (no tuple or struct patterns)");
        };
        if let Some(init) = &l.init {
            if let Some((_, d)) = &init.diverge {
                return err(d, "`let ... else` is not supported in kernels");
            }
        }
        let init = match &l.init {
            Some(i) => Some(self.expr(&i.expr)?),
            None => None,
        };
        Ok(StmtAst::Let {
            name: pi.ident.to_string(),
            mutable: pi.mutability.is_some(),
            ty,
            init,
            span: self.sp(&pi.ident),
        })
    }

    fn boxed(&mut self, e: &syn::Expr) -> R<Box<ExprAst>> {
        Ok(Box::new(self.expr(e)?))
    }

    /// Converts an expression.
    pub fn expr(&mut self, e: &syn::Expr) -> R<ExprAst> {
        let span = self.sp(e);
        let kind = match e {
            syn::Expr::Lit(l) => self.lit(&l.lit)?,
            syn::Expr::Path(p) => {
                if p.qself.is_some() {
                    return err(e, "qualified paths are not supported");
                }
                for seg in &p.path.segments {
                    if !seg.arguments.is_none() {
                        return err(&seg.arguments, "generic arguments are only accepted on calls, e.g. `bitcast::<f16x8>(v)`");
                    }
                }
                ExprKindAst::Path(
                    p.path
                        .segments
                        .iter()
                        .map(|s| s.ident.to_string())
                        .collect(),
                )
            }
            syn::Expr::Paren(p) => return self.expr(&p.expr),
            syn::Expr::Group(g) => return self.expr(&g.expr),
            syn::Expr::Unary(u) => {
                let op = match u.op {
                    syn::UnOp::Neg(_) => UnOp::Neg,
                    syn::UnOp::Not(_) => UnOp::Not,
                    _ => return err(u.op, "pointers and references do not exist in kernels; index buffers with `x[i]`"),
                };
                ExprKindAst::Unary {
                    op,
                    expr: self.boxed(&u.expr)?,
                }
            }
            syn::Expr::Binary(b) => self.binary(b)?,
            syn::Expr::Assign(a) => ExprKindAst::Assign {
                target: self.boxed(&a.left)?,
                value: self.boxed(&a.right)?,
            },
            syn::Expr::Cast(c) => ExprKindAst::Cast {
                expr: self.boxed(&c.expr)?,
                ty: self.ty(&c.ty, false)?,
            },
            syn::Expr::Index(i) => ExprKindAst::Index {
                base: self.boxed(&i.expr)?,
                index: self.boxed(&i.index)?,
            },
            syn::Expr::Call(c) => {
                let syn::Expr::Path(p) = &*c.func else {
                    return err(&c.func, "only named functions can be called");
                };
                let mut generics = Vec::new();
                let mut path = Vec::new();
                for seg in &p.path.segments {
                    path.push(seg.ident.to_string());
                    if let syn::PathArguments::AngleBracketed(a) = &seg.arguments {
                        generics.extend(self.generic_args(a)?);
                    }
                }
                ExprKindAst::Call {
                    path,
                    generics,
                    args: c.args.iter().map(|a| self.expr(a)).collect::<R<_>>()?,
                }
            }
            syn::Expr::MethodCall(m) => {
                let generics = match &m.turbofish {
                    Some(t) => self.generic_args(t)?,
                    None => Vec::new(),
                };
                ExprKindAst::MethodCall {
                    recv: self.boxed(&m.receiver)?,
                    method: m.method.to_string(),
                    method_span: self.sp(&m.method),
                    generics,
                    args: m.args.iter().map(|a| self.expr(a)).collect::<R<_>>()?,
                }
            }
            syn::Expr::If(i) => {
                if let syn::Expr::Let(l) = &*i.cond {
                    return err(
                        l,
                        "`if let` is not supported in kernels; compare values instead",
                    );
                }
                ExprKindAst::If {
                    cond: self.boxed(&i.cond)?,
                    then: self.block(&i.then_branch)?,
                    els: match &i.else_branch {
                        Some((_, e)) => Some(self.boxed(e)?),
                        None => None,
                    },
                }
            }
            syn::Expr::Block(b) => {
                if let Some(l) = &b.label {
                    return err(l, "labels are not supported in kernels");
                }
                ExprKindAst::Block(self.block(&b.block)?)
            }
            syn::Expr::ForLoop(f) => self.for_loop(f)?,
            syn::Expr::While(w) => {
                if let Some(l) = &w.label {
                    return err(l, "loop labels are not supported in kernels");
                }
                if let syn::Expr::Let(l) = &*w.cond {
                    return err(l, "`while let` is not supported in kernels");
                }
                ExprKindAst::While {
                    cond: self.boxed(&w.cond)?,
                    body: self.block(&w.body)?,
                }
            }
            syn::Expr::Loop(l) => {
                if let Some(lb) = &l.label {
                    return err(lb, "loop labels are not supported in kernels");
                }
                ExprKindAst::Loop {
                    body: self.block(&l.body)?,
                }
            }
            syn::Expr::Break(b) => {
                if let Some(l) = &b.label {
                    return err(l, "labelled `break` is not supported in kernels");
                }
                if let Some(v) = &b.expr {
                    return err(
                        v,
                        "`break` with a value is not supported; assign a variable before breaking",
                    );
                }
                ExprKindAst::Break
            }
            syn::Expr::Continue(c) => {
                if let Some(l) = &c.label {
                    return err(l, "labelled `continue` is not supported in kernels");
                }
                ExprKindAst::Continue
            }
            syn::Expr::Return(r) => ExprKindAst::Return(match &r.expr {
                Some(v) => Some(self.boxed(v)?),
                None => None,
            }),
            syn::Expr::Repeat(r) => ExprKindAst::ArrayRepeat {
                value: self.boxed(&r.expr)?,
                len: self.boxed(&r.len)?,
            },
            syn::Expr::Array(a) => {
                ExprKindAst::ArrayList(a.elems.iter().map(|x| self.expr(x)).collect::<R<_>>()?)
            }
            syn::Expr::Macro(m) => self.shared_macro(&m.mac)?,
            syn::Expr::Range(_) => return err(e, "ranges are only allowed as `for` loop bounds"),
            syn::Expr::Closure(_) => {
                return err(
                    e,
                    "closures are not supported in kernels; write a `#[greta::device]` function",
                )
            }
            syn::Expr::Match(m) => {
                return err(
                    m.match_token,
                    "`match` is not supported in kernels; use `if`/`else if`",
                )
            }
            syn::Expr::Reference(_) => {
                return err(
                    e,
                    "references are not supported in kernels; pass buffers by name",
                )
            }
            syn::Expr::Tuple(_) => {
                return err(
                    e,
                    "tuples are not supported in kernels; use separate variables or a vector type",
                )
            }
            syn::Expr::Struct(_) => return err(e, "struct literals are not supported in kernels"),
            syn::Expr::Field(f) => {
                return err(
                    &f.member,
                    "fields are not supported; index vectors with `v[i]`",
                )
            }
            syn::Expr::Unsafe(u) => {
                return err(u.unsafe_token, "`unsafe` blocks are not needed in kernels")
            }
            syn::Expr::Async(_) | syn::Expr::Await(_) => {
                return err(e, "async code is not supported in kernels")
            }
            syn::Expr::Try(_) => return err(e, "the `?` operator is not supported in kernels"),
            _ => return err(e, "this expression is not supported in kernels"),
        };
        Ok(ExprAst { kind, span })
    }

    fn lit(&mut self, l: &syn::Lit) -> R<ExprKindAst> {
        Ok(match l {
            syn::Lit::Int(i) => ExprKindAst::Int {
                value: i.base10_parse::<u64>()?,
                suffix: (!i.suffix().is_empty()).then(|| i.suffix().to_string()),
            },
            syn::Lit::Float(f) => ExprKindAst::Float {
                value: f.base10_parse::<f64>()?,
                suffix: (!f.suffix().is_empty()).then(|| f.suffix().to_string()),
            },
            syn::Lit::Bool(b) => ExprKindAst::Bool(b.value),
            _ => return err(
                l,
                "kernels work on numbers and booleans; string and char literals are not supported",
            ),
        })
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> R<ExprKindAst> {
        use syn::BinOp as S;
        let (op, compound) = match b.op {
            S::Add(_) => (BinOp::Add, false),
            S::Sub(_) => (BinOp::Sub, false),
            S::Mul(_) => (BinOp::Mul, false),
            S::Div(_) => (BinOp::Div, false),
            S::Rem(_) => (BinOp::Rem, false),
            S::And(_) => (BinOp::And, false),
            S::Or(_) => (BinOp::Or, false),
            S::BitXor(_) => (BinOp::BitXor, false),
            S::BitAnd(_) => (BinOp::BitAnd, false),
            S::BitOr(_) => (BinOp::BitOr, false),
            S::Shl(_) => (BinOp::Shl, false),
            S::Shr(_) => (BinOp::Shr, false),
            S::Eq(_) => (BinOp::Eq, false),
            S::Lt(_) => (BinOp::Lt, false),
            S::Le(_) => (BinOp::Le, false),
            S::Ne(_) => (BinOp::Ne, false),
            S::Ge(_) => (BinOp::Ge, false),
            S::Gt(_) => (BinOp::Gt, false),
            S::AddAssign(_) => (BinOp::Add, true),
            S::SubAssign(_) => (BinOp::Sub, true),
            S::MulAssign(_) => (BinOp::Mul, true),
            S::DivAssign(_) => (BinOp::Div, true),
            S::RemAssign(_) => (BinOp::Rem, true),
            S::BitXorAssign(_) => (BinOp::BitXor, true),
            S::BitAndAssign(_) => (BinOp::BitAnd, true),
            S::BitOrAssign(_) => (BinOp::BitOr, true),
            S::ShlAssign(_) => (BinOp::Shl, true),
            S::ShrAssign(_) => (BinOp::Shr, true),
            _ => return err(b.op, "unsupported operator"),
        };
        let (lhs, rhs) = (self.boxed(&b.left)?, self.boxed(&b.right)?);
        Ok(if compound {
            ExprKindAst::CompoundAssign {
                op,
                target: lhs,
                value: rhs,
            }
        } else {
            ExprKindAst::Binary { op, lhs, rhs }
        })
    }

    fn generic_args(&mut self, a: &syn::AngleBracketedGenericArguments) -> R<Vec<GenericArgAst>> {
        a.args
            .iter()
            .map(|g| match g {
                // `load_vec::<N>` with a const parameter parses as a type path; the front end
                // reads a path naming a constant as that constant.
                syn::GenericArgument::Type(t) => Ok(GenericArgAst::Type(self.ty(t, false)?)),
                syn::GenericArgument::Const(c) => Ok(GenericArgAst::Const(self.expr(c)?)),
                _ => err(g, "unsupported generic argument"),
            })
            .collect()
    }

    fn for_loop(&mut self, f: &syn::ExprForLoop) -> R<ExprKindAst> {
        if let Some(l) = &f.label {
            return err(l, "loop labels are not supported in kernels");
        }
        let syn::Pat::Ident(pi) = &*f.pat else {
            return err(&f.pat, "the loop variable must be a plain name");
        };
        let (range, step) = match &*f.expr {
            syn::Expr::MethodCall(m) if m.method == "step_by" => {
                if m.args.len() != 1 {
                    return err(&m.method, "`step_by` takes one argument");
                }
                (strip_parens(&m.receiver), Some(self.boxed(&m.args[0])?))
            }
            syn::Expr::MethodCall(m) if m.method == "rev" => {
                return err(
                    &m.method,
                    "reversed ranges are not supported; count down with a `while` loop",
                )
            }
            other => (strip_parens(other), None),
        };
        let syn::Expr::Range(r) = range else {
            return err(&f.expr, "`for` loops run over integer ranges: `for i in a..b` or `for i in (a..b).step_by(s)`");
        };
        let (Some(start), Some(end)) = (&r.start, &r.end) else {
            return err(r, "loop ranges need both bounds: `a..b`");
        };
        Ok(ExprKindAst::For {
            var: pi.ident.to_string(),
            var_span: self.sp(&pi.ident),
            start: self.boxed(start)?,
            end: self.boxed(end)?,
            inclusive: matches!(r.limits, syn::RangeLimits::Closed(_)),
            step,
            body: self.block(&f.body)?,
        })
    }

    /// `shared!([T; N])`.
    fn shared_macro(&mut self, m: &syn::Macro) -> R<ExprKindAst> {
        if !m.path.is_ident("shared") {
            return err(
                &m.path,
                "macros are not supported in kernels (except `shared!([T; N])`)",
            );
        }
        let ty: syn::Type = m.parse_body()?;
        let syn::Type::Array(a) = &ty else {
            return err(
                &ty,
                "write the shared array's type and length: `shared!([f32; 256])`",
            );
        };
        Ok(ExprKindAst::Shared {
            elem: self.ty(&a.elem, false)?,
            len: Box::new(self.expr(&a.len)?),
        })
    }
}

fn strip_parens(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip_parens(&p.expr),
        syn::Expr::Group(g) => strip_parens(&g.expr),
        other => other,
    }
}

fn type_ident(t: &syn::Type) -> Option<String> {
    match t {
        syn::Type::Path(p) if p.path.segments.len() == 1 => {
            Some(p.path.segments[0].ident.to_string())
        }
        _ => None,
    }
}
