//! Tiled matrix products on the matrix cores for prompts and batches: `Y = X · Wᵀ` with X
//! `m x k` f16 activations and W `n x k` GGUF weights (layout of `greta::quant::gpu`),
//! with the decode products' epilogues (store, residual add, SwiGLU, QKV with RoPE and
//! the KV-cache write).
//!
//! A block owns a `BM x BN` tile of Y and walks K in steps of one 64-value group. Each
//! step's activations and raw weight bytes are copied asynchronously into a ring of shared
//! buffers, several steps ahead; its weights are dequantised once into an f16 tile while
//! the waves multiply the previous step (one barrier per step). Each wave multiplies a
//! `BM / WM` by `BN / (waves / WM)` part of the tile with 16 x 16 fragments.

use super::dequant::{
    dequant_half, half_scale, half_vec, half_vectors, scale_vec, scale_vectors, GROUP,
};
use super::matvec::{qkv_epilogue, Epilogue, ADD, QKV, SWIGLU};
use crate::kernel;

/// Row stride of the shared tiles, in f16: a step of 64 values plus 8, so that the eight
/// rows one `ldmatrix` reads fall in distinct banks and every row starts at 16 bytes.
pub const LDS: u32 = 72;

/// `Y = X · Wᵀ` for the `BM x BN` tile of block (x, y), with epilogue `EPI` (`matvec`'s
/// codes): `STORE` / `ADD` write `y[row * ldy + col]` (f32); `SWIGLU` (interleaved
/// gate/up rows) writes `yh[row * ldy + col / 2]` (f16); `QKV` treats W's rows as rows
/// `row_base..` of the stacked Q, K, V matrices and writes rotated Q pairs to
/// `y[row * q_rows + col]` and K and V into the caches at position `pos0 + row`.
///
/// Shared tiles are two deep: while the waves multiply one step, the next step's
/// activations are copied into the other buffer asynchronously and its weights, loaded
/// into registers `AHEAD` steps before (1 or 2), are dequantised into the other weight
/// tile after `DQ` of the step's four 16-deep products (0 to 4), so that a wave's
/// dequantisation issues while its matrix products run. The block's waves
/// form `KS` slices that walk K's steps in turn (slice `s` takes steps `s, s + KS, ..`),
/// each with its own buffers, so that a few rows of X still keep many loads in flight;
/// their sums meet in shared memory before the epilogue. A slice's `2 * BN` threads
/// dequantise its weight rows (two per row) and its waves split the tile `WM` ways along
/// M. `k` is a multiple of 64 (and of the format's block), and paired epilogues need two
/// fragments per wave across N.
#[kernel(min_waves = 4)]
pub fn gemm<
    const FMT: u32,
    const EPI: u32,
    const BM: u32,
    const BN: u32,
    const WM: u32,
    const KS: u32,
    const DQ: u32,
    const AHEAD: u32,
    const BLOCK: u32,
>(
    x: &[f16],
    w: &[u32],
    y: &mut [f32],
    yh: &mut [f16],
    kc: &mut [f16],
    vc: &mut [f16],
    m: u32,
    n: u32,
    k: u32,
    ldy: u32,
    row_base: u32,
    rows_a: u32,
    q_rows: u32,
    head_dim: u32,
    ctx: u32,
    rope_step: f32,
    pos0: u32,
) {
    // Each slice's two buffers of activations and weights, then the slices' sums.
    let xs = shared!([f16; KS * 2 * BM * LDS]);
    let ws = shared!([f16; KS * 2 * BN * LDS]);
    let sums = shared!([f32; max(1, (KS - 1) * BM * (BN + 4))]);
    // (Spelled out for one slice, so that nothing of the slicing remains in its code.)
    let slice = if KS == 1 {
        0
    } else {
        thread_idx() / (BLOCK / KS)
    };
    let st = if KS == 1 {
        thread_idx()
    } else {
        thread_idx() % (BLOCK / KS)
    };
    let slice_wave = if KS == 1 {
        wave_id()
    } else {
        wave_id() % (BLOCK / KS / WAVE)
    };
    // This wave's part of the tile.
    let tm = BM / WM;
    let tn = BN / (BLOCK / KS / WAVE / WM);
    let m0 = block_idx() * BM;
    let n0 = block_idx_y() * BN;
    let wave_m = slice_wave % WM;
    let wave_n = slice_wave / WM;
    // This thread's half of one weight row's group, and the row's place in the tile: the
    // paired epilogues put each wave's even rows before its odd ones, so that the two rows
    // of a pair are the same element of two fragments, on every target's layout.
    let r = st / 2;
    let h = st % 2;
    let slot = if EPI == SWIGLU || EPI == QKV {
        (r / tn) * tn + (r % 2) * (tn / 2) + (r % tn) / 2
    } else {
        r
    };
    let steps = k / GROUP;
    let rounds = (steps + KS - 1) / KS;
    let xbase = slice * 2 * BM * LDS;
    let wbase = slice * 2 * BN * LDS;
    // Rows past the ends of X and W read the last row instead (but see the zeroed rows
    // below): their results are never stored, and the steps need no branches.
    let wrow = min(n0 + r, n - 1);
    // Tiles with K slices serve few rows, most of the tile past the end of X: those rows
    // are zeros in every buffer and the copies skip them. (Copying X's last row there had
    // every block read the same bytes, an L2 hot spot that made a product of 1 to 8 rows
    // 2-3x slower than one of 32.) The prompt tiles keep the copy without a branch: their
    // registers are spent, and only a prompt's last block has rows past the end.
    if KS > 1 && m0 + BM > m {
        for i in (thread_idx()..KS * 2 * BM * 8).step_by(BLOCK) {
            if m0 + (i / 8) % BM >= m {
                xs.store_vec((i / 8) * (LDS / 8) + i % 8, f16x8::splat(0.0));
            }
        }
    }
    // This slice's first step into its buffers 0 (a slice without one takes the last).
    let first = min(slice, steps - 1);
    copy_activations(x, xs, first, xbase, st, m0, m, k, BLOCK / KS, BM, KS > 1);
    commit_copies();
    // Two register sets of a half-group each: with `AHEAD` = 2 a step's weights are loaded
    // two rounds before they are dequantised, alternating sets; with 1, one round.
    let mut wv = [u32x4::splat(0); 12];
    for j in 0..6 {
        wv[j] = half_load(FMT, w, n, k, wrow, first, h, j);
    }
    if AHEAD == 2 {
        for j in 0..6 {
            wv[6 + j] = half_load(FMT, w, n, k, wrow, min(first + KS, steps - 1), h, j);
        }
    }
    wait_copies(0);
    dequant_loaded(
        FMT,
        wv[0],
        wv[1],
        wv[2],
        wv[3],
        wv[4],
        wv[5],
        n,
        k,
        wrow,
        first,
        h,
        ws,
        wbase + slot * LDS,
    );
    barrier();
    let mut acc = [frag_c::<f32>(); (BM / WM / 16) * (BN / (BLOCK / KS / WAVE / WM) / 16)];
    // Rounds go in pairs, so that the register set each uses is known when compiling.
    for pair in 0..(rounds + 1) / 2 {
        for half in 0..2 {
            let round = 2 * pair + half;
            if round < rounds {
                let g = round * KS + slice;
                // Steps past the end load (and store, into the buffer no one reads again)
                // the last step again rather than branch.
                let next_g = min(g + KS, steps - 1);
                copy_activations(
                    x,
                    xs,
                    next_g,
                    xbase + (1 - half) * BM * LDS,
                    st,
                    m0,
                    m,
                    k,
                    BLOCK / KS,
                    BM,
                    KS > 1,
                );
                commit_copies();
                let ahead_g = min(g + AHEAD * KS, steps - 1);
                for j in 0..6 {
                    wv[6 * ((half + AHEAD) % 2) + j] = half_load(FMT, w, n, k, wrow, ahead_g, h, j);
                }
                let xb = xbase + half * BM * LDS + wave_m * tm * LDS;
                let wb = wbase + half * BN * LDS + wave_n * tn * LDS;
                // The next step's weights go into the other tile (read after the barrier).
                let wt = wbase + ((1 - half) * BN + slot) * LDS;
                // One pass past the last product, for a dequantisation placed after them all.
                for kk in 0..GROUP / 16 + 1 {
                    if kk == DQ {
                        dequant_loaded(
                            FMT,
                            wv[6 * ((half + 1) % 2) + 0],
                            wv[6 * ((half + 1) % 2) + 1],
                            wv[6 * ((half + 1) % 2) + 2],
                            wv[6 * ((half + 1) % 2) + 3],
                            wv[6 * ((half + 1) % 2) + 4],
                            wv[6 * ((half + 1) % 2) + 5],
                            n,
                            k,
                            wrow,
                            next_g,
                            h,
                            ws,
                            wt,
                        );
                    }
                    if kk < GROUP / 16 && (KS == 1 || g < steps) {
                        let mut a = [frag_a::<f16>(); BM / WM / 16];
                        for i in 0..BM / WM / 16 {
                            a[i] = xs.load_a(xb + 16 * i * LDS + 16 * kk, LDS);
                        }
                        for j in 0..BN / (BLOCK / KS / WAVE / WM) / 16 {
                            let b = ws.load_b(wb + 16 * j * LDS + 16 * kk, LDS);
                            for i in 0..BM / WM / 16 {
                                acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j] =
                                    mma(a[i], b, acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j]);
                            }
                        }
                    }
                }
                wait_copies(0);
                barrier();
            }
        }
    }
    if KS > 1 {
        // Slices 1.. hand their sums to slice 0 through shared memory.
        if slice > 0 {
            for i in 0..BM / WM / 16 {
                for j in 0..BN / (BLOCK / KS / WAVE / WM) / 16 {
                    let at = (slice - 1) * BM * (BN + 4)
                        + (wave_m * tm + 16 * i) * (BN + 4)
                        + wave_n * tn
                        + 16 * j;
                    sums.store_frag(
                        at,
                        BN + 4,
                        acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j],
                    );
                }
            }
        }
        barrier();
        if slice == 0 {
            for i in 0..BM / WM / 16 {
                for j in 0..BN / (BLOCK / KS / WAVE / WM) / 16 {
                    let mut f = acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j];
                    for e in 0..f.len() {
                        let at = (wave_m * tm + 16 * i + f.row(e)) * (BN + 4)
                            + wave_n * tn
                            + 16 * j
                            + f.col(e);
                        for s in 1..KS {
                            f[e] += sums[(s - 1) * BM * (BN + 4) + at];
                        }
                    }
                    acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j] = f;
                }
            }
        }
    }
    if slice > 0 {
        return;
    }
    // Fragment (i, j) of this wave covers rows 16i.. and tile columns 16j.. of its part.
    for i in 0..BM / WM / 16 {
        for j in
            0..BN / (BLOCK / KS / WAVE / WM) / 16 / (1 + ((EPI == SWIGLU || EPI == QKV) as u32))
        {
            let f = acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j];
            if EPI == SWIGLU || EPI == QKV {
                // The pair's odd row: the same element of the fragment half a part across.
                let odd = acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16)
                    + j
                    + BN / (BLOCK / KS / WAVE / WM) / 32];
                for e in 0..f.len() {
                    let row = m0 + wave_m * tm + 16 * i + f.row(e);
                    let col = n0 + wave_n * tn + 2 * (16 * j + f.col(e));
                    if row < m && col < n {
                        let a = f[e];
                        let b = odd[e];
                        if EPI == SWIGLU {
                            yh[row * ldy + col / 2] = (a / (1.0 + exp(-a)) * b) as f16;
                        } else {
                            qkv_epilogue(
                                row_base + col,
                                row * q_rows + row_base + col,
                                a,
                                b,
                                y,
                                kc,
                                vc,
                                pos0 + row,
                                rows_a,
                                q_rows,
                                head_dim,
                                ctx,
                                rope_step,
                                0,
                            );
                        }
                    }
                }
            } else {
                for e in 0..f.len() {
                    let row = m0 + wave_m * tm + 16 * i + f.row(e);
                    let col = n0 + wave_n * tn + 16 * j + f.col(e);
                    if row < m && col < n {
                        if EPI == ADD {
                            y[row * ldy + col] += f[e];
                        } else {
                            y[row * ldy + col] = f[e];
                        }
                    }
                }
            }
        }
    }
}

/// Starts the asynchronous copies of this thread's share of step `g`'s activations (`bm`
/// rows of one 64-value group, 8 vectors each, over `threads` threads) into `xs` at
/// element `at`.
#[crate::device]
fn copy_activations(
    x: &[f16],
    xs: &mut [f16],
    g: u32,
    at: u32,
    st: u32,
    m0: u32,
    m: u32,
    k: u32,
    threads: u32,
    bm: u32,
    zeroed: bool,
) {
    for i in (st..bm * 8).step_by(threads) {
        if !zeroed || m0 + i / 8 < m {
            xs.copy_vec_async(
                at / 8 + (i / 8) * (LDS / 8) + i % 8,
                x,
                min(m0 + i / 8, m - 1) * (k / 8) + g * 8 + i % 8,
            );
        }
    }
}

/// Vector `j` of this thread's half of weight row `wrow`'s group `g`: its data vectors
/// (0..4), then the vectors holding its scales (4..6); zero past the format's own.
#[crate::device]
fn half_load(fmt: u32, w: &[u32], n: u32, k: u32, wrow: u32, g: u32, h: u32, j: u32) -> u32x4 {
    if j < 4 {
        if j < half_vectors(fmt) {
            return w.load_vec::<4>(half_vec(fmt, k, wrow, g, h, j));
        }
    } else if j - 4 < scale_vectors(fmt) {
        return w.load_vec::<4>(scale_vec(fmt, n, k, wrow, g, h, j - 4));
    }
    u32x4::splat(0)
}

/// Dequantises the half-group `half_load` loaded (`v0..v5`) into `tile` at element `at`.
#[crate::device]
fn dequant_loaded(
    fmt: u32,
    v0: u32x4,
    v1: u32x4,
    v2: u32x4,
    v3: u32x4,
    s0: u32x4,
    s1: u32x4,
    n: u32,
    k: u32,
    wrow: u32,
    g: u32,
    h: u32,
    tile: &mut [f16],
    at: u32,
) {
    let sw = half_scale(fmt, n, k, wrow, g, h, s0, s1);
    dequant_half(fmt, v0, v1, v2, v3, sw, g, h, tile, at);
}

/// A launch shape of `gemm`: the block's tile and its waves' arrangement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Rows of X (tokens) per block.
    pub bm: u32,
    /// Rows of W (output columns) per block; the block has `2 * bn` threads.
    pub bn: u32,
    /// Waves of a slice along M (the rest are along N).
    pub wm: u32,
    /// Slices of the block walking K's steps in turn.
    pub ks: u32,
    /// The 16-deep products of a step after which its waves dequantise the next step's
    /// weights (0 to 4).
    pub dequant_at: u32,
    /// Steps ahead that weights are loaded into registers (1 or 2).
    pub ahead: u32,
}

/// How to launch `gemm`: the weight format, the epilogue and the tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    pub fmt: crate::quant::gpu::GpuFormat,
    pub epilogue: Epilogue,
    pub tile: Tile,
}

/// Geometry of the `QKV` epilogue: where W's rows sit among the stacked Q, K, V rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QkvRows {
    /// The first row of this matrix in the stacked order (0 for Q+K, `rows_a` for V).
    pub row_base: u32,
    /// Q plus K rows.
    pub rows_a: u32,
    pub rope: super::matvec::Rope,
    /// The position of the first row of X.
    pub pos0: u32,
}

/// The output of a launch.
pub enum Output<'a> {
    /// `STORE` / `ADD`: f32 rows of `ldy` values.
    F32(&'a mut crate::runtime::Buffer<f32>, u32),
    /// `SWIGLU`: f16 rows of `ldy` values.
    F16(&'a mut crate::runtime::Buffer<half::f16>, u32),
    /// `QKV`: Q rows (f32, `q_rows` each) and the two caches.
    Qkv {
        q: &'a mut crate::runtime::Buffer<f32>,
        kc: &'a mut crate::runtime::Buffer<half::f16>,
        vc: &'a mut crate::runtime::Buffer<half::f16>,
        rows: QkvRows,
    },
}

impl std::str::FromStr for Tile {
    type Err = String;

    /// `BMxBNxWMxKSxDQxAHEAD`, e.g. `128x128x2x1x2x1`.
    fn from_str(s: &str) -> Result<Tile, String> {
        let bad = || {
            format!("tile `{s}`: write BMxBNxWMxKSxDQxAHEAD (DQ 0 to 4, AHEAD 1 or 2), e.g. 128x128x2x1x2x1")
        };
        let v: Vec<u32> = s
            .split('x')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match v[..] {
            [bm, bn, wm, ks, dequant_at, ahead]
                if bm > 0
                    && bn > 0
                    && wm > 0
                    && ks > 0
                    && dequant_at <= GROUP / 16
                    && (1..=2).contains(&ahead) =>
            {
                Ok(Tile {
                    bm,
                    bn,
                    wm,
                    ks,
                    dequant_at,
                    ahead,
                })
            }
            _ => Err(bad()),
        }
    }
}

impl Tile {
    /// The tile measured best on `target` for `m` rows of X of a product with `fmt`
    /// weights: large tiles for prompts, small ones for a few rows (memory-bound: enough
    /// blocks across N to reach every compute unit). On the H100 at 512 rows, Q4_K and F16
    /// weights gain from loading two steps ahead (Q4_K 3-11% per product, F16 1-7%) and
    /// Q6_K, whose dequantisation needs more registers, loses 18-27% by it.
    pub fn for_rows(
        target: &crate::codegen::Target,
        fmt: crate::quant::gpu::GpuFormat,
        m: u32,
    ) -> Tile {
        use crate::quant::gpu::GpuFormat;
        let prompt_ahead = if matches!(fmt, GpuFormat::Q4K | GpuFormat::F16) {
            2
        } else {
            1
        };
        let tile = |bm, bn, wm, ks, dequant_at, ahead| Tile {
            bm,
            bn,
            wm,
            ks,
            dequant_at,
            ahead,
        };
        match (target.wave, m) {
            (64, 0..=32) => tile(32, 32, 1, 2, 2, 1),
            (64, _) => tile(64, 128, 1, 1, 2, 1),
            (_, 0..=32) => tile(32, 32, 2, 8, 2, 1),
            (_, 33..=64) => tile(64, 32, 2, 4, 2, 1),
            _ => tile(128, 128, 2, 1, 2, prompt_ahead),
        }
    }

    /// Threads per block.
    pub fn block(&self) -> u32 {
        2 * self.bn * self.ks
    }

    /// Bytes of shared memory `gemm` declares for this tile: the sum of its `shared!`
    /// arrays (a test holds this to the specialised kernel's own count).
    pub fn shared_bytes(&self) -> u32 {
        let Tile { bm, bn, ks, .. } = *self;
        let activations = 2 * ks * 2 * bm * LDS;
        let weights = 2 * ks * 2 * bn * LDS;
        let sums = 4 * ((ks - 1) * bm * (bn + 4)).max(1);
        activations + weights + sums
    }

    /// This tile, with fewer K slices, then half the columns and then half the rows until
    /// its shared memory fits `target`: a card with less shared memory than the one the
    /// tile was measured on loses depth before it loses shape.
    pub fn fitted(self, target: &crate::codegen::Target) -> Tile {
        let mut t = self;
        while t.shared_bytes() > target.shared_bytes {
            if t.ks > 1 {
                t.ks /= 2;
            } else if t.bn > 32 {
                t.bn /= 2;
            } else if t.bm > 16 * t.wm {
                t.bm /= 2;
            } else {
                break;
            }
        }
        t
    }
}

impl Gemm {
    /// A product of `fmt` weights with `epilogue`, tiled for `m` rows on `target`.
    pub fn new(
        fmt: crate::quant::gpu::GpuFormat,
        epilogue: Epilogue,
        target: &crate::codegen::Target,
        m: u32,
    ) -> Gemm {
        Gemm {
            fmt,
            epilogue,
            tile: Tile::for_rows(target, fmt, m).fitted(target),
        }
    }

    /// The specialisation values, in the kernel's generic order.
    pub fn spec(&self) -> Vec<crate::codegen::SpecValue> {
        let t = self.tile;
        gemm::Spec {
            fmt: self.fmt.code(),
            epi: self.epilogue.code(),
            bm: t.bm,
            bn: t.bn,
            wm: t.wm,
            ks: t.ks,
            dq: t.dequant_at,
            ahead: t.ahead,
            block: t.block(),
        }
        .values()
    }

    /// Checks the shapes the kernel relies on, naming the problem.
    pub fn check(
        &self,
        dev: &crate::runtime::Device,
        n: u32,
        k: u32,
    ) -> Result<(), crate::runtime::Error> {
        let bad = |m: String| {
            Err(crate::runtime::Error::Launch {
                kernel: "gemm".into(),
                message: m,
            })
        };
        check_weights("gemm", self.fmt, k)?;
        let t = self.tile;
        let waves = 2 * t.bn / dev.target().wave;
        let paired = self.epilogue.paired();
        let fragments_n = if waves.is_multiple_of(t.wm) {
            t.bn / (waves / t.wm) / 16
        } else {
            0
        };
        if waves == 0
            || !waves.is_multiple_of(t.wm)
            || !t.bm.is_multiple_of(16 * t.wm)
            || fragments_n == 0
            || !(t.bm * 8).is_multiple_of(2 * t.bn)
            || t.block() > dev.target().max_block
            || (paired && fragments_n % 2 != 0)
        {
            return bad(format!(
                "tile {t:?} does not divide into 16 x 16 fragments of {waves} waves per slice{}",
                if paired {
                    " with two fragments per wave across N"
                } else {
                    ""
                }
            ));
        }
        if paired && !n.is_multiple_of(2) {
            return bad(format!(
                "paired epilogues need an even row count, found {n}"
            ));
        }
        Ok(())
    }

    /// `Y = X · Wᵀ` for `m` rows of `x` (`m x k` f16) and the `n x k` weights `w`.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        dev: &crate::runtime::Device,
        x: &crate::runtime::Buffer<half::f16>,
        w: &crate::runtime::Buffer<u32>,
        out: Output<'_>,
        m: u32,
        n: u32,
        k: u32,
    ) -> Result<(), crate::runtime::Error> {
        use crate::runtime::{Arg, Grid};
        self.check(dev, n, k)?;
        let grid = Grid {
            x: m.div_ceil(self.tile.bm),
            y: n.div_ceil(self.tile.bn),
            z: 1,
        };
        let expected = match self.epilogue {
            Epilogue::Store | Epilogue::Add => matches!(out, Output::F32(..)),
            Epilogue::Swiglu => matches!(out, Output::F16(..)),
            Epilogue::Qkv => matches!(out, Output::Qkv { .. }),
        };
        if !expected {
            return Err(crate::runtime::Error::Launch {
                kernel: "gemm".into(),
                message: format!("epilogue {:?} takes another output", self.epilogue),
            });
        }
        // Outputs an epilogue does not write are stood in for by views of the weights.
        let mut f32_view = w.view::<f32>();
        let mut f16_a = w.view::<half::f16>();
        let mut f16_b = w.view::<half::f16>();
        let mut f16_c = w.view::<half::f16>();
        let none = QkvRows {
            row_base: 0,
            rows_a: 0,
            rope: super::matvec::Rope {
                q_rows: 0,
                head_dim: 2,
                ctx: 1,
                base: 10000.0,
            },
            pos0: 0,
        };
        let (y, yh, kc, vc, ldy, rows): (Arg<'_>, Arg<'_>, Arg<'_>, Arg<'_>, u32, QkvRows) =
            match out {
                Output::F32(y, ldy) => (
                    y.into(),
                    (&mut f16_a).into(),
                    (&mut f16_b).into(),
                    (&mut f16_c).into(),
                    ldy,
                    none,
                ),
                Output::F16(yh, ldy) => (
                    (&mut f32_view).into(),
                    yh.into(),
                    (&mut f16_b).into(),
                    (&mut f16_c).into(),
                    ldy,
                    none,
                ),
                Output::Qkv { q, kc, vc, rows } => (
                    q.into(),
                    (&mut f16_a).into(),
                    kc.into(),
                    vc.into(),
                    rows.rope.q_rows,
                    rows,
                ),
            };
        dev.launch(
            gemm::definition(),
            &self.spec(),
            grid,
            &[
                x.into(),
                w.into(),
                y,
                yh,
                kc,
                vc,
                m.into(),
                n.into(),
                k.into(),
                ldy.into(),
                rows.row_base.into(),
                rows.rows_a.into(),
                rows.rope.q_rows.into(),
                rows.rope.head_dim.into(),
                rows.rope.ctx.into(),
                rows.rope.step().into(),
                rows.pos0.into(),
            ],
        )
    }
}

/// The specialisations the tools build for `target`: the Llama-2 Q4_K_M products (every
/// epilogue in Q4_K, QKV and the residual add in Q6_K) at each tile the target uses, and a
/// store in every other format at the prompt tile.
pub fn builtin_specs(target: &crate::codegen::Target) -> Vec<Vec<crate::codegen::SpecValue>> {
    use crate::quant::gpu::GpuFormat;
    let mut out: Vec<Vec<crate::codegen::SpecValue>> = Vec::new();
    let mut add = |spec| {
        if !out.contains(&spec) {
            out.push(spec);
        }
    };
    for m in [512, 64, 16] {
        for (fmt, epi) in [
            (GpuFormat::Q4K, Epilogue::Qkv),
            (GpuFormat::Q4K, Epilogue::Add),
            (GpuFormat::Q4K, Epilogue::Swiglu),
            (GpuFormat::Q6K, Epilogue::Qkv),
            (GpuFormat::Q6K, Epilogue::Add),
        ] {
            add(Gemm::new(fmt, epi, target, m).spec());
        }
    }
    for fmt in [
        GpuFormat::Q4_0,
        GpuFormat::Q4_1,
        GpuFormat::Q8_0,
        GpuFormat::F16,
    ] {
        add(Gemm::new(fmt, Epilogue::Store, target, 512).spec());
    }
    out
}

/// Refuses weights the matrix-core products (`gemm`, `skinny`) cannot read: a format they
/// do not dequantise, or rows that are not whole 64-value groups of whole blocks.
pub fn check_weights(
    kernel: &str,
    fmt: crate::quant::gpu::GpuFormat,
    k: u32,
) -> Result<(), crate::runtime::Error> {
    use crate::quant::gpu::GpuFormat;
    let bad = |message: String| {
        Err(crate::runtime::Error::Launch {
            kernel: kernel.into(),
            message,
        })
    };
    if !matches!(
        fmt,
        GpuFormat::F16
            | GpuFormat::Q8_0
            | GpuFormat::Q4_0
            | GpuFormat::Q4_1
            | GpuFormat::Q4K
            | GpuFormat::Q6K
    ) {
        return bad(format!(
            "{} weights are not supported (F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are)",
            fmt.ggml()
        ));
    }
    let multiple = (fmt.column_multiple() as u32).max(super::dequant::GROUP);
    if k == 0 || !k.is_multiple_of(multiple) {
        return bad(format!(
            "{k} columns is not a positive multiple of {multiple} for {}",
            fmt.ggml()
        ));
    }
    Ok(())
}
