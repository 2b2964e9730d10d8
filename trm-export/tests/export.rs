//! `trm-export export`: every format from one checkpoint, each file identical to what the
//! library's separate steps give (import, then calibrate + quantize for `fixed`), with both
//! output namings and the default calibration split of the checkpoint's `data_paths`.

mod common;

use common::{tiny, write_our_checkpoint};
use trm_export::puzzles::read_dataset_split;
use trm_export::reference::reference_to_trm;
use trm_nostd::DType;

#[test]
fn export_writes_every_format_from_our_checkpoint() {
    let fixture = common::reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let dir = tiny::temp_dir("export");
    let run = dir.join("run");
    write_our_checkpoint(&fixture, &run, 3);
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
    assert!(read("m-f32.trm") == f32_bytes);
    assert!(read("m-f16.trm") == reference_to_trm(&fixture, DType::F16).unwrap());
    assert!(read("m-bf16.trm") == reference_to_trm(&fixture, DType::BF16).unwrap());
    assert!(read("m-fixed.trm") == tiny::fixed_model(&f32_bytes, &rows));
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
    let rows = read_dataset_split(&fixture.join("data/train"), 1).unwrap();
    let f32_bytes = reference_to_trm(&fixture, DType::F32).unwrap();
    assert!(got == tiny::fixed_model(&f32_bytes, &rows));

    // A float .trm is a valid source too; a fixed one is refused.
    let f32_path = dir.join("f.trm");
    std::fs::write(&f32_path, &f32_bytes).unwrap();
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
    assert!(bf16 == reference_to_trm(&fixture, DType::BF16).unwrap());
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
