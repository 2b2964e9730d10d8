//! Training configuration: the reference's `cfg_pretrain.yaml` + `arch/trm.yaml`, same key
//! names, same defaults, same command-line override syntax.
//!
//! A config is built in layers, as hydra composes the reference's:
//! 1. a YAML file ([`TrainConfig::load`]). A file starting with a `defaults:` list (as the
//!    reference's `cfg_pretrain.yaml` does) is merged over the reference defaults
//!    ([`TrainConfig::reference_defaults`]); a file without one is complete by itself (every
//!    required key present), like a run's `all_config.yaml`;
//! 2. `key=value` overrides in hydra's syntax ([`TrainConfig::apply_overrides`]):
//!    `arch.L_layers=2`, `lr=1e-4`, `ema=True`, `data_paths="[data/a,data/b]"`, `+run_name=x`;
//! 3. interpolations (`puzzle_emb_ndim: ${.hidden_size}`) are resolved, then every key is type
//!    checked. Unknown keys, values of the wrong type and missing required keys are errors that
//!    name the key.
//!
//! [`TrainConfig::to_yaml`] writes the effective config as the reference's `all_config.yaml`
//! (PyYAML layout: sorted keys, block style), which trm-export's reference importer reads.

mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

use trm_nostd::{Config, PosEncoding};
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

/// The reference defaults (cfg_pretrain.yaml composed with arch/trm.yaml).
const REFERENCE_DEFAULTS: &str = include_str!("defaults.yaml");

/// The model class name of TRM in the reference (`arch.name`).
pub const TRM_ARCH_NAME: &str = trm_export::reference::REFERENCE_ARCH_NAME;
/// The loss head class name in the reference (`arch.loss.name`).
pub const ACT_LOSS_HEAD_NAME: &str = "losses@ACTLossHead";

/// Why a config cannot be loaded. Every variant names the key or the text at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A document is not valid YAML or not a mapping.
    Yaml {
        /// The file (or "overrides", "defaults").
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A key that the config does not have.
    UnknownKey {
        /// The dotted key.
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
    },
    /// A required key is absent.
    Missing {
        /// The dotted key.
        key: String,
    },
    /// A value has the wrong type.
    BadValue {
        /// The dotted key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A value has the right type but is out of range or inconsistent.
    Invalid {
        /// The dotted key.
        key: String,
        /// Why.
        reason: String,
    },
    /// An override is not of the form `key=value`.
    BadOverride {
        /// The override text.
        text: String,
        /// Why.
        reason: String,
    },
    /// The model settings are rejected by [`Config::validate`].
    Arch(trm_nostd::ConfigError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "config: reading {}: {source}", path.display())
            }
            ConfigError::Yaml { origin, message } => write!(f, "config {origin}: {message}"),
            ConfigError::UnknownKey { key, suggestion } => {
                write!(f, "config: unknown key `{key}`")?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean `{s}`?)")?;
                }
                Ok(())
            }
            ConfigError::Missing { key } => write!(f, "config: required key `{key}` is missing"),
            ConfigError::BadValue {
                key,
                expected,
                found,
            } => write!(f, "config: `{key}` must be {expected}, found {found}"),
            ConfigError::Invalid { key, reason } => write!(f, "config: `{key}`: {reason}"),
            ConfigError::BadOverride { text, reason } => {
                write!(f, "config override `{text}`: {reason}")
            }
            ConfigError::Arch(e) => write!(f, "arch {e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            ConfigError::Arch(e) => Some(e),
            _ => None,
        }
    }
}

/// The loss applied to the token logits (`arch.loss.loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossType {
    /// `stablemax_cross_entropy` (the paper's; computed in f64).
    StablemaxCrossEntropy,
    /// `softmax_cross_entropy`.
    SoftmaxCrossEntropy,
}

impl LossType {
    /// The reference's name.
    pub fn name(self) -> &'static str {
        match self {
            LossType::StablemaxCrossEntropy => "stablemax_cross_entropy",
            LossType::SoftmaxCrossEntropy => "softmax_cross_entropy",
        }
    }
}

/// `arch.loss`: the loss head.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    /// `name`: the loss head class (`losses@ACTLossHead`, the only one).
    pub name: String,
    /// `loss_type`.
    pub loss_type: LossType,
}

/// `arch`: the model (the reference's `TinyRecursiveReasoningModel_ACTV1Config` without the
/// dataset-given sizes, which come from the dataset's metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchConfig {
    /// `name`: the model class (TRM's, [`TRM_ARCH_NAME`]).
    pub name: String,
    /// `loss`.
    pub loss: LossConfig,
    /// `halt_exploration_prob`: probability of a random minimum of ACT steps in training.
    pub halt_exploration_prob: f64,
    /// `halt_max_steps`: ACT steps at most (16).
    pub halt_max_steps: u32,
    /// `H_cycles` (3).
    pub h_cycles: u32,
    /// `L_cycles` (6 Sudoku, 4 others).
    pub l_cycles: u32,
    /// `H_layers` (ignored by TRM; kept for the reference layout).
    pub h_layers: u32,
    /// `L_layers` (2).
    pub l_layers: u32,
    /// `hidden_size` (512).
    pub hidden_size: u32,
    /// `num_heads` (8).
    pub num_heads: u32,
    /// `expansion` (4).
    pub expansion: f64,
    /// `puzzle_emb_ndim` (`${.hidden_size}` by default; 0: no puzzle embedding).
    pub puzzle_emb_ndim: u32,
    /// `pos_encodings`: `rope`, `learned` or `none`.
    pub pos_encodings: PosEncoding,
    /// `forward_dtype`: `bfloat16` (default), `float32` or `float16`.
    pub forward_dtype: String,
    /// `mlp_t`: token mixing by an MLP over the sequence instead of attention.
    pub mlp_t: bool,
    /// `puzzle_emb_len` (16; 0 means `ceil(puzzle_emb_ndim / hidden_size)`).
    pub puzzle_emb_len: u32,
    /// `no_ACT_continue`: no Q-continue loss (true).
    pub no_act_continue: bool,
    /// `rms_norm_eps` (1e-5).
    pub rms_norm_eps: f64,
    /// `rope_theta` (1e4).
    pub rope_theta: f64,
}

/// One entry of `evaluators` (`name` plus free options, passed to the evaluator).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorConfig {
    /// `name`, e.g. `arc@ARC`.
    pub name: String,
    /// Every other key, as written.
    pub options: Vec<(String, Yaml)>,
}

/// Every training setting (the reference's `PretrainConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// `arch`: the model.
    pub arch: ArchConfig,
    /// `data_paths`: dataset folders for training (and testing unless `data_paths_test`).
    pub data_paths: Vec<String>,
    /// `data_paths_test`: dataset folders for evaluation (empty: `data_paths`).
    pub data_paths_test: Vec<String>,
    /// `evaluators`.
    pub evaluators: Vec<EvaluatorConfig>,
    /// `global_batch_size`: examples per optimizer step over all ranks.
    pub global_batch_size: u32,
    /// `epochs`.
    pub epochs: u64,
    /// `lr`: AdamATan2 learning rate.
    pub lr: f64,
    /// `lr_min_ratio`: the cosine schedule ends at `lr * lr_min_ratio` (1.0: constant).
    pub lr_min_ratio: f64,
    /// `lr_warmup_steps`: linear warm-up length.
    pub lr_warmup_steps: u64,
    /// `weight_decay` of AdamATan2.
    pub weight_decay: f64,
    /// `beta1` of AdamATan2.
    pub beta1: f64,
    /// `beta2` of AdamATan2.
    pub beta2: f64,
    /// `puzzle_emb_lr`: sign-SGD learning rate of the puzzle embeddings.
    pub puzzle_emb_lr: f64,
    /// `puzzle_emb_weight_decay`.
    pub puzzle_emb_weight_decay: f64,
    /// `project_name` (default: from the first data path).
    pub project_name: Option<String>,
    /// `run_name` (default: generated).
    pub run_name: Option<String>,
    /// `load_checkpoint`: weights to start from.
    pub load_checkpoint: Option<String>,
    /// `checkpoint_path` (default `checkpoints/<project_name>/<run_name>`).
    pub checkpoint_path: Option<String>,
    /// `seed`.
    pub seed: u64,
    /// `checkpoint_every_eval`: save a checkpoint at every evaluation.
    pub checkpoint_every_eval: bool,
    /// `eval_interval`: epochs between evaluations (must divide `epochs`; none: only at the end).
    pub eval_interval: Option<u64>,
    /// `min_eval_interval`: evaluation starts after this many evaluation intervals.
    pub min_eval_interval: Option<u64>,
    /// `eval_save_outputs`: model outputs saved by evaluation.
    pub eval_save_outputs: Vec<String>,
    /// `ema`: keep an exponential moving average of the weights.
    pub ema: bool,
    /// `ema_rate` (0.999).
    pub ema_rate: f64,
    /// `freeze_weights`: train only the puzzle embeddings.
    pub freeze_weights: bool,
    /// `checkpoint_keep_last` (this trainer's, not the reference's): keep only the newest N
    /// checkpoints; absent: keep all, as the reference does.
    pub checkpoint_keep_last: Option<u32>,
}

/// Keys of the top level, in the reference's field order.
const TOP_KEYS: &[&str] = &[
    "arch",
    "data_paths",
    "data_paths_test",
    "evaluators",
    "global_batch_size",
    "epochs",
    "lr",
    "lr_min_ratio",
    "lr_warmup_steps",
    "weight_decay",
    "beta1",
    "beta2",
    "puzzle_emb_lr",
    "puzzle_emb_weight_decay",
    "project_name",
    "run_name",
    "load_checkpoint",
    "checkpoint_path",
    "seed",
    "checkpoint_every_eval",
    "eval_interval",
    "min_eval_interval",
    "eval_save_outputs",
    "ema",
    "ema_rate",
    "freeze_weights",
    "checkpoint_keep_last",
];

/// Keys of `arch`.
const ARCH_KEYS: &[&str] = &[
    "name",
    "loss",
    "halt_exploration_prob",
    "halt_max_steps",
    "H_cycles",
    "L_cycles",
    "H_layers",
    "L_layers",
    "hidden_size",
    "num_heads",
    "expansion",
    "puzzle_emb_ndim",
    "pos_encodings",
    "forward_dtype",
    "mlp_t",
    "puzzle_emb_len",
    "no_ACT_continue",
    "rms_norm_eps",
    "rope_theta",
];

/// Keys of `arch.loss`.
const LOSS_KEYS: &[&str] = &["name", "loss_type"];

/// Keys of the composition machinery that carry no setting.
const HYDRA_KEYS: &[&str] = &["defaults", "hydra"];

/// Takes typed values out of one mapping, remembering the dotted path for errors.
struct Section {
    prefix: String,
    map: Hash,
}

impl Section {
    fn new(prefix: &str, node: Yaml) -> Result<Self, ConfigError> {
        match node {
            Yaml::Hash(map) => Ok(Section {
                prefix: prefix.to_string(),
                map,
            }),
            other => Err(ConfigError::BadValue {
                key: if prefix.is_empty() {
                    "<root>".into()
                } else {
                    prefix.into()
                },
                expected: "a mapping",
                found: tree::describe(&other),
            }),
        }
    }

    fn key(&self, k: &str) -> String {
        if self.prefix.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.prefix)
        }
    }

    /// The value of `k`, `None` if absent or null.
    fn take(&mut self, k: &str) -> Option<Yaml> {
        match self.map.remove(&Yaml::String(k.to_string())) {
            None | Some(Yaml::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn required(&mut self, k: &str) -> Result<Yaml, ConfigError> {
        self.take(k)
            .ok_or_else(|| ConfigError::Missing { key: self.key(k) })
    }

    fn bad(&self, k: &str, expected: &'static str, v: &Yaml) -> ConfigError {
        ConfigError::BadValue {
            key: self.key(k),
            expected,
            found: tree::describe(v),
        }
    }

    fn to_u64(&self, k: &str, v: &Yaml) -> Result<u64, ConfigError> {
        const WHAT: &str = "a non-negative integer";
        match v {
            Yaml::Integer(i) => u64::try_from(*i).map_err(|_| self.bad(k, WHAT, v)),
            Yaml::Real(_) | Yaml::String(_) => {
                let x = match v {
                    Yaml::String(s) => s.trim().parse::<f64>().ok(),
                    _ => v.as_f64(),
                };
                match x {
                    Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 => Ok(x as u64),
                    _ => Err(self.bad(k, WHAT, v)),
                }
            }
            _ => Err(self.bad(k, WHAT, v)),
        }
    }

    fn u64_req(&mut self, k: &str) -> Result<u64, ConfigError> {
        let v = self.required(k)?;
        self.to_u64(k, &v)
    }

    fn u64_opt(&mut self, k: &str) -> Result<Option<u64>, ConfigError> {
        match self.take(k) {
            None => Ok(None),
            Some(v) => self.to_u64(k, &v).map(Some),
        }
    }

    fn u32_req(&mut self, k: &str) -> Result<u32, ConfigError> {
        let v = self.u64_req(k)?;
        u32::try_from(v).map_err(|_| ConfigError::Invalid {
            key: self.key(k),
            reason: format!("{v} is too large"),
        })
    }

    fn u32_or(&mut self, k: &str, default: u32) -> Result<u32, ConfigError> {
        match self.take(k) {
            None => Ok(default),
            Some(v) => {
                let n = self.to_u64(k, &v)?;
                u32::try_from(n).map_err(|_| ConfigError::Invalid {
                    key: self.key(k),
                    reason: format!("{n} is too large"),
                })
            }
        }
    }

    fn to_f64(&self, k: &str, v: &Yaml) -> Result<f64, ConfigError> {
        let x = match v {
            Yaml::Integer(i) => Some(*i as f64),
            Yaml::Real(_) => v.as_f64(),
            // PyYAML (YAML 1.1) reads `1e-4` as a string; pydantic then parses it.
            Yaml::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(self.bad(k, "a finite number", v)),
        }
    }

    fn f64_req(&mut self, k: &str) -> Result<f64, ConfigError> {
        let v = self.required(k)?;
        self.to_f64(k, &v)
    }

    fn f64_or(&mut self, k: &str, default: f64) -> Result<f64, ConfigError> {
        match self.take(k) {
            None => Ok(default),
            Some(v) => self.to_f64(k, &v),
        }
    }

    fn bool_or(&mut self, k: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(k) {
            None => Ok(default),
            Some(Yaml::Boolean(b)) => Ok(b),
            Some(v @ Yaml::String(_)) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("true" | "yes" | "on") => Ok(true),
                Some("false" | "no" | "off") => Ok(false),
                _ => Err(self.bad(k, "true or false", &v)),
            },
            Some(v) => Err(self.bad(k, "true or false", &v)),
        }
    }

    fn to_string_value(&self, k: &str, v: &Yaml) -> Result<String, ConfigError> {
        match v {
            Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
            Yaml::Integer(i) => Ok(i.to_string()),
            Yaml::Boolean(b) => Ok(b.to_string()),
            _ => Err(self.bad(k, "a string", v)),
        }
    }

    fn string_req(&mut self, k: &str) -> Result<String, ConfigError> {
        let v = self.required(k)?;
        self.to_string_value(k, &v)
    }

    fn string_opt(&mut self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.take(k) {
            None => Ok(None),
            Some(v) => self.to_string_value(k, &v).map(Some),
        }
    }

    fn strings(&mut self, k: &str, required: bool) -> Result<Vec<String>, ConfigError> {
        let v = if required {
            self.required(k)?
        } else {
            match self.take(k) {
                None => return Ok(Vec::new()),
                Some(v) => v,
            }
        };
        match v {
            Yaml::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.to_string_value(&format!("{k}[{i}]"), item))
                .collect(),
            other => Err(self.bad(k, "a list of strings", &other)),
        }
    }

    /// Errors on the first key left over.
    fn finish(self, known: &[&str]) -> Result<(), ConfigError> {
        let Some((k, _)) = self.map.into_iter().next() else {
            return Ok(());
        };
        let name = match &k {
            Yaml::String(s) => s.clone(),
            other => tree::describe(other),
        };
        let suggestion = closest(&name, known).map(|s| {
            if self.prefix.is_empty() {
                s.to_string()
            } else {
                format!("{}.{s}", self.prefix)
            }
        });
        Err(ConfigError::UnknownKey {
            key: if self.prefix.is_empty() {
                name
            } else {
                format!("{}.{name}", self.prefix)
            },
            suggestion,
        })
    }
}

/// The known key nearest to `name` (edit distance at most a third of its length, at least 2).
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (name.len() / 3).max(2);
    known
        .iter()
        .map(|k| {
            (
                edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn pos_encoding_name(p: PosEncoding) -> &'static str {
    match p {
        PosEncoding::Rope => "rope",
        PosEncoding::Learned => "learned",
        PosEncoding::None => "none",
    }
}

/// The tree a config is read from, before typing.
fn compose(file: Option<(&str, &str)>, overrides: &[String]) -> Result<Yaml, ConfigError> {
    let mut root = match file {
        Some((text, origin)) => {
            let doc = tree::parse_document(text, origin)?;
            if matches!(doc["defaults"], Yaml::BadValue) {
                doc
            } else {
                check_defaults_list(&doc["defaults"], origin)?;
                let mut base = tree::parse_document(REFERENCE_DEFAULTS, "defaults")?;
                tree::merge(&mut base, doc);
                base
            }
        }
        None => tree::parse_document(REFERENCE_DEFAULTS, "defaults")?,
    };
    for text in overrides {
        let o = tree::parse_override(text)?;
        tree::set_path(&mut root, &o.path, o.value)?;
    }
    tree::resolve_interpolations(&mut root)?;
    Ok(root)
}

/// Accepts the `defaults` lists that mean "the reference's composition": `arch: trm` and
/// `_self_` entries.
fn check_defaults_list(list: &Yaml, origin: &str) -> Result<(), ConfigError> {
    let bad = |what: String| ConfigError::Invalid {
        key: "defaults".into(),
        reason: format!("{what} in {origin}: only `- arch: trm` and `- _self_` are supported"),
    };
    let Yaml::Array(items) = list else {
        return Err(bad("not a list".into()));
    };
    for item in items {
        match item {
            Yaml::String(s) if s == "_self_" => {}
            Yaml::Hash(h)
                if h.len() == 1
                    && h.get(&Yaml::String("arch".into())) == Some(&Yaml::String("trm".into())) => {
            }
            other => return Err(bad(format!("entry {}", tree::describe(other)))),
        }
    }
    Ok(())
}

impl TrainConfig {
    /// The reference defaults: `cfg_pretrain.yaml` composed with `arch/trm.yaml`.
    pub fn reference_defaults() -> Result<Self, ConfigError> {
        Self::from_tree(compose(None, &[])?)
    }

    /// The reference defaults with `overrides` applied, as `pretrain.py arch=trm <overrides>`.
    pub fn from_overrides<S: AsRef<str>>(overrides: &[S]) -> Result<Self, ConfigError> {
        let ov: Vec<String> = overrides.iter().map(|s| s.as_ref().to_string()).collect();
        Self::from_tree(compose(None, &ov)?)
    }

    /// Parses a YAML config text, then applies `overrides`. `origin` names the text in errors.
    pub fn from_yaml_str<S: AsRef<str>>(
        text: &str,
        origin: &str,
        overrides: &[S],
    ) -> Result<Self, ConfigError> {
        let ov: Vec<String> = overrides.iter().map(|s| s.as_ref().to_string()).collect();
        Self::from_tree(compose(Some((text, origin)), &ov)?)
    }

    /// Reads a YAML config file, then applies `overrides`.
    pub fn load<S: AsRef<str>>(path: &Path, overrides: &[S]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&text, &path.display().to_string(), overrides)
    }

    /// This config with more `key=value` overrides applied (through its YAML form, so the rules
    /// are those of [`TrainConfig::load`]). Interpolations were resolved when this config was
    /// built: here `arch.hidden_size=64` leaves `arch.puzzle_emb_ndim` as it was; pass the
    /// overrides to [`TrainConfig::load`] for hydra's behaviour.
    pub fn apply_overrides<S: AsRef<str>>(&self, overrides: &[S]) -> Result<Self, ConfigError> {
        Self::from_yaml_str(&self.to_yaml(), "config", overrides)
    }

    fn from_tree(root: Yaml) -> Result<Self, ConfigError> {
        let mut top = Section::new("", root)?;
        for k in HYDRA_KEYS {
            top.take(k);
        }
        let arch_node = top.required("arch")?;
        let mut a = Section::new("arch", arch_node)?;
        let loss_node = a.required("loss")?;
        let mut l = Section::new("arch.loss", loss_node)?;
        let loss_name = l.string_req("name")?;
        let loss_type = match l.string_req("loss_type")?.as_str() {
            "stablemax_cross_entropy" => LossType::StablemaxCrossEntropy,
            "softmax_cross_entropy" => LossType::SoftmaxCrossEntropy,
            other => {
                return Err(ConfigError::Invalid {
                    key: "arch.loss.loss_type".into(),
                    reason: format!(
                        "{other:?} is not a loss; expected stablemax_cross_entropy or \
                         softmax_cross_entropy"
                    ),
                });
            }
        };
        l.finish(LOSS_KEYS)?;
        let pos_encodings = match a.string_req("pos_encodings")?.as_str() {
            "rope" => PosEncoding::Rope,
            "learned" => PosEncoding::Learned,
            "none" => PosEncoding::None,
            other => {
                return Err(ConfigError::Invalid {
                    key: "arch.pos_encodings".into(),
                    reason: format!("{other:?}; expected rope, learned or none"),
                });
            }
        };
        let arch = ArchConfig {
            name: a.string_req("name")?,
            loss: LossConfig {
                name: loss_name,
                loss_type,
            },
            halt_exploration_prob: a.f64_req("halt_exploration_prob")?,
            halt_max_steps: a.u32_req("halt_max_steps")?,
            h_cycles: a.u32_req("H_cycles")?,
            l_cycles: a.u32_req("L_cycles")?,
            h_layers: a.u32_req("H_layers")?,
            l_layers: a.u32_req("L_layers")?,
            hidden_size: a.u32_req("hidden_size")?,
            num_heads: a.u32_req("num_heads")?,
            expansion: a.f64_req("expansion")?,
            puzzle_emb_ndim: a.u32_or("puzzle_emb_ndim", 0)?,
            pos_encodings,
            forward_dtype: a
                .string_opt("forward_dtype")?
                .unwrap_or_else(|| "bfloat16".into()),
            mlp_t: a.bool_or("mlp_t", false)?,
            puzzle_emb_len: a.u32_or("puzzle_emb_len", 16)?,
            no_act_continue: a.bool_or("no_ACT_continue", true)?,
            rms_norm_eps: a.f64_or("rms_norm_eps", 1e-5)?,
            rope_theta: a.f64_or("rope_theta", 10000.0)?,
        };
        a.finish(ARCH_KEYS)?;

        let evaluators = match top.take("evaluators") {
            None => Vec::new(),
            Some(Yaml::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let mut e = Section::new(&format!("evaluators[{i}]"), item)?;
                    let name = e.string_req("name")?;
                    let mut options: Vec<(String, Yaml)> = e
                        .map
                        .into_iter()
                        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v))
                        .collect();
                    options.sort_by(|x, y| x.0.cmp(&y.0));
                    Ok(EvaluatorConfig { name, options })
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            Some(other) => {
                return Err(ConfigError::BadValue {
                    key: "evaluators".into(),
                    expected: "a list of {name: ...} mappings",
                    found: tree::describe(&other),
                });
            }
        };

        let cfg = TrainConfig {
            arch,
            data_paths: top.strings("data_paths", true)?,
            data_paths_test: top.strings("data_paths_test", false)?,
            evaluators,
            global_batch_size: top.u32_req("global_batch_size")?,
            epochs: top.u64_req("epochs")?,
            lr: top.f64_req("lr")?,
            lr_min_ratio: top.f64_req("lr_min_ratio")?,
            lr_warmup_steps: top.u64_req("lr_warmup_steps")?,
            weight_decay: top.f64_req("weight_decay")?,
            beta1: top.f64_req("beta1")?,
            beta2: top.f64_req("beta2")?,
            puzzle_emb_lr: top.f64_req("puzzle_emb_lr")?,
            puzzle_emb_weight_decay: top.f64_req("puzzle_emb_weight_decay")?,
            project_name: top.string_opt("project_name")?,
            run_name: top.string_opt("run_name")?,
            load_checkpoint: top.string_opt("load_checkpoint")?,
            checkpoint_path: top.string_opt("checkpoint_path")?,
            seed: top.u64_opt("seed")?.unwrap_or(0),
            checkpoint_every_eval: top.bool_or("checkpoint_every_eval", false)?,
            eval_interval: top.u64_opt("eval_interval")?,
            min_eval_interval: match top.u64_opt("min_eval_interval")? {
                // Absent means the reference default 0; an explicit null stays null.
                None => Some(0),
                some => some,
            },
            eval_save_outputs: top.strings("eval_save_outputs", false)?,
            ema: top.bool_or("ema", false)?,
            ema_rate: top.f64_or("ema_rate", 0.999)?,
            freeze_weights: top.bool_or("freeze_weights", false)?,
            checkpoint_keep_last: match top.u64_opt("checkpoint_keep_last")? {
                None => None,
                Some(n) => Some(u32::try_from(n).map_err(|_| ConfigError::Invalid {
                    key: "checkpoint_keep_last".into(),
                    reason: format!("{n} is too large"),
                })?),
            },
        };
        top.finish(TOP_KEYS)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and consistency (the model sizes against placeholder dataset sizes; the
    /// real check is in [`TrainConfig::model_config`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                reason,
            })
        };
        if self.arch.name != TRM_ARCH_NAME {
            return invalid(
                "arch.name",
                format!(
                    "{}; this trainer implements {TRM_ARCH_NAME}",
                    self.arch.name
                ),
            );
        }
        if self.arch.loss.name != ACT_LOSS_HEAD_NAME {
            return invalid(
                "arch.loss.name",
                format!(
                    "{}; this trainer implements {ACT_LOSS_HEAD_NAME}",
                    self.arch.loss.name
                ),
            );
        }
        if !matches!(
            self.arch.forward_dtype.as_str(),
            "float32" | "bfloat16" | "float16"
        ) {
            return invalid(
                "arch.forward_dtype",
                format!(
                    "{:?}; expected float32, bfloat16 or float16",
                    self.arch.forward_dtype
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.arch.halt_exploration_prob) {
            return invalid(
                "arch.halt_exploration_prob",
                "must be in [0, 1]".to_string(),
            );
        }
        if self.data_paths.is_empty() {
            return invalid("data_paths", "needs at least one dataset".to_string());
        }
        if self.global_batch_size == 0 {
            return invalid("global_batch_size", "must be positive".to_string());
        }
        if self.epochs == 0 {
            return invalid("epochs", "must be positive".to_string());
        }
        if let Some(iv) = self.eval_interval {
            if iv == 0 {
                return invalid("eval_interval", "must be positive".to_string());
            }
            if !self.epochs.is_multiple_of(iv) {
                return invalid(
                    "eval_interval",
                    format!("{iv} must divide epochs ({})", self.epochs),
                );
            }
        }
        for (key, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return invalid(key, format!("{v} must be in [0, 1)"));
            }
        }
        if !(0.0..=1.0).contains(&self.ema_rate) {
            return invalid("ema_rate", format!("{} must be in [0, 1]", self.ema_rate));
        }
        for (key, v) in [
            ("lr", self.lr),
            ("lr_min_ratio", self.lr_min_ratio),
            ("weight_decay", self.weight_decay),
            ("puzzle_emb_lr", self.puzzle_emb_lr),
            ("puzzle_emb_weight_decay", self.puzzle_emb_weight_decay),
        ] {
            if v < 0.0 {
                return invalid(key, format!("{v} must not be negative"));
            }
        }
        if self.checkpoint_keep_last == Some(0) {
            return invalid(
                "checkpoint_keep_last",
                "must be positive (leave it out to keep every checkpoint)".to_string(),
            );
        }
        // The architecture alone, with small placeholder dataset sizes.
        self.model_config_sizes(1, 2, 1)?;
        Ok(())
    }

    /// The model config for a dataset: `arch` plus the dataset's `seq_len`, `vocab_size` and
    /// `num_puzzle_identifiers`, validated.
    pub fn model_config(
        &self,
        meta: &trm_data::layout::DatasetMetadata,
    ) -> Result<Config, ConfigError> {
        let too_large = |what: &str, v: usize| ConfigError::Invalid {
            key: format!("dataset {what}"),
            reason: format!("{v} is too large"),
        };
        let seq_len =
            u32::try_from(meta.seq_len).map_err(|_| too_large("seq_len", meta.seq_len))?;
        let ids = u32::try_from(meta.num_puzzle_identifiers)
            .map_err(|_| too_large("num_puzzle_identifiers", meta.num_puzzle_identifiers))?;
        self.model_config_sizes(seq_len, meta.vocab_size, ids)
    }

    /// [`TrainConfig::model_config`] from the three sizes.
    pub fn model_config_sizes(
        &self,
        seq_len: u32,
        vocab_size: u32,
        num_puzzle_identifiers: u32,
    ) -> Result<Config, ConfigError> {
        let a = &self.arch;
        let c = Config {
            hidden_size: a.hidden_size,
            num_heads: a.num_heads,
            expansion: a.expansion as f32,
            l_layers: a.l_layers,
            h_cycles: a.h_cycles,
            l_cycles: a.l_cycles,
            mlp_t: a.mlp_t,
            pos_encodings: a.pos_encodings,
            puzzle_emb_ndim: a.puzzle_emb_ndim,
            puzzle_emb_len: Config::resolve_puzzle_emb_len(
                a.puzzle_emb_len,
                a.puzzle_emb_ndim,
                a.hidden_size,
            ),
            num_puzzle_identifiers,
            vocab_size,
            seq_len,
            halt_max_steps: a.halt_max_steps,
            rms_norm_eps: a.rms_norm_eps as f32,
            rope_theta: a.rope_theta as f32,
        };
        c.validate().map_err(ConfigError::Arch)?;
        Ok(c)
    }

    /// The reference's run naming: `project_name` defaults to the first data path's folder name
    /// capitalised + `-ACT-torch`, `run_name` to `<model class> <slug>` (the caller gives the
    /// slug: the reference uses two random words), `checkpoint_path` to
    /// `checkpoints/<project_name>/<run_name>`. Keys already set are kept.
    pub fn fill_run_names(&mut self, slug: &str) {
        if self.project_name.is_none() {
            let base = self
                .data_paths
                .first()
                .map(|p| {
                    Path::new(p.trim_end_matches('/'))
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            // Python's str.capitalize: first character upper, the rest lower.
            let mut chars = base.chars();
            let cap: String = match chars.next() {
                Some(c) => c
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            };
            self.project_name = Some(format!("{cap}-ACT-torch"));
        }
        if self.run_name.is_none() {
            let class = self.arch.name.rsplit('@').next().unwrap_or(&self.arch.name);
            self.run_name = Some(format!("{class} {slug}"));
        }
        if self.checkpoint_path.is_none() {
            let p = Path::new("checkpoints")
                .join(self.project_name.as_deref().unwrap_or_default())
                .join(self.run_name.as_deref().unwrap_or_default());
            self.checkpoint_path = Some(p.to_string_lossy().into_owned());
        }
    }

    /// The config as a YAML tree, in the reference's `all_config.yaml` layout.
    fn to_tree(&self) -> Yaml {
        fn s(v: &str) -> Yaml {
            Yaml::String(v.to_string())
        }
        fn f(v: f64) -> Yaml {
            Yaml::Real(tree::py_yaml_float(v))
        }
        fn u(v: u64) -> Yaml {
            i64::try_from(v).map_or_else(|_| Yaml::Real(v.to_string()), Yaml::Integer)
        }
        fn opt_s(v: &Option<String>) -> Yaml {
            v.as_deref().map_or(Yaml::Null, s)
        }
        fn list(v: &[String]) -> Yaml {
            Yaml::Array(v.iter().map(|x| s(x)).collect())
        }
        fn map(entries: Vec<(&str, Yaml)>) -> Yaml {
            let mut h = Hash::new();
            for (k, v) in entries {
                h.insert(s(k), v);
            }
            Yaml::Hash(h)
        }
        let a = &self.arch;
        let arch = map(vec![
            ("name", s(&a.name)),
            (
                "loss",
                map(vec![
                    ("name", s(&a.loss.name)),
                    ("loss_type", s(a.loss.loss_type.name())),
                ]),
            ),
            ("halt_exploration_prob", f(a.halt_exploration_prob)),
            ("halt_max_steps", u(a.halt_max_steps.into())),
            ("H_cycles", u(a.h_cycles.into())),
            ("L_cycles", u(a.l_cycles.into())),
            ("H_layers", u(a.h_layers.into())),
            ("L_layers", u(a.l_layers.into())),
            ("hidden_size", u(a.hidden_size.into())),
            ("num_heads", u(a.num_heads.into())),
            (
                "expansion",
                // The reference writes the YAML's `4` as an int; keep integral values ints.
                if a.expansion.fract() == 0.0 && a.expansion.abs() < 1e15 {
                    Yaml::Integer(a.expansion as i64)
                } else {
                    f(a.expansion)
                },
            ),
            ("puzzle_emb_ndim", u(a.puzzle_emb_ndim.into())),
            ("pos_encodings", s(pos_encoding_name(a.pos_encodings))),
            ("forward_dtype", s(&a.forward_dtype)),
            ("mlp_t", Yaml::Boolean(a.mlp_t)),
            ("puzzle_emb_len", u(a.puzzle_emb_len.into())),
            ("no_ACT_continue", Yaml::Boolean(a.no_act_continue)),
            ("rms_norm_eps", f(a.rms_norm_eps)),
            ("rope_theta", f(a.rope_theta)),
        ]);
        let evaluators = Yaml::Array(
            self.evaluators
                .iter()
                .map(|e| {
                    let mut h = Hash::new();
                    h.insert(s("name"), s(&e.name));
                    for (k, v) in &e.options {
                        h.insert(s(k), v.clone());
                    }
                    Yaml::Hash(h)
                })
                .collect(),
        );
        let mut top = vec![
            ("arch", arch),
            ("data_paths", list(&self.data_paths)),
            ("data_paths_test", list(&self.data_paths_test)),
            ("evaluators", evaluators),
            ("global_batch_size", u(self.global_batch_size.into())),
            ("epochs", u(self.epochs)),
            ("lr", f(self.lr)),
            ("lr_min_ratio", f(self.lr_min_ratio)),
            ("lr_warmup_steps", u(self.lr_warmup_steps)),
            ("weight_decay", f(self.weight_decay)),
            ("beta1", f(self.beta1)),
            ("beta2", f(self.beta2)),
            ("puzzle_emb_lr", f(self.puzzle_emb_lr)),
            ("puzzle_emb_weight_decay", f(self.puzzle_emb_weight_decay)),
            ("project_name", opt_s(&self.project_name)),
            ("run_name", opt_s(&self.run_name)),
            ("load_checkpoint", opt_s(&self.load_checkpoint)),
            ("checkpoint_path", opt_s(&self.checkpoint_path)),
            ("seed", u(self.seed)),
            (
                "checkpoint_every_eval",
                Yaml::Boolean(self.checkpoint_every_eval),
            ),
            ("eval_interval", self.eval_interval.map_or(Yaml::Null, u)),
            (
                "min_eval_interval",
                self.min_eval_interval.map_or(Yaml::Null, u),
            ),
            ("eval_save_outputs", list(&self.eval_save_outputs)),
            ("ema", Yaml::Boolean(self.ema)),
            ("ema_rate", f(self.ema_rate)),
            ("freeze_weights", Yaml::Boolean(self.freeze_weights)),
        ];
        if let Some(n) = self.checkpoint_keep_last {
            top.push(("checkpoint_keep_last", u(n.into())));
        }
        map(top)
    }

    /// The effective config as the reference's `all_config.yaml` text (PyYAML's `yaml.dump`
    /// layout: keys sorted, block style, floats as Python writes them).
    pub fn to_yaml(&self) -> String {
        tree::emit(&self.to_tree())
    }

    /// Writes [`TrainConfig::to_yaml`] to `<dir>/all_config.yaml` and returns its path.
    pub fn write_all_config(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(ALL_CONFIG_FILE);
        std::fs::write(&path, self.to_yaml())?;
        Ok(path)
    }
}

/// The file name of a run's effective config, as in the reference.
pub const ALL_CONFIG_FILE: &str = "all_config.yaml";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("L_layers", "L_layers"), 0);
        assert_eq!(closest("L_layer", ARCH_KEYS), Some("L_layers"));
        assert_eq!(closest("zzzzzz", ARCH_KEYS), None);
    }
}
