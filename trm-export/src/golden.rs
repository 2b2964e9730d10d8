//! Golden files: per-ACT-step digests of y and z and the final tokens of a model on a puzzle
//! set, written by running the firmware app (`trm-fw-app`) on the host exactly like
//! `trm-export run --step-digests --no-boards`, and checked against any later run (the host
//! again, or a device's console output).
//!
//! # Format (`trm-golden v1`)
//!
//! A UTF-8 text file. The first line is `# trm-golden v1` followed by space-separated
//! `key=value` fields: `model_crc=<hex32>` (CRC-32 of the whole `.trm` file,
//! [`trm_nostd::format::crc32`]), `halt=<all|early>`, `puzzles=<n>`, then informational
//! `scheme=<float|fixed>` and `model_bytes=<n>`. Then, per puzzle in order, the app's own lines
//! exactly as it prints them: `TRM-PUZZLE ...`, every `TRM-STEP ...`, `TRM-DIGEST ...`,
//! `TRM-RESULT ...` (no `TRM-CYCLES`, no boards). Other lines starting with `#` are comments; a
//! comment `# answer puzzle=<i> answer=<answer>` (written as the app writes the question: 81
//! characters for Sudoku, a token line for other tasks) after a `TRM-PUZZLE` line keeps the
//! puzzle's reference answer, so that `golden --check` can re-run the set from the file alone
//! (the `correct=` count of `TRM-RESULT` depends on it). A `TRM-PUZZLE` line of another task
//! than Sudoku names the puzzle identifier (`id=`), which the re-run uses too.
//!
//! A consumer compares its own `TRM-STEP`, `TRM-DIGEST` and `TRM-RESULT` lines with the file's,
//! line by line, in order ([`Golden::compare`]).

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context as _, anyhow, bail, ensure};
use trm_fw_app::{Console, HaltMode, NoCounter, Report};
use trm_nostd::Model;

use crate::puzzles::{PuzzleKind, PuzzleRow, check_answers};
use crate::solve::{HostRun, run_app_on_host};

/// The first characters of every golden file.
pub const MAGIC: &str = "# trm-golden v1";

/// The tags of the app's lines a golden file holds, in the order they appear per puzzle.
pub const ALL_TAGS: [&str; 4] = ["TRM-PUZZLE", "TRM-STEP", "TRM-DIGEST", "TRM-RESULT"];

/// The tags a consumer compares with a golden file ([`Golden::compare`]).
pub const CHECKED_TAGS: [&str; 3] = ["TRM-STEP", "TRM-DIGEST", "TRM-RESULT"];

/// A [`Console`] collecting everything in a string.
#[derive(Debug, Default)]
pub struct StringConsole(pub String);

impl Console for StringConsole {
    fn write_str(&mut self, s: &str) {
        self.0.push_str(s);
    }
}

/// The name of a halting mode in golden headers and on the command line (`all`, `early`).
pub fn halt_name(h: HaltMode) -> &'static str {
    match h {
        HaltMode::AllSteps => "all",
        HaltMode::EarlyHalt => "early",
    }
}

/// Parses [`halt_name`]'s names.
pub fn parse_halt(s: &str) -> anyhow::Result<HaltMode> {
    match s {
        "all" => Ok(HaltMode::AllSteps),
        "early" => Ok(HaltMode::EarlyHalt),
        other => bail!("halt mode `{other}`: expected `all` or `early`"),
    }
}

/// Runs the firmware app on the host (no timing, a counter that always reads 0) on `threads`
/// threads (0: one per core; the output is the same for any number) and returns its whole
/// output and report.
pub fn run_app(
    model: &[u8],
    rows: &[PuzzleRow],
    halt: HaltMode,
    step_digests: bool,
    boards: bool,
    threads: usize,
) -> (String, Report) {
    let mut out = StringConsole::default();
    let how = HostRun {
        halt,
        step_digests,
        boards,
        threads,
        float_arith: trm_nostd::float::kernels::Arith::Separate,
    };
    let report = run_app_on_host(&mut out, &NoCounter, model, rows, &how);
    (out.0, report)
}

/// Writes the golden file of `model` (the `.trm` bytes) on `rows` (see the module
/// documentation). Fails when there is no puzzle (a golden file must check something), when a
/// row's answer is not a solution of its question (naming the row and why), and when the app
/// reports an error (bad model, bad puzzle string), with the app's `TRM-ERROR` lines and the
/// puzzles' names in the message. The puzzles are solved on `threads` threads (0: one per core);
/// the file is the same, byte for byte, for any number.
pub fn write_golden(
    model: &[u8],
    rows: &[PuzzleRow],
    halt: HaltMode,
    threads: usize,
) -> anyhow::Result<String> {
    let parsed = Model::parse(model).map_err(|e| anyhow!("the model does not parse: {e}"))?;
    ensure!(
        !rows.is_empty(),
        "no puzzles: a golden file needs at least one (an empty puzzle set, or --limit 0?)"
    );
    let kind = PuzzleKind::of(parsed.config());
    check_answers(rows, &kind)?;
    let (output, report) = run_app(model, rows, halt, true, false, threads);
    if !report.success() {
        bail!("{}", app_errors(&output, report.errors, rows));
    }
    let mut text = format!(
        "{MAGIC} model_crc={:08x} halt={} puzzles={} scheme={} model_bytes={}\n",
        trm_nostd::format::crc32(model),
        halt_name(halt),
        rows.len(),
        if parsed.scheme().is_fixed() {
            "fixed"
        } else {
            "float"
        },
        model.len()
    );
    text.push_str(&format!(
        "# written by trm-export {} (trm-fw-app lines of `run --step-digests --no-boards`)\n",
        env!("CARGO_PKG_VERSION")
    ));
    let mut puzzle = 0usize;
    for line in output.lines() {
        let tag = line.split(' ').next().unwrap_or("");
        if !ALL_TAGS.contains(&tag) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
        if tag == "TRM-PUZZLE" {
            if let Some(a) = rows.get(puzzle).and_then(|r| r.answer.as_deref()) {
                // As the app writes questions (a maze CSV's spaces as `.`): one field.
                let a = kind
                    .parse(a)
                    .map_or_else(|_| a.to_string(), |t| kind.line(&t));
                text.push_str(&format!("# answer puzzle={puzzle} answer={a}\n"));
            }
            puzzle += 1;
        }
    }
    ensure!(
        puzzle == rows.len(),
        "the app printed {puzzle} puzzles of {}",
        rows.len()
    );
    Ok(text)
}

/// The app's `TRM-ERROR` lines of `output`, each with the name of the puzzle it names; never
/// empty (a run that counted errors without saying which is reported as such).
fn app_errors(output: &str, count: usize, rows: &[PuzzleRow]) -> String {
    let mut text = format!("the app reported {count} error(s):");
    let mut any = false;
    for line in output.lines().filter(|l| l.starts_with("TRM-ERROR")) {
        any = true;
        let name = fields(line)
            .get("puzzle")
            .and_then(|p| p.parse::<usize>().ok())
            .and_then(|p| rows.get(p))
            .map(|r| format!(" (puzzle `{}`)", r.name))
            .unwrap_or_default();
        text.push_str(&format!("\n  {line}{name}"));
    }
    if !any {
        text.push_str("\n  (no TRM-ERROR line: the app counted errors without saying which)");
    }
    text
}

/// One `TRM-` line of a golden file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenLine {
    /// 1-based line number in the file.
    pub line_no: usize,
    /// The line, without its end.
    pub text: String,
}

impl GoldenLine {
    /// The tag (`TRM-STEP`, ...).
    pub fn tag(&self) -> &str {
        self.text.split(' ').next().unwrap_or("")
    }
}

/// One ACT step of a puzzle (`TRM-STEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoldenStep {
    /// 1-based ACT step.
    pub step: u32,
    /// The printed halting-logit bits (f32 bits, or the fixed i32 as u32).
    pub q_halt: u32,
    /// FNV-1a digest of y.
    pub y: u32,
    /// FNV-1a digest of z.
    pub z: u32,
}

/// One puzzle of a golden file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenPuzzle {
    /// The puzzle as the app read it (name, question, and the answer comment when present).
    pub row: PuzzleRow,
    /// 1-based line number of its `TRM-PUZZLE` line.
    pub line_no: usize,
    /// 1-based line number of its answer comment, when present.
    pub answer_line_no: Option<usize>,
    /// Every `TRM-STEP`.
    pub steps: Vec<GoldenStep>,
    /// `TRM-DIGEST`'s `steps`.
    pub steps_run: u32,
    /// `TRM-DIGEST`'s `tokens`: digest of the predicted tokens.
    pub tokens: u32,
    /// `TRM-RESULT`'s `valid` (false for `n/a`, a task without a validity rule).
    pub valid: bool,
    /// `TRM-RESULT`'s `correct` count (cells equal to the answer; 0 without one).
    pub correct: u32,
    /// `TRM-RESULT`'s `prediction`.
    pub prediction: String,
}

/// A parsed golden file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Golden {
    /// CRC-32 of the `.trm` file the golden was written from.
    pub model_crc: u32,
    /// The halting mode of the run.
    pub halt: HaltMode,
    /// Every `key=value` field of the first line.
    pub fields: BTreeMap<String, String>,
    /// Every `TRM-` line, in order.
    pub lines: Vec<GoldenLine>,
    /// The puzzles, in order.
    pub puzzles: Vec<GoldenPuzzle>,
}

/// `key=value` fields of an app line after its tag (`msg=` runs to the end of the line).
fn fields(line: &str) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    let mut rest = line.split_once(' ').map_or("", |(_, r)| r);
    while !rest.is_empty() {
        let (field, tail) = if rest.starts_with("msg=") {
            (rest, "")
        } else {
            rest.split_once(' ').unwrap_or((rest, ""))
        };
        if let Some((k, v)) = field.split_once('=') {
            out.insert(k, v);
        }
        rest = tail;
    }
    out
}

fn field<'a>(f: &BTreeMap<&str, &'a str>, key: &str) -> anyhow::Result<&'a str> {
    f.get(key)
        .copied()
        .ok_or_else(|| anyhow!("missing field `{key}`"))
}

fn hex32(f: &BTreeMap<&str, &str>, key: &str) -> anyhow::Result<u32> {
    let v = field(f, key)?;
    ensure!(v.len() == 8, "field `{key}`: `{v}` is not 8 hex digits");
    u32::from_str_radix(v, 16).map_err(|_| anyhow!("field `{key}`: `{v}` is not hex"))
}

fn num<T: std::str::FromStr>(f: &BTreeMap<&str, &str>, key: &str) -> anyhow::Result<T> {
    let v = field(f, key)?;
    v.parse()
        .map_err(|_| anyhow!("field `{key}`: `{v}` is not a number"))
}

/// Parses a golden file; errors name the line.
pub fn parse_golden(text: &str) -> anyhow::Result<Golden> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().context("empty golden file")?;
    let Some(header) = first.strip_prefix(MAGIC) else {
        bail!("line 1: not a golden file (expected it to start with `{MAGIC}`)");
    };
    let mut hf = BTreeMap::new();
    for f in header.split_whitespace() {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("line 1: field `{f}` is not key=value"))?;
        hf.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str| {
        hf.get(k)
            .map(String::as_str)
            .with_context(|| format!("line 1: missing field `{k}`"))
    };
    let crc_text = get("model_crc")?;
    let model_crc = u32::from_str_radix(crc_text, 16)
        .ok()
        .filter(|_| crc_text.len() == 8)
        .with_context(|| format!("line 1: model_crc `{crc_text}` is not 8 hex digits"))?;
    let halt = parse_halt(get("halt")?).context("line 1")?;
    let count: usize = get("puzzles")?
        .parse()
        .map_err(|_| anyhow!("line 1: puzzles is not a number"))?;
    ensure!(
        count > 0,
        "line 1: puzzles=0: a golden file without puzzles checks nothing"
    );

    let mut g = Golden {
        model_crc,
        halt,
        fields: hf.clone(),
        lines: Vec::new(),
        puzzles: Vec::new(),
    };
    for (i, line) in lines {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        let at = |e: anyhow::Error| e.context(format!("line {line_no}: `{line}`"));
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(rest) = comment.trim_start().strip_prefix("answer ") {
                let f = fields(&format!("answer {rest}"))
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>();
                let p: usize = f
                    .get("puzzle")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| at(anyhow!("answer comment without a puzzle number")))?;
                let a = f
                    .get("answer")
                    .ok_or_else(|| at(anyhow!("answer comment without an answer")))?;
                let count = g.puzzles.len();
                match g.puzzles.last_mut() {
                    Some(last) if count == p + 1 && last.answer_line_no.is_none() => {
                        last.row.answer = Some(a.clone());
                        last.answer_line_no = Some(line_no);
                    }
                    _ => return Err(at(anyhow!("answer comment for puzzle {p} out of place"))),
                }
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let tag = line.split(' ').next().unwrap_or("");
        let f = fields(line);
        let index = g.puzzles.len();
        match tag {
            "TRM-PUZZLE" => {
                let p: usize = num(&f, "puzzle").map_err(at)?;
                ensure!(
                    p == index,
                    "line {line_no}: puzzle {p} where puzzle {index} was expected"
                );
                g.puzzles.push(GoldenPuzzle {
                    row: PuzzleRow {
                        name: field(&f, "name").map_err(at)?.to_string(),
                        question: field(&f, "question").map_err(at)?.to_string(),
                        answer: None,
                        puzzle_id: match f.get("id") {
                            None => 0,
                            Some(_) => num(&f, "id").map_err(at)?,
                        },
                    },
                    line_no,
                    answer_line_no: None,
                    steps: Vec::new(),
                    steps_run: 0,
                    tokens: 0,
                    valid: false,
                    correct: 0,
                    prediction: String::new(),
                });
            }
            "TRM-STEP" | "TRM-DIGEST" | "TRM-RESULT" => {
                let p: usize = num(&f, "puzzle").map_err(at)?;
                let Some(cur) = g.puzzles.last_mut().filter(|_| p + 1 == index) else {
                    bail!("line {line_no}: {tag} of puzzle {p} outside that puzzle's block");
                };
                match tag {
                    "TRM-STEP" => cur.steps.push(GoldenStep {
                        step: num(&f, "step").map_err(at)?,
                        q_halt: hex32(&f, "q_halt").map_err(at)?,
                        y: hex32(&f, "y").map_err(at)?,
                        z: hex32(&f, "z").map_err(at)?,
                    }),
                    "TRM-DIGEST" => {
                        cur.steps_run = num(&f, "steps").map_err(at)?;
                        cur.tokens = hex32(&f, "tokens").map_err(at)?;
                    }
                    _ => {
                        cur.valid = match field(&f, "valid").map_err(at)? {
                            "true" => true,
                            "false" | "n/a" => false,
                            v => bail!("line {line_no}: valid `{v}` is not true, false or n/a"),
                        };
                        let c = field(&f, "correct").map_err(at)?;
                        cur.correct = c
                            .split_once('/')
                            .and_then(|(n, _)| n.parse().ok())
                            .ok_or_else(|| at(anyhow!("correct `{c}` is not n/<cells>")))?;
                        cur.prediction = field(&f, "prediction").map_err(at)?.to_string();
                    }
                }
            }
            other => bail!("line {line_no}: unexpected line (tag `{other}`) in a golden file"),
        }
        g.lines.push(GoldenLine {
            line_no,
            text: line.to_string(),
        });
    }
    ensure!(
        g.puzzles.len() == count,
        "the header says puzzles={count}, the file holds {}",
        g.puzzles.len()
    );
    Ok(g)
}

/// The first difference between a golden file and another run's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Which compared line (0-based, counting only lines of the compared tags).
    pub index: usize,
    /// The golden line's number in its file, when the golden file has that line.
    pub golden_line_no: Option<usize>,
    /// The golden line (None: the output has more lines than the golden file).
    pub expected: Option<String>,
    /// The output's line (None: the output ended early).
    pub got: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.expected, &self.got, self.golden_line_no) {
            (Some(e), Some(g), Some(n)) => write!(
                f,
                "first difference at golden line {n} (compared line {}):\n  golden: {e}\n  got:    {g}",
                self.index + 1
            ),
            (Some(e), None, Some(n)) => write!(
                f,
                "the output ends before golden line {n} (compared line {}):\n  golden: {e}",
                self.index + 1
            ),
            (_, Some(g), _) => write!(
                f,
                "the output has more lines than the golden file (compared line {}):\n  got:    {g}",
                self.index + 1
            ),
            _ => write!(f, "difference at compared line {}", self.index + 1),
        }
    }
}

impl std::error::Error for Mismatch {}

impl Golden {
    /// Compares `output` (any app output: a host run, a device console log) with this file:
    /// its `TRM-STEP`, `TRM-DIGEST` and `TRM-RESULT` lines, in order, must equal the file's.
    /// Other lines (banners, boards, cycles, comments) are ignored; line ends (`\r\n`) too.
    /// Returns the number of lines compared.
    pub fn compare(&self, output: &str) -> Result<usize, Mismatch> {
        self.compare_tags(output, &CHECKED_TAGS)
    }

    /// [`Golden::compare`] over the lines of the given tags.
    pub fn compare_tags(&self, output: &str, tags: &[&str]) -> Result<usize, Mismatch> {
        let want = self.lines.iter().filter(|l| tags.contains(&l.tag()));
        let got = output
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| tags.contains(&l.split(' ').next().unwrap_or("")));
        let mut want = want.fuse();
        let mut got = got.fuse();
        let mut index = 0;
        loop {
            match (want.next(), got.next()) {
                (None, None) => return Ok(index),
                (Some(w), Some(g)) if w.text == g => {}
                (w, g) => {
                    return Err(Mismatch {
                        index,
                        golden_line_no: w.map(|w| w.line_no),
                        expected: w.map(|w| w.text.clone()),
                        got: g.map(str::to_string),
                    });
                }
            }
            index += 1;
        }
    }

    /// The puzzles as rows (name, question, answer), to re-run the set.
    pub fn rows(&self) -> Vec<PuzzleRow> {
        self.puzzles.iter().map(|p| p.row.clone()).collect()
    }

    /// Total `TRM-STEP` lines.
    pub fn step_count(&self) -> usize {
        self.puzzles.iter().map(|p| p.steps.len()).sum()
    }
}

/// What [`check_golden`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Every line equal.
    Same {
        /// Lines compared.
        lines: usize,
    },
    /// The model is not the one the golden file was written from.
    OtherModel {
        /// The golden file's `model_crc`.
        golden: u32,
        /// The model's CRC-32.
        model: u32,
    },
    /// A line differs.
    Differs(Mismatch),
    /// A puzzle of the golden file cannot have been written by `golden`: its question or
    /// answer does not parse, or the answer is not a solution of the question (an edited file).
    BadPuzzle {
        /// The line of the bad question or answer.
        line_no: usize,
        /// Why.
        reason: String,
    },
}

/// The first puzzle of `golden` whose question or answer the app would refuse for a model of
/// `kind` (see [`CheckOutcome::BadPuzzle`]).
fn bad_puzzle(golden: &Golden, kind: &PuzzleKind) -> Option<CheckOutcome> {
    for (i, p) in golden.puzzles.iter().enumerate() {
        let bad = |line_no: usize, reason: String| {
            Some(CheckOutcome::BadPuzzle {
                line_no,
                reason: format!("puzzle {i} (`{}`): {reason}", p.row.name),
            })
        };
        let q = match kind.parse(&p.row.question) {
            Ok(q) => q,
            Err(e) => return bad(p.line_no, format!("question: {e}")),
        };
        if let (Some(a), Some(line_no)) = (&p.row.answer, p.answer_line_no) {
            let t = match kind.parse(a) {
                Ok(t) => t,
                Err(e) => return bad(line_no, format!("answer: {e}")),
            };
            if let Err(v) = kind.check(&t, &q) {
                return bad(
                    line_no,
                    format!(
                        "the answer is not a solution of the question (line {}): {v}",
                        p.line_no
                    ),
                );
            }
        }
    }
    None
}

/// Re-runs `golden`'s puzzles (with their answers and halting mode) on `model` and compares
/// every `TRM-` line (`TRM-PUZZLE` included) with the file. A puzzle whose question or answer
/// the app would refuse (the file was edited) is a [`CheckOutcome::BadPuzzle`] naming its line.
/// The puzzles are solved on `threads` threads (0: one per core).
pub fn check_golden(golden: &Golden, model: &[u8], threads: usize) -> anyhow::Result<CheckOutcome> {
    let crc = trm_nostd::format::crc32(model);
    if crc != golden.model_crc {
        return Ok(CheckOutcome::OtherModel {
            golden: golden.model_crc,
            model: crc,
        });
    }
    let parsed = Model::parse(model).map_err(|e| anyhow!("the model does not parse: {e}"))?;
    if let Some(bad) = bad_puzzle(golden, &PuzzleKind::of(parsed.config())) {
        return Ok(bad);
    }
    let text = write_golden(model, &golden.rows(), golden.halt, threads)?;
    Ok(match golden.compare_tags(&text, &ALL_TAGS) {
        Ok(lines) => CheckOutcome::Same { lines },
        Err(m) => CheckOutcome::Differs(m),
    })
}
