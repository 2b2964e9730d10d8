//! Heap-free Tiny Recursive Model inference for microcontrollers and hosts.
//!
//! TRM ("Less is More: Recursive Reasoning with Tiny Networks", arXiv 2510.04871) applies one small
//! network many times: per ACT step, `H_cycles` times { `L_cycles` times `z = net(z, y + x)`;
//! `y = net(y, z)` }, then reads answers from `y`. This crate holds:
//!
//! - [`config`]: the architecture settings and their derived sizes;
//! - [`tensor`]: the names, shapes and element types of every weight;
//! - [`format`](mod@format): the `.trm` model file, read in place from flash without allocating;
//! - [`engine`]: the interface both engines implement ([`Engine`]: start, step, logits, predict,
//!   solve, scratch sizes), their errors ([`EngineError`]), and [`AnyEngine`], the engine of a
//!   parsed model's scheme in one f32 arena;
//! - [`act`]: the ACT step schedule both engines share ([`HaltMode`], when a solve stops);
//! - [`float`]: the float engine (f32, `libm`, fixed summation order: bit-reproducible);
//! - [`fixed`]: the fixed-point engine (int8 weights, int16 activations, integer only);
//! - [`sudoku`]: the Sudoku codec and rules;
//! - [`task`], [`maze`]: the other tasks (Maze, ARC, any token sequence): which task a model
//!   solves, token lines and grids, validity rules.
//!
//! No `alloc`: every buffer is passed in by the caller, sized by functions of the [`Config`].
//!
//! # Example: a solve with no heap
//!
//! What a firmware does: the model is embedded in flash 64-byte aligned, parsed in place, and
//! the engine runs in a caller-owned arena. Only `core` is used here; on a board, `scratch`
//! would be a `static` buffer sized with [`FloatEngine::scratch_len`](Engine::scratch_len) for the
//! shipped model ([`AnyEngine`] does the same for a model of either scheme).
//!
//! ```
//! use trm_nostd::{Engine, EngineError, FloatEngine, HaltMode, Model};
//!
//! /// Solves one puzzle (`tokens`: `seq_len` token ids) and returns the ACT steps used.
//! fn solve(
//!     model_bytes: &'static [u8],
//!     tokens: &[u8],
//!     scratch: &mut [f32],
//!     answer: &mut [u8],
//! ) -> Result<u32, EngineError> {
//!     // A corrupted file is an error value here, never a panic.
//!     let Ok(model) = Model::parse(model_bytes) else {
//!         return Err(EngineError::BadInputLength { expected: 0, got: 0 });
//!     };
//!     let config = *model.config();
//!     let mut engine = FloatEngine::new(&config, &model, scratch)?;
//!     // Step by step, so a firmware can report progress; stop when q_halt > 0.
//!     engine.start(tokens, 0)?;
//!     loop {
//!         let step = engine.step();
//!         if step.q_halt > 0.0 || step.step >= config.halt_max_steps {
//!             engine.predict(answer)?;
//!             return Ok(step.step);
//!         }
//!     }
//!     // Or all at once: engine.solve(tokens, 0, HaltMode::EarlyHalt, answer)
//! }
//!
//! static MODEL: &[u8] = trm_nostd::include_model!(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/tests/format_data/tiny_f16.trm"
//! ));
//!
//! let config = *Model::parse(MODEL).unwrap().config();
//! let mut scratch = [0f32; 16 * 1024];
//! assert!(FloatEngine::scratch_len(&config).f32s <= scratch.len());
//! let seq = config.seq_len as usize;
//! let mut tokens = [1u8; 128]; // token 1: a blank cell
//! let mut answer = [0u8; 128];
//! let steps = solve(MODEL, &tokens[..seq], &mut scratch, &mut answer[..seq]).unwrap();
//! assert!(steps >= 1 && steps <= config.halt_max_steps);
//! assert!(answer[..seq].iter().all(|&t| (t as u32) < config.vocab_size));
//! # let _ = (&mut tokens, HaltMode::AllSteps);
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
// `unsafe` only in the SIMD / `asm!` kernels (`fixed::optimized`'s per-architecture modules,
// each allowed there explicitly, every block with a SAFETY comment).
#![deny(unsafe_code)]

pub mod act;
pub mod config;
pub mod digest;
pub mod engine;
pub mod fixed;
pub mod float;
pub mod format;
pub mod maze;
pub mod sudoku;
pub mod task;
pub mod tensor;

pub use act::HaltMode;
pub use config::{Config, ConfigError, PosEncoding};
pub use digest::{digest_f32, digest_tokens};
pub use engine::{
    AnyEngine, Engine, EngineError, Logit, ScratchLen, SolveSummary, StepOutput, StepReport,
};
pub use fixed::FixedEngine;
pub use float::FloatEngine;
pub use format::{FormatError, Model, NumericScheme};
pub use task::Task;
pub use tensor::{DType, LayerTensor, Shape, TensorId, TensorSource, TensorView};
