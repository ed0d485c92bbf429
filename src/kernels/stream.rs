//! The read roofline: every 16-byte vector of a buffer read once, the way a bandwidth-bound
//! kernel reads its weights. `greta bench-kernels` times it at each product's byte count,
//! so a kernel's time can be read against what a launch that only streams its bytes takes.

use crate::kernel;

/// `EARLY`: nothing is read before waiting for the previous launch.
pub const WAIT_FIRST: u32 = 0;
/// `EARLY`: everything is read before the wait (the roofline).
pub const READ_FIRST: u32 = 1;
/// `EARLY`: the first `UNROLL` loads are issued before the wait and used after it, as the
/// products treat their first weight step.
pub const FIRST_LOADS_FIRST: u32 = 2;

/// Reads `vecs` 16-byte vectors of `src`, `UNROLL` independent loads in flight per thread,
/// blocks striding over the buffer. A thread writes `out[0]` only if the XOR of everything
/// it read equals `never`, which keeps the loads alive without adding traffic. Where the
/// target allows it overlaps the launch before it (it only writes after waiting for it),
/// in the order `EARLY` names: `WAIT_FIRST` is the bound for a launch that may read
/// nothing before the previous one has finished.
#[kernel]
pub fn read_stream<const UNROLL: u32, const BLOCK: u32, const EARLY: u32>(
    src: &[u32],
    out: &mut [u32],
    vecs: u32,
    never: u32,
) {
    let stride = grid_dim() * BLOCK;
    let mut acc = 0u32;
    let first = block_idx() * BLOCK * UNROLL + thread_idx();
    allow_next_launch();
    if EARLY == WAIT_FIRST {
        wait_prior_launch();
    }
    for base in (first..vecs).step_by(stride * UNROLL) {
        let mut buf = [u32x4::splat(0); UNROLL];
        for u in 0..UNROLL {
            let v = base + u * BLOCK;
            if v < vecs {
                buf[u] = src.load_vec::<4>(v);
            }
        }
        if EARLY == FIRST_LOADS_FIRST && base == first {
            wait_prior_launch();
        }
        for u in 0..UNROLL {
            acc = acc ^ buf[u][0] ^ buf[u][1] ^ buf[u][2] ^ buf[u][3];
        }
    }
    // (With `FIRST_LOADS_FIRST`, a thread that had nothing to read waits here.)
    if EARLY == READ_FIRST || (EARLY == FIRST_LOADS_FIRST && first >= vecs) {
        wait_prior_launch();
    }
    if acc == never {
        out[0] = acc;
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::cpu::{CpuBackend, CpuOptions};
    use crate::runtime::Device;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    /// Each thread's XOR is what the host computes from the vectors that thread should
    /// read: a thread whose value is `never` writes, and no thread writes otherwise.
    #[test]
    fn each_thread_reads_its_vectors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (grid, block, unroll) = (2usize, 512usize, 4usize);
        // Not a multiple of the grid's reach, so the last pass is partial.
        let vecs = 3 * grid * block * unroll + 77;
        let data: Vec<u32> = (0..vecs * 4).map(|_| rng.gen()).collect();
        let thread_xor = |b: usize, t: usize| {
            let mut acc = 0u32;
            for base in (b * block * unroll + t..vecs).step_by(grid * block * unroll) {
                for u in 0..unroll {
                    if let Some(v) = data.get((base + u * block) * 4..(base + u * block) * 4 + 4) {
                        acc = v.iter().fold(acc, |a, w| a ^ w);
                    }
                }
            }
            acc
        };
        let accs: Vec<u32> = (0..grid * block)
            .map(|i| thread_xor(i / block, i % block))
            .collect();
        let absent = (0..)
            .find(|v| !accs.contains(v))
            .expect("a value no thread has");
        for wave in [64, 32] {
            let dev = Device::from_backend(Arc::new(
                CpuBackend::new(CpuOptions {
                    wave,
                    ..CpuOptions::default()
                })
                .expect("CPU backend"),
            ));
            let src = dev.upload(&data).expect("upload");
            // One thread's own value, then a value no thread has; every order of the loads
            // and the wait.
            for (never, written) in [(accs[grid * block - 1], true), (absent, false)] {
                for early in [
                    super::WAIT_FIRST,
                    super::READ_FIRST,
                    super::FIRST_LOADS_FIRST,
                ] {
                    let mut out = dev.upload(&[!never]).expect("upload");
                    let (g, n) = (grid as u32, vecs as u32);
                    match early {
                        super::WAIT_FIRST => {
                            super::read_stream::launch::<4, 512, { super::WAIT_FIRST }>(
                                &dev, g, &src, &mut out, n, never,
                            )
                        }
                        super::READ_FIRST => {
                            super::read_stream::launch::<4, 512, { super::READ_FIRST }>(
                                &dev, g, &src, &mut out, n, never,
                            )
                        }
                        _ => super::read_stream::launch::<4, 512, { super::FIRST_LOADS_FIRST }>(
                            &dev, g, &src, &mut out, n, never,
                        ),
                    }
                    .expect("launch");
                    let got = dev.download(&out).expect("download")[0];
                    assert_eq!(
                        got == never,
                        written,
                        "wave {wave}, never {never:#x}, early {early}"
                    );
                }
            }
        }
    }
}
