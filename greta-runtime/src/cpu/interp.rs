//! The IR interpreter (being written).

use super::memory::HostMemory;
use super::CpuOptions;
use crate::args::Grid;
use crate::error::{Error, Result};
use greta_codegen::ir::Kernel;

/// A bound launch argument.
pub enum ArgValue<'a> {
    Memory {
        memory: &'a HostMemory,
        mutable: bool,
    },
    Scalar(u64),
}

/// Runs every block of the grid.
pub fn execute(
    kernel: &Kernel,
    _grid: Grid,
    _args: &[ArgValue],
    _options: &CpuOptions,
) -> Result<()> {
    Err(Error::Unavailable(format!(
        "the CPU interpreter cannot run `{}` yet",
        kernel.symbol
    )))
}
