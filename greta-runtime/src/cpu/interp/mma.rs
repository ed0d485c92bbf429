//! The matrix-core product of one wave, `d = c + a · bᵀ`, over fragments spread across the
//! lanes by the layouts of `greta_codegen::frag`: the tiles are gathered from every lane's
//! slots, multiplied exactly (f16/bf16 products summed in f64 and rounded once to f32; i8
//! products in wrapping i32 arithmetic), and scattered back into the result's slots.

use super::code::Slot;
use greta_codegen::{Frag, FragRole, Scalar};
use half::{bf16, f16};

/// A fragment's elements as a row-major tile, read from the wave's slots.
fn gather(frag: Frag, wave: u32, regs: &[u64], at: Slot, value: impl Fn(u64) -> f64) -> Vec<f64> {
    let layout = frag.layout(wave);
    let cols = frag.cols();
    let mut tile = vec![0.0; (frag.rows() * cols) as usize];
    for lane in 0..wave {
        for i in 0..layout.len() {
            let (r, c) = layout.coord(lane, i);
            let bits = regs[(at as usize + i as usize) * wave as usize + lane as usize];
            tile[(r * cols + c) as usize] = value(bits);
        }
    }
    tile
}

/// Runs the product of fragments of `input` elements at slots `a`, `b`, `c` into `dst`.
pub fn run(input: Scalar, wave: u32, regs: &mut [u64], dst: Slot, a: Slot, b: Slot, c: Slot) {
    let value = move |bits: u64| -> f64 {
        match input {
            Scalar::F16 => f16::from_bits(bits as u16).to_f64(),
            Scalar::BF16 => bf16::from_bits(bits as u16).to_f64(),
            _ => bits as u8 as i8 as f64,
        }
    };
    let acc = Frag::accumulator_of(input);
    let fa = Frag {
        role: FragRole::A,
        elem: input,
    };
    let fb = Frag {
        role: FragRole::B,
        elem: input,
    };
    let fc = Frag {
        role: FragRole::C,
        elem: acc,
    };
    let integer = acc == Scalar::I32;
    let acc_value = move |bits: u64| -> f64 {
        if integer {
            bits as u32 as i32 as f64
        } else {
            f32::from_bits(bits as u32) as f64
        }
    };
    let ta = gather(fa, wave, regs, a, value);
    let tb = gather(fb, wave, regs, b, value);
    let tc = gather(fc, wave, regs, c, acc_value);
    let k = fa.cols() as usize;
    let layout = fc.layout(wave);
    for lane in 0..wave {
        for i in 0..layout.len() {
            let (m, n) = layout.coord(lane, i);
            let (m, n) = (m as usize, n as usize);
            let dot: f64 = (0..k).map(|j| ta[m * k + j] * tb[n * k + j]).sum();
            let bits = if integer {
                // Every product is below 2^14 and 32 of them below 2^19: exact in f64.
                (tc[m * 16 + n] as i64).wrapping_add(dot as i64) as i32 as u32 as u64
            } else {
                ((tc[m * 16 + n] + dot) as f32).to_bits() as u64
            };
            regs[(dst as usize + i as usize) * wave as usize + lane as usize] = bits;
        }
    }
}
