//! What both engines share: the [`Engine`] interface, its error vocabulary ([`EngineError`]),
//! step and solve reports, scratch sizes, and [`AnyEngine`], the one dispatch over the numeric
//! scheme of a parsed model.
//!
//! [`FloatEngine`](crate::FloatEngine) (f32 states and logits) and
//! [`FixedEngine`](crate::FixedEngine) (int16 states, int32 logits) implement [`Engine`] with the
//! same method shapes and the same input checks; the associated types [`Engine::State`] and
//! [`Engine::Logit`] are where the schemes differ. Building an engine differs too (the float
//! engine reads any [`TensorSource`](crate::TensorSource) into one f32 scratch, the fixed engine
//! a `Fixed` [`Model`](crate::Model) into i16 and i32 scratch), so construction is not part of
//! the trait; [`AnyEngine::new`] builds either from a parsed model and one f32 arena.
//!
//! ```
//! use trm_nostd::{Engine, FloatEngine, HaltMode, Model};
//!
//! static MODEL: &[u8] = trm_nostd::include_model!(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/tests/format_data/tiny_f16.trm"
//! ));
//!
//! /// Works with either engine: the trait fixes the shapes.
//! fn halting_step<E: Engine>(engine: &mut E, tokens: &[u8]) -> Option<u32> {
//!     engine.start(tokens, 0).ok()?;
//!     let max = engine.config().halt_max_steps;
//!     (0..max).map(|_| engine.step()).find(|s| s.halts()).map(|s| s.step)
//! }
//!
//! let model = Model::parse(MODEL).unwrap();
//! let config = *model.config();
//! let mut scratch = vec![0f32; FloatEngine::scratch_len(&config).f32s];
//! let mut engine = FloatEngine::new(&config, &model, &mut scratch).unwrap();
//! let tokens = vec![1u8; config.seq_len as usize];
//! let first = halting_step(&mut engine, &tokens);
//! let mut answer = vec![0u8; config.seq_len as usize];
//! let summary = engine.solve(&tokens, 0, HaltMode::EarlyHalt, &mut answer).unwrap();
//! assert_eq!(first.unwrap_or(config.halt_max_steps), summary.steps);
//! ```

mod any;
mod error;

pub use any::{AnyEngine, StepReport};
pub use error::EngineError;

use crate::act::{self, HaltMode};
use crate::config::Config;
use core::fmt;

/// Most blocks (`l_layers`) the engines support (the paper uses 2).
pub const MAX_LAYERS: usize = 8;

/// Scratch sizes of an engine, in values of each element type (the float engine uses f32 only,
/// the fixed engine i16 and i32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScratchLen {
    /// `f32` values.
    pub f32s: usize,
    /// `i16` values.
    pub i16s: usize,
    /// `i32` values.
    pub i32s: usize,
}

impl ScratchLen {
    /// Total bytes.
    pub const fn bytes(&self) -> usize {
        4 * self.f32s + 2 * self.i16s + 4 * self.i32s
    }

    /// The f32 words of one f32 arena that holds every part: the f32 values, then the i16 values
    /// rounded up to whole words, then the i32 values (how [`AnyEngine::new`] carves an arena).
    pub const fn f32_words(&self) -> usize {
        self.f32s
            .saturating_add(self.i16s.div_ceil(2))
            .saturating_add(self.i32s)
    }
}

/// The element of an engine's logits and halting logits: f32 (float) or the integer at its
/// calibrated scale (fixed).
pub trait Logit: Copy + PartialEq + fmt::Debug {
    /// Whether a halting logit says "halt": positive, in the engine's own numbers.
    fn halts(self) -> bool;
    /// The 32 bits the firmware prints: an f32's bit pattern, an i32 as two's-complement u32.
    fn bits(self) -> u32;
}

impl Logit for f32 {
    fn halts(self) -> bool {
        self > 0.0
    }

    fn bits(self) -> u32 {
        self.to_bits()
    }
}

impl Logit for i32 {
    fn halts(self) -> bool {
        crate::fixed::kernels::q_halt_positive(self)
    }

    fn bits(self) -> u32 {
        self as u32
    }
}

/// What one ACT step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StepOutput<L> {
    /// ACT steps done since [`Engine::start`] (1-based: 1 after the first step).
    pub step: u32,
    /// The halt logit `q_head(y[0])[0] + bias[0]`; the model halts when it is positive.
    pub q_halt: L,
    /// The continue logit `q_head(y[0])[1] + bias[1]`.
    pub q_continue: L,
}

impl<L: Logit> StepOutput<L> {
    /// Whether the model halts after this step ([`Logit::halts`] of `q_halt`).
    pub fn halts(&self) -> bool {
        self.q_halt.halts()
    }
}

/// What a whole solve reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SolveSummary<L> {
    /// ACT steps run.
    pub steps: u32,
    /// The halt logit after the last step.
    pub q_halt: L,
}

/// One TRM engine holding x, y, z of one puzzle: the interface both numeric schemes implement.
///
/// Every method checks its inputs the same way in both engines (token count and range, puzzle
/// identifier, buffer lengths) and reports a refusal as an [`EngineError`] without changing the
/// engine.
pub trait Engine {
    /// Element of the carried states x, y, z: f32, or i16 at the engine's state scale.
    type State: Copy;
    /// Element of the logits and the halting logits: f32, or i32 at a calibrated scale.
    type Logit: Logit;

    /// Exact scratch the engine's constructor requires for this config (zero for an invalid
    /// config, which the constructor refuses).
    fn scratch_len(config: &Config) -> ScratchLen
    where
        Self: Sized;

    /// Scratch with which the engine processes the most rows per weight pass (the fastest
    /// setting on a host). Any size from [`Engine::scratch_len`] up works and gives the same
    /// results bit for bit.
    fn scratch_len_fast(config: &Config) -> ScratchLen
    where
        Self: Sized;

    /// The config the engine runs.
    fn config(&self) -> &Config;

    /// Loads a puzzle: checks `tokens.len() == seq_len`, every token `< vocab_size` and
    /// `puzzle_id < num_puzzle_identifiers`, computes x and resets y, z to H_init, L_init and the
    /// step counter to 0. On error nothing changes.
    fn start(&mut self, tokens: &[u8], puzzle_id: u32) -> Result<(), EngineError>;

    /// Sets the carried states y ("z_H") and z ("z_L"), each `[seq_total, D]` row-major, keeping
    /// the input embedding x of the last [`Engine::start`] and the step counter.
    ///
    /// For resuming a solve from a saved carry, and for teacher forcing: feeding the engine the
    /// carry another implementation reached before step k, so that step k alone is compared.
    /// Both lengths are checked before anything changes.
    fn set_carry(&mut self, y: &[Self::State], z: &[Self::State]) -> Result<(), EngineError>;

    /// Runs one ACT step (the schedule of [`act::act_step_cycles`]) on the carried y, z and
    /// reports its halting logits. Before any [`Engine::start`], x is zero.
    fn step(&mut self) -> StepOutput<Self::Logit>;

    /// ACT steps done since the last [`Engine::start`].
    fn steps(&self) -> u32;

    /// `[seq_len, vocab]` logits `lm_head(y)` on the puzzle positions (after the prefix).
    fn logits(&self, out: &mut [Self::Logit]) -> Result<(), EngineError>;

    /// The predicted token per puzzle position (`seq_len` of them): argmax of the logits, ties
    /// to the lowest index.
    fn predict(&self, out: &mut [u8]) -> Result<(), EngineError>;

    /// The input embedding x, `[seq_total, D]`.
    fn x(&self) -> &[Self::State];

    /// The answer state y ("z_H"), `[seq_total, D]`.
    fn y(&self) -> &[Self::State];

    /// The latent state z ("z_L"), `[seq_total, D]`.
    fn z(&self) -> &[Self::State];

    /// Solves one puzzle: [`Engine::start`], ACT steps until `mode` says stop
    /// ([`act::should_stop`], halting when [`Logit::halts`]), then [`Engine::predict`] into
    /// `out` (`seq_len` tokens, checked first).
    fn solve(
        &mut self,
        tokens: &[u8],
        puzzle_id: u32,
        mode: HaltMode,
        out: &mut [u8],
    ) -> Result<SolveSummary<Self::Logit>, EngineError> {
        check_output(self.config().seq_len as usize, out.len())?;
        self.start(tokens, puzzle_id)?;
        let halt_max_steps = self.config().halt_max_steps;
        loop {
            let s = self.step();
            if act::should_stop(mode, s.step, halt_max_steps, s.halts()) {
                self.predict(out)?;
                return Ok(SolveSummary {
                    steps: s.step,
                    q_halt: s.q_halt,
                });
            }
        }
    }
}

/// The input checks of [`Engine::start`]: `seq_len` tokens, each below `vocab_size`, and a
/// puzzle identifier below `num_puzzle_identifiers`.
pub(crate) fn check_input(c: &Config, tokens: &[u8], puzzle_id: u32) -> Result<(), EngineError> {
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
    Ok(())
}

/// The check of [`Engine::set_carry`]: both states `expected` values long.
pub(crate) fn check_carry(expected: usize, y: usize, z: usize) -> Result<(), EngineError> {
    for got in [y, z] {
        if got != expected {
            return Err(EngineError::BadInputLength { expected, got });
        }
    }
    Ok(())
}

/// An output buffer of `got` values where `expected` are written.
pub(crate) fn check_output(expected: usize, got: usize) -> Result<(), EngineError> {
    if got != expected {
        return Err(EngineError::BadOutputLength { expected, got });
    }
    Ok(())
}

/// Splits `n` values (or all there are) off the front of `rest`.
pub(crate) fn carve<'a, T>(rest: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let taken = core::mem::take(rest);
    let (head, tail) = taken.split_at_mut(n.min(taken.len()));
    *rest = tail;
    head
}
