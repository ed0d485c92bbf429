//! The weight layouts the GPU matrix-vector kernels read. Each block becomes a record of a
//! multiple of 16 bytes (so every lane reads it with 16-byte loads) in a first region, and
//! its scale (f16, or f16 pair) moves to a second region; Q4_K's native 144-byte block is
//! already aligned and stays as is. No byte is added: a packed tensor is exactly as large as
//! the GGUF one, rounded up to a whole 16-byte vector (so that a vector holding the last
//! scale can be read whole).

use super::{BlockQ4_0, BlockQ4_1, BlockQ6K, BlockQ8_0, GgmlType};

/// A weight format of the GEMV kernels: the value of their `FMT` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GpuFormat {
    F32 = 0,
    F16 = 1,
    Q8_0 = 2,
    Q4_0 = 3,
    Q4_1 = 4,
    Q4K = 5,
    Q6K = 6,
}

/// Why a tensor cannot be packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the GPU kernels do not read {0} weights; supported: F32, F16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K")]
    Unsupported(GgmlType),
    #[error("{ty} rows of {cols} values: the GPU kernels need a multiple of {multiple}")]
    Columns {
        ty: GgmlType,
        cols: usize,
        multiple: usize,
    },
    #[error("{ty} tensor of {rows}x{cols} needs {expected} bytes, got {got}")]
    Size {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
}

impl GpuFormat {
    /// All formats, in `FMT` order.
    pub const ALL: [GpuFormat; 7] = [
        GpuFormat::F32,
        GpuFormat::F16,
        GpuFormat::Q8_0,
        GpuFormat::Q4_0,
        GpuFormat::Q4_1,
        GpuFormat::Q4K,
        GpuFormat::Q6K,
    ];

    /// The format of a ggml type, if the kernels read it.
    pub fn of(ty: GgmlType) -> Result<GpuFormat, LayoutError> {
        Ok(match ty {
            GgmlType::F32 => GpuFormat::F32,
            GgmlType::F16 => GpuFormat::F16,
            GgmlType::Q8_0 => GpuFormat::Q8_0,
            GgmlType::Q4_0 => GpuFormat::Q4_0,
            GgmlType::Q4_1 => GpuFormat::Q4_1,
            GgmlType::Q4K => GpuFormat::Q4K,
            GgmlType::Q6K => GpuFormat::Q6K,
            other => return Err(LayoutError::Unsupported(other)),
        })
    }

    /// The ggml type.
    pub const fn ggml(self) -> GgmlType {
        match self {
            GpuFormat::F32 => GgmlType::F32,
            GpuFormat::F16 => GgmlType::F16,
            GpuFormat::Q8_0 => GgmlType::Q8_0,
            GpuFormat::Q4_0 => GgmlType::Q4_0,
            GpuFormat::Q4_1 => GgmlType::Q4_1,
            GpuFormat::Q4K => GgmlType::Q4K,
            GpuFormat::Q6K => GgmlType::Q6K,
        }
    }

    /// The `FMT` value passed to the kernels.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// Values per block.
    pub const fn block_elems(self) -> usize {
        self.ggml().block_elems()
    }

    /// Bytes of a block's record in the first region.
    pub const fn record_bytes(self) -> usize {
        match self {
            GpuFormat::F32 => 4,
            GpuFormat::F16 => 2,
            GpuFormat::Q8_0 => 32,
            GpuFormat::Q4_0 | GpuFormat::Q4_1 => 16,
            GpuFormat::Q4K => 144,
            GpuFormat::Q6K => 208,
        }
    }

    /// Values of a row one work item of the decode products covers: 8 for the float
    /// formats, a 32-value block for Q8_0, Q4_0 and Q4_1, a 64-value quarter of a K-quant
    /// block.
    pub const fn item_values(self) -> usize {
        match self {
            GpuFormat::F32 | GpuFormat::F16 => 8,
            GpuFormat::Q8_0 | GpuFormat::Q4_0 | GpuFormat::Q4_1 => 32,
            GpuFormat::Q4K | GpuFormat::Q6K => 64,
        }
    }

    /// Sixteen-byte vectors of the first region that four consecutive work items span.
    pub const fn group_vectors(self) -> u32 {
        (4 * self.item_values() / self.block_elems() * self.record_bytes() / 16) as u32
    }

    /// [`GpuFormat::group_vectors`] of every format, a nibble each at its code: the table
    /// the kernels index with `FMT` (`GROUP_VECTORS`).
    pub const fn group_vector_table() -> u32 {
        let mut table = 0;
        let mut i = 0;
        while i < GpuFormat::ALL.len() {
            let f = GpuFormat::ALL[i];
            table |= f.group_vectors() << (4 * f.code());
            i += 1;
        }
        table
    }

    /// Bytes of a block's scales in the second region.
    pub fn scale_bytes(self) -> usize {
        match self {
            GpuFormat::F32 | GpuFormat::F16 | GpuFormat::Q4K => 0,
            GpuFormat::Q8_0 | GpuFormat::Q4_0 | GpuFormat::Q6K => 2,
            GpuFormat::Q4_1 => 4,
        }
    }

    /// Row length the kernels need a multiple of: whole blocks and whole 32-value units of
    /// the quantised input vector.
    pub fn column_multiple(self) -> usize {
        self.block_elems().max(32)
    }

    /// Values one lane handles per step of a matrix-vector product (the kernel's
    /// `items_per_row` divides a row into these): eight floats, one 32-value block, or a
    /// 64-value group of a K-quant super-block.
    pub fn item_elems(self) -> u32 {
        match self {
            GpuFormat::F32 | GpuFormat::F16 => 8,
            GpuFormat::Q8_0 | GpuFormat::Q4_0 | GpuFormat::Q4_1 => 32,
            GpuFormat::Q4K | GpuFormat::Q6K => 64,
        }
    }

    /// Bytes of a packed `rows x cols` tensor (a whole number of 16-byte vectors).
    pub fn packed_bytes(self, rows: usize, cols: usize) -> usize {
        let blocks = rows * (cols / self.block_elems());
        (blocks * (self.record_bytes() + self.scale_bytes())).div_ceil(16) * 16
    }
}

/// Repacks a row-major GGUF tensor of `rows x cols` into the kernels' layout, as the
/// 32-bit words the kernels address.
pub fn pack(ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Result<Vec<u32>, LayoutError> {
    let fmt = GpuFormat::of(ty)?;
    if !cols.is_multiple_of(fmt.column_multiple()) {
        return Err(LayoutError::Columns {
            ty,
            cols,
            multiple: fmt.column_multiple(),
        });
    }
    let blocks = rows * (cols / fmt.block_elems());
    let expected = blocks * ty.block_bytes();
    if data.len() != expected {
        return Err(LayoutError::Size {
            ty,
            rows,
            cols,
            expected,
            got: data.len(),
        });
    }
    let mut out = vec![0u8; fmt.packed_bytes(rows, cols)];
    let (records, scales) = out.split_at_mut(blocks * fmt.record_bytes());
    let (rb, sb) = (fmt.record_bytes(), fmt.scale_bytes());
    match fmt {
        GpuFormat::F32 | GpuFormat::F16 | GpuFormat::Q4K => records.copy_from_slice(data),
        GpuFormat::Q8_0 => split::<BlockQ8_0>(data, records, scales, rb, sb, |b| {
            (
                bytemuck::bytes_of(&b.qs).to_vec(),
                b.d.to_le_bytes().to_vec(),
            )
        }),
        GpuFormat::Q4_0 => split::<BlockQ4_0>(data, records, scales, rb, sb, |b| {
            (b.qs.to_vec(), b.d.to_le_bytes().to_vec())
        }),
        GpuFormat::Q4_1 => split::<BlockQ4_1>(data, records, scales, rb, sb, |b| {
            let mut s = b.d.to_le_bytes().to_vec();
            s.extend_from_slice(&b.m.to_le_bytes());
            (b.qs.to_vec(), s)
        }),
        GpuFormat::Q6K => split::<BlockQ6K>(data, records, scales, rb, sb, |b| {
            let mut r = b.ql.to_vec();
            r.extend_from_slice(&b.qh);
            r.extend_from_slice(bytemuck::bytes_of(&b.scales));
            (r, b.d.to_le_bytes().to_vec())
        }),
    }
    Ok(out
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect())
}

/// Splits every block into its record and its scale bytes.
fn split<B: bytemuck::Pod>(
    data: &[u8],
    records: &mut [u8],
    scales: &mut [u8],
    record_bytes: usize,
    scale_bytes: usize,
    parts: impl Fn(&B) -> (Vec<u8>, Vec<u8>),
) {
    let size = std::mem::size_of::<B>();
    for (i, raw) in data.chunks_exact(size).enumerate() {
        let block: B = bytemuck::pod_read_unaligned(raw);
        let (r, s) = parts(&block);
        records[i * record_bytes..][..record_bytes].copy_from_slice(&r);
        scales[i * scale_bytes..][..scale_bytes].copy_from_slice(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn packing_keeps_every_byte_and_size() {
        let mut rng = StdRng::seed_from_u64(7);
        for fmt in GpuFormat::ALL {
            let (rows, cols) = (3, 512);
            let n_blocks = rows * cols / fmt.block_elems();
            let data =
                crate::quant::random_blocks(fmt.ggml(), n_blocks, &mut rng).expect("random blocks");
            let packed = pack(fmt.ggml(), rows, cols, &data).expect("pack");
            let bytes: &[u8] = bytemuck::cast_slice(&packed);
            assert_eq!(
                bytes.len(),
                data.len().div_ceil(16) * 16,
                "{fmt:?} adds no bytes"
            );
            let mut sorted_in = data.clone();
            let mut sorted_out = bytes[..data.len()].to_vec();
            sorted_in.sort_unstable();
            sorted_out.sort_unstable();
            assert_eq!(
                sorted_in, sorted_out,
                "{fmt:?} is a permutation of the bytes"
            );
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(matches!(
            pack(GgmlType::Q4K, 1, 128, &[0; 72]),
            Err(LayoutError::Columns { .. })
        ));
        assert!(matches!(
            pack(GgmlType::Q8_0, 1, 32, &[0; 33]),
            Err(LayoutError::Size { .. })
        ));
        assert!(matches!(
            pack(GgmlType::Q5K, 1, 256, &[0; 176]),
            Err(LayoutError::Unsupported(_))
        ));
    }
}
