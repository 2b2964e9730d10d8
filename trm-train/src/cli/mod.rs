//! Subcommands of the `trm-train` binary that are more than a few lines.

pub mod build_dataset;
pub mod launch;
