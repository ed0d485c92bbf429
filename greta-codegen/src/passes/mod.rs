//! IR-to-IR passes run on every specialised kernel: constant folding of specialisation
//! parameters and full unrolling of loops whose induction variable indexes registers.

mod fold;
mod unroll;

use crate::diag::Diagnostic;
use crate::ir::Kernel;
use crate::target::Target;

pub use fold::fold_stmts;

/// Runs the pass pipeline over the entry and every device function.
pub fn run(kernel: &mut Kernel, target: &Target) -> Result<(), Vec<Diagnostic>> {
    let consts: Vec<i128> = kernel.consts.iter().map(|c| c.value).collect();
    let cx = fold::FoldCx {
        consts: &consts,
        wave: target.wave,
        bulk_copy: target.bulk_copy,
    };
    let mut diags = Vec::new();
    let funcs = kernel
        .funcs
        .iter_mut()
        .chain(std::iter::once(&mut kernel.entry));
    for f in funcs {
        fold_stmts(&mut f.body, &cx);
        unroll::unroll_stmts(&mut f.body, &cx, &mut diags);
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(diags)
    }
}
