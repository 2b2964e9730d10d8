//! Shared helpers of trm-export's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use trm_reference::run_checkpoint::{EMA_FILE, META_FILE, OPTIMIZER_FILE, RNG_FILE, file_digest};
use trm_reference::torch::{TorchDType, load_torch_file};

/// The reference fixtures: `reference-fixtures/` of the shared folder
/// ([`trm_data::layout::shared_dir`]: `$TRM_SHARED`, else `../shared` beside the repository).
/// Panics (failing the test) when absent: these tests need it.
pub fn reference_fixtures() -> PathBuf {
    let dir = trm_data::layout::shared_dir().join("reference-fixtures");
    assert!(
        dir.join("README.md").is_file(),
        "reference fixtures not found at {}: set TRM_SHARED to the shared folder (the one \
         holding data/ and reference-fixtures/; by default ../shared beside the repository)",
        dir.display()
    );
    dir
}

pub mod tiny;

fn st_dtype(d: TorchDType) -> safetensors::Dtype {
    match d {
        TorchDType::F32 => safetensors::Dtype::F32,
        TorchDType::BF16 => safetensors::Dtype::BF16,
        TorchDType::F16 => safetensors::Dtype::F16,
        other => panic!("unexpected dtype {other:?}"),
    }
}

/// Writes the fixture's weights as one of our checkpoint folders under `run/step_<step>/`.
pub fn write_our_checkpoint(fixture: &Path, run: &Path, step: u64) {
    let dir = run.join(format!("step_{step}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tensors = load_torch_file(&fixture.join("step_0")).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            // Our trainer saves reference names without the `_orig_mod.model.` prefix.
            let short = name
                .trim_start_matches("_orig_mod.")
                .trim_start_matches("model.");
            let view =
                safetensors::tensor::TensorView::new(st_dtype(t.dtype), t.shape.clone(), &t.data)
                    .unwrap();
            (short.to_string(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    std::fs::copy(fixture.join("all_config.yaml"), dir.join("all_config.yaml")).unwrap();
}

/// Adds the EMA weights file to `run/step_<step>` (from [`write_our_checkpoint`], f32): every
/// value of `model.safetensors` halved, so that the two files differ everywhere but in zeros.
/// [`write_manifest`] then lists it, as trm-train's manifest does with EMA on.
pub fn write_ema(run: &Path, step: u64) {
    let dir = run.join(format!("step_{step}"));
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let halved: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
            let data = v
                .data()
                .chunks_exact(4)
                .flat_map(|b| (0.5 * f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes())
                .collect();
            (name, v.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = halved
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join(EMA_FILE), out).unwrap();
}

/// Completes `run/step_<step>` (from [`write_our_checkpoint`], and [`write_ema`] when EMA is
/// on) into a finished trm-train checkpoint: placeholder optimizer and RNG files, and the
/// manifest trm-train writes (format in `trm_reference::run_checkpoint`) with every file's size
/// and CRC-32C.
pub fn write_manifest(run: &Path, step: u64) {
    let dir = run.join(format!("step_{step}"));
    std::fs::write(dir.join(OPTIMIZER_FILE), b"optimizer states").unwrap();
    std::fs::write(dir.join(RNG_FILE), b"rng states").unwrap();
    let mut files = serde_json::Map::new();
    let ema = dir.join(EMA_FILE).is_file().then_some(EMA_FILE);
    for f in [
        "model.safetensors",
        OPTIMIZER_FILE,
        RNG_FILE,
        "all_config.yaml",
    ]
    .into_iter()
    .chain(ema)
    {
        let (bytes, crc) = file_digest(&dir.join(f)).unwrap();
        files.insert(
            f.to_string(),
            serde_json::json!({ "bytes": bytes, "crc32c": crc }),
        );
    }
    let meta = serde_json::json!({
        "format": "trm-train-checkpoint",
        "version": 1,
        "step": step,
        "files": files,
        "extra": {},
    });
    std::fs::write(dir.join(META_FILE), meta.to_string()).unwrap();
}
