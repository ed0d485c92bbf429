//! The `llama2` command line: model tools for Llama-family inference on GRETA.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use llama2::genmodel::{ModelPlan, Preset, Recipe, ShapeOverrides};

#[derive(Parser)]
#[command(name = "llama2", version, about = "Llama-family inference on GRETA")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a GGUF model of any Llama shape with random but valid weights.
    GenModel(GenModelArgs),
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
        Command::GenModel(args) => gen_model(&args),
    }
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
