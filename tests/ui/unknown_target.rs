use greta::kernel;

#[kernel(block = 64, target = "gfx1100")]
fn copy(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = x[i];
}

fn main() {}
