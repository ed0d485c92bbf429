//! The CPU backend against plain-Rust references: built-in kernels and small test kernels
//! at wave 64 (gfx942) and 32 (sm_90), and the checks a GPU does not make.

use greta::half::f16;
use greta::kernels::{elementwise, gemv, norm};
use greta::prelude::*;
use greta::runtime::cpu::{CpuBackend, CpuOptions};
use greta::runtime::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const WAVES: [u32; 2] = [64, 32];

fn device_with(options: CpuOptions) -> Device {
    Device::from_backend(Arc::new(
        CpuBackend::new(options).expect("wave 64 and 32 are supported"),
    ))
}

fn device(wave: u32) -> Device {
    device_with(CpuOptions {
        wave,
        ..CpuOptions::default()
    })
}

fn random_f32(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
}

/// Largest relative error of `got` against `want`, relative to the largest `want`.
fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / scale)
        .fold(0.0, f64::max)
}

/// The line of this file holding `// mark: NAME`: where an error must point.
fn line_of(name: &str) -> usize {
    let marker = format!("// mark: {name}");
    let src = include_str!("cpu_backend.rs");
    let mut found = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with(&marker));
    let (i, _) = found.next().expect("marker present");
    assert!(found.next().is_none(), "marker `{name}` is unique");
    i + 1
}

/// The message of an execution error, which must name `symbol`.
fn execution_error(r: Result<(), Error>, symbol: &str) -> String {
    match r {
        Err(Error::Execution { kernel, message }) => {
            assert_eq!(kernel, symbol);
            message
        }
        other => panic!("expected an execution error from `{symbol}`, got {other:?}"),
    }
}

fn gemv_case(rows: usize, cols: usize, seed: u64) -> (Vec<f16>, Vec<f32>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w: Vec<f16> = (0..rows * cols)
        .map(|_| f16::from_f32(rng.gen_range(-1.0..1.0)))
        .collect();
    let x = random_f32(&mut rng, cols);
    let want = (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| w[r * cols + c].to_f64() * x[c] as f64)
                .sum()
        })
        .collect();
    (w, x, want)
}

/// CPU time this process has used so far, in milliseconds (Linux: utime + stime from
/// /proc/self/stat). Unlike wall time it does not grow when other processes share the cores.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks * 10.0
}

/// Times the 4096x4096 f16 GEMV of docs/perf.md; run with `--release --ignored`.
#[test]
#[ignore]
fn gemv_f16_4096_timing() {
    let n = 4096usize;
    let (w, x, want) = gemv_case(n, n, 4);
    let dev = device(64);
    let wb = dev.upload(&w).unwrap();
    let xb = dev.upload(&x).unwrap();
    let mut yb = dev.alloc::<f32>(n).unwrap();
    let grid = (n / 4) as u32;
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let before = cpu_ms();
        let ms = dev
            .time(|d| gemv::gemv_f16::launch::<256>(d, grid, &wb, &xb, &mut yb, n as u32, n as u32))
            .unwrap();
        wall = wall.min(ms);
        cpu = cpu.min(cpu_ms() - before);
    }
    let err = max_rel_err(&dev.download(&yb).unwrap(), &want);
    assert!(err < 1e-4, "error {err}");
    println!(
        "gemv_f16 {n}x{n}, block 256, wave 64, best of 5: {wall:.0} ms wall, {cpu:.0} ms CPU time, on {}",
        dev.describe()
    );
    assert!(wall < 2000.0, "{wall} ms");
}

#[test]
fn add_f32_and_f16_round_like_the_gpu() {
    let n = 1000usize;
    let mut rng = StdRng::seed_from_u64(5);
    let a = random_f32(&mut rng, n);
    let b = random_f32(&mut rng, n);
    let ah: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
    let bh: Vec<f16> = b.iter().map(|&v| f16::from_f32(v)).collect();
    for wave in WAVES {
        let dev = device(wave);
        let (xa, xb) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
        let mut out = dev.alloc::<f32>(n).unwrap();
        elementwise::add::launch::<f32>(&dev, 4, &xa, &xb, &mut out, n as u32).unwrap();
        let got = dev.download(&out).unwrap();
        for i in 0..n {
            assert_eq!(got[i], a[i] + b[i]);
        }
        let (ha, hb) = (dev.upload(&ah).unwrap(), dev.upload(&bh).unwrap());
        let mut hout = dev.upload(&vec![f16::ZERO; n]).unwrap();
        elementwise::add::launch::<f16>(&dev, 4, &ha, &hb, &mut hout, n as u32).unwrap();
        let got = dev.download(&hout).unwrap();
        for i in 0..n {
            assert_eq!(got[i], f16::from_f32(ah[i].to_f32() + bh[i].to_f32()));
        }
    }
}

/// `k` if `v` is even, else a value of `v`: returns under divergence.
#[greta::device]
fn pick(v: u32, k: u32) -> u32 {
    if v % 2 == 0 {
        return k;
    }
    v % 7 + 1
}

/// Per-lane trip counts with `break` and `continue`, a divergent device-function return,
/// and early returns.
#[greta::kernel(block = 64)]
fn divergent(x: &[u32], y: &mut [u32], n: u32) {
    let i = block_idx() * BLOCK + thread_idx();
    if i >= n {
        return;
    }
    let v = x[i];
    let limit = v % 17;
    let mut acc = 0u32;
    let mut k = 0u32;
    while k < 100 {
        k += 1;
        if k > limit {
            break;
        }
        if k % 3 == 0 {
            continue;
        }
        acc += k * pick(v, k);
    }
    for j in (v % 5..9).step_by(2) {
        acc ^= j << 3;
    }
    if acc % 5 == 0 {
        y[i] = 7777;
        return;
    }
    y[i] = acc;
}

fn divergent_reference(v: u32) -> u32 {
    let pick = |v: u32, k: u32| if v.is_multiple_of(2) { k } else { v % 7 + 1 };
    let mut acc = 0u32;
    for k in 1..=(v % 17) {
        if k % 3 != 0 {
            acc = acc.wrapping_add(k * pick(v, k));
        }
    }
    for j in (v % 5..9).step_by(2) {
        acc ^= j << 3;
    }
    if acc.is_multiple_of(5) {
        7777
    } else {
        acc
    }
}

#[test]
fn divergent_control_flow_matches_reference() {
    let n = 1000usize;
    let mut rng = StdRng::seed_from_u64(6);
    let x: Vec<u32> = (0..n).map(|_| rng.gen()).collect();
    let want: Vec<u32> = x.iter().map(|&v| divergent_reference(v)).collect();
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut yb = dev.upload(&vec![u32::MAX; n + 24]).unwrap();
        divergent::launch(&dev, 16, &xb, &mut yb, n as u32).unwrap();
        let got = dev.download(&yb).unwrap();
        assert_eq!(&got[..n], &want[..], "wave {wave}");
        assert!(
            got[n..].iter().all(|&v| v == u32::MAX),
            "returned lanes store nothing"
        );
    }
}

/// Reverses each block's slice through shared memory: threads read what other waves wrote.
#[greta::kernel(block = 128)]
fn reverse_block(x: &[f32], y: &mut [f32]) {
    let tile = shared!([f32; 128]);
    let base = block_idx() * BLOCK;
    let t = thread_idx();
    tile[t] = x[base + t];
    barrier();
    y[base + t] = tile[BLOCK - 1 - t];
}

#[test]
fn shared_memory_and_barriers_connect_waves() {
    let mut rng = StdRng::seed_from_u64(7);
    let x = random_f32(&mut rng, 128 * 3);
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut yb = dev.alloc::<f32>(x.len()).unwrap();
        reverse_block::launch(&dev, 3, &xb, &mut yb).unwrap();
        let got = dev.download(&yb).unwrap();
        for (b, chunk) in got.chunks(128).enumerate() {
            let mut want = x[b * 128..][..128].to_vec();
            want.reverse();
            assert_eq!(chunk, &want[..], "wave {wave}");
        }
    }
}

/// Reverses the first `HALF` values of each group of `G` through shared memory sized by
/// kernel constants, and copies the rest: `const` items name a value once for a shared
/// array's length and a condition.
#[greta::kernel(block = 128)]
fn reverse_halves<const G: u32>(x: &[f32], y: &mut [f32]) {
    const HALF: u32 = G / 2;
    const GROUPS: u32 = BLOCK / G;
    let tile = shared!([f32; GROUPS * HALF]);
    let t = thread_idx();
    let g = t / G;
    let j = t % G;
    if j < HALF {
        tile[g * HALF + j] = x[t];
    }
    barrier();
    y[t] = if j < HALF {
        tile[g * HALF + HALF - 1 - j]
    } else {
        x[t]
    };
}

#[test]
fn const_items_size_shared_memory_and_decide_conditions() {
    let mut rng = StdRng::seed_from_u64(8);
    let x = random_f32(&mut rng, 128);
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut yb = dev.alloc::<f32>(x.len()).unwrap();
        reverse_halves::launch::<32>(&dev, 1, &xb, &mut yb).unwrap();
        let got = dev.download(&yb).unwrap();
        for (g, chunk) in got.chunks(32).enumerate() {
            let mut want = x[g * 32..][..16].to_vec();
            want.reverse();
            want.extend_from_slice(&x[g * 32 + 16..][..16]);
            assert_eq!(chunk, &want[..], "wave {wave}, group {g}");
        }
    }
    let spec = reverse_halves::Spec { g: 32 }.values();
    let ir = reverse_halves::definition()
        .specialise(&greta::codegen::SM90, &spec)
        .unwrap();
    assert_eq!(ir.layout.declared_bytes, 4 * 4 * 16);
    let src = greta::codegen::hip::emit(&ir, &greta::codegen::SM90).unwrap();
    assert!(src.contains("static constexpr u32 HALF = 16u;"), "{src}");
    assert!(src.contains("static constexpr u32 GROUPS = 4u;"), "{src}");
}

/// A barrier after some threads returned: the waves' remaining threads still meet.
#[greta::kernel(block = 64)]
fn barrier_after_exit(x: &[f32], y: &mut [f32]) {
    let tile = shared!([f32; 64]);
    let t = thread_idx();
    if t >= 48 {
        return;
    }
    if t % 2 == 0 {
        tile[t] = x[t];
    } else {
        tile[t] = -x[t];
    }
    barrier();
    y[t] = tile[47 - t];
}

#[test]
fn barriers_wait_for_live_threads_only() {
    let x: Vec<f32> = (0..64).map(|i| i as f32 + 0.5).collect();
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut yb = dev.upload(&[0.0f32; 64]).unwrap();
        barrier_after_exit::launch(&dev, 1, &xb, &mut yb).unwrap();
        let got = dev.download(&yb).unwrap();
        for (t, &g) in got.iter().enumerate() {
            let s = 47usize.wrapping_sub(t);
            let want = match t {
                48.. => 0.0,
                _ if s.is_multiple_of(2) => x[s],
                _ => -x[s],
            };
            assert_eq!(g, want, "wave {wave}, thread {t}");
        }
    }
}

/// A wave sum written for 32-lane warps: right on sm_90, wrong at wave 64.
#[greta::kernel(block = 64)]
fn sum_written_for_32(x: &[f32], y: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    let mut v = x[i];
    v += shfl_xor(v, 16);
    v += shfl_xor(v, 8);
    v += shfl_xor(v, 4);
    v += shfl_xor(v, 2);
    v += shfl_xor(v, 1);
    if lane_id() == 0 {
        y[i / 32] = v;
    }
}

#[test]
fn a_reduction_written_for_32_lanes_fails_at_wave_64() {
    let mut rng = StdRng::seed_from_u64(8);
    let x: Vec<f32> = (0..256).map(|_| rng.gen_range(1..10) as f32).collect();
    let want: Vec<f32> = x.chunks(32).map(|c| c.iter().sum()).collect();
    let run = |wave| {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut yb = dev.upload(&[-1.0f32; 8]).unwrap();
        sum_written_for_32::launch(&dev, 4, &xb, &mut yb).unwrap();
        dev.download(&yb).unwrap()
    };
    assert_eq!(run(32), want);
    let at64 = run(64);
    assert_ne!(at64, want);
    assert_eq!(at64[1], -1.0, "lane 32 of a 64-lane wave is not lane 0");
}

/// Ballots, wave reductions over full and partial masks, and broadcasts.
#[greta::kernel(block = 128)]
fn wave_ops(x: &[i32], out: &mut [i32], bits: &mut [u64]) {
    let i = block_idx() * BLOCK + thread_idx();
    let v = x[i];
    let b = ballot(v > 0);
    let mx = wave_max(v);
    let first = shfl(v, 0);
    let mut partial = 0;
    if v > 0 {
        partial = wave_sum(v);
    }
    out[4 * i] = mx;
    out[4 * i + 1] = first;
    out[4 * i + 2] = partial;
    out[4 * i + 3] = wave_id() as i32 * 1000 + lane_id() as i32;
    if lane_id() == 0 {
        bits[i / WAVE] = b;
    }
}

#[test]
fn wave_operations_use_the_target_width() {
    let n = 256usize;
    let mut rng = StdRng::seed_from_u64(9);
    let x: Vec<i32> = (0..n).map(|_| rng.gen_range(-100..100)).collect();
    for wave in WAVES {
        let w = wave as usize;
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut out = dev.alloc::<i32>(4 * n).unwrap();
        let mut bits = dev.alloc::<u64>(n / w).unwrap();
        wave_ops::launch(&dev, 2, &xb, &mut out, &mut bits).unwrap();
        let got = dev.download(&out).unwrap();
        let got_bits = dev.download(&bits).unwrap();
        for (wi, chunk) in x.chunks(w).enumerate() {
            let mx = *chunk.iter().max().unwrap();
            let pos: i32 = chunk.iter().filter(|&&v| v > 0).sum();
            let ballot = chunk
                .iter()
                .enumerate()
                .fold(0u64, |m, (l, &v)| m | ((v > 0) as u64) << l);
            assert_eq!(got_bits[wi], ballot, "wave {wave}");
            for (l, &v) in chunk.iter().enumerate() {
                let i = wi * w + l;
                let expect_partial = if v > 0 { pos } else { 0 };
                let id = ((i % 128) / w * 1000 + l) as i32;
                assert_eq!(
                    &got[4 * i..4 * i + 4],
                    &[mx, chunk[0], expect_partial, id],
                    "wave {wave}, thread {i}"
                );
            }
        }
    }
}

/// Wide loads and stores, bitcasts between vector shapes, register arrays.
#[greta::kernel(block = 64)]
fn vectors(w: &[u32], y: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    let raw = w.load_vec::<4>(i);
    let h = bitcast::<f16x8>(raw);
    let mut acc = [0.0; 4];
    for k in 0..4 {
        acc[k] = (h[2 * k] as f32) + (h[2 * k + 1] as f32);
    }
    let mut out = f32x4::splat(0.0);
    for k in 0..4 {
        out[k] = acc[3 - k];
    }
    y.store_vec(i, out);
}

#[test]
fn vectors_and_bitcasts_keep_byte_order() {
    let n = 128usize;
    let mut rng = StdRng::seed_from_u64(10);
    let h: Vec<f16> = (0..8 * n)
        .map(|_| f16::from_f32(rng.gen_range(-4.0..4.0)))
        .collect();
    let words: Vec<u32> = h
        .chunks(2)
        .map(|p| p[0].to_bits() as u32 | (p[1].to_bits() as u32) << 16)
        .collect();
    let mut want = vec![0f32; 4 * n];
    for i in 0..n {
        for k in 0..4 {
            want[4 * i + k] = h[8 * i + 2 * (3 - k)].to_f32() + h[8 * i + 2 * (3 - k) + 1].to_f32();
        }
    }
    for wave in WAVES {
        let dev = device(wave);
        let wb = dev.upload(&words).unwrap();
        let mut yb = dev.alloc::<f32>(4 * n).unwrap();
        vectors::launch(&dev, 2, &wb, &mut yb).unwrap();
        assert_eq!(dev.download(&yb).unwrap(), want, "wave {wave}");
    }
}

/// `&&` and `if`-values evaluate their right side only where needed, and atomics count
/// across blocks running in parallel.
#[greta::kernel(block = 64)]
fn count_positive(x: &[f32], count: &mut [u32], stats: &mut [f32], hist: &mut [u32], n: u32) {
    let i = block_idx() * BLOCK + thread_idx();
    if i < n && x[i] > 0.0 {
        count.atomic_add(0, 1u32);
    }
    let v = if i < n { x[i] } else { 0.0 };
    stats.atomic_max(0, v);
    stats.atomic_add(1, (v as i32) as f32);
    if i < n {
        let bucket = (v as i32 + 8) as u32;
        hist.atomic_add(bucket, 1u32);
    }
}

#[test]
fn short_circuits_and_atomics() {
    let n = 10_000usize;
    let mut rng = StdRng::seed_from_u64(11);
    let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-8.0f32..8.0)).collect();
    let positive = x.iter().filter(|&&v| v > 0.0).count() as u32;
    let max = x.iter().fold(0f32, |m, &v| m.max(v));
    let sum: f32 = x.iter().map(|&v| (v as i32) as f32).sum();
    let mut hist = vec![0u32; 17];
    for &v in &x {
        hist[(v as i32 + 8) as usize] += 1;
    }
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut count = dev.upload(&[0u32]).unwrap();
        let mut stats = dev.upload(&[-1.0f32, 0.0]).unwrap();
        let mut hb = dev.upload(&[0u32; 17]).unwrap();
        let grid = n.div_ceil(64) as u32;
        count_positive::launch(&dev, grid, &xb, &mut count, &mut stats, &mut hb, n as u32).unwrap();
        assert_eq!(dev.download(&count).unwrap(), [positive]);
        assert_eq!(dev.download(&stats).unwrap(), [max, sum]);
        assert_eq!(dev.download(&hb).unwrap(), hist);
    }
}

#[test]
fn graph_replay_and_parallel_blocks_are_deterministic() {
    let (rows, n) = (64usize, 512usize);
    let mut rng = StdRng::seed_from_u64(12);
    let x = random_f32(&mut rng, rows * n);
    let w = random_f32(&mut rng, n);
    let dev = device(64);
    let xb = dev.upload(&x).unwrap();
    let wb = dev.upload(&w).unwrap();
    let mut yb = dev.alloc::<f32>(rows * n).unwrap();
    norm::rmsnorm::launch::<f32, 256>(&dev, rows as u32, &xb, &wb, &mut yb, n as u32, 1e-6)
        .unwrap();
    let first = dev.download(&yb).unwrap();
    let mut y2 = dev.alloc::<f32>(rows * n).unwrap();
    let graph = dev
        .capture(|d| {
            norm::rmsnorm::launch::<f32, 256>(d, rows as u32, &xb, &wb, &mut y2, n as u32, 1e-6)
        })
        .unwrap();
    assert_eq!(graph.launches(), 1);
    dev.replay(&graph).unwrap();
    let replayed = dev.download(&y2).unwrap();
    assert!(first
        .iter()
        .zip(&replayed)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[greta::kernel(block = 64)]
fn oob_store(y: &mut [f32], n: u32) {
    let i = block_idx() * BLOCK + thread_idx();
    y[i] = n as f32; // mark: oob-store
}

#[test]
fn out_of_bounds_store_names_line_block_and_thread() {
    for wave in WAVES {
        let dev = device(wave);
        let mut y = dev.alloc::<f32>(100).unwrap();
        // Blocks 1 to 4 all fail; the lowest is reported, whichever finished first.
        for _ in 0..5 {
            let msg = execution_error(oob_store::launch(&dev, 5, &mut y, 100), "oob_store");
            assert_eq!(
                msg,
                format!(
                    "tests/cpu_backend.rs:{}: block 1, thread 36: store to `y`[100] out of bounds (length 100)",
                    line_of("oob-store")
                )
            );
        }
    }
}

#[greta::kernel(block = 64)]
fn divergent_barrier(y: &mut [f32]) {
    let t = thread_idx();
    if t < 16 {
        barrier(); // mark: divergent-barrier
    }
    y[t] = 1.0;
}

#[greta::kernel(block = 128)]
fn split_barriers(y: &mut [f32]) {
    let t = thread_idx();
    if wave_id() == 0 {
        barrier();
    } else {
        barrier(); // mark: second-barrier
    }
    y[t] = 1.0;
}

#[greta::kernel(block = 128)]
fn exit_then_block_sum(x: &[f32], y: &mut [f32]) {
    let t = thread_idx();
    if t >= 64 {
        return;
    }
    y[t] = block_sum(x[t]); // mark: block-sum
}

#[test]
fn barriers_under_divergence_are_errors() {
    for wave in WAVES {
        let dev = device(wave);
        let mut y = dev.alloc::<f32>(128).unwrap();
        let msg = execution_error(
            divergent_barrier::launch(&dev, 1, &mut y),
            "divergent_barrier",
        );
        let line = line_of("divergent-barrier");
        assert!(
            msg.starts_with(&format!("tests/cpu_backend.rs:{line}: block 0, thread 16: barrier reached under divergent control flow")),
            "{msg}"
        );
        let msg = execution_error(split_barriers::launch(&dev, 1, &mut y), "split_barriers");
        assert!(
            msg.starts_with(&format!(
                "tests/cpu_backend.rs:{}: block 0: wave 1 waits at this barrier while wave 0 waits at the one at tests/cpu_backend.rs:{}",
                line_of("second-barrier"),
                line_of("second-barrier") - 2
            )),
            "{msg}"
        );
        let x = dev.upload(&[1.0f32; 128]).unwrap();
        let msg = execution_error(
            exit_then_block_sum::launch(&dev, 1, &x, &mut y),
            "exit_then_block_sum",
        );
        assert!(
            msg.starts_with(&format!(
                "tests/cpu_backend.rs:{}: block 0: wave ",
                line_of("block-sum")
            )) && msg.contains("has exited"),
            "{msg}"
        );
    }
}

#[greta::kernel(block = 64)]
fn take_log(x: &[f32], y: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    let v = log(x[i]);
    y[i] = v; // mark: nan-store
}

#[greta::kernel(block = 64)]
fn accumulate(x: &[f32], total: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    total.atomic_add(0, x[i]); // mark: nan-atomic
}

#[test]
fn non_finite_stores_are_trapped_on_request() {
    let mut x = vec![2.0f32; 128];
    x[70] = -1.0;
    let trap = device_with(CpuOptions {
        wave: 64,
        trap_non_finite: true,
    });
    let xb = trap.upload(&x).unwrap();
    let mut yb = trap.alloc::<f32>(128).unwrap();
    let msg = execution_error(take_log::launch(&trap, 2, &xb, &mut yb), "take_log");
    assert_eq!(
        msg,
        format!(
            "tests/cpu_backend.rs:{}: block 1, thread 6: stored the non-finite value NaN to `y`[70]",
            line_of("nan-store")
        )
    );
    let mut total = trap.upload(&[0.0f32]).unwrap();
    let big = trap.upload(&[3e38f32; 128]).unwrap();
    let msg = execution_error(accumulate::launch(&trap, 1, &big, &mut total), "accumulate");
    assert_eq!(
        msg,
        format!(
            "tests/cpu_backend.rs:{}: block 0, thread 1: an atomic stored the non-finite value inf to `total`[0]",
            line_of("nan-atomic")
        )
    );
    let plain = device(64);
    let xb = plain.upload(&x).unwrap();
    let mut yb = plain.alloc::<f32>(128).unwrap();
    take_log::launch(&plain, 2, &xb, &mut yb).unwrap();
    assert!(plain.download(&yb).unwrap()[70].is_nan());
}

#[greta::kernel(block = 64)]
fn uninit_shared(y: &mut [f32]) {
    let tile = shared!([f32; 64]);
    let t = thread_idx();
    if t < 32 {
        tile[t] = 1.0;
    }
    barrier();
    y[t] = tile[63 - t]; // mark: uninit-read
}

#[test]
fn reads_of_unwritten_shared_memory_are_errors() {
    for wave in WAVES {
        let dev = device(wave);
        let mut y = dev.alloc::<f32>(64).unwrap();
        let msg = execution_error(uninit_shared::launch(&dev, 1, &mut y), "uninit_shared");
        assert!(
            msg.starts_with(&format!(
                "tests/cpu_backend.rs:{}: block 0, thread 0: read of shared `tile`[63] before any thread wrote it",
                line_of("uninit-read")
            )),
            "{msg}"
        );
    }
}

#[greta::kernel(block = 64)]
fn shfl_inactive(x: &[f32], y: &mut [f32]) {
    let t = thread_idx();
    let mut v = x[t];
    if t < 32 {
        v = shfl(v, t + 32); // mark: shfl-inactive
    }
    y[t] = v;
}

#[test]
fn shuffles_from_inactive_lanes_are_errors() {
    let line = line_of("shfl-inactive");
    for (wave, why) in [
        (64, "shfl reads lane 32, which is inactive here"),
        (32, "shfl reads lane 32, outside the 32-lane wave"),
    ] {
        let dev = device(wave);
        let x = dev.upload(&[1.0f32; 64]).unwrap();
        let mut y = dev.alloc::<f32>(64).unwrap();
        let msg = execution_error(shfl_inactive::launch(&dev, 1, &x, &mut y), "shfl_inactive");
        assert!(
            msg.starts_with(&format!(
                "tests/cpu_backend.rs:{line}: block 0, thread 0: {why}"
            )),
            "{msg}"
        );
    }
}

#[greta::kernel(block = 64)]
fn divide(x: &[u32], d: &[u32], y: &mut [u32], guarded: u32) {
    let t = block_idx() * BLOCK + thread_idx();
    if guarded == 0 || d[t] != 0 {
        y[t] = x[t] / d[t]; // mark: div
    }
}

#[test]
fn integer_division_by_zero_is_an_error_on_active_lanes_only() {
    let x: Vec<u32> = (0..64).map(|i| i * 10).collect();
    let mut d = vec![3u32; 64];
    d[5] = 0;
    let dev = device(64);
    let (xb, db) = (dev.upload(&x).unwrap(), dev.upload(&d).unwrap());
    let mut y = dev.upload(&[0u32; 64]).unwrap();
    let msg = execution_error(divide::launch(&dev, 1, &xb, &db, &mut y, 0), "divide");
    assert_eq!(
        msg,
        format!(
            "tests/cpu_backend.rs:{}: block 0, thread 5: integer division by zero (u32)",
            line_of("div")
        )
    );
    divide::launch(&dev, 1, &xb, &db, &mut y, 1).unwrap();
    let got = dev.download(&y).unwrap();
    assert_eq!(got[5], 0);
    assert_eq!(got[6], 20);
}

/// Sums `n` values of `src` from `at`: a buffer passed to a device function.
#[greta::device]
fn span_sum(src: &[f32], at: u32, n: u32) -> f32 {
    let mut s = 0.0;
    for i in at..at + n {
        s += src[i];
    }
    s
}

/// Writes through a memory parameter, then calls another device function.
#[greta::device]
fn put_sum(dst: &mut [f32], src: &[f32], i: u32) {
    dst[i] = span_sum(src, i, 4);
}

#[greta::kernel(block = 64)]
fn through_device_fns(x: &[f32], y: &mut [f32]) {
    let tile = shared!([f32; 64]);
    let t = thread_idx();
    put_sum(tile, x, t);
    barrier();
    y[t] = tile[(t + 1) % 64];
}

#[test]
fn device_functions_take_buffers_and_shared_arrays() {
    let mut rng = StdRng::seed_from_u64(13);
    let x: Vec<f32> = (0..67).map(|_| rng.gen_range(1..100) as f32).collect();
    let want: Vec<f32> = (0..64)
        .map(|t| {
            let s = (t + 1) % 64;
            x[s..s + 4].iter().sum()
        })
        .collect();
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut yb = dev.alloc::<f32>(64).unwrap();
        through_device_fns::launch(&dev, 1, &xb, &mut yb).unwrap();
        assert_eq!(dev.download(&yb).unwrap(), want, "wave {wave}");
    }
}

/// Packed f16 multiply-adds, as the few-row products scale weight levels with them.
#[greta::kernel(block = 64)]
fn packed_halves(a: &[u32], b: &[u32], c: &[u32], y: &mut [u32]) {
    let i = block_idx() * BLOCK + thread_idx();
    y[i] = hfma2(a[i], b[i], c[i]);
}

#[test]
fn packed_half_multiply_adds_round_each_half_once() {
    let n = 128usize;
    let mut rng = StdRng::seed_from_u64(15);
    let word = |rng: &mut StdRng| {
        let h = |rng: &mut StdRng| f16::from_f32(rng.gen_range(-300.0f32..300.0)).to_bits() as u32;
        h(rng) | h(rng) << 16
    };
    let (a, b, c): (Vec<u32>, Vec<u32>, Vec<u32>) = (
        (0..n).map(|_| word(&mut rng)).collect(),
        (0..n).map(|_| word(&mut rng)).collect(),
        (0..n).map(|_| word(&mut rng)).collect(),
    );
    // Per half: the exact product and sum (in f64: 22-bit products, small exponents), one
    // rounding to f16.
    let want: Vec<u32> = (0..n)
        .map(|i| {
            let half = |w: u32, k: u32| f16::from_bits((w >> (16 * k)) as u16).to_f64();
            (0..2u32).fold(0, |out, k| {
                let r = f16::from_f64(half(a[i], k) * half(b[i], k) + half(c[i], k));
                out | (r.to_bits() as u32) << (16 * k)
            })
        })
        .collect();
    for wave in WAVES {
        let dev = device(wave);
        let (ab, bb, cb) = (
            dev.upload(&a).unwrap(),
            dev.upload(&b).unwrap(),
            dev.upload(&c).unwrap(),
        );
        let mut yb = dev.alloc::<u32>(n).unwrap();
        packed_halves::launch(&dev, 2, &ab, &bb, &cb, &mut yb).unwrap();
        assert_eq!(dev.download(&yb).unwrap(), want, "wave {wave}");
    }
}

#[test]
fn write_all_fills_every_buffer_or_none() {
    let dev = device(32);
    let mut x = dev.upload(&[0u32; 8]).unwrap();
    let mut y = dev.upload(&[0u32; 4]).unwrap();
    dev.write_all(&mut [(&mut x, 2, &[1, 2, 3][..]), (&mut y, 0, &[9, 8, 7, 6])])
        .unwrap();
    assert_eq!(dev.download(&x).unwrap(), [0, 0, 1, 2, 3, 0, 0, 0]);
    assert_eq!(dev.download(&y).unwrap(), [9, 8, 7, 6]);
    // One write past the end refuses all of them, before any is made.
    let err = dev
        .write_all(&mut [(&mut x, 0, &[5][..]), (&mut y, 2, &[1, 1, 1])])
        .unwrap_err();
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err}");
    assert_eq!(dev.download(&x).unwrap(), [0, 0, 1, 2, 3, 0, 0, 0]);
}

/// Nibbles, sign extension, 64-bit shifts and dp4a, as quantised kernels use them.
#[greta::kernel(block = 64)]
fn bytes_and_bits(q: &[u8], s: &[i8], packed: &[i32], y: &mut [i32], wide: &mut [u64]) {
    let i = block_idx() * BLOCK + thread_idx();
    let b = q[i] as u32;
    let lo = (b & 0xF) as i32 - 8;
    let hi = (b >> 4) as i32 - 8;
    let sv = s[i] as i32;
    y[4 * i] = lo * hi;
    y[4 * i + 1] = dp4a(packed[i], packed[i + 1], sv);
    y[4 * i + 2] = sv >> 2;
    y[4 * i + 3] = ((sv as u32) / 3u32) as i32;
    wide[i] = ((b as u64) << 40) | ((sv as i64) as u64 >> 60);
}

#[test]
fn integer_and_byte_operations_match_reference() {
    let n = 128usize;
    let mut rng = StdRng::seed_from_u64(14);
    let q: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    let s: Vec<i8> = (0..n).map(|_| rng.gen()).collect();
    let packed: Vec<i32> = (0..n + 1).map(|_| rng.gen()).collect();
    let mut want = vec![0i32; 4 * n];
    let mut want_wide = vec![0u64; n];
    for i in 0..n {
        let b = q[i] as u32;
        let sv = s[i] as i32;
        let (x, z) = (packed[i].to_le_bytes(), packed[i + 1].to_le_bytes());
        let dot = (0..4).fold(sv, |acc, k| {
            acc.wrapping_add(x[k] as i8 as i32 * z[k] as i8 as i32)
        });
        want[4 * i..4 * i + 4].copy_from_slice(&[
            ((b & 0xf) as i32 - 8) * ((b >> 4) as i32 - 8),
            dot,
            sv >> 2,
            ((sv as u32) / 3) as i32,
        ]);
        want_wide[i] = ((b as u64) << 40) | ((sv as i64) as u64 >> 60);
    }
    for wave in WAVES {
        let dev = device(wave);
        let (qb, sb, pb) = (
            dev.upload(&q).unwrap(),
            dev.upload(&s).unwrap(),
            dev.upload(&packed).unwrap(),
        );
        let mut yb = dev.alloc::<i32>(4 * n).unwrap();
        let mut wb = dev.alloc::<u64>(n).unwrap();
        bytes_and_bits::launch(&dev, 2, &qb, &sb, &pb, &mut yb, &mut wb).unwrap();
        assert_eq!(dev.download(&yb).unwrap(), want, "wave {wave}");
        assert_eq!(dev.download(&wb).unwrap(), want_wide, "wave {wave}");
    }
}

/// Conversions to and from the half types, and saturating float-to-int casts.
#[greta::kernel(block = 64)]
fn conversions(x: &[f32], h: &mut [f16], b: &mut [bf16], ints: &mut [i32]) {
    let i = block_idx() * BLOCK + thread_idx();
    let v = x[i];
    h[i] = v as f16;
    b[i] = (v as bf16) * (3.0 as bf16);
    ints[2 * i] = (v * 1e9) as i32;
    ints[2 * i + 1] = (h[i] as f32 * 1000.0) as i32;
}

#[test]
fn half_conversions_round_to_nearest_even_and_ints_saturate() {
    let n = 64usize;
    let mut rng = StdRng::seed_from_u64(15);
    let mut x: Vec<f32> = (0..n).map(|_| rng.gen_range(-70000.0..70000.0)).collect();
    x[0] = f32::NAN;
    x[1] = 1.0 + f32::EPSILON * 2048.0;
    for wave in WAVES {
        let dev = device(wave);
        let xb = dev.upload(&x).unwrap();
        let mut hb = dev.alloc::<f16>(n).unwrap();
        let mut bb = dev.alloc::<greta::half::bf16>(n).unwrap();
        let mut ib = dev.alloc::<i32>(2 * n).unwrap();
        conversions::launch(&dev, 1, &xb, &mut hb, &mut bb, &mut ib).unwrap();
        let (h, b, ints) = (
            dev.download(&hb).unwrap(),
            dev.download(&bb).unwrap(),
            dev.download(&ib).unwrap(),
        );
        for i in 0..n {
            let want_h = f16::from_f32(x[i]);
            assert!(h[i] == want_h || (h[i].is_nan() && want_h.is_nan()), "{i}");
            let bf = |v: f32| greta::half::bf16::from_f32(v);
            let want_b = bf(bf(x[i]).to_f32() * 3.0);
            assert!(b[i] == want_b || (b[i].is_nan() && want_b.is_nan()), "{i}");
            assert_eq!(ints[2 * i], (x[i] * 1e9) as i32, "{i}");
            assert_eq!(ints[2 * i + 1], (want_h.to_f32() * 1000.0) as i32, "{i}");
        }
        assert_eq!(ints[0], 0, "NaN converts to 0");
        assert_eq!(h[1].to_bits(), 0x3c00, "ties round to even");
    }
}

#[test]
fn a_qkv_product_whose_rows_are_not_whole_heads_is_refused() {
    use greta::kernels::matvec::{Epilogue, Inputs, Matvec, Rope};
    use greta::quant::gpu::GpuFormat;
    let dev = device(64);
    let (cols, head_dim) = (64usize, 8u32);
    let w = dev.upload(&vec![0u32; 64 * cols]).unwrap();
    let x = dev.upload(&vec![1.0f32; cols]).unwrap();
    let mut y = dev.upload(&vec![0.0f32; 64]).unwrap();
    let mut kc = dev.upload(&vec![f16::ZERO; 1024]).unwrap();
    let mut vc = dev.upload(&vec![f16::ZERO; 1024]).unwrap();
    let pos = dev.upload(&[0u32]).unwrap();
    let qkv = Matvec::new(GpuFormat::F32, false, Epilogue::Qkv);
    // 12 Q rows are a head and a half of 8.
    let rope = Rope {
        q_rows: 12,
        head_dim,
        ctx: 16,
        base: 10000.0,
    };
    let r = qkv.launch(
        &dev,
        &w,
        &w,
        &x,
        &x,
        &mut y,
        Some((&mut kc, &mut vc, &pos)),
        Inputs::ONE,
        20,
        8,
        cols as u32,
        1e-5,
        rope,
    );
    match r {
        Err(Error::Launch { kernel, message }) => {
            assert_eq!(kernel, "matvec");
            assert!(message.contains("not whole heads of 8"), "{message}");
        }
        other => panic!("expected a launch error, got {other:?}"),
    }
}

/// Each wave copies its own 16-vector slice of `x` into shared memory and writes it back
/// reversed after the wait; with `early`, it reads before waiting (a race on a GPU).
#[greta::kernel(block = 64)]
fn copy_then_read(x: &[u32], y: &mut [u32], early: u32) {
    let tile = shared!([u32; 256]);
    if BULK_COPY == 1 {
        let w = wave_id();
        let per_wave = 64 / (BLOCK / WAVE);
        tile.copy_async(w * per_wave, x, block_idx() * 64 + w * per_wave, per_wave);
        if early == 0 {
            wait_async();
        }
        let t = thread_idx();
        let v = tile.load_vec::<4>(t);
        y.store_vec(block_idx() * 64 + 63 - t, v);
        if early == 1 {
            wait_async();
        }
    }
}

/// Two copies in flight in one wave: not allowed.
#[greta::kernel(block = 32)]
fn copy_twice(x: &[u32], y: &mut [u32]) {
    let tile = shared!([u32; 64]);
    if BULK_COPY == 1 {
        tile.copy_async(0, x, 0, 8);
        tile.copy_async(8, x, 8, 8);
        wait_async();
        y[thread_idx()] = tile[thread_idx()];
    }
}

/// A copy issued by half a wave.
#[greta::kernel(block = 32)]
fn copy_divergent(x: &[u32], y: &mut [u32]) {
    let tile = shared!([u32; 64]);
    if BULK_COPY == 1 && lane_id() < 16 {
        tile.copy_async(0, x, 0, 16);
        wait_async();
        y[thread_idx()] = tile[thread_idx()];
    }
}

#[test]
fn bulk_copies_land_at_the_wait_and_misuse_is_caught() {
    let mut rng = StdRng::seed_from_u64(21);
    let x: Vec<u32> = (0..3 * 256).map(|_| rng.gen()).collect();
    // Wave 32 runs sm_90's code, where BULK_COPY is 1.
    let dev = device(32);
    let xb = dev.upload(&x).unwrap();
    let mut yb = dev.alloc::<u32>(x.len()).unwrap();
    copy_then_read::launch(&dev, 3, &xb, &mut yb, 0).unwrap();
    let got = dev.download(&yb).unwrap();
    for b in 0..3 {
        for t in 0..64 {
            let (src, dst) = (b * 256 + 4 * t, b * 256 + 4 * (63 - t));
            assert_eq!(
                &got[dst..dst + 4],
                &x[src..src + 4],
                "block {b}, vector {t}"
            );
        }
    }
    let early = execution_error(
        copy_then_read::launch(&dev, 3, &xb, &mut yb, 1),
        "copy_then_read",
    );
    assert!(
        early.contains("while this wave's `copy_async` into it is in flight"),
        "{early}"
    );
    let twice = execution_error(copy_twice::launch(&dev, 1, &xb, &mut yb), "copy_twice");
    assert!(
        twice.contains("a second `copy_async` before `wait_async`"),
        "{twice}"
    );
    let divergent = execution_error(
        copy_divergent::launch(&dev, 1, &xb, &mut yb),
        "copy_divergent",
    );
    assert!(divergent.contains("divergent control flow"), "{divergent}");
}

/// A copy past the end of its source.
#[greta::kernel(block = 64)]
fn copy_out_of_bounds(x: &[u32], y: &mut [u32]) {
    let tile = shared!([u32; 64]);
    if BULK_COPY == 1 {
        tile.copy_async(0, x, 2, 16);
        wait_async();
        y[thread_idx()] = tile[thread_idx()];
    }
}

#[test]
fn bulk_copies_are_bounds_checked_and_absent_at_wave_64() {
    let dev = device(32);
    let xb = dev.upload(&[7u32; 64]).unwrap();
    let mut yb = dev.alloc::<u32>(64).unwrap();
    let oob = execution_error(
        copy_out_of_bounds::launch(&dev, 1, &xb, &mut yb),
        "copy_out_of_bounds",
    );
    assert!(oob.contains("out of bounds"), "{oob}");
    // At wave 64 (gfx942) BULK_COPY is 0: the guarded code is gone and nothing is written.
    let dev = device(64);
    let xb = dev.upload(&[7u32; 64]).unwrap();
    let mut yb = dev.upload(&[1u32; 64]).unwrap();
    copy_out_of_bounds::launch(&dev, 1, &xb, &mut yb).unwrap();
    assert_eq!(dev.download(&yb).unwrap(), vec![1u32; 64]);
}
