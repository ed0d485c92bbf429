//! What a kernel's launch depends on, read from its body: whether it waits for the
//! previous launch itself (and so may be launched to overlap it), which buffers it names
//! before that wait, and whether it copies asynchronously. The printer and the GPU
//! backends ask these questions; the answers come from one program-order search.

use crate::diag::Span;
use crate::ir::{walk_expr, walk_stmts, CallArg, Expr, ExprKind, Kernel, MemRef, Stmt, StmtKind};

/// The first answer `probe` gives for a statement of `stmts`, in program order, looking
/// inside branches and loops.
fn first<T>(stmts: &[Stmt], probe: &dyn Fn(&Stmt) -> Option<T>) -> Option<T> {
    stmts.iter().find_map(|s| {
        probe(s).or_else(|| match &s.kind {
            StmtKind::If { then, els, .. } => first(then, probe).or_else(|| first(els, probe)),
            StmtKind::For { body, .. } | StmtKind::While { body, .. } | StmtKind::Scope(body) => {
                first(body, probe)
            }
            _ => None,
        })
    })
}

/// Whether `stmts` contain a `WaitPriorLaunch`, at any depth.
fn contains_wait(stmts: &[Stmt]) -> bool {
    first(stmts, &|s| {
        matches!(s.kind, StmtKind::WaitPriorLaunch).then_some(())
    })
    .is_some()
}

/// The position of the first `copy_async` or `wait_async` in `stmts`, at any depth.
pub fn first_async_copy(stmts: &[Stmt]) -> Option<Span> {
    first(stmts, &|s| {
        matches!(s.kind, StmtKind::CopyAsync { .. } | StmtKind::WaitAsync).then_some(s.span)
    })
}

impl Kernel {
    /// Whether the kernel's body copies asynchronously (and so needs its waves' barriers).
    pub fn uses_async_copy(&self) -> bool {
        first_async_copy(&self.entry.body).is_some()
    }

    /// Whether the kernel body reaches a `WaitPriorLaunch` before any `CopyAsync`: then the
    /// copies' barriers can be armed at the wait, after the loads issued before it.
    pub fn waits_before_copying(&self) -> bool {
        let copy_or_wait = |s: &Stmt| match s.kind {
            StmtKind::CopyAsync { .. } => Some(false),
            StmtKind::WaitPriorLaunch => Some(true),
            _ => None,
        };
        first(&self.entry.body, &copy_or_wait) == Some(true)
    }

    /// Whether the kernel waits for the previous launch itself (`wait_prior_launch()`), so
    /// the runtime may start it while that launch still runs.
    pub fn waits_prior_launch(&self) -> bool {
        contains_wait(&self.entry.body) || self.funcs.iter().any(|f| contains_wait(&f.body))
    }

    /// For each parameter, whether a statement before the kernel's first `WaitPriorLaunch`
    /// (in program order) names it. Such a buffer is read while the previous launch may
    /// still run, so by the statement's contract that launch does not write it; the others
    /// may hold the previous launch's results. All false for a kernel that never waits in
    /// its body (also one that waits only inside a device function: nothing is assumed).
    pub fn named_before_wait(&self) -> Vec<bool> {
        fn mark(e: &Expr, named: &mut [bool]) {
            match &e.kind {
                ExprKind::Load {
                    mem: MemRef::Global(p),
                    ..
                }
                | ExprKind::FragLoad {
                    mem: MemRef::Global(p),
                    ..
                }
                | ExprKind::Atomic {
                    mem: MemRef::Global(p),
                    ..
                } => named[*p as usize] = true,
                ExprKind::Call { args, .. } => {
                    for a in args {
                        if let CallArg::Memory(MemRef::Global(p)) = a {
                            named[*p as usize] = true;
                        }
                    }
                }
                _ => {}
            }
        }
        /// Marks what `stmts` name up to the wait; true once it is found.
        fn scan(stmts: &[Stmt], named: &mut [bool]) -> bool {
            for s in stmts {
                let body_with_wait = match &s.kind {
                    StmtKind::WaitPriorLaunch => return true,
                    StmtKind::If { cond, then, els }
                        if contains_wait(then) || contains_wait(els) =>
                    {
                        walk_expr(cond, &mut |e| mark(e, named));
                        if scan(then, named) {
                            return true;
                        }
                        els
                    }
                    StmtKind::For {
                        start,
                        end,
                        step,
                        body,
                        ..
                    } if contains_wait(body) => {
                        for e in [start, end, step] {
                            walk_expr(e, &mut |e| mark(e, named));
                        }
                        body
                    }
                    StmtKind::While { cond, body } if contains_wait(body) => {
                        walk_expr(cond, &mut |e| mark(e, named));
                        body
                    }
                    StmtKind::Scope(body) if contains_wait(body) => body,
                    _ => {
                        walk_stmts(std::slice::from_ref(s), &mut |e| mark(e, named));
                        if let StmtKind::Store {
                            mem: MemRef::Global(p),
                            ..
                        }
                        | StmtKind::CopyAsync {
                            src: MemRef::Global(p),
                            ..
                        }
                        | StmtKind::FragStore {
                            mem: MemRef::Global(p),
                            ..
                        }
                        | StmtKind::CopyVecAsync {
                            src: MemRef::Global(p),
                            ..
                        } = &s.kind
                        {
                            named[*p as usize] = true;
                        }
                        continue;
                    }
                };
                if scan(body_with_wait, named) {
                    return true;
                }
            }
            false
        }
        let mut named = vec![false; self.params.len()];
        if scan(&self.entry.body, &mut named) {
            named
        } else {
            vec![false; self.params.len()]
        }
    }
}
