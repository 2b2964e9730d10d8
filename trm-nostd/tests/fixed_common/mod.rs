//! Synthetic `Fixed` models for the `fixed_*` tests and the integer-engine benchmark: valid
//! format-v2 files with every quantization table the engine reads, filled either with random
//! int8 weights and multipliers prepared by `trm_nostd::fixed::prepare` (activations stay in a
//! realistic int16 range), or with worst-case values (every weight -128 or 127, every
//! embedding at the int16 extremes, multipliers at their largest, so everything saturates).
//!
//! [`fixed_model_with`] stores weight matrices as int16 instead (scheme `FIXED_I16_I16`), all
//! or some of them: over the whole int16 range, or as the int8 model's weights times `2^k` with
//! every channel shift `+ k` (the same results as the int8 model, exactly).
//!
//! These models are not trained: they exercise the arithmetic (speed, bit-identity across
//! kernel implementations, overflow), not accuracy.
//!
//! [`isas`] and [`with_isa`] are how the tests choose kernel implementations: the first lists
//! the ones to test, the second runs engine code on one of them.
#![allow(dead_code)]

use std::sync::{Mutex, PoisonError};

use trm_nostd::fixed::kernels::{Requant, Requant2, SILU_TABLE_LEN};
use trm_nostd::fixed::optimized::{self, Isa};
use trm_nostd::fixed::{prepare, tables};
use trm_nostd::format::{FIXED_I8_I16, FIXED_I16_I16, ModelWriter};
use trm_nostd::tensor::LayerTensor;
use trm_nostd::{Config, DType, PosEncoding, TensorId};

/// The kernel implementations the tests compare: every one of [`Isa::ALL`] this machine
/// supports, the portable reference first. On x86_64 the CPU's own feature detection must
/// agree, so that a broken detection cannot make the comparisons vacuous (an implementation
/// added to [`Isa::ALL`] gets its line here).
pub fn isas() -> Vec<Isa> {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_supported()).collect();
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(
            isas.contains(&Isa::Avx2),
            std::is_x86_feature_detected!("avx2")
        );
        assert_eq!(
            isas.contains(&Isa::Avx512),
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
        );
        assert_eq!(
            isas.contains(&Isa::Avx512Vnni),
            isas.contains(&Isa::Avx512) && std::is_x86_feature_detected!("avx512vnni")
        );
        assert!(!isas.contains(&Isa::Amx) || isas.contains(&Isa::Avx512Vnni));
    }
    assert_eq!(isas.first(), Some(&Isa::Portable));
    assert!(!isas.contains(&Isa::ArmDsp) || cfg!(target_arch = "arm"));
    isas
}

/// Held by [`with_isa`]: the engine's kernel implementation is one process-wide choice
/// ([`optimized::select`]) and the tests of one binary run on parallel threads.
static ISA_CHOICE: Mutex<()> = Mutex::new(());

/// Runs `f` with the engine's kernels on `isa` (which this machine must support), holding
/// [`ISA_CHOICE`] so that no other test changes the choice meanwhile, then restores
/// [`Isa::best`] (also when `f` panics). Tests that choose an implementation go through here,
/// never through [`optimized::select`] directly; other tests may run engines at the same time
/// (every implementation gives the same results, only the speed differs).
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    /// Restores the default choice when dropped, before the lock is released.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            optimized::select(Isa::best());
        }
    }
    let _choice = ISA_CHOICE.lock().unwrap_or_else(PoisonError::into_inner);
    let _restore = Restore;
    assert!(
        optimized::select(isa),
        "{} is not supported here",
        isa.name()
    );
    assert_eq!(optimized::selected(), isa);
    f()
}

/// SplitMix64, so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A uniform value in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// Any int16.
    pub fn i16(&mut self) -> i16 {
        self.next() as i16
    }
}

/// What the synthetic model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Random int8 weights over the whole range (-128 included), multipliers that keep the
    /// activations around the int16 scale of a post-norm state.
    Random,
    /// Worst case: weights alternate by row between all -128 and all 127, embeddings and
    /// inits at -32768 / 32767, every multiplier `i32::MAX` with shift 0 (the largest gain a
    /// table can hold), eps term at its maximum: every accumulator sees its extreme inputs.
    Extreme,
}

fn words_bytes(words: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    tables::push_words(&mut out, words);
    out
}

/// A requant word pair.
fn rq_words(r: Requant) -> [i32; 2] {
    [r.mult, r.shift as i32]
}

/// The channel block of `rows` rows, all with `r`.
fn channel_block(rows: usize, r: Requant) -> Vec<i32> {
    let mut w = vec![rows as i32];
    for _ in 0..rows {
        w.extend(rq_words(r));
    }
    w
}

fn packed_i16(v: &[i16]) -> Vec<i32> {
    let mut bytes = Vec::new();
    tables::push_i16s(&mut bytes, v);
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// How [`fixed_model_with`] stores the weight matrices it widens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// Every matrix int8 in a `FIXED_I8_I16` file ([`fixed_model`]).
    I8,
    /// The chosen matrices int16 over the whole range (`Fill::Random`: uniform int16 weights,
    /// multipliers 256 times smaller than the int8 ones; `Fill::Extreme`: rows of all -32768
    /// and all 32767 with the largest multiplier), in a `FIXED_I16_I16` file.
    I16,
    /// The chosen matrices int16 holding the int8 model's weights times `2^k` (the same random
    /// draws), their channel shifts `+ k`: `round(2^k acc m / 2^(s+k)) = round(acc m / 2^s)`,
    /// so the engine's results are those of the int8 model (same seed, same fill) exactly.
    /// In a `FIXED_I16_I16` file.
    I8Scaled(u32),
}

/// A valid `Fixed` `.trm` file for `c`, every weight matrix int8.
pub fn fixed_model(c: &Config, seed: u64, fill: Fill) -> Vec<u8> {
    fixed_model_with(c, seed, fill, Weights::I8, |_| false)
}

/// A valid `Fixed` `.trm` file for `c` whose weight matrices `wide(id)` are int16 as
/// `weights` says (the others int8, as in [`fixed_model`]).
pub fn fixed_model_with(
    c: &Config,
    seed: u64,
    fill: Fill,
    weights: Weights,
    wide: impl Fn(TensorId) -> bool,
) -> Vec<u8> {
    fixed_model_tagged(c, seed, fill, weights, wide, tables::TAG)
}

/// [`fixed_model_with`] with the global block's tag `tag` ([`tables::TAG`], or
/// [`tables::TAG_EXACT_PRODUCTS`] for exact SwiGLU products; the tables are the same).
pub fn fixed_model_tagged(
    c: &Config,
    seed: u64,
    fill: Fill,
    weights: Weights,
    wide: impl Fn(TensorId) -> bool,
    tag: i32,
) -> Vec<u8> {
    let mut rng = Rng(seed);
    let (d, l) = (c.d(), c.seq_total());
    let extreme = fill == Fill::Extreme;
    let max_rq = Requant {
        mult: i32::MAX,
        shift: 0,
    };
    // Multiplier of a matrix with `cols` inputs: int8 weights (std ~74) times int16 inputs
    // (std ~32767 / sqrt(D) for a normalized state) brought back to that int16 range.
    let mat_rq = |cols: usize| -> Requant {
        if extreme {
            max_rq
        } else {
            prepare::requant(1.0 / (74.0 * (cols as f64).sqrt())).expect("requant")
        }
    };
    let small_rq = |m: f64| -> Requant {
        if extreme {
            max_rq
        } else {
            prepare::requant(m).expect("requant")
        }
    };
    let state_scale = (d as f64).sqrt() / 32767.0;
    let silu: [i16; SILU_TABLE_LEN] = if extreme {
        core::array::from_fn(|k| if k % 2 == 0 { i16::MIN } else { i16::MAX })
    } else {
        prepare::silu_table(state_scale, state_scale)
    };
    let eps = |n: usize| -> u64 {
        if extreme {
            u64::MAX // the engine caps it at EPS_TERM_MAX
        } else {
            prepare::eps_term(n, c.rms_norm_eps as f64, state_scale)
        }
    };

    let scheme = if weights == Weights::I8 {
        FIXED_I8_I16
    } else {
        FIXED_I16_I16
    };
    let mut w = ModelWriter::new(*c, scheme).expect("writer");
    for id in TensorId::all(c) {
        let shape = id.shape(c);
        let (rows, cols) = (shape.rows as usize, shape.cols as usize);
        let n = shape.numel();
        let i16_data = |rng: &mut Rng, amp: i64| -> Vec<u8> {
            (0..n)
                .flat_map(|i| {
                    let v = if extreme {
                        if i % 3 == 0 { i16::MAX } else { i16::MIN }
                    } else {
                        rng.range(-amp, amp) as i16
                    };
                    v.to_le_bytes()
                })
                .collect()
        };
        let i8_data = |rng: &mut Rng| -> Vec<u8> {
            (0..n)
                .map(|i| {
                    if extreme {
                        if (i / cols) % 2 == 0 { 0x80 } else { 0x7f }
                    } else {
                        rng.next() as u8
                    }
                })
                .collect()
        };
        // A weight matrix: (dtype, data, channel multiplier), int8 or widened.
        let matrix = |rng: &mut Rng, rq: Requant| -> (DType, Vec<u8>, Requant) {
            let wide = wide(id) && weights != Weights::I8;
            match weights {
                _ if !wide => (DType::I8, i8_data(rng), rq),
                Weights::I8 => unreachable!(),
                Weights::I16 => {
                    let data = (0..n)
                        .flat_map(|i| {
                            let v = if extreme {
                                if (i / cols) % 2 == 0 {
                                    i16::MIN
                                } else {
                                    i16::MAX
                                }
                            } else {
                                rng.i16()
                            };
                            v.to_le_bytes()
                        })
                        .collect();
                    let rq = if extreme {
                        rq
                    } else {
                        // Uniform int16 weights: std ~18918 = 256 x the int8 std of ~74.
                        prepare::requant(1.0 / (74.0 * 256.0 * (cols as f64).sqrt()))
                            .expect("requant")
                    };
                    (DType::I16, data, rq)
                }
                Weights::I8Scaled(k) => {
                    let data = i8_data(rng)
                        .into_iter()
                        .flat_map(|b| (((b as i8) as i16) << k).to_le_bytes())
                        .collect();
                    let rq = Requant {
                        mult: rq.mult,
                        shift: rq.shift + k,
                    };
                    (DType::I16, data, rq)
                }
            }
        };
        match id {
            TensorId::EmbedTokens => {
                let rope_half = if !c.mlp_t && c.pos_encodings == PosEncoding::Rope {
                    l * c.head_dim() / 2
                } else {
                    0
                };
                let r2: Requant2 = if extreme {
                    Requant2 {
                        ma: i32::MAX,
                        mb: i32::MAX,
                        shift: 0,
                    }
                } else {
                    prepare::requant2(0.5, 0.5).expect("requant2")
                };
                let ryz = small_rq(0.5);
                let mut t = vec![
                    tag,
                    r2.ma,
                    r2.mb,
                    r2.shift as i32,
                    ryz.mult,
                    ryz.shift as i32,
                    (4.0f32 / 32767.0).to_bits() as i32,
                    (state_scale as f32).to_bits() as i32,
                    (2.0 * state_scale as f32).to_bits() as i32,
                    rope_half as i32,
                ];
                if rope_half > 0 {
                    let (cos, sin) = if extreme {
                        (vec![i16::MIN; rope_half], vec![i16::MAX; rope_half])
                    } else {
                        prepare::rope_tables_q15(l, c.head_dim(), c.rope_theta as f64)
                    };
                    t.extend(packed_i16(&cos));
                    t.extend(packed_i16(&sin));
                }
                let data = i16_data(&mut rng, 8000);
                w.add_raw(id, DType::I16, data, words_bytes(&t))
                    .expect("add");
            }
            TensorId::EmbedPos | TensorId::PuzzleEmb => {
                let data = i16_data(&mut rng, 4000);
                w.add_raw(id, DType::I16, data, vec![]).expect("add");
            }
            TensorId::HInit | TensorId::LInit => {
                let data = i16_data(&mut rng, 32767 / (d as i64).isqrt().max(1) * 2);
                w.add_raw(id, DType::I16, data, vec![]).expect("add");
            }
            TensorId::QHeadBias => {
                let data: Vec<u8> = (0..n)
                    .flat_map(|i| {
                        let v = if extreme {
                            if i == 0 { i32::MAX } else { i32::MIN }
                        } else {
                            rng.range(-1000, 1000) as i32
                        };
                        v.to_le_bytes()
                    })
                    .collect();
                w.add_raw(id, DType::I32, data, vec![]).expect("add");
            }
            TensorId::LmHead | TensorId::QHeadWeight => {
                let (dtype, data, rq) = matrix(&mut rng, mat_rq(cols));
                let mut t = channel_block(rows, rq);
                t.push(0.01f32.to_bits() as i32);
                w.add_raw(id, dtype, data, words_bytes(&t)).expect("add");
            }
            TensorId::Layer { tensor, .. } => {
                let (dtype, data, rq) = matrix(&mut rng, mat_rq(cols));
                let mut t = channel_block(rows, rq);
                match tensor {
                    LayerTensor::MlpGateUp | LayerTensor::MlpTGateUp => {
                        t.extend(rq_words(small_rq(1.0 / 1700.0)));
                        t.extend(packed_i16(&silu));
                        assert_eq!(t.len(), tables::gate_up_words(rows));
                    }
                    LayerTensor::QkvProj => {
                        let hd = c.head_dim() as f64;
                        t.extend(rq_words(small_rq(
                            65536.0 * std::f64::consts::LOG2_E / (hd.sqrt() * 1700.0 * 1700.0)
                                * 4.0,
                        )));
                        assert_eq!(t.len(), tables::qkv_words(rows));
                    }
                    LayerTensor::MlpDown | LayerTensor::MlpTDown | LayerTensor::OProj => {
                        let e = eps(rows);
                        t.extend([e as u32 as i32, (e >> 32) as u32 as i32]);
                        assert_eq!(t.len(), tables::down_words(rows));
                    }
                }
                w.add_raw(id, dtype, data, words_bytes(&t)).expect("add");
            }
        }
    }
    w.finish().expect("finish")
}

/// A small config with sizes that are not multiples of any vector width (D = 40, L = 13).
pub fn odd_mlp_t() -> Config {
    let mut c = Config::sudoku_mlp_t();
    c.hidden_size = 40;
    c.num_heads = 4;
    c.expansion = 2.0;
    c.puzzle_emb_ndim = 40;
    c.puzzle_emb_len = 2;
    c.num_puzzle_identifiers = 2;
    c.seq_len = 11;
    c.vocab_size = 7;
    c.h_cycles = 2;
    c.l_cycles = 2;
    c.halt_max_steps = 3;
    c
}

/// The same with RoPE attention (head dim 10: not a multiple of a vector width either).
pub fn odd_attention() -> Config {
    let mut c = odd_mlp_t();
    c.mlp_t = false;
    c.pos_encodings = PosEncoding::Rope;
    c
}
