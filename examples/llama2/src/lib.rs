//! Llama-family inference on GRETA.
