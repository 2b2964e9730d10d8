//! Puts `memory.x` where the linker finds it and generates `embedded.rs` (the models, puzzles
//! and golden files the firmware carries, chosen by `TRM_*` variables: see `trm-fw-embed`).
//! Without `TRM_MODEL` the project's D=32 fixed-point Sudoku model is embedded.

fn main() {
    trm_fw_embed::build_board(&trm_fw_embed::BoardBuild {
        model_region: "FLASH",
        default_model: Some("../models/sudoku-d64-fixed.trm"),
    });
}
