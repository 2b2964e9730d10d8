//! The reference dataset layout (TRM `dataset/common.py`, `puzzle_dataset.py`).
//!
//! ```text
//! <dataset>/identifiers.json                 JSON list: puzzle identifier -> name ("<blank>" = 0)
//! <dataset>/<split>/dataset.json             DatasetMetadata (split = "train" or "test")
//! <dataset>/<split>/<set>__inputs.npy        uint8 (examples, seq_len) (or int64, TokenDtype)
//! <dataset>/<split>/<set>__labels.npy        uint8 (examples, seq_len)
//! <dataset>/<split>/<set>__puzzle_identifiers.npy  int32 (puzzles,)
//! <dataset>/<split>/<set>__puzzle_indices.npy      int32 (puzzles + 1,)  first example of each puzzle
//! <dataset>/<split>/<set>__group_indices.npy       int32 (groups + 1,)   first puzzle of each group
//! ```
//!
//! A *group* is one original puzzle with its augmentations; a *puzzle* is one identifier with
//! one or more examples (input/label pairs). The trainer samples a group, then a puzzle of it,
//! then examples of that puzzle. The reference builders write the indices as `int32` and the
//! tokens as `uint8` (`int64` for augmented Sudoku, see [`TokenDtype`]); so do we, and the files
//! are byte-identical to `numpy.save`'s.
//!
//! Writing goes through [`DatasetWriter`]: everything is written into a temporary directory
//! beside the target and renamed into place by [`DatasetWriter::commit`], so a failed build
//! leaves no partial dataset. Reading goes through [`Split::open`] (into memory).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::npy::{self, NpyError};

/// Name of the only set the Sudoku, Maze and ARC builders write.
pub const DEFAULT_SET: &str = "all";
/// The five per-set fields, in the order the reference writes them.
pub const FIELDS: [&str; 5] = [
    "inputs",
    "labels",
    "puzzle_identifiers",
    "puzzle_indices",
    "group_indices",
];
/// File name of a split's metadata.
pub const METADATA_FILE: &str = "dataset.json";
/// File name of the identifier list at the dataset root.
pub const IDENTIFIERS_FILE: &str = "identifiers.json";
/// Name of identifier 0 in `identifiers.json`.
pub const BLANK_IDENTIFIER: &str = "<blank>";

/// An error of the dataset layout (writing or reading).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `.npy` file could not be read or written.
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// A JSON file could not be parsed or written.
    #[error("{path}: {msg}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The output directory exists and overwriting was not asked for.
    #[error("{0}: already exists (pass overwrite to replace it)")]
    Exists(PathBuf),
    /// A builder was used wrongly (wrong sequence length, empty puzzle or group, ...).
    #[error("{0}")]
    Build(String),
    /// A dataset on disk is inconsistent (shapes, indices, metadata).
    #[error("{path}: {msg}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A split's `dataset.json` (`PuzzleDatasetMetadata` in the reference), fields in the
/// reference's order so that the JSON text matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMetadata {
    /// Token of padding (0 in every reference dataset).
    pub pad_id: i32,
    /// Label token that carries no loss (`None` = every label counts); 0 in the references.
    pub ignore_label_id: Option<i32>,
    /// Puzzle identifier of padding examples (0 = `<blank>`).
    pub blank_identifier_id: i32,
    /// Number of distinct tokens, padding included.
    pub vocab_size: u32,
    /// Tokens per example.
    pub seq_len: usize,
    /// Number of puzzle identifiers, `<blank>` included (size of the puzzle embedding table).
    pub num_puzzle_identifiers: usize,
    /// Number of groups (original puzzles).
    pub total_groups: usize,
    /// Mean examples per puzzle, as the builder computed it.
    pub mean_puzzle_examples: f64,
    /// Number of puzzles, as the builder computed it (the Sudoku and Maze references write the
    /// number of groups here even when they augment).
    pub total_puzzles: usize,
    /// Set names, e.g. `["all"]`.
    pub sets: Vec<String>,
}

impl DatasetMetadata {
    /// The `dataset.json` text exactly as the reference writes it (`json.dump(model_dump())`:
    /// `", "` and `": "` separators, Python float repr, no trailing newline).
    pub fn to_json(&self) -> Result<String, LayoutError> {
        to_python_json(self)
    }

    /// Parses a `dataset.json` text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads `<split_dir>/dataset.json`.
    pub fn read(split_dir: &Path) -> Result<Self, LayoutError> {
        let path = split_dir.join(METADATA_FILE);
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        Self::from_json(&text).map_err(|e| LayoutError::Json {
            path,
            msg: e.to_string(),
        })
    }
}

/// Serializes `value` as Python's `json.dump(value, f)` does with default arguments:
/// `", "`/`": "` separators, `ensure_ascii` (non-ASCII as `\uXXXX`), floats as Python `repr`
/// (`1.0`, `1e-05`, `1e+16`), `NaN`/`Infinity` for non-finite floats.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<String, LayoutError> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser).map_err(|e| LayoutError::Json {
        path: PathBuf::new(),
        msg: e.to_string(),
    })?;
    String::from_utf8(out).map_err(|e| LayoutError::Json {
        path: PathBuf::new(),
        msg: e.to_string(),
    })
}

/// Python's `repr(float)`: shortest round-trip digits, positional for 1e-4 <= |x| < 1e16,
/// otherwise `d.ddde+XX`.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip mantissa, e.g. "1.25e-5".
    let sci = format!("{x:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// serde_json formatter producing Python `json.dump` text.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> std::io::Result<()> {
        writer.write_all(python_float_repr(value).as_bytes())
    }
    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> std::io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // serde_json already escaped '"', '\\' and control characters; Python's ensure_ascii
        // also escapes DEL and everything non-ASCII (UTF-16 code units, lowercase hex).
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// How a set's tokens are stored on disk (in memory they are always `u8`).
///
/// Every reference builder writes `uint8`, except the Sudoku one when it augments: its digit
/// permutation is an int64 array, so the augmented boards, and with them the whole
/// `inputs`/`labels` arrays, become `int64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenDtype {
    /// `uint8` (`|u1`).
    #[default]
    U8,
    /// `int32` (`<i4`).
    I32,
    /// `int64` (`<i8`).
    I64,
}

impl TokenDtype {
    /// The dtype of an npy `descr` (`|u1`, `<i4`, `<i8`).
    pub fn from_descr(descr: &str) -> Option<Self> {
        match descr {
            "|u1" => Some(Self::U8),
            "<i4" => Some(Self::I32),
            "<i8" => Some(Self::I64),
            _ => None,
        }
    }
}

/// One set of a split (`all` in every reference dataset): examples grouped into puzzles,
/// puzzles grouped into groups. Used both to build a set and to read one back.
///
/// Building: [`PuzzleSet::push_example`] for each example of a puzzle, then
/// [`PuzzleSet::end_puzzle`] with the puzzle's identifier; after the puzzles of a group (the
/// original first, then its augmentations), [`PuzzleSet::end_group`].
#[derive(Debug, Clone, PartialEq)]
pub struct PuzzleSet {
    seq_len: usize,
    /// Storage dtype of `inputs` and `labels` in the `.npy` files.
    pub token_dtype: TokenDtype,
    /// Example tokens, row-major `(num_examples, seq_len)`.
    pub inputs: Vec<u8>,
    /// Label tokens, row-major `(num_examples, seq_len)`.
    pub labels: Vec<u8>,
    /// Identifier of each puzzle, `(num_puzzles,)`.
    pub puzzle_identifiers: Vec<i32>,
    /// First example of each puzzle, `(num_puzzles + 1,)`, starts at 0.
    pub puzzle_indices: Vec<i32>,
    /// First puzzle of each group, `(num_groups + 1,)`, starts at 0.
    pub group_indices: Vec<i32>,
}

/// One example of a set, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example<'a> {
    /// Index of the example in its set.
    pub index: usize,
    /// Index of its puzzle in the set.
    pub puzzle: usize,
    /// The puzzle's identifier.
    pub puzzle_identifier: i32,
    /// Input tokens (`seq_len`).
    pub input: &'a [u8],
    /// Label tokens (`seq_len`).
    pub label: &'a [u8],
}

fn to_i32(n: usize, what: &str) -> Result<i32, LayoutError> {
    i32::try_from(n).map_err(|_| LayoutError::Build(format!("too many {what} for int32 indices")))
}

impl PuzzleSet {
    /// An empty set of examples of `seq_len` tokens.
    pub fn new(seq_len: usize) -> Self {
        Self {
            seq_len,
            token_dtype: TokenDtype::U8,
            inputs: Vec::new(),
            labels: Vec::new(),
            puzzle_identifiers: Vec::new(),
            puzzle_indices: vec![0],
            group_indices: vec![0],
        }
    }

    /// Reserves room for `examples` more examples.
    pub fn reserve_examples(&mut self, examples: usize) {
        self.inputs.reserve(examples * self.seq_len);
        self.labels.reserve(examples * self.seq_len);
    }

    /// Tokens per example.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Number of examples.
    pub fn num_examples(&self) -> usize {
        self.inputs.len().checked_div(self.seq_len).unwrap_or(0)
    }

    /// Number of completed puzzles.
    pub fn num_puzzles(&self) -> usize {
        self.puzzle_identifiers.len()
    }

    /// Number of completed groups.
    pub fn num_groups(&self) -> usize {
        self.group_indices.len() - 1
    }

    /// Adds an example to the current puzzle.
    pub fn push_example(&mut self, input: &[u8], label: &[u8]) -> Result<(), LayoutError> {
        if input.len() != self.seq_len || label.len() != self.seq_len {
            return Err(LayoutError::Build(format!(
                "example of {} input / {} label tokens in a set of seq_len {}",
                input.len(),
                label.len(),
                self.seq_len
            )));
        }
        self.inputs.extend_from_slice(input);
        self.labels.extend_from_slice(label);
        Ok(())
    }

    /// Closes the current puzzle (the examples pushed since the last one) with `identifier`.
    pub fn end_puzzle(&mut self, identifier: i32) -> Result<(), LayoutError> {
        let n = to_i32(self.num_examples(), "examples")?;
        if self.puzzle_indices.last() == Some(&n) {
            return Err(LayoutError::Build(
                "a puzzle needs at least one example".into(),
            ));
        }
        self.puzzle_indices.push(n);
        self.puzzle_identifiers.push(identifier);
        Ok(())
    }

    /// Closes the current group (the puzzles completed since the last one).
    pub fn end_group(&mut self) -> Result<(), LayoutError> {
        let open =
            self.num_examples() as i64 - self.puzzle_indices.last().copied().unwrap_or(0) as i64;
        if open != 0 {
            return Err(LayoutError::Build(
                "end_group with examples not closed by end_puzzle".into(),
            ));
        }
        let n = to_i32(self.num_puzzles(), "puzzles")?;
        if self.group_indices.last() == Some(&n) {
            return Err(LayoutError::Build(
                "a group needs at least one puzzle".into(),
            ));
        }
        self.group_indices.push(n);
        Ok(())
    }

    /// Input tokens of example `i` (panics if out of range, like slice indexing).
    pub fn input(&self, i: usize) -> &[u8] {
        &self.inputs[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// Label tokens of example `i` (panics if out of range, like slice indexing).
    pub fn label(&self, i: usize) -> &[u8] {
        &self.labels[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// The examples of puzzle `p` (a range of example indices).
    pub fn puzzle_examples(&self, p: usize) -> std::ops::Range<usize> {
        self.puzzle_indices[p] as usize..self.puzzle_indices[p + 1] as usize
    }

    /// The puzzles of group `g` (a range of puzzle indices).
    pub fn group_puzzles(&self, g: usize) -> std::ops::Range<usize> {
        self.group_indices[g] as usize..self.group_indices[g + 1] as usize
    }

    /// The puzzle that example `i` belongs to (binary search, as the reference's
    /// `searchsorted(puzzle_indices, i, side="right") - 1`).
    pub fn puzzle_of_example(&self, i: usize) -> usize {
        self.puzzle_indices
            .partition_point(|&start| start as usize <= i)
            .saturating_sub(1)
    }

    /// Example `i` with its puzzle (panics if out of range).
    pub fn example(&self, i: usize) -> Example<'_> {
        let puzzle = self.puzzle_of_example(i);
        Example {
            index: i,
            puzzle,
            puzzle_identifier: self.puzzle_identifiers[puzzle],
            input: self.input(i),
            label: self.label(i),
        }
    }

    /// All examples in order, each with its puzzle and identifier.
    pub fn examples(&self) -> impl ExactSizeIterator<Item = Example<'_>> + '_ {
        let mut puzzle = 0usize;
        (0..self.num_examples()).map(move |i| {
            while puzzle + 1 < self.puzzle_indices.len()
                && i >= self.puzzle_indices[puzzle + 1] as usize
            {
                puzzle += 1;
            }
            Example {
                index: i,
                puzzle,
                puzzle_identifier: self.puzzle_identifiers[puzzle],
                input: self.input(i),
                label: self.label(i),
            }
        })
    }

    /// Checks the invariants the trainer relies on; `Err` holds what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.seq_len == 0 {
            return Err("seq_len is 0".into());
        }
        if !self.inputs.len().is_multiple_of(self.seq_len) || self.inputs.len() != self.labels.len()
        {
            return Err(format!(
                "inputs ({}) and labels ({}) are not both whole rows of {}",
                self.inputs.len(),
                self.labels.len(),
                self.seq_len
            ));
        }
        let check = |name: &str, idx: &[i32], end: usize| -> Result<(), String> {
            if idx.first() != Some(&0) {
                return Err(format!("{name} must start with 0"));
            }
            if idx.windows(2).any(|w| w[1] <= w[0]) {
                return Err(format!("{name} must be strictly increasing"));
            }
            if idx.last().map(|&v| v as i64) != Some(end as i64) {
                return Err(format!("{name} must end at {end}"));
            }
            Ok(())
        };
        if self.puzzle_indices.len() != self.puzzle_identifiers.len() + 1 {
            return Err(format!(
                "{} puzzle_indices for {} puzzle_identifiers (expected one more)",
                self.puzzle_indices.len(),
                self.puzzle_identifiers.len()
            ));
        }
        check("puzzle_indices", &self.puzzle_indices, self.num_examples())?;
        check("group_indices", &self.group_indices, self.num_puzzles())
    }

    /// Number of examples whose puzzles are counted (for `mean_puzzle_examples`).
    pub fn mean_puzzle_examples(&self) -> f64 {
        if self.num_puzzles() == 0 {
            0.0
        } else {
            self.num_examples() as f64 / self.num_puzzles() as f64
        }
    }

    /// Writes the five `<set>__<field>.npy` files into `dir`.
    pub fn write(&self, dir: &Path, set_name: &str) -> Result<(), LayoutError> {
        self.validate().map_err(|msg| LayoutError::Invalid {
            path: dir.join(set_name),
            msg,
        })?;
        let n = self.num_examples();
        let file = |field: &str| dir.join(format!("{set_name}__{field}.npy"));
        let shape = [n, self.seq_len];
        for (field, data) in [("inputs", &self.inputs), ("labels", &self.labels)] {
            match self.token_dtype {
                TokenDtype::U8 => npy::write_npy_file(&file(field), &shape, data)?,
                TokenDtype::I32 => npy::write_npy_file_map(&file(field), &shape, data, i32::from)?,
                TokenDtype::I64 => npy::write_npy_file_map(&file(field), &shape, data, i64::from)?,
            }
        }
        let ids = &self.puzzle_identifiers;
        npy::write_npy_file(&file("puzzle_identifiers"), &[ids.len()], ids)?;
        let pi = &self.puzzle_indices;
        npy::write_npy_file(&file("puzzle_indices"), &[pi.len()], pi)?;
        let gi = &self.group_indices;
        npy::write_npy_file(&file("group_indices"), &[gi.len()], gi)?;
        Ok(())
    }

    /// Reads the five `<set>__<field>.npy` files of `set_name` from `dir`. Tokens may be
    /// stored as any integer dtype whose values fit in `u8` (the dtype is kept in
    /// [`PuzzleSet::token_dtype`]); indices as any integer dtype that fits in `i32`.
    pub fn read(dir: &Path, set_name: &str) -> Result<Self, LayoutError> {
        let file = |field: &str| dir.join(format!("{set_name}__{field}.npy"));
        let (descr, _) = npy::read_npy_header(&file("inputs"))?;
        let inputs = npy::read_npy_int::<u8>(&file("inputs"))?;
        let labels = npy::read_npy_int::<u8>(&file("labels"))?;
        let invalid = |msg: String| LayoutError::Invalid {
            path: dir.join(format!("{set_name}__*.npy")),
            msg,
        };
        let (seq_len, rows) = match inputs.shape[..] {
            [rows, seq_len] => (seq_len, rows),
            _ => {
                return Err(invalid(format!(
                    "inputs shape {:?} is not 2-D",
                    inputs.shape
                )));
            }
        };
        if labels.shape != inputs.shape {
            return Err(invalid(format!(
                "labels shape {:?} differs from inputs shape {:?}",
                labels.shape, inputs.shape
            )));
        }
        let one_d = |a: npy::NpyArray<i32>, name: &str| -> Result<Vec<i32>, LayoutError> {
            if a.shape.len() != 1 {
                return Err(invalid(format!("{name} shape {:?} is not 1-D", a.shape)));
            }
            Ok(a.data)
        };
        let set = Self {
            seq_len,
            // Other integer dtypes are read (and converted) too; they are written back as u8.
            token_dtype: TokenDtype::from_descr(&descr).unwrap_or_default(),
            inputs: inputs.data,
            labels: labels.data,
            puzzle_identifiers: one_d(
                npy::read_npy_int(&file("puzzle_identifiers"))?,
                "puzzle_identifiers",
            )?,
            puzzle_indices: one_d(
                npy::read_npy_int(&file("puzzle_indices"))?,
                "puzzle_indices",
            )?,
            group_indices: one_d(npy::read_npy_int(&file("group_indices"))?, "group_indices")?,
        };
        if rows == 0 && seq_len == 0 {
            return Err(invalid("empty inputs with seq_len 0".into()));
        }
        set.validate().map_err(invalid)?;
        Ok(set)
    }
}

/// One split of a dataset (`train` or `test`), read into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The split's `dataset.json`.
    pub metadata: DatasetMetadata,
    /// The sets, in `metadata.sets` order.
    pub sets: Vec<(String, PuzzleSet)>,
}

impl Split {
    /// Reads `<dataset>/<split>` (the directory holding `dataset.json`) and checks that the
    /// arrays agree with each other and with the metadata (`seq_len`, tokens < `vocab_size`,
    /// identifiers < `num_puzzle_identifiers`).
    pub fn open(split_dir: &Path) -> Result<Self, LayoutError> {
        let metadata = DatasetMetadata::read(split_dir)?;
        let mut sets = Vec::with_capacity(metadata.sets.len());
        for name in &metadata.sets {
            let set = PuzzleSet::read(split_dir, name)?;
            let invalid = |msg: String| LayoutError::Invalid {
                path: split_dir.join(format!("{name}__*.npy")),
                msg,
            };
            if set.seq_len != metadata.seq_len {
                return Err(invalid(format!(
                    "seq_len {} but dataset.json says {}",
                    set.seq_len, metadata.seq_len
                )));
            }
            let max_token = set.inputs.iter().chain(&set.labels).copied().max();
            if let Some(t) = max_token
                && u32::from(t) >= metadata.vocab_size
            {
                return Err(invalid(format!(
                    "token {t} >= vocab_size {}",
                    metadata.vocab_size
                )));
            }
            if let Some(&id) = set
                .puzzle_identifiers
                .iter()
                .find(|&&id| id < 0 || id as usize >= metadata.num_puzzle_identifiers)
            {
                return Err(invalid(format!(
                    "puzzle identifier {id} outside 0..{}",
                    metadata.num_puzzle_identifiers
                )));
            }
            sets.push((name.clone(), set));
        }
        Ok(Self { metadata, sets })
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&PuzzleSet> {
        self.sets.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Total examples over all sets.
    pub fn num_examples(&self) -> usize {
        self.sets.iter().map(|(_, s)| s.num_examples()).sum()
    }
}

/// Reads `<dataset>/identifiers.json`.
pub fn read_identifiers(dataset_dir: &Path) -> Result<Vec<String>, LayoutError> {
    let path = dataset_dir.join(IDENTIFIERS_FILE);
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| LayoutError::Json {
        path,
        msg: e.to_string(),
    })
}

/// Writes a dataset directory atomically: every file goes into a temporary directory beside
/// the target (`.<name>.tmp-<pid>-<n>`), and [`DatasetWriter::commit`] renames it into place.
/// Dropping the writer without committing removes the temporary directory; one left by a
/// killed process is removed by the next writer of the same target
/// ([`clean_stale_temporaries`]).
#[derive(Debug)]
pub struct DatasetWriter {
    target: PathBuf,
    tmp: PathBuf,
    overwrite: bool,
    committed: bool,
    stale: Vec<StaleTemporary>,
}

/// A temporary directory that a build of a dataset left beside it (killed before it finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleTemporary {
    /// The directory (`.<name>.tmp-<pid>-<n>`, or `...<n>.old`: the previous dataset, moved
    /// aside while the new one was renamed into place).
    pub path: PathBuf,
    /// The process that wrote it.
    pub pid: u32,
    /// What was done with it.
    pub action: StaleAction,
}

/// What [`clean_stale_temporaries`] did with a [`StaleTemporary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleAction {
    /// Its process no longer runs: removed.
    Removed,
    /// The previous dataset moved aside, and the target does not exist: kept, so that it can
    /// be renamed back.
    KeptPreviousDataset,
    /// Whether its process still runs cannot be told on this system (no `/proc`): kept.
    KeptUnknownProcess,
}

impl std::fmt::Display for StaleTemporary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.path.display();
        let pid = self.pid;
        match self.action {
            StaleAction::Removed => write!(
                f,
                "removed {p}, left by process {pid} (no longer running) when it was killed"
            ),
            StaleAction::KeptPreviousDataset => write!(
                f,
                "kept {p}: the previous dataset, moved aside by process {pid} (no longer \
                 running), which was killed before the new one was in place; rename it back or \
                 delete it"
            ),
            StaleAction::KeptUnknownProcess => write!(
                f,
                "kept {p}, left by process {pid}: whether that process still runs cannot be \
                 told here; delete it if it does not"
            ),
        }
    }
}

/// Whether process `pid` runs on this host: `None` where this cannot be told (no `/proc`).
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// The writer's pid in the name of a temporary directory of `name` (`.<name>.tmp-<pid>-<n>`,
/// optionally `.old`), and whether it is an `.old` aside.
fn parse_temporary(name: &str, entry: &str) -> Option<(u32, bool)> {
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".tmp-")?;
    let (rest, old) = match rest.strip_suffix(".old") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (pid, serial) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(serial) {
        return None;
    }
    Some((pid.parse().ok()?, old))
}

/// Removes the temporary directories that builds of `target` left beside it when they were
/// killed (`.<name>.tmp-<pid>-<n>`): those whose process no longer runs on this host. A
/// directory of a running process (this one included) is never touched; an `.old` aside (the
/// previous dataset) is kept when `target` does not exist; where processes cannot be looked up
/// (no `/proc`), nothing is removed. Returns what was found and done, for the caller to report.
pub fn clean_stale_temporaries(target: &Path) -> Result<Vec<StaleTemporary>, LayoutError> {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = match fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&parent)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&parent))?;
        let Some((pid, old)) = parse_temporary(&name, &entry.file_name().to_string_lossy()) else {
            continue;
        };
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let action = match process_alive(pid) {
            Some(true) => continue,
            None => StaleAction::KeptUnknownProcess,
            Some(false) if old && !target.exists() => StaleAction::KeptPreviousDataset,
            Some(false) => {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                StaleAction::Removed
            }
        };
        found.push(StaleTemporary { path, pid, action });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

impl DatasetWriter {
    /// Starts writing the dataset that will live at `target`. Fails with
    /// [`LayoutError::Exists`] if `target` exists and `overwrite` is false.
    pub fn create(target: &Path, overwrite: bool) -> Result<Self, LayoutError> {
        if target.exists() && !overwrite {
            return Err(LayoutError::Exists(target.to_path_buf()));
        }
        let name = target
            .file_name()
            .ok_or_else(|| {
                LayoutError::Build(format!("{}: not a directory name", target.display()))
            })?
            .to_string_lossy()
            .into_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let stale = clean_stale_temporaries(target)?;
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".{name}.tmp-{}-{serial}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        Ok(Self {
            target: target.to_path_buf(),
            tmp,
            overwrite,
            committed: false,
            stale,
        })
    }

    /// What [`clean_stale_temporaries`] found beside the target when this writer was created.
    pub fn stale_temporaries(&self) -> &[StaleTemporary] {
        &self.stale
    }

    /// The temporary directory being written (for extra files a builder wants to add).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Writes split `split` (`train`/`test`): `dataset.json` from `metadata` and the arrays of
    /// each set. `metadata.sets` must name exactly the given sets, in order, and
    /// `metadata.seq_len` must be their sequence length.
    pub fn write_split(
        &mut self,
        split: &str,
        metadata: &DatasetMetadata,
        sets: &[(&str, &PuzzleSet)],
    ) -> Result<(), LayoutError> {
        let names: Vec<&str> = sets.iter().map(|(n, _)| *n).collect();
        if metadata.sets != names {
            return Err(LayoutError::Build(format!(
                "metadata.sets {:?} differs from the sets written {names:?}",
                metadata.sets
            )));
        }
        if let Some((n, s)) = sets.iter().find(|(_, s)| s.seq_len != metadata.seq_len) {
            return Err(LayoutError::Build(format!(
                "set {n} has seq_len {} but metadata says {}",
                s.seq_len, metadata.seq_len
            )));
        }
        let dir = self.tmp.join(split);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        self.write_text(&format!("{split}/{METADATA_FILE}"), &metadata.to_json()?)?;
        for (name, set) in sets {
            set.write(&dir, name)?;
        }
        Ok(())
    }

    /// Writes `identifiers.json` (index = puzzle identifier; entry 0 is normally `<blank>`).
    pub fn write_identifiers(&mut self, names: &[String]) -> Result<(), LayoutError> {
        self.write_text(IDENTIFIERS_FILE, &to_python_json(names)?)
    }

    /// Writes `relative_path` (inside the dataset) with `value` in Python `json.dump` format.
    pub fn write_json<T: Serialize + ?Sized>(
        &mut self,
        relative_path: &str,
        value: &T,
    ) -> Result<(), LayoutError> {
        self.write_text(relative_path, &to_python_json(value)?)
    }

    /// Writes a text file at `relative_path` inside the dataset.
    pub fn write_text(&mut self, relative_path: &str, text: &str) -> Result<(), LayoutError> {
        let path = self.tmp.join(relative_path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::write(&path, text).map_err(io_err(&path))
    }

    /// Moves the finished dataset into place, replacing an existing target if `overwrite`
    /// was given (the old one is moved aside first and deleted only after the rename).
    pub fn commit(mut self) -> Result<PathBuf, LayoutError> {
        let mut old = None;
        if self.target.exists() {
            if !self.overwrite {
                return Err(LayoutError::Exists(self.target.clone()));
            }
            let mut aside = self.tmp.clone().into_os_string();
            aside.push(".old");
            let aside = PathBuf::from(aside);
            fs::rename(&self.target, &aside).map_err(io_err(&self.target))?;
            old = Some(aside);
        }
        if let Err(e) = fs::rename(&self.tmp, &self.target) {
            if let Some(aside) = &old {
                // Put the previous dataset back; the new one stays in tmp and is removed on drop.
                let _ = fs::rename(aside, &self.target);
            }
            return Err(io_err(&self.target)(e));
        }
        self.committed = true;
        if let Some(aside) = old {
            fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Counts of a split's sets, for building metadata the way the ARC reference does
/// (`mean_puzzle_examples = examples / puzzles`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SplitStats {
    /// Examples over all sets.
    pub total_examples: usize,
    /// Puzzles over all sets.
    pub total_puzzles: usize,
    /// Groups over all sets.
    pub total_groups: usize,
}

impl SplitStats {
    /// Sums the counts of `sets`.
    pub fn of<'a>(sets: impl IntoIterator<Item = &'a PuzzleSet>) -> Self {
        sets.into_iter().fold(Self::default(), |acc, s| Self {
            total_examples: acc.total_examples + s.num_examples(),
            total_puzzles: acc.total_puzzles + s.num_puzzles(),
            total_groups: acc.total_groups + s.num_groups(),
        })
    }
}

/// The project's shared folder (data sets, reference fixtures): `$TRM_SHARED` if set, else
/// `<workspace root>/../shared` as seen from this crate's sources at build time.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("TRM_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}
