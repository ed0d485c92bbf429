//! GRETA's compiler core: the typed IR of kernels written in the DSL, its front end, passes
//! and validation, and the lowering to HIP C++ for CDNA3/CDNA2 and (through a CUDA
//! prelude) Hopper.

pub mod ast;
pub mod def;
pub mod diag;
pub mod frag;
pub mod frontend;
pub mod hip;
pub mod ir;
pub mod launch;
pub mod layout;
pub mod ops;
pub mod passes;
pub mod target;
pub mod types;
pub mod validate;

pub use def::{DeviceDef, DeviceRef, KernelDef};
pub use diag::{Diagnostic, Diagnostics};
pub use frontend::{check, specialise, CheckReport, DeviceCall, DeviceFns, SpecValue};
pub use target::{
    Dialect, Target, GFX90A, GFX942, NVIDIA_TARGETS, SM80, SM86, SM89, SM90, TARGETS,
};
pub use types::{Frag, FragRole, Scalar, Type};
