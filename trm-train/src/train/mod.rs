//! One training step of TRM, following the reference (`pretrain.py` `train_batch`,
//! `models/losses.py` `ACTLossHead`, `models/recursive_reasoning/trm.py` in training mode).
//!
//! - [`act`]: the training carry across batches and one ACT step with the halting rule;
//! - [`loss`]: the loss head (stablemax cross entropy, q_halt / q_continue losses, metrics).
//!
//! How a training loop uses it:
//!
//! ```no_run
//! # use trm_train::train::*;
//! # fn demo(model: &trm_train::model::Trm, batches: Vec<Batch>) -> Result<(), TrainError> {
//! let options = TrainOptions::default();
//! let mut carry = TrainCarry::new(model, 8, tch::Device::Cpu, 0)?;
//! for batch in &batches {
//!     let out = train_step(model, &mut carry, batch, &options)?;
//!     // Scale by the global batch size and backpropagate, as pretrain.py does.
//!     out.loss.f_mul_scalar(1.0 / 8.0)?.f_backward()?;
//!     // Then: all-reduce and apply the parameter gradients (AdamATan2), the puzzle
//!     // embedding's sign-SGD on `out.puzzle_local_weights.grad()` for `out.puzzle_local_ids`,
//!     // zero the gradients, log `out.metrics`.
//! }
//! # Ok(()) }
//! ```

pub mod act;
pub mod loss;

pub use act::{ActTrainOutput, HaltingOptions, SplitMix64, TrainCarry, act_train_step};
pub use loss::{IGNORE_LABEL_ID, LossInputs, LossKind, Metrics, act_loss};

use crate::model::{ModelError, Trm};
use std::fmt;
use tch::{Device, Kind, Tensor};
use trm_nostd::Config;

/// Why a training step cannot run.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainError {
    /// The model rejected its input or failed.
    Model(ModelError),
    /// libtorch reported an error.
    Tch(tch::TchError),
    /// A batch or carry has the wrong shape or contents.
    BadInput(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Model(e) => write!(f, "{e}"),
            TrainError::Tch(e) => write!(f, "libtorch: {e}"),
            TrainError::BadInput(s) => write!(f, "bad training input: {s}"),
        }
    }
}

impl std::error::Error for TrainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrainError::Model(e) => Some(e),
            TrainError::Tch(e) => Some(e),
            TrainError::BadInput(_) => None,
        }
    }
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Tch(e)
    }
}

impl From<ModelError> for TrainError {
    fn from(e: ModelError) -> Self {
        TrainError::Model(e)
    }
}

/// One batch of examples, on the model's device: the data pipeline's batch type
/// ([`crate::data::Batch`]), so the training loop hands batches over as they come.
pub use crate::data::Batch;

impl Batch {
    /// A batch from host arrays as a dataset stores them: `inputs` and `labels` row-major
    /// `[B, seq_len]`, one identifier per row. Labels equal to `ignore_label_id` (the
    /// dataset's, 0 in every reference dataset) become [`IGNORE_LABEL_ID`], as
    /// `puzzle_dataset.py` does.
    pub fn from_tokens(
        inputs: &[u8],
        labels: &[u8],
        puzzle_identifiers: &[i32],
        seq_len: usize,
        ignore_label_id: Option<i32>,
        device: Device,
    ) -> Result<Self, TrainError> {
        let b = puzzle_identifiers.len();
        if seq_len == 0 || inputs.len() != b * seq_len || labels.len() != b * seq_len {
            return Err(TrainError::BadInput(format!(
                "{} inputs and {} labels for {b} rows of {seq_len} tokens",
                inputs.len(),
                labels.len()
            )));
        }
        let shape = [b as i64, seq_len as i64];
        let inputs: Vec<i32> = inputs.iter().map(|&t| i32::from(t)).collect();
        let labels: Vec<i32> = labels
            .iter()
            .map(|&t| {
                let t = i32::from(t);
                if Some(t) == ignore_label_id {
                    IGNORE_LABEL_ID as i32
                } else {
                    t
                }
            })
            .collect();
        Ok(Batch {
            inputs: Tensor::f_from_slice(&inputs)?
                .f_view(shape)?
                .f_to_device(device)?,
            labels: Tensor::f_from_slice(&labels)?
                .f_view(shape)?
                .f_to_device(device)?,
            puzzle_identifiers: Tensor::f_from_slice(puzzle_identifiers)?.f_to_device(device)?,
        })
    }

    /// Checks shapes and element types against the model's config and the batch size.
    pub fn check(&self, config: &Config, batch_size: i64) -> Result<(), TrainError> {
        let s = config.seq_len as i64;
        let want = [
            ("inputs", &self.inputs, vec![batch_size, s]),
            ("labels", &self.labels, vec![batch_size, s]),
            (
                "puzzle_identifiers",
                &self.puzzle_identifiers,
                vec![batch_size],
            ),
        ];
        for (name, t, shape) in want {
            if t.size() != shape {
                return Err(TrainError::BadInput(format!(
                    "{name} must be {shape:?}, got {:?}",
                    t.size()
                )));
            }
            if t.is_floating_point() || t.kind() == Kind::Bool {
                return Err(TrainError::BadInput(format!(
                    "{name} must be integer, got {:?}",
                    t.kind()
                )));
            }
        }
        Ok(())
    }
}

/// Settings of a training step that are not part of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainOptions {
    /// The token cross entropy.
    pub loss: LossKind,
    /// The halting rule's exploration and continue-head settings.
    pub halting: HaltingOptions,
}

/// What [`train_step`] produces.
#[derive(Debug)]
pub struct StepOutput {
    /// The total loss, 0-dim with gradient (f64 with stablemax), not yet divided by the global
    /// batch size: backpropagate `loss / global_batch_size`.
    pub loss: Tensor,
    /// The step's metrics (sums; see [`Metrics::reduced`]).
    pub metrics: Metrics,
    /// The batch's puzzle embedding rows, a leaf requiring grad (`None` without a puzzle
    /// embedding): after `backward`, `grad()` holds the gradient for the sign-SGD optimizer.
    pub puzzle_local_weights: Option<Tensor>,
    /// The puzzle identifiers of those rows, int `[B]`.
    pub puzzle_local_ids: Tensor,
    /// Token logits `[B, S, V]`, detached.
    pub logits: Tensor,
    /// Halting logits, f32 `[B]`, detached.
    pub q_halt: Tensor,
    /// Token predictions (argmax of the logits), int64 `[B, S]`.
    pub preds: Tensor,
}

/// One training step: one ACT step of every sequence in `carry` (halted ones take their row
/// of `batch`), then the loss head. Backward, gradient reduction and the optimizers are the
/// caller's.
pub fn train_step(
    model: &Trm,
    carry: &mut TrainCarry,
    batch: &Batch,
    options: &TrainOptions,
) -> Result<StepOutput, TrainError> {
    let out = act_train_step(model, carry, batch, &options.halting)?;
    let inputs = LossInputs {
        logits: &out.logits,
        q_halt: &out.q_halt,
        q_continue: &out.q_continue,
        target_q_continue: out.target_q_continue.as_ref(),
        labels: &carry.current_data.labels,
        halted: &carry.halted,
        steps: &carry.steps,
    };
    let (loss, metrics) = act_loss(&inputs, options.loss)?;
    let preds = {
        let _no_grad = tch::no_grad_guard();
        out.logits.f_argmax(-1, false)?
    };
    Ok(StepOutput {
        loss,
        metrics,
        puzzle_local_weights: out.puzzle_local_weights,
        puzzle_local_ids: out.puzzle_local_ids,
        logits: out.logits.f_detach()?,
        q_halt: out.q_halt.f_detach()?,
        preds,
    })
}
