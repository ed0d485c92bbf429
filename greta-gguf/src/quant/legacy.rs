//! The 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::bits::{join_nibbles, merge_high_bits, split_high_bits, split_nibbles, HighBitPlace};
use super::block::{small_f16, Block};
use super::levels::{affine_values, inverse, level, offset_values, quantize_i8, signed_absmax};
use super::GgmlType;

/// Values per block of the 32-value formats.
pub const QK32: usize = 32;

/// Q4_0: 32 values `d * (q - 8)` with 4-bit `q`; low nibbles hold values 0..16.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Levels: value `i` in the low nibble of byte `i`, value `i + 16` in its high nibble.
    pub qs: [u8; QK32 / 2],
}

/// Q4_1: 32 values `d * q + m` with 4-bit `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Offset (the block minimum).
    pub m: f16,
    /// Levels, laid out as in Q4_0.
    pub qs: [u8; QK32 / 2],
}

/// Q5_0: 32 values `d * (q - 16)` with 5-bit `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits: bit `i` of this little-endian u32 belongs to value `i`.
    pub qh: [u8; 4],
    /// Low four bits, laid out as in Q4_0.
    pub qs: [u8; QK32 / 2],
}

/// Q5_1: 32 values `d * q + m` with 5-bit `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Offset (the block minimum).
    pub m: f16,
    /// Fifth bits, laid out as in Q5_0.
    pub qh: [u8; 4],
    /// Low four bits, laid out as in Q4_0.
    pub qs: [u8; QK32 / 2],
}

/// Q8_0: 32 values `d * q` with signed 8-bit `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Levels in value order.
    pub qs: [i8; QK32],
}

const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Q5_0/Q5_1 keep value `e`'s fifth bit at bit `e` of a little-endian u32.
const Q5_HIGH_BIT: HighBitPlace = |e| (e / 8, (e % 8) as u32);

/// The whole block is one nibble group: low nibbles are values 0..16.
const NIBBLE_GROUP: usize = QK32 / 2;

/// Exponent of random Q4 scales: |d| in [2^-8, 2^-7), so |d * (q - 8)| averages ~0.02.
const Q4_WEIGHT_EXP: i32 = -8;
/// Exponent of random Q5 scales, one lower than Q4's for levels twice as wide.
const Q5_WEIGHT_EXP: i32 = -9;
/// Exponent of random Q4_1/Q5_1 offsets: about minus the mid level times `d`, so that
/// values centre near zero.
const OFFSET_WEIGHT_EXP: i32 = -5;
/// Exponent of random Q8_0 scales: |d| in [2^-12, 2^-11) against |q| ~64.
const Q8_WEIGHT_EXP: i32 = -12;

/// Levels of a symmetric block (Q4_0: `half` 8, Q5_0: 16): the value of largest magnitude
/// maps to level 0 exactly, as ggml does; returns the scale.
fn quantize_offset(values: &[f32; QK32], half: u8, levels: &mut [u8; QK32]) -> f16 {
    let d = signed_absmax(values) / -f32::from(half);
    let inv = inverse(d);
    for (l, &x) in levels.iter_mut().zip(values) {
        *l = level(x, inv, f32::from(half), 2 * half - 1);
    }
    f16::from_f32(d)
}

/// Levels of a block with a minimum (Q4_1: `max` 15, Q5_1: 31); returns (scale, minimum).
fn quantize_affine(values: &[f32; QK32], max: u8, levels: &mut [u8; QK32]) -> (f16, f16) {
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (hi - lo) / f32::from(max);
    let inv = inverse(d);
    for (l, &x) in levels.iter_mut().zip(values) {
        *l = level(x - lo, inv, 0.0, max);
    }
    (f16::from_f32(d), f16::from_f32(lo))
}

/// Decodes a block's 4-bit levels.
fn q4_levels(qs: &[u8; QK32 / 2]) -> [u8; QK32] {
    let mut levels = [0u8; QK32];
    split_nibbles(qs, NIBBLE_GROUP, &mut levels);
    levels
}

/// Decodes a block's 5-bit levels.
fn q5_levels(qh: &[u8; 4], qs: &[u8; QK32 / 2]) -> [u8; QK32] {
    let mut levels = q4_levels(qs);
    merge_high_bits(qh, 1, Q5_HIGH_BIT, &mut levels);
    levels
}

/// Packs 4-bit levels.
fn pack_q4(levels: &[u8; QK32]) -> [u8; QK32 / 2] {
    let mut qs = [0u8; QK32 / 2];
    join_nibbles(levels, NIBBLE_GROUP, &mut qs);
    qs
}

/// Packs 5-bit levels into (qh, qs).
fn pack_q5(mut levels: [u8; QK32]) -> ([u8; 4], [u8; QK32 / 2]) {
    let mut qh = [0u8; 4];
    split_high_bits(&mut levels, Q5_HIGH_BIT, &mut qh);
    (qh, pack_q4(&levels))
}

impl Block<QK32> for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;

    fn dequantize(&self, out: &mut [f32; QK32]) {
        offset_values(&q4_levels(&self.qs), 8, self.d.to_f32(), out);
    }

    fn quantize(values: &[f32; QK32]) -> Self {
        let mut levels = [0u8; QK32];
        let d = quantize_offset(values, 8, &mut levels);
        Self {
            d,
            qs: pack_q4(&levels),
        }
    }

    fn weight_like(self) -> Self {
        Self {
            d: small_f16(self.d, Q4_WEIGHT_EXP),
            ..self
        }
    }
}

impl Block<QK32> for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;

    fn dequantize(&self, out: &mut [f32; QK32]) {
        affine_values(&q4_levels(&self.qs), self.d.to_f32(), self.m.to_f32(), out);
    }

    fn quantize(values: &[f32; QK32]) -> Self {
        let mut levels = [0u8; QK32];
        let (d, m) = quantize_affine(values, 15, &mut levels);
        Self {
            d,
            m,
            qs: pack_q4(&levels),
        }
    }

    fn weight_like(self) -> Self {
        let d = small_f16(self.d, Q4_WEIGHT_EXP);
        let m = small_f16(self.m, OFFSET_WEIGHT_EXP).copysign(-d);
        Self { d, m, ..self }
    }
}

impl Block<QK32> for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;

    fn dequantize(&self, out: &mut [f32; QK32]) {
        offset_values(&q5_levels(&self.qh, &self.qs), 16, self.d.to_f32(), out);
    }

    fn quantize(values: &[f32; QK32]) -> Self {
        let mut levels = [0u8; QK32];
        let d = quantize_offset(values, 16, &mut levels);
        let (qh, qs) = pack_q5(levels);
        Self { d, qh, qs }
    }

    fn weight_like(self) -> Self {
        Self {
            d: small_f16(self.d, Q5_WEIGHT_EXP),
            ..self
        }
    }
}

impl Block<QK32> for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;

    fn dequantize(&self, out: &mut [f32; QK32]) {
        let levels = q5_levels(&self.qh, &self.qs);
        affine_values(&levels, self.d.to_f32(), self.m.to_f32(), out);
    }

    fn quantize(values: &[f32; QK32]) -> Self {
        let mut levels = [0u8; QK32];
        let (d, m) = quantize_affine(values, 31, &mut levels);
        let (qh, qs) = pack_q5(levels);
        Self { d, m, qh, qs }
    }

    fn weight_like(self) -> Self {
        let d = small_f16(self.d, Q5_WEIGHT_EXP);
        let m = small_f16(self.m, OFFSET_WEIGHT_EXP).copysign(-d);
        Self { d, m, ..self }
    }
}

impl Block<QK32> for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;

    fn dequantize(&self, out: &mut [f32; QK32]) {
        offset_values(&self.qs, 0, self.d.to_f32(), out);
    }

    fn quantize(values: &[f32; QK32]) -> Self {
        let mut qs = [0i8; QK32];
        let d = quantize_i8(values, &mut qs);
        Self {
            d: f16::from_f32(d),
            qs,
        }
    }

    fn weight_like(self) -> Self {
        Self {
            d: small_f16(self.d, Q8_WEIGHT_EXP),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize;
    use crate::quant::testutil::{assert_values, decode, values_with};

    /// A block image: little-endian f16 header bytes, then `fill`-filled payload of `len`
    /// bytes with the listed (offset into payload, byte) exceptions.
    fn image(header: &[u8], len: usize, fill: u8, bytes: &[(usize, u8)]) -> Vec<u8> {
        let mut payload = vec![fill; len];
        for &(i, b) in bytes {
            payload[i] = b;
        }
        [header, &payload].concat()
    }

    #[test]
    fn q4_0_low_nibbles_are_the_first_half() {
        // d = 0.5; 0x88 bytes decode to zeros.
        let bytes = image(&[0x00, 0x38], 16, 0x88, &[(0, 0x9F), (15, 0x07)]);
        let want = values_with(32, |_| 0.0, &[(0, 3.5), (16, 0.5), (15, -0.5), (31, -4.0)]);
        assert_values(&decode(GgmlType::Q4_0, &bytes), &want);
    }

    #[test]
    fn q4_1_adds_the_minimum() {
        // d = 0.25, m = -1; 0x44 bytes decode to zeros.
        let bytes = image(&[0x00, 0x34, 0x00, 0xBC], 16, 0x44, &[(0, 0x5A), (1, 0xF0)]);
        let want = values_with(32, |_| 0.0, &[(0, 1.5), (16, 0.25), (1, -1.0), (17, 2.75)]);
        assert_values(&decode(GgmlType::Q4_1, &bytes), &want);
    }

    #[test]
    fn q5_0_fifth_bits_follow_the_value_index() {
        // d = 1; qh = bits 0, 17 and 31 of a little-endian u32.
        let header = [0x00, 0x3C, 0x01, 0x00, 0x02, 0x80];
        let bytes = image(&header, 16, 0x00, &[(0, 0x30), (1, 0x2F), (15, 0xF1)]);
        let want = values_with(
            32,
            |_| -16.0,
            &[
                (0, 0.0),
                (16, -13.0),
                (1, -1.0),
                (17, 2.0),
                (15, -15.0),
                (31, 15.0),
            ],
        );
        assert_values(&decode(GgmlType::Q5_0, &bytes), &want);
    }

    #[test]
    fn q5_1_fifth_bits_and_minimum() {
        // d = 0.5, m = 2; qh = bits 3 and 20.
        let header = [0x00, 0x38, 0x00, 0x40, 0x08, 0x00, 0x10, 0x00];
        let bytes = image(&header, 16, 0x00, &[(3, 0x1E), (4, 0xF2)]);
        let want = values_with(32, |_| 2.0, &[(3, 17.0), (19, 2.5), (4, 3.0), (20, 17.5)]);
        assert_values(&decode(GgmlType::Q5_1, &bytes), &want);
    }

    #[test]
    fn q8_0_levels_are_signed() {
        // d = 0.125.
        let bytes = image(&[0x00, 0x30], 32, 2, &[(0, 0x80), (5, 127), (31, 0xFF)]);
        let want = values_with(32, |_| 0.25, &[(0, -16.0), (5, 15.875), (31, -0.125)]);
        assert_values(&decode(GgmlType::Q8_0, &bytes), &want);
    }

    #[test]
    fn q4_0_quantises_representable_values_exactly() {
        // Levels 0..16 then 15..=0 at d = 0.5; -4 has the largest magnitude, so d = -4/-8.
        let values: Vec<f32> = (0..16)
            .chain((0..16).rev())
            .map(|l| (l as f32 - 8.0) * 0.5)
            .collect();
        let bytes = quantize(GgmlType::Q4_0, &values).unwrap();
        let want: Vec<u8> = [0x00, 0x38]
            .into_iter()
            .chain((0..16).map(|i| i | ((15 - i) << 4)))
            .collect();
        assert_eq!(bytes, want);
    }

    #[test]
    fn q5_1_quantises_representable_values_exactly() {
        // Levels 0..32 at d = 1, m = -3: the range is exactly 31 steps.
        let values: Vec<f32> = (0..32).map(|l| l as f32 - 3.0).collect();
        let block: BlockQ5_1 =
            bytemuck::pod_read_unaligned(&quantize(GgmlType::Q5_1, &values).unwrap());
        assert_eq!((block.d.to_f32(), block.m.to_f32()), (1.0, -3.0));
        assert_eq!(block.qh, [0x00, 0x00, 0xFF, 0xFF]);
        assert_eq!(
            block.qs,
            std::array::from_fn(|i| (i as u8) | ((i as u8) << 4))
        );
    }
}
