//! Heap-free Tiny Recursive Model inference for microcontrollers and hosts.
//!
//! TRM ("Less is More: Recursive Reasoning with Tiny Networks", arXiv 2510.04871) applies one small
//! network many times: per ACT step, `H_cycles` times { `L_cycles` times `z = net(z, y + x)`;
//! `y = net(y, z)` }, then reads answers from `y`. This crate holds:
//!
//! - [`config`]: the architecture settings and their derived sizes;
//! - [`tensor`]: the names, shapes and element types of every weight;
//! - [`format`](mod@format): the `.trm` model file, read in place from flash without allocating;
//! - [`float`]: the float engine (f32, `libm`, fixed summation order: bit-reproducible);
//! - [`fixed`]: the fixed-point engine (int8 weights, int16 activations, integer only);
//! - [`sudoku`]: puzzle codecs.
//!
//! No `alloc`: every buffer is passed in by the caller, sized by functions of the [`Config`].
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod digest;
pub mod fixed;
pub mod float;
pub mod format;
pub mod sudoku;
pub mod tensor;

pub use config::{Config, ConfigError, PosEncoding};
pub use digest::{digest_f32, digest_tokens};
pub use float::{EngineError, FloatEngine, HaltMode, SolveSummary, StepOutput};
pub use format::{FormatError, Model, NumericScheme};
pub use tensor::{DType, LayerTensor, Shape, TensorId, TensorSource, TensorView};
