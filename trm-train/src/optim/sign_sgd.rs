//! Sign-SGD for the sparse puzzle embedding (reference `models/sparse_embedding.py`,
//! `CastedSparseEmbeddingSignSGD_Distributed` and `_sparse_emb_signsgd_dist`).
//!
//! The puzzle embedding table is a buffer, not a trainable parameter: each training step the
//! model reads the batch's rows into a leaf tensor that requires grad, and this optimizer takes
//! that leaf's gradient `[N, D]` with the batch's puzzle identifiers `[N]`:
//!
//! 1. gather ids and gradient rows from every rank (identity in a single process; the reference's
//!    `all_gather_into_tensor`, so every rank sees the same rows and applies the same update);
//! 2. sum the gradient rows per unique id (sorted unique ids, `scatter_add`);
//! 3. for those rows only: `p = p * (1 - lr * wd) - lr * sign(g)`.
//!
//! Every id present in the batch is touched, including rows whose summed gradient is zero: they
//! get the weight decay and no sign step (`sign(0) = 0`). There is no state. Its learning rate is
//! the reference's `puzzle_emb_lr` scheduled like the main one, its weight decay
//! `puzzle_emb_weight_decay`.

use super::{OptimError, check_non_negative, is_float};
use tch::{Kind, Tensor};

/// Gathers the puzzle ids `[N]` and gradient rows `[N, D]` of every rank, concatenated in rank
/// order (`[world * N]`, `[world * N, D]`), as `all_gather_into_tensor` does. A closure
/// `Fn(&Tensor, &Tensor) -> Result<(Tensor, Tensor), OptimError>` is one.
pub trait SparseGradGather {
    /// The ids and gradient rows of all ranks.
    fn all_gather(&self, ids: &Tensor, grads: &Tensor) -> Result<(Tensor, Tensor), OptimError>;
}

impl<F> SparseGradGather for F
where
    F: Fn(&Tensor, &Tensor) -> Result<(Tensor, Tensor), OptimError>,
{
    fn all_gather(&self, ids: &Tensor, grads: &Tensor) -> Result<(Tensor, Tensor), OptimError> {
        self(ids, grads)
    }
}

/// The single-process gather: returns its inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalGather;

impl SparseGradGather for LocalGather {
    fn all_gather(&self, ids: &Tensor, grads: &Tensor) -> Result<(Tensor, Tensor), OptimError> {
        Ok((ids.shallow_clone(), grads.shallow_clone()))
    }
}

/// Sign-SGD with decoupled weight decay over the rows of an embedding table that a batch used.
pub struct SparseSignSgd {
    weight_decay: f64,
    gather: Box<dyn SparseGradGather>,
}

impl std::fmt::Debug for SparseSignSgd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseSignSgd")
            .field("weight_decay", &self.weight_decay)
            .finish_non_exhaustive()
    }
}

impl SparseSignSgd {
    /// A single-process optimizer with decoupled weight decay `weight_decay`.
    pub fn new(weight_decay: f64) -> Result<Self, OptimError> {
        Self::with_gather(weight_decay, LocalGather)
    }

    /// An optimizer whose ids and gradients are first gathered across ranks by `gather`.
    pub fn with_gather(
        weight_decay: f64,
        gather: impl SparseGradGather + 'static,
    ) -> Result<Self, OptimError> {
        check_non_negative("puzzle embedding weight_decay", weight_decay)?;
        Ok(SparseSignSgd {
            weight_decay,
            gather: Box::new(gather),
        })
    }

    /// The weight decay.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    /// Updates, in place, the rows of `weights` `[num_ids, D]` named by this rank's `ids` `[N]`
    /// (any integer kind) from their gradient rows `grads` `[N, D]`, with learning rate `lr`.
    /// Ids out of range are an error, checked before anything is changed.
    pub fn step(
        &self,
        weights: &Tensor,
        ids: &Tensor,
        grads: &Tensor,
        lr: f64,
    ) -> Result<(), OptimError> {
        check_non_negative("puzzle embedding learning rate", lr)?;
        let _guard = tch::no_grad_guard();
        let wsize = weights.size();
        let [rows, dim] = wsize[..] else {
            return Err(OptimError::BadInput(format!(
                "embedding table must be [num_ids, D], got {wsize:?}"
            )));
        };
        if !is_float(weights.kind()) || !is_float(grads.kind()) {
            return Err(OptimError::BadInput(format!(
                "embedding table and gradient must be float, got {:?} and {:?}",
                weights.kind(),
                grads.kind()
            )));
        }
        check_ids_grads(ids, grads, dim)?;
        let (all_ids, all_grads) = self.gather.all_gather(ids, grads)?;
        check_ids_grads(&all_ids, &all_grads, dim)?;
        if all_ids.numel() == 0 {
            return Ok(());
        }
        let all_ids = all_ids
            .f_to_kind(Kind::Int64)?
            .f_to_device(weights.device())?;
        let all_grads = all_grads.f_to_device(weights.device())?;
        let (lo, hi) = (
            all_ids.f_min()?.f_int64_value(&[])?,
            all_ids.f_max()?.f_int64_value(&[])?,
        );
        if lo < 0 || hi >= rows {
            return Err(OptimError::BadInput(format!(
                "puzzle id out of range 0..{rows}: [{lo}, {hi}]"
            )));
        }
        // Sorted unique ids and, for each gathered row, the index of its id among them.
        let (grad_ids, inverse, _) = all_ids.f_internal_unique2(true, true, false)?;
        let unique = grad_ids.size()[0];
        let index = inverse.f_unsqueeze(-1)?.f_expand([-1, dim], false)?;
        let grad = Tensor::f_zeros([unique, dim], (all_grads.kind(), all_grads.device()))?
            .f_scatter_add(0, &index, &all_grads)?;
        let sign = grad.f_sign()?.f_to_kind(weights.kind())?;
        let p = weights.f_index_select(0, &grad_ids)?;
        let p = p
            .f_mul_scalar(1.0 - lr * self.weight_decay)?
            .f_add(&sign.f_mul_scalar(-lr)?)?;
        let mut w = weights.shallow_clone();
        let _ = w.f_index_copy_(0, &grad_ids, &p)?;
        Ok(())
    }
}

/// Checks ids `[N]` (integer) against gradient rows `[N, dim]`.
fn check_ids_grads(ids: &Tensor, grads: &Tensor, dim: i64) -> Result<(), OptimError> {
    if !matches!(
        ids.kind(),
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    ) {
        return Err(OptimError::BadInput(format!(
            "puzzle ids must be integers, got {:?}",
            ids.kind()
        )));
    }
    let (is, gs) = (ids.size(), grads.size());
    if is.len() != 1 || gs.len() != 2 || gs[0] != is[0] || gs[1] != dim {
        return Err(OptimError::BadInput(format!(
            "ids {is:?} and gradient rows {gs:?} do not fit a table of width {dim}"
        )));
    }
    Ok(())
}
