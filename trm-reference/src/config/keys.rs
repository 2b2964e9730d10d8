//! Every key of the reference's config, declared once: reference name, Rust field, type, what an
//! absent key means, and its check. The structs, the reader (type checks, defaults, unknown and
//! missing keys), the checks and the `all_config.yaml` writer all come from these tables (see
//! [`section!`](super::schema::section)). The defaults of the reference's YAML files
//! (`cfg_pretrain.yaml`, `arch/trm.yaml`) are in `defaults.yaml`; the ones here are those of the
//! reference's pydantic classes, for keys those files leave out.

use trm_nostd::PosEncoding;
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

use super::ConfigError;
use super::schema::{Cx, Mode, Need, Section, Value, bad, section};

/// The model class name of TRM in the reference (`arch.name`).
pub const TRM_ARCH_NAME: &str = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1";
/// The loss head class name in the reference (`arch.loss.name`).
pub const ACT_LOSS_HEAD_NAME: &str = "losses@ACTLossHead";

section! {
    /// Every training setting (the reference's `PretrainConfig`).
    pub struct TrainConfig {
        /// `arch`: the model.
        arch: ArchConfig = "arch", Need::Required;
        /// `data_paths`: dataset folders for training (and testing unless `data_paths_test`).
        data_paths: Vec<String> = "data_paths", Need::Required, check = at_least_one;
        /// `data_paths_test`: dataset folders for evaluation (empty: `data_paths`).
        data_paths_test: Vec<String> = "data_paths_test", Need::Default(Vec::new());
        /// `evaluators`.
        evaluators: Vec<EvaluatorConfig> = "evaluators", Need::Default(Vec::new());
        /// `global_batch_size`: examples per optimizer step over all ranks.
        global_batch_size: u32 = "global_batch_size", Need::Required, check = positive_u32;
        /// `epochs`.
        epochs: u64 = "epochs", Need::Required, check = positive_u64;
        /// `lr`: AdamATan2 learning rate.
        lr: f64 = "lr", Need::Required, check = non_negative;
        /// `lr_min_ratio`: the cosine schedule ends at `lr * lr_min_ratio` (1.0: constant).
        lr_min_ratio: f64 = "lr_min_ratio", Need::Required, check = non_negative;
        /// `lr_warmup_steps`: linear warm-up length.
        lr_warmup_steps: u64 = "lr_warmup_steps", Need::Required;
        /// `weight_decay` of AdamATan2.
        weight_decay: f64 = "weight_decay", Need::Required, check = non_negative;
        /// `beta1` of AdamATan2.
        beta1: f64 = "beta1", Need::Required, check = below_one;
        /// `beta2` of AdamATan2.
        beta2: f64 = "beta2", Need::Required, check = below_one;
        /// `puzzle_emb_lr`: sign-SGD learning rate of the puzzle embeddings.
        puzzle_emb_lr: f64 = "puzzle_emb_lr", Need::Required, check = non_negative;
        /// `puzzle_emb_weight_decay`.
        puzzle_emb_weight_decay: f64 = "puzzle_emb_weight_decay", Need::Required,
            check = non_negative;
        /// `project_name` (default: from the first data path).
        project_name: Option<String> = "project_name", Need::Default(None);
        /// `run_name` (default: generated).
        run_name: Option<String> = "run_name", Need::Default(None);
        /// `load_checkpoint`: weights to start from.
        load_checkpoint: Option<String> = "load_checkpoint", Need::Default(None);
        /// `checkpoint_path` (default `checkpoints/<project_name>/<run_name>`).
        checkpoint_path: Option<String> = "checkpoint_path", Need::Default(None);
        /// `seed`.
        seed: u64 = "seed", Need::Default(0);
        /// `checkpoint_every_eval`: save a checkpoint at every evaluation.
        checkpoint_every_eval: bool = "checkpoint_every_eval", Need::Default(false);
        /// `eval_interval`: epochs between evaluations (must divide `epochs`; none: only at the end).
        eval_interval: Option<u64> = "eval_interval", Need::Default(None), check = positive_if_set;
        /// `min_eval_interval`: evaluation starts after this many evaluation intervals.
        min_eval_interval: Option<u64> = "min_eval_interval", Need::Default(Some(0));
        /// `eval_save_outputs`: model outputs saved by evaluation.
        eval_save_outputs: Vec<String> = "eval_save_outputs", Need::Default(Vec::new());
        /// `ema`: keep an exponential moving average of the weights.
        ema: bool = "ema", Need::Default(false);
        /// `ema_rate` (0.999).
        ema_rate: f64 = "ema_rate", Need::Default(0.999), check = rate;
        /// `freeze_weights`: train only the puzzle embeddings.
        freeze_weights: bool = "freeze_weights", Need::Default(false);
        /// `checkpoint_keep_last` (this trainer's, not the reference's): keep only the newest N
        /// checkpoints; absent: keep all, as the reference does.
        checkpoint_keep_last: Option<u32> = "checkpoint_keep_last", Need::Default(None),
            check = keep_last, emit = left_out_when_none;
        /// `quant` (this trainer's, not the reference's): quantization-aware fine-tuning;
        /// absent: none (and left out of `all_config.yaml`).
        quant: Option<QuantConfig> = "quant", Need::Default(None), emit = left_out_when_none;
    }
}

section! {
    /// `quant`: quantization-aware training (QAT). The weight matrices that `trm-export`
    /// quantizes ([`WeightQuant::matrices`]) are fake-quantized in the forward pass with the
    /// exporter's per-output-row rule, gradients passing straight through; checkpoints hold the
    /// weights on the grid, so a fixed export rounds nothing.
    pub struct QuantConfig {
        /// `weights`: the grid of the weight matrices: `int8`, `int16` or `none` (no QAT).
        weights: WeightQuant = "weights", Need::Required;
        /// `activations`: activation fake-quantization: `int16` (at the integer engine's
        /// requantization sites, ranges calibrated when QAT starts and then frozen) or `none`.
        activations: ActivationQuant = "activations", Need::Default(ActivationQuant::None);
        /// `start_step`: the optimizer step from which the forward pass is fake-quantized
        /// (0: from the first step).
        start_step: u64 = "start_step", Need::Default(0);
        /// `margin`: with `activations: int16`, the headroom over each calibrated maximum
        /// (the exporter's `--margin`; 1.25: 25% beyond the largest value seen).
        margin: f64 = "margin", Need::Default(1.25), check = margin;
        /// `calib_batches`: with `activations: int16`, the training batches (of
        /// `global_batch_size` puzzles, every ACT step) the ranges are calibrated on.
        calib_batches: u64 = "calib_batches", Need::Default(4), check = positive_u64;
    }
}

/// The grid QAT puts the weight matrices on (`quant.weights`): the exporter's symmetric
/// per-output-row quantization, scale `max|row| / levels` (1 for an all-zero row), values
/// `floor(w / scale + 1/2)` clamped to `[-levels, levels]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightQuant {
    /// `int8`: 127 levels each side (the default fixed export).
    Int8,
    /// `int16`: 32767 levels each side (`trm-export --int16-weights all`).
    Int16,
    /// `none`: no fake quantization.
    None,
}

impl WeightQuant {
    /// The name in the config.
    pub fn name(self) -> &'static str {
        match self {
            WeightQuant::Int8 => "int8",
            WeightQuant::Int16 => "int16",
            WeightQuant::None => "none",
        }
    }

    /// The largest integer magnitude of the grid (127 or 32767); `None` for [`WeightQuant::None`].
    pub fn levels(self) -> Option<u32> {
        match self {
            WeightQuant::Int8 => Some(127),
            WeightQuant::Int16 => Some(32767),
            WeightQuant::None => None,
        }
    }

    /// The matrices put on the grid: those the fixed export stores as int8 or int16 (the
    /// token mixer's or attention's two projections and the channel SwiGLU's two of every
    /// layer, `lm_head`, `q_head` weight). The embeddings (stored by another rule), the initial
    /// states and the `q_head` bias stay float.
    pub fn matrices(config: &trm_nostd::Config) -> Vec<trm_nostd::TensorId> {
        use trm_nostd::{LayerTensor, TensorId};
        let mut ids = vec![TensorId::LmHead, TensorId::QHeadWeight];
        for layer in 0..config.l_layers as u8 {
            let mixer = if config.mlp_t {
                [LayerTensor::MlpTGateUp, LayerTensor::MlpTDown]
            } else {
                [LayerTensor::QkvProj, LayerTensor::OProj]
            };
            for tensor in mixer
                .into_iter()
                .chain([LayerTensor::MlpGateUp, LayerTensor::MlpDown])
            {
                ids.push(TensorId::Layer { layer, tensor });
            }
        }
        ids
    }
}

impl Value for WeightQuant {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match String::from_yaml(v, cx)?.as_str() {
            "int8" => Ok(WeightQuant::Int8),
            "int16" => Ok(WeightQuant::Int16),
            "none" => Ok(WeightQuant::None),
            other => Err(ConfigError::Invalid {
                key: cx.key.clone(),
                reason: format!("{other:?}; expected int8, int16 or none"),
            }),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::String(self.name().to_string())
    }
}

/// Activation fake-quantization in QAT (`quant.activations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationQuant {
    /// `int16`: the activations are rounded onto the integer engine's int16 grid at its
    /// requantization sites (network input, SwiGLU gate / up / product, attention q / k / v,
    /// normalized sub-layer outputs and the states), with the exporter's scales.
    Int16,
    /// `none`: activations stay float.
    None,
}

impl ActivationQuant {
    /// The name in the config.
    pub fn name(self) -> &'static str {
        match self {
            ActivationQuant::Int16 => "int16",
            ActivationQuant::None => "none",
        }
    }
}

impl Value for ActivationQuant {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match String::from_yaml(v, cx)?.as_str() {
            "none" => Ok(ActivationQuant::None),
            "int16" => Ok(ActivationQuant::Int16),
            other => Err(ConfigError::Invalid {
                key: cx.key.clone(),
                reason: format!("{other:?}; expected int16 or none"),
            }),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::String(self.name().to_string())
    }
}

section! {
    /// `arch`: the model (the reference's `TinyRecursiveReasoningModel_ACTV1Config` without the
    /// dataset-given sizes, which come from the dataset's metadata).
    pub struct ArchConfig {
        /// `name`: the model class (TRM's, [`TRM_ARCH_NAME`]).
        name: String = "name", Need::ForTraining, check(mode) = trm_arch;
        /// `loss`.
        loss: LossConfig = "loss", Need::ForTraining;
        /// `halt_exploration_prob`: probability of a random minimum of ACT steps in training.
        halt_exploration_prob: f64 = "halt_exploration_prob", Need::ForTraining,
            check = probability;
        /// `halt_max_steps`: ACT steps at most (16).
        halt_max_steps: u32 = "halt_max_steps", Need::Required;
        /// `H_cycles` (3).
        h_cycles: u32 = "H_cycles", Need::Required;
        /// `L_cycles` (6 Sudoku, 4 others).
        l_cycles: u32 = "L_cycles", Need::Required;
        /// `H_layers` (ignored by TRM; kept for the reference layout).
        h_layers: u32 = "H_layers", Need::ForTraining;
        /// `L_layers` (2).
        l_layers: u32 = "L_layers", Need::Required;
        /// `hidden_size` (512).
        hidden_size: u32 = "hidden_size", Need::Required;
        /// `num_heads` (8).
        num_heads: u32 = "num_heads", Need::Required;
        /// `expansion` (4).
        expansion: f64 = "expansion", Need::Required, emit = integral_as_int;
        /// `puzzle_emb_ndim` (`${.hidden_size}` by default; 0: no puzzle embedding).
        puzzle_emb_ndim: u32 = "puzzle_emb_ndim", Need::Default(0);
        /// `pos_encodings`: `rope`, `learned` or `none`.
        pos_encodings: PosEncoding = "pos_encodings", Need::Required;
        /// `forward_dtype`: `bfloat16` (default), `float32` or `float16`.
        forward_dtype: String = "forward_dtype", Need::Default("bfloat16".to_string()),
            check = forward_dtype;
        /// `mlp_t`: token mixing by an MLP over the sequence instead of attention.
        mlp_t: bool = "mlp_t", Need::Default(false);
        /// `puzzle_emb_len` (16; 0 means `ceil(puzzle_emb_ndim / hidden_size)`).
        puzzle_emb_len: u32 = "puzzle_emb_len", Need::Default(16);
        /// `no_ACT_continue`: no Q-continue loss (true).
        no_act_continue: bool = "no_ACT_continue", Need::Default(true);
        /// `rms_norm_eps` (1e-5).
        rms_norm_eps: f64 = "rms_norm_eps", Need::Default(1e-5);
        /// `rope_theta` (1e4).
        rope_theta: f64 = "rope_theta", Need::Default(10000.0);
    }
}

section! {
    /// `arch.loss`: the loss head.
    pub struct LossConfig {
        /// `name`: the loss head class (`losses@ACTLossHead`, the only one).
        name: String = "name", Need::ForTraining, check = act_loss_head;
        /// `loss_type`.
        loss_type: LossType = "loss_type", Need::ForTraining;
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

impl Value for LossType {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match String::from_yaml(v, cx)?.as_str() {
            "stablemax_cross_entropy" => Ok(LossType::StablemaxCrossEntropy),
            "softmax_cross_entropy" => Ok(LossType::SoftmaxCrossEntropy),
            other => Err(ConfigError::Invalid {
                key: cx.key.clone(),
                reason: format!(
                    "{other:?} is not a loss; expected stablemax_cross_entropy or \
                     softmax_cross_entropy"
                ),
            }),
        }
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::String(self.name().to_string())
    }
}

impl Value for PosEncoding {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        match String::from_yaml(v, cx)?.as_str() {
            "rope" => Ok(PosEncoding::Rope),
            "learned" => Ok(PosEncoding::Learned),
            "none" => Ok(PosEncoding::None),
            other => Err(ConfigError::Invalid {
                key: cx.key.clone(),
                reason: format!("{other:?}; expected rope, learned or none"),
            }),
        }
    }

    fn to_yaml(&self) -> Yaml {
        let name = match self {
            PosEncoding::Rope => "rope",
            PosEncoding::Learned => "learned",
            PosEncoding::None => "none",
        };
        Yaml::String(name.to_string())
    }
}

/// One entry of `evaluators` (`name` plus free options, passed to the evaluator).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorConfig {
    /// `name`, e.g. `arc@ARC`.
    pub name: String,
    /// Every other key, as written.
    pub options: Vec<(String, Yaml)>,
}

impl Value for Vec<EvaluatorConfig> {
    fn from_yaml(v: Yaml, cx: &Cx<'_>) -> Result<Self, ConfigError> {
        let Yaml::Array(items) = v else {
            return Err(bad(&cx.key, "a list of {name: ...} mappings", &v));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let item_cx = Cx {
                    key: format!("{}[{i}]", cx.key),
                    mode: cx.mode,
                    defaults: &Yaml::BadValue,
                };
                let mut e = Section::new(item, &item_cx)?;
                let name = e.read::<String>("name", Need::Required)?;
                let mut options: Vec<(String, Yaml)> = e
                    .into_rest()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v))
                    .collect();
                options.sort_by(|x, y| x.0.cmp(&y.0));
                Ok(EvaluatorConfig { name, options })
            })
            .collect()
    }

    fn to_yaml(&self) -> Yaml {
        Yaml::Array(
            self.iter()
                .map(|e| {
                    let mut h = Hash::new();
                    h.insert(Yaml::String("name".into()), Yaml::String(e.name.clone()));
                    for (k, v) in &e.options {
                        h.insert(Yaml::String(k.clone()), v.clone());
                    }
                    Yaml::Hash(h)
                })
                .collect(),
        )
    }
}

// The checks: each returns why the value is invalid; the key is added by `section!`.

fn trm_arch(name: &str, mode: Mode) -> Result<(), String> {
    if name == TRM_ARCH_NAME {
        return Ok(());
    }
    Err(match mode {
        Mode::Train => format!("{name}; this trainer implements {TRM_ARCH_NAME}"),
        Mode::Import => format!("{name}; only {TRM_ARCH_NAME} (TRM) can be imported"),
    })
}

fn act_loss_head(name: &str) -> Result<(), String> {
    if name == ACT_LOSS_HEAD_NAME {
        Ok(())
    } else {
        Err(format!(
            "{name}; this trainer implements {ACT_LOSS_HEAD_NAME}"
        ))
    }
}

fn forward_dtype(dtype: &str) -> Result<(), String> {
    if matches!(dtype, "float32" | "bfloat16" | "float16") {
        Ok(())
    } else {
        Err(format!("{dtype:?}; expected float32, bfloat16 or float16"))
    }
}

fn margin(m: &f64) -> Result<(), String> {
    if m.is_finite() && *m >= 1.0 {
        Ok(())
    } else {
        Err(format!("{m} must be a finite number >= 1"))
    }
}

fn probability(p: &f64) -> Result<(), String> {
    if (0.0..=1.0).contains(p) {
        Ok(())
    } else {
        Err("must be in [0, 1]".to_string())
    }
}

fn at_least_one(paths: &[String]) -> Result<(), String> {
    if paths.is_empty() {
        Err("needs at least one dataset".to_string())
    } else {
        Ok(())
    }
}

fn positive_u32(n: &u32) -> Result<(), String> {
    positive_u64(&u64::from(*n))
}

fn positive_u64(n: &u64) -> Result<(), String> {
    if *n == 0 {
        Err("must be positive".to_string())
    } else {
        Ok(())
    }
}

fn positive_if_set(n: &Option<u64>) -> Result<(), String> {
    n.as_ref().map_or(Ok(()), positive_u64)
}

fn non_negative(v: &f64) -> Result<(), String> {
    if *v < 0.0 {
        Err(format!("{v} must not be negative"))
    } else {
        Ok(())
    }
}

fn below_one(v: &f64) -> Result<(), String> {
    if (0.0..1.0).contains(v) {
        Ok(())
    } else {
        Err(format!("{v} must be in [0, 1)"))
    }
}

fn rate(v: &f64) -> Result<(), String> {
    if (0.0..=1.0).contains(v) {
        Ok(())
    } else {
        Err(format!("{v} must be in [0, 1]"))
    }
}

fn keep_last(n: &Option<u32>) -> Result<(), String> {
    if *n == Some(0) {
        Err("must be positive (leave it out to keep every checkpoint)".to_string())
    } else {
        Ok(())
    }
}

// The writers that differ from `Value::to_yaml`.

/// The reference writes the YAML's `expansion: 4` back as an int: integral values stay ints.
fn integral_as_int(x: &f64) -> Option<Yaml> {
    Some(if x.fract() == 0.0 && x.abs() < 1e15 {
        Yaml::Integer(*x as i64)
    } else {
        x.to_yaml()
    })
}

/// A key of ours, not the reference's: left out of `all_config.yaml` when unset.
fn left_out_when_none<T: Value>(v: &Option<T>) -> Option<Yaml> {
    v.as_ref().map(Value::to_yaml)
}
