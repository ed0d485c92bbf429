//! Normalisation kernels.

use crate::kernel;

/// RMSNorm of each row: `y = x * rsqrt(mean(x^2) + eps) * w`, stored as `O` (f32, or f16
/// as the operand of the matrix-core products). One block per row; the sum of squares is
/// a block reduction.
#[kernel]
pub fn rmsnorm<O, const BLOCK: u32>(x: &[f32], w: &[f32], y: &mut [O], n: u32, eps: f32) {
    let row = block_idx();
    let base = row * n;
    let mut sum = 0.0;
    for i in (thread_idx()..n).step_by(BLOCK) {
        let v = x[base + i];
        sum += v * v;
    }
    let total = block_sum(sum);
    let scale = rsqrt(total / (n as f32) + eps);
    for i in (thread_idx()..n).step_by(BLOCK) {
        y[base + i] = (x[base + i] * scale * w[i]) as O;
    }
}

/// Numerically stable softmax of each row, in place semantics on separate buffers:
/// `y = exp(x - max(x)) / sum(exp(x - max(x)))`. One block per row.
#[kernel]
pub fn softmax<const BLOCK: u32>(x: &[f32], y: &mut [f32], n: u32) {
    let base = block_idx() * n;
    let mut m = f32::NEG_INFINITY;
    for i in (thread_idx()..n).step_by(BLOCK) {
        m = max(m, x[base + i]);
    }
    let row_max = block_max(m);
    let mut s = 0.0;
    for i in (thread_idx()..n).step_by(BLOCK) {
        let e = exp(x[base + i] - row_max);
        y[base + i] = e;
        s += e;
    }
    let inv = 1.0 / block_sum(s);
    for i in (thread_idx()..n).step_by(BLOCK) {
        y[base + i] = y[base + i] * inv;
    }
}
