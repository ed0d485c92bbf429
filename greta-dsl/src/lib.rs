//! Proc-macros of the GRETA kernel DSL: `#[greta::kernel]` and `#[greta::device]`.
//!
//! The macro converts the Rust-syntax body to GRETA's kernel AST, checks it with the same
//! front end that later specialises it (so mistakes are compile errors at the offending
//! token), and expands the function into a module holding the embedded definition and a
//! typed `launch` function.

mod expand;
mod parse;

use proc_macro::TokenStream;

/// Declares a GPU kernel written in the DSL.
///
/// Attribute arguments: `block = N` (threads per block; or a `const BLOCK: u32` generic),
/// and optionally `target = "gfx942"` / `targets = ["gfx942", "sm_90"]` to check
/// target-specific rules (such as the block size being a multiple of the wave) at compile
/// time.
#[proc_macro_attribute]
pub fn kernel(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into(), expand::Kind::Kernel).into()
}

/// Declares a device helper function callable from kernels.
#[proc_macro_attribute]
pub fn device(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into(), expand::Kind::Device).into()
}
