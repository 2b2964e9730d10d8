//! Why a byte string is not a valid `.trm` file.

use super::NumericScheme;
use crate::config::ConfigError;
use crate::tensor::{DType, Shape, TensorId};
use core::fmt;

/// The command that writes `.trm` files, named by the errors that ask to regenerate one.
const REGENERATE: &str = "regenerate it with `trm-export export ...`";

/// Why [`Model::parse`](super::Model::parse) rejected a file: the first check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FormatError {
    /// The file does not start with [`MAGIC`](super::MAGIC): not a `.trm` file.
    BadMagic,
    /// The format version is not the one this build reads.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this build reads ([`FORMAT_VERSION`](super::FORMAT_VERSION)).
        supported: u16,
    },
    /// The file ends before a part that the preamble or header says is there.
    Truncated {
        /// Bytes the file must have.
        needed: u64,
        /// Bytes it has.
        available: u64,
    },
    /// The file is larger than 4 GiB (offsets are u32).
    TooLarge,
    /// A field that must be zero in this version is not.
    ReservedNonZero {
        /// Which field.
        what: &'static str,
    },
    /// The preamble's payload offset is not where the header and directory say.
    PayloadOffset {
        /// The offset the lengths imply (directory end rounded up to 64); when the header alone
        /// runs past the preamble's offset, the header end rounded up (a lower bound).
        expected: u64,
        /// The offset in the preamble.
        found: u32,
    },
    /// The CRC-32 of the header and directory does not match the preamble's.
    MetadataChecksum {
        /// Checksum stored in the preamble.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// The header is not a postcard-encoded header (followed by a valid source record when
    /// [`FLAG_SOURCE`](super::FLAG_SOURCE) is set, and by a known weights kind when
    /// [`FLAG_SOURCE_WEIGHTS`](super::FLAG_SOURCE_WEIGHTS) is) of exactly `header_len` bytes.
    Header,
    /// The config in the header is invalid.
    Config(ConfigError),
    /// The numeric scheme is one this build cannot run.
    UnsupportedScheme(NumericScheme),
    /// The file length is not `payload_offset + payload_len`.
    FileLength {
        /// Length the header implies.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// A directory entry's (kind, layer) bytes name no tensor.
    UnknownTensor {
        /// Position of the entry in the directory.
        index: u32,
    },
    /// A directory entry's dtype byte names no element type.
    UnknownDType {
        /// Position of the entry in the directory.
        index: u32,
        /// The byte.
        code: u8,
    },
    /// A tensor that a model with this config does not have.
    UnexpectedTensor(TensorId),
    /// A tensor listed twice.
    DuplicateTensor(TensorId),
    /// A tensor that the config requires is not in the directory.
    MissingTensor(TensorId),
    /// A tensor's shape is not the one the config gives it.
    ShapeMismatch {
        /// Which tensor.
        tensor: TensorId,
        /// Shape from the config.
        expected: Shape,
        /// Shape in the file.
        found: Shape,
    },
    /// A tensor's element type is not allowed by the numeric scheme.
    DTypeNotAllowed {
        /// Which tensor.
        tensor: TensorId,
        /// Its element type.
        dtype: DType,
    },
    /// A tensor's byte length is not `rows * cols * dtype size`.
    ByteLength {
        /// Which tensor.
        tensor: TensorId,
        /// Length from shape and dtype.
        expected: u64,
        /// Length in the file.
        found: u32,
    },
    /// A tensor's offset is not a multiple of 64.
    Misaligned {
        /// Which tensor.
        tensor: TensorId,
        /// Its offset.
        offset: u32,
    },
    /// A tensor's bytes are not inside the payload.
    OutOfBounds {
        /// Which tensor.
        tensor: TensorId,
        /// Its offset.
        offset: u32,
        /// Its byte length.
        len: u32,
    },
    /// A tensor starts before the end of the previous entry's tensor (overlap or wrong order).
    Overlap {
        /// Which tensor.
        tensor: TensorId,
    },
    /// A tensor's quantization words (format version 2) do not describe a table after its data
    /// and inside the payload, or the scheme does not allow one.
    QuantTable {
        /// Which tensor.
        tensor: TensorId,
    },
    /// The CRC-32 of the payload does not match the header's.
    PayloadChecksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::BadMagic => {
                write!(f, "not a .trm model file (bad magic bytes); {REGENERATE}")
            }
            FormatError::UnsupportedVersion { found, supported } if found > supported => write!(
                f,
                ".trm format version {found} is newer than this build of trm-nostd reads \
                 (version {supported}): update trm-nostd, or re-export with the matching trm-export"
            ),
            FormatError::UnsupportedVersion { found, supported } => write!(
                f,
                ".trm format version {found} is not supported (this build reads versions \
                 {} to {supported}); {REGENERATE}",
                super::MIN_FORMAT_VERSION
            ),
            FormatError::Truncated { needed, available } => write!(
                f,
                ".trm file truncated: needs at least {needed} bytes, has {available}"
            ),
            FormatError::TooLarge => f.write_str(".trm file larger than 4 GiB"),
            FormatError::ReservedNonZero { what } => {
                write!(f, ".trm file: reserved field `{what}` is not zero")
            }
            FormatError::PayloadOffset { expected, found } => write!(
                f,
                ".trm file: payload offset {found} in the preamble, the header and directory \
                 imply {expected}"
            ),
            FormatError::MetadataChecksum { stored, computed } => write!(
                f,
                ".trm file corrupted: header checksum {computed:#010x}, expected {stored:#010x}"
            ),
            FormatError::Header => {
                f.write_str(".trm file: the header (or its source record) does not decode")
            }
            FormatError::Config(e) => write!(f, ".trm file: {e}"),
            FormatError::UnsupportedScheme(s) => {
                write!(f, ".trm file: numeric scheme {s:?} is not supported")
            }
            FormatError::FileLength { expected, found } => {
                write!(f, ".trm file is {found} bytes, its header says {expected}")
            }
            FormatError::UnknownTensor { index } => {
                write!(
                    f,
                    ".trm file: directory entry {index} names no known tensor"
                )
            }
            FormatError::UnknownDType { index, code } => write!(
                f,
                ".trm file: directory entry {index} has unknown dtype code {code}"
            ),
            FormatError::UnexpectedTensor(t) => {
                write!(f, ".trm file: tensor {t} does not belong to this config")
            }
            FormatError::DuplicateTensor(t) => write!(f, ".trm file: tensor {t} listed twice"),
            FormatError::MissingTensor(t) => write!(f, ".trm file: tensor {t} is missing"),
            FormatError::ShapeMismatch {
                tensor,
                expected,
                found,
            } => write!(
                f,
                ".trm file: tensor {tensor} has shape [{}, {}] (rank {}), the config gives \
                 [{}, {}] (rank {})",
                found.rows, found.cols, found.rank, expected.rows, expected.cols, expected.rank
            ),
            FormatError::DTypeNotAllowed { tensor, dtype } => write!(
                f,
                ".trm file: tensor {tensor} is {dtype:?}, not allowed by the numeric scheme"
            ),
            FormatError::ByteLength {
                tensor,
                expected,
                found,
            } => write!(
                f,
                ".trm file: tensor {tensor} has {found} bytes, its shape and dtype need {expected}"
            ),
            FormatError::Misaligned { tensor, offset } => write!(
                f,
                ".trm file: tensor {tensor} at offset {offset}, not a multiple of 64"
            ),
            FormatError::OutOfBounds {
                tensor,
                offset,
                len,
            } => write!(
                f,
                ".trm file: tensor {tensor} ({len} bytes at offset {offset}) is outside the payload"
            ),
            FormatError::Overlap { tensor } => write!(
                f,
                ".trm file: tensor {tensor} overlaps the previous one or is out of offset order"
            ),
            FormatError::QuantTable { tensor } => write!(
                f,
                ".trm file: tensor {tensor} has an invalid quantization table reference"
            ),
            FormatError::PayloadChecksum { stored, computed } => write!(
                f,
                ".trm file corrupted: weights checksum {computed:#010x}, expected {stored:#010x}"
            ),
        }
    }
}

impl core::error::Error for FormatError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            FormatError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for FormatError {
    fn from(e: ConfigError) -> Self {
        FormatError::Config(e)
    }
}
