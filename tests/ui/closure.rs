use greta::kernel;

#[kernel(block = 64)]
fn apply(x: &[f32], y: &mut [f32]) {
    let square = |v: f32| v * v;
    let i = thread_idx();
    y[i] = square(x[i]);
}

fn main() {}
