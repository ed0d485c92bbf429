//! Random but valid Llama models of any shape, written as GGUF: for benchmarks and tests
//! where no trained weights of that shape are at hand.
//!
//! Tensor data comes from `greta::quant::fill_random_blocks` (weight-like values,
//! |w| around 0.02), generated in fixed-size chunks that each have their own seed, so the
//! output depends on the seed alone and not on how many threads made it.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;

use greta::quant::{fill_random_blocks, GgmlType, QuantError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::config::{keys, ConfigError, LlamaConfig, Role, TensorSpec, WEIGHT_TYPES};
use greta_gguf::{GgufWriteError, GgufWriter, Value};

/// Bytes generated from one seed; also the unit of progress reports.
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks generated in parallel while the previous batch is written.
const BATCH_CHUNKS: usize = 16;
/// Norm weights are `1 ± NORM_NOISE`, like trained RMSNorm weights near their start.
const NORM_NOISE: f32 = 0.05;
/// `<unk>`, `<s>`, `</s>` and the 256 byte tokens every generated vocabulary starts with.
const FIXED_TOKENS: usize = 3 + 256;

/// Why a model could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenModelError {
    /// The requested shape is not a valid Llama configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Writing the file failed.
    #[error(transparent)]
    Write(#[from] GgufWriteError),
    /// Random blocks could not be made.
    #[error("tensor '{tensor}': {source}")]
    Quant {
        tensor: String,
        #[source]
        source: QuantError,
    },
    /// A tensor's rows do not split into whole blocks of the requested type.
    #[error("tensor '{tensor}' cannot be {ggml_type}: its rows of {ne0} values are not a whole number of {block}-value blocks")]
    PartialBlock {
        tensor: String,
        ggml_type: GgmlType,
        ne0: u64,
        block: usize,
    },
    /// The vocabulary is too small for the fixed tokens.
    #[error(
        "a vocabulary of {n_vocab} tokens cannot hold the {FIXED_TOKENS} special and byte tokens"
    )]
    VocabTooSmall { n_vocab: usize },
    /// A `--type` name that is neither a recipe nor a supported weight type.
    #[error("unknown model type '{0}' (known: q4_k_m, {types})", types = WEIGHT_TYPES.map(|t| t.name().to_lowercase()).join(", "))]
    UnknownRecipe(String),
}

/// A named model shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Llama-2 7B: 32 layers, width 4096, 32 heads, FFN 11008, vocabulary 32000.
    #[value(name = "llama2-7b")]
    Llama2_7b,
    /// A 4-layer model of width 256 with grouped-query attention, for tests.
    Tiny,
}

impl Preset {
    /// The preset's hyperparameters.
    pub fn config(self) -> LlamaConfig {
        match self {
            Preset::Llama2_7b => LlamaConfig {
                n_layer: 32,
                n_embd: 4096,
                n_head: 32,
                n_head_kv: 32,
                n_ff: 11008,
                n_ctx: 4096,
                n_vocab: 32000,
                head_dim: 128,
                rope_dim: 128,
                rope_freq_base: 10000.0,
                rms_eps: 1e-5,
            },
            Preset::Tiny => LlamaConfig {
                n_layer: 4,
                n_embd: 256,
                n_head: 4,
                n_head_kv: 2,
                n_ff: 512,
                n_ctx: 512,
                n_vocab: 512,
                head_dim: 64,
                rope_dim: 64,
                rope_freq_base: 10000.0,
                rms_eps: 1e-5,
            },
        }
    }
}

/// Changes to a preset's shape; the head width follows `n_embd / n_head`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ShapeOverrides {
    /// Number of transformer blocks.
    #[arg(long)]
    pub n_layer: Option<usize>,
    /// Residual stream width.
    #[arg(long)]
    pub n_embd: Option<usize>,
    /// Query heads.
    #[arg(long)]
    pub n_head: Option<usize>,
    /// Key/value heads.
    #[arg(long)]
    pub n_head_kv: Option<usize>,
    /// Feed-forward hidden width.
    #[arg(long)]
    pub n_ff: Option<usize>,
    /// Context length.
    #[arg(long)]
    pub n_ctx: Option<usize>,
    /// Vocabulary size.
    #[arg(long)]
    pub n_vocab: Option<usize>,
    /// Rotated dimensions per head (default: the whole head).
    #[arg(long)]
    pub rope_dim: Option<usize>,
    /// RoPE frequency base.
    #[arg(long)]
    pub rope_freq_base: Option<f32>,
    /// RMSNorm epsilon.
    #[arg(long)]
    pub rms_eps: Option<f32>,
}

impl ShapeOverrides {
    /// `base` with these changes applied (not yet validated).
    pub fn apply(&self, base: &LlamaConfig) -> LlamaConfig {
        let n_embd = self.n_embd.unwrap_or(base.n_embd);
        let n_head = self.n_head.unwrap_or(base.n_head);
        // An invalid head count is reported by validation, not here.
        let head_dim = n_embd.checked_div(n_head).unwrap_or(0);
        LlamaConfig {
            n_layer: self.n_layer.unwrap_or(base.n_layer),
            n_embd,
            n_head,
            n_head_kv: self.n_head_kv.unwrap_or(base.n_head_kv),
            n_ff: self.n_ff.unwrap_or(base.n_ff),
            n_ctx: self.n_ctx.unwrap_or(base.n_ctx),
            n_vocab: self.n_vocab.unwrap_or(base.n_vocab),
            head_dim,
            rope_dim: self.rope_dim.unwrap_or(head_dim),
            rope_freq_base: self.rope_freq_base.unwrap_or(base.rope_freq_base),
            rms_eps: self.rms_eps.unwrap_or(base.rms_eps),
        }
    }
}

/// Which type each tensor is stored in. Norms are always F32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the head and for `attn_v` and
    /// `ffn_down` in the layers `use_more_bits` picks.
    Q4KM,
    /// Every matrix in one type.
    Uniform(GgmlType),
}

impl Recipe {
    /// The type of a tensor in a model of `n_layer` blocks.
    pub fn tensor_type(self, spec: &TensorSpec, n_layer: usize) -> GgmlType {
        if spec.role.is_norm() {
            return GgmlType::F32;
        }
        match self {
            Recipe::Uniform(ty) => ty,
            Recipe::Q4KM => match (spec.role, spec.layer) {
                (Role::Output, _) => GgmlType::Q6K,
                (Role::AttnV | Role::FfnDown, Some(layer)) if use_more_bits(layer, n_layer) => {
                    GgmlType::Q6K
                }
                _ => GgmlType::Q4K,
            },
        }
    }
}

impl FromStr for Recipe {
    type Err = GenModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("q4_k_m") {
            return Ok(Recipe::Q4KM);
        }
        WEIGHT_TYPES
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .map(Recipe::Uniform)
            .ok_or_else(|| GenModelError::UnknownRecipe(s.to_owned()))
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipe::Q4KM => f.write_str("Q4_K_M"),
            Recipe::Uniform(ty) => f.write_str(ty.name()),
        }
    }
}

/// llama.cpp's choice of the layers that get more bits in its `_M` mixes: the first and
/// last eighth of the blocks, and every third block in between.
pub fn use_more_bits(layer: usize, n_layer: usize) -> bool {
    let eighth = n_layer / 8;
    layer < eighth || layer >= 7 * n_layer / 8 || (layer - eighth) % 3 == 2
}

/// One tensor of a planned model.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    /// Name, role and shape.
    pub spec: TensorSpec,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Size of its data in bytes.
    pub bytes: u64,
}

/// A model to generate: its shape, tensor types and metadata.
#[derive(Clone, Debug)]
pub struct ModelPlan {
    config: LlamaConfig,
    recipe: Recipe,
    tensors: Vec<PlannedTensor>,
}

/// One piece of tensor data made from its own seed.
struct Chunk {
    tensor: usize,
    index: usize,
    len: usize,
}

impl ModelPlan {
    /// Plans a model of shape `config` (validated here) with types from `recipe`; the
    /// head is tied to the embeddings when `tied_embeddings`.
    pub fn new(
        config: LlamaConfig,
        recipe: Recipe,
        tied_embeddings: bool,
    ) -> Result<Self, GenModelError> {
        config.validate("generated model")?;
        if config.n_vocab < FIXED_TOKENS {
            return Err(GenModelError::VocabTooSmall {
                n_vocab: config.n_vocab,
            });
        }
        let tensors = config
            .tensor_specs(tied_embeddings)
            .into_iter()
            .map(|spec| {
                let ggml_type = recipe.tensor_type(&spec, config.n_layer);
                let ne0 = spec.dims.first().copied().unwrap_or(1);
                let block = ggml_type.block_elems();
                let bytes = ggml_type
                    .bytes_for(spec.n_elements())
                    .filter(|_| ne0.is_multiple_of(block as u64))
                    .ok_or_else(|| GenModelError::PartialBlock {
                        tensor: spec.name.clone(),
                        ggml_type,
                        ne0,
                        block,
                    })?;
                Ok(PlannedTensor {
                    spec,
                    ggml_type,
                    bytes,
                })
            })
            .collect::<Result<_, GenModelError>>()?;
        Ok(ModelPlan {
            config,
            recipe,
            tensors,
        })
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The tensors in file order.
    pub fn tensors(&self) -> &[PlannedTensor] {
        &self.tensors
    }

    /// Number of weights.
    pub fn n_params(&self) -> u64 {
        self.tensors.iter().map(|t| t.spec.n_elements()).sum()
    }

    /// Bytes of tensor data, without header or padding.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    /// Average bits per weight of the tensor data.
    pub fn bits_per_weight(&self) -> f64 {
        self.tensor_bytes() as f64 * 8.0 / self.n_params() as f64
    }

    /// The metadata written to the file: architecture, hyperparameters, tokenizer.
    pub fn metadata(&self) -> Vec<(&'static str, Value)> {
        let c = &self.config;
        // `validate` bounded every count far below u32::MAX.
        let n = |v: usize| Value::U32(v as u32);
        let (tokens, scores, types) = synthetic_vocab(c.n_vocab);
        vec![
            (keys::ARCHITECTURE, Value::from("llama")),
            (
                keys::NAME,
                Value::from(format!(
                    "random Llama {}x{} {}",
                    c.n_layer, c.n_embd, self.recipe
                )),
            ),
            (keys::CONTEXT_LENGTH, n(c.n_ctx)),
            (keys::EMBEDDING_LENGTH, n(c.n_embd)),
            (keys::BLOCK_COUNT, n(c.n_layer)),
            (keys::FEED_FORWARD_LENGTH, n(c.n_ff)),
            (keys::ROPE_DIMENSION_COUNT, n(c.rope_dim)),
            (keys::HEAD_COUNT, n(c.n_head)),
            (keys::HEAD_COUNT_KV, n(c.n_head_kv)),
            (keys::RMS_EPS, Value::F32(c.rms_eps)),
            (keys::ROPE_FREQ_BASE, Value::F32(c.rope_freq_base)),
            (keys::VOCAB_SIZE, n(c.n_vocab)),
            ("tokenizer.ggml.model", Value::from("llama")),
            (keys::TOKENS, Value::from(tokens)),
            ("tokenizer.ggml.scores", Value::from(scores)),
            ("tokenizer.ggml.token_type", Value::from(types)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ]
    }

    /// Writes the model to `path` with weights drawn from `seed`, calling `progress` with
    /// the number of tensor bytes written since its last call.
    pub fn write_file(
        &self,
        path: impl AsRef<Path>,
        seed: u64,
        progress: impl FnMut(u64) + Send,
    ) -> Result<(), GenModelError> {
        self.write(GgufWriter::new(path)?, seed, progress)?;
        Ok(())
    }

    /// Writes the model through `out`, as `write_file` does, and hands back the writer.
    pub fn write<W: Write + Send>(
        &self,
        mut out: GgufWriter<W>,
        seed: u64,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<W, GenModelError> {
        self.declare(&mut out)?;
        let chunks = self.chunks();
        let mut batches = chunks.chunks(BATCH_CHUNKS);
        let mut ready: Vec<Vec<u8>> = Vec::new();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        if let Some(first) = batches.next() {
            self.fill_batch(first, seed, &mut ready)?;
        }
        // Double buffering: the next batch is generated while the current one is written.
        for next in batches {
            let (written, filled) = rayon::join(
                || write_batch(&mut out, &ready, &mut progress),
                || self.fill_batch(next, seed, &mut spare),
            );
            written?;
            filled?;
            std::mem::swap(&mut ready, &mut spare);
        }
        write_batch(&mut out, &ready, &mut progress)?;
        Ok(out.finish()?)
    }

    /// The exact size of the file `write` produces, found by writing it with zero tensor
    /// data into a byte counter.
    pub fn file_size(&self) -> Result<u64, GenModelError> {
        let mut out = GgufWriter::with_writer("file size", ByteCounter(0));
        self.declare(&mut out)?;
        let zeros = vec![0u8; CHUNK_BYTES];
        let mut left = self.tensor_bytes() as usize;
        while left > 0 {
            let n = left.min(CHUNK_BYTES);
            out.write_tensor_data(&zeros[..n])?;
            left -= n;
        }
        Ok(out.finish()?.0)
    }

    /// Adds the metadata and declares every tensor.
    fn declare<W: Write>(&self, out: &mut GgufWriter<W>) -> Result<(), GenModelError> {
        for (key, value) in self.metadata() {
            out.add(key, value)?;
        }
        for t in &self.tensors {
            out.add_tensor(&t.spec.name, t.ggml_type, &t.spec.dims)?;
        }
        Ok(())
    }

    /// Every tensor's data split into chunks of whole blocks, in file order.
    fn chunks(&self) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        for (tensor, t) in self.tensors.iter().enumerate() {
            let block = t.ggml_type.block_bytes();
            let step = CHUNK_BYTES / block * block;
            // Each tensor was checked to fit in memory-sized counts when planned.
            let total = t.bytes as usize;
            chunks.extend((0..total.div_ceil(step)).map(|index| Chunk {
                tensor,
                index,
                len: step.min(total - index * step),
            }));
        }
        chunks
    }

    /// Generates `batch` into `bufs` (one buffer per chunk, reusing their allocations).
    fn fill_batch(
        &self,
        batch: &[Chunk],
        seed: u64,
        bufs: &mut Vec<Vec<u8>>,
    ) -> Result<(), GenModelError> {
        bufs.resize_with(batch.len(), Vec::new);
        bufs.par_iter_mut().zip(batch).try_for_each(|(buf, chunk)| {
            buf.resize(chunk.len, 0);
            self.fill_chunk(chunk, seed, buf)
        })
    }

    /// Generates one chunk from its own seed.
    fn fill_chunk(&self, chunk: &Chunk, seed: u64, buf: &mut [u8]) -> Result<(), GenModelError> {
        let t = &self.tensors[chunk.tensor];
        let mut rng = StdRng::seed_from_u64(splitmix64(
            splitmix64(seed ^ splitmix64(chunk.tensor as u64)) ^ chunk.index as u64,
        ));
        if t.spec.role.is_norm() {
            for v in buf.chunks_exact_mut(4) {
                let w = 1.0 + rng.gen_range(-NORM_NOISE..NORM_NOISE);
                v.copy_from_slice(&w.to_le_bytes());
            }
            return Ok(());
        }
        fill_random_blocks(t.ggml_type, buf, &mut rng).map_err(|source| GenModelError::Quant {
            tensor: t.spec.name.clone(),
            source,
        })
    }
}

/// Writes generated chunks in order, reporting each.
fn write_batch<W: Write>(
    out: &mut GgufWriter<W>,
    bufs: &[Vec<u8>],
    progress: &mut impl FnMut(u64),
) -> Result<(), GenModelError> {
    for buf in bufs {
        out.write_tensor_data(buf)?;
        progress(buf.len() as u64);
    }
    Ok(())
}

/// A writer that only counts bytes.
struct ByteCounter(u64);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// SplitMix64's output function: spreads (seed, tensor, chunk) into independent seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SentencePiece vocabulary of `n` tokens (at least `FIXED_TOKENS`): `<unk>`, `<s>`,
/// `</s>`, the 256 byte tokens, then `▁` and distinct lower-case pieces with and without a
/// leading `▁`, scored so that earlier pieces win. Returns texts, scores and types.
fn synthetic_vocab(n: usize) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    const UNKNOWN: i32 = 2;
    const CONTROL: i32 = 3;
    const BYTE: i32 = 6;
    const NORMAL: i32 = 1;
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![UNKNOWN, CONTROL, CONTROL];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.resize(tokens.len(), BYTE);
    let fillers = std::iter::once("▁".to_owned()).chain((0..).flat_map(|k| {
        let word = letters(k);
        [format!("▁{word}"), word]
    }));
    tokens.extend(fillers.take(n.saturating_sub(tokens.len())));
    types.resize(tokens.len(), NORMAL);
    let scores = (0..tokens.len())
        .map(|i| {
            if i < FIXED_TOKENS {
                0.0
            } else {
                -((i - FIXED_TOKENS) as f32)
            }
        })
        .collect();
    (tokens, scores, types)
}

/// The `k`-th lower-case word in the order a, b, ..., z, aa, ab, ...
fn letters(mut k: usize) -> String {
    let mut word = Vec::new();
    loop {
        word.push(b'a' + (k % 26) as u8);
        if k < 26 {
            break;
        }
        k = k / 26 - 1;
    }
    word.reverse();
    String::from_utf8(word).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn words_count_in_bijective_base_26() {
        let words: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702].map(letters).to_vec();
        assert_eq!(words, ["a", "b", "z", "aa", "ab", "az", "ba", "zz", "aaa"]);
    }

    #[test]
    fn synthetic_vocab_has_fixed_tokens_then_distinct_pieces() {
        let (tokens, scores, types) = synthetic_vocab(1000);
        assert_eq!(
            (tokens.len(), scores.len(), types.len()),
            (1000, 1000, 1000)
        );
        assert_eq!(&tokens[..4], ["<unk>", "<s>", "</s>", "<0x00>"]);
        assert_eq!(tokens[258], "<0xFF>");
        assert_eq!(&tokens[259..263], ["▁", "▁a", "a", "▁b"]);
        assert_eq!(&types[..4], [2, 3, 3, 6]);
        assert_eq!((types[258], types[259]), (6, 1));
        assert!(scores[260] > scores[261]);
        assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), 1000);
    }

    #[test]
    fn chunks_tile_every_tensor_in_whole_blocks() {
        let config = LlamaConfig {
            n_vocab: 40_000,
            ..Preset::Tiny.config()
        };
        let plan = ModelPlan::new(config, Recipe::Q4KM, false).unwrap();
        let chunks = plan.chunks();
        for (i, t) in plan.tensors().iter().enumerate() {
            let mine: Vec<&Chunk> = chunks.iter().filter(|c| c.tensor == i).collect();
            let lens: Vec<usize> = mine.iter().map(|c| c.len).collect();
            assert_eq!(
                lens.iter().sum::<usize>() as u64,
                t.bytes,
                "{}",
                t.spec.name
            );
            assert!(lens.iter().all(|l| l % t.ggml_type.block_bytes() == 0));
            assert!(mine.iter().enumerate().all(|(k, c)| c.index == k));
        }
        // The 40000-row embedding table (Q4_K) spans several chunks.
        assert!(chunks.iter().filter(|c| c.tensor == 0).count() > 1);
    }
}
