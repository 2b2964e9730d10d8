//! The exponential moving average of the weights (reference `models/ema.py`, `EMAHelper`, as
//! `pretrain.py` uses it when `ema: True`).
//!
//! - Registered once, before training: the shadow starts as a copy of every parameter that
//!   requires grad (`named_parameters()` filtered by `requires_grad`). Buffers (H_init, L_init)
//!   and the puzzle embedding (a buffer trained by sign-SGD) are not averaged.
//! - After every training batch: `shadow = (1 - mu) * p + mu * shadow` (`ema_rate`, 0.999).
//! - Evaluation and checkpoints use a copy of the model whose averaged parameters are replaced by
//!   the shadow (`ema_copy`); its buffers, including the puzzle embedding, are the live ones. So
//!   with EMA on, the reference's checkpoint files hold the EMA weights. [`Ema::with_ema`] gives
//!   the same without a second model: it copies the shadow into the variables, runs the
//!   closure, and copies the trained values back.

use super::{OptimError, check_unique_names, is_float, trainable_named};
use std::collections::HashMap;
use tch::{Device, Tensor, nn::VarStore};

#[derive(Debug)]
struct Entry {
    name: String,
    /// The live variable (shares storage with the model's).
    param: Tensor,
    /// The average.
    shadow: Tensor,
}

/// The EMA of a fixed set of named parameters.
#[derive(Debug)]
pub struct Ema {
    mu: f64,
    entries: Vec<Entry>,
}

impl Ema {
    /// Registers every trainable variable of `vs` (sorted by name) with decay `mu`: the
    /// reference's `EMAHelper(mu).register(model)`.
    pub fn register(vs: &VarStore, mu: f64) -> Result<Self, OptimError> {
        Self::new(trainable_named(vs), mu)
    }

    /// Registers the given parameters (handles sharing storage with the model's variables);
    /// each shadow starts as a copy of its parameter.
    pub fn new(params: Vec<(String, Tensor)>, mu: f64) -> Result<Self, OptimError> {
        if !(0.0..=1.0).contains(&mu) {
            return Err(OptimError::BadInput(format!(
                "EMA rate must be in [0, 1], got {mu}"
            )));
        }
        check_unique_names(params.iter().map(|(n, _)| n.as_str()))?;
        let mut entries = Vec::with_capacity(params.len());
        for (name, param) in params {
            if !is_float(param.kind()) {
                return Err(OptimError::BadInput(format!(
                    "parameter {name:?} has non-float kind {:?}",
                    param.kind()
                )));
            }
            let shadow = param.f_detach_copy()?;
            entries.push(Entry {
                name,
                param,
                shadow,
            });
        }
        Ok(Ema { mu, entries })
    }

    /// The decay rate `mu`.
    pub fn mu(&self) -> f64 {
        self.mu
    }

    /// The averaged parameters' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The shadow of parameter `name`.
    pub fn shadow(&self, name: &str) -> Option<&Tensor> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.shadow)
    }

    /// One averaging step, after an optimizer step: `shadow = (1 - mu) * p + mu * shadow`.
    pub fn update(&mut self) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        for e in &mut self.entries {
            let avg = e
                .param
                .f_detach()?
                .f_mul_scalar(1.0 - self.mu)?
                .f_add(&e.shadow.f_mul_scalar(self.mu)?)?;
            e.shadow.f_copy_(&avg)?;
        }
        Ok(())
    }

    /// Overwrites the parameters with their shadows (the reference's `EMAHelper.ema`). The
    /// trained values are lost; see [`Ema::with_ema`] to keep them.
    pub fn copy_to_params(&self) -> Result<(), OptimError> {
        let _guard = tch::no_grad_guard();
        for e in &self.entries {
            e.param.shallow_clone().f_copy_(&e.shadow)?;
        }
        Ok(())
    }

    /// Runs `f` with the EMA weights in the model's variables (for evaluation or saving a
    /// checkpoint), then restores the trained weights bit for bit once `f` returns (an `f`
    /// that returns a `Result` has it passed through). If copying the shadow in fails, `f` is
    /// not run; if the restore fails, the error is returned and the variables may hold EMA
    /// values. A panic in `f` leaves the EMA values in place.
    pub fn with_ema<R>(&self, f: impl FnOnce() -> R) -> Result<R, OptimError> {
        let backup = {
            let _guard = tch::no_grad_guard();
            self.entries
                .iter()
                .map(|e| e.param.f_detach_copy())
                .collect::<Result<Vec<_>, _>>()?
        };
        self.copy_to_params()?;
        let out = f();
        let _guard = tch::no_grad_guard();
        for (e, b) in self.entries.iter().zip(&backup) {
            e.param.shallow_clone().f_copy_(b)?;
        }
        Ok(out)
    }

    /// The shadows as named tensors (parameter names), detached copies on the CPU.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        self.entries
            .iter()
            .map(|e| {
                Ok((
                    e.name.clone(),
                    e.shadow.f_detach_copy()?.f_to_device(Device::Cpu)?,
                ))
            })
            .collect()
    }

    /// Replaces every shadow with the entry of the same name (any device; converted to the
    /// parameter's kind). Every parameter needs exactly one entry of its shape, and no other
    /// entry may be present; on error nothing changes.
    pub fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> Result<(), OptimError> {
        let mut by_name: HashMap<&str, &Tensor> = HashMap::with_capacity(entries.len());
        for (n, t) in entries {
            if by_name.insert(n.as_str(), t).is_some() {
                return Err(OptimError::State(format!("entry {n:?} given twice")));
            }
        }
        let mut shadows = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let t = by_name.remove(e.name.as_str()).ok_or_else(|| {
                OptimError::State(format!("no EMA entry for parameter {:?}", e.name))
            })?;
            if t.size() != e.param.size() || !is_float(t.kind()) {
                return Err(OptimError::State(format!(
                    "EMA entry {:?} is {:?} {:?}, parameter {:?}",
                    e.name,
                    t.kind(),
                    t.size(),
                    e.param.size()
                )));
            }
            shadows.push(
                t.f_to_device(e.param.device())?
                    .f_to_kind(e.param.kind())?
                    .f_detach_copy()?,
            );
        }
        if !by_name.is_empty() {
            let mut unknown: Vec<&str> = by_name.into_keys().collect();
            unknown.sort_unstable();
            return Err(OptimError::State(format!(
                "unknown EMA entries {unknown:?}"
            )));
        }
        for (e, s) in self.entries.iter_mut().zip(shadows) {
            e.shadow = s;
        }
        Ok(())
    }
}
