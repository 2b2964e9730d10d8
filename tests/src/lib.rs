//! Helpers shared by the cross-crate tests in `tests/tests/`.
//!
//! Shared material (`../shared` beside the workspace: reference fixtures and puzzle data) is found
//! through `$TRM_SHARED`, else `<workspace>/../shared`.
#![deny(missing_docs)]

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The shared folder (`$TRM_SHARED`, else `<workspace>/../shared`); an error says how to set it.
pub fn shared_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("TRM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"));
    if !dir.is_dir() {
        bail!(
            "shared material not found at {} (set TRM_SHARED to the folder holding reference-fixtures/ and data/)",
            dir.display()
        );
    }
    Ok(dir)
}

/// One folder of `reference-fixtures/`.
pub fn reference_fixture(name: &str) -> Result<PathBuf> {
    let dir = shared_dir()?.join("reference-fixtures").join(name);
    if !dir.is_dir() {
        bail!("reference fixture {} is missing", dir.display());
    }
    Ok(dir)
}

/// Reads a C-order `.npy` array of integers (u8 or i32, as the reference datasets store them).
pub fn read_npy_ints(path: &Path) -> Result<(Vec<u64>, Vec<i64>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let npy =
        npyz::NpyFile::new(&bytes[..]).with_context(|| format!("parsing {}", path.display()))?;
    let shape = npy.shape().to_vec();
    let values: Vec<i64> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1 => {
            npy.into_vec::<u8>()?.into_iter().map(i64::from).collect()
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int && t.size_field() == 4 => {
            npy.into_vec::<i32>()?.into_iter().map(i64::from).collect()
        }
        other => bail!("{}: unsupported dtype {other:?}", path.display()),
    };
    Ok((shape, values))
}

/// The f32 values of one tensor in a safetensors file's bytes.
pub fn safetensor_f32(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let t = st.tensor(name).with_context(|| format!("tensor {name}"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        bail!("tensor {name} is {:?}, expected F32", t.dtype());
    }
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((t.shape().to_vec(), v))
}

/// The i32 values of one tensor in a safetensors file's bytes.
pub fn safetensor_i32(bytes: &[u8], name: &str) -> Result<Vec<i32>> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let t = st.tensor(name).with_context(|| format!("tensor {name}"))?;
    if t.dtype() != safetensors::Dtype::I32 {
        bail!("tensor {name} is {:?}, expected I32", t.dtype());
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// `max |a - b| / max |b|`: the error relative to the scale of the expected values.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}
