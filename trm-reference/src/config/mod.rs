//! The reference's configuration: `cfg_pretrain.yaml` + `arch/trm.yaml`, same key names, same
//! defaults, same command-line override syntax; and a run's `all_config.yaml`, which both the
//! trainer and the checkpoint importer read.
//!
//! Each key is declared once, in the tables of `config/keys.rs` (name, type, default, check);
//! the structs, their reading, checking and writing derive from them.
//!
//! A training config ([`TrainConfig`]) is built in layers, as hydra composes the reference's:
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
//! (PyYAML layout: sorted keys, block style).
//!
//! A checkpoint import reads the same schema leniently ([`ImportConfig`]): only `arch` and
//! `data_paths`, unknown keys ignored, keys it does not use taking the reference defaults.

mod error;
mod keys;
mod schema;
mod tree;
pub mod yaml;

use std::path::{Path, PathBuf};

use trm_nostd::Config;
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

pub use error::ConfigError;
pub use keys::{
    ACT_LOSS_HEAD_NAME, ActivationQuant, ArchConfig, EvaluatorConfig, LossConfig, LossType,
    QuantConfig, TRM_ARCH_NAME, TrainConfig, WeightQuant,
};
use schema::{Cx, Mode, Need, Section, Value};

/// The reference defaults (cfg_pretrain.yaml composed with arch/trm.yaml).
const REFERENCE_DEFAULTS: &str = include_str!("defaults.yaml");

/// Keys of the composition machinery that carry no setting.
const HYDRA_KEYS: &[&str] = &["defaults", "hydra"];

/// The file name of a run's effective config, as in the reference.
pub const ALL_CONFIG_FILE: &str = "all_config.yaml";

/// The reference defaults as a tree, interpolations unresolved.
fn defaults_tree() -> Result<Yaml, ConfigError> {
    tree::parse_document(REFERENCE_DEFAULTS, "defaults")
}

/// The tree a training config is read from, before typing.
fn compose(file: Option<(&str, &str)>, overrides: &[String]) -> Result<Yaml, ConfigError> {
    let mut root = match file {
        Some((text, origin)) => {
            let doc = tree::parse_document(text, origin)?;
            if matches!(doc["defaults"], Yaml::BadValue) {
                doc
            } else {
                check_defaults_list(&doc["defaults"], origin)?;
                let mut base = defaults_tree()?;
                tree::merge(&mut base, doc);
                base
            }
        }
        None => defaults_tree()?,
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

    /// Reads a YAML config file (at most [`yaml::MAX_INPUT_BYTES`]), then applies `overrides`.
    pub fn load<S: AsRef<str>>(path: &Path, overrides: &[S]) -> Result<Self, ConfigError> {
        let text = yaml::read_file(path)?;
        Self::from_yaml_str(&text, &path.display().to_string(), overrides)
    }

    /// This config with more `key=value` overrides applied (through its YAML form, so the rules
    /// are those of [`TrainConfig::load`]). Interpolations were resolved when this config was
    /// built: here `arch.hidden_size=64` leaves `arch.puzzle_emb_ndim` as it was; pass the
    /// overrides to [`TrainConfig::load`] for hydra's behaviour.
    pub fn apply_overrides<S: AsRef<str>>(&self, overrides: &[S]) -> Result<Self, ConfigError> {
        Self::from_yaml_str(&self.to_yaml(), "config", overrides)
    }

    fn from_tree(mut root: Yaml) -> Result<Self, ConfigError> {
        if let Yaml::Hash(h) = &mut root {
            for k in HYDRA_KEYS {
                h.remove(&Yaml::String((*k).to_string()));
            }
        }
        let cx = Cx {
            key: String::new(),
            mode: Mode::Train,
            defaults: &Yaml::BadValue,
        };
        let cfg = TrainConfig::from_yaml(root, &cx)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and consistency: every key's check (declared with the key), then what
    /// involves several keys, then the model sizes against placeholder dataset sizes (the real
    /// check is in [`TrainConfig::model_config`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_keys("", Mode::Train)?;
        if let Some(iv) = self.eval_interval
            && !self.epochs.is_multiple_of(iv)
        {
            return Err(ConfigError::Invalid {
                key: "eval_interval".into(),
                reason: format!("{iv} must divide epochs ({})", self.epochs),
            });
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
        let c = self
            .arch
            .model_config(seq_len, vocab_size, num_puzzle_identifiers);
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

    /// The effective config as the reference's `all_config.yaml` text (PyYAML's `yaml.dump`
    /// layout: keys sorted, block style, floats as Python writes them).
    pub fn to_yaml(&self) -> String {
        tree::emit(&Value::to_yaml(self))
    }

    /// Writes [`TrainConfig::to_yaml`] to `<dir>/all_config.yaml` and returns its path.
    pub fn write_all_config(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(ALL_CONFIG_FILE);
        std::fs::write(&path, self.to_yaml())?;
        Ok(path)
    }
}

impl QuantConfig {
    /// The grid of the weight matrices, `None` for `weights: none`.
    pub fn weight_grid(&self) -> Option<WeightQuant> {
        Some(self.weights).filter(|w| *w != WeightQuant::None)
    }
}

impl ArchConfig {
    /// `puzzle_emb_len` as the model uses it (0 resolved to `ceil(puzzle_emb_ndim /
    /// hidden_size)`).
    pub fn resolved_puzzle_emb_len(&self) -> u32 {
        Config::resolve_puzzle_emb_len(self.puzzle_emb_len, self.puzzle_emb_ndim, self.hidden_size)
    }

    /// The model config of this architecture with the dataset-given sizes, not validated.
    pub fn model_config(
        &self,
        seq_len: u32,
        vocab_size: u32,
        num_puzzle_identifiers: u32,
    ) -> Config {
        Config {
            hidden_size: self.hidden_size,
            num_heads: self.num_heads,
            expansion: self.expansion as f32,
            l_layers: self.l_layers,
            h_cycles: self.h_cycles,
            l_cycles: self.l_cycles,
            mlp_t: self.mlp_t,
            pos_encodings: self.pos_encodings,
            puzzle_emb_ndim: self.puzzle_emb_ndim,
            puzzle_emb_len: self.resolved_puzzle_emb_len(),
            num_puzzle_identifiers,
            vocab_size,
            seq_len,
            halt_max_steps: self.halt_max_steps,
            rms_norm_eps: self.rms_norm_eps as f32,
            rope_theta: self.rope_theta as f32,
        }
    }
}

/// What a checkpoint import reads from a run's `all_config.yaml` (the reference's or ours):
/// the same schema as [`TrainConfig`], read leniently.
///
/// - Only `arch`, `data_paths`, `ema` and `quant` are read; every other key is left alone, so files with
///   keys this schema does not know (newer or forked reference versions) import.
/// - In `arch`, unknown keys are ignored; the keys an import does not use (`name`, `loss`,
///   `halt_exploration_prob`, `H_layers`) take the reference defaults when absent, and a present
///   `name` must be TRM's; the other required keys must be present, with the types of the
///   schema. The training-only checks (e.g. `forward_dtype` among the three the trainer runs)
///   are not made.
/// - `data_paths` may be absent (no dataset to size the model from).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportConfig {
    /// `arch`.
    pub arch: ArchConfig,
    /// `data_paths`: dataset folders, relative to where the run was started.
    pub data_paths: Vec<String>,
    /// `ema` (default false): whether the run kept an exponential moving average of the
    /// weights, which is then what the reference evaluates and saves.
    pub ema: bool,
    /// `quant` (this trainer's): the run fine-tuned its weights onto an integer grid (QAT),
    /// so its checkpoints hold weights on that grid; `None` when absent.
    pub quant: Option<QuantConfig>,
}

impl ImportConfig {
    /// The grid the checkpoint's weight matrices are on: `quant.weights` when the run used
    /// QAT (`None` without a `quant` section or with `weights: none`).
    pub fn weight_grid(&self) -> Option<WeightQuant> {
        self.quant.as_ref().and_then(QuantConfig::weight_grid)
    }

    /// Reads an `all_config.yaml` file (at most [`yaml::MAX_INPUT_BYTES`]).
    /// Errors name the file by its name (callers add the folder).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = yaml::read_file(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::from_yaml_str(&text, &name)
    }

    /// Reads the text of an `all_config.yaml`; `origin` names it in errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        const ARCH: &str = "arch";
        const DATA_PATHS: &str = "data_paths";
        const EMA: &str = "ema";
        const QUANT: &str = "quant";
        let doc = tree::parse_document(text, origin)?;
        // Only the keys an import reads: nothing else in the file can make it fail.
        let mut read = Hash::new();
        if let Yaml::Hash(h) = doc {
            for (k, v) in h {
                if matches!(k.as_str(), Some(ARCH | DATA_PATHS | EMA | QUANT)) {
                    read.insert(k, v);
                }
            }
        }
        let mut root = Yaml::Hash(read);
        tree::resolve_interpolations(&mut root)?;
        let defaults = defaults_tree()?;
        let cx = Cx {
            key: String::new(),
            mode: Mode::Import,
            defaults: &defaults,
        };
        let mut top = Section::new(root, &cx)?;
        let arch: ArchConfig = top.read(ARCH, Need::Required)?;
        let data_paths = top.read(DATA_PATHS, Need::Default(Vec::new()))?;
        let ema = top.read(EMA, Need::Default(false))?;
        let quant = top.read(QUANT, Need::Default(None))?;
        arch.check_keys(ARCH, Mode::Import)?;
        Ok(ImportConfig {
            arch,
            data_paths,
            ema,
            quant,
        })
    }
}
