use greta::kernel;

#[kernel(block = 64)]
fn copy(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = x[j];
}

fn main() {}
