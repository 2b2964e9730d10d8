//! Sudoku puzzle lists for host runs: a CSV in the public dataset layout, or one puzzle string.

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};

/// One puzzle as text (validated later by the app, which reports bad strings per puzzle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuzzleRow {
    /// Label without spaces (the CSV's `source` column, or `row<i>`).
    pub name: String,
    /// 81 characters, `.`/`0` blank.
    pub question: String,
    /// The reference answer, when the CSV has one.
    pub answer: Option<String>,
}

/// Reads up to `limit` puzzles from a CSV whose header names a `question` column (and optionally
/// `answer` and `source`), as the Sudoku-Extreme files do. The CSV is read by the `csv` crate
/// (as trm-data reads it): quoted fields may hold commas, fields are trimmed, and every row must
/// have exactly the header's number of fields. Errors name the file and line.
pub fn read_csv(path: &Path, limit: usize) -> Result<Vec<PuzzleRow>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
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
    let find = |name: &str| header.iter().position(|c| c == name);
    let Some(q) = find("question") else {
        bail!(
            "{}:1: header has no `question` column (found: {})",
            path.display(),
            header.iter().collect::<Vec<_>>().join(",")
        );
    };
    let a = find("answer");
    let s = find("source");
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
        if question.chars().count() != CELLS {
            bail!(
                "{}:{lineno}: field `question` has {} characters, expected {CELLS}",
                path.display(),
                question.chars().count()
            );
        }
        let name = s
            .and_then(|s| record.get(s))
            .map(|v| v.replace(|c: char| c.is_whitespace(), "_"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| format!("row{}", rows.len() + 1));
        rows.push(PuzzleRow {
            name,
            question: question.to_string(),
            answer: a
                .and_then(|a| record.get(a))
                .map(str::to_string)
                .filter(|v| !v.is_empty()),
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

/// Checks that every row's answer, when it has one, is a solution of its question (the givens
/// kept, every unit complete): what the firmware app requires of reference answers. The error
/// names the first bad row (index and name) and why. Unparsable strings are left to the app.
pub fn check_answers(rows: &[PuzzleRow]) -> Result<()> {
    for (i, r) in rows.iter().enumerate() {
        let Some(a) = &r.answer else { continue };
        let (mut q, mut t): (Tokens, Tokens) = ([PAD; CELLS], [PAD; CELLS]);
        if sudoku::parse_puzzle(&r.question, &mut q).is_err()
            || sudoku::parse_puzzle(a, &mut t).is_err()
        {
            continue;
        }
        if let Err(v) = sudoku::check_solution(&t, &q) {
            bail!(
                "puzzle {i} (`{}`): the answer is not a solution of the question: {v}",
                r.name
            );
        }
    }
    Ok(())
}

/// Sudoku puzzles of a dataset split in the reference layout (e.g. `<dataset>/test`): up to
/// `limit` examples of every set, decoded from tokens (1 blank, 2..=10 the digits 1..=9).
/// Errors when the split is not a 9x9 Sudoku dataset.
pub fn read_dataset_split(dir: &Path, limit: usize) -> Result<Vec<PuzzleRow>> {
    let split = trm_data::layout::Split::open(dir)
        .with_context(|| format!("opening dataset split {}", dir.display()))?;
    if split.metadata.seq_len != 81 {
        bail!(
            "{}: seq_len is {}, not a 9x9 Sudoku dataset",
            dir.display(),
            split.metadata.seq_len
        );
    }
    let decode = |tokens: &[u8], what: &str, index: usize| -> Result<String> {
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
            });
        }
    }
    Ok(rows)
}

/// Where a command's puzzles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PuzzleSource {
    /// A CSV with a `question` column (see [`read_csv`]).
    Csv(PathBuf),
    /// A dataset split in the reference layout (see [`read_dataset_split`]).
    Dataset(PathBuf),
    /// One puzzle string (81 characters, `.` or `0` blank).
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

    /// Up to `limit` puzzles of this source.
    pub fn load(&self, limit: usize) -> Result<Vec<PuzzleRow>> {
        match self {
            PuzzleSource::Csv(p) => read_csv(p, limit),
            PuzzleSource::Dataset(d) => read_dataset_split(d, limit),
            PuzzleSource::One(q) => Ok(vec![PuzzleRow {
                name: "cli".into(),
                question: q.clone(),
                answer: None,
            }]),
        }
    }
}

/// A puzzle as model tokens, with its answer's tokens when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPuzzle {
    /// The question (blanks are [`trm_nostd::sudoku::BLANK`]).
    pub question: Tokens,
    /// The reference answer.
    pub answer: Option<Tokens>,
}

/// Parses the puzzle strings of `rows` into tokens; an error names the puzzle (index and name)
/// and what is wrong with its string.
pub fn to_tokens(rows: &[PuzzleRow]) -> Result<Vec<TokenPuzzle>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut question: Tokens = [PAD; CELLS];
            sudoku::parse_puzzle(&r.question, &mut question)
                .map_err(|e| anyhow!("puzzle {i} ({}): question: {e}", r.name))?;
            let answer = match &r.answer {
                None => None,
                Some(a) => {
                    let mut t: Tokens = [PAD; CELLS];
                    sudoku::parse_puzzle(a, &mut t)
                        .map_err(|e| anyhow!("puzzle {i} ({}): answer: {e}", r.name))?;
                    Some(t)
                }
            };
            Ok(TokenPuzzle { question, answer })
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
        let rows = read_csv(&path, 1).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].question, q);
        assert_eq!(rows[0].answer, None);
        assert_eq!(rows[0].name, "row1");
        let err = read_csv(&path, 10).unwrap_err().to_string();
        assert!(err.contains("p.csv:3"), "{err}");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = read_csv(&path, 10).unwrap_err().to_string();
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
        let rows = read_csv(&path, 10).unwrap();
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
            let err = read_csv(&path, 10).unwrap_err().to_string();
            assert!(err.contains(&format!("p.csv:{line}:")), "{err}");
            assert!(err.contains("fields, the header has"), "{err}");
        }
        // Empty file and header-only file.
        std::fs::write(&path, "").unwrap();
        let err = read_csv(&path, 10).unwrap_err().to_string();
        assert!(err.contains("empty file"), "{err}");
        std::fs::write(&path, "question,answer\n").unwrap();
        assert!(read_csv(&path, 10).unwrap().is_empty());
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
        };
        check_answers(&[row("ok", &good)]).unwrap();
        let err = check_answers(&[row("ok", &good), row("row2", &bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("puzzle 1 (`row2`)"), "{err}");
        assert!(err.contains("cell 0 changes given 6 to 5"), "{err}");
    }
}
