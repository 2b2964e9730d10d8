//! `run`, `golden` and `verify` on several threads: their output (stdout, stderr, the golden
//! file, the verify report) is the same, byte for byte, as on one thread, timing figures aside,
//! on 7 puzzles (a count that no thread count used here divides), also when a later puzzle
//! fails.

mod common;

use std::path::Path;

use common::tiny;
use trm_export::golden;
use trm_export::puzzles::PuzzleRow;
use trm_fw_app::HaltMode;

/// Thread counts compared with one thread (0: one per core).
const MORE_THREADS: [&str; 3] = ["2", "3", "0"];

/// 7 puzzles with answers; the 6th (index 5) has a question the app refuses when `bad`.
fn rows(bad: bool) -> Vec<PuzzleRow> {
    let mut rows = tiny::puzzles(7, 30, 4);
    if bad {
        rows[5].question = rows[5].question.replacen('.', "x", 1);
    }
    rows
}

/// A float model whose halting varies between puzzles, and its fixed counterpart.
fn models(dir: &Path) -> (String, String) {
    let c = tiny::config();
    let float = tiny::float_model(&c, 3, 0.0);
    let fixed = tiny::fixed_model(&float, &rows(false));
    let (f, q) = (dir.join("float.trm"), dir.join("fixed.trm"));
    std::fs::write(&f, &float).unwrap();
    std::fs::write(&q, &fixed).unwrap();
    (
        f.to_str().unwrap().to_string(),
        q.to_str().unwrap().to_string(),
    )
}

/// `run`'s stdout with the timing of each solve (`TRM-CYCLES`'s `ticks=` and `per_step=`,
/// wall-clock nanoseconds) blanked.
fn without_timing(stdout: &[u8]) -> String {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    text.lines()
        .map(|l| {
            if !l.starts_with("TRM-CYCLES ") {
                return l.to_string();
            }
            l.split(' ')
                .map(|f| match f.split_once('=') {
                    Some(("ticks" | "per_step", _)) => "TIME",
                    _ => f,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .map(|l| l + "\n")
        .collect()
}

/// (exit code, stdout without timing, stderr) of `trm-export args`.
fn outcome(args: &[&str]) -> (Option<i32>, String, String) {
    let o = tiny::cli(args);
    (
        o.status.code(),
        without_timing(&o.stdout),
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn the_app_prints_the_same_on_any_number_of_threads() {
    let c = tiny::config();
    let float = tiny::float_model(&c, 3, 0.0);
    let fixed = tiny::fixed_model(&float, &rows(false));
    let mut early_differs = false;
    for model in [&float, &fixed] {
        for bad in [false, true] {
            let rows = rows(bad);
            for halt in [HaltMode::AllSteps, HaltMode::EarlyHalt] {
                for (digests, boards) in [(true, false), (false, true)] {
                    let run =
                        |threads| golden::run_app(model, &rows, halt, digests, boards, threads);
                    let (one, report) = run(1);
                    assert_eq!(report.total, 7, "{one}");
                    assert_eq!(report.errors, usize::from(bad), "{one}");
                    for threads in [2, 3, 7, 9] {
                        let (out, r) = run(threads);
                        assert_eq!(out, one, "{threads} threads");
                        assert_eq!(r, report, "{threads} threads");
                    }
                    early_differs |= halt == HaltMode::EarlyHalt
                        && one.contains(" steps=1 ")
                        && one.contains(&format!(" steps={} ", c.halt_max_steps));
                }
            }
        }
    }
    // Solves of different lengths: threads finish their puzzles out of order.
    assert!(early_differs, "no run halted early on some puzzles only");
}

#[test]
fn run_prints_the_same_on_any_number_of_threads() {
    let dir = tiny::temp_dir("threads-run");
    let (float, fixed) = models(&dir);
    for bad in [false, true] {
        let csv = dir.join("p.csv");
        tiny::write_csv(&csv, &rows(bad));
        let csv = csv.to_str().unwrap();
        for model in [&float, &fixed] {
            for extra in [&["--halt", "early"][..], &["--step-digests", "--no-boards"]] {
                let args = |threads: &'static str| {
                    let mut a = vec!["run", "-m", model, "--puzzles", csv, "--limit", "7"];
                    a.extend_from_slice(extra);
                    a.extend_from_slice(&["--threads", threads]);
                    a
                };
                let one = outcome(&args("1"));
                assert_eq!(one.0, Some(if bad { 1 } else { 0 }), "{}{}", one.1, one.2);
                assert!(one.1.contains("TRM-DONE ok="), "{}", one.1);
                if bad {
                    // The later puzzle's error, on stderr with its name, as on one thread.
                    assert!(
                        one.2.contains("error: TRM-ERROR stage=puzzle puzzle=5 ")
                            && one.2.contains("(puzzle `p5`)"),
                        "{}",
                        one.2
                    );
                    assert!(one.1.contains("TRM-PUZZLE puzzle=6 "), "{}", one.1);
                } else {
                    assert_eq!(one.2, "");
                }
                for threads in MORE_THREADS {
                    assert_eq!(
                        outcome(&args(threads)),
                        one,
                        "--threads {threads} {extra:?}"
                    );
                }
            }
        }
    }
    // A model the app refuses: the same header, error and exit code on any threads.
    let bad = dir.join("bad.trm");
    std::fs::write(&bad, b"\x89TRM\r\n\x1a\nnot a model").unwrap();
    let csv = dir.join("p.csv");
    let args = |threads: &'static str| {
        let (bad, csv) = (bad.to_str().unwrap(), csv.to_str().unwrap());
        [
            "run",
            "-m",
            bad,
            "--puzzles",
            csv,
            "--limit",
            "7",
            "--threads",
            threads,
        ]
        .map(String::from)
    };
    let run = |threads| outcome(&args(threads).each_ref().map(String::as_str));
    let one = run("1");
    assert_eq!(one.0, Some(1), "{one:?}");
    assert!(one.1.contains("TRM-ERROR stage=model "), "{}", one.1);
    assert!(
        one.1.contains("TRM-DONE ok=0 total=0 errors=1\n"),
        "{}",
        one.1
    );
    for threads in MORE_THREADS {
        assert_eq!(run(threads), one, "--threads {threads}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn golden_files_are_the_same_on_any_number_of_threads() {
    let dir = tiny::temp_dir("threads-golden");
    let (float, fixed) = models(&dir);
    let csv = dir.join("p.csv");
    tiny::write_csv(&csv, &rows(false));
    let bad_csv = dir.join("bad.csv");
    tiny::write_csv(&bad_csv, &rows(true));
    for model in [&float, &fixed] {
        for halt in ["all", "early"] {
            let write = |threads: &str, csv: &Path| {
                let out = dir.join(format!("g-{threads}.txt"));
                let o = tiny::cli(&[
                    "golden",
                    "-m",
                    model,
                    "--puzzles",
                    csv.to_str().unwrap(),
                    "--limit",
                    "7",
                    "--halt",
                    halt,
                    "--threads",
                    threads,
                    "-o",
                    out.to_str().unwrap(),
                ]);
                let text = std::fs::read_to_string(&out).ok();
                let _ = std::fs::remove_file(&out);
                (o.status.code(), text, String::from_utf8(o.stderr).unwrap())
            };
            let one = write("1", &csv);
            assert_eq!(one.0, Some(0), "{}", one.2);
            let file = one.1.clone().unwrap();
            for threads in MORE_THREADS {
                assert_eq!(write(threads, &csv), one, "--threads {threads}");
            }
            // --check re-runs the file's puzzles on any number of threads.
            let g = dir.join("g.txt");
            std::fs::write(&g, &file).unwrap();
            for threads in ["1", "3"] {
                let o = tiny::cli(&[
                    "golden",
                    "--check",
                    g.to_str().unwrap(),
                    "-m",
                    model,
                    "--threads",
                    threads,
                ]);
                assert!(o.status.success(), "{}", tiny::text(&o));
            }
            // A later puzzle the app refuses: the same error, and no file, on any threads.
            let one = write("1", &bad_csv);
            assert_eq!(one.0, Some(1), "{}", one.2);
            assert_eq!(one.1, None);
            assert!(
                one.2.contains("TRM-ERROR stage=puzzle puzzle=5 ") && one.2.contains("`p5`"),
                "{}",
                one.2
            );
            for threads in MORE_THREADS {
                assert_eq!(write(threads, &bad_csv), one, "--threads {threads}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The verify report (JSON) without its run conditions (`seconds`, `threads`), and the
/// table without its first line (which holds them); checks `threads` first.
fn verify_outcome(
    args: &[&str],
    json: &Path,
    threads: usize,
) -> (Option<i32>, String, String, String) {
    let o = tiny::cli(args);
    let table = String::from_utf8(o.stdout).unwrap();
    let text = std::fs::read_to_string(json).unwrap();
    let mut report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let map = report.as_object_mut().unwrap();
    assert_eq!(map.remove("threads"), Some(threads.into()), "{text}");
    assert!(map.remove("seconds").unwrap().is_f64(), "{text}");
    let rest = table.split_once('\n').map_or("", |(_, r)| r).to_string();
    (
        o.status.code(),
        serde_json::to_string_pretty(&report).unwrap(),
        rest,
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn verify_reports_the_same_on_any_number_of_threads() {
    let dir = tiny::temp_dir("threads-verify");
    let (float, fixed) = models(&dir);
    let json = dir.join("report.json");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A later puzzle whose answer contradicts its givens: a gate failure naming it.
    let mut contradicting = rows(false);
    let a5 = contradicting[5].answer.clone().unwrap();
    contradicting[5].answer = contradicting[4].answer.clone();
    assert_ne!(contradicting[5].answer.as_ref(), Some(&a5));
    for (name, rows) in [("good", rows(false)), ("contradicting", contradicting)] {
        let csv = dir.join(format!("{name}.csv"));
        tiny::write_csv(&csv, &rows);
        for halt in ["all", "early"] {
            let args = |threads: &'static str| {
                vec![
                    "verify",
                    "--float",
                    &float,
                    "--fixed",
                    &fixed,
                    "--puzzles",
                    csv.to_str().unwrap(),
                    "--limit",
                    "7",
                    "--halt",
                    halt,
                    "--json",
                    json.to_str().unwrap(),
                    "--threads",
                    threads,
                ]
            };
            let one = verify_outcome(&args("1"), &json, 1);
            if name == "good" {
                assert_eq!(one.0, Some(0), "{one:?}");
            } else {
                assert_eq!(one.0, Some(3), "{one:?}");
                assert!(one.3.contains("puzzle 5 (`p5`)"), "{}", one.3);
            }
            for (threads, used) in [("2", 2), ("3", 3), ("0", cores.min(7))] {
                let more = verify_outcome(&args(threads), &json, used);
                assert_eq!(more, one, "--threads {threads}");
            }
        }
    }
    // A later puzzle that does not parse: the same error on any threads.
    let csv = dir.join("bad.csv");
    tiny::write_csv(&csv, &rows(true));
    let args = |threads: &'static str| {
        vec![
            "verify",
            "--float",
            &float,
            "--fixed",
            &fixed,
            "--puzzles",
            csv.to_str().unwrap(),
            "--threads",
            threads,
        ]
    };
    let one = outcome(&args("1"));
    assert_eq!(one.0, Some(1), "{one:?}");
    assert!(one.2.contains("puzzle 5 (p5): question: "), "{}", one.2);
    for threads in MORE_THREADS {
        assert_eq!(outcome(&args(threads)), one, "--threads {threads}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `run --float-arith fused`: a float model's steps change bits (its own arithmetic), the same
/// on one and two threads; a fixed model ignores the option (output byte for byte the default's).
#[test]
fn run_float_arith_fused() {
    let dir = tiny::temp_dir("threads-fused");
    let (float, fixed) = models(&dir);
    let csv = dir.join("p.csv");
    tiny::write_csv(&csv, &rows(false));
    let csv = csv.to_str().unwrap();
    let run = |model: &str, arith: &str, threads: &str| {
        outcome(&[
            "run",
            "-m",
            model,
            "--puzzles",
            csv,
            "--limit",
            "7",
            "--step-digests",
            "--no-boards",
            "--float-arith",
            arith,
            "--threads",
            threads,
        ])
    };
    let steps = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with("TRM-STEP "))
            .map(String::from)
            .collect()
    };
    let separate = run(&float, "separate", "1");
    let fused = run(&float, "fused", "1");
    assert_eq!(separate.0, Some(0), "{}", separate.2);
    assert_eq!(fused.0, Some(0), "{}", fused.2);
    let (s, f) = (steps(&separate.1), steps(&fused.1));
    assert_eq!(s.len(), f.len());
    assert!(!s.is_empty());
    assert!(s != f, "fused multiply-adds gave the separate digests");
    // The default is the separate arithmetic.
    let plain = outcome(&[
        "run",
        "-m",
        &float,
        "--puzzles",
        csv,
        "--limit",
        "7",
        "--step-digests",
        "--no-boards",
    ]);
    assert_eq!(plain, separate);
    assert_eq!(run(&float, "fused", "2"), fused, "fused on two threads");
    assert_eq!(run(&fixed, "fused", "1"), run(&fixed, "separate", "1"));
    let bad = tiny::cli(&[
        "run",
        "-m",
        &float,
        "--puzzles",
        csv,
        "--float-arith",
        "fast",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", tiny::text(&bad));
    std::fs::remove_dir_all(&dir).unwrap();
}
