//! TensorBoard event files, written by hand (no protobuf or TensorFlow dependency).
//!
//! A file `events.out.tfevents.<seconds>.<host>` is a sequence of TFRecords:
//! `u64 length (LE)`, `u32 masked CRC-32C of those 8 bytes`, `data`, `u32 masked CRC-32C of
//! data`. Each record's data is a serialized `tensorflow.Event` protobuf; the first carries
//! `file_version = "brain.Event:2"`, the others `wall_time`, `step` and a `Summary` with
//! `Value { tag, simple_value }` entries. Field numbers (tensorflow/core/util/event.proto and
//! framework/summary.proto): Event.wall_time 1 (double), Event.step 2 (int64),
//! Event.file_version 3 (string), Event.summary 5 (message); Summary.value 1 (message);
//! Value.tag 1 (string), Value.simple_value 2 (float).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::crc32c::masked_crc32c;
use super::jsonl::now;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn key(field: u32, wire: u8) -> u64 {
    (u64::from(field) << 3) | u64::from(wire)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, key(field, LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An `Event` with `file_version` set.
pub fn encode_file_version_event(wall_time: f64, version: &str) -> Vec<u8> {
    let mut e = Vec::new();
    put_varint(&mut e, key(1, FIXED64));
    e.extend_from_slice(&wall_time.to_le_bytes());
    put_bytes(&mut e, 3, version.as_bytes());
    e
}

/// An `Event` holding one scalar summary value per `(tag, value)`.
pub fn encode_scalars_event(wall_time: f64, step: i64, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        put_bytes(&mut value, 1, tag.as_bytes());
        put_varint(&mut value, key(2, FIXED32));
        value.extend_from_slice(&v.to_le_bytes());
        put_bytes(&mut summary, 1, &value);
    }
    let mut e = Vec::new();
    put_varint(&mut e, key(1, FIXED64));
    e.extend_from_slice(&wall_time.to_le_bytes());
    put_varint(&mut e, key(2, VARINT));
    // int64 as a varint: two's complement, so negative steps take ten bytes.
    put_varint(&mut e, step as u64);
    put_bytes(&mut e, 5, &summary);
    e
}

/// One TFRecord around `data`.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn hostname() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

/// Reads a varint at `*i`; `None` past the end or over ten bytes.
fn get_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `step` of an `Event` (0 when absent, as protobuf reads it) and whether it carries a
/// `file_version`; `None` if the bytes are not a protobuf message.
fn event_step(data: &[u8]) -> Option<(i64, bool)> {
    let (mut i, mut step, mut version) = (0, 0i64, false);
    while i < data.len() {
        let k = get_varint(data, &mut i)?;
        match (k >> 3, (k & 7) as u8) {
            (2, VARINT) => step = get_varint(data, &mut i)? as i64,
            (_, VARINT) => {
                get_varint(data, &mut i)?;
            }
            (_, FIXED64) => i = i.checked_add(8)?,
            (_, FIXED32) => i = i.checked_add(4)?,
            (field, LEN) => {
                let n = usize::try_from(get_varint(data, &mut i)?).ok()?;
                version |= field == 3;
                i = i.checked_add(n)?;
            }
            _ => return None,
        }
    }
    (i == data.len()).then_some((step, version))
}

/// The events of an event file, as `(step, data)` (the file-version event left out), up to the
/// first record that is cut short or fails its CRC (what a crash mid-write leaves).
pub fn read_event_records(path: &Path) -> std::io::Result<Vec<(i64, Vec<u8>)>> {
    let bytes = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(header) = bytes.get(i..i + 12) {
        let len_bytes: [u8; 8] = header[..8].try_into().unwrap_or_default();
        let crc = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
        if masked_crc32c(&len_bytes) != crc {
            break;
        }
        let Ok(len) = usize::try_from(u64::from_le_bytes(len_bytes)) else {
            break;
        };
        let start = i + 12;
        let Some(end) = start.checked_add(len).filter(|e| e + 4 <= bytes.len()) else {
            break;
        };
        let data = &bytes[start..end];
        let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap_or_default());
        if masked_crc32c(data) != crc {
            break;
        }
        match event_step(data) {
            Some((_, true)) => {}
            Some((step, false)) => out.push((step, data.to_vec())),
            None => break,
        }
        i = end + 4;
    }
    Ok(out)
}

/// The TensorBoard event files directly in `logdir`, oldest first (by the seconds in their
/// names, then by name length and name, so that `<base>.10` follows `<base>.9`).
pub fn event_files(logdir: &Path) -> std::io::Result<Vec<PathBuf>> {
    const PREFIX: &str = "events.out.tfevents.";
    let entries = match std::fs::read_dir(logdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        let secs: u64 = rest
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        files.push((secs, name.len(), name, entry.path()));
    }
    files.sort();
    Ok(files.into_iter().map(|(.., p)| p).collect())
}

/// What [`EventWriter::resume`] did with the event files it found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsResumed {
    /// Event files read and replaced by the new one.
    pub files_replaced: usize,
    /// Events carried over into the new file.
    pub events_kept: usize,
    /// Events left out: of later steps, or repeated.
    pub events_dropped: usize,
}

/// Writes scalars to a new TensorBoard event file.
#[derive(Debug)]
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `<logdir>/events.out.tfevents.<seconds>.<host>` (a `.<n>` suffix is added if that
    /// name exists) and writes the file-version event.
    pub fn create(logdir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(logdir)?;
        let t = now();
        let base = format!("events.out.tfevents.{}.{}", t as u64, hostname());
        let mut path = logdir.join(&base);
        let mut n = 1;
        while path.exists() {
            path = logdir.join(format!("{base}.{n}"));
            n += 1;
        }
        let mut w = EventWriter {
            out: BufWriter::new(File::create_new(&path)?),
            path,
        };
        w.write_event(&encode_file_version_event(t, "brain.Event:2"))?;
        w.flush()?;
        Ok(w)
    }

    /// One event stream for a run that continues from step `keep_through` (`None`: a fresh
    /// start): a new event file holding the events of the files already in `logdir` up to that
    /// step (in order, exact repeats once), then what is logged next; the old files are removed
    /// once the new one is on disk. TensorBoard then reads each step once, where a resumed run
    /// would otherwise add a second file repeating the steps after its checkpoint. A crash
    /// in between leaves files whose union is still right (the next resume reads them all).
    pub fn resume(
        logdir: &Path,
        keep_through: Option<u64>,
    ) -> std::io::Result<(Self, EventsResumed)> {
        let old = event_files(logdir)?;
        let mut report = EventsResumed {
            files_replaced: old.len(),
            ..EventsResumed::default()
        };
        let mut seen = std::collections::HashSet::new();
        let mut kept = Vec::new();
        for path in &old {
            for (step, data) in read_event_records(path)? {
                let within =
                    keep_through.is_some_and(|s| u64::try_from(step).is_ok_and(|step| step <= s));
                if within && seen.insert(data.clone()) {
                    kept.push(data);
                } else {
                    report.events_dropped += 1;
                }
            }
        }
        report.events_kept = kept.len();
        let mut w = Self::create(logdir)?;
        for data in &kept {
            w.write_event(data)?;
        }
        w.out.flush()?;
        w.out.get_ref().sync_all()?;
        for path in old.iter().filter(|p| **p != w.path) {
            std::fs::remove_file(path)?;
        }
        Ok((w, report))
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &[u8]) -> std::io::Result<()> {
        self.out.write_all(&frame_record(event))
    }

    /// Logs one scalar.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: u64) -> std::io::Result<()> {
        self.add_scalars(step, &[(tag, value)])
    }

    /// Logs several scalars of one step in one event.
    pub fn add_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> std::io::Result<()> {
        let values: Vec<(&str, f32)> = scalars.iter().map(|(t, v)| (*t, *v as f32)).collect();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.write_event(&encode_scalars_event(now(), step, &values))
    }

    /// Flushes to the OS (TensorBoard reads what is flushed).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xAC, 0x02]);
        let mut v = Vec::new();
        put_varint(&mut v, u64::MAX);
        assert_eq!(v.len(), 10);
    }
}
