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

/// NMSE of `got` against `want`.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        err += (*g as f64 - *w as f64).powi(2);
        norm += (*w as f64).powi(2);
    }
    if norm > 0.0 {
        err / norm
    } else {
        err
    }
}

/// Compares logits for `steps` steps: the prompt's last-token logits (after prompt
/// processing, where the model allows it; otherwise the prompt is fed token by token and
/// each of its steps is compared), then the oracle's greedy tokens fed to both.
pub fn compare(
    engine: &mut Engine,
    oracle: &mut Oracle,
    prompt: &[u32],
    steps: usize,
) -> Result<Vec<StepCheck>, CheckError> {
    let mut out = Vec::with_capacity(steps);
    let mut token = prompt.first().copied().unwrap_or(0);
    let mut pos = 0;
    if engine.uses_prefill(prompt.len()) && steps > 0 {
        engine.set_state(token, 0)?;
        engine.prefill(prompt)?;
        let mut want = Vec::new();
        for (p, &t) in prompt.iter().enumerate() {
            want = oracle.forward(t, p)?;
        }
        let got = engine.logits()?;
        let check = StepCheck {
            token: prompt[prompt.len() - 1],
            nmse: nmse(&got, &want),
            engine_argmax: argmax(&got),
            oracle_argmax: argmax(&want),
        };
        out.push(check);
        token = check.oracle_argmax;
        pos = prompt.len();
    }
    while out.len() < steps && pos < engine.ctx() {
        engine.set_state(token, pos)?;
        engine.step()?;
        let got = engine.logits()?;
        let want = oracle.forward(token, pos)?;
        let check = StepCheck {
            token,
            nmse: nmse(&got, &want),
            engine_argmax: argmax(&got),
            oracle_argmax: argmax(&want),
        };
        out.push(check);
        pos += 1;
        token = prompt.get(pos).copied().unwrap_or(check.oracle_argmax);
    }
    Ok(out)
}

/// The NMSE between the last-token logits of `prompt` through prompt processing and
/// through the decode step fed token by token (both from position 0).
pub fn prefill_against_decode(engine: &mut Engine, prompt: &[u32]) -> Result<f64, CheckError> {
    for (p, &t) in prompt.iter().enumerate() {
        engine.set_state(t, p)?;
        engine.step()?;
    }
    let decoded = engine.logits()?;
    engine.set_state(prompt[0], 0)?;
    engine.prefill(prompt)?;
    Ok(nmse(&engine.logits()?, &decoded))
}
