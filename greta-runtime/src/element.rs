//! Host element types that map to kernel scalar types.

use greta_codegen::Scalar;
use half::{bf16, f16};

/// A host type usable as a buffer element or kernel argument, with its kernel scalar type.
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The kernel type this host type corresponds to.
    const SCALAR: Scalar;
}

macro_rules! element {
    ($($t:ty => $s:ident),* $(,)?) => {
        $(impl Element for $t {
            const SCALAR: Scalar = Scalar::$s;
        })*
    };
}

element! {
    i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32,
    i64 => I64, u64 => U64, f16 => F16, bf16 => BF16, f32 => F32,
}
