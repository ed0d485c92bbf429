//! Snapshot of the generated source of every built-in kernel for every target, so a
//! codegen change shows up as a reviewable diff (`cargo insta review`). What every kernel
//! of a target shares (prelude and helper library) is one snapshot per target; each
//! kernel's snapshot holds its own part.

use greta::codegen::{hip, TARGETS};
use greta::kernels::builtins;

#[test]
fn generated_source_of_every_builtin_kernel_for_every_target() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    settings.bind(|| {
        for target in TARGETS {
            let prelude = hip::prelude(&target).unwrap_or_else(|e| panic!("{e}"));
            insta::assert_snapshot!(format!("prelude.{}", target.name), prelude);
            for k in builtins() {
                for spec in &k.specs(&target) {
                    let ir = (k.def)()
                        .specialise(&target, spec)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let own = hip::kernel_source(&ir, &target).unwrap_or_else(|e| panic!("{e}"));
                    let full = hip::emit(&ir, &target).unwrap_or_else(|e| panic!("{e}"));
                    // The kernel's part names the prelude on its third line, after the
                    // header; the translation unit has the prelude itself there.
                    let stand_in = own.lines().nth(2).unwrap();
                    assert_eq!(full, own.replacen(stand_in, &prelude, 1), "{}", ir.symbol);
                    insta::assert_snapshot!(format!("{}.{}", ir.symbol, target.name), own);
                }
            }
        }
    });
}
