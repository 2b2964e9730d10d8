//! The loss head of ACT training, following the reference's `ACTLossHead`
//! (`models/losses.py`) operation by operation.
//!
//! Shapes: B batch, S = `seq_len` puzzle tokens, V = `vocab_size`.
//!
//! - token loss: stablemax cross entropy computed in f64 (or softmax cross entropy in f32),
//!   labels equal to [`IGNORE_LABEL_ID`] carry no loss; each sequence's loss is divided by its
//!   number of valid labels (at least 1) and the whole batch summed;
//! - `q_halt` loss: binary cross entropy with logits against "every valid label predicted",
//!   summed over the batch;
//! - `q_continue` loss (only when the ACT continue head is trained): binary cross entropy with
//!   logits against the bootstrapped target, summed;
//! - total = lm + 0.5 (q_halt + q_continue). The caller scales it by 1 / global batch size
//!   before `backward`, as `pretrain.py` does.
//!
//! Metrics are sums over the batch, counted only for sequences that halted in this step and
//! have at least one valid label, exactly as the reference reports them before reduction.

use super::TrainError;
use tch::{Kind, Reduction, Tensor};

/// The label value that carries no loss and counts in no metric (the reference's
/// `IGNORE_LABEL_ID`). Datasets store their own `ignore_label_id` (0 in every reference
/// dataset); the data loader maps it to this value, as `puzzle_dataset.py` does.
pub const IGNORE_LABEL_ID: i64 = -100;

/// The reference's epsilon in `s(x) = 1 / (1 - x + eps)` for negative `x`.
const STABLEMAX_EPS: f64 = 1e-30;

/// Which token cross entropy to use (`arch.loss.loss_type` in the reference configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossKind {
    /// `stablemax_cross_entropy`: `s(x) = x + 1` for x >= 0, `1 / (1 - x)` for x < 0,
    /// probabilities `s(x) / sum s(x)`, computed in f64. The paper's choice.
    #[default]
    Stablemax,
    /// `softmax_cross_entropy`: the usual cross entropy, computed in f32.
    Softmax,
}

impl LossKind {
    /// The kind named by a reference `loss_type` (`stablemax_cross_entropy`,
    /// `softmax_cross_entropy`).
    pub fn from_reference_name(name: &str) -> Option<Self> {
        match name {
            "stablemax_cross_entropy" => Some(LossKind::Stablemax),
            "softmax_cross_entropy" => Some(LossKind::Softmax),
            _ => None,
        }
    }
}

/// `log(s(x) / sum s(x))` over the last axis (computed in the element type of `x`).
pub fn log_stablemax(x: &Tensor) -> Result<Tensor, TrainError> {
    let negative = x.f_lt(0.0)?;
    // 1 / (1 - x + eps) where x < 0, x + 1 elsewhere.
    let below = x
        .f_neg()?
        .f_add_scalar(1.0)?
        .f_add_scalar(STABLEMAX_EPS)?
        .f_reciprocal()?;
    let above = x.f_add_scalar(1.0)?;
    let s = below.f_where_self(&negative, &above)?;
    let total = s.f_sum_dim_intlist(-1, true, None::<Kind>)?;
    Ok(s.f_div(&total)?.f_log()?)
}

/// Per-token cross entropy `[B, S]` of `logits` `[B, S, V]` against `labels` `[B, S]`
/// (integer, [`IGNORE_LABEL_ID`] where there is no target): 0 at ignored positions.
/// Stablemax yields f64, softmax f32.
pub fn token_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    kind: LossKind,
) -> Result<Tensor, TrainError> {
    let labels = labels.f_to_kind(Kind::Int64)?;
    let valid = labels.f_ne(IGNORE_LABEL_ID)?;
    match kind {
        LossKind::Stablemax => {
            let logprobs = log_stablemax(&logits.f_to_kind(Kind::Double)?)?;
            let index = labels.f_where_scalarother(&valid, 0)?.f_unsqueeze(-1)?;
            let picked = logprobs.f_gather(-1, &index, false)?.f_squeeze_dim(-1)?;
            Ok(picked.f_where_scalarother(&valid, 0.0)?.f_neg()?)
        }
        LossKind::Softmax => {
            let v = *logits.size().last().unwrap_or(&0);
            // reshape, not view: the logits are a slice of the sequence axis.
            let flat = logits.f_to_kind(Kind::Float)?.f_reshape([-1, v])?;
            let loss = flat.f_cross_entropy_loss(
                &labels.f_reshape([-1])?,
                None::<Tensor>,
                Reduction::None,
                IGNORE_LABEL_ID,
                0.0,
            )?;
            Ok(loss.f_reshape(labels.size())?)
        }
    }
}

/// Binary cross entropy with logits, summed (`F.binary_cross_entropy_with_logits(...,
/// reduction="sum")`).
pub fn bce_with_logits_sum(logits: &Tensor, targets: &Tensor) -> Result<Tensor, TrainError> {
    Ok(logits.f_binary_cross_entropy_with_logits(
        &targets.f_to_kind(logits.kind())?,
        None::<Tensor>,
        None::<Tensor>,
        Reduction::Sum,
    )?)
}

/// What the loss head reads from one ACT step.
#[derive(Debug)]
pub struct LossInputs<'a> {
    /// Token logits `[B, S, V]` (with gradient).
    pub logits: &'a Tensor,
    /// Halting logits, f32 `[B]` (with gradient).
    pub q_halt: &'a Tensor,
    /// Continue logits, f32 `[B]` (with gradient).
    pub q_continue: &'a Tensor,
    /// The bootstrapped continue target, `sigmoid` already applied, `[B]`; `None` when the
    /// continue head is not trained (`no_ACT_continue`).
    pub target_q_continue: Option<&'a Tensor>,
    /// Labels `[B, S]` of the data the step ran on, [`IGNORE_LABEL_ID`] where ignored.
    pub labels: &'a Tensor,
    /// Which sequences halted in this step, bool `[B]`.
    pub halted: &'a Tensor,
    /// ACT steps taken by each sequence, counting this one, integer `[B]`.
    pub steps: &'a Tensor,
}

/// The metrics of one step, as 0-dim detached tensors on the model's device (sums over the
/// batch, before any reduction across ranks or division; see [`Metrics::reduced`]).
#[derive(Debug)]
pub struct Metrics {
    /// Sequences that halted in this step with at least one valid label (int64).
    pub count: Tensor,
    /// Sum over counted sequences of their fraction of correct tokens (f32).
    pub accuracy: Tensor,
    /// Counted sequences whose every valid token is correct (int64).
    pub exact_accuracy: Tensor,
    /// Counted sequences where `q_halt >= 0` agrees with "exactly correct" (int64).
    pub q_halt_accuracy: Tensor,
    /// Sum of the ACT step counts of counted sequences (int64).
    pub steps: Tensor,
    /// The token loss of the whole batch (f64 for stablemax, f32 for softmax).
    pub lm_loss: Tensor,
    /// The q_halt loss of the whole batch (f32).
    pub q_halt_loss: Tensor,
    /// The q_continue loss of the whole batch, when the continue head is trained.
    pub q_continue_loss: Option<Tensor>,
}

impl Metrics {
    /// The metrics as `(name, tensor)` in the reference's sorted key order (the order
    /// `pretrain.py` stacks them for `dist.reduce`).
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let mut v = vec![
            ("accuracy", &self.accuracy),
            ("count", &self.count),
            ("exact_accuracy", &self.exact_accuracy),
            ("lm_loss", &self.lm_loss),
        ];
        if let Some(q) = &self.q_continue_loss {
            v.push(("q_continue_loss", q));
        }
        v.push(("q_halt_accuracy", &self.q_halt_accuracy));
        v.push(("q_halt_loss", &self.q_halt_loss));
        v.push(("steps", &self.steps));
        v
    }

    /// All metrics stacked into one f64 vector in [`Metrics::named`] order, ready for a sum
    /// across ranks.
    pub fn stacked(&self) -> Result<Tensor, TrainError> {
        let parts = self
            .named()
            .into_iter()
            .map(|(_, t)| t.f_to_kind(Kind::Double))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::f_stack(&parts, 0)?)
    }

    /// The raw sums as host numbers, in [`Metrics::named`] order (synchronises the device).
    pub fn values(&self) -> Result<Vec<(&'static str, f64)>, TrainError> {
        self.named()
            .into_iter()
            .map(|(n, t)| Ok((n, t.f_double_value(&[])?)))
            .collect()
    }

    /// The metrics as `pretrain.py` logs them: names ending in `loss` divided by the global
    /// batch size, the others by `max(count, 1)`. `sums` are raw sums in [`Metrics::named`]
    /// order (from [`Metrics::values`], or summed across ranks).
    pub fn reduced(sums: &[(&'static str, f64)], global_batch_size: usize) -> Vec<(String, f64)> {
        let count = sums
            .iter()
            .find(|(n, _)| *n == "count")
            .map_or(0.0, |(_, v)| *v)
            .max(1.0);
        sums.iter()
            .map(|(n, v)| {
                let div = if n.ends_with("loss") {
                    global_batch_size.max(1) as f64
                } else {
                    count
                };
                (format!("train/{n}"), v / div)
            })
            .collect()
    }
}

/// The reference's `ACTLossHead` on one step's outputs: the total loss (0-dim, with gradient,
/// not yet divided by the batch size) and the metrics.
pub fn act_loss(inputs: &LossInputs<'_>, kind: LossKind) -> Result<(Tensor, Metrics), TrainError> {
    let logits = inputs.logits;
    let labels = inputs.labels.f_to_kind(Kind::Int64)?;
    let (size_l, size_y) = (logits.size(), labels.size());
    if size_l.len() != 3 || size_y.len() != 2 || size_l[..2] != size_y[..] {
        return Err(TrainError::BadInput(format!(
            "logits {size_l:?} and labels {size_y:?} do not agree"
        )));
    }

    let (divisor, seq_correct, metrics_partial) = {
        let _no_grad = tch::no_grad_guard();
        let mask = labels.f_ne(IGNORE_LABEL_ID)?;
        let counts = mask.f_sum_dim_intlist(-1, false, Kind::Int64)?;
        let divisor = counts.f_clamp_min(1)?.f_unsqueeze(-1)?;
        let preds = logits.f_argmax(-1, false)?;
        let is_correct = mask.f_logical_and(&preds.f_eq_tensor(&labels)?)?;
        let seq_correct = is_correct
            .f_sum_dim_intlist(-1, false, Kind::Int64)?
            .f_eq_tensor(&counts)?;
        let valid = inputs.halted.f_logical_and(&counts.f_gt(0)?)?;

        let count = valid.f_sum(Kind::Int64)?;
        let accuracy = is_correct
            .f_to_kind(Kind::Float)?
            .f_div(&divisor)?
            .f_sum_dim_intlist(-1, false, None::<Kind>)?
            .f_where_scalarother(&valid, 0.0)?
            .f_sum(None::<Kind>)?;
        let exact_accuracy = valid.f_logical_and(&seq_correct)?.f_sum(Kind::Int64)?;
        let q_agrees = inputs.q_halt.f_ge(0.0)?.f_eq_tensor(&seq_correct)?;
        let q_halt_accuracy = valid.f_logical_and(&q_agrees)?.f_sum(Kind::Int64)?;
        let steps = inputs
            .steps
            .f_where_scalarother(&valid, 0)?
            .f_sum(Kind::Int64)?;
        (
            divisor,
            seq_correct,
            (count, accuracy, exact_accuracy, q_halt_accuracy, steps),
        )
    };

    let lm_loss = token_cross_entropy(logits, &labels, kind)?
        .f_div(&divisor)?
        .f_sum(None::<Kind>)?;
    let q_halt_loss = bce_with_logits_sum(inputs.q_halt, &seq_correct)?;
    let mut heads = q_halt_loss.shallow_clone();
    let q_continue_loss = match inputs.target_q_continue {
        Some(target) => {
            let l = bce_with_logits_sum(inputs.q_continue, target)?;
            heads = heads.f_add(&l)?;
            Some(l)
        }
        None => None,
    };
    let total = lm_loss.f_add(&heads.f_mul_scalar(0.5)?)?;

    let (count, accuracy, exact_accuracy, q_halt_accuracy, steps) = metrics_partial;
    let metrics = Metrics {
        count,
        accuracy,
        exact_accuracy,
        q_halt_accuracy,
        steps,
        lm_loss: lm_loss.f_detach()?,
        q_halt_loss: q_halt_loss.f_detach()?,
        q_continue_loss: q_continue_loss.map(|t| t.f_detach()).transpose()?,
    };
    Ok((total, metrics))
}
