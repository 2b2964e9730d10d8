//! Helpers shared by the float engine's integration tests: fixture loading and comparisons.
#![allow(dead_code)]

use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use trm_nostd::{DType, Shape, TensorView};

/// A safetensors file held in memory.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn load(path: &str) -> Fixture {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        Fixture { bytes }
    }

    pub fn committed(name: &str) -> Fixture {
        Self::load(&format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
    }

    pub fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors")
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        let (_, m) = SafeTensors::read_metadata(&self.bytes).expect("valid safetensors");
        m.metadata().clone().unwrap_or_default()
    }

    pub fn names(&self) -> Vec<String> {
        self.st().names().into_iter().map(str::to_string).collect()
    }

    /// An f32 tensor's values and shape.
    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = self.st();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (v, t.shape().to_vec())
    }

    pub fn vals(&self, name: &str) -> Vec<f32> {
        self.f32(name).0
    }

    /// Raw bytes, dtype and shape (for weights stored as f16/bf16/f32).
    pub fn raw(&self, name: &str) -> (DType, Vec<usize>, Vec<u8>) {
        let st = self.st();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dtype = match t.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::U8 => DType::I8,
            Dtype::I32 => DType::I32,
            d => panic!("{name}: unexpected dtype {d:?}"),
        };
        (dtype, t.shape().to_vec(), t.data().to_vec())
    }
}

/// A `TensorView` of a rank-1 or rank-2 tensor's raw bytes.
pub fn view<'a>(dtype: DType, shape: &[usize], data: &'a [u8]) -> TensorView<'a> {
    let shape = match shape {
        [n] => Shape::vector(*n),
        [r, c] => Shape::matrix(*r, *c),
        s => panic!("rank {} not supported", s.len()),
    };
    TensorView { dtype, shape, data }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// max |a - b| / max |b| (b: the expected values).
pub fn rel_err(got: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(got.len(), expected.len(), "length mismatch");
    let max_abs = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_diff = got
        .iter()
        .zip(expected)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(got.iter().all(|v| v.is_finite()), "non-finite output");
    max_diff / max_abs.max(f32::MIN_POSITIVE)
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], tol: f32) {
    let e = rel_err(got, expected);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}
