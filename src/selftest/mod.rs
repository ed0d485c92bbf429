//! `greta selftest`: every built-in kernel on fresh random inputs (never zeros; several
//! shapes including ragged tails) against an independent plain-Rust reference computed in
//! f64, on any device. Outputs are poisoned with NaN before each launch so an unwritten
//! element fails the comparison.

pub mod batch;
pub mod cases;
pub mod graph;
pub mod matrix;

use crate::runtime::{Device, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Pass thresholds for one case.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Normalised mean squared error: sum((got-ref)^2) / sum(ref^2).
    pub nmse: f64,
    /// Largest |got-ref| relative to the largest |ref|.
    pub max_rel: f64,
}

/// Errors of a result against its reference.
#[derive(Clone, Copy, Debug)]
pub struct Comparison {
    pub nmse: f64,
    pub max_rel: f64,
    /// True if every output was finite.
    pub finite: bool,
}

/// Runs a case on a device with a seeded random stream.
type CaseFn = dyn Fn(&Device, &mut StdRng) -> Result<Comparison> + Send + Sync;

/// One kernel run on one shape.
pub struct Case {
    pub kernel: &'static str,
    pub shape: String,
    pub tolerance: Tolerance,
    run: Box<CaseFn>,
}

/// The result of a case.
pub struct Outcome {
    pub kernel: &'static str,
    pub shape: String,
    pub tolerance: Tolerance,
    pub result: std::result::Result<Comparison, String>,
}

impl Outcome {
    /// True if the kernel ran and matched its reference within tolerance.
    pub fn passed(&self) -> bool {
        matches!(&self.result, Ok(c) if c.finite && c.nmse <= self.tolerance.nmse && c.max_rel <= self.tolerance.max_rel)
    }
}

impl Case {
    fn new(
        kernel: &'static str,
        shape: String,
        tolerance: Tolerance,
        run: impl Fn(&Device, &mut StdRng) -> Result<Comparison> + Send + Sync + 'static,
    ) -> Case {
        Case {
            kernel,
            shape,
            tolerance,
            run: Box::new(run),
        }
    }
}

/// Every case of every built-in kernel.
pub fn cases() -> Vec<Case> {
    let mut all = cases::all();
    all.extend(matrix::all());
    all.extend(matrix::gemm_cases());
    all.extend(matrix::skinny_cases());
    all.extend(matrix::attention_cases());
    all.extend(batch::all());
    all
}

/// Runs the cases whose kernel is in `kernels` (all if empty), each with its own seeded
/// random stream.
pub fn run(dev: &Device, kernels: &[String], seed: u64) -> Vec<Outcome> {
    cases()
        .into_iter()
        .filter(|c| kernels.is_empty() || kernels.iter().any(|k| k == c.kernel))
        .enumerate()
        .map(|(i, c)| {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
            Outcome {
                kernel: c.kernel,
                shape: c.shape.clone(),
                tolerance: c.tolerance,
                result: (c.run)(dev, &mut rng).map_err(|e| e.to_string()),
            }
        })
        .collect()
}

/// Formats outcomes as the selftest table.
pub fn table(outcomes: &[Outcome], device: &Device) -> String {
    let wave = device.target().wave;
    let mut s = format!(
        "{:<18} {:<22} {:>4} {:>10} {:>10} {:>10}  {}\n",
        "kernel", "shape", "wave", "max rel", "NMSE", "tol NMSE", "result"
    );
    for o in outcomes {
        match &o.result {
            Ok(c) => s.push_str(&format!(
                "{:<18} {:<22} {:>4} {:>10.2e} {:>10.2e} {:>10.0e}  {}\n",
                o.kernel,
                o.shape,
                wave,
                c.max_rel,
                c.nmse,
                o.tolerance.nmse,
                if o.passed() { "pass" } else { "FAIL" }
            )),
            Err(e) => s.push_str(&format!(
                "{:<18} {:<22} {:>4}  FAIL: {e}\n",
                o.kernel, o.shape, wave
            )),
        }
    }
    s
}

/// Attention of query `q` (one head of `q.len()` dimensions) over the first `len` keys and
/// values of caches whose rows of `q.len()` start at element `base`, in f64:
/// `softmax(q · k / sqrt(d)) · v`.
pub fn reference_attention(
    q: &[f32],
    k: &[half::f16],
    v: &[half::f16],
    base: usize,
    len: usize,
) -> Vec<f64> {
    let d = q.len();
    let scores: Vec<f64> = (0..len)
        .map(|p| {
            (0..d)
                .map(|i| q[i] as f64 * k[base + p * d + i].to_f64())
                .sum::<f64>()
                / (d as f64).sqrt()
        })
        .collect();
    let top = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
    let total: f64 = e.iter().sum();
    (0..d)
        .map(|i| {
            e.iter()
                .enumerate()
                .map(|(p, w)| w * v[base + p * d + i].to_f64())
                .sum::<f64>()
                / total
        })
        .collect()
}

/// Compares a device result with its f64 reference.
pub fn compare(got: &[f32], reference: &[f64]) -> Comparison {
    assert_eq!(
        got.len(),
        reference.len(),
        "result and reference lengths differ"
    );
    let mut err2 = 0.0;
    let mut ref2 = 0.0;
    let mut max_err: f64 = 0.0;
    let mut max_ref: f64 = 0.0;
    let mut finite = true;
    for (&g, &r) in got.iter().zip(reference) {
        finite &= g.is_finite();
        let d = g as f64 - r;
        err2 += d * d;
        ref2 += r * r;
        max_err = max_err.max(d.abs());
        max_ref = max_ref.max(r.abs());
    }
    Comparison {
        nmse: if ref2 > 0.0 { err2 / ref2 } else { err2 },
        max_rel: if max_ref > 0.0 {
            max_err / max_ref
        } else {
            max_err
        },
        finite: finite && err2.is_finite(),
    }
}

/// `n` values uniform in `[-scale, scale]`, bounded away from zero in magnitude so that no
/// input is accidentally zero.
pub fn random_f32(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let m: f32 = rng.gen_range(0.01..1.0);
            if rng.gen_bool(0.5) {
                m * scale
            } else {
                -m * scale
            }
        })
        .collect()
}
