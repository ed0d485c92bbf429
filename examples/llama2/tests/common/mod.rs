//! Helpers shared by the integration tests: locating fetched data, and hand-built GGUF bytes.
#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::path::{Path, PathBuf};

use llama2::config::LlamaConfig;
use llama2::genmodel::{ModelPlan, Recipe};
use llama2::gguf::GgufWriter;

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

/// Little-endian GGUF bytes assembled field by field, valid or not.
#[derive(Default, Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version and the two counts.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }

    pub fn u8(mut self, v: u8) -> Raw {
        self.0.push(v);
        self
    }

    pub fn u32(mut self, v: u32) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }

    /// A GGUF string: u64 length then the bytes.
    pub fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    /// A metadata pair holding a u32.
    pub fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }

    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(type_id).u64(offset)
    }

    /// Zero bytes up to the next multiple of `align`.
    pub fn pad(mut self, align: usize) -> Raw {
        let len = self.0.len().next_multiple_of(align);
        self.0.resize(len, 0);
        self
    }

    /// `n` more zero bytes.
    pub fn zeros(mut self, n: usize) -> Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}
