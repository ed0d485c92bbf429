//! Attention for decode: flash-decoding over an f16 KV cache with grouped-query heads, in
//! two kernels chosen by sequence length.
//!
//! - `attention` splits the sequence into chunks of `CH` positions, one block per (KV head,
//!   chunk). Each thread loads all of its K and V vectors at once, then the block computes
//!   the scores, a block-wide softmax and the weighted sum of V. Few dependent memory
//!   round trips: best for short and medium sequences.
//! - `attention_stream` gives each block a longer chunk, walked by streams of lanes with
//!   an online softmax and a few positions in flight: fewer blocks and partials, and no
//!   block-wide phase until the end. Best for long sequences.
//!
//! Both keep an online-softmax partial (max, sum, and the unnormalised weighted sum of V)
//! per chunk in f32, and the last block of a KV head to finish (an atomic counter) combines
//! the partials, so no second launch is needed. The current length is read from device
//! memory, so one captured graph serves every step of a length range; blocks past the last
//! chunk return at once.

use crate::kernel;

/// Attention of the `G` query heads sharing KV head `block_idx()` of row `r =
/// block_idx_z()` over positions `0..=pos[r]` of its cache slot `slot[r]` (`slot_len`
/// elements each; 0: the caches hold one sequence and `slot` is not read), for head size
/// `D`, one block per chunk of `CH` positions (short and medium sequences). `q` holds
/// every row's query heads (`n_kv * G * D` each); a slot's caches are `[n_kv][ctx][D]`;
/// `part_o` (`n_kv * G * max_chunks * D` per row) and `part_ml` (`n_kv * G * max_chunks *
/// 2` per row) hold the chunk partials, `counter` (`n_kv` per row, zero between launches)
/// orders the combine. Output: row `r`'s `out[(r * n_kv + h) * G * D + g * D + d]`. No
/// row's arithmetic depends on another's.
#[kernel]
pub fn attention<const D: u32, const G: u32, const CH: u32, const BLOCK: u32>(
    q: &[f32],
    kc: &[f16],
    vc: &[f16],
    pos: &[u32],
    slot: &[u32],
    part_o: &mut [f32],
    part_ml: &mut [f32],
    counter: &mut [u32],
    out: &mut [f32],
    ctx: u32,
    slot_len: u32,
    max_chunks: u32,
    scale: f32,
) {
    let qs = shared!([f32; G * D]);
    let scores = shared!([f32; G * CH]);
    let red = shared!([f32; BLOCK / (D / 8) * D]);
    let stats = shared!([f32; 2 * G]);
    let last = shared!([u32; 1]);
    // Dependent launch: the blocks are scheduled while the QKV product still runs, and wait
    // here for its cache writes; the next launch may start once every block has begun.
    allow_next_launch();
    wait_prior_launch();
    let h = block_idx();
    let c = block_idx_y();
    let r = block_idx_z();
    // The row's KV head among every row's: it places the query, partials and output.
    let hr = r * grid_dim() + h;
    let len = pos[r] + 1;
    let chunks = (len + CH - 1) / CH;
    if c >= chunks {
        return;
    }
    let start = c * CH;
    let tid = thread_idx();
    let cache = if slot_len == 0 { 0 } else { slot[r] * slot_len };

    // D/8 lanes share one position, eight dimensions (one 16-byte load) each. Every K and
    // V vector this thread needs is loaded up front: one burst of independent loads,
    // issued before the query's copy to shared memory (a copy waits for its load, and
    // nothing issues behind it), so that both latencies overlap. Holding the vectors
    // through the copy costs registers (two blocks per SM on sm_90 instead of three),
    // which long sequences would feel; they run `attention_stream`.
    let lanes = D / 8;
    let group = tid / lanes;
    let dd = (tid % lanes) * 8;
    let mut keys = [f16x8::splat(0.0); CH / (BLOCK / (D / 8))];
    let mut values = [f16x8::splat(0.0); CH / (BLOCK / (D / 8))];
    for j in 0..CH / (BLOCK / (D / 8)) {
        let t = start + j * (BLOCK / (D / 8)) + group;
        if t < len {
            keys[j] = kc.load_vec::<8>((cache + (h * ctx + t) * D + dd) / 8);
            values[j] = vc.load_vec::<8>((cache + (h * ctx + t) * D + dd) / 8);
        }
    }
    for i in (tid..G * D).step_by(BLOCK) {
        qs[i] = q[hr * G * D + i];
    }
    barrier();
    let per_pass = BLOCK / lanes;
    for j in 0..CH / (BLOCK / (D / 8)) {
        let t0 = j * per_pass;
        let valid = start + t0 + group < len;
        for g in 0..G {
            let mut part = 0.0;
            for k in 0..8 {
                part += (keys[j][k] as f32) * qs[g * D + dd + k];
            }
            let mut o = lanes / 2;
            while o > 0 {
                part += shfl_xor(part, o);
                o = o / 2;
            }
            if tid % lanes == 0 {
                scores[g * CH + t0 + group] = if valid {
                    part * scale
                } else {
                    f32::NEG_INFINITY
                };
            }
        }
    }
    barrier();

    // Softmax statistics of the chunk, one wavefront per query head.
    for g in (wave_id()..G).step_by(BLOCK / WAVE) {
        let mut m = f32::NEG_INFINITY;
        for t in (lane_id()..CH).step_by(WAVE) {
            m = max(m, scores[g * CH + t]);
        }
        m = wave_max(m);
        let mut l = 0.0;
        for t in (lane_id()..CH).step_by(WAVE) {
            let p = exp(scores[g * CH + t] - m);
            scores[g * CH + t] = p;
            l += p;
        }
        l = wave_sum(l);
        if lane_id() == 0 {
            stats[2 * g] = m;
            stats[2 * g + 1] = l;
        }
    }
    barrier();

    // Weighted sum of V: the same lane layout as the scores, accumulated per head.
    let mut acc = [0.0f32; 8 * G];
    for j in 0..CH / (BLOCK / (D / 8)) {
        let t0 = j * per_pass;
        if start + t0 + group < len {
            for g in 0..G {
                let p = scores[g * CH + t0 + group];
                for k in 0..8 {
                    acc[8 * g + k] += p * (values[j][k] as f32);
                }
            }
        }
    }
    let head0 = hr * G;
    // A sequence that fits one chunk needs no combine: normalise and write the output.
    let single = chunks == 1;
    for g in 0..G {
        for k in 0..8 {
            red[group * D + dd + k] = acc[8 * g + k];
        }
        barrier();
        if tid < D {
            let mut o = 0.0;
            for r in 0..per_pass {
                o += red[r * D + tid];
            }
            if single {
                out[(head0 + g) * D + tid] = o / stats[2 * g + 1];
            } else {
                part_o[((head0 + g) * max_chunks + c) * D + tid] = o;
            }
        }
        if tid == 0 && !single {
            part_ml[((head0 + g) * max_chunks + c) * 2] = stats[2 * g];
            part_ml[((head0 + g) * max_chunks + c) * 2 + 1] = stats[2 * g + 1];
        }
        barrier();
    }
    if !single {
        combine_chunks(
            part_o, part_ml, counter, out, last, hr, G, D, chunks, max_chunks,
        );
    }
}

/// `attention` for long sequences: the sequence of each KV head is split over up to
/// `splits` blocks, as many as keep the device's compute units full once (chunks never
/// shorter than `min_chunk`). Inside a block, each group of `D/8` lanes is a stream that
/// walks every `streams`-th position of the chunk with an online softmax in f32, the K and
/// V vectors of its next `DEPTH` positions in flight while it uses the current ones: no
/// block-wide phase until the streams merge at the end. Partials have `splits` slots per
/// query head.
#[kernel]
pub fn attention_stream<const D: u32, const G: u32, const DEPTH: u32, const BLOCK: u32>(
    q: &[f32],
    kc: &[f16],
    vc: &[f16],
    pos: &[u32],
    part_o: &mut [f32],
    part_ml: &mut [f32],
    counter: &mut [u32],
    out: &mut [f32],
    ctx: u32,
    splits: u32,
    min_chunk: u32,
    scale: f32,
) {
    let red = shared!([f32; BLOCK / (D / 8) * D]);
    let ml = shared!([f32; 2 * (BLOCK / (D / 8))]);
    let last = shared!([u32; 1]);
    // Dependent launch: the blocks are scheduled while the QKV product still runs, and wait
    // here for its cache writes; the next launch may start once every block has begun.
    allow_next_launch();
    wait_prior_launch();
    let h = block_idx();
    let c = block_idx_y();
    let lanes = D / 8;
    let streams = BLOCK / lanes;
    let tid = thread_idx();
    let stream = tid / lanes;
    let dd = (tid % lanes) * 8;
    let slot = h * G;
    // This lane's eight dimensions of every query head, pre-scaled by `scale * log2(e)`:
    // the streams work in powers of two (`exp2`), converted back where partials are
    // written. Read with the length, not after it, so that the two reads share one
    // round trip before the first keys are requested.
    let mut qv = [0.0f32; 8 * G];
    for g in 0..G {
        let qa = q.load_vec::<4>(((slot + g) * D + dd) / 4);
        let qb = q.load_vec::<4>(((slot + g) * D + dd) / 4 + 1);
        for k in 0..4 {
            qv[8 * g + k] = qa[k] * scale * 1.442695;
            qv[8 * g + 4 + k] = qb[k] * scale * 1.442695;
        }
    }
    let len = pos[0] + 1;
    // Positions per block: the sequence over `splits` blocks, in whole passes of every
    // stream's `DEPTH` positions.
    let batch = streams * DEPTH;
    let per = (max((len + splits - 1) / splits, min_chunk) + batch - 1) / batch * batch;
    let chunks = (len + per - 1) / per;
    // A block past the last chunk walks no positions and returns before the merge. (An
    // early return here would let the compiler sink the query's loads behind it, to
    // after the length's round trip.)
    let active = c < chunks;
    let start = c * per;
    let end = if active { min(start + per, len) } else { start };
    let mut m = [f32::NEG_INFINITY; G];
    let mut l = [0.0f32; G];
    let mut acc = [0.0f32; 8 * G];
    let mut ck = [f16x8::splat(0.0); DEPTH];
    let mut cv = [f16x8::splat(0.0); DEPTH];
    let batches = (end - start + batch - 1) / batch;
    // Iteration b loads batch b and consumes batch b - 1.
    for b in 0..batches + 1 {
        let mut nk = [f16x8::splat(0.0); DEPTH];
        let mut nv = [f16x8::splat(0.0); DEPTH];
        if b < batches {
            for j in 0..DEPTH {
                let t = start + b * batch + j * streams + stream;
                if t < end {
                    nk[j] = kc.load_vec::<8>(((h * ctx + t) * D + dd) / 8);
                    nv[j] = vc.load_vec::<8>(((h * ctx + t) * D + dd) / 8);
                }
            }
        }
        if b >= 1 {
            let t0 = start + (b - 1) * batch + stream;
            for g in 0..G {
                // Every lane of the stream ends with the whole score of each position.
                let mut sc = [0.0f32; DEPTH];
                let mut top = m[g];
                for j in 0..DEPTH {
                    let mut part = 0.0;
                    for k in 0..8 {
                        part += (ck[j][k] as f32) * qv[8 * g + k];
                    }
                    let mut o = lanes / 2;
                    while o > 0 {
                        part += shfl_xor(part, o);
                        o = o / 2;
                    }
                    sc[j] = if t0 + j * streams < end {
                        part
                    } else {
                        f32::NEG_INFINITY
                    };
                    top = max(top, sc[j]);
                }
                // A stream whose positions all lie past the end keeps its empty state.
                if top > f32::NEG_INFINITY {
                    let corr = exp2(m[g] - top);
                    l[g] = l[g] * corr;
                    for k in 0..8 {
                        acc[8 * g + k] = acc[8 * g + k] * corr;
                    }
                    for j in 0..DEPTH {
                        let p = exp2(sc[j] - top);
                        l[g] += p;
                        for k in 0..8 {
                            acc[8 * g + k] += p * (cv[j][k] as f32);
                        }
                    }
                    m[g] = top;
                }
            }
        }
        for j in 0..DEPTH {
            ck[j] = nk[j];
            cv[j] = nv[j];
        }
    }

    if !active {
        return;
    }
    // Merge the streams: each rescales its state to the block's maximum (log2 units).
    let single = chunks == 1;
    for g in 0..G {
        if tid % lanes == 0 {
            ml[2 * stream] = m[g];
            ml[2 * stream + 1] = l[g];
        }
        barrier();
        let mut top = f32::NEG_INFINITY;
        for s in 0..streams {
            top = max(top, ml[2 * s]);
        }
        let w = if m[g] > f32::NEG_INFINITY {
            exp2(m[g] - top)
        } else {
            0.0
        };
        for k in 0..8 {
            red[stream * D + dd + k] = acc[8 * g + k] * w;
        }
        barrier();
        if tid < D {
            let mut o = 0.0;
            let mut sum = 0.0;
            for s in 0..streams {
                o += red[s * D + tid];
                if ml[2 * s] > f32::NEG_INFINITY {
                    sum += exp2(ml[2 * s] - top) * ml[2 * s + 1];
                }
            }
            if single {
                out[(slot + g) * D + tid] = o / sum;
            } else {
                part_o[((slot + g) * splits + c) * D + tid] = o;
                if tid == 0 {
                    // The combine works in natural units.
                    part_ml[((slot + g) * splits + c) * 2] = top * 0.6931472;
                    part_ml[((slot + g) * splits + c) * 2 + 1] = sum;
                }
            }
        }
        barrier();
    }
    if !single {
        combine_chunks(part_o, part_ml, counter, out, last, h, G, D, chunks, splits);
    }
}

/// The end of both kernels when a sequence spans several chunks: the last block of KV head
/// `h` to arrive merges the `chunks` partials of each of its `g` query heads (`stride`
/// slots per query head) into `out` and resets the head's counter. Each writer fences its
/// partials before its block's arrival is counted. Every thread of the block must call it.
#[crate::device]
fn combine_chunks(
    part_o: &[f32],
    part_ml: &[f32],
    counter: &mut [u32],
    out: &mut [f32],
    last: &mut [u32],
    h: u32,
    g: u32,
    d: u32,
    chunks: u32,
    stride: u32,
) {
    let tid = thread_idx();
    fence();
    barrier();
    if tid == 0 {
        let done = counter.atomic_add(h, 1);
        last[0] = if done == chunks - 1 { 1 } else { 0 };
    }
    barrier();
    if last[0] == 1 {
        fence();
        for head in h * g..(h + 1) * g {
            let base = head * stride;
            let mut top = f32::NEG_INFINITY;
            for k in 0..chunks {
                top = max(top, part_ml[(base + k) * 2]);
            }
            if tid < d {
                let mut sum = 0.0;
                let mut o = 0.0;
                for k in 0..chunks {
                    let w = exp(part_ml[(base + k) * 2] - top);
                    sum += w * part_ml[(base + k) * 2 + 1];
                    o += w * part_o[(base + k) * d + tid];
                }
                out[head * d + tid] = o / sum;
            }
        }
        if tid == 0 {
            counter[h] = 0;
        }
    }
}

/// Which attention kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// `attention`: one block per fixed chunk.
    Chunked,
    /// `attention_stream`: streams over longer chunks.
    Streamed,
}

/// How to launch attention for one model shape: both kernels' launch shapes and the
/// sequence length from which the streamed kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attention {
    /// Head size.
    pub head_dim: u32,
    /// Query heads per KV head.
    pub group: u32,
    /// KV heads.
    pub n_kv: u32,
    /// Positions the caches hold.
    pub ctx: u32,
    /// `attention`: positions per chunk (one block each).
    pub chunk: u32,
    /// `attention_stream`: positions each stream has in flight.
    pub depth: u32,
    /// `attention_stream`: fewest positions a block takes.
    pub min_chunk: u32,
    /// `attention_stream`: threads per block.
    pub block: u32,
    /// `attention_stream`: rounds of resident blocks a sequence is split over.
    pub rounds: u32,
    /// Sequence length from which `attention_stream` runs.
    pub long_from: u32,
}

/// Threads per block of `attention`.
pub const CHUNKED_BLOCK: u32 = 256;

/// Scratch an attention launch needs: chunk partials and the combine counters.
pub struct AttentionScratch {
    pub part_o: crate::runtime::Buffer<f32>,
    pub part_ml: crate::runtime::Buffer<f32>,
    pub counter: crate::runtime::Buffer<u32>,
}

impl Attention {
    /// Attention for heads of `head_dim`, `group` query heads per KV head, `n_kv` KV heads
    /// and a cache of `ctx` positions, with the launch shapes measured best on the H100.
    pub fn new(head_dim: u32, group: u32, n_kv: u32, ctx: u32) -> Attention {
        Attention {
            head_dim,
            group,
            n_kv,
            ctx,
            chunk: 128,
            depth: 2,
            min_chunk: 128,
            block: 256,
            rounds: 1,
            long_from: 1280,
        }
    }

    /// The kernel that runs for sequences of `len` positions.
    pub fn kernel_for(&self, len: u32) -> AttentionKernel {
        if len >= self.long_from {
            AttentionKernel::Streamed
        } else {
            AttentionKernel::Chunked
        }
    }

    /// The streamed kernel's launch shape, for reports.
    pub fn variant(&self) -> String {
        format!(
            "depth {} min {} block {} rounds {}",
            self.depth, self.min_chunk, self.block, self.rounds
        )
    }

    /// The specialisation values of `kernel`.
    pub fn spec(&self, kernel: AttentionKernel) -> Vec<crate::codegen::SpecValue> {
        let (d, g) = (self.head_dim, self.group);
        match kernel {
            AttentionKernel::Chunked => attention::Spec {
                d,
                g,
                ch: self.chunk,
                block: CHUNKED_BLOCK,
            }
            .values(),
            AttentionKernel::Streamed => attention_stream::Spec {
                d,
                g,
                depth: self.depth,
                block: self.block,
            }
            .values(),
        }
    }

    /// The chunked kernel's blocks per KV head: chunks covering the whole cache.
    fn max_chunks(&self) -> u32 {
        self.ctx.div_ceil(self.chunk)
    }

    /// The streamed kernel's blocks per KV head: enough for `rounds` of the resident
    /// blocks of the whole device, and no more than chunks of `min_chunk` positions cover
    /// the cache.
    pub fn splits(&self, dev: &crate::runtime::Device) -> Result<u32, crate::runtime::Error> {
        let resident = dev.resident_blocks(
            attention_stream::definition(),
            &self.spec(AttentionKernel::Streamed),
        )?;
        let fill = resident
            .saturating_mul(dev.compute_units())
            .saturating_mul(self.rounds)
            / self.n_kv;
        Ok(fill.clamp(1, self.ctx.div_ceil(self.min_chunk).max(1)))
    }

    /// Partial slots per query head `kernel` uses.
    fn slots(
        &self,
        dev: &crate::runtime::Device,
        kernel: AttentionKernel,
    ) -> Result<u32, crate::runtime::Error> {
        match kernel {
            AttentionKernel::Chunked => Ok(self.max_chunks()),
            AttentionKernel::Streamed => self.splits(dev),
        }
    }

    /// Allocates the scratch for both kernels (counters zeroed), for launches of up to
    /// `rows` sequences (the streamed kernel takes one).
    pub fn scratch(
        &self,
        dev: &crate::runtime::Device,
        rows: u32,
    ) -> Result<AttentionScratch, crate::runtime::Error> {
        let per_head = (rows * self.slots(dev, AttentionKernel::Chunked)?)
            .max(self.slots(dev, AttentionKernel::Streamed)?);
        let slots = (self.n_kv * self.group * per_head) as usize;
        Ok(AttentionScratch {
            part_o: dev.alloc(slots * self.head_dim as usize)?,
            part_ml: dev.alloc(slots * 2)?,
            counter: dev.upload(&vec![0u32; (rows * self.n_kv) as usize])?,
        })
    }

    /// Checks the shapes the kernels rely on, naming the problem.
    fn check(&self, dev: &crate::runtime::Device) -> Result<(), crate::runtime::Error> {
        let lanes = self.head_dim / 8;
        let wave = dev.target().wave;
        let problem = if !self.head_dim.is_multiple_of(8) || !wave.is_multiple_of(lanes) {
            Some(format!("unsupported head size {}", self.head_dim))
        } else if self.chunk == 0 || !self.chunk.is_multiple_of(CHUNKED_BLOCK / lanes) {
            Some(format!(
                "chunk {} is not a multiple of {}",
                self.chunk,
                CHUNKED_BLOCK / lanes
            ))
        } else if !(1..=8).contains(&self.depth)
            || self.min_chunk == 0
            || self.rounds == 0
            || !self.block.is_multiple_of(wave)
            || !(lanes..=1024).contains(&self.block)
        {
            Some(format!("unsupported streamed shape {}", self.variant()))
        } else {
            None
        };
        match problem {
            Some(message) => Err(crate::runtime::Error::Launch {
                kernel: "attention".into(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Launches `kernel` over every chunk the cache can hold, for `rows.n` sequences, row
    /// `r` at position `pos[r]` of its cache slot (`rows.slots`; the streamed kernel takes
    /// one sequence); chunks past a row's position exit at once. `kernel_for` says which
    /// kernel suits a length; either is correct for any.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        dev: &crate::runtime::Device,
        kernel: AttentionKernel,
        q: &crate::runtime::Buffer<f32>,
        kc: &crate::runtime::Buffer<half::f16>,
        vc: &crate::runtime::Buffer<half::f16>,
        pos: &crate::runtime::Buffer<u32>,
        rows: super::matvec::Inputs<'_>,
        scratch: &mut AttentionScratch,
        out: &mut crate::runtime::Buffer<f32>,
    ) -> Result<(), crate::runtime::Error> {
        self.check(dev)?;
        let bad = |message: String| {
            Err(crate::runtime::Error::Launch {
                kernel: "attention".into(),
                message,
            })
        };
        let one = rows.n == 1 && rows.slots.is_none();
        if rows.n == 0 || (kernel == AttentionKernel::Streamed && !one) {
            return bad(format!(
                "{} rows{} for the {kernel:?} kernel",
                rows.n,
                if rows.slots.is_some() {
                    " in slots"
                } else {
                    ""
                }
            ));
        }
        let slots = self.slots(dev, kernel)?;
        let needed = (rows.n * self.n_kv * self.group * slots * self.head_dim) as usize;
        if scratch.part_o.len() < needed || scratch.counter.len() < (rows.n * self.n_kv) as usize {
            return bad(format!(
                "scratch holds {} partial values and {} counters, {needed} and {} needed",
                scratch.part_o.len(),
                scratch.counter.len(),
                rows.n * self.n_kv
            ));
        }
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let spec = self.spec(kernel);
        let (p_o, p_ml, count) = (
            &mut scratch.part_o,
            &mut scratch.part_ml,
            &mut scratch.counter,
        );
        match kernel {
            AttentionKernel::Chunked => {
                let (slot, slot_len) = rows.slots.unwrap_or((pos, 0));
                dev.launch(
                    attention::definition(),
                    &spec,
                    crate::runtime::Grid {
                        x: self.n_kv,
                        y: slots,
                        z: rows.n,
                    },
                    &[
                        q.into(),
                        kc.into(),
                        vc.into(),
                        pos.into(),
                        slot.into(),
                        p_o.into(),
                        p_ml.into(),
                        count.into(),
                        out.into(),
                        self.ctx.into(),
                        slot_len.into(),
                        slots.into(),
                        scale.into(),
                    ],
                )
            }
            AttentionKernel::Streamed => dev.launch(
                attention_stream::definition(),
                &spec,
                (self.n_kv, slots).into(),
                &[
                    q.into(),
                    kc.into(),
                    vc.into(),
                    pos.into(),
                    p_o.into(),
                    p_ml.into(),
                    count.into(),
                    out.into(),
                    self.ctx.into(),
                    slots.into(),
                    self.min_chunk.into(),
                    scale.into(),
                ],
            ),
        }
    }
}
