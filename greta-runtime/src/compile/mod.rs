//! Compilers that turn generated source into code objects: NVRTC (sm_90, at run time),
//! hiprtc (AMD, at run time) and offline clang for AMDGPU (resource checks without a GPU).
//! Each reports the resources the compiled kernel uses.

pub mod amdgpu;
pub mod hiprtc;
pub mod nvrtc;
pub mod resources;
mod rtc;
pub mod tools;

pub use resources::Resources;

use crate::error::Result;

/// A compiled kernel: the code object and what the compiler said.
#[derive(Clone, Debug)]
pub struct CodeObject {
    /// ELF cubin (NVIDIA) or AMDGPU code object.
    pub bytes: Vec<u8>,
    /// The compiler's log (warnings, resource report).
    pub log: String,
}

/// A compiler that runs inside the process (NVRTC, hiprtc).
pub trait JitCompiler: Send + Sync {
    /// Compiler name and version, part of the cache key.
    fn id(&self) -> String;
    /// Compiles one translation unit for the full architecture name.
    fn compile(
        &self,
        source: &str,
        name: &str,
        arch: &str,
        options: &[String],
    ) -> Result<CodeObject>;
}
