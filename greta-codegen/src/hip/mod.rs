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

/// Generates the complete HIP C++ translation unit for one specialised kernel.
pub fn emit(kernel: &Kernel, target: &Target) -> Result<String, EmitError> {
    let wrap = |source| EmitError::Template {
        kernel: kernel.symbol.clone(),
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
    let parts = print::KernelParts::new(kernel, target);
    let vectors: Vec<_> = parts
        .vectors
        .iter()
        .map(|(name, elem, lanes)| json!({ "name": name, "elem": elem, "lanes": lanes }))
        .collect();
    let helpers = hb
        .render("helpers", &json!({ "vectors": vectors }))
        .map_err(wrap)?
        + &parts.fragments;
    let consts: Vec<_> = kernel
        .consts
        .iter()
        .map(|c| json!({ "ty": c.ty.name(), "name": c.name, "value": print::int_literal(c.value, c.ty) }))
        .collect();
    hb.render(
        "kernel",
        &json!({
            "symbol": kernel.symbol,
            "file": kernel.file,
            "target": target.name,
            "target_description": target.description,
            "prelude": prelude,
            "helpers": helpers,
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
