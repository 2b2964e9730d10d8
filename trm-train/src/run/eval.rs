//! Evaluation: full-depth ACT inference on a test split, with the reference's metrics
//! (`pretrain.py` `evaluate`).
//!
//! Every test batch starts from the initial carry and runs `halt_max_steps` ACT steps (in eval
//! mode the reference halts a sequence only at its last step). The loss head's metrics of the
//! final step are summed per set, then divided by the set's count of non-padding examples:
//! `accuracy`, `exact_accuracy`, `q_halt_accuracy`, `steps`, `lm_loss`, `q_halt_loss` (the
//! reference divides the losses by the count too in evaluation).
//!
//! [`evaluate_with`] also feeds the config's evaluators ([`super::evaluators`], e.g. ARC) with
//! every batch's predictions, puzzle identifiers, inputs and halting logits, and reports their
//! metrics after the loss head's.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::RunError;
use super::evaluators::{EvaluatorResult, Evaluators};
use crate::data::PuzzleDataset;
use crate::dist::ProcessGroup;
use crate::model::Trm;
use crate::train::{LossInputs, LossKind, act_loss};

/// The metrics of one set (`all`, `all1`, ...), divided by its example count.
#[derive(Debug, Clone, PartialEq)]
pub struct SetMetrics {
    /// The set name.
    pub set: String,
    /// Non-padding examples evaluated.
    pub count: f64,
    /// `(metric, value)` in the reference's sorted key order, `count` left out.
    pub metrics: Vec<(String, f64)>,
}

impl SetMetrics {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// What an evaluation produced.
#[derive(Debug)]
pub struct EvalOutput {
    /// Per set, in dataset order.
    pub sets: Vec<SetMetrics>,
    /// Requested outputs (`inputs`, `labels`, `puzzle_identifiers`, `preds`, `q_halt_logits`,
    /// `logits`), concatenated over batches (padding rows included, as the reference), on the CPU.
    pub saved: Vec<(String, Tensor)>,
    /// What the config's evaluators report (e.g. ARC pass@K and its submission), on rank 0.
    pub evaluators: Vec<EvaluatorResult>,
}

impl EvalOutput {
    /// Flat `(set/metric, value)` pairs, as the reference logs them, then the evaluators'
    /// metrics (`ARC/pass@K`).
    pub fn flat(&self) -> Vec<(String, f64)> {
        self.sets
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |(n, v)| (format!("{}/{n}", s.set), *v))
            })
            .chain(
                self.evaluators
                    .iter()
                    .flat_map(|e| e.metrics.iter().cloned()),
            )
            .collect()
    }
}

/// The outputs that evaluation can save (`eval_save_outputs`).
pub const SAVABLE_OUTPUTS: [&str; 6] = [
    "inputs",
    "labels",
    "puzzle_identifiers",
    "preds",
    "q_halt_logits",
    "logits",
];

/// Evaluates `model` on every batch of `ds` (a test-mode dataset) with `halt_max_steps` ACT steps
/// per batch. `save` names outputs to keep (see [`SAVABLE_OUTPUTS`]; others are ignored).
pub fn evaluate(
    model: &Trm,
    ds: &mut PuzzleDataset,
    loss: LossKind,
    device: Device,
    save: &[String],
) -> Result<EvalOutput, RunError> {
    evaluate_with(model, ds, loss, device, save, None, None)
}

/// The metric names of evaluation, in [`crate::train::Metrics::named`] order (evaluation has
/// no `q_continue_loss`).
const EVAL_METRICS: [&str; 7] = [
    "accuracy",
    "count",
    "exact_accuracy",
    "lm_loss",
    "q_halt_accuracy",
    "q_halt_loss",
    "steps",
];

/// Per-set metric sums and saved outputs, before the division by the counts.
struct RawEval {
    set_names: Vec<String>,
    sums: BTreeMap<String, Vec<(&'static str, f64)>>,
    saved: BTreeMap<String, Vec<Tensor>>,
}

/// [`evaluate`] on one rank's shard of every test batch (the dataset opened with this rank and
/// world size), with `pg`: the metric sums are reduced to rank 0 and the saved outputs gathered
/// there in the global batch order (the order a single process saves them in). Rank 0 gets the
/// full result; the other ranks an [`EvalOutput`] without sets or outputs. A collective: every
/// rank must call it. Without `pg`, exactly [`evaluate`].
pub fn evaluate_dist(
    model: &Trm,
    ds: &mut PuzzleDataset,
    loss: LossKind,
    device: Device,
    save: &[String],
    pg: Option<&ProcessGroup>,
) -> Result<EvalOutput, RunError> {
    evaluate_with(model, ds, loss, device, save, pg, None)
}

/// [`evaluate_dist`] that also feeds `evaluators` with every test batch (see
/// [`Evaluators::update`]; begun with [`Evaluators::begin_eval`]) and reports their results
/// in [`EvalOutput::evaluators`] on rank 0.
pub fn evaluate_with(
    model: &Trm,
    ds: &mut PuzzleDataset,
    loss: LossKind,
    device: Device,
    save: &[String],
    pg: Option<&ProcessGroup>,
    mut evaluators: Option<&mut Evaluators>,
) -> Result<EvalOutput, RunError> {
    if let Some(ev) = evaluators.as_deref_mut() {
        ev.begin_eval();
    }
    let raw = evaluate_sums(model, ds, loss, device, save, pg, evaluators.as_deref_mut())?;
    let results = evaluators.map_or_else(Vec::new, |ev| ev.results());
    let Some(pg) = pg else {
        let mut out = finish(raw.set_names, raw.sums, raw.saved)?;
        out.evaluators = results;
        return Ok(out);
    };
    // [sets, metrics] sums in a fixed order on every rank (zeros for a set this rank did not see).
    let mut flat = Vec::with_capacity(raw.set_names.len() * EVAL_METRICS.len());
    for set in &raw.set_names {
        let vals = raw.sums.get(set);
        for m in EVAL_METRICS {
            let v = vals
                .and_then(|v| v.iter().find(|(n, _)| *n == m))
                .map_or(0.0, |(_, v)| *v);
            flat.push(v);
        }
        if let Some(v) = vals
            && let Some((n, _)) = v.iter().find(|(n, _)| !EVAL_METRICS.contains(n))
        {
            return Err(RunError::Invalid(format!(
                "evaluation metric {n} is not known to the distributed reduction"
            )));
        }
    }
    let summed = pg.reduce_sum_to(&Tensor::from_slice(&flat), 0)?;
    let summed = Vec::<f64>::try_from(&summed.f_to_device(Device::Cpu)?)?;
    // Saved outputs: each rank's rows are its batches one after the other (batch `b` has the
    // same row count on every rank, smaller for a set smaller than one global batch); gathered,
    // they are rank-major, and the global order is batch-major: for each batch, every rank's
    // rows of it.
    let world = pg.world_size() as i64;
    let mut saved = BTreeMap::new();
    for (key, parts) in raw.saved {
        let mine = Tensor::f_cat(&parts, 0)?;
        let all = pg.all_gather_cat(&mine)?;
        let sizes: Vec<i64> = parts
            .iter()
            .map(|t| t.size().first().copied().unwrap_or(0))
            .collect();
        let per_rank: i64 = sizes.iter().sum();
        let rows = all.size().first().copied().unwrap_or(0);
        if sizes.is_empty() || rows != world * per_rank {
            return Err(RunError::Invalid(format!(
                "saved output {key}: {rows} rows do not split into {world} ranks x {} batches \
                 of {per_rank} rows in all",
                sizes.len()
            )));
        }
        let mut pieces = Vec::with_capacity(sizes.len() * world as usize);
        let mut offset = 0;
        for &n in &sizes {
            for r in 0..world {
                pieces.push(all.f_narrow(0, r * per_rank + offset, n)?);
            }
            offset += n;
        }
        saved.insert(key, vec![Tensor::f_cat(&pieces, 0)?]);
    }
    if pg.rank() != 0 {
        return Ok(EvalOutput {
            sets: Vec::new(),
            saved: Vec::new(),
            evaluators: Vec::new(),
        });
    }
    let mut sums = BTreeMap::new();
    for (i, set) in raw.set_names.iter().enumerate() {
        let row = &summed[i * EVAL_METRICS.len()..(i + 1) * EVAL_METRICS.len()];
        // A set no rank saw is left out, as in one process.
        if row.iter().all(|v| *v == 0.0) {
            continue;
        }
        sums.insert(
            set.clone(),
            EVAL_METRICS
                .iter()
                .copied()
                .zip(row.iter().copied())
                .collect(),
        );
    }
    let mut out = finish(raw.set_names, sums, saved)?;
    out.evaluators = results;
    Ok(out)
}

/// Runs every test batch: the metric sums and saved outputs of this process's rows, and the
/// rows fed to `evaluators` (a collective per batch with `pg`).
fn evaluate_sums(
    model: &Trm,
    ds: &mut PuzzleDataset,
    loss: LossKind,
    device: Device,
    save: &[String],
    pg: Option<&ProcessGroup>,
    mut evaluators: Option<&mut Evaluators>,
) -> Result<RawEval, RunError> {
    let _no_grad = tch::no_grad_guard();
    let steps = model.config().halt_max_steps;
    let set_names: Vec<String> = ds.set_names().map(str::to_owned).collect();
    let mut sums: BTreeMap<String, Vec<(&'static str, f64)>> = BTreeMap::new();
    let mut saved: BTreeMap<String, Vec<Tensor>> = BTreeMap::new();
    for item in ds.iter() {
        let item = item?;
        let batch = item.batch.to_device(device)?;
        let b = batch.inputs.size().first().copied().unwrap_or(0);
        let rows = model.puzzle_rows(&batch.puzzle_identifiers)?;
        let x = model.input_embeddings(&batch.inputs, rows.as_ref())?;
        let mut carry = model.initial_carry(b)?;
        let mut last = None;
        for _ in 0..steps {
            let (c, out) = model.act_step(&carry, &x)?;
            carry = c;
            last = Some(out);
        }
        let out = last.ok_or_else(|| RunError::Invalid("halt_max_steps is 0".into()))?;
        let halted = Tensor::f_ones([b], (Kind::Bool, device))?;
        let step_counts = Tensor::f_full([b], i64::from(steps), (Kind::Int, device))?;
        let inputs = LossInputs {
            logits: &out.logits,
            q_halt: &out.q_halt,
            q_continue: &out.q_continue,
            target_q_continue: None,
            labels: &batch.labels,
            halted: &halted,
            steps: &step_counts,
        };
        let (_, metrics) = act_loss(&inputs, loss)?;
        let values = metrics.values()?;
        let acc = sums.entry(item.set_name.clone()).or_default();
        if acc.is_empty() {
            acc.extend(values.iter().map(|(n, _)| (*n, 0.0)));
        }
        for ((_, a), (_, v)) in acc.iter_mut().zip(&values) {
            *a += v;
        }
        let feed = evaluators.as_deref().is_some_and(|e| !e.is_empty());
        let preds = if feed || save.iter().any(|k| k == "preds") {
            Some(out.logits.f_argmax(-1, false)?)
        } else {
            None
        };
        if let (Some(ev), Some(preds)) = (evaluators.as_deref_mut(), &preds) {
            ev.update(
                &batch.inputs,
                &batch.puzzle_identifiers,
                preds,
                &out.q_halt,
                pg,
            )?;
        }
        for key in save {
            let t = match key.as_str() {
                "inputs" => batch.inputs.shallow_clone(),
                "labels" => batch.labels.shallow_clone(),
                "puzzle_identifiers" => batch.puzzle_identifiers.shallow_clone(),
                "preds" => match &preds {
                    Some(p) => p.shallow_clone(),
                    None => continue,
                },
                "q_halt_logits" => out.q_halt.shallow_clone(),
                "logits" => out.logits.shallow_clone(),
                _ => continue,
            };
            saved
                .entry(key.clone())
                .or_default()
                .push(t.f_to_device(Device::Cpu)?);
        }
    }
    Ok(RawEval {
        set_names,
        sums,
        saved,
    })
}

/// Divides the sums by each set's count and concatenates the saved outputs.
fn finish(
    set_names: Vec<String>,
    mut sums: BTreeMap<String, Vec<(&'static str, f64)>>,
    saved: BTreeMap<String, Vec<Tensor>>,
) -> Result<EvalOutput, RunError> {
    let mut sets = Vec::new();
    for name in set_names {
        let Some(vals) = sums.remove(&name) else {
            continue;
        };
        let count = vals
            .iter()
            .find(|(n, _)| *n == "count")
            .map_or(0.0, |(_, v)| *v);
        let metrics = vals
            .iter()
            .filter(|(n, _)| *n != "count")
            .map(|(n, v)| ((*n).to_owned(), v / count))
            .collect();
        sets.push(SetMetrics {
            set: name,
            count,
            metrics,
        });
    }
    let saved = saved
        .into_iter()
        .map(|(k, v)| Ok((k, Tensor::f_cat(&v, 0)?)))
        .collect::<Result<Vec<_>, tch::TchError>>()?;
    Ok(EvalOutput {
        sets,
        saved,
        evaluators: Vec::new(),
    })
}

/// Writes saved outputs as safetensors at `path`.
pub fn write_saved(path: &Path, saved: &[(String, Tensor)]) -> Result<(), RunError> {
    if saved.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir, e))?;
    }
    let named: Vec<(&str, Tensor)> = saved
        .iter()
        .map(|(n, t)| Ok((n.as_str(), t.f_contiguous()?)))
        .collect::<Result<_, tch::TchError>>()?;
    Tensor::write_safetensors(&named, path)?;
    Ok(())
}
