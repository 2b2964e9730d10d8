//! The optional source record (flag bit 0): which checkpoint file a model was exported from,
//! and optionally (flag bit 1) which weights of the run it holds. Present exactly when flagged,
//! covered by the metadata checksum, and a file without it (or a record without the weights
//! kind) is byte for byte what the writer produced before it existed.

mod format_common;

use format_common::{random_weights, tiny_mlp_t};
use trm_nostd::format::{
    FLAG_SOURCE, FLAG_SOURCE_WEIGHTS, FormatError, MAX_SOURCE_NAME, Model, ModelWriter,
    NumericScheme, PREAMBLE_LEN, SourceRecord, WeightsKind, WriteError, crc32, write_model,
};
use trm_nostd::{DType, TensorSource};

const RECORD: SourceRecord<'static> = SourceRecord {
    weights: "step_1000/model.safetensors",
    bytes: 123_456_789,
    crc32c: 0xdead_beef,
    kind: None,
};

const EMA_RECORD: SourceRecord<'static> = SourceRecord {
    weights: "step_1000/ema.safetensors",
    kind: Some(WeightsKind::Ema),
    ..RECORD
};

fn write(source: Option<&SourceRecord<'_>>) -> Vec<u8> {
    let c = tiny_mlp_t();
    let weights = random_weights(&c, 5);
    let mut w = ModelWriter::new(c, NumericScheme::Float(DType::F32)).unwrap();
    for (id, v) in &weights {
        w.add(*id, v).unwrap();
    }
    if let Some(s) = source {
        w.set_source(s).unwrap();
    }
    w.finish().unwrap()
}

fn flags(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[10], b[11]])
}

fn set_flags(b: &mut [u8], f: u16) {
    b[10..12].copy_from_slice(&f.to_le_bytes());
}

/// Recomputes the metadata checksum after an edit of the metadata region.
fn fix_meta_crc(b: &mut [u8]) {
    let end = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    let c = crc32(&b[PREAMBLE_LEN..end]);
    b[20..24].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn the_record_round_trips_and_changes_nothing_else() {
    let plain = write(None);
    let with = write(Some(&RECORD));
    let a = Model::parse(&plain).unwrap();
    let b = Model::parse(&with).unwrap();
    assert_eq!(a.source(), None);
    assert_eq!(b.source(), Some(RECORD));
    assert_eq!(flags(&plain), 0);
    assert_eq!(flags(&with), FLAG_SOURCE);
    assert_eq!(a.header(), b.header());
    assert_eq!(a.version(), b.version());
    for ((ia, va), (ib, vb)) in a.tensors().zip(b.tensors()) {
        assert_eq!(ia, ib);
        assert_eq!(va.data, vb.data);
    }
    assert_eq!(a.tensors().count(), b.tensors().count());
    // Without a record the writer's output is what `write_model` (and every writer before the
    // record) produces.
    let c = tiny_mlp_t();
    let weights = random_weights(&c, 5);
    let old = write_model(
        c,
        NumericScheme::Float(DType::F32),
        weights.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .unwrap();
    assert!(old == plain);
    assert!(Model::parse(&with).unwrap().tensor(weights[0].0).is_some());
}

#[test]
fn the_flag_and_the_record_must_agree() {
    // Flag without a record.
    let mut b = write(None);
    set_flags(&mut b, FLAG_SOURCE);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
    // A record without its flag.
    let mut b = write(Some(&RECORD));
    set_flags(&mut b, 0);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
    // An unknown flag beside it.
    let mut b = write(Some(&RECORD));
    set_flags(&mut b, FLAG_SOURCE | 4);
    assert_eq!(
        Model::parse(&b).unwrap_err(),
        FormatError::ReservedNonZero { what: "flags" }
    );
    // The weights-kind flag without the kind, and a kind without its flag.
    let mut b = write(Some(&RECORD));
    set_flags(&mut b, FLAG_SOURCE | FLAG_SOURCE_WEIGHTS);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
    let mut b = write(Some(&EMA_RECORD));
    set_flags(&mut b, FLAG_SOURCE);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
    // The weights-kind flag without a record is a reserved bit.
    let mut b = write(None);
    set_flags(&mut b, FLAG_SOURCE_WEIGHTS);
    assert_eq!(
        Model::parse(&b).unwrap_err(),
        FormatError::ReservedNonZero { what: "flags" }
    );
}

#[test]
fn the_weights_kind_round_trips_and_changes_only_the_record() {
    let raw = SourceRecord {
        kind: Some(WeightsKind::Raw),
        ..RECORD
    };
    let plain = write(Some(&RECORD));
    for r in [raw, EMA_RECORD] {
        let b = write(Some(&r));
        let m = Model::parse(&b).unwrap();
        assert_eq!(m.source(), Some(r));
        assert_eq!(flags(&b), FLAG_SOURCE | FLAG_SOURCE_WEIGHTS);
        assert_eq!(m.header(), Model::parse(&plain).unwrap().header());
        for ((ia, va), (ib, vb)) in m.tensors().zip(Model::parse(&plain).unwrap().tensors()) {
            assert_eq!(ia, ib);
            assert_eq!(va.data, vb.data);
        }
    }
    // One byte more than the record without a kind: postcard's variant index (0 raw, 1 EMA).
    let with_raw = write(Some(&raw));
    let header_len = |b: &[u8]| u32::from_le_bytes(b[12..16].try_into().unwrap());
    assert_eq!(header_len(&with_raw), header_len(&plain) + 1);
    let kind_at = PREAMBLE_LEN + header_len(&with_raw) as usize - 1;
    assert_eq!(with_raw[kind_at], 0);
    // An unknown kind (checksum made consistent): a header error.
    let mut b = with_raw;
    b[kind_at] = 7;
    fix_meta_crc(&mut b);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
    // EMA's index.
    let mut b = write(Some(&raw));
    b[kind_at] = 1;
    fix_meta_crc(&mut b);
    assert_eq!(
        Model::parse(&b).unwrap().source().unwrap().kind,
        Some(WeightsKind::Ema)
    );
    assert_eq!(WeightsKind::Ema.name(), "ema");
    assert_eq!(WeightsKind::Raw.name(), "raw");
}

#[test]
fn the_record_is_checksummed_and_its_name_checked() {
    let good = write(Some(&RECORD));
    let at = good
        .windows(RECORD.weights.len())
        .position(|w| w == RECORD.weights.as_bytes())
        .unwrap();
    // One flipped bit in the name: the metadata checksum catches it.
    let mut b = good.clone();
    b[at] ^= 1;
    assert!(matches!(
        Model::parse(&b).unwrap_err(),
        FormatError::MetadataChecksum { .. }
    ));
    // A control character, checksum made consistent: refused as a bad header.
    let mut b = good.clone();
    b[at + 2] = b'\n';
    fix_meta_crc(&mut b);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
    // Invalid UTF-8.
    let mut b = good;
    b[at] = 0xff;
    fix_meta_crc(&mut b);
    assert_eq!(Model::parse(&b).unwrap_err(), FormatError::Header);
}

#[test]
fn the_writer_refuses_bad_names() {
    let c = tiny_mlp_t();
    let mut w = ModelWriter::new(c, NumericScheme::Float(DType::F32)).unwrap();
    let long = "x".repeat(MAX_SOURCE_NAME + 1);
    for name in ["", "a\tb", "line\nbreak", long.as_str()] {
        let r = SourceRecord {
            weights: name,
            ..RECORD
        };
        assert_eq!(w.set_source(&r).unwrap_err(), WriteError::SourceName);
    }
    let longest = "y".repeat(MAX_SOURCE_NAME);
    let r = SourceRecord {
        weights: &longest,
        ..RECORD
    };
    assert!(w.set_source(&r).is_ok());
}

#[test]
fn the_committed_fixture_has_no_record() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/format_data/tiny_f16.trm"
    ))
    .unwrap();
    assert_eq!(Model::parse(&bytes).unwrap().source(), None);
}
