//! Why a `torch.save` file could not be read.

use std::fmt;

/// Why a `torch.save` file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TorchLoadError {
    /// The zip container is unreadable (includes the pre-1.6 legacy format, which is not zip).
    Zip(String),
    /// A record the pickle or the format needs is missing from the archive.
    MissingRecord(String),
    /// The pickle ends before `STOP` or inside an opcode's argument.
    Truncated {
        /// Byte offset in `data.pkl` where more bytes were needed.
        pos: usize,
    },
    /// An opcode this reader does not implement.
    UnknownOpcode {
        /// The opcode byte.
        op: u8,
        /// Its offset in `data.pkl`.
        pos: usize,
    },
    /// A global (class or function) this reader does not know.
    UnknownGlobal {
        /// Python module.
        module: String,
        /// Name in that module.
        name: String,
    },
    /// The pickle is well-formed bytes but not a structure `torch.save` writes.
    Malformed {
        /// Offset of the opcode that failed in `data.pkl`.
        pos: usize,
        /// What was wrong.
        msg: String,
    },
    /// The file holds something other than a dictionary of named tensors.
    NotAStateDict(String),
    /// A feature of the format that this reader does not support (big-endian data, ...).
    Unsupported(String),
}

impl fmt::Display for TorchLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TorchLoadError::Zip(m) => write!(
                f,
                "not a readable torch.save zip archive ({m}); files from torch < 1.6 must be re-saved"
            ),
            TorchLoadError::MissingRecord(r) => write!(f, "archive has no record '{r}'"),
            TorchLoadError::Truncated { pos } => write!(f, "pickle truncated at byte {pos}"),
            TorchLoadError::UnknownOpcode { op, pos } => {
                write!(f, "unsupported pickle opcode 0x{op:02x} at byte {pos}")
            }
            TorchLoadError::UnknownGlobal { module, name } => {
                write!(f, "unsupported pickle global {module}.{name}")
            }
            TorchLoadError::Malformed { pos, msg } => {
                write!(f, "malformed pickle at byte {pos}: {msg}")
            }
            TorchLoadError::NotAStateDict(m) => write!(f, "not a state_dict: {m}"),
            TorchLoadError::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

impl std::error::Error for TorchLoadError {}
