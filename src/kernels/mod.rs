//! The standard kernel library, written in the DSL, and the registry of built-in kernels
//! with the specialisations the tools emit, check and test.

pub mod elementwise;
pub mod gemv;
pub mod norm;

use crate::codegen::{KernelDef, Scalar, SpecValue};

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
    ]
}
