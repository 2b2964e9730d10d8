//! The tensors a `torch.save` file holds: element types and contiguous data.

use std::fmt;

use super::TorchLoadError;

/// Element type of a tensor read from a `torch.save` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TorchDType {
    /// `torch.float64`.
    F64,
    /// `torch.float32`.
    F32,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.int64`.
    I64,
    /// `torch.int32`.
    I32,
    /// `torch.int16`.
    I16,
    /// `torch.int8`.
    I8,
    /// `torch.uint8` (also the element of an untyped storage).
    U8,
    /// `torch.bool`, one byte per element.
    Bool,
}

impl TorchDType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }

    /// The PyTorch name (`float32`, `bfloat16`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            TorchDType::F64 => "float64",
            TorchDType::F32 => "float32",
            TorchDType::F16 => "float16",
            TorchDType::BF16 => "bfloat16",
            TorchDType::I64 => "int64",
            TorchDType::I32 => "int32",
            TorchDType::I16 => "int16",
            TorchDType::I8 => "int8",
            TorchDType::U8 => "uint8",
            TorchDType::Bool => "bool",
        }
    }

    /// The element type of a legacy typed storage class (`torch.FloatStorage`, ...).
    pub(super) fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => TorchDType::F64,
            "FloatStorage" => TorchDType::F32,
            "HalfStorage" => TorchDType::F16,
            "BFloat16Storage" => TorchDType::BF16,
            "LongStorage" => TorchDType::I64,
            "IntStorage" => TorchDType::I32,
            "ShortStorage" => TorchDType::I16,
            "CharStorage" => TorchDType::I8,
            "ByteStorage" => TorchDType::U8,
            "BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }

    /// The element type named by a `torch.<dtype>` global (`torch.float32`, `torch.half`, ...).
    pub(super) fn from_torch_attr(name: &str) -> Option<Self> {
        Some(match name {
            "float64" | "double" => TorchDType::F64,
            "float32" | "float" => TorchDType::F32,
            "float16" | "half" => TorchDType::F16,
            "bfloat16" => TorchDType::BF16,
            "int64" | "long" => TorchDType::I64,
            "int32" | "int" => TorchDType::I32,
            "int16" | "short" => TorchDType::I16,
            "int8" => TorchDType::I8,
            "uint8" => TorchDType::U8,
            "bool" => TorchDType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for TorchDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor read from a `torch.save` file, gathered into contiguous row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: TorchDType,
    /// Sizes, outermost first (empty for a 0-d tensor).
    pub shape: Vec<usize>,
    /// `numel * dtype.size()` little-endian bytes, row-major.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as f32, for float32, bfloat16 and float16 tensors (exact conversions).
    pub fn to_f32(&self) -> Result<Vec<f32>, TorchLoadError> {
        let out = match self.dtype {
            TorchDType::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            TorchDType::BF16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            TorchDType::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(TorchLoadError::Unsupported(format!(
                    "cannot convert a {other} tensor to f32 (only float32, bfloat16, float16)"
                )));
            }
        };
        Ok(out)
    }
}
