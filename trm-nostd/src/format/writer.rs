//! Writing `.trm` files on a host (feature `std`).

use super::dir::{DirEntry, ENTRY_LEN};
use super::{FORMAT_VERSION, Header, MAGIC, NumericScheme, PREAMBLE_LEN, align_up, crc32};
use crate::config::{Config, ConfigError};
use crate::tensor::{DType, TensorId};
use std::fmt;
use std::vec::Vec;

/// Why [`ModelWriter`] refused to write a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The config is invalid.
    Config(ConfigError),
    /// The scheme is not one this build writes.
    UnsupportedScheme(NumericScheme),
    /// The config has no such tensor.
    UnexpectedTensor(TensorId),
    /// The tensor was given twice.
    DuplicateTensor(TensorId),
    /// A tensor of the config was not given.
    MissingTensor(TensorId),
    /// A tensor has the wrong number of values.
    ElementCount {
        /// Which tensor.
        tensor: TensorId,
        /// Values its shape needs.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// The file would exceed 4 GiB.
    TooLarge,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Config(e) => write!(f, "cannot write .trm: {e}"),
            WriteError::UnsupportedScheme(s) => {
                write!(
                    f,
                    "cannot write .trm: numeric scheme {s:?} is not supported"
                )
            }
            WriteError::UnexpectedTensor(t) => {
                write!(
                    f,
                    "cannot write .trm: tensor {t} does not belong to this config"
                )
            }
            WriteError::DuplicateTensor(t) => {
                write!(f, "cannot write .trm: tensor {t} given twice")
            }
            WriteError::MissingTensor(t) => write!(f, "cannot write .trm: tensor {t} missing"),
            WriteError::ElementCount {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "cannot write .trm: tensor {tensor} has {found} values, its shape needs {expected}"
            ),
            WriteError::TooLarge => f.write_str("cannot write .trm: the file would exceed 4 GiB"),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// Builds a `.trm` file from f32 tensors.
///
/// Values are converted to the scheme's dtype (F16 and BF16 with `half`, round to nearest
/// even). Tensors may be added in any order; the file stores them in [`TensorId::all`] order.
///
/// ```
/// use trm_nostd::format::{Model, ModelWriter, NumericScheme};
/// use trm_nostd::{Config, DType, TensorId};
///
/// let config = Config::sudoku_mlp_t_d128();
/// let weights: Vec<(TensorId, Vec<f32>)> = TensorId::all(&config)
///     .map(|id| (id, vec![0.5; id.shape(&config).numel()]))
///     .collect();
/// let mut w = ModelWriter::new(config, NumericScheme::Float(DType::BF16))?;
/// for (id, values) in &weights {
///     w.add(*id, values)?;
/// }
/// let bytes = w.finish()?;
/// let model = Model::parse(&bytes)?;
/// assert_eq!(model.summary().parameter_count, config.parameter_count());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ModelWriter<'t> {
    config: Config,
    scheme: NumericScheme,
    tensors: Vec<(TensorId, &'t [f32])>,
}

impl<'t> ModelWriter<'t> {
    /// A writer for a model with this config, stored with this scheme.
    pub fn new(config: Config, scheme: NumericScheme) -> Result<Self, WriteError> {
        config.validate().map_err(WriteError::Config)?;
        if !scheme.is_supported() {
            return Err(WriteError::UnsupportedScheme(scheme));
        }
        Ok(ModelWriter {
            config,
            scheme,
            tensors: Vec::new(),
        })
    }

    /// Adds one tensor's values (row-major, `id.shape(config).numel()` of them).
    pub fn add(&mut self, id: TensorId, values: &'t [f32]) -> Result<&mut Self, WriteError> {
        if !id.present(&self.config) {
            return Err(WriteError::UnexpectedTensor(id));
        }
        if self.tensors.iter().any(|(t, _)| *t == id) {
            return Err(WriteError::DuplicateTensor(id));
        }
        let expected = numel(id, &self.config)?;
        if values.len() != expected {
            return Err(WriteError::ElementCount {
                tensor: id,
                expected,
                found: values.len(),
            });
        }
        self.tensors.push((id, values));
        Ok(self)
    }

    /// The file's bytes. Fails if a tensor of the config was not added.
    pub fn finish(&self) -> Result<Vec<u8>, WriteError> {
        let NumericScheme::Float(dtype) = self.scheme;
        // Tensors in file order, each with its values.
        let mut ordered = Vec::new();
        for id in TensorId::all(&self.config) {
            let values = self
                .tensors
                .iter()
                .find(|(t, _)| *t == id)
                .map(|(_, v)| *v)
                .ok_or(WriteError::MissingTensor(id))?;
            ordered.push((id, values));
        }

        // Payload, with offsets relative to its start (the start is 64-aligned).
        let mut payload = Vec::new();
        let mut placed = Vec::with_capacity(ordered.len());
        for (id, values) in &ordered {
            payload.resize(align_up(payload.len() as u64) as usize, 0);
            let rel = payload.len();
            encode_values(values, dtype, &mut payload);
            placed.push((*id, rel, payload.len() - rel));
        }

        let header = Header {
            config: self.config,
            scheme: self.scheme,
            tensor_count: u32::try_from(ordered.len()).map_err(|_| WriteError::TooLarge)?,
            payload_len: u32::try_from(payload.len()).map_err(|_| WriteError::TooLarge)?,
            payload_crc: crc32(&payload),
        };
        // Serializing a plain struct into a Vec cannot fail.
        let header_bytes = postcard::to_stdvec(&header).map_err(|_| WriteError::TooLarge)?;
        let dir_end = (PREAMBLE_LEN + header_bytes.len() + ordered.len() * ENTRY_LEN) as u64;
        let payload_offset = align_up(dir_end);
        let file_len = payload_offset + payload.len() as u64;
        let to_u32 = |v: u64| u32::try_from(v).map_err(|_| WriteError::TooLarge);
        to_u32(file_len)?;

        let mut out = Vec::with_capacity(file_len as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&to_u32(header_bytes.len() as u64)?.to_le_bytes());
        out.extend_from_slice(&to_u32(payload_offset)?.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // metadata checksum, filled below
        out.extend_from_slice(&header_bytes);
        for (id, rel, len) in placed {
            let e = DirEntry::new(
                id,
                dtype,
                id.shape(&self.config),
                to_u32(payload_offset + rel as u64)?,
                to_u32(len as u64)?,
            );
            out.extend_from_slice(&e.encode());
        }
        out.resize(payload_offset as usize, 0);
        let meta_crc = crc32(&out[PREAMBLE_LEN..]);
        out[PREAMBLE_LEN - 4..PREAMBLE_LEN].copy_from_slice(&meta_crc.to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

/// Builds a `.trm` file in one call (see [`ModelWriter`]).
pub fn write_model<'t>(
    config: Config,
    scheme: NumericScheme,
    tensors: impl IntoIterator<Item = (TensorId, &'t [f32])>,
) -> Result<Vec<u8>, WriteError> {
    let mut w = ModelWriter::new(config, scheme)?;
    for (id, values) in tensors {
        w.add(id, values)?;
    }
    w.finish()
}

fn numel(id: TensorId, config: &Config) -> Result<usize, WriteError> {
    let s = id.shape(config);
    usize::try_from(s.rows as u64 * s.cols as u64).map_err(|_| WriteError::TooLarge)
}

/// Appends `values` converted to `dtype` (little-endian).
fn encode_values(values: &[f32], dtype: DType, out: &mut Vec<u8>) {
    match dtype {
        DType::F16 => {
            for v in values {
                out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        }
        DType::BF16 => {
            for v in values {
                out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
            }
        }
        // F32 (the only other type a supported Float scheme has).
        _ => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}
