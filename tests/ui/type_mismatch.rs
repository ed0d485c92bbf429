use greta::kernel;

#[kernel(block = 64)]
fn scale(x: &[f32], y: &mut [f32], n: u32) {
    let i = thread_idx();
    let factor: f32 = n;
    y[i] = x[i] * factor;
}

fn main() {}
