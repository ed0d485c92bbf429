//! The `llama2` command line: model tools for Llama-family inference on GRETA.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use greta::runtime::{BackendKind, Device};
use greta_gguf::Gguf;
use indicatif::{ProgressBar, ProgressStyle};
use llama2::config::LlamaConfig;
use llama2::engine::batch::{BatchEngine, DecodeProduct};
use llama2::engine::Engine;
use llama2::genmodel::{ModelPlan, Preset, Recipe, ShapeOverrides};
use llama2::sampling::{self, SamplingParams};
use llama2::tokenizer::{ChatMessage, EncodeOptions, Tokenizer};
use std::io::Write;

/// The model the commands use when none is named.
const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(name = "llama2", version, about = "Llama-family inference on GRETA")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming tokens to stdout.
    Run(RunArgs),
    /// Run decode steps kernel by kernel, printing per-layer statistics of every output and
    /// stopping at the first NaN or infinity.
    Trace(TraceArgs),
    /// Measure prompt and generation throughput, time to first token, per-layer latency.
    Bench(BenchArgs),
    /// Compare the engine's logits with the plain-Rust reference forward pass.
    CheckLogits(CheckArgs),
    /// Write a GGUF model of any Llama shape with random but valid weights.
    GenModel(GenModelArgs),
    /// Serve the model over an OpenAI-compatible HTTP API, batching concurrent requests.
    Serve(ServeArgs),
    /// Measure a running server: aggregate generation throughput and time to first token
    /// at several counts of concurrent streams.
    Load(LoadArgs),
}

#[derive(Args)]
struct LoadArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The model id the server serves.
    #[arg(long)]
    model: String,
    /// Concurrent streams of each round, comma-separated.
    #[arg(long, default_value = "1,8,32,64", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Tokens each stream generates (past the end-of-sequence token).
    #[arg(short = 'n', long, default_value_t = 128)]
    tokens: usize,
    /// The prompt (each stream appends its number).
    #[arg(long, default_value = "Once upon a time")]
    prompt: String,
    /// Rounds at each stream count; the table reports the median round.
    #[arg(long, default_value_t = 3, value_parser = positive_count)]
    reps: usize,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded at once (each has its own KV cache of --ctx positions).
    #[arg(long, default_value_t = 8, value_parser = positive_count)]
    parallel: usize,
    /// Requests that may wait for a free sequence; more are refused with 429.
    #[arg(long, default_value_t = 64, value_parser = positive_count)]
    queue: usize,
    /// Prompt tokens per batched step (a long prompt delays running streams by one chunk).
    #[arg(long, default_value_t = 256, value_parser = positive_count)]
    chunk: usize,
    /// Seconds shutdown waits for in-flight requests before failing them.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    #[command(flatten)]
    products: ProductArgs,
}

/// Which products the batched engine (the server's) runs.
#[derive(Args)]
struct ProductArgs {
    /// The tiled products' tile, BMxBNxWMxKSxDQxAHEAD, instead of the library's (for
    /// tuning).
    #[arg(long)]
    tile: Option<greta::kernels::gemm::Tile>,
    /// Decode steps of up to this many sequences (after padding to 1, 2, 4, .. 64) run on
    /// the matrix-vector products, larger ones on --decode-product (prompts on the tiled
    /// products).
    #[arg(long, default_value_t = llama2::engine::batch::MATVEC_ROWS)]
    matvec_rows: usize,
    /// The products of decode steps above --matvec-rows.
    #[arg(long, value_enum, default_value_t = DecodeProduct::Tiled)]
    decode_product: DecodeProduct,
}

#[derive(Args)]
struct ModelArgs {
    /// GGUF model file.
    #[arg(short, long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// auto (CUDA, then HIP, then CPU), cuda, hip or cpu.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// KV-cache positions, from 1 to the model's context length [default: the model's
    /// context, at most 4096].
    #[arg(long, value_parser = positive_count, allow_negative_numbers = true)]
    ctx: Option<usize>,
}

/// KV-cache positions when `--ctx` is not given: the model's context, capped so the
/// default cache of a long-context model stays small.
const DEFAULT_CTX: usize = 4096;

impl ModelArgs {
    /// The KV-cache size for `config`: `--ctx`, checked against the model's context.
    fn ctx(&self, config: &LlamaConfig) -> Result<usize> {
        match self.ctx {
            None => Ok(config.n_ctx.min(DEFAULT_CTX)),
            Some(c) if c > config.n_ctx => bail!(
                "--ctx {c}: above the model's context of {} tokens ({})",
                config.n_ctx,
                self.model.display()
            ),
            Some(c) => Ok(c),
        }
    }
}

/// Parses a flag through `parse`, keeping it only when `ok` holds; otherwise the message
/// says what the flag accepts.
fn checked<T: std::str::FromStr + Copy>(
    s: &str,
    ok: fn(T) -> bool,
    expected: &str,
) -> std::result::Result<T, String> {
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("not a number; {expected}"))?;
    if ok(v) {
        Ok(v)
    } else {
        Err(expected.to_owned())
    }
}

fn positive_count(s: &str) -> std::result::Result<usize, String> {
    checked(s, |n: usize| n >= 1, "must be a whole number, at least 1")
}

fn temperature(s: &str) -> std::result::Result<f32, String> {
    checked(s, sampling::temperature_ok, sampling::TEMPERATURE_RANGE)
}

fn top_p(s: &str) -> std::result::Result<f32, String> {
    checked(s, sampling::top_p_ok, sampling::TOP_P_RANGE)
}

fn top_k(s: &str) -> std::result::Result<usize, String> {
    checked(s, sampling::top_k_ok, sampling::TOP_K_RANGE)
}

fn penalty(s: &str) -> std::result::Result<f32, String> {
    checked(s, sampling::penalty_ok, sampling::PENALTY_RANGE)
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(short, long, default_value = "What is the capital of France?")]
    prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy, decided on the device).
    #[arg(long, default_value_t = 0.0, value_parser = temperature, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample among the k most likely tokens.
    #[arg(long, default_value_t = 40, value_parser = top_k, allow_negative_numbers = true)]
    top_k: usize,
    /// Sample among the most likely tokens whose probabilities reach p (0 < p <= 1).
    #[arg(long, default_value_t = 0.95, value_parser = top_p, allow_negative_numbers = true)]
    top_p: f32,
    /// Divide the logits of the last 64 tokens by this (1: off).
    #[arg(long, default_value_t = 1.0, value_parser = penalty, allow_negative_numbers = true)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Check every kernel's output for NaN/Inf during the prompt and decoding (runs launch
    /// by launch, without the graph).
    #[arg(long)]
    trace: bool,
}

#[derive(Args)]
struct TraceArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(short, long, default_value = "Hello")]
    prompt: String,
    /// Decode steps to trace.
    #[arg(short = 'n', long, default_value_t = 2)]
    steps: usize,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens (pp).
    #[arg(long, default_value_t = 512, value_parser = positive_count)]
    prompt_tokens: usize,
    /// Generated tokens (tg).
    #[arg(long, default_value_t = 128, value_parser = positive_count)]
    gen_tokens: usize,
    /// Position generation starts at: tokens already in the KV cache (llama-bench's -d).
    #[arg(long, default_value_t = 0)]
    depth: usize,
    /// Repetitions of each measurement (the median and spread are reported).
    #[arg(long, default_value_t = 3, value_parser = positive_count)]
    reps: usize,
    /// Print JSON instead of a markdown table.
    #[arg(long)]
    json: bool,
    /// Time batched decode (the server's engine) at these batch sizes instead,
    /// comma-separated: --gen-tokens steps of that many sequences at once.
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// With --batch: the batched engine's products.
    #[command(flatten)]
    products: ProductArgs,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(short, long, default_value = "The capital of France is")]
    prompt: String,
    /// Steps compared (prompt tokens first, then greedy tokens).
    #[arg(short = 'n', long, default_value_t = 8)]
    steps: usize,
}

#[derive(Args)]
struct GenModelArgs {
    /// Output GGUF file.
    #[arg(short, long)]
    out: PathBuf,
    /// Base shape, changed by the dimension flags.
    #[arg(long, value_enum, default_value = "llama2-7b")]
    preset: Preset,
    /// Tensor types: q4_k_m (llama.cpp's mix), or one type for every matrix (f32, f16,
    /// bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k).
    #[arg(long = "type", default_value = "q4_k_m")]
    recipe: Recipe,
    /// Seed of the random weights; the same seed gives the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Leave out `output.weight`, so the head reuses the token embeddings.
    #[arg(long)]
    tied_embeddings: bool,
    #[command(flatten)]
    shape: ShapeOverrides,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(&args),
        Command::Trace(args) => trace(&args),
        Command::Bench(args) => bench(&args),
        Command::CheckLogits(args) => check_logits(&args),
        Command::GenModel(args) => gen_model(&args),
        Command::Serve(args) => serve(&args),
        Command::Load(args) => load_test(&args),
    }
}

/// A memory-mapped model with its configuration and tokenizer.
struct Loaded {
    gguf: Gguf,
    config: LlamaConfig,
    tokenizer: Tokenizer,
}

fn load(path: &std::path::Path) -> Result<Loaded> {
    if !path.exists() && path == std::path::Path::new(DEFAULT_MODEL) {
        bail!(
            "{} not found: run `bash scripts/fetch-model.sh` first",
            path.display()
        );
    }
    let gguf = Gguf::open(path).with_context(|| format!("opening {}", path.display()))?;
    let config = LlamaConfig::from_gguf(&gguf)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    Ok(Loaded {
        gguf,
        config,
        tokenizer,
    })
}

/// Opens the device and a progress bar for uploading the model.
fn device_and_bar(args: &ModelArgs, m: &Loaded) -> Result<(Device, ProgressBar)> {
    let dev = Device::open(args.backend.parse::<BackendKind>()?)?;
    eprintln!("device: {}", dev.describe());
    let total: u64 = m.gguf.tensors().map(|t| t.bytes.len() as u64).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "upload {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .context("progress bar template")?,
    );
    Ok((dev, bar))
}

/// Opens the device and uploads the model with a progress bar.
fn engine(args: &ModelArgs, m: &Loaded) -> Result<Engine> {
    let (dev, bar) = device_and_bar(args, m)?;
    let e = Engine::new(dev, &m.gguf, &m.config, args.ctx(&m.config)?, |n| {
        bar.inc(n)
    })?;
    bar.finish_and_clear();
    Ok(e)
}

/// Opens the device and uploads the model for batched steps (`slots` sequences of `ctx`
/// positions, steps of up to `max_rows` rows) on the products `p` names.
fn batch_engine(
    args: &ModelArgs,
    m: &Loaded,
    ctx: usize,
    slots: usize,
    max_rows: usize,
    p: &ProductArgs,
) -> Result<BatchEngine> {
    let (dev, bar) = device_and_bar(args, m)?;
    let mut e = BatchEngine::new(dev, &m.gguf, &m.config, ctx, slots, max_rows, |n| {
        bar.inc(n)
    })?;
    bar.finish_and_clear();
    if let Some(tile) = p.tile {
        e.set_tile(tile)?;
    }
    e.set_matvec_rows(p.matvec_rows)?;
    e.set_decode_product(p.decode_product)?;
    Ok(e)
}

fn bench_batched(args: &BenchArgs) -> Result<()> {
    let m = load(&args.model.model)?;
    let most = args.batch.iter().copied().max().unwrap_or(1);
    let ctx = (8 + args.gen_tokens).min(m.config.n_ctx);
    let mut e = batch_engine(&args.model, &m, ctx, most, most * 8 + 64, &args.products)?;
    e.warm_up()?;
    println!("| batch | ms per step (wall) | ms per step (device) | tokens/s |");
    println!("| ---: | ---: | ---: | ---: |");
    for t in llama2::bench::batched(&mut e, &args.batch, args.gen_tokens)? {
        println!(
            "| {} | {:.3} | {:.3} | {:.1} |",
            t.batch,
            t.wall_ms,
            t.device_ms,
            t.tokens_per_second()
        );
    }
    println!(
        "\nmedians over {} decode steps after an 8-token prompt per sequence",
        args.gen_tokens
    );
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let m = load(&args.model.model)?;
    let ctx = args.model.ctx(&m.config)?;
    let mut e = batch_engine(
        &args.model,
        &m,
        ctx,
        args.parallel,
        args.parallel + args.chunk,
        &args.products,
    )?;
    // Compiling and capturing every batch size takes seconds on a GPU, minutes in the CPU
    // interpreter: there it happens on first use instead.
    if e.device().kind() != BackendKind::Cpu {
        let start = Instant::now();
        e.warm_up()?;
        eprintln!("warm-up: {:.1} s", start.elapsed().as_secs_f64());
    }
    let model = args
        .model
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let options = llama2::serve::Options {
        host: args.host.clone(),
        port: args.port,
        model,
        queue: args.queue,
        chunk: args.chunk,
        grace: std::time::Duration::from_secs(args.grace),
    };
    llama2::serve::serve(e, m.tokenizer, &options)
}

fn prompt_tokens(m: &Loaded, prompt: &str, chat: bool) -> Vec<u32> {
    let text = if chat {
        if let Some(notice) = m.tokenizer.chat_template().notice() {
            eprintln!("{notice}");
        }
        m.tokenizer
            .chat_template()
            .render(&[ChatMessage::user(prompt)], true)
    } else {
        prompt.to_string()
    };
    m.tokenizer.encode(
        &text,
        EncodeOptions {
            add_special: !chat,
            parse_special: true,
        },
    )
}

/// Tokenizes `prompt` and checks it fits the context, before any upload or compute.
fn fitting_prompt(args: &ModelArgs, m: &Loaded, prompt: &str, chat: bool) -> Result<Vec<u32>> {
    let tokens = prompt_tokens(m, prompt, chat);
    llama2::generate::check_prompt(tokens.len(), 0, args.ctx(&m.config)?)
        .context("raise --ctx or shorten the prompt")?;
    Ok(tokens)
}

fn run(args: &RunArgs) -> Result<()> {
    let m = load(&args.model.model)?;
    let tokens = fitting_prompt(&args.model, &m, &args.prompt, args.chat)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    };
    params.validate()?;
    let mut engine = engine(&args.model, &m)?;
    let mut tracer = if args.trace {
        Some(llama2::trace::Tracer::new(&engine)?)
    } else {
        None
    };
    let mut out = std::io::stdout();
    let mut pending = Vec::new();
    let r#gen = llama2::generate::generate(
        &mut engine,
        &tokens,
        args.max_tokens,
        m.tokenizer.eos(),
        params,
        tracer.as_mut(),
        |t| {
            // Stream whole UTF-8 characters: a byte-level token may end mid-character.
            if let Ok(bytes) = m.tokenizer.piece(t) {
                pending.extend(bytes);
                let valid = match std::str::from_utf8(&pending) {
                    Ok(_) => pending.len(),
                    Err(e) => e.valid_up_to(),
                };
                let _ = out.write_all(&pending[..valid]);
                let _ = out.flush();
                pending.drain(..valid);
            }
        },
    )?;
    println!();
    if args.trace {
        eprintln!("trace: every kernel output of every step was finite");
    }
    eprintln!(
        "{} prompt tokens, {} generated{}; time to first token {:.1} ms; decode {:.1} tokens/s",
        r#gen.prompt_tokens,
        r#gen.tokens.len(),
        if r#gen.stopped_at_eos {
            " (end of sequence)"
        } else {
            ""
        },
        r#gen.time_to_first_token.as_secs_f64() * 1e3,
        r#gen.decode_tokens_per_second()
    );
    Ok(())
}

fn trace(args: &TraceArgs) -> Result<()> {
    let m = load(&args.model.model)?;
    let tokens = fitting_prompt(&args.model, &m, &args.prompt, false)?;
    let mut engine = engine(&args.model, &m)?;
    let mut tracer = llama2::trace::Tracer::new(&engine)?;
    let first = *tokens.first().context("empty prompt")?;
    engine.set_state(first, 0)?;
    println!("| pos | layer | kernel | min | max | mean | NaN/Inf |\n| ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    let row = |pos: &str, s: &llama2::trace::OpStats| {
        let layer =
            s.op.layer()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into());
        println!(
            "| {pos} | {layer} | {} | {:.4} | {:.4} | {:.5} | {} |",
            s.op.name(),
            s.min,
            s.max,
            s.mean,
            s.non_finite
        );
    };
    // The prompt at once where the model allows it (its rows' statistics per op), then
    // decode steps from the token it chose; otherwise every prompt token is a step.
    let prefilled = engine.uses_prefill(tokens.len());
    if prefilled {
        let span = format!("0..{}", tokens.len());
        tracer.prefill(&mut engine, &tokens, |s| row(&span, s))?;
    }
    for step in 0..args.steps {
        let pos = engine.position()?;
        tracer.step(&mut engine, |s| row(&pos.to_string(), s))?;
        if !prefilled {
            if let Some(&next) = tokens.get(step + 1) {
                engine.set_state(next, pos + 1)?;
            }
        }
    }
    eprintln!(
        "traced {}{} step(s): no NaN or infinity in any kernel output",
        if prefilled {
            format!("the {}-token prompt and ", tokens.len())
        } else {
            String::new()
        },
        args.steps
    );
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    if !args.batch.is_empty() {
        return bench_batched(args);
    }
    let m = load(&args.model.model)?;
    let mut engine = engine(&args.model, &m)?;
    let name = args
        .model
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let params = m
        .config
        .n_params(m.gguf.tensor_info("output.weight").is_none());
    let report = llama2::bench::run(
        &mut engine,
        &name,
        params,
        llama2::bench::BenchPlan {
            prompt_tokens: args.prompt_tokens,
            gen_tokens: args.gen_tokens,
            depth: args.depth,
            reps: args.reps,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}

fn check_logits(args: &CheckArgs) -> Result<()> {
    let m = load(&args.model.model)?;
    let tokens = fitting_prompt(&args.model, &m, &args.prompt, false)?;
    let mut engine = engine(&args.model, &m)?;
    let mut oracle = llama2::oracle::Oracle::new(&m.gguf, &m.config)?;
    let report = llama2::check::compare(&mut engine, &mut oracle, &tokens, args.steps)?;
    for (i, r) in report.iter().enumerate() {
        println!(
            "step {i}: token {} nmse {:.3e} argmax engine {} oracle {}",
            r.token, r.nmse, r.engine_argmax, r.oracle_argmax
        );
    }
    let worst = report.iter().map(|r| r.nmse).fold(0.0, f64::max);
    println!("worst NMSE over {} steps: {worst:.3e}", report.len());
    Ok(())
}

fn gen_model(args: &GenModelArgs) -> Result<()> {
    let config = args.shape.apply(&args.preset.config());
    let plan =
        ModelPlan::new(config, args.recipe, args.tied_embeddings).context("invalid model shape")?;
    eprintln!(
        "{}: {} parameters, {} tensors, {:.2} GB of weights ({:.2} bits per weight)",
        args.out.display(),
        plan.n_params(),
        plan.tensors().len(),
        plan.tensor_bytes() as f64 / 1e9,
        plan.bits_per_weight()
    );
    let bar = ProgressBar::new(plan.tensor_bytes()).with_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .context("progress bar template")?,
    );
    let start = Instant::now();
    plan.write_file(&args.out, args.seed, |n| bar.inc(n))
        .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} in {:.2} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn load_test(args: &LoadArgs) -> Result<()> {
    let same = llama2::loadgen::batched_equals_alone(&args.url, &args.model, args.tokens, 31)?;
    println!(
        "greedy requests of {} tokens alone and beside 31 others: {same} of {} the same text",
        args.tokens,
        llama2::loadgen::CHECK_PROMPTS.len()
    );
    println!("| streams | tokens/s | per stream | TTFT p50 | TTFT p99 |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for &n in &args.streams {
        let mut rounds = (0..args.reps)
            .map(|_| llama2::loadgen::round(&args.url, &args.model, &args.prompt, n, args.tokens))
            .collect::<Result<Vec<_>>>()?;
        rounds.sort_by(|a, b| a.tokens_per_second().total_cmp(&b.tokens_per_second()));
        let r = &rounds[rounds.len() / 2];
        println!(
            "| {n} | {:.1} | {:.1} | {:.1} ms | {:.1} ms |",
            r.tokens_per_second(),
            r.tokens_per_second() / n as f64,
            r.ttft_quantile(0.5).as_secs_f64() * 1e3,
            r.ttft_quantile(0.99).as_secs_f64() * 1e3
        );
    }
    println!(
        "\n{} tokens per stream, median of {} rounds; wall time from the first request to the last [DONE]",
        args.tokens, args.reps
    );
    Ok(())
}
