//! Imports checkpoints of the reference implementation (SamsungSAILMontreal/TinyRecursiveModels).
//!
//! `pretrain.py` writes, in its checkpoint folder, `all_config.yaml` (every setting, the model's
//! under `arch`) and one `torch.save`d state_dict per saved step (`step_N`), with names such as
//! `_orig_mod.model.inner.L_level.layers.0.mlp.gate_up_proj.weight` (`_orig_mod.` from
//! `torch.compile`, `model.` from the loss head wrapping the model).
//!
//! The architecture comes from `arch`; the dataset sizes the reference takes from the dataset's
//! `dataset.json` (`seq_len`, `vocab_size`) are read from there when the dataset is found, else
//! derived from tensor shapes. Every tensor of the resulting [`Config`] must be present with its
//! exact shape, and no other weight may be: an import never silently drops or invents weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail, ensure};
use trm_nostd::format::{NumericScheme, write_model};
use trm_nostd::{Config, DType, PosEncoding, TensorId};
use yaml_rust2::{Yaml, YamlLoader};

use crate::torch_pickle::{Tensor, load_torch_file};

/// The name of the reference model class that this importer understands (`arch.name`).
pub const REFERENCE_ARCH_NAME: &str = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1";

/// State_dict entries the reference declares non-persistent; ignored if a checkpoint has them.
const NON_PERSISTENT: &[&str] = &[
    "inner.rotary_emb.cos_cached",
    "inner.rotary_emb.sin_cached",
    "inner.puzzle_emb.local_weights",
    "inner.puzzle_emb.local_ids",
];

/// Choices the checkpoint does not settle by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Puzzle tokens per example (without the puzzle-embedding prefix). Overrides the dataset's
    /// `seq_len`; needed for attention models with RoPE or no positions when the dataset is not
    /// found (their weights do not depend on the sequence length).
    pub seq_len: Option<u32>,
}

/// Where a size of the imported config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeSource {
    /// [`ImportOptions`].
    Option,
    /// The dataset's `dataset.json`.
    Dataset,
    /// The shape of a tensor in the checkpoint.
    TensorShape,
}

/// A reference checkpoint converted to this project's names and types.
#[derive(Debug, Clone)]
pub struct ReferenceModel {
    /// The architecture, validated.
    pub config: Config,
    /// Every tensor of `config`, in [`TensorId::all`] order, as f32.
    pub tensors: Vec<(TensorId, Vec<f32>)>,
    /// The checkpoint file read.
    pub checkpoint: PathBuf,
    /// The `dataset.json` read, if one was found.
    pub dataset_json: Option<PathBuf>,
    /// The reference's `arch.forward_dtype` (`bfloat16` by default): the precision it ran in.
    pub forward_dtype: String,
    /// Where `seq_len` came from.
    pub seq_len_source: SizeSource,
    /// Where `vocab_size` came from.
    pub vocab_source: SizeSource,
}

/// The `arch` section of `all_config.yaml`, with the reference's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSettings {
    /// `hidden_size`.
    pub hidden_size: u32,
    /// `num_heads`.
    pub num_heads: u32,
    /// `expansion`.
    pub expansion: f32,
    /// `L_layers`.
    pub l_layers: u32,
    /// `H_cycles`.
    pub h_cycles: u32,
    /// `L_cycles`.
    pub l_cycles: u32,
    /// `mlp_t` (default false).
    pub mlp_t: bool,
    /// `pos_encodings`.
    pub pos_encodings: PosEncoding,
    /// `puzzle_emb_ndim` (default 0).
    pub puzzle_emb_ndim: u32,
    /// `puzzle_emb_len` as written (default 16; 0 means `ceil(ndim / hidden)`).
    pub puzzle_emb_len: u32,
    /// `halt_max_steps`.
    pub halt_max_steps: u32,
    /// `rms_norm_eps` (default 1e-5).
    pub rms_norm_eps: f32,
    /// `rope_theta` (default 1e4).
    pub rope_theta: f32,
    /// `forward_dtype` (default `bfloat16`).
    pub forward_dtype: String,
}

/// The parts of `all_config.yaml` the importer uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSettings {
    /// The model settings.
    pub arch: ArchSettings,
    /// `data_paths`: dataset folders, relative to where `pretrain.py` ran.
    pub data_paths: Vec<String>,
}

/// The reference dataset's `dataset.json` fields that size the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSizes {
    /// `seq_len`.
    pub seq_len: u32,
    /// `vocab_size`.
    pub vocab_size: u32,
    /// `num_puzzle_identifiers`.
    pub num_puzzle_identifiers: u32,
}

fn yaml_u32(arch: &Yaml, key: &str, default: Option<u32>) -> anyhow::Result<u32> {
    match &arch[key] {
        Yaml::BadValue | Yaml::Null => default.ok_or_else(|| anyhow!("arch.{key} is missing")),
        Yaml::Integer(v) => {
            u32::try_from(*v).map_err(|_| anyhow!("arch.{key} = {v} is out of range"))
        }
        other => bail!("arch.{key} must be an integer, got {other:?}"),
    }
}

fn yaml_f32(arch: &Yaml, key: &str, default: Option<f32>) -> anyhow::Result<f32> {
    match &arch[key] {
        Yaml::BadValue | Yaml::Null => default.ok_or_else(|| anyhow!("arch.{key} is missing")),
        Yaml::Integer(v) => Ok(*v as f32),
        y @ Yaml::Real(s) => y
            .as_f64()
            .map(|v| v as f32)
            .ok_or_else(|| anyhow!("arch.{key} = {s} is not a number")),
        other => bail!("arch.{key} must be a number, got {other:?}"),
    }
}

fn yaml_bool(arch: &Yaml, key: &str, default: bool) -> anyhow::Result<bool> {
    match &arch[key] {
        Yaml::BadValue | Yaml::Null => Ok(default),
        Yaml::Boolean(b) => Ok(*b),
        other => bail!("arch.{key} must be true or false, got {other:?}"),
    }
}

fn yaml_str<'y>(arch: &'y Yaml, key: &str) -> anyhow::Result<Option<&'y str>> {
    match &arch[key] {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(s)),
        other => bail!("arch.{key} must be a string, got {other:?}"),
    }
}

/// Parses the text of a reference `all_config.yaml`.
///
/// Defaults are the reference config class's (`TinyRecursiveReasoningModel_ACTV1Config`).
pub fn parse_all_config(text: &str) -> anyhow::Result<ReferenceSettings> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| anyhow!("invalid YAML: {e}"))?;
    let doc = docs.first().ok_or_else(|| anyhow!("empty YAML document"))?;
    let arch = &doc["arch"];
    ensure!(
        matches!(arch, Yaml::Hash(_)),
        "no `arch` section (is this a pretrain.py all_config.yaml?)"
    );
    if let Some(name) = yaml_str(arch, "name")? {
        ensure!(
            name == REFERENCE_ARCH_NAME,
            "arch.name is {name}; only {REFERENCE_ARCH_NAME} (TRM) can be imported"
        );
    }
    let pos = match yaml_str(arch, "pos_encodings")? {
        Some("rope") => PosEncoding::Rope,
        Some("learned") => PosEncoding::Learned,
        Some("none") => PosEncoding::None,
        Some(other) => bail!("arch.pos_encodings = {other}; expected rope, learned or none"),
        None => bail!("arch.pos_encodings is missing"),
    };
    let arch_settings = ArchSettings {
        hidden_size: yaml_u32(arch, "hidden_size", None)?,
        num_heads: yaml_u32(arch, "num_heads", None)?,
        expansion: yaml_f32(arch, "expansion", None)?,
        l_layers: yaml_u32(arch, "L_layers", None)?,
        h_cycles: yaml_u32(arch, "H_cycles", None)?,
        l_cycles: yaml_u32(arch, "L_cycles", None)?,
        mlp_t: yaml_bool(arch, "mlp_t", false)?,
        pos_encodings: pos,
        puzzle_emb_ndim: yaml_u32(arch, "puzzle_emb_ndim", Some(0))?,
        puzzle_emb_len: yaml_u32(arch, "puzzle_emb_len", Some(16))?,
        halt_max_steps: yaml_u32(arch, "halt_max_steps", None)?,
        rms_norm_eps: yaml_f32(arch, "rms_norm_eps", Some(1e-5))?,
        rope_theta: yaml_f32(arch, "rope_theta", Some(10000.0))?,
        forward_dtype: yaml_str(arch, "forward_dtype")?
            .unwrap_or("bfloat16")
            .to_string(),
    };
    let data_paths = match &doc["data_paths"] {
        Yaml::Array(a) => a
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("data_paths holds a non-string entry"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        Yaml::BadValue | Yaml::Null => Vec::new(),
        other => bail!("data_paths must be a list, got {other:?}"),
    };
    Ok(ReferenceSettings {
        arch: arch_settings,
        data_paths,
    })
}

/// Parses a reference `dataset.json`.
pub fn parse_dataset_json(text: &str) -> anyhow::Result<DatasetSizes> {
    let v: serde_json::Value = serde_json::from_str(text).context("invalid JSON")?;
    let field = |k: &str| -> anyhow::Result<u32> {
        let n = v
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| anyhow!("`{k}` is missing or not a non-negative integer"))?;
        u32::try_from(n).map_err(|_| anyhow!("`{k}` = {n} is out of range"))
    };
    Ok(DatasetSizes {
        seq_len: field("seq_len")?,
        vocab_size: field("vocab_size")?,
        num_puzzle_identifiers: field("num_puzzle_identifiers")?,
    })
}

/// Weights file of one of our trainer's checkpoint folders (`step_<N>/model.safetensors`).
const OUR_WEIGHTS: &str = "model.safetensors";

/// The checkpoint file to read: `path` itself if it is a file; `path/model.safetensors` if
/// `path` is one of our trainer's checkpoint folders; else, in the folder `path`, the `step_N`
/// with the largest N (a reference `torch.save` file, or one of our `step_N/` folders).
pub fn find_checkpoint(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join(OUR_WEIGHTS).is_file() {
        return Ok(path.join(OUR_WEIGHTS));
    }
    let entries =
        std::fs::read_dir(path).with_context(|| format!("reading folder {}", path.display()))?;
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading folder {}", path.display()))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step_"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let candidate = if entry.path().is_file() {
            entry.path()
        } else if entry.path().join(OUR_WEIGHTS).is_file() {
            entry.path().join(OUR_WEIGHTS)
        } else {
            // An incomplete checkpoint folder (still being written, or left by a crash).
            continue;
        };
        if best.as_ref().is_none_or(|(s, _)| step > *s) {
            best = Some((step, candidate));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        anyhow!(
            "no checkpoint (a step_<N> file, or a step_<N>/ folder with {OUR_WEIGHTS}) in {}; \
             pass the checkpoint itself",
            path.display()
        )
    })
}

/// Reads a safetensors file (our trainer's weights) as named tensors.
fn load_safetensors_file(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    use crate::torch_pickle::TorchDType;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => TorchDType::F32,
            safetensors::Dtype::F16 => TorchDType::F16,
            safetensors::Dtype::BF16 => TorchDType::BF16,
            safetensors::Dtype::F64 => TorchDType::F64,
            other => bail!(
                "{}: tensor {name} has unsupported dtype {other:?}",
                path.display()
            ),
        };
        out.push((
            name,
            Tensor {
                dtype,
                shape: view.shape().to_vec(),
                data: view.data().to_vec(),
            },
        ));
    }
    Ok(out)
}

/// Looks for `<data_path>/train/dataset.json` (else `test/`) of the first data path, relative
/// to the checkpoint folder when not absolute.
/// A relative data path is tried against the checkpoint folder, then the current directory (our
/// trainer records data paths as given on its command line).
fn find_dataset_json(dir: &Path, data_paths: &[String]) -> Option<PathBuf> {
    let first = data_paths.first()?;
    [dir.join(first), PathBuf::from(first)]
        .into_iter()
        .flat_map(|base| ["train", "test"].map(|split| base.join(split).join("dataset.json")))
        .find(|p| p.is_file())
}

/// The checkpoint's tensors by reference name, with the `_orig_mod.` and `model.` prefixes
/// removed.
fn strip_names(raw: Vec<(String, Tensor)>) -> anyhow::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(raw.len());
    for (name, t) in raw {
        let short = name.strip_prefix("_orig_mod.").unwrap_or(&name);
        let short = short.strip_prefix("model.").unwrap_or(short).to_string();
        if out.insert(short.clone(), t).is_some() {
            bail!("two checkpoint entries are named {short} once prefixes are removed");
        }
    }
    Ok(out)
}

fn dim(tensors: &HashMap<String, Tensor>, id: TensorId, axis: usize) -> anyhow::Result<u32> {
    let name = id.to_string();
    let t = tensors
        .get(&name)
        .ok_or_else(|| anyhow!("checkpoint has no tensor {name}"))?;
    let d = *t.shape.get(axis).ok_or_else(|| {
        anyhow!(
            "tensor {name} has shape {:?}, expected at least {} dimensions",
            t.shape,
            axis + 1
        )
    })?;
    u32::try_from(d).map_err(|_| anyhow!("tensor {name} dimension {d} is out of range"))
}

/// Imports a reference checkpoint: `path` is a checkpoint folder (the latest `step_N` is read)
/// or a checkpoint file, with `all_config.yaml` beside it.
pub fn import_reference(path: &Path, options: &ImportOptions) -> anyhow::Result<ReferenceModel> {
    let checkpoint = find_checkpoint(path)?;
    let dir = checkpoint
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let config_path = dir.join("all_config.yaml");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let settings =
        parse_all_config(&text).with_context(|| format!("parsing {}", config_path.display()))?;
    let dataset_json = find_dataset_json(&dir, &settings.data_paths);
    let dataset = match &dataset_json {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(parse_dataset_json(&text).with_context(|| format!("parsing {}", p.display()))?)
        }
        None => None,
    };
    let raw = if checkpoint.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors_file(&checkpoint)?
    } else {
        load_torch_file(&checkpoint)?
    };
    let tensors = strip_names(raw).with_context(|| format!("in {}", checkpoint.display()))?;
    let a = &settings.arch;
    let puzzle_emb_len =
        Config::resolve_puzzle_emb_len(a.puzzle_emb_len, a.puzzle_emb_ndim, a.hidden_size);

    let ctx = || format!("deriving the config of {}", checkpoint.display());
    let (vocab_size, vocab_source) = match dataset {
        Some(d) => (d.vocab_size, SizeSource::Dataset),
        None => (
            dim(&tensors, TensorId::EmbedTokens, 0).with_context(ctx)?,
            SizeSource::TensorShape,
        ),
    };
    let (seq_len, seq_len_source) = if let Some(s) = options.seq_len {
        (s, SizeSource::Option)
    } else if let Some(d) = dataset {
        (d.seq_len, SizeSource::Dataset)
    } else {
        // The sequence axis (seq_len + prefix) appears in the mlp_t weights and in learned
        // positions; attention weights do not depend on it.
        let total = if a.mlp_t {
            let id = TensorId::Layer {
                layer: 0,
                tensor: trm_nostd::LayerTensor::MlpTGateUp,
            };
            dim(&tensors, id, 1).with_context(ctx)?
        } else if a.pos_encodings == PosEncoding::Learned {
            dim(&tensors, TensorId::EmbedPos, 0).with_context(ctx)?
        } else {
            bail!(
                "cannot tell seq_len of {}: no dataset.json found under data_paths {:?} and the \
                 attention weights do not depend on it; pass the sequence length (--seq-len)",
                checkpoint.display(),
                settings.data_paths
            );
        };
        let s = total.checked_sub(puzzle_emb_len).ok_or_else(|| {
            anyhow!("sequence axis {total} is shorter than puzzle_emb_len {puzzle_emb_len}")
        })?;
        (s, SizeSource::TensorShape)
    };
    let num_puzzle_identifiers = if a.puzzle_emb_ndim > 0 {
        dim(&tensors, TensorId::PuzzleEmb, 0).with_context(ctx)?
    } else {
        // No table: the count does not matter to the weights.
        dataset.map_or(1, |d| d.num_puzzle_identifiers.max(1))
    };

    let config = Config {
        hidden_size: a.hidden_size,
        num_heads: a.num_heads,
        expansion: a.expansion,
        l_layers: a.l_layers,
        h_cycles: a.h_cycles,
        l_cycles: a.l_cycles,
        mlp_t: a.mlp_t,
        pos_encodings: a.pos_encodings,
        puzzle_emb_ndim: a.puzzle_emb_ndim,
        puzzle_emb_len,
        num_puzzle_identifiers,
        vocab_size,
        seq_len,
        halt_max_steps: a.halt_max_steps,
        rms_norm_eps: a.rms_norm_eps,
        rope_theta: a.rope_theta,
    };
    config
        .validate()
        .with_context(|| format!("config from {}", config_path.display()))?;

    let mapped = map_tensors(&config, tensors)
        .with_context(|| format!("matching {} to the config", checkpoint.display()))?;
    Ok(ReferenceModel {
        config,
        tensors: mapped,
        checkpoint,
        dataset_json,
        forward_dtype: a.forward_dtype.clone(),
        seq_len_source,
        vocab_source,
    })
}

/// Matches the (prefix-free) checkpoint tensors to every [`TensorId`] of `config`, checks
/// shapes, converts to f32, and rejects leftovers.
pub fn map_tensors(
    config: &Config,
    mut tensors: HashMap<String, Tensor>,
) -> anyhow::Result<Vec<(TensorId, Vec<f32>)>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for id in TensorId::all(config) {
        let name = id.to_string();
        let Some(t) = tensors.remove(&name) else {
            missing.push(name);
            continue;
        };
        let s = id.shape(config);
        let expected: Vec<usize> = if s.rank == 1 {
            vec![s.cols as usize]
        } else {
            vec![s.rows as usize, s.cols as usize]
        };
        ensure!(
            t.shape == expected,
            "tensor {name}: expected shape {expected:?}, got {:?}",
            t.shape
        );
        let values = t.to_f32().with_context(|| format!("tensor {name}"))?;
        out.push((id, values));
    }
    ensure!(
        missing.is_empty(),
        "checkpoint lacks tensors the config needs: {}",
        missing.join(", ")
    );
    for n in NON_PERSISTENT {
        tensors.remove(*n);
    }
    if !tensors.is_empty() {
        let mut extra: Vec<_> = tensors.into_keys().collect();
        extra.sort();
        bail!(
            "checkpoint has tensors this config does not use (wrong arch settings?): {}",
            extra.join(", ")
        );
    }
    Ok(out)
}

/// Imports a reference checkpoint (see [`import_reference`]) and writes it as a `.trm` file
/// storing every tensor as `dtype` (F32, F16 or BF16).
pub fn reference_to_trm(path: &Path, dtype: DType) -> anyhow::Result<Vec<u8>> {
    reference_to_trm_with(path, dtype, &ImportOptions::default())
}

/// [`reference_to_trm`] with explicit [`ImportOptions`].
pub fn reference_to_trm_with(
    path: &Path,
    dtype: DType,
    options: &ImportOptions,
) -> anyhow::Result<Vec<u8>> {
    let model = import_reference(path, options)?;
    let bytes = write_model(
        model.config,
        NumericScheme::Float(dtype),
        model.tensors.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .with_context(|| format!("writing {} as .trm", model.checkpoint.display()))?;
    Ok(bytes)
}
