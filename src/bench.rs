//! `greta bench-kernels`: device-time of the decode kernels on Llama-2-7B shapes, as
//! achieved bandwidth and as a fraction of the device's measured copy bandwidth.
//! Timing uses events after a warm-up, reports the median of many runs, and rotates among
//! enough copies of the weights that the L2 cache cannot serve them.

use crate::kernels::matvec::{self, Matvec, Rope};
use crate::quant::gpu::{pack, GpuFormat};
use crate::quant::random_blocks;
use crate::runtime::{Buffer, Device, Error, Result};
use crate::selftest::graph::median;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Bytes of weights rotated through: several times any L2 (H100: 50 MB, MI300X: 256 MB
/// of Infinity Cache is above that, so the rotation is sized to at least 512 MB).
const ROTATION_BYTES: usize = 512 << 20;

/// One measured kernel.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    pub shape: String,
    /// Median device time per launch, microseconds.
    pub us: f64,
    /// Bytes the kernel must move (weights + vectors).
    pub bytes: usize,
}

impl BenchRow {
    /// Achieved bandwidth in GB/s.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / (self.us * 1e3)
    }
}

/// Device-to-device copy bandwidth in GB/s (bytes read + written), median of `reps`.
pub fn copy_bandwidth(dev: &Device, bytes: usize, reps: usize) -> Result<f64> {
    let src: Buffer<u8> = dev.alloc(bytes)?;
    let mut dst: Buffer<u8> = dev.alloc(bytes)?;
    dev.copy(&src, &mut dst)?;
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| dev.time(|d| d.copy(&src, &mut dst)))
        .collect::<Result<_>>()?;
    Ok(2.0 * bytes as f64 / (median(&mut ms) * 1e6))
}

/// Launches timed together per sample: the GPU stays busy, as in a replayed graph, so host
/// submission gaps do not count.
const BATCH: usize = 10;

/// Times `matvec` for one format and shape with the launch shape of `variant`.
pub fn bench_matvec(
    dev: &Device,
    fmt: GpuFormat,
    rows: usize,
    cols: usize,
    norm: bool,
    variant: Matvec,
    reps: usize,
) -> Result<BenchRow> {
    let ty = fmt.ggml();
    let mut rng = StdRng::seed_from_u64(rows as u64 * 31 + cols as u64);
    let blocks = random_blocks(ty, rows * cols / ty.block_elems(), &mut rng)
        .map_err(|e| Error::Backend(e.to_string()))?;
    let packed = pack(ty, rows, cols, &blocks).map_err(|e| Error::Backend(e.to_string()))?;
    let weight_bytes = packed.len() * 4;
    let copies = ROTATION_BYTES.div_ceil(weight_bytes).clamp(2, 64);
    let weights: Vec<Buffer<u32>> = (0..copies)
        .map(|_| dev.upload(&packed))
        .collect::<Result<_>>()?;
    let x = dev.upload(&crate::selftest::random_f32(&mut rng, cols, 1.0))?;
    let nw = dev.upload(&vec![1.0f32; cols])?;
    let mut y = dev.alloc::<f32>(rows)?;
    let mv = Matvec {
        fmt,
        fmt_b: fmt,
        norm,
        epilogue: matvec::STORE,
        ..variant
    };
    let rope = Rope {
        q_rows: 0,
        head_dim: 2,
        ctx: 1,
        base: 1e4,
    };
    let run = |d: &Device, w: &Buffer<u32>, y: &mut Buffer<f32>| {
        mv.launch(
            d,
            w,
            w,
            &x,
            &nw,
            y,
            None,
            rows as u32,
            0,
            cols as u32,
            1e-5,
            rope,
        )
    };
    for w in &weights {
        run(dev, w, &mut y)?;
    }
    let mut ms = Vec::with_capacity(reps);
    for i in 0..reps {
        let sample = dev.time(|d| {
            (0..BATCH).try_for_each(|k| run(d, &weights[(i * BATCH + k) % copies], &mut y))
        })?;
        ms.push(sample / BATCH as f64);
    }
    Ok(BenchRow {
        name: format!(
            "matvec {} r{}b{}u{}",
            ty.name(),
            mv.rows_per_wave,
            mv.block,
            mv.blocks_per_unit
        ),
        shape: format!("{cols}->{rows}{}", if norm { " +norm" } else { "" }),
        us: median(&mut ms) * 1e3,
        bytes: weight_bytes + cols * 4 * (1 + norm as usize) + rows * 4,
    })
}

/// The Llama-2-7B decode shapes: (label, rows, cols).
pub const LLAMA2_7B_SHAPES: [(&str, usize, usize); 5] = [
    ("qkv", 12288, 4096),
    ("o", 4096, 4096),
    ("gate+up", 22016, 4096),
    ("down", 4096, 11008),
    ("lm_head", 32000, 4096),
];

/// Every Llama-2-7B shape in Q4_K and Q6_K, plus the norm-fused 4096x4096 Q4_K, for each
/// launch variant.
pub fn matvec_sweep(dev: &Device, variants: &[Matvec], reps: usize) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for v in variants {
        for fmt in [GpuFormat::Q4K, GpuFormat::Q6K] {
            for (_, r, c) in LLAMA2_7B_SHAPES {
                rows.push(bench_matvec(dev, fmt, r, c, false, *v, reps)?);
            }
        }
        rows.push(bench_matvec(
            dev,
            GpuFormat::Q4K,
            4096,
            4096,
            true,
            *v,
            reps,
        )?);
    }
    Ok(rows)
}

/// Times `attention` on the Llama-2-7B shape (32 KV heads of 128, no grouping) at
/// sequence length `len` in a 4096-position cache.
pub fn bench_attention(dev: &Device, len: u32, chunk: u32, reps: usize) -> Result<BenchRow> {
    let att = crate::kernels::attention::Attention {
        head_dim: 128,
        group: 1,
        n_kv: 32,
        ctx: 4096,
        chunk,
    };
    let cache_elems = (att.n_kv * att.ctx * att.head_dim) as usize;
    let used_bytes = 2 * (att.n_kv * len * att.head_dim) as usize * 2;
    let copies = ROTATION_BYTES.div_ceil(used_bytes).clamp(2, 16);
    let fill = vec![half::f16::from_f32(0.01); cache_elems];
    let caches: Vec<(Buffer<half::f16>, Buffer<half::f16>)> = (0..copies)
        .map(|_| Ok((dev.upload(&fill)?, dev.upload(&fill)?)))
        .collect::<Result<_>>()?;
    let q = dev.upload(&vec![0.5f32; (att.n_kv * att.head_dim) as usize])?;
    let pos = dev.upload(&[len - 1])?;
    let mut scratch = att.scratch(dev)?;
    let mut out = dev.alloc::<f32>((att.n_kv * att.head_dim) as usize)?;
    for (k, v) in &caches {
        att.launch(dev, &q, k, v, &pos, &mut scratch, &mut out)?;
    }
    let mut ms = Vec::with_capacity(reps);
    for i in 0..reps {
        let sample = dev.time(|d| {
            (0..BATCH).try_for_each(|j| {
                let (k, v) = &caches[(i * BATCH + j) % copies];
                att.launch(d, &q, k, v, &pos, &mut scratch, &mut out)
            })
        })?;
        ms.push(sample / BATCH as f64);
    }
    Ok(BenchRow {
        name: format!("attention ch{chunk}"),

        shape: format!("32x128 ctx {len}"),
        us: median(&mut ms) * 1e3,
        bytes: used_bytes + 2 * (att.n_kv * att.head_dim) as usize * 4,
    })
}

/// Formats the benchmark table against the copy bandwidth.
pub fn table(rows: &[BenchRow], copy_gbps: f64) -> String {
    let mut s = format!(
        "device copy bandwidth (read+write): {copy_gbps:.0} GB/s\n{:<16} {:<20} {:>10} {:>10} {:>8}\n",
        "kernel", "shape", "us", "GB/s", "of copy"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<24} {:<20} {:>10.2} {:>10.0} {:>7.1}%\n",
            r.name,
            r.shape,
            r.us,
            r.gbps(),
            100.0 * r.gbps() / copy_gbps
        ));
    }
    s
}
