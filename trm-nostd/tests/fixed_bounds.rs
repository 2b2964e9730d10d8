//! No accumulator of the integer path can overflow: every kernel at the largest sizes the
//! engine accepts (`Config::validate`: every size <= `MAX_DIM` = 2^16, `expansion` <= 64) with
//! worst-case values (weights -128 / 127 or, stored as int16, -32768 / 32767, activations
//! -32768 / 32767, the largest residuals, softmax weights and multipliers), against i128
//! references; and whole engine runs on worst-case models (int8 weights, every matrix int16,
//! and a mix), where the test profile's overflow checks turn any overflow into a panic.
//!
//! The bounds themselves are documented in `trm_nostd::fixed::kernels` (module docs).

mod fixed_common;

use fixed_common::{
    Fill, Weights, fixed_model, fixed_model_with, isas, odd_attention, odd_mlp_t, with_isa,
};
use trm_nostd::config::{MAX_DIM, swiglu_inter};
use trm_nostd::fixed::kernels::{
    ACC_CHUNK, EPS_TERM_MAX, I16Table, MAX_SHIFT, NORM_ONE, RESIDUAL_MAX, Requant, Requant2,
    attention_row, dot_a16_a16, dot_w8_a16, dot_w16_a16, exp2_neg_q30, rms_norm, rope, silu,
    softmax_q30,
};
use trm_nostd::fixed::optimized;
use trm_nostd::format::Model;
use trm_nostd::{Config, DType, HaltMode, TensorId};
use trm_nostd::{Engine, FixedEngine};

/// The longest dot product the engine can run: the SwiGLU `down` rows of the widest valid
/// config (D = 2^16, expansion 64), longer than any other row (D, L, the mlp_t width).
fn max_dot_len() -> usize {
    let n = swiglu_inter(MAX_DIM, 64.0) as usize;
    // And the config is accepted (so this is a size the engine really runs): the widest one,
    // with the least recursion and sequence, so that it is within the work limits of a puzzle
    // (`MAX_MACS_PER_PUZZLE`).
    let mut c = Config::sudoku_mlp_t();
    c.hidden_size = MAX_DIM;
    c.num_heads = 1;
    c.expansion = 64.0;
    c.puzzle_emb_ndim = 0;
    c.seq_len = 1;
    c.l_layers = 1;
    c.h_cycles = 1;
    c.l_cycles = 1;
    c.halt_max_steps = 1;
    c.validate().expect("widest config is valid");
    assert_eq!(c.mlp_inter(), n);
    // An mlp_t token mixer over the longest sequence is narrower.
    assert!(swiglu_inter(MAX_DIM, 64.0) as usize >= c.mlp_t_inter());
    // A wider one is refused.
    c.expansion = 64.5;
    assert!(c.validate().is_err());
    n
}

/// Whether `+` panics on overflow in this build (the test profile keeps overflow checks).
fn overflow_checks_on() -> bool {
    std::panic::catch_unwind(|| std::hint::black_box(i32::MAX) + std::hint::black_box(1)).is_err()
}

#[test]
fn dot_w8_a16_at_the_largest_length() {
    let n = max_dot_len();
    println!(
        "longest dot product: {n} elements (2^{:.2})",
        (n as f64).log2()
    );
    // The documented bound: |total| <= n 2^22 < 2^63.
    assert!((n as i128) << 22 < i64::MAX as i128);
    let isas = isas();
    for (w, a) in [
        (-128i8, i16::MIN),
        (-128, i16::MAX),
        (127, i16::MIN),
        (127, i16::MAX),
    ] {
        let wv = vec![w as u8; n];
        let av = vec![a; n];
        let exact = n as i128 * w as i128 * a as i128;
        // The reference's i32 partial sums: a full chunk of extreme products, in i128.
        let chunk = ACC_CHUNK as i128 * w as i128 * a as i128;
        assert!(chunk.abs() <= 1 << 30 && chunk.abs() < i32::MAX as i128);
        assert_eq!(dot_w8_a16(&wv, &av) as i128, exact, "reference w={w} a={a}");
        for isa in &isas {
            assert_eq!(
                isa.dot_w8_a16(&wv, &av).map(|v| v as i128),
                Some(exact),
                "{} w={w} a={a}",
                isa.name()
            );
        }
    }
    // Mixed signs that cancel per chunk but not per vector lane, and a tail.
    let wv: Vec<u8> = (0..n + 3)
        .map(|i| if i % 3 == 0 { 0x80 } else { 0x7f })
        .collect();
    let av: Vec<i16> = (0..n + 3)
        .map(|i| if i % 5 < 2 { i16::MIN } else { i16::MAX })
        .collect();
    let exact: i128 = wv
        .iter()
        .zip(&av)
        .map(|(&w, &a)| (w as i8) as i128 * a as i128)
        .sum();
    assert_eq!(dot_w8_a16(&wv, &av) as i128, exact);
    for isa in &isas {
        assert_eq!(isa.dot_w8_a16(&wv, &av).map(|v| v as i128), Some(exact));
    }
}

#[test]
fn dot_w16_a16_at_the_largest_length() {
    let n = max_dot_len();
    // The documented bound: |total| <= n 2^30 < 2^63.
    assert!((n as i128) << 30 < i64::MAX as i128);
    let isas = isas();
    // Weights as little-endian pairs, at an even address (each implementation's int16 kernel)
    // and at an odd one (the reference).
    let check = |w: &[i16], a: &[i16], exact: i128, what: &str| {
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut buf = vec![0u8; bytes.len() + 1];
        let even_at = buf.as_ptr() as usize % 2;
        for at in [even_at, 1 - even_at] {
            buf[at..at + bytes.len()].copy_from_slice(&bytes);
            let wb = &buf[at..at + bytes.len()];
            assert_eq!(dot_w16_a16(wb, a) as i128, exact, "reference {what}");
            for isa in &isas {
                assert_eq!(
                    isa.dot_w16_a16(wb, a) as i128,
                    exact,
                    "{} {what} at address parity {}",
                    isa.name(),
                    at % 2
                );
            }
            assert_eq!(
                optimized::dot_w16_a16(wb, a) as i128,
                exact,
                "dispatch {what}"
            );
        }
    };
    for (w, a) in [
        (i16::MIN, i16::MIN),
        (i16::MIN, i16::MAX),
        (i16::MAX, i16::MIN),
        (i16::MAX, i16::MAX),
    ] {
        let exact = n as i128 * w as i128 * a as i128;
        // -32768 * -32768 = 2^30: the largest product.
        assert!(exact.abs() <= (n as i128) << 30);
        check(&vec![w; n], &vec![a; n], exact, &format!("w={w} a={a}"));
    }
    // Mixed signs that cancel per chunk but not per vector lane, and a tail.
    let wv: Vec<i16> = (0..n + 3)
        .map(|i| if i % 3 == 0 { i16::MIN } else { i16::MAX })
        .collect();
    let av: Vec<i16> = (0..n + 3)
        .map(|i| if i % 5 < 2 { i16::MIN } else { i16::MAX })
        .collect();
    let exact: i128 = wv
        .iter()
        .zip(&av)
        .map(|(&w, &a)| w as i128 * a as i128)
        .sum();
    check(&wv, &av, exact, "mixed");
}

#[test]
fn dot_a16_a16_at_the_largest_head() {
    // One head of the widest model: head_dim = D = 2^16.
    let n = MAX_DIM as usize;
    assert!((n as i128) << 30 < i64::MAX as i128);
    let isas = isas();
    for (a, b) in [
        (i16::MIN, i16::MIN),
        (i16::MIN, i16::MAX),
        (i16::MAX, i16::MAX),
    ] {
        let av = vec![a; n + 1];
        let bv = vec![b; n + 1];
        let exact = (n + 1) as i128 * a as i128 * b as i128;
        assert_eq!(dot_a16_a16(&av, &bv) as i128, exact);
        for isa in &isas {
            assert_eq!(
                isa.dot_a16_a16(&av, &bv).map(|v| v as i128),
                Some(exact),
                "{} a={a} b={b}",
                isa.name()
            );
        }
    }
}

#[test]
fn requantization_at_the_extremes() {
    // acc * mult in i128 (< 2^94), the rounding term, the shift, the saturation to i64.
    let accs = [
        i64::MIN,
        i64::MIN + 1,
        -(1 << 44),
        -1,
        0,
        1,
        1 << 44,
        i64::MAX,
    ];
    for &acc in &accs {
        for mult in [0, 1, 1 << 30, i32::MAX] {
            for shift in [0, 1, 15, 31, 62, 63, 64, 100, MAX_SHIFT] {
                let r = Requant { mult, shift };
                let p = acc as i128 * mult as i128;
                // floor(p / 2^s + 1/2) with a floor division (p + 2^(s-1) < 2^127).
                let exact = if shift == 0 {
                    p
                } else {
                    (p + (1i128 << (shift - 1))).div_euclid(1i128 << shift)
                };
                let want = exact.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
                assert_eq!(r.apply(acc), want, "{acc} * {mult} >> {shift}");
            }
        }
    }
    // Two multipliers, one shift: |a ma + b mb| < 2^95.
    for &a in &accs {
        for &b in &accs {
            for shift in [0, 31, MAX_SHIFT] {
                let r = Requant2 {
                    ma: i32::MAX,
                    mb: i32::MAX - 1,
                    shift,
                };
                let s = a as i128 * i32::MAX as i128 + b as i128 * (i32::MAX - 1) as i128;
                let exact = if shift == 0 {
                    s
                } else {
                    (s + (1i128 << (shift - 1))).div_euclid(1i128 << shift)
                };
                let want = exact.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
                assert_eq!(r.apply(a, b), want, "{a}, {b} >> {shift}");
            }
        }
    }
}

#[test]
fn rms_norm_at_the_largest_row() {
    let n = MAX_DIM as usize;
    // Sum of squares < 2^62, with the eps term < 2^63 (u64; beyond 2^62 the normalization
    // shifts right first).
    let s = n as i128 * RESIDUAL_MAX as i128 * RESIDUAL_MAX as i128;
    assert!(s < 1 << 62 && s + (EPS_TERM_MAX as i128) < 1 << 63);
    let mut out = vec![0i16; n];
    for eps in [0, EPS_TERM_MAX, u64::MAX] {
        for pattern in 0..3 {
            let v: Vec<i32> = (0..n)
                .map(|i| match pattern {
                    0 => RESIDUAL_MAX,
                    1 => -RESIDUAL_MAX,
                    _ => {
                        if i % 2 == 0 {
                            i32::MIN // clamped to -RESIDUAL_MAX
                        } else {
                            RESIDUAL_MAX
                        }
                    }
                })
                .collect();
            rms_norm(&v, eps, &mut out);
            let t = s as f64 + eps.min(EPS_TERM_MAX) as f64;
            for (&x, &o) in v.iter().zip(&out).take(4) {
                let x = x.clamp(-RESIDUAL_MAX, RESIDUAL_MAX) as f64;
                let exact = NORM_ONE as f64 * x / t.sqrt();
                assert!(
                    (o as f64 - exact).abs() <= 0.5 + 32767.0 * 2f64.powi(-30) + 1e-6,
                    "eps {eps} pattern {pattern}: {o} vs {exact}"
                );
            }
        }
    }
}

#[test]
fn softmax_and_attention_at_the_longest_sequence() {
    // L = 2^16 keys with equal scores: every weight is 2^30, their sum 2^46.
    let l = MAX_DIM as usize;
    let mut t = vec![i32::MAX; l];
    let sum = softmax_q30(&mut t);
    assert_eq!(sum as i128, (l as i128) << 30);
    assert!(t.iter().all(|&p| p == 1 << 30));
    // Extreme score spreads: max - min of two i32 is < 2^32 (i64), capped at EXP_ARG_MAX.
    let mut t2 = vec![i32::MIN, i32::MAX, 0];
    let sum2 = softmax_q30(&mut t2);
    assert_eq!(t2, [0, 1 << 30, 0]);
    assert_eq!(sum2, 1 << 30);
    assert_eq!(exp2_neg_q30(i64::MAX), 0);
    // sum_j p_j v_j with every v = -32768 or 32767: |num| <= 2^61.
    let hd = 3;
    for v_val in [i16::MIN, i16::MAX] {
        let v = vec![v_val; hd];
        let mut out = vec![0i16; hd];
        attention_row(&t, sum, |_| &v, &mut out);
        let num = (l as i128) * (1 << 30) * v_val as i128;
        assert!(num.abs() <= 1 << 61);
        assert_eq!(out, vec![v_val; hd]);
    }
    // Alternating values: the exact weighted mean, rounded half up.
    let va = [i16::MIN; 3];
    let vb = [i16::MAX; 3];
    let mut out = vec![0i16; hd];
    attention_row(&t, sum, |j| if j % 2 == 0 { &va } else { &vb }, &mut out);
    // (2^15 (-32768) + 2^15 32767) / 2^16 = -0.5, rounded half up: 0.
    assert_eq!(out, vec![0; hd]);
}

#[test]
fn silu_and_rope_at_the_extremes() {
    // The largest knot differences: T[k+1] - T[k] = +-65535, times f <= 255.
    let table: Vec<u8> = (0..257)
        .flat_map(|k| (if k % 2 == 0 { i16::MIN } else { i16::MAX }).to_le_bytes())
        .collect();
    let t = I16Table(&table);
    for q in i16::MIN..=i16::MAX {
        let u = q as i32 + 32768;
        let (k, f) = ((u >> 8) as usize, (u & 255) as i128);
        let a = if k % 2 == 0 { -32768i128 } else { 32767 };
        let b = if k % 2 == 0 { 32767i128 } else { -32768 };
        let step = ((b - a) * f + 128).div_euclid(256);
        let exact = (a + step).clamp(-32768, 32767) as i16;
        assert_eq!(silu(t, q), exact, "q={q}");
    }
    // RoPE: |x c - y s| <= 2 * 2^30 = 2^31, in i64, then saturated.
    for (c, s) in [
        (i16::MIN, i16::MIN),
        (i16::MIN, i16::MAX),
        (i16::MAX, i16::MIN),
    ] {
        let cb: Vec<u8> = [c; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let sb: Vec<u8> = [s; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        for (a, b) in [
            (i16::MIN, i16::MAX),
            (i16::MIN, i16::MIN),
            (i16::MAX, i16::MIN),
        ] {
            let mut x = [a; 8];
            x[4..].fill(b);
            rope(&mut x, I16Table(&cb), I16Table(&sb));
            let r = |v: i128| ((v + (1 << 14)) >> 15).clamp(-32768, 32767) as i16;
            let (a, b, c, s) = (a as i128, b as i128, c as i128, s as i128);
            assert_eq!(x[0], r(a * c - b * s));
            assert_eq!(x[4], r(b * c + a * s));
        }
    }
}

/// Whole engines on worst-case models (weights all -128 / 127, inputs at the int16 extremes,
/// every multiplier at its largest, so every accumulator meets its extreme inputs), with every
/// kernel implementation: with overflow checks on, any overflow would panic.
#[test]
fn engines_on_worst_case_models() {
    worst_case_engines(|c| fixed_model(c, 3, Fill::Extreme));
}

/// The same with int16 weight matrices (all -32768 / 32767, the largest multipliers): every
/// matrix int16, and every other one (int8 and int16 rows feeding each other).
#[test]
fn engines_on_worst_case_int16_weight_models() {
    worst_case_engines(|c| {
        let bytes = fixed_model_with(c, 3, Fill::Extreme, Weights::I16, |_| true);
        let (n8, n16) = matrix_dtypes(&bytes);
        assert!(n8 == 0 && n16 > 0, "{n8} int8, {n16} int16 matrices");
        bytes
    });
    worst_case_engines(|c| {
        let mats: Vec<TensorId> = TensorId::all(c).filter(|&id| is_matrix(id)).collect();
        let every_other = |id: TensorId| mats.iter().position(|&m| m == id).unwrap() % 2 == 0;
        let bytes = fixed_model_with(c, 3, Fill::Extreme, Weights::I16, every_other);
        let (n8, n16) = matrix_dtypes(&bytes);
        assert!(n8 > 0 && n16 > 0, "{n8} int8, {n16} int16 matrices");
        bytes
    });
}

/// The same with exact SwiGLU products (the `down` projections sum `w * silu * up` of the
/// extreme values into `i128`), with int8 and with int16 weights.
#[test]
fn engines_on_worst_case_exact_product_models() {
    use trm_nostd::fixed::tables::TAG_EXACT_PRODUCTS;
    worst_case_engines(|c| {
        fixed_common::fixed_model_tagged(
            c,
            3,
            Fill::Extreme,
            Weights::I8,
            |_| false,
            TAG_EXACT_PRODUCTS,
        )
    });
    worst_case_engines(|c| {
        fixed_common::fixed_model_tagged(
            c,
            3,
            Fill::Extreme,
            Weights::I16,
            |_| true,
            TAG_EXACT_PRODUCTS,
        )
    });
}

/// The exact-product dots at the largest length with the extreme values, against `i128`
/// sums, and `Requant::apply_i128` on the totals.
#[test]
fn exact_product_dots_at_the_largest_length() {
    use trm_nostd::fixed::kernels::{dot_w8_prod, dot_w16_prod};
    let n = max_dot_len();
    for (w, s, u) in [
        (-32768i16, -32768i16, -32768i16),
        (32767, 32767, 32767),
        (-32768, -32768, 32767),
    ] {
        let ws: Vec<u8> = std::iter::repeat_n(w.to_le_bytes(), n).flatten().collect();
        let w8: Vec<u8> = vec![(w >> 8) as i8 as u8; n];
        let sv = vec![s; n];
        let uv = vec![u; n];
        let term16 = w as i128 * s as i128 * u as i128;
        let term8 = (w >> 8) as i128 * s as i128 * u as i128;
        let t16 = dot_w16_prod(&ws, &sv, &uv);
        let t8 = dot_w8_prod(&w8, &sv, &uv);
        assert_eq!(t16, term16 * n as i128, "w16 {w} {s} {u}");
        assert_eq!(t8, term8 * n as i128, "w8 {w} {s} {u}");
        // The largest multiplier: the exact product rounded, saturated to i64.
        let rq = Requant {
            mult: i32::MAX,
            shift: 40,
        };
        let exact = (t16 * i32::MAX as i128 + (1i128 << 39)) >> 40;
        let want = exact.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        assert_eq!(rq.apply_i128(t16), want);
    }
    let rq = Requant {
        mult: i32::MAX,
        shift: 0,
    };
    assert_eq!(rq.apply_i128(i128::MAX), i64::MAX);
    assert_eq!(rq.apply_i128(i128::MIN), i64::MIN);
}

fn is_matrix(id: TensorId) -> bool {
    matches!(
        id,
        TensorId::LmHead | TensorId::QHeadWeight | TensorId::Layer { .. }
    )
}

/// How many weight matrices of the file are int8 and int16.
fn matrix_dtypes(bytes: &[u8]) -> (usize, usize) {
    let m = Model::parse(bytes).expect("parse");
    let dtypes: Vec<DType> = m
        .tensors()
        .filter(|(id, _)| is_matrix(*id))
        .map(|(_, v)| v.dtype)
        .collect();
    let n8 = dtypes.iter().filter(|&&d| d == DType::I8).count();
    let n16 = dtypes.iter().filter(|&&d| d == DType::I16).count();
    assert_eq!(n8 + n16, dtypes.len());
    (n8, n16)
}

fn worst_case_engines(build: impl Fn(&Config) -> Vec<u8>) {
    assert!(
        overflow_checks_on(),
        "this test relies on overflow checks (the test profile keeps them)"
    );
    for config in [odd_mlp_t(), odd_attention()] {
        let bytes = build(&config);
        let model = Model::parse(&bytes).expect("parse");
        let need = FixedEngine::scratch_len(&config);
        let tokens = vec![(config.vocab_size - 1) as u8; config.seq_len as usize];
        let mut results = Vec::new();
        for isa in isas() {
            results.push(with_isa(isa, || {
                let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
                let mut engine = FixedEngine::new(&model, &mut s16, &mut s32).expect("engine");
                let mut answer = vec![0u8; config.seq_len as usize];
                let summary = engine
                    .solve(&tokens, 1, HaltMode::AllSteps, &mut answer)
                    .expect("solve");
                let mut logits = vec![0i32; config.seq_len as usize * config.vocab_size as usize];
                engine.logits(&mut logits).expect("logits");
                (summary, answer, logits, engine.y().to_vec())
            }));
        }
        for r in &results[1..] {
            assert!(r == &results[0], "implementations differ on the worst case");
        }
    }
}
