//! Byte-slice entry points of the reference codecs, dispatched on a runtime `GgmlType`.

use bytemuck::{bytes_of, pod_read_unaligned};
use half::{bf16, f16};
use rand::Rng;

use super::block::Block;
use super::kquants::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use super::legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK32};
use super::{GgmlType, QuantError};

/// The types weights are stored in that the reference codecs decode (every codec type but
/// Q8_K, which ggml uses only for activations).
pub const WEIGHT_TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// The types with a reference codec: the weight types and Q8_K.
pub const SUPPORTED: [GgmlType; 12] = {
    let mut all = [GgmlType::Q8K; 12];
    let mut i = 0;
    while i < WEIGHT_TYPES.len() {
        all[i] = WEIGHT_TYPES[i];
        i += 1;
    }
    all
};

/// An operation written once for any block layout; `with_block` picks the layout.
trait BlockOp {
    /// What the operation returns.
    type Output;

    /// Runs the operation on blocks of type `B`.
    fn run<const QK: usize, B: Block<QK>>(self) -> Result<Self::Output, QuantError>;
}

/// Runs `op` with the block struct of `ty`: the one table from runtime types to layouts.
fn with_block<O: BlockOp>(ty: GgmlType, op: O) -> Result<O::Output, QuantError> {
    match ty {
        GgmlType::F32 => op.run::<1, f32>(),
        GgmlType::F16 => op.run::<1, f16>(),
        GgmlType::BF16 => op.run::<1, bf16>(),
        GgmlType::Q4_0 => op.run::<QK32, BlockQ4_0>(),
        GgmlType::Q4_1 => op.run::<QK32, BlockQ4_1>(),
        GgmlType::Q5_0 => op.run::<QK32, BlockQ5_0>(),
        GgmlType::Q5_1 => op.run::<QK32, BlockQ5_1>(),
        GgmlType::Q8_0 => op.run::<QK32, BlockQ8_0>(),
        GgmlType::Q4K => op.run::<QK_K, BlockQ4K>(),
        GgmlType::Q5K => op.run::<QK_K, BlockQ5K>(),
        GgmlType::Q6K => op.run::<QK_K, BlockQ6K>(),
        GgmlType::Q8K => op.run::<QK_K, BlockQ8K>(),
        GgmlType::Q8_1 | GgmlType::Q2K | GgmlType::Q3K => Err(QuantError::Unsupported(ty)),
    }
}

/// The number of whole `B` blocks in `len` bytes.
fn blocks_in<const QK: usize, B: Block<QK>>(len: usize) -> Result<usize, QuantError> {
    let block_bytes = size_of::<B>();
    if !len.is_multiple_of(block_bytes) {
        return Err(QuantError::PartialBlockBytes {
            ty: B::TYPE,
            len,
            block_bytes,
        });
    }
    Ok(len / block_bytes)
}

/// Decodes `bytes` of type `ty` into `out`, which must hold exactly the encoded values.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    with_block(ty, Dequantize { bytes, out })
}

/// `dequantize`'s operation.
struct Dequantize<'a> {
    bytes: &'a [u8],
    out: &'a mut [f32],
}

impl BlockOp for Dequantize<'_> {
    type Output = ();

    fn run<const QK: usize, B: Block<QK>>(self) -> Result<(), QuantError> {
        let expected = blocks_in::<QK, B>(self.bytes.len())? * QK;
        if self.out.len() != expected {
            let got = self.out.len();
            return Err(QuantError::LengthMismatch {
                ty: B::TYPE,
                expected,
                got,
            });
        }
        let (outs, _) = self.out.as_chunks_mut::<QK>();
        // Unaligned reads: GGUF data may sit at any offset of a mapping or buffer.
        for (raw, out) in self.bytes.chunks_exact(size_of::<B>()).zip(outs) {
            pod_read_unaligned::<B>(raw).dequantize(out);
        }
        Ok(())
    }
}

/// Encodes finite `values` (a whole number of blocks) as type `ty`.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, QuantError> {
    with_block(ty, Quantize { values })
}

/// `quantize`'s operation.
struct Quantize<'a> {
    values: &'a [f32],
}

impl BlockOp for Quantize<'_> {
    type Output = Vec<u8>;

    fn run<const QK: usize, B: Block<QK>>(self) -> Result<Vec<u8>, QuantError> {
        let (blocks, rest) = self.values.as_chunks::<QK>();
        if !rest.is_empty() {
            let len = self.values.len();
            return Err(QuantError::PartialBlockValues {
                ty: B::TYPE,
                len,
                block_elems: QK,
            });
        }
        if let Some((index, &value)) = self.values.iter().enumerate().find(|(_, v)| !v.is_finite())
        {
            return Err(QuantError::NonFinite {
                ty: B::TYPE,
                index,
                value,
            });
        }
        let mut bytes = Vec::with_capacity(blocks.len() * size_of::<B>());
        for block in blocks {
            bytes.extend_from_slice(bytes_of(&B::quantize(block)));
        }
        Ok(bytes)
    }
}

/// `n_blocks` valid random blocks of type `ty` (elements, for plain float types) whose
/// values look like trained weights: random quant bits, small finite scales.
pub fn random_blocks<R: Rng + ?Sized>(
    ty: GgmlType,
    n_blocks: usize,
    rng: &mut R,
) -> Result<Vec<u8>, QuantError> {
    with_block(ty, RandomBlocks { n_blocks, rng })
}

/// Fills `out` (a whole number of blocks) with blocks as `random_blocks` makes them.
pub fn fill_random_blocks<R: Rng + ?Sized>(
    ty: GgmlType,
    out: &mut [u8],
    rng: &mut R,
) -> Result<(), QuantError> {
    with_block(ty, FillRandom { out, rng })
}

/// `random_blocks`'s operation.
struct RandomBlocks<'a, R: ?Sized> {
    n_blocks: usize,
    rng: &'a mut R,
}

impl<R: Rng + ?Sized> BlockOp for RandomBlocks<'_, R> {
    type Output = Vec<u8>;

    fn run<const QK: usize, B: Block<QK>>(self) -> Result<Vec<u8>, QuantError> {
        let n_blocks = self.n_blocks;
        let len = n_blocks
            .checked_mul(size_of::<B>())
            .ok_or(QuantError::TooLarge {
                ty: B::TYPE,
                n_blocks,
            })?;
        let mut out = vec![0u8; len];
        fill_random::<QK, B, R>(&mut out, self.rng);
        Ok(out)
    }
}

/// `fill_random_blocks`'s operation.
struct FillRandom<'a, R: ?Sized> {
    out: &'a mut [u8],
    rng: &'a mut R,
}

impl<R: Rng + ?Sized> BlockOp for FillRandom<'_, R> {
    type Output = ();

    fn run<const QK: usize, B: Block<QK>>(self) -> Result<(), QuantError> {
        blocks_in::<QK, B>(self.out.len())?;
        fill_random::<QK, B, R>(self.out, self.rng);
        Ok(())
    }
}

/// Fills whole `B` blocks with random bits in bulk, then makes each one weight-like.
fn fill_random<const QK: usize, B: Block<QK>, R: Rng + ?Sized>(out: &mut [u8], rng: &mut R) {
    rng.fill_bytes(out);
    for raw in out.chunks_exact_mut(size_of::<B>()) {
        let block = pod_read_unaligned::<B>(raw).weight_like();
        raw.copy_from_slice(bytes_of(&block));
    }
}

/// `row · x` in f64 over the dequantised row: the reference that kernels are checked against.
pub fn dot_row(ty: GgmlType, row: &[u8], x: &[f32]) -> Result<f64, QuantError> {
    let mut values = vec![0f32; x.len()];
    dequantize(ty, row, &mut values)?;
    Ok(values
        .iter()
        .zip(x)
        .map(|(&v, &x)| f64::from(v) * f64::from(x))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::{assert_values, decode, gaussian, rng};

    /// Normalised mean squared error of `got` against `want`.
    fn nmse(want: &[f32], got: &[f32]) -> f64 {
        let err: f64 = want
            .iter()
            .zip(got)
            .map(|(&w, &g)| (f64::from(w) - f64::from(g)).powi(2))
            .sum();
        let norm: f64 = want.iter().map(|&w| f64::from(w).powi(2)).sum();
        err / norm
    }

    /// Round-trip NMSE bounds on Gaussian data: measured values (in the report) plus margin.
    const NMSE_BOUNDS: [(GgmlType, f64); 12] = [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-7),
        (GgmlType::BF16, 5e-6),
        (GgmlType::Q4_0, 9e-3),
        (GgmlType::Q4_1, 8e-3),
        (GgmlType::Q5_0, 2.5e-3),
        (GgmlType::Q5_1, 2e-3),
        (GgmlType::Q8_0, 4e-5),
        (GgmlType::Q4K, 8e-3),
        (GgmlType::Q5K, 2e-3),
        (GgmlType::Q6K, 5e-4),
        (GgmlType::Q8K, 7e-5),
    ];

    #[test]
    fn round_trip_error_is_bounded_per_type() {
        for (ty, bound) in NMSE_BOUNDS {
            for sigma in [1.0, 0.02] {
                let x = gaussian(256 * 256, sigma, &mut rng(7));
                let bytes = quantize(ty, &x).unwrap();
                assert_eq!(bytes.len() as u64, ty.bytes_for(x.len() as u64).unwrap());
                let e = nmse(&x, &decode(ty, &bytes));
                assert!(
                    e <= bound,
                    "{ty} at sigma {sigma}: NMSE {e:.3e} > {bound:.0e}"
                );
            }
        }
    }

    #[test]
    fn every_supported_type_has_a_bound() {
        assert_eq!(NMSE_BOUNDS.map(|(ty, _)| ty), SUPPORTED);
    }

    #[test]
    fn zeros_round_trip_to_zeros() {
        for ty in SUPPORTED {
            let bytes = quantize(ty, &[0.0; 512]).unwrap();
            // Symmetric formats divide by a negated maximum, so -0 is a fine zero too.
            assert!(decode(ty, &bytes).iter().all(|&v| v == 0.0), "{ty}");
        }
    }

    /// Reports a layout's block size and values per block.
    struct Shape;

    impl BlockOp for Shape {
        type Output = (usize, usize, GgmlType);

        fn run<const QK: usize, B: Block<QK>>(self) -> Result<Self::Output, QuantError> {
            Ok((size_of::<B>(), QK, B::TYPE))
        }
    }

    #[test]
    fn block_layouts_match_the_type_table() {
        for ty in GgmlType::ALL {
            match with_block(ty, Shape) {
                Ok(shape) => {
                    assert!(SUPPORTED.contains(&ty), "{ty}");
                    assert_eq!(shape, (ty.block_bytes(), ty.block_elems(), ty));
                }
                Err(e) => {
                    assert!(!SUPPORTED.contains(&ty), "{ty}");
                    assert_eq!(e, QuantError::Unsupported(ty));
                }
            }
        }
    }

    #[test]
    fn plain_floats_decode_little_endian() {
        let f32_bytes = [0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x80, 0xBF];
        assert_values(&decode(GgmlType::F32, &f32_bytes), &[1.5, -1.0]);
        let f16_bytes = [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00];
        assert_values(
            &decode(GgmlType::F16, &f16_bytes),
            &[1.0, -2.0, 2f32.powi(-24)],
        );
        let bf16_bytes = [0x80, 0x3F, 0x40, 0xC0];
        assert_values(&decode(GgmlType::BF16, &bf16_bytes), &[1.0, -3.0]);
    }

    #[test]
    fn misaligned_input_decodes_like_aligned() {
        let bytes = quantize(GgmlType::Q6K, &gaussian(512, 1.0, &mut rng(1))).unwrap();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        assert_values(
            &decode(GgmlType::Q6K, &shifted[1..]),
            &decode(GgmlType::Q6K, &bytes),
        );
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut out = [0f32; 32];
        assert_eq!(
            dequantize(GgmlType::Q4_0, &[0; 17], &mut out),
            Err(QuantError::PartialBlockBytes {
                ty: GgmlType::Q4_0,
                len: 17,
                block_bytes: 18
            })
        );
        assert_eq!(
            dequantize(GgmlType::Q4_0, &[0; 18], &mut out[..31]),
            Err(QuantError::LengthMismatch {
                ty: GgmlType::Q4_0,
                expected: 32,
                got: 31
            })
        );
        assert_eq!(
            dequantize(GgmlType::F16, &[0; 3], &mut out),
            Err(QuantError::PartialBlockBytes {
                ty: GgmlType::F16,
                len: 3,
                block_bytes: 2
            })
        );
        assert_eq!(
            quantize(GgmlType::Q4K, &[0.0; 255]),
            Err(QuantError::PartialBlockValues {
                ty: GgmlType::Q4K,
                len: 255,
                block_elems: 256
            })
        );
        assert_eq!(
            fill_random_blocks(GgmlType::Q6K, &mut [0; 211], &mut rng(0)),
            Err(QuantError::PartialBlockBytes {
                ty: GgmlType::Q6K,
                len: 211,
                block_bytes: 210
            })
        );
        assert_eq!(
            dot_row(GgmlType::Q8_0, &[0; 34], &[0.0; 33]),
            Err(QuantError::LengthMismatch {
                ty: GgmlType::Q8_0,
                expected: 32,
                got: 33
            })
        );
        assert_eq!(
            random_blocks(GgmlType::Q8_0, usize::MAX, &mut rng(0)),
            Err(QuantError::TooLarge {
                ty: GgmlType::Q8_0,
                n_blocks: usize::MAX
            })
        );
    }

    #[test]
    fn non_finite_values_are_refused() {
        let mut x = [0.5f32; 32];
        x[5] = f32::NAN;
        assert!(matches!(
            quantize(GgmlType::Q8_0, &x),
            Err(QuantError::NonFinite {
                ty: GgmlType::Q8_0,
                index: 5,
                ..
            })
        ));
        x[5] = f32::NEG_INFINITY;
        assert!(matches!(
            quantize(GgmlType::F32, &x),
            Err(QuantError::NonFinite { index: 5, .. })
        ));
    }

    #[test]
    fn unsupported_types_are_errors_everywhere() {
        for ty in [GgmlType::Q8_1, GgmlType::Q2K, GgmlType::Q3K] {
            let want = Err(QuantError::Unsupported(ty));
            assert_eq!(dequantize(ty, &[], &mut []), want);
            assert_eq!(quantize(ty, &[]).map(drop), want);
            assert_eq!(random_blocks(ty, 1, &mut rng(0)).map(drop), want);
            assert_eq!(fill_random_blocks(ty, &mut [], &mut rng(0)), want);
            assert_eq!(dot_row(ty, &[], &[]).map(drop), want);
        }
        let msg = QuantError::Unsupported(GgmlType::Q2K).to_string();
        assert!(
            msg.starts_with("no reference codec for Q2_K;") && msg.ends_with("Q6_K, Q8_K"),
            "{msg}"
        );
    }

    #[test]
    fn random_blocks_are_valid_and_weight_sized() {
        for ty in SUPPORTED {
            let n_blocks = 4096 / ty.block_elems();
            let bytes = random_blocks(ty, n_blocks, &mut rng(3)).unwrap();
            assert_eq!(bytes.len(), n_blocks * ty.block_bytes());
            let values = decode(ty, &bytes);
            assert!(values.iter().all(|v| v.is_finite()), "{ty}");
            let mean_abs = values.iter().map(|v| f64::from(v.abs())).sum::<f64>() / 4096.0;
            let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / 4096.0;
            assert!(
                (0.01..0.05).contains(&mean_abs),
                "{ty}: mean |x| = {mean_abs}"
            );
            assert!(
                mean.abs() < 0.5 * mean_abs,
                "{ty}: mean {mean} is off-centre"
            );
        }
    }

    #[test]
    fn random_blocks_repeat_per_seed_and_keep_sums_consistent() {
        let a = random_blocks(GgmlType::Q8K, 8, &mut rng(9)).unwrap();
        assert_eq!(a, random_blocks(GgmlType::Q8K, 8, &mut rng(9)).unwrap());
        assert_ne!(a, random_blocks(GgmlType::Q8K, 8, &mut rng(10)).unwrap());
        for raw in a.chunks_exact(size_of::<BlockQ8K>()) {
            let block: BlockQ8K = pod_read_unaligned(raw);
            for (sum, qs) in block.bsums.iter().zip(block.qs.chunks_exact(16)) {
                assert_eq!(*sum, qs.iter().map(|&q| i16::from(q)).sum::<i16>());
            }
        }
    }

    #[test]
    fn dot_row_sums_in_f64() {
        // Q8_0 block with d = 0.5 and levels 1, 2, ..., 32.
        let mut row = vec![0x00, 0x38];
        row.extend(1..=32u8);
        let x: Vec<f32> = (0..32)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        // Pairs (2k+1) - (2k+2) = -1, sixteen of them, times d.
        assert_eq!(dot_row(GgmlType::Q8_0, &row, &x), Ok(-8.0));
        let big = [1e8f32, 1.0, -1e8];
        let row: Vec<u8> = big.iter().flat_map(|v| v.to_le_bytes()).collect();
        // f32 accumulation would lose the 1.
        assert_eq!(dot_row(GgmlType::F32, &row, &[1.0; 3]), Ok(1.0));
    }

    #[test]
    #[ignore = "throughput measurement: run with --release --ignored --nocapture"]
    fn random_blocks_throughput() {
        // Non-zero fill so page faults are taken before timing.
        let mut out = vec![1u8; 256 << 20];
        for ty in SUPPORTED {
            let len = out.len() / ty.block_bytes() * ty.block_bytes();
            let start = std::time::Instant::now();
            fill_random_blocks(ty, &mut out[..len], &mut rng(0)).unwrap();
            let mb_s = len as f64 / 1e6 / start.elapsed().as_secs_f64();
            println!("{ty}: {mb_s:.0} MB/s");
            assert!(mb_s > 300.0, "{ty}: {mb_s:.0} MB/s");
        }
    }
}
