//! Llama-family inference on GRETA: GGUF model files, tokenizers, model configuration, a
//! plain-Rust reference forward pass, and a generator of random models.

pub mod config;
pub mod genmodel;
pub mod gguf;
pub mod oracle;
pub mod tokenizer;
pub mod engine;
pub mod generate;
pub mod sampling;
pub mod trace;
pub mod bench;
pub mod check;
