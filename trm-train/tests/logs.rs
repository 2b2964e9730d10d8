//! Training logs: TensorBoard event files parsed back (framing, CRCs, protobuf), JSONL records,
//! learning-curve PNGs and the progress bar.

use std::path::Path;

use trm_train::logs::{EventWriter, MetricsLog, Progress, Record, RunLogger, read_jsonl};

/// CRC-32C bit by bit (independent of the library's table-driven one).
fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// The masked CRC, written as the TFRecord format describes it.
#[allow(clippy::manual_rotate)]
fn masked(data: &[u8]) -> u32 {
    let c = crc32c_bitwise(data);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

/// Splits a TFRecord file into its records, checking both CRCs of each.
fn read_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let header = bytes.get(i..i + 12).ok_or("short header")?;
        let len_bytes = &header[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| "len")?) as usize;
        let len_crc = u32::from_le_bytes(header[8..12].try_into().map_err(|_| "crc")?);
        if len_crc != masked(len_bytes) {
            return Err(format!("bad length CRC at {i}"));
        }
        let data = bytes.get(i + 12..i + 12 + len).ok_or("short data")?;
        let crc_bytes = bytes
            .get(i + 12 + len..i + 16 + len)
            .ok_or("short data CRC")?;
        let data_crc = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| "crc")?);
        if data_crc != masked(data) {
            return Err(format!("bad data CRC at {i}"));
        }
        out.push(data.to_vec());
        i += 16 + len;
    }
    Ok(out)
}

/// A protobuf field: number and value.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(Vec<u8>),
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("varint runs off")?;
        *i += 1;
        v |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field)>, String> {
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(b, &mut i)?),
            1 => {
                let s = b.get(i..i + 8).ok_or("fixed64")?;
                i += 8;
                Field::Fixed64(s.try_into().map_err(|_| "fixed64")?)
            }
            5 => {
                let s = b.get(i..i + 4).ok_or("fixed32")?;
                i += 4;
                Field::Fixed32(s.try_into().map_err(|_| "fixed32")?)
            }
            2 => {
                let n = varint(b, &mut i)? as usize;
                let s = b.get(i..i + n).ok_or("bytes")?;
                i += n;
                Field::Bytes(s.to_vec())
            }
            w => return Err(format!("wire type {w}")),
        };
        out.push((num, f));
    }
    Ok(out)
}

/// An Event decoded: wall_time, step, file_version, scalar values.
#[derive(Debug, Default)]
struct Event {
    wall_time: f64,
    step: i64,
    file_version: Option<String>,
    scalars: Vec<(String, f32)>,
}

fn decode_event(b: &[u8]) -> Result<Event, String> {
    let mut e = Event::default();
    for (num, f) in fields(b)? {
        match (num, f) {
            (1, Field::Fixed64(v)) => e.wall_time = f64::from_le_bytes(v),
            (2, Field::Varint(v)) => e.step = v as i64,
            (3, Field::Bytes(s)) => {
                e.file_version = Some(String::from_utf8(s).map_err(|x| x.to_string())?)
            }
            (5, Field::Bytes(summary)) => {
                for (n, value) in fields(&summary)? {
                    let (1, Field::Bytes(value)) = (n, value) else {
                        return Err("Summary field".into());
                    };
                    let mut tag = None;
                    let mut simple = None;
                    for (vn, vf) in fields(&value)? {
                        match (vn, vf) {
                            (1, Field::Bytes(t)) => {
                                tag = Some(String::from_utf8(t).map_err(|x| x.to_string())?)
                            }
                            (2, Field::Fixed32(v)) => simple = Some(f32::from_le_bytes(v)),
                            other => return Err(format!("Value field {other:?}")),
                        }
                    }
                    e.scalars
                        .push((tag.ok_or("no tag")?, simple.ok_or("no simple_value")?));
                }
            }
            other => return Err(format!("Event field {other:?}")),
        }
    }
    Ok(e)
}

fn event_file(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn crc32c_matches_the_bitwise_definition() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    for n in [0, 1, 9, 100, 1000] {
        assert_eq!(
            trm_train::logs::crc32c::crc32c(&data[..n]),
            crc32c_bitwise(&data[..n])
        );
    }
    assert_eq!(crc32c_bitwise(b"123456789"), 0xE306_9283);
}

#[test]
fn event_files_parse_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut w = EventWriter::create(dir.path()).expect("create");
    let logged: Vec<(u64, Vec<(&str, f64)>)> = vec![
        (1, vec![("train/lm_loss", 2.5), ("train/accuracy", 0.125)]),
        (2, vec![("train/lm_loss", 2.25)]),
        (300, vec![("eval/exact_accuracy", 0.75), ("train/lr", 1e-4)]),
        (1 << 40, vec![("big/step", -3.0)]),
    ];
    for (step, scalars) in &logged {
        w.add_scalars(*step, scalars).expect("write");
    }
    w.add_scalar("single", 42.0, 7).expect("write");
    w.flush().expect("flush");
    let path = event_file(dir.path());
    assert_eq!(path, w.path());

    let bytes = std::fs::read(&path).expect("read");
    let records = read_records(&bytes).expect("framing");
    assert_eq!(records.len(), 1 + logged.len() + 1);
    let first = decode_event(&records[0]).expect("event 0");
    assert_eq!(first.file_version.as_deref(), Some("brain.Event:2"));
    assert!(first.wall_time >= t0 - 1.0 && first.wall_time < t0 + 60.0);
    for ((step, scalars), rec) in logged.iter().zip(&records[1..]) {
        let e = decode_event(rec).expect("event");
        assert_eq!(e.step, *step as i64);
        assert!(e.wall_time >= first.wall_time);
        let want: Vec<(String, f32)> = scalars
            .iter()
            .map(|(t, v)| ((*t).to_string(), *v as f32))
            .collect();
        assert_eq!(e.scalars, want);
    }
    let last = decode_event(&records[records.len() - 1]).expect("last");
    assert_eq!(
        (last.step, last.scalars.clone()),
        (7, vec![("single".to_string(), 42.0)])
    );

    // The reader does check CRCs: a flipped data byte is caught.
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 6] ^= 1;
    assert!(read_records(&bad).is_err());
}

#[test]
fn jsonl_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.jsonl");
    let a = Record::now("train", 3, &[("lm_loss", 1.5), ("accuracy", 0.25)]);
    let b = Record::now(
        "eval",
        10,
        &[("exact_accuracy", f64::NAN), ("q_halt_loss", 0.5)],
    );
    {
        let mut log = MetricsLog::create(&path).expect("create");
        log.write(&a).expect("a");
        log.write(&b).expect("b");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(v.is_object());
    }
    assert!(text.contains("\"exact_accuracy\":null"), "{text}");
    let back = read_jsonl(&path).expect("read_jsonl");
    assert_eq!(back.len(), 2);
    let sorted = |r: &Record| {
        let mut m = r.metrics.clone();
        m.sort_by(|x, y| x.0.cmp(&y.0));
        m
    };
    assert_eq!((back[0].kind.as_str(), back[0].step), ("train", 3));
    assert_eq!(sorted(&back[0]), sorted(&a));
    assert_eq!(
        sorted(&back[1]),
        vec![
            ("exact_accuracy".to_string(), None),
            ("q_halt_loss".to_string(), Some(0.5)),
        ]
    );
    assert_eq!(back[1].wall_time, b.wall_time);

    // Appending continues the file; a line cut short at the end (crash) is skipped.
    {
        let mut log = MetricsLog::append(&path).expect("append");
        log.write(&a).expect("a again");
    }
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"kind\": \"tr");
    std::fs::write(&path, &text).expect("write");
    assert_eq!(read_jsonl(&path).expect("read").len(), 3);
    // Garbage in the middle is an error.
    std::fs::write(&path, format!("oops\n{text}")).expect("write");
    assert!(read_jsonl(&path).is_err());
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).expect("png");
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    let h = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
    (w, h)
}

#[test]
fn run_logger_writes_jsonl_events_and_plots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RunLogger::create(dir.path()).expect("logger");
    for step in 1..=20u64 {
        let loss = 3.0 / step as f64;
        log.log(
            "train",
            step,
            &[("lm_loss", loss), ("accuracy", 1.0 - loss / 3.0)],
        )
        .expect("train");
        if step % 5 == 0 {
            log.log(
                "eval",
                step,
                &[("lm_loss", loss * 1.1), ("all/exact_accuracy", 0.1)],
            )
            .expect("eval");
        }
    }
    log.flush().expect("flush");
    // TensorBoard tags: kind/name unless the name has a `/` already.
    let records =
        read_records(&std::fs::read(event_file(dir.path())).expect("read")).expect("framing");
    let tags: std::collections::BTreeSet<String> = records[1..]
        .iter()
        .flat_map(|r| decode_event(r).expect("event").scalars)
        .map(|(t, _)| t)
        .collect();
    let want: std::collections::BTreeSet<String> = [
        "train/lm_loss",
        "train/accuracy",
        "eval/lm_loss",
        "all/exact_accuracy",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(tags, want);

    let plots = log.finish().expect("plots");
    let mut names: Vec<String> = plots
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["accuracy.png", "all_exact_accuracy.png", "lm_loss.png"]
    );
    for p in &plots {
        assert_eq!(png_size(p), (800, 500));
    }
    let jsonl = read_jsonl(&dir.path().join(trm_train::logs::METRICS_FILE)).expect("jsonl");
    assert_eq!(jsonl.len(), 24);
}

/// `(kind, step)` of every line of a metrics file.
fn jsonl_steps(dir: &Path) -> Vec<(String, u64)> {
    read_jsonl(&dir.join(trm_train::logs::METRICS_FILE))
        .expect("jsonl")
        .into_iter()
        .map(|r| (r.kind, r.step))
        .collect()
}

/// `(step, first tag)` of every scalar event of the one event file in `dir`, after checking
/// that it starts with the file-version event.
fn event_steps(dir: &Path) -> Vec<(i64, String)> {
    let records = read_records(&std::fs::read(event_file(dir)).expect("read")).expect("framing");
    let first = decode_event(&records[0]).expect("event 0");
    assert_eq!(first.file_version.as_deref(), Some("brain.Event:2"));
    records[1..]
        .iter()
        .map(|r| {
            let e = decode_event(r).expect("event");
            (e.step, e.scalars[0].0.clone())
        })
        .collect()
}

/// Logs train steps `steps` (and an eval every 5th) as the loop does.
fn log_steps(log: &mut RunLogger, steps: std::ops::RangeInclusive<u64>, value: f64) {
    for step in steps {
        log.log("train", step, &[("lm_loss", value)])
            .expect("train");
        if step % 5 == 0 {
            log.log("eval", step, &[("all/exact_accuracy", value)])
                .expect("eval");
        }
    }
}

#[test]
fn resuming_drops_what_was_logged_after_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A run that logged steps 1..=8 and was killed after its checkpoint at step 5: its last
    // metrics line and its last event cut short.
    {
        let mut log = RunLogger::create(dir.path()).expect("logger");
        log_steps(&mut log, 1..=8, 1.0);
        log.flush().expect("flush");
    }
    let metrics = dir.path().join(trm_train::logs::METRICS_FILE);
    let mut text = std::fs::read(&metrics).expect("read");
    text.extend_from_slice(b"{\"kind\": \"train\", \"st");
    std::fs::write(&metrics, text).expect("torn line");
    let events = event_file(dir.path());
    let mut bytes = std::fs::read(&events).expect("read");
    let whole = bytes.len();
    bytes.extend_from_within(whole - 30..);
    std::fs::write(&events, bytes).expect("torn event");

    // Resumed from step 5: steps 6..=8 are logged again, each once in each file.
    let (mut log, resumed) = RunLogger::resume(dir.path(), Some(5)).expect("resume");
    assert_eq!(resumed.metrics_lines_dropped, 3 + 1, "{resumed:?}");
    assert_eq!(resumed.events.events_dropped, 3, "{resumed:?}");
    assert_eq!(resumed.events.files_replaced, 1);
    assert!(resumed.changed_anything());
    log_steps(&mut log, 6..=10, 2.0);
    log.flush().expect("flush");
    let mut want = Vec::new();
    for step in 1..=10u64 {
        want.push(("train".to_string(), step));
        if step % 5 == 0 {
            want.push(("eval".to_string(), step));
        }
    }
    assert_eq!(jsonl_steps(dir.path()), want);
    let tags: Vec<(i64, String)> = want
        .iter()
        .map(|(kind, step)| {
            let tag = if kind == "train" {
                "train/lm_loss"
            } else {
                "all/exact_accuracy"
            };
            (*step as i64, tag.to_string())
        })
        .collect();
    assert_eq!(event_steps(dir.path()), tags);
    // The values after step 5 are the resumed run's.
    let after: Vec<f64> = read_jsonl(&metrics)
        .expect("jsonl")
        .into_iter()
        .filter(|r| r.step > 5)
        .map(|r| r.metrics[0].1.expect("finite"))
        .collect();
    assert!(after.iter().all(|v| *v == 2.0), "{after:?}");
    drop(log);

    // Nothing to drop: the files are kept as they are (one event stream still).
    let before = std::fs::read(&metrics).expect("read");
    let (log, resumed) = RunLogger::resume(dir.path(), Some(10)).expect("resume");
    drop(log);
    assert!(!resumed.changed_anything(), "{resumed:?}");
    assert_eq!(std::fs::read(&metrics).expect("read"), before);
    assert_eq!(event_steps(dir.path()), tags);

    // A fresh start in the same folder: no earlier record survives.
    let (log, resumed) = RunLogger::resume(dir.path(), None).expect("fresh");
    drop(log);
    assert_eq!(resumed.metrics_lines_dropped, want.len());
    assert_eq!(jsonl_steps(dir.path()), Vec::new());
    assert_eq!(event_steps(dir.path()), Vec::new());
}

#[test]
fn progress_bar_is_quiet_off_a_terminal_and_measures_rate() {
    let start = std::time::Instant::now();
    let mut p = Progress::new(100, 10, true);
    assert!(!p.is_visible());
    p.update(11, 500, 1.0, 0.5);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    p.update(12, 500, 0.9, 0.6);
    let elapsed = start.elapsed().as_secs_f64();
    let rate = p.examples_per_second();
    // 1000 examples over the window, which lies within [1.1 s, elapsed].
    assert!(
        rate <= 1000.0 / 1.1 + 1e-9 && rate >= 1000.0 / elapsed - 1e-9,
        "{rate}"
    );
    p.println("a line");
    p.finish();
}
