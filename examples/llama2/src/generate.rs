//! Generation: the prompt goes through prompt processing (every chunk's tokens at once on
//! the tiled products; token by token through the decode step where the model's shapes do
//! not allow it), then tokens are produced by graph-replayed decode steps until the
//! end-of-sequence token, the requested count, or a full context. Greedy decoding keeps the token on the device (the host reads back one
//! integer per step); sampling reads the logits back.

use crate::engine::{Engine, EngineError};
use crate::sampling::{Sampler, SamplingError, SamplingParams};
use crate::trace::{TraceError, Tracer};
use std::time::{Duration, Instant};

/// Timings and tokens of one generation.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// From start until the first generated token was known.
    pub time_to_first_token: Duration,
    /// Time spent producing the tokens after the first.
    pub decode_time: Duration,
    /// Whether generation ended at the end-of-sequence token.
    pub stopped_at_eos: bool,
}

impl Generation {
    /// Generated tokens per second after the first one.
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if n == 0 || self.decode_time.is_zero() {
            0.0
        } else {
            n as f64 / self.decode_time.as_secs_f64()
        }
    }
}

/// Why generation stopped early.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// Refuses a prompt of `prompt` tokens that cannot fit a context of `ctx` positions from
/// position `start`, so a long prompt fails before any compute rather than when the cache
/// fills.
pub fn check_prompt(prompt: usize, start: usize, ctx: usize) -> Result<(), EngineError> {
    let left = ctx.saturating_sub(start);
    if prompt > left {
        return Err(EngineError::PromptTooLong {
            prompt,
            start,
            left,
            ctx,
        });
    }
    Ok(())
}

/// One decode step: a graph replay, or with a tracer every kernel launched and checked for
/// NaN/Inf.
fn step(engine: &mut Engine, tracer: &mut Option<&mut Tracer>) -> Result<(), GenerateError> {
    match tracer {
        Some(t) => t.step(engine, |_| {})?,
        None => engine.step()?,
    }
    Ok(())
}

/// Generates up to `max_tokens` after `prompt`, calling `on_token` as each arrives. With a
/// tracer, every step (prompt and decode) runs kernel by kernel under its checks.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    engine: &mut Engine,
    prompt: &[u32],
    max_tokens: usize,
    eos: Option<u32>,
    params: SamplingParams,
    mut tracer: Option<&mut Tracer>,
    mut on_token: impl FnMut(u32),
) -> Result<Generation, GenerateError> {
    params.validate()?;
    check_prompt(prompt.len(), 0, engine.ctx())?;
    let start = Instant::now();
    let mut sampler = Sampler::new(params);
    let mut out = Generation {
        prompt_tokens: prompt.len(),
        ..Generation::default()
    };
    let Some((&last, head)) = prompt.split_last() else {
        return Ok(out);
    };
    // Whether the next token is already chosen (prompt processing ends with it).
    let mut ready = false;
    if engine.uses_prefill(prompt.len()) {
        engine.set_state(last, 0)?;
        match tracer.as_deref_mut() {
            Some(t) => t.prefill(engine, prompt, |_| {})?,
            None => engine.prefill(prompt)?,
        }
        ready = true;
    } else {
        for (pos, &t) in head.iter().enumerate() {
            engine.set_state(t, pos)?;
            step(engine, &mut tracer)?;
        }
        engine.set_state(last, head.len())?;
    }
    let mut recent: Vec<u32> = prompt.to_vec();
    let mut decode_start = None;
    while out.tokens.len() < max_tokens {
        if !std::mem::take(&mut ready) {
            step(engine, &mut tracer)?;
        }
        let token = if params.is_greedy() {
            engine.last_token()?
        } else {
            sampler.sample(
                &engine.logits()?,
                &recent[recent.len().saturating_sub(64)..],
            )
        };
        if decode_start.is_none() {
            out.time_to_first_token = start.elapsed();
            decode_start = Some(Instant::now());
        }
        if Some(token) == eos {
            out.stopped_at_eos = true;
            break;
        }
        out.tokens.push(token);
        recent.push(token);
        on_token(token);
        let pos = engine.position()?;
        if pos >= engine.ctx() {
            break;
        }
        if !params.is_greedy() {
            // The device's argmax wrote its own choice; the sampled token replaces it.
            engine.set_state(token, pos)?;
        }
    }
    out.decode_time = decode_start.map(|s| s.elapsed()).unwrap_or_default();
    Ok(out)
}
