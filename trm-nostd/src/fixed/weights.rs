//! The fixed engine's weights, bound in place from a `Fixed` model: int8 (or int16) matrices
//! with their quantization tables, int16 embedding tables, and the checks that bind them
//! ([`WeightsQ::bind`]).

use super::kernels::I16Table;
use super::optimized::{Matrix, dot_w8_a16, dot_w16_a16};
use super::tables::{self, Words};
use crate::config::{Config, PosEncoding};
use crate::engine::{EngineError, MAX_LAYERS};
use crate::format::Model;
use crate::tensor::{DType, LayerTensor, TensorId, TensorSource};

/// A weight matrix (int8, or int16 little-endian pairs when `wide`) with its table.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MatQ<'a> {
    data: &'a [u8],
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// int16 weights.
    wide: bool,
    /// Bytes per row (`cols`, or `2 cols` when `wide`).
    stride: usize,
    pub(super) table: Words<'a>,
}

impl<'a> MatQ<'a> {
    #[inline]
    fn row(&self, o: usize) -> &'a [u8] {
        self.data
            .get(o * self.stride..(o + 1) * self.stride)
            .unwrap_or(&[])
    }

    /// The matrix for the matrix products ([`super::optimized::matmul`]).
    #[inline]
    pub(super) fn matrix(&self) -> Matrix<'a> {
        Matrix {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            wide: self.wide,
            table: self.table,
        }
    }

    /// `requant_o(W[o] . a)`.
    #[inline]
    pub(super) fn out(&self, o: usize, a: &[i16]) -> i64 {
        let acc = if self.wide {
            dot_w16_a16(self.row(o), a)
        } else {
            dot_w8_a16(self.row(o), a)
        };
        self.table.channel(o).apply(acc)
    }
}

/// An int16 table `[rows, cols]`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mat16<'a> {
    data: &'a [u8],
    cols: usize,
}

impl Mat16<'_> {
    pub(super) fn get(&self, r: usize, c: usize) -> i16 {
        I16Table(self.data).get(r * self.cols + c)
    }
}

/// The weights of one block.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LayerQ<'a> {
    /// qkv_proj or mlp_t gate_up.
    pub(super) mix_a: MatQ<'a>,
    /// o_proj or mlp_t down.
    pub(super) mix_b: MatQ<'a>,
    pub(super) gate_up: MatQ<'a>,
    pub(super) down: MatQ<'a>,
}

/// Every weight of a model, bound in place, with the global table.
#[derive(Debug, Clone, Copy)]
pub(super) struct WeightsQ<'a> {
    pub(super) embed_tokens: Mat16<'a>,
    pub(super) embed_pos: Mat16<'a>,
    pub(super) puzzle_emb: Mat16<'a>,
    pub(super) h_init: Mat16<'a>,
    pub(super) l_init: Mat16<'a>,
    pub(super) lm_head: MatQ<'a>,
    pub(super) q_weight: MatQ<'a>,
    pub(super) q_bias: [i32; 2],
    pub(super) global: Words<'a>,
    /// SwiGLU products kept exact ([`tables::TAG_EXACT_PRODUCTS`]).
    pub(super) exact_products: bool,
    pub(super) layers: [LayerQ<'a>; MAX_LAYERS],
}

impl<'a> WeightsQ<'a> {
    /// Binds and checks every tensor of `model` (config `c`, already validated, at most
    /// [`MAX_LAYERS`] blocks): each tensor's type and length, each table's length and
    /// requantization fields, and the global table (on `embed_tokens`).
    pub(super) fn bind(model: &Model<'a>, c: &Config) -> Result<Self, EngineError> {
        let c = *c;
        // Global block (on embed_tokens).
        let global = Words(model.quant_table(TensorId::EmbedTokens).unwrap_or(&[]));
        let rope_half = if !c.mlp_t && c.pos_encodings == PosEncoding::Rope {
            c.seq_total() * c.head_dim() / 2
        } else {
            0
        };
        let tag = global.word(0);
        let global_ok = (tag == tables::TAG || tag == tables::TAG_EXACT_PRODUCTS)
            && global.requant2(1).is_valid()
            && global.requant(4).is_valid()
            && global.uword(9) as usize == rope_half
            && global.len() == tables::GLOBAL_WORDS + 2 * tables::i16_words(rope_half);
        if !global_ok {
            return Err(EngineError::BadTable(TensorId::EmbedTokens));
        }
        let q_bias_data = data(model, &c, TensorId::QHeadBias, DType::I32)?;
        let bias = |i: usize| {
            q_bias_data
                .get(4 * i..4 * i + 4)
                .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let mut w = WeightsQ {
            embed_tokens: mat16(model, &c, TensorId::EmbedTokens)?,
            embed_pos: mat16(model, &c, TensorId::EmbedPos)?,
            puzzle_emb: mat16(model, &c, TensorId::PuzzleEmb)?,
            h_init: mat16(model, &c, TensorId::HInit)?,
            l_init: mat16(model, &c, TensorId::LInit)?,
            lm_head: matq(model, &c, TensorId::LmHead, head_len)?,
            q_weight: matq(model, &c, TensorId::QHeadWeight, head_len)?,
            q_bias: [bias(0), bias(1)],
            global,
            exact_products: tag == tables::TAG_EXACT_PRODUCTS,
            layers: [LayerQ::default(); MAX_LAYERS],
        };
        for (i, lw) in w.layers.iter_mut().enumerate().take(c.l_layers as usize) {
            let id = |tensor| TensorId::Layer {
                layer: i as u8,
                tensor,
            };
            let (a, a_words, b): (_, fn(usize, usize) -> bool, _) = if c.mlp_t {
                (LayerTensor::MlpTGateUp, gate_up_len, LayerTensor::MlpTDown)
            } else {
                (LayerTensor::QkvProj, qkv_len, LayerTensor::OProj)
            };
            *lw = LayerQ {
                mix_a: matq(model, &c, id(a), a_words)?,
                mix_b: matq(model, &c, id(b), down_len)?,
                gate_up: matq(model, &c, id(LayerTensor::MlpGateUp), gate_up_len)?,
                down: matq(model, &c, id(LayerTensor::MlpDown), down_len)?,
            };
            // The extra requants after the channel blocks.
            let extra_ok = |m: &MatQ<'_>| m.table.requant(tables::channel_words(m.rows)).is_valid();
            for (m, t) in [(&lw.mix_a, a), (&lw.gate_up, LayerTensor::MlpGateUp)] {
                if !extra_ok(m) {
                    return Err(EngineError::BadTable(id(t)));
                }
            }
        }
        Ok(w)
    }
}

/// The data of a tensor of the given type and exact length.
fn data<'a>(
    m: &Model<'a>,
    c: &Config,
    id: TensorId,
    dtype: DType,
) -> Result<&'a [u8], EngineError> {
    if !id.present(c) {
        return Ok(&[]);
    }
    let v = m.tensor(id).ok_or(EngineError::MissingTensor(id))?;
    let n = id.shape(c).numel();
    if v.dtype != dtype || v.data.len() != n * dtype.size() {
        return Err(EngineError::BadTensor(id));
    }
    Ok(v.data)
}

fn mat16<'a>(m: &Model<'a>, c: &Config, id: TensorId) -> Result<Mat16<'a>, EngineError> {
    Ok(Mat16 {
        data: data(m, c, id, DType::I16)?,
        cols: id.shape(c).cols as usize,
    })
}

/// A weight matrix (int8, or int16 where the scheme allows it) whose table length
/// `words(rows, len)` accepts and whose channel block is valid.
fn matq<'a>(
    m: &Model<'a>,
    c: &Config,
    id: TensorId,
    words: fn(usize, usize) -> bool,
) -> Result<MatQ<'a>, EngineError> {
    let shape = id.shape(c);
    let (rows, cols) = (shape.rows as usize, shape.cols as usize);
    // An int16 matrix in an int8-only file is refused by `data` (wrong type).
    let wide = m.scheme().allows_weights(DType::I16)
        && m.tensor(id).is_some_and(|v| v.dtype == DType::I16);
    let data = data(m, c, id, if wide { DType::I16 } else { DType::I8 })?;
    let table = Words(m.quant_table(id).unwrap_or(&[]));
    if !words(rows, table.len()) || !table.channel_block_valid(rows) {
        return Err(EngineError::BadTable(id));
    }
    Ok(MatQ {
        data,
        rows,
        cols,
        wide,
        stride: if wide { 2 * cols } else { cols },
        table,
    })
}

fn head_len(rows: usize, len: usize) -> bool {
    len == tables::head_words(rows)
}

fn qkv_len(rows: usize, len: usize) -> bool {
    len == tables::qkv_words(rows)
}

fn down_len(rows: usize, len: usize) -> bool {
    len == tables::down_words(rows)
}

fn gate_up_len(rows: usize, len: usize) -> bool {
    tables::gate_up_silu_knots(rows, len).is_some()
}
