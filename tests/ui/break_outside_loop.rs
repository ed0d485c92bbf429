use greta::kernel;

#[kernel(block = 64)]
fn early(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    if x[i] < 0.0 {
        break;
    }
    y[i] = x[i];
}

fn main() {}
