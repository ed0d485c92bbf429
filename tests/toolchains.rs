//! Every built-in kernel compiled by the real toolchains: clang's AMDGPU backend for gfx942
//! (wave 64, no spills, no scratch) and NVRTC for sm_90, sm_80 and sm_86. These tests fail,
//! with the command that installs the toolchain, when it is missing.

use greta::codegen::{hip, Target, GFX942, SM80, SM86, SM90};
use greta::kernels::builtins;

fn check_all(target: &Target) {
    let rows = greta::check::check(&builtins(), target)
        .unwrap_or_else(|e| panic!("the {} toolchain is not usable: {e}", target.name));
    let table = greta::check::table(&rows, target);
    println!("{table}");
    let failures: Vec<String> = rows
        .iter()
        .filter(|r| !r.problems(target).is_empty())
        .map(|r| format!("{}: {}", r.symbol, r.problems(target).join("; ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} check failed:\n{}\n{table}",
        target.name,
        failures.join("\n")
    );
    assert!(rows.len() >= builtins().len());
}

#[test]
fn every_builtin_kernel_compiles_for_gfx942_at_wave_64_without_spills() {
    check_all(&GFX942);
}

/// The matrix-core kernels' gfx942 code runs on MFMA: `v_mfma` instructions in the
/// disassembly of every specialisation, and none in a kernel without fragments.
#[test]
fn every_matrix_kernel_runs_on_mfma_for_gfx942() {
    let rows = greta::check::check(&builtins(), &GFX942).expect("the gfx942 toolchain");
    let matrix = ["gemm__", "mma_tile", "attention_prefill__", "skinny__"];
    let mut seen = 0;
    for r in &rows {
        let n = r
            .matrix_ops
            .unwrap_or_else(|| panic!("{}: no disassembly count", r.symbol));
        if matrix.iter().any(|m| r.symbol.starts_with(m)) {
            assert!(n > 0, "{} has no v_mfma instruction", r.symbol);
            seen += 1;
        } else {
            assert_eq!(n, 0, "{} has v_mfma instructions", r.symbol);
        }
    }
    assert!(seen >= 10, "only {seen} matrix kernels checked");
}

#[test]
fn every_builtin_kernel_compiles_for_sm_90_with_nvrtc() {
    check_all(&SM90);
}

/// Ampere and Ada take the same kernels without Hopper's bulk copies and dependent launch,
/// in their own shared memory: sm_80 (163 KiB) and sm_86 (99 KiB, as sm_89).
#[test]
fn every_builtin_kernel_compiles_for_ampere_with_nvrtc() {
    check_all(&SM80);
    check_all(&SM86);
}

/// No Hopper-only instruction reaches the source of a target without it.
#[test]
fn pre_hopper_sources_use_no_hopper_instructions() {
    for k in builtins() {
        for spec in k.specs(&SM80) {
            let ir = (k.def)().specialise(&SM80, &spec).expect("specialise");
            let src = hip::emit(&ir, &SM80).expect("emit");
            for hopper in ["griddepcontrol", "cp.async.bulk", "mbarrier"] {
                assert!(
                    !src.contains(hopper),
                    "{} uses {hopper} on sm_80",
                    ir.symbol
                );
            }
        }
    }
}
