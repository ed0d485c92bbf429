//! The driver interface under [`GpuBackend`](super::GpuBackend): the few calls in which the
//! CUDA driver API and the HIP runtime differ only by name. Everything built on them (range
//! checks, argument packing, the kernel table, graph update, buffer and event ownership)
//! is written once in the backend.

use crate::args::Grid;
use crate::device::BackendKind;
use crate::error::Result;
use std::ffi::{c_void, CStr};

/// One kernel launch as a driver queues it.
pub(crate) struct Launch<'a, F> {
    pub function: F,
    pub grid: Grid,
    pub block: u32,
    pub dynamic_shared: u32,
    /// May start before its predecessor ends (the kernel waits for it itself).
    pub dependent: bool,
    /// One live slot per kernel parameter.
    pub params: &'a mut [*mut c_void],
}

/// One GPU through its vendor's API: a device bound to the calling thread, one stream on it,
/// device memory addressed as `u64`, modules, stream capture and events.
///
/// # Safety
/// Implementors promise that their handles (the associated types) may be used from any
/// thread once [`Driver::bind`] has run there, as both vendor APIs document; the backend
/// shares them across threads on that promise.
pub(crate) unsafe trait Driver: Send + Sync + 'static {
    /// A loaded module; kept for the backend's lifetime.
    type Module;
    type Function: Copy;
    type Graph: Copy;
    type Exec: Copy;
    type Event: Copy;

    const KIND: BackendKind;

    /// Makes the device current on the calling thread.
    fn bind(&self) -> Result<()>;

    fn alloc(&self, bytes: usize) -> Result<u64>;
    /// # Safety
    /// `ptr` came from [`Driver::alloc`] and is freed once.
    unsafe fn free(&self, ptr: u64);

    /// Queues a host-to-device copy on the stream.
    /// # Safety
    /// `dst..dst + src.len()` is device memory of this driver; `src` lives until the stream
    /// is synchronised.
    unsafe fn write(&self, dst: u64, src: &[u8]) -> Result<()>;
    /// Queues a device-to-host copy on the stream.
    /// # Safety
    /// As for `write`, with `dst` untouched by the host until the stream is synchronised.
    unsafe fn read(&self, src: u64, dst: &mut [u8]) -> Result<()>;
    /// Queues a device-to-device copy on the stream.
    /// # Safety
    /// Both ranges are device memory of this driver.
    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()>;
    /// Waits for everything queued on the stream.
    fn synchronize(&self) -> Result<()>;

    /// Loads `code` and finds `symbol` in it.
    fn load(&self, code: &[u8], symbol: &CStr) -> Result<(Self::Module, Self::Function)>;
    /// Allows `function` `shared` bytes of dynamic shared memory and says how many of its
    /// blocks of `block` threads one compute unit then holds at once.
    fn resident_blocks(&self, function: Self::Function, block: u32, shared: u32) -> Result<u32>;
    /// Queues a launch. Errors are the driver's message.
    /// # Safety
    /// `launch.params` points at one live slot per kernel parameter.
    unsafe fn launch(&self, launch: Launch<'_, Self::Function>) -> std::result::Result<(), String>;

    fn begin_capture(&self) -> Result<()>;
    /// Ends the capture, returning the graph, its executable and its node count.
    fn end_capture(&self) -> Result<(Self::Graph, Self::Exec, usize)>;
    fn replay(&self, exec: Self::Exec) -> Result<()>;
    /// Patches `exec` to run `graph`'s parameters; false if the driver refuses (e.g. a
    /// different topology).
    fn update(&self, exec: Self::Exec, graph: Self::Graph) -> bool;
    /// # Safety
    /// Both came from one [`Driver::end_capture`] and are destroyed once.
    unsafe fn destroy_graph(&self, graph: Self::Graph, exec: Self::Exec);

    /// Creates an event and records it on the stream.
    fn record_event(&self) -> Result<Self::Event>;
    /// Milliseconds from `start` to `end`, waiting for `end`.
    fn elapsed_ms(&self, start: Self::Event, end: Self::Event) -> Result<f64>;
    /// # Safety
    /// `event` came from [`Driver::record_event`] and is destroyed once.
    unsafe fn destroy_event(&self, event: Self::Event);

    /// `c = a · bᵀ` by the vendor's matrix library (see
    /// [`Backend::vendor_gemm_f16`](crate::Backend::vendor_gemm_f16)).
    fn vendor_gemm_f16(
        &self,
        _a: u64,
        _b: u64,
        _c: u64,
        _shape: (usize, usize, usize),
    ) -> Result<()> {
        Err(crate::Error::Unavailable(format!(
            "{:?} has no vendor matrix library",
            Self::KIND
        )))
    }
}
