//! The optimized float kernels (`trm_nostd::float::optimized`) against the portable ones, bit
//! for bit, on every implementation this machine supports: the matrix products on random and
//! extreme values (subnormals, infinities, `-0.0`), every tail length, every block remainder and
//! smaller weight tiles; the weight conversions on all 65536 f16 and bf16 values; the
//! exponential on a sweep of the whole f32 range and its branch boundaries (the full range:
//! `cargo test -p trm-nostd --test float_simd -- --ignored`); and whole engines on random
//! D=128 and D=512 models (mlp_t, attention with RoPE and with learned positions; f32, f16 and
//! bf16 weights), compared at every step.
//!
//! The implementation is a per-engine (or per-call) choice, so these tests share no global
//! state.

use trm_nostd::float::kernels::{self, Arith};
use trm_nostd::float::optimized::{self, Isa};
use trm_nostd::float::{MatRef, OwnedWeights};
use trm_nostd::{Config, DType, Engine, FloatEngine, PosEncoding, Shape, TensorView};

/// Every implementation this machine supports, the portable one first. On x86_64 the CPU's own
/// feature detection must agree, so that a broken detection cannot make the comparisons
/// vacuous.
fn isas() -> Vec<Isa> {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_supported()).collect();
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        assert_eq!(isas.contains(&Isa::Avx2), avx2);
        let avx512 = avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512dq");
        assert_eq!(isas.contains(&Isa::Avx512), avx512 && has!("avx512bw"));
    }
    assert_eq!(isas.first(), Some(&Isa::Portable));
    assert_eq!(Isa::best(), *isas.last().expect("portable"));
    isas
}

/// The optimized implementations this machine supports.
fn optimized_isas() -> Vec<Isa> {
    isas().into_iter().skip(1).collect()
}

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

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A value of a random class: ordinary, tiny, subnormal, signed zero, huge (products
    /// overflow), infinite; never NaN.
    fn extreme(&mut self) -> f32 {
        let sign = if self.next() & 1 == 0 { 1.0 } else { -1.0 };
        match self.below(8) {
            0 | 1 => self.unit() * 4.0,
            2 => sign * f32::from_bits((self.next() as u32) & 0x007f_ffff), // subnormal or 0
            3 => -0.0,
            4 => sign * f32::from_bits(0x0080_0000 + (self.next() as u32 % 0x0300_0000)),
            5 => sign * f32::from_bits(0x7000_0000 + (self.next() as u32 % 0x0f7f_ffff)),
            6 => sign * f32::INFINITY,
            _ => {
                let v = f32::from_bits(self.next() as u32);
                if v.is_nan() { 1.5 } else { v }
            }
        }
    }
}

/// Equal bits, or both NaN (NaN payloads are not specified by Rust's float semantics).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            same(*g, *w),
            "{what}: index {i}: {g:e} ({:#010x}) vs portable {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// Little-endian bytes of `vals` stored as `dtype` (bf16: the nearest value, ties to even; f16:
/// [`f16_bits`]). No NaN inputs.
fn store(vals: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::BF16 => vals
            .iter()
            .flat_map(|v| {
                let b = v.to_bits();
                let r = (b + 0x7fff + ((b >> 16) & 1)) >> 16;
                (r as u16).to_le_bytes()
            })
            .collect(),
        _ => vals
            .iter()
            .flat_map(|v| f16_bits(*v).to_le_bytes())
            .collect(),
    }
}

/// An f16 near `v` (truncated; flushed to zero below 2^-14, infinite above 65504): any f16
/// is a valid weight here.
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        sign
    } else if exp >= 31 {
        sign | 0x7c00
    } else {
        sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
    }
}

fn mat<'a>(dtype: DType, rows: usize, cols: usize, bytes: &'a [u8]) -> MatRef<'a> {
    MatRef::new(&TensorView {
        dtype,
        shape: Shape::matrix(rows, cols),
        data: bytes,
    })
    .expect("matrix")
}

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// One product: every optimized implementation with tiles of `tiles` values (each at least one
/// weight row) against `kernels::linear`, the whole output buffers compared (nothing outside the
/// outputs may be written).
#[allow(clippy::too_many_arguments)]
fn check_linear(
    what: &str,
    w: &MatRef<'_>,
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out_stride: usize,
    tiles: &[usize],
    isas: &[Isa],
) {
    let out_len = rows * out_stride;
    // Outside the outputs the sentinel must survive.
    let sentinel = -1234.5678f32;
    for arith in Arith::ALL {
        let mut want = vec![sentinel; out_len];
        let mut wrow = vec![0.0; w.cols()];
        kernels::linear_with(
            arith, w, &mut wrow, input, in_stride, rows, &mut want, out_stride,
        );
        if arith == Arith::Separate {
            // The default entry points are the separate arithmetic.
            let mut plain = vec![sentinel; out_len];
            kernels::linear(w, &mut wrow, input, in_stride, rows, &mut plain, out_stride);
            assert_same(&format!("{what}: kernels::linear"), &plain, &want);
        }
        for &isa in isas {
            for &t in tiles {
                let mut tile = vec![f32::NAN; t];
                let mut got = vec![sentinel; out_len];
                if arith == Arith::Separate {
                    optimized::linear(
                        isa, w, &mut tile, input, in_stride, rows, &mut got, out_stride,
                    );
                } else {
                    optimized::linear_with(
                        isa, arith, w, &mut tile, input, in_stride, rows, &mut got, out_stride,
                    );
                }
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        same(*g, *e),
                        "{what} {isa:?} {arith:?} tile {t}: out[{i}] = {g:e} ({:#010x}), portable {e:e} ({:#010x})",
                        g.to_bits(),
                        e.to_bits()
                    );
                }
            }
        }
    }
}

/// Tile sizes that exercise the full tile and every smaller one (down to one row).
fn tile_sizes(cols: usize) -> Vec<usize> {
    let row = cols.div_ceil(8) * 8;
    let mut t = vec![
        optimized::tile_len(cols),
        cols,
        row,
        2 * row,
        3 * row + 5,
        5 * row,
    ];
    t.sort_unstable();
    t.dedup();
    t
}

/// Every activation-row and weight-row remainder of the blocked kernels (rows 1..=13 against
/// blocks of 6 and 3; weight rows 1..=17 against tiles of 8, pairs and blocks of 4), for every
/// tail length, on random values.
#[test]
fn linear_every_remainder() {
    let isas = optimized_isas();
    let mut rng = Rng(1);
    for cols in [1usize, 3, 8, 13, 16, 21, 97] {
        for dtype in DTYPES {
            let orows = 17;
            let wv: Vec<f32> = (0..orows * cols).map(|_| rng.unit()).collect();
            let bytes = store(&wv, dtype);
            let in_stride = cols + 3;
            let input: Vec<f32> = (0..13 * in_stride).map(|_| rng.unit()).collect();
            for o in 1..=orows {
                let w = mat(dtype, o, cols, &bytes[..o * cols * dtype.size()]);
                for rows in 1..=13 {
                    let what = format!("{dtype:?} cols {cols} orows {o} rows {rows}");
                    let tiles = [optimized::tile_len(cols), 3 * cols.div_ceil(8) * 8];
                    check_linear(&what, &w, &input, in_stride, rows, o + 2, &tiles, &isas);
                }
            }
        }
    }
}

/// Random shapes (every tail length, strided rows) and tile sizes on ordinary values.
#[test]
fn linear_random_shapes() {
    let isas = optimized_isas();
    let mut rng = Rng(2);
    for case in 0..400 {
        let cols = match case % 4 {
            0 => 1 + rng.below(40),
            1 => 40 + rng.below(200),
            2 => [64, 96, 97, 128, 512][rng.below(5)],
            _ => 1 + rng.below(16),
        };
        let orows = 1 + rng.below(40);
        let rows = 1 + rng.below(25);
        let dtype = DTYPES[case % 3];
        let in_stride = cols + rng.below(4);
        let out_stride = orows + rng.below(4);
        let wv: Vec<f32> = (0..orows * cols).map(|_| rng.unit()).collect();
        let bytes = store(&wv, dtype);
        let w = mat(dtype, orows, cols, &bytes);
        let input: Vec<f32> = (0..rows * in_stride).map(|_| rng.unit() * 3.0).collect();
        let what = format!("case {case}: {dtype:?} {orows}x{cols}, {rows} rows");
        check_linear(
            &what,
            &w,
            &input,
            in_stride,
            rows,
            out_stride,
            &tile_sizes(cols),
            &isas,
        );
    }
}

/// Extreme values in weights and activations: subnormals, signed zeros, overflowing products,
/// infinities (so also NaN sums), and all-zero rows (every lane `+0.0 + (-0.0)` cases).
#[test]
fn linear_extreme_values() {
    let isas = optimized_isas();
    let mut rng = Rng(3);
    for case in 0..300 {
        let cols = 1 + rng.below(70);
        let orows = 1 + rng.below(20);
        let rows = 1 + rng.below(15);
        let dtype = DTYPES[case % 3];
        let wv: Vec<f32> = (0..orows * cols)
            .map(|_| match dtype {
                DType::F32 => rng.extreme(),
                // f16 / bf16: their own extreme bit patterns (subnormals, infinities, -0).
                _ => f32::from_bits(0),
            })
            .collect();
        let bytes = match dtype {
            DType::F32 => store(&wv, dtype),
            _ => (0..orows * cols)
                .flat_map(|_| {
                    let b = match rng.below(6) {
                        0 => 0x8000u16,
                        1 => rng.next() as u16 & 0x83ff, // f16 subnormal (bf16: tiny normal)
                        2 => 0x7c00 | (rng.next() as u16 & 0x8000), // f16 inf
                        3 => 0x7f80 | (rng.next() as u16 & 0x8000), // bf16 inf
                        _ => {
                            let v = rng.next() as u16;
                            // No NaN patterns of either type.
                            if v & 0x7c00 == 0x7c00 || v & 0x7f80 == 0x7f80 {
                                v & 0xbbff
                            } else {
                                v
                            }
                        }
                    };
                    b.to_le_bytes()
                })
                .collect(),
        };
        let w = mat(dtype, orows, cols, &bytes);
        let input: Vec<f32> = (0..rows * cols)
            .map(|_| if case % 5 == 0 { -0.0 } else { rng.extreme() })
            .collect();
        let what = format!("extreme case {case}: {dtype:?} {orows}x{cols}, {rows} rows");
        check_linear(
            &what,
            &w,
            &input,
            cols,
            rows,
            orows,
            &tile_sizes(cols),
            &isas,
        );
    }
}

/// Degenerate shapes (no rows, no columns, a tile too small for one row) fall back to the
/// portable kernel and give its results.
#[test]
fn linear_degenerate_shapes() {
    let isas = optimized_isas();
    let bytes = store(&[1.0, -2.0, 0.5, 4.0, -0.0, 3.0], DType::F32);
    let w = mat(DType::F32, 2, 3, &bytes);
    let input = [1.0, 2.0, 3.0, -1.0, -2.0, -3.0];
    check_linear("no rows", &w, &input, 3, 0, 2, &[24], &isas);
    check_linear("tiny tile", &w, &input, 3, 2, 2, &[3, 7], &isas);
    let empty = mat(DType::F32, 2, 0, &[]);
    check_linear("no columns", &empty, &input, 3, 2, 2, &[3, 16], &isas);
}

/// The weight conversions of the optimized kernels equal `MatRef::row_into` on every f16 and
/// bf16 bit pattern (NaNs included), in rows whose length is not a multiple of 8 too.
#[test]
fn weight_conversions_all_values() {
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    for isa in optimized_isas() {
        for dtype in [DType::F16, DType::BF16] {
            for cols in [65536usize, 65533] {
                let w = mat(dtype, 1, cols, &bytes[..cols * 2]);
                let mut want = vec![7.0f32; cols + 2];
                let mut got = vec![7.0f32; cols + 2];
                w.row_into(0, &mut want);
                optimized::row_into(isa, &w, 0, &mut got);
                let same_bits = got
                    .iter()
                    .zip(&want)
                    .all(|(g, e)| g.to_bits() == e.to_bits());
                assert!(same_bits, "{isa:?} {dtype:?} cols {cols}");
                // An out-of-range row converts nothing.
                optimized::row_into(isa, &w, 1, &mut got[..4]);
                assert_eq!(&got[..4], &want[..4]);
            }
        }
        let f: Vec<f32> = (0..37).map(|i| i as f32 * -0.37).collect();
        let fb = store(&f, DType::F32);
        let w = mat(DType::F32, 1, 37, &fb);
        let mut got = vec![0.0; 37];
        optimized::row_into(isa, &w, 0, &mut got);
        assert_same("f32 row", &got, &f);
    }
}

/// Values where `libm::expf` changes branch (both signs, a few hundred ulps around each), plus
/// zeros, infinities, NaNs, subnormals and the arguments whose exponent needs the pre-scaling
/// of `scalbnf`.
fn exp_special_inputs() -> Vec<f32> {
    let mut v = Vec::new();
    for edge in [
        0x42ae_ac50u32,
        0x42b1_7218,
        0x42cf_f1b5,
        0x3f85_1592,
        0x3eb1_7218,
        0x3900_0000,
        0x7f80_0000,
        0x42fe_0000, // k = 127 / 128 region
        0x42fc_0000,
        0x42b0_0000,
        0x42ae_0000,
        0x42c8_0000,
    ] {
        for d in 0..=600u32 {
            for b in [edge.wrapping_add(d).wrapping_sub(300), edge] {
                v.push(f32::from_bits(b));
                v.push(-f32::from_bits(b));
            }
        }
    }
    v.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::from_bits(0x0000_0001),
        f32::from_bits(0x8000_0001),
        f32::MAX,
        f32::MIN,
    ]);
    // Every integer k of the reduction: x near k ln 2.
    for k in -152..=130 {
        let x = k as f32 * core::f32::consts::LN_2;
        for d in -3i32..=3 {
            v.push(f32::from_bits(x.to_bits().wrapping_add(d as u32)));
        }
    }
    v
}

fn check_exp(inputs: &[f32], isas: &[Isa]) {
    let mut want = inputs.to_vec();
    optimized::exp_sub(Isa::Portable, &mut want, 0.0);
    for &isa in isas {
        let mut got = inputs.to_vec();
        optimized::exp_sub(isa, &mut got, 0.0);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // expf returns a NaN argument itself: the bits must match exactly there too.
            assert!(
                g.to_bits() == w.to_bits(),
                "{isa:?} expf({:e} = {:#010x}) = {g:e} ({:#010x}), libm {w:e} ({:#010x})",
                inputs[i],
                inputs[i].to_bits(),
                g.to_bits(),
                w.to_bits()
            );
        }
    }
}

/// `expf` on a sweep of every 61st bit pattern (all exponents, both signs) and the special
/// inputs.
#[test]
fn exp_matches_libm() {
    let isas = optimized_isas();
    check_exp(&exp_special_inputs(), &isas);
    let mut chunk = Vec::with_capacity(1 << 20);
    let mut b = 0u64;
    while b <= u32::MAX as u64 {
        chunk.push(f32::from_bits(b as u32));
        if chunk.len() == 1 << 20 {
            check_exp(&chunk, &isas);
            chunk.clear();
        }
        b += 61;
    }
    check_exp(&chunk, &isas);
}

/// `expf` on all 2^32 inputs (about a minute; run with `-- --ignored`).
#[test]
#[ignore = "exhaustive: all 2^32 inputs"]
fn exp_matches_libm_everywhere() {
    let isas = optimized_isas();
    let mut chunk = Vec::with_capacity(1 << 22);
    for b in 0..=u32::MAX {
        chunk.push(f32::from_bits(b));
        if chunk.len() == 1 << 22 {
            check_exp(&chunk, &isas);
            chunk.clear();
        }
    }
    check_exp(&chunk, &isas);
}

/// `exp_sub` with a shift and every length up to 40 (vector tails); `silu_mul` on random,
/// special and extreme values against `kernels::silu(g) * u`.
#[test]
fn softmax_exp_and_silu_match_portable() {
    let isas = optimized_isas();
    let mut rng = Rng(4);
    for len in 0..=40 {
        for _ in 0..20 {
            let s: Vec<f32> = (0..len).map(|_| rng.unit() * 30.0).collect();
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut want = s.clone();
            optimized::exp_sub(Isa::Portable, &mut want, max);
            for &isa in &isas {
                let mut got = s.clone();
                optimized::exp_sub(isa, &mut got, max);
                assert_same(&format!("{isa:?} exp_sub len {len}"), &got, &want);
            }
        }
    }
    let mut gates: Vec<f32> = exp_special_inputs().iter().map(|v| -v).collect();
    gates.extend((0..20000).map(|_| rng.unit() * 20.0));
    gates.extend((0..20000).map(|_| rng.extreme()));
    let ups: Vec<f32> = (0..gates.len())
        .map(|i| {
            if i % 7 == 0 {
                rng.extreme()
            } else {
                rng.unit()
            }
        })
        .collect();
    for len in (0..=40).chain([gates.len()]) {
        let want: Vec<f32> = gates[..len]
            .iter()
            .zip(&ups)
            .map(|(g, u)| kernels::silu(*g) * *u)
            .collect();
        for &isa in &isas {
            let mut got = gates[..len].to_vec();
            optimized::silu_mul(isa, &mut got, &ups);
            assert_same(&format!("{isa:?} silu_mul len {len}"), &got, &want);
        }
    }
}

/// The transposes (mlp_t mixer) equal the portable one on every edge remainder of the 8 x 8
/// blocks.
#[test]
fn transpose_matches_portable() {
    let isas = optimized_isas();
    let mut rng = Rng(6);
    for rows in (1..=19).chain([97, 512]) {
        for cols in (1..=19).chain([97, 128]) {
            let src: Vec<f32> = (0..rows * cols).map(|_| rng.extreme()).collect();
            let mut want = vec![0.5; rows * cols + 3];
            kernels::transpose(&src, rows, cols, &mut want);
            for &isa in &isas {
                let mut got = vec![0.5; rows * cols + 3];
                optimized::transpose(isa, &src, rows, cols, &mut got);
                let same_bits = got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same_bits, "{isa:?} {rows}x{cols}");
            }
        }
    }
}

/// The attention kernel with the optimized scratch (all heads' scores, blocked products for
/// scores and values) equals the portable loop, for head sizes that are not multiples of the
/// vector widths, every query-block remainder, and extreme values; the scores it reports are
/// the same, in the same order.
#[test]
fn attention_matches_portable() {
    use trm_nostd::float::{Observer, Site, Tap};
    #[derive(Default)]
    struct Seen(Vec<(Site, Vec<u32>)>);
    impl Observer for Seen {
        fn observe(&mut self, site: Site, values: &[f32]) {
            self.0
                .push((site, values.iter().map(|v| v.to_bits()).collect()));
        }
    }
    let isas = optimized_isas();
    let mut rng = Rng(5);
    let shapes = [
        (1usize, 1usize, 8usize),
        (2, 1, 5),
        (7, 3, 12),
        (13, 2, 24),
        (5, 4, 40),
        (9, 2, 64),
        (17, 1, 72),
        (97, 2, 64),
        (20, 3, 17),
    ];
    for (case, (l, heads, hd)) in shapes.into_iter().enumerate() {
        for extreme in [false, true] {
            let d = heads * hd;
            let qkv: Vec<f32> = (0..l * 3 * d)
                .map(|_| {
                    if extreme {
                        rng.extreme()
                    } else {
                        rng.unit() * 3.0
                    }
                })
                .collect();
            let run = |isa: Isa, arith: Arith, len: usize| {
                let mut q = qkv.clone();
                let mut scores = vec![f32::NAN; len];
                let mut seen = Seen::default();
                let mut tap = Tap {
                    observer: &mut seen,
                    layer: 1,
                    sub: trm_nostd::float::Sublayer::Mixer,
                };
                kernels::attention(isa, arith, &mut q, l, heads, hd, &mut scores, &mut tap);
                (q, seen.0)
            };
            for arith in Arith::ALL {
                let (want, want_seen) = run(Isa::Portable, arith, l);
                for &isa in &isas {
                    for len in [l, optimized::attention_len(l, heads, hd)] {
                        let (got, seen) = run(isa, arith, len);
                        let what = format!(
                            "case {case} extreme {extreme} {isa:?} {arith:?} scratch {len}"
                        );
                        assert_same(&what, &got, &want);
                        assert_eq!(seen.len(), want_seen.len(), "{what}: reports");
                        for (k, (g, w)) in seen.iter().zip(&want_seen).enumerate() {
                            assert_eq!(g.0, w.0, "{what}: report {k} site");
                            let gf: Vec<f32> = g.1.iter().map(|b| f32::from_bits(*b)).collect();
                            let wf: Vec<f32> = w.1.iter().map(|b| f32::from_bits(*b)).collect();
                            assert_same(&format!("{what}: report {k}"), &gf, &wf);
                        }
                    }
                }
            }
        }
    }
}

/// The bits of one ACT step's outputs: y, z, logits, q_halt and q_continue.
type StepBits = (Vec<u32>, Vec<u32>, Vec<u32>, u32, u32);

/// A random model's run on every implementation equals the portable engine's at every step: y,
/// z, logits, q_halt and q_continue, bit for bit.
fn check_engine(name: &str, c: &Config, steps: u32) {
    check_engine_with(name, c, steps, Arith::Separate);
}

/// [`check_engine`] with `arith`'s products and attention on every engine.
fn check_engine_with(name: &str, c: &Config, steps: u32, arith: Arith) {
    let isas = isas();
    let tokens: Vec<u8> = (0..c.seq_len)
        .map(|i| ((i * 7 + 3) % c.vocab_size) as u8)
        .collect();
    let v = c.seq_len as usize * c.vocab_size as usize;
    for (seed, dtype) in DTYPES.into_iter().enumerate() {
        let w = OwnedWeights::random(c, 11 + seed as u64, dtype);
        let src = w.source();
        let mut runs: Vec<Vec<StepBits>> = Vec::new();
        for &isa in &isas {
            let mut scratch = vec![f32::NAN; FloatEngine::scratch_len_fast(c).f32s];
            let mut e = FloatEngine::new(c, &src, &mut scratch).expect("engine");
            assert!(e.set_isa(isa));
            assert_eq!(e.isa(), isa);
            assert_eq!(e.arith(), Arith::Separate, "the default arithmetic");
            e.set_arith(arith);
            assert_eq!(e.arith(), arith);
            e.start(&tokens, 0).expect("start");
            let mut run = Vec::new();
            for _ in 0..steps {
                let out = e.step();
                let mut logits = vec![0.0; v];
                e.logits(&mut logits).expect("logits");
                let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(out.q_halt.is_finite(), "{name} {dtype:?} {isa:?}");
                run.push((
                    bits(e.y()),
                    bits(e.z()),
                    bits(&logits),
                    out.q_halt.to_bits(),
                    out.q_continue.to_bits(),
                ));
            }
            runs.push(run);
        }
        for (isa, run) in isas.iter().zip(&runs).skip(1) {
            for (k, (got, want)) in run.iter().zip(&runs[0]).enumerate() {
                let at = format!("{name} {dtype:?} {isa:?} {arith:?} step {}", k + 1);
                assert!(got.0 == want.0, "{at}: y differs from the portable engine");
                assert!(got.1 == want.1, "{at}: z differs from the portable engine");
                assert!(
                    got.2 == want.2,
                    "{at}: logits differ from the portable engine"
                );
                assert_eq!((got.3, got.4), (want.3, want.4), "{at}: q_halt, q_continue");
            }
        }
    }
}

fn attention(d: u32, pos: PosEncoding) -> Config {
    Config {
        hidden_size: d,
        num_heads: d / 64,
        pos_encodings: pos,
        puzzle_emb_ndim: d,
        ..Config::sudoku_attention()
    }
}

/// Fewer recursion cycles (the kernels and shapes are those of the full model).
fn short(c: Config) -> Config {
    Config {
        h_cycles: 1,
        l_cycles: 1,
        ..c
    }
}

#[test]
fn engine_d128_mlp_t_equals_portable() {
    check_engine("d128 mlp_t", &Config::sudoku_mlp_t_d128(), 2);
}

#[test]
fn engine_d128_attention_rope_equals_portable() {
    check_engine("d128 rope", &attention(128, PosEncoding::Rope), 2);
}

#[test]
fn engine_d128_attention_learned_equals_portable() {
    check_engine("d128 learned", &attention(128, PosEncoding::Learned), 2);
}

#[test]
fn engine_d512_mlp_t_equals_portable() {
    check_engine("d512 mlp_t", &short(Config::sudoku_mlp_t()), 2);
}

#[test]
fn engine_d512_attention_rope_equals_portable() {
    check_engine("d512 rope", &short(attention(512, PosEncoding::Rope)), 2);
}

#[test]
fn engine_d512_attention_learned_equals_portable() {
    check_engine(
        "d512 learned",
        &short(attention(512, PosEncoding::Learned)),
        2,
    );
}

#[test]
fn engine_d128_mlp_t_fused_equals_portable() {
    check_engine_with("d128 mlp_t", &Config::sudoku_mlp_t_d128(), 2, Arith::Fused);
}

#[test]
fn engine_d128_attention_rope_fused_equals_portable() {
    check_engine_with(
        "d128 rope",
        &short(attention(128, PosEncoding::Rope)),
        2,
        Arith::Fused,
    );
}

#[test]
fn engine_d512_attention_learned_fused_equals_portable() {
    check_engine_with(
        "d512 learned",
        &short(attention(512, PosEncoding::Learned)),
        1,
        Arith::Fused,
    );
}

/// The fused arithmetic is a different specification: on a random model its step differs from
/// the separate one's (so the tests above compare what they claim), by rounding only.
#[test]
fn fused_arith_changes_bits_by_rounding_only() {
    let c = short(Config::sudoku_mlp_t_d128());
    let w = OwnedWeights::random(&c, 3, DType::F32);
    let src = w.source();
    let tokens: Vec<u8> = (0..c.seq_len).map(|i| (i % c.vocab_size) as u8).collect();
    let run = |arith: Arith| {
        let mut scratch = vec![0.0; FloatEngine::scratch_len_fast(&c).f32s];
        let mut e = FloatEngine::new(&c, &src, &mut scratch).expect("engine");
        e.set_arith(arith);
        e.start(&tokens, 0).expect("start");
        e.step();
        e.y().to_vec()
    };
    let (sep, fused) = (run(Arith::Separate), run(Arith::Fused));
    let differ = sep
        .iter()
        .zip(&fused)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert!(differ > 0, "fused and separate gave the same bits");
    let worst = sep
        .iter()
        .zip(&fused)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-3,
        "fused vs separate: largest difference {worst}"
    );
}

/// The engine starts on the best implementation and refuses an unsupported one.
#[test]
fn engine_isa_selection() {
    let c = short(Config::sudoku_mlp_t_d128());
    let w = OwnedWeights::random(&c, 1, DType::F32);
    let mut scratch = vec![0.0; FloatEngine::scratch_len(&c).f32s];
    let mut e = FloatEngine::new(&c, &w.source(), &mut scratch).expect("engine");
    assert_eq!(e.isa(), Isa::best());
    for isa in Isa::ALL {
        assert_eq!(e.set_isa(isa), isa.is_supported());
        if isa.is_supported() {
            assert_eq!(e.isa(), isa);
        }
    }
    assert!(e.set_isa(Isa::Portable));
    assert_eq!(e.isa(), Isa::Portable);
}

/// `Arith`'s names round-trip, and its `mac` is the separate or the fused rule.
#[test]
fn arith_names_and_mac() {
    for a in Arith::ALL {
        assert_eq!(Arith::from_name(a.name()), Some(a));
    }
    assert_eq!(Arith::from_name("fast"), None);
    assert_eq!(Arith::default(), Arith::Separate);
    // 1 + 2^-12 squared, minus its rounded square: only the fused rule keeps the 2^-24 term.
    let x = 1.0 + f32::EPSILON * 2048.0;
    let p = x * x;
    assert_eq!(Arith::Separate.mac(-p, x, x), 0.0);
    assert_eq!(Arith::Fused.mac(-p, x, x), libm::fmaf(x, x, -p));
    assert!(Arith::Fused.mac(-p, x, x) != 0.0);
}
