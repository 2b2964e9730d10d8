//! The Raspberry Pi Pico firmware (`firmware-examples/rp2040-pico`: RP2040, Cortex-M0+, boot2
//! for the W25Q080 flash, clocks at 125 MHz from the crystal through PLL_SYS, the 1 MHz TIMER,
//! output on UART0) built as a user flashes it, run in the rp2040js emulator by
//! `firmware-examples/rp2040-pico/emu/run.mjs` (Node.js; rp2040js pinned in its
//! `package-lock.json`, installed by scripts/setup.sh). The runner stands in for the RP2040's
//! boot ROM (not shipped by any registry we can reach; see the emulator's README), runs boot2
//! from SRAM as the ROM does, prints the firmware's UART0 lines and the emulated cycles per ACT
//! step, and exits 0 (`# done: no errors`), 1 (the firmware reported errors) or 2 (the run
//! failed: boot, a panic, an unimplemented instruction, an access to unmapped memory, a limit).
//!
//! - `pico_golden_matches`: the small fixed model (`models/sudoku-d32-fixed.trm`; the board's
//!   default, D=64, would need some 45 minutes of emulation per puzzle) on two
//!   generated puzzles, every ACT step, one firmware per puzzle with the host's golden file
//!   embedded, the two emulators in parallel: each firmware prints `TRM-GOLDEN match=n/n`, and
//!   its UART output also equals the golden file here, line by line. The emulated clk_sys must
//!   be 125 MHz (rp2040js derives it from the PLL and clock registers the firmware wrote).
//!   Prints the emulated cycles per ACT step and per MAC.
//! - `pico_bad_models_fail_cleanly`: an empty, a corrupted and a truncated model print the
//!   host reader's error text, the run ends with `# done: 3 errors` (exit 1), never a fault.
//!
//! Slow: the emulator runs about 26 M cycles per second of CPU, and one ACT step of the demo
//! model takes about 0.9 G cycles on the M0+ (see firmware-examples/README.md for the figures):
//! about 70 s of CPU per puzzle.
//!
//! Needs /usr/bin/cargo (Debian's rustc-web, for -Z build-std), `node`, and the emulator's
//! `node_modules` (scripts/setup.sh). Without them the tests fail, unless TRM_SKIP_QEMU=1 (the
//! switch of every emulated-firmware test).

mod golden_fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use trm_export::golden::{Golden, parse_golden, write_golden};
use trm_fw_app::HaltMode;
use trm_nostd::format::Model;
use trm_tests::qemu::{self, Board, records, runs, with_tag};

/// The Pico: `scripts/cross.sh firmware pico`. Only `arg` is used here (no QEMU).
const PICO: Board = Board {
    arg: "pico",
    name: "rp2040-pico",
    qemu: &[],
    unit: "us",
    instructions_per_unit: 0,
};

/// Puzzles of the golden test, one firmware each, the emulators in parallel (one core each):
/// rp2040js takes about 35 s of CPU per ACT step of the demo model.
const PUZZLES: usize = 2;
/// Seed of the generated 6-blank puzzles (the demo model's task).
const PUZZLE_SEED: u64 = 20_261_206;

/// The golden run's halting mode: every ACT step (2 for the demo model), as the QEMU boards.
const HALT: HaltMode = HaltMode::AllSteps;

/// Wall-clock limit the runner enforces on one emulator run (seconds).
const RUN_TIMEOUT_S: u32 = 1500;

/// The emulator's folder.
fn emu_dir() -> PathBuf {
    trm_tests::workspace_root().join("firmware-examples/rp2040-pico/emu")
}

/// Whether to run `test`: true when Debian's cargo, node and the runner's node_modules are
/// there; false (with a note) when something is missing and `TRM_SKIP_QEMU=1`; otherwise
/// panics with the set-up hint.
fn tools_ready(test: &str) -> bool {
    let mut missing: Vec<String> = ["/usr/bin/cargo", "/usr/bin/rustc"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .map(String::from)
        .collect();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        missing.push("node".into());
    }
    let module = emu_dir().join("node_modules/rp2040js/package.json");
    if !module.is_file() {
        missing.push(module.display().to_string());
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("TRM_SKIP_QEMU").as_deref() == Ok("1") {
        eprintln!("{test}: skipped (TRM_SKIP_QEMU=1; missing {missing:?})");
        return false;
    }
    panic!(
        "{test}: missing {missing:?}: run scripts/setup.sh (Debian rustc-web/cargo-web/rust-web-src, \
         lld, nodejs, npm; `npm ci` in firmware-examples/rp2040-pico/emu), or set TRM_SKIP_QEMU=1 \
         to skip the emulated firmware tests"
    );
}

/// Builds the Pico firmware with these TRM_* settings; returns the ELF's copy in the test's
/// temporary folder.
fn build(name: &str, settings: &[(&str, &str)]) -> PathBuf {
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.elf"));
    qemu::build_firmware(&PICO, settings, &dest);
    dest
}

/// What one emulator run gave.
struct EmuRun {
    /// The runner's exit status (0, 1 or 2; -1 when killed by a signal).
    code: i32,
    /// The firmware's UART0 lines, then the runner's `# rp2040js` lines.
    stdout: String,
    /// The runner's notes (and its failure reason, if any).
    stderr: String,
}

/// Runs the ELF in rp2040js through the runner.
fn run_emulator(elf: &Path) -> EmuRun {
    let t0 = Instant::now();
    let out = Command::new("node")
        .arg(emu_dir().join("run.mjs"))
        .arg(elf)
        .args(["--timeout-s", &RUN_TIMEOUT_S.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("start node");
    let run = EmuRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "{}: rp2040js ran {:.1}s, exit {}\n{}",
        elf.display(),
        t0.elapsed().as_secs_f64(),
        run.code,
        run.stderr
    );
    run
}

/// The project's small fixed model (6-blank puzzles, 2 ACT steps; the Pico's default is the
/// D=64 one, too slow to emulate here).
fn fixed_model() -> PathBuf {
    trm_tests::workspace_root().join("firmware-examples/models/sudoku-d32-fixed.trm")
}

/// The value of `key=` in a `# rp2040js ...` line of the runner.
fn runner_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// One golden run: the firmware of one puzzle, its golden file, what the emulator printed.
struct GoldenRun {
    golden: Golden,
    elf: PathBuf,
    run: Option<EmuRun>,
}

#[test]
fn pico_golden_matches() {
    let test = "pico_golden_matches";
    if !tools_ready(test) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let model_path = fixed_model();
    let model = std::fs::read(&model_path).expect("fixed demo model");
    let macs = Model::parse(&model)
        .expect("host parse")
        .config()
        .macs_per_act_step();
    // One firmware per puzzle (the builds one after the other), each with its golden file.
    let mut jobs: Vec<GoldenRun> = golden_fixtures::generated(PUZZLES, PUZZLE_SEED)
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let rows = std::slice::from_ref(row);
            let csv = dir.join(format!("puzzle-{i}.csv"));
            std::fs::write(&csv, golden_fixtures::csv(rows)).expect("write CSV");
            let text = write_golden(&model, rows, HALT, 0).expect("host golden file");
            let golden_path = dir.join(format!("golden-{i}.txt"));
            std::fs::write(&golden_path, &text).expect("write golden");
            let elf = build(
                &format!("{test}-{i}"),
                &[
                    ("TRM_MODEL", model_path.to_str().expect("utf-8 path")),
                    ("TRM_GOLDEN", golden_path.to_str().expect("utf-8 path")),
                    ("TRM_PUZZLES", csv.to_str().expect("utf-8 path")),
                    ("TRM_PUZZLES_N", "1"),
                ],
            );
            GoldenRun {
                golden: parse_golden(&text).expect("parse own golden file"),
                elf,
                run: None,
            }
        })
        .collect();
    // The emulators in parallel.
    std::thread::scope(|s| {
        for job in &mut jobs {
            s.spawn(move || job.run = Some(run_emulator(&job.elf)));
        }
    });

    let mut per_step = Vec::new();
    let mut solved = 0;
    for job in &jobs {
        let run = job.run.as_ref().expect("ran");
        let out = &run.stdout;
        assert_eq!(run.code, 0, "runner exit status\n{out}\n{}", run.stderr);
        assert!(
            out.contains("# RP2040 system clock 125000000 Hz, timer 1 MHz\n"),
            "{out}"
        );
        let summary = out
            .lines()
            .find(|l| l.starts_with("# rp2040js total "))
            .expect("the runner's summary line");
        // The emulator's clk_sys, computed from the XOSC, PLL_SYS and CLOCKS registers.
        assert_eq!(runner_field(summary, "clk_sys"), Some("125000000"), "{out}");
        eprintln!("{test}: {}: {summary}", job.elf.display());

        let all = runs(records(out));
        assert_eq!(all.len(), 1, "one model, one run:\n{out}");
        let recs = &all[0];
        assert_eq!(with_tag(recs, "TRM-BANNER")[0].get("board"), PICO.name);
        assert!(with_tag(recs, "TRM-ERROR").is_empty(), "{out}");
        let g = &job.golden;
        assert_eq!(g.puzzles.len(), 1);
        assert_eq!(g.step_count(), 2, "every ACT step (halt=all)");
        let total = g.puzzles.len() * 2 + g.step_count();
        let verdict = with_tag(recs, "TRM-GOLDEN");
        assert_eq!(verdict.len(), 1, "{out}");
        assert_eq!(verdict[0].get("match"), format!("{total}/{total}"), "{out}");
        // The host's comparison of the UART output with the golden file.
        let compared = g.compare(out).unwrap_or_else(|m| panic!("{m}"));
        assert_eq!(compared, total);
        solved += with_tag(recs, "TRM-RESULT")
            .iter()
            .filter(|r| r.get("correct") == "81/81")
            .count();

        // The TIMER ran (emulated microseconds); the runner turned the solve into cycles.
        let timed = with_tag(recs, "TRM-CYCLES");
        assert_eq!(timed.len(), 1, "{out}");
        assert_eq!(timed[0].get("unit"), "us");
        assert!(
            timed[0].get("ticks").parse::<u64>().expect("ticks") > 0,
            "{out}"
        );
        let cycles: Vec<u64> = out
            .lines()
            .filter(|l| l.starts_with("# rp2040js cycles "))
            .map(|l| {
                runner_field(l, "per_step")
                    .and_then(|v| v.parse().ok())
                    .expect("per_step")
            })
            .collect();
        assert_eq!(cycles.len(), 1, "{out}");
        per_step.extend(cycles);
    }
    let mean = per_step.iter().sum::<u64>() as f64 / per_step.len() as f64;
    eprintln!(
        "{test}: {PUZZLES} puzzles, every golden line equal; {solved}/{PUZZLES} solved; \
         {:.1} M cycles per ACT step ({:.2} per MAC, {macs} MACs), {:.2} s per ACT step at 125 MHz",
        mean / 1e6,
        mean / macs as f64,
        mean / 125e6,
    );
}

#[test]
fn pico_bad_models_fail_cleanly() {
    let test = "pico_bad_models_fail_cleanly";
    if !tools_ready(test) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let good = std::fs::read(fixed_model()).expect("fixed demo model");
    // One payload byte near the end flipped: only the payload checksum can catch it.
    let mut corrupt = good.clone();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0x10;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("corrupt", corrupt),
        ("truncated", good[..good.len() / 2].to_vec()),
    ];
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for (name, bytes) in &cases {
        let path = dir.join(format!("bad-{name}.trm"));
        std::fs::write(&path, bytes).expect("write model");
        paths.push(path);
        let err = Model::parse(bytes).expect_err("the host reader rejects it");
        expected.push(err.to_string());
    }
    let elf = build(test, &[("TRM_MODEL", &qemu::model_list(&paths))]);
    let run = run_emulator(&elf);
    let out = &run.stdout;
    // 1: the firmware finished and reported errors; 2 would be a fault, a panic or a hang.
    assert_eq!(run.code, 1, "runner exit status\n{out}\n{}", run.stderr);
    assert!(out.contains("\n# done: 3 errors\n"), "{out}");
    let all = runs(records(out));
    assert_eq!(all.len(), cases.len(), "one run per model:\n{out}");
    for (((name, bytes), msg), recs) in cases.iter().zip(&expected).zip(&all) {
        let errors = with_tag(recs, "TRM-ERROR");
        assert_eq!(errors.len(), 1, "{name}:\n{out}");
        assert_eq!(errors[0].get("stage"), "model", "{name}:\n{out}");
        assert_eq!(errors[0].get("bytes"), bytes.len().to_string());
        assert_eq!(errors[0].get("msg"), msg, "{name}");
        assert!(with_tag(recs, "TRM-MODEL").is_empty(), "{name}:\n{out}");
        assert!(with_tag(recs, "TRM-PUZZLE").is_empty(), "{name}:\n{out}");
        let done = with_tag(recs, "TRM-DONE");
        assert_eq!(done.len(), 1, "{name}:\n{out}");
        assert_eq!(done[0].get("errors"), "1");
        assert_eq!(done[0].get("total"), "0");
    }
}
