//! Model weights on the device, in the layouts the kernels read: every matrix packed by
//! `greta::quant::gpu`, Q and K stacked into one matrix (V beside it, its type may differ),
//! gate and up interleaved row by row so one launch computes SwiGLU, norms as f32.

use crate::config::{LayerWeights, LlamaWeights};
use greta::quant::gpu::{pack, GpuFormat};
use greta::runtime::{Buffer, Device};
use greta_gguf::TensorView;

/// Why weights could not be prepared for the device.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("tensor '{tensor}': {source}")]
    Layout {
        tensor: String,
        #[source]
        source: greta::quant::gpu::LayoutError,
    },
    #[error("tensor '{tensor}': {source}")]
    Decode {
        tensor: String,
        #[source]
        source: greta::quant::QuantError,
    },
    #[error("layer {layer}: {what}")]
    Mismatch { layer: usize, what: String },
    #[error(transparent)]
    Device(#[from] greta::runtime::Error),
}

/// A packed matrix on the device.
pub struct GpuMatrix {
    pub buf: Buffer<u32>,
    pub fmt: GpuFormat,
    pub rows: u32,
    pub cols: u32,
}

impl GpuMatrix {
    /// `out[t] = self[tok[t]]` for `rows` tokens: rows of the token table, dequantised.
    pub fn embed(
        &self,
        dev: &Device,
        tok: &Buffer<u32>,
        out: &mut Buffer<f32>,
        rows: u32,
    ) -> Result<(), greta::runtime::Error> {
        dev.launch(
            greta::kernels::decode::embed::definition(),
            &greta::kernels::decode::embed::Spec {
                fmt: self.fmt.code(),
            }
            .values(),
            (self.cols.div_ceil(256), rows).into(),
            &[
                (&self.buf).into(),
                tok.into(),
                out.into(),
                self.rows.into(),
                self.cols.into(),
            ],
        )
    }
}

/// One transformer block on the device.
pub struct GpuLayer {
    pub attn_norm: Buffer<f32>,
    pub ffn_norm: Buffer<f32>,
    /// Q rows then K rows.
    pub wqk: GpuMatrix,
    pub wv: GpuMatrix,
    pub wo: GpuMatrix,
    /// Gate and up rows interleaved: gate 0, up 0, gate 1, up 1, ...
    pub w_gate_up: GpuMatrix,
    pub w_down: GpuMatrix,
}

/// The whole model on the device.
pub struct GpuWeights {
    pub token_embd: GpuMatrix,
    pub layers: Vec<GpuLayer>,
    pub output_norm: Buffer<f32>,
    /// The head (a second handle to the embedding table when tied).
    pub output: GpuMatrix,
}

/// Rows and columns of a 2-D tensor (GGUF lists the innermost dimension first).
fn shape(t: &TensorView) -> (usize, usize) {
    (
        t.dims.get(1).copied().unwrap_or(1) as usize,
        t.dims[0] as usize,
    )
}

fn upload_matrix(
    dev: &Device,
    name: &str,
    ty: greta::quant::GgmlType,
    rows: usize,
    cols: usize,
    raw: &[u8],
) -> Result<GpuMatrix, WeightError> {
    let layout = |source| WeightError::Layout {
        tensor: name.to_string(),
        source,
    };
    let fmt = GpuFormat::of(ty).map_err(layout)?;
    let words = pack(ty, rows, cols, raw).map_err(layout)?;
    Ok(GpuMatrix {
        buf: dev.upload(&words)?,
        fmt,
        rows: rows as u32,
        cols: cols as u32,
    })
}

fn matrix(dev: &Device, t: &TensorView) -> Result<GpuMatrix, WeightError> {
    let (rows, cols) = shape(t);
    upload_matrix(dev, t.name, t.ggml_type, rows, cols, t.bytes)
}

/// A norm weight as f32, whatever its stored type.
fn vector(dev: &Device, t: &TensorView) -> Result<Buffer<f32>, WeightError> {
    let mut v = vec![0f32; t.dims[0] as usize];
    greta::quant::dequantize(t.ggml_type, t.bytes, &mut v).map_err(|source| {
        WeightError::Decode {
            tensor: t.name.to_string(),
            source,
        }
    })?;
    Ok(dev.upload(&v)?)
}

/// Row-major concatenation or interleaving of the rows of same-typed matrices.
fn combine_rows(parts: &[&TensorView], interleave: bool) -> Vec<u8> {
    let row_bytes = parts[0].bytes.len() / shape(parts[0]).0;
    let rows = shape(parts[0]).0;
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.bytes.len()).sum());
    if interleave {
        for r in 0..rows {
            for p in parts {
                out.extend_from_slice(&p.bytes[r * row_bytes..][..row_bytes]);
            }
        }
    } else {
        for p in parts {
            out.extend_from_slice(p.bytes);
        }
    }
    out
}

fn layer(dev: &Device, index: usize, l: &LayerWeights) -> Result<GpuLayer, WeightError> {
    let mismatch = |what: String| WeightError::Mismatch { layer: index, what };
    if l.attn_q.ggml_type != l.attn_k.ggml_type {
        return Err(mismatch(format!(
            "attn_q is {} but attn_k is {}; the fused QKV kernel needs Q and K of one type",
            l.attn_q.ggml_type, l.attn_k.ggml_type
        )));
    }
    if l.ffn_gate.ggml_type != l.ffn_up.ggml_type {
        return Err(mismatch(format!(
            "ffn_gate is {} but ffn_up is {}; the fused SwiGLU kernel needs one type",
            l.ffn_gate.ggml_type, l.ffn_up.ggml_type
        )));
    }
    let (q_rows, cols) = shape(&l.attn_q);
    let k_rows = shape(&l.attn_k).0;
    let qk = combine_rows(&[&l.attn_q, &l.attn_k], false);
    let wqk = upload_matrix(
        dev,
        l.attn_q.name,
        l.attn_q.ggml_type,
        q_rows + k_rows,
        cols,
        &qk,
    )?;
    let (ff, embd) = shape(&l.ffn_gate);
    let gu = combine_rows(&[&l.ffn_gate, &l.ffn_up], true);
    let w_gate_up = upload_matrix(
        dev,
        l.ffn_gate.name,
        l.ffn_gate.ggml_type,
        2 * ff,
        embd,
        &gu,
    )?;
    Ok(GpuLayer {
        attn_norm: vector(dev, &l.attn_norm)?,
        ffn_norm: vector(dev, &l.ffn_norm)?,
        wqk,
        wv: matrix(dev, &l.attn_v)?,
        wo: matrix(dev, &l.attn_output)?,
        w_gate_up,
        w_down: matrix(dev, &l.ffn_down)?,
    })
}

impl GpuWeights {
    /// Packs and uploads every tensor; `progress` receives the bytes of each tensor done.
    pub fn upload(
        dev: &Device,
        w: &LlamaWeights,
        mut progress: impl FnMut(u64),
    ) -> Result<GpuWeights, WeightError> {
        let token_embd = matrix(dev, &w.token_embd)?;
        progress(w.token_embd.bytes.len() as u64);
        let mut layers = Vec::with_capacity(w.layers.len());
        for (i, l) in w.layers.iter().enumerate() {
            layers.push(layer(dev, i, l)?);
            progress(
                [
                    l.attn_norm,
                    l.attn_q,
                    l.attn_k,
                    l.attn_v,
                    l.attn_output,
                    l.ffn_norm,
                    l.ffn_gate,
                    l.ffn_up,
                    l.ffn_down,
                ]
                .iter()
                .map(|t| t.bytes.len() as u64)
                .sum(),
            );
        }
        let output = if w.tied_embeddings {
            GpuMatrix {
                buf: token_embd.buf.view(),
                ..token_embd
            }
        } else {
            let m = matrix(dev, &w.output)?;
            progress(w.output.bytes.len() as u64);
            m
        };
        Ok(GpuWeights {
            output_norm: vector(dev, &w.output_norm)?,
            token_embd,
            layers,
            output,
        })
    }
}
