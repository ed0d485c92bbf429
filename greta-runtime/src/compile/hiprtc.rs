//! hiprtc: generated HIP source to an AMDGPU code object, at run time. The library is
//! opened with `dlopen`, so every build can use it and binaries start on machines without
//! ROCm. ROCm 6 and later ship hiprtc as `libhiprtc.so`; ROCm 5 exports it from the HIP
//! runtime (`libamdhip64.so.5`). `GRETA_HIPRTC_LIB` names a library to use instead.

use super::tools::INSTALL_HINT;
use crate::error::{Error, Result};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Libraries that export hiprtc, in the order they are tried (newest release first).
const CANDIDATES: [&str; 5] = [
    "libhiprtc.so",
    "libhiprtc.so.7",
    "libhiprtc.so.6",
    "libamdhip64.so.5",
    "libamdhip64.so",
];

/// hiprtc compiles one program at a time (its compiler keeps process-global state), and
/// older releases are not safe to call concurrently; a lock makes that explicit.
static COMPILE: Mutex<()> = Mutex::new(());

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

    /// Compiler identity for cache keys: `hiprtc-<ROCm release>`.
    pub fn id(&self) -> String {
        match &self.rocm {
            Some(v) => format!("hiprtc-{v}"),
            None => format!("hiprtc-{}.{}", self.api_version.0, self.api_version.1),
        }
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

    /// Compiles one translation unit for `arch` (a full target id such as
    /// `gfx942:sramecc+:xnack-`) to a code object. Errors carry hiprtc's log, which cites
    /// DSL files and lines through the source's `#line` directives.
    pub fn compile(
        &self,
        source: &str,
        name: &str,
        arch: &str,
        extra: &[String],
    ) -> Result<Vec<u8>> {
        self.check_arch(arch)?;
        let fail = |log: String| Error::Compile {
            kernel: name.to_string(),
            target: arch.to_string(),
            log,
        };
        let src = CString::new(source).map_err(|_| fail("source contains a NUL byte".into()))?;
        let file =
            CString::new(format!("{name}.hip")).map_err(|_| fail("bad kernel name".into()))?;
        let options = [
            format!("--offload-arch={arch}"),
            "-O3".to_string(),
            "-std=c++17".to_string(),
            "-munsafe-fp-atomics".to_string(),
        ];
        let options: Vec<CString> = options
            .iter()
            .chain(extra)
            .map(|o| {
                CString::new(o.as_str()).map_err(|_| fail("option contains a NUL byte".into()))
            })
            .collect::<Result<_>>()?;
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let count =
            c_int::try_from(option_ptrs.len()).map_err(|_| fail("too many options".into()))?;
        let _serial = COMPILE.lock().unwrap_or_else(|p| p.into_inner());
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the calls; the program is
        // destroyed on every path after its creation succeeded.
        unsafe {
            self.check(
                (self.api.create)(
                    &mut prog,
                    src.as_ptr(),
                    file.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                ),
                "program creation",
            )?;
            let status = (self.api.compile)(prog, count, option_ptrs.as_ptr());
            let log = self.program_log(prog);
            let result = if status == SUCCESS {
                self.code(prog)
            } else if log.trim().is_empty() {
                Err(fail(self.describe(status)))
            } else {
                Err(fail(log))
            };
            (self.api.destroy)(&mut prog);
            result
        }
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

    fn check(&self, status: Status, what: &str) -> Result<()> {
        if status == SUCCESS {
            Ok(())
        } else {
            Err(Error::Backend(format!(
                "hiprtc {what} failed: {}",
                self.describe(status)
            )))
        }
    }

    /// # Safety
    /// `prog` must be a live program.
    unsafe fn program_log(&self, prog: Program) -> String {
        let mut size = 0usize;
        if (self.api.log_size)(prog, &mut size) != SUCCESS || size == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        if (self.api.log)(prog, buf.as_mut_ptr() as *mut c_char) != SUCCESS {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// # Safety
    /// `prog` must be a successfully compiled program.
    unsafe fn code(&self, prog: Program) -> Result<Vec<u8>> {
        let mut size = 0usize;
        self.check((self.api.code_size)(prog, &mut size), "code size query")?;
        let mut buf = vec![0u8; size];
        self.check(
            (self.api.code)(prog, buf.as_mut_ptr() as *mut c_char),
            "code retrieval",
        )?;
        Ok(buf)
    }
}

impl crate::jit::JitCompiler for Hiprtc {
    fn id(&self) -> String {
        Hiprtc::id(self)
    }
    fn compile(&self, source: &str, name: &str, arch: &str, options: &[String]) -> Result<Vec<u8>> {
        Hiprtc::compile(self, source, name, arch, options)
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
