//! Metrics as JSON lines: one object per training step or evaluation,
//! `{"kind": "train", "step": 10, "wall_time": 1712345678.9, "lm_loss": 1.23, ...}`.
//! Non-finite values are written as `null` (JSON has no NaN).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde_json::{Map, Value};

/// Keys of a line that are not metrics.
const RESERVED: [&str; 3] = ["kind", "step", "wall_time"];

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `"train"`, `"eval"`, or another series name.
    pub kind: String,
    /// Optimizer step.
    pub step: u64,
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// Metric values (`None`: not finite); in the order given when written, by name when read.
    pub metrics: Vec<(String, Option<f64>)>,
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Record {
    /// A record stamped with the current time.
    pub fn now(kind: &str, step: u64, metrics: &[(&str, f64)]) -> Self {
        Record {
            kind: kind.to_string(),
            step,
            wall_time: now(),
            metrics: metrics
                .iter()
                .map(|(n, v)| ((*n).to_string(), v.is_finite().then_some(*v)))
                .collect(),
        }
    }

    /// The JSON object of the record.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), Value::from(self.kind.clone()));
        m.insert("step".into(), Value::from(self.step));
        m.insert("wall_time".into(), Value::from(self.wall_time));
        for (n, v) in &self.metrics {
            if RESERVED.contains(&n.as_str()) {
                continue;
            }
            m.insert(n.clone(), v.map_or(Value::Null, Value::from));
        }
        Value::Object(m)
    }

    /// Parses one line; `None` if it is not a record.
    pub fn from_json(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        let mut metrics = Vec::new();
        for (k, val) in o {
            if RESERVED.contains(&k.as_str()) {
                continue;
            }
            match val {
                Value::Null => metrics.push((k.clone(), None)),
                Value::Number(n) => metrics.push((k.clone(), n.as_f64())),
                _ => {}
            }
        }
        Some(Record {
            kind: o.get("kind")?.as_str()?.to_string(),
            step: o.get("step")?.as_u64()?,
            wall_time: o.get("wall_time").and_then(Value::as_f64).unwrap_or(0.0),
            metrics,
        })
    }
}

/// A JSONL metrics file.
#[derive(Debug)]
pub struct MetricsLog {
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(MetricsLog {
            out: BufWriter::new(File::create(path)?),
        })
    }

    /// Opens `path` for appending (created if missing).
    pub fn append(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsLog {
            out: BufWriter::new(f),
        })
    }

    /// Writes one line.
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, &record.to_json())?;
        self.out.write_all(b"\n")
    }

    /// Flushes to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Drop for MetricsLog {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// Prepares the metrics file `path` for a run that continues from step `keep_through`
/// (`None`: a fresh start): the lines of records of later steps are dropped (a run resumed from
/// its checkpoint at step S logs every step after S again; for a fresh start, every record),
/// and so is a last line cut short by a crash; other lines are kept as they are. The file is
/// rewritten (a temporary file renamed over it) only when a line is dropped. Returns the number
/// of lines dropped (0 for a missing file).
pub fn truncate_after(path: &Path, keep_through: Option<u64>) -> std::io::Result<usize> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut kept = Vec::with_capacity(bytes.len());
    let mut dropped = 0;
    let mut pieces = bytes.split(|&b| b == b'\n').peekable();
    while let Some(line) = pieces.next() {
        let last = pieces.peek().is_none();
        if last && line.is_empty() {
            break;
        }
        let record = std::str::from_utf8(line)
            .ok()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| Record::from_json(&v));
        let keep = match (record, keep_through) {
            (Some(r), Some(s)) => r.step <= s,
            (Some(_), None) => false,
            // Not a record: a line cut short by a crash (the last one) goes; any other line is
            // not ours to judge, unless the run starts afresh.
            (None, Some(_)) => !last && !line.is_empty(),
            (None, None) => false,
        };
        if keep {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        } else if !line.is_empty() {
            dropped += 1;
        }
    }
    if kept.len() != bytes.len() {
        let name = path
            .file_name()
            .map_or_else(|| "metrics".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&kept)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
    }
    Ok(dropped)
}

/// Reads every record of a JSONL file. A last line cut short by a crash is skipped; any other
/// unreadable line is an error naming its line number.
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<Record>> {
    let lines: Vec<String> = BufReader::new(File::open(path)?)
        .lines()
        .collect::<Result<_, _>>()?;
    let n = lines.len();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| Record::from_json(&v));
        match parsed {
            Some(r) => out.push(r),
            None if i + 1 == n => {}
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: line {} is not a metrics record", path.display(), i + 1),
                ));
            }
        }
    }
    Ok(out)
}
