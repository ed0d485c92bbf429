//! Products of a few rows on the matrix cores, for batched decode: `Y = X · Wᵀ` with X
//! `m x k` f16 activations (m up to a few dozen) and W `n x k` GGUF weights in the layout
//! of `greta::quant::gpu`, with the store, residual-add and SwiGLU epilogues.
//!
//! At a few rows a product is a stream of weights, so nothing here waits on a block
//! barrier until the end: every wave loads its weight bytes straight into registers,
//! dequantises them there into A fragments (16 weight rows each) and multiplies them with
//! B fragments of 16 tokens loaded from global memory (the activations stay in L2). The
//! block's waves split K: wave `w` takes the 64-value groups `w, w + waves, ..`, and their
//! sums meet in shared memory, added in wave order, before the epilogue.
//!
//! K is permuted within each group so that a lane's values of a weight row are whole bytes
//! it loads at once: the lane of part `p` of K (`frag.part()`) holds the group's positions
//! `8p..8p + 8` and `32 + 8p..32 + 8p + 8` (in every format, the bytes `8p..8p + 8` of the
//! group's runs), and step `j` (0..4) of the group multiplies position
//! `32 (j / 2) + 8p + 4 (j % 2) + σ(frag.slot(i))` as element `i`, with σ = (0, 2, 1, 3):
//! the two slots that share a register come from bytes `e` and `e + 2` of a word, 16 bits
//! apart, so one shift and mask puts both levels into the halves of a word and two packed
//! f16 multiply-adds (`hfma2`) scale them, two instructions a weight. A and B take the
//! same permutation, so each product still pairs every weight with its own activation.
//!
//! A token's sums are formed in the same order whatever `m` is and whatever the other
//! tokens hold: batched equals alone exactly at every batch size.

use super::dequant::{word, GROUP};
use super::dot::{f16_hi, f16_lo, q4k_group_scales, sbyte, scale_shift, scale_word, F16};
use super::dot::{Q4K, Q4_0, Q4_1, Q6K, Q8_0};
use super::matvec::{Epilogue, ADD, SWIGLU};
use crate::{device, kernel};

/// `Y = X · Wᵀ` for weight rows `16 NW` from block `x` and tokens `16 NT` from block `y`,
/// each wave loading `DEPTH` of its groups at a time, with epilogue `EPI` (`matvec`'s codes): `STORE` / `ADD` write `y[token * ldy + row]`,
/// `SWIGLU` (interleaved gate/up rows) writes `yh[token * ldy + row / 2]` (f16). `k` is a
/// multiple of 64 and of the format's block.
#[kernel(min_waves = 4)]
pub fn skinny<
    const FMT: u32,
    const EPI: u32,
    const NW: u32,
    const NT: u32,
    const DEPTH: u32,
    const BLOCK: u32,
>(
    x: &[f16],
    w: &[u32],
    y: &mut [f32],
    yh: &mut [f16],
    m: u32,
    n: u32,
    k: u32,
    ldy: u32,
) {
    let waves = BLOCK / WAVE;
    // Each wave's sums: 16 NW weight rows of 16 NT tokens (4 more, for the banks).
    let ld = 16 * NT + 4;
    let sums = shared!([f32; BLOCK / WAVE * 16 * NW * (16 * NT + 4)]);
    let n0 = block_idx() * 16 * NW;
    let t0 = block_idx_y() * 16 * NT;
    let a0 = frag_a::<f16>();
    let b0 = frag_b::<f16>();
    let pa = a0.part();
    let pb = b0.part();
    let mut acc = [frag_c::<f32>(); NW * NT];
    let groups = k / GROUP;
    // `DEPTH` groups at a time: all their loads are issued before the first product.
    for g0 in (wave_id()..groups).step_by(DEPTH * waves) {
        // For each group, the lane's bytes of each of its weight rows (64 / WAVE per
        // fragment) with the scales of the group's two runs, and of each of its token rows.
        // (Row `line` of fragment `f` of group `u` sits at `(u * NW + f) * LINES + line`,
        // spelled out in each index so that it folds to a constant when unrolled.)
        let mut wd = [u32x4::splat(0); DEPTH * 2 * NW * (64 / WAVE)];
        let mut ws = [u32x4::splat(0); DEPTH * NW * (64 / WAVE)];
        let mut xd = [f16x8::splat(0.0); DEPTH * 2 * NT * (64 / WAVE)];
        for u in 0..DEPTH {
            // Past the last group, the last one is loaded again and not multiplied.
            let g = min(g0 + u * waves, groups - 1);
            for f in 0..NW {
                for i in 0..a0.len() {
                    if a0.slot(i) == 0 {
                        let row = min(n0 + 16 * f + a0.row(i), n - 1);
                        wd[2 * ((u * NW + f) * (64 / WAVE) + a0.line(i))] =
                            lane_bytes(FMT, w, k, row, g, pa, 0);
                        wd[2 * ((u * NW + f) * (64 / WAVE) + a0.line(i)) + 1] =
                            lane_bytes(FMT, w, k, row, g, pa, 1);
                        ws[(u * NW + f) * (64 / WAVE) + a0.line(i)] =
                            lane_scales(FMT, w, n, k, row, g, pa);
                    }
                }
            }
            for f in 0..NT {
                for i in 0..b0.len() {
                    if b0.slot(i) == 0 {
                        let token = t0 + 16 * f + b0.row(i);
                        for h in 0..2 {
                            xd[2 * ((u * NT + f) * (64 / WAVE) + b0.line(i)) + h] =
                                token_values(x, m, k, token, g, pb, h);
                        }
                    }
                }
            }
        }
        for u in 0..DEPTH {
            let g = g0 + u * waves;
            if g < groups {
                for j in 0..GROUP / 16 {
                    let mut a = [frag_a::<f16>(); NW];
                    for f in 0..NW {
                        let mut af = frag_a::<f16>();
                        // Slots 2q and 2q + 1 of a line: one word of two levels, scaled.
                        for i in 0..a0.len() {
                            if a0.slot(i) % 2 == 0 {
                                let pair = lane_pair(
                                    FMT,
                                    wd[2 * ((u * NW + f) * (64 / WAVE) + a0.line(i))],
                                    wd[2 * ((u * NW + f) * (64 / WAVE) + a0.line(i)) + 1],
                                    j,
                                    a0.slot(i) / 2,
                                    pa,
                                    g,
                                );
                                let v = ws[(u * NW + f) * (64 / WAVE) + a0.line(i)];
                                let h = if FMT == F16 {
                                    pair
                                } else {
                                    hfma2(
                                        hfma2(pair, ONE_PAIR, level_bias(FMT)),
                                        v[2 * (j / 2)],
                                        v[2 * (j / 2) + 1],
                                    )
                                };
                                af[i] = f16::from_bits((h & 0xffff) as u16);
                                af[i + 1] = f16::from_bits((h >> 16) as u16);
                            }
                        }
                        a[f] = af;
                    }
                    for f in 0..NT {
                        let mut b = frag_b::<f16>();
                        for i in 0..b0.len() {
                            b[i] = xd[2 * ((u * NT + f) * (64 / WAVE) + b0.line(i)) + j / 2]
                                [4 * (j % 2) + 2 * (b0.slot(i) % 2) + b0.slot(i) / 2];
                        }
                        for e in 0..NW {
                            acc[e * NT + f] = mma(a[e], b, acc[e * NT + f]);
                        }
                    }
                }
            }
        }
    }
    // Fragment (e, f) holds weight rows 16e.. (its rows) of tokens 16f.. (its columns).
    for e in 0..NW {
        for f in 0..NT {
            let at = (wave_id() * 16 * NW + 16 * e) * ld + 16 * f;
            sums.store_frag(at, ld, acc[e * NT + f]);
        }
    }
    barrier();
    // Each thread finishes outputs (token, row), or (token, gate/up pair), in turn.
    let per = if EPI == SWIGLU { 2 } else { 1 };
    for o in (thread_idx()..16 * NW * 16 * NT / per).step_by(BLOCK) {
        let c = o % (16 * NT);
        let r = per * (o / (16 * NT));
        let mut s = 0.0;
        let mut s2 = 0.0;
        for wv in 0..waves {
            s += sums[(wv * 16 * NW + r) * ld + c];
            if EPI == SWIGLU {
                s2 += sums[(wv * 16 * NW + r + 1) * ld + c];
            }
        }
        let row = n0 + r;
        let token = t0 + c;
        if row < n && token < m {
            if EPI == SWIGLU {
                yh[token * ldy + row / 2] = (s / (1.0 + exp(-s)) * s2) as f16;
            } else if EPI == ADD {
                y[token * ldy + row] += s;
            } else {
                y[token * ldy + row] = s;
            }
        }
    }
}

/// Vector `v` (0 or 1) of the lane's bytes of group `g` of weight row `row` for part `p`
/// of K: the bytes `8p..8p + 8` of the group's runs, as `lane_level` reads them.
#[device]
fn lane_bytes(fmt: u32, w: &[u32], k: u32, row: u32, g: u32, p: u32, v: u32) -> u32x4 {
    if fmt == F16 {
        // Positions 8p.. (vector 0) and 32 + 8p.. (vector 1), eight f16 each.
        return w.load_vec::<4>(row * (k / 8) + 8 * g + p + 4 * v);
    }
    if v == 1 {
        if fmt == Q6K {
            // The high bits of both runs: `qh` bytes 8p.. of the group's half.
            let sb = row * (k / 256) + g / 4;
            let qh = w.load_vec::<2>(sb * 26 + 16 + 4 * ((g % 4) / 2) + p);
            return u32x4::new(qh[0], qh[1], 0, 0);
        }
        return u32x4::splat(0);
    }
    let sb = row * (k / 256) + g / 4;
    if fmt == Q4K {
        // Low nibbles: positions 8p..; high ones: 32 + 8p.. (one load).
        let qs = w.load_vec::<2>(sb * 18 + 2 + 4 * (g % 4) + p);
        return u32x4::new(qs[0], qs[1], 0, 0);
    }
    if fmt == Q6K {
        // `ql` bytes 8p.. of the two runs (nibble g % 2 of each).
        let at = sb * 26 + 8 * ((g % 4) / 2) + p;
        let lo = w.load_vec::<2>(at);
        let hi = w.load_vec::<2>(at + 4);
        return u32x4::new(lo[0], lo[1], hi[0], hi[1]);
    }
    let b = row * (k / 32) + 2 * g;
    if fmt == Q8_0 {
        // Blocks 2g and 2g + 1: bytes 8p.. of each.
        let lo = w.load_vec::<2>(4 * b + p);
        let hi = w.load_vec::<2>(4 * (b + 1) + p);
        return u32x4::new(lo[0], lo[1], hi[0], hi[1]);
    }
    // Q4_0, Q4_1: a block's value i sits in nibble i / 16 of byte i % 16, so positions
    // 8p.. are nibble p / 2 of bytes 8 (p % 2)...
    let lo = w.load_vec::<2>(2 * b + p % 2);
    let hi = w.load_vec::<2>(2 * (b + 1) + p % 2);
    u32x4::new(lo[0], lo[1], hi[0], hi[1])
}

/// 1.0 in both halves of a word.
const ONE_PAIR: u32 = 0x3c00_3c00;

/// Slots `2q` and `2q + 1` of step `j` from the lane's bytes `d0`, `d1` (`lane_bytes`), as
/// the halves of a word: f16 weights as they are, and levels `l` of the other formats as
/// the f16 `1024 + l` (the level ORed into the mantissa of 1024), which `level_bias` turns
/// back into the level, exactly. The slots are positions `q` and `q + 2` of the step.
#[device]
fn lane_pair(fmt: u32, d0: u32x4, d1: u32x4, j: u32, q: u32, p: u32, g: u32) -> u32 {
    let run = j / 2;
    let wd = j % 2;
    if fmt == F16 {
        // Vector `run`, f16 numbers 4 (j % 2) + q and + 2: half q of two words.
        let v = if run == 0 { d0 } else { d1 };
        let lo = (word(v, 2 * wd) >> (16 * q)) & 0xffff;
        return lo | (((word(v, 2 * wd + 1) >> (16 * q)) & 0xffff) << 16);
    }
    if fmt == Q8_0 {
        // Bytes q and q + 2 of the signed bytes, offset by 128 into 0..256.
        return ((word(d0, 2 * run + wd) >> (8 * q)) & 0x00ff_00ff) ^ 0x6480_6480;
    }
    if fmt == Q4K {
        return ((word(d0, wd) >> (8 * q + 4 * run)) & 0x000f_000f) | 0x6400_6400;
    }
    if fmt == Q6K {
        let lo = (word(d0, 2 * run + wd) >> (8 * q + 4 * (g % 2))) & 0x000f_000f;
        let hi = (word(d1, wd) >> (8 * q + 4 * (g % 2) + 2 * run)) & 0x0003_0003;
        return lo | (hi << 4) | 0x6400_6400;
    }
    // Q4_0, Q4_1.
    ((word(d0, 2 * run + wd) >> (8 * q + 4 * (p / 2))) & 0x000f_000f) | 0x6400_6400
}

/// What `lane_pair`'s halves take away to give the signed level in both halves: 1024 and
/// the format's offset (Q6_K's 32, Q4_0's 8, Q8_0's 128).
#[device]
fn level_bias(fmt: u32) -> u32 {
    let offset = if fmt == Q6K {
        32
    } else if fmt == Q4_0 {
        8
    } else if fmt == Q8_0 {
        128
    } else {
        0
    };
    // -(1024 + offset) as f16: sign, the exponent of 1024, the offset in the mantissa.
    (0xe400 + offset) * 0x0001_0001
}

/// `x` rounded to f16, in both halves of a word.
#[device]
fn pair(x: f32) -> u32 {
    bitcast::<u32>(f16x2::new(x as f16, x as f16))
}

/// The scales of the lane's two runs of group `g` of row `row` (a row of an `n x k`
/// matrix), each as a word of two equal f16: a value is `s[2 run] * level + s[2 run + 1]`.
#[device]
fn lane_scales(fmt: u32, w: &[u32], n: u32, k: u32, row: u32, g: u32, p: u32) -> u32x4 {
    if fmt == F16 {
        return u32x4::splat(0);
    }
    if fmt == Q4K {
        let sb = row * (k / 256) + g / 4;
        let head = w.load_vec::<4>(sb * 9);
        let sm = q4k_group_scales(head[1], head[2], head[3], g % 4);
        let d = f16_lo(head[0]);
        let dmin = f16_hi(head[0]);
        return u32x4::new(
            pair(d * ((sm & 0xff) as f32)),
            pair(-dmin * (((sm >> 16) & 0xff) as f32)),
            pair(d * (((sm >> 8) & 0xff) as f32)),
            pair(-dmin * ((sm >> 24) as f32)),
        );
    }
    if fmt == Q6K {
        // The sixteen-value scales 8n + p / 2 + 2r and + 2 (runs r = 2 (g % 2) and r + 1 of
        // half n) share one word of the record's scales.
        let sb = row * (k / 256) + g / 4;
        let d = f16_lo(w[scale_word(fmt, n, k, row, g)] >> scale_shift(fmt, k, row, g));
        let sc = w[sb * 52 + 48 + 2 * ((g % 4) / 2) + g % 2] >> (8 * (p / 2));
        return u32x4::new(
            pair(d * (sbyte(sc, 0) as f32)),
            0,
            pair(d * (sbyte(sc, 2) as f32)),
            0,
        );
    }
    // Blocks 2g and 2g + 1: their f16 scales are the words' low halves already.
    let it = 2 * g;
    let w0 = w[scale_word(fmt, n, k, row, it)] >> scale_shift(fmt, k, row, it);
    let w1 = w[scale_word(fmt, n, k, row, it + 1)] >> scale_shift(fmt, k, row, it + 1);
    let d0 = (w0 & 0xffff) * 0x0001_0001;
    let d1 = (w1 & 0xffff) * 0x0001_0001;
    if fmt == Q4_1 {
        u32x4::new(d0, (w0 >> 16) * 0x0001_0001, d1, (w1 >> 16) * 0x0001_0001)
    } else {
        u32x4::new(d0, 0, d1, 0)
    }
}

/// Vector `h` of token `token`'s activations for part `p` of group `g` (positions
/// `32h + 8p..32h + 8p + 8`), zeros past the last token.
#[device]
fn token_values(x: &[f16], m: u32, k: u32, token: u32, g: u32, p: u32, h: u32) -> f16x8 {
    if token >= m {
        return f16x8::splat(0.0);
    }
    x.load_vec::<8>(token * (k / 8) + 8 * g + 4 * h + p)
}

/// A launch shape of `skinny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// 16-row weight fragments per wave (a block takes `16 nw` rows).
    pub nw: u32,
    /// 16-token fragments per wave (a block takes `16 nt` tokens).
    pub nt: u32,
    /// Waves per block, splitting K.
    pub waves: u32,
    /// Groups each wave loads at a time (their loads in flight together).
    pub depth: u32,
}

/// How to launch `skinny`: the weight format, the epilogue and the shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skinny {
    pub fmt: crate::quant::gpu::GpuFormat,
    pub epilogue: Epilogue,
    pub shape: Shape,
}

impl Shape {
    /// The shape for `m` tokens of a product of `fmt` weights on `target`: 512 threads
    /// per block, tokens in blocks of 16 up to 16 rows and of 32 above, 32 weight rows per
    /// block with two groups in flight per wave at 16 tokens and one at 32 (a second would
    /// spill on sm_90; so would it for Q4_0, Q4_1, Q8_0 and Q6_K on sm_86 at 16 tokens, which
    /// take one; Q6_K at 32 tokens takes 16 weight rows, whose 32 spill on sm_80).
    pub fn for_rows(
        target: &crate::codegen::Target,
        fmt: crate::quant::gpu::GpuFormat,
        m: u32,
    ) -> Shape {
        let nt = if m <= 16 { 1 } else { 2 };
        use crate::quant::gpu::GpuFormat;
        let light = matches!(fmt, GpuFormat::Q4K | GpuFormat::F16);
        Shape {
            nw: if fmt == GpuFormat::Q6K && nt == 2 {
                1
            } else {
                2
            },
            nt,
            waves: 512 / target.wave,
            depth: if nt == 1 && light { 2 } else { 1 },
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// `NWxNTxWAVESxDEPTH`, e.g. `2x2x16x2`.
    fn from_str(s: &str) -> Result<Shape, String> {
        let bad = || format!("skinny shape `{s}`: write NWxNTxWAVESxDEPTH, e.g. 2x2x16x2");
        let v: Vec<u32> = s
            .split('x')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match v[..] {
            [nw, nt, waves, depth] if nw > 0 && nt > 0 && waves > 0 && depth > 0 => Ok(Shape {
                nw,
                nt,
                waves,
                depth,
            }),
            _ => Err(bad()),
        }
    }
}

impl Skinny {
    /// A product of `fmt` weights with `epilogue` for `m` tokens on `target`.
    pub fn new(
        fmt: crate::quant::gpu::GpuFormat,
        epilogue: Epilogue,
        target: &crate::codegen::Target,
        m: u32,
    ) -> Skinny {
        Skinny {
            fmt,
            epilogue,
            shape: Shape::for_rows(target, fmt, m),
        }
    }

    /// Threads per block on `target`.
    pub fn block(&self, target: &crate::codegen::Target) -> u32 {
        self.shape.waves * target.wave
    }

    /// The specialisation values on `target`, in the kernel's generic order.
    pub fn spec(&self, target: &crate::codegen::Target) -> Vec<crate::codegen::SpecValue> {
        skinny::Spec {
            fmt: self.fmt.code(),
            epi: self.epilogue.code(),
            nw: self.shape.nw,
            nt: self.shape.nt,
            depth: self.shape.depth,
            block: self.block(target),
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
                kernel: "skinny".into(),
                message: m,
            })
        };
        super::gemm::check_weights("skinny", self.fmt, k)?;
        if self.epilogue == Epilogue::Qkv {
            return bad("the QKV epilogue is not supported (store, add and SwiGLU are)".into());
        }
        let target = dev.target();
        if self.block(&target) > target.max_block {
            return bad(format!(
                "{} waves of {} lanes exceed the block limit of {} threads",
                self.shape.waves, target.wave, target.max_block
            ));
        }
        if self.epilogue == Epilogue::Swiglu && !n.is_multiple_of(2) {
            return bad(format!("SwiGLU needs an even row count, found {n}"));
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
        out: super::gemm::Output<'_>,
        m: u32,
        n: u32,
        k: u32,
    ) -> Result<(), crate::runtime::Error> {
        use super::gemm::Output;
        use crate::runtime::{Arg, Grid};
        self.check(dev, n, k)?;
        // Outputs an epilogue does not write are stood in for by views of the weights.
        let mut f32_view = w.view::<f32>();
        let mut f16_view = w.view::<half::f16>();
        let (y, yh, ldy): (Arg<'_>, Arg<'_>, u32) = match (out, self.epilogue) {
            (Output::F32(y, ldy), Epilogue::Store | Epilogue::Add) => {
                (y.into(), (&mut f16_view).into(), ldy)
            }
            (Output::F16(yh, ldy), Epilogue::Swiglu) => ((&mut f32_view).into(), yh.into(), ldy),
            _ => {
                return Err(crate::runtime::Error::Launch {
                    kernel: "skinny".into(),
                    message: format!("epilogue {:?} takes another output", self.epilogue),
                })
            }
        };
        let target = dev.target();
        let grid = Grid {
            x: n.div_ceil(16 * self.shape.nw),
            y: m.div_ceil(16 * self.shape.nt),
            z: 1,
        };
        dev.launch(
            skinny::definition(),
            &self.spec(&target),
            grid,
            &[
                x.into(),
                w.into(),
                y,
                yh,
                m.into(),
                n.into(),
                k.into(),
                ldy.into(),
            ],
        )
    }
}

/// The specialisations the tools build for `target`: the Llama-2 Q4_K_M products of
/// batched decode (Q4_K with every epilogue, Q6_K stores and adds) at both token shapes,
/// and a store in every other format.
pub fn builtin_specs(target: &crate::codegen::Target) -> Vec<Vec<crate::codegen::SpecValue>> {
    use crate::quant::gpu::GpuFormat;
    let mut out = Vec::new();
    for m in [16, 32] {
        for (fmt, epi) in [
            (GpuFormat::Q4K, Epilogue::Store),
            (GpuFormat::Q4K, Epilogue::Add),
            (GpuFormat::Q4K, Epilogue::Swiglu),
            (GpuFormat::Q6K, Epilogue::Store),
            (GpuFormat::Q6K, Epilogue::Add),
        ] {
            out.push(Skinny::new(fmt, epi, target, m).spec(target));
        }
    }
    for fmt in [
        GpuFormat::Q4_0,
        GpuFormat::Q4_1,
        GpuFormat::Q8_0,
        GpuFormat::F16,
    ] {
        out.push(Skinny::new(fmt, Epilogue::Store, target, 16).spec(target));
    }
    out
}
