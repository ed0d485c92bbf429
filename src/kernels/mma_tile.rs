//! Wave-level products of 16-row tiles on the matrix cores: the smallest use of the DSL's
//! fragments, and the test of every target's fragment layouts. Each wave computes one
//! 16 x 16 tile of `Y = X · Wᵀ` three ways that must agree: operands loaded from shared
//! memory and the result stored with `store_frag`; the result written element by element
//! at the lanes' coordinates; and operands built in registers from those coordinates.

use crate::kernel;

/// `Y (16 x n) = X (16 x k) · Wᵀ` with W `n x k` (rows of K), one 16 x 16 tile of Y per
/// wave, operands of type `T` (f16, bf16, i8) accumulated in `A` (f32, or i32 for i8).
/// `k` is a multiple of the fragment depth up to 64, `n` a multiple of 16 per wave.
#[kernel]
pub fn mma_tile<T, A, const BLOCK: u32>(
    x: &[T],
    w: &[T],
    y: &mut [A],
    y_elems: &mut [A],
    y_regs: &mut [A],
    n: u32,
    k: u32,
) {
    let waves = BLOCK / WAVE;
    let xs = shared!([T; 16 * 64]);
    let ws = shared!([T; BLOCK / WAVE * 16 * 64]);
    let first = block_idx() * waves * 16;
    for i in (thread_idx()..16 * k).step_by(BLOCK) {
        xs[i] = x[i];
    }
    for i in (thread_idx()..waves * 16 * k).step_by(BLOCK) {
        ws[i] = w[first * k + i];
    }
    barrier();
    let n0 = first + wave_id() * 16;
    let mut acc = frag_c::<A>();
    let mut acc_regs = frag_c::<A>();
    for s in (0..k).step_by(frag_a::<T>().depth()) {
        acc = mma(xs.load_a(s, k), ws.load_b(wave_id() * 16 * k + s, k), acc);
        let mut a = frag_a::<T>();
        let mut b = frag_b::<T>();
        for i in 0..a.len() {
            a[i] = x[a.row(i) * k + s + a.col(i)];
            b[i] = w[(n0 + b.row(i)) * k + s + b.col(i)];
        }
        acc_regs = mma(a, b, acc_regs);
    }
    y.store_frag(n0, n, acc);
    for i in 0..acc.len() {
        let at = acc.row(i) * n + n0 + acc.col(i);
        y_elems[at] = acc[i];
        y_regs[at] = acc_regs[i];
    }
}

/// `Y (16 x n) = X (16 x k) · W` with W stored `k x n` (one row per step of K, as V is in
/// attention), read with `load_b_trans`; 16-bit operands into f32.
#[kernel]
pub fn mma_tile_trans<T, const BLOCK: u32>(x: &[T], w: &[T], y: &mut [f32], n: u32, k: u32) {
    let waves = BLOCK / WAVE;
    let xs = shared!([T; 16 * 64]);
    // Each wave's 16 columns of W, as a k x 16 tile.
    let ws = shared!([T; BLOCK / WAVE * 16 * 64]);
    let first = block_idx() * waves * 16;
    for i in (thread_idx()..16 * k).step_by(BLOCK) {
        xs[i] = x[i];
    }
    for i in (thread_idx()..waves * 16 * k).step_by(BLOCK) {
        let tile = i / (16 * k);
        let at = i % (16 * k);
        ws[i] = w[(at / 16) * n + first + tile * 16 + at % 16];
    }
    barrier();
    let mut acc = frag_c::<f32>();
    for s in (0..k).step_by(16) {
        let b = ws.load_b_trans(wave_id() * 16 * k + s * 16, 16);
        acc = mma(xs.load_a(s, k), b, acc);
    }
    y.store_frag(first + wave_id() * 16, n, acc);
}
