//! `build-dataset sudoku`: Sudoku-Extreme CSV -> train/test splits in the reference layout
//! (TRM `dataset/build_sudoku_dataset.py`).
//!
//! Input: CSVs with the header `source,question,answer,rating` (as the HF dataset
//! `sapientinc/sudoku-extreme`); `question` is 81 characters, row-major, `.` or `0` for a blank;
//! `answer` is 81 digits 1-9. `source` is ignored and `rating` is only needed for
//! `min_difficulty`.
//!
//! Output, as the reference: tokens = digit + 1 (blank 1, digits 2..=10, pad 0 unused),
//! `(examples, 81)`, stored as uint8, except the train split when `num_aug > 0`: the reference's
//! digit permutation is an int64 array, so its augmented arrays are int64 (8 bytes a token); we
//! write int64 there too unless [`SudokuOptions::compact_tokens`]; one puzzle per example, identifier 0; one group per original puzzle
//! holding the original first and then its `num_aug` augmentations (train only). Metadata:
//! `seq_len 81, vocab_size 11, pad_id 0, ignore_label_id 0, blank_identifier_id 0,
//! num_puzzle_identifiers 1, mean_puzzle_examples 1.0, sets ["all"]`, and
//! `total_groups = total_puzzles = number of groups` (the reference writes the group count as
//! `total_puzzles` even when it augments; we keep that value so the metadata is identical).
//!
//! Determinism: the reference draws subsampling and augmentation from NumPy's *unseeded*
//! global RNG, so its output differs on every run unless `num_aug = 0` and no subsampling
//! happens; only that case can be (and is) compared byte for byte. We use a seeded ChaCha8 RNG
//! instead: the same options and seed give the same bytes on every run and machine.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trm_nostd::sudoku::{self as codec, BLANK, DIGIT_OFFSET, ParseError, Violation};

use crate::input::{BuildError, read_csv};
use crate::layout::{DEFAULT_SET, DatasetMetadata, DatasetWriter, PuzzleSet, TokenDtype};
use crate::progress::Progress;

/// Cells of a Sudoku grid.
pub const CELLS: usize = codec::CELLS;
/// Token vocabulary: pad + "0".."9".
pub const VOCAB_SIZE: u32 = codec::VOCAB as u32;

/// A 9x9 grid, row-major, digits 1-9 and 0 for a blank.
pub type Grid = [u8; CELLS];

/// One row of a Sudoku CSV, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudokuRecord {
    /// The puzzle, 0 = blank.
    pub question: Grid,
    /// The solution, digits 1-9.
    pub answer: Grid,
    /// The `rating` column, if the file has one.
    pub rating: Option<u32>,
    /// 1-based line of the row in its file.
    pub line: u64,
}

/// Options of the Sudoku builder (the reference's `DataProcessConfig` plus a seed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SudokuOptions {
    /// Keep a random `subsample_size` of the train puzzles (train only).
    pub subsample_size: Option<usize>,
    /// Keep only puzzles whose rating is at least this (both splits, as the reference).
    pub min_difficulty: Option<u32>,
    /// Augmentations per train puzzle (test is never augmented).
    pub num_aug: usize,
    /// Seed of subsampling and augmentation.
    pub seed: u64,
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Store augmented train tokens as `uint8` instead of the reference's `int64` (8x smaller
    /// files; the trainer reads both).
    pub compact_tokens: bool,
    /// Keep [`SudokuSplit::provenance`] (about 40 bytes per example; for tests and checks).
    pub keep_provenance: bool,
}

fn field_err(path: &Path, line: u64, field: &str, msg: String) -> BuildError {
    BuildError::Field {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        msg,
    }
}

/// Parses an 81-character field with trm-nostd's codec (`.` or `0` blank, `1`..`9` digits):
/// the length first, then the first bad character (a blank is bad where `blanks_allowed` is
/// false).
fn parse_grid(
    path: &Path,
    line: u64,
    field: &str,
    text: &str,
    blanks_allowed: bool,
) -> Result<Grid, BuildError> {
    let len = text.chars().count();
    if len != CELLS {
        return Err(field_err(
            path,
            line,
            field,
            format!("bad length {len} (expected {CELLS})"),
        ));
    }
    let mut tokens = [codec::PAD; CELLS];
    // The codec stops at the first character that is neither a blank nor a digit, having
    // written the tokens before it.
    let mut first_bad = match codec::parse_puzzle(text, &mut tokens) {
        Ok(_) => CELLS,
        Err(ParseError::BadChar { position, .. }) => position,
        // The length was checked above.
        Err(other) => return Err(field_err(path, line, field, other.to_string())),
    };
    if !blanks_allowed && let Some(blank) = tokens[..first_bad].iter().position(|&t| t == BLANK) {
        first_bad = blank;
    }
    if let Some(c) = text.chars().nth(first_bad) {
        return Err(field_err(
            path,
            line,
            field,
            format!(
                "bad character {c:?} at position {first_bad} (row {}, column {})",
                first_bad / 9 + 1,
                first_bad % 9 + 1
            ),
        ));
    }
    let mut grid = [0u8; CELLS];
    codec::tokens_to_digits(&tokens, &mut grid)
        .map_err(|e| field_err(path, line, field, e.to_string()))?;
    Ok(grid)
}

/// Whether `grid` is a complete, valid Sudoku solution (trm-nostd's check, no givens).
pub fn is_valid_solution(grid: &Grid) -> bool {
    codec::is_valid_solution(&grid_to_tokens(grid), &[BLANK; CELLS])
}

/// Reads and checks a Sudoku CSV: lengths, characters, that every answer is a valid solution
/// agreeing with its question's givens, and that ratings are non-negative integers.
pub fn read_sudoku_csv(path: &Path) -> Result<Vec<SudokuRecord>, BuildError> {
    let rows = read_csv(path, &["question", "answer"], &["rating"])?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line;
        let text = |i: usize| row.fields[i].as_deref().unwrap_or("");
        let question = parse_grid(path, line, "question", text(0), true)?;
        let answer = parse_grid(path, line, "answer", text(1), false)?;
        if !is_valid_solution(&answer) {
            return Err(field_err(
                path,
                line,
                "answer",
                "not a valid Sudoku solution".into(),
            ));
        }
        // A valid solution: the only violation left is a changed given (the first one).
        match codec::check_solution(&grid_to_tokens(&answer), &grid_to_tokens(&question)) {
            Ok(()) => {}
            Err(Violation::GivenChanged {
                position, given, ..
            }) => {
                return Err(field_err(
                    path,
                    line,
                    "answer",
                    format!(
                        "inconsistent with question at position {position}: given {given} but answer {}",
                        answer[position]
                    ),
                ));
            }
            Err(other) => return Err(field_err(path, line, "answer", other.to_string())),
        }
        let rating = match row.fields[2].as_deref() {
            None => None,
            Some(r) => Some(r.trim().parse::<u32>().map_err(|_| {
                field_err(
                    path,
                    line,
                    "rating",
                    format!("bad rating {r:?} (expected a non-negative integer)"),
                )
            })?),
        };
        out.push(SudokuRecord {
            question,
            answer,
            rating,
            line,
        });
    }
    Ok(out)
}

/// The reference's Sudoku augmentation (`shuffle_sudoku`): optional transpose, then a
/// band/row and stack/column permutation, then a digit permutation (blank stays blank).
///
/// With `x` the grid, transposed if `transpose`: `out[i][j] = digit_map[x[row_perm[i]][col_perm[j]]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SudokuTransform {
    /// `digit_map[d]` = new digit of `d`; `digit_map[0] = 0`.
    pub digit_map: [u8; 10],
    /// Transpose before permuting.
    pub transpose: bool,
    /// New row `i` comes from old row `row_perm[i]` (bands permuted, rows within each band).
    pub row_perm: [u8; 9],
    /// New column `j` comes from old column `col_perm[j]`.
    pub col_perm: [u8; 9],
}

fn band_perm(rng: &mut impl Rng) -> [u8; 9] {
    let mut bands = [0u8, 1, 2];
    bands.shuffle(rng);
    let mut out = [0u8; 9];
    for (k, b) in bands.iter().enumerate() {
        let mut inner = [0u8, 1, 2];
        inner.shuffle(rng);
        for (t, r) in inner.iter().enumerate() {
            out[k * 3 + t] = b * 3 + r;
        }
    }
    out
}

fn invert9(p: &[u8; 9]) -> [u8; 9] {
    let mut inv = [0u8; 9];
    for (i, &v) in p.iter().enumerate() {
        inv[v as usize] = i as u8;
    }
    inv
}

impl SudokuTransform {
    /// The identity.
    pub const IDENTITY: Self = Self {
        digit_map: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        transpose: false,
        row_perm: [0, 1, 2, 3, 4, 5, 6, 7, 8],
        col_perm: [0, 1, 2, 3, 4, 5, 6, 7, 8],
    };

    /// A random transform drawn as the reference draws it (digits, transpose, rows, columns).
    pub fn random(rng: &mut impl Rng) -> Self {
        let mut digits = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        digits.shuffle(rng);
        let mut digit_map = [0u8; 10];
        digit_map[1..].copy_from_slice(&digits);
        let transpose = rng.random::<f64>() < 0.5;
        let row_perm = band_perm(rng);
        let col_perm = band_perm(rng);
        Self {
            digit_map,
            transpose,
            row_perm,
            col_perm,
        }
    }

    /// Applies the transform to a grid (0 = blank stays 0).
    pub fn apply(&self, grid: &Grid) -> Grid {
        let mut out = [0u8; CELLS];
        for i in 0..9 {
            for j in 0..9 {
                let (r, c) = (self.row_perm[i] as usize, self.col_perm[j] as usize);
                let src = if self.transpose { c * 9 + r } else { r * 9 + c };
                out[i * 9 + j] = self.digit_map[grid[src] as usize];
            }
        }
        out
    }

    /// The inverse transform, as a function: `invert(apply(g)) == g`.
    pub fn invert(&self, grid: &Grid) -> Grid {
        let mut dinv = [0u8; 10];
        for (d, &m) in self.digit_map.iter().enumerate() {
            dinv[m as usize] = d as u8;
        }
        let (rinv, cinv) = (invert9(&self.row_perm), invert9(&self.col_perm));
        let mut out = [0u8; CELLS];
        for a in 0..9 {
            for b in 0..9 {
                // x'[a][b] = dinv[y[rinv[a]][cinv[b]]], x = x' or x'^T.
                let v = dinv[grid[rinv[a] as usize * 9 + cinv[b] as usize] as usize];
                let dst = if self.transpose { b * 9 + a } else { a * 9 + b };
                out[dst] = v;
            }
        }
        out
    }
}

/// Maps a grid (0 = blank) to tokens (digit + 1, trm-nostd's vocabulary); a value above 9
/// maps to a token that is no digit.
pub fn grid_to_tokens(grid: &Grid) -> [u8; CELLS] {
    grid.map(|d| d.wrapping_add(DIGIT_OFFSET))
}

/// One built split: the set, its metadata, and the transform of each example (identity for
/// originals), for checking augmentations.
#[derive(Debug, Clone)]
pub struct SudokuSplit {
    /// The examples in the reference layout.
    pub set: PuzzleSet,
    /// `dataset.json` of the split.
    pub metadata: DatasetMetadata,
    /// For each example: the index of its source record and the transform applied (empty
    /// unless [`SudokuOptions::keep_provenance`]).
    pub provenance: Vec<(usize, SudokuTransform)>,
}

/// Builds one split from checked records. `train` enables subsampling and augmentation, as
/// in the reference. `rng` drives both.
pub fn build_split(
    records: &[SudokuRecord],
    train: bool,
    opts: &SudokuOptions,
    rng: &mut impl Rng,
) -> Result<SudokuSplit, BuildError> {
    let mut selected: Vec<usize> = match opts.min_difficulty {
        None => (0..records.len()).collect(),
        Some(min) => {
            if let Some(r) = records.iter().find(|r| r.rating.is_none()) {
                return Err(BuildError::Options(format!(
                    "min_difficulty needs a `rating` column (row at line {} has none)",
                    r.line
                )));
            }
            (0..records.len())
                .filter(|&i| records[i].rating.is_some_and(|r| r >= min))
                .collect()
        }
    };
    if train
        && let Some(k) = opts.subsample_size
        && k < selected.len()
    {
        let picked = rand::seq::index::sample(rng, selected.len(), k);
        selected = picked.iter().map(|i| selected[i]).collect();
    }
    let num_aug = if train { opts.num_aug } else { 0 };
    let mut set = PuzzleSet::new(CELLS);
    if num_aug > 0 && !opts.compact_tokens {
        set.token_dtype = TokenDtype::I64;
    }
    set.reserve_examples(selected.len() * (1 + num_aug));
    let mut provenance = Vec::new();
    if opts.keep_provenance {
        provenance.reserve_exact(selected.len() * (1 + num_aug));
    }
    let progress = Progress::new(
        selected.len() as u64,
        if train { "sudoku train" } else { "sudoku test" },
        opts.progress,
    );
    for &idx in &selected {
        let rec = &records[idx];
        for aug in 0..=num_aug {
            let t = if aug == 0 {
                SudokuTransform::IDENTITY
            } else {
                SudokuTransform::random(rng)
            };
            let (q, a) = if aug == 0 {
                (rec.question, rec.answer)
            } else {
                (t.apply(&rec.question), t.apply(&rec.answer))
            };
            set.push_example(&grid_to_tokens(&q), &grid_to_tokens(&a))?;
            set.end_puzzle(0)?;
            if opts.keep_provenance {
                provenance.push((idx, t));
            }
        }
        set.end_group()?;
        progress.inc(1);
    }
    progress.finish();
    let groups = set.num_groups();
    let metadata = DatasetMetadata {
        pad_id: 0,
        ignore_label_id: Some(0),
        blank_identifier_id: 0,
        vocab_size: VOCAB_SIZE,
        seq_len: CELLS,
        num_puzzle_identifiers: 1,
        total_groups: groups,
        mean_puzzle_examples: 1.0,
        total_puzzles: groups,
        sets: vec![DEFAULT_SET.to_string()],
    };
    Ok(SudokuSplit {
        set,
        metadata,
        provenance,
    })
}

/// Where a Sudoku dataset comes from: a CSV per split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudokuSource {
    /// The train CSV.
    pub train: PathBuf,
    /// The test CSV.
    pub test: PathBuf,
}

impl SudokuSource {
    /// `<dir>/train.csv` and `<dir>/test.csv`, the HF dataset's file names.
    pub fn from_dir(dir: &Path) -> Self {
        Self {
            train: dir.join("train.csv"),
            test: dir.join("test.csv"),
        }
    }
}

/// Writes the two splits built from `train` and `test` records into `out_dir` (atomically).
/// Returns the `(train, test)` splits that were written.
pub fn write_dataset(
    train: &[SudokuRecord],
    test: &[SudokuRecord],
    out_dir: &Path,
    opts: &SudokuOptions,
) -> Result<(SudokuSplit, SudokuSplit), BuildError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let train = build_split(train, true, opts, &mut rng)?;
    let test = build_split(test, false, opts, &mut rng)?;
    let mut w = DatasetWriter::create(out_dir, opts.overwrite)?;
    w.write_split("train", &train.metadata, &[(DEFAULT_SET, &train.set)])?;
    w.write_split("test", &test.metadata, &[(DEFAULT_SET, &test.set)])?;
    w.write_identifiers(&["<blank>".to_string()])?;
    w.commit()?;
    Ok((train, test))
}

/// `build-dataset sudoku`: reads and checks both CSVs, then writes the dataset.
pub fn build_dataset(
    source: &SudokuSource,
    out_dir: &Path,
    opts: &SudokuOptions,
) -> Result<(SudokuSplit, SudokuSplit), BuildError> {
    let train = read_sudoku_csv(&source.train)?;
    let test = read_sudoku_csv(&source.test)?;
    write_dataset(&train, &test, out_dir, opts)
}
