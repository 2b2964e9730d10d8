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
//!
//! # Where the code lives
//!
//! `rng.rs` (NumPy's RNG), `grid.rs` (grids, dihedral transforms, colour maps, augmented
//! names), `sequence.rs` (grids as 900 tokens and back), `kaggle.rs` (the input JSON),
//! `plan.rs` (shuffles, augmentation draws, identifiers, the emission order), `memory.rs` and
//! `write.rs` (building in memory, into a directory), `py_json.rs` (test_puzzles.json). Their
//! public items are re-exported here.

mod grid;
mod kaggle;
mod memory;
mod plan;
mod py_json;
mod rng;
mod sequence;
mod write;

use std::path::{Path, PathBuf};

use crate::layout::LayoutError;

pub use grid::{Augmentation, Grid, inverse_dihedral_id};
pub use kaggle::{ArcExample, ArcTask, challenges_path, load_subset, solutions_path};
pub use memory::{ArcDataset, ArcSplit, MemorySink, build_arc_in_memory};
pub use plan::{ArcBuildConfig, ArcPlan, ArcSplitMetadata, SPLITS, SplitIndices, SplitSink};
pub(crate) use py_json::{push_py_grid, push_py_str};
pub use py_json::{read_test_puzzles, test_puzzles_json};
pub use rng::NumpyLegacyRng;
pub use sequence::{crop_seq, grid_to_seq};
pub use write::{ArcBuildSummary, build_arc_dataset};

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
