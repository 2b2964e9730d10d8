//! Arm DSP-extension kernels (Cortex-M4/M7/M33: `target_feature = "dsp"`), through `asm!`
//! because the `core::arch::arm` DSP intrinsics are not stable.
//!
//! # `dot_w8_a16`
//!
//! Four elements per step: one word of weights `[w0 w1 w2 w3]` and two words of activations
//! `[a0 a1]`, `[a2 a3]` (halfwords, low first).
//!
//! ```text
//! SXTB16 w02, w            ; [w0, w2] sign-extended to halfwords
//! SXTB16 w13, w, ROR #8    ; [w1, w3]
//! PKHBT  a02, a01, a23, LSL #16   ; [a0, a2]
//! PKHTB  a13, a23, a01, ASR #16   ; [a1, a3]
//! SMLAD  acc, w02, a02, acc       ; acc += w0 a0 + w2 a2
//! SMLAD  acc, w13, a13, acc       ; acc += w1 a1 + w3 a3
//! ```
//!
//! Exactness: `SMLAD` adds two 16 x 16 products to a 32-bit accumulator, wrapping on overflow.
//! Each `SMLAD` adds at most `2 * 2^22 = 2^23` in magnitude, and the accumulator is reset per
//! [`ACC_CHUNK`] = 256 elements, exactly as the reference does (128 `SMLAD`s, `|acc| <= 2^30`):
//! it never wraps, so the result is the reference's bit for bit.
//!
//! # `dot_a16_a16`
//!
//! `SMLALD lo, hi, a, b` adds `a_lo b_lo + a_hi b_hi` to the 64-bit accumulator `hi:lo`; each
//! product is formed in 32 bits (`<= 2^30`) and the addition is 64-bit, so it is exact for any
//! int16 input (including `(-32768)^2 + (-32768)^2 = 2^31`, which `SMLAD` would wrap).

use super::kernels::{self, ACC_CHUNK};
use core::arch::asm;

/// The little-endian word of four bytes.
#[inline(always)]
fn word_u8(b: &[u8]) -> u32 {
    match b {
        [b0, b1, b2, b3, ..] => u32::from_le_bytes([*b0, *b1, *b2, *b3]),
        _ => 0,
    }
}

/// Two halfwords `[lo, hi]` as one word (low half first, as `LDR` of two `i16` reads them).
#[inline(always)]
fn word_i16(lo: i16, hi: i16) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// `acc + w02 . a02 + w13 . a13` for the four elements `w` (bytes) and `a01`, `a23`.
#[inline(always)]
fn mac4(acc: i32, w: u32, a01: u32, a23: u32) -> i32 {
    let mut acc = acc;
    // SAFETY: register-only DSP instructions (no memory access, no flags read; SMLAD may set
    // the sticky Q flag, which nothing reads); the target has the DSP extension
    // (`cfg(target_feature = "dsp")` on this module).
    unsafe {
        asm!(
            "sxtb16 {w02}, {w}",
            "sxtb16 {w13}, {w}, ror #8",
            "pkhbt {a02}, {a01}, {a23}, lsl #16",
            "pkhtb {a13}, {a23}, {a01}, asr #16",
            "smlad {acc}, {w02}, {a02}, {acc}",
            "smlad {acc}, {w13}, {a13}, {acc}",
            w = in(reg) w,
            a01 = in(reg) a01,
            a23 = in(reg) a23,
            w02 = out(reg) _,
            w13 = out(reg) _,
            a02 = out(reg) _,
            a13 = out(reg) _,
            acc = inout(reg) acc,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// `dot_w8_a16` with `SMLAD`: `i32` chunks of [`ACC_CHUNK`] elements as the reference, four
/// elements per step, the last `len % 4` by the reference.
pub(super) fn dot_w8_a16(w: &[u8], a: &[i16]) -> i64 {
    let n = w.len().min(a.len());
    let (w, a) = (&w[..n], &a[..n]);
    let mut total = 0i64;
    for (wc, ac) in w.chunks(ACC_CHUNK).zip(a.chunks(ACC_CHUNK)) {
        let mut acc = 0i32;
        let mut w4 = wc.chunks_exact(4);
        let mut a4 = ac.chunks_exact(4);
        for (wq, aq) in (&mut w4).zip(&mut a4) {
            if let [a0, a1, a2, a3] = *aq {
                acc = mac4(acc, word_u8(wq), word_i16(a0, a1), word_i16(a2, a3));
            }
        }
        total += acc as i64 + kernels::dot_w8_a16(w4.remainder(), a4.remainder());
    }
    total
}

/// `dot_a16_a16` with `SMLALD`, two elements per instruction, an odd last one by the reference.
pub(super) fn dot_a16_a16(a: &[i16], b: &[i16]) -> i64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lo = 0u32;
    let mut hi = 0u32;
    let mut a2 = a.chunks_exact(2);
    let mut b2 = b.chunks_exact(2);
    for (x, y) in (&mut a2).zip(&mut b2) {
        if let (&[x0, x1], &[y0, y1]) = (x, y) {
            let (xw, yw) = (word_i16(x0, x1), word_i16(y0, y1));
            // SAFETY: register-only DSP instruction (no memory access, no flags); the target
            // has the DSP extension (`cfg(target_feature = "dsp")` on this module).
            unsafe {
                asm!(
                    "smlald {lo}, {hi}, {x}, {y}",
                    lo = inout(reg) lo,
                    hi = inout(reg) hi,
                    x = in(reg) xw,
                    y = in(reg) yw,
                    options(pure, nomem, nostack),
                );
            }
        }
    }
    let sum = (((hi as u64) << 32) | lo as u64) as i64;
    sum + kernels::dot_a16_a16(a2.remainder(), b2.remainder())
}
