//! One host engine for either numeric scheme of a `.trm` Sudoku model: trm-nostd's
//! [`FloatEngine`] or [`FixedEngine`], with owned scratch, states dequantized to f32 on request
//! (for drift measurements), and the halting rule of the firmware app (`q_halt > 0`).

use anyhow::{anyhow, bail};
use trm_nostd::digest::{digest_f32, digest_i16};
use trm_nostd::fixed::FixedEngine;
use trm_nostd::fixed::kernels::q_halt_positive;
use trm_nostd::sudoku::{self, CELLS, Tokens};
use trm_nostd::{FloatEngine, Model};

/// Scratch buffers for one engine of a model (allocated for its scheme).
#[derive(Debug, Default)]
pub struct Scratch {
    f32s: Vec<f32>,
    i16s: Vec<i16>,
    i32s: Vec<i32>,
}

impl Scratch {
    /// The buffers `model`'s engine needs (the fast size for a float model).
    pub fn for_model(model: &Model<'_>) -> Self {
        let c = model.config();
        if model.scheme().is_fixed() {
            let need = FixedEngine::scratch_len(c);
            Scratch {
                i16s: vec![0; need.i16s],
                i32s: vec![0; need.i32s],
                ..Scratch::default()
            }
        } else {
            Scratch {
                f32s: vec![0.0; FloatEngine::scratch_len_fast(c)],
                ..Scratch::default()
            }
        }
    }
}

/// Checks that `model` is a Sudoku model the firmware app accepts (81 cells, the 11-token
/// vocabulary at least), naming `what` (e.g. the command-line option) in the error.
pub fn check_sudoku_model(model: &Model<'_>, what: &str) -> anyhow::Result<()> {
    let c = model.config();
    if c.seq_len as usize != CELLS || (c.vocab_size as usize) < sudoku::VOCAB {
        bail!(
            "{what}: not a Sudoku model (seq_len {}, vocab {}; expected seq_len {CELLS}, vocab >= {})",
            c.seq_len,
            c.vocab_size,
            sudoku::VOCAB
        );
    }
    Ok(())
}

/// What one ACT step reports, scheme-neutral.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// 1-based ACT step.
    pub step: u32,
    /// The halting logit in real units (a fixed model's integer times its q scale).
    pub q_halt: f64,
    /// Whether the model halts after this step (`q_halt > 0`, in the engine's own numbers).
    pub halt: bool,
    /// The halting logit as the firmware prints it: the f32 bit pattern (float) or the integer
    /// as a two's-complement u32 (fixed).
    pub q_bits: u32,
}

/// The engine of a model's scheme.
// The float engine is much larger than the fixed one, but one lives per thread: no boxing.
#[allow(clippy::large_enum_variant)]
pub enum HostEngine<'a> {
    /// A `Float` model (f32, f16 or bf16 storage).
    Float(FloatEngine<'a>),
    /// A `Fixed` model (int8 weights, int16 activations).
    Fixed(FixedEngine<'a>),
}

impl<'a> HostEngine<'a> {
    /// Builds the engine of `model`'s scheme on `scratch` (from [`Scratch::for_model`]).
    pub fn new(model: &Model<'a>, scratch: &'a mut Scratch) -> anyhow::Result<Self> {
        if model.scheme().is_fixed() {
            FixedEngine::new(model, &mut scratch.i16s, &mut scratch.i32s)
                .map(HostEngine::Fixed)
                .map_err(|e| anyhow!("fixed engine: {e}"))
        } else {
            FloatEngine::new(model.config(), model, &mut scratch.f32s)
                .map(HostEngine::Float)
                .map_err(|e| anyhow!("float engine: {e}"))
        }
    }

    /// `halt_max_steps` of the model.
    pub fn halt_max_steps(&self) -> u32 {
        match self {
            HostEngine::Float(e) => e.config().halt_max_steps,
            HostEngine::Fixed(e) => e.config().halt_max_steps,
        }
    }

    /// Elements of y (and of z): `seq_total * D`.
    pub fn state_len(&self) -> usize {
        match self {
            HostEngine::Float(e) => e.y().len(),
            HostEngine::Fixed(e) => e.y().len(),
        }
    }

    /// Starts a solve of `question` (puzzle id 0, as the firmware app does).
    pub fn start(&mut self, question: &Tokens) -> anyhow::Result<()> {
        match self {
            HostEngine::Float(e) => e.start(question, 0).map_err(|e| anyhow!("{e}")),
            HostEngine::Fixed(e) => e.start(question, 0).map_err(|e| anyhow!("{e}")),
        }
    }

    /// One ACT step.
    pub fn step(&mut self) -> Step {
        match self {
            HostEngine::Float(e) => {
                let s = e.step();
                Step {
                    step: s.step,
                    q_halt: s.q_halt as f64,
                    halt: s.q_halt > 0.0,
                    q_bits: s.q_halt.to_bits(),
                }
            }
            HostEngine::Fixed(e) => {
                let s = e.step();
                Step {
                    step: s.step,
                    q_halt: s.q_halt as f64 * e.q_scale() as f64,
                    halt: q_halt_positive(s.q_halt),
                    q_bits: s.q_halt as u32,
                }
            }
        }
    }

    /// The predicted tokens of the current state.
    pub fn predict(&mut self, out: &mut Tokens) -> anyhow::Result<()> {
        match self {
            HostEngine::Float(e) => e.predict(out).map_err(|e| anyhow!("{e}")),
            HostEngine::Fixed(e) => e.predict(out).map_err(|e| anyhow!("{e}")),
        }
    }

    /// The digests of y and z the firmware prints (`trm_nostd::digest`: f32 bit patterns for
    /// a float model, the i16 values for a fixed one).
    pub fn state_digests(&self) -> (u32, u32) {
        match self {
            HostEngine::Float(e) => (digest_f32(e.y()), digest_f32(e.z())),
            HostEngine::Fixed(e) => (digest_i16(e.y()), digest_i16(e.z())),
        }
    }

    /// The logits `[seq_len, vocab]` of the current state in real units (a fixed model's
    /// integers times its logit scale).
    pub fn logits_into(&self, out: &mut [f32]) -> anyhow::Result<()> {
        match self {
            HostEngine::Float(e) => e.logits(out).map_err(|e| anyhow!("{e}")),
            HostEngine::Fixed(e) => {
                let mut ints = vec![0i32; out.len()];
                e.logits(&mut ints).map_err(|e| anyhow!("{e}"))?;
                let scale = e.logit_scale();
                for (o, &l) in out.iter_mut().zip(&ints) {
                    *o = l as f32 * scale;
                }
                Ok(())
            }
        }
    }

    /// y and z in real units (a fixed model's integers times its state scale, in f64 so no
    /// rounding is added), written into `y` and `z` (each [`HostEngine::state_len`] long).
    pub fn states_into(&self, y: &mut [f64], z: &mut [f64]) {
        match self {
            HostEngine::Float(e) => {
                for (o, &v) in y.iter_mut().zip(e.y()) {
                    *o = v as f64;
                }
                for (o, &v) in z.iter_mut().zip(e.z()) {
                    *o = v as f64;
                }
            }
            HostEngine::Fixed(e) => {
                let s = e.state_scale() as f64;
                for (o, &v) in y.iter_mut().zip(e.y()) {
                    *o = v as f64 * s;
                }
                for (o, &v) in z.iter_mut().zip(e.z()) {
                    *o = v as f64 * s;
                }
            }
        }
    }
}
