//! The C++ behind the matrix-core fragments a kernel uses: one type per fragment kind,
//! loads and stores whose per-lane positions are printed from the layout tables of
//! `crate::frag`, and the product on the target's matrix instruction (`v_mfma_*` on AMD,
//! `mma.sync` on NVIDIA). NVIDIA loads use `ldmatrix`, whose lane addresses are derived
//! from the same tables: register `j` of a fragment holds the 8 x 8 block that starts at
//! lane 0's element `j * (4 / element size)`.

use crate::frag::{lane_terms, Layout};
use crate::target::{Dialect, Target};
use crate::types::Scalar;
use crate::types::{Frag, FragRole};
use std::collections::BTreeSet;
use std::fmt::Write;

/// The C++ type of a fragment kind.
pub fn type_name(f: Frag) -> String {
    let role = match f.role {
        FragRole::A => "a",
        FragRole::B => "b",
        FragRole::C => "c",
    };
    format!("greta_frag_{role}_{}", f.elem.name())
}

const STRUCT: &str = "// Matrix-core fragments: each lane's elements of a wave-level 16 x K tile.
template <typename T, u32 N, u32 ROLE, u32 ALIGN> struct alignas(ALIGN) greta_frag {
    T v[N];
    __device__ T& operator[](u32 i) { return v[i]; }
    __device__ const T& operator[](u32 i) const { return v[i]; }
    static __device__ greta_frag splat(T x) { greta_frag f; for (u32 i = 0; i < N; ++i) f.v[i] = x; return f; }
};
// A run of consecutive elements moved in one access.
template <typename T, u32 N> struct alignas(sizeof(T) * N) greta_run { T v[N]; };
";

/// The fragment library for `frags` on `target` (empty when the kernel uses none).
pub fn helpers(frags: &BTreeSet<Frag>, target: &Target) -> String {
    if frags.is_empty() {
        return String::new();
    }
    let wave = target.wave;
    let mut out = String::from(STRUCT);
    for f in frags {
        let n = f.len(wave);
        let bytes = n * f.elem.size();
        let role = f.role as u32;
        let _ = writeln!(
            out,
            "typedef greta_frag<{}, {n}, {role}, {}> {};",
            f.elem.name(),
            bytes.min(16),
            type_name(*f)
        );
    }
    for f in frags {
        out.push_str(&store(*f, wave));
        match f.role {
            FragRole::A | FragRole::B => {
                let trans = [false, true];
                for t in trans {
                    if t && (f.role != FragRole::B || f.elem.size() != 2) {
                        continue;
                    }
                    out.push_str(&match target.dialect {
                        Dialect::Cuda => load_ldmatrix(*f, wave, t),
                        Dialect::Hip => load_generic(*f, wave, t),
                    });
                }
            }
            FragRole::C => {}
        }
    }
    for f in frags.iter().filter(|f| f.role == FragRole::A) {
        let b = Frag {
            role: FragRole::B,
            elem: f.elem,
        };
        let c = Frag {
            role: FragRole::C,
            elem: Frag::accumulator_of(f.elem),
        };
        if frags.contains(&b) && frags.contains(&c) {
            out.push_str(&mma(f.elem, target));
        }
    }
    out
}

/// `const u32 r = ...; const u32 c = ...;`: lane `l`'s part of the coordinates.
fn lane_coords(layout: &Layout) -> String {
    let expr = |col: bool| {
        let terms: Vec<String> = lane_terms(layout, col)
            .iter()
            .map(|t| {
                let shifted = if t.shift == 0 {
                    "l".to_string()
                } else {
                    format!("(l >> {}u)", t.shift)
                };
                let masked = format!("({shifted} & {}u)", t.mask);
                if t.scale == 1 {
                    masked
                } else {
                    format!("{masked} * {}u", t.scale)
                }
            })
            .collect();
        if terms.is_empty() {
            "0u".to_string()
        } else {
            terms.join(" + ")
        }
    };
    format!(
        "    const u32 l = greta_lane_id();\n    const u32 r = {};\n    const u32 c = {};\n",
        expr(false),
        expr(true)
    )
}

/// Elements that sit next to each other in memory from element 0 on: a run of 2^j when the
/// lowest j element bits step one position along the contiguous axis (at most 16 bytes).
fn run_len(f: Frag, layout: &Layout, trans: bool) -> u32 {
    let mut run = 1;
    for (b, &(dr, dc)) in layout.elem.iter().enumerate() {
        let step = if trans {
            (dr, dc) == (1 << b, 0)
        } else {
            (dr, dc) == (0, 1 << b)
        };
        if !step || 2 * run * f.elem.size() > 16 {
            break;
        }
        run *= 2;
    }
    run
}

/// The memory index of element `i`: row-major, or (for a transposed B) one row per K.
fn element_index(layout: &Layout, i: u32, trans: bool) -> String {
    let (er, ec) = layout.coord(0, i);
    if trans {
        format!("(c + {ec}u) * ld + r + {er}u")
    } else {
        format!("(r + {er}u) * ld + c + {ec}u")
    }
}

fn load_name(f: Frag, trans: bool) -> &'static str {
    match (f.role, trans) {
        (FragRole::A, _) => "greta_load_a",
        (_, false) => "greta_load_b",
        (_, true) => "greta_load_b_trans",
    }
}

/// A load that reads each lane's elements at the layout's positions, in runs.
fn load_generic(f: Frag, wave: u32, trans: bool) -> String {
    let layout = f.layout(wave);
    let (t, e) = (type_name(f), f.elem.name());
    let run = run_len(f, &layout, trans);
    let mut s = format!(
        "__device__ __forceinline__ {t} {}(const {e}* p, u32 ld) {{\n{}    {t} f;\n",
        load_name(f, trans),
        lane_coords(&layout)
    );
    for i in (0..layout.len()).step_by(run as usize) {
        let at = element_index(&layout, i, trans);
        if run == 1 {
            let _ = writeln!(s, "    f.v[{i}] = p[{at}];");
        } else {
            let _ = writeln!(s, "    {{ const greta_run<{e}, {run}> w = *reinterpret_cast<const greta_run<{e}, {run}>*>(p + {at});");
            for j in 0..run {
                let _ = writeln!(s, "      f.v[{}] = w.v[{j}];", i + j);
            }
            s.push_str("    }\n");
        }
    }
    s.push_str("    return f;\n}\n");
    s
}

/// A store of each lane's elements at the layout's positions, in runs.
fn store(f: Frag, wave: u32) -> String {
    let layout = f.layout(wave);
    let (t, e) = (type_name(f), f.elem.name());
    let run = run_len(f, &layout, false);
    let mut s = format!(
        "__device__ __forceinline__ void greta_store_frag({e}* p, u32 ld, const {t}& f) {{\n{}",
        lane_coords(&layout)
    );
    for i in (0..layout.len()).step_by(run as usize) {
        let at = element_index(&layout, i, false);
        if run == 1 {
            let _ = writeln!(s, "    p[{at}] = f.v[{i}];");
        } else {
            let _ = writeln!(s, "    {{ greta_run<{e}, {run}> w;");
            for j in 0..run {
                let _ = writeln!(s, "      w.v[{j}] = f.v[{}];", i + j);
            }
            let _ = writeln!(
                s,
                "      *reinterpret_cast<greta_run<{e}, {run}>*>(p + {at}) = w; }}"
            );
        }
    }
    s.push_str("}\n");
    s
}

/// A load by `ldmatrix.x4` (rows of 16 bytes): lane `t` addresses row `t % 8` of the block
/// register `t / 8` receives; block origins follow the layout (linear in the register index).
fn load_ldmatrix(f: Frag, wave: u32, trans: bool) -> String {
    let layout = f.layout(wave);
    let per_reg = 4 / f.elem.size();
    let origin = |reg: u32| layout.coord(0, reg * per_reg);
    let (o1, o2) = (origin(1), origin(2));
    // Each lane supplies row (t & 7) of its block: a tile row, or for a transposed B a K row.
    let (row, col) = if trans {
        (
            format!(
                "(t & 7u) + ((t >> 3) & 1u) * {}u + (t >> 4) * {}u",
                o1.1, o2.1
            ),
            format!("((t >> 3) & 1u) * {}u + (t >> 4) * {}u", o1.0, o2.0),
        )
    } else {
        (
            format!(
                "(t & 7u) + ((t >> 3) & 1u) * {}u + (t >> 4) * {}u",
                o1.0, o2.0
            ),
            format!("((t >> 3) & 1u) * {}u + (t >> 4) * {}u", o1.1, o2.1),
        )
    };
    let (t, e) = (type_name(f), f.elem.name());
    format!(
        "__device__ __forceinline__ {t} {name}(const {e}* p, u32 ld) {{
    const u32 t = greta_lane_id();
    {t} f;
    u32* w = reinterpret_cast<u32*>(f.v);
    asm volatile(\"ldmatrix.sync.aligned.m8n8.x4{tr}.shared.b16 {{%0, %1, %2, %3}}, [%4];\"
                 : \"=r\"(w[0]), \"=r\"(w[1]), \"=r\"(w[2]), \"=r\"(w[3])
                 : \"r\"(greta_smem_addr(p + ({row}) * ld + {col})));
    return f;
}}
",
        name = load_name(f, trans),
        tr = if trans { ".trans" } else { "" },
    )
}

/// `greta_mma(a, b, c)` for operands of type `elem`.
fn mma(elem: Scalar, target: &Target) -> String {
    let a = type_name(Frag {
        role: FragRole::A,
        elem,
    });
    let b = type_name(Frag {
        role: FragRole::B,
        elem,
    });
    let acc = Frag::accumulator_of(elem);
    let c = type_name(Frag {
        role: FragRole::C,
        elem: acc,
    });
    let head =
        format!("__device__ __forceinline__ {c} greta_mma(const {a}& a, const {b}& b, {c} c) {{\n");
    let body = match target.dialect {
        Dialect::Cuda => {
            // Two m16n8 instructions: B's and C's first four elements are columns 0..8.
            let (shape, ty, reg) = match elem {
                Scalar::I8 => ("m16n8k32", "s32.s8.s8.s32", "r"),
                Scalar::BF16 => ("m16n8k16", "f32.bf16.bf16.f32", "f"),
                _ => ("m16n8k16", "f32.f16.f16.f32", "f"),
            };
            let mut s = String::from(
                "    const u32* x = reinterpret_cast<const u32*>(a.v);\n    const u32* y = reinterpret_cast<const u32*>(b.v);\n",
            );
            for h in 0..2 {
                let _ = writeln!(
                    s,
                    "    asm(\"mma.sync.aligned.{shape}.row.col.{ty} {{%0, %1, %2, %3}}, {{%4, %5, %6, %7}}, {{%8, %9}}, {{%0, %1, %2, %3}};\"\n        : \"+{reg}\"(c.v[{}]), \"+{reg}\"(c.v[{}]), \"+{reg}\"(c.v[{}]), \"+{reg}\"(c.v[{}])\n        : \"r\"(x[0]), \"r\"(x[1]), \"r\"(x[2]), \"r\"(x[3]), \"r\"(y[{}]), \"r\"(y[{}]));",
                    4 * h,
                    4 * h + 1,
                    4 * h + 2,
                    4 * h + 3,
                    2 * h,
                    2 * h + 1
                );
            }
            s.push_str("    return c;\n");
            s
        }
        Dialect::Hip => {
            let call = match elem {
                Scalar::I8 if target.name == "gfx90a" => {
                    // CDNA2 has only K = 16 for i8: the two halves of each lane's K run in
                    // turn (A and B split K the same way, so the sum is unchanged).
                    "    typedef int greta_i32x4 __attribute__((ext_vector_type(4)));
    typedef int greta_i32x2 __attribute__((ext_vector_type(2)));
    const greta_i32x2 x = __builtin_bit_cast(greta_i32x2, a);
    const greta_i32x2 y = __builtin_bit_cast(greta_i32x2, b);
    greta_i32x4 d = __builtin_bit_cast(greta_i32x4, c);
    d = __builtin_amdgcn_mfma_i32_16x16x16i8(x[0], y[0], d, 0, 0, 0);
    d = __builtin_amdgcn_mfma_i32_16x16x16i8(x[1], y[1], d, 0, 0, 0);
"
                    .to_string()
                }
                Scalar::I8 => "    typedef int greta_i32x4 __attribute__((ext_vector_type(4)));
    const greta_i32x4 d = __builtin_amdgcn_mfma_i32_16x16x32_i8(__builtin_bit_cast(long, a), __builtin_bit_cast(long, b), __builtin_bit_cast(greta_i32x4, c), 0, 0, 0);
"
                .to_string(),
                Scalar::BF16 => "    typedef float greta_f32x4 __attribute__((ext_vector_type(4)));
    typedef short greta_i16x4 __attribute__((ext_vector_type(4)));
    const greta_f32x4 d = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(__builtin_bit_cast(greta_i16x4, a), __builtin_bit_cast(greta_i16x4, b), __builtin_bit_cast(greta_f32x4, c), 0, 0, 0);
"
                .to_string(),
                _ => "    typedef float greta_f32x4 __attribute__((ext_vector_type(4)));
    typedef _Float16 greta_f16x4 __attribute__((ext_vector_type(4)));
    const greta_f32x4 d = __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(greta_f16x4, a), __builtin_bit_cast(greta_f16x4, b), __builtin_bit_cast(greta_f32x4, c), 0, 0, 0);
"
                .to_string(),
            };
            format!("{call}    return __builtin_bit_cast({c}, d);\n")
        }
    };
    format!("{head}{body}}}\n")
}
