//! Kernels of batched decode, where each row of the products is its own sequence: the
//! rows' RoPE and KV-cache writes into their sequences' cache slots, attention of each row
//! over its own slot, and greedy selection per row. The products themselves are `gemm`'s.
//!
//! Every row reads its position and slot from device memory (`pos[r]`, `slot[r]`), so one
//! captured graph serves every step of a batch size, and no row's arithmetic depends on
//! the other rows: a sequence gets the same numbers alone or batched.

use super::decode::first_max;
use super::matvec::qkv_epilogue;
use crate::kernel;

/// Finishes the QKV products of row `block_idx_y()`: `qk` holds its Q and K values
/// (`rows_a` per row), `v` its V values (`rows_v` per row). Q pairs are rotated into `q`
/// (`q_rows` per row); K and V go into the caches of slot `slot[r]` (each slot `slot_len`
/// elements, `[kv_head][ctx][head_dim]`) at position `pos[r]`. One thread per pair.
#[kernel(block = 256)]
pub fn qkv_rows(
    qk: &[f32],
    v: &[f32],
    q: &mut [f32],
    kc: &mut [f16],
    vc: &mut [f16],
    pos: &[u32],
    slot: &[u32],
    rows_a: u32,
    rows_v: u32,
    q_rows: u32,
    head_dim: u32,
    ctx: u32,
    slot_len: u32,
    rope_step: f32,
) {
    let r = block_idx_y();
    let col = 2 * (block_idx() * BLOCK + thread_idx());
    if col < rows_a + rows_v {
        let mut a = 0.0;
        let mut b = 0.0;
        if col < rows_a {
            a = qk[r * rows_a + col];
            b = qk[r * rows_a + col + 1];
        } else {
            a = v[r * rows_v + col - rows_a];
            b = v[r * rows_v + col - rows_a + 1];
        }
        qkv_epilogue(
            col,
            r * q_rows + col,
            a,
            b,
            q,
            kc,
            vc,
            pos[r],
            rows_a,
            q_rows,
            head_dim,
            ctx,
            rope_step,
            slot[r] * slot_len,
        );
    }
}

/// Attention of query head `block_idx()` of row `r = block_idx_y()` over its slot's keys
/// at positions `0..=pos[r]`, for head size `D` (`BLOCK` = `D`: one thread per dimension).
/// The keys go by in chunks of `D`, a thread scoring one key per chunk; an online softmax
/// (base 2: `scale` is `log2(e) / sqrt(D)`) carries the sums between chunks. `q` (f32) and
/// `out` (f16, the matrix-core products' input) are rows of `n_head * D`; head `h` reads KV head `h / G` of slot `slot[r]`
/// in caches of `[slot][n_kv][ctx][D]`. (An occupancy of one wave per SIMD is asked for
/// because, left to itself, sm_80's compiler held the 64-thread block to 32 registers and
/// spilled.)
#[kernel(min_waves = 1)]
pub fn attention_rows<const D: u32, const G: u32, const BLOCK: u32>(
    q: &[f32],
    kc: &[f16],
    vc: &[f16],
    pos: &[u32],
    slot: &[u32],
    out: &mut [f16],
    n_head: u32,
    n_kv: u32,
    ctx: u32,
    scale: f32,
) {
    let qs = shared!([f32; D]);
    let ps = shared!([f32; D]);
    let r = block_idx_y();
    let head = block_idx();
    let tid = thread_idx();
    let width = n_head * D;
    qs[tid] = q[r * width + head * D + tid] * scale;
    barrier();
    let len = pos[r] + 1;
    let kv = (slot[r] * n_kv + head / G) * ctx * D;
    let mut row_max = -1.0e30;
    let mut row_sum = 0.0;
    let mut acc = 0.0;
    for c0 in (0..len).step_by(D) {
        let t = c0 + tid;
        let mut s = -1.0e30;
        if t < len {
            let mut dot = 0.0;
            for j in 0..D / 8 {
                let k8 = kc.load_vec::<8>((kv + t * D) / 8 + j);
                for e in 0..8 {
                    dot += (k8[e] as f32) * qs[8 * j + e];
                }
            }
            s = dot;
        }
        let new_max = max(row_max, block_max(s));
        let mut p = 0.0;
        if t < len {
            p = exp2(s - new_max);
        }
        ps[tid] = p;
        let alpha = exp2(row_max - new_max);
        row_sum = row_sum * alpha + block_sum(p);
        row_max = new_max;
        acc = acc * alpha;
        for j in 0..min(D, len - c0) {
            acc += ps[j] * (vc[kv + (c0 + j) * D + tid] as f32);
        }
        // Every thread has read this chunk's probabilities before the next overwrites them.
        barrier();
    }
    out[r * width + head * D + tid] = (acc / row_sum) as f16;
}

/// Greedy selection per row: `tok[r]` is the index of the largest of row `r =
/// block_idx()`'s `n` logits (the smallest such index on ties).
#[kernel]
pub fn argmax_rows<const BLOCK: u32>(logits: &[f32], n: u32, tok: &mut [u32]) {
    let r = block_idx();
    let first = first_max(logits, r * n, n);
    if thread_idx() == 0 {
        tok[r] = first;
    }
}

/// How to launch `attention_rows` for a model's head geometry and cache slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowAttention {
    pub head_dim: u32,
    /// Query heads per KV head.
    pub group: u32,
    pub n_head: u32,
    /// Positions each slot holds.
    pub ctx: u32,
}

impl RowAttention {
    /// The specialisation values.
    pub fn spec(&self) -> Vec<crate::codegen::SpecValue> {
        attention_rows::Spec {
            d: self.head_dim,
            g: self.group,
            block: self.head_dim,
        }
        .values()
    }

    /// Attention of `m` rows, each over its own slot (`slot`) up to its position (`pos`).
    #[allow(clippy::too_many_arguments)]
    pub fn launch(
        &self,
        dev: &crate::runtime::Device,
        q: &crate::runtime::Buffer<f32>,
        kc: &crate::runtime::Buffer<half::f16>,
        vc: &crate::runtime::Buffer<half::f16>,
        pos: &crate::runtime::Buffer<u32>,
        slot: &crate::runtime::Buffer<u32>,
        out: &mut crate::runtime::Buffer<half::f16>,
        m: u32,
    ) -> Result<(), crate::runtime::Error> {
        super::flash::check_heads("attention_rows", self.head_dim, self.group, self.n_head)?;
        let scale = std::f64::consts::LOG2_E / (self.head_dim as f64).sqrt();
        dev.launch(
            attention_rows::definition(),
            &self.spec(),
            (self.n_head, m).into(),
            &[
                q.into(),
                kc.into(),
                vc.into(),
                pos.into(),
                slot.into(),
                out.into(),
                self.n_head.into(),
                (self.n_head / self.group).into(),
                self.ctx.into(),
                (scale as f32).into(),
            ],
        )
    }
}
