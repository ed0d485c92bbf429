//! [`GpuBackend`]: the [`Backend`] of every GPU, over a vendor [`Driver`]. It owns what the
//! vendors share: checked copies, the table of loaded kernels (compiled through the disk
//! cache on first use), argument packing, buffers, graphs and events that free themselves
//! through the driver, and graph update with a fallback to the new executable.

use super::driver::{Driver, Launch};
use super::{check_range, ArgSlots, LoadedKernels};
use crate::args::{Arg, Grid};
use crate::buffer::{BackendMemory, RawBuffer};
use crate::cache::KernelCache;
use crate::compile::JitCompiler;
use crate::device::BackendKind;
use crate::device::{Backend, BackendEvent, BackendGraph};
use crate::error::{Error, Result};
use greta_codegen::ir::Kernel;
use greta_codegen::Target;
use std::ffi::CString;
use std::sync::Arc;

/// What a driver found when it opened its device.
pub(crate) struct DeviceInfo {
    pub target: Target,
    /// The architecture name code is compiled for (`sm_90`, `gfx942:sramecc+:xnack-`);
    /// part of the cache key.
    pub arch: String,
    /// The one-line description `describe` returns.
    pub description: String,
    pub compute_units: u32,
    /// Whether kernels that wait for their predecessor start as dependent launches.
    pub dependent_launch: bool,
}

/// A loaded kernel and the facts its launches need, found once at load.
#[derive(Clone, Copy)]
struct Loaded<F> {
    function: F,
    /// Started as a dependent launch (it waits for its predecessor itself).
    dependent: bool,
    resident: u32,
    /// Bytes of dynamic shared memory each launch requests (shared arrays beyond the
    /// static limit).
    dynamic_shared: u32,
}

/// One GPU: a driver, its compiler and the kernels loaded on it.
pub(crate) struct GpuBackend<D: Driver> {
    driver: Arc<D>,
    info: DeviceInfo,
    compiler: Box<dyn JitCompiler>,
    cache: Option<KernelCache>,
    kernels: LoadedKernels<D::Module, Loaded<D::Function>>,
}

// SAFETY: `Driver`'s contract makes its handles usable from any thread once bound, and
// every use below binds first.
unsafe impl<D: Driver> Send for GpuBackend<D> {}
unsafe impl<D: Driver> Sync for GpuBackend<D> {}

impl<D: Driver> GpuBackend<D> {
    pub(crate) fn new(driver: D, info: DeviceInfo, compiler: Box<dyn JitCompiler>) -> Self {
        GpuBackend {
            driver: Arc::new(driver),
            info,
            compiler,
            cache: KernelCache::default_location().ok(),
            kernels: LoadedKernels::new(),
        }
    }

    fn ptr(&self, b: &RawBuffer) -> Result<u64> {
        b.downcast::<GpuMemory<D>>()
            .map(|m| m.ptr)
            .ok_or(Error::ForeignBuffer)
    }

    /// The loaded kernel, compiling (or reading the cache) and loading on first use.
    fn function(&self, kernel: &Kernel) -> Result<Loaded<D::Function>> {
        self.kernels.get_or_load(&kernel.symbol, || {
            let info = &self.info;
            let code = crate::jit::code_object(
                kernel,
                &info.target,
                &info.arch,
                self.compiler.as_ref(),
                &[],
                self.cache.as_ref(),
            )?;
            let name = CString::new(kernel.symbol.as_str())
                .map_err(|_| Error::Backend("kernel name contains NUL".into()))?;
            let dynamic_shared = kernel.layout.dynamic_bytes;
            let (module, function) = self.driver.load(&code, &name)?;
            let resident = self
                .driver
                .resident_blocks(function, kernel.block, dynamic_shared)?;
            let loaded = Loaded {
                function,
                dependent: info.dependent_launch && kernel.waits_prior_launch(),
                resident: resident.max(1),
                dynamic_shared,
            };
            Ok((module, loaded))
        })
    }
}

/// Device memory, freed through the driver that allocated it.
struct GpuMemory<D: Driver> {
    ptr: u64,
    bytes: usize,
    driver: Arc<D>,
}

impl<D: Driver> BackendMemory for GpuMemory<D> {
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl<D: Driver> Drop for GpuMemory<D> {
    fn drop(&mut self) {
        if self.driver.bind().is_ok() {
            // SAFETY: the pointer came from this driver's `alloc` and is freed once.
            unsafe { self.driver.free(self.ptr) };
        }
    }
}

struct GpuGraph<D: Driver> {
    graph: D::Graph,
    exec: D::Exec,
    launches: usize,
    driver: Arc<D>,
}

// SAFETY: as for `GpuBackend`: the handles are used only with the driver bound.
unsafe impl<D: Driver> Send for GpuGraph<D> {}
unsafe impl<D: Driver> Sync for GpuGraph<D> {}

impl<D: Driver> BackendGraph for GpuGraph<D> {
    fn launches(&self) -> usize {
        self.launches
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl<D: Driver> Drop for GpuGraph<D> {
    fn drop(&mut self) {
        if self.driver.bind().is_ok() {
            // SAFETY: both handles came from one capture and are destroyed once.
            unsafe { self.driver.destroy_graph(self.graph, self.exec) };
        }
    }
}

struct GpuEvent<D: Driver> {
    event: D::Event,
    driver: Arc<D>,
}

// SAFETY: as for `GpuBackend`: the handle is used only with the driver bound.
unsafe impl<D: Driver> Send for GpuEvent<D> {}
unsafe impl<D: Driver> Sync for GpuEvent<D> {}

impl<D: Driver> BackendEvent for GpuEvent<D> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl<D: Driver> Drop for GpuEvent<D> {
    fn drop(&mut self) {
        if self.driver.bind().is_ok() {
            // SAFETY: recorded by this driver and destroyed once.
            unsafe { self.driver.destroy_event(self.event) };
        }
    }
}

impl<D: Driver> Backend for GpuBackend<D> {
    fn target(&self) -> Target {
        self.info.target
    }

    fn describe(&self) -> String {
        self.info.description.clone()
    }

    fn kind(&self) -> BackendKind {
        D::KIND
    }

    fn compute_units(&self) -> u32 {
        self.info.compute_units
    }

    fn alloc(&self, bytes: usize) -> Result<RawBuffer> {
        self.driver.bind()?;
        // A zero-byte request still gets a valid (distinct) allocation.
        let ptr = self.driver.alloc(bytes.max(1))?;
        Ok(RawBuffer::new(Arc::new(GpuMemory {
            ptr,
            bytes,
            driver: self.driver.clone(),
        })))
    }

    fn write(&self, dst: &RawBuffer, offset: usize, src: &[u8]) -> Result<()> {
        check_range(dst, offset, src.len())?;
        let ptr = self.ptr(dst)? + offset as u64;
        self.driver.bind()?;
        // SAFETY: the range was checked; the synchronisation keeps `src` alive for the copy.
        unsafe { self.driver.write(ptr, src)? };
        self.driver.synchronize()
    }

    fn write_many(&self, writes: &[(&RawBuffer, usize, &[u8])]) -> Result<()> {
        let mut at = Vec::with_capacity(writes.len());
        for (dst, offset, src) in writes {
            check_range(dst, *offset, src.len())?;
            at.push(self.ptr(dst)? + *offset as u64);
        }
        self.driver.bind()?;
        for (ptr, (_, _, src)) in at.into_iter().zip(writes) {
            // SAFETY: the range was checked; the synchronisation below keeps `src` alive
            // for the copy.
            unsafe { self.driver.write(ptr, src)? };
        }
        self.driver.synchronize()
    }

    fn read(&self, src: &RawBuffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        check_range(src, offset, dst.len())?;
        let ptr = self.ptr(src)? + offset as u64;
        self.driver.bind()?;
        // SAFETY: the range was checked; the synchronisation completes the copy before
        // `dst` is seen again.
        unsafe { self.driver.read(ptr, dst)? };
        self.driver.synchronize()
    }

    fn copy(&self, src: &RawBuffer, dst: &RawBuffer, bytes: usize) -> Result<()> {
        check_range(src, 0, bytes)?;
        check_range(dst, 0, bytes)?;
        let (from, to) = (self.ptr(src)?, self.ptr(dst)?);
        self.driver.bind()?;
        // SAFETY: both ranges were checked.
        unsafe { self.driver.copy(to, from, bytes) }
    }

    fn prepare(&self, kernel: &Arc<Kernel>) -> Result<()> {
        self.driver.bind()?;
        self.function(kernel).map(|_| ())
    }

    fn resident_blocks(&self, kernel: &Arc<Kernel>) -> Result<u32> {
        self.driver.bind()?;
        Ok(self.function(kernel)?.resident)
    }

    fn launch(&self, kernel: &Arc<Kernel>, grid: Grid, args: &[Arg]) -> Result<()> {
        self.driver.bind()?;
        let loaded = self.function(kernel)?;
        let mut slots = ArgSlots::pack(args, |b| self.ptr(b))?;
        let mut params = slots.params();
        // SAFETY: the argument list was checked against the kernel's parameters; the slots
        // outlive the call (drivers copy parameters at launch).
        unsafe {
            self.driver.launch(Launch {
                function: loaded.function,
                grid,
                block: kernel.block,
                dynamic_shared: loaded.dynamic_shared,
                dependent: loaded.dependent,
                params: &mut params,
            })
        }
        .map_err(|message| Error::Launch {
            kernel: kernel.symbol.clone(),
            message,
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.driver.bind()?;
        self.driver.synchronize()
    }

    fn begin_capture(&self) -> Result<()> {
        self.driver.bind()?;
        self.driver.begin_capture()
    }

    fn end_capture(&self) -> Result<Box<dyn BackendGraph>> {
        self.driver.bind()?;
        let (graph, exec, launches) = self.driver.end_capture()?;
        Ok(Box::new(GpuGraph {
            graph,
            exec,
            launches,
            driver: self.driver.clone(),
        }))
    }

    fn replay(&self, graph: &dyn BackendGraph) -> Result<()> {
        let g = graph
            .as_any()
            .downcast_ref::<GpuGraph<D>>()
            .ok_or(Error::ForeignGraph)?;
        self.driver.bind()?;
        self.driver.replay(g.exec)
    }

    fn update(
        &self,
        graph: &mut Box<dyn BackendGraph>,
        mut fresh: Box<dyn BackendGraph>,
    ) -> Result<()> {
        let (Some(old), Some(new)) = (
            graph.as_any_mut().downcast_mut::<GpuGraph<D>>(),
            fresh.as_any_mut().downcast_mut::<GpuGraph<D>>(),
        ) else {
            return Err(Error::ForeignGraph);
        };
        self.driver.bind()?;
        if self.driver.update(old.exec, new.graph) {
            // The executable now runs the new parameters; keep the new topology with it
            // and let `fresh` free the old graph and its own executable.
            std::mem::swap(&mut old.graph, &mut new.graph);
            old.launches = new.launches;
        } else {
            // Not updatable in place: use the new executable.
            *graph = fresh;
        }
        Ok(())
    }

    fn vendor_gemm_f16(
        &self,
        a: &RawBuffer,
        b: &RawBuffer,
        c: &RawBuffer,
        shape: (usize, usize, usize),
    ) -> Result<()> {
        let (a, b, c) = (self.ptr(a)?, self.ptr(b)?, self.ptr(c)?);
        self.driver.bind()?;
        self.driver.vendor_gemm_f16(a, b, c, shape)
    }

    fn record_event(&self) -> Result<Box<dyn BackendEvent>> {
        self.driver.bind()?;
        let event = self.driver.record_event()?;
        Ok(Box::new(GpuEvent {
            event,
            driver: self.driver.clone(),
        }))
    }

    fn elapsed_ms(&self, start: &dyn BackendEvent, end: &dyn BackendEvent) -> Result<f64> {
        let get = |e: &dyn BackendEvent| {
            e.as_any()
                .downcast_ref::<GpuEvent<D>>()
                .map(|g| g.event)
                .ok_or_else(|| Error::Backend("event from another backend".into()))
        };
        let (a, b) = (get(start)?, get(end)?);
        self.driver.bind()?;
        self.driver.elapsed_ms(a, b)
    }
}
