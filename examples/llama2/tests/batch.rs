//! The batched engine on the CPU backend: rows of several sequences in their own cache
//! slots agree with the plain-Rust reference run per sequence, and a sequence's logits are
//! bit for bit the same alone or batched with others that join and leave around it.

mod common;

use common::{cpu, tiny};

use greta::quant::GgmlType;
use greta_gguf::Gguf;
use llama2::check::nmse;
use llama2::config::LlamaConfig;
use llama2::engine::batch::{BatchEngine, DecodeProduct, Row, MATVEC_ROWS};
use llama2::genmodel::Recipe;
use llama2::oracle::Oracle;

/// Logit NMSE against the f32 reference: f16 (tiled) or int8 (matrix-vector) activations
/// into the products and an f16 KV cache (the prompt path's bound).
const LOGIT_NMSE: f64 = 1e-2;

fn batch(g: &Gguf<Vec<u8>>, wave: u32, slots: usize) -> BatchEngine {
    let config = LlamaConfig::from_gguf(g).expect("config");
    BatchEngine::new(cpu(wave), g, &config, 48, slots, 64, |_| {}).expect("batch engine")
}

/// A sequence being run: its slot, the tokens still to feed, those fed, and the position
/// each step's logits are for.
struct Sequence {
    slot: u32,
    prompt_len: usize,
    feed: Vec<u32>,
    fed: Vec<u32>,
    ends: Vec<usize>,
}

fn sequence(slot: u32, prompt: &[u32]) -> Sequence {
    Sequence {
        slot,
        prompt_len: prompt.len(),
        feed: prompt.to_vec(),
        fed: Vec::new(),
        ends: Vec::new(),
    }
}

/// Steps `seqs` together: each step takes up to `chunk` prompt tokens of every sequence
/// (a single token once its prompt is in), and feeds each its own greedy choice after.
/// Returns, per sequence, the logits of every step's last row of it.
fn run(
    e: &mut BatchEngine,
    seqs: &mut [Sequence],
    steps: usize,
    chunk: usize,
) -> Vec<Vec<Vec<f32>>> {
    let vocab = e.config().n_vocab;
    let mut logits = vec![Vec::new(); seqs.len()];
    for _ in 0..steps {
        let mut rows = Vec::new();
        let mut last = Vec::new();
        for s in seqs.iter_mut() {
            let n = s.feed.len().min(chunk);
            // Until its prompt is in, a sequence feeds prompt rows.
            let prompt = s.fed.len() < s.prompt_len;
            for t in s.feed.drain(..n) {
                rows.push(Row {
                    token: t,
                    pos: s.fed.len() as u32,
                    slot: s.slot,
                    prompt,
                });
                s.fed.push(t);
            }
            last.push(rows.len() - 1);
            s.ends.push(s.fed.len() - 1);
        }
        e.step(&rows).expect("step");
        let all = e.logits().expect("logits");
        let tokens = e.tokens().expect("tokens");
        for (i, s) in seqs.iter_mut().enumerate() {
            logits[i].push(all[last[i] * vocab..][..vocab].to_vec());
            // Mid-prompt rows' choices are not the sequence's.
            if s.feed.is_empty() {
                s.feed.push(tokens[last[i]]);
            }
        }
    }
    logits
}

#[test]
fn rows_of_several_sequences_agree_with_the_reference_per_sequence() {
    // Decode rows on the matrix-vector products (the default at three sequences), on the
    // tiled ones and on the few-row ones.
    use DecodeProduct::{Skinny, Tiled};
    for (recipe, wave, matvec_rows, product) in [
        (Recipe::Q4KM, 64, MATVEC_ROWS, Tiled),
        (Recipe::Q4KM, 32, MATVEC_ROWS, Tiled),
        (Recipe::Q4KM, 64, 0, Tiled),
        (Recipe::Q4KM, 64, 0, Skinny),
        (Recipe::Q4KM, 32, 0, Skinny),
        (Recipe::Uniform(GgmlType::Q8_0), 64, MATVEC_ROWS, Tiled),
    ] {
        let g = tiny(recipe, 21);
        let cfg = LlamaConfig::from_gguf(&g).expect("config");
        let mut e = batch(&g, wave, 3);
        e.set_matvec_rows(matvec_rows).expect("matvec rows");
        e.set_decode_product(product).expect("decode product");
        let prompts: [Vec<u32>; 3] = [vec![5, 300, 42, 7, 9], vec![1], vec![17, 18, 19]];
        let mut seqs: Vec<Sequence> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| sequence((2 - i) as u32, p))
            .collect();
        let got = run(&mut e, &mut seqs, 4, 2);
        for (i, seq) in seqs.iter().enumerate() {
            // The reference takes the same tokens: the prompt, then the engine's choices.
            let mut oracle = Oracle::new(&g, &cfg).expect("oracle");
            let want: Vec<Vec<f32>> = seq
                .fed
                .iter()
                .enumerate()
                .map(|(p, t)| oracle.forward(*t, p).expect("reference"))
                .collect();
            for (s, (row_logits, end)) in got[i].iter().zip(&seq.ends).enumerate() {
                let err = nmse(row_logits, &want[*end]);
                assert!(
                    err < LOGIT_NMSE,
                    "{recipe:?} wave {wave} matvec rows {matvec_rows} {product:?} sequence {i} step {s}: NMSE {err:.3e}"
                );
            }
        }
    }
}

/// A sequence alone and batched, on the engine's default products, then with every decode
/// pass on the few-row products (alone it decodes one row, batched two and three).
#[test]
fn a_sequence_gets_the_same_logits_alone_or_batched() {
    for product in [None, Some(DecodeProduct::Skinny)] {
        same_logits_alone_or_batched(product);
    }
}

fn same_logits_alone_or_batched(product: Option<DecodeProduct>) {
    let g = tiny(Recipe::Q4KM, 8);
    let prompt = vec![3u32, 99, 250, 4, 61, 7];
    let engine = |slots| {
        let mut e = batch(&g, 64, slots);
        if let Some(p) = product {
            e.set_matvec_rows(0).expect("matvec rows");
            e.set_decode_product(p).expect("decode product");
        }
        e
    };
    let mut alone = engine(1);
    let solo = run(&mut alone, &mut [sequence(0, &prompt)], 8, 4);
    // The same sequence in another slot, batched with two others whose prompts are in
    // flight while it decodes, then with one of them alone.
    let mut shared = engine(4);
    let others: Vec<u32> = (0..9).map(|i| 40 + i).collect();
    let mut seqs = vec![
        sequence(3, &prompt),
        sequence(0, &others),
        sequence(1, &[11, 12]),
    ];
    let mut together = run(&mut shared, &mut seqs, 5, 4);
    seqs.truncate(2);
    let rest = run(&mut shared, &mut seqs, 3, 4);
    together[0].extend(rest.into_iter().next().expect("first sequence"));
    assert_eq!(solo[0].len(), together[0].len());
    for (s, (a, b)) in solo[0].iter().zip(&together[0]).enumerate() {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{product:?} step {s}: logits differ alone and batched"
        );
    }
}

#[test]
fn bad_rows_are_refused_naming_the_row() {
    let g = tiny(Recipe::Q4KM, 2);
    let mut e = batch(&g, 64, 2);
    for (rows, what) in [
        (vec![], "0 rows"),
        (
            vec![Row {
                token: 1,
                pos: 0,
                slot: 2,
                prompt: false,
            }],
            "slot: 2",
        ),
        (
            vec![Row {
                token: 1,
                pos: 48,
                slot: 0,
                prompt: false,
            }],
            "pos: 48",
        ),
    ] {
        let err = e.step(&rows).expect_err("refused").to_string();
        assert!(err.contains(what), "{err}");
    }
}
