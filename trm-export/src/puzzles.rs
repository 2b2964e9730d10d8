//! Puzzle lists for host runs: a CSV in the public datasets' layout, a dataset split in the
//! reference layout, or one puzzle string; for any task a model solves ([`PuzzleKind`]:
//! Sudoku, Maze-Hard, ARC, any token sequence).
//!
//! A puzzle is text here: Sudoku's 81-character string (`.`/`0` blank), or for other tasks a
//! token line of the task's alphabet ([`trm_nostd::task`]: maze `_#.SGo`, a space read as an
//! open cell as the Maze-Hard CSVs write it; ARC `_|0123456789`). The firmware app parses and
//! checks it, as on a device; [`to_tokens`] does the same for the host commands that drive the
//! engines themselves.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};
use trm_nostd::task::{MAX_SEQ_LEN, Task};
use trm_nostd::{Config, Model};

/// One puzzle as text (validated later by the app, which reports bad strings per puzzle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuzzleRow {
    /// Label without spaces (the CSV's `source` column, the dataset set and example, or
    /// `row<i>`).
    pub name: String,
    /// The question: Sudoku's 81 characters, or a token line.
    pub question: String,
    /// The reference answer, when known.
    pub answer: Option<String>,
    /// The puzzle identifier (the row of the puzzle embedding; 0 but for ARC).
    pub puzzle_id: u32,
}

/// What puzzles a model takes: its task, tokens per puzzle and vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PuzzleKind {
    /// The task ([`Task::of`]).
    pub task: Task,
    /// Tokens per puzzle (`seq_len`).
    pub seq_len: usize,
    /// Token vocabulary.
    pub vocab: u32,
}

impl PuzzleKind {
    /// 9x9 Sudoku.
    pub const SUDOKU: PuzzleKind = PuzzleKind {
        task: Task::Sudoku,
        seq_len: CELLS,
        vocab: sudoku::VOCAB as u32,
    };

    /// The puzzles of a model built for `config`.
    pub fn of(config: &Config) -> Self {
        PuzzleKind {
            task: Task::of(config),
            seq_len: config.seq_len as usize,
            vocab: config.vocab_size,
        }
    }

    /// The puzzles of `model`, or an error (naming `what`, e.g. the command-line option) when
    /// the host tools cannot write its puzzles as text: more than [`MAX_SEQ_LEN`] tokens, or a
    /// task without an alphabet of its vocabulary (more than 62 kinds of tokens).
    pub fn of_model(model: &Model<'_>, what: &str) -> Result<Self> {
        let kind = PuzzleKind::of(model.config());
        if !kind.task.has_text_form(kind.seq_len, kind.vocab) {
            bail!(
                "{what}: the model's puzzles ({} tokens of {} kinds) cannot be written as text \
                 (at most {MAX_SEQ_LEN} tokens of at most 62 kinds)",
                kind.seq_len,
                kind.vocab
            );
        }
        Ok(kind)
    }

    /// A line of text as this kind's tokens.
    pub fn parse(&self, s: &str) -> Result<Vec<u8>> {
        if self.task == Task::Sudoku {
            let mut t: Tokens = [PAD; CELLS];
            sudoku::parse_puzzle(s, &mut t)?;
            return Ok(t.to_vec());
        }
        let mut t = vec![PAD; self.seq_len];
        self.task
            .parse_line(s, self.vocab, &mut t)
            .map_err(|e| anyhow!("{}: {e}", self.task))?;
        Ok(t)
    }

    /// Tokens as this kind's line of text.
    pub fn line(&self, tokens: &[u8]) -> String {
        if self.task == Task::Sudoku {
            return tokens.iter().map(|&t| sudoku::token_char(t)).collect();
        }
        tokens.iter().map(|&t| self.task.token_char(t)).collect()
    }

    /// Whether `prediction` is valid for `question` by the task's rule (Sudoku: a solution
    /// keeping the givens; maze: a path from start to goal; ARC: an output grid; other tasks
    /// have no rule and accept anything): `Err` says why not.
    pub fn check(&self, prediction: &[u8], question: &[u8]) -> Result<(), String> {
        if self.task == Task::Sudoku {
            let (Ok(p), Ok(q)) = (
                <&Tokens>::try_from(prediction),
                <&Tokens>::try_from(question),
            ) else {
                return Err("not 81 cells".to_string());
            };
            return sudoku::check_solution(p, q).map_err(|v| v.to_string());
        }
        self.task
            .check(prediction, question)
            .map_err(|v| v.to_string())
    }

    /// Whether the task has a validity rule ([`PuzzleKind::check`] can fail).
    pub fn has_rule(&self) -> bool {
        self.task.has_rule()
    }
}

/// Reads up to `limit` puzzles of `kind` from a CSV whose header names a `question` column (and
/// optionally `answer`, `source` and `puzzle_id`), as the Sudoku-Extreme and Maze-Hard files do.
/// The CSV is read by the `csv` crate (as trm-data reads it): quoted fields may hold commas,
/// fields are trimmed of spaces (but for a maze, whose open cells are spaces), and every row
/// must have exactly the header's number of fields. Errors name the file and line.
pub fn read_csv(path: &Path, limit: usize, kind: &PuzzleKind) -> Result<Vec<PuzzleRow>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let trim = if matches!(kind.task, Task::Maze { .. }) {
        csv::Trim::None
    } else {
        csv::Trim::All
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(trim)
        .from_reader(std::io::BufReader::new(file));
    let at = |e: &csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        format!("{}:{line}", path.display())
    };
    let header = reader
        .headers()
        .map_err(|e| anyhow!("{}: {}", at(&e), csv_reason(&e)))?
        .clone();
    if header.is_empty() {
        bail!("{}: empty file", path.display());
    }
    let find = |name: &str| header.iter().position(|c| c.trim() == name);
    let Some(q) = find("question") else {
        bail!(
            "{}:1: header has no `question` column (found: {})",
            path.display(),
            header.iter().collect::<Vec<_>>().join(",")
        );
    };
    let a = find("answer");
    let s = find("source");
    let id = find("puzzle_id");
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    while rows.len() < limit {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => bail!("{}: {}", at(&e), csv_reason(&e)),
        }
        let lineno = record.position().map_or(0, |p| p.line());
        let question = record.get(q).unwrap_or("");
        if question.chars().count() != kind.seq_len {
            bail!(
                "{}:{lineno}: field `question` has {} characters, expected {} (a {} puzzle)",
                path.display(),
                question.chars().count(),
                kind.seq_len,
                kind.task
            );
        }
        let name = s
            .and_then(|s| record.get(s))
            .map(|v| v.trim().replace(|c: char| c.is_whitespace(), "_"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("row{}", rows.len() + 1));
        let puzzle_id = match id.and_then(|i| record.get(i)).map(str::trim) {
            None | Some("") => 0,
            Some(v) => v.parse::<u32>().map_err(|_| {
                anyhow!(
                    "{}:{lineno}: field `puzzle_id` is `{v}`, not a puzzle identifier",
                    path.display()
                )
            })?,
        };
        rows.push(PuzzleRow {
            name,
            question: question.to_string(),
            answer: a
                .and_then(|a| record.get(a))
                .map(str::to_string)
                .filter(|v| !v.trim().is_empty()),
            puzzle_id,
        });
    }
    Ok(rows)
}

/// A CSV error's reason, without the position (the caller prefixes `file:line`).
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "{len} fields, the header has {expected_len} (every row must have exactly the header's columns; quote fields that hold commas)"
        ),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    }
}

/// Checks that every row's answer, when it has one, is valid for its question by the task's
/// rule (Sudoku: a solution keeping the givens; maze: a path from start to goal; ARC: an output
/// grid): what the firmware app requires of reference answers. The error names the first bad
/// row (index and name) and why. Unparsable strings are left to the app.
pub fn check_answers(rows: &[PuzzleRow], kind: &PuzzleKind) -> Result<()> {
    for (i, r) in rows.iter().enumerate() {
        let Some(a) = &r.answer else { continue };
        let (Ok(q), Ok(t)) = (kind.parse(&r.question), kind.parse(a)) else {
            continue;
        };
        if let Err(v) = kind.check(&t, &q) {
            bail!(
                "puzzle {i} (`{}`): the answer is not a solution of the question: {v}",
                r.name
            );
        }
    }
    Ok(())
}

/// The puzzles of a dataset split in the reference layout (e.g. `<dataset>/test`): up to
/// `limit` examples of every set, as text of the dataset's kind (its `seq_len` and
/// `vocab_size`: [`Task::from_sizes`]), with their puzzle identifiers. Sudoku tokens must be
/// blanks or digits (1 blank, 2..=10 the digits 1..=9).
pub fn read_dataset_split(dir: &Path, limit: usize) -> Result<(PuzzleKind, Vec<PuzzleRow>)> {
    let split = trm_data::layout::Split::open(dir)
        .with_context(|| format!("opening dataset split {}", dir.display()))?;
    let m = &split.metadata;
    let kind = PuzzleKind {
        task: Task::from_sizes(m.seq_len, m.vocab_size as usize),
        seq_len: m.seq_len,
        vocab: m.vocab_size,
    };
    if !kind.task.has_text_form(kind.seq_len, kind.vocab) {
        bail!(
            "{}: puzzles of {} tokens of {} kinds cannot be written as text (at most \
             {MAX_SEQ_LEN} tokens of at most 62 kinds)",
            dir.display(),
            kind.seq_len,
            kind.vocab
        );
    }
    let decode = |tokens: &[u8], what: &str, index: usize| -> Result<String> {
        if kind.task != Task::Sudoku {
            return Ok(kind.line(tokens));
        }
        tokens
            .iter()
            .map(|&t| match t {
                1 => Ok('.'),
                2..=10 => Ok(char::from(b'0' + t - 1)),
                other => bail!(
                    "{}: example {index}: {what} token {other} is not a Sudoku token",
                    dir.display()
                ),
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (set_name, set) in &split.sets {
        for e in set.examples().take(limit.saturating_sub(rows.len())) {
            rows.push(PuzzleRow {
                name: format!("{set_name}{}", e.index),
                question: decode(e.input, "input", e.index)?,
                answer: Some(decode(e.label, "label", e.index)?),
                puzzle_id: u32::try_from(e.puzzle_identifier).unwrap_or(0),
            });
        }
    }
    Ok((kind, rows))
}

/// Where a command's puzzles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PuzzleSource {
    /// A CSV with a `question` column (see [`read_csv`]).
    Csv(PathBuf),
    /// A dataset split in the reference layout (see [`read_dataset_split`]).
    Dataset(PathBuf),
    /// One puzzle string (Sudoku: 81 characters, `.` or `0` blank; other tasks: a token line).
    One(String),
}

impl PuzzleSource {
    /// The one source given among the three command-line options, or an error saying which
    /// to give.
    pub fn from_options(
        csv: Option<PathBuf>,
        dataset: Option<PathBuf>,
        puzzle: Option<String>,
    ) -> Result<Self> {
        match (csv, dataset, puzzle) {
            (Some(c), None, None) => Ok(PuzzleSource::Csv(c)),
            (None, Some(d), None) => Ok(PuzzleSource::Dataset(d)),
            (None, None, Some(p)) => Ok(PuzzleSource::One(p)),
            (None, None, None) => bail!("give --puzzles CSV, --dataset DIR or --puzzle STRING"),
            _ => bail!("give only one of --puzzles CSV, --dataset DIR, --puzzle STRING"),
        }
    }

    /// Up to `limit` puzzles of this source, for a model taking puzzles of `kind`: a dataset
    /// of another kind (other `seq_len`, other task or a larger vocabulary) is an error naming
    /// both.
    pub fn load(&self, limit: usize, kind: &PuzzleKind) -> Result<Vec<PuzzleRow>> {
        match self {
            PuzzleSource::Csv(p) => read_csv(p, limit, kind),
            PuzzleSource::Dataset(d) => {
                let (found, rows) = read_dataset_split(d, limit)?;
                if found.seq_len != kind.seq_len
                    || found.task != kind.task
                    || found.vocab > kind.vocab
                {
                    bail!(
                        "{}: a {} dataset ({} tokens of {} kinds), the model takes {} puzzles \
                         ({} tokens of {} kinds)",
                        d.display(),
                        found.task,
                        found.seq_len,
                        found.vocab,
                        kind.task,
                        kind.seq_len,
                        kind.vocab
                    );
                }
                Ok(rows)
            }
            PuzzleSource::One(q) => Ok(vec![PuzzleRow {
                name: "cli".into(),
                question: q.clone(),
                answer: None,
                puzzle_id: 0,
            }]),
        }
    }
}

/// A puzzle as model tokens, with its answer's tokens when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPuzzle {
    /// The question (`seq_len` tokens).
    pub question: Vec<u8>,
    /// The reference answer.
    pub answer: Option<Vec<u8>>,
    /// The puzzle identifier.
    pub puzzle_id: u32,
}

/// Parses the puzzle strings of `rows` into tokens of `kind`; an error names the puzzle (index
/// and name) and what is wrong with its string.
pub fn to_tokens(rows: &[PuzzleRow], kind: &PuzzleKind) -> Result<Vec<TokenPuzzle>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let question = kind
                .parse(&r.question)
                .map_err(|e| anyhow!("puzzle {i} ({}): question: {e}", r.name))?;
            let answer = match &r.answer {
                None => None,
                Some(a) => Some(
                    kind.parse(a)
                        .map_err(|e| anyhow!("puzzle {i} ({}): answer: {e}", r.name))?,
                ),
            };
            Ok(TokenPuzzle {
                question,
                answer,
                puzzle_id: r.puzzle_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_by_name_and_reports_bad_rows() {
        let dir = std::env::temp_dir().join(format!("trm-puzzles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let q = ".".repeat(80) + "1";
        let path = dir.join("p.csv");
        std::fs::write(&path, format!("answer,question\n,{q}\nx,short\n")).unwrap();
        let rows = read_csv(&path, 1, &PuzzleKind::SUDOKU).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].question, q);
        assert_eq!(rows[0].answer, None);
        assert_eq!(rows[0].name, "row1");
        let err = read_csv(&path, 10, &PuzzleKind::SUDOKU)
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.csv:3"), "{err}");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = read_csv(&path, 10, &PuzzleKind::SUDOKU)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `question` column"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn csv_quoting_is_honoured_and_column_counts_are_exact() {
        let dir = std::env::temp_dir().join(format!("trm-puzzles-q-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let q = ".".repeat(80) + "1";
        let path = dir.join("p.csv");
        // A quoted source holding a comma, CRLF line ends, spaces around fields, a blank line.
        std::fs::write(
            &path,
            format!("source , question,answer\r\n\"a, b\",{q} ,\r\n\r\nc,\"{q}\",\n"),
        )
        .unwrap();
        let rows = read_csv(&path, 10, &PuzzleKind::SUDOKU).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "a,_b");
        assert_eq!(rows[0].question, q);
        assert_eq!(rows[1].name, "c");
        assert_eq!(rows[1].question, q);
        // An extra column, and a missing one: refused with the line.
        for (text, line) in [
            (format!("source,question\nx,{q}\ny,{q},extra\n"), 3),
            (format!("source,question,answer\nx,{q},\n{q}\n"), 3),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = read_csv(&path, 10, &PuzzleKind::SUDOKU)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("p.csv:{line}:")), "{err}");
            assert!(err.contains("fields, the header has"), "{err}");
        }
        // Empty file and header-only file.
        std::fs::write(&path, "").unwrap();
        let err = read_csv(&path, 10, &PuzzleKind::SUDOKU)
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty file"), "{err}");
        std::fs::write(&path, "question,answer\n").unwrap();
        assert!(read_csv(&path, 10, &PuzzleKind::SUDOKU).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn answers_contradicting_their_givens_are_named() {
        let a = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";
        let good = format!("5{}", ".".repeat(80));
        let bad = format!("6{}", ".".repeat(80));
        let row = |name: &str, q: &str| PuzzleRow {
            name: name.to_string(),
            question: q.to_string(),
            answer: Some(a.to_string()),
            puzzle_id: 0,
        };
        check_answers(&[row("ok", &good)], &PuzzleKind::SUDOKU).unwrap();
        let err = check_answers(&[row("ok", &good), row("row2", &bad)], &PuzzleKind::SUDOKU)
            .unwrap_err()
            .to_string();
        assert!(err.contains("puzzle 1 (`row2`)"), "{err}");
        assert!(err.contains("cell 0 changes given 6 to 5"), "{err}");
    }
}
