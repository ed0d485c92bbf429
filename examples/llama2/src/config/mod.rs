//! Llama hyperparameters read from GGUF metadata, checked before anything is sized by them,
//! and the tensors a Llama model is made of.

pub mod keys;
mod tensors;

use greta_gguf::{Gguf, GgufError};

pub use tensors::{LayerWeights, LlamaWeights, Role, TensorSpec, WEIGHT_TYPES};

/// The `general.architecture` values this crate runs.
pub const SUPPORTED_ARCHITECTURES: [&str; 1] = ["llama"];

/// Upper bounds that keep hostile metadata from sizing huge allocations; each is far above
/// any released Llama-family model.
const MAX_LAYERS: usize = 1024;
const MAX_EMBD: usize = 1 << 16;
const MAX_FF: usize = 1 << 20;
const MAX_CTX: usize = 1 << 24;
const MAX_VOCAB: usize = 1 << 22;

/// Why a model's configuration or tensors cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A metadata key is missing, of the wrong type, or a tensor lookup failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names a model family this crate does not run.
    #[error("{path}: architecture '{arch}' is not supported (supported: {supported})", supported = SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture { path: String, arch: String },
    /// A hyperparameter outside what this crate accepts.
    #[error("{path}: key '{key}' is {value}; {reason}")]
    BadValue {
        path: String,
        key: &'static str,
        value: String,
        reason: String,
    },
    /// Neither the tokenizer nor the architecture metadata gives the vocabulary size.
    #[error(
        "{path}: no vocabulary size: neither 'tokenizer.ggml.tokens' nor '{}' is present",
        keys::VOCAB_SIZE
    )]
    NoVocabSize { path: String },
    /// A model feature the forward pass does not implement.
    #[error("{path}: {feature} is not supported")]
    Unsupported { path: String, feature: String },
    /// A tensor the model needs is absent.
    #[error("{path}: tensor '{tensor}' is missing")]
    MissingTensor { path: String, tensor: String },
    /// A tensor whose dimensions disagree with the hyperparameters.
    #[error("{path}: tensor '{tensor}' has dimensions {dims:?}, expected {expected:?} (innermost first)")]
    BadShape {
        path: String,
        tensor: String,
        dims: Vec<u64>,
        expected: Vec<u64>,
    },
    /// A tensor stored in a type the forward pass cannot decode.
    #[error("{path}: tensor '{tensor}' is {ggml_type}, which is not supported (supported: {supported})", supported = tensors::weight_type_list())]
    UnsupportedType {
        path: String,
        tensor: String,
        ggml_type: greta::quant::GgmlType,
    },
}

/// The hyperparameters of a Llama-family model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of query heads.
    pub n_head: usize,
    /// Number of key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Hidden width of the feed-forward block.
    pub n_ff: usize,
    /// Context length the model was trained for.
    pub n_ctx: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Width of one attention head (`n_embd / n_head`).
    pub head_dim: usize,
    /// How many leading dimensions of each head RoPE rotates (`head_dim` unless the file says).
    pub rope_dim: usize,
    /// RoPE frequency base.
    pub rope_freq_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
}

impl LlamaConfig {
    /// Reads and validates the hyperparameters in a GGUF file's metadata.
    pub fn from_gguf<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<Self, ConfigError> {
        let path = g.path().display().to_string();
        let arch: &str = g.get(keys::ARCHITECTURE)?;
        if !SUPPORTED_ARCHITECTURES.contains(&arch) {
            return Err(ConfigError::UnsupportedArchitecture {
                path,
                arch: arch.to_owned(),
            });
        }
        if let Some(scaling) = g.get_opt::<&str>(keys::ROPE_SCALING_TYPE)? {
            if scaling != "none" {
                return Err(ConfigError::Unsupported {
                    path,
                    feature: format!("RoPE scaling '{scaling}' ('{}')", keys::ROPE_SCALING_TYPE),
                });
            }
        }
        let count = |key: &'static str| -> Result<usize, ConfigError> {
            let v: u64 = g.get(key)?;
            usize::try_from(v).map_err(|_| bad(&path, key, v, "too large"))
        };
        let opt_count = |key: &'static str| -> Result<Option<usize>, ConfigError> {
            g.get_opt::<u64>(key)?
                .map(|v| usize::try_from(v).map_err(|_| bad(&path, key, v, "too large")))
                .transpose()
        };
        let n_embd = count(keys::EMBEDDING_LENGTH)?;
        let n_head = count(keys::HEAD_COUNT)?;
        let tokens = g
            .get_opt::<&greta_gguf::Array>(keys::TOKENS)?
            .map(|a| a.len());
        let n_vocab = match (tokens, opt_count(keys::VOCAB_SIZE)?) {
            (Some(t), Some(v)) if t != v => {
                return Err(bad(
                    &path,
                    keys::VOCAB_SIZE,
                    v,
                    &format!("'{}' has {t} tokens", keys::TOKENS),
                ))
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => return Err(ConfigError::NoVocabSize { path }),
        };
        // Head width is derived below; a division by zero must not happen first.
        let head_dim = n_embd.checked_div(n_head).unwrap_or(0);
        let config = LlamaConfig {
            n_layer: count(keys::BLOCK_COUNT)?,
            n_embd,
            n_head,
            n_head_kv: opt_count(keys::HEAD_COUNT_KV)?.unwrap_or(n_head),
            n_ff: count(keys::FEED_FORWARD_LENGTH)?,
            n_ctx: count(keys::CONTEXT_LENGTH)?,
            n_vocab,
            head_dim,
            rope_dim: opt_count(keys::ROPE_DIMENSION_COUNT)?.unwrap_or(head_dim),
            rope_freq_base: g.get_opt(keys::ROPE_FREQ_BASE)?.unwrap_or(10000.0),
            rms_eps: g.get(keys::RMS_EPS)?,
        };
        config.validate(&path)?;
        for key in [keys::KEY_LENGTH, keys::VALUE_LENGTH] {
            if let Some(len) = opt_count(key)? {
                if len != config.head_dim {
                    return Err(bad(
                        &path,
                        key,
                        len,
                        &format!(
                            "only heads of n_embd / n_head = {} are supported",
                            config.head_dim
                        ),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// Checks that the hyperparameters are consistent and within bounds; `path` labels the
    /// messages, which name the metadata key of the offending value.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let in_range = |key: &'static str, v: usize, max: usize| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(bad(path, key, v, &format!("must be between 1 and {max}")))
            }
        };
        in_range(keys::BLOCK_COUNT, self.n_layer, MAX_LAYERS)?;
        in_range(keys::EMBEDDING_LENGTH, self.n_embd, MAX_EMBD)?;
        in_range(keys::HEAD_COUNT, self.n_head, self.n_embd)?;
        in_range(keys::HEAD_COUNT_KV, self.n_head_kv, self.n_head)?;
        in_range(keys::FEED_FORWARD_LENGTH, self.n_ff, MAX_FF)?;
        in_range(keys::CONTEXT_LENGTH, self.n_ctx, MAX_CTX)?;
        in_range(keys::VOCAB_SIZE, self.n_vocab, MAX_VOCAB)?;
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(bad(
                path,
                keys::HEAD_COUNT,
                self.n_head,
                &format!("must divide n_embd = {}", self.n_embd),
            ));
        }
        if self.head_dim != self.n_embd / self.n_head || !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                path,
                keys::HEAD_COUNT,
                self.n_head,
                &format!(
                    "the head width n_embd / n_head = {} must be even (head_dim is {})",
                    self.n_embd / self.n_head,
                    self.head_dim
                ),
            ));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(bad(
                path,
                keys::HEAD_COUNT_KV,
                self.n_head_kv,
                &format!("must divide the query head count {}", self.n_head),
            ));
        }
        if self.rope_dim == 0 || self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return Err(bad(
                path,
                keys::ROPE_DIMENSION_COUNT,
                self.rope_dim,
                &format!(
                    "must be even and between 2 and the head width {}",
                    self.head_dim
                ),
            ));
        }
        if !(self.rope_freq_base.is_finite() && self.rope_freq_base > 0.0) {
            return Err(bad(
                path,
                keys::ROPE_FREQ_BASE,
                self.rope_freq_base,
                "must be positive and finite",
            ));
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return Err(bad(
                path,
                keys::RMS_EPS,
                self.rms_eps,
                "must lie between 0 and 1 (exclusive)",
            ));
        }
        Ok(())
    }

    /// Width of the keys (and values) of one position: `n_head_kv * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Query heads that share one key/value head.
    pub fn gqa_group(&self) -> usize {
        self.n_head / self.n_head_kv
    }

    /// Total number of weights of the model's tensors.
    pub fn n_params(&self, tied_embeddings: bool) -> u64 {
        self.tensor_specs(tied_embeddings)
            .iter()
            .map(TensorSpec::n_elements)
            .sum()
    }
}

/// A `BadValue` error.
fn bad(path: &str, key: &'static str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        path: path.to_owned(),
        key,
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}
