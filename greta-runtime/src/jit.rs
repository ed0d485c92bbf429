//! Run-time compilation shared by the GPU backends: generate source for a specialised
//! kernel, look it up in the disk cache, compile on a miss, and count compilations (a warm
//! start compiles nothing).

use crate::cache::{cache_key, KernelCache};
use crate::compile::JitCompiler;
use crate::error::Result;
use greta_codegen::ir::Kernel;
use greta_codegen::Target;
use std::sync::atomic::{AtomicU64, Ordering};

static COMPILATIONS: AtomicU64 = AtomicU64::new(0);

/// Number of run-time compilations this process has performed (cache misses).
pub fn compilations() -> u64 {
    COMPILATIONS.load(Ordering::Relaxed)
}

/// The code object of `kernel` for `arch`, from the cache or freshly compiled.
pub fn code_object(
    kernel: &Kernel,
    target: &Target,
    arch: &str,
    compiler: &dyn JitCompiler,
    options: &[String],
    cache: Option<&KernelCache>,
) -> Result<Vec<u8>> {
    let source = greta_codegen::hip::emit(kernel, target)?;
    let key = cache_key(&source, arch, &compiler.id(), options);
    if let Some(code) = cache.and_then(|c| c.get(&key)) {
        return Ok(code);
    }
    COMPILATIONS.fetch_add(1, Ordering::Relaxed);
    let code = compiler
        .compile(&source, &kernel.symbol, arch, options)?
        .bytes;
    if let Some(c) = cache {
        // A cache that cannot be written only costs a recompilation next time.
        if let Err(e) = c.put(&key, &code) {
            eprintln!("warning: kernel cache not written: {e}");
        }
    }
    Ok(code)
}
