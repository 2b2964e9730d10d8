//! Our trainer's run checkpoint folders (`<run>/step_<N>/`, written by trm-train's `ckpt`
//! module): the manifest `meta.json` and its verification, shared by the trainer's loader and
//! the exporter ([`crate::checkpoint::import_reference`]), so that both accept exactly the same
//! folders.
//!
//! A folder holds `model.safetensors`, `ema.safetensors` (when EMA is on),
//! `optimizer.safetensors`, `rng.safetensors`, `all_config.yaml` and, written last,
//! `meta.json`:
//!
//! ```json
//! { "format": "trm-train-checkpoint", "version": 1, "step": 1000,
//!   "files": { "model.safetensors": { "bytes": 123, "crc32c": 456 }, ... },
//!   "extra": { ... the training loop's values ... } }
//! ```
//!
//! [`verify_checkpoint`] checks that every listed file exists with its recorded size and
//! CRC-32C ([`crc32c`]), and that the manifest lists the files every checkpoint has
//! ([`REQUIRED_FILES`]); errors name the file.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::ALL_CONFIG_FILE;

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
pub const MANIFEST_FORMAT: &str = "trm-train-checkpoint";
/// Manifest version.
pub const MANIFEST_VERSION: u64 = 1;
/// Files every manifest lists.
pub const REQUIRED_FILES: [&str; 4] = [MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, ALL_CONFIG_FILE];
/// Largest manifest read (a real one is well under a kilobyte).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// File name inside the checkpoint folder.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its CRC-32C.
    pub crc32c: u32,
}

/// A parsed `meta.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Optimizer steps taken.
    pub step: u64,
    /// The files, in the manifest's order.
    pub files: Vec<ManifestEntry>,
    /// Values the training loop stored (epoch, data cursor, ...).
    pub extra: Map<String, Value>,
}

impl Manifest {
    /// The entry of file `name`, if listed.
    pub fn entry(&self, name: &str) -> Option<&ManifestEntry> {
        self.files.iter().find(|e| e.name == name)
    }

    /// Whether file `name` is listed.
    pub fn has(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }
}

/// Why a checkpoint folder's manifest or files are not usable.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file operation failed.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
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
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Io { path, source } => {
                write!(f, "checkpoint {}: {source}", path.display())
            }
            ManifestError::Corrupt { path, reason } => {
                write!(f, "checkpoint file {} is corrupt: {reason}", path.display())
            }
            ManifestError::Incomplete { path } => write!(
                f,
                "{} is not a finished checkpoint (no {META_FILE})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ManifestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and checks the shape of `dir/meta.json` (format, version, step, one entry per file
/// with a plain file name, `extra` an object). [`ManifestError::Incomplete`] when it is absent.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ManifestError> {
    let path = dir.join(META_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ManifestError::Incomplete {
                path: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let corrupt = |reason: &str| ManifestError::Corrupt {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io_err(&path))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(corrupt(&format!(
            "more than {MAX_MANIFEST_BYTES} bytes: not a manifest"
        )));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| corrupt(&e.to_string()))?;
    if v["format"] != MANIFEST_FORMAT {
        return Err(corrupt("not a trm-train checkpoint manifest"));
    }
    if v["version"].as_u64() != Some(MANIFEST_VERSION) {
        return Err(corrupt(&format!(
            "manifest version {}, this build reads {MANIFEST_VERSION}",
            v["version"]
        )));
    }
    let step = v["step"].as_u64().ok_or_else(|| corrupt("no step"))?;
    let mut files: Vec<ManifestEntry> = Vec::new();
    for (name, d) in v["files"]
        .as_object()
        .ok_or_else(|| corrupt("no file list"))?
    {
        let bytes = d["bytes"].as_u64();
        let crc = d["crc32c"].as_u64().and_then(|c| u32::try_from(c).ok());
        let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
        match (bytes, crc) {
            (Some(bytes), Some(crc32c)) if plain => files.push(ManifestEntry {
                name: name.clone(),
                bytes,
                crc32c,
            }),
            _ => return Err(corrupt(&format!("bad entry for {name}"))),
        }
    }
    let extra = match &v["extra"] {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(corrupt("extra is not an object")),
    };
    Ok(Manifest { step, files, extra })
}

/// How much of the files [`verify_files`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Sizes only (cheap: finding finished checkpoints).
    Sizes,
    /// Sizes and CRC-32C of every byte (loading one).
    Checksums,
}

/// Checks that every file of `manifest` exists in `dir` with its recorded size (and, with
/// [`Verify::Checksums`], its CRC-32C), and that the manifest lists [`REQUIRED_FILES`].
pub fn verify_files(dir: &Path, manifest: &Manifest, depth: Verify) -> Result<(), ManifestError> {
    for e in &manifest.files {
        let path = dir.join(&e.name);
        let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
        if len != e.bytes {
            return Err(ManifestError::Corrupt {
                path,
                reason: format!("{len} bytes, the manifest says {} (truncated?)", e.bytes),
            });
        }
        if depth == Verify::Checksums {
            let (_, got) = file_digest(&path).map_err(io_err(&path))?;
            if got != e.crc32c {
                return Err(ManifestError::Corrupt {
                    path,
                    reason: format!("CRC-32C {got:08x}, the manifest says {:08x}", e.crc32c),
                });
            }
        }
    }
    for required in REQUIRED_FILES {
        if !manifest.has(required) {
            return Err(ManifestError::Corrupt {
                path: dir.join(META_FILE),
                reason: format!("the manifest does not list {required}"),
            });
        }
    }
    Ok(())
}

/// What loading a checkpoint checks: the manifest of `dir`, then every file's size and
/// CRC-32C. Returns the manifest.
pub fn verify_checkpoint(dir: &Path) -> Result<Manifest, ManifestError> {
    let manifest = read_manifest(dir)?;
    verify_files(dir, &manifest, Verify::Checksums)?;
    Ok(manifest)
}

/// Size and CRC-32C of a file, read in pieces (bounded memory for any size).
pub fn file_digest(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = Crc32c::new();
    let mut len = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        crc.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, crc.finish()))
}

/// The reversed Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// A running CRC-32C (Castagnoli: bitwise-reflected polynomial 0x1EDC6F41, initial value and
/// final xor 0xFFFFFFFF; one 256-entry table built at compile time), the checksum of the
/// manifests (and of TFRecord framing).
#[derive(Debug, Clone, Copy)]
pub struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Crc32c(0xFFFF_FFFF)
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The CRC of everything added.
    pub const fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// The CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_values() {
        // The CRC catalogue's check value for CRC-32/ISCSI, and RFC 3720 B.4 vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
        let mut c = Crc32c::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xE306_9283);
    }
}
