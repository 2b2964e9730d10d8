//! Names, shapes and element types of every tensor in a TRM model.
//!
//! [`TensorId`] is the one place where tensor names are built: its `Display` gives the reference
//! state_dict name (`inner.L_level.layers.0.mlp.gate_up_proj.weight`), so checkpoints from the
//! reference, from our trainer and `.trm` files all agree.

use crate::config::{Config, PosEncoding};
use core::fmt;
use serde::{Deserialize, Serialize};

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DType {
    /// IEEE binary32, little-endian.
    F32,
    /// IEEE binary16, little-endian.
    F16,
    /// bfloat16, little-endian.
    BF16,
    /// Signed 8-bit integer (quantized weights).
    I8,
    /// Signed 16-bit integer, little-endian (quantized tables).
    I16,
    /// Signed 32-bit integer, little-endian (multipliers, biases).
    I32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 => 1,
        }
    }
}

/// A tensor shape of rank 1 or 2 (`[n]` is stored as `[1, n]` with `rank == 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Rows (1 for a vector).
    pub rows: u32,
    /// Columns (the contiguous axis).
    pub cols: u32,
    /// 1 or 2.
    pub rank: u8,
}

impl Shape {
    /// A vector of `n` values.
    pub const fn vector(n: usize) -> Self {
        Shape {
            rows: 1,
            cols: n as u32,
            rank: 1,
        }
    }
    /// A row-major `[rows, cols]` matrix.
    pub const fn matrix(rows: usize, cols: usize) -> Self {
        Shape {
            rows: rows as u32,
            cols: cols as u32,
            rank: 2,
        }
    }
    /// Number of elements.
    pub const fn numel(&self) -> usize {
        self.rows as usize * self.cols as usize
    }
}

/// The weights of one block (`inner.L_level.layers.{i}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerTensor {
    /// `self_attn.qkv_proj.weight` `[3 D, D]` (q heads, then k heads, then v heads).
    QkvProj,
    /// `self_attn.o_proj.weight` `[D, D]`.
    OProj,
    /// `mlp_t.gate_up_proj.weight` `[2 inter_t, L]` (gate rows, then up rows).
    MlpTGateUp,
    /// `mlp_t.down_proj.weight` `[L, inter_t]`.
    MlpTDown,
    /// `mlp.gate_up_proj.weight` `[2 inter, D]`.
    MlpGateUp,
    /// `mlp.down_proj.weight` `[D, inter]`.
    MlpDown,
}

/// Every tensor a TRM model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorId {
    /// `inner.embed_tokens.embedding_weight` `[vocab, D]`.
    EmbedTokens,
    /// `inner.embed_pos.embedding_weight` `[L, D]` (learned positions only).
    EmbedPos,
    /// `inner.puzzle_emb.weights` `[num_puzzle_identifiers, puzzle_emb_ndim]` (if ndim > 0).
    PuzzleEmb,
    /// `inner.H_init` `[D]`: the initial y ("z_H").
    HInit,
    /// `inner.L_init` `[D]`: the initial z ("z_L").
    LInit,
    /// `inner.lm_head.weight` `[vocab, D]`.
    LmHead,
    /// `inner.q_head.weight` `[2, D]` (row 0: halt, row 1: continue).
    QHeadWeight,
    /// `inner.q_head.bias` `[2]`.
    QHeadBias,
    /// A block weight.
    Layer {
        /// Block index, `0..l_layers`.
        layer: u8,
        /// Which weight.
        tensor: LayerTensor,
    },
}

impl TensorId {
    /// All tensors of a model with this config, in file order.
    pub fn all(config: &Config) -> impl Iterator<Item = TensorId> + '_ {
        let globals = [
            TensorId::EmbedTokens,
            TensorId::EmbedPos,
            TensorId::PuzzleEmb,
            TensorId::HInit,
            TensorId::LInit,
            TensorId::LmHead,
            TensorId::QHeadWeight,
            TensorId::QHeadBias,
        ];
        let layer_kinds: &'static [LayerTensor] = if config.mlp_t {
            &[
                LayerTensor::MlpTGateUp,
                LayerTensor::MlpTDown,
                LayerTensor::MlpGateUp,
                LayerTensor::MlpDown,
            ]
        } else {
            &[
                LayerTensor::QkvProj,
                LayerTensor::OProj,
                LayerTensor::MlpGateUp,
                LayerTensor::MlpDown,
            ]
        };
        let layers = (0..config.l_layers.min(u8::MAX as u32 + 1) as usize).flat_map(move |l| {
            layer_kinds.iter().map(move |&tensor| TensorId::Layer {
                layer: l as u8,
                tensor,
            })
        });
        globals
            .into_iter()
            .filter(move |t| t.present(config))
            .chain(layers)
    }

    /// Whether a model with this config has this tensor.
    pub fn present(&self, config: &Config) -> bool {
        match self {
            TensorId::EmbedPos => config.pos_encodings == PosEncoding::Learned,
            TensorId::PuzzleEmb => config.puzzle_emb_ndim > 0,
            TensorId::Layer { layer, tensor } => {
                (*layer as u32) < config.l_layers
                    && match tensor {
                        LayerTensor::QkvProj | LayerTensor::OProj => !config.mlp_t,
                        LayerTensor::MlpTGateUp | LayerTensor::MlpTDown => config.mlp_t,
                        LayerTensor::MlpGateUp | LayerTensor::MlpDown => true,
                    }
            }
            _ => true,
        }
    }

    /// Whether the reference trains it with its main optimizer (H_init/L_init are buffers; the
    /// puzzle embedding is trained by its own sign-SGD but counts as a parameter of the model).
    pub fn is_trained(&self) -> bool {
        !matches!(self, TensorId::HInit | TensorId::LInit)
    }

    /// The shape a model with this config must give this tensor.
    pub fn shape(&self, c: &Config) -> Shape {
        let d = c.d();
        let l = c.seq_total();
        let v = c.vocab_size as usize;
        match self {
            TensorId::EmbedTokens | TensorId::LmHead => Shape::matrix(v, d),
            TensorId::EmbedPos => Shape::matrix(l, d),
            TensorId::PuzzleEmb => Shape::matrix(
                c.num_puzzle_identifiers as usize,
                c.puzzle_emb_ndim as usize,
            ),
            TensorId::HInit | TensorId::LInit => Shape::vector(d),
            TensorId::QHeadWeight => Shape::matrix(2, d),
            TensorId::QHeadBias => Shape::vector(2),
            TensorId::Layer { tensor, .. } => match tensor {
                LayerTensor::QkvProj => Shape::matrix(3 * d, d),
                LayerTensor::OProj => Shape::matrix(d, d),
                LayerTensor::MlpTGateUp => Shape::matrix(2 * c.mlp_t_inter(), l),
                LayerTensor::MlpTDown => Shape::matrix(l, c.mlp_t_inter()),
                LayerTensor::MlpGateUp => Shape::matrix(2 * c.mlp_inter(), d),
                LayerTensor::MlpDown => Shape::matrix(d, c.mlp_inter()),
            },
        }
    }
}

/// Formats the reference state_dict name (without the `_orig_mod.model.` prefix).
impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorId::EmbedTokens => f.write_str("inner.embed_tokens.embedding_weight"),
            TensorId::EmbedPos => f.write_str("inner.embed_pos.embedding_weight"),
            TensorId::PuzzleEmb => f.write_str("inner.puzzle_emb.weights"),
            TensorId::HInit => f.write_str("inner.H_init"),
            TensorId::LInit => f.write_str("inner.L_init"),
            TensorId::LmHead => f.write_str("inner.lm_head.weight"),
            TensorId::QHeadWeight => f.write_str("inner.q_head.weight"),
            TensorId::QHeadBias => f.write_str("inner.q_head.bias"),
            TensorId::Layer { layer, tensor } => {
                let suffix = match tensor {
                    LayerTensor::QkvProj => "self_attn.qkv_proj.weight",
                    LayerTensor::OProj => "self_attn.o_proj.weight",
                    LayerTensor::MlpTGateUp => "mlp_t.gate_up_proj.weight",
                    LayerTensor::MlpTDown => "mlp_t.down_proj.weight",
                    LayerTensor::MlpGateUp => "mlp.gate_up_proj.weight",
                    LayerTensor::MlpDown => "mlp.down_proj.weight",
                };
                write!(f, "inner.L_level.layers.{layer}.{suffix}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_match_reference_state_dict() {
        let id = TensorId::Layer {
            layer: 0,
            tensor: LayerTensor::MlpGateUp,
        };
        assert_eq!(
            id.to_string(),
            "inner.L_level.layers.0.mlp.gate_up_proj.weight"
        );
        assert_eq!(
            TensorId::EmbedTokens.to_string(),
            "inner.embed_tokens.embedding_weight"
        );
    }

    #[test]
    fn tensor_lists_follow_variant() {
        let c = Config::sudoku_mlp_t();
        let n = TensorId::all(&c).count();
        // 7 globals (no EmbedPos) + 2 layers x 4
        assert_eq!(n, 15);
        assert!(TensorId::all(&c).all(|t| t.present(&c)));
        let mut a = Config::sudoku_attention();
        a.pos_encodings = PosEncoding::Learned;
        assert_eq!(TensorId::all(&a).count(), 16);
        assert!(TensorId::all(&a).any(|t| t
            == TensorId::Layer {
                layer: 1,
                tensor: LayerTensor::QkvProj
            }));
    }
}

/// A stored tensor, borrowed in place (from flash, or from a file read into memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorView<'a> {
    /// Element type of `data`.
    pub dtype: DType,
    /// Shape; `data.len() == shape.numel() * dtype.size()`.
    pub shape: Shape,
    /// Little-endian elements, row-major.
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Element `i` as f32, for float element types (`None` for integer types or out of range).
    pub fn get_f32(&self, i: usize) -> Option<f32> {
        let s = self.dtype.size();
        let b = self.data.get(i * s..i * s + s)?;
        match self.dtype {
            DType::F32 => Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DType::F16 => Some(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            DType::BF16 => Some(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            _ => None,
        }
    }
}

/// Anything that hands out a model's tensors by id: the `.trm` file reader, or a test's map.
pub trait TensorSource<'a> {
    /// The tensor, if the source has it.
    fn tensor(&self, id: TensorId) -> Option<TensorView<'a>>;
}
