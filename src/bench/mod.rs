//! `greta bench-kernels`: device-time of the decode kernels on Llama-2-7B shapes, as
//! achieved bandwidth and as a fraction of the device's measured copy bandwidth.
//! Timing uses events after a warm-up, reports the median of many runs, and rotates among
//! enough copies of the weights that the L2 cache cannot serve them.

use crate::kernels::attention::{Attention, AttentionKernel};
use crate::kernels::matvec::{self, Inputs, Matvec, Rope};
use crate::kernels::stream;
use crate::quant::gpu::{pack, GpuFormat};
use crate::quant::random_blocks;
use crate::runtime::{Buffer, Device, Error, Result};
use crate::selftest::graph::median;
use rand::rngs::StdRng;
use rand::SeedableRng;

pub mod prefill;

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

/// Launches timed together per sample in eager mode: the GPU stays busy, so host
/// submission gaps do not count.
const BATCH: usize = 10;

/// How launches are issued while timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// Batches of `BATCH` launches issued one by one; each sample is one batch.
    Eager,
    /// One launch per rotated copy captured into a graph; each sample is one replay. This
    /// is how the decode step runs, with the shorter gaps between replayed launches.
    Graph,
}

/// Median device time of one launch, in microseconds. `launch(d, k)` launches on copy `k`
/// of `copies`; every copy is launched once before timing starts.
pub(crate) fn time_launches(
    dev: &Device,
    timing: Timing,
    copies: usize,
    reps: usize,
    mut launch: impl FnMut(&Device, usize) -> Result<()>,
) -> Result<f64> {
    (0..copies).try_for_each(|k| launch(dev, k))?;
    let mut ms = Vec::with_capacity(reps);
    match timing {
        Timing::Eager => {
            for i in 0..reps {
                let sample =
                    dev.time(|d| (0..BATCH).try_for_each(|j| launch(d, (i * BATCH + j) % copies)))?;
                ms.push(sample / BATCH as f64);
            }
        }
        Timing::Graph => {
            let graph = dev.capture(|d| (0..copies).try_for_each(|k| launch(d, k)))?;
            dev.replay(&graph)?;
            for _ in 0..reps {
                ms.push(dev.time(|d| d.replay(&graph))? / copies as f64);
            }
        }
    }
    Ok(median(&mut ms) * 1e3)
}

/// Copies of a `bytes`-sized input needed so that rotating through them defeats the L2.
pub(crate) fn rotation(bytes: usize, most: usize) -> usize {
    ROTATION_BYTES.div_ceil(bytes).clamp(2, most)
}

/// When a read-only launch waits for the launch before it (`read_stream`'s `EARLY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOrder {
    /// Everything is read before the wait: the roofline.
    ReadFirst = stream::READ_FIRST as isize,
    /// The first loads are issued before the wait and used after it, as the products'
    /// first weight step.
    FirstLoadsFirst = stream::FIRST_LOADS_FIRST as isize,
    /// Nothing is read before the wait.
    WaitFirst = stream::WAIT_FIRST as isize,
}

/// The read roofline at `bytes`: a kernel that only streams that many bytes with 16-byte
/// loads, timed the same way as the products, waiting for the previous launch in `order`.
pub fn bench_read(
    dev: &Device,
    bytes: usize,
    order: ReadOrder,
    timing: Timing,
    reps: usize,
) -> Result<BenchRow> {
    let vecs = bytes.div_ceil(16);
    let copies = rotation(vecs * 16, 64);
    let mut rng = StdRng::seed_from_u64(bytes as u64);
    let data: Vec<u32> = (0..vecs * 4).map(|_| rand::Rng::gen(&mut rng)).collect();
    let bufs: Vec<Buffer<u32>> = (0..copies)
        .map(|_| dev.upload(&data))
        .collect::<Result<_>>()?;
    let mut out = dev.alloc::<u32>(1)?;
    let (unroll, block) = (4u32, 512u32);
    let spec = stream::read_stream::Spec {
        unroll,
        block,
        early: order as u32,
    }
    .values();
    let grid = (vecs as u32)
        .div_ceil(block * unroll)
        .min(dev.compute_units() * (2048 / block))
        .max(1);
    let never = data.iter().fold(0u32, |a, w| a ^ w) ^ 1;
    let us = time_launches(dev, timing, copies, reps, |d, k| {
        let args = [
            (&bufs[k]).into(),
            (&mut out).into(),
            (vecs as u32).into(),
            never.into(),
        ];
        d.launch(stream::read_stream::definition(), &spec, grid.into(), &args)
    })?;
    Ok(BenchRow {
        name: match order {
            ReadOrder::ReadFirst => "read roofline",
            ReadOrder::FirstLoadsFirst => "read, first loads early",
            ReadOrder::WaitFirst => "read, waiting first",
        }
        .into(),
        shape: format!("{:.1} MB", bytes as f64 / 1e6),
        us,
        bytes: vecs * 16,
    })
}

/// Random weights for a `rows x cols` matrix of `fmt`, packed, in enough copies that the
/// L2 cannot serve them.
fn weight_copies(
    dev: &Device,
    fmt: GpuFormat,
    rows: usize,
    cols: usize,
    rng: &mut StdRng,
) -> Result<(Vec<Buffer<u32>>, usize)> {
    let ty = fmt.ggml();
    let blocks = random_blocks(ty, rows * cols / ty.block_elems(), rng)
        .map_err(|e| Error::Backend(e.to_string()))?;
    let packed = pack(ty, rows, cols, &blocks).map_err(|e| Error::Backend(e.to_string()))?;
    let bytes = packed.len() * 4;
    let copies = (0..rotation(bytes, 64))
        .map(|_| dev.upload(&packed))
        .collect::<Result<_>>()?;
    Ok((copies, bytes))
}

/// Times the product `mv` (formats, prologue, epilogue, launch shape) of stacked matrices
/// of `rows_a` and `rows_b` rows of `cols` values. For `QKV` the Llama-2-7B geometry is
/// used: 32 heads of 128, the first `rows_a / 2` rows are Q, a 4096-position cache.
pub fn bench_matvec(
    dev: &Device,
    mv: Matvec,
    rows_a: usize,
    rows_b: usize,
    cols: usize,
    timing: Timing,
    reps: usize,
) -> Result<BenchRow> {
    let mut rng = StdRng::seed_from_u64(rows_a as u64 * 31 + cols as u64);
    let (wa, bytes_a) = weight_copies(dev, mv.fmt, rows_a, cols, &mut rng)?;
    let (wb, bytes_b) = if rows_b > 0 {
        weight_copies(dev, mv.fmt_b, rows_b, cols, &mut rng)?
    } else {
        (wa.iter().map(|b| b.view::<u32>()).collect(), 0)
    };
    let x = dev.upload(&crate::selftest::random_f32(&mut rng, cols, 1.0))?;
    let nw = dev.upload(&crate::selftest::random_f32(&mut rng, cols, 1.0))?;
    let qkv = mv.epilogue == matvec::Epilogue::Qkv;
    let rope = Rope {
        q_rows: if qkv { rows_a as u32 / 2 } else { 0 },
        head_dim: if qkv { 128 } else { 2 },
        ctx: if qkv { 4096 } else { 1 },
        base: 1e4,
    };
    let outputs = match mv.epilogue {
        matvec::Epilogue::Swiglu => rows_a / 2,
        matvec::Epilogue::Qkv => rope.q_rows as usize,
        _ => rows_a,
    };
    let mut y = dev.alloc::<f32>(outputs)?;
    let cache_len = if qkv { rows_b * rope.ctx as usize } else { 1 };
    let mut kc = dev.alloc::<half::f16>(cache_len)?;
    let mut vc = dev.alloc::<half::f16>(cache_len)?;
    let pos = dev.upload(&[rope.ctx / 2])?;
    let us = time_launches(dev, timing, wa.len(), reps, |d, k| {
        let cache = qkv.then_some((&mut kc, &mut vc, &pos));
        mv.launch(
            d,
            &wa[k],
            &wb[k % wb.len()],
            &x,
            &nw,
            &mut y,
            cache,
            Inputs::ONE,
            rows_a as u32,
            rows_b as u32,
            cols as u32,
            1e-5,
            rope,
        )
    })?;
    let epilogue = match mv.epilogue {
        matvec::Epilogue::Add => " +=",
        matvec::Epilogue::Swiglu => " swiglu",
        matvec::Epilogue::Qkv => " qkv",
        _ => "",
    };
    let formats = if rows_b > 0 {
        format!("{}+{}", mv.fmt.ggml().name(), mv.fmt_b.ggml().name())
    } else {
        mv.fmt.ggml().name().to_string()
    };
    Ok(BenchRow {
        name: format!(
            "matvec {formats} r{}b{}u{}",
            mv.rows_per_wave, mv.block, mv.blocks_per_unit
        ),
        shape: format!(
            "{cols}->{}{}{epilogue}",
            rows_a + rows_b,
            if mv.norm { " +norm" } else { "" }
        ),
        us,
        // Weights, the input (and norm weights), and each output read and written once
        // (the cache rows of a QKV step: K and V at one position, f16).
        bytes: bytes_a
            + bytes_b
            + cols * 4 * (1 + mv.norm as usize)
            + outputs * 4 * (1 + (mv.epilogue == matvec::Epilogue::Add) as usize)
            + if qkv { rows_b * 2 * 2 } else { 0 },
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
pub fn matvec_sweep(
    dev: &Device,
    variants: &[Matvec],
    timing: Timing,
    reps: usize,
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for v in variants {
        for fmt in [GpuFormat::Q4K, GpuFormat::Q6K] {
            for (_, r, c) in LLAMA2_7B_SHAPES {
                let mv = Matvec {
                    fmt,
                    fmt_b: fmt,
                    norm: false,
                    epilogue: matvec::Epilogue::Store,
                    ..*v
                };
                rows.push(bench_matvec(dev, mv, r, 0, c, timing, reps)?);
            }
        }
        let mv = Matvec {
            fmt: GpuFormat::Q4K,
            fmt_b: GpuFormat::Q4K,
            norm: true,
            epilogue: matvec::Epilogue::Store,
            ..*v
        };
        rows.push(bench_matvec(dev, mv, 4096, 0, 4096, timing, reps)?);
    }
    Ok(rows)
}

/// The fused products a Llama-2-7B Q4_K_M decode step launches, in their own launch
/// shapes: QKV (Q and K in Q4_K, V in Q6_K or Q4_K, RoPE and the cache write), gate+up
/// with SwiGLU, and the down projection added into the residual.
pub fn fused_sweep(dev: &Device, timing: Timing, reps: usize) -> Result<Vec<BenchRow>> {
    // A Q4_K_M model's V projection is Q6_K in half the layers and Q4_K in the others.
    let qkv = Matvec {
        fmt_b: GpuFormat::Q6K,
        ..Matvec::new(GpuFormat::Q4K, true, matvec::Epilogue::Qkv)
    };
    let qkv_q4k = Matvec::new(GpuFormat::Q4K, true, matvec::Epilogue::Qkv);
    let swiglu = Matvec::new(GpuFormat::Q4K, true, matvec::Epilogue::Swiglu);
    let down = Matvec::new(GpuFormat::Q4K, false, matvec::Epilogue::Add);
    Ok(vec![
        bench_matvec(dev, qkv, 8192, 4096, 4096, timing, reps)?,
        bench_matvec(dev, qkv_q4k, 8192, 4096, 4096, timing, reps)?,
        bench_matvec(dev, swiglu, 22016, 0, 4096, timing, reps)?,
        bench_matvec(dev, down, 4096, 0, 11008, timing, reps)?,
    ])
}

/// Times attention `kernel` (launch shapes `shape`, whose head geometry is replaced) on
/// the Llama-2-7B shape (32 KV heads of 128, no grouping) at sequence length `len` in a
/// 4096-position cache.
pub fn bench_attention(
    dev: &Device,
    shape: Attention,
    kernel: AttentionKernel,
    len: u32,
    timing: Timing,
    reps: usize,
) -> Result<BenchRow> {
    let att = Attention {
        head_dim: 128,
        group: 1,
        n_kv: 32,
        ctx: 4096,
        ..shape
    };
    let cache_elems = (att.n_kv * att.ctx * att.head_dim) as usize;
    let used_bytes = 2 * (att.n_kv * len * att.head_dim) as usize * 2;
    let copies = rotation(used_bytes, 16);
    let fill = vec![half::f16::from_f32(0.01); cache_elems];
    let caches: Vec<(Buffer<half::f16>, Buffer<half::f16>)> = (0..copies)
        .map(|_| Ok((dev.upload(&fill)?, dev.upload(&fill)?)))
        .collect::<Result<_>>()?;
    let q = dev.upload(&vec![0.5f32; (att.n_kv * att.head_dim) as usize])?;
    let pos = dev.upload(&[len - 1])?;
    let mut scratch = att.scratch(dev, 1)?;
    let mut out = dev.alloc::<f32>((att.n_kv * att.head_dim) as usize)?;
    let us = time_launches(dev, timing, copies, reps, |d, k| {
        let (kc, vc) = &caches[k];
        att.launch(
            d,
            kernel,
            &q,
            kc,
            vc,
            &pos,
            Inputs::ONE,
            &mut scratch,
            &mut out,
        )
    })?;
    let name = match kernel {
        AttentionKernel::Chunked => format!("attention chunk {}", att.chunk),
        AttentionKernel::Streamed => format!("attention_stream {}", att.variant()),
    };
    Ok(BenchRow {
        name,
        shape: format!("32x128 ctx {len}"),
        us,
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
