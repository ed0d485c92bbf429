//! Tokenizers built from GGUF metadata: SentencePiece (`llama`) and GPT-2 byte-level BPE
//! (`gpt2`), with special-token splitting and a chat prompt renderer.

mod bpe;
mod chat;
mod merge;
mod spm;

use std::collections::HashMap;

use greta_gguf::{Gguf, GgufError};

pub use chat::{ChatMessage, ChatTemplate};

/// The role a vocabulary entry plays, as numbered in `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// The type for a GGUF token type number, if known.
    pub fn from_gguf(v: i32) -> Option<TokenType> {
        Some(match v {
            0 => TokenType::Undefined,
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// The tokenizer family named by `tokenizer.ggml.model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// SentencePiece with scores and byte fallback (`llama`).
    SentencePiece,
    /// GPT-2 byte-level BPE with ranked merges (`gpt2`).
    Gpt2Bpe,
}

/// How text is turned into tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add the tokens the model asks for (`tokenizer.ggml.add_bos_token`/`add_eos_token`).
    pub add_special: bool,
    /// Recognise control-token text such as `<|im_start|>` in the input as those tokens.
    pub parse_special: bool,
}

/// Why a tokenizer could not be built or a token could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or of the wrong type.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A `tokenizer.ggml.model` this crate does not implement.
    #[error("{path}: tokenizer model '{model}' is not supported (supported: llama, gpt2)")]
    UnsupportedModel { path: String, model: String },
    /// A `tokenizer.ggml.pre` whose pre-tokenizer this crate does not implement.
    #[error("{path}: pre-tokenizer '{pre}' is not supported (supported: {supported})")]
    UnsupportedPre {
        path: String,
        pre: String,
        supported: String,
    },
    /// A per-token array whose length differs from the vocabulary's.
    #[error("{path}: key '{key}' has {len} entries but the vocabulary has {vocab}")]
    LengthMismatch {
        path: String,
        key: &'static str,
        len: usize,
        vocab: usize,
    },
    /// A token id in the metadata outside the vocabulary.
    #[error("{path}: key '{key}' is {id}, outside the vocabulary of {vocab} tokens")]
    IdOutOfRange {
        path: String,
        key: &'static str,
        id: u32,
        vocab: usize,
    },
    /// A token type number outside the known ones.
    #[error("{path}: token {id} has unknown type {value} in 'tokenizer.ggml.token_type'")]
    BadTokenType { path: String, id: usize, value: i32 },
    /// A merge rule that is not two tokens separated by a space.
    #[error("{path}: merge #{index} {merge:?} in 'tokenizer.ggml.merges' is not 'left right'")]
    BadMerge {
        path: String,
        index: usize,
        merge: String,
    },
    /// An empty vocabulary.
    #[error("{path}: 'tokenizer.ggml.tokens' is empty")]
    EmptyVocab { path: String },
    /// A token id passed to decode that the vocabulary does not have.
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    UnknownId { id: u32, vocab: usize },
}

/// The vocabulary: token texts, types and scores, and the reverse index.
struct Vocab {
    texts: Vec<String>,
    types: Vec<TokenType>,
    scores: Vec<f32>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }
}

/// The family-specific part of a tokenizer.
enum Model {
    Spm(spm::Spm),
    Bpe(Box<bpe::Bpe>),
}

/// A text <-> token id converter for one model.
pub struct Tokenizer {
    kind: TokenizerKind,
    vocab: Vocab,
    model: Model,
    bos: Option<u32>,
    eos: Option<u32>,
    unknown: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// Tokens matched as whole units in the input text, longest first.
    specials: Vec<(String, u32, TokenType)>,
    chat: ChatTemplate,
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<Self, TokenizerError> {
        let path = g.path().display().to_string();
        let model_name: &str = g.get("tokenizer.ggml.model")?;
        let kind = match model_name {
            "llama" => TokenizerKind::SentencePiece,
            "gpt2" => TokenizerKind::Gpt2Bpe,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    path,
                    model: other.to_owned(),
                })
            }
        };
        let vocab = load_vocab(g, &path)?;
        let n = vocab.texts.len();
        let token_id = |key: &'static str| -> Result<Option<u32>, TokenizerError> {
            match g.get_opt::<u32>(key)? {
                Some(id) if id as usize >= n => Err(TokenizerError::IdOutOfRange {
                    path: path.clone(),
                    key,
                    id,
                    vocab: n,
                }),
                other => Ok(other),
            }
        };
        let bos = token_id("tokenizer.ggml.bos_token_id")?;
        let eos = token_id("tokenizer.ggml.eos_token_id")?;
        let unknown = token_id("tokenizer.ggml.unknown_token_id")?.or_else(|| {
            vocab
                .types
                .iter()
                .position(|&t| t == TokenType::Unknown)
                .map(|i| i as u32)
        });
        // Defaults follow the reference implementation: SentencePiece models add BOS and a
        // leading space unless told otherwise; BPE models do neither.
        let spm = kind == TokenizerKind::SentencePiece;
        let add_bos = g.get_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(spm) && bos.is_some();
        let add_eos = g.get_opt("tokenizer.ggml.add_eos_token")?.unwrap_or(false) && eos.is_some();
        let add_space_prefix = g.get_opt("tokenizer.ggml.add_space_prefix")?.unwrap_or(spm);
        let model = match kind {
            TokenizerKind::SentencePiece => Model::Spm(spm::Spm::new(&vocab)),
            TokenizerKind::Gpt2Bpe => {
                let pre: Option<&str> = g.get_opt("tokenizer.ggml.pre")?;
                let merges: &[String] = g.get("tokenizer.ggml.merges")?;
                Model::Bpe(Box::new(bpe::Bpe::new(&vocab, pre, merges, &path)?))
            }
        };
        let mut specials: Vec<(String, u32, TokenType)> = vocab
            .texts
            .iter()
            .zip(&vocab.types)
            .enumerate()
            .filter(|(_, (text, ty))| {
                !text.is_empty()
                    && matches!(
                        ty,
                        TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                    )
            })
            .map(|(id, (text, &ty))| (text.clone(), id as u32, ty))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let chat = ChatTemplate::detect(g.get_opt("tokenizer.chat_template")?);
        Ok(Tokenizer {
            kind,
            vocab,
            model,
            bos,
            eos,
            unknown,
            add_bos,
            add_eos,
            add_space_prefix,
            specials,
            chat,
        })
    }

    /// The tokenizer family.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.texts.len()
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `add_special` encoding starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// The chat prompt format detected from `tokenizer.chat_template`.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat
    }

    /// The vocabulary text of a token, as stored in the model.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    /// The type of a token.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.types.get(id as usize).copied()
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// Turns text into token ids.
    pub fn encode(&self, text: &str, options: EncodeOptions) -> Vec<u32> {
        let mut out = Vec::new();
        if options.add_special && self.add_bos {
            out.extend(self.bos);
        }
        // A SentencePiece leading space goes before text at the start and after a special
        // token, the way the reference implementation treats each text fragment.
        let mut after_special = true;
        for fragment in self.split_specials(text, options.parse_special) {
            match fragment {
                Fragment::Special(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    match &self.model {
                        Model::Spm(m) => {
                            let prefix = self.add_space_prefix && after_special;
                            m.encode(&self.vocab, t, prefix, self.unknown, &mut out);
                        }
                        Model::Bpe(m) => m.encode(&self.vocab, t, self.unknown, &mut out),
                    }
                    after_special = false;
                }
            }
        }
        if options.add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// The bytes one token stands for; control tokens stand for nothing.
    pub fn piece(&self, id: u32) -> Result<Vec<u8>, TokenizerError> {
        let (text, ty) =
            self.token_text(id)
                .zip(self.token_type(id))
                .ok_or(TokenizerError::UnknownId {
                    id,
                    vocab: self.vocab_size(),
                })?;
        Ok(match ty {
            TokenType::Normal => match &self.model {
                Model::Spm(_) => spm::normal_piece(text),
                Model::Bpe(m) => m.normal_piece(text),
            },
            TokenType::Byte => spm::byte_piece(text).map_or_else(Vec::new, |b| vec![b]),
            TokenType::UserDefined => text.as_bytes().to_vec(),
            TokenType::Control | TokenType::Unknown | TokenType::Unused | TokenType::Undefined => {
                Vec::new()
            }
        })
    }

    /// Turns token ids back into text; the leading space a SentencePiece encode added (after
    /// an optional BOS) is removed, so `decode(encode(s)) == s`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        let first_text = usize::from(ids.first().is_some_and(|&id| Some(id) == self.bos));
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.piece(id)?;
            let stripped = match piece.strip_prefix(b" ") {
                Some(rest) if self.add_space_prefix && i == first_text => rest,
                _ => &piece,
            };
            bytes.extend_from_slice(stripped);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Splits text at special tokens (control ones only when `parse_special`).
    fn split_specials<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < text.len() {
            let rest = text.get(i..).unwrap_or_default();
            let found = self.specials.iter().find(|(s, _, ty)| {
                (parse_special || *ty == TokenType::UserDefined) && rest.starts_with(s.as_str())
            });
            match found {
                Some((s, id, _)) => {
                    if start < i {
                        out.extend(text.get(start..i).map(Fragment::Text));
                    }
                    out.push(Fragment::Special(*id));
                    i += s.len();
                    start = i;
                }
                None => i += rest.chars().next().map_or(1, char::len_utf8),
            }
        }
        if start < text.len() {
            out.extend(text.get(start..).map(Fragment::Text));
        }
        out
    }
}

/// A piece of input: plain text, or a special token matched whole.
enum Fragment<'t> {
    Text(&'t str),
    Special(u32),
}

fn load_vocab<B: AsRef<[u8]>>(g: &Gguf<B>, path: &str) -> Result<Vocab, TokenizerError> {
    let texts: &[String] = g.get("tokenizer.ggml.tokens")?;
    let n = texts.len();
    if n == 0 {
        return Err(TokenizerError::EmptyVocab {
            path: path.to_owned(),
        });
    }
    let check_len = |key: &'static str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(TokenizerError::LengthMismatch {
                path: path.to_owned(),
                key,
                len,
                vocab: n,
            })
        }
    };
    let scores = match g.get_opt::<&[f32]>("tokenizer.ggml.scores")? {
        Some(s) => {
            check_len("tokenizer.ggml.scores", s.len())?;
            s.to_vec()
        }
        None => Vec::new(),
    };
    let types = match g.get_opt::<&[i32]>("tokenizer.ggml.token_type")? {
        Some(t) => {
            check_len("tokenizer.ggml.token_type", t.len())?;
            t.iter()
                .enumerate()
                .map(|(id, &value)| {
                    TokenType::from_gguf(value).ok_or(TokenizerError::BadTokenType {
                        path: path.to_owned(),
                        id,
                        value,
                    })
                })
                .collect::<Result<_, _>>()?
        }
        None => vec![TokenType::Normal; n],
    };
    let ids = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    Ok(Vocab {
        texts: texts.to_vec(),
        types,
        scores,
        ids,
    })
}
