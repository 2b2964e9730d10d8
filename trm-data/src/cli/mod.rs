//! `build-dataset`: the reference's `dataset/build_*_dataset.py` scripts as one command, on top
//! of the byte-compatible builders of this crate. It is this crate's `build-dataset` binary
//! (no libtorch needed) and `trm-train build-dataset` (the same arguments and code).
//!
//! | subcommand        | reference script / builder                                   |
//! |-------------------|--------------------------------------------------------------|
//! | `sudoku`          | `build_sudoku_dataset.py` / [`crate::sudoku`]                |
//! | `maze`            | `build_maze_dataset.py` / [`crate::maze`]                    |
//! | `arc`             | `build_arc_dataset.py` / [`crate::arc`]                      |
//! | `sudoku-generate` | (none) / [`crate::sudoku_gen`]: generated unique puzzles     |
//!
//! Option names and defaults follow the reference's `DataProcessConfig`s (`--output-dir`,
//! `--subsample-size`, `--num-aug`, ...). The reference downloads the Sudoku and Maze CSVs from
//! the Hugging Face hub; here they are local files (`--input-dir` with `train.csv`/`test.csv`).
//!
//! Every build is atomic (the builders write into a temporary directory and rename it into
//! place), so a failed build leaves no output. Before reading anything the command refuses an
//! existing output directory without `--overwrite`, and an output directory that holds one of
//! the inputs (overwriting it would delete them). A killed build's temporary directory
//! (`.<name>.tmp-<pid>-<n>` beside the output) is removed by the next build of the same output
//! once its process no longer runs, and reported on stderr.

mod args;
mod commands;
mod summary;

use std::time::Instant;

use anyhow::{Context, Result};

pub use args::{
    ArcArgs, BuildDatasetArgs, DatasetCommand, MazeArgs, OutputFlags, SudokuArgs,
    SudokuGenerateArgs,
};
use summary::DatasetSummary;

/// Runs `build-dataset` and prints its summary paragraph on stdout.
pub fn run(args: BuildDatasetArgs) -> Result<()> {
    let start = Instant::now();
    let (name, out, notes) = match args.kind {
        DatasetCommand::Sudoku(a) => ("sudoku", a.output_dir.clone(), commands::sudoku(a)?),
        DatasetCommand::Maze(a) => ("maze", a.output_dir.clone(), commands::maze(a)?),
        DatasetCommand::Arc(a) => ("arc", a.output_dir.clone(), commands::arc(a)?),
        DatasetCommand::SudokuGenerate(a) => (
            "sudoku-generate",
            a.output_dir.clone(),
            commands::sudoku_generate(a)?,
        ),
    };
    let summary = DatasetSummary::scan(&out)
        .with_context(|| format!("reading back the dataset written to {}", out.display()))?;
    println!(
        "{}",
        summary.paragraph(name, &out, &notes, start.elapsed().as_secs_f64())
    );
    Ok(())
}

/// The error and its causes, `: `-separated (our context first, then the builder's error with
/// its file, line and field). A cause is left out when the message so far already contains it:
/// several error types print their source (or their source's whole chain) inside their own
/// message, so each cause is printed once.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("disk full")
        }
    }
    impl std::error::Error for Inner {}

    #[derive(Debug)]
    struct Outer(Inner);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a.csv: {}", self.0)
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// An error printing its source's whole chain (`{:#}` of an `anyhow::Error`) and also
    /// giving that error as its source, as trm-train's reference-import error does.
    #[derive(Debug)]
    struct Wrapper(anyhow::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reference import: {:#}", self.0)
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        let e = anyhow::Error::new(Outer(Inner)).context("build");
        assert_eq!(error_chain(&e), "build: a.csv: disk full");
        let e = anyhow::Error::new(Inner).context("build");
        assert_eq!(error_chain(&e), "build: disk full");
        // The chain inside a message: "reading all_config.yaml" and "disk full" were printed
        // twice before (the message ended with the last cause, not with the next one).
        let inner = anyhow::Error::new(Inner).context("reading all_config.yaml");
        let e = anyhow::Error::new(Wrapper(inner)).context("evaluate");
        assert_eq!(
            error_chain(&e),
            "evaluate: reference import: reading all_config.yaml: disk full"
        );
    }
}
