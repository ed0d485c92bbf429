//! Prompt processing: a prompt goes through the model in chunks of up to `ubatch` tokens,
//! every chunk's rows at once (the tiled products on the matrix cores and causal flash
//! attention), writing the KV cache from the engine's current position on, so a prompt
//! can extend a conversation already in the cache. The last token's logits and greedy
//! choice come from the decode step's head, after which decoding continues from the graph.

use super::{Engine, EngineError, Op};
use greta::kernels::decode;
use greta::kernels::flash::PrefillAttention;
use greta::kernels::gemm::{Gemm, Output, QkvRows};
use greta::kernels::matvec::{Epilogue, Rope};
use greta::kernels::norm;
use greta::runtime::Buffer;
use half::f16;

/// Prompt tokens per chunk by default (llama-bench's default ubatch).
pub const UBATCH: usize = 512;

/// One launch of prompt processing over a chunk's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillOp {
    /// Token embeddings into the rows of the residual stream.
    Embed,
    /// Attention RMSNorm into f16 rows.
    AttnNorm(usize),
    /// Q and K (RoPE, K into the cache), then V into the cache.
    Qkv(usize),
    /// Causal attention over the cache.
    Attention(usize),
    /// Output projection added to the residual stream.
    OutProj(usize),
    /// FFN RMSNorm into f16 rows.
    FfnNorm(usize),
    /// Gate and up projections with SwiGLU.
    GateUp(usize),
    /// Down projection added to the residual stream.
    Down(usize),
    /// The last row of the residual stream into the decode step's vector.
    LastRow,
}

impl PrefillOp {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            PrefillOp::Embed => "embed",
            PrefillOp::AttnNorm(_) => "attn_norm",
            PrefillOp::Qkv(_) => "qkv+rope",
            PrefillOp::Attention(_) => "attention",
            PrefillOp::OutProj(_) => "attn_output+residual",
            PrefillOp::FfnNorm(_) => "ffn_norm",
            PrefillOp::GateUp(_) => "ffn_gate_up+swiglu",
            PrefillOp::Down(_) => "ffn_down+residual",
            PrefillOp::LastRow => "last_row",
        }
    }

    /// The transformer block the op belongs to.
    pub fn layer(&self) -> Option<usize> {
        match self {
            PrefillOp::AttnNorm(l)
            | PrefillOp::Qkv(l)
            | PrefillOp::Attention(l)
            | PrefillOp::OutProj(l)
            | PrefillOp::FfnNorm(l)
            | PrefillOp::GateUp(l)
            | PrefillOp::Down(l) => Some(*l),
            PrefillOp::Embed | PrefillOp::LastRow => None,
        }
    }

    /// The DSL kernel the op launches (the first, for QKV's two products).
    pub fn kernel(&self) -> &'static greta::codegen::KernelDef {
        match self {
            PrefillOp::Embed => decode::embed::definition(),
            PrefillOp::AttnNorm(_) | PrefillOp::FfnNorm(_) => norm::rmsnorm::definition(),
            PrefillOp::Attention(_) => greta::kernels::flash::attention_prefill::definition(),
            PrefillOp::LastRow => decode::take_row::definition(),
            _ => greta::kernels::gemm::gemm::definition(),
        }
    }
}

/// The rows of one chunk on the device (allocated on the first prompt).
pub(super) struct PrefillState {
    rows: usize,
    tok: Buffer<u32>,
    h: Buffer<f32>,
    xn: Buffer<f16>,
    q: Buffer<f32>,
    attn: Buffer<f16>,
    ffn: Buffer<f16>,
}

/// A chunk's output rows as the tracer reads them.
pub enum Rows<'a> {
    F32(&'a Buffer<f32>),
    F16(&'a Buffer<f16>),
}

impl Engine {
    /// Why prompts cannot go through the tiled products on this model (they are then fed
    /// token by token through the decode step), or `None`.
    pub fn prefill_unsupported(&self) -> Option<String> {
        let dev = &self.dev;
        let cfg = &self.cfg;
        let target = dev.target();
        for (l, layer) in self.w.layers.iter().enumerate() {
            for (m, epi, n) in [
                (&layer.wqk, Epilogue::Qkv, layer.wqk.rows),
                (&layer.wv, Epilogue::Qkv, layer.wv.rows),
                (&layer.wo, Epilogue::Add, layer.wo.rows),
                (&layer.w_gate_up, Epilogue::Swiglu, layer.w_gate_up.rows),
                (&layer.w_down, Epilogue::Add, layer.w_down.rows),
            ] {
                if let Err(e) = Gemm::new(m.fmt, epi, &target, UBATCH as u32).check(dev, n, m.cols)
                {
                    return Some(format!("layer {l}: {e}"));
                }
            }
        }
        if !cfg.n_head.is_multiple_of(cfg.n_head_kv) {
            return Some(format!(
                "{} heads do not group into {} KV heads",
                cfg.n_head, cfg.n_head_kv
            ));
        }
        None
    }

    /// Whether a prompt of `len` tokens goes through prompt processing: the model allows it
    /// and the prompt is long enough that it beats as many decode steps (`set_prefill_from`).
    pub fn uses_prefill(&self, len: usize) -> bool {
        len >= self.prefill_from && self.prefill_unsupported().is_none()
    }

    /// Sends prompts of at least `n` tokens through prompt processing, shorter ones token by
    /// token through the decode graph.
    pub fn set_prefill_from(&mut self, n: usize) {
        self.prefill_from = n.max(1);
    }

    /// Processes prompts in chunks of at most `n` tokens (at least 1).
    pub fn set_ubatch(&mut self, n: usize) {
        self.ubatch = n.max(1);
    }

    /// The launches that process one chunk, in order.
    pub fn prefill_ops(&self) -> Vec<PrefillOp> {
        let mut ops = vec![PrefillOp::Embed];
        for l in 0..self.cfg.n_layer {
            ops.extend([
                PrefillOp::AttnNorm(l),
                PrefillOp::Qkv(l),
                PrefillOp::Attention(l),
                PrefillOp::OutProj(l),
                PrefillOp::FfnNorm(l),
                PrefillOp::GateUp(l),
                PrefillOp::Down(l),
            ]);
        }
        ops
    }

    /// Processes `tokens` at positions `position()..`: each chunk's rows through every
    /// layer, the KV cache written. Ends like a decode step of the last token: its logits
    /// and greedy choice are ready, and the position is past the prompt.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
        self.prefill_with(tokens, |_, _, _| Ok::<(), EngineError>(()))
    }

    /// `prefill`, calling `after(engine, op, rows)` after every launch of every chunk of
    /// `rows` tokens (the tracer reads each op's rows there).
    pub fn prefill_with<E: From<EngineError>>(
        &mut self,
        tokens: &[u32],
        mut after: impl FnMut(&Engine, PrefillOp, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(last) = tokens.len().checked_sub(1) else {
            return Ok(());
        };
        let start = self.pos;
        if start + tokens.len() > self.ctx {
            return Err(EngineError::ContextFull {
                pos: start + last,
                ctx: self.ctx,
            }
            .into());
        }
        if let Some(why) = self.prefill_unsupported() {
            return Err(EngineError::Unsupported(format!("prompt processing: {why}")).into());
        }
        self.ensure_prefill_state()?;
        let mut rows = 0;
        let ubatch = self.ubatch;
        for (i, chunk) in tokens.chunks(ubatch).enumerate() {
            let pos0 = start + i * ubatch;
            let p = self.prefill.as_mut().expect("allocated above");
            self.dev
                .write(&mut p.tok, 0, chunk)
                .map_err(EngineError::from)?;
            for op in self.prefill_ops() {
                self.run_prefill_op(op, chunk.len(), pos0)?;
                after(self, op, chunk.len())?;
            }
            rows = chunk.len();
        }
        self.run_prefill_op(PrefillOp::LastRow, rows, start + last)?;
        after(self, PrefillOp::LastRow, 1)?;
        // The head and the greedy choice of a decode step at the last prompt position.
        let p_last = start + last;
        self.dev
            .write(&mut self.s.pos, 0, &[p_last as u32])
            .map_err(EngineError::from)?;
        self.pos = p_last;
        self.run_op(Op::LmHead)?;
        self.run_op(Op::Argmax)?;
        Ok(())
    }

    fn ensure_prefill_state(&mut self) -> Result<(), EngineError> {
        let rows = self.ubatch.min(self.ctx);
        if self.prefill.as_ref().is_some_and(|p| p.rows >= rows) {
            return Ok(());
        }
        let (dev, cfg) = (&self.dev, &self.cfg);
        let q_rows = cfg.n_head * cfg.head_dim;
        self.prefill = Some(PrefillState {
            rows,
            tok: dev.alloc(rows)?,
            h: dev.alloc(rows * cfg.n_embd)?,
            xn: dev.alloc(rows * cfg.n_embd)?,
            q: dev.alloc(rows * q_rows)?,
            attn: dev.alloc(rows * q_rows)?,
            ffn: dev.alloc(rows * cfg.n_ff)?,
        });
        Ok(())
    }

    /// The rows an op writes (for the tracer): `m` rows of the returned width.
    pub fn prefill_output(&self, op: PrefillOp) -> Option<(Rows<'_>, usize)> {
        let p = self.prefill.as_ref()?;
        let cfg = &self.cfg;
        Some(match op {
            PrefillOp::Embed | PrefillOp::OutProj(_) | PrefillOp::Down(_) => {
                (Rows::F32(&p.h), cfg.n_embd)
            }
            PrefillOp::AttnNorm(_) | PrefillOp::FfnNorm(_) => (Rows::F16(&p.xn), cfg.n_embd),
            PrefillOp::Qkv(_) => (Rows::F32(&p.q), cfg.n_head * cfg.head_dim),
            PrefillOp::Attention(_) => (Rows::F16(&p.attn), cfg.n_head * cfg.head_dim),
            PrefillOp::GateUp(_) => (Rows::F16(&p.ffn), cfg.n_ff),
            PrefillOp::LastRow => (Rows::F32(&self.s.h), cfg.n_embd),
        })
    }

    /// Launches one op over `m` rows whose first sits at position `pos0` (for `LastRow`,
    /// `m` is the chunk's row count).
    fn run_prefill_op(&mut self, op: PrefillOp, m: usize, pos0: usize) -> Result<(), EngineError> {
        let cfg = &self.cfg;
        let dev = &self.dev;
        let target = dev.target();
        let p = self
            .prefill
            .as_mut()
            .expect("allocated before the first op");
        let mu = m as u32;
        let (embd, ff) = (cfg.n_embd as u32, cfg.n_ff as u32);
        match op {
            PrefillOp::Embed => self.w.token_embd.embed(dev, &p.tok, &mut p.h, mu)?,
            PrefillOp::AttnNorm(l) | PrefillOp::FfnNorm(l) => {
                let layer = &self.w.layers[l];
                let w = if matches!(op, PrefillOp::AttnNorm(_)) {
                    &layer.attn_norm
                } else {
                    &layer.ffn_norm
                };
                norm::rmsnorm::launch::<f16, 256>(dev, mu, &p.h, w, &mut p.xn, embd, cfg.rms_eps)?;
            }
            PrefillOp::Qkv(l) => {
                let layer = &self.w.layers[l];
                let rope = Rope {
                    q_rows: (cfg.n_head * cfg.head_dim) as u32,
                    head_dim: cfg.head_dim as u32,
                    ctx: self.ctx as u32,
                    base: cfg.rope_freq_base,
                };
                let rows_a = layer.wqk.rows;
                for (m_, row_base) in [(&layer.wqk, 0), (&layer.wv, rows_a)] {
                    let out = Output::Qkv {
                        q: &mut p.q,
                        kc: &mut self.s.kc[l],
                        vc: &mut self.s.vc[l],
                        rows: QkvRows {
                            row_base,
                            rows_a,
                            rope,
                            pos0: pos0 as u32,
                        },
                    };
                    Gemm::new(m_.fmt, Epilogue::Qkv, &target, mu)
                        .launch(dev, &p.xn, &m_.buf, out, mu, m_.rows, m_.cols)?;
                }
            }
            PrefillOp::Attention(l) => {
                let att = PrefillAttention {
                    head_dim: cfg.head_dim as u32,
                    group: (cfg.n_head / cfg.n_head_kv) as u32,
                    n_head: cfg.n_head as u32,
                    ctx: self.ctx as u32,
                };
                att.launch(
                    dev,
                    &p.q,
                    &self.s.kc[l],
                    &self.s.vc[l],
                    &mut p.attn,
                    mu,
                    pos0 as u32,
                )?;
            }
            PrefillOp::OutProj(l) => {
                let w = &self.w.layers[l].wo;
                Gemm::new(w.fmt, Epilogue::Add, &target, mu).launch(
                    dev,
                    &p.attn,
                    &w.buf,
                    Output::F32(&mut p.h, embd),
                    mu,
                    w.rows,
                    w.cols,
                )?;
            }
            PrefillOp::GateUp(l) => {
                let w = &self.w.layers[l].w_gate_up;
                Gemm::new(w.fmt, Epilogue::Swiglu, &target, mu).launch(
                    dev,
                    &p.xn,
                    &w.buf,
                    Output::F16(&mut p.ffn, ff),
                    mu,
                    w.rows,
                    w.cols,
                )?;
            }
            PrefillOp::Down(l) => {
                let w = &self.w.layers[l].w_down;
                Gemm::new(w.fmt, Epilogue::Add, &target, mu).launch(
                    dev,
                    &p.ffn,
                    &w.buf,
                    Output::F32(&mut p.h, embd),
                    mu,
                    w.rows,
                    w.cols,
                )?;
            }
            PrefillOp::LastRow => {
                let _ = pos0;
                decode::take_row::launch(
                    dev,
                    embd.div_ceil(256),
                    &p.h,
                    &mut self.s.h,
                    mu - 1,
                    embd,
                )?;
            }
        }
        Ok(())
    }
}
