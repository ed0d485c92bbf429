use greta::{device, kernel};

#[device]
fn silu(v: f32) -> f32 {
    v / (1.0 + exp(-v))
}

#[kernel(block = 64)]
fn activate(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = silu(x[i], 1.0);
}

fn main() {}
