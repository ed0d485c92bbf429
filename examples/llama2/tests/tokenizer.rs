//! Tokenizers against reference data: the 46 reference encodings of the Llama-2
//! SentencePiece, GPT-2 and StarCoder (SmolLM2's pre-tokenizer) vocabularies, and SmolLM2's
//! own tokenizer on its chat prompt.

mod common;

use greta_gguf::{Gguf, GgufWriter, Value};
use llama2::tokenizer::{
    ChatMessage, ChatTemplate, EncodeOptions, Tokenizer, TokenizerError, TokenizerKind,
};

const PLAIN: EncodeOptions = EncodeOptions {
    add_special: false,
    parse_special: false,
};

/// The tokenizer of `data/ggml-vocab-{name}.gguf`.
fn vocab(name: &str) -> Tokenizer {
    let g = Gguf::open(common::data_file(&format!("ggml-vocab-{name}.gguf"))).unwrap();
    Tokenizer::from_gguf(&g).unwrap()
}

fn smollm2() -> Tokenizer {
    let g = Gguf::open(common::smollm2()).unwrap();
    Tokenizer::from_gguf(&g).unwrap()
}

/// The reference inputs of a vocabulary and their token ids. Inputs are separated by a
/// marker line; the outputs file has one line of space-separated ids per input.
fn reference_cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let read = |ext: &str| {
        std::fs::read_to_string(common::data_file(&format!("ggml-vocab-{name}.gguf.{ext}")))
            .unwrap()
    };
    let (inp, out) = (read("inp"), read("out"));
    let sep = "\n__ggml_vocab_test__\n";
    let inputs: Vec<&str> = inp
        .strip_suffix(sep)
        .expect("the inputs file ends with the marker")
        .split(sep)
        .collect();
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(inputs.len(), 46, "{name}");
    assert_eq!(inputs.len(), outputs.len(), "{name}");
    inputs.into_iter().map(str::to_owned).zip(outputs).collect()
}

/// Checks every reference encoding of a vocabulary, and that decoding gives the text back.
fn check_reference(name: &str, kind: TokenizerKind) {
    let tok = vocab(name);
    assert_eq!(tok.kind(), kind);
    let mut failures = Vec::new();
    for (text, expected) in reference_cases(name) {
        let got = tok.encode(&text, PLAIN);
        if got != expected {
            failures.push(format!(
                "{text:?}\n  got      {got:?}\n  expected {expected:?}"
            ));
        }
        assert_eq!(tok.decode(&got).unwrap(), text, "{name}: {got:?}");
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn llama_spm_matches_all_reference_encodings() {
    check_reference("llama-spm", TokenizerKind::SentencePiece);
}

#[test]
fn gpt2_matches_all_reference_encodings() {
    check_reference("gpt-2", TokenizerKind::Gpt2Bpe);
}

#[test]
fn starcoder_matches_all_reference_encodings() {
    check_reference("starcoder", TokenizerKind::Gpt2Bpe);
}

#[test]
fn llama_spm_decode_with_bos_strips_the_added_space() {
    let tok = vocab("llama-spm");
    assert_eq!(tok.vocab_size(), 32000);
    let opts = EncodeOptions {
        add_special: true,
        parse_special: false,
    };
    for (text, _) in reference_cases("llama-spm") {
        let ids = tok.encode(&text, opts);
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn llama_spm_special_tokens_and_byte_fallback() {
    let tok = vocab("llama-spm");
    let opts = EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    // Text after a special token gets the leading space again (6324 is "▁Hi").
    assert_eq!(tok.token_text(6324), Some("\u{2581}Hi"));
    assert_eq!(tok.encode("Hi</s>Hi", opts), [1, 6324, 2, 6324]);
    assert_eq!(tok.decode(&[1, 6324, 2, 6324]).unwrap(), "Hi Hi");
    // Without parse_special the marker is ordinary text.
    assert_ne!(tok.encode("</s>", PLAIN), [2]);
    // A character with no token becomes its UTF-8 bytes as <0xNN> tokens.
    let ids = tok.encode("\u{1F600}", PLAIN);
    assert_eq!(ids, [29871, 243, 162, 155, 131]);
    assert_eq!(tok.token_text(243), Some("<0xF0>"));
    assert_eq!(tok.decode(&ids).unwrap(), "\u{1F600}");
    assert!(tok.encode("", PLAIN).is_empty());
    assert_eq!(tok.encode("", opts), [1]);
    let err = tok.decode(&[32000]).unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownId { id: 32000, .. }));
}

const CHAT_PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
const CHAT_IDS: [u32; 16] = [
    1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
];

#[test]
fn smollm2_chat_prompt_tokenizes_like_the_reference() {
    let tok = smollm2();
    assert_eq!(tok.kind(), TokenizerKind::Gpt2Bpe);
    assert_eq!(tok.vocab_size(), 49152);
    assert!(!tok.add_bos());
    let opts = EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    assert_eq!(tok.encode(CHAT_PROMPT, opts), CHAT_IDS);

    assert_eq!(tok.chat_template(), &ChatTemplate::ChatMl);
    let rendered = tok
        .chat_template()
        .render(&[ChatMessage::user("What is the capital of France?")], true);
    assert_eq!(rendered, CHAT_PROMPT);
    assert_eq!(tok.encode(&rendered, opts), CHAT_IDS);
}

#[test]
fn smollm2_decodes_the_reference_answer() {
    let tok = smollm2();
    let answer = [504, 3575, 282, 4649, 314, 7042, 30];
    assert_eq!(
        tok.decode(&answer).unwrap(),
        "The capital of France is Paris."
    );
    assert_eq!(tok.encode("The capital of France is Paris.", PLAIN), answer);
    // Control tokens render as nothing.
    assert_eq!(tok.decode(&[1, 504, 2]).unwrap(), "The");
}

#[test]
fn smollm2_decode_inverts_encode() {
    let tok = smollm2();
    let texts = [
        "Hello, y'all! How are you \u{1F601} ?我想在apple工作1314151天～",
        "  leading spaces,\ttabs\n\nand newlines \n",
        "numbers 3.14159 and 2024-01-01",
        "Ünïcödé ñ \u{0}\u{7f} control bytes",
        "",
    ];
    for text in texts {
        let ids = tok.encode(text, PLAIN);
        assert_eq!(tok.decode(&ids).unwrap(), text, "{ids:?}");
    }
    // Digits are split one per token, as SmolLM2's pre-tokenizer requires.
    let ids = tok.encode("2024", PLAIN);
    assert_eq!(ids.len(), 4);
}

/// A vocab-only GGUF built in memory with the given tokenizer metadata.
fn vocab_file(entries: Vec<(&str, Value)>) -> Gguf<Vec<u8>> {
    let mut w = GgufWriter::with_writer("vocab.gguf", Vec::new());
    for (k, v) in entries {
        w.add(k, v).unwrap();
    }
    Gguf::from_bytes("vocab.gguf", w.finish().unwrap()).unwrap()
}

fn build_error(entries: Vec<(&str, Value)>) -> String {
    match Tokenizer::from_gguf(&vocab_file(entries)) {
        Ok(_) => panic!("tokenizer accepted bad metadata"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_tokenizer_metadata_is_reported_by_key() {
    let tokens = || Value::from(vec!["a", "b", "ab"]);
    assert_eq!(
        build_error(vec![
            ("tokenizer.ggml.model", "bert".into()),
            ("tokenizer.ggml.tokens", tokens())
        ]),
        "vocab.gguf: tokenizer model 'bert' is not supported (supported: llama, gpt2)"
    );
    assert_eq!(
        build_error(vec![("tokenizer.ggml.model", "llama".into())]),
        "vocab.gguf: missing key 'tokenizer.ggml.tokens'"
    );
    assert_eq!(
        build_error(vec![
            ("tokenizer.ggml.model", "llama".into()),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.scores", vec![0.0f32].into()),
        ]),
        "vocab.gguf: key 'tokenizer.ggml.scores' has 1 entries but the vocabulary has 3"
    );
    assert_eq!(
        build_error(vec![
            ("tokenizer.ggml.model", "llama".into()),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.token_type", vec![1i32, 9, 1].into()),
        ]),
        "vocab.gguf: token 1 has unknown type 9 in 'tokenizer.ggml.token_type'"
    );
    assert_eq!(
        build_error(vec![
            ("tokenizer.ggml.model", "llama".into()),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.bos_token_id", 3u32.into()),
        ]),
        "vocab.gguf: key 'tokenizer.ggml.bos_token_id' is 3, outside the vocabulary of 3 tokens"
    );
    assert_eq!(
        build_error(vec![
            ("tokenizer.ggml.model", "llama".into()),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.add_bos_token", 1u8.into()),
        ]),
        "vocab.gguf: key 'tokenizer.ggml.add_bos_token' is u8 (1), expected bool"
    );
    assert_eq!(
        build_error(vec![
            ("tokenizer.ggml.model", "gpt2".into()),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.merges", vec!["a b", "ab"].into()),
        ]),
        "vocab.gguf: merge #1 \"ab\" in 'tokenizer.ggml.merges' is not 'left right'"
    );
    let msg = build_error(vec![
        ("tokenizer.ggml.model", "gpt2".into()),
        ("tokenizer.ggml.pre", "klingon".into()),
        ("tokenizer.ggml.tokens", tokens()),
        ("tokenizer.ggml.merges", vec!["a b"].into()),
    ]);
    assert!(
        msg.starts_with("vocab.gguf: pre-tokenizer 'klingon' is not supported"),
        "{msg}"
    );
}

#[test]
fn tiny_bpe_vocab_merges_by_rank() {
    // Byte-level texts: 'Ġ' is the space byte.
    let g = vocab_file(vec![
        ("tokenizer.ggml.model", "gpt2".into()),
        ("tokenizer.ggml.pre", "gpt2".into()),
        (
            "tokenizer.ggml.tokens",
            vec!["a", "b", "c", "Ġ", "ab", "bc", "abc", "Ġa", "<eot>"].into(),
        ),
        (
            "tokenizer.ggml.token_type",
            vec![1i32, 1, 1, 1, 1, 1, 1, 1, 3].into(),
        ),
        (
            "tokenizer.ggml.merges",
            vec!["b c", "a b", "a bc", "Ġ a"].into(),
        ),
        ("tokenizer.ggml.eos_token_id", 8u32.into()),
    ]);
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // "b c" has the best rank, so "abc" is a + bc, then "a bc".
    assert_eq!(tok.encode("abc", PLAIN), [6]);
    assert_eq!(tok.encode("ab", PLAIN), [4]);
    // In " ab" the rank-1 rule "a b" beats the rank-3 rule "Ġ a"; in " ac" only "Ġ a" applies.
    assert_eq!(tok.encode("cab ab ac", PLAIN), [2, 4, 3, 4, 7, 2]);
    let opts = EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    assert_eq!(tok.encode("ab<eot>", opts), [4, 8]);
    assert_eq!(tok.decode(&[2, 4, 3, 4, 7, 2]).unwrap(), "cab ab ac");
}
