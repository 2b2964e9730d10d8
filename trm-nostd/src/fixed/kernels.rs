//! The integer reference kernels: the specification of the fixed-point engine.
//!
//! Every function here is pure integer arithmetic on `i8`/`i16` data with `i32`/`i64` (and, for
//! the requantization product only, `i128`) intermediates, so a result is the same on every
//! target. Optimized kernels (Cortex-M SMLAD, AVX2) must equal these bit for bit, as TFLM's
//! reference kernels specify its optimized ones (`STYLE.md`).
//!
//! # The one rounding rule
//!
//! Every division by a power of two, every requantization and every integer division rounds
//! **to nearest, ties toward +infinity** ("round half up"):
//! `round_shift(x, s) = (x + 2^(s-1)) >> s` with an arithmetic (flooring) shift, and `div_round(n, d) = floor((2n + d) / 2d)` for
//! `d > 0`. Both equal `floor(x / 2^s + 1/2)` exactly. The rule is one add and one shift (no
//! sign test, unlike round-half-away-from-zero), and its only bias is on exact ties, which are
//! rare after a 31-bit multiplier. The test `fixed_kernels::rounding_rule` checks both against
//! exact rational arithmetic.
//!
//! # Accumulator bounds (no overflow, by proof and by worst-case test)
//!
//! - [`dot_w8_a16`]: each product `|w * a| <= 128 * 32768 = 2^22`. Products are summed in `i32`
//!   over chunks of [`ACC_CHUNK`] = 256 elements (`|chunk sum| <= 2^30 < 2^31`), the chunk sums
//!   in `i64` (`|total| <= n * 2^22`, `< 2^63` for any `n < 2^41`; a model has `n <= 2^22`).
//!   The `i32` chunk is what a Cortex-M `SMLAD` loop accumulates into.
//! - [`dot_a16_a16`] and [`dot_w16_a16`] (int16 weights, the exporter's `--int16-weights`
//!   option): products `<= 2^30`, summed in `i64` (`n * 2^30 < 2^63` for `n < 2^33`; a model
//!   has `n <= 2^22`, so `|total| <= 2^52`).
//! - [`Requant::apply`]: `|acc| < 2^63`, `mult < 2^31`: the product fits `i128` with room for
//!   the rounding term; the result saturates to `i64`. [`Requant::apply_i128`]: `|acc| <=
//!   2^96` (clamped), product `< 2^127`.
//! - [`dot_w8_prod`] / [`dot_w16_prod`] (exact SwiGLU products): terms `|w * s * u| <= 2^37`
//!   / `2^45`, `i64` partial sums of [`PROD_CHUNK`] = `2^16` terms (`< 2^61`), `i128` total
//!   (`<= 2^22 * 2^45 = 2^67`).
//! - [`rms_norm`]: inputs are clamped residuals, `|v| <= `[`RESIDUAL_MAX`]` = 2^23 - 1`, rows
//!   `n <= 2^16` ([`Config::validate`](crate::Config::validate) bounds every size by 2^16),
//!   so the sum of squares is `< 2^62`; with the eps term (`<= `[`EPS_TERM_MAX`]` = 2^60`) the
//!   total stays `< 2^63` (`u64`).
//! - [`attention_row`]: softmax weights `p <= 2^30`, values `|v| <= 2^15`: `|p v| <= 2^45`,
//!   summed over `l <= 2^16` keys: `< 2^61`; the weight sum `<= 2^46`.
//! - Everything else is bounded by its `i16` / `i32` inputs: [`rope`] `|x c - y s| <= 2^31` in
//!   `i64`; [`silu`] `|(T[k+1] - T[k]) f| < 2^24`; [`softmax_q30`] `max - t` of two `i32` in
//!   `i64`; the SwiGLU product `silu * up <= 2^30`; [`Requant2`] `|a ma + b mb| < 2^95` in
//!   `i128`. Results are saturated to their type (`sat16`, `sat32`, [`sat_residual`]), never
//!   wrapped.
//!
//! The largest sizes are those [`Config::validate`](crate::Config::validate) accepts: every size
//! `<= 2^16` and `expansion <= 64`, so the longest dot product (a SwiGLU `down` row of the
//! widest model) has `swiglu_inter(2^16, 64) = 2_796_288 < 2^22` elements, a head `<= 2^16`.
//! The test `tests/fixed_bounds.rs` runs every kernel (and every optimized implementation of
//! [`fixed::optimized`](super::optimized)) at those sizes with the worst-case values (weights
//! -128 / 127, activations -32768 / 32767, the largest residuals, softmax weights and
//! multipliers) against `i128` references, and whole engines on worst-case models with the
//! test profile's overflow checks on. The optimized kernels keep their own partial sums inside
//! the same bounds (see their module documentation).
//!
//! Shapes in comments follow llm.c: `// h: [rows, n]` is row-major with `n` contiguous.

/// Elements per `i32` partial sum in [`dot_w8_a16`] (see the module's accumulator bounds).
pub const ACC_CHUNK: usize = 256;

/// Largest magnitude of a pre-norm residual value (`h + delta` before an RMSNorm), in units of
/// the block input's scale: 256 times the int16 range, room for a block whose output is much
/// larger than its input (the first token mixer of our Sudoku-Extreme model reaches 96 times;
/// `trm-export` warns when calibration finds a residual beyond this). Keeps the sum of squares
/// of a row of up to 2^16 values below 2^62.
pub const RESIDUAL_MAX: i32 = (1 << 23) - 1;

/// Largest eps term of [`rms_norm`] a model may carry.
pub const EPS_TERM_MAX: u64 = 1 << 60;

/// Largest right shift of a [`Requant`].
pub const MAX_SHIFT: u32 = 126;

/// Output scale of [`rms_norm`]: a normalized row of `n` values is `32767 * v / sqrt(sum v^2)`,
/// so the real value is `q * sqrt(n) / NORM_ONE` and `|q| <= NORM_ONE` always (post-norm
/// outputs satisfy `|v| <= sqrt(n)`).
pub const NORM_ONE: i64 = 32767;

/// `floor(x / 2^s + 1/2)`: the rounding rule, for `s <= 62`.
#[inline]
pub const fn round_shift(x: i64, s: u32) -> i64 {
    if s == 0 {
        x
    } else {
        // x + 2^(s-1) cannot overflow for the kernels' bounded inputs; saturate anyway.
        x.saturating_add(1 << (s - 1)) >> s
    }
}

/// [`round_shift`] of `|x| < 2^62` for any shift: 0 from shift 63 on (`x + 2^(s - 1)` then lies
/// in `(0, 2^s)`), past [`round_shift`]'s range. The requantizations' 64-bit paths. A shift of
/// 32 or more is done as `>> 32`, then an `i32` shift by `s - 32`: the same floor
/// (`|x + 2^(s - 1)| < 2^62 + 2^61`, so its high word fits `i32`), and on 32-bit cores one
/// word instead of a 64-bit variable shift.
#[inline]
const fn round_shift_small(x: i64, s: u32) -> i64 {
    if s >= 63 {
        0
    } else if s >= 32 {
        ((((x + (1 << (s - 1))) >> 32) as i32) >> (s - 32)) as i64
    } else {
        round_shift(x, s)
    }
}

/// `floor(x / 2^s + 1/2)` in `i128`, for `s <= 126`.
#[inline]
pub const fn round_shift_i128(x: i128, s: u32) -> i128 {
    if s == 0 {
        x
    } else {
        x.saturating_add(1 << (s - 1)) >> s
    }
}

/// `floor(n / d + 1/2)` for `d > 0` (0 when `d <= 0`): the rounding rule for a division.
#[inline]
pub const fn div_round(n: i64, d: i64) -> i64 {
    if d <= 0 {
        return 0;
    }
    // In i128 so that 2n + d cannot overflow.
    let q = (2 * n as i128 + d as i128).div_euclid(2 * d as i128);
    q as i64
}

/// Saturates an `i128` to `i64`.
#[inline]
const fn sat_i64(r: i128) -> i64 {
    if r > i64::MAX as i128 {
        i64::MAX
    } else if r < i64::MIN as i128 {
        i64::MIN
    } else {
        r as i64
    }
}

/// A requant shift limited to [`MAX_SHIFT`].
#[inline]
const fn clamp_shift(shift: u32) -> u32 {
    if shift > MAX_SHIFT { MAX_SHIFT } else { shift }
}

/// Saturates to `i16`.
#[inline]
pub const fn sat16(x: i64) -> i16 {
    if x > i16::MAX as i64 {
        i16::MAX
    } else if x < i16::MIN as i64 {
        i16::MIN
    } else {
        x as i16
    }
}

/// Saturates to `i32`.
#[inline]
pub const fn sat32(x: i64) -> i32 {
    if x > i32::MAX as i64 {
        i32::MAX
    } else if x < i32::MIN as i64 {
        i32::MIN
    } else {
        x as i32
    }
}

/// Clamps to `±RESIDUAL_MAX`.
#[inline]
pub const fn sat_residual(x: i64) -> i32 {
    if x > RESIDUAL_MAX as i64 {
        RESIDUAL_MAX
    } else if x < -(RESIDUAL_MAX as i64) {
        -RESIDUAL_MAX
    } else {
        x as i32
    }
}

/// `sum_k w[k] * a[k]` over `min(w.len(), a.len())` elements: int8 weights (stored bytes, two's
/// complement) times int16 activations, `i32` partial sums of [`ACC_CHUNK`] products, `i64`
/// total. Integer addition is associative, so the order never changes the result.
#[inline]
pub fn dot_w8_a16(w: &[u8], a: &[i16]) -> i64 {
    let mut total = 0i64;
    for (wc, ac) in w.chunks(ACC_CHUNK).zip(a.chunks(ACC_CHUNK)) {
        let mut acc = 0i32;
        for (&wb, &x) in wc.iter().zip(ac) {
            acc += (wb as i8) as i32 * x as i32;
        }
        total += acc as i64;
    }
    total
}

/// `sum_k w[k] * a[k]` over `min(w.len() / 2, a.len())` elements: int16 weights (stored as
/// little-endian byte pairs, as in a `.trm` file) times int16 activations, summed in `i64`
/// (products `<= 2^30`; see the module's accumulator bounds). The same sum as [`dot_a16_a16`]
/// of the decoded weights.
#[inline]
pub fn dot_w16_a16(w: &[u8], a: &[i16]) -> i64 {
    let mut total = 0i64;
    for (wb, &x) in w.chunks_exact(2).zip(a) {
        total += i16::from_le_bytes([wb[0], wb[1]]) as i64 * x as i64;
    }
    total
}

/// Elements per `i64` partial sum of the exact-product dots ([`dot_w8_prod`],
/// [`dot_w16_prod`]): terms `|w s u| <= 2^15 * 2^30 = 2^45`, so `2^16` of them stay below
/// `2^61`.
pub const PROD_CHUNK: usize = 1 << 16;

/// `sum_k w[k] * (s[k] * u[k])` over `min(w.len(), s.len(), u.len())` elements: int8 weights
/// times the exact SwiGLU products of int16 `silu(gate)` and `up` values (files with exact
/// products, [`tables::TAG_EXACT_PRODUCTS`](super::tables::TAG_EXACT_PRODUCTS)). Terms
/// `|w s u| <= 2^37`, summed in `i64` per [`PROD_CHUNK`] and in `i128` overall. This is the
/// specification; the engine computes the same total from [`split_product`] halves through
/// the optimized int16 kernels (test `split_products_through_every_kernel_equal_the_spec`).
#[inline]
pub fn dot_w8_prod(w: &[u8], s: &[i16], u: &[i16]) -> i128 {
    let mut total = 0i128;
    for ((wc, sc), uc) in w
        .chunks(PROD_CHUNK)
        .zip(s.chunks(PROD_CHUNK))
        .zip(u.chunks(PROD_CHUNK))
    {
        let mut acc = 0i64;
        for ((&wb, &a), &b) in wc.iter().zip(sc).zip(uc) {
            acc += (wb as i8) as i64 * (a as i32 * b as i32) as i64;
        }
        total += acc as i128;
    }
    total
}

/// [`dot_w8_prod`] with int16 weights (little-endian byte pairs): terms `|w s u| <= 2^45`.
#[inline]
pub fn dot_w16_prod(w: &[u8], s: &[i16], u: &[i16]) -> i128 {
    let mut total = 0i128;
    for ((wc, sc), uc) in w
        .chunks(2 * PROD_CHUNK)
        .zip(s.chunks(PROD_CHUNK))
        .zip(u.chunks(PROD_CHUNK))
    {
        let mut acc = 0i64;
        for ((wb, &a), &b) in wc.chunks_exact(2).zip(sc).zip(uc) {
            let wv = i16::from_le_bytes([wb[0], wb[1]]) as i64;
            acc += wv * (a as i32 as i64 * b as i64);
        }
        total += acc as i128;
    }
    total
}

/// Splits the exact SwiGLU product `p = s * u` (`|p| <= 2^30`) into two int16 halves with
/// `p = hi * 2^16 + lo`: `lo` is `p`'s low 16 bits read as two's complement, `hi = (p - lo) /
/// 2^16` (`|hi| <= 2^14 + 1`). Returns `(lo, hi)`. So `sum w p = 2^16 sum w hi + sum w lo`: two
/// int16-activation dots, which the optimized kernels run, give [`dot_w8_prod`] /
/// [`dot_w16_prod`] exactly ([`prod_from_halves`]).
#[inline]
pub const fn split_product(s: i16, u: i16) -> (i16, i16) {
    let p = s as i32 * u as i32;
    let lo = p as i16;
    let hi = ((p - lo as i32) >> 16) as i16;
    (lo, hi)
}

/// `2^16 * hi_dot + lo_dot` in `i128`: the exact-product total from the dots of the weights
/// with the `hi` and the `lo` halves of [`split_product`] (`|hi_dot| <= 2^22 * 2^15 * (2^14 +
/// 1)`, so the total stays `< 2^68`).
#[inline]
pub const fn prod_from_halves(lo_dot: i64, hi_dot: i64) -> i128 {
    ((hi_dot as i128) << 16) + lo_dot as i128
}

/// `sum_k a[k] * b[k]` of two int16 vectors in `i64`.
#[inline]
pub fn dot_a16_a16(a: &[i16], b: &[i16]) -> i64 {
    let mut total = 0i64;
    for (&x, &y) in a.iter().zip(b) {
        total += x as i64 * y as i64;
    }
    total
}

/// A real multiplier `M ~= mult * 2^-shift`, prepared at export (`mult` in `[2^30, 2^31)` for a
/// normalized multiplier, 0 for `M = 0`; `shift <= `[`MAX_SHIFT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Requant {
    /// Integer mantissa, `0 <= mult < 2^31`.
    pub mult: i32,
    /// Total right shift.
    pub shift: u32,
}

impl Requant {
    /// Whether the fields are in range (`mult >= 0`, `shift <= MAX_SHIFT`).
    pub const fn is_valid(&self) -> bool {
        self.mult >= 0 && self.shift <= MAX_SHIFT
    }

    /// `round(acc * mult / 2^shift)` (the rounding rule), saturated to `i64`.
    ///
    /// An accumulator within `i32` (every matrix product of up to 256 columns, and most
    /// others) takes a 64-bit path: `|acc * mult| < 2^62`, so the sum with `2^(shift - 1)` and
    /// the shift are exact in `i64` (and the result 0 from shift 63 on), the same integer as the
    /// `i128` computation, which 32-bit cores pay dearly for.
    #[inline]
    pub const fn apply(&self, acc: i64) -> i64 {
        let s = clamp_shift(self.shift);
        if acc >= i32::MIN as i64 && acc <= i32::MAX as i64 && self.mult >= 0 {
            // One 32 x 32 -> 64-bit multiplication.
            return round_shift_small((acc as i32 as i64) * (self.mult as i64), s);
        }
        sat_i64(round_shift_i128(acc as i128 * self.mult as i128, s))
    }
}

/// [`Requant::apply`] of `i32` accumulators in 32-bit words, for a multiplier whose shift lies
/// in `32..=62` (the matrix products' usual range): one 32 x 32 -> 64-bit multiply-accumulate
/// with the rounding term, the high word, one `i32` shift. Built by [`Requant::high_word`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HighWord {
    mult: i32,
    round: i64,
    shift: u32,
}

impl HighWord {
    /// `Requant::apply(acc)`, which lies in `i32` here (`|acc * mult| < 2^62`, shift >= 32).
    #[inline(always)]
    pub const fn apply(self, acc: i32) -> i32 {
        ((((acc as i64) * (self.mult as i64) + self.round) >> 32) as i32) >> self.shift
    }

    /// `sat16(Requant::apply(acc))`: [`HighWord::apply`] saturated to `i16`.
    #[inline(always)]
    pub fn apply_sat16(self, acc: i32) -> i16 {
        self.apply(acc).clamp(i16::MIN as i32, i16::MAX as i32) as i16
    }
}

impl Requant {
    /// The [`HighWord`] form of this multiplier, when `mult >= 0` and `32 <= shift <= 62`: then
    /// [`Requant::apply`] of an `i32` accumulator takes its 64-bit path, `round_shift_small`'s
    /// high-word branch, which [`HighWord::apply`] is step for step.
    pub const fn high_word(&self) -> Option<HighWord> {
        if self.mult >= 0 && self.shift >= 32 && self.shift <= 62 {
            Some(HighWord {
                mult: self.mult,
                round: 1 << (self.shift - 1),
                shift: self.shift - 32,
            })
        } else {
            None
        }
    }
}

impl Requant {
    /// [`Requant::apply`] of an `i128` accumulator (the exact-product dots): `|acc| < 2^96`
    /// keeps `acc * mult` in `i128`; larger values saturate first. The result saturates to
    /// `i64`.
    #[inline]
    pub const fn apply_i128(&self, acc: i128) -> i64 {
        const LIM: i128 = 1 << 96;
        let acc = if acc > LIM {
            LIM
        } else if acc < -LIM {
            -LIM
        } else {
            acc
        };
        sat_i64(round_shift_i128(
            acc * self.mult as i128,
            clamp_shift(self.shift),
        ))
    }
}

/// Two multipliers with one shift: `round((a * ma + b * mb) / 2^shift)` rounds once, for a sum
/// of two values at different scales brought to a third (the network input `z + y + x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Requant2 {
    /// Multiplier of the first value, `0 <= ma < 2^31`.
    pub ma: i32,
    /// Multiplier of the second value, `0 <= mb < 2^31`.
    pub mb: i32,
    /// Shared right shift.
    pub shift: u32,
}

impl Requant2 {
    /// Whether the fields are in range.
    pub const fn is_valid(&self) -> bool {
        self.ma >= 0 && self.mb >= 0 && self.shift <= MAX_SHIFT
    }

    /// `round((a * ma + b * mb) / 2^shift)`, saturated to `i64` (for `|a|, |b| < 2^32` the sum
    /// is exact in `i128`).
    ///
    /// Inputs within `2^30` (the int16 states and x it adds) take a 64-bit path: `|a ma + b mb|
    /// < 2^62`, so the rounding is exact in `i64` (0 from shift 63 on), the same integer.
    #[inline]
    pub const fn apply(&self, a: i64, b: i64) -> i64 {
        let shift = clamp_shift(self.shift);
        const LIM: i64 = 1 << 30;
        if a > -LIM && a < LIM && b > -LIM && b < LIM && self.ma >= 0 && self.mb >= 0 {
            let s = (a as i32 as i64) * (self.ma as i64) + (b as i32 as i64) * (self.mb as i64);
            return round_shift_small(s, shift);
        }
        let s = a as i128 * self.ma as i128 + b as i128 * self.mb as i128;
        sat_i64(round_shift_i128(s, shift))
    }
}

/// Integer RMSNorm without weight: `out[i] = round(NORM_ONE * v[i] / sqrt(S + eps_term))`, `S =
/// sum v^2` (exact, `i64`), saturated to `i16`.
///
/// With `v` at scale `s` (real `v * s`) and `eps_term = n * eps / s^2` (prepared at export),
/// this is the float `v / sqrt(mean(v^2) + eps)` at the output scale `sqrt(n) / NORM_ONE`.
///
/// The inverse square root: `T = S + eps_term` is shifted left by an even `2e` into
/// `[2^60, 2^62)`, `r = isqrt(T << 2e)` (exact floor, so `r` is `sqrt(T) 2^e` to a relative
/// `2^-30`), and `out[i] = div_round(NORM_ONE * v[i] * 2^e, r)`: one rounding per output. Error
/// against the exact value: at most 0.5 LSB + `32767 * 2^-30` LSB. `T = 0` gives zeros.
/// `v.len()` must equal `out.len()` (extra values on either side are ignored). Inputs beyond
/// [`RESIDUAL_MAX`] are clamped first, so the bounds of the module documentation hold for any
/// input.
pub fn rms_norm(v: &[i32], eps_term: u64, out: &mut [i16]) {
    let clamp = |x: i32| x.clamp(-RESIDUAL_MAX, RESIDUAL_MAX) as i64;
    let mut s = 0u64;
    for &x in v {
        let x = clamp(x);
        s = s.saturating_add((x * x) as u64);
    }
    let t = s.saturating_add(eps_term.min(EPS_TERM_MAX));
    if t == 0 {
        out.fill(0);
        return;
    }
    // T < 2^62 for all but the longest rows at the largest residuals; a larger T (< 2^63) is
    // shifted right instead (r is then sqrt(T / 4), as precise).
    let lz = t.leading_zeros();
    let (tn, e_left, e_right) = if lz >= 2 {
        let e = (lz - 2) / 2;
        (t << (2 * e), e, 0)
    } else {
        (t >> 2, 0, 1)
    };
    let r = tn.isqrt() as i64; // in [2^30, 2^31)
    for (o, &x) in out.iter_mut().zip(v) {
        let num = (NORM_ONE * clamp(x)) << e_left;
        let q = div_round(num, r << e_right);
        *o = sat16(q);
    }
}

/// Entries of the classic SiLU table: 256 intervals of 256 int16 steps over `[-32768, 32768]`
/// (`2^8 + 1` knots). Tables of `2^b + 1` knots, `b` in
/// [`SILU_KNOT_BITS_MIN`]`..=`[`SILU_KNOT_BITS_MAX`], are valid too ([`silu`]).
pub const SILU_TABLE_LEN: usize = 257;

/// Fewest knot bits of a SiLU table (`2^8 + 1 = 257` knots, 256 int16 steps apart).
pub const SILU_KNOT_BITS_MIN: u32 = 8;

/// Most knot bits of a SiLU table (`2^12 + 1 = 4097` knots, 16 int16 steps apart).
pub const SILU_KNOT_BITS_MAX: u32 = 12;

/// Entries of a SiLU table of `2^bits + 1` knots.
pub const fn silu_table_len(bits: u32) -> usize {
    (1usize << bits) + 1
}

/// The knot bits `b` of a SiLU table of `len` entries (`len = 2^b + 1` with `b` in
/// [`SILU_KNOT_BITS_MIN`]`..=`[`SILU_KNOT_BITS_MAX`]), or `None`.
pub const fn silu_knot_bits(len: usize) -> Option<u32> {
    let mut b = SILU_KNOT_BITS_MIN;
    while b <= SILU_KNOT_BITS_MAX {
        if len == silu_table_len(b) {
            return Some(b);
        }
        b += 1;
    }
    None
}

/// A little-endian table of `i16` values borrowed from a model file (out-of-range reads give 0;
/// the engine checks lengths when it loads a model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I16Table<'a>(pub &'a [u8]);

impl I16Table<'_> {
    /// Entry `i`.
    #[inline]
    pub fn get(&self, i: usize) -> i16 {
        match self.0.get(2 * i..2 * i + 2) {
            Some(b) => i16::from_le_bytes([b[0], b[1]]),
            None => 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.0.len() < 2
    }
}

/// SiLU by table with linear interpolation. A table of `2^b + 1` knots (`b` from its length,
/// see [`silu_knot_bits`]; the classic table has `b = 8`) has knots `h = 2^(16 - b)` int16
/// steps apart, knot `k` at input `h k - 32768`. The input `q` lies between the knots
/// `k = (q + 32768) >> (16 - b)` and `k + 1`, `f = (q + 32768) & (h - 1)`, and the output is
/// `T[k] + round((T[k+1] - T[k]) * f / h)`, saturated to `i16`.
///
/// The table holds `round(silu(x_k * s_in) / s_out)` for the knot inputs; it is built at
/// export for the site's scales (the engine uses `s_out = s_in`). Error against
/// `silu(q s) / s`: the knots' rounding (0.5 LSB), the output rounding (0.5 LSB) and the
/// interpolation error `(h s)^2 max|silu''| / 8` real, with `max|silu''| = 0.5`: `h^2 s / 16`
/// LSB (`4096 s` for 257 knots, `16 s` for 4097). A test checks the bound for every size.
/// A table of another length (refused when a model loads) reads as the classic one.
#[inline]
pub fn silu(table: I16Table<'_>, q: i16) -> i16 {
    let b = silu_knot_bits(table.len()).unwrap_or(SILU_KNOT_BITS_MIN);
    silu_spaced(table, 16 - b, q)
}

/// [`silu`] with the knot spacing `2^step` given (`step = 16 - b` for a table of `2^b + 1`
/// knots), so a loop over one table works it out once.
#[inline]
pub fn silu_spaced(table: I16Table<'_>, step: u32, q: i16) -> i16 {
    let u = (q as i32 + 32768) as u32;
    let k = (u >> step) as usize;
    let f = (u & ((1 << step) - 1)) as i64;
    let a = table.get(k) as i64;
    let c = table.get(k + 1) as i64;
    sat16(a + round_shift((c - a) * f, step))
}

/// `round(2^30 * 2^(-i / 256))` for `i` in `0..=256`: the knots of [`exp2_neg_q30`]. Checked
/// against f64 by the test `fixed_kernels::exp2_table_is_exact`.
pub const EXP2_NEG_Q30: [u32; 257] = [
    1073741824, 1070838486, 1067942999, 1065055341, 1062175491, 1059303428, 1056439131, 1053582579,
    1050733751, 1047892626, 1045059183, 1042233401, 1039415261, 1036604740, 1033801819, 1031006477,
    1028218693, 1025438448, 1022665720, 1019900489, 1017142735, 1014392438, 1011649578, 1008914134,
    1006186087, 1003465416, 1000752102, 998046124, 995347464, 992656100, 989972014, 987295185,
    984625594, 981963222, 979308048, 976660054, 974019220, 971385527, 968758955, 966139485,
    963527098, 960921775, 958323496, 955732243, 953147997, 950570738, 948000448, 945437108,
    942880699, 940331203, 937788600, 935252872, 932724001, 930201967, 927686753, 925178340,
    922676710, 920181844, 917693724, 915212331, 912737649, 910269657, 907808339, 905353676,
    902905651, 900464244, 898029440, 895601218, 893179563, 890764456, 888355878, 885953814,
    883558244, 881169153, 878786521, 876410331, 874040567, 871677210, 869320244, 866969651,
    864625413, 862287515, 859955938, 857630665, 855311680, 852998965, 850692504, 848392279,
    846098274, 843810471, 841528855, 839253408, 836984114, 834720956, 832463917, 830212982,
    827968132, 825729353, 823496627, 821269938, 819049271, 816834607, 814625932, 812423229,
    810226483, 808035676, 805850792, 803671817, 801498734, 799331526, 797170178, 795014675,
    792865000, 790721137, 788583072, 786450787, 784324269, 782203500, 780088465, 777979150,
    775875538, 773777614, 771685363, 769598769, 767517817, 765442492, 763372778, 761308661,
    759250125, 757197155, 755149737, 753107854, 751071493, 749040637, 747015274, 744995386,
    742980960, 740971982, 738968435, 736970306, 734977579, 732990241, 731008277, 729031671,
    727060411, 725094480, 723133865, 721178552, 719228525, 717283772, 715344277, 713410026,
    711481005, 709557200, 707638598, 705725183, 703816941, 701913860, 700015924, 698123120,
    696235434, 694352853, 692475362, 690602947, 688735596, 686873293, 685016026, 683163781,
    681316545, 679474303, 677637043, 675804750, 673977412, 672155015, 670337545, 668524990,
    666717336, 664914570, 663116678, 661323648, 659535466, 657752119, 655973594, 654199878,
    652430958, 650666822, 648907455, 647152846, 645402981, 643657847, 641917433, 640181724,
    638450708, 636724373, 635002706, 633285695, 631573326, 629865587, 628162466, 626463950,
    624770026, 623080683, 621395908, 619715688, 618040012, 616368866, 614702239, 613040119,
    611382493, 609729349, 608080675, 606436459, 604796689, 603161352, 601530438, 599903933,
    598281827, 596664106, 595050760, 593441776, 591837143, 590236848, 588640881, 587049229,
    585461881, 583878825, 582300049, 580725543, 579155293, 577589290, 576027521, 574469975,
    572916640, 571367506, 569822560, 568281792, 566745190, 565212742, 563684439, 562160268,
    560640218, 559124278, 557612438, 556104685, 554601009, 553101399, 551605844, 550114332,
    548626854, 547143398, 545663953, 544188508, 542717053, 541249576, 539786068, 538326517,
    536870912,
];

/// Fraction bits of the softmax exponent argument `u` of [`exp2_neg_q30`].
pub const EXP_FRAC_BITS: u32 = 16;

/// Largest exponent argument [`softmax_q30`] passes on (`2^-32` underflows to 0 anyway).
pub const EXP_ARG_MAX: i64 = 32 << EXP_FRAC_BITS;

/// `round(2^30 * 2^(-u / 2^16))` for `u >= 0` (Q16 in, Q30 out): `u = k + f` with integer `k`
/// and `f` in `[0, 1)`; `2^-f` by linear interpolation between the knots of [`EXP2_NEG_Q30`]
/// (256 intervals: the chord lies above the curve by at most `(ln 2 / 256)^2 / 8 < 9.2e-7`
/// relative, 984 Q30 LSB at `k = 0`), then `>> k` by the rounding rule. Integer only (the I-BERT idea of reducing `exp` to a power of two and
/// a short approximation on one octave).
#[inline]
pub fn exp2_neg_q30(u: i64) -> i32 {
    if u < 0 {
        return 1 << 30;
    }
    let k = (u >> EXP_FRAC_BITS) as u64;
    if k > 31 {
        return 0;
    }
    let frac = (u & ((1 << EXP_FRAC_BITS) - 1)) as usize;
    let i = frac >> 8;
    let f = (frac & 255) as i64;
    let a = EXP2_NEG_Q30[i] as i64;
    let b = EXP2_NEG_Q30[(i + 1).min(256)] as i64;
    let v = a - round_shift((a - b) * f, 8);
    round_shift(v, k as u32) as i32
}

/// Integer softmax numerators, in place: `t` holds one query row's scores already in Q16
/// units of `log2(e) * score` (the score requantized by a multiplier prepared at export).
/// Afterwards `t[j] = exp2_neg_q30(min(max t - t[j], EXP_ARG_MAX))`: `p_j = exp(s_j - max s)`
/// in Q30 (the maximum gets exactly `2^30`). Returns `sum_j p_j` (`>= 2^30` for a non-empty
/// row).
pub fn softmax_q30(t: &mut [i32]) -> i64 {
    let max = t.iter().copied().max().unwrap_or(0) as i64;
    let mut sum = 0i64;
    for x in t.iter_mut() {
        let u = (max - *x as i64).min(EXP_ARG_MAX);
        *x = exp2_neg_q30(u);
        sum += *x as i64;
    }
    sum
}

/// The attention output of one query row and head: `out[c] = div_round(sum_j p[j] v_j[c],
/// sum_j p[j])`, a convex combination of the value rows, so `|out| <= max |v|` (the output has
/// the values' scale; no saturation can occur). `v_at(j)` gives value row `j` (`hd` values).
pub fn attention_row<'v>(
    p: &[i32],
    sum: i64,
    mut v_at: impl FnMut(usize) -> &'v [i16],
    out: &mut [i16],
) {
    for (c, o) in out.iter_mut().enumerate() {
        let mut num = 0i64;
        for (j, &pj) in p.iter().enumerate() {
            let v = v_at(j).get(c).copied().unwrap_or(0);
            num += pj as i64 * v as i64;
        }
        *o = sat16(div_round(num, sum));
    }
}

/// Rotate-half RoPE on one int16 head vector in place, with Q15 tables for this position:
/// `cos[i]`, `sin[i]` for `i < hd / 2` (the frequency of pair `(i, i + hd/2)`):
/// `x[i] = round((x[i] c - x[i+h] s) / 2^15)`, `x[i+h] = round((x[i+h] c + x[i] s) / 2^15)`,
/// saturated to `i16`. `cos = 1` is stored as 32767 (error `2^-15`).
pub fn rope(x: &mut [i16], cos: I16Table<'_>, sin: I16Table<'_>) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = (x[i] as i64, x[i + half] as i64);
        let (c, s) = (cos.get(i) as i64, sin.get(i) as i64);
        x[i] = sat16(round_shift(a * c - b * s, 15));
        x[i + half] = sat16(round_shift(b * c + a * s, 15));
    }
}

/// Index of the largest value, ties to the lowest index; 0 for an empty slice.
pub fn argmax(v: &[i32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Whether an integer halting logit says "halt" (the reference halts when `q_halt > 0`; the
/// integer logit has a positive scale, so the sign is the same).
#[inline]
pub const fn q_halt_positive(q: i32) -> bool {
    q > 0
}
