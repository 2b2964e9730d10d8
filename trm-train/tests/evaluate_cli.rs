//! `trm-train evaluate` on the reference fixtures, run as a user runs it on a reference
//! checkpoint folder: `trm-train evaluate --checkpoint <fixture> --data <fixture>/data` (the
//! built binary in a subprocess). The fixtures are `reference-fixtures/` of the shared folder
//! (`$TRM_SHARED`, else `../shared` beside the repository; see its README.md); a missing
//! fixture fails the test.
//!
//! The command's metrics are checked three ways:
//!
//! 1. Exactly against an in-process evaluation of the same checkpoint with the tch model
//!    (`trm_train::run::evaluate` on the reference checkpoint loaded by `load_reference`, the
//!    test split batched by 8): the same code on the same machine, so the JSON values must be
//!    bit-identical and the text output must print the same digits.
//! 2. The in-process metrics against this file's own computation of them (plain f64 arithmetic
//!    following the reference's `models/losses.py`: stablemax cross entropy, BCE with logits)
//!    from the in-process run's saved step-16 outputs (`preds`, `logits`, `q_halt_logits`) and
//!    the labels: checks the loss head and the per-set division, up to f32 rounding.
//! 3. Against the reference's metrics, recomputed the same way from the fixture's
//!    `eval_preds`, `eval_logits_step16` and `eval_q_halt_step16`. These were computed on
//!    another machine, and after 16 ACT steps of the chaotic fixture models the two machines'
//!    rounding differences have grown to O(1) (mlp_t) or ~1e-2 (attention) of the logits (see
//!    `reference_fixtures.rs`, which checks every step). So, as there, each metric may differ
//!    from the reference's by [`common::NOISE_FACTOR`] times its spread over three
//!    rounding-equivalent in-process runs (plain, and H_init, resp. L_init, moved by one ulp),
//!    plus 1e-6. For mlp_t that spread is the metric's spread over unrelated trajectories (the
//!    check then says only that the command's metrics are what this model's metrics look
//!    like); for attention it is a few positions' worth, and the check is tight.
//!
//! The reference pads the last evaluation batch to the global batch size and its `q_halt_loss`
//! sums over padding rows too (their labels are all ignored, so they count as solved). The
//! command batches like the run it evaluates (`global_batch_size` of its `all_config.yaml`, 8 for
//! the fixtures), so the user's default command has no padding rows here and all six metrics
//! are checked; the `--batch-size 8 --json` runs check the explicit option and JSON output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{NOISE_FACTOR, spread};
use tch::{Device, Kind, Tensor};
use trm_train::data::{PuzzleDataset, PuzzleDatasetConfig};
use trm_train::model::load_reference;
use trm_train::run::{EvalOutput, SetMetrics, evaluate};
use trm_train::train::LossKind;

/// The six metrics the command prints per set, in its order.
const METRICS: [&str; 6] = [
    "accuracy",
    "exact_accuracy",
    "lm_loss",
    "q_halt_accuracy",
    "q_halt_loss",
    "steps",
];

/// Runs `trm-train <args>`, asserts success, returns stdout.
fn trm_train(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trm-train"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run trm-train {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "trm-train {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A tensor as f64 values (row-major) and its shape.
fn values(t: &Tensor) -> (Vec<f64>, Vec<i64>) {
    let shape = t.size();
    let flat = t.to_kind(Kind::Double).contiguous().view([-1]);
    (Vec::<f64>::try_from(&flat).expect("f64 values"), shape)
}

/// A tensor of the fixture's expected.safetensors as f64 values (row-major) and its shape.
fn expected(dir: &Path, name: &str) -> (Vec<f64>, Vec<i64>) {
    let all = Tensor::read_safetensors(dir.join("expected.safetensors"))
        .unwrap_or_else(|e| panic!("reading {}/expected.safetensors: {e}", dir.display()));
    let t = all
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("expected.safetensors lacks {name}"));
    values(&t)
}

/// The outputs of a whole evaluation after the last ACT step: argmax predictions
/// `[rows, seq]`, logits `[rows, seq, vocab]`, q_halt `[rows]`.
struct Outputs {
    preds: (Vec<f64>, Vec<i64>),
    logits: (Vec<f64>, Vec<i64>),
    q_halt: Vec<f64>,
}

impl Outputs {
    /// What the reference computed (the fixture's `eval_preds`, `eval_logits_step16`,
    /// `eval_q_halt_step16`).
    fn fixture(dir: &Path) -> Self {
        Outputs {
            preds: expected(dir, "eval_preds"),
            logits: expected(dir, "eval_logits_step16"),
            q_halt: expected(dir, "eval_q_halt_step16").0,
        }
    }

    /// What an in-process evaluation saved (`preds`, `logits`, `q_halt_logits`).
    fn saved(out: &EvalOutput) -> Self {
        let get = |k: &str| {
            out.saved
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| values(t))
                .unwrap_or_else(|| panic!("the evaluation saved no {k}"))
        };
        Outputs {
            preds: get("preds"),
            logits: get("logits"),
            q_halt: get("q_halt_logits").0,
        }
    }
}

/// The evaluation metrics of a batch whose rows all halted after 16 steps, divided by the count
/// of rows with at least one label: the six values the command prints, and that count.
#[derive(Debug)]
struct Metrics {
    count: f64,
    values: Vec<(&'static str, f64)>,
}

impl Metrics {
    fn get(&self, name: &str) -> f64 {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// The `all` set of an in-process evaluation.
    fn of_set(set: &SetMetrics) -> Self {
        let values = METRICS
            .iter()
            .map(|&m| {
                let v = set
                    .get(m)
                    .unwrap_or_else(|| panic!("no {m} in {:?}", set.metrics));
                (m, v)
            })
            .collect();
        Metrics {
            count: set.count,
            values,
        }
    }
}

/// log(s(x_i) / sum_j s(x_j)), s(x) = 1/(1-x) for x < 0, else x + 1 (losses.py, epsilon
/// negligible).
fn log_stablemax(row: &[f64]) -> Vec<f64> {
    let s: Vec<f64> = row
        .iter()
        .map(|&x| {
            if x < 0.0 {
                1.0 / (1.0 - x + 1e-30)
            } else {
                x + 1.0
            }
        })
        .collect();
    let total: f64 = s.iter().sum();
    s.iter().map(|v| (v / total).ln()).collect()
}

/// max(x, 0) - x y + log(1 + exp(-|x|)).
fn bce_with_logits(x: f64, y: f64) -> f64 {
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

/// The metrics of `out` against the labels of the fixture's test split, in f64 following
/// `models/losses.py`.
fn recompute(dir: &Path, out: &Outputs) -> Metrics {
    let split = trm_data::layout::Split::open(&dir.join("data/test")).expect("fixture test split");
    let seq = split.metadata.seq_len;
    let ignore = split.metadata.ignore_label_id.map(i64::from);
    let set = split.set("all").expect("set all");
    let labels: Vec<Option<i64>> = set
        .labels
        .iter()
        .map(|&t| Some(i64::from(t)).filter(|t| Some(*t) != ignore))
        .collect();
    let (preds, pshape) = &out.preds;
    let (logits, lshape) = &out.logits;
    let q_halt = &out.q_halt;
    let rows = labels.len() / seq;
    assert_eq!(*pshape, vec![rows as i64, seq as i64], "preds shape");
    let vocab = lshape[2] as usize;
    assert_eq!(logits.len(), rows * seq * vocab);
    assert_eq!(q_halt.len(), rows);

    let (mut count, mut accuracy, mut exact_accuracy, mut q_halt_accuracy) = (0.0, 0.0, 0.0, 0.0);
    let (mut steps, mut lm_loss, mut q_halt_loss) = (0.0, 0.0, 0.0);
    for (b, &qh) in q_halt.iter().enumerate() {
        let (mut n, mut correct, mut ce) = (0usize, 0usize, 0.0f64);
        for s in 0..seq {
            let i = b * seq + s;
            let Some(label) = labels[i] else { continue };
            n += 1;
            if preds[i] as i64 == label {
                correct += 1;
            }
            let lp = log_stablemax(&logits[i * vocab..(i + 1) * vocab]);
            ce -= lp[label as usize];
        }
        let solved = correct == n;
        q_halt_loss += bce_with_logits(qh, if solved { 1.0 } else { 0.0 });
        if n == 0 {
            continue;
        }
        count += 1.0;
        accuracy += correct as f64 / n as f64;
        exact_accuracy += f64::from(u8::from(solved));
        q_halt_accuracy += f64::from(u8::from((qh >= 0.0) == solved));
        steps += 16.0;
        lm_loss += ce / n as f64;
    }
    assert!(count > 0.0, "the fixture has no labelled rows");
    let values = vec![
        ("accuracy", accuracy / count),
        ("exact_accuracy", exact_accuracy / count),
        ("lm_loss", lm_loss / count),
        ("q_halt_accuracy", q_halt_accuracy / count),
        ("q_halt_loss", q_halt_loss / count),
        ("steps", steps / count),
    ];
    Metrics { count, values }
}

/// Evaluates the fixture's checkpoint in process with the tch model, as the command does
/// (batches of 8, the stablemax loss), saving the step-16 outputs; with `nudge`, that variable
/// moved by one ulp of the forward dtype first.
fn evaluate_in_process(dir: &Path, nudge: Option<&str>) -> EvalOutput {
    let loaded = load_reference(&dir.join("step_0"), Device::Cpu).unwrap();
    if let Some(var) = nudge {
        common::nudge_ulps(&loaded.vs, var, loaded.forward_kind, 1);
    }
    let mut ds = PuzzleDataset::open(
        PuzzleDatasetConfig {
            seed: 0,
            dataset_paths: vec![dir.join("data")],
            global_batch_size: 8,
            test_set_mode: true,
            epochs_per_iter: 1,
            rank: 0,
            num_replicas: 1,
        },
        "test",
    )
    .unwrap();
    let save = ["preds", "logits", "q_halt_logits"].map(str::to_owned);
    evaluate(
        &loaded.model,
        &mut ds,
        LossKind::Stablemax,
        Device::Cpu,
        &save,
    )
    .unwrap()
}

/// The `all` set of an evaluation.
fn all_set(out: &EvalOutput) -> &SetMetrics {
    assert_eq!(out.sets.len(), 1, "one set");
    assert_eq!(out.sets[0].set, "all");
    &out.sets[0]
}

/// `(name, printed value)` pairs of the text output's set `set` (`all (8 examples)` then indented
/// `name value` lines), with the example count.
fn parse_text(stdout: &str, set: &str) -> (f64, Vec<(String, String)>) {
    let mut lines = stdout.lines();
    let header = lines
        .by_ref()
        .find(|l| l.starts_with(&format!("{set} (")))
        .unwrap_or_else(|| panic!("no `{set} (` line in:\n{stdout}"));
    let count: f64 = header
        .trim_start_matches(&format!("{set} ("))
        .trim_end_matches(" examples)")
        .parse()
        .unwrap_or_else(|_| panic!("bad header {header:?}"));
    let metrics = lines
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let mut it = l.split_whitespace();
            let (Some(n), Some(v)) = (it.next(), it.next()) else {
                panic!("bad metric line {l:?}");
            };
            (n.to_owned(), v.to_owned())
        })
        .collect();
    (count, metrics)
}

fn assert_close(what: &str, got: f64, want: f64, abs: f64, rel: f64) {
    let tol = abs + rel * want.abs();
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, expected {want} (tolerance {tol})"
    );
}

/// The fixture folder; panics, failing the test, when it lacks `expected.safetensors`.
fn fixture(name: &str) -> PathBuf {
    let expected = common::shared(&format!("reference-fixtures/{name}/expected.safetensors"));
    expected.parent().expect("a fixture folder").to_path_buf()
}

/// `--batch-size 8 --json` (no padding rows): all six metrics, checked the three ways of the
/// file's comment.
fn check_unpadded(name: &str) {
    let dir = fixture(name);
    let d = dir.to_str().expect("utf-8 path");
    let data = dir.join("data");
    let stdout = trm_train(&[
        "evaluate",
        "--checkpoint",
        d,
        "--data",
        data.to_str().expect("utf-8 path"),
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{stdout}"));
    let command = |k: &str| {
        json.get(format!("all/{k}"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("no all/{k} in {json}"))
    };

    // 1. The command against the same evaluation in process: bit-identical.
    let runs: Vec<EvalOutput> = [None, Some("inner.H_init"), Some("inner.L_init")]
        .into_iter()
        .map(|nudge| evaluate_in_process(&dir, nudge))
        .collect();
    let ours = Metrics::of_set(all_set(&runs[0]));
    let keys: Vec<String> = json
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect();
    let want_keys: Vec<String> = runs[0].flat().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys.iter().collect::<std::collections::BTreeSet<_>>(),
        want_keys.iter().collect(),
        "the command's metrics"
    );
    for (k, v) in runs[0].flat() {
        let got = json[&k].as_f64().expect("a number");
        assert_eq!(
            got.to_bits(),
            v.to_bits(),
            "{name}: {k}: command {got}, in process {v}"
        );
    }

    // 2. The in-process metrics against this file's f64 computation from its outputs.
    let mine = recompute(&dir, &Outputs::saved(&runs[0]));
    assert_eq!(ours.count, mine.count, "{name}: examples counted");
    for m in METRICS {
        let (abs, rel) = if m.ends_with("loss") {
            (1e-6, 1e-5)
        } else {
            (1e-6, 0.0)
        };
        assert_close(&format!("{name}: {m}"), ours.get(m), mine.get(m), abs, rel);
    }

    // 3. Against the reference's metrics, within the rounding noise of 16 chaotic steps.
    let reference = recompute(&dir, &Outputs::fixture(&dir));
    assert_eq!(ours.count, reference.count, "{name}: examples counted");
    let all: Vec<Metrics> = runs.iter().map(|r| Metrics::of_set(all_set(r))).collect();
    println!(
        "{name}: {:<16} {:>10} {:>10} | {:>10} {:>10} {:>6}",
        "metric", "command", "reference", "|error|", "spread", "ratio"
    );
    let mut failures = Vec::new();
    for m in METRICS {
        let (got, want) = (command(m), reference.get(m));
        let err = (got - want).abs();
        let s = spread(&all, |a, b| (a.get(m) - b.get(m)).abs());
        let ratio = err / s.max(1e-6);
        println!("{name}: {m:<16} {got:>10.6} {want:>10.6} | {err:>10.3e} {s:>10.3e} {ratio:>6.2}");
        if err > NOISE_FACTOR * s + 1e-6 {
            failures.push(format!(
                "{m}: command {got}, reference fixture {want}: error {err:e} > {NOISE_FACTOR} x \
                 spread {s:e} + 1e-6"
            ));
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn evaluate_unpadded_matches_reference_mlp_t_f32() {
    check_unpadded("sudoku-mlp_t-d64-f32");
}

#[test]
fn evaluate_unpadded_matches_reference_att_f32() {
    check_unpadded("sudoku-att-d64-f32");
}

/// The exact command a user runs on a reference checkpoint folder (default device and batch,
/// text output): the same digits as the in-process evaluation printed the command's way.
#[test]
fn evaluate_reference_checkpoint_folder_as_users_run_it() {
    let dir = fixture("sudoku-mlp_t-d64-f32");
    let d = dir.to_str().expect("utf-8 path");
    let data = dir.join("data");
    let stdout = trm_train(&[
        "evaluate",
        "--checkpoint",
        d,
        "--data",
        data.to_str().expect("utf-8 path"),
    ]);
    // The command batches like the run it evaluates (all_config.yaml: global_batch_size 8, no
    // padding rows), as the in-process evaluation does.
    let ours = Metrics::of_set(all_set(&evaluate_in_process(&dir, None)));
    let (count, printed) = parse_text(&stdout, "all");
    assert_eq!(count, ours.count, "examples counted");
    assert_eq!(
        printed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        METRICS,
        "the printed metrics"
    );
    for (m, text) in printed {
        assert_eq!(
            text,
            format!("{:.6}", ours.get(&m)),
            "{m}: command printed {text}, in process {}",
            ours.get(&m)
        );
    }
}
