//! Cases and f64 references of the built-in kernels.

use super::{compare, random_f32, Case, Comparison, Tolerance};
use crate::kernels::attention::{
    Attention, AttentionKernel,
    AttentionKernel::{Chunked, Streamed},
};
use crate::kernels::matvec::{self, Inputs, Matvec, Rope};
use crate::kernels::{decode, elementwise, gemv, norm};
use crate::quant::gpu::{pack, GpuFormat};
use crate::quant::{dot_row, random_blocks};
use crate::runtime::{Device, Result};
use half::f16;
use rand::rngs::StdRng;

/// Errors of plain f32 arithmetic: rounding only.
const F32: Tolerance = Tolerance {
    nmse: 1e-10,
    max_rel: 1e-5,
};

/// Results stored in bf16 (8 significant bits).
const BF16_OUT: Tolerance = Tolerance {
    nmse: 1e-4,
    max_rel: 1e-2,
};

/// Results stored in f16 (about 11 significant bits).
const F16_OUT: Tolerance = Tolerance {
    nmse: 1e-6,
    max_rel: 2e-3,
};

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    for n in [1usize, 1000, 4096 + 37] {
        v.push(Case::new("add", format!("f32 n={n}"), F32, move |d, r| {
            add_f32(d, r, n)
        }));
        v.push(Case::new(
            "add",
            format!("f16 n={n}"),
            F16_OUT,
            move |d, r| add_f16(d, r, n),
        ));
        v.push(Case::new(
            "add",
            format!("bf16 n={n}"),
            BF16_OUT,
            move |d, r| add_bf16(d, r, n),
        ));
    }
    for (rows, n) in [(1usize, 4096usize), (3, 1000), (2, 5121)] {
        v.push(Case::new(
            "rmsnorm",
            format!("{rows}x{n}"),
            F32,
            move |d, r| rmsnorm(d, r, rows, n, false),
        ));
    }
    v.push(Case::new(
        "rmsnorm",
        "f16 out 5x576".into(),
        F16_OUT,
        move |d, r| rmsnorm(d, r, 5, 576, true),
    ));
    for (rows, n) in [(2usize, 32000usize), (4, 777), (3, 1)] {
        v.push(Case::new(
            "softmax",
            format!("{rows}x{n}"),
            F32,
            move |d, r| softmax(d, r, rows, n),
        ));
    }
    for (rows, cols) in [(256usize, 4096usize), (37, 520), (5, 8)] {
        v.push(Case::new(
            "gemv_f16",
            format!("{rows}x{cols}"),
            F32,
            move |d, r| gemv_f16(d, r, rows, cols),
        ));
    }
    for fmt in GpuFormat::ALL {
        let tol = if fmt.code() <= crate::kernels::dot::F16 {
            F32
        } else {
            Q8_INPUT
        };
        let name = fmt.ggml().name();
        // Waves with several steps, with one, and with none; an input of two prologue
        // passes, the second partial; waves of several rows, and rows whose last step is
        // partial as in the 7B FFN's down product; one row per wave over a three-pass
        // input, stored and added (where sm_90 copies the second step in bulk).
        for (rows, cols, norm, add, block) in [
            (37usize, 512usize, true, false, 1024u32),
            (130, 1536, false, true, 1024),
            (8, 256, true, true, 1024),
            (19, 4352, true, false, 1024),
            (300, 2048, false, true, 1024),
            (5, 11008, true, false, 1024),
            (4, 11008, false, false, 1024),
            (6, 11008, false, true, 1024),
            // A long input in 256-thread blocks: eleven prologue passes, the last
            // partial.
            (3, 11008, false, true, 256),
        ] {
            let shape = format!(
                "{name} {rows}x{cols}{}{}{}",
                if norm { " norm" } else { "" },
                if add { " +=" } else { "" },
                if block == 1024 {
                    String::new()
                } else {
                    format!(" b{block}")
                },
            );
            v.push(Case::new("matvec", shape, tol, move |d, r| {
                let mv = Matvec {
                    block,
                    ..Matvec::new(
                        fmt,
                        norm,
                        if add {
                            matvec::Epilogue::Add
                        } else {
                            matvec::Epilogue::Store
                        },
                    )
                };
                matvec_case(d, r, mv, rows, cols)
            }));
        }
        if fmt.code() > crate::kernels::dot::F16 {
            v.push(Case::new(
                "matvec",
                format!("{name} swiglu 96x512"),
                Q8_SWIGLU,
                move |d, r| swiglu_case(d, r, fmt, 96, 512),
            ));
        }
    }
    for (qk, vf, heads, kv, hd, cols, p) in [
        (
            GpuFormat::Q4K,
            GpuFormat::Q6K,
            4usize,
            2usize,
            64usize,
            256usize,
            5u32,
        ),
        (GpuFormat::Q4_1, GpuFormat::Q4_1, 9, 3, 64, 576, 37),
        (GpuFormat::F16, GpuFormat::F16, 2, 2, 32, 128, 0),
    ] {
        let shape = format!("qkv {}+{} {heads}/{kv}x{hd} pos {p}", qk.ggml(), vf.ggml());
        let tol = if qk == GpuFormat::F16 {
            F16_OUT
        } else {
            Q8_INPUT
        };
        v.push(Case::new("matvec", shape, tol, move |d, r| {
            qkv_case(d, r, qk, vf, heads, kv, hd, cols, p)
        }));
    }
    // Both kernels at one chunk and several, chunks that end inside a pass, streams with
    // no position, several depths, block sizes and rounds; lengths from 1 to the cache.
    let chunked = |d, g, n_kv, ctx, chunk| Attention {
        chunk,
        ..Attention::new(d, g, n_kv, ctx)
    };
    for (att, kernel, lens) in [
        (chunked(128, 1, 2, 1024, 256), Chunked, [1u32, 257]),
        (chunked(128, 1, 2, 1024, 256), Chunked, [256, 1024]),
        (chunked(64, 3, 3, 600, 256), Chunked, [37, 513]),
        (
            Attention {
                min_chunk: 64,
                ..Attention::new(128, 1, 2, 1024)
            },
            Streamed,
            [1, 257],
        ),
        (
            Attention {
                depth: 3,
                block: 128,
                min_chunk: 256,
                rounds: 2,
                ..Attention::new(128, 1, 2, 1024)
            },
            Streamed,
            [256, 1024],
        ),
        (
            Attention {
                min_chunk: 64,
                ..Attention::new(64, 3, 3, 600)
            },
            Streamed,
            [37, 600],
        ),
    ] {
        let shape = match kernel {
            Chunked => format!("chunk {}", att.chunk),
            Streamed => att.variant(),
        };
        let shape = format!(
            "d{} g{} {shape} len {}+{}",
            att.head_dim, att.group, lens[0], lens[1]
        );
        let name = match kernel {
            Chunked => "attention",
            Streamed => "attention_stream",
        };
        v.push(Case::new(name, shape, F32_ATTENTION, move |d, r| {
            attention_case(d, r, att, kernel, lens)
        }));
    }
    for fmt in GpuFormat::ALL {
        let shape = format!("{} 3 of 7x512", fmt.ggml().name());
        v.push(Case::new("embed", shape, F32, move |d, r| {
            embed_case(d, r, fmt, 7, 512)
        }));
    }
    v.push(Case::new("take_row", "5x4097".into(), F32, move |d, r| {
        take_row_case(d, r, 5, 4097)
    }));
    for n in [3usize, 32000, 49152] {
        v.push(Case::new("argmax", format!("n={n}"), F32, move |d, r| {
            argmax_case(d, r, n)
        }));
        v.push(Case::new("stats", format!("n={n}"), F32, move |d, r| {
            stats_case(d, r, n.max(8))
        }));
    }
    v
}

/// Embedding lookup of one row of a random table against the reference dequantiser.
fn embed_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt: GpuFormat,
    rows: usize,
    cols: usize,
) -> Result<Comparison> {
    let (blocks, packed) = random_weights(rng, fmt, rows, cols)?;
    // Three tokens in one launch, one per row of the grid (a decode step looks up one).
    let tokens = [(rows - 2) as u32, 0, (rows - 2) as u32 / 2];
    let row_bytes = blocks.len() / rows;
    let mut want = Vec::new();
    for &token in &tokens {
        let mut want32 = vec![0f32; cols];
        crate::quant::dequantize(
            fmt.ggml(),
            &blocks[token as usize * row_bytes..][..row_bytes],
            &mut want32,
        )
        .map_err(|e| crate::runtime::Error::Backend(e.to_string()))?;
        want.extend(want32.iter().map(|v| *v as f64));
    }
    let (dw, tok) = (dev.upload(&packed)?, dev.upload(&tokens)?);
    let mut out = dev.upload(&vec![f32::NAN; tokens.len() * cols])?;
    dev.launch(
        decode::embed::definition(),
        &decode::embed::Spec { fmt: fmt.code() }.values(),
        ((cols as u32).div_ceil(256), tokens.len() as u32).into(),
        &[
            (&dw).into(),
            (&tok).into(),
            (&mut out).into(),
            (rows as u32).into(),
            (cols as u32).into(),
        ],
    )?;
    Ok(compare(&dev.download(&out)?, &want))
}

/// One row of a matrix copied out.
fn take_row_case(dev: &Device, rng: &mut StdRng, rows: usize, n: usize) -> Result<Comparison> {
    let x = random_f32(rng, rows * n, 2.0);
    let row = rows - 2;
    let dx = dev.upload(&x)?;
    let mut out = dev.upload(&vec![f32::NAN; n])?;
    decode::take_row::launch(
        dev,
        (n as u32).div_ceil(256),
        &dx,
        &mut out,
        row as u32,
        n as u32,
    )?;
    let want: Vec<f64> = x[row * n..][..n].iter().map(|v| *v as f64).collect();
    Ok(compare(&dev.download(&out)?, &want))
}

/// Argmax with the maximum planted twice (the first index must win), plus the token
/// history and position update.
fn argmax_case(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    let mut logits = random_f32(rng, n, 10.0);
    let (a, b) = (n / 3, 2 * n / 3);
    logits[a] = 50.0;
    logits[b] = 50.0;
    let p = 5u32;
    let dl = dev.upload(&logits)?;
    let mut tok = dev.upload(&[u32::MAX])?;
    let mut history = dev.upload(&[u32::MAX; 8])?;
    let mut pos = dev.upload(&[p])?;
    decode::argmax::launch::<1024>(dev, 1, &dl, n as u32, &mut tok, &mut history, &mut pos)?;
    let got = [
        dev.download(&tok)?[0],
        dev.download(&history)?[p as usize],
        dev.download(&pos)?[0],
    ];
    let want = [a as f64, a as f64, (p + 1) as f64];
    Ok(compare(&got.map(|v| v as f32), &want))
}

/// Statistics over finite values with NaN and infinities planted.
fn stats_case(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    // Offset so that the sum is far from zero: a sum of mixed signs that cancels would
    // make its relative error meaningless.
    let mut x: Vec<f32> = random_f32(rng, n, 5.0).iter().map(|v| v + 2.0).collect();
    x[n / 2] = f32::NAN;
    x[n / 5] = f32::INFINITY;
    x[n - 1] = f32::NEG_INFINITY;
    let finite: Vec<f64> = x
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| *v as f64)
        .collect();
    let want = [
        finite.iter().fold(f64::INFINITY, |a, b| a.min(*b)),
        finite.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b)),
        finite.iter().sum(),
        3.0,
    ];
    let dx = dev.upload(&x)?;
    let mut out = dev.upload(&[f32::NAN; 4])?;
    decode::stats::launch::<f32, 1024>(dev, 1, &dx, n as u32, &mut out)?;
    Ok(compare(&dev.download(&out)?, &want))
}

/// f32 attention over f16 keys and values: softmax and sums in f32.
pub(super) const F32_ATTENTION: Tolerance = Tolerance {
    nmse: 1e-8,
    max_rel: 1e-4,
};

/// Geometry for epilogues that do not rotate.
pub(super) const NO_ROPE: Rope = Rope {
    q_rows: 0,
    head_dim: 2,
    ctx: 1,
    base: 10000.0,
};

/// Random valid blocks for a `rows x cols` tensor, and their GPU packing.
pub(super) fn random_weights(
    rng: &mut StdRng,
    fmt: GpuFormat,
    rows: usize,
    cols: usize,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let ty = fmt.ggml();
    let bad = |e: &dyn std::fmt::Display| crate::runtime::Error::Backend(e.to_string());
    let blocks = random_blocks(ty, rows * cols / ty.block_elems(), rng).map_err(|e| bad(&e))?;
    let packed = pack(ty, rows, cols, &blocks).map_err(|e| bad(&e))?;
    Ok((blocks, packed))
}

/// Row-by-row f64 dot products of GGUF blocks with `x`.
pub(super) fn reference_rows(
    fmt: GpuFormat,
    blocks: &[u8],
    rows: usize,
    x: &[f32],
) -> Result<Vec<f64>> {
    blocks
        .chunks(blocks.len() / rows)
        .map(|row| {
            dot_row(fmt.ggml(), row, x).map_err(|e| crate::runtime::Error::Backend(e.to_string()))
        })
        .collect()
}

/// RMSNorm in f64, rounded to f32 as the kernel's input would be.
pub(super) fn reference_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, g)| (*v as f64 * s * *g as f64) as f32)
        .collect()
}

/// SwiGLU over interleaved gate/up rows.
fn swiglu_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt: GpuFormat,
    n_ff: usize,
    cols: usize,
) -> Result<Comparison> {
    let (blocks, packed) = random_weights(rng, fmt, 2 * n_ff, cols)?;
    let x = random_f32(rng, cols, 2.0);
    let nw = random_f32(rng, cols, 1.5);
    let xin = reference_norm(&x, &nw, 1e-5);
    let dots = reference_rows(fmt, &blocks, 2 * n_ff, &xin)?;
    let want: Vec<f64> = dots
        .chunks(2)
        .map(|p| p[0] / (1.0 + (-p[0]).exp()) * p[1])
        .collect();
    let dw = dev.upload(&packed)?;
    let (dx, dnw) = (dev.upload(&x)?, dev.upload(&nw)?);
    let mut y = dev.upload(&vec![f32::NAN; n_ff])?;
    let mv = Matvec::new(fmt, true, matvec::Epilogue::Swiglu);
    mv.launch(
        dev,
        &dw,
        &dw,
        &dx,
        &dnw,
        &mut y,
        None,
        Inputs::ONE,
        2 * n_ff as u32,
        0,
        cols as u32,
        1e-5,
        NO_ROPE,
    )?;
    Ok(compare(&dev.download(&y)?, &want))
}

/// QKV with RoPE at position `p`: Q from the output vector, K and V read back from the
/// caches at that position (everything else in the caches must stay untouched).
#[allow(clippy::too_many_arguments)]
fn qkv_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt_qk: GpuFormat,
    fmt_v: GpuFormat,
    n_head: usize,
    n_kv: usize,
    head_dim: usize,
    cols: usize,
    p: u32,
) -> Result<Comparison> {
    let (q_rows, kv_rows) = (n_head * head_dim, n_kv * head_dim);
    let ctx = p as usize + 3;
    let base = 10000.0f32;
    let (qk_blocks, qk_packed) = random_weights(rng, fmt_qk, q_rows + kv_rows, cols)?;
    let (v_blocks, v_packed) = random_weights(rng, fmt_v, kv_rows, cols)?;
    let x = random_f32(rng, cols, 2.0);
    let nw = random_f32(rng, cols, 1.5);
    let xin = reference_norm(&x, &nw, 1e-5);
    let qk = reference_rows(fmt_qk, &qk_blocks, q_rows + kv_rows, &xin)?;
    let v = reference_rows(fmt_v, &v_blocks, kv_rows, &xin)?;
    let mut rotated = qk.clone();
    for (r, pair) in rotated.chunks_mut(2).enumerate() {
        let i = (2 * r % head_dim) / 2;
        let angle = p as f64 * (base as f64).powf(-2.0 * i as f64 / head_dim as f64);
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * angle.cos() - b * angle.sin();
        pair[1] = a * angle.sin() + b * angle.cos();
    }
    let (dqk, dv) = (dev.upload(&qk_packed)?, dev.upload(&v_packed)?);
    let (dx, dnw) = (dev.upload(&x)?, dev.upload(&nw)?);
    let mut q = dev.upload(&vec![f32::NAN; q_rows])?;
    let sentinel = half::f16::from_f32(-7.0);
    let mut kc = dev.upload(&vec![sentinel; n_kv * ctx * head_dim])?;
    let mut vc = dev.upload(&vec![sentinel; n_kv * ctx * head_dim])?;
    let pos = dev.upload(&[p])?;
    let mv = Matvec {
        fmt_b: fmt_v,
        ..Matvec::new(fmt_qk, true, matvec::Epilogue::Qkv)
    };
    let rope = Rope {
        q_rows: q_rows as u32,
        head_dim: head_dim as u32,
        ctx: ctx as u32,
        base,
    };
    let rows_a = (q_rows + kv_rows) as u32;
    mv.launch(
        dev,
        &dqk,
        &dv,
        &dx,
        &dnw,
        &mut q,
        Some((&mut kc, &mut vc, &pos)),
        Inputs::ONE,
        rows_a,
        kv_rows as u32,
        cols as u32,
        1e-5,
        rope,
    )?;
    let (kh, vh) = (dev.download(&kc)?, dev.download(&vc)?);
    let mut got: Vec<f32> = dev.download(&q)?;
    let mut want: Vec<f64> = rotated[..q_rows].to_vec();
    for h in 0..n_kv {
        for slot in 0..ctx {
            let at = (h * ctx + slot) * head_dim;
            if slot == p as usize {
                got.extend(
                    kh[at..at + head_dim]
                        .iter()
                        .chain(&vh[at..at + head_dim])
                        .map(|v| v.to_f32()),
                );
                want.extend(&rotated[q_rows + h * head_dim..][..head_dim]);
                want.extend(&v[h * head_dim..][..head_dim]);
            } else if kh[at..at + head_dim]
                .iter()
                .chain(&vh[at..at + head_dim])
                .any(|v| *v != sentinel)
            {
                got.push(f32::NAN);
                want.push(0.0);
            }
        }
    }
    Ok(compare(&got, &want))
}

/// Attention over an f16 cache against the f64 softmax reference. Cache slots at or past
/// the current length hold NaN, so reading one fails the case; two launches with different
/// lengths check that the combine counters are left at zero.
fn attention_case(
    dev: &Device,
    rng: &mut StdRng,
    att: Attention,
    kernel: AttentionKernel,
    lens: [u32; 2],
) -> Result<Comparison> {
    let (d, g, n_kv, ctx) = (
        att.head_dim as usize,
        att.group as usize,
        att.n_kv as usize,
        att.ctx as usize,
    );
    let n_q = n_kv * g;
    let kf: Vec<f32> = random_f32(rng, n_kv * ctx * d, 1.0);
    let vf: Vec<f32> = random_f32(rng, n_kv * ctx * d, 1.0);
    let q = random_f32(rng, n_q * d, 1.0);
    let (dq, mut scratch) = (dev.upload(&q)?, att.scratch(dev, 1)?);
    let mut got = Vec::new();
    let mut want = Vec::new();
    for len in lens {
        let cache = |src: &[f32]| -> Vec<half::f16> {
            src.iter()
                .enumerate()
                .map(|(i, v)| {
                    if (i / d) % ctx < len as usize {
                        half::f16::from_f32(*v)
                    } else {
                        half::f16::NAN
                    }
                })
                .collect()
        };
        let (k16, v16) = (cache(&kf), cache(&vf));
        let (dk, dv) = (dev.upload(&k16)?, dev.upload(&v16)?);
        let pos = dev.upload(&[len - 1])?;
        let mut out = dev.upload(&vec![f32::NAN; n_q * d])?;
        att.launch(
            dev,
            kernel,
            &dq,
            &dk,
            &dv,
            &pos,
            Inputs::ONE,
            &mut scratch,
            &mut out,
        )?;
        got.extend(dev.download(&out)?);
        let scale = 1.0 / (d as f64).sqrt();
        for hq in 0..n_q {
            let h = hq / g;
            let row = |c: &[half::f16], t: usize| -> Vec<f64> {
                c[(h * ctx + t) * d..][..d]
                    .iter()
                    .map(|v| v.to_f64())
                    .collect()
            };
            let scores: Vec<f64> = (0..len as usize)
                .map(|t| {
                    row(&k16, t)
                        .iter()
                        .zip(&q[hq * d..][..d])
                        .map(|(k, q)| k * *q as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let l: f64 = p.iter().sum();
            for dd in 0..d {
                want.push(
                    (0..len as usize)
                        .map(|t| p[t] * row(&v16, t)[dd])
                        .sum::<f64>()
                        / l,
                );
            }
        }
    }
    Ok(compare(&got, &want))
}

/// Results of kernels that quantise their input to int8 per 32 values: over 20 seeds the
/// largest NMSE was 8.1e-5 (largest relative error 1.5e-2); a wrong scale or nibble order
/// gives 1e-2 or more.
pub(super) const Q8_INPUT: Tolerance = Tolerance {
    nmse: 3e-4,
    max_rel: 5e-2,
};

/// SwiGLU multiplies two such products, so their errors add: largest NMSE over 20 seeds
/// 1.5e-4.
pub(super) const Q8_SWIGLU: Tolerance = Tolerance {
    nmse: 6e-4,
    max_rel: 5e-2,
};

fn matvec_case(
    dev: &Device,
    rng: &mut StdRng,
    mv: Matvec,
    rows: usize,
    cols: usize,
) -> Result<Comparison> {
    let (fmt, norm, add) = (mv.fmt, mv.norm, mv.epilogue == matvec::Epilogue::Add);
    let (blocks, packed) = random_weights(rng, fmt, rows, cols)?;
    let x = random_f32(rng, cols, 2.0);
    let nw = random_f32(rng, cols, 1.5);
    let y0 = random_f32(rng, rows, 1.0);
    let eps = 1e-5f32;
    let xin = if norm {
        reference_norm(&x, &nw, eps)
    } else {
        x.clone()
    };
    let dots = reference_rows(fmt, &blocks, rows, &xin)?;
    let want: Vec<f64> = dots
        .iter()
        .zip(&y0)
        .map(|(d, y)| if add { *y as f64 + d } else { *d })
        .collect();
    let dw = dev.upload(&packed)?;
    let (dx, dnw) = (dev.upload(&x)?, dev.upload(&nw)?);
    let mut y = dev.upload(&if add { y0 } else { vec![f32::NAN; rows] })?;
    mv.launch(
        dev,
        &dw,
        &dw,
        &dx,
        &dnw,
        &mut y,
        None,
        Inputs::ONE,
        rows as u32,
        0,
        cols as u32,
        eps,
        NO_ROPE,
    )?;
    Ok(compare(&dev.download(&y)?, &want))
}

fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

fn add_f32(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    let (a, b) = (random_f32(rng, n, 4.0), random_f32(rng, n, 4.0));
    let (da, db) = (dev.upload(&a)?, dev.upload(&b)?);
    let mut out = dev.upload(&vec![f32::NAN; n])?;
    elementwise::add::launch::<f32>(dev, blocks(n, 256), &da, &db, &mut out, n as u32)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| *x as f64 + *y as f64)
        .collect();
    Ok(compare(&dev.download(&out)?, &want))
}

fn add_f16(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    let a: Vec<f16> = random_f32(rng, n, 4.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let b: Vec<f16> = random_f32(rng, n, 4.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let (da, db) = (dev.upload(&a)?, dev.upload(&b)?);
    let mut out = dev.upload(&vec![f16::NAN; n])?;
    elementwise::add::launch::<f16>(dev, blocks(n, 256), &da, &db, &mut out, n as u32)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.to_f64() + y.to_f64())
        .collect();
    let got: Vec<f32> = dev.download(&out)?.into_iter().map(f16::to_f32).collect();
    Ok(compare(&got, &want))
}

fn add_bf16(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    let a: Vec<half::bf16> = random_f32(rng, n, 4.0)
        .into_iter()
        .map(half::bf16::from_f32)
        .collect();
    let b: Vec<half::bf16> = random_f32(rng, n, 4.0)
        .into_iter()
        .map(half::bf16::from_f32)
        .collect();
    let (da, db) = (dev.upload(&a)?, dev.upload(&b)?);
    let mut out = dev.upload(&vec![half::bf16::NAN; n])?;
    elementwise::add::launch::<half::bf16>(dev, blocks(n, 256), &da, &db, &mut out, n as u32)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.to_f64() + y.to_f64())
        .collect();
    let got: Vec<f32> = dev
        .download(&out)?
        .into_iter()
        .map(half::bf16::to_f32)
        .collect();
    Ok(compare(&got, &want))
}

fn rmsnorm(
    dev: &Device,
    rng: &mut StdRng,
    rows: usize,
    n: usize,
    f16_out: bool,
) -> Result<Comparison> {
    let eps = 1e-5f32;
    let x = random_f32(rng, rows * n, 3.0);
    let w = random_f32(rng, n, 1.5);
    let (dx, dw) = (dev.upload(&x)?, dev.upload(&w)?);
    let got = if f16_out {
        let mut y = dev.upload(&vec![f16::NAN; rows * n])?;
        norm::rmsnorm::launch::<f16, 256>(dev, rows as u32, &dx, &dw, &mut y, n as u32, eps)?;
        dev.download(&y)?.into_iter().map(f16::to_f32).collect()
    } else {
        let mut y = dev.upload(&vec![f32::NAN; rows * n])?;
        norm::rmsnorm::launch::<f32, 256>(dev, rows as u32, &dx, &dw, &mut y, n as u32, eps)?;
        dev.download(&y)?
    };
    let mut want = Vec::with_capacity(rows * n);
    for row in x.chunks(n) {
        let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
        let scale = 1.0 / (ms + eps as f64).sqrt();
        want.extend(
            row.iter()
                .zip(&w)
                .map(|(v, g)| *v as f64 * scale * *g as f64),
        );
    }
    Ok(compare(&got, &want))
}

fn softmax(dev: &Device, rng: &mut StdRng, rows: usize, n: usize) -> Result<Comparison> {
    let x = random_f32(rng, rows * n, 8.0);
    let dx = dev.upload(&x)?;
    let mut y = dev.upload(&vec![f32::NAN; rows * n])?;
    norm::softmax::launch::<256>(dev, rows as u32, &dx, &mut y, n as u32)?;
    let mut want = Vec::with_capacity(rows * n);
    for row in x.chunks(n) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, v| a.max(*v as f64));
        let e: Vec<f64> = row.iter().map(|v| (*v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        want.extend(e.iter().map(|v| v / s));
    }
    Ok(compare(&dev.download(&y)?, &want))
}

fn gemv_f16(dev: &Device, rng: &mut StdRng, rows: usize, cols: usize) -> Result<Comparison> {
    let w: Vec<f16> = random_f32(rng, rows * cols, 0.5)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let x = random_f32(rng, cols, 1.0);
    let (dw, dx) = (dev.upload(&w)?, dev.upload(&x)?);
    let mut y = dev.upload(&vec![f32::NAN; rows])?;
    let rows_per_block = 256 / dev.target().wave as usize;
    gemv::gemv_f16::launch::<256>(
        dev,
        blocks(rows, rows_per_block),
        &dw,
        &dx,
        &mut y,
        rows as u32,
        cols as u32,
    )?;
    let want: Vec<f64> = w
        .chunks(cols)
        .map(|row| {
            row.iter()
                .zip(&x)
                .map(|(a, b)| a.to_f64() * *b as f64)
                .sum()
        })
        .collect();
    Ok(compare(&dev.download(&y)?, &want))
}
