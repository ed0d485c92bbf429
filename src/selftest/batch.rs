//! Cases of the batched-decode kernels: rows of several sequences at once, each row with
//! its own cache slot and position, against f64 references.

use super::{compare, random_f32, Case, Comparison, Tolerance};
use crate::kernels::batch::{self, RowAttention};
use crate::kernels::matvec::Rope;
use crate::runtime::{Device, Result};
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
        v.push(Case::new(
            "attention_rows",
            format!("d{d} g{g} h{n_head} {} rows of {SLOTS} slots", ROWS.len()),
            F16_ATTENTION,
            move |dev, r| attention_rows_case(dev, r, d, g, n_head),
        ));
        v.push(Case::new(
            "qkv_rows",
            format!("d{d} h{n_head} kv{} {} rows", n_head / g, ROWS.len()),
            F16_OUT,
            move |dev, r| qkv_rows_case(dev, r, d, n_head, n_head / g),
        ));
    }
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

fn attention_rows_case(
    dev: &Device,
    rng: &mut StdRng,
    d: usize,
    g: usize,
    n_head: usize,
) -> Result<Comparison> {
    let n_kv = n_head / g;
    let per_slot = n_kv * CTX * d;
    // Positions a slot has not reached hold NaN: reading one fails the case.
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
    let m = ROWS.len();
    let q = random_f32(rng, m * n_head * d, 1.0);
    let mut want = Vec::with_capacity(m * n_head * d);
    for (r, &(s, pos)) in ROWS.iter().enumerate() {
        for h in 0..n_head {
            let qrow = &q[(r * n_head + h) * d..][..d];
            let base = s * per_slot + (h / g) * CTX * d;
            want.extend(super::reference_attention(qrow, &k, &vv, base, pos + 1));
        }
    }
    let (dq, dk, dv) = (dev.upload(&q)?, dev.upload(&k)?, dev.upload(&vv)?);
    let pos: Vec<u32> = ROWS.iter().map(|(_, p)| *p as u32).collect();
    let slot: Vec<u32> = ROWS.iter().map(|(s, _)| *s as u32).collect();
    let (dpos, dslot) = (dev.upload(&pos)?, dev.upload(&slot)?);
    let mut out = dev.upload(&vec![f16::NAN; m * n_head * d])?;
    let att = RowAttention {
        head_dim: d as u32,
        group: g as u32,
        n_head: n_head as u32,
        ctx: CTX as u32,
    };
    att.launch(dev, &dq, &dk, &dv, &dpos, &dslot, &mut out, m as u32)?;
    let got: Vec<f32> = dev.download(&out)?.into_iter().map(f16::to_f32).collect();
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
    let pos: Vec<u32> = ROWS.iter().map(|(_, p)| *p as u32).collect();
    let slot: Vec<u32> = ROWS.iter().map(|(s, _)| *s as u32).collect();
    let (dpos, dslot) = (dev.upload(&pos)?, dev.upload(&slot)?);
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
