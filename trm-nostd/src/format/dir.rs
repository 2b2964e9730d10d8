//! The fixed 32-byte tensor directory entry (layout in the [module documentation](super)).

use crate::tensor::{DType, LayerTensor, Shape, TensorId};

/// Bytes per directory entry.
pub const ENTRY_LEN: usize = 32;

/// One directory entry, decoded field by field but not yet checked against a config.
///
/// Id and dtype are kept as their raw codes so that an unknown code can be reported with its
/// position; [`DirEntry::id`] and [`DirEntry::dtype`] decode them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DirEntry {
    /// Tensor kind code (byte 0).
    pub kind: u8,
    /// Block index for block weights, 0 otherwise (byte 1).
    pub layer: u8,
    /// Element type code (byte 2).
    pub dtype: u8,
    /// Rank, 1 or 2 (byte 3).
    pub rank: u8,
    /// Rows (1 for a vector).
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Absolute offset of the data in the file.
    pub offset: u32,
    /// Length of the data in bytes.
    pub byte_len: u32,
    /// Per-tensor quantization words, reserved (zero) in format version 1.
    pub quant: [u32; 3],
}

/// Code of the first block-weight kind; `LAYER_KIND_BASE + k` for the k-th [`LayerTensor`].
const LAYER_KIND_BASE: u8 = 16;

/// Block weights in code order.
const LAYER_KINDS: [LayerTensor; 6] = [
    LayerTensor::QkvProj,
    LayerTensor::OProj,
    LayerTensor::MlpTGateUp,
    LayerTensor::MlpTDown,
    LayerTensor::MlpGateUp,
    LayerTensor::MlpDown,
];

/// Global tensors in code order.
const GLOBAL_KINDS: [TensorId; 8] = [
    TensorId::EmbedTokens,
    TensorId::EmbedPos,
    TensorId::PuzzleEmb,
    TensorId::HInit,
    TensorId::LInit,
    TensorId::LmHead,
    TensorId::QHeadWeight,
    TensorId::QHeadBias,
];

/// Largest number of distinct tensor ids: the globals plus 6 kinds for each of 64 blocks (the
/// most [`Config::validate`](crate::Config::validate) allows).
pub(crate) const MAX_TENSOR_SLOTS: usize = GLOBAL_KINDS.len() + 64 * LAYER_KINDS.len();

fn layer_code(t: LayerTensor) -> u8 {
    match t {
        LayerTensor::QkvProj => 0,
        LayerTensor::OProj => 1,
        LayerTensor::MlpTGateUp => 2,
        LayerTensor::MlpTDown => 3,
        LayerTensor::MlpGateUp => 4,
        LayerTensor::MlpDown => 5,
    }
}

/// The (kind, layer) bytes of a tensor id.
pub(crate) fn id_code(id: TensorId) -> (u8, u8) {
    match id {
        TensorId::EmbedTokens => (0, 0),
        TensorId::EmbedPos => (1, 0),
        TensorId::PuzzleEmb => (2, 0),
        TensorId::HInit => (3, 0),
        TensorId::LInit => (4, 0),
        TensorId::LmHead => (5, 0),
        TensorId::QHeadWeight => (6, 0),
        TensorId::QHeadBias => (7, 0),
        TensorId::Layer { layer, tensor } => (LAYER_KIND_BASE + layer_code(tensor), layer),
    }
}

/// The tensor id of (kind, layer) bytes, if they name one.
pub(crate) fn id_from_code(kind: u8, layer: u8) -> Option<TensorId> {
    if kind < LAYER_KIND_BASE {
        if layer != 0 {
            return None;
        }
        GLOBAL_KINDS.get(kind as usize).copied()
    } else {
        let tensor = *LAYER_KINDS.get((kind - LAYER_KIND_BASE) as usize)?;
        Some(TensorId::Layer { layer, tensor })
    }
}

/// A dense index of a tensor id in `0..MAX_TENSOR_SLOTS + ...` (block indices above 63 map past
/// `MAX_TENSOR_SLOTS`; callers check presence in the config first).
pub(crate) fn id_slot(id: TensorId) -> usize {
    match id {
        TensorId::Layer { layer, tensor } => {
            GLOBAL_KINDS.len() + layer as usize * LAYER_KINDS.len() + layer_code(tensor) as usize
        }
        other => id_code(other).0 as usize,
    }
}

/// The element-type code of a dtype.
pub(crate) fn dtype_code(d: DType) -> u8 {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::I8 => 3,
        DType::I16 => 4,
        DType::I32 => 5,
    }
}

/// The dtype of an element-type code, if it names one.
pub(crate) fn dtype_from_code(code: u8) -> Option<DType> {
    match code {
        0 => Some(DType::F32),
        1 => Some(DType::F16),
        2 => Some(DType::BF16),
        3 => Some(DType::I8),
        4 => Some(DType::I16),
        5 => Some(DType::I32),
        _ => None,
    }
}

fn u32_at(b: &[u8; ENTRY_LEN], at: usize) -> u32 {
    let mut w = [0u8; 4];
    // `at` is one of the constant field offsets below, all <= 28: the slice is in bounds.
    for (i, dst) in w.iter_mut().enumerate() {
        *dst = b.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

impl DirEntry {
    /// An entry for a tensor (quant words zero).
    pub fn new(id: TensorId, dtype: DType, shape: Shape, offset: u32, byte_len: u32) -> Self {
        let (kind, layer) = id_code(id);
        DirEntry {
            kind,
            layer,
            dtype: dtype_code(dtype),
            rank: shape.rank,
            rows: shape.rows,
            cols: shape.cols,
            offset,
            byte_len,
            quant: [0; 3],
        }
    }

    /// Decodes the 32 bytes of an entry (any bytes decode; meaning is checked separately).
    pub fn decode(b: &[u8; ENTRY_LEN]) -> Self {
        DirEntry {
            kind: b[0],
            layer: b[1],
            dtype: b[2],
            rank: b[3],
            rows: u32_at(b, 4),
            cols: u32_at(b, 8),
            offset: u32_at(b, 12),
            byte_len: u32_at(b, 16),
            quant: [u32_at(b, 20), u32_at(b, 24), u32_at(b, 28)],
        }
    }

    /// The 32 bytes of this entry.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = self.kind;
        b[1] = self.layer;
        b[2] = self.dtype;
        b[3] = self.rank;
        let words = [
            self.rows,
            self.cols,
            self.offset,
            self.byte_len,
            self.quant[0],
            self.quant[1],
            self.quant[2],
        ];
        for (chunk, w) in b[4..].chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// The tensor this entry names, if its (kind, layer) bytes name one.
    pub fn id(&self) -> Option<TensorId> {
        id_from_code(self.kind, self.layer)
    }

    /// The element type, if the code names one.
    pub fn dtype(&self) -> Option<DType> {
        dtype_from_code(self.dtype)
    }

    /// The stored shape.
    pub fn shape(&self) -> Shape {
        Shape {
            rows: self.rows,
            cols: self.cols,
            rank: self.rank,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_codes_round_trip_and_slots_are_distinct() {
        let mut seen = [false; MAX_TENSOR_SLOTS];
        let ids = GLOBAL_KINDS.into_iter().chain((0..64u8).flat_map(|layer| {
            LAYER_KINDS
                .into_iter()
                .map(move |tensor| TensorId::Layer { layer, tensor })
        }));
        let mut n = 0;
        for id in ids {
            let (k, l) = id_code(id);
            assert_eq!(id_from_code(k, l), Some(id));
            let s = id_slot(id);
            assert!(!seen[s], "slot {s} reused");
            seen[s] = true;
            n += 1;
        }
        assert_eq!(n, MAX_TENSOR_SLOTS);
        assert_eq!(id_from_code(8, 0), None);
        assert_eq!(id_from_code(0, 1), None);
        assert_eq!(id_from_code(22, 0), None);
    }

    #[test]
    fn dtype_codes_round_trip() {
        for d in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::I8,
            DType::I16,
            DType::I32,
        ] {
            assert_eq!(dtype_from_code(dtype_code(d)), Some(d));
        }
        assert_eq!(dtype_from_code(6), None);
    }

    #[test]
    fn entry_bytes_round_trip() {
        let e = DirEntry {
            kind: 17,
            layer: 3,
            dtype: 2,
            rank: 2,
            rows: 0x0102_0304,
            cols: 5,
            offset: 0xA0B0_C0D0,
            byte_len: 7,
            quant: [8, 9, 0xFFFF_FFFF],
        };
        let b = e.encode();
        assert_eq!(&b[4..8], &[4, 3, 2, 1]);
        assert_eq!(DirEntry::decode(&b), e);
    }
}
