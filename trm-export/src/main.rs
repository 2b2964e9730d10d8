//! `trm-export`: converts TRM checkpoints into `.trm` model files.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use trm_export::reference::{ImportOptions, reference_to_trm_with};
use trm_nostd::DType;

/// Converts TRM checkpoints into `.trm` model files.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Storage type of the weights in the written file.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FloatType {
    F32,
    F16,
    Bf16,
}

impl From<FloatType> for DType {
    fn from(t: FloatType) -> Self {
        match t {
            FloatType::F32 => DType::F32,
            FloatType::F16 => DType::F16,
            FloatType::Bf16 => DType::BF16,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Imports a reference (SamsungSAILMontreal/TinyRecursiveModels) checkpoint: a folder with
    /// `all_config.yaml` and `step_N` files (the latest is read), or one `step_N` file.
    ImportReference {
        /// Checkpoint folder or file.
        path: PathBuf,
        /// Output `.trm` file.
        #[arg(short, long)]
        output: PathBuf,
        /// Storage type of the weights.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: FloatType,
        /// Puzzle tokens per example, when the dataset's dataset.json is not found and the
        /// weights do not tell (attention models).
        #[arg(long)]
        seq_len: Option<u32>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::ImportReference {
            path,
            output,
            dtype,
            seq_len,
        } => {
            let bytes = reference_to_trm_with(&path, dtype.into(), &ImportOptions { seq_len })?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({} bytes)", output.display(), bytes.len());
        }
    }
    Ok(())
}
