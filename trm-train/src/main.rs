//! `trm-train`: the command-line front of the libtorch TRM trainer.

use anyhow::Result;
use clap::{Parser, Subcommand};
use trm_train::device::DeviceChoice;
use trm_train::info::LibtorchInfo;

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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info { device } => {
            println!("{}", LibtorchInfo::query());
            println!("device ({device}):      {:?}", device.resolve()?);
        }
    }
    Ok(())
}
