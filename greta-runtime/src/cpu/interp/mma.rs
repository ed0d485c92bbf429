//! The matrix-core product of one wave, `d = c + a · bᵀ`, over fragments spread across the
//! lanes by the layouts of `greta_codegen::frag`: the tiles are gathered from every lane's
//! slots, multiplied exactly (f16/bf16 products summed in f64 and rounded once to f32; i8
//! products in wrapping i32 arithmetic), and scattered back into the result's slots.

use super::code::Slot;
use greta_codegen::{Frag, FragRole, Scalar};
use half::{bf16, f16};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A layout's (row, column) per register slot.
type Positions = Rc<[(usize, usize)]>;

thread_local! {
    /// Each layout's tile positions, computed once per thread: walking a layout's bits for
    /// every element of every product was most of the interpreter's time in tiled kernels.
    static POSITIONS: RefCell<HashMap<(Frag, u32), Positions>> = RefCell::new(HashMap::new());
}

/// The (row, column) of every slot of `frag` at `wave`, element-major: entry `i * wave +
/// lane` is element `i` of lane `lane`, as the register file orders them.
pub(super) fn positions(frag: Frag, wave: u32) -> Positions {
    POSITIONS.with(|p| {
        p.borrow_mut()
            .entry((frag, wave))
            .or_insert_with(|| {
                let layout = frag.layout(wave);
                (0..layout.len())
                    .flat_map(|i| {
                        (0..wave).map(move |lane| {
                            let (r, c) = layout.coord(lane, i);
                            (r as usize, c as usize)
                        })
                    })
                    .collect()
            })
            .clone()
    })
}

/// The most elements a fragment tile has (16 x 32, an 8-bit operand).
const TILE: usize = 512;

/// A fragment's elements as a row-major tile, read from the wave's slots.
fn gather(
    frag: Frag,
    wave: u32,
    regs: &[u64],
    at: Slot,
    value: impl Fn(u64) -> f64,
) -> [f64; TILE] {
    let cols = frag.cols() as usize;
    let mut tile = [0.0; TILE];
    let base = at as usize * wave as usize;
    for (slot, (r, c)) in positions(frag, wave).iter().enumerate() {
        tile[r * cols + c] = value(regs[base + slot]);
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
    let base = dst as usize * wave as usize;
    for (slot, &(m, n)) in positions(fc, wave).iter().enumerate() {
        let dot: f64 = ta[m * k..][..k]
            .iter()
            .zip(&tb[n * k..][..k])
            .map(|(x, y)| x * y)
            .sum();
        let bits = if integer {
            // Every product is below 2^14 and 32 of them below 2^19: exact in f64.
            (tc[m * 16 + n] as i64).wrapping_add(dot as i64) as i32 as u32 as u64
        } else {
            ((tc[m * 16 + n] + dot) as f32).to_bits() as u64
        };
        regs[base + slot] = bits;
    }
}
