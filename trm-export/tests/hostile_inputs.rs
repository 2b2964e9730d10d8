//! Inputs that once got through (issue 14): NaN and out-of-range thresholds, answers that
//! contradict their givens, edited and empty golden files, model pairs from different
//! checkpoints, and models or puzzle sets beyond the run budget. Each is refused, fails the
//! gate or is warned about, with a message that names what and where.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::tiny;
use serde_json::Value;
use trm_export::puzzles::{PuzzleKind, PuzzleRow, to_tokens};
use trm_export::verify::{self, HaltMode, Thresholds};
use trm_nostd::Model;
use trm_nostd::format::SourceRecord;

/// A folder with a float model, its fixed conversion and a CSV of `rows`.
struct Setup {
    dir: PathBuf,
    float: Vec<u8>,
    fixed: Vec<u8>,
    rows: Vec<PuzzleRow>,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let dir = tiny::temp_dir(test);
        let c = tiny::config();
        let rows = tiny::puzzles(3, 30, 9);
        let float = tiny::float_model(&c, 4, 0.0);
        let fixed = tiny::fixed_model(&float, &rows);
        std::fs::write(dir.join("f.trm"), &float).unwrap();
        std::fs::write(dir.join("q.trm"), &fixed).unwrap();
        tiny::write_csv(&dir.join("p.csv"), &rows);
        Setup {
            dir,
            float,
            fixed,
            rows,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// `verify --float f.trm --fixed <fixed> --puzzles <csv> <extra>`.
    fn verify(&self, fixed: &str, csv: &str, extra: &[&str]) -> Output {
        let (f, q, p) = (self.path("f.trm"), self.path(fixed), self.path(csv));
        let mut args = vec!["verify", "--float", &f, "--fixed", &q, "--puzzles", &p];
        args.extend_from_slice(extra);
        tiny::cli(&args)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `rows` with the first given of puzzle `i` changed to another digit: its answer now
/// contradicts the question.
fn contradicting(rows: &[PuzzleRow], i: usize) -> Vec<PuzzleRow> {
    let mut rows = rows.to_vec();
    let q: Vec<char> = rows[i].question.chars().collect();
    let at = q.iter().position(|&c| c != '.').unwrap();
    let d = q[at].to_digit(10).unwrap();
    let other = char::from_digit(d % 9 + 1, 10).unwrap();
    let mut q2 = q.clone();
    q2[at] = other;
    rows[i].question = q2.into_iter().collect();
    rows
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn nan_and_out_of_range_thresholds_are_refused() {
    let s = Setup::new("hostile-thresholds");
    let options = [
        "--min-answer-agreement",
        "--min-cell-agreement",
        "--min-halt-agreement",
        "--max-exact-drop",
        "--max-state-drift",
    ];
    for opt in options {
        let mut bad = vec!["NaN", "nan", "inf", "-inf", "-0.5", "x"];
        if opt != "--max-state-drift" {
            bad.push("1.5");
        }
        for v in bad {
            let arg = format!("{opt}={v}");
            let o = s.verify("q.trm", "p.csv", &[&arg]);
            let t = tiny::text(&o);
            assert_eq!(o.status.code(), Some(2), "{arg}: {t}");
            assert!(t.contains(opt), "{arg}: {t}");
        }
        // In range: accepted.
        let o = s.verify("q.trm", "p.csv", &[opt, "0"]);
        assert_ne!(o.status.code(), Some(2), "{opt}: {}", tiny::text(&o));
    }
    // The library refuses them too, and the gate's comparisons fail on NaN limits and figures.
    let fm = Model::parse(&s.float).unwrap();
    let qm = Model::parse(&s.fixed).unwrap();
    let puzzles = to_tokens(&s.rows, &PuzzleKind::SUDOKU).unwrap();
    let nan = Thresholds {
        min_cell_agreement: Some(f64::NAN),
        ..Thresholds::default()
    };
    let err = verify::verify(&fm, &qm, &puzzles, HaltMode::AllSteps, &nan, 1).unwrap_err();
    assert!(err.to_string().contains("--min-cell-agreement"), "{err}");
    let report = verify::verify(
        &fm,
        &qm,
        &puzzles,
        HaltMode::AllSteps,
        &Thresholds::default(),
        1,
    )
    .unwrap();
    for t in [
        Thresholds {
            min_answer_agreement: Some(f64::NAN),
            ..Thresholds::default()
        },
        Thresholds {
            max_state_drift: Some(f64::NAN),
            ..Thresholds::default()
        },
        Thresholds {
            max_exact_drop: Some(f64::NAN),
            ..Thresholds::default()
        },
    ] {
        assert_eq!(verify::check(&report, &t).len(), 1, "{t:?}");
    }
    let mut nan_figure = report.clone();
    nan_figure.answer_agreement = f64::NAN;
    nan_figure.max_rel_drift = f64::NAN;
    let t = Thresholds {
        min_answer_agreement: Some(0.0),
        max_state_drift: Some(1e9),
        ..Thresholds::default()
    };
    assert_eq!(verify::check(&nan_figure, &t).len(), 2);
}

#[test]
fn answers_contradicting_their_givens_are_named_and_fail() {
    let s = Setup::new("hostile-answers");
    let bad = contradicting(&s.rows, 1);
    tiny::write_csv(&s.dir.join("bad.csv"), &bad);
    // golden: refused before any run, naming the puzzle and the reason.
    let out = s.path("g.txt");
    let o = tiny::cli(&[
        "golden",
        "-m",
        &s.path("q.trm"),
        "--puzzles",
        &s.path("bad.csv"),
        "-o",
        &out,
    ]);
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("puzzle 1 (`p1`)"), "{t}");
    assert!(
        t.contains("the answer is not a solution of the question: cell"),
        "{t}"
    );
    assert!(!Path::new(&out).exists());
    // run: the transcript on stdout, the error (with the puzzle's name) on stderr.
    let o = tiny::cli(&[
        "run",
        "-m",
        &s.path("q.trm"),
        "--puzzles",
        &s.path("bad.csv"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", tiny::text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stdout.contains("TRM-ANSWER puzzle=1 status=invalid"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "error: TRM-ERROR stage=puzzle puzzle=1 msg=answer: not a solution of the question: cell"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(puzzle `p1`)"), "{stderr}");
    // verify: a gate failure, counted with examples in the report and named on stderr.
    let report = s.dir.join("r.json");
    let o = s.verify("q.trm", "bad.csv", &["--json", report.to_str().unwrap()]);
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        t.contains("gate: FAIL answers-contradicting-givens: 1"),
        "{t}"
    );
    assert!(t.contains("puzzle 1 (`p1`): cell"), "{t}");
    let v = json(&report);
    assert_eq!(v["contradicting_answers"], 1);
    assert_eq!(v["contradicting_examples"][0]["puzzle"], 1);
    assert!(
        v["contradicting_examples"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("cell ")
    );
    // The good set passes the same ungated verify.
    let o = s.verify("q.trm", "p.csv", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", tiny::text(&o));
}

#[test]
fn edited_golden_files_are_mismatches_naming_the_line() {
    let s = Setup::new("hostile-golden-edit");
    let g = s.path("g.txt");
    let o = tiny::cli(&[
        "golden",
        "-m",
        &s.path("q.trm"),
        "--puzzles",
        &s.path("p.csv"),
        "-o",
        &g,
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let text = std::fs::read_to_string(&g).unwrap();
    let line_of = |prefix: &str| text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1;
    // One digit of puzzle 1's question changed (a given), and one digit of its answer.
    let q_line = line_of("TRM-PUZZLE puzzle=1 ");
    let a_line = line_of("# answer puzzle=1 ");
    let q = &s.rows[1].question;
    let a = s.rows[1].answer.as_deref().unwrap();
    let edited_q = contradicting(&s.rows, 1)[1].question.clone();
    let mut a2: Vec<char> = a.chars().collect();
    a2[40] = char::from_digit(a2[40].to_digit(10).unwrap() % 9 + 1, 10).unwrap();
    let edited_a: String = a2.into_iter().collect();
    for (edited, line) in [
        (text.replacen(q.as_str(), &edited_q, 1), a_line),
        (text.replacen(a, &edited_a, 1), a_line),
    ] {
        let path = s.path("edited.txt");
        std::fs::write(&path, edited).unwrap();
        let o = tiny::cli(&["golden", "-m", &s.path("q.trm"), "--check", &path]);
        let t = tiny::text(&o);
        assert_eq!(o.status.code(), Some(3), "{t}");
        assert!(t.contains(&format!("line {line}:")), "{t}");
        assert!(t.contains("puzzle 1 (`p1`)"), "{t}");
        assert!(t.contains("not a solution of the question"), "{t}");
    }
    assert!(q_line < a_line);
    // The untouched file passes.
    let o = tiny::cli(&["golden", "-m", &s.path("q.trm"), "--check", &g]);
    assert!(o.status.success(), "{}", tiny::text(&o));
}

#[test]
fn golden_files_without_puzzles_are_refused_at_both_ends() {
    let s = Setup::new("hostile-golden-empty");
    std::fs::write(s.dir.join("header.csv"), "source,question,answer\n").unwrap();
    let out = s.path("g.txt");
    for args in [
        vec!["--puzzles", "p.csv", "--limit", "0"],
        vec!["--puzzles", "header.csv"],
    ] {
        let mut a = vec!["golden".to_string(), "-m".into(), s.path("q.trm")];
        a.push(args[0].into());
        a.push(s.path(args[1]));
        a.extend(args[2..].iter().map(|x| x.to_string()));
        a.extend(["-o".to_string(), out.clone()]);
        let o = tiny::cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let t = tiny::text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains("no puzzles"), "{t}");
        assert!(!Path::new(&out).exists());
    }
    // A header-only golden file (as the old `--limit 0` wrote) is refused by --check.
    let crc = trm_nostd::format::crc32(&s.fixed);
    std::fs::write(
        &out,
        format!("# trm-golden v1 model_crc={crc:08x} halt=all puzzles=0 scheme=fixed\n"),
    )
    .unwrap();
    let o = tiny::cli(&["golden", "-m", &s.path("q.trm"), "--check", &out]);
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("checks nothing"), "{t}");
}

#[test]
fn models_from_different_checkpoints_are_warned_about() {
    let s = Setup::new("hostile-sources");
    let rec = |name: &'static str, crc: u32| SourceRecord {
        weights: name,
        bytes: 1000,
        crc32c: crc,
        kind: None,
    };
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(s.dir.join(name), bytes).unwrap();
    let a = rec("step_10/model.safetensors", 0x1111_1111);
    let b = rec("step_20/model.safetensors", 0x2222_2222);
    write("f.trm", tiny::float_with_source(&s.float, &a));
    write(
        "qa.trm",
        tiny::fixed_model_with_source(&s.float, &s.rows, &a),
    );
    write(
        "qb.trm",
        tiny::fixed_model_with_source(&s.float, &s.rows, &b),
    );
    let report = s.dir.join("r.json");
    let r = report.to_str().unwrap();
    // Same checkpoint: no warning.
    let o = s.verify("qa.trm", "p.csv", &["--json", r]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    assert!(!tiny::text(&o).contains("warning"), "{}", tiny::text(&o));
    let v = json(&report);
    assert_eq!(v["sources"]["same_checkpoint"], true);
    assert!(v["sources"]["warning"].is_null());
    assert_eq!(v["sources"]["float"]["crc32c"], "11111111");
    // A stale fixed file from another checkpoint: warned on stderr and in the report.
    let o = s.verify("qb.trm", "p.csv", &["--json", r]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("verify: warning: the two models were exported from different checkpoints"),
        "{stderr}"
    );
    assert!(stderr.contains("step_20/model.safetensors"), "{stderr}");
    let v = json(&report);
    assert_eq!(v["sources"]["same_checkpoint"], false);
    assert!(
        v["sources"]["warning"]
            .as_str()
            .unwrap()
            .contains("step_10")
    );
    // A fixed file without a record.
    let o = s.verify("q.trm", "p.csv", &["--json", r]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--fixed records no source checkpoint"),
        "{}",
        tiny::text(&o)
    );
    // A fixed file quantized from the float file itself (`quantize` records the float file
    // when it has no record of its own): no warning.
    write("plain.trm", s.float.clone());
    let o = tiny::cli(&[
        "quantize",
        "-m",
        &s.path("plain.trm"),
        "--puzzles",
        &s.path("p.csv"),
        "-o",
        &s.path("qp.trm"),
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let (f, q, p) = (s.path("plain.trm"), s.path("qp.trm"), s.path("p.csv"));
    let o = tiny::cli(&["verify", "--float", &f, "--fixed", &q, "--puzzles", &p]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    assert!(!tiny::text(&o).contains("warning"), "{}", tiny::text(&o));
}

#[test]
fn work_beyond_the_budget_is_refused_before_running() {
    let s = Setup::new("hostile-budget");
    let c = tiny::config();
    let per_puzzle = c.macs_per_puzzle();
    // inspect shows the work of a step and of a puzzle.
    let o = tiny::cli(&["inspect", &s.path("q.trm")]);
    let t = tiny::text(&o);
    assert!(
        t.contains(&format!("MACs per ACT step: {}", c.macs_per_act_step())),
        "{t}"
    );
    let o = tiny::cli(&["inspect", "--json", &s.path("q.trm")]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["macs_per_puzzle"], per_puzzle);
    // Three puzzles need 3 x per_puzzle: a budget of 2 x per_puzzle refuses every command.
    let max = (2 * per_puzzle).to_string();
    let (q, p) = (s.path("q.trm"), s.path("p.csv"));
    let f = s.path("f.trm");
    let g = s.path("g.txt");
    let commands: Vec<Vec<&str>> = vec![
        vec!["run", "-m", &q, "--puzzles", &p],
        vec!["golden", "-m", &q, "--puzzles", &p, "-o", &g],
        vec!["verify", "--float", &f, "--fixed", &q, "--puzzles", &p],
        vec!["quantize", "-m", &f, "--puzzles", &p, "-o", &g],
    ];
    for cmd in &commands {
        let mut args = cmd.clone();
        args.extend(["--max-macs", &max]);
        let o = tiny::cli(&args);
        let t = tiny::text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {t}");
        assert!(t.contains("--max-macs"), "{t}");
        assert!(t.contains("puzzle runs"), "{t}");
        assert!(!t.contains("TRM-PUZZLE"), "nothing ran: {t}");
        assert!(!Path::new(&g).exists());
    }
    // The default budget runs them.
    let o = tiny::cli(&commands[0]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    // Bad budgets are usage errors.
    for bad in ["0", "-5", "NaN", "1e300"] {
        let o = tiny::cli(&["run", "-m", &q, "--puzzles", &p, "--max-macs", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", tiny::text(&o));
    }
}
