//! [`FloatEngine`]: the float engine's state and its [`Engine`] interface.

use super::LEARNED_POS_SCALE;
use super::kernels::{self, Arith, BlockBuffers};
use super::layout::Layout;
use super::network::net_blocks;
use super::observer::{NoObserver, Observer, Site};
use super::optimized::Isa;
use super::weights::Weights;
use crate::act::{self, Recurrence};
use crate::config::{Config, PosEncoding};
use crate::engine::{
    Engine, EngineError, MAX_LAYERS, ScratchLen, StepOutput, check_carry, check_input, check_output,
};
use crate::tensor::TensorSource;

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
}

impl<'a> FloatEngine<'a> {
    /// Validates the config, every tensor (presence, shape, float dtype, byte length) and the
    /// scratch size ([`Engine::scratch_len`]), then carves the buffers. y and z start at
    /// H_init / L_init, x at zero.
    ///
    /// The weights may outlive the scratch (`'w: 'a`): a function generic over its
    /// `S: TensorSource<'w>` can run the engine on a scratch of its own.
    pub fn new<'w: 'a, S: TensorSource<'w> + ?Sized>(
        config: &Config,
        weights: &S,
        scratch: &'a mut [f32],
    ) -> Result<Self, EngineError> {
        config.validate()?;
        let c = *config;
        if c.l_layers as usize > MAX_LAYERS {
            return Err(EngineError::Unsupported("more than MAX_LAYERS blocks"));
        }
        let w: Weights<'a> = Weights::bind(&c, weights)?;

        let layout = Layout::new(&c);
        let need = layout.len(layout.min_rows());
        let got = scratch.len();
        if got < need {
            return Err(EngineError::ScratchTooSmall {
                need: f32s(need),
                got: f32s(got),
            });
        }
        let (rows, tiled) = layout.fit(got);
        let ([x, y, z], bufs, used) = layout.carve(scratch, rows, tiled, Isa::best());
        if !bufs.cos.is_empty() {
            kernels::rope_tables(c.head_dim(), c.rope_theta, bufs.cos, bufs.sin);
        }
        x.fill(0.0);
        let mut engine = FloatEngine {
            config: c,
            w,
            x,
            y,
            z,
            bufs,
            used,
            steps: 0,
        };
        engine.reset_states();
        Ok(engine)
    }

    /// f32 values of the scratch the engine carved (equals [`Engine::scratch_len`] when
    /// given exactly that much; more when a larger scratch allowed larger row blocks).
    pub fn scratch_used(&self) -> usize {
        self.used
    }

    /// Activation rows per weight pass in the row-blocked products (chosen from the scratch size).
    pub fn row_block(&self) -> usize {
        self.bufs.rows
    }

    /// The kernel implementation the engine runs ([`Isa::best`] unless
    /// [`set_isa`](Self::set_isa) chose another).
    pub fn isa(&self) -> Isa {
        self.bufs.isa
    }

    /// Makes this engine run `isa`'s kernels (for comparisons and benchmarks: every
    /// implementation gives the same results, only the speed differs). Returns `false`, changing
    /// nothing, when `isa` is not supported here. The optimized matrix products need the weight
    /// tile of [`Engine::scratch_len_fast`]'s scratch; with a smaller scratch they fall back to
    /// the portable products.
    pub fn set_isa(&mut self, isa: Isa) -> bool {
        if !isa.is_supported() {
            return false;
        }
        self.bufs.isa = isa;
        true
    }

    /// The multiply-accumulate arithmetic of the products and attention
    /// ([`Arith::Separate`] unless [`set_arith`](Self::set_arith) chose the other).
    pub fn arith(&self) -> Arith {
        self.bufs.arith
    }

    /// Makes the products and attention use `arith` ([`kernels`](crate::float::kernels)'
    /// "Fused arithmetic"). Unlike the [`Isa`], this changes results: [`Arith::Fused`] is its
    /// own bit-exact specification (the same bits on every target and with every `Isa`), not
    /// that of golden files made with the default [`Arith::Separate`]. Takes effect from the
    /// next step.
    pub fn set_arith(&mut self, arith: Arith) {
        self.bufs.arith = arith;
    }

    /// One ACT step, like [`Engine::step`] (which is this with [`NoObserver`]), reporting the
    /// values at every [`Site`] to `obs` as they are computed. Observing changes no result.
    pub fn step_observed<O: Observer + ?Sized>(&mut self, obs: &mut O) -> StepOutput<f32> {
        let (h_cycles, l_cycles) = (self.config.h_cycles, self.config.l_cycles);
        act::act_step_cycles(
            &mut Observed {
                engine: &mut *self,
                obs: &mut *obs,
            },
            h_cycles,
            l_cycles,
        );
        self.steps = self.steps.saturating_add(1);
        let d = self.config.d();
        let y0 = &self.y[..d];
        let q = [
            self.w.q_weight.dot_row(0, y0),
            self.w.q_weight.dot_row(1, y0),
        ];
        obs.observe(Site::QHead, &q);
        StepOutput {
            step: self.steps,
            q_halt: q[0] + self.w.q_bias.get(0, 0),
            q_continue: q[1] + self.w.q_bias.get(0, 1),
        }
    }

    /// `z = net(z, y + x)`, reporting to `obs`.
    fn update_z_observed<O: Observer + ?Sized>(&mut self, obs: &mut O) {
        for ((z, y), x) in self.z.iter_mut().zip(self.y.iter()).zip(self.x.iter()) {
            *z += *y + *x;
        }
        obs.observe(Site::NetInput, self.z);
        net_blocks(&self.config, &self.w, &mut self.bufs, self.z, obs);
    }

    /// `y = net(y, z)`, reporting to `obs`.
    fn update_y_observed<O: Observer + ?Sized>(&mut self, obs: &mut O) {
        for (y, z) in self.y.iter_mut().zip(self.z.iter()) {
            *y += *z;
        }
        obs.observe(Site::NetInput, self.y);
        net_blocks(&self.config, &self.w, &mut self.bufs, self.y, obs);
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
    }

    fn scratch_len_checked(config: &Config, fast: bool) -> ScratchLen {
        if config.validate().is_err() {
            // Sizes of an invalid config may overflow; `new` rejects it anyway.
            return ScratchLen::default();
        }
        let layout = Layout::new(config);
        f32s(if fast {
            layout.len_fast()
        } else {
            layout.len(layout.min_rows())
        })
    }
}

/// A scratch size of `n` f32 values.
const fn f32s(n: usize) -> ScratchLen {
    ScratchLen {
        f32s: n,
        i16s: 0,
        i32s: 0,
    }
}

/// The float engine's arithmetic: `start` computes
/// `x = sqrt(D) * cat(puzzle prefix, token embeddings)` (with learned positions
/// `LEARNED_POS_SCALE * (emb + pos)` first); states and logits are f32, and the model halts when
/// `q_halt > 0.0`.
impl Engine for FloatEngine<'_> {
    type State = f32;
    type Logit = f32;

    /// Exact number of f32 values [`FloatEngine::new`] requires for this config (row blocks of
    /// [`kernels::ROW_BLOCK`] rows).
    fn scratch_len(config: &Config) -> ScratchLen {
        Self::scratch_len_checked(config, false)
    }

    /// Number of f32 values with which every matrix product runs in one weight pass on a whole
    /// weight tile of the optimized kernels (the fastest setting on a host; any size between
    /// the two works and gives the same results).
    fn scratch_len_fast(config: &Config) -> ScratchLen {
        Self::scratch_len_checked(config, true)
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn start(&mut self, tokens: &[u8], puzzle_id: u32) -> Result<(), EngineError> {
        let c = &self.config;
        check_input(c, tokens, puzzle_id)?;
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

    fn set_carry(&mut self, y: &[f32], z: &[f32]) -> Result<(), EngineError> {
        check_carry(self.y.len(), y.len(), z.len())?;
        self.y.copy_from_slice(y);
        self.z.copy_from_slice(z);
        Ok(())
    }

    fn step(&mut self) -> StepOutput<f32> {
        self.step_observed(&mut NoObserver)
    }

    fn steps(&self) -> u32 {
        self.steps
    }

    fn logits(&self, out: &mut [f32]) -> Result<(), EngineError> {
        let c = &self.config;
        let (d, v) = (c.d(), c.vocab_size as usize);
        check_output(c.seq_len as usize * v, out.len())?;
        let prefix = c.puzzle_emb_len as usize;
        for (t, row) in out.chunks_exact_mut(v).enumerate() {
            let y = &self.y[(prefix + t) * d..(prefix + t + 1) * d];
            for (k, o) in row.iter_mut().enumerate() {
                *o = self.w.lm_head.dot_row(k, y);
            }
        }
        Ok(())
    }

    fn predict(&self, out: &mut [u8]) -> Result<(), EngineError> {
        let c = &self.config;
        let (d, v) = (c.d(), c.vocab_size as usize);
        check_output(c.seq_len as usize, out.len())?;
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

    fn x(&self) -> &[f32] {
        self.x
    }

    fn y(&self) -> &[f32] {
        self.y
    }

    fn z(&self) -> &[f32] {
        self.z
    }
}

impl Recurrence for FloatEngine<'_> {
    fn update_z(&mut self) {
        self.update_z_observed(&mut NoObserver);
    }

    fn update_y(&mut self) {
        self.update_y_observed(&mut NoObserver);
    }
}

/// The engine and an observer: the recurrence of [`FloatEngine::step_observed`].
struct Observed<'e, 'a, O: ?Sized> {
    engine: &'e mut FloatEngine<'a>,
    obs: &'e mut O,
}

impl<O: Observer + ?Sized> Recurrence for Observed<'_, '_, O> {
    fn update_z(&mut self) {
        self.engine.update_z_observed(self.obs);
    }

    fn update_y(&mut self) {
        self.engine.update_y_observed(self.obs);
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::float::OwnedWeights;
    use crate::tensor::DType;
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

        let mut s1 = vec![0f32; FloatEngine::scratch_len(&c).f32s];
        let mut a = FloatEngine::new(&c, &src, &mut s1).unwrap();
        a.start(&tokens, 1).unwrap();
        a.step();
        let (y1, z1) = (a.y().to_vec(), a.z().to_vec());
        let s2a = a.step();
        let mut la = vec![0f32; v];
        a.logits(&mut la).unwrap();

        let mut s2 = vec![0f32; FloatEngine::scratch_len(&c).f32s];
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
