//! The blocked matrix products (`fixed::optimized::matmul`) and the element-wise kernels
//! (`fixed::optimized::activation`) against the reference kernels, their specification: every
//! implementation this machine supports, bit for bit, on random and extreme values; every
//! remainder of the blocking (weight rows mod the panel of 16 and 32, activation rows mod
//! every tile size, columns odd and even, across the `i32` chunks of 256 products); int8 and
//! int16 weights; with and without the second rows of exact products; strided inputs and
//! outputs; every epilogue; and too little scratch (the per-output path); and the worst-case
//! values at the longest row `Config::validate` allows; and the four-row tiles of targets
//! without SIMD kernels (RISC-V: `tiles_portable`, run here directly).

mod fixed_common;

use fixed_common::{Rng, isas};
use trm_nostd::config::swiglu_inter;
use trm_nostd::fixed::kernels::{self, I16Table, Requant};
use trm_nostd::fixed::optimized::matmul::{scratch_len, tiles_portable};
use trm_nostd::fixed::optimized::{self, Epilogue, Isa, Matrix, Rows, matmul};
use trm_nostd::fixed::tables::Words;

/// A random weight matrix (`wide`: int16 little-endian pairs) of `kind` values: uniform,
/// extreme, small.
fn weights(rng: &mut Rng, rows: usize, cols: usize, wide: bool, kind: u64) -> Vec<u8> {
    let n = rows * cols;
    if wide {
        (0..n)
            .flat_map(|_| {
                let v: i16 = match kind {
                    1 => [i16::MIN, i16::MAX][(rng.next() % 2) as usize],
                    2 => rng.range(-3, 3) as i16,
                    3 => i16::MIN,
                    _ => rng.i16(),
                };
                v.to_le_bytes()
            })
            .collect()
    } else {
        (0..n)
            .map(|_| match kind {
                1 => [0x80u8, 0x7f][(rng.next() % 2) as usize],
                2 => rng.range(-2, 2) as i8 as u8,
                3 => 0x80,
                _ => rng.next() as u8,
            })
            .collect()
    }
}

fn activations(rng: &mut Rng, n: usize, kind: u64) -> Vec<i16> {
    (0..n)
        .map(|_| match kind {
            1 => [i16::MIN, i16::MAX][(rng.next() % 2) as usize],
            2 => rng.range(-3, 3) as i16,
            3 => i16::MIN,
            _ => rng.i16(),
        })
        .collect()
}

/// The reference sum of weight row `o` and `a` (the engine's per-output expression).
fn reference(data: &[u8], cols: usize, wide: bool, o: usize, a: &[i16]) -> i64 {
    if wide {
        kernels::dot_w16_a16(&data[o * 2 * cols..(o + 1) * 2 * cols], a)
    } else {
        kernels::dot_w8_a16(&data[o * cols..(o + 1) * cols], a)
    }
}

/// `sum w a` in i128: an independent check of the reference itself.
fn exact(data: &[u8], cols: usize, wide: bool, o: usize, a: &[i16]) -> i128 {
    (0..cols)
        .map(|k| {
            let w = if wide {
                i16::from_le_bytes([data[2 * (o * cols + k)], data[2 * (o * cols + k) + 1]]) as i128
            } else {
                data[o * cols + k] as i8 as i128
            };
            w * a[k] as i128
        })
        .sum()
}

/// A channel table of `rows` requants: random multipliers and shifts (some beyond the vector
/// paths' 62), or every multiplier at its largest with shift 0.
fn table(rng: &mut Rng, rows: usize, extreme: bool) -> Vec<u8> {
    let mut words = vec![rows as i32];
    for _ in 0..rows {
        let (mult, shift) = if extreme {
            (i32::MAX, 0)
        } else {
            let shift = match rng.next() % 8 {
                0 => rng.range(63, 126),
                1 => rng.range(0, 8),
                _ => rng.range(20, 50),
            };
            (rng.range(1 << 30, (1 << 31) - 1) as i32, shift as i32)
        };
        words.extend([mult, shift]);
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// One product shape, checked with every implementation and every epilogue.
struct Case {
    rows: usize,
    cols: usize,
    count: usize,
    wide: bool,
    second: bool,
    kind: u64,
    extreme_table: bool,
    /// Extra values between activation rows, and between output rows.
    pad: usize,
}

fn check_case(isas: &[Isa], rng: &mut Rng, c: &Case) {
    let w = weights(rng, c.rows, c.cols, c.wide, c.kind);
    let t = table(rng, c.rows, c.extreme_table);
    let m = Matrix::new(&w, c.rows, c.cols, c.wide, Words(&t)).expect("matrix");
    // Rows of `cols + pad` values; the second set right after each row's first `cols`.
    let stride = if c.second {
        2 * c.cols + c.pad
    } else {
        c.cols + c.pad
    };
    let data = activations(rng, c.count * stride, c.kind);
    let a = Rows::new(&data, c.count, c.cols, stride).expect("rows");
    let a = if c.second {
        a.with_second(c.cols).expect("second rows")
    } else {
        a
    };
    let row = |t: usize| &data[t * stride..t * stride + c.cols];
    let row2 = |t: usize| &data[t * stride + c.cols..t * stride + 2 * c.cols];
    // The specification, output by output.
    let mut want = vec![0i64; c.count * c.rows];
    let mut want2 = vec![0i64; c.count * c.rows];
    for t in 0..c.count {
        for o in 0..c.rows {
            want[t * c.rows + o] = reference(&w, c.cols, c.wide, o, row(t));
            if c.second {
                want2[t * c.rows + o] = reference(&w, c.cols, c.wide, o, row2(t));
            }
        }
    }
    // The reference against i128, on a few outputs.
    for (t, o) in [(0, 0), (c.count - 1, c.rows - 1)] {
        let e = exact(&w, c.cols, c.wide, o, row(t));
        assert_eq!(want[t * c.rows + o] as i128, e, "reference itself");
    }
    let ostride = c.rows + c.pad;
    let h: Vec<i16> = activations(rng, c.count * ostride, 0);
    let product = Requant {
        mult: rng.range(1 << 30, (1 << 31) - 1) as i32,
        shift: rng.range(10, 40) as u32,
    };
    let tab = Words(&t);
    let want_sat16: Vec<i16> = (0..c.count * ostride)
        .map(|i| {
            let (t, o) = (i / ostride, i % ostride);
            if o < c.rows {
                kernels::sat16(tab.channel(o).apply(want[t * c.rows + o]))
            } else {
                -7
            }
        })
        .collect();
    let want_res: Vec<i32> = (0..c.count * ostride)
        .map(|i| {
            let (t, o) = (i / ostride, i % ostride);
            if o >= c.rows {
                return -7;
            }
            let rq = tab.channel(o);
            let delta = if c.second {
                rq.apply(product.apply_i128(kernels::prod_from_halves(
                    want[t * c.rows + o],
                    want2[t * c.rows + o],
                )))
            } else {
                rq.apply(want[t * c.rows + o])
            };
            kernels::sat_residual((h[i] as i64).saturating_add(delta))
        })
        .collect();
    let name = |isa: Isa, what: &str, scratch: usize| {
        format!(
            "{} {what}: rows {} cols {} count {} wide {} second {} kind {} pad {} scratch {scratch}",
            isa.name(),
            c.rows,
            c.cols,
            c.count,
            c.wide,
            c.second,
            c.kind,
            c.pad
        )
    };
    // Scratch: enough for every row at once, for a few rows at a time, for one row, and none.
    let full = scratch_len(c.cols, c.count);
    for &isa in isas {
        for scratch_size in [full, scratch_len(c.cols, 3) + 5, scratch_len(c.cols, 1), 0] {
            let mut scratch = vec![0x55i16; scratch_size];
            let mut out = vec![0i64; c.count * c.rows];
            let mut out2 = vec![0i64; c.count * c.rows];
            let mut epi = Epilogue::Raw {
                out: &mut out,
                second: &mut out2,
            };
            assert!(matmul(isa, &m, &a, &mut epi, &mut scratch));
            assert!(out == want, "{}", name(isa, "raw", scratch_size));
            if c.second {
                assert!(out2 == want2, "{}", name(isa, "raw second", scratch_size));
            } else {
                let mut out = vec![-7i16; c.count * ostride];
                let mut epi = Epilogue::Sat16 {
                    out: &mut out,
                    stride: ostride,
                };
                assert!(matmul(isa, &m, &a, &mut epi, &mut scratch));
                assert!(out == want_sat16, "{}", name(isa, "sat16", scratch_size));
            }
            let mut res = vec![-7i32; c.count * ostride];
            let mut epi = Epilogue::Residual {
                h: &h,
                res: &mut res,
                stride: ostride,
                product: c.second.then_some(product),
            };
            assert!(matmul(isa, &m, &a, &mut epi, &mut scratch));
            assert!(res == want_res, "{}", name(isa, "residual", scratch_size));
        }
    }
    // The blocked path of RISC-V (no SIMD kernels), run here
    // directly: int8 weights, no second rows, two activation rows or more; else refused.
    let takes = !c.wide && !c.second && c.count >= 2;
    let what = |e: &str| name(Isa::Portable, &format!("tiles_portable {e}"), 0);
    let mut out = vec![0i64; c.count * c.rows];
    let mut epi = Epilogue::Raw {
        out: &mut out,
        second: &mut [],
    };
    assert_eq!(tiles_portable(&m, &a, &mut epi), takes, "{}", what("taken"));
    if takes {
        assert!(out == want, "{}", what("raw"));
        let mut out = vec![-7i16; c.count * ostride];
        let mut epi = Epilogue::Sat16 {
            out: &mut out,
            stride: ostride,
        };
        assert!(tiles_portable(&m, &a, &mut epi));
        assert!(out == want_sat16, "{}", what("sat16"));
        let mut res = vec![-7i32; c.count * ostride];
        let mut epi = Epilogue::Residual {
            h: &h,
            res: &mut res,
            stride: ostride,
            product: None,
        };
        assert!(tiles_portable(&m, &a, &mut epi));
        assert!(res == want_res, "{}", what("residual"));
    }
}

/// Every remainder of the blocking: weight rows 1..=70 (panels of 16 and 32) and 97,
/// activation rows 1..=30 (every tile size of every implementation and their remainders,
/// with and without second rows), columns odd and even, short and across the chunks of 256
/// products (512 and 600 columns: two and three chunks).
#[test]
fn blocked_products_equal_the_reference_at_every_remainder() {
    let isas = isas();
    println!(
        "implementations: {:?}",
        isas.iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    let mut rng = Rng(0xb10c);
    let mut n = 0;
    for rows in (1..=70).chain([97]) {
        let count = 1 + (rows * 7) % 30;
        let cols = [1, 2, 3, 31, 32, 33, 64, 97, 255, 256, 257, 512, 513, 600][rows % 14];
        for wide in [false, true] {
            for second in [false, true] {
                let case = Case {
                    rows,
                    cols,
                    count,
                    wide,
                    second,
                    kind: rng.next() % 4,
                    extreme_table: rng.next().is_multiple_of(4),
                    pad: (rng.next() % 3) as usize,
                };
                check_case(&isas, &mut rng, &case);
                n += 1;
            }
        }
    }
    // Every activation-row count with a full panel of rows.
    for count in 1..=30 {
        for (wide, second) in [(false, false), (true, false), (false, true), (true, true)] {
            let case = Case {
                rows: 33,
                cols: 47,
                count,
                wide,
                second,
                kind: count as u64 % 4,
                extreme_table: false,
                pad: 1,
            };
            check_case(&isas, &mut rng, &case);
            n += 1;
        }
    }
    println!("{n} shapes");
}

/// Worst-case values (every weight -128 or -32768, every activation -32768, so every lane's
/// `i32` chunk reaches its bound and `vpmaddwd`'s one wrapping case is offered) over a full
/// panel and tile and their remainders, with columns across many chunks.
#[test]
fn blocked_products_at_the_extremes() {
    let isas = isas();
    let mut rng = Rng(0xe7);
    for (rows, count, cols) in [(33, 13, 4099), (64, 24, 1536), (17, 7, 2049), (32, 12, 256)] {
        for wide in [false, true] {
            for second in [false, true] {
                let case = Case {
                    rows,
                    cols,
                    count,
                    wide,
                    second,
                    kind: 3,
                    extreme_table: true,
                    pad: 0,
                };
                check_case(&isas, &mut rng, &case);
            }
        }
    }
}

/// The longest row [`Config::validate`](trm_nostd::Config::validate) allows (a SwiGLU `down`
/// row of the widest model: `swiglu_inter(2^16, 64)` columns) with worst-case values: the `i64`
/// totals of every implementation equal the reference's and the exact sum.
#[test]
fn blocked_products_at_the_longest_row() {
    let isas = isas();
    let cols = swiglu_inter(1 << 16, 64.0) as usize;
    assert!(cols > 2_700_000);
    for wide in [false, true] {
        let (rows, count) = (2, 3);
        let wv: Vec<u8> = if wide {
            (0..rows * cols)
                .flat_map(|i| if i < cols { i16::MIN } else { i16::MAX }.to_le_bytes())
                .collect()
        } else {
            (0..rows * cols)
                .map(|i| if i < cols { 0x80 } else { 0x7f })
                .collect()
        };
        let m = Matrix::new(&wv, rows, cols, wide, Words(&[])).expect("matrix");
        let data = vec![i16::MIN; count * cols];
        let a = Rows::new(&data, count, cols, cols).expect("rows");
        let wmax: i128 = if wide { 1 << 15 } else { 1 << 7 };
        let want = [
            wmax * (1 << 15) * cols as i128,
            -(wmax - 1) * (1 << 15) * cols as i128,
        ];
        // Just the scratch the blocked products use for all rows at once (a weight panel of
        // 32 rows, 64 lanes for int16, over the row, and the packed rows): `scratch_len`
        // counts the widest case, which would be twice as much here.
        let npairs = cols.div_ceil(2);
        let need = 32 + npairs * (if wide { 128 } else { 64 } + 2 * count);
        assert!(need <= scratch_len(cols, count));
        for &isa in &isas {
            let mut scratch = vec![0i16; need];
            let mut out = vec![0i64; count * rows];
            let mut epi = Epilogue::Raw {
                out: &mut out,
                second: &mut [],
            };
            assert!(matmul(isa, &m, &a, &mut epi, &mut scratch));
            for t in 0..count {
                for o in 0..rows {
                    assert_eq!(
                        out[t * rows + o] as i128,
                        want[o],
                        "{} wide {wide}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// Arguments that do not fit are refused, writing nothing.
#[test]
fn matmul_refuses_outputs_that_do_not_fit() {
    let w = vec![1u8; 4 * 8];
    let m = Matrix::new(&w, 4, 8, false, Words(&[])).expect("matrix");
    assert!(Matrix::new(&w, 5, 8, false, Words(&[])).is_none());
    assert!(Matrix::new(&w, 4, 8, true, Words(&[])).is_none());
    let data = vec![1i16; 3 * 8];
    let a = Rows::new(&data, 3, 8, 8).expect("rows");
    assert!(Rows::new(&data, 4, 8, 8).is_none());
    assert!(a.with_second(1).is_none());
    let short = Rows::new(&data, 3, 7, 8).expect("rows");
    for &isa in &isas() {
        let mut out = vec![9i64; 11];
        let mut epi = Epilogue::Raw {
            out: &mut out,
            second: &mut [],
        };
        assert!(!matmul(isa, &m, &a, &mut epi, &mut []));
        assert!(out.iter().all(|&v| v == 9));
        let mut out = vec![9i64; 12];
        let mut epi = Epilogue::Raw {
            out: &mut out,
            second: &mut [],
        };
        // Rows shorter than the matrix's.
        assert!(!matmul(isa, &m, &short, &mut epi, &mut []));
        // A product without second rows.
        let mut res = vec![0i32; 12];
        let h = vec![0i16; 12];
        let mut epi = Epilogue::Residual {
            h: &h,
            res: &mut res,
            stride: 4,
            product: Some(Requant::default()),
        };
        assert!(!matmul(isa, &m, &a, &mut epi, &mut []));
        // An output stride shorter than a row.
        let mut o16 = vec![0i16; 12];
        let mut epi = Epilogue::Sat16 {
            out: &mut o16,
            stride: 3,
        };
        assert!(!matmul(isa, &m, &a, &mut epi, &mut []));
    }
}

/// A SiLU table of `2^bits + 1` knots: random values, or alternating extremes.
fn silu_table(rng: &mut Rng, bits: u32, extreme: bool) -> Vec<u8> {
    (0..(1usize << bits) + 1)
        .flat_map(|k| {
            let v = if extreme {
                [i16::MIN, i16::MAX][k % 2]
            } else {
                rng.i16()
            };
            v.to_le_bytes()
        })
        .collect()
}

/// The vector SiLU pass equals the reference (`silu_spaced`, then the product requant) for
/// every table size, every input value, random and extreme tables and products.
#[test]
fn swiglu_silu_equals_the_reference() {
    let isas = isas();
    let mut rng = Rng(0x5117);
    let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    for bits in 8..=12 {
        let step = 16 - bits;
        for extreme in [false, true] {
            let t = silu_table(&mut rng, bits, extreme);
            let table = I16Table(&t);
            for prod in [
                None,
                Some(Requant {
                    mult: 1_900_000_000,
                    shift: 41,
                }),
                Some(Requant {
                    mult: i32::MAX,
                    shift: 0,
                }),
                Some(Requant {
                    mult: 1 << 30,
                    shift: 62,
                }),
                Some(Requant {
                    mult: 1 << 30,
                    shift: 70,
                }),
            ] {
                let up: Vec<i16> = (0..all.len())
                    .map(|i| match i % 3 {
                        0 => i16::MIN,
                        1 => rng.i16(),
                        _ => i16::MAX,
                    })
                    .collect();
                let want: Vec<i16> = all
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
                for &isa in &isas {
                    // Odd lengths: the vector loop's tail.
                    for len in [all.len(), 1000, 17, 3] {
                        let mut gate = all[..len].to_vec();
                        let done =
                            optimized::swiglu_silu(isa, table, step, &mut gate, &up[..len], prod);
                        if done {
                            assert!(gate == want[..len], "{} bits {bits} {prod:?}", isa.name());
                        } else {
                            assert!(
                                gate == all[..len],
                                "{} changed a row it refused",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
        // A table of the wrong length is refused.
        let t = silu_table(&mut rng, bits, false);
        let mut gate = vec![0i16; 20];
        for &isa in &isas {
            assert!(!optimized::swiglu_silu(
                isa,
                I16Table(&t[..t.len() - 2]),
                step,
                &mut gate,
                &[],
                None
            ));
        }
    }
}

/// The RMSNorm of every implementation equals the reference on random rows, rows of extreme
/// residuals (beyond the clamp too), tiny rows where the eps term dominates, zero rows, the
/// largest eps term, and rows up to the longest allowed.
#[test]
fn rms_norm_equals_the_reference() {
    let isas = isas();
    let mut rng = Rng(0x2345);
    let check = |v: &[i32], eps: u64| {
        let mut want = vec![0i16; v.len()];
        kernels::rms_norm(v, eps, &mut want);
        let mut fast = vec![1i16; v.len()];
        optimized::activation::rms_norm_fast(v, eps, &mut fast);
        assert!(fast == want, "rms_norm_fast n={} eps={eps}", v.len());
        for &isa in &isas {
            let mut got = vec![1i16; v.len()];
            optimized::rms_norm(isa, v, eps, &mut got);
            assert!(got == want, "{} n={} eps={eps}", isa.name(), v.len());
        }
    };
    for case in 0..3000 {
        let n = match case % 5 {
            0 => 1,
            1 => rng.range(2, 40) as usize,
            2 => 512,
            3 => 97,
            _ => rng.range(1, 3000) as usize,
        };
        let amp: i64 = match case % 7 {
            0 => kernels::RESIDUAL_MAX as i64,
            1 => i32::MAX as i64,
            2 => 3,
            3 => 0,
            _ => 1 << rng.range(5, 23),
        };
        let v: Vec<i32> = (0..n).map(|_| rng.range(-amp, amp) as i32).collect();
        let eps = match case % 4 {
            0 => 0,
            1 => rng.range(0, 1 << 40) as u64,
            2 => u64::MAX,
            _ => rng.range(0, 1000) as u64,
        };
        check(&v, eps);
    }
    // The longest rows, all at the clamp (the sum of squares near 2^62) or beyond.
    for n in [1 << 16, (1 << 16) + 1] {
        for x in [
            kernels::RESIDUAL_MAX,
            -kernels::RESIDUAL_MAX,
            i32::MIN,
            i32::MAX,
        ] {
            check(&vec![x; n], 0);
            check(&vec![x; n], u64::MAX);
        }
    }
}
