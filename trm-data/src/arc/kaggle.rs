//! Loading the Kaggle JSON: `<prefix>_<subset>_challenges.json` and `_solutions.json`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use super::{ArcError, Grid, io_err};

/// One input/output pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcExample {
    /// The input grid.
    pub input: Grid,
    /// The output grid (for test examples: from the solutions file, or `[[0]]` without one).
    pub output: Grid,
}

/// One ARC task (a "puzzle"): demonstration pairs and test pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcTask {
    /// The task id (the JSON key).
    pub id: String,
    /// Demonstration pairs.
    pub train: Vec<ArcExample>,
    /// Test pairs.
    pub test: Vec<ArcExample>,
    /// Whether the JSON object lists `test` before `train` (the Kaggle files differ). The
    /// reference follows the file's key order: it decides the example order of puzzles whose
    /// test pairs are training data, and the key order in test_puzzles.json.
    pub test_first: bool,
}

impl ArcTask {
    /// Train and test pairs in the file's key order.
    pub fn all_examples(&self) -> impl Iterator<Item = &ArcExample> {
        let (a, b) = if self.test_first {
            (&self.test, &self.train)
        } else {
            (&self.train, &self.test)
        };
        a.iter().chain(b)
    }
}

/// One example as the JSON holds it (an `output` is optional: test inputs lack it).
#[derive(Deserialize)]
pub(super) struct RawExample {
    pub(super) input: Vec<Vec<i64>>,
    #[serde(default)]
    pub(super) output: Option<Vec<Vec<i64>>>,
}

/// One puzzle object as the JSON holds it, with its key order.
pub(super) struct RawTask {
    pub(super) train: Vec<RawExample>,
    pub(super) test: Vec<RawExample>,
    pub(super) test_first: bool,
}

impl<'de> Deserialize<'de> for RawTask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TaskVisitor;
        impl<'de> Visitor<'de> for TaskVisitor {
            type Value = RawTask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a puzzle object with \"train\" and \"test\" lists")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTask, A::Error> {
                let (mut train, mut test, mut test_first) = (None, None, false);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "train" => train = Some(map.next_value()?),
                        "test" => {
                            test_first = train.is_none();
                            test = Some(map.next_value()?);
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawTask {
                    train: train.ok_or_else(|| serde::de::Error::missing_field("train"))?,
                    test: test.ok_or_else(|| serde::de::Error::missing_field("test"))?,
                    test_first,
                })
            }
        }
        d.deserialize_map(TaskVisitor)
    }
}

/// A JSON object read as a list of (key, value) in file order (Python's `json.load` keeps it;
/// the order decides the shuffle's result).
pub(super) struct Ordered<V>(pub(super) Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object keyed by puzzle id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

/// Reads and parses a JSON file.
pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ArcError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| ArcError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The challenges file of a subset: `<prefix>_<subset>_challenges.json`.
pub fn challenges_path(prefix: &str, subset: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}_{subset}_challenges.json"))
}

/// The solutions file of a subset: `<prefix>_<subset>_solutions.json`.
pub fn solutions_path(prefix: &str, subset: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}_{subset}_solutions.json"))
}

/// Loads and validates one subset's tasks in file order, with test outputs from the solutions
/// file (or the dummy `[[0]]` when there is none, as the reference).
pub fn load_subset(prefix: &str, subset: &str) -> Result<Vec<ArcTask>, ArcError> {
    let ch_path = challenges_path(prefix, subset);
    let sol_path = solutions_path(prefix, subset);
    let raw: Ordered<RawTask> = read_json(&ch_path)?;
    let sols: Option<HashMap<String, Vec<Vec<Vec<i64>>>>> = if sol_path.is_file() {
        Some(read_json(&sol_path)?)
    } else {
        None
    };
    let grid = |path: &Path, id: &str, field: String, rows: &[Vec<i64>]| {
        Grid::from_rows(rows).map_err(|msg| ArcError::Puzzle {
            path: path.to_path_buf(),
            puzzle: id.to_string(),
            field,
            msg,
        })
    };
    let mut tasks = Vec::with_capacity(raw.0.len());
    for (id, task) in raw.0 {
        let mut train = Vec::with_capacity(task.train.len());
        for (i, ex) in task.train.iter().enumerate() {
            let input = grid(&ch_path, &id, format!("train[{i}].input"), &ex.input)?;
            let Some(out) = &ex.output else {
                return Err(ArcError::Puzzle {
                    path: ch_path,
                    puzzle: id,
                    field: format!("train[{i}].output"),
                    msg: "missing".into(),
                });
            };
            let output = grid(&ch_path, &id, format!("train[{i}].output"), out)?;
            train.push(ArcExample { input, output });
        }
        let sol = match &sols {
            Some(s) => Some(s.get(&id).ok_or_else(|| ArcError::Puzzle {
                path: sol_path.clone(),
                puzzle: id.clone(),
                field: "solutions".into(),
                msg: "puzzle has no entry in the solutions file".into(),
            })?),
            None => None,
        };
        if let Some(sol) = sol
            && sol.len() != task.test.len()
        {
            return Err(ArcError::Puzzle {
                path: sol_path,
                puzzle: id,
                field: "solutions".into(),
                msg: format!(
                    "{} solution grids for {} test inputs",
                    sol.len(),
                    task.test.len()
                ),
            });
        }
        let mut test = Vec::with_capacity(task.test.len());
        for (i, ex) in task.test.iter().enumerate() {
            let input = grid(&ch_path, &id, format!("test[{i}].input"), &ex.input)?;
            let output = match (sol, &ex.output) {
                (Some(sol), _) => grid(&sol_path, &id, format!("test[{i}].output"), &sol[i])?,
                (None, Some(out)) => grid(&ch_path, &id, format!("test[{i}].output"), out)?,
                (None, None) => Grid {
                    rows: 1,
                    cols: 1,
                    cells: vec![0],
                },
            };
            test.push(ArcExample { input, output });
        }
        tasks.push(ArcTask {
            id,
            train,
            test,
            test_first: task.test_first,
        });
    }
    Ok(tasks)
}
