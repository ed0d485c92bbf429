//! Llama-family inference on GRETA: GGUF model files, tokenizers, model configuration, a
//! plain-Rust reference forward pass, and a generator of random models.

pub mod bench;
pub mod check;
pub mod config;
pub mod engine;
pub mod generate;
pub mod genmodel;
pub mod loadgen;
pub mod oracle;
pub mod sampling;
pub mod serve;
pub mod tokenizer;
pub mod trace;
