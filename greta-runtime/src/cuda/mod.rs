//! The CUDA backend: NVRTC-compiled modules (cached on disk), launches on one stream,
//! events, and stream capture into CUDA graphs. libcuda and libnvrtc are loaded at run
//! time, so the binary starts on machines without them.

use crate::args::{Arg, Grid};
use crate::buffer::{BackendMemory, RawBuffer};
use crate::cache::KernelCache;
use crate::compile::nvrtc::Nvrtc;
use crate::device::{Backend, BackendEvent, BackendGraph};
use crate::error::{Error, Result};
use crate::gpu::{check_range, check_wave, ArgSlots, LoadedKernels};
use cudarc::driver::{result, sys, CudaContext, DriverError};
use greta_codegen::ir::Kernel;
use greta_codegen::Target;
use std::ffi::{c_void, CString};
use std::sync::{Arc, OnceLock};

mod cublas;

fn driver(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| Error::Backend(format!("CUDA {what}: {e}"))
}

/// True if the CUDA driver library can be loaded and reports at least one device.
pub fn available() -> bool {
    // SAFETY: probing for the library has no preconditions.
    let present = unsafe { sys::is_culib_present() };
    present && result::init().is_ok() && result::device::get_count().is_ok_and(|n| n > 0)
}

/// One CUDA device with its stream and loaded kernels.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: sys::CUstream,
    /// What kernels are generated for: chosen from the compute capability.
    target: Target,
    arch: String,
    name: String,
    sms: i32,
    nvrtc: Nvrtc,
    cache: Option<KernelCache>,
    kernels: LoadedKernels<sys::CUmodule, Loaded>,
    /// Kernels that call `wait_prior_launch()` start before their predecessor ends
    /// (compute capability 9.0 and up; `GRETA_DEPENDENT_LAUNCH=0` turns it off).
    dependent_launch: bool,
    /// The reference matrix library, loaded on first use.
    cublas: OnceLock<std::result::Result<cublas::Cublas, String>>,
}

// SAFETY: the raw handles are used only with the context bound on the calling thread, and
// the driver API is thread-safe for these objects.
unsafe impl Send for CudaBackend {}
unsafe impl Sync for CudaBackend {}

/// A loaded kernel and the facts its launches need, found once at load.
#[derive(Clone, Copy)]
struct Loaded {
    function: sys::CUfunction,
    /// Started as a dependent launch (it waits for its predecessor itself).
    dependent: bool,
    /// Blocks one SM holds at once.
    resident: u32,
    /// Bytes of dynamic shared memory each launch requests (shared arrays beyond the
    /// static limit).
    dynamic_shared: u32,
}

/// Device memory owned by the backend.
struct CudaMemory {
    ptr: sys::CUdeviceptr,
    bytes: usize,
    ctx: Arc<CudaContext>,
}

impl BackendMemory for CudaMemory {
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for CudaMemory {
    fn drop(&mut self) {
        if self.ptr != 0 && self.ctx.bind_to_thread().is_ok() {
            // SAFETY: the pointer came from cuMemAlloc in this context and is freed once.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

struct CudaGraph {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    launches: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: graph handles are only used with the owning context bound.
unsafe impl Send for CudaGraph {}
unsafe impl Sync for CudaGraph {}

impl BackendGraph for CudaGraph {
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

impl Drop for CudaGraph {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: both handles were created by this backend and are destroyed once.
            unsafe {
                let _ = result::graph::exec_destroy(self.exec);
                let _ = result::graph::destroy(self.graph);
            }
        }
    }
}

struct CudaEvent {
    event: sys::CUevent,
    ctx: Arc<CudaContext>,
}

// SAFETY: event handles are only used with the owning context bound.
unsafe impl Send for CudaEvent {}
unsafe impl Sync for CudaEvent {}

impl BackendEvent for CudaEvent {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for CudaEvent {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: created by cuEventCreate and destroyed once.
            let _ = unsafe { result::event::destroy(self.event) };
        }
    }
}

/// The target for a device of capability `major.minor` allowing `optin` bytes of shared
/// memory per block, or the one `GRETA_CUDA_TARGET` names if the device can run its code.
fn device_target(major: u32, minor: u32, optin: u32) -> Result<Target> {
    let native = Target::for_cuda_device(major, minor, optin).ok_or_else(|| {
        Error::Unavailable(format!(
            "compute capability {major}.{minor}: GRETA needs sm_80 or newer (mma.sync, cp.async)"
        ))
    })?;
    let Ok(name) = std::env::var("GRETA_CUDA_TARGET") else {
        return Ok(native);
    };
    let runs_here = |t: &Target| {
        greta_codegen::NVIDIA_TARGETS.contains(t)
            && t.shared_bytes <= native.shared_bytes
            && (!t.bulk_copy || native.bulk_copy)
    };
    match Target::by_name(&name) {
        Some(t) if runs_here(&t) => Ok(t),
        _ => Err(Error::Unavailable(format!(
            "GRETA_CUDA_TARGET={name}: not an NVIDIA target this {} device runs (sm_80, sm_86, sm_89 or sm_90, at most {})",
            native.description, native.name
        ))),
    }
}

impl CudaBackend {
    /// Opens device `ordinal`, chooses its target from the compute capability (sm_80 and
    /// newer; `GRETA_CUDA_TARGET` names an older target's code to run it on a newer card),
    /// checks the warp size, and loads NVRTC.
    pub fn new(ordinal: usize) -> Result<CudaBackend> {
        // SAFETY: probing for the library has no preconditions.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::Unavailable(
                "the CUDA driver (libcuda.so) is not installed".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver("context creation"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("capability query"))?;
        let warp = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_WARP_SIZE)
            .map_err(driver("warp size query"))?;
        let optin = ctx
            .attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(driver("shared memory query"))?;
        let target = device_target(major as u32, minor as u32, optin as u32)?;
        check_wave(warp, &target)?;
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver("SM count query"))?;
        let name = ctx.name().map_err(driver("name query"))?;
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(driver("stream creation"))?;
        Ok(CudaBackend {
            ctx,
            stream,
            target,
            arch: format!("sm_{major}{minor}"),
            name,
            sms,
            nvrtc: Nvrtc::load()?,
            cache: KernelCache::default_location().ok(),
            kernels: LoadedKernels::new(),
            dependent_launch: target.bulk_copy
                && std::env::var("GRETA_DEPENDENT_LAUNCH").map_or(true, |v| v != "0"),
            cublas: OnceLock::new(),
        })
    }

    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(driver("context binding"))
    }

    fn ptr(&self, b: &RawBuffer) -> Result<sys::CUdeviceptr> {
        b.downcast::<CudaMemory>()
            .map(|m| m.ptr)
            .ok_or(Error::ForeignBuffer)
    }

    /// The loaded kernel, compiling (or reading the cache) and loading on first use.
    fn function(&self, kernel: &Kernel) -> Result<Loaded> {
        self.kernels.get_or_load(&kernel.symbol, || {
            let code = crate::jit::code_object(
                kernel,
                &self.target,
                &self.arch,
                &self.nvrtc,
                &[],
                self.cache.as_ref(),
            )?;
            let name = CString::new(kernel.symbol.as_str())
                .map_err(|_| Error::Backend("kernel name contains NUL".into()))?;
            // SAFETY: `code` is a complete cubin for this device's architecture; the module
            // is kept alive as long as the backend.
            unsafe {
                let module = result::module::load_data(code.as_ptr() as *const c_void)
                    .map_err(driver("module load"))?;
                let function =
                    result::module::get_function(module, name).map_err(driver("kernel lookup"))?;
                let dynamic_shared =
                    greta_codegen::validate::dynamic_shared_bytes(kernel, &self.target);
                if dynamic_shared > 0 {
                    sys::cuFuncSetAttribute(
                        function,
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        dynamic_shared as i32,
                    )
                    .result()
                    .map_err(driver("dynamic shared memory opt-in"))?;
                }
                let mut resident = 0;
                sys::cuOccupancyMaxActiveBlocksPerMultiprocessor(
                    &mut resident,
                    function,
                    kernel.block as i32,
                    dynamic_shared as usize,
                )
                .result()
                .map_err(driver("occupancy query"))?;
                Ok((
                    module,
                    Loaded {
                        function,
                        dependent: self.dependent_launch && kernel.waits_prior_launch(),
                        resident: resident.max(1) as u32,
                        dynamic_shared,
                    },
                ))
            }
        })
    }
}

impl Backend for CudaBackend {
    fn target(&self) -> Target {
        self.target
    }

    fn vendor_gemm_f16(
        &self,
        a: &RawBuffer,
        b: &RawBuffer,
        c: &RawBuffer,
        shape: (usize, usize, usize),
    ) -> Result<()> {
        self.bind()?;
        let lib = self
            .cublas
            .get_or_init(|| cublas::Cublas::new(self.stream))
            .as_ref()
            .map_err(|e| Error::Unavailable(e.clone()))?;
        lib.gemm_f16(self.ptr(a)?, self.ptr(b)?, self.ptr(c)?, shape)
    }

    fn describe(&self) -> String {
        let code = if self.target.name == self.arch {
            String::new()
        } else {
            format!(", {} code", self.target.name)
        };
        format!(
            "CUDA: {} ({}, {} SMs, warp {}{code})",
            self.name, self.arch, self.sms, self.target.wave
        )
    }

    fn kind(&self) -> crate::select::BackendKind {
        crate::select::BackendKind::Cuda
    }

    fn compute_units(&self) -> u32 {
        self.sms as u32
    }

    fn alloc(&self, bytes: usize) -> Result<RawBuffer> {
        self.bind()?;
        // A zero-byte request still gets a valid (distinct) allocation.
        // SAFETY: plain allocation in the bound context.
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }.map_err(driver("allocation"))?;
        Ok(RawBuffer::new(Arc::new(CudaMemory {
            ptr,
            bytes,
            ctx: self.ctx.clone(),
        })))
    }

    fn write(&self, dst: &RawBuffer, offset: usize, src: &[u8]) -> Result<()> {
        check_range(dst, offset, src.len())?;
        self.bind()?;
        let ptr = self.ptr(dst)? + offset as u64;
        // SAFETY: the range was checked; the stream sync keeps `src` alive for the copy.
        unsafe {
            result::memcpy_htod_async(ptr, src, self.stream)
                .map_err(driver("host-to-device copy"))?;
            result::stream::synchronize(self.stream).map_err(driver("stream synchronisation"))
        }
    }

    fn read(&self, src: &RawBuffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        check_range(src, offset, dst.len())?;
        self.bind()?;
        let ptr = self.ptr(src)? + offset as u64;
        // SAFETY: the range was checked; the stream sync completes the copy before return.
        unsafe {
            result::memcpy_dtoh_async(dst, ptr, self.stream)
                .map_err(driver("device-to-host copy"))?;
            result::stream::synchronize(self.stream).map_err(driver("stream synchronisation"))
        }
    }

    fn copy(&self, src: &RawBuffer, dst: &RawBuffer, bytes: usize) -> Result<()> {
        check_range(src, 0, bytes)?;
        check_range(dst, 0, bytes)?;
        self.bind()?;
        // SAFETY: both ranges were checked.
        unsafe { result::memcpy_dtod_async(self.ptr(dst)?, self.ptr(src)?, bytes, self.stream) }
            .map_err(driver("device-to-device copy"))
    }

    fn prepare(&self, kernel: &Arc<Kernel>) -> Result<()> {
        self.bind()?;
        self.function(kernel).map(|_| ())
    }

    fn resident_blocks(&self, kernel: &Arc<Kernel>) -> Result<u32> {
        self.bind()?;
        Ok(self.function(kernel)?.resident)
    }

    fn launch(&self, kernel: &Arc<Kernel>, grid: Grid, args: &[Arg]) -> Result<()> {
        self.bind()?;
        let Loaded {
            function,
            dependent,
            dynamic_shared,
            ..
        } = self.function(kernel)?;
        let mut slots = ArgSlots::pack(args, |b| self.ptr(b))?;
        let mut params = slots.params();
        // SAFETY: the argument list was checked against the kernel's parameters; the slots
        // outlive the call (the driver copies parameters at launch). The attribute lives
        // until the call returns.
        unsafe {
            if dependent {
                let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
                attr.id =
                    sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
                attr.value.programmaticStreamSerializationAllowed = 1;
                let config = sys::CUlaunchConfig {
                    gridDimX: grid.x,
                    gridDimY: grid.y,
                    gridDimZ: grid.z,
                    blockDimX: kernel.block,
                    blockDimY: 1,
                    blockDimZ: 1,
                    sharedMemBytes: dynamic_shared,
                    hStream: self.stream,
                    attrs: &mut attr,
                    numAttrs: 1,
                };
                sys::cuLaunchKernelEx(&config, function, params.as_mut_ptr(), std::ptr::null_mut())
                    .result()
            } else {
                result::launch_kernel(
                    function,
                    (grid.x, grid.y, grid.z),
                    (kernel.block, 1, 1),
                    dynamic_shared,
                    self.stream,
                    &mut params,
                )
            }
        }
        .map_err(|e| Error::Launch {
            kernel: kernel.symbol.clone(),
            message: e.to_string(),
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: our stream is valid for the backend's lifetime.
        unsafe { result::stream::synchronize(self.stream) }.map_err(driver("synchronisation"))
    }

    fn begin_capture(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: our stream is valid; thread-local mode keeps other threads' work out.
        unsafe {
            result::stream::begin_capture(
                self.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        }
        .map_err(driver("capture start"))
    }

    fn end_capture(&self) -> Result<Box<dyn BackendGraph>> {
        self.bind()?;
        // SAFETY: capture was begun on this stream; the graph is owned by the result.
        unsafe {
            let graph = result::stream::end_capture(self.stream).map_err(driver("capture end"))?;
            let mut count = 0usize;
            sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut count)
                .result()
                .map_err(driver("graph inspection"))?;
            let exec = result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0))
                .map_err(driver("graph instantiation"))?;
            Ok(Box::new(CudaGraph {
                graph,
                exec,
                launches: count,
                ctx: self.ctx.clone(),
            }))
        }
    }

    fn replay(&self, graph: &dyn BackendGraph) -> Result<()> {
        let g = graph
            .as_any()
            .downcast_ref::<CudaGraph>()
            .ok_or(Error::ForeignGraph)?;
        self.bind()?;
        // SAFETY: the executable graph belongs to this context.
        unsafe { result::graph::launch(g.exec, self.stream) }.map_err(driver("graph launch"))
    }

    fn update(
        &self,
        graph: &mut Box<dyn BackendGraph>,
        mut fresh: Box<dyn BackendGraph>,
    ) -> Result<()> {
        self.bind()?;
        let (Some(old), Some(new)) = (
            graph.as_any_mut().downcast_mut::<CudaGraph>(),
            fresh.as_any_mut().downcast_mut::<CudaGraph>(),
        ) else {
            return Err(Error::ForeignGraph);
        };
        let mut info = std::mem::MaybeUninit::<sys::CUgraphExecUpdateResultInfo>::zeroed();
        // SAFETY: both graphs belong to this context; `info` is written by the call.
        let status = unsafe { sys::cuGraphExecUpdate_v2(old.exec, new.graph, info.as_mut_ptr()) };
        if status == sys::CUresult::CUDA_SUCCESS {
            // The executable now runs the new parameters; keep the new topology with it
            // and let `fresh` free the old graph and its own executable.
            std::mem::swap(&mut old.graph, &mut new.graph);
            old.launches = new.launches;
        } else {
            // Not updatable in place (e.g. a different topology): use the new executable.
            *graph = fresh;
        }
        Ok(())
    }

    fn record_event(&self) -> Result<Box<dyn BackendEvent>> {
        self.bind()?;
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(driver("event creation"))?;
        // SAFETY: the event and stream are valid.
        unsafe { result::event::record(event, self.stream) }.map_err(driver("event record"))?;
        Ok(Box::new(CudaEvent {
            event,
            ctx: self.ctx.clone(),
        }))
    }

    fn elapsed_ms(&self, start: &dyn BackendEvent, end: &dyn BackendEvent) -> Result<f64> {
        let get = |e: &dyn BackendEvent| {
            e.as_any()
                .downcast_ref::<CudaEvent>()
                .map(|c| c.event)
                .ok_or_else(|| Error::Backend("event from another backend".into()))
        };
        let (a, b) = (get(start)?, get(end)?);
        self.bind()?;
        // SAFETY: both events were recorded on this context's stream.
        unsafe {
            result::event::synchronize(b).map_err(driver("event wait"))?;
            result::event::elapsed(a, b)
                .map(|ms| ms as f64)
                .map_err(driver("event timing"))
        }
    }
}
