//! The golden comparison (`run_checked`, `run_firmware` with golden files): a golden file made
//! from a plain run of the same model matches line for line; any difference in a `TRM-STEP`,
//! `TRM-DIGEST` or `TRM-RESULT` line, a missing or extra line, or a header that does not fit the
//! run (model CRC-32, halt mode, puzzle count) is reported and makes the run fail.

use trm_fw_app::{
    Console, Counter, Firmware, HaltMode, LineConsole, Options, Puzzle, Report, crc32, run,
    run_checked, run_firmware,
};

#[derive(Default)]
struct Buf(String);

impl Console for Buf {
    fn write_str(&mut self, s: &str) {
        self.0.push_str(s);
    }
}

/// Advances by 1000 per call at 1 kHz: every solve takes 1000 ticks, one second.
struct Fake(u64);

impl Counter for Fake {
    fn now(&mut self) -> u64 {
        self.0 += 1000;
        self.0
    }
    fn unit(&self) -> &'static str {
        "fake"
    }
    fn hz(&self) -> Option<u64> {
        Some(1000)
    }
}

/// `fixed_config()` of `run.rs` quantized by `trm-export quantize` (see `fixtures/make-fixed.sh`).
const FIXED: &[u8] = include_bytes!("fixtures/fixed-d16.trm");

const PUZZLES: [Puzzle<'static>; 2] = [
    Puzzle {
        name: "wiki",
        puzzle_id: 0,
        question: "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79",
        answer: Some(
            "534678912672195348198342567859761423426853791713924856961537284287419635345286179",
        ),
    },
    Puzzle {
        name: "inkala",
        puzzle_id: 0,
        question: "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..",
        answer: None,
    },
];

fn opts() -> Options<'static> {
    Options {
        board: "host",
        halt: HaltMode::AllSteps,
        step_digests: true,
        boards: true,
        float_arith: trm_nostd::float::kernels::Arith::Separate,
    }
}

fn scratch() -> Vec<f32> {
    let m = trm_nostd::Model::parse(FIXED).expect("parse");
    vec![0.0; trm_nostd::AnyEngine::arena_len(&m)]
}

/// CRC-32 written out bit by bit (the table-driven `crc32` is what is tested).
fn crc32_bitwise(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A plain run's output and the golden file made from it, as the host producer writes it.
fn plain_and_golden() -> (String, String) {
    let mut out = Buf::default();
    let r = run(
        &mut out,
        &mut Fake(0),
        Some(FIXED),
        &PUZZLES,
        &mut scratch(),
        &opts(),
    );
    assert!(r.success(), "{}", out.0);
    let mut golden = format!(
        "# trm-golden v1 model_crc={:08x} halt=all puzzles={}\n# a comment line\n",
        crc32_bitwise(FIXED),
        PUZZLES.len()
    );
    for l in out.0.lines() {
        if ["TRM-PUZZLE ", "TRM-STEP ", "TRM-DIGEST ", "TRM-RESULT "]
            .iter()
            .any(|t| l.starts_with(t))
        {
            golden.push_str(l);
            golden.push('\n');
        }
    }
    (out.0, golden)
}

/// Lines compared: TRM-STEP, TRM-DIGEST and TRM-RESULT.
fn checked(golden: &str) -> usize {
    golden
        .lines()
        .filter(|l| {
            l.starts_with("TRM-STEP ")
                || l.starts_with("TRM-DIGEST ")
                || l.starts_with("TRM-RESULT ")
        })
        .count()
}

fn checked_run(golden: &str, halt: HaltMode, puzzles: &[Puzzle<'_>]) -> (Report, String) {
    let mut out = Buf::default();
    let o = Options { halt, ..opts() };
    let r = run_checked(
        &mut out,
        &mut Fake(0),
        FIXED,
        golden,
        puzzles,
        &mut scratch(),
        &o,
    );
    (r, out.0)
}

#[test]
fn crc32_is_the_ieee_one() {
    // The standard check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(FIXED), crc32_bitwise(FIXED));
}

#[test]
fn a_golden_file_of_the_same_run_matches() {
    let (plain, golden) = plain_and_golden();
    let n = checked(&golden);
    // Two puzzles, at least one step + digest + result each.
    assert!(n >= 2 * 3, "{golden}");
    let (r, out) = checked_run(&golden, HaltMode::AllSteps, &PUZZLES);
    assert!(r.success(), "{out}");
    assert_eq!(r.errors, 0);
    // The checked run prints exactly the plain run's lines, plus TRM-GOLDEN before TRM-DONE.
    let mut want: Vec<String> = plain.lines().map(String::from).collect();
    let done = want.pop().expect("TRM-DONE");
    want.push(format!("TRM-GOLDEN match={n}/{n}"));
    want.push(done);
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    assert!(!out.contains("TRM-ERROR"), "{out}");
    // The fake counter: 1000 ticks per solve at 1 kHz.
    let steps = out
        .lines()
        .filter(|l| l.starts_with("TRM-STEP puzzle=0 "))
        .count() as u64;
    let per_step = 1000 / steps;
    assert!(
        out.contains(&format!(
            "TRM-CYCLES puzzle=0 ticks=1000 unit=fake steps={steps} per_step={per_step} us_per_step={}\n",
            per_step * 1_000_000 / 1000
        )),
        "{out}"
    );
}

#[test]
fn a_changed_digest_is_a_mismatch() {
    let (_, golden) = plain_and_golden();
    let n = checked(&golden);
    // Change one hex digit of the second TRM-STEP line's z digest.
    let lines: Vec<&str> = golden.lines().collect();
    let (idx, line) = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("TRM-STEP "))
        .nth(1)
        .expect("two step lines");
    let last = line.chars().last().expect("digit");
    let flipped = if last == '0' { '1' } else { '0' };
    let bad_line = format!("{}{flipped}", &line[..line.len() - 1]);
    let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    bad[idx] = bad_line.clone();
    let bad = bad.join("\n") + "\n";

    let (r, out) = checked_run(&bad, HaltMode::AllSteps, &PUZZLES);
    assert!(!r.success(), "{out}");
    assert_eq!(r.errors, 1, "{out}");
    assert!(
        out.contains(&format!("TRM-GOLDEN match={}/{n}\n", n - 1)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "TRM-ERROR stage=golden msg=first difference at line {} of the golden file: expected `{bad_line}`, got `{line}`\n",
            idx + 1
        )),
        "{out}"
    );
    assert!(out.ends_with(&format!("TRM-DONE ok={} total=2 errors=1\n", r.ok)));
}

#[test]
fn missing_and_extra_lines_are_mismatches() {
    let (_, golden) = plain_and_golden();
    let n = checked(&golden);
    // The golden file expects a third puzzle the run does not have: its lines are missing.
    let mut longer = golden.clone();
    let extra: Vec<&str> = golden
        .lines()
        .filter(|l| l.contains(" puzzle=1 ") && !l.starts_with("TRM-PUZZLE"))
        .collect();
    for l in &extra {
        longer.push_str(&l.replace(" puzzle=1 ", " puzzle=2 "));
        longer.push('\n');
    }
    let longer = longer.replace(" puzzles=2", " puzzles=3");
    let three = [PUZZLES[0], PUZZLES[1], PUZZLES[1]];
    // With three puzzles the run itself matches all the golden lines...
    let (r, out) = checked_run(&longer, HaltMode::AllSteps, &three);
    assert!(r.success(), "{out}");
    // ...with two it prints fewer lines than the golden file has.
    let (r, out) = checked_run(
        &longer.replace(" puzzles=3", " puzzles=2"),
        HaltMode::AllSteps,
        &PUZZLES,
    );
    assert!(!r.success(), "{out}");
    let total = n + extra.len();
    assert!(
        out.contains(&format!("TRM-GOLDEN match={n}/{total}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "TRM-ERROR stage=golden msg={} lines of the golden file were never printed\n",
            extra.len()
        )),
        "{out}"
    );

    // The golden file stops before the last TRM-RESULT: the run prints one line too many.
    let cut = golden.rfind("TRM-RESULT ").expect("result");
    let shorter = &golden[..cut];
    let (r, out) = checked_run(shorter, HaltMode::AllSteps, &PUZZLES);
    assert!(!r.success(), "{out}");
    assert!(
        out.contains(&format!("TRM-GOLDEN match={}/{}\n", n - 1, n - 1)),
        "{out}"
    );
    assert!(
        out.contains("TRM-ERROR stage=golden msg=the run printed more lines than the golden file has, first `TRM-RESULT puzzle=1 "),
        "{out}"
    );
}

#[test]
fn a_header_that_does_not_fit_the_run_is_a_mismatch() {
    let (_, golden) = plain_and_golden();
    let n = checked(&golden);
    let crc = format!("{:08x}", crc32_bitwise(FIXED));
    let other_crc = format!("{:08x}", crc32_bitwise(FIXED) ^ 1);
    for (bad, msg) in [
        (
            golden.replace(&crc, &other_crc),
            format!("msg=model_crc={other_crc} in the golden file, the embedded model's is {crc}"),
        ),
        (
            golden.replace("halt=all", "halt=early"),
            "msg=halt=early in the golden file, the run uses halt=all".to_string(),
        ),
        (
            golden.replace("puzzles=2", "puzzles=7"),
            "msg=puzzles=7 in the golden file, the run has 2".to_string(),
        ),
        (
            golden.replacen("# trm-golden v1", "# trm-golden v9", 1),
            "msg=the golden file does not start with `# trm-golden v1`".to_string(),
        ),
    ] {
        let (r, out) = checked_run(&bad, HaltMode::AllSteps, &PUZZLES);
        assert!(!r.success(), "{out}");
        assert_eq!(r.errors, 1, "{out}");
        // The lines themselves all match: only the header is wrong.
        assert!(
            out.contains(&format!("TRM-GOLDEN match={n}/{n}\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("TRM-ERROR stage=golden {msg}\n")),
            "{out}"
        );
    }
}

#[test]
fn a_golden_file_without_puzzles_is_refused() {
    // No puzzles in the run and none in the file: nothing would be compared.
    let (_, golden) = plain_and_golden();
    let header = golden
        .lines()
        .next()
        .expect("header")
        .replace("puzzles=2", "puzzles=0");
    let empty = format!("{header}\n");
    let (r, out) = checked_run(&empty, HaltMode::AllSteps, &[]);
    assert!(!r.success(), "{out}");
    assert!(
        out.contains(
            "TRM-ERROR stage=golden msg=the golden file holds no puzzles (0 lines to compare): it checks nothing\n"
        ),
        "{out}"
    );
    assert!(out.contains("TRM-GOLDEN match=0/0\n"), "{out}");
    // Puzzles announced, but no line to compare.
    let bare: String = golden
        .lines()
        .filter(|l| {
            !l.starts_with("TRM-STEP")
                && !l.starts_with("TRM-DIGEST")
                && !l.starts_with("TRM-RESULT")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (r, out) = checked_run(&bare, HaltMode::AllSteps, &PUZZLES);
    assert!(!r.success(), "{out}");
    assert!(out.contains("it checks nothing"), "{out}");
}

#[test]
fn run_firmware_checks_each_model_against_its_golden_file() {
    let (_, golden) = plain_and_golden();
    let n = checked(&golden);
    let bad = golden.replacen("TRM-DIGEST puzzle=0", "TRM-DIGEST puzzle=9", 1);
    let models: [&[u8]; 2] = [FIXED, FIXED];
    let goldens = [golden.as_str(), bad.as_str()];
    let fw = Firmware {
        models: &models,
        puzzles: &PUZZLES,
        golden: &goldens,
        halt: HaltMode::AllSteps,
        step_digests: true,
    };
    let mut out = Buf::default();
    let r = run_firmware(&mut out, &mut Fake(0), &fw, &mut scratch(), "test");
    assert_eq!(r.errors, 1, "{}", out.0);
    let summaries: Vec<&str> = out
        .0
        .lines()
        .filter(|l| l.starts_with("TRM-GOLDEN"))
        .collect();
    assert_eq!(
        summaries,
        [
            format!("TRM-GOLDEN match={n}/{n}"),
            format!("TRM-GOLDEN match={}/{n}", n - 1)
        ]
    );

    // A golden list that does not pair with the models.
    let fw = Firmware {
        golden: &goldens[..1],
        ..fw
    };
    let mut out = Buf::default();
    let r = run_firmware(&mut out, &mut Fake(0), &fw, &mut scratch(), "test");
    assert!(!r.success());
    assert_eq!(
        out.0,
        "TRM-ERROR stage=golden msg=1 golden files for 2 models\n"
    );
}

#[test]
fn line_console_passes_whole_lines() {
    let mut got: Vec<String> = Vec::new();
    {
        let mut c = LineConsole::new(|l: &str| got.push(l.to_string()));
        c.write_str("TRM-A x=1");
        c.write_str(" y=2\n\nTRM-B\nend");
        c.flush();
        let long = "é".repeat(200); // 400 bytes: split on character boundaries
        c.write_str(&long);
        c.write_str("\n");
    }
    assert_eq!(got[..4], ["TRM-A x=1 y=2", "", "TRM-B", "end"]);
    let rest: String = got[4..].concat();
    assert_eq!(rest, "é".repeat(200));
    assert!(got[4..].iter().all(|p| p.len() <= trm_fw_app::LINE_MAX));
    assert!(got.len() > 5, "a 400-byte line arrives in pieces");
}
