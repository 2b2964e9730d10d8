//! The training loop (`pretrain.py` `launch`), in one process or data-parallel over a
//! [`ProcessGroup`] ([`TrainRun::with_process_group`]).
//!
//! Distributed, as the reference: every rank builds the model from `seed + rank`, then the
//! variables are broadcast from rank 0; each rank trains on its slice of every global batch
//! (`global_batch_size / world_size` rows), the gradients are summed across ranks (flattened
//! into buckets of [`DEFAULT_BUCKET_BYTES`], one all-reduce per bucket) before the optimizers
//! step, and the puzzle embedding's sparse gradients are all-gathered with their ids before the
//! sign-SGD update; metrics are reduced to rank 0, evaluation runs on each rank's shard of the
//! test batches and its sums (and saved outputs, in global order) are gathered on rank 0. Rank 0
//! alone writes logs, predictions and checkpoints; a checkpoint holds the training carry of every
//! rank (gathered), so that any rank resumes from the shared run folder.
//!
//! The config's `evaluators` (ARC, [`super::evaluators`]) are built before training (an unknown
//! one stops the run there), fed by every evaluation (each rank's rows gathered on rank 0),
//! their metrics logged with the others, and their files written as the reference writes them:
//! `<checkpoint_path>/evaluator_<class>_step_<N>/` (`submission.json`).
//!
//! Quantization-aware training (`quant`, [`crate::model::quant`]): the optimizer steps after
//! the first `quant.start_step` ones run the forward pass on the weight matrices fake-quantized
//! onto the export grid; evaluation always does (it evaluates what a fixed export computes).
//! Every checkpoint saves those matrices projected onto the grid, in `model.safetensors` and
//! `ema.safetensors` alike (the EMA of on-grid weights is not on the grid: it is projected
//! too), so that `trm-export export --dtype fixed` rounds nothing; the float ("latent")
//! values that training continues from are kept in the optimizer file (`qat_latent.`,
//! `qat_latent_ema.`), which a resume restores, so a resumed run continues exactly.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tch::{Device, Kind, Tensor, nn};
use trm_nostd::TensorId;
use trm_reference::act_ranges::{self, ActRanges};

use super::RunError;
use super::eval::{EvalOutput, SAVABLE_OUTPUTS, evaluate_with, write_saved};
use super::evaluators::{Evaluators, check_evaluators};
use crate::ckpt::{self, Checkpoint};
use crate::config::{ActivationQuant, TrainConfig, WeightQuant};
use crate::data::{PuzzleDataset, PuzzleDatasetConfig};
use crate::dist::ddp::DEFAULT_BUCKET_BYTES;
use crate::dist::{ProcessGroup, ReduceOp};
use crate::logs::{Progress, RunLogger};
use crate::model::checkpoint::forward_kind;
use crate::model::quant::{ActQuant, project_named, quantized_names};
use crate::model::{Trm, load_named_tensors, read_checkpoint};
use crate::optim::{
    AdamAtan2, AdamAtan2Config, CosineSchedule, Ema, SparseSignSgd, total_train_steps,
    trainable_named,
};
use crate::train::{LossKind, Metrics, SplitMix64, TrainCarry, TrainOptions, train_step};

/// Prefix of AdamATan2's entries in the checkpoint's optimizer file.
const ADAM_PREFIX: &str = "adam.";
/// Prefix of the training carry's tensors in the checkpoint's optimizer file.
const CARRY_PREFIX: &str = "carry.";
/// Name of the exploration RNG's draw count in the checkpoint's RNG file.
const EXPLORATION_RNG: &str = "exploration_draws";
/// QAT: prefix, in the optimizer file, of the float (latent) values of the matrices that
/// `model.safetensors` holds projected onto the grid.
const QAT_LATENT_PREFIX: &str = "qat_latent.";
/// QAT: the same for the EMA (`ema.safetensors`).
const QAT_LATENT_EMA_PREFIX: &str = "qat_latent_ema.";

/// How to run training.
#[derive(Debug, Clone)]
pub struct TrainRun {
    /// The effective config (`checkpoint_path` must be set, see [`TrainConfig::fill_run_names`]).
    pub config: TrainConfig,
    /// Where tensors live.
    pub device: Device,
    /// Resume from the latest complete checkpoint under `checkpoint_path`, if there is one.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many optimizer steps are done, even mid-iteration.
    pub max_steps: Option<u64>,
    /// Hide the progress bar.
    pub quiet: bool,
    /// This process's rank (0 without a process group).
    pub rank: usize,
    /// Number of processes (1 without a process group).
    pub world_size: usize,
    /// The process group of a distributed run (`None`: one process, no communication at all).
    pub dist: Option<Rc<ProcessGroup>>,
}

impl TrainRun {
    /// A single-process run of `config` on `device`, resuming when a checkpoint exists.
    pub fn new(config: TrainConfig, device: Device) -> Self {
        TrainRun {
            config,
            device,
            resume: true,
            max_steps: None,
            quiet: false,
            rank: 0,
            world_size: 1,
            dist: None,
        }
    }

    /// Makes this run one rank of `pg` (rank and world size taken from it). A group of one
    /// process still runs every collective (a check of the backend on one device).
    pub fn with_process_group(mut self, pg: Rc<ProcessGroup>) -> Self {
        self.rank = pg.rank();
        self.world_size = pg.world_size();
        self.dist = Some(pg);
        self
    }
}

/// What a finished (or stopped) run reports.
#[derive(Debug)]
pub struct TrainSummary {
    /// Optimizer steps counted (the reference's `train_state.step`).
    pub step: u64,
    /// The reference's estimate of total steps.
    pub total_steps: u64,
    /// The step a resumed run started from (0 for a fresh run).
    pub resumed_from: u64,
    /// Whether every iteration ran (false when stopped by `max_steps`).
    pub finished: bool,
    /// The last evaluation, if any.
    pub last_eval: Option<EvalOutput>,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Seconds spent in training steps (not evaluation or checkpoints).
    pub train_seconds: f64,
    /// Training steps run by this process.
    pub steps_run: u64,
    /// The run folder (`checkpoint_path`).
    pub run_dir: PathBuf,
}

/// Everything the loop mutates, kept together for checkpoints.
struct State {
    vs: nn::VarStore,
    model: Trm,
    adam: Option<AdamAtan2>,
    sign_sgd: Option<SparseSignSgd>,
    ema: Option<Ema>,
    carry: TrainCarry,
    /// Draws taken from the exploration RNG since `carry_seed`.
    draws: u64,
    carry_seed: u64,
    step: u64,
    /// QAT with `quant.activations: int16`: the frozen activation ranges, once calibrated.
    act_ranges: Option<ActRanges>,
}

/// The dataset config of a split.
fn dataset_config(
    cfg: &TrainConfig,
    test: bool,
    epochs_per_iter: u64,
    rank: usize,
    world: usize,
) -> PuzzleDatasetConfig {
    let paths = if test && !cfg.data_paths_test.is_empty() {
        &cfg.data_paths_test
    } else {
        &cfg.data_paths
    };
    PuzzleDatasetConfig {
        seed: cfg.seed,
        dataset_paths: paths.iter().map(PathBuf::from).collect(),
        global_batch_size: cfg.global_batch_size as usize,
        test_set_mode: test,
        epochs_per_iter: epochs_per_iter as usize,
        rank,
        num_replicas: world,
    }
}

pub(super) fn loss_kind(cfg: &TrainConfig) -> Result<LossKind, RunError> {
    let name = cfg.arch.loss.loss_type.name();
    LossKind::from_reference_name(name)
        .ok_or_else(|| RunError::Invalid(format!("unsupported loss_type {name}")))
}

/// Builds the model on `device` from `cfg` and a dataset's metadata, seeded as the reference.
pub(super) fn build_model(
    cfg: &TrainConfig,
    meta: &trm_data::layout::DatasetMetadata,
    device: Device,
) -> Result<(nn::VarStore, Trm), RunError> {
    let mc = cfg.model_config(meta)?;
    let vs = nn::VarStore::new(device);
    let mut model = Trm::new(&vs.root(), &mc)?;
    let kind = forward_kind(&cfg.arch.forward_dtype).ok_or_else(|| {
        RunError::Invalid(format!("unknown forward_dtype {}", cfg.arch.forward_dtype))
    })?;
    model.set_forward_kind(kind)?;
    model.set_weight_quant(cfg.quant.as_ref().and_then(|q| q.weight_grid()));
    Ok((vs, model))
}

/// QAT: the grid of the optimizer step taken after `steps_done` steps (`None` before
/// `quant.start_step` steps are done, or without QAT).
fn qat_grid(cfg: &TrainConfig, steps_done: u64) -> Option<WeightQuant> {
    let q = cfg.quant.as_ref()?;
    q.weight_grid().filter(|_| steps_done >= q.start_step)
}

/// QAT: whether the run rounds activations (`quant.activations: int16`).
fn act_qat(cfg: &TrainConfig) -> bool {
    cfg.quant
        .as_ref()
        .is_some_and(|q| q.activations == ActivationQuant::Int16)
}

/// QAT: the activation fake-quantization of the optimizer step taken after `steps_done`
/// steps: the frozen ranges once QAT is on (`quant.start_step`), none before.
fn act_quant_at(cfg: &TrainConfig, st: &State, steps_done: u64) -> Option<ActQuant> {
    let q = cfg.quant.as_ref().filter(|_| act_qat(cfg))?;
    let r = st.act_ranges.as_ref()?;
    (steps_done >= q.start_step).then(|| ActQuant::Apply(r.clone()))
}

/// QAT: calibrates the activation ranges as the exporter does, on the trainer's forward pass:
/// the first `quant.calib_batches` batches of the next pass over `ds` (a copy: the run's own
/// data order is untouched), every ACT step from the initial carry, no gradient, the weights
/// on their grid; the largest `|value|` per site, reduced over the ranks (max).
fn calibrate_act_ranges(
    cfg: &TrainConfig,
    model: &mut Trm,
    ds: &PuzzleDataset,
    device: Device,
    pg: Option<&ProcessGroup>,
    step: u64,
) -> Result<ActRanges, RunError> {
    let q = cfg
        .quant
        .as_ref()
        .ok_or_else(|| RunError::Invalid("activation QAT without a quant section".into()))?;
    let layers = model.config().l_layers as usize;
    let steps = model.config().halt_max_steps;
    model.set_weight_quant(q.weight_grid());
    model.set_act_quant(Some(ActQuant::Record(std::sync::Mutex::new(
        ActRanges::new(layers, q.margin),
    ))))?;
    let mut copy = ds.clone();
    let mut puzzles = 0u64;
    let mut plans = copy.plans();
    let result = (|| -> Result<(), RunError> {
        let _no_grad = tch::no_grad_guard();
        for _ in 0..q.calib_batches {
            let Some(plan) = plans.next().transpose()? else {
                break;
            };
            let batch = plans.dataset().collate(&plan)?.to_device(device)?;
            let rows = model.puzzle_rows(&batch.puzzle_identifiers)?;
            let x = model.input_embeddings(&batch.inputs, rows.as_ref())?;
            let mut carry = model.initial_carry(batch.inputs.size()[0])?;
            for _ in 0..steps {
                carry = model.act_step(&carry, &x)?.0;
            }
            puzzles += plan.global_effective_batch_size as u64;
        }
        Ok(())
    })();
    let mut ranges = model
        .act_ranges()
        .unwrap_or_else(|| ActRanges::new(layers, q.margin));
    model.set_act_quant(None)?;
    result?;
    if puzzles == 0 {
        return Err(RunError::Invalid(
            "quant.activations: int16 needs at least one training batch to calibrate on".into(),
        ));
    }
    if let Some(pg) = pg {
        let mut t = Tensor::from_slice(&ranges.flat());
        pg.all_reduce(&mut t, ReduceOp::Max)?;
        let v = Vec::<f32>::try_from(&t)?;
        ranges.set_flat(&v).map_err(RunError::Invalid)?;
    }
    ranges.step = step;
    ranges.puzzles = puzzles;
    Ok(ranges)
}

/// QAT: `named` with the matrices QAT quantizes projected onto the grid of `cfg` (unchanged
/// without QAT).
fn on_grid(
    cfg: &TrainConfig,
    model: &Trm,
    named: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, RunError> {
    match cfg
        .quant
        .as_ref()
        .and_then(|q| q.weight_grid())
        .and_then(WeightQuant::levels)
    {
        Some(levels) => Ok(project_named(named, model.config(), levels)?),
        None => Ok(named),
    }
}

/// QAT: the latent (float) values of the matrices QAT quantizes, named `prefix<name>`
/// (nothing without QAT).
fn latent_entries(
    cfg: &TrainConfig,
    model: &Trm,
    named: &[(String, Tensor)],
    prefix: &str,
) -> Result<Vec<(String, Tensor)>, RunError> {
    if cfg.quant.as_ref().and_then(|q| q.weight_grid()).is_none() {
        return Ok(Vec::new());
    }
    let names = quantized_names(model.config());
    named
        .iter()
        .filter(|(n, _)| names.contains(n))
        .map(|(n, t)| Ok((format!("{prefix}{n}"), t.f_detach_copy()?)))
        .collect()
}

/// `named` with the values of `latent` (by name) in place of its own.
fn with_latent(
    named: Vec<(String, Tensor)>,
    mut latent: std::collections::HashMap<String, Tensor>,
    what: &str,
) -> Result<Vec<(String, Tensor)>, RunError> {
    let out: Vec<(String, Tensor)> = named
        .into_iter()
        .map(|(n, t)| match latent.remove(&n) {
            Some(l) => (n, l),
            None => (n, t),
        })
        .collect();
    match latent.into_keys().next() {
        Some(n) => Err(RunError::Invalid(format!(
            "the checkpoint's optimizer file has a QAT {what} value of {n}, which the weights \
             lack"
        ))),
        None => Ok(out),
    }
}

/// `load_checkpoint`: weights to start from (a safetensors file or a reference `step_N` file).
/// A puzzle embedding of another shape is reset to the mean of its rows, as the reference does.
fn load_initial_weights(vs: &nn::VarStore, path: &Path) -> Result<(), RunError> {
    let mut named = read_checkpoint(path)?;
    let emb_name = TensorId::PuzzleEmb.to_string();
    let live = vs.variables();
    if let Some(expected) = live.get(&emb_name) {
        for (n, t) in &mut named {
            if crate::model::checkpoint::strip_reference_prefix(n) == emb_name
                && t.size() != expected.size()
            {
                eprintln!(
                    "resetting puzzle embedding: found {:?}, expected {:?}",
                    t.size(),
                    expected.size()
                );
                *t = t
                    .f_to_kind(Kind::Float)?
                    .f_mean_dim(0, true, Kind::Float)?
                    .f_expand(expected.size(), false)?
                    .f_contiguous()?;
            }
        }
    }
    load_named_tensors(vs, named)?;
    Ok(())
}

/// Deep copies of every variable, sorted by name.
fn variables_copy(vs: &nn::VarStore) -> Result<Vec<(String, Tensor)>, RunError> {
    ckpt::named_variables(vs)
        .into_iter()
        .map(|(n, t)| Ok((n, t.f_detach_copy()?)))
        .collect()
}

/// A fresh exploration RNG advanced by `draws` draws (the carry's RNG state after `draws`).
fn exploration_rng(seed: u64, draws: u64) -> SplitMix64 {
    let mut rng = SplitMix64::new(seed);
    for _ in 0..draws {
        rng.next_u64();
    }
    rng
}

/// Draws one training step takes from the exploration RNG (two per sequence when the model
/// can halt early).
fn draws_per_step(model: &Trm, batch: i64) -> u64 {
    if model.config().halt_max_steps > 1 {
        2 * batch.max(0) as u64
    } else {
        0
    }
}

impl State {
    /// The checkpoint of this state; with a process group, a collective: the training carries
    /// of all ranks are gathered (rank order, the global batch's row order) and every rank gets
    /// the same checkpoint (rank 0 writes it).
    fn checkpoint(
        &self,
        cfg: &TrainConfig,
        extra: Map<String, Value>,
        pg: Option<&ProcessGroup>,
    ) -> Result<Checkpoint, RunError> {
        // The RNG state is kept as a draw count: check that it reproduces the live generator.
        if format!("{:?}", exploration_rng(self.carry_seed, self.draws))
            != format!("{:?}", self.carry.rng)
        {
            return Err(RunError::Invalid(
                "the exploration RNG is not where the draw count says; cannot checkpoint".into(),
            ));
        }
        let ema = match &self.ema {
            Some(e) => Some(e.with_ema(|| variables_copy(&self.vs))??),
            None => None,
        };
        let model = variables_copy(&self.vs)?;
        // QAT: the latent values first, then the saved weights projected onto the grid.
        let mut optimizer = latent_entries(cfg, &self.model, &model, QAT_LATENT_PREFIX)?;
        if let Some(ema) = &ema {
            optimizer.extend(latent_entries(
                cfg,
                &self.model,
                ema,
                QAT_LATENT_EMA_PREFIX,
            )?);
        }
        let model = on_grid(cfg, &self.model, model)?;
        let ema = ema.map(|e| on_grid(cfg, &self.model, e)).transpose()?;
        if let Some(adam) = &self.adam {
            for (n, t) in adam.state_dict()? {
                optimizer.push((format!("{ADAM_PREFIX}{n}"), t));
            }
        }
        let c = &self.carry;
        for (n, t) in [
            ("z_h", &c.inner.z_h),
            ("z_l", &c.inner.z_l),
            ("steps", &c.steps),
            ("halted", &c.halted),
            ("inputs", &c.current_data.inputs),
            ("labels", &c.current_data.labels),
            ("puzzle_identifiers", &c.current_data.puzzle_identifiers),
        ] {
            let t = t.f_detach_copy()?;
            let t = match pg {
                Some(pg) => pg.all_gather_cat(&t)?,
                None => t,
            };
            optimizer.push((format!("{CARRY_PREFIX}{n}"), t));
        }
        Ok(Checkpoint {
            step: self.step,
            model,
            ema,
            optimizer,
            rng: vec![(
                EXPLORATION_RNG.to_owned(),
                self.draws.to_le_bytes().to_vec(),
            )],
            extra: {
                let mut extra = extra;
                if let Some(r) = &self.act_ranges {
                    extra.insert(act_ranges::MANIFEST_KEY.to_owned(), r.to_json());
                }
                extra
            },
            config: cfg.clone(),
        })
    }

    /// Restores a checkpoint; a carry saved by `world` ranks (rows of the global batch) is cut
    /// to this rank's rows.
    fn restore(&mut self, ck: Checkpoint, rank: usize, world: usize) -> Result<(), RunError> {
        let mut adam_entries = Vec::new();
        let mut carry = std::collections::HashMap::new();
        let (mut latent, mut latent_ema) = (
            std::collections::HashMap::new(),
            std::collections::HashMap::new(),
        );
        for (n, t) in ck.optimizer {
            if let Some(rest) = n.strip_prefix(ADAM_PREFIX) {
                adam_entries.push((rest.to_owned(), t));
            } else if let Some(rest) = n.strip_prefix(CARRY_PREFIX) {
                carry.insert(rest.to_owned(), t);
            } else if let Some(rest) = n.strip_prefix(QAT_LATENT_PREFIX) {
                latent.insert(rest.to_owned(), t);
            } else if let Some(rest) = n.strip_prefix(QAT_LATENT_EMA_PREFIX) {
                latent_ema.insert(rest.to_owned(), t);
            } else {
                return Err(RunError::Invalid(format!(
                    "unknown optimizer-file entry {n}"
                )));
            }
        }
        // QAT: training continues from the latent values, not the on-grid ones saved.
        ckpt::restore_model(&self.vs, with_latent(ck.model, latent, "latent")?)?;
        if let Some(ema) = &mut self.ema {
            let saved = ck.ema.ok_or_else(|| {
                RunError::Invalid("the checkpoint has no EMA but ema is on".into())
            })?;
            let saved = with_latent(saved, latent_ema, "latent EMA")?;
            let names: std::collections::HashSet<String> = ema.names().map(str::to_owned).collect();
            let entries: Vec<(String, Tensor)> = saved
                .into_iter()
                .filter(|(n, _)| names.contains(n))
                .collect();
            ema.load_state_dict(&entries)?;
        }
        if let Some(adam) = &mut self.adam {
            adam.load_state_dict(&adam_entries)?;
        } else if !adam_entries.is_empty() {
            return Err(RunError::Invalid(
                "the checkpoint has AdamATan2 state but this run has no AdamATan2".into(),
            ));
        }
        let c = &mut self.carry;
        let mut take = |name: &str, like: &Tensor| -> Result<Tensor, RunError> {
            let t = carry.remove(name).ok_or_else(|| {
                RunError::Invalid(format!("the checkpoint lacks carry tensor {name}"))
            })?;
            let (rows, local) = (t.size()[0], like.size()[0]);
            let t = if world > 1 && rows == local * world as i64 && rows != local {
                t.f_narrow(0, local * rank as i64, local)?.f_contiguous()?
            } else {
                t
            };
            if t.size() != like.size() {
                return Err(RunError::Invalid(format!(
                    "carry tensor {name} is {:?}, expected {:?} (another batch size?)",
                    t.size(),
                    like.size()
                )));
            }
            Ok(t.f_to_device(like.device())?.f_to_kind(like.kind())?)
        };
        c.inner.z_h = take("z_h", &c.inner.z_h)?;
        c.inner.z_l = take("z_l", &c.inner.z_l)?;
        c.steps = take("steps", &c.steps)?;
        c.halted = take("halted", &c.halted)?;
        c.current_data.inputs = take("inputs", &c.current_data.inputs)?;
        c.current_data.labels = take("labels", &c.current_data.labels)?;
        c.current_data.puzzle_identifiers =
            take("puzzle_identifiers", &c.current_data.puzzle_identifiers)?;
        let bytes = ck
            .rng
            .iter()
            .find(|(n, _)| n == EXPLORATION_RNG)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| RunError::Invalid("the checkpoint lacks the exploration RNG".into()))?;
        let draws = <[u8; 8]>::try_from(bytes)
            .map(u64::from_le_bytes)
            .map_err(|_| RunError::Invalid("exploration RNG state is not 8 bytes".into()))?;
        self.draws = draws;
        c.rng = exploration_rng(self.carry_seed, draws);
        self.step = ck.step;
        self.act_ranges = match ck.extra.get(act_ranges::MANIFEST_KEY) {
            Some(v) => Some(
                ActRanges::from_json(v, self.model.config().l_layers as usize).map_err(|e| {
                    RunError::Invalid(format!(
                        "the checkpoint's {}: {e}",
                        act_ranges::MANIFEST_KEY
                    ))
                })?,
            ),
            None => None,
        };
        Ok(())
    }
}

fn extra_u64(extra: &Map<String, Value>, key: &str) -> Result<u64, RunError> {
    extra
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| RunError::Invalid(format!("checkpoint meta lacks {key}")))
}

/// A short run name suffix from the clock (the reference uses two random words).
pub fn run_slug() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("run-{:x}", (nanos / 1_000_000) as u64)
}

/// Trains as `pretrain.py` does; see the [module](super) docs for resume.
pub fn train(run: &TrainRun) -> Result<TrainSummary, RunError> {
    let cfg = &run.config;
    let device = run.device;
    let run_dir = PathBuf::from(cfg.checkpoint_path.as_deref().ok_or_else(|| {
        RunError::Invalid("checkpoint_path is not set (call fill_run_names)".into())
    })?);
    let pg: Option<&ProcessGroup> = run.dist.as_deref();
    match pg {
        Some(pg) if pg.rank() != run.rank || pg.world_size() != run.world_size => {
            return Err(RunError::Invalid(format!(
                "rank {} of {} does not match the process group's rank {} of {}",
                run.rank,
                run.world_size,
                pg.rank(),
                pg.world_size()
            )));
        }
        None if run.world_size != 1 || run.rank != 0 => {
            return Err(RunError::Invalid(format!(
                "rank {} of {}: a distributed run needs a process group",
                run.rank, run.world_size
            )));
        }
        _ => {}
    }
    check_batch_split(cfg.global_batch_size, run.world_size)?;
    tch::manual_seed(cfg.seed.wrapping_add(run.rank as u64) as i64);

    let epochs_per_iter = cfg.eval_interval.unwrap_or(cfg.epochs);
    if epochs_per_iter == 0 || !cfg.epochs.is_multiple_of(epochs_per_iter) {
        return Err(RunError::Invalid(format!(
            "eval_interval {epochs_per_iter} must be a positive divisor of epochs {}",
            cfg.epochs
        )));
    }
    let total_iters = cfg.epochs / epochs_per_iter;
    let mut train_ds = PuzzleDataset::open(
        dataset_config(cfg, false, epochs_per_iter, run.rank, run.world_size),
        "train",
    )?;
    let meta = train_ds.metadata().clone();
    let total_steps = total_train_steps(
        cfg.epochs,
        meta.total_groups as u64,
        meta.mean_puzzle_examples,
        u64::from(cfg.global_batch_size),
    );
    check_batch_fits(cfg, &train_ds, epochs_per_iter, total_steps, run.rank == 0)?;
    let test_cfg = dataset_config(cfg, true, 1, run.rank, run.world_size);
    let mut test_ds = if test_split_absent(&test_cfg.dataset_paths) {
        if run.rank == 0 {
            eprintln!(
                "no evaluation data: {} has no test split",
                test_cfg
                    .dataset_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        None
    } else {
        // A test split that is there must be readable: a damaged one is an error naming the
        // file, not a run without evaluation.
        Some(PuzzleDataset::open(test_cfg, "test").map_err(|e| {
            RunError::Invalid(format!(
                "the evaluation data (test split) cannot be read: {e}"
            ))
        })?)
    };
    // The evaluators, before any training: an unknown name or option, or an evaluation dataset
    // they cannot read, stops the run here.
    check_evaluators(&cfg.evaluators)?;
    let mut evaluators = match &test_ds {
        Some(test) if !cfg.evaluators.is_empty() => Some(Evaluators::load(
            &cfg.evaluators,
            &test
                .config()
                .dataset_paths
                .first()
                .cloned()
                .unwrap_or_default(),
            i64::from(test.metadata().blank_identifier_id),
            run.rank,
        )?),
        _ => None,
    };
    if run.rank == 0 {
        for k in &cfg.eval_save_outputs {
            if !SAVABLE_OUTPUTS.contains(&k.as_str()) {
                eprintln!(
                    "warning: eval_save_outputs names {k:?}, which evaluation does not produce \
                     (it saves {})",
                    SAVABLE_OUTPUTS.join(", ")
                );
            }
        }
    }
    let gbs = cfg.global_batch_size as usize;
    let local_batch = train_ds.local_batch_size() as i64;

    // Model, initial weights, optimizers, EMA (registered after loading, as the reference).
    let (vs, model) = build_model(cfg, &meta, device)?;
    let latest = if run.resume {
        resume_point(&run_dir, run.rank == 0)?
    } else {
        None
    };
    if let (None, Some(path)) = (&latest, &cfg.load_checkpoint) {
        load_initial_weights(&vs, Path::new(path))?;
    }
    // Every rank starts from rank 0's weights (and puzzle embedding), before the EMA copies them.
    if let Some(pg) = pg {
        let mut vars: Vec<Tensor> = ckpt::named_variables(&vs)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        pg.broadcast_bucketed(&mut vars, 0, DEFAULT_BUCKET_BYTES)?;
    }
    let has_emb = model.puzzle_emb().is_some();
    let adam = if !has_emb || !cfg.freeze_weights {
        Some(AdamAtan2::new(
            trainable_named(&vs),
            AdamAtan2Config {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                weight_decay: cfg.weight_decay,
            },
        )?)
    } else {
        None
    };
    let sign_sgd = if has_emb {
        Some(SparseSignSgd::new(cfg.puzzle_emb_weight_decay)?)
    } else {
        None
    };
    let ema = if cfg.ema {
        Some(Ema::register(&vs, cfg.ema_rate)?)
    } else {
        None
    };
    let frozen = trainable_named(&vs);
    let carry_seed = cfg.seed.wrapping_add(run.rank as u64);
    let carry = TrainCarry::new(&model, local_batch, device, carry_seed)?;
    let mut st = State {
        vs,
        model,
        adam,
        sign_sgd,
        ema,
        carry,
        draws: 0,
        carry_seed,
        step: 0,
        act_ranges: None,
    };
    let schedule = CosineSchedule::new(cfg.lr_warmup_steps, total_steps, cfg.lr_min_ratio);
    let options = TrainOptions {
        loss: loss_kind(cfg)?,
        halting: crate::train::HaltingOptions {
            halt_exploration_prob: cfg.arch.halt_exploration_prob,
            no_act_continue: cfg.arch.no_act_continue,
        },
    };

    // Resume: state, then the data position replayed from index plans.
    let (mut start_iter, mut skip_batches, mut finished) = (0u64, 0u64, false);
    let mut last_checkpoint = None;
    if let Some((step, dir)) = &latest {
        let ck = ckpt::load(dir)?;
        start_iter = extra_u64(&ck.extra, "iteration")?;
        skip_batches = extra_u64(&ck.extra, "batch_in_iter")?;
        finished = ck.extra.get("finished").and_then(Value::as_bool) == Some(true);
        st.restore(ck, run.rank, run.world_size)?;
        // A resume that turns activation QAT off drops the frozen ranges (its checkpoints then
        // hold none, and its forward passes round nothing).
        if !act_qat(cfg) {
            st.act_ranges = None;
        }
        eprintln!("resuming from {} (step {step})", dir.display());
        last_checkpoint = Some(dir.clone());
        for _ in 0..start_iter {
            for plan in train_ds.plans() {
                plan?;
            }
        }
    }
    let resumed_from = st.step;

    // Nothing to do (`max_steps` 0, or a resumed run already there): no step, and nothing
    // written (no logs, no checkpoint).
    if let Some(m) = run.max_steps
        && st.step >= m
    {
        if run.rank == 0 {
            eprintln!(
                "max_steps {m}: the run is at step {}, no step to run; nothing written",
                st.step
            );
        }
        return Ok(TrainSummary {
            step: st.step,
            total_steps,
            resumed_from,
            finished,
            last_eval: None,
            last_checkpoint,
            train_seconds: 0.0,
            steps_run: 0,
            run_dir,
        });
    }

    // The logs continue from the step resumed from: what a crashed run logged after its last
    // checkpoint is dropped (it is logged again), and the event files become one stream.
    let mut logger = if run.rank == 0 {
        let (logger, resumed) = RunLogger::resume(&run_dir, latest.as_ref().map(|(s, _)| *s))
            .map_err(|e| RunError::io(&run_dir, e))?;
        if resumed.changed_anything() {
            eprintln!("logs in {}: {resumed}", run_dir.display());
        }
        Some(logger)
    } else {
        None
    };
    if let (Some(l), None) = (&mut logger, &latest) {
        let n: i64 = trainable_named(&st.vs)
            .iter()
            .map(|(_, t)| t.numel() as i64)
            .sum();
        l.log("train", 0, &[("num_params", n as f64)])
            .map_err(|e| RunError::io(&run_dir, e))?;
    }
    let progress = Progress::new(total_steps, st.step, run.quiet || run.rank != 0);
    let mut progress = progress;
    let keep = cfg.checkpoint_keep_last.map(|k| k as usize);
    // A collective with a process group (the carries are gathered); rank 0 alone writes.
    let save = |st: &State, mut extra: Map<String, Value>| -> Result<Option<PathBuf>, RunError> {
        if pg.is_some() {
            extra.insert("world_size".to_owned(), json!(run.world_size));
        }
        let ck = st.checkpoint(cfg, extra, pg)?;
        if run.rank != 0 {
            return Ok(None);
        }
        let dir = ckpt::save(&run_dir, &ck)?;
        if let Some(k) = keep {
            ckpt::prune(&run_dir, k)?;
        }
        Ok(Some(dir))
    };

    let mut last_eval = None;
    let mut train_seconds = 0.0;
    let mut steps_run = 0u64;
    let mut stopped = false;
    let per_step_draws = draws_per_step(&st.model, local_batch);
    // TRM_DIST_PROFILE=1: a barrier before each gradient all-reduce, so that `allreduce_ms`
    // is the transfer alone and `rank_wait_ms` the wait for the slowest rank.
    let profile_comm = pg.is_some() && std::env::var("TRM_DIST_PROFILE").is_ok_and(|v| v == "1");
    if !finished {
        'iters: for iter_id in start_iter..total_iters {
            progress.println(&format!(
                "[rank {}, world {}]: epoch {}",
                run.rank,
                run.world_size,
                iter_id * epochs_per_iter
            ));
            let skip = if iter_id == start_iter {
                skip_batches
            } else {
                0
            };
            let mut batch_in_iter = 0u64;
            let mut plans = train_ds.plans();
            while let Some(plan) = plans.next() {
                let plan = plan?;
                batch_in_iter += 1;
                if batch_in_iter <= skip {
                    continue;
                }
                st.step += 1;
                if st.step > total_steps {
                    // The reference skips the step but still updates the EMA.
                    if let Some(e) = &mut st.ema {
                        e.update()?;
                    }
                    continue;
                }
                let t0 = Instant::now();
                if act_qat(cfg) && st.act_ranges.is_none() && qat_grid(cfg, st.step - 1).is_some() {
                    let r = calibrate_act_ranges(
                        cfg,
                        &mut st.model,
                        plans.dataset(),
                        device,
                        pg,
                        st.step - 1,
                    )?;
                    progress.println(&format!(
                        "QAT: activation ranges calibrated on {} puzzles x {} ACT steps and \
                         frozen (network input max {:.4})",
                        r.puzzles,
                        st.model.config().halt_max_steps,
                        r.input
                    ));
                    st.act_ranges = Some(r);
                }
                let batch = plans.dataset().collate(&plan)?.to_device(device)?;
                st.model.set_weight_quant(qat_grid(cfg, st.step - 1));
                let act = act_quant_at(cfg, &st, st.step - 1);
                st.model.set_act_quant(act)?;
                let out = train_step(&st.model, &mut st.carry, &batch, &options)?;
                st.draws += per_step_draws;
                out.loss.f_mul_scalar(1.0 / gbs as f64)?.f_backward()?;
                // Sum the gradients of all ranks (the loss is already divided by the global
                // batch size), in buckets.
                let (mut comm_seconds, mut wait_seconds) = (0.0, None);
                if let Some(pg) = pg {
                    if profile_comm {
                        // Waiting for the slowest rank, kept out of the all-reduce's time.
                        let tw = Instant::now();
                        pg.barrier()?;
                        wait_seconds = Some(tw.elapsed().as_secs_f64());
                    }
                    let tc = Instant::now();
                    let mut grads = Vec::with_capacity(frozen.len());
                    for (_, p) in &frozen {
                        let g = p.f_grad()?;
                        if g.defined() {
                            grads.push(g);
                        }
                    }
                    pg.all_reduce_sum_bucketed(&mut grads, DEFAULT_BUCKET_BYTES)?;
                    comm_seconds = tc.elapsed().as_secs_f64();
                }
                let lr = schedule.lr(cfg.lr, st.step);
                let emb_lr = schedule.lr(cfg.puzzle_emb_lr, st.step);
                if let (Some(sgd), Some(w), Some(table)) = (
                    &st.sign_sgd,
                    &out.puzzle_local_weights,
                    st.model.puzzle_emb(),
                ) {
                    let g = w.f_grad()?;
                    if g.defined() {
                        match pg {
                            // CastedSparseEmbeddingSignSGD_Distributed: every rank applies the
                            // same update from the ids and gradient rows of all ranks.
                            Some(pg) => {
                                let ids = pg.all_gather_cat(&out.puzzle_local_ids)?;
                                let grads = pg.all_gather_cat(&g)?;
                                sgd.step(table, &ids, &grads, emb_lr)?;
                            }
                            None => sgd.step(table, &out.puzzle_local_ids, &g, emb_lr)?,
                        }
                    }
                }
                match &mut st.adam {
                    Some(adam) => {
                        adam.step(lr)?;
                        adam.zero_grad();
                    }
                    None => {
                        for (_, p) in &frozen {
                            let mut p = p.shallow_clone();
                            p.zero_grad();
                        }
                    }
                }
                let sums = match pg {
                    // Summed on rank 0 (the other ranks' values are not used).
                    Some(pg) => {
                        let summed = pg.reduce_sum_to(&out.metrics.stacked()?, 0)?;
                        let values = Vec::<f64>::try_from(&summed.f_to_device(Device::Cpu)?)?;
                        out.metrics
                            .named()
                            .into_iter()
                            .map(|(n, _)| n)
                            .zip(values)
                            .collect()
                    }
                    None => out.metrics.values()?,
                };
                let mut reduced = Metrics::reduced(&sums, gbs);
                let logged_lr = if st.adam.is_some() { lr } else { emb_lr };
                reduced.push(("train/lr".to_owned(), logged_lr));
                if let Some(e) = &mut st.ema {
                    e.update()?;
                }
                train_seconds += t0.elapsed().as_secs_f64();
                steps_run += 1;
                let get = |k: &str| {
                    reduced
                        .iter()
                        .find(|(n, _)| n == k)
                        .map_or(f64::NAN, |(_, v)| *v)
                };
                progress.update(
                    st.step,
                    gbs as u64,
                    get("train/lm_loss"),
                    get("train/accuracy"),
                );
                if let Some(l) = &mut logger {
                    let mut named: Vec<(&str, f64)> = reduced
                        .iter()
                        .map(|(n, v)| (n.strip_prefix("train/").unwrap_or(n), *v))
                        .collect();
                    named.push(("examples_per_second", progress.examples_per_second()));
                    if pg.is_some() {
                        // Time in the gradient all-reduce of this step (all buckets).
                        named.push(("allreduce_ms", comm_seconds * 1e3));
                        if let Some(w) = wait_seconds {
                            named.push(("rank_wait_ms", w * 1e3));
                        }
                    }
                    l.log("train", st.step, &named)
                        .map_err(|e| RunError::io(&run_dir, e))?;
                }
                if run.max_steps.is_some_and(|m| st.step >= m) {
                    drop(plans);
                    // Logged up to the checkpoint's step before it exists (a resume keeps
                    // those lines).
                    if let Some(l) = &mut logger {
                        l.flush().map_err(|e| RunError::io(&run_dir, e))?;
                    }
                    let extra = extra_map(iter_id, batch_in_iter, total_steps, false);
                    if let Some(dir) = save(&st, extra)? {
                        last_checkpoint = Some(dir);
                    }
                    stopped = true;
                    break 'iters;
                }
            }

            // Evaluation (with the EMA weights when EMA is on).
            let min_eval = cfg.min_eval_interval.unwrap_or(0);
            let test_ds = if iter_id >= min_eval {
                test_ds.as_mut()
            } else {
                None
            };
            if let Some(test) = test_ds {
                progress.println("evaluate");
                let loss = options.loss;
                let save_keys = cfg.eval_save_outputs.clone();
                st.model
                    .set_weight_quant(cfg.quant.as_ref().and_then(|q| q.weight_grid()));
                let act = st.act_ranges.clone().filter(|_| act_qat(cfg));
                st.model.set_act_quant(act.map(ActQuant::Apply))?;
                let model = &st.model;
                let ev = evaluators.as_mut();
                let result = match &st.ema {
                    Some(e) => e.with_ema(|| {
                        evaluate_with(model, test, loss, device, &save_keys, pg, ev)
                    })??,
                    None => evaluate_with(model, test, loss, device, &save_keys, pg, ev)?,
                };
                let flat = result.flat();
                if run.rank == 0 {
                    progress.println(&format!(
                        "eval step {}: {}",
                        st.step,
                        flat.iter()
                            .map(|(n, v)| format!("{n}={v:.4}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                if let Some(l) = &mut logger {
                    let named: Vec<(&str, f64)> =
                        flat.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                    l.log("eval", st.step, &named)
                        .map_err(|e| RunError::io(&run_dir, e))?;
                    l.flush().map_err(|e| RunError::io(&run_dir, e))?;
                }
                // Rank 0 holds every rank's outputs, in the global batch order.
                if run.rank == 0 {
                    write_saved(
                        &run_dir.join(format!(
                            "step_{}_all_preds.{}.safetensors",
                            st.step, run.rank
                        )),
                        &result.saved,
                    )?;
                    // As the reference: <checkpoint_path>/evaluator_<class>_step_<N>/.
                    for r in &result.evaluators {
                        let dir = run_dir.join(format!("evaluator_{}_step_{}", r.class, st.step));
                        for (name, contents) in &r.files {
                            std::fs::create_dir_all(&dir).map_err(|e| RunError::io(&dir, e))?;
                            let path = dir.join(name);
                            std::fs::write(&path, contents).map_err(|e| RunError::io(&path, e))?;
                            progress.println(&format!("{} wrote {}", r.class, path.display()));
                        }
                    }
                }
                last_eval = Some(result);
            }
            let last = iter_id + 1 == total_iters;
            if cfg.checkpoint_every_eval || last {
                if let Some(l) = &mut logger {
                    l.flush().map_err(|e| RunError::io(&run_dir, e))?;
                }
                let extra = extra_map(iter_id + 1, 0, total_steps, last);
                if let Some(dir) = save(&st, extra)? {
                    last_checkpoint = Some(dir);
                }
            }
        }
    }
    progress.finish();
    // No rank leaves (rank 0 taking the store with it) before all are done.
    if let Some(pg) = pg {
        pg.barrier()?;
    }
    if let Some(l) = logger {
        match l.finish() {
            Ok(files) => {
                if !run.quiet {
                    eprintln!(
                        "{} learning-curve plot(s) in {}",
                        files.len(),
                        run_dir.join("plots").display()
                    );
                }
            }
            Err(e) => eprintln!("warning: plots not drawn: {e}"),
        }
    }
    Ok(TrainSummary {
        step: st.step,
        total_steps,
        resumed_from,
        finished: finished || !stopped,
        last_eval,
        last_checkpoint,
        train_seconds,
        steps_run,
        run_dir,
    })
}

/// Refuses, before any work, a run that would train no step: `global_batch_size` larger than
/// what one iteration (`eval_interval` epochs) of every training set can fill (the sampler
/// drops each iteration's last, partial batch, as the reference's does), or a step count of 0.
/// A set too small while another fills batches only gets a warning (on `report`).
fn check_batch_fits(
    cfg: &TrainConfig,
    train: &PuzzleDataset,
    epochs_per_iter: u64,
    total_steps: u64,
    report: bool,
) -> Result<(), RunError> {
    let gbs = cfg.global_batch_size as usize;
    let rows = train.max_train_rows_per_iter();
    let largest = rows.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if largest < gbs {
        let (set, _) = rows
            .iter()
            .max_by_key(|(_, n)| *n)
            .copied()
            .unwrap_or(("train", 0));
        return Err(RunError::Invalid(format!(
            "global_batch_size {gbs} is larger than the training data: one iteration \
             ({epochs_per_iter} epoch(s), eval_interval) draws at most {largest} examples \
             (set {set}), so no batch would be filled and no step would run; use a \
             global_batch_size of at most {largest}, or more epochs per iteration"
        )));
    }
    if total_steps == 0 {
        return Err(RunError::Invalid(format!(
            "the run has 0 training steps (epochs {} x {} groups x {} examples per puzzle / \
             global_batch_size {gbs}, truncated): raise epochs or lower global_batch_size",
            cfg.epochs,
            train.metadata().total_groups,
            train.metadata().mean_puzzle_examples
        )));
    }
    if report {
        for (set, n) in rows.iter().filter(|(_, n)| *n < gbs) {
            eprintln!(
                "warning: set {set} fills no batch (global_batch_size {gbs}, at most {n} \
                 examples an iteration): it is not trained on"
            );
        }
    }
    Ok(())
}

/// Whether the evaluation data is legitimately absent: every dataset folder exists and has no
/// `test` entry at all. A `test` folder that is there (even incomplete) is read, and fails
/// with the file at fault.
fn test_split_absent(paths: &[PathBuf]) -> bool {
    !paths.is_empty()
        && paths
            .iter()
            .all(|p| p.is_dir() && std::fs::symlink_metadata(p.join("test")).is_err())
}

/// The checkpoint a run resumes from: the newest finished one in `run_dir`. Newer `step_<N>`
/// folders that are damaged are skipped with a warning (on `report`) saying which checkpoint
/// is used instead; a run folder with checkpoint folders of which none is usable is an error
/// (resuming would silently start afresh over them).
fn resume_point(run_dir: &Path, report: bool) -> Result<Option<(u64, PathBuf)>, RunError> {
    let n = ckpt::newest(run_dir)?;
    if report {
        for (_, dir, why) in &n.unusable {
            eprintln!("warning: not resuming from {}: {why}", dir.display());
        }
    }
    match (&n.usable, n.unusable.first()) {
        (Some((step, dir)), Some(_)) if report => eprintln!(
            "warning: resuming from the newest finished checkpoint instead: {} (step {step})",
            dir.display()
        ),
        (None, Some((_, dir, _))) => {
            return Err(RunError::Invalid(format!(
                "{} holds checkpoint folders but no finished checkpoint (the newest, {}, is \
                 damaged: see the warning above); start afresh without resuming \
                 (--no-resume) or restore a checkpoint",
                run_dir.display(),
                dir.display()
            )));
        }
        _ => {}
    }
    Ok(n.usable)
}

/// The global batch must split evenly over the ranks.
fn check_batch_split(global_batch_size: u32, world_size: usize) -> Result<(), RunError> {
    if world_size == 0 || !(global_batch_size as usize).is_multiple_of(world_size) {
        return Err(RunError::Invalid(format!(
            "global_batch_size {global_batch_size} does not split evenly over {world_size} \
             processes (each rank takes global_batch_size / world_size rows): choose a multiple \
             of {world_size}"
        )));
    }
    Ok(())
}

/// Checks, before any process group is joined, that `global_batch_size` splits over
/// `world_size` ranks.
pub fn check_world_size(config: &TrainConfig, world_size: usize) -> Result<(), RunError> {
    check_batch_split(config.global_batch_size, world_size)
}

fn extra_map(
    iteration: u64,
    batch_in_iter: u64,
    total_steps: u64,
    finished: bool,
) -> Map<String, Value> {
    let v = json!({
        "iteration": iteration,
        "batch_in_iter": batch_in_iter,
        "total_steps": total_steps,
        "finished": finished,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
