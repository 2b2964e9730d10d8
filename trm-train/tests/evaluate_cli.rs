//! `trm-train evaluate` on the reference fixtures, run as a user runs it on a reference
//! checkpoint folder: `trm-train evaluate --checkpoint <fixture> --data <fixture>/data` (the
//! built binary in a subprocess). The fixtures are found through `TRM_REFERENCE_FIXTURES`, else
//! `<CARGO_MANIFEST_DIR>/../../shared/reference-fixtures` (see its README.md).
//!
//! Each fixture's `expected.safetensors` holds what the reference computed in eval mode on the
//! fixture's 8 puzzles: `eval_preds` (argmax after 16 ACT steps), `eval_logits_step16` and
//! `eval_q_halt_step16`. The test recomputes the reference's evaluation metrics from those and
//! from the labels in `data/test` (plain f64 arithmetic in this file, following
//! `models/losses.py`: stablemax cross entropy, BCE with logits) and compares them with what the
//! command prints. `accuracy` and `exact_accuracy` are computed from `eval_preds` and the
//! labels, so they agree only if the command's predictions match the reference's token for token
//! wherever it matters to the count.
//!
//! The reference pads the last evaluation batch to the global batch size and its `q_halt_loss`
//! sums over padding rows too (their labels are all ignored, so they count as solved). The
//! command batches like the run it evaluates (`global_batch_size` of its `all_config.yaml`, 8 for
//! the fixtures), so the user's default command has no padding rows here and all six metrics
//! are checked; the `--batch-size 8 --json` runs check the explicit option and JSON output.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Kind, Tensor};

fn fixtures_root() -> PathBuf {
    std::env::var_os("TRM_REFERENCE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference-fixtures")
        })
}

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

/// A tensor of the fixture's expected.safetensors as f64 values (row-major) and its shape.
fn expected(dir: &Path, name: &str) -> (Vec<f64>, Vec<i64>) {
    let all = Tensor::read_safetensors(dir.join("expected.safetensors"))
        .unwrap_or_else(|e| panic!("reading {}/expected.safetensors: {e}", dir.display()));
    let t = all
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("expected.safetensors lacks {name}"));
    let shape = t.size();
    let flat = t.to_kind(Kind::Double).contiguous().view([-1]);
    (Vec::<f64>::try_from(&flat).expect("f64 values"), shape)
}

/// The reference's evaluation metrics of the fixture's batch (all rows halted after 16 steps),
/// divided by the count of rows with at least one label: the six values the command prints.
#[derive(Debug)]
struct Reference {
    count: f64,
    accuracy: f64,
    exact_accuracy: f64,
    q_halt_accuracy: f64,
    steps: f64,
    lm_loss: f64,
    q_halt_loss: f64,
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

fn reference_metrics(dir: &Path) -> Reference {
    let split = trm_data::layout::Split::open(&dir.join("data/test")).expect("fixture test split");
    let seq = split.metadata.seq_len;
    let ignore = split.metadata.ignore_label_id.map(i64::from);
    let set = split.set("all").expect("set all");
    let labels: Vec<Option<i64>> = set
        .labels
        .iter()
        .map(|&t| Some(i64::from(t)).filter(|t| Some(*t) != ignore))
        .collect();
    let (preds, pshape) = expected(dir, "eval_preds");
    let (logits, lshape) = expected(dir, "eval_logits_step16");
    let (q_halt, _) = expected(dir, "eval_q_halt_step16");
    let rows = labels.len() / seq;
    assert_eq!(pshape, vec![rows as i64, seq as i64], "eval_preds shape");
    let vocab = lshape[2] as usize;
    assert_eq!(logits.len(), rows * seq * vocab);
    assert_eq!(q_halt.len(), rows);

    let mut r = Reference {
        count: 0.0,
        accuracy: 0.0,
        exact_accuracy: 0.0,
        q_halt_accuracy: 0.0,
        steps: 0.0,
        lm_loss: 0.0,
        q_halt_loss: 0.0,
    };
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
        r.q_halt_loss += bce_with_logits(qh, if solved { 1.0 } else { 0.0 });
        if n == 0 {
            continue;
        }
        r.count += 1.0;
        r.accuracy += correct as f64 / n as f64;
        r.exact_accuracy += f64::from(u8::from(solved));
        r.q_halt_accuracy += f64::from(u8::from((qh >= 0.0) == solved));
        r.steps += 16.0;
        r.lm_loss += ce / n as f64;
    }
    assert!(r.count > 0.0, "the fixture has no labelled rows");
    for v in [
        &mut r.accuracy,
        &mut r.exact_accuracy,
        &mut r.q_halt_accuracy,
        &mut r.steps,
        &mut r.lm_loss,
        &mut r.q_halt_loss,
    ] {
        *v /= r.count;
    }
    r
}

/// `(name, value)` pairs of the text output's set `set` (`all (8 examples)` then indented
/// `name value` lines), with the example count.
fn parse_text(stdout: &str, set: &str) -> (f64, Vec<(String, f64)>) {
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
            (
                n.to_owned(),
                v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect();
    (count, metrics)
}

fn get(metrics: &[(String, f64)], name: &str) -> f64 {
    metrics
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no metric {name} in {metrics:?}"))
}

fn assert_close(what: &str, got: f64, want: f64, abs: f64, rel: f64) {
    let tol = abs + rel * want.abs();
    assert!(
        (got - want).abs() <= tol,
        "{what}: command gave {got}, reference fixture gives {want} (tolerance {tol})"
    );
}

/// The fixture folder, or `None` (with a message) when the fixtures are not there.
fn fixture(name: &str) -> Option<PathBuf> {
    let dir = fixtures_root().join(name);
    if dir.join("expected.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: no reference fixture at {}", dir.display());
        None
    }
}

/// `--batch-size 8` (no padding rows): all six metrics, from the JSON output.
fn check_unpadded(name: &str) {
    let Some(dir) = fixture(name) else { return };
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
    let r = reference_metrics(&dir);
    let m = |k: &str| {
        json.get(format!("all/{k}"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("no all/{k} in {json}"))
    };
    // Counting metrics: exact up to the f32 division of the loss head.
    assert_close("accuracy", m("accuracy"), r.accuracy, 1e-6, 0.0);
    assert_close(
        "exact_accuracy",
        m("exact_accuracy"),
        r.exact_accuracy,
        1e-6,
        0.0,
    );
    assert_close(
        "q_halt_accuracy",
        m("q_halt_accuracy"),
        r.q_halt_accuracy,
        1e-6,
        0.0,
    );
    assert_close("steps", m("steps"), r.steps, 1e-9, 0.0);
    // Losses: our logits against the reference's, float rounding apart.
    assert_close("lm_loss", m("lm_loss"), r.lm_loss, 1e-6, 1e-4);
    assert_close("q_halt_loss", m("q_halt_loss"), r.q_halt_loss, 1e-6, 1e-3);
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
/// text output).
#[test]
fn evaluate_reference_checkpoint_folder_as_users_run_it() {
    let Some(dir) = fixture("sudoku-mlp_t-d64-f32") else {
        return;
    };
    let d = dir.to_str().expect("utf-8 path");
    let data = dir.join("data");
    let stdout = trm_train(&[
        "evaluate",
        "--checkpoint",
        d,
        "--data",
        data.to_str().expect("utf-8 path"),
    ]);
    let r = reference_metrics(&dir);
    let (count, m) = parse_text(&stdout, "all");
    assert_eq!(count, r.count, "examples counted");
    // Printed with 6 decimals.
    let p = 5e-7;
    assert_close("accuracy", get(&m, "accuracy"), r.accuracy, 1e-6 + p, 0.0);
    assert_close(
        "exact_accuracy",
        get(&m, "exact_accuracy"),
        r.exact_accuracy,
        1e-6 + p,
        0.0,
    );
    assert_close(
        "q_halt_accuracy",
        get(&m, "q_halt_accuracy"),
        r.q_halt_accuracy,
        1e-6 + p,
        0.0,
    );
    assert_close("steps", get(&m, "steps"), r.steps, p, 0.0);
    assert_close("lm_loss", get(&m, "lm_loss"), r.lm_loss, p, 1e-4);
    // The command batches like the run it evaluates (all_config.yaml: global_batch_size 8), so
    // there are no padding rows and q_halt_loss is the real rows' sum.
    assert_close(
        "q_halt_loss",
        get(&m, "q_halt_loss"),
        r.q_halt_loss,
        p,
        1e-3,
    );
}
