//! The float engine's weights: borrowed matrices read in place, converted to f32 one row at a
//! time ([`MatRef`]), and the checks that bind a model's tensors to them (`Weights::bind`).

use crate::config::Config;
use crate::engine::{EngineError, MAX_LAYERS};
use crate::float::kernels::{LANES, reduce_lanes};
use crate::tensor::{DType, LayerTensor, TensorId, TensorSource, TensorView};

/// A row-major `[rows, cols]` float matrix borrowed from a [`TensorView`] (f32, f16 or bf16,
/// little-endian). The engine never copies a whole matrix: it converts one row at a time into a
/// small f32 buffer ([`MatRef::row_into`]) or reads elements inline ([`MatRef::dot_row`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatRef<'a> {
    dtype: DType,
    rows: u32,
    cols: u32,
    data: &'a [u8],
}

impl<'a> MatRef<'a> {
    /// Wraps a float tensor; `None` unless the dtype is f32/f16/bf16 and the data length equals
    /// `rows * cols * dtype.size()`.
    pub fn new(view: &TensorView<'a>) -> Option<Self> {
        if !matches!(view.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return None;
        }
        let n = (view.shape.rows as usize).checked_mul(view.shape.cols as usize)?;
        if view.data.len() != n.checked_mul(view.dtype.size())? {
            return None;
        }
        Some(MatRef {
            dtype: view.dtype,
            rows: view.shape.rows,
            cols: view.shape.cols,
            data: view.data,
        })
    }

    /// A matrix with no data (0 x 0), the placeholder for absent optional tensors.
    pub const fn empty() -> Self {
        MatRef {
            dtype: DType::F32,
            rows: 0,
            cols: 0,
            data: &[],
        }
    }

    /// Number of rows.
    pub const fn rows(&self) -> usize {
        self.rows as usize
    }

    /// Number of columns (the contiguous axis).
    pub const fn cols(&self) -> usize {
        self.cols as usize
    }

    /// Element type.
    pub const fn dtype(&self) -> DType {
        self.dtype
    }

    /// The raw little-endian bytes of row `r` (empty when out of range).
    pub(crate) fn row_bytes(&self, r: usize) -> &'a [u8] {
        self.rows_bytes(r, 1)
    }

    /// The raw little-endian bytes of rows `first..first + count`, those that exist (rows are
    /// contiguous).
    pub(crate) fn rows_bytes(&self, first: usize, count: usize) -> &'a [u8] {
        let w = self.cols() * self.dtype.size();
        let end = first.saturating_add(count).min(self.rows());
        if first >= end {
            return &[];
        }
        self.data.get(first * w..end * w).unwrap_or(&[])
    }

    /// Converts row `r` into `out[..cols]` (an out-of-range row or short `out` converts what fits;
    /// the engine only asks for rows it validated).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let bytes = self.row_bytes(r);
        match self.dtype {
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            _ => {}
        }
    }

    /// Element `(r, c)` as f32 (0 when out of range).
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let s = self.dtype.size();
        let b = self.row_bytes(r);
        match (self.dtype, b.get(c * s..c * s + s)) {
            (DType::F32, Some(b)) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (DType::F16, Some(b)) => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            (DType::BF16, Some(b)) => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => 0.0,
        }
    }

    /// `dot(row r, a)` over `min(cols, a.len())` elements with exactly the summation order of
    /// [`crate::float::kernels::dot`] (so it equals `dot(converted row, a)` bit for bit), reading
    /// the weights inline: used for the small heads, where no row buffer is at hand.
    pub fn dot_row(&self, r: usize, a: &[f32]) -> f32 {
        let n = self.cols().min(a.len());
        let mut acc = [0.0f32; LANES];
        for (k, &x) in a[..n].iter().enumerate() {
            acc[k % LANES] += x * self.get(r, k);
        }
        reduce_lanes(acc)
    }
}

/// The weights of one block.
#[derive(Debug, Clone, Copy)]
pub(super) struct LayerWeights<'a> {
    /// qkv_proj (attention) or mlp_t gate_up.
    pub(super) mix_a: MatRef<'a>,
    /// o_proj (attention) or mlp_t down.
    pub(super) mix_b: MatRef<'a>,
    pub(super) gate_up: MatRef<'a>,
    pub(super) down: MatRef<'a>,
}

const EMPTY_LAYER: LayerWeights<'static> = LayerWeights {
    mix_a: MatRef::empty(),
    mix_b: MatRef::empty(),
    gate_up: MatRef::empty(),
    down: MatRef::empty(),
};

/// Every weight of a model, borrowed in place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Weights<'a> {
    pub(super) embed_tokens: MatRef<'a>,
    pub(super) embed_pos: MatRef<'a>,
    pub(super) puzzle_emb: MatRef<'a>,
    pub(super) h_init: MatRef<'a>,
    pub(super) l_init: MatRef<'a>,
    pub(super) lm_head: MatRef<'a>,
    pub(super) q_weight: MatRef<'a>,
    pub(super) q_bias: MatRef<'a>,
    pub(super) layers: [LayerWeights<'a>; MAX_LAYERS],
}

impl<'a> Weights<'a> {
    /// Binds and checks every tensor config `c` (already validated, at most [`MAX_LAYERS`]
    /// blocks) needs: presence, shape, float dtype and byte length.
    pub(super) fn bind<S: TensorSource<'a> + ?Sized>(
        c: &Config,
        weights: &S,
    ) -> Result<Self, EngineError> {
        let get = |id: TensorId| -> Result<MatRef<'a>, EngineError> {
            if id.present(c) {
                check_tensor(c, weights, id)
            } else {
                Ok(MatRef::empty())
            }
        };
        let mut w = Weights {
            embed_tokens: get(TensorId::EmbedTokens)?,
            embed_pos: get(TensorId::EmbedPos)?,
            puzzle_emb: get(TensorId::PuzzleEmb)?,
            h_init: get(TensorId::HInit)?,
            l_init: get(TensorId::LInit)?,
            lm_head: get(TensorId::LmHead)?,
            q_weight: get(TensorId::QHeadWeight)?,
            q_bias: get(TensorId::QHeadBias)?,
            layers: [EMPTY_LAYER; MAX_LAYERS],
        };
        for (i, lw) in w.layers.iter_mut().enumerate().take(c.l_layers as usize) {
            let id = |tensor| TensorId::Layer {
                layer: i as u8,
                tensor,
            };
            let (a, b) = if c.mlp_t {
                (LayerTensor::MlpTGateUp, LayerTensor::MlpTDown)
            } else {
                (LayerTensor::QkvProj, LayerTensor::OProj)
            };
            *lw = LayerWeights {
                mix_a: get(id(a))?,
                mix_b: get(id(b))?,
                gate_up: get(id(LayerTensor::MlpGateUp))?,
                down: get(id(LayerTensor::MlpDown))?,
            };
        }
        Ok(w)
    }
}

fn check_tensor<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    id: TensorId,
) -> Result<MatRef<'a>, EngineError> {
    let view = src.tensor(id).ok_or(EngineError::MissingTensor(id))?;
    if !matches!(view.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(EngineError::BadDType {
            tensor: id,
            dtype: view.dtype,
        });
    }
    let expected = id.shape(c);
    if view.shape.rows != expected.rows || view.shape.cols != expected.cols {
        return Err(EngineError::BadShape {
            tensor: id,
            expected,
            got: view.shape,
        });
    }
    MatRef::new(&view).ok_or(EngineError::BadData(id))
}
