//! Prepare (host side, feature `std`): every float-to-integer conversion of the fixed-point
//! scheme, done once at export (TFLM's prepare/eval split). Nothing here runs on the device;
//! the engine reads the integers these functions produce from the model file.

use super::kernels::{EPS_TERM_MAX, MAX_SHIFT, Requant, Requant2, SILU_TABLE_LEN};
use std::vec::Vec;

/// `floor(v + 1/2)`: the rounding rule of the kernels, for the prepared constants as well.
pub fn round_half_up(v: f64) -> f64 {
    (v + 0.5).floor()
}

/// The [`Requant`] nearest to a real multiplier `m >= 0`: `mult` in `[2^30, 2^31)` and
/// `shift = 31 - e` for `m = f 2^e`, `f` in `[0.5, 1)` (relative error `<= 2^-31`). `None` if
/// `m` is negative, not finite, or `>= 2^31` (it would need a left shift). Multipliers too small
/// for [`MAX_SHIFT`] keep `shift = MAX_SHIFT` with a smaller (possibly zero) `mult`.
pub fn requant(m: f64) -> Option<Requant> {
    if !(m.is_finite() && m >= 0.0) {
        return None;
    }
    if m == 0.0 {
        return Some(Requant { mult: 0, shift: 0 });
    }
    let (f, e) = libm::frexp(m);
    let mut mult = round_half_up(f * (1u64 << 31) as f64) as i64;
    let mut e = e;
    if mult == 1 << 31 {
        mult = 1 << 30;
        e += 1;
    }
    let shift = 31 - e;
    if shift < 0 {
        return None;
    }
    if shift as u32 > MAX_SHIFT {
        let mult = round_half_up(m * libm::pow(2.0, MAX_SHIFT as f64)) as i32;
        return Some(Requant {
            mult,
            shift: MAX_SHIFT,
        });
    }
    Some(Requant {
        mult: mult as i32,
        shift: shift as u32,
    })
}

/// Two multipliers with one shift (see [`Requant2`]): the shift normalizes the larger one.
pub fn requant2(a: f64, b: f64) -> Option<Requant2> {
    let big = requant(a.max(b))?;
    let shift = big.shift;
    let scaled = |m: f64| round_half_up(m * libm::pow(2.0, shift as f64));
    let (ma, mb) = (scaled(a), scaled(b));
    if ma >= (1u64 << 31) as f64 || mb >= (1u64 << 31) as f64 {
        return None;
    }
    Some(Requant2 {
        ma: ma as i32,
        mb: mb as i32,
        shift,
    })
}

/// `silu(x) = x / (1 + exp(-x))` in f64.
pub fn silu_f64(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// The SiLU table of [`kernels::silu`](super::kernels::silu) for an input scale `s_in` and an
/// output scale `s_out`: knot `k` holds `round(silu((256 k - 32768) s_in) / s_out)`, saturated.
pub fn silu_table(s_in: f64, s_out: f64) -> [i16; SILU_TABLE_LEN] {
    let mut t = [0i16; SILU_TABLE_LEN];
    for (k, v) in t.iter_mut().enumerate() {
        let x = (256.0 * k as f64 - 32768.0) * s_in;
        let q = round_half_up(silu_f64(x) / s_out);
        *v = q.clamp(i16::MIN as f64, i16::MAX as f64) as i16;
    }
    t
}

/// The SiLU table size an export uses unless told otherwise (`2^10 + 1` knots, 64 int16 steps
/// apart: interpolation error `256 s` LSB, under half an LSB for input scales below 2e-3; 2 KiB
/// per SwiGLU).
pub const DEFAULT_SILU_KNOTS: usize = 1025;

/// The SiLU table of `2^bits + 1` knots ([`kernels::silu`](super::kernels::silu)): knot `k`
/// holds `round(silu((h k - 32768) s_in) / s_out)` with `h = 2^(16 - bits)`, saturated.
/// `bits = 8` gives [`silu_table`].
pub fn silu_table_knots(s_in: f64, s_out: f64, bits: u32) -> std::vec::Vec<i16> {
    let h = (1u32 << (16 - bits)) as f64;
    (0..super::kernels::silu_table_len(bits))
        .map(|k| {
            let x = (h * k as f64 - 32768.0) * s_in;
            let q = round_half_up(silu_f64(x) / s_out);
            q.clamp(i16::MIN as f64, i16::MAX as f64) as i16
        })
        .collect()
}

/// Q15 RoPE tables `[positions, hd / 2]` (cos, then sin) of the rotate-half convention:
/// `round(32768 * cos(p / theta^(2i / hd)))`, saturated to `i16` (so `cos 0 = 32767`).
pub fn rope_tables_q15(positions: usize, hd: usize, theta: f64) -> (Vec<i16>, Vec<i16>) {
    let half = hd / 2;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    let q15 = |v: f64| round_half_up(v * 32768.0).clamp(-32768.0, 32767.0) as i16;
    for p in 0..positions {
        for i in 0..half {
            let inv_freq = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
            let angle = p as f64 * inv_freq;
            cos.push(q15(angle.cos()));
            sin.push(q15(angle.sin()));
        }
    }
    (cos, sin)
}

/// The eps term of [`kernels::rms_norm`](super::kernels::rms_norm) for a row of `n` values at
/// scale `s_in`: `round(n * eps / s_in^2)`, capped at [`EPS_TERM_MAX`].
pub fn eps_term(n: usize, eps: f64, s_in: f64) -> u64 {
    let v = round_half_up(n as f64 * eps / (s_in * s_in));
    if !(v.is_finite() && v >= 0.0) || v >= EPS_TERM_MAX as f64 {
        EPS_TERM_MAX
    } else {
        v as u64
    }
}

/// Symmetric int16 quantization of one weight row: scale `max|w| / 32767` (1 for an all-zero
/// row), values `round(w / scale)` in `[-32767, 32767]`, appended as little-endian pairs.
pub fn quantize_row_i16(row: &[f32], out: &mut Vec<u8>) -> f64 {
    let max = row.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let scale = if max > 0.0 { max / 32767.0 } else { 1.0 };
    for &v in row {
        let q = round_half_up(v as f64 / scale).clamp(-32767.0, 32767.0) as i16;
        out.extend_from_slice(&q.to_le_bytes());
    }
    scale
}

/// Symmetric int8 quantization of one weight row: scale `max|w| / 127` (1 for an all-zero row),
/// values `round(w / scale)` in `[-127, 127]`.
pub fn quantize_row_i8(row: &[f32], out: &mut Vec<u8>) -> f64 {
    let max = row.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for &v in row {
        let q = round_half_up(v as f64 / scale).clamp(-127.0, 127.0) as i8;
        out.push(q as u8);
    }
    scale
}
