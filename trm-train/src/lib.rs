//! A libtorch trainer for Tiny Recursive Models (TRM, arXiv 2510.04871).
//!
//! - [`config`]: the run configuration with the reference's keys (YAML + `key=value` overrides),
//!   defined in [`trm_reference::config`] and re-exported here;
//! - [`data`]: the reference's dataset sampling (`puzzle_dataset.py`), batch for batch;
//! - [`model`]: the TRM network in tch, with the reference implementation's tensor names;
//! - [`train`]: the train-mode ACT step and the loss head (stablemax cross entropy, Q-halt);
//! - [`optim`]: AdamATan2, sign-SGD for the puzzle embedding, the LR schedule, EMA;
//! - [`ckpt`]: atomic checkpoint folders (weights, EMA, optimizer, RNG, config), keep-last-N;
//! - [`logs`]: metrics JSONL, TensorBoard event files, learning-curve PNGs, progress bar;
//! - [`run`]: the training loop and evaluation (`trm-train train`, `trm-train evaluate`);
//! - [`dist`]: libtorch's c10d (TCPStore, ProcessGroupGloo, ProcessGroupNCCL) through a small C++
//!   bridge (`csrc/`), for multi-process training;
//! - [`device`]: choosing CPU or CUDA; [`info`]: what libtorch the process runs on.
#![deny(missing_docs)]

pub mod ckpt;
pub use trm_reference::config;
pub mod data;
pub mod device;
pub mod dist;
pub mod info;
pub mod logs;
pub mod model;
pub mod optim;
pub mod run;
pub mod train;
