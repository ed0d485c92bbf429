//! Mutation fuzzing of the GGUF reader: thousands of damaged files (bit flips, truncations,
//! counts and lengths overwritten with large values) must each be parsed or refused without
//! a panic, and no single allocation may exceed a small multiple of the file size.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use greta::quant::GgmlType;
use llama2::gguf::{Array, Gguf, GgufWriter, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Records the largest allocation made by the current thread while tracking is on, so
/// parallel tests in this binary do not disturb each other's measurement.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let on = TRACKING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only observes sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Parsed structures may take a few times the bytes that encode them (a `String` header per
/// 8-byte length, a `Value` per 13-byte pair); anything beyond this bound is a failure to
/// cap a count read from the file.
fn allocation_bound(file_len: usize) -> usize {
    8 * file_len + (64 << 10)
}

/// Parses `bytes`, checking for panics and oversized allocations; true when accepted.
fn check(bytes: &[u8], what: &dyn Fn() -> String) -> bool {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Gguf::from_bytes("fuzz.gguf", bytes).map(|g| {
            // Touch every view so slicing is exercised on accepted files too.
            g.tensors()
                .zip(g.tensor_infos())
                .all(|(view, info)| view.bytes.len() as u64 == info.size)
        })
    }));
    TRACKING.with(|t| t.set(false));
    let largest = LARGEST.with(Cell::get);
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
