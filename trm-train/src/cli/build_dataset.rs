//! `trm-train build-dataset`: the reference's `dataset/build_*_dataset.py` scripts as one
//! command, on top of the byte-compatible builders of `trm-data`.
//!
//! | subcommand        | reference script / builder                                   |
//! |-------------------|--------------------------------------------------------------|
//! | `sudoku`          | `build_sudoku_dataset.py` / [`trm_data::sudoku`]             |
//! | `maze`            | `build_maze_dataset.py` / [`trm_data::maze`]                 |
//! | `arc`             | `build_arc_dataset.py` / [`trm_data::arc`]                   |
//! | `sudoku-generate` | (none) / [`trm_data::sudoku_gen`]: generated unique puzzles  |
//!
//! Option names and defaults follow the reference's `DataProcessConfig`s (`--output-dir`,
//! `--subsample-size`, `--num-aug`, ...). The reference downloads the Sudoku and Maze CSVs from
//! the Hugging Face hub; here they are local files (`--input-dir` with `train.csv`/`test.csv`).
//!
//! Every build is atomic (the builders write into a temporary directory and rename it into
//! place), so a failed build leaves no output. Before reading anything the command refuses an
//! existing output directory without `--overwrite`, and an output directory that holds one of
//! the inputs (overwriting it would delete them).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Subcommand};
use trm_data::arc::{ArcBuildConfig, build_arc_dataset};
use trm_data::layout::DatasetMetadata;
use trm_data::maze::{MazeOptions, MazeSource};
use trm_data::npy::read_npy_header;
use trm_data::sudoku::{SudokuOptions, SudokuSource};
use trm_data::sudoku_gen::MAX_BLANKS;

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
    #[command(flatten)]
    pub flags: OutputFlags,
}

/// `build-dataset arc`.
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

/// Runs `build-dataset` and prints its summary paragraph on stdout.
pub fn run(args: BuildDatasetArgs) -> Result<()> {
    let start = Instant::now();
    let (name, out, notes) = match args.kind {
        DatasetCommand::Sudoku(a) => ("sudoku", a.output_dir.clone(), sudoku(a)?),
        DatasetCommand::Maze(a) => ("maze", a.output_dir.clone(), maze(a)?),
        DatasetCommand::Arc(a) => ("arc", a.output_dir.clone(), arc(a)?),
        DatasetCommand::SudokuGenerate(a) => {
            ("sudoku-generate", a.output_dir.clone(), sudoku_generate(a)?)
        }
    };
    let summary = DatasetSummary::scan(&out)
        .with_context(|| format!("reading back the dataset written to {}", out.display()))?;
    println!(
        "{}",
        summary.paragraph(name, &out, &notes, start.elapsed().as_secs_f64())
    );
    Ok(())
}

/// Checks, before any input is read, that the build may write `out`: it must not exist unless
/// `overwrite`, must be a directory if it does, and must not hold any of `inputs`.
fn check_output(out: &Path, overwrite: bool, inputs: &[PathBuf]) -> Result<()> {
    if out.file_name().is_none() {
        bail!(
            "--output-dir {}: not a directory name (it must end in a name, e.g. data/sudoku)",
            out.display()
        );
    }
    if !out.exists() {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "--output-dir {}: already exists (pass --overwrite to replace it)",
            out.display()
        );
    }
    if !out.is_dir() {
        bail!(
            "--output-dir {}: exists and is not a directory",
            out.display()
        );
    }
    let out_abs = out
        .canonicalize()
        .with_context(|| format!("--output-dir {}", out.display()))?;
    for input in inputs {
        // An input that does not exist is reported by the builder, with its path.
        if let Ok(abs) = input.canonicalize()
            && abs.starts_with(&out_abs)
        {
            bail!(
                "--output-dir {} holds the input {}: --overwrite would delete it",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

fn sudoku(a: SudokuArgs) -> Result<Vec<String>> {
    let source = match (a.input_dir, a.train_csv, a.test_csv) {
        (Some(dir), _, _) => SudokuSource::from_dir(&dir),
        (None, Some(train), Some(test)) => SudokuSource { train, test },
        // clap requires --input-dir or both CSVs.
        _ => bail!("give --input-dir, or --train-csv and --test-csv"),
    };
    check_output(
        &a.output_dir,
        a.flags.overwrite,
        &[source.train.clone(), source.test.clone()],
    )?;
    let opts = SudokuOptions {
        subsample_size: a.subsample_size,
        min_difficulty: a.min_difficulty,
        num_aug: a.num_aug,
        seed: a.seed,
        overwrite: a.flags.overwrite,
        progress: !a.flags.no_progress,
        compact_tokens: a.compact_tokens,
        keep_provenance: false,
    };
    trm_data::sudoku::build_dataset(&source, &a.output_dir, &opts).with_context(|| {
        format!(
            "build-dataset sudoku ({} + {} -> {})",
            source.train.display(),
            source.test.display(),
            a.output_dir.display()
        )
    })?;
    Ok(vec![format!("seed {}", a.seed)])
}

fn maze(a: MazeArgs) -> Result<Vec<String>> {
    let source = MazeSource::from_dir(&a.input_dir);
    check_output(
        &a.output_dir,
        a.flags.overwrite,
        &[source.train.clone(), source.test.clone()],
    )?;
    let opts = MazeOptions {
        subsample_size: a.subsample_size,
        aug: a.aug,
        seed: a.seed,
        overwrite: a.flags.overwrite,
        progress: !a.flags.no_progress,
    };
    trm_data::maze::build_dataset(&source, &a.output_dir, &opts).with_context(|| {
        format!(
            "build-dataset maze ({} -> {})",
            a.input_dir.display(),
            a.output_dir.display()
        )
    })?;
    Ok(vec![format!("seed {}", a.seed)])
}

fn arc(a: ArcArgs) -> Result<Vec<String>> {
    let inputs: Vec<PathBuf> = a
        .subsets
        .iter()
        .flat_map(|s| {
            ["challenges", "solutions"]
                .map(|kind| PathBuf::from(format!("{}_{s}_{kind}.json", a.input_file_prefix)))
        })
        .collect();
    check_output(&a.output_dir, a.flags.overwrite, &inputs)?;
    let config = ArcBuildConfig {
        input_file_prefix: a.input_file_prefix.clone(),
        output_dir: a.output_dir.clone(),
        subsets: a.subsets.clone(),
        test_set_name: a.test_set_name.clone(),
        test_set_name2: a.test_set_name2.clone(),
        seed: a.seed,
        num_aug: a.num_aug,
        puzzle_identifiers_start: a.puzzle_identifiers_start,
        overwrite: a.flags.overwrite,
    };
    let built = build_arc_dataset(&config).with_context(|| {
        format!(
            "build-dataset arc ({}_{{{}}}_*.json -> {})",
            a.input_file_prefix,
            a.subsets.join(","),
            a.output_dir.display()
        )
    })?;
    let mut notes = vec![format!(
        "{} tasks from {} (test set {}), {} augmentations a puzzle, seed {}",
        built.total_tasks,
        a.subsets.join("+"),
        a.test_set_name,
        a.num_aug,
        a.seed
    )];
    if !built.incomplete_groups.is_empty() {
        let mut note = format!(
            "{} puzzles got fewer than {} augmentations (every extra draw was a duplicate)",
            built.incomplete_groups.len(),
            a.num_aug
        );
        const SHOWN: usize = 5;
        let shown: Vec<String> = built
            .incomplete_groups
            .iter()
            .take(SHOWN)
            .map(|(id, size)| format!("{id}: {}", size.saturating_sub(1)))
            .collect();
        let _ = write!(note, ": {}", shown.join(", "));
        if built.incomplete_groups.len() > SHOWN {
            note.push_str(", ...");
        }
        notes.push(note);
    }
    Ok(notes)
}

fn sudoku_generate(a: SudokuGenerateArgs) -> Result<Vec<String>> {
    check_output(&a.output_dir, a.flags.overwrite, &[])?;
    let opts = SudokuOptions {
        num_aug: a.num_aug,
        seed: a.seed,
        overwrite: a.flags.overwrite,
        progress: !a.flags.no_progress,
        compact_tokens: a.compact_tokens,
        ..SudokuOptions::default()
    };
    trm_data::sudoku_gen::generate_dataset(&a.output_dir, a.n_train, a.n_test, a.blanks, &opts)
        .with_context(|| {
            format!(
                "build-dataset sudoku-generate ({} + {} puzzles with {} blanks -> {})",
                a.n_train,
                a.n_test,
                a.blanks,
                a.output_dir.display()
            )
        })?;
    Ok(vec![format!("{} blanks, seed {}", a.blanks, a.seed)])
}

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
struct DatasetSummary {
    splits: Vec<SplitSummary>,
    files: usize,
    bytes: u64,
}

impl DatasetSummary {
    fn scan(out: &Path) -> Result<Self> {
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

    fn paragraph(&self, name: &str, out: &Path, notes: &[String], seconds: f64) -> String {
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

    #[test]
    fn blanks_are_bounded() {
        assert_eq!(blanks("0"), Ok(0));
        assert_eq!(blanks(&MAX_BLANKS.to_string()), Ok(MAX_BLANKS));
        assert!(blanks(&(MAX_BLANKS + 1).to_string()).is_err());
        assert!(blanks("-1").is_err());
    }

    #[test]
    fn output_inside_check_refuses_inputs_in_the_output() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("out");
        fs::create_dir(&out)?;
        let input = out.join("train.csv");
        fs::write(&input, "x")?;
        let outside = dir.path().join("test.csv");
        fs::write(&outside, "x")?;
        // Existing without --overwrite.
        assert!(check_output(&out, false, std::slice::from_ref(&outside)).is_err());
        // With --overwrite: fine unless an input lies inside.
        check_output(&out, true, std::slice::from_ref(&outside))?;
        let err = check_output(&out, true, &[outside, input]).err();
        assert!(err.is_some_and(|e| e.to_string().contains("would delete")));
        // A directory that does not exist yet is always fine.
        check_output(&dir.path().join("new"), false, &[])?;
        Ok(())
    }
}
