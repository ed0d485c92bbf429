//! The ggml tensor formats (from `greta-gguf`) and their GPU weight layouts, the form the
//! kernels read.

pub use greta_gguf::quant::*;
pub mod gpu;
