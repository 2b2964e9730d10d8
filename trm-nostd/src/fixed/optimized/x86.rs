//! x86_64 AVX2 and AVX-512 (F + BW) kernels.
//!
//! Each public function checks that the CPU supports its instructions and returns `None`
//! otherwise, so it is safe to call anywhere; the `unsafe` calls inside are justified by that
//! check.
//!
//! # Exactness
//!
//! `dot_w8_a16`: weights are sign-extended to 16 bits (`vpmovsxbw`), then `vpmaddwd` forms
//! `w0 a0 + w1 a1` per 32-bit lane, `|.| <= 2 * 2^22 = 2^23`: exact. Lanes accumulate in `i32`
//! for at most [`BLOCK`] elements (AVX2: 128 additions per lane, `<= 2^30`; AVX-512: 64,
//! `<= 2^29`), then are widened to `i64`. No partial sum overflows, so the total equals the
//! reference's exactly.
//!
//! `dot_a16_a16`: `vpmaddwd` of two int16 vectors wraps in exactly one case: both pairs are
//! `(-32768) * (-32768)`, whose sum `2^31` comes out as `-2^31`. The true pair sum `t` always
//! lies in `[-2^31 + 2^16, 2^31]`, so `t - 2^16` fits `i32`: the kernel subtracts `2^16`
//! (wrapping), which gives `t - 2^16` exactly, sign-extends to `i64`, accumulates, and adds
//! `2^16` per pair back at the end.

// The AVX-512 intrinsics are stable since Rust 1.89 and safe intrinsic calls inside
// `#[target_feature]` functions since 1.86: the workspace's rust-version is 1.89 for this module.

use super::kernels;
use core::arch::x86_64::*;

/// Elements per `i32` accumulation block of `dot_w8_a16` (see the module's exactness notes).
const BLOCK: usize = 2048;

/// Whether AVX2 is available (compile time, or run time with `std`; the standard library
/// caches its CPUID reading).
#[inline]
pub(super) fn has_avx2() -> bool {
    #[cfg(target_feature = "avx2")]
    {
        true
    }
    #[cfg(all(not(target_feature = "avx2"), feature = "std"))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(all(not(target_feature = "avx2"), not(feature = "std")))]
    {
        false
    }
}

/// Whether AVX-512 F and BW (and AVX2) are available.
#[inline]
pub(super) fn has_avx512() -> bool {
    #[cfg(all(target_feature = "avx512f", target_feature = "avx512bw"))]
    {
        has_avx2()
    }
    #[cfg(all(
        not(all(target_feature = "avx512f", target_feature = "avx512bw")),
        feature = "std"
    ))]
    {
        has_avx2()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(all(
        not(all(target_feature = "avx512f", target_feature = "avx512bw")),
        not(feature = "std")
    ))]
    {
        false
    }
}

/// AVX2 `dot_w8_a16`, `None` without AVX2.
#[inline]
pub(super) fn dot_w8_a16_avx2(w: &[u8], a: &[i16]) -> Option<i64> {
    if !has_avx2() {
        return None;
    }
    // SAFETY: AVX2 is available (checked above).
    Some(unsafe { w8_a16_avx2(w, a) })
}

/// AVX2 `dot_a16_a16`, `None` without AVX2.
#[inline]
pub(super) fn dot_a16_a16_avx2(a: &[i16], b: &[i16]) -> Option<i64> {
    if !has_avx2() {
        return None;
    }
    // SAFETY: AVX2 is available (checked above).
    Some(unsafe { a16_a16_avx2(a, b) })
}

/// AVX-512 `dot_w8_a16`, `None` without AVX-512 F + BW.
#[inline]
pub(super) fn dot_w8_a16_avx512(w: &[u8], a: &[i16]) -> Option<i64> {
    if !has_avx512() {
        return None;
    }
    // SAFETY: AVX-512 F + BW and AVX2 are available (checked above).
    Some(unsafe { w8_a16_avx512(w, a) })
}

/// AVX-512 `dot_a16_a16`, `None` without AVX-512 F + BW.
#[inline]
pub(super) fn dot_a16_a16_avx512(a: &[i16], b: &[i16]) -> Option<i64> {
    if !has_avx512() {
        return None;
    }
    // SAFETY: AVX-512 F + BW and AVX2 are available (checked above).
    Some(unsafe { a16_a16_avx512(a, b) })
}

/// Sum of the four `i64` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_epi64(v: __m256i) -> i64 {
    _mm256_extract_epi64::<0>(v)
        + _mm256_extract_epi64::<1>(v)
        + _mm256_extract_epi64::<2>(v)
        + _mm256_extract_epi64::<3>(v)
}

/// The eight `i32` lanes of `v`, sign-extended and added to the four `i64` lanes of `acc`.
#[inline]
#[target_feature(enable = "avx2")]
fn widen_add(acc: __m256i, v: __m256i) -> __m256i {
    let lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v));
    let hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(v));
    _mm256_add_epi64(acc, _mm256_add_epi64(lo, hi))
}

#[target_feature(enable = "avx2")]
fn w8_a16_avx2(w: &[u8], a: &[i16]) -> i64 {
    let n = w.len().min(a.len());
    let (w, a) = (&w[..n], &a[..n]);
    let mut acc64 = _mm256_setzero_si256();
    let mut tail = 0i64;
    for (wb, ab) in w.chunks(BLOCK).zip(a.chunks(BLOCK)) {
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let mut wc = wb.chunks_exact(32);
        let mut ac = ab.chunks_exact(32);
        for (w32, a32) in (&mut wc).zip(&mut ac) {
            // SAFETY: `w32` holds 32 bytes and `a32` 32 i16 (64 bytes): the unaligned loads
            // read 16 + 16 bytes and 32 + 32 bytes inside them.
            let (w0, w1, a0, a1) = unsafe {
                (
                    _mm_loadu_si128(w32.as_ptr().cast()),
                    _mm_loadu_si128(w32.as_ptr().add(16).cast()),
                    _mm256_loadu_si256(a32.as_ptr().cast()),
                    _mm256_loadu_si256(a32.as_ptr().add(16).cast()),
                )
            };
            let p0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(w0), a0);
            let p1 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(w1), a1);
            acc0 = _mm256_add_epi32(acc0, p0);
            acc1 = _mm256_add_epi32(acc1, p1);
        }
        let (wr, ar) = (wc.remainder(), ac.remainder());
        let mut wr16 = wr.chunks_exact(16);
        let mut ar16 = ar.chunks_exact(16);
        for (w16, a16) in (&mut wr16).zip(&mut ar16) {
            // SAFETY: `w16` holds 16 bytes and `a16` 16 i16 (32 bytes).
            let (w0, a0) = unsafe {
                (
                    _mm_loadu_si128(w16.as_ptr().cast()),
                    _mm256_loadu_si256(a16.as_ptr().cast()),
                )
            };
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(w0), a0));
        }
        acc64 = widen_add(acc64, acc0);
        acc64 = widen_add(acc64, acc1);
        tail += kernels::dot_w8_a16(wr16.remainder(), ar16.remainder());
    }
    hsum_epi64(acc64) + tail
}

/// `vpmaddwd` of `a` and `b` with the wrap of `(-32768)^2 + (-32768)^2` undone: `t - 2^16`
/// per lane, exact (see the module documentation), widened into `acc`.
#[inline]
#[target_feature(enable = "avx2")]
fn madd_a16_biased(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let t = _mm256_sub_epi32(_mm256_madd_epi16(a, b), _mm256_set1_epi32(1 << 16));
    widen_add(acc, t)
}

#[target_feature(enable = "avx2")]
fn a16_a16_avx2(a: &[i16], b: &[i16]) -> i64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = _mm256_setzero_si256();
    let mut ac = a.chunks_exact(16);
    let mut bc = b.chunks_exact(16);
    let mut pairs = 0i64;
    for (x, y) in (&mut ac).zip(&mut bc) {
        // SAFETY: `x` and `y` hold 16 i16 (32 bytes) each.
        let (vx, vy) = unsafe {
            (
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(y.as_ptr().cast()),
            )
        };
        acc = madd_a16_biased(acc, vx, vy);
        pairs += 8;
    }
    hsum_epi64(acc) + (pairs << 16) + kernels::dot_a16_a16(ac.remainder(), bc.remainder())
}

#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn w8_a16_avx512(w: &[u8], a: &[i16]) -> i64 {
    let n = w.len().min(a.len());
    let (w, a) = (&w[..n], &a[..n]);
    let mut acc64 = _mm512_setzero_si512();
    let mut tail = 0i64;
    for (wb, ab) in w.chunks(BLOCK).zip(a.chunks(BLOCK)) {
        let mut acc = _mm512_setzero_si512();
        let mut wc = wb.chunks_exact(32);
        let mut ac = ab.chunks_exact(32);
        for (w32, a32) in (&mut wc).zip(&mut ac) {
            // SAFETY: `w32` holds 32 bytes and `a32` 32 i16 (64 bytes).
            let (w0, a0) = unsafe {
                (
                    _mm256_loadu_si256(w32.as_ptr().cast()),
                    _mm512_loadu_si512(a32.as_ptr().cast()),
                )
            };
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_cvtepi8_epi16(w0), a0));
        }
        let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc));
        let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(acc));
        acc64 = _mm512_add_epi64(acc64, _mm512_add_epi64(lo, hi));
        // Fewer than 32 left: the AVX2 kernel (16 at a time, then the reference).
        tail += w8_a16_avx2(wc.remainder(), ac.remainder());
    }
    _mm512_reduce_add_epi64(acc64) + tail
}

#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn a16_a16_avx512(a: &[i16], b: &[i16]) -> i64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = _mm512_setzero_si512();
    let bias = _mm512_set1_epi32(1 << 16);
    let mut ac = a.chunks_exact(32);
    let mut bc = b.chunks_exact(32);
    let mut pairs = 0i64;
    for (x, y) in (&mut ac).zip(&mut bc) {
        // SAFETY: `x` and `y` hold 32 i16 (64 bytes) each.
        let (vx, vy) = unsafe {
            (
                _mm512_loadu_si512(x.as_ptr().cast()),
                _mm512_loadu_si512(y.as_ptr().cast()),
            )
        };
        let t = _mm512_sub_epi32(_mm512_madd_epi16(vx, vy), bias);
        let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(t));
        let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(t));
        acc = _mm512_add_epi64(acc, _mm512_add_epi64(lo, hi));
        pairs += 16;
    }
    _mm512_reduce_add_epi64(acc) + (pairs << 16) + a16_a16_avx2(ac.remainder(), bc.remainder())
}
