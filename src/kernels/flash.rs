//! Causal attention for prompts on the matrix cores (flash attention): a block takes 16
//! queries per wave of one head, walks the keys its last query sees in tiles of 64 staged
//! in shared memory, and keeps an f32 online softmax per query, so no score matrix ever
//! reaches device memory. `Q · Kᵀ` and `P · V` run as 16 x 16 fragment products; the
//! softmax runs lane by lane on the scores passed through shared memory (its row
//! reductions then do not depend on a target's accumulator layout).

use crate::kernel;

/// Keys per tile.
pub const KEYS: u32 = 64;

/// Threads per block: four waves of 16 queries on NVIDIA (79 KB of shared memory at head
/// size 128), two on CDNA, whose 64 KiB of LDS hold the tiles of 32 queries.
pub const BLOCK: u32 = 128;

/// Attention output for query tokens `0..m` at positions `pos0..pos0 + m` (each sees the
/// keys at positions up to its own) over f16 caches `[kv_head][ctx][D]` that already hold
/// this prompt's keys and values. `q` (f32) and `out` (f16) are `m` rows of `n_head * D`;
/// head `h` reads KV head `h / G`. `scale` is `log2(e) / sqrt(D)`. Grid: query blocks of
/// `16 * BLOCK / WAVE` tokens along x, heads along y.
#[kernel]
pub fn attention_prefill<const D: u32, const G: u32, const BLOCK: u32>(
    q: &[f32],
    kc: &[f16],
    vc: &[f16],
    out: &mut [f16],
    m: u32,
    pos0: u32,
    ctx: u32,
    n_head: u32,
    scale: f32,
) {
    let qs = shared!([f16; 16 * BLOCK / WAVE * (D + 8)]);
    let ks = shared!([f16; KEYS * (D + 8)]);
    let vs = shared!([f16; KEYS * (D + 8)]);
    // Scores (f32, rows of 68) and probabilities (f16, rows of 72) of this tile.
    let ss = shared!([f32; 16 * BLOCK / WAVE * 68]);
    let ps = shared!([f16; 16 * BLOCK / WAVE * 72]);
    // Per query row: the rescaling of its sums (then the reciprocal of its total).
    let corr = shared!([f32; 16 * BLOCK / WAVE]);
    let rows = 16 * BLOCK / WAVE;
    let t0 = block_idx() * rows;
    let head = block_idx_y();
    let width = n_head * D;
    for i in (thread_idx()..rows * D).step_by(BLOCK) {
        let t = t0 + i / D;
        let mut v = 0.0;
        if t < m {
            v = q[t * width + head * D + i % D] * scale;
        }
        qs[(i / D) * (D + 8) + i % D] = v as f16;
    }
    // Keys seen by the block's last query.
    let len = pos0 + min(t0 + rows, m);
    let kv = (head / G) * ctx * D;
    // Lanes share a query row: WAVE / 16 of them, each a run of its columns.
    let lanes = WAVE / 16;
    let row = wave_id() * 16 + lane_id() / lanes;
    let part = lane_id() % lanes;
    let t = t0 + row;
    // Keys this row sees (rows past the prompt see key 0, so their softmax is defined).
    let limit = if t < m { pos0 + t + 1 } else { 1 };
    let mut row_max = -1.0e30;
    let mut row_sum = 0.0;
    let mut o = [frag_c::<f32>(); D / 16];
    for tile in 0..(len + KEYS - 1) / KEYS {
        let j0 = tile * KEYS;
        // The previous tile's values are read by every wave before they are replaced;
        // keys past `len` are zero (a cache slot not written yet may hold anything).
        barrier();
        for i in (thread_idx()..KEYS * D / 8).step_by(BLOCK) {
            let key = j0 + i / (D / 8);
            let mut kv8 = f16x8::splat(0.0);
            let mut vv8 = f16x8::splat(0.0);
            if key < len {
                kv8 = kc.load_vec::<8>((kv + key * D) / 8 + i % (D / 8));
                vv8 = vc.load_vec::<8>((kv + key * D) / 8 + i % (D / 8));
            }
            let at = (i / (D / 8)) * ((D + 8) / 8) + i % (D / 8);
            ks.store_vec(at, kv8);
            vs.store_vec(at, vv8);
        }
        barrier();
        let mut s = [frag_c::<f32>(); KEYS / 16];
        for kk in 0..D / 16 {
            let a = qs.load_a(wave_id() * 16 * (D + 8) + 16 * kk, D + 8);
            for j in 0..KEYS / 16 {
                s[j] = mma(a, ks.load_b(16 * j * (D + 8) + 16 * kk, D + 8), s[j]);
            }
        }
        for j in 0..KEYS / 16 {
            ss.store_frag(wave_id() * 16 * 68 + 16 * j, 68, s[j]);
        }
        barrier();
        let mut top = -1.0e30;
        for c in 0..KEYS / (WAVE / 16) {
            let col = part * (KEYS / lanes) + c;
            if j0 + col < limit {
                top = max(top, ss[row * 68 + col]);
            }
        }
        top = max(top, shfl_xor(top, 1));
        if WAVE == 64 {
            top = max(top, shfl_xor(top, 2));
        }
        let new_max = max(row_max, top);
        let alpha = exp2(row_max - new_max);
        let mut sum = 0.0;
        for c in 0..KEYS / (WAVE / 16) {
            let col = part * (KEYS / lanes) + c;
            let mut p = 0.0;
            if j0 + col < limit {
                p = exp2(ss[row * 68 + col] - new_max);
            }
            sum += p;
            ps[row * 72 + col] = p as f16;
        }
        sum += shfl_xor(sum, 1);
        if WAVE == 64 {
            sum += shfl_xor(sum, 2);
        }
        row_sum = row_sum * alpha + sum;
        row_max = new_max;
        if part == 0 {
            corr[row] = alpha;
        }
        barrier();
        for j in 0..D / 16 {
            let mut f = o[j];
            for e in 0..f.len() {
                f[e] = f[e] * corr[wave_id() * 16 + f.row(e)];
            }
            o[j] = f;
        }
        for kk in 0..KEYS / 16 {
            let a = ps.load_a(wave_id() * 16 * 72 + 16 * kk, 72);
            for j in 0..D / 16 {
                o[j] = mma(a, vs.load_b_trans(16 * kk * (D + 8) + 16 * j, D + 8), o[j]);
            }
        }
    }
    // Every wave has read its last corrections before they become the totals' reciprocals.
    barrier();
    if part == 0 {
        corr[row] = 1.0 / row_sum;
    }
    barrier();
    for j in 0..D / 16 {
        let f = o[j];
        for e in 0..f.len() {
            let r = wave_id() * 16 + f.row(e);
            if t0 + r < m {
                out[(t0 + r) * width + head * D + 16 * j + f.col(e)] = (f[e] * corr[r]) as f16;
            }
        }
    }
}

/// How to launch `attention_prefill` for a model's head geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefillAttention {
    pub head_dim: u32,
    /// Query heads per KV head.
    pub group: u32,
    pub n_head: u32,
    /// Positions the caches hold.
    pub ctx: u32,
}

impl PrefillAttention {
    /// The specialisation values.
    pub fn spec(&self) -> Vec<crate::codegen::SpecValue> {
        attention_prefill::Spec {
            d: self.head_dim,
            g: self.group,
            block: BLOCK,
        }
        .values()
    }

    /// Attention of `m` prompt tokens at positions `pos0..` whose keys and values are in
    /// the caches.
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        dev: &crate::runtime::Device,
        q: &crate::runtime::Buffer<f32>,
        kc: &crate::runtime::Buffer<half::f16>,
        vc: &crate::runtime::Buffer<half::f16>,
        out: &mut crate::runtime::Buffer<half::f16>,
        m: u32,
        pos0: u32,
    ) -> Result<(), crate::runtime::Error> {
        let target = dev.target();
        if pos0 + m > self.ctx {
            return Err(crate::runtime::Error::Launch {
                kernel: "attention_prefill".into(),
                message: format!(
                    "{m} tokens from position {pos0} overrun the {}-position cache",
                    self.ctx
                ),
            });
        }
        check_heads("attention_prefill", self.head_dim, self.group, self.n_head)?;
        let rows = 16 * BLOCK / target.wave;
        let scale = std::f64::consts::LOG2_E / (self.head_dim as f64).sqrt();
        dev.launch(
            attention_prefill::definition(),
            &self.spec(),
            (m.div_ceil(rows), self.n_head).into(),
            &[
                q.into(),
                kc.into(),
                vc.into(),
                out.into(),
                m.into(),
                pos0.into(),
                self.ctx.into(),
                self.n_head.into(),
                (scale as f32).into(),
            ],
        )
    }
}

/// Refuses a head geometry the attention kernels do not take: head size 64 or 128, and
/// `n_head` query heads in whole groups of `group` per KV head.
pub fn check_heads(
    kernel: &str,
    head_dim: u32,
    group: u32,
    n_head: u32,
) -> Result<(), crate::runtime::Error> {
    if !matches!(head_dim, 64 | 128) || group == 0 || !n_head.is_multiple_of(group) {
        return Err(crate::runtime::Error::Launch {
            kernel: kernel.into(),
            message: format!(
                "head size {head_dim} (64 or 128) with {n_head} heads in groups of {group}"
            ),
        });
    }
    Ok(())
}
