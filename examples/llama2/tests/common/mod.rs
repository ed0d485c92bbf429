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
