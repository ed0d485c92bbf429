//! Batched forward passes for serving: every row of a step is one token of some sequence,
//! at its own position in its own KV-cache slot. A step may mix sequences that decode (one
//! row each) with a chunk of a new sequence's prompt (consecutive rows of one slot), so
//! prompts join running streams between steps without stalling them for more than a chunk.
//!
//! A step runs in two passes, its decode rows' and its prompt rows'. Prompt rows, and
//! decode passes of more than `matvec_rows` rows, go through the prompt path's tiled
//! kernels at `m` = their count (or, for decode passes, the few-row `skinny` products when
//! `DecodeProduct::Skinny` is chosen), with RoPE and the cache write per row; smaller
//! decode passes through the decode products over several input vectors (`matvec` at
//! `NX` > 1: each weight read once for a group of rows, the norm, RoPE and the cache write
//! fused as in decode). Attention and the greedy choice run per row (`greta::kernels::batch`). Each
//! pass of up to 64 rows replays a graph captured per batch-size bucket, padded with rows
//! of a spare slot that no sequence owns.
//!
//! A row's numbers depend only on which products its pass takes, never on the other rows
//! of its step: its matrix-vector sums are formed in the same order whatever its
//! neighbours and their number, every tiled product uses one tile whatever the rows, and
//! attention, RoPE and the argmax read only their own row (`skinny`'s sums do not depend
//! on the row count either). So batched equals alone exactly while the decode passes stay
//! on one side of `matvec_rows` (with `matvec_rows` 0, at every batch size); across it the two
//! products round differently (int8 against f16 activations), which can change a greedy
//! choice where two logits nearly tie (measured in docs/perf.md).

use super::weights::{GpuLayer, GpuMatrix, GpuWeights};
use super::{check_supported, EngineError};
use crate::config::{LlamaConfig, LlamaWeights};
use greta::codegen::Target;
use greta::kernels::attention::{Attention, AttentionKernel, AttentionScratch};
use greta::kernels::batch::{self as rows_kernels, RowAttention};
use greta::kernels::gemm::{Gemm, Output, Tile};
use greta::kernels::matvec::{Epilogue, Inputs, Matvec, Rope};
use greta::kernels::norm;
use greta::kernels::skinny::Skinny;
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

/// The largest decode pass (after padding) that takes the matrix-vector products by
/// default: on the H100 they are faster up to 8 rows, the tiled products from 16
/// (docs/perf.md).
pub const MATVEC_ROWS: usize = 8;

/// The products of decode passes above `matvec_rows` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DecodeProduct {
    /// The prompt path's tiled products (`gemm`), at their one few-row tile.
    Tiled,
    /// The few-row products (`skinny`): weights streamed into registers, no barrier per
    /// step.
    Skinny,
}

/// One row of a step: `token` at position `pos` of the sequence in cache slot `slot`, a
/// token of its prompt or one it decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub token: u32,
    pub pos: u32,
    pub slot: u32,
    pub prompt: bool,
}

/// A step's rows of one kind (decode or prompt) on the device, and its captured graphs.
struct Pass {
    r: Rows,
    graphs: HashMap<usize, Graph>,
    /// Rows of the last step.
    rows: usize,
}

impl Rows {
    /// Buffers for `rows` rows; with `matvec`, those of the matrix-vector path too.
    fn new(
        dev: &Device,
        cfg: &LlamaConfig,
        rows: usize,
        matvec: bool,
    ) -> Result<Rows, EngineError> {
        let f32_rows = if matvec { rows } else { 0 };
        let (q_rows, kv_rows) = (cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim);
        Ok(Rows {
            capacity: rows,
            tok: dev.alloc(rows)?,
            pos: dev.alloc(rows)?,
            slot: dev.alloc(rows)?,
            h: dev.alloc(rows * cfg.n_embd)?,
            xn: dev.alloc(rows * cfg.n_embd)?,
            qk: dev.alloc(rows * (q_rows + kv_rows))?,
            v: dev.alloc(rows * kv_rows)?,
            q: dev.alloc(rows * q_rows)?,
            attn: dev.alloc(rows * q_rows)?,
            ffn: dev.alloc(rows * cfg.n_ff)?,
            attn_f32: dev.alloc(f32_rows * q_rows)?,
            ffn_f32: dev.alloc(f32_rows * cfg.n_ff)?,
            logits: dev.alloc(rows * cfg.n_vocab)?,
            next: dev.alloc(rows)?,
        })
    }
}

impl Pass {
    fn new(
        dev: &Device,
        cfg: &LlamaConfig,
        rows: usize,
        matvec: bool,
    ) -> Result<Pass, EngineError> {
        Ok(Pass {
            r: Rows::new(dev, cfg, rows, matvec)?,
            graphs: HashMap::new(),
            rows: 0,
        })
    }
}

/// Which pass a row of the last step went to, and its index there.
#[derive(Clone, Copy, Debug)]
struct Placed {
    prompt: bool,
    index: usize,
}

/// Device buffers of a pass's rows.
struct Rows {
    /// Rows they hold.
    capacity: usize,
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
    /// The matrix-vector path's attention output and SwiGLU values (empty in the prompt
    /// pass).
    attn_f32: Buffer<f32>,
    ffn_f32: Buffer<f32>,
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
    /// The decode rows' pass, then the prompt rows' (indexed by `Row::prompt`).
    passes: [Pass; 2],
    /// Where each row of the last step went.
    placed: Vec<Placed>,
    /// The tiled products' tile, when not the library's choice for `TILE_ROWS` rows.
    tile: Option<Tile>,
    /// Decode passes of up to this many rows (after padding) take the matrix-vector
    /// products.
    matvec_rows: usize,
    /// Their attention: decode's chunked kernel, a row per sequence.
    attention: Attention,
    /// Its partials, for `matvec_rows` rows.
    scratch: AttentionScratch,
    /// The products of larger decode passes.
    decode_product: DecodeProduct,
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
        // Decode rows: one per sequence (at least a bucket's worth, for warming up).
        let decode_rows = slots.max(BUCKETS[BUCKETS.len() - 1]).min(max_rows);
        let decode = Pass::new(&dev, cfg, decode_rows, true)?;
        let prompt = Pass::new(&dev, cfg, max_rows, false)?;
        let attention = Attention::new(
            cfg.head_dim as u32,
            (cfg.n_head / cfg.n_head_kv) as u32,
            cfg.n_head_kv as u32,
            ctx as u32,
        );
        let scratch = attention.scratch(&dev, MATVEC_ROWS.min(decode_rows) as u32)?;
        let e = BatchEngine {
            dev,
            cfg: cfg.clone(),
            ctx,
            slots,
            max_rows,
            w,
            kc,
            vc,
            passes: [decode, prompt],
            placed: Vec::new(),
            tile: None,
            matvec_rows: MATVEC_ROWS,
            attention,
            scratch,
            decode_product: DecodeProduct::Tiled,
        };
        e.check_products()?;
        Ok(e)
    }

    /// Runs every tiled product at `tile` instead of the library's choice (for tuning;
    /// fitted to the device's shared memory). Graphs captured before are dropped.
    pub fn set_tile(&mut self, tile: Tile) -> Result<(), EngineError> {
        self.tile = Some(tile.fitted(&self.dev.target()));
        for p in &mut self.passes {
            p.graphs.clear();
        }
        self.check_products()
    }

    /// Runs decode passes of up to `rows` rows (after padding to their bucket) on the
    /// matrix-vector products, larger ones on the tiled products (0: all tiled). Graphs
    /// captured before are dropped.
    pub fn set_matvec_rows(&mut self, rows: usize) -> Result<(), EngineError> {
        let rows = rows.min(self.passes[0].r.capacity);
        self.scratch = self.attention.scratch(&self.dev, rows.max(1) as u32)?;
        self.matvec_rows = rows;
        self.passes[0].graphs.clear();
        Ok(())
    }

    /// Runs decode passes above `matvec_rows` rows on `product`. Graphs captured before are
    /// dropped.
    pub fn set_decode_product(&mut self, product: DecodeProduct) -> Result<(), EngineError> {
        self.decode_product = product;
        self.passes[0].graphs.clear();
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
                if self.decode_product == DecodeProduct::Skinny {
                    Skinny::new(m.fmt, epi, &dev.target(), TILE_ROWS)
                        .check(dev, m.rows, m.cols)
                        .map_err(|e| EngineError::Unsupported(format!("layer {l}: {e}")))?;
                }
            }
            let (rope, target) = (self.rope(), dev.target());
            let mv = |mat, norm, epi| matvec_for(&target, mat, norm, epi);
            for (mv, m, rows_b) in [
                (qkv_for(&target, layer), &layer.wqk, layer.wv.rows),
                (mv(&layer.wo, false, Epilogue::Add), &layer.wo, 0),
                (
                    mv(&layer.w_gate_up, true, Epilogue::Swiglu),
                    &layer.w_gate_up,
                    0,
                ),
                (mv(&layer.w_down, false, Epilogue::Add), &layer.w_down, 0),
            ] {
                mv.check(m.rows, rows_b, m.cols, rope)
                    .map_err(|e| EngineError::Unsupported(format!("layer {l}: {e}")))?;
            }
        }
        let out = &self.w.output;
        self.gemm(out.fmt, Epilogue::Store)
            .check(dev, out.rows, out.cols)
            .map_err(|e| EngineError::Unsupported(format!("output head: {e}")))?;
        if self.decode_product == DecodeProduct::Skinny {
            Skinny::new(out.fmt, Epilogue::Store, &dev.target(), TILE_ROWS)
                .check(dev, out.rows, out.cols)
                .map_err(|e| EngineError::Unsupported(format!("output head: {e}")))?;
        }
        matvec_for(&dev.target(), out, true, Epilogue::Store)
            .check(out.rows, 0, out.cols, self.rope())
            .map_err(|e| EngineError::Unsupported(format!("output head: {e}")))?;
        Ok(())
    }

    /// RoPE and cache geometry of the QKV products.
    fn rope(&self) -> Rope {
        Rope {
            q_rows: (self.cfg.n_head * self.cfg.head_dim) as u32,
            head_dim: self.cfg.head_dim as u32,
            ctx: self.ctx as u32,
            base: self.cfg.rope_freq_base,
        }
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
        let (prompt, decode): (Vec<Row>, Vec<Row>) = rows.iter().partition(|r| r.prompt);
        let capacity = self.passes[0].r.capacity;
        if decode.len() > capacity {
            return Err(EngineError::Unsupported(format!(
                "{} decode rows in a step (at most {capacity})",
                decode.len(),
            )));
        }
        let mut counts = [0usize; 2];
        self.placed = rows
            .iter()
            .map(|r| {
                let count = &mut counts[r.prompt as usize];
                *count += 1;
                Placed {
                    prompt: r.prompt,
                    index: *count - 1,
                }
            })
            .collect();
        // The passes touch different slots (a sequence reads its prompt or decodes), so
        // their order does not matter.
        self.run(false, &decode)?;
        self.run(true, &prompt)
    }

    /// Compiles every kernel and captures every bucket's graph of both passes on rows of the
    /// spare slot (no sequence's cache is touched), so that the first requests do not pay
    /// for it.
    pub fn warm_up(&mut self) -> Result<(), EngineError> {
        for prompt in [false, true] {
            for b in BUCKETS {
                self.run(prompt, &vec![self.pad(); b])?;
            }
        }
        self.placed.clear();
        Ok(())
    }

    /// A row of the spare slot: what pads a pass up to its bucket.
    fn pad(&self) -> Row {
        Row {
            token: 0,
            pos: 0,
            slot: self.slots as u32,
            prompt: false,
        }
    }

    /// One pass (the prompt rows' or the decode rows') over rows already checked.
    fn run(&mut self, prompt: bool, rows: &[Row]) -> Result<(), EngineError> {
        self.passes[prompt as usize].rows = rows.len();
        if rows.is_empty() {
            return Ok(());
        }
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
        let dev = self.dev.clone();
        let r = &mut self.passes[prompt as usize].r;
        let (tok, pos, slot) = (column(|r| r.token), column(|r| r.pos), column(|r| r.slot));
        dev.write_all(&mut [
            (&mut r.tok, 0, &tok[..]),
            (&mut r.pos, 0, &pos),
            (&mut r.slot, 0, &slot),
        ])?;
        let Some(b) = bucket else {
            return self.launch_all(prompt, m);
        };
        if let Some(graph) = self.passes[prompt as usize].graphs.get(&b) {
            dev.replay(graph)?;
            return Ok(());
        }
        // The first pass of a bucket runs eagerly (compiling and loading every kernel),
        // then its launches are captured for replay.
        self.launch_all(prompt, b)?;
        let mut failure = None;
        let graph = dev.capture(|_| {
            failure = self.launch_all(prompt, b).err();
            Ok(())
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.passes[prompt as usize].graphs.insert(b, graph);
        Ok(())
    }

    /// The greedy choice of every row of the last step.
    pub fn tokens(&self) -> Result<Vec<u32>, EngineError> {
        // An empty pass is not read: each read waits for the device.
        let read = |p: &Pass| match p.rows {
            0 => Ok(Vec::new()),
            n => self.dev.read(&p.r.next, 0, n),
        };
        let (decode, prompt) = (read(&self.passes[0])?, read(&self.passes[1])?);
        Ok(self
            .placed
            .iter()
            .map(|p| {
                if p.prompt {
                    prompt[p.index]
                } else {
                    decode[p.index]
                }
            })
            .collect())
    }

    /// The logits of every row of the last step, `n_vocab` per row.
    pub fn logits(&self) -> Result<Vec<f32>, EngineError> {
        let mut all = Vec::with_capacity(self.placed.len() * self.cfg.n_vocab);
        for row in 0..self.placed.len() {
            all.extend(self.row_logits(row)?);
        }
        Ok(all)
    }

    /// The logits of row `row` of the last step.
    pub fn row_logits(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        let Some(p) = self.placed.get(row) else {
            return Err(EngineError::Unsupported(format!(
                "row {row} of a step of {} rows",
                self.placed.len()
            )));
        };
        let vocab = self.cfg.n_vocab;
        Ok(self.dev.read(
            &self.passes[p.prompt as usize].r.logits,
            p.index * vocab,
            vocab,
        )?)
    }

    /// Every launch of a pass of `m` rows.
    fn launch_all(&mut self, prompt: bool, m: usize) -> Result<(), EngineError> {
        let r = &mut self.passes[prompt as usize].r;
        self.w
            .token_embd
            .embed(&self.dev, &r.tok, &mut r.h, m as u32)?;
        if !prompt && m <= self.matvec_rows {
            self.matvec_layers(prompt, m)?;
        } else {
            self.tiled_layers(prompt, m)?;
        }
        let r = &mut self.passes[prompt as usize].r;
        rows_kernels::argmax_rows::launch::<1024>(
            &self.dev,
            m as u32,
            &r.logits,
            self.cfg.n_vocab as u32,
            &mut r.next,
        )?;
        Ok(())
    }

    /// The layers and the output head of a step of `m` rows on the matrix-vector products:
    /// from the embeddings in `h` to the logits.
    fn matvec_layers(&mut self, prompt: bool, m: usize) -> Result<(), EngineError> {
        let rope = self.rope();
        let r = &mut self.passes[prompt as usize].r;
        let (dev, cfg) = (&self.dev, &self.cfg);
        let slot_len = (cfg.n_head_kv * cfg.head_dim * self.ctx) as u32;
        let n = m as u32;
        let rows = Inputs { n, slots: None };
        let eps = cfg.rms_eps;
        let target = dev.target();
        // Launches of only the input slots the step's rows need.
        let mv = |mat, norm, epi| matvec_for(&target, mat, norm, epi).for_vectors(n);
        for (l, layer) in self.w.layers.iter().enumerate() {
            qkv_for(&target, layer).for_vectors(n).launch(
                dev,
                &layer.wqk.buf,
                &layer.wv.buf,
                &r.h,
                &layer.attn_norm,
                &mut r.q,
                Some((&mut self.kc[l], &mut self.vc[l], &r.pos)),
                Inputs {
                    n,
                    slots: Some((&r.slot, slot_len)),
                },
                layer.wqk.rows,
                layer.wv.rows,
                layer.wqk.cols,
                eps,
                rope,
            )?;
            self.attention.launch(
                dev,
                AttentionKernel::Chunked,
                &r.q,
                &self.kc[l],
                &self.vc[l],
                &r.pos,
                Inputs {
                    n,
                    slots: Some((&r.slot, slot_len)),
                },
                &mut self.scratch,
                &mut r.attn_f32,
            )?;
            let (wo, gu, down) = (&layer.wo, &layer.w_gate_up, &layer.w_down);
            mv(wo, false, Epilogue::Add).launch(
                dev,
                &wo.buf,
                &wo.buf,
                &r.attn_f32,
                &r.attn_f32,
                &mut r.h,
                None,
                rows,
                wo.rows,
                0,
                wo.cols,
                eps,
                rope,
            )?;
            mv(gu, true, Epilogue::Swiglu).launch(
                dev,
                &gu.buf,
                &gu.buf,
                &r.h,
                &layer.ffn_norm,
                &mut r.ffn_f32,
                None,
                rows,
                gu.rows,
                0,
                gu.cols,
                eps,
                rope,
            )?;
            mv(down, false, Epilogue::Add).launch(
                dev, &down.buf, &down.buf, &r.ffn_f32, &r.ffn_f32, &mut r.h, None, rows, down.rows,
                0, down.cols, eps, rope,
            )?;
        }
        let out = &self.w.output;
        mv(out, true, Epilogue::Store).launch(
            dev,
            &out.buf,
            &out.buf,
            &r.h,
            &self.w.output_norm,
            &mut r.logits,
            None,
            rows,
            out.rows,
            0,
            out.cols,
            eps,
            rope,
        )?;
        Ok(())
    }

    /// Attention of a step's rows, each over its own slot.
    fn row_attention(&self) -> RowAttention {
        RowAttention {
            head_dim: self.cfg.head_dim as u32,
            group: (self.cfg.n_head / self.cfg.n_head_kv) as u32,
            n_head: self.cfg.n_head as u32,
            ctx: self.ctx as u32,
        }
    }

    /// The layers and the output head of a step of `m` rows on the tiled products.
    fn tiled_layers(&mut self, prompt: bool, m: usize) -> Result<(), EngineError> {
        let rope = self.rope();
        let attention = self.row_attention();
        let r = &mut self.passes[prompt as usize].r;
        let (dev, cfg) = (&self.dev, &self.cfg);
        let mu = m as u32;
        let (tile, target) = (self.tile, dev.target());
        let skinny = !prompt && self.decode_product == DecodeProduct::Skinny;
        let g = |mat: &GpuMatrix, epi| {
            if skinny {
                RowsProduct::Skinny(Skinny::new(mat.fmt, epi, &target, mu))
            } else {
                RowsProduct::Tiled(gemm_at(tile, &target, mat.fmt, epi))
            }
        };
        let (embd, ff) = (cfg.n_embd as u32, cfg.n_ff as u32);
        let (q_rows, kv_rows) = (
            (cfg.n_head * cfg.head_dim) as u32,
            (cfg.n_head_kv * cfg.head_dim) as u32,
        );
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
        Ok(())
    }
}

/// The matrix-vector product of `mat` with `epilogue` for batched steps on `target` (`norm`:
/// the RMSNorm of the input fused in).
fn matvec_for(target: &Target, mat: &GpuMatrix, norm: bool, epilogue: Epilogue) -> Matvec {
    Matvec::batched(mat.fmt, norm, epilogue, target, mat.cols)
}

/// A layer's QKV matrix-vector product: Q and K stacked over V, each in its own format.
fn qkv_for(target: &Target, layer: &GpuLayer) -> Matvec {
    Matvec {
        fmt_b: layer.wv.fmt,
        ..matvec_for(target, &layer.wqk, true, Epilogue::Qkv)
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

/// The launch of one product of a pass on the tiled or the few-row kernels.
enum RowsProduct {
    Tiled(Gemm),
    Skinny(Skinny),
}

/// `out = x · matᵀ` over `m` rows.
fn product(
    dev: &Device,
    m: u32,
    mat: &GpuMatrix,
    launch: RowsProduct,
    x: &Buffer<f16>,
    out: Output<'_>,
) -> Result<(), greta::runtime::Error> {
    match launch {
        RowsProduct::Tiled(g) => g.launch(dev, x, &mat.buf, out, m, mat.rows, mat.cols),
        RowsProduct::Skinny(s) => s.launch(dev, x, &mat.buf, out, m, mat.rows, mat.cols),
    }
}
