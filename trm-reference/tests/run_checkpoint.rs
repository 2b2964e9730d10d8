//! Our trainer's checkpoint folders with a manifest: the import verifies every listed file's
//! size and CRC-32C before reading anything (the trainer's loader runs the same
//! `run_checkpoint::verify_checkpoint`), refuses a corrupt one naming the file, and records the
//! weights file's digest.

mod common;

use std::path::{Path, PathBuf};

use common::reference_fixtures;
use serde_json::json;
use trm_nostd::format::WeightsKind;
use trm_reference::checkpoint::{ImportOptions, WeightsChoice, import_reference};
use trm_reference::run_checkpoint::{
    EMA_FILE, MAX_MANIFEST_BYTES, META_FILE, MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, crc32c,
    file_digest, read_manifest, verify_checkpoint,
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

/// Adds `ema.safetensors` to the checkpoint `dir` (from [`write_run_checkpoint`]): the model's
/// tensors halved, so that an import tells the two apart; the manifest lists it.
fn add_ema(dir: &Path, step: u64) {
    let bytes = std::fs::read(dir.join(MODEL_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let halved: Vec<(String, Vec<f32>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|b| 0.5 * f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, values, v.shape().to_vec())
        })
        .collect();
    let raw: Vec<Vec<u8>> = halved
        .iter()
        .map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = halved
        .iter()
        .zip(&raw)
        .map(|((name, _, shape), data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(
        dir.join(EMA_FILE),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    write_manifest(
        dir,
        step,
        &[
            MODEL_FILE,
            EMA_FILE,
            OPTIMIZER_FILE,
            RNG_FILE,
            "all_config.yaml",
        ],
    );
}

fn with_weights(weights: WeightsChoice) -> ImportOptions {
    ImportOptions {
        weights,
        ..Default::default()
    }
}

#[test]
fn the_ema_weights_are_read_by_default_when_the_checkpoint_has_them() {
    let run = temp_dir("ema");
    let dir = write_run_checkpoint(&run, 4);
    // Without EMA: the trained weights, whatever the choice but `Ema`, which is an error.
    let raw = import_reference(&run, &ImportOptions::default()).unwrap();
    assert_eq!(raw.checkpoint, dir.join(MODEL_FILE));
    assert_eq!(raw.weights, Some(WeightsKind::Raw));
    let e = format!(
        "{:#}",
        import_reference(&run, &with_weights(WeightsChoice::Ema)).unwrap_err()
    );
    assert!(e.contains("has no EMA weights"), "{e}");
    assert!(e.contains(EMA_FILE), "{e}");
    // With EMA: the average by default (run folder or step folder), the trained weights on
    // request; the tensors are those of the file read.
    add_ema(&dir, 4);
    for path in [&run, &dir] {
        let ema = import_reference(path, &ImportOptions::default()).unwrap();
        assert_eq!(ema.checkpoint, dir.join(EMA_FILE));
        assert_eq!(ema.weights, Some(WeightsKind::Ema));
        let bytes = std::fs::read(dir.join(EMA_FILE)).unwrap();
        assert_eq!(ema.digest.crc32c, crc32c(&bytes));
        for ((ia, a), (ib, b)) in ema.tensors.iter().zip(&raw.tensors) {
            assert_eq!(ia, ib);
            let halved: Vec<f32> = b.iter().map(|x| 0.5 * x).collect();
            assert_eq!(a, &halved, "{ia}");
        }
        let explicit = import_reference(path, &with_weights(WeightsChoice::Ema)).unwrap();
        assert_eq!(explicit.checkpoint, dir.join(EMA_FILE));
        let r = import_reference(path, &with_weights(WeightsChoice::Raw)).unwrap();
        assert_eq!(r.checkpoint, dir.join(MODEL_FILE));
        assert_eq!(r.weights, Some(WeightsKind::Raw));
        assert_eq!(r.tensors, raw.tensors);
    }
    // A file given directly is read as given; a choice it contradicts is an error.
    let m = import_reference(&dir.join(MODEL_FILE), &ImportOptions::default()).unwrap();
    assert_eq!(m.weights, Some(WeightsKind::Raw));
    let e = format!(
        "{:#}",
        import_reference(&dir.join(MODEL_FILE), &with_weights(WeightsChoice::Ema)).unwrap_err()
    );
    assert!(e.contains("holds the trained (raw) weights"), "{e}");
    let e = format!(
        "{:#}",
        import_reference(&dir.join(EMA_FILE), &with_weights(WeightsChoice::Raw)).unwrap_err()
    );
    assert!(e.contains("holds the EMA weights"), "{e}");
    // An EMA file the manifest does not list is refused, as any unlisted file.
    write_manifest(
        &dir,
        4,
        &[MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, "all_config.yaml"],
    );
    let e = import_err(&run);
    assert!(e.contains("is not listed"), "{e}");
    std::fs::remove_dir_all(&run).unwrap();
}

#[test]
fn a_reference_checkpoint_holds_what_its_run_saved() {
    let fixture = reference_fixtures().join("sudoku-mlp_t-d64-f32");
    // The fixture's run had `ema: false`: the trained weights.
    let m = import_reference(&fixture, &ImportOptions::default()).unwrap();
    assert_eq!(m.weights, Some(WeightsKind::Raw));
    let e = format!(
        "{:#}",
        import_reference(&fixture, &with_weights(WeightsChoice::Ema)).unwrap_err()
    );
    assert!(e.contains("a run without EMA"), "{e}");
    // The same file from a run with `ema: true`: the reference saved the average.
    let dir = temp_dir("ref-ema");
    std::fs::copy(fixture.join("step_0"), dir.join("step_0")).unwrap();
    let config = std::fs::read_to_string(fixture.join("all_config.yaml")).unwrap();
    assert!(config.contains("\nema: false\n"));
    std::fs::write(
        dir.join("all_config.yaml"),
        config.replace("\nema: false\n", "\nema: true\n"),
    )
    .unwrap();
    let m = import_reference(&dir, &ImportOptions::default()).unwrap();
    assert_eq!(m.weights, Some(WeightsKind::Ema));
    assert!(import_reference(&dir, &with_weights(WeightsChoice::Ema)).is_ok());
    let e = format!(
        "{:#}",
        import_reference(&dir, &with_weights(WeightsChoice::Raw)).unwrap_err()
    );
    assert!(e.contains("saves only the EMA weights"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
