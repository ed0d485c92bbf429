//! Cases and f64 references of the built-in kernels.

use super::{compare, random_f32, Case, Comparison, Tolerance};
use crate::kernels::{elementwise, gemv, matvec, matvec_spec, norm, MATVEC_BLOCK, MATVEC_ROWS};
use crate::quant::gpu::{pack, GpuFormat};
use crate::quant::{dot_row, random_blocks};
use crate::runtime::{Device, Result};
use half::f16;
use rand::rngs::StdRng;

/// Errors of plain f32 arithmetic: rounding only.
const F32: Tolerance = Tolerance {
    nmse: 1e-10,
    max_rel: 1e-5,
};
/// Results stored in f16 (about 11 significant bits).
const F16_OUT: Tolerance = Tolerance {
    nmse: 1e-6,
    max_rel: 2e-3,
};

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    for n in [1usize, 1000, 4096 + 37] {
        v.push(Case::new("add", format!("f32 n={n}"), F32, move |d, r| {
            add_f32(d, r, n)
        }));
        v.push(Case::new(
            "add",
            format!("f16 n={n}"),
            F16_OUT,
            move |d, r| add_f16(d, r, n),
        ));
    }
    for (rows, n) in [(1usize, 4096usize), (3, 1000), (2, 5121)] {
        v.push(Case::new(
            "rmsnorm",
            format!("{rows}x{n}"),
            F32,
            move |d, r| rmsnorm(d, r, rows, n),
        ));
    }
    for (rows, n) in [(2usize, 32000usize), (4, 777), (3, 1)] {
        v.push(Case::new(
            "softmax",
            format!("{rows}x{n}"),
            F32,
            move |d, r| softmax(d, r, rows, n),
        ));
    }
    for (rows, cols) in [(256usize, 4096usize), (37, 520), (5, 8)] {
        v.push(Case::new(
            "gemv_f16",
            format!("{rows}x{cols}"),
            F32,
            move |d, r| gemv_f16(d, r, rows, cols),
        ));
    }
    for fmt in GpuFormat::ALL {
        let tol = if fmt.code() <= crate::kernels::dot::F16 { F32 } else { Q8_INPUT };
        let name = fmt.ggml().name();
        for (rows, cols, norm, add) in [(37usize, 512usize, true, false), (130, 1536, false, true), (8, 256, true, true)] {
            let shape = format!("{name} {rows}x{cols}{}{}", if norm { " norm" } else { "" }, if add { " +=" } else { "" });
            v.push(Case::new("matvec", shape, tol, move |d, r| matvec_case(d, r, fmt, rows, cols, norm, add)));
        }
    }
    v
}

/// Results of kernels that quantise their input to int8 per 32 values.
const Q8_INPUT: Tolerance = Tolerance {
    nmse: 1e-4,
    max_rel: 2e-2,
};

/// Blocks of `matvec` for `rows` rows.
pub fn matvec_grid(rows: usize, wave: u32) -> u32 {
    let rows_per_block = (MATVEC_BLOCK / wave * MATVEC_ROWS) as usize;
    rows.div_ceil(rows_per_block) as u32
}

fn matvec_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt: GpuFormat,
    rows: usize,
    cols: usize,
    norm: bool,
    add: bool,
) -> Result<Comparison> {
    let ty = fmt.ggml();
    let bad = |e: &dyn std::fmt::Display| crate::runtime::Error::Backend(e.to_string());
    let blocks = random_blocks(ty, rows * cols / ty.block_elems(), rng).map_err(|e| bad(&e))?;
    let packed = pack(ty, rows, cols, &blocks).map_err(|e| bad(&e))?;
    let x = random_f32(rng, cols, 2.0);
    let nw = random_f32(rng, cols, 1.5);
    let y0 = random_f32(rng, rows, 1.0);
    let eps = 1e-5f32;
    let xin: Vec<f32> = if norm {
        let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / cols as f64;
        let s = 1.0 / (ms + eps as f64).sqrt();
        x.iter().zip(&nw).map(|(v, g)| (*v as f64 * s * *g as f64) as f32).collect()
    } else {
        x.clone()
    };
    let row_bytes = blocks.len() / rows;
    let mut want = Vec::with_capacity(rows);
    for (r, row) in blocks.chunks(row_bytes).enumerate() {
        let dot = dot_row(ty, row, &xin).map_err(|e| bad(&e))?;
        want.push(if add { y0[r] as f64 + dot } else { dot });
    }
    let dw = dev.upload(&packed)?;
    let (dx, dnw) = (dev.upload(&x)?, dev.upload(&nw)?);
    let mut y = dev.upload(&if add { y0 } else { vec![f32::NAN; rows] })?;
    let spec = matvec_spec(fmt, norm, if add { matvec::ADD } else { matvec::STORE });
    dev.launch(
        matvec::matvec::definition(),
        &spec,
        matvec_grid(rows, dev.target().wave).into(),
        &[(&dw).into(), (&dx).into(), (&dnw).into(), (&mut y).into(), (rows as u32).into(), (cols as u32).into(), eps.into()],
    )?;
    Ok(compare(&dev.download(&y)?, &want))
}

fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

fn add_f32(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    let (a, b) = (random_f32(rng, n, 4.0), random_f32(rng, n, 4.0));
    let (da, db) = (dev.upload(&a)?, dev.upload(&b)?);
    let mut out = dev.upload(&vec![f32::NAN; n])?;
    elementwise::add::launch::<f32>(dev, blocks(n, 256), &da, &db, &mut out, n as u32)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| *x as f64 + *y as f64)
        .collect();
    Ok(compare(&dev.download(&out)?, &want))
}

fn add_f16(dev: &Device, rng: &mut StdRng, n: usize) -> Result<Comparison> {
    let a: Vec<f16> = random_f32(rng, n, 4.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let b: Vec<f16> = random_f32(rng, n, 4.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let (da, db) = (dev.upload(&a)?, dev.upload(&b)?);
    let mut out = dev.upload(&vec![f16::NAN; n])?;
    elementwise::add::launch::<f16>(dev, blocks(n, 256), &da, &db, &mut out, n as u32)?;
    let want: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.to_f64() + y.to_f64())
        .collect();
    let got: Vec<f32> = dev.download(&out)?.into_iter().map(f16::to_f32).collect();
    Ok(compare(&got, &want))
}

fn rmsnorm(dev: &Device, rng: &mut StdRng, rows: usize, n: usize) -> Result<Comparison> {
    let eps = 1e-5f32;
    let x = random_f32(rng, rows * n, 3.0);
    let w = random_f32(rng, n, 1.5);
    let (dx, dw) = (dev.upload(&x)?, dev.upload(&w)?);
    let mut y = dev.upload(&vec![f32::NAN; rows * n])?;
    norm::rmsnorm::launch::<256>(dev, rows as u32, &dx, &dw, &mut y, n as u32, eps)?;
    let mut want = Vec::with_capacity(rows * n);
    for row in x.chunks(n) {
        let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
        let scale = 1.0 / (ms + eps as f64).sqrt();
        want.extend(
            row.iter()
                .zip(&w)
                .map(|(v, g)| *v as f64 * scale * *g as f64),
        );
    }
    Ok(compare(&dev.download(&y)?, &want))
}

fn softmax(dev: &Device, rng: &mut StdRng, rows: usize, n: usize) -> Result<Comparison> {
    let x = random_f32(rng, rows * n, 8.0);
    let dx = dev.upload(&x)?;
    let mut y = dev.upload(&vec![f32::NAN; rows * n])?;
    norm::softmax::launch::<256>(dev, rows as u32, &dx, &mut y, n as u32)?;
    let mut want = Vec::with_capacity(rows * n);
    for row in x.chunks(n) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, v| a.max(*v as f64));
        let e: Vec<f64> = row.iter().map(|v| (*v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        want.extend(e.iter().map(|v| v / s));
    }
    Ok(compare(&dev.download(&y)?, &want))
}

fn gemv_f16(dev: &Device, rng: &mut StdRng, rows: usize, cols: usize) -> Result<Comparison> {
    let w: Vec<f16> = random_f32(rng, rows * cols, 0.5)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let x = random_f32(rng, cols, 1.0);
    let (dw, dx) = (dev.upload(&w)?, dev.upload(&x)?);
    let mut y = dev.upload(&vec![f32::NAN; rows])?;
    let rows_per_block = 256 / dev.target().wave as usize;
    gemv::gemv_f16::launch::<256>(
        dev,
        blocks(rows, rows_per_block),
        &dw,
        &dx,
        &mut y,
        rows as u32,
        cols as u32,
    )?;
    let want: Vec<f64> = w
        .chunks(cols)
        .map(|row| {
            row.iter()
                .zip(&x)
                .map(|(a, b)| a.to_f64() * *b as f64)
                .sum()
        })
        .collect();
    Ok(compare(&dev.download(&y)?, &want))
}
