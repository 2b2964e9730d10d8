//! Every validation failure of `Model::parse` and of the writer, each with its exact error.
//!
//! Each test starts from a valid file, changes one thing, and (through `assemble`) recomputes
//! the layout and checksums so that only that one thing is wrong.

mod format_common;

use format_common::{Fix, Parts, assemble, build, entry_index, fix_meta_crc, split, tiny_mlp_t};
use trm_nostd::format::{
    ALIGN, FORMAT_VERSION, FormatError, MAGIC, Model, ModelWriter, NumericScheme, PREAMBLE_LEN,
    WriteError, crc32,
};
use trm_nostd::{Config, ConfigError, DType, LayerTensor, PosEncoding, Shape, TensorId};

fn valid() -> Vec<u8> {
    build(&tiny_mlp_t(), DType::F16, 1)
}

fn parts() -> Parts {
    split(&valid())
}

fn parse(bytes: &[u8]) -> Result<(), FormatError> {
    Model::parse(bytes).map(|_| ())
}

fn parse_parts(p: &Parts) -> Result<(), FormatError> {
    parse(&assemble(p, Fix::default()))
}

#[test]
fn the_base_file_and_its_reassembly_are_valid() {
    let bytes = valid();
    assert_eq!(parse(&bytes), Ok(()));
    // Reassembling an untouched file reproduces it byte for byte: the helper changes nothing else.
    assert_eq!(assemble(&split(&bytes), Fix::default()), bytes);
}

#[test]
fn bad_magic() {
    let mut b = valid();
    b[1] ^= 0x20; // "TRM" -> "tRM"
    assert_eq!(parse(&b), Err(FormatError::BadMagic));
    assert_eq!(parse(b"PK\x03\x04"), Err(FormatError::BadMagic));
    let msg = FormatError::BadMagic.to_string();
    assert!(msg.contains("trm-export export"), "{msg}");
}

#[test]
fn unsupported_version() {
    let mut p = parts();
    p.version = FORMAT_VERSION + 1;
    let e = parse_parts(&p).unwrap_err();
    assert_eq!(
        e,
        FormatError::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    assert!(e.to_string().contains("newer"), "{e}");
    p.version = 0;
    let e = parse_parts(&p).unwrap_err();
    assert_eq!(
        e,
        FormatError::UnsupportedVersion {
            found: 0,
            supported: FORMAT_VERSION
        }
    );
    assert!(e.to_string().contains("trm-export export"), "{e}");
}

#[test]
fn truncated() {
    let b = valid();
    assert_eq!(
        parse(&b[..10]),
        Err(FormatError::Truncated {
            needed: PREAMBLE_LEN as u64,
            available: 10
        })
    );
    assert_eq!(
        parse(&[]),
        Err(FormatError::Truncated {
            needed: PREAMBLE_LEN as u64,
            available: 0
        })
    );
    // Cut inside the header: the metadata region is incomplete.
    let payload_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as u64;
    assert_eq!(
        parse(&b[..40]),
        Err(FormatError::Truncated {
            needed: payload_offset,
            available: 40
        })
    );
}

#[test]
fn truncated_payload_is_a_length_error() {
    let b = valid();
    let cut = b.len() - 3;
    assert_eq!(
        parse(&b[..cut]),
        Err(FormatError::FileLength {
            expected: b.len() as u64,
            found: cut as u64
        })
    );
}

#[test]
fn file_length() {
    let mut b = valid();
    let n = b.len() as u64;
    b.extend_from_slice(&[0; 64]);
    assert_eq!(
        parse(&b),
        Err(FormatError::FileLength {
            expected: n,
            found: n + 64
        })
    );
}

#[test]
#[cfg(target_pointer_width = "64")]
fn too_large() {
    // More than 4 GiB: a zeroed allocation, so only the first page is ever touched.
    let mut b = vec![0u8; (1usize << 32) + 64];
    b[..PREAMBLE_LEN].copy_from_slice(&valid()[..PREAMBLE_LEN]);
    assert_eq!(parse(&b), Err(FormatError::TooLarge));
}

#[test]
fn reserved_flags() {
    // Bit 0 is the source record's and bit 1 qualifies it (tests/format_source.rs): alone,
    // every bit but bit 0 is reserved.
    for bit in 1..16 {
        let mut p = parts();
        p.flags = 1 << bit;
        assert_eq!(
            parse_parts(&p),
            Err(FormatError::ReservedNonZero { what: "flags" })
        );
    }
}

#[test]
fn reserved_quant_words() {
    let mut p = parts();
    p.entries[2].quant[1] = 7;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::ReservedNonZero {
            what: "quantization words"
        })
    );
}

#[test]
fn reserved_directory_padding() {
    let mut b = valid();
    let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let payload_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let count = split(&b).entries.len();
    let dir_end = PREAMBLE_LEN + header_len + count * 32;
    assert!(dir_end < payload_offset, "the base file must have padding");
    b[payload_offset - 1] = 1;
    fix_meta_crc(&mut b);
    assert_eq!(
        parse(&b),
        Err(FormatError::ReservedNonZero {
            what: "directory padding"
        })
    );
}

#[test]
fn payload_offset_inconsistent() {
    // One alignment step too far (the metadata region still fits in the file).
    let mut b = valid();
    let old = u32::from_le_bytes(b[16..20].try_into().unwrap());
    b[16..20].copy_from_slice(&(old + ALIGN as u32).to_le_bytes());
    fix_meta_crc(&mut b);
    assert_eq!(
        parse(&b),
        Err(FormatError::PayloadOffset {
            expected: old as u64,
            found: old + ALIGN as u32
        })
    );
    // A header that would run past the payload offset.
    let mut b = valid();
    b[12..16].copy_from_slice(&(old + 1).to_le_bytes());
    fix_meta_crc(&mut b);
    assert!(matches!(
        parse(&b),
        Err(FormatError::PayloadOffset { found, .. }) if found == old
    ));
}

#[test]
fn metadata_checksum() {
    let mut b = valid();
    let stored = u32::from_le_bytes(b[20..24].try_into().unwrap());
    // Flip one bit of the header.
    b[PREAMBLE_LEN + 5] ^= 0x01;
    let payload_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let computed = crc32(&b[PREAMBLE_LEN..payload_offset]);
    assert_ne!(stored, computed);
    assert_eq!(
        parse(&b),
        Err(FormatError::MetadataChecksum { stored, computed })
    );
    // A flipped directory bit is caught the same way.
    let mut b = valid();
    b[payload_offset - 80] ^= 0x10;
    assert!(matches!(
        parse(&b),
        Err(FormatError::MetadataChecksum { .. })
    ));
}

#[test]
fn header_does_not_decode() {
    // header_len one byte short: postcard runs out of input.
    let mut b = valid();
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap());
    b[12..16].copy_from_slice(&(hl - 1).to_le_bytes());
    fix_meta_crc(&mut b);
    assert_eq!(parse(&b), Err(FormatError::Header));
    // header_len one byte long: the header does not fill it.
    let mut b = valid();
    b[12..16].copy_from_slice(&(hl + 1).to_le_bytes());
    fix_meta_crc(&mut b);
    assert_eq!(parse(&b), Err(FormatError::Header));
    // A bool that is neither 0 nor 1 (mlp_t is the 7th field; find it by re-encoding).
    let p = parts();
    let mut h = p.header;
    h.config.mlp_t = false;
    let with_false = postcard::to_stdvec(&h).unwrap();
    h.config.mlp_t = true;
    let with_true = postcard::to_stdvec(&h).unwrap();
    let pos = (0..with_true.len())
        .find(|&i| with_true[i] != with_false[i])
        .unwrap();
    let mut b = valid();
    assert_eq!(b[PREAMBLE_LEN + pos], 1);
    b[PREAMBLE_LEN + pos] = 2;
    fix_meta_crc(&mut b);
    assert_eq!(parse(&b), Err(FormatError::Header));
}

#[test]
fn invalid_config() {
    let mut p = parts();
    p.header.config.rope_theta = f32::INFINITY;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::Config(ConfigError::BadFloat("rope_theta")))
    );
    let mut p = parts();
    p.header.config.hidden_size = 0;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::Config(ConfigError::Zero("hidden_size")))
    );
}

#[test]
fn config_beyond_the_work_limits() {
    // Recursion counts each within its own range (the hostile file: about 19 days of
    // `run`), together far beyond the work one puzzle may take: refused before anything runs.
    let mut p = parts();
    let c = &mut p.header.config;
    c.h_cycles = 1024;
    c.l_cycles = 1024;
    c.halt_max_steps = 1024;
    let runs = 1024 * 1024 * 1025 * c.l_layers as u64;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::Config(ConfigError::TooMuchWork {
            what: "block applications",
            count: runs,
            limit: trm_nostd::config::MAX_BLOCK_RUNS_PER_PUZZLE,
        }))
    );
}

#[test]
fn unsupported_scheme() {
    let mut p = parts();
    p.header.scheme = NumericScheme::Float(DType::I8);
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::UnsupportedScheme(NumericScheme::Float(
            DType::I8
        )))
    );
}

#[test]
fn unknown_tensor() {
    let mut p = parts();
    p.entries[3].kind = 9;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::UnknownTensor { index: 3 })
    );
    // A global tensor with a non-zero layer byte names nothing either.
    let mut p = parts();
    p.entries[0].layer = 1;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::UnknownTensor { index: 0 })
    );
}

#[test]
fn unknown_dtype() {
    let mut p = parts();
    p.entries[4].dtype = 200;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::UnknownDType {
            index: 4,
            code: 200
        })
    );
}

#[test]
fn unexpected_tensor() {
    let c = tiny_mlp_t();
    assert_eq!(c.pos_encodings, PosEncoding::None);
    // embed_pos in a model without learned positions.
    let mut p = parts();
    p.entries[1].kind = 1;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::UnexpectedTensor(TensorId::EmbedPos))
    );
    // An attention weight in an mlp_t model.
    let mut p = parts();
    let last = p.entries.len() - 1;
    p.entries[last].kind = 16;
    p.entries[last].layer = 0;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::UnexpectedTensor(TensorId::Layer {
            layer: 0,
            tensor: LayerTensor::QkvProj
        }))
    );
    // A block past l_layers.
    let mut p = parts();
    p.entries[last].layer = c.l_layers as u8;
    assert!(matches!(
        parse_parts(&p),
        Err(FormatError::UnexpectedTensor(TensorId::Layer { layer, .. })) if layer as u32 == c.l_layers
    ));
}

#[test]
fn duplicate_tensor() {
    let mut p = parts();
    let i = entry_index(&p, TensorId::LInit);
    p.entries[i].kind = p.entries[i - 1].kind;
    assert_eq!(p.entries[i - 1].id(), Some(TensorId::HInit));
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::DuplicateTensor(TensorId::HInit))
    );
}

#[test]
fn missing_tensor() {
    let mut p = parts();
    let i = entry_index(&p, TensorId::LmHead);
    p.entries.remove(i);
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::MissingTensor(TensorId::LmHead))
    );
    // The last one too (no later entry to notice the gap).
    let mut p = parts();
    let last = p.entries.pop().unwrap().id().unwrap();
    assert_eq!(parse_parts(&p), Err(FormatError::MissingTensor(last)));
}

#[test]
fn tensor_count_larger_than_directory() {
    // tensor_count says one more entry than there is room for: the directory then runs into
    // the padding / payload, and the payload offset no longer matches.
    let mut p = parts();
    p.header.tensor_count += 3;
    let b = assemble(
        &p,
        Fix {
            keep_count: true,
            ..Fix::default()
        },
    );
    assert!(matches!(parse(&b), Err(FormatError::PayloadOffset { .. })));
}

#[test]
fn shape_mismatch() {
    let c = tiny_mlp_t();
    let id = TensorId::EmbedTokens;
    let expected = id.shape(&c);
    let mut p = parts();
    let i = entry_index(&p, id);
    p.entries[i].rows = expected.cols;
    p.entries[i].cols = expected.rows;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::ShapeMismatch {
            tensor: id,
            expected,
            found: Shape::matrix(expected.cols as usize, expected.rows as usize)
        })
    );
    // Same numel, wrong rank.
    let mut p = parts();
    let i = entry_index(&p, TensorId::HInit);
    p.entries[i].rank = 2;
    assert!(matches!(
        parse_parts(&p),
        Err(FormatError::ShapeMismatch { tensor: TensorId::HInit, found, .. }) if found.rank == 2
    ));
}

#[test]
fn dtype_not_allowed() {
    let mut p = parts();
    let i = entry_index(&p, TensorId::QHeadBias);
    p.entries[i].dtype = 0; // F32 in an F16 file
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::DTypeNotAllowed {
            tensor: TensorId::QHeadBias,
            dtype: DType::F32
        })
    );
}

#[test]
fn byte_length() {
    let mut p = parts();
    let i = entry_index(&p, TensorId::QHeadWeight);
    let len = p.entries[i].byte_len;
    p.entries[i].byte_len = len - 2;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::ByteLength {
            tensor: TensorId::QHeadWeight,
            expected: len as u64,
            found: len - 2
        })
    );
}

#[test]
fn misaligned() {
    let mut p = parts();
    let i = entry_index(&p, TensorId::LmHead);
    p.entries[i].offset += 2;
    let b = assemble(&p, Fix::default());
    let offset = split(&b).entries[i].offset;
    assert_eq!(
        parse(&b),
        Err(FormatError::Misaligned {
            tensor: TensorId::LmHead,
            offset
        })
    );
}

#[test]
fn out_of_bounds() {
    // The last tensor moved past the end of the file.
    let mut p = parts();
    let last = p.entries.len() - 1;
    let id = p.entries[last].id().unwrap();
    let len = p.entries[last].byte_len;
    p.entries[last].offset += ((p.payload.len() as u32).div_ceil(64)) * 64;
    let b = assemble(&p, Fix::default());
    let offset = split(&b).entries[last].offset;
    assert_eq!(
        parse(&b),
        Err(FormatError::OutOfBounds {
            tensor: id,
            offset,
            len
        })
    );
    // The first tensor moved into the metadata.
    let mut p = parts();
    p.entries[0].offset -= 64;
    let b = assemble(&p, Fix::default());
    assert!(matches!(
        parse(&b),
        Err(FormatError::OutOfBounds {
            tensor: TensorId::EmbedTokens,
            ..
        })
    ));
}

#[test]
fn overlap() {
    let mut p = parts();
    p.entries[2].offset = p.entries[1].offset;
    let id = p.entries[2].id().unwrap();
    assert_eq!(parse_parts(&p), Err(FormatError::Overlap { tensor: id }));
    // Swapped order (each tensor alone is fine) counts as well.
    let mut p = parts();
    let (a, b) = (p.entries[3], p.entries[4]);
    p.entries[3] = b;
    p.entries[4] = a;
    assert_eq!(
        parse_parts(&p),
        Err(FormatError::Overlap {
            tensor: a.id().unwrap()
        })
    );
}

#[test]
fn payload_checksum() {
    let mut b = valid();
    let stored_crc = split(&b).header.payload_crc;
    let n = b.len();
    b[n - 1] ^= 0x80;
    let payload_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let computed = crc32(&b[payload_offset..]);
    assert_eq!(
        parse(&b),
        Err(FormatError::PayloadChecksum {
            stored: stored_crc,
            computed
        })
    );
}

#[test]
fn file_len_reads_the_front_only() {
    let b = valid();
    let payload_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    assert_eq!(Model::file_len(&b[..payload_offset]), Ok(b.len()));
    // Trailing flash contents do not matter to file_len, and parse of the exact length works.
    let mut flash = b.clone();
    flash.extend_from_slice(&[0xFF; 300]);
    let n = Model::file_len(&flash).unwrap();
    assert_eq!(parse(&flash[..n]), Ok(()));
    assert_eq!(Model::file_len(&b[..10]).map(|_| ()), parse(&b[..10]));
    let mut bad = b.clone();
    bad[0] = 0;
    assert_eq!(Model::file_len(&bad), Err(FormatError::BadMagic));
}

#[test]
fn errors_display_and_chain() {
    use std::error::Error;
    let e = FormatError::Config(ConfigError::BadHeads);
    assert!(e.source().is_some());
    assert!(FormatError::Header.source().is_none());
    let e = FormatError::MissingTensor(TensorId::LmHead);
    assert!(e.to_string().contains("inner.lm_head.weight"), "{e}");
    assert_eq!(&MAGIC[1..4], b"TRM");
}

// --- the writer ---

fn weights(c: &Config) -> Vec<(TensorId, Vec<f32>)> {
    format_common::random_weights(c, 9)
}

#[test]
fn writer_rejects_bad_config_and_scheme() {
    let mut c = tiny_mlp_t();
    c.num_heads = 3;
    assert_eq!(
        ModelWriter::new(c, NumericScheme::Float(DType::F32)).unwrap_err(),
        WriteError::Config(ConfigError::BadHeads)
    );
    assert_eq!(
        ModelWriter::new(tiny_mlp_t(), NumericScheme::Float(DType::I16)).unwrap_err(),
        WriteError::UnsupportedScheme(NumericScheme::Float(DType::I16))
    );
}

#[test]
fn writer_rejects_unexpected_duplicate_and_wrong_length() {
    let c = tiny_mlp_t();
    let w8 = weights(&c);
    let mut w = ModelWriter::new(c, NumericScheme::Float(DType::F16)).unwrap();
    let some = vec![0.0f32; 16];
    assert_eq!(
        w.add(TensorId::EmbedPos, &some).unwrap_err(),
        WriteError::UnexpectedTensor(TensorId::EmbedPos)
    );
    let (id, v) = &w8[0];
    w.add(*id, v).unwrap();
    assert_eq!(w.add(*id, v).unwrap_err(), WriteError::DuplicateTensor(*id));
    let (id, v) = &w8[1];
    assert_eq!(
        w.add(*id, &v[1..]).unwrap_err(),
        WriteError::ElementCount {
            tensor: *id,
            expected: v.len(),
            found: v.len() - 1
        }
    );
}

#[test]
fn writer_rejects_missing() {
    let c = tiny_mlp_t();
    let all = weights(&c);
    let mut w = ModelWriter::new(c, NumericScheme::Float(DType::BF16)).unwrap();
    for (id, v) in all.iter().filter(|(id, _)| *id != TensorId::QHeadBias) {
        w.add(*id, v).unwrap();
    }
    assert_eq!(
        w.finish().unwrap_err(),
        WriteError::MissingTensor(TensorId::QHeadBias)
    );
    let (id, v) = all
        .iter()
        .find(|(id, _)| *id == TensorId::QHeadBias)
        .unwrap();
    w.add(*id, v).unwrap();
    assert!(Model::parse(&w.finish().unwrap()).is_ok());
}
