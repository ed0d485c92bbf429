use greta::kernel;

#[kernel(block = 64)]
fn product(x: &[f16], y: &mut [f32]) {
    let a = x.load_a(0, 16);
    let c = mma(a, frag_b::<f16>(), frag_c::<f32>());
    y.store_frag(0, 16, c);
}

fn main() {}
