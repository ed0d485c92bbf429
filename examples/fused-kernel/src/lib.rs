//! A user crate defining its own fused kernel with GRETA: residual add, RMSNorm and a
//! scale in one launch. This is the path to follow for your own kernels: write the kernel
//! with `#[greta::kernel]`, snapshot its generated source for the targets you ship, check
//! that the real toolchains compile it cleanly, and test it against a plain-Rust reference
//! on the CPU backend.

use greta::kernel;

/// `h += delta; y = rmsnorm(h) * w * scale` for each row of `n` values: the residual
/// update and the next layer's normalisation in one pass over memory. One block per row.
#[kernel]
pub fn add_rmsnorm_scale<const BLOCK: u32>(
    h: &mut [f32],
    delta: &[f32],
    w: &[f32],
    y: &mut [f32],
    n: u32,
    eps: f32,
    scale: f32,
) {
    let base = block_idx() * n;
    let mut ss = 0.0;
    for i in (thread_idx()..n).step_by(BLOCK) {
        let v = h[base + i] + delta[base + i];
        h[base + i] = v;
        ss += v * v;
    }
    let inv = rsqrt(block_sum(ss) / (n as f32) + eps) * scale;
    for i in (thread_idx()..n).step_by(BLOCK) {
        y[base + i] = h[base + i] * inv * w[i];
    }
}

/// The plain-Rust reference, in f64.
pub fn reference(
    h: &mut [f32],
    delta: &[f32],
    w: &[f32],
    n: usize,
    eps: f32,
    scale: f32,
) -> Vec<f64> {
    let mut y = Vec::with_capacity(h.len());
    for (row, d) in h.chunks_mut(n).zip(delta.chunks(n)) {
        let sum: Vec<f64> = row
            .iter()
            .zip(d)
            .map(|(a, b)| *a as f64 + *b as f64)
            .collect();
        let ms = sum.iter().map(|v| v * v).sum::<f64>() / n as f64;
        let inv = scale as f64 / (ms + eps as f64).sqrt();
        y.extend(sum.iter().zip(w).map(|(v, g)| v * inv * *g as f64));
        for (dst, v) in row.iter_mut().zip(&sum) {
            *dst = *v as f32;
        }
    }
    y
}
