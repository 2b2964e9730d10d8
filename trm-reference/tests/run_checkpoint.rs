//! Our trainer's checkpoint folders with a manifest: the import verifies every listed file's
//! size and CRC-32C before reading anything (the trainer's loader runs the same
//! `run_checkpoint::verify_checkpoint`), refuses a corrupt one naming the file, and records the
//! weights file's digest.

mod common;

use std::path::{Path, PathBuf};

use common::reference_fixtures;
use serde_json::json;
use trm_reference::checkpoint::{ImportOptions, import_reference};
use trm_reference::run_checkpoint::{
    MAX_MANIFEST_BYTES, META_FILE, MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, crc32c, file_digest,
    read_manifest, verify_checkpoint,
};
use trm_reference::torch::{TorchDType, load_torch_file};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trm-ref-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The manifest trm-train writes for the files of `dir` (format documented in
/// `trm_reference::run_checkpoint`).
fn write_manifest(dir: &Path, step: u64, files: &[&str]) {
    let mut list = serde_json::Map::new();
    for f in files {
        let (bytes, crc) = file_digest(&dir.join(f)).unwrap();
        list.insert(f.to_string(), json!({ "bytes": bytes, "crc32c": crc }));
    }
    let meta = json!({
        "format": "trm-train-checkpoint",
        "version": 1,
        "step": step,
        "files": list,
        "extra": {},
    });
    std::fs::write(dir.join(META_FILE), meta.to_string()).unwrap();
}

/// The reference fixture's weights as a trm-train checkpoint folder `run/step_<step>` with
/// every file the manifest must list (optimizer and RNG states as small placeholder files:
/// only their digests matter here).
fn write_run_checkpoint(run: &Path, step: u64) -> PathBuf {
    let fixture = reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let dir = run.join(format!("step_{step}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tensors = load_torch_file(&fixture.join("step_0")).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype, TorchDType::F32);
            let short = name
                .trim_start_matches("_orig_mod.")
                .trim_start_matches("model.");
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                t.shape.clone(),
                &t.data,
            )
            .unwrap();
            (short.to_string(), view)
        })
        .collect();
    std::fs::write(
        dir.join(MODEL_FILE),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::copy(fixture.join("all_config.yaml"), dir.join("all_config.yaml")).unwrap();
    std::fs::write(dir.join(OPTIMIZER_FILE), b"optimizer states").unwrap();
    std::fs::write(dir.join(RNG_FILE), b"rng states").unwrap();
    write_manifest(
        &dir,
        step,
        &[MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, "all_config.yaml"],
    );
    dir
}

fn import_err(path: &Path) -> String {
    format!(
        "{:#}",
        import_reference(path, &ImportOptions::default()).unwrap_err()
    )
}

#[test]
fn a_verified_checkpoint_imports_and_records_its_digest() {
    let run = temp_dir("verified");
    let dir = write_run_checkpoint(&run, 7);
    let m = import_reference(&run, &ImportOptions::default()).unwrap();
    assert_eq!(m.checkpoint, dir.join(MODEL_FILE));
    let bytes = std::fs::read(dir.join(MODEL_FILE)).unwrap();
    assert_eq!(m.digest.bytes, bytes.len() as u64);
    assert_eq!(m.digest.crc32c, crc32c(&bytes));
    assert_eq!(m.digest.manifest_step, Some(7));
    // A reference checkpoint (no manifest): the digest of the file, no step.
    let fixture = reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let r = import_reference(&fixture, &ImportOptions::default()).unwrap();
    let bytes = std::fs::read(fixture.join("step_0")).unwrap();
    assert_eq!(r.digest.crc32c, crc32c(&bytes));
    assert_eq!(r.digest.manifest_step, None);
    std::fs::remove_dir_all(&run).unwrap();
}

#[test]
fn a_flipped_bit_in_any_listed_file_is_refused_naming_the_file() {
    let run = temp_dir("flipped");
    let dir = write_run_checkpoint(&run, 3);
    for name in [MODEL_FILE, "all_config.yaml", OPTIMIZER_FILE, RNG_FILE] {
        let path = dir.join(name);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let err = import_err(&run);
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        assert!(err.contains("CRC-32C"), "{name}: {err}");
        // Truncated: the size check names it.
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        let err = import_err(&dir);
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        assert!(err.contains("truncated"), "{name}: {err}");
        std::fs::write(&path, &good).unwrap();
    }
    import_reference(&run, &ImportOptions::default()).unwrap();
    std::fs::remove_dir_all(&run).unwrap();
}

#[test]
fn manifests_that_are_not_the_trainers_are_refused() {
    let run = temp_dir("manifests");
    let dir = write_run_checkpoint(&run, 1);
    let meta = dir.join(META_FILE);
    let good = std::fs::read_to_string(&meta).unwrap();
    let all = [MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, "all_config.yaml"];
    // A required file not listed.
    write_manifest(&dir, 1, &all[..3]);
    let err = import_err(&run);
    assert!(err.contains("does not list all_config.yaml"), "{err}");
    // Names that leave the folder, and other shapes.
    for (text, want) in [
        (
            good.replace("\"rng.safetensors\"", "\"../rng.safetensors\""),
            "bad entry for ../rng.safetensors",
        ),
        (
            good.replace("\"rng.safetensors\"", "\".\""),
            "bad entry for .",
        ),
        (
            good.replace("trm-train-checkpoint", "something-else"),
            "not a trm-train checkpoint manifest",
        ),
        (
            good.replace("\"version\":1", "\"version\":2"),
            "manifest version 2",
        ),
        ("{".to_string(), "EOF"),
        (
            " ".repeat(MAX_MANIFEST_BYTES as usize + 1),
            "not a manifest",
        ),
    ] {
        std::fs::write(&meta, &text).unwrap();
        let err = import_err(&run);
        assert!(err.contains(want), "want `{want}` in: {err}");
        assert!(err.contains(META_FILE), "{err}");
        assert!(read_manifest(&dir).is_err());
    }
    std::fs::write(&meta, &good).unwrap();
    let m = verify_checkpoint(&dir).unwrap();
    assert_eq!(m.step, 1);
    assert_eq!(m.files.len(), 4);
    std::fs::remove_dir_all(&run).unwrap();
}
