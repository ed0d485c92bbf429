//! The `Block` trait every storage format implements, and its plain-float instances.

use bytemuck::Pod;
use half::{bf16, f16};

use super::GgmlType;

/// One ggml storage block of `QK` values, byte-for-byte as GGUF stores it, with its
/// reference codec.
pub trait Block<const QK: usize>: Pod {
    /// The ggml type whose blocks these are.
    const TYPE: GgmlType;

    /// Decodes the block's values in ggml order.
    fn dequantize(&self, out: &mut [f32; QK]);

    /// Encodes `QK` values (meant to be finite; non-finite ones give a meaningless block).
    fn quantize(values: &[f32; QK]) -> Self;

    /// Turns a block of random bytes into a valid one that decodes to weight-like values
    /// (|x| around 0.02), keeping the random quant bits.
    fn weight_like(self) -> Self;
}

/// Keeps the sign and mantissa of random float bits and sets the exponent field so the
/// magnitude lies in [2^e, 2^(e+1)); an `e` one below the normal range yields a
/// subnormal in [0, 2^(e+1)), as tiny ggml scales often are.
fn small_float_bits(raw: u32, mantissa_bits: u32, exponent_bits: u32, e: i32) -> u32 {
    let bias = (1i32 << (exponent_bits - 1)) - 1;
    let field = (e + bias).max(0) as u32;
    let sign = raw & (1 << (mantissa_bits + exponent_bits));
    let mantissa = raw & ((1 << mantissa_bits) - 1);
    sign | (field << mantissa_bits) | mantissa
}

/// A random-signed f16 with magnitude in [2^e, 2^(e+1)) drawn from the bits of `raw`.
pub(super) fn small_f16(raw: f16, e: i32) -> f16 {
    f16::from_bits(small_float_bits(u32::from(raw.to_bits()), 10, 5, e) as u16)
}

/// A random-signed f32 with magnitude in [2^e, 2^(e+1)) drawn from the bits of `raw`.
pub(super) fn small_f32(raw: f32, e: i32) -> f32 {
    f32::from_bits(small_float_bits(raw.to_bits(), 23, 8, e))
}

/// Exponent of random plain-float weights: |x| in [1/64, 1/32).
const FLOAT_WEIGHT_EXP: i32 = -6;

impl Block<1> for f32 {
    const TYPE: GgmlType = GgmlType::F32;

    fn dequantize(&self, out: &mut [f32; 1]) {
        out[0] = *self;
    }

    fn quantize(values: &[f32; 1]) -> Self {
        values[0]
    }

    fn weight_like(self) -> Self {
        small_f32(self, FLOAT_WEIGHT_EXP)
    }
}

impl Block<1> for f16 {
    const TYPE: GgmlType = GgmlType::F16;

    fn dequantize(&self, out: &mut [f32; 1]) {
        out[0] = self.to_f32();
    }

    fn quantize(values: &[f32; 1]) -> Self {
        f16::from_f32(values[0])
    }

    fn weight_like(self) -> Self {
        small_f16(self, FLOAT_WEIGHT_EXP)
    }
}

impl Block<1> for bf16 {
    const TYPE: GgmlType = GgmlType::BF16;

    fn dequantize(&self, out: &mut [f32; 1]) {
        out[0] = self.to_f32();
    }

    fn quantize(values: &[f32; 1]) -> Self {
        bf16::from_f32(values[0])
    }

    fn weight_like(self) -> Self {
        bf16::from_bits(small_float_bits(u32::from(self.to_bits()), 7, 8, FLOAT_WEIGHT_EXP) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_floats_land_in_their_octave() {
        for raw in [0u16, 0x3FF, 0x8000, 0xFFFF, 0x1234, 0xBEEF] {
            let v = small_f16(f16::from_bits(raw), -8).to_f32().abs();
            assert!((1.0 / 256.0..1.0 / 128.0).contains(&v), "{raw:#x} -> {v}");
            let s = small_f16(f16::from_bits(raw), -15).to_f32().abs();
            assert!(s < 1.0 / 16384.0, "{raw:#x} -> {s} is not subnormal");
            let b = bf16::from_bits(raw).weight_like().to_f32().abs();
            assert!((1.0 / 64.0..1.0 / 32.0).contains(&b), "{raw:#x} -> {b}");
        }
        assert!(small_f16(f16::from_bits(0x8001), -8).is_sign_negative());
        assert_eq!(small_f32(f32::from_bits(u32::MAX), -12).to_bits() >> 31, 1);
        let v = small_f32(f32::from_bits(0x7FFF_FFFF), -12);
        assert!((v - 2.0f32.powi(-11)).abs() < 1e-9 && v < 2.0f32.powi(-11));
    }
}
