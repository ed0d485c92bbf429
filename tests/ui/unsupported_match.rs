use greta::kernel;

#[kernel(block = 64)]
fn pick(x: &[f32], y: &mut [f32]) {
    let i = thread_idx();
    y[i] = match i {
        0 => x[0],
        _ => x[i],
    };
}

fn main() {}
