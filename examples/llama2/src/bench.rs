//! `llama2 bench`: prompt processing and generation throughput in the manner of
//! llama-bench (pp512, tg128, generation at a given cache depth), time to first token for a
//! short prompt, and the mean decode latency per transformer block, each repeated and
//! reported as mean and spread.

use crate::engine::{Engine, EngineError};
use serde_json::json;
use std::time::Instant;

/// Mean and sample standard deviation of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub stddev: f64,
}

impl Stat {
    /// Summarises samples.
    pub fn of(samples: &[f64]) -> Stat {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = if samples.len() > 1 {
            samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Stat {
            mean,
            stddev: var.sqrt(),
        }
    }
}

/// What the benchmark measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub model: String,
    pub device: String,
    pub params: u64,
    pub reps: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Position generation starts at (tokens already in the cache).
    pub depth: usize,
    /// Prompt tokens per second.
    pub pp: Stat,
    /// Generated tokens per second.
    pub tg: Stat,
    /// Time to first token for a 3-token prompt, milliseconds.
    pub ttft_ms: Stat,
    /// Time to first token for the `prompt_tokens` prompt, milliseconds.
    pub ttft_prompt_ms: Stat,
    /// Whether prompts went through prompt processing (else token by token).
    pub prefill: bool,
    /// Decode time per transformer block during generation, microseconds.
    pub layer_us: Stat,
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchPlan {
    /// Prompt tokens (pp).
    pub prompt_tokens: usize,
    /// Generated tokens (tg).
    pub gen_tokens: usize,
    /// Position generation starts at: the attention of every generated token reads this
    /// many earlier positions (their cache contents do not change the timing).
    pub depth: usize,
    pub reps: usize,
}

/// Runs the benchmark: `plan.reps` repetitions of each measurement. Token counts that do
/// not fit the context are refused, not clipped, so a result always measures what was asked.
pub fn run(
    engine: &mut Engine,
    model: &str,
    params: u64,
    plan: BenchPlan,
) -> Result<BenchReport, EngineError> {
    let ctx = engine.ctx();
    let depth = plan.depth;
    let prompt_tokens = plan.prompt_tokens.max(1);
    let gen_tokens = plan.gen_tokens.max(1);
    crate::generate::check_prompt(prompt_tokens, 0, ctx)?;
    if depth + gen_tokens > ctx {
        return Err(EngineError::GenerationTooLong {
            depth,
            tokens: gen_tokens,
            ctx,
        });
    }
    let reps = plan.reps;
    let vocab = engine.config().n_vocab as u32;
    let token = |i: usize| (i as u32 * 7919 + 13) % vocab;
    let prefill = engine.uses_prefill(prompt_tokens);
    let prompt: Vec<u32> = (0..prompt_tokens).map(token).collect();
    // A prompt through prompt processing (or token by token), ending with its first
    // generated token read back; returns the milliseconds taken.
    let first_token = |engine: &mut Engine, tokens: &[u32]| -> Result<f64, EngineError> {
        let start = Instant::now();
        if engine.uses_prefill(tokens.len()) {
            engine.set_state(tokens[0], 0)?;
            engine.prefill(tokens)?;
        } else {
            for (i, &t) in tokens.iter().enumerate() {
                engine.set_state(t, i)?;
                engine.step()?;
            }
        }
        engine.last_token()?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    // Warm-up: compiles every kernel and captures the graphs of both ends.
    for pos in [0, depth] {
        engine.set_state(token(0), pos)?;
        engine.step()?;
    }
    first_token(engine, &prompt)?;
    first_token(engine, &prompt[..3.min(prompt.len())])?;
    engine.last_token()?;
    let (mut pp, mut tg, mut ttft, mut ttft_prompt, mut layer) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let ms = first_token(engine, &prompt)?;
        pp.push(prompt_tokens as f64 / (ms / 1e3));
        ttft_prompt.push(ms);

        engine.set_state(token(1), depth)?;
        let start = Instant::now();
        for _ in 0..gen_tokens {
            engine.step()?;
        }
        engine.last_token()?;
        let secs = start.elapsed().as_secs_f64();
        tg.push(gen_tokens as f64 / secs);
        layer.push(secs / gen_tokens as f64 / engine.config().n_layer as f64 * 1e6);

        ttft.push(first_token(engine, &prompt[..3.min(prompt.len())])?);
    }
    Ok(BenchReport {
        model: model.to_string(),
        device: engine.device().describe(),
        params,
        reps,
        prompt_tokens,
        gen_tokens,
        depth,
        pp: Stat::of(&pp),
        tg: Stat::of(&tg),
        ttft_ms: Stat::of(&ttft),
        ttft_prompt_ms: Stat::of(&ttft_prompt),
        prefill,
        layer_us: Stat::of(&layer),
    })
}

impl BenchReport {
    /// A markdown table like llama-bench's.
    pub fn markdown(&self) -> String {
        let row = |test: &str, unit: &str, s: Stat| {
            format!(
                "| {} | {:.1} M | {} | {test} | {:.2} ± {:.2} {unit} |\n",
                self.model,
                self.params as f64 / 1e6,
                self.device,
                s.mean,
                s.stddev
            )
        };
        let mut t = String::from(
            "| model | params | device | test | result |\n| --- | ---: | --- | --- | ---: |\n",
        );
        t += &row(&format!("pp{}", self.prompt_tokens), "t/s", self.pp);
        let tg = if self.depth > 0 {
            format!("tg{} @ d{}", self.gen_tokens, self.depth)
        } else {
            format!("tg{}", self.gen_tokens)
        };
        t += &row(&tg, "t/s", self.tg);
        t += &row(
            &format!("ttft ({}-token prompt)", self.prompt_tokens),
            "ms",
            self.ttft_prompt_ms,
        );
        t += &row("ttft (3-token prompt)", "ms", self.ttft_ms);
        t += &row("decode per layer", "us", self.layer_us);
        t += &format!(
            "\n{} repetitions; prompts {}.\n",
            self.reps,
            if self.prefill {
                "go through prompt processing (tiled matrix-core products, flash attention)"
            } else {
                "are processed token by token through the decode graph"
            }
        );
        t
    }

    /// The same as JSON.
    pub fn json(&self) -> serde_json::Value {
        let s = |x: Stat| json!({ "mean": x.mean, "stddev": x.stddev });
        json!({
            "model": self.model,
            "device": self.device,
            "params": self.params,
            "repetitions": self.reps,
            "pp": { "tokens": self.prompt_tokens, "tokens_per_second": s(self.pp) },
            "tg": { "tokens": self.gen_tokens, "depth": self.depth, "tokens_per_second": s(self.tg) },
            "ttft_ms": s(self.ttft_ms),
            "ttft_prompt_ms": s(self.ttft_prompt_ms),
            "prompt_processing": self.prefill,
            "decode_per_layer_us": s(self.layer_us),
        })
    }
}

/// Batched decode at one batch size: wall and device time per step.
#[derive(Clone, Copy, Debug)]
pub struct BatchTiming {
    pub batch: usize,
    /// From the step's first write to its tokens read back, milliseconds (median).
    pub wall_ms: f64,
    /// Between events around the step's launches, milliseconds (median).
    pub device_ms: f64,
}

impl BatchTiming {
    /// Generated tokens per second at the wall time.
    pub fn tokens_per_second(&self) -> f64 {
        self.batch as f64 * 1e3 / self.wall_ms
    }
}

/// For each batch size `b`: `b` sequences read an 8-token prompt in one step, then decode
/// `tokens` steps together (greedy); medians over the decode steps.
pub fn batched(
    e: &mut crate::engine::batch::BatchEngine,
    sizes: &[usize],
    tokens: usize,
) -> Result<Vec<BatchTiming>, EngineError> {
    use crate::engine::batch::Row;
    use greta::selftest::graph::median;
    const PROMPT: u32 = 8;
    let mut out = Vec::new();
    for &b in sizes {
        let prompt: Vec<Row> = (0..b as u32)
            .flat_map(|s| {
                (0..PROMPT).map(move |p| Row {
                    token: 100 + 7 * s + p,
                    pos: p,
                    slot: s,
                    prompt: true,
                })
            })
            .collect();
        e.step(&prompt)?;
        let mut next: Vec<u32> = e
            .tokens()?
            .chunks(PROMPT as usize)
            .map(|c| c[PROMPT as usize - 1])
            .collect();
        let (mut wall, mut device) = (Vec::new(), Vec::new());
        for t in 0..tokens as u32 {
            let rows: Vec<Row> = (0..b as u32)
                .map(|s| Row {
                    token: next[s as usize],
                    pos: PROMPT + t,
                    slot: s,
                    prompt: false,
                })
                .collect();
            let start = Instant::now();
            let dev = e.device().clone();
            let mut failure = None;
            device.push(dev.time(|_| {
                failure = e.step(&rows).err();
                Ok(())
            })?);
            if let Some(err) = failure {
                return Err(err);
            }
            next = e.tokens()?;
            wall.push(start.elapsed().as_secs_f64() * 1e3);
        }
        out.push(BatchTiming {
            batch: b,
            wall_ms: median(&mut wall),
            device_ms: median(&mut device),
        });
    }
    Ok(out)
}
