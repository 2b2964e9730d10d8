//! The summary paragraph of a build, read back from the files written.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::layout::DatasetMetadata;
use crate::npy::read_npy_header;

/// One split as read back from disk.
#[derive(Debug)]
struct SplitSummary {
    name: &'static str,
    metadata: DatasetMetadata,
    examples: usize,
    puzzles: usize,
    groups: usize,
    /// npy dtypes of the token arrays (`|u1`, `<i8`, ...), one per set.
    token_dtypes: Vec<String>,
}

/// What a built dataset directory holds, read back from disk (so the summary describes the
/// files, whatever the builder returned).
#[derive(Debug)]
pub(super) struct DatasetSummary {
    splits: Vec<SplitSummary>,
    files: usize,
    bytes: u64,
}

impl DatasetSummary {
    pub(super) fn scan(out: &Path) -> Result<Self> {
        let mut splits = Vec::new();
        for name in ["train", "test"] {
            let dir = out.join(name);
            if !dir.is_dir() {
                continue;
            }
            let metadata = DatasetMetadata::read(&dir)?;
            let (mut examples, mut puzzles, mut groups) = (0, 0, 0);
            let mut token_dtypes = Vec::new();
            for set in &metadata.sets {
                let header =
                    |field: &str| read_npy_header(&dir.join(format!("{set}__{field}.npy")));
                let (descr, shape) = header("inputs")?;
                examples += shape.first().copied().unwrap_or(0);
                puzzles += header("puzzle_identifiers")?
                    .1
                    .first()
                    .copied()
                    .unwrap_or(0);
                groups += header("group_indices")?
                    .1
                    .first()
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(1);
                if !token_dtypes.contains(&descr) {
                    token_dtypes.push(descr);
                }
            }
            splits.push(SplitSummary {
                name,
                metadata,
                examples,
                puzzles,
                groups,
                token_dtypes,
            });
        }
        let (files, bytes) = count_files(out)?;
        Ok(Self {
            splits,
            files,
            bytes,
        })
    }

    pub(super) fn paragraph(
        &self,
        name: &str,
        out: &Path,
        notes: &[String],
        seconds: f64,
    ) -> String {
        let mut s = format!("build-dataset {name}: wrote {}", out.display());
        for (i, split) in self.splits.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            let _ = write!(
                s,
                "{sep}{} {} examples in {} groups ({} puzzles), tokens {}",
                split.name,
                split.examples,
                split.groups,
                split.puzzles,
                split
                    .token_dtypes
                    .iter()
                    .map(|d| dtype_name(d))
                    .collect::<Vec<_>>()
                    .join("/")
            );
        }
        if let Some(first) = self.splits.first() {
            let _ = write!(
                s,
                "; seq_len {}, vocab_size {}, {} puzzle identifiers",
                first.metadata.seq_len,
                first.metadata.vocab_size,
                first.metadata.num_puzzle_identifiers
            );
        }
        for note in notes {
            let _ = write!(s, "; {note}");
        }
        let _ = write!(
            s,
            ". {} files, {} in {seconds:.2} s.",
            self.files,
            human_bytes(self.bytes)
        );
        s
    }
}

fn dtype_name(descr: &str) -> &str {
    match descr {
        "|u1" => "uint8",
        "<i4" => "int32",
        "<i8" => "int64",
        other => other,
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Number of regular files under `dir` and their total size.
fn count_files(dir: &Path) -> Result<(usize, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let entry = entry.with_context(|| d.display().to_string())?;
            let meta = entry
                .metadata()
                .with_context(|| entry.path().display().to_string())?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
