//! Why a config cannot be loaded.

use std::fmt;
use std::path::PathBuf;

/// Why a config cannot be loaded. Every variant names the key or the text at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A document is not valid YAML or not a mapping.
    Yaml {
        /// The file (or "overrides", "defaults").
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A key that the config does not have.
    UnknownKey {
        /// The dotted key.
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
    },
    /// A required key is absent.
    Missing {
        /// The dotted key.
        key: String,
    },
    /// A value has the wrong type.
    BadValue {
        /// The dotted key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A value has the right type but is out of range or inconsistent.
    Invalid {
        /// The dotted key.
        key: String,
        /// Why.
        reason: String,
    },
    /// An override is not of the form `key=value`.
    BadOverride {
        /// The override text.
        text: String,
        /// Why.
        reason: String,
    },
    /// The model settings are rejected by [`Config::validate`](trm_nostd::Config::validate).
    Arch(trm_nostd::ConfigError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "config: reading {}: {source}", path.display())
            }
            ConfigError::Yaml { origin, message } => write!(f, "config {origin}: {message}"),
            ConfigError::UnknownKey { key, suggestion } => {
                write!(f, "config: unknown key `{key}`")?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean `{s}`?)")?;
                }
                Ok(())
            }
            ConfigError::Missing { key } => write!(f, "config: required key `{key}` is missing"),
            ConfigError::BadValue {
                key,
                expected,
                found,
            } => write!(f, "config: `{key}` must be {expected}, found {found}"),
            ConfigError::Invalid { key, reason } => write!(f, "config: `{key}`: {reason}"),
            ConfigError::BadOverride { text, reason } => {
                write!(f, "config override `{text}`: {reason}")
            }
            ConfigError::Arch(e) => write!(f, "arch {e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            ConfigError::Arch(e) => Some(e),
            _ => None,
        }
    }
}
