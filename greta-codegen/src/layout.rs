//! Where a specialised kernel's shared memory goes: its arrays (each 16-byte aligned in one
//! allocation), the block-reduction scratch and the asynchronous copies' barriers, and how
//! many bytes the launch must request dynamically. Computed once when the kernel is
//! specialised and stored on it (as [`SharedLayout`], part of the IR); the validator, the printer, the GPU backends and the CPU
//! interpreter all read this one answer.

use crate::ir::{walk_stmts, Builtin, ExprKind, Kernel, SharedArray, SharedLayout};
use crate::target::Target;
use std::collections::HashSet;

impl SharedLayout {
    /// The layout of `kernel` on `target`.
    pub fn of(kernel: &Kernel, target: &Target) -> SharedLayout {
        let mut at = 0;
        let offsets = kernel
            .shared
            .iter()
            .map(|s| {
                let offset = at;
                at = (at + s.bytes()).next_multiple_of(16);
                offset
            })
            .collect();
        let waves = kernel.block.div_ceil(target.wave).max(1);
        let barrier_bytes = if kernel.uses_async_copy() {
            8 * waves
        } else {
            0
        };
        let mut layout = SharedLayout {
            offsets,
            arrays_bytes: at,
            declared_bytes: kernel.shared.iter().map(SharedArray::bytes).sum(),
            reduction_bytes: reduction_bytes(kernel, waves),
            barrier_bytes,
            dynamic_bytes: 0,
        };
        if layout.total() > target.static_shared_bytes {
            layout.dynamic_bytes = layout.arrays_bytes;
        }
        layout
    }

    /// Everything one block uses, the figure the target's limit applies to.
    pub fn total(&self) -> u32 {
        self.declared_bytes + self.reduction_bytes + self.barrier_bytes
    }
}

/// Bytes of the block-reduction slots: one per wave for each distinct reduction type.
fn reduction_bytes(kernel: &Kernel, waves: u32) -> u32 {
    let mut types = HashSet::new();
    for f in kernel.funcs.iter().chain(std::iter::once(&kernel.entry)) {
        walk_stmts(&f.body, &mut |e| {
            if let ExprKind::Builtin {
                op: Builtin::BlockReduce(op),
                ..
            } = e.kind
            {
                types.insert((op, e.ty.clone()));
            }
        });
    }
    types
        .iter()
        .map(|(_, t)| t.size().unwrap_or(4) * waves)
        .sum()
}
