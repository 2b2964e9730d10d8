//! The float engine: the numeric reference of the project.
//!
//! f32 only, `libm` for `exp`, `sqrt`, `pow`, `cos` and `sin`, and a summation order fixed by the
//! code ([`kernels`]), so a run gives the same bits on x86_64, Cortex-M4F and RISC-V. Weights are
//! read in place through a [`TensorSource`](crate::TensorSource) (f32, f16 or bf16; converted to f32 one row at a
//! time), and every buffer is carved from one caller-provided `&mut [f32]` scratch: no heap, and
//! no stack array larger than a few dozen bytes.
//!
//! Semantics follow the reference `TinyRecursiveReasoningModel_ACTV1` (see `DESIGN.md`):
//!
//! - `x = sqrt(D) * cat(puzzle prefix, token embeddings)`; the prefix is the puzzle's
//!   `puzzle_emb_ndim` values zero-padded to `puzzle_emb_len * D` and viewed as
//!   `[puzzle_emb_len, D]`; with learned positions `0.707106781 * (emb + pos)` comes before the
//!   `sqrt(D)` scale.
//! - `net(h, inj)`: `h = h + inj`, then `l_layers` post-norm blocks (weightless RMSNorm): the
//!   token mixer (attention with optional RoPE, or the mlp_t SwiGLU over the sequence axis with the
//!   norm over the sequence), then the channel SwiGLU.
//! - One ACT step ([`Engine::step`](crate::Engine::step)): the schedule of
//!   [`act_step_cycles`](crate::act::act_step_cycles), then
//!   `q_halt, q_continue = q_head(y[0]) + bias`; logits are `lm_head(y)` on the puzzle positions.
//!
//! # Memory
//!
//! [`FloatEngine::scratch_len`](crate::Engine::scratch_len) gives the exact number of f32 the
//! engine needs (x, y, z, one work buffer, the RoPE tables, one converted weight row, and the
//! SwiGLU buffers of a block of [`kernels::ROW_BLOCK`] rows). A larger scratch lets the engine
//! process more rows per weight pass, which is much faster on a host (weights are then streamed
//! once per matrix product); [`FloatEngine::scratch_len_fast`](crate::Engine::scratch_len_fast)
//! gives the size where every product is done in one pass, and adds the weight tile of the
//! x86_64 SIMD kernels (8 weight rows) and, with attention, the scores of every head
//! ([`optimized::attention_len`]). Results are bit-identical for every scratch size. Values
//! checked by the test `float_engine::documented_scratch_sizes`:
//!
//! | config | `scratch_len` (bytes) | `scratch_len_fast` (bytes) |
//! |---|---|---|
//! | `Config::sudoku_mlp_t()` (D=512, L=97) | 858_112 | 8_183_808 |
//! | `Config::sudoku_attention()` (D=512, L=97, RoPE) | 1_305_476 | 2_987_584 |
//! | `Config::sudoku_mlp_t_d128()` (D=128, L=97) | 219_136 | 804_864 |
//!
//! The engine struct itself is about 1 KB (it borrows its weights and its scratch).
//!
//! # Observing a step
//!
//! [`FloatEngine::step_observed`] runs a step while an [`Observer`] sees the values at every
//! place where the fixed-point engine rescales ([`Site`]: SwiGLU gate, up and product,
//! attention q, k, v and scores, pre-norm residuals, block outputs, network inputs, the
//! halting head); the exporter calibrates its fixed-point scales this way.
//! [`Engine::step`](crate::Engine::step) is the same step with [`NoObserver`], which compiles
//! away.
//!
//! # Speed on hosts
//!
//! On x86_64 the matrix products, the SiLU and the softmax run on AVX-512 or AVX2 kernels
//! ([`optimized`], chosen at run time; [`FloatEngine::set_isa`] picks another): blocked over
//! weight rows and activation rows with the accumulators in registers, and bit-identical to the
//! portable kernels that Cortex-M and RISC-V run: every dot product keeps the lane order, with
//! separate vector multiplies and adds (never fused multiply-add, which rounds once instead of
//! twice and would change the bits).
//!
//! [`FloatEngine::set_arith`] with [`kernels::Arith::Fused`] opts into fused multiply-adds in
//! the products and attention: one instruction per vector multiply-accumulate instead of two,
//! about 1.5x faster on x86_64. It is its own bit-exact specification (the portable kernels
//! with `libm::fmaf`, the same bits on every target), not the default's: golden files, the
//! boards and `verify` use the default.
//!
//! The engine lives in `engine` ([`FloatEngine`]), its weights bound in place in [`weights`],
//! its scratch carving in `layout`, its network forward in `network` (over [`kernels`] and
//! [`optimized`]), and the observer interface in `observer`.

pub mod kernels;
pub mod optimized;
pub mod weights;

mod engine;
#[cfg(feature = "std")]
mod host;
mod layout;
mod network;
mod observer;

pub use engine::FloatEngine;
#[cfg(feature = "std")]
pub use host::{NameError, OwnedSource, OwnedWeights};
pub use observer::{NoObserver, Observer, Site, Sublayer, Tap};
pub use weights::MatRef;

/// The learned-position scale: the reference writes `0.707106781`, which rounds to the same f32
/// as 1/sqrt(2).
pub const LEARNED_POS_SCALE: f32 = core::f32::consts::FRAC_1_SQRT_2;
