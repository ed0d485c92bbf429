//! What the generated source does with bulk copies and large shared arrays: where each
//! target allows them, how CUDA gets shared memory beyond its static limit, and where a
//! kernel's copy barriers are armed.

use greta::codegen::{hip, SpecValue, GFX942, SM90};

/// Copies without the `BULK_COPY` guard.
#[greta::kernel(block = 64)]
fn unguarded(x: &[u32], y: &mut [u32]) {
    let tile = shared!([u32; 256]);
    tile.copy_async(0, x, 0, 4);
    wait_async();
    y[thread_idx()] = tile[thread_idx()];
}

/// Waits for its predecessor, then copies (guarded), with 60 KiB of shared memory.
#[greta::kernel(block = 64)]
fn wide(x: &[u32], y: &mut [u32]) {
    let big = shared!([u32; 15360]);
    let small = shared!([f32; 6]);
    wait_prior_launch();
    if BULK_COPY == 1 {
        big.copy_async(0, x, 0, 4);
        wait_async();
    }
    small[0] = 1.0;
    for k in 0..1 {
        y[thread_idx() + k] = big[thread_idx()];
    }
}

#[test]
fn unguarded_copies_are_refused_where_the_target_has_none() {
    let err = unguarded::definition()
        .specialise(&GFX942, &[] as &[SpecValue])
        .expect_err("gfx942 has no bulk copies")
        .to_string();
    assert!(
        err.contains("gfx942 has no bulk copies; guard `copy_async` and `wait_async` with `if BULK_COPY == 1`"),
        "{err}"
    );
    unguarded::definition()
        .specialise(&SM90, &[] as &[SpecValue])
        .expect("sm_90 copies in bulk");
}

#[test]
fn shared_memory_past_the_static_limit_is_one_dynamic_allocation_on_cuda() {
    let ir = wide::definition()
        .specialise(&SM90, &[] as &[SpecValue])
        .unwrap();
    // 60 KiB, then 24 bytes, each 16-byte aligned.
    assert_eq!(ir.layout.offsets, [0, 61440]);
    assert_eq!(
        (ir.layout.arrays_bytes, ir.layout.dynamic_bytes),
        (61472, 61472)
    );
    let src = hip::emit(&ir, &SM90).unwrap();
    assert!(src.contains("extern __shared__ __align__(16) unsigned char greta_dynamic_shared[];"));
    assert!(src.contains("u32* const big = reinterpret_cast<u32*>(greta_dynamic_shared + 0);"));
    assert!(
        src.contains("f32* const small = reinterpret_cast<f32*>(greta_dynamic_shared + 61440);")
    );
    // The copy barriers are armed right before the wait, after what comes ahead of it.
    let init = "greta_async_init(greta_async_bar);";
    let arm = src.find(init).expect("armed");
    let wait = src.find("greta_wait_prior_launch();\n").expect("waits");
    assert!(
        arm < wait && src[arm + init.len()..wait].trim().is_empty(),
        "{src}"
    );
    // The single-trip loop is its body.
    assert!(!src.contains("for (u32 k"), "{src}");
    // gfx942 declares the same arrays statically (64 KiB allowed), without the copy.
    let amd = wide::definition()
        .specialise(&GFX942, &[] as &[SpecValue])
        .unwrap();
    assert_eq!(amd.layout.dynamic_bytes, 0);
    assert_eq!(amd.layout.offsets, [0, 61440]);
    let src = hip::emit(&amd, &GFX942).unwrap();
    assert!(src.contains("__shared__ __align__(16) u32 big[15360];"));
    assert!(!src.contains("greta_copy_async"));
}
