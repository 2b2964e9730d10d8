//! The training loop and evaluation (the reference's `pretrain.py`, single process).
//!
//! - [`train`]: seeds, datasets, model, optimizers (AdamATan2 with the cosine schedule, sign-SGD
//!   for the puzzle embedding), EMA, the loop over iterations of `eval_interval` epochs,
//!   evaluation, checkpoints, logs; exact resume from a checkpoint ([`TrainRun`]);
//! - [`eval`]: full-depth inference on a test split with the reference's metrics;
//! - [`evaluators`]: the config's `evaluators` (ARC pass@K and submission), fed by evaluation;
//! - [`eval_checkpoint`]: [`evaluate_checkpoint`] for a saved checkpoint (`trm-train evaluate`),
//!   with `key=value` overrides on its config.
//!
//! # Resume
//!
//! A checkpoint holds the weights, the EMA, AdamATan2's state, the training carry (recurrent
//! state, data, step counts and halting of every sequence of the batch), the number of draws
//! taken from the exploration RNG, the step and the position in the data (iteration and
//! batches consumed in it). Resuming replays the data sampler's index plans (no tensors) up to
//! that position, so both the shuffles and NumPy's legacy example RNG are where they were, and
//! N steps straight equal N/2 + resume + N/2 bit for bit on one device and thread count.

pub mod eval;
pub mod eval_checkpoint;
pub mod evaluators;
pub mod train;

pub use eval::{EvalOutput, SetMetrics, evaluate, evaluate_with};
pub use eval_checkpoint::{
    CheckpointEvaluation, EvalCheckpoint, EvaluateOptions, evaluate_checkpoint,
};
pub use evaluators::{EvaluatorResult, Evaluators};
pub use train::{TrainRun, TrainSummary, check_world_size, train};

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ckpt::CkptError;
use crate::config::ConfigError;
use crate::data::DataError;
use crate::model::{CheckpointError, ModelError};
use crate::optim::OptimError;
use crate::train::TrainError;

/// Why a run or an evaluation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The config is invalid.
    Config(ConfigError),
    /// A dataset could not be read.
    Data(DataError),
    /// The model failed.
    Model(ModelError),
    /// Loading weights failed.
    Weights(CheckpointError),
    /// A training step failed.
    Train(TrainError),
    /// An optimizer failed.
    Optim(OptimError),
    /// Writing or reading a checkpoint failed.
    Ckpt(CkptError),
    /// libtorch reported an error.
    Tch(tch::TchError),
    /// A collective or the process group failed (another rank died, hung or disagreed).
    Dist(crate::dist::DistError),
    /// A file operation failed.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Something inconsistent (the message says what).
    Invalid(String),
}

impl RunError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        RunError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Its messages say "config" already.
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Data(e) => write!(f, "data: {e}"),
            RunError::Model(e) => write!(f, "model: {e}"),
            RunError::Weights(e) => write!(f, "weights: {e}"),
            RunError::Train(e) => write!(f, "training step: {e}"),
            RunError::Optim(e) => write!(f, "optimizer: {e}"),
            RunError::Ckpt(e) => write!(f, "{e}"),
            RunError::Tch(e) => write!(f, "libtorch: {e}"),
            RunError::Dist(e) => write!(f, "distributed: {e}"),
            RunError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            RunError::Invalid(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Config(e) => Some(e),
            RunError::Data(e) => Some(e),
            RunError::Model(e) => Some(e),
            RunError::Weights(e) => Some(e),
            RunError::Train(e) => Some(e),
            RunError::Optim(e) => Some(e),
            RunError::Ckpt(e) => Some(e),
            RunError::Tch(e) => Some(e),
            RunError::Dist(e) => Some(e),
            RunError::Io { source, .. } => Some(source),
            RunError::Invalid(_) => None,
        }
    }
}

macro_rules! from_err {
    ($t:ty, $v:ident) => {
        impl From<$t> for RunError {
            fn from(e: $t) -> Self {
                RunError::$v(e)
            }
        }
    };
}
from_err!(ConfigError, Config);
from_err!(DataError, Data);
from_err!(ModelError, Model);
from_err!(CheckpointError, Weights);
from_err!(TrainError, Train);
from_err!(OptimError, Optim);
from_err!(CkptError, Ckpt);
from_err!(tch::TchError, Tch);
from_err!(crate::dist::DistError, Dist);

/// The CPU thread count to use: `TRM_THREADS` if set to a positive integer, else every
/// available core. An invalid `TRM_THREADS` is an error.
pub fn cpu_threads() -> Result<usize, RunError> {
    match std::env::var("TRM_THREADS") {
        Ok(s) => match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(RunError::Invalid(format!(
                "TRM_THREADS must be a positive integer, got {s:?}"
            ))),
        },
        Err(_) => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Sets libtorch's intra-op thread count from [`cpu_threads`]; returns it.
pub fn configure_threads() -> Result<usize, RunError> {
    configure_threads_shared(1)
}

/// As [`configure_threads`] for one of `procs` processes sharing this machine's cores: without
/// `TRM_THREADS`, each gets `cores / procs` threads (at least one).
pub fn configure_threads_shared(procs: usize) -> Result<usize, RunError> {
    let n = if std::env::var_os("TRM_THREADS").is_some() || procs <= 1 {
        cpu_threads()?
    } else {
        (cpu_threads()? / procs).max(1)
    };
    tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    Ok(n)
}
