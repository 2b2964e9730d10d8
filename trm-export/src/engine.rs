//! The host side of trm-nostd's [`AnyEngine`] (the engine of a `.trm` model's numeric scheme):
//! an owned arena for it, and the check that a model is a Sudoku model the firmware app accepts.

use anyhow::bail;
use trm_nostd::sudoku::{self, CELLS};
use trm_nostd::{AnyEngine, Model};

/// An f32 arena for `model`'s engine ([`AnyEngine::new`]), of the size with which it runs
/// fastest ([`AnyEngine::arena_len_fast`]; results are identical for any size).
pub fn arena_for(model: &Model<'_>) -> Vec<f32> {
    vec![0.0; AnyEngine::arena_len_fast(model)]
}

/// Checks that `model` is a Sudoku model the firmware app accepts (81 cells, the 11-token
/// vocabulary at least), naming `what` (e.g. the command-line option) in the error.
pub fn check_sudoku_model(model: &Model<'_>, what: &str) -> anyhow::Result<()> {
    let c = model.config();
    if c.seq_len as usize != CELLS || (c.vocab_size as usize) < sudoku::VOCAB {
        bail!(
            "{what}: not a Sudoku model (seq_len {}, vocab {}; expected seq_len {CELLS}, vocab >= {})",
            c.seq_len,
            c.vocab_size,
            sudoku::VOCAB
        );
    }
    Ok(())
}
