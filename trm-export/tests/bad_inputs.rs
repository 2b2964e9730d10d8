//! Bad inputs to the commands (corrupt `.trm` files, malformed CSVs and puzzle strings, the
//! wrong kind of model) end in a clear message and exit status 1, never a panic.

mod common;

use common::tiny;
use trm_nostd::float::OwnedWeights;
use trm_nostd::format::{NumericScheme, write_model};
use trm_nostd::{DType, PosEncoding, TensorId, TensorSource};

/// Runs the CLI and checks it failed with status 1 (not a panic) and a message containing
/// every one of `want`.
fn fails(args: &[&str], want: &[&str]) {
    let o = tiny::cli(args);
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
    assert!(!t.contains("panicked"), "{args:?}: {t}");
    for w in want {
        assert!(t.contains(w), "{args:?}: expected `{w}` in:\n{t}");
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tiny::temp_dir("bad");
    let c = tiny::config();
    let rows = tiny::puzzles(2, 30, 3);
    let csv = dir.join("p.csv");
    tiny::write_csv(&csv, &rows);
    let float = tiny::float_model(&c, 2, 0.0);
    let fixed = tiny::fixed_model(&float, &rows);
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(p("f.trm"), &float).unwrap();
    std::fs::write(p("q.trm"), &fixed).unwrap();
    // Corrupt files: truncated, one payload byte flipped, not a model at all.
    std::fs::write(p("short.trm"), &float[..float.len() / 2]).unwrap();
    let mut flipped = float.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    std::fs::write(p("flip.trm"), &flipped).unwrap();
    std::fs::write(p("text.trm"), b"hello").unwrap();
    // A model of another task (seq_len 10).
    let mut other = c;
    other.seq_len = 10;
    other.pos_encodings = PosEncoding::None;
    let w = OwnedWeights::random(&other, 1, DType::F32);
    let src = w.source();
    let tensors: Vec<(TensorId, Vec<f32>)> = TensorId::all(&other)
        .map(|id| {
            let v = src.tensor(id).unwrap();
            (
                id,
                (0..id.shape(&other).numel())
                    .map(|i| v.get_f32(i).unwrap())
                    .collect(),
            )
        })
        .collect();
    let bytes = write_model(
        other,
        NumericScheme::Float(DType::F32),
        tensors.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .unwrap();
    std::fs::write(p("other.trm"), bytes).unwrap();
    let cs = csv.to_str().unwrap();

    for bad in ["short.trm", "flip.trm", "text.trm"] {
        let b = p(bad);
        fails(&["inspect", &b], &["not a valid .trm file", bad]);
        fails(
            &["golden", "-m", &b, "--puzzles", cs, "-o", &p("g.txt")],
            &["not a valid .trm file"],
        );
        fails(
            &[
                "verify",
                "--float",
                &b,
                "--fixed",
                &p("q.trm"),
                "--puzzles",
                cs,
            ],
            &["not a valid .trm file", bad],
        );
        fails(
            &[
                "verify",
                "--float",
                &p("f.trm"),
                "--fixed",
                &b,
                "--puzzles",
                cs,
            ],
            &["not a valid .trm file", bad],
        );
        fails(
            &["quantize", "-m", &b, "--puzzles", cs, "-o", &p("x.trm")],
            &["not a valid .trm file"],
        );
        fails(&["export", &b, "-o", &p("x")], &[bad]);
        // `run` prints what the firmware prints: the model error line, and fails.
        fails(
            &["run", "-m", &b, "--puzzles", cs],
            &["TRM-ERROR stage=model"],
        );
    }

    // Malformed CSVs: the file and line are named.
    std::fs::write(p("nocol.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(
        p("short.csv"),
        format!("question\n{}\n123\n", rows[0].question),
    )
    .unwrap();
    let (f, q, g) = (p("f.trm"), p("q.trm"), p("g.txt"));
    let (nocol, short) = (p("nocol.csv"), p("short.csv"));
    for cmd in [
        vec!["run", "-m", &f as &str],
        vec!["verify", "--float", &f, "--fixed", &q],
        vec!["golden", "-m", &f, "-o", &g],
    ] {
        let mut a = cmd.clone();
        a.extend(["--puzzles", &nocol]);
        fails(&a, &["nocol.csv:1", "no `question` column"]);
        let mut a = cmd.clone();
        a.extend(["--puzzles", &short]);
        fails(&a, &["short.csv:3", "3 characters"]);
    }
    // A bad puzzle string.
    fails(
        &[
            "verify",
            "--float",
            &p("f.trm"),
            "--fixed",
            &p("q.trm"),
            "--puzzle",
            "12x",
        ],
        &["puzzle 0", "bad character 'x'"],
    );
    fails(
        &[
            "golden",
            "-m",
            &p("f.trm"),
            "--puzzle",
            "12x",
            "-o",
            &p("g.txt"),
        ],
        &["TRM-ERROR stage=puzzle"],
    );
    fails(
        &["run", "-m", &p("f.trm"), "--puzzle", "12x"],
        &["TRM-ERROR stage=puzzle"],
    );
    // No puzzles given at all.
    fails(
        &["verify", "--float", &p("f.trm"), "--fixed", &p("q.trm")],
        &["--puzzles CSV"],
    );

    // The wrong kind of model.
    fails(
        &[
            "verify",
            "--float",
            &p("q.trm"),
            "--fixed",
            &p("f.trm"),
            "--puzzles",
            cs,
        ],
        &["--float", "fixed-point"],
    );
    fails(
        &[
            "quantize",
            "-m",
            &p("q.trm"),
            "--puzzles",
            cs,
            "-o",
            &p("x.trm"),
        ],
        &["already a fixed-point"],
    );
    fails(
        &["export", &p("q.trm"), "-o", &p("x")],
        &["fixed-point model"],
    );
    fails(
        &[
            "verify",
            "--float",
            &p("other.trm"),
            "--fixed",
            &p("q.trm"),
            "--puzzles",
            cs,
        ],
        &["has 81 characters, expected 10 (a tokens puzzle)"],
    );
    fails(
        &[
            "golden",
            "-m",
            &p("other.trm"),
            "--puzzles",
            cs,
            "-o",
            &p("g.txt"),
        ],
        &["has 81 characters, expected 10 (a tokens puzzle)"],
    );
    fails(
        &["run", "-m", &p("other.trm"), "--puzzles", cs],
        &["has 81 characters, expected 10 (a tokens puzzle)"],
    );
    // A golden file that is not one.
    std::fs::write(p("notgolden.txt"), "TRM-STEP x\n").unwrap();
    fails(
        &["golden", "--check", &p("notgolden.txt"), "-m", &p("f.trm")],
        &["not a golden file"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_checks_each_prediction_and_sums_up() {
    let dir = tiny::temp_dir("run");
    let c = tiny::config();
    let rows = tiny::puzzles(3, 30, 5);
    let csv = dir.join("p.csv");
    tiny::write_csv(&csv, &rows);
    let model = dir.join("f.trm");
    std::fs::write(&model, tiny::float_model(&c, 2, 0.0)).unwrap();
    let o = tiny::cli(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--puzzles",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let checks: Vec<&str> = out.lines().filter(|l| l.starts_with("check: ")).collect();
    assert_eq!(checks.len(), rows.len(), "{out}");
    // Recount from the TRM-RESULT lines and the answers.
    let mut exact = 0;
    let mut cells = 0;
    for (line, r) in out
        .lines()
        .filter(|l| l.starts_with("TRM-RESULT"))
        .zip(&rows)
    {
        let pred = line
            .split("prediction=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let same = pred
            .chars()
            .zip(r.answer.as_deref().unwrap().chars())
            .filter(|(a, b)| a == b)
            .count();
        cells += same;
        exact += usize::from(same == 81);
    }
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("summary: 3 puzzles solved")
            && summary.contains(&format!("exact {exact}/3"))
            && summary.contains(&format!("cells {:.2}%", 100.0 * cells as f64 / 243.0)),
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verdicts_name_what_is_wrong() {
    use trm_export::puzzles::PuzzleKind;
    use trm_export::solve::verdict;
    let rows = tiny::puzzles(1, 10, 1);
    let (q, a) = (&rows[0].question, rows[0].answer.as_deref().unwrap());
    let v = verdict(&PuzzleKind::SUDOKU, q, a, Some(81));
    assert!(
        v.contains("grid: yes") && v.contains("givens kept: yes (71/71)") && v.contains("correct"),
        "{v}"
    );
    // Swap two given cells of one row: still no duplicate in the row, but columns break and
    // two givens change.
    let given: Vec<usize> = (0..9)
        .filter(|&i| q.as_bytes()[i] != b'.')
        .take(2)
        .collect();
    let mut b = a.as_bytes().to_vec();
    b.swap(given[0], given[1]);
    let v = verdict(
        &PuzzleKind::SUDOKU,
        q,
        std::str::from_utf8(&b).unwrap(),
        Some(79),
    );
    assert!(
        v.contains("grid: no")
            && v.contains("givens kept: no (69/71")
            && v.contains("wrong (79/81"),
        "{v}"
    );
    let v = verdict(&PuzzleKind::SUDOKU, q, &"?".repeat(81), None);
    assert!(
        v.contains("not 81 digits") && v.contains("answer: unknown"),
        "{v}"
    );
}
