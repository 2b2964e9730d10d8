//! The optimizers of the trainer, as the reference uses them (`pretrain.py`):
//!
//! - [`AdamAtan2`]: the `adam-atan2` package's Adam without epsilon, for every trainable
//!   parameter of the model;
//! - [`SparseSignSgd`]: sign-SGD for the rows of the puzzle embedding a batch touched
//!   (`models/sparse_embedding.py`), with an all-gather hook for distributed training;
//! - [`CosineSchedule`]: linear warmup then cosine decay to `lr_min_ratio * lr`, applied to both
//!   optimizers, each with its own base learning rate;
//! - [`Ema`]: the exponential moving average of the trainable parameters (`models/ema.py`),
//!   swapped into the model for evaluation and checkpoints.
//!
//! Every optimizer state can be exported as named tensors and loaded back for an exact resume.

mod adam_atan2;
mod ema;
mod schedule;
mod sign_sgd;

pub use adam_atan2::{AdamAtan2, AdamAtan2Config};
pub use ema::Ema;
pub use schedule::{CosineSchedule, cosine_schedule_with_warmup_lr, total_train_steps};
pub use sign_sgd::{LocalGather, SparseGradGather, SparseSignSgd};

use std::fmt;
use tch::{Kind, Tensor, nn::VarStore};

/// What can go wrong in an optimizer.
#[derive(Debug)]
#[non_exhaustive]
pub enum OptimError {
    /// libtorch reported an error.
    Tch(tch::TchError),
    /// A hyperparameter, tensor or argument is invalid (the message says which).
    BadInput(String),
    /// A state dict does not fit the optimizer (missing, unknown or misshapen entries).
    State(String),
}

impl fmt::Display for OptimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptimError::Tch(e) => write!(f, "libtorch: {e}"),
            OptimError::BadInput(s) => write!(f, "bad optimizer input: {s}"),
            OptimError::State(s) => write!(f, "bad optimizer state: {s}"),
        }
    }
}

impl std::error::Error for OptimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OptimError::Tch(e) => Some(e),
            OptimError::BadInput(_) | OptimError::State(_) => None,
        }
    }
}

impl From<tch::TchError> for OptimError {
    fn from(e: tch::TchError) -> Self {
        OptimError::Tch(e)
    }
}

/// The trainable variables of a var store (those that require grad), sorted by name: what the
/// reference hands to AdamATan2 (`model.parameters()`) and registers in the EMA
/// (`named_parameters()` with `requires_grad`). Buffers added as non-trainable (H_init, L_init,
/// the puzzle embedding) are left out.
pub fn trainable_named(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Whether `kind` is a floating-point element type an optimizer can update.
fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

/// Checks that a hyperparameter is finite and not negative.
fn check_non_negative(what: &str, x: f64) -> Result<(), OptimError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::BadInput(format!(
            "{what} must be finite and >= 0, got {x}"
        )))
    }
}

/// Checks that `names` has no duplicate.
fn check_unique_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), OptimError> {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(OptimError::BadInput(format!(
                "parameter name {n:?} given twice"
            )));
        }
    }
    Ok(())
}
