//! Optimized versions of the element-wise integer kernels of a block: the SwiGLU SiLU pass
//! ([`swiglu_silu`]) and RMSNorm ([`rms_norm`]), equal to the reference kernels
//! ([`kernels::silu_spaced`], [`kernels::rms_norm`]) bit for bit. At D = 512 the matrix
//! products leave them a large share of an ACT step on the host; on Cortex-M4F (
//! [`Isa::ArmDsp`]) the reference RMSNorm's `i128` division per value was a third of the
//! board model's step, so it takes [`rms_norm_fast`] too; [`Isa::Portable`] keeps the
//! reference kernels.

use super::Isa;
use super::kernels::{self, EPS_TERM_MAX, I16Table, NORM_ONE, RESIDUAL_MAX, Requant};
use super::mul_hi::mul_hi64;

/// The SiLU of one SwiGLU row with a faster implementation of `isa`: `gate[i] <-
/// silu(gate[i])` ([`kernels::silu_spaced`] with knot spacing `2^step`), or with `prod`
/// `gate[i] <- sat16(prod.apply(silu(gate[i]) * up[i]))`. x86_64 AVX-512: vectors; 32-bit
/// targets (Cortex-M, RISC-V): [`swiglu_silu_i32`]. Returns `false`, changing nothing, where
/// none applies (a 64-bit target without AVX-512, a table that is not `2^(16 - step) + 1`
/// knots, a product shift above 62): the caller then runs the reference.
pub fn swiglu_silu(
    isa: Isa,
    table: I16Table<'_>,
    step: u32,
    gate: &mut [i16],
    up: &[i16],
    prod: Option<Requant>,
) -> bool {
    let knots_ok = (4..=8).contains(&step) && table.len() == (1 << (16 - step)) + 1;
    let prod_ok = prod.is_none_or(|rq| rq.shift <= 62);
    if !(knots_ok && prod_ok && isa.is_supported()) {
        return false;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx => {
            super::x86::silu_avx512(table.0, step, gate, up, prod)
        }
        _ if cfg!(target_pointer_width = "32") => {
            swiglu_silu_i32(table, step, gate, up, prod);
            true
        }
        _ => false,
    }
}

/// [`swiglu_silu`] in 32-bit arithmetic, for 32-bit cores where the reference's `i64`
/// operations take several instructions each: the same integers.
///
/// - The interpolation `a + round_shift((c - a) f, step)`: `|c - a| < 2^16` and `f < 2^step
///   <= 2^8`, so the product and the rounding fit `i32`; `|a + d| < 2^17`, then the `i16`
///   saturation.
/// - The product's requant `round(s u mult / 2^shift)` for a shift in `32..=62` (where the
///   engine's product scales fall): `x = s u mult` (`|s u| <= 2^30`, so `|x| < 2^61`; one 32 x
///   32 -> 64-bit multiply) plus `2^(shift - 1)`, then `>> shift` as `(>> 32) >> (shift -
///   32)` on the high word (`|x + 2^(shift-1)| < 2^62`, so it fits `i32` after `>> 32`):
///   exactly [`Requant::apply`]'s 64-bit path, with the multiplier, the rounding term and the
///   shift taken out of the loop (the form of [`Requant::high_word`]; calling [`Requant::apply`] per value measured 62.9 instead of
///   43.9 instructions per value on Cortex-M4F: its range checks and shift clamp run each
///   time). Other shifts take [`Requant::apply`] itself.
///
/// Public for its test; the engine reaches it through [`swiglu_silu`].
pub fn swiglu_silu_i32(
    table: I16Table<'_>,
    step: u32,
    gate: &mut [i16],
    up: &[i16],
    prod: Option<Requant>,
) {
    let mask = (1u32 << step) - 1;
    let half = 1i32 << (step - 1);
    let silu = |g: i16| -> i32 {
        let u = (g as i32 + 32768) as u32;
        let k = (u >> step) as usize;
        let f = (u & mask) as i32;
        let a = table.get(k) as i32;
        let c = table.get(k + 1) as i32;
        (a + (((c - a) * f + half) >> step)).clamp(i16::MIN as i32, i16::MAX as i32)
    };
    match prod {
        None => {
            for g in gate.iter_mut() {
                *g = silu(*g) as i16;
            }
        }
        // The high-word form written out rather than through `Requant::high_word`: with the
        // `HighWord` value the Cortex-M4F step measured 52.3 M instead of 52.0 M instructions
        // (d32 demo model; 304.1 M instead of 302.6 M for the D=64 board model).
        Some(rq) if rq.mult >= 0 && (32..=62).contains(&rq.shift) => {
            let (mult, round, rest) = (rq.mult as i64, 1i64 << (rq.shift - 1), rq.shift - 32);
            for (g, &u) in gate.iter_mut().zip(up) {
                let x = (silu(*g) * u as i32) as i64 * mult + round;
                let r = ((x >> 32) as i32) >> rest;
                *g = r.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
        }
        Some(rq) => {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = kernels::sat16(rq.apply(silu(*g) as i64 * u as i64));
            }
        }
    }
}

/// [`kernels::rms_norm`] with `isa`: the reference for [`Isa::Portable`] on 64-bit targets;
/// AVX-512 vectors
/// ([`Isa::Avx512`], [`Isa::Avx512Vnni`]); elsewhere ([`Isa::ArmDsp`] included: the
/// reference's `i128` division per value is a library call of about a thousand instructions
/// on Cortex-M4F) [`rms_norm_fast`]. The same results bit for bit.
#[inline]
pub fn rms_norm(isa: Isa, v: &[i32], eps_term: u64, out: &mut [i16]) {
    match isa {
        // The reference on 64-bit targets; 32-bit ones (RISC-V, Cortex-M0+) take the same
        // results without the `i128` division.
        Isa::Portable if cfg!(target_pointer_width = "64") => kernels::rms_norm(v, eps_term, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx
            if super::x86::rms_norm_avx512(v, eps_term, out) => {}
        _ => rms_norm_fast(v, eps_term, out),
    }
}

/// [`kernels::rms_norm`] with its one division per value replaced by a multiplication: the
/// same results bit for bit (test `fixed_activation.rs`).
///
/// The reference computes `div_round(num, d) = floor((2 num + d) / 2d)` in `i128` (a
/// library call on most targets) with `num = NORM_ONE * v << e` and `d = r << e'`, `r =
/// isqrt(T << 2e)` in `[2^30, 2^31)`. Both fit far smaller types: `T << 2e < 2^62` and `v^2
/// <= T` give `|v << e| < 2^31`, so `|num| < 2^46` (or, when `T >= 2^62`, `e = 0` and `|num|
/// <= 2^15 * 2^23`); `d < 2^32`. So the numerator `N = 2 num + d` has `|N| < 2^48` and the
/// divisor `D = 2d < 2^33`. `floor(N / D)` is then `floor(M / D)` for `M = N >= 0`, or `-floor((
/// M + D - 1) / D)` for `M = -N > 0`, with `M < 2^48 + 2^33`; with `m = floor(2^80 / D)` the
/// estimate `q = (M m) >> 80` (a 128-bit product `< 2^49 * 2^50`) is `floor(M / D)` or one
/// less (`M / D - q < 1 + M / 2^80 < 2`), and one comparison of `M - q D` with `D` fixes it.
/// Rows longer than `2^16` values go to the reference.
pub fn rms_norm_fast(v: &[i32], eps_term: u64, out: &mut [i16]) {
    if v.len() > 1 << 16 {
        return kernels::rms_norm(v, eps_term, out);
    }
    // Clamped values fit i32, so their squares and NORM_ONE multiples are one 32 x 32 -> 64-bit
    // multiply each.
    let clamp = |x: i32| x.clamp(-RESIDUAL_MAX, RESIDUAL_MAX) as i64;
    // At most 2^16 values of at most (2^23 - 1)^2 < 2^46: the sum stays below 2^62 (no
    // saturation, as in the reference).
    let mut s = 0u64;
    for &x in v {
        let x = x.clamp(-RESIDUAL_MAX, RESIDUAL_MAX);
        s += (x as i64 * x as i64) as u64;
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
    let div = 2 * d as u64;
    // D >= 2^31, so m < 2^49: m = floor(2^80 / D) = floor(2^(79 - e') / r), by long division
    // in two 64-bit steps (no 128-bit division, a long loop on 32-bit cores): with `k = 47 -
    // e'`, `floor(2^k / r) 2^32 + floor((2^k mod r) 2^32 / r)` (`2^k mod r < 2^31`).
    let (r64, k) = (r as u64, 47 - e_right);
    let m = (((1u64 << k) / r64) << 32) | ((((1u64 << k) % r64) << 32) / r64);
    let floor_div = |x: u64| -> u64 {
        let q = mul_hi64(x, m) >> 16;
        if x - q * div >= div { q + 1 } else { q }
    };
    for (o, &x) in out.iter_mut().zip(v) {
        let num = (NORM_ONE * clamp(x)) << e_left;
        let n = 2 * num + d;
        let q = if n >= 0 {
            floor_div(n as u64) as i64
        } else {
            -(floor_div(n.unsigned_abs() + div - 1) as i64)
        };
        *o = kernels::sat16(q);
    }
}
