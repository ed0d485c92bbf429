//! The disk cache on the HIP backend's compile path (`jit::code_object` with hiprtc for
//! gfx90a): a cold start compiles every built-in kernel once, a warm start compiles
//! nothing, and damaged entries are recompiled, never returned. This is the only test in
//! this binary on purpose: `jit::compilations()` counts for the whole process, and tests
//! in one binary run in parallel threads.

use greta::codegen::{hip, GFX90A};
use greta::kernels::builtins;
use greta::runtime::cache::{cache_key, KernelCache};
use greta::runtime::compile::hiprtc::Hiprtc;
use greta::runtime::compile::CodeObject;
use greta::runtime::compile::JitCompiler;
use greta::runtime::jit;
use greta::runtime::Result;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

const ARCH: &str = "gfx90a";

/// hiprtc with a count of its own compilations, to cross-check the process counter.
struct Counting {
    inner: Hiprtc,
    calls: AtomicU64,
}

impl JitCompiler for Counting {
    fn id(&self) -> String {
        self.inner.id()
    }
    fn compile(
        &self,
        source: &str,
        name: &str,
        arch: &str,
        options: &[String],
    ) -> Result<CodeObject> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.compile(source, name, arch, options)
    }
}

/// One compiled kernel and the cache file that holds it.
#[derive(Debug, PartialEq)]
struct Compiled {
    symbol: String,
    entry: PathBuf,
    code: Vec<u8>,
}

/// Compiles (or reads from `cache`) every variant of every built-in kernel.
fn compile_all(compiler: &Counting, cache: &KernelCache) -> Vec<Compiled> {
    let mut out = Vec::new();
    for k in builtins() {
        for spec in &k.specs(&GFX90A) {
            let ir = (k.def)()
                .specialise(&GFX90A, spec)
                .unwrap_or_else(|e| panic!("{e}"));
            let source = hip::emit(&ir, &GFX90A).unwrap_or_else(|e| panic!("{e}"));
            let key = cache_key(&source, ARCH, &compiler.id(), &[]);
            let code = jit::code_object(&ir, &GFX90A, ARCH, compiler, &[], Some(cache))
                .unwrap_or_else(|e| panic!("{}: {e}", ir.symbol));
            out.push(Compiled {
                symbol: ir.symbol.clone(),
                entry: cache.dir().join(format!("{key}.co")),
                code,
            });
        }
    }
    out
}

/// Runs `f` and returns how many compilations it caused, by the process counter and by
/// the compiler's own count (they must agree).
fn compilations_during<T>(compiler: &Counting, f: impl FnOnce() -> T) -> (u64, T) {
    let (process, own) = (jit::compilations(), compiler.calls.load(Ordering::Relaxed));
    let result = f();
    let process = jit::compilations() - process;
    let own = compiler.calls.load(Ordering::Relaxed) - own;
    assert_eq!(
        process, own,
        "jit::compilations() and the compiler disagree"
    );
    (process, result)
}

#[test]
fn warm_start_compiles_nothing_and_damaged_entries_are_recompiled() {
    let compiler = Counting {
        inner: Hiprtc::load().unwrap_or_else(|e| panic!("hiprtc is not usable: {e}")),
        calls: AtomicU64::new(0),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let cache = KernelCache::at(dir.path());

    let (cold_count, cold) = compilations_during(&compiler, || compile_all(&compiler, &cache));
    let n = cold.len() as u64;
    assert!(n >= 2, "need at least two kernels to damage two entries");
    assert_eq!(cold_count, n, "a cold start compiles each kernel once");
    assert_eq!(cache.stats().expect("stats").entries, n);
    for c in &cold {
        assert!(c.entry.is_file(), "{}: no cache entry", c.symbol);
        assert_eq!(&c.code[..4], b"\x7fELF", "{}: not a code object", c.symbol);
    }

    let (warm_count, warm) = compilations_during(&compiler, || compile_all(&compiler, &cache));
    assert_eq!(warm_count, 0, "a warm start compiles nothing");
    assert_eq!(warm, cold, "a warm start returns the cached code objects");

    // Flip one byte of the first entry's payload; cut the second entry in half.
    let flipped = &cold[0];
    let mut bytes = std::fs::read(&flipped.entry).expect("read entry");
    let middle = bytes.len() - flipped.code.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&flipped.entry, &bytes).expect("write entry");
    let truncated = &cold[1];
    let bytes = std::fs::read(&truncated.entry).expect("read entry");
    std::fs::write(&truncated.entry, &bytes[..bytes.len() / 2]).expect("truncate entry");

    let (repair_count, repaired) =
        compilations_during(&compiler, || compile_all(&compiler, &cache));
    assert_eq!(
        repair_count, 2,
        "exactly the damaged entries are recompiled"
    );
    assert_eq!(
        repaired, cold,
        "damaged entries must never be returned as code"
    );
    for c in [flipped, truncated] {
        let stored = std::fs::read(&c.entry).expect("rewritten entry");
        assert!(
            stored.ends_with(&c.code),
            "{}: entry not rewritten",
            c.symbol
        );
    }

    let (final_count, _) = compilations_during(&compiler, || compile_all(&compiler, &cache));
    assert_eq!(final_count, 0, "the repaired cache is warm again");
}
