//! A plain-Rust f32 forward pass of a Llama model on the CPU, written from the model's
//! math alone: the reference the GPU kernels are checked against.
//!
//! Weights stay in their stored (possibly quantised) form in the mapped file; each matrix
//! row is dequantised when it is needed and dotted with the input in f64, one rayon task
//! per group of rows.

use greta::quant::{dequantize, GgmlType, QuantError};
use rayon::prelude::*;

use crate::config::{ConfigError, LayerWeights, LlamaConfig, LlamaWeights};
use greta_gguf::{Gguf, TensorView};

/// Rows each rayon task computes: enough to amortise the task and its row buffer, few
/// enough to balance the smallest matrices over the cores.
const ROWS_PER_TASK: usize = 16;

/// Why the reference forward pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// The model's configuration or tensors are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A weight row could not be decoded.
    #[error("tensor '{tensor}': {source}")]
    Quant {
        tensor: String,
        #[source]
        source: QuantError,
    },
    /// A tensor's data is shorter than its shape says.
    #[error("tensor '{tensor}' has no row {row}")]
    MissingRow { tensor: String, row: usize },
    /// A token id outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {n_vocab} tokens")]
    BadToken { token: u32, n_vocab: usize },
    /// A position past the next free one, or past the context length.
    #[error(
        "position {pos} is not available: {cached} positions are cached, context length {n_ctx}"
    )]
    BadPosition {
        pos: usize,
        cached: usize,
        n_ctx: usize,
    },
}

/// The key/value cache of one layer: `kv_dim` keys and values per cached position.
#[derive(Default)]
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Activation buffers, allocated once.
struct Scratch {
    /// The residual stream.
    x: Vec<f32>,
    /// The normalised residual, input of the projections.
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output, concatenated over heads.
    att: Vec<f32>,
    /// A projection's output before it is added to the residual.
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

/// Norm weights, decoded once at load time.
struct Norms {
    attn: Vec<Vec<f32>>,
    ffn: Vec<Vec<f32>>,
    output: Vec<f32>,
}

/// The reference forward pass over a model in a GGUF file, with its KV cache.
pub struct Oracle<'a> {
    config: LlamaConfig,
    weights: LlamaWeights<'a>,
    norms: Norms,
    /// RoPE inverse frequencies `base^(-2i/rope_dim)`, one per rotated pair.
    inv_freq: Vec<f64>,
    cache: Vec<LayerCache>,
    n_cached: usize,
    s: Scratch,
}

impl<'a> Oracle<'a> {
    /// Checks the model's tensors against `config` and prepares an empty KV cache.
    pub fn new<B: AsRef<[u8]>>(g: &'a Gguf<B>, config: &LlamaConfig) -> Result<Self, OracleError> {
        let weights = LlamaWeights::from_gguf(g, config)?;
        let per_layer = |pick: fn(&LayerWeights<'a>) -> TensorView<'a>| {
            weights
                .layers
                .iter()
                .map(|l| decode_all(&pick(l)))
                .collect::<Result<Vec<_>, _>>()
        };
        let norms = Norms {
            attn: per_layer(|l| l.attn_norm)?,
            ffn: per_layer(|l| l.ffn_norm)?,
            output: decode_all(&weights.output_norm)?,
        };
        let inv_freq = (0..config.rope_dim / 2)
            .map(|i| {
                f64::from(config.rope_freq_base).powf(-2.0 * i as f64 / config.rope_dim as f64)
            })
            .collect();
        // Every size below was checked against tensors present in the file, so these
        // allocations are bounded by the file's size.
        let (embd, kv) = (config.n_embd, config.kv_dim());
        let s = Scratch {
            x: vec![0.0; embd],
            xn: vec![0.0; embd],
            q: vec![0.0; embd],
            k: vec![0.0; kv],
            v: vec![0.0; kv],
            att: vec![0.0; embd],
            proj: vec![0.0; embd],
            gate: vec![0.0; config.n_ff],
            up: vec![0.0; config.n_ff],
        };
        Ok(Oracle {
            config: config.clone(),
            cache: (0..config.n_layer).map(|_| LayerCache::default()).collect(),
            weights,
            norms,
            inv_freq,
            n_cached: 0,
            s,
        })
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Number of positions in the KV cache.
    pub fn n_cached(&self) -> usize {
        self.n_cached
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Runs `token` at position `pos` and returns the logits of the next token. `pos` may
    /// be the next free position or an earlier one, which drops the cache from there on.
    pub fn forward(&mut self, token: u32, pos: usize) -> Result<Vec<f32>, OracleError> {
        self.forward_traced(token, pos, |_, _| {})
    }

    /// `forward`, showing `on_layer` the residual stream after each block.
    pub fn forward_traced(
        &mut self,
        token: u32,
        pos: usize,
        mut on_layer: impl FnMut(usize, &[f32]),
    ) -> Result<Vec<f32>, OracleError> {
        if pos > self.n_cached || pos >= self.config.n_ctx {
            return Err(OracleError::BadPosition {
                pos,
                cached: self.n_cached,
                n_ctx: self.config.n_ctx,
            });
        }
        if token as usize >= self.config.n_vocab {
            return Err(OracleError::BadToken {
                token,
                n_vocab: self.config.n_vocab,
            });
        }
        self.truncate(pos);
        let rope = self.rope_table(pos);
        let Oracle {
            config: cfg,
            weights,
            norms,
            cache,
            s,
            ..
        } = self;
        decode_row(&weights.token_embd, token as usize, &mut s.x)?;
        let blocks = weights.layers.iter().zip(cache.iter_mut());
        let block_norms = norms.attn.iter().zip(&norms.ffn);
        for (l, ((layer, cache), (attn_norm, ffn_norm))) in blocks.zip(block_norms).enumerate() {
            rms_norm(&s.x, attn_norm, cfg.rms_eps, &mut s.xn);
            matvec(&layer.attn_q, &s.xn, &mut s.q)?;
            matvec(&layer.attn_k, &s.xn, &mut s.k)?;
            matvec(&layer.attn_v, &s.xn, &mut s.v)?;
            apply_rope(&mut s.q, cfg.head_dim, &rope);
            apply_rope(&mut s.k, cfg.head_dim, &rope);
            cache.k.extend_from_slice(&s.k);
            cache.v.extend_from_slice(&s.v);
            attention(cfg, &s.q, cache, &mut s.att);
            matvec(&layer.attn_output, &s.att, &mut s.proj)?;
            add(&mut s.x, &s.proj);

            rms_norm(&s.x, ffn_norm, cfg.rms_eps, &mut s.xn);
            matvec(&layer.ffn_gate, &s.xn, &mut s.gate)?;
            matvec(&layer.ffn_up, &s.xn, &mut s.up)?;
            for (g, &u) in s.gate.iter_mut().zip(&s.up) {
                *g = silu(*g) * u;
            }
            matvec(&layer.ffn_down, &s.gate, &mut s.proj)?;
            add(&mut s.x, &s.proj);
            on_layer(l, &s.x);
        }
        rms_norm(&s.x, &norms.output, cfg.rms_eps, &mut s.xn);
        let mut logits = vec![0.0; cfg.n_vocab];
        matvec(&weights.output, &s.xn, &mut logits)?;
        self.n_cached = pos + 1;
        Ok(logits)
    }

    /// Drops cached positions from `n` on.
    fn truncate(&mut self, n: usize) {
        let len = n * self.config.kv_dim();
        for c in &mut self.cache {
            c.k.truncate(len);
            c.v.truncate(len);
        }
        self.n_cached = self.n_cached.min(n);
    }

    /// `(cos, sin)` of every rotated pair's angle at `pos`.
    fn rope_table(&self, pos: usize) -> Vec<(f32, f32)> {
        self.inv_freq
            .iter()
            .map(|&f| {
                let (sin, cos) = (pos as f64 * f).sin_cos();
                (cos as f32, sin as f32)
            })
            .collect()
    }
}

/// Decodes a whole (small) tensor.
fn decode_all(t: &TensorView) -> Result<Vec<f32>, OracleError> {
    let mut out = vec![0.0; row_len(t)];
    decode_row(t, 0, &mut out)?;
    Ok(out)
}

/// Elements per row: the innermost dimension.
fn row_len(t: &TensorView) -> usize {
    t.dims.first().map_or(0, |&d| d as usize)
}

/// Decodes row `row` of `t` into `out`, whose length is the row length.
fn decode_row(t: &TensorView, row: usize, out: &mut [f32]) -> Result<(), OracleError> {
    let ty: GgmlType = t.ggml_type;
    let row_bytes = out.len() / ty.block_elems() * ty.block_bytes();
    let bytes = t
        .bytes
        .get(row * row_bytes..(row + 1) * row_bytes)
        .ok_or_else(|| OracleError::MissingRow {
            tensor: t.name.to_owned(),
            row,
        })?;
    dequantize(ty, bytes, out).map_err(|source| OracleError::Quant {
        tensor: t.name.to_owned(),
        source,
    })
}

/// `out = W x`, where row `i` of `w` holds the weights of output `i`.
fn matvec(w: &TensorView, x: &[f32], out: &mut [f32]) -> Result<(), OracleError> {
    out.par_chunks_mut(ROWS_PER_TASK)
        .enumerate()
        .try_for_each_init(
            || vec![0.0; x.len()],
            |row, (task, ys)| {
                for (i, y) in ys.iter_mut().enumerate() {
                    decode_row(w, task * ROWS_PER_TASK + i, row)?;
                    *y = dot(row, x) as f32;
                }
                Ok(())
            },
        )
}

/// `a · b`: f32 products summed in independent f32 lanes (so the loop vectorises), the
/// lanes then summed in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 16;
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let rest: f64 = a_rest
        .iter()
        .zip(b_rest)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    acc.iter().map(|&v| f64::from(v)).sum::<f64>() + rest
}

/// `out = x / sqrt(mean(x²) + eps) * w`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mean_sq = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    let scale = (1.0 / (mean_sq + f64::from(eps)).sqrt()) as f32;
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * w;
    }
}

/// Rotates the adjacent pairs `(2i, 2i + 1)` of each head by the angles in `rope` (the
/// "normal" RoPE of GGUF Llama models, whose Q/K rows the converter already permuted).
fn apply_rope(v: &mut [f32], head_dim: usize, rope: &[(f32, f32)]) {
    for head in v.chunks_exact_mut(head_dim) {
        for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(rope) {
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0 * cos - x1 * sin;
            pair[1] = x0 * sin + x1 * cos;
        }
    }
}

/// Causal grouped-query attention of `q` over every cached position, per head.
fn attention(cfg: &LlamaConfig, q: &[f32], cache: &LayerCache, out: &mut [f32]) {
    let (hd, kv_dim, group) = (cfg.head_dim, cfg.kv_dim(), cfg.gqa_group());
    let scale = 1.0 / (hd as f64).sqrt();
    out.par_chunks_mut(hd)
        .zip(q.par_chunks(hd))
        .enumerate()
        .for_each(|(h, (out, q))| {
            let kv_off = h / group * hd;
            let keys = cache
                .k
                .chunks_exact(kv_dim)
                .map(|k| &k[kv_off..kv_off + hd]);
            let mut scores: Vec<f64> = keys.map(|k| dot(q, k) * scale).collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for s in &mut scores {
                *s = (*s - max).exp();
                sum += *s;
            }
            let mut acc = vec![0f64; hd];
            let values = cache
                .v
                .chunks_exact(kv_dim)
                .map(|v| &v[kv_off..kv_off + hd]);
            for (p, v) in scores.iter().zip(values) {
                for (a, &v) in acc.iter_mut().zip(v) {
                    *a += p / sum * f64::from(v);
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = a as f32;
            }
        });
}

/// `x += y`.
fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// The SiLU activation `x · sigmoid(x)`.
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_adjacent_pairs_by_position_times_frequency() {
        let base: f64 = 10000.0;
        let (pos, head_dim) = (3.0, 4);
        // Pair i turns by pos * base^(-2i / head_dim): 3 rad, then 3 / 100 rad.
        let rope: Vec<(f32, f32)> = [0.0, 2.0]
            .iter()
            .map(|&two_i: &f64| {
                let angle = pos * base.powf(-two_i / head_dim as f64);
                (angle.cos() as f32, angle.sin() as f32)
            })
            .collect();
        let mut v = [1.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.5, 0.0];
        apply_rope(&mut v, head_dim, &rope);
        let (c0, s0) = (3f32.cos(), 3f32.sin());
        let (c1, s1) = (0.03f32.cos(), 0.03f32.sin());
        let want = [
            c0,
            s0,
            -2.0 * s1,
            2.0 * c1,
            c0 - s0,
            s0 + c0,
            0.5 * c1,
            0.5 * s1,
        ];
        for (g, w) in v.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{v:?} vs {want:?}");
        }
    }

    #[test]
    fn rms_norm_scales_to_unit_root_mean_square_times_weight() {
        let mut out = [0.0; 4];
        rms_norm(
            &[3.0, -3.0, 3.0, -3.0],
            &[1.0, 2.0, 1.0, 0.5],
            0.0,
            &mut out,
        );
        assert_eq!(out, [1.0, -2.0, 1.0, -0.5]);
    }

    #[test]
    fn attention_weights_values_by_softmax_of_scaled_scores_per_kv_group() {
        // Two query heads share one KV head of width 2; two cached positions.
        let cfg = LlamaConfig {
            n_layer: 1,
            n_embd: 4,
            n_head: 2,
            n_head_kv: 1,
            n_ff: 4,
            n_ctx: 8,
            n_vocab: 4,
            head_dim: 2,
            rope_dim: 2,
            rope_freq_base: 10000.0,
            rms_eps: 1e-5,
        };
        let cache = LayerCache {
            k: vec![1.0, 0.0, 0.0, 1.0],
            v: vec![10.0, 0.0, 0.0, 20.0],
        };
        let s = 2f64.sqrt();
        // Head 0 scores (s, 0) / sqrt(2) = (1, 0); head 1 scores (0, 0).
        let q = [s as f32, 0.0, 0.0, 0.0];
        let mut out = [0.0; 4];
        attention(&cfg, &q, &cache, &mut out);
        let p = 1.0 / (1.0 + (-1f64).exp());
        let want = [10.0 * p, 20.0 * (1.0 - p), 5.0, 10.0];
        for (g, w) in out.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{out:?} vs {want:?}");
        }
    }

    #[test]
    fn dot_covers_whole_lanes_and_the_remainder() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b = vec![2.0; 37];
        assert_eq!(dot(&a, &b), 2.0 * (36.0 * 37.0 / 2.0));
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(2.0) - 2.0 / (1.0 + (-2f32).exp())).abs() < 1e-7);
    }
}
