//! The whole user path against the reference implementation: its own `torch.save` checkpoints
//! (`reference-fixtures/sudoku-*-d64-f32`, see its README) imported by trm-export into `.trm`
//! bytes (`reference_to_trm`), parsed in place by `trm_nostd::Model::parse` and run by the float
//! engine from the initial carry for all 16 ACT steps, exactly as the reference ran them.
//!
//! # Why only step 1 is held to 1e-4
//!
//! The random-weight fixture models are chaotic maps: PyTorch itself in f64 differs from its own
//! f32 run by ~1e-3 (relative) after 2 steps and by O(1) after 4 (mlp_t), so no f32
//! implementation with another summation order can stay within 1e-4 for 16 steps. This test
//! therefore holds step 1 to 1e-4 (logits and q_halt, relative: max abs difference over max abs
//! expected value) on all 8 puzzles, and for the later steps measures the map's own
//! sensitivity: a second run with H_init moved by one ulp (a rounding-sized perturbation). Per
//! step the engine must be within 1e-4 of the reference or within [`NOISE_FACTOR`] times that
//! one-ulp divergence, and the argmax must agree wherever the reference's top-two margin exceeds
//! twice the step's max absolute difference (also for `eval_preds`). Once a model has
//! decorrelated (mlp_t from step ~4) this bound no longer tells implementations apart: the
//! strong check of every step is `tch_vs_float.rs`, which teacher-forces the engine with the
//! carry of the tch model (itself bit-exact against the reference).
//!
//! # Cost
//!
//! The float engine takes ~0.2 s per ACT step of these D=64 models on one core, so the default
//! tests run all 16 steps (twice: plain and nudged) on [`FREE_RUN_PUZZLES`] puzzles and step 1 on
//! all 8; the `#[ignore]`d `*_all_puzzles` tests run all 16 steps on all 8 puzzles, plus
//! `solve(AllSteps)` (`cargo test -p trm-tests --test reference_float -- --ignored`, ~2 min of
//! one core per fixture).

use trm_nostd::float::OwnedWeights;
use trm_nostd::{
    Config, DType, Engine, FloatEngine, HaltMode, Model, Shape, TensorId, TensorSource,
};
use trm_tests::{RefFixture, argmax_agreement, max_abs_diff, rel_err, top_two_margin};

/// Step-1 tolerance, and the floor of the later steps' bound.
const TOL: f32 = 1e-4;
/// How many times the one-ulp divergence a later step may differ by.
const NOISE_FACTOR: f32 = 10.0;
/// Puzzles (the first ones of the batch) run for all 16 steps by the default tests.
const FREE_RUN_PUZZLES: usize = 2;

/// The outputs of the puzzles of one run: logits `[steps][puzzles * seq_len * vocab]`,
/// q_halt `[steps][puzzles]`, predictions after the last step `[puzzles * seq_len]`.
struct Run {
    logits: Vec<Vec<f32>>,
    q_halt: Vec<Vec<f32>>,
    preds: Vec<u8>,
}

/// `steps` ACT steps from the initial carry for each of `puzzles`; with `solve`, also checks
/// that `solve(AllSteps)` predicts what the manual step loop does.
fn run(
    e: &mut FloatEngine<'_>,
    fx: &RefFixture,
    puzzles: &[usize],
    steps: u32,
    solve: bool,
) -> Run {
    let c = *e.config();
    let (s, v) = (c.seq_len as usize, c.vocab_size as usize);
    let n = puzzles.len();
    let mut r = Run {
        logits: vec![vec![0.0; n * s * v]; steps as usize],
        q_halt: vec![vec![0.0; n]; steps as usize],
        preds: vec![0; n * s],
    };
    for (i, &b) in puzzles.iter().enumerate() {
        e.start(fx.tokens(b), fx.ids[b]).expect("start");
        for k in 0..steps as usize {
            let out = e.step();
            assert_eq!(out.step as usize, k + 1);
            r.q_halt[k][i] = out.q_halt;
            e.logits(&mut r.logits[k][i * s * v..(i + 1) * s * v])
                .expect("logits");
        }
        e.predict(&mut r.preds[i * s..(i + 1) * s])
            .expect("predict");
        if solve {
            let mut again = vec![0u8; s];
            let sum = e
                .solve(fx.tokens(b), fx.ids[b], HaltMode::AllSteps, &mut again)
                .expect("solve");
            assert_eq!(sum.steps, steps);
            assert_eq!(again, r.preds[i * s..(i + 1) * s], "solve() vs step loop");
        }
    }
    r
}

/// The rows of `puzzles` in a `[batch, per]` array.
fn select(all: &[f32], per: usize, puzzles: &[usize]) -> Vec<f32> {
    puzzles
        .iter()
        .flat_map(|&b| all[b * per..(b + 1) * per].iter().copied())
        .collect()
}

/// An owned copy of the model's tensors with H_init moved up by one ulp.
fn nudged_h_init(c: &Config, model: &Model<'_>) -> OwnedWeights {
    let mut w = OwnedWeights::new();
    for id in TensorId::all(c) {
        let t = model.tensor(id).expect("tensor");
        w.insert_raw(id, t.dtype, t.shape, t.data.to_vec());
    }
    let h = model.tensor(TensorId::HInit).expect("H_init");
    let nudged: Vec<f32> = (0..h.shape.numel())
        .map(|i| f32::from_bits(h.get_f32(i).expect("f32").to_bits() + 1))
        .collect();
    w.insert_f32(TensorId::HInit, Shape::vector(nudged.len()), &nudged);
    w
}

/// Step 1 on every puzzle (1e-4), then all steps on the first `free_run` puzzles (chaos-aware).
fn check_fixture(name: &str, free_run: usize, solve: bool) {
    let fx = RefFixture::load(name).expect("fixture");
    let file = fx.trm_bytes(DType::F32).expect("reference_to_trm");
    let model = Model::parse(&file).expect("Model::parse");
    let c = *model.config();
    assert_eq!(fx.seq_len, c.seq_len as usize);
    let (s, v) = (c.seq_len as usize, c.vocab_size as usize);
    let steps = c.halt_max_steps;
    assert_eq!(steps, 16);
    let mut scratch = vec![0.0; FloatEngine::scratch_len_fast(&c).f32s];
    let mut engine = FloatEngine::new(&c, &model, &mut scratch).expect("engine");

    // Step 1, every puzzle: the strict check.
    let everyone: Vec<usize> = (0..fx.batch).collect();
    let first = run(&mut engine, &fx, &everyone, 1, false);
    let want = fx.logits(1, v).expect("logits");
    let qwant = fx.q_halt(1).expect("q_halt");
    let err = rel_err(&first.logits[0], &want);
    let qerr = rel_err(&first.q_halt[0], &qwant);
    let tol = 2.0 * max_abs_diff(&first.logits[0], &want);
    let am = argmax_agreement(&first.logits[0], &want, v, tol);
    println!(
        "{name}: step 1, all {} puzzles: logits rel err {err:.3e}, q_halt rel err {qerr:.3e}, \
         argmax decided {}/{}",
        fx.batch, am.checked, am.rows
    );
    assert!(err <= TOL, "{name} step 1: logits rel err {err:e}");
    assert!(qerr <= TOL, "{name} step 1: q_halt rel err {qerr:e}");
    assert!(
        am.mismatches.is_empty(),
        "{name} step 1: argmax differs at {:?}",
        am.mismatches
    );
    // The difference is rounding-sized: nearly every argmax is decided.
    assert!(
        am.checked * 10 >= am.rows * 9,
        "{name} step 1: {}/{} decided",
        am.checked,
        am.rows
    );
    for (b, (q, qw)) in first.q_halt[0].iter().zip(&qwant).enumerate() {
        assert_eq!(
            *q > 0.0,
            *qw > 0.0,
            "{name} step 1 puzzle {b}: halting decision"
        );
    }

    // All steps on the first puzzles, plain and with H_init nudged by one ulp.
    let puzzles: Vec<usize> = (0..free_run.min(fx.batch)).collect();
    let full = run(&mut engine, &fx, &puzzles, steps, solve);
    let nudged = nudged_h_init(&c, &model);
    let mut engine = FloatEngine::new(&c, &nudged.source(), &mut scratch).expect("nudged engine");
    let noisy = run(&mut engine, &fx, &puzzles, steps, false);
    assert_eq!(full.logits[0], select(&first.logits[0], s * v, &puzzles));
    assert_ne!(
        full.logits[0], noisy.logits[0],
        "{name}: the nudge had no effect"
    );

    println!(
        "{name}: puzzles {puzzles:?}: step | logits rel err (one-ulp noise) | \
         q_halt rel err (noise) | argmax decided/rows"
    );
    for k in 0..steps as usize {
        let step = k as u32 + 1;
        let want = select(&fx.logits(step, v).expect("logits"), s * v, &puzzles);
        let qwant = select(&fx.q_halt(step).expect("q_halt"), 1, &puzzles);
        let err = rel_err(&full.logits[k], &want);
        let noise = rel_err(&noisy.logits[k], &full.logits[k]);
        let qerr = rel_err(&full.q_halt[k], &qwant);
        let qnoise = rel_err(&noisy.q_halt[k], &full.q_halt[k]);
        let tol = 2.0 * max_abs_diff(&full.logits[k], &want);
        let am = argmax_agreement(&full.logits[k], &want, v, tol);
        println!(
            "{name}: {step:2} | {err:.3e} ({noise:.3e}) | {qerr:.3e} ({qnoise:.3e}) | {}/{}",
            am.checked, am.rows
        );
        assert!(
            err <= TOL.max(NOISE_FACTOR * noise),
            "{name} step {step}: logits rel err {err:e}, one-ulp noise {noise:e}"
        );
        assert!(
            qerr <= TOL.max(NOISE_FACTOR * qnoise),
            "{name} step {step}: q_halt rel err {qerr:e}, one-ulp noise {qnoise:e}"
        );
        assert!(
            am.mismatches.is_empty(),
            "{name} step {step}: argmax differs at rows {:?} (margin above {tol:e})",
            am.mismatches
        );
    }

    // eval_preds: the argmax after the last step, where the reference's margin decides it.
    let want = select(&fx.logits(steps, v).expect("logits"), s * v, &puzzles);
    let want_preds: Vec<u8> = puzzles
        .iter()
        .flat_map(|&b| fx.preds().expect("eval_preds")[b * s..(b + 1) * s].to_vec())
        .collect();
    let tol = 2.0 * max_abs_diff(&full.logits[steps as usize - 1], &want);
    let (mut decided, mut same) = (0, 0);
    for (i, row) in want.chunks_exact(v).enumerate() {
        if top_two_margin(row) > tol {
            decided += 1;
            assert_eq!(full.preds[i], want_preds[i], "{name}: eval_preds at {i}");
        }
        same += usize::from(full.preds[i] == want_preds[i]);
    }
    println!(
        "{name}: eval_preds identical at {same}/{} positions ({decided} decided by the margin)",
        want_preds.len()
    );
}

#[test]
fn mlp_t_f32_reference_fixture_through_importer() {
    check_fixture("sudoku-mlp_t-d64-f32", FREE_RUN_PUZZLES, false);
}

#[test]
fn attention_rope_f32_reference_fixture_through_importer() {
    check_fixture("sudoku-att-d64-f32", FREE_RUN_PUZZLES, false);
}

#[test]
#[ignore = "slow (~2 min per fixture): all 16 steps on all 8 puzzles; the default tests run 2"]
fn mlp_t_f32_reference_fixture_all_puzzles() {
    check_fixture("sudoku-mlp_t-d64-f32", 8, true);
}

#[test]
#[ignore = "slow (~2 min per fixture): all 16 steps on all 8 puzzles; the default tests run 2"]
fn attention_rope_f32_reference_fixture_all_puzzles() {
    check_fixture("sudoku-att-d64-f32", 8, true);
}
