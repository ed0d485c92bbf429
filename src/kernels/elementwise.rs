//! Element-wise kernels.

use crate::kernel;

/// `out[i] = a[i] + b[i]` for `i < n`, for any element type.
#[kernel(block = 256)]
pub fn add<T>(a: &[T], b: &[T], out: &mut [T], n: u32) {
    let i = block_idx() * BLOCK + thread_idx();
    if i < n {
        out[i] = a[i] + b[i];
    }
}
