//! The IR interpreter. A kernel is compiled once per wave size into flat code over value
//! slots that hold one scalar per lane ([`compile`]); each block then runs its waves in
//! lockstep under exec masks, interleaved between barriers, with every memory access
//! checked. Blocks run in parallel across the machine's cores.
//!
//! The model follows the hardware where kernels can observe it, and reports an error where
//! GPUs would hang, race or disagree:
//! - `if`, loops, `break`, `continue` and `return` (also inside device functions, which are
//!   inlined) narrow and restore the wave's exec mask; a region no lane enters is skipped.
//!   `&&`, `||` and `if`-values evaluate their right side only on the lanes that need it.
//! - Cross-lane operations work at the wave width and see only active lanes; a shuffle from
//!   an inactive lane or from outside the wave is an error. Wave reductions follow
//!   `greta_wave_reduce`: a butterfly over a full wave, else the active lanes in order.
//! - A wave runs until its next barrier or block reduction; when every live wave waits at
//!   the same one, all resume. A barrier that not every live lane of its wave reaches, or
//!   waves waiting at different barriers, is an error; so is a block reduction that an
//!   exited wave or lane 0 misses (its partial would never be written).
//! - Shared memory starts poisoned (reading unwritten bytes is an error); global accesses
//!   are bounds-checked; integer division by zero and out-of-range shifts are errors;
//!   optionally, storing a non-finite float to global memory is too.

mod code;
mod compile;
mod exec;
mod mma;
mod value;

pub use code::Code;

use super::memory::HostMemory;
use super::CpuOptions;
use crate::args::Grid;
use crate::error::{Error, Result};
use greta_codegen::ir::Kernel;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A bound launch argument.
pub enum ArgValue<'a> {
    Memory(&'a HostMemory),
    Scalar(u64),
}

/// Compiles `kernel` for `target` (its wavefront size and constants).
pub fn compile(kernel: &Kernel, target: &greta_codegen::Target) -> Result<Code> {
    compile::compile(kernel, target).map_err(|u| Error::Execution {
        kernel: kernel.symbol.clone(),
        message: format!(
            "{}: the CPU interpreter does not support {}",
            u.place, u.message
        ),
    })
}

/// Runs every block of the grid. If blocks fail, the error is that of the lowest block
/// index, whatever order the blocks ran in.
pub fn execute(
    kernel: &Kernel,
    code: &Code,
    grid: Grid,
    args: &[ArgValue],
    options: &CpuOptions,
) -> Result<()> {
    let launch = exec::Launch {
        kernel,
        code,
        globals: args
            .iter()
            .map(|a| match a {
                ArgValue::Memory(m) => Some(*m),
                ArgValue::Scalar(_) => None,
            })
            .collect(),
        params: args
            .iter()
            .map(|a| match a {
                ArgValue::Scalar(bits) => *bits,
                ArgValue::Memory(_) => 0,
            })
            .collect(),
        grid: [grid.x, grid.y, grid.z],
        trap_non_finite: options.trap_non_finite,
    };
    let first_failed = AtomicU64::new(u64::MAX);
    let failure: Mutex<Option<(u64, exec::Fault)>> = Mutex::new(None);
    (0..grid.blocks()).into_par_iter().for_each_init(
        || exec::Block::new(code, kernel),
        |block, b| {
            // Blocks after a failed one cannot change which error is reported.
            if b > first_failed.load(Ordering::Relaxed) {
                return;
            }
            if let Err(f) = block.run(&launch, block_coords(grid, b)) {
                first_failed.fetch_min(b, Ordering::Relaxed);
                let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_none_or(|(at, _)| b < *at) {
                    *slot = Some((b, f));
                }
            }
        },
    );
    let failed = failure.into_inner().unwrap_or_else(|p| p.into_inner());
    match failed {
        None => Ok(()),
        Some((b, f)) => {
            let [x, y, z] = block_coords(grid, b);
            let block = if grid.y == 1 && grid.z == 1 {
                format!("block {x}")
            } else {
                format!("block ({x}, {y}, {z})")
            };
            let who = match f.thread {
                Some(t) => format!("{block}, thread {t}"),
                None => block,
            };
            Err(Error::Execution {
                kernel: kernel.symbol.clone(),
                message: format!("{}: {who}: {}", code.place(f.at), f.message),
            })
        }
    }
}

/// The (x, y, z) index of linear block `b`, x fastest.
fn block_coords(grid: Grid, b: u64) -> [u32; 3] {
    let (gx, gy) = (grid.x as u64, grid.y as u64);
    [
        (b % gx) as u32,
        ((b / gx) % gy) as u32,
        (b / (gx * gy)) as u32,
    ]
}
