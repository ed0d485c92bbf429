//! Host memory standing in for device memory. Blocks of a launch run on several threads
//! and a kernel may race on purpose (atomics) or by mistake, so every byte is an atomic
//! accessed with relaxed ordering: racy kernels give racy results, never undefined
//! behaviour in the interpreter.

use crate::buffer::BackendMemory;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// A zero-initialised host allocation.
pub struct HostMemory {
    bytes: Box<[AtomicU8]>,
}

impl HostMemory {
    /// Allocates `n` zeroed bytes.
    pub fn new(n: usize) -> HostMemory {
        let plain: Box<[u8]> = vec![0u8; n].into_boxed_slice();
        // SAFETY: AtomicU8 has the same size, alignment and bit validity as u8.
        let bytes = unsafe { Box::from_raw(Box::into_raw(plain) as *mut [AtomicU8]) };
        HostMemory { bytes }
    }

    fn range(&self, offset: usize, len: usize) -> Result<&[AtomicU8]> {
        offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or(Error::OutOfBounds {
                offset,
                len,
                bytes: self.bytes.len(),
            })
    }

    /// Copies host bytes in.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        for (d, s) in self.range(offset, src.len())?.iter().zip(src) {
            d.store(*s, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies bytes out.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.range(offset, dst.len())?;
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// The bytes, for the interpreter's loads and stores.
    pub fn cells(&self) -> &[AtomicU8] {
        &self.bytes
    }
}

impl BackendMemory for HostMemory {
    fn bytes(&self) -> usize {
        self.bytes.len()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
