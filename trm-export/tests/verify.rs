//! `trm-export verify`, one guarantee per test: a float model against itself passes the
//! strictest gate; against its fixed-point conversion, the JSON report's accuracies,
//! agreements and per-step drift equal the ones computed here with the two engines directly,
//! the report has every field, and thresholds just beyond / within the measured values fail
//! (exit 3, naming the threshold) / pass. Each check runs with both halting modes.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use common::tiny;
use serde_json::Value;
use trm_export::puzzles::PuzzleRow;
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};
use trm_nostd::{Config, Engine, FixedEngine, FloatEngine, Model};

/// What one puzzle gives with both engines run directly: predictions (after the last step, or
/// at the model's halting step with `early`), halting steps, and per step the largest
/// |fixed - float| of y and z and the sums of |d| and float^2.
struct Direct {
    pred: [Tokens; 2],
    halt: [Option<u32>; 2],
    /// Per step: (max |dy|, max |dz|, sum |dy|, sum y^2).
    steps: Vec<(f64, f64, f64, f64)>,
}

fn direct(float: &[u8], fixed: &[u8], question: &str, early: bool) -> Direct {
    let fm = Model::parse(float).unwrap();
    let qm = Model::parse(fixed).unwrap();
    let c = *fm.config();
    let mut q: Tokens = [PAD; CELLS];
    sudoku::parse_puzzle(question, &mut q).unwrap();
    let mut scratch = vec![0f32; FloatEngine::scratch_len(&c).f32s];
    let mut fe = FloatEngine::new(&c, &fm, &mut scratch).unwrap();
    let need = FixedEngine::scratch_len(&c);
    let (mut a, mut b) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
    let mut qe = FixedEngine::new(&qm, &mut a, &mut b).unwrap();
    fe.start(&q, 0).unwrap();
    qe.start(&q, 0).unwrap();
    let mut d = Direct {
        pred: [[PAD; CELLS]; 2],
        halt: [None; 2],
        steps: Vec::new(),
    };
    let mut done = [false; 2];
    let s = qe.state_scale() as f64;
    for k in 1..=c.halt_max_steps {
        let (sf, sq) = (fe.step(), qe.step());
        let last = k == c.halt_max_steps;
        if sf.q_halt > 0.0 && d.halt[0].is_none() {
            d.halt[0] = Some(k);
        }
        if sq.q_halt > 0 && d.halt[1].is_none() {
            d.halt[1] = Some(k);
        }
        if !done[0] && (last || early && sf.q_halt > 0.0) {
            fe.predict(&mut d.pred[0]).unwrap();
            done[0] = true;
        }
        if !done[1] && (last || early && sq.q_halt > 0) {
            qe.predict(&mut d.pred[1]).unwrap();
            done[1] = true;
        }
        let diff = |f: &[f32], i: &[i16]| {
            f.iter()
                .zip(i)
                .map(|(&f, &i)| (i as f64 * s - f as f64).abs())
                .collect::<Vec<f64>>()
        };
        let dy = diff(fe.y(), qe.y());
        let dz = diff(fe.z(), qe.z());
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        d.steps.push((
            max(&dy),
            max(&dz),
            dy.iter().sum(),
            fe.y().iter().map(|&v| v as f64 * v as f64).sum(),
        ));
    }
    d
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

/// The halting modes (`--halt`): predictions after the last step, or at the halting step.
const HALTS: [(bool, &str); 2] = [(false, "all"), (true, "early")];

/// The float model, its fixed-point conversion and the puzzles every test here uses.
struct Models {
    c: Config,
    rows: Vec<PuzzleRow>,
    float: Vec<u8>,
    fixed: Vec<u8>,
}

fn models() -> Models {
    let c = tiny::config();
    let rows = tiny::puzzles(6, 40, 4);
    let float = tiny::float_model(&c, 8, 0.0);
    // Calibrated on two of the puzzles only: the fixed model then disagrees somewhere.
    let fixed = tiny::fixed_model(&float, &rows[..2]);
    Models {
        c,
        rows,
        float,
        fixed,
    }
}

/// [`Models`] written to a folder of one test (removed when dropped).
struct Files {
    dir: PathBuf,
    float: String,
    fixed: String,
    csv: String,
}

impl Files {
    fn write(m: &Models, test: &str) -> Files {
        let dir = tiny::temp_dir(test);
        let csv = dir.join("p.csv");
        tiny::write_csv(&csv, &m.rows);
        let (fp, qp) = (dir.join("f.trm"), dir.join("q.trm"));
        std::fs::write(&fp, &m.float).unwrap();
        std::fs::write(&qp, &m.fixed).unwrap();
        let s = |p: PathBuf| p.to_str().unwrap().to_string();
        Files {
            float: s(fp),
            fixed: s(qp),
            csv: s(csv),
            dir,
        }
    }

    /// `trm-export verify --float <float> --fixed <fixed> --puzzles <csv> <extra>`.
    fn verify(&self, fixed: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "verify",
            "--float",
            &self.float,
            "--fixed",
            fixed,
            "--puzzles",
            &self.csv,
        ];
        args.extend_from_slice(extra);
        tiny::cli(&args)
    }

    /// The float model against the fixed one with `--halt halt` and `extra` options.
    fn gate(&self, halt: &str, extra: &[&str]) -> Output {
        let mut args = vec!["--halt", halt];
        args.extend_from_slice(extra);
        self.verify(&self.fixed, &args)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One halting mode's JSON report of the float model against the fixed one, and both engines
/// run directly on every puzzle.
struct Report {
    halt: &'static str,
    json: Value,
    runs: Vec<Direct>,
}

/// What the tests read: the models and each halting mode's report, made once per test binary.
struct Shared {
    models: Models,
    reports: Vec<Report>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let models = models();
        let files = Files::write(&models, "verify-reports");
        let reports = HALTS
            .iter()
            .map(|&(early, halt)| {
                let json = files.dir.join(format!("fixed-{early}.json"));
                let o = files.gate(halt, &["--json", json.to_str().unwrap(), "--threads", "2"]);
                assert!(o.status.success(), "{}", tiny::text(&o));
                let json: Value =
                    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
                let runs = models
                    .rows
                    .iter()
                    .map(|r| direct(&models.float, &models.fixed, &r.question, early))
                    .collect();
                Report { halt, json, runs }
            })
            .collect();
        Shared { models, reports }
    })
}

/// The puzzles' answers as tokens.
fn answers(rows: &[PuzzleRow]) -> Vec<Tokens> {
    rows.iter()
        .map(|r| {
            let mut t = [PAD; CELLS];
            sudoku::parse_puzzle(r.answer.as_deref().unwrap(), &mut t).unwrap();
            t
        })
        .collect()
}

/// How many cells of `a` and `b` are equal.
fn same(a: &Tokens, b: &Tokens) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// The largest relative drift of y or z over the report's steps.
fn max_rel_over_steps(v: &Value) -> f64 {
    v["drift"].as_array().unwrap().iter().fold(0f64, |m, d| {
        m.max(f(d, "/y/rel_max")).max(f(d, "/z/rel_max"))
    })
}

#[test]
fn identical_models_pass_the_strictest_gate() {
    let files = Files::write(&models(), "verify-self");
    let json = files.dir.join("self.json");
    let o = files.verify(
        &files.float,
        &[
            "--json",
            json.to_str().unwrap(),
            "--min-answer-agreement",
            "1",
            "--min-cell-agreement",
            "1",
            "--max-exact-drop",
            "0",
            "--max-state-drift",
            "0",
            "--min-halt-agreement",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", tiny::text(&o));
    assert!(tiny::text(&o).contains("gate: PASS"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(f(&v, "/answer_agreement"), 1.0);
    assert_eq!(f(&v, "/max_rel_drift"), 0.0);
}

#[test]
fn report_accuracies_equal_the_engines_run_directly() {
    let s = shared();
    let answers = answers(&s.models.rows);
    let n = s.models.rows.len() as f64;
    for Report {
        halt,
        json: v,
        runs,
    } in &s.reports
    {
        for (k, name) in [(0, "float"), (1, "fixed")] {
            let cells: usize = runs
                .iter()
                .zip(&answers)
                .map(|(d, a)| same(&d.pred[k], a))
                .sum();
            let exact = runs
                .iter()
                .zip(&answers)
                .filter(|(d, a)| d.pred[k] == **a)
                .count();
            let halted = runs.iter().filter(|d| d.halt[k].is_some()).count();
            assert!(
                close(
                    f(v, &format!("/{name}/cell_accuracy")),
                    cells as f64 / (n * 81.0)
                ),
                "{halt} {name}"
            );
            assert_eq!(
                f(v, &format!("/{name}/exact")),
                exact as f64,
                "{halt} {name}"
            );
            assert_eq!(
                f(v, &format!("/{name}/halted")),
                halted as f64,
                "{halt} {name}"
            );
        }
    }
}

#[test]
fn report_agreements_equal_the_engines_run_directly() {
    let s = shared();
    let n = s.models.rows.len() as f64;
    for Report {
        halt,
        json: v,
        runs,
    } in &s.reports
    {
        let agree = runs.iter().filter(|d| d.pred[0] == d.pred[1]).count();
        let cell_agree: usize = runs.iter().map(|d| same(&d.pred[0], &d.pred[1])).sum();
        let halt_agree = runs.iter().filter(|d| d.halt[0] == d.halt[1]).count();
        assert!(close(f(v, "/answer_agreement"), agree as f64 / n), "{halt}");
        assert!(
            close(f(v, "/cell_agreement"), cell_agree as f64 / (n * 81.0)),
            "{halt}"
        );
        assert!(
            close(f(v, "/halt_agreement"), halt_agree as f64 / n),
            "{halt}"
        );
    }
}

#[test]
fn report_drift_per_step_equals_the_engines_run_directly() {
    let Shared { models, reports } = shared();
    let c = &models.c;
    let n = models.rows.len() as f64;
    for Report {
        halt,
        json: v,
        runs,
    } in reports
    {
        let drift = v["drift"].as_array().unwrap();
        assert_eq!(drift.len(), c.halt_max_steps as usize, "{halt}");
        let len = (c.seq_total() * c.d()) as f64 * n;
        for (s, d) in drift.iter().enumerate() {
            let my = runs.iter().map(|r| r.steps[s].0).fold(0.0, f64::max);
            let mz = runs.iter().map(|r| r.steps[s].1).fold(0.0, f64::max);
            let mean_y = runs.iter().map(|r| r.steps[s].2).sum::<f64>() / len;
            let rms_y = (runs.iter().map(|r| r.steps[s].3).sum::<f64>() / len).sqrt();
            assert_eq!(f(d, "/step"), s as f64 + 1.0);
            assert!(close(f(d, "/y/max_abs"), my), "{halt} {d}");
            assert!(close(f(d, "/z/max_abs"), mz), "{halt} {d}");
            assert!(close(f(d, "/y/mean_abs"), mean_y), "{halt} {d}");
            assert!(close(f(d, "/y/float_rms"), rms_y), "{halt} {d}");
            assert!(my > 0.0, "int8/int16 must differ from f32 somewhere");
        }
        assert!(
            close(f(v, "/max_rel_drift"), max_rel_over_steps(v)),
            "{halt}"
        );
    }
}

#[test]
fn report_has_every_field_and_its_halting_mode() {
    for Report { halt, json: v, .. } in &shared().reports {
        for key in [
            "puzzles",
            "with_answer",
            "halt",
            "steps",
            "exact_drop",
            "failures",
        ] {
            assert!(v.get(key).is_some(), "JSON lacks {key}");
        }
        assert_eq!(v["halt"], *halt);
    }
}

#[test]
fn state_drift_gate_fails_below_the_measured_drift_naming_it_and_passes_above() {
    let s = shared();
    let files = Files::write(&s.models, "verify-drift-gate");
    for Report { halt, json: v, .. } in &s.reports {
        let max_rel = max_rel_over_steps(v);
        let above = format!("{}", max_rel * 0.999);
        let below = format!("{}", max_rel * 1.001);
        let o = files.gate(halt, &["--max-state-drift", &above]);
        assert_eq!(o.status.code(), Some(3), "{}", tiny::text(&o));
        assert!(
            tiny::text(&o).contains("--max-state-drift"),
            "{}",
            tiny::text(&o)
        );
        let o = files.gate(halt, &["--max-state-drift", &below]);
        assert!(o.status.success(), "{}", tiny::text(&o));
    }
}

#[test]
fn agreement_gates_fail_above_the_measured_agreement_naming_each_and_pass_below() {
    let s = shared();
    let files = Files::write(&s.models, "verify-agreement-gate");
    for Report { halt, json: v, .. } in &s.reports {
        let measured_cells = f(v, "/cell_agreement");
        // This model disagrees somewhere, so the failing side of the cell gate is reached.
        assert!(
            measured_cells < 1.0,
            "{halt}: cell agreement {measured_cells}"
        );
        let o = files.gate(
            halt,
            &[
                "--min-cell-agreement",
                &format!("{}", (measured_cells + 1.0) / 2.0),
                "--min-answer-agreement",
                "1",
            ],
        );
        assert_eq!(o.status.code(), Some(3), "{}", tiny::text(&o));
        let t = tiny::text(&o);
        assert!(
            t.contains("--min-cell-agreement") && t.contains("--min-answer-agreement"),
            "{t}"
        );
        let o = files.gate(
            halt,
            &[
                "--min-cell-agreement",
                &format!("{}", measured_cells * 0.999),
            ],
        );
        assert!(o.status.success(), "{}", tiny::text(&o));
    }
}

/// `--original`: the fixed model is also compared with another float model (the pre-QAT one in
/// practice), with the same figures as a plain `verify --float <original> --fixed <fixed>`,
/// and the accuracy difference of the two float models is the QAT cost; the gate still judges
/// `--float` against `--fixed` only.
#[test]
fn original_model_comparison_equals_a_plain_verify_of_it() {
    let m = models();
    let files = Files::write(&m, "verify-original");
    let other = tiny::float_model(&m.c, 9, 0.0);
    let op = files.dir.join("original.trm");
    std::fs::write(&op, &other).unwrap();
    let op = op.to_str().unwrap();
    let json = |o: &Output| -> Value {
        let t = String::from_utf8_lossy(&o.stdout);
        let start = t.find("\n{").map_or(0, |i| i + 1);
        serde_json::from_str(&t[start..]).unwrap_or_else(|e| panic!("{e}: {t}"))
    };
    let with = files.gate("all", &["--original", op, "--json", "-"]);
    assert!(with.status.success(), "{}", tiny::text(&with));
    assert!(
        tiny::text(&with).contains("original (pre-QAT) float"),
        "{}",
        tiny::text(&with)
    );
    let with = json(&with);
    let main = json(&files.gate("all", &["--json", "-"]));
    // The main comparison is unchanged by --original.
    for k in ["/answer_agreement", "/cell_agreement", "/float/exact"] {
        assert!(close(f(&with, k), f(&main, k)), "{k}");
    }
    // The original's comparison is what a plain verify of it reports.
    let mut args = vec!["verify", "--float", op, "--fixed", &files.fixed];
    args.extend(["--puzzles", &files.csv, "--json", "-"]);
    let plain = json(&tiny::cli(&args));
    for (a, b) in [
        ("/original/answer_agreement", "/answer_agreement"),
        ("/original/cell_agreement", "/cell_agreement"),
        ("/original/halt_agreement", "/halt_agreement"),
        ("/original/original/exact", "/float/exact"),
        ("/original/original/cell_accuracy", "/float/cell_accuracy"),
    ] {
        assert!(close(f(&with, a), f(&plain, b)), "{a} vs {b}");
    }
    let cost = f(&plain, "/float/exact_accuracy") - f(&main, "/float/exact_accuracy");
    assert!(close(f(&with, "/original/qat_exact_cost"), cost));
    // Another float model disagrees with the fixed model somewhere (the test can fail).
    assert!(f(&with, "/original/cell_agreement") < 1.0);
}
