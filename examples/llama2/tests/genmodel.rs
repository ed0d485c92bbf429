//! Generated models: the Q4_K_M type mix, the published 7B size, determinism, and that
//! every generated model loads and runs through the reference forward pass with sane
//! activations.

mod common;

use std::process::Command;

use greta::quant::GgmlType;
use greta_gguf::{Gguf, GgufWriter};
use llama2::config::{LlamaConfig, Role, WEIGHT_TYPES};
use llama2::genmodel::{use_more_bits, GenModelError, ModelPlan, Preset, Recipe, ShapeOverrides};
use llama2::oracle::Oracle;
use llama2::tokenizer::{EncodeOptions, Tokenizer};

/// Root mean square.
fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Standard deviation.
fn std_dev(x: &[f32]) -> f64 {
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
    (x.iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / x.len() as f64)
        .sqrt()
}

/// Runs `tokens` through the model and checks that the residual stream after every block
/// and the logits are finite and within the given RMS / spread bands.
fn check_activations<B: AsRef<[u8]>>(
    g: &Gguf<B>,
    tokens: &[u32],
    residual_rms: (f64, f64),
    logit_spread: (f64, f64),
) {
    let config = LlamaConfig::from_gguf(g).unwrap();
    let mut oracle = Oracle::new(g, &config).unwrap();
    for (pos, &token) in tokens.iter().enumerate() {
        let mut layers = Vec::new();
        let logits = oracle
            .forward_traced(token, pos, |l, x| {
                assert!(x.iter().all(|v| v.is_finite()), "layer {l}: non-finite");
                layers.push(rms(x));
            })
            .unwrap();
        let label = format!(
            "{}, position {pos}: residual RMS {layers:.2?}",
            g.path().display()
        );
        assert_eq!(layers.len(), config.n_layer, "{label}");
        assert!(
            layers
                .iter()
                .all(|r| (residual_rms.0..residual_rms.1).contains(r)),
            "{label}"
        );
        assert!(logits.iter().all(|v| v.is_finite()), "{label}");
        let spread = std_dev(&logits);
        assert!(
            (logit_spread.0..logit_spread.1).contains(&spread),
            "{label}, logit spread {spread}"
        );
    }
}

#[test]
fn q4_k_m_mix_for_32_layers_matches_llama_cpp() {
    let plan = ModelPlan::new(Preset::Llama2_7b.config(), Recipe::Q4KM, false).unwrap();
    let more_bits = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    assert_eq!(plan.tensors().len(), 291);
    for t in plan.tensors() {
        let expected = match (t.spec.role, t.spec.layer) {
            (Role::AttnNorm | Role::FfnNorm | Role::OutputNorm, _) => GgmlType::F32,
            (Role::Output, _) => GgmlType::Q6K,
            (Role::AttnV | Role::FfnDown, Some(l)) if more_bits.contains(&l) => GgmlType::Q6K,
            _ => GgmlType::Q4K,
        };
        assert_eq!(t.ggml_type, expected, "{}", t.spec.name);
    }
}

#[test]
fn more_bits_layers_scale_with_the_layer_count() {
    let picked = |n: usize| (0..n).filter(|&l| use_more_bits(l, n)).collect::<Vec<_>>();
    assert_eq!(
        picked(40),
        [0, 1, 2, 3, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 35, 36, 37, 38, 39]
    );
    assert_eq!(picked(4), [2, 3]);
    assert_eq!(picked(1), [0]);
}

#[test]
fn llama2_7b_q4_k_m_has_the_published_size() {
    let plan = ModelPlan::new(Preset::Llama2_7b.config(), Recipe::Q4KM, false).unwrap();
    assert_eq!(plan.n_params(), 6_738_415_616);
    let bpw = plan.bits_per_weight();
    assert!((bpw - 4.84).abs() < 0.005, "{bpw} bits per weight");
    let size = plan.file_size().unwrap();
    assert!((size as f64 / 1e9 - 4.08).abs() < 0.005, "{size} bytes");
    let header = size - plan.tensor_bytes();
    assert!((1..2_000_000).contains(&header), "{header} header bytes");
}

#[test]
fn file_size_is_what_write_produces() {
    let plan = ModelPlan::new(Preset::Tiny.config(), Recipe::Q4KM, true).unwrap();
    let bytes = plan
        .write(GgufWriter::with_writer("mem", Vec::new()), 0, |_| {})
        .unwrap();
    assert_eq!(plan.file_size().unwrap(), bytes.len() as u64);
}

#[test]
fn generated_tiny_model_loads_tokenizes_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let plan = ModelPlan::new(Preset::Tiny.config(), Recipe::Q4KM, false).unwrap();
    let mut reported = 0;
    plan.write_file(&path, 1, |n| reported += n).unwrap();
    assert_eq!(reported, plan.tensor_bytes());
    let g = Gguf::open(&path).unwrap();
    assert_eq!(LlamaConfig::from_gguf(&g).unwrap(), Preset::Tiny.config());
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(
        (tok.vocab_size(), tok.bos(), tok.eos()),
        (512, Some(1), Some(2))
    );
    let options = EncodeOptions {
        add_special: true,
        parse_special: false,
    };
    let ids = tok.encode("hello wörld", options);
    assert_eq!(ids[0], 1);
    assert!(ids.iter().all(|&id| id < 512));
    assert_eq!(tok.decode(&ids).unwrap(), "hello wörld");
    check_activations(&g, &ids, (0.05, 10.0), (0.1, 10.0));
}

#[test]
fn every_weight_type_gives_a_runnable_model() {
    for ty in WEIGHT_TYPES {
        let bytes = common::generated(Preset::Tiny.config(), Recipe::Uniform(ty), 2);
        let g = Gguf::from_bytes(format!("tiny-{ty}.gguf"), bytes).unwrap();
        let config = LlamaConfig::from_gguf(&g).unwrap();
        let w = llama2::config::LlamaWeights::from_gguf(&g, &config).unwrap();
        assert_eq!(w.layers[1].ffn_down.ggml_type, ty);
        assert_eq!(w.output.ggml_type, ty);
        assert_eq!(w.output_norm.ggml_type, GgmlType::F32);
        check_activations(&g, &[1, 300, 400], (0.05, 10.0), (0.1, 10.0));
    }
}

#[test]
fn generation_depends_only_on_the_seed() {
    let make = |seed, threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| common::generated(Preset::Tiny.config(), Recipe::Q4KM, seed))
    };
    let a = make(7, 1);
    assert!(a == make(7, 3), "same seed, other thread count");
    assert!(a != make(8, 1), "another seed");
}

#[test]
fn impossible_plans_are_refused() {
    let wide = ShapeOverrides {
        n_embd: Some(320),
        ..ShapeOverrides::default()
    }
    .apply(&Preset::Tiny.config());
    let err = ModelPlan::new(wide.clone(), Recipe::Q4KM, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor 'token_embd.weight' cannot be Q4_K: its rows of 320 values are not a whole \
         number of 256-value blocks"
    );
    ModelPlan::new(wide, Recipe::Uniform(GgmlType::Q8_0), false).unwrap();
    let small_vocab = LlamaConfig {
        n_vocab: 258,
        ..Preset::Tiny.config()
    };
    let err = ModelPlan::new(small_vocab, Recipe::Q4KM, false).unwrap_err();
    assert!(
        matches!(err, GenModelError::VocabTooSmall { n_vocab: 258 }),
        "{err}"
    );
    let bad_heads = LlamaConfig {
        n_head_kv: 3,
        ..Preset::Tiny.config()
    };
    let err = ModelPlan::new(bad_heads, Recipe::Q4KM, false).unwrap_err();
    assert!(err.to_string().contains("must divide"), "{err}");
}

#[test]
fn recipes_parse_from_type_names() {
    assert_eq!("q4_k_m".parse::<Recipe>().unwrap(), Recipe::Q4KM);
    assert_eq!(
        "Q8_0".parse::<Recipe>().unwrap(),
        Recipe::Uniform(GgmlType::Q8_0)
    );
    assert_eq!(
        "bf16".parse::<Recipe>().unwrap(),
        Recipe::Uniform(GgmlType::BF16)
    );
    for bad in ["q2_k", "q8_k", "int4"] {
        let msg = bad.parse::<Recipe>().unwrap_err().to_string();
        assert!(
            msg.contains(bad) && msg.contains("q4_k_m, f32, f16"),
            "{msg}"
        );
    }
    assert_eq!(Recipe::Q4KM.to_string(), "Q4_K_M");
}

#[test]
fn shape_overrides_rederive_the_head_width() {
    let overrides = ShapeOverrides {
        n_head: Some(64),
        n_head_kv: Some(8),
        n_layer: Some(2),
        ..ShapeOverrides::default()
    };
    let c = overrides.apply(&Preset::Llama2_7b.config());
    assert_eq!(
        (c.n_head, c.n_head_kv, c.head_dim, c.rope_dim),
        (64, 8, 64, 64)
    );
    assert_eq!((c.n_layer, c.n_embd, c.n_ff), (2, 4096, 11008));
    c.validate("overridden").unwrap();
}

#[test]
fn gen_model_command_writes_the_requested_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.gguf");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_llama2"))
            .arg("gen-model")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--preset",
        "tiny",
        "--n-layer",
        "2",
        "--type",
        "q8_0",
        "--tied-embeddings",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = Gguf::open(&path).unwrap();
    let c = LlamaConfig::from_gguf(&g).unwrap();
    assert_eq!((c.n_layer, c.n_embd), (2, 256));
    assert!(g.tensor_info("output.weight").is_none());
    assert_eq!(
        g.tensor_info("blk.1.attn_q.weight").unwrap().ggml_type,
        GgmlType::Q8_0
    );

    let out = run(&["--preset", "tiny", "--n-embd", "320", "-o", "unused.gguf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot be Q4_K"), "{stderr}");
    let out = run(&["--type", "q2_k", "-o", "unused.gguf"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model type 'q2_k'"));
}

/// Generates the full 4 GB Llama-2 7B model and runs two tokens through it (about a
/// minute in release): the residual stream must stay finite and bounded over 32 layers.
#[test]
#[ignore = "writes a 4 GB file; run with --ignored"]
fn llama2_7b_activations_stay_sane() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama2-7b.gguf");
    let plan = ModelPlan::new(Preset::Llama2_7b.config(), Recipe::Q4KM, false).unwrap();
    plan.write_file(&path, 0, |_| {}).unwrap();
    let g = Gguf::open(&path).unwrap();
    check_activations(&g, &[1, 1000], (1.0, 200.0), (0.5, 20.0));
}
