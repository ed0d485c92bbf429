//! Dequantisation of weight tiles for the matrix-core products: each pair of threads turns
//! one 64-value group of a weight row (in the layout of `greta::quant::gpu`) into f16 in
//! shared memory, each thread one half of the group. A half's bytes are a few whole
//! 16-byte vectors (its data, then the vectors holding its scales), so they can be copied
//! into shared memory steps ahead of their use without passing through registers.

use super::dot::{
    f16_hi, f16_lo, q4k_group_scales, sbyte, scale_shift, scale_word, F16, Q4K, Q4_0, Q4_1, Q6K,
    Q8_0,
};
use crate::device;

/// Values of a group, the depth of one step of the weight tile.
pub const GROUP: u32 = 64;

/// The 16-byte data vectors of a half-group of `fmt` (of the four `half_vec` offers).
#[device]
pub fn half_vectors(fmt: u32) -> u32 {
    if fmt == Q4_0 || fmt == Q4_1 {
        1
    } else if fmt == Q8_0 || fmt == Q4K {
        2
    } else if fmt == Q6K {
        3
    } else {
        4
    }
}

/// The vectors holding a half-group's scales: none for F16 and Q4_K (Q4_K's sit in its
/// record), the scale word's for the legacy formats, Q6_K's `d` and its sixteen scales.
#[device]
pub fn scale_vectors(fmt: u32) -> u32 {
    if fmt == F16 || fmt == Q4K {
        0
    } else if fmt == Q6K {
        2
    } else {
        1
    }
}

/// Index (in 16-byte vectors) of data vector `v` of half `h` of 64-value group `g` of
/// weight row `row` (`cols` values).
#[device]
pub fn half_vec(fmt: u32, cols: u32, row: u32, g: u32, h: u32, v: u32) -> u32 {
    if fmt == F16 {
        row * (cols / 8) + 8 * g + 4 * h + v
    } else if fmt == Q8_0 {
        2 * (row * (cols / 32) + 2 * g + h) + v
    } else if fmt == Q4_0 || fmt == Q4_1 {
        row * (cols / 32) + 2 * g + h
    } else if fmt == Q4K {
        // The super-block's header, then this half of the group's 32 bytes.
        let sb = row * (cols / 256) + g / 4;
        if v == 0 {
            sb * 9
        } else {
            sb * 9 + 1 + 2 * (g % 4) + h
        }
    } else {
        // Q6_K: bytes 16h..16h+16 of both 32-value runs of the group, as Q4_K's halves:
        // their low bits (two vectors) and their high bits (one).
        let sb = row * (cols / 256) + g / 4;
        let n = (g % 4) / 2;
        if v < 2 {
            sb * 13 + 4 * n + 2 * v + h
        } else {
            sb * 13 + 8 + 2 * n + h
        }
    }
}

/// Index of scale vector `j` of half `h` of group `g` of row `row` (of a `rows`-row
/// matrix): the vector holding the scale word, and for Q6_K the one holding the group's
/// int8 scales.
#[device]
pub fn scale_vec(fmt: u32, rows: u32, cols: u32, row: u32, g: u32, h: u32, j: u32) -> u32 {
    if fmt == Q6K {
        if j == 0 {
            scale_word(fmt, rows, cols, row, g) / 4
        } else {
            (row * (cols / 256) + g / 4) * 13 + 12
        }
    } else {
        scale_word(fmt, rows, cols, row, 2 * g + h) / 4
    }
}

/// The scale word of half `h` of group `g` of row `row` from its staged scale vectors
/// `s0` and `s1`, shifted so the half's f16 scale (and Q4_1's minimum above it) sits in
/// the low bits; 0 for formats without one. For Q6_K the two int8 scales of the half's
/// runs (16 values each) sit above the f16.
#[device]
pub fn half_scale(
    fmt: u32,
    rows: u32,
    cols: u32,
    row: u32,
    g: u32,
    h: u32,
    s0: u32x4,
    s1: u32x4,
) -> u32 {
    if fmt == F16 || fmt == Q4K {
        0
    } else if fmt == Q6K {
        let d = (word(s0, scale_word(fmt, rows, cols, row, g) % 4)
            >> scale_shift(fmt, cols, row, g))
            & 0xffff;
        // Scales 4(g % 4) + h and + 2: bytes h and h + 2 of word g % 4 of the scales.
        let sc = word(s1, g % 4) >> (8 * h);
        d | ((sc & 0xff) << 16) | ((sc & 0xff0000) << 8)
    } else {
        let it = 2 * g + h;
        word(s0, scale_word(fmt, rows, cols, row, it) % 4) >> scale_shift(fmt, cols, row, it)
    }
}

/// Word `i` (chosen at run time) of a vector.
#[device]
pub fn word(v: u32x4, i: u32) -> u32 {
    if i == 0 {
        v[0]
    } else if i == 1 {
        v[1]
    } else if i == 2 {
        v[2]
    } else {
        v[3]
    }
}

/// The position in the group of value `i` (0..32) of half `h`: a K-quant's half holds
/// values `16h..16h+16` and `32 + 16h..` (the bytes `16h..16h+16` of its two runs);
/// every other format's half is the contiguous run `32h..32h+32`.
#[device]
pub fn half_position(fmt: u32, h: u32, i: u32) -> u32 {
    if fmt == Q4K || fmt == Q6K {
        if i < 16 {
            16 * h + i
        } else {
            16 + 16 * h + i
        }
    } else {
        32 * h + i
    }
}

/// Dequantises half `h` of group `g` (vectors `v0..v3`, scale word `sw`) into `tile` at
/// element `at` (the row's first value of the group), as four 16-byte stores.
#[device]
pub fn dequant_half(
    fmt: u32,
    v0: u32x4,
    v1: u32x4,
    v2: u32x4,
    v3: u32x4,
    sw: u32,
    g: u32,
    h: u32,
    tile: &mut [f16],
    at: u32,
) {
    if fmt == F16 {
        let v = [v0, v1, v2, v3];
        for s in 0..4 {
            tile.store_vec((at + 32 * h) / 8 + s, bitcast::<f16x8>(v[s]));
        }
        return;
    }
    let mut vals = [0.0f32; 32];
    if fmt == Q4K {
        let sm = q4k_group_scales(v0[1], v0[2], v0[3], g % 4);
        let d = f16_lo(v0[0]);
        let dmin = f16_hi(v0[0]);
        let d1 = d * ((sm & 0xff) as f32);
        let d2 = d * (((sm >> 8) & 0xff) as f32);
        let m1 = dmin * (((sm >> 16) & 0xff) as f32);
        let m2 = dmin * ((sm >> 24) as f32);
        for j in 0..4 {
            for b in 0..4 {
                let byte = v1[j] >> (8 * b);
                vals[4 * j + b] = d1 * nibble(byte) - m1;
                vals[16 + 4 * j + b] = d2 * nibble(byte >> 4) - m2;
            }
        }
    } else if fmt == Q4_0 || fmt == Q4_1 {
        let d = f16_lo(sw);
        let m = if fmt == Q4_1 { f16_hi(sw) } else { -8.0 * d };
        for j in 0..4 {
            for b in 0..4 {
                let byte = v0[j] >> (8 * b);
                vals[4 * j + b] = d * nibble(byte) + m;
                vals[16 + 4 * j + b] = d * nibble(byte >> 4) + m;
            }
        }
    } else if fmt == Q8_0 {
        let d = f16_lo(sw);
        for j in 0..4 {
            for b in 0..4 {
                vals[4 * j + b] = d * (sbyte(v0[j], b) as f32);
                vals[16 + 4 * j + b] = d * (sbyte(v1[j], b) as f32);
            }
        }
    } else {
        // Q6_K: runs 2(g % 2) and the next of a 128-value half, values q + 32: low four
        // bits from nibble g % 2 of `ql`, high two from bits of `qh`, a scale per 16.
        let d = f16_lo(sw);
        let r = 2 * (g % 2);
        let sc0 = d * (sbyte(sw, 2) as f32);
        let sc1 = d * (sbyte(sw, 3) as f32);
        for j in 0..4 {
            for b in 0..4 {
                let lo0 = (v0[j] >> (8 * b + 4 * (g % 2))) & 15;
                let lo1 = (v1[j] >> (8 * b + 4 * (g % 2))) & 15;
                let hi = v2[j] >> (8 * b + 2 * r);
                let q0 = lo0 | ((hi & 3) << 4);
                let q1 = lo1 | (((hi >> 2) & 3) << 4);
                vals[4 * j + b] = sc0 * ((q0 as f32) - 32.0);
                vals[16 + 4 * j + b] = sc1 * ((q1 as f32) - 32.0);
            }
        }
    }
    for s in 0..4 {
        let p = half_position(fmt, h, 8 * s);
        tile.store_vec(
            (at + p) / 8,
            f16x8::new(
                vals[8 * s] as f16,
                vals[8 * s + 1] as f16,
                vals[8 * s + 2] as f16,
                vals[8 * s + 3] as f16,
                vals[8 * s + 4] as f16,
                vals[8 * s + 5] as f16,
                vals[8 * s + 6] as f16,
                vals[8 * s + 7] as f16,
            ),
        );
    }
}

/// The low four bits of `x` as f32, by the magic-number add (no integer conversion, which
/// runs at a quarter of the rate on sm_90).
#[device]
pub fn nibble(x: u32) -> f32 {
    f32::from_bits(0x4b000000 | (x & 15)) - 8388608.0
}
