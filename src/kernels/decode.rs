//! Small kernels of the decode step: the embedding lookup, greedy token selection, and
//! the tracer's statistics. Everything that changes per token lives in device memory, so
//! one captured graph serves every step.

use super::dot::dequant_value;
use crate::kernel;

/// `out[t] = table[tok[t]]` for token `t = block_idx_y()`: rows of the token table
/// (`rows x cols`, format `FMT`), one token per row of the grid (a decode step has one).
#[kernel(block = 256)]
pub fn embed<const FMT: u32>(table: &[u32], tok: &[u32], out: &mut [f32], rows: u32, cols: u32) {
    let t = block_idx_y();
    let row = tok[t];
    for col in (block_idx() * BLOCK + thread_idx()..cols).step_by(grid_dim() * BLOCK) {
        out[t * cols + col] = dequant_value(FMT, table, rows, cols, row, col);
    }
}

/// `dst = src[row * n .. row * n + n]`: one row of a matrix (the last prompt token's
/// residual, whose logits the decode step's head computes).
#[kernel(block = 256)]
pub fn take_row(src: &[f32], dst: &mut [f32], row: u32, n: u32) {
    for i in (block_idx() * BLOCK + thread_idx()..n).step_by(grid_dim() * BLOCK) {
        dst[i] = src[row * n + i];
    }
}

/// Greedy selection: the index of the largest logit (the smallest such index on ties) goes
/// to `tok[0]` and to `history[pos[0]]`, and the position advances. One block.
#[kernel]
pub fn argmax<const BLOCK: u32>(
    logits: &[f32],
    n: u32,
    tok: &mut [u32],
    history: &mut [u32],
    pos: &mut [u32],
) {
    let first = first_max(logits, 0, n);
    if thread_idx() == 0 {
        let p = pos[0];
        tok[0] = first;
        history[p] = first;
        pos[0] = p + 1;
    }
}

/// The index of the largest of `logits[at..at + n]`, counted from `at` (the smallest such
/// index on ties), known to every thread of the block.
#[crate::device]
pub fn first_max(logits: &[f32], at: u32, n: u32) -> u32 {
    let mut best = f32::NEG_INFINITY;
    for i in (thread_idx()..n).step_by(BLOCK) {
        best = max(best, logits[at + i]);
    }
    let top = block_max(best);
    let mut index = 0xffffffffu32;
    for i in (thread_idx()..n).step_by(BLOCK) {
        if logits[at + i] == top {
            index = min(index, i);
        }
    }
    block_min(index)
}

/// Statistics of `x[0..n]` (f32 or f16) for the tracer: `out = [min, max, sum, non-finite
/// count]`, the first three over finite values only. One block.
#[kernel]
pub fn stats<T, const BLOCK: u32>(x: &[T], n: u32, out: &mut [f32]) {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    let mut sum = 0.0;
    let mut bad = 0u32;
    for i in (thread_idx()..n).step_by(BLOCK) {
        let v = x[i] as f32;
        if is_finite(v) {
            lo = min(lo, v);
            hi = max(hi, v);
            sum += v;
        } else {
            bad += 1;
        }
    }
    let lo = block_min(lo);
    let hi = block_max(hi);
    let sum = block_sum(sum);
    let bad = block_sum(bad);
    if thread_idx() == 0 {
        out[0] = lo;
        out[1] = hi;
        out[2] = sum;
        out[3] = bad as f32;
    }
}
