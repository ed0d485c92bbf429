//! The standard kernel library, written in the DSL, and the registry of built-in kernels
//! with the specialisations the tools emit, check and test.

pub mod attention;
pub mod decode;
pub mod dequant;
pub mod dot;
pub mod elementwise;
pub mod flash;
pub mod gemm;
pub mod gemv;
pub mod matvec;
pub mod mma_tile;
pub mod norm;
pub mod stream;

use crate::codegen::{KernelDef, Scalar, SpecValue, Target};
use crate::quant::gpu::GpuFormat;
use matvec::Matvec;

/// A kernel and the specialisations to build of it (what `greta emit/check` and the
/// toolchain checks of user crates work on).
pub struct KernelVariants {
    /// The kernel's definition.
    pub def: fn() -> &'static KernelDef,
    /// Specialisations to build on every target, in the kernel's generic order.
    pub variants: Vec<Vec<SpecValue>>,
    /// Specialisations chosen per target (tile shapes measured best on each).
    pub per_target: fn(&Target) -> Vec<Vec<SpecValue>>,
}

impl KernelVariants {
    /// A kernel built with the same specialisations on every target.
    pub fn fixed(def: fn() -> &'static KernelDef, variants: Vec<Vec<SpecValue>>) -> KernelVariants {
        KernelVariants {
            def,
            variants,
            per_target: none,
        }
    }

    /// The kernel's DSL name.
    pub fn name(&self) -> &'static str {
        (self.def)().name()
    }

    /// The specialisations to build for `target`.
    pub fn specs(&self, target: &Target) -> Vec<Vec<SpecValue>> {
        let mut all = self.variants.clone();
        all.extend((self.per_target)(target));
        all
    }
}

fn none(_: &Target) -> Vec<Vec<SpecValue>> {
    Vec::new()
}

/// Every built-in kernel, with the specialisations the library launches.
pub fn builtins() -> Vec<KernelVariants> {
    use attention::AttentionKernel::{Chunked, Streamed};
    use SpecValue::{Const, Type};
    vec![
        KernelVariants {
            def: elementwise::add::definition,
            variants: vec![
                vec![Type(Scalar::F32)],
                vec![Type(Scalar::F16)],
                vec![Type(Scalar::BF16)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: norm::rmsnorm::definition,
            variants: vec![
                vec![Type(Scalar::F32), Const(256)],
                vec![Type(Scalar::F16), Const(256)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: norm::softmax::definition,
            variants: vec![vec![Const(256)]],
            per_target: none,
        },
        KernelVariants {
            def: gemv::gemv_f16::definition,
            variants: vec![vec![Const(256)]],
            per_target: none,
        },
        KernelVariants {
            def: matvec::matvec::definition,
            variants: GpuFormat::ALL
                .iter()
                .map(|f| Matvec::new(*f, true, matvec::STORE).spec(4096))
                .chain([
                    // The FFN down projections of a Q4_K_M model: Q4_K and Q6_K layers.
                    Matvec::new(GpuFormat::Q4K, false, matvec::ADD).spec(11008),
                    Matvec::new(GpuFormat::Q6K, false, matvec::ADD).spec(11008),
                    Matvec::new(GpuFormat::Q4K, true, matvec::SWIGLU).spec(4096),
                    // Its QKV products: V in Q6_K or in Q4_K.
                    Matvec {
                        fmt_b: GpuFormat::Q6K,
                        ..Matvec::new(GpuFormat::Q4K, true, matvec::QKV)
                    }
                    .spec(4096),
                    Matvec::new(GpuFormat::Q4K, true, matvec::QKV).spec(4096),
                ])
                .collect(),
            per_target: none,
        },
        KernelVariants {
            def: decode::embed::definition,
            variants: GpuFormat::ALL
                .iter()
                .map(|f| vec![Const(f.code() as i128)])
                .collect(),
            per_target: none,
        },
        KernelVariants {
            def: decode::take_row::definition,
            variants: vec![vec![]],
            per_target: none,
        },
        KernelVariants {
            def: decode::argmax::definition,
            variants: vec![vec![Const(1024)]],
            per_target: none,
        },
        KernelVariants {
            def: decode::stats::definition,
            variants: vec![
                vec![Type(Scalar::F32), Const(1024)],
                vec![Type(Scalar::F16), Const(1024)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: stream::read_stream::definition,
            variants: vec![
                vec![Const(4), Const(512), Const(stream::READ_FIRST as i128)],
                vec![
                    Const(4),
                    Const(512),
                    Const(stream::FIRST_LOADS_FIRST as i128),
                ],
                vec![Const(4), Const(512), Const(stream::WAIT_FIRST as i128)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: mma_tile::mma_tile::definition,
            variants: vec![
                vec![Type(Scalar::F16), Type(Scalar::F32), Const(64)],
                vec![Type(Scalar::BF16), Type(Scalar::F32), Const(64)],
                vec![Type(Scalar::I8), Type(Scalar::I32), Const(64)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: mma_tile::mma_tile_trans::definition,
            variants: vec![
                vec![Type(Scalar::F16), Const(64)],
                vec![Type(Scalar::BF16), Const(64)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: gemm::gemm::definition,
            variants: Vec::new(),
            per_target: gemm::builtin_specs,
        },
        KernelVariants {
            def: flash::attention_prefill::definition,
            variants: vec![
                vec![Const(128), Const(1), Const(128)],
                vec![Const(64), Const(3), Const(128)],
            ],
            per_target: none,
        },
        KernelVariants {
            def: attention::attention::definition,
            variants: vec![
                attention::Attention::new(128, 1, 1, 1).spec(Chunked),
                attention::Attention::new(64, 3, 1, 1).spec(Chunked),
            ],
            per_target: none,
        },
        KernelVariants {
            def: attention::attention_stream::definition,
            variants: vec![
                attention::Attention::new(128, 1, 1, 1).spec(Streamed),
                attention::Attention::new(64, 3, 1, 1).spec(Streamed),
            ],
            per_target: none,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::builtins;
    use crate::codegen::{NVIDIA_TARGETS, SM90, TARGETS};

    /// Dependent launch is opted into per kernel: exactly the kernels that wait for their
    /// predecessor themselves may be started before it ends.
    #[test]
    fn only_kernels_that_wait_for_their_predecessor_overlap_it() {
        for k in builtins() {
            let def = (k.def)();
            let kernel = def
                .specialise(&SM90, &k.specs(&SM90)[0])
                .expect("specialise");
            let expected = matches!(
                def.name(),
                "matvec" | "attention" | "attention_stream" | "read_stream"
            );
            assert_eq!(kernel.waits_prior_launch(), expected, "{}", def.name());
        }
    }

    /// Every target builds every built-in specialisation, NVIDIA targets with less shared
    /// memory than sm_90 included (their product tiles lose K slices to fit).
    #[test]
    fn every_builtin_specialises_for_every_target() {
        for target in TARGETS.iter().chain(&NVIDIA_TARGETS) {
            for k in builtins() {
                for spec in k.specs(target) {
                    if let Err(e) = (k.def)().specialise(target, &spec) {
                        panic!("{} for {}: {e}", (k.def)().name(), target.name);
                    }
                }
            }
        }
    }

    /// The product's shared-memory count, used to fit tiles to a target, is the kernel's own.
    #[test]
    fn product_tiles_fit_each_target_by_the_kernels_own_shared_memory() {
        use super::gemm::{gemm, Gemm};
        use super::matvec::STORE;
        use crate::quant::gpu::GpuFormat;
        for target in TARGETS.iter().chain(&NVIDIA_TARGETS) {
            for fmt in [
                GpuFormat::Q4K,
                GpuFormat::Q6K,
                GpuFormat::Q8_0,
                GpuFormat::F16,
            ] {
                for m in [1, 16, 64, 512] {
                    let g = Gemm::new(fmt, STORE, target, m);
                    let kernel = gemm::definition()
                        .specialise(target, &g.spec())
                        .unwrap_or_else(|e| panic!("{:?} on {}: {e}", g.tile, target.name));
                    let declared = kernel.layout.declared_bytes;
                    assert_eq!(g.tile.shared_bytes(), declared, "{:?}", g.tile);
                    assert!(kernel.layout.total() <= target.shared_bytes);
                }
            }
        }
    }
}
