//! The TRM network in tch ("Less is More: Recursive Reasoning with Tiny Networks",
//! arXiv 2510.04871), numerically following the reference implementation
//! (SamsungSAILMontreal/TinyRecursiveModels, `models/recursive_reasoning/trm.py`).
//!
//! Weights live in a [`tch::nn::VarStore`] under the reference state_dict names given by
//! [`trm_nostd::TensorId`]'s `Display` (`inner.L_level.layers.0.mlp.gate_up_proj.weight`), so
//! checkpoints interchange with the reference and with `.trm` export.
//!
//! - [`layers`]: RMSNorm, SwiGLU, attention with RoPE;
//! - [`trm`]: the model, its carry and one ACT step;
//! - [`checkpoint`]: loading weights (safetensors, reference `torch.save` files and runs);
//! - [`quant`]: fake quantization of the weight matrices (quantization-aware training).

pub mod checkpoint;
pub mod layers;
pub mod quant;
pub mod trm;

pub use checkpoint::{
    CheckpointError, LoadedReference, load_named_tensors, load_reference, read_checkpoint,
};
pub use trm::{ActOutput, Carry, Trm};

use std::fmt;

/// Why a model cannot be built or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ModelError {
    /// The config is invalid.
    Config(trm_nostd::ConfigError),
    /// libtorch reported an error.
    Tch(tch::TchError),
    /// An input tensor has the wrong shape or element type.
    BadInput(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(e) => write!(f, "{e}"),
            ModelError::Tch(e) => write!(f, "libtorch: {e}"),
            ModelError::BadInput(s) => write!(f, "bad model input: {s}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::Config(e) => Some(e),
            ModelError::Tch(e) => Some(e),
            ModelError::BadInput(_) => None,
        }
    }
}

impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::Tch(e)
    }
}

impl From<trm_nostd::ConfigError> for ModelError {
    fn from(e: trm_nostd::ConfigError) -> Self {
        ModelError::Config(e)
    }
}
