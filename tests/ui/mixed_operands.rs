use greta::kernel;

#[kernel(block = 64)]
fn offset(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = x[i] + i;
}

fn main() {}
