//! Device functions shared by the matrix-vector kernels: the pieces of the input prologue
//! (the RMSNorm scale, and the quantisation of the vector to int8 in blocks of 32 in shared
//! memory) and the dot product of one work item of a weight row in every format.
//!
//! Weights are in the layout of `greta::quant::gpu` (records of whole 16-byte vectors, then
//! a region of f16 scales). Quantised formats multiply int8 weights by the int8 input with
//! the 4-way integer dot product: four multiply-adds per instruction keep the ALUs well
//! below the memory time. Float formats read the input from global memory (it stays in
//! L2) and apply the norm on the fly.

use crate::device;

use crate::quant::gpu::GpuFormat;

/// Weight format codes (`FMT`) as kernel bodies compare them: [`GpuFormat`]'s.
pub const F32: u32 = GpuFormat::F32.code();
/// f16 weights.
pub const F16: u32 = GpuFormat::F16.code();
/// Q8_0 weights.
pub const Q8_0: u32 = GpuFormat::Q8_0.code();
/// Q4_0 weights.
pub const Q4_0: u32 = GpuFormat::Q4_0.code();
/// Q4_1 weights.
pub const Q4_1: u32 = GpuFormat::Q4_1.code();
/// Q4_K weights.
pub const Q4K: u32 = GpuFormat::Q4K.code();
/// Q6_K weights.
pub const Q6K: u32 = GpuFormat::Q6K.code();

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

/// The RMSNorm scale `rsqrt(mean(x^2) + eps)` of the `n` values of `x` from `at` on, read
/// from global memory (the float formats' prologue: their products read the input from L2
/// directly). Every thread of the block must call it.
#[device]
pub fn norm_scale(x: &[f32], at: u32, n: u32, eps: f32) -> f32 {
    let mut ss = 0.0;
    for i in (thread_idx()..n).step_by(BLOCK) {
        let v = x[at + i];
        ss += v * v;
    }
    rsqrt(block_sum(ss) / (n as f32) + eps)
}

/// The lane-wise product of two vectors (an input pass times its norm weights).
#[device]
pub fn times(a: f32x4, b: f32x4) -> f32x4 {
    f32x4::new(a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3])
}

/// The sum of the squares of a vector's lanes (the norm's share of an input pass).
#[device]
pub fn sum_squares(a: f32x4) -> f32 {
    a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3]
}

/// One pass of the quantised formats' prologue: the four input values `v` (times the
/// norm weights) at `i..i+4` (`valid`: inside the row) quantised to int8 per 32 values into
/// shared memory: `xq` packs four values per word (in the order `xq_slot` gives), `dx`
/// holds each block's step, `sx` each block's sum in real units and `s16` the integer sum
/// of each 16 values (for Q6_K's offset). Eight lanes cover one 32-value block, so every
/// lane of the wave must call it (its reductions need a converged wave); the caller
/// places a barrier before the results are read.
#[device]
pub fn quantise_pass(
    v: f32x4,
    i: u32,
    valid: bool,
    xq: &mut [i32],
    dx: &mut [f32],
    sx: &mut [f32],
    s16: &mut [i32],
) {
    let mut top = magnitude_bits(v);
    top = max(top, shfl_xor(top, 1));
    top = max(top, shfl_xor(top, 2));
    top = max(top, shfl_xor(top, 4));
    // Every thread of the block repeats this for its share of the whole input, so it is
    // written for issue slots: a multiply for the step and one reciprocal instruction.
    let d = f32::from_bits(top) * 0.007874016;
    let inv = if d > 0.0 { rcp(d) } else { 0.0 };
    let b = rounded_bits(v, inv);
    let packed = pack_bytes(b);
    let mut sum = rounded_sum(b);
    sum += shfl_xor(sum, 1);
    sum += shfl_xor(sum, 2);
    let sum16 = sum;
    sum += shfl_xor(sum, 4);
    if valid {
        xq[4 * xq_slot(i / 16) + (i / 4) % 4] = packed;
        if thread_idx() % 4 == 0 {
            s16[i / 16] = sum16;
        }
        if thread_idx() % 8 == 0 {
            dx[i / 32] = d;
            sx[i / 32] = d * (sum as f32);
        }
    }
}

/// The prologue step for long inputs: the 16 values `v0..v3` at `i..i+16` quantised into
/// shared memory as `quantise_pass` does, one thread per 16 values instead of four. Two
/// neighbouring lanes cover a 32-value block, so both must call it. For the same input
/// the block issues about a third of the instructions, which pays where the input takes
/// several passes, and not for one pass, whose few long threads finish later than many
/// short ones.
#[device]
pub fn quantise_chunk(
    v0: f32x4,
    v1: f32x4,
    v2: f32x4,
    v3: f32x4,
    i: u32,
    valid: bool,
    xq: &mut [i32],
    dx: &mut [f32],
    sx: &mut [f32],
    s16: &mut [i32],
) {
    let mut top = max(
        max(magnitude_bits(v0), magnitude_bits(v1)),
        max(magnitude_bits(v2), magnitude_bits(v3)),
    );
    top = max(top, shfl_xor(top, 1));
    let d = f32::from_bits(top) * 0.007874016;
    let inv = if d > 0.0 { rcp(d) } else { 0.0 };
    let b0 = rounded_bits(v0, inv);
    let b1 = rounded_bits(v1, inv);
    let b2 = rounded_bits(v2, inv);
    let b3 = rounded_bits(v3, inv);
    let sum16 = rounded_sum(b0) + rounded_sum(b1) + rounded_sum(b2) + rounded_sum(b3);
    let sum = sum16 + shfl_xor(sum16, 1);
    if valid {
        let packed = i32x4::new(
            pack_bytes(b0),
            pack_bytes(b1),
            pack_bytes(b2),
            pack_bytes(b3),
        );
        xq.store_vec(xq_slot(i / 16), packed);
        s16[i / 16] = sum16;
        if (i / 16) % 2 == 0 {
            dx[i / 32] = d;
            sx[i / 32] = d * (sum as f32);
        }
    }
}

/// The largest magnitude of `v`'s lanes, compared as bits: for non-negative floats integer
/// order is value order, and infinities and NaNs order above every finite value. (A float
/// `max` drops NaN, and a NaN cast to int is 0: a non-finite input would vanish in the
/// quantisation.) A non-finite input becomes its block's step, so every product that reads
/// the block is non-finite.
#[device]
pub fn magnitude_bits(v: f32x4) -> u32 {
    max(
        max(abs(v[0]).to_bits(), abs(v[1]).to_bits()),
        max(abs(v[2]).to_bits(), abs(v[3]).to_bits()),
    )
}

/// `v * inv` rounded to integers by adding the magic number 1.5 * 2^23, which leaves
/// round(v * inv) in the low mantissa bits (two's complement in the low byte): an add
/// instead of floor and a conversion, which run at a quarter of the rate on sm_90.
#[device]
pub fn rounded_bits(v: f32x4, inv: f32) -> u32x4 {
    u32x4::new(
        (v[0] * inv + 12582912.0).to_bits(),
        (v[1] * inv + 12582912.0).to_bits(),
        (v[2] * inv + 12582912.0).to_bits(),
        (v[3] * inv + 12582912.0).to_bits(),
    )
}

/// The int8 values `rounded_bits` left in `b`, packed into one word.
#[device]
pub fn pack_bytes(b: u32x4) -> i32 {
    ((b[0] & 0xff) | ((b[1] & 0xff) << 8) | ((b[2] & 0xff) << 16) | (b[3] << 24)) as i32
}

/// The sum of the four integers `rounded_bits` left in `b`: their bit patterns less four
/// times the magic number's (0x4b400000 each, so 0x2d000000 after the wrap).
#[device]
pub fn rounded_sum(b: u32x4) -> i32 {
    (b[0] + b[1] + b[2] + b[3] - 0x2d000000) as i32
}

/// Where 16-byte vector `q` of the quantised input lives in shared memory. A 16-byte
/// shared load serves eight lanes per cycle, conflict-free only if their addresses fall in
/// eight different 16-byte columns of the 128-byte bank row. Lanes of a matrix-vector
/// product read vectors 2 (32-value blocks) or 4 (K-quant groups) apart, and Q6_K in pairs
/// 8 apart, so in input order most of them share columns (up to 4-way conflicts). XOR-ing
/// the column with 0, 3, 5 or 6 as the two row bits above it say spreads each of these
/// patterns over all eight columns (one layout for every format, so stacked matrices of
/// different formats share it); it permutes vectors within their 128-byte row.
#[device]
pub fn xq_slot(q: u32) -> u32 {
    let row = q >> 3;
    q ^ (((row & 3) << 1) | ((row ^ (row >> 1)) & 1))
}

/// 6-bit scales and mins of Q4_K sub-blocks `2g` and `2g + 1` (group `g`) from the scale
/// words `a` (bytes 0..4), `b` (4..8) and `c` (8..12): byte `k` of the result is the scale
/// of sub-block `2g + k`, byte `2 + k` its min. Both layouts are computed and one selected:
/// the lanes of a wave take different groups, and a branch on the group would run both
/// paths one after the other (on the H100 the 4096x4096 Q4_K product went 4.71 -> 4.48 us).
#[device]
pub fn q4k_group_scales(a: u32, b: u32, c: u32, g: u32) -> u32 {
    // Groups 0 and 1: six bits of bytes 2g, 2g+1 of `a` (scales) and `b` (mins). Groups 2
    // and 3: the nibbles of the same bytes of `c`, topped with the two high bits of `a`'s
    // (scales) and `b`'s (mins).
    let shift = 16 * (g % 2);
    let a2 = a >> shift;
    let b2 = b >> shift;
    let c2 = c >> shift;
    let high = g >= 2;
    let scales = if high {
        (c2 & 0x0f0f) | ((a2 >> 2) & 0x3030)
    } else {
        a2 & 0x3f3f
    };
    let mins = if high {
        ((c2 >> 4) & 0x0f0f) | ((b2 >> 2) & 0x3030)
    } else {
        b2 & 0x3f3f
    };
    scales | (mins << 16)
}

/// Signed byte `k` (0..4) of a word.
#[device]
pub fn sbyte(word: u32, k: u32) -> i32 {
    ((word << (24 - 8 * k)) as i32) >> 24
}

/// Number of 16-byte vectors a work item of `fmt` reads (of the four `fetch_vec` offers).
#[device]
pub fn item_vectors(fmt: u32) -> u32 {
    if fmt == F16 || fmt == Q4_0 || fmt == Q4_1 {
        1
    } else if fmt == Q4K {
        3
    } else if fmt == Q6K {
        4
    } else {
        2
    }
}

/// Sixteen-byte vectors that four consecutive work items of a row span, a nibble per
/// format code ([`GpuFormat::group_vectors`]). A run of `n` items starting at a multiple
/// of four spans `n * vectors / 4` consecutive vectors from `vec_index(.., first item, 0)`,
/// which is how a wave's whole step is copied at once.
pub const GROUP_VECTORS: u32 = GpuFormat::group_vector_table();

/// Index (in 16-byte vectors, in the layout of `greta::quant::gpu`) of vector `k` of work
/// item `it` of weight row `row`.
#[device]
pub fn vec_index(fmt: u32, cols: u32, row: u32, it: u32, k: u32) -> u32 {
    if fmt == F32 {
        row * (cols / 4) + 2 * it + k
    } else if fmt == F16 {
        row * (cols / 8) + it
    } else if fmt == Q8_0 {
        2 * (row * (cols / 32) + it) + k
    } else if fmt <= Q4_1 {
        row * (cols / 32) + it
    } else if fmt == Q4K {
        // Header, then the two 16-byte halves of group `it % 4`.
        let sb = row * (cols / 256) + it / 4;
        if k == 0 {
            sb * 9
        } else {
            sb * 9 + 2 * (it % 4) + k
        }
    } else {
        // Low-nibble halves a and b, high bits, scales of half `(it % 4) / 2`.
        let sb = row * (cols / 256) + it / 4;
        let n = (it % 4) / 2;
        let half = it % 2;
        let base = sb * 13;
        if k == 0 {
            base + 4 * n + half
        } else if k == 1 {
            base + 4 * n + 2 + half
        } else if k == 2 {
            base + 8 + 2 * n + half
        } else {
            base + 12
        }
    }
}

/// Vector `k` of work item `it` of weight row `row`: loads are separated from the
/// arithmetic so that kernels can issue the next item's loads before using the current
/// one (and the first item's before the prologue).
#[device]
pub fn fetch_vec(fmt: u32, w: &[u32], cols: u32, row: u32, it: u32, k: u32) -> u32x4 {
    w.load_vec::<4>(vec_index(fmt, cols, row, it, k))
}

/// The scale region's word that holds the scale of work item `it` of row `row` (0 for
/// formats without one). Where two f16 scales share a word, `scale_shift` says which half
/// is the item's: the word is returned whole, so that the loop that issues the load does
/// not wait for it.
#[device]
pub fn fetch_scale(fmt: u32, w: &[u32], rows: u32, cols: u32, row: u32, it: u32) -> u32 {
    if fmt <= F16 || fmt == Q4K {
        0
    } else {
        w[scale_word(fmt, rows, cols, row, it)]
    }
}

/// Index (in 32-bit words) of the scale-region word that holds work item `it`'s scale
/// (formats with a scale region: Q8_0, Q4_0, Q4_1, Q6_K).
#[device]
pub fn scale_word(fmt: u32, rows: u32, cols: u32, row: u32, it: u32) -> u32 {
    if fmt <= Q4_1 {
        let blocks = cols / 32;
        let b = row * blocks + it;
        let record_words = if fmt == Q8_0 { 8 } else { 4 };
        let region = rows * blocks * record_words;
        if fmt == Q4_1 {
            region + b
        } else {
            region + b / 2
        }
    } else {
        let sbs = cols / 256;
        let sb = row * sbs + it / 4;
        rows * sbs * 52 + sb / 2
    }
}

/// The shift that brings work item `it`'s scale (the f16 `d`, and Q4_1's `m` above it) to
/// the low bits of the word `fetch_scale` returns.
#[device]
pub fn scale_shift(fmt: u32, cols: u32, row: u32, it: u32) -> u32 {
    if fmt == Q8_0 || fmt == Q4_0 {
        16 * ((row * (cols / 32) + it) % 2)
    } else if fmt == Q6K {
        16 * ((row * (cols / 256) + it / 4) % 2)
    } else {
        0
    }
}

/// Dot product of one fetched work item (vectors `v0..v3`, scale word `sw`) with the
/// prologue's input; `it` is the item's index within its row. The input vector starts at
/// value `xo` of the shared copy (a multiple of 512, which `xq_slot`'s permutation maps to
/// itself) and, for the float formats, at value `fo` of `x`.
#[device]
pub fn dot_fetched(
    fmt: u32,
    v0: u32x4,
    v1: u32x4,
    v2: u32x4,
    v3: u32x4,
    sw: u32,
    it: u32,
    xo: u32,
    fo: u32,
    xq: &[i32],
    dx: &[f32],
    sx: &[f32],
    s16: &[i32],
    x: &[f32],
    nw: &[f32],
    norm: bool,
) -> f32 {
    if fmt <= F16 {
        let xa = x.load_vec::<4>(fo / 4 + 2 * it);
        let xb = x.load_vec::<4>(fo / 4 + 2 * it + 1);
        let ga = if norm {
            nw.load_vec::<4>(2 * it)
        } else {
            f32x4::splat(1.0)
        };
        let gb = if norm {
            nw.load_vec::<4>(2 * it + 1)
        } else {
            f32x4::splat(1.0)
        };
        let mut acc = 0.0;
        if fmt == F16 {
            for k in 0..2 {
                acc += f16_lo(v0[k]) * xa[2 * k] * ga[2 * k]
                    + f16_hi(v0[k]) * xa[2 * k + 1] * ga[2 * k + 1];
                acc += f16_lo(v0[k + 2]) * xb[2 * k] * gb[2 * k]
                    + f16_hi(v0[k + 2]) * xb[2 * k + 1] * gb[2 * k + 1];
            }
        } else {
            for k in 0..4 {
                acc +=
                    f32::from_bits(v0[k]) * xa[k] * ga[k] + f32::from_bits(v1[k]) * xb[k] * gb[k];
            }
        }
        acc
    } else if fmt <= Q4_1 {
        let u = it + xo / 32;
        let xs = xq_slot(2 * u);
        let xa = xq.load_vec::<4>(xs);
        let xb = xq.load_vec::<4>(xs ^ 1);
        let mut dot = 0;
        for k in 0..4 {
            if fmt == Q8_0 {
                dot = dp4a(v0[k] as i32, xa[k], dot);
                dot = dp4a(v1[k] as i32, xb[k], dot);
            } else {
                dot = dp4a((v0[k] & 0x0f0f0f0f) as i32, xa[k], dot);
                dot = dp4a(((v0[k] >> 4) & 0x0f0f0f0f) as i32, xb[k], dot);
            }
        }
        let d = f16_lo(sw);
        let main = d * dx[u] * (dot as f32);
        if fmt == Q8_0 {
            main
        } else if fmt == Q4_0 {
            main - 8.0 * d * sx[u]
        } else {
            main + f16_hi(sw) * sx[u]
        }
    } else if fmt == Q4K {
        // Group g holds sub-blocks 2g (low nibbles) and 2g+1 (high nibbles): input units
        // u and u+1.
        let g = it % 4;
        let u = 2 * it + xo / 32;
        // The four vectors share a 128-byte row: one slot, then its neighbours by XOR.
        let xs = xq_slot(2 * u);
        let xa = xq.load_vec::<4>(xs);
        let xb = xq.load_vec::<4>(xs ^ 1);
        let xc = xq.load_vec::<4>(xs ^ 2);
        let xd = xq.load_vec::<4>(xs ^ 3);
        let mut dot0 = 0;
        let mut dot1 = 0;
        for k in 0..4 {
            dot0 = dp4a((v1[k] & 0x0f0f0f0f) as i32, xa[k], dot0);
            dot0 = dp4a((v2[k] & 0x0f0f0f0f) as i32, xb[k], dot0);
            dot1 = dp4a(((v1[k] >> 4) & 0x0f0f0f0f) as i32, xc[k], dot1);
            dot1 = dp4a(((v2[k] >> 4) & 0x0f0f0f0f) as i32, xd[k], dot1);
        }
        let sm = q4k_group_scales(v0[1], v0[2], v0[3], g);
        // Integer scale times integer dot (at most 63 * 60960, exact), then one conversion.
        let main = ((((sm & 0xff) as i32) * dot0) as f32) * dx[u]
            + (((((sm >> 8) & 0xff) as i32) * dot1) as f32) * dx[u + 1];
        let offset = (((sm >> 16) & 0xff) as f32) * sx[u] + ((sm >> 24) as f32) * sx[u + 1];
        f16_lo(v0[0]) * main - f16_hi(v0[0]) * offset
    } else {
        // Q6_K item: four runs of 16 values, 32 apart, from units u..u+4; stored values
        // are q + 32, so each run subtracts 32 times its input sum.
        let n = (it % 4) / 2;
        let half = it % 2;
        let u = (it / 4) * 8 + 4 * n + xo / 32;
        let sc_lo = if n == 0 { v3[0] } else { v3[2] };
        let sc_hi = if n == 0 { v3[1] } else { v3[3] };
        let xs = xq_slot(2 * u) ^ half;
        let x0 = xq.load_vec::<4>(xs);
        let x1 = xq.load_vec::<4>(xs ^ 2);
        let x2 = xq.load_vec::<4>(xs ^ 4);
        let x3 = xq.load_vec::<4>(xs ^ 6);
        let mut d0 = 0;
        let mut d1 = 0;
        let mut d2 = 0;
        let mut d3 = 0;
        for j in 0..4 {
            let a = v0[j];
            let b = v1[j];
            let h = v2[j];
            d0 = dp4a(
                ((a & 0x0f0f0f0f) | ((h & 0x03030303) << 4)) as i32,
                x0[j],
                d0,
            );
            d1 = dp4a(
                ((b & 0x0f0f0f0f) | ((h & 0x0c0c0c0c) << 2)) as i32,
                x1[j],
                d1,
            );
            d2 = dp4a(
                (((a >> 4) & 0x0f0f0f0f) | (h & 0x30303030)) as i32,
                x2[j],
                d2,
            );
            d3 = dp4a(
                (((b >> 4) & 0x0f0f0f0f) | ((h >> 2) & 0x30303030)) as i32,
                x3[j],
                d3,
            );
        }
        // Integer scale times integer run sum (below 128 * 16 * 32 * 127 < 2^24: exact in f32),
        // then one conversion per run.
        let r0 = ((sbyte(sc_lo, half) * (d0 - 32 * s16[2 * u + half])) as f32) * dx[u];
        let r1 =
            ((sbyte(sc_lo, half + 2) * (d1 - 32 * s16[2 * (u + 1) + half])) as f32) * dx[u + 1];
        let r2 = ((sbyte(sc_hi, half) * (d2 - 32 * s16[2 * (u + 2) + half])) as f32) * dx[u + 2];
        let r3 =
            ((sbyte(sc_hi, half + 2) * (d3 - 32 * s16[2 * (u + 3) + half])) as f32) * dx[u + 3];
        f16_lo(sw) * (r0 + r1 + r2 + r3)
    }
}

/// One value `col` of weight row `row` (`rows x cols`, format `fmt`), dequantised: the
/// embedding lookup reads a row of the token table this way.
#[device]
pub fn dequant_value(fmt: u32, w: &[u32], rows: u32, cols: u32, row: u32, col: u32) -> f32 {
    if fmt == F32 {
        f32::from_bits(w[row * cols + col])
    } else if fmt == F16 {
        let word = w[(row * cols + col) / 2];
        if col % 2 == 0 {
            f16_lo(word)
        } else {
            f16_hi(word)
        }
    } else if fmt <= Q4_1 {
        let blocks = cols / 32;
        let b = row * blocks + col / 32;
        let i = col % 32;
        let sw =
            fetch_scale(fmt, w, rows, cols, row, col / 32) >> scale_shift(fmt, cols, row, col / 32);
        let d = f16_lo(sw);
        if fmt == Q8_0 {
            d * (sbyte(w[8 * b + i / 4], i % 4) as f32)
        } else {
            // Value i in the low nibble of byte i, value i + 16 in its high nibble.
            let byte = (w[4 * b + (i % 16) / 4] >> (8 * (i % 4))) & 0xff;
            let q = if i < 16 { byte & 0xf } else { byte >> 4 };
            if fmt == Q4_0 {
                d * ((q as f32) - 8.0)
            } else {
                d * (q as f32) + f16_hi(sw)
            }
        }
    } else if fmt == Q4K {
        let sb = row * (cols / 256) + col / 256;
        let e = col % 256;
        let j = e / 32;
        let g = e / 64;
        let l = e % 32;
        let hw = w[sb * 36];
        let sm =
            q4k_group_scales(w[sb * 36 + 1], w[sb * 36 + 2], w[sb * 36 + 3], g) >> (8 * (j % 2));
        let byte = (w[sb * 36 + 4 + (32 * g + l) / 4] >> (8 * (l % 4))) & 0xff;
        let q = if j % 2 == 0 { byte & 0xf } else { byte >> 4 };
        f16_lo(hw) * ((sm & 0xff) as f32) * (q as f32) - f16_hi(hw) * (((sm >> 16) & 0xff) as f32)
    } else {
        let sbs = cols / 256;
        let sb = row * sbs + col / 256;
        let e = col % 256;
        let n = e / 128;
        let r = (e % 128) / 32;
        let l = e % 32;
        let base = sb * 52;
        let ql_at = 64 * n + 32 * (r % 2) + l;
        let ql = (w[base + ql_at / 4] >> (8 * (ql_at % 4))) & 0xff;
        let lo = if r < 2 { ql & 0xf } else { ql >> 4 };
        let qh_at = 128 + 32 * n + l;
        let hi = ((w[base + qh_at / 4] >> (8 * (qh_at % 4))) >> (2 * r)) & 3;
        let sc_at = 192 + e / 16;
        let sc = sbyte(w[base + sc_at / 4], sc_at % 4);
        let d = f16_lo(
            fetch_scale(fmt, w, rows, cols, row, col / 64) >> scale_shift(fmt, cols, row, col / 64),
        );
        d * (sc as f32) * (((lo | (hi << 4)) as f32) - 32.0)
    }
}
