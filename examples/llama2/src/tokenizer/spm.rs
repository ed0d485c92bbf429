//! SentencePiece tokenization as the reference implementation does it for `llama` vocabs:
//! spaces become U+2581, adjacent pieces merge by highest vocabulary score, and characters
//! no token covers fall back to `<0xNN>` byte tokens.

use super::merge::merge;
use super::Vocab;

/// The character SentencePiece uses for a space.
const SPACE: char = '\u{2581}';

/// SentencePiece state derived from the vocabulary.
pub(super) struct Spm {
    /// The `<0xNN>` token for each byte, where the vocabulary has one.
    byte_tokens: Vec<Option<u32>>,
}

impl Spm {
    /// Looks up the byte-fallback tokens.
    pub fn new(vocab: &Vocab) -> Spm {
        let byte_tokens = (0..=255u8)
            .map(|b| vocab.id(&format!("<0x{b:02X}>")))
            .collect();
        Spm { byte_tokens }
    }

    /// Encodes one text fragment, with a leading space when `prefix`, appending to `out`.
    pub fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        prefix: bool,
        unknown: Option<u32>,
        out: &mut Vec<u32>,
    ) {
        let mut escaped = String::with_capacity(text.len() + 3);
        if prefix {
            escaped.push(SPACE);
        }
        escaped.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));

        let pair = |t: &str, l: &super::merge::Symbol, r: &super::merge::Symbol| {
            let id = vocab.id(t.get(l.start..r.end)?)?;
            Some((f64::from(vocab.score(id)), id))
        };
        for symbol in merge(&escaped, |c| vocab.id(c), pair) {
            match symbol.id {
                Some(id) => out.push(id),
                None => {
                    let bytes = escaped.get(symbol.start..symbol.end).unwrap_or_default();
                    out.extend(bytes.bytes().filter_map(|b| {
                        self.byte_tokens
                            .get(usize::from(b))
                            .copied()
                            .flatten()
                            .or(unknown)
                    }));
                }
            }
        }
    }
}

/// The bytes of a normal SentencePiece token: its text with U+2581 turned back into spaces.
pub(super) fn normal_piece(text: &str) -> Vec<u8> {
    text.replace(SPACE, " ").into_bytes()
}

/// The byte a `<0xNN>` token stands for.
pub(super) fn byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    // from_str_radix alone would also accept a sign, as in `<0x+F>`.
    if hex.len() != 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_pieces_parse_only_the_exact_form() {
        assert_eq!(byte_piece("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_piece("<0xff>"), Some(0xff));
        assert_eq!(byte_piece("<0x100>"), None);
        assert_eq!(byte_piece("<0x+F>"), None);
        assert_eq!(byte_piece("0x0A"), None);
    }

    #[test]
    fn normal_pieces_turn_the_space_marker_into_spaces() {
        assert_eq!(normal_piece("\u{2581}Hello\u{2581}"), b" Hello ");
    }
}
