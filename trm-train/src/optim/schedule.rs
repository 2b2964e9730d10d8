//! The learning-rate schedule of the reference (`pretrain.py`,
//! `cosine_schedule_with_warmup_lr_lambda` and `compute_lr`).
//!
//! With `w` warmup steps and `T` total steps, at step `s`:
//!
//! ```text
//! s <  w:  base_lr * s / max(1, w)
//! s >= w:  base_lr * (min_ratio + max(0, (1 - min_ratio) * 0.5 * (1 + cos(pi * cycles * 2 * p))))
//!          with p = (s - w) / max(1, T - w), cycles = 0.5
//! ```
//!
//! How the reference applies it: `train_batch` first increments the step counter (so the first
//! update uses `s = 1`, and `s` runs to `T`), then sets every optimizer's learning rate to this
//! function of its own base rate: `lr` for AdamATan2, `puzzle_emb_lr` for the puzzle embedding's
//! sign-SGD; warmup, total steps and `lr_min_ratio` are shared. Steps past `T` are not trained.
//! The paper configs use `lr_min_ratio = 1.0`: a constant rate after warmup.

/// The reference's warmup-then-cosine learning rate at `step` (operations in the reference's
/// order, in f64 like Python's floats). `num_cycles` is 0.5 in the reference (half a cosine).
pub fn cosine_schedule_with_warmup_lr(
    step: u64,
    base_lr: f64,
    num_warmup_steps: u64,
    num_training_steps: u64,
    min_ratio: f64,
    num_cycles: f64,
) -> f64 {
    if step < num_warmup_steps {
        return base_lr * step as f64 / num_warmup_steps.max(1) as f64;
    }
    // Python integers: `num_training_steps - num_warmup_steps` may be negative.
    let span = (i128::from(num_training_steps) - i128::from(num_warmup_steps)).max(1);
    let progress = (step - num_warmup_steps) as f64 / span as f64;
    let cosine = (1.0 - min_ratio)
        * 0.5
        * (1.0 + (std::f64::consts::PI * num_cycles * 2.0 * progress).cos());
    base_lr * (min_ratio + cosine.max(0.0))
}

/// The reference's estimate of the number of training steps (`init_train_state`):
/// `int(epochs * total_groups * mean_puzzle_examples / global_batch_size)`, with the integer
/// product exact and the rest in f64, truncated. A zero batch size gives 0.
pub fn total_train_steps(
    epochs: u64,
    total_groups: u64,
    mean_puzzle_examples: f64,
    global_batch_size: u64,
) -> u64 {
    if global_batch_size == 0 {
        return 0;
    }
    let groups = u128::from(epochs) * u128::from(total_groups);
    let steps = groups as f64 * mean_puzzle_examples / global_batch_size as f64;
    if steps.is_finite() && steps > 0.0 {
        // `as` saturates at u64::MAX; truncation towards zero as Python's int().
        steps as u64
    } else {
        0
    }
}

/// The schedule shared by both optimizers: warmup, total steps, floor ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// Linear warmup steps (`lr_warmup_steps`).
    pub warmup_steps: u64,
    /// Total training steps (see [`total_train_steps`]).
    pub total_steps: u64,
    /// The rate at the end, as a fraction of the base rate (`lr_min_ratio`).
    pub min_ratio: f64,
    /// Cosine cycles over the decay (0.5 in the reference: from 1 down to `min_ratio`).
    pub num_cycles: f64,
}

impl CosineSchedule {
    /// The reference's schedule (half a cosine cycle).
    pub fn new(warmup_steps: u64, total_steps: u64, min_ratio: f64) -> Self {
        CosineSchedule {
            warmup_steps,
            total_steps,
            min_ratio,
            num_cycles: 0.5,
        }
    }

    /// The learning rate for an optimizer of base rate `base_lr` at `step` (1 for the first
    /// update, as the reference counts).
    pub fn lr(&self, base_lr: f64, step: u64) -> f64 {
        cosine_schedule_with_warmup_lr(
            step,
            base_lr,
            self.warmup_steps,
            self.total_steps,
            self.min_ratio,
            self.num_cycles,
        )
    }
}
