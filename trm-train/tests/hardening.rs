//! Hostile and broken inputs of the trainer (issue 14): a batch larger than the data, a
//! damaged latest checkpoint, `--max-steps 0`, a damaged test split, logs of a run that crashed
//! after its last checkpoint. Each is refused with an error naming what is wrong, or handled
//! and said, instead of being silently worked around.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::Device;
use trm_data::sudoku::SudokuOptions;
use trm_data::sudoku_gen::generate_dataset;
use trm_train::ckpt;
use trm_train::config::TrainConfig;
use trm_train::data::{PuzzleDataset, PuzzleDatasetConfig};
use trm_train::logs::{METRICS_FILE, read_jsonl};
use trm_train::model::Trm;
use trm_train::run::{RunError, TrainRun, evaluate, train};
use trm_train::train::LossKind;

fn ci_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sudoku_ci.yaml")
}

/// A generated Sudoku dataset of `n_train` / `n_test` puzzles.
fn dataset(dir: &Path, n_train: usize, n_test: usize) -> PathBuf {
    let out = dir.join("sudoku");
    let opts = SudokuOptions {
        seed: 3,
        ..Default::default()
    };
    generate_dataset(&out, n_train, n_test, 8, &opts).expect("generate dataset");
    out
}

/// The CI config on `data`, run folder `run_dir`, with `extra` overrides (one epoch per
/// iteration, a checkpoint after each).
fn config(data: &Path, run_dir: &Path, extra: &[&str]) -> TrainConfig {
    let mut o = vec![
        format!("data_paths=[{}]", data.display()),
        format!("checkpoint_path={}", run_dir.display()),
        "eval_interval=1".into(),
        "checkpoint_keep_last=5".into(),
    ];
    o.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::load(&ci_config(), &o).expect("config")
}

fn run(cfg: TrainConfig, max_steps: Option<u64>) -> TrainRun {
    let mut r = TrainRun::new(cfg, Device::Cpu);
    r.quiet = true;
    r.max_steps = max_steps;
    r
}

fn trm_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trm-train"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run trm-train {args:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

#[test]
fn a_batch_larger_than_the_training_data_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 40, 8);
    let run_dir = tmp.path().join("run");
    // One epoch per iteration: 40 examples can never fill a batch of 64.
    let cfg = config(&data, &run_dir, &["global_batch_size=64", "epochs=2"]);
    let e = train(&run(cfg, None)).expect_err("0 steps");
    let msg = e.to_string();
    assert!(
        msg.contains("global_batch_size 64") && msg.contains("at most 40 examples"),
        "{msg}"
    );
    assert!(
        !run_dir.exists(),
        "the refused run wrote {}",
        run_dir.display()
    );
}

/// A model of the CI config for `ds`, with its random initial weights.
fn ci_model(ds: &PuzzleDataset) -> (tch::nn::VarStore, Trm) {
    let cfg = TrainConfig::load::<&str>(&ci_config(), &[]).expect("config");
    let mc = cfg.model_config(ds.metadata()).expect("model config");
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let model = Trm::new(&vs.root(), &mc).expect("model");
    (vs, model)
}

fn test_set(data: &Path, gbs: usize, rank: usize, ranks: usize) -> PuzzleDataset {
    let cfg = PuzzleDatasetConfig {
        seed: 0,
        dataset_paths: vec![data.to_path_buf()],
        global_batch_size: gbs,
        test_set_mode: true,
        epochs_per_iter: 1,
        rank,
        num_replicas: ranks,
    };
    PuzzleDataset::open(cfg, "test").expect("test split")
}

#[test]
fn evaluation_never_pads_past_the_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 8, 11);
    // A batch far larger than the 11 test examples: one batch of 11 rows (of 6 rows on each of
    // two ranks, one of them padding), not 100000.
    let mut ds = test_set(&data, 100_000, 0, 1);
    let rows: Vec<(i64, usize)> = ds
        .iter()
        .map(|b| {
            let b = b.expect("batch");
            (b.batch.inputs.size()[0], b.real_rows)
        })
        .collect();
    assert_eq!(rows, [(11, 11)]);
    for (rank, real) in [(0, 6), (1, 5)] {
        let mut ds = test_set(&data, 100_000, rank, 2);
        let rows: Vec<(i64, usize)> = ds
            .iter()
            .map(|b| {
                let b = b.expect("batch");
                (b.batch.inputs.size()[0], b.real_rows)
            })
            .collect();
        assert_eq!(rows, [(6, real)], "rank {rank}");
    }
    // Its metrics are those of a batch of exactly the data's size.
    let (_vs, model) = ci_model(&ds);
    let huge = evaluate(&model, &mut ds, LossKind::Stablemax, Device::Cpu, &[]).expect("eval");
    let mut exact = test_set(&data, 11, 0, 1);
    let fit = evaluate(&model, &mut exact, LossKind::Stablemax, Device::Cpu, &[]).expect("eval");
    assert_eq!(huge.sets, fit.sets);
    assert_eq!(huge.sets[0].count, 11.0);
}

/// Trains `data` for 2 epochs of 4 steps (batches of 16 from 64 puzzles), a checkpoint after
/// each: `step_4` and `step_8`.
fn two_checkpoints(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = dataset(tmp, 64, 16);
    let run_dir = tmp.join("run");
    let s = train(&run(config(&data, &run_dir, &["epochs=2"]), None)).expect("train");
    assert_eq!(s.step, 8);
    let steps: Vec<u64> = ckpt::list(&run_dir)
        .expect("list")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [4, 8]);
    (data, run_dir)
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).expect("read");
    std::fs::write(path, &bytes[..bytes.len() / 2]).expect("truncate");
}

#[test]
fn a_damaged_latest_checkpoint_is_named_not_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, run_dir) = two_checkpoints(tmp.path());
    let eval = |checkpoint: &Path| {
        trm_train(&[
            "evaluate",
            "--checkpoint",
            s(checkpoint),
            "--data",
            s(&data),
            "--device",
            "cpu",
        ])
    };
    let (step4, step8) = (run_dir.join("step_4"), run_dir.join("step_8"));

    // The command says which checkpoint it evaluates.
    let out = eval(&run_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = format!(
        "evaluating trm-train checkpoint {} (step 8)",
        step8.display()
    );
    assert!(text(&out.stderr).contains(&said), "{}", text(&out.stderr));

    // A truncated latest checkpoint is an error naming it and the one to name instead, each
    // cause printed once.
    truncate(&step8.join(ckpt::MODEL_FILE));
    let out = eval(&run_dir);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("the latest checkpoint, {}", step8.display()))
            && err.contains(&format!("name it: {}", step4.display())),
        "{err}"
    );
    assert_eq!(err.matches("truncated?").count(), 1, "{err}");
    assert!(text(&out.stdout).is_empty());
    // Named explicitly, the older one is evaluated (and said).
    let out = eval(&step4);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = format!(
        "evaluating trm-train checkpoint {} (step 4)",
        step4.display()
    );
    assert!(text(&out.stderr).contains(&said), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("examples"));

    // Training resumes from the newest finished checkpoint (it warns; tested by the summary)
    // and writes step 8 again, whole.
    let s = train(&run(config(&data, &run_dir, &["epochs=2"]), None)).expect("resume");
    assert_eq!((s.resumed_from, s.step, s.steps_run), (4, 8, 4));
    assert!(ckpt::load(&step8).is_ok());
}

#[test]
fn max_steps_zero_is_refused_and_a_run_already_there_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 64, 16);
    let run_dir = tmp.path().join("run");
    let out = trm_train(&[
        "train",
        "--config",
        s(&ci_config()),
        "--max-steps",
        "0",
        "--device",
        "cpu",
        &format!("data_paths=[{}]", data.display()),
        &format!("checkpoint_path={}", run_dir.display()),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--max-steps"),
        "{}",
        text(&out.stderr)
    );
    assert!(!run_dir.exists());

    // Through the library, 0 runs no step and writes nothing.
    let cfg = || config(&data, &run_dir, &["epochs=2"]);
    let s = train(&run(cfg(), Some(0))).expect("zero steps");
    assert_eq!((s.step, s.steps_run), (0, 0));
    assert!(!run_dir.exists());

    // A run stopped at step 3, asked again to stop at 3 (or before): nothing new either.
    let s = train(&run(cfg(), Some(3))).expect("3 steps");
    assert_eq!((s.step, s.steps_run), (3, 3));
    let listing = |dir: &Path| -> Vec<(PathBuf, u64)> {
        let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| {
                let e = e.expect("entry");
                (e.path(), e.metadata().expect("meta").len())
            })
            .collect();
        v.sort();
        v
    };
    let before = (
        listing(&run_dir),
        std::fs::read(run_dir.join(METRICS_FILE)).expect("metrics"),
    );
    for m in [3, 2] {
        let s = train(&run(cfg(), Some(m))).expect("nothing to do");
        assert_eq!((s.step, s.steps_run), (3, 0));
    }
    let after = (
        listing(&run_dir),
        std::fs::read(run_dir.join(METRICS_FILE)).expect("metrics"),
    );
    assert_eq!(before, after);
}

#[test]
fn a_damaged_test_split_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 64, 16);
    let inputs = data.join("test/all__inputs.npy");
    truncate(&inputs);
    let run_dir = tmp.path().join("run");
    let e = train(&run(config(&data, &run_dir, &["epochs=1"]), Some(1))).expect_err("damaged");
    assert!(matches!(e, RunError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains(&inputs.display().to_string()), "{e}");
    assert!(!run_dir.exists());

    // A dataset without a test split trains without evaluation (a note, not an error).
    std::fs::remove_dir_all(data.join("test")).expect("rm test");
    let s = train(&run(config(&data, &run_dir, &["epochs=1"]), None)).expect("no test split");
    assert_eq!(s.step, 4);
    assert!(s.last_eval.is_none());
}

#[test]
fn a_run_resumed_after_a_crash_logs_each_step_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 64, 16);
    let (straight, crashed) = (tmp.path().join("straight"), tmp.path().join("crashed"));
    let cfg = |dir: &Path| config(&data, dir, &["epochs=2"]);
    train(&run(cfg(&straight), None)).expect("straight");

    // Stopped at step 6 (a checkpoint mid-iteration), then what a crash later would have left:
    // steps 7 and 8 logged, in metrics.jsonl (the last line cut short) and in a second event
    // file, with no checkpoint after step 6.
    train(&run(cfg(&crashed), Some(6))).expect("first part");
    {
        let mut late = trm_train::logs::RunLogger::create(&crashed).expect("logger");
        for step in [7, 8] {
            late.log("train", step, &[("lm_loss", 9.0)]).expect("log");
        }
        late.flush().expect("flush");
    }
    let metrics = crashed.join(METRICS_FILE);
    let mut bytes = std::fs::read(&metrics).expect("read");
    bytes.extend_from_slice(b"{\"kind\": \"eval\", \"step\": 8, \"all/accu");
    std::fs::write(&metrics, bytes).expect("torn line");
    let event_files = |dir: &Path| -> Vec<PathBuf> {
        trm_train::logs::tensorboard::event_files(dir).expect("event files")
    };
    assert_eq!(event_files(&crashed).len(), 2);

    let s = train(&run(cfg(&crashed), None)).expect("resume");
    assert_eq!((s.resumed_from, s.step), (6, 8));
    let steps = |dir: &Path| -> Vec<(String, u64)> {
        read_jsonl(&dir.join(METRICS_FILE))
            .expect("jsonl")
            .into_iter()
            .map(|r| (r.kind, r.step))
            .collect()
    };
    assert_eq!(steps(&crashed), steps(&straight));
    assert!(
        read_jsonl(&metrics)
            .expect("jsonl")
            .iter()
            .all(|r| r.metrics.iter().all(|(_, v)| *v != Some(9.0))),
        "a line of the crashed run after its checkpoint survived"
    );
    // One event stream, each step's events once, as in the straight run.
    let files = event_files(&crashed);
    assert_eq!(files.len(), 1, "{files:?}");
    let event_steps = |dir: &Path| -> Vec<i64> {
        let files = event_files(dir);
        assert_eq!(files.len(), 1);
        trm_train::logs::tensorboard::read_event_records(&files[0])
            .expect("events")
            .into_iter()
            .map(|(step, _)| step)
            .collect()
    };
    assert_eq!(event_steps(&crashed), event_steps(&straight));
}
