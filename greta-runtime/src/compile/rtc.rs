//! The program life cycle NVRTC and hiprtc share: create a program from one translation
//! unit, compile it with options, read the log, take the code, destroy the program. Each
//! library supplies its identity, its options and its five calls; the sequence, the string
//! handling, the error shape and the [`JitCompiler`] implementation live here once.

use super::{CodeObject, JitCompiler};
use crate::error::{Error, Result};
use std::ffi::{c_char, CStr, CString};
use std::sync::Mutex;

/// Held through every compilation of a library that is not safe to call concurrently.
static SERIAL: Mutex<()> = Mutex::new(());

/// The program calls of a run-time compiler library.
///
/// # Safety
/// An implementation must call the library with exactly the arguments it is given, and
/// `code` / `log` must return only bytes the library wrote.
pub unsafe trait ProgramApi: Send + Sync {
    /// The library's program handle.
    type Program: Copy;
    /// The library's name in error messages (`NVRTC`, `hiprtc`).
    const NAME: &'static str;
    /// The source file extension diagnostics name (`cu`, `hip`).
    const EXTENSION: &'static str;
    /// Whether compilations must not overlap (the library keeps process-global state).
    const SERIAL: bool;

    /// Compiler name and version, part of the cache key.
    fn identity(&self) -> String;
    /// The options every compilation for `arch` takes, or why this library cannot compile
    /// for it.
    fn options(&self, arch: &str) -> Result<Vec<String>>;

    /// Creates a program from `source`, named `file` in diagnostics.
    ///
    /// # Safety
    /// Both strings stay valid for the program's lifetime.
    unsafe fn create(
        &self,
        source: &CStr,
        file: &CStr,
    ) -> std::result::Result<Self::Program, String>;
    /// Compiles the program; on failure, the library's description of the status.
    ///
    /// # Safety
    /// `program` is live; `options` point to NUL-terminated strings.
    unsafe fn compile(
        &self,
        program: Self::Program,
        options: &[*const c_char],
    ) -> std::result::Result<(), String>;
    /// The compiler's log, empty when the library has none to give.
    ///
    /// # Safety
    /// `program` is live.
    unsafe fn log(&self, program: Self::Program) -> String;
    /// The compiled code.
    ///
    /// # Safety
    /// `program` compiled successfully.
    unsafe fn code(&self, program: Self::Program) -> std::result::Result<Vec<u8>, String>;
    /// Releases the program.
    ///
    /// # Safety
    /// `program` is live and not used afterwards.
    unsafe fn destroy(&self, program: Self::Program);
}

impl<A: ProgramApi> JitCompiler for A {
    fn id(&self) -> String {
        self.identity()
    }

    /// A compile error carries the compiler's log, which cites DSL files and lines through
    /// the source's `#line` directives.
    fn compile(
        &self,
        source: &str,
        name: &str,
        arch: &str,
        extra: &[String],
    ) -> Result<CodeObject> {
        let mut options = self.options(arch)?;
        options.extend(extra.iter().cloned());
        let file = format!("{name}.{}", A::EXTENSION);
        let _serial = A::SERIAL.then(|| SERIAL.lock().unwrap_or_else(|p| p.into_inner()));
        run(self, source, name, &file, arch, &options)
    }
}

/// Compiles `source` (kernel `name`, shown as `file` in diagnostics) for `arch` with
/// `options`.
fn run<A: ProgramApi>(
    api: &A,
    source: &str,
    name: &str,
    file: &str,
    arch: &str,
    options: &[String],
) -> Result<CodeObject> {
    let fail = |log: String| Error::Compile {
        kernel: name.to_string(),
        target: arch.to_string(),
        log,
    };
    let c_string = |s: &str, what: &str| {
        CString::new(s).map_err(|_| fail(format!("{what} contains a NUL byte: {s:?}")))
    };
    let source = c_string(source, "the source")?;
    let file = c_string(file, "the file name")?;
    let options: Vec<CString> = options
        .iter()
        .map(|o| c_string(o, "an option"))
        .collect::<Result<_>>()?;
    let pointers: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
    let backend =
        |what: &str, why: String| Error::Backend(format!("{} {what} failed: {why}", A::NAME));
    // SAFETY: every string is NUL-terminated and outlives the program, which is destroyed
    // on every path after its creation succeeded.
    unsafe {
        let program = api
            .create(&source, &file)
            .map_err(|why| backend("program creation", why))?;
        let status = api.compile(program, &pointers);
        let log = api.log(program);
        let result = match status {
            Ok(()) => api
                .code(program)
                .map(|bytes| CodeObject { bytes, log })
                .map_err(|why| backend("code retrieval", why)),
            Err(why) if log.trim().is_empty() => Err(fail(why)),
            Err(_) => Err(fail(log)),
        };
        api.destroy(program);
        result
    }
}

/// Reads a buffer the libraries hand out in two calls, its size then its bytes.
pub(super) fn sized_bytes(
    size: impl FnOnce(&mut usize) -> bool,
    fill: impl FnOnce(*mut c_char) -> bool,
) -> Option<Vec<u8>> {
    let mut len = 0usize;
    if !size(&mut len) {
        return None;
    }
    let mut buf = vec![0u8; len];
    fill(buf.as_mut_ptr().cast()).then_some(buf)
}

/// A log buffer as text, up to its terminating NUL.
pub(super) fn log_text(buf: Option<Vec<u8>>) -> String {
    let buf = buf.unwrap_or_default();
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
