//! Matrix-vector products for decode: `y = W x` over GGUF weights in every supported
//! format, with the RMSNorm of `x` fused into the prologue and a store or residual-add
//! epilogue.

use super::dot::{dot_item, items_per_row, prologue};
use crate::kernel;

/// Epilogue: overwrite `y`.
pub const STORE: u32 = 0;
/// Epilogue: `y += W x` (residual connection).
pub const ADD: u32 = 1;

/// `y (=|+=) W · (NORM ? rmsnorm(x, nw) : x)` for a `rows x cols` matrix of format `FMT`.
/// Each wavefront computes `ROWS` rows at a time (independent loads in flight); blocks
/// stride over the rows. `XCAP` bounds `cols` for the shared int8 copy of `x`.
#[kernel]
pub fn matvec<const FMT: u32, const NORM: u32, const EPI: u32, const ROWS: u32, const XCAP: u32, const BLOCK: u32>(
    w: &[u32],
    x: &[f32],
    nw: &[f32],
    y: &mut [f32],
    rows: u32,
    cols: u32,
    eps: f32,
) {
    let xq = shared!([i32; XCAP / 4]);
    let dx = shared!([f32; XCAP / 32]);
    let sx = shared!([f32; XCAP / 32]);
    let s16 = shared!([i32; XCAP / 16]);
    let scale = prologue(FMT, x, nw, NORM == 1, eps, cols, xq, dx, sx, s16);
    let waves = BLOCK / WAVE;
    let items = items_per_row(FMT, cols);
    let stride = grid_dim() * waves * ROWS;
    for base in ((block_idx() * waves + wave_id()) * ROWS..rows).step_by(stride) {
        let mut acc = [0.0f32; ROWS];
        for it in (lane_id()..items).step_by(WAVE) {
            for r in 0..ROWS {
                if base + r < rows {
                    acc[r] += dot_item(FMT, w, rows, cols, base + r, it, xq, dx, sx, s16, x, nw, NORM == 1, scale);
                }
            }
        }
        for r in 0..ROWS {
            let total = wave_sum(acc[r]);
            let row = base + r;
            if lane_id() == 0 && row < rows {
                if EPI == ADD {
                    y[row] = y[row] + total;
                } else {
                    y[row] = total;
                }
            }
        }
    }
}
