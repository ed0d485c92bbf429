//! Lowering of value expressions, assignments and their type rules.

use super::{Binding, ConstVal, Lowerer};
use crate::ast::{BlockAst, ExprAst, ExprKindAst};
use crate::diag::Span;
use crate::ir::{ConstRef, Expr, ExprKind, Lit, Stmt, StmtKind};
use crate::ops::{BinOp, UnOp};
use crate::types::{Scalar, Type};

impl Lowerer<'_> {
    /// Lowers an expression; `expected` guides the type of unsuffixed literals.
    pub(super) fn lower_expr(&mut self, e: &ExprAst, expected: Option<&Type>) -> Expr {
        let span = e.span;
        match &e.kind {
            ExprKindAst::Int { value, suffix } => self.lower_int(*value, suffix.as_deref(), expected, span),
            ExprKindAst::Float { value, suffix } => {
                self.lower_float(*value, suffix.as_deref(), expected, span)
            }
            ExprKindAst::Bool(b) => Expr::lit(Lit::Bool(*b), Scalar::Bool, span),
            ExprKindAst::Path(path) => self.lower_path(path, span),
            ExprKindAst::Unary { op, expr } => {
                let arg = self.lower_expr(expr, expected);
                self.unary(*op, arg, span)
            }
            ExprKindAst::Binary { op, lhs, rhs } => {
                let expected = if op.is_comparison() || op.is_logic() {
                    None
                } else {
                    expected
                };
                self.lower_binary(*op, lhs, rhs, expected, span)
            }
            ExprKindAst::Cast { expr, ty } => {
                let to = self.lower_type(ty);
                let arg = self.lower_expr(expr, None);
                self.cast(arg, to, span)
            }
            ExprKindAst::Index { base, index } => self.lower_index_read(base, index, span),
            ExprKindAst::Call {
                path,
                generics,
                args,
            } => self.lower_call(path, generics, args, expected, span),
            ExprKindAst::MethodCall {
                recv,
                method,
                method_span,
                generics,
                args,
            } => self.lower_method(recv, method, *method_span, generics, args, expected, span),
            ExprKindAst::If { cond, then, els } => {
                self.lower_if_value(cond, then, els.as_deref(), expected, span)
            }
            ExprKindAst::Block(b) => {
                self.fcx.scopes.push(Default::default());
                let (mut stmts, value) = self.lower_block_value(b, expected);
                self.fcx.scopes.pop();
                self.fcx.pending.append(&mut stmts);
                value
            }
            ExprKindAst::ArrayRepeat { value, len } => {
                let elem_expected = match expected {
                    Some(Type::Array(t, _)) => Some((**t).clone()),
                    _ => None,
                };
                let v = self.lower_expr(value, elem_expected.as_ref());
                let n = self.const_len(len, "array length");
                Expr {
                    ty: Type::Array(Box::new(v.ty.clone()), n),
                    kind: ExprKind::Splat(Box::new(v)),
                    span,
                }
            }
            ExprKindAst::ArrayList(items) => {
                let mut elem = match expected {
                    Some(Type::Array(t, _)) => (**t).clone(),
                    _ => Type::Unknown,
                };
                let mut out = Vec::new();
                for it in items {
                    let x = self.lower_expr(it, Some(&elem));
                    elem = self.unify_or_error(&elem, &x, "the other array elements");
                    out.push(x);
                }
                Expr {
                    ty: Type::Array(Box::new(elem), out.len() as u32),
                    kind: ExprKind::Make(out),
                    span,
                }
            }
            ExprKindAst::Shared { .. } => self.poison(
                span,
                "`shared!` may only initialise a `let` at the top of the kernel: `let tile = shared!([f32; 256]);`",
            ),
            ExprKindAst::Assign { .. } | ExprKindAst::CompoundAssign { .. } => {
                self.poison(span, "an assignment has no value; use it as a statement")
            }
            ExprKindAst::For { .. }
            | ExprKindAst::While { .. }
            | ExprKindAst::Loop { .. }
            | ExprKindAst::Break
            | ExprKindAst::Continue
            | ExprKindAst::Return(_) => {
                self.poison(span, "this is a statement, not a value; end it with `;`")
            }
        }
    }

    fn lower_int(
        &mut self,
        value: u64,
        suffix: Option<&str>,
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        let ty = match suffix {
            Some(s) => match Scalar::from_name(s) {
                Some(sc) if sc.is_float() => {
                    return Expr::lit(Lit::Float(value as f64), sc, span);
                }
                Some(sc) if sc.is_int() => Type::Scalar(sc),
                _ => return self.poison(span, format!("unsupported literal suffix `{s}`")),
            },
            None => match expected.map(|t| self.infer.resolve(t)) {
                Some(t @ Type::Scalar(s)) if s.is_int() => t,
                Some(t @ Type::Generic(_)) => t,
                Some(t @ Type::Infer(v)) if !v.float => t,
                _ => self.infer.fresh(false),
            },
        };
        Expr {
            kind: ExprKind::Lit(Lit::Int(value as i128)),
            ty,
            span,
        }
    }

    fn lower_float(
        &mut self,
        value: f64,
        suffix: Option<&str>,
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        let ty = match suffix {
            Some(s) => match Scalar::from_name(s) {
                Some(sc) if sc.is_float() => Type::Scalar(sc),
                _ => {
                    return self.poison(
                        span,
                        format!("unsupported float suffix `{s}`; use `f32`, `f16` or `bf16`"),
                    )
                }
            },
            None => match expected.map(|t| self.infer.resolve(t)) {
                Some(t @ Type::Scalar(s)) if s.is_float() => t,
                Some(t @ Type::Generic(_)) => t,
                Some(t @ Type::Infer(v)) if v.float => t,
                _ => self.infer.fresh(true),
            },
        };
        Expr {
            kind: ExprKind::Lit(Lit::Float(value)),
            ty,
            span,
        }
    }

    fn lower_path(&mut self, path: &[String], span: Span) -> Expr {
        if let [name] = path {
            if let Some(b) = self.fcx.lookup(name).cloned() {
                return match b {
                    Binding::Local(l) => Expr {
                        ty: self.fcx.locals[l as usize].ty.clone(),
                        kind: ExprKind::Local(l),
                        span,
                    },
                    Binding::Param(p, ty) => Expr {
                        kind: ExprKind::Param(p),
                        ty,
                        span,
                    },
                    Binding::Mem { .. } => self.poison(
                        span,
                        format!("`{name}` is a buffer or shared array; read an element with `{name}[i]`"),
                    ),
                };
            }
            if name == "WAVE" || name == "BULK_COPY" {
                let c = if name == "WAVE" {
                    ConstRef::Wave
                } else {
                    ConstRef::BulkCopy
                };
                return Expr {
                    kind: ExprKind::Const(c),
                    ty: Type::Scalar(Scalar::U32),
                    span,
                };
            }
            // Device functions see `BLOCK` but not the calling kernel's own parameters.
            let visible = |c: &crate::ir::NamedConst| {
                &c.name == name && (self.fcx.is_kernel || name == "BLOCK")
            };
            if let Some(i) = self.consts.iter().position(visible) {
                return Expr {
                    kind: ExprKind::Const(ConstRef::Named(i as u32)),
                    ty: Type::Scalar(self.consts[i].ty),
                    span,
                };
            }
            if crate::ast::is_constant_name(name) {
                return self.extern_const(name, span);
            }
            return self.poison(
                span,
                format!("cannot find `{name}` in this kernel; built-in constants are `WAVE`, `BLOCK` and `BULK_COPY`"),
            );
        }
        if let [ty, item] = path {
            if let Some(s) = Scalar::from_name(ty) {
                if let Some(lit) = scalar_constant(s, item) {
                    return Expr::lit(lit, s, span);
                }
            }
        }
        self.poison(
            span,
            format!(
                "unknown constant `{}`; supported are e.g. `f32::INFINITY`, `f32::NEG_INFINITY`, `f32::MAX`, `f32::MIN`, `u32::MAX`, `i32::MIN`",
                path.join("::")
            ),
        )
    }

    /// Lowers two operands that must agree in type, the typed one first so that an
    /// unsuffixed literal on either side takes its type.
    pub(super) fn lower_pair(&mut self, a: &ExprAst, b: &ExprAst) -> (Expr, Expr) {
        if is_untyped_literal(a) && !is_untyped_literal(b) {
            let rb = self.lower_expr(b, None);
            let ra = self.lower_expr(a, Some(&rb.ty));
            (ra, rb)
        } else {
            let ra = self.lower_expr(a, None);
            let rb = self.lower_expr(b, Some(&ra.ty));
            (ra, rb)
        }
    }

    fn lower_binary(
        &mut self,
        op: BinOp,
        lhs: &ExprAst,
        rhs: &ExprAst,
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        if matches!(op, BinOp::Shl | BinOp::Shr) {
            let l = self.lower_expr(lhs, expected);
            let r = self.lower_expr(rhs, None);
            return self.binary(op, l, r, span);
        }
        let (l, r) = if is_untyped_literal(lhs) && is_untyped_literal(rhs) {
            let l = self.lower_expr(lhs, expected);
            let r = self.lower_expr(rhs, Some(&l.ty));
            (l, r)
        } else {
            self.lower_pair(lhs, rhs)
        };
        self.binary(op, l, r, span)
    }

    /// Types a binary operation on lowered operands.
    pub(super) fn binary(&mut self, op: BinOp, l: Expr, r: Expr, span: Span) -> Expr {
        let (lt, rt) = (self.infer.resolve(&l.ty), self.infer.resolve(&r.ty));
        let bool_ty = Type::Scalar(Scalar::Bool);
        let result = if op.is_logic() {
            for (side, t) in [(&l, &lt), (&r, &rt)] {
                if self.infer.unify(t, &bool_ty).is_none() {
                    self.error(
                        side.span,
                        format!("`{}` needs `bool` operands, found `{t}`", op.symbol()),
                    );
                }
            }
            bool_ty
        } else if matches!(op, BinOp::Shl | BinOp::Shr) {
            for (side, t) in [(&l, &lt), (&r, &rt)] {
                if !is_intlike(t) {
                    self.error(
                        side.span,
                        format!("shifts need integer operands, found `{t}`"),
                    );
                }
            }
            lt
        } else {
            let Some(t) = self.infer.unify(&lt, &rt) else {
                return self.poison(
                    span,
                    format!(
                        "mismatched types: `{lt}` {} `{rt}`; convert one side with `as`, e.g. `(x as {lt})`",
                        op.symbol()
                    ),
                );
            };
            let t = self.infer.resolve(&t);
            let ok = match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => is_numeric(&t),
                BinOp::Rem => is_intlike(&t) || t == Type::Unknown,
                BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => is_intlike(&t) || t == bool_ty,
                BinOp::Eq | BinOp::Ne => matches!(
                    t,
                    Type::Scalar(_) | Type::Generic(_) | Type::Infer(_) | Type::Unknown
                ),
                _ => is_numeric(&t),
            };
            if !ok {
                let hint = match (&t, op) {
                    (Type::Scalar(s), BinOp::Rem) if s.is_float() => {
                        "; `%` works on integers (write `x - (x / y).floor() * y` for floats)"
                    }
                    (Type::Vector(..), _) => {
                        "; vectors support element access only: operate on `v[i]`"
                    }
                    _ => "",
                };
                return self.poison(
                    span,
                    format!("`{}` is not defined for `{t}`{hint}", op.symbol()),
                );
            }
            if op.is_comparison() {
                bool_ty
            } else {
                t
            }
        };
        Expr {
            kind: ExprKind::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r),
            },
            ty: result,
            span,
        }
    }

    fn unary(&mut self, op: UnOp, arg: Expr, span: Span) -> Expr {
        let t = self.infer.resolve(&arg.ty);
        let ok = match op {
            UnOp::Neg => is_numeric(&t),
            UnOp::Not => is_intlike(&t) || t == Type::Scalar(Scalar::Bool) || t == Type::Unknown,
        };
        if !ok {
            return self.poison(
                span,
                format!(
                    "`{}` is not defined for `{t}`",
                    if op == UnOp::Neg { "-" } else { "!" }
                ),
            );
        }
        Expr {
            kind: ExprKind::Unary {
                op,
                arg: Box::new(arg),
            },
            ty: t,
            span,
        }
    }

    /// Numeric conversion (`as`).
    pub(super) fn cast(&mut self, arg: Expr, to: Type, span: Span) -> Expr {
        let from = self.infer.resolve(&arg.ty);
        let ok = match (&from, &to) {
            (Type::Unknown, _) | (_, Type::Unknown) => true,
            (Type::Scalar(Scalar::Bool), Type::Scalar(t)) => t.is_int() || *t == Scalar::Bool,
            (Type::Scalar(_), Type::Scalar(Scalar::Bool)) => false,
            (
                Type::Scalar(_) | Type::Generic(_) | Type::Infer(_),
                Type::Scalar(_) | Type::Generic(_),
            ) => true,
            _ => false,
        };
        if !ok {
            let hint = if matches!(to, Type::Scalar(Scalar::Bool)) {
                "; compare instead, e.g. `x != 0`"
            } else if matches!(from, Type::Vector(..)) || matches!(to, Type::Vector(..)) {
                "; reinterpret vectors with `bitcast::<T>(v)`"
            } else {
                ""
            };
            return self.poison(span, format!("cannot cast `{from}` to `{to}`{hint}"));
        }
        if let Type::Infer(_) = from {
            let fixed = self.infer.finish(&arg.ty);
            self.infer.unify(&arg.ty, &fixed);
        }
        Expr {
            kind: ExprKind::Cast(Box::new(arg)),
            ty: to,
            span,
        }
    }

    /// Checks that `e` has type `ty` (unifying literals); reports a mismatch otherwise.
    pub(super) fn expect_type(&mut self, e: &Expr, ty: &Type, what: &str) {
        if self.infer.unify(&e.ty, ty).is_none() {
            let found = self.infer.resolve(&e.ty);
            let hint = match (&found, ty) {
                (Type::Infer(v), Type::Scalar(s)) if !v.float && s.is_float() => {
                    " (write a float literal such as `1.0`)".to_string()
                }
                (Type::Scalar(_) | Type::Infer(_), Type::Scalar(_)) => {
                    format!(" (convert with `as {ty}`)")
                }
                _ => String::new(),
            };
            self.error(
                e.span,
                format!("mismatched types: expected `{ty}` for {what}, found `{found}`{hint}"),
            );
        }
    }

    /// Unifies `acc` with `x`'s type for a list of values that must agree.
    fn unify_or_error(&mut self, acc: &Type, x: &Expr, what: &str) -> Type {
        match self.infer.unify(acc, &x.ty) {
            Some(t) => t,
            None => {
                self.expect_type(x, acc, what);
                acc.clone()
            }
        }
    }

    fn lower_index_read(&mut self, base: &ExprAst, index: &ExprAst, span: Span) -> Expr {
        if let ExprKindAst::Path(p) = &base.kind {
            if let [name] = p.as_slice() {
                if let Some(Binding::Mem { mem, elem, .. }) = self.fcx.lookup(name).cloned() {
                    let idx = self.lower_index(index);
                    return Expr {
                        kind: ExprKind::Load {
                            mem,
                            index: Box::new(idx),
                        },
                        ty: elem,
                        span,
                    };
                }
            }
        }
        let b = self.lower_expr(base, None);
        self.element(b, index, span)
    }

    /// Lowers a memory index: any integer type; literals default to `u32`.
    pub(super) fn lower_index(&mut self, index: &ExprAst) -> Expr {
        let idx = self.lower_expr(index, Some(&Type::Scalar(Scalar::U32)));
        let t = self.infer.resolve(&idx.ty);
        if !is_intlike(&t) && t != Type::Unknown {
            self.error(index.span, format!("indices must be integers, found `{t}`"));
        }
        idx
    }

    /// An element of a register array or a lane of a vector: the index must be static.
    fn element(&mut self, base: Expr, index: &ExprAst, span: Span) -> Expr {
        let idx = self.lower_index(index);
        let (elem, len) = match self.infer.resolve(&base.ty) {
            Type::Array(t, n) => (*t, n),
            Type::Vector(s, n) => (Type::Scalar(s), n as u32),
            Type::Frag(f) => (
                Type::Scalar(f.elem),
                self.wave().map(|w| f.len(w)).unwrap_or(0),
            ),
            Type::Unknown => (Type::Unknown, 0),
            other => {
                return self.poison(span, format!("cannot index a value of type `{other}`"));
            }
        };
        self.check_static_index(&idx, len);
        Expr {
            kind: ExprKind::Element {
                base: Box::new(base),
                index: Box::new(idx),
            },
            ty: elem,
            span,
        }
    }

    /// Register arrays and vector lanes live in registers: their indices must be known at
    /// compile time (after unrolling), or the array would spill to scratch memory.
    pub(super) fn check_static_index(&mut self, idx: &Expr, len: u32) {
        if !self.is_static(idx) {
            self.error(
                idx.span,
                "register arrays and vector lanes need a compile-time index (a constant or the variable of a loop with constant bounds); use a shared array for run-time indexing",
            );
            return;
        }
        if let ConstVal::Known(v) = self.const_eval(idx) {
            if len > 0 && (v < 0 || v >= len as i128) {
                self.error(
                    idx.span,
                    format!("index {v} is out of bounds for length {len}"),
                );
            }
        }
    }

    /// Lowers `target = value` or `target op= value`.
    pub(super) fn lower_assign(
        &mut self,
        target: &ExprAst,
        op: Option<BinOp>,
        value: &ExprAst,
        span: Span,
        out: &mut Vec<Stmt>,
    ) {
        match &target.kind {
            ExprKindAst::Path(p) if p.len() == 1 => {
                let name = &p[0];
                let Some(Binding::Local(l)) = self.fcx.lookup(name).cloned() else {
                    let msg = match self.fcx.lookup(name) {
                        Some(Binding::Param(..)) => format!("cannot assign to parameter `{name}`; copy it: `let mut {name} = {name};`"),
                        Some(Binding::Mem { .. }) => format!("cannot assign to buffer `{name}` itself; assign an element: `{name}[i] = ...`"),
                        _ => format!("cannot find `{name}` in this kernel"),
                    };
                    self.error(target.span, msg);
                    return;
                };
                let local = self.fcx.locals[l as usize].clone();
                if !local.mutable {
                    self.error(
                        target.span,
                        format!("cannot assign twice to immutable variable `{name}`; declare it with `let mut {name}`"),
                    );
                }
                let current = Expr {
                    kind: ExprKind::Local(l),
                    ty: local.ty.clone(),
                    span: target.span,
                };
                let v = self.assigned_value(current, op, value, &local.ty, span);
                out.append(&mut self.fcx.pending);
                out.push(Stmt {
                    kind: StmtKind::Assign { local: l, value: v },
                    span,
                });
            }
            ExprKindAst::Index { base, index } => {
                self.lower_indexed_assign(base, index, op, value, span, out)
            }
            _ => self.error(
                target.span,
                "cannot assign to this expression; assign to a variable, `buf[i]` or `arr[k]`",
            ),
        }
    }

    fn lower_indexed_assign(
        &mut self,
        base: &ExprAst,
        index: &ExprAst,
        op: Option<BinOp>,
        value: &ExprAst,
        span: Span,
        out: &mut Vec<Stmt>,
    ) {
        let ExprKindAst::Path(p) = &base.kind else {
            self.error(
                base.span,
                "assign to an element of a named buffer, shared array or local array",
            );
            return;
        };
        let name = &p[0];
        match self.fcx.lookup(name).cloned() {
            Some(Binding::Mem { mem, elem, mutable }) => {
                if !mutable {
                    self.error(
                        base.span,
                        format!("cannot store into read-only buffer `{name}`; declare the parameter as `{name}: &mut [{elem}]`"),
                    );
                }
                let idx = self.lower_index(index);
                if op.is_some() && has_side_effects(&idx) {
                    self.error(
                        index.span,
                        "compute this index in a `let` first: it would be evaluated twice",
                    );
                }
                let current = Expr {
                    kind: ExprKind::Load {
                        mem,
                        index: Box::new(idx.clone()),
                    },
                    ty: elem.clone(),
                    span: base.span,
                };
                let v = self.assigned_value(current, op, value, &elem, span);
                out.append(&mut self.fcx.pending);
                out.push(Stmt {
                    kind: StmtKind::Store {
                        mem,
                        index: idx,
                        value: v,
                    },
                    span,
                });
            }
            Some(Binding::Local(l)) => {
                let local = self.fcx.locals[l as usize].clone();
                if !local.mutable {
                    self.error(
                        base.span,
                        format!("cannot assign to an element of immutable `{name}`; declare it with `let mut {name}`"),
                    );
                }
                let base_e = Expr {
                    kind: ExprKind::Local(l),
                    ty: local.ty.clone(),
                    span: base.span,
                };
                let current = self.element(base_e, index, base.span);
                let ExprKind::Element { index: idx, .. } = &current.kind else {
                    return;
                };
                let idx = (**idx).clone();
                let elem = current.ty.clone();
                let v = self.assigned_value(current, op, value, &elem, span);
                out.append(&mut self.fcx.pending);
                out.push(Stmt {
                    kind: StmtKind::SetElement {
                        local: l,
                        index: idx,
                        value: v,
                    },
                    span,
                });
            }
            _ => self.error(
                base.span,
                format!("cannot assign into `{name}`: not a buffer, shared array or local array"),
            ),
        }
    }

    /// The value stored by an assignment: `value`, or `current op value` for `op=`.
    fn assigned_value(
        &mut self,
        current: Expr,
        op: Option<BinOp>,
        value: &ExprAst,
        ty: &Type,
        span: Span,
    ) -> Expr {
        let rhs = self.lower_expr(value, Some(ty));
        match op {
            None => {
                self.expect_type(&rhs, ty, "the assigned place");
                rhs
            }
            Some(op) => {
                let combined = self.binary(op, current, rhs, span);
                self.expect_type(&combined, ty, "the assigned place");
                combined
            }
        }
    }

    fn lower_if_value(
        &mut self,
        cond: &ExprAst,
        then: &BlockAst,
        els: Option<&ExprAst>,
        expected: Option<&Type>,
        span: Span,
    ) -> Expr {
        let Some(els) = els else {
            return self.poison(span, "an `if` used as a value needs an `else` branch");
        };
        let c = self.lower_cond(cond);
        self.fcx.scopes.push(Default::default());
        let (then_stmts, a) = self.lower_block_value(then, expected);
        self.fcx.scopes.pop();
        self.fcx.scopes.push(Default::default());
        let (else_stmts, b) = match &els.kind {
            ExprKindAst::Block(bl) => self.lower_block_value(bl, Some(&a.ty)),
            _ => {
                let saved = std::mem::take(&mut self.fcx.pending);
                let v = self.lower_expr(els, Some(&a.ty));
                let stmts = std::mem::replace(&mut self.fcx.pending, saved);
                (stmts, v)
            }
        };
        self.fcx.scopes.pop();
        let ty = self.unify_or_error(&a.ty, &b, "the `then` branch's value");
        if then_stmts.is_empty() && else_stmts.is_empty() {
            return Expr {
                kind: ExprKind::Select {
                    cond: Box::new(c),
                    a: Box::new(a),
                    b: Box::new(b),
                },
                ty,
                span,
            };
        }
        // Branches with statements: a temporary assigned on each side.
        let tmp = self.fcx.add_local("if_value", ty.clone(), true);
        let assign = |v: Expr| Stmt {
            span: v.span,
            kind: StmtKind::Assign {
                local: tmp,
                value: v,
            },
        };
        let mut then_stmts = then_stmts;
        then_stmts.push(assign(a));
        let mut else_stmts = else_stmts;
        else_stmts.push(assign(b));
        self.fcx.pending.push(Stmt {
            kind: StmtKind::Let {
                local: tmp,
                init: None,
            },
            span,
        });
        self.fcx.pending.push(Stmt {
            kind: StmtKind::If {
                cond: c,
                then: then_stmts,
                els: else_stmts,
            },
            span,
        });
        Expr {
            kind: ExprKind::Local(tmp),
            ty,
            span,
        }
    }

    /// Lowers a block whose tail is its value; returns the statements before the value.
    fn lower_block_value(&mut self, b: &BlockAst, expected: Option<&Type>) -> (Vec<Stmt>, Expr) {
        let saved = std::mem::take(&mut self.fcx.pending);
        let mut stmts = self.lower_stmts(&b.stmts);
        let value = match &b.tail {
            Some(t) => {
                let v = self.lower_expr(t, expected);
                stmts.append(&mut self.fcx.pending);
                v
            }
            None => self.poison(b.span, "this block must end with a value (no `;` after it)"),
        };
        self.fcx.pending = saved;
        (stmts, value)
    }
}

/// Compile-time values of `T::NAME` constants.
fn scalar_constant(s: Scalar, item: &str) -> Option<Lit> {
    if s.is_float() {
        let v = match (s, item) {
            (_, "INFINITY") => f64::INFINITY,
            (_, "NEG_INFINITY") => f64::NEG_INFINITY,
            (_, "NAN") => f64::NAN,
            (Scalar::F32, "MAX") => f32::MAX as f64,
            (Scalar::F32, "MIN") => f32::MIN as f64,
            (Scalar::F32, "EPSILON") => f32::EPSILON as f64,
            (Scalar::F16, "MAX") => 65504.0,
            (Scalar::F16, "MIN") => -65504.0,
            _ => return None,
        };
        return Some(Lit::Float(v));
    }
    if s.is_int() {
        let bits = s.bits();
        let (min, max) = if s.is_signed_int() {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        return match item {
            "MAX" => Some(Lit::Int(max)),
            "MIN" => Some(Lit::Int(min)),
            "BITS" => Some(Lit::Int(bits as i128)),
            _ => None,
        };
    }
    None
}

/// True for a literal whose type is still open (no suffix), possibly negated.
fn is_untyped_literal(e: &ExprAst) -> bool {
    match &e.kind {
        ExprKindAst::Int { suffix: None, .. } | ExprKindAst::Float { suffix: None, .. } => true,
        ExprKindAst::Unary { expr, .. } => is_untyped_literal(expr),
        ExprKindAst::Binary { lhs, rhs, op } if !op.is_comparison() && !op.is_logic() => {
            is_untyped_literal(lhs) && is_untyped_literal(rhs)
        }
        _ => false,
    }
}

fn is_numeric(t: &Type) -> bool {
    match t {
        Type::Scalar(s) => *s != Scalar::Bool,
        Type::Generic(_) | Type::Infer(_) | Type::Unknown => true,
        _ => false,
    }
}

fn is_intlike(t: &Type) -> bool {
    match t {
        Type::Scalar(s) => s.is_int(),
        Type::Infer(v) => !v.float,
        Type::Generic(_) | Type::Unknown => true,
        _ => false,
    }
}

/// True if evaluating `e` twice would differ from evaluating it once.
fn has_side_effects(e: &Expr) -> bool {
    let mut found = false;
    let mut copy = e.clone();
    crate::ir::walk_expr_mut(&mut copy, &mut |x| {
        if matches!(x.kind, ExprKind::Atomic { .. } | ExprKind::Call { .. }) {
            found = true;
        }
    });
    found
}
