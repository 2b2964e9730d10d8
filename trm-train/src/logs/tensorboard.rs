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
