//! GRETA: a kernel-generating compiler toolchain for LLM inference.
//!
//! Write GPU kernels in Rust syntax with [`kernel`] and [`device`]; GRETA lowers them to
//! HIP C++ for AMD CDNA3 (wave 64) and, through a CUDA prelude, NVIDIA Hopper, compiles
//! them at run time, caches the code objects, and launches or graph-replays them. The CPU
//! backend interprets the same kernels at wave 64 so every kernel is testable without a
//! GPU.

extern crate self as greta;

pub use greta_codegen as codegen;
pub use greta_dsl::{device, kernel};
pub use greta_runtime as runtime;
pub use half;

pub mod bench;
pub mod check;
pub mod kernels;
pub mod quant;
pub mod selftest;

/// The names a kernel-writing crate usually needs.
pub mod prelude {
    pub use crate::runtime::{Buffer, Device, Grid};
    pub use crate::{device, kernel};
    pub use half::{bf16, f16};
}
