use greta::kernel;

#[kernel(block = 64)]
fn gather(x: &[f32], y: &mut [f32], k: u32) {
    let mut acc = [0.0f32; 4];
    let i = thread_idx();
    acc[0] = x[i];
    y[i] = acc[k];
}

fn main() {}
