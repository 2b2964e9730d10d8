//! Training checkpoints: everything needed to resume a run, written atomically.
//!
//! Layout of a run's checkpoint folder (`checkpoint_path`):
//! ```text
//! <root>/step_<N>/model.safetensors      weights (and buffers), reference tensor names
//!                 ema.safetensors        the EMA copy of the weights, when EMA is on
//!                 optimizer.safetensors  optimizer states (named by the optimizers)
//!                 rng.safetensors        RNG states, opaque bytes as u8 tensors
//!                 all_config.yaml        the effective config (reference layout)
//!                 meta.json              step, the loop's extra values, and the size and
//!                                        CRC-32C of every file above; written last
//! ```
//! A checkpoint is written into `<root>/.tmp-step_<N>-<pid>-<nanos>/`, every file and the
//! folder are fsynced, and the folder is renamed to `step_<N>` (then the root is fsynced): a
//! crash leaves either the whole checkpoint or a `.tmp-` folder that [`latest`] ignores and
//! [`prune`] removes. Loading checks every file's size and CRC against `meta.json`, so a
//! truncated or corrupted file is an error naming it, and restoring into live tensors checks
//! names and shapes ([`restore_model`], [`restore_named`]).
//!
//! The model file is plain safetensors with reference names: `trm-export` and
//! [`crate::model::read_checkpoint`] read it directly.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tch::{Device, Kind, Tensor, nn};

use crate::config::{ALL_CONFIG_FILE, ConfigError, TrainConfig};
use crate::logs::crc32c::crc32c;
use crate::model::CheckpointError;
use trm_reference::run_checkpoint;

/// Weights file of a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// EMA weights file.
pub const EMA_FILE: &str = "ema.safetensors";
/// Optimizer states file.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// RNG states file.
pub const RNG_FILE: &str = "rng.safetensors";
/// The manifest, written last.
pub const META_FILE: &str = "meta.json";
/// `format` field of the manifest.
const FORMAT: &str = run_checkpoint::MANIFEST_FORMAT;
/// Manifest version.
const VERSION: u64 = run_checkpoint::MANIFEST_VERSION;
/// Prefix of a checkpoint being written.
const TMP_PREFIX: &str = ".tmp-step_";
/// Prefix of a replaced checkpoint being deleted.
const OLD_PREFIX: &str = ".old-step_";

/// Why a checkpoint cannot be written, found or loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum CkptError {
    /// A file operation failed.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// libtorch failed to read or write a tensor file, or to copy a tensor.
    Tch {
        /// The file, or what was being copied.
        path: PathBuf,
        /// The error.
        source: tch::TchError,
    },
    /// A file does not match the manifest, or the manifest is invalid.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The folder has no manifest: it is not a finished checkpoint.
    Incomplete {
        /// The folder.
        path: PathBuf,
    },
    /// A named tensor list holds one name twice.
    Duplicate {
        /// Which list (`model`, `ema`, `optimizer`, `rng`).
        what: String,
        /// The name.
        name: String,
    },
    /// A tensor the live state has is not in the checkpoint.
    Missing {
        /// Which list.
        what: String,
        /// The tensor name.
        name: String,
    },
    /// The checkpoint has a tensor the live state does not.
    Unexpected {
        /// Which list.
        what: String,
        /// The tensor name.
        name: String,
    },
    /// A checkpoint tensor's shape differs from the live tensor's.
    Shape {
        /// Which list.
        what: String,
        /// The tensor name.
        name: String,
        /// Shape of the live tensor.
        expected: Vec<i64>,
        /// Shape in the checkpoint.
        found: Vec<i64>,
    },
    /// The checkpoint's config cannot be read.
    Config(ConfigError),
    /// Restoring the model failed (names, shapes).
    Model(CheckpointError),
    /// The newest `step_<N>` folder of a run is not a usable checkpoint, and the command
    /// would otherwise have read it ([`latest_strict`]).
    LatestUnusable {
        /// The newest `step_<N>` folder.
        dir: PathBuf,
        /// Why it cannot be used.
        reason: Box<CkptError>,
        /// The newest finished checkpoint before it, if any (to name instead).
        older: Option<PathBuf>,
    },
}

impl fmt::Display for CkptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CkptError::Io { path, source } => write!(f, "checkpoint {}: {source}", path.display()),
            CkptError::Tch { path, source } => {
                write!(f, "checkpoint {}: libtorch: {source}", path.display())
            }
            CkptError::Corrupt { path, reason } => {
                write!(f, "checkpoint file {} is corrupt: {reason}", path.display())
            }
            CkptError::Incomplete { path } => write!(
                f,
                "{} is not a finished checkpoint (no {META_FILE})",
                path.display()
            ),
            CkptError::Duplicate { what, name } => {
                write!(f, "checkpoint {what}: tensor {name} is given twice")
            }
            CkptError::Missing { what, name } => {
                write!(f, "checkpoint {what} lacks tensor {name}")
            }
            CkptError::Unexpected { what, name } => write!(
                f,
                "checkpoint {what} has tensor {name}, which the live state does not"
            ),
            CkptError::Shape {
                what,
                name,
                expected,
                found,
            } => write!(
                f,
                "checkpoint {what} tensor {name} has shape {found:?}, expected {expected:?}"
            ),
            CkptError::Config(e) => write!(f, "checkpoint config: {e}"),
            CkptError::Model(e) => write!(f, "checkpoint model: {e}"),
            CkptError::LatestUnusable { dir, reason, older } => {
                write!(
                    f,
                    "the latest checkpoint, {}, cannot be used ({reason})",
                    dir.display()
                )?;
                match older {
                    Some(o) => write!(
                        f,
                        "; to use the newest finished one before it, name it: {}",
                        o.display()
                    ),
                    None => f.write_str("; no earlier finished checkpoint exists"),
                }
            }
        }
    }
}

impl std::error::Error for CkptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CkptError::Io { source, .. } => Some(source),
            CkptError::Tch { source, .. } => Some(source),
            CkptError::Config(e) => Some(e),
            CkptError::Model(e) => Some(e),
            CkptError::LatestUnusable { reason, .. } => Some(reason.as_ref()),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CkptError + '_ {
    move |source| CkptError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tch_err(path: &Path) -> impl FnOnce(tch::TchError) -> CkptError + '_ {
    move |source| CkptError::Tch {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything a checkpoint holds.
#[derive(Debug)]
pub struct Checkpoint {
    /// Optimizer steps taken.
    pub step: u64,
    /// Model weights and buffers under reference names (`inner.H_init`, ...).
    pub model: Vec<(String, Tensor)>,
    /// The EMA copy of the weights, when EMA is on.
    pub ema: Option<Vec<(String, Tensor)>>,
    /// Optimizer states, named by the optimizers.
    pub optimizer: Vec<(String, Tensor)>,
    /// RNG states (opaque bytes: the loop serialises its generators).
    pub rng: Vec<(String, Vec<u8>)>,
    /// Values the loop wants back (epoch, data cursor, ...); stored in `meta.json`.
    pub extra: Map<String, Value>,
    /// The effective config.
    pub config: TrainConfig,
}

/// Shallow copies of a [`nn::VarStore`]'s variables, sorted by name: the `model` (or `ema`)
/// list of a [`Checkpoint`].
pub fn named_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The folder name of step `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("step_{step}")
}

fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn check_unique<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> Result<(), CkptError> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(n.as_str()) {
            return Err(CkptError::Duplicate {
                what: what.to_string(),
                name: n.clone(),
            });
        }
    }
    Ok(())
}

fn fsync_file(path: &Path) -> Result<(), CkptError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Fsyncs a folder so that the names in it are durable (a no-op where folders cannot be opened).
fn fsync_dir(path: &Path) -> Result<(), CkptError> {
    match fs::File::open(path) {
        Ok(f) => match f.sync_all() {
            Ok(()) => Ok(()),
            // Some file systems refuse fsync on folders; the data files are synced already.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            Err(e) => Err(io_err(path)(e)),
        },
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes named tensors (moved to the CPU, contiguous) as safetensors, fsynced.
fn write_tensors(path: &Path, what: &str, named: &[(String, Tensor)]) -> Result<(), CkptError> {
    check_unique(what, named.iter().map(|(n, _)| n))?;
    let cpu = named
        .iter()
        .map(|(n, t)| {
            let t = t
                .f_detach()
                .and_then(|t| t.f_to_device(Device::Cpu))
                .and_then(|t| t.f_contiguous())
                .map_err(tch_err(path))?;
            Ok((n.as_str(), t))
        })
        .collect::<Result<Vec<_>, CkptError>>()?;
    Tensor::write_safetensors(&cpu, path).map_err(tch_err(path))?;
    fsync_file(path)
}

/// Size and CRC-32C of a file.
fn file_digest(path: &Path) -> Result<(u64, u32), CkptError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    Ok((bytes.len() as u64, crc32c(&bytes)))
}

/// Writes `ckpt` as `<root>/step_<step>` atomically, replacing an existing checkpoint of the
/// same step, and returns the folder. `root` is created if needed.
pub fn save(root: &Path, ckpt: &Checkpoint) -> Result<PathBuf, CkptError> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = root.join(format!(
        "{TMP_PREFIX}{}-{}-{nanos}",
        ckpt.step,
        std::process::id()
    ));
    let result = write_into(&tmp, ckpt).and_then(|()| publish(root, &tmp, ckpt.step));
    if result.is_err() {
        // Best effort: a leftover is ignored by `latest` and removed by `prune` anyway.
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(tmp: &Path, ckpt: &Checkpoint) -> Result<(), CkptError> {
    fs::create_dir(tmp).map_err(io_err(tmp))?;
    let mut files = Vec::new();
    write_tensors(&tmp.join(MODEL_FILE), "model", &ckpt.model)?;
    files.push(MODEL_FILE);
    if let Some(ema) = &ckpt.ema {
        write_tensors(&tmp.join(EMA_FILE), "ema", ema)?;
        files.push(EMA_FILE);
    }
    write_tensors(&tmp.join(OPTIMIZER_FILE), "optimizer", &ckpt.optimizer)?;
    files.push(OPTIMIZER_FILE);
    let rng = ckpt
        .rng
        .iter()
        .map(|(n, b)| (n.clone(), Tensor::from_slice(b)))
        .collect::<Vec<_>>();
    write_tensors(&tmp.join(RNG_FILE), "rng", &rng)?;
    files.push(RNG_FILE);
    let cfg_path = tmp.join(ALL_CONFIG_FILE);
    fs::write(&cfg_path, ckpt.config.to_yaml()).map_err(io_err(&cfg_path))?;
    fsync_file(&cfg_path)?;
    files.push(ALL_CONFIG_FILE);

    let mut manifest = Map::new();
    for f in files {
        let (bytes, crc) = file_digest(&tmp.join(f))?;
        manifest.insert(f.to_string(), json!({ "bytes": bytes, "crc32c": crc }));
    }
    let meta = json!({
        "format": FORMAT,
        "version": VERSION,
        "step": ckpt.step,
        "files": manifest,
        "extra": ckpt.extra,
    });
    let meta_path = tmp.join(META_FILE);
    let text = serde_json::to_string_pretty(&meta).map_err(|e| CkptError::Corrupt {
        path: meta_path.clone(),
        reason: e.to_string(),
    })?;
    let mut f = fs::File::create(&meta_path).map_err(io_err(&meta_path))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(&meta_path))?;
    fsync_dir(tmp)
}

fn publish(root: &Path, tmp: &Path, step: u64) -> Result<PathBuf, CkptError> {
    let dest = root.join(step_dir_name(step));
    let mut old = None;
    if dest.exists() {
        let trash = root.join(format!("{OLD_PREFIX}{step}-{}", std::process::id()));
        fs::rename(&dest, &trash).map_err(io_err(&dest))?;
        old = Some(trash);
    }
    fs::rename(tmp, &dest).map_err(io_err(&dest))?;
    fsync_dir(root)?;
    if let Some(trash) = old {
        fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
    }
    Ok(dest)
}

/// The parsed manifest of a checkpoint folder: read and checked by
/// [`trm_reference::run_checkpoint`], which trm-export's import shares, so that both accept
/// exactly the same checkpoints.
type Meta = run_checkpoint::Manifest;

fn manifest_err(e: run_checkpoint::ManifestError) -> CkptError {
    match e {
        run_checkpoint::ManifestError::Io { path, source } => CkptError::Io { path, source },
        run_checkpoint::ManifestError::Incomplete { path } => CkptError::Incomplete { path },
        run_checkpoint::ManifestError::Corrupt { path, reason } => {
            CkptError::Corrupt { path, reason }
        }
        other => CkptError::Corrupt {
            path: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}

fn read_meta(dir: &Path) -> Result<Meta, CkptError> {
    run_checkpoint::read_manifest(dir).map_err(manifest_err)
}

/// Checks that every file of the manifest exists with its recorded size (and, with `crc`, its
/// CRC-32C), and that the manifest lists every file a checkpoint has.
fn verify_files(dir: &Path, meta: &Meta, crc: bool) -> Result<(), CkptError> {
    let depth = if crc {
        run_checkpoint::Verify::Checksums
    } else {
        run_checkpoint::Verify::Sizes
    };
    run_checkpoint::verify_files(dir, meta, depth).map_err(manifest_err)
}

/// Finished checkpoints under `root` (folders `step_<N>` whose manifest is readable and whose
/// files have their recorded sizes), sorted by step. A missing `root` has none.
pub fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>, CkptError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(root))?;
        let Some(step) = entry.file_name().to_str().and_then(parse_step_dir) else {
            continue;
        };
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        if check_finished(&dir, step).is_ok() {
            out.push((step, dir));
        }
    }
    out.sort_by_key(|(s, _)| *s);
    Ok(out)
}

/// The finished checkpoint with the largest step under `root`, ignoring unfinished writes and
/// damaged checkpoints. Commands that pick "the latest" for the user go through [`newest`]
/// (training resume, which says when it skips one) or [`latest_strict`] (evaluation).
pub fn latest(root: &Path) -> Result<Option<(u64, PathBuf)>, CkptError> {
    Ok(list(root)?.pop())
}

/// The newest checkpoints of a run folder, as [`newest`] finds them.
#[derive(Debug)]
pub struct Newest {
    /// The newest finished checkpoint (its step and folder), if any.
    pub usable: Option<(u64, PathBuf)>,
    /// The `step_<N>` folders newer than `usable` that are not finished checkpoints (a file
    /// missing or of the wrong size, no readable manifest), newest first, with the reason.
    pub unusable: Vec<(u64, PathBuf, CkptError)>,
}

/// Whether `dir` is a finished checkpoint of step `step`: its manifest is readable, names that
/// step, and every file has its recorded size (CRCs are checked by [`load`]).
fn check_finished(dir: &Path, step: u64) -> Result<(), CkptError> {
    let meta = read_meta(dir)?;
    if meta.step != step {
        return Err(CkptError::Corrupt {
            path: dir.join(META_FILE),
            reason: format!("the manifest says step {}, the folder {step}", meta.step),
        });
    }
    verify_files(dir, &meta, false)
}

/// The newest finished checkpoint under `root`, and every newer `step_<N>` folder that is not
/// one (with why): what a command picking "the latest" must report rather than skip silently.
/// A missing `root` has none.
pub fn newest(root: &Path) -> Result<Newest, CkptError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Newest {
                usable: None,
                unusable: Vec::new(),
            });
        }
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut steps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(root))?;
        if let Some(step) = entry.file_name().to_str().and_then(parse_step_dir)
            && entry.path().is_dir()
        {
            steps.push((step, entry.path()));
        }
    }
    steps.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    let mut unusable = Vec::new();
    for (step, dir) in steps {
        match check_finished(&dir, step) {
            Ok(()) => {
                return Ok(Newest {
                    usable: Some((step, dir)),
                    unusable,
                });
            }
            Err(e) => unusable.push((step, dir, e)),
        }
    }
    Ok(Newest {
        usable: None,
        unusable,
    })
}

/// The newest `step_<N>` folder under `root` as a checkpoint to read: `None` when there is no
/// such folder, an error ([`CkptError::LatestUnusable`], naming the newest finished one before
/// it) when it is not a finished checkpoint. For commands that must not fall back silently to
/// an older step: the user names another checkpoint explicitly instead.
pub fn latest_strict(root: &Path) -> Result<Option<(u64, PathBuf)>, CkptError> {
    let n = newest(root)?;
    match n.unusable.into_iter().next() {
        Some((_, dir, reason)) => Err(CkptError::LatestUnusable {
            dir,
            reason: Box::new(reason),
            older: n.usable.map(|(_, d)| d),
        }),
        None => Ok(n.usable),
    }
}

/// The step recorded in the manifest of the checkpoint folder `dir`.
pub fn read_step(dir: &Path) -> Result<u64, CkptError> {
    Ok(read_meta(dir)?.step)
}

/// Keeps the newest `keep` finished checkpoints under `root` and removes older ones, plus any
/// leftover of an interrupted write. Returns the folders removed. Call it from the one process
/// that writes checkpoints, not while a [`save`] runs.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<PathBuf>, CkptError> {
    let mut removed = Vec::new();
    let done = list(root)?;
    let n = done.len().saturating_sub(keep);
    for (_, dir) in done.into_iter().take(n) {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        removed.push(dir);
    }
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) || name.starts_with(OLD_PREFIX) {
                let p = entry.path();
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
                removed.push(p);
            }
        }
    }
    Ok(removed)
}

fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, CkptError> {
    Tensor::read_safetensors(path).map_err(|source| CkptError::Corrupt {
        path: path.to_path_buf(),
        reason: source.to_string(),
    })
}

/// Loads the checkpoint folder `dir` (a `step_<N>`), checking every file against the manifest.
/// Tensors are on the CPU; restore them with [`restore_model`] and [`restore_named`].
pub fn load(dir: &Path) -> Result<Checkpoint, CkptError> {
    let meta = read_meta(dir)?;
    verify_files(dir, &meta, true)?;
    let has = |f: &str| meta.has(f);
    let model = read_tensors(&dir.join(MODEL_FILE))?;
    let ema = if has(EMA_FILE) {
        Some(read_tensors(&dir.join(EMA_FILE))?)
    } else {
        None
    };
    let optimizer = read_tensors(&dir.join(OPTIMIZER_FILE))?;
    let rng_path = dir.join(RNG_FILE);
    let rng = read_tensors(&rng_path)?
        .into_iter()
        .map(|(n, t)| {
            if t.kind() != Kind::Uint8 || t.dim() != 1 {
                return Err(CkptError::Corrupt {
                    path: rng_path.clone(),
                    reason: format!("RNG state {n} is not a byte vector"),
                });
            }
            let bytes = Vec::<u8>::try_from(&t).map_err(tch_err(&rng_path))?;
            Ok((n, bytes))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config =
        TrainConfig::load::<&str>(&dir.join(ALL_CONFIG_FILE), &[]).map_err(CkptError::Config)?;
    Ok(Checkpoint {
        step: meta.step,
        model,
        ema,
        optimizer,
        rng,
        extra: meta.extra,
        config,
    })
}

/// Copies checkpoint weights into a model's variables (by reference name, shapes checked).
pub fn restore_model(vs: &nn::VarStore, model: Vec<(String, Tensor)>) -> Result<(), CkptError> {
    crate::model::load_named_tensors(vs, model).map_err(CkptError::Model)
}

/// Copies `src` (from a checkpoint) into the live tensors `dst` in place, matching names, checking
/// shapes, and converting device and element type. Every live tensor must be present and every
/// checkpoint tensor used. `what` names the list in errors (`optimizer`, `ema`).
pub fn restore_named(
    what: &str,
    dst: &[(String, Tensor)],
    src: Vec<(String, Tensor)>,
) -> Result<(), CkptError> {
    check_unique(what, dst.iter().map(|(n, _)| n))?;
    let mut src: std::collections::HashMap<String, Tensor> = src.into_iter().collect();
    let _guard = tch::no_grad_guard();
    for (name, live) in dst {
        let t = src.remove(name).ok_or_else(|| CkptError::Missing {
            what: what.to_string(),
            name: name.clone(),
        })?;
        if t.size() != live.size() {
            return Err(CkptError::Shape {
                what: what.to_string(),
                name: name.clone(),
                expected: live.size(),
                found: t.size(),
            });
        }
        let path = PathBuf::from(format!("{what}:{name}"));
        let converted = t
            .f_to_device(live.device())
            .and_then(|t| t.f_to_kind(live.kind()))
            .map_err(tch_err(&path))?;
        live.shallow_clone()
            .f_copy_(&converted)
            .map_err(tch_err(&path))?;
    }
    let mut left: Vec<String> = src.into_keys().collect();
    left.sort();
    match left.into_iter().next() {
        Some(name) => Err(CkptError::Unexpected {
            what: what.to_string(),
            name,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_dir_names() {
        assert_eq!(parse_step_dir(&step_dir_name(42)), Some(42));
        assert_eq!(parse_step_dir("step_"), None);
        assert_eq!(parse_step_dir("step_1a"), None);
        assert_eq!(parse_step_dir("step_+1"), None);
        assert_eq!(parse_step_dir(".tmp-step_1-2-3"), None);
    }
}
