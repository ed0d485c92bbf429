use greta::kernel;

#[kernel(block = 64)]
fn halves(x: &[f32], y: &mut [f32], n: u32) {
    const HALF: u32 = n / 2;
    let i = thread_idx();
    if i < HALF {
        y[i] = x[i];
    }
}

fn main() {}
