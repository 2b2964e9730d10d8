//! [`FixedEngine`]: the integer engine's state and its [`Engine`] interface.

use super::kernels::{Requant, Requant2, sat16, sat32};
use super::layout::{Bufs, Layout};
use super::network::net;
use super::tables;
use super::weights::WeightsQ;
use crate::act::{self, Recurrence};
use crate::config::{Config, PosEncoding};
use crate::engine::{
    Engine, EngineError, MAX_LAYERS, ScratchLen, StepOutput, check_carry, check_input, check_output,
};
use crate::format::Model;

/// The integer engine for one `Fixed` model, holding x, y, z (int16) of one puzzle.
///
/// ```ignore
/// use trm_nostd::{Engine, FixedEngine, HaltMode};
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

impl<'a> FixedEngine<'a> {
    /// Validates the model (a `Fixed` scheme, every tensor's type and length, every table's
    /// length and requantization fields) and the scratch sizes
    /// ([`Engine::scratch_len`]), then carves the buffers. y and z start at H_init / L_init, x
    /// at zero.
    pub fn new(
        model: &Model<'a>,
        scratch16: &'a mut [i16],
        scratch32: &'a mut [i32],
    ) -> Result<Self, EngineError> {
        let c = *model.config();
        c.validate()?;
        if !model.scheme().is_fixed() {
            return Err(EngineError::NotFixed);
        }
        if c.l_layers as usize > MAX_LAYERS {
            return Err(EngineError::Unsupported("more than MAX_LAYERS blocks"));
        }
        let layout = Layout::new(&c);
        let need = layout.len();
        let got = ScratchLen {
            i16s: scratch16.len(),
            i32s: scratch32.len(),
            f32s: 0,
        };
        if got.i16s < need.i16s || got.i32s < need.i32s {
            return Err(EngineError::ScratchTooSmall { need, got });
        }
        let layout = layout.fit(got);
        let w = WeightsQ::bind(model, &c)?;
        let ([x, y, z], bufs) = layout.carve(scratch16, scratch32);
        x.fill(0);
        let mut engine = FixedEngine {
            config: c,
            w,
            x,
            y,
            z,
            bufs,
            steps: 0,
        };
        engine.reset_states();
        Ok(engine)
    }

    /// The scale of y and z (real = integer * scale): `sqrt(D) / 32767`, from the file.
    pub fn state_scale(&self) -> f32 {
        f32::from_bits(self.w.global.uword(7))
    }

    /// The scale of x.
    pub fn x_scale(&self) -> f32 {
        f32::from_bits(self.w.global.uword(6))
    }

    /// The scale of the integer logits of [`Engine::logits`].
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

    /// The integer logit of token `k` at puzzle position `t`.
    pub(crate) fn logit(&self, t: usize, k: usize) -> i32 {
        let c = &self.config;
        let d = c.d();
        let p = c.puzzle_emb_len as usize + t;
        sat32(self.w.lm_head.out(k, &self.y[p * d..(p + 1) * d]))
    }
}

/// The fixed engine's integer path: `start` computes x from the int16 embedding tables (already
/// in x units: the `sqrt(D)` and learned-position scales are folded in at export; with learned
/// positions `x = sat16(emb + pos)`); states are int16 at [`FixedEngine::state_scale`]; logits
/// are i32 at [`FixedEngine::logit_scale`], halting logits at [`FixedEngine::q_scale`], and the
/// model halts when the integer `q_halt > 0` ([`kernels::q_halt_positive`](super::kernels::q_halt_positive)).
impl Engine for FixedEngine<'_> {
    type State = i16;
    type Logit = i32;

    fn scratch_len(config: &Config) -> ScratchLen {
        if config.validate().is_err() {
            return ScratchLen::default();
        }
        Layout::new(config).len()
    }

    /// Scratch with which the engine processes [`FAST_ROWS`](super::FAST_ROWS) rows per weight
    /// pass (the weights then stream from memory once per block of rows instead of once per
    /// row). Any size from [`Engine::scratch_len`] up works and gives the same results bit for
    /// bit: the engine uses as many rows per pass as fit.
    fn scratch_len_fast(config: &Config) -> ScratchLen {
        if config.validate().is_err() {
            return ScratchLen::default();
        }
        Layout::new(config).fast().len()
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn start(&mut self, tokens: &[u8], puzzle_id: u32) -> Result<(), EngineError> {
        let c = &self.config;
        check_input(c, tokens, puzzle_id)?;
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

    fn set_carry(&mut self, y: &[i16], z: &[i16]) -> Result<(), EngineError> {
        check_carry(self.y.len(), y.len(), z.len())?;
        self.y.copy_from_slice(y);
        self.z.copy_from_slice(z);
        Ok(())
    }

    fn step(&mut self) -> StepOutput<i32> {
        let (h, l) = (self.config.h_cycles, self.config.l_cycles);
        act::act_step_cycles(self, h, l);
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
        StepOutput {
            step: self.steps,
            q_halt: q(0),
            q_continue: q(1),
        }
    }

    fn steps(&self) -> u32 {
        self.steps
    }

    fn logits(&self, out: &mut [i32]) -> Result<(), EngineError> {
        let c = &self.config;
        let v = c.vocab_size as usize;
        check_output(c.seq_len as usize * v, out.len())?;
        for (t, row) in out.chunks_exact_mut(v).enumerate() {
            for (k, o) in row.iter_mut().enumerate() {
                *o = self.logit(t, k);
            }
        }
        Ok(())
    }

    fn predict(&self, out: &mut [u8]) -> Result<(), EngineError> {
        let c = &self.config;
        let v = c.vocab_size as usize;
        check_output(c.seq_len as usize, out.len())?;
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

    fn x(&self) -> &[i16] {
        self.x
    }

    fn y(&self) -> &[i16] {
        self.y
    }

    fn z(&self) -> &[i16] {
        self.z
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
