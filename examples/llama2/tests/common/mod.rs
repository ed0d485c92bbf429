//! Helpers shared by the integration tests: locating fetched data, and hand-built GGUF bytes.
#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::path::{Path, PathBuf};

use greta_gguf::GgufWriter;
use llama2::config::LlamaConfig;
use llama2::genmodel::{ModelPlan, Recipe};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_owned()
}

/// A file under `<repo>/data/`, failing the test with the script to run when it is absent.
pub fn data_file(name: &str) -> PathBuf {
    required(
        repo_root().join("data").join(name),
        "scripts/fetch-test-data.sh",
    )
}

/// The SmolLM2 GGUF under `<repo>/models/`, failing the test when it is absent.
pub fn smollm2() -> PathBuf {
    required(smollm2_path(), "scripts/fetch-model.sh")
}

/// Where the SmolLM2 GGUF lives once fetched.
pub fn smollm2_path() -> PathBuf {
    repo_root()
        .join("models")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn required(path: PathBuf, script: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: run `bash {script}` first",
        path.display()
    );
    path
}

/// The bytes of a generated model of shape `config` (untied head), made in memory.
pub fn generated(config: LlamaConfig, recipe: Recipe, seed: u64) -> Vec<u8> {
    let plan = ModelPlan::new(config, recipe, false).unwrap();
    plan.write(
        GgufWriter::with_writer("generated.gguf", Vec::new()),
        seed,
        |_| {},
    )
    .unwrap()
}

/// The CPU backend at `wave` lanes, not trapping non-finite stores.
pub fn cpu(wave: u32) -> greta::runtime::Device {
    use greta::runtime::cpu::{CpuBackend, CpuOptions};
    greta::runtime::Device::from_backend(std::sync::Arc::new(
        CpuBackend::new(CpuOptions {
            wave,
            trap_non_finite: false,
        })
        .expect("CPU backend"),
    ))
}

/// A random model of the tiny preset made with `recipe`.
pub fn tiny(recipe: Recipe, seed: u64) -> greta_gguf::Gguf<Vec<u8>> {
    let bytes = generated(llama2::genmodel::Preset::Tiny.config(), recipe, seed);
    greta_gguf::Gguf::from_bytes("tiny.gguf", bytes).expect("generated model parses")
}

/// Starts `llama2 serve` with `args` on a free port: the process and its base URL (its
/// log keeps being read so that it never blocks on a full pipe).
pub fn serve(args: &[&std::ffi::OsStr]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_llama2"))
        .args(["serve", "--backend", "cpu", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("server started");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .expect("stderr line");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}
