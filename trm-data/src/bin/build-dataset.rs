//! `build-dataset`: builds a dataset in the reference layout (Sudoku, Maze, ARC, generated
//! Sudoku) without libtorch. The same command as `trm-train build-dataset`: see
//! [`trm_data::cli`].

use std::process::ExitCode;

use clap::Parser;
use trm_data::cli::{self, BuildDatasetArgs};

/// Build a dataset in the reference layout (Sudoku, Maze, ARC, generated Sudoku).
#[derive(Debug, Parser)]
#[command(name = "build-dataset", version)]
struct Cli {
    #[command(flatten)]
    args: BuildDatasetArgs,
}

fn main() -> ExitCode {
    // Usage errors exit with clap's status 2; failures of the build itself with 1.
    match cli::run(Cli::parse().args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
