//! Host-side conversion of TRM checkpoints into `.trm` model files.
#![deny(missing_docs)]

pub mod puzzles;
pub mod quantize;
pub mod reference;
pub mod torch_pickle;
