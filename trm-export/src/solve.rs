//! `run`: solves puzzles with a `.trm` model on the host through the firmware app (the `TRM-`
//! lines are the device's, bit for bit, timing aside), and adds for humans, after each
//! predicted board, the checks of the prediction by its task (Sudoku: a valid grid? the givens
//! kept?; maze: a path from start to goal?; ARC: an output grid, and its size; then: the
//! reference answer matched? with the answer's grid when not) and, at the end, a summary line
//! with the exact accuracy.
//!
//! The transcript goes to one writer (stdout); the app's `TRM-ERROR` lines are also written to
//! a second one (stderr), with the name of the puzzle they concern, so errors are never only
//! in the transcript.
//!
//! The puzzles may be spread over threads ([`run_app_on_host`]); the transcript is the same,
//! byte for byte (timing aside), for any number of them.

use trm_fw_app::{Console, Counter, HaltMode, Options, Puzzle, Report};
use trm_nostd::Model;
use trm_nostd::float::kernels::Arith;
use trm_nostd::sudoku::{self, BLANK, CELLS, PAD, Tokens};
use trm_nostd::task::{Task, arc_grid};

use crate::puzzles::{PuzzleKind, PuzzleRow};

/// Totals of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    /// Puzzles solved (a `TRM-RESULT` printed).
    pub solved: usize,
    /// Predictions valid by the task's rule (Sudoku: solutions keeping the givens; maze: paths
    /// from start to goal; ARC: holding an output grid; see `TRM-RESULT valid=`).
    pub valid: usize,
    /// Puzzles with a reference answer.
    pub with_answer: usize,
    /// Predictions equal to the answer.
    pub exact: usize,
    /// Cells equal to the answer, over the puzzles with one.
    pub cells: usize,
    /// Cells (tokens) per puzzle.
    pub seq_len: usize,
    /// What a valid prediction is, for the summary line (`solutions`, `paths`, `grids`,
    /// `predictions`).
    pub valid_what: &'static str,
    /// The app's report.
    pub report: Report,
}

impl RunSummary {
    /// The summary line (no trailing newline).
    pub fn line(&self) -> String {
        let exact = if self.with_answer > 0 {
            format!(
                "exact {}/{} ({:.2}%), cells {:.2}%",
                self.exact,
                self.with_answer,
                100.0 * self.exact as f64 / self.with_answer as f64,
                100.0 * self.cells as f64 / (self.with_answer * self.seq_len.max(1)) as f64
            )
        } else {
            "exact accuracy unknown (no answers)".to_string()
        };
        format!(
            "summary: {} puzzles solved, {} valid {}, {exact}, {} errors",
            self.solved, self.valid, self.valid_what, self.report.errors
        )
    }
}

/// The human checks of one prediction (see the module documentation).
pub fn verdict(
    kind: &PuzzleKind,
    question: &str,
    prediction: &str,
    correct: Option<usize>,
) -> String {
    let n = kind.seq_len;
    let answer = match correct {
        Some(c) if c == n => format!("correct ({n}/{n} cells)"),
        Some(c) => format!("wrong ({c}/{n} cells)"),
        None => "unknown".to_string(),
    };
    match kind.task {
        Task::Sudoku => sudoku_verdict(question, prediction, &answer),
        task => {
            let (q, p) = (kind.parse(question), kind.parse(prediction));
            let rule = match (&q, &p, task) {
                (_, Err(_), _) => "no (not a prediction of this task)".to_string(),
                (Ok(q), Ok(p), Task::Maze { .. }) => match kind.check(p, q) {
                    Ok(()) => "yes".to_string(),
                    Err(v) => format!("no ({v})"),
                },
                (_, Ok(p), Task::Arc) => match arc_grid(p) {
                    Some((r, c)) => format!("{r}x{c}"),
                    None => "none".to_string(),
                },
                _ => "-".to_string(),
            };
            match task {
                Task::Maze { .. } => {
                    format!("check: path from start to goal: {rule}; answer: {answer}")
                }
                Task::Arc => format!("check: output grid: {rule}; answer: {answer}"),
                _ => format!("check: answer: {answer}"),
            }
        }
    }
}

fn sudoku_verdict(question: &str, prediction: &str, answer: &str) -> String {
    let mut q: Tokens = [PAD; CELLS];
    let mut p: Tokens = [PAD; CELLS];
    let grid = if sudoku::parse_puzzle(prediction, &mut p).is_err() {
        "no (not 81 digits)".to_string()
    } else {
        match sudoku::check_solution(&p, &[BLANK; CELLS]) {
            Ok(()) if p.iter().all(|&t| t != BLANK) => "yes".to_string(),
            Ok(()) => "no (blank cells)".to_string(),
            Err(v) => format!("no ({v})"),
        }
    };
    let givens = if sudoku::parse_puzzle(question, &mut q).is_ok() {
        let given: Vec<usize> = (0..CELLS).filter(|&i| q[i] != BLANK).collect();
        let kept = given.iter().filter(|&&i| p[i] == q[i]).count();
        if kept == given.len() {
            format!("yes ({kept}/{})", given.len())
        } else {
            format!("no ({kept}/{} kept)", given.len())
        }
    } else {
        "?".to_string()
    };
    format!("check: valid Sudoku grid: {grid}; givens kept: {givens}; answer: {answer}")
}

/// The answer's grid for humans, after a wrong prediction of a task other than Sudoku.
fn answer_board(kind: &PuzzleKind, answer: &str) -> Option<String> {
    if kind.task == Task::Sudoku {
        return None;
    }
    let tokens = kind.parse(answer).ok()?;
    let mut s = String::from("answer:\n");
    kind.task.write_board(&mut s, &tokens).ok()?;
    Some(s)
}

/// A console that prints the app's output and adds the checks after each predicted board.
struct CheckingConsole<'w> {
    out: &'w mut dyn std::io::Write,
    err: &'w mut dyn std::io::Write,
    rows: &'w [PuzzleRow],
    kind: PuzzleKind,
    errors_seen: usize,
    boards: bool,
    partial: String,
    question: String,
    puzzle: Option<usize>,
    has_answer: bool,
    pending: Option<String>,
    sum: RunSummary,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl CheckingConsole<'_> {
    fn line(&mut self, line: &str) {
        let tag = line.split(' ').next().unwrap_or("");
        match tag {
            "TRM-PUZZLE" => {
                self.question = field(line, "question").unwrap_or("").to_string();
                self.puzzle = field(line, "puzzle").and_then(|p| p.parse::<usize>().ok());
                self.has_answer = false;
            }
            "TRM-ANSWER" if field(line, "status") == Some("valid") => {
                self.sum.with_answer += 1;
                self.has_answer = true;
            }
            "TRM-RESULT" => {
                self.sum.solved += 1;
                let valid = field(line, "valid") == Some("true");
                self.sum.valid += usize::from(valid);
                let pred = field(line, "prediction").unwrap_or("");
                // `correct` counts against the answer; it is 0 without one (TRM-ANSWER none).
                let correct = field(line, "correct")
                    .and_then(|c| c.split_once('/'))
                    .and_then(|(n, _)| n.parse::<usize>().ok());
                let correct = correct.filter(|_| self.has_answer);
                if let Some(c) = correct {
                    self.sum.cells += c;
                    self.sum.exact += usize::from(c == self.kind.seq_len);
                }
                if self.boards {
                    let mut v = verdict(&self.kind, &self.question, pred, correct);
                    let answer = self
                        .puzzle
                        .and_then(|p| self.rows.get(p))
                        .and_then(|r| r.answer.as_deref());
                    if let (Some(c), Some(a)) = (correct, answer)
                        && c != self.kind.seq_len
                        && let Some(board) = answer_board(&self.kind, a)
                    {
                        v.push('\n');
                        v.push_str(board.trim_end());
                    }
                    self.pending = Some(v);
                }
            }
            "TRM-CYCLES" => {
                if let Some(v) = self.pending.take() {
                    let _ = writeln!(self.out, "{v}");
                }
            }
            "TRM-ERROR" => {
                self.errors_seen += 1;
                let name = field(line, "puzzle")
                    .and_then(|p| p.parse::<usize>().ok())
                    .and_then(|p| self.rows.get(p))
                    .map(|r| format!(" (puzzle `{}`)", r.name))
                    .unwrap_or_default();
                let _ = writeln!(self.err, "error: {line}{name}");
            }
            _ => {}
        }
        let _ = writeln!(self.out, "{line}");
    }
}

impl Console for CheckingConsole<'_> {
    fn write_str(&mut self, s: &str) {
        self.partial.push_str(s);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.line(line.trim_end_matches('\n'));
        }
    }
}

/// What a host run of the firmware app does: how a solve stops, what it prints, and on how
/// many threads (0: one per core, see [`crate::parallel::thread_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRun {
    /// When a solve stops.
    pub halt: HaltMode,
    /// Print a `TRM-STEP` line after every ACT step.
    pub step_digests: bool,
    /// Print the boards (and, in `run`, their checks).
    pub boards: bool,
    /// Threads to solve on (0: one per core).
    pub threads: usize,
    /// A float model's multiply-accumulates (`Separate`: the bits of golden files).
    pub float_arith: Arith,
}

/// Runs `model` on `rows` through the firmware app, printing to `out` and the errors also to
/// `err`; see the module documentation. `counter` (one clone per thread) times each solve.
pub fn run_puzzles<K: Counter + Clone + Send>(
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
    counter: &K,
    model: &[u8],
    rows: &[PuzzleRow],
    how: &HostRun,
) -> RunSummary {
    // A model that does not parse is reported by the app; its kind does not matter then.
    let kind = Model::parse(model).map_or(PuzzleKind::SUDOKU, |m| PuzzleKind::of(m.config()));
    let mut console = CheckingConsole {
        out,
        err,
        rows,
        kind,
        errors_seen: 0,
        boards: how.boards,
        partial: String::new(),
        question: String::new(),
        puzzle: None,
        has_answer: false,
        pending: None,
        sum: RunSummary {
            seq_len: kind.seq_len,
            valid_what: match kind.task {
                Task::Sudoku => "solutions",
                Task::Maze { .. } => "paths",
                Task::Arc => "grids",
                Task::Tokens => "predictions",
            },
            ..RunSummary::default()
        },
    };
    let report = run_app_on_host(&mut console, counter, model, rows, how);
    if !console.partial.is_empty() {
        let rest = std::mem::take(&mut console.partial);
        console.line(&rest);
    }
    let mut sum = console.sum;
    sum.report = report;
    let _ = writeln!(console.out, "{}", sum.line());
    if report.errors > 0 && console.errors_seen == 0 {
        let _ = writeln!(
            console.err,
            "error: the app reported {} errors without a TRM-ERROR line",
            report.errors
        );
    }
    sum
}

/// Runs the firmware app on `rows` with `model` (board name `host`, the fastest scratch),
/// printing to `console`: what `run` and `golden` share.
///
/// On one thread this is the app's own [`trm_fw_app::run`]. On more, the app's parts
/// ([`trm_fw_app::begin_run`], [`trm_fw_app::solve_puzzles`], [`trm_fw_app::end_run`]): the
/// header once, then every puzzle's block solved by one of the threads (each with its own
/// engine and scratch, and a clone of `counter`) and printed in puzzle order as soon as it is
/// its turn, then `TRM-DONE`: the same output, byte for byte (timing aside).
pub fn run_app_on_host<K: Counter + Clone + Send>(
    console: &mut dyn Console,
    counter: &K,
    model: &[u8],
    rows: &[PuzzleRow],
    how: &HostRun,
) -> Report {
    let list = app_puzzles(rows);
    let opts = Options {
        board: "host",
        halt: how.halt,
        step_digests: how.step_digests,
        boards: how.boards,
        float_arith: how.float_arith,
    };
    let threads = crate::parallel::thread_count(how.threads, list.len());
    if threads == 1 {
        let mut scratch = app_scratch(model);
        return trm_fw_app::run(
            console,
            &mut counter.clone(),
            Some(model),
            &list,
            &mut scratch,
            &opts,
        );
    }
    let mut scratches: Vec<Vec<f32>> = (0..threads).map(|_| app_scratch(model)).collect();
    let mut states = Vec::with_capacity(threads);
    for (k, scratch) in scratches.iter_mut().enumerate() {
        // The first prints the header; the others print it into nothing.
        let begun = if k == 0 {
            trm_fw_app::begin_run(console, Some(model), scratch, &opts)
        } else {
            trm_fw_app::begin_run(&mut Discard, Some(model), scratch, &opts)
        };
        match begun {
            Ok(engine) => states.push((engine, counter.clone())),
            // The model cannot be used: the header said why, and the run is over.
            Err(report) if k == 0 => return report,
            // The same bytes made the first engine: fewer threads, should it ever happen.
            Err(_) => break,
        }
    }
    let mut total = Report::default();
    crate::parallel::for_each_ordered(
        states,
        list.len(),
        |(engine, counter), i| {
            let mut text = crate::golden::StringConsole::default();
            let r = trm_fw_app::solve_puzzles(
                &mut text,
                counter,
                engine.as_mut(),
                i,
                &list[i..=i],
                &opts,
            );
            (text.0, r)
        },
        |_, (text, r)| {
            console.write_str(&text);
            total.ok += r.ok;
            total.total += r.total;
            total.errors += r.errors;
            true
        },
    );
    trm_fw_app::end_run(console, &total);
    total
}

/// A [`Console`] that drops what it is given.
struct Discard;

impl Console for Discard {
    fn write_str(&mut self, _: &str) {}
}

/// The rows as the firmware app's puzzles (borrowed).
fn app_puzzles(rows: &[PuzzleRow]) -> Vec<Puzzle<'_>> {
    rows.iter()
        .map(|r| Puzzle {
            name: &r.name,
            question: &r.question,
            answer: r.answer.as_deref(),
            puzzle_id: r.puzzle_id,
        })
        .collect()
}

/// A scratch arena of the fastest size `model` allows (results are identical for any size);
/// empty when the model does not parse (the app then reports the reader's error).
fn app_scratch(model: &[u8]) -> Vec<f32> {
    Model::parse(model)
        .map(|m| crate::engine::arena_for(&m))
        .unwrap_or_default()
}
