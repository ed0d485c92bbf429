//! Device functions shared by the matrix-vector kernels: the input prologue (optional
//! RMSNorm, then quantisation of the vector to int8 in blocks of 32 in shared memory) and
//! the dot product of one work item of a weight row in every format.
//!
//! Weights are in the layout of `greta::quant::gpu` (records of whole 16-byte vectors, then
//! a region of f16 scales). Quantised formats multiply int8 weights by the int8 input with
//! the 4-way integer dot product: four multiply-adds per instruction keep the ALUs well
//! below the memory time. Float formats read the input from global memory (it stays in
//! L2) and apply the norm on the fly.

use crate::device;

/// Weight format codes (`FMT`), as `greta::quant::gpu::GpuFormat`.
pub const F32: u32 = 0;
/// f16 weights.
pub const F16: u32 = 1;
/// Q8_0 weights.
pub const Q8_0: u32 = 2;
/// Q4_0 weights.
pub const Q4_0: u32 = 3;
/// Q4_1 weights.
pub const Q4_1: u32 = 4;
/// Q4_K weights.
pub const Q4K: u32 = 5;
/// Q6_K weights.
pub const Q6K: u32 = 6;

/// The low f16 of a 32-bit word, as f32.
#[device]
pub fn f16_lo(word: u32) -> f32 {
    f16::from_bits((word & 0xffff) as u16) as f32
}

/// The high f16 of a 32-bit word, as f32.
#[device]
pub fn f16_hi(word: u32) -> f32 {
    f16::from_bits((word >> 16) as u16) as f32
}

/// Work items per weight row: 8 values for float formats, one 32-value block for the
/// legacy quants, a 64-value group for the K-quants.
#[device]
pub fn items_per_row(fmt: u32, cols: u32) -> u32 {
    if fmt <= 1 {
        cols / 8
    } else if fmt <= 4 {
        cols / 32
    } else {
        cols / 64
    }
}

/// Prologue of every matrix-vector kernel: the RMSNorm scale of `x` (1 without `norm`), and
/// for quantised formats `x * scale * nw` quantised to int8 per 32 values into shared
/// memory: `xq` packs four values per word, `dx` holds each block's step, `sx` each block's
/// sum in real units and `s16` the integer sum of each 16 values (for Q6_K's offset).
/// Every thread of the block must call it.
#[device]
pub fn prologue(
    fmt: u32,
    x: &[f32],
    nw: &[f32],
    norm: bool,
    eps: f32,
    n: u32,
    xq: &mut [i32],
    dx: &mut [f32],
    sx: &mut [f32],
    s16: &mut [i32],
) -> f32 {
    let mut scale = 1.0;
    if norm {
        let mut ss = 0.0;
        for i in (thread_idx()..n).step_by(BLOCK) {
            let v = x[i];
            ss += v * v;
        }
        scale = rsqrt(block_sum(ss) / (n as f32) + eps);
    }
    if fmt >= Q8_0 {
        // Eight lanes cover one 32-value block; the trip count is the same for every lane
        // so the cross-lane reductions below always see a converged wave.
        let per_pass = BLOCK * 4;
        for pass in 0..(n + per_pass - 1) / per_pass {
            let i = pass * per_pass + thread_idx() * 4;
            let valid = i < n;
            let v = if valid { x.load_vec::<4>(i / 4) } else { f32x4::splat(0.0) };
            let g = if valid && norm { nw.load_vec::<4>(i / 4) } else { f32x4::splat(1.0) };
            let v0 = v[0] * scale * g[0];
            let v1 = v[1] * scale * g[1];
            let v2 = v[2] * scale * g[2];
            let v3 = v[3] * scale * g[3];
            let mut amax = max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3)));
            amax = max(amax, shfl_xor(amax, 1));
            amax = max(amax, shfl_xor(amax, 2));
            amax = max(amax, shfl_xor(amax, 4));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let q0 = floor(v0 * inv + 0.5) as i32;
            let q1 = floor(v1 * inv + 0.5) as i32;
            let q2 = floor(v2 * inv + 0.5) as i32;
            let q3 = floor(v3 * inv + 0.5) as i32;
            let packed = (q0 & 0xff) | ((q1 & 0xff) << 8) | ((q2 & 0xff) << 16) | ((q3 & 0xff) << 24);
            let mut sum = q0 + q1 + q2 + q3;
            sum += shfl_xor(sum, 1);
            sum += shfl_xor(sum, 2);
            let sum16 = sum;
            sum += shfl_xor(sum, 4);
            if valid {
                xq[i / 4] = packed;
                if thread_idx() % 4 == 0 {
                    s16[i / 16] = sum16;
                }
                if thread_idx() % 8 == 0 {
                    dx[i / 32] = d;
                    sx[i / 32] = d * (sum as f32);
                }
            }
        }
        barrier();
    }
    scale
}

/// 6-bit scale (low byte) and min (second byte) of Q4_K sub-block `j` from the scale
/// words `a` (bytes 0..4), `b` (4..8) and `c` (8..12).
#[device]
pub fn q4k_scale_min(a: u32, b: u32, c: u32, j: u32) -> u32 {
    let shift = 8 * (j % 4);
    let ba = (a >> shift) & 0xff;
    let bb = (b >> shift) & 0xff;
    let bc = (c >> shift) & 0xff;
    if j < 4 {
        (ba & 63) | ((bb & 63) << 8)
    } else {
        let sc = (bc & 0xf) | ((ba >> 6) << 4);
        let m = (bc >> 4) | ((bb >> 6) << 4);
        sc | (m << 8)
    }
}

/// Q4_K: group `g` (64 values, sub-blocks 2g and 2g+1) of super-block `sb` against input
/// units `u` and `u+1`.
#[device]
pub fn dot_q4k(w: &[u32], sb: u32, g: u32, u: u32, xq: &[i32], dx: &[f32], sx: &[f32]) -> f32 {
    let h = w.load_vec::<4>(sb * 9);
    let q0 = w.load_vec::<4>(sb * 9 + 1 + 2 * g);
    let q1 = w.load_vec::<4>(sb * 9 + 2 + 2 * g);
    let xa = xq.load_vec::<4>(2 * u);
    let xb = xq.load_vec::<4>(2 * u + 1);
    let xc = xq.load_vec::<4>(2 * u + 2);
    let xd = xq.load_vec::<4>(2 * u + 3);
    let mut dot0 = 0;
    let mut dot1 = 0;
    for k in 0..4 {
        dot0 = dp4a((q0[k] & 0x0f0f0f0f) as i32, xa[k], dot0);
        dot0 = dp4a((q1[k] & 0x0f0f0f0f) as i32, xb[k], dot0);
        dot1 = dp4a(((q0[k] >> 4) & 0x0f0f0f0f) as i32, xc[k], dot1);
        dot1 = dp4a(((q1[k] >> 4) & 0x0f0f0f0f) as i32, xd[k], dot1);
    }
    let sm0 = q4k_scale_min(h[1], h[2], h[3], 2 * g);
    let sm1 = q4k_scale_min(h[1], h[2], h[3], 2 * g + 1);
    let d = f16_lo(h[0]);
    let dmin = f16_hi(h[0]);
    let main = ((sm0 & 0xff) as f32) * dx[u] * (dot0 as f32) + ((sm1 & 0xff) as f32) * dx[u + 1] * (dot1 as f32);
    let offset = ((sm0 >> 8) as f32) * sx[u] + ((sm1 >> 8) as f32) * sx[u + 1];
    d * main - dmin * offset
}

/// Signed byte `k` (0..4) of a word.
#[device]
pub fn sbyte(word: u32, k: u32) -> i32 {
    ((word << (24 - 8 * k)) as i32) >> 24
}

/// Q6_K: item `k` of super-block `sb` (half `k/2`, 16 lanes starting at `16*(k%2)`: four
/// runs of 16 values, 32 apart), against input units `u..u+4`.
#[device]
pub fn dot_q6k(w: &[u32], sb: u32, k: u32, u: u32, d: f32, xq: &[i32], dx: &[f32], s16: &[i32]) -> f32 {
    let n = k / 2;
    let half = k % 2;
    let base = sb * 13;
    let la = w.load_vec::<4>(base + 4 * n + half);
    let lb = w.load_vec::<4>(base + 4 * n + 2 + half);
    let qh = w.load_vec::<4>(base + 8 + 2 * n + half);
    let sc = w.load_vec::<4>(base + 12);
    let sc_lo = if n == 0 { sc[0] } else { sc[2] };
    let sc_hi = if n == 0 { sc[1] } else { sc[3] };
    let x0 = xq.load_vec::<4>(2 * u + half);
    let x1 = xq.load_vec::<4>(2 * (u + 1) + half);
    let x2 = xq.load_vec::<4>(2 * (u + 2) + half);
    let x3 = xq.load_vec::<4>(2 * (u + 3) + half);
    let mut d0 = 0;
    let mut d1 = 0;
    let mut d2 = 0;
    let mut d3 = 0;
    for j in 0..4 {
        let a = la[j];
        let b = lb[j];
        let h = qh[j];
        d0 = dp4a(((a & 0x0f0f0f0f) | ((h & 0x03030303) << 4)) as i32, x0[j], d0);
        d1 = dp4a(((b & 0x0f0f0f0f) | ((h & 0x0c0c0c0c) << 2)) as i32, x1[j], d1);
        d2 = dp4a((((a >> 4) & 0x0f0f0f0f) | (h & 0x30303030)) as i32, x2[j], d2);
        d3 = dp4a((((b >> 4) & 0x0f0f0f0f) | ((h >> 2) & 0x30303030)) as i32, x3[j], d3);
    }
    // Values are stored as q + 32: subtract 32 times each run's input sum.
    let r0 = (sbyte(sc_lo, half) as f32) * dx[u] * ((d0 - 32 * s16[2 * u + half]) as f32);
    let r1 = (sbyte(sc_lo, half + 2) as f32) * dx[u + 1] * ((d1 - 32 * s16[2 * (u + 1) + half]) as f32);
    let r2 = (sbyte(sc_hi, half) as f32) * dx[u + 2] * ((d2 - 32 * s16[2 * (u + 2) + half]) as f32);
    let r3 = (sbyte(sc_hi, half + 2) as f32) * dx[u + 3] * ((d3 - 32 * s16[2 * (u + 3) + half]) as f32);
    d * (r0 + r1 + r2 + r3)
}

/// Q8_0, Q4_0 and Q4_1: block `b` of the tensor against input unit `u`; `sw` is the
/// block's scale word (f16 `d`, and `m` in the high half for Q4_1).
#[device]
pub fn dot_legacy(fmt: u32, w: &[u32], b: u32, u: u32, sw: u32, xq: &[i32], dx: &[f32], sx: &[f32]) -> f32 {
    let xa = xq.load_vec::<4>(2 * u);
    let xb = xq.load_vec::<4>(2 * u + 1);
    let mut dot = 0;
    if fmt == Q8_0 {
        let r0 = w.load_vec::<4>(2 * b);
        let r1 = w.load_vec::<4>(2 * b + 1);
        for k in 0..4 {
            dot = dp4a(r0[k] as i32, xa[k], dot);
            dot = dp4a(r1[k] as i32, xb[k], dot);
        }
    } else {
        let r = w.load_vec::<4>(b);
        for k in 0..4 {
            dot = dp4a((r[k] & 0x0f0f0f0f) as i32, xa[k], dot);
            dot = dp4a(((r[k] >> 4) & 0x0f0f0f0f) as i32, xb[k], dot);
        }
    }
    let d = f16_lo(sw);
    let base = d * dx[u] * (dot as f32);
    if fmt == Q8_0 {
        base
    } else if fmt == Q4_0 {
        base - 8.0 * d * sx[u]
    } else {
        base + f16_hi(sw) * sx[u]
    }
}

/// Float formats: values `8*it .. 8*it+8` of row `row` against `x` (normalised on the fly).
#[device]
pub fn dot_float(fmt: u32, w: &[u32], row: u32, cols: u32, it: u32, x: &[f32], nw: &[f32], norm: bool, scale: f32) -> f32 {
    let xa = x.load_vec::<4>(2 * it);
    let xb = x.load_vec::<4>(2 * it + 1);
    let ga = if norm { nw.load_vec::<4>(2 * it) } else { f32x4::splat(1.0) };
    let gb = if norm { nw.load_vec::<4>(2 * it + 1) } else { f32x4::splat(1.0) };
    let mut acc = 0.0;
    if fmt == F16 {
        let v = w.load_vec::<4>(row * (cols / 8) + it);
        for k in 0..2 {
            acc += f16_lo(v[k]) * xa[2 * k] * ga[2 * k] + f16_hi(v[k]) * xa[2 * k + 1] * ga[2 * k + 1];
            acc += f16_lo(v[k + 2]) * xb[2 * k] * gb[2 * k] + f16_hi(v[k + 2]) * xb[2 * k + 1] * gb[2 * k + 1];
        }
    } else {
        let base = row * (cols / 4) + 2 * it;
        let va = w.load_vec::<4>(base);
        let vb = w.load_vec::<4>(base + 1);
        for k in 0..4 {
            acc += f32::from_bits(va[k]) * xa[k] * ga[k] + f32::from_bits(vb[k]) * xb[k] * gb[k];
        }
    }
    acc * scale
}

/// Dot product of work item `it` of weight row `row` (`rows x cols`, format `fmt`) with
/// the prologue's input.
#[device]
pub fn dot_item(
    fmt: u32,
    w: &[u32],
    rows: u32,
    cols: u32,
    row: u32,
    it: u32,
    xq: &[i32],
    dx: &[f32],
    sx: &[f32],
    s16: &[i32],
    x: &[f32],
    nw: &[f32],
    norm: bool,
    scale: f32,
) -> f32 {
    if fmt <= F16 {
        dot_float(fmt, w, row, cols, it, x, nw, norm, scale)
    } else if fmt <= Q4_1 {
        let blocks = cols / 32;
        let b = row * blocks + it;
        let record_words = if fmt == Q8_0 { 8 } else { 4 };
        let scale_region = rows * blocks * record_words;
        let sw = if fmt == Q4_1 { w[scale_region + b] } else { w[scale_region + b / 2] >> (16 * (b % 2)) };
        dot_legacy(fmt, w, b, it, sw, xq, dx, sx)
    } else if fmt == Q4K {
        let sb = row * (cols / 256) + it / 4;
        dot_q4k(w, sb, it % 4, 2 * it, xq, dx, sx)
    } else {
        let sbs = cols / 256;
        let sb = row * sbs + it / 4;
        let scale_region = rows * sbs * 52;
        let dw = w[scale_region + sb / 2];
        let d = if sb % 2 == 0 { f16_lo(dw) } else { f16_hi(dw) };
        let k = it % 4;
        dot_q6k(w, sb, k, (it / 4) * 8 + 4 * (k / 2), d, xq, dx, s16)
    }
}
