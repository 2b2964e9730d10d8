//! The integer engine with int16 weight matrices (scheme `FIXED_I16_I16`):
//!
//! - an int16 matrix in an int8-only (`FIXED_I8_I16`) file is refused
//!   (`EngineError::BadTensor`), for every weight matrix, while the same tensors in a
//!   `FIXED_I16_I16` file run;
//! - int16 weights equal to the int8 model's times `2^k` (k = 0: the same values; k = 8: the
//!   high byte only), with each channel shift `+ k`, give exactly the int8 engine's steps,
//!   states and logits (the kernels compute exact sums, the requantization rounds the same
//!   value), every matrix or every other one int16, with each kernel implementation and row
//!   blocking;
//! - with int16 weights over the whole range, the logits equal an i128 recomputation from the
//!   engine's `y`, the stored weights and the stored multipliers.

mod fixed_common;

use fixed_common::{
    Fill, Weights, fixed_model, fixed_model_with, isas, odd_attention, odd_mlp_t, with_isa,
};
use trm_nostd::format::{FIXED_I8_I16, FIXED_I16_I16, Model, ModelWriter, NumericScheme};
use trm_nostd::{
    Config, DType, Engine, EngineError, FixedEngine, ScratchLen, StepOutput, TensorId, TensorSource,
};

fn is_matrix(id: TensorId) -> bool {
    matches!(
        id,
        TensorId::LmHead | TensorId::QHeadWeight | TensorId::Layer { .. }
    )
}

/// The weight matrices of `c`, in file order.
fn matrices(c: &Config) -> Vec<TensorId> {
    TensorId::all(c).filter(|&id| is_matrix(id)).collect()
}

/// The same tensors (dtype, data, table) in a file of another scheme.
fn rewrite(bytes: &[u8], scheme: NumericScheme) -> Vec<u8> {
    let m = Model::parse(bytes).expect("parse");
    let mut w = ModelWriter::new(*m.config(), scheme).expect("writer");
    for (id, v) in m.tensors() {
        let table = m.quant_table(id).unwrap_or(&[]).to_vec();
        w.add_raw(id, v.dtype, v.data.to_vec(), table).expect("add");
    }
    w.finish().expect("finish")
}

fn engine_result(bytes: &[u8], scratch: ScratchLen) -> Result<(), EngineError> {
    let model = Model::parse(bytes).expect("parse");
    let (mut s16, mut s32) = (vec![0i16; scratch.i16s], vec![0i32; scratch.i32s]);
    FixedEngine::new(&model, &mut s16, &mut s32).map(|_| ())
}

#[test]
fn int16_matrix_in_an_int8_file_is_refused() {
    for c in [odd_mlp_t(), odd_attention()] {
        let need = FixedEngine::scratch_len(&c);
        let mats = matrices(&c);
        assert!(mats.len() >= 4, "{mats:?}");
        for &id in &mats {
            let wide = fixed_model_with(&c, 1, Fill::Random, Weights::I16, |t| t == id);
            assert_eq!(Model::parse(&wide).unwrap().scheme(), FIXED_I16_I16);
            assert_eq!(
                Model::parse(&wide).unwrap().tensor(id).unwrap().dtype,
                DType::I16
            );
            // Runs as FIXED_I16_I16 ...
            assert_eq!(engine_result(&wide, need), Ok(()), "{id} as FIXED_I16_I16");
            // ... and the same tensors in an int8-only file are refused, naming the matrix.
            let narrow = rewrite(&wide, FIXED_I8_I16);
            assert_eq!(Model::parse(&narrow).unwrap().scheme(), FIXED_I8_I16);
            assert_eq!(
                engine_result(&narrow, need),
                Err(EngineError::BadTensor(id)),
                "{id} as FIXED_I8_I16"
            );
        }
        // The int8 model runs under either scheme (int8 matrices are allowed in both).
        let int8 = fixed_model(&c, 1, Fill::Random);
        assert_eq!(engine_result(&int8, need), Ok(()));
        assert_eq!(engine_result(&rewrite(&int8, FIXED_I16_I16), need), Ok(()));
    }
}

/// One ACT step's observable results.
type Trace = Vec<(StepOutput<i32>, Vec<i16>, Vec<i16>, Vec<i32>)>;

/// Steps, states and logits of `halt_max_steps` steps from one start.
fn run(c: &Config, bytes: &[u8], scratch: ScratchLen) -> Trace {
    let model = Model::parse(bytes).expect("parse");
    let (mut s16, mut s32) = (vec![0i16; scratch.i16s], vec![0i32; scratch.i32s]);
    let mut engine = FixedEngine::new(&model, &mut s16, &mut s32).expect("engine");
    let tokens: Vec<u8> = (0..c.seq_len)
        .map(|i| ((i * 3 + 1) % c.vocab_size) as u8)
        .collect();
    engine.start(&tokens, 1).expect("start");
    let mut trace = Vec::new();
    for _ in 0..c.halt_max_steps {
        let s = engine.step();
        let mut logits = vec![0i32; (c.seq_len * c.vocab_size) as usize];
        engine.logits(&mut logits).expect("logits");
        trace.push((s, engine.y().to_vec(), engine.z().to_vec(), logits));
    }
    trace
}

#[test]
fn int16_weights_times_2k_equal_the_int8_engine() {
    for c in [odd_mlp_t(), odd_attention()] {
        let mats = matrices(&c);
        let scratches = [
            FixedEngine::scratch_len(&c),
            FixedEngine::scratch_len_fast(&c),
        ];
        for fill in [Fill::Random, Fill::Extreme] {
            let int8 = fixed_model(&c, 21, fill);
            let want = run(&c, &int8, scratches[0]);
            if fill == Fill::Random {
                // Moving states and varied logits: the comparison is not vacuous.
                assert_ne!(want[0].1, want[1].1, "y does not change between steps");
                assert!(want[0].3.iter().any(|&v| v != want[0].3[0]));
            }
            for k in [0, 8] {
                for every_other in [false, true] {
                    let chosen = |id: TensorId| {
                        !every_other || mats.iter().position(|&m| m == id).unwrap() % 2 == 0
                    };
                    let wide = fixed_model_with(&c, 21, fill, Weights::I8Scaled(k), chosen);
                    // The int16 matrices hold the int8 values times 2^k.
                    let (m8, m16) = (Model::parse(&int8).unwrap(), Model::parse(&wide).unwrap());
                    for &id in &mats {
                        let (v8, v16) = (m8.tensor(id).unwrap(), m16.tensor(id).unwrap());
                        if chosen(id) {
                            assert_eq!(v16.dtype, DType::I16, "{id}");
                            let widened: Vec<u8> = v8
                                .data
                                .iter()
                                .flat_map(|&b| (((b as i8) as i16) << k).to_le_bytes())
                                .collect();
                            assert_eq!(v16.data, &widened[..], "{id}");
                        } else {
                            assert_eq!((v16.dtype, v16.data), (DType::I8, v8.data), "{id}");
                        }
                    }
                    for isa in isas() {
                        with_isa(isa, || {
                            for &scratch in &scratches {
                                assert!(
                                    run(&c, &wide, scratch) == want,
                                    "k={k} every_other={every_other} {fill:?} {} {scratch:?}",
                                    isa.name()
                                );
                            }
                        });
                    }
                }
            }
        }
    }
}

/// `round(acc * mult / 2^shift)` (half up, floor division) in i128, clamped to i32: the
/// documented requantization and logit saturation, computed independently.
fn requant_i128(acc: i128, mult: i32, shift: u32) -> i32 {
    let p = acc * mult as i128;
    let r = if shift == 0 {
        p
    } else {
        (p + (1i128 << (shift - 1))).div_euclid(1i128 << shift)
    };
    r.clamp(i32::MIN as i128, i32::MAX as i128) as i32
}

#[test]
fn int16_logits_equal_an_i128_recomputation() {
    for c in [odd_mlp_t(), odd_attention()] {
        let wide = fixed_model_with(&c, 8, Fill::Random, Weights::I16, |_| true);
        let m = Model::parse(&wide).unwrap();
        let lm = m.tensor(TensorId::LmHead).unwrap();
        assert_eq!(lm.dtype, DType::I16);
        let table: Vec<i32> = m
            .quant_table(TensorId::LmHead)
            .unwrap()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (d, v) = (c.d(), c.vocab_size as usize);
        assert_eq!(table[0] as usize, v);
        let weights: Vec<i16> = lm
            .data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // Full-range int16 weights: most of them outside the int8 range times 256.
        assert!(weights.iter().filter(|&&w| w % 256 != 0).count() > weights.len() / 2);
        let scratches = [
            FixedEngine::scratch_len(&c),
            FixedEngine::scratch_len_fast(&c),
        ];
        for isa in isas() {
            with_isa(isa, || {
                for scratch in scratches {
                    let (mut s16, mut s32) = (vec![0i16; scratch.i16s], vec![0i32; scratch.i32s]);
                    let mut engine = FixedEngine::new(&m, &mut s16, &mut s32).unwrap();
                    let tokens: Vec<u8> =
                        (0..c.seq_len).map(|i| (i % c.vocab_size) as u8).collect();
                    engine.start(&tokens, 0).unwrap();
                    let y0 = engine.y().to_vec();
                    engine.step();
                    engine.step();
                    let y = engine.y();
                    assert_ne!(y, &y0[..], "y does not move");
                    let mut logits = vec![0i32; c.seq_len as usize * v];
                    engine.logits(&mut logits).unwrap();
                    let mut nonzero = 0;
                    for t in 0..c.seq_len as usize {
                        let p = c.puzzle_emb_len as usize + t;
                        for k in 0..v {
                            let acc: i128 = (0..d)
                                .map(|j| weights[k * d + j] as i128 * y[p * d + j] as i128)
                                .sum();
                            let (mult, shift) = (table[1 + 2 * k], table[2 + 2 * k] as u32);
                            let want = requant_i128(acc, mult, shift);
                            assert_eq!(logits[t * v + k], want, "{} t={t} k={k}", isa.name());
                            nonzero += (want != 0) as usize;
                        }
                    }
                    assert!(nonzero > logits.len() / 2, "logits mostly zero");
                }
            });
        }
    }
}
