//! Errors and CSV reading shared by the Sudoku and Maze builders.

use std::path::{Path, PathBuf};

use crate::layout::LayoutError;

/// An error of a dataset builder, naming the file, line and field at fault where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV itself is malformed (quoting, missing columns, header).
    #[error("{path}:{line}: {msg}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// A field holds a bad value.
    #[error("{path}:{line}: field `{field}`: {msg}")]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column name.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The options are inconsistent (e.g. a difficulty filter without a rating column).
    #[error("{0}")]
    Options(String),
    /// Writing the dataset failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// One CSV row: its 1-based line number and the fields of the requested columns
/// (`None` for an optional column the file lacks).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub line: u64,
    pub fields: Vec<Option<String>>,
}

/// Reads a CSV with a header and returns, for each row, the requested columns by name.
/// `required` columns must exist; `optional` ones may be absent.
pub(crate) fn read_csv(
    path: &Path,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<Row>, BuildError> {
    let file = std::fs::File::open(path).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(std::io::BufReader::new(file));
    let csv_err = |e: csv::Error| BuildError::Csv {
        path: path.to_path_buf(),
        line: e.position().map_or(0, |p| p.line()),
        msg: e.to_string(),
    };
    let header = reader.headers().map_err(csv_err)?.clone();
    let mut columns = Vec::new();
    for (name, needed) in required
        .iter()
        .map(|n| (n, true))
        .chain(optional.iter().map(|n| (n, false)))
    {
        let idx = header.iter().position(|h| h.trim() == *name);
        if idx.is_none() && needed {
            return Err(BuildError::Csv {
                path: path.to_path_buf(),
                line: 1,
                msg: format!(
                    "header {:?} has no column `{name}`",
                    header.iter().collect::<Vec<_>>()
                ),
            });
        }
        columns.push(idx);
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        let fields = columns
            .iter()
            .map(|c| c.and_then(|i| record.get(i).map(str::to_string)))
            .collect();
        rows.push(Row { line, fields });
    }
    Ok(rows)
}
