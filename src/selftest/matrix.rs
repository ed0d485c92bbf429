//! Cases and f64 references of the matrix-core kernels: the fragment tiles of every
//! operand type, read three ways (shared-memory loads, lane coordinates, fragments built
//! in registers).

use super::{compare, random_f32, Case, Comparison, Tolerance};
use crate::kernels::mma_tile;
use crate::runtime::{Device, Result};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::Rng;

/// Products of f16 or bf16 operands summed in f32: rounding of the sums only.
const F32_SUMS: Tolerance = Tolerance {
    nmse: 1e-10,
    max_rel: 1e-5,
};

/// Integer products: exact.
const EXACT: Tolerance = Tolerance {
    nmse: 0.0,
    max_rel: 0.0,
};

/// Operand element types of the fragment tile cases.
#[derive(Clone, Copy, Debug)]
enum Operand {
    F16,
    Bf16,
    I8,
}

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    for (op, name, tol) in [
        (Operand::F16, "f16", F32_SUMS),
        (Operand::Bf16, "bf16", F32_SUMS),
        (Operand::I8, "i8", EXACT),
    ] {
        let depths: &[usize] = match op {
            Operand::I8 => &[32, 64],
            _ => &[16, 48],
        };
        for &k in depths {
            for n in [64usize, 192] {
                v.push(Case::new(
                    "mma_tile",
                    format!("{name} 16x{n}x{k}"),
                    tol,
                    move |d, r| tile_case(d, r, op, n, k),
                ));
            }
        }
    }
    for (op, name) in [(Operand::F16, "f16"), (Operand::Bf16, "bf16")] {
        v.push(Case::new(
            "mma_tile_trans",
            format!("{name} 16x128x48"),
            F32_SUMS,
            move |d, r| trans_case(d, r, op, 128, 48),
        ));
    }
    v
}

/// `n` operand values of type `op` and their exact values.
fn operands(rng: &mut StdRng, op: Operand, n: usize) -> (Vec<u8>, Vec<f64>) {
    match op {
        Operand::I8 => {
            let q: Vec<i8> = (0..n)
                .map(|_| {
                    let m: i8 = rng.gen_range(1..=127);
                    if rng.gen_bool(0.5) {
                        m
                    } else {
                        -m
                    }
                })
                .collect();
            (
                bytemuck::cast_slice(&q).to_vec(),
                q.iter().map(|&x| x as f64).collect(),
            )
        }
        Operand::F16 => {
            let h: Vec<f16> = random_f32(rng, n, 2.0)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            (
                bytemuck::cast_slice(&h).to_vec(),
                h.iter().map(|x| x.to_f64()).collect(),
            )
        }
        Operand::Bf16 => {
            let h: Vec<bf16> = random_f32(rng, n, 2.0)
                .into_iter()
                .map(bf16::from_f32)
                .collect();
            (
                bytemuck::cast_slice(&h).to_vec(),
                h.iter().map(|x| x.to_f64()).collect(),
            )
        }
    }
}

/// `Y[m][j] = sum_k X[m][k] W[j][k]` (`trans`: W is `k x n`, `W[k][j]`).
fn reference(x: &[f64], w: &[f64], n: usize, k: usize, trans: bool) -> Vec<f64> {
    let mut y = vec![0.0; 16 * n];
    for m in 0..16 {
        for j in 0..n {
            y[m * n + j] = (0..k)
                .map(|kk| x[m * k + kk] * if trans { w[kk * n + j] } else { w[j * k + kk] })
                .sum();
        }
    }
    y
}

/// The worst of the three results of `mma_tile` against one reference.
fn worst(results: [Comparison; 3]) -> Comparison {
    results.into_iter().fold(
        Comparison {
            nmse: 0.0,
            max_rel: 0.0,
            finite: true,
        },
        |a, b| Comparison {
            nmse: a.nmse.max(b.nmse),
            max_rel: a.max_rel.max(b.max_rel),
            finite: a.finite && b.finite,
        },
    )
}

fn tile_case(
    dev: &Device,
    rng: &mut StdRng,
    op: Operand,
    n: usize,
    k: usize,
) -> Result<Comparison> {
    let (xb, xv) = operands(rng, op, 16 * k);
    let (wb, wv) = operands(rng, op, n * k);
    let want = reference(&xv, &wv, n, k, false);
    let block = 64u32;
    let grid = (n as u32).div_ceil(16 * block / dev.target().wave);
    let (n32, k32) = (n as u32, k as u32);
    macro_rules! run {
        ($t:ty, $a:ty, $poison:expr, $to_f32:expr) => {{
            let x: Vec<$t> = bytemuck::cast_slice(&xb).to_vec();
            let w: Vec<$t> = bytemuck::cast_slice(&wb).to_vec();
            let (dx, dw) = (dev.upload(&x)?, dev.upload(&w)?);
            let poison = vec![$poison; 16 * n];
            let (mut y, mut ye, mut yr) = (
                dev.upload(&poison)?,
                dev.upload(&poison)?,
                dev.upload(&poison)?,
            );
            mma_tile::mma_tile::launch::<$t, $a, 64>(
                dev, grid, &dx, &dw, &mut y, &mut ye, &mut yr, n32, k32,
            )?;
            let mut got = Vec::new();
            for b in [&y, &ye, &yr] {
                let host: Vec<f32> = dev.download(b)?.into_iter().map($to_f32).collect();
                got.push(compare(&host, &want));
            }
            Ok(worst([got[0], got[1], got[2]]))
        }};
    }
    match op {
        Operand::F16 => run!(f16, f32, f32::NAN, |v: f32| v),
        Operand::Bf16 => run!(bf16, f32, f32::NAN, |v: f32| v),
        Operand::I8 => run!(i8, i32, i32::MIN, |v: i32| v as f32),
    }
}

fn trans_case(
    dev: &Device,
    rng: &mut StdRng,
    op: Operand,
    n: usize,
    k: usize,
) -> Result<Comparison> {
    let (xb, xv) = operands(rng, op, 16 * k);
    let (wb, wv) = operands(rng, op, k * n);
    let want = reference(&xv, &wv, n, k, true);
    let grid = (n as u32).div_ceil(16 * 64 / dev.target().wave);
    let mut y = dev.upload(&vec![f32::NAN; 16 * n])?;
    macro_rules! run {
        ($t:ty) => {{
            let x: Vec<$t> = bytemuck::cast_slice(&xb).to_vec();
            let w: Vec<$t> = bytemuck::cast_slice(&wb).to_vec();
            let (dx, dw) = (dev.upload(&x)?, dev.upload(&w)?);
            mma_tile::mma_tile_trans::launch::<$t, 64>(
                dev, grid, &dx, &dw, &mut y, n as u32, k as u32,
            )?;
        }};
    }
    match op {
        Operand::Bf16 => run!(bf16),
        _ => run!(f16),
    }
    Ok(compare(&dev.download(&y)?, &want))
}
