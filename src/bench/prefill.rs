//! Prompt-processing kernels on Llama-2-7B shapes: the tiled products at a prompt's rows
//! (and a few rows, as batches use them) and prefill attention, as device time and
//! achieved TFLOP/s next to the dense f16 product's rate measured in the same run.

use super::{time_launches, Timing};
use crate::kernels::gemm::{Gemm, Output, Tile};
use crate::kernels::matvec::Epilogue;
use crate::kernels::skinny::{Shape, Skinny};
use crate::quant::gpu::{pack, GpuFormat};
use crate::quant::random_blocks;
use crate::runtime::{Buffer, Device, Error, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// One measured matrix kernel.
#[derive(Clone, Debug)]
pub struct FlopRow {
    pub name: String,
    pub shape: String,
    /// Median device time per launch, microseconds.
    pub us: f64,
    /// Floating-point operations of one launch.
    pub flops: f64,
}

impl FlopRow {
    /// Achieved TFLOP/s.
    pub fn tflops(&self) -> f64 {
        self.flops / (self.us * 1e6)
    }
}

/// The Llama-2-7B products of one layer: (label, rows of W, columns).
pub const LLAMA2_7B_PRODUCTS: [(&str, usize, usize); 4] = [
    ("qkv", 12288, 4096),
    ("o", 4096, 4096),
    ("gate+up", 22016, 4096),
    ("down", 4096, 11008),
];

/// `len` random f16 values in `[-1, 1]`, none near zero (as `random_f32`).
fn random_f16(rng: &mut StdRng, len: usize) -> Vec<half::f16> {
    crate::selftest::random_f32(rng, len, 1.0)
        .into_iter()
        .map(half::f16::from_f32)
        .collect()
}

/// Times `launch` (a store-epilogue product) for `m` rows of X and `n x k` weights of
/// `fmt`, rotating over copies of the weights so that the L2 cannot hold them all: the
/// median microseconds per launch.
fn time_product(
    dev: &Device,
    fmt: GpuFormat,
    (m, n, k): (usize, usize, usize),
    timing: Timing,
    reps: usize,
    mut launch: impl FnMut(&Device, &Buffer<half::f16>, &Buffer<u32>, &mut Buffer<f32>) -> Result<()>,
) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64((n * 7 + k) as u64);
    let ty = fmt.ggml();
    let bad = |e: &dyn std::fmt::Display| Error::Backend(e.to_string());
    let blocks = random_blocks(ty, n * k / ty.block_elems(), &mut rng).map_err(|e| bad(&e))?;
    let packed = pack(ty, n, k, &blocks).map_err(|e| bad(&e))?;
    let copies: Vec<Buffer<u32>> = (0..super::rotation(packed.len() * 4, 8))
        .map(|_| dev.upload(&packed))
        .collect::<Result<_>>()?;
    let dx = dev.upload(&random_f16(&mut rng, m * k))?;
    let mut y = dev.alloc::<f32>(m * n)?;
    time_launches(dev, timing, copies.len(), reps, |d, c| {
        launch(d, &dx, &copies[c], &mut y)
    })
}

/// Times the tiled product `Y = X · Wᵀ` (store epilogue) at `tile` (the library's choice
/// for `m` rows when `None`).
pub fn bench_gemm(
    dev: &Device,
    fmt: GpuFormat,
    tile: Option<Tile>,
    (m, n, k): (usize, usize, usize),
    timing: Timing,
    reps: usize,
) -> Result<FlopRow> {
    let mut g = Gemm::new(fmt, Epilogue::Store, &dev.target(), m as u32);
    if let Some(t) = tile {
        g.tile = t;
    }
    let (mu, nu, ku) = (m as u32, n as u32, k as u32);
    let us = time_product(dev, fmt, (m, n, k), timing, reps, |d, x, w, y| {
        g.launch(d, x, w, Output::F32(y, nu), mu, nu, ku)
    })?;
    let t = g.tile;
    Ok(FlopRow {
        name: format!(
            "gemm {} {}x{}x{}x{}x{}x{}",
            fmt.ggml().name(),
            t.bm,
            t.bn,
            t.wm,
            t.ks,
            t.dequant_at,
            t.ahead
        ),
        shape: format!("{m}x{n}x{k}"),
        us,
        flops: 2.0 * (m * n * k) as f64,
    })
}

/// Times the few-row product (store epilogue) at `shape` (the library's choice for `m`
/// rows when `None`).
pub fn bench_skinny(
    dev: &Device,
    fmt: GpuFormat,
    shape: Option<Shape>,
    (m, n, k): (usize, usize, usize),
    timing: Timing,
    reps: usize,
) -> Result<FlopRow> {
    let mut s = Skinny::new(fmt, Epilogue::Store, &dev.target(), m as u32);
    if let Some(shape) = shape {
        s.shape = shape;
    }
    let (mu, nu, ku) = (m as u32, n as u32, k as u32);
    let us = time_product(dev, fmt, (m, n, k), timing, reps, |d, x, w, y| {
        s.launch(d, x, w, Output::F32(y, nu), mu, nu, ku)
    })?;
    let t = s.shape;
    Ok(FlopRow {
        name: format!(
            "skinny {} {}x{}x{}x{}",
            fmt.ggml().name(),
            t.nw,
            t.nt,
            t.waves,
            t.depth
        ),
        shape: format!("{m}x{n}x{k}"),
        us,
        flops: 2.0 * (m * n * k) as f64,
    })
}

/// Times the vendor library's f16 product (cuBLAS) at `(m, n, k)`, the dense rate the
/// generated products are measured against, after checking its result against GRETA's F16
/// product on the same data. `None` (with the reason printed) where the backend has none.
pub fn bench_vendor(
    dev: &Device,
    (m, n, k): (usize, usize, usize),
    reps: usize,
) -> Result<Option<FlopRow>> {
    // A 1x1x1 product first: a backend without the library costs no upload.
    let one = dev.upload(&[half::f16::ONE])?;
    match dev.vendor_gemm_f16(&one, &one, &mut dev.alloc::<f32>(1)?, (1, 1, 1)) {
        Err(Error::Unavailable(why)) => {
            eprintln!("no vendor reference product: {why}");
            return Ok(None);
        }
        other => other?,
    }
    let mut rng = StdRng::seed_from_u64((n * 7 + k) as u64);
    let w = random_f16(&mut rng, n * k);
    let dx = dev.upload(&random_f16(&mut rng, m * k))?;
    let copies: Vec<Buffer<half::f16>> = (0..super::rotation(w.len() * 2, 8))
        .map(|_| dev.upload(&w))
        .collect::<Result<_>>()?;
    let mut y = dev.alloc::<f32>(m * n)?;
    dev.vendor_gemm_f16(&dx, &copies[0], &mut y, (m, n, k))?;
    let theirs = dev.download(&y)?;
    let g = Gemm::new(GpuFormat::F16, Epilogue::Store, &dev.target(), m as u32);
    g.launch(
        dev,
        &dx,
        &copies[0].view::<u32>(),
        Output::F32(&mut y, n as u32),
        m as u32,
        n as u32,
        k as u32,
    )?;
    let ours: Vec<f64> = dev.download(&y)?.into_iter().map(f64::from).collect();
    let c = crate::selftest::compare(&theirs, &ours);
    if !c.finite || c.nmse > 1e-8 {
        return Err(Error::Backend(format!(
            "vendor product {m}x{n}x{k} differs from GRETA's F16 product: NMSE {:.2e}",
            c.nmse
        )));
    }
    let us = time_launches(dev, Timing::Eager, copies.len(), reps, |d, c| {
        d.vendor_gemm_f16(&dx, &copies[c], &mut y, (m, n, k))
    })?;
    Ok(Some(FlopRow {
        name: "cuBLAS F16".into(),
        shape: format!("{m}x{n}x{k}"),
        us,
        flops: 2.0 * (m * n * k) as f64,
    }))
}

/// The products of a Llama-2-7B layer in Q4_K and Q6_K at `rows` rows, and the dense f16
/// product at the same shapes (the reference rate), with each of `tiles` and of the
/// few-row products' `shapes` (`None`: the library's choice for the row count).
pub fn gemm_sweep(
    dev: &Device,
    rows: &[usize],
    tiles: &[Option<Tile>],
    shapes: &[Option<Shape>],
    timing: Timing,
    reps: usize,
) -> Result<Vec<FlopRow>> {
    let mut out = Vec::new();
    // Asked again only while the backend has the library.
    let mut vendor = true;
    for &m in rows {
        for (_, n, k) in LLAMA2_7B_PRODUCTS {
            if vendor {
                match bench_vendor(dev, (m, n, k), reps)? {
                    Some(row) => out.push(row),
                    None => vendor = false,
                }
            }
        }
        for &tile in tiles {
            for fmt in [GpuFormat::F16, GpuFormat::Q4K, GpuFormat::Q6K] {
                for (_, n, k) in LLAMA2_7B_PRODUCTS {
                    // A tile the device cannot run (too much shared memory) is reported and
                    // skipped, so that one bad candidate does not end a sweep.
                    match bench_gemm(dev, fmt, tile, (m, n, k), timing, reps) {
                        Ok(row) => out.push(row),
                        Err(e) if tile.is_some() => eprintln!("tile {tile:?} skipped: {e}"),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        for &shape in shapes {
            for fmt in [GpuFormat::Q4K, GpuFormat::Q6K] {
                for (_, n, k) in LLAMA2_7B_PRODUCTS {
                    match bench_skinny(dev, fmt, shape, (m, n, k), timing, reps) {
                        Ok(row) => out.push(row),
                        Err(e) if shape.is_some() => {
                            eprintln!("skinny shape {shape:?} skipped: {e}")
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Formats the table, each rate also as a fraction of the best dense f16 rate measured:
/// the vendor library's where it ran, else GRETA's own F16 product.
pub fn table(rows: &[FlopRow]) -> String {
    let best = |pick: &dyn Fn(&FlopRow) -> bool| {
        rows.iter()
            .filter(|r| pick(r))
            .map(FlopRow::tflops)
            .fold(0.0, f64::max)
    };
    let vendor = best(&|r| r.name.starts_with("cuBLAS"));
    let own = best(&|r| r.name.starts_with("gemm F16"));
    let dense = if vendor > 0.0 { vendor } else { own };
    let mut s = format!(
        "dense f16 product, best measured: {dense:.0} TFLOP/s ({})\n{:<26} {:<20} {:>10} {:>10} {:>9}\n",
        if vendor > 0.0 { format!("cuBLAS; GRETA's F16 product {own:.0}") } else { "GRETA's F16 product".into() },
        "kernel", "shape", "us", "TFLOP/s", "of f16"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<26} {:<20} {:>10.2} {:>10.1} {:>8.1}%\n",
            r.name,
            r.shape,
            r.us,
            r.tflops(),
            100.0 * r.tflops() / dense.max(1e-9)
        ));
    }
    s
}
