//! Golden files: written by `trm-export golden` for float and fixed models, their digests equal
//! to the engines' own states computed here directly (not through the app), identical to the
//! lines of `run --step-digests --no-boards`, parsed back, and checked by `golden --check`,
//! which catches a one-byte change of the file and a different model.

mod common;

use common::tiny;
use trm_export::golden::{self, CheckOutcome, parse_golden};
use trm_nostd::digest::{digest_f32, digest_i16, digest_tokens};
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};
use trm_nostd::{Engine, FixedEngine, FloatEngine, Model};

/// Per step (q_halt bits, y digest, z digest), then (steps run, tokens digest) of one puzzle,
/// computed with the engines directly.
fn direct(model: &[u8], question: &str, early: bool) -> (Vec<(u32, u32, u32)>, u32, u32) {
    let m = Model::parse(model).unwrap();
    let c = *m.config();
    let mut q: Tokens = [PAD; CELLS];
    sudoku::parse_puzzle(question, &mut q).unwrap();
    let mut steps = Vec::new();
    let mut pred: Tokens = [PAD; CELLS];
    if m.scheme().is_fixed() {
        let need = FixedEngine::scratch_len(&c);
        let (mut a, mut b) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
        let mut e = FixedEngine::new(&m, &mut a, &mut b).unwrap();
        e.start(&q, 0).unwrap();
        for k in 1..=c.halt_max_steps {
            let s = e.step();
            steps.push((s.q_halt as u32, digest_i16(e.y()), digest_i16(e.z())));
            if early && s.q_halt > 0 || k == c.halt_max_steps {
                break;
            }
        }
        e.predict(&mut pred).unwrap();
    } else {
        // The minimum scratch here (the app uses the fast size): results must not depend on it.
        let mut scratch = vec![0f32; FloatEngine::scratch_len(&c).f32s];
        let mut e = FloatEngine::new(&c, &m, &mut scratch).unwrap();
        e.start(&q, 0).unwrap();
        for k in 1..=c.halt_max_steps {
            let s = e.step();
            steps.push((s.q_halt.to_bits(), digest_f32(e.y()), digest_f32(e.z())));
            if early && s.q_halt > 0.0 || k == c.halt_max_steps {
                break;
            }
        }
        e.predict(&mut pred).unwrap();
    }
    let n = steps.len() as u32;
    (steps, n, digest_tokens(&pred))
}

#[test]
fn crc32_is_the_standard_one() {
    // The check value of CRC-32/ISO-HDLC (zlib's crc32), which golden headers use.
    assert_eq!(trm_nostd::format::crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn golden_files_hold_the_engines_digests_and_check_round_trip() {
    let dir = tiny::temp_dir("golden");
    let c = tiny::config();
    let rows = tiny::puzzles(5, 30, 1);
    let csv = dir.join("p.csv");
    tiny::write_csv(&csv, &rows);
    let float = tiny::float_model(&c, 3, 0.0);
    let fixed = tiny::fixed_model(&float, &rows);
    let mut early_steps_differ = false;
    for (kind, bytes) in [("float", &float), ("fixed", &fixed)] {
        let model = dir.join(format!("{kind}.trm"));
        std::fs::write(&model, bytes).unwrap();
        for halt in ["all", "early"] {
            let gpath = dir.join(format!("{kind}-{halt}.txt"));
            let m = model.to_str().unwrap();
            let o = tiny::cli(&[
                "golden",
                "-m",
                m,
                "--puzzles",
                csv.to_str().unwrap(),
                "--limit",
                "5",
                "--halt",
                halt,
                "-o",
                gpath.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", tiny::text(&o));
            let text = std::fs::read_to_string(&gpath).unwrap();
            let g = parse_golden(&text).unwrap();
            assert!(text.starts_with("# trm-golden v1 "), "{text}");
            assert_eq!(g.model_crc, trm_nostd::format::crc32(bytes));
            assert_eq!(g.fields["halt"], halt);
            assert_eq!(g.fields["scheme"], kind);
            assert_eq!(g.puzzles.len(), rows.len());
            for (p, r) in g.puzzles.iter().zip(&rows) {
                assert_eq!(&p.row, r, "puzzles and answers are kept");
                let (steps, n, tokens) = direct(bytes, &r.question, halt == "early");
                let got: Vec<(u32, u32, u32)> =
                    p.steps.iter().map(|s| (s.q_halt, s.y, s.z)).collect();
                assert_eq!(got, steps, "{kind} {halt} {}", r.name);
                assert_eq!(
                    p.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
                    (1..=n).collect::<Vec<_>>()
                );
                assert_eq!((p.steps_run, p.tokens), (n, tokens), "{kind} {halt}");
                early_steps_differ |= n < c.halt_max_steps;
                // correct= counts cells equal to the answer, recomputed from the prediction.
                let answer = r.answer.as_deref().unwrap();
                let same = answer
                    .chars()
                    .zip(p.prediction.chars())
                    .filter(|(a, b)| a == b)
                    .count();
                assert_eq!(p.correct as usize, same);
            }
            // The same lines as `run --step-digests --no-boards`.
            let o = tiny::cli(&[
                "run",
                "-m",
                m,
                "--puzzles",
                csv.to_str().unwrap(),
                "--limit",
                "5",
                "--halt",
                halt,
                "--step-digests",
                "--no-boards",
            ]);
            assert!(o.status.success(), "{}", tiny::text(&o));
            let run_out = String::from_utf8(o.stdout).unwrap();
            let want: Vec<&str> = run_out
                .lines()
                .filter(|l| golden::ALL_TAGS.contains(&l.split(' ').next().unwrap()))
                .collect();
            let have: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(have, want, "{kind} {halt}");
            assert_eq!(g.compare(&run_out), Ok(g.lines.len() - rows.len()));

            // --check passes on the file as written.
            let o = tiny::cli(&["golden", "--check", gpath.to_str().unwrap(), "-m", m]);
            assert!(o.status.success(), "{}", tiny::text(&o));
            assert!(tiny::text(&o).contains("golden check passed"));
        }
    }
    assert!(
        early_steps_differ,
        "no puzzle halted early: the early-halt test needs a model that halts"
    );

    // A one-byte change of a digest: exit 3, naming the golden line.
    let m = dir.join("fixed.trm");
    let gpath = dir.join("fixed-all.txt");
    let text = std::fs::read_to_string(&gpath).unwrap();
    let (line_no, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("TRM-STEP puzzle=2 step=2"))
        .unwrap();
    let pos = text.find(line).unwrap() + line.len() - 1;
    let mut bytes = text.clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, &bytes).unwrap();
    let o = tiny::cli(&[
        "golden",
        "--check",
        bad.to_str().unwrap(),
        "-m",
        m.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", tiny::text(&o));
    let msg = tiny::text(&o);
    assert!(
        msg.contains(&format!("golden line {}", line_no + 1)) && msg.contains(line),
        "{msg}"
    );

    // Another model (a different CRC): exit 3 naming both CRCs.
    let o = tiny::cli(&[
        "golden",
        "--check",
        gpath.to_str().unwrap(),
        "-m",
        dir.join("float.trm").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", tiny::text(&o));
    assert!(tiny::text(&o).contains("CRC-32"), "{}", tiny::text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_ignores_other_lines_and_reports_where_output_ends() {
    let c = tiny::config();
    let rows = tiny::puzzles(2, 20, 9);
    let float = tiny::float_model(&c, 5, 0.0);
    let text = golden::write_golden(&float, &rows, trm_fw_app::HaltMode::AllSteps, 0).unwrap();
    let g = parse_golden(&text).unwrap();
    // A device-like log: CRLF line ends, banners, boards and cycle counts around the lines.
    let (run, report) =
        golden::run_app(&float, &rows, trm_fw_app::HaltMode::AllSteps, true, true, 0);
    assert!(report.success());
    let crlf = run.replace('\n', "\r\n");
    let compared = g.compare(&crlf).unwrap();
    assert_eq!(compared, rows.len() * (c.halt_max_steps as usize + 2));
    // Cut after the first puzzle: the mismatch names the next golden line, with nothing got.
    let cut = &run[..run.find("TRM-PUZZLE puzzle=1").unwrap()];
    let m = g.compare(cut).unwrap_err();
    assert_eq!(m.got, None);
    let next = g
        .lines
        .iter()
        .find(|l| l.text.starts_with("TRM-STEP puzzle=1"))
        .unwrap();
    assert_eq!(m.golden_line_no, Some(next.line_no));
    assert_eq!(m.index, c.halt_max_steps as usize + 2);
    // A changed model changes the digests: the first TRM-STEP differs.
    let other = tiny::float_model(&c, 6, 0.0);
    let (run2, _) = golden::run_app(
        &other,
        &rows,
        trm_fw_app::HaltMode::AllSteps,
        true,
        false,
        0,
    );
    let m = g.compare(&run2).unwrap_err();
    assert_eq!(m.index, 0);
    assert!(m.expected.unwrap().starts_with("TRM-STEP puzzle=0 step=1"));
    // check_golden on the library level agrees.
    assert_eq!(
        golden::check_golden(&g, &float, 0).unwrap(),
        CheckOutcome::Same {
            lines: g.lines.len()
        }
    );
}

#[test]
fn malformed_golden_files_are_rejected_with_the_line() {
    let c = tiny::config();
    let rows = tiny::puzzles(1, 20, 2);
    let text = golden::write_golden(
        &tiny::float_model(&c, 1, 0.0),
        &rows,
        trm_fw_app::HaltMode::AllSteps,
        0,
    )
    .unwrap();
    let err = parse_golden("hello\n").unwrap_err().to_string();
    assert!(err.contains("not a golden file"), "{err}");
    let no_crc = text.replacen("model_crc=", "crc=", 1);
    let err = format!("{:#}", parse_golden(&no_crc).unwrap_err());
    assert!(err.contains("model_crc"), "{err}");
    let bad_hex = text.replacen(" y=", " y=zz", 1);
    let err = format!("{:#}", parse_golden(&bad_hex).unwrap_err());
    assert!(err.contains("line 5"), "{err}");
    let wrong_count = text.replacen("puzzles=1", "puzzles=2", 1);
    let err = format!("{:#}", parse_golden(&wrong_count).unwrap_err());
    assert!(err.contains("puzzles=2"), "{err}");
}
