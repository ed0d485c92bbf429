//! The tracer: runs prompt processing and decode steps launch by launch (no graph) and,
//! after every launch, reduces its output (a vector, or a prompt chunk's rows) on the
//! device (min, max, sum, count of NaN/Inf) with a DSL kernel. It stops at the first
//! non-finite value, naming the layer, the operation and the DSL source of the kernel that
//! produced it.

use crate::engine::prefill::{PrefillOp, Rows};
use crate::engine::{Engine, EngineError, Op};
use greta::kernels::decode;
use greta::runtime::Buffer;

/// A traced launch: of a decode step, or of prompt processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traced {
    Decode(Op),
    Prefill(PrefillOp),
}

impl Traced {
    /// A short name for traces (prompt ops are marked `prompt`).
    pub fn name(&self) -> String {
        match self {
            Traced::Decode(op) => op.name().to_string(),
            Traced::Prefill(op) => format!("prompt {}", op.name()),
        }
    }

    /// The transformer block the op belongs to.
    pub fn layer(&self) -> Option<usize> {
        match self {
            Traced::Decode(op) => op.layer(),
            Traced::Prefill(op) => op.layer(),
        }
    }

    /// The DSL kernel the op launches.
    pub fn kernel(&self) -> &'static greta::codegen::KernelDef {
        match self {
            Traced::Decode(op) => op.kernel(),
            Traced::Prefill(op) => op.kernel(),
        }
    }
}

/// Statistics of one op's output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpStats {
    pub op: Traced,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
    pub non_finite: u32,
}

/// Why a trace stopped.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{count} non-finite value(s) after {what} (kernel `{kernel}`, {file}:{line}) at position {pos}")]
    NonFinite {
        what: String,
        kernel: String,
        file: String,
        line: u32,
        pos: usize,
        count: u32,
    },
}

impl TraceError {
    /// The layer of the offending op, if it is inside a transformer block.
    pub fn layer(&self) -> Option<usize> {
        match self {
            TraceError::NonFinite { what, .. } => what
                .strip_prefix("layer ")
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok()),
            TraceError::Engine(_) => None,
        }
    }
}

/// Runs traced decode steps.
pub struct Tracer {
    out: Buffer<f32>,
}

impl Tracer {
    /// A tracer for `engine`'s device.
    pub fn new(engine: &Engine) -> Result<Tracer, EngineError> {
        Ok(Tracer {
            out: engine.device().alloc(4)?,
        })
    }

    /// One decode step, launch by launch, reporting each op's statistics to `on_op`.
    pub fn step(
        &mut self,
        engine: &mut Engine,
        mut on_op: impl FnMut(&OpStats),
    ) -> Result<(), TraceError> {
        let pos = engine.position()?;
        for op in engine.ops() {
            engine.run_op(op)?;
            if let Some(buf) = engine.op_output(op) {
                self.check(
                    engine,
                    Traced::Decode(op),
                    Rows::F32(buf),
                    buf.len(),
                    pos,
                    &mut on_op,
                )?;
            }
        }
        Ok(())
    }

    /// Prompt processing of `tokens` from the engine's position, launch by launch, each
    /// op's rows (the chunk's) reported to `on_op`; ends with the last token's head.
    pub fn prefill(
        &mut self,
        engine: &mut Engine,
        tokens: &[u32],
        mut on_op: impl FnMut(&OpStats),
    ) -> Result<(), TraceError> {
        let pos = engine.position()?;
        engine.prefill_with(tokens, |e: &Engine, op, chunk| -> Result<(), TraceError> {
            let Some((rows, width)) = e.prefill_output(op) else {
                return Ok(());
            };
            self.check(e, Traced::Prefill(op), rows, chunk * width, pos, &mut on_op)
        })?;
        let logits = engine
            .op_output(Op::LmHead)
            .expect("the head writes the logits");
        self.check(
            engine,
            Traced::Decode(Op::LmHead),
            Rows::F32(logits),
            logits.len(),
            pos,
            &mut on_op,
        )
    }

    /// Reduces the first `n` values of `rows`, reports them, and fails on a non-finite one.
    fn check(
        &mut self,
        engine: &Engine,
        op: Traced,
        rows: Rows<'_>,
        n: usize,
        pos: usize,
        on_op: &mut impl FnMut(&OpStats),
    ) -> Result<(), TraceError> {
        let dev = engine.device();
        let n = n as u32;
        match rows {
            Rows::F32(b) => decode::stats::launch::<f32, 1024>(dev, 1, b, n, &mut self.out),
            Rows::F16(b) => decode::stats::launch::<half::f16, 1024>(dev, 1, b, n, &mut self.out),
        }
        .map_err(EngineError::from)?;
        let s = dev.download(&self.out).map_err(EngineError::from)?;
        let stats = OpStats {
            op,
            min: s[0],
            max: s[1],
            mean: s[2] / n as f32,
            non_finite: s[3] as u32,
        };
        on_op(&stats);
        if stats.non_finite > 0 {
            let def = op.kernel();
            let what = match op.layer() {
                Some(l) => format!("layer {l} {}", op.name()),
                None => op.name(),
            };
            return Err(TraceError::NonFinite {
                what,
                kernel: def.name().to_string(),
                file: def.ast.file.clone(),
                line: def.ast.span.line,
                pos,
                count: stats.non_finite,
            });
        }
        Ok(())
    }
}
