//! The 256-value "K" super-block formats: Q4_K, Q5_K, Q6_K, Q8_K.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::bits::{
    join_nibbles, merge_high_bits, pack_scale_min_k4, scale_min_k4, split_high_bits, split_nibbles,
    HighBitPlace,
};
use super::block::{small_f16, small_f32, Block};
use super::levels::{affine_values, inverse, level, offset_values, quantize_i8, signed_absmax};
use super::GgmlType;

/// Values per K super-block.
pub const QK_K: usize = 256;

/// Q4_K: eight 32-value sub-blocks `d * sc * q - dmin * m` with 4-bit `q` and 6-bit `sc`, `m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (see `scale_min_k4`).
    pub scales: [u8; 12],
    /// Levels: per 64 values, low nibbles of 32 bytes then their high nibbles.
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: Q4_K with a fifth level bit per value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bits: value `e`'s is bit `e / 32` of byte `e % 32`.
    pub qh: [u8; QK_K / 8],
    /// Low four bits, laid out as Q4_K's levels.
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: sixteen 16-value sub-blocks `d * sc * (q - 32)` with 6-bit `q` and 8-bit `sc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low four bits: per 128 values, low nibbles of 64 bytes then their high nibbles.
    pub ql: [u8; QK_K / 2],
    /// Top two bits: value `128h + 32k + l` uses bits `2k..2k+2` of byte `32h + l`.
    pub qh: [u8; QK_K / 4],
    /// Signed scale of each 16 values.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

/// Q8_K: 256 values `d * q` with signed 8-bit `q`, plus sums for dot-product kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8K {
    /// Scale (a full f32 here, unlike the other formats).
    pub d: f32,
    /// Levels in value order.
    pub qs: [i8; QK_K],
    /// Sum of the levels of each 16 values.
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// Values per Q4_K/Q5_K sub-block.
const SUB_K4: usize = 32;
/// Values per Q6_K/Q8_K sub-block.
const SUB_K6: usize = 16;

/// Q4_K/Q5_K nibble groups: 32 bytes give 64 values.
const K4_NIBBLE_GROUP: usize = 32;
/// Q6_K nibble groups: 64 bytes give 128 values.
const K6_NIBBLE_GROUP: usize = 64;

/// Q5_K's fifth bit of value `e`: byte `e % 32`, bit `e / 32`.
const Q5K_HIGH_BIT: HighBitPlace = |e| (e % 32, (e / 32) as u32);
/// Q6_K's top two bits of value `e`; see `BlockQ6K::qh`.
const Q6K_HIGH_BITS: HighBitPlace = |e| (32 * (e / 128) + e % 32, 2 * ((e % 128) / 32) as u32);

/// Random Q4_K super-scale exponent: d * sc * q spans ~0.02 with sc, q mid-range.
const Q4K_WEIGHT_EXP: i32 = -14;
/// Random Q4_K min exponent: dmin * m about matches d * sc * 8, centring values.
const Q4K_MIN_WEIGHT_EXP: i32 = -11;
/// Random Q5_K and Q6_K super-scale exponent: subnormal, as trained ones often are.
const SUBNORMAL_WEIGHT_EXP: i32 = -15;
/// Random Q5_K min exponent: dmin * m about matches d * sc * 16.
const Q5K_MIN_WEIGHT_EXP: i32 = -12;
/// Random Q8_K scale exponent: |d| in [2^-12, 2^-11) against |q| ~64.
const Q8K_WEIGHT_EXP: i32 = -12;

/// Decodes Q4_K/Q5_K levels (0..32) with their super-block and 6-bit sub-block scales.
fn k_affine_values(d: f16, dmin: f16, scales: &[u8; 12], levels: &[u8; QK_K], out: &mut [f32]) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    let subs = levels
        .chunks_exact(SUB_K4)
        .zip(out.chunks_exact_mut(SUB_K4));
    for (j, (lv, o)) in subs.enumerate() {
        let (sc, m) = scale_min_k4(scales, j);
        affine_values(lv, d * f32::from(sc), -(dmin * f32::from(m)), o);
    }
}

/// Quantises to Q4_K/Q5_K levels in `0..=max`: each sub-block takes its range (the minimum
/// clamped to at most 0, so stored mins are non-negative), then scales and mins are
/// rounded to 6 bits of their maxima. Returns (d, dmin, packed scales).
fn quantize_k_affine(x: &[f32; QK_K], max: u8, levels: &mut [u8; QK_K]) -> (f16, f16, [u8; 12]) {
    let mut scales = [0f32; QK_K / SUB_K4];
    let mut mins = [0f32; QK_K / SUB_K4];
    for ((s, m), sub) in scales.iter_mut().zip(&mut mins).zip(x.chunks_exact(SUB_K4)) {
        let lo = sub.iter().copied().fold(0.0, f32::min);
        let hi = sub.iter().copied().fold(lo, f32::max);
        *s = (hi - lo) / f32::from(max);
        *m = -lo;
    }
    let (d, sc) = six_bit(&scales);
    let (dmin, mn) = six_bit(&mins);
    let (df, mf) = (d.to_f32(), dmin.to_f32());
    let subs = x.chunks_exact(SUB_K4).zip(levels.chunks_exact_mut(SUB_K4));
    for ((sub, lv), (&s, &m)) in subs.zip(sc.iter().zip(&mn)) {
        let inv = inverse(df * f32::from(s));
        let ml = mf * f32::from(m);
        for (l, &v) in lv.iter_mut().zip(sub) {
            *l = level(v + ml, inv, 0.0, max);
        }
    }
    (d, dmin, pack_scale_min_k4(&sc, &mn))
}

/// Rounds non-negative sub-block factors to 6 bits of their maximum; returns that unit.
fn six_bit(factors: &[f32; 8]) -> (f16, [u8; 8]) {
    let unit = f16::from_f32(factors.iter().copied().fold(0.0, f32::max) / 63.0);
    let inv = inverse(unit.to_f32());
    (unit, factors.map(|f| level(f, inv, 0.0, 63)))
}

impl BlockQ4K {
    /// Decodes the 4-bit levels in value order.
    fn levels(&self) -> [u8; QK_K] {
        let mut levels = [0u8; QK_K];
        split_nibbles(&self.qs, K4_NIBBLE_GROUP, &mut levels);
        levels
    }
}

impl Block<QK_K> for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        k_affine_values(self.d, self.dmin, &self.scales, &self.levels(), out);
    }

    fn quantize(values: &[f32; QK_K]) -> Self {
        let mut levels = [0u8; QK_K];
        let (d, dmin, scales) = quantize_k_affine(values, 15, &mut levels);
        let mut qs = [0u8; QK_K / 2];
        join_nibbles(&levels, K4_NIBBLE_GROUP, &mut qs);
        Self {
            d,
            dmin,
            scales,
            qs,
        }
    }

    fn weight_like(self) -> Self {
        let d = small_f16(self.d, Q4K_WEIGHT_EXP);
        let dmin = small_f16(self.dmin, Q4K_MIN_WEIGHT_EXP).copysign(d);
        Self { d, dmin, ..self }
    }
}

impl BlockQ5K {
    /// Decodes the 5-bit levels in value order.
    fn levels(&self) -> [u8; QK_K] {
        let mut levels = [0u8; QK_K];
        split_nibbles(&self.qs, K4_NIBBLE_GROUP, &mut levels);
        merge_high_bits(&self.qh, 1, Q5K_HIGH_BIT, &mut levels);
        levels
    }
}

impl Block<QK_K> for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        k_affine_values(self.d, self.dmin, &self.scales, &self.levels(), out);
    }

    fn quantize(values: &[f32; QK_K]) -> Self {
        let mut levels = [0u8; QK_K];
        let (d, dmin, scales) = quantize_k_affine(values, 31, &mut levels);
        let mut qh = [0u8; QK_K / 8];
        split_high_bits(&mut levels, Q5K_HIGH_BIT, &mut qh);
        let mut qs = [0u8; QK_K / 2];
        join_nibbles(&levels, K4_NIBBLE_GROUP, &mut qs);
        Self {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }

    fn weight_like(self) -> Self {
        let d = small_f16(self.d, SUBNORMAL_WEIGHT_EXP);
        let dmin = small_f16(self.dmin, Q5K_MIN_WEIGHT_EXP).copysign(d);
        Self { d, dmin, ..self }
    }
}

impl Block<QK_K> for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        let mut levels = [0u8; QK_K];
        split_nibbles(&self.ql, K6_NIBBLE_GROUP, &mut levels);
        merge_high_bits(&self.qh, 2, Q6K_HIGH_BITS, &mut levels);
        let d = self.d.to_f32();
        let subs = levels
            .chunks_exact(SUB_K6)
            .zip(out.chunks_exact_mut(SUB_K6));
        for ((lv, o), &sc) in subs.zip(&self.scales) {
            offset_values(lv, 32, d * f32::from(sc), o);
        }
    }

    /// Each 16 values get the scale that maps their largest magnitude to level 0 (as
    /// ggml's symmetric formats do); those scales are rounded to 8 bits of the largest.
    fn quantize(values: &[f32; QK_K]) -> Self {
        let mut sub_scales = [0f32; QK_K / SUB_K6];
        for (s, sub) in sub_scales.iter_mut().zip(values.chunks_exact(SUB_K6)) {
            *s = signed_absmax(sub) / -32.0;
        }
        let d = f16::from_f32(signed_absmax(&sub_scales) / -128.0);
        let inv_d = inverse(d.to_f32());
        let scales = sub_scales.map(|s| (s * inv_d).round().clamp(-128.0, 127.0) as i8);
        let mut levels = [0u8; QK_K];
        let subs = values
            .chunks_exact(SUB_K6)
            .zip(levels.chunks_exact_mut(SUB_K6));
        for ((sub, lv), &sc) in subs.zip(&scales) {
            let inv = inverse(d.to_f32() * f32::from(sc));
            for (l, &v) in lv.iter_mut().zip(sub) {
                *l = level(v, inv, 32.0, 63);
            }
        }
        let mut qh = [0u8; QK_K / 4];
        split_high_bits(&mut levels, Q6K_HIGH_BITS, &mut qh);
        let mut ql = [0u8; QK_K / 2];
        join_nibbles(&levels, K6_NIBBLE_GROUP, &mut ql);
        Self { ql, qh, scales, d }
    }

    fn weight_like(self) -> Self {
        Self {
            d: small_f16(self.d, SUBNORMAL_WEIGHT_EXP),
            ..self
        }
    }
}

/// Sums of each 16 levels, as Q8_K stores them.
fn block_sums(qs: &[i8; QK_K]) -> [i16; QK_K / 16] {
    let mut sums = [0i16; QK_K / 16];
    for (s, sub) in sums.iter_mut().zip(qs.chunks_exact(SUB_K6)) {
        *s = sub.iter().map(|&q| i16::from(q)).sum();
    }
    sums
}

impl Block<QK_K> for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8K;

    fn dequantize(&self, out: &mut [f32; QK_K]) {
        offset_values(&self.qs, 0, self.d, out);
    }

    fn quantize(values: &[f32; QK_K]) -> Self {
        let mut qs = [0i8; QK_K];
        let d = quantize_i8(values, &mut qs);
        Self {
            d,
            qs,
            bsums: block_sums(&qs),
        }
    }

    fn weight_like(self) -> Self {
        let d = small_f32(self.d, Q8K_WEIGHT_EXP);
        Self {
            d,
            bsums: block_sums(&self.qs),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::testutil::{assert_values, values_with};
    use std::mem::offset_of;

    /// Decodes one block through its `Block` impl.
    fn decode<B: Block<QK_K>>(block: &B) -> Vec<f32> {
        let mut out = [f32::NAN; QK_K];
        block.dequantize(&mut out);
        out.to_vec()
    }

    #[test]
    fn fields_sit_at_ggml_offsets() {
        assert_eq!(offset_of!(BlockQ4K, scales), 4);
        assert_eq!(offset_of!(BlockQ4K, qs), 16);
        assert_eq!(offset_of!(BlockQ5K, qh), 16);
        assert_eq!(offset_of!(BlockQ5K, qs), 48);
        assert_eq!(offset_of!(BlockQ6K, qh), 128);
        assert_eq!(offset_of!(BlockQ6K, scales), 192);
        assert_eq!(offset_of!(BlockQ6K, d), 208);
        assert_eq!(offset_of!(BlockQ8K, bsums), 260);
    }

    #[test]
    fn q4_k_uses_packed_six_bit_scales_and_nibble_groups() {
        let mut scales = [0u8; 12];
        scales[0] = 0b11_000010; // sc0 = 2; top bits are sc4's bits 4..6
        scales[4] = 0b00_000001; // m0 = 1
        scales[1] = 0b10_000011; // sc1 = 3; sc5 gets 2 << 4
        scales[5] = 0b01_000100; // m1 = 4; m5 gets 1 << 4
        scales[8] = 0x21; // sc4 = 1 + 48 = 49, m4 = 2
        scales[9] = 0xA5; // sc5 = 5 + 32 = 37, m5 = 10 + 16 = 26
        scales[3] = 0b01_000000; // sc3 = 0; sc7 gets 1 << 4
        scales[7] = 0b11_000000; // m3 = 0; m7 gets 3 << 4
        scales[11] = 0xFF; // sc7 = 15 + 16 = 31, m7 = 15 + 48 = 63
        let mut qs = [0u8; 128];
        qs[0] = 0x37; // value 0 (sub-block 0) = 7, value 32 (sub-block 1) = 3
        qs[67] = 0x7C; // value 131 (sub-block 4) = 12, value 163 (sub-block 5) = 7
        qs[127] = 0xF0; // value 223 (sub-block 6) = 0, value 255 (sub-block 7) = 15
        let block = BlockQ4K {
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(0.5),
            scales,
            qs,
        };
        // Level 0 decodes to -dmin * m of its sub-block.
        let background = [-0.5, -2.0, 0.0, 0.0, -1.0, -13.0, 0.0, -31.5];
        let want = values_with(
            QK_K,
            |i| background[i / 32],
            &[
                (0, 13.5),
                (32, 7.0),
                (131, 587.0),
                (163, 246.0),
                (223, 0.0),
                (255, 433.5),
            ],
        );
        assert_values(&decode(&block), &want);
    }

    #[test]
    fn q5_k_fifth_bit_of_value_e_is_bit_e_over_32_of_byte_e_mod_32() {
        let mut scales = [0u8; 12];
        scales[0] = 1; // sc0 = 1, m0 = 0
        scales[1] = 1; // sc1 = 1, m1 = 0
        scales[3] = 2; // sc3 = 2
        scales[7] = 3; // m3 = 3
        scales[10] = 0x11; // sc6 = 1, m6 = 1
        let mut qs = [0u8; 128];
        let mut qh = [0u8; 32];
        qs[0] = 0x03;
        qh[0] = 0x01; // value 0: 3 + 16
        qs[8] = 0x20;
        qh[8] = 0x42; // value 40: 2 + 16 (bit 1); value 200: 15 + 16 (bit 6)
        qs[36] = 0x50;
        qh[4] = 0x08; // value 100: 5 + 16 (bit 3)
        qs[37] = 0xA0; // value 101: 10, no fifth bit
        qs[104] = 0x0F; // value 200's low bits
        let one = f16::from_f32(1.0);
        let block = BlockQ5K {
            d: one,
            dmin: one,
            scales,
            qh,
            qs,
        };
        let background = [0.0, 0.0, 0.0, -3.0, 0.0, 0.0, -1.0, 0.0];
        let want = values_with(
            QK_K,
            |i| background[i / 32],
            &[(0, 19.0), (40, 18.0), (100, 39.0), (101, 17.0), (200, 30.0)],
        );
        assert_values(&decode(&block), &want);
    }

    #[test]
    fn q6_k_layout_of_low_and_high_bits() {
        let mut image = [0u8; 210];
        let (ql, rest) = image.split_at_mut(128);
        let (qh, rest) = rest.split_at_mut(64);
        let (scales, d) = rest.split_at_mut(16);
        for (i, s) in [
            (0, 1i8),
            (2, -2),
            (4, 3),
            (6, 4),
            (10, -3),
            (13, 1),
            (15, 127),
        ] {
            scales[i] = s as u8;
        }
        d.copy_from_slice(&[0x00, 0x38]); // d = 0.5, stored last
        ql[0] = 0x5A; // value 0 low = 10, value 64 low = 5
        ql[32] = 0x0C; // value 32 low = 12, value 96 low = 0
        qh[0] = 0b11_10_01_10; // top bits: value 0 = 2, 32 = 1, 64 = 2, 96 = 3
        ql[101] = 0x07; // value 165 low = 7
        qh[37] = 0b00_00_11_00; // value 165 top = 3
        ql[127] = 0xF0; // value 255 low = 15, value 223 low = 0
        qh[63] = 0b01_00_00_00; // value 255 top = 1
        let block: BlockQ6K = bytemuck::pod_read_unaligned(&image);
        let sc = |i: usize| f32::from(block.scales[i / 16]);
        // Level 0 is q = -32: d * sc * -32.
        let want = values_with(
            QK_K,
            |i| -16.0 * sc(i),
            &[
                (0, 5.0),
                (32, 4.0),
                (64, 7.5),
                (96, 32.0),
                (165, -34.5),
                (255, -63.5),
            ],
        );
        assert_values(&decode(&block), &want);
    }

    #[test]
    fn q8_k_ignores_block_sums() {
        let mut qs = [1i8; QK_K];
        qs[0] = -128;
        qs[255] = 100;
        let block = BlockQ8K {
            d: 0.25,
            qs,
            bsums: [-7; 16],
        };
        let want = values_with(QK_K, |_| 0.25, &[(0, -32.0), (255, 25.0)]);
        assert_values(&decode(&block), &want);
    }

    #[test]
    fn q8_k_quantiser_fills_block_sums() {
        let values: [f32; QK_K] = std::array::from_fn(|i| i as f32 - 100.0);
        let block = BlockQ8K::quantize(&values);
        for (j, &s) in block.bsums.iter().enumerate() {
            let sum: i16 = block.qs[16 * j..16 * j + 16]
                .iter()
                .map(|&q| i16::from(q))
                .sum();
            assert_eq!(s, sum, "sum {j}");
        }
        assert_eq!(block.qs[255], 127);
    }
}
