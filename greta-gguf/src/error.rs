//! Errors from reading and writing GGUF files. Every message names the file, the key or
//! tensor concerned and, for problems in the file itself, the byte offset.

use std::io;
use std::path::PathBuf;

/// Why a GGUF file could not be read, or a value in it could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path names a folder, FIFO, socket or device rather than a regular file.
    #[error("{}: is {kind}, not a regular file; give the path of a .gguf model file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// The first four bytes are not `GGUF`.
    #[error("{}: not a GGUF file (magic {found:02x?} at offset 0, expected \"GGUF\")", path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },
    /// GGUF v1 used 32-bit counts; it is not read.
    #[error("{}: GGUF version 1 is not supported (only versions 2 and 3); convert the model again with a current converter", path.display())]
    VersionOne { path: PathBuf },
    /// A version this reader does not know (big-endian files show up here).
    #[error("{}: unsupported GGUF version {version} at offset 4 (supported: 2 and 3){hint}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },
    /// A field runs past the end of the file.
    #[error("{}: {field} at offset {offset} needs {need} bytes, but the file ends at {file_len}", path.display())]
    Truncated {
        path: PathBuf,
        field: String,
        offset: u64,
        need: u64,
        file_len: u64,
    },
    /// A count or length could not possibly fit in the bytes that remain.
    #[error("{}: {field} {count} at offset {offset} cannot fit in the {remaining} bytes left (each needs at least {min_each})", path.display())]
    CountTooLarge {
        path: PathBuf,
        field: String,
        count: u64,
        offset: u64,
        min_each: u64,
        remaining: u64,
    },
    /// The parsed items of a list outgrew the memory the allocator would give.
    #[error("{}: {field}: out of memory after {parsed} of the {count} items the file claims", path.display())]
    OutOfMemory {
        path: PathBuf,
        field: String,
        count: u64,
        parsed: u64,
    },
    /// A string is not UTF-8.
    #[error("{}: {field} at offset {offset} is not valid UTF-8", path.display())]
    InvalidUtf8 {
        path: PathBuf,
        field: String,
        offset: u64,
    },
    /// A metadata value type id outside the thirteen GGUF types.
    #[error("{}: {field} has unknown value type id {type_id} at offset {offset}", path.display())]
    UnknownValueType {
        path: PathBuf,
        field: String,
        type_id: u32,
        offset: u64,
    },
    /// A bool stored as something other than 0 or 1.
    #[error("{}: {field} at offset {offset} is a bool stored as {byte} (must be 0 or 1)", path.display())]
    BadBool {
        path: PathBuf,
        field: String,
        offset: u64,
        byte: u8,
    },
    /// Arrays nested deeper than the reader allows.
    #[error("{}: {field} at offset {offset} nests arrays deeper than {max}", path.display())]
    ArrayTooDeep {
        path: PathBuf,
        field: String,
        offset: u64,
        max: usize,
    },
    /// The same metadata key appears twice.
    #[error("{}: duplicate key '{key}' at offset {offset}", path.display())]
    DuplicateKey {
        path: PathBuf,
        key: String,
        offset: u64,
    },
    /// `general.alignment` is not a power of two up to 64 KiB.
    #[error("{}: key 'general.alignment' is {value}; it must be a power of two no larger than 65536", path.display())]
    BadAlignment { path: PathBuf, value: i128 },
    /// A tensor with more dimensions than ggml allows.
    #[error("{}: tensor '{tensor}': {n_dims} dimensions at offset {offset} (at most {max})", path.display())]
    TooManyDims {
        path: PathBuf,
        tensor: String,
        n_dims: u32,
        offset: u64,
        max: usize,
    },
    /// A tensor whose element count or byte size does not fit in 64 bits.
    #[error("{}: tensor '{tensor}': dimensions {dims:?} at offset {offset} overflow 64 bits", path.display())]
    DimsOverflow {
        path: PathBuf,
        tensor: String,
        dims: Vec<u64>,
        offset: u64,
    },
    /// A ggml type id this crate does not know.
    #[error("{}: tensor '{tensor}': unknown ggml type id {type_id} at offset {offset}", path.display())]
    UnknownTensorType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
        offset: u64,
    },
    /// A quantised tensor whose rows are not a whole number of blocks.
    #[error("{}: tensor '{tensor}': first dimension {ne0} is not a multiple of the {ggml_type} block size {block}", path.display())]
    PartialBlock {
        path: PathBuf,
        tensor: String,
        ggml_type: crate::quant::GgmlType,
        ne0: u64,
        block: usize,
    },
    /// The same tensor name appears twice.
    #[error("{}: duplicate tensor '{tensor}' at offset {offset}", path.display())]
    DuplicateTensor {
        path: PathBuf,
        tensor: String,
        offset: u64,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("{}: tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}", path.display())]
    Misaligned {
        path: PathBuf,
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    /// A tensor's data runs past the end of the file.
    #[error("{}: tensor '{tensor}': data [offset {offset}, {size} bytes] runs past end of file ({file_len} bytes)", path.display())]
    TensorOutOfBounds {
        path: PathBuf,
        tensor: String,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    /// Two tensors share bytes.
    #[error("{}: tensor '{tensor}' [offset {offset}] overlaps tensor '{other}' [offset {other_offset}, {other_size} bytes]", path.display())]
    TensorOverlap {
        path: PathBuf,
        tensor: String,
        offset: u64,
        other: String,
        other_offset: u64,
        other_size: u64,
    },
    /// A key the caller asked for is absent.
    #[error("{}: missing key '{key}'", path.display())]
    MissingKey { path: PathBuf, key: String },
    /// A key holds a value of another type (or an integer that does not fit).
    #[error("{}: key '{key}' is {found}, expected {expected}", path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        found: String,
        expected: String,
    },
    /// A tensor the caller asked for is absent.
    #[error("{}: missing tensor '{tensor}'", path.display())]
    MissingTensor { path: PathBuf, tensor: String },
}

/// Why a GGUF file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    /// The underlying writer failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The same metadata key was added twice.
    #[error("{}: duplicate key '{key}'", path.display())]
    DuplicateKey { path: PathBuf, key: String },
    /// The same tensor name was declared twice.
    #[error("{}: duplicate tensor '{tensor}'", path.display())]
    DuplicateTensor { path: PathBuf, tensor: String },
    /// A metadata value the format cannot hold as given.
    #[error("{}: key '{key}': {reason}", path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// A tensor shape the format cannot hold.
    #[error("{}: tensor '{tensor}': {reason}", path.display())]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// Metadata or a tensor was declared after tensor data started.
    #[error("{}: cannot add {what} after tensor data has started", path.display())]
    HeaderWritten { path: PathBuf, what: String },
    /// More bytes were written than the declared tensors hold.
    #[error("{}: {extra} bytes written past the end of the last declared tensor", path.display())]
    TooMuchData { path: PathBuf, extra: u64 },
    /// `finish` was called before every tensor had all its bytes.
    #[error("{}: tensor '{tensor}' has {written} of its {size} bytes", path.display())]
    Incomplete {
        path: PathBuf,
        tensor: String,
        written: u64,
        size: u64,
    },
}
