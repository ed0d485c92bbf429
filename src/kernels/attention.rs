//! Attention for decode: flash-decoding over an f16 KV cache with grouped-query heads.
//!
//! The sequence is split into chunks of `CH` positions, one block per (KV head, chunk):
//! scores for every query head of the group, an online-softmax partial (max, sum, and the
//! unnormalised weighted sum of V) per chunk, all in f32. The last block of a KV head to
//! finish (an atomic counter) combines the chunk partials, so no second launch is needed.
//! The current length is read from device memory: one captured graph serves every step;
//! blocks past the last chunk return at once.

use crate::kernel;

/// Attention of the `G` query heads sharing KV head `block_idx()` over positions
/// `0..=pos[0]`, for head size `D`. `q` holds all query heads (`n_kv * G * D`); the caches
/// are `[n_kv][ctx][D]`; `part_o` (`n_kv * G * max_chunks * D`) and `part_ml`
/// (`n_kv * G * max_chunks * 2`) hold the chunk partials, `counter` (`n_kv`, zero between
/// launches) orders the combine. Output: `out[(h*G+g)*D + d]`.
#[kernel]
pub fn attention<const D: u32, const G: u32, const CH: u32, const BLOCK: u32>(
    q: &[f32],
    kc: &[f16],
    vc: &[f16],
    pos: &[u32],
    part_o: &mut [f32],
    part_ml: &mut [f32],
    counter: &mut [u32],
    out: &mut [f32],
    ctx: u32,
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
    let len = pos[0] + 1;
    let chunks = (len + CH - 1) / CH;
    if c >= chunks {
        return;
    }
    let start = c * CH;
    let tid = thread_idx();
    for i in (tid..G * D).step_by(BLOCK) {
        qs[i] = q[h * G * D + i];
    }
    barrier();

    // D/8 lanes share one position, eight dimensions (one 16-byte load) each. Every K and
    // V vector this thread needs is loaded up front: one burst of independent loads.
    let lanes = D / 8;
    let group = tid / lanes;
    let dd = (tid % lanes) * 8;
    let mut keys = [f16x8::splat(0.0); CH / (BLOCK / (D / 8))];
    let mut values = [f16x8::splat(0.0); CH / (BLOCK / (D / 8))];
    for j in 0..CH / (BLOCK / (D / 8)) {
        let t = start + j * (BLOCK / (D / 8)) + group;
        if t < len {
            keys[j] = kc.load_vec::<8>(((h * ctx + t) * D + dd) / 8);
            values[j] = vc.load_vec::<8>(((h * ctx + t) * D + dd) / 8);
        }
    }
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
    let slot = h * G;
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
                out[(slot + g) * D + tid] = o / stats[2 * g + 1];
            } else {
                part_o[((slot + g) * max_chunks + c) * D + tid] = o;
            }
        }
        if tid == 0 && !single {
            part_ml[((slot + g) * max_chunks + c) * 2] = stats[2 * g];
            part_ml[((slot + g) * max_chunks + c) * 2 + 1] = stats[2 * g + 1];
        }
        barrier();
    }
    if single {
        return;
    }

    // The last chunk block of this KV head merges every chunk's partial: each writer fences
    // its partials before the block's arrival is counted.
    fence();
    barrier();
    if tid == 0 {
        let done = counter.atomic_add(h, 1);
        last[0] = if done == chunks - 1 { 1 } else { 0 };
    }
    barrier();
    if last[0] == 1 {
        fence();
        for g in 0..G {
            let base = (slot + g) * max_chunks;
            let mut m = f32::NEG_INFINITY;
            for k in 0..chunks {
                m = max(m, part_ml[(base + k) * 2]);
            }
            if tid < D {
                let mut l = 0.0;
                let mut o = 0.0;
                for k in 0..chunks {
                    let w = exp(part_ml[(base + k) * 2] - m);
                    l += w * part_ml[(base + k) * 2 + 1];
                    o += w * part_o[(base + k) * D + tid];
                }
                out[(slot + g) * D + tid] = o / l;
            }
        }
        if tid == 0 {
            counter[h] = 0;
        }
    }
}

/// How to launch `attention` for one model shape.
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
    /// Positions per chunk (one block each).
    pub chunk: u32,
}

/// Threads per block of `attention`.
pub const ATTENTION_BLOCK: u32 = 256;

/// Scratch an attention launch needs: chunk partials and the combine counters.
pub struct AttentionScratch {
    pub part_o: crate::runtime::Buffer<f32>,
    pub part_ml: crate::runtime::Buffer<f32>,
    pub counter: crate::runtime::Buffer<u32>,
}

impl Attention {
    /// Chunks covering the whole cache.
    pub fn max_chunks(&self) -> u32 {
        self.ctx.div_ceil(self.chunk)
    }

    /// The specialisation values.
    pub fn spec(&self) -> Vec<crate::codegen::SpecValue> {
        [self.head_dim, self.group, self.chunk, ATTENTION_BLOCK]
            .map(|v| crate::codegen::SpecValue::Const(v as i128))
            .to_vec()
    }

    /// Allocates the scratch (counters zeroed).
    pub fn scratch(
        &self,
        dev: &crate::runtime::Device,
    ) -> Result<AttentionScratch, crate::runtime::Error> {
        let slots = (self.n_kv * self.group * self.max_chunks()) as usize;
        Ok(AttentionScratch {
            part_o: dev.alloc(slots * self.head_dim as usize)?,
            part_ml: dev.alloc(slots * 2)?,
            counter: dev.upload(&vec![0u32; self.n_kv as usize])?,
        })
    }

    /// Launches over every chunk of the cache; chunks past `pos[0]` exit at once.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        dev: &crate::runtime::Device,
        q: &crate::runtime::Buffer<f32>,
        kc: &crate::runtime::Buffer<half::f16>,
        vc: &crate::runtime::Buffer<half::f16>,
        pos: &crate::runtime::Buffer<u32>,
        scratch: &mut AttentionScratch,
        out: &mut crate::runtime::Buffer<f32>,
    ) -> Result<(), crate::runtime::Error> {
        let lanes = self.head_dim / 8;
        if !self.head_dim.is_multiple_of(8)
            || !dev.target().wave.is_multiple_of(lanes)
            || !self.chunk.is_multiple_of(ATTENTION_BLOCK / lanes)
        {
            return Err(crate::runtime::Error::Launch {
                kernel: "attention".into(),
                message: format!(
                    "unsupported head size {} or chunk {}",
                    self.head_dim, self.chunk
                ),
            });
        }
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        dev.launch(
            attention::definition(),
            &self.spec(),
            (self.n_kv, self.max_chunks()).into(),
            &[
                q.into(),
                kc.into(),
                vc.into(),
                pos.into(),
                (&mut scratch.part_o).into(),
                (&mut scratch.part_ml).into(),
                (&mut scratch.counter).into(),
                out.into(),
                self.ctx.into(),
                self.max_chunks().into(),
                scale.into(),
            ],
        )
    }
}
