//! [`AnyEngine`]: the engine of a parsed model's numeric scheme, built in one f32 arena, with
//! scheme-neutral reports (what the firmware prints and the host tools compare).

use crate::config::Config;
use crate::digest::{digest_f32, digest_i16};
use crate::engine::{Engine, EngineError, Logit, ScratchLen, StepOutput, check_output};
use crate::fixed::FixedEngine;
use crate::float::FloatEngine;
use crate::float::kernels::Arith;
use crate::format::Model;

/// The engine of a model's numeric scheme.
///
/// Built from a parsed [`Model`] and one caller-owned f32 arena ([`AnyEngine::new`]); every
/// report is scheme-neutral: halting-logit bits and the halting decision of the scheme's own rule
/// ([`StepReport`]), state digests, logits and states in real units.
// The float engine is larger than the fixed one, but one engine lives on a stack for a whole run
// and no_std has no Box: the few hundred bytes the smaller variant wastes are cheaper than an
// indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyEngine<'a> {
    /// A `Float` model (f32, f16 or bf16 storage).
    Float(FloatEngine<'a>),
    /// A `Fixed` model (int8 or int16 weights, int16 activations).
    Fixed(FixedEngine<'a>),
}

/// What one ACT step reports, whatever the scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StepReport {
    /// ACT steps done since [`AnyEngine::start`] (1-based).
    pub step: u32,
    /// The halting logit's 32 bits as the firmware prints them ([`Logit::bits`]: the f32 bit
    /// pattern, or the integer as a two's-complement u32).
    pub q_bits: u32,
    /// Whether the model halts after this step, by its scheme's own rule ([`Logit::halts`]:
    /// `q_halt > 0` in the engine's own numbers).
    pub halt: bool,
}

impl<L: Logit> From<StepOutput<L>> for StepReport {
    fn from(s: StepOutput<L>) -> Self {
        StepReport {
            step: s.step,
            q_bits: s.q_halt.bits(),
            halt: s.halts(),
        }
    }
}

impl<'a> AnyEngine<'a> {
    /// The scratch of `model`'s engine, in its own element types
    /// ([`Engine::scratch_len`] of its scheme).
    pub fn scratch_len(model: &Model<'_>) -> ScratchLen {
        let c = model.config();
        if model.scheme().is_fixed() {
            FixedEngine::scratch_len(c)
        } else {
            FloatEngine::scratch_len(c)
        }
    }

    /// The f32 words of arena [`AnyEngine::new`] needs for `model` (its
    /// [`AnyEngine::scratch_len`] as [`ScratchLen::f32_words`]).
    pub fn arena_len(model: &Model<'_>) -> usize {
        Self::scratch_len(model).f32_words()
    }

    /// The f32 words of arena with which `model`'s engine runs fastest: the float engine's
    /// [`Engine::scratch_len_fast`]; for a fixed model on Arm with DSP, RISC-V and x86_64 the
    /// fixed engine's [`Engine::scratch_len_fast`] (the blocked products there take four or
    /// more activation rows per weight pass), elsewhere (Cortex-M0+) the same as
    /// [`AnyEngine::arena_len`].
    /// Results are identical for any arena from [`AnyEngine::arena_len`] up.
    pub fn arena_len_fast(model: &Model<'_>) -> usize {
        if model.scheme().is_fixed() {
            Self::fixed_fast(model).map_or(Self::arena_len(model), |f| f.f32_words())
        } else {
            FloatEngine::scratch_len_fast(model.config()).f32_words()
        }
    }

    /// The fixed engine's fast scratch where it is worth its memory: the targets whose blocked
    /// products take four activation rows per weight pass (Arm with DSP, RISC-V), and x86_64,
    /// whose blocked products (GEMM-class tiles, issue 13) run five to seven times faster than
    /// one output at a time.
    fn fixed_fast(model: &Model<'_>) -> Option<ScratchLen> {
        cfg!(any(
            all(target_arch = "arm", target_feature = "dsp"),
            target_arch = "riscv32",
            target_arch = "riscv64",
            target_arch = "x86_64"
        ))
        .then(|| FixedEngine::scratch_len_fast(model.config()))
    }

    /// Builds the engine of `model`'s scheme in `arena` (at least [`AnyEngine::arena_len`] f32
    /// words, else [`EngineError::ScratchTooSmall`] in f32 words).
    ///
    /// A float engine uses the whole arena (a larger one gives it larger row blocks, with the
    /// same results). A fixed engine views the arena as its i16 values (rounded up to whole
    /// words), then its i32 values: one board buffer serves both schemes. The split is that of
    /// the fixed engine's fast scratch when [`AnyEngine::arena_len_fast`] is larger than
    /// [`AnyEngine::arena_len`] and the arena holds it, else that of its smallest scratch.
    pub fn new(model: &Model<'a>, arena: &'a mut [f32]) -> Result<Self, EngineError> {
        let need = Self::arena_len(model);
        if arena.len() < need {
            return Err(EngineError::ScratchTooSmall {
                need: ScratchLen {
                    f32s: need,
                    ..ScratchLen::default()
                },
                got: ScratchLen {
                    f32s: arena.len(),
                    ..ScratchLen::default()
                },
            });
        }
        if model.scheme().is_fixed() {
            // The fast layout's split when the arena holds it, else the smallest one's.
            let split = Self::fixed_fast(model)
                .filter(|f| arena.len() >= f.f32_words())
                .unwrap_or_else(|| Self::scratch_len(model));
            let i16_words = split.i16s.div_ceil(2);
            let (a, b) = arena.split_at_mut(i16_words);
            // Plain integer and float slices: these casts cannot fail (an f32 word holds two
            // i16 or one i32, and its alignment covers both).
            let s16: &mut [i16] = bytemuck::try_cast_slice_mut(a).unwrap_or_default();
            let s32: &mut [i32] = bytemuck::try_cast_slice_mut(b).unwrap_or_default();
            FixedEngine::new(model, s16, s32).map(AnyEngine::Fixed)
        } else {
            FloatEngine::new(model.config(), model, arena).map(AnyEngine::Float)
        }
    }

    /// Makes a float engine's products and attention use `arith`
    /// ([`FloatEngine::set_arith`]: [`Arith::Fused`] gives other bits than golden files made
    /// with the default). Returns whether the engine is a float one (a fixed engine ignores it).
    pub fn set_float_arith(&mut self, arith: Arith) -> bool {
        match self {
            AnyEngine::Float(e) => {
                e.set_arith(arith);
                true
            }
            AnyEngine::Fixed(_) => false,
        }
    }

    /// Whether this is a fixed-point engine.
    pub fn is_fixed(&self) -> bool {
        matches!(self, AnyEngine::Fixed(_))
    }

    /// The config the engine runs.
    pub fn config(&self) -> &Config {
        match self {
            AnyEngine::Float(e) => e.config(),
            AnyEngine::Fixed(e) => e.config(),
        }
    }

    /// Elements of y (and of z): `seq_total * D`.
    pub fn state_len(&self) -> usize {
        match self {
            AnyEngine::Float(e) => e.y().len(),
            AnyEngine::Fixed(e) => e.y().len(),
        }
    }

    /// [`Engine::start`].
    pub fn start(&mut self, tokens: &[u8], puzzle_id: u32) -> Result<(), EngineError> {
        match self {
            AnyEngine::Float(e) => e.start(tokens, puzzle_id),
            AnyEngine::Fixed(e) => e.start(tokens, puzzle_id),
        }
    }

    /// [`Engine::step`], reported scheme-neutrally.
    pub fn step(&mut self) -> StepReport {
        match self {
            AnyEngine::Float(e) => e.step().into(),
            AnyEngine::Fixed(e) => e.step().into(),
        }
    }

    /// [`Engine::steps`].
    pub fn steps(&self) -> u32 {
        match self {
            AnyEngine::Float(e) => e.steps(),
            AnyEngine::Fixed(e) => e.steps(),
        }
    }

    /// [`Engine::predict`].
    pub fn predict(&self, out: &mut [u8]) -> Result<(), EngineError> {
        match self {
            AnyEngine::Float(e) => e.predict(out),
            AnyEngine::Fixed(e) => e.predict(out),
        }
    }

    /// The FNV-1a digest of y the firmware prints ([`crate::digest`]: the f32 bit patterns of a
    /// float model, the i16 values of a fixed one).
    pub fn y_digest(&self) -> u32 {
        match self {
            AnyEngine::Float(e) => digest_f32(e.y()),
            AnyEngine::Fixed(e) => digest_i16(e.y()),
        }
    }

    /// The digest of z, as [`AnyEngine::y_digest`].
    pub fn z_digest(&self) -> u32 {
        match self {
            AnyEngine::Float(e) => digest_f32(e.z()),
            AnyEngine::Fixed(e) => digest_i16(e.z()),
        }
    }

    /// The `[seq_len, vocab]` logits of the current state in real units (a fixed model's
    /// integers times its [`FixedEngine::logit_scale`], in f32).
    pub fn logits_real(&self, out: &mut [f32]) -> Result<(), EngineError> {
        match self {
            AnyEngine::Float(e) => e.logits(out),
            AnyEngine::Fixed(e) => {
                let c = e.config();
                let v = c.vocab_size as usize;
                check_output(c.seq_len as usize * v, out.len())?;
                let scale = e.logit_scale();
                for (t, row) in out.chunks_exact_mut(v).enumerate() {
                    for (k, o) in row.iter_mut().enumerate() {
                        *o = e.logit(t, k) as f32 * scale;
                    }
                }
                Ok(())
            }
        }
    }

    /// y and z in real units (a fixed model's integers times its
    /// [`FixedEngine::state_scale`], in f64 so that no rounding is added), written into `y` and
    /// `z` (each [`AnyEngine::state_len`] long).
    pub fn states_real(&self, y: &mut [f64], z: &mut [f64]) -> Result<(), EngineError> {
        let n = self.state_len();
        check_output(n, y.len())?;
        check_output(n, z.len())?;
        match self {
            AnyEngine::Float(e) => {
                for (o, &v) in y.iter_mut().zip(e.y()) {
                    *o = v as f64;
                }
                for (o, &v) in z.iter_mut().zip(e.z()) {
                    *o = v as f64;
                }
            }
            AnyEngine::Fixed(e) => {
                let s = e.state_scale() as f64;
                for (o, &v) in y.iter_mut().zip(e.y()) {
                    *o = v as f64 * s;
                }
                for (o, &v) in z.iter_mut().zip(e.z()) {
                    *o = v as f64 * s;
                }
            }
        }
        Ok(())
    }
}
