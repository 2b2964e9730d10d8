//! The committed golden regression fixtures on the host (`tests/fixtures/golden/`, see its
//! README): today's engines regenerate every committed golden file byte for byte, so a change
//! of any kernel that alters one bit of one ACT step of the demo models (float, fixed with int8
//! weights, fixed with int16 weights, large SiLU tables and exact products) fails here, even
//! when it alters the host and the device alike (`golden_qemu.rs` checks the boards against the
//! same files).
//!
//! The files are written by the commands of the fixtures' README; when a change of the results
//! is intended, rerun them and commit the new files with the change.

mod golden_fixtures;

use golden_fixtures::{
    BOARD_BLANKS, BOARD_PUZZLES, BOARD_SEED, BOARD_STEPS, CALIB, CALIB_SEED, FixtureModel,
    PUZZLE_SEED, PUZZLES, board_model, board_puzzles_path, calib_path, csv, generated,
    generated_with, models, puzzles_path,
};
use trm_export::golden::{parse_golden, write_golden};
use trm_export::puzzles::PuzzleRow;
use trm_fw_app::HaltMode;
use trm_nostd::format::FIXED_I16_I16;
use trm_nostd::{DType, Model};

fn read_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed CSVs are the puzzles `golden_fixtures::generated` draws (the same generator
/// and seeds as ever), so the fixtures can be rebuilt from the code alone.
#[test]
fn fixture_puzzles_are_the_generated_ones() {
    assert_eq!(
        read_text(&puzzles_path()),
        csv(&generated(PUZZLES, PUZZLE_SEED)),
        "{}",
        puzzles_path().display()
    );
    assert_eq!(
        read_text(&calib_path()),
        csv(&generated(CALIB, CALIB_SEED)),
        "{}",
        calib_path().display()
    );
    assert_eq!(
        read_text(&board_puzzles_path()),
        csv(&generated_with(BOARD_PUZZLES, BOARD_SEED, BOARD_BLANKS)),
        "{}",
        board_puzzles_path().display()
    );
}

/// The int16-mixed fixture model is what its name says: int16 weights in some matrices (and
/// int8 in others), so the golden files cover both weight kernels.
#[test]
fn fixture_model_mixes_int8_and_int16_weights() {
    let fixture = &models()[2];
    let bytes = std::fs::read(&fixture.model).expect("fixture model");
    let model = Model::parse(&bytes).expect("parse");
    assert_eq!(model.scheme(), FIXED_I16_I16);
    let dtypes: Vec<DType> = model.tensors().map(|(_, t)| t.dtype).collect();
    assert!(dtypes.contains(&DType::I16) && dtypes.contains(&DType::I8));
}

/// Every committed golden file equals, byte for byte, the one the host engines write now.
#[test]
fn host_engines_reproduce_the_committed_golden_files() {
    let rows = generated(PUZZLES, PUZZLE_SEED);
    for fixture in models() {
        reproduces(&fixture, &rows, PUZZLES * 2);
    }
}

/// The real boards' default model (D=64, QAT int8) too, on its 40-blank puzzles.
#[test]
fn host_engines_reproduce_the_board_model_golden_file() {
    let rows = generated_with(BOARD_PUZZLES, BOARD_SEED, BOARD_BLANKS);
    reproduces(&board_model(), &rows, BOARD_PUZZLES * BOARD_STEPS);
}

/// `fixture`'s committed golden file has `steps` step lines (every ACT step) and equals what
/// the host engines write on `rows`.
fn reproduces(fixture: &FixtureModel, rows: &[PuzzleRow], steps: usize) {
    let bytes = std::fs::read(&fixture.model)
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.model.display()));
    let now = write_golden(&bytes, rows, HaltMode::AllSteps, 0).expect("host golden file");
    let committed = read_text(&fixture.golden);
    let g = parse_golden(&committed).expect("the committed golden file parses");
    assert_eq!(g.step_count(), steps, "every ACT step (halt=all)");
    if now != committed {
        let first = now
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b);
        match first {
            Some((i, (a, b))) => panic!(
                "{} differs from the host's output at line {}:\n  committed: {b}\n  now:       {a}",
                fixture.golden.display(),
                i + 1
            ),
            None => panic!(
                "{} differs from the host's output in length ({} vs {} lines)",
                fixture.golden.display(),
                committed.lines().count(),
                now.lines().count()
            ),
        }
    }
}
