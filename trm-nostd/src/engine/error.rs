//! Why an engine refused a model, a scratch buffer or an input: one vocabulary for both
//! schemes.

use crate::config::ConfigError;
use crate::engine::ScratchLen;
use crate::tensor::{DType, Shape, TensorId};
use core::fmt;

/// Why an engine refused a model, a scratch buffer or an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EngineError {
    /// The config is invalid.
    Config(ConfigError),
    /// The fixed engine was given a model that is not a `Fixed` (int8 / int16) model.
    NotFixed,
    /// The config is valid but beyond what the engine supports.
    Unsupported(&'static str),
    /// The weights lack a tensor the config needs.
    MissingTensor(TensorId),
    /// A tensor has the wrong shape (float engine).
    BadShape {
        /// Which tensor.
        tensor: TensorId,
        /// The shape the config requires.
        expected: Shape,
        /// The shape found.
        got: Shape,
    },
    /// A tensor's byte length does not match its shape and element type (float engine).
    BadData(TensorId),
    /// A tensor is not f32, f16 or bf16 (float engine).
    BadDType {
        /// Which tensor.
        tensor: TensorId,
        /// Its element type.
        dtype: DType,
    },
    /// A tensor has the wrong element type or byte length (fixed engine).
    BadTensor(TensorId),
    /// A tensor's quantization table is missing, too short or holds invalid values (fixed
    /// engine).
    BadTable(TensorId),
    /// A scratch buffer is too small.
    ScratchTooSmall {
        /// Values needed ([`Engine::scratch_len`](crate::Engine::scratch_len), or
        /// [`AnyEngine::arena_len`](crate::AnyEngine::arena_len) f32 words for an arena).
        need: ScratchLen,
        /// Values given.
        got: ScratchLen,
    },
    /// An input has the wrong length (tokens, or a carried state).
    BadInputLength {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// An output buffer has the wrong length.
    BadOutputLength {
        /// Values required.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A token is not below `vocab_size`.
    BadToken {
        /// Position of the first bad token.
        pos: usize,
    },
    /// The puzzle identifier is not below `num_puzzle_identifiers`.
    BadPuzzleId {
        /// The identifier given.
        id: u32,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "engine: {e}"),
            EngineError::NotFixed => f.write_str("engine: the model is not a Fixed model"),
            EngineError::Unsupported(what) => write!(f, "engine: unsupported: {what}"),
            EngineError::MissingTensor(t) => write!(f, "engine: missing tensor {t}"),
            EngineError::BadShape {
                tensor,
                expected,
                got,
            } => write!(
                f,
                "engine: tensor {tensor} has shape [{}, {}], expected [{}, {}]",
                got.rows, got.cols, expected.rows, expected.cols
            ),
            EngineError::BadData(t) => write!(
                f,
                "engine: tensor {t}: data length does not match shape and dtype"
            ),
            EngineError::BadDType { tensor, dtype } => write!(
                f,
                "engine: tensor {tensor} has dtype {dtype:?}, expected f32, f16 or bf16"
            ),
            EngineError::BadTensor(t) => {
                write!(f, "engine: tensor {t} has the wrong type or length")
            }
            EngineError::BadTable(t) => {
                write!(f, "engine: tensor {t} has an invalid quantization table")
            }
            EngineError::ScratchTooSmall { need, got } => {
                // The element types either side uses, e.g. "holds 10 i16 and 2 i32, 12 and 4
                // needed".
                let parts = |s: &ScratchLen| {
                    [(s.f32s, "f32"), (s.i16s, "i16"), (s.i32s, "i32")]
                        .into_iter()
                        .zip([
                            need.f32s > 0 || got.f32s > 0,
                            need.i16s > 0 || got.i16s > 0,
                            need.i32s > 0 || got.i32s > 0,
                        ])
                        .filter(|(_, shown)| *shown)
                        .map(|(part, _)| part)
                        .enumerate()
                };
                f.write_str("engine: scratch holds ")?;
                for (i, (n, unit)) in parts(got) {
                    let sep = if i > 0 { " and " } else { "" };
                    write!(f, "{sep}{n} {unit}")?;
                }
                f.write_str(", ")?;
                for (i, (n, _)) in parts(need) {
                    let sep = if i > 0 { " and " } else { "" };
                    write!(f, "{sep}{n}")?;
                }
                f.write_str(" needed")
            }
            EngineError::BadInputLength { expected, got } => {
                write!(f, "engine: {got} input values given, {expected} expected")
            }
            EngineError::BadOutputLength { expected, got } => write!(
                f,
                "engine: output buffer holds {got} values, {expected} expected"
            ),
            EngineError::BadToken { pos } => {
                write!(f, "engine: token at position {pos} is out of vocabulary")
            }
            EngineError::BadPuzzleId { id } => {
                write!(f, "engine: puzzle identifier {id} is out of range")
            }
        }
    }
}

impl core::error::Error for EngineError {}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        EngineError::Config(e)
    }
}
