use greta::kernel;

#[kernel(block = 64)]
fn tile(x: &[f32], y: &mut [f32], n: u32) {
    let t = shared!([f32; n]);
    let i = thread_idx();
    t[i] = x[i];
    barrier();
    y[i] = t[63 - i];
}

fn main() {}
