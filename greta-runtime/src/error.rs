//! Runtime errors.

use greta_codegen::Diagnostics;

/// Everything that can go wrong creating devices, compiling, moving data or launching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kernel(#[from] Diagnostics),
    #[error("code generation failed: {0}")]
    Emit(#[from] greta_codegen::hip::EmitError),
    #[error("kernel `{kernel}`: {message}")]
    Launch { kernel: String, message: String },
    #[error("{kernel}: {message}")]
    Execution { kernel: String, message: String },
    #[error("compiling `{kernel}` for {target} failed:\n{log}")]
    Compile {
        kernel: String,
        target: String,
        log: String,
    },
    #[error("{0}")]
    Backend(String),
    #[error("copy of {len} bytes at offset {offset} does not fit a buffer of {bytes} bytes")]
    OutOfBounds {
        offset: usize,
        len: usize,
        bytes: usize,
    },
    #[error("a buffer of {bytes} bytes cannot be viewed as elements of {size} bytes")]
    Reinterpret { bytes: usize, size: usize },
    #[error("buffer belongs to another device")]
    ForeignBuffer,
    #[error("graph was captured on another device")]
    ForeignGraph,
    #[error("{0}")]
    Unavailable(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runtime result.
pub type Result<T> = std::result::Result<T, Error>;
