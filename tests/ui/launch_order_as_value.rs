use greta::kernel;

#[kernel(block = 64)]
fn copy(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    let w = wait_prior_launch();
    y[i] = x[i];
}

fn main() {}
