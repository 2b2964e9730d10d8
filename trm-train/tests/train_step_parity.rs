//! The training step against the reference's: on each shared fixture (see
//! `reference-fixtures/README.md` in the shared folder, `$TRM_SHARED`, else `../shared` beside
//! the repository), one train-mode ACT step from the initial carry on the fixture's 8 training
//! puzzles gives the reference's loss, metrics and the gradient of loss / 8 for every trained
//! parameter and for the batch's puzzle embedding rows. Also: the loss head against a hand
//! computation, and the carry's bookkeeping across two steps against independent runs of the
//! model.
//!
//! The fixtures were computed by the reference code on another machine, whose matmul kernels
//! round differently (see `reference_fixtures.rs`). In f32 one ACT step keeps that difference
//! small, and the f32 fixtures are held to fixed tolerances (1e-5 relative for loss and metrics,
//! 1e-4 of the largest gradient element; the one-ulp noise of this step is ~1e-6 and ~5e-5).
//! In bf16 the same rounding differences already reach ~50% of a gradient's size and flip
//! halting decisions (so the counting metrics move by whole rows), so the bf16 fixture is judged
//! against the measured noise instead: the spread of three rounding-equivalent steps (plain, and
//! with H_init, resp. L_init, moved by one bf16 ulp), times [`common::NOISE_FACTOR`] (mean
//! measures of gradients: [`common::MEAN_NOISE_FACTOR`]), plus one bf16 ulp of the value.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{MEAN_NOISE_FACTOR, NOISE_FACTOR, epsilon, mean_rel, rel_to_max, spread};
use tch::{Device, Kind, Tensor};
use trm_train::model::{LoadedReference, load_reference};
use trm_train::train::{
    Batch, HaltingOptions, IGNORE_LABEL_ID, LossInputs, LossKind, TrainCarry, TrainOptions,
    act_loss, act_train_step, train_step,
};

/// One fixture's folder (missing: the test fails, saying how to set `TRM_SHARED`).
fn fixture(name: &str) -> PathBuf {
    common::shared(&format!("reference-fixtures/{name}"))
}

/// The fixture's training batch, read through trm-data (`ignore_label_id` mapped to -100).
fn train_batch(dir: &Path) -> Batch {
    let split = trm_data::layout::Split::open(&dir.join("data/train")).unwrap();
    let set = split.set("all").unwrap();
    let ids: Vec<i32> = set.examples().map(|e| e.puzzle_identifier).collect();
    Batch::from_tokens(
        &set.inputs,
        &set.labels,
        &ids,
        split.metadata.seq_len,
        split.metadata.ignore_label_id,
        Device::Cpu,
    )
    .unwrap()
}

struct Expected(Vec<(String, Tensor)>);

impl Expected {
    fn read(dir: &Path) -> Self {
        Expected(Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap())
    }
    fn get(&self, k: &str) -> Tensor {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, t)| t.shallow_clone())
            .unwrap_or_else(|| panic!("expected.safetensors lacks {k}"))
    }
    fn grad_names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .filter_map(|(n, _)| n.strip_prefix("grad.").map(str::to_owned))
            .collect()
    }
}

/// |a - b| / max(|b|, 1e-12) of two scalars.
fn rel_scalar(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// What one train step on a fixture produced: loss and metrics under their fixture names
/// (`train_loss`, `train_metric_<name>`), and gradients under the reference's names.
struct StepResult {
    scalars: Vec<(String, f64)>,
    grads: Vec<(String, Tensor)>,
}

/// One train step on the fixture's batch from the initial carry, and the backward pass of
/// loss / 8, with the fixture's checkpoint; with `nudge`, that variable moved by one ulp of the
/// forward dtype first. Checks that the metric and gradient names are the fixture's.
fn train_once(
    dir: &Path,
    expected: &Expected,
    options: &TrainOptions,
    nudge: Option<&str>,
) -> StepResult {
    let LoadedReference {
        vs,
        model,
        forward_kind,
    } = load_reference(&dir.join("step_0"), Device::Cpu).unwrap();
    if let Some(var) = nudge {
        common::nudge_ulps(&vs, var, forward_kind, 1);
    }
    let batch = train_batch(dir);
    let b = batch.puzzle_identifiers.size()[0];
    assert_eq!(b, 8);

    let mut carry = TrainCarry::new(&model, b, Device::Cpu, 0).unwrap();
    let out = train_step(&model, &mut carry, &batch, options).unwrap();
    out.loss
        .f_mul_scalar(1.0 / b as f64)
        .unwrap()
        .f_backward()
        .unwrap();

    let mut scalars = vec![("train_loss".to_owned(), out.loss.double_value(&[]))];
    let values = out.metrics.values().unwrap();
    let names: BTreeSet<&str> = values.iter().map(|(n, _)| *n).collect();
    let want_names: BTreeSet<String> = expected
        .0
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("train_metric_").map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        want_names
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        "metric names differ"
    );
    scalars.extend(
        values
            .iter()
            .map(|(n, v)| (format!("train_metric_{n}"), *v)),
    );

    // Gradients: every trained variable, and the puzzle embedding rows.
    let mut grads: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (n, t.grad()))
        .collect();
    let local = out
        .puzzle_local_weights
        .as_ref()
        .expect("fixture has a puzzle embedding");
    grads.push(("inner.puzzle_emb.local_weights".into(), local.grad()));
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        grads
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<BTreeSet<_>>(),
        expected.grad_names(),
        "trained tensors differ from the reference's gradients"
    );
    for (n, g) in &grads {
        assert!(g.defined(), "{n}: no gradient");
    }
    StepResult { scalars, grads }
}

/// One train step on a fixture, compared with the reference's loss, metrics and gradients.
/// `scalar_tol`: relative tolerance of loss and metrics; `grad_tol`: of gradients (max abs
/// difference / max abs expected).
fn run_fixture(name: &str, options: &TrainOptions, scalar_tol: f64, grad_tol: f64) {
    let dir = fixture(name);
    let expected = Expected::read(&dir);
    let ours = train_once(&dir, &expected, options, None);

    println!(
        "{name}: {:<58} {:>12} {:>12} {:>10}",
        "quantity", "ours", "reference", "rel err"
    );
    let mut worst_scalar: f64 = 0.0;
    let mut failures = Vec::new();
    for (what, v) in &ours.scalars {
        let want = expected.get(what).double_value(&[]);
        let r = rel_scalar(*v, want);
        println!("{name}: {what:<58} {v:>12.6} {want:>12.6} {r:>10.2e}");
        worst_scalar = worst_scalar.max(r);
        if r > scalar_tol {
            failures.push(format!("{what}: ours {v}, reference {want}, rel {r:e}"));
        }
    }
    let mut worst_grad: f64 = 0.0;
    for (n, g) in &ours.grads {
        let want = expected.get(&format!("grad.{n}"));
        let r = rel_to_max(g, &want);
        let scale = want.abs().max().double_value(&[]);
        println!("{name}: grad.{n:<53} max|g| {scale:>10.3e} rel {r:>10.2e}");
        worst_grad = worst_grad.max(r);
        if r > grad_tol {
            failures.push(format!("grad.{n}: rel {r:e} > {grad_tol:e}"));
        }
    }
    println!("{name}: worst scalar rel {worst_scalar:.2e}, worst gradient rel {worst_grad:.2e}");
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

/// One train step on a fixture, compared with the reference's within the measured noise: the
/// spread of three rounding-equivalent steps (plain, H_init and L_init moved by one ulp).
fn run_fixture_within_noise(name: &str, kind: Kind, options: &TrainOptions) {
    let dir = fixture(name);
    let expected = Expected::read(&dir);
    let runs: Vec<StepResult> = [None, Some("inner.H_init"), Some("inner.L_init")]
        .into_iter()
        .map(|nudge| train_once(&dir, &expected, options, nudge))
        .collect();
    let floor = epsilon(kind);
    let mut failures = Vec::new();
    let mut worst: f64 = 0.0;
    let mut judge = |what: &str, err: f64, factor: f64, spread: f64, floor: f64| {
        let ratio = err / spread.max(floor).max(f64::MIN_POSITIVE);
        worst = worst.max(ratio);
        if err > factor * spread + floor {
            failures.push(format!(
                "{what}: fixture error {err:.3e} > {factor} x spread {spread:.3e} + {floor:.1e}"
            ));
        }
        ratio
    };

    println!(
        "{name}: {:<32} {:>10} {:>10} | {:>10} {:>10} {:>6}",
        "quantity", "ours", "reference", "|error|", "spread", "ratio"
    );
    for (i, (what, v)) in runs[0].scalars.iter().enumerate() {
        let want = expected.get(what).double_value(&[]);
        let err = (v - want).abs();
        let s = spread(&runs, |a, b| (a.scalars[i].1 - b.scalars[i].1).abs());
        let ratio = judge(what, err, NOISE_FACTOR, s, floor * want.abs());
        println!(
            "{name}: {what:<32} {v:>10.5} {want:>10.5} | {err:>10.3e} {s:>10.3e} {ratio:>6.2}"
        );
    }
    println!(
        "{name}: {:<53} | max: error (spread) ratio | mean: error (spread) ratio",
        "gradient"
    );
    for (i, (n, g)) in runs[0].grads.iter().enumerate() {
        let want = expected.get(&format!("grad.{n}"));
        let e_max = rel_to_max(g, &want);
        let s_max = spread(&runs, |a, b| rel_to_max(&a.grads[i].1, &b.grads[i].1));
        let e_mean = mean_rel(g, &want);
        let s_mean = spread(&runs, |a, b| mean_rel(&a.grads[i].1, &b.grads[i].1));
        let what = format!("grad.{n}");
        let r_max = judge(&format!("{what} max"), e_max, NOISE_FACTOR, s_max, floor);
        let r_mean = judge(
            &format!("{what} mean"),
            e_mean,
            MEAN_NOISE_FACTOR,
            s_mean,
            floor,
        );
        println!(
            "{name}: {what:<53} | {e_max:.2e} ({s_max:.2e}) {r_max:.2} | {e_mean:.2e} \
             ({s_mean:.2e}) {r_mean:.2}"
        );
    }
    println!("{name}: worst error / spread ratio {worst:.2}");
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

fn reference_options() -> TrainOptions {
    // The fixtures: stablemax, no_ACT_continue, halt_exploration_prob 0.
    TrainOptions {
        loss: LossKind::Stablemax,
        halting: HaltingOptions {
            halt_exploration_prob: 0.0,
            no_act_continue: true,
        },
    }
}

#[test]
fn mlp_t_f32_train_step_matches_reference() {
    run_fixture("sudoku-mlp_t-d64-f32", &reference_options(), 1e-5, 1e-4);
}

#[test]
fn attention_f32_train_step_matches_reference() {
    run_fixture("sudoku-att-d64-f32", &reference_options(), 1e-5, 1e-4);
}

/// bf16 activations: within the measured rounding noise (see the file's comment).
#[test]
fn mlp_t_bf16_train_step_matches_reference() {
    run_fixture_within_noise(
        "sudoku-mlp_t-d64-bf16",
        Kind::BFloat16,
        &reference_options(),
    );
}

/// Softmax in place of stablemax must not pass the parity check (the check can fail).
#[test]
#[should_panic(expected = "train_loss")]
fn softmax_loss_fails_the_parity_check() {
    let options = TrainOptions {
        loss: LossKind::Softmax,
        ..reference_options()
    };
    run_fixture("sudoku-mlp_t-d64-f32", &options, 1e-5, 1e-4);
}

/// Softmax in place of stablemax must not pass the bf16 check within the noise either.
#[test]
#[should_panic(expected = "train_loss")]
fn softmax_loss_fails_the_bf16_noise_check() {
    let options = TrainOptions {
        loss: LossKind::Softmax,
        ..reference_options()
    };
    run_fixture_within_noise("sudoku-mlp_t-d64-bf16", Kind::BFloat16, &options);
}

/// Stablemax's `s`: `x + 1` for x >= 0, `1 / (1 - x)` below, and its derivative.
fn s(x: f64) -> (f64, f64) {
    if x < 0.0 {
        (1.0 / (1.0 - x), 1.0 / ((1.0 - x) * (1.0 - x)))
    } else {
        (x + 1.0, 1.0)
    }
}

/// The loss head against a hand computation in f64: value, metrics and gradient of the
/// logits and of q_halt.
#[test]
fn loss_head_matches_hand_computation() {
    // B = 2, S = 3, V = 4.
    let logits_v: [[[f64; 4]; 3]; 2] = [
        [
            [0.5, -1.5, 2.0, 0.25],
            [1.0, 1.0, -3.0, 0.0],
            [-0.5, 0.75, -2.0, 1.5],
        ],
        [
            [-1.0, 2.5, 0.5, -0.25],
            [0.0, -0.5, 1.25, 3.0],
            [2.0, -1.0, 0.5, 2.5],
        ],
    ];
    // Row 0: position 1 ignored; predictions 2 (correct), -, 3 (label 1: wrong).
    // Row 1: predictions 1, 3, 3, all correct.
    let labels_v: [[i64; 3]; 2] = [[2, IGNORE_LABEL_ID, 1], [1, 3, 3]];
    let q_halt_v = [0.7f64, -0.4];
    let halted_v = [true, true];
    let steps_v = [3i32, 5];

    let flat: Vec<f64> = logits_v.iter().flatten().flatten().copied().collect();
    let logits = Tensor::from_slice(&flat)
        .view([2, 3, 4])
        .set_requires_grad(true);
    let labels = Tensor::from_slice(&labels_v.concat()).view([2, 3]);
    let q_halt = Tensor::from_slice(&q_halt_v).set_requires_grad(true);
    let q_continue = Tensor::zeros([2], (Kind::Double, Device::Cpu));
    let halted = Tensor::from_slice(&halted_v);
    let steps = Tensor::from_slice(&steps_v);
    let inputs = LossInputs {
        logits: &logits,
        q_halt: &q_halt,
        q_continue: &q_continue,
        target_q_continue: None,
        labels: &labels,
        halted: &halted,
        steps: &steps,
    };
    let (loss, metrics) = act_loss(&inputs, LossKind::Stablemax).unwrap();
    loss.backward();

    // By hand.
    let mut lm = 0.0;
    let mut grad = [0.0f64; 24];
    let mut seq_correct = [false; 2];
    let mut accuracy = 0.0;
    for b in 0..2 {
        let valid: Vec<usize> = (0..3)
            .filter(|&t| labels_v[b][t] != IGNORE_LABEL_ID)
            .collect();
        let n = valid.len() as f64;
        let mut correct = 0;
        for &t in &valid {
            let x = &logits_v[b][t];
            let y = labels_v[b][t] as usize;
            let total: f64 = x.iter().map(|&v| s(v).0).sum();
            lm += -(s(x[y]).0 / total).ln() / n;
            for j in 0..4 {
                let dj = s(x[j]).1;
                let mut g = dj / total;
                if j == y {
                    g -= dj / s(x[y]).0;
                }
                grad[(b * 3 + t) * 4 + j] = g / n;
            }
            let argmax = (0..4).fold(0, |m, j| if x[j] > x[m] { j } else { m });
            correct += usize::from(argmax == y);
        }
        seq_correct[b] = correct == valid.len();
        accuracy += correct as f64 / n;
    }
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut q_loss = 0.0;
    let mut q_grad = [0.0; 2];
    for b in 0..2 {
        let (x, t) = (q_halt_v[b], f64::from(u8::from(seq_correct[b])));
        q_loss += x.max(0.0) - x * t + (1.0 + (-x.abs()).exp()).ln();
        q_grad[b] = 0.5 * (sigmoid(x) - t);
    }
    assert_eq!(
        seq_correct,
        [false, true],
        "the case is built with one exact row"
    );

    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    };
    close(loss.double_value(&[]), lm + 0.5 * q_loss, "total loss");
    close(metrics.lm_loss.double_value(&[]), lm, "lm_loss");
    close(metrics.q_halt_loss.double_value(&[]), q_loss, "q_halt_loss");
    assert_eq!(metrics.count.int64_value(&[]), 2);
    close(metrics.accuracy.double_value(&[]), accuracy, "accuracy");
    assert_eq!(metrics.exact_accuracy.int64_value(&[]), 1);
    // q_halt >= 0 vs exact: row 0 (0.7, wrong) disagrees, row 1 (-0.4, exact) disagrees.
    assert_eq!(metrics.q_halt_accuracy.int64_value(&[]), 0);
    assert_eq!(metrics.steps.int64_value(&[]), 8);
    let g = logits.grad().view([-1]);
    for (i, want) in grad.iter().enumerate() {
        close(
            g.double_value(&[i as i64]),
            *want,
            &format!("d loss / d logit {i}"),
        );
    }
    let gq = q_halt.grad();
    for (b, want) in q_grad.iter().enumerate() {
        close(
            gq.double_value(&[b as i64]),
            *want,
            &format!("d loss / d q_halt {b}"),
        );
    }

    // Metrics count only halted rows: un-halt row 1.
    let halted = Tensor::from_slice(&[true, false]);
    let (_, m) = act_loss(
        &LossInputs {
            halted: &halted,
            ..inputs
        },
        LossKind::Stablemax,
    )
    .unwrap();
    assert_eq!(m.count.int64_value(&[]), 1);
    assert_eq!(m.exact_accuracy.int64_value(&[]), 0);
    assert_eq!(m.steps.int64_value(&[]), 3);
    assert_eq!(m.q_halt_accuracy.int64_value(&[]), 0);
    close(
        m.lm_loss.double_value(&[]),
        lm,
        "lm_loss does not depend on halting",
    );
}

/// Softmax cross entropy against a hand computation, and the q_continue term.
#[test]
fn softmax_and_q_continue_match_hand_computation() {
    let x = [0.3f64, -1.2, 2.2];
    let logits = Tensor::from_slice(&x)
        .view([1, 1, 3])
        .to_kind(Kind::Float)
        .set_requires_grad(true);
    let labels = Tensor::from_slice(&[0i64]).view([1, 1]);
    let q_halt = Tensor::from_slice(&[0.2f32]);
    let q_continue = Tensor::from_slice(&[-0.6f32]).set_requires_grad(true);
    let target = Tensor::from_slice(&[0.25f32]);
    let halted = Tensor::from_slice(&[false]);
    let steps = Tensor::from_slice(&[1i32]);
    let inputs = LossInputs {
        logits: &logits,
        q_halt: &q_halt,
        q_continue: &q_continue,
        target_q_continue: Some(&target),
        labels: &labels,
        halted: &halted,
        steps: &steps,
    };
    let (loss, m) = act_loss(&inputs, LossKind::Softmax).unwrap();
    loss.backward();
    let lse = x.iter().map(|v| v.exp()).sum::<f64>().ln();
    let ce = lse - x[0];
    let bce = |z: f64, t: f64| z.max(0.0) - z * t + (1.0 + (-z.abs()).exp()).ln();
    let qh = bce(0.2, 0.0); // argmax is 2, label 0: not exact.
    let qc = bce(-0.6, 0.25);
    let tol = 1e-5;
    assert!((m.lm_loss.double_value(&[]) - ce).abs() < tol);
    assert!((m.q_continue_loss.as_ref().unwrap().double_value(&[]) - qc).abs() < tol);
    assert!((loss.double_value(&[]) - (ce + 0.5 * (qh + qc))).abs() < tol);
    let sig = 1.0 / (1.0 + 0.6f64.exp());
    assert!((q_continue.grad().double_value(&[0]) - 0.5 * (sig - 0.25)).abs() < tol);
    let g0 = logits.grad().double_value(&[0, 0, 0]);
    assert!((g0 - ((x[0] - lse).exp() - 1.0)).abs() < tol);
    assert_eq!(m.count.int64_value(&[]), 0, "nothing halted");
}

/// Across two steps: halted rows restart on the new batch from H_init/L_init, the others keep
/// their data and state and count a second step; logits equal independent runs of the model.
#[test]
fn carry_restarts_only_halted_rows() {
    let dir = fixture("sudoku-mlp_t-d64-f32");
    let loaded = load_reference(&dir.join("step_0"), Device::Cpu).unwrap();
    let model = &loaded.model;
    let first = train_batch(&dir);
    // The second batch: the same puzzles in reverse order.
    let rev = Tensor::arange_start_step(7, -1, -1, (Kind::Int64, Device::Cpu));
    let second = Batch {
        inputs: first.inputs.index_select(0, &rev),
        labels: first.labels.index_select(0, &rev),
        puzzle_identifiers: first.puzzle_identifiers.index_select(0, &rev),
    };
    let options = reference_options();
    let mut carry = TrainCarry::new(model, 8, Device::Cpu, 1).unwrap();
    let _ = train_step(model, &mut carry, &first, &options).unwrap();
    let halted1: Vec<bool> = Vec::<bool>::try_from(&carry.halted).unwrap();
    assert!(
        halted1.iter().any(|&h| h) && !halted1.iter().all(|&h| h),
        "fixture halts some rows: {halted1:?}"
    );
    let out2 = train_step(model, &mut carry, &second, &options).unwrap();

    // Independent: eval-path runs of the model on each row's data.
    let _no_grad = tch::no_grad_guard();
    let embed = |batch_inputs: &Tensor, ids: &Tensor| {
        let rows = model.puzzle_rows(ids).unwrap();
        model.input_embeddings(batch_inputs, rows.as_ref()).unwrap()
    };
    let x1 = embed(&first.inputs, &first.puzzle_identifiers);
    let x2 = embed(&second.inputs, &second.puzzle_identifiers);
    let c0 = model.initial_carry(8).unwrap();
    let (c1, _) = model.act_step(&c0, &x1).unwrap();
    let (_, cont) = model.act_step(&c1, &x1).unwrap(); // rows that kept going
    let (_, fresh) = model.act_step(&c0, &x2).unwrap(); // rows that restarted
    let steps: Vec<i32> = Vec::<i32>::try_from(&carry.steps).unwrap();
    for (r, &h) in halted1.iter().enumerate() {
        let r64 = r as i64;
        let (want_logits, want_data, want_steps) = if h {
            (fresh.logits.get(r64), second.inputs.get(r64), 1)
        } else {
            (cont.logits.get(r64), first.inputs.get(r64), 2)
        };
        let err = rel_to_max(&out2.logits.get(r64), &want_logits);
        assert!(
            err < 1e-5,
            "row {r} (halted after step 1: {h}): logits rel err {err:e}"
        );
        assert_eq!(steps[r], want_steps, "row {r} steps");
        assert!(
            carry
                .current_data
                .inputs
                .get(r64)
                .to_kind(Kind::Int64)
                .equal(&want_data.to_kind(Kind::Int64)),
            "row {r} data"
        );
    }
}

/// The halting rule: with `no_ACT_continue` off, halting compares q_halt with q_continue and
/// the continue target is the sigmoid of the next step's best Q (an independent second ACT
/// step); with exploration probability 1 no sequence may halt after its first step.
#[test]
fn halting_rule_and_continue_target() {
    let dir = fixture("sudoku-mlp_t-d64-f32");
    let loaded = load_reference(&dir.join("step_0"), Device::Cpu).unwrap();
    let model = &loaded.model;
    let batch = train_batch(&dir);

    let with_continue = HaltingOptions {
        halt_exploration_prob: 0.0,
        no_act_continue: false,
    };
    let mut carry = TrainCarry::new(model, 8, Device::Cpu, 3).unwrap();
    let out = act_train_step(model, &mut carry, &batch, &with_continue).unwrap();
    let target = out.target_q_continue.as_ref().expect("continue target");

    let _no_grad = tch::no_grad_guard();
    let rows = model.puzzle_rows(&batch.puzzle_identifiers).unwrap();
    let x = model
        .input_embeddings(&batch.inputs, rows.as_ref())
        .unwrap();
    let (c1, first) = model
        .act_step(&model.initial_carry(8).unwrap(), &x)
        .unwrap();
    let (_, next) = model.act_step(&c1, &x).unwrap();
    // halt_max_steps is 16, so no row is at its last step: the target is the best next Q.
    let want = next.q_halt.maximum(&next.q_continue).sigmoid();
    let err = rel_to_max(target, &want);
    assert!(err < 1e-6, "continue target rel err {err:e}");
    let want_halted = first.q_halt.gt_tensor(&first.q_continue);
    assert!(
        carry.halted.equal(&want_halted),
        "halted != q_halt > q_continue"
    );
    assert_ne!(
        Vec::<bool>::try_from(&want_halted).unwrap(),
        Vec::<bool>::try_from(&first.q_halt.gt(0.0)).unwrap(),
        "the fixture should tell the two halting rules apart"
    );

    let explore = HaltingOptions {
        halt_exploration_prob: 1.0,
        no_act_continue: true,
    };
    let mut carry = TrainCarry::new(model, 8, Device::Cpu, 5).unwrap();
    let _ = act_train_step(model, &mut carry, &batch, &explore).unwrap();
    assert!(
        !Vec::<bool>::try_from(&carry.halted)
            .unwrap()
            .iter()
            .any(|&h| h),
        "a minimum of at least 2 steps forbids halting after one"
    );
}
