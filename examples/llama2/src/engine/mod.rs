//! The forward pass on a GRETA device: a decode step is a fixed sequence of DSL kernels
//! over device buffers. Everything that changes per token (the token, the position) lives
//! in device memory and is updated by the kernels themselves (the argmax writes the next
//! token and advances the position), so one captured graph replays every step of a length
//! range (attention switches kernels once, for long sequences: a second graph).

pub mod batch;
pub mod prefill;
pub mod weights;

use crate::config::{LlamaConfig, LlamaWeights};
use greta::codegen::KernelDef;
use greta::kernels::attention::{Attention, AttentionKernel, AttentionScratch};
use greta::kernels::decode;
use greta::kernels::matvec::{self, Inputs, Matvec, Rope};
use greta::runtime::{Buffer, Device, Graph};
use greta_gguf::Gguf;
use half::f16;
use weights::{GpuMatrix, GpuWeights, WeightError};

/// Why the engine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Device(#[from] greta::runtime::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("position {pos} is past the context of {ctx} tokens")]
    ContextFull { pos: usize, ctx: usize },
    #[error("a KV cache of {ctx} positions: it must hold between 1 and the model's context of {n_ctx} tokens")]
    BadContext { ctx: usize, n_ctx: usize },
    #[error("generating {tokens} tokens from position {depth} needs {} positions, but the context holds {ctx}", depth + tokens)]
    GenerationTooLong {
        depth: usize,
        tokens: usize,
        ctx: usize,
    },
    #[error("the prompt is {prompt} tokens, but the context holds {ctx} (from position {start}, {left} are left)")]
    PromptTooLong {
        prompt: usize,
        start: usize,
        left: usize,
        ctx: usize,
    },
}

/// Refuses a model the kernels cannot run, or a cache of `ctx` positions it cannot have.
fn check_supported(cfg: &LlamaConfig, ctx: usize) -> Result<(), EngineError> {
    if ctx == 0 || ctx > cfg.n_ctx {
        return Err(EngineError::BadContext {
            ctx,
            n_ctx: cfg.n_ctx,
        });
    }
    if cfg.rope_dim != cfg.head_dim {
        return Err(EngineError::Unsupported(format!(
            "partial RoPE ({} of {} dimensions) is not supported",
            cfg.rope_dim, cfg.head_dim
        )));
    }
    if !matches!(cfg.head_dim, 64 | 128) {
        return Err(EngineError::Unsupported(format!(
            "head size {} is not supported (64 or 128)",
            cfg.head_dim
        )));
    }
    Ok(())
}

/// One kernel launch of the decode step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Token embedding lookup into the residual stream.
    Embed,
    /// Attention RMSNorm + Q, K, V projections + RoPE + KV-cache write.
    Qkv(usize),
    /// Attention over the cache.
    Attention(usize),
    /// Output projection added to the residual stream.
    OutProj(usize),
    /// FFN RMSNorm + gate and up projections + SwiGLU.
    GateUp(usize),
    /// Down projection added to the residual stream.
    Down(usize),
    /// Final RMSNorm + output head.
    LmHead,
    /// Greedy token selection; advances the position.
    Argmax,
}

impl Op {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Embed => "embed",
            Op::Qkv(_) => "qkv+rope",
            Op::Attention(_) => "attention",
            Op::OutProj(_) => "attn_output+residual",
            Op::GateUp(_) => "ffn_gate_up+swiglu",
            Op::Down(_) => "ffn_down+residual",
            Op::LmHead => "output_norm+lm_head",
            Op::Argmax => "argmax",
        }
    }

    /// The transformer block the op belongs to.
    pub fn layer(&self) -> Option<usize> {
        match self {
            Op::Qkv(l) | Op::Attention(l) | Op::OutProj(l) | Op::GateUp(l) | Op::Down(l) => {
                Some(*l)
            }
            Op::Embed | Op::LmHead | Op::Argmax => None,
        }
    }

    /// The DSL kernel the op launches.
    pub fn kernel(&self) -> &'static KernelDef {
        match self {
            Op::Embed => decode::embed::definition(),
            Op::Attention(_) => greta::kernels::attention::attention::definition(),
            Op::Argmax => decode::argmax::definition(),
            _ => matvec::matvec::definition(),
        }
    }
}

/// Buffers of the decode step.
struct State {
    tok: Buffer<u32>,
    pos: Buffer<u32>,
    history: Buffer<u32>,
    h: Buffer<f32>,
    q: Buffer<f32>,
    attn: Buffer<f32>,
    ffn: Buffer<f32>,
    logits: Buffer<f32>,
    kc: Vec<Buffer<f16>>,
    vc: Vec<Buffer<f16>>,
    scratch: AttentionScratch,
}

/// A Llama model loaded on a device, ready to decode.
pub struct Engine {
    dev: Device,
    cfg: LlamaConfig,
    ctx: usize,
    w: GpuWeights,
    s: State,
    attention: Attention,
    /// The position the next step writes, as the device holds it (the argmax advances
    /// both).
    pos: usize,
    /// The captured step for each attention kernel, captured on first use.
    graphs: [Option<Graph>; 2],
    /// The rows of a prompt chunk, allocated by the first prompt.
    prefill: Option<prefill::PrefillState>,
    /// Prompt tokens per chunk.
    ubatch: usize,
    /// The shortest prompt that goes through prompt processing.
    prefill_from: usize,
}

impl Engine {
    /// Uploads the model in `g` to `dev` with a KV cache of `ctx` positions; `progress`
    /// receives uploaded byte counts.
    pub fn new<B: AsRef<[u8]>>(
        dev: Device,
        g: &Gguf<B>,
        cfg: &LlamaConfig,
        ctx: usize,
        progress: impl FnMut(u64),
    ) -> Result<Engine, EngineError> {
        check_supported(cfg, ctx)?;
        let weights = LlamaWeights::from_gguf(g, cfg)?;
        let w = GpuWeights::upload(&dev, &weights, progress)?;
        let attention = Attention::new(
            cfg.head_dim as u32,
            (cfg.n_head / cfg.n_head_kv) as u32,
            cfg.n_head_kv as u32,
            ctx as u32,
        );
        let cache = cfg.n_head_kv * ctx * cfg.head_dim;
        let zeros = vec![f16::ZERO; cache];
        let s = State {
            tok: dev.upload(&[0u32])?,
            pos: dev.upload(&[0u32])?,
            history: dev.upload(&vec![0u32; ctx + 1])?,
            h: dev.alloc(cfg.n_embd)?,
            q: dev.alloc(cfg.n_head * cfg.head_dim)?,
            attn: dev.alloc(cfg.n_head * cfg.head_dim)?,
            ffn: dev.alloc(cfg.n_ff)?,
            logits: dev.alloc(cfg.n_vocab)?,
            kc: (0..cfg.n_layer)
                .map(|_| dev.upload(&zeros))
                .collect::<Result<_, _>>()?,
            vc: (0..cfg.n_layer)
                .map(|_| dev.upload(&zeros))
                .collect::<Result<_, _>>()?,
            scratch: attention.scratch(&dev, 1)?,
        };
        let prefill_from = if dev.kind() == greta::runtime::BackendKind::Cpu {
            2
        } else {
            6
        };
        Ok(Engine {
            dev,
            cfg: cfg.clone(),
            ctx,
            w,
            s,
            attention,
            pos: 0,
            graphs: [None, None],
            prefill: None,
            ubatch: prefill::UBATCH,
            // On the H100 a 3-token prompt takes 8.8 ms through prompt processing and 5.3 ms
            // as three replayed decode steps (the small-row products are far from their
            // bandwidth floor); 6 tokens are about even. The CPU interpreter dequantises
            // weights once per prompt instead of once per token: two tokens already gain.
            prefill_from,
        })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Positions the KV cache holds.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Runs the long-sequence attention kernel from sequences of `len` positions on
    /// (instead of the length measured best on the H100).
    pub fn set_long_attention_from(&mut self, len: u32) {
        self.attention.long_from = len;
    }

    /// The launches of one decode step, in order.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = vec![Op::Embed];
        for l in 0..self.cfg.n_layer {
            ops.extend([
                Op::Qkv(l),
                Op::Attention(l),
                Op::OutProj(l),
                Op::GateUp(l),
                Op::Down(l),
            ]);
        }
        ops.extend([Op::LmHead, Op::Argmax]);
        ops
    }

    /// The vector an op writes (for the tracer), `None` for the argmax.
    pub fn op_output(&self, op: Op) -> Option<&Buffer<f32>> {
        match op {
            Op::Embed | Op::OutProj(_) | Op::Down(_) => Some(&self.s.h),
            Op::Qkv(_) => Some(&self.s.q),
            Op::Attention(_) => Some(&self.s.attn),
            Op::GateUp(_) => Some(&self.s.ffn),
            Op::LmHead => Some(&self.s.logits),
            Op::Argmax => None,
        }
    }

    /// The attention kernel the next step runs.
    fn attention_kernel(&self) -> AttentionKernel {
        self.attention.kernel_for(self.pos as u32 + 1)
    }

    /// Launches one op. A step starts with `Op::Embed`, which fails once the cache is full,
    /// and ends with `Op::Argmax`, which advances the position.
    pub fn run_op(&mut self, op: Op) -> Result<(), EngineError> {
        if op == Op::Embed && self.pos >= self.ctx {
            return Err(EngineError::ContextFull {
                pos: self.pos,
                ctx: self.ctx,
            });
        }
        let attention_kernel = self.attention_kernel();
        let cfg = &self.cfg;
        let s = &mut self.s;
        let dev = &self.dev;
        let eps = cfg.rms_eps;
        let no_rope = Rope {
            q_rows: 0,
            head_dim: 2,
            ctx: 1,
            base: cfg.rope_freq_base,
        };
        // One matrix times `x`, normalised by `nw` when given (otherwise `x` stands in for
        // the unused norm weights), with `epilogue` into `y`.
        let product = |m: &GpuMatrix,
                       epilogue: matvec::Epilogue,
                       x: &Buffer<f32>,
                       nw: Option<&Buffer<f32>>,
                       y: &mut Buffer<f32>| {
            Matvec::new(m.fmt, nw.is_some(), epilogue).launch(
                dev,
                &m.buf,
                &m.buf,
                x,
                nw.unwrap_or(x),
                y,
                None,
                Inputs::ONE,
                m.rows,
                0,
                m.cols,
                eps,
                no_rope,
            )
        };
        match op {
            Op::Embed => self.w.token_embd.embed(dev, &s.tok, &mut s.h, 1)?,
            Op::Qkv(l) => {
                let layer = &self.w.layers[l];
                let mv = Matvec {
                    fmt_b: layer.wv.fmt,
                    ..Matvec::new(layer.wqk.fmt, true, matvec::Epilogue::Qkv)
                };
                let rope = Rope {
                    q_rows: (cfg.n_head * cfg.head_dim) as u32,
                    head_dim: cfg.head_dim as u32,
                    ctx: self.ctx as u32,
                    base: cfg.rope_freq_base,
                };
                mv.launch(
                    dev,
                    &layer.wqk.buf,
                    &layer.wv.buf,
                    &s.h,
                    &layer.attn_norm,
                    &mut s.q,
                    Some((&mut s.kc[l], &mut s.vc[l], &s.pos)),
                    Inputs::ONE,
                    layer.wqk.rows,
                    layer.wv.rows,
                    layer.wqk.cols,
                    eps,
                    rope,
                )?;
            }
            Op::Attention(l) => {
                self.attention.launch(
                    dev,
                    attention_kernel,
                    &s.q,
                    &s.kc[l],
                    &s.vc[l],
                    &s.pos,
                    Inputs::ONE,
                    &mut s.scratch,
                    &mut s.attn,
                )?;
            }
            Op::OutProj(l) => product(
                &self.w.layers[l].wo,
                matvec::Epilogue::Add,
                &s.attn,
                None,
                &mut s.h,
            )?,
            Op::GateUp(l) => {
                let layer = &self.w.layers[l];
                let nw = Some(&layer.ffn_norm);
                product(
                    &layer.w_gate_up,
                    matvec::Epilogue::Swiglu,
                    &s.h,
                    nw,
                    &mut s.ffn,
                )?;
            }
            Op::Down(l) => product(
                &self.w.layers[l].w_down,
                matvec::Epilogue::Add,
                &s.ffn,
                None,
                &mut s.h,
            )?,
            Op::LmHead => {
                let nw = Some(&self.w.output_norm);
                product(
                    &self.w.output,
                    matvec::Epilogue::Store,
                    &s.h,
                    nw,
                    &mut s.logits,
                )?;
            }
            Op::Argmax => {
                decode::argmax::launch::<1024>(
                    dev,
                    1,
                    &s.logits,
                    cfg.n_vocab as u32,
                    &mut s.tok,
                    &mut s.history,
                    &mut s.pos,
                )?;
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// Runs one decode step launch by launch (no graph).
    pub fn step_eager(&mut self) -> Result<(), EngineError> {
        for op in self.ops() {
            self.run_op(op)?;
        }
        Ok(())
    }

    /// Runs one decode step by replaying the captured graph (captured on first use, after
    /// an eager step has compiled and loaded every kernel).
    pub fn step(&mut self) -> Result<(), EngineError> {
        if self.pos >= self.ctx {
            return Err(EngineError::ContextFull {
                pos: self.pos,
                ctx: self.ctx,
            });
        }
        let slot = self.attention_kernel() as usize;
        if self.graphs[slot].is_none() {
            let pos = self.pos;
            let tok = self.last_token()?;
            self.step_eager()?;
            self.set_state(tok, pos)?;
            let ops = self.ops();
            let dev = self.dev.clone();
            let mut failure = None;
            let graph = dev.capture(|_| {
                for op in ops {
                    if let Err(e) = self.run_op(op) {
                        failure = Some(e);
                        break;
                    }
                }
                Ok(())
            })?;
            // Capturing ran nothing on the device.
            self.pos = pos;
            if let Some(e) = failure {
                return Err(e);
            }
            self.graphs[slot] = Some(graph);
        }

        let graph = self.graphs[slot].as_ref().expect("captured above");
        self.dev.replay(graph)?;
        self.pos += 1;
        Ok(())
    }

    /// Sets the token the next step consumes and the position it is written at.
    pub fn set_state(&mut self, tok: u32, pos: usize) -> Result<(), EngineError> {
        if pos >= self.ctx {
            return Err(EngineError::ContextFull { pos, ctx: self.ctx });
        }
        self.dev.write(&mut self.s.tok, 0, &[tok])?;
        self.dev.write(&mut self.s.pos, 0, &[pos as u32])?;
        self.pos = pos;
        Ok(())
    }

    /// The token the last step selected (or the one set for the next step).
    pub fn last_token(&self) -> Result<u32, EngineError> {
        Ok(self.dev.download(&self.s.tok)?[0])
    }

    /// The current position (advanced by each step).
    pub fn position(&self) -> Result<usize, EngineError> {
        Ok(self.pos)
    }

    /// Tokens selected by greedy steps, by the position that produced them.
    pub fn history(&self) -> Result<Vec<u32>, EngineError> {
        Ok(self.dev.download(&self.s.history)?)
    }

    /// The logits of the last step.
    pub fn logits(&self) -> Result<Vec<f32>, EngineError> {
        Ok(self.dev.download(&self.s.logits)?)
    }

    /// Downloads an op's output vector.
    pub fn read(&self, buf: &Buffer<f32>) -> Result<Vec<f32>, EngineError> {
        Ok(self.dev.download(buf)?)
    }
}
