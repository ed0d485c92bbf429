//! Mutation fuzzing of model loading: damaged files (bit flips, truncations, counts and
//! lengths overwritten with large values, and structure-aware rewrites of every count,
//! length, type, dimension and offset, some in multi-hundred-megabyte sparse files) must
//! each load or be refused without a panic, and parsing may neither make one allocation nor
//! hold live memory beyond a small multiple of the file size.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::sync::Arc;
use std::time::{Duration, Instant};

use greta::quant::GgmlType;
use greta::runtime::cpu::{CpuBackend, CpuOptions};
use greta::runtime::Device;
use greta_gguf::{Array, Gguf, GgufWriter, Value};
use llama2::config::LlamaConfig;
use llama2::engine::Engine;
use llama2::genmodel::{Preset, Recipe};
use llama2::tokenizer::{EncodeOptions, Tokenizer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Records, for the current thread while tracking is on, the largest single allocation
/// and the peak of bytes live at once, so parallel tests in this binary do not disturb
/// each other's measurement.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(grow: usize, shrink: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(grow)));
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + grow as isize - shrink as isize);
            let _ = PEAK.try_with(|p| p.set(p.get().max(live.get())));
        });
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only observes sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Starts measuring the current thread's allocations.
fn track() {
    LARGEST.with(|l| l.set(0));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
}

/// Stops measuring; returns the largest allocation and the peak of live bytes.
fn tracked() -> (usize, usize) {
    TRACKING.with(|t| t.set(false));
    (
        LARGEST.with(Cell::get),
        PEAK.with(Cell::get).max(0) as usize,
    )
}

/// Parsed structures may take a few times the bytes that encode them (a `String` header per
/// 8-byte length, a `Value` and an index entry per 14-byte pair); anything beyond this bound
/// is a count read from the file sizing memory.
fn allocation_bound(file_len: usize) -> usize {
    8 * file_len + (64 << 10)
}

/// The bound on bytes live at once while parsing: the parsed structures above, with a
/// growing list's old and new buffers both live while it moves.
fn peak_bound(file_len: usize) -> usize {
    16 * file_len + (256 << 10)
}

/// Parses `bytes`, checking for panics and oversized allocations; true when accepted.
fn check(bytes: &[u8], what: &dyn Fn() -> String) -> bool {
    track();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Gguf::from_bytes("fuzz.gguf", bytes).map(|g| {
            // Touch every view so slicing is exercised on accepted files too.
            g.tensors()
                .zip(g.tensor_infos())
                .all(|(view, info)| view.bytes.len() as u64 == info.size)
        })
    }));
    let (largest, peak) = tracked();
    let accepted = match outcome {
        Err(_) => panic!("parser panicked on {}", what()),
        Ok(Ok(views_ok)) => {
            assert!(views_ok, "tensor view of the wrong size on {}", what());
            true
        }
        Ok(Err(e)) => {
            assert!(e.to_string().starts_with("fuzz.gguf: "), "{e}");
            false
        }
    };
    assert!(
        largest <= allocation_bound(bytes.len()),
        "{largest}-byte allocation for a {}-byte file on {}",
        bytes.len(),
        what()
    );
    assert!(
        peak <= peak_bound(bytes.len()),
        "{peak} bytes live at once for a {}-byte file on {}",
        bytes.len(),
        what()
    );
    accepted
}

/// A small file exercising every metadata type and a few tensor types.
fn synthetic() -> Vec<u8> {
    let mut w = GgufWriter::with_writer("seed.gguf", Vec::new());
    w.add("general.architecture", "llama").unwrap();
    w.add("llama.block_count", 2u32).unwrap();
    w.add("a.i8", -3i8).unwrap();
    w.add("a.u16", 9u16).unwrap();
    w.add("a.i16", -9i16).unwrap();
    w.add("a.i32", -1i32).unwrap();
    w.add("a.f32", 0.5f32).unwrap();
    w.add("a.bool", true).unwrap();
    w.add("a.u64", 1u64 << 40).unwrap();
    w.add("a.i64", -5i64).unwrap();
    w.add("a.f64", 2.5f64).unwrap();
    w.add("a.u8", 1u8).unwrap();
    w.add("tokenizer.ggml.tokens", vec!["<s>", "▁a", "b"])
        .unwrap();
    w.add("tokenizer.ggml.scores", vec![0.0f32, -1.0, -2.0])
        .unwrap();
    w.add(
        "a.nested",
        Array::Array(vec![
            Array::U32(vec![1, 2]),
            Array::String(vec!["x".into()]),
        ]),
    )
    .unwrap();
    w.add("a.empty", Value::from(Vec::<u64>::new())).unwrap();
    let tensors: [(&str, GgmlType, &[u64]); 4] = [
        ("token_embd.weight", GgmlType::Q8_0, &[32, 3]),
        ("norm.weight", GgmlType::F32, &[5]),
        ("blk.0.attn_q.weight", GgmlType::Q4K, &[256, 2]),
        ("blk.0.ffn_up.weight", GgmlType::F16, &[3, 2, 1, 1]),
    ];
    let mut total = 0;
    for (name, ty, dims) in tensors {
        w.add_tensor(name, ty, dims).unwrap();
        total += ty.bytes_for(dims.iter().product()).unwrap() as usize;
    }
    let data: Vec<u8> = (0..total).map(|i| (i * 7) as u8).collect();
    w.write_tensor_data(&data).unwrap();
    w.finish().unwrap()
}

/// Values written over 8 bytes to turn counts and lengths hostile.
const HOSTILE_U64: [u64; 5] = [u64::MAX, 1 << 60, 1 << 32, 0x7fff_ffff, 1 << 20];

/// Runs the mutation classes over `seed`. `offsets` are the positions worth damaging;
/// `flips` random bit flips land in `flip_range`.
fn fuzz(seed: &mut [u8], offsets: &[usize], flips: usize, flip_range: usize, rng: &mut StdRng) {
    let name = |s: String| move || s.clone();
    assert!(check(seed, &name("the unmodified seed".into())));
    for &cut in offsets {
        check(&seed[..cut], &name(format!("truncation at {cut}")));
    }
    for &at in offsets {
        let end = (at + 8).min(seed.len());
        let saved = seed[at..end].to_vec();
        for value in HOSTILE_U64 {
            seed[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            check(seed, &name(format!("u64 {value:#x} at {at}")));
        }
        let random: u64 = rng.gen();
        seed[at..end].copy_from_slice(&random.to_le_bytes()[..end - at]);
        check(seed, &name(format!("u64 {random:#x} at {at}")));
        seed[at..end].copy_from_slice(&saved);
    }
    for _ in 0..flips {
        let at = rng.gen_range(0..flip_range);
        let bit = 1u8 << rng.gen_range(0..8);
        seed[at] ^= bit;
        check(seed, &name(format!("bit flip {bit:#x} at {at}")));
        seed[at] ^= bit;
    }
}

#[test]
fn synthetic_file_survives_every_mutation() {
    let mut seed = synthetic();
    let len = seed.len();
    let every: Vec<usize> = (0..len).collect();
    let mut rng = StdRng::seed_from_u64(0x6767_7566);
    fuzz(&mut seed, &every, 4000, len, &mut rng);
}

#[test]
fn smollm2_header_survives_mutations() {
    let path = common::smollm2_path();
    if !path.is_file() {
        // The synthetic seed always runs; the real model only adds coverage when fetched.
        eprintln!("{} absent: real-model fuzz seed not used", path.display());
        return;
    }
    let mut seed = std::fs::read(&path).unwrap();
    let header = Gguf::from_bytes("seed", &seed[..]).unwrap();
    let data_start = header.data_offset() as usize;
    let len = seed.len();
    drop(header);
    // Damage is interesting near the start (counts, first keys), around the tensor infos
    // and the data section boundary, and at the very end.
    let mut rng = StdRng::seed_from_u64(0x736d_6f6c);
    let mut offsets: Vec<usize> = (0..64).step_by(4).collect();
    offsets.extend([data_start - 1, data_start, data_start + 1, len - 1]);
    offsets.extend((0..6).map(|_| rng.gen_range(data_start - 20_000..data_start)));
    fuzz(&mut seed, &offsets, 12, data_start, &mut rng);
}

/// What a field of a GGUF file holds, for mutations that know the structure.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A u64 element or entry count.
    Count,
    /// A u64 string length.
    Length,
    /// A u32 value or element type id.
    ValueType,
    /// A u32 tensor type id.
    TensorType,
    /// A u32 dimension count.
    DimCount,
    /// A u64 tensor dimension.
    Dim,
    /// A u64 tensor data offset.
    Offset,
    /// A 4-byte metadata value (u32, i32 or f32): shapes, token ids, epsilons.
    Scalar4,
    /// An 8-byte metadata value.
    Scalar8,
}

impl Kind {
    fn width(self) -> usize {
        match self {
            Kind::ValueType | Kind::TensorType | Kind::DimCount | Kind::Scalar4 => 4,
            _ => 8,
        }
    }
}

/// Positions of the structural fields of a valid GGUF file, found by walking it.
struct Fields {
    at: Vec<(usize, Kind)>,
    /// Where the tensor data starts.
    data_start: usize,
}

/// Walks a valid file, recording every count, length, type, dimension and offset (the
/// first and last few elements of long arrays only, so each field class stays sampled).
fn fields(b: &[u8]) -> Fields {
    struct W<'a> {
        b: &'a [u8],
        pos: usize,
        at: Vec<(usize, Kind)>,
    }
    impl W<'_> {
        fn u32(&mut self, kind: Option<Kind>) -> u32 {
            if let Some(k) = kind {
                self.at.push((self.pos, k));
            }
            let v = u32::from_le_bytes(self.b[self.pos..self.pos + 4].try_into().unwrap());
            self.pos += 4;
            v
        }
        fn u64(&mut self, kind: Option<Kind>) -> u64 {
            if let Some(k) = kind {
                self.at.push((self.pos, k));
            }
            let v = u64::from_le_bytes(self.b[self.pos..self.pos + 8].try_into().unwrap());
            self.pos += 8;
            v
        }
        fn string(&mut self, record: bool) {
            let n = self.u64(record.then_some(Kind::Length));
            self.pos += n as usize;
        }
        fn value(&mut self, ty: u32, record: bool) {
            match ty {
                0 | 1 | 7 => self.pos += 1,
                2 | 3 => self.pos += 2,
                4..=6 => {
                    if record {
                        self.at.push((self.pos, Kind::Scalar4));
                    }
                    self.pos += 4
                }
                10..=12 => {
                    if record {
                        self.at.push((self.pos, Kind::Scalar8));
                    }
                    self.pos += 8
                }
                8 => self.string(record),
                9 => {
                    let elem = self.u32(record.then_some(Kind::ValueType));
                    let n = self.u64(record.then_some(Kind::Count));
                    for i in 0..n {
                        self.value(elem, record && (i < 3 || i + 3 >= n));
                    }
                }
                _ => panic!("the seed is valid"),
            }
        }
    }
    let mut w = W {
        b,
        pos: 8,
        at: Vec::new(),
    };
    let n_tensors = w.u64(Some(Kind::Count));
    let n_kv = w.u64(Some(Kind::Count));
    for _ in 0..n_kv {
        w.string(true);
        let ty = w.u32(Some(Kind::ValueType));
        w.value(ty, true);
    }
    for _ in 0..n_tensors {
        w.string(true);
        let dims = w.u32(Some(Kind::DimCount));
        for _ in 0..dims {
            w.u64(Some(Kind::Dim));
        }
        w.u32(Some(Kind::TensorType));
        w.u64(Some(Kind::Offset));
    }
    Fields {
        data_start: w.pos.next_multiple_of(32),
        at: w.at,
    }
}

/// A value for a field of `kind` that held `old`, at `pos` in a file of `len` bytes: edge
/// values, near misses, and counts that scale with the bytes left.
fn hostile_value(kind: Kind, old: u64, pos: usize, len: u64, rng: &mut StdRng) -> u64 {
    let left = len.saturating_sub(pos as u64);
    let scaled = left / [1, 2, 4, 8, 12, 13, 24][rng.gen_range(0..7)];
    const F32_EDGES: [f32; 6] = [f32::NAN, f32::INFINITY, -1.0, 0.0, 1e-30, 3.0e38];
    match (kind, rng.gen_range(0..10)) {
        (Kind::Scalar4, 0..=2) => F32_EDGES[rng.gen_range(0..6)].to_bits() as u64,
        (Kind::Scalar4, 3..=5) => [0, 1, 3, 7, 63, 64, 65, 299, 300, 4096][rng.gen_range(0..10)],
        (Kind::ValueType, 0..=6) => rng.gen_range(0..16),
        (Kind::TensorType, 0..=6) => rng.gen_range(0..48),
        (Kind::DimCount, 0..=6) => rng.gen_range(0..10),
        (_, 0) => 0,
        (_, 1) => old.wrapping_add(1),
        (_, 2) => old.wrapping_sub(1),
        (_, 3) => old.wrapping_mul(2),
        (_, 4) => scaled,
        (_, 5) => scaled + 1,
        (_, 6) => [u64::MAX, 1 << 63, 1 << 32, u32::MAX as u64, 1 << 31][rng.gen_range(0..5)],
        (_, 7) => 1 << rng.gen_range(0..64),
        (_, 8) => len,
        _ => rng.gen(),
    }
}

/// Writes `value` into the field at `pos` (its low bytes for a u32 field).
fn set_field(bytes: &mut [u8], pos: usize, kind: Kind, value: u64) {
    let w = kind.width();
    bytes[pos..pos + w].copy_from_slice(&value.to_le_bytes()[..w]);
}

fn read_field(bytes: &[u8], pos: usize, kind: Kind) -> u64 {
    let mut v = [0u8; 8];
    v[..kind.width()].copy_from_slice(&bytes[pos..pos + kind.width()]);
    u64::from_le_bytes(v)
}

/// One mutant of `seed`: one to three structural fields rewritten, sometimes with a
/// truncation, a spliced byte run or bit flips on top.
fn mutant(seed: &[u8], f: &Fields, rng: &mut StdRng) -> (Vec<u8>, String) {
    let mut b = seed.to_vec();
    let mut what = Vec::new();
    for _ in 0..rng.gen_range(1..=3) {
        let (pos, kind) = f.at[rng.gen_range(0..f.at.len())];
        let v = hostile_value(kind, read_field(&b, pos, kind), pos, b.len() as u64, rng);
        set_field(&mut b, pos, kind, v);
        what.push(format!("{kind:?}@{pos}={v:#x}"));
    }
    match rng.gen_range(0..8) {
        0 => {
            let cut = rng.gen_range(0..=b.len());
            b.truncate(cut);
            what.push(format!("cut@{cut}"));
        }
        1 => {
            let at = rng.gen_range(0..f.data_start);
            let n = rng.gen_range(1..16).min(b.len() - at);
            let junk: Vec<u8> = (0..rng.gen_range(0..16)).map(|_| rng.gen()).collect();
            what.push(format!("splice@{at}-{n}+{}", junk.len()));
            b.splice(at..at + n, junk);
        }
        2 => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..b.len());
                b[at] ^= 1 << rng.gen_range(0..8);
                what.push(format!("flip@{at}"));
            }
        }
        _ => {}
    }
    (b, what.join(" "))
}

/// How far each mutant got through loading.
#[derive(Default, Debug)]
struct Reached {
    parsed: usize,
    config: usize,
    tokenizer: usize,
    uploaded: usize,
}

/// Loads `g` as the command line does: configuration, tokenizer (and one encode), then the
/// weights onto `dev`. Errors are expected; only a panic (caught by the caller) is a bug.
fn load_model<B: AsRef<[u8]>>(g: &Gguf<B>, dev: &Device, reached: &mut Reached) {
    reached.parsed += 1;
    let Ok(config) = LlamaConfig::from_gguf(g) else {
        return;
    };
    reached.config += 1;
    if let Ok(tok) = Tokenizer::from_gguf(g) {
        reached.tokenizer += 1;
        let ids = tok.encode("Hello, world", EncodeOptions::default());
        assert!(ids.iter().all(|&t| (t as usize) < tok.vocab_size()));
    }
    if Engine::new(dev.clone(), g, &config, config.n_ctx.min(16), |_| {}).is_ok() {
        reached.uploaded += 1;
    }
}

/// The seed model: the smallest shape the generator makes, so a mutant costs microseconds.
fn small_model() -> Vec<u8> {
    let config = LlamaConfig {
        n_layer: 1,
        n_embd: 64,
        n_head: 1,
        n_head_kv: 1,
        n_ff: 64,
        n_ctx: 64,
        n_vocab: 300,
        head_dim: 64,
        rope_dim: 64,
        ..Preset::Tiny.config()
    };
    common::generated(config, Recipe::Uniform(GgmlType::Q8_0), 1)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Structure-aware mutants of a whole model, each taken as far through loading as it goes
/// (parse, configuration, tokenizer, weight upload on the CPU backend). Every 500th mutant
/// keeps its header but is extended with zeros to 256 MiB in a sparse file, with a count
/// scaled to that size, and goes through `Gguf::open`. `GRETA_FUZZ_MUTANTS` (default 3000)
/// and `GRETA_FUZZ_SEED` choose the slice; `scripts/fuzz-gguf.sh` runs 100,000 under an
/// address-space limit.
#[test]
fn structure_aware_mutants_load_or_fail_cleanly() {
    let n = env_or("GRETA_FUZZ_MUTANTS", 3000);
    let seed_value = env_or("GRETA_FUZZ_SEED", 0x6767_7566);
    let seed = small_model();
    let f = fields(&seed);
    let dev = Device::from_backend(Arc::new(
        CpuBackend::new(CpuOptions {
            wave: 64,
            trap_non_finite: false,
        })
        .expect("CPU backend"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed_value);
    let mut reached = Reached::default();
    let (mut slowest, mut sparse) = (Duration::ZERO, 0);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        if i % 500 == 499 {
            sparse += 1;
            let mut head = seed[..f.data_start].to_vec();
            let (pos, kind) = f.at[rng.gen_range(0..f.at.len())];
            let len = 256u64 << 20;
            let v = hostile_value(kind, read_field(&head, pos, kind), pos, len, &mut rng);
            set_field(&mut head, pos, kind, v);
            let path = dir.path().join("sparse.gguf");
            std::fs::write(&path, &head).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(len))
                .unwrap();
            let what = format!("mutant {i} (seed {seed_value:#x}): sparse, {kind:?}@{pos}={v:#x}");
            track();
            let outcome = catch_unwind(AssertUnwindSafe(|| Gguf::open(&path)));
            let (_, peak) = tracked();
            assert!(
                peak <= peak_bound(len as usize),
                "{peak} bytes live on {what}"
            );
            match outcome {
                Err(_) => panic!("panic on {what}"),
                Ok(Ok(g)) => {
                    let ok = catch_unwind(AssertUnwindSafe(|| load_model(&g, &dev, &mut reached)));
                    assert!(ok.is_ok(), "panic loading {what}");
                }
                Ok(Err(e)) => assert!(e.to_string().contains("sparse.gguf"), "{e}"),
            }
        } else {
            let (bytes, what) = mutant(&seed, &f, &mut rng);
            let name = || format!("mutant {i} (seed {seed_value:#x}): {what}");
            if check(&bytes, &name) {
                let g = Gguf::from_bytes("fuzz.gguf", bytes).expect("accepted above");
                let ok = catch_unwind(AssertUnwindSafe(|| load_model(&g, &dev, &mut reached)));
                assert!(ok.is_ok(), "panic loading {}", name());
            }
        }
        slowest = slowest.max(t.elapsed());
    }
    eprintln!(
        "{n} mutants ({sparse} sparse 256 MiB files) in {:.1?}: {reached:?}; slowest {slowest:.1?}",
        start.elapsed()
    );
    assert!(
        slowest < Duration::from_secs(10),
        "a mutant took {slowest:?}: a near-hang"
    );
    assert!(
        reached.uploaded > 0,
        "no mutant reached the weight upload: {reached:?}"
    );
}
