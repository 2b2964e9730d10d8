//! The high half of a 64 x 64-bit product, which the exact divisions by a reciprocal use
//! ([`super::attention::DivRound`], [`super::activation::rms_norm_fast`]): one 128-bit
//! multiplication on 64-bit targets, four 32-bit ones on 32-bit cores (where a 128-bit product
//! is a library call).

/// The high 64 bits of the 128-bit product `x m` (on 32-bit targets, where a 128-bit product
/// is a library call, from four 32-bit multiplies: [`mul_hi64_split`]).
#[inline(always)]
pub(super) fn mul_hi64(x: u64, m: u64) -> u64 {
    if cfg!(target_pointer_width = "64") {
        ((x as u128 * m as u128) >> 64) as u64
    } else {
        mul_hi64_split(x, m)
    }
}

/// [`mul_hi64`] from 32-bit halves: `x m = hh 2^64 + (hl + lh) 2^32 + ll`, the middle terms
/// split so that every partial sum fits a `u64`.
#[inline(always)]
fn mul_hi64_split(x: u64, m: u64) -> u64 {
    let (xl, xh) = (x & 0xFFFF_FFFF, x >> 32);
    let (ml, mh) = (m & 0xFFFF_FFFF, m >> 32);
    let (ll, lh, hl, hh) = (xl * ml, xl * mh, xh * ml, xh * mh);
    let mid = (ll >> 32) + (lh & 0xFFFF_FFFF) + (hl & 0xFFFF_FFFF);
    hh + (lh >> 32) + (hl >> 32) + (mid >> 32)
}

#[cfg(test)]
mod tests {
    use super::mul_hi64_split;

    #[test]
    fn mul_hi64_split_is_the_high_half_of_the_128_bit_product() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let edges = [
            0u64,
            1,
            u32::MAX as u64,
            1 << 32,
            (1 << 62) - 1,
            u64::MAX / 3,
            u64::MAX,
        ];
        let mut pairs: Vec<(u64, u64)> = Vec::new();
        for &a in &edges {
            for &b in &edges {
                pairs.push((a, b));
            }
        }
        pairs.extend((0..10_000).map(|_| (next(), next())));
        for (a, b) in pairs {
            assert_eq!(mul_hi64_split(a, b), ((a as u128 * b as u128) >> 64) as u64);
        }
    }
}
