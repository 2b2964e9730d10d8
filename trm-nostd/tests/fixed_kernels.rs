//! The integer reference kernels against independent f64 / i128 computations, with the
//! documented maximum errors (in LSB of the output) asserted and printed.

use trm_nostd::fixed::kernels::{
    ACC_CHUNK, EXP_FRAC_BITS, EXP2_NEG_Q30, I16Table, NORM_ONE, RESIDUAL_MAX, Requant, argmax,
    attention_row, div_round, dot_a16_a16, dot_w8_a16, exp2_neg_q30, q_halt_positive, rms_norm,
    rope, round_shift, silu, softmax_q30,
};
use trm_nostd::fixed::prepare;

/// SplitMix64, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn i16(&mut self) -> i16 {
        self.next() as i16
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn table_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn rounding_rule() {
    // Ties go toward +infinity, on both signs.
    assert_eq!(round_shift(3, 1), 2); // 1.5 -> 2
    assert_eq!(round_shift(-3, 1), -1); // -1.5 -> -1
    assert_eq!(round_shift(5, 2), 1); // 1.25 -> 1
    assert_eq!(round_shift(-6, 2), -1); // -1.5 -> -1
    assert_eq!(div_round(7, 2), 4);
    assert_eq!(div_round(-7, 2), -3);
    assert_eq!(div_round(-8, 3), -3);
    let mut rng = Rng(1);
    for _ in 0..100_000 {
        let x = rng.range(-(1 << 40), 1 << 40);
        let s = rng.range(0, 20) as u32;
        // f64 is exact here: |x| < 2^41.
        let exact = (x as f64 / (1u64 << s) as f64 + 0.5).floor() as i64;
        assert_eq!(round_shift(x, s), exact, "{x} >> {s}");
        let d = rng.range(1, 1 << 20);
        let exact = (x as f64 / d as f64 + 0.5).floor() as i64;
        // f64 division is correctly rounded; the floor can only differ on an exact tie, which
        // the i128 check covers.
        let q = div_round(x, d);
        assert!(
            (q - exact).abs() <= 1 && (2 * x as i128 - (2 * q as i128 - 1) * d as i128) >= 0,
            "{x} / {d}"
        );
        assert!(
            (2 * x as i128) < (2 * q as i128 + 1) * d as i128,
            "{x} / {d}"
        );
    }
}

#[test]
fn dot_accumulators_survive_worst_case_values() {
    // Every product at its extreme, over lengths around and far beyond the i32 chunk.
    for n in [
        1,
        ACC_CHUNK - 1,
        ACC_CHUNK,
        ACC_CHUNK + 1,
        4096,
        1 << 16,
        3 << 20,
    ] {
        for (w, a) in [
            (-128i8, -32768i16),
            (-128, 32767),
            (127, -32768),
            (127, 32767),
        ] {
            let wv = vec![w as u8; n];
            let av = vec![a; n];
            let expected = n as i128 * w as i128 * a as i128;
            assert_eq!(dot_w8_a16(&wv, &av) as i128, expected, "n={n} w={w} a={a}");
        }
        let av = vec![-32768i16; n];
        assert_eq!(
            dot_a16_a16(&av, &av) as i128,
            n as i128 * (1 << 30),
            "n={n}"
        );
    }
    // Random values against i128.
    let mut rng = Rng(2);
    for _ in 0..200 {
        let n = rng.range(0, 2000) as usize;
        let w: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let a: Vec<i16> = (0..n).map(|_| rng.i16()).collect();
        let e: i128 = w
            .iter()
            .zip(&a)
            .map(|(&w, &a)| (w as i8) as i128 * a as i128)
            .sum();
        assert_eq!(dot_w8_a16(&w, &a) as i128, e);
    }
}

#[test]
fn requantization_against_real_multipliers() {
    let mut rng = Rng(3);
    let mut worst = 0f64;
    for _ in 0..100_000 {
        let m = 10f64.powf(rng.unit() * 8.0); // 1e-8 .. 1e8
        let r = prepare::requant(m).unwrap();
        assert!(r.is_valid() && r.mult >= 1 << 30, "{m} -> {r:?}");
        let acc = rng.range(-(1 << 44), 1 << 44);
        let exact = acc as f64 * m;
        if exact.abs() > (1u64 << 52) as f64 {
            continue;
        }
        let got = r.apply(acc);
        // Documented: 0.5 LSB of rounding + the multiplier's relative error 2^-31.
        let err = (got as f64 - exact).abs();
        let bound = 0.5 + exact.abs() * 2f64.powi(-31) + 1e-9;
        assert!(err <= bound, "acc {acc} m {m}: {got} vs {exact}");
        worst = worst.max(err - exact.abs() * 2f64.powi(-31));
    }
    println!("requant: worst error beyond the multiplier's precision {worst:.4} LSB");
    // Extremes saturate instead of overflowing.
    let big = Requant {
        mult: i32::MAX,
        shift: 0,
    };
    assert_eq!(big.apply(i64::MAX), i64::MAX);
    assert_eq!(big.apply(i64::MIN), i64::MIN);
    assert!(prepare::requant(2f64.powi(31)).is_none());
    assert!(prepare::requant(-1.0).is_none());
    // Two multipliers, one rounding.
    for _ in 0..10_000 {
        let (a, b) = (10f64.powf(rng.unit() * 3.0), 10f64.powf(rng.unit() * 3.0));
        let r2 = prepare::requant2(a, b).unwrap();
        let (x, y) = (rng.i16() as i64 * 3, rng.i16() as i64);
        let exact = x as f64 * a + y as f64 * b;
        let err = (r2.apply(x, y) as f64 - exact).abs();
        // Each mantissa is within 1/2 of its exact value at the shared shift.
        let bound = 0.5 + (x.abs() + y.abs()) as f64 * 0.5 * 2f64.powi(-(r2.shift as i32));
        assert!(err <= bound + 1e-9, "{err} > {bound}");
    }
}

#[test]
fn rms_norm_against_f64() {
    let mut rng = Rng(4);
    let mut worst = 0f64;
    for case in 0..400 {
        let n = rng.range(1, 700) as usize;
        let amp = 1i64 << rng.range(0, 21);
        let v: Vec<i32> = (0..n)
            .map(|_| {
                rng.range(-amp, amp)
                    .clamp(-(RESIDUAL_MAX as i64), RESIDUAL_MAX as i64) as i32
            })
            .collect();
        let eps = if case % 3 == 0 {
            0
        } else {
            rng.range(0, 1 << 30) as u64
        };
        let mut out = vec![0i16; n];
        rms_norm(&v, eps, &mut out);
        let s: f64 = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>() + eps as f64;
        for (&x, &o) in v.iter().zip(&out) {
            let exact = if s == 0.0 {
                0.0
            } else {
                NORM_ONE as f64 * x as f64 / s.sqrt()
            };
            let err = (o as f64 - exact).abs();
            worst = worst.max(err);
            // Documented: 0.5 LSB + 32767 * 2^-30 (the inverse square root's floor).
            assert!(
                err <= 0.5 + 32767.0 * 2f64.powi(-30),
                "case {case}: {o} vs {exact}"
            );
        }
    }
    println!("rms_norm: worst error {worst:.6} LSB");
    // Worst-case magnitudes: the largest row at the largest residual, no overflow.
    let n = 1 << 16;
    let v = vec![RESIDUAL_MAX; n];
    let mut out = vec![0i16; n];
    rms_norm(&v, u64::MAX, &mut out);
    assert!(out.iter().all(|&o| o > 0 && o <= 128), "{}", out[0]);
    rms_norm(&v, 0, &mut out);
    assert!(out.iter().all(|&o| o == 128), "{}", out[0]); // 32767 / 256 = 127.996
    // Out-of-range inputs are clamped, never overflow.
    let v = vec![i32::MIN, i32::MAX, 0];
    let mut out = vec![0i16; 3];
    rms_norm(&v, 0, &mut out);
    assert_eq!(out, [-23170, 23170, 0]); // 32767 / sqrt(2)
    rms_norm(&[0, 0], 0, &mut out[..2]);
    assert_eq!(&out[..2], &[0, 0]);
}

#[test]
fn silu_table_against_f64() {
    for s in [1e-4, 3e-4, 1e-3] {
        let t = prepare::silu_table(s, s);
        let bytes = table_bytes(&t);
        let table = I16Table(&bytes);
        let mut worst = 0f64;
        for q in i16::MIN..=i16::MAX {
            let exact = prepare::silu_f64(q as f64 * s) / s;
            let err = (silu(table, q) as f64 - exact).abs();
            worst = worst.max(err);
        }
        // Documented: 1 LSB of rounding + 4096 s LSB of interpolation.
        let bound = 1.0 + 4096.0 * s;
        println!("silu s={s}: worst error {worst:.3} LSB (bound {bound:.3})");
        assert!(worst <= bound, "s={s}: {worst}");
    }
}

#[test]
fn exp2_table_is_exact() {
    for (i, &v) in EXP2_NEG_Q30.iter().enumerate() {
        let exact = (2f64.powi(30) * 2f64.powf(-(i as f64) / 256.0) + 0.5).floor();
        assert_eq!(v as f64, exact, "knot {i}");
    }
    let mut worst = 0f64;
    for u in (0..(33i64 << EXP_FRAC_BITS)).step_by(7) {
        let exact = 2f64.powi(30) * 2f64.powf(-(u as f64) / 65536.0);
        let err = (exp2_neg_q30(u) as f64 - exact).abs();
        worst = worst.max(err / exact.max(1.0));
        // Documented: the chord's relative error (< 9.2e-7) + knot and interpolation rounding
        // (1 LSB) + the final shift (0.5 LSB).
        assert!(
            err <= exact * 9.2e-7 + 1.5,
            "u={u}: {} vs {exact}",
            exp2_neg_q30(u)
        );
    }
    println!("exp2_neg_q30: worst relative error {worst:.3e}");
    assert_eq!(exp2_neg_q30(0), 1 << 30);
    assert_eq!(exp2_neg_q30(i64::MAX), 0);
}

#[test]
fn softmax_and_attention_row_against_f64() {
    let mut rng = Rng(5);
    let log2e = std::f64::consts::LOG2_E;
    let mut worst_p = 0f64;
    let mut worst_out = 0f64;
    for _ in 0..300 {
        let l = rng.range(1, 120) as usize;
        let spread = rng.unit().abs() * 20.0;
        let scores: Vec<f64> = (0..l).map(|_| rng.unit() * spread).collect();
        let mut t: Vec<i32> = scores
            .iter()
            .map(|s| (s * log2e * 65536.0 + 0.5).floor() as i32)
            .collect();
        let sum = softmax_q30(&mut t);
        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let es: f64 = e.iter().sum();
        for (p, ex) in t.iter().zip(&e) {
            worst_p = worst_p.max((*p as f64 / sum as f64 - ex / es).abs());
        }
        let hd = 8;
        let v: Vec<i16> = (0..l * hd).map(|_| rng.i16()).collect();
        let mut out = vec![0i16; hd];
        attention_row(&t, sum, |j| &v[j * hd..(j + 1) * hd], &mut out);
        for c in 0..hd {
            let exact: f64 = (0..l).map(|j| e[j] / es * v[j * hd + c] as f64).sum();
            let err = (out[c] as f64 - exact).abs();
            worst_out = worst_out.max(err);
            // Probabilities to ~1e-5 relative (Q16 argument, Q30 weights) times |v| <= 32768.
            assert!(err <= 1.5, "{} vs {exact}", out[c]);
        }
    }
    println!("softmax: worst probability error {worst_p:.2e}; attention: worst {worst_out:.3} LSB");
    assert!(worst_p < 2e-5, "{worst_p}");
}

#[test]
fn rope_against_f64() {
    let (hd, positions) = (16, 40);
    let (cos, sin) = prepare::rope_tables_q15(positions, hd, 10000.0);
    let (cb, sb) = (table_bytes(&cos), table_bytes(&sin));
    let half = hd / 2;
    let mut rng = Rng(6);
    let mut worst = 0f64;
    for p in 0..positions {
        let c = I16Table(&cb[p * half * 2..(p + 1) * half * 2]);
        let s = I16Table(&sb[p * half * 2..(p + 1) * half * 2]);
        for _ in 0..50 {
            // Keep |x| below 32767 / sqrt(2) so that no rotation saturates.
            let x: Vec<i16> = (0..hd).map(|_| rng.i16() / 2).collect();
            let mut y = x.clone();
            rope(&mut y, c, s);
            for i in 0..half {
                let ang = p as f64 / 10000f64.powf((2 * i) as f64 / hd as f64);
                let (a, b) = (x[i] as f64, x[i + half] as f64);
                let e0 = a * ang.cos() - b * ang.sin();
                let e1 = b * ang.cos() + a * ang.sin();
                let err = (y[i] as f64 - e0)
                    .abs()
                    .max((y[i + half] as f64 - e1).abs());
                worst = worst.max(err);
                // Q15 tables: 2 * 16384 * 2^-15 = 1 LSB, plus 0.5 of rounding.
                assert!(err <= 1.5, "p={p} i={i}: {err}");
            }
        }
    }
    println!("rope: worst error {worst:.3} LSB");
}

#[test]
fn argmax_ties_and_halting_sign() {
    assert_eq!(argmax(&[3, 7, 7, 1]), 1);
    assert_eq!(argmax(&[-5, -5]), 0);
    assert_eq!(argmax(&[i32::MIN, i32::MIN + 1]), 1);
    assert_eq!(argmax(&[]), 0);
    assert!(q_halt_positive(1));
    assert!(!q_halt_positive(0));
    assert!(!q_halt_positive(-1));
}

/// Every SiLU table size (`2^b + 1` knots, b = 8..=12) meets its documented bound `1 + h^2 s
/// / 16` LSB (knot spacing `h = 2^(16 - b)`), the classic size equals `silu_table`, and the
/// error shrinks with the knot count.
#[test]
fn silu_tables_of_every_size_against_f64() {
    use trm_nostd::fixed::kernels::{
        SILU_KNOT_BITS_MAX, SILU_KNOT_BITS_MIN, silu_knot_bits, silu_table_len,
    };
    assert_eq!(
        prepare::silu_table_knots(1e-3, 1e-3, 8),
        prepare::silu_table(1e-3, 1e-3).to_vec()
    );
    for s in [3e-4, 1.8e-3] {
        let mut last = f64::INFINITY;
        for b in SILU_KNOT_BITS_MIN..=SILU_KNOT_BITS_MAX {
            let t = prepare::silu_table_knots(s, s, b);
            assert_eq!(t.len(), silu_table_len(b));
            assert_eq!(silu_knot_bits(t.len()), Some(b));
            let bytes = table_bytes(&t);
            let table = I16Table(&bytes);
            let mut worst = 0f64;
            for q in i16::MIN..=i16::MAX {
                let exact = prepare::silu_f64(q as f64 * s) / s;
                worst = worst.max((silu(table, q) as f64 - exact).abs());
            }
            let h = (1u32 << (16 - b)) as f64;
            let bound = 1.0 + h * h * s / 16.0;
            println!(
                "silu s={s} knots={}: worst {worst:.3} LSB (bound {bound:.3})",
                t.len()
            );
            assert!(worst <= bound, "s={s} b={b}: {worst} > {bound}");
            assert!(
                worst < last || worst <= 1.0,
                "s={s} b={b}: {worst} !< {last}"
            );
            last = worst;
        }
    }
    assert_eq!(silu_knot_bits(256), None);
    assert_eq!(silu_knot_bits(8193), None);
}

/// The exact-product dots against a plain `i128` sum on random values and lengths (including
/// ragged inputs: the shortest of the three decides).
#[test]
fn exact_product_dots_against_i128() {
    use trm_nostd::fixed::kernels::{dot_w8_prod, dot_w16_prod};
    let mut rng = Rng(0x0005_EED0_FD07);
    for len in (0..70).chain([255, 256, 257, 4099]) {
        let s: Vec<i16> = (0..len).map(|_| rng.next() as i16).collect();
        let u: Vec<i16> = (0..len + 3).map(|_| rng.next() as i16).collect();
        let w16: Vec<i16> = (0..len).map(|_| rng.next() as i16).collect();
        let w8: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let wb: Vec<u8> = w16.iter().flat_map(|v| v.to_le_bytes()).collect();
        let want16: i128 = (0..len)
            .map(|k| w16[k] as i128 * s[k] as i128 * u[k] as i128)
            .sum();
        let want8: i128 = (0..len)
            .map(|k| (w8[k] as i8) as i128 * s[k] as i128 * u[k] as i128)
            .sum();
        assert_eq!(dot_w16_prod(&wb, &s, &u), want16, "len {len}");
        assert_eq!(dot_w8_prod(&w8, &s, &u), want8, "len {len}");
    }
}

/// The engine's exact-product path (split each product into int16 halves, two dots through
/// every supported kernel implementation, recombine) equals the specification dots, on random
/// values and on the extremes (`s = u = -32768`: `p = 2^30`).
#[test]
fn split_products_through_every_kernel_equal_the_spec() {
    use trm_nostd::fixed::kernels::{dot_w8_prod, dot_w16_prod, prod_from_halves, split_product};
    use trm_nostd::fixed::optimized::Isa;
    for (s, u) in [
        (-32768i16, -32768i16),
        (32767, -32768),
        (32767, 32767),
        (-1, 1),
        (0, 5),
    ] {
        let (lo, hi) = split_product(s, u);
        assert_eq!(
            hi as i64 * 65536 + lo as i64,
            s as i64 * u as i64,
            "{s} {u}"
        );
    }
    let mut rng = Rng(0x0005_EED1_FD07);
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_supported()).collect();
    for len in (0..40).chain([255, 1031]) {
        for extreme in [false, true] {
            let pick = |rng: &mut Rng| -> i16 {
                if extreme {
                    if rng.next().is_multiple_of(2) {
                        -32768
                    } else {
                        32767
                    }
                } else {
                    rng.next() as i16
                }
            };
            let s: Vec<i16> = (0..len).map(|_| pick(&mut rng)).collect();
            let u: Vec<i16> = (0..len).map(|_| pick(&mut rng)).collect();
            let w16: Vec<i16> = (0..len).map(|_| pick(&mut rng)).collect();
            let w8: Vec<u8> = w16.iter().map(|v| (*v >> 8) as u8).collect();
            let wb: Vec<u8> = w16.iter().flat_map(|v| v.to_le_bytes()).collect();
            let (lo, hi): (Vec<i16>, Vec<i16>) =
                s.iter().zip(&u).map(|(a, b)| split_product(*a, *b)).unzip();
            let want8 = dot_w8_prod(&w8, &s, &u);
            let want16 = dot_w16_prod(&wb, &s, &u);
            for isa in &isas {
                let d8 = |a: &[i16]| isa.dot_w8_a16(&w8, a).unwrap();
                assert_eq!(
                    prod_from_halves(d8(&lo), d8(&hi)),
                    want8,
                    "{isa:?} len {len}"
                );
                let d16 = |a: &[i16]| isa.dot_w16_a16(&wb, a);
                assert_eq!(
                    prod_from_halves(d16(&lo), d16(&hi)),
                    want16,
                    "{isa:?} len {len}"
                );
            }
        }
    }
}

/// `Requant::apply` takes a 64-bit path for accumulators within `i32`: the same integer as the
/// specification's `i128` arithmetic (`round_shift_i128(acc * mult, shift)`, saturated), for
/// random and extreme accumulators, mantissas and every shift, at the path's edges included.
#[test]
fn requant_fast_path_equals_the_i128_rule() {
    let spec = |acc: i64, r: Requant| -> i64 {
        let s = r.shift.min(trm_nostd::fixed::kernels::MAX_SHIFT);
        let v = trm_nostd::fixed::kernels::round_shift_i128(acc as i128 * r.mult as i128, s);
        v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next = move || rng.next();
    let edges = [
        0i64,
        1,
        -1,
        i32::MAX as i64,
        i32::MIN as i64,
        i32::MAX as i64 + 1,
        i32::MIN as i64 - 1,
        1 << 40,
        -(1 << 40),
        i64::MAX,
        i64::MIN,
    ];
    let mults = [0i32, 1, (1 << 30) + 12345, i32::MAX, -5];
    let mut checked = 0u64;
    for shift in 0..=130u32 {
        for &mult in &mults {
            let r = Requant { mult, shift };
            for &acc in &edges {
                assert_eq!(
                    r.apply(acc),
                    spec(acc, r),
                    "acc {acc} mult {mult} shift {shift}"
                );
                checked += 1;
            }
            for _ in 0..200 {
                let v = next();
                let acc = match v % 3 {
                    0 => (v >> 8) as i32 as i64,
                    1 => ((v >> 8) as i64) >> (v % 40),
                    _ => (v >> 48) as i16 as i64,
                };
                let m = if mult == 0 {
                    (next() >> 33) as i32
                } else {
                    mult
                };
                let r = Requant { mult: m, shift };
                assert_eq!(
                    r.apply(acc),
                    spec(acc, r),
                    "acc {acc} mult {m} shift {shift}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100_000);
}

/// `Requant::high_word` exists exactly for `mult >= 0` and shifts `32..=62`, and then its
/// `apply` equals `Requant::apply` for every `i32` accumulator (random, and the extremes), for
/// random and extreme mantissas at every shift of the range.
#[test]
fn requant_high_word_equals_apply() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut next = move || rng.next();
    let edges = [
        0i32,
        1,
        -1,
        2,
        -2,
        i32::MAX,
        i32::MIN,
        i32::MAX - 1,
        i32::MIN + 1,
    ];
    let mut checked = 0u64;
    for shift in 0..=130u32 {
        for mult in [0i32, 1, 1 << 30, (1 << 30) + 777, i32::MAX, -1, i32::MIN] {
            let r = Requant { mult, shift };
            let hw = r.high_word();
            assert_eq!(
                hw.is_some(),
                mult >= 0 && (32..=62).contains(&shift),
                "mult {mult} shift {shift}"
            );
            if hw.is_none() {
                continue;
            }
            for _ in 0..300 {
                let v = next();
                let acc = match v % 3 {
                    0 => (v >> 16) as i32,
                    1 => ((v >> 16) as i32) >> (v % 31),
                    _ => edges[(v >> 40) as usize % edges.len()],
                };
                let m = if v % 5 == 0 {
                    (next() >> 33) as i32
                } else {
                    mult
                };
                let r = Requant { mult: m, shift };
                let Some(hw) = r.high_word() else {
                    panic!("mult {m} shift {shift}: no high word")
                };
                assert_eq!(
                    hw.apply(acc) as i64,
                    r.apply(acc as i64),
                    "acc {acc} mult {m} shift {shift}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40_000);
}

/// `Requant2::apply` takes a 64-bit path for inputs within `2^30`: the same integer as the
/// `i128` rule, for random and extreme inputs, mantissas and every shift.
#[test]
fn requant2_fast_path_equals_the_i128_rule() {
    use trm_nostd::fixed::kernels::Requant2;
    let spec = |a: i64, b: i64, r: Requant2| -> i64 {
        let s = r.shift.min(trm_nostd::fixed::kernels::MAX_SHIFT);
        let v = a as i128 * r.ma as i128 + b as i128 * r.mb as i128;
        let v = trm_nostd::fixed::kernels::round_shift_i128(v, s);
        v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    };
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut next = move || rng.next();
    let edges = [
        0i64,
        1,
        -1,
        32767,
        -32768,
        (1 << 30) - 1,
        -(1 << 30) + 1,
        1 << 30,
        -(1 << 30),
        1 << 40,
        i64::MIN,
    ];
    let ms = [0i32, 1, (1 << 30) + 99, i32::MAX, -3];
    let mut checked = 0u64;
    for shift in 0..=130u32 {
        for &ma in &ms {
            for &mb in &ms {
                let r = Requant2 { ma, mb, shift };
                for &a in &edges {
                    for &b in &edges {
                        assert_eq!(r.apply(a, b), spec(a, b, r), "{a} {b} {ma} {mb} {shift}");
                        checked += 1;
                    }
                }
                let (a, b) = ((next() >> 48) as i16 as i64, (next() >> 40) as i32 as i64);
                assert_eq!(r.apply(a, b), spec(a, b, r), "{a} {b} {ma} {mb} {shift}");
            }
        }
    }
    assert!(checked > 100_000);
}
