//! A user crate defining its own fused kernel.
