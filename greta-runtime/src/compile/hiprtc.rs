//! hiprtc: generated HIP source to an AMDGPU code object, at run time. The library is
//! opened with `dlopen`, so every build can use it and binaries start on machines without
//! ROCm. ROCm 6 and later ship hiprtc as `libhiprtc.so`; ROCm 5 exports it from the HIP
//! runtime (`libamdhip64.so.5`). `GRETA_HIPRTC_LIB` names a library to use instead.

use super::rtc::{self, ProgramApi};
use super::tools::INSTALL_HINT;
use crate::error::{Error, Result};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};

/// Libraries that export hiprtc, in the order they are tried (newest release first).
const CANDIDATES: [&str; 5] = [
    "libhiprtc.so",
    "libhiprtc.so.7",
    "libhiprtc.so.6",
    "libamdhip64.so.5",
    "libamdhip64.so",
];

type Program = *mut c_void;
type Status = c_int;
const SUCCESS: Status = 0;

/// The hiprtc entry points GRETA uses (signatures from `hip/hiprtc.h`).
struct Api {
    create: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> Status,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status,
    code_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    code: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    log: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    destroy: unsafe extern "C" fn(*mut Program) -> Status,
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status,
    error_string: unsafe extern "C" fn(Status) -> *const c_char,
}

/// A loaded hiprtc.
pub struct Hiprtc {
    api: Api,
    /// The library file the entry points come from.
    path: PathBuf,
    /// ROCm release of that library (`5.2.21153`), from its versioned file name.
    rocm: Option<String>,
    /// hiprtc's own version (9.0 in every ROCm release so far; kept for the identity when
    /// the ROCm release is unknown).
    api_version: (c_int, c_int),
    /// Keeps the entry points valid.
    _library: Library,
}

impl Hiprtc {
    /// Loads hiprtc, or explains how to install it.
    pub fn load() -> Result<Hiprtc> {
        let names: Vec<String> = match std::env::var("GRETA_HIPRTC_LIB") {
            Ok(path) => vec![path],
            Err(_) => CANDIDATES.iter().map(|s| s.to_string()).collect(),
        };
        let mut tried = Vec::new();
        for name in &names {
            match open(name) {
                Ok(h) => return Ok(h),
                Err(why) => tried.push(format!("{name}: {why}")),
            }
        }
        Err(Error::Unavailable(format!(
            "hiprtc was not found (tried {}); on a ROCm machine add its library folder to \
             LD_LIBRARY_PATH, elsewhere {INSTALL_HINT}",
            tried.join("; ")
        )))
    }

    /// The ROCm major release of the loaded library, when known. A HIP runtime library
    /// (`libamdhip64`) whose file name carries no version is taken as ROCm 5, the release
    /// that exports hiprtc from it.
    pub fn rocm_major(&self) -> Option<u32> {
        let from_name = self
            .rocm
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse().ok());
        let in_runtime = self
            .path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libamdhip64"));
        match from_name {
            Some(major) => Some(major),
            None if in_runtime => Some(5),
            None => None,
        }
    }

    /// Fails for architectures this hiprtc cannot compile without taking the process down:
    /// ROCm 5's compiler aborts on gfx940/941/942 instead of reporting an error.
    fn check_arch(&self, arch: &str) -> Result<()> {
        let base = arch.split(':').next().unwrap_or(arch);
        let aborts = base.starts_with("gfx94") && self.rocm_major().is_none_or(|m| m < 6);
        if aborts {
            let release = match &self.rocm {
                Some(v) => format!("ROCm {v}"),
                None => "an unknown ROCm release".to_string(),
            };
            return Err(Error::Unavailable(format!(
                "hiprtc from {release} ({}) cannot compile for {base}: ROCm 5 aborts the \
                 process for gfx94x; use ROCm 6 or later (set GRETA_HIPRTC_LIB), or check the \
                 kernel offline with `greta check --target gfx942`",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn describe(&self, status: Status) -> String {
        // SAFETY: hiprtcGetErrorString returns a static string (or null) for any value.
        let text = unsafe { (self.api.error_string)(status) };
        if text.is_null() {
            return format!("hiprtc error {status}");
        }
        // SAFETY: non-null results are NUL-terminated static strings.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }

    fn status(&self, status: Status) -> std::result::Result<(), String> {
        if status == SUCCESS {
            Ok(())
        } else {
            Err(self.describe(status))
        }
    }
}

// SAFETY: each call passes its arguments straight to the hiprtc entry point of that name.
unsafe impl ProgramApi for Hiprtc {
    type Program = Program;
    const NAME: &'static str = "hiprtc";
    const EXTENSION: &'static str = "hip";
    /// hiprtc's compiler keeps process-global state, and older releases are not safe to
    /// call concurrently.
    const SERIAL: bool = true;

    /// `hiprtc-<ROCm release>`.
    fn identity(&self) -> String {
        match &self.rocm {
            Some(v) => format!("hiprtc-{v}"),
            None => format!("hiprtc-{}.{}", self.api_version.0, self.api_version.1),
        }
    }

    /// For `arch`, a full target id such as `gfx942:sramecc+:xnack-`.
    fn options(&self, arch: &str) -> Result<Vec<String>> {
        self.check_arch(arch)?;
        Ok(vec![
            format!("--offload-arch={arch}"),
            "-O3".to_string(),
            "-std=c++17".to_string(),
            "-munsafe-fp-atomics".to_string(),
        ])
    }

    unsafe fn create(&self, source: &CStr, file: &CStr) -> std::result::Result<Program, String> {
        let mut program: Program = std::ptr::null_mut();
        let status = (self.api.create)(
            &mut program,
            source.as_ptr(),
            file.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        );
        self.status(status).map(|()| program)
    }

    unsafe fn compile(
        &self,
        program: Program,
        options: &[*const c_char],
    ) -> std::result::Result<(), String> {
        let count = c_int::try_from(options.len()).map_err(|_| "too many options".to_string())?;
        self.status((self.api.compile)(program, count, options.as_ptr()))
    }

    unsafe fn log(&self, program: Program) -> String {
        rtc::log_text(rtc::sized_bytes(
            |n| (self.api.log_size)(program, n) == SUCCESS,
            |buf| (self.api.log)(program, buf) == SUCCESS,
        ))
    }

    unsafe fn code(&self, program: Program) -> std::result::Result<Vec<u8>, String> {
        let mut size = 0usize;
        self.status((self.api.code_size)(program, &mut size))?;
        let mut buf = vec![0u8; size];
        self.status((self.api.code)(program, buf.as_mut_ptr().cast()))?;
        Ok(buf)
    }

    unsafe fn destroy(&self, mut program: Program) {
        (self.api.destroy)(&mut program);
    }
}

/// Opens `name` and resolves the hiprtc entry points from it.
fn open(name: &str) -> std::result::Result<Hiprtc, String> {
    // SAFETY: loading the HIP runtime or hiprtc runs only their (trusted) initialisers.
    let library = unsafe { Library::new(name) }.map_err(|e| e.to_string())?;
    // SAFETY: each symbol is declared with its C signature from `hip/hiprtc.h`.
    let api = unsafe {
        Api {
            create: symbol(&library, b"hiprtcCreateProgram\0")?,
            compile: symbol(&library, b"hiprtcCompileProgram\0")?,
            code_size: symbol(&library, b"hiprtcGetCodeSize\0")?,
            code: symbol(&library, b"hiprtcGetCode\0")?,
            log_size: symbol(&library, b"hiprtcGetProgramLogSize\0")?,
            log: symbol(&library, b"hiprtcGetProgramLog\0")?,
            destroy: symbol(&library, b"hiprtcDestroyProgram\0")?,
            version: symbol(&library, b"hiprtcVersion\0")?,
            error_string: symbol(&library, b"hiprtcGetErrorString\0")?,
        }
    };
    let path = library_file(api.create as *const c_void).unwrap_or_else(|| PathBuf::from(name));
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both pointers are valid for writes.
    if unsafe { (api.version)(&mut major, &mut minor) } != SUCCESS {
        return Err("hiprtcVersion failed".into());
    }
    Ok(Hiprtc {
        rocm: release_from_file_name(&path),
        path,
        api,
        api_version: (major, minor),
        _library: library,
    })
}

/// # Safety
/// `T` must be the symbol's true type.
unsafe fn symbol<T: Copy>(library: &Library, name: &[u8]) -> std::result::Result<T, String> {
    library
        .get::<T>(name)
        .map(|s| *s)
        .map_err(|e| e.to_string())
}

/// The file (symlinks resolved) of the loaded library that holds `address`.
fn library_file(address: *const c_void) -> Option<PathBuf> {
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: `address` is a function in a loaded library; `info` is valid for writes.
    if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned();
    Some(std::fs::canonicalize(&name).unwrap_or_else(|_| PathBuf::from(name)))
}

/// The release in a versioned library file name: `libamdhip64.so.5.2.21153` -> `5.2.21153`.
fn release_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (_, version) = name.split_once(".so.")?;
    let numeric = !version.is_empty()
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric.then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_come_from_versioned_file_names() {
        let r = |p: &str| release_from_file_name(Path::new(p));
        assert_eq!(
            r("/usr/lib/x86_64-linux-gnu/libamdhip64.so.5.2.21153").as_deref(),
            Some("5.2.21153")
        );
        assert_eq!(r("/opt/rocm/lib/libhiprtc.so.6").as_deref(), Some("6"));
        assert_eq!(r("/opt/rocm/lib/libhiprtc.so"), None);
        assert_eq!(r("libhiprtc.so.6.x"), None);
    }
}
