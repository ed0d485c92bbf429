//! A streaming GGUF (version 3) writer: declare metadata and tensors, then stream each
//! tensor's bytes in declaration order; only the header is ever held in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::quant::GgmlType;

use super::{
    Array, GgufWriteError, Value, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
};

/// The GGUF version this writer produces.
const VERSION: u32 = 3;
/// Large buffer: generated models are written in multi-megabyte streams.
const FILE_BUFFER: usize = 8 << 20;

/// A tensor declared in the header.
struct Declared {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    offset: u64,
    size: u64,
}

/// Writes a GGUF file: metadata and tensor declarations first, then tensor data.
pub struct GgufWriter<W: Write = BufWriter<File>> {
    path: PathBuf,
    out: W,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<Declared>,
    header_written: bool,
    /// Index of the tensor whose bytes come next.
    current: usize,
    /// Bytes of the current tensor written so far.
    written: u64,
}

impl GgufWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn new(path: impl AsRef<Path>) -> Result<Self, GgufWriteError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| GgufWriteError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::with_writer(
            path,
            BufWriter::with_capacity(FILE_BUFFER, file),
        ))
    }
}

impl<W: Write> GgufWriter<W> {
    /// Writes into `out`; `path` only labels messages.
    pub fn with_writer(path: impl Into<PathBuf>, out: W) -> Self {
        GgufWriter {
            path: path.into(),
            out,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
            header_written: false,
            current: 0,
            written: 0,
        }
    }

    /// Adds a metadata pair; `general.alignment` (a power-of-two u32) also sets the alignment.
    pub fn add(&mut self, key: &str, value: impl Into<Value>) -> Result<(), GgufWriteError> {
        let value = value.into();
        self.check_open(|| format!("key '{key}'"))?;
        if self.metadata.iter().any(|(k, _)| k == key) {
            return Err(GgufWriteError::DuplicateKey {
                path: self.path.clone(),
                key: key.to_owned(),
            });
        }
        let bad = |reason: String| GgufWriteError::BadValue {
            path: self.path.clone(),
            key: key.to_owned(),
            reason,
        };
        if key == ALIGNMENT_KEY {
            match value {
                Value::U32(a) if a.is_power_of_two() && a <= 1 << 16 => {
                    self.alignment = a.into();
                }
                ref other => {
                    return Err(bad(format!(
                        "is {}, must be a power-of-two u32 no larger than 65536",
                        other.describe()
                    )))
                }
            }
        }
        if let Value::Array(a) = &value {
            if nesting(a) > MAX_ARRAY_DEPTH {
                return Err(bad(format!("arrays nest deeper than {MAX_ARRAY_DEPTH}")));
            }
        }
        self.metadata.push((key.to_owned(), value));
        Ok(())
    }

    /// Declares the next tensor; its bytes are written later, in declaration order.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ggml_type: GgmlType,
        dims: &[u64],
    ) -> Result<(), GgufWriteError> {
        self.check_open(|| format!("tensor '{name}'"))?;
        let bad = |reason: String| GgufWriteError::BadTensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            reason,
        };
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufWriteError::DuplicateTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            });
        }
        if dims.len() > MAX_DIMS {
            return Err(bad(format!(
                "{} dimensions (at most {MAX_DIMS})",
                dims.len()
            )));
        }
        let block = ggml_type.block_elems() as u64;
        if dims.first().copied().unwrap_or(1) % block != 0 {
            return Err(bad(format!(
                "first dimension of {dims:?} is not a multiple of the {ggml_type} block size {block}"
            )));
        }
        let size = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|elems| ggml_type.bytes_for(elems))
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow 64 bits")))?;
        let offset = self
            .tensors
            .last()
            .map_or(0, |t| (t.offset + t.size).next_multiple_of(self.alignment));
        self.tensors.push(Declared {
            name: name.to_owned(),
            ggml_type,
            dims: dims.to_vec(),
            offset,
            size,
        });
        Ok(())
    }

    /// Appends tensor bytes; a chunk may end inside a tensor or run on into the next one.
    pub fn write_tensor_data(&mut self, mut bytes: &[u8]) -> Result<(), GgufWriteError> {
        self.write_header_once()?;
        loop {
            self.advance_past_complete()?;
            if bytes.is_empty() {
                return Ok(());
            }
            let Some(t) = self.tensors.get(self.current) else {
                return Err(GgufWriteError::TooMuchData {
                    path: self.path.clone(),
                    extra: bytes.len() as u64,
                });
            };
            let room = t.size - self.written;
            let (now, rest) =
                bytes.split_at(bytes.len().min(room.try_into().unwrap_or(usize::MAX)));
            self.write_raw(now)?;
            self.written += now.len() as u64;
            bytes = rest;
        }
    }

    /// Checks that every tensor got all its bytes, flushes, and hands back the writer.
    pub fn finish(mut self) -> Result<W, GgufWriteError> {
        self.write_header_once()?;
        self.advance_past_complete()?;
        if let Some(t) = self.tensors.get(self.current) {
            return Err(GgufWriteError::Incomplete {
                path: self.path.clone(),
                tensor: t.name.clone(),
                written: self.written,
                size: t.size,
            });
        }
        self.out.flush().map_err(|source| GgufWriteError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.out)
    }

    fn check_open(&self, what: impl FnOnce() -> String) -> Result<(), GgufWriteError> {
        if self.header_written {
            return Err(GgufWriteError::HeaderWritten {
                path: self.path.clone(),
                what: what(),
            });
        }
        Ok(())
    }

    /// Moves past tensors whose bytes are all written, padding up to the next one.
    fn advance_past_complete(&mut self) -> Result<(), GgufWriteError> {
        while let Some(t) = self.tensors.get(self.current) {
            if self.written < t.size {
                break;
            }
            let end = t.offset + t.size;
            self.current += 1;
            self.written = 0;
            if let Some(next) = self.tensors.get(self.current) {
                self.write_zeros(next.offset - end)?;
            }
        }
        Ok(())
    }

    fn write_header_once(&mut self) -> Result<(), GgufWriteError> {
        if self.header_written {
            return Ok(());
        }
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            encode_str(&mut h, key);
            h.extend_from_slice(&value.value_type().id().to_le_bytes());
            encode_value(&mut h, value);
        }
        for t in &self.tensors {
            encode_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            h.extend_from_slice(&t.offset.to_le_bytes());
        }
        let padded = (h.len() as u64).next_multiple_of(self.alignment);
        h.resize(padded as usize, 0);
        self.header_written = true;
        self.write_raw(&h)
    }

    fn write_zeros(&mut self, n: u64) -> Result<(), GgufWriteError> {
        // Padding never exceeds the alignment, which is at most 64 KiB.
        let zeros = vec![0u8; n as usize];
        self.write_raw(&zeros)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), GgufWriteError> {
        self.out
            .write_all(bytes)
            .map_err(|source| GgufWriteError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// How many arrays deep `a` goes (1 for an array of scalars).
fn nesting(a: &Array) -> usize {
    match a {
        Array::Array(inner) => 1 + inner.iter().map(nesting).max().unwrap_or(0),
        _ => 1,
    }
}

fn encode_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

/// Appends a value's payload (without its type id, which the caller writes when needed).
fn encode_value(h: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => h.push(*v),
        Value::I8(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => h.push(u8::from(*v)),
        Value::String(s) => encode_str(h, s),
        Value::Array(a) => {
            h.extend_from_slice(&a.element_type().id().to_le_bytes());
            h.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for v in a.values() {
                encode_value(h, &v);
            }
        }
        Value::U64(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => h.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => h.extend_from_slice(&v.to_le_bytes()),
    }
}
