//! Golden files, host vs microcontroller: the committed regression fixtures
//! (`tests/fixtures/golden/`, see its README) run on the emulated boards. The fixtures are the
//! project's demo models (`firmware-examples/models/sudoku-d32-{f32,fixed}.trm`, trained and
//! exported by `scripts/demo-models.sh`), a third model quantized from the float demo model with
//! every precision option (int16 weights for the mixer and heads, int8 for the rest; 4097-knot
//! SiLU tables; exact SwiGLU products), six generated Sudoku puzzles and the golden file of each
//! model on them (written by `trm-export golden`, i.e. `trm_export::golden::write_golden`;
//! `golden_host.rs` checks that the host engines still write them byte for byte). The QEMU
//! firmware embeds the models and the committed golden files (`TRM_MODEL`, `TRM_GOLDEN`) and
//! checks its own per-ACT-step digests of y and z, its q_halt bits, its final tokens and its
//! predictions against them on the device; the test also compares the device's console output
//! with the golden files here, line by line. So a kernel change that alters the host and the
//! device alike still fails.
//!
//! - `golden_mps2` (Cortex-M4F, `thumbv7em-none-eabihf`, the fixed models through the DSP
//!   kernels) and `golden_riscv32` (RV32IMAFC): the three models match their committed golden
//!   files bit for bit.
//! - `golden_board_model_mps2` (Cortex-M4F): the real boards' default model
//!   (`firmware-examples/models/sudoku-d64-fixed.trm`, D=64, 8 ACT steps, QAT int8) matches its
//!   golden file on two 40-blank puzzles.
//! - `golden_mismatch_fails` (Cortex-M4F): a golden file with one digit of one y digest changed
//!   makes the firmware print `TRM-ERROR stage=golden` naming that line and exit 1.
//!
//! Needs what `tests/firmware_qemu.rs` needs (scripts/setup.sh); TRM_SKIP_QEMU=1 skips.

mod golden_fixtures;

use golden_fixtures::{
    BOARD_PUZZLES, BOARD_STEPS, FixtureModel, PUZZLES, board_model, board_puzzles_path, models,
    puzzles_path,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use trm_export::golden::{Golden, parse_golden};
use trm_tests::qemu::{
    self, Board, MPS2, RISCV32, model_list, records, runs, tools_ready, with_tag,
};

/// Wall-clock limit of one QEMU run.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// The committed golden files of `fixtures`: (path, parsed) per model.
fn golden_files(fixtures: &[FixtureModel]) -> Vec<(PathBuf, Golden)> {
    fixtures
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f.golden)
                .unwrap_or_else(|e| panic!("{}: {e}", f.golden.display()));
            let g = parse_golden(&text).unwrap_or_else(|e| panic!("{}: {e}", f.golden.display()));
            (f.golden.clone(), g)
        })
        .collect()
}

/// The fixtures' model files.
fn model_paths(fixtures: &[FixtureModel]) -> Vec<PathBuf> {
    fixtures.iter().map(|f| f.model.clone()).collect()
}

/// Puzzles solved from a fixture CSV: its path and how many of its rows.
struct Puzzles<'a> {
    csv: &'a Path,
    n: usize,
}

/// Builds the firmware for `board` with `models` and their golden files, runs it under QEMU
/// with `-icount shift=0`; returns (exit code, console output).
fn run_with_golden(
    board: &Board,
    models: &[PathBuf],
    puzzles: &Puzzles,
    golden: &[PathBuf],
    name: &str,
) -> (i32, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let elf = dir.join(format!("{name}.elf"));
    let models = model_list(models);
    let goldens = model_list(golden);
    let csv = puzzles.csv;
    let n = puzzles.n.to_string();
    qemu::build_firmware(
        board,
        &[
            ("TRM_MODEL", &models),
            ("TRM_GOLDEN", &goldens),
            ("TRM_PUZZLES", csv.to_str().expect("utf-8 path")),
            ("TRM_PUZZLES_N", &n),
        ],
        &elf,
    );
    qemu::run_qemu(&elf, board, &["-icount", "shift=0"], QEMU_TIMEOUT)
}

/// `fixtures` on `board` match their golden files on `puzzles`, every one of `steps` ACT steps.
fn golden_matches_on(
    board: &Board,
    test: &str,
    fixtures: &[FixtureModel],
    puzzles: &Puzzles,
    steps: usize,
) {
    if !tools_ready(test, board) {
        return;
    }
    let models = model_paths(fixtures);
    let golden = golden_files(fixtures);
    let paths: Vec<PathBuf> = golden.iter().map(|(p, _)| p.clone()).collect();
    let (code, out) = run_with_golden(board, &models, puzzles, &paths, test);
    assert_eq!(code, 0, "exit code\n{out}");
    let blocks: Vec<&str> = out
        .split("TRM-BANNER")
        .filter(|b| b.contains("TRM-DONE"))
        .collect();
    let all = runs(records(&out));
    assert_eq!(all.len(), models.len(), "one run per model:\n{out}");
    assert_eq!(blocks.len(), models.len(), "one block per model:\n{out}");
    for (((path, g), recs), block) in golden.iter().zip(&all).zip(&blocks) {
        // The device's own verdict.
        let verdict = with_tag(recs, "TRM-GOLDEN");
        assert_eq!(verdict.len(), 1, "{}:\n{out}", path.display());
        let total = g.puzzles.len() * 2 + g.step_count();
        assert_eq!(
            verdict[0].get("match"),
            format!("{total}/{total}"),
            "{}:\n{out}",
            path.display()
        );
        assert!(with_tag(recs, "TRM-ERROR").is_empty(), "{out}");
        // And the host's comparison of the console with the golden file.
        let compared = g
            .compare(block)
            .unwrap_or_else(|m| panic!("{}: {m}", path.display()));
        assert_eq!(compared, total);
        assert_eq!(
            g.step_count(),
            puzzles.n * steps,
            "every ACT step (halt=all)"
        );
        let cycles = with_tag(recs, "TRM-CYCLES");
        let per_step: u64 = cycles
            .iter()
            .map(|c| c.get("per_step").parse::<u64>().expect("per_step"))
            .sum::<u64>()
            / cycles.len().max(1) as u64;
        let solved = with_tag(recs, "TRM-RESULT")
            .iter()
            .filter(|r| r.get("correct") == "81/81")
            .count();
        eprintln!(
            "{test}: {}: {total}/{total} golden lines equal; {solved}/{} solved; {:.1} M instructions per ACT step",
            path.display(),
            puzzles.n,
            (per_step * board.instructions_per_unit) as f64 / 1e6
        );
    }
}

/// The three fixture models on the six 6-blank fixture puzzles (2 ACT steps each) on `board`.
fn fixtures_match_on(board: &Board, test: &str) {
    let csv = puzzles_path();
    let puzzles = Puzzles {
        csv: &csv,
        n: PUZZLES,
    };
    golden_matches_on(board, test, &models(), &puzzles, 2);
}

#[test]
fn golden_mps2() {
    fixtures_match_on(&MPS2, "golden_mps2");
}

#[test]
fn golden_riscv32() {
    fixtures_match_on(&RISCV32, "golden_riscv32");
}

/// The real boards' default model (D=64, 2 layers, 8 ACT steps, QAT int8) on the Cortex-M4F:
/// its golden file on two 40-blank puzzles, every ACT step.
#[test]
fn golden_board_model_mps2() {
    let csv = board_puzzles_path();
    let puzzles = Puzzles {
        csv: &csv,
        n: BOARD_PUZZLES,
    };
    golden_matches_on(
        &MPS2,
        "golden_board_model_mps2",
        &[board_model()],
        &puzzles,
        BOARD_STEPS,
    );
}

#[test]
fn golden_mismatch_fails() {
    let test = "golden_mismatch_fails";
    if !tools_ready(test, &MPS2) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    // The two demo models with their committed golden files, the fixed model's copied to `dir`
    // with one hex digit of the y digest of its third TRM-STEP line changed.
    let fixtures = &models()[..2];
    let models = model_paths(fixtures);
    let mut paths: Vec<PathBuf> = fixtures.iter().map(|f| f.golden.clone()).collect();
    let text = std::fs::read_to_string(&paths[1]).expect("read golden");
    let mut steps = 0;
    let mut changed = None;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("TRM-STEP") {
                steps += 1;
                if steps == 3 {
                    let at = l.find(" y=").expect("y field") + 3;
                    let mut bytes = l.as_bytes().to_vec();
                    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
                    let new = String::from_utf8(bytes).expect("ascii");
                    changed = Some(new.clone());
                    return new;
                }
            }
            l.to_string()
        })
        .collect();
    let changed = changed.expect("a third TRM-STEP line");
    paths[1] = dir.join("golden-bad-fixed.txt");
    std::fs::write(&paths[1], lines.join("\n") + "\n").expect("write golden");
    let csv = puzzles_path();
    let puzzles = Puzzles {
        csv: &csv,
        n: PUZZLES,
    };
    let (code, out) = run_with_golden(&MPS2, &models, &puzzles, &paths, test);
    assert_eq!(code, 1, "exit code\n{out}");
    let all = runs(records(&out));
    assert_eq!(all.len(), 2, "{out}");
    // The float model still matches; the fixed one reports the changed line.
    assert!(with_tag(&all[0], "TRM-ERROR").is_empty(), "{out}");
    let errors = with_tag(&all[1], "TRM-ERROR");
    assert_eq!(errors.len(), 1, "{out}");
    assert_eq!(errors[0].get("stage"), "golden", "{out}");
    assert!(
        out.contains(&changed),
        "the error names the golden line:\n{out}"
    );
    let verdict = with_tag(&all[1], "TRM-GOLDEN");
    assert_eq!(verdict.len(), 1, "{out}");
    let (matched, total) = verdict[0].get("match").split_once('/').expect("n/total");
    assert!(matched.parse::<usize>().expect("n") < total.parse::<usize>().expect("total"));
}
