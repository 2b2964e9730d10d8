//! Host-side conversion of TRM checkpoints into `.trm` model files, and the host tools around
//! them: running models on puzzles, golden digest files, and the float-vs-fixed gate.
#![deny(missing_docs)]

pub mod engine;
pub mod export;
pub mod golden;
pub mod inspect;
pub mod puzzles;
pub mod quantize;
pub mod reference;
pub mod solve;
pub mod torch_pickle;
pub mod verify;
