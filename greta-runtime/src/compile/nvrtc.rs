//! NVRTC: CUDA-flavoured generated source to an sm_XX cubin, at run time. The library is
//! loaded dynamically (through cudarc) so binaries start on machines without CUDA.

use super::tools::{tool_path, INSTALL_HINT};
use super::CodeObject;
use crate::error::{Error, Result};
use cudarc::nvrtc::sys;
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

/// A loaded NVRTC.
pub struct Nvrtc {
    major: i32,
    minor: i32,
}

/// Libraries opened by path so that cudarc's by-name lookup finds them already loaded.
static PRELOADED: OnceLock<Vec<libloading::os::unix::Library>> = OnceLock::new();

impl crate::jit::JitCompiler for Nvrtc {
    fn id(&self) -> String {
        Nvrtc::id(self)
    }
    fn compile(&self, source: &str, name: &str, arch: &str, options: &[String]) -> Result<Vec<u8>> {
        Nvrtc::compile(self, source, name, arch, options).map(|c| c.bytes)
    }
}

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
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(Error::Backend(format!("NVRTC {what} failed: {r:?}")))
    }
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

    /// Compiler identity for cache keys.
    pub fn id(&self) -> String {
        format!("nvrtc-{}.{}", self.major, self.minor)
    }

    /// Compiles one translation unit for `arch` (e.g. `sm_90`) to a cubin; the log carries
    /// ptxas's resource report. Errors cite DSL lines through the source's `#line`s.
    pub fn compile(
        &self,
        source: &str,
        name: &str,
        arch: &str,
        extra: &[String],
    ) -> Result<CodeObject> {
        let fail = |log: String| Error::Compile {
            kernel: name.to_string(),
            target: arch.to_string(),
            log,
        };
        let src = CString::new(source).map_err(|_| fail("source contains a NUL byte".into()))?;
        let file =
            CString::new(format!("{name}.cu")).map_err(|_| fail("bad kernel name".into()))?;
        let mut options = vec![
            format!("--gpu-architecture={arch}"),
            "-std=c++17".to_string(),
            "-Xptxas=-v".to_string(),
        ];
        options.extend(extra.iter().cloned());
        let options: Vec<CString> = options
            .into_iter()
            .map(|o| CString::new(o).map_err(|_| fail("option contains a NUL byte".into())))
            .collect::<Result<_>>()?;
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the calls; the program is
        // destroyed on every path below.
        unsafe {
            check(
                sys::nvrtcCreateProgram(
                    &mut prog,
                    src.as_ptr(),
                    file.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                ),
                "program creation",
            )?;
            let status =
                sys::nvrtcCompileProgram(prog, option_ptrs.len() as i32, option_ptrs.as_ptr());
            let log = program_log(prog);
            let result = if status == sys::nvrtcResult::NVRTC_SUCCESS {
                cubin(prog).map(|bytes| CodeObject { bytes, log })
            } else {
                Err(fail(log))
            };
            sys::nvrtcDestroyProgram(&mut prog);
            result
        }
    }
}

/// # Safety
/// `prog` must be a live program.
unsafe fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    if sys::nvrtcGetProgramLogSize(prog, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0
    {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    if sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char)
        != sys::nvrtcResult::NVRTC_SUCCESS
    {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// # Safety
/// `prog` must be a successfully compiled program.
unsafe fn cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>> {
    let mut size = 0usize;
    check(sys::nvrtcGetCUBINSize(prog, &mut size), "cubin size query")?;
    let mut buf = vec![0u8; size];
    check(
        sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char),
        "cubin retrieval",
    )?;
    Ok(buf)
}
