//! The graph test: a chain of small dependent launches captured once and replayed, checked
//! to give bit-identical results to eager launches, with the per-kernel cost of each.

use crate::kernel;
use crate::runtime::{Device, Result};

/// One dependent step: `x = x * 0.5 + b` element-wise (each launch reads the previous one's
/// output, so the chain has a strict order).
#[kernel(block = 256)]
pub fn chain_step(x: &mut [f32], n: u32, b: f32) {
    let i = block_idx() * BLOCK + thread_idx();
    if i < n {
        x[i] = x[i] * 0.5 + b;
    }
}

/// What the graph test measured.
#[derive(Clone, Copy, Debug)]
pub struct GraphReport {
    pub launches: usize,
    pub replays: usize,
    /// Median microseconds per kernel, launched one by one.
    pub eager_us: f64,
    /// Median microseconds per kernel, replayed from the graph.
    pub graph_us: f64,
    /// True if eager and replayed chains produced the same bits.
    pub identical: bool,
    /// True if, after updating the graph to a new kernel parameter, its replay matched
    /// eager launches with that parameter bit for bit.
    pub updated_identical: bool,
}

/// Captures `launches` dependent launches, replays the graph `replays` times, and compares
/// with the same work launched eagerly.
pub fn run(dev: &Device, launches: usize, replays: usize) -> Result<GraphReport> {
    let n = 4096usize;
    let init: Vec<f32> = (0..n)
        .map(|i| (i as f32 * 0.37).sin() * 100.0 + 3.0)
        .collect();
    let grid = n.div_ceil(256) as u32;
    let chain = |d: &Device, x: &mut crate::runtime::Buffer<f32>, b: f32| -> Result<()> {
        for _ in 0..launches {
            chain_step::launch(d, grid, x, n as u32, b)?;
        }
        Ok(())
    };

    let mut eager = dev.upload(&init)?;
    chain(dev, &mut eager, 1.0)?; // warm-up: compiles and loads the kernel before timing
    dev.write(&mut eager, 0, &init)?;
    let mut eager_ms = Vec::with_capacity(replays);
    for _ in 0..replays {
        eager_ms.push(dev.time(|d| chain(d, &mut eager, 1.0))?);
    }

    let mut replayed = dev.upload(&init)?;
    let mut graph = dev.capture(|d| chain(d, &mut replayed, 1.0))?;
    dev.replay(&graph)?; // warm-up: the first replay uploads the graph
    dev.write(&mut replayed, 0, &init)?;
    let mut graph_ms = Vec::with_capacity(replays);
    for _ in 0..replays {
        graph_ms.push(dev.time(|d| d.replay(&graph))?);
    }
    dev.synchronize()?;
    let identical = dev
        .download(&eager)?
        .iter()
        .zip(dev.download(&replayed)?)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    // Change the kernels' parameter, update the graph, and compare once more.
    dev.update(&mut graph, |d| chain(d, &mut replayed, 2.0))?;
    dev.write(&mut replayed, 0, &init)?;
    dev.write(&mut eager, 0, &init)?;
    dev.replay(&graph)?;
    chain(dev, &mut eager, 2.0)?;
    let updated_identical = dev
        .download(&eager)?
        .iter()
        .zip(dev.download(&replayed)?)
        .all(|(a, b)| a.to_bits() == b.to_bits())
        && dev
            .download(&replayed)?
            .iter()
            .zip(&init)
            .any(|(a, b)| a != b);
    let per_kernel_us = |ms: &mut Vec<f64>| median(ms) * 1e3 / launches as f64;
    Ok(GraphReport {
        launches: graph.launches(),
        replays,
        eager_us: per_kernel_us(&mut eager_ms),
        graph_us: per_kernel_us(&mut graph_ms),
        identical,
        updated_identical,
    })
}

/// Median of a non-empty sample.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
