//! NVRTC: CUDA-flavoured generated source to an sm_XX cubin, at run time. The library is
//! loaded dynamically (through cudarc) so binaries start on machines without CUDA.

use super::rtc::{self, ProgramApi};
use super::tools::{tool_path, INSTALL_HINT};
use crate::error::{Error, Result};
use cudarc::nvrtc::sys;
use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

/// A loaded NVRTC.
pub struct Nvrtc {
    major: i32,
    minor: i32,
}

/// Libraries opened by path so that cudarc's by-name lookup finds them already loaded.
static PRELOADED: OnceLock<Vec<libloading::os::unix::Library>> = OnceLock::new();

/// Opens NVRTC (and its builtins library) from `GRETA_NVRTC_LIB` /
/// `GRETA_NVRTC_BUILTINS_LIB` or the tools folder, when given: the pip-installed NVRTC is
/// not on the loader's search path.
fn preload() {
    PRELOADED.get_or_init(|| {
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
        [
            (
                "GRETA_NVRTC_BUILTINS_LIB",
                "nvidia/nvidia/cu13/lib/libnvrtc-builtins.so.13.0",
            ),
            ("GRETA_NVRTC_LIB", "nvidia/nvidia/cu13/lib/libnvrtc.so.13"),
        ]
        .iter()
        .filter_map(|(var, default)| tool_path(var, default))
        // SAFETY: loading NVRTC runs only its (trusted) library initialisers.
        .filter_map(|p| unsafe { libloading::os::unix::Library::open(Some(p), flags) }.ok())
        .collect()
    });
}

fn check(r: sys::nvrtcResult, what: &str) -> Result<()> {
    status(r).map_err(|why| Error::Backend(format!("NVRTC {what} failed: {why}")))
}

impl Nvrtc {
    /// Loads NVRTC, or explains how to install it.
    pub fn load() -> Result<Nvrtc> {
        preload();
        // SAFETY: probing for the library has no preconditions.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::Unavailable(format!(
                "NVRTC (libnvrtc.so) was not found; on a CUDA machine add its folder to LD_LIBRARY_PATH, elsewhere {INSTALL_HINT}"
            )));
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both pointers are valid for writes.
        check(
            unsafe { sys::nvrtcVersion(&mut major, &mut minor) },
            "version query",
        )?;
        Ok(Nvrtc { major, minor })
    }
}

fn status(r: sys::nvrtcResult) -> std::result::Result<(), String> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(format!("{r:?}"))
    }
}

// SAFETY: each call passes its arguments straight to the NVRTC entry point of that name.
unsafe impl ProgramApi for Nvrtc {
    type Program = sys::nvrtcProgram;
    const NAME: &'static str = "NVRTC";
    const EXTENSION: &'static str = "cu";
    const SERIAL: bool = false;

    fn identity(&self) -> String {
        format!("nvrtc-{}.{}", self.major, self.minor)
    }

    /// For `arch` such as `sm_90`; the log then carries ptxas's resource report.
    fn options(&self, arch: &str) -> Result<Vec<String>> {
        Ok(vec![
            format!("--gpu-architecture={arch}"),
            "-std=c++17".to_string(),
            "-Xptxas=-v".to_string(),
        ])
    }

    unsafe fn create(
        &self,
        source: &CStr,
        file: &CStr,
    ) -> std::result::Result<sys::nvrtcProgram, String> {
        let mut program: sys::nvrtcProgram = std::ptr::null_mut();
        let r = sys::nvrtcCreateProgram(
            &mut program,
            source.as_ptr(),
            file.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        );
        status(r).map(|()| program)
    }

    unsafe fn compile(
        &self,
        program: sys::nvrtcProgram,
        options: &[*const c_char],
    ) -> std::result::Result<(), String> {
        let count = i32::try_from(options.len()).map_err(|_| "too many options".to_string())?;
        status(sys::nvrtcCompileProgram(program, count, options.as_ptr()))
    }

    unsafe fn log(&self, program: sys::nvrtcProgram) -> String {
        rtc::log_text(rtc::sized_bytes(
            |n| status(sys::nvrtcGetProgramLogSize(program, n)).is_ok(),
            |buf| status(sys::nvrtcGetProgramLog(program, buf)).is_ok(),
        ))
    }

    unsafe fn code(&self, program: sys::nvrtcProgram) -> std::result::Result<Vec<u8>, String> {
        let mut size = 0usize;
        status(sys::nvrtcGetCUBINSize(program, &mut size))?;
        let mut buf = vec![0u8; size];
        status(sys::nvrtcGetCUBIN(program, buf.as_mut_ptr().cast()))?;
        Ok(buf)
    }

    unsafe fn destroy(&self, mut program: sys::nvrtcProgram) {
        sys::nvrtcDestroyProgram(&mut program);
    }
}
