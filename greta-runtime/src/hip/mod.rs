//! The HIP driver under [`GpuBackend`] (AMD GPUs): hiprtc-compiled code objects, launches
//! on one stream, events, and stream capture into hipGraphs with in-place update. The
//! device's full architecture name (`gfx942:sramecc+:xnack-`) selects the code-generation
//! target by its base name, is what hiprtc compiles for, and is part of the cache key; the
//! device's wavefront size must be the target's.
//!
//! Built with the `hip` feature, which links `libamdhip64` through `hip-sys` (bindings
//! from HIP 5.4; only entry points that ROCm 5.2 also exports are used, and statuses are
//! read as its `hipError_t` enum, which knows HIP 5.4's codes). No AMD GPU is
//! available where this project is built and tested, so this module is exercised only by
//! building it (`scripts/test.sh` does) and by its start-up paths that need no GPU; the
//! backend above it is the one the CUDA driver runs under, and the compiler path it uses
//! (`jit::code_object` with hiprtc) is tested on every kernel.

use crate::compile::hiprtc::Hiprtc;
use crate::device::BackendKind;
use crate::error::{Error, Result};
use crate::gpu::{amd_target, check_wave, DeviceInfo, Driver, GpuBackend, Launch};
use hip_sys::hiprt as sys;
use std::ffi::{c_char, c_void, CStr};

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

/// One AMD device (selected per thread by ordinal) and its stream.
pub(crate) struct HipDriver {
    ordinal: i32,
    stream: sys::hipStream_t,
}

// SAFETY: the stream is used only with the device selected, and the HIP runtime is
// thread-safe for it.
unsafe impl Send for HipDriver {}
unsafe impl Sync for HipDriver {}

impl Drop for HipDriver {
    fn drop(&mut self) {
        if self.bind().is_ok() {
            // SAFETY: created at open and destroyed once, after its last user (buffers,
            // graphs and events hold the driver).
            let _ = unsafe { sys::hipStreamDestroy(self.stream) };
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

/// A device pointer as the address the backend keeps.
fn address(ptr: *mut c_void) -> u64 {
    ptr as u64
}

/// The device pointer at an address the backend keeps.
fn pointer(address: u64) -> sys::hipDeviceptr_t {
    address as usize as sys::hipDeviceptr_t
}

/// Opens device `ordinal`, picks the target from its architecture, checks that its
/// wavefront size is the target's, and loads hiprtc.
pub(crate) fn open(ordinal: usize) -> Result<GpuBackend<HipDriver>> {
    let unavailable = |why: String| Error::Unavailable(format!("no usable AMD GPU: {why}"));
    // SAFETY: hipInit has no preconditions.
    check(unsafe { sys::hipInit(0) }, "initialisation").map_err(|e| unavailable(e.to_string()))?;
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
    // SAFETY: plain device selection of an ordinal that exists.
    check(unsafe { sys::hipSetDevice(ordinal) }, "device selection")?;
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
    let info = DeviceInfo {
        description: format!(
            "HIP: {} ({arch}, {} CUs, wave {})",
            text(&props.name),
            props.multiProcessorCount,
            target.wave
        ),
        target,
        arch,
        compute_units: props.multiProcessorCount.max(1) as u32,
        dependent_launch: false,
    };
    Ok(GpuBackend::new(
        HipDriver { ordinal, stream },
        info,
        Box::new(hiprtc),
    ))
}

// SAFETY: the HIP runtime is thread-safe for streams, modules, graphs and events, and
// every use selects the device on the calling thread first.
unsafe impl Driver for HipDriver {
    type Module = sys::hipModule_t;
    type Function = sys::hipFunction_t;
    type Graph = sys::hipGraph_t;
    type Exec = sys::hipGraphExec_t;
    type Event = sys::hipEvent_t;

    const KIND: BackendKind = BackendKind::Hip;

    fn bind(&self) -> Result<()> {
        // SAFETY: plain device selection (HIP's current device is per thread).
        check(
            unsafe { sys::hipSetDevice(self.ordinal) },
            "device selection",
        )
    }

    fn alloc(&self, bytes: usize) -> Result<u64> {
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: plain allocation on the selected device; `ptr` is valid for writes.
        check(unsafe { sys::hipMalloc(&mut ptr, bytes) }, "allocation")?;
        Ok(address(ptr))
    }

    unsafe fn free(&self, ptr: u64) {
        let _ = sys::hipFree(pointer(ptr));
    }

    unsafe fn write(&self, dst: u64, src: &[u8]) -> Result<()> {
        // The binding's `*mut` source is only read.
        let status = sys::hipMemcpyHtoDAsync(
            pointer(dst),
            src.as_ptr() as *mut c_void,
            src.len(),
            self.stream,
        );
        check(status, "host-to-device copy")
    }

    unsafe fn read(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        let status = sys::hipMemcpyDtoHAsync(
            dst.as_mut_ptr() as *mut c_void,
            pointer(src),
            dst.len(),
            self.stream,
        );
        check(status, "device-to-host copy")
    }

    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize) -> Result<()> {
        let status = sys::hipMemcpyDtoDAsync(pointer(dst), pointer(src), bytes, self.stream);
        check(status, "device-to-device copy")
    }

    fn synchronize(&self) -> Result<()> {
        // SAFETY: the stream is valid for the driver's lifetime.
        check(
            unsafe { sys::hipStreamSynchronize(self.stream) },
            "stream synchronisation",
        )
    }

    fn load(&self, code: &[u8], symbol: &CStr) -> Result<(sys::hipModule_t, sys::hipFunction_t)> {
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
                sys::hipModuleGetFunction(&mut function, module, symbol.as_ptr()),
                "kernel lookup",
            )?;
        }
        Ok((module, function))
    }

    fn resident_blocks(
        &self,
        function: sys::hipFunction_t,
        block: u32,
        shared: u32,
    ) -> Result<u32> {
        // HIP needs no opt-in: a block may use all of a compute unit's shared memory.
        let mut resident = 0;
        // SAFETY: `function` is a loaded kernel; `resident` is valid for writes.
        let status = unsafe {
            sys::hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(
                &mut resident,
                function,
                block as i32,
                shared as usize,
            )
        };
        check(status, "occupancy query")?;
        Ok(resident.max(0) as u32)
    }

    unsafe fn launch(
        &self,
        launch: Launch<'_, sys::hipFunction_t>,
    ) -> std::result::Result<(), String> {
        // HIP reads each parameter's size (from the code object's metadata) through its
        // pointer at launch. It has no dependent launch; `launch.dependent` is never set.
        let status = sys::hipModuleLaunchKernel(
            launch.function,
            launch.grid.x,
            launch.grid.y,
            launch.grid.z,
            launch.block,
            1,
            1,
            launch.dynamic_shared,
            self.stream,
            launch.params.as_mut_ptr(),
            std::ptr::null_mut(),
        );
        check(status, "kernel launch").map_err(|e| e.to_string())
    }

    fn begin_capture(&self) -> Result<()> {
        // SAFETY: the stream is valid; thread-local mode keeps other threads' work out.
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

    fn end_capture(&self) -> Result<(sys::hipGraph_t, sys::hipGraphExec_t, usize)> {
        let mut graph: sys::hipGraph_t = std::ptr::null_mut();
        // SAFETY: capture was begun on this stream; `graph` is valid for writes.
        check(
            unsafe { sys::hipStreamEndCapture(self.stream, &mut graph) },
            "capture end",
        )?;
        let mut exec: sys::hipGraphExec_t = std::ptr::null_mut();
        let mut count = 0usize;
        // SAFETY: `graph` is the graph just captured; a null node array asks for the count
        // only. The graph is destroyed here on failure, else owned by the caller.
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
        Ok((graph, exec, count))
    }

    fn replay(&self, exec: sys::hipGraphExec_t) -> Result<()> {
        // SAFETY: the executable graph belongs to this device.
        check(
            unsafe { sys::hipGraphLaunch(exec, self.stream) },
            "graph launch",
        )
    }

    fn update(&self, exec: sys::hipGraphExec_t, graph: sys::hipGraph_t) -> bool {
        let mut node: sys::hipGraphNode_t = std::ptr::null_mut();
        let mut result = sys::hipGraphExecUpdateResult::hipGraphExecUpdateSuccess;
        // SAFETY: both graphs belong to this device; the out-parameters are valid for
        // writes.
        let status = unsafe { sys::hipGraphExecUpdate(exec, graph, &mut node, &mut result) };
        status == sys::hipError_t::hipSuccess
            && result == sys::hipGraphExecUpdateResult::hipGraphExecUpdateSuccess
    }

    unsafe fn destroy_graph(&self, graph: sys::hipGraph_t, exec: sys::hipGraphExec_t) {
        let _ = sys::hipGraphExecDestroy(exec);
        let _ = sys::hipGraphDestroy(graph);
    }

    fn record_event(&self) -> Result<sys::hipEvent_t> {
        let mut event: sys::hipEvent_t = std::ptr::null_mut();
        // SAFETY: `event` is valid for writes; a failed record destroys the event.
        unsafe {
            check(sys::hipEventCreate(&mut event), "event creation")?;
            check(sys::hipEventRecord(event, self.stream), "event record").inspect_err(|_| {
                let _ = sys::hipEventDestroy(event);
            })?;
        }
        Ok(event)
    }

    fn elapsed_ms(&self, start: sys::hipEvent_t, end: sys::hipEvent_t) -> Result<f64> {
        let mut ms = 0f32;
        // SAFETY: both events were recorded on this device's stream; `ms` is valid for
        // writes.
        unsafe {
            check(sys::hipEventSynchronize(end), "event wait")?;
            check(
                sys::hipEventElapsedTime(&mut ms, start, end),
                "event timing",
            )?;
        }
        Ok(ms as f64)
    }

    unsafe fn destroy_event(&self, event: sys::hipEvent_t) {
        let _ = sys::hipEventDestroy(event);
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
