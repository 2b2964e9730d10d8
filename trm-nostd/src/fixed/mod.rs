//! The fixed-point engine: int8 (or int16) weights, int16 activations, integer-only evaluation.
//!
//! Weight matrices are int8 per output channel; a file of scheme
//! [`FIXED_I16_I16`](crate::format::FIXED_I16_I16) may store any of them as int16 instead
//! (twice the bytes, 256 times finer steps), which the engine runs through the int16 x int16
//! kernel ([`optimized::dot_w16_a16`]); everything else is the same.
//!
//! - [`kernels`]: the integer reference kernels, the specification of the integer path (one
//!   rounding rule, documented accumulator bounds);
//! - [`optimized`]: AVX2 / AVX-512 / Arm DSP versions of the two hot kernels, equal to the
//!   reference bit for bit, which the engine calls (selected at compile or run time);
//! - [`tables`]: the quantization tables a `Fixed` `.trm` file (format version 2) carries;
//! - `prepare` (feature `std`): the export-time conversions from real scales to integers;
//! - [`FixedEngine`]: the same recursion as the float engine ([`Recurrence`]), integer only.
//!
//! # Numbers
//!
//! Every activation has a per-tensor scale fixed at export (real value = integer * scale):
//!
//! - the states y, z and every block output are RMSNorm outputs at `sqrt(n) / 32767`
//!   (`|v| <= sqrt(n)` always holds after a weightless RMSNorm, so these never saturate);
//!   `H_init`/`L_init` are stored at the same state scale;
//! - x at a scale covering the largest embedding row (exact bound, computed at export);
//! - the network input `z + y + x` (or `y + z`) at a calibrated scale, requantized with one
//!   rounding ([`kernels::Requant2`]);
//! - SwiGLU gate, up and product, attention q, k, v: calibrated scales (int16);
//! - residual sums `h + delta` in `i32` at the block input's scale, clamped to
//!   [`kernels::RESIDUAL_MAX`], then [`kernels::rms_norm`];
//! - logits and the halting logits as `i32` at calibrated scales.
//!
//! Scales never appear at run time: the exporter folds them into integer multipliers and shifts
//! ([`kernels::Requant`]), SiLU tables and Q15 RoPE tables. The only float-typed items of this
//! module are the scales returned for host-side dequantization ([`FixedEngine::state_scale`],
//! [`FixedEngine::logit_scale`]), read from the file's bits without arithmetic.
//!
//! # Memory
//!
//! [`FixedEngine::scratch_len`] gives the `i16` and `i32` values the engine needs: x, y, z
//! (`3 L D` i16), one work buffer (mlp_t `L D`, attention `3 L D`), one SwiGLU row (`2 inter`),
//! one head vector, and in i32 one residual row (`max(D, L)`) and one row of attention scores.
//! A larger scratch (up to [`FixedEngine::scratch_len_fast`]) holds the SwiGLU values and
//! residuals of a block of rows (up to [`FAST_ROWS`]), and each weight row is then applied to
//! the whole block before the next one, so the weights stream from memory once per block
//! instead of once per row (this helps where the matrices do not fit in cache; on the
//! benchmark machine, whose caches hold them, the two sizes measured the same). The results
//! are identical for every scratch size (test
//! `fixed_kernels_simd::row_blocks_change_only_the_speed`).
//!
//! # Integer only
//!
//! Loading a model computes sizes from the config ([`Config::mlp_inter`] applies the
//! reference's float rule to the `expansion` field, once); from [`FixedEngine::start`] on,
//! every operation (`start`, `step`, `logits`, `predict`, `solve`) is integer arithmetic:
//! embeddings are int16 table reads, the halting decision is the sign of the integer `q_halt`
//! logit ([`kernels::q_halt_positive`]), answers are the integer argmax with ties to the lowest
//! index.
pub mod kernels;
pub mod optimized;
#[cfg(feature = "std")]
pub mod prepare;
pub mod tables;

use crate::config::{Config, ConfigError, PosEncoding};
use crate::float::MAX_LAYERS;
use crate::float::recursion::{self, HaltMode, Recurrence};
use crate::format::Model;
use crate::tensor::{DType, LayerTensor, TensorId, TensorSource};
use core::fmt;
use kernels::{
    I16Table, Requant, Requant2, SILU_KNOT_BITS_MIN, SILU_TABLE_LEN, attention_row,
    q_halt_positive, rms_norm, rope, sat_residual, sat16, sat32, softmax_q30,
};
// The hot kernels through the optimized implementations (bit-identical to the reference ones).
use optimized::{dot_a16_a16, dot_w8_a16, dot_w16_a16};
use tables::Words;

/// Why the fixed engine refused a model, a scratch buffer or an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FixedError {
    /// The config is invalid.
    Config(ConfigError),
    /// The model is not a `Fixed` (int8 / int16) model.
    NotFixed,
    /// The config is valid but beyond what this engine supports.
    Unsupported(&'static str),
    /// The model lacks a tensor the config needs.
    MissingTensor(TensorId),
    /// A tensor has the wrong element type or byte length.
    BadTensor(TensorId),
    /// A tensor's quantization table is missing, too short or holds invalid values.
    BadTable(TensorId),
    /// A scratch buffer is too small.
    ScratchTooSmall {
        /// Values needed ([`FixedEngine::scratch_len`]).
        need: ScratchLen,
        /// Values given.
        got: ScratchLen,
    },
    /// The input has the wrong number of tokens.
    BadInputLength {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// An output buffer has the wrong length.
    BadOutputLength {
        /// Values required.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A token is not below `vocab_size`.
    BadToken {
        /// Position of the first bad token.
        pos: usize,
    },
    /// The puzzle identifier is not below `num_puzzle_identifiers`.
    BadPuzzleId {
        /// The identifier given.
        id: u32,
    },
}

impl fmt::Display for FixedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixedError::Config(e) => write!(f, "fixed engine: {e}"),
            FixedError::NotFixed => f.write_str("fixed engine: the model is not a Fixed model"),
            FixedError::Unsupported(w) => write!(f, "fixed engine: unsupported: {w}"),
            FixedError::MissingTensor(t) => write!(f, "fixed engine: missing tensor {t}"),
            FixedError::BadTensor(t) => {
                write!(f, "fixed engine: tensor {t} has the wrong type or length")
            }
            FixedError::BadTable(t) => {
                write!(
                    f,
                    "fixed engine: tensor {t} has an invalid quantization table"
                )
            }
            FixedError::ScratchTooSmall { need, got } => write!(
                f,
                "fixed engine: scratch holds {} i16 and {} i32, {} and {} needed",
                got.i16s, got.i32s, need.i16s, need.i32s
            ),
            FixedError::BadInputLength { expected, got } => {
                write!(f, "fixed engine: {got} values given, {expected} expected")
            }
            FixedError::BadOutputLength { expected, got } => write!(
                f,
                "fixed engine: output buffer holds {got} values, {expected} expected"
            ),
            FixedError::BadToken { pos } => {
                write!(
                    f,
                    "fixed engine: token at position {pos} is out of vocabulary"
                )
            }
            FixedError::BadPuzzleId { id } => {
                write!(f, "fixed engine: puzzle identifier {id} is out of range")
            }
        }
    }
}

impl core::error::Error for FixedError {}

impl From<ConfigError> for FixedError {
    fn from(e: ConfigError) -> Self {
        FixedError::Config(e)
    }
}

/// Scratch sizes of the fixed engine, in values of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScratchLen {
    /// `i16` values.
    pub i16s: usize,
    /// `i32` values.
    pub i32s: usize,
}

impl ScratchLen {
    /// Total bytes.
    pub const fn bytes(&self) -> usize {
        2 * self.i16s + 4 * self.i32s
    }
}

/// What one ACT step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedStepOutput {
    /// ACT steps done since [`FixedEngine::start`] (1-based).
    pub step: u32,
    /// The integer halt logit (scale [`FixedEngine::q_scale`]); the model halts when `> 0`.
    pub q_halt: i32,
    /// The integer continue logit.
    pub q_continue: i32,
}

/// What a whole solve reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedSolveSummary {
    /// ACT steps run.
    pub steps: u32,
    /// The integer halt logit after the last step.
    pub q_halt: i32,
}

/// A weight matrix (int8, or int16 little-endian pairs when `wide`) with its table.
#[derive(Debug, Clone, Copy, Default)]
struct MatQ<'a> {
    data: &'a [u8],
    rows: usize,
    cols: usize,
    /// int16 weights.
    wide: bool,
    /// Bytes per row (`cols`, or `2 cols` when `wide`).
    stride: usize,
    table: Words<'a>,
}

impl<'a> MatQ<'a> {
    #[inline]
    fn row(&self, o: usize) -> &'a [u8] {
        self.data
            .get(o * self.stride..(o + 1) * self.stride)
            .unwrap_or(&[])
    }

    /// `requant_o(rq(sum_k W[o, k] p[k]))`: the exact-product SwiGLU down projection, from the
    /// halves of `p = 2^16 hi + lo` ([`kernels::split_product`]): two dots through the
    /// optimized kernels, equal to [`kernels::dot_w8_prod`] / [`kernels::dot_w16_prod`].
    #[inline]
    fn out_prod(&self, o: usize, rq: Requant, lo: &[i16], hi: &[i16]) -> i64 {
        let row = self.row(o);
        let (lo_dot, hi_dot) = if self.wide {
            (dot_w16_a16(row, lo), dot_w16_a16(row, hi))
        } else {
            (dot_w8_a16(row, lo), dot_w8_a16(row, hi))
        };
        let acc = kernels::prod_from_halves(lo_dot, hi_dot);
        self.table.channel(o).apply(rq.apply_i128(acc))
    }

    /// `requant_o(W[o] . a)`.
    #[inline]
    fn out(&self, o: usize, a: &[i16]) -> i64 {
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
struct Mat16<'a> {
    data: &'a [u8],
    cols: usize,
}

impl Mat16<'_> {
    fn get(&self, r: usize, c: usize) -> i16 {
        I16Table(self.data).get(r * self.cols + c)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct LayerQ<'a> {
    /// qkv_proj or mlp_t gate_up.
    mix_a: MatQ<'a>,
    /// o_proj or mlp_t down.
    mix_b: MatQ<'a>,
    gate_up: MatQ<'a>,
    down: MatQ<'a>,
}

#[derive(Debug, Clone, Copy)]
struct WeightsQ<'a> {
    embed_tokens: Mat16<'a>,
    embed_pos: Mat16<'a>,
    puzzle_emb: Mat16<'a>,
    h_init: Mat16<'a>,
    l_init: Mat16<'a>,
    lm_head: MatQ<'a>,
    q_weight: MatQ<'a>,
    q_bias: [i32; 2],
    global: Words<'a>,
    /// SwiGLU products kept exact ([`tables::TAG_EXACT_PRODUCTS`]).
    exact_products: bool,
    layers: [LayerQ<'a>; MAX_LAYERS],
}

/// The buffers of one network application.
#[derive(Debug)]
struct Bufs<'s> {
    /// mlp_t: `[D, L]`; attention: `[L, 3 D]`.
    work: &'s mut [i16],
    /// The SwiGLU values of a block of rows: `[rows, 2 inter]`.
    gu: &'s mut [i16],
    /// One head vector `[hd]`.
    head: &'s mut [i16],
    /// The residuals of a block of rows `[rows, max(D, L)]`.
    res: &'s mut [i32],
    /// One row of attention scores `[L]`.
    scores: &'s mut [i32],
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    ld: usize,
    work: usize,
    /// SwiGLU values of one row (`2 inter`).
    gu: usize,
    head: usize,
    /// Residual values of one row (`max(D, L)`).
    res: usize,
    scores: usize,
    /// Rows per weight pass (the SwiGLU and residual buffers hold this many rows).
    rows: usize,
    /// Most rows a pass can use (`max(D, L)`, the longest row loop).
    rows_max: usize,
}

impl Layout {
    fn new(c: &Config) -> Self {
        let (l, d) = (c.seq_total(), c.d());
        let attention = !c.mlp_t;
        let inter = if attention {
            c.mlp_inter()
        } else {
            c.mlp_inter().max(c.mlp_t_inter())
        };
        Layout {
            ld: l * d,
            work: if attention { 3 * l * d } else { l * d },
            gu: 2 * inter,
            head: if attention { c.head_dim() } else { 0 },
            res: d.max(l),
            scores: if attention { l } else { 0 },
            rows: 1,
            rows_max: d.max(l),
        }
    }

    fn len(&self) -> ScratchLen {
        ScratchLen {
            i16s: 3 * self.ld + self.work + self.rows * self.gu + self.head,
            i32s: self.rows * self.res + self.scores,
        }
    }

    /// The most rows per pass that fit in `got` (at least 1; `got` holds at least `len()` of
    /// one row).
    fn fit(mut self, got: ScratchLen) -> Self {
        let one = self.len();
        let extra16 = (got.i16s - one.i16s) / self.gu.max(1);
        let extra32 = (got.i32s - one.i32s) / self.res.max(1);
        self.rows = (1 + extra16.min(extra32)).min(self.rows_max);
        self
    }
}

/// Rows per weight pass with [`FixedEngine::scratch_len_fast`]: every weight row is read once
/// per block of this many activation rows (from cache) instead of once per row.
pub const FAST_ROWS: usize = 32;

fn carve<'a, T>(rest: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let taken = core::mem::take(rest);
    let (head, tail) = taken.split_at_mut(n.min(taken.len()));
    *rest = tail;
    head
}

/// The integer engine for one `Fixed` model, holding x, y, z (int16) of one puzzle.
///
/// ```ignore
/// let need = FixedEngine::scratch_len(model.config());
/// let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
/// let mut engine = FixedEngine::new(&model, &mut s16, &mut s32)?;
/// let summary = engine.solve(&tokens, 0, HaltMode::EarlyHalt, &mut answer)?;
/// ```
#[derive(Debug)]
pub struct FixedEngine<'a> {
    config: Config,
    w: WeightsQ<'a>,
    x: &'a mut [i16],
    y: &'a mut [i16],
    z: &'a mut [i16],
    bufs: Bufs<'a>,
    steps: u32,
}

/// The data of a tensor of the given type and exact length.
fn data<'a>(m: &Model<'a>, c: &Config, id: TensorId, dtype: DType) -> Result<&'a [u8], FixedError> {
    if !id.present(c) {
        return Ok(&[]);
    }
    let v = m.tensor(id).ok_or(FixedError::MissingTensor(id))?;
    let n = id.shape(c).numel();
    if v.dtype != dtype || v.data.len() != n * dtype.size() {
        return Err(FixedError::BadTensor(id));
    }
    Ok(v.data)
}

fn mat16<'a>(m: &Model<'a>, c: &Config, id: TensorId) -> Result<Mat16<'a>, FixedError> {
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
) -> Result<MatQ<'a>, FixedError> {
    let shape = id.shape(c);
    let (rows, cols) = (shape.rows as usize, shape.cols as usize);
    // An int16 matrix in an int8-only file is refused by `data` (wrong type).
    let wide = m.scheme().allows_weights(DType::I16)
        && m.tensor(id).is_some_and(|v| v.dtype == DType::I16);
    let data = data(m, c, id, if wide { DType::I16 } else { DType::I8 })?;
    let table = Words(m.quant_table(id).unwrap_or(&[]));
    if !words(rows, table.len()) || !table.channel_block_valid(rows) {
        return Err(FixedError::BadTable(id));
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

impl<'a> FixedEngine<'a> {
    /// Exact scratch [`FixedEngine::new`] requires for this config (zero for an invalid one).
    pub fn scratch_len(config: &Config) -> ScratchLen {
        if config.validate().is_err() {
            return ScratchLen::default();
        }
        Layout::new(config).len()
    }

    /// Scratch with which the engine processes [`FAST_ROWS`] rows per weight pass (the weights
    /// then stream from memory once per block of rows instead of once per row). Any size from [`FixedEngine::scratch_len`] up works and gives the same
    /// results bit for bit: the engine uses as many rows per pass as fit.
    pub fn scratch_len_fast(config: &Config) -> ScratchLen {
        if config.validate().is_err() {
            return ScratchLen::default();
        }
        let mut layout = Layout::new(config);
        layout.rows = FAST_ROWS.min(layout.rows_max);
        layout.len()
    }

    /// Validates the model (a `Fixed` scheme, every tensor's type and length, every table's
    /// length and requantization fields) and the scratch sizes, then carves the buffers.
    /// y and z start at H_init / L_init, x at zero.
    pub fn new(
        model: &Model<'a>,
        scratch16: &'a mut [i16],
        scratch32: &'a mut [i32],
    ) -> Result<Self, FixedError> {
        let c = *model.config();
        c.validate()?;
        if !model.scheme().is_fixed() {
            return Err(FixedError::NotFixed);
        }
        if c.l_layers as usize > MAX_LAYERS {
            return Err(FixedError::Unsupported("more than MAX_LAYERS blocks"));
        }
        let layout = Layout::new(&c);
        let need = layout.len();
        let got = ScratchLen {
            i16s: scratch16.len(),
            i32s: scratch32.len(),
        };
        if got.i16s < need.i16s || got.i32s < need.i32s {
            return Err(FixedError::ScratchTooSmall { need, got });
        }
        let layout = layout.fit(got);

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
            return Err(FixedError::BadTable(TensorId::EmbedTokens));
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
                    return Err(FixedError::BadTable(id(t)));
                }
            }
        }

        let mut r16: &'a mut [i16] = scratch16;
        let mut r32: &'a mut [i32] = scratch32;
        let x = carve(&mut r16, layout.ld);
        let y = carve(&mut r16, layout.ld);
        let z = carve(&mut r16, layout.ld);
        let work = carve(&mut r16, layout.work);
        let gu = carve(&mut r16, layout.rows * layout.gu);
        let head = carve(&mut r16, layout.head);
        let res = carve(&mut r32, layout.rows * layout.res);
        let scores = carve(&mut r32, layout.scores);
        x.fill(0);
        let mut engine = FixedEngine {
            config: c,
            w,
            x,
            y,
            z,
            bufs: Bufs {
                work,
                gu,
                head,
                res,
                scores,
            },
            steps: 0,
        };
        engine.reset_states();
        Ok(engine)
    }

    /// The config the engine runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The scale of y and z (real = integer * scale): `sqrt(D) / 32767`, from the file.
    pub fn state_scale(&self) -> f32 {
        f32::from_bits(self.w.global.uword(7))
    }

    /// The scale of x.
    pub fn x_scale(&self) -> f32 {
        f32::from_bits(self.w.global.uword(6))
    }

    /// The scale of the integer logits of [`FixedEngine::logits`].
    pub fn logit_scale(&self) -> f32 {
        let t = self.w.lm_head.table;
        f32::from_bits(t.uword(tables::channel_words(self.w.lm_head.rows)))
    }

    /// The scale of the integer halting logits.
    pub fn q_scale(&self) -> f32 {
        let t = self.w.q_weight.table;
        f32::from_bits(t.uword(tables::channel_words(self.w.q_weight.rows)))
    }

    fn reset_states(&mut self) {
        let d = self.config.d();
        for row in self.y.chunks_exact_mut(d) {
            for (c, v) in row.iter_mut().enumerate() {
                *v = self.w.h_init.get(0, c);
            }
        }
        for row in self.z.chunks_exact_mut(d) {
            for (c, v) in row.iter_mut().enumerate() {
                *v = self.w.l_init.get(0, c);
            }
        }
        self.steps = 0;
    }

    /// Loads a puzzle (same checks as the float engine), computes x from the int16 embedding
    /// tables (already in x units: the `sqrt(D)` and learned-position scales are folded in at
    /// export; with learned positions `x = sat16(emb + pos)`), and resets y, z. On error nothing
    /// changes.
    pub fn start(&mut self, tokens: &[u8], puzzle_id: u32) -> Result<(), FixedError> {
        let c = &self.config;
        let seq_len = c.seq_len as usize;
        if tokens.len() != seq_len {
            return Err(FixedError::BadInputLength {
                expected: seq_len,
                got: tokens.len(),
            });
        }
        if let Some(pos) = tokens.iter().position(|&t| t as u32 >= c.vocab_size) {
            return Err(FixedError::BadToken { pos });
        }
        if puzzle_id >= c.num_puzzle_identifiers {
            return Err(FixedError::BadPuzzleId { id: puzzle_id });
        }
        let d = c.d();
        let prefix = c.puzzle_emb_len as usize;
        let ndim = c.puzzle_emb_ndim as usize;
        let x = &mut *self.x;
        x.fill(0);
        for (k, v) in x.iter_mut().take(ndim).enumerate() {
            *v = self.w.puzzle_emb.get(puzzle_id as usize, k);
        }
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &mut x[(prefix + t) * d..(prefix + t + 1) * d];
            for (k, v) in row.iter_mut().enumerate() {
                *v = self.w.embed_tokens.get(tok as usize, k);
            }
        }
        if c.pos_encodings == PosEncoding::Learned {
            for (r, row) in x.chunks_exact_mut(d).enumerate() {
                for (k, v) in row.iter_mut().enumerate() {
                    *v = sat16(*v as i64 + self.w.embed_pos.get(r, k) as i64);
                }
            }
        }
        self.reset_states();
        Ok(())
    }

    /// Sets the carried states y and z (int16 at [`FixedEngine::state_scale`]), keeping x and
    /// the step counter. Both lengths are checked before anything changes.
    pub fn set_carry(&mut self, y: &[i16], z: &[i16]) -> Result<(), FixedError> {
        let expected = self.y.len();
        for got in [y.len(), z.len()] {
            if got != expected {
                return Err(FixedError::BadInputLength { expected, got });
            }
        }
        self.y.copy_from_slice(y);
        self.z.copy_from_slice(z);
        Ok(())
    }

    /// Runs one ACT step (the schedule of [`recursion::act_step_cycles`]) and reports the
    /// integer halting logits.
    pub fn step(&mut self) -> FixedStepOutput {
        let (h, l) = (self.config.h_cycles, self.config.l_cycles);
        recursion::act_step_cycles(self, h, l);
        self.steps = self.steps.saturating_add(1);
        let d = self.config.d();
        let y0 = &self.y[..d];
        let q = |o: usize| {
            sat32(
                self.w
                    .q_weight
                    .out(o, y0)
                    .saturating_add(self.w.q_bias[o] as i64),
            )
        };
        FixedStepOutput {
            step: self.steps,
            q_halt: q(0),
            q_continue: q(1),
        }
    }

    /// ACT steps done since the last [`FixedEngine::start`].
    pub fn steps(&self) -> u32 {
        self.steps
    }

    fn logit(&self, t: usize, k: usize) -> i32 {
        let c = &self.config;
        let d = c.d();
        let p = c.puzzle_emb_len as usize + t;
        sat32(self.w.lm_head.out(k, &self.y[p * d..(p + 1) * d]))
    }

    /// `[seq_len, vocab]` integer logits (scale [`FixedEngine::logit_scale`]) on the puzzle
    /// positions.
    pub fn logits(&self, out: &mut [i32]) -> Result<(), FixedError> {
        let c = &self.config;
        let v = c.vocab_size as usize;
        let expected = c.seq_len as usize * v;
        if out.len() != expected {
            return Err(FixedError::BadOutputLength {
                expected,
                got: out.len(),
            });
        }
        for (t, row) in out.chunks_exact_mut(v).enumerate() {
            for (k, o) in row.iter_mut().enumerate() {
                *o = self.logit(t, k);
            }
        }
        Ok(())
    }

    /// The predicted token per puzzle position: argmax of the integer logits, ties to the
    /// lowest index.
    pub fn predict(&mut self, out: &mut [u8]) -> Result<(), FixedError> {
        let c = self.config;
        let v = c.vocab_size as usize;
        let expected = c.seq_len as usize;
        if out.len() != expected {
            return Err(FixedError::BadOutputLength {
                expected,
                got: out.len(),
            });
        }
        for (t, o) in out.iter_mut().enumerate() {
            // The argmax of kernels::argmax, computed on the fly (no logits buffer).
            let mut best = (0usize, i32::MIN);
            for k in 0..v {
                let l = self.logit(t, k);
                if k == 0 || l > best.1 {
                    best = (k, l);
                }
            }
            *o = best.0 as u8;
        }
        Ok(())
    }

    /// The answer state y, `[seq_total, D]` int16.
    pub fn y(&self) -> &[i16] {
        self.y
    }

    /// The latent state z, `[seq_total, D]` int16.
    pub fn z(&self) -> &[i16] {
        self.z
    }

    /// The input embedding x, `[seq_total, D]` int16.
    pub fn x(&self) -> &[i16] {
        self.x
    }

    /// Solves one puzzle: start, ACT steps until `mode` says stop (halting when the integer
    /// `q_halt > 0`), then predict into `out`.
    pub fn solve(
        &mut self,
        tokens: &[u8],
        puzzle_id: u32,
        mode: HaltMode,
        out: &mut [u8],
    ) -> Result<FixedSolveSummary, FixedError> {
        let expected = self.config.seq_len as usize;
        if out.len() != expected {
            return Err(FixedError::BadOutputLength {
                expected,
                got: out.len(),
            });
        }
        self.start(tokens, puzzle_id)?;
        loop {
            let s = self.step();
            let halt = q_halt_positive(s.q_halt);
            if recursion::should_stop(mode, s.step, self.config.halt_max_steps, halt) {
                self.predict(out)?;
                return Ok(FixedSolveSummary {
                    steps: s.step,
                    q_halt: s.q_halt,
                });
            }
        }
    }
}

impl Recurrence for FixedEngine<'_> {
    fn update_z(&mut self) {
        let rq: Requant2 = self.w.global.requant2(1);
        for ((z, y), x) in self.z.iter_mut().zip(self.y.iter()).zip(self.x.iter()) {
            *z = sat16(rq.apply(*z as i64 + *y as i64, *x as i64));
        }
        net(&self.config, &self.w, &mut self.bufs, self.z);
    }

    fn update_y(&mut self) {
        let rq: Requant = self.w.global.requant(4);
        for (y, z) in self.y.iter_mut().zip(self.z.iter()) {
            *y = sat16(rq.apply(*y as i64 + *z as i64));
        }
        net(&self.config, &self.w, &mut self.bufs, self.y);
    }
}

/// The `l_layers` blocks on `h: [L, D]` (the input requant is done).
fn net(c: &Config, w: &WeightsQ<'_>, b: &mut Bufs<'_>, h: &mut [i16]) {
    let l = c.seq_total();
    for lw in w.layers.iter().take(c.l_layers as usize) {
        if c.mlp_t {
            let d = c.d();
            let ht = &mut b.work[..l * d];
            transpose(h, l, d, ht);
            swiglu_residual_rms(&lw.mix_a, &lw.mix_b, ht, d, w.exact_products, b.gu, b.res);
            transpose(ht, d, l, h);
        } else {
            attention_mixer(c, w, lw, h, b);
        }
        swiglu_residual_rms(&lw.gate_up, &lw.down, h, l, w.exact_products, b.gu, b.res);
    }
}

/// `dst: [cols, rows] = src: [rows, cols]^T`.
fn transpose(src: &[i16], rows: usize, cols: usize, dst: &mut [i16]) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// `h[r] = rms(h[r] + down(silu(gate(h[r])) * up(h[r])))` over `rows` rows of `n = down.rows`.
///
/// The product `silu(gate) * up` is requantized to int16 before `down`, or, with
/// `exact_products`, kept exact: `down` then sums `w * silu * up` and requantizes the total.
///
/// Rows go in blocks of as many as `gu` (`[block, 2 inter]`) and `res` (`[block, n]`) hold;
/// each weight row is applied to every row of a block before the next weight row, so the
/// weights stream once per block. Every output is the same expression as row by row.
fn swiglu_residual_rms(
    gate_up: &MatQ<'_>,
    down: &MatQ<'_>,
    h: &mut [i16],
    rows: usize,
    exact_products: bool,
    gu: &mut [i16],
    res: &mut [i32],
) {
    let n = down.rows;
    let inter = down.cols;
    let base = tables::channel_words(gate_up.rows);
    let prod_rq = gate_up.table.requant(base);
    let knots = tables::gate_up_silu_knots(gate_up.rows, gate_up.table.len());
    let silu_t: I16Table<'_> = gate_up
        .table
        .i16s(base + 2, knots.unwrap_or(SILU_TABLE_LEN));
    let silu_step = 16 - kernels::silu_knot_bits(silu_t.len()).unwrap_or(SILU_KNOT_BITS_MIN);
    let dbase = tables::channel_words(n);
    let eps = down.table.u64_at(dbase);
    let gw = 2 * inter;
    let block = (gu.len() / gw.max(1)).min(res.len() / n.max(1)).max(1);
    let len = (rows * n).min(h.len());
    let h = &mut h[..len];
    for hb in h.chunks_mut(block * n) {
        let r = hb.len() / n;
        let gu = &mut gu[..r * gw];
        let res = &mut res[..r * n];
        // gu: [r, 2 inter] = gate_up(rows): gate at the gate scale, up at the up scale.
        for o in 0..gw {
            for (g, row) in gu.chunks_exact_mut(gw).zip(hb.chunks_exact(n)) {
                g[o] = sat16(gate_up.out(o, row));
            }
        }
        // One loop per kind of product, so the int16 one stays as lean as it was.
        if exact_products {
            // [gate | up] <- [lo | hi] of the exact product silu(gate) * up.
            silu_pass(silu_step, gu, gw, inter, silu_t, None);
            for g in gu.chunks_exact_mut(gw) {
                let (gate, up) = g.split_at_mut(inter);
                for (s, u) in gate.iter_mut().zip(up.iter_mut()) {
                    (*s, *u) = kernels::split_product(*s, *u);
                }
            }
            for o in 0..n {
                for ((rr, row), g) in res
                    .chunks_exact_mut(n)
                    .zip(hb.chunks_exact(n))
                    .zip(gu.chunks_exact(gw))
                {
                    let (lo, hi) = g.split_at(inter);
                    let delta = down.out_prod(o, prod_rq, lo, hi);
                    rr[o] = sat_residual((row[o] as i64).saturating_add(delta));
                }
            }
        } else {
            // gate <- the int16 product.
            silu_pass(silu_step, gu, gw, inter, silu_t, Some(prod_rq));
            // res: [r, n] = rows + down(prod) at the rows' scale, then the norm.
            for o in 0..n {
                for ((rr, row), g) in res
                    .chunks_exact_mut(n)
                    .zip(hb.chunks_exact(n))
                    .zip(gu.chunks_exact(gw))
                {
                    let delta = down.out(o, &g[..inter]);
                    rr[o] = sat_residual((row[o] as i64).saturating_add(delta));
                }
            }
        }
        for (rr, row) in res.chunks_exact(n).zip(hb.chunks_exact_mut(n)) {
            rms_norm(rr, eps, row);
        }
    }
}

/// Over rows `[gate | up]` of `gu` (`gw = 2 inter` values each): `gate <- silu(gate)`, or with
/// `prod` the int16 product `gate <- prod(silu(gate) * up)`. The knot spacing `2^step` of the
/// table becomes a constant of the loop (a variable shift per value cost 2% of a step on
/// Cortex-M4F).
fn silu_pass(
    step: u32,
    gu: &mut [i16],
    gw: usize,
    inter: usize,
    table: I16Table<'_>,
    prod: Option<Requant>,
) {
    fn pass<const STEP: u32>(
        gu: &mut [i16],
        gw: usize,
        inter: usize,
        table: I16Table<'_>,
        prod: Option<Requant>,
    ) {
        for g in gu.chunks_exact_mut(gw) {
            let (gate, up) = g.split_at_mut(inter);
            match prod {
                Some(rq) => {
                    for (g, u) in gate.iter_mut().zip(up.iter()) {
                        let s = kernels::silu_spaced(table, STEP, *g);
                        *g = sat16(rq.apply(s as i64 * *u as i64));
                    }
                }
                None => {
                    for g in gate.iter_mut() {
                        *g = kernels::silu_spaced(table, STEP, *g);
                    }
                }
            }
        }
    }
    match step {
        4 => pass::<4>(gu, gw, inter, table, prod),
        5 => pass::<5>(gu, gw, inter, table, prod),
        6 => pass::<6>(gu, gw, inter, table, prod),
        7 => pass::<7>(gu, gw, inter, table, prod),
        _ => pass::<8>(gu, gw, inter, table, prod),
    }
}

/// `h = rms(h + o_proj(attn(rope(qkv(h)))))` on `h: [L, D]`.
fn attention_mixer(c: &Config, w: &WeightsQ<'_>, lw: &LayerQ<'_>, h: &mut [i16], b: &mut Bufs<'_>) {
    let (l, d) = (c.seq_total(), c.d());
    let heads = c.num_heads as usize;
    let hd = c.head_dim();
    let half = hd / 2;
    let qkv_m = &lw.mix_a;
    let qkv = &mut b.work[..3 * l * d];
    // Weight row outer, sequence rows inner: each weight row is read once per pass.
    for o in 0..3 * d {
        for (row, out) in h.chunks_exact(d).zip(qkv.chunks_exact_mut(3 * d)) {
            out[o] = sat16(qkv_m.out(o, row));
        }
    }
    let rope_half = w.global.uword(9) as usize;
    if rope_half > 0 {
        let cos_w = tables::GLOBAL_WORDS;
        let sin_w = cos_w + tables::i16_words(rope_half);
        let cos_all = w.global.i16s(cos_w, rope_half);
        let sin_all = w.global.i16s(sin_w, rope_half);
        for (r, row) in qkv.chunks_exact_mut(3 * d).enumerate() {
            let span = r * half * 2..(r + 1) * half * 2;
            let cos = I16Table(cos_all.0.get(span.clone()).unwrap_or(&[]));
            let sin = I16Table(sin_all.0.get(span).unwrap_or(&[]));
            for head in row[..2 * d].chunks_exact_mut(hd) {
                rope(head, cos, sin);
            }
        }
    }
    let score_rq = qkv_m.table.requant(tables::channel_words(qkv_m.rows));
    let stride = 3 * d;
    let scores = &mut b.scores[..l];
    let head_out = &mut b.head[..hd];
    for i in 0..l {
        for hh in 0..heads {
            let q_off = i * stride + hh * hd;
            for (j, s) in scores.iter_mut().enumerate() {
                let k_off = j * stride + d + hh * hd;
                let acc = dot_a16_a16(&qkv[q_off..q_off + hd], &qkv[k_off..k_off + hd]);
                *s = sat32(score_rq.apply(acc));
            }
            let sum = softmax_q30(scores);
            let v_base = 2 * d + hh * hd;
            attention_row(
                scores,
                sum,
                |j| &qkv[j * stride + v_base..j * stride + v_base + hd],
                head_out,
            );
            qkv[q_off..q_off + hd].copy_from_slice(head_out);
        }
    }
    let o_m = &lw.mix_b;
    let eps = o_m.table.u64_at(tables::channel_words(d));
    let block = (b.res.len() / d).max(1);
    for (hb, ab) in h.chunks_mut(block * d).zip(qkv.chunks(block * stride)) {
        let res = &mut b.res[..hb.len()];
        for o in 0..d {
            for ((r, row), a) in res
                .chunks_exact_mut(d)
                .zip(hb.chunks_exact(d))
                .zip(ab.chunks_exact(stride))
            {
                r[o] = sat_residual((row[o] as i64).saturating_add(o_m.out(o, &a[..d])));
            }
        }
        for (r, row) in res.chunks_exact(d).zip(hb.chunks_exact_mut(d)) {
            rms_norm(r, eps, row);
        }
    }
}
