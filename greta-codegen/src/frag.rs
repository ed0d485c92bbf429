//! Matrix-core fragments: the wave-level tiles that one matrix instruction multiplies, and
//! the one definition of how their elements are spread over the lanes of a wave on each
//! target. The front end derives each lane's coordinates from these tables, the printer
//! derives the generated loads and stores from them, and the CPU interpreter executes
//! loads, stores and products through them, so a layout mistake anywhere shows up as a
//! wrong number on the CPU backend.
//!
//! Every fragment is 16 x 16 output positions: `C += A · Bᵀ` with A a 16 x K tile (rows of
//! the left operand), B a 16 x K tile (rows of the right operand stored as the rows of
//! `W` in `Y = X · Wᵀ`) and C the 16 x 16 accumulator. K is 16 for f16 and bf16 inputs
//! (into f32) and 32 for i8 inputs (into i32). Wave 64 uses CDNA's
//! `v_mfma_*_16x16x16` / `16x16x32` register layouts; wave 32 uses the layouts of
//! `mma.sync.m16n8k16` / `m16n8k32`, two instructions per fragment (one per 8 columns).

use crate::types::{Frag, FragRole, Scalar};
use std::fmt;

/// Where each lane's elements of a fragment sit: every bit of the lane index and of the
/// element index adds a fixed (row, column) offset. (These are the "linear" layouts of
/// matrix instructions: distinct bits never add to the same offset.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset added by each lane-index bit, lowest first (5 bits at wave 32, 6 at 64).
    pub lane: &'static [(u32, u32)],
    /// Offset added by each element-index bit, lowest first.
    pub elem: &'static [(u32, u32)],
}

impl Layout {
    /// The (row, column) of element `i` of lane `lane`.
    pub fn coord(&self, lane: u32, i: u32) -> (u32, u32) {
        let add = |bits: &[(u32, u32)], v: u32, acc: (u32, u32)| {
            bits.iter()
                .enumerate()
                .filter(|(b, _)| v >> b & 1 == 1)
                .fold(acc, |(r, c), (_, (dr, dc))| (r + dr, c + dc))
        };
        add(self.elem, i, add(self.lane, lane, (0, 0)))
    }

    /// Elements each lane holds.
    pub fn len(&self) -> u32 {
        1 << self.elem.len()
    }

    /// Never empty: a fragment holds at least one element per lane.
    pub fn is_empty(&self) -> bool {
        false
    }
}

// Wave 32 (mma.sync): lane = 4 * group + thread-in-group; the group picks the row (A, C)
// or the output column (B), the thread pairs (16-bit) or quads (8-bit) of K.
const W32_LANE_16: &[(u32, u32)] = &[(0, 2), (0, 4), (1, 0), (2, 0), (4, 0)];
const W32_LANE_8: &[(u32, u32)] = &[(0, 4), (0, 8), (1, 0), (2, 0), (4, 0)];
const W32_A_16: Layout = Layout {
    lane: W32_LANE_16,
    elem: &[(0, 1), (8, 0), (0, 8)],
};
const W32_B_16: Layout = Layout {
    lane: W32_LANE_16,
    elem: &[(0, 1), (0, 8), (8, 0)],
};
const W32_A_8: Layout = Layout {
    lane: W32_LANE_8,
    elem: &[(0, 1), (0, 2), (8, 0), (0, 16)],
};
const W32_B_8: Layout = Layout {
    lane: W32_LANE_8,
    elem: &[(0, 1), (0, 2), (0, 16), (8, 0)],
};
const W32_C: Layout = Layout {
    lane: W32_LANE_16,
    elem: &[(0, 1), (8, 0), (0, 8)],
};

// Wave 64 (MFMA): the low four lane bits pick the row (A, B) or column (C), the high two
// a run of K (A, B) or of rows (C).
const W64_A_16: Layout = Layout {
    lane: &[(1, 0), (2, 0), (4, 0), (8, 0), (0, 4), (0, 8)],
    elem: &[(0, 1), (0, 2)],
};
const W64_A_8: Layout = Layout {
    lane: &[(1, 0), (2, 0), (4, 0), (8, 0), (0, 8), (0, 16)],
    elem: &[(0, 1), (0, 2), (0, 4)],
};
const W64_C: Layout = Layout {
    lane: &[(0, 1), (0, 2), (0, 4), (0, 8), (4, 0), (8, 0)],
    elem: &[(1, 0), (2, 0)],
};

/// Why a fragment type or product is not available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragError(pub String);

impl fmt::Display for FragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Frag {
    /// A fragment type, if matrix cores take that element type in that role.
    pub fn new(role: FragRole, elem: Scalar) -> Result<Frag, FragError> {
        let ok = match role {
            FragRole::A | FragRole::B => matches!(elem, Scalar::F16 | Scalar::BF16 | Scalar::I8),
            FragRole::C => matches!(elem, Scalar::F32 | Scalar::I32),
        };
        if ok {
            Ok(Frag { role, elem })
        } else {
            Err(FragError(match role {
                FragRole::C => format!("accumulator fragments hold `f32` (f16/bf16 products) or `i32` (i8 products), not `{elem}`"),
                _ => format!("operand fragments hold `f16`, `bf16` or `i8`, not `{elem}`"),
            }))
        }
    }

    /// The accumulator element type of products of operands of type `input`.
    pub fn accumulator_of(input: Scalar) -> Scalar {
        if input == Scalar::I8 {
            Scalar::I32
        } else {
            Scalar::F32
        }
    }

    /// The depth K of one product step for operands of type `input` (16, or 32 for i8).
    pub fn depth_of(input: Scalar) -> u32 {
        if input == Scalar::I8 {
            32
        } else {
            16
        }
    }

    /// Rows of the fragment's tile (always 16).
    pub fn rows(self) -> u32 {
        16
    }

    /// Columns of the fragment's tile: K for operands, 16 for the accumulator.
    pub fn cols(self) -> u32 {
        match self.role {
            FragRole::C => 16,
            _ => Frag::depth_of(self.elem),
        }
    }

    /// The layout at wavefront size `wave` (32 or 64).
    pub fn layout(self, wave: u32) -> Layout {
        let byte = self.elem.size() == 1;
        match (wave, self.role, byte) {
            (64, FragRole::C, _) => W64_C,
            (64, _, false) => W64_A_16,
            (64, _, true) => W64_A_8,
            (_, FragRole::C, _) => W32_C,
            (_, FragRole::A, false) => W32_A_16,
            (_, FragRole::A, true) => W32_A_8,
            (_, FragRole::B, false) => W32_B_16,
            (_, FragRole::B, true) => W32_B_8,
        }
    }

    /// Elements each lane holds at wavefront size `wave`.
    pub fn len(self, wave: u32) -> u32 {
        self.rows() * self.cols() / wave
    }

    /// The DSL spelling, e.g. `FragA<f16>`.
    pub fn name(self) -> String {
        let role = match self.role {
            FragRole::A => "A",
            FragRole::B => "B",
            FragRole::C => "C",
        };
        format!("Frag{role}<{}>", self.elem)
    }
}

impl fmt::Display for Frag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One step of a coordinate expression: `((lane >> shift) & mask) * scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneTerm {
    pub shift: u32,
    pub mask: u32,
    pub scale: u32,
}

/// The lane-dependent part of a row or column coordinate as few shift-mask-scale terms:
/// runs of consecutive lane bits with doubling offsets merge into one term.
pub fn lane_terms(layout: &Layout, col: bool) -> Vec<LaneTerm> {
    let offset = |b: usize| {
        let (r, c) = layout.lane[b];
        if col {
            c
        } else {
            r
        }
    };
    let mut terms: Vec<LaneTerm> = Vec::new();
    for b in 0..layout.lane.len() {
        let v = offset(b);
        if v == 0 {
            continue;
        }
        match terms.last_mut() {
            Some(t)
                if t.shift + t.mask.count_ones() == b as u32
                    && t.scale << t.mask.count_ones() == v =>
            {
                t.mask = t.mask << 1 | 1;
            }
            _ => terms.push(LaneTerm {
                shift: b as u32,
                mask: 1,
                scale: v,
            }),
        }
    }
    terms
}

/// The bits of a lane index (`lane`) or element index that move a fragment's row (or,
/// with `col`, its column), ordered by the offset they add: bit `r` of the compressed index
/// they form is the `r`-th of them. Over the columns of an operand fragment, the lane's
/// bits give its part of K (`part()`) and the element's its slot in the lane's run
/// (`slot(i)`); over the rows, the element's bits give which of the lane's rows it is on
/// (`line(i)`).
pub fn carrying_bits(bits: &[(u32, u32)], col: bool) -> Vec<u32> {
    let mut v: Vec<(u32, u32)> = bits
        .iter()
        .enumerate()
        .map(|(b, &(dr, dc))| (if col { dc } else { dr }, b as u32))
        .filter(|(off, _)| *off != 0)
        .collect();
    v.sort();
    v.into_iter().map(|(_, b)| b).collect()
}

/// The index formed by the bits `bits` of `v` (the first of them lowest).
pub fn compress(v: u32, bits: &[u32]) -> u32 {
    bits.iter()
        .enumerate()
        .map(|(r, b)| (v >> b & 1) << r)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frags() -> Vec<Frag> {
        let mut v = Vec::new();
        for e in [Scalar::F16, Scalar::BF16, Scalar::I8] {
            v.push(Frag::new(FragRole::A, e).unwrap());
            v.push(Frag::new(FragRole::B, e).unwrap());
        }
        v.push(Frag::new(FragRole::C, Scalar::F32).unwrap());
        v.push(Frag::new(FragRole::C, Scalar::I32).unwrap());
        v
    }

    /// Every layout places each tile position in exactly one (lane, element).
    #[test]
    fn layouts_cover_each_tile_position_once() {
        for wave in [32, 64] {
            for f in all_frags() {
                let l = f.layout(wave);
                assert_eq!(
                    l.lane.len() as u32,
                    wave.trailing_zeros(),
                    "{f} wave {wave}"
                );
                assert_eq!(l.len(), f.len(wave), "{f} wave {wave}");
                let mut seen = vec![false; (f.rows() * f.cols()) as usize];
                for lane in 0..wave {
                    for i in 0..l.len() {
                        let (r, c) = l.coord(lane, i);
                        assert!(r < f.rows() && c < f.cols(), "{f} wave {wave}: ({r}, {c})");
                        let at = (r * f.cols() + c) as usize;
                        assert!(!seen[at], "{f} wave {wave}: ({r}, {c}) twice");
                        seen[at] = true;
                    }
                }
            }
        }
    }

    /// The instructions' documented positions: mma.sync's A element 2 of lane 5 is row
    /// 9 (group 1 + 8), column 2 (thread 1 * 2); MFMA's C element 3 of lane 37 is row
    /// 2 * 4 + 3 = 11, column 5.
    #[test]
    fn layouts_match_the_instruction_definitions() {
        let a = Frag::new(FragRole::A, Scalar::F16).unwrap();
        assert_eq!(a.layout(32).coord(5, 2), (9, 2));
        assert_eq!(a.layout(32).coord(5, 4), (1, 10));
        let c = Frag::new(FragRole::C, Scalar::F32).unwrap();
        assert_eq!(c.layout(64).coord(37, 3), (11, 5));
        assert_eq!(c.layout(32).coord(6, 5), (1, 13));
        let b8 = Frag::new(FragRole::B, Scalar::I8).unwrap();
        assert_eq!(b8.layout(32).coord(7, 9), (9, 13));
        assert_eq!(a.layout(64).coord(17, 2), (1, 6));
    }

    #[test]
    fn lane_terms_reproduce_the_lane_offsets() {
        for wave in [32, 64] {
            for f in all_frags() {
                let l = f.layout(wave);
                for col in [false, true] {
                    let terms = lane_terms(&l, col);
                    for lane in 0..wave {
                        let v: u32 = terms
                            .iter()
                            .map(|t| ((lane >> t.shift) & t.mask) * t.scale)
                            .sum();
                        let (r, c) = l.coord(lane, 0);
                        assert_eq!(v, if col { c } else { r }, "{f} wave {wave} lane {lane}");
                    }
                }
            }
        }
        let a = Frag::new(FragRole::A, Scalar::F16).unwrap();
        assert_eq!(
            lane_terms(&a.layout(32), false).len(),
            1,
            "rows: (lane >> 2) & 7"
        );
    }

    #[test]
    fn only_matrix_core_types_make_fragments() {
        assert!(Frag::new(FragRole::A, Scalar::F32).is_err());
        assert!(Frag::new(FragRole::C, Scalar::F16).is_err());
        assert_eq!(Frag::depth_of(Scalar::I8), 32);
        assert_eq!(Frag::new(FragRole::A, Scalar::I8).unwrap().len(64), 8);
        assert_eq!(Frag::new(FragRole::C, Scalar::F32).unwrap().len(32), 8);
    }

    /// An operand's column is a function of (part, slot) alone, the same one for A and B:
    /// a kernel that permutes K by `part() * run + slot(i)` multiplies matching values, and
    /// each lane's run covers `run` columns of every one of its rows.
    #[test]
    fn parts_and_slots_number_the_columns_alike_for_a_and_b() {
        for wave in [32, 64] {
            for e in [Scalar::F16, Scalar::BF16, Scalar::I8] {
                let mut col_of = std::collections::HashMap::new();
                for role in [FragRole::A, FragRole::B] {
                    let f = Frag::new(role, e).unwrap();
                    let l = f.layout(wave);
                    let (lane_bits, elem_bits) =
                        (carrying_bits(l.lane, true), carrying_bits(l.elem, true));
                    let line_bits = carrying_bits(l.elem, false);
                    assert_eq!(lane_bits.len(), 2, "{f} wave {wave}: four parts of K");
                    let run = 1 << elem_bits.len();
                    assert_eq!(run * 4, f.cols(), "{f} wave {wave}");
                    for lane in 0..wave {
                        let part = compress(lane, &lane_bits);
                        let mut rows = std::collections::HashMap::new();
                        for i in 0..l.len() {
                            let (r, c) = l.coord(lane, i);
                            let slot = compress(i, &elem_bits);
                            let at = part * run + slot;
                            assert_eq!(
                                *col_of.entry((at, wave, e)).or_insert(c),
                                c,
                                "{f} wave {wave}"
                            );
                            let line = compress(i, &line_bits);
                            assert_eq!(
                                *rows.entry(line).or_insert(r),
                                r,
                                "{f} wave {wave} lane {lane}"
                            );
                        }
                        assert_eq!(rows.len() as u32 * run, l.len(), "{f} wave {wave}");
                    }
                }
            }
        }
    }
}
