//! Shared helpers of trm-reference's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use trm_reference::torch::{Tensor, TorchDType};

/// `trm-reference/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

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
