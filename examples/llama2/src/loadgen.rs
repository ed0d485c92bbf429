//! A load generator for `llama2 serve` (or any OpenAI-compatible server): `streams`
//! concurrent streaming completions of `tokens` tokens each, timed from the first request
//! sent to the last `[DONE]`: aggregate generation throughput and time to first token.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// What one round of concurrent requests measured.
#[derive(Clone, Debug)]
pub struct Round {
    pub streams: usize,
    /// Completion tokens over all requests (from their usage).
    pub tokens: usize,
    pub wall: Duration,
    /// Time to the first streamed text of each request, sorted.
    pub ttft: Vec<Duration>,
}

impl Round {
    /// Generated tokens per second over the round.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.wall.as_secs_f64()
    }

    /// The `q` quantile of the times to first token.
    pub fn ttft_quantile(&self, q: f64) -> Duration {
        let i = ((self.ttft.len() - 1) as f64 * q).round() as usize;
        self.ttft[i]
    }
}

/// One streamed completion: (time to first text, completion tokens).
fn one(url: &str, body: &Value) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let r = ureq::post(&format!("{url}/v1/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("POST {url}/v1/completions"))?;
    let mut first = None;
    let mut tokens = None;
    for line in BufReader::new(r.into_body().into_reader()).lines() {
        let line = line.context("reading the stream")?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).context("a chunk that is not JSON")?;
        if let Some(e) = chunk.get("error") {
            bail!("the server failed the request: {e}");
        }
        if first.is_none()
            && chunk["choices"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        {
            first = Some(start.elapsed());
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = Some(n as usize);
        }
    }
    let tokens = tokens.context("the stream ended without usage")?;
    Ok((first.unwrap_or_else(|| start.elapsed()), tokens))
}

/// Runs `streams` concurrent completions of `tokens` tokens after `prompt` (greedy, past
/// the end-of-sequence token) against the server at `url` serving `model`.
pub fn round(url: &str, model: &str, prompt: &str, streams: usize, tokens: usize) -> Result<Round> {
    let start = Instant::now();
    let results: Vec<Result<(Duration, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|i| {
                let body = json!({
                    "model": model,
                    "prompt": format!("{prompt} {i}"),
                    "max_tokens": tokens,
                    "temperature": 0,
                    "ignore_eos": true,
                    "stream": true,
                    "stream_options": {"include_usage": true},
                });
                s.spawn(move || one(url, &body))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a client thread panicked"))
            })
            .collect()
    });
    let wall = start.elapsed();
    let mut ttft = Vec::new();
    let mut total = 0;
    for r in results {
        let (t, n) = r?;
        ttft.push(t);
        total += n;
    }
    ttft.sort();
    Ok(Round {
        streams,
        tokens: total,
        wall,
        ttft,
    })
}

/// A greedy completion's text, not streamed.
fn text(url: &str, model: &str, prompt: &str, tokens: usize) -> Result<String> {
    let body = json!({"model": model, "prompt": prompt, "max_tokens": tokens,
                      "temperature": 0, "ignore_eos": true});
    let reply: Value = serde_json::from_str(
        &ureq::post(&format!("{url}/v1/completions"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .with_context(|| format!("POST {url}/v1/completions"))?
            .body_mut()
            .read_to_string()?,
    )?;
    reply["choices"][0]["text"]
        .as_str()
        .map(str::to_string)
        .context("a reply without text")
}

/// Prompts of the batched-equals-alone check.
pub const CHECK_PROMPTS: [&str; 8] = [
    "The meaning of life is",
    "Once upon a time",
    "The capital of France is",
    "def fibonacci(n):",
    "In 1492, Columbus",
    "The best way to learn a language is",
    "Water boils at",
    "My favourite colour is",
];

/// How many of [`CHECK_PROMPTS`] get the same greedy text alone as while `others`
/// concurrent requests run beside them.
pub fn batched_equals_alone(url: &str, model: &str, tokens: usize, others: usize) -> Result<usize> {
    let mut same = 0;
    for prompt in CHECK_PROMPTS {
        let alone = text(url, model, prompt, tokens)?;
        let batched = std::thread::scope(|s| -> Result<String> {
            let noise: Vec<_> = (0..others)
                .map(|i| s.spawn(move || text(url, model, &format!("Story number {i}:"), tokens)))
                .collect();
            let mine = text(url, model, prompt, tokens);
            for n in noise {
                n.join()
                    .unwrap_or_else(|_| bail!("a client thread panicked"))?;
            }
            mine
        })?;
        same += (alone == batched) as usize;
    }
    Ok(same)
}
