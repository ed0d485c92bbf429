//! The reference forward pass: SmolLM2's known greedy answer, KV-cache rewinding, and
//! refusal of bad inputs.

mod common;

use std::time::Instant;

use greta_gguf::Gguf;
use llama2::config::LlamaConfig;
use llama2::genmodel::{Preset, Recipe};
use llama2::oracle::{Oracle, OracleError};

/// `<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n`.
const PROMPT: [u32; 16] = [
    1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
];
/// "The capital of France is Paris." then end of sequence (2): the answer two independent
/// implementations agree on.
const ANSWER: [u32; 8] = [504, 3575, 282, 4649, 314, 7042, 30, 2];

/// Index of the largest logit.
fn argmax(logits: &[f32]) -> u32 {
    let (best, _) = logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        });
    best as u32
}

#[test]
fn smollm2_greedy_answer_matches_reference() {
    let g = Gguf::open(common::smollm2()).unwrap();
    let config = LlamaConfig::from_gguf(&g).unwrap();
    let mut oracle = Oracle::new(&g, &config).unwrap();
    let start = Instant::now();
    let mut logits = Vec::new();
    for (pos, &token) in PROMPT.iter().enumerate() {
        logits = oracle.forward(token, pos).unwrap();
    }
    let mut answer = Vec::new();
    while answer.len() < ANSWER.len() {
        let next = argmax(&logits);
        answer.push(next);
        if next == 2 {
            break;
        }
        logits = oracle.forward(next, oracle.n_cached()).unwrap();
    }
    let n_forward = oracle.n_cached();
    eprintln!(
        "{:.1} ms per token over {n_forward} tokens",
        start.elapsed().as_secs_f64() * 1e3 / n_forward as f64
    );
    assert_eq!(answer, ANSWER);
}

#[test]
fn rewinding_the_cache_repeats_the_same_logits() {
    let bytes = common::generated(Preset::Tiny.config(), Recipe::Q4KM, 3);
    let g = Gguf::from_bytes("tiny.gguf", bytes).unwrap();
    let config = LlamaConfig::from_gguf(&g).unwrap();
    let mut oracle = Oracle::new(&g, &config).unwrap();
    let tokens = [1, 300, 301, 302];
    let first: Vec<Vec<f32>> = tokens
        .iter()
        .enumerate()
        .map(|(pos, &t)| oracle.forward(t, pos).unwrap())
        .collect();
    assert_ne!(
        first[1], first[2],
        "different contexts give different logits"
    );
    assert_eq!(oracle.forward(tokens[2], 2).unwrap(), first[2]);
    assert_eq!(oracle.n_cached(), 3);
    oracle.reset();
    assert_eq!(oracle.n_cached(), 0);
    assert_eq!(oracle.forward(tokens[0], 0).unwrap(), first[0]);
    assert_eq!(oracle.forward(tokens[1], 1).unwrap(), first[1]);
}

#[test]
fn bad_tokens_and_positions_are_refused() {
    let short = LlamaConfig {
        n_ctx: 8,
        ..Preset::Tiny.config()
    };
    let bytes = common::generated(short, Recipe::Q4KM, 3);
    let g = Gguf::from_bytes("tiny.gguf", bytes).unwrap();
    let config = LlamaConfig::from_gguf(&g).unwrap();
    let mut oracle = Oracle::new(&g, &config).unwrap();
    let err = oracle.forward(config.n_vocab as u32, 0).unwrap_err();
    assert!(
        matches!(err, OracleError::BadToken { token: 512, .. }),
        "{err}"
    );
    let err = oracle.forward(1, 1).unwrap_err();
    assert!(
        matches!(
            err,
            OracleError::BadPosition {
                pos: 1,
                cached: 0,
                ..
            }
        ),
        "{err}"
    );
    for pos in 0..config.n_ctx {
        oracle.forward(1, pos).unwrap();
    }
    let err = oracle.forward(1, config.n_ctx).unwrap_err();
    assert!(err.to_string().contains("context length 8"), "{err}");
}
