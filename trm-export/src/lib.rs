//! Host-side conversion of TRM checkpoints into `.trm` model files, and the host tools around
//! them: running models on puzzles, golden digest files, and the float-vs-fixed gate.
//!
//! Checkpoints (the reference's `torch.save` files and our trainer's) are read by
//! [`trm_reference`]; this crate writes and runs `.trm` files.
#![deny(missing_docs)]

pub mod budget;
pub mod dump;
pub mod engine;
pub mod export;
pub mod golden;
pub mod inspect;
pub mod parallel;
pub mod puzzles;
pub mod qat;
pub mod quantize;
pub mod solve;
pub mod verify;
