use greta::kernel;

#[kernel(block = 64)]
fn accumulate(x: &[f32], y: &mut [f32], n: u32) {
    let sum = 0.0;
    for i in 0..n {
        sum += x[i];
    }
    y[0] = sum;
}

fn main() {}
