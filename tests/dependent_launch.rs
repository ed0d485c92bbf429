//! Buffers of a kernel that overlaps the previous launch (`wait_prior_launch()`): what the
//! generated source promises the compiler about each of them.

use greta::codegen::{hip, SpecValue, Target, GFX942, SM90};

/// `w` is read before the wait (the previous launch does not write it), `x` and `n` only
/// after it, `y` written after it; a device function reads `w` before the wait too.
#[greta::kernel(block = 64)]
fn overlapped(w: &[f32], x: &[f32], n: &[u32], y: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    let early = first(w, i);
    wait_prior_launch();
    if i < n[0] {
        y[i] = early * x[i];
    }
}

#[greta::device]
fn first(w: &[f32], i: u32) -> f32 {
    w[i]
}

/// The same body without the wait.
#[greta::kernel(block = 64)]
fn serial(w: &[f32], x: &[f32], n: &[u32], y: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    let early = first(w, i);
    if i < n[0] {
        y[i] = early * x[i];
    }
}

/// The entry point's parameter list as `def` is emitted for `target`, one normalised
/// parameter per item.
fn params(def: &greta::codegen::KernelDef, target: &Target) -> Vec<String> {
    let ir = def
        .specialise(target, &[] as &[SpecValue])
        .expect("specialises");
    let src = hip::emit(&ir, target).expect("emits");
    // The entry point's line ends with the parameter list's opening parenthesis.
    let start = src.find("__global__").expect("an entry point");
    let open = start + src[start..].find("(\n").expect("a parameter list");
    let close = open + src[open..].find(')').expect("a parameter list");
    src[open + 1..close]
        .split(',')
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

#[test]
fn buffers_read_after_the_wait_are_not_restrict_where_launches_overlap() {
    assert_eq!(
        params(overlapped::definition(), &SM90),
        [
            "const f32* __restrict__ w",
            "const f32* x",
            "const u32* n",
            "f32* y"
        ]
    );
    // HIP launches in a stream never overlap: every buffer keeps `__restrict__`.
    assert_eq!(
        params(overlapped::definition(), &GFX942),
        [
            "const f32* __restrict__ w",
            "const f32* __restrict__ x",
            "const u32* __restrict__ n",
            "f32* __restrict__ y"
        ]
    );
    // A kernel that does not wait is never started early.
    assert!(params(serial::definition(), &SM90)
        .iter()
        .all(|p| p.contains("__restrict__")));
}
