//! Exact resume: N steps straight equal N/2 steps + resume + the rest, bit for bit on the CPU,
//! both through the library (stop at a step mid-iteration) and through the binary killed with
//! SIGKILL at a random moment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tch::Device;
use trm_data::sudoku::SudokuOptions;
use trm_data::sudoku_gen::generate_dataset;
use trm_train::ckpt;
use trm_train::config::TrainConfig;
use trm_train::run::{TrainRun, train};

fn ci_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sudoku_ci.yaml")
}

/// A small generated Sudoku dataset: 200 train puzzles, 32 test puzzles.
fn dataset(dir: &Path) -> PathBuf {
    let out = dir.join("sudoku");
    let opts = SudokuOptions {
        seed: 7,
        ..Default::default()
    };
    generate_dataset(&out, 200, 32, 8, &opts).expect("generate dataset");
    out
}

fn overrides(data: &Path, run_dir: &Path, epochs: u32) -> Vec<String> {
    vec![
        format!("data_paths=[{}]", data.display()),
        format!("checkpoint_path={}", run_dir.display()),
        format!("epochs={epochs}"),
        "eval_interval=1".into(),
        "global_batch_size=16".into(),
        // Exploration on: the resumed run must continue the RNG stream.
        "arch.halt_exploration_prob=0.5".into(),
        "checkpoint_keep_last=3".into(),
    ]
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

#[test]
fn stop_and_resume_equals_straight_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    let cfg_a = TrainConfig::load(&ci_config(), &overrides(&data, &a, 2)).expect("config");
    let mut run_a = TrainRun::new(cfg_a, Device::Cpu);
    run_a.quiet = true;
    let full = train(&run_a).expect("straight run");
    assert!(full.finished);
    // 2 epochs of 200 puzzles in batches of 16: 12 batches per epoch.
    assert_eq!(full.step, 24);

    let cfg_b = TrainConfig::load(&ci_config(), &overrides(&data, &b, 2)).expect("config");
    let mut run_b = TrainRun::new(cfg_b, Device::Cpu);
    run_b.quiet = true;
    run_b.max_steps = Some(7); // mid-way through the first iteration
    let first = train(&run_b).expect("first half");
    assert_eq!(first.step, 7);
    assert!(!first.finished);
    let half_dir = first
        .last_checkpoint
        .clone()
        .expect("checkpoint at the stop");

    run_b.max_steps = None;
    let second = train(&run_b).expect("resumed run");
    assert_eq!(second.resumed_from, 7);
    assert_eq!(second.steps_run, 24 - 7);
    assert!(second.finished);

    let (sa, da) = ckpt::latest(&a)
        .expect("list a")
        .expect("a has a checkpoint");
    let (sb, db) = ckpt::latest(&b)
        .expect("list b")
        .expect("b has a checkpoint");
    assert_eq!((sa, sb), (24, 24));
    // Training moved the weights after the stop (the comparison below is not vacuous).
    assert_ne!(
        read(&half_dir, ckpt::MODEL_FILE),
        read(&db, ckpt::MODEL_FILE)
    );
    for f in [
        ckpt::MODEL_FILE,
        ckpt::EMA_FILE,
        ckpt::OPTIMIZER_FILE,
        ckpt::RNG_FILE,
    ] {
        assert!(read(&da, f) == read(&db, f), "{f} differs after resume");
    }
    // The evaluation of the resumed run equals the straight run's.
    let (ea, eb) = (
        full.last_eval.expect("eval a").flat(),
        second.last_eval.expect("eval b").flat(),
    );
    assert_eq!(ea, eb);
}

/// A pseudo-random fraction in [0, 1) from the clock (a different kill moment each run).
fn clock_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

fn train_command(data: &Path, run_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trm-train"));
    cmd.arg("train")
        .arg("--config")
        .arg(ci_config())
        .args(["--device", "cpu", "--quiet"])
        .args(overrides(data, run_dir, 16))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

#[test]
fn sigkill_then_resume_reaches_the_same_weights() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

    let t0 = Instant::now();
    let status = train_command(&data, &a).status().expect("spawn");
    assert!(status.success(), "uninterrupted run failed");
    let duration = t0.elapsed();

    // Kill a second run at a random moment of its third iteration of 16: after its second
    // checkpoint, a random fraction of the time between its first two checkpoints (measured
    // on this run: the first run's wall time is mostly start-up, and start-up varies with the
    // machine's load). It is so killed mid-run with a checkpoint to resume from.
    let frac = clock_fraction();
    let mut child = train_command(&data, &b).spawn().expect("spawn");
    let deadline = Instant::now() + duration * 4;
    let mut wait_for_step_after = |after: u64| -> Instant {
        loop {
            if ckpt::latest(&b)
                .expect("list")
                .is_some_and(|(s, _)| s > after)
            {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "no checkpoint appeared");
            assert!(child.try_wait().expect("poll").is_none(), "run ended early");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let t1 = wait_for_step_after(0);
    let s1 = ckpt::latest(&b).expect("list").map_or(0, |(s, _)| s);
    let t2 = wait_for_step_after(s1);
    std::thread::sleep((t2 - t1).mul_f64(frac));
    let killed = child.try_wait().expect("poll").is_none();
    if killed {
        child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    }
    let _ = child.wait();
    let before = ckpt::latest(&b).expect("list").map(|(s, _)| s);
    eprintln!(
        "killed {:.0}% of an iteration after the second checkpoint: {killed}; last complete \
         checkpoint {before:?}",
        frac * 100.0
    );
    assert!(killed, "the run finished before the kill");
    assert!(before.is_some_and(|s| s < 192), "nothing left to resume");

    let status = train_command(&data, &b).status().expect("spawn");
    assert!(status.success(), "resumed run failed");

    let (sa, da) = ckpt::latest(&a)
        .expect("list a")
        .expect("a has a checkpoint");
    let (sb, db) = ckpt::latest(&b)
        .expect("list b")
        .expect("b has a checkpoint");
    assert_eq!(sa, sb);
    assert_eq!(sa, 192);
    assert!(
        read(&da, ckpt::MODEL_FILE) == read(&db, ckpt::MODEL_FILE),
        "final weights differ after kill + resume"
    );
    assert!(read(&da, ckpt::EMA_FILE) == read(&db, ckpt::EMA_FILE));
    // The logs hold each step once, as the uninterrupted run's do: what the killed run logged
    // after its last checkpoint was dropped on resume, and there is one event stream.
    let steps = |dir: &Path| -> Vec<(String, u64)> {
        trm_train::logs::read_jsonl(&dir.join(trm_train::logs::METRICS_FILE))
            .expect("metrics")
            .into_iter()
            .map(|r| (r.kind, r.step))
            .collect()
    };
    assert_eq!(steps(&b), steps(&a));
    let events = trm_train::logs::tensorboard::event_files(&b).expect("event files");
    assert_eq!(events.len(), 1, "{events:?}");
}
