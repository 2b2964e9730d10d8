//! Shared helpers of trm-export's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use trm_export::torch_pickle::{Tensor, TorchDType, load_torch_file};

/// `trm-export/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The reference fixtures folder: `$TRM_REFERENCE_FIXTURES`, else `shared/reference-fixtures`
/// beside the repository. Panics (failing the test) when absent: these tests need it.
pub fn reference_fixtures() -> PathBuf {
    let dir = std::env::var_os("TRM_REFERENCE_FIXTURES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference-fixtures"),
        PathBuf::from,
    );
    assert!(
        dir.join("README.md").is_file(),
        "reference fixtures not found at {} (set TRM_REFERENCE_FIXTURES)",
        dir.display()
    );
    dir
}

/// The reference fixture names, as recorded by gen_pickle_checks.py.
pub const REFERENCE_FIXTURES: [&str; 3] = [
    "sudoku-att-d64-f32",
    "sudoku-mlp_t-d64-bf16",
    "sudoku-mlp_t-d64-f32",
];

/// `pickle_checks.json`, written by gen_pickle_checks.py from what torch.load returns.
pub fn checks() -> Value {
    let text = std::fs::read_to_string(fixtures().join("pickle_checks.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every element widened to f64 (exact for every dtype the fixtures use).
pub fn values_f64(t: &Tensor) -> Vec<f64> {
    let s = t.dtype.size();
    t.data
        .chunks_exact(s)
        .map(|b| match t.dtype {
            TorchDType::F64 => f64::from_le_bytes(b.try_into().unwrap()),
            TorchDType::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
            TorchDType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
            TorchDType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f64(),
            TorchDType::I64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
            TorchDType::I32 => i32::from_le_bytes(b.try_into().unwrap()) as f64,
            TorchDType::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            TorchDType::I8 => b[0] as i8 as f64,
            TorchDType::U8 | TorchDType::Bool => b[0] as f64,
            other => panic!("unexpected dtype {other}"),
        })
        .collect()
}

/// The JSON number array as f64.
pub fn json_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The JSON shape array.
pub fn json_shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
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
