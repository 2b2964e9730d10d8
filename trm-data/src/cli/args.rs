//! The command line of `build-dataset`: its subcommands, options and their checks.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

use crate::sudoku_gen::MAX_BLANKS;

/// Seed of the Sudoku and Maze builders when `--seed` is not given. The reference draws from
/// NumPy's unseeded global RNG, so it has no default to copy; ours is fixed so that a build is
/// reproducible.
const DEFAULT_SEED: u64 = 0;

/// Arguments of `build-dataset`.
#[derive(Debug, Args)]
pub struct BuildDatasetArgs {
    /// Which dataset to build.
    #[command(subcommand)]
    pub kind: DatasetCommand,
}

/// The datasets `build-dataset` knows.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Sudoku-Extreme CSVs -> dataset (reference dataset/build_sudoku_dataset.py).
    Sudoku(SudokuArgs),
    /// Maze-Hard CSVs -> dataset (reference dataset/build_maze_dataset.py).
    Maze(MazeArgs),
    /// ARC-AGI Kaggle JSON -> dataset, byte-identical to the reference for the same seed
    /// (reference dataset/build_arc_dataset.py).
    Arc(ArcArgs),
    /// Generates Sudoku puzzles with a unique solution and writes them as a dataset.
    SudokuGenerate(SudokuGenerateArgs),
}

/// Flags every subcommand has.
#[derive(Debug, Args)]
pub struct OutputFlags {
    /// Replace the output directory if it exists (only once the new dataset is complete).
    #[arg(long)]
    pub overwrite: bool,
    /// Do not draw progress bars (they are only drawn when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// `build-dataset sudoku`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["input_dir", "train_csv"])))]
pub struct SudokuArgs {
    /// Folder holding train.csv and test.csv (columns source,question,answer,rating as in the
    /// Hugging Face dataset sapientinc/sudoku-extreme).
    #[arg(long, value_name = "DIR", conflicts_with = "test_csv")]
    pub input_dir: Option<PathBuf>,
    /// The train CSV (instead of --input-dir; needs --test-csv).
    #[arg(long, value_name = "FILE", requires = "test_csv")]
    pub train_csv: Option<PathBuf>,
    /// The test CSV (instead of --input-dir; needs --train-csv).
    #[arg(long, value_name = "FILE", requires = "train_csv")]
    pub test_csv: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "data/sudoku-extreme-full")]
    pub output_dir: PathBuf,
    /// Keep this many randomly chosen train puzzles (test is never subsampled).
    #[arg(long, value_name = "N", value_parser = positive_usize)]
    pub subsample_size: Option<usize>,
    /// Keep only puzzles rated at least this (both splits; needs a rating column).
    #[arg(long, value_name = "RATING")]
    pub min_difficulty: Option<u32>,
    /// Augmentations (transpose, band/row/stack/column and digit permutations) per train puzzle.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub num_aug: usize,
    /// Seed of subsampling and augmentation.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Store augmented train tokens as uint8 instead of the reference's int64 (8x smaller).
    #[arg(long)]
    pub compact_tokens: bool,
    /// --overwrite, --no-progress.
    #[command(flatten)]
    pub flags: OutputFlags,
}

/// `build-dataset maze`.
#[derive(Debug, Args)]
pub struct MazeArgs {
    /// Folder holding train.csv and test.csv (columns question,answer; Hugging Face dataset
    /// sapientinc/maze-30x30-hard-1k).
    #[arg(long, value_name = "DIR")]
    pub input_dir: PathBuf,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "data/maze-30x30-hard-1k")]
    pub output_dir: PathBuf,
    /// Add the 7 other dihedral transforms of every train maze.
    #[arg(long)]
    pub aug: bool,
    /// Keep this many randomly chosen train mazes.
    #[arg(long, value_name = "N", value_parser = positive_usize)]
    pub subsample_size: Option<usize>,
    /// Seed of subsampling.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// --overwrite, --no-progress.
    #[command(flatten)]
    pub flags: OutputFlags,
}

/// `build-dataset arc`.
// The field docs are the `--help` text, where `<PREFIX>` and `<blank>` are meant literally.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct ArcArgs {
    /// Path prefix of the Kaggle JSON files: <PREFIX>_<subset>_challenges.json and
    /// <PREFIX>_<subset>_solutions.json.
    #[arg(long, value_name = "PREFIX")]
    pub input_file_prefix: String,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Subsets to read, in order (e.g. training evaluation concept).
    #[arg(long, value_name = "SUBSET", num_args = 1.., required = true)]
    pub subsets: Vec<String>,
    /// The subset whose test examples form the test split (e.g. evaluation).
    #[arg(long, value_name = "SUBSET")]
    pub test_set_name: String,
    /// A second test subset.
    #[arg(long, value_name = "SUBSET", default_value = "your_test_set")]
    pub test_set_name2: String,
    /// Seed of NumPy's legacy RNG, as the reference (0..=4294967295).
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Augmentations per puzzle (dihedral transform and colour permutation).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub num_aug: usize,
    /// First puzzle identifier (0 is <blank>; more than 1 leaves room for other datasets).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = positive_u32)]
    pub puzzle_identifiers_start: u32,
    /// --overwrite, --no-progress.
    #[command(flatten)]
    pub flags: OutputFlags,
}

/// `build-dataset sudoku-generate`.
#[derive(Debug, Args)]
pub struct SudokuGenerateArgs {
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    /// Number of train puzzles.
    #[arg(long = "train", value_name = "N", value_parser = positive_usize)]
    pub n_train: usize,
    /// Number of test puzzles.
    #[arg(long = "test", value_name = "N", value_parser = positive_usize)]
    pub n_test: usize,
    /// Blanks per puzzle (0..=64): the difficulty; 8 is trivial, 50-60 is hard.
    #[arg(long, value_name = "K", value_parser = blanks)]
    pub blanks: usize,
    /// Seed of generation (train and test use different streams of it) and augmentation.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Augmentations per train puzzle, as `build-dataset sudoku --num-aug`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub num_aug: usize,
    /// Store augmented train tokens as uint8 instead of int64.
    #[arg(long)]
    pub compact_tokens: bool,
    /// --overwrite, --no-progress.
    #[command(flatten)]
    pub flags: OutputFlags,
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn positive_u32(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be at least 1 (identifier 0 is <blank>)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn blanks(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n > MAX_BLANKS {
        return Err(format!(
            "{n} blanks: a Sudoku with a unique solution has at most {MAX_BLANKS} (17 givens)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_are_bounded() {
        assert_eq!(blanks("0"), Ok(0));
        assert_eq!(blanks(&MAX_BLANKS.to_string()), Ok(MAX_BLANKS));
        assert!(blanks(&(MAX_BLANKS + 1).to_string()).is_err());
        assert!(blanks("-1").is_err());
    }
}
