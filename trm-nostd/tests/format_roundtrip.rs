//! Writing and reading `.trm` files: values, shapes, alignment and summary survive the trip.

mod format_common;

use format_common::{build, micro, random_weights, tiny_attention, tiny_mlp_t};
use trm_nostd::format::{ALIGN, Model, ModelWriter, NumericScheme, write_model};
use trm_nostd::{Config, DType, PosEncoding, TensorId, TensorSource};

/// What a stored f32 reads back as, computed with `half` directly and by bit patterns.
fn expected_after(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F32 => v,
        DType::F16 => half::f16::from_f32(v).to_f32(),
        DType::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => unreachable!(),
    }
}

fn check_round_trip(config: Config, dtype: DType, seed: u64) {
    let weights = random_weights(&config, seed);
    let bytes = write_model(
        config,
        NumericScheme::Float(dtype),
        weights.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .unwrap();
    let model = Model::parse(&bytes).unwrap();
    assert_eq!(*model.config(), config);
    assert_eq!(model.scheme(), NumericScheme::Float(dtype));
    assert_eq!(model.flash_bytes(), bytes.len());
    assert_eq!(model.tensor_count(), weights.len());
    assert_eq!(model.tensors().count(), weights.len());
    let base = bytes.as_ptr() as usize;
    let mut lossy = 0usize;
    for (id, values) in &weights {
        let view = model.tensor(*id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(view.dtype, dtype, "{id}");
        assert_eq!(view.shape, id.shape(&config), "{id}");
        assert_eq!(view.data.len(), values.len() * dtype.size(), "{id}");
        assert_eq!(
            (view.data.as_ptr() as usize - base) % ALIGN,
            0,
            "{id} misaligned"
        );
        for (i, v) in values.iter().enumerate() {
            let got = view.get_f32(i).unwrap();
            let want = expected_after(dtype, *v);
            assert_eq!(got.to_bits(), want.to_bits(), "{id}[{i}]: {v}");
            if got != *v {
                lossy += 1;
            }
        }
        assert_eq!(view.get_f32(values.len()), None);
    }
    // The conversion is really exercised (random f32 values rarely fit 16 bits exactly).
    if dtype == DType::F32 {
        assert_eq!(lossy, 0);
    } else {
        assert!(lossy > 0);
    }
    let s = model.summary();
    assert_eq!(s.parameter_count, config.parameter_count());
    let all: u64 = weights.iter().map(|(_, v)| v.len() as u64).sum();
    assert_eq!(s.stored_elements, all);
    assert_eq!(s.tensor_bytes, all * dtype.size() as u64);
    assert_eq!(s.file_bytes, bytes.len());
    assert_eq!(s.metadata_bytes + s.payload_bytes, bytes.len());
    assert_eq!(s.metadata_bytes % ALIGN, 0);
    assert_eq!(Model::file_len(&bytes[..s.metadata_bytes]), Ok(bytes.len()));
}

#[test]
fn round_trip_mlp_t() {
    for (i, dtype) in [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .enumerate()
    {
        check_round_trip(tiny_mlp_t(), dtype, 10 + i as u64);
    }
}

#[test]
fn round_trip_attention_rope() {
    for (i, dtype) in [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .enumerate()
    {
        check_round_trip(tiny_attention(PosEncoding::Rope), dtype, 20 + i as u64);
    }
}

#[test]
fn round_trip_attention_learned() {
    let c = tiny_attention(PosEncoding::Learned);
    assert!(TensorId::all(&c).any(|t| t == TensorId::EmbedPos));
    for (i, dtype) in [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .enumerate()
    {
        check_round_trip(c, dtype, 30 + i as u64);
    }
}

#[test]
fn round_trip_paper_size_mlp_t_bf16() {
    // The D=128 Sudoku model the demos train (about 0.6M parameters): offsets beyond 16 bits.
    check_round_trip(Config::sudoku_mlp_t_d128(), DType::BF16, 40);
}

#[test]
fn half_conversions_round_to_nearest_even() {
    // Halfway cases, by bit pattern: 1 + 2^-11 lies halfway between 1 and the next f16
    // (1 + 2^-10) and goes to the even mantissa (1); 1 + 3 * 2^-11 goes up to 1 + 2^-9.
    // For bf16 (7 mantissa bits) the same with 2^-8 and 2^-6.
    let c = micro();
    let cases: [(DType, f32, f32); 4] = [
        (DType::F16, 1.0 + 2f32.powi(-11), 1.0),
        (DType::F16, 1.0 + 3.0 * 2f32.powi(-11), 1.0 + 2f32.powi(-9)),
        (DType::BF16, 1.0 + 2f32.powi(-8), 1.0),
        (DType::BF16, 1.0 + 3.0 * 2f32.powi(-8), 1.0 + 2f32.powi(-6)),
    ];
    for (dtype, input, want) in cases {
        let mut weights = random_weights(&c, 1);
        weights[0].1[0] = input;
        let id = weights[0].0;
        let mut w = ModelWriter::new(c, NumericScheme::Float(dtype)).unwrap();
        for (id, v) in &weights {
            w.add(*id, v).unwrap();
        }
        let bytes = w.finish().unwrap();
        let model = Model::parse(&bytes).unwrap();
        assert_eq!(
            model.tensor(id).unwrap().get_f32(0),
            Some(want),
            "{dtype:?} {input}"
        );
    }
}

#[test]
fn writer_is_deterministic_and_order_independent() {
    let c = tiny_mlp_t();
    let weights = random_weights(&c, 5);
    let a = build(&c, DType::F16, 5);
    let reversed = write_model(
        c,
        NumericScheme::Float(DType::F16),
        weights.iter().rev().map(|(id, v)| (*id, v.as_slice())),
    )
    .unwrap();
    assert_eq!(a, reversed);
    // Tensors are stored in TensorId::all order with increasing offsets.
    let model = Model::parse(&a).unwrap();
    let ids: Vec<TensorId> = model.tensors().map(|(id, _)| id).collect();
    assert_eq!(ids, TensorId::all(&c).collect::<Vec<_>>());
}

#[test]
fn parsing_does_not_depend_on_buffer_alignment() {
    // A file copied to an odd address still parses (tensors are then unaligned in memory; the
    // engines read bytes, so only speed suffers).
    let bytes = build(&micro(), DType::F32, 3);
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let model = Model::parse(&shifted[1..]).unwrap();
    assert_eq!(model.tensor_count(), TensorId::all(&micro()).count());
}

#[test]
fn summary_displays_sizes() {
    let bytes = build(&tiny_mlp_t(), DType::BF16, 8);
    let model = Model::parse(&bytes).unwrap();
    // Debug shows the header, not the file's bytes.
    let debug = format!("{model:?}");
    assert!(
        debug.contains("tensor_count") && debug.len() < 2000,
        "{debug}"
    );
    let s = model.summary();
    let text = s.to_string();
    assert!(
        text.contains(&format!("{} parameters", s.parameter_count)),
        "{text}"
    );
    assert!(
        text.contains(&format!("flash: {} bytes", bytes.len())),
        "{text}"
    );
    assert!(text.contains("mlp_t"), "{text}");
}
