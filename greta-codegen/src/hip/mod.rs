//! Lowering of validated IR to HIP C++. One source serves AMD (HIP prelude) and NVIDIA
//! (CUDA prelude mapping the HIP built-ins). Kernel bodies are printed from the IR; the
//! file skeleton, preludes and helpers come from the templates.

mod frag;
mod print;
mod templates;

use crate::ir::Kernel;
use crate::target::{Dialect, Target};
use serde_json::json;

/// Errors while rendering generated source.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("template rendering failed for kernel `{kernel}`: {source}")]
    Template {
        kernel: String,
        #[source]
        source: handlebars::RenderError,
    },
}

/// The part of every translation unit for `target` that no kernel changes: the prelude
/// (scalar types, the built-ins mapped onto the vendor's) and the helper library.
pub fn prelude(target: &Target) -> Result<String, EmitError> {
    let wrap = |source| EmitError::Template {
        kernel: format!("(prelude for {})", target.name),
        source,
    };
    let hb = templates::registry();
    let full_mask = if target.wave == 64 {
        "0xffffffffffffffffull"
    } else {
        "0xffffffffull"
    };
    let prelude_name = match target.dialect {
        Dialect::Hip => "prelude_hip",
        Dialect::Cuda => "prelude_cuda",
    };
    let prelude = hb
        .render(
            prelude_name,
            &json!({
                "target": target.name,
                "wave": target.wave,
                "full_mask": full_mask,
                "bulk_copy": target.bulk_copy,
            }),
        )
        .map_err(wrap)?;
    let library = hb.render("helpers", &json!({})).map_err(wrap)?;
    Ok(format!("{prelude}\n{library}"))
}

/// Generates the complete HIP C++ translation unit for one specialised kernel.
pub fn emit(kernel: &Kernel, target: &Target) -> Result<String, EmitError> {
    render(kernel, target, &prelude(target)?)
}

/// The kernel's own part of its translation unit: [`emit`] with the shared [`prelude`]
/// left out (a one-line comment stands in its place).
pub fn kernel_source(kernel: &Kernel, target: &Target) -> Result<String, EmitError> {
    let stand_in = format!(
        "// ---- prelude and helper library for {} ----",
        target.name
    );
    render(kernel, target, &stand_in)
}

/// The translation unit with `prelude` in its place.
fn render(kernel: &Kernel, target: &Target, prelude: &str) -> Result<String, EmitError> {
    let wrap = |source| EmitError::Template {
        kernel: kernel.symbol.clone(),
        source,
    };
    let parts = print::KernelParts::new(kernel, target);
    let vectors: Vec<_> = parts
        .vectors
        .iter()
        .map(|(name, elem, lanes)| json!({ "name": name, "elem": elem, "lanes": lanes }))
        .collect();
    let consts: Vec<_> = kernel
        .consts
        .iter()
        .map(|c| json!({ "ty": c.ty.name(), "name": c.name, "value": print::int_literal(c.value, c.ty) }))
        .collect();
    templates::registry()
        .render(
            "kernel",
            &json!({
                "symbol": kernel.symbol,
                "file": kernel.file,
                "target": target.name,
                "target_description": target.description,
                "prelude": prelude,
                "vectors": vectors,
                "fragments": parts.fragments,
                "consts": consts,
                "functions": parts.functions,
                "launch_bounds": target.launch_bounds(kernel.block, kernel.min_waves),
                "params": parts.params,
                "shared": parts.shared,
                "body": parts.body,
            }),
        )
        .map_err(wrap)
}
