//! The float engine: the numeric reference of the project.
//!
//! f32 only, `libm` for `exp`, `sqrt`, `pow`, `cos` and `sin`, and a summation order fixed by the
//! code ([`kernels`]), so a run gives the same bits on x86_64, Cortex-M4F and RISC-V. Weights are
//! read in place through a [`TensorSource`] (f32, f16 or bf16; converted to f32 one row at a
//! time), and every buffer is carved from one caller-provided `&mut [f32]` scratch: no heap, and
//! no stack array larger than a few dozen bytes.
//!
//! Semantics follow the reference `TinyRecursiveReasoningModel_ACTV1` (see `DESIGN.md`):
//!
//! - `x = sqrt(D) * cat(puzzle prefix, token embeddings)`; the prefix is the puzzle's
//!   `puzzle_emb_ndim` values zero-padded to `puzzle_emb_len * D` and viewed as
//!   `[puzzle_emb_len, D]`; with learned positions `0.707106781 * (emb + pos)` comes before the
//!   `sqrt(D)` scale.
//! - `net(h, inj)`: `h = h + inj`, then `l_layers` post-norm blocks (weightless RMSNorm): the
//!   token mixer (attention with optional RoPE, or the mlp_t SwiGLU over the sequence axis with the
//!   norm over the sequence), then the channel SwiGLU.
//! - One ACT step ([`FloatEngine::step`]): the schedule of [`recursion::act_step_cycles`], then
//!   `q_halt, q_continue = q_head(y[0]) + bias`; logits are `lm_head(y)` on the puzzle positions.
//!
//! # Memory
//!
//! [`FloatEngine::scratch_len`] gives the exact number of f32 the engine needs (x, y, z, one work
//! buffer, the RoPE tables, one converted weight row, and the SwiGLU buffers of a block of
//! [`kernels::ROW_BLOCK`] rows). A larger scratch lets the engine process more rows per weight
//! pass, which is much faster on a host (weights are then streamed once per matrix product);
//! [`FloatEngine::scratch_len_fast`] gives the size where every product is done in one pass.
//! Results are bit-identical for every scratch size. Values checked by the test
//! `float_engine::documented_scratch_sizes`:
//!
//! | config | `scratch_len` (bytes) | `scratch_len_fast` (bytes) |
//! |---|---|---|
//! | `Config::sudoku_mlp_t()` (D=512, L=97) | 858_112 | 8_140_800 |
//! | `Config::sudoku_attention()` (D=512, L=97, RoPE) | 1_305_476 | 2_638_724 |
//! | `Config::sudoku_mlp_t_d128()` (D=128, L=97) | 219_136 | 790_528 |
//!
//! The engine struct itself is about 1 KB (it borrows its weights and its scratch).

pub mod kernels;
pub mod recursion;
pub mod weights;

#[cfg(feature = "std")]
mod host;
#[cfg(feature = "std")]
pub use host::{NameError, OwnedSource, OwnedWeights};

pub use recursion::{HaltMode, Recurrence};
pub use weights::MatRef;

use crate::config::{Config, ConfigError, PosEncoding};
use crate::tensor::{DType, LayerTensor, Shape, TensorId, TensorSource};
use core::fmt;
use kernels::{BlockBuffers, ROW_BLOCK};

/// Most blocks (`l_layers`) the float engine supports (the paper uses 2).
pub const MAX_LAYERS: usize = 8;

/// The learned-position scale: the reference writes `0.707106781`, which rounds to the same f32
/// as 1/sqrt(2).
pub const LEARNED_POS_SCALE: f32 = core::f32::consts::FRAC_1_SQRT_2;

/// Why the engine refused a model, a scratch buffer or an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EngineError {
    /// The config is invalid.
    Config(ConfigError),
    /// The config is valid but beyond what this engine supports.
    Unsupported(&'static str),
    /// The weight source lacks a tensor the config needs.
    MissingTensor(TensorId),
    /// A tensor has the wrong shape.
    BadShape {
        /// Which tensor.
        tensor: TensorId,
        /// The shape the config requires.
        expected: Shape,
        /// The shape found.
        got: Shape,
    },
    /// A tensor's byte length does not match its shape and element type.
    BadData(TensorId),
    /// A tensor is not f32, f16 or bf16.
    BadDType {
        /// Which tensor.
        tensor: TensorId,
        /// Its element type.
        dtype: DType,
    },
    /// The scratch buffer is too small.
    ScratchTooSmall {
        /// f32 values needed ([`FloatEngine::scratch_len`]).
        need: usize,
        /// f32 values given.
        got: usize,
    },
    /// The input has the wrong number of tokens.
    BadInputLength {
        /// `seq_len`.
        expected: usize,
        /// Tokens given.
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

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "float engine: {e}"),
            EngineError::Unsupported(what) => write!(f, "float engine: unsupported: {what}"),
            EngineError::MissingTensor(t) => write!(f, "float engine: missing tensor {t}"),
            EngineError::BadShape {
                tensor,
                expected,
                got,
            } => write!(
                f,
                "float engine: tensor {tensor} has shape [{}, {}], expected [{}, {}]",
                got.rows, got.cols, expected.rows, expected.cols
            ),
            EngineError::BadData(t) => write!(
                f,
                "float engine: tensor {t}: data length does not match shape and dtype"
            ),
            EngineError::BadDType { tensor, dtype } => write!(
                f,
                "float engine: tensor {tensor} has dtype {dtype:?}, expected f32, f16 or bf16"
            ),
            EngineError::ScratchTooSmall { need, got } => {
                write!(f, "float engine: scratch holds {got} f32, {need} needed")
            }
            EngineError::BadInputLength { expected, got } => {
                write!(f, "float engine: {got} tokens given, {expected} expected")
            }
            EngineError::BadOutputLength { expected, got } => write!(
                f,
                "float engine: output buffer holds {got} values, {expected} expected"
            ),
            EngineError::BadToken { pos } => {
                write!(
                    f,
                    "float engine: token at position {pos} is out of vocabulary"
                )
            }
            EngineError::BadPuzzleId { id } => {
                write!(f, "float engine: puzzle identifier {id} is out of range")
            }
        }
    }
}

impl core::error::Error for EngineError {}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        EngineError::Config(e)
    }
}

/// What one ACT step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StepOutput {
    /// ACT steps done since [`FloatEngine::start`] (1-based: 1 after the first step).
    pub step: u32,
    /// The halt logit `q_head(y[0])[0] + bias[0]`; the reference halts when it is positive.
    pub q_halt: f32,
    /// The continue logit `q_head(y[0])[1] + bias[1]`.
    pub q_continue: f32,
}

/// What a whole solve reports.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SolveSummary {
    /// ACT steps run.
    pub steps: u32,
    /// The halt logit after the last step.
    pub q_halt: f32,
}

/// The weights of one block.
#[derive(Debug, Clone, Copy)]
struct LayerWeights<'a> {
    /// qkv_proj (attention) or mlp_t gate_up.
    mix_a: MatRef<'a>,
    /// o_proj (attention) or mlp_t down.
    mix_b: MatRef<'a>,
    gate_up: MatRef<'a>,
    down: MatRef<'a>,
}

const EMPTY_LAYER: LayerWeights<'static> = LayerWeights {
    mix_a: MatRef::empty(),
    mix_b: MatRef::empty(),
    gate_up: MatRef::empty(),
    down: MatRef::empty(),
};

#[derive(Debug, Clone, Copy)]
struct Weights<'a> {
    embed_tokens: MatRef<'a>,
    embed_pos: MatRef<'a>,
    puzzle_emb: MatRef<'a>,
    h_init: MatRef<'a>,
    l_init: MatRef<'a>,
    lm_head: MatRef<'a>,
    q_weight: MatRef<'a>,
    q_bias: MatRef<'a>,
    layers: [LayerWeights<'a>; MAX_LAYERS],
}

/// Sizes of the scratch carving, shared by [`FloatEngine::scratch_len`] and the carving itself.
#[derive(Debug, Clone, Copy)]
struct Layout {
    l: usize,
    d: usize,
    work: usize,
    rope: usize,
    wrow: usize,
    scores: usize,
    /// `2 * inter` of the widest SwiGLU.
    gu_per_row: usize,
    /// Width of the widest SwiGLU output row.
    out_per_row: usize,
    /// Rows of the largest row-blocked product.
    rows_max: usize,
}

impl Layout {
    fn new(c: &Config) -> Self {
        let l = c.seq_total();
        let d = c.d();
        let inter = c.mlp_inter();
        let attention = !c.mlp_t;
        let (work, inter_max, n_max, rows_max) = if attention {
            (3 * l * d, inter, d, l)
        } else {
            (l * d, inter.max(c.mlp_t_inter()), d.max(l), l.max(d))
        };
        Layout {
            l,
            d,
            work,
            rope: if attention && c.pos_encodings == PosEncoding::Rope {
                2 * l * c.head_dim()
            } else {
                0
            },
            wrow: inter_max.max(n_max),
            scores: if attention { l } else { 0 },
            gu_per_row: 2 * inter_max,
            out_per_row: n_max,
            rows_max,
        }
    }

    fn base(&self) -> usize {
        3 * self.l * self.d + self.work + self.rope + self.wrow + self.scores
    }

    fn per_row(&self) -> usize {
        self.gu_per_row + self.out_per_row
    }

    fn min_rows(&self) -> usize {
        ROW_BLOCK.min(self.rows_max).max(1)
    }

    fn len(&self, rows: usize) -> usize {
        self.base() + rows * self.per_row()
    }
}

/// Splits `n` values off the front of `rest`.
fn carve<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let taken = core::mem::take(rest);
    let (head, tail) = taken.split_at_mut(n.min(taken.len()));
    *rest = tail;
    head
}

/// The float engine for one model, holding x, y, z of one puzzle.
///
/// The crate-level documentation has a complete, tested example (embedded model, caller-owned
/// arena, step-by-step solve).
#[derive(Debug)]
pub struct FloatEngine<'a> {
    config: Config,
    w: Weights<'a>,
    /// `[L, D]` input embedding.
    x: &'a mut [f32],
    /// `[L, D]` answer state ("z_H").
    y: &'a mut [f32],
    /// `[L, D]` latent state ("z_L").
    z: &'a mut [f32],
    bufs: BlockBuffers<'a>,
    used: usize,
    steps: u32,
    q: (f32, f32),
}

fn check_tensor<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    id: TensorId,
) -> Result<MatRef<'a>, EngineError> {
    let view = src.tensor(id).ok_or(EngineError::MissingTensor(id))?;
    if !matches!(view.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(EngineError::BadDType {
            tensor: id,
            dtype: view.dtype,
        });
    }
    let expected = id.shape(c);
    if view.shape.rows != expected.rows || view.shape.cols != expected.cols {
        return Err(EngineError::BadShape {
            tensor: id,
            expected,
            got: view.shape,
        });
    }
    MatRef::new(&view).ok_or(EngineError::BadData(id))
}

impl<'a> FloatEngine<'a> {
    /// Exact number of f32 values [`FloatEngine::new`] requires for this config (row blocks of
    /// [`kernels::ROW_BLOCK`] rows). Saturates at `usize::MAX` for configs too large to address.
    pub fn scratch_len(config: &Config) -> usize {
        Self::scratch_len_checked(config, false)
    }

    /// Number of f32 values with which every matrix product runs in one weight pass (the fastest
    /// setting on a host; any size between the two works and gives the same results).
    pub fn scratch_len_fast(config: &Config) -> usize {
        Self::scratch_len_checked(config, true)
    }

    fn scratch_len_checked(config: &Config, fast: bool) -> usize {
        if config.validate().is_err() {
            // Sizes of an invalid config may overflow; `new` rejects it anyway.
            return 0;
        }
        let layout = Layout::new(config);
        layout.len(if fast {
            layout.rows_max
        } else {
            layout.min_rows()
        })
    }

    /// Validates the config, every tensor (presence, shape, float dtype, byte length) and the
    /// scratch size, then carves the buffers. y and z start at H_init / L_init, x at zero.
    pub fn new<S: TensorSource<'a> + ?Sized>(
        config: &Config,
        weights: &S,
        scratch: &'a mut [f32],
    ) -> Result<Self, EngineError> {
        config.validate()?;
        let c = *config;
        if c.l_layers as usize > MAX_LAYERS {
            return Err(EngineError::Unsupported("more than MAX_LAYERS blocks"));
        }
        let get = |id: TensorId| -> Result<MatRef<'a>, EngineError> {
            if id.present(&c) {
                check_tensor(&c, weights, id)
            } else {
                Ok(MatRef::empty())
            }
        };
        let mut w = Weights {
            embed_tokens: get(TensorId::EmbedTokens)?,
            embed_pos: get(TensorId::EmbedPos)?,
            puzzle_emb: get(TensorId::PuzzleEmb)?,
            h_init: get(TensorId::HInit)?,
            l_init: get(TensorId::LInit)?,
            lm_head: get(TensorId::LmHead)?,
            q_weight: get(TensorId::QHeadWeight)?,
            q_bias: get(TensorId::QHeadBias)?,
            layers: [EMPTY_LAYER; MAX_LAYERS],
        };
        for (i, lw) in w.layers.iter_mut().enumerate().take(c.l_layers as usize) {
            let id = |tensor| TensorId::Layer {
                layer: i as u8,
                tensor,
            };
            let (a, b) = if c.mlp_t {
                (LayerTensor::MlpTGateUp, LayerTensor::MlpTDown)
            } else {
                (LayerTensor::QkvProj, LayerTensor::OProj)
            };
            *lw = LayerWeights {
                mix_a: get(id(a))?,
                mix_b: get(id(b))?,
                gate_up: get(id(LayerTensor::MlpGateUp))?,
                down: get(id(LayerTensor::MlpDown))?,
            };
        }

        let layout = Layout::new(&c);
        let need = layout.len(layout.min_rows());
        let got = scratch.len();
        if got < need {
            return Err(EngineError::ScratchTooSmall { need, got });
        }
        let rows = ((got - layout.base()) / layout.per_row()).min(layout.rows_max);
        let ld = layout.l * layout.d;
        let mut rest: &'a mut [f32] = scratch;
        let x = carve(&mut rest, ld);
        let y = carve(&mut rest, ld);
        let z = carve(&mut rest, ld);
        let work = carve(&mut rest, layout.work);
        let cos = carve(&mut rest, layout.rope / 2);
        let sin = carve(&mut rest, layout.rope / 2);
        let wrow = carve(&mut rest, layout.wrow);
        let scores = carve(&mut rest, layout.scores);
        let gu = carve(&mut rest, rows * layout.gu_per_row);
        let out = carve(&mut rest, rows * layout.out_per_row);
        let used = got - rest.len();

        if !cos.is_empty() {
            kernels::rope_tables(c.head_dim(), c.rope_theta, cos, sin);
        }
        x.fill(0.0);
        let mut engine = FloatEngine {
            config: c,
            w,
            x,
            y,
            z,
            bufs: BlockBuffers {
                work,
                cos,
                sin,
                wrow,
                gu,
                out,
                scores,
                rows,
            },
            used,
            steps: 0,
            q: (0.0, 0.0),
        };
        engine.reset_states();
        Ok(engine)
    }

    /// The config the engine runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// f32 values of the scratch the engine carved (equals [`FloatEngine::scratch_len`] when
    /// given exactly that much; more when a larger scratch allowed larger row blocks).
    pub fn scratch_used(&self) -> usize {
        self.used
    }

    /// Activation rows per weight pass in the row-blocked products (chosen from the scratch size).
    pub fn row_block(&self) -> usize {
        self.bufs.rows
    }

    /// y = H_init, z = L_init on every position; step counter to 0.
    fn reset_states(&mut self) {
        let d = self.config.d();
        for row in self.y.chunks_exact_mut(d) {
            self.w.h_init.row_into(0, row);
        }
        for row in self.z.chunks_exact_mut(d) {
            self.w.l_init.row_into(0, row);
        }
        self.steps = 0;
        self.q = (0.0, 0.0);
    }

    /// Loads a puzzle: checks `tokens.len() == seq_len`, every token `< vocab_size` and
    /// `puzzle_id < num_puzzle_identifiers`, computes x and resets y, z to H_init, L_init.
    /// On error nothing changes.
    pub fn start(&mut self, tokens: &[u8], puzzle_id: u32) -> Result<(), EngineError> {
        let c = &self.config;
        let seq_len = c.seq_len as usize;
        if tokens.len() != seq_len {
            return Err(EngineError::BadInputLength {
                expected: seq_len,
                got: tokens.len(),
            });
        }
        if let Some(pos) = tokens.iter().position(|&t| t as u32 >= c.vocab_size) {
            return Err(EngineError::BadToken { pos });
        }
        if puzzle_id >= c.num_puzzle_identifiers {
            return Err(EngineError::BadPuzzleId { id: puzzle_id });
        }
        let d = c.d();
        let prefix = c.puzzle_emb_len as usize;
        let x = &mut *self.x;
        x.fill(0.0);
        // Puzzle prefix: ndim values, zero-padded to prefix * D, viewed as [prefix, D].
        let ndim = c.puzzle_emb_ndim as usize;
        if ndim > 0 {
            self.w
                .puzzle_emb
                .row_into(puzzle_id as usize, &mut x[..ndim]);
        }
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &mut x[(prefix + t) * d..(prefix + t + 1) * d];
            self.w.embed_tokens.row_into(tok as usize, row);
        }
        if c.pos_encodings == PosEncoding::Learned {
            let pos = &mut *self.bufs.wrow;
            for (r, row) in x.chunks_exact_mut(d).enumerate() {
                self.w.embed_pos.row_into(r, &mut pos[..d]);
                for (v, p) in row.iter_mut().zip(pos.iter()) {
                    *v = LEARNED_POS_SCALE * (*v + *p);
                }
            }
        }
        // The reference multiplies by math.sqrt(D) (a double), rounded to f32 for the f32 product.
        let scale = libm::sqrt(d as f64) as f32;
        for v in x.iter_mut() {
            *v *= scale;
        }
        self.reset_states();
        Ok(())
    }

    /// Sets the carried states y ("z_H") and z ("z_L"), each `[seq_total, D]` row-major, keeping
    /// the input embedding x of the last [`FloatEngine::start`] and the step counter.
    ///
    /// For resuming a solve from a saved carry, and for teacher forcing: feeding the engine the
    /// carry another implementation reached before step k, so that step k alone is compared
    /// (the cross-implementation tests do this; chaotic models would otherwise amplify
    /// rounding differences over the steps). Both lengths are checked before anything changes.
    pub fn set_carry(&mut self, y: &[f32], z: &[f32]) -> Result<(), EngineError> {
        let expected = self.y.len();
        for got in [y.len(), z.len()] {
            if got != expected {
                return Err(EngineError::BadInputLength { expected, got });
            }
        }
        self.y.copy_from_slice(y);
        self.z.copy_from_slice(z);
        Ok(())
    }

    /// Runs one ACT step on the carried y, z and reports its halting logits.
    ///
    /// Before any [`FloatEngine::start`], x is zero (an all-zero input embedding).
    pub fn step(&mut self) -> StepOutput {
        let (h_cycles, l_cycles) = (self.config.h_cycles, self.config.l_cycles);
        recursion::act_step_cycles(self, h_cycles, l_cycles);
        self.steps = self.steps.saturating_add(1);
        let d = self.config.d();
        let y0 = &self.y[..d];
        let q_halt = self.w.q_weight.dot_row(0, y0) + self.w.q_bias.get(0, 0);
        let q_continue = self.w.q_weight.dot_row(1, y0) + self.w.q_bias.get(0, 1);
        self.q = (q_halt, q_continue);
        StepOutput {
            step: self.steps,
            q_halt,
            q_continue,
        }
    }

    /// ACT steps done since the last [`FloatEngine::start`].
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// `[seq_len, vocab]` logits `lm_head(y)` on the puzzle positions (after the prefix).
    pub fn logits(&self, out: &mut [f32]) -> Result<(), EngineError> {
        let c = &self.config;
        let (d, v) = (c.d(), c.vocab_size as usize);
        let expected = c.seq_len as usize * v;
        if out.len() != expected {
            return Err(EngineError::BadOutputLength {
                expected,
                got: out.len(),
            });
        }
        let prefix = c.puzzle_emb_len as usize;
        for (t, row) in out.chunks_exact_mut(v).enumerate() {
            let y = &self.y[(prefix + t) * d..(prefix + t + 1) * d];
            for (k, o) in row.iter_mut().enumerate() {
                *o = self.w.lm_head.dot_row(k, y);
            }
        }
        Ok(())
    }

    /// The predicted token per puzzle position: argmax of the logits, ties to the lowest index.
    pub fn predict(&self, out: &mut [u8]) -> Result<(), EngineError> {
        let c = &self.config;
        let (d, v) = (c.d(), c.vocab_size as usize);
        let expected = c.seq_len as usize;
        if out.len() != expected {
            return Err(EngineError::BadOutputLength {
                expected,
                got: out.len(),
            });
        }
        let prefix = c.puzzle_emb_len as usize;
        for (t, o) in out.iter_mut().enumerate() {
            let y = &self.y[(prefix + t) * d..(prefix + t + 1) * d];
            let mut best = (0usize, f32::NAN);
            for k in 0..v {
                let logit = self.w.lm_head.dot_row(k, y);
                if k == 0 || logit > best.1 || (best.1.is_nan() && !logit.is_nan()) {
                    best = (k, logit);
                }
            }
            // vocab_size <= 256 (validated), so the index fits.
            *o = best.0 as u8;
        }
        Ok(())
    }

    /// The answer state y, `[seq_total, D]`.
    pub fn y(&self) -> &[f32] {
        self.y
    }

    /// The latent state z, `[seq_total, D]`.
    pub fn z(&self) -> &[f32] {
        self.z
    }

    /// The input embedding x, `[seq_total, D]`.
    pub fn x(&self) -> &[f32] {
        self.x
    }

    /// Solves one puzzle: [`FloatEngine::start`], ACT steps until `mode` says stop, then
    /// [`FloatEngine::predict`] into `out` (`seq_len` tokens).
    pub fn solve(
        &mut self,
        tokens: &[u8],
        puzzle_id: u32,
        mode: HaltMode,
        out: &mut [u8],
    ) -> Result<SolveSummary, EngineError> {
        let expected = self.config.seq_len as usize;
        if out.len() != expected {
            return Err(EngineError::BadOutputLength {
                expected,
                got: out.len(),
            });
        }
        self.start(tokens, puzzle_id)?;
        loop {
            let s = self.step();
            if recursion::should_stop(mode, s.step, self.config.halt_max_steps, s.q_halt > 0.0) {
                self.predict(out)?;
                return Ok(SolveSummary {
                    steps: s.step,
                    q_halt: s.q_halt,
                });
            }
        }
    }
}

impl Recurrence for FloatEngine<'_> {
    fn update_z(&mut self) {
        for ((z, y), x) in self.z.iter_mut().zip(self.y.iter()).zip(self.x.iter()) {
            *z += *y + *x;
        }
        net_blocks(&self.config, &self.w, &mut self.bufs, self.z);
    }

    fn update_y(&mut self) {
        for (y, z) in self.y.iter_mut().zip(self.z.iter()) {
            *y += *z;
        }
        net_blocks(&self.config, &self.w, &mut self.bufs, self.y);
    }
}

/// The `l_layers` blocks of the network on `h: [L, D]` (the injection is already added).
fn net_blocks(c: &Config, w: &Weights<'_>, b: &mut BlockBuffers<'_>, h: &mut [f32]) {
    let l = c.seq_total();
    let eps = c.rms_norm_eps;
    for lw in w.layers.iter().take(c.l_layers as usize) {
        if c.mlp_t {
            kernels::mlp_t_mixer(&lw.mix_a, &lw.mix_b, h, l, eps, b);
        } else {
            let heads = c.num_heads as usize;
            kernels::attention_mixer(&lw.mix_a, &lw.mix_b, h, l, heads, eps, b);
        }
        kernels::channel_mlp(&lw.gate_up, &lw.down, h, l, eps, b);
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::float::OwnedWeights;
    use std::vec;
    use std::vec::Vec;

    fn small_config() -> Config {
        Config {
            hidden_size: 16,
            num_heads: 2,
            expansion: 2.0,
            l_layers: 1,
            h_cycles: 2,
            l_cycles: 2,
            mlp_t: false,
            pos_encodings: PosEncoding::Rope,
            puzzle_emb_ndim: 16,
            puzzle_emb_len: 1,
            num_puzzle_identifiers: 2,
            vocab_size: 5,
            seq_len: 6,
            halt_max_steps: 4,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
        }
    }

    /// Resuming from a saved carry reproduces the uninterrupted run bit for bit, and wrong
    /// lengths are refused without touching the states.
    #[test]
    fn set_carry_resumes_a_run() {
        let c = small_config();
        let w = OwnedWeights::random(&c, 3, DType::F32);
        let src = w.source();
        let tokens = [1u8, 4, 0, 2, 3, 1];
        let v = c.seq_len as usize * c.vocab_size as usize;

        let mut s1 = vec![0f32; FloatEngine::scratch_len(&c)];
        let mut a = FloatEngine::new(&c, &src, &mut s1).unwrap();
        a.start(&tokens, 1).unwrap();
        a.step();
        let (y1, z1) = (a.y().to_vec(), a.z().to_vec());
        let s2a = a.step();
        let mut la = vec![0f32; v];
        a.logits(&mut la).unwrap();

        let mut s2 = vec![0f32; FloatEngine::scratch_len(&c)];
        let mut b = FloatEngine::new(&c, &src, &mut s2).unwrap();
        b.start(&tokens, 1).unwrap();
        let before: Vec<f32> = b.y().to_vec();
        let short = &y1[1..];
        assert_eq!(
            b.set_carry(short, &z1),
            Err(EngineError::BadInputLength {
                expected: y1.len(),
                got: y1.len() - 1
            })
        );
        assert!(b.set_carry(&y1, &z1[1..]).is_err());
        assert_eq!(b.y(), &before[..], "a refused carry changes nothing");
        b.set_carry(&y1, &z1).unwrap();
        assert_eq!((b.y(), b.z()), (&y1[..], &z1[..]));
        let s2b = b.step();
        let mut lb = vec![0f32; v];
        b.logits(&mut lb).unwrap();
        assert_eq!(s2a.q_halt.to_bits(), s2b.q_halt.to_bits());
        assert_eq!(la, lb);
        // The step from the initial carry differs: the carry really was used.
        b.start(&tokens, 1).unwrap();
        b.step();
        b.logits(&mut lb).unwrap();
        assert_ne!(la, lb);
    }
}
