//! The GGUF metadata keys of a Llama model, shared by the reader and the model generator.

/// Model family.
pub const ARCHITECTURE: &str = "general.architecture";
/// Human-readable model name.
pub const NAME: &str = "general.name";
/// Number of transformer blocks.
pub const BLOCK_COUNT: &str = "llama.block_count";
/// Residual stream width.
pub const EMBEDDING_LENGTH: &str = "llama.embedding_length";
/// Feed-forward hidden width.
pub const FEED_FORWARD_LENGTH: &str = "llama.feed_forward_length";
/// Training context length.
pub const CONTEXT_LENGTH: &str = "llama.context_length";
/// Query head count.
pub const HEAD_COUNT: &str = "llama.attention.head_count";
/// Key/value head count.
pub const HEAD_COUNT_KV: &str = "llama.attention.head_count_kv";
/// Key head width, when the file states it.
pub const KEY_LENGTH: &str = "llama.attention.key_length";
/// Value head width, when the file states it.
pub const VALUE_LENGTH: &str = "llama.attention.value_length";
/// RMSNorm epsilon.
pub const RMS_EPS: &str = "llama.attention.layer_norm_rms_epsilon";
/// RoPE frequency base.
pub const ROPE_FREQ_BASE: &str = "llama.rope.freq_base";
/// Number of rotated dimensions per head.
pub const ROPE_DIMENSION_COUNT: &str = "llama.rope.dimension_count";
/// RoPE context-extension scheme.
pub const ROPE_SCALING_TYPE: &str = "llama.rope.scaling.type";
/// Vocabulary size, when the file states it.
pub const VOCAB_SIZE: &str = "llama.vocab_size";
/// The tokenizer's vocabulary.
pub const TOKENS: &str = "tokenizer.ggml.tokens";
