//! The committed golden regression fixtures (`tests/fixtures/golden/`, see its README): the
//! puzzles, the three models and their golden files, shared by `golden_host.rs` (the host
//! engines against the committed files) and `golden_qemu.rs` (the emulated boards against the
//! same files).
#![allow(dead_code)]

use std::path::PathBuf;
use trm_data::sudoku_gen::SudokuGenerator;
use trm_export::puzzles::PuzzleRow;
use trm_export::quantize::QuantizeOptions;

/// Puzzles solved per model.
pub const PUZZLES: usize = 6;
/// Seed of the solved puzzles (6 blanks each, the demo model's task).
pub const PUZZLE_SEED: u64 = 20_261_129;
/// Calibration puzzles of the int16-mixed model.
pub const CALIB: usize = 16;
/// Seed of the calibration puzzles (not those solved).
pub const CALIB_SEED: u64 = 77;
/// Puzzles solved by the real boards' default model ([`board_model`]).
pub const BOARD_PUZZLES: usize = 2;
/// Seed of those puzzles.
pub const BOARD_SEED: u64 = 20_261_206;
/// Blanks of those puzzles (the held-out set the model's target is measured on has 40).
pub const BOARD_BLANKS: usize = 40;
/// ACT steps of the board model (its `halt_max_steps`; the golden file has every one).
pub const BOARD_STEPS: usize = 8;

/// `tests/fixtures/golden/`.
pub fn fixture_dir() -> PathBuf {
    trm_tests::workspace_root().join("tests/fixtures/golden")
}

/// One model of the fixtures: its file and its committed golden file.
#[derive(Debug, Clone)]
pub struct FixtureModel {
    /// The `.trm` file.
    pub model: PathBuf,
    /// Its golden file, written by `trm-export golden` (`write_golden`) on [`puzzles_csv`]'s
    /// puzzles with `--halt all`.
    pub golden: PathBuf,
}

/// The three models, in the order the firmware runs them: the float demo model, the fixed
/// demo model (int8 weights), and the float demo model quantized with every precision option
/// ([`int16_mixed_options`]; the file is committed with the fixtures, so the golden file does
/// not depend on the quantizer's later changes).
pub fn models() -> Vec<FixtureModel> {
    let demo = trm_tests::workspace_root().join("firmware-examples/models");
    let fixtures = fixture_dir();
    let entry = |model: PathBuf, name: &str| FixtureModel {
        model,
        golden: fixtures.join(format!("golden-{name}.txt")),
    };
    vec![
        entry(demo.join("sudoku-d32-f32.trm"), "sudoku-d32-f32"),
        entry(demo.join("sudoku-d32-fixed.trm"), "sudoku-d32-fixed"),
        entry(
            fixtures.join("sudoku-d32-fixed-i16mix.trm"),
            "sudoku-d32-fixed-i16mix",
        ),
    ]
}

/// The real boards' default model (`firmware-examples/models/sudoku-d64-fixed.trm`: D=64, 2
/// layers, 8 ACT steps, QAT int8; `scripts/demo-models.sh board`) and its golden file on
/// [`board_puzzles_path`]'s [`BOARD_PUZZLES`] puzzles of [`BOARD_BLANKS`] blanks.
pub fn board_model() -> FixtureModel {
    FixtureModel {
        model: trm_tests::workspace_root().join("firmware-examples/models/sudoku-d64-fixed.trm"),
        golden: fixture_dir().join("golden-sudoku-d64-fixed.txt"),
    }
}

/// The board model's puzzles, committed as `board-puzzles.csv`.
pub fn board_puzzles_path() -> PathBuf {
    fixture_dir().join("board-puzzles.csv")
}

/// The int16-mixed model's quantization: int16 weights for the mixer and heads (int8 for the
/// channel SwiGLU), 4097-knot SiLU tables, exact SwiGLU products (`trm-export quantize
/// --int16-weights mixer,heads --silu-knots 4097 --exact-products`), calibrated on
/// [`CALIB`] puzzles of [`CALIB_SEED`].
pub fn int16_mixed_options() -> QuantizeOptions {
    QuantizeOptions {
        int16: "mixer,heads".parse().expect("groups"),
        silu_knots: 4097,
        exact_products: true,
        ..QuantizeOptions::default()
    }
}

/// `n` generated 6-blank puzzles with their solutions, named `gen0`, `gen1`, ...
pub fn generated(n: usize, seed: u64) -> Vec<PuzzleRow> {
    generated_with(n, seed, 6)
}

/// `n` generated puzzles of `blanks` blanks with their solutions, named `gen0`, `gen1`, ...
pub fn generated_with(n: usize, seed: u64, blanks: usize) -> Vec<PuzzleRow> {
    let mut generator = SudokuGenerator::new(seed, blanks).expect("generator");
    let digits = |g: &[u8; 81]| -> String {
        g.iter()
            .map(|&d| if d == 0 { '.' } else { char::from(b'0' + d) })
            .collect()
    };
    (0..n)
        .map(|i| {
            let g = generator.next_puzzle().expect("puzzle");
            PuzzleRow {
                name: format!("gen{i}"),
                question: digits(&g.puzzle),
                answer: Some(digits(&g.solution)),
                puzzle_id: 0,
            }
        })
        .collect()
}

/// The CSV of `rows` (`source,question,answer,rating`, the layout the firmware build and
/// `trm-export --puzzles` read).
pub fn csv(rows: &[PuzzleRow]) -> String {
    let mut csv = String::from("source,question,answer,rating\n");
    for r in rows {
        let answer = r.answer.as_deref().unwrap_or_default();
        csv.push_str(&format!("{},{},{answer},0\n", r.name, r.question));
    }
    csv
}

/// The solved puzzles' CSV, committed as `puzzles.csv`.
pub fn puzzles_path() -> PathBuf {
    fixture_dir().join("puzzles.csv")
}

/// The calibration puzzles' CSV, committed as `calib.csv`.
pub fn calib_path() -> PathBuf {
    fixture_dir().join("calib.csv")
}
