use greta::kernel;

#[kernel(block = 64)]
fn product(x: &[f16], y: &mut [f32]) {
    let xs = shared!([f16; 256]);
    xs[thread_idx()] = x[thread_idx()];
    barrier();
    let a = xs.load_a(0, 16);
    let c = mma(a, a, frag_c::<f32>());
    y.store_frag(0, 16, c);
}

fn main() {}
