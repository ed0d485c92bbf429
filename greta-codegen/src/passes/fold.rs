//! Constant folding: arithmetic on literals and compile-time constants becomes a literal,
//! branches on constant conditions keep only the taken side.

use crate::ir::{self, ConstRef, Expr, ExprKind, Lit, Stmt, StmtKind};
use crate::ops::{BinOp, UnOp};
use crate::types::{Scalar, Type};

/// Values of the kernel's named constants and the target's wave size.
pub struct FoldCx<'a> {
    pub consts: &'a [i128],
    pub wave: u32,
    pub bulk_copy: bool,
}

/// Folds every expression in `stmts` and prunes constant branches.
pub fn fold_stmts(stmts: &mut Vec<Stmt>, cx: &FoldCx) {
    ir::walk_stmts_mut(stmts, &mut |e| fold_expr(e, cx));
    prune(stmts);
}

/// Replaces `if true/false` by the taken branch, recursively.
fn prune(stmts: &mut Vec<Stmt>) {
    let mut out = Vec::with_capacity(stmts.len());
    for mut s in stmts.drain(..) {
        match &mut s.kind {
            StmtKind::If { cond, then, els } => {
                prune(then);
                prune(els);
                match cond.kind {
                    ExprKind::Lit(Lit::Bool(true)) => out.push(scope(std::mem::take(then), s.span)),
                    ExprKind::Lit(Lit::Bool(false)) => {
                        if !els.is_empty() {
                            out.push(scope(std::mem::take(els), s.span))
                        }
                    }
                    _ => out.push(s),
                }
            }
            StmtKind::For { body, .. } | StmtKind::While { body, .. } | StmtKind::Scope(body) => {
                prune(body);
                out.push(s);
            }
            _ => out.push(s),
        }
    }
    *stmts = out;
}

fn scope(body: Vec<Stmt>, span: crate::diag::Span) -> Stmt {
    Stmt {
        kind: StmtKind::Scope(body),
        span,
    }
}

/// The literal value of an integer-typed expression, with constants resolved.
pub(super) fn int_value(e: &Expr, cx: &FoldCx) -> Option<i128> {
    match e.kind {
        ExprKind::Lit(Lit::Int(v)) => Some(v),
        ExprKind::Lit(Lit::Bool(b)) => Some(b as i128),
        ExprKind::Const(ConstRef::Named(i)) => cx.consts.get(i as usize).copied(),
        ExprKind::Const(ConstRef::Wave) => Some(cx.wave as i128),
        ExprKind::Const(ConstRef::BulkCopy) => Some(cx.bulk_copy as i128),
        _ => None,
    }
}

/// Wraps `v` into the range of integer type `s`, as two's-complement hardware does.
pub fn wrap_int(v: i128, s: Scalar) -> i128 {
    let bits = s.bits();
    let mask = (1i128 << bits) - 1;
    let u = v & mask;
    if s.is_signed_int() && u >> (bits - 1) & 1 == 1 {
        u - (1i128 << bits)
    } else {
        u
    }
}

/// Folds one node whose children are already folded.
fn fold_expr(e: &mut Expr, cx: &FoldCx) {
    let Type::Scalar(ty) = e.ty else { return };
    let folded = match &e.kind {
        ExprKind::Binary {
            op: op @ (BinOp::And | BinOp::Or),
            lhs,
            rhs,
        } if int_value(lhs, cx).is_none() || int_value(rhs, cx).is_none() => {
            // One side known: `false && x` and `true || x` are decided without `x` (which
            // would not be evaluated); `true && x`, `false || x`, `x && true` and
            // `x || false` are `x`. (`x && false` keeps `x`, which may have effects.)
            let and = *op == BinOp::And;
            match (int_value(lhs, cx), int_value(rhs, cx)) {
                (Some(a), _) if (a != 0) != and => Some(Lit::Bool(!and)),
                (Some(_), _) => {
                    *e = (**rhs).clone();
                    return;
                }
                (None, Some(b)) if (b != 0) == and => {
                    *e = (**lhs).clone();
                    return;
                }
                _ => None,
            }
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let (Some(a), Some(b)) = (int_value(lhs, cx), int_value(rhs, cx)) else {
                return;
            };
            // Operands that are both bare constants stay symbolic only when they are the
            // whole expression; any arithmetic on them folds.
            fold_binary(*op, a, b, lhs.ty.as_scalar(), ty)
        }
        ExprKind::Unary { op, arg } => {
            let Some(a) = int_value(arg, cx) else { return };
            match (op, ty) {
                (UnOp::Neg, t) if t.is_int() => Some(Lit::Int(wrap_int(-a, t))),
                (UnOp::Not, Scalar::Bool) => Some(Lit::Bool(a == 0)),
                (UnOp::Not, t) if t.is_int() => Some(Lit::Int(wrap_int(!a, t))),
                _ => None,
            }
        }
        ExprKind::Cast(arg) => match (int_value(arg, cx), arg.kind.clone()) {
            (Some(a), _) if ty.is_int() => Some(Lit::Int(wrap_int(a, ty))),
            (Some(a), _) if ty.is_float() => Some(Lit::Float(a as f64)),
            (None, ExprKind::Lit(Lit::Bool(b))) if ty.is_int() => Some(Lit::Int(b as i128)),
            _ => None,
        },
        ExprKind::Select { cond, a, b } => match cond.kind {
            ExprKind::Lit(Lit::Bool(c)) => {
                *e = if c { (**a).clone() } else { (**b).clone() };
                return;
            }
            _ => None,
        },
        _ => None,
    };
    if let Some(lit) = folded {
        e.kind = ExprKind::Lit(lit);
    }
}

fn fold_binary(
    op: BinOp,
    a: i128,
    b: i128,
    operand: Option<Scalar>,
    result: Scalar,
) -> Option<Lit> {
    let operand = operand.unwrap_or(result);
    let int = |v: i128| Some(Lit::Int(wrap_int(v, result)));
    let cmp = |c: bool| Some(Lit::Bool(c));
    match op {
        BinOp::Add => int(a + b),
        BinOp::Sub => int(a - b),
        BinOp::Mul => int(a.checked_mul(b)?),
        BinOp::Div if b != 0 => int(a / b),
        BinOp::Rem if b != 0 => int(a % b),
        BinOp::Shl if (0..operand.bits() as i128).contains(&b) => int(a << b),
        BinOp::Shr if (0..operand.bits() as i128).contains(&b) => int(a >> b),
        BinOp::BitAnd if result == Scalar::Bool => cmp(a != 0 && b != 0),
        BinOp::BitOr if result == Scalar::Bool => cmp(a != 0 || b != 0),
        BinOp::BitAnd => int(a & b),
        BinOp::BitOr => int(a | b),
        BinOp::BitXor => int(a ^ b),
        BinOp::Eq => cmp(a == b),
        BinOp::Ne => cmp(a != b),
        BinOp::Lt => cmp(a < b),
        BinOp::Le => cmp(a <= b),
        BinOp::Gt => cmp(a > b),
        BinOp::Ge => cmp(a >= b),
        BinOp::And => cmp(a != 0 && b != 0),
        BinOp::Or => cmp(a != 0 || b != 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boolean(kind: ExprKind) -> Expr {
        Expr {
            kind,
            ty: Type::Scalar(Scalar::Bool),
            span: crate::diag::Span::default(),
        }
    }

    fn lit(b: bool) -> Expr {
        boolean(ExprKind::Lit(Lit::Bool(b)))
    }

    fn folded(op: BinOp, lhs: Expr, rhs: Expr) -> ExprKind {
        let mut e = boolean(ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        });
        fold_expr(
            &mut e,
            &FoldCx {
                consts: &[],
                wave: 32,
                bulk_copy: false,
            },
        );
        e.kind
    }

    /// A known side of `&&` or `||` decides or disappears; an unknown side that could
    /// have effects stays when the known one is on the right.
    #[test]
    fn logic_with_one_known_side_folds() {
        let x = || boolean(ExprKind::Local(0));
        let is_x = |k: ExprKind| matches!(k, ExprKind::Local(0));
        let is_lit = |k: ExprKind, v: bool| matches!(k, ExprKind::Lit(Lit::Bool(b)) if b == v);
        assert!(is_lit(folded(BinOp::And, lit(false), x()), false));
        assert!(is_lit(folded(BinOp::Or, lit(true), x()), true));
        assert!(is_x(folded(BinOp::And, lit(true), x())));
        assert!(is_x(folded(BinOp::Or, lit(false), x())));
        assert!(is_x(folded(BinOp::And, x(), lit(true))));
        assert!(is_x(folded(BinOp::Or, x(), lit(false))));
        assert!(matches!(
            folded(BinOp::And, x(), lit(false)),
            ExprKind::Binary { .. }
        ));
        assert!(matches!(
            folded(BinOp::Or, x(), lit(true)),
            ExprKind::Binary { .. }
        ));
        assert!(is_lit(folded(BinOp::And, lit(true), lit(false)), false));
    }

    #[test]
    fn wrapping_matches_twos_complement() {
        assert_eq!(wrap_int(-1, Scalar::U32), u32::MAX as i128);
        assert_eq!(wrap_int(u32::MAX as i128 + 2, Scalar::U32), 1);
        assert_eq!(wrap_int(128, Scalar::I8), -128);
        assert_eq!(wrap_int(-129, Scalar::I8), 127);
    }
}
