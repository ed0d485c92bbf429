//! Device memory: untyped backend allocations and typed buffers over them.

use crate::element::Element;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// A backend's allocation; backends downcast it to their own type.
pub trait BackendMemory: Any + Send + Sync {
    /// Size in bytes.
    fn bytes(&self) -> usize;
    /// For downcasting.
    fn as_any(&self) -> &dyn Any;
}

/// An untyped device allocation, shared by the buffers (and captured graphs) that use it.
#[derive(Clone)]
pub struct RawBuffer {
    memory: Arc<dyn BackendMemory>,
}

impl RawBuffer {
    /// Wraps a backend allocation.
    pub fn new(memory: Arc<dyn BackendMemory>) -> RawBuffer {
        RawBuffer { memory }
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.memory.bytes()
    }

    /// The backend's allocation, if it is of type `M`.
    pub fn downcast<M: BackendMemory>(&self) -> Option<&M> {
        self.memory.as_any().downcast_ref::<M>()
    }

    /// True if both handles refer to the same allocation.
    pub fn same(&self, other: &RawBuffer) -> bool {
        Arc::ptr_eq(&self.memory, &other.memory)
    }
}

impl std::fmt::Debug for RawBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBuffer({} bytes)", self.bytes())
    }
}

/// A typed device buffer of `len` elements.
pub struct Buffer<T: Element> {
    raw: RawBuffer,
    len: usize,
    _elem: PhantomData<T>,
}

impl<T: Element> Buffer<T> {
    /// Views a raw allocation as `len` elements of `T`.
    pub fn from_raw(raw: RawBuffer, len: usize) -> Buffer<T> {
        debug_assert!(len * std::mem::size_of::<T>() <= raw.bytes());
        Buffer {
            raw,
            len,
            _elem: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The underlying allocation.
    pub fn raw(&self) -> &RawBuffer {
        &self.raw
    }

    /// The same memory viewed as elements of another type (sizes must divide evenly).
    pub fn reinterpret<U: Element>(self) -> Result<Buffer<U>, crate::Error> {
        let bytes = self.bytes();
        let size = std::mem::size_of::<U>();
        if !bytes.is_multiple_of(size) {
            return Err(crate::Error::Reinterpret { bytes, size });
        }
        Ok(Buffer::from_raw(self.raw, bytes / size))
    }
}
