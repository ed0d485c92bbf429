//! Tiled matrix products on the matrix cores for prompts and batches: `Y = X · Wᵀ` with X
//! `m x k` f16 activations and W `n x k` GGUF weights (layout of `greta::quant::gpu`),
//! with the decode products' epilogues (store, residual add, SwiGLU, QKV with RoPE and
//! the KV-cache write).
//!
//! A block owns a `BM x BN` tile of Y and walks K in steps of one 64-value group. Each
//! step's activations are copied and its weights dequantised once into f16 tiles in shared
//! memory, two buffers deep: while the waves multiply one step from shared memory, the
//! loads of the next are in flight in registers, and are stored into the other buffer
//! after the products (one barrier per step). Each wave multiplies a `BM / WM` by
//! `BN / (waves / WM)` part of the tile with 16 x 16 fragments.

use super::dequant::{dequant_half, half_scale, half_vec, half_vectors, scale_vec, GROUP};
use super::matvec::{qkv_epilogue, ADD, QKV, STORE, SWIGLU};
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
/// Each step's activations and raw weight bytes (`RAW` vectors per half-group) are copied
/// into a ring of `STAGES` buffers without registers, `STAGES - 1` steps ahead; a step's
/// weights are dequantised into an f16 tile (two deep) while the previous one is
/// multiplied. The block's waves form `KS` slices that walk K's steps in turn (slice `s`
/// takes steps `s, s + KS, ..`), each with its own buffers, so that a few rows of X still
/// keep many loads in flight; their sums meet in shared memory before the epilogue. A
/// slice's `2 * BN` threads dequantise its weight rows (two per row) and its waves split
/// the tile `WM` ways along M. `k` is a multiple of 64 (and of the format's block), and
/// paired epilogues need two fragments per wave across N.
#[kernel(min_waves = 4)]
pub fn gemm<
    const FMT: u32,
    const EPI: u32,
    const BM: u32,
    const BN: u32,
    const WM: u32,
    const KS: u32,
    const STAGES: u32,
    const RAW: u32,
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
    // Each slice's ring of activations and raw weights, its two dequantised weight tiles,
    // then the slices' sums.
    let xs = shared!([f16; KS * STAGES * BM * LDS]);
    let raw = shared!([u32; KS * STAGES * 2 * BN * RAW * 4]);
    let ws = shared!([f16; KS * 2 * BN * LDS]);
    let sums = shared!([f32; max(1, (KS - 1) * BM * (BN + 4))]);
    // (Spelled out for one slice, so that nothing of the slicing remains in its code.)
    let slice = if KS == 1 { 0 } else { thread_idx() / (BLOCK / KS) };
    let st = if KS == 1 { thread_idx() } else { thread_idx() % (BLOCK / KS) };
    let slice_wave = if KS == 1 { wave_id() } else { wave_id() % (BLOCK / KS / WAVE) };
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
    // Rows past the ends of X and W read the last row instead: their results are never
    // stored, and the steps need no branches.
    let wrow = min(n0 + r, n - 1);
    let steps = k / GROUP;
    let rounds = (steps + KS - 1) / KS;
    let xring = slice * STAGES * BM * LDS;
    let rring = slice * STAGES * 2 * BN * RAW;
    let wtiles = slice * 2 * BN * LDS;
    let mine = rring + st * RAW;
    // Copies of this slice's step `t` (global step min(t * KS + slice, last)) into stage
    // t % STAGES, as one group; steps past the end repeat the last.
    for t in 0..STAGES - 1 {
        copy_step(FMT, x, w, xs, raw, min(t * KS + slice, steps - 1), (t % STAGES) * BM * LDS + xring, (t % STAGES) * 2 * BN * RAW + mine, st, m0, m, n, k, wrow, h, 2 * BN, BM, RAW);
        commit_copies();
    }
    wait_copies(STAGES - 2);
    dequant_staged(FMT, raw, mine, n, k, wrow, min(slice, steps - 1), h, ws, wtiles + slot * LDS, RAW);
    barrier();
    let mut acc = [frag_c::<f32>(); (BM / WM / 16) * (BN / (BLOCK / KS / WAVE / WM) / 16)];
    for t in 0..rounds {
        let ahead = t + STAGES - 1;
        copy_step(FMT, x, w, xs, raw, min(ahead * KS + slice, steps - 1), (ahead % STAGES) * BM * LDS + xring, (ahead % STAGES) * 2 * BN * RAW + mine, st, m0, m, n, k, wrow, h, 2 * BN, BM, RAW);
        commit_copies();
        if KS == 1 || t * KS + slice < steps {
            let xb = xring + (t % STAGES) * BM * LDS + wave_m * tm * LDS;
            let wb = wtiles + (t % 2) * BN * LDS + wave_n * tn * LDS;
            for kk in 0..GROUP / 16 {
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
        // The next step's copies (this thread's) have landed: its weights into the other
        // tile, read next round after the barrier.
        wait_copies(STAGES - 2);
        dequant_staged(
            FMT,
            raw,
            ((t + 1) % STAGES) * 2 * BN * RAW + mine,
            n,
            k,
            wrow,
            min((t + 1) * KS + slice, steps - 1),
            h,
            ws,
            wtiles + ((t + 1) % 2) * BN * LDS + slot * LDS,
            RAW,
        );
        barrier();
    }
    if KS > 1 {
        // Slices 1.. hand their sums to slice 0 through shared memory.
        if slice > 0 {
            for i in 0..BM / WM / 16 {
                for j in 0..BN / (BLOCK / KS / WAVE / WM) / 16 {
                    let at = (slice - 1) * BM * (BN + 4) + (wave_m * tm + 16 * i) * (BN + 4) + wave_n * tn + 16 * j;
                    sums.store_frag(at, BN + 4, acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j]);
                }
            }
        }
        barrier();
        if slice == 0 {
            for i in 0..BM / WM / 16 {
                for j in 0..BN / (BLOCK / KS / WAVE / WM) / 16 {
                    let mut f = acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j];
                    for e in 0..f.len() {
                        let at = (wave_m * tm + 16 * i + f.row(e)) * (BN + 4) + wave_n * tn + 16 * j + f.col(e);
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
        for j in 0..BN / (BLOCK / KS / WAVE / WM) / 16 / (1 + ((EPI == SWIGLU || EPI == QKV) as u32)) {
            let f = acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j];
            if EPI == SWIGLU || EPI == QKV {
                // The pair's odd row: the same element of the fragment half a part across.
                let odd = acc[i * (BN / (BLOCK / KS / WAVE / WM) / 16) + j + BN / (BLOCK / KS / WAVE / WM) / 32];
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

/// Starts the copies of step `g`: this thread's share of the activations (`BM` rows of
/// one 64-value group, 8 vectors each, over `threads` threads) into `xs` at element `xat`,
/// and its half-group's `raw_vectors` weight vectors into `raw` at vector `wat`.
#[crate::device]
fn copy_step(
    fmt: u32,
    x: &[f16],
    w: &[u32],
    xs: &mut [f16],
    raw: &mut [u32],
    g: u32,
    xat: u32,
    wat: u32,
    st: u32,
    m0: u32,
    m: u32,
    n: u32,
    k: u32,
    wrow: u32,
    h: u32,
    threads: u32,
    bm: u32,
    raw_vectors: u32,
) {
    for i in (st..bm * 8).step_by(threads) {
        xs.copy_vec_async(xat / 8 + (i / 8) * (LDS / 8) + i % 8, x, min(m0 + i / 8, m - 1) * (k / 8) + g * 8 + i % 8);
    }
    for v in 0..raw_vectors {
        let from = if v < half_vectors(fmt) {
            half_vec(fmt, k, wrow, g, h, v)
        } else {
            scale_vec(fmt, n, k, wrow, g, h, v - half_vectors(fmt))
        };
        raw.copy_vec_async(wat + v, w, from);
    }
}

/// Dequantises this thread's staged half-group (`raw` from vector `at`) of step `g` into
/// `tile` at element `tat`.
#[crate::device]
fn dequant_staged(
    fmt: u32,
    raw: &[u32],
    at: u32,
    n: u32,
    k: u32,
    wrow: u32,
    g: u32,
    h: u32,
    tile: &mut [f16],
    tat: u32,
    raw_vectors: u32,
) {
    let mut v = [u32x4::splat(0); 4];
    for j in 0..4 {
        if j < half_vectors(fmt) {
            v[j] = raw.load_vec::<4>(at + j);
        }
    }
    let hv = half_vectors(fmt);
    let s0 = if raw_vectors > hv { raw.load_vec::<4>(at + hv) } else { u32x4::splat(0) };
    let s1 = if raw_vectors > hv + 1 { raw.load_vec::<4>(at + hv + 1) } else { u32x4::splat(0) };
    let sw = half_scale(fmt, n, k, wrow, g, h, s0, s1);
    dequant_half(fmt, v[0], v[1], v[2], v[3], sw, g, h, tile, tat);
}

/// Raw 16-byte vectors of one half-group of `fmt` in the staging ring: its data vectors
/// and the vectors holding its scales (`half_vectors` and `scale_vectors` on the device).
pub fn raw_vectors(fmt: crate::quant::gpu::GpuFormat) -> u32 {
    use crate::quant::gpu::GpuFormat;
    match fmt {
        GpuFormat::F16 => 4,
        GpuFormat::Q8_0 => 3,
        GpuFormat::Q4_0 | GpuFormat::Q4_1 | GpuFormat::Q4K => 2,
        GpuFormat::Q6K => 5,
        GpuFormat::F32 => 0,
    }
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
    /// Buffers of each slice's copy ring (copies run `stages - 1` steps ahead).
    pub stages: u32,
}

/// How to launch `gemm`: the weight format, the epilogue and the tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    pub fmt: crate::quant::gpu::GpuFormat,
    pub epilogue: u32,
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

    /// `BMxBNxWMxKSxSTAGES`, e.g. `128x128x2x1x3`.
    fn from_str(s: &str) -> Result<Tile, String> {
        let bad = || format!("tile `{s}`: write BMxBNxWMxKSxSTAGES, e.g. 128x128x2x1x3");
        let v: Vec<u32> = s
            .split('x')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match v[..] {
            [bm, bn, wm, ks, stages] if bm > 0 && bn > 0 && wm > 0 && ks > 0 && stages >= 2 => {
                Ok(Tile { bm, bn, wm, ks, stages })
            }
            _ => Err(bad()),
        }
    }
}

impl Tile {
    /// The tile measured best on `target` for `m` rows of X: large tiles for prompts,
    /// small ones for a few rows (memory-bound: enough blocks across N to reach every
    /// compute unit).
    pub fn for_rows(target: &crate::codegen::Target, m: u32) -> Tile {
        let tile = |bm, bn, wm, ks, stages| Tile { bm, bn, wm, ks, stages };
        match (target.wave, m) {
            (64, 0..=32) => tile(32, 32, 1, 2, 2),
            (64, _) => tile(64, 64, 1, 1, 2),
            (_, 0..=32) => tile(32, 32, 2, 4, 4),
            (_, 33..=64) => tile(64, 32, 2, 2, 4),
            _ => tile(128, 128, 2, 1, 3),
        }
    }

    /// Threads per block.
    pub fn block(&self) -> u32 {
        2 * self.bn * self.ks
    }

    /// Bytes of shared memory `gemm` declares for this tile over `fmt` weights: the sum of
    /// its `shared!` arrays (a test holds this to the specialised kernel's own count).
    pub fn shared_bytes(&self, fmt: crate::quant::gpu::GpuFormat) -> u32 {
        let Tile { bm, bn, ks, stages, .. } = *self;
        let activations = 2 * ks * stages * bm * LDS;
        let raw = 4 * ks * stages * 2 * bn * raw_vectors(fmt) * 4;
        let weights = 2 * ks * 2 * bn * LDS;
        let sums = 4 * ((ks - 1) * bm * (bn + 4)).max(1);
        activations + raw + weights + sums
    }

    /// This tile, with fewer copy stages (down to 2), then fewer K slices, then half the
    /// columns and then half the rows until its shared memory for `fmt` fits `target`: a
    /// card with less shared memory than the one the tile was measured on loses depth
    /// before it loses shape.
    pub fn fitted(self, fmt: crate::quant::gpu::GpuFormat, target: &crate::codegen::Target) -> Tile {
        let mut t = self;
        while t.shared_bytes(fmt) > target.shared_bytes {
            if t.stages > 2 {
                t.stages -= 1;
            } else if t.ks > 1 {
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
        epilogue: u32,
        target: &crate::codegen::Target,
        m: u32,
    ) -> Gemm {
        Gemm {
            fmt,
            epilogue,
            tile: Tile::for_rows(target, m).fitted(fmt, target),
        }
    }

    /// The specialisation values, in the kernel's generic order.
    pub fn spec(&self) -> Vec<crate::codegen::SpecValue> {
        let t = self.tile;
        [
            self.fmt.code(),
            self.epilogue,
            t.bm,
            t.bn,
            t.wm,
            t.ks,
            t.stages,
            raw_vectors(self.fmt),
            t.block(),
        ]
            .map(|v| crate::codegen::SpecValue::Const(v as i128))
            .to_vec()
    }

    /// Checks the shapes the kernel relies on, naming the problem.
    pub fn check(&self, dev: &crate::runtime::Device, n: u32, k: u32) -> Result<(), crate::runtime::Error> {
        use crate::quant::gpu::GpuFormat;
        let bad = |m: String| {
            Err(crate::runtime::Error::Launch {
                kernel: "gemm".into(),
                message: m,
            })
        };
        if !matches!(
            self.fmt,
            GpuFormat::F16 | GpuFormat::Q8_0 | GpuFormat::Q4_0 | GpuFormat::Q4_1 | GpuFormat::Q4K | GpuFormat::Q6K
        ) {
            return bad(format!("{} weights are not supported (F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are)", self.fmt.ggml()));
        }
        let multiple = (self.fmt.column_multiple() as u32).max(64);
        if k == 0 || !k.is_multiple_of(multiple) {
            return bad(format!("{k} columns is not a positive multiple of {multiple} for {}", self.fmt.ggml()));
        }
        let t = self.tile;
        let waves = 2 * t.bn / dev.target().wave;
        let paired = matches!(self.epilogue, SWIGLU | QKV);
        let fragments_n = if waves.is_multiple_of(t.wm) { t.bn / (waves / t.wm) / 16 } else { 0 };
        if waves == 0
            || !waves.is_multiple_of(t.wm)
            || !t.bm.is_multiple_of(16 * t.wm)
            || fragments_n == 0
            || !(t.bm * 8).is_multiple_of(2 * t.bn)
            || t.block() > dev.target().max_block
            || (paired && fragments_n % 2 != 0)
        {
            return bad(format!("tile {t:?} does not divide into 16 x 16 fragments of {waves} waves per slice{}", if paired { " with two fragments per wave across N" } else { "" }));
        }
        if paired && !n.is_multiple_of(2) {
            return bad(format!("paired epilogues need an even row count, found {n}"));
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
            STORE | ADD => matches!(out, Output::F32(..)),
            SWIGLU => matches!(out, Output::F16(..)),
            _ => matches!(out, Output::Qkv { .. }),
        };
        if !expected {
            return Err(crate::runtime::Error::Launch {
                kernel: "gemm".into(),
                message: format!("epilogue {} takes another output", self.epilogue),
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
            rope: super::matvec::Rope { q_rows: 0, head_dim: 2, ctx: 1, base: 10000.0 },
            pos0: 0,
        };
        let (y, yh, kc, vc, ldy, rows): (Arg<'_>, Arg<'_>, Arg<'_>, Arg<'_>, u32, QkvRows) = match out {
            Output::F32(y, ldy) => (y.into(), (&mut f16_a).into(), (&mut f16_b).into(), (&mut f16_c).into(), ldy, none),
            Output::F16(yh, ldy) => ((&mut f32_view).into(), yh.into(), (&mut f16_b).into(), (&mut f16_c).into(), ldy, none),
            Output::Qkv { q, kc, vc, rows } => (q.into(), (&mut f16_a).into(), kc.into(), vc.into(), rows.rope.q_rows, rows),
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
            (GpuFormat::Q4K, QKV),
            (GpuFormat::Q4K, ADD),
            (GpuFormat::Q4K, SWIGLU),
            (GpuFormat::Q6K, QKV),
            (GpuFormat::Q6K, ADD),
        ] {
            add(Gemm::new(fmt, epi, target, m).spec());
        }
    }
    for fmt in [GpuFormat::Q4_0, GpuFormat::Q4_1, GpuFormat::Q8_0, GpuFormat::F16] {
        add(Gemm::new(fmt, STORE, target, 512).spec());
    }
    out
}
