//! The `greta` command line: list, emit and check the built-in kernels.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use greta::codegen::{hip, Target};
use greta::kernels::attention::{Attention, AttentionKernel};
use greta::kernels::matvec::{Epilogue, Matvec};
use greta::kernels::{builtins, KernelVariants};
use greta::quant::gpu::GpuFormat;
use greta::runtime::cache::KernelCache;
use greta::runtime::{BackendKind, Device};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "greta", version, about = "GRETA kernel compiler toolchain")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in kernels and their specialisations.
    List,
    /// Compile built-in kernels with the real toolchain and report their resources; fails
    /// on a compile error, a spill, scratch use, or a wave size that is not the target's.
    Check {
        /// gfx942, gfx90a, sm_90, sm_80, sm_86 or sm_89.
        #[arg(long, default_value = "gfx942")]
        target: String,
        /// Kernels to check (all if none).
        kernels: Vec<String>,
    },
    /// Run every built-in kernel against its plain-Rust reference on a device.
    Selftest(SelftestArgs),
    /// Time the decode kernels on Llama-2-7B shapes (GPU).
    BenchKernels(Box<BenchArgs>),
    /// Compile every built-in kernel for a device, or load it from the disk cache: the
    /// start-up cost, cold or warm.
    Compile {
        /// auto, cpu, cuda or hip.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// List the devices each backend finds.
    Devices,
    /// Inspect or clear the on-disk kernel cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Print (or write to a folder) the generated HIP C++ of built-in kernels.
    Emit {
        /// gfx942, gfx90a, sm_90, sm_80, sm_86 or sm_89.
        #[arg(long, default_value = "gfx942")]
        target: String,
        /// Kernels to emit (all if none).
        kernels: Vec<String>,
        /// Write one file per specialisation into this folder instead of printing.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SelftestArgs {
    /// auto, cpu, cuda or hip.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Wavefront size of the CPU backend (64 as gfx942, 32 as sm_90).
    #[arg(long)]
    wave: Option<u32>,
    /// Kernels to test (all if none).
    kernels: Vec<String>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run the graph test (dependent launches captured and replayed).
    #[arg(long)]
    graph: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// auto, cpu, cuda or hip.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Timed launches per kernel (the median is reported).
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Rows each wavefront computes at a time (several values compare variants; 0: the
    /// library's default, as for the options below).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    rows_per_wave: Vec<u32>,
    /// Threads per block (several values compare variants).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    block: Vec<u32>,
    /// Resident blocks per compute unit the grid is sized for, at most.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    blocks_per_unit: Vec<u32>,
    /// Attention: positions each stream has in flight (several values compare variants).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    attention_depth: Vec<u32>,
    /// Attention: fewest positions per block.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    attention_min_chunk: Vec<u32>,
    /// Attention: threads per block.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    attention_block: Vec<u32>,
    /// Attention: rounds of resident blocks long sequences are split over.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    attention_rounds: Vec<u32>,
    /// Time batches of eager launches instead of launches replayed from a graph (the
    /// way the decode step runs them).
    #[arg(long)]
    eager: bool,
    /// Which kernels: decode (matrix-vector products, attention, read rooflines),
    /// prefill (tiled products and prefill attention, in TFLOP/s) or all.
    #[arg(long, default_value = "all")]
    only: String,
    /// Rows of X of the prefill products (several values compare batch sizes).
    #[arg(long, value_delimiter = ',', default_value = "512")]
    rows: Vec<usize>,
    /// Tiles of the prefill products, BMxBNxWMxKSxDQxAHEAD (several compare variants; 0:
    /// the library's choice for the row count).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    tiles: Vec<String>,
    /// Also time the few-row products at these shapes, NWxNTxWAVESxDEPTH (0: the
    /// library's choice for the row count).
    #[arg(long, value_delimiter = ',')]
    skinny: Vec<String>,
}

#[derive(Subcommand)]
enum CacheAction {
    /// Number of entries and bytes.
    Stats,
    /// Remove every entry.
    Clear,
}

fn target(name: &str) -> Result<Target> {
    Target::by_name(name).with_context(|| {
        format!(
            "unknown target `{name}`; the targets are {}",
            Target::names()
        )
    })
}

/// The built-in kernels named on the command line (all if none), or an error naming the
/// unknown ones.
fn select(names: &[String]) -> Result<Vec<KernelVariants>> {
    let all = builtins();
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<&str> = all.iter().map(|k| k.name()).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        bail!(
            "unknown kernel `{bad}`; built-in kernels: {}",
            known.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|k| names.iter().any(|n| n == k.name()))
        .collect())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::List => list(),
        Command::Check { target: t, kernels } => check(&t, &kernels)?,
        Command::Selftest(args) => selftest(args)?,
        Command::BenchKernels(args) => bench_kernels(*args)?,
        Command::Compile { backend } => compile(&backend)?,
        Command::Devices => devices(),
        Command::Cache { action } => cache(action)?,
        Command::Emit {
            target: t,
            kernels,
            out,
        } => emit(&t, &kernels, out)?,
    }
    Ok(())
}

/// `greta list`: the built-in kernels and their specialisation counts.
fn list() {
    for k in builtins() {
        println!(
            "{:<24} {} specialisation(s) for gfx942",
            k.name(),
            k.specs(&greta::codegen::GFX942).len()
        );
    }
}

/// `greta check`: compiles the kernels for a target and fails on a problem in any.
fn check(t: &str, kernels: &[String]) -> Result<()> {
    let t = target(t)?;
    let rows = greta::check::check(&select(kernels)?, &t)?;
    print!("{}", greta::check::table(&rows, &t));
    let failed = rows.iter().filter(|r| !r.problems(&t).is_empty()).count();
    if failed > 0 {
        for r in &rows {
            if let Err(e) = &r.outcome {
                eprintln!("{}: {e}", r.symbol);
            }
        }
        bail!(
            "{failed} of {} kernel(s) failed the {} check",
            rows.len(),
            t.name
        );
    }
    Ok(())
}

/// `greta selftest`: every case against its reference (and the graph test), failing on any miss.
fn selftest(args: SelftestArgs) -> Result<()> {
    let SelftestArgs {
        backend,
        wave,
        kernels,
        seed,
        graph,
    } = args;
    if let Some(w) = wave {
        std::env::set_var("GRETA_WAVE", w.to_string());
    }
    let dev = Device::open(backend.parse::<BackendKind>()?)?;
    select(&kernels)?;
    println!("device: {}", dev.describe());
    let outcomes = greta::selftest::run(&dev, &kernels, seed);
    print!("{}", greta::selftest::table(&outcomes, &dev));
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let mut graph_ok = true;
    if graph {
        // The interpreter takes milliseconds per launch: a few replays suffice there.
        let replays = if dev.kind() == BackendKind::Cpu {
            3
        } else {
            1000
        };

        let r = greta::selftest::graph::run(&dev, 100, replays)?;
        graph_ok = r.identical && r.updated_identical;
        println!(
            "graph: {} dependent launches, {} replays: eager {:.2} us/kernel, graph {:.2} us/kernel, results {}, after a parameter update {}",
            r.launches,
            r.replays,
            r.eager_us,
            r.graph_us,
            if r.identical { "identical" } else { "DIFFERENT" },
            if r.updated_identical { "identical" } else { "DIFFERENT" }
        );
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed > 0 || !graph_ok {
        bail!(
            "{failed} of {} case(s) failed{}",
            outcomes.len(),
            if graph_ok {
                ""
            } else {
                "; graph results differ from eager"
            }
        );
    }
    Ok(())
}

/// `greta bench-kernels`: the prompt products, then the decode kernels, on Llama-2-7B shapes.
fn bench_kernels(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        backend,
        reps,
        rows_per_wave,
        block,
        blocks_per_unit,
        attention_depth,
        attention_min_chunk,
        attention_block,
        attention_rounds,
        eager,
        only,
        rows: gemm_rows,
        tiles,
        skinny,
    } = args;
    let tiles: Vec<Option<greta::kernels::gemm::Tile>> = launch_shapes(&tiles)?;
    let shapes: Vec<Option<greta::kernels::skinny::Shape>> = launch_shapes(&skinny)?;
    if !matches!(only.as_str(), "all" | "decode" | "prefill") {
        bail!("--only takes decode, prefill or all, not `{only}`");
    }
    let dev = Device::open(backend.parse::<BackendKind>()?)?;
    let timing = if eager {
        greta::bench::Timing::Eager
    } else {
        greta::bench::Timing::Graph
    };
    println!("device: {}", dev.describe());
    if only != "decode" {
        let rows =
            greta::bench::prefill::gemm_sweep(&dev, &gemm_rows, &tiles, &shapes, timing, reps)?;
        print!("{}", greta::bench::prefill::table(&rows));
        if only == "prefill" {
            return Ok(());
        }
    }
    let copy = greta::bench::copy_bandwidth(&dev, 1 << 30, 20)?;
    // A swept value of 0 stands for the library's default.
    let or = |v: u32, d: u32| if v == 0 { d } else { v };
    let mut variants = Vec::new();
    for &rows_per_wave in &rows_per_wave {
        for &block in &block {
            for &blocks_per_unit in &blocks_per_unit {
                let default = Matvec::new(GpuFormat::Q4K, false, Epilogue::Store);
                variants.push(Matvec {
                    rows_per_wave: or(rows_per_wave, default.rows_per_wave),
                    block: or(block, default.block),
                    blocks_per_unit: or(blocks_per_unit, default.blocks_per_unit),
                    ..default
                });
            }
        }
    }
    let mut rows = greta::bench::matvec_sweep(&dev, &variants, timing, reps)?;
    rows.extend(greta::bench::fused_sweep(&dev, timing, reps)?);
    let lens = [128, 1024, 1280, 1536, 2048, 4096];
    for len in lens {
        rows.push(greta::bench::bench_attention(
            &dev,
            Attention::new(128, 1, 32, 4096),
            AttentionKernel::Chunked,
            len,
            timing,
            reps,
        )?);
    }
    for &depth in &attention_depth {
        for &min_chunk in &attention_min_chunk {
            for &block in &attention_block {
                for &rounds in &attention_rounds {
                    let default = Attention::new(128, 1, 32, 4096);
                    let shape = Attention {
                        depth: or(depth, default.depth),
                        min_chunk: or(min_chunk, default.min_chunk),
                        block: or(block, default.block),
                        rounds: or(rounds, default.rounds),
                        ..default
                    };
                    for len in lens {
                        rows.push(greta::bench::bench_attention(
                            &dev,
                            shape,
                            AttentionKernel::Streamed,
                            len,
                            timing,
                            reps,
                        )?);
                    }
                }
            }
        }
    }
    use greta::bench::ReadOrder;
    for order in [
        ReadOrder::ReadFirst,
        ReadOrder::FirstLoadsFirst,
        ReadOrder::WaitFirst,
    ] {
        for mb in [4.0, 9.5, 25.5, 34.0, 51.0, 74.0] {
            rows.push(greta::bench::bench_read(
                &dev,
                (mb * 1e6) as usize,
                order,
                timing,
                reps,
            )?);
        }
    }

    print!("{}", greta::bench::table(&rows, copy));
    Ok(())
}

/// `greta compile`: every built-in kernel compiled or loaded from the cache, timed.
fn compile(backend: &str) -> Result<()> {
    let dev = Device::open(backend.parse::<BackendKind>()?)?;
    let start = std::time::Instant::now();
    let before = greta::runtime::jit::compilations();
    let mut count = 0;
    for k in builtins() {
        for spec in &k.specs(&dev.target()) {
            dev.prepare((k.def)(), spec)?;
            count += 1;
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let compiled = greta::runtime::jit::compilations() - before;
    let how = if dev.kind() == BackendKind::Cpu {
        "interpreter code built in memory".to_string()
    } else {
        let dir = KernelCache::default_location()
            .map(|c| c.dir().display().to_string())
            .unwrap_or_default();
        format!(
            "{compiled} compiled, {} loaded from the cache in {dir}",
            count - compiled
        )
    };
    println!(
        "{}: {count} kernels ready in {ms:.0} ms ({how})",
        dev.describe()
    );
    Ok(())
}

/// `greta devices`: what each backend finds.
fn devices() {
    for line in greta::runtime::select::describe_devices() {
        println!("{line}");
    }
}

/// `greta cache`: the disk cache's size, or clears it.
fn cache(action: CacheAction) -> Result<()> {
    let cache = KernelCache::default_location()?;
    match action {
        CacheAction::Stats => {
            let s = cache.stats()?;
            println!(
                "{}: {} entries, {} bytes",
                cache.dir().display(),
                s.entries,
                s.bytes
            );
        }
        CacheAction::Clear => println!(
            "removed {} entries from {}",
            cache.clear()?,
            cache.dir().display()
        ),
    }
    Ok(())
}

/// `greta emit`: the generated source, printed or written one file per specialisation.
fn emit(t: &str, kernels: &[String], out: Option<PathBuf>) -> Result<()> {
    let t = target(t)?;
    for k in select(kernels)? {
        for spec in &k.specs(&t) {
            let ir = (k.def)().specialise(&t, spec)?;
            let src = hip::emit(&ir, &t)?;
            match &out {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let path = dir.join(format!("{}.{}.hip", ir.symbol, t.name));
                    std::fs::write(&path, src)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("{}", path.display());
                }
                None => println!("{src}"),
            }
        }
    }
    Ok(())
}

/// Launch shapes written on the command line, `0` standing for the library's choice.
fn launch_shapes<T: std::str::FromStr<Err = String>>(args: &[String]) -> Result<Vec<Option<T>>> {
    args.iter()
        .map(|t| {
            if t == "0" {
                Ok(None)
            } else {
                t.parse().map(Some)
            }
        })
        .collect::<std::result::Result<_, String>>()
        .map_err(anyhow::Error::msg)
}
