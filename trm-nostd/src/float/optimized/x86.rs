//! x86_64 AVX2 and AVX-512 float kernels, equal to the portable kernels bit for bit.
//!
//! Each entry point checks that the CPU supports its instructions (and that the buffers have
//! the sizes the caller promises) and otherwise returns `false` without touching anything, so
//! it is safe to call anywhere; the `unsafe` blocks inside are justified by those checks.
//!
//! # Why the results are identical
//!
//! - Matrix products ([`linear_avx2`], [`linear_avx512`]): one 8-float vector holds the
//!   [`LANES`] partial sums of one dot product in lane order (element `k` in lane `k % 8`), and
//!   each step is one vector multiply (`vmulps`) and one vector add (`vaddps`): per lane exactly
//!   the scalar `lane += x * w` of the portable kernel, in the same increasing `k`. **No fused
//!   multiply-add**: an FMA rounds once where `x * w` then `+` round twice, so it would change
//!   the bits (and break the agreement with Cortex-M and RISC-V, which run the portable code).
//!   The tail (`cols % 8` elements) is one more step on lanes `0..tail` only (a masked add on
//!   AVX-512, a blend on AVX2), as the portable kernel adds the tail to lanes `0..` after the
//!   main loop. The lanes are then combined by the tree of [`reduce_lanes`]: the same additions
//!   with the same operands, done for several dot products at once by shuffles.
//! - Weights are converted exactly as [`MatRef::row_into`] converts them (f16 with `vcvtph2ps`,
//!   bf16 by a 16-bit shift with NaNs quieted like `half` does; tests compare all 65536 values).
//! - [`exp`]: a lane-by-lane transcription of `libm::expf` (FreeBSD's `e_expf.c`, and
//!   `scalbnf` for the final scaling): the same f32 operations in the same order, each
//!   correctly rounded by IEEE 754 in a vector lane as in a scalar register; the branches
//!   become selects. Tests compare it with `libm::expf` on every exponent and the range
//!   boundaries.
//!
//! Blocking: the AVX-512 kernel keeps `4 x 6` accumulators of two dot products each (a weight
//! row pair times one activation row: lanes 0..8 for the first row, 8..16 for the second) in
//! registers, so each 16-float weight load serves six activation rows and each broadcast
//! activation load four weight pairs; the AVX2 kernel keeps `4 x 3` single accumulators. The
//! weight tile (up to [`TILE_ROWS`] rows, converted once per call) stays in L1 while every
//! activation row streams past it.

// The AVX-512 intrinsics are stable since Rust 1.89 and safe intrinsic calls inside
// `#[target_feature]` functions since 1.86 (the workspace's rust-version is 1.89).

use super::TILE_ROWS;
#[cfg(doc)]
use crate::float::kernels::reduce_lanes;
use crate::float::kernels::{Arith, LANES};
use crate::float::weights::MatRef;
use crate::tensor::DType;
use core::arch::x86_64::*;

/// Activation rows per AVX-512 micro-kernel pass.
const NR512: usize = 6;
/// Weight row pairs per AVX-512 micro-kernel pass.
const OP512: usize = 4;
/// Activation rows per AVX2 micro-kernel pass.
const NR256: usize = 3;
/// Weight rows per AVX2 micro-kernel pass.
const OT256: usize = 4;

/// Whether AVX2, FMA and F16C are available (compile time, or run time with `std`; the
/// standard library caches its CPUID reading). FMA serves the fused arithmetic only; every CPU
/// with AVX2 in practice has it.
#[inline]
pub(super) fn has_avx2() -> bool {
    #[cfg(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        true
    }
    #[cfg(all(
        not(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        )),
        feature = "std"
    ))]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(all(
        not(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        )),
        not(feature = "std")
    ))]
    {
        false
    }
}

/// Whether AVX-512 F, VL, DQ and BW (and AVX2, F16C) are available.
#[inline]
pub(super) fn has_avx512() -> bool {
    #[cfg(all(
        target_feature = "avx512f",
        target_feature = "avx512vl",
        target_feature = "avx512dq",
        target_feature = "avx512bw"
    ))]
    {
        has_avx2()
    }
    #[cfg(all(
        not(all(
            target_feature = "avx512f",
            target_feature = "avx512vl",
            target_feature = "avx512dq",
            target_feature = "avx512bw"
        )),
        feature = "std"
    ))]
    {
        has_avx2()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(all(
        not(all(
            target_feature = "avx512f",
            target_feature = "avx512vl",
            target_feature = "avx512dq",
            target_feature = "avx512bw"
        )),
        not(feature = "std")
    ))]
    {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes and checks shared by both matrix-product kernels.

/// The weight rows of a product: a model matrix, or f32 rows inside a buffer (the attention
/// keys).
#[derive(Clone, Copy)]
enum Src<'p, 'w> {
    /// A matrix of the model (f32, f16 or bf16).
    Mat(&'p MatRef<'w>),
    /// Rows `data[o * stride..o * stride + cols]` for `o < rows` (checked by [`Linear::new`]).
    Rows {
        data: &'p [f32],
        stride: usize,
        rows: usize,
        cols: usize,
    },
}

impl Src<'_, '_> {
    fn rows(&self) -> usize {
        match self {
            Src::Mat(w) => w.rows(),
            Src::Rows { rows, .. } => *rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Src::Mat(w) => w.cols(),
            Src::Rows { cols, .. } => *cols,
        }
    }

    /// Converts row `o` (zeros when out of range) into the tile layout (see [`pack_row`]).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn pack(&self, o: usize, dst: &mut [f32], stride: usize) {
        match *self {
            Src::Mat(w) => pack_row(w.dtype(), w.row_bytes(o), w.cols(), dst, stride),
            Src::Rows {
                data,
                stride: s,
                rows,
                cols,
            } => {
                let row = if o < rows {
                    data.get(o * s..o * s + cols).unwrap_or(&[])
                } else {
                    &[]
                };
                let bytes: &[u8] = bytemuck::cast_slice(row);
                pack_row(DType::F32, bytes, cols, dst, stride);
            }
        }
    }

    /// Prefetches part of the rows of the next tile (model matrices only: the other rows are in
    /// cache already).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn prefetch(&self, first: usize, count: usize, part: usize, parts: usize) {
        if let Src::Mat(w) = self {
            prefetch_rows(w, first, count, part, parts);
        }
    }
}

/// A checked `out[r, o] = dot(input[r, ..cols], W[o])` problem (see `kernels::linear`).
struct Linear<'p, 'w> {
    w: Src<'p, 'w>,
    input: &'p [f32],
    in_stride: usize,
    rows: usize,
    /// Full 8-element chunks of a row.
    full: usize,
    /// `cols % 8`.
    tail: usize,
    /// Chunks per row, the tail's included.
    chunks: usize,
}

impl<'p, 'w> Linear<'p, 'w> {
    /// The problem, or `None` when there is nothing to block (no rows, columns or outputs) or a
    /// buffer is too short for the shapes (the portable kernel then reports the caller's bug).
    fn new(
        w: Src<'p, 'w>,
        input: &'p [f32],
        in_stride: usize,
        rows: usize,
        out: &[f32],
        out_stride: usize,
    ) -> Option<Self> {
        let (cols, orows) = (w.cols(), w.rows());
        if cols == 0 || orows == 0 || rows == 0 || in_stride < cols || out_stride < orows {
            return None;
        }
        let in_need = (rows - 1).checked_mul(in_stride)?.checked_add(cols)?;
        let out_need = (rows - 1).checked_mul(out_stride)?.checked_add(orows)?;
        if input.len() < in_need || out.len() < out_need {
            return None;
        }
        match w {
            Src::Mat(m) => {
                if !matches!(m.dtype(), DType::F32 | DType::F16 | DType::BF16) {
                    return None;
                }
            }
            Src::Rows { data, stride, .. } => {
                let need = (orows - 1).checked_mul(stride)?.checked_add(cols)?;
                if stride < cols || data.len() < need {
                    return None;
                }
            }
        }
        Some(Linear {
            w,
            input,
            in_stride,
            rows,
            full: cols / LANES,
            tail: cols % LANES,
            chunks: cols.div_ceil(LANES),
        })
    }
}

/// Converts 8 weights at `src` to f32 exactly like [`MatRef::row_into`].
///
/// # Safety
///
/// AVX2 and F16C must be available; `src` must hold 8 values of `dtype` (32 or 16 bytes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn convert8(dtype: DType, src: *const u8) -> __m256 {
    match dtype {
        // SAFETY: `src` holds 8 f32 (caller's guarantee); unaligned loads are allowed.
        DType::F32 => unsafe { _mm256_loadu_ps(src.cast()) },
        DType::F16 => {
            // SAFETY: `src` holds 8 f16.
            let h = unsafe { _mm_loadu_si128(src.cast()) };
            _mm256_cvtph_ps(h)
        }
        DType::BF16 => {
            // SAFETY: `src` holds 8 bf16.
            let h = unsafe { _mm_loadu_si128(src.cast()) };
            let b = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            // NaNs get their quiet bit, as `half::bf16::to_f32` does.
            let abs = _mm256_and_si256(b, _mm256_set1_epi32(0x7fff_ffff));
            let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
            let quiet = _mm256_and_si256(nan, _mm256_set1_epi32(0x0040_0000));
            _mm256_castsi256_ps(_mm256_or_si256(b, quiet))
        }
        _ => _mm256_setzero_ps(),
    }
}

/// Converts one weight row (`bytes`: `cols` values of `dtype`, or empty for a row of zeros)
/// into `chunks = ceil(cols / 8)` chunks of 8 f32, chunk `c` at `dst[c * stride..c * stride + 8]`,
/// the last one zero-padded: the layout of the weight tiles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_row(dtype: DType, bytes: &[u8], cols: usize, dst: &mut [f32], stride: usize) {
    let size = dtype.size();
    let chunks = cols.div_ceil(LANES);
    if chunks == 0 {
        return;
    }
    let need = (chunks - 1) * stride + LANES;
    let Some(dst) = dst.get_mut(..need) else {
        return;
    };
    if bytes.len() != cols * size || !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        for c in 0..chunks {
            dst[c * stride..c * stride + LANES].fill(0.0);
        }
        return;
    }
    let full = cols / LANES;
    let (d, s) = (dst.as_mut_ptr(), bytes.as_ptr());
    for c in 0..full {
        // SAFETY: chunk c < full of the row holds 8 values (`bytes` holds `cols` of them), and
        // `dst` holds `(chunks - 1) * stride + 8 >= c * stride + 8` values.
        unsafe { _mm256_storeu_ps(d.add(c * stride), convert8(dtype, s.add(c * LANES * size))) };
    }
    if full < chunks {
        let mut buf = [0u8; 32];
        let tail = &bytes[full * LANES * size..];
        buf[..tail.len()].copy_from_slice(tail);
        // SAFETY: `buf` holds 8 values of any dtype; `dst` holds the last chunk.
        unsafe { _mm256_storeu_ps(d.add(full * stride), convert8(dtype, buf.as_ptr())) };
    }
}

/// Converts row `r` of `w` into `out[..min(cols, out.len())]` with the vector conversions of
/// the kernels; `false` (nothing written) without AVX2 + F16C.
pub(super) fn row_into(w: &MatRef<'_>, r: usize, out: &mut [f32]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: AVX2 and F16C are available (checked above).
    unsafe { row_into_avx2(w, r, out) };
    true
}

#[target_feature(enable = "avx2,fma,f16c")]
fn row_into_avx2(w: &MatRef<'_>, r: usize, out: &mut [f32]) {
    let size = w.dtype().size();
    let bytes = w.row_bytes(r);
    if bytes.len() != w.cols() * size {
        // An out-of-range row converts nothing, like `MatRef::row_into`.
        return;
    }
    let n = w.cols().min(out.len());
    for (c, dst) in out[..n].chunks_mut(LANES).enumerate() {
        let src = &bytes[c * LANES * size..];
        let mut buf = [0u8; 32];
        let take = src.len().min(LANES * size);
        buf[..take].copy_from_slice(&src[..take]);
        let mut vals = [0f32; LANES];
        // SAFETY: `buf` holds 8 values of any dtype, `vals` 8 f32.
        unsafe { _mm256_storeu_ps(vals.as_mut_ptr(), convert8(w.dtype(), buf.as_ptr())) };
        let len = dst.len();
        dst.copy_from_slice(&vals[..len]);
    }
}

/// Prefetches part `part` of `parts` of weight rows `first..first + count` (those that exist)
/// into L2: the next tile, while the current one is computed, so that its packing does not wait
/// on memory.
#[inline]
#[target_feature(enable = "avx2")]
fn prefetch_rows(w: &MatRef<'_>, first: usize, count: usize, part: usize, parts: usize) {
    const LINE: usize = 64;
    let bytes = w.rows_bytes(first, count);
    let lines = bytes.len().div_ceil(LINE);
    if parts == 0 {
        return;
    }
    for j in lines * part / parts..lines * (part + 1) / parts {
        if let Some(b) = bytes.get(j * LINE) {
            _mm_prefetch::<_MM_HINT_T1>((b as *const u8).cast());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 matrix product.

/// `kernels::linear` with AVX-512; `false` (nothing done) when AVX-512 is missing, the shapes
/// are degenerate or `tile` cannot hold one weight row pair (`16 * ceil(cols / 8)` values).
#[allow(clippy::too_many_arguments)]
pub(super) fn linear_avx512(
    fused: bool,
    w: &MatRef<'_>,
    tile: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) -> bool {
    product512(
        fused,
        Src::Mat(w),
        tile,
        input,
        in_stride,
        rows,
        out,
        out_stride,
    )
}

/// [`linear_avx512`] on any weight rows.
#[allow(clippy::too_many_arguments)]
fn product512(
    fused: bool,
    w: Src<'_, '_>,
    tile: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) -> bool {
    if !has_avx512() {
        return false;
    }
    let Some(p) = Linear::new(w, input, in_stride, rows, out, out_stride) else {
        return false;
    };
    let pair_stride = 2 * LANES * p.chunks;
    let pairs = (tile.len() / pair_stride).min(OP512);
    if pairs == 0 {
        return false;
    }
    let tile = &mut tile[..pairs * pair_stride];
    // SAFETY: AVX-512 F/VL/DQ/BW, AVX2, FMA and F16C are available; `p` checked the input and
    // output extents, and `tile` holds `pairs` pairs.
    unsafe {
        if fused {
            linear512::<true>(&p, tile, pairs, out, out_stride)
        } else {
            linear512::<false>(&p, tile, pairs, out, out_stride)
        }
    };
    true
}

/// # Safety
///
/// AVX-512 F/VL/DQ/BW, AVX2, FMA and F16C must be available; `p` is checked (its input holds every
/// row it names, `out` holds `p.rows` rows of `w.rows()` values at `out_stride`), and `tile`
/// holds `pairs` row pairs of `16 * p.chunks` values.
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c")]
unsafe fn linear512<const F: bool>(
    p: &Linear<'_, '_>,
    tile: &mut [f32],
    pairs: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let orows = p.w.rows();
    let pair_stride = 2 * LANES * p.chunks;
    let mut o0 = 0;
    while o0 < orows {
        let valid = (orows - o0).min(2 * pairs);
        // Pack rows o0.. as pairs: chunk c of pair q holds 8 values of row 2q, then 8 of 2q+1.
        let used = valid.div_ceil(2);
        for i in 0..2 * used {
            let at = (i / 2) * pair_stride + (i % 2) * LANES;
            // Row o0 + valid (odd `valid`) is past the tile's rows, or past the matrix: zeros.
            let o = if i < valid { o0 + i } else { usize::MAX };
            p.w.pack(o, &mut tile[at..], 2 * LANES);
        }
        let mut r0 = 0;
        let parts = p.rows.div_ceil(NR512);
        while r0 < p.rows {
            let nr = (p.rows - r0).min(NR512);
            p.w.prefetch(o0 + valid, 2 * pairs, r0 / NR512, parts);
            let x = &p.input[r0 * p.in_stride..];
            let dst = &mut out[r0 * out_stride + o0..];
            // SAFETY: rows r0..r0+nr of the input hold `cols` values each at `in_stride`, and
            // `dst` rows 0..nr hold `valid` values each at `out_stride` (checked by `p`);
            // `tile` holds `used` pairs.
            unsafe {
                block512_dispatch::<F>(
                    nr,
                    used,
                    tile.as_ptr(),
                    pair_stride,
                    x.as_ptr(),
                    p.in_stride,
                    p.full,
                    p.tail,
                    dst.as_mut_ptr(),
                    out_stride,
                    valid,
                )
            };
            r0 += nr;
        }
        o0 += valid;
    }
}

/// Calls `block512::<nr, pairs>`.
///
/// # Safety
///
/// As [`block512`].
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c")]
unsafe fn block512_dispatch<const F: bool>(
    nr: usize,
    pairs: usize,
    tile: *const f32,
    pair_stride: usize,
    x: *const f32,
    in_stride: usize,
    full: usize,
    tail: usize,
    out: *mut f32,
    out_stride: usize,
    valid: usize,
) {
    macro_rules! go {
        ($($nr:literal),*) => {
            // SAFETY: the caller's guarantees are those of `block512`.
            unsafe {
                match (nr, pairs) {
                    $(
                        ($nr, 1) => block512::<F, $nr, 1>(tile, pair_stride, x, in_stride, full, tail, out, out_stride, valid),
                        ($nr, 2) => block512::<F, $nr, 2>(tile, pair_stride, x, in_stride, full, tail, out, out_stride, valid),
                        ($nr, 3) => block512::<F, $nr, 3>(tile, pair_stride, x, in_stride, full, tail, out, out_stride, valid),
                        ($nr, 4) => block512::<F, $nr, 4>(tile, pair_stride, x, in_stride, full, tail, out, out_stride, valid),
                    )*
                    _ => {}
                }
            }
        };
    }
    go!(1, 2, 3, 4, 5, 6);
}

/// Adds `x * w` to `acc` on the lanes of `m` (all lanes: a plain add): a multiply and an add,
/// one rounding each, or with `F` one fused multiply-add (one rounding).
#[inline]
#[target_feature(enable = "avx512f")]
fn madd512<const F: bool>(acc: __m512, x: __m512, w: __m512, m: Option<__mmask16>) -> __m512 {
    if F {
        return match m {
            None => _mm512_fmadd_ps(x, w, acc),
            Some(m) => _mm512_mask3_fmadd_ps(x, w, acc, m),
        };
    }
    let prod = _mm512_mul_ps(x, w);
    match m {
        None => _mm512_add_ps(acc, prod),
        Some(m) => _mm512_mask_add_ps(acc, m, acc, prod),
    }
}

/// `NR` activation rows times `OP` weight row pairs, every dot product in the lane order.
///
/// # Safety
///
/// AVX-512 F/VL/DQ/BW must be available; `x + r * in_stride` holds `8 * full + tail` readable
/// f32 for `r < NR`; `tile + q * pair_stride` holds `16 * (full + (tail > 0))` for `q < OP`;
/// `out + r * out_stride` holds `valid` writable f32 for `r < NR` (`valid <= 2 * OP`).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c")]
unsafe fn block512<const F: bool, const NR: usize, const OP: usize>(
    tile: *const f32,
    pair_stride: usize,
    x: *const f32,
    in_stride: usize,
    full: usize,
    tail: usize,
    out: *mut f32,
    out_stride: usize,
    valid: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; OP];
    // SAFETY: row r < NR starts in the input (caller's guarantee).
    let xs: [*const f32; NR] = core::array::from_fn(|r| unsafe { x.add(r * in_stride) });
    let step = |acc: &mut [[__m512; NR]; OP], c: usize, m: Option<__mmask16>| {
        let mut wv = [_mm512_setzero_ps(); OP];
        for (q, v) in wv.iter_mut().enumerate() {
            // SAFETY: chunk c of pair q lies in the tile (caller's guarantee).
            *v = unsafe { _mm512_loadu_ps(tile.add(q * pair_stride + c * 2 * LANES)) };
        }
        for r in 0..NR {
            // SAFETY: chunk c of row r lies in the input; the tail chunk is loaded masked to
            // its `tail` readable values (masked-off lanes are not read).
            let xr = unsafe {
                let p = xs[r].add(c * LANES);
                match m {
                    None => _mm256_loadu_ps(p),
                    Some(_) => _mm256_maskz_loadu_ps(((1u32 << tail) - 1) as __mmask8, p),
                }
            };
            let xv = _mm512_broadcast_f32x8(xr);
            for q in 0..OP {
                acc[q][r] = madd512::<F>(acc[q][r], xv, wv[q], m);
            }
        }
    };
    for c in 0..full {
        step(&mut acc, c, None);
    }
    if tail > 0 {
        let m8 = (1u16 << tail) - 1;
        step(&mut acc, full, Some(m8 | (m8 << 8)));
    }
    let get = |q: usize, r: usize| {
        if q < OP {
            acc[q][r]
        } else {
            _mm512_setzero_ps()
        }
    };
    let mask = ((1u32 << valid) - 1) as __mmask8;
    let mut r = 0;
    while r < NR {
        let r2 = (r + 1).min(NR - 1);
        let v = reduce16(
            [get(0, r), get(1, r), get(2, r), get(3, r)],
            [get(0, r2), get(1, r2), get(2, r2), get(3, r2)],
        );
        // SAFETY: rows r and r2 < NR of `out` hold `valid` writable values; masked-off lanes
        // are not written.
        unsafe {
            _mm256_mask_storeu_ps(out.add(r * out_stride), mask, _mm512_castps512_ps256(v));
            if r2 != r {
                let hi = _mm512_extractf32x8_ps::<1>(v);
                _mm256_mask_storeu_ps(out.add(r2 * out_stride), mask, hi);
            }
        }
        r += 2;
    }
}

/// Reduces the accumulators of two activation rows `a` and `b` (four weight row pairs each:
/// lanes 0..8 row `2q`, 8..16 row `2q + 1`) with the tree of [`reduce_lanes`]; returns the 8
/// outputs of `a` in lanes 0..8 and those of `b` in lanes 8..16.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(a: [__m512; 4], b: [__m512; 4]) -> __m512 {
    // Stage 1: t = lanes 0..4 + lanes 4..8 of each dot product, one 128-bit block per output:
    // [t(2q), t(2q+1), t(2q+2), t(2q+3)] from pairs q, q+1.
    let s1 = |p: __m512, q: __m512| {
        let lo = _mm512_shuffle_f32x4::<0b10_00_10_00>(p, q);
        let hi = _mm512_shuffle_f32x4::<0b11_01_11_01>(p, q);
        _mm512_add_ps(lo, hi)
    };
    // Stage 2: u = (t0 + t2, t1 + t3) of two outputs per block.
    let s2 = |p: __m512, q: __m512| {
        let lo = _mm512_shuffle_ps::<0b01_00_01_00>(p, q);
        let hi = _mm512_shuffle_ps::<0b11_10_11_10>(p, q);
        _mm512_add_ps(lo, hi)
    };
    // Stage 3: u0 + u1 of four outputs per block.
    let s3 = |p: __m512, q: __m512| {
        let lo = _mm512_shuffle_ps::<0b10_00_10_00>(p, q);
        let hi = _mm512_shuffle_ps::<0b11_01_11_01>(p, q);
        _mm512_add_ps(lo, hi)
    };
    // Block j: a rows j and 4 + j, b rows j and 4 + j.
    let v = s3(
        s2(s1(a[0], a[1]), s1(a[2], a[3])),
        s2(s1(b[0], b[1]), s1(b[2], b[3])),
    );
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, v)
}

// ---------------------------------------------------------------------------------------------
// AVX2 matrix product.

/// `kernels::linear` with AVX2; `false` (nothing done) when AVX2 is missing, the shapes are
/// degenerate or `tile` cannot hold one weight row (`8 * ceil(cols / 8)` values).
#[allow(clippy::too_many_arguments)]
pub(super) fn linear_avx2(
    fused: bool,
    w: &MatRef<'_>,
    tile: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) -> bool {
    product256(
        fused,
        Src::Mat(w),
        tile,
        input,
        in_stride,
        rows,
        out,
        out_stride,
    )
}

/// [`linear_avx2`] on any weight rows.
#[allow(clippy::too_many_arguments)]
fn product256(
    fused: bool,
    w: Src<'_, '_>,
    tile: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) -> bool {
    if !has_avx2() {
        return false;
    }
    let Some(p) = Linear::new(w, input, in_stride, rows, out, out_stride) else {
        return false;
    };
    let row_stride = LANES * p.chunks;
    let trows = (tile.len() / row_stride).min(TILE_ROWS);
    if trows == 0 {
        return false;
    }
    let tile = &mut tile[..trows * row_stride];
    // SAFETY: AVX2, FMA and F16C are available; `p` checked the input and output extents, and
    // `tile` holds `trows` rows.
    unsafe {
        if fused {
            linear256::<true>(&p, tile, trows, out, out_stride)
        } else {
            linear256::<false>(&p, tile, trows, out, out_stride)
        }
    };
    true
}

/// # Safety
///
/// AVX2, FMA and F16C must be available; `p` is checked, `tile` holds `trows` rows of
/// `8 * p.chunks` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn linear256<const F: bool>(
    p: &Linear<'_, '_>,
    tile: &mut [f32],
    trows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let orows = p.w.rows();
    let row_stride = LANES * p.chunks;
    // Micro-kernel rows: OT256, or one when the tile is smaller; `trows` a multiple of it.
    let kt = if trows >= OT256 { OT256 } else { 1 };
    let trows = trows / kt * kt;
    let mut o0 = 0;
    while o0 < orows {
        let valid = (orows - o0).min(trows);
        // Rows past `valid` up to a multiple of the micro-kernel's rows are zero.
        let padded = valid.next_multiple_of(kt);
        for i in 0..padded {
            let o = if i < valid { o0 + i } else { usize::MAX };
            p.w.pack(o, &mut tile[i * row_stride..], LANES);
        }
        let mut r0 = 0;
        let parts = p.rows.div_ceil(NR256);
        while r0 < p.rows {
            let nr = (p.rows - r0).min(NR256);
            p.w.prefetch(o0 + valid, trows, r0 / NR256, parts);
            let x = &p.input[r0 * p.in_stride..];
            let mut t0 = 0;
            while t0 < valid {
                let ot = (valid - t0).min(kt);
                let dst = &mut out[r0 * out_stride + o0 + t0..];
                let w = &tile[t0 * row_stride..];
                // SAFETY: input rows r0..r0+nr hold `cols` values at `in_stride`; `dst` rows
                // 0..nr hold `ot` values at `out_stride` (checked by `p`); tile rows
                // t0..t0+kt hold `row_stride` values (`padded` rows were written).
                unsafe {
                    block256_dispatch::<F>(
                        nr,
                        kt,
                        w.as_ptr(),
                        row_stride,
                        x.as_ptr(),
                        p.in_stride,
                        p.full,
                        p.tail,
                        dst.as_mut_ptr(),
                        out_stride,
                        ot,
                    )
                };
                t0 += ot;
            }
            r0 += nr;
        }
        o0 += valid;
    }
}

/// Calls `block256::<nr, ot>` (`ot` 4 or 1).
///
/// # Safety
///
/// As [`block256`].
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block256_dispatch<const F: bool>(
    nr: usize,
    ot: usize,
    w: *const f32,
    row_stride: usize,
    x: *const f32,
    in_stride: usize,
    full: usize,
    tail: usize,
    out: *mut f32,
    out_stride: usize,
    valid: usize,
) {
    macro_rules! go {
        ($($nr:literal),*) => {
            // SAFETY: the caller's guarantees are those of `block256`.
            unsafe {
                match (nr, ot) {
                    $(
                        ($nr, 1) => block256::<F, $nr, 1>(w, row_stride, x, in_stride, full, tail, out, out_stride, valid),
                        ($nr, 4) => block256::<F, $nr, 4>(w, row_stride, x, in_stride, full, tail, out, out_stride, valid),
                    )*
                    _ => {}
                }
            }
        };
    }
    go!(1, 2, 3);
}

/// `NR` activation rows times `OT` weight rows, every dot product in the lane order.
///
/// # Safety
///
/// AVX2 and FMA must be available; `x + r * in_stride` holds `8 * full + tail` readable f32 for
/// `r < NR`; `w + t * row_stride` holds `8 * (full + (tail > 0))` for `t < OT`;
/// `out + r * out_stride` holds `valid` writable f32 for `r < NR` (`valid <= OT`).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block256<const F: bool, const NR: usize, const OT: usize>(
    w: *const f32,
    row_stride: usize,
    x: *const f32,
    in_stride: usize,
    full: usize,
    tail: usize,
    out: *mut f32,
    out_stride: usize,
    valid: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); NR]; OT];
    for c in 0..full {
        let mut xv = [_mm256_setzero_ps(); NR];
        for (r, v) in xv.iter_mut().enumerate() {
            // SAFETY: chunk c of row r lies in the input (caller's guarantee).
            *v = unsafe { _mm256_loadu_ps(x.add(r * in_stride + c * LANES)) };
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: chunk c of tile row t lies in the tile.
            let wv = unsafe { _mm256_loadu_ps(w.add(t * row_stride + c * LANES)) };
            for (a, xr) in acc_t.iter_mut().zip(xv) {
                *a = madd256::<F>(*a, xr, wv);
            }
        }
    }
    if tail > 0 {
        // Lanes 0..tail: all ones.
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail as i32), lane);
        let mut xv = [_mm256_setzero_ps(); NR];
        for (r, v) in xv.iter_mut().enumerate() {
            // SAFETY: the tail chunk of row r has `tail` readable values; masked-off lanes are
            // not read.
            *v = unsafe { _mm256_maskload_ps(x.add(r * in_stride + full * LANES), m) };
        }
        let mf = _mm256_castsi256_ps(m);
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: the tail chunk of tile row t lies in the tile.
            let wv = unsafe { _mm256_loadu_ps(w.add(t * row_stride + full * LANES)) };
            for (a, xr) in acc_t.iter_mut().zip(xv) {
                let sum = madd256::<F>(*a, xr, wv);
                *a = _mm256_blendv_ps(*a, sum, mf);
            }
        }
    }
    // Reduce in groups of 8 dot products: (rows r, r2) x tile rows 0..4.
    let get = |t: usize, r: usize| {
        if t < OT {
            acc[t][r]
        } else {
            _mm256_setzero_ps()
        }
    };
    let mut r = 0;
    while r < NR {
        let r2 = (r + 1).min(NR - 1);
        let v = reduce8([
            get(0, r),
            get(1, r),
            get(2, r),
            get(3, r),
            get(0, r2),
            get(1, r2),
            get(2, r2),
            get(3, r2),
        ]);
        let mut buf = [0f32; 8];
        // SAFETY: `buf` holds 8 f32.
        unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), v) };
        for (t, &val) in buf[..valid].iter().enumerate() {
            // SAFETY: row r of `out` holds `valid` writable values.
            unsafe { *out.add(r * out_stride + t) = val };
        }
        if r2 != r {
            for (t, &val) in buf[4..4 + valid].iter().enumerate() {
                // SAFETY: row r2 of `out` holds `valid` writable values.
                unsafe { *out.add(r2 * out_stride + t) = val };
            }
        }
        r += 2;
    }
}

/// `acc + x * w`: a multiply and an add (one rounding each), or with `F` one fused
/// multiply-add.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn madd256<const F: bool>(acc: __m256, x: __m256, w: __m256) -> __m256 {
    if F {
        _mm256_fmadd_ps(x, w, acc)
    } else {
        _mm256_add_ps(acc, _mm256_mul_ps(x, w))
    }
}

/// Reduces 8 accumulators with the tree of [`reduce_lanes`]; output `i` in lane `i`.
#[inline]
#[target_feature(enable = "avx2")]
fn reduce8(a: [__m256; 8]) -> __m256 {
    // Stage 1: t = lanes 0..4 + lanes 4..8: [t(p), t(q)].
    let s1 = |p: __m256, q: __m256| {
        let lo = _mm256_permute2f128_ps::<0x20>(p, q);
        let hi = _mm256_permute2f128_ps::<0x31>(p, q);
        _mm256_add_ps(lo, hi)
    };
    // Stage 2: u = (t0 + t2, t1 + t3).
    let s2 = |p: __m256, q: __m256| {
        let lo = _mm256_shuffle_ps::<0b01_00_01_00>(p, q);
        let hi = _mm256_shuffle_ps::<0b11_10_11_10>(p, q);
        _mm256_add_ps(lo, hi)
    };
    // Stage 3: u0 + u1.
    let s3 = |p: __m256, q: __m256| {
        let lo = _mm256_shuffle_ps::<0b10_00_10_00>(p, q);
        let hi = _mm256_shuffle_ps::<0b11_01_11_01>(p, q);
        _mm256_add_ps(lo, hi)
    };
    // Lanes: [a0, a2, a4, a6, a1, a3, a5, a7].
    let v = s3(
        s2(s1(a[0], a[1]), s1(a[2], a[3])),
        s2(s1(a[4], a[5]), s1(a[6], a[7])),
    );
    _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

// ---------------------------------------------------------------------------------------------
// Attention: the scores of every head (a product with the keys as weight rows) and the
// probability-weighted values.

/// Whether the attention kernels can run on these shapes: `qkv: [l, 3 heads hd]`, the scores
/// `s: [heads, l, l]`, the sums `[heads, l]`.
fn attention_shapes(qkv: usize, l: usize, heads: usize, hd: usize, s: usize, sums: usize) -> bool {
    let Some(d) = heads.checked_mul(hd) else {
        return false;
    };
    let ll = l.checked_mul(l).and_then(|v| v.checked_mul(heads));
    let need_qkv = l.checked_mul(3).and_then(|v| v.checked_mul(d));
    l > 0
        && hd > 0
        && ll.is_some_and(|n| s >= n)
        && need_qkv.is_some_and(|n| qkv >= n)
        && sums >= heads * l
}

/// `s[h, i, j] = dot(q_i, k_j)` of every head `h` (the [`kernels::dot`] order; unscaled) with
/// `isa`'s product; `false` (nothing written) when the CPU lacks it or the shapes do not fit.
///
/// [`kernels::dot`]: crate::float::kernels::dot
#[allow(clippy::too_many_arguments)]
pub(super) fn attention_scores(
    avx512: bool,
    arith: Arith,
    qkv: &[f32],
    l: usize,
    heads: usize,
    hd: usize,
    s: &mut [f32],
    tile: &mut [f32],
) -> bool {
    let supported = if avx512 { has_avx512() } else { has_avx2() };
    if !supported || !attention_shapes(qkv.len(), l, heads, hd, s.len(), heads * l) {
        return false;
    }
    // The tile must hold one key pair (AVX-512) or one key (AVX2).
    let unit = if avx512 { 2 } else { 1 } * LANES * hd.div_ceil(LANES);
    if tile.len() < unit {
        return false;
    }
    let d = heads * hd;
    let fused = arith == Arith::Fused;
    for (h, s_h) in s.chunks_exact_mut(l * l).take(heads).enumerate() {
        let keys = Src::Rows {
            data: &qkv[d + h * hd..],
            stride: 3 * d,
            rows: l,
            cols: hd,
        };
        let queries = &qkv[h * hd..];
        let done = if avx512 {
            product512(fused, keys, tile, queries, 3 * d, l, s_h, l)
        } else {
            product256(fused, keys, tile, queries, 3 * d, l, s_h, l)
        };
        // The shapes were checked above: every head runs.
        debug_assert!(done);
    }
    true
}

/// Attention outputs: `q_i (head h) = (sum_j p[h, i, j] v_j) / sums[h, i]`, the sum over `j` in
/// increasing order from `0.0`, written in place of the queries of `qkv: [l, 3 heads hd]`;
/// `false` (nothing written) when the CPU lacks AVX-512 or the shapes do not fit.
pub(super) fn attention_values_avx512(
    arith: Arith,
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    p: &[f32],
    sums: &[f32],
) -> bool {
    if !has_avx512() || !attention_shapes(qkv.len(), l, heads, hd, p.len(), sums.len()) {
        return false;
    }
    // SAFETY: AVX-512 is available and the shapes fit (checked above).
    unsafe {
        match arith {
            Arith::Separate => values512::<false>(qkv, l, heads, hd, p, sums),
            Arith::Fused => values512::<true>(qkv, l, heads, hd, p, sums),
        }
    };
    true
}

/// Query rows per pass of the AVX-512 value kernel.
const NQ512: usize = 6;
/// Query rows per pass of the AVX2 value kernel.
const NQ256: usize = 2;

/// # Safety
///
/// AVX-512 F/VL/DQ/BW must be available; the shapes fit ([`attention_shapes`]).
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
unsafe fn values512<const F: bool>(
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    p: &[f32],
    sums: &[f32],
) {
    let d = heads * hd;
    let base = qkv.as_mut_ptr();
    for h in 0..heads {
        let mut i0 = 0;
        while i0 < l {
            let nq = (l - i0).min(NQ512);
            let mut c0 = 0;
            while c0 < hd {
                let cols = (hd - c0).min(64);
                let v = ValueBlock {
                    base,
                    l,
                    stride: 3 * d,
                    v_off: 2 * d + h * hd + c0,
                    o_off: h * hd + c0,
                    cols,
                    i0,
                    p: p[(h * l + i0) * l..].as_ptr(),
                    sums: sums[h * l + i0..].as_ptr(),
                };
                // SAFETY: rows i0..i0+nq exist; columns c0..c0+cols of the value and query
                // slots of head h lie in every row (3 d values each), `p` holds rows
                // i0..i0+nq of `l` probabilities, `sums` nq values; the written query slots
                // and the read value slots are disjoint.
                unsafe {
                    match nq {
                        1 => values_block512::<F, 1>(&v),
                        2 => values_block512::<F, 2>(&v),
                        3 => values_block512::<F, 3>(&v),
                        4 => values_block512::<F, 4>(&v),
                        5 => values_block512::<F, 5>(&v),
                        _ => values_block512::<F, 6>(&v),
                    }
                };
                c0 += cols;
            }
            i0 += nq;
        }
    }
}

/// One pass of the value kernels: query rows `i0..i0 + NQ`, `cols` columns of one head.
struct ValueBlock {
    /// `qkv`'s first value.
    base: *mut f32,
    /// Positions (keys and values).
    l: usize,
    /// Values per `qkv` row (`3 D`).
    stride: usize,
    /// Offset of the first value column in a row.
    v_off: usize,
    /// Offset of the first output (query) column in a row.
    o_off: usize,
    /// Columns of this pass (up to 4 vectors).
    cols: usize,
    /// First query row.
    i0: usize,
    /// Probabilities of row `i0`; row `i0 + q` at `p + q * l`.
    p: *const f32,
    /// Softmax sums of rows `i0..`.
    sums: *const f32,
}

/// # Safety
///
/// AVX-512 F must be available; `v` describes valid memory (see [`values512`]).
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
unsafe fn values_block512<const F: bool, const NQ: usize>(v: &ValueBlock) {
    let mask = |k: usize| -> __mmask16 {
        let n = v.cols.saturating_sub(16 * k).min(16);
        ((1u32 << n) - 1) as __mmask16
    };
    let masks = [mask(0), mask(1), mask(2), mask(3)];
    let mut acc = [[_mm512_setzero_ps(); 4]; NQ];
    for j in 0..v.l {
        let mut vals = [_mm512_setzero_ps(); 4];
        for (k, val) in vals.iter_mut().enumerate() {
            // SAFETY: row j's value columns lie in `qkv`; masked-off lanes are not read.
            *val = unsafe {
                _mm512_maskz_loadu_ps(masks[k], v.base.add(j * v.stride + v.v_off + 16 * k))
            };
        }
        for (q, acc_q) in acc.iter_mut().enumerate() {
            // SAFETY: row q of the probabilities holds `l` values.
            let pq = _mm512_set1_ps(unsafe { *v.p.add(q * v.l + j) });
            for (a, val) in acc_q.iter_mut().zip(vals) {
                *a = madd512::<F>(*a, pq, val, None);
            }
        }
    }
    for (q, acc_q) in acc.iter().enumerate() {
        // SAFETY: `sums` holds NQ values.
        let sum = _mm512_set1_ps(unsafe { *v.sums.add(q) });
        for (k, a) in acc_q.iter().enumerate() {
            // SAFETY: row i0 + q's output columns lie in `qkv` (disjoint from every value
            // column); masked-off lanes are not written.
            unsafe {
                let o = v.base.add((v.i0 + q) * v.stride + v.o_off + 16 * k);
                _mm512_mask_storeu_ps(o, masks[k], _mm512_div_ps(*a, sum));
            }
        }
    }
}

/// [`attention_values_avx512`] with AVX2.
pub(super) fn attention_values_avx2(
    arith: Arith,
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    p: &[f32],
    sums: &[f32],
) -> bool {
    if !has_avx2() || !attention_shapes(qkv.len(), l, heads, hd, p.len(), sums.len()) {
        return false;
    }
    // SAFETY: AVX2 is available and the shapes fit (checked above).
    unsafe {
        match arith {
            Arith::Separate => values256::<false>(qkv, l, heads, hd, p, sums),
            Arith::Fused => values256::<true>(qkv, l, heads, hd, p, sums),
        }
    };
    true
}

/// # Safety
///
/// AVX2 and FMA must be available; the shapes fit ([`attention_shapes`]).
#[target_feature(enable = "avx2,fma")]
unsafe fn values256<const F: bool>(
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    p: &[f32],
    sums: &[f32],
) {
    let d = heads * hd;
    let base = qkv.as_mut_ptr();
    for h in 0..heads {
        let mut i0 = 0;
        while i0 < l {
            let nq = (l - i0).min(NQ256);
            let mut c0 = 0;
            while c0 < hd {
                let cols = (hd - c0).min(32);
                let v = ValueBlock {
                    base,
                    l,
                    stride: 3 * d,
                    v_off: 2 * d + h * hd + c0,
                    o_off: h * hd + c0,
                    cols,
                    i0,
                    p: p[(h * l + i0) * l..].as_ptr(),
                    sums: sums[h * l + i0..].as_ptr(),
                };
                // SAFETY: as in `values512`.
                unsafe {
                    match nq {
                        1 => values_block256::<F, 1>(&v),
                        _ => values_block256::<F, 2>(&v),
                    }
                };
                c0 += cols;
            }
            i0 += nq;
        }
    }
}

/// # Safety
///
/// AVX2 and FMA must be available; `v` describes valid memory (see [`values256`]).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn values_block256<const F: bool, const NQ: usize>(v: &ValueBlock) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = |k: usize| {
        let n = v.cols.saturating_sub(8 * k).min(8);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane)
    };
    let masks = [mask(0), mask(1), mask(2), mask(3)];
    let mut acc = [[_mm256_setzero_ps(); 4]; NQ];
    for j in 0..v.l {
        let mut vals = [_mm256_setzero_ps(); 4];
        for (k, val) in vals.iter_mut().enumerate() {
            // SAFETY: row j's value columns lie in `qkv`; masked-off lanes are not read.
            *val =
                unsafe { _mm256_maskload_ps(v.base.add(j * v.stride + v.v_off + 8 * k), masks[k]) };
        }
        for (q, acc_q) in acc.iter_mut().enumerate() {
            // SAFETY: row q of the probabilities holds `l` values.
            let pq = _mm256_set1_ps(unsafe { *v.p.add(q * v.l + j) });
            for (a, val) in acc_q.iter_mut().zip(vals) {
                *a = madd256::<F>(*a, pq, val);
            }
        }
    }
    for (q, acc_q) in acc.iter().enumerate() {
        // SAFETY: `sums` holds NQ values.
        let sum = _mm256_set1_ps(unsafe { *v.sums.add(q) });
        for (k, a) in acc_q.iter().enumerate() {
            // SAFETY: row i0 + q's output columns lie in `qkv` (disjoint from every value
            // column); masked-off lanes are not written.
            unsafe {
                let o = v.base.add((v.i0 + q) * v.stride + v.o_off + 8 * k);
                _mm256_maskstore_ps(o, masks[k], _mm256_div_ps(*a, sum));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transpose (the mlp_t mixer): copies only, exact by construction.

/// `dst: [cols, rows] = src: [rows, cols]^T` with 8 x 8 AVX2 blocks; `false` (nothing written)
/// without AVX2 or when a buffer is too short.
pub(super) fn transpose_avx2(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) -> bool {
    let Some(n) = rows.checked_mul(cols) else {
        return false;
    };
    if !has_avx2() || src.len() < n || dst.len() < n {
        return false;
    }
    // SAFETY: AVX2 is available and both buffers hold `rows * cols` values (checked above).
    unsafe { transpose256(src, rows, cols, dst) };
    true
}

/// # Safety
///
/// AVX2 must be available; `src` and `dst` hold `rows * cols` values.
#[target_feature(enable = "avx2")]
unsafe fn transpose256(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    for r in (0..r8).step_by(8) {
        for c in (0..c8).step_by(8) {
            // SAFETY: rows r..r+8 and columns c..c+8 lie in `src` ([rows, cols]); rows c..c+8
            // and columns r..r+8 in `dst` ([cols, rows]).
            unsafe {
                let m: [__m256; 8] =
                    core::array::from_fn(|i| _mm256_loadu_ps(s.add((r + i) * cols + c)));
                let t = transpose8(m);
                for (i, v) in t.into_iter().enumerate() {
                    _mm256_storeu_ps(d.add((c + i) * rows + r), v);
                }
            }
        }
    }
    // The edges (rows past r8, columns past c8), one value at a time.
    for r in 0..rows {
        let from = if r < r8 { c8 } else { 0 };
        for c in from..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// The transpose of an 8 x 8 block held as 8 row vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(m: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(m[0], m[1]);
    let t1 = _mm256_unpackhi_ps(m[0], m[1]);
    let t2 = _mm256_unpacklo_ps(m[2], m[3]);
    let t3 = _mm256_unpackhi_ps(m[2], m[3]);
    let t4 = _mm256_unpacklo_ps(m[4], m[5]);
    let t5 = _mm256_unpackhi_ps(m[4], m[5]);
    let t6 = _mm256_unpacklo_ps(m[6], m[7]);
    let t7 = _mm256_unpackhi_ps(m[6], m[7]);
    let u0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0b01_00_01_00>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0b11_10_11_10>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0b01_00_01_00>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0b11_10_11_10>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

// ---------------------------------------------------------------------------------------------
// expf, SiLU and the softmax exponentials.

/// `libm::expf` constants (FreeBSD `e_expf.c`), by their bits.
mod expf_c {
    /// ln 2, high part (`6.9314575195e-01`).
    pub(super) const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    /// ln 2, low part (`1.4286067653e-06`).
    pub(super) const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    /// 1 / ln 2 (`1.4426950216e+00`).
    pub(super) const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
    /// Polynomial coefficient (`1.6666625440e-1`).
    pub(super) const P1: f32 = f32::from_bits(0x3e2a_aa8f);
    /// Polynomial coefficient (`-2.7667332906e-3`).
    pub(super) const P2: f32 = f32::from_bits(0xbb35_5215);
    /// 2^127.
    pub(super) const TWO_127: f32 = f32::from_bits(0x7f00_0000);
    /// 2^-102.
    pub(super) const TWO_M102: f32 = f32::from_bits(0x0c80_0000);
}

/// `libm::expf` on 16 lanes, bit for bit (see the module documentation).
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq")]
fn exp512(x: __m512) -> __m512 {
    use expf_c::*;
    let bits = _mm512_castps_si512(x);
    let hx = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
    let neg = _mm512_cmplt_epi32_mask(bits, _mm512_setzero_si512());
    let gt = |v: i32| _mm512_cmpgt_epi32_mask(hx, _mm512_set1_epi32(v));
    // k = (INV_LN2 * x + (+-0.5)) as i32 above 1.5 ln2; +-1 above 0.5 ln2; else 0.
    let half = _mm512_mask_blend_ps(neg, _mm512_set1_ps(0.5), _mm512_set1_ps(-0.5));
    let kbig = _mm512_cvttps_epi32(_mm512_add_ps(
        _mm512_mul_ps(_mm512_set1_ps(INV_LN2), x),
        half,
    ));
    let kmid = _mm512_mask_blend_epi32(neg, _mm512_set1_epi32(1), _mm512_set1_epi32(-1));
    let k = _mm512_mask_blend_epi32(gt(0x3eb1_7218), _mm512_setzero_si512(), kmid);
    let k = _mm512_mask_blend_epi32(gt(0x3f85_1592), k, kbig);
    // Argument reduction: hi = x - k ln2_hi, lo = k ln2_lo, x = hi - lo (k = 0: x unchanged).
    let kf = _mm512_cvtepi32_ps(k);
    let hi = _mm512_sub_ps(x, _mm512_mul_ps(kf, _mm512_set1_ps(LN2_HI)));
    let lo = _mm512_mul_ps(kf, _mm512_set1_ps(LN2_LO));
    let xr = _mm512_sub_ps(hi, lo);
    let xx = _mm512_mul_ps(xr, xr);
    let c = _mm512_sub_ps(
        xr,
        _mm512_mul_ps(
            xx,
            _mm512_add_ps(_mm512_set1_ps(P1), _mm512_mul_ps(xx, _mm512_set1_ps(P2))),
        ),
    );
    let q = _mm512_div_ps(_mm512_mul_ps(xr, c), _mm512_sub_ps(_mm512_set1_ps(2.0), c));
    let y = _mm512_add_ps(_mm512_set1_ps(1.0), _mm512_add_ps(_mm512_sub_ps(q, lo), hi));
    // scalbnf(y, k): k > 127 pre-scales by 2^127, k < -126 by 2^-102 (no double rounding).
    let big = _mm512_cmpgt_epi32_mask(k, _mm512_set1_epi32(127));
    let small = _mm512_cmplt_epi32_mask(k, _mm512_set1_epi32(-126));
    let y = _mm512_mask_mul_ps(y, big, y, _mm512_set1_ps(TWO_127));
    let k = _mm512_mask_sub_epi32(k, big, k, _mm512_set1_epi32(127));
    let y = _mm512_mask_mul_ps(y, small, y, _mm512_set1_ps(TWO_M102));
    let k = _mm512_mask_add_epi32(k, small, k, _mm512_set1_epi32(102));
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        k,
        _mm512_set1_epi32(127),
    )));
    let mut r = _mm512_mul_ps(y, scale);
    // Special cases, in the reverse order of their tests in libm.
    let tiny = _mm512_cmple_epi32_mask(hx, _mm512_set1_epi32(0x3900_0000));
    r = _mm512_mask_add_ps(r, tiny, _mm512_set1_ps(1.0), x);
    let under = neg & gt(0x42cf_f1b4);
    r = _mm512_mask_mov_ps(r, under, _mm512_setzero_ps());
    let over = !neg & gt(0x42b1_7217);
    r = _mm512_mask_mul_ps(r, over, x, _mm512_set1_ps(TWO_127));
    let nan = gt(0x7f80_0000);
    _mm512_mask_mov_ps(r, nan, x)
}

/// `libm::expf` on 8 lanes, bit for bit (see the module documentation).
#[inline]
#[target_feature(enable = "avx2")]
fn exp256(x: __m256) -> __m256 {
    use expf_c::*;
    let bits = _mm256_castps_si256(x);
    let hx = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
    let neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), bits);
    let gt = |v: i32| _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(v));
    let sel_i = |m: __m256i, a: __m256i, b: __m256i| _mm256_blendv_epi8(a, b, m);
    let sel = |m: __m256i, a: __m256, b: __m256| _mm256_blendv_ps(a, b, _mm256_castsi256_ps(m));
    let half = sel(neg, _mm256_set1_ps(0.5), _mm256_set1_ps(-0.5));
    let kbig = _mm256_cvttps_epi32(_mm256_add_ps(
        _mm256_mul_ps(_mm256_set1_ps(INV_LN2), x),
        half,
    ));
    let kmid = sel_i(neg, _mm256_set1_epi32(1), _mm256_set1_epi32(-1));
    let k = sel_i(gt(0x3eb1_7218), _mm256_setzero_si256(), kmid);
    let k = sel_i(gt(0x3f85_1592), k, kbig);
    let kf = _mm256_cvtepi32_ps(k);
    let hi = _mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(LN2_HI)));
    let lo = _mm256_mul_ps(kf, _mm256_set1_ps(LN2_LO));
    let xr = _mm256_sub_ps(hi, lo);
    let xx = _mm256_mul_ps(xr, xr);
    let c = _mm256_sub_ps(
        xr,
        _mm256_mul_ps(
            xx,
            _mm256_add_ps(_mm256_set1_ps(P1), _mm256_mul_ps(xx, _mm256_set1_ps(P2))),
        ),
    );
    let q = _mm256_div_ps(_mm256_mul_ps(xr, c), _mm256_sub_ps(_mm256_set1_ps(2.0), c));
    let y = _mm256_add_ps(_mm256_set1_ps(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
    let big = _mm256_cmpgt_epi32(k, _mm256_set1_epi32(127));
    let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), k);
    let y = sel(big, y, _mm256_mul_ps(y, _mm256_set1_ps(TWO_127)));
    let k = sel_i(big, k, _mm256_sub_epi32(k, _mm256_set1_epi32(127)));
    let y = sel(small, y, _mm256_mul_ps(y, _mm256_set1_ps(TWO_M102)));
    let k = sel_i(small, k, _mm256_add_epi32(k, _mm256_set1_epi32(102)));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        k,
        _mm256_set1_epi32(127),
    )));
    let mut r = _mm256_mul_ps(y, scale);
    let tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3900_0001), hx);
    r = sel(tiny, r, _mm256_add_ps(_mm256_set1_ps(1.0), x));
    let under = _mm256_and_si256(neg, gt(0x42cf_f1b4));
    r = sel(under, r, _mm256_setzero_ps());
    let over = _mm256_andnot_si256(neg, gt(0x42b1_7217));
    r = sel(over, r, _mm256_mul_ps(x, _mm256_set1_ps(TWO_127)));
    sel(gt(0x7f80_0000), r, x)
}

/// `v[i] = f(v[i], other[i])` over `min(v.len(), other.len())` values, 16 lanes at a time
/// (the last partial chunk through zero-padded buffers).
#[inline]
#[target_feature(enable = "avx512f")]
fn map512(v: &mut [f32], other: &[f32], f: impl Fn(__m512, __m512) -> __m512) {
    let n = v.len().min(other.len());
    let (v, other) = (&mut v[..n], &other[..n]);
    let mut a = v.chunks_exact_mut(16);
    let mut b = other.chunks_exact(16);
    for (a, b) in (&mut a).zip(&mut b) {
        // SAFETY: `a` and `b` hold 16 f32.
        unsafe {
            let r = f(_mm512_loadu_ps(a.as_ptr()), _mm512_loadu_ps(b.as_ptr()));
            _mm512_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    let (a, b) = (a.into_remainder(), b.remainder());
    if !a.is_empty() {
        let (mut ba, mut bb) = ([0f32; 16], [0f32; 16]);
        ba[..a.len()].copy_from_slice(a);
        bb[..b.len()].copy_from_slice(b);
        // SAFETY: `ba` and `bb` hold 16 f32.
        unsafe {
            let r = f(_mm512_loadu_ps(ba.as_ptr()), _mm512_loadu_ps(bb.as_ptr()));
            _mm512_storeu_ps(ba.as_mut_ptr(), r);
        }
        let len = a.len();
        a.copy_from_slice(&ba[..len]);
    }
}

/// `v[i] = f(v[i], other[i])` over `min(v.len(), other.len())` values, 8 lanes at a time.
#[inline]
#[target_feature(enable = "avx2")]
fn map256(v: &mut [f32], other: &[f32], f: impl Fn(__m256, __m256) -> __m256) {
    let n = v.len().min(other.len());
    let (v, other) = (&mut v[..n], &other[..n]);
    let mut a = v.chunks_exact_mut(8);
    let mut b = other.chunks_exact(8);
    for (a, b) in (&mut a).zip(&mut b) {
        // SAFETY: `a` and `b` hold 8 f32.
        unsafe {
            let r = f(_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(b.as_ptr()));
            _mm256_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    let (a, b) = (a.into_remainder(), b.remainder());
    if !a.is_empty() {
        let (mut ba, mut bb) = ([0f32; 8], [0f32; 8]);
        ba[..a.len()].copy_from_slice(a);
        bb[..b.len()].copy_from_slice(b);
        // SAFETY: `ba` and `bb` hold 8 f32.
        unsafe {
            let r = f(_mm256_loadu_ps(ba.as_ptr()), _mm256_loadu_ps(bb.as_ptr()));
            _mm256_storeu_ps(ba.as_mut_ptr(), r);
        }
        let len = a.len();
        a.copy_from_slice(&ba[..len]);
    }
}

/// `gate[i] = silu(gate[i]) * up[i]` (`silu(x) = x / (1 + expf(-x))`) with AVX-512; `false`
/// without it.
pub(super) fn silu_mul_avx512(gate: &mut [f32], up: &[f32]) -> bool {
    if !has_avx512() {
        return false;
    }
    // SAFETY: AVX-512 F/VL/DQ/BW are available (checked above).
    unsafe { silu_mul512(gate, up) };
    true
}

#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
fn silu_mul512(gate: &mut [f32], up: &[f32]) {
    map512(gate, up, |g, u| {
        let neg = _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(g),
            _mm512_set1_epi32(i32::MIN),
        ));
        let s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0), exp512(neg)));
        _mm512_mul_ps(s, u)
    });
}

/// `gate[i] = silu(gate[i]) * up[i]` with AVX2; `false` without it.
pub(super) fn silu_mul_avx2(gate: &mut [f32], up: &[f32]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: AVX2 is available (checked above).
    unsafe { silu_mul256(gate, up) };
    true
}

#[target_feature(enable = "avx2")]
fn silu_mul256(gate: &mut [f32], up: &[f32]) {
    map256(gate, up, |g, u| {
        let neg = _mm256_xor_ps(g, _mm256_set1_ps(-0.0));
        let s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), exp256(neg)));
        _mm256_mul_ps(s, u)
    });
}

/// `s[j] = expf(s[j] - max)` with AVX-512; `false` without it.
pub(super) fn exp_sub_avx512(s: &mut [f32], max: f32) -> bool {
    if !has_avx512() {
        return false;
    }
    // SAFETY: AVX-512 F/VL/DQ/BW are available (checked above).
    unsafe { exp_sub512(s, max) };
    true
}

#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
fn exp_sub512(s: &mut [f32], max: f32) {
    exp_map512(s, _mm512_set1_ps(max));
}

/// `v[i] = expf(v[i] - m)`, 16 lanes at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
fn exp_map512(v: &mut [f32], m: __m512) {
    let mut a = v.chunks_exact_mut(16);
    for a in &mut a {
        // SAFETY: `a` holds 16 f32.
        unsafe {
            let r = exp512(_mm512_sub_ps(_mm512_loadu_ps(a.as_ptr()), m));
            _mm512_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    let a = a.into_remainder();
    if !a.is_empty() {
        let mut buf = [0f32; 16];
        buf[..a.len()].copy_from_slice(a);
        // SAFETY: `buf` holds 16 f32.
        unsafe {
            let r = exp512(_mm512_sub_ps(_mm512_loadu_ps(buf.as_ptr()), m));
            _mm512_storeu_ps(buf.as_mut_ptr(), r);
        }
        let len = a.len();
        a.copy_from_slice(&buf[..len]);
    }
}

/// `s[j] = expf(s[j] - max)` with AVX2; `false` without it.
pub(super) fn exp_sub_avx2(s: &mut [f32], max: f32) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: AVX2 is available (checked above).
    unsafe { exp_sub256(s, max) };
    true
}

#[target_feature(enable = "avx2")]
fn exp_sub256(s: &mut [f32], max: f32) {
    let m = _mm256_set1_ps(max);
    let mut a = s.chunks_exact_mut(8);
    for a in &mut a {
        // SAFETY: `a` holds 8 f32.
        unsafe {
            let r = exp256(_mm256_sub_ps(_mm256_loadu_ps(a.as_ptr()), m));
            _mm256_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    let a = a.into_remainder();
    if !a.is_empty() {
        let mut buf = [0f32; 8];
        buf[..a.len()].copy_from_slice(a);
        // SAFETY: `buf` holds 8 f32.
        unsafe {
            let r = exp256(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), m));
            _mm256_storeu_ps(buf.as_mut_ptr(), r);
        }
        let len = a.len();
        a.copy_from_slice(&buf[..len]);
    }
}
