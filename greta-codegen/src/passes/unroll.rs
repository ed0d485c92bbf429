//! Full unrolling of compile-time-bounded loops whose induction variable indexes register
//! arrays or vector lanes, so that every such index becomes a literal (registers cannot be
//! addressed at run time without spilling to scratch memory).

use super::fold::{fold_stmts, int_value, FoldCx};
use crate::diag::Diagnostic;
use crate::ir::{self, Expr, ExprKind, Lit, LocalId, Stmt, StmtKind};

/// Loops longer than this are not unrolled; indexing registers in them is an error.
const MAX_UNROLL: i128 = 256;

/// Unrolls, in place, the loops that need it (outer loops first, so that inner bounds that
/// depend on outer induction variables become constants).
pub fn unroll_stmts(stmts: &mut Vec<Stmt>, cx: &FoldCx, diags: &mut Vec<Diagnostic>) {
    let mut out = Vec::with_capacity(stmts.len());
    for mut s in stmts.drain(..) {
        let span = s.span;
        match &mut s.kind {
            StmtKind::For {
                local,
                start,
                end,
                step,
                body,
                unroll: true,
            } if indexes_registers_with(body, *local) => {
                let bounds = (
                    int_value(start, cx),
                    int_value(end, cx),
                    int_value(step, cx),
                );
                let (Some(a), Some(b), Some(c)) = bounds else {
                    diags.push(Diagnostic::new(span, "this loop indexes registers but its bounds are not compile-time constants after specialisation"));
                    out.push(s);
                    continue;
                };
                let trips = if b > a { (b - a + c - 1) / c } else { 0 };
                if trips > MAX_UNROLL {
                    diags.push(Diagnostic::new(
                        span,
                        format!("this loop indexes registers and would unroll {trips} times (at most {MAX_UNROLL}); index a shared array instead"),
                    ));
                    out.push(s);
                    continue;
                }
                if has_own_break(body) {
                    diags.push(Diagnostic::new(
                        span,
                        "a loop that indexes registers is unrolled and cannot `break` or `continue`; guard the body with `if` instead",
                    ));
                    out.push(s);
                    continue;
                }
                let ty = start.ty.clone();
                let mut v = a;
                while v < b {
                    let mut copy = body.clone();
                    substitute(&mut copy, *local, v, &ty);
                    fold_stmts(&mut copy, cx);
                    unroll_stmts(&mut copy, cx, diags);
                    out.push(Stmt {
                        kind: StmtKind::Scope(copy),
                        span,
                    });
                    v += c;
                }
            }
            // A loop that folding left with one trip is its body, run once.
            StmtKind::For {
                local,
                start,
                end,
                step,
                body,
                ..
            } if single_trip(start, end, step, cx) && !has_own_break(body) => {
                let v = int_value(start, cx).expect("single_trip checked it");
                let mut once = std::mem::take(body);
                substitute(&mut once, *local, v, &start.ty);
                fold_stmts(&mut once, cx);
                unroll_stmts(&mut once, cx, diags);
                out.push(Stmt {
                    kind: StmtKind::Scope(once),
                    span,
                });
            }
            StmtKind::For { body, .. } | StmtKind::While { body, .. } | StmtKind::Scope(body) => {
                unroll_stmts(body, cx, diags);
                out.push(s);
            }
            StmtKind::If { then, els, .. } => {
                unroll_stmts(then, cx, diags);
                unroll_stmts(els, cx, diags);
                out.push(s);
            }
            _ => out.push(s),
        }
    }
    *stmts = out;
}

/// True if the bounds are constants that make exactly one trip.
fn single_trip(start: &Expr, end: &Expr, step: &Expr, cx: &FoldCx) -> bool {
    match (
        int_value(start, cx),
        int_value(end, cx),
        int_value(step, cx),
    ) {
        (Some(a), Some(b), Some(c)) => c > 0 && b > a && b - a <= c,
        _ => false,
    }
}

/// True if `local` appears inside an element index (register array or vector lane).
fn indexes_registers_with(body: &[Stmt], local: LocalId) -> bool {
    let in_expr = |e: &Expr| {
        let mut found = false;
        ir::walk_expr(e, &mut |x| {
            if let ExprKind::Element { index, .. } = &x.kind {
                found |= index.mentions_local(local);
            }
        });
        found
    };
    body.iter().any(|s| match &s.kind {
        StmtKind::SetElement { index, value, .. } => index.mentions_local(local) || in_expr(value),
        StmtKind::Let { init, .. } => init.as_ref().is_some_and(in_expr),
        StmtKind::Assign { value, .. } | StmtKind::Eval(value) => in_expr(value),
        StmtKind::Return(v) => v.as_ref().is_some_and(in_expr),
        StmtKind::Store { index, value, .. } => in_expr(index) || in_expr(value),
        StmtKind::CopyAsync {
            to, from, count, ..
        } => in_expr(to) || in_expr(from) || in_expr(count),
        StmtKind::FragStore {
            offset, ld, value, ..
        } => in_expr(offset) || in_expr(ld) || in_expr(value),
        StmtKind::CopyVecAsync { to, from, .. } => in_expr(to) || in_expr(from),
        StmtKind::If { cond, then, els } => {
            in_expr(cond)
                || indexes_registers_with(then, local)
                || indexes_registers_with(els, local)
        }
        StmtKind::For {
            start,
            end,
            step,
            body,
            ..
        } => in_expr(start) || in_expr(end) || in_expr(step) || indexes_registers_with(body, local),
        StmtKind::While { cond, body } => in_expr(cond) || indexes_registers_with(body, local),
        StmtKind::Scope(body) => indexes_registers_with(body, local),
        StmtKind::Break
        | StmtKind::Continue
        | StmtKind::Barrier
        | StmtKind::Fence
        | StmtKind::WaitPriorLaunch
        | StmtKind::AllowNextLaunch
        | StmtKind::WaitAsync
        | StmtKind::CommitCopies
        | StmtKind::WaitCopies(_) => false,
    })
}

/// True if the loop body breaks or continues this loop (not an inner one).
fn has_own_break(stmts: &[Stmt]) -> bool {
    stmts.iter().any(|s| match &s.kind {
        StmtKind::Break | StmtKind::Continue => true,
        StmtKind::If { then, els, .. } => has_own_break(then) || has_own_break(els),
        StmtKind::Scope(b) => has_own_break(b),
        _ => false,
    })
}

/// Replaces reads of `local` by the literal `value`.
fn substitute(stmts: &mut [Stmt], local: LocalId, value: i128, ty: &crate::types::Type) {
    ir::walk_stmts_mut(stmts, &mut |e| {
        if matches!(e.kind, ExprKind::Local(l) if l == local) {
            e.kind = ExprKind::Lit(Lit::Int(value));
            e.ty = ty.clone();
        }
    });
}
