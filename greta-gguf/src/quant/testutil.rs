//! Helpers shared by the quant tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{dequantize, GgmlType};

/// Decodes `bytes` of type `ty`, failing the test on an error.
pub(super) fn decode(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![f32::NAN; bytes.len() / ty.block_bytes() * ty.block_elems()];
    dequantize(ty, bytes, &mut out).expect("valid test data");
    out
}

/// `len` values from `background(i)`, except the listed (index, value) pairs.
pub(super) fn values_with(
    len: usize,
    background: impl Fn(usize) -> f32,
    exceptions: &[(usize, f32)],
) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(background).collect();
    for &(i, x) in exceptions {
        v[i] = x;
    }
    v
}

/// Asserts exact equality, naming the first differing index.
pub(super) fn assert_values(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits(), "value {i}: got {g}, want {w}");
    }
}

/// A seeded generator, so failures reproduce.
pub(super) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` normally distributed values with standard deviation `sigma` (Box-Muller).
pub(super) fn gaussian(n: usize, sigma: f32, rng: &mut StdRng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u: f32 = 1.0 - rng.gen::<f32>();
            let v: f32 = rng.gen();
            sigma * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}
