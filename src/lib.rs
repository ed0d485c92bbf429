//! GRETA: a kernel-generating compiler toolchain for LLM inference.
extern crate self as greta;

pub mod quant;
