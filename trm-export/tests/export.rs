//! `trm-export export`: every format from one checkpoint, each file identical to what the
//! library's separate steps give (import, then calibrate + quantize for `fixed`) plus the
//! source record naming the checkpoint file, with both output namings and the default
//! calibration split of the checkpoint's `data_paths`; our checkpoints verified against their
//! manifest first; the EMA weights exported by default when the checkpoint has them (`--weights
//! ema|raw` to choose), the record saying which; all requested files written or none.

mod common;

use std::path::Path;

use common::{tiny, write_ema, write_manifest, write_our_checkpoint};
use trm_export::export::reference_to_trm;
use trm_export::puzzles::read_dataset_split;
use trm_nostd::format::{ModelWriter, NumericScheme, SourceRecord, WeightsKind};
use trm_nostd::{DType, Model, TensorId, TensorSource};
use trm_reference::run_checkpoint::crc32c;

/// The source record of the file at `path`, named `name`, holding weights of `kind`.
fn record_of<'a>(name: &'a str, path: &Path, kind: Option<WeightsKind>) -> SourceRecord<'a> {
    let bytes = std::fs::read(path).unwrap();
    SourceRecord {
        weights: name,
        bytes: bytes.len() as u64,
        crc32c: crc32c(&bytes),
        kind,
    }
}

/// The entries of `dir` whose name starts with `.trm-export-` (temporary folders).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".trm-export-"))
        .collect()
}

#[test]
fn export_writes_every_format_from_our_checkpoint() {
    let fixture = common::reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let dir = tiny::temp_dir("export");
    let run = dir.join("run");
    write_our_checkpoint(&fixture, &run, 3);
    write_manifest(&run, 3);
    let rec = record_of(
        "step_3/model.safetensors",
        &run.join("step_3/model.safetensors"),
        Some(WeightsKind::Raw),
    );
    let rows = tiny::puzzles(1, 40, 7);
    let csv = dir.join("calib.csv");
    tiny::write_csv(&csv, &rows);
    let prefix = dir.join("m");
    let o = tiny::cli(&[
        "export",
        run.to_str().unwrap(),
        "-o",
        prefix.to_str().unwrap(),
        "--dtype",
        "f32,f16",
        "--dtype",
        "bf16,fixed",
        "--calib-puzzles",
        csv.to_str().unwrap(),
        "--calib",
        "1",
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let f32_bytes = reference_to_trm(&fixture, DType::F32).unwrap();
    let with = |d: DType| tiny::float_with_source(&reference_to_trm(&fixture, d).unwrap(), &rec);
    assert!(read("m-f32.trm") == with(DType::F32));
    assert!(read("m-f16.trm") == with(DType::F16));
    assert!(read("m-bf16.trm") == with(DType::BF16));
    assert!(read("m-fixed.trm") == tiny::fixed_model_with_source(&f32_bytes, &rows, &rec));
    // The record names the checkpoint file; inspect shows it.
    let m = read("m-fixed.trm");
    assert_eq!(Model::parse(&m).unwrap().source(), Some(rec));
    let inspected = tiny::cli(&["inspect", dir.join("m-fixed.trm").to_str().unwrap()]);
    assert!(
        tiny::text(&inspected).contains(&format!(
            "source: step_3/model.safetensors ({} bytes, CRC-32C {:08x})",
            rec.bytes, rec.crc32c
        )),
        "{}",
        tiny::text(&inspected)
    );
    for f in ["f32", "f16", "bf16", "fixed"] {
        assert!(
            tiny::text(&o).contains(&format!("m-{f}.trm")),
            "{}",
            tiny::text(&o)
        );
    }

    // Without calibration puzzles (our run folder has no dataset beside it): a clear error,
    // and nothing written.
    let o = tiny::cli(&[
        "export",
        run.to_str().unwrap(),
        "-o",
        dir.join("n").to_str().unwrap(),
        "--formats",
        "f32,fixed",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", tiny::text(&o));
    assert!(
        tiny::text(&o).contains("--calib-dataset"),
        "{}",
        tiny::text(&o)
    );
    assert!(!dir.join("n-f32.trm").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_to_a_folder_calibrates_on_the_checkpoint_training_split() {
    // The reference fixture folder: all_config.yaml's data_paths point at its data/ folder.
    let fixture = common::reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let dir = tiny::temp_dir("export-dir");
    let out = format!("{}/models/", dir.display());
    let o = tiny::cli(&[
        "export",
        fixture.to_str().unwrap(),
        "-o",
        &out,
        "--dtype",
        "fixed",
        "--calib",
        "1",
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    assert!(tiny::text(&o).contains("train"), "{}", tiny::text(&o));
    let got = std::fs::read(dir.join("models/model-fixed.trm")).unwrap();
    let rows = read_dataset_split(&fixture.join("data/train"), 1)
        .unwrap()
        .1;
    let f32_bytes = reference_to_trm(&fixture, DType::F32).unwrap();
    // The fixture's run had EMA off: its checkpoint holds the trained weights.
    let rec = record_of(
        "sudoku-mlp_t-d64-f32/step_0",
        &fixture.join("step_0"),
        Some(WeightsKind::Raw),
    );
    assert!(got == tiny::fixed_model_with_source(&f32_bytes, &rows, &rec));

    // A float .trm is a valid source too (without a record of its own, the file itself is
    // recorded); a fixed one is refused.
    let f32_path = dir.join("f.trm");
    std::fs::write(&f32_path, &f32_bytes).unwrap();
    let name = format!("{}/f.trm", dir.file_name().unwrap().to_str().unwrap());
    let rec = record_of(&name, &f32_path, None);
    let o = tiny::cli(&[
        "export",
        f32_path.to_str().unwrap(),
        "-o",
        &out,
        "--dtype",
        "bf16",
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let bf16 = std::fs::read(dir.join("models/model-bf16.trm")).unwrap();
    let want = tiny::float_with_source(&reference_to_trm(&fixture, DType::BF16).unwrap(), &rec);
    assert!(bf16 == want);
    // From a .trm with a record, the record is kept.
    let o = tiny::cli(&[
        "export",
        dir.join("models/model-bf16.trm").to_str().unwrap(),
        "-o",
        dir.join("again").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let again = std::fs::read(dir.join("again-f32.trm")).unwrap();
    assert_eq!(Model::parse(&again).unwrap().source(), Some(rec));
    let o = tiny::cli(&[
        "export",
        dir.join("models/model-fixed.trm").to_str().unwrap(),
        "-o",
        &out,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", tiny::text(&o));
    assert!(
        tiny::text(&o).contains("fixed-point model"),
        "{}",
        tiny::text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_refuses_our_checkpoint_when_its_manifest_checksums_fail() {
    let fixture = common::reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let dir = tiny::temp_dir("export-crc");
    let run = dir.join("run");
    write_our_checkpoint(&fixture, &run, 5);
    write_manifest(&run, 5);
    let weights = run.join("step_5/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    for source in [run.clone(), run.join("step_5"), weights.clone()] {
        let o = tiny::cli(&[
            "export",
            source.to_str().unwrap(),
            "-o",
            dir.join("m").to_str().unwrap(),
        ]);
        let t = tiny::text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains(&weights.display().to_string()), "{t}");
        assert!(t.contains("CRC-32C"), "{t}");
        assert!(!dir.join("m-f32.trm").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_writes_every_requested_file_or_none() {
    let dir = tiny::temp_dir("export-atomic");
    let c = tiny::config();
    let float = dir.join("float.trm");
    std::fs::write(&float, tiny::float_model(&c, 3, 0.0)).unwrap();
    // An older set in the output folder.
    let out = dir.join("models");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("model-f32.trm"), b"old f32").unwrap();
    std::fs::write(out.join("model-fixed.trm"), b"old fixed").unwrap();
    // Calibration puzzles the fixed format cannot use (a question with a bad character): the
    // fixed file fails after the f32 one was built.
    let rows = tiny::puzzles(2, 30, 1);
    let mut bad = rows.clone();
    bad[1].question = format!("x{}", &bad[1].question[1..]);
    let csv = dir.join("bad.csv");
    tiny::write_csv(&csv, &bad);
    let args = |csv: &Path| {
        vec![
            "export".to_string(),
            float.to_str().unwrap().to_string(),
            "-o".to_string(),
            format!("{}/", out.display()),
            "--dtype".to_string(),
            "f32,bf16,fixed".to_string(),
            "--calib-puzzles".to_string(),
            csv.to_str().unwrap().to_string(),
        ]
    };
    let run = |a: Vec<String>| tiny::cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args(&csv));
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("no file was written"), "{t}");
    assert_eq!(
        std::fs::read(out.join("model-f32.trm")).unwrap(),
        b"old f32"
    );
    assert_eq!(
        std::fs::read(out.join("model-fixed.trm")).unwrap(),
        b"old fixed"
    );
    assert!(!out.join("model-bf16.trm").exists());
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    // With good puzzles the whole set replaces the old one, and nothing else is left.
    let good = dir.join("good.csv");
    tiny::write_csv(&good, &rows);
    let o = run(args(&good));
    assert!(o.status.success(), "{}", tiny::text(&o));
    for f in ["model-f32.trm", "model-bf16.trm", "model-fixed.trm"] {
        Model::parse(&std::fs::read(out.join(f)).unwrap()).unwrap();
    }
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The float `.trm` file `bytes` with every value halved (what [`write_ema`] does to a
/// checkpoint), stored as f32.
fn halved(bytes: &[u8]) -> Vec<u8> {
    let m = Model::parse(bytes).unwrap();
    let c = *m.config();
    let values: Vec<(TensorId, Vec<f32>)> = TensorId::all(&c)
        .map(|id| {
            let v = m.tensor(id).unwrap();
            let n = id.shape(&c).numel();
            (id, (0..n).map(|i| 0.5 * v.get_f32(i).unwrap()).collect())
        })
        .collect();
    let mut w = ModelWriter::new(c, NumericScheme::Float(DType::F32)).unwrap();
    for (id, v) in &values {
        w.add(*id, v).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn export_takes_the_ema_weights_by_default_and_records_which() {
    let fixture = common::reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let dir = tiny::temp_dir("export-ema");
    let run = dir.join("run");
    write_our_checkpoint(&fixture, &run, 3);
    write_ema(&run, 3);
    write_manifest(&run, 3);
    let ema_rec = record_of(
        "step_3/ema.safetensors",
        &run.join("step_3/ema.safetensors"),
        Some(WeightsKind::Ema),
    );
    let raw_rec = record_of(
        "step_3/model.safetensors",
        &run.join("step_3/model.safetensors"),
        Some(WeightsKind::Raw),
    );
    let raw_f32 = reference_to_trm(&fixture, DType::F32).unwrap();
    let ema_f32 = halved(&raw_f32);
    assert!(ema_f32 != raw_f32);
    let rows = tiny::puzzles(1, 40, 7);
    let csv = dir.join("calib.csv");
    tiny::write_csv(&csv, &rows);
    let export = |out: &str, extra: &[&str]| {
        let prefix = dir.join(out);
        let mut args = vec![
            "export",
            run.to_str().unwrap(),
            "-o",
            prefix.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tiny::cli(&args)
    };
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let inspect = |name: &str, json: bool| {
        let path = dir.join(name);
        let mut args = vec!["inspect", path.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let o = tiny::cli(&args);
        assert!(o.status.success(), "{}", tiny::text(&o));
        tiny::text(&o)
    };

    // Default, and `--weights ema`: the EMA weights, recorded as such (f32 and fixed).
    for (out, extra) in [("d", &[][..]), ("e", &["--weights", "ema"][..])] {
        let mut args = extra.to_vec();
        args.extend(["--dtype", "f32,fixed", "--calib-puzzles"]);
        args.push(csv.to_str().unwrap());
        args.extend(["--calib", "1"]);
        let o = export(out, &args);
        let t = tiny::text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("step_3/ema.safetensors"), "{t}");
        assert!(t.contains("weights: ema"), "{t}");
        let f32_file = read(&format!("{out}-f32.trm"));
        assert!(
            f32_file == tiny::float_with_source(&ema_f32, &ema_rec),
            "{out}"
        );
        let fixed = read(&format!("{out}-fixed.trm"));
        assert_eq!(Model::parse(&fixed).unwrap().source(), Some(ema_rec));
        assert!(fixed == tiny::fixed_model_with_source(&ema_f32, &rows, &ema_rec));
    }
    let t = inspect("d-f32.trm", false);
    assert!(
        t.contains(&format!(
            "source: step_3/ema.safetensors ({} bytes, CRC-32C {:08x}), weights: ema",
            ema_rec.bytes, ema_rec.crc32c
        )),
        "{t}"
    );
    let t = inspect("d-fixed.trm", true);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["source_weights"], "ema", "{t}");
    assert_eq!(v["source"]["weights"], "step_3/ema.safetensors", "{t}");

    // `--weights raw`: the trained weights.
    let o = export("r", &["--weights", "raw"]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    assert!(
        tiny::text(&o).contains("weights: raw"),
        "{}",
        tiny::text(&o)
    );
    let raw_file = read("r-f32.trm");
    assert!(raw_file == tiny::float_with_source(&raw_f32, &raw_rec));
    let t = inspect("r-f32.trm", false);
    assert!(
        t.contains("source: step_3/model.safetensors (") && t.contains("weights: raw"),
        "{t}"
    );
    let v: serde_json::Value = serde_json::from_str(&inspect("r-f32.trm", true)).unwrap();
    assert_eq!(v["source_weights"], "raw");

    // A float .trm keeps its record; `--weights` must agree with it.
    let o = tiny::cli(&[
        "export",
        dir.join("d-f32.trm").to_str().unwrap(),
        "-o",
        dir.join("again").to_str().unwrap(),
        "--dtype",
        "bf16",
        "--weights",
        "ema",
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let again = read("again-bf16.trm");
    assert_eq!(Model::parse(&again).unwrap().source(), Some(ema_rec));
    let o = tiny::cli(&[
        "export",
        dir.join("d-f32.trm").to_str().unwrap(),
        "-o",
        dir.join("wrong").to_str().unwrap(),
        "--weights",
        "raw",
    ]);
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("records ema weights"), "{t}");
    assert!(!dir.join("wrong-f32.trm").exists());

    // A run without EMA: `--weights ema` is an error naming the checkpoint, nothing written.
    let plain = dir.join("plain");
    write_our_checkpoint(&fixture, &plain, 1);
    write_manifest(&plain, 1);
    let o = tiny::cli(&[
        "export",
        plain.to_str().unwrap(),
        "-o",
        dir.join("p").to_str().unwrap(),
        "--weights",
        "ema",
    ]);
    let t = tiny::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("has no EMA weights"), "{t}");
    assert!(t.contains("step_1"), "{t}");
    assert!(!dir.join("p-f32.trm").exists());
    // Without `--weights` it exports the trained weights, recorded as raw.
    let o = tiny::cli(&[
        "export",
        plain.to_str().unwrap(),
        "-o",
        dir.join("p").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let plain_file = read("p-f32.trm");
    let rec = Model::parse(&plain_file).unwrap().source().unwrap();
    assert_eq!(rec.weights, "step_1/model.safetensors");
    assert_eq!(rec.kind, Some(WeightsKind::Raw));
    std::fs::remove_dir_all(&dir).unwrap();
}
