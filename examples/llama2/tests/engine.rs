//! The engine (every decode kernel, as DSL kernels) on the CPU backend: agreement with the
//! plain-Rust reference forward pass, SmolLM2's known greedy answer, graph replay against
//! eager steps, both attention kernels across the length switch, a step past the context
//! refused, and the tracer finding an injected NaN at its layer.

mod common;

use common::{cpu, tiny};

use greta::quant::GgmlType;
use greta_gguf::Gguf;
use llama2::config::LlamaConfig;
use llama2::engine::{Engine, EngineError};
use llama2::genmodel::{Preset, Recipe};
use llama2::oracle::Oracle;
use llama2::sampling::SamplingParams;
use llama2::trace::{TraceError, Tracer};

/// Logit NMSE the engine must stay under against the f32 reference: the engine quantises
/// matrix inputs to int8 per 32 values and keeps the KV cache in f16 (observed up to 5e-3
/// on SmolLM2).
const LOGIT_NMSE: f64 = 1e-2;

fn engine<B: AsRef<[u8]>>(g: &Gguf<B>, wave: u32, ctx: usize) -> Engine {
    let config = LlamaConfig::from_gguf(g).expect("config");
    Engine::new(cpu(wave), g, &config, ctx, |_| {}).expect("engine")
}

#[test]
fn tiny_models_of_every_weight_type_agree_with_the_reference() {
    let recipes = [
        (Recipe::Q4KM, 64),
        (Recipe::Uniform(GgmlType::Q8_0), 64),
        (Recipe::Uniform(GgmlType::Q4_0), 32),
        (Recipe::Uniform(GgmlType::Q4_1), 64),
        (Recipe::Uniform(GgmlType::Q6K), 32),
        (Recipe::Uniform(GgmlType::F16), 64),
    ];
    for (i, (recipe, wave)) in recipes.into_iter().enumerate() {
        let g = tiny(recipe, 11 + i as u64);
        let mut e = engine(&g, wave, 64);
        let mut oracle =
            Oracle::new(&g, &LlamaConfig::from_gguf(&g).expect("config")).expect("oracle");
        let steps = llama2::check::compare(&mut e, &mut oracle, &[1, 300, 42], 5).expect("compare");
        for (s, c) in steps.iter().enumerate() {
            assert!(
                c.nmse < LOGIT_NMSE,
                "{recipe:?} wave {wave} step {s}: logit NMSE {:.3e}",
                c.nmse
            );
        }
    }
}

#[test]
fn both_attention_kernels_agree_with_the_reference_across_the_switch() {
    let g = tiny(Recipe::Q4KM, 8);
    let mut e = engine(&g, 32, 64);
    // The streamed kernel from length 3 on: the third step replays a second graph.
    e.set_long_attention_from(3);
    let mut oracle = Oracle::new(&g, &LlamaConfig::from_gguf(&g).expect("config")).expect("oracle");
    let steps =
        llama2::check::compare(&mut e, &mut oracle, &[1, 300, 42, 7, 250, 3], 6).expect("compare");
    assert_eq!(steps.len(), 6);
    for (s, c) in steps.iter().enumerate() {
        assert!(c.nmse < LOGIT_NMSE, "step {s}: logit NMSE {:.3e}", c.nmse);
    }
}

#[test]
fn a_step_past_the_context_is_refused() {
    let g = tiny(Recipe::Q4KM, 9);
    let mut e = engine(&g, 64, 4);
    e.set_state(5, 3).expect("the last position");
    e.step().expect("the step that fills the cache");
    match e.step() {
        Err(EngineError::ContextFull { pos: 4, ctx: 4 }) => {}
        other => panic!("expected ContextFull, got {other:?}"),
    }
    assert!(matches!(
        e.step_eager(),
        Err(EngineError::ContextFull { .. })
    ));
}

#[test]
fn graph_replay_matches_eager_steps() {
    let g = tiny(Recipe::Q4KM, 5);
    let mut eager = engine(&g, 64, 32);
    let mut replayed = engine(&g, 64, 32);
    for (pos, t) in [7u32, 99, 311, 4].into_iter().enumerate() {
        eager.set_state(t, pos).expect("state");
        eager.step_eager().expect("eager step");
        replayed.set_state(t, pos).expect("state");
        replayed.step().expect("graph step");
        assert_eq!(
            eager.logits().expect("logits"),
            replayed.logits().expect("logits"),
            "position {pos}"
        );
        assert_eq!(
            eager.last_token().expect("token"),
            replayed.last_token().expect("token")
        );
        assert_eq!(
            replayed.position().expect("position"),
            pos + 1,
            "the argmax advances the position"
        );
    }
}

#[test]
fn tracer_reports_an_injected_nan_at_its_layer() {
    let clean = tiny(Recipe::Q4KM, 3);
    let mut e = engine(&clean, 64, 16);
    let mut tracer = Tracer::new(&e).expect("tracer");
    e.set_state(5, 0).expect("state");
    tracer
        .step(&mut e, |_| {})
        .expect("a clean model traces without NaN");

    // Poison one value of layer 2's FFN norm weight: the first kernel reading it (the
    // fused norm + gate/up product) must be the one reported.
    let mut bytes = common::generated(Preset::Tiny.config(), Recipe::Q4KM, 3);
    let info = clean
        .tensor_info("blk.2.ffn_norm.weight")
        .expect("tensor")
        .clone();
    let at = (clean.data_offset() + info.offset) as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let poisoned = Gguf::from_bytes("poisoned.gguf", bytes).expect("parses");
    let mut e = engine(&poisoned, 64, 16);
    let mut tracer = Tracer::new(&e).expect("tracer");
    e.set_state(5, 0).expect("state");
    let mut seen = Vec::new();
    let err = tracer
        .step(&mut e, |s| seen.push(s.op))
        .expect_err("the NaN is found");
    match &err {
        TraceError::NonFinite {
            what,
            kernel,
            file,
            line,
            ..
        } => {
            assert_eq!(what, "layer 2 ffn_gate_up+swiglu");
            assert_eq!(kernel, "matvec");
            assert!(file.ends_with("src/kernels/matvec.rs"), "{file}");
            assert!(*line > 0);
        }
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(err.layer(), Some(2));
    assert!(
        seen.len() > 10,
        "the ops before layer 2's FFN ran and were clean"
    );
    // Generation with the tracer stops at the same place.
    let mut e = engine(&poisoned, 64, 16);
    let mut tracer = Tracer::new(&e).expect("tracer");
    let err = llama2::generate::generate(
        &mut e,
        &[5, 6],
        4,
        None,
        SamplingParams::default(),
        Some(&mut tracer),
        |_| {},
    )
    .expect_err("traced generation finds the NaN");
    // Generation processes the prompt first: its FFN norm is the first to read the weight.
    assert!(
        err.to_string()
            .contains("layer 2 prompt ffn_norm (kernel `rmsnorm`"),
        "{err}"
    );
}

/// Logit NMSE between a prompt through prompt processing (f16 activations and weights on
/// the matrix cores) and fed token by token through the decode step (int8 activations).
const PREFILL_NMSE: f64 = 1e-2;

#[test]
fn prompt_processing_agrees_with_decode_and_the_reference() {
    let prompt: Vec<u32> = (0..37).map(|i| (i * 37 + 11) % 500).collect();
    for (recipe, wave) in [
        (Recipe::Q4KM, 64),
        (Recipe::Q4KM, 32),
        (Recipe::Uniform(GgmlType::Q4_1), 64),
    ] {
        let g = tiny(recipe, 5);
        let mut e = engine(&g, wave, 64);
        assert!(
            e.prefill_unsupported().is_none(),
            "{:?}",
            e.prefill_unsupported()
        );
        let nmse = llama2::check::prefill_against_decode(&mut e, &prompt).expect("both paths");
        assert!(
            nmse < PREFILL_NMSE,
            "{recipe:?} wave {wave}: prefill vs decode NMSE {nmse:.3e}"
        );
        let mut oracle =
            Oracle::new(&g, &LlamaConfig::from_gguf(&g).expect("config")).expect("oracle");
        let steps = llama2::check::compare(&mut e, &mut oracle, &prompt, 3).expect("compare");
        for (s, c) in steps.iter().enumerate() {
            assert!(
                c.nmse < LOGIT_NMSE,
                "{recipe:?} wave {wave} step {s}: NMSE {:.3e}",
                c.nmse
            );
        }
    }
}

#[test]
fn a_prompt_in_chunks_or_appended_gives_the_same_logits() {
    let g = tiny(Recipe::Q4KM, 9);
    let prompt: Vec<u32> = (0..23).map(|i| (i * 13 + 5) % 500).collect();
    let logits = |e: &mut Engine, parts: &[&[u32]]| {
        e.set_state(prompt[0], 0).expect("state");
        for p in parts {
            e.prefill(p).expect("prefill");
        }
        (
            e.logits().expect("logits"),
            e.position().expect("position"),
            e.last_token().expect("token"),
        )
    };
    let mut e = engine(&g, 32, 64);
    let whole = logits(&mut e, &[&prompt]);
    assert_eq!(whole.1, prompt.len(), "the position is past the prompt");
    e.set_ubatch(5);
    let chunked = logits(&mut e, &[&prompt]);
    e.set_ubatch(512);
    // A conversation extended by a second prompt from where the first ended.
    let appended = logits(&mut e, &[&prompt[..15], &prompt[15..]]);
    for (name, other) in [("chunks of 5", &chunked), ("appended", &appended)] {
        assert_eq!((other.1, other.2), (whole.1, whole.2), "{name}");
        let err: f64 = whole
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let norm: f64 = whole.0.iter().map(|a| (*a as f64).powi(2)).sum();
        assert!(err / norm < 1e-10, "{name}: NMSE {:.3e}", err / norm);
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_before_any_work() {
    let g = tiny(Recipe::Q4KM, 4);
    let mut e = engine(&g, 64, 16);
    e.set_state(1, 0).expect("state");
    let prompt = vec![7u32; 17];
    assert!(matches!(
        e.prefill(&prompt),
        Err(EngineError::ContextFull { pos: 16, ctx: 16 })
    ));
    assert_eq!(e.position().expect("position"), 0, "nothing ran");
}

#[test]
fn smollm2_answers_the_capital_of_france_on_the_cpu_backend() {
    let g = Gguf::open(common::smollm2()).expect("SmolLM2");
    let prompt = [
        1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    // The prompt goes through prompt processing, then decode: at both wave sizes the
    // answer is the known greedy one.
    for wave in [64, 32] {
        let mut e = engine(&g, wave, 64);
        assert!(e.prefill_unsupported().is_none());
        let out = llama2::generate::generate(
            &mut e,
            &prompt,
            12,
            Some(2),
            SamplingParams::default(),
            None,
            |_| {},
        )
        .expect("generates");
        assert_eq!(
            out.tokens,
            [504, 3575, 282, 4649, 314, 7042, 30],
            "wave {wave}"
        );
        assert!(
            out.stopped_at_eos,
            "generation ends at the end-of-sequence token"
        );
    }
}

#[test]
fn the_benchmark_generates_at_the_requested_depth_and_refuses_a_full_cache() {
    let g = tiny(Recipe::Q4KM, 12);
    let mut e = engine(&g, 32, 32);
    e.set_long_attention_from(16);
    let plan = llama2::bench::BenchPlan {
        prompt_tokens: 4,
        gen_tokens: 5,
        depth: 20,
        reps: 1,
    };
    let report = llama2::bench::run(&mut e, "tiny", 1, plan).expect("bench");
    assert_eq!((report.gen_tokens, report.depth), (5, 20));
    assert!(report.tg.mean > 0.0 && report.pp.mean > 0.0);
    assert!(
        report.markdown().contains("tg5 @ d20"),
        "{}",
        report.markdown()
    );
    // The last measurement is the 3-token time-to-first-token prompt, from position 0.
    assert_eq!(
        e.position().expect("position"),
        3,
        "the last measurement is the ttft prompt"
    );
    // Counts that do not fit are refused, not clipped.
    let full = llama2::bench::BenchPlan { depth: 31, ..plan };
    assert!(matches!(
        llama2::bench::run(&mut e, "tiny", 1, full),
        Err(EngineError::GenerationTooLong {
            depth: 31,
            tokens: 5,
            ctx: 32
        })
    ));
    let long = llama2::bench::BenchPlan {
        prompt_tokens: 33,
        ..plan
    };
    assert!(matches!(
        llama2::bench::run(&mut e, "tiny", 1, long),
        Err(EngineError::PromptTooLong {
            prompt: 33,
            ctx: 32,
            ..
        })
    ));
}

#[test]
fn bad_context_sampling_and_over_long_prompts_are_refused_before_any_compute() {
    let g = tiny(Recipe::Uniform(GgmlType::Q8_0), 5);
    let config = LlamaConfig::from_gguf(&g).expect("config");
    for ctx in [0, config.n_ctx + 1] {
        assert!(matches!(
            Engine::new(cpu(64), &g, &config, ctx, |_| {}),
            Err(EngineError::BadContext { .. })
        ));
    }
    let mut e = engine(&g, 64, 8);
    let nan = SamplingParams {
        temperature: f32::NAN,
        ..SamplingParams::default()
    };
    let r = llama2::generate::generate(&mut e, &[1, 2], 4, None, nan, None, |_| {});
    assert!(matches!(
        r,
        Err(llama2::generate::GenerateError::Sampling(_))
    ));
    let prompt: Vec<u32> = (1..=9).collect();
    let r = llama2::generate::generate(
        &mut e,
        &prompt,
        4,
        None,
        SamplingParams::default(),
        None,
        |_| {},
    );
    let Err(llama2::generate::GenerateError::Engine(err)) = r else {
        panic!("a 9-token prompt in an 8-position cache must be refused");
    };
    assert_eq!(
        err.to_string(),
        "the prompt is 9 tokens, but the context holds 8 (from position 0, 8 are left)"
    );
    assert_eq!(e.position().expect("position"), 0, "nothing ran");
}
