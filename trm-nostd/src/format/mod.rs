//! The `.trm` model file: one self-describing, checksummed byte string that the engines read in
//! place (from flash on a microcontroller, or from a file read into memory on a host).
//!
//! # Layout (format versions 1 and 2)
//!
//! Every integer is little-endian. Offsets are absolute (from the first byte of the file), so a
//! file placed at a 64-byte-aligned address (see [`Aligned`] and [`include_model!`](crate::include_model)) has every
//! tensor 64-byte aligned in memory as well.
//!
//! ```text
//! offset  size  field
//! ------  ----  ---------------------------------------------------------------------------
//!      0     8  magic: 89 54 52 4D 0D 0A 1A 0A  ("\x89TRM\r\n\x1a\n", as PNG: catches text-mode
//!                 transfers and 7-bit channels)
//!      8     2  format version (u16): 1 or 2 (see "Versioning" below)
//!     10     2  flags (u16): bit 0 = FLAG_SOURCE (a source record follows the header);
//!                 bit 1 = FLAG_SOURCE_WEIGHTS (the record says which weights of the
//!                 checkpoint it holds; only with bit 0); the other bits must be 0
//!     12     4  header_len (u32): length of the postcard header (and source record) that
//!                 follows the preamble
//!     16     4  payload_offset (u32): where the payload starts; = align64(directory end)
//!     20     4  meta_crc (u32): CRC-32 of bytes 24..payload_offset (header, directory, padding)
//!     24     h  header: postcard encoding of `Header` (config, numeric scheme, tensor count,
//!                 payload length, payload CRC-32); with FLAG_SOURCE, followed by the postcard
//!                 encoding of a `SourceRecord` (name, size, CRC-32C), and with
//!                 FLAG_SOURCE_WEIGHTS by that of a `WeightsKind` (one byte); together they
//!                 exactly fill the h bytes
//!   24+h  32*n  tensor directory: n = tensor_count fixed 32-byte entries (below)
//!      .     .  zero padding up to payload_offset (a multiple of 64)
//! payload_offset  payload_len  payload: the tensors, each at a 64-byte-aligned offset, zero
//!                 padding between them; the file ends exactly at the end of the payload
//! ```
//!
//! A directory entry (32 bytes) is fixed binary, not postcard, so the reader can walk it in place
//! without decoding the whole directory into memory (a microcontroller has a few KB of stack):
//!
//! ```text
//!  0  u8   tensor kind: 0 embed_tokens, 1 embed_pos, 2 puzzle_emb, 3 H_init, 4 L_init,
//!          5 lm_head, 6 q_head.weight, 7 q_head.bias; 16 + k for block weight k: 16 qkv_proj,
//!          17 o_proj, 18 mlp_t.gate_up, 19 mlp_t.down, 20 mlp.gate_up, 21 mlp.down
//!  1  u8   block index (0 for the global tensors)
//!  2  u8   dtype: 0 F32, 1 F16, 2 BF16, 3 I8, 4 I16, 5 I32
//!  3  u8   rank (1 or 2; a vector has rows = 1)
//!  4  u32  rows
//!  8  u32  cols (the contiguous axis)
//! 12  u32  offset of the data (absolute, multiple of 64)
//! 16  u32  byte length = rows * cols * dtype size
//! 20  u32  quant[0] \
//! 24  u32  quant[1]  > per-tensor quantization words, all 0 in version 1
//! 28  u32  quant[2] /
//! ```
//!
//! # Validation
//!
//! [`Model::parse`] checks everything once, in this order, and returns the first failure as a
//! [`FormatError`]: magic, version, flags, the preamble's lengths, the metadata checksum, the
//! header's postcard decoding, [`Config::validate`](crate::Config::validate), the numeric scheme,
//! the file length against the header, then every directory entry (known id and dtype, quant words
//! zero, tensor expected by the config and seen once, shape equal to
//! [`TensorId::shape`](crate::TensorId::shape), dtype allowed by the scheme, byte length, 64-byte
//! alignment, inside the payload, after the previous tensor), every expected tensor present, and
//! last the payload checksum. Tensors must appear in increasing offset order: that makes the
//! overlap check a single walk. After `parse` succeeds, no accessor can fail or panic. Parsing
//! never panics and never allocates (the crate has no `alloc`); its stack holds little more than
//! the decoded [`Header`] (under 100 bytes) and a 56-byte bitset of the tensors seen. The
//! payload checksum is one byte-wise table-driven CRC pass (a 1 KB table in flash).
//!
//! All sizes and offsets are u32, so a file is at most 4 GiB (the paper's largest model is
//! 28 MB in f32). Arithmetic on them is done in u64, so nothing overflows on 32-bit targets.
//!
//! # Versioning and quantized files (format version 2)
//!
//! [`NumericScheme`] has two variants: `Float(dtype)` (every tensor stored in that float type)
//! and `Fixed { weights, activations }`, the fixed-point scheme of [`crate::fixed`]. Postcard
//! encodes the variant index first, and `Fixed` was added at the end, so every version-1 file
//! decodes exactly as before. Version 2 changes nothing in the layout above; it gives the three
//! `quant` words of a directory entry a meaning:
//!
//! ```text
//! 20  u32  quant[0]: absolute offset of the tensor's quantization table (a multiple of 4)
//! 24  u32  quant[1]: its byte length (a positive multiple of 4)
//! 28  u32  quant[2]: its encoding, QUANT_TABLE_LE = 1 (little-endian i32 words and packed i16)
//! ```
//!
//! All three are zero for a tensor without a table. A table lies in the payload after its
//! tensor's data and before the next tensor (the overlap check of the single walk covers it),
//! and is covered by the payload checksum. Its content (per-output-channel multipliers and
//! shifts, SiLU and RoPE tables) is the fixed engine's business: the format checks only where it
//! is, and [`crate::fixed`] documents and validates what it holds.
//!
//! Rules: a version-1 file must use `Float` and zero `quant` words (exactly the version-1
//! reader's checks); a version-2 file may use either scheme, and only a `Fixed` file may have
//! non-zero `quant` words. `ModelWriter` writes `Float` models as version 1 (byte-identical to
//! what version-1 writers produced) and `Fixed` models as version 2, so a version-1 reader
//! reports [`FormatError::UnsupportedVersion`] ("update trm-nostd") for a quantized file rather
//! than a puzzling decode error.
//!
//! # The source record (optional, any version)
//!
//! `trm-export export` records which checkpoint file the weights came from: a
//! [`SourceRecord`] (the file as `<folder>/<name>`, its size and its CRC-32C, the checksum of
//! trm-train's checkpoint manifests), so that two `.trm` files can be told apart when they were
//! exported from different checkpoints (`trm-export verify` warns). It is optional: it is
//! present exactly when flag bit 0 ([`FLAG_SOURCE`]) is set, and a file without it is byte for
//! byte what writers produced before the record existed. The postcard header has no room for an
//! optional field (it must fill `header_len` exactly, and the directory padding must be zero),
//! hence the flag: files without the record stay readable by every reader, the version numbers
//! and their rules are unchanged, and a reader from before the record refuses a file that has
//! one with "flags must be zero" rather than misreading it. It is covered by the metadata
//! checksum. Its name is at most [`MAX_SOURCE_NAME`] bytes of UTF-8 without control characters.
//!
//! The record may also say which weights of the checkpoint the file holds ([`WeightsKind`]: the
//! trained weights, or their exponential moving average, which is what the trainer evaluates
//! and the reference saves when a run has EMA on): one more postcard value (the variant index,
//! one byte) after the record, present exactly when flag bit 1 ([`FLAG_SOURCE_WEIGHTS`]) is set,
//! which is allowed only beside bit 0. The same reasoning holds: a record without it is byte
//! for byte what writers produced before, and a reader from before it refuses a file that has
//! it ("flags must be zero"). A `WeightsKind` this build does not know is a header error.
//!
//! # Checksums
//!
//! CRC-32 (ISO-HDLC, the zlib/PNG polynomial) over the metadata (`meta_crc`, in the preamble)
//! and over the payload (`payload_crc`, in the header). The metadata checksum catches flipped
//! bits in the config's float fields (`rms_norm_eps`, `rope_theta`), which no range check could.
//!
//! # Writing
//!
//! With the `std` feature, `ModelWriter` builds a file from f32 tensors (converted with `half`,
//! round to nearest even, for F16 and BF16 files), or, for `Fixed` files, from raw integer
//! tensors with their quantization tables (`ModelWriter::add_raw`), and with
//! `ModelWriter::set_source` the optional source record (with its weights kind when given).

mod aligned;
mod dir;
mod error;
mod model;
#[cfg(feature = "std")]
mod writer;

pub use aligned::Aligned;
pub use dir::{DirEntry, ENTRY_LEN};
pub use error::FormatError;
pub use model::{Model, ModelSummary, Tensors};
#[cfg(feature = "std")]
pub use writer::{ModelWriter, WriteError, write_model};

use crate::config::Config;
use crate::tensor::DType;
use serde::{Deserialize, Serialize};

/// The first 8 bytes of every `.trm` file.
pub const MAGIC: [u8; 8] = *b"\x89TRM\r\n\x1a\n";

/// The newest format version this build reads and writes (see the module documentation).
pub const FORMAT_VERSION: u16 = 2;

/// The oldest format version this build reads.
pub const MIN_FORMAT_VERSION: u16 = 1;

/// The version `ModelWriter` gives `Float` files (they need nothing of version 2).
pub const FLOAT_FORMAT_VERSION: u16 = 1;

/// `quant[2]` of a directory entry whose tensor has a quantization table (format version 2).
pub const QUANT_TABLE_LE: u32 = 1;

/// Bytes before the postcard header: magic, version, flags, header length, payload offset and
/// metadata checksum.
pub const PREAMBLE_LEN: usize = 24;

/// Alignment of every tensor (and of the payload start), in bytes from the start of the file.
pub const ALIGN: usize = 64;

/// Flag bit 0: a [`SourceRecord`] follows the header (see the module documentation).
pub const FLAG_SOURCE: u16 = 1;

/// Flag bit 1: the source record is followed by a [`WeightsKind`] (only with [`FLAG_SOURCE`];
/// see the module documentation).
pub const FLAG_SOURCE_WEIGHTS: u16 = 2;

/// Longest [`SourceRecord::weights`], in bytes.
pub const MAX_SOURCE_NAME: usize = 255;

/// Which checkpoint file a model's weights were exported from (optional; see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SourceRecord<'a> {
    /// The file read, as `<folder>/<name>` (`step_1000/model.safetensors`, `run/step_26040`);
    /// at most [`MAX_SOURCE_NAME`] bytes, no control characters.
    pub weights: &'a str,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its CRC-32C (Castagnoli: the checksum of trm-train's checkpoint manifests).
    pub crc32c: u32,
    /// Which weights of the run the file holds, when recorded (flag bit 1,
    /// [`FLAG_SOURCE_WEIGHTS`]).
    pub kind: Option<WeightsKind>,
}

/// Which copy of a training run's weights a checkpoint file holds.
///
/// Postcard encodes the variant index: new variants go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WeightsKind {
    /// The trained weights themselves (a run without EMA, or trm-train's `model.safetensors`).
    Raw,
    /// Their exponential moving average (`ema: True`): what the trainer evaluates and the
    /// reference saves (trm-train's `ema.safetensors`).
    Ema,
}

impl WeightsKind {
    /// `raw` or `ema`, as on `trm-export export --weights`.
    pub const fn name(self) -> &'static str {
        match self {
            WeightsKind::Raw => "raw",
            WeightsKind::Ema => "ema",
        }
    }
}

/// The encoded part of a [`SourceRecord`] that every record has (its `kind` follows it, flagged).
#[derive(Serialize, Deserialize)]
pub(crate) struct RecordWire<'a> {
    pub(crate) weights: &'a str,
    pub(crate) bytes: u64,
    pub(crate) crc32c: u32,
}

impl SourceRecord<'_> {
    /// Whether the name is one a file may hold: 1 to [`MAX_SOURCE_NAME`] bytes, no control
    /// characters.
    pub fn is_valid(&self) -> bool {
        !self.weights.is_empty()
            && self.weights.len() <= MAX_SOURCE_NAME
            && !self.weights.chars().any(char::is_control)
    }
}

/// How the numbers of a model are stored and computed.
///
/// Postcard encodes the variant index first: new variants go at the end, with a format-version
/// bump (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NumericScheme {
    /// Float weights, every tensor of this type (F32, F16 or BF16), computed in f32.
    Float(DType),
    /// Fixed point (format version 2): weight matrices with per-output-channel requantization
    /// tables, activations and states of type `activations` (I16); embeddings and initial
    /// states stored as I16, the halting bias as I32. `weights` is the widest weight type in
    /// the file: I8 (every matrix int8, [`FIXED_I8_I16`]) or I16 (some or all matrices int16,
    /// the rest int8, [`FIXED_I16_I16`]; each matrix's own dtype says which). See
    /// [`crate::fixed`].
    Fixed {
        /// Widest element type of the weight matrices (I8 or I16).
        weights: DType,
        /// Element type of activations and states (I16).
        activations: DType,
    },
}

/// The fixed-point scheme this build runs: int8 weights, int16 activations.
pub const FIXED_I8_I16: NumericScheme = NumericScheme::Fixed {
    weights: DType::I8,
    activations: DType::I16,
};

/// The fixed-point scheme with int16 weight matrices (all or some; the others int8) and int16
/// activations: twice the weight bytes of [`FIXED_I8_I16`] where chosen, for models whose
/// answers int8 weights change. Builds before this scheme refuse such files
/// ([`FormatError::UnsupportedScheme`]) rather than misread them.
pub const FIXED_I16_I16: NumericScheme = NumericScheme::Fixed {
    weights: DType::I16,
    activations: DType::I16,
};

impl NumericScheme {
    /// Whether this scheme is one this build can read (`Float` of a float type, or `Fixed` with
    /// I8 or I16 weights and I16 activations).
    pub const fn is_supported(&self) -> bool {
        match self {
            NumericScheme::Float(d) => matches!(d, DType::F32 | DType::F16 | DType::BF16),
            NumericScheme::Fixed {
                weights,
                activations,
            } => matches!(weights, DType::I8 | DType::I16) && matches!(activations, DType::I16),
        }
    }

    /// The weight-matrix element types a `Fixed` scheme allows (I8, and I16 too when
    /// `weights` is I16); none for a float scheme.
    pub const fn allows_weights(&self, dtype: DType) -> bool {
        match self {
            NumericScheme::Float(_) => false,
            NumericScheme::Fixed { weights, .. } => match dtype {
                DType::I8 => true,
                DType::I16 => matches!(weights, DType::I16),
                _ => false,
            },
        }
    }

    /// Whether a tensor may be stored with this dtype under this scheme (`Fixed`: I8, I16 or
    /// I32; which tensor has which type is checked by the fixed engine).
    pub fn allows(&self, dtype: DType) -> bool {
        match self {
            NumericScheme::Float(d) => *d == dtype,
            NumericScheme::Fixed { .. } => matches!(dtype, DType::I8 | DType::I16 | DType::I32),
        }
    }

    /// Whether this is a `Fixed` scheme.
    pub const fn is_fixed(&self) -> bool {
        matches!(self, NumericScheme::Fixed { .. })
    }

    /// The oldest format version that can hold this scheme.
    pub const fn min_version(&self) -> u16 {
        match self {
            NumericScheme::Float(_) => FLOAT_FORMAT_VERSION,
            NumericScheme::Fixed { .. } => 2,
        }
    }
}

/// The postcard-encoded header that follows the preamble.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// The architecture.
    pub config: Config,
    /// How the tensors are stored.
    pub scheme: NumericScheme,
    /// Number of directory entries.
    pub tensor_count: u32,
    /// Bytes from `payload_offset` to the end of the file.
    pub payload_len: u32,
    /// CRC-32 of the payload.
    pub payload_crc: u32,
}

/// CRC-32 (ISO-HDLC: polynomial 0x04C11DB7 reflected, init and final xor 0xFFFFFFFF; the
/// checksum of zlib, PNG and Ethernet) used by the format.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// `n` rounded up to a multiple of [`ALIGN`] (in u64: cannot overflow for u32 inputs).
pub(crate) const fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The catalogue's check value for CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn align_up_rounds() {
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 64);
        assert_eq!(align_up(64), 64);
        assert_eq!(align_up(65), 128);
    }
}
