use greta::kernel;

#[kernel(block = 64)]
fn exponent(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = exp(x[i], 2.0);
}

fn main() {}
