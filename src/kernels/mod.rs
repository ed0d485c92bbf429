//! The standard kernel library, written in the DSL, and the registry of built-in kernels
//! with the specialisations the tools emit, check and test.

pub mod dot;
pub mod elementwise;
pub mod gemv;
pub mod matvec;
pub mod norm;

use crate::codegen::{KernelDef, Scalar, SpecValue};
use crate::quant::gpu::GpuFormat;

/// A built-in kernel and the specialisations that `greta emit/check/selftest` use.
pub struct BuiltinKernel {
    /// The kernel's definition.
    pub def: fn() -> &'static KernelDef,
    /// Specialisations to build, each with a short label.
    pub variants: Vec<Vec<SpecValue>>,
}

impl BuiltinKernel {
    /// The kernel's DSL name.
    pub fn name(&self) -> &'static str {
        (self.def)().name()
    }
}

/// Every built-in kernel.
pub fn builtins() -> Vec<BuiltinKernel> {
    use SpecValue::{Const, Type};
    vec![
        BuiltinKernel {
            def: elementwise::add::definition,
            variants: vec![vec![Type(Scalar::F32)], vec![Type(Scalar::F16)]],
        },
        BuiltinKernel {
            def: norm::rmsnorm::definition,
            variants: vec![vec![Const(256)]],
        },
        BuiltinKernel {
            def: norm::softmax::definition,
            variants: vec![vec![Const(256)]],
        },
        BuiltinKernel {
            def: gemv::gemv_f16::definition,
            variants: vec![vec![Const(256)]],
        },
        BuiltinKernel {
            def: matvec::matvec::definition,
            variants: GpuFormat::ALL
                .iter()
                .map(|f| matvec_spec(*f, true, matvec::STORE))
                .chain([matvec_spec(GpuFormat::Q4K, false, matvec::ADD)])
                .collect(),
        },
    ]
}

/// Rows each wavefront of `matvec` computes at a time.
pub const MATVEC_ROWS: u32 = 2;
/// Threads per block of `matvec`.
pub const MATVEC_BLOCK: u32 = 256;
/// Largest input length the built-in `matvec` specialisations accept.
pub const MATVEC_XCAP: u32 = 16384;

/// The `matvec` specialisation for a weight format, norm prologue and epilogue.
pub fn matvec_spec(fmt: GpuFormat, norm: bool, epilogue: u32) -> Vec<SpecValue> {
    let xcap = if fmt.code() <= dot::F16 { 32 } else { MATVEC_XCAP };
    [fmt.code(), norm as u32, epilogue, MATVEC_ROWS, xcap, MATVEC_BLOCK]
        .map(|v| SpecValue::Const(v as i128))
        .to_vec()
}
