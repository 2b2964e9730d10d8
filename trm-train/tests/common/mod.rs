//! Shared helpers of trm-train's integration tests.
// Each test target compiles this module and uses only some of its helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use tch::{Kind, Tensor, nn};

/// `relative` inside the shared folder ([`trm_data::layout::shared_dir`]: `$TRM_SHARED`, else
/// `../shared` beside the repository), e.g. `reference-fixtures/sudoku-att-d64-f32` or
/// `data/maze-hard`. Panics, failing the test, when it is missing: the tests that call this
/// need it.
pub fn shared(relative: &str) -> PathBuf {
    let path = trm_data::layout::shared_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: set TRM_SHARED to the shared folder (the one holding data/ and \
         reference-fixtures/; by default ../shared beside the repository)",
        path.display()
    );
    path
}

/// How many times the spread of rounding-equivalent runs (the model's outputs when H_init or
/// L_init moves by one ulp, see [`nudge_ulps`]) a comparison with the reference fixtures may
/// differ by. The fixtures were computed on another machine, whose matmul kernels round
/// differently at every op, not only once at the start, so their deviation is not exactly a
/// one-ulp nudge's: the measured ratio (error / spread, printed by the tests) is at most 1.7 on
/// this machine's CPU (f32 attention, step 1, where the map is not chaotic and the rounding of
/// the many ops adds up), about 1 or less elsewhere. 4 leaves room for other CPUs while a real
/// bug still shows as 5 to 1000 times the spread (see the mutation tests of
/// `reference_fixtures.rs`).
pub const NOISE_FACTOR: f64 = 4.0;

/// [`NOISE_FACTOR`] for averages over many elements ([`mean_rel`] of the 7128 logits of a
/// step): their error / spread ratio is steady, at most 1.06 measured.
pub const MEAN_NOISE_FACTOR: f64 = 2.0;

/// One unit in the last place at 1.0 of a float kind (f32 2^-23, bf16 2^-7): the floor of the
/// noise bounds, the closest two outputs of that kind can be asked to agree relative to their
/// scale.
pub fn epsilon(kind: Kind) -> f64 {
    match kind {
        Kind::Float => f64::from(f32::EPSILON),
        Kind::BFloat16 => 2f64.powi(-7),
        Kind::Half => 2f64.powi(-10),
        Kind::Double => f64::EPSILON,
        other => panic!("epsilon: {other:?} is not a float kind"),
    }
}

/// The largest of `distance` over all pairs of `runs`: how far rounding-equivalent runs differ.
pub fn spread<T>(runs: &[T], distance: impl Fn(&T, &T) -> f64) -> f64 {
    let mut worst: f64 = 0.0;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            worst = worst.max(distance(a, b));
        }
    }
    worst
}

/// `mean |a - b| / mean |b|` (in f64): the typical difference on the typical size of `b`,
/// steadier than [`rel_to_max`] (an average over every element, not one extreme).
pub fn mean_rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let diff = (&a - &b).abs().mean(Kind::Double).double_value(&[]);
    let scale = b.abs().mean(Kind::Double).double_value(&[]);
    if scale == 0.0 { diff } else { diff / scale }
}

/// `max |a - b| / max |b|` over all elements (in f64): the difference on the scale of the
/// expected tensor `b` (the plain difference when `b` is all zero).
pub fn rel_to_max(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]);
    if scale == 0.0 { diff } else { diff / scale }
}

/// Moves every element of the variable `name` of `vs` by `ulps` units in the last place of
/// `kind` (the forward kind, in which the model reads it; the variable keeps its own element
/// type, which must represent `kind` exactly, e.g. f32 for bf16), in place: a rounding-sized
/// perturbation of the model, to measure how far rounding differences grow.
pub fn nudge_ulps(vs: &nn::VarStore, name: &str, kind: Kind, ulps: i64) {
    let bits = match kind {
        Kind::Float => Kind::Int,
        Kind::BFloat16 | Kind::Half => Kind::Int16,
        Kind::Double => Kind::Int64,
        other => panic!("nudge_ulps: {other:?} is not a float kind"),
    };
    let mut var = vs
        .variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no variable {name}"));
    let _no_grad = tch::no_grad_guard();
    let moved = var
        .to_kind(kind)
        .view_dtype(bits)
        .g_add_scalar(ulps)
        .view_dtype(kind)
        .to_kind(var.kind());
    assert!(
        bool::try_from(moved.isfinite().all()).expect("bool"),
        "nudging {name} made it non-finite"
    );
    assert!(
        !bool::try_from(moved.eq_tensor(&var).any()).expect("bool"),
        "nudging {name} by {ulps} ulp left an element unchanged"
    );
    var.copy_(&moved);
}
