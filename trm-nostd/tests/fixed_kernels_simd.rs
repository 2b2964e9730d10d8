//! The optimized kernels (`fixed::optimized`) against the reference kernels, which are their
//! specification: equal bit for bit on random lengths (tails that are not multiples of any
//! vector width, lengths across the `i32` blocks), random and extreme values, misaligned
//! slices, and a whole integer engine run with each implementation (int8 and int16 weights).
//! `dot_w16_a16` (int16 weights as little-endian byte pairs) also at odd addresses and odd byte
//! lengths, where the implementations fall back to the reference. Every implementation this
//! machine supports runs; the test prints which ones.

mod fixed_common;

use fixed_common::{
    Fill, Rng, Weights, fixed_model, fixed_model_with, isas, odd_attention, odd_mlp_t, with_isa,
};
use trm_nostd::fixed::kernels;
use trm_nostd::fixed::optimized::{self, Isa};
use trm_nostd::format::Model;
use trm_nostd::{Engine, FixedEngine, ScratchLen};

/// The implementations that run here ([`isas`]), printed so that the log says which ran.
fn supported() -> Vec<Isa> {
    let isas = isas();
    println!(
        "implementations here: {:?}; the engine's default: {}",
        isas.iter().map(|i| i.name()).collect::<Vec<_>>(),
        Isa::best().name()
    );
    isas
}

/// `sum w a` in i128: an independent computation.
fn exact_w8(w: &[u8], a: &[i16]) -> i128 {
    w.iter()
        .zip(a)
        .map(|(&w, &a)| (w as i8) as i128 * a as i128)
        .sum()
}

fn exact_a16(a: &[i16], b: &[i16]) -> i128 {
    a.iter().zip(b).map(|(&x, &y)| x as i128 * y as i128).sum()
}

/// Checks one input against the reference and the exact sum, with every implementation.
fn check(isas: &[Isa], w: &[u8], a: &[i16], b: &[i16]) {
    let rw = kernels::dot_w8_a16(w, a);
    assert_eq!(rw as i128, exact_w8(w, a), "reference w8 n={}", w.len());
    let ra = kernels::dot_a16_a16(a, b);
    assert_eq!(ra as i128, exact_a16(a, b), "reference a16 n={}", a.len());
    for &isa in isas {
        assert_eq!(
            isa.dot_w8_a16(w, a),
            Some(rw),
            "{} dot_w8_a16, lengths {} x {}",
            isa.name(),
            w.len(),
            a.len()
        );
        assert_eq!(
            isa.dot_a16_a16(a, b),
            Some(ra),
            "{} dot_a16_a16, lengths {} x {}",
            isa.name(),
            a.len(),
            b.len()
        );
    }
    assert_eq!(optimized::dot_w8_a16(w, a), rw);
    assert_eq!(optimized::dot_a16_a16(a, b), ra);
}

/// A value of a random "kind": uniform, extreme, small, zero.
fn pick_i16(rng: &mut Rng, kind: u64) -> i16 {
    match kind {
        0 => rng.i16(),
        1 => {
            if rng.next().is_multiple_of(2) {
                i16::MIN
            } else {
                i16::MAX
            }
        }
        2 => rng.range(-3, 3) as i16,
        _ => i16::MIN,
    }
}

fn pick_w(rng: &mut Rng, kind: u64) -> u8 {
    match kind {
        0 => rng.next() as u8,
        1 => {
            if rng.next().is_multiple_of(2) {
                0x80
            } else {
                0x7f
            }
        }
        2 => rng.range(-2, 2) as i8 as u8,
        _ => 0x80,
    }
}

#[test]
fn random_lengths_and_values() {
    let isas = supported();
    let mut rng = Rng(0x5eed);
    for case in 0..3000 {
        // Mostly short (every tail length of every vector width), some across the blocks.
        let n = if case % 10 == 0 {
            rng.range(0, 5000) as usize
        } else {
            rng.range(0, 130) as usize
        };
        let kind = rng.next() % 4;
        let w: Vec<u8> = (0..n).map(|_| pick_w(&mut rng, kind)).collect();
        let a: Vec<i16> = (0..n).map(|_| pick_i16(&mut rng, kind)).collect();
        let b: Vec<i16> = (0..n).map(|_| pick_i16(&mut rng, kind)).collect();
        check(&isas, &w, &a, &b);
        // Unequal lengths: the shorter one decides, as in the reference.
        let cut = rng.range(0, n as i64) as usize;
        check(&isas, &w[..cut], &a, &b[..n - cut / 2]);
    }
}

#[test]
fn every_length_with_extremes() {
    let isas = supported();
    for n in 0..=300usize {
        for (wv, av) in [
            (0x80u8, i16::MIN),
            (0x80, i16::MAX),
            (0x7f, i16::MIN),
            (0x7f, i16::MAX),
        ] {
            let w = vec![wv; n];
            let a = vec![av; n];
            // b = a: for i16::MIN every vpmaddwd pair wraps without the bias correction.
            check(&isas, &w, &a, &a);
            let alt: Vec<i16> = (0..n)
                .map(|i| if i % 2 == 0 { i16::MIN } else { i16::MAX })
                .collect();
            check(&isas, &w, &a, &alt);
        }
    }
}

#[test]
fn misaligned_slices() {
    let isas = supported();
    let mut rng = Rng(7);
    let w: Vec<u8> = (0..4200).map(|_| rng.next() as u8).collect();
    let a: Vec<i16> = (0..4200).map(|_| rng.i16()).collect();
    for off in 0..40 {
        for n in [
            0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 2047, 2048, 2049, 4100,
        ] {
            let (wo, ao) = (off, (off * 7) % 40);
            check(&isas, &w[wo..wo + n], &a[ao..ao + n], &a[off..off + n]);
        }
    }
}

#[test]
fn select_changes_only_the_speed() {
    let isas = supported();
    for config in [odd_mlp_t(), odd_attention()] {
        for (fill, wide) in [
            (Fill::Random, false),
            (Fill::Extreme, false),
            (Fill::Random, true),
            (Fill::Extreme, true),
        ] {
            // int8 weights, or every matrix int16 (the int16 x int16 kernel on every row).
            let bytes = if wide {
                fixed_model_with(&config, 11, fill, Weights::I16, |_| true)
            } else {
                fixed_model(&config, 11, fill)
            };
            let model = Model::parse(&bytes).expect("parse");
            let need = FixedEngine::scratch_len(&config);
            let tokens: Vec<u8> = (0..config.seq_len)
                .map(|i| (i * 5 % config.vocab_size) as u8)
                .collect();
            // (y, z, q_halt) after each step, per implementation.
            let mut runs = Vec::new();
            for &isa in &isas {
                let trace = with_isa(isa, || {
                    let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
                    let mut engine = FixedEngine::new(&model, &mut s16, &mut s32).expect("engine");
                    engine.start(&tokens, 1).expect("start");
                    let mut trace = Vec::new();
                    for _ in 0..config.halt_max_steps {
                        let s = engine.step();
                        trace.push((engine.y().to_vec(), engine.z().to_vec(), s.q_halt));
                    }
                    trace
                });
                runs.push((isa, trace));
            }
            let (_, first) = &runs[0];
            // The states move (a frozen engine would make the comparison vacuous); the
            // saturated worst case may sit still.
            if fill == Fill::Random {
                assert_ne!(first[0].0, first[1].0, "y does not change between steps");
            }
            for (isa, trace) in &runs[1..] {
                assert!(
                    trace == first,
                    "{} differs from portable ({fill:?}, int16 weights {wide})",
                    isa.name()
                );
            }
        }
    }
}

/// `select` refuses an implementation this machine lacks and keeps the one it had.
#[test]
fn select_refuses_what_this_machine_lacks() {
    let here = supported();
    with_isa(Isa::Portable, || {
        for isa in Isa::ALL {
            assert_eq!(
                optimized::select(isa),
                here.contains(&isa),
                "{}",
                isa.name()
            );
            if !here.contains(&isa) {
                assert_eq!(optimized::selected(), Isa::Portable, "{}", isa.name());
            }
            // Back to the choice `with_isa` made, for the next one.
            assert!(optimized::select(Isa::Portable));
        }
    });
}

/// Row blocking (a scratch between `scratch_len` and `scratch_len_fast` and beyond) gives the
/// same states, logits and answers as one row per weight pass, with every implementation, for
/// int8 weights and for a model whose token mixer is int16.
#[test]
fn row_blocks_change_only_the_speed() {
    let isas = supported();
    let models = [
        (odd_mlp_t(), Weights::I8),
        (odd_attention(), Weights::I8),
        (odd_mlp_t(), Weights::I16),
    ];
    for (config, weights) in models {
        let bytes = fixed_model_with(&config, 5, Fill::Random, weights, |t| {
            matches!(
                t,
                trm_nostd::TensorId::Layer {
                    tensor: trm_nostd::LayerTensor::MlpTGateUp,
                    ..
                }
            )
        });
        let model = Model::parse(&bytes).expect("parse");
        let small = FixedEngine::scratch_len(&config);
        let fast = FixedEngine::scratch_len_fast(&config);
        assert!(fast.i16s > small.i16s && fast.i32s > small.i32s);
        let mid = ScratchLen {
            i16s: (small.i16s + fast.i16s) / 2,
            i32s: (small.i32s + fast.i32s) / 2,
            f32s: 0,
        };
        let huge = ScratchLen {
            i16s: fast.i16s * 4,
            i32s: fast.i32s * 4,
            f32s: 0,
        };
        let tokens: Vec<u8> = (0..config.seq_len)
            .map(|i| (i * 3 % config.vocab_size) as u8)
            .collect();
        let mut runs = Vec::new();
        for &isa in &isas {
            for size in [small, mid, fast, huge] {
                let (mut s16, mut s32) = (vec![0i16; size.i16s], vec![0i32; size.i32s]);
                let mut engine = FixedEngine::new(&model, &mut s16, &mut s32).expect("engine");
                engine.start(&tokens, 0).expect("start");
                let trace = with_isa(isa, || {
                    let mut trace = Vec::new();
                    for _ in 0..config.halt_max_steps {
                        let s = engine.step();
                        let mut logits = vec![0i32; (config.seq_len * config.vocab_size) as usize];
                        engine.logits(&mut logits).expect("logits");
                        trace.push((engine.y().to_vec(), engine.z().to_vec(), s, logits));
                    }
                    trace
                });
                runs.push(trace);
            }
        }
        assert_ne!(
            runs[0][0].0, runs[0][1].0,
            "y does not change between steps"
        );
        for (i, r) in runs.iter().enumerate().skip(1) {
            assert!(
                r == &runs[0],
                "run {i} (implementation x scratch size) changes the results"
            );
        }
    }
}

/// `sum w a` of int16 weights stored as little-endian byte pairs, in i128, over
/// `min(w.len() / 2, a.len())` elements (a trailing odd byte is not a weight).
fn exact_w16(w: &[u8], a: &[i16]) -> i128 {
    w.chunks_exact(2)
        .zip(a)
        .map(|(p, &a)| i16::from_le_bytes([p[0], p[1]]) as i128 * a as i128)
        .sum()
}

/// A byte buffer of `len + 1` bytes and the offset in it where the data start at an even
/// (`odd == false`) or odd (`odd == true`) address.
fn placed(len: usize, odd: bool) -> (Vec<u8>, usize) {
    let buf = vec![0u8; len + 1];
    let even_at = buf.as_ptr() as usize % 2;
    (buf, if odd { 1 - even_at } else { even_at })
}

/// Checks `dot_w16_a16` of `w` (int16 little-endian pairs, any byte length, any address)
/// and `a`: the reference against i128, every implementation (supported or not: an
/// unsupported one falls back to the reference) and the engine's dispatch against the
/// reference.
fn check_w16(w: &[u8], a: &[i16]) {
    let r = kernels::dot_w16_a16(w, a);
    assert_eq!(
        r as i128,
        exact_w16(w, a),
        "reference w16, {} bytes x {}",
        w.len(),
        a.len()
    );
    for isa in Isa::ALL {
        assert_eq!(
            isa.dot_w16_a16(w, a),
            r,
            "{} dot_w16_a16, {} bytes x {} at address parity {}",
            isa.name(),
            w.len(),
            a.len(),
            w.as_ptr() as usize % 2
        );
    }
    assert_eq!(optimized::dot_w16_a16(w, a), r, "dispatch dot_w16_a16");
}

/// The int16 weights `ws` as byte pairs at an even and at an odd address (`extra` trailing
/// bytes after them), each checked against `a`.
fn check_w16_placed(ws: &[i16], extra: &[u8], a: &[i16]) {
    let bytes: Vec<u8> = ws
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(extra.iter().copied())
        .collect();
    for odd in [false, true] {
        let (mut buf, at) = placed(bytes.len(), odd);
        buf[at..at + bytes.len()].copy_from_slice(&bytes);
        let w = &buf[at..at + bytes.len()];
        assert_eq!(w.as_ptr() as usize % 2, odd as usize);
        // At an odd address the cast to &[i16] fails (the reference path runs), at an even
        // one it succeeds (the implementation's int16 kernel runs).
        let even = &w[..w.len() & !1];
        if !even.is_empty() {
            assert_eq!(bytemuck::try_cast_slice::<u8, i16>(even).is_err(), odd);
        }
        check_w16(w, a);
    }
}

fn pick_w16(rng: &mut Rng, kind: u64) -> i16 {
    match kind {
        1 => {
            if rng.next().is_multiple_of(2) {
                i16::MIN
            } else {
                i16::MAX
            }
        }
        2 => rng.range(-3, 3) as i16,
        3 => i16::MIN,
        _ => rng.i16(),
    }
}

#[test]
fn dot_w16_a16_every_short_length() {
    supported();
    let mut rng = Rng(0x1616);
    for n in 0..=67usize {
        for kind in 0..4 {
            let ws: Vec<i16> = (0..n).map(|_| pick_w16(&mut rng, kind)).collect();
            let a: Vec<i16> = (0..n).map(|_| pick_i16(&mut rng, kind)).collect();
            check_w16_placed(&ws, &[], &a);
            // An odd byte length: the last byte is not a weight.
            check_w16_placed(&ws, &[rng.next() as u8], &a);
            // Unequal lengths: the shorter side decides.
            let cut = rng.range(0, n as i64) as usize;
            check_w16_placed(&ws[..cut], &[], &a);
            check_w16_placed(&ws, &[0x80], &a[..cut]);
        }
        // Every extreme pair, and alternating signs.
        for (wv, av) in [
            (i16::MIN, i16::MIN),
            (i16::MIN, i16::MAX),
            (i16::MAX, i16::MIN),
            (i16::MAX, i16::MAX),
        ] {
            check_w16_placed(&vec![wv; n], &[], &vec![av; n]);
            let alt: Vec<i16> = (0..n)
                .map(|i| if i % 2 == 0 { i16::MIN } else { i16::MAX })
                .collect();
            check_w16_placed(&vec![wv; n], &[0x7f], &alt);
        }
    }
}

#[test]
fn dot_w16_a16_random_long() {
    supported();
    let mut rng = Rng(0xd0716);
    for case in 0..400 {
        let n = if case % 4 == 0 {
            rng.range(0, 9000) as usize
        } else {
            rng.range(0, 600) as usize
        };
        let kind = rng.next() % 4;
        let ws: Vec<i16> = (0..n).map(|_| pick_w16(&mut rng, kind)).collect();
        let a: Vec<i16> = (0..n + 5).map(|_| pick_i16(&mut rng, kind)).collect();
        let extra: Vec<u8> = (0..rng.range(0, 3)).map(|_| rng.next() as u8).collect();
        check_w16_placed(&ws, &extra, &a);
    }
    // Lengths at and around the vector widths and the i32 chunks, all extreme.
    for n in [255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 8191] {
        let ws = vec![i16::MIN; n];
        let a = vec![i16::MIN; n];
        check_w16_placed(&ws, &[], &a);
        check_w16_placed(&ws, &[1], &a);
    }
}

/// Every misaligned start (byte offsets 0..8 of an even address, so both parities) and slices
/// of `&[i16]` activations at every element offset.
#[test]
fn dot_w16_a16_misaligned_slices() {
    supported();
    let mut rng = Rng(99);
    let bytes: Vec<u8> = (0..2 * 4200 + 16).map(|_| rng.next() as u8).collect();
    let a: Vec<i16> = (0..4200).map(|_| rng.i16()).collect();
    let (mut buf, at) = placed(bytes.len(), false);
    buf[at..at + bytes.len()].copy_from_slice(&bytes);
    for off in 0..8 {
        for n in [
            0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 257, 2049, 4100,
        ] {
            for nb in [2 * n, 2 * n + 1] {
                let w = &buf[at + off..at + off + nb];
                assert_eq!(w.as_ptr() as usize % 2, off % 2);
                let ao = (off * 5) % 40;
                check_w16(w, &a[ao..ao + n]);
            }
        }
    }
}

/// `DivRound` (the attention output's division by a reciprocal) equals `div_round` on random
/// numerators of every size and sign, at the fast path's edges and beyond them (where it
/// falls back), and for divisors of every size including `<= 0`.
#[test]
fn div_round_by_reciprocal_equals_div_round() {
    use optimized::attention::DivRound;
    let mut rng = Rng(0xD1F0);
    let mut divisors = vec![
        i64::MIN,
        -5,
        0,
        1,
        2,
        3,
        7,
        1 << 30,
        (1 << 37) - 1,
        97 << 30,
    ];
    divisors.extend([(1 << 59) - 1, 1 << 59, (1 << 59) + 1, i64::MAX]);
    for _ in 0..200 {
        let bits = rng.range(1, 62) as u32;
        divisors.push(rng.range(1, (1i64 << bits) - 1));
    }
    for &d in &divisors {
        let div = DivRound::new(d);
        let mut numerators = vec![
            0,
            1,
            -1,
            d,
            d.wrapping_neg(),
            d / 2,
            -(d / 2),
            i64::MAX,
            i64::MIN,
        ];
        numerators.extend([
            (1 << 61) - 1,
            -(1 << 61),
            1 << 61,
            (1 << 62) - 1,
            -(1 << 62),
        ]);
        for _ in 0..300 {
            let bits = rng.range(0, 63) as u32;
            let n = (rng.next() >> (64 - bits.max(1))) as i64;
            numerators.push(if rng.next().is_multiple_of(2) {
                n
            } else {
                n.wrapping_neg()
            });
        }
        if d > 0 {
            // Ties and their neighbours: n = k d +- d / 2 (+- 1).
            for _ in 0..50 {
                let k = rng.range(-(1 << 20), 1 << 20);
                for e in [-1, 0, 1] {
                    if let Some(n) = k.checked_mul(d).and_then(|x| x.checked_add(d / 2 + e)) {
                        numerators.push(n);
                    }
                }
            }
        }
        for &n in &numerators {
            assert_eq!(div.apply(n), kernels::div_round(n, d), "n={n} d={d}");
        }
    }
}

/// The attention output row of `optimized::attention` equals the reference
/// `kernels::attention_row` with every implementation: random and extreme probabilities and
/// values, head widths across every vector remainder, value rows at a stride.
#[test]
fn attention_row_equals_the_reference() {
    let isas = supported();
    let mut rng = Rng(0xA77E);
    for case in 0..400u64 {
        let hd = rng.range(1, 80) as usize;
        let n = rng.range(1, 120) as usize;
        let stride = hd + rng.range(0, 40) as usize;
        let kind = case % 4;
        let p: Vec<i32> = (0..n)
            .map(|_| match kind {
                1 => 1 << 30,
                2 => rng.range(0, 3) as i32,
                _ => rng.range(0, 1 << 30) as i32,
            })
            .collect();
        let sum: i64 = p.iter().map(|&x| x as i64).sum::<i64>().max(1);
        let v: Vec<i16> = (0..(n - 1) * stride + hd)
            .map(|_| pick_i16(&mut rng, kind))
            .collect();
        let mut want = vec![0i16; hd];
        kernels::attention_row(&p, sum, |j| &v[j * stride..j * stride + hd], &mut want);
        for &isa in &isas {
            let mut got = vec![0i16; hd];
            optimized::attention::attention_row(isa, &p, sum, &v, stride, &mut got);
            assert_eq!(
                got,
                want,
                "{} n={n} hd={hd} stride={stride} kind={kind}",
                isa.name()
            );
        }
    }
}

/// The blocked attention's row softmax (`optimized::attention::softmax_planes`) equals the
/// reference (`sat32(Requant::apply)`, `kernels::softmax_q30`, then the split of each `p`)
/// with every implementation: sums inside and outside `i32`, multipliers and shifts from 0 to
/// past 62, rows of every length across the vector widths, scores that tie and that spread
/// past the exponent's range.
#[test]
fn softmax_planes_equal_the_reference() {
    let isas = supported();
    let mut rng = Rng(0x50F7);
    for case in 0..600u64 {
        let n = rng.range(1, 130) as usize;
        let rq = kernels::Requant {
            mult: match case % 5 {
                0 => 0,
                1 => i32::MAX,
                _ => rng.range(0, i32::MAX as i64) as i32,
            },
            shift: match case % 7 {
                0 => 0,
                1 => 63,
                2 => 126,
                _ => rng.range(1, 62) as u32,
            },
        };
        let sums: Vec<i64> = (0..n)
            .map(|_| match (case / 3) % 4 {
                0 => rng.range(-(1 << 31), (1 << 31) - 1),
                1 => rng.range(-(1 << 40), 1 << 40),
                2 => rng.range(-3, 3),
                _ => (rng.next() as i64) >> rng.range(0, 63),
            })
            .collect();
        let mut want = vec![0i32; n];
        for (w, &s) in want.iter_mut().zip(&sums) {
            *w = kernels::sat32(rq.apply(s));
        }
        let want_sum = kernels::softmax_q30(&mut want);
        let want_ph: Vec<i16> = want.iter().map(|&p| (p >> 16) as i16).collect();
        let want_pl: Vec<i16> = want
            .iter()
            .map(|&p| ((p & 0xFFFF) - 0x8000) as i16)
            .collect();
        for &isa in &isas {
            let (mut s, mut ph, mut pl) = (vec![0i32; n], vec![0i16; n], vec![0i16; n]);
            let sum =
                optimized::attention::softmax_planes(isa, &sums, rq, &mut s, &mut ph, &mut pl);
            let what = format!("{} case {case} n={n} {rq:?}", isa.name());
            assert_eq!(sum, want_sum, "{what}");
            assert_eq!(s, want, "{what}");
            assert_eq!((&ph, &pl), (&want_ph, &want_pl), "{what}");
        }
    }
}

/// The 32-bit SwiGLU SiLU pass of 32-bit cores (`optimized::activation::swiglu_silu_i32`)
/// equals the reference (`silu_spaced`, then `sat16(Requant::apply(s u))`): every knot spacing,
/// random and extreme tables and values, product shifts on both sides of 32 and without a
/// product.
#[test]
fn swiglu_silu_i32_equals_the_reference() {
    use optimized::activation::swiglu_silu_i32;
    let mut rng = Rng(0x5117);
    for case in 0..300u64 {
        let step = 4 + (case % 5) as u32;
        let knots = (1usize << (16 - step)) + 1;
        let table: Vec<u8> = (0..knots)
            .flat_map(|_| pick_i16(&mut rng, case % 3).to_le_bytes())
            .collect();
        let table = kernels::I16Table(&table);
        let n = rng.range(1, 300) as usize;
        let gate: Vec<i16> = (0..n).map(|_| pick_i16(&mut rng, (case / 3) % 4)).collect();
        let up: Vec<i16> = (0..n).map(|_| pick_i16(&mut rng, (case / 5) % 4)).collect();
        let prod = match case % 6 {
            0 => None,
            1 => Some(kernels::Requant {
                mult: i32::MAX,
                shift: 32,
            }),
            2 => Some(kernels::Requant {
                mult: i32::MAX,
                shift: 62,
            }),
            3 => Some(kernels::Requant {
                mult: rng.range(0, i32::MAX as i64) as i32,
                shift: rng.range(0, 31) as u32,
            }),
            _ => Some(kernels::Requant {
                mult: rng.range(0, i32::MAX as i64) as i32,
                shift: rng.range(32, 62) as u32,
            }),
        };
        let want: Vec<i16> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| {
                let s = kernels::silu_spaced(table, step, g);
                match prod {
                    Some(rq) => kernels::sat16(rq.apply(s as i64 * u as i64)),
                    None => s,
                }
            })
            .collect();
        let mut got = gate.clone();
        swiglu_silu_i32(table, step, &mut got, &up, prod);
        assert_eq!(got, want, "case {case} step {step} {prod:?}");
    }
}
