//! Llama-family inference on GRETA: GGUF model files and tokenizers.

pub mod gguf;
pub mod tokenizer;
