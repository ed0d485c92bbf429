//! The standard kernel library, written in the DSL, and the registry of built-in kernels
//! with the specialisations the tools emit, check and test.

pub mod attention;
pub mod batch;
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
pub mod skinny;
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
    use Scalar::{BF16, F16, F32, I32, I8};
    let add = |t| elementwise::add::Spec { t }.values();
    let rmsnorm = |o| norm::rmsnorm::Spec { o, block: 256 }.values();
    let stats = |t| decode::stats::Spec { t, block: 1024 }.values();
    let stream = |early| {
        stream::read_stream::Spec {
            unroll: 4,
            block: 512,
            early,
        }
        .values()
    };
    let mma = |t, a| mma_tile::mma_tile::Spec { t, a, block: 64 }.values();
    let mma_trans = |t| mma_tile::mma_tile_trans::Spec { t, block: 64 }.values();
    let prefill = |d, g| flash::attention_prefill::Spec { d, g, block: 128 }.values();
    let row_attention = |head_dim, group| {
        batch::RowAttention {
            head_dim,
            group,
            n_head: group,
            ctx: 1,
        }
        .spec()
    };
    vec![
        KernelVariants {
            def: elementwise::add::definition,
            variants: vec![add(F32), add(F16), add(BF16)],
            per_target: none,
        },
        KernelVariants {
            def: norm::rmsnorm::definition,
            variants: vec![rmsnorm(F32), rmsnorm(F16)],
            per_target: none,
        },
        KernelVariants {
            def: norm::softmax::definition,
            variants: vec![norm::softmax::Spec { block: 256 }.values()],
            per_target: none,
        },
        KernelVariants {
            def: gemv::gemv_f16::definition,
            variants: vec![gemv::gemv_f16::Spec { block: 256 }.values()],
            per_target: none,
        },
        KernelVariants {
            def: matvec::matvec::definition,
            variants: GpuFormat::ALL
                .iter()
                .map(|f| Matvec::new(*f, true, matvec::Epilogue::Store).spec(4096))
                .chain([
                    // The FFN down projections of a Q4_K_M model: Q4_K and Q6_K layers.
                    Matvec::new(GpuFormat::Q4K, false, matvec::Epilogue::Add).spec(11008),
                    Matvec::new(GpuFormat::Q6K, false, matvec::Epilogue::Add).spec(11008),
                    Matvec::new(GpuFormat::Q4K, true, matvec::Epilogue::Swiglu).spec(4096),
                    // Its QKV products: V in Q6_K or in Q4_K.
                    Matvec {
                        fmt_b: GpuFormat::Q6K,
                        ..Matvec::new(GpuFormat::Q4K, true, matvec::Epilogue::Qkv)
                    }
                    .spec(4096),
                    Matvec::new(GpuFormat::Q4K, true, matvec::Epilogue::Qkv).spec(4096),
                ])
                .collect(),
            per_target: matvec::batched_specs,
        },
        KernelVariants {
            def: decode::embed::definition,
            variants: GpuFormat::ALL
                .iter()
                .map(|f| decode::embed::Spec { fmt: f.code() }.values())
                .collect(),
            per_target: none,
        },
        KernelVariants {
            def: decode::take_row::definition,
            variants: vec![decode::take_row::Spec {}.values()],
            per_target: none,
        },
        KernelVariants {
            def: decode::argmax::definition,
            variants: vec![decode::argmax::Spec { block: 1024 }.values()],
            per_target: none,
        },
        KernelVariants {
            def: decode::stats::definition,
            variants: vec![stats(F32), stats(F16)],
            per_target: none,
        },
        KernelVariants {
            def: stream::read_stream::definition,
            variants: vec![
                stream(stream::READ_FIRST),
                stream(stream::FIRST_LOADS_FIRST),
                stream(stream::WAIT_FIRST),
            ],
            per_target: none,
        },
        KernelVariants {
            def: mma_tile::mma_tile::definition,
            variants: vec![mma(F16, F32), mma(BF16, F32), mma(I8, I32)],
            per_target: none,
        },
        KernelVariants {
            def: mma_tile::mma_tile_trans::definition,
            variants: vec![mma_trans(F16), mma_trans(BF16)],
            per_target: none,
        },
        KernelVariants {
            def: gemm::gemm::definition,
            variants: Vec::new(),
            per_target: gemm::builtin_specs,
        },
        KernelVariants {
            def: skinny::skinny::definition,
            variants: Vec::new(),
            per_target: skinny::builtin_specs,
        },
        KernelVariants {
            def: flash::attention_prefill::definition,
            variants: vec![prefill(128, 1), prefill(64, 3)],
            per_target: none,
        },
        KernelVariants {
            def: batch::qkv_rows::definition,
            variants: vec![batch::qkv_rows::Spec {}.values()],
            per_target: none,
        },
        KernelVariants {
            def: batch::attention_rows::definition,
            variants: vec![row_attention(128, 1), row_attention(64, 3)],
            per_target: none,
        },
        KernelVariants {
            def: batch::argmax_rows::definition,
            variants: vec![batch::argmax_rows::Spec { block: 1024 }.values()],
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
    use crate::codegen::{Scalar, SpecValue, NVIDIA_TARGETS, SM90, TARGETS};

    /// The batched products never take matvec's staged path (decode's launches only), so
    /// a vector launched alone sums as it does in a group, on every target.
    #[test]
    fn batched_products_are_not_launched_at_decode_block() {
        use super::matvec::{Epilogue, Matvec, DECODE_BLOCK};
        use crate::quant::gpu::GpuFormat;
        for target in TARGETS {
            for cols in [4096, 5120, 11008] {
                let mv = Matvec::batched(GpuFormat::Q8_0, false, Epilogue::Add, &target, cols);
                assert_ne!(mv.block, DECODE_BLOCK, "{} at {cols}", target.name);
            }
        }
    }

    /// A kernel's `Spec` lists its fields in the kernel's generic order, types and
    /// constants alike, and specialises to the symbol those values name.
    #[test]
    fn spec_structs_give_the_values_in_generic_order() {
        let spec = super::mma_tile::mma_tile::Spec {
            block: 64,
            a: Scalar::I32,
            t: Scalar::I8,
        };
        let values = spec.values();
        assert_eq!(
            values,
            [
                SpecValue::Type(Scalar::I8),
                SpecValue::Type(Scalar::I32),
                SpecValue::Const(64)
            ]
        );
        let kernel = super::mma_tile::mma_tile::definition()
            .specialise(&SM90, &values)
            .unwrap();
        assert_eq!(kernel.symbol, "mma_tile__Ti8_Ai32_BLOCK64");
        assert_eq!(super::decode::take_row::Spec {}.values(), []);
    }

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
        use super::matvec::Epilogue::Store;
        use crate::quant::gpu::GpuFormat;
        for target in TARGETS.iter().chain(&NVIDIA_TARGETS) {
            for fmt in [
                GpuFormat::Q4K,
                GpuFormat::Q6K,
                GpuFormat::Q8_0,
                GpuFormat::F16,
            ] {
                for m in [1, 16, 64, 512] {
                    let g = Gemm::new(fmt, Store, target, m);
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
