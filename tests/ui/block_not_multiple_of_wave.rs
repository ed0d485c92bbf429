use greta::kernel;

#[kernel(block = 96, target = "gfx942")]
fn copy(x: &[f32], y: &mut [f32]) {
    let i = block_idx() * BLOCK + thread_idx();
    y[i] = x[i];
}

fn main() {}
