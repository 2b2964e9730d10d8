//! Training logs: metrics as JSON lines, TensorBoard event files, learning-curve PNGs and a
//! progress bar.
//!
//! - [`jsonl`]: one JSON object per training step or evaluation ([`MetricsLog`]);
//! - [`tensorboard`]: `events.out.tfevents.*` files written by hand ([`EventWriter`]);
//! - [`plot`]: learning curves drawn at the end of a run ([`plot_curves`]);
//! - [`progress`]: a progress bar with ETA, loss, accuracy and examples/s ([`Progress`]);
//! - [`crc32c`]: the CRC-32C of TFRecord framing and checkpoint manifests.
//!
//! [`RunLogger`] ties the first two together for the training loop.

pub mod crc32c;
pub mod jsonl;
pub mod plot;
pub mod progress;
pub mod tensorboard;

pub use jsonl::{MetricsLog, Record, read_jsonl, truncate_after};
pub use plot::plot_curves;
pub use progress::Progress;
pub use tensorboard::{EventWriter, EventsResumed};

use std::path::{Path, PathBuf};

/// The JSONL file name a [`RunLogger`] writes.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// What [`RunLogger::resume`] dropped from the logs already in the run folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsResumed {
    /// Lines of `metrics.jsonl` dropped.
    pub metrics_lines_dropped: usize,
    /// What happened to the TensorBoard event files.
    pub events: EventsResumed,
}

impl LogsResumed {
    /// Whether anything was dropped or merged (worth a note).
    pub fn changed_anything(&self) -> bool {
        self.metrics_lines_dropped > 0
            || self.events.events_dropped > 0
            || self.events.files_replaced > 1
    }
}

impl std::fmt::Display for LogsResumed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} line(s) of {METRICS_FILE} and {} TensorBoard event(s) logged after the \
             step resumed from; {} event file(s) merged into one",
            self.metrics_lines_dropped, self.events.events_dropped, self.events.files_replaced
        )
    }
}

/// Writes every record to `<dir>/metrics.jsonl` and to a TensorBoard event file in `<dir>`.
#[derive(Debug)]
pub struct RunLogger {
    jsonl: MetricsLog,
    events: EventWriter,
    dir: PathBuf,
}

impl RunLogger {
    /// Opens the logs of a run in `dir` (created if needed; `metrics.jsonl` is appended to, so a
    /// resumed run continues it).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(RunLogger {
            jsonl: MetricsLog::append(&dir.join(METRICS_FILE))?,
            events: EventWriter::create(dir)?,
            dir: dir.to_path_buf(),
        })
    }

    /// Opens the logs of a run in `dir` that continues from its checkpoint at step
    /// `resumed_step` (`None`: a fresh start, from step 0): `metrics.jsonl` loses the records of
    /// later steps ([`truncate_after`]; they are logged again) and the event files become one
    /// stream holding the steps up to `resumed_step` ([`EventWriter::resume`]), so that a run
    /// resumed after a crash logs every step once. Returns what was dropped, for a note.
    pub fn resume(dir: &Path, resumed_step: Option<u64>) -> std::io::Result<(Self, LogsResumed)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(METRICS_FILE);
        let metrics_lines_dropped = truncate_after(&path, resumed_step)?;
        let (events, ev) = EventWriter::resume(dir, resumed_step)?;
        let logger = RunLogger {
            jsonl: MetricsLog::append(&path)?,
            events,
            dir: dir.to_path_buf(),
        };
        Ok((
            logger,
            LogsResumed {
                metrics_lines_dropped,
                events: ev,
            },
        ))
    }

    /// Logs `metrics` of `kind` (`"train"`, `"eval"`) at `step`. TensorBoard tags are
    /// `<kind>/<name>` unless the name already has a `/`.
    pub fn log(&mut self, kind: &str, step: u64, metrics: &[(&str, f64)]) -> std::io::Result<()> {
        let record = Record::now(kind, step, metrics);
        self.jsonl.write(&record)?;
        let tagged: Vec<(String, f64)> = metrics
            .iter()
            .map(|(n, v)| {
                let tag = if n.contains('/') {
                    (*n).to_string()
                } else {
                    format!("{kind}/{n}")
                };
                (tag, *v)
            })
            .collect();
        let refs: Vec<(&str, f64)> = tagged.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        self.events.add_scalars(step, &refs)
    }

    /// Flushes both files to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.jsonl.flush()?;
        self.events.flush()
    }

    /// Flushes, then draws the learning curves of `metrics.jsonl` into `<dir>/plots/`.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, plot::PlotError> {
        self.flush().map_err(plot::PlotError::Io)?;
        let records = read_jsonl(&self.dir.join(METRICS_FILE)).map_err(plot::PlotError::Io)?;
        plot_curves(&records, &self.dir.join("plots"))
    }
}
