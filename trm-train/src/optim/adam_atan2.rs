//! AdamATan2: Adam whose division by `sqrt(v) + eps` is replaced by `atan2`, so no epsilon.
//!
//! Followed exactly: the `adam-atan2` PyPI package 0.0.3 (module `adam_atan2`, class
//! `AdamATan2`), which is what the reference imports (`from adam_atan2 import AdamATan2`,
//! `requirements.txt: adam-atan2`). Its CUDA kernel (`csrc/adam_atan2.cu`, `adam_math`) does, per
//! element, in the parameter's "opmath" type (f32 for f32, f16 and bf16 parameters):
//!
//! ```text
//! step += 1                                   (per parameter, counted before the update)
//! p  *= 1 - lr * wd                           (decoupled weight decay, first)
//! m   = lerp(m, g, 1 - beta1)
//! v   = lerp(v, g * g, 1 - beta2)
//! p  -= (lr / (1 - beta1^step)) * atan2(m, sqrt(v) / sqrt(1 - beta2^step))
//! ```
//!
//! with the scalars `lr / bc1`, `1 - lr * wd`, `sqrt(bc2)`, `1 - beta1`, `1 - beta2` computed in
//! f64 and rounded to the opmath type. There is no epsilon and no `a`/`b` scaling: those belong
//! to the different `adam-atan2-pytorch` package (`a = 1.27`, `b = 1`, weight decay after the
//! update), which the reference does not use. The package's defaults are `betas = (0.9, 0.999)`,
//! `weight_decay = 0.01` ([`AdamAtan2Config::default`]); the reference configs pass
//! `beta1 = 0.9`, `beta2 = 0.95`, `weight_decay = 0.1` (`config/cfg_pretrain.yaml`) and set the
//! learning rate every step from the schedule.
//!
//! Here the same arithmetic runs as libtorch tensor ops, so it works on CPU and CUDA alike; the
//! results equal the fused CUDA kernel up to rounding (it fuses some multiply-adds), not bit for
//! bit. Parameters without a gradient are skipped, as in the package (no decay, no step count).

use super::{OptimError, check_non_negative, check_unique_names, is_float, trainable_named};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor, nn::VarStore};

/// The hyperparameters of [`AdamAtan2`] other than the learning rate, which is given per step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamAtan2Config {
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: f64,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: f64,
    /// Decoupled weight decay: each step multiplies parameters by `1 - lr * weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamAtan2Config {
    /// The package's defaults: betas (0.9, 0.999), weight decay 0.01.
    fn default() -> Self {
        AdamAtan2Config {
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.01,
        }
    }
}

impl AdamAtan2Config {
    /// The reference's training values (`config/cfg_pretrain.yaml`): betas (0.9, 0.95), weight
    /// decay 0.1.
    pub fn reference() -> Self {
        AdamAtan2Config {
            beta1: 0.9,
            beta2: 0.95,
            weight_decay: 0.1,
        }
    }

    fn validate(&self) -> Result<(), OptimError> {
        for (what, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(OptimError::BadInput(format!(
                    "{what} must be in [0, 1), got {b}"
                )));
            }
        }
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// The state of one parameter, created at its first update.
#[derive(Debug)]
struct State {
    /// First moment (`exp_avg`), same shape, kind and device as the parameter.
    exp_avg: Tensor,
    /// Second moment (`exp_avg_sq`).
    exp_avg_sq: Tensor,
    /// Updates applied so far.
    step: u64,
}

#[derive(Debug)]
struct Param {
    name: String,
    tensor: Tensor,
    state: Option<State>,
}

/// Suffixes of the state-dict entries of one parameter.
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";
const STEP: &str = "step";

/// The AdamATan2 optimizer over a fixed list of named parameters.
#[derive(Debug)]
pub struct AdamAtan2 {
    config: AdamAtan2Config,
    params: Vec<Param>,
}

impl AdamAtan2 {
    /// An optimizer over `params` (name, tensor); the tensors are handles sharing storage with
    /// the model's variables (`shallow_clone`), updated in place. Names must be unique; they name
    /// the state-dict entries.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamAtan2Config) -> Result<Self, OptimError> {
        config.validate()?;
        check_unique_names(params.iter().map(|(n, _)| n.as_str()))?;
        for (name, t) in &params {
            if !is_float(t.kind()) {
                return Err(OptimError::BadInput(format!(
                    "parameter {name:?} has non-float kind {:?}",
                    t.kind()
                )));
            }
        }
        Ok(AdamAtan2 {
            config,
            params: params
                .into_iter()
                .map(|(name, tensor)| Param {
                    name,
                    tensor,
                    state: None,
                })
                .collect(),
        })
    }

    /// An optimizer over every trainable variable of `vs` (sorted by name), as the reference's
    /// `AdamATan2(model.parameters(), ...)`; buffers such as the puzzle embedding are not included.
    pub fn from_var_store(vs: &VarStore, config: AdamAtan2Config) -> Result<Self, OptimError> {
        Self::new(trainable_named(vs), config)
    }

    /// The hyperparameters.
    pub fn config(&self) -> AdamAtan2Config {
        self.config
    }

    /// The parameter names, in update order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// How many updates parameter `name` has received (`None` for an unknown name).
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.state.as_ref().map_or(0, |s| s.step))
    }

    /// Sets every parameter's gradient to zero (where one is defined).
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// One update of every parameter that has a gradient, with learning rate `lr` (scheduled by
    /// the caller). Runs without autograd.
    pub fn step(&mut self, lr: f64) -> Result<(), OptimError> {
        check_non_negative("learning rate", lr)?;
        let _guard = tch::no_grad_guard();
        let AdamAtan2Config {
            beta1,
            beta2,
            weight_decay,
        } = self.config;
        for p in &mut self.params {
            let grad = p.tensor.f_grad()?;
            if !grad.defined() {
                continue;
            }
            if grad.size() != p.tensor.size() {
                return Err(OptimError::BadInput(format!(
                    "gradient of {:?} has shape {:?}, parameter {:?}",
                    p.name,
                    grad.size(),
                    p.tensor.size()
                )));
            }
            let state = match &mut p.state {
                Some(s) => s,
                None => p.state.insert(State {
                    exp_avg: p.tensor.f_zeros_like()?,
                    exp_avg_sq: p.tensor.f_zeros_like()?,
                    step: 0,
                }),
            };
            state.step += 1;
            // As the package: pow(double beta, float step) in f64, then each scalar rounded to
            // the opmath type when libtorch applies it.
            let t = state.step as f64;
            let bias_correction1 = 1.0 - beta1.powf(t);
            let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
            let coeffs = Coeffs {
                step_size: lr / bias_correction1,
                wd_alpha: 1.0 - lr * weight_decay,
                one_minus_beta1: 1.0 - beta1,
                one_minus_beta2: 1.0 - beta2,
                bias_correction2_sqrt,
            };
            update(
                &mut p.tensor,
                &grad,
                &mut state.exp_avg,
                &mut state.exp_avg_sq,
                &coeffs,
            )?;
        }
        Ok(())
    }

    /// The state as named tensors, detached copies on the CPU: for each parameter `name` that
    /// has been updated, `name.exp_avg`, `name.exp_avg_sq` (parameter shape and kind) and
    /// `name.step` (an i64 scalar). Loading it back with [`AdamAtan2::load_state_dict`] resumes
    /// bit for bit.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>, OptimError> {
        let mut out = Vec::new();
        for p in &self.params {
            let Some(s) = &p.state else { continue };
            let step = i64::try_from(s.step)
                .map_err(|_| OptimError::State(format!("step of {:?} overflows i64", p.name)))?;
            out.push((
                format!("{}.{EXP_AVG}", p.name),
                s.exp_avg.f_detach_copy()?.f_to_device(Device::Cpu)?,
            ));
            out.push((
                format!("{}.{EXP_AVG_SQ}", p.name),
                s.exp_avg_sq.f_detach_copy()?.f_to_device(Device::Cpu)?,
            ));
            out.push((format!("{}.{STEP}", p.name), Tensor::from(step)));
        }
        Ok(out)
    }

    /// Replaces the whole state with `entries` (as written by [`AdamAtan2::state_dict`]; any
    /// device). A parameter without entries starts afresh. Unknown or missing entries, shapes
    /// that differ from the parameter's and steps that are not non-negative integers are errors,
    /// and leave the optimizer unchanged.
    pub fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> Result<(), OptimError> {
        let mut by_name: HashMap<&str, &Tensor> = HashMap::with_capacity(entries.len());
        for (n, t) in entries {
            if by_name.insert(n.as_str(), t).is_some() {
                return Err(OptimError::State(format!("entry {n:?} given twice")));
            }
        }
        let mut states = Vec::with_capacity(self.params.len());
        let mut used = 0usize;
        for p in &self.params {
            let key = |suffix: &str| format!("{}.{suffix}", p.name);
            let (k_m, k_v, k_s) = (key(EXP_AVG), key(EXP_AVG_SQ), key(STEP));
            let found = [
                by_name.get(k_m.as_str()),
                by_name.get(k_v.as_str()),
                by_name.get(k_s.as_str()),
            ];
            let (m, v, s) = match found {
                [None, None, None] => {
                    states.push(None);
                    continue;
                }
                [Some(m), Some(v), Some(s)] => (*m, *v, *s),
                _ => {
                    return Err(OptimError::State(format!(
                        "parameter {:?} needs all of {k_m:?}, {k_v:?}, {k_s:?}",
                        p.name
                    )));
                }
            };
            used += 3;
            let like = |t: &Tensor, k: &str| -> Result<Tensor, OptimError> {
                if t.size() != p.tensor.size() {
                    return Err(OptimError::State(format!(
                        "{k:?} has shape {:?}, parameter {:?}",
                        t.size(),
                        p.tensor.size()
                    )));
                }
                if !is_float(t.kind()) {
                    return Err(OptimError::State(format!(
                        "{k:?} has non-float kind {:?}",
                        t.kind()
                    )));
                }
                Ok(t.f_to_device(p.tensor.device())?
                    .f_to_kind(p.tensor.kind())?
                    .f_detach_copy()?)
            };
            let step = read_step(s, &k_s)?;
            states.push(Some(State {
                exp_avg: like(m, &k_m)?,
                exp_avg_sq: like(v, &k_v)?,
                step,
            }));
        }
        if used != by_name.len() {
            let known: std::collections::HashSet<String> = self
                .params
                .iter()
                .flat_map(|p| [EXP_AVG, EXP_AVG_SQ, STEP].map(|s| format!("{}.{s}", p.name)))
                .collect();
            let mut unknown: Vec<&str> = by_name
                .keys()
                .copied()
                .filter(|k| !known.contains(*k))
                .collect();
            unknown.sort_unstable();
            return Err(OptimError::State(format!("unknown entries {unknown:?}")));
        }
        for (p, s) in self.params.iter_mut().zip(states) {
            p.state = s;
        }
        Ok(())
    }
}

/// Reads a step count: a scalar holding a non-negative integer.
fn read_step(t: &Tensor, key: &str) -> Result<u64, OptimError> {
    if t.numel() != 1 {
        return Err(OptimError::State(format!(
            "{key:?} must be a scalar, has shape {:?}",
            t.size()
        )));
    }
    let x = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    let x = x.f_reshape([1])?.f_double_value(&[0])?;
    if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15) {
        return Err(OptimError::State(format!(
            "{key:?} must be a non-negative integer, got {x}"
        )));
    }
    Ok(x as u64)
}

/// The per-step scalars of one parameter, in f64 (libtorch rounds each to the opmath type).
struct Coeffs {
    step_size: f64,
    wd_alpha: f64,
    one_minus_beta1: f64,
    one_minus_beta2: f64,
    bias_correction2_sqrt: f64,
}

/// The element-wise update of one parameter, in place. Half and bf16 tensors are computed in
/// f32 and stored back, as the package's kernel does.
fn update(
    p: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    c: &Coeffs,
) -> Result<(), OptimError> {
    let kind = p.kind();
    if matches!(kind, Kind::Half | Kind::BFloat16) {
        let mut p32 = p.f_to_kind(Kind::Float)?;
        let mut m32 = m.f_to_kind(Kind::Float)?;
        let mut v32 = v.f_to_kind(Kind::Float)?;
        let g32 = g.f_to_kind(Kind::Float)?;
        update_opmath(&mut p32, &g32, &mut m32, &mut v32, c)?;
        p.f_copy_(&p32)?;
        m.f_copy_(&m32)?;
        v.f_copy_(&v32)?;
        return Ok(());
    }
    let g = if g.kind() == kind {
        g.shallow_clone()
    } else {
        g.f_to_kind(kind)?
    };
    update_opmath(p, &g, m, v, c)
}

/// The update on tensors already in their math type; same order as the package's `adam_math`.
fn update_opmath(
    p: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    c: &Coeffs,
) -> Result<(), OptimError> {
    let _ = p.f_mul_scalar_(c.wd_alpha)?;
    let _ = m.f_lerp_(g, c.one_minus_beta1)?;
    let g2 = g.f_mul(g)?;
    let _ = v.f_lerp_(&g2, c.one_minus_beta2)?;
    let denom = v.f_sqrt()?.f_div_scalar(c.bias_correction2_sqrt)?;
    let delta = m.f_atan2(&denom)?.f_mul_scalar(c.step_size)?;
    let _ = p.f_sub_(&delta)?;
    Ok(())
}
