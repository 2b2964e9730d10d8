//! `trm-train`: the command-line front of the libtorch TRM trainer.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use trm_train::device::DeviceChoice;
use trm_train::info::LibtorchInfo;

use crate::cli::build_dataset::{self, BuildDatasetArgs};

/// Train Tiny Recursive Models with libtorch.
#[derive(Debug, Parser)]
#[command(name = "trm-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the libtorch in use: versions, CUDA and cuDNN availability, device count, threads.
    Info {
        /// Also resolve this device request and print the result (auto, cpu, cuda, cuda:N).
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Build a dataset in the reference layout (Sudoku, Maze, ARC, generated Sudoku).
    BuildDataset(BuildDatasetArgs),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { device } => {
            println!("{}", LibtorchInfo::query());
            println!("device ({device}):      {:?}", device.resolve()?);
        }
        Command::BuildDataset(args) => build_dataset::run(args)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    // Usage errors exit with clap's status 2; failures of the command itself with 1.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated (our context first, then the builder's error with
/// its file, line and field). A cause is left out when the message before it already ends with
/// it: several error types print their source inside their own message.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.ends_with(&text) {
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

    #[test]
    fn repeated_causes_are_printed_once() {
        let e = anyhow::Error::new(Outer(Inner)).context("build");
        assert_eq!(error_chain(&e), "build: a.csv: disk full");
        let e = anyhow::Error::new(Inner).context("build");
        assert_eq!(error_chain(&e), "build: disk full");
    }
}
