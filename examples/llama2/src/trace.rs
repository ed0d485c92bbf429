//! The tracer: runs the decode step launch by launch (no graph) and, after every launch,
//! reduces its output vector on the device (min, max, sum, count of NaN/Inf) with a DSL
//! kernel. It stops at the first non-finite value, naming the layer, the operation and the
//! DSL source of the kernel that produced it.

use crate::engine::{Engine, EngineError, Op};
use greta::kernels::decode;
use greta::runtime::Buffer;

/// Statistics of one op's output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpStats {
    pub op: Op,
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
            let Some(buf) = engine.op_output(op) else {
                continue;
            };
            let n = buf.len() as u32;
            decode::stats::launch::<1024>(engine.device(), 1, buf, n, &mut self.out)
                .map_err(EngineError::from)?;
            let s = engine
                .device()
                .download(&self.out)
                .map_err(EngineError::from)?;
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
                    None => op.name().to_string(),
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
        }
        Ok(())
    }
}
