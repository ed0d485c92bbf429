//! The tensors of a Llama model: names, expected shapes, and the checked map from a GGUF
//! file.

use greta::quant::GgmlType;

use super::{ConfigError, LlamaConfig};
use greta_gguf::{Gguf, TensorView};

/// The element types weights may be stored in (those the reference codecs decode).
pub use greta::quant::WEIGHT_TYPES;

/// The supported weight type names, comma-separated.
pub(super) fn weight_type_list() -> String {
    WEIGHT_TYPES.map(GgmlType::name).join(", ")
}

/// A frequency-factor tensor (Llama 3.1 RoPE scaling) that the forward pass does not apply.
const ROPE_FREQS: &str = "rope_freqs.weight";

/// What a tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Token embedding table, one row per token.
    TokenEmbd,
    /// RMSNorm weight before attention.
    AttnNorm,
    /// Query projection.
    AttnQ,
    /// Key projection.
    AttnK,
    /// Value projection.
    AttnV,
    /// Attention output projection.
    AttnOutput,
    /// RMSNorm weight before the feed-forward block.
    FfnNorm,
    /// SwiGLU gate projection.
    FfnGate,
    /// SwiGLU up projection.
    FfnUp,
    /// Feed-forward down projection.
    FfnDown,
    /// Final RMSNorm weight.
    OutputNorm,
    /// Language-model head, one row per token.
    Output,
}

impl Role {
    /// The roles of one transformer block, in file order.
    pub const LAYER: [Role; 9] = [
        Role::AttnNorm,
        Role::AttnQ,
        Role::AttnK,
        Role::AttnV,
        Role::AttnOutput,
        Role::FfnNorm,
        Role::FfnGate,
        Role::FfnUp,
        Role::FfnDown,
    ];

    /// The name stem GGUF uses (`attn_q` in `blk.0.attn_q.weight`).
    pub fn stem(self) -> &'static str {
        match self {
            Role::TokenEmbd => "token_embd",
            Role::AttnNorm => "attn_norm",
            Role::AttnQ => "attn_q",
            Role::AttnK => "attn_k",
            Role::AttnV => "attn_v",
            Role::AttnOutput => "attn_output",
            Role::FfnNorm => "ffn_norm",
            Role::FfnGate => "ffn_gate",
            Role::FfnUp => "ffn_up",
            Role::FfnDown => "ffn_down",
            Role::OutputNorm => "output_norm",
            Role::Output => "output",
        }
    }

    /// Whether the tensor is a normalisation weight (a vector, not a matrix).
    pub fn is_norm(self) -> bool {
        matches!(self, Role::AttnNorm | Role::FfnNorm | Role::OutputNorm)
    }
}

/// A tensor's name and expected shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// GGUF tensor name.
    pub name: String,
    /// What the tensor is for.
    pub role: Role,
    /// The block it belongs to, for per-layer tensors.
    pub layer: Option<usize>,
    /// Dimensions, innermost first: `[n_in, n_out]` for a matrix with one row per output.
    pub dims: Vec<u64>,
}

impl TensorSpec {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

impl LlamaConfig {
    /// The tensor of `role` (in block `layer` for per-layer roles) with its expected shape.
    pub fn tensor_spec(&self, role: Role, layer: Option<usize>) -> TensorSpec {
        let [embd, ff, vocab, kv] =
            [self.n_embd, self.n_ff, self.n_vocab, self.kv_dim()].map(|n| n as u64);
        let dims = match role {
            Role::AttnNorm | Role::FfnNorm | Role::OutputNorm => vec![embd],
            Role::TokenEmbd | Role::Output => vec![embd, vocab],
            Role::AttnQ | Role::AttnOutput => vec![embd, embd],
            Role::AttnK | Role::AttnV => vec![embd, kv],
            Role::FfnGate | Role::FfnUp => vec![embd, ff],
            Role::FfnDown => vec![ff, embd],
        };
        let name = match layer {
            Some(i) => format!("blk.{i}.{}.weight", role.stem()),
            None => format!("{}.weight", role.stem()),
        };
        TensorSpec {
            name,
            role,
            layer,
            dims,
        }
    }

    /// Every tensor of the model in file order; `output.weight` is left out when the
    /// embeddings are tied.
    pub fn tensor_specs(&self, tied_embeddings: bool) -> Vec<TensorSpec> {
        let mut specs = vec![self.tensor_spec(Role::TokenEmbd, None)];
        for layer in 0..self.n_layer {
            specs.extend(
                Role::LAYER
                    .iter()
                    .map(|&role| self.tensor_spec(role, Some(layer))),
            );
        }
        specs.push(self.tensor_spec(Role::OutputNorm, None));
        if !tied_embeddings {
            specs.push(self.tensor_spec(Role::Output, None));
        }
        specs
    }
}

/// The tensors of one transformer block.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a> {
    /// RMSNorm weight before attention.
    pub attn_norm: TensorView<'a>,
    /// Query projection.
    pub attn_q: TensorView<'a>,
    /// Key projection.
    pub attn_k: TensorView<'a>,
    /// Value projection.
    pub attn_v: TensorView<'a>,
    /// Attention output projection.
    pub attn_output: TensorView<'a>,
    /// RMSNorm weight before the feed-forward block.
    pub ffn_norm: TensorView<'a>,
    /// SwiGLU gate projection.
    pub ffn_gate: TensorView<'a>,
    /// SwiGLU up projection.
    pub ffn_up: TensorView<'a>,
    /// Feed-forward down projection.
    pub ffn_down: TensorView<'a>,
}

/// Every tensor of a Llama model, present, of the expected shape and a supported type.
#[derive(Clone, Debug)]
pub struct LlamaWeights<'a> {
    /// Token embedding table.
    pub token_embd: TensorView<'a>,
    /// The transformer blocks.
    pub layers: Vec<LayerWeights<'a>>,
    /// Final RMSNorm weight.
    pub output_norm: TensorView<'a>,
    /// Language-model head: `output.weight`, or the embedding table when tied.
    pub output: TensorView<'a>,
    /// Whether the head reuses the embedding table (the file has no `output.weight`).
    pub tied_embeddings: bool,
}

impl<'a> LlamaWeights<'a> {
    /// Finds and checks every tensor `config` calls for in `g`.
    pub fn from_gguf<B: AsRef<[u8]>>(
        g: &'a Gguf<B>,
        config: &LlamaConfig,
    ) -> Result<Self, ConfigError> {
        let path = g.path().display().to_string();
        if g.tensor_info(ROPE_FREQS).is_some() {
            return Err(ConfigError::Unsupported {
                path,
                feature: format!("RoPE frequency factors (tensor '{ROPE_FREQS}')"),
            });
        }
        let load = |role: Role, layer: Option<usize>| -> Result<TensorView<'a>, ConfigError> {
            let spec = config.tensor_spec(role, layer);
            let view = g
                .tensor(&spec.name)
                .map_err(|_| ConfigError::MissingTensor {
                    path: path.clone(),
                    tensor: spec.name.clone(),
                })?;
            if view.dims != spec.dims.as_slice() {
                return Err(ConfigError::BadShape {
                    path: path.clone(),
                    tensor: spec.name,
                    dims: view.dims.to_vec(),
                    expected: spec.dims,
                });
            }
            if !WEIGHT_TYPES.contains(&view.ggml_type) {
                return Err(ConfigError::UnsupportedType {
                    path: path.clone(),
                    tensor: spec.name,
                    ggml_type: view.ggml_type,
                });
            }
            Ok(view)
        };
        let token_embd = load(Role::TokenEmbd, None)?;
        let layers = (0..config.n_layer)
            .map(|i| {
                let l = |role| load(role, Some(i));
                Ok(LayerWeights {
                    attn_norm: l(Role::AttnNorm)?,
                    attn_q: l(Role::AttnQ)?,
                    attn_k: l(Role::AttnK)?,
                    attn_v: l(Role::AttnV)?,
                    attn_output: l(Role::AttnOutput)?,
                    ffn_norm: l(Role::FfnNorm)?,
                    ffn_gate: l(Role::FfnGate)?,
                    ffn_up: l(Role::FfnUp)?,
                    ffn_down: l(Role::FfnDown)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let output_norm = load(Role::OutputNorm, None)?;
        let tied_embeddings = g
            .tensor_info(&config.tensor_spec(Role::Output, None).name)
            .is_none();
        let output = if tied_embeddings {
            token_embd
        } else {
            load(Role::Output, None)?
        };
        Ok(LlamaWeights {
            token_embd,
            layers,
            output_norm,
            output,
            tied_embeddings,
        })
    }
}
