//! The GGUF header parser. Every count, length and offset read from the file is checked
//! against the bytes that remain before anything is sliced, and no count read from the file
//! sizes an allocation: lists grow with what was actually parsed (numeric arrays are copied
//! in one piece from bytes already checked to exist), and growth that the allocator refuses
//! is an error naming the field. Parsed structures therefore take at most a few times the
//! bytes that encode them, whatever the counts claim.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::quant::GgmlType;

use super::{
    Array, GgufError, TensorInfo, Value, ValueType, ALIGNMENT_KEY, DEFAULT_ALIGNMENT,
    MAX_ARRAY_DEPTH, MAX_DIMS,
};

/// Fewest bytes of one metadata pair: empty key, type id, one-byte value.
const MIN_KV_LEN: u64 = 8 + 4 + 1;
/// Fewest bytes of one tensor info: empty name, zero dims, type id, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 4 + 8;

/// Everything in a GGUF file before the tensor data.
pub(super) struct Header {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    /// Where each key sits in `metadata`.
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    /// Where each tensor sits in `tensors`.
    pub tensor_index: HashMap<String, usize>,
    pub data_start: u64,
}

/// Items reserved up front for a list whose length the file claims: enough for any real
/// model's keys and tensors, small enough that a false claim costs nothing.
const INITIAL_CAPACITY: usize = 1024;

/// A list being filled with `claimed` items read from the file. It grows with the items
/// actually parsed, and a growth the allocator refuses becomes an error, not an abort.
struct BoundedList<T> {
    items: Vec<T>,
    claimed: u64,
}

impl<T> BoundedList<T> {
    fn new(claimed: usize) -> Self {
        BoundedList {
            items: Vec::with_capacity(claimed.min(INITIAL_CAPACITY)),
            claimed: claimed as u64,
        }
    }

    fn push(&mut self, item: T, r: &Reader, field: Field) -> Result<(), GgufError> {
        if self.items.len() == self.items.capacity() {
            let more = self.items.len().max(INITIAL_CAPACITY);
            self.items
                .try_reserve(more)
                .map_err(|_| GgufError::OutOfMemory {
                    path: r.path(),
                    field: field.to_string(),
                    count: self.claimed,
                    parsed: self.items.len() as u64,
                })?;
        }
        self.items.push(item);
        Ok(())
    }
}

/// What a field belongs to, for messages.
#[derive(Clone, Copy)]
enum Subject<'s> {
    File,
    KeyAt(u64),
    Key(&'s str),
    TensorAt(u64),
    Tensor(&'s str),
}

/// A field being read: its owner and what part of it.
#[derive(Clone, Copy)]
struct Field<'s> {
    subject: Subject<'s>,
    part: &'static str,
}

impl<'s> Field<'s> {
    fn new(subject: Subject<'s>, part: &'static str) -> Self {
        Field { subject, part }
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subject {
            Subject::File => f.write_str(self.part),
            Subject::KeyAt(i) => write!(f, "key #{i} {}", self.part),
            Subject::Key(k) => write!(f, "key '{k}' {}", self.part),
            Subject::TensorAt(i) => write!(f, "tensor #{i} {}", self.part),
            Subject::Tensor(t) => write!(f, "tensor '{t}' {}", self.part),
        }
    }
}

/// A cursor over the file bytes.
struct Reader<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn path(&self) -> PathBuf {
        self.path.to_owned()
    }

    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn bytes(&mut self, n: u64, field: Field) -> Result<&'a [u8], GgufError> {
        let slice = usize::try_from(n)
            .ok()
            .and_then(|n| self.data.get(self.pos..self.pos.checked_add(n)?))
            .ok_or_else(|| GgufError::Truncated {
                path: self.path(),
                field: field.to_string(),
                offset: self.offset(),
                need: n,
                file_len: self.data.len() as u64,
            })?;
        self.pos += slice.len();
        Ok(slice)
    }

    fn array_of<const N: usize>(&mut self, field: Field) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N as u64, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: Field) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array_of(field)?))
    }

    fn u32(&mut self, field: Field) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array_of(field)?))
    }

    fn u64(&mut self, field: Field) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array_of(field)?))
    }

    /// Reads a count and checks that `count` items of at least `min_each` bytes fit in the
    /// rest of the file, so the caller may allocate `count` slots.
    fn count(&mut self, field: Field, min_each: u64) -> Result<usize, GgufError> {
        let offset = self.offset();
        let count = self.u64(field)?;
        let remaining = self.remaining();
        let fits = count
            .checked_mul(min_each)
            .is_some_and(|need| need <= remaining);
        match usize::try_from(count) {
            Ok(n) if fits => Ok(n),
            _ => Err(GgufError::CountTooLarge {
                path: self.path(),
                field: field.to_string(),
                count,
                offset,
                min_each,
                remaining,
            }),
        }
    }

    fn string(&mut self, field: Field) -> Result<String, GgufError> {
        let len = self.u64(field)?;
        let offset = self.offset();
        let bytes = self.bytes(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| GgufError::InvalidUtf8 {
                path: self.path(),
                field: field.to_string(),
                offset,
            })
    }

    fn bool(&mut self, field: Field) -> Result<bool, GgufError> {
        let offset = self.offset();
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::BadBool {
                path: self.path(),
                field: field.to_string(),
                offset,
                byte,
            }),
        }
    }

    fn value_type(&mut self, field: Field) -> Result<ValueType, GgufError> {
        let offset = self.offset();
        let type_id = self.u32(field)?;
        ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            path: self.path(),
            field: field.to_string(),
            type_id,
            offset,
        })
    }

    fn value(&mut self, ty: ValueType, field: Field, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(field)?),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array_of(field)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array_of(field)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array_of(field)?)),
            ValueType::U32 => Value::U32(self.u32(field)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array_of(field)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array_of(field)?)),
            ValueType::Bool => Value::Bool(self.bool(field)?),
            ValueType::String => Value::String(self.string(field)?),
            ValueType::Array => Value::Array(self.array(field, depth)?),
            ValueType::U64 => Value::U64(self.u64(field)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array_of(field)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array_of(field)?)),
        })
    }

    /// Reads an array header and its elements; `depth` counts the arrays around this one.
    fn array(&mut self, field: Field, depth: usize) -> Result<Array, GgufError> {
        let offset = self.offset();
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep {
                path: self.path(),
                field: field.to_string(),
                offset,
                max: MAX_ARRAY_DEPTH,
            });
        }
        let ty = self.value_type(field)?;
        let n = self.count(field, ty.min_encoded_len())?;
        /// Copies `n` little-endian numbers of `$t` out of the checked byte range at once.
        macro_rules! numbers {
            ($variant:ident, $t:ty) => {{
                const SIZE: usize = std::mem::size_of::<$t>();
                let bytes = self.bytes((n * SIZE) as u64, field)?;
                Array::$variant(
                    bytes
                        .chunks_exact(SIZE)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of SIZE")))
                        .collect(),
                )
            }};
        }
        /// Reads `n` variable-length elements with `$read`, growing with what is parsed.
        macro_rules! elements {
            ($variant:ident, $read:expr) => {{
                let mut list = BoundedList::new(n);
                for _ in 0..n {
                    let item = $read;
                    list.push(item, self, field)?;
                }
                Array::$variant(list.items)
            }};
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.bytes(n as u64, field)?.to_vec()),
            ValueType::I8 => numbers!(I8, i8),
            ValueType::U16 => numbers!(U16, u16),
            ValueType::I16 => numbers!(I16, i16),
            ValueType::U32 => numbers!(U32, u32),
            ValueType::I32 => numbers!(I32, i32),
            ValueType::F32 => numbers!(F32, f32),
            ValueType::Bool => self.bools(n, field)?,
            ValueType::String => elements!(String, self.string(field)?),
            ValueType::Array => elements!(Array, self.array(field, depth + 1)?),
            ValueType::U64 => numbers!(U64, u64),
            ValueType::I64 => numbers!(I64, i64),
            ValueType::F64 => numbers!(F64, f64),
        })
    }

    /// `n` booleans, each byte checked to be 0 or 1.
    fn bools(&mut self, n: usize, field: Field) -> Result<Array, GgufError> {
        let start = self.offset();
        let bytes = self.bytes(n as u64, field)?;
        if let Some(i) = bytes.iter().position(|&b| b > 1) {
            return Err(GgufError::BadBool {
                path: self.path(),
                field: field.to_string(),
                offset: start + i as u64,
                byte: bytes[i],
            });
        }
        Ok(Array::Bool(bytes.iter().map(|&b| b == 1).collect()))
    }
}

/// Parses and validates everything before the tensor data; `path` labels messages.
pub(super) fn parse(path: &Path, data: &[u8]) -> Result<Header, GgufError> {
    let mut r = Reader { path, data, pos: 0 };
    let file = |part| Field::new(Subject::File, part);

    let magic = r.bytes(4, file("magic"))?;
    if magic != b"GGUF" {
        return Err(GgufError::BadMagic {
            path: r.path(),
            found: magic.to_vec(),
        });
    }
    let version = r.u32(file("version"))?;
    match version {
        2 | 3 => {}
        1 => return Err(GgufError::VersionOne { path: r.path() }),
        _ => {
            let hint = if (1..=3).contains(&version.swap_bytes()) {
                "; this looks like a big-endian file, which is not supported"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion {
                path: r.path(),
                version,
                hint,
            });
        }
    }
    let tensor_count_offset = r.offset();
    let n_tensors = r.u64(file("tensor count"))?;
    let n_kv = r.count(file("metadata count"), MIN_KV_LEN)?;

    let mut metadata = BoundedList::new(n_kv);
    let mut key_index = HashMap::new();
    for i in 0..n_kv as u64 {
        let key_offset = r.offset();
        let name = Field::new(Subject::KeyAt(i), "name");
        let key = r.string(name)?;
        let slot = match key_index.entry(key) {
            Entry::Occupied(e) => {
                return Err(GgufError::DuplicateKey {
                    path: r.path(),
                    key: e.key().clone(),
                    offset: key_offset,
                })
            }
            Entry::Vacant(e) => e,
        };
        let key = slot.key().clone();
        slot.insert(metadata.items.len());
        let ty = r.value_type(Field::new(Subject::Key(&key), "value type"))?;
        let value = r.value(ty, Field::new(Subject::Key(&key), "value"), 0)?;
        metadata.push((key, value), &r, name)?;
    }
    let metadata = metadata.items;
    let alignment = alignment(&r, &metadata)?;

    let remaining = r.remaining();
    let n_tensors = n_tensors
        .checked_mul(MIN_TENSOR_INFO_LEN)
        .filter(|&need| need <= remaining)
        .and_then(|_| usize::try_from(n_tensors).ok())
        .ok_or_else(|| GgufError::CountTooLarge {
            path: r.path(),
            field: "tensor count".to_owned(),
            count: n_tensors,
            offset: tensor_count_offset,
            min_each: MIN_TENSOR_INFO_LEN,
            remaining,
        })?;
    let mut tensors = BoundedList::new(n_tensors);
    let mut tensor_index = HashMap::new();
    for i in 0..n_tensors as u64 {
        let name_offset = r.offset();
        let info = tensor_info(&mut r, i, alignment)?;
        match tensor_index.entry(info.name.clone()) {
            Entry::Occupied(_) => {
                return Err(GgufError::DuplicateTensor {
                    path: r.path(),
                    tensor: info.name,
                    offset: name_offset,
                })
            }
            Entry::Vacant(e) => e.insert(tensors.items.len()),
        };
        tensors.push(info, &r, Field::new(Subject::TensorAt(i), "info"))?;
    }
    let tensors = tensors.items;

    // The data section starts at the next multiple of the alignment; a file with no
    // tensors may end before that padding.
    let data_start = r.offset().next_multiple_of(alignment);
    check_tensor_bounds(&r, &tensors, data_start)?;
    Ok(Header {
        version,
        alignment,
        metadata,
        key_index,
        tensors,
        tensor_index,
        data_start,
    })
}

fn alignment(r: &Reader, metadata: &[(String, Value)]) -> Result<u64, GgufError> {
    let Some((_, value)) = metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let Some(integer) = value.as_integer() else {
        return Err(GgufError::WrongType {
            path: r.path(),
            key: ALIGNMENT_KEY.to_owned(),
            found: value.describe(),
            expected: "u32".to_owned(),
        });
    };
    // Alignments above a page are legal but useless; the bound keeps padding arithmetic small.
    match u64::try_from(integer) {
        Ok(a) if a.is_power_of_two() && a <= 1 << 16 => Ok(a),
        _ => Err(GgufError::BadAlignment {
            path: r.path(),
            value: integer,
        }),
    }
}

fn tensor_info(r: &mut Reader, index: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = r.string(Field::new(Subject::TensorAt(index), "name"))?;
    let field = |part| Field::new(Subject::Tensor(&name), part);

    let dims_offset = r.offset();
    let n_dims = r.u32(field("dimension count"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            path: r.path(),
            tensor: name,
            n_dims,
            offset: dims_offset,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(r.u64(field("dimensions"))?);
    }

    let type_offset = r.offset();
    let type_id = r.u32(field("type"))?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
        path: r.path(),
        tensor: name.clone(),
        type_id,
        offset: type_offset,
    })?;
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ggml_type.block_elems() as u64 != 0 {
        return Err(GgufError::PartialBlock {
            path: r.path(),
            tensor: name,
            ggml_type,
            ne0,
            block: ggml_type.block_elems(),
        });
    }
    let size = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|elems| ggml_type.bytes_for(elems))
        .ok_or_else(|| GgufError::DimsOverflow {
            path: r.path(),
            tensor: name.clone(),
            dims: dims.clone(),
            offset: dims_offset,
        })?;

    let offset_at = r.offset();
    let offset = r.u64(field("data offset"))?;
    if offset % alignment != 0 {
        return Err(GgufError::Misaligned {
            path: r.path(),
            tensor: name,
            offset: offset_at,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        ggml_type,
        dims,
        offset,
        size,
    })
}

fn check_tensor_bounds(
    r: &Reader,
    tensors: &[TensorInfo],
    data_start: u64,
) -> Result<(), GgufError> {
    let file_len = r.data.len() as u64;
    for t in tensors {
        let start = data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        if end.is_none_or(|e| e > file_len) {
            return Err(GgufError::TensorOutOfBounds {
                path: r.path(),
                tensor: t.name.clone(),
                offset: start.unwrap_or(u64::MAX),
                size: t.size,
                file_len,
            });
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        if let [prev, next] = pair {
            if next.offset < prev.offset + prev.size {
                return Err(GgufError::TensorOverlap {
                    path: r.path(),
                    tensor: next.name.clone(),
                    offset: data_start + next.offset,
                    other: prev.name.clone(),
                    other_offset: data_start + prev.offset,
                    other_size: prev.size,
                });
            }
        }
    }
    Ok(())
}
