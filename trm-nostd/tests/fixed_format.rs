//! Format version 2: `Fixed` files with quantization tables round-trip, version-1 rules still
//! hold, and every misplaced table is a typed error.

mod format_common;

use format_common::{build, tiny_mlp_t};
use trm_nostd::format::{
    FIXED_I8_I16, FORMAT_VERSION, FormatError, Model, ModelWriter, NumericScheme, QUANT_TABLE_LE,
    WriteError,
};
use trm_nostd::{DType, TensorId, TensorSource};

/// A Fixed file: every tensor I8 except the I16 embeddings/inits and the I32 bias, with a
/// table of `4 * (t + 1)` bytes on every I8 tensor `t`.
/// What was given to the writer: id, dtype, data, table.
type Given = Vec<(TensorId, DType, Vec<u8>, Vec<u8>)>;

fn fixed_file() -> (Vec<u8>, Given) {
    let c = tiny_mlp_t();
    let mut w = ModelWriter::new(c, FIXED_I8_I16).unwrap();
    let mut given = Vec::new();
    for (t, id) in TensorId::all(&c).enumerate() {
        let dtype = match id {
            TensorId::EmbedTokens | TensorId::PuzzleEmb | TensorId::HInit | TensorId::LInit => {
                DType::I16
            }
            TensorId::QHeadBias => DType::I32,
            _ => DType::I8,
        };
        let n = id.shape(&c).numel() * dtype.size();
        let bytes: Vec<u8> = (0..n).map(|i| (i * 31 + t * 7) as u8).collect();
        let table: Vec<u8> = if dtype == DType::I8 {
            (0..4 * (t + 1)).map(|i| (i + t) as u8).collect()
        } else {
            Vec::new()
        };
        w.add_raw(id, dtype, bytes.clone(), table.clone()).unwrap();
        given.push((id, dtype, bytes, table));
    }
    (w.finish().unwrap(), given)
}

#[test]
fn fixed_files_round_trip_as_version_2() {
    let (bytes, given) = fixed_file();
    let m = Model::parse(&bytes).unwrap();
    assert_eq!(m.version(), 2);
    assert_eq!(FORMAT_VERSION, 2);
    assert_eq!(m.scheme(), FIXED_I8_I16);
    for (id, dtype, data, table) in &given {
        let v = m.tensor(*id).unwrap();
        assert_eq!((v.dtype, v.data), (*dtype, &data[..]), "{id}");
        match m.quant_table(*id) {
            Some(t) => assert_eq!(t, &table[..], "{id}"),
            None => assert!(table.is_empty(), "{id}"),
        }
    }
}

#[test]
fn float_files_stay_version_1_and_v1_rules_hold() {
    let b = build(&tiny_mlp_t(), DType::F16, 1);
    let m = Model::parse(&b).unwrap();
    assert_eq!(m.version(), 1);
    assert!(m.quant_table(TensorId::LmHead).is_none());
    // A Fixed scheme in a version-1 file is refused.
    let (mut fixed, _) = fixed_file();
    fixed[8] = 1;
    // (the metadata checksum does not cover the preamble's version field)
    assert_eq!(
        Model::parse(&fixed).unwrap_err(),
        FormatError::UnsupportedScheme(FIXED_I8_I16)
    );
}

fn entry_at(bytes: &[u8], index: usize) -> usize {
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    24 + header_len + 32 * index
}

fn refix_meta(bytes: &mut [u8]) {
    let payload_offset = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    let crc = trm_nostd::format::crc32(&bytes[24..payload_offset]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn misplaced_tables_are_errors() {
    let (bytes, _) = fixed_file();
    let m = Model::parse(&bytes).unwrap();
    let idx = m
        .tensors()
        .position(|(id, _)| id == TensorId::LmHead)
        .unwrap();
    let at = entry_at(&bytes, idx);
    let word = |b: &[u8], k: usize| {
        u32::from_le_bytes(b[at + 20 + 4 * k..at + 24 + 4 * k].try_into().unwrap())
    };
    assert_eq!(word(&bytes, 2), QUANT_TABLE_LE);
    let cases: Vec<(usize, u32)> = vec![
        (0, word(&bytes, 0) - 4), // overlaps its own data
        (0, word(&bytes, 0) + 2), // misaligned
        (1, 6),                   // not whole words
        (1, u32::MAX - 3),        // past the file
        (2, 2),                   // unknown encoding
        (0, 0),                   // offset 0 (inside the metadata)
    ];
    for (k, v) in cases {
        let mut b = bytes.clone();
        b[at + 20 + 4 * k..at + 24 + 4 * k].copy_from_slice(&v.to_le_bytes());
        refix_meta(&mut b);
        assert_eq!(
            Model::parse(&b).unwrap_err(),
            FormatError::QuantTable {
                tensor: TensorId::LmHead
            },
            "word {k} = {v}"
        );
    }
    // Growing a table into the next tensor is an overlap.
    let mut b = bytes.clone();
    let len = word(&bytes, 1) + 64;
    b[at + 24..at + 28].copy_from_slice(&len.to_le_bytes());
    refix_meta(&mut b);
    assert!(matches!(
        Model::parse(&b).unwrap_err(),
        FormatError::Overlap { .. } | FormatError::QuantTable { .. }
    ));
}

#[test]
fn writer_refuses_what_the_scheme_forbids() {
    let c = tiny_mlp_t();
    let mut w = ModelWriter::new(c, FIXED_I8_I16).unwrap();
    let v = vec![0f32; TensorId::LmHead.shape(&c).numel()];
    assert_eq!(
        w.add(TensorId::LmHead, &v).unwrap_err(),
        WriteError::DTypeNotAllowed {
            tensor: TensorId::LmHead,
            dtype: DType::F32
        }
    );
    let n = TensorId::LmHead.shape(&c).numel();
    assert_eq!(
        w.add_raw(TensorId::LmHead, DType::I8, vec![0; n], vec![0; 3])
            .unwrap_err(),
        WriteError::QuantTable(TensorId::LmHead)
    );
    let mut f = ModelWriter::new(c, NumericScheme::Float(DType::F32)).unwrap();
    assert_eq!(
        f.add_raw(TensorId::LmHead, DType::F32, vec![0; 4 * n], vec![0; 4])
            .unwrap_err(),
        WriteError::QuantTable(TensorId::LmHead)
    );
}
