//! Golden files, host vs microcontroller: the project's own demo models
//! (`firmware-examples/models/sudoku-d32-{f32,fixed}.trm`, trained and exported by
//! `scripts/demo-models.sh`) solve a fixed set of generated Sudoku puzzles on the host, which
//! writes a golden file per model (`trm_export::golden::write_golden`, the `trm-export golden`
//! command's code). The QEMU firmware embeds both models and both golden files
//! (`TRM_MODEL`, `TRM_GOLDEN`) and checks its own per-ACT-step digests of y and z, its q_halt
//! bits, its final tokens and its predictions against them on the device; the test also compares
//! the device's console output with the golden files here, line by line.
//!
//! - `golden_mps2` (Cortex-M4F, `thumbv7em-none-eabihf`, the fixed models through the DSP
//!   kernels) and `golden_riscv32` (RV32IMAFC): both models, and a third one quantized here
//!   from the float demo model with every precision option (int16 weights for the mixer and
//!   heads, int8 for the rest; 4097-knot SiLU tables; exact SwiGLU products), match their
//!   golden files bit for bit.
//! - `golden_mismatch_fails` (Cortex-M4F): a golden file with one digit of one y digest changed
//!   makes the firmware print `TRM-ERROR stage=golden` naming that line and exit 1.
//!
//! Needs what `tests/firmware_qemu.rs` needs (scripts/setup.sh); TRM_SKIP_QEMU=1 skips.

use std::path::{Path, PathBuf};
use std::time::Duration;
use trm_data::sudoku_gen::SudokuGenerator;
use trm_export::export::quantize_float_model;
use trm_export::golden::{Golden, parse_golden, write_golden};
use trm_export::puzzles::PuzzleRow;
use trm_export::quantize::QuantizeOptions;
use trm_fw_app::HaltMode;
use trm_tests::qemu::{
    self, Board, MPS2, RISCV32, model_list, records, runs, tools_ready, with_tag,
};

/// Wall-clock limit of one QEMU run.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);
/// Puzzles per run: enough to see solved and unsolved ones, few enough for CI.
const PUZZLES: usize = 6;

/// The two demo models, float then fixed.
fn demo_models() -> Vec<PathBuf> {
    let dir = trm_tests::workspace_root().join("firmware-examples/models");
    vec![
        dir.join("sudoku-d32-f32.trm"),
        dir.join("sudoku-d32-fixed.trm"),
    ]
}

/// The demo models and, written to `dir`, the float demo model quantized with int16 weights in
/// the mixer and heads (int8 in the channel SwiGLU), 4097-knot SiLU tables and exact SwiGLU
/// products, calibrated on 16 generated puzzles (not those solved): the int16-weight kernels,
/// the large SiLU tables and both exact-product kernels on the device.
fn models_with_int16(dir: &Path) -> Vec<PathBuf> {
    let mut models = demo_models();
    let float = std::fs::read(&models[0]).expect("float demo model");
    let calib = generated(16, 77);
    let opts = QuantizeOptions {
        int16: "mixer,heads".parse().expect("groups"),
        silu_knots: 4097,
        exact_products: true,
        ..QuantizeOptions::default()
    };
    let q = quantize_float_model(&float, &calib, &opts).expect("quantize");
    let path = dir.join("sudoku-d32-fixed-i16mix.trm");
    std::fs::write(&path, &q.bytes).expect("write model");
    models.push(path);
    models
}

/// `n` generated 6-blank puzzles (the demo model's task) with their solutions.
fn generated(n: usize, seed: u64) -> Vec<PuzzleRow> {
    let mut generator = SudokuGenerator::new(seed, 6).expect("generator");
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
            }
        })
        .collect()
}

/// Generated 6-blank puzzles (the demo model's task) with their solutions, as rows and as the
/// CSV the firmware build reads.
fn puzzles(dir: &Path) -> (Vec<PuzzleRow>, PathBuf) {
    let rows = generated(PUZZLES, 20_261_129);
    let mut csv = String::from("source,question,answer,rating\n");
    for r in &rows {
        let answer = r.answer.as_deref().unwrap_or_default();
        csv.push_str(&format!("{},{},{answer},0\n", r.name, r.question));
    }
    let path = dir.join("golden-puzzles.csv");
    std::fs::write(&path, csv).expect("write CSV");
    (rows, path)
}

/// Host golden files of `models` on `rows`: (path, parsed) per model.
fn golden_files(
    models: &[PathBuf],
    dir: &Path,
    rows: &[PuzzleRow],
    tag: &str,
) -> Vec<(PathBuf, Golden)> {
    models
        .iter()
        .enumerate()
        .map(|(i, model)| {
            let bytes = std::fs::read(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
            let text = write_golden(&bytes, rows, HaltMode::AllSteps).expect("host golden file");
            let path = dir.join(format!("golden-{tag}-{i}.txt"));
            std::fs::write(&path, &text).expect("write golden");
            (path, parse_golden(&text).expect("parse own golden file"))
        })
        .collect()
}

/// Builds the firmware for `board` with `models` and their golden files, runs it under QEMU
/// with `-icount shift=0`; returns (exit code, console output).
fn run_with_golden(
    board: &Board,
    models: &[PathBuf],
    csv: &Path,
    golden: &[PathBuf],
    name: &str,
) -> (i32, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let elf = dir.join(format!("{name}.elf"));
    let models = model_list(models);
    let goldens = model_list(golden);
    let n = PUZZLES.to_string();
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

fn golden_matches_on(board: &Board, test: &str) {
    if !tools_ready(test, board) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (rows, csv) = puzzles(&dir);
    let models = models_with_int16(&dir);
    let golden = golden_files(&models, &dir, &rows, board.arg);
    let paths: Vec<PathBuf> = golden.iter().map(|(p, _)| p.clone()).collect();
    let (code, out) = run_with_golden(board, &models, &csv, &paths, test);
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
        assert_eq!(g.step_count(), PUZZLES * 2, "every ACT step (halt=all)");
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
            "{test}: {}: {total}/{total} golden lines equal; {solved}/{PUZZLES} solved; {:.1} M instructions per ACT step",
            path.display(),
            (per_step * board.instructions_per_unit) as f64 / 1e6
        );
    }
}

#[test]
fn golden_mps2() {
    golden_matches_on(&MPS2, "golden_mps2");
}

#[test]
fn golden_riscv32() {
    golden_matches_on(&RISCV32, "golden_riscv32");
}

#[test]
fn golden_mismatch_fails() {
    let test = "golden_mismatch_fails";
    if !tools_ready(test, &MPS2) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (rows, csv) = puzzles(&dir);
    let models = demo_models();
    let golden = golden_files(&models, &dir, &rows, "bad");
    // Change one hex digit of the y digest of the fixed model's third TRM-STEP line.
    let (path, _) = &golden[1];
    let text = std::fs::read_to_string(path).expect("read golden");
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
    std::fs::write(path, lines.join("\n") + "\n").expect("write golden");
    let paths: Vec<PathBuf> = golden.iter().map(|(p, _)| p.clone()).collect();
    let (code, out) = run_with_golden(&MPS2, &models, &csv, &paths, test);
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
