//! Host memory standing in for device memory. Blocks of a launch run on several threads
//! and a kernel may race on purpose (atomics) or by mistake, so memory is made of atomic
//! 64-bit words accessed with relaxed ordering: racy kernels give racy results, never
//! undefined behaviour in the interpreter. A write of part of a word clears and sets only
//! its own bytes (`fetch_and`, `fetch_or`), so threads writing neighbouring bytes of one
//! word do not undo each other.

use crate::buffer::BackendMemory;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

// The allocation is made as u64 and used as AtomicU64.
const _: () = assert!(std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>());

/// A zero-initialised host allocation.
pub struct HostMemory {
    words: Box<[AtomicU64]>,
    len: usize,
}

impl HostMemory {
    /// Allocates `n` zeroed bytes.
    pub fn new(n: usize) -> HostMemory {
        let plain: Box<[u64]> = vec![0u64; n.div_ceil(8)].into_boxed_slice();
        // SAFETY: AtomicU64 has the same size and bit validity as u64, and (asserted above)
        // the same alignment.
        let words = unsafe { Box::from_raw(Box::into_raw(plain) as *mut [AtomicU64]) };
        HostMemory { words, len: n }
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                bytes: self.len,
            }),
        }
    }

    /// Copies host bytes in.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.check(offset, src.len())?;
        self.store(offset, src);
        Ok(())
    }

    /// Copies bytes out.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check(offset, dst.len())?;
        self.load(offset, dst);
        Ok(())
    }

    /// Reads `out.len()` bytes at `offset`, which the caller has bounds-checked.
    pub fn load(&self, offset: usize, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let at = offset + done;
            let (word, lo) = (at / 8, at % 8);
            let take = (8 - lo).min(out.len() - done);
            let bytes = self.words[word].load(Ordering::Relaxed).to_le_bytes();
            // Fixed-size copies and byte loops compile to moves; `copy_from_slice` of a
            // variable length calls memmove, which costs more than these few bytes.
            if take == 8 {
                out[done..done + 8].copy_from_slice(&bytes);
            } else {
                #[allow(clippy::manual_memcpy)]
                for k in 0..take {
                    out[done + k] = bytes[lo + k];
                }
            }
            done += take;
        }
    }

    /// Writes `bytes` at `offset`, which the caller has bounds-checked.
    pub fn store(&self, offset: usize, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let at = offset + done;
            let (word, lo) = (at / 8, at % 8);
            let take = (8 - lo).min(bytes.len() - done);
            let cell = &self.words[word];
            if take == 8 {
                let v = u64::from_le_bytes(bytes[done..done + 8].try_into().expect("8 bytes"));
                cell.store(v, Ordering::Relaxed);
            } else {
                let mut v = [0u8; 8];
                let mut mask = [0u8; 8];
                v[lo..lo + take].copy_from_slice(&bytes[done..done + take]);
                mask[lo..lo + take].fill(0xff);
                let (v, mask) = (u64::from_le_bytes(v), u64::from_le_bytes(mask));
                cell.fetch_and(!mask, Ordering::Relaxed);
                cell.fetch_or(v, Ordering::Relaxed);
            }
            done += take;
        }
    }

    /// An address identifying the byte at `offset`, for striping locks.
    pub fn address(&self, offset: usize) -> usize {
        self.words.as_ptr() as usize + offset
    }
}

impl BackendMemory for HostMemory {
    fn bytes(&self) -> usize {
        self.len
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_reads_and_writes_round_trip() {
        let m = HostMemory::new(21);
        let data: Vec<u8> = (1..=21).collect();
        m.write(0, &data).unwrap();
        m.write(3, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11])
            .unwrap();
        let mut out = vec![0u8; 21];
        m.read(0, &mut out).unwrap();
        let mut want = data.clone();
        want[3..10].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11]);
        assert_eq!(out, want);
        let mut tail = [0u8; 5];
        m.read(16, &mut tail).unwrap();
        assert_eq!(tail, [17, 18, 19, 20, 21]);
        assert!(m.read(17, &mut tail).is_err());
        assert!(m.write(21, &[0]).is_err());
    }

    #[test]
    fn neighbouring_byte_writers_do_not_undo_each_other() {
        let m = HostMemory::new(8);
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..2000u32 {
                        m.store(t as usize, &[(i as u8).wrapping_add(t)]);
                    }
                });
            }
        });
        let mut out = [0u8; 8];
        m.read(0, &mut out).unwrap();
        let want: Vec<u8> = (0..8u8).map(|t| (1999u32 as u8).wrapping_add(t)).collect();
        assert_eq!(out.to_vec(), want);
    }
}
