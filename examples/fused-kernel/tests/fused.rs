//! The user's kernel: generated source snapshots, real-toolchain compilation, and a
//! numeric test on the CPU backend at wave 64 and 32.

use fused_kernel::{add_rmsnorm_scale, reference};
use greta::codegen::{hip, SpecValue, GFX942, SM90};
use greta::kernels::KernelVariants;
use greta::runtime::cpu::{CpuBackend, CpuOptions};
use greta::runtime::Device;
use std::sync::Arc;

/// The specialisation the tests use: blocks of 256 threads.
fn spec() -> Vec<SpecValue> {
    add_rmsnorm_scale::Spec { block: 256 }.values()
}

#[test]
fn generated_source_matches_the_snapshots() {
    for target in [GFX942, SM90] {
        let ir = add_rmsnorm_scale::definition()
            .specialise(&target, &spec())
            .expect("specialises");
        // The kernel's own part; the prelude every kernel shares is snapshotted with the
        // built-in kernels.
        let src = hip::kernel_source(&ir, &target).expect("emits");
        assert!(src.contains("#line"), "source maps back to the DSL file");
        insta::assert_snapshot!(format!("add_rmsnorm_scale.{}", target.name), src);
    }
}

#[test]
fn compiles_cleanly_for_gfx942_and_sm_90() {
    let kernels = [KernelVariants::fixed(
        add_rmsnorm_scale::definition,
        vec![spec()],
    )];
    for target in [GFX942, SM90] {
        let rows = greta::check::check(&kernels, &target)
            .unwrap_or_else(|e| panic!("the {} toolchain is not usable: {e}", target.name));
        print!("{}", greta::check::table(&rows, &target));
        for r in &rows {
            assert!(
                r.problems(&target).is_empty(),
                "{}: {:?}",
                r.symbol,
                r.problems(&target)
            );
        }
    }
}

#[test]
fn matches_the_reference_on_the_cpu_backend() {
    let (rows, n) = (3usize, 1000usize);
    let h0: Vec<f32> = (0..rows * n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let delta: Vec<f32> = (0..rows * n)
        .map(|i| ((i * 53 % 89) as f32 - 44.0) / 40.0)
        .collect();
    let w: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 / 7.0).collect();
    for wave in [64, 32] {
        let dev = Device::from_backend(Arc::new(
            CpuBackend::new(CpuOptions {
                wave,
                trap_non_finite: true,
            })
            .expect("cpu backend"),
        ));
        let mut h = dev.upload(&h0).expect("upload");
        let d = dev.upload(&delta).expect("upload");
        let g = dev.upload(&w).expect("upload");
        let mut y = dev.upload(&vec![f32::NAN; rows * n]).expect("upload");
        add_rmsnorm_scale::launch::<256>(
            &dev,
            rows as u32,
            &mut h,
            &d,
            &g,
            &mut y,
            n as u32,
            1e-5,
            0.75,
        )
        .expect("launch");
        let mut want_h = h0.clone();
        let want = reference(&mut want_h, &delta, &w, n, 1e-5, 0.75);
        let got = dev.download(&y).expect("download");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                "wave {wave}: y[{i}] = {a}, want {b}"
            );
        }
        assert_eq!(
            dev.download(&h).expect("download"),
            want_h,
            "wave {wave}: residual stream"
        );
    }
}
