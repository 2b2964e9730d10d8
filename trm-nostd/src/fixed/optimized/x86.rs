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

/// Whether AVX-512 F, BW and VNNI (and AVX2) are available.
#[inline]
pub(super) fn has_avx512_vnni() -> bool {
    #[cfg(target_feature = "avx512vnni")]
    {
        has_avx512()
    }
    #[cfg(all(not(target_feature = "avx512vnni"), feature = "std"))]
    {
        has_avx512() && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(all(not(target_feature = "avx512vnni"), not(feature = "std")))]
    {
        false
    }
}

/// Whether AMX-TILE and AMX-INT8 are usable (with AVX-512 VNNI): the CPU has them (CPUID
/// leaf 7, EDX bits 24 and 25) and Linux granted this process the tile data state
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked once). Without `std` or
/// outside Linux: never (the permission needs the operating system).
pub(super) fn has_amx() -> bool {
    #[cfg(all(feature = "std", target_os = "linux"))]
    {
        use core::sync::atomic::{AtomicU8, Ordering};
        /// 0: not asked yet, 1: usable, 2: not usable.
        static AMX: AtomicU8 = AtomicU8::new(0);
        match AMX.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let ok = has_avx512_vnni()
                    && std::is_x86_feature_detected!("avx512vl")
                    && amx_cpuid()
                    && amx_permission();
                AMX.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                ok
            }
        }
    }
    #[cfg(not(all(feature = "std", target_os = "linux")))]
    {
        false
    }
}

/// CPUID leaf 7 sub-leaf 0: EDX bit 24 (AMX-TILE) and bit 25 (AMX-INT8).
#[cfg(all(feature = "std", target_os = "linux"))]
fn amx_cpuid() -> bool {
    // `cpuid` exists on every x86_64 CPU (a safe intrinsic); leaf 7 is read only where the
    // maximum leaf (leaf 0's EAX) reaches it.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023,
/// XFEATURE_XTILEDATA = 18)`, system call 158); `true` when granted.
#[cfg(all(feature = "std", target_os = "linux"))]
fn amx_permission() -> bool {
    let ret: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes this process's
    // permitted extended states; the kernel clobbers rcx and r11 (declared), nothing else.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
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

/// The SwiGLU SiLU of one row with AVX-512 ([`super::activation::swiglu_silu`]): `gate[i] <-
/// silu(gate[i])`, or with `prod` `gate[i] <- sat16(prod(silu(gate[i]) * up[i]))`, 16 values
/// per step. `table` holds the `2^(16 - step) + 1` little-endian knots (checked by the
/// caller, as `prod`'s shift `<= 62`); returns `false`, changing nothing, without AVX-512.
///
/// Exactness: [`kernels::silu_spaced`] in 32-bit lanes: `u = q + 2^15 < 2^16`, the knots
/// `T[k]`, `T[k + 1]` from one 32-bit gather at byte `2k` (`k + 1 <= 2^(16 - step)`, inside the
/// table), `(T[k+1] - T[k]) f` with `|T[k+1] - T[k]| < 2^16` and `f < 2^step <= 2^8`: `< 2^24`,
/// the rounding term added, an arithmetic shift (the rule's floor), then the int16 clamp.
/// The product `s * up` (`|.| <= 2^30`) is requantized as in the matrix products' epilogue: in
/// `i64` lanes, `|s up mult| < 2^61`, plus `2^(shift-1) <= 2^61`, shifted: exact.
pub(super) fn silu_avx512(
    table: &[u8],
    step: u32,
    gate: &mut [i16],
    up: &[i16],
    prod: Option<kernels::Requant>,
) -> bool {
    if !has_avx512() {
        return false;
    }
    // SAFETY: AVX-512 F + BW are available; the caller checked the table's length.
    unsafe { silu_avx512_impl(table, step, gate, up, prod) };
    true
}

/// See [`silu_avx512`].
///
/// # Safety
///
/// AVX-512 F + BW are available; `table` holds `2^(16 - step) + 1` entries (2 bytes each),
/// `4 <= step <= 8`; `prod`'s shift is at most 62.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn silu_avx512_impl(
    table: &[u8],
    step: u32,
    gate: &mut [i16],
    up: &[i16],
    prod: Option<kernels::Requant>,
) {
    let n = match prod {
        Some(_) => gate.len().min(up.len()),
        None => gate.len(),
    };
    let count = _mm_cvtsi32_si128(step as i32);
    let bias = _mm512_set1_epi32(1 << 15);
    let mask = _mm512_set1_epi32((1 << step) - 1);
    let half = _mm512_set1_epi32(1 << (step - 1));
    let (lo16, hi16) = (_mm512_set1_epi32(-32768), _mm512_set1_epi32(32767));
    let (mult, shift) = match prod {
        Some(rq) => (rq.mult as i64, rq.shift as i64),
        None => (0, 0),
    };
    let mult_v = _mm512_set1_epi64(mult);
    let shift_v = _mm512_set1_epi64(shift);
    let one = _mm512_set1_epi64(1);
    let round_v = _mm512_sllv_epi64(one, _mm512_sub_epi64(shift_v, one));
    let requant = |x: __m256i| -> __m128i {
        let x = _mm512_cvtepi32_epi64(x);
        let p = _mm512_add_epi64(_mm512_mul_epi32(x, mult_v), round_v);
        _mm512_cvtsepi64_epi16(_mm512_srav_epi64(p, shift_v))
    };
    let base = table.as_ptr();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: gate[i..i + 16] exists (16 i16, 32 bytes).
        let g = _mm512_cvtepi16_epi32(unsafe { _mm256_loadu_si256(gate.as_ptr().add(i).cast()) });
        let u = _mm512_add_epi32(g, bias);
        let k = _mm512_srl_epi32(u, count);
        let f = _mm512_and_si512(u, mask);
        // SAFETY: every k <= 2^(16 - step) - 1, so bytes 2k..2k + 4 lie inside the table of
        // 2^(16 - step) + 1 entries.
        let knots = unsafe { _mm512_i32gather_epi32::<2>(k, base.cast()) };
        let a = _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(knots));
        let c = _mm512_srai_epi32::<16>(knots);
        let d = _mm512_mullo_epi32(_mm512_sub_epi32(c, a), f);
        let r = _mm512_sra_epi32(_mm512_add_epi32(d, half), count);
        let s = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(a, r), lo16), hi16);
        let out = if prod.is_some() {
            // SAFETY: up[i..i + 16] exists.
            let uv =
                _mm512_cvtepi16_epi32(unsafe { _mm256_loadu_si256(up.as_ptr().add(i).cast()) });
            let x = _mm512_mullo_epi32(s, uv);
            let lo = requant(_mm512_castsi512_si256(x));
            let hi = requant(_mm512_extracti64x4_epi64::<1>(x));
            _mm256_set_m128i(hi, lo)
        } else {
            _mm512_cvtepi32_epi16(s)
        };
        // SAFETY: gate[i..i + 16] exists.
        unsafe { _mm256_storeu_si256(gate.as_mut_ptr().add(i).cast(), out) };
        i += 16;
    }
    let t = kernels::I16Table(table);
    for j in i..n {
        let s = kernels::silu_spaced(t, step, gate[j]);
        gate[j] = match prod {
            Some(rq) => kernels::sat16(rq.apply(s as i64 * up[j] as i64)),
            None => s,
        };
    }
}

/// [`kernels::rms_norm`] with AVX-512 ([`super::activation::rms_norm`]); `false`, changing
/// nothing, without AVX-512 or for a row longer than `2^16` values.
///
/// The sum of squares is exact in `i64` lanes (clamped values `< 2^23`, squares `< 2^46`, at
/// most `2^16` of them). The division of the reference, `q = floor((2 num + d) / 2d)` with
/// `num = NORM_ONE X`, `X = clamp(v) << e` (`|X| < 2^31`, see
/// [`super::activation::rms_norm_fast`]) and `d = r << e'` (`r` in `[2^30, 2^31)`), becomes a
/// multiplication: with `R = floor(NORM_ONE 2^46 / d) < 2^31`, the estimate `(X R + 2^45) >> 46`
/// is `floor(NORM_ONE X / d + 1/2 - X delta)` with `0 <= delta < 2^-46`, so `|X delta| <
/// 2^-15` and the estimate is `q - 1`, `q` or `q + 1`; the exact remainder `(2 NORM_ONE X + d) -
/// est 2 r 2^e'` (`< 2^51` in magnitude) then moves it to `q`. All in `i64` lanes, exact.
pub(super) fn rms_norm_avx512(v: &[i32], eps_term: u64, out: &mut [i16]) -> bool {
    if !has_avx512() || v.len() > 1 << 16 {
        return false;
    }
    // SAFETY: AVX-512 F + BW are available.
    unsafe { rms_norm_avx512_impl(v, eps_term, out) };
    true
}

/// See [`rms_norm_avx512`].
///
/// # Safety
///
/// AVX-512 F + BW are available; `v.len() <= 2^16`.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn rms_norm_avx512_impl(v: &[i32], eps_term: u64, out: &mut [i16]) {
    use kernels::{EPS_TERM_MAX, NORM_ONE, RESIDUAL_MAX};
    let (cl_lo, cl_hi) = (
        _mm512_set1_epi32(-RESIDUAL_MAX),
        _mm512_set1_epi32(RESIDUAL_MAX),
    );
    let clamp = |x: __m512i| _mm512_min_epi32(_mm512_max_epi32(x, cl_lo), cl_hi);
    let n = v.len();
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: v[i..i + 16] exists.
        let x = clamp(unsafe { _mm512_loadu_si512(v.as_ptr().add(i).cast()) });
        let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(x));
        let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(x));
        acc = _mm512_add_epi64(acc, _mm512_mul_epi32(lo, lo));
        acc = _mm512_add_epi64(acc, _mm512_mul_epi32(hi, hi));
        i += 16;
    }
    let mut s = _mm512_reduce_add_epi64(acc) as u64;
    for &x in &v[i..] {
        let x = x.clamp(-RESIDUAL_MAX, RESIDUAL_MAX) as i64;
        s += (x * x) as u64;
    }
    let t = s.saturating_add(eps_term.min(EPS_TERM_MAX));
    if t == 0 {
        out.fill(0);
        return;
    }
    let lz = t.leading_zeros();
    let (tn, e_left, e_right) = if lz >= 2 {
        let e = (lz - 2) / 2;
        (t << (2 * e), e, 0)
    } else {
        (t >> 2, 0, 1)
    };
    let r = tn.isqrt() as i64;
    let d = r << e_right;
    let recip = ((NORM_ONE as u128) << 46) / d as u128;
    let m = n.min(out.len());
    let (rv, dv, recv) = (
        _mm512_set1_epi64(r),
        _mm512_set1_epi64(d),
        _mm512_set1_epi64(recip as i64),
    );
    let d2 = _mm512_set1_epi64(2 * d);
    let half = _mm512_set1_epi64(1 << 45);
    let norm2 = _mm512_set1_epi64(2 * NORM_ONE);
    let e_count = _mm_cvtsi32_si128(e_left as i32);
    let qd_count = _mm_cvtsi32_si128(1 + e_right);
    let one = _mm512_set1_epi64(1);
    // The quotient of 8 values `X` (i64 lanes).
    let quotient = |x: __m512i| -> __m128i {
        let est = _mm512_srai_epi64::<46>(_mm512_add_epi64(_mm512_mul_epi32(x, recv), half));
        let num2 = _mm512_add_epi64(_mm512_mul_epi32(x, norm2), dv);
        let qd = _mm512_sll_epi64(_mm512_mul_epi32(est, rv), qd_count);
        let rem = _mm512_sub_epi64(num2, qd);
        let neg = _mm512_cmplt_epi64_mask(rem, _mm512_setzero_si512());
        let over = _mm512_cmpge_epi64_mask(rem, d2);
        let est = _mm512_mask_sub_epi64(est, neg, est, one);
        let est = _mm512_mask_add_epi64(est, over, est, one);
        _mm512_cvtsepi64_epi16(est)
    };
    let mut i = 0;
    while i + 16 <= m {
        // SAFETY: v[i..i + 16] exists.
        let x = clamp(unsafe { _mm512_loadu_si512(v.as_ptr().add(i).cast()) });
        let x = _mm512_sll_epi32(x, e_count);
        let lo = quotient(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(x)));
        let hi = quotient(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(x)));
        // SAFETY: out[i..i + 16] exists (16 i16).
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(i).cast(), _mm256_set_m128i(hi, lo)) };
        i += 16;
    }
    for j in i..m {
        let num = (NORM_ONE * v[j].clamp(-RESIDUAL_MAX, RESIDUAL_MAX) as i64) << e_left;
        out[j] = kernels::sat16(kernels::div_round(num, d));
    }
}

/// The numerators of [`super::attention::attention_row`] in `i64` lanes (`vpmuldq`: the low,
/// signed 32 bits of each lane, `p[j] <= 2^30` and the sign-extended value) with AVX-512 or
/// AVX2, then the exact division per output; `false`, changing nothing, when `isa` is neither
/// or not supported here. The caller has checked that every value row lies in `v`.
pub(super) fn attention_row_simd(
    isa: super::Isa,
    p: &[i32],
    div: &super::attention::DivRound,
    v: &[i16],
    stride: usize,
    out: &mut [i16],
) -> bool {
    use super::Isa;
    let hd = out.len();
    if !p.is_empty() && (p.len() - 1) * stride + hd > v.len() {
        return false;
    }
    match isa {
        // SAFETY: AVX-512 F + BW are available (checked); the rows lie in `v` (checked).
        Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx if has_avx512() => unsafe {
            attention_row_avx512(p, div, v, stride, out)
        },
        // SAFETY: AVX2 is available (checked); the rows lie in `v` (checked).
        Isa::Avx2 if has_avx2() => unsafe { attention_row_avx2(p, div, v, stride, out) },
        _ => return false,
    }
    true
}

/// `out[c] = sat16(div(sum_j p[j] v[j stride + c]))` for the columns `c0..hd` (scalar).
#[inline]
fn attention_columns(
    p: &[i32],
    div: &super::attention::DivRound,
    v: &[i16],
    stride: usize,
    c0: usize,
    out: &mut [i16],
) {
    for c in c0..out.len() {
        let mut num = 0i64;
        for (j, &pj) in p.iter().enumerate() {
            num += pj as i64 * v[j * stride + c] as i64;
        }
        out[c] = kernels::sat16(div.apply(num));
    }
}

/// Defines one implementation of [`attention_row_simd`]: four vectors of `$lanes` `i64`
/// numerators per pass over the rows (`$load` reads `$lanes` int16 values, sign-extended by
/// `$widen`; `vpmuldq` multiplies their low, signed 32 bits by `p[j]`), then the exact division
/// per output; the columns past the last whole vector one at a time.
macro_rules! attention_row_impl {
    (
        $(#[$doc:meta])*
        $name:ident, $feat:literal, $v:ty, $lanes:literal,
        zero: $zero:ident, splat: $splat:ident, load: $load:ident, widen: $widen:ident,
        mul: $mul:ident, add: $add:ident, store: $store:ident
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The CPU has the target features; `(p.len() - 1) * stride + out.len() <= v.len()` (or
        /// `p` is empty).
        #[target_feature(enable = $feat)]
        unsafe fn $name(
            p: &[i32],
            div: &super::attention::DivRound,
            v: &[i16],
            stride: usize,
            out: &mut [i16],
        ) {
            const LANES: usize = $lanes;
            let hd = out.len();
            let mut c0 = 0;
            let mut num = [0i64; 4 * LANES];
            while c0 + LANES <= hd {
                let nv = ((hd - c0) / LANES).min(4);
                let mut acc = [$zero(); 4];
                for (j, &pj) in p.iter().enumerate() {
                    let pv = $splat(pj as i64);
                    // SAFETY: columns c0..c0 + LANES nv of row j lie in `v` (the contract).
                    let row = unsafe { v.as_ptr().add(j * stride + c0) };
                    for (k, a) in acc.iter_mut().enumerate().take(nv) {
                        // SAFETY: LANES values of row j at column c0 + LANES k (in the row).
                        let x = $widen(unsafe { $load(row.add(LANES * k).cast()) });
                        *a = $add(*a, $mul(x, pv));
                    }
                }
                for (k, a) in acc.iter().enumerate().take(nv) {
                    // SAFETY: `num` holds 4 LANES i64, k < 4.
                    unsafe { $store(num.as_mut_ptr().add(LANES * k).cast(), *a) };
                }
                for (o, &n) in out[c0..c0 + LANES * nv].iter_mut().zip(&num) {
                    *o = kernels::sat16(div.apply(n));
                }
                c0 += LANES * nv;
            }
            attention_columns(p, div, v, stride, c0, out);
        }
    };
}

attention_row_impl!(
    /// See [`attention_row_simd`]: 32 columns (four vectors of 8 `i64`) per pass, AVX-512.
    attention_row_avx512, "avx2,avx512f,avx512bw", __m512i, 8,
    zero: _mm512_setzero_si512, splat: _mm512_set1_epi64, load: _mm_loadu_si128,
    widen: _mm512_cvtepi16_epi64, mul: _mm512_mul_epi32, add: _mm512_add_epi64,
    store: _mm512_storeu_si512
);

attention_row_impl!(
    /// See [`attention_row_simd`]: 16 columns (four vectors of 4 `i64`) per pass, AVX2.
    attention_row_avx2, "avx2", __m256i, 4,
    zero: _mm256_setzero_si256, splat: _mm256_set1_epi64x, load: _mm_loadl_epi64,
    widen: _mm256_cvtepi16_epi64, mul: _mm256_mul_epi32, add: _mm256_add_epi64,
    store: _mm256_storeu_si256
);

/// One query row of the blocked attention ([`super::attention::softmax_planes`]) with
/// AVX-512: the scores `sat32(rq.apply(sums[j]))`, the integer softmax of
/// [`kernels::softmax_q30`] into `scores`, and its two int16 planes `ph = p >> 16`, `pl = (p &
/// 0xFFFF) - 2^15`; returns `sum_j p_j`, or `None` (nothing written) without AVX-512.
///
/// The same integers as the scalar code: the requant takes the reference's 64-bit path per
/// group of 8 sums within `i32` (`vpmuldq`, a rounding add, an arithmetic shift, the `i32`
/// saturation of `vpmovsqd`), any other group the scalar [`kernels::Requant::apply`]. The
/// softmax: `max - s` is exact as an unsigned 32-bit difference (`max >= s`), clamped to
/// `EXP_ARG_MAX = 2^21`; the knots are gathered from [`kernels::EXP2_NEG_Q30`]; `(a - b) f <
/// 2^30` and the interpolated value `v <= 2^30` stay in 32-bit lanes; `round_shift(v, k)` is
/// `(v + 2^(k - 1)) >> k` in unsigned lanes (`v + 2^31 < 2^32`), 0 for `k = 32` (a shift by 32
/// gives 0), `v` for `k = 0`.
pub(super) fn softmax_planes_avx512(
    sums: &[i64],
    rq: kernels::Requant,
    scores: &mut [i32],
    ph: &mut [i16],
    pl: &mut [i16],
) -> Option<i64> {
    let n = sums.len();
    if !has_avx512() || scores.len() < n || ph.len() < n || pl.len() < n {
        return None;
    }
    // SAFETY: AVX-512 F + BW are available; the slices hold `n` values (checked).
    Some(unsafe { softmax_planes_impl(sums, rq, &mut scores[..n], &mut ph[..n], &mut pl[..n]) })
}

/// See [`softmax_planes_avx512`].
///
/// # Safety
///
/// AVX-512 F + BW are available; `scores`, `ph`, `pl` hold `sums.len()` values.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn softmax_planes_impl(
    sums: &[i64],
    rq: kernels::Requant,
    scores: &mut [i32],
    ph: &mut [i16],
    pl: &mut [i16],
) -> i64 {
    use kernels::{EXP_ARG_MAX, EXP_FRAC_BITS, EXP2_NEG_Q30};
    let n = sums.len();
    // The scores.
    let s = rq.shift.min(kernels::MAX_SHIFT);
    let fast = rq.mult >= 0 && s <= 62;
    let mult = _mm512_set1_epi64(rq.mult as i64);
    let round = _mm512_set1_epi64(if s == 0 || !fast { 0 } else { 1i64 << (s - 1) });
    let shift = _mm512_set1_epi64(s as i64);
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: sums[j..j + 8] exists.
        let acc = unsafe { _mm512_loadu_si512(sums[j..].as_ptr().cast()) };
        let fits =
            _mm512_cmpeq_epi64_mask(acc, _mm512_srai_epi64::<32>(_mm512_slli_epi64::<32>(acc)));
        if fast && fits == 0xff {
            let r = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(acc, mult), round), shift);
            // SAFETY: scores[j..j + 8] exists (8 i32).
            unsafe {
                _mm256_storeu_si256(scores[j..].as_mut_ptr().cast(), _mm512_cvtsepi64_epi32(r))
            };
        } else {
            for i in j..j + 8 {
                scores[i] = kernels::sat32(rq.apply(sums[i]));
            }
        }
        j += 8;
    }
    for i in j..n {
        scores[i] = kernels::sat32(rq.apply(sums[i]));
    }
    let max = scores.iter().copied().max().unwrap_or(0);
    // The softmax numerators and the planes.
    let maxv = _mm512_set1_epi32(max);
    let cap = _mm512_set1_epi32(EXP_ARG_MAX as i32);
    let one = _mm512_set1_epi32(1);
    let mut total = _mm512_setzero_si512();
    let mut j = 0;
    while j + 16 <= n {
        // SAFETY: scores[j..j + 16] exists.
        let x = unsafe { _mm512_loadu_si512(scores[j..].as_ptr().cast()) };
        let u = _mm512_min_epu32(_mm512_sub_epi32(maxv, x), cap);
        let k = _mm512_srli_epi32::<{ EXP_FRAC_BITS }>(u);
        let idx = _mm512_and_si512(_mm512_srli_epi32::<8>(u), _mm512_set1_epi32(255));
        let f = _mm512_and_si512(u, _mm512_set1_epi32(255));
        // SAFETY: idx and idx + 1 are in 0..=256, entries of the 257-entry table.
        let (a, b) = unsafe {
            let t = EXP2_NEG_Q30.as_ptr().cast::<i32>();
            (
                _mm512_i32gather_epi32::<4>(idx, t),
                _mm512_i32gather_epi32::<4>(_mm512_add_epi32(idx, one), t),
            )
        };
        let d = _mm512_srai_epi32::<8>(_mm512_add_epi32(
            _mm512_mullo_epi32(_mm512_sub_epi32(a, b), f),
            _mm512_set1_epi32(128),
        ));
        let v = _mm512_sub_epi32(a, d);
        let half = _mm512_sllv_epi32(one, _mm512_sub_epi32(k, one));
        let shifted = _mm512_srlv_epi32(_mm512_add_epi32(v, half), k);
        let zero_k = _mm512_cmpeq_epi32_mask(k, _mm512_setzero_si512());
        let p = _mm512_mask_blend_epi32(zero_k, shifted, v);
        // SAFETY: scores, ph, pl [j..j + 16] exist.
        unsafe {
            _mm512_storeu_si512(scores[j..].as_mut_ptr().cast(), p);
            let hi = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(p));
            let lo = _mm512_cvtepi32_epi16(_mm512_sub_epi32(
                _mm512_and_si512(p, _mm512_set1_epi32(0xFFFF)),
                _mm512_set1_epi32(0x8000),
            ));
            _mm256_storeu_si256(ph[j..].as_mut_ptr().cast(), hi);
            _mm256_storeu_si256(pl[j..].as_mut_ptr().cast(), lo);
        }
        total = _mm512_add_epi64(total, _mm512_cvtepu32_epi64(_mm512_castsi512_si256(p)));
        total = _mm512_add_epi64(
            total,
            _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(p)),
        );
        j += 16;
    }
    let mut sum = _mm512_reduce_add_epi64(total);
    for i in j..n {
        let u = (max as i64 - scores[i] as i64).min(EXP_ARG_MAX);
        let p = kernels::exp2_neg_q30(u);
        scores[i] = p;
        ph[i] = (p >> 16) as i16;
        pl[i] = ((p & 0xFFFF) - 0x8000) as i16;
        sum += p as i64;
    }
    sum
}
