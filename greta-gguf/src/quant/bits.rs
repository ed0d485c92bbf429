//! Bit layouts shared by the block formats: nibble groups, high-bit planes, 6-bit scales.

/// Where a format keeps the high bits of element `e`: (byte index in `qh`, bit shift).
pub(super) type HighBitPlace = fn(usize) -> (usize, u32);

/// Unpacks 4-bit levels: within each group of `group` bytes the low nibbles are the
/// group's first `group` levels and the high nibbles the next `group`.
pub(super) fn split_nibbles(packed: &[u8], group: usize, levels: &mut [u8]) {
    for (bytes, out) in packed
        .chunks_exact(group)
        .zip(levels.chunks_exact_mut(2 * group))
    {
        let (lo, hi) = out.split_at_mut(group);
        for ((&b, l), h) in bytes.iter().zip(lo).zip(hi) {
            *l = b & 0x0F;
            *h = b >> 4;
        }
    }
}

/// Packs 4-bit levels in the layout `split_nibbles` reads.
pub(super) fn join_nibbles(levels: &[u8], group: usize, packed: &mut [u8]) {
    for (bytes, src) in packed
        .chunks_exact_mut(group)
        .zip(levels.chunks_exact(2 * group))
    {
        let (lo, hi) = src.split_at(group);
        for ((b, &l), &h) in bytes.iter_mut().zip(lo).zip(hi) {
            *b = (l & 0x0F) | (h << 4);
        }
    }
}

/// ORs `width` bits per element from `qh` above the low nibble of every level.
pub(super) fn merge_high_bits(qh: &[u8], width: u32, place: HighBitPlace, levels: &mut [u8]) {
    let mask = (1u8 << width) - 1;
    for (e, level) in levels.iter_mut().enumerate() {
        let (byte, shift) = place(e);
        *level |= ((qh[byte] >> shift) & mask) << 4;
    }
}

/// Moves every level's bits above the low nibble into `qh`, leaving only nibbles behind.
pub(super) fn split_high_bits(levels: &mut [u8], place: HighBitPlace, qh: &mut [u8]) {
    for (e, level) in levels.iter_mut().enumerate() {
        let (byte, shift) = place(e);
        qh[byte] |= (*level >> 4) << shift;
        *level &= 0x0F;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) in Q4_K/Q5_K's 12 packed bytes:
/// sub-blocks 0..4 sit in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins);
/// sub-blocks 4..8 keep their low 4 bits in bytes 8..12 and their top 2 bits in the
/// spare top bits of bytes 0..8.
pub(super) fn scale_min_k4(q: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs eight 6-bit scales and mins in the layout `scale_min_k4` reads.
pub(super) fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    let (low, high) = scales.split_at(4);
    let (mlow, mhigh) = mins.split_at(4);
    for (j, (((&s, &m), &sh), &mh)) in low.iter().zip(mlow).zip(high).zip(mhigh).enumerate() {
        q[j] = (s & 63) | ((sh >> 4) << 6);
        q[j + 4] = (m & 63) | ((mh >> 4) << 6);
        q[j + 8] = (sh & 0x0F) | ((mh & 0x0F) << 4);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_groups_put_low_nibbles_first() {
        let mut levels = [0u8; 8];
        split_nibbles(&[0x21, 0x43, 0x65, 0x87], 2, &mut levels);
        assert_eq!(levels, [1, 3, 2, 4, 5, 7, 6, 8]);
        let mut packed = [0u8; 4];
        join_nibbles(&levels, 2, &mut packed);
        assert_eq!(packed, [0x21, 0x43, 0x65, 0x87]);
    }

    #[test]
    fn high_bits_round_trip_through_their_plane() {
        let place: HighBitPlace = |e| (e % 2, 2 * (e / 2) as u32);
        let mut levels = [0x35, 0x2A, 0x1F, 0x00, 0x3C, 0x11];
        let original = levels;
        let mut qh = [0u8; 2];
        split_high_bits(&mut levels, place, &mut qh);
        assert_eq!(levels, [0x5, 0xA, 0xF, 0x0, 0xC, 0x1]);
        assert_eq!(qh, [0b11_01_11, 0b01_00_10]);
        merge_high_bits(&qh, 2, place, &mut levels);
        assert_eq!(levels, original);
    }

    #[test]
    fn six_bit_scales_round_trip() {
        let scales = [0, 63, 17, 42, 33, 1, 62, 48];
        let mins = [5, 9, 63, 0, 63, 16, 47, 2];
        let packed = pack_scale_min_k4(&scales, &mins);
        for j in 0..8 {
            assert_eq!(
                scale_min_k4(&packed, j),
                (scales[j], mins[j]),
                "sub-block {j}"
            );
        }
    }
}
