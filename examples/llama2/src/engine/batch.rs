//! Batched forward passes for serving: every row of a step is one token of some sequence,
//! at its own position in its own KV-cache slot. A step may mix sequences that decode (one
//! row each) with a chunk of a new sequence's prompt (consecutive rows of one slot), so
//! prompts join running streams between steps without stalling them for more than a chunk.
//!
//! The products are the prompt path's tiled kernels at `m` = the step's rows; RoPE with
//! the cache write, attention and the greedy choice run per row (`greta::kernels::batch`).
//! Steps of up to 64 rows replay a graph captured per batch-size bucket, padded with rows
//! of a spare slot that no sequence owns.
//!
//! Batched equals alone, exactly: every product uses one tile whatever the step's rows, so
//! each output element is summed in the same order for any batch; attention, RoPE and the
//! argmax read only their own row. A sequence's tokens therefore do not depend on which
//! other sequences share its steps.

use super::weights::{GpuMatrix, GpuWeights};
use super::{check_supported, EngineError};
use crate::config::{LlamaConfig, LlamaWeights};
use greta::codegen::Target;
use greta::kernels::batch::{self as rows_kernels, RowAttention};
use greta::kernels::gemm::{Gemm, Output, Tile};
use greta::kernels::matvec::{Epilogue, Rope};
use greta::kernels::norm;
use greta::quant::gpu::GpuFormat;
use greta::runtime::{Buffer, Device, Graph};
use greta_gguf::Gguf;
use half::f16;
use std::collections::HashMap;

/// The batch sizes whose steps replay a captured graph (a step's rows are padded up to the
/// next one).
pub const BUCKETS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// The rows every product's tile is chosen for, whatever a step holds (what makes batched
/// results equal alone ones).
const TILE_ROWS: u32 = 32;

/// One row of a step: `token` at position `pos` of the sequence in cache slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub token: u32,
    pub pos: u32,
    pub slot: u32,
}

/// Device buffers of a step's rows.
struct Rows {
    tok: Buffer<u32>,
    pos: Buffer<u32>,
    slot: Buffer<u32>,
    h: Buffer<f32>,
    xn: Buffer<f16>,
    qk: Buffer<f32>,
    v: Buffer<f32>,
    q: Buffer<f32>,
    attn: Buffer<f16>,
    ffn: Buffer<f16>,
    logits: Buffer<f32>,
    next: Buffer<u32>,
}

/// A Llama model on a device with `slots` KV-cache slots of `ctx` positions each.
pub struct BatchEngine {
    dev: Device,
    cfg: LlamaConfig,
    ctx: usize,
    slots: usize,
    max_rows: usize,
    w: GpuWeights,
    /// Per layer: `slots + 1` slots (the last one takes padding rows).
    kc: Vec<Buffer<f16>>,
    vc: Vec<Buffer<f16>>,
    r: Rows,
    graphs: HashMap<usize, Graph>,
    /// Rows of the last step.
    rows: usize,
    /// The products' tile, when not the library's choice for `TILE_ROWS` rows.
    tile: Option<Tile>,
}

impl BatchEngine {
    /// Uploads the model in `g` to `dev` with `slots` sequences of up to `ctx` positions
    /// and steps of up to `max_rows` rows; `progress` receives uploaded byte counts.
    pub fn new<B: AsRef<[u8]>>(
        dev: Device,
        g: &Gguf<B>,
        cfg: &LlamaConfig,
        ctx: usize,
        slots: usize,
        max_rows: usize,
        progress: impl FnMut(u64),
    ) -> Result<BatchEngine, EngineError> {
        check_supported(cfg, ctx)?;
        if slots == 0 || max_rows == 0 {
            return Err(EngineError::Unsupported(format!(
                "{slots} sequences with steps of {max_rows} rows: both must be at least 1"
            )));
        }
        let max_rows = max_rows.max(BUCKETS[BUCKETS.len() - 1]);
        let weights = LlamaWeights::from_gguf(g, cfg)?;
        let w = GpuWeights::upload(&dev, &weights, progress)?;
        let per_slot = cfg.n_head_kv * ctx * cfg.head_dim;
        let cache = (slots + 1)
            .checked_mul(per_slot)
            .filter(|n| *n <= u32::MAX as usize)
            .ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "{slots} slots of {ctx} positions overflow a cache's 32-bit indices"
                ))
            })?;
        let zeros = vec![f16::ZERO; cache];
        let kc = (0..cfg.n_layer)
            .map(|_| dev.upload(&zeros))
            .collect::<Result<_, _>>()?;
        let vc = (0..cfg.n_layer)
            .map(|_| dev.upload(&zeros))
            .collect::<Result<_, _>>()?;
        let (q_rows, kv_rows) = (cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim);
        let r = Rows {
            tok: dev.alloc(max_rows)?,
            pos: dev.alloc(max_rows)?,
            slot: dev.alloc(max_rows)?,
            h: dev.alloc(max_rows * cfg.n_embd)?,
            xn: dev.alloc(max_rows * cfg.n_embd)?,
            qk: dev.alloc(max_rows * (q_rows + kv_rows))?,
            v: dev.alloc(max_rows * kv_rows)?,
            q: dev.alloc(max_rows * q_rows)?,
            attn: dev.alloc(max_rows * q_rows)?,
            ffn: dev.alloc(max_rows * cfg.n_ff)?,
            logits: dev.alloc(max_rows * cfg.n_vocab)?,
            next: dev.alloc(max_rows)?,
        };
        let e = BatchEngine {
            dev,
            cfg: cfg.clone(),
            ctx,
            slots,
            max_rows,
            w,
            kc,
            vc,
            r,
            graphs: HashMap::new(),
            rows: 0,
            tile: None,
        };
        e.check_products()?;
        Ok(e)
    }

    /// Runs every product at `tile` instead of the library's choice (for tuning; fitted to
    /// the device's shared memory). Graphs captured before are dropped.
    pub fn set_tile(&mut self, tile: Tile) -> Result<(), EngineError> {
        self.tile = Some(tile.fitted(&self.dev.target()));
        self.graphs.clear();
        self.check_products()
    }

    /// The launch of a product of `fmt` weights with `epilogue`.
    fn gemm(&self, fmt: GpuFormat, epilogue: Epilogue) -> Gemm {
        gemm_at(self.tile, &self.dev.target(), fmt, epilogue)
    }

    /// Refuses matrices the products cannot take, naming the layer.
    fn check_products(&self) -> Result<(), EngineError> {
        let dev = &self.dev;
        for (l, layer) in self.w.layers.iter().enumerate() {
            for (m, epi) in [
                (&layer.wqk, Epilogue::Store),
                (&layer.wv, Epilogue::Store),
                (&layer.wo, Epilogue::Add),
                (&layer.w_gate_up, Epilogue::Swiglu),
                (&layer.w_down, Epilogue::Add),
            ] {
                self.gemm(m.fmt, epi)
                    .check(dev, m.rows, m.cols)
                    .map_err(|e| EngineError::Unsupported(format!("layer {l}: {e}")))?;
            }
        }
        let out = &self.w.output;
        self.gemm(out.fmt, Epilogue::Store)
            .check(dev, out.rows, out.cols)
            .map_err(|e| EngineError::Unsupported(format!("output head: {e}")))?;
        Ok(())
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Positions each slot holds.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Sequences the cache holds at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The most rows one step takes.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// Runs the model over `rows` (each row's K and V go into its slot at its position;
    /// rows of one slot must come in position order, and a row sees the positions before
    /// it in its slot, written by earlier steps or earlier rows of this one). Afterwards
    /// `tokens` and `logits` hold every row's greedy choice and logits.
    pub fn step(&mut self, rows: &[Row]) -> Result<(), EngineError> {
        if rows.is_empty() || rows.len() > self.max_rows {
            return Err(EngineError::Unsupported(format!(
                "a step of {} rows (1 to {} are possible)",
                rows.len(),
                self.max_rows
            )));
        }
        for row in rows {
            if row.slot as usize >= self.slots || row.pos as usize >= self.ctx {
                return Err(EngineError::Unsupported(format!(
                    "row {row:?}: slots are 0..{} and positions 0..{}",
                    self.slots, self.ctx
                )));
            }
        }
        self.run(rows)
    }

    /// Compiles every kernel and captures every bucket's graph on rows of the spare slot
    /// (no sequence's cache is touched), so that the first requests do not pay for it.
    pub fn warm_up(&mut self) -> Result<(), EngineError> {
        for b in BUCKETS {
            self.run(&vec![self.pad(); b])?;
        }
        Ok(())
    }

    /// A row of the spare slot: what pads a step up to its bucket.
    fn pad(&self) -> Row {
        Row {
            token: 0,
            pos: 0,
            slot: self.slots as u32,
        }
    }

    /// `step` on rows already checked.
    fn run(&mut self, rows: &[Row]) -> Result<(), EngineError> {
        let bucket = BUCKETS.iter().copied().find(|b| *b >= rows.len());
        let m = bucket.unwrap_or(rows.len());
        let pad = self.pad();
        let padded: Vec<Row> = rows
            .iter()
            .copied()
            .chain(std::iter::repeat(pad))
            .take(m)
            .collect();
        let column = |f: fn(&Row) -> u32| padded.iter().map(f).collect::<Vec<u32>>();
        self.dev.write(&mut self.r.tok, 0, &column(|r| r.token))?;
        self.dev.write(&mut self.r.pos, 0, &column(|r| r.pos))?;
        self.dev.write(&mut self.r.slot, 0, &column(|r| r.slot))?;
        self.rows = rows.len();
        match bucket {
            None => self.launch_all(m),
            Some(b) => {
                if !self.graphs.contains_key(&b) {
                    // The first step of a bucket runs eagerly (compiling and loading every
                    // kernel), then its launches are captured for replay.
                    self.launch_all(b)?;
                    let dev = self.dev.clone();
                    let mut failure = None;
                    let graph = dev.capture(|_| {
                        failure = self.launch_all(b).err();
                        Ok(())
                    })?;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    self.graphs.insert(b, graph);
                    return Ok(());
                }
                self.dev.replay(&self.graphs[&b])?;
                Ok(())
            }
        }
    }

    /// The greedy choice of every row of the last step.
    pub fn tokens(&self) -> Result<Vec<u32>, EngineError> {
        Ok(self.dev.read(&self.r.next, 0, self.rows)?)
    }

    /// The logits of every row of the last step, `n_vocab` per row.
    pub fn logits(&self) -> Result<Vec<f32>, EngineError> {
        Ok(self
            .dev
            .read(&self.r.logits, 0, self.rows * self.cfg.n_vocab)?)
    }

    /// The logits of row `row` of the last step.
    pub fn row_logits(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        if row >= self.rows {
            return Err(EngineError::Unsupported(format!(
                "row {row} of a step of {} rows",
                self.rows
            )));
        }
        let vocab = self.cfg.n_vocab;
        Ok(self.dev.read(&self.r.logits, row * vocab, vocab)?)
    }

    /// Every launch of a step of `m` rows.
    fn launch_all(&mut self, m: usize) -> Result<(), EngineError> {
        let (dev, cfg, r) = (&self.dev, &self.cfg, &mut self.r);
        let mu = m as u32;
        let (tile, target) = (self.tile, dev.target());
        let g = |mat: &GpuMatrix, epi| gemm_at(tile, &target, mat.fmt, epi);
        let (embd, ff) = (cfg.n_embd as u32, cfg.n_ff as u32);
        let (q_rows, kv_rows) = (
            (cfg.n_head * cfg.head_dim) as u32,
            (cfg.n_head_kv * cfg.head_dim) as u32,
        );
        self.w.token_embd.embed(dev, &r.tok, &mut r.h, mu)?;
        let rope = Rope {
            q_rows,
            head_dim: cfg.head_dim as u32,
            ctx: self.ctx as u32,
            base: cfg.rope_freq_base,
        };
        let attention = RowAttention {
            head_dim: cfg.head_dim as u32,
            group: (cfg.n_head / cfg.n_head_kv) as u32,
            n_head: cfg.n_head as u32,
            ctx: self.ctx as u32,
        };
        let slot_len = kv_rows * self.ctx as u32;
        for (l, layer) in self.w.layers.iter().enumerate() {
            norm::rmsnorm::launch::<f16, 256>(
                dev,
                mu,
                &r.h,
                &layer.attn_norm,
                &mut r.xn,
                embd,
                cfg.rms_eps,
            )?;
            let rows_a = layer.wqk.rows;
            product(
                dev,
                mu,
                &layer.wqk,
                g(&layer.wqk, Epilogue::Store),
                &r.xn,
                Output::F32(&mut r.qk, rows_a),
            )?;
            product(
                dev,
                mu,
                &layer.wv,
                g(&layer.wv, Epilogue::Store),
                &r.xn,
                Output::F32(&mut r.v, kv_rows),
            )?;
            rows_kernels::qkv_rows::launch(
                dev,
                (((rows_a + kv_rows) / 2).div_ceil(256), mu),
                &r.qk,
                &r.v,
                &mut r.q,
                &mut self.kc[l],
                &mut self.vc[l],
                &r.pos,
                &r.slot,
                rows_a,
                kv_rows,
                q_rows,
                rope.head_dim,
                rope.ctx,
                slot_len,
                rope.step(),
            )?;
            attention.launch(
                dev,
                &r.q,
                &self.kc[l],
                &self.vc[l],
                &r.pos,
                &r.slot,
                &mut r.attn,
                mu,
            )?;
            product(
                dev,
                mu,
                &layer.wo,
                g(&layer.wo, Epilogue::Add),
                &r.attn,
                Output::F32(&mut r.h, embd),
            )?;
            norm::rmsnorm::launch::<f16, 256>(
                dev,
                mu,
                &r.h,
                &layer.ffn_norm,
                &mut r.xn,
                embd,
                cfg.rms_eps,
            )?;
            product(
                dev,
                mu,
                &layer.w_gate_up,
                g(&layer.w_gate_up, Epilogue::Swiglu),
                &r.xn,
                Output::F16(&mut r.ffn, ff),
            )?;
            product(
                dev,
                mu,
                &layer.w_down,
                g(&layer.w_down, Epilogue::Add),
                &r.ffn,
                Output::F32(&mut r.h, embd),
            )?;
        }
        norm::rmsnorm::launch::<f16, 256>(
            dev,
            mu,
            &r.h,
            &self.w.output_norm,
            &mut r.xn,
            embd,
            cfg.rms_eps,
        )?;
        let out = &self.w.output;
        product(
            dev,
            mu,
            out,
            g(out, Epilogue::Store),
            &r.xn,
            Output::F32(&mut r.logits, cfg.n_vocab as u32),
        )?;
        rows_kernels::argmax_rows::launch::<1024>(
            dev,
            mu,
            &r.logits,
            cfg.n_vocab as u32,
            &mut r.next,
        )?;
        Ok(())
    }
}

/// The launch of a product of `fmt` weights with `epilogue` at `tile`, or at the tile chosen
/// for batched steps (one per product whatever the rows, which keeps batched equal to
/// alone).
fn gemm_at(tile: Option<Tile>, target: &Target, fmt: GpuFormat, epilogue: Epilogue) -> Gemm {
    match tile {
        Some(tile) => Gemm {
            fmt,
            epilogue,
            tile,
        },
        // The gate/up product (SwiGLU) on NVIDIA: twice the columns per block with half
        // the K slices, measured 17% faster at 32 rows on the H100 (93 against 112 us);
        // on the other shapes the default is best.
        None if epilogue == Epilogue::Swiglu && target.wave == 32 => Gemm {
            fmt,
            epilogue,
            tile: Tile {
                bm: 32,
                bn: 64,
                wm: 2,
                ks: 4,
                dequant_at: 2,
                ahead: 1,
            }
            .fitted(target),
        },
        None => Gemm::new(fmt, epilogue, target, TILE_ROWS),
    }
}

/// `out = x · matᵀ` over `m` rows, launched as `gemm`.
fn product(
    dev: &Device,
    m: u32,
    mat: &GpuMatrix,
    gemm: Gemm,
    x: &Buffer<f16>,
    out: Output<'_>,
) -> Result<(), greta::runtime::Error> {
    gemm.launch(dev, x, &mat.buf, out, m, mat.rows, mat.cols)
}
