//! Logit agreement between the engine and the plain-Rust reference forward pass.

use crate::engine::{Engine, EngineError};
use crate::oracle::{Oracle, OracleError};

/// Agreement at one step.
#[derive(Clone, Copy, Debug)]
pub struct StepCheck {
    /// The token fed at this step.
    pub token: u32,
    /// sum((engine - oracle)^2) / sum(oracle^2) over the logits.
    pub nmse: f64,
    pub engine_argmax: u32,
    pub oracle_argmax: u32,
}

/// Why the comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Oracle(#[from] OracleError),
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, x)| if *x > b.1 { (i, *x) } else { b },
        )
        .0 as u32
}

/// Feeds `prompt` and then the oracle's greedy tokens to both for `steps` steps, comparing
/// logits after each.
pub fn compare(
    engine: &mut Engine,
    oracle: &mut Oracle,
    prompt: &[u32],
    steps: usize,
) -> Result<Vec<StepCheck>, CheckError> {
    let mut out = Vec::with_capacity(steps);
    let mut token = prompt.first().copied().unwrap_or(0);
    for pos in 0..steps.min(engine.ctx()) {
        engine.set_state(token, pos)?;
        engine.step()?;
        let got = engine.logits()?;
        let want = oracle.forward(token, pos)?;
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for (g, w) in got.iter().zip(&want) {
            err += (*g as f64 - *w as f64).powi(2);
            norm += (*w as f64).powi(2);
        }
        let check = StepCheck {
            token,
            nmse: if norm > 0.0 { err / norm } else { err },
            engine_argmax: argmax(&got),
            oracle_argmax: argmax(&want),
        };
        out.push(check);
        token = prompt.get(pos + 1).copied().unwrap_or(check.oracle_argmax);
    }
    Ok(out)
}
