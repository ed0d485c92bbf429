use greta::{device, kernel};

#[device]
fn twice(v: f32) -> f32 {
    const TWO: u32 = 2;
    v * TWO as f32
}

#[kernel(block = 64)]
fn doubled(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = twice(x[i]);
}

fn main() {}
