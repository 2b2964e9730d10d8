//! Writing `.trm` files on a host (feature `std`).

use super::dir::{DirEntry, ENTRY_LEN};
use super::{
    FLAG_SOURCE, FLAG_SOURCE_WEIGHTS, Header, MAGIC, MAX_SOURCE_NAME, NumericScheme, PREAMBLE_LEN,
    QUANT_TABLE_LE, RecordWire, SourceRecord, WeightsKind, align_up, crc32,
};
use crate::config::{Config, ConfigError};
use crate::tensor::{DType, TensorId};
use std::fmt;
use std::string::String;
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
    /// The scheme does not allow this element type for a tensor (f32 values given to a `Fixed`
    /// writer, or raw data of a type the scheme does not store).
    DTypeNotAllowed {
        /// Which tensor.
        tensor: TensorId,
        /// The element type given.
        dtype: DType,
    },
    /// A quantization table given for a `Float` model, or one whose length is not a multiple
    /// of 4.
    QuantTable(TensorId),
    /// The source record's name is empty, longer than [`MAX_SOURCE_NAME`] bytes, or holds a
    /// control character.
    SourceName,
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
            WriteError::DTypeNotAllowed { tensor, dtype } => write!(
                f,
                "cannot write .trm: tensor {tensor} as {dtype:?} is not allowed by the scheme"
            ),
            WriteError::QuantTable(t) => write!(
                f,
                "cannot write .trm: tensor {t}: quantization table not allowed or not whole words"
            ),
            WriteError::SourceName => write!(
                f,
                "cannot write .trm: the source record's name must be 1 to {MAX_SOURCE_NAME} \
                 bytes without control characters"
            ),
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
    tensors: Vec<(TensorId, Data<'t>)>,
    /// The source record: name, size, CRC-32C, weights kind.
    source: Option<(String, u64, u32, Option<WeightsKind>)>,
}

/// One tensor's data as given to the writer.
#[derive(Debug, Clone)]
enum Data<'t> {
    /// f32 values, converted to the `Float` scheme's type.
    F32(&'t [f32]),
    /// Raw little-endian elements of `dtype`, and a quantization table (possibly empty).
    Raw {
        dtype: DType,
        bytes: Vec<u8>,
        table: Vec<u8>,
    },
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
            source: None,
        })
    }

    /// Records which checkpoint file the weights come from (a [`SourceRecord`], with its
    /// weights kind when `kind` is set; see the [module documentation](super)). Without it the
    /// file has no record.
    pub fn set_source(&mut self, source: &SourceRecord<'_>) -> Result<&mut Self, WriteError> {
        if !source.is_valid() {
            return Err(WriteError::SourceName);
        }
        self.source = Some((
            source.weights.into(),
            source.bytes,
            source.crc32c,
            source.kind,
        ));
        Ok(self)
    }

    /// Adds one tensor's values (row-major, `id.shape(config).numel()` of them) to a `Float`
    /// model.
    pub fn add(&mut self, id: TensorId, values: &'t [f32]) -> Result<&mut Self, WriteError> {
        self.check_new(id)?;
        if self.scheme.is_fixed() {
            return Err(WriteError::DTypeNotAllowed {
                tensor: id,
                dtype: DType::F32,
            });
        }
        let expected = numel(id, &self.config)?;
        if values.len() != expected {
            return Err(WriteError::ElementCount {
                tensor: id,
                expected,
                found: values.len(),
            });
        }
        self.tensors.push((id, Data::F32(values)));
        Ok(self)
    }

    /// Adds one tensor as raw little-endian elements of `dtype` (row-major), with its
    /// quantization table (`Fixed` models only; empty for none; a whole number of 4-byte words).
    pub fn add_raw(
        &mut self,
        id: TensorId,
        dtype: DType,
        bytes: Vec<u8>,
        table: Vec<u8>,
    ) -> Result<&mut Self, WriteError> {
        self.check_new(id)?;
        if !self.scheme.allows(dtype) {
            return Err(WriteError::DTypeNotAllowed { tensor: id, dtype });
        }
        if (!table.is_empty() && !self.scheme.is_fixed()) || !table.len().is_multiple_of(4) {
            return Err(WriteError::QuantTable(id));
        }
        let expected = numel(id, &self.config)?;
        if bytes.len() != expected * dtype.size() {
            return Err(WriteError::ElementCount {
                tensor: id,
                expected,
                found: bytes.len() / dtype.size(),
            });
        }
        self.tensors.push((
            id,
            Data::Raw {
                dtype,
                bytes,
                table,
            },
        ));
        Ok(self)
    }

    fn check_new(&self, id: TensorId) -> Result<(), WriteError> {
        if !id.present(&self.config) {
            return Err(WriteError::UnexpectedTensor(id));
        }
        if self.tensors.iter().any(|(t, _)| *t == id) {
            return Err(WriteError::DuplicateTensor(id));
        }
        Ok(())
    }

    /// The file's bytes. Fails if a tensor of the config was not added.
    pub fn finish(&self) -> Result<Vec<u8>, WriteError> {
        // Tensors in file order, each with its values.
        let mut ordered = Vec::new();
        for id in TensorId::all(&self.config) {
            let data = self
                .tensors
                .iter()
                .find(|(t, _)| *t == id)
                .map(|(_, v)| v)
                .ok_or(WriteError::MissingTensor(id))?;
            ordered.push((id, data));
        }

        // Payload, with offsets relative to its start (the start is 64-aligned): each tensor
        // 64-aligned, its quantization table (if any) right after it, 4-aligned.
        let mut payload = Vec::new();
        let mut placed = Vec::with_capacity(ordered.len());
        for (id, data) in &ordered {
            payload.resize(align_up(payload.len() as u64) as usize, 0);
            let rel = payload.len();
            let (dtype, table) = match data {
                Data::F32(values) => {
                    let dtype = match self.scheme {
                        NumericScheme::Float(d) => d,
                        _ => DType::F32,
                    };
                    encode_values(values, dtype, &mut payload);
                    (dtype, None)
                }
                Data::Raw {
                    dtype,
                    bytes,
                    table,
                } => {
                    payload.extend_from_slice(bytes);
                    (*dtype, Some(table))
                }
            };
            let len = payload.len() - rel;
            let table_at = match table {
                Some(t) if !t.is_empty() => {
                    payload.resize(payload.len().div_ceil(4) * 4, 0);
                    let at = payload.len();
                    payload.extend_from_slice(t);
                    Some((at, t.len()))
                }
                _ => None,
            };
            placed.push((*id, dtype, rel, len, table_at));
        }

        let header = Header {
            config: self.config,
            scheme: self.scheme,
            tensor_count: u32::try_from(ordered.len()).map_err(|_| WriteError::TooLarge)?,
            payload_len: u32::try_from(payload.len()).map_err(|_| WriteError::TooLarge)?,
            payload_crc: crc32(&payload),
        };
        // Serializing a plain struct into a Vec cannot fail.
        let mut header_bytes = postcard::to_stdvec(&header).map_err(|_| WriteError::TooLarge)?;
        let mut flags = 0u16;
        if let Some((weights, bytes, crc32c, kind)) = &self.source {
            let record = RecordWire {
                weights,
                bytes: *bytes,
                crc32c: *crc32c,
            };
            let more = postcard::to_stdvec(&record).map_err(|_| WriteError::TooLarge)?;
            header_bytes.extend_from_slice(&more);
            flags |= FLAG_SOURCE;
            if let Some(k) = kind {
                let more = postcard::to_stdvec(k).map_err(|_| WriteError::TooLarge)?;
                header_bytes.extend_from_slice(&more);
                flags |= FLAG_SOURCE_WEIGHTS;
            }
        }
        let dir_end = (PREAMBLE_LEN + header_bytes.len() + ordered.len() * ENTRY_LEN) as u64;
        let payload_offset = align_up(dir_end);
        let file_len = payload_offset + payload.len() as u64;
        let to_u32 = |v: u64| u32::try_from(v).map_err(|_| WriteError::TooLarge);
        to_u32(file_len)?;

        let mut out = Vec::with_capacity(file_len as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.scheme.min_version().to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&to_u32(header_bytes.len() as u64)?.to_le_bytes());
        out.extend_from_slice(&to_u32(payload_offset)?.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // metadata checksum, filled below
        out.extend_from_slice(&header_bytes);
        for (id, dtype, rel, len, table_at) in placed {
            let mut e = DirEntry::new(
                id,
                dtype,
                id.shape(&self.config),
                to_u32(payload_offset + rel as u64)?,
                to_u32(len as u64)?,
            );
            if let Some((at, n)) = table_at {
                e.quant = [
                    to_u32(payload_offset + at as u64)?,
                    to_u32(n as u64)?,
                    QUANT_TABLE_LE,
                ];
            }
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
