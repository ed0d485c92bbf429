//! The HIP backend (AMD GPUs): hiprtc-compiled code objects (cached on disk), launches on
//! one stream, events, and stream capture into hipGraphs; the same structure and semantics
//! as the CUDA backend. The device's full architecture name (`gfx942:sramecc+:xnack-`)
//! selects the code-generation target by its base name, is what hiprtc compiles for, and
//! is part of the cache key; the device's wavefront size must be the target's.
//!
//! Built with the `hip` feature, which links `libamdhip64` through `hip-sys` (bindings
//! from HIP 5.4; only entry points that ROCm 5.2 also exports are used, and statuses are
//! read as its `hipError_t` enum, which knows HIP 5.4's codes). No AMD GPU is
//! available where this project is built and tested, so this module is exercised only by
//! building it (`scripts/test.sh` does) and by its start-up paths that need no GPU; the
//! compiler path it uses (`jit::code_object` with hiprtc) is tested on every kernel.

use crate::args::{Arg, Grid};
use crate::buffer::{BackendMemory, RawBuffer};
use crate::cache::KernelCache;
use crate::compile::hiprtc::Hiprtc;
use crate::device::{Backend, BackendEvent, BackendGraph};
use crate::error::{Error, Result};
use crate::gpu::{amd_target, check_range, check_wave, ArgSlots, LoadedKernels};
use greta_codegen::ir::Kernel;
use greta_codegen::Target;
use hip_sys::hiprt as sys;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Arc;

/// Turns a HIP status into a result, naming the failed operation.
fn check(status: sys::hipError_t, what: &str) -> Result<()> {
    if status == sys::hipError_t::hipSuccess {
        return Ok(());
    }
    let name = format!("{status:?}");
    // SAFETY: hipGetErrorString returns a static NUL-terminated string for any status.
    let text = unsafe { CStr::from_ptr(sys::hipGetErrorString(status)) }.to_string_lossy();
    // ROCm 5.2 returns the status name itself; show it once then.
    Err(Error::Backend(if text == name {
        format!("HIP {what}: {name}")
    } else {
        format!("HIP {what}: {text} ({name})")
    }))
}

/// True if the HIP runtime initialises and reports at least one device.
pub fn available() -> bool {
    let mut count = 0;
    // SAFETY: hipInit has no preconditions; `count` is valid for writes. Both return an
    // error (not a crash) on machines without an AMD GPU.
    let found = unsafe {
        sys::hipInit(0) == sys::hipError_t::hipSuccess
            && sys::hipGetDeviceCount(&mut count) == sys::hipError_t::hipSuccess
    };
    found && count > 0
}

/// One AMD device with its stream and loaded kernels.
pub struct HipBackend {
    ordinal: i32,
    stream: sys::hipStream_t,
    target: Target,
    /// Full architecture name with target features, e.g. `gfx942:sramecc+:xnack-`.
    arch: String,
    name: String,
    compute_units: i32,
    hiprtc: Hiprtc,
    cache: Option<KernelCache>,
    /// Entry points, each with the blocks one CU holds at once (found at load).
    kernels: LoadedKernels<sys::hipModule_t, (sys::hipFunction_t, u32)>,
}

// SAFETY: the raw handles are used only after selecting this backend's device on the
// calling thread, and the HIP runtime is thread-safe for these objects.
unsafe impl Send for HipBackend {}
unsafe impl Sync for HipBackend {}

/// Selects device `ordinal` for the calling thread (HIP's current device is per thread).
fn select(ordinal: i32) -> Result<()> {
    // SAFETY: plain device selection; an invalid ordinal is reported as an error.
    check(unsafe { sys::hipSetDevice(ordinal) }, "device selection")
}

/// Device memory owned by the backend.
struct HipMemory {
    ptr: sys::hipDeviceptr_t,
    bytes: usize,
    ordinal: i32,
}

// SAFETY: the pointer is device memory, only dereferenced by the device; host-side it is
// a plain address used with the owning device selected.
unsafe impl Send for HipMemory {}
unsafe impl Sync for HipMemory {}

impl BackendMemory for HipMemory {
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for HipMemory {
    fn drop(&mut self) {
        if !self.ptr.is_null() && select(self.ordinal).is_ok() {
            // SAFETY: the pointer came from hipMalloc on this device and is freed once.
            let _ = unsafe { sys::hipFree(self.ptr) };
        }
    }
}

struct HipGraph {
    graph: sys::hipGraph_t,
    exec: sys::hipGraphExec_t,
    launches: usize,
    ordinal: i32,
}

// SAFETY: graph handles are only used with the owning device selected.
unsafe impl Send for HipGraph {}
unsafe impl Sync for HipGraph {}

impl BackendGraph for HipGraph {
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

impl Drop for HipGraph {
    fn drop(&mut self) {
        if select(self.ordinal).is_ok() {
            // SAFETY: both handles were created by this backend and are destroyed once.
            unsafe {
                let _ = sys::hipGraphExecDestroy(self.exec);
                let _ = sys::hipGraphDestroy(self.graph);
            }
        }
    }
}

struct HipEvent {
    event: sys::hipEvent_t,
    ordinal: i32,
}

// SAFETY: event handles are only used with the owning device selected.
unsafe impl Send for HipEvent {}
unsafe impl Sync for HipEvent {}

impl BackendEvent for HipEvent {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for HipEvent {
    fn drop(&mut self) {
        if select(self.ordinal).is_ok() {
            // SAFETY: created by hipEventCreate and destroyed once.
            let _ = unsafe { sys::hipEventDestroy(self.event) };
        }
    }
}

/// A NUL-terminated `c_char` array from the device properties as a string.
fn text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl HipBackend {
    /// Opens device `ordinal`, picks the target from its architecture, checks that its
    /// wavefront size is the target's, and loads hiprtc.
    pub fn new(ordinal: usize) -> Result<HipBackend> {
        let unavailable = |why: String| Error::Unavailable(format!("no usable AMD GPU: {why}"));
        // SAFETY: hipInit has no preconditions.
        check(unsafe { sys::hipInit(0) }, "initialisation")
            .map_err(|e| unavailable(e.to_string()))?;
        let mut count = 0;
        // SAFETY: `count` is valid for writes.
        check(
            unsafe { sys::hipGetDeviceCount(&mut count) },
            "device count",
        )
        .map_err(|e| unavailable(e.to_string()))?;
        let ordinal = i32::try_from(ordinal)
            .ok()
            .filter(|&o| o < count)
            .ok_or_else(|| unavailable(format!("device {ordinal} requested, {count} present")))?;
        select(ordinal)?;
        let mut props = sys::hipDeviceProp_t::default();
        // SAFETY: `props` is a properly sized, writable hipDeviceProp_t.
        check(
            unsafe { sys::hipGetDeviceProperties(&mut props, ordinal) },
            "device properties query",
        )?;
        let arch = text(&props.gcnArchName);
        let target = amd_target(&arch)?;
        check_wave(props.warpSize, &target)?;
        let hiprtc = Hiprtc::load()?;
        let mut stream: sys::hipStream_t = std::ptr::null_mut();
        // SAFETY: `stream` is valid for writes; the device is selected.
        check(
            unsafe { sys::hipStreamCreateWithFlags(&mut stream, sys::hipStreamNonBlocking) },
            "stream creation",
        )?;
        Ok(HipBackend {
            ordinal,
            stream,
            target,
            arch,
            name: text(&props.name),
            compute_units: props.multiProcessorCount,
            hiprtc,
            cache: KernelCache::default_location().ok(),
            kernels: LoadedKernels::new(),
        })
    }

    fn bind(&self) -> Result<()> {
        select(self.ordinal)
    }

    fn ptr(&self, b: &RawBuffer) -> Result<sys::hipDeviceptr_t> {
        b.downcast::<HipMemory>()
            .map(|m| m.ptr)
            .ok_or(Error::ForeignBuffer)
    }

    /// The kernel's entry point and resident blocks per CU, compiling (or reading the
    /// cache) and loading on first use.
    fn function(&self, kernel: &Kernel) -> Result<(sys::hipFunction_t, u32)> {
        self.kernels.get_or_load(&kernel.symbol, || {
            let code = crate::jit::code_object(
                kernel,
                &self.target,
                &self.arch,
                &self.hiprtc,
                &[],
                self.cache.as_ref(),
            )?;
            let name = CString::new(kernel.symbol.as_str())
                .map_err(|_| Error::Backend("kernel name contains NUL".into()))?;
            let mut module: sys::hipModule_t = std::ptr::null_mut();
            let mut function: sys::hipFunction_t = std::ptr::null_mut();
            // SAFETY: `code` is a complete code object for this device's full architecture;
            // the module is kept alive as long as the backend.
            unsafe {
                check(
                    sys::hipModuleLoadData(&mut module, code.as_ptr() as *const c_void),
                    "module load",
                )?;
                check(
                    sys::hipModuleGetFunction(&mut function, module, name.as_ptr()),
                    "kernel lookup",
                )?;
            }
            let mut resident = 0;
            // SAFETY: the function was just loaded on this device; the count is written once.
            check(
                unsafe {
                    sys::hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(
                        &mut resident,
                        function,
                        kernel.block as i32,
                        0,
                    )
                },
                "occupancy query",
            )?;
            Ok((module, (function, resident.max(1) as u32)))
        })
    }

    /// Waits for everything queued on the backend's stream.
    fn wait(&self) -> Result<()> {
        // SAFETY: our stream is valid for the backend's lifetime.
        check(
            unsafe { sys::hipStreamSynchronize(self.stream) },
            "stream synchronisation",
        )
    }
}

/// A device address `offset` bytes into an allocation.
fn at(ptr: sys::hipDeviceptr_t, offset: usize) -> sys::hipDeviceptr_t {
    ptr.cast::<u8>().wrapping_add(offset).cast()
}

impl Backend for HipBackend {
    fn target(&self) -> Target {
        self.target
    }

    fn describe(&self) -> String {
        format!(
            "HIP: {} ({}, {} CUs, wave {})",
            self.name, self.arch, self.compute_units, self.target.wave
        )
    }

    fn kind(&self) -> crate::select::BackendKind {
        crate::select::BackendKind::Hip
    }

    fn compute_units(&self) -> u32 {
        self.compute_units as u32
    }

    fn alloc(&self, bytes: usize) -> Result<RawBuffer> {
        self.bind()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // A zero-byte request still gets a valid (distinct) allocation.
        // SAFETY: plain allocation on the selected device; `ptr` is valid for writes.
        check(
            unsafe { sys::hipMalloc(&mut ptr, bytes.max(1)) },
            "allocation",
        )?;
        Ok(RawBuffer::new(Arc::new(HipMemory {
            ptr,
            bytes,
            ordinal: self.ordinal,
        })))
    }

    fn write(&self, dst: &RawBuffer, offset: usize, src: &[u8]) -> Result<()> {
        check_range(dst, offset, src.len())?;
        self.bind()?;
        let ptr = at(self.ptr(dst)?, offset);
        // SAFETY: the range was checked; the stream sync keeps `src` alive for the copy,
        // which only reads it (the binding's `*mut` is not written through).
        check(
            unsafe {
                sys::hipMemcpyHtoDAsync(ptr, src.as_ptr() as *mut c_void, src.len(), self.stream)
            },
            "host-to-device copy",
        )?;
        self.wait()
    }

    fn read(&self, src: &RawBuffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        check_range(src, offset, dst.len())?;
        self.bind()?;
        let ptr = at(self.ptr(src)?, offset);
        // SAFETY: the range was checked; the stream sync completes the copy before return.
        check(
            unsafe {
                sys::hipMemcpyDtoHAsync(
                    dst.as_mut_ptr() as *mut c_void,
                    ptr,
                    dst.len(),
                    self.stream,
                )
            },
            "device-to-host copy",
        )?;
        self.wait()
    }

    fn copy(&self, src: &RawBuffer, dst: &RawBuffer, bytes: usize) -> Result<()> {
        check_range(src, 0, bytes)?;
        check_range(dst, 0, bytes)?;
        self.bind()?;
        // SAFETY: both ranges were checked.
        check(
            unsafe { sys::hipMemcpyDtoDAsync(self.ptr(dst)?, self.ptr(src)?, bytes, self.stream) },
            "device-to-device copy",
        )
    }

    fn prepare(&self, kernel: &Arc<Kernel>) -> Result<()> {
        self.bind()?;
        self.function(kernel).map(|_| ())
    }

    fn resident_blocks(&self, kernel: &Arc<Kernel>) -> Result<u32> {
        self.bind()?;
        Ok(self.function(kernel)?.1)
    }

    fn launch(&self, kernel: &Arc<Kernel>, grid: Grid, args: &[Arg]) -> Result<()> {
        self.bind()?;
        let (function, _) = self.function(kernel)?;
        let mut slots = ArgSlots::pack(args, |b| Ok(self.ptr(b)? as u64))?;
        let mut params = slots.params();
        // SAFETY: the argument list was checked against the kernel's parameters; HIP reads
        // each parameter's size (from the code object's metadata) through its pointer at
        // launch, so the slots only need to outlive the call.
        let status = unsafe {
            sys::hipModuleLaunchKernel(
                function,
                grid.x,
                grid.y,
                grid.z,
                kernel.block,
                1,
                1,
                0,
                self.stream,
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        check(status, "kernel launch").map_err(|e| Error::Launch {
            kernel: kernel.symbol.clone(),
            message: e.to_string(),
        })
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        self.wait()
    }

    fn begin_capture(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: our stream is valid; thread-local mode keeps other threads' work out.
        check(
            unsafe {
                sys::hipStreamBeginCapture(
                    self.stream,
                    sys::hipStreamCaptureMode::hipStreamCaptureModeThreadLocal,
                )
            },
            "capture start",
        )
    }

    fn end_capture(&self) -> Result<Box<dyn BackendGraph>> {
        self.bind()?;
        let mut graph: sys::hipGraph_t = std::ptr::null_mut();
        // SAFETY: capture was begun on this stream; `graph` is valid for writes.
        check(
            unsafe { sys::hipStreamEndCapture(self.stream, &mut graph) },
            "capture end",
        )?;
        let mut exec: sys::hipGraphExec_t = std::ptr::null_mut();
        let mut count = 0usize;
        // SAFETY: `graph` is the graph just captured; a null node array asks for the count
        // only. The graph is destroyed here on failure, else owned by the result.
        let made = unsafe {
            check(
                sys::hipGraphGetNodes(graph, std::ptr::null_mut(), &mut count),
                "graph inspection",
            )
            .and_then(|()| {
                check(
                    sys::hipGraphInstantiate(
                        &mut exec,
                        graph,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        0,
                    ),
                    "graph instantiation",
                )
            })
        };
        if let Err(e) = made {
            // SAFETY: the graph was created by the capture above and is not used again.
            let _ = unsafe { sys::hipGraphDestroy(graph) };
            return Err(e);
        }
        Ok(Box::new(HipGraph {
            graph,
            exec,
            launches: count,
            ordinal: self.ordinal,
        }))
    }

    fn replay(&self, graph: &dyn BackendGraph) -> Result<()> {
        let g = graph
            .as_any()
            .downcast_ref::<HipGraph>()
            .ok_or(Error::ForeignGraph)?;
        self.bind()?;
        // SAFETY: the executable graph belongs to this device.
        check(
            unsafe { sys::hipGraphLaunch(g.exec, self.stream) },
            "graph launch",
        )
    }

    fn record_event(&self) -> Result<Box<dyn BackendEvent>> {
        self.bind()?;
        let mut event: sys::hipEvent_t = std::ptr::null_mut();
        // SAFETY: `event` is valid for writes.
        check(unsafe { sys::hipEventCreate(&mut event) }, "event creation")?;
        let event = HipEvent {
            event,
            ordinal: self.ordinal,
        };
        // SAFETY: the event and stream are valid.
        check(
            unsafe { sys::hipEventRecord(event.event, self.stream) },
            "event record",
        )?;
        Ok(Box::new(event))
    }

    fn elapsed_ms(&self, start: &dyn BackendEvent, end: &dyn BackendEvent) -> Result<f64> {
        let get = |e: &dyn BackendEvent| {
            e.as_any()
                .downcast_ref::<HipEvent>()
                .map(|h| h.event)
                .ok_or_else(|| Error::Backend("event from another backend".into()))
        };
        let (a, b) = (get(start)?, get(end)?);
        self.bind()?;
        let mut ms = 0f32;
        // SAFETY: both events were recorded on this device's stream; `ms` is valid for
        // writes.
        unsafe {
            check(sys::hipEventSynchronize(b), "event wait")?;
            check(sys::hipEventElapsedTime(&mut ms, a, b), "event timing")?;
        }
        Ok(ms as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendKind, Device};
    use std::mem::offset_of;

    /// The fields read from `hipDeviceProp_t` sit where ROCm 5.2's `hip_runtime_api.h`
    /// puts them (offsets printed by a C program built against that header), so the
    /// HIP 5.4 bindings describe the struct the installed runtime fills in.
    #[test]
    fn device_properties_layout_matches_rocm_5_2() {
        assert_eq!(offset_of!(sys::hipDeviceProp_t, name), 0);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, warpSize), 276);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, multiProcessorCount), 336);
        assert_eq!(offset_of!(sys::hipDeviceProp_t, gcnArchName), 396);
        assert!(std::mem::size_of::<sys::hipDeviceProp_t>() >= 792);
    }

    /// Opens the backend the way applications do, through `Device::open`, which also makes
    /// this test binary link every backend method against the installed libamdhip64 (an
    /// entry point missing from that release fails the link).
    #[test]
    fn opening_reports_a_missing_gpu_as_unavailable() {
        match Device::open(BackendKind::Hip) {
            Ok(device) => {
                assert!(available());
                assert!(device.describe().starts_with("HIP: "));
            }
            Err(e) => {
                assert!(!available());
                assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
                assert!(e.to_string().contains("no usable AMD GPU"), "{e}");
            }
        }
    }

    #[test]
    fn architecture_names_are_read_up_to_the_nul() {
        let mut chars = [0 as c_char; 16];
        for (c, b) in chars.iter_mut().zip(b"gfx90a:xnack-") {
            *c = *b as c_char;
        }
        assert_eq!(text(&chars), "gfx90a:xnack-");
        assert_eq!(text(&[0; 4]), "");
    }
}
