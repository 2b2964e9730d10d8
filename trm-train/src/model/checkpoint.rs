//! Reading checkpoints into a model's [`nn::VarStore`].
//!
//! Two file kinds are read:
//! - safetensors (ours, and any converted checkpoint), with reference tensor names;
//! - the reference's `torch.save` state_dict (a zip archive holding `data.pkl`), read by
//!   trm-reference's pure-Rust reader (libtorch's unpickler rejects the pickled `OrderedDict`).
//!
//! Names may carry the prefixes the reference adds (`_orig_mod.` from `torch.compile`,
//! `model.` from the loss head wrapper); they are stripped before matching.

use super::{ModelError, Trm};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

// Defined with the reference's other names, in trm-reference.
pub use trm_reference::names::strip_reference_prefix;

/// Why a checkpoint or a reference config cannot be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading the file failed.
    Io(std::io::Error),
    /// libtorch could not read or copy a tensor.
    Tch(tch::TchError),
    /// The model expects a tensor the checkpoint lacks.
    Missing(String),
    /// The checkpoint holds a tensor the model does not have.
    Unexpected(String),
    /// A tensor has the wrong shape.
    Shape {
        /// Reference name.
        name: String,
        /// Shape the model expects.
        expected: Vec<i64>,
        /// Shape in the checkpoint.
        found: Vec<i64>,
    },
    /// The reference checkpoint or its config could not be imported.
    Import(anyhow::Error),
    /// The model could not be built.
    Model(ModelError),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io(e) => write!(f, "checkpoint: {e}"),
            CheckpointError::Tch(e) => write!(f, "checkpoint: libtorch: {e}"),
            CheckpointError::Missing(n) => write!(f, "checkpoint lacks tensor {n}"),
            CheckpointError::Unexpected(n) => {
                write!(f, "checkpoint has tensor {n}, which the model does not")
            }
            CheckpointError::Shape {
                name,
                expected,
                found,
            } => write!(
                f,
                "checkpoint tensor {name} has shape {found:?}, the model expects {expected:?}"
            ),
            // Each cause once (`{:#}` repeats those printed inside their parent's message).
            CheckpointError::Import(e) => {
                write!(f, "reference import: {}", trm_data::cli::error_chain(e))
            }
            CheckpointError::Model(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io(e) => Some(e),
            CheckpointError::Tch(e) => Some(e),
            CheckpointError::Import(e) => Some(e.as_ref()),
            CheckpointError::Model(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for CheckpointError {
    fn from(e: std::io::Error) -> Self {
        CheckpointError::Io(e)
    }
}

impl From<tch::TchError> for CheckpointError {
    fn from(e: tch::TchError) -> Self {
        CheckpointError::Tch(e)
    }
}

/// Reads every named tensor of a checkpoint file: a `torch.save` zip archive (detected by its
/// `PK` magic) or safetensors.
pub fn read_checkpoint(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    if n == 4 && magic == *b"PK\x03\x04" {
        // libtorch's own unpickler (Tensor::loadz_multi) rejects the OrderedDict that
        // torch.save writes for a state_dict; trm-reference's pure-Rust reader handles it.
        let bytes = std::fs::read(path)?;
        let named = trm_reference::torch::load_torch_bytes(&bytes)
            .map_err(|e| CheckpointError::Import(e.into()))?;
        named
            .into_iter()
            .map(|(n, t)| Ok((n, torch_to_tch(t)?)))
            .collect()
    } else {
        Ok(Tensor::read_safetensors(path)?)
    }
}

/// Copies named tensors into the variables of `vs`, by reference name (prefixes stripped),
/// checking shapes and converting element types. Every variable must be present and every
/// tensor used.
pub fn load_named_tensors(
    vs: &nn::VarStore,
    named: Vec<(String, Tensor)>,
) -> Result<(), CheckpointError> {
    let mut src: HashMap<String, Tensor> = named
        .into_iter()
        .map(|(n, t)| (strip_reference_prefix(&n).to_owned(), t))
        .collect();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let _no_grad = tch::no_grad_guard();
    for (name, mut var) in vars {
        let t = src
            .remove(&name)
            .ok_or_else(|| CheckpointError::Missing(name.clone()))?;
        if t.size() != var.size() {
            return Err(CheckpointError::Shape {
                name,
                expected: var.size(),
                found: t.size(),
            });
        }
        var.f_copy_(&t.f_to_device(var.device())?.f_to_kind(var.kind())?)?;
    }
    let mut left: Vec<String> = src.into_keys().collect();
    left.sort();
    match left.into_iter().next() {
        Some(n) => Err(CheckpointError::Unexpected(n)),
        None => Ok(()),
    }
}

/// A reference run's checkpoint loaded into a fresh model.
#[derive(Debug)]
pub struct LoadedReference {
    /// The variables, under reference names.
    pub vs: nn::VarStore,
    /// The model reading them, its forward kind set to the reference's.
    pub model: Trm,
    /// The element type the reference ran its forward pass in (`arch.forward_dtype`).
    pub forward_kind: Kind,
}

/// The tch element type of a reference `forward_dtype` name.
pub fn forward_kind(name: &str) -> Option<Kind> {
    match name {
        "float32" => Some(Kind::Float),
        "bfloat16" => Some(Kind::BFloat16),
        "float16" => Some(Kind::Half),
        _ => None,
    }
}

/// Loads a reference checkpoint (`path`: a checkpoint folder, whose latest `step_N` is read, or
/// a checkpoint file, with `all_config.yaml` beside it) into a new model on `device`.
///
/// The config and the tensors come from trm-reference's importer (one reader of the reference's
/// formats for the whole project); this only moves them into a [`nn::VarStore`].
pub fn load_reference(path: &Path, device: Device) -> Result<LoadedReference, CheckpointError> {
    let imported = trm_reference::checkpoint::import_reference(path, &Default::default())
        .map_err(CheckpointError::Import)?;
    let forward_kind = forward_kind(&imported.forward_dtype).ok_or_else(|| {
        CheckpointError::Import(anyhow::anyhow!(
            "unknown forward_dtype {}",
            imported.forward_dtype
        ))
    })?;
    let vs = nn::VarStore::new(device);
    let mut model = Trm::new(&vs.root(), &imported.config).map_err(CheckpointError::Model)?;
    model
        .set_forward_kind(forward_kind)
        .map_err(CheckpointError::Model)?;
    let named = imported
        .tensors
        .into_iter()
        .map(|(id, values)| {
            let shape = id.shape(&imported.config);
            let dims: Vec<i64> = if shape.rank == 1 {
                vec![shape.cols as i64]
            } else {
                vec![shape.rows as i64, shape.cols as i64]
            };
            Ok((
                id.to_string(),
                Tensor::f_from_slice(&values)?.f_view(dims.as_slice())?,
            ))
        })
        .collect::<Result<Vec<_>, tch::TchError>>()?;
    load_named_tensors(&vs, named)?;
    Ok(LoadedReference {
        vs,
        model,
        forward_kind,
    })
}

/// A tensor of a `torch.save` file (read by trm-reference) as a tch tensor.
fn torch_to_tch(t: trm_reference::torch::Tensor) -> Result<Tensor, CheckpointError> {
    use trm_reference::torch::TorchDType as D;
    let kind = match t.dtype {
        D::F64 => Kind::Double,
        D::F32 => Kind::Float,
        D::F16 => Kind::Half,
        D::BF16 => Kind::BFloat16,
        D::I64 => Kind::Int64,
        D::I32 => Kind::Int,
        D::I16 => Kind::Int16,
        D::I8 => Kind::Int8,
        D::U8 => Kind::Uint8,
        D::Bool => Kind::Bool,
        other => {
            return Err(CheckpointError::Import(anyhow::anyhow!(
                "unsupported element type {other}"
            )));
        }
    };
    let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(&t.data, &dims, kind)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_kinds() {
        assert_eq!(forward_kind("float32"), Some(Kind::Float));
        assert_eq!(forward_kind("bfloat16"), Some(Kind::BFloat16));
        assert_eq!(forward_kind("float64"), None);
    }
}
