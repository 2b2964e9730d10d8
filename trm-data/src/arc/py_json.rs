//! Python-style JSON (`json.dump` defaults: `", "` and `": "` separators, ensure_ascii):
//! test_puzzles.json written as the reference writes it, and read back.

use std::path::Path;

use super::kaggle::{Ordered, RawExample, RawTask, read_json};
use super::{ArcError, ArcExample, ArcTask, Grid};

/// Appends `s` as a JSON string the way Python's `json.dump` writes it (ensure_ascii).
pub(crate) fn push_py_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a grid as Python's `json.dump(grid.tolist())` writes it (`[]` for an empty grid).
pub(crate) fn push_py_grid(out: &mut String, g: &Grid) {
    out.push('[');
    for (r, row) in g.cells.chunks(g.cols.max(1)).enumerate() {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('[');
        for (c, v) in row.iter().enumerate() {
            if c > 0 {
                out.push_str(", ");
            }
            out.push(char::from(b'0' + v));
        }
        out.push(']');
    }
    out.push(']');
}

/// test_puzzles.json as the reference writes it: `{id: {"train": [{"input", "output"}..],
/// "test": [{"input", "output"}..]}}` in processing order.
pub fn test_puzzles_json<'a>(tasks: impl Iterator<Item = &'a ArcTask>) -> String {
    let mut out = String::from("{");
    for (i, t) in tasks.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_py_str(&mut out, &t.id);
        out.push_str(": {");
        let mut parts = [("train", &t.train), ("test", &t.test)];
        if t.test_first {
            parts.swap(0, 1);
        }
        for (k, (key, exs)) in parts.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("\"{key}\": ["));
            for (j, e) in exs.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                out.push_str("{\"input\": ");
                push_py_grid(&mut out, &e.input);
                out.push_str(", \"output\": ");
                push_py_grid(&mut out, &e.output);
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// Reads test_puzzles.json (written by this module or by the reference).
pub fn read_test_puzzles(path: &Path) -> Result<Vec<ArcTask>, ArcError> {
    let raw: Ordered<RawTask> = read_json(path)?;
    let mut tasks = Vec::with_capacity(raw.0.len());
    for (id, task) in raw.0 {
        let conv = |exs: &[RawExample], part: &str| -> Result<Vec<ArcExample>, ArcError> {
            exs.iter()
                .enumerate()
                .map(|(i, e)| {
                    let err = |field: String, msg: String| ArcError::Puzzle {
                        path: path.to_path_buf(),
                        puzzle: id.clone(),
                        field,
                        msg,
                    };
                    let input = Grid::from_rows(&e.input)
                        .map_err(|m| err(format!("{part}[{i}].input"), m))?;
                    let out = e
                        .output
                        .as_ref()
                        .ok_or_else(|| err(format!("{part}[{i}].output"), "missing".into()))?;
                    let output =
                        Grid::from_rows(out).map_err(|m| err(format!("{part}[{i}].output"), m))?;
                    Ok(ArcExample { input, output })
                })
                .collect()
        };
        let train = conv(&task.train, "train")?;
        let test = conv(&task.test, "test")?;
        tasks.push(ArcTask {
            id,
            train,
            test,
            test_first: task.test_first,
        });
    }
    Ok(tasks)
}
