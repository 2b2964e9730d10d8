//! ARC-AGI datasets in the reference layout (`dataset/build_arc_dataset.py` of the reference).
//!
//! Input: the Kaggle "combined" JSON files `<prefix>_<subset>_challenges.json` (puzzle id ->
//! `{"train": [{"input", "output"}..], "test": [{"input"}..]}`) and
//! `<prefix>_<subset>_solutions.json` (puzzle id -> one output grid per test input; when the file
//! is absent every test output is the dummy grid `[[0]]`, as the reference does).
//!
//! Output (`<out>/train`, `<out>/test`, each `dataset.json` + `all__<field>.npy`, plus
//! `<out>/identifiers.json` and `<out>/test_puzzles.json`):
//! - every grid (colours 0..=9, at most 30x30) becomes 900 tokens: `colour + 2` placed at a
//!   top-left offset in a 30x30 canvas of [`PAD`] (0), with [`EOS`] (1) on the row just below the
//!   grid (grid columns only) and the column just right of it (grid rows only), when they fit;
//! - puzzles of a subset named `test_set_name` (or `test_set_name2`) send their *test* examples
//!   to the `test` split and their train examples to `train`; other subsets send all examples to
//!   `train`;
//! - each puzzle forms a group: the original plus up to `num_aug` augmentations, each a dihedral
//!   transform (8) composed with a permutation of colours 1..=9 (0 stays black), drawn at most
//!   `5 * num_aug` times, duplicates (same multiset of (input, output) pairs as an earlier
//!   member) rejected; an augmented puzzle is named `<id>|||t<k>|||<colour map digits>`;
//! - in the `train` split every example except one random one per puzzle is translated by a
//!   random top-left offset that keeps both grids inside 30x30.
//!
//! # Reproducing the reference exactly
//!
//! The reference draws every random number from NumPy's legacy global `RandomState` seeded
//! with `seed` (MT19937). [`NumpyLegacyRng`] reproduces that stream and its bounded draws
//! (`randint`, `permutation`, `shuffle`), and the builder draws in the reference's order:
//! 1. per subset, in order: `shuffle` of the puzzle list;
//! 2. per puzzle, per augmentation trial: `randint(0, 8)` (dihedral id), then `permutation` of
//!    colours 1..=9;
//! 3. per split (train then test), per group, per puzzle: `randint(0, n_examples)` (the example
//!    left untranslated; drawn in the test split too), then in the train split, per other
//!    example, `randint(0, 30 - max_rows + 1)` and `randint(0, 30 - max_cols + 1)` (no draw when
//!    the bound is 1, as NumPy).
//!
//! The output is therefore byte-identical to the reference builder's for the same inputs and
//! seed (checked by the tests on synthetic puzzles and on ARC-AGI-1). Known differences:
//! - the reference orders the two splits by iterating a Python `set` of tuples of strings,
//!   whose order varies between processes (string hash randomisation) when the *first* subset
//!   is a test subset; we always emit `train` first (the order the reference gets whenever the
//!   first subset is not a test subset);
//! - duplicate augmentations are detected by comparing the grids themselves, where the
//!   reference compares SHA-256 digests of them (identical unless SHA-256 collides);
//! - unknown keys of a puzzle object are ignored (the reference fails on them), so they do not
//!   reach test_puzzles.json;
//! - bad input fails with an [`ArcError`] naming file, puzzle and field where the reference
//!   asserts; grids with an empty row (which the reference accepts as `1x0`) are rejected.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::layout::{
    BLANK_IDENTIFIER, DEFAULT_SET as SET_NAME, DatasetMetadata, DatasetWriter, LayoutError,
    METADATA_FILE,
};
use crate::npy::{NpyElement, numpy_header, write_npy_file};

/// Largest grid side; the sequence is a `GRID_SIZE x GRID_SIZE` canvas.
pub const GRID_SIZE: usize = 30;
/// Tokens per example (`30 * 30`).
pub const SEQ_LEN: usize = GRID_SIZE * GRID_SIZE;
/// Padding token (also the ignored label id).
pub const PAD: u8 = 0;
/// End-of-grid marker token.
pub const EOS: u8 = 1;
/// Token of colour 0; colour `c` is token `c + COLOUR_OFFSET`.
pub const COLOUR_OFFSET: u8 = 2;
/// Vocabulary size: PAD, EOS and ten colours.
pub const VOCAB_SIZE: usize = 12;
/// Number of colours (0..=9).
pub const NUM_COLOURS: usize = 10;
/// Separator between the parts of an augmented puzzle name (`id|||t3|||0123456789`).
pub const PUZZLE_ID_SEPARATOR: &str = "|||";
/// Augmentation draws per requested augmentation before giving up (reference
/// `ARCAugmentRetriesFactor`).
pub const AUGMENT_RETRIES_FACTOR: usize = 5;
/// File name of the test puzzles (original grids of the test split) at the dataset root.
pub const TEST_PUZZLES_FILE: &str = "test_puzzles.json";

/// An error building or reading an ARC dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArcError {
    /// A file could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not the JSON this module expects.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// A puzzle is malformed (bad grid, missing solution, no examples).
    #[error("{path}: puzzle {puzzle}: {field}: {msg}")]
    Puzzle {
        /// The file the value came from.
        path: PathBuf,
        /// The puzzle id.
        puzzle: String,
        /// The field, e.g. `train[2].output` or `test[0].output`.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The build configuration is unusable.
    #[error("invalid ARC build configuration: {0}")]
    Config(String),
    /// The dataset layout failed (writing the directory, an array, the metadata).
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A puzzle name does not parse as `<id>|||t<k>|||<10 digits>`.
    #[error("puzzle name {name:?}: {msg}")]
    Name {
        /// The name.
        name: String,
        /// What is wrong.
        msg: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArcError + '_ {
    move |source| ArcError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// NumPy's legacy RandomState (MT19937)
// ---------------------------------------------------------------------------------------------

/// NumPy's legacy global random state (`np.random.seed` / `RandomState`): MT19937 with
/// NumPy's bounded-integer algorithms, so that the draws equal the reference builder's.
///
/// Only what the ARC builder uses: [`seed`](Self::seed) (integer seeding, `init_genrand`),
/// [`randint`](Self::randint) (masked rejection sampling, `RandomState.randint`),
/// [`shuffle`](Self::shuffle) and [`permutation`](Self::permutation) (Fisher-Yates from the end
/// with `random_interval`).
#[derive(Clone)]
pub struct NumpyLegacyRng {
    key: [u32; 624],
    pos: usize,
}

impl fmt::Debug for NumpyLegacyRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NumpyLegacyRng")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl NumpyLegacyRng {
    const N: usize = 624;
    const M: usize = 397;

    /// `np.random.seed(seed)` for an integer seed in `0..2^32`.
    pub fn seed(seed: u32) -> Self {
        let mut key = [0u32; 624];
        let mut s = seed;
        for (i, k) in key.iter_mut().enumerate() {
            *k = s;
            // Knuth's multiplier, as mt19937_seed / init_genrand (i < 624 fits in u32).
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(i as u32 + 1);
        }
        Self { key, pos: Self::N }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..Self::N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % Self::N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.key[i] = self.key[(i + Self::M) % Self::N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output (tempered), NumPy's `next_uint32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == Self::N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A uniform integer in `0..=max` by masked rejection (NumPy's `random_interval`).
    pub fn random_interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `np.random.randint(low, high)`: uniform in `low..high`; draws nothing when
    /// `high == low + 1`. Returns `None` when the range is empty (NumPy raises).
    pub fn randint(&mut self, low: u32, high: u32) -> Option<u32> {
        if high <= low {
            return None;
        }
        // Same masked rejection as random_interval (NumPy's buffered_bounded_masked_uint32).
        Some(low + self.random_interval(high - 1 - low))
    }

    /// `np.random.shuffle(x)` for a list or a 1-D array.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // Puzzle lists hold far fewer than 2^32 items.
            let j = self.random_interval(i as u32) as usize;
            items.swap(i, j);
        }
    }

    /// `np.random.permutation(items)`: a shuffled copy.
    pub fn permutation<T: Clone>(&mut self, items: &[T]) -> Vec<T> {
        let mut v = items.to_vec();
        self.shuffle(&mut v);
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Grids and the dihedral group
// ---------------------------------------------------------------------------------------------

/// A rectangular grid of colours 0..=9, at most 30x30, row major.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grid {
    rows: usize,
    cols: usize,
    cells: Vec<u8>,
}

/// Why a list of rows is not a valid ARC grid.
fn grid_problem(rows: &[Vec<i64>]) -> Option<String> {
    if rows.is_empty() {
        return Some("empty grid (no rows)".into());
    }
    let cols = rows[0].len();
    if cols == 0 {
        return Some("empty grid (row 0 has no cells)".into());
    }
    for (r, row) in rows.iter().enumerate() {
        if row.len() != cols {
            return Some(format!(
                "non-rectangular grid: row {r} has {} cells, row 0 has {cols}",
                row.len()
            ));
        }
    }
    if rows.len() > GRID_SIZE || cols > GRID_SIZE {
        return Some(format!(
            "grid is {}x{}, larger than {GRID_SIZE}x{GRID_SIZE}",
            rows.len(),
            cols
        ));
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if !(0..NUM_COLOURS as i64).contains(&v) {
                return Some(format!(
                    "colour {v} at row {r}, column {c} is outside 0..=9"
                ));
            }
        }
    }
    None
}

impl Grid {
    /// A grid from its size and row-major cells; `None` unless `1 <= rows, cols <= 30`,
    /// `cells.len() == rows * cols` and every cell is in 0..=9.
    pub fn new(rows: usize, cols: usize, cells: Vec<u8>) -> Option<Self> {
        let ok = (1..=GRID_SIZE).contains(&rows)
            && (1..=GRID_SIZE).contains(&cols)
            && cells.len() == rows * cols
            && cells.iter().all(|&c| (c as usize) < NUM_COLOURS);
        ok.then_some(Self { rows, cols, cells })
    }

    /// A grid from JSON-style rows, with the reason when they are not a valid grid.
    pub fn from_rows(rows: &[Vec<i64>]) -> Result<Self, String> {
        if let Some(problem) = grid_problem(rows) {
            return Err(problem);
        }
        let cells = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v as u8))
            .collect();
        Ok(Self {
            rows: rows.len(),
            cols: rows[0].len(),
            cells,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The cells, row major.
    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    /// The cell at `(row, col)`, `None` outside the grid.
    pub fn get(&self, row: usize, col: usize) -> Option<u8> {
        (row < self.rows && col < self.cols).then(|| self.cells[row * self.cols + col])
    }

    /// The grid as rows of integers (the JSON form).
    pub fn to_rows(&self) -> Vec<Vec<u8>> {
        if self.cols == 0 {
            return Vec::new();
        }
        self.cells.chunks(self.cols).map(<[u8]>::to_vec).collect()
    }

    /// The reference's `dihedral_transform(grid, tid)` (tid 0..=7; others are the identity, as
    /// in the reference): 0 identity, 1 `rot90` (counter-clockwise), 2 `rot180`, 3 `rot270`,
    /// 4 `fliplr`, 5 `flipud`, 6 transpose, 7 anti-transpose (`fliplr(rot90)`).
    pub fn dihedral(&self, tid: u8) -> Grid {
        let (r, c) = (self.rows, self.cols);
        let swap = matches!(tid, 1 | 3 | 6 | 7);
        let (nr, nc) = if swap { (c, r) } else { (r, c) };
        let mut cells = Vec::with_capacity(r * c);
        for i in 0..nr {
            for j in 0..nc {
                // Source cell of output (i, j), NumPy's definitions of each transform.
                let (si, sj) = match tid {
                    1 => (j, c - 1 - i),
                    2 => (r - 1 - i, c - 1 - j),
                    3 => (r - 1 - j, i),
                    4 => (i, c - 1 - j),
                    5 => (r - 1 - i, j),
                    6 => (j, i),
                    7 => (r - 1 - j, c - 1 - i),
                    _ => (i, j),
                };
                cells.push(self.cells[si * c + sj]);
            }
        }
        Grid {
            rows: nr,
            cols: nc,
            cells,
        }
    }

    /// The inverse of [`dihedral`](Self::dihedral) (reference `inverse_dihedral_transform`).
    pub fn inverse_dihedral(&self, tid: u8) -> Grid {
        self.dihedral(inverse_dihedral_id(tid))
    }

    /// Every cell `v` replaced by `mapping[v]`.
    pub fn map_colours(&self, mapping: &[u8; NUM_COLOURS]) -> Grid {
        Grid {
            rows: self.rows,
            cols: self.cols,
            cells: self.cells.iter().map(|&v| mapping[v as usize]).collect(),
        }
    }

    /// The reference's augmentation map: colours first, then the dihedral transform.
    pub fn augment(&self, aug: &Augmentation) -> Grid {
        self.map_colours(&aug.colours).dihedral(aug.trans_id)
    }

    /// The inverse of [`augment`](Self::augment) (reference `inverse_aug`'s map).
    pub fn unaugment(&self, aug: &Augmentation) -> Grid {
        self.inverse_dihedral(aug.trans_id)
            .map_colours(&aug.inverse_colours())
    }
}

/// The dihedral id undoing `tid` (reference `DIHEDRAL_INVERSE`): rotations by 90 and 270
/// degrees invert each other, every other element is its own inverse.
pub fn inverse_dihedral_id(tid: u8) -> u8 {
    match tid {
        1 => 3,
        3 => 1,
        t => t,
    }
}

/// One augmentation: a colour map (a permutation of 0..=9) then a dihedral transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Augmentation {
    trans_id: u8,
    colours: [u8; NUM_COLOURS],
}

impl Augmentation {
    /// An augmentation from a dihedral id (0..=7) and a colour map (`colours[v]` is the new
    /// colour of `v`; a permutation of 0..=9). `None` otherwise. The builder's maps keep 0
    /// fixed; the evaluator accepts any permutation, as the reference's `inverse_aug`.
    pub fn new(trans_id: u8, colours: [u8; NUM_COLOURS]) -> Option<Self> {
        let mut seen = [false; NUM_COLOURS];
        for &c in &colours {
            if c as usize >= NUM_COLOURS || std::mem::replace(&mut seen[c as usize], true) {
                return None;
            }
        }
        (trans_id < 8).then_some(Self { trans_id, colours })
    }

    /// The dihedral transform id, 0..=7 (see [`Grid::dihedral`]).
    pub fn trans_id(&self) -> u8 {
        self.trans_id
    }

    /// The colour map: `colours()[v]` is the new colour of colour `v`.
    pub fn colours(&self) -> [u8; NUM_COLOURS] {
        self.colours
    }

    /// The identity augmentation.
    pub const IDENTITY: Self = Self {
        trans_id: 0,
        colours: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    };

    /// The inverse colour map (`inv[colours[v]] == v`).
    pub fn inverse_colours(&self) -> [u8; NUM_COLOURS] {
        let mut inv = [0u8; NUM_COLOURS];
        for (v, &m) in self.colours.iter().enumerate() {
            if let Some(slot) = inv.get_mut(m as usize) {
                *slot = v as u8;
            }
        }
        inv
    }

    /// The augmented name `<base>|||t<k>|||<colour digits>` (reference `aug`).
    pub fn name(&self, base: &str) -> String {
        let digits: String = self.colours.iter().map(|d| char::from(b'0' + d)).collect();
        format!(
            "{base}{PUZZLE_ID_SEPARATOR}t{}{PUZZLE_ID_SEPARATOR}{digits}",
            self.trans_id
        )
    }

    /// Splits a puzzle name into its base id and augmentation (reference `inverse_aug`): a
    /// name without the separator is an original puzzle (identity).
    pub fn parse_name(name: &str) -> Result<(&str, Augmentation), ArcError> {
        if !name.contains(PUZZLE_ID_SEPARATOR) {
            return Ok((name, Self::IDENTITY));
        }
        let bad = |msg: &str| ArcError::Name {
            name: name.to_string(),
            msg: msg.to_string(),
        };
        let parts: Vec<&str> = name.split(PUZZLE_ID_SEPARATOR).collect();
        // As the reference: the base is the first part, the transform the last two.
        let [.., t, perm] = parts.as_slice() else {
            return Err(bad("expected <id>|||t<k>|||<colours>"));
        };
        let trans_id = t
            .strip_prefix('t')
            .and_then(|k| k.parse::<u8>().ok())
            .filter(|&k| k < 8)
            .ok_or_else(|| bad("transform must be t0..t7"))?;
        let bytes = perm.as_bytes();
        if bytes.len() != NUM_COLOURS {
            return Err(bad("colour map must have 10 digits"));
        }
        let mut colours = [0u8; NUM_COLOURS];
        let mut seen = [false; NUM_COLOURS];
        for (slot, &b) in colours.iter_mut().zip(bytes) {
            let d = b.wrapping_sub(b'0');
            if d as usize >= NUM_COLOURS || seen[d as usize] {
                return Err(bad("colour map must be a permutation of the digits 0..9"));
            }
            seen[d as usize] = true;
            *slot = d;
        }
        Ok((parts[0], Augmentation { trans_id, colours }))
    }
}

// ---------------------------------------------------------------------------------------------
// Sequences
// ---------------------------------------------------------------------------------------------

/// Writes `grid` into a 900-token canvas at offset `(pad_r, pad_c)` with EOS markers, exactly as
/// the reference's `np_grid_to_seq_translational_augment` does for one grid. Returns `false`,
/// leaving the canvas all PAD, when the grid does not fit at that offset.
pub fn grid_to_seq(grid: &Grid, pad_r: usize, pad_c: usize, out: &mut [u8; SEQ_LEN]) -> bool {
    out.fill(PAD);
    let (nr, nc) = (grid.rows, grid.cols);
    if pad_r + nr > GRID_SIZE || pad_c + nc > GRID_SIZE {
        return false;
    }
    for r in 0..nr {
        let dst = (pad_r + r) * GRID_SIZE + pad_c;
        for (o, &v) in out[dst..dst + nc]
            .iter_mut()
            .zip(&grid.cells[r * nc..(r + 1) * nc])
        {
            *o = v + COLOUR_OFFSET;
        }
    }
    let (eos_row, eos_col) = (pad_r + nr, pad_c + nc);
    if eos_row < GRID_SIZE {
        out[eos_row * GRID_SIZE + pad_c..eos_row * GRID_SIZE + eos_col].fill(EOS);
    }
    if eos_col < GRID_SIZE {
        for r in pad_r..eos_row {
            out[r * GRID_SIZE + eos_col] = EOS;
        }
    }
    true
}

/// The grid an encoded sequence holds: the largest top-left rectangle without PAD or EOS
/// (reference evaluator `_crop`). Tokens outside `2..=11` end a row; the grid may be empty.
pub fn crop_seq<T: Copy + Into<i64>>(seq: &[T]) -> Option<Grid> {
    if seq.len() != SEQ_LEN {
        return None;
    }
    let is_colour = |t: T| (2..=11).contains(&t.into());
    let (mut best_area, mut best) = (0, (0, 0));
    let mut num_c = GRID_SIZE;
    for num_r in 1..=GRID_SIZE {
        let row = &seq[(num_r - 1) * GRID_SIZE..num_r * GRID_SIZE];
        if let Some(c) = row[..num_c].iter().position(|&t| !is_colour(t)) {
            num_c = c;
        }
        if num_r * num_c > best_area {
            best_area = num_r * num_c;
            best = (num_r, num_c);
        }
    }
    let (rows, cols) = best;
    let mut cells = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        // Cells were checked to be colour tokens 2..=11.
        cells.extend(
            seq[r * GRID_SIZE..r * GRID_SIZE + cols]
                .iter()
                .map(|&t| (t.into() - COLOUR_OFFSET as i64) as u8),
        );
    }
    Some(Grid { rows, cols, cells })
}

// ---------------------------------------------------------------------------------------------
// Loading the Kaggle JSON
// ---------------------------------------------------------------------------------------------

/// One input/output pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcExample {
    /// The input grid.
    pub input: Grid,
    /// The output grid (for test examples: from the solutions file, or `[[0]]` without one).
    pub output: Grid,
}

/// One ARC task (a "puzzle"): demonstration pairs and test pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcTask {
    /// The task id (the JSON key).
    pub id: String,
    /// Demonstration pairs.
    pub train: Vec<ArcExample>,
    /// Test pairs.
    pub test: Vec<ArcExample>,
    /// Whether the JSON object lists `test` before `train` (the Kaggle files differ). The
    /// reference follows the file's key order: it decides the example order of puzzles whose
    /// test pairs are training data, and the key order in test_puzzles.json.
    pub test_first: bool,
}

impl ArcTask {
    /// Train and test pairs in the file's key order.
    pub fn all_examples(&self) -> impl Iterator<Item = &ArcExample> {
        let (a, b) = if self.test_first {
            (&self.test, &self.train)
        } else {
            (&self.train, &self.test)
        };
        a.iter().chain(b)
    }
}

#[derive(Deserialize)]
struct RawExample {
    input: Vec<Vec<i64>>,
    #[serde(default)]
    output: Option<Vec<Vec<i64>>>,
}

struct RawTask {
    train: Vec<RawExample>,
    test: Vec<RawExample>,
    test_first: bool,
}

impl<'de> Deserialize<'de> for RawTask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TaskVisitor;
        impl<'de> Visitor<'de> for TaskVisitor {
            type Value = RawTask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a puzzle object with \"train\" and \"test\" lists")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTask, A::Error> {
                let (mut train, mut test, mut test_first) = (None, None, false);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "train" => train = Some(map.next_value()?),
                        "test" => {
                            test_first = train.is_none();
                            test = Some(map.next_value()?);
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawTask {
                    train: train.ok_or_else(|| serde::de::Error::missing_field("train"))?,
                    test: test.ok_or_else(|| serde::de::Error::missing_field("test"))?,
                    test_first,
                })
            }
        }
        d.deserialize_map(TaskVisitor)
    }
}

/// A JSON object read as a list of (key, value) in file order (Python's `json.load` keeps it;
/// the order decides the shuffle's result).
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object keyed by puzzle id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ArcError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| ArcError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The challenges file of a subset: `<prefix>_<subset>_challenges.json`.
pub fn challenges_path(prefix: &str, subset: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}_{subset}_challenges.json"))
}

/// The solutions file of a subset: `<prefix>_<subset>_solutions.json`.
pub fn solutions_path(prefix: &str, subset: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}_{subset}_solutions.json"))
}

/// Loads and validates one subset's tasks in file order, with test outputs from the solutions
/// file (or the dummy `[[0]]` when there is none, as the reference).
pub fn load_subset(prefix: &str, subset: &str) -> Result<Vec<ArcTask>, ArcError> {
    let ch_path = challenges_path(prefix, subset);
    let sol_path = solutions_path(prefix, subset);
    let raw: Ordered<RawTask> = read_json(&ch_path)?;
    let sols: Option<HashMap<String, Vec<Vec<Vec<i64>>>>> = if sol_path.is_file() {
        Some(read_json(&sol_path)?)
    } else {
        None
    };
    let grid = |path: &Path, id: &str, field: String, rows: &[Vec<i64>]| {
        Grid::from_rows(rows).map_err(|msg| ArcError::Puzzle {
            path: path.to_path_buf(),
            puzzle: id.to_string(),
            field,
            msg,
        })
    };
    let mut tasks = Vec::with_capacity(raw.0.len());
    for (id, task) in raw.0 {
        let mut train = Vec::with_capacity(task.train.len());
        for (i, ex) in task.train.iter().enumerate() {
            let input = grid(&ch_path, &id, format!("train[{i}].input"), &ex.input)?;
            let Some(out) = &ex.output else {
                return Err(ArcError::Puzzle {
                    path: ch_path,
                    puzzle: id,
                    field: format!("train[{i}].output"),
                    msg: "missing".into(),
                });
            };
            let output = grid(&ch_path, &id, format!("train[{i}].output"), out)?;
            train.push(ArcExample { input, output });
        }
        let sol = match &sols {
            Some(s) => Some(s.get(&id).ok_or_else(|| ArcError::Puzzle {
                path: sol_path.clone(),
                puzzle: id.clone(),
                field: "solutions".into(),
                msg: "puzzle has no entry in the solutions file".into(),
            })?),
            None => None,
        };
        if let Some(sol) = sol
            && sol.len() != task.test.len()
        {
            return Err(ArcError::Puzzle {
                path: sol_path,
                puzzle: id,
                field: "solutions".into(),
                msg: format!(
                    "{} solution grids for {} test inputs",
                    sol.len(),
                    task.test.len()
                ),
            });
        }
        let mut test = Vec::with_capacity(task.test.len());
        for (i, ex) in task.test.iter().enumerate() {
            let input = grid(&ch_path, &id, format!("test[{i}].input"), &ex.input)?;
            let output = match (sol, &ex.output) {
                (Some(sol), _) => grid(&sol_path, &id, format!("test[{i}].output"), &sol[i])?,
                (None, Some(out)) => grid(&ch_path, &id, format!("test[{i}].output"), out)?,
                (None, None) => Grid {
                    rows: 1,
                    cols: 1,
                    cells: vec![0],
                },
            };
            test.push(ArcExample { input, output });
        }
        tasks.push(ArcTask {
            id,
            train,
            test,
            test_first: task.test_first,
        });
    }
    Ok(tasks)
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// Options of the ARC builder (reference `DataProcessConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArcBuildConfig {
    /// Path prefix of the JSON files, e.g. `data/arc/arc-agi` for
    /// `data/arc/arc-agi_training_challenges.json`.
    pub input_file_prefix: String,
    /// Output directory.
    pub output_dir: PathBuf,
    /// Subsets to read, in order (e.g. `training`, `evaluation`, `concept`).
    pub subsets: Vec<String>,
    /// The subset whose test examples form the test split (e.g. `evaluation`).
    pub test_set_name: String,
    /// A second test subset (reference default `your_test_set`).
    pub test_set_name2: String,
    /// Seed of NumPy's legacy global RNG (reference default 42).
    pub seed: u32,
    /// Augmentations per puzzle (reference default 1000).
    pub num_aug: usize,
    /// First puzzle identifier (0 is `<blank>`; reference default 1).
    pub puzzle_identifiers_start: u32,
    /// Replace `output_dir` if it exists (the reference writes into it whatever it holds).
    pub overwrite: bool,
}

impl ArcBuildConfig {
    /// A configuration with the reference defaults (seed 42, 1000 augmentations, identifiers
    /// from 1, second test set `your_test_set`).
    pub fn new(
        input_file_prefix: impl Into<String>,
        output_dir: impl Into<PathBuf>,
        subsets: &[&str],
        test_set_name: impl Into<String>,
    ) -> Self {
        Self {
            input_file_prefix: input_file_prefix.into(),
            output_dir: output_dir.into(),
            subsets: subsets.iter().map(|s| s.to_string()).collect(),
            test_set_name: test_set_name.into(),
            test_set_name2: "your_test_set".into(),
            seed: 42,
            num_aug: 1000,
            puzzle_identifiers_start: 1,
            overwrite: false,
        }
    }

    fn is_test_subset(&self, subset: &str) -> bool {
        subset == self.test_set_name || subset == self.test_set_name2
    }
}

/// The two splits of an ARC dataset, in output order.
pub const SPLITS: [&str; 2] = ["train", "test"];

/// One task with its accepted augmentations (identity first).
#[derive(Debug, Clone)]
struct PlannedGroup {
    task: usize,
    /// Whether the task's test examples go to the test split.
    test_subset: bool,
    augs: Vec<Augmentation>,
}

/// The augmentation plan of a build: tasks in processing order and their augmentations.
/// Memory is small (a few bytes per augmentation); the sequences are produced while writing.
#[derive(Debug, Clone)]
pub struct ArcPlan {
    tasks: Vec<ArcTask>,
    groups: Vec<PlannedGroup>,
    /// Names of test-subset tasks, in processing order (test_puzzles.json).
    test_tasks: Vec<usize>,
    /// Every puzzle name, index = identifier (index 0 is `<blank>`).
    identifiers: Vec<String>,
    /// The RNG state after planning (the writing phase continues the stream).
    rng: NumpyLegacyRng,
    identifiers_start: u32,
    /// Puzzles whose group has fewer than `num_aug + 1` members (all draws were duplicates).
    pub incomplete_groups: Vec<(String, usize)>,
}

/// Canonical key of a puzzle's examples for duplicate detection: the sorted multiset of
/// (input, output) pairs (the reference hashes the same multiset with SHA-256).
fn puzzle_key(pairs: impl Iterator<Item = (Grid, Grid)>) -> Vec<(Grid, Grid)> {
    let mut v: Vec<(Grid, Grid)> = pairs.collect();
    v.sort_unstable();
    v
}

fn plan_group(task: &ArcTask, num_aug: usize, rng: &mut NumpyLegacyRng) -> Vec<Augmentation> {
    let mut augs = vec![Augmentation::IDENTITY];
    if num_aug == 0 {
        return augs;
    }
    let all = || task.train.iter().chain(&task.test);
    let mut seen: HashSet<Vec<(Grid, Grid)>> = HashSet::new();
    seen.insert(puzzle_key(
        all().map(|e| (e.input.clone(), e.output.clone())),
    ));
    const COLOURS_1_TO_9: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    for _ in 0..AUGMENT_RETRIES_FACTOR * num_aug {
        // Reference `aug`: randint(0, 8) then permutation(1..=9); 0..8 is never empty.
        let trans_id = rng.randint(0, 8).unwrap_or(0) as u8;
        let perm = rng.permutation(&COLOURS_1_TO_9);
        let mut colours = [0u8; NUM_COLOURS];
        colours[1..].copy_from_slice(&perm);
        let aug = Augmentation { trans_id, colours };
        let key = puzzle_key(all().map(|e| (e.input.augment(&aug), e.output.augment(&aug))));
        if seen.insert(key) {
            augs.push(aug);
        }
        if augs.len() > num_aug {
            break;
        }
    }
    augs
}

impl ArcPlan {
    /// Loads the subsets and draws the augmentations (phases 1 and 2 of the reference: loading,
    /// shuffling, augmenting, naming).
    pub fn new(config: &ArcBuildConfig) -> Result<Self, ArcError> {
        if config.subsets.is_empty() {
            return Err(ArcError::Config("no subsets given".into()));
        }
        let mut rng = NumpyLegacyRng::seed(config.seed);
        let mut tasks = Vec::new();
        let mut groups = Vec::new();
        let mut test_tasks = Vec::new();
        let mut test_pos: HashMap<String, usize> = HashMap::new();
        let mut incomplete_groups = Vec::new();
        for subset in &config.subsets {
            let mut loaded = load_subset(&config.input_file_prefix, subset)?;
            rng.shuffle(&mut loaded);
            let test_subset = config.is_test_subset(subset);
            let path = challenges_path(&config.input_file_prefix, subset);
            for task in loaded {
                // The reference fails on a puzzle without examples in a split (randint(0, 0)).
                let empty = if task.train.is_empty() {
                    Some("train")
                } else if test_subset && task.test.is_empty() {
                    Some("test")
                } else {
                    None
                };
                if let Some(field) = empty {
                    return Err(ArcError::Puzzle {
                        path,
                        puzzle: task.id,
                        field: field.into(),
                        msg: "no examples".into(),
                    });
                }
                let augs = plan_group(&task, config.num_aug, &mut rng);
                if augs.len() < config.num_aug + 1 {
                    incomplete_groups.push((task.id.clone(), augs.len()));
                }
                let index = tasks.len();
                if test_subset {
                    // A Python dict: a repeated id keeps its first position, takes the new value.
                    match test_pos.get(&task.id) {
                        Some(&p) => test_tasks[p] = index,
                        None => {
                            test_pos.insert(task.id.clone(), test_tasks.len());
                            test_tasks.push(index);
                        }
                    }
                }
                groups.push(PlannedGroup {
                    task: index,
                    test_subset,
                    augs,
                });
                tasks.push(task);
            }
        }
        // Identifiers in order of first appearance; the train split holds every puzzle.
        let start = config.puzzle_identifiers_start;
        let mut identifiers: Vec<String> = (0..start).map(|_| BLANK_IDENTIFIER.into()).collect();
        let mut seen = HashSet::new();
        for g in &groups {
            for aug in &g.augs {
                let name = puzzle_name(&tasks[g.task].id, aug);
                if seen.insert(name.clone()) {
                    identifiers.push(name);
                }
            }
        }
        Ok(Self {
            tasks,
            groups,
            test_tasks,
            identifiers,
            rng,
            identifiers_start: start,
            incomplete_groups,
        })
    }

    /// Puzzle names by identifier (identifiers.json); entries below `puzzle_identifiers_start`
    /// are `<blank>`.
    pub fn identifiers(&self) -> &[String] {
        &self.identifiers
    }

    /// The tasks of the test subsets in processing order (test_puzzles.json).
    pub fn test_tasks(&self) -> impl Iterator<Item = &ArcTask> {
        self.test_tasks.iter().map(|&i| &self.tasks[i])
    }

    /// Produces the splits, calling `sink` for each; consumes the plan (the RNG stream
    /// continues from planning, as in the reference).
    pub fn emit<S: SplitSink>(mut self, sink: &mut S) -> Result<(), ArcError> {
        let id_of: HashMap<&str, i32> = self
            .identifiers
            .iter()
            .enumerate()
            .skip(self.identifiers_start as usize)
            .map(|(i, n)| (n.as_str(), i as i32))
            .collect();
        let num_identifiers = self.identifiers.len();
        for split in SPLITS {
            let is_train = split == "train";
            let examples_of = |g: &PlannedGroup| -> Vec<&ArcExample> {
                let t = &self.tasks[g.task];
                if is_train {
                    if g.test_subset {
                        t.train.iter().collect()
                    } else {
                        t.all_examples().collect()
                    }
                } else if g.test_subset {
                    t.test.iter().collect()
                } else {
                    Vec::new()
                }
            };
            let total_examples: usize = self
                .groups
                .iter()
                .map(|g| examples_of(g).len() * g.augs.len())
                .sum();
            let in_split: Vec<&PlannedGroup> = self
                .groups
                .iter()
                .filter(|g| is_train || g.test_subset)
                .collect();
            if in_split.is_empty() {
                continue;
            }
            sink.begin(split, total_examples)?;
            let mut puzzle_identifiers = Vec::new();
            let mut puzzle_indices = vec![0i32];
            let mut group_indices = vec![0i32];
            let mut example_id = 0usize;
            let (mut inp, mut out) = ([0u8; SEQ_LEN], [0u8; SEQ_LEN]);
            for g in in_split {
                let examples = examples_of(g);
                let task = &self.tasks[g.task];
                for aug in &g.augs {
                    // Non-empty: checked when planning.
                    let n = examples.len() as u32;
                    let no_aug_id = self.rng.randint(0, n).unwrap_or(0) as usize;
                    for (i, ex) in examples.iter().enumerate() {
                        let (gi, go) = (ex.input.augment(aug), ex.output.augment(aug));
                        let (mut pad_r, mut pad_c) = (0, 0);
                        if is_train && i != no_aug_id {
                            let max_r = gi.rows.max(go.rows);
                            let max_c = gi.cols.max(go.cols);
                            // Bounds are >= 1: grids are at most 30 wide.
                            pad_r = self
                                .rng
                                .randint(0, (GRID_SIZE - max_r + 1) as u32)
                                .unwrap_or(0) as usize;
                            pad_c = self
                                .rng
                                .randint(0, (GRID_SIZE - max_c + 1) as u32)
                                .unwrap_or(0) as usize;
                        }
                        grid_to_seq(&gi, pad_r, pad_c, &mut inp);
                        grid_to_seq(&go, pad_r, pad_c, &mut out);
                        sink.push(&inp, &out)?;
                        example_id += 1;
                    }
                    puzzle_indices.push(example_id as i32);
                    let name = puzzle_name(&task.id, aug);
                    puzzle_identifiers.push(id_of.get(name.as_str()).copied().unwrap_or(0));
                }
                group_indices.push(puzzle_identifiers.len() as i32);
            }
            let total_puzzles = puzzle_identifiers.len();
            let meta = ArcSplitMetadata {
                num_puzzle_identifiers: num_identifiers,
                total_groups: group_indices.len() - 1,
                total_puzzles,
                mean_puzzle_examples: example_id as f64 / total_puzzles.max(1) as f64,
            };
            sink.finish(
                split,
                SplitIndices {
                    puzzle_identifiers,
                    puzzle_indices,
                    group_indices,
                },
                meta,
            )?;
        }
        Ok(())
    }
}

fn puzzle_name(id: &str, aug: &Augmentation) -> String {
    if *aug == Augmentation::IDENTITY {
        id.to_string()
    } else {
        aug.name(id)
    }
}

/// The per-puzzle and per-group index arrays of one split (`all__<field>.npy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitIndices {
    /// Identifier of each puzzle (`puzzle_identifiers`).
    pub puzzle_identifiers: Vec<i32>,
    /// First example of each puzzle, plus the total (`puzzle_indices`, length puzzles + 1).
    pub puzzle_indices: Vec<i32>,
    /// First puzzle of each group, plus the total (`group_indices`, length groups + 1).
    pub group_indices: Vec<i32>,
}

/// The split-dependent fields of `dataset.json` (the others are ARC constants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArcSplitMetadata {
    /// Number of identifiers including `<blank>` (the same in every split).
    pub num_puzzle_identifiers: usize,
    /// Groups in the split.
    pub total_groups: usize,
    /// Puzzles in the split.
    pub total_puzzles: usize,
    /// Examples per puzzle.
    pub mean_puzzle_examples: f64,
}

impl ArcSplitMetadata {
    /// The split's `dataset.json` (the ARC constants plus these counts).
    pub fn to_dataset_metadata(&self) -> DatasetMetadata {
        DatasetMetadata {
            pad_id: PAD as i32,
            ignore_label_id: Some(PAD as i32),
            blank_identifier_id: 0,
            vocab_size: VOCAB_SIZE as u32,
            seq_len: SEQ_LEN,
            num_puzzle_identifiers: self.num_puzzle_identifiers,
            total_groups: self.total_groups,
            mean_puzzle_examples: self.mean_puzzle_examples,
            total_puzzles: self.total_puzzles,
            sets: vec![SET_NAME.to_string()],
        }
    }
}

/// Receives a split's examples as they are produced.
pub trait SplitSink {
    /// A split starts; `total_examples` rows will follow.
    fn begin(&mut self, split: &str, total_examples: usize) -> Result<(), ArcError>;
    /// One example (input and label sequences of [`SEQ_LEN`] tokens).
    fn push(&mut self, input: &[u8; SEQ_LEN], label: &[u8; SEQ_LEN]) -> Result<(), ArcError>;
    /// The split ends with its index arrays and metadata.
    fn finish(
        &mut self,
        split: &str,
        indices: SplitIndices,
        meta: ArcSplitMetadata,
    ) -> Result<(), ArcError>;
}

/// One split held in memory (for tests and small builds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArcSplit {
    /// `train` or `test`.
    pub name: String,
    /// Inputs, `[examples, 900]` row major.
    pub inputs: Vec<u8>,
    /// Labels, `[examples, 900]` row major.
    pub labels: Vec<u8>,
    /// Index arrays.
    pub indices: SplitIndices,
    /// Metadata (`None` until the split is finished).
    pub meta: Option<ArcSplitMetadata>,
}

impl ArcSplit {
    /// Number of examples.
    pub fn num_examples(&self) -> usize {
        self.inputs.len() / SEQ_LEN
    }
}

/// A [`SplitSink`] keeping everything in memory.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Finished and current splits, in order.
    pub splits: Vec<ArcSplit>,
}

impl SplitSink for MemorySink {
    fn begin(&mut self, split: &str, total_examples: usize) -> Result<(), ArcError> {
        self.splits.push(ArcSplit {
            name: split.to_string(),
            inputs: Vec::with_capacity(total_examples * SEQ_LEN),
            labels: Vec::with_capacity(total_examples * SEQ_LEN),
            ..ArcSplit::default()
        });
        Ok(())
    }
    fn push(&mut self, input: &[u8; SEQ_LEN], label: &[u8; SEQ_LEN]) -> Result<(), ArcError> {
        let s = self
            .splits
            .last_mut()
            .ok_or_else(|| ArcError::Config("push before begin".into()))?;
        s.inputs.extend_from_slice(input);
        s.labels.extend_from_slice(label);
        Ok(())
    }
    fn finish(
        &mut self,
        _split: &str,
        indices: SplitIndices,
        meta: ArcSplitMetadata,
    ) -> Result<(), ArcError> {
        let s = self
            .splits
            .last_mut()
            .ok_or_else(|| ArcError::Config("finish before begin".into()))?;
        s.indices = indices;
        s.meta = Some(meta);
        Ok(())
    }
}

/// An ARC dataset built in memory.
#[derive(Debug, Clone)]
pub struct ArcDataset {
    /// The splits (`train`, then `test` when there is a test subset).
    pub splits: Vec<ArcSplit>,
    /// identifiers.json.
    pub identifiers: Vec<String>,
    /// The tasks of test_puzzles.json, in order.
    pub test_puzzles: Vec<ArcTask>,
    /// Puzzles whose augmentation group is not full, with their group size.
    pub incomplete_groups: Vec<(String, usize)>,
}

impl ArcDataset {
    /// The split named `name`.
    pub fn split(&self, name: &str) -> Option<&ArcSplit> {
        self.splits.iter().find(|s| s.name == name)
    }
}

/// Builds the dataset in memory (`config.output_dir` is ignored). About 1.8 KB per example:
/// use [`build_arc_dataset`] for large `num_aug`.
pub fn build_arc_in_memory(config: &ArcBuildConfig) -> Result<ArcDataset, ArcError> {
    let plan = ArcPlan::new(config)?;
    let identifiers = plan.identifiers.clone();
    let test_puzzles = plan.test_tasks().cloned().collect();
    let incomplete_groups = plan.incomplete_groups.clone();
    let mut sink = MemorySink::default();
    plan.emit(&mut sink)?;
    Ok(ArcDataset {
        splits: sink.splits,
        identifiers,
        test_puzzles,
        incomplete_groups,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing the reference layout
// ---------------------------------------------------------------------------------------------

/// A `.npy` file of `(rows, 900)` tokens written row by row.
struct NpyRowWriter {
    path: PathBuf,
    w: BufWriter<File>,
}

impl NpyRowWriter {
    fn create(path: PathBuf, rows: usize) -> Result<Self, ArcError> {
        let f = File::create(&path).map_err(io_err(&path))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(&numpy_header(u8::DESCR, &[rows, SEQ_LEN]))
            .map_err(io_err(&path))?;
        Ok(Self { path, w })
    }
    fn push(&mut self, row: &[u8; SEQ_LEN]) -> Result<(), ArcError> {
        self.w.write_all(row).map_err(io_err(&self.path))
    }
    fn finish(self) -> Result<(), ArcError> {
        let path = self.path;
        let f = self
            .w
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        f.sync_all().map_err(io_err(&path))
    }
}

/// A [`SplitSink`] streaming the splits into a [`DatasetWriter`]'s directory: inputs and
/// labels go to disk as they are produced, so memory stays small whatever `num_aug`.
struct DirSink<'a> {
    writer: &'a mut DatasetWriter,
    current: Option<(NpyRowWriter, NpyRowWriter)>,
}

impl SplitSink for DirSink<'_> {
    fn begin(&mut self, split: &str, total_examples: usize) -> Result<(), ArcError> {
        let dir = self.writer.tmp_dir().join(split);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let file = |field: &str| dir.join(format!("{SET_NAME}__{field}.npy"));
        self.current = Some((
            NpyRowWriter::create(file("inputs"), total_examples)?,
            NpyRowWriter::create(file("labels"), total_examples)?,
        ));
        Ok(())
    }
    fn push(&mut self, input: &[u8; SEQ_LEN], label: &[u8; SEQ_LEN]) -> Result<(), ArcError> {
        let (i, l) = self
            .current
            .as_mut()
            .ok_or_else(|| ArcError::Config("push before begin".into()))?;
        i.push(input)?;
        l.push(label)
    }
    fn finish(
        &mut self,
        split: &str,
        indices: SplitIndices,
        meta: ArcSplitMetadata,
    ) -> Result<(), ArcError> {
        let (inputs, labels) = self
            .current
            .take()
            .ok_or_else(|| ArcError::Config("finish before begin".into()))?;
        inputs.finish()?;
        labels.finish()?;
        let dir = self.writer.tmp_dir().join(split);
        for (field, v) in [
            ("puzzle_identifiers", &indices.puzzle_identifiers),
            ("puzzle_indices", &indices.puzzle_indices),
            ("group_indices", &indices.group_indices),
        ] {
            write_npy_file(&dir.join(format!("{SET_NAME}__{field}.npy")), &[v.len()], v)
                .map_err(LayoutError::from)?;
        }
        let json = meta.to_dataset_metadata().to_json()?;
        self.writer
            .write_text(&format!("{split}/{METADATA_FILE}"), &json)?;
        Ok(())
    }
}

/// What a build produced, for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcBuildSummary {
    /// Tasks read.
    pub total_tasks: usize,
    /// Identifiers including `<blank>`.
    pub num_identifiers: usize,
    /// Puzzles whose augmentation group is not full, with their group size.
    pub incomplete_groups: Vec<(String, usize)>,
}

/// Builds the dataset into `config.output_dir` in the reference layout, byte-identical to the
/// reference builder's output (see the module docs for the exceptions).
pub fn build_arc_dataset(config: &ArcBuildConfig) -> Result<ArcBuildSummary, ArcError> {
    let plan = ArcPlan::new(config)?;
    let mut writer = DatasetWriter::create(&config.output_dir, config.overwrite)?;
    let summary = ArcBuildSummary {
        total_tasks: plan.tasks.len(),
        num_identifiers: plan.identifiers.len(),
        incomplete_groups: plan.incomplete_groups.clone(),
    };
    writer.write_identifiers(&plan.identifiers)?;
    writer.write_text(TEST_PUZZLES_FILE, &test_puzzles_json(plan.test_tasks()))?;
    plan.emit(&mut DirSink {
        writer: &mut writer,
        current: None,
    })?;
    writer.commit()?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// Python-style JSON (json.dump defaults: ", " and ": " separators, ensure_ascii)
// ---------------------------------------------------------------------------------------------

/// Appends `s` as a JSON string the way Python's `json.dump` writes it (ensure_ascii).
pub(crate) fn push_py_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a grid as Python's `json.dump(grid.tolist())` writes it (`[]` for an empty grid).
pub(crate) fn push_py_grid(out: &mut String, g: &Grid) {
    out.push('[');
    for (r, row) in g.cells.chunks(g.cols.max(1)).enumerate() {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('[');
        for (c, v) in row.iter().enumerate() {
            if c > 0 {
                out.push_str(", ");
            }
            out.push(char::from(b'0' + v));
        }
        out.push(']');
    }
    out.push(']');
}

/// test_puzzles.json as the reference writes it: `{id: {"train": [{"input", "output"}..],
/// "test": [{"input", "output"}..]}}` in processing order.
pub fn test_puzzles_json<'a>(tasks: impl Iterator<Item = &'a ArcTask>) -> String {
    let mut out = String::from("{");
    for (i, t) in tasks.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_py_str(&mut out, &t.id);
        out.push_str(": {");
        let mut parts = [("train", &t.train), ("test", &t.test)];
        if t.test_first {
            parts.swap(0, 1);
        }
        for (k, (key, exs)) in parts.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("\"{key}\": ["));
            for (j, e) in exs.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                out.push_str("{\"input\": ");
                push_py_grid(&mut out, &e.input);
                out.push_str(", \"output\": ");
                push_py_grid(&mut out, &e.output);
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// Reads test_puzzles.json (written by this module or by the reference).
pub fn read_test_puzzles(path: &Path) -> Result<Vec<ArcTask>, ArcError> {
    let raw: Ordered<RawTask> = read_json(path)?;
    let mut tasks = Vec::with_capacity(raw.0.len());
    for (id, task) in raw.0 {
        let conv = |exs: &[RawExample], part: &str| -> Result<Vec<ArcExample>, ArcError> {
            exs.iter()
                .enumerate()
                .map(|(i, e)| {
                    let err = |field: String, msg: String| ArcError::Puzzle {
                        path: path.to_path_buf(),
                        puzzle: id.clone(),
                        field,
                        msg,
                    };
                    let input = Grid::from_rows(&e.input)
                        .map_err(|m| err(format!("{part}[{i}].input"), m))?;
                    let out = e
                        .output
                        .as_ref()
                        .ok_or_else(|| err(format!("{part}[{i}].output"), "missing".into()))?;
                    let output =
                        Grid::from_rows(out).map_err(|m| err(format!("{part}[{i}].output"), m))?;
                    Ok(ArcExample { input, output })
                })
                .collect()
        };
        let train = conv(&task.train, "train")?;
        let test = conv(&task.test, "test")?;
        tasks.push(ArcTask {
            id,
            train,
            test,
            test_first: task.test_first,
        });
    }
    Ok(tasks)
}
