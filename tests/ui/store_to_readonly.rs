use greta::kernel;

#[kernel(block = 64)]
fn clobber(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    x[i] = y[i];
}

fn main() {}
