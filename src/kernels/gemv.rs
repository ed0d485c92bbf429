//! Matrix-vector products for decode.

use crate::kernel;

/// `y = W x` with W an f16 `rows x cols` row-major matrix and x f32: one wavefront per
/// output row, 16-byte loads of eight weights per lane, a wave reduction at the end.
/// `cols` must be a multiple of 8.
#[kernel]
pub fn gemv_f16<const BLOCK: u32>(w: &[f16], x: &[f32], y: &mut [f32], rows: u32, cols: u32) {
    let row = block_idx() * (BLOCK / WAVE) + wave_id();
    if row >= rows {
        return;
    }
    let vecs = cols / 8;
    let row_vec = row * vecs;
    let mut acc = 0.0;
    for v in (lane_id()..vecs).step_by(WAVE) {
        let wv = w.load_vec::<8>(row_vec + v);
        let xa = x.load_vec::<4>(2 * v);
        let xb = x.load_vec::<4>(2 * v + 1);
        for k in 0..4 {
            acc += (wv[k] as f32) * xa[k];
            acc += (wv[k + 4] as f32) * xb[k];
        }
    }
    let total = wave_sum(acc);
    if lane_id() == 0 {
        y[row] = total;
    }
}
