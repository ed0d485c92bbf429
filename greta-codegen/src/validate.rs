//! Validation of specialised IR against a target: every type concrete, register indices
//! constant, locals assigned before they are read, block size and shared memory within the
//! target's limits.

use crate::diag::Diagnostic;
use crate::ir::{Expr, ExprKind, Function, Kernel, Stmt, StmtKind};
use crate::launch::first_async_copy;
use crate::target::Target;
use crate::types::Type;
use std::collections::HashSet;

/// Checks a kernel; returns every problem found.
pub fn validate(k: &Kernel, target: &Target) -> Result<(), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let span = k.entry.span;
    if k.block == 0 || k.block > target.max_block {
        diags.push(Diagnostic::new(
            span,
            format!(
                "block size {} is out of range 1..={}",
                k.block, target.max_block
            ),
        ));
    } else if !k.block.is_multiple_of(target.wave) {
        diags.push(Diagnostic::new(
            span,
            format!(
                "block size {} is not a multiple of the wavefront size {} of {}",
                k.block, target.wave, target.name
            ),
        ));
    }
    for f in &k.funcs {
        if let Some(at) = first_async_copy(&f.body) {
            diags.push(Diagnostic::new(
                at,
                "`copy_async` and `wait_async` belong in the kernel's body, not a device function",
            ));
        }
    }
    if let Some(at) = first_async_copy(&k.entry.body).filter(|_| !target.bulk_copy) {
        diags.push(Diagnostic::new(
            at,
            format!(
                "{} has no bulk copies; guard `copy_async` and `wait_async` with `if BULK_COPY == 1`",
                target.name
            ),
        ));
    }
    let lds = k.layout.total();
    if lds > target.shared_bytes {
        diags.push(Diagnostic::new(
            k.shared.first().map(|s| s.span).unwrap_or(span),
            format!(
                "the kernel uses {lds} bytes of shared memory; {} allows {} per block",
                target.name, target.shared_bytes
            ),
        ));
    }
    for f in k.funcs.iter().chain(std::iter::once(&k.entry)) {
        check_function(f, &mut diags);
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(diags)
    }
}

fn check_function(f: &Function, diags: &mut Vec<Diagnostic>) {
    for l in &f.locals {
        if !l.ty.is_concrete() {
            diags.push(Diagnostic::new(
                f.span,
                format!("local `{}` has no concrete type ({})", l.name, l.ty),
            ));
        }
    }
    crate::ir::walk_stmts(&f.body, &mut |e| {
        if !e.ty.is_concrete() {
            diags.push(Diagnostic::new(
                e.span,
                format!("expression has no concrete type ({})", e.ty),
            ));
        }
        if let ExprKind::Element { index, .. } = &e.kind {
            if index.as_int_lit().is_none() {
                diags.push(Diagnostic::new(
                    index.span,
                    "register index is not a constant after unrolling",
                ));
            }
        }
    });
    let mut assigned: HashSet<u32> = f
        .params
        .iter()
        .filter_map(|p| match p {
            crate::ir::FnParam::Value(l) => Some(*l),
            crate::ir::FnParam::Memory { .. } => None,
        })
        .collect();
    definite_assignment(&f.body, &mut assigned, f, diags);
}

/// Reports reads of locals that are not assigned on every path before the read. Returns
/// true if the statements always leave the enclosing scope (return/break/continue), in
/// which case nothing after them is reached.
fn definite_assignment(
    stmts: &[Stmt],
    assigned: &mut HashSet<u32>,
    f: &Function,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let reads = |e: &Expr, assigned: &HashSet<u32>, diags: &mut Vec<Diagnostic>| {
        crate::ir::walk_expr(e, &mut |x| {
            if let ExprKind::Local(l) = x.kind {
                if !assigned.contains(&l) {
                    let d = Diagnostic::new(
                        x.span,
                        format!(
                            "`{}` is read before it is assigned on every path; give it an initial value",
                            f.locals[l as usize].name
                        ),
                    );
                    if !diags.contains(&d) {
                        diags.push(d);
                    }
                }
            }
        });
    };
    for s in stmts {
        match &s.kind {
            StmtKind::Let { local, init } => {
                if let Some(e) = init {
                    reads(e, assigned, diags);
                    assigned.insert(*local);
                } else if matches!(f.locals[*local as usize].ty, Type::Array(..)) {
                    // Element-wise initialisation of an array is not tracked per element.
                    assigned.insert(*local);
                }
            }
            StmtKind::Assign { local, value } => {
                reads(value, assigned, diags);
                assigned.insert(*local);
            }
            StmtKind::SetElement {
                local,
                index,
                value,
            } => {
                reads(index, assigned, diags);
                reads(value, assigned, diags);
                // A vector built lane by lane counts as assigned once any lane is written.
                assigned.insert(*local);
            }
            StmtKind::Store { index, value, .. } => {
                reads(index, assigned, diags);
                reads(value, assigned, diags);
            }
            StmtKind::Eval(e) => reads(e, assigned, diags),
            StmtKind::If { cond, then, els } => {
                reads(cond, assigned, diags);
                let mut a = assigned.clone();
                let mut b = assigned.clone();
                let ta = definite_assignment(then, &mut a, f, diags);
                let tb = definite_assignment(els, &mut b, f, diags);
                match (ta, tb) {
                    (true, true) => return true,
                    (true, false) => *assigned = b,
                    (false, true) => *assigned = a,
                    (false, false) => *assigned = a.intersection(&b).copied().collect(),
                }
            }
            StmtKind::For {
                local,
                start,
                end,
                step,
                body,
                ..
            } => {
                reads(start, assigned, diags);
                reads(end, assigned, diags);
                reads(step, assigned, diags);
                let mut inner = assigned.clone();
                inner.insert(*local);
                definite_assignment(body, &mut inner, f, diags);
            }
            StmtKind::While { cond, body } => {
                reads(cond, assigned, diags);
                let mut inner = assigned.clone();
                definite_assignment(body, &mut inner, f, diags);
            }
            StmtKind::Scope(body) => {
                if definite_assignment(body, assigned, f, diags) {
                    return true;
                }
            }
            StmtKind::Return(v) => {
                if let Some(e) = v {
                    reads(e, assigned, diags);
                }
                return true;
            }
            StmtKind::Break | StmtKind::Continue => return true,
            StmtKind::CopyAsync {
                to, from, count, ..
            } => {
                reads(to, assigned, diags);
                reads(from, assigned, diags);
                reads(count, assigned, diags);
            }
            StmtKind::CopyVecAsync { to, from, .. } => {
                reads(to, assigned, diags);
                reads(from, assigned, diags);
            }
            StmtKind::FragStore {
                offset, ld, value, ..
            } => {
                reads(offset, assigned, diags);
                reads(ld, assigned, diags);
                reads(value, assigned, diags);
            }
            StmtKind::Barrier
            | StmtKind::Fence
            | StmtKind::WaitPriorLaunch
            | StmtKind::AllowNextLaunch
            | StmtKind::WaitAsync
            | StmtKind::CommitCopies
            | StmtKind::WaitCopies(_) => {}
        }
    }
    false
}
