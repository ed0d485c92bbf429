//! Errors of the reference codecs.

use super::codec::SUPPORTED;
use super::GgmlType;

/// Why a reference (de)quantisation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    /// The type has no reference codec here.
    #[error("no reference codec for {0}; supported types: {list}", list = supported_list())]
    Unsupported(GgmlType),
    /// Encoded data does not end on a block boundary.
    #[error("{len} bytes of {ty} data are not a whole number of {block_bytes}-byte blocks")]
    PartialBlockBytes {
        ty: GgmlType,
        len: usize,
        block_bytes: usize,
    },
    /// Values do not fill whole blocks.
    #[error("{len} values are not a whole number of {block_elems}-value {ty} blocks")]
    PartialBlockValues {
        ty: GgmlType,
        len: usize,
        block_elems: usize,
    },
    /// A value buffer's length does not match the encoded data.
    #[error("the {ty} data holds {expected} values but the value buffer has {got}")]
    LengthMismatch {
        ty: GgmlType,
        expected: usize,
        got: usize,
    },
    /// A value to quantise is NaN or infinite.
    #[error("value {index} is {value}, which {ty} cannot encode")]
    NonFinite {
        ty: GgmlType,
        index: usize,
        value: f32,
    },
    /// The requested number of blocks overflows the address space.
    #[error("{n_blocks} blocks of {ty} exceed the address space")]
    TooLarge { ty: GgmlType, n_blocks: usize },
}

/// The supported type names, comma-separated.
fn supported_list() -> String {
    SUPPORTED.map(GgmlType::name).join(", ")
}
