//! `trm-train evaluate`: a saved checkpoint (ours or the reference's) evaluated on a test split,
//! with the config it was trained with plus `key=value` overrides.
//!
//! The overrides apply on top of the checkpoint's config (ours: the config saved in the
//! checkpoint; the reference's: `all_config.yaml` beside the checkpoint file), with the rules
//! and errors of `trm-train train`. What may change the result at evaluation:
//! `arch.halt_max_steps` (ACT steps from the initial carry, fewer or more than trained),
//! `arch.H_cycles` and `arch.L_cycles` (recursion depth), `arch.forward_dtype`,
//! `arch.loss.loss_type` (how `lm_loss` is computed), `global_batch_size` (the evaluation batch),
//! `eval_save_outputs`, `evaluators`, `checkpoint_path` (where the outputs go), and
//! `data_paths`/`data_paths_test` when no dataset is named. The keys that make the trained
//! weights ([`ARCHITECTURE_KEYS`]: sizes, layers, heads, positional encodings, ...) must keep the
//! checkpoint's values: another value is an error naming the key, before any weight is read.
//! Training-only keys (`lr`, `epochs`, ...) are accepted and have no effect.

use std::path::{Path, PathBuf};

use tch::Device;

use super::RunError;
use super::eval::{EvalOutput, SAVABLE_OUTPUTS, evaluate_with, write_saved};
use super::evaluators::{Evaluators, check_evaluators};
use super::train::{build_model, loss_kind};
use crate::ckpt;
use crate::config::{ArchConfig, TrainConfig};
use crate::data::{PuzzleDataset, PuzzleDatasetConfig};
use crate::model::checkpoint::forward_kind;
use crate::model::load_reference;
use crate::train::LossKind;

/// The file, in the output folder, holding the outputs of `eval_save_outputs` (safetensors).
pub const SAVED_OUTPUTS_FILE: &str = "all_preds.safetensors";

/// The checkpoint `trm-train evaluate` reads, resolved from the path the user gave
/// ([`EvalCheckpoint::resolve`]); its `Display` says which it is, for the command to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalCheckpoint {
    /// A trm-train checkpoint folder (`step_<N>`).
    Ours {
        /// Its step.
        step: u64,
        /// The folder.
        dir: PathBuf,
    },
    /// A reference checkpoint file (`step_<N>`, with `all_config.yaml` beside it), or weights
    /// without a trm-train manifest (`step_<N>/model.safetensors`).
    Reference {
        /// The file.
        file: PathBuf,
    },
}

impl EvalCheckpoint {
    /// Resolves `path`: a trm-train `step_<N>` folder; a trm-train run folder (one holding
    /// `step_<N>` folders with a manifest), whose newest checkpoint is used, an error when
    /// that one is damaged ([`ckpt::latest_strict`]: the user names an older one explicitly);
    /// or a reference checkpoint (file, or folder whose latest `step_<N>` is read).
    pub fn resolve(path: &Path) -> Result<Self, RunError> {
        if path.join(ckpt::META_FILE).is_file() {
            return Ok(EvalCheckpoint::Ours {
                step: ckpt::read_step(path)?,
                dir: path.to_path_buf(),
            });
        }
        if is_run_folder(path) {
            return match ckpt::latest_strict(path)? {
                Some((step, dir)) => Ok(EvalCheckpoint::Ours { step, dir }),
                None => Err(RunError::Invalid(format!(
                    "{} holds no checkpoint",
                    path.display()
                ))),
            };
        }
        let file = trm_reference::checkpoint::find_checkpoint(path)
            .map_err(crate::model::CheckpointError::Import)?;
        Ok(EvalCheckpoint::Reference { file })
    }

    /// The checkpoint folder or file.
    pub fn path(&self) -> &Path {
        match self {
            EvalCheckpoint::Ours { dir, .. } => dir,
            EvalCheckpoint::Reference { file } => file,
        }
    }

    /// The default output folder: `evaluate_<name>` beside the checkpoint (`<run
    /// folder>/evaluate_step_<N>`).
    pub fn default_output_dir(&self) -> PathBuf {
        let p = self.path();
        let name = p
            .file_name()
            .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
        p.parent()
            .unwrap_or(Path::new(""))
            .join(format!("evaluate_{name}"))
    }
}

impl std::fmt::Display for EvalCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalCheckpoint::Ours { step, dir } => {
                write!(f, "trm-train checkpoint {} (step {step})", dir.display())
            }
            EvalCheckpoint::Reference { file } => {
                write!(f, "reference checkpoint {}", file.display())
            }
        }
    }
}

/// Whether `dir` is a trm-train run folder: it holds a `step_<N>` folder with a manifest.
fn is_run_folder(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.strip_prefix("step_")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            && e.path().join(ckpt::META_FILE).is_file()
    })
}

/// How to evaluate a checkpoint ([`evaluate_checkpoint`]).
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// Dataset folders whose test split is evaluated (empty: the config's `data_paths_test`,
    /// else its `data_paths`).
    pub data: Vec<PathBuf>,
    /// Where to run.
    pub device: Device,
    /// The evaluation batch size (default: the config's `global_batch_size`; 256 for a
    /// reference checkpoint without a readable `all_config.yaml`).
    pub batch_size: Option<usize>,
    /// `key=value` overrides on the checkpoint's config (see the [module](self) docs).
    pub overrides: Vec<String>,
    /// Where saved outputs and evaluator files go (default: a `checkpoint_path` override, else
    /// [`EvalCheckpoint::default_output_dir`]).
    pub output_dir: Option<PathBuf>,
}

impl EvaluateOptions {
    /// Evaluation of `data` on `device` with the checkpoint's own config.
    pub fn new(data: Vec<PathBuf>, device: Device) -> Self {
        EvaluateOptions {
            data,
            device,
            batch_size: None,
            overrides: Vec::new(),
            output_dir: None,
        }
    }
}

/// What [`evaluate_checkpoint`] produced.
#[derive(Debug)]
pub struct CheckpointEvaluation {
    /// The metrics (and, on the CPU, the saved outputs).
    pub output: EvalOutput,
    /// The effective config (the checkpoint's with the overrides), when there is one (a
    /// reference checkpoint whose `all_config.yaml` cannot be read has none).
    pub config: Option<TrainConfig>,
    /// Where the outputs go (created only when something is written).
    pub output_dir: PathBuf,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

/// The `arch` keys that fix the trained weights (their shapes or what they were trained to
/// compute): an evaluation cannot change them. The other `arch` keys (`halt_max_steps`,
/// `H_cycles`, `L_cycles`, `forward_dtype`, the loss and the training-only ones) can.
pub const ARCHITECTURE_KEYS: [&str; 11] = [
    "name",
    "hidden_size",
    "num_heads",
    "expansion",
    "L_layers",
    "mlp_t",
    "pos_encodings",
    "puzzle_emb_ndim",
    "puzzle_emb_len",
    "rms_norm_eps",
    "rope_theta",
];

/// `(key, value)` of every [`ARCHITECTURE_KEYS`] entry of `a`, as text.
fn architecture(a: &ArchConfig) -> [(&'static str, String); 11] {
    [
        ("name", a.name.clone()),
        ("hidden_size", a.hidden_size.to_string()),
        ("num_heads", a.num_heads.to_string()),
        ("expansion", a.expansion.to_string()),
        ("L_layers", a.l_layers.to_string()),
        ("mlp_t", a.mlp_t.to_string()),
        (
            "pos_encodings",
            format!("{:?}", a.pos_encodings).to_lowercase(),
        ),
        ("puzzle_emb_ndim", a.puzzle_emb_ndim.to_string()),
        ("puzzle_emb_len", a.resolved_puzzle_emb_len().to_string()),
        ("rms_norm_eps", a.rms_norm_eps.to_string()),
        ("rope_theta", a.rope_theta.to_string()),
    ]
}

/// The key an override sets (`arch.hidden_size` of `+arch.hidden_size=64`).
fn override_key(ov: &str) -> &str {
    let key = ov.split_once('=').map_or(ov, |(k, _)| k);
    key.trim_start_matches(['+', '~']).trim()
}

/// The error for an override of an architecture key.
fn architecture_error(key: &str, trained: &str, wanted: &str) -> RunError {
    RunError::Invalid(format!(
        "arch.{key}: the checkpoint was trained with {trained}, the overrides ask for {wanted}; \
         the architecture's keys ({}) fix the trained weights and cannot change at evaluation \
         (arch.halt_max_steps, arch.H_cycles, arch.L_cycles and arch.forward_dtype can)",
        ARCHITECTURE_KEYS.join(", ")
    ))
}

/// Applies `overrides` to the checkpoint's config: `stored` (what it was trained with) and
/// `apply` (how the overrides are applied). An override of an architecture key to another
/// value is an error; so is any override the config rejects (`train`'s errors: unknown key,
/// bad value, ...).
fn effective_config(
    stored: &TrainConfig,
    overrides: &[String],
    apply: impl FnOnce(&[String]) -> Result<TrainConfig, crate::config::ConfigError>,
) -> Result<TrainConfig, RunError> {
    if overrides.is_empty() {
        return Ok(stored.clone());
    }
    let trained = architecture(&stored.arch);
    let cfg = match apply(overrides) {
        Ok(c) => c,
        Err(e) => {
            // A value the config rejects (e.g. a hidden_size the heads do not divide) for an
            // architecture key: say first that the key cannot change at all.
            for ov in overrides {
                let key = override_key(ov);
                if let Some((k, v)) = key
                    .strip_prefix("arch.")
                    .and_then(|k| trained.iter().find(|(n, _)| *n == k))
                {
                    let wanted = ov.split_once('=').map_or("", |(_, v)| v.trim());
                    if wanted != v {
                        return Err(RunError::Invalid(format!(
                            "{}; besides, the config rejects it: {e}",
                            architecture_error(k, v, wanted)
                        )));
                    }
                }
            }
            return Err(RunError::Config(e));
        }
    };
    for ((key, was), (_, now)) in trained.iter().zip(architecture(&cfg.arch)) {
        if *was != now {
            return Err(architecture_error(key, was, &now));
        }
    }
    Ok(cfg)
}

/// Where the outputs go: `--output-dir`, else an overridden `checkpoint_path`, else beside the
/// checkpoint.
fn output_dir(
    checkpoint: &EvalCheckpoint,
    opts: &EvaluateOptions,
    cfg: Option<&TrainConfig>,
) -> PathBuf {
    if let Some(d) = &opts.output_dir {
        return d.clone();
    }
    let overridden = opts
        .overrides
        .iter()
        .any(|ov| override_key(ov) == "checkpoint_path");
    match cfg.and_then(|c| c.checkpoint_path.as_deref()) {
        Some(p) if overridden => PathBuf::from(p),
        _ => checkpoint.default_output_dir(),
    }
}

/// The datasets to evaluate: the options', else the config's test (or training) paths.
fn data_paths(opts: &EvaluateOptions, cfg: Option<&TrainConfig>) -> Result<Vec<PathBuf>, RunError> {
    if !opts.data.is_empty() {
        return Ok(opts.data.clone());
    }
    let from_config = cfg.map(|c| {
        if c.data_paths_test.is_empty() {
            &c.data_paths
        } else {
            &c.data_paths_test
        }
    });
    match from_config {
        Some(paths) if !paths.is_empty() => Ok(paths.iter().map(PathBuf::from).collect()),
        _ => Err(RunError::Invalid(
            "no dataset to evaluate: name one (--data), the checkpoint has no config to take \
             data_paths from"
                .into(),
        )),
    }
}

/// The config of the reference run a checkpoint file belongs to (`all_config.yaml` beside it).
fn reference_config(file: &Path) -> Result<TrainConfig, crate::config::ConfigError> {
    let path = file
        .parent()
        .unwrap_or(Path::new(""))
        .join(crate::config::ALL_CONFIG_FILE);
    TrainConfig::load::<&str>(&path, &[])
}

/// Evaluates a checkpoint ([`EvalCheckpoint::resolve`]) on the test split of the datasets
/// (EMA weights when a trm-train checkpoint saved them), with the checkpoint's config and the
/// overrides of `opts` (see the [module](self) docs); feeds the config's evaluators, and
/// writes the outputs of `eval_save_outputs` ([`SAVED_OUTPUTS_FILE`]) and the evaluators'
/// files (`submission.json`) into the output folder.
pub fn evaluate_checkpoint(
    checkpoint: &EvalCheckpoint,
    opts: &EvaluateOptions,
) -> Result<CheckpointEvaluation, RunError> {
    let device = opts.device;
    let ds_cfg = |data: Vec<PathBuf>, gbs: usize, seed: u64| PuzzleDatasetConfig {
        seed,
        dataset_paths: data,
        global_batch_size: gbs,
        test_set_mode: true,
        epochs_per_iter: 1,
        rank: 0,
        num_replicas: 1,
    };
    let open_evaluators = |cfg: &TrainConfig, ds: &PuzzleDataset| -> Result<Evaluators, RunError> {
        if cfg.evaluators.is_empty() {
            return Ok(Evaluators::default());
        }
        let first = ds
            .config()
            .dataset_paths
            .first()
            .cloned()
            .unwrap_or_default();
        Evaluators::load(
            &cfg.evaluators,
            &first,
            i64::from(ds.metadata().blank_identifier_id),
            0,
        )
    };
    let (output, config) = match checkpoint {
        EvalCheckpoint::Ours { dir, .. } => {
            let ck = ckpt::load(dir)?;
            let cfg = effective_config(&ck.config, &opts.overrides, |ov| {
                ck.config.apply_overrides(ov)
            })?;
            check_eval_config(&cfg)?;
            let data = data_paths(opts, Some(&cfg))?;
            let gbs = opts.batch_size.unwrap_or(cfg.global_batch_size as usize);
            let mut ds = PuzzleDataset::open(ds_cfg(data, gbs, cfg.seed), "test")?;
            let mut evaluators = open_evaluators(&cfg, &ds)?;
            let (vs, model) = build_model(&cfg, ds.metadata(), device)?;
            ckpt::restore_model(&vs, ck.ema.unwrap_or(ck.model))?;
            let out = evaluate_with(
                &model,
                &mut ds,
                loss_kind(&cfg)?,
                device,
                &cfg.eval_save_outputs,
                None,
                Some(&mut evaluators),
            )?;
            (out, Some(cfg))
        }
        EvalCheckpoint::Reference { file } => {
            let all_config = file
                .parent()
                .unwrap_or(Path::new(""))
                .join(crate::config::ALL_CONFIG_FILE);
            // As pretrain.py evaluates: batches of the run's global_batch_size (padding rows
            // count in its q_halt_loss), with the run's config from all_config.yaml.
            let cfg = match reference_config(file) {
                Ok(stored) => Some(effective_config(&stored, &opts.overrides, |ov| {
                    TrainConfig::load(&all_config, ov)
                })?),
                Err(e) if !opts.overrides.is_empty() => {
                    return Err(RunError::Invalid(format!(
                        "the overrides apply to the reference run's config, which cannot be \
                         read: {}: {e}",
                        all_config.display()
                    )));
                }
                // No readable config: the weights' own architecture, no evaluators, no saved
                // outputs.
                Err(_) => None,
            };
            if let Some(cfg) = &cfg {
                check_eval_config(cfg)?;
            }
            let mut loaded = load_reference(file, device)?;
            let gbs = opts
                .batch_size
                .or_else(|| cfg.as_ref().map(|c| c.global_batch_size as usize))
                .unwrap_or(256);
            let data = data_paths(opts, cfg.as_ref())?;
            let mut ds = PuzzleDataset::open(ds_cfg(data, gbs, 0), "test")?;
            let (mut evaluators, save, loss) = match &cfg {
                Some(cfg) => {
                    let a = &cfg.arch;
                    loaded
                        .model
                        .set_recursion(a.halt_max_steps, a.h_cycles, a.l_cycles)?;
                    let kind = forward_kind(&a.forward_dtype).ok_or_else(|| {
                        RunError::Invalid(format!("unknown forward_dtype {}", a.forward_dtype))
                    })?;
                    loaded.model.set_forward_kind(kind)?;
                    (
                        open_evaluators(cfg, &ds)?,
                        cfg.eval_save_outputs.clone(),
                        loss_kind(cfg)?,
                    )
                }
                None => (Evaluators::default(), Vec::new(), LossKind::Stablemax),
            };
            let out = evaluate_with(
                &loaded.model,
                &mut ds,
                loss,
                device,
                &save,
                None,
                Some(&mut evaluators),
            )?;
            (out, cfg)
        }
    };
    let output_dir = output_dir(checkpoint, opts, config.as_ref());
    let mut written = Vec::new();
    if !output.saved.is_empty() {
        let path = output_dir.join(SAVED_OUTPUTS_FILE);
        write_saved(&path, &output.saved)?;
        written.push(path);
    }
    for result in &output.evaluators {
        for (name, contents) in &result.files {
            std::fs::create_dir_all(&output_dir).map_err(|e| RunError::io(&output_dir, e))?;
            let path = output_dir.join(name);
            std::fs::write(&path, contents).map_err(|e| RunError::io(&path, e))?;
            written.push(path);
        }
    }
    Ok(CheckpointEvaluation {
        output,
        config,
        output_dir,
        written,
    })
}

/// What `evaluate` checks in the effective config before reading weights or data: the
/// evaluators (names and options) and the names of `eval_save_outputs`.
fn check_eval_config(cfg: &TrainConfig) -> Result<(), RunError> {
    check_evaluators(&cfg.evaluators)?;
    if let Some(bad) = cfg
        .eval_save_outputs
        .iter()
        .find(|k| !SAVABLE_OUTPUTS.contains(&k.as_str()))
    {
        return Err(RunError::Invalid(format!(
            "eval_save_outputs: unknown output {bad:?}; evaluation can save {} (override \
             eval_save_outputs=[...] to choose)",
            SAVABLE_OUTPUTS.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(overrides: &[&str]) -> TrainConfig {
        let mut ov = vec!["data_paths=[x]"];
        ov.extend_from_slice(overrides);
        TrainConfig::from_overrides(&ov).expect("config")
    }

    fn apply(stored: &TrainConfig, ov: &[&str]) -> Result<TrainConfig, RunError> {
        let ov: Vec<String> = ov.iter().map(|s| (*s).to_owned()).collect();
        effective_config(stored, &ov, |o| stored.apply_overrides(o))
    }

    #[test]
    fn evaluation_keys_change_and_architecture_keys_do_not() {
        let stored = config(&["arch.hidden_size=64", "arch.num_heads=2"]);
        let cfg = apply(
            &stored,
            &[
                "arch.halt_max_steps=3",
                "arch.H_cycles=1",
                "global_batch_size=5",
                "eval_save_outputs=[preds]",
                "arch.hidden_size=64",
            ],
        )
        .expect("evaluation keys");
        assert_eq!(cfg.arch.halt_max_steps, 3);
        assert_eq!(cfg.arch.h_cycles, 1);
        assert_eq!(cfg.global_batch_size, 5);
        assert_eq!(cfg.eval_save_outputs, vec!["preds".to_owned()]);

        // Valid for the config, but not these weights.
        let e = apply(&stored, &["arch.hidden_size=128"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("arch.hidden_size") && e.contains("64") && e.contains("128"),
            "{e}"
        );
        let e = apply(&stored, &["arch.mlp_t=true"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("arch.mlp_t"), "{e}");
        // Rejected by the config too: the architecture is named first.
        let e = apply(&stored, &["arch.hidden_size=999"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("arch.hidden_size: the checkpoint was trained with 64"),
            "{e}"
        );
        // Unknown keys: train's error.
        let e = apply(&stored, &["arch.no_such_key=1"]).unwrap_err();
        let train_err = TrainConfig::from_overrides(&["data_paths=[x]", "arch.no_such_key=1"])
            .unwrap_err()
            .to_string();
        assert!(matches!(e, RunError::Config(_)), "{e}");
        assert!(e.to_string().contains(&train_err), "{e} vs {train_err}");
    }

    #[test]
    fn override_keys() {
        assert_eq!(override_key("arch.hidden_size=3"), "arch.hidden_size");
        assert_eq!(override_key("+checkpoint_path=/x=y"), "checkpoint_path");
        assert_eq!(override_key("~evaluators"), "evaluators");
    }
}
