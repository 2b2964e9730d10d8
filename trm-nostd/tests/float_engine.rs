//! Whole-engine tests: tiny models against an independent PyTorch computation
//! (tests/fixtures/gen_ops.py), input validation, scratch sizes, and bit-reproducibility across
//! scratch sizes.

mod float_common;

use float_common::{Fixture, assert_close};
use trm_nostd::float::{OwnedWeights, kernels};
use trm_nostd::{
    Config, ConfigError, DType, Engine, EngineError, FloatEngine, HaltMode, PosEncoding,
    ScratchLen, Shape, TensorId, digest_f32,
};

fn meta_config(f: &Fixture) -> Config {
    let m = f.metadata();
    let u = |k: &str| m[k].parse::<u32>().unwrap_or_else(|_| panic!("{k}"));
    let fl = |k: &str| m[k].parse::<f32>().unwrap_or_else(|_| panic!("{k}"));
    Config {
        hidden_size: u("hidden_size"),
        num_heads: u("num_heads"),
        expansion: fl("expansion"),
        l_layers: u("l_layers"),
        h_cycles: u("h_cycles"),
        l_cycles: u("l_cycles"),
        mlp_t: m["mlp_t"] == "true",
        pos_encodings: match m["pos_encodings"].as_str() {
            "rope" => PosEncoding::Rope,
            "learned" => PosEncoding::Learned,
            _ => PosEncoding::None,
        },
        puzzle_emb_ndim: u("puzzle_emb_ndim"),
        puzzle_emb_len: u("puzzle_emb_len"),
        num_puzzle_identifiers: u("num_puzzle_identifiers"),
        vocab_size: u("vocab_size"),
        seq_len: u("seq_len"),
        halt_max_steps: u("halt_max_steps"),
        rms_norm_eps: fl("rms_norm_eps"),
        rope_theta: fl("rope_theta"),
    }
}

fn tiny(name: &str) -> (Fixture, Config, OwnedWeights) {
    let f = Fixture::committed(&format!("float_model_{name}.safetensors"));
    let c = meta_config(&f);
    let mut w = OwnedWeights::new();
    for n in f.names() {
        if let Some(wname) = n.strip_prefix("weight.") {
            let id = OwnedWeights::id_of(&c, wname).unwrap_or_else(|| panic!("{wname}"));
            let (dtype, shape, bytes) = f.raw(&n);
            let expect = id.shape(&c);
            assert_eq!(shape.iter().product::<usize>(), expect.numel(), "{wname}");
            w.insert_raw(id, dtype, expect, bytes);
        }
    }
    (f, c, w)
}

fn tokens_of(f: &Fixture, p: usize) -> (Vec<u8>, u32) {
    let (_, _, tokens) = f.raw(&format!("puzzle{p}.tokens"));
    let (_, _, id) = f.raw(&format!("puzzle{p}.id"));
    (tokens, u32::from_le_bytes([id[0], id[1], id[2], id[3]]))
}

fn check_tiny(name: &str, expected_dtype: DType) {
    let (f, c, w) = tiny(name);
    let src = w.source();
    assert_eq!(
        trm_nostd::TensorSource::tensor(&src, TensorId::EmbedTokens).map(|v| v.dtype),
        Some(expected_dtype)
    );
    let (v, s) = (c.vocab_size as usize, c.seq_len as usize);
    // Minimal and fast scratch: both must match torch and each other bit for bit.
    let mut digests = Vec::new();
    let mut worst = 0.0f32;
    for fast in [false, true] {
        let len = if fast {
            FloatEngine::scratch_len_fast(&c).f32s
        } else {
            FloatEngine::scratch_len(&c).f32s
        };
        let mut scratch = vec![f32::NAN; len];
        let mut e = FloatEngine::new(&c, &src, &mut scratch).expect("engine");
        let mut run = Vec::new();
        for p in 0..2 {
            let (tokens, id) = tokens_of(&f, p);
            e.start(&tokens, id).expect("start");
            for k in 1..=c.halt_max_steps {
                let out = e.step();
                assert_eq!(out.step, k);
                let q = f.vals(&format!("puzzle{p}.q_step{k}"));
                // q is a short dot product of y[0] (RMS 1) with O(1) logits: absolute scale.
                for (g, w) in [out.q_halt, out.q_continue].iter().zip(&q) {
                    assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "q: {g} vs {w}");
                }
                let mut logits = vec![0.0; s * v];
                e.logits(&mut logits).expect("logits");
                let want = f.vals(&format!("puzzle{p}.logits_step{k}"));
                let err = float_common::rel_err(&logits, &want);
                worst = worst.max(err);
                assert!(
                    err <= 1e-4,
                    "{name} p{p} step {k} logits: relative error {err:e}"
                );
                run.push(digest_f32(&logits));
            }
            assert_close("y", e.y(), &f.vals(&format!("puzzle{p}.y")), 1e-4);
            assert_close("z", e.z(), &f.vals(&format!("puzzle{p}.z")), 1e-4);
            run.push(digest_f32(e.y()));
            run.push(digest_f32(e.z()));
            // predict = argmax of logits (ties low).
            let mut logits = vec![0.0; s * v];
            e.logits(&mut logits).expect("logits");
            let mut pred = vec![0u8; s];
            e.predict(&mut pred).expect("predict");
            for (t, row) in logits.chunks_exact(v).enumerate() {
                assert_eq!(pred[t] as usize, kernels::argmax(row));
            }
        }
        digests.push(run);
    }
    assert_eq!(digests[0], digests[1], "scratch size changed the bits");
    println!("{name}: max relative logits error {worst:e}");
}

#[test]
fn tiny_mlp_t_f16_matches_torch() {
    check_tiny("mlp_t", DType::F16);
}

#[test]
fn tiny_attention_rope_bf16_matches_torch() {
    check_tiny("rope", DType::BF16);
}

#[test]
fn tiny_attention_learned_f32_matches_torch() {
    check_tiny("learned", DType::F32);
}

#[test]
fn solve_modes_follow_q_halt() {
    let (f, c, w) = tiny("mlp_t");
    let src = w.source();
    let mut scratch = vec![0.0; FloatEngine::scratch_len(&c).f32s];
    let mut e = FloatEngine::new(&c, &src, &mut scratch).expect("engine");
    let (tokens, id) = tokens_of(&f, 0);
    let mut out = vec![0u8; c.seq_len as usize];
    let all = e
        .solve(&tokens, id, HaltMode::AllSteps, &mut out)
        .expect("solve");
    assert_eq!(all.steps, c.halt_max_steps);
    let mut pred = vec![0u8; out.len()];
    e.predict(&mut pred).expect("predict");
    assert_eq!(out, pred);
    // Early halt stops at the first positive q_halt of the fixture's run.
    let first_pos = (1..=c.halt_max_steps)
        .find(|k| f.vals(&format!("puzzle0.q_step{k}"))[0] > 0.0)
        .unwrap_or(c.halt_max_steps);
    let early = e
        .solve(&tokens, id, HaltMode::EarlyHalt, &mut out)
        .expect("solve");
    assert_eq!(early.steps, first_pos);
    assert_eq!(e.steps(), first_pos);
}

#[test]
fn bad_inputs_are_errors() {
    let (_, c, w) = tiny("mlp_t");
    let src = w.source();
    let mut scratch = vec![0.0; FloatEngine::scratch_len(&c).f32s];
    let mut e = FloatEngine::new(&c, &src, &mut scratch).expect("engine");
    let s = c.seq_len as usize;
    assert_eq!(
        e.start(&vec![1; s - 1], 0),
        Err(EngineError::BadInputLength {
            expected: s,
            got: s - 1
        })
    );
    let mut t = vec![1u8; s];
    t[3] = c.vocab_size as u8;
    assert_eq!(e.start(&t, 0), Err(EngineError::BadToken { pos: 3 }));
    let id = c.num_puzzle_identifiers;
    assert_eq!(
        e.start(&vec![1; s], id),
        Err(EngineError::BadPuzzleId { id })
    );
    let mut short = vec![0.0; 3];
    assert!(matches!(
        e.logits(&mut short),
        Err(EngineError::BadOutputLength { .. })
    ));
    let mut out = vec![0u8; s + 1];
    assert!(matches!(
        e.solve(&vec![1; s], 0, HaltMode::AllSteps, &mut out),
        Err(EngineError::BadOutputLength { .. })
    ));
    // Every error has a message.
    assert!(EngineError::BadToken { pos: 3 }.to_string().contains('3'));
}

#[test]
fn bad_models_are_errors() {
    let (_, c, w) = tiny("rope");
    let need = FloatEngine::scratch_len(&c).f32s;
    let mut scratch = vec![0.0; need];
    // Missing tensor.
    let qkv = TensorId::Layer {
        layer: 1,
        tensor: trm_nostd::LayerTensor::QkvProj,
    };
    let mut w2 = w.clone();
    assert!(w2.remove(qkv));
    assert_eq!(
        FloatEngine::new(&c, &w2.source(), &mut scratch).err(),
        Some(EngineError::MissingTensor(qkv))
    );
    // Wrong shape.
    let mut w3 = w.clone();
    w3.insert_f32(TensorId::HInit, Shape::vector(3), &[0.0; 3]);
    assert!(matches!(
        FloatEngine::new(&c, &w3.source(), &mut scratch).err(),
        Some(EngineError::BadShape {
            tensor: TensorId::HInit,
            ..
        })
    ));
    // Integer dtype.
    let mut w4 = w.clone();
    let d = c.d();
    w4.insert_raw(TensorId::LInit, DType::I8, Shape::vector(d), vec![0; d]);
    assert_eq!(
        FloatEngine::new(&c, &w4.source(), &mut scratch).err(),
        Some(EngineError::BadDType {
            tensor: TensorId::LInit,
            dtype: DType::I8
        })
    );
    // Truncated data.
    let mut w5 = w.clone();
    w5.insert_raw(
        TensorId::LInit,
        DType::F32,
        Shape::vector(d),
        vec![0; 4 * d - 1],
    );
    assert_eq!(
        FloatEngine::new(&c, &w5.source(), &mut scratch).err(),
        Some(EngineError::BadData(TensorId::LInit))
    );
    // Scratch one short.
    let mut small = vec![0.0; need - 1];
    assert_eq!(
        FloatEngine::new(&c, &w.source(), &mut small).err(),
        Some(EngineError::ScratchTooSmall {
            need: ScratchLen {
                f32s: need,
                ..ScratchLen::default()
            },
            got: ScratchLen {
                f32s: need - 1,
                ..ScratchLen::default()
            }
        })
    );
    // Invalid config.
    let mut bad = c;
    bad.num_heads = 3;
    assert_eq!(
        FloatEngine::new(&bad, &w.source(), &mut scratch).err(),
        Some(EngineError::Config(ConfigError::BadHeads))
    );
}

/// The scratch sizes documented in `trm_nostd::float` (bytes), checked against an independent
/// count of the buffers and against what the engine actually carves.
#[test]
fn documented_scratch_sizes() {
    let documented = [
        (Config::sudoku_mlp_t(), 858_112usize, 8_183_808usize),
        (Config::sudoku_attention(), 1_305_476, 2_987_584),
        (Config::sudoku_mlp_t_d128(), 219_136, 804_864),
    ];
    for (c, min_bytes, fast_bytes) in documented {
        // Independent count: x, y, z; work; RoPE tables; one weight row; scores; row blocks of
        // the widest SwiGLU (2 inter) and the widest output row.
        let (l, d, hd) = (c.seq_total(), c.d(), c.head_dim());
        let (inter, inter_t) = (c.mlp_inter(), c.mlp_t_inter());
        let (work, rope, scores, wide_inter, wide_out, rows_max) = if c.mlp_t {
            (l * d, 0, 0, inter.max(inter_t), l.max(d), l.max(d))
        } else {
            let rope = if c.pos_encodings == PosEncoding::Rope {
                2 * l * hd
            } else {
                0
            };
            (3 * l * d, rope, l, inter, d, l)
        };
        let wrow = wide_inter.max(wide_out);
        let base = 3 * l * d + work + rope + wrow + scores;
        let per_row = 2 * wide_inter + wide_out;
        assert_eq!(FloatEngine::scratch_len(&c).f32s, base + 4 * per_row);
        // The fast size replaces the weight row by a tile of 8 rows padded to 8-value chunks,
        // and (attention) the scores of one row by those of every head plus their sums and a
        // tile of 8 key rows.
        let tile = 8 * wrow.div_ceil(8) * 8;
        let heads = c.num_heads as usize;
        let scores_fast = if c.mlp_t {
            0
        } else {
            heads * l * l + heads * l + 8 * hd.div_ceil(8) * 8
        };
        let base_fast = 3 * l * d + work + rope + tile + scores_fast;
        assert_eq!(
            FloatEngine::scratch_len_fast(&c).f32s,
            base_fast + rows_max * per_row
        );
        assert_eq!(
            4 * FloatEngine::scratch_len(&c).f32s,
            min_bytes,
            "docs are stale"
        );
        assert_eq!(
            4 * FloatEngine::scratch_len_fast(&c).f32s,
            fast_bytes,
            "docs are stale"
        );

        // What new() carves.
        let w = OwnedWeights::random(&c, 5, DType::BF16);
        for len in [
            FloatEngine::scratch_len(&c).f32s,
            FloatEngine::scratch_len_fast(&c).f32s,
        ] {
            let mut scratch = vec![0.0; len + 3];
            let e = FloatEngine::new(&c, &w.source(), &mut scratch).expect("engine");
            assert_eq!(e.scratch_used(), len);
        }
        let mut scratch = vec![0.0; FloatEngine::scratch_len(&c).f32s];
        let e = FloatEngine::new(&c, &w.source(), &mut scratch).expect("engine");
        assert_eq!(e.row_block(), 4);
    }
}

#[test]
fn random_model_is_reproducible_and_dtype_consistent() {
    // bf16 weights read in place equal the same values stored as f32, bit for bit.
    let mut c = Config::sudoku_mlp_t_d128();
    c.h_cycles = 1;
    c.l_cycles = 1;
    let wb = OwnedWeights::random(&c, 9, DType::BF16);
    // The same values, widened to f32 by the bf16 rule.
    let mut wf = OwnedWeights::new();
    let src = wb.source();
    for id in TensorId::all(&c) {
        let v = trm_nostd::TensorSource::tensor(&src, id).expect("present");
        let vals: Vec<f32> = (0..v.shape.numel())
            .map(|i| v.get_f32(i).expect("f"))
            .collect();
        wf.insert_f32(id, v.shape, &vals);
    }
    let tokens: Vec<u8> = (0..81).map(|i| (i * 7 % 11) as u8).collect();
    let mut digests = Vec::new();
    for w in [&wb, &wf] {
        let mut scratch = vec![0.0; FloatEngine::scratch_len(&c).f32s];
        let mut e = FloatEngine::new(&c, &w.source(), &mut scratch).expect("engine");
        e.start(&tokens, 0).expect("start");
        let out = e.step();
        assert!(out.q_halt.is_finite());
        digests.push((digest_f32(e.y()), digest_f32(e.z()), out.q_halt.to_bits()));
    }
    assert_eq!(digests[0], digests[1]);
}
