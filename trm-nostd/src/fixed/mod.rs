//! The fixed-point engine: int8 (or int16) weights, int16 activations, integer-only evaluation.
//!
//! Weight matrices are int8 per output channel; a file of scheme
//! [`FIXED_I16_I16`](crate::format::FIXED_I16_I16) may store any of them as int16 instead
//! (twice the bytes, 256 times finer steps), which the engine runs through the int16 x int16
//! kernel ([`optimized::dot_w16_a16`]); everything else is the same.
//!
//! - [`kernels`]: the integer reference kernels, the specification of the integer path (one
//!   rounding rule, documented accumulator bounds);
//! - [`optimized`]: AVX2 / AVX-512 / Arm DSP versions of the two hot kernels, equal to the
//!   reference bit for bit, which the engine calls (selected at compile or run time);
//! - [`tables`]: the quantization tables a `Fixed` `.trm` file (format version 2) carries;
//! - `prepare` (feature `std`): the export-time conversions from real scales to integers;
//! - [`FixedEngine`] (`engine`): the same recursion as the float engine
//!   ([`Recurrence`](crate::act::Recurrence)) behind the same [`Engine`](crate::Engine)
//!   interface, integer only; its weights bound in place (`weights`), its scratch carving
//!   (`layout`, [`FAST_ROWS`]) and its network forward (`network`).
//!
//! # Numbers
//!
//! Every activation has a per-tensor scale fixed at export (real value = integer * scale):
//!
//! - the states y, z and every block output are RMSNorm outputs at `sqrt(n) / 32767`
//!   (`|v| <= sqrt(n)` always holds after a weightless RMSNorm, so these never saturate);
//!   `H_init`/`L_init` are stored at the same state scale;
//! - x at a scale covering the largest embedding row (exact bound, computed at export);
//! - the network input `z + y + x` (or `y + z`) at a calibrated scale, requantized with one
//!   rounding ([`kernels::Requant2`]);
//! - SwiGLU gate, up and product, attention q, k, v: calibrated scales (int16);
//! - residual sums `h + delta` in `i32` at the block input's scale, clamped to
//!   [`kernels::RESIDUAL_MAX`], then [`kernels::rms_norm`];
//! - logits and the halting logits as `i32` at calibrated scales.
//!
//! Scales never appear at run time: the exporter folds them into integer multipliers and shifts
//! ([`kernels::Requant`]), SiLU tables and Q15 RoPE tables. The only float-typed items of this
//! module are the scales returned for host-side dequantization ([`FixedEngine::state_scale`],
//! [`FixedEngine::logit_scale`]), read from the file's bits without arithmetic.
//!
//! # Memory
//!
//! [`FixedEngine::scratch_len`](crate::Engine::scratch_len) gives the `i16` and `i32` values the
//! engine needs: x, y, z (`3 L D` i16), one work buffer (mlp_t `L D`, attention `3 L D`), one
//! SwiGLU row (`2 inter`), one head vector, and in i32 one residual row (`max(D, L)`) and one row
//! of attention scores. A larger scratch (up to
//! [`FixedEngine::scratch_len_fast`](crate::Engine::scratch_len_fast)) holds the SwiGLU values
//! and residuals of a block of rows (up to [`FAST_ROWS`]), and each weight row is then applied
//! to the whole block before the next one, so the weights stream from memory once per block
//! instead of once per row; it also holds the blocked matrix products' scratch (a weight panel
//! widened once per product and the packed activation rows), without which the products run
//! one output at a time: on x86_64 the fast scratch runs a D=512 mlp_t step about seven times
//! faster (`fixed_count sudoku_mlp_t avx512-vnni 2 min` against the same without `min`). The
//! results are identical for every scratch size (test
//! `fixed_kernels_simd::row_blocks_change_only_the_speed`).
//!
//! # Integer only
//!
//! Loading a model computes sizes from the config
//! ([`Config::mlp_inter`](crate::Config::mlp_inter) applies the reference's float rule to the
//! `expansion` field, once); from [`Engine::start`](crate::Engine::start) on, every operation
//! (`start`, `step`, `logits`, `predict`, `solve`) is integer arithmetic: embeddings are int16
//! table reads, the halting decision is the sign of the integer `q_halt` logit
//! ([`kernels::q_halt_positive`]), answers are the integer argmax with ties to the lowest index.
pub mod kernels;
pub mod optimized;
#[cfg(feature = "std")]
pub mod prepare;
pub mod tables;

mod engine;
mod layout;
mod network;
mod weights;

pub use engine::FixedEngine;
pub use layout::FAST_ROWS;
