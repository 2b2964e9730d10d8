//! Optimized versions of the float engine's hot kernels, equal to the portable kernels of
//! [`kernels`] bit for bit (the portable kernels are the specification).
//!
//! - [`linear`]: every matrix product (SwiGLU, mlp_t, the qkv and o projections): blocked over
//!   output rows and activation rows, with the accumulators in registers and each weight tile
//!   converted once per call;
//! - [`silu_mul`]: the SwiGLU product `silu(gate) * up`, with `libm::expf` transcribed to
//!   vector lanes;
//! - [`exp_sub`]: the softmax exponentials `expf(s - max)`.
//!
//! Each [`Isa`] implements all three. A [`FloatEngine`](crate::FloatEngine) runs the one it
//! was given ([`FloatEngine::set_isa`](crate::FloatEngine::set_isa)), by default
//! [`Isa::best`]:
//!
//! - x86_64: [`Isa::Avx512`] (AVX-512 F, VL, DQ, BW) or [`Isa::Avx2`] (AVX2, FMA and F16C), chosen
//!   at compile time when the build enables the target features (`-C target-cpu=native`),
//!   otherwise, with the `std` feature, at run time (once; the decision is cached);
//! - everything else (Cortex-M, RISC-V): [`Isa::Portable`], the portable kernels themselves.
//!
//! # Why the results are identical
//!
//! Every dot product keeps the lane order of [`kernels::dot`]: an 8-float vector holds its
//! [`LANES`](kernels::LANES) partial sums, and each step is a vector multiply followed by a
//! vector add (`vmulps`, `vaddps`): per lane, exactly the scalar `lane += x * w` of the portable
//! kernel, with the same two roundings. The optimized kernels never use fused multiply-add
//! (`vfmadd`): it rounds once where the portable code rounds twice, so it would change results
//! and break the agreement between the host and the microcontrollers (which run the portable
//! code). The lanes are combined with the additions of
//! [`reduce_lanes`](kernels::reduce_lanes), in the same order. The exponential is
//! `libm::expf`'s algorithm step for step in vector lanes (IEEE 754 rounds each basic operation
//! the same in a vector lane as in a scalar register). Blocking only changes which dot products
//! run at the same time, never the order within one.
//!
//! With [`Arith::Fused`] (opt-in; [`kernels`]' "Fused arithmetic") the products and attention
//! use `vfmadd` instead, lane for lane the portable `libm::fmaf`: the same order, one rounding
//! in both. Only that arithmetic's own results are matched, never the separate ones.
//!
//! The tests (`tests/float_simd.rs`) compare every implementation the machine supports with the
//! portable one on random and extreme values (subnormals, infinities, `-0.0`), on lengths that
//! are not multiples of the vector widths and on every block remainder, and whole engines on
//! random models.
//!
//! `unsafe` exists only in the per-architecture submodule (intrinsics); this module's API is
//! safe.

use super::kernels::{self, Arith};
use super::weights::MatRef;
use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

/// One implementation of the hot float kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Isa {
    /// The portable kernels of [`kernels`].
    Portable = 1,
    /// x86_64 AVX2 (with FMA and F16C): blocks of 3 activation rows x 4 weight rows, 8-float vectors.
    Avx2 = 2,
    /// x86_64 AVX-512 F, VL, DQ, BW: blocks of 6 activation rows x 4 weight row pairs, each
    /// 16-float vector holding the lanes of two dot products.
    Avx512 = 3,
}

impl Isa {
    /// Every implementation, supported here or not, fastest last.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// A short lowercase name (`portable`, `avx2`, `avx512`).
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this build can run the implementation on this machine (compile-time target
    /// features; on x86_64 with `std`, run-time detection as well).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::has_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }

    /// The fastest supported implementation (decided on the first call and cached).
    pub fn best() -> Isa {
        if let Some(isa) = Isa::from_u8(BEST.load(Ordering::Relaxed)) {
            return isa;
        }
        let mut best = Isa::Portable;
        for isa in Isa::ALL {
            if isa.is_supported() {
                best = isa;
            }
        }
        BEST.store(best as u8, Ordering::Relaxed);
        best
    }

    fn from_u8(v: u8) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| *i as u8 == v)
    }
}

/// [`Isa::best`], once decided: 0 until then. Only loads and stores (no compare-and-swap), so
/// it exists on every target; two threads deciding at once store the same value.
static BEST: AtomicU8 = AtomicU8::new(0);

/// Weight rows per tile of the optimized matrix products.
pub const TILE_ROWS: usize = 8;

/// f32 values of the weight tile with which [`linear`] runs its blocked kernels on weight rows
/// of up to `cols` values ([`TILE_ROWS`] rows padded to whole 8-float chunks). With less (at
/// least one padded row, AVX-512 two), the kernels use smaller tiles; with less than that, the
/// portable kernel runs.
pub const fn tile_len(cols: usize) -> usize {
    TILE_ROWS * cols.div_ceil(kernels::LANES) * kernels::LANES
}

/// [`kernels::linear`] with `isa` (the same results): `out[r, o] = dot(input[r, ..cols], W[o])`
/// for `r < rows`. `tile` is the weight buffer: at least one weight row (the portable kernel's
/// `wrow`), ideally [`tile_len`]`(W.cols())` values. An unsupported `isa` runs the portable
/// kernel.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    isa: Isa,
    w: &MatRef<'_>,
    tile: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    linear_with(
        isa,
        Arith::Separate,
        w,
        tile,
        input,
        in_stride,
        rows,
        out,
        out_stride,
    );
}

/// [`kernels::linear_with`] with `isa` (the same results): [`linear`] with `arith`'s
/// multiply-accumulates. Fused arithmetic on [`Isa::Avx2`] needs the CPU's FMA as well
/// (otherwise the portable kernel runs).
#[allow(clippy::too_many_arguments)]
pub fn linear_with(
    isa: Isa,
    arith: Arith,
    w: &MatRef<'_>,
    tile: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let fused = arith == Arith::Fused;
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::linear_avx512(fused, w, tile, input, in_stride, rows, out, out_stride),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::linear_avx2(fused, w, tile, input, in_stride, rows, out, out_stride),
        _ => {
            let _ = fused;
            false
        }
    };
    if !done {
        kernels::linear_with(arith, w, tile, input, in_stride, rows, out, out_stride);
    }
}

/// `gate[i] = silu(gate[i]) * up[i]` ([`kernels::silu`]) over `min(gate.len(), up.len())`
/// values, with `isa` (the same results).
pub fn silu_mul(isa: Isa, gate: &mut [f32], up: &[f32]) {
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::silu_mul_avx512(gate, up),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::silu_mul_avx2(gate, up),
        _ => false,
    };
    if !done {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = kernels::silu(*g) * *u;
        }
    }
}

/// `s[j] = libm::expf(s[j] - max)` with `isa` (the same results).
pub fn exp_sub(isa: Isa, s: &mut [f32], max: f32) {
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::exp_sub_avx512(s, max),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::exp_sub_avx2(s, max),
        _ => false,
    };
    if !done {
        for v in s.iter_mut() {
            *v = libm::expf(*v - max);
        }
    }
}

/// [`kernels::transpose`] with `isa` (the same results: copies): `dst: [cols, rows] =
/// src: [rows, cols]^T`.
pub fn transpose(isa: Isa, src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86::transpose_avx2(src, rows, cols, dst),
        _ => false,
    };
    if !done {
        kernels::transpose(src, rows, cols, dst);
    }
}

/// f32 values of the attention scratch with which [`attention_scores`] and
/// [`attention_values`] run for `l` positions, `heads` heads of `hd` values: the scores of every
/// head (`heads * l * l`), the softmax sums (`heads * l`) and a weight tile
/// ([`tile_len`]`(hd)`), in this order.
pub const fn attention_len(l: usize, heads: usize, hd: usize) -> usize {
    heads * l * l + heads * l + tile_len(hd)
}

/// Attention scores of every head: `s[h, i, j] = dot(q_i, k_j)` (the [`kernels::dot`] order
/// with `arith`'s multiply-accumulates, unscaled) for `qkv: [l, 3 heads hd]` (query heads, key heads, value heads per row). `tile`
/// holds at least [`tile_len`]`(hd)` values. Returns `false`, writing nothing, on
/// [`Isa::Portable`] or an unsupported one, or when the shapes do not fit (`s` shorter than
/// `heads * l * l`, `qkv` than `3 l heads hd`).
#[allow(clippy::too_many_arguments)]
pub fn attention_scores(
    isa: Isa,
    arith: Arith,
    qkv: &[f32],
    l: usize,
    heads: usize,
    hd: usize,
    s: &mut [f32],
    tile: &mut [f32],
) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::attention_scores(true, arith, qkv, l, heads, hd, s, tile),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::attention_scores(false, arith, qkv, l, heads, hd, s, tile),
        _ => {
            let _ = (arith, qkv, l, heads, hd, s, tile);
            false
        }
    }
}

/// Attention outputs from the probabilities `p: [heads, l, l]` (unnormalized) and their sums
/// `sums: [heads, l]`: the query of row `i`, head `h` in `qkv: [l, 3 heads hd]` becomes
/// `(sum_j p[h, i, j] v_j) / sums[h, i]` (the sum over `j` in increasing order from `0.0` with
/// `arith`'s multiply-accumulates, as [`kernels::attention`] computes it). Returns `false`, writing nothing, on
/// [`Isa::Portable`] or an unsupported one, or when the shapes do not fit.
#[allow(clippy::too_many_arguments)]
pub fn attention_values(
    isa: Isa,
    arith: Arith,
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    p: &[f32],
    sums: &[f32],
) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::attention_values_avx512(arith, qkv, l, heads, hd, p, sums),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::attention_values_avx2(arith, qkv, l, heads, hd, p, sums),
        _ => {
            let _ = (arith, qkv, l, heads, hd, p, sums);
            false
        }
    }
}

/// [`MatRef::row_into`] with the weight conversion of `isa`'s kernels (the same results; for
/// the tests of the conversions).
pub fn row_into(isa: Isa, w: &MatRef<'_>, r: usize, out: &mut [f32]) {
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86::row_into(w, r, out),
        _ => false,
    };
    if !done {
        w.row_into(r, out);
    }
}
