//! Cases and f64 references of the matrix-core kernels: the fragment tiles of every
//! operand type, read three ways (shared-memory loads, lane coordinates, fragments built
//! in registers).

use super::{compare, random_f32, Case, Comparison, Tolerance};
use crate::kernels::mma_tile;
use crate::runtime::{Device, Result};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::Rng;

/// Products of f16 or bf16 operands summed in f32: rounding of the sums only.
const F32_SUMS: Tolerance = Tolerance {
    nmse: 1e-10,
    max_rel: 1e-5,
};

/// Integer products: exact.
const EXACT: Tolerance = Tolerance {
    nmse: 0.0,
    max_rel: 0.0,
};

/// Operand element types of the fragment tile cases.
#[derive(Clone, Copy, Debug)]
enum Operand {
    F16,
    Bf16,
    I8,
}

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    for (op, name, tol) in [
        (Operand::F16, "f16", F32_SUMS),
        (Operand::Bf16, "bf16", F32_SUMS),
        (Operand::I8, "i8", EXACT),
    ] {
        let depths: &[usize] = match op {
            Operand::I8 => &[32, 64],
            _ => &[16, 48],
        };
        for &k in depths {
            for n in [64usize, 192] {
                v.push(Case::new(
                    "mma_tile",
                    format!("{name} 16x{n}x{k}"),
                    tol,
                    move |d, r| tile_case(d, r, op, n, k),
                ));
            }
        }
    }
    for (op, name) in [(Operand::F16, "f16"), (Operand::Bf16, "bf16")] {
        v.push(Case::new(
            "mma_tile_trans",
            format!("{name} 16x128x48"),
            F32_SUMS,
            move |d, r| trans_case(d, r, op, 128, 48),
        ));
    }
    v
}

/// `n` operand values of type `op` and their exact values.
fn operands(rng: &mut StdRng, op: Operand, n: usize) -> (Vec<u8>, Vec<f64>) {
    match op {
        Operand::I8 => {
            let q: Vec<i8> = (0..n)
                .map(|_| {
                    let m: i8 = rng.gen_range(1..=127);
                    if rng.gen_bool(0.5) {
                        m
                    } else {
                        -m
                    }
                })
                .collect();
            (
                bytemuck::cast_slice(&q).to_vec(),
                q.iter().map(|&x| x as f64).collect(),
            )
        }
        Operand::F16 => {
            let h: Vec<f16> = random_f32(rng, n, 2.0)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            (
                bytemuck::cast_slice(&h).to_vec(),
                h.iter().map(|x| x.to_f64()).collect(),
            )
        }
        Operand::Bf16 => {
            let h: Vec<bf16> = random_f32(rng, n, 2.0)
                .into_iter()
                .map(bf16::from_f32)
                .collect();
            (
                bytemuck::cast_slice(&h).to_vec(),
                h.iter().map(|x| x.to_f64()).collect(),
            )
        }
    }
}

/// `Y[m][j] = sum_k X[m][k] W[j][k]` (`trans`: W is `k x n`, `W[k][j]`).
fn reference(x: &[f64], w: &[f64], n: usize, k: usize, trans: bool) -> Vec<f64> {
    let mut y = vec![0.0; 16 * n];
    for m in 0..16 {
        for j in 0..n {
            y[m * n + j] = (0..k)
                .map(|kk| x[m * k + kk] * if trans { w[kk * n + j] } else { w[j * k + kk] })
                .sum();
        }
    }
    y
}

/// The worst of the three results of `mma_tile` against one reference.
fn worst(results: [Comparison; 3]) -> Comparison {
    results.into_iter().fold(
        Comparison {
            nmse: 0.0,
            max_rel: 0.0,
            finite: true,
        },
        |a, b| Comparison {
            nmse: a.nmse.max(b.nmse),
            max_rel: a.max_rel.max(b.max_rel),
            finite: a.finite && b.finite,
        },
    )
}

fn tile_case(
    dev: &Device,
    rng: &mut StdRng,
    op: Operand,
    n: usize,
    k: usize,
) -> Result<Comparison> {
    let (xb, xv) = operands(rng, op, 16 * k);
    let (wb, wv) = operands(rng, op, n * k);
    let want = reference(&xv, &wv, n, k, false);
    let block = 64u32;
    let grid = (n as u32).div_ceil(16 * block / dev.target().wave);
    let (n32, k32) = (n as u32, k as u32);
    macro_rules! run {
        ($t:ty, $a:ty, $poison:expr, $to_f32:expr) => {{
            let x: Vec<$t> = bytemuck::cast_slice(&xb).to_vec();
            let w: Vec<$t> = bytemuck::cast_slice(&wb).to_vec();
            let (dx, dw) = (dev.upload(&x)?, dev.upload(&w)?);
            let poison = vec![$poison; 16 * n];
            let (mut y, mut ye, mut yr) = (
                dev.upload(&poison)?,
                dev.upload(&poison)?,
                dev.upload(&poison)?,
            );
            mma_tile::mma_tile::launch::<$t, $a, 64>(
                dev, grid, &dx, &dw, &mut y, &mut ye, &mut yr, n32, k32,
            )?;
            let mut got = Vec::new();
            for b in [&y, &ye, &yr] {
                let host: Vec<f32> = dev.download(b)?.into_iter().map($to_f32).collect();
                got.push(compare(&host, &want));
            }
            Ok(worst([got[0], got[1], got[2]]))
        }};
    }
    match op {
        Operand::F16 => run!(f16, f32, f32::NAN, |v: f32| v),
        Operand::Bf16 => run!(bf16, f32, f32::NAN, |v: f32| v),
        Operand::I8 => run!(i8, i32, i32::MIN, |v: i32| v as f32),
    }
}

fn trans_case(
    dev: &Device,
    rng: &mut StdRng,
    op: Operand,
    n: usize,
    k: usize,
) -> Result<Comparison> {
    let (xb, xv) = operands(rng, op, 16 * k);
    let (wb, wv) = operands(rng, op, k * n);
    let want = reference(&xv, &wv, n, k, true);
    let grid = (n as u32).div_ceil(16 * 64 / dev.target().wave);
    let mut y = dev.upload(&vec![f32::NAN; 16 * n])?;
    macro_rules! run {
        ($t:ty) => {{
            let x: Vec<$t> = bytemuck::cast_slice(&xb).to_vec();
            let w: Vec<$t> = bytemuck::cast_slice(&wb).to_vec();
            let (dx, dw) = (dev.upload(&x)?, dev.upload(&w)?);
            mma_tile::mma_tile_trans::launch::<$t, 64>(
                dev, grid, &dx, &dw, &mut y, n as u32, k as u32,
            )?;
        }};
    }
    match op {
        Operand::Bf16 => run!(bf16),
        _ => run!(f16),
    }
    Ok(compare(&dev.download(&y)?, &want))
}

/// Products with weights rounded to f16 once (about 2^-12 relative each, independent).
const F16_WEIGHTS: Tolerance = Tolerance {
    nmse: 1e-6,
    max_rel: 5e-3,
};

/// The same with the result stored in f16 (SwiGLU) or the caches.
const F16_WEIGHTS_OUT: Tolerance = Tolerance {
    nmse: 2e-6,
    max_rel: 8e-3,
};

/// Cases of the tiled products: every format at row counts of 1 to 512 (each tile shape
/// of the target), ragged N, K of one and several super-blocks; every epilogue.
pub fn gemm_cases() -> Vec<Case> {
    use crate::kernels::matvec::Epilogue::{Add, Store, Swiglu};
    use crate::quant::gpu::GpuFormat;
    let mut v = Vec::new();
    for fmt in [
        GpuFormat::Q4K,
        GpuFormat::Q6K,
        GpuFormat::Q4_0,
        GpuFormat::Q4_1,
        GpuFormat::Q8_0,
        GpuFormat::F16,
    ] {
        let name = fmt.ggml().name();
        for (m, n, k) in [
            (1usize, 96usize, 256usize),
            (3, 200, 512),
            (17, 160, 256),
            (64, 128, 768),
            (512, 256, 256),
        ] {
            v.push(Case::new(
                "gemm",
                format!("{name} {m}x{n}x{k}"),
                F16_WEIGHTS,
                move |d, r| gemm_case(d, r, fmt, Store, (m, n, k), Product::Tiled),
            ));
        }
    }
    // The tile's schedule choices (where the dequantisation sits, loads two steps ahead)
    // on the default shapes, with odd step counts where the format allows.
    for (fmt, m, n, k) in [
        (GpuFormat::Q4K, 64usize, 128usize, 768usize),
        (GpuFormat::Q6K, 130, 96, 512),
        (GpuFormat::Q8_0, 3, 200, 320),
        (GpuFormat::F16, 130, 96, 320),
    ] {
        for (dequant_at, ahead) in [(0u32, 2u32), (4, 2), (1, 1)] {
            let name = fmt.ggml().name();
            v.push(Case::new(
                "gemm",
                format!("{name} {m}x{n}x{k} dq{dequant_at} ahead{ahead}"),
                F16_WEIGHTS,
                move |d, r| {
                    gemm_case(
                        d,
                        r,
                        fmt,
                        Store,
                        (m, n, k),
                        Product::Scheduled(dequant_at, ahead),
                    )
                },
            ));
        }
    }
    for (fmt, m, n, k) in [
        (GpuFormat::Q4K, 3usize, 64usize, 256usize),
        (GpuFormat::Q6K, 130, 192, 512),
    ] {
        let name = fmt.ggml().name();
        v.push(Case::new(
            "gemm",
            format!("{name} {m}x{n}x{k} +="),
            F16_WEIGHTS,
            move |d, r| gemm_case(d, r, fmt, Add, (m, n, k), Product::Tiled),
        ));
    }
    for (fmt, m, n, k) in [
        (GpuFormat::Q4K, 5usize, 128usize, 256usize),
        (GpuFormat::Q4K, 140, 256, 256),
        (GpuFormat::Q6K, 64, 160, 256),
    ] {
        let name = fmt.ggml().name();
        v.push(Case::new(
            "gemm",
            format!("{name} swiglu {m}x{n}x{k}"),
            F16_WEIGHTS_OUT,
            move |d, r| gemm_case(d, r, fmt, Swiglu, (m, n, k), Product::Tiled),
        ));
    }
    for (qk, vf, m, pos0) in [
        (GpuFormat::Q4K, GpuFormat::Q6K, 7usize, 5u32),
        (GpuFormat::Q4_1, GpuFormat::Q4_1, 130, 0),
    ] {
        v.push(Case::new(
            "gemm",
            format!("qkv {}+{} m={m} pos {pos0}", qk.ggml(), vf.ggml()),
            F16_WEIGHTS_OUT,
            move |d, r| gemm_qkv_case(d, r, qk, vf, m, pos0),
        ));
    }
    v
}

/// Cases of the few-row products: every format at 1 to 64 rows (both token shapes, one
/// and several blocks of tokens), ragged N, K of one and several groups per wave; every
/// epilogue. Each row launched alone must give the same bits as in its batch.
pub fn skinny_cases() -> Vec<Case> {
    use crate::kernels::matvec::Epilogue::{Add, Store, Swiglu};
    use crate::quant::gpu::GpuFormat;
    let mut v = Vec::new();
    for fmt in [
        GpuFormat::Q4K,
        GpuFormat::Q6K,
        GpuFormat::Q4_0,
        GpuFormat::Q4_1,
        GpuFormat::Q8_0,
        GpuFormat::F16,
    ] {
        let name = fmt.ggml().name();
        for (m, n, k) in [
            (1usize, 96usize, 256usize),
            (3, 200, 512),
            (17, 80, 768),
            (64, 48, 256),
        ] {
            v.push(Case::new(
                "skinny",
                format!("{name} {m}x{n}x{k}"),
                F16_WEIGHTS,
                move |d, r| gemm_case(d, r, fmt, Store, (m, n, k), Product::Skinny),
            ));
        }
    }
    for (fmt, epi, m, n, k, tol) in [
        (GpuFormat::Q4K, Add, 5usize, 64usize, 2304usize, F16_WEIGHTS),
        (GpuFormat::Q6K, Add, 33, 96, 512, F16_WEIGHTS),
        (GpuFormat::Q4K, Swiglu, 9, 128, 512, F16_WEIGHTS_OUT),
        (GpuFormat::Q6K, Swiglu, 20, 34, 256, F16_WEIGHTS_OUT),
    ] {
        let name = fmt.ggml().name();
        v.push(Case::new(
            "skinny",
            format!("{name} {epi:?} {m}x{n}x{k}"),
            tol,
            move |d, r| gemm_case(d, r, fmt, epi, (m, n, k), Product::Skinny),
        ));
    }
    v
}

/// `m` rows of random f16 activations, as f16 and as the f32 the references take.
fn activations(rng: &mut StdRng, m: usize, k: usize) -> (Vec<f16>, Vec<Vec<f32>>) {
    let x: Vec<f16> = random_f32(rng, m * k, 2.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let rows = x
        .chunks(k)
        .map(|r| r.iter().map(|v| v.to_f32()).collect())
        .collect();
    (x, rows)
}

/// `Y[i][j] = x_i · W_j` in f64 from the GGUF blocks.
fn reference_product(
    fmt: crate::quant::gpu::GpuFormat,
    blocks: &[u8],
    n: usize,
    rows: &[Vec<f32>],
) -> Result<Vec<Vec<f64>>> {
    rows.iter()
        .map(|x| super::cases::reference_rows(fmt, blocks, n, x))
        .collect()
}

/// Which product a case launches.
#[derive(Clone, Copy, Debug)]
enum Product {
    /// `gemm` at the target's tile for the rows.
    Tiled,
    /// `gemm` with the dequantisation after product `.0` and loads `.1` steps ahead.
    Scheduled(u32, u32),
    /// `skinny`; every row launched alone must then give the same bits.
    Skinny,
}

fn gemm_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt: crate::quant::gpu::GpuFormat,
    epilogue: crate::kernels::matvec::Epilogue,
    (m, n, k): (usize, usize, usize),
    product: Product,
) -> Result<Comparison> {
    use crate::kernels::gemm::{Gemm, Output};
    use crate::kernels::matvec::Epilogue::{Add, Swiglu};
    use crate::kernels::skinny::Skinny;
    let (blocks, packed) = super::cases::random_weights(rng, fmt, n, k)?;
    let (x, rows) = activations(rng, m, k);
    let dots = reference_product(fmt, &blocks, n, &rows)?;
    let dw = dev.upload(&packed)?;
    let out = if epilogue == Swiglu { n / 2 } else { n };
    let y0 = if epilogue == Add {
        random_f32(rng, m * n, 3.0)
    } else {
        vec![f32::NAN; m * out]
    };
    // The product of the first `m` rows of `x` onto `y0`'s first rows.
    let run = |x: &[f16], y0: &[f32], m: usize| -> Result<Vec<f32>> {
        let dx = dev.upload(x)?;
        let target = dev.target();
        let mut yh = dev.upload(&vec![f16::NAN; m * out])?;
        let mut y = dev.upload(y0)?;
        let o = if epilogue == Swiglu {
            Output::F16(&mut yh, out as u32)
        } else {
            Output::F32(&mut y, n as u32)
        };
        let (mu, nu, ku) = (m as u32, n as u32, k as u32);
        match product {
            Product::Skinny => {
                Skinny::new(fmt, epilogue, &target, mu).launch(dev, &dx, &dw, o, mu, nu, ku)?
            }
            Product::Tiled | Product::Scheduled(..) => {
                let mut g = Gemm::new(fmt, epilogue, &target, mu);
                if let Product::Scheduled(dequant_at, ahead) = product {
                    g.tile.dequant_at = dequant_at;
                    g.tile.ahead = ahead;
                }
                g.launch(dev, &dx, &dw, o, mu, nu, ku)?
            }
        }
        Ok(if epilogue == Swiglu {
            dev.download(&yh)?.into_iter().map(f16::to_f32).collect()
        } else {
            dev.download(&y)?
        })
    };
    let mut got = run(&x, &y0, m)?;
    if let Product::Skinny = product {
        for i in 0..m {
            let alone = run(&x[i * k..][..k], &y0[i * out..][..out], 1)?;
            super::batch::require_alone_bits(&mut got[i * out..][..out], &alone);
        }
    }
    let want: Vec<f64> = if epilogue == Swiglu {
        dots.iter()
            .flat_map(|r| {
                r.chunks(2)
                    .map(|p| p[0] / (1.0 + (-p[0]).exp()) * p[1])
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        dots.iter()
            .flatten()
            .zip(&y0)
            .map(|(d, y)| if epilogue == Add { d + *y as f64 } else { *d })
            .collect()
    };
    Ok(compare(&got, &want))
}

/// Q and K rows (one launch) and V rows (another) of `m` tokens from position `pos0`: Q
/// rotated into its rows, K and V into the caches at their positions, nothing else in
/// the caches touched.
fn gemm_qkv_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt_qk: crate::quant::gpu::GpuFormat,
    fmt_v: crate::quant::gpu::GpuFormat,
    m: usize,
    pos0: u32,
) -> Result<Comparison> {
    use crate::kernels::gemm::{Gemm, Output, QkvRows};
    use crate::kernels::matvec::{Epilogue, Rope};
    let (n_head, n_kv, hd, k) = (4usize, 2usize, 64usize, 256usize);
    let (q_rows, kv_rows) = (n_head * hd, n_kv * hd);
    let ctx = pos0 as usize + m + 2;
    let base = 10000.0f32;
    let (qk_blocks, qk_packed) = super::cases::random_weights(rng, fmt_qk, q_rows + kv_rows, k)?;
    let (v_blocks, v_packed) = super::cases::random_weights(rng, fmt_v, kv_rows, k)?;
    let (x, rows) = activations(rng, m, k);
    let qk = reference_product(fmt_qk, &qk_blocks, q_rows + kv_rows, &rows)?;
    let v = reference_product(fmt_v, &v_blocks, kv_rows, &rows)?;
    let rotate = |row: &[f64], p: u32| -> Vec<f64> {
        let mut out = row.to_vec();
        for (r, pair) in out.chunks_mut(2).enumerate() {
            let i = (2 * r % hd) / 2;
            let angle = p as f64 * (base as f64).powf(-2.0 * i as f64 / hd as f64);
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * angle.cos() - b * angle.sin();
            pair[1] = a * angle.sin() + b * angle.cos();
        }
        out
    };
    let (dx, dqk, dv) = (
        dev.upload(&x)?,
        dev.upload(&qk_packed)?,
        dev.upload(&v_packed)?,
    );
    let mut q = dev.upload(&vec![f32::NAN; m * q_rows])?;
    let sentinel = f16::from_f32(-7.0);
    let mut kc = dev.upload(&vec![sentinel; n_kv * ctx * hd])?;
    let mut vc = dev.upload(&vec![sentinel; n_kv * ctx * hd])?;
    let rope = Rope {
        q_rows: q_rows as u32,
        head_dim: hd as u32,
        ctx: ctx as u32,
        base,
    };
    let rows_a = (q_rows + kv_rows) as u32;
    for (w, fmt, n, row_base) in [
        (&dqk, fmt_qk, rows_a, 0u32),
        (&dv, fmt_v, kv_rows as u32, rows_a),
    ] {
        let out = Output::Qkv {
            q: &mut q,
            kc: &mut kc,
            vc: &mut vc,
            rows: QkvRows {
                row_base,
                rows_a,
                rope,
                pos0,
            },
        };
        Gemm::new(fmt, Epilogue::Qkv, &dev.target(), m as u32)
            .launch(dev, &dx, w, out, m as u32, n, k as u32)?;
    }
    let (kh, vh) = (dev.download(&kc)?, dev.download(&vc)?);
    let mut got: Vec<f32> = dev.download(&q)?;
    let mut want: Vec<f64> = Vec::new();
    let rotated: Vec<Vec<f64>> = qk
        .iter()
        .enumerate()
        .map(|(t, r)| rotate(r, pos0 + t as u32))
        .collect();
    for r in &rotated {
        want.extend(&r[..q_rows]);
    }
    for h in 0..n_kv {
        for slot in 0..ctx {
            let at = (h * ctx + slot) * hd;
            let written = slot >= pos0 as usize && slot < pos0 as usize + m;
            if written {
                let t = slot - pos0 as usize;
                got.extend(
                    kh[at..at + hd]
                        .iter()
                        .chain(&vh[at..at + hd])
                        .map(|v| v.to_f32()),
                );
                want.extend(&rotated[t][q_rows + h * hd..][..hd]);
                want.extend(&v[t][h * hd..][..hd]);
            } else if kh[at..at + hd]
                .iter()
                .chain(&vh[at..at + hd])
                .any(|v| *v != sentinel)
            {
                got.push(f32::NAN);
                want.push(0.0);
            }
        }
    }
    Ok(compare(&got, &want))
}

/// Prefill attention: Q and P rounded to f16 on the way into the products (about 2^-12
/// each), sums in f32, output stored in f16.
const F16_ATTENTION: Tolerance = Tolerance {
    nmse: 1e-5,
    max_rel: 1e-2,
};

/// Cases of prefill attention: one token and many, from the start and after cached
/// positions, head sizes 128 and 64, grouped queries, ragged query blocks.
pub fn attention_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (d, g, n_head, m, pos0) in [
        (128usize, 1usize, 2usize, 1usize, 0usize),
        (128, 1, 2, 17, 100),
        (128, 1, 1, 130, 3),
        (64, 3, 6, 70, 0),
        (64, 3, 3, 64, 37),
    ] {
        v.push(Case::new(
            "attention_prefill",
            format!("d{d} g{g} h{n_head} m={m} pos {pos0}"),
            F16_ATTENTION,
            move |dev, r| prefill_attention_case(dev, r, d, g, n_head, m, pos0),
        ));
    }
    v
}

fn prefill_attention_case(
    dev: &Device,
    rng: &mut StdRng,
    d: usize,
    g: usize,
    n_head: usize,
    m: usize,
    pos0: usize,
) -> Result<Comparison> {
    use crate::kernels::flash::PrefillAttention;
    let n_kv = n_head / g;
    let ctx = pos0 + m + 5;
    let len = pos0 + m;
    // Slots past the prompt hold NaN: reading one fails the case.
    let mut k = vec![f16::NAN; n_kv * ctx * d];
    let mut vv = vec![f16::NAN; n_kv * ctx * d];
    for h in 0..n_kv {
        for p in 0..len {
            for (cache, x) in [
                (&mut k, random_f32(rng, d, 1.0)),
                (&mut vv, random_f32(rng, d, 1.0)),
            ] {
                for (i, x) in x.into_iter().enumerate() {
                    cache[(h * ctx + p) * d + i] = f16::from_f32(x);
                }
            }
        }
    }
    let q = random_f32(rng, m * n_head * d, 1.0);
    let mut want = Vec::with_capacity(m * n_head * d);
    for t in 0..m {
        for h in 0..n_head {
            let qrow = &q[(t * n_head + h) * d..][..d];
            want.extend(super::reference_attention(
                qrow,
                &k,
                &vv,
                (h / g) * ctx * d,
                pos0 + t + 1,
            ));
        }
    }
    let (dq, dk, dv) = (dev.upload(&q)?, dev.upload(&k)?, dev.upload(&vv)?);
    let mut out = dev.upload(&vec![f16::NAN; m * n_head * d])?;
    let att = PrefillAttention {
        head_dim: d as u32,
        group: g as u32,
        n_head: n_head as u32,
        ctx: ctx as u32,
    };
    att.launch(dev, &dq, &dk, &dv, &mut out, m as u32, pos0 as u32)?;
    let got: Vec<f32> = dev.download(&out)?.into_iter().map(f16::to_f32).collect();
    Ok(compare(&got, &want))
}
