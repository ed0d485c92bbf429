//! The CUDA driver under [`GpuBackend`]: NVRTC-compiled modules, launches on one stream
//! (dependent launches on sm_90), events and stream capture into CUDA graphs. libcuda and
//! libnvrtc are loaded at run time, so the binary starts on machines without them.

use crate::compile::nvrtc::Nvrtc;
use crate::device::BackendKind;
use crate::error::{Error, Result};
use crate::gpu::{check_wave, DeviceInfo, Driver, GpuBackend, Launch};
use cudarc::driver::{result, sys, CudaContext, DriverError};
use greta_codegen::Target;
use std::ffi::{c_void, CStr};
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

/// One CUDA device: its context and stream.
pub(crate) struct CudaDriver {
    /// The reference matrix library, loaded on first use (dropped before the stream).
    cublas: OnceLock<std::result::Result<cublas::Cublas, String>>,
    stream: Stream,
}

// SAFETY: the stream is used only with its context bound, and the driver API is
// thread-safe for it.
unsafe impl Send for CudaDriver {}
unsafe impl Sync for CudaDriver {}

/// The backend's stream, destroyed after everything that uses it.
struct Stream {
    stream: sys::CUstream,
    ctx: Arc<CudaContext>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: created by this context and destroyed once, after its last user.
            let _ = unsafe { result::stream::destroy(self.stream) };
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

/// Opens device `ordinal`, chooses its target from the compute capability (sm_80 and newer;
/// `GRETA_CUDA_TARGET` names an older target's code to run it on a newer card), checks the
/// warp size, and loads NVRTC.
pub(crate) fn open(ordinal: usize) -> Result<GpuBackend<CudaDriver>> {
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
    let attribute = |a, what| ctx.attribute(a).map_err(driver(what));
    use sys::CUdevice_attribute as A;
    let warp = attribute(A::CU_DEVICE_ATTRIBUTE_WARP_SIZE, "warp size query")?;
    let optin = attribute(
        A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        "shared memory query",
    )?;
    let target = device_target(major as u32, minor as u32, optin as u32)?;
    check_wave(warp, &target)?;
    let sms = attribute(
        A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        "SM count query",
    )?;
    let name = ctx.name().map_err(driver("name query"))?;
    let arch = format!("sm_{major}{minor}");
    let code = if target.name == arch {
        String::new()
    } else {
        format!(", {} code", target.name)
    };
    let info = DeviceInfo {
        description: format!(
            "CUDA: {name} ({arch}, {sms} SMs, warp {}{code})",
            target.wave
        ),
        target,
        arch,
        compute_units: sms as u32,
        // Kernels that call `wait_prior_launch()` start before their predecessor ends
        // (compute capability 9.0 and up; `GRETA_DEPENDENT_LAUNCH=0` turns it off).
        dependent_launch: target.bulk_copy
            && std::env::var("GRETA_DEPENDENT_LAUNCH").map_or(true, |v| v != "0"),
    };
    let nvrtc = Nvrtc::load()?;
    ctx.bind_to_thread().map_err(driver("context binding"))?;
    let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
        .map_err(driver("stream creation"))?;
    let driver = CudaDriver {
        cublas: OnceLock::new(),
        stream: Stream { stream, ctx },
    };
    Ok(GpuBackend::new(driver, info, Box::new(nvrtc)))
}

impl CudaDriver {
    fn stream(&self) -> sys::CUstream {
        self.stream.stream
    }
}

// SAFETY: the CUDA driver API is thread-safe for contexts, streams, modules, graphs and
// events, and every use binds the owning context first.
unsafe impl Driver for CudaDriver {
    type Module = sys::CUmodule;
    type Function = sys::CUfunction;
    type Graph = sys::CUgraph;
    type Exec = sys::CUgraphExec;
    type Event = sys::CUevent;

    const KIND: BackendKind = BackendKind::Cuda;

    fn bind(&self) -> Result<()> {
        self.stream
            .ctx
            .bind_to_thread()
            .map_err(driver("context binding"))
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        // SAFETY: plain allocation in the bound context.
        unsafe { result::malloc_sync(bytes) }.map_err(driver("allocation"))
    }

    unsafe fn free(&self, ptr: u64) {
        let _ = result::free_sync(ptr);
    }

    unsafe fn write(&self, dst: u64, src: &[u8]) -> Result<()> {
        result::memcpy_htod_async(dst, src, self.stream()).map_err(driver("host-to-device copy"))
    }

    unsafe fn read(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        result::memcpy_dtoh_async(dst, src, self.stream()).map_err(driver("device-to-host copy"))
    }

    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        result::memcpy_dtod_async(dst, src, bytes, self.stream())
            .map_err(driver("device-to-device copy"))
    }

    fn synchronize(&self) -> Result<()> {
        // SAFETY: the stream is valid for the driver's lifetime.
        unsafe { result::stream::synchronize(self.stream()) }
            .map_err(driver("stream synchronisation"))
    }

    fn load(&self, code: &[u8], symbol: &CStr) -> Result<(sys::CUmodule, sys::CUfunction)> {
        // SAFETY: `code` is a complete cubin for this device's architecture; the module is
        // kept alive as long as the backend.
        unsafe {
            let module = result::module::load_data(code.as_ptr() as *const c_void)
                .map_err(driver("module load"))?;
            let function = result::module::get_function(module, symbol.to_owned())
                .map_err(driver("kernel lookup"))?;
            Ok((module, function))
        }
    }

    fn resident_blocks(&self, function: sys::CUfunction, block: u32, shared: u32) -> Result<u32> {
        let mut resident = 0;
        // SAFETY: `function` is a loaded kernel; `resident` is valid for writes.
        unsafe {
            if shared > 0 {
                sys::cuFuncSetAttribute(
                    function,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    shared as i32,
                )
                .result()
                .map_err(driver("dynamic shared memory opt-in"))?;
            }
            sys::cuOccupancyMaxActiveBlocksPerMultiprocessor(
                &mut resident,
                function,
                block as i32,
                shared as usize,
            )
            .result()
            .map_err(driver("occupancy query"))?;
        }
        Ok(resident.max(0) as u32)
    }

    unsafe fn launch(
        &self,
        launch: Launch<'_, sys::CUfunction>,
    ) -> std::result::Result<(), String> {
        // Dependent launch is the one attribute; without it the list is empty.
        let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: launch.grid.x,
            gridDimY: launch.grid.y,
            gridDimZ: launch.grid.z,
            blockDimX: launch.block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: launch.dynamic_shared,
            hStream: self.stream(),
            attrs: &mut attr,
            numAttrs: u32::from(launch.dependent),
        };
        let params = launch.params.as_mut_ptr();
        sys::cuLaunchKernelEx(&config, launch.function, params, std::ptr::null_mut())
            .result()
            .map_err(|e| e.to_string())
    }

    fn begin_capture(&self) -> Result<()> {
        // SAFETY: the stream is valid; thread-local mode keeps other threads' work out.
        unsafe {
            result::stream::begin_capture(
                self.stream(),
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        }
        .map_err(driver("capture start"))
    }

    fn end_capture(&self) -> Result<(sys::CUgraph, sys::CUgraphExec, usize)> {
        // SAFETY: capture was begun on this stream; the graph is destroyed here on failure,
        // else owned by the caller.
        unsafe {
            let graph =
                result::stream::end_capture(self.stream()).map_err(driver("capture end"))?;
            let mut count = 0usize;
            let made = sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut count)
                .result()
                .map_err(driver("graph inspection"))
                .and_then(|()| {
                    result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0))
                        .map_err(driver("graph instantiation"))
                });
            match made {
                Ok(exec) => Ok((graph, exec, count)),
                Err(e) => {
                    let _ = result::graph::destroy(graph);
                    Err(e)
                }
            }
        }
    }

    fn replay(&self, exec: sys::CUgraphExec) -> Result<()> {
        // SAFETY: the executable graph belongs to this context.
        unsafe { result::graph::launch(exec, self.stream()) }.map_err(driver("graph launch"))
    }

    fn update(&self, exec: sys::CUgraphExec, graph: sys::CUgraph) -> bool {
        let mut info = std::mem::MaybeUninit::<sys::CUgraphExecUpdateResultInfo>::zeroed();
        // SAFETY: both graphs belong to this context; `info` is written by the call.
        let status = unsafe { sys::cuGraphExecUpdate_v2(exec, graph, info.as_mut_ptr()) };
        status == sys::CUresult::CUDA_SUCCESS
    }

    unsafe fn destroy_graph(&self, graph: sys::CUgraph, exec: sys::CUgraphExec) {
        let _ = result::graph::exec_destroy(exec);
        let _ = result::graph::destroy(graph);
    }

    fn record_event(&self) -> Result<sys::CUevent> {
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(driver("event creation"))?;
        // SAFETY: the event and stream are valid; a failed record destroys the event.
        unsafe {
            result::event::record(event, self.stream())
                .map_err(driver("event record"))
                .inspect_err(|_| {
                    let _ = result::event::destroy(event);
                })?;
        }
        Ok(event)
    }

    fn elapsed_ms(&self, start: sys::CUevent, end: sys::CUevent) -> Result<f64> {
        // SAFETY: both events were recorded on this context's stream.
        unsafe {
            result::event::synchronize(end).map_err(driver("event wait"))?;
            result::event::elapsed(start, end)
                .map(|ms| ms as f64)
                .map_err(driver("event timing"))
        }
    }

    unsafe fn destroy_event(&self, event: sys::CUevent) {
        let _ = result::event::destroy(event);
    }

    fn vendor_gemm_f16(&self, a: u64, b: u64, c: u64, shape: (usize, usize, usize)) -> Result<()> {
        let lib = self
            .cublas
            .get_or_init(|| cublas::Cublas::new(self.stream()))
            .as_ref()
            .map_err(|e| Error::Unavailable(e.clone()))?;
        lib.gemm_f16(a, b, c, shape)
    }
}
