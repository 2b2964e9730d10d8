//! `trm-train evaluate` as a user runs it, and the ARC evaluator in `train` and `evaluate`, on a
//! tiny ARC dataset built by `trm-train build-dataset arc` from two training and two evaluation
//! tasks of the shared ARC-AGI-1 JSON (one augmentation each), with a tiny attention model
//! trained for a few steps:
//!
//! - `train` with `evaluators=[{name: arc@ARC}]` logs `ARC/pass@K` and writes
//!   `evaluator_ARC_step_<N>/submission.json` with the test puzzles; both equal what
//!   [`ArcEvaluator`] computes from the predictions the same evaluation saved
//!   (`eval_save_outputs`), and the same holds for 2 ranks (Gloo), whose predictions are
//!   gathered on rank 0;
//! - `evaluate` of the checkpoint reproduces the training's evaluation (one thread each, the
//!   same code: bit for bit), runs fewer ACT steps with `arch.halt_max_steps=1` or `--steps 1`
//!   (identical results, `steps` 1), saves `eval_save_outputs` with the right shapes into
//!   `--output-dir` and prints the paths, and refuses an architecture override, an unknown key
//!   (train's error) and an unknown evaluator with clear errors;
//! - `train` refuses an unknown evaluator or option, and a dataset the ARC evaluator cannot
//!   read, before training.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use tch::{Kind, Tensor};
use trm_data::arc_eval::ArcEvaluator;
use trm_train::logs::{METRICS_FILE, read_jsonl};

/// Runs `trm-train <args>` on one CPU thread, without a distributed environment.
fn trm_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trm-train"))
        .args(args)
        .env("TRM_THREADS", "1")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("LOCAL_WORLD_SIZE")
        .env_remove("MASTER_ADDR")
        .env_remove("MASTER_PORT")
        .env_remove("SLURM_PROCID")
        .output()
        .unwrap_or_else(|e| panic!("cannot run trm-train {args:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `trm-train <args>`, asserts success, returns the output.
fn ok(args: &[&str]) -> Output {
    let o = trm_train(args);
    assert!(
        o.status.success(),
        "trm-train {args:?} failed: {}",
        text(&o)
    );
    o
}

/// Runs `trm-train <args>`, asserts a failure (exit 1, no panic), returns stderr.
fn fails(args: &[&str]) -> String {
    let o = trm_train(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "trm-train {args:?}: {}", text(&o));
    assert!(
        !err.contains("panicked"),
        "trm-train {args:?} panicked: {err}"
    );
    err
}

fn read_json(path: &Path) -> Value {
    let t = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `n` tasks of `arc-agi_<subset>_*.json` (the first by id with one test input), written as
/// `<prefix>_<subset>_{challenges,solutions}.json`.
fn subset(prefix: &Path, subset: &str, n: usize) {
    let shared = trm_data::layout::shared_dir().join("data/arc");
    let ch = read_json(&shared.join(format!("arc-agi_{subset}_challenges.json")));
    let so = read_json(&shared.join(format!("arc-agi_{subset}_solutions.json")));
    let ch = ch.as_object().expect("challenges object");
    let mut ids: Vec<&String> = ch
        .iter()
        .filter(|(_, t)| t["test"].as_array().map(Vec::len) == Some(1))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids.truncate(n);
    assert_eq!(ids.len(), n, "{subset}: not enough tasks");
    let pick = |v: &Value| -> Value {
        Value::Object(
            ids.iter()
                .map(|id| ((*id).clone(), v[id.as_str()].clone()))
                .collect(),
        )
    };
    for (kind, v) in [
        ("challenges", &Value::Object(ch.clone())),
        ("solutions", &so),
    ] {
        let path = PathBuf::from(format!("{}_{subset}_{kind}.json", prefix.display()));
        std::fs::write(&path, pick(v).to_string()).expect("write subset");
    }
}

/// The tiny model and run: attention (cheap at 900 tokens), batch 4, ARC evaluator, the four
/// outputs the evaluator reads saved.
fn train_overrides(data: &Path, run: &Path) -> Vec<String> {
    vec![
        format!("data_paths=[{}]", data.display()),
        format!("checkpoint_path={}", run.display()),
        "arch.mlp_t=false".into(),
        "arch.pos_encodings=rope".into(),
        "arch.hidden_size=16".into(),
        "arch.num_heads=2".into(),
        "arch.L_layers=1".into(),
        "arch.H_cycles=1".into(),
        "arch.L_cycles=1".into(),
        "arch.halt_max_steps=2".into(),
        "arch.puzzle_emb_len=1".into(),
        "global_batch_size=4".into(),
        "epochs=1".into(),
        "eval_interval=1".into(),
        "evaluators=[{name: arc@ARC}]".into(),
        "eval_save_outputs=[inputs,puzzle_identifiers,preds,q_halt_logits]".into(),
    ]
}

fn ci_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sudoku_ci.yaml")
}

/// `train` with [`train_overrides`] (`extra` first: `--nproc-per-node 2`).
fn train(data: &Path, run: &Path, extra: &[&str]) -> Output {
    let ov = train_overrides(data, run);
    let config = ci_config();
    let mut args = vec![
        "train",
        "--config",
        s(&config),
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.extend(ov.iter().map(String::as_str));
    ok(&args)
}

/// The shared fixture: the dataset and a trained run, made once for every test.
struct Fixture {
    data: PathBuf,
    run: PathBuf,
    /// The step of the run's evaluation and checkpoint.
    step: u64,
    scratch: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("evaluate_arc");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch");
        let prefix = root.join("tiny");
        subset(&prefix, "training", 2);
        subset(&prefix, "evaluation", 2);
        let data = root.join("data");
        ok(&[
            "build-dataset",
            "arc",
            "--input-file-prefix",
            s(&prefix),
            "--output-dir",
            s(&data),
            "--subsets",
            "training",
            "evaluation",
            "--test-set-name",
            "evaluation",
            "--num-aug",
            "1",
            "--no-progress",
        ]);
        let run = root.join("run");
        train(&data, &run, &[]);
        let step = trm_train::ckpt::latest(&run)
            .expect("checkpoints")
            .expect("a checkpoint")
            .0;
        Fixture {
            data,
            run,
            step,
            scratch: root,
        }
    })
}

/// The last evaluation record of a run's metrics log, as `(name, value)`.
fn last_eval(run: &Path) -> (u64, Vec<(String, f64)>) {
    let rec = read_jsonl(&run.join(METRICS_FILE))
        .expect("metrics log")
        .into_iter()
        .rfind(|r| r.kind == "eval")
        .expect("an evaluation record");
    let m = rec
        .metrics
        .into_iter()
        .map(|(n, v)| (n, v.expect("finite metric")))
        .collect();
    (rec.step, m)
}

/// The ARC metrics of `metrics` (`ARC/...`).
fn arc_metrics(metrics: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut m: Vec<(String, f64)> = metrics
        .iter()
        .filter(|(n, _)| n.starts_with("ARC/"))
        .cloned()
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

/// The saved outputs of a safetensors file, by name.
fn saved(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensor<'a>(saved: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    saved
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no saved {name}"))
}

fn i64s(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).contiguous().view([-1])).expect("i64s")
}

/// The ARC evaluator fed with saved outputs (one batch: the order they were saved in),
/// independently of the trainer's evaluator plumbing: `(metrics, submission.json)`.
fn recompute(data: &Path, saved: &[(String, Tensor)]) -> (Vec<(String, f64)>, String) {
    let mut ev = ArcEvaluator::load(data, 0).expect("ARC evaluator");
    let ids = i64s(tensor(saved, "puzzle_identifiers"));
    let q = Vec::<f64>::try_from(&tensor(saved, "q_halt_logits").to_kind(Kind::Double))
        .expect("q_halt");
    ev.update_batch(
        &ids,
        &i64s(tensor(saved, "inputs")),
        &i64s(tensor(saved, "preds")),
        &q,
    )
    .expect("update");
    let r = ev.result();
    let mut m = r.metrics();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    (m, r.submission_json())
}

/// The ids of test_puzzles.json.
fn test_puzzle_ids(data: &Path) -> BTreeSet<String> {
    read_json(&data.join("test_puzzles.json"))
        .as_object()
        .expect("test_puzzles object")
        .keys()
        .cloned()
        .collect()
}

/// A run's evaluation: its ARC metrics and submission equal the ARC evaluator's on the outputs
/// the same evaluation saved, and the submission names the test puzzles.
fn check_run_evaluation(data: &Path, run: &Path) {
    let (step, metrics) = last_eval(run);
    let arc = arc_metrics(&metrics);
    assert!(
        arc.iter().any(|(n, _)| n == "ARC/pass@1"),
        "no ARC/pass@1 in {metrics:?}"
    );
    for (n, v) in &arc {
        assert!((0.0..=1.0).contains(v), "{n} = {v}");
    }
    let sub_path = run.join(format!("evaluator_ARC_step_{step}/submission.json"));
    let sub_text = std::fs::read_to_string(&sub_path)
        .unwrap_or_else(|e| panic!("{}: {e}", sub_path.display()));
    let sub: Value = serde_json::from_str(&sub_text).expect("submission.json is JSON");
    let ids: BTreeSet<String> = sub.as_object().expect("object").keys().cloned().collect();
    assert_eq!(ids, test_puzzle_ids(data));
    for (id, inputs) in sub.as_object().expect("object") {
        let inputs = inputs.as_array().expect("attempts list");
        assert_eq!(inputs.len(), 1, "{id}: one test input");
        for a in ["attempt_1", "attempt_2"] {
            assert!(inputs[0][a].is_array(), "{id}: no {a}");
        }
    }
    let preds = saved(&run.join(format!("step_{step}_all_preds.0.safetensors")));
    let (expected, expected_sub) = recompute(data, &preds);
    assert_eq!(arc, expected, "logged ARC metrics vs recomputed");
    assert_eq!(sub_text, expected_sub, "submission.json vs recomputed");
}

#[test]
fn train_runs_the_arc_evaluator() {
    let f = fixture();
    check_run_evaluation(&f.data, &f.run);
}

#[test]
fn train_on_two_ranks_gathers_the_arc_predictions() {
    let f = fixture();
    let run = f.scratch.join("run2");
    train(&f.data, &run, &["--nproc-per-node", "2"]);
    check_run_evaluation(&f.data, &run);
    // The same test rows as one process.
    let (step, _) = last_eval(&run);
    let two = saved(&run.join(format!("step_{step}_all_preds.0.safetensors")));
    let one = saved(
        &f.run
            .join(format!("step_{}_all_preds.0.safetensors", f.step)),
    );
    for name in ["inputs", "puzzle_identifiers"] {
        assert_eq!(i64s(tensor(&two, name)), i64s(tensor(&one, name)), "{name}");
    }
}

/// `evaluate --json` of the fixture's checkpoint: the metrics object and stderr.
fn evaluate_json(extra: &[&str]) -> (serde_json::Map<String, Value>, String) {
    let f = fixture();
    let mut args = vec![
        "evaluate",
        "--checkpoint",
        s(&f.run),
        "--device",
        "cpu",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = ok(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (
        v.as_object().expect("object").clone(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn num(m: &serde_json::Map<String, Value>, k: &str) -> f64 {
    m.get(k)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
}

#[test]
fn evaluate_reproduces_training_and_runs_fewer_steps() {
    let f = fixture();
    // The checkpoint with its own config: the training's last evaluation, bit for bit, and
    // the ARC submission beside the checkpoint.
    let (full, err) = evaluate_json(&[]);
    let (step, trained) = last_eval(&f.run);
    assert_eq!(step, f.step);
    let full_pairs: Vec<(String, f64)> = full
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().expect("number")))
        .collect();
    let mut a = full_pairs.clone();
    let mut b = trained.clone();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a, b, "evaluate vs the training's evaluation");
    assert_eq!(num(&full, "all/steps"), 2.0);
    let sub = f
        .run
        .join(format!("evaluate_step_{}", f.step))
        .join("submission.json");
    assert!(err.contains(&format!("wrote {}", sub.display())), "{err}");
    let train_sub = f
        .run
        .join(format!("evaluator_ARC_step_{}/submission.json", f.step));
    assert_eq!(
        std::fs::read_to_string(&sub).expect("evaluate's submission"),
        std::fs::read_to_string(&train_sub).expect("train's submission")
    );

    // One ACT step, as an override and as --steps.
    let (one, _) = evaluate_json(&["arch.halt_max_steps=1"]);
    let (steps, _) = evaluate_json(&["--steps", "1"]);
    assert_eq!(one, steps, "arch.halt_max_steps=1 vs --steps 1");
    assert_eq!(num(&one, "all/steps"), 1.0);
    assert_ne!(num(&one, "all/steps"), num(&full, "all/steps"));
    assert!(one.contains_key("ARC/pass@1"), "{one:?}");
    // After --data, as a user may write it.
    let data = s(&f.data);
    let (late, _) = evaluate_json(&["--data", data, "arch.halt_max_steps=1"]);
    assert_eq!(late, one, "an override after --data");
}

#[test]
fn evaluate_saves_outputs_and_prints_where() {
    let f = fixture();
    let out = f.scratch.join("outputs");
    let o = ok(&[
        "evaluate",
        "--checkpoint",
        s(&f.run),
        "--device",
        "cpu",
        "--output-dir",
        s(&out),
        "eval_save_outputs=[preds,q_halt_logits]",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let preds_file = out.join("all_preds.safetensors");
    for file in [&preds_file, &out.join("submission.json")] {
        assert!(
            stdout.contains(&format!("wrote {}", file.display())),
            "{}",
            text(&o)
        );
        assert!(file.is_file(), "{}", file.display());
    }
    assert!(stdout.contains("pass@1"), "{stdout}");
    let got = saved(&preds_file);
    let names: BTreeSet<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["preds", "q_halt_logits"]));
    // The rows of the test split, as the training's evaluation saved them.
    let train = saved(
        &f.run
            .join(format!("step_{}_all_preds.0.safetensors", f.step)),
    );
    let rows = tensor(&train, "inputs").size()[0];
    assert!(rows > 0);
    assert_eq!(tensor(&got, "preds").size(), vec![rows, 900]);
    assert_eq!(tensor(&got, "q_halt_logits").size(), vec![rows]);
    assert_eq!(
        i64s(tensor(&got, "preds")),
        i64s(tensor(&train, "preds")),
        "the same predictions as the training's evaluation"
    );
}

#[test]
fn evaluate_refuses_bad_overrides_clearly() {
    let f = fixture();
    let base = ["evaluate", "--checkpoint", s(&f.run), "--device", "cpu"];
    let with = |ov: &str| {
        let mut a = base.to_vec();
        a.push(ov);
        fails(&a)
    };
    // The weights' shapes: named, with the checkpoint's value.
    let err = with("arch.hidden_size=999");
    assert!(
        err.contains("arch.hidden_size: the checkpoint was trained with 16")
            && err.contains("cannot change at evaluation"),
        "{err}"
    );
    let err = with("arch.L_layers=2");
    assert!(err.contains("arch.L_layers"), "{err}");
    // Unknown key: train's own error.
    let train_err =
        trm_train::config::TrainConfig::from_overrides(&["data_paths=[x]", "arch.no_such_key=1"])
            .expect_err("unknown key")
            .to_string();
    let err = with("arch.no_such_key=1");
    assert!(err.contains(&train_err), "{err} vs train's {train_err}");
    // Unknown evaluator and output names.
    let err = with("evaluators=[{name: nope@Nope}]");
    assert!(err.contains("unknown evaluator \"nope@Nope\""), "{err}");
    let err = with("eval_save_outputs=[pred]");
    assert!(err.contains("unknown output \"pred\""), "{err}");
}

#[test]
fn train_refuses_an_unknown_evaluator_before_training() {
    let f = fixture();
    let run = f.scratch.join("run_bad_evaluator");
    let ov = train_overrides(&f.data, &run);
    let config = ci_config();
    let mut args = vec![
        "train",
        "--config",
        s(&config),
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend(ov.iter().map(String::as_str));
    args.push("evaluators=[{name: arc@ARC, top_k: 3}]");
    let err = fails(&args);
    assert!(err.contains("unknown option top_k"), "{err}");
    args.pop();
    args.push("evaluators=[{name: sudoku@Sudoku}]");
    let err = fails(&args);
    assert!(err.contains("unknown evaluator \"sudoku@Sudoku\""), "{err}");
    assert!(
        trm_train::ckpt::latest(&run).ok().flatten().is_none(),
        "a checkpoint was written"
    );
    // A dataset the ARC evaluator cannot use (no test_puzzles.json): named, before training.
    let data = f.scratch.join("data_without_test_puzzles");
    copy_dir(&f.data, &data);
    std::fs::remove_file(data.join("test_puzzles.json")).expect("remove");
    let ov = train_overrides(&data, &run);
    let mut args = vec![
        "train",
        "--config",
        s(&config),
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend(ov.iter().map(String::as_str));
    let err = fails(&args);
    assert!(
        err.contains("test_puzzles.json") && err.contains("missing"),
        "{err}"
    );
    assert!(
        trm_train::ckpt::latest(&run).ok().flatten().is_none(),
        "a checkpoint was written"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}
