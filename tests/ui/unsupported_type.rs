use greta::kernel;

#[kernel(block = 64)]
fn widen(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    let wide: f64 = 0.0;
    y[i] = x[i];
}

fn main() {}
