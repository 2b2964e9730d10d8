//! Host conveniences (feature `std`): an owned, in-memory [`TensorSource`] for tests, benches and
//! tools in other crates.

use crate::config::Config;
use crate::tensor::{DType, Shape, TensorId, TensorSource, TensorView};
use std::collections::HashMap;
use std::string::{String, ToString};
use std::vec::Vec;

/// Tensors held in memory, keyed by [`TensorId`]; stores raw little-endian bytes of any dtype.
#[derive(Debug, Clone, Default)]
pub struct OwnedWeights {
    map: HashMap<TensorId, (DType, Shape, Vec<u8>)>,
}

/// A name that matches no tensor of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "no tensor of this config is named {:?}", self.0)
    }
}

impl std::error::Error for NameError {}

/// Prefix of state_dict names saved from a compiled reference model.
const COMPILED_PREFIX: &str = "_orig_mod.model.";

impl OwnedWeights {
    /// No tensors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) a tensor from raw little-endian bytes.
    pub fn insert_raw(&mut self, id: TensorId, dtype: DType, shape: Shape, bytes: Vec<u8>) {
        self.map.insert(id, (dtype, shape, bytes));
    }

    /// Inserts f32 values stored as `dtype` (f32, f16 or bf16, rounded to nearest even).
    /// Integer dtypes store nothing and return `false`.
    pub fn insert_f32_as(
        &mut self,
        id: TensorId,
        shape: Shape,
        values: &[f32],
        dtype: DType,
    ) -> bool {
        let bytes: Vec<u8> = match dtype {
            DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => return false,
        };
        self.insert_raw(id, dtype, shape, bytes);
        true
    }

    /// Inserts f32 values.
    pub fn insert_f32(&mut self, id: TensorId, shape: Shape, values: &[f32]) {
        self.insert_f32_as(id, shape, values, DType::F32);
    }

    /// The tensor id of a reference state_dict name (with or without the `_orig_mod.model.`
    /// prefix) in a model of this config.
    pub fn id_of(config: &Config, name: &str) -> Option<TensorId> {
        let name = name.strip_prefix(COMPILED_PREFIX).unwrap_or(name);
        TensorId::all(config).find(|id| id.to_string() == name)
    }

    /// Inserts a tensor by reference name; the shape is the one the config gives the tensor
    /// (the engine checks `values.len()` against it).
    pub fn insert_named_f32(
        &mut self,
        config: &Config,
        name: &str,
        values: &[f32],
    ) -> Result<TensorId, NameError> {
        let id = Self::id_of(config, name).ok_or_else(|| NameError(name.to_string()))?;
        self.insert_f32(id, id.shape(config), values);
        Ok(id)
    }

    /// Builds the weights from named f32 arrays (reference names); names of tensors the config
    /// does not use are an error, so typos cannot go unnoticed.
    pub fn from_named_f32<'n, I>(config: &Config, tensors: I) -> Result<Self, NameError>
    where
        I: IntoIterator<Item = (&'n str, &'n [f32])>,
    {
        let mut w = Self::new();
        for (name, values) in tensors {
            w.insert_named_f32(config, name, values)?;
        }
        Ok(w)
    }

    /// Random weights for every tensor of the config, stored as `dtype`, from a seeded xorshift
    /// generator: uniform in `±sqrt(3 / cols)` (unit-variance rows after the product), H_init
    /// and L_init uniform in `±1.7`, q_head bias `-5` like the reference initialisation. For
    /// benches and shape tests; not a trained model.
    pub fn random(config: &Config, seed: u64, dtype: DType) -> Self {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 24 random bits in [-1, 1)
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        };
        let mut w = Self::new();
        for id in TensorId::all(config) {
            let shape = id.shape(config);
            let amp = match id {
                TensorId::HInit | TensorId::LInit => 1.7,
                _ => libm::sqrtf(3.0 / shape.cols.max(1) as f32),
            };
            let values: Vec<f32> = match id {
                TensorId::QHeadBias => vec![-5.0; shape.numel()],
                _ => (0..shape.numel()).map(|_| amp * next()).collect(),
            };
            w.insert_f32_as(id, shape, &values, dtype);
        }
        w
    }

    /// Removes a tensor (for tests of missing tensors).
    pub fn remove(&mut self, id: TensorId) -> bool {
        self.map.remove(&id).is_some()
    }

    /// A [`TensorSource`] borrowing these weights.
    pub fn source(&self) -> OwnedSource<'_> {
        OwnedSource(self)
    }
}

/// [`OwnedWeights`] as a [`TensorSource`]: views live as long as the borrow.
#[derive(Debug, Clone, Copy)]
pub struct OwnedSource<'a>(pub &'a OwnedWeights);

impl<'a> TensorSource<'a> for OwnedSource<'a> {
    fn tensor(&self, id: TensorId) -> Option<TensorView<'a>> {
        let (dtype, shape, data) = self.0.map.get(&id)?;
        Some(TensorView {
            dtype: *dtype,
            shape: *shape,
            data,
        })
    }
}
