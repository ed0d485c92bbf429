//! GPT-2 byte-level BPE: text is split into words by the pre-tokenizer regexes the model's
//! `tokenizer.ggml.pre` calls for, each word's bytes are mapped to printable characters,
//! and adjacent symbols merge by the rank of their rule in `tokenizer.ggml.merges`.

use std::collections::HashMap;

use fancy_regex::Regex;

use super::merge::{merge, Symbol};
use super::{TokenizerError, Vocab};

/// The GPT-2 word pattern (contractions, letters, digits, other runs, whitespace).
const GPT2_WORDS: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Pre-tokenizers by `tokenizer.ggml.pre` name: regexes applied in turn, each splitting the
/// pieces the previous one produced (matches and the text between them both stay pieces).
const PRE_TOKENIZERS: &[(&[&str], &[&str])] = &[
    (&["gpt2", "gpt-2"], &[GPT2_WORDS]),
    // Digits are split one by one before the GPT-2 pattern runs.
    (
        &["smollm", "starcoder", "refact", "command-r", "codeshell"],
        &[r"\p{N}", GPT2_WORDS],
    ),
    // What the reference implementation uses when a BPE model names no pre-tokenizer.
    (
        &["default"],
        &[
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2_WORDS,
            r"\p{N}+",
            "[0-9][0-9][0-9]",
        ],
    ),
];

/// GPT-2 byte-level BPE state derived from the vocabulary and merges.
pub(super) struct Bpe {
    splitters: Vec<Regex>,
    /// (left id, right id) -> (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    byte_chars: [char; 256],
    char_bytes: HashMap<char, u8>,
}

impl Bpe {
    /// Builds the pre-tokenizer for `pre` (or the default) and indexes the merges.
    pub fn new(
        vocab: &Vocab,
        pre: Option<&str>,
        merges: &[String],
        path: &str,
    ) -> Result<Bpe, TokenizerError> {
        let pre = pre.unwrap_or("default");
        let patterns = PRE_TOKENIZERS
            .iter()
            .find(|(names, _)| names.contains(&pre))
            .map(|(_, patterns)| *patterns)
            .ok_or_else(|| TokenizerError::UnsupportedPre {
                path: path.to_owned(),
                pre: pre.to_owned(),
                supported: PRE_TOKENIZERS
                    .iter()
                    .flat_map(|(names, _)| names.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let splitters = patterns
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<_, _>>()
            .map_err(|e| TokenizerError::UnsupportedPre {
                path: path.to_owned(),
                pre: pre.to_owned(),
                supported: format!("its pattern does not compile here: {e}"),
            })?;

        let mut index = HashMap::with_capacity(merges.len());
        for (rank, rule) in merges.iter().enumerate() {
            let (left, right) = rule
                .split_once(' ')
                .ok_or_else(|| TokenizerError::BadMerge {
                    path: path.to_owned(),
                    index: rank,
                    merge: rule.clone(),
                })?;
            // A rule whose parts or result are not tokens can never produce a token; skip it.
            let ids = vocab.id(left).zip(vocab.id(right));
            if let Some(((l, r), merged)) = ids.zip(vocab.id(&format!("{left}{right}"))) {
                index.entry((l, r)).or_insert((rank as u32, merged));
            }
        }

        let byte_chars = byte_chars();
        let char_bytes = (0..=255u8)
            .map(|b| (byte_chars[usize::from(b)], b))
            .collect();
        Ok(Bpe {
            splitters,
            merges: index,
            byte_chars,
            char_bytes,
        })
    }

    /// Encodes one text fragment, appending to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, unknown: Option<u32>, out: &mut Vec<u32>) {
        let pair = |_: &str, l: &Symbol, r: &Symbol| {
            let &(rank, id) = self.merges.get(&(l.id?, r.id?))?;
            Some((-f64::from(rank), id))
        };
        for word in self.pre_tokenize(text) {
            let mapped: String = word
                .bytes()
                .map(|b| self.byte_chars[usize::from(b)])
                .collect();
            for symbol in merge(&mapped, |c| vocab.id(c), pair) {
                out.extend(symbol.id.or(unknown));
            }
        }
    }

    /// The bytes of a normal token: each character mapped back to the byte it stands for.
    pub fn normal_piece(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.char_bytes.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    }

    /// Splits text into words with each pre-tokenizer regex in turn.
    fn pre_tokenize<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces = vec![text];
        for re in &self.splitters {
            let mut next = Vec::with_capacity(pieces.len());
            for piece in pieces {
                let mut last = 0;
                for m in re.find_iter(piece) {
                    // A regex that gives up (backtracking limit) leaves the rest whole.
                    let Ok(m) = m else { break };
                    if m.start() > last {
                        next.extend(piece.get(last..m.start()));
                    }
                    next.push(m.as_str());
                    last = m.end();
                }
                if last < piece.len() {
                    next.extend(piece.get(last..));
                }
            }
            pieces = next;
        }
        pieces
    }
}

/// GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the rest
/// take the characters from U+0100 on, so every byte string becomes visible text.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        table[usize::from(b)] = if printable {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_the_gpt2_one() {
        let t = byte_chars();
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[usize::from(b'a')], 'a');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xad], '\u{143}');
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    fn empty_vocab() -> Vocab {
        Vocab {
            texts: vec![],
            types: vec![],
            scores: vec![],
            ids: HashMap::new(),
        }
    }

    fn splitter(pre: &str) -> Bpe {
        Bpe::new(&empty_vocab(), Some(pre), &[], "test").unwrap()
    }

    #[test]
    fn gpt2_words() {
        let b = splitter("gpt2");
        assert_eq!(
            b.pre_tokenize("Hello world's  end\n\n12 ok!"),
            ["Hello", " world", "'s", " ", " end", "\n", "\n", "12", " ok", "!"]
        );
    }

    #[test]
    fn smollm_splits_digits_singly() {
        let b = splitter("smollm");
        assert_eq!(
            b.pre_tokenize("in 2024, x"),
            ["in", " ", "2", "0", "2", "4", ",", " x"]
        );
    }

    #[test]
    fn unknown_pre_tokenizer_is_refused_by_name() {
        let msg = Bpe::new(&empty_vocab(), Some("klingon"), &[], "m.gguf")
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.starts_with("m.gguf: pre-tokenizer 'klingon' is not supported"),
            "{msg}"
        );
        assert!(msg.contains("smollm"), "{msg}");
    }
}
