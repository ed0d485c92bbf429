use greta::kernel;

#[kernel(block = 64, min_waves = 12)]
fn copy(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = x[i];
}

fn main() {}
