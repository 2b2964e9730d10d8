//! Datasets for Tiny Recursive Models, byte-compatible with the reference layout
//! (`<dir>/<split>/dataset.json` and `<dir>/<split>/<set>__<field>.npy`).
//!
//! - [`arc`], [`arc_eval`]: the ARC builder and evaluator.
//! - [`layout`]: the layout itself (metadata, atomic writer, reader), [`npy`]: `.npy` files.
//! - [`sudoku`], [`maze`]: the `build-dataset` builders; [`sudoku_gen`]: a Sudoku generator
//!   and exact solver.
//! - [`cli`]: the `build-dataset` command line, shared by this crate's `build-dataset` binary
//!   and `trm-train build-dataset`.
#![deny(missing_docs)]

pub mod arc;
pub mod arc_eval;
pub mod cli;
pub mod input;
pub mod layout;
pub mod maze;
pub mod npy;
pub mod progress;
pub mod sudoku;
pub mod sudoku_gen;
