//! hiprtc, the run-time compiler of the HIP backend, on every built-in kernel for gfx90a
//! through `jit::code_object` (the backend's own path), plus its error reporting and its
//! refusal of architectures that would abort the process. No GPU is needed; a missing
//! hiprtc fails these tests with the command that installs it.

use greta::codegen::{Target, GFX90A};
use greta::kernels::builtins;
use greta::runtime::compile::amdgpu::ClangAmdgpu;
use greta::runtime::compile::hiprtc::Hiprtc;
use greta::runtime::compile::CodeObject;
use greta::runtime::compile::JitCompiler;
use greta::runtime::jit;
use greta::runtime::Error;

/// The target id an MI200 reports (`gcnArchName`): the backend compiles for the full id.
const MI200: &str = "gfx90a:sramecc+:xnack-";

/// ELF machine number of AMDGPU.
const EM_AMDGPU: u16 = 0xE0;

fn hiprtc() -> Hiprtc {
    Hiprtc::load().unwrap_or_else(|e| panic!("hiprtc is not usable: {e}"))
}

#[test]
fn every_builtin_kernel_compiles_with_hiprtc_for_gfx90a_at_wave_64() {
    let hiprtc = hiprtc();
    let clang = ClangAmdgpu::locate().unwrap_or_else(|e| panic!("llvm-readelf is needed: {e}"));
    let target: Target = GFX90A;
    let mut compiled = 0;
    for k in builtins() {
        for spec in &k.specs(&target) {
            let ir = (k.def)()
                .specialise(&target, spec)
                .unwrap_or_else(|e| panic!("{e}"));
            let bytes = jit::code_object(&ir, &target, MI200, &hiprtc, &[], None)
                .unwrap_or_else(|e| panic!("{}: {e}", ir.symbol));
            assert_eq!(&bytes[..4], b"\x7fELF", "{}: not an ELF file", ir.symbol);
            let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
            assert_eq!(
                machine, EM_AMDGPU,
                "{}: ELF machine {machine:#x}",
                ir.symbol
            );
            let code = CodeObject {
                bytes,
                log: String::new(),
            };
            let kernels = clang
                .resources(&code)
                .unwrap_or_else(|e| panic!("{}: {e}", ir.symbol));
            let (_, r) = kernels
                .iter()
                .find(|(name, _)| *name == ir.symbol)
                .unwrap_or_else(|| panic!("{}: no kernel metadata in {kernels:?}", ir.symbol));
            println!(
                "{:<32} wave {} VGPRs {} SGPRs {}",
                ir.symbol, r.wave, r.vgprs, r.sgprs
            );
            assert_eq!(r.wave, target.wave, "{}: wavefront size", ir.symbol);
            compiled += 1;
        }
    }
    assert!(compiled >= builtins().len());
}

#[test]
fn compile_errors_cite_the_dsl_file_and_line() {
    let source = "#line 12 \"src/kernels/foo.rs\"\n\
                  extern \"C\" __global__ void foo(float* x) { x[0] = undeclared_name; }\n";
    let err = hiprtc()
        .compile(source, "foo", "gfx90a", &[])
        .expect_err("an undeclared identifier must not compile");
    let Error::Compile { ref log, .. } = err else {
        panic!("expected a compile error, got {err:?}");
    };
    assert!(
        log.contains("src/kernels/foo.rs:12:"),
        "the log does not cite src/kernels/foo.rs line 12:\n{log}"
    );
    let message = err.to_string();
    assert!(message.contains("src/kernels/foo.rs:12:") && message.contains("undeclared_name"));
}

#[test]
fn gfx94x_is_refused_by_rocm_5_hiprtc_instead_of_aborting() {
    let hiprtc = hiprtc();
    let source = "extern \"C\" __global__ void k(float* x) { x[threadIdx.x] = 1.0f; }\n";
    let rocm5 = hiprtc.rocm_major().is_none_or(|m| m < 6);
    for arch in ["gfx942", "gfx940", "gfx942:sramecc+:xnack-"] {
        let result = hiprtc.compile(source, "k", arch, &[]);
        if rocm5 {
            let e = result.expect_err("ROCm 5 hiprtc must not be asked for gfx94x");
            assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
            assert!(e.to_string().contains("ROCm 6"), "{e}");
        } else {
            result.unwrap_or_else(|e| panic!("{} for {arch}: {e}", hiprtc.id()));
        }
    }
}
