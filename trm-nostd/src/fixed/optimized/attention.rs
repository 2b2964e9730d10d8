//! The attention output of one query row and head ([`kernels::attention_row`]) without its two
//! costs: the `i128` division per output (a reciprocal multiplication with an exact
//! correction, [`DivRound`]) and, on x86_64, the scalar loop over value columns (`i64` lanes,
//! `vpmuldq`).
//!
//! The numerators `sum_j p[j] v_j[c]` are exact integer sums (`p[j] <= 2^30`, `|v| <= 2^15`:
//! each product `<= 2^45`, and the reference adds them in `i64`), so any order gives the same
//! value as the reference; the division is exact by construction (see [`DivRound`]). The
//! results are the reference's bit for bit (`tests/fixed_attention.rs`).

use super::Isa;
use super::kernels::{self, Requant, div_round, sat16, sat32};
use super::mul_hi::mul_hi64;

/// `div_round(n, d) = floor((2n + d) / 2d)` for one divisor `d` and many numerators, by a
/// reciprocal: with `D = 2d` and `m = floor((2^64 - 1) / D)`, the estimate `q = floor(|N| m /
/// 2^64)` of `floor(|N| / D)` is at most 2 below it (`|N| / D - |N| m / 2^64 < |N| / (D 2^64) +
/// |N| / 2^64 < 2` for `|N| < 2^62`), then the remainder `N - q D` moves the quotient (signed)
/// until `0 <= N - q D < D`: that is `floor(N / D)` exactly. The fast path takes `0 < d <=
/// 2^59` and `|N| < 2^62`, so every intermediate fits `i64` (`|q D| < 2^62 + 3 * 2^60`); any
/// other argument goes to [`div_round`] itself.
#[derive(Clone, Copy, Debug)]
pub struct DivRound {
    d: i64,
    /// `floor((2^64 - 1) / 2d)`, or 0 when the fast path does not apply to `d`.
    m: u64,
}

/// Largest divisor of the fast path.
const FAST_D_MAX: i64 = 1 << 59;

/// Largest `|2n + d|` (exclusive) of the fast path.
const FAST_N_LIMIT: u64 = 1 << 62;

impl DivRound {
    /// The reciprocal of `d` (any `d`: one outside the fast path's range keeps
    /// [`div_round`]'s meaning, including 0 for `d <= 0`).
    #[inline]
    pub const fn new(d: i64) -> DivRound {
        let m = if d > 0 && d <= FAST_D_MAX {
            u64::MAX / (2 * d as u64)
        } else {
            0
        };
        DivRound { d, m }
    }

    /// `div_round(n, d)`.
    #[inline]
    pub fn apply(&self, n: i64) -> i64 {
        let d = self.d;
        let nn = match n.checked_mul(2).and_then(|x| x.checked_add(d)) {
            Some(nn) if self.m != 0 && nn.unsigned_abs() < FAST_N_LIMIT => nn,
            _ => return div_round(n, d),
        };
        let dd = 2 * d;
        let est = mul_hi64(nn.unsigned_abs(), self.m) as i64;
        let mut q = if nn < 0 { -est } else { est };
        let mut r = nn - q * dd;
        while r < 0 {
            q -= 1;
            r += dd;
        }
        while r >= dd {
            q += 1;
            r -= dd;
        }
        q
    }
}

/// [`kernels::attention_row`] with value row `j` at `v[j * stride..][..out.len()]`: `out[c] =
/// sat16(div_round(sum_j p[j] v_j[c], sum))`, the same results with `isa`. Value rows that
/// would run past `v` read as zeros (as the reference's missing values do).
pub fn attention_row(isa: Isa, p: &[i32], sum: i64, v: &[i16], stride: usize, out: &mut [i16]) {
    let div = DivRound::new(sum);
    // The vector path checks that every value row lies in `v` (else it declines).
    #[cfg(target_arch = "x86_64")]
    if super::x86::attention_row_simd(isa, p, &div, v, stride, out) {
        return;
    }
    let _ = isa;
    for (c, o) in out.iter_mut().enumerate() {
        let mut num = 0i64;
        for (j, &pj) in p.iter().enumerate() {
            let x = v.get(j * stride + c).copied().unwrap_or(0);
            num += pj as i64 * x as i64;
        }
        *o = sat16(div.apply(num));
    }
}

/// One query row of the blocked attention: `scores[j] = sat32(rq.apply(sums[j]))`, then the
/// integer softmax of [`kernels::softmax_q30`] in place (returning its sum), and the two int16
/// planes of each `p`: `ph = p >> 16` (`<= 2^14`) and `pl = (p & 0xFFFF) - 2^15`. The same
/// integers with every `isa` (AVX-512 on x86_64 where available).
pub fn softmax_planes(
    isa: Isa,
    sums: &[i64],
    rq: Requant,
    scores: &mut [i32],
    ph: &mut [i16],
    pl: &mut [i16],
) -> i64 {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx)
        && let Some(sum) = super::x86::softmax_planes_avx512(sums, rq, scores, ph, pl)
    {
        return sum;
    }
    let _ = isa;
    let scores = &mut scores[..sums.len()];
    for (s, &acc) in scores.iter_mut().zip(sums) {
        *s = sat32(rq.apply(acc));
    }
    let sum = kernels::softmax_q30(scores);
    for ((&p, h), l) in scores.iter().zip(ph.iter_mut()).zip(pl.iter_mut()) {
        *h = (p >> 16) as i16;
        *l = ((p & 0xFFFF) - 0x8000) as i16;
    }
    sum
}
