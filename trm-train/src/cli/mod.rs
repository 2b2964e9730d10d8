//! Subcommands of the `trm-train` binary that are more than a few lines (`build-dataset` is
//! [`trm_data::cli`]).

pub mod launch;
