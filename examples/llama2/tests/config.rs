//! Model configuration and tensor map: SmolLM2's values, and refusal of every kind of bad
//! metadata or tensor, with messages that name what is wrong.

mod common;

use greta::quant::GgmlType;
use greta_gguf::{Gguf, GgufError, GgufWriter, Value};
use llama2::config::{keys, ConfigError, LlamaConfig, LlamaWeights, Role};
use llama2::genmodel::{ModelPlan, Preset, Recipe};

#[test]
fn smollm2_config_and_weights() {
    let g = Gguf::open(common::smollm2()).unwrap();
    let c = LlamaConfig::from_gguf(&g).unwrap();
    assert_eq!(
        c,
        LlamaConfig {
            n_layer: 30,
            n_embd: 576,
            n_head: 9,
            n_head_kv: 3,
            n_ff: 1536,
            n_ctx: 8192,
            n_vocab: 49152,
            head_dim: 64,
            rope_dim: 64,
            rope_freq_base: 100000.0,
            rms_eps: 1e-5,
        }
    );
    assert_eq!((c.kv_dim(), c.gqa_group()), (192, 3));
    let w = LlamaWeights::from_gguf(&g, &c).unwrap();
    assert!(w.tied_embeddings);
    assert_eq!(w.output.name, "token_embd.weight");
    assert_eq!(w.token_embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(w.layers.len(), 30);
    assert_eq!(w.layers[29].ffn_down.name, "blk.29.ffn_down.weight");
    assert_eq!(w.layers[29].ffn_down.dims, [1536, 576]);
    assert_eq!(w.layers[0].attn_k.dims, [576, 192]);
    assert_eq!(w.layers[7].attn_q.ggml_type, GgmlType::Q4_1);
    assert_eq!(w.output_norm.ggml_type, GgmlType::F32);
    assert_eq!(c.n_params(true), 134_515_008);
}

/// A tiny model's metadata and tensors, edited by a test before being written.
struct Model {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, GgmlType, Vec<u64>)>,
}

impl Model {
    fn tiny() -> Model {
        let plan = ModelPlan::new(
            Preset::Tiny.config(),
            Recipe::Uniform(GgmlType::Q4_0),
            false,
        )
        .unwrap();
        Model {
            meta: plan
                .metadata()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            tensors: plan
                .tensors()
                .iter()
                .map(|t| (t.spec.name.clone(), t.ggml_type, t.spec.dims.clone()))
                .collect(),
        }
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> Model {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.to_owned(), value.into()));
        self
    }

    fn remove(mut self, key: &str) -> Model {
        let before = self.meta.len();
        self.meta.retain(|(k, _)| k != key);
        assert_eq!(self.meta.len() + 1, before, "{key} was present");
        self
    }

    fn tensor(mut self, name: &str, ggml_type: GgmlType, dims: &[u64]) -> Model {
        self.tensors.retain(|(n, _, _)| n != name);
        self.tensors
            .push((name.to_owned(), ggml_type, dims.to_vec()));
        self
    }

    fn drop_tensor(mut self, name: &str) -> Model {
        let before = self.tensors.len();
        self.tensors.retain(|(n, _, _)| n != name);
        assert_eq!(self.tensors.len() + 1, before, "{name} was present");
        self
    }

    /// The file, with zero tensor data (a valid encoding in every type used here).
    fn gguf(&self) -> Gguf<Vec<u8>> {
        let mut w = GgufWriter::with_writer("edited.gguf", Vec::new());
        for (k, v) in &self.meta {
            w.add(k, v.clone()).unwrap();
        }
        let mut size = 0;
        for (name, ty, dims) in &self.tensors {
            w.add_tensor(name, *ty, dims).unwrap();
            size += ty.bytes_for(dims.iter().product()).unwrap() as usize;
        }
        w.write_tensor_data(&vec![0; size]).unwrap();
        Gguf::from_bytes("edited.gguf", w.finish().unwrap()).unwrap()
    }

    fn config(&self) -> Result<LlamaConfig, ConfigError> {
        LlamaConfig::from_gguf(&self.gguf())
    }

    /// The message of the configuration error this model must cause.
    fn config_error(&self) -> String {
        let err = self.config().expect_err("the configuration was accepted");
        let msg = err.to_string();
        assert!(msg.starts_with("edited.gguf: "), "{msg}");
        msg
    }

    /// The message of the tensor error this (validly configured) model must cause.
    fn weights_error(&self) -> String {
        let g = self.gguf();
        let config = LlamaConfig::from_gguf(&g).unwrap();
        let err = LlamaWeights::from_gguf(&g, &config).expect_err("the tensors were accepted");
        let msg = err.to_string();
        assert!(msg.starts_with("edited.gguf: "), "{msg}");
        msg
    }
}

/// Asserts that `msg` contains every one of `parts`.
fn assert_names(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "{msg:?} does not mention {part:?}");
    }
}

#[test]
fn generated_tiny_model_reads_back_with_its_shape() {
    let m = Model::tiny();
    assert_eq!(m.config().unwrap(), Preset::Tiny.config());
    let g = m.gguf();
    let w = LlamaWeights::from_gguf(&g, &Preset::Tiny.config()).unwrap();
    assert!(!w.tied_embeddings);
    assert_eq!(w.output.name, "output.weight");
}

#[test]
fn other_architectures_are_refused_with_the_supported_list() {
    let msg = Model::tiny().set(keys::ARCHITECTURE, "gpt2").config_error();
    assert_names(&msg, &["architecture 'gpt2'", "supported: llama"]);
}

#[test]
fn optional_keys_take_their_defaults() {
    let c = Model::tiny()
        .remove(keys::HEAD_COUNT_KV)
        .remove(keys::ROPE_FREQ_BASE)
        .remove(keys::ROPE_DIMENSION_COUNT)
        .config()
        .unwrap();
    assert_eq!((c.n_head_kv, c.n_head), (4, 4));
    assert_eq!(c.rope_freq_base, 10000.0);
    assert_eq!(c.rope_dim, c.head_dim);
    let c = Model::tiny()
        .remove(keys::VOCAB_SIZE)
        .set(keys::KEY_LENGTH, 64u32)
        .set(keys::ROPE_SCALING_TYPE, "none")
        .config()
        .unwrap();
    assert_eq!(c.n_vocab, 512);
}

#[test]
fn vocabulary_size_comes_from_either_key_and_must_agree() {
    let c = Model::tiny().remove(keys::TOKENS).config().unwrap();
    assert_eq!(c.n_vocab, 512);
    let msg = Model::tiny().set(keys::VOCAB_SIZE, 500u32).config_error();
    assert_names(&msg, &[keys::VOCAB_SIZE, "500", "512 tokens"]);
    let msg = Model::tiny()
        .remove(keys::TOKENS)
        .remove(keys::VOCAB_SIZE)
        .config_error();
    assert_names(
        &msg,
        &["no vocabulary size", keys::TOKENS, keys::VOCAB_SIZE],
    );
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let err = Model::tiny()
        .remove(keys::BLOCK_COUNT)
        .config()
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Gguf(GgufError::MissingKey { key, .. }) if key == keys::BLOCK_COUNT),
        "{err}"
    );
    let msg = Model::tiny().set(keys::RMS_EPS, "small").config_error();
    assert_names(&msg, &[keys::RMS_EPS, "string", "f32"]);
    let msg = Model::tiny().set(keys::HEAD_COUNT, -4i32).config_error();
    assert_names(&msg, &[keys::HEAD_COUNT, "u64"]);
}

#[test]
fn inconsistent_head_counts_are_refused() {
    let msg = Model::tiny().set(keys::HEAD_COUNT_KV, 3u32).config_error();
    assert_names(
        &msg,
        &[
            keys::HEAD_COUNT_KV,
            "is 3",
            "must divide the query head count 4",
        ],
    );
    let msg = Model::tiny().set(keys::HEAD_COUNT_KV, 8u32).config_error();
    assert_names(&msg, &[keys::HEAD_COUNT_KV, "between 1 and 4"]);
    let msg = Model::tiny().set(keys::HEAD_COUNT, 3u32).config_error();
    assert_names(&msg, &[keys::HEAD_COUNT, "must divide n_embd = 256"]);
    let msg = Model::tiny()
        .set(keys::HEAD_COUNT, 256u32)
        .set(keys::HEAD_COUNT_KV, 256u32)
        .config_error();
    assert_names(&msg, &["head width", "must be even"]);
    let msg = Model::tiny().set(keys::KEY_LENGTH, 128u32).config_error();
    assert_names(&msg, &[keys::KEY_LENGTH, "128", "64"]);
}

#[test]
fn hostile_sizes_are_refused_before_anything_is_allocated() {
    for (key, value) in [
        (keys::BLOCK_COUNT, 0u64),
        (keys::BLOCK_COUNT, 1 << 40),
        (keys::EMBEDDING_LENGTH, u64::MAX),
        (keys::FEED_FORWARD_LENGTH, 1 << 33),
        (keys::CONTEXT_LENGTH, 0),
        (keys::CONTEXT_LENGTH, 1 << 50),
        (keys::VOCAB_SIZE, 1 << 40),
    ] {
        let model = if key == keys::VOCAB_SIZE {
            Model::tiny().remove(keys::TOKENS)
        } else {
            Model::tiny()
        };
        let msg = model.set(key, value).config_error();
        assert_names(&msg, &[key, &value.to_string(), "must be between 1 and"]);
    }
}

#[test]
fn bad_rope_and_norm_parameters_are_refused() {
    for (key, value, reason) in [
        (keys::ROPE_FREQ_BASE, 0.0f32, "positive and finite"),
        (keys::ROPE_FREQ_BASE, f32::INFINITY, "positive and finite"),
        (keys::RMS_EPS, 0.0, "between 0 and 1"),
        (keys::RMS_EPS, f32::NAN, "between 0 and 1"),
        (keys::RMS_EPS, 2.0, "between 0 and 1"),
    ] {
        let msg = Model::tiny().set(key, value).config_error();
        assert_names(&msg, &[key, reason]);
    }
    for dim in [0u32, 63, 66] {
        let msg = Model::tiny()
            .set(keys::ROPE_DIMENSION_COUNT, dim)
            .config_error();
        assert_names(&msg, &[keys::ROPE_DIMENSION_COUNT, "even", "64"]);
    }
    let partial = Model::tiny()
        .set(keys::ROPE_DIMENSION_COUNT, 32u32)
        .config()
        .unwrap();
    assert_eq!((partial.rope_dim, partial.head_dim), (32, 64));
    let msg = Model::tiny()
        .set(keys::ROPE_SCALING_TYPE, "yarn")
        .config_error();
    assert_names(&msg, &["RoPE scaling 'yarn'", "not supported"]);
}

#[test]
fn missing_tensors_are_named() {
    let msg = Model::tiny()
        .drop_tensor("blk.2.ffn_up.weight")
        .weights_error();
    assert_names(&msg, &["tensor 'blk.2.ffn_up.weight' is missing"]);
    let msg = Model::tiny()
        .drop_tensor("output_norm.weight")
        .weights_error();
    assert_names(&msg, &["'output_norm.weight'"]);
}

#[test]
fn wrong_shapes_are_named_with_the_expected_shape() {
    let msg = Model::tiny()
        .tensor("blk.1.attn_k.weight", GgmlType::Q4_0, &[256, 256])
        .weights_error();
    assert_names(
        &msg,
        &["'blk.1.attn_k.weight'", "[256, 256]", "expected [256, 128]"],
    );
    let msg = Model::tiny()
        .tensor("blk.0.attn_norm.weight", GgmlType::F32, &[256, 1])
        .weights_error();
    assert_names(&msg, &["'blk.0.attn_norm.weight'", "expected [256]"]);
}

#[test]
fn unsupported_tensor_types_are_named_with_the_supported_list() {
    let msg = Model::tiny()
        .tensor("blk.3.ffn_gate.weight", GgmlType::Q2K, &[256, 512])
        .weights_error();
    assert_names(
        &msg,
        &[
            "'blk.3.ffn_gate.weight' is Q2_K",
            "supported: F32, F16, BF16",
            "Q6_K",
        ],
    );
    let msg = Model::tiny()
        .tensor("output.weight", GgmlType::Q8K, &[256, 512])
        .weights_error();
    assert_names(&msg, &["'output.weight' is Q8_K"]);
}

#[test]
fn a_missing_head_ties_it_to_the_embeddings() {
    let g = Model::tiny().drop_tensor("output.weight").gguf();
    let w = LlamaWeights::from_gguf(&g, &Preset::Tiny.config()).unwrap();
    assert!(w.tied_embeddings);
    assert_eq!(w.output.name, "token_embd.weight");
    assert_eq!(w.output.bytes.as_ptr(), w.token_embd.bytes.as_ptr());
}

#[test]
fn rope_frequency_factors_are_refused() {
    let msg = Model::tiny()
        .tensor("rope_freqs.weight", GgmlType::F32, &[32])
        .weights_error();
    assert_names(&msg, &["rope_freqs.weight", "not supported"]);
}

#[test]
fn tensor_specs_follow_the_gguf_layout() {
    let c = Preset::Tiny.config();
    let specs = c.tensor_specs(false);
    assert_eq!(specs.len(), 2 + 9 * c.n_layer + 1);
    assert_eq!(specs[0].name, "token_embd.weight");
    assert_eq!(specs[1].name, "blk.0.attn_norm.weight");
    assert_eq!(specs.last().unwrap().name, "output.weight");
    let down = c.tensor_spec(Role::FfnDown, Some(3));
    assert_eq!(
        (down.name.as_str(), down.dims.as_slice()),
        ("blk.3.ffn_down.weight", &[512u64, 256][..])
    );
    assert_eq!(c.tensor_specs(true).len(), specs.len() - 1);
}
