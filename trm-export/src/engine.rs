//! The host side of trm-nostd's [`AnyEngine`] (the engine of a `.trm` model's numeric scheme):
//! an owned arena for it.

use trm_nostd::{AnyEngine, Model};

/// An f32 arena for `model`'s engine ([`AnyEngine::new`]), of the size with which it runs
/// fastest ([`AnyEngine::arena_len_fast`]; results are identical for any size).
pub fn arena_for(model: &Model<'_>) -> Vec<f32> {
    vec![0.0; AnyEngine::arena_len_fast(model)]
}
