//! Imports checkpoints of the reference implementation (SamsungSAILMontreal/TinyRecursiveModels),
//! and our trainer's, which have the same layout with safetensors weights.
//!
//! `pretrain.py` writes, in its checkpoint folder, `all_config.yaml` (every setting, the model's
//! under `arch`) and one `torch.save`d state_dict per saved step (`step_N`), with the names of
//! [`crate::names`].
//!
//! The architecture comes from `arch` (read by [`ImportConfig`]); the dataset sizes the reference
//! takes from the dataset's `dataset.json` (`seq_len`, `vocab_size`) are read from there when the
//! dataset is found, else derived from tensor shapes. Every tensor of the resulting [`Config`]
//! must be present with its exact shape, and no other weight may be: an import never silently
//! drops or invents weights.
//!
//! Which weights: with EMA on (`ema: True`), the reference evaluates and saves the exponential
//! moving average of the weights, and our trainer evaluates it too and saves it as
//! `ema.safetensors` beside the trained `model.safetensors`. An import of one of our checkpoint
//! folders reads by default what the trainer evaluates: `ema.safetensors` when the checkpoint
//! has it, else `model.safetensors` ([`WeightsChoice`]). A reference `torch.save` file holds
//! whichever the run saved (the EMA when its `all_config.yaml` says `ema: true`). The import
//! says which it read ([`ReferenceModel::weights`]).
//!
//! A weights file in one of our trainer's checkpoint folders with a manifest (`meta.json`) is
//! read only after the whole folder passed the trainer's own verification (every file's size
//! and CRC-32C, [`crate::run_checkpoint::verify_checkpoint`]), so a corrupt checkpoint is
//! refused here as the trainer's loader refuses it. The import records the file's size and
//! CRC-32C ([`WeightsDigest`]), which the exporter writes into the `.trm` file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use trm_nostd::format::WeightsKind;
use trm_nostd::{Config, PosEncoding, TensorId};

use crate::config::{ALL_CONFIG_FILE, ImportConfig};
use crate::names::{map_tensors, strip_names};
use crate::run_checkpoint::{self, EMA_FILE, META_FILE};
use crate::torch::{Tensor, TorchDType, load_torch_file};

/// Choices the checkpoint does not settle by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Puzzle tokens per example (without the puzzle-embedding prefix). Overrides the dataset's
    /// `seq_len`; needed for attention models with RoPE or no positions when the dataset is not
    /// found (their weights do not depend on the sequence length).
    pub seq_len: Option<u32>,
    /// Which weights of the run to read.
    pub weights: WeightsChoice,
}

/// Which weights of a training run an import reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightsChoice {
    /// The weights the run evaluates: for one of our checkpoint folders (or run folders), the
    /// EMA (`ema.safetensors`) when the checkpoint has it, else the trained weights
    /// (`model.safetensors`); for a checkpoint file given directly, that file.
    #[default]
    Evaluated,
    /// The exponential moving average; an error when the checkpoint has none.
    Ema,
    /// The trained weights; an error when the checkpoint does not hold them (a reference
    /// checkpoint of a run with EMA on saves only the average).
    Raw,
}

impl WeightsChoice {
    /// The kind this choice demands, if any.
    pub fn demanded(self) -> Option<WeightsKind> {
        match self {
            WeightsChoice::Evaluated => None,
            WeightsChoice::Ema => Some(WeightsKind::Ema),
            WeightsChoice::Raw => Some(WeightsKind::Raw),
        }
    }
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
    /// Its size and CRC-32C.
    pub digest: WeightsDigest,
    /// Which weights of the run the file holds: known for our checkpoints' `model.safetensors`
    /// (raw) and `ema.safetensors` (EMA) and for reference `torch.save` files (their
    /// `all_config.yaml`'s `ema`); `None` for a safetensors file of another name.
    pub weights: Option<WeightsKind>,
    /// The `dataset.json` read, if one was found.
    pub dataset_json: Option<PathBuf>,
    /// The reference's `arch.forward_dtype` (`bfloat16` by default): the precision it ran in.
    pub forward_dtype: String,
    /// Where `seq_len` came from.
    pub seq_len_source: SizeSource,
    /// Where `vocab_size` came from.
    pub vocab_source: SizeSource,
    /// The grid the weight matrices were fine-tuned onto (the run's `quant.weights`, QAT),
    /// when the run used QAT; `None` for float training and reference checkpoints.
    pub weight_grid: Option<crate::config::WeightQuant>,
    /// The frozen activation ranges of a run with int16 activation fake-quantization
    /// (`quant.activations: int16`), from its manifest; `None` otherwise.
    pub act_ranges: Option<crate::act_ranges::ActRanges>,
}

/// Size and CRC-32C of the checkpoint file an import read: what tells two checkpoints apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsDigest {
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32C ([`crate::run_checkpoint::crc32c`]).
    pub crc32c: u32,
    /// The step of the trm-train manifest that verified the file, when it is in one of our
    /// trainer's checkpoint folders.
    pub manifest_step: Option<u64>,
}

/// Verifies the checkpoint folder of `file` when it is one of our trainer's (it has a
/// manifest: the same checks as the trainer's loader, every file's size and CRC-32C), then
/// returns the file's size and CRC-32C.
pub fn weights_digest(file: &Path) -> anyhow::Result<WeightsDigest> {
    let dir = file.parent().unwrap_or(Path::new("."));
    if dir.join(META_FILE).exists() {
        let manifest = run_checkpoint::verify_checkpoint(dir).with_context(|| {
            format!(
                "verifying the trm-train checkpoint {} against its {META_FILE}",
                dir.display()
            )
        })?;
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let entry = manifest.entry(name).ok_or_else(|| {
            anyhow!(
                "{} is not listed in {}: not a file of that checkpoint",
                file.display(),
                dir.join(META_FILE).display()
            )
        })?;
        return Ok(WeightsDigest {
            bytes: entry.bytes,
            crc32c: entry.crc32c,
            manifest_step: Some(manifest.step),
        });
    }
    let (bytes, crc32c) =
        run_checkpoint::file_digest(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(WeightsDigest {
        bytes,
        crc32c,
        manifest_step: None,
    })
}

/// The frozen activation ranges in the manifest of checkpoint folder `dir` (a run with
/// `quant.activations: int16`), for a model of `layers` blocks.
fn read_act_ranges(dir: &Path, layers: usize) -> anyhow::Result<crate::act_ranges::ActRanges> {
    use crate::act_ranges::{ActRanges, MANIFEST_KEY};
    let manifest = run_checkpoint::read_manifest(dir).with_context(|| {
        format!(
            "the run used quant.activations: int16, whose frozen ranges are in the manifest, \
             but {} has none",
            dir.join(META_FILE).display()
        )
    })?;
    let v = manifest.extra.get(MANIFEST_KEY).ok_or_else(|| {
        anyhow!(
            "the run used quant.activations: int16 but {} holds no {MANIFEST_KEY}",
            dir.join(META_FILE).display()
        )
    })?;
    ActRanges::from_json(v, layers)
        .map_err(|e| anyhow!("{} {MANIFEST_KEY}: {e}", dir.join(META_FILE).display()))
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

/// For a `path` that is a folder (one of our `step_N/` or run folders), the file of the chosen
/// weights beside `found` (the `model.safetensors` [`find_checkpoint`] picked): its
/// `ema.safetensors` when `choice` is [`WeightsChoice::Ema`] (an error without one) or
/// [`WeightsChoice::Evaluated`] (when present). A file given as `path` is kept; whether it
/// holds the chosen weights is checked by [`check_weights_kind`].
pub fn choose_weights_file(
    path: &Path,
    found: PathBuf,
    choice: WeightsChoice,
) -> anyhow::Result<PathBuf> {
    if path.is_file() || found.file_name().is_none_or(|n| n != OUR_WEIGHTS) {
        return Ok(found);
    }
    let ema = found.with_file_name(EMA_FILE);
    match choice {
        WeightsChoice::Raw => Ok(found),
        WeightsChoice::Evaluated if ema.is_file() => Ok(ema),
        WeightsChoice::Evaluated => Ok(found),
        WeightsChoice::Ema if ema.is_file() => Ok(ema),
        WeightsChoice::Ema => bail!(
            "the checkpoint {} has no EMA weights ({EMA_FILE}): the run trained without EMA \
             (ema: false); its trained weights ({OUR_WEIGHTS}) are read without `--weights ema` \
             (or with `--weights raw`)",
            found.parent().unwrap_or(Path::new(".")).display()
        ),
    }
}

/// Which weights `file` holds: by name for our trainer's files, by the run's `ema` setting for
/// a reference `torch.save` file (the reference saves the average when EMA is on), unknown for
/// another safetensors file.
pub fn weights_kind_of(file: &Path, run_ema: bool) -> Option<WeightsKind> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == EMA_FILE {
        Some(WeightsKind::Ema)
    } else if name == OUR_WEIGHTS {
        Some(WeightsKind::Raw)
    } else if file.extension().is_some_and(|e| e == "safetensors") {
        None
    } else if run_ema {
        Some(WeightsKind::Ema)
    } else {
        Some(WeightsKind::Raw)
    }
}

/// Checks that `file`, holding `kind`, is what `choice` asks for; the error says why not.
pub fn check_weights_kind(
    file: &Path,
    kind: Option<WeightsKind>,
    choice: WeightsChoice,
) -> anyhow::Result<()> {
    let Some(want) = choice.demanded() else {
        return Ok(());
    };
    match kind {
        Some(k) if k == want => Ok(()),
        Some(WeightsKind::Raw) if file.file_name().is_some_and(|n| n == OUR_WEIGHTS) => bail!(
            "{} holds the trained (raw) weights, not the EMA: pass the checkpoint folder (or its \
             {EMA_FILE}) for the EMA",
            file.display()
        ),
        Some(WeightsKind::Raw) => bail!(
            "{} is a checkpoint of a run without EMA (ema: false in its {ALL_CONFIG_FILE}): it \
             holds the trained weights, no EMA",
            file.display()
        ),
        Some(WeightsKind::Ema) if file.file_name().is_some_and(|n| n == EMA_FILE) => bail!(
            "{} holds the EMA weights, not the trained ones: pass the checkpoint folder (or its \
             {OUR_WEIGHTS}) for those",
            file.display()
        ),
        Some(WeightsKind::Ema) => bail!(
            "{} is a reference checkpoint of a run with EMA on (ema: true in its \
             {ALL_CONFIG_FILE}): the reference saves only the EMA weights, not the trained ones",
            file.display()
        ),
        None => bail!(
            "cannot tell which weights {} holds (neither {OUR_WEIGHTS} nor {EMA_FILE}): give it \
             without `--weights`",
            file.display()
        ),
    }
}

/// Reads a safetensors file (our trainer's weights) as named tensors.
fn load_safetensors_file(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
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
/// or a checkpoint file, with `all_config.yaml` beside it. Of one of our checkpoint folders,
/// the weights `options.weights` chooses are read (see [`WeightsChoice`]).
pub fn import_reference(path: &Path, options: &ImportOptions) -> anyhow::Result<ReferenceModel> {
    let checkpoint = choose_weights_file(path, find_checkpoint(path)?, options.weights)?;
    // Before anything of the folder is read: the manifest's checks (our checkpoints).
    let digest = weights_digest(&checkpoint)?;
    let dir = checkpoint
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let config_path = dir.join(ALL_CONFIG_FILE);
    // Read within the YAML bounds (size here, nesting and alias expansion when parsed); the
    // reading errors name the file.
    let text = crate::config::yaml::read_file(&config_path)?;
    let settings = ImportConfig::from_yaml_str(&text, ALL_CONFIG_FILE)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let weights = weights_kind_of(&checkpoint, settings.ema);
    check_weights_kind(&checkpoint, weights, options.weights)?;
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
    let puzzle_emb_len = a.resolved_puzzle_emb_len();

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

    let config = a.model_config(seq_len, vocab_size, num_puzzle_identifiers);
    config
        .validate()
        .with_context(|| format!("config from {}", config_path.display()))?;

    let mapped = map_tensors(&config, tensors)
        .with_context(|| format!("matching {} to the config", checkpoint.display()))?;
    let act_ranges = match &settings.quant {
        Some(q) if q.activations == crate::config::ActivationQuant::Int16 => {
            Some(read_act_ranges(&dir, config.l_layers as usize)?)
        }
        _ => None,
    };
    Ok(ReferenceModel {
        act_ranges,
        config,
        tensors: mapped,
        checkpoint,
        digest,
        weights,
        dataset_json,
        forward_dtype: a.forward_dtype.clone(),
        seq_len_source,
        vocab_source,
        weight_grid: settings.weight_grid(),
    })
}
