//! Lowering of statements and control flow.

use super::{Binding, ConstVal, Lowerer};
use crate::ast::{BlockAst, ExprAst, ExprKindAst, StmtAst};
use crate::diag::Span;
use crate::ir::{Expr, ExprKind, Lit, Stmt, StmtKind};
use crate::types::{Scalar, Type};

impl Lowerer<'_> {
    /// Lowers a function body; a tail expression becomes the return value.
    pub(super) fn lower_fn_body(&mut self, body: &BlockAst, ret: &Type) -> Vec<Stmt> {
        let mut out = self.lower_stmts(&body.stmts);
        match &body.tail {
            Some(tail) if *ret != Type::Void && !is_statement_like(tail) => {
                let value = self.lower_expr(tail, Some(ret));
                self.expect_type(&value, ret, "the function's return type");
                out.append(&mut self.fcx.pending);
                out.push(Stmt {
                    kind: StmtKind::Return(Some(value)),
                    span: tail.span,
                });
            }
            Some(tail) => self.lower_expr_stmt(tail, &mut out),
            None => {
                if *ret != Type::Void && !ends_in_return(&out) {
                    self.error(
                        body.span,
                        format!("this function must return a `{ret}`: end the body with a value or `return`"),
                    );
                }
            }
        }
        out
    }

    /// Lowers a block in a new scope.
    pub(super) fn lower_block(&mut self, b: &BlockAst) -> Vec<Stmt> {
        self.fcx.scopes.push(Default::default());
        let mut out = self.lower_stmts(&b.stmts);
        if let Some(tail) = &b.tail {
            self.lower_expr_stmt(tail, &mut out);
        }
        self.fcx.scopes.pop();
        out
    }

    pub(super) fn lower_stmts(&mut self, stmts: &[StmtAst]) -> Vec<Stmt> {
        let mut out = Vec::new();
        for s in stmts {
            match s {
                StmtAst::Let {
                    name,
                    mutable,
                    ty,
                    init,
                    span,
                } => self.lower_let(name, *mutable, ty.as_ref(), init.as_ref(), *span, &mut out),
                StmtAst::Const {
                    name,
                    ty,
                    value,
                    span,
                } => self.declare_const(name, ty, value, *span),
                StmtAst::Expr(e) => self.lower_expr_stmt(e, &mut out),
            }
        }
        out
    }

    /// A `const` item: an integer or `bool` constant of the kernel, known once the kernel
    /// is specialised, usable wherever a const parameter is (array lengths, conditions).
    fn declare_const(&mut self, name: &str, ty: &crate::ast::TypeAst, value: &ExprAst, span: Span) {
        if !self.fcx.is_kernel {
            self.error(
                span,
                format!("`const {name}` belongs in a kernel's body; device functions take the value as a parameter"),
            );
            return;
        }
        if self.consts.iter().any(|c| c.name == name) {
            self.error(
                span,
                format!("`{name}` is already a constant of this kernel"),
            );
            return;
        }
        let declared = self.lower_type(ty);
        let scalar = match declared {
            Type::Scalar(s) if s.is_int() || s == Scalar::Bool => s,
            _ => {
                self.error(
                    span,
                    format!("`const {name}` must be an integer or `bool`, not `{declared}`"),
                );
                return;
            }
        };
        let lowered = self.lower_expr(value, Some(&declared));
        self.expect_type(
            &lowered,
            &declared,
            &format!("the declared type of `{name}`"),
        );
        let (value, known) = match self.const_eval(&lowered) {
            ConstVal::Known(v) => (v, true),
            ConstVal::Unknown => (0, false),
            ConstVal::NotConst => {
                self.error(
                    value.span,
                    format!("`{name}` must be a compile-time constant: literals, const parameters, other constants, `WAVE`, `BLOCK` or `BULK_COPY`, with arithmetic, comparisons, `min` and `max`"),
                );
                return;
            }
        };
        self.consts.push(crate::ir::NamedConst {
            name: name.to_string(),
            ty: scalar,
            value,
        });
        self.const_known.push(known);
    }

    fn lower_let(
        &mut self,
        name: &str,
        mutable: bool,
        ty: Option<&crate::ast::TypeAst>,
        init: Option<&ExprAst>,
        span: Span,
        out: &mut Vec<Stmt>,
    ) {
        if let Some(ExprAst {
            kind: ExprKindAst::Shared { elem, len },
            span: sspan,
        }) = init
        {
            self.declare_shared(name, elem, len, *sspan);
            return;
        }
        let declared = ty.map(|t| self.lower_type(t));
        let value = init.map(|e| self.lower_expr(e, declared.as_ref()));
        out.append(&mut self.fcx.pending);
        let ty = match (&declared, &value) {
            (Some(d), Some(v)) => {
                self.expect_type(v, d, &format!("the declared type of `{name}`"));
                d.clone()
            }
            (Some(d), None) => d.clone(),
            (None, Some(v)) => v.ty.clone(),
            (None, None) => {
                self.error(
                    span,
                    format!("`{name}` needs a type or an initial value: `let {name}: f32;`"),
                );
                Type::Unknown
            }
        };
        if ty == Type::Void {
            self.error(span, format!("`{name}` would hold no value"));
        }
        let local = self.fcx.add_local(name, ty, mutable);
        self.fcx.bind(name, Binding::Local(local));
        out.push(Stmt {
            kind: StmtKind::Let { local, init: value },
            span,
        });
    }

    fn declare_shared(
        &mut self,
        name: &str,
        elem: &crate::ast::TypeAst,
        len: &ExprAst,
        span: Span,
    ) {
        if !self.fcx.is_kernel {
            self.error(
                span,
                "declare shared arrays in the kernel and pass them to device functions as `&mut [T]`",
            );
        }
        if self.fcx.scopes.len() > 1 || self.fcx.loop_depth > 0 {
            self.error(
                span,
                "declare shared arrays at the top level of the kernel body (they live for the whole block)",
            );
        }
        let elem_ty = self.lower_type(elem);
        if !matches!(
            elem_ty,
            Type::Scalar(_) | Type::Vector(..) | Type::Generic(_) | Type::Unknown
        ) {
            self.error(elem.span(), "shared arrays hold scalars or vectors");
        }
        let n = self.const_len(len, "the shared array's length");
        let id = self.shared.len() as u32;
        self.shared.push(crate::ir::SharedArray {
            name: name.to_string(),
            elem: match &elem_ty {
                Type::Generic(_) | Type::Unknown => Type::Scalar(Scalar::F32),
                t => t.clone(),
            },
            len: n,
            span,
        });
        self.fcx.bind(
            name,
            Binding::Mem {
                mem: crate::ir::MemRef::Shared(id),
                elem: elem_ty,
                mutable: true,
            },
        );
    }

    /// Lowers an expression in statement position.
    pub(super) fn lower_expr_stmt(&mut self, e: &ExprAst, out: &mut Vec<Stmt>) {
        let span = e.span;
        let kind = match &e.kind {
            ExprKindAst::Assign { target, value } => {
                self.lower_assign(target, None, value, span, out);
                return;
            }
            ExprKindAst::CompoundAssign { op, target, value } => {
                self.lower_assign(target, Some(*op), value, span, out);
                return;
            }
            ExprKindAst::If { cond, then, els } => {
                let cond = self.lower_cond(cond);
                out.append(&mut self.fcx.pending);
                let then = self.lower_block(then);
                let els = match els {
                    None => Vec::new(),
                    Some(e) => match &e.kind {
                        ExprKindAst::Block(b) => self.lower_block(b),
                        _ => {
                            let mut v = Vec::new();
                            self.lower_expr_stmt(e, &mut v);
                            v
                        }
                    },
                };
                StmtKind::If { cond, then, els }
            }
            ExprKindAst::Block(b) => {
                let mut inner = self.lower_block(b);
                out.append(&mut inner);
                return;
            }
            ExprKindAst::For {
                var,
                var_span,
                start,
                end,
                inclusive,
                step,
                body,
            } => self.lower_for(
                var,
                *var_span,
                start,
                end,
                *inclusive,
                step.as_deref(),
                body,
            ),
            ExprKindAst::While { cond, body } => {
                let cond_e = self.lower_cond(cond);
                if !self.fcx.pending.is_empty() {
                    self.fcx.pending.clear();
                    self.error(cond.span, "a loop condition cannot contain an `if` expression; compute it in the loop body");
                }
                let body = self.lower_loop_body(body);
                StmtKind::While { cond: cond_e, body }
            }
            ExprKindAst::Loop { body } => {
                let body = self.lower_loop_body(body);
                StmtKind::While {
                    cond: Expr::lit(Lit::Bool(true), Scalar::Bool, span),
                    body,
                }
            }
            ExprKindAst::Break | ExprKindAst::Continue => {
                if self.fcx.loop_depth == 0 {
                    self.error(span, "`break` and `continue` belong inside a loop");
                }
                if matches!(e.kind, ExprKindAst::Break) {
                    StmtKind::Break
                } else {
                    StmtKind::Continue
                }
            }
            ExprKindAst::Return(value) => self.lower_return(value.as_deref(), span),
            ExprKindAst::MethodCall {
                recv, method, args, ..
            } if method == "store_vec" => match self.lower_store_vec(recv, args, span) {
                Some(k) => {
                    out.append(&mut self.fcx.pending);
                    k
                }
                None => return,
            },
            ExprKindAst::MethodCall {
                recv, method, args, ..
            } if method == "store_frag" => match self.lower_store_frag(recv, args, span) {
                Some(k) => {
                    out.append(&mut self.fcx.pending);
                    k
                }
                None => return,
            },
            ExprKindAst::MethodCall {
                recv, method, args, ..
            } if method == "copy_vec_async" => match self.lower_copy_vec_async(recv, args, span) {
                Some(k) => {
                    out.append(&mut self.fcx.pending);
                    k
                }
                None => return,
            },
            ExprKindAst::Call { path, args, .. } if path.len() == 1 && path[0] == "wait_copies" => {
                let [n] = self.exact_args::<1>(args, span, "wait_copies");
                let pending = self.lower_expr(
                    n,
                    Some(&crate::types::Type::Scalar(crate::types::Scalar::U32)),
                );
                match self.const_eval(&pending) {
                    super::ConstVal::Known(v) if (0..=8).contains(&v) => {
                        StmtKind::WaitCopies(v as u32)
                    }
                    super::ConstVal::Unknown => StmtKind::WaitCopies(0),
                    _ => {
                        self.error(n.span, "`wait_copies(n)` takes the groups left in flight as a compile-time constant from 0 to 8");
                        return;
                    }
                }
            }
            ExprKindAst::MethodCall {
                recv, method, args, ..
            } if method == "copy_async" => match self.lower_copy_async(recv, args, span) {
                Some(k) => {
                    out.append(&mut self.fcx.pending);
                    k
                }
                None => return,
            },
            ExprKindAst::Call { path, args, .. }
                if path.len() == 1 && ordering_statement(&path[0]).is_some() =>
            {
                if !args.is_empty() {
                    self.error(span, format!("`{}()` takes no arguments", path[0]));
                }
                ordering_statement(&path[0]).expect("matched above")
            }
            _ => {
                let value = self.lower_expr(e, None);
                out.append(&mut self.fcx.pending);
                match &value.kind {
                    ExprKind::Call { .. } | ExprKind::Atomic { .. } => StmtKind::Eval(value),
                    _ if value.ty == Type::Unknown => StmtKind::Eval(value),
                    _ => {
                        self.error(
                            span,
                            "this expression's value is unused; bind it with `let` or remove it",
                        );
                        return;
                    }
                }
            }
        };
        out.push(Stmt { kind, span });
    }

    fn lower_return(&mut self, value: Option<&ExprAst>, span: Span) -> StmtKind {
        let ret = self.fcx.ret.clone();
        match value {
            Some(v) => {
                if ret == Type::Void {
                    self.error(
                        v.span,
                        "this function returns nothing; kernels write results to buffers",
                    );
                    return StmtKind::Return(None);
                }
                let e = self.lower_expr(v, Some(&ret));
                self.expect_type(&e, &ret, "the function's return type");
                StmtKind::Return(Some(e))
            }
            None => {
                if ret != Type::Void {
                    self.error(span, format!("`return` needs a `{ret}` value here"));
                }
                StmtKind::Return(None)
            }
        }
    }

    fn lower_loop_body(&mut self, body: &BlockAst) -> Vec<Stmt> {
        self.fcx.loop_depth += 1;
        let b = self.lower_block(body);
        self.fcx.loop_depth -= 1;
        b
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_for(
        &mut self,
        var: &str,
        var_span: Span,
        start: &ExprAst,
        end: &ExprAst,
        inclusive: bool,
        step: Option<&ExprAst>,
        body: &BlockAst,
    ) -> StmtKind {
        let (start_e, end_e) = self.lower_pair(start, end);
        let mut ty = match self.infer.unify(&start_e.ty, &end_e.ty) {
            Some(t) => t,
            None => {
                self.error(
                    end.span,
                    format!(
                        "range bounds have different types `{}` and `{}`",
                        self.infer.resolve(&start_e.ty),
                        self.infer.resolve(&end_e.ty)
                    ),
                );
                Type::Unknown
            }
        };
        let step_e = match step {
            Some(s) => {
                let e = self.lower_expr(s, Some(&ty));
                if let Some(t) = self.infer.unify(&e.ty, &ty) {
                    ty = t;
                }
                e
            }
            None => Expr {
                kind: ExprKind::Lit(Lit::Int(1)),
                ty: ty.clone(),
                span: start.span,
            },
        };
        if !self.fcx.pending.is_empty() {
            self.fcx.pending.clear();
            self.error(start.span, "loop bounds cannot contain an `if` expression");
        }
        let resolved = self.infer.resolve(&ty);
        if !matches!(resolved, Type::Scalar(s) if s.is_int())
            && !matches!(resolved, Type::Infer(v) if !v.float)
            && resolved != Type::Unknown
        {
            self.error(
                start.span,
                format!("loop ranges must be over integers, found `{resolved}`"),
            );
        }
        if let Some(s) = step {
            if let ConstVal::Known(v) = self.const_eval(&step_e) {
                if v <= 0 {
                    self.error(
                        s.span,
                        "`step_by` needs a positive step; count down with a `while` loop",
                    );
                }
            }
        }
        let end_e = if inclusive {
            let one = Expr {
                kind: ExprKind::Lit(Lit::Int(1)),
                ty: ty.clone(),
                span: end_e.span,
            };
            Expr {
                span: end_e.span,
                ty: ty.clone(),
                kind: ExprKind::Binary {
                    op: crate::ops::BinOp::Add,
                    lhs: Box::new(end_e),
                    rhs: Box::new(one),
                },
            }
        } else {
            end_e
        };
        let constant = [&start_e, &end_e, &step_e]
            .iter()
            .all(|e| self.const_eval(e) != ConstVal::NotConst);
        self.fcx.scopes.push(Default::default());
        let local = self.fcx.add_local(var, ty, false);
        self.fcx.bind(var, Binding::Local(local));
        if constant {
            self.fcx.static_locals.insert(local);
        }
        if var == "WAVE" || var == "BULK_COPY" || self.consts.iter().any(|c| c.name == var) {
            self.error(
                var_span,
                format!("`{var}` is a constant; name the loop variable differently"),
            );
        }
        let body = self.lower_loop_body(body);
        self.fcx.scopes.pop();
        StmtKind::For {
            local,
            start: start_e,
            end: end_e,
            step: step_e,
            body,
            unroll: constant,
        }
    }

    /// Lowers a condition, which must be `bool`.
    pub(super) fn lower_cond(&mut self, c: &ExprAst) -> Expr {
        let e = self.lower_expr(c, Some(&Type::Scalar(Scalar::Bool)));
        self.expect_type(&e, &Type::Scalar(Scalar::Bool), "a condition");
        e
    }
}

/// True for expressions that are statements even without a semicolon.
fn is_statement_like(e: &ExprAst) -> bool {
    matches!(
        e.kind,
        ExprKindAst::For { .. }
            | ExprKindAst::While { .. }
            | ExprKindAst::Loop { .. }
            | ExprKindAst::Return(_)
            | ExprKindAst::Assign { .. }
            | ExprKindAst::CompoundAssign { .. }
            | ExprKindAst::Break
            | ExprKindAst::Continue
    )
}

fn ends_in_return(stmts: &[Stmt]) -> bool {
    match stmts.last().map(|s| &s.kind) {
        Some(StmtKind::Return(_)) => true,
        Some(StmtKind::If { then, els, .. }) => ends_in_return(then) && ends_in_return(els),
        Some(StmtKind::While { cond, .. }) => {
            matches!(cond.kind, ExprKind::Lit(Lit::Bool(true)))
        }
        _ => false,
    }
}

/// The built-in statements without arguments that order memory or execution.
pub(super) fn ordering_statement(name: &str) -> Option<StmtKind> {
    Some(match name {
        "fence" => StmtKind::Fence,
        "barrier" => StmtKind::Barrier,
        "wait_prior_launch" => StmtKind::WaitPriorLaunch,
        "allow_next_launch" => StmtKind::AllowNextLaunch,
        "wait_async" => StmtKind::WaitAsync,
        "commit_copies" => StmtKind::CommitCopies,
        _ => return None,
    })
}
