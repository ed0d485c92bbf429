//! Snapshot of the generated source of every built-in kernel for every target, so a
//! codegen change shows up as a reviewable diff (`cargo insta review`).

use greta::codegen::{hip, TARGETS};
use greta::kernels::builtins;

#[test]
fn generated_source_of_every_builtin_kernel_for_every_target() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        for target in TARGETS {
            for k in builtins() {
                for spec in &k.specs(&target) {
                    let ir = (k.def)()
                        .specialise(&target, spec)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let src = hip::emit(&ir, &target).unwrap_or_else(|e| panic!("{e}"));
                    insta::assert_snapshot!(format!("{}.{}", ir.symbol, target.name), src);
                }
            }
        }
    });
}
