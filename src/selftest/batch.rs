//! Cases of the batched-decode kernels: rows of several sequences at once, each row with
//! its own cache slot and position, against f64 references.

use super::cases::{
    random_weights, reference_norm, reference_rows, F32_ATTENTION, NO_ROPE, Q8_INPUT, Q8_SWIGLU,
};
use super::{compare, random_f32, Case, Comparison, Tolerance};
use crate::kernels::attention::{Attention, AttentionKernel};
use crate::kernels::batch::{self, RowAttention};
use crate::kernels::matvec::{Epilogue, Inputs, Matvec, Rope};
use crate::quant::gpu::GpuFormat;
use crate::runtime::{Buffer, Device, Result};
use half::f16;
use rand::rngs::StdRng;

/// Attention through f16 caches, written in f16.
const F16_ATTENTION: Tolerance = Tolerance {
    nmse: 1e-5,
    max_rel: 1e-2,
};

/// RoPE in f32 against f64, results stored in f16 for the caches.
const F16_OUT: Tolerance = Tolerance {
    nmse: 1e-6,
    max_rel: 2e-3,
};

/// Exact: indices.
const EXACT: Tolerance = Tolerance {
    nmse: 0.0,
    max_rel: 0.0,
};

/// Rows as (slot, position): two rows of one slot (a prompt chunk's), a row at position 0,
/// one at the last position of its slot, and slots used out of order.
const ROWS: [(usize, usize); 5] = [(2, 0), (0, 149), (1, 64), (2, 70), (2, 71)];
const SLOTS: usize = 3;
const CTX: usize = 150;

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    for (d, g, n_head) in [(128usize, 1usize, 2usize), (64, 3, 6)] {
        let rows = format!("d{d} g{g} h{n_head} {} rows of {SLOTS} slots", ROWS.len());
        v.push(Case::new(
            "attention_rows",
            rows.clone(),
            F16_ATTENTION,
            move |dev, r| attention_rows_case(dev, r, d, g, n_head),
        ));
        // Chunks of 64 positions: rows of one chunk and of three (the combine).
        v.push(Case::new(
            "attention",
            format!("{rows} chunk 64"),
            F32_ATTENTION,
            move |dev, r| attention_slots_case(dev, r, d, g, n_head, 64),
        ));
        v.push(Case::new(
            "qkv_rows",
            format!("d{d} h{n_head} kv{} {} rows", n_head / g, ROWS.len()),
            F16_OUT,
            move |dev, r| qkv_rows_case(dev, r, d, n_head, n_head / g),
        ));
    }
    // Vectors in one group and in several (the last partial), at each epilogue; an input
    // wide enough for three prologue passes; the float path.
    for (fmt, epilogue, n, rows, cols) in [
        (GpuFormat::Q4K, Epilogue::Store, 3usize, 96usize, 512usize),
        (GpuFormat::Q6K, Epilogue::Store, 11, 40, 1024),
        (GpuFormat::Q8_0, Epilogue::Add, 11, 70, 5120),
        (GpuFormat::Q4K, Epilogue::Add, 6, 36, 11008),
        (GpuFormat::Q4K, Epilogue::Swiglu, 9, 64, 512),
        (GpuFormat::F16, Epilogue::Store, 5, 24, 256),
    ] {
        let name = format!("{} {epilogue:?} {n}x{rows}x{cols}", fmt.ggml());
        let tol = if epilogue == Epilogue::Swiglu {
            Q8_SWIGLU
        } else {
            Q8_INPUT
        };
        v.push(Case::new("matvec", name, tol, move |dev, r| {
            matvec_inputs_case(dev, r, fmt, epilogue, n, rows, cols)
        }));
    }
    v.push(Case::new(
        "matvec",
        format!("Q4_K+Q6_K QKV {} rows of {SLOTS} slots", ROWS.len()),
        Q8_INPUT,
        matvec_qkv_rows_case,
    ));
    for n in [3usize, 32000] {
        v.push(Case::new(
            "argmax_rows",
            format!("4 rows of {n}"),
            EXACT,
            move |dev, r| argmax_rows_case(dev, r, 4, n),
        ));
    }
    v
}

/// The positions each slot holds: up to the last row of the slot.
fn slot_len(slot: usize) -> usize {
    ROWS.iter()
        .filter(|(s, _)| *s == slot)
        .map(|(_, p)| p + 1)
        .max()
        .unwrap_or(0)
}

/// Caches of `SLOTS` slots (positions a slot has not reached hold NaN, so reading one
/// fails a case), a query per row and head, and the f64 attention of every row over its
/// slot: (K, V, Q, expected).
#[allow(clippy::type_complexity)]
fn slot_attention(
    rng: &mut StdRng,
    d: usize,
    g: usize,
    n_head: usize,
) -> (Vec<f16>, Vec<f16>, Vec<f32>, Vec<f64>) {
    let n_kv = n_head / g;
    let per_slot = n_kv * CTX * d;
    let mut k = vec![f16::NAN; SLOTS * per_slot];
    let mut vv = vec![f16::NAN; SLOTS * per_slot];
    for s in 0..SLOTS {
        for h in 0..n_kv {
            for p in 0..slot_len(s) {
                let at = s * per_slot + (h * CTX + p) * d;
                for (cache, x) in [
                    (&mut k, random_f32(rng, d, 1.0)),
                    (&mut vv, random_f32(rng, d, 1.0)),
                ] {
                    for (i, x) in x.into_iter().enumerate() {
                        cache[at + i] = f16::from_f32(x);
                    }
                }
            }
        }
    }
    let q = random_f32(rng, ROWS.len() * n_head * d, 1.0);
    let mut want = Vec::with_capacity(ROWS.len() * n_head * d);
    for (r, &(s, pos)) in ROWS.iter().enumerate() {
        for h in 0..n_head {
            let qrow = &q[(r * n_head + h) * d..][..d];
            let base = s * per_slot + (h / g) * CTX * d;
            want.extend(super::reference_attention(qrow, &k, &vv, base, pos + 1));
        }
    }
    (k, vv, q, want)
}

/// The positions and slots of `rows` (as (slot, position)) on the device.
fn row_places(dev: &Device, rows: &[(usize, usize)]) -> Result<(Buffer<u32>, Buffer<u32>)> {
    let pos: Vec<u32> = rows.iter().map(|(_, p)| *p as u32).collect();
    let slot: Vec<u32> = rows.iter().map(|(s, _)| *s as u32).collect();
    Ok((dev.upload(&pos)?, dev.upload(&slot)?))
}

fn attention_rows_case(
    dev: &Device,
    rng: &mut StdRng,
    d: usize,
    g: usize,
    n_head: usize,
) -> Result<Comparison> {
    let (k, vv, q, want) = slot_attention(rng, d, g, n_head);
    let m = ROWS.len();
    let (dq, dk, dv) = (dev.upload(&q)?, dev.upload(&k)?, dev.upload(&vv)?);
    let (dpos, dslot) = row_places(dev, &ROWS)?;
    let att = RowAttention {
        head_dim: d as u32,
        group: g as u32,
        n_head: n_head as u32,
        ctx: CTX as u32,
    };
    let mut out = dev.upload(&vec![f16::NAN; m * n_head * d])?;
    att.launch(dev, &dq, &dk, &dv, &dpos, &dslot, &mut out, m as u32)?;
    let got: Vec<f32> = dev.download(&out)?.into_iter().map(f16::to_f32).collect();
    Ok(compare(&got, &want))
}

/// Decode's chunked attention over rows of several slots, launched twice (the combine
/// counters must be back at zero for the second launch to agree).
fn attention_slots_case(
    dev: &Device,
    rng: &mut StdRng,
    d: usize,
    g: usize,
    n_head: usize,
    chunk: u32,
) -> Result<Comparison> {
    let (k, vv, q, want) = slot_attention(rng, d, g, n_head);
    let (m, n_kv) = (ROWS.len() as u32, (n_head / g) as u32);
    let (dq, dk, dv) = (dev.upload(&q)?, dev.upload(&k)?, dev.upload(&vv)?);
    let (dpos, dslot) = row_places(dev, &ROWS)?;
    let att = Attention {
        chunk,
        ..Attention::new(d as u32, g as u32, n_kv, CTX as u32)
    };
    let mut scratch = att.scratch(dev, m)?;
    let slot_len = n_kv * CTX as u32 * d as u32;
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut out = dev.upload(&vec![f32::NAN; q.len()])?;
        let rows = Inputs {
            n: m,
            slots: Some((&dslot, slot_len)),
        };
        att.launch(
            dev,
            AttentionKernel::Chunked,
            &dq,
            &dk,
            &dv,
            &dpos,
            rows,
            &mut scratch,
            &mut out,
        )?;
        got.extend(dev.download(&out)?);
    }
    let want: Vec<f64> = want.iter().chain(&want).copied().collect();
    Ok(compare(&got, &want))
}

/// Rotated Q rows, and K and V written at each row's (slot, position) and nowhere else
/// (the rest of the caches keeps its sentinel).
fn qkv_rows_case(
    dev: &Device,
    rng: &mut StdRng,
    d: usize,
    n_head: usize,
    n_kv: usize,
) -> Result<Comparison> {
    let m = ROWS.len();
    let (q_rows, kv_rows) = (n_head * d, n_kv * d);
    let rows_a = q_rows + kv_rows;
    let per_slot = n_kv * CTX * d;
    let base = 10000.0f32;
    let qk = random_f32(rng, m * rows_a, 2.0);
    let v = random_f32(rng, m * kv_rows, 2.0);
    let sentinel = f16::from_f32(-7.0);
    let (dqk, dv) = (dev.upload(&qk)?, dev.upload(&v)?);
    let mut q = dev.upload(&vec![f32::NAN; m * q_rows])?;
    let mut kc = dev.upload(&vec![sentinel; SLOTS * per_slot])?;
    let mut vc = dev.upload(&vec![sentinel; SLOTS * per_slot])?;
    let (dpos, dslot) = row_places(dev, &ROWS)?;
    let rope = Rope {
        q_rows: q_rows as u32,
        head_dim: d as u32,
        ctx: CTX as u32,
        base,
    };
    batch::qkv_rows::launch(
        dev,
        (((rows_a + kv_rows) as u32 / 2).div_ceil(256), m as u32),
        &dqk,
        &dv,
        &mut q,
        &mut kc,
        &mut vc,
        &dpos,
        &dslot,
        rows_a as u32,
        kv_rows as u32,
        q_rows as u32,
        d as u32,
        CTX as u32,
        per_slot as u32,
        rope.step(),
    )?;
    // The reference rotation of each row's Q and K pairs at its position.
    let rotated: Vec<f64> = (0..m * rows_a / 2)
        .flat_map(|i| {
            let (r, c) = (i / (rows_a / 2), 2 * (i % (rows_a / 2)));
            let p = ROWS[r].1 as f64;
            let j = (c % d) / 2;
            let angle = p * (base as f64).powf(-2.0 * j as f64 / d as f64);
            let (a, b) = (qk[r * rows_a + c] as f64, qk[r * rows_a + c + 1] as f64);
            [
                a * angle.cos() - b * angle.sin(),
                a * angle.sin() + b * angle.cos(),
            ]
        })
        .collect();
    let mut got: Vec<f32> = dev.download(&q)?;
    let mut want: Vec<f64> = (0..m)
        .flat_map(|r| rotated[r * rows_a..][..q_rows].to_vec())
        .collect();
    let (kh, vh) = (dev.download(&kc)?, dev.download(&vc)?);
    for s in 0..SLOTS {
        for h in 0..n_kv {
            for p in 0..CTX {
                let at = s * per_slot + (h * CTX + p) * d;
                let writer = ROWS.iter().position(|&row| row == (s, p));
                let (kr, vr) = (&kh[at..at + d], &vh[at..at + d]);
                match writer {
                    Some(r) => {
                        got.extend(kr.iter().chain(vr).map(|x| x.to_f32()));
                        want.extend(&rotated[r * rows_a + q_rows + h * d..][..d]);
                        want.extend(v[r * kv_rows + h * d..][..d].iter().map(|x| *x as f64));
                    }
                    None if kr.iter().chain(vr).any(|x| *x != sentinel) => {
                        got.push(f32::NAN);
                        want.push(0.0);
                    }
                    None => {}
                }
            }
        }
    }
    Ok(compare(&got, &want))
}

/// Each row's maximum planted twice (the first index must win), rows of different winners.
fn argmax_rows_case(dev: &Device, rng: &mut StdRng, m: usize, n: usize) -> Result<Comparison> {
    let mut logits = random_f32(rng, m * n, 10.0);
    let mut want = Vec::new();
    for r in 0..m {
        let (a, b) = ((r * 7 + n / 3) % n, (2 * n / 3 + r) % n);
        let (first, second) = (a.min(b), a.max(b));
        logits[r * n + first] = 50.0 + r as f32;
        logits[r * n + second] = 50.0 + r as f32;
        want.push(first as f64);
    }
    let dl = dev.upload(&logits)?;
    let mut tok = dev.upload(&vec![u32::MAX; m])?;
    batch::argmax_rows::launch::<1024>(dev, m as u32, &dl, n as u32, &mut tok)?;
    let got: Vec<f32> = dev.download(&tok)?.iter().map(|t| *t as f32).collect();
    Ok(compare(&got, &want))
}

/// The batched product at three vectors a launch, so that most cases take several groups.
fn batched(dev: &Device, fmt: GpuFormat, epilogue: Epilogue, cols: usize) -> Matvec {
    let mv = Matvec::batched(
        fmt,
        epilogue != Epilogue::Add,
        epilogue,
        &dev.target(),
        cols as u32,
    );
    Matvec {
        inputs: mv.inputs.min(3),
        ..mv
    }
}

/// NaN in place of every value of `got` whose bits differ from `alone`'s (what the same
/// vector gave launched by itself): a batched vector must not depend on its neighbours.
pub(super) fn require_alone_bits(got: &mut [f32], alone: &[f32]) {
    for (g, a) in got.iter_mut().zip(alone) {
        if g.to_bits() != a.to_bits() {
            *g = f32::NAN;
        }
    }
}

/// `n` vectors times one matrix (the norm fused in, except for the residual add), against
/// f64; then each vector launched alone must give the same bits.
fn matvec_inputs_case(
    dev: &Device,
    rng: &mut StdRng,
    fmt: GpuFormat,
    epilogue: Epilogue,
    n: usize,
    rows: usize,
    cols: usize,
) -> Result<Comparison> {
    let mv = batched(dev, fmt, epilogue, cols);
    let out = if epilogue == Epilogue::Swiglu {
        rows / 2
    } else {
        rows
    };
    let (blocks, packed) = random_weights(rng, fmt, rows, cols)?;
    let x = random_f32(rng, n * cols, 2.0);
    let nw = random_f32(rng, cols, 1.5);
    let y0 = random_f32(rng, n * out, 1.0);
    let mut want = Vec::new();
    for (i, xi) in x.chunks(cols).enumerate() {
        let input = if mv.norm {
            reference_norm(xi, &nw, 1e-5)
        } else {
            xi.to_vec()
        };
        let dots = reference_rows(fmt, &blocks, rows, &input)?;
        match epilogue {
            Epilogue::Swiglu => {
                want.extend(dots.chunks(2).map(|p| p[0] / (1.0 + (-p[0]).exp()) * p[1]))
            }
            Epilogue::Add => want.extend(
                dots.iter()
                    .zip(&y0[i * out..][..out])
                    .map(|(d, y)| d + *y as f64),
            ),
            _ => want.extend(dots),
        }
    }
    let (dw, dnw) = (dev.upload(&packed)?, dev.upload(&nw)?);
    // A vector alone takes a launch of one input slot, as a lone sequence's step does.
    let run = |x: &[f32], y0: &[f32], n: usize| -> Result<Vec<f32>> {
        let mv = mv.for_vectors(n as u32);
        let dx = dev.upload(x)?;
        let mut y = dev.upload(&if epilogue == Epilogue::Add {
            y0.to_vec()
        } else {
            vec![f32::NAN; n * out]
        })?;
        mv.launch(
            dev,
            &dw,
            &dw,
            &dx,
            &dnw,
            &mut y,
            None,
            Inputs {
                n: n as u32,
                slots: None,
            },
            rows as u32,
            0,
            cols as u32,
            1e-5,
            NO_ROPE,
        )?;
        dev.download(&y)
    };
    let mut got = run(&x, &y0, n)?;
    for i in 0..n {
        let alone = run(&x[i * cols..][..cols], &y0[i * out..][..out], 1)?;
        require_alone_bits(&mut got[i * out..][..out], &alone);
    }
    Ok(compare(&got, &want))
}

/// The QKV product of `ROWS` (Q4_K Q and K, Q6_K V): rotated Q per row, K and V at each
/// row's (slot, position) and nowhere else; each row launched alone gives the same bits.
fn matvec_qkv_rows_case(dev: &Device, rng: &mut StdRng) -> Result<Comparison> {
    let (d, n_head, n_kv, cols) = (64usize, 4usize, 2usize, 512usize);
    let m = ROWS.len();
    let (q_rows, kv_rows) = (n_head * d, n_kv * d);
    let rows_a = q_rows + kv_rows;
    let per_slot = n_kv * CTX * d;
    let base = 10000.0f32;
    let mv = Matvec {
        fmt_b: GpuFormat::Q6K,
        ..batched(dev, GpuFormat::Q4K, Epilogue::Qkv, cols)
    };
    let (qk_blocks, qk_packed) = random_weights(rng, GpuFormat::Q4K, rows_a, cols)?;
    let (v_blocks, v_packed) = random_weights(rng, GpuFormat::Q6K, kv_rows, cols)?;
    let x = random_f32(rng, m * cols, 2.0);
    let nw = random_f32(rng, cols, 1.5);
    let (dqk, dv, dnw) = (
        dev.upload(&qk_packed)?,
        dev.upload(&v_packed)?,
        dev.upload(&nw)?,
    );
    let sentinel = f16::from_f32(-7.0);
    let rope = Rope {
        q_rows: q_rows as u32,
        head_dim: d as u32,
        ctx: CTX as u32,
        base,
    };
    // Launches `rows` (as (slot, position)) over `x`: Q, and the caches.
    let run = |x: &[f32], rows: &[(usize, usize)]| -> Result<(Vec<f32>, Vec<f16>, Vec<f16>)> {
        let dx = dev.upload(x)?;
        let mut q = dev.upload(&vec![f32::NAN; rows.len() * q_rows])?;
        let mut kc: Buffer<f16> = dev.upload(&vec![sentinel; SLOTS * per_slot])?;
        let mut vc: Buffer<f16> = dev.upload(&vec![sentinel; SLOTS * per_slot])?;
        let (dpos, dslot) = row_places(dev, rows)?;
        mv.for_vectors(rows.len() as u32).launch(
            dev,
            &dqk,
            &dv,
            &dx,
            &dnw,
            &mut q,
            Some((&mut kc, &mut vc, &dpos)),
            Inputs {
                n: rows.len() as u32,
                slots: Some((&dslot, per_slot as u32)),
            },
            rows_a as u32,
            kv_rows as u32,
            cols as u32,
            1e-5,
            rope,
        )?;
        Ok((dev.download(&q)?, dev.download(&kc)?, dev.download(&vc)?))
    };
    let (mut got, kh, vh) = run(&x, &ROWS)?;
    let mut want = Vec::new();
    let mut rotated = Vec::new();
    let mut values = Vec::new();
    for (r, xr) in x.chunks(cols).enumerate() {
        let input = reference_norm(xr, &nw, 1e-5);
        let mut qk = reference_rows(GpuFormat::Q4K, &qk_blocks, rows_a, &input)?;
        let p = ROWS[r].1 as f64;
        for (i, pair) in qk.chunks_mut(2).enumerate() {
            let j = (2 * i % d) / 2;
            let angle = p * (base as f64).powf(-2.0 * j as f64 / d as f64);
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * angle.cos() - b * angle.sin();
            pair[1] = a * angle.sin() + b * angle.cos();
        }
        want.extend(&qk[..q_rows]);
        rotated.push(qk);
        values.push(reference_rows(GpuFormat::Q6K, &v_blocks, kv_rows, &input)?);
        let (alone, ..) = run(xr, &ROWS[r..r + 1])?;
        require_alone_bits(&mut got[r * q_rows..][..q_rows], &alone);
    }
    for s in 0..SLOTS {
        for h in 0..n_kv {
            for p in 0..CTX {
                let at = s * per_slot + (h * CTX + p) * d;
                let (kr, vr) = (&kh[at..at + d], &vh[at..at + d]);
                match ROWS.iter().position(|&row| row == (s, p)) {
                    Some(r) => {
                        got.extend(kr.iter().chain(vr).map(|x| x.to_f32()));
                        want.extend(&rotated[r][q_rows + h * d..][..d]);
                        want.extend(&values[r][h * d..][..d]);
                    }
                    None if kr.iter().chain(vr).any(|x| *x != sentinel) => {
                        got.push(f32::NAN);
                        want.push(0.0);
                    }
                    None => {}
                }
            }
        }
    }
    Ok(compare(&got, &want))
}
