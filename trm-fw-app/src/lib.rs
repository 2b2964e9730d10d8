//! The board-agnostic TRM Sudoku demo.
//!
//! A board crate gives it a [`Console`], a [`Counter`], the embedded `.trm` model bytes (or
//! `None`), a list of [`Puzzle`]s and a scratch buffer; [`run`] then parses the model with
//! `trm_nostd::format::Model::parse`, solves every puzzle with the engine of the model's numeric
//! scheme (`trm_nostd::AnyEngine`: the float or the fixed engine, in the board's one scratch
//! arena) and prints one result block per puzzle. Without a model it still parses, prints and
//! checks the puzzles and their reference answers (a codec smoke run). [`run_models`] runs it once per
//! embedded model (one output block each), so one firmware build can check several models.
//!
//! # Output
//!
//! Every machine-readable line starts with `TRM-` and is a tag followed by `key=value` fields
//! separated by single spaces; values never contain spaces, except `msg=`, which is always the
//! last field and runs to the end of the line. Other lines (the boards) are for humans.
//!
//! ```text
//! TRM-BANNER app=trm-fw-app version=0.1.0 board=<board>
//! TRM-MODEL none
//! TRM-MODEL bytes=<n> version=<v> hidden=<D> seq_len=<L> layers=<n> mlp_t=<bool> params=<n> scratch_f32=<n> scratch_have=<n> scheme=float
//! TRM-MODEL bytes=<n> version=<v> hidden=<D> seq_len=<L> layers=<n> mlp_t=<bool> params=<n> scratch_f32=<n> scratch_have=<n> scheme=fixed scratch_i16=<n> scratch_i32=<n>
//! TRM-PUZZLE puzzle=<i> name=<name> givens=<n> question=<81 chars>
//! TRM-PUZZLE puzzle=<i> name=<name> task=<maze|arc|tokens> id=<puzzle id> question=<token line>
//! TRM-ANSWER puzzle=<i> status=valid|invalid|none [msg=<reason>]
//! TRM-STEP puzzle=<i> step=<k> q_halt=<hex32> y=<hex32> z=<hex32>
//! TRM-DIGEST puzzle=<i> steps=<n> tokens=<hex32> y=<hex32>
//! TRM-RESULT puzzle=<i> valid=<bool> correct=<n>/81 prediction=<81 chars> [msg=<reason>]
//! TRM-RESULT puzzle=<i> valid=<bool|n/a> correct=<n>/<seq_len> prediction=<token line> [msg=<reason>]
//! TRM-CYCLES puzzle=<i> ticks=<n> unit=<unit> steps=<n> per_step=<ticks> [us_per_step=<n>]
//! TRM-ERROR stage=<model|engine|puzzle|golden> [puzzle=<i>] msg=<Display of the error>
//! TRM-GOLDEN match=<n>/<total>
//! TRM-DONE ok=<n> total=<n> errors=<n>
//! ```
//!
//! A model of another task than Sudoku (`trm_nostd::task::Task::of`: Maze-Hard, ARC, any
//! sequence of at most `MAX_SEQ_LEN` tokens of at most 62 kinds) runs too: its puzzles are token
//! lines of the task's alphabet (maze `_#.SGo`, ARC `_|0123456789`, otherwise base 62), its
//! `TRM-PUZZLE` line names the task and the puzzle identifier ([`Puzzle::puzzle_id`], the row
//! of the puzzle embedding), the boards are the task's grids, and `valid=` is the task's rule
//! (a maze path from start to goal, an ARC output grid; `n/a` without a rule, where a puzzle
//! counts as ok when it matches its answer).
//!
//! `TRM-GOLDEN` appears only in a run with a golden file ([`run_checked`], [`run_firmware`]):
//! the run's `TRM-STEP`, `TRM-DIGEST` and `TRM-RESULT` lines compared, in order, with the
//! golden file's; `total` is the number of such lines in the golden file. A mismatch (a line
//! that differs, a missing or an extra line, a header that does not fit the run: the model's
//! CRC-32, `halt=`, `puzzles=`) prints a `TRM-ERROR stage=golden` line first and counts as one
//! error. A golden file with no puzzles (`puzzles=0`) or no compared lines checks nothing and
//! is refused the same way. `per_step` is `ticks / steps`; `us_per_step` is printed when the [`Counter`] knows its
//! frequency ([`Counter::hz`]).
//!
//! Digests are `trm_nostd::digest` FNV-1a 32 (tokens: the predicted token bytes; y, z: the f32
//! bit patterns of the whole `[seq_total, D]` state, or for a fixed model its i16 values'
//! little-endian bytes), so a host run of the same model gives the same values bit for bit.
//! `q_halt` is the f32 halting logit's bit pattern (float) or the integer halting logit as a
//! two's-complement u32 (fixed). `scratch_f32` is the part of the scratch arena the engine uses,
//! in f32 words: a fixed model's i16 and i32 buffers are carved from the same arena
//! (`scratch_i16` values, then `scratch_i32`), so one board buffer serves both schemes. `ok` counts puzzles whose predicted grid is a valid solution (with a
//! model) or whose reference answer checks out (without one); `errors` counts failures of the
//! run itself (bad model, bad puzzle string, a reference answer that is not a solution of its
//! question, engine error, golden mismatch), and only those make the firmware exit non-zero: a
//! wrong prediction is a result, not an error. Every counted error prints at least one
//! `TRM-ERROR` line saying what (and `puzzle=` where), so a consumer never has to guess.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};
use trm_nostd::AnyEngine;
use trm_nostd::act::should_stop;
use trm_nostd::digest::digest_tokens;
use trm_nostd::float::kernels::Arith;
use trm_nostd::format::Model;
use trm_nostd::sudoku::{self, BLANK, CELLS, PAD, Tokens};
use trm_nostd::task::{MAX_SEQ_LEN, Task};

pub use trm_nostd::HaltMode;

/// Formats into a [`Console`]. Writing to it cannot fail, so the result is dropped on purpose.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Where the demo prints: a UART, semihosting, RTT, a host's stdout.
pub trait Console {
    /// Writes a string as is (the demo ends lines with `\n`).
    fn write_str(&mut self, s: &str);
}

/// A free-running counter for timing each solve: cycles where the board has a cycle counter,
/// timer ticks otherwise.
pub trait Counter {
    /// The current count; only differences are used.
    fn now(&mut self) -> u64;
    /// What one count is, for the report (`cycles`, `systick`, `none`, ...).
    fn unit(&self) -> &'static str;
    /// Counts per second, when known (the core clock of a cycle counter, 1 MHz for a
    /// microsecond timer): the report then adds the time per ACT step in microseconds.
    fn hz(&self) -> Option<u64> {
        None
    }
}

/// A [`Console`] over any `fmt::Write` (a semihosting stream, a UART writer), or over nothing
/// when the board could not open one (`None`: output is dropped).
#[derive(Debug)]
pub struct FmtConsole<W: fmt::Write>(pub Option<W>);

impl<W: fmt::Write> Console for FmtConsole<W> {
    fn write_str(&mut self, s: &str) {
        if let Some(w) = self.0.as_mut() {
            // Nothing useful to do if the host refuses output.
            let _ = w.write_str(s);
        }
    }
}

/// Longest line [`LineConsole`] passes on whole (longer ones are passed on in pieces).
pub const LINE_MAX: usize = 256;

/// A [`Console`] that passes whole lines, without their `\n`, to `sink`: for loggers that frame
/// each call as one record (defmt: `|l| defmt::println!("{=str}", l)`).
pub struct LineConsole<F: FnMut(&str)> {
    buf: [u8; LINE_MAX],
    len: usize,
    sink: F,
}

impl<F: FnMut(&str)> LineConsole<F> {
    /// A console that sends each line to `sink`.
    pub const fn new(sink: F) -> Self {
        LineConsole {
            buf: [0; LINE_MAX],
            len: 0,
            sink,
        }
    }

    /// Sends what is buffered (a line without its end), if anything.
    pub fn flush(&mut self) {
        if self.len > 0 {
            // Only whole UTF-8 characters are buffered (see `write_str`).
            let s = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?");
            (self.sink)(s);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&str)> Console for LineConsole<F> {
    fn write_str(&mut self, s: &str) {
        for (i, ch) in s.char_indices() {
            if ch == '\n' {
                // An empty line is a line too.
                if self.len == 0 {
                    (self.sink)("");
                } else {
                    self.flush();
                }
                continue;
            }
            let n = ch.len_utf8();
            if self.len + n > LINE_MAX {
                self.flush();
            }
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[i..i + n]);
            self.len += n;
        }
    }
}

/// Prints a panic as one `TRM-ERROR stage=panic at=<file>:<line> msg=<message>` line, for the
/// boards' panic handlers.
pub fn report_panic<C: Console + ?Sized>(console: &mut C, info: &core::panic::PanicInfo<'_>) {
    // One line: location as a field, the message last (it may hold spaces).
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    let mut out = Out::new(console);
    say!(
        out,
        "\nTRM-ERROR stage=panic at={file}:{line} msg={}",
        info.message()
    );
}

/// A [`Counter`] for boards without one: always 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCounter;

impl Counter for NoCounter {
    fn now(&mut self) -> u64 {
        0
    }
    fn unit(&self) -> &'static str {
        "none"
    }
}

/// One embedded puzzle.
#[derive(Debug, Clone, Copy)]
pub struct Puzzle<'a> {
    /// A short label (source or row number), without spaces.
    pub name: &'a str,
    /// Sudoku: 81 characters, `.`/`0` blank, `1`..`9` digits; other tasks: a token line
    /// (`trm_nostd::task`).
    pub question: &'a str,
    /// The reference solution, when known.
    pub answer: Option<&'a str>,
    /// The puzzle identifier (the row of the puzzle embedding): 0 for Sudoku and mazes, the
    /// augmented puzzle's for ARC.
    pub puzzle_id: u32,
}

/// Settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Board name for the banner.
    pub board: &'a str,
    /// When a solve stops.
    pub halt: HaltMode,
    /// Print a `TRM-STEP` line with state digests after every ACT step.
    pub step_digests: bool,
    /// Print the boards (question, prediction) for humans.
    pub boards: bool,
    /// A float model's multiply-accumulates ([`Arith::Separate`], the default, is what golden
    /// files hold; [`Arith::Fused`] is the faster host arithmetic with its own bits).
    pub float_arith: Arith,
}

/// What [`run`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Puzzles solved (with a model) or checked (without one).
    pub ok: usize,
    /// Puzzles attempted.
    pub total: usize,
    /// Failures of the run itself (model, puzzle strings, engine).
    pub errors: usize,
}

impl Report {
    /// Whether the firmware should report success: the run had no errors.
    pub fn success(&self) -> bool {
        self.errors == 0
    }
}

/// What a firmware embeds (generated by the board's `build.rs` through `trm-fw-embed` as
/// `FIRMWARE`), for [`run_firmware`].
#[derive(Debug, Clone, Copy)]
pub struct Firmware<'a> {
    /// The `.trm` files, each run in turn; empty for a codec-only run.
    pub models: &'a [&'a [u8]],
    /// The puzzles every model solves.
    pub puzzles: &'a [Puzzle<'a>],
    /// Golden files (see the crate docs), one per model; empty: no comparison.
    pub golden: &'a [&'a str],
    /// When a solve stops.
    pub halt: HaltMode,
    /// Print a `TRM-STEP` line after every ACT step.
    pub step_digests: bool,
}

/// Runs what a firmware embeds: every model in turn ([`run_models`]), each compared with its
/// golden file when there are golden files ([`run_checked`]), boards printed for humans.
///
/// A golden list whose length is neither 0 nor the number of models is an error of the run
/// (the build of the boards refuses it first).
pub fn run_firmware<C: Console + ?Sized, K: Counter + ?Sized>(
    console: &mut C,
    counter: &mut K,
    fw: &Firmware<'_>,
    scratch: &mut [f32],
    board: &str,
) -> Report {
    let opts = Options {
        board,
        halt: fw.halt,
        step_digests: fw.step_digests,
        boards: true,
        float_arith: Arith::Separate,
    };
    if fw.golden.is_empty() {
        return run_models(console, counter, fw.models, fw.puzzles, scratch, &opts);
    }
    if fw.golden.len() != fw.models.len() {
        let mut out = Out::new(console);
        say!(
            out,
            "TRM-ERROR stage=golden msg={} golden files for {} models",
            fw.golden.len(),
            fw.models.len()
        );
        return Report {
            errors: 1,
            ..Report::default()
        };
    }
    let mut total = Report::default();
    for (&model, &golden) in fw.models.iter().zip(fw.golden) {
        let r = run_checked(console, counter, model, golden, fw.puzzles, scratch, &opts);
        total.ok += r.ok;
        total.total += r.total;
        total.errors += r.errors;
    }
    total
}

/// [`run`] with a model, comparing the run's `TRM-STEP`, `TRM-DIGEST` and `TRM-RESULT` lines
/// with those of `golden` (the text of a golden file, see the crate docs); prints
/// `TRM-GOLDEN match=<n>/<total>` before `TRM-DONE`. A mismatch counts as one error, so
/// [`Report::success`] is false.
pub fn run_checked<C: Console + ?Sized, K: Counter + ?Sized>(
    console: &mut C,
    counter: &mut K,
    model: &[u8],
    golden: &str,
    puzzles: &[Puzzle<'_>],
    scratch: &mut [f32],
    opts: &Options<'_>,
) -> Report {
    let mut out = Out {
        console,
        check: Some(GoldenCheck::new(golden)),
    };
    run_inner(&mut out, counter, Some(model), puzzles, scratch, opts)
}

/// `fmt::Write` over a [`Console`], never failing, that also feeds a golden comparison.
struct Out<'c, 'g, C: Console + ?Sized> {
    console: &'c mut C,
    check: Option<GoldenCheck<'g>>,
}

impl<'c, C: Console + ?Sized> Out<'c, 'static, C> {
    fn new(console: &'c mut C) -> Self {
        Out {
            console,
            check: None,
        }
    }
}

impl<C: Console + ?Sized> fmt::Write for Out<'_, '_, C> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write_str(s);
        if let Some(check) = self.check.as_mut() {
            check.feed(s);
        }
        Ok(())
    }
}

/// The lines a golden comparison checks.
const CHECKED: [&str; 3] = ["TRM-STEP ", "TRM-DIGEST ", "TRM-RESULT "];

fn is_checked(line: &str) -> bool {
    CHECKED.iter().any(|t| line.starts_with(t))
}

/// Compares the checked lines of a run, as they are printed, with a golden file's.
struct GoldenCheck<'g> {
    /// The whole golden text (for the header).
    text: &'g str,
    /// The golden file's lines with their 1-based numbers, from after the last one compared.
    expected: core::iter::Enumerate<core::str::Lines<'g>>,
    /// Checked lines in the golden file.
    total: usize,
    /// The run's line being printed: its first [`LINE_MAX`] bytes, and all its bytes counted.
    buf: [u8; LINE_MAX],
    len: usize,
    pos: usize,
    /// A longer line's bytes past the buffer are compared as they come with `tail_want`, the
    /// golden line it will be compared with; `tail_same` stays true while they agree.
    tail_want: Option<&'g str>,
    tail_same: bool,
    matched: usize,
    /// Checked lines the run printed.
    compared: usize,
    /// Checked lines the run printed beyond the golden file's.
    extra: usize,
    /// The first difference.
    first: Option<FirstDifference<'g>>,
    /// A header field that does not fit the run.
    header_error: bool,
}

/// Where a golden comparison first failed: the golden line number, its text (None: the golden
/// file had no more lines), the run's line (its first bytes, their count) and whether it was
/// longer.
type FirstDifference<'g> = (usize, Option<&'g str>, [u8; LINE_MAX], usize, bool);

/// The longest UTF-8 prefix of `bytes`.
fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

impl<'g> GoldenCheck<'g> {
    fn new(text: &'g str) -> Self {
        GoldenCheck {
            text,
            expected: text.lines().enumerate(),
            total: text.lines().filter(|l| is_checked(l)).count(),
            buf: [0; LINE_MAX],
            len: 0,
            pos: 0,
            tail_want: None,
            tail_same: true,
            matched: 0,
            compared: 0,
            extra: 0,
            first: None,
            header_error: false,
        }
    }

    /// The golden line the run's next checked line is compared with (without consuming it).
    fn next_expected(&self) -> Option<(usize, &'g str)> {
        self.expected
            .clone()
            .find(|(_, l)| is_checked(l.trim_end_matches('\r')))
            .map(|(n, l)| (n, l.trim_end_matches('\r')))
    }

    fn feed(&mut self, s: &str) {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.line_done();
                continue;
            }
            if self.len < LINE_MAX {
                self.buf[self.len] = b;
                self.len += 1;
            } else {
                // Past the buffer (a token line of a long sequence): compare byte by byte.
                if self.pos == LINE_MAX {
                    self.tail_want = if is_checked(utf8_prefix(&self.buf)) {
                        self.next_expected().map(|(_, l)| l)
                    } else {
                        None
                    };
                }
                let want = self.tail_want.and_then(|w| w.as_bytes().get(self.pos));
                self.tail_same &= want == Some(&b);
            }
            self.pos += 1;
        }
    }

    fn line_done(&mut self) {
        let len = core::mem::take(&mut self.len);
        let pos = core::mem::take(&mut self.pos);
        let tail_same = core::mem::replace(&mut self.tail_same, true);
        self.tail_want = None;
        // Whole lines of ASCII and UTF-8 text only are printed; anything else cannot match.
        let line = utf8_prefix(&self.buf[..len]);
        if !is_checked(line) {
            return;
        }
        self.compared += 1;
        // The golden lines up to and including the one compared are consumed.
        let next = self
            .expected
            .by_ref()
            .find(|(_, l)| is_checked(l.trim_end_matches('\r')))
            .map(|(n, l)| (n, l.trim_end_matches('\r')));
        let same = match next {
            Some((_, want)) if pos > len => {
                tail_same && want.len() == pos && want.as_bytes()[..len] == self.buf[..len]
            }
            Some((_, want)) => want == line,
            None => {
                self.extra += 1;
                false
            }
        };
        if same {
            self.matched += 1;
        } else if self.first.is_none() {
            let n = next.map_or(0, |(n, _)| n + 1);
            self.first = Some((n, next.map(|(_, l)| l), self.buf, len, pos > len));
        }
    }

    /// Checks the header fields against the run; prints what does not fit.
    fn check_header<C: Console + ?Sized>(
        &mut self,
        out: &mut Out<'_, '_, C>,
        model: &[u8],
        puzzles: usize,
        halt: HaltMode,
    ) {
        let first = self.text.lines().next().unwrap_or("");
        let Some(fields) = first.strip_prefix("# trm-golden v1") else {
            say!(
                out,
                "TRM-ERROR stage=golden msg=the golden file does not start with `# trm-golden v1`"
            );
            self.header_error = true;
            return;
        };
        let field = |key: &str| {
            fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        };
        let crc = crc32(model);
        let want_crc = field("model_crc").map(|v| {
            let v = v.trim_start_matches("0x");
            u32::from_str_radix(v, 16).ok()
        });
        if want_crc != Some(Some(crc)) {
            say!(
                out,
                "TRM-ERROR stage=golden msg=model_crc={} in the golden file, the embedded model's is {crc:08x}",
                field("model_crc").unwrap_or("(none)")
            );
            self.header_error = true;
        }
        let halt_name = match halt {
            HaltMode::AllSteps => "all",
            HaltMode::EarlyHalt => "early",
        };
        if field("halt") != Some(halt_name) {
            say!(
                out,
                "TRM-ERROR stage=golden msg=halt={} in the golden file, the run uses halt={halt_name}",
                field("halt").unwrap_or("(none)")
            );
            self.header_error = true;
        }
        if field("puzzles").and_then(|v| v.parse::<usize>().ok()) != Some(puzzles) {
            say!(
                out,
                "TRM-ERROR stage=golden msg=puzzles={} in the golden file, the run has {puzzles}",
                field("puzzles").unwrap_or("(none)")
            );
            self.header_error = true;
        }
        // A golden file that compares nothing would pass any run.
        if field("puzzles").and_then(|v| v.parse::<usize>().ok()) == Some(0) || self.total == 0 {
            say!(
                out,
                "TRM-ERROR stage=golden msg=the golden file holds no puzzles ({} lines to compare): it checks nothing",
                self.total
            );
            self.header_error = true;
        }
    }
}

/// Ends a golden comparison: lines the run did not print, the first difference, the
/// `TRM-GOLDEN` line. Returns whether everything matched.
fn golden_summary<C: Console + ?Sized>(out: &mut Out<'_, '_, C>) -> bool {
    let Some(mut check) = out.check.take() else {
        return true;
    };
    // A line still being printed (no end) is compared too.
    if check.len > 0 {
        check.line_done();
    }
    // Golden lines consumed: every checked line the run printed, except those beyond the end.
    let missing = check.total.saturating_sub(check.compared - check.extra);
    if let Some((n, want, got, len, longer)) = &check.first {
        let got = utf8_prefix(&got[..*len]);
        let got_more = if *longer { "..." } else { "" };
        match want {
            Some(want) => say!(
                out,
                "TRM-ERROR stage=golden msg=first difference at line {n} of the golden file: expected `{want}`, got `{got}{got_more}`"
            ),
            None => say!(
                out,
                "TRM-ERROR stage=golden msg=the run printed more lines than the golden file has, first `{got}{got_more}`"
            ),
        }
    }
    if missing > 0 {
        say!(
            out,
            "TRM-ERROR stage=golden msg={missing} lines of the golden file were never printed"
        );
    }
    say!(out, "TRM-GOLDEN match={}/{}", check.matched, check.total);
    check.matched == check.total && check.extra == 0 && !check.header_error
}

/// CRC-32 (IEEE 802.3, the zlib/PNG one) of `bytes`, as the golden header's `model_crc`: the
/// `.trm` format's own checksum function.
pub use trm_nostd::format::crc32;

/// Runs the demo: banner, model, then every puzzle, then `TRM-DONE`.
///
/// `model`: the `.trm` bytes, or `None` for a codec-only run (an empty or malformed file is an
/// error, reported with the reader's message). `scratch` must hold at least
/// [`AnyEngine::arena_len`] values for the model (more, up to [`AnyEngine::arena_len_fast`],
/// lets the float engine go faster, with identical results).
pub fn run<C: Console + ?Sized, K: Counter + ?Sized>(
    console: &mut C,
    counter: &mut K,
    model: Option<&[u8]>,
    puzzles: &[Puzzle<'_>],
    scratch: &mut [f32],
    opts: &Options<'_>,
) -> Report {
    run_inner(
        &mut Out::new(console),
        counter,
        model,
        puzzles,
        scratch,
        opts,
    )
}

/// [`run`] into `out`, which may carry a golden comparison.
fn run_inner<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &mut K,
    model: Option<&[u8]>,
    puzzles: &[Puzzle<'_>],
    scratch: &mut [f32],
    opts: &Options<'_>,
) -> Report {
    banner(out, opts);
    if let (Some(check), Some(bytes)) = (out.check.take(), model) {
        // Taken out while it prints, so its own lines are not compared.
        let mut check = check;
        check.check_header(out, bytes, puzzles.len(), opts.halt);
        out.check = Some(check);
    }
    let Ok(mut engine) = engine_of(out, model, scratch, opts) else {
        return finish(
            out,
            Report {
                errors: 1,
                ..Report::default()
            },
        );
    };
    let report = solve_all(out, counter, engine.as_mut(), 0, puzzles, opts);
    finish(out, report)
}

/// Prints the `TRM-BANNER` line.
fn banner<C: Console + ?Sized>(out: &mut Out<'_, '_, C>, opts: &Options<'_>) {
    say!(
        out,
        "TRM-BANNER app={} version={} board={}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        opts.board
    );
}

/// The engine of `model` (`None` without one, after `TRM-MODEL none`); `Err` after the
/// `TRM-ERROR` line of a model that cannot be used.
fn engine_of<'s, C: Console + ?Sized>(
    out: &mut Out<'_, '_, C>,
    model: Option<&'s [u8]>,
    scratch: &'s mut [f32],
    opts: &Options<'_>,
) -> Result<Option<AnyEngine<'s>>, ()> {
    match model {
        None => {
            say!(out, "TRM-MODEL none");
            Ok(None)
        }
        Some(bytes) => load(out, bytes, scratch).map(|mut e| {
            e.set_float_arith(opts.float_arith);
            Some(e)
        }),
    }
}

/// Solves `puzzles`, numbered from `first`, and counts them.
fn solve_all<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &mut K,
    mut engine: Option<&mut AnyEngine<'_>>,
    first: usize,
    puzzles: &[Puzzle<'_>],
    opts: &Options<'_>,
) -> Report {
    let mut report = Report::default();
    for (i, p) in puzzles.iter().enumerate() {
        report.total += 1;
        match solve_one(out, counter, engine.as_deref_mut(), first + i, p, opts) {
            Ok(true) => report.ok += 1,
            Ok(false) => {}
            Err(()) => report.errors += 1,
        }
    }
    report
}

/// Ends a run: the golden comparison's lines (when there is one, a mismatch counting as an
/// error), then `TRM-DONE`. Returns the final report.
fn finish<C: Console + ?Sized>(out: &mut Out<'_, '_, C>, mut report: Report) -> Report {
    if !golden_summary(out) {
        report.errors += 1;
    }
    say!(
        out,
        "TRM-DONE ok={} total={} errors={}",
        report.ok,
        report.total,
        report.errors
    );
    report
}

/// The first part of [`run`]: what it prints before the puzzles (`TRM-BANNER`, `TRM-MODEL`)
/// and the engine it solves them with (`Ok(None)` without a model). When the model cannot be
/// used, it prints the error and the run's last line (`TRM-DONE`) too and returns the run's
/// report as `Err`: the run is over, as [`run`]'s is.
///
/// [`run`] (without a golden file) prints exactly what `begin_run`, then [`solve_puzzles`] on
/// every puzzle (numbered from 0), then [`end_run`] with the sum of the reports print. A host
/// may so share the puzzles among threads: each thread with an engine of its own (a
/// `begin_run` with a scratch of the same size, printing into a console that drops it),
/// the puzzle blocks printed in puzzle order.
pub fn begin_run<'s, C: Console + ?Sized>(
    console: &mut C,
    model: Option<&'s [u8]>,
    scratch: &'s mut [f32],
    opts: &Options<'_>,
) -> Result<Option<AnyEngine<'s>>, Report> {
    let mut out = Out::new(console);
    banner(&mut out, opts);
    engine_of(&mut out, model, scratch, opts).map_err(|()| {
        finish(
            &mut out,
            Report {
                errors: 1,
                ..Report::default()
            },
        )
    })
}

/// The middle part of [`run`] (see [`begin_run`]): the blocks of `puzzles`, numbered from
/// `first` (`puzzle=<first + i>`), solved with `engine` (`None`: the codec-only run). The
/// report counts these puzzles only.
pub fn solve_puzzles<C: Console + ?Sized, K: Counter + ?Sized>(
    console: &mut C,
    counter: &mut K,
    engine: Option<&mut AnyEngine<'_>>,
    first: usize,
    puzzles: &[Puzzle<'_>],
    opts: &Options<'_>,
) -> Report {
    solve_all(
        &mut Out::new(console),
        counter,
        engine,
        first,
        puzzles,
        opts,
    )
}

/// The last part of [`run`] (see [`begin_run`]): the `TRM-DONE` line of `report` (the sum of
/// the [`solve_puzzles`] reports).
pub fn end_run<C: Console + ?Sized>(console: &mut C, report: &Report) {
    finish(&mut Out::new(console), *report);
}

/// Runs the demo once per model, each run a full block from `TRM-BANNER` to `TRM-DONE`, with
/// the same puzzles and the same scratch buffer; with no model, one codec-only run.
///
/// The report sums the runs' reports, so the firmware fails when any run had an error. A bad
/// model does not stop the models after it.
pub fn run_models<C: Console + ?Sized, K: Counter + ?Sized>(
    console: &mut C,
    counter: &mut K,
    models: &[&[u8]],
    puzzles: &[Puzzle<'_>],
    scratch: &mut [f32],
    opts: &Options<'_>,
) -> Report {
    if models.is_empty() {
        return run(console, counter, None, puzzles, scratch, opts);
    }
    let mut total = Report::default();
    for &model in models {
        let r = run(console, counter, Some(model), puzzles, scratch, opts);
        total.ok += r.ok;
        total.total += r.total;
        total.errors += r.errors;
    }
    total
}

/// Parses the model and builds the engine; prints `TRM-MODEL` or `TRM-ERROR`.
fn load<'s, C: Console + ?Sized>(
    out: &mut Out<'_, '_, C>,
    bytes: &'s [u8],
    scratch: &'s mut [f32],
) -> Result<AnyEngine<'s>, ()> {
    let model = match Model::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            say!(out, "TRM-ERROR stage=model bytes={} msg={e}", bytes.len());
            return Err(());
        }
    };
    let c = *model.config();
    let fixed = model.scheme().is_fixed();
    // The smallest scratch is enough; the fast size when it fits (same results, fewer passes).
    let need = AnyEngine::arena_len(&model);
    let fast = AnyEngine::arena_len_fast(&model);
    let use_len = if scratch.len() >= fast { fast } else { need };
    let _ = write!(
        out,
        "TRM-MODEL bytes={} version={} hidden={} seq_len={} layers={} mlp_t={} params={} scratch_f32={} scratch_have={}",
        bytes.len(),
        model.version(),
        c.hidden_size,
        c.seq_len,
        c.l_layers,
        c.mlp_t,
        model.summary().parameter_count,
        use_len,
        scratch.len()
    );
    if fixed {
        let parts = AnyEngine::scratch_len(&model);
        say!(
            out,
            " scheme=fixed scratch_i16={} scratch_i32={}",
            parts.i16s,
            parts.i32s
        );
    } else {
        say!(out, " scheme=float");
    }
    // Sudoku, or a task whose puzzles read as token lines of at most MAX_SEQ_LEN tokens.
    if !Task::of(&c).has_text_form(c.seq_len as usize, c.vocab_size) {
        say!(
            out,
            "TRM-ERROR stage=model msg=not a model of a task the app runs (seq_len {}, vocab {}; at most {MAX_SEQ_LEN} tokens of at most 62 kinds)",
            c.seq_len,
            c.vocab_size
        );
        return Err(());
    }
    let scratch_len = scratch.len();
    let Some(buf) = scratch.get_mut(..use_len) else {
        say!(
            out,
            "TRM-ERROR stage=engine msg=scratch too small: need {need} f32, have {scratch_len}"
        );
        return Err(());
    };
    // A fixed model's i16 and i32 buffers are carved from the same f32 arena.
    AnyEngine::new(&model, buf).map_err(|e| say!(out, "TRM-ERROR stage=engine msg={e}"))
}

/// One puzzle: parse, print, check the reference answer, and solve when there is an engine.
/// `Ok(true)` when the puzzle counts as ok, `Err(())` on a run error (already printed).
fn solve_one<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &mut K,
    engine: Option<&mut AnyEngine<'_>>,
    i: usize,
    p: &Puzzle<'_>,
    opts: &Options<'_>,
) -> Result<bool, ()> {
    match engine {
        Some(e) if Task::of(e.config()) != Task::Sudoku => solve_task(out, counter, e, i, p, opts),
        engine => solve_sudoku(out, counter, engine, i, p, opts),
    }
}

/// [`solve_one`] of a Sudoku puzzle (or, without an engine, the codec-only check of one).
fn solve_sudoku<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &mut K,
    engine: Option<&mut AnyEngine<'_>>,
    i: usize,
    p: &Puzzle<'_>,
    opts: &Options<'_>,
) -> Result<bool, ()> {
    let mut question: Tokens = [PAD; CELLS];
    let givens = match sudoku::parse_puzzle(p.question, &mut question) {
        Ok(n) => n,
        Err(e) => {
            say!(out, "TRM-ERROR stage=puzzle puzzle={i} msg=question: {e}");
            return Err(());
        }
    };
    let mut line = Line::new();
    let _ = sudoku::write_line(&mut line, &question);
    say!(
        out,
        "TRM-PUZZLE puzzle={i} name={} givens={givens} question={}",
        p.name,
        line.as_str()
    );
    if opts.boards {
        let _ = sudoku::write_board(out, &question);
    }
    let answer = match p.answer {
        None => {
            say!(out, "TRM-ANSWER puzzle={i} status=none");
            None
        }
        Some(a) => {
            let mut tokens: Tokens = [PAD; CELLS];
            if let Err(e) = sudoku::parse_puzzle(a, &mut tokens) {
                say!(out, "TRM-ERROR stage=puzzle puzzle={i} msg=answer: {e}");
                return Err(());
            }
            let check = sudoku::check_solution(&tokens, &question);
            answer_status(out, i, check, "not a solution of the question")?;
            Some(tokens)
        }
    };
    let Some(engine) = engine else {
        // Codec-only run: the puzzle is ok when its answer is known and valid.
        return Ok(answer.is_some());
    };
    let mut pred: Tokens = [PAD; CELLS];
    let (steps, ticks) = solve_act(
        out,
        counter,
        engine,
        i,
        &question,
        p.puzzle_id,
        &mut pred,
        opts,
    )?;
    // Givens stay as they were: the model predicts every cell, the grid check decides.
    let valid = sudoku::check_solution(&pred, &question);
    let correct = match &answer {
        Some(a) => a.iter().zip(pred.iter()).filter(|(x, y)| x == y).count(),
        None => 0,
    };
    let mut line = Line::new();
    let _ = sudoku::write_line(&mut line, &pred);
    match valid {
        Ok(()) => say!(
            out,
            "TRM-RESULT puzzle={i} valid=true correct={correct}/{CELLS} prediction={}",
            line.as_str()
        ),
        Err(v) => say!(
            out,
            "TRM-RESULT puzzle={i} valid=false correct={correct}/{CELLS} prediction={} msg={v}",
            line.as_str()
        ),
    }
    if opts.boards {
        let _ = sudoku::write_board(out, &pred);
    }
    cycles(out, counter, i, ticks, steps);
    Ok(valid.is_ok())
}

/// [`solve_one`] of a puzzle of another task ([`Task`]: maze, ARC, any token sequence): the
/// question and answer are token lines of the task's alphabet, the puzzle identifier selects the
/// puzzle embedding, and validity is the task's rule (`valid=n/a` for a task without one).
/// Never inlined: its token buffers (3 KiB of stack) stay out of the Sudoku path's frame on
/// small boards.
#[inline(never)]
fn solve_task<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &mut K,
    engine: &mut AnyEngine<'_>,
    i: usize,
    p: &Puzzle<'_>,
    opts: &Options<'_>,
) -> Result<bool, ()> {
    let c = *engine.config();
    let task = Task::of(&c);
    let seq = c.seq_len as usize;
    let mut question = [PAD; MAX_SEQ_LEN];
    let mut answer = [PAD; MAX_SEQ_LEN];
    let mut pred = [PAD; MAX_SEQ_LEN];
    let (question, answer, pred) = (&mut question[..seq], &mut answer[..seq], &mut pred[..seq]);
    if let Err(e) = task.parse_line(p.question, c.vocab_size, question) {
        say!(
            out,
            "TRM-ERROR stage=puzzle puzzle={i} msg=question: {task}: {e}"
        );
        return Err(());
    }
    let _ = write!(
        out,
        "TRM-PUZZLE puzzle={i} name={} task={task} id={} question=",
        p.name, p.puzzle_id
    );
    let _ = task.write_line(out, question);
    say!(out, "");
    if opts.boards {
        let _ = task.write_board(out, question);
    }
    let has_answer = match p.answer {
        None => {
            say!(out, "TRM-ANSWER puzzle={i} status=none");
            false
        }
        Some(a) => {
            if let Err(e) = task.parse_line(a, c.vocab_size, answer) {
                say!(
                    out,
                    "TRM-ERROR stage=puzzle puzzle={i} msg=answer: {task}: {e}"
                );
                return Err(());
            }
            answer_status(
                out,
                i,
                task.check(answer, question),
                "not valid for its question",
            )?;
            true
        }
    };
    let (steps, ticks) = solve_act(out, counter, engine, i, question, p.puzzle_id, pred, opts)?;
    let correct = if has_answer {
        answer
            .iter()
            .zip(pred.iter())
            .filter(|(x, y)| x == y)
            .count()
    } else {
        0
    };
    let valid = task.check(pred, question);
    let verdict = match (task.has_rule(), valid.is_ok()) {
        (false, _) => "n/a",
        (true, true) => "true",
        (true, false) => "false",
    };
    let _ = write!(
        out,
        "TRM-RESULT puzzle={i} valid={verdict} correct={correct}/{seq} prediction="
    );
    let _ = task.write_line(out, pred);
    match valid {
        Err(v) => say!(out, " msg={v}"),
        Ok(()) => say!(out, ""),
    }
    if opts.boards {
        let _ = task.write_board(out, pred);
    }
    cycles(out, counter, i, ticks, steps);
    // Without a rule, a puzzle counts as ok when it matches its answer.
    Ok(if task.has_rule() {
        valid.is_ok()
    } else {
        has_answer && correct == seq
    })
}

/// Prints the `TRM-ANSWER` line of a reference answer checked against its question: `valid`,
/// or `invalid` with the reason, then (bad embedded data: an error of the run, with its
/// `TRM-ERROR` line as every error has) the error saying `what` is wrong, and `Err(())`.
fn answer_status<C: Console + ?Sized, V: fmt::Display>(
    out: &mut Out<'_, '_, C>,
    i: usize,
    check: Result<(), V>,
    what: &str,
) -> Result<(), ()> {
    match check {
        Ok(()) => {
            say!(out, "TRM-ANSWER puzzle={i} status=valid");
            Ok(())
        }
        Err(v) => {
            say!(out, "TRM-ANSWER puzzle={i} status=invalid msg={v}");
            say!(
                out,
                "TRM-ERROR stage=puzzle puzzle={i} msg=answer: {what}: {v}"
            );
            Err(())
        }
    }
}

/// Runs the ACT steps of one puzzle (`TRM-STEP` lines when asked), writes the prediction into
/// `pred` and prints `TRM-DIGEST`; returns the steps run and the counter ticks the solve took.
#[allow(clippy::too_many_arguments)]
fn solve_act<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &mut K,
    engine: &mut AnyEngine<'_>,
    i: usize,
    question: &[u8],
    puzzle_id: u32,
    pred: &mut [u8],
    opts: &Options<'_>,
) -> Result<(u32, u64), ()> {
    let t0 = counter.now();
    if let Err(e) = engine.start(question, puzzle_id) {
        say!(out, "TRM-ERROR stage=engine puzzle={i} msg={e}");
        return Err(());
    }
    let halt_max = engine.config().halt_max_steps;
    let steps = loop {
        let s = engine.step();
        if opts.step_digests {
            say!(
                out,
                "TRM-STEP puzzle={i} step={} q_halt={:08x} y={:08x} z={:08x}",
                s.step,
                s.q_bits,
                engine.y_digest(),
                engine.z_digest()
            );
        }
        if should_stop(opts.halt, s.step, halt_max, s.halt) {
            break s.step;
        }
    };
    if let Err(e) = engine.predict(pred) {
        say!(out, "TRM-ERROR stage=engine puzzle={i} msg={e}");
        return Err(());
    }
    let ticks = counter.now().wrapping_sub(t0);
    say!(
        out,
        "TRM-DIGEST puzzle={i} steps={steps} tokens={:08x} y={:08x}",
        digest_tokens(pred),
        engine.y_digest()
    );
    Ok((steps, ticks))
}

/// Prints the `TRM-CYCLES` line of a solve.
fn cycles<C: Console + ?Sized, K: Counter + ?Sized>(
    out: &mut Out<'_, '_, C>,
    counter: &K,
    i: usize,
    ticks: u64,
    steps: u32,
) {
    let per_step = ticks / u64::from(steps.max(1));
    let _ = write!(
        out,
        "TRM-CYCLES puzzle={i} ticks={ticks} unit={} steps={steps} per_step={per_step}",
        counter.unit()
    );
    match counter.hz() {
        Some(hz) if hz > 0 => say!(
            out,
            " us_per_step={}",
            u128::from(per_step) * 1_000_000 / u128::from(hz)
        ),
        _ => say!(out, ""),
    }
}

/// An 81-character line buffer (a puzzle in string form), no allocation.
struct Line {
    buf: [u8; CELLS],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Line {
            buf: [BLANK; CELLS],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever written (see `write_str`), so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if !b.is_ascii() {
                return Err(fmt::Error);
            }
            let slot = self.buf.get_mut(self.len).ok_or(fmt::Error)?;
            *slot = b;
            self.len += 1;
        }
        Ok(())
    }
}
