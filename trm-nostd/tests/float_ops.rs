//! Per-operation tests of the float kernels against PyTorch (tests/fixtures/gen_ops.py), plus
//! the invariances the engine relies on (register blocking never changes a result).

mod float_common;

use float_common::{Fixture, assert_close, f32_bytes, view};
use proptest::prelude::*;
use trm_nostd::DType;
use trm_nostd::float::kernels::{self, BlockBuffers, SwigluBuffers};
use trm_nostd::float::optimized::{self, Isa};
use trm_nostd::float::{MatRef, Tap};

const TOL: f32 = 1e-5;

fn ops() -> Fixture {
    Fixture::committed("float_ops.safetensors")
}

/// Owns the bytes of an f32 matrix for a `MatRef`.
struct Mat {
    bytes: Vec<u8>,
    shape: Vec<usize>,
}

impl Mat {
    fn from(f: &Fixture, name: &str) -> Mat {
        let (v, shape) = f.f32(name);
        Mat {
            bytes: f32_bytes(&v),
            shape,
        }
    }
    fn m(&self) -> MatRef<'_> {
        MatRef::new(&view(DType::F32, &self.shape, &self.bytes)).expect("float matrix")
    }
}

#[test]
fn rms_norm_matches_torch() {
    let f = ops();
    let (mut x, shape) = f.f32("rms.in");
    for row in x.chunks_exact_mut(shape[1]) {
        kernels::rms_norm(row, 1e-5);
    }
    assert_close("rms_norm", &x, &f.vals("rms.out"), TOL);
}

#[test]
fn silu_matches_torch() {
    let f = ops();
    let got: Vec<f32> = f
        .vals("silu.in")
        .iter()
        .map(|&v| kernels::silu(v))
        .collect();
    let want = f.vals("silu.out");
    // Elementwise relative check (silu spans many magnitudes).
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= TOL * w.abs().max(1e-3), "silu: {g} vs {w}");
    }
}

#[test]
fn swiglu_block_matches_torch() {
    let f = ops();
    let (h, shape) = f.f32("swiglu.in");
    let (gu, down) = (
        Mat::from(&f, "swiglu.gate_up"),
        Mat::from(&f, "swiglu.down"),
    );
    let (n, inter) = (shape[1], down.shape[1]);
    let want = f.vals("swiglu.out");
    // Every row block size, weight buffer (one row or a whole tile) and kernel implementation
    // gives the same bits (and the torch values).
    let mut first: Option<Vec<f32>> = None;
    let wide = n.max(inter);
    for (rb, isa, wlen) in [1, 2, 4, 5, 6, 8]
        .into_iter()
        .flat_map(|rb| supported().into_iter().map(move |isa| (rb, isa)))
        .flat_map(|(rb, isa)| [wide, optimized::tile_len(wide)].map(|w| (rb, isa, w)))
    {
        let mut h2 = h.clone();
        let mut wrow = vec![0.0; wlen];
        let mut gub = vec![0.0; rb * 2 * inter];
        let mut out = vec![0.0; rb * n];
        let mut bufs = SwigluBuffers {
            wrow: &mut wrow,
            gu: &mut gub,
            out: &mut out,
            rows: rb,
            isa,
            arith: kernels::Arith::Separate,
        };
        let (rows, tap) = (shape[0], &mut Tap::none());
        kernels::swiglu_residual_rms(&gu.m(), &down.m(), &mut h2, rows, 1e-5, &mut bufs, tap);
        assert_close("swiglu", &h2, &want, TOL);
        match &first {
            None => first = Some(h2),
            Some(f0) => assert_eq!(
                f0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                h2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "row block {rb}, {isa:?}, weight buffer {wlen} changed the result"
            ),
        }
    }
}

#[test]
fn rope_tables_and_application_match_torch() {
    let f = ops();
    let (want_cos, shape) = f.f32("rope.cos");
    let (positions, hd) = (shape[0], shape[1]);
    let mut cos = vec![0.0; positions * hd];
    let mut sin = vec![0.0; positions * hd];
    kernels::rope_tables(hd, 10000.0, &mut cos, &mut sin);
    // Angles reach 10 rad: compare absolutely (cos/sin are in [-1, 1]).
    for (name, got, want) in [("cos", &cos, want_cos), ("sin", &sin, f.vals("rope.sin"))] {
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 2e-6, "{name}: {g} vs {w}");
        }
    }
    let (mut x, xs) = f.f32("rope.in");
    let heads = xs[1];
    for (p, row) in x.chunks_exact_mut(heads * hd).enumerate() {
        for head in row.chunks_exact_mut(hd) {
            kernels::apply_rope(head, &cos[p * hd..(p + 1) * hd], &sin[p * hd..(p + 1) * hd]);
        }
    }
    assert_close("rope", &x, &f.vals("rope.out"), TOL);
}

#[test]
fn attention_matches_torch_sdpa() {
    let f = ops();
    let (qkv, shape) = f.f32("attn.qkv");
    let (l, d) = (shape[0], shape[1] / 3);
    let (heads, hd) = (3, d / 3);
    let mut scores = vec![0.0; l];
    let mut first: Option<Vec<f32>> = None;
    for isa in supported() {
        let mut qkv = qkv.clone();
        kernels::attention(
            isa,
            kernels::Arith::Separate,
            &mut qkv,
            l,
            heads,
            hd,
            &mut scores,
            &mut Tap::none(),
        );
        let got: Vec<f32> = qkv
            .chunks_exact(3 * d)
            .flat_map(|r| r[..d].to_vec())
            .collect();
        assert_close("attention", &got, &f.vals("attn.out"), TOL);
        let first = first.get_or_insert_with(|| got.clone());
        assert_eq!(bits(first), bits(&got), "{isa:?} changed the result");
    }
}

/// The kernel implementations this machine supports (the portable one first).
fn supported() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Row blocks x implementations x weight buffers (one row of `wide` values, or a whole tile).
fn block_variants(rows: &[usize], wide: usize) -> Vec<(usize, Isa, usize)> {
    let mut v = Vec::new();
    for &r in rows {
        for isa in supported() {
            for w in [wide, optimized::tile_len(wide)] {
                v.push((r, isa, w));
            }
        }
    }
    v
}

/// Buffer sizes of a block test.
struct Sizes {
    l: usize,
    work: usize,
    wrow: usize,
    gu: usize,
    out: usize,
    rope_hd: Option<usize>,
    rows: usize,
    isa: Isa,
}

/// Runs a block kernel on NaN-filled buffers of the given sizes (a read of an unwritten value
/// would poison the result).
fn block_buffers_test(sz: Sizes, run: impl FnOnce(&mut BlockBuffers<'_>)) {
    let Sizes {
        l,
        work,
        wrow,
        gu,
        out,
        rope_hd,
        rows,
        isa,
    } = sz;
    let mut workb = vec![f32::NAN; work];
    let (mut cos, mut sin) = match rope_hd {
        Some(hd) => {
            let (mut c, mut s) = (vec![0.0; l * hd], vec![0.0; l * hd]);
            kernels::rope_tables(hd, 10000.0, &mut c, &mut s);
            (c, s)
        }
        None => (vec![], vec![]),
    };
    let mut wrowb = vec![f32::NAN; wrow];
    let mut gub = vec![f32::NAN; rows * gu];
    let mut outb = vec![f32::NAN; rows * out];
    let mut scores = vec![f32::NAN; l];
    let mut b = BlockBuffers {
        work: &mut workb,
        cos: &mut cos,
        sin: &mut sin,
        wrow: &mut wrowb,
        gu: &mut gub,
        out: &mut outb,
        scores: &mut scores,
        rows,
        isa,
        arith: kernels::Arith::Separate,
    };
    run(&mut b);
}

#[test]
fn attention_block_matches_torch() {
    let f = ops();
    let (h0, shape) = f.f32("attn_block.in");
    let (l, d) = (shape[0], shape[1]);
    let (qkv, o) = (
        Mat::from(&f, "attn_block.qkv_w"),
        Mat::from(&f, "attn_block.o_w"),
    );
    for (rope, want) in [(true, "attn_block.out"), (false, "attn_block.out_nopos")] {
        let mut first: Option<Vec<f32>> = None;
        for (rows, isa, wrow) in block_variants(&[1, 4, l], d) {
            let mut h = h0.clone();
            let hd = rope.then_some(d / 2);
            let sz = Sizes {
                l,
                work: 3 * l * d,
                wrow,
                gu: 0,
                out: d,
                rope_hd: hd,
                rows,
                isa,
            };
            block_buffers_test(sz, |b| {
                kernels::attention_mixer(&qkv.m(), &o.m(), &mut h, 2, 1e-5, b, &mut Tap::none())
            });
            assert_close(want, &h, &f.vals(want), TOL);
            let first = first.get_or_insert_with(|| h.clone());
            assert_eq!(bits(first), bits(&h), "{rows} rows, {isa:?}, wrow {wrow}");
        }
    }
}

#[test]
fn mlp_t_block_matches_torch() {
    let f = ops();
    let (h0, shape) = f.f32("mlp_t.in");
    let (l, d) = (shape[0], shape[1]);
    let (gu, down) = (Mat::from(&f, "mlp_t.gate_up"), Mat::from(&f, "mlp_t.down"));
    let inter = down.shape[1];
    let mut first: Option<Vec<f32>> = None;
    for (rows, isa, wrow) in block_variants(&[1, 3, d], inter.max(l)) {
        let mut h = h0.clone();
        let sz = Sizes {
            l,
            work: l * d,
            wrow,
            gu: 2 * inter,
            out: l,
            rope_hd: None,
            rows,
            isa,
        };
        block_buffers_test(sz, |b| {
            kernels::mlp_t_mixer(&gu.m(), &down.m(), &mut h, l, 1e-5, b, &mut Tap::none())
        });
        assert_close("mlp_t block", &h, &f.vals("mlp_t.out"), TOL);
        let first = first.get_or_insert_with(|| h.clone());
        assert_eq!(bits(first), bits(&h), "{rows} rows, {isa:?}, wrow {wrow}");
    }
}

#[test]
fn argmax_ties_to_lowest_index() {
    assert_eq!(kernels::argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    assert_eq!(kernels::argmax(&[f32::NAN, 0.5, 0.5]), 1);
    assert_eq!(kernels::argmax(&[-1.0]), 0);
    assert_eq!(kernels::argmax(&[]), 0);
}

fn naive_lane_dot(a: &[f32], b: &[f32]) -> f32 {
    // The documented order, written independently: lane k % 8, then the fixed tree.
    let mut l = [0.0f32; 8];
    for k in 0..a.len().min(b.len()) {
        l[k % 8] += a[k] * b[k];
    }
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

proptest! {
    #[test]
    fn dot_follows_documented_order(v in proptest::collection::vec((-1e3f32..1e3, -1e3f32..1e3), 0..70)) {
        let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
        prop_assert_eq!(kernels::dot(&a, &b).to_bits(), naive_lane_dot(&a, &b).to_bits());
    }

    #[test]
    fn dot4_equals_four_dots(n in 0usize..50, seed in any::<u64>()) {
        let mut s = seed | 1;
        let mut r = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / 8388608.0 - 1.0 };
        let w: Vec<f32> = (0..n).map(|_| r()).collect();
        let a: Vec<Vec<f32>> = (0..4).map(|_| (0..n).map(|_| r() * 100.0).collect()).collect();
        let got = kernels::dot4(&w, [&a[0], &a[1], &a[2], &a[3]]);
        for i in 0..4 {
            prop_assert_eq!(got[i].to_bits(), kernels::dot(&a[i], &w).to_bits());
        }
    }

    #[test]
    fn dot_row_equals_dot_on_converted_row(n in 1usize..40, seed in any::<u64>(), dt in 0u8..3) {
        let mut s = seed | 1;
        let mut r = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / 8388608.0 - 1.0 };
        let w: Vec<f32> = (0..2 * n).map(|_| r()).collect();
        let a: Vec<f32> = (0..n).map(|_| r()).collect();
        let (dtype, bytes): (DType, Vec<u8>) = match dt {
            0 => (DType::F32, f32_bytes(&w)),
            1 => (DType::F16, w.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()),
            _ => (DType::BF16, w.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect()),
        };
        let m = MatRef::new(&view(dtype, &[2, n], &bytes)).expect("float");
        let mut row = vec![0.0; n];
        m.row_into(1, &mut row);
        for (k, v) in row.iter().enumerate() {
            prop_assert_eq!(v.to_bits(), m.get(1, k).to_bits());
        }
        prop_assert_eq!(m.dot_row(1, &a).to_bits(), kernels::dot(&row, &a).to_bits());
    }
}
