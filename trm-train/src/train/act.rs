//! The ACT training carry across batches (the reference's `TinyRecursiveReasoningModel_ACTV1`
//! forward in training mode, `models/recursive_reasoning/trm.py`).
//!
//! Every batch advances each sequence of the carry by one ACT step. A sequence that halted in
//! the previous step restarts from H_init/L_init with the new batch's row in its place; the
//! others keep their data and recurrent state. After the step, a sequence halts when it has
//! taken `halt_max_steps` steps, or when its halting logit says so (`q_halt > 0`, or
//! `q_halt > q_continue` when the continue head is trained) and it has reached its exploration
//! minimum (with probability `halt_exploration_prob` a minimum drawn uniformly in
//! `[2, halt_max_steps]`, else none).

use super::{Batch, TrainError};
use crate::model::{Carry, Trm};
use tch::{Device, Kind, Tensor};

/// SplitMix64: a small, seeded, portable random generator for the exploration draws.
///
/// tch exposes no `torch.Generator`; drawing these few numbers per step on the host keeps
/// training reproducible from a seed on every device and independent of libtorch's global
/// generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[low, high]` (`high >= low`; Lemire's multiply-shift, bias below
    /// 2^-32 for the small ranges used here).
    pub fn next_in(&mut self, low: u32, high: u32) -> u32 {
        let span = u64::from(high.saturating_sub(low)) + 1;
        let r = (self.next_u64() >> 32).wrapping_mul(span) >> 32;
        low + r as u32
    }
}

/// The training carry: the recurrent state and data of every sequence of the batch, its step
/// count and whether it halted in the last step (the reference's `..._ACTV1Carry`).
#[derive(Debug)]
pub struct TrainCarry {
    /// y and z of every sequence, `[B, L, D]` each, detached.
    pub inner: Carry,
    /// ACT steps taken by each sequence since its data was loaded, int32 `[B]`.
    pub steps: Tensor,
    /// Whether each sequence halted in the last step (it takes new data next step), bool `[B]`.
    pub halted: Tensor,
    /// The data each sequence is working on.
    pub current_data: Batch,
    /// Draws the exploration minima.
    pub rng: SplitMix64,
}

impl TrainCarry {
    /// The carry before the first batch: every sequence halted, so the first step loads the
    /// whole batch and starts from H_init/L_init. `seed` seeds the exploration draws (give
    /// each rank its own, as `pretrain.py` seeds torch with `seed + rank`).
    pub fn new(
        model: &Trm,
        batch_size: i64,
        device: Device,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let c = model.config();
        let inner = model.initial_carry(batch_size)?;
        let inner = Carry {
            z_h: inner.z_h.f_to_device(device)?,
            z_l: inner.z_l.f_to_device(device)?,
        };
        Ok(TrainCarry {
            inner,
            steps: Tensor::f_zeros([batch_size], (Kind::Int, device))?,
            halted: Tensor::f_ones([batch_size], (Kind::Bool, device))?,
            current_data: Batch {
                inputs: Tensor::f_zeros([batch_size, c.seq_len as i64], (Kind::Int, device))?,
                labels: Tensor::f_zeros([batch_size, c.seq_len as i64], (Kind::Int, device))?,
                puzzle_identifiers: Tensor::f_zeros([batch_size], (Kind::Int, device))?,
            },
            rng: SplitMix64::new(seed),
        })
    }

    /// The batch size the carry holds.
    pub fn batch_size(&self) -> i64 {
        self.steps.size().first().copied().unwrap_or(0)
    }

    /// Whether every sequence halted in the last step.
    pub fn all_halted(&self) -> Result<bool, TrainError> {
        Ok(self.halted.f_all()?.f_int64_value(&[])? != 0)
    }
}

/// Settings of the halting rule that are not part of the architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HaltingOptions {
    /// Probability that a sequence gets a random minimum number of steps (0.1 in the paper).
    pub halt_exploration_prob: f64,
    /// Train only the halting logit (`no_ACT_continue`, the TRM default): halt when
    /// `q_halt > 0`. When false, halt when `q_halt > q_continue` and train `q_continue` towards
    /// a bootstrapped target.
    pub no_act_continue: bool,
}

impl Default for HaltingOptions {
    fn default() -> Self {
        Self {
            halt_exploration_prob: 0.1,
            no_act_continue: true,
        }
    }
}

/// What one training ACT step produces (everything the loss head needs).
#[derive(Debug)]
pub struct ActTrainOutput {
    /// Token logits `[B, S, V]`, with gradient.
    pub logits: Tensor,
    /// Halting logits, f32 `[B]`, with gradient.
    pub q_halt: Tensor,
    /// Continue logits, f32 `[B]`, with gradient.
    pub q_continue: Tensor,
    /// `sigmoid` of the bootstrapped continue target `[B]` (only when the continue head is
    /// trained).
    pub target_q_continue: Option<Tensor>,
    /// The batch's puzzle embedding rows, f32 `[B, puzzle_emb_ndim]`: a leaf tensor that
    /// requires grad (the reference's `puzzle_emb.local_weights`). After `backward`, its
    /// `grad()` is what the puzzle embedding's sign-SGD consumes.
    pub puzzle_local_weights: Option<Tensor>,
    /// The puzzle identifiers of those rows, int32 `[B]` (the reference's `local_ids`).
    pub puzzle_local_ids: Tensor,
}

/// A `[B]` mask reshaped to broadcast over a tensor of rank `rank`.
fn row_mask(mask: &Tensor, rank: usize) -> Result<Tensor, TrainError> {
    let mut shape = vec![-1i64];
    shape.resize(rank.max(1), 1);
    Ok(mask.f_view(shape.as_slice())?)
}

/// `new` where `mask` (a `[B]` row mask), `old` elsewhere.
fn take_rows(mask: &Tensor, new: &Tensor, old: &Tensor) -> Result<Tensor, TrainError> {
    let m = row_mask(mask, new.dim())?;
    Ok(new.f_to_kind(old.kind())?.f_where_self(&m, old)?)
}

/// One training ACT step: resets halted sequences (new data from `batch`, H_init/L_init),
/// runs the model's ACT step with gradient on its last cycle, then decides which sequences
/// halt. Updates `carry` in place.
pub fn act_train_step(
    model: &Trm,
    carry: &mut TrainCarry,
    batch: &Batch,
    options: &HaltingOptions,
) -> Result<ActTrainOutput, TrainError> {
    let c = model.config();
    let b = carry.batch_size();
    batch.check(c, b)?;
    let halted = carry.halted.shallow_clone();

    // Restart halted sequences: fresh state, fresh data, step count 0.
    let (inner, data, steps) = {
        let _no_grad = tch::no_grad_guard();
        let init = model.initial_carry(b)?;
        let inner = Carry {
            z_h: take_rows(
                &halted,
                &init.z_h.f_to_device(halted.device())?,
                &carry.inner.z_h,
            )?,
            z_l: take_rows(
                &halted,
                &init.z_l.f_to_device(halted.device())?,
                &carry.inner.z_l,
            )?,
        };
        let cur = &carry.current_data;
        let data = Batch {
            inputs: take_rows(&halted, &batch.inputs, &cur.inputs)?,
            labels: take_rows(&halted, &batch.labels, &cur.labels)?,
            puzzle_identifiers: take_rows(
                &halted,
                &batch.puzzle_identifiers,
                &cur.puzzle_identifiers,
            )?,
        };
        let steps = carry
            .steps
            .f_where_scalarother(&halted.f_logical_not()?, 0)?;
        (inner, data, steps)
    };

    // The puzzle embedding rows as a fresh leaf: the reference copies `weights[ids]` into
    // `local_weights` (requires_grad) each step, and the gradient lands there.
    let puzzle_local_weights = model
        .puzzle_rows(&data.puzzle_identifiers)?
        .map(|rows| -> Result<Tensor, TrainError> { Ok(rows.f_detach()?.set_requires_grad(true)) })
        .transpose()?;
    let x = model.input_embeddings(&data.inputs, puzzle_local_weights.as_ref())?;
    let (new_inner, out) = model.act_step(&inner, &x)?;

    let (halted, steps, target_q_continue) = {
        let _no_grad = tch::no_grad_guard();
        let steps = steps.f_add_scalar(1)?;
        let max_steps = i64::from(c.halt_max_steps);
        let is_last = steps.f_ge(max_steps)?;
        let mut halted = is_last.shallow_clone();
        let mut target = None;
        if c.halt_max_steps > 1 {
            let wants_halt = if options.no_act_continue {
                out.q_halt.f_gt(0.0)?
            } else {
                out.q_halt.f_gt_tensor(&out.q_continue)?
            };
            halted = halted.f_logical_or(&wants_halt)?;

            // Exploration: a random minimum step count for some sequences.
            let minima: Vec<i32> = (0..b)
                .map(|_| {
                    let explore = carry.rng.next_f64() < options.halt_exploration_prob;
                    let min = carry.rng.next_in(2, c.halt_max_steps);
                    if explore { min as i32 } else { 0 }
                })
                .collect();
            let minima = Tensor::f_from_slice(&minima)?.f_to_device(steps.device())?;
            halted = halted.f_logical_and(&steps.f_ge_tensor(&minima)?)?;

            if !options.no_act_continue {
                // Bootstrapped target: the Q values of the next step from the new state.
                let (_, next) = model.act_step(&new_inner, &x.f_detach()?)?;
                let best = next.q_halt.f_maximum(&next.q_continue)?;
                let t = next.q_halt.f_where_self(&is_last, &best)?.f_sigmoid()?;
                target = Some(t);
            }
        }
        (halted, steps, target)
    };

    carry.inner = new_inner;
    carry.steps = steps;
    carry.halted = halted;
    carry.current_data = data;

    Ok(ActTrainOutput {
        logits: out.logits,
        q_halt: out.q_halt,
        q_continue: out.q_continue,
        target_q_continue,
        puzzle_local_weights,
        puzzle_local_ids: carry.current_data.puzzle_identifiers.shallow_clone(),
    })
}
