//! The ARC evaluator on hand-made predictions whose votes, pass@K and submission are known by
//! construction.

use trm_data::arc::{ArcExample, ArcTask, Augmentation, Grid, SEQ_LEN, grid_to_seq};
use trm_data::arc_eval::{ArcEvaluator, halt_confidence};

fn grid(rows: &[&[u8]]) -> Grid {
    let v: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| r.iter().map(|&c| c as i64).collect())
        .collect();
    Grid::from_rows(&v).unwrap()
}

fn task(id: &str, tests: &[(Grid, Grid)]) -> ArcTask {
    ArcTask {
        id: id.into(),
        train: vec![ArcExample {
            input: grid(&[&[1]]),
            output: grid(&[&[2]]),
        }],
        test: tests
            .iter()
            .map(|(i, o)| ArcExample {
                input: i.clone(),
                output: o.clone(),
            })
            .collect(),
        test_first: false,
    }
}

const IDS: [&str; 9] = [
    "<blank>",
    "p1",
    "p1|||t1|||0918273645",
    "p1|||t7|||0123456789",
    "p2",
    "p2|||t4|||0987654321",
    "p3",
    "p4|||t3|||0234567891",
    "p4",
];

/// The sequence the model would see/produce for `g` under identifier `id`: the grid
/// augmented as the identifier says, at the top left.
fn seq(id: usize, g: &Grid) -> Vec<u8> {
    let (_, aug) = Augmentation::parse_name(IDS[id]).unwrap();
    let mut s = [0u8; SEQ_LEN];
    grid_to_seq(&g.augment(&aug), 0, 0, &mut s);
    s.to_vec()
}

struct Case {
    tasks: Vec<ArcTask>,
    /// (identifier, input grid, predicted grid, q_halt logit)
    preds: Vec<(usize, Grid, Grid, f64)>,
    l1: Grid,
    w1: Grid,
    l2: Grid,
    w2: Grid,
    w: Grid,
    x: Grid,
    g4: Grid,
}

fn case() -> Case {
    let a1 = grid(&[&[1, 2, 3], &[4, 5, 6]]);
    let a2 = grid(&[&[7], &[8], &[9]]);
    let b = grid(&[&[0, 1], &[2, 3]]);
    let c = grid(&[&[5, 5]]);
    let d = grid(&[&[3, 0, 3]]);
    let l1 = grid(&[&[1, 1], &[2, 2], &[3, 4]]);
    let w1 = grid(&[&[1, 1], &[2, 2], &[3, 5]]);
    let l2 = grid(&[&[9, 8, 7]]);
    let w2 = grid(&[&[9, 8, 6]]);
    let m = grid(&[&[4, 4, 4], &[0, 0, 0]]);
    let w = grid(&[&[4]]);
    let x = grid(&[&[4, 4]]);
    let g4 = grid(&[&[6, 1], &[1, 6]]);
    let tasks = vec![
        task("p1", &[(a1.clone(), l1.clone()), (a2.clone(), l2.clone())]),
        task("p2", &[(b.clone(), m.clone())]),
        task("p3", &[(c, grid(&[&[1]]))]),
        task("p4", &[(d.clone(), g4.clone())]),
    ];
    let preds = vec![
        // p1, pair 1: W1 three votes, L1 two: pass@1 no, pass@2 yes.
        (1, a1.clone(), w1.clone(), 0.0),
        (2, a1.clone(), l1.clone(), 9.0),
        (3, a1.clone(), w1.clone(), -3.0),
        (2, a1.clone(), w1.clone(), -3.0),
        (3, a1.clone(), l1.clone(), 9.0),
        // p1, pair 2: two votes each; L2 mean confidence sigmoid(3) = 0.95 beats W2's mean
        // (sigmoid(4) + sigmoid(-4)) / 2 = 0.5 although W2 holds the single most confident vote.
        (2, a2.clone(), w2.clone(), 4.0),
        (1, a2.clone(), l2.clone(), 3.0),
        (3, a2.clone(), w2.clone(), -4.0),
        (3, a2.clone(), l2.clone(), 3.0),
        // p2: three grids, one vote each, same confidence: first seen first (W, X, M).
        (5, b.clone(), w.clone(), 1.0),
        (4, b.clone(), x.clone(), 1.0),
        (5, b.clone(), m.clone(), 1.0),
        // p4: one distinct grid: both attempts are it.
        (7, d.clone(), g4.clone(), 0.5),
        (8, d.clone(), g4.clone(), -0.5),
        // p3: nothing.
    ];
    Case {
        tasks,
        preds,
        l1,
        w1,
        l2,
        w2,
        w,
        x,
        g4,
    }
}

fn evaluator(c: &Case, preds: &[(usize, Grid, Grid, f64)]) -> ArcEvaluator {
    let mut e = ArcEvaluator::new(
        IDS.iter().map(|s| s.to_string()).collect(),
        c.tasks.clone(),
        0,
    );
    for (id, inp, pred, q) in preds {
        assert!(
            e.update(*id as i64, &seq(*id, inp), &seq(*id, pred), *q)
                .unwrap()
        );
    }
    e
}

#[test]
fn pass_at_k_and_submission_by_construction() {
    let c = case();
    let mut e = evaluator(&c, &c.preds);
    // Padding rows (blank identifier) are ignored whatever they hold.
    assert!(
        !e.update(0, &[7u8; SEQ_LEN], &[3u8; SEQ_LEN], 100.0)
            .unwrap()
    );
    let r = e.result();
    // Per puzzle (p1, p2, p3, p4) solved fractions:
    //   K=1: p1 1/2 (pair 2), p2 0, p3 0, p4 1
    //   K=2: p1 2/2, p2 0, p3 0, p4 1
    //   K>=5: p1 1, p2 1 (M third), p3 0, p4 1
    let want = [
        (1, 1.5 / 4.0),
        (2, 2.0 / 4.0),
        (5, 3.0 / 4.0),
        (10, 0.75),
        (100, 0.75),
        (1000, 0.75),
    ];
    assert_eq!(r.pass_at.len(), want.len());
    for ((k, v), (wk, wv)) in r.pass_at.iter().zip(want) {
        assert_eq!(*k, wk);
        assert!((v - wv).abs() < 1e-12, "pass@{k} = {v}, expected {wv}");
    }
    assert_eq!(r.metrics()[0].0, "ARC/pass@1");
    assert_eq!(r.missing, vec![("p3".to_string(), 0)]);
    let expected_submission = vec![
        (
            "p1".to_string(),
            vec![
                vec![c.w1.clone(), c.l1.clone()],
                vec![c.l2.clone(), c.w2.clone()],
            ],
        ),
        ("p2".to_string(), vec![vec![c.w.clone(), c.x.clone()]]),
        ("p3".to_string(), vec![]),
        ("p4".to_string(), vec![vec![c.g4.clone(), c.g4.clone()]]),
    ];
    assert_eq!(r.submission, expected_submission);

    // The JSON has the Kaggle shape: {id: [{"attempt_1": grid, "attempt_2": grid}, ..]}.
    let json: serde_json::Value = serde_json::from_str(&r.submission_json()).unwrap();
    let to_json = |g: &Grid| serde_json::to_value(g.to_rows()).unwrap();
    for (name, inputs) in &expected_submission {
        let got = json[name].as_array().unwrap();
        assert_eq!(got.len(), inputs.len(), "{name}");
        for (g, attempts) in got.iter().zip(inputs) {
            assert_eq!(g["attempt_1"], to_json(&attempts[0]));
            assert_eq!(g["attempt_2"], to_json(&attempts[1]));
            assert_eq!(g.as_object().unwrap().len(), 2);
        }
    }
    assert!(
        r.submission_json()
            .starts_with("{\"p1\": [{\"attempt_1\": [[1, 1], [2, 2], [3, 5]], ")
    );

    // Other Ks and three attempts.
    let r3 = evaluator(&c, &c.preds).with_ks(&[3], 3).result();
    assert_eq!(r3.pass_at, vec![(3, 0.75)]);
    assert_eq!(
        r3.submission[1].1[0],
        vec![c.w.clone(), c.x.clone(), grid(&[&[4, 4, 4], &[0, 0, 0]])]
    );
}

#[test]
fn absorbing_another_rank_equals_one_evaluator() {
    let c = case();
    let whole = evaluator(&c, &c.preds).result();
    let (a, b) = c.preds.split_at(6);
    let mut first = evaluator(&c, a);
    first.absorb(&evaluator(&c, b));
    assert_eq!(first.result(), whole);
    // Order matters for ties: p2's exact tie is broken by first appearance, so with the rank
    // holding W gathered last, X and M come first.
    let mut reversed = evaluator(&c, &c.preds[10..12]);
    reversed.absorb(&evaluator(&c, &c.preds[9..10]));
    let r = reversed.result();
    assert_eq!(
        r.submission[1].1[0],
        vec![c.x.clone(), grid(&[&[4, 4, 4], &[0, 0, 0]])]
    );
    // clear() forgets everything.
    first.clear();
    assert_eq!(first.result().missing.len(), 5);
}

#[test]
fn confidence_is_the_f64_sigmoid() {
    for x in [-30.0, -4.0, -0.5, 0.0, 0.5, 4.0, 30.0] {
        let want = 0.5 * (1.0 + (x / 2.0f64).tanh());
        assert!((halt_confidence(x) - want).abs() < 1e-15, "{x}");
    }
}

#[test]
fn bad_predictions_are_errors_or_empty_grids() {
    let c = case();
    let mut e = evaluator(&c, &[]);
    let a = seq(1, &c.tasks[0].test[0].input);
    assert!(e.update(99, &a, &a, 0.0).is_err(), "unknown identifier");
    assert!(e.update(-1, &a, &a, 0.0).is_err(), "negative identifier");
    assert!(
        e.update(1, &a[..800], &a[..800], 0.0).is_err(),
        "short sequence"
    );
    assert!(
        e.update_batch(&[1, 1], &a, &a, &[0.0, 0.0]).is_err(),
        "batch size mismatch"
    );
    // A prediction starting with PAD crops to an empty grid: it is voted for like any other
    // and written as [] in the submission.
    let pad = vec![0i64; SEQ_LEN];
    let a64: Vec<i64> = a.iter().map(|&t| t as i64).collect();
    assert!(e.update(1, &a64, &pad, 0.0).unwrap());
    let r = e.result();
    assert_eq!(r.submission[0].1[0][0].rows(), 0);
    assert!(
        r.submission_json()
            .starts_with("{\"p1\": [{\"attempt_1\": [], \"attempt_2\": []}]")
    );
}

/// The reference evaluator's own pass@K and submission.json on predictions for the
/// reference_tiny test split (fixtures from `tests/fixtures/arc/gen_reference.py`).
#[test]
fn matches_the_reference_evaluator() {
    use std::path::Path;
    use trm_data::npy::read_npy;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arc");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval_expected.json")).unwrap())
            .unwrap();
    let data = dir.join("reference_tiny");
    let inputs = read_npy::<u8>(&data.join("test/all__inputs.npy")).unwrap();
    let preds = read_npy::<u8>(&dir.join("eval_preds.npy")).unwrap();
    let nums = |k: &str| -> Vec<f64> {
        expected[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let rows = nums("rows");
    let ids: Vec<i64> = nums("identifiers").iter().map(|&v| v as i64).collect();
    let q = nums("q_halt_logits");
    let mut batch_inputs = Vec::new();
    for &r in &rows {
        let r = r as usize;
        batch_inputs.extend_from_slice(&inputs.data[r * SEQ_LEN..(r + 1) * SEQ_LEN]);
    }
    let mut e = ArcEvaluator::load(&data, 0).unwrap();
    let recorded = e
        .update_batch(&ids, &batch_inputs, &preds.data, &q)
        .unwrap();
    assert_eq!(recorded, ids.iter().filter(|&&i| i != 0).count());
    let r = e.result();
    for (k, v) in r.metrics() {
        let want = expected["result"][&k].as_f64().unwrap();
        assert!((v - want).abs() < 1e-12, "{k}: {v} vs reference {want}");
    }
    let want_submission = std::fs::read_to_string(dir.join("eval_submission.json")).unwrap();
    assert_eq!(r.submission_json(), want_submission);
}
