//! GGUF model files and the ggml tensor formats, usable on their own: a memory-mapped
//! reader that trusts nothing in the file, a streaming writer, and (in [`quant`]) the
//! block layouts with reference quantisers and dequantisers.
//!
//! Layout (little-endian, versions 2 and 3): magic `GGUF`, version u32, tensor count u64,
//! metadata count u64, the metadata key/value pairs, the tensor infos (name, dims, ggml
//! type, offset relative to the data section), padding to `general.alignment`, then the
//! tensor data.

mod error;
mod parse;
pub mod quant;
pub mod raw;
mod value;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::quant::GgmlType;
use memmap2::Mmap;

pub use error::{GgufError, GgufWriteError};
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

/// The alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor has.
pub const MAX_DIMS: usize = 4;
/// How deeply metadata arrays may nest; deeper files are refused so recursion stays bounded.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The metadata key that sets the tensor data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Where one tensor lives in the file and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Dimensions, innermost (contiguous) first, as ggml orders them.
    pub dims: Vec<u64>,
    /// Byte offset of the data, relative to the start of the data section.
    pub offset: u64,
    /// Byte size of the data.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        // The parser checked that this product does not overflow.
        self.dims.iter().product()
    }
}

/// A tensor's description together with its bytes in the mapped file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Dimensions, innermost first.
    pub dims: &'a [u64],
    /// The raw (possibly quantised) data.
    pub bytes: &'a [u8],
}

/// A parsed GGUF file over its bytes (a memory map by default).
pub struct Gguf<B = Mmap> {
    path: PathBuf,
    data: B,
    header: parse::Header,
}

impl Gguf<Mmap> {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        // Opening a FIFO blocks until a writer appears, and a device or folder is no model:
        // only a regular file is opened.
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(GgufError::NotAFile {
                path: path.to_owned(),
                kind: file_kind(&meta.file_type()),
            });
        }
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based model loader this relies on the
        // file not being truncated or rewritten by another process while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_bytes(path, map)
    }
}

/// What a non-regular file is, for messages.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

impl<B: AsRef<[u8]>> Gguf<B> {
    /// Parses GGUF bytes already in memory; `path` only labels messages.
    pub fn from_bytes(path: impl Into<PathBuf>, data: B) -> Result<Self, GgufError> {
        let path = path.into();
        let header = parse::parse(&path, data.as_ref())?;
        Ok(Gguf { path, data, header })
    }

    /// The path (or label) the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Alignment of the tensor data, in bytes.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Absolute byte offset where the tensor data section starts.
    pub fn data_offset(&self) -> u64 {
        self.header.data_start
    }

    /// Total file size in bytes.
    pub fn file_len(&self) -> u64 {
        self.data.as_ref().len() as u64
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.header.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The raw value of a key, if present.
    pub fn value(&self, key: &str) -> Option<&Value> {
        let i = *self.header.key_index.get(key)?;
        self.header.metadata.get(i).map(|(_, v)| v)
    }

    /// The value of a required key as `T`; integers convert when the value fits.
    pub fn get<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T, GgufError> {
        self.get_opt(key)?.ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        })
    }

    /// The value of an optional key as `T`: `None` when absent, an error when of another type.
    pub fn get_opt<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<Option<T>, GgufError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        T::from_value(value)
            .map(Some)
            .ok_or_else(|| GgufError::WrongType {
                path: self.path.clone(),
                key: key.to_owned(),
                found: value.describe(),
                expected: T::EXPECTED.to_owned(),
            })
    }

    /// A required unsigned 32-bit integer (any integer type whose value fits).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get(key)
    }

    /// A required unsigned 64-bit integer (any integer type whose value fits).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get(key)
    }

    /// A required f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get(key)
    }

    /// A required bool.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.get(key)
    }

    /// A required string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)
    }

    /// A required array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        self.get(key)
    }

    /// Descriptions of all tensors, in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The description of one tensor, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        let i = *self.header.tensor_index.get(name)?;
        self.header.tensors.get(i)
    }

    /// One tensor with its bytes.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            })?;
        Ok(self.view(info))
    }

    /// All tensors with their bytes, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.header.tensors.iter().map(|info| self.view(info))
    }

    fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        // The parser checked that every tensor lies inside the file, so the range is valid;
        // `get` keeps that an invariant rather than a panic site.
        let start = self.header.data_start + info.offset;
        let bytes = usize::try_from(start)
            .ok()
            .zip(usize::try_from(start + info.size).ok())
            .and_then(|(s, e)| self.data.as_ref().get(s..e))
            .unwrap_or_default();
        TensorView {
            name: &info.name,
            ggml_type: info.ggml_type,
            dims: &info.dims,
            bytes,
        }
    }
}

/// A Rust type a metadata value can be read as.
pub trait FromValue<'a>: Sized {
    /// What the type is called in messages.
    const EXPECTED: &'static str;
    /// The value as `Self`, if its type (and, for integers, its value) allows.
    fn from_value(value: &'a Value) -> Option<Self>;
}

/// Implements `FromValue` for integer types: any integer value that fits converts.
macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl FromValue<'_> for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_value(value: &Value) -> Option<$t> {
                value.as_integer().and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}

from_integer!(u8, i8, u16, i16, u32, i32, u64, i64, usize);

/// Implements `FromValue` for a type held by exactly one `Value` variant.
macro_rules! from_variant {
    ($($t:ty => $name:literal, $pat:pat => $out:expr);* $(;)?) => {$(
        impl<'a> FromValue<'a> for $t {
            const EXPECTED: &'static str = $name;
            fn from_value(value: &'a Value) -> Option<$t> {
                match value {
                    $pat => Some($out),
                    _ => None,
                }
            }
        }
    )*};
}

from_variant!(
    f32 => "f32", Value::F32(v) => *v;
    f64 => "f64", Value::F64(v) => *v;
    bool => "bool", Value::Bool(v) => *v;
    &'a str => "string", Value::String(v) => v.as_str();
    &'a Array => "array", Value::Array(v) => v;
    &'a [String] => "array of string", Value::Array(Array::String(v)) => v.as_slice();
    &'a [f32] => "array of f32", Value::Array(Array::F32(v)) => v.as_slice();
    &'a [i32] => "array of i32", Value::Array(Array::I32(v)) => v.as_slice();
    &'a [u32] => "array of u32", Value::Array(Array::U32(v)) => v.as_slice();
);
