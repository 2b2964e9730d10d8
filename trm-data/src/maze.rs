//! `build-dataset maze`: Maze-Hard CSV -> train/test splits in the reference layout
//! (TRM `dataset/build_maze_dataset.py`).
//!
//! Input: CSVs with `question` and `answer` columns (the HF dataset has
//! `source,question,answer,rating`; other columns are ignored), each an n*n string over the
//! charset `"# SGo"` (wall, open, start, goal, path), row-major. The grid size comes from the
//! first row, as in the reference (30x30 = 900 for Maze-Hard); every row must match it.
//!
//! Output, as the reference: token = 1 + index in `"# SGo"` (`#`=1, ` `=2, `S`=3, `G`=4,
//! `o`=5; 0 = pad, unused), uint8 `(examples, n*n)`; one example per puzzle, identifier 0; one
//! group per maze. With `aug`, each train maze is followed in its group by its 7 other dihedral
//! transforms (ids 1..=7 of [`dihedral`], same order as the reference). Metadata: `vocab_size 6,
//! seq_len n*n, num_puzzle_identifiers 1, mean_puzzle_examples 1.0,
//! total_groups = total_puzzles = number of mazes` (the reference's values, also with `aug`).
//!
//! Subsampling draws from a seeded RNG; the reference's is NumPy's unseeded global RNG, so only
//! builds without subsampling can match it byte for byte (augmentation here is deterministic).

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::input::{BuildError, read_csv};
use crate::layout::{DEFAULT_SET, DatasetMetadata, DatasetWriter, PuzzleSet};
use crate::progress::Progress;

/// The reference's maze charset; token = 1 + index.
pub const CHARSET: &str = "# SGo";
/// Token vocabulary: pad + charset.
pub const VOCAB_SIZE: u32 = CHARSET.len() as u32 + 1;

/// The 8 dihedral transforms of a square grid, numbered as the reference's
/// `dataset/common.py::dihedral_transform`: 0 identity, 1 `rot90` (counter-clockwise), 2
/// `rot180`, 3 `rot270`, 4 `fliplr`, 5 `flipud`, 6 transpose, 7 anti-transpose.
pub mod dihedral {
    /// Transform id -> id of its inverse (the reference's `DIHEDRAL_INVERSE`).
    pub const INVERSE: [usize; 8] = [0, 3, 2, 1, 4, 5, 6, 7];

    /// Source cell `(r, c)` of output cell `(i, j)` under transform `tid` on an `n` x `n` grid.
    #[inline]
    pub fn source(tid: usize, n: usize, i: usize, j: usize) -> (usize, usize) {
        let m = n - 1;
        match tid {
            1 => (j, m - i),
            2 => (m - i, m - j),
            3 => (m - j, i),
            4 => (i, m - j),
            5 => (m - i, j),
            6 => (j, i),
            7 => (m - j, m - i),
            _ => (i, j),
        }
    }

    /// Applies transform `tid` to the row-major `n` x `n` grid `grid` (length `n * n`).
    pub fn apply<T: Copy>(grid: &[T], n: usize, tid: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                let (r, c) = source(tid, n, i, j);
                out.push(grid[r * n + c]);
            }
        }
        out
    }

    /// Undoes transform `tid`: `invert(&apply(g, n, t), n, t) == g`.
    pub fn invert<T: Copy>(grid: &[T], n: usize, tid: usize) -> Vec<T> {
        apply(grid, n, INVERSE[tid % 8])
    }
}

/// One checked maze: tokens of the question and the answer (`n * n` each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MazeRecord {
    /// Question tokens.
    pub question: Vec<u8>,
    /// Answer tokens.
    pub answer: Vec<u8>,
    /// 1-based line of the row in its file.
    pub line: u64,
}

/// Options of the Maze builder (the reference's `DataProcessConfig` plus a seed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MazeOptions {
    /// Keep a random `subsample_size` of the train mazes.
    pub subsample_size: Option<usize>,
    /// Add the 7 other dihedral transforms of each train maze.
    pub aug: bool,
    /// Seed of subsampling.
    pub seed: u64,
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
}

/// Token of a maze character, `None` outside the charset.
pub fn char_to_token(c: u8) -> Option<u8> {
    CHARSET.bytes().position(|x| x == c).map(|p| p as u8 + 1)
}

/// Reads and checks a maze CSV; returns the records and the side `n` of the grids.
pub fn read_maze_csv(path: &Path) -> Result<(Vec<MazeRecord>, usize), BuildError> {
    let rows = read_csv(path, &["question", "answer"], &[])?;
    let mut out = Vec::with_capacity(rows.len());
    let mut side: Option<usize> = None;
    for row in rows {
        let line = row.line;
        let mut tokens = [Vec::new(), Vec::new()];
        for (k, field) in ["question", "answer"].into_iter().enumerate() {
            let err = |msg: String| BuildError::Field {
                path: path.to_path_buf(),
                line,
                field: field.to_string(),
                msg,
            };
            let text = row.fields[k].as_deref().unwrap_or("");
            let len = text.chars().count();
            let n = match side {
                Some(n) => n,
                None => {
                    let n = (len as f64).sqrt().round() as usize;
                    if n == 0 || n * n != len {
                        return Err(err(format!("length {len} is not a square grid")));
                    }
                    side = Some(n);
                    n
                }
            };
            if len != n * n {
                return Err(err(format!(
                    "bad length {len} (expected {} for {n}x{n})",
                    n * n
                )));
            }
            let mut t = Vec::with_capacity(len);
            for (i, c) in text.chars().enumerate() {
                let token = u8::try_from(c).ok().and_then(char_to_token);
                t.push(token.ok_or_else(|| {
                    err(format!(
                        "bad character {c:?} at position {i} (charset {CHARSET:?})"
                    ))
                })?);
            }
            tokens[k] = t;
        }
        let [question, answer] = tokens;
        out.push(MazeRecord {
            question,
            answer,
            line,
        });
    }
    Ok((out, side.unwrap_or(0)))
}

/// One built split.
#[derive(Debug, Clone)]
pub struct MazeSplit {
    /// The examples in the reference layout.
    pub set: PuzzleSet,
    /// `dataset.json` of the split.
    pub metadata: DatasetMetadata,
}

/// Builds one split; `train` enables subsampling and augmentation as in the reference.
pub fn build_split(
    records: &[MazeRecord],
    side: usize,
    train: bool,
    opts: &MazeOptions,
    rng: &mut ChaCha8Rng,
) -> Result<MazeSplit, BuildError> {
    let mut selected: Vec<usize> = (0..records.len()).collect();
    if train
        && let Some(k) = opts.subsample_size
        && k < selected.len()
    {
        selected = rand::seq::index::sample(rng, selected.len(), k).into_vec();
    }
    let transforms = if train && opts.aug { 8 } else { 1 };
    let seq_len = side * side;
    let mut set = PuzzleSet::new(seq_len);
    set.reserve_examples(selected.len() * transforms);
    let progress = Progress::new(
        selected.len() as u64,
        if train { "maze train" } else { "maze test" },
        opts.progress,
    );
    for &idx in &selected {
        let r = &records[idx];
        for tid in 0..transforms {
            if tid == 0 {
                set.push_example(&r.question, &r.answer)?;
            } else {
                let q = dihedral::apply(&r.question, side, tid);
                let a = dihedral::apply(&r.answer, side, tid);
                set.push_example(&q, &a)?;
            }
            set.end_puzzle(0)?;
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
        seq_len,
        num_puzzle_identifiers: 1,
        total_groups: groups,
        mean_puzzle_examples: 1.0,
        total_puzzles: groups,
        sets: vec![DEFAULT_SET.to_string()],
    };
    Ok(MazeSplit { set, metadata })
}

/// Where a Maze dataset comes from: a CSV per split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MazeSource {
    /// The train CSV.
    pub train: PathBuf,
    /// The test CSV.
    pub test: PathBuf,
}

impl MazeSource {
    /// `<dir>/train.csv` and `<dir>/test.csv`.
    pub fn from_dir(dir: &Path) -> Self {
        Self {
            train: dir.join("train.csv"),
            test: dir.join("test.csv"),
        }
    }
}

/// `build-dataset maze`: reads and checks both CSVs, writes the dataset atomically into
/// `out_dir`, and returns the `(train, test)` splits written.
pub fn build_dataset(
    source: &MazeSource,
    out_dir: &Path,
    opts: &MazeOptions,
) -> Result<(MazeSplit, MazeSplit), BuildError> {
    let (train_rec, train_side) = read_maze_csv(&source.train)?;
    let (test_rec, test_side) = read_maze_csv(&source.test)?;
    if !train_rec.is_empty() && !test_rec.is_empty() && train_side != test_side {
        return Err(BuildError::Options(format!(
            "train mazes are {train_side}x{train_side} but test mazes are {test_side}x{test_side}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let train = build_split(&train_rec, train_side, true, opts, &mut rng)?;
    let test = build_split(&test_rec, test_side, false, opts, &mut rng)?;
    let mut w = DatasetWriter::create(out_dir, opts.overwrite)?;
    w.write_split("train", &train.metadata, &[(DEFAULT_SET, &train.set)])?;
    w.write_split("test", &test.metadata, &[(DEFAULT_SET, &test.set)])?;
    w.write_identifiers(&["<blank>".to_string()])?;
    w.commit()?;
    Ok((train, test))
}
