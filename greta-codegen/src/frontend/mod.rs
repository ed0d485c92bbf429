//! The front end: resolves names, checks and infers types, and lowers the surface AST to
//! typed IR. It runs twice: in the proc-macro (with compile-time parameters and device
//! functions still unknown) to turn mistakes into compile errors at the offending token,
//! and when a kernel is specialised for a target, producing the IR the back ends consume.

mod calls;
mod expr;
mod frag;
mod infer;
mod stmt;

use crate::ast::{FnAst, FnKind, GenericAst, TypeAst};
use crate::diag::Span;
use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::{self, ConstRef, Expr, ExprKind, FnParam, Kernel, Lit, Local, LocalId, MemRef};
use crate::passes;
use crate::target::Target;
use crate::types::{Scalar, Type};
use infer::InferTable;
use std::collections::{HashMap, HashSet};

/// The value given to one generic parameter when a kernel is specialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecValue {
    /// A `const N: u32` parameter.
    Const(i128),
    /// A type parameter.
    Type(Scalar),
}

/// Device functions a kernel may call, by name.
pub type DeviceFns = HashMap<String, FnAst>;

/// A call to a device function seen while checking: the macro verifies its arity against
/// the callee's definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCall {
    pub name: String,
    pub span: Span,
    pub args: usize,
}

/// What the macro-time check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub diagnostics: Vec<Diagnostic>,
    pub device_calls: Vec<DeviceCall>,
    /// Host constants the body names: their values are captured by the expanded code.
    pub externs: Vec<(String, Span)>,
}

/// Checks a kernel or device function as far as is possible without its compile-time
/// parameters and the signatures of the device functions it calls, once for each target the
/// attribute names (or target-independently if none). Used by the macro.
pub fn check(ast: &FnAst) -> CheckReport {
    let mut report = CheckReport::default();
    let mut targets: Vec<Option<Target>> = Vec::new();
    for (name, span) in &ast.targets {
        match Target::by_name(name) {
            Some(t) => targets.push(Some(t)),
            None => report.diagnostics.push(Diagnostic::new(
                *span,
                format!(
                    "unknown target `{name}`; the targets are {}",
                    Target::names()
                ),
            )),
        }
    }
    if ast.targets.is_empty() {
        targets.push(None);
    }
    for target in targets {
        let mut lw = Lowerer::new(ast, target.as_ref(), None, None);
        lw.lower_kernel_or_device();
        for d in lw.diags {
            if !report.diagnostics.contains(&d) {
                report.diagnostics.push(d);
            }
        }
        for c in lw.callees {
            if !report.device_calls.contains(&c) {
                report.device_calls.push(c);
            }
        }
        for e in lw.extern_uses {
            if !report.externs.iter().any(|(n, _)| *n == e.0) {
                report.externs.push(e);
            }
        }
    }
    report
}

/// Specialises a kernel for `target` with the given generic values, producing validated IR.
pub fn specialise(
    ast: &FnAst,
    devices: &DeviceFns,
    target: &Target,
    spec: &[SpecValue],
) -> Result<Kernel, Diagnostics> {
    let file = ast.file.as_str();
    let fail = |items: Vec<Diagnostic>| Diagnostics {
        file: file.to_string(),
        kernel: ast.name.clone(),
        items,
    };
    if !matches!(ast.kind, FnKind::Kernel { .. }) {
        return Err(fail(vec![Diagnostic::new(
            ast.span,
            "only kernels can be specialised; device functions are compiled with the kernels that call them",
        )]));
    }
    if spec.len() != ast.generics.len() {
        return Err(fail(vec![Diagnostic::new(
            ast.span,
            format!(
                "`{}` has {} generic parameter(s), {} value(s) given",
                ast.name,
                ast.generics.len(),
                spec.len()
            ),
        )]));
    }
    let mut lw = Lowerer::new(ast, Some(target), Some(spec), Some(devices));
    let entry = lw.lower_kernel_or_device();
    if !lw.diags.is_empty() {
        return Err(fail(lw.diags));
    }
    let mut kernel = Kernel {
        name: ast.name.clone(),
        symbol: lw.symbol(),
        file: file.to_string(),
        block: lw.block.unwrap_or(0),
        min_waves: match ast.kind {
            FnKind::Kernel { min_waves, .. } => min_waves,
            FnKind::Device => None,
        },
        consts: lw.consts,
        params: lw.params,
        shared: lw.shared,
        funcs: lw.funcs,
        entry,
        layout: Default::default(),
    };
    passes::run(&mut kernel, target).map_err(fail)?;
    // After the passes: folding can remove a reduction or an asynchronous copy.
    kernel.layout = crate::ir::SharedLayout::of(&kernel, target);
    crate::validate::validate(&kernel, target).map_err(fail)?;
    Ok(kernel)
}

/// What a name in scope refers to.
#[derive(Clone, Debug)]
enum Binding {
    Local(LocalId),
    /// A scalar kernel parameter.
    Param(u32, Type),
    /// A buffer, shared array, or memory parameter of a device function.
    Mem {
        mem: MemRef,
        elem: Type,
        mutable: bool,
    },
}

/// The result of evaluating an expression at compile time.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ConstVal {
    Known(i128),
    /// Constant, but its value depends on a parameter not known yet (macro time).
    Unknown,
    NotConst,
}

/// State of the function being lowered.
struct FnCtx {
    locals: Vec<Local>,
    scopes: Vec<HashMap<String, Binding>>,
    loop_depth: u32,
    /// Induction variables of loops with compile-time bounds: usable as constant indices.
    static_locals: HashSet<LocalId>,
    ret: Type,
    is_kernel: bool,
    mem_params: u32,
    /// Statements an expression needs evaluated before it (an `if` used as a value).
    pending: Vec<ir::Stmt>,
    /// Values of the host constants this function's source names.
    externs: Vec<(String, crate::ast::ExternConst)>,
}

/// Lowers one kernel (and, on demand, the device functions it calls).
struct Lowerer<'a> {
    ast: &'a FnAst,
    target: Option<&'a Target>,
    spec: Option<&'a [SpecValue]>,
    devices: Option<&'a DeviceFns>,
    diags: Vec<Diagnostic>,
    infer: InferTable,
    block: Option<u32>,
    consts: Vec<ir::NamedConst>,
    const_known: Vec<bool>,
    type_params: Vec<(String, Type)>,
    params: Vec<ir::Param>,
    shared: Vec<ir::SharedArray>,
    funcs: Vec<ir::Function>,
    func_ids: HashMap<String, u32>,
    call_stack: Vec<String>,
    /// Device-function calls seen (macro time: for linking and arity checks).
    callees: Vec<DeviceCall>,
    /// Host constants named (macro time: their values are captured by the expansion).
    extern_uses: Vec<(String, Span)>,
    fcx: FnCtx,
}

impl<'a> Lowerer<'a> {
    fn new(
        ast: &'a FnAst,
        target: Option<&'a Target>,
        spec: Option<&'a [SpecValue]>,
        devices: Option<&'a DeviceFns>,
    ) -> Self {
        Lowerer {
            ast,
            target,
            spec,
            devices,
            diags: Vec::new(),
            infer: InferTable::default(),
            block: None,
            consts: Vec::new(),
            const_known: Vec::new(),
            type_params: Vec::new(),
            params: Vec::new(),
            shared: Vec::new(),
            funcs: Vec::new(),
            func_ids: HashMap::new(),
            call_stack: vec![ast.name.clone()],
            callees: Vec::new(),
            extern_uses: Vec::new(),
            fcx: FnCtx::new(Type::Void, true, ast.externs.clone()),
        }
    }

    fn error(&mut self, span: Span, message: impl Into<String>) {
        let d = Diagnostic::new(span, message);
        if !self.diags.contains(&d) {
            self.diags.push(d);
        }
    }

    /// An expression standing for something that failed to check (silences follow-ups).
    fn poison(&mut self, span: Span, message: impl Into<String>) -> Expr {
        self.error(span, message);
        Expr {
            kind: ExprKind::Lit(Lit::Int(0)),
            ty: Type::Unknown,
            span,
        }
    }

    fn wave(&self) -> Option<u32> {
        self.target.map(|t| t.wave)
    }

    /// The stable symbol of this specialisation: `name` or `name__P1v1_P2v2`.
    fn symbol(&self) -> String {
        let Some(spec) = self.spec else {
            return self.ast.name.clone();
        };
        if spec.is_empty() {
            return self.ast.name.clone();
        }
        let parts: Vec<String> = self
            .ast
            .generics
            .iter()
            .zip(spec)
            .map(|(g, v)| match v {
                SpecValue::Const(c) if *c < 0 => format!("{}m{}", g.name(), -c),
                SpecValue::Const(c) => format!("{}{}", g.name(), c),
                SpecValue::Type(s) => format!("{}{}", g.name(), s),
            })
            .collect();
        format!("{}__{}", self.ast.name, parts.join("_"))
    }

    /// Lowers the function the lowerer was made for: sets up generics, the block size,
    /// parameters, then the body.
    fn lower_kernel_or_device(&mut self) -> ir::Function {
        let ast = self.ast;
        self.bind_generics();
        let is_kernel = matches!(ast.kind, FnKind::Kernel { .. });
        if !is_kernel {
            // Checked on its own, a device function still sees its caller's block size.
            self.consts.push(ir::NamedConst {
                name: "BLOCK".into(),
                ty: Scalar::U32,
                value: 0,
            });
            self.const_known.push(false);
        }
        if let FnKind::Kernel { block, .. } = &ast.kind {
            self.bind_block(block.as_ref());
            if let Some(ret) = &ast.ret {
                self.error(
                    ret.span(),
                    "kernels return nothing; write results into a `&mut [T]` parameter",
                );
            }
        }
        if !is_kernel && !ast.generics.is_empty() {
            let span = match &ast.generics[0] {
                GenericAst::Const { span, .. } | GenericAst::Type { span, .. } => *span,
            };
            self.error(
                span,
                "device functions cannot be generic; make the calling kernel generic and pass values as arguments",
            );
        }
        let ret = match &ast.ret {
            Some(t) if !is_kernel => self.lower_type(t),
            _ => Type::Void,
        };
        self.fcx = FnCtx::new(ret.clone(), is_kernel, ast.externs.clone());
        let mut fn_params = Vec::new();
        for p in &ast.params {
            if is_kernel {
                self.bind_kernel_param(p);
            } else {
                fn_params.push(self.bind_device_param(p));
            }
        }
        let body = self.lower_fn_body(&ast.body, &ret);
        let locals = std::mem::take(&mut self.fcx.locals);
        let mut f = ir::Function {
            name: ast.name.clone(),
            file: ast.file.clone(),
            params: fn_params,
            ret,
            locals,
            body,
            span: ast.span,
        };
        self.finish_types(&mut f);
        f
    }

    fn bind_generics(&mut self) {
        let ast = self.ast;
        for (i, g) in ast.generics.iter().enumerate() {
            match g {
                GenericAst::Const { name, ty, span } => {
                    let Some(scalar) = Scalar::from_name(ty).filter(|s| s.is_int()) else {
                        self.error(
                            *span,
                            format!("const parameter `{name}` must have an integer type such as `u32`, not `{ty}`"),
                        );
                        continue;
                    };
                    let value = match self.spec.map(|s| s[i]) {
                        Some(SpecValue::Const(v)) => Some(v),
                        Some(SpecValue::Type(t)) => {
                            self.error(
                                *span,
                                format!(
                                    "`{name}` is a const parameter but was given the type `{t}`"
                                ),
                            );
                            None
                        }
                        None => None,
                    };
                    self.consts.push(ir::NamedConst {
                        name: name.clone(),
                        ty: scalar,
                        value: value.unwrap_or(0),
                    });
                    self.const_known.push(value.is_some());
                }
                GenericAst::Type { name, span } => {
                    let ty = match self.spec.map(|s| s[i]) {
                        Some(SpecValue::Type(t)) => Type::Scalar(t),
                        Some(SpecValue::Const(c)) => {
                            self.error(
                                *span,
                                format!("`{name}` is a type parameter but was given the value {c}"),
                            );
                            Type::Unknown
                        }
                        None => Type::Generic(i as u8),
                    };
                    self.type_params.push((name.clone(), ty));
                }
            }
        }
    }

    /// Establishes the block size (`BLOCK`) and checks it against the stated target.
    fn bind_block(&mut self, block: Option<&crate::ast::ExprAst>) {
        let ast = self.ast;
        let generic_block = self.consts.iter().position(|c| c.name == "BLOCK");
        let value = match (block, generic_block) {
            (Some(e), _) => {
                let lowered = self.lower_expr(e, Some(&Type::Scalar(Scalar::U32)));
                match self.const_eval(&lowered) {
                    ConstVal::Known(v) => Some((v, e.span)),
                    ConstVal::Unknown => None,
                    ConstVal::NotConst => {
                        self.error(
                            e.span,
                            "the block size must be a compile-time constant (a literal or a const parameter)",
                        );
                        None
                    }
                }
            }
            (None, Some(i)) => self.const_known[i].then(|| (self.consts[i].value, ast.span)),
            (None, None) => {
                self.error(
                    ast.span,
                    "state the threads per block: `#[greta::kernel(block = 256)]` or a `const BLOCK: u32` parameter",
                );
                None
            }
        };
        if generic_block.is_none() {
            self.consts.push(ir::NamedConst {
                name: "BLOCK".into(),
                ty: Scalar::U32,
                value: value.map(|v| v.0).unwrap_or(0),
            });
            self.const_known.push(value.is_some());
        }
        let Some((v, span)) = value else { return };
        let max = self.target.map(|t| t.max_block).unwrap_or(1024) as i128;
        if v <= 0 || v > max {
            self.error(span, format!("block size {v} is out of range 1..={max}"));
            return;
        }
        if let Some(t) = self.target {
            if v % t.wave as i128 != 0 {
                self.error(
                    span,
                    format!(
                        "block size {v} is not a multiple of the wavefront size {} of {}; use a multiple such as {}",
                        t.wave,
                        t.name,
                        (v as u32).div_ceil(t.wave) * t.wave
                    ),
                );
            }
        }
        self.block = Some(v as u32);
    }

    fn bind_kernel_param(&mut self, p: &crate::ast::ParamAst) {
        let id = self.params.len() as u32;
        match &p.ty {
            TypeAst::Slice { elem, mutable, .. } => {
                let elem_ty = self.lower_type(elem);
                let scalar = match &elem_ty {
                    Type::Scalar(s) if *s != Scalar::Bool => *s,
                    Type::Generic(_) | Type::Unknown => Scalar::F32,
                    other => {
                        self.error(
                            elem.span(),
                            format!("buffers hold scalars, not `{other}`; use `&[u32]` and `load_vec` for wide accesses"),
                        );
                        Scalar::F32
                    }
                };
                self.params.push(ir::Param {
                    name: p.name.clone(),
                    kind: ir::ParamKind::Buffer {
                        elem: scalar,
                        mutable: *mutable,
                    },
                    span: p.span,
                });
                self.fcx.bind(
                    &p.name,
                    Binding::Mem {
                        mem: MemRef::Global(id),
                        elem: elem_ty,
                        mutable: *mutable,
                    },
                );
            }
            TypeAst::Path { .. } => {
                let ty = self.lower_type(&p.ty);
                let scalar = match &ty {
                    Type::Scalar(s) => *s,
                    Type::Generic(_) | Type::Unknown => Scalar::F32,
                    other => {
                        self.error(
                            p.ty.span(),
                            format!("kernel parameters are scalars or buffers, not `{other}`"),
                        );
                        Scalar::F32
                    }
                };
                self.params.push(ir::Param {
                    name: p.name.clone(),
                    kind: ir::ParamKind::Scalar(scalar),
                    span: p.span,
                });
                self.fcx.bind(&p.name, Binding::Param(id, ty));
            }
            TypeAst::Array { span, .. } => {
                self.error(
                    *span,
                    "kernel parameters cannot be arrays; pass a buffer `&[T]`",
                );
            }
        }
    }

    fn bind_device_param(&mut self, p: &crate::ast::ParamAst) -> FnParam {
        match &p.ty {
            TypeAst::Slice { elem, mutable, .. } => {
                let elem_ty = self.lower_type(elem);
                let index = self.fcx.mem_params;
                self.fcx.mem_params += 1;
                self.fcx.bind(
                    &p.name,
                    Binding::Mem {
                        mem: MemRef::FnArg(index),
                        elem: elem_ty.clone(),
                        mutable: *mutable,
                    },
                );
                FnParam::Memory {
                    name: p.name.clone(),
                    elem: elem_ty,
                    mutable: *mutable,
                }
            }
            _ => {
                let ty = self.lower_type(&p.ty);
                let id = self.fcx.add_local(&p.name, ty, false);
                self.fcx.bind(&p.name, Binding::Local(id));
                FnParam::Value(id)
            }
        }
    }

    /// Resolves a written type.
    fn lower_type(&mut self, t: &TypeAst) -> Type {
        match t {
            TypeAst::Path { name, span } => {
                if let Some(s) = Scalar::from_name(name) {
                    return Type::Scalar(s);
                }
                if let Some(v) = Type::vector_from_name(name) {
                    return v;
                }
                if let Some((_, ty)) = self.type_params.iter().find(|(n, _)| n == name) {
                    return ty.clone();
                }
                if let Some((role, elem)) = frag::parse_type_name(name) {
                    let elem = self.lower_type(&TypeAst::Path {
                        name: elem.to_string(),
                        span: *span,
                    });
                    return self.frag_type(role, &elem, *span);
                }
                let hint = match name.as_str() {
                    "usize" | "isize" => " (use `u32`/`i32` for indices, or `u64`/`i64`)",
                    "f64" => " (GPU kernels here compute in `f32`; f64 is not supported)",
                    "char" | "String" | "str" => " (kernels work on numbers only)",
                    _ => "",
                };
                self.error(
                    *span,
                    format!(
                        "unsupported type `{name}`{hint}; the kernel types are bool, i8, u8, i16, u16, i32, u32, i64, u64, f16, bf16, f32, vectors like `f16x8`/`u32x4`, arrays `[T; N]` and fragments `FragA<f16>`/`FragB<f16>`/`FragC<f32>`"
                    ),
                );
                Type::Unknown
            }
            TypeAst::Slice { span, .. } => {
                self.error(
                    *span,
                    "slices are allowed only as kernel or device-function parameters",
                );
                Type::Unknown
            }
            TypeAst::Array { elem, len, span } => {
                let elem_ty = self.lower_type(elem);
                let n = self.const_len(len, "array length");
                if matches!(elem_ty, Type::Array(..)) {
                    self.error(
                        *span,
                        "nested arrays are not supported; flatten to one `[T; N]`",
                    );
                }
                Type::Array(Box::new(elem_ty), n)
            }
        }
    }

    /// Evaluates a compile-time length (array or shared size). Unknown values (macro time)
    /// give 0, and accesses are then not bounds-checked at compile time.
    fn const_len(&mut self, e: &crate::ast::ExprAst, what: &str) -> u32 {
        let lowered = self.lower_expr(e, Some(&Type::Scalar(Scalar::U32)));
        match self.const_eval(&lowered) {
            ConstVal::Known(v) if v > 0 && v <= u32::MAX as i128 => v as u32,
            ConstVal::Known(v) => {
                self.error(e.span, format!("{what} must be positive, found {v}"));
                0
            }
            ConstVal::Unknown => 0,
            ConstVal::NotConst => {
                self.error(
                    e.span,
                    format!("{what} must be a compile-time constant: a literal, a const parameter, `WAVE`, `BLOCK` or `BULK_COPY`, or arithmetic, `min` and `max` on those"),
                );
                0
            }
        }
    }

    /// A host constant named in the body: a named constant of unknown value at macro time,
    /// its captured value once specialised.
    fn extern_const(&mut self, name: &str, span: Span) -> Expr {
        use crate::ast::ExternConst;
        if self.spec.is_none() {
            let i = match self.consts.iter().position(|c| c.name == name) {
                Some(i) => i,
                None => {
                    self.extern_uses.push((name.to_string(), span));
                    self.consts.push(ir::NamedConst {
                        name: name.to_string(),
                        ty: Scalar::U32,
                        value: 0,
                    });
                    self.const_known.push(false);
                    self.consts.len() - 1
                }
            };
            return Expr {
                kind: ExprKind::Const(ConstRef::Named(i as u32)),
                ty: Type::Unknown,
                span,
            };
        }
        match self
            .fcx
            .externs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
        {
            Some(ExternConst::Int(ty, value)) => {
                let i = match self.consts.iter().position(|c| c.name == name) {
                    Some(i) => i,
                    None => {
                        self.consts.push(ir::NamedConst {
                            name: name.to_string(),
                            ty,
                            value,
                        });
                        self.const_known.push(true);
                        self.consts.len() - 1
                    }
                };
                Expr {
                    kind: ExprKind::Const(ConstRef::Named(i as u32)),
                    ty: Type::Scalar(ty),
                    span,
                }
            }
            Some(ExternConst::Float(v)) => Expr::lit(Lit::Float(v), Scalar::F32, span),
            Some(ExternConst::Bool(b)) => Expr::lit(Lit::Bool(b), Scalar::Bool, span),
            None => self.poison(
                span,
                format!("the value of host constant `{name}` was not captured"),
            ),
        }
    }

    /// Evaluates an integer expression at compile time where it is made of constants.
    fn const_eval(&self, e: &Expr) -> ConstVal {
        use crate::ops::BinOp::*;
        match &e.kind {
            ExprKind::Lit(Lit::Int(v)) => ConstVal::Known(*v),
            ExprKind::Lit(Lit::Bool(b)) => ConstVal::Known(*b as i128),
            ExprKind::Const(ConstRef::Named(i)) => {
                if self.const_known[*i as usize] {
                    ConstVal::Known(self.consts[*i as usize].value)
                } else {
                    ConstVal::Unknown
                }
            }
            ExprKind::Const(ConstRef::Wave) => match self.wave() {
                Some(w) => ConstVal::Known(w as i128),
                None => ConstVal::Unknown,
            },
            ExprKind::Const(ConstRef::BulkCopy) => match self.target {
                Some(t) => ConstVal::Known(t.bulk_copy as i128),
                None => ConstVal::Unknown,
            },
            ExprKind::Cast(x) => self.const_eval(x),
            ExprKind::Builtin {
                op: op @ (ir::Builtin::Min | ir::Builtin::Max),
                args,
            } => match (self.const_eval(&args[0]), self.const_eval(&args[1])) {
                (ConstVal::NotConst, _) | (_, ConstVal::NotConst) => ConstVal::NotConst,
                (ConstVal::Known(a), ConstVal::Known(b)) => {
                    ConstVal::Known(if *op == ir::Builtin::Min {
                        a.min(b)
                    } else {
                        a.max(b)
                    })
                }
                _ => ConstVal::Unknown,
            },
            ExprKind::Unary { op, arg } => match (op, self.const_eval(arg)) {
                (crate::ops::UnOp::Neg, ConstVal::Known(v)) => ConstVal::Known(-v),
                (_, ConstVal::NotConst) => ConstVal::NotConst,
                _ => ConstVal::Unknown,
            },
            ExprKind::Binary { op, lhs, rhs } => {
                let (a, b) = (self.const_eval(lhs), self.const_eval(rhs));
                match (a, b) {
                    (ConstVal::NotConst, _) | (_, ConstVal::NotConst) => ConstVal::NotConst,
                    (ConstVal::Known(a), ConstVal::Known(b)) => {
                        let v = match op {
                            Add => a.checked_add(b),
                            Sub => a.checked_sub(b),
                            Mul => a.checked_mul(b),
                            Div => a.checked_div(b),
                            Rem => a.checked_rem(b),
                            Shl => u32::try_from(b).ok().and_then(|b| a.checked_shl(b)),
                            Shr => u32::try_from(b).ok().and_then(|b| a.checked_shr(b)),
                            BitAnd => Some(a & b),
                            BitOr => Some(a | b),
                            BitXor => Some(a ^ b),
                            Eq => Some((a == b) as i128),
                            Ne => Some((a != b) as i128),
                            Lt => Some((a < b) as i128),
                            Le => Some((a <= b) as i128),
                            Gt => Some((a > b) as i128),
                            Ge => Some((a >= b) as i128),
                            And => Some((a != 0 && b != 0) as i128),
                            Or => Some((a != 0 || b != 0) as i128),
                        };
                        v.map_or(ConstVal::NotConst, ConstVal::Known)
                    }
                    _ => ConstVal::Unknown,
                }
            }
            _ => ConstVal::NotConst,
        }
    }

    /// True if `e` has the same value in every unrolled copy of the code it sits in: made of
    /// literals, constants and induction variables of compile-time-bounded loops.
    fn is_static(&self, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Lit(_) | ExprKind::Const(_) => true,
            ExprKind::Local(l) => self.fcx.static_locals.contains(l),
            ExprKind::Cast(x) | ExprKind::Unary { arg: x, .. } => self.is_static(x),
            ExprKind::Binary { lhs, rhs, .. } => self.is_static(lhs) && self.is_static(rhs),
            _ => false,
        }
    }

    /// Replaces inference variables by their final types and checks literal ranges.
    fn finish_types(&mut self, f: &mut ir::Function) {
        for l in &mut f.locals {
            l.ty = self.infer.finish(&l.ty);
        }
        f.ret = self.infer.finish(&f.ret);
        let infer = &self.infer;
        let mut problems = Vec::new();
        ir::walk_stmts_mut(&mut f.body, &mut |e: &mut Expr| {
            e.ty = infer.finish(&e.ty);
            if let (ExprKind::Lit(Lit::Int(v)), Type::Scalar(s)) = (&e.kind, &e.ty) {
                if s.is_int() && !int_fits(*v, *s) {
                    problems.push((e.span, format!("literal {v} does not fit in `{s}`")));
                }
            }
            if let ExprKind::Unary {
                op: crate::ops::UnOp::Neg,
                arg,
            } = &e.kind
            {
                if let Type::Scalar(s) = &arg.ty {
                    if s.is_int() && !s.is_signed_int() {
                        problems.push((
                            e.span,
                            format!("cannot negate the unsigned type `{s}`; cast to a signed type first"),
                        ));
                    }
                }
            }
        });
        for (span, m) in problems {
            self.error(span, m);
        }
    }
}

/// True if `v` is representable in integer type `s` (negative literals arrive negated
/// separately, so a `u32` accepts up to `u32::MAX` and an `i32` up to `2^31`).
fn int_fits(v: i128, s: Scalar) -> bool {
    let bits = s.bits();
    if s.is_signed_int() {
        v >= -(1i128 << (bits - 1)) && v <= (1i128 << (bits - 1))
    } else {
        v >= 0 && v < (1i128 << bits)
    }
}

impl FnCtx {
    fn new(ret: Type, is_kernel: bool, externs: Vec<(String, crate::ast::ExternConst)>) -> FnCtx {
        FnCtx {
            externs,
            locals: Vec::new(),
            scopes: vec![HashMap::new()],
            loop_depth: 0,
            static_locals: HashSet::new(),
            ret,
            is_kernel,
            mem_params: 0,
            pending: Vec::new(),
        }
    }

    fn bind(&mut self, name: &str, b: Binding) {
        self.scopes
            .last_mut()
            .expect("a function always has a scope")
            .insert(name.to_string(), b);
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn add_local(&mut self, name: &str, ty: Type, mutable: bool) -> LocalId {
        self.locals.push(Local {
            name: name.to_string(),
            ty,
            mutable,
        });
        self.locals.len() as u32 - 1
    }
}
