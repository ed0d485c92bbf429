//! Matrix-vector products for decode over GGUF weights in every supported format, with
//! the RMSNorm of the input fused into the prologue and the epilogues a decode step needs:
//! store, residual add, SwiGLU, and QKV with RoPE and the KV-cache write.
//!
//! Each wavefront owns `ROWS` rows at a time and walks their work items; the loads of the
//! next item are issued before the current one is used, and the first item's loads before
//! the prologue, so the norm and the quantisation of the input overlap memory traffic.
//! Blocks stride over the rows. Where the target copies in bulk and each wave owns one row
//! of a long input (the down projection), a separate path also copies the row's second step
//! into shared memory while the input is quantised.
//!
//! Where the target has dependent launch, the kernel starts while the previous launch still
//! runs: it issues its first weight loads, then waits for that launch before reading
//! anything else. The weights must therefore not be written by the launch before it.

use super::dot::{
    dot_fetched, fetch_scale, fetch_vec, item_vectors, items_per_row, norm_scale, quantise_chunk,
    quantise_pass, scale_shift, sum_squares, times, vec_index, GROUP_VECTORS, Q6K, Q8_0,
};
use crate::kernel;

/// What a product does with its rows; the kernels read it as `EPI`, the code of one of
/// the constants below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `y[r] = (W x)[r]`.
    Store = 0,
    /// `y[r] += (W x)[r]` (residual connection).
    Add = 1,
    /// Rows are interleaved gate/up pairs; `y[i] = silu(gate_i) * up_i`.
    Swiglu = 2,
    /// Rows are Q then K (matrix A) then V (matrix B); RoPE on Q and K pairs at the
    /// position in `pos[0]`, Q to `y`, K and V into the f16 caches at that position.
    Qkv = 3,
}

impl Epilogue {
    /// The `EPI` value passed to the kernels.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Whether rows come in pairs that finish together (SwiGLU's gate and up, QKV's
    /// rotated pairs).
    pub fn paired(self) -> bool {
        matches!(self, Epilogue::Swiglu | Epilogue::Qkv)
    }
}

/// [`Epilogue::Store`]'s code, as kernel bodies compare `EPI` with it.
pub const STORE: u32 = Epilogue::Store as u32;
/// [`Epilogue::Add`]'s code.
pub const ADD: u32 = Epilogue::Add as u32;
/// [`Epilogue::Swiglu`]'s code.
pub const SWIGLU: u32 = Epilogue::Swiglu as u32;
/// [`Epilogue::Qkv`]'s code.
pub const QKV: u32 = Epilogue::Qkv as u32;

/// Stacked matrices A (`rows_a x cols`, format `FMT`) and B (`rows_b x cols`, format
/// `FMT_B`) times `NORM ? rmsnorm(x, nw) : x`, with epilogue `EPI`, for the `n` input
/// vectors (at most `NX`) from vector `x0` of `x` on: vector `i` is `x[i * cols..]`, its
/// results `y[i * rows..]` (SwiGLU: `rows / 2`; QKV's Q: `q_rows`). Each weight row is read
/// once for all of them, and every vector's sums are formed in the same order whatever `n`
/// and `NX` are, so a vector's results do not depend on the others it is launched with.
/// `XCAP` bounds `cols` for the shared int8 copy of each input. For `QKV`, `q_rows` is the
/// number of Q rows in A, `head_dim` the head size, `ctx` the cache length and `rope_step`
/// the RoPE frequency base's log2 over the head size (`Rope::step`); vector `i` is at
/// position `pos[i]` of cache slot `slot[i]` (`slot_len` elements each; with `slot_len` 0
/// the caches hold one sequence and `slot` is not read); other epilogues ignore them and
/// the cache buffers. The compiler keeps room for four waves per SIMD: enough loads in
/// flight per compute unit to cover memory latency.
#[kernel(min_waves = 4)]
pub fn matvec<
    const FMT: u32,
    const FMT_B: u32,
    const NORM: u32,
    const EPI: u32,
    const ROWS: u32,
    const NX: u32,
    const XCAP: u32,
    const BLOCK: u32,
>(
    wa: &[u32],
    wb: &[u32],
    x: &[f32],
    nw: &[f32],
    y: &mut [f32],
    kc: &mut [f16],
    vc: &mut [f16],
    pos: &[u32],
    slot: &[u32],
    rows_a: u32,
    rows_b: u32,
    cols: u32,
    eps: f32,
    q_rows: u32,
    head_dim: u32,
    ctx: u32,
    rope_step: f32,
    slot_len: u32,
    x0: u32,
    n: u32,
) {
    // The inputs' int8 copies, `XCAP` values apart.
    let xq = shared!([i32; NX * XCAP / 4]);
    let dx = shared!([f32; NX * XCAP / 32]);
    let sx = shared!([f32; NX * XCAP / 32]);
    let s16 = shared!([i32; NX * XCAP / 16]);
    // Each wave's share of each input's sum of squares (the norm).
    let ssw = shared!([f32; NX * BLOCK / WAVE]);
    // The one-row path below copies a wave's second weight step in bulk: on targets with
    // bulk copies, for a long input without a norm that takes two to three passes to
    // quantise (the down projection), and not for Q6_K, whose steps fill the registers.
    // Only decode's launches (`DECODE_BLOCK` threads) take it: the batched products keep
    // one path for every vector count, as on sm_90 the staged path gave a Q8_0 vector
    // other bits alone than in a group.
    const STAGED: bool = BULK_COPY == 1
        && NX == 1
        && BLOCK == DECODE_BLOCK
        && EPI < SWIGLU
        && NORM == 0
        && FMT >= Q8_0
        && FMT != Q6K
        && XCAP > 4 * BLOCK
        && XCAP <= 12 * BLOCK;
    // That step: `WAVE / 4` groups of four work items per wave, `GROUP_VECTORS` vectors
    // each. Elsewhere a token four words.
    let stage = shared!(
        [u32; max(
            4,
            (STAGED as u32) * BLOCK * ((GROUP_VECTORS >> (4 * FMT)) & 15)
        )]
    );
    let rows = rows_a + rows_b;
    let waves = BLOCK / WAVE;
    let items = items_per_row(FMT, cols);
    let per_lane = (items + WAVE - 1) / WAVE;
    // The paired epilogues (SwiGLU, QKV) walk each pair of rows one row after the other in
    // one wavefront (ROWS is 1) and finish the pair after its second row.
    let paired = EPI == SWIGLU || EPI == QKV;
    let span = if paired { 2 } else { ROWS };
    let stride = grid_dim() * waves * span;
    // Row groups are dealt to waves across blocks first, so the waves with one group more
    // than the others are spread over every compute unit instead of filling a few.
    let first = (wave_id() * grid_dim() + block_idx()) * span;
    // The staged path, one row per wave: after the wait the input's loads, then a bulk
    // copy of each wave's step 1 into `stage`, so that DRAM streams while the input is
    // quantised (16 values per thread); step 2's loads before the barrier; the rest one
    // step ahead in registers. Decided before the general path's preamble, whose
    // instructions (a division, the register arrays' fills) would delay step 0's loads;
    // inputs of more than three passes are left to the general path, which loads them
    // pass by pass.
    if STAGED && ROWS == 1 && rows_b == 0 && rows <= stride && per_lane >= 2 {
        let row = first;
        let mut step0 = [u32x4::splat(0); 4];
        let mut step0_s = 0u32;
        if row < rows && lane_id() < items {
            for k in 0..4 {
                step0[k] = item_vec(FMT, wa, cols, row, lane_id(), k);
            }
            step0_s = fetch_scale(FMT, wa, rows, cols, row, lane_id());
        }
        allow_next_launch();
        wait_prior_launch();
        // The input, 16 consecutive values per thread (two lanes per 32-value block): about
        // a third of the instructions of four-value passes.
        let c = thread_idx();
        let mut v = [f32x4::splat(0.0); 4];
        if c < cols / 16 {
            for k in 0..4 {
                v[k] = x.load_vec::<4>(x0 * (cols / 4) + 4 * c + k);
            }
        }
        // Requested behind the input, so that the input's loads do not queue behind it.
        if row < rows {
            stage.copy_async(
                stage_vector(FMT),
                wa,
                vec_index(FMT, cols, row, WAVE, 0),
                min(WAVE, items - WAVE) * ((GROUP_VECTORS >> (4 * FMT)) & 15) / 4,
            );
        }
        // Whole waves past the input's end idle.
        if c - lane_id() < cols / 16 {
            quantise_chunk(
                v[0],
                v[1],
                v[2],
                v[3],
                16 * c,
                c < cols / 16,
                xq,
                dx,
                sx,
                s16,
            );
        }
        let mut nxt = [u32x4::splat(0); 4];
        let mut nxt_s = 0u32;
        let mut staged_s = 0u32;
        if row < rows {
            let it = lane_id() + 2 * WAVE;
            if per_lane > 2 && it < items {
                for k in 0..4 {
                    nxt[k] = item_vec(FMT, wa, cols, row, it, k);
                }
                nxt_s = fetch_scale(FMT, wa, rows, cols, row, it);
            }
            if lane_id() + WAVE < items {
                staged_s = fetch_scale(FMT, wa, rows, cols, row, lane_id() + WAVE);
            }
        }
        barrier();
        if row < rows {
            let mut sum = 0.0;
            let mut before = 0.0;
            if EPI == ADD && lane_id() == 0 {
                before = y[x0 * rows + row];
            }
            let it = lane_id();
            if it < items {
                sum += dot_item(
                    FMT,
                    step0[0],
                    step0[1],
                    step0[2],
                    step0[3],
                    step0_s,
                    row,
                    cols,
                    it,
                    0,
                    x0 * cols,
                    xq,
                    dx,
                    sx,
                    s16,
                    x,
                    nw,
                    NORM == 1,
                );
            }
            wait_async();
            let it = lane_id() + WAVE;
            if it < items {
                let at = stage_vector(FMT) - vec_index(FMT, cols, row, WAVE, 0);
                sum += dot_item(
                    FMT,
                    staged_vec(stage, at, FMT, cols, row, it, 0),
                    staged_vec(stage, at, FMT, cols, row, it, 1),
                    staged_vec(stage, at, FMT, cols, row, it, 2),
                    staged_vec(stage, at, FMT, cols, row, it, 3),
                    staged_s,
                    row,
                    cols,
                    it,
                    0,
                    x0 * cols,
                    xq,
                    dx,
                    sx,
                    s16,
                    x,
                    nw,
                    NORM == 1,
                );
            }
            sum += staged_rest(
                FMT,
                NORM == 1,
                nxt[0],
                nxt[1],
                nxt[2],
                nxt[3],
                nxt_s,
                wa,
                rows,
                cols,
                row,
                items,
                per_lane,
                x0 * cols,
                xq,
                dx,
                sx,
                s16,
                x,
                nw,
            );
            let total = wave_sum(sum);
            if lane_id() == 0 {
                y[x0 * rows + row] = if EPI == ADD { before + total } else { total };
            }
        }
        return;
    }
    let groups = if first < rows {
        (rows - first + stride - 1) / stride * (span / ROWS)
    } else {
        0
    };
    let steps = groups * per_lane;
    let mut scale = [1.0f32; NX];
    let mut cur = [u32x4::splat(0); 4 * ROWS];
    let mut cur_s = [0u32; ROWS];
    // Row `r` of the group times input `i` sums in `acc[r * NX + i]`.
    let mut acc = [0.0f32; ROWS * NX];
    // For `ADD`, the residual values of the row group being consumed, read when its first
    // step is, so the read is not a round trip at the end of the row.
    let mut resid = [0.0f32; ROWS * NX];
    // For the paired epilogues, the first row's results until the second row is done.
    let mut held = [0.0f32; NX];
    // Row group and slot of the step being fetched and of the one being consumed (counters
    // instead of divisions by `per_lane` in the loop).
    let mut fetch_base = first;
    let mut fetch_slot = 0;
    let mut use_base = first;
    let mut use_slot = 0;
    // Every block of this launch is resident (the grid is sized to the device), so the next
    // launch may start now and fill the compute units this one leaves idle at its end.
    allow_next_launch();
    // Iteration s issues the loads of step s and consumes step s - 1. The prologue runs in
    // iteration 0, after the first step's loads, so they are in flight while it waits and
    // quantises; the barrier after it comes in iteration 1 after that iteration's loads, so
    // a thread that has quantised its share issues them without waiting for the others.
    // One step only: loads issued before the wait would hold up the input's. Every thread
    // runs iterations 0 and 1, so the prologue's barriers see the whole block.
    for s in 0..max(steps, 1) + 1 {
        let mut nxt = [u32x4::splat(0); 4 * ROWS];
        let mut nxt_s = [0u32; ROWS];
        if s < steps {
            let base = fetch_base;
            let it = lane_id() + fetch_slot * WAVE;
            for r in 0..ROWS {
                let row = base + r;
                if it < items && row < rows {
                    let in_a = row < rows_a;
                    // Stacked formats differ only in QKV with V in its own format; the
                    // common case folds to `FMT` when the kernel is specialised.
                    let fmt = if FMT == FMT_B {
                        FMT
                    } else {
                        operand_format(FMT, FMT_B, row, rows_a)
                    };
                    let local = if in_a { row } else { row - rows_a };
                    for k in 0..4 {
                        if k < item_vectors(fmt) {
                            nxt[4 * r + k] = if in_a {
                                fetch_vec(fmt, wa, cols, local, it, k)
                            } else {
                                fetch_vec(fmt, wb, cols, local, it, k)
                            };
                        }
                    }
                    nxt_s[r] = if in_a {
                        fetch_scale(fmt, wa, rows_a, cols, local, it)
                    } else {
                        fetch_scale(fmt, wb, rows_b, cols, local, it)
                    };
                }
            }
            fetch_slot += 1;
            if fetch_slot == per_lane {
                fetch_slot = 0;
                fetch_base = next_group(fetch_base, paired, stride);
            }
        }
        if s == 0 {
            // Nothing before the wait reads or writes what the previous launch touches.
            wait_prior_launch();
            if FMT >= Q8_0 {
                // The prologue: each input this thread quantises (and its norm weights),
                // each pass of four values quantised to int8 in shared memory. When they
                // fit in three 16-byte vectors (two for Q6_K, whose steps hold the most
                // registers) they are loaded at once, one memory round trip for all
                // passes (every 7B shape but Q6_K down); wider inputs go pass by pass
                // rather than spill at 64 registers per thread. The norm's scale is common
                // to the whole input, so it leaves the int8 values unchanged: `x * nw` is
                // quantised without waiting for it, and the rows' sums are scaled instead.
                let passes = (XCAP + 4 * BLOCK - 1) / (4 * BLOCK);
                let room = if FMT == Q6K { 2 } else { 3 };
                // Inputs past `n` are quantised as zeros: the products then multiply every
                // input slot without a branch per input, which lets the compiler unpack
                // each weight item once for all of them.
                for xi in 0..NX {
                    let at = (x0 + xi) * cols;
                    let so = xi * XCAP;
                    let mut ss = 0.0;
                    if passes * (1 + NORM) <= room {
                        let mut xv = [f32x4::splat(0.0); (XCAP + 4 * BLOCK - 1) / (4 * BLOCK)];
                        let mut gv = [f32x4::splat(1.0); (XCAP + 4 * BLOCK - 1) / (4 * BLOCK)];
                        for p in 0..(XCAP + 4 * BLOCK - 1) / (4 * BLOCK) {
                            let i = (p * BLOCK + thread_idx()) * 4;
                            if i < cols && xi < n {
                                xv[p] = x.load_vec::<4>((at + i) / 4);
                                if NORM == 1 {
                                    gv[p] = nw.load_vec::<4>(i / 4);
                                }
                            }
                        }
                        for p in 0..(XCAP + 4 * BLOCK - 1) / (4 * BLOCK) {
                            let i = (p * BLOCK + thread_idx()) * 4;
                            ss += sum_squares(xv[p]);
                            quantise_pass(times(xv[p], gv[p]), so + i, i < cols, xq, dx, sx, s16);
                        }
                    } else {
                        for p in 0..(cols + 4 * BLOCK - 1) / (4 * BLOCK) {
                            let i = (p * BLOCK + thread_idx()) * 4;
                            let mut v = f32x4::splat(0.0);
                            let mut g = f32x4::splat(1.0);
                            if i < cols && xi < n {
                                v = x.load_vec::<4>((at + i) / 4);
                                if NORM == 1 {
                                    g = nw.load_vec::<4>(i / 4);
                                }
                            }
                            ss += sum_squares(v);
                            quantise_pass(times(v, g), so + i, i < cols, xq, dx, sx, s16);
                        }
                    }
                    if NORM == 1 {
                        publish_share(ss, cols, ssw, xi * waves);
                    }
                }
            } else if NORM == 1 {
                for xi in 0..NX {
                    if xi < n {
                        scale[xi] = norm_scale(x, (x0 + xi) * cols, cols, eps);
                    }
                }
            }
        }
        if s == 1 {
            barrier();
        }
        if s >= 1 && s <= steps {
            let base = use_base;
            let it = lane_id() + use_slot * WAVE;
            if EPI == ADD && use_slot == 0 && lane_id() == 0 {
                for r in 0..ROWS {
                    for xi in 0..NX {
                        if base + r < rows && xi < n {
                            resid[r * NX + xi] = y[(x0 + xi) * rows + base + r];
                        }
                    }
                }
            }
            for r in 0..ROWS {
                let row = base + r;
                if it < items && row < rows {
                    let local = if row < rows_a { row } else { row - rows_a };
                    for xi in 0..NX {
                        // (The float formats read inputs from global memory: only those
                        // there.)
                        if FMT >= Q8_0 || xi < n {
                            acc[r * NX + xi] += dot_item(
                                if FMT == FMT_B {
                                    FMT
                                } else {
                                    operand_format(FMT, FMT_B, row, rows_a)
                                },
                                cur[4 * r],
                                cur[4 * r + 1],
                                cur[4 * r + 2],
                                cur[4 * r + 3],
                                cur_s[r],
                                local,
                                cols,
                                it,
                                xi * XCAP,
                                (x0 + xi) * cols,
                                xq,
                                dx,
                                sx,
                                s16,
                                x,
                                nw,
                                NORM == 1,
                            );
                        }
                    }
                }
            }
            use_slot += 1;
            if use_slot == per_lane {
                use_slot = 0;
                use_base = next_group(use_base, paired, stride);
                for xi in 0..NX {
                    if xi < n {
                        let row_scale = if FMT >= Q8_0 && NORM == 1 {
                            norm_from_shares(ssw, xi * waves, eps)
                        } else {
                            scale[xi]
                        };
                        for r in 0..ROWS {
                            acc[r * NX + xi] = wave_sum(acc[r * NX + xi]) * row_scale;
                        }
                    }
                }
                if lane_id() == 0 {
                    for xi in 0..NX {
                        if xi < n {
                            let xg = x0 + xi;
                            if EPI == STORE || EPI == ADD {
                                for r in 0..ROWS {
                                    if base + r < rows {
                                        if EPI == ADD {
                                            y[xg * rows + base + r] =
                                                resid[r * NX + xi] + acc[r * NX + xi];
                                        } else {
                                            y[xg * rows + base + r] = acc[r * NX + xi];
                                        }
                                    }
                                }
                            } else if base % 2 == 0 {
                                held[xi] = acc[xi];
                            } else if EPI == SWIGLU {
                                y[xg * (rows / 2) + base / 2] =
                                    held[xi] / (1.0 + exp(-held[xi])) * acc[xi];
                            } else {
                                qkv_epilogue(
                                    base - 1,
                                    xg * q_rows + base - 1,
                                    held[xi],
                                    acc[xi],
                                    y,
                                    kc,
                                    vc,
                                    pos[xg],
                                    rows_a,
                                    q_rows,
                                    head_dim,
                                    ctx,
                                    rope_step,
                                    if slot_len > 0 { slot[xg] * slot_len } else { 0 },
                                );
                            }
                        }
                    }
                }
                for r in 0..ROWS * NX {
                    acc[r] = 0.0;
                }
            }
        }
        for k in 0..4 * ROWS {
            cur[k] = nxt[k];
        }
        for r in 0..ROWS {
            cur_s[r] = nxt_s[r];
        }
    }
}

/// The format of row `row` of the stacked matrices: `fmt_a` in A (its first `rows_a`
/// rows), `fmt_b` in B.
#[crate::device]
fn operand_format(fmt_a: u32, fmt_b: u32, row: u32, rows_a: u32) -> u32 {
    if row < rows_a {
        fmt_a
    } else {
        fmt_b
    }
}

/// Work item `it` of row `row` (of its own matrix, format `fmt`), fetched as `v0..v3` and
/// scale word `s`, times the input (`norm`: times the norm weights too). The scale's half
/// of its word is found here rather than carried from the fetch: a register less through
/// the loop.
#[crate::device]
fn dot_item(
    fmt: u32,
    v0: u32x4,
    v1: u32x4,
    v2: u32x4,
    v3: u32x4,
    s: u32,
    row: u32,
    cols: u32,
    it: u32,
    xo: u32,
    fo: u32,
    xq: &[i32],
    dx: &[f32],
    sx: &[f32],
    s16: &[i32],
    x: &[f32],
    nw: &[f32],
    norm: bool,
) -> f32 {
    let sw = s >> scale_shift(fmt, cols, row, it);
    dot_fetched(
        fmt, v0, v1, v2, v3, sw, it, xo, fo, xq, dx, sx, s16, x, nw, norm,
    )
}

/// The lane's share of the row's sum over the staged path's steps from 2 on (format `fmt`,
/// `norm` as for [`dot_item`]), each step's loads issued before the one before is used;
/// step 2 arrives fetched as `n0..n3` and `n_s`.
#[crate::device]
fn staged_rest(
    fmt: u32,
    norm: bool,
    n0: u32x4,
    n1: u32x4,
    n2: u32x4,
    n3: u32x4,
    n_s: u32,
    wa: &[u32],
    rows: u32,
    cols: u32,
    row: u32,
    items: u32,
    per_lane: u32,
    fo: u32,
    xq: &[i32],
    dx: &[f32],
    sx: &[f32],
    s16: &[i32],
    x: &[f32],
    nw: &[f32],
) -> f32 {
    let mut nxt = [n0, n1, n2, n3];
    let mut nxt_s = n_s;
    let mut sum = 0.0;
    for st in 2..per_lane {
        let mut ahead = [u32x4::splat(0); 4];
        let mut ahead_s = 0u32;
        let next = lane_id() + (st + 1) * WAVE;
        if st + 1 < per_lane && next < items {
            for k in 0..4 {
                ahead[k] = item_vec(fmt, wa, cols, row, next, k);
            }
            ahead_s = fetch_scale(fmt, wa, rows, cols, row, next);
        }
        let it = lane_id() + st * WAVE;
        if it < items {
            sum += dot_item(
                fmt, nxt[0], nxt[1], nxt[2], nxt[3], nxt_s, row, cols, it, 0, fo, xq, dx, sx, s16,
                x, nw, norm,
            );
        }
        for k in 0..4 {
            nxt[k] = ahead[k];
        }
        nxt_s = ahead_s;
    }
    sum
}

/// Publishes the wave's share of an input's mean square (into the input's shares from `at`)
/// for the RMSNorm scale. The scale is
/// needed only at the end of each row, where it is summed from the shares (published by the
/// barrier after the next step's loads), so it holds no register through the loop.
#[crate::device]
fn publish_share(ss: f32, cols: u32, ssw: &mut [f32], at: u32) {
    let wave_ss = wave_sum(ss) / (cols as f32);
    if lane_id() == 0 {
        ssw[at + wave_id()] = wave_ss;
    }
}

/// The RMSNorm scale of an input from the waves' shares of its mean square (from `at` in
/// `ssw`): one share per
/// lane (a block has at most as many waves as a wave has lanes), summed across the wave, a
/// dozen instructions at every row end instead of a load and an add per wave.
#[crate::device]
fn norm_from_shares(ssw: &[f32], at: u32, eps: f32) -> f32 {
    let share = if lane_id() < BLOCK / WAVE {
        ssw[at + lane_id()]
    } else {
        0.0
    };
    rsqrt(wave_sum(share) + eps)
}

/// Where the calling wave's staged step starts in `stage`, in 16-byte vectors.
#[crate::device]
fn stage_vector(fmt: u32) -> u32 {
    wave_id() * (WAVE / 4) * ((GROUP_VECTORS >> (4 * fmt)) & 15)
}

/// Vector `k` of work item `it` of weight row `row`; zero past the item's vectors.
#[crate::device]
fn item_vec(fmt: u32, w: &[u32], cols: u32, row: u32, it: u32, k: u32) -> u32x4 {
    if k < item_vectors(fmt) {
        fetch_vec(fmt, w, cols, row, it, k)
    } else {
        u32x4::splat(0)
    }
}

/// Vector `k` of work item `it` of row `row` from a staged step that starts at vector `at`
/// of `stage` (relative to the row's vector indices); zero past the item's vectors.
#[crate::device]
fn staged_vec(stage: &[u32], at: u32, fmt: u32, cols: u32, row: u32, it: u32, k: u32) -> u32x4 {
    if k < item_vectors(fmt) {
        stage.load_vec::<4>(at + vec_index(fmt, cols, row, it, k))
    } else {
        u32x4::splat(0)
    }
}

/// The first row of the wavefront's next row group: `stride` rows on, or for a pair walked
/// row by row (`paired`), the pair's second row and then the next pair's first.
#[crate::device]
fn next_group(base: u32, paired: bool, stride: u32) -> u32 {
    if !paired {
        base + stride
    } else if base % 2 == 0 {
        base + 1
    } else {
        base - 1 + stride
    }
}

/// Finishes the pair of rows `(row, row + 1)` of a QKV product: rotates Q and K pairs by
/// RoPE at position `p` (GGUF Llama convention: adjacent pairs, angle
/// `p * base^(-2i/head_dim)`, from `rope_step = log2(base) / head_dim`), writes Q to `q`,
/// K and V into the caches (layout `[kv_head][ctx][head_dim]`); a Q pair goes to
/// `q[q_at..q_at + 2]`. Q, K and V start at head
/// boundaries (`Matvec::launch`), so the pair's offset `d` in its head is the same in its
/// own matrix, and its head's cache rows start at `cache_at + (head row - d) * ctx`: one
/// integer division per pair (`cache_at` is the sequence's first cache element: 0 for
/// a single sequence, its slot's start in a batch).
#[crate::device]
pub fn qkv_epilogue(
    row: u32,
    q_at: u32,
    a: f32,
    b: f32,
    q: &mut [f32],
    kc: &mut [f16],
    vc: &mut [f16],
    p: u32,
    rows_a: u32,
    q_rows: u32,
    head_dim: u32,
    ctx: u32,
    rope_step: f32,
    cache_at: u32,
) {
    let d = row % head_dim;
    if row >= rows_a {
        let at = cache_at + (row - rows_a - d) * ctx + p * head_dim + d;
        vc[at] = a as f16;
        vc[at + 1] = b as f16;
        return;
    }
    // The angle in half-turns, reduced exactly to [0, 2) before sinpi/cospi.
    let freq = exp2(-(d as f32) * rope_step);
    let turns = (p as f32) * freq * 0.15915494;
    let half_turns = 2.0 * (turns - floor(turns));
    let c = cospi(half_turns);
    let s = sinpi(half_turns);
    let ra = a * c - b * s;
    let rb = a * s + b * c;
    if row < q_rows {
        q[q_at] = ra;
        q[q_at + 1] = rb;
    } else {
        let at = cache_at + (row - q_rows - d) * ctx + p * head_dim + d;
        kc[at] = ra as f16;
        kc[at + 1] = rb as f16;
    }
}

/// How to launch `matvec`: formats, prologue, epilogue, rows per wavefront.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matvec {
    pub fmt: crate::quant::gpu::GpuFormat,
    /// Format of the second stacked matrix (the same as `fmt` when there is none).
    pub fmt_b: crate::quant::gpu::GpuFormat,
    pub norm: bool,
    pub epilogue: Epilogue,
    pub rows_per_wave: u32,
    /// Input vectors one launch reads each weight row once for (`NX`); more are launched
    /// in groups of this many.
    pub inputs: u32,
    /// Threads per block.
    pub block: u32,
    /// Resident blocks per compute unit the grid is sized for.
    pub blocks_per_unit: u32,
}

/// RoPE and KV-cache geometry for the `QKV` epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// Number of Q rows (n_head * head_dim) at the start of matrix A.
    pub q_rows: u32,
    pub head_dim: u32,
    /// Positions the caches hold.
    pub ctx: u32,
    /// RoPE frequency base.
    pub base: f32,
}

impl Rope {
    /// `log2(base) / head_dim`, computed in f64: the angle of pair `i` at position `p` is
    /// `p * 2^(-2i * step)` (0 without a head size).
    pub fn step(&self) -> f32 {
        if self.head_dim == 0 {
            0.0
        } else {
            ((self.base as f64).log2() / self.head_dim as f64) as f32
        }
    }
}

/// Threads per block of decode's products (`Matvec::new`); the batched ones use fewer, which
/// also keeps them off the kernel's staged path.
pub const DECODE_BLOCK: u32 = 1024;

/// Largest input length (row length) the kernel accepts: its int8 copy fills shared memory.
pub const XCAP: u32 = 16384;

/// The input vectors of a launch and, for the QKV epilogue, where each one's K and V go.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// Vectors in `x` (`cols` values each) and in `y`, one after another.
    pub n: u32,
    /// Each vector's cache slot and the elements per slot, or `None` for caches of one
    /// sequence.
    pub slots: Option<(&'a crate::runtime::Buffer<u32>, u32)>,
}

impl Inputs<'static> {
    /// One vector of one sequence (decode).
    pub const ONE: Inputs<'static> = Inputs { n: 1, slots: None };
}

/// Most input vectors a batched launch takes at once: eight sums per weight row and their
/// inputs' int8 copies (6 KB each at 4096 values) fit the registers and shared memory on
/// NVIDIA (up to 128 registers on sm_90); on gfx942 two (at four the vector registers of
/// the shared weight unpacking spill).
pub const MAX_INPUTS: u32 = 8;

impl Matvec {
    /// A product with the launch shape measured best on the H100: one row at a time per
    /// wavefront (the paired epilogues walk a pair's two rows in turn) in 1024-thread
    /// blocks, one per compute unit (every block repeats the prologue, so fewer, larger
    /// blocks repeat it less). Every product fits the registers this leaves (64 per thread
    /// on sm_90, at least four waves per SIMD on gfx942; `greta check`). Grids never exceed
    /// what the registers keep resident (see `grid`).
    pub fn new(fmt: crate::quant::gpu::GpuFormat, norm: bool, epilogue: Epilogue) -> Matvec {
        Matvec {
            fmt,
            fmt_b: fmt,
            norm,
            epilogue,
            rows_per_wave: 1,
            inputs: 1,
            block: DECODE_BLOCK,
            blocks_per_unit: 1,
        }
    }

    /// The product for batched steps: up to [`MAX_INPUTS`] vectors per launch, fewer where
    /// their shared copies of `cols` values would not fit `target`, in 512-thread blocks,
    /// which leave every thread the registers for a sum per input (the launch bounds of
    /// one block per compute unit at four waves per SIMD), two per compute unit where they
    /// fit (as many threads as decode's). A vector's results are the same whatever the
    /// launch's other vectors and their number, so the fit may differ between targets.
    pub fn batched(
        fmt: crate::quant::gpu::GpuFormat,
        norm: bool,
        epilogue: Epilogue,
        target: &crate::codegen::Target,
        cols: u32,
    ) -> Matvec {
        let mut mv = Matvec {
            inputs: if target.is_amd() {
                MAX_INPUTS / 4
            } else {
                MAX_INPUTS
            },
            block: 512,
            blocks_per_unit: 2,
            ..Matvec::new(fmt, norm, epilogue)
        };
        while mv.inputs > 1 && mv.shared_bytes(cols) > target.shared_bytes {
            mv.inputs /= 2;
        }
        mv
    }

    /// The same product for launches of `m` vectors: no more input slots than the next
    /// power of two of `m`, so that a lone vector's launch holds the registers and shared
    /// memory of one sum, not of eight. A vector's results do not depend on the slots.
    pub fn for_vectors(self, m: u32) -> Matvec {
        Matvec {
            inputs: self.inputs.min(m.max(1).next_power_of_two()),
            ..self
        }
    }

    /// Shared memory of the launch for rows of `cols` values.
    pub fn shared_bytes(&self, cols: u32) -> u32 {
        let xcap = self.xcap(cols);
        // Per input xq (a byte per value), dx and sx (a word per 32 values), s16 (a word
        // per 16) and the waves' norm shares (at most one per 32 threads).
        self.inputs * (xcap + xcap / 8 + xcap / 8 + xcap / 4 + 4 * (self.block / 32))
    }

    /// The shared input capacity for rows of `cols` values: fitted to the row length, so
    /// the prologue keeps no more of it in registers than it needs.
    fn xcap(&self, cols: u32) -> u32 {
        if self.fmt.code() <= super::dot::F16 {
            32
        } else {
            cols.next_multiple_of(4 * self.block)
        }
    }

    /// The specialisation values for rows of `cols` values, in the kernel's generic order.
    pub fn spec(&self, cols: u32) -> Vec<crate::codegen::SpecValue> {
        matvec::Spec {
            fmt: self.fmt.code(),
            fmt_b: self.fmt_b.code(),
            norm: self.norm as u32,
            epi: self.epilogue.code(),
            rows: self.rows_per_wave,
            nx: self.inputs,
            xcap: self.xcap(cols),
            block: self.block,
        }
        .values()
    }

    /// Blocks for `rows` rows of `cols` values: enough to fill the device once (at most
    /// `blocks_per_unit` per compute unit, and no more than its registers hold, so every
    /// block is resident), each striding over row groups so that the prologue is paid once
    /// per block, not once per row group.
    pub fn grid(
        &self,
        rows: u32,
        cols: u32,
        dev: &crate::runtime::Device,
    ) -> Result<u32, crate::runtime::Error> {
        let span = if self.epilogue.paired() {
            2
        } else {
            self.rows_per_wave
        };
        let per_block = self.block / dev.target().wave * span;
        let resident = dev.resident_blocks(matvec::definition(), &self.spec(cols))?;
        Ok(rows
            .div_ceil(per_block)
            .min(dev.compute_units() * self.blocks_per_unit.min(resident))
            .max(1))
    }

    /// Checks the shapes the kernel relies on, naming the problem. (`rope` is read only for
    /// the `QKV` epilogue.)
    pub fn check(
        &self,
        rows_a: u32,
        rows_b: u32,
        cols: u32,
        rope: Rope,
    ) -> Result<(), crate::runtime::Error> {
        let bad = |m: String| {
            Err(crate::runtime::Error::Launch {
                kernel: "matvec".into(),
                message: m,
            })
        };
        for f in [self.fmt, self.fmt_b] {
            if !(cols as usize).is_multiple_of(f.column_multiple()) {
                return bad(format!(
                    "{cols} columns is not a multiple of {} for {}",
                    f.column_multiple(),
                    f.ggml()
                ));
            }
        }
        if self.fmt.block_elems().max(64) != self.fmt_b.block_elems().max(64) && rows_b > 0 {
            return bad(format!(
                "stacked {} and {} matrices split rows differently",
                self.fmt.ggml(),
                self.fmt_b.ggml()
            ));
        }
        if self.fmt.code() > super::dot::F16 && cols > XCAP {
            return bad(format!(
                "{cols} columns exceed the shared input capacity {XCAP}"
            ));
        }
        if self.epilogue.paired()
            && (self.rows_per_wave != 1 || !rows_a.is_multiple_of(2) || !rows_b.is_multiple_of(2))
        {
            return bad(
                "paired epilogues need even row counts and one row per wavefront at a time".into(),
            );
        }
        if self.epilogue == Epilogue::Qkv
            && (rope.head_dim == 0
                || !rope.head_dim.is_multiple_of(2)
                || !rope.q_rows.is_multiple_of(rope.head_dim)
                || !rows_a.is_multiple_of(rope.head_dim)
                || !rows_b.is_multiple_of(rope.head_dim))
        {
            return bad(format!(
                "QKV rows ({} Q of {rows_a} in A, {rows_b} in B) are not whole heads of {} (an even size)",
                rope.q_rows, rope.head_dim
            ));
        }
        Ok(())
    }

    /// Launches on `dev` for `inputs`' vectors (in groups of `self.inputs`). Buffers an
    /// epilogue does not use may be any buffer of their type.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        dev: &crate::runtime::Device,
        wa: &crate::runtime::Buffer<u32>,
        wb: &crate::runtime::Buffer<u32>,
        x: &crate::runtime::Buffer<f32>,
        nw: &crate::runtime::Buffer<f32>,
        y: &mut crate::runtime::Buffer<f32>,
        cache: Option<(
            &mut crate::runtime::Buffer<half::f16>,
            &mut crate::runtime::Buffer<half::f16>,
            &crate::runtime::Buffer<u32>,
        )>,
        inputs: Inputs<'_>,
        rows_a: u32,
        rows_b: u32,
        cols: u32,
        eps: f32,
        rope: Rope,
    ) -> Result<(), crate::runtime::Error> {
        self.check(rows_a, rows_b, cols, rope)?;
        // Without the QKV epilogue the cache parameters are never touched: views of the
        // weights stand in for them.
        let (mut kc_view, mut vc_view, pos_view) = (
            wa.view::<half::f16>(),
            wb.view::<half::f16>(),
            wa.view::<u32>(),
        );
        let (kc, vc, pos) = match cache {
            Some((kc, vc, pos)) => (kc, vc, pos),
            None => (&mut kc_view, &mut vc_view, &pos_view),
        };
        let (slot, slot_len) = inputs.slots.unwrap_or((pos, 0));
        for x0 in (0..inputs.n).step_by(self.inputs as usize) {
            let n = self.inputs.min(inputs.n - x0);
            // A group of fewer vectors than `self.inputs` is launched for the next power of
            // two, not to multiply absent ones.
            let group = Matvec {
                inputs: n.next_power_of_two(),
                ..*self
            };
            let grid = group.grid(rows_a + rows_b, cols, dev)?;
            let spec = group.spec(cols);
            let args: Vec<crate::runtime::Arg<'_>> = vec![
                wa.into(),
                wb.into(),
                x.into(),
                nw.into(),
                (&mut *y).into(),
                (&mut *kc).into(),
                (&mut *vc).into(),
                pos.into(),
                slot.into(),
                rows_a.into(),
                rows_b.into(),
                cols.into(),
                eps.into(),
                rope.q_rows.into(),
                rope.head_dim.into(),
                rope.ctx.into(),
                rope.step().into(),
                slot_len.into(),
                x0.into(),
                n.into(),
            ];
            dev.launch(matvec::definition(), &spec, grid.into(), &args)?;
        }
        Ok(())
    }
}

/// The batched products of a Llama-2-7B Q4_K_M step on `target` (the serving engine's
/// launches): QKV with V in Q6_K or Q4_K, the attention output and down products (residual
/// add), gate/up with SwiGLU, and the output head in Q6_K.
pub fn batched_specs(target: &crate::codegen::Target) -> Vec<Vec<crate::codegen::SpecValue>> {
    use crate::quant::gpu::GpuFormat::{Q4K, Q6K};
    let batched =
        |fmt, norm, epilogue, cols| (Matvec::batched(fmt, norm, epilogue, target, cols), cols);
    [
        (
            Matvec {
                fmt_b: Q6K,
                ..Matvec::batched(Q4K, true, Epilogue::Qkv, target, 4096)
            },
            4096,
        ),
        batched(Q4K, true, Epilogue::Qkv, 4096),
        batched(Q4K, false, Epilogue::Add, 4096),
        batched(Q4K, true, Epilogue::Swiglu, 4096),
        batched(Q4K, false, Epilogue::Add, 11008),
        batched(Q6K, false, Epilogue::Add, 11008),
        batched(Q6K, true, Epilogue::Store, 4096),
    ]
    .iter()
    // And each at one vector a launch (a lone sequence's steps).
    .flat_map(|&(mv, cols)| [(mv, cols), (mv.for_vectors(1), cols)])
    .map(|(mv, cols)| mv.spec(cols))
    .collect()
}
