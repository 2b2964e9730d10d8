//! NumPy's `np.random.Generator(np.random.Philox(seed))`, bit for bit.
//!
//! The reference trainer (`puzzle_dataset.py`, `_iter_train`) shuffles groups and picks puzzles
//! with `np.random.Generator(np.random.Philox(seed=config.seed + iters))`. To sample the same
//! batches in the same order, this module reproduces the three layers NumPy stacks there:
//!
//! 1. [`SeedSequence`]: NumPy's entropy mixer (`numpy/random/bit_generator.pyx`) turning an
//!    integer seed into the Philox key (`generate_state(2, np.uint64)`);
//! 2. [`Philox`]: the Philox4x64-10 counter-based generator of Random123 with NumPy's
//!    buffering (four 64-bit words per counter step, 32-bit draws taken as the low then the
//!    high half of one 64-bit word);
//! 3. [`NumpyGenerator`]: the bounded draws `Generator.permutation(n)` (Fisher-Yates from the
//!    end with masked rejection, `random_interval`) and `Generator.integers(low, high)`
//!    (Lemire's multiply-shift with rejection, `buffered_bounded_lemire_uint32`/`_uint64`).
//!
//! Only these draws are implemented; they are checked against values NumPy 2.4 printed (see
//! `tests/fixtures/data/gen_reference_batches.py`).

/// Mixing constants of NumPy's `SeedSequence` (`bit_generator.pyx`), from Melissa O'Neill's
/// `seed_seq_fe` design.
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
/// Half the bit width of a pool word.
const XSHIFT: u32 = 16;
/// Words in the entropy pool (`DEFAULT_POOL_SIZE`).
const POOL_SIZE: usize = 4;

/// NumPy's `SeedSequence(entropy)` for a non-negative integer entropy and no spawn key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

impl SeedSequence {
    /// `np.random.SeedSequence(seed)` for an integer `seed >= 0`.
    pub fn new(seed: u128) -> Self {
        // `_coerce_to_uint32_array`: little-endian 32-bit words, at least one.
        let mut entropy = Vec::new();
        let mut s = seed;
        loop {
            entropy.push((s & 0xffff_ffff) as u32);
            s >>= 32;
            if s == 0 {
                break;
            }
        }
        let mut hash_const = INIT_A;
        let mut hashmix = |value: u32| -> u32 {
            let mut v = value ^ hash_const;
            hash_const = hash_const.wrapping_mul(MULT_A);
            v = v.wrapping_mul(hash_const);
            v ^ (v >> XSHIFT)
        };
        let mix = |x: u32, y: u32| -> u32 {
            let r = MIX_MULT_L
                .wrapping_mul(x)
                .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
            r ^ (r >> XSHIFT)
        };
        let mut pool = [0u32; POOL_SIZE];
        for (i, p) in pool.iter_mut().enumerate() {
            *p = hashmix(entropy.get(i).copied().unwrap_or(0));
        }
        for i_src in 0..POOL_SIZE {
            for i_dst in 0..POOL_SIZE {
                if i_src != i_dst {
                    let h = hashmix(pool[i_src]);
                    pool[i_dst] = mix(pool[i_dst], h);
                }
            }
        }
        for &word in entropy.iter().skip(POOL_SIZE) {
            for p in pool.iter_mut() {
                let h = hashmix(word);
                *p = mix(*p, h);
            }
        }
        Self { pool }
    }

    /// `generate_state(n_words, np.uint32)`.
    pub fn generate_state_u32(&self, n_words: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        (0..n_words)
            .map(|i| {
                let mut v = self.pool[i % POOL_SIZE] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect()
    }

    /// `generate_state(n_words, np.uint64)`: pairs of 32-bit words, low word first.
    pub fn generate_state_u64(&self, n_words: usize) -> Vec<u64> {
        self.generate_state_u32(2 * n_words)
            .chunks_exact(2)
            .map(|w| u64::from(w[0]) | (u64::from(w[1]) << 32))
            .collect()
    }
}

/// Philox4x64 multipliers and Weyl key increments (Random123).
const PHILOX_M0: u64 = 0xD2E7_470E_E14C_6C93;
const PHILOX_M1: u64 = 0xCA5A_8263_9512_1157;
const PHILOX_W0: u64 = 0x9E37_79B9_7F4A_7C15;
const PHILOX_W1: u64 = 0xBB67_AE85_84CA_A73B;
/// Rounds of NumPy's Philox (Philox4x64-10).
const PHILOX_ROUNDS: usize = 10;

fn mulhilo(a: u64, b: u64) -> (u64, u64) {
    let p = u128::from(a) * u128::from(b);
    ((p >> 64) as u64, p as u64)
}

/// NumPy's `np.random.Philox` bit generator (Philox4x64-10, counter starting at 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Philox {
    ctr: [u64; 4],
    key: [u64; 2],
    buffer: [u64; 4],
    buffer_pos: usize,
    /// NumPy keeps the high half of a 64-bit word for the next 32-bit draw.
    spare_u32: Option<u32>,
}

impl Philox {
    /// `np.random.Philox(seed=seed)` for an integer `seed >= 0`.
    pub fn new(seed: u128) -> Self {
        let key = SeedSequence::new(seed).generate_state_u64(2);
        Self::from_key([key[0], key[1]])
    }

    /// `np.random.Philox(key=key)` (counter 0, empty buffer).
    pub fn from_key(key: [u64; 2]) -> Self {
        Self {
            ctr: [0; 4],
            key,
            buffer: [0; 4],
            buffer_pos: 4,
            spare_u32: None,
        }
    }

    /// The Philox4x64-10 block function of counter `ctr` under `key`.
    fn block(mut ctr: [u64; 4], mut key: [u64; 2]) -> [u64; 4] {
        for round in 0..PHILOX_ROUNDS {
            if round > 0 {
                key[0] = key[0].wrapping_add(PHILOX_W0);
                key[1] = key[1].wrapping_add(PHILOX_W1);
            }
            let (hi0, lo0) = mulhilo(PHILOX_M0, ctr[0]);
            let (hi1, lo1) = mulhilo(PHILOX_M1, ctr[2]);
            ctr = [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0];
        }
        ctr
    }

    /// The next 64-bit word (`next_uint64`, `random_raw`).
    pub fn next_u64(&mut self) -> u64 {
        if self.buffer_pos < 4 {
            let out = self.buffer[self.buffer_pos];
            self.buffer_pos += 1;
            return out;
        }
        // Increment the 256-bit counter first, then encrypt (as NumPy's philox_next).
        for word in self.ctr.iter_mut() {
            *word = word.wrapping_add(1);
            if *word != 0 {
                break;
            }
        }
        self.buffer = Self::block(self.ctr, self.key);
        self.buffer_pos = 1;
        self.buffer[0]
    }

    /// The next 32-bit draw (`next_uint32`): low half of a fresh 64-bit word, its high half
    /// kept for the following call.
    pub fn next_u32(&mut self) -> u32 {
        if let Some(v) = self.spare_u32.take() {
            return v;
        }
        let next = self.next_u64();
        self.spare_u32 = Some((next >> 32) as u32);
        next as u32
    }
}

/// `np.random.Generator(np.random.Philox(seed))` with the draws the reference dataset uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumpyGenerator {
    bits: Philox,
}

impl NumpyGenerator {
    /// `np.random.Generator(np.random.Philox(seed=seed))`.
    pub fn philox(seed: u128) -> Self {
        Self {
            bits: Philox::new(seed),
        }
    }

    /// The underlying bit generator.
    pub fn bit_generator(&mut self) -> &mut Philox {
        &mut self.bits
    }

    /// NumPy's `random_interval(max)`: uniform in `0..=max` by masking to the smallest
    /// covering power of two and rejecting values above `max` (32-bit draws when `max` fits).
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u64::from(u32::MAX) {
            loop {
                let v = u64::from(self.bits.next_u32()) & mask;
                if v <= max {
                    return v;
                }
            }
        } else {
            loop {
                let v = self.bits.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// `Generator.permutation(n)`: `arange(n)` shuffled by Fisher-Yates from the end
    /// (`Generator.shuffle`).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            // usize -> u64 is lossless on every supported target, and j <= i.
            let j = self.random_interval(i as u64) as usize;
            v.swap(i, j);
        }
        v
    }

    /// `Generator.integers(low, high)` (int64, `high` excluded): uniform in `low..high`.
    /// Draws nothing when `high == low + 1`. `None` when the range is empty (NumPy raises).
    pub fn integers(&mut self, low: i64, high: i64) -> Option<i64> {
        if high <= low {
            return None;
        }
        // rng = high - 1 - low as uint64, as _rand_int64 computes it.
        let rng = (high as u64).wrapping_sub(1).wrapping_sub(low as u64);
        let v = if rng == 0 {
            0
        } else if rng < u64::from(u32::MAX) {
            u64::from(self.bounded_lemire_u32(rng as u32))
        } else if rng == u64::from(u32::MAX) {
            u64::from(self.bits.next_u32())
        } else if rng == u64::MAX {
            self.bits.next_u64()
        } else {
            self.bounded_lemire_u64(rng)
        };
        Some((low as u64).wrapping_add(v) as i64)
    }

    /// `buffered_bounded_lemire_uint32`: uniform in `0..=rng`, `rng < u32::MAX`.
    fn bounded_lemire_u32(&mut self, rng: u32) -> u32 {
        let rng_excl = rng + 1;
        let mut m = u64::from(self.bits.next_u32()) * u64::from(rng_excl);
        let mut leftover = m as u32;
        if leftover < rng_excl {
            let threshold = (u32::MAX - rng) % rng_excl;
            while leftover < threshold {
                m = u64::from(self.bits.next_u32()) * u64::from(rng_excl);
                leftover = m as u32;
            }
        }
        (m >> 32) as u32
    }

    /// `bounded_lemire_uint64`: uniform in `0..=rng`, `u32::MAX < rng < u64::MAX`.
    fn bounded_lemire_u64(&mut self, rng: u64) -> u64 {
        let rng_excl = u128::from(rng + 1);
        let mut m = u128::from(self.bits.next_u64()) * rng_excl;
        let mut leftover = m as u64;
        if u128::from(leftover) < rng_excl {
            let threshold = (u64::MAX - rng) % (rng + 1);
            while leftover < threshold {
                m = u128::from(self.bits.next_u64()) * rng_excl;
                leftover = m as u64;
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `np.random.Philox(seed=5).state["state"]["key"]` and its first raw outputs, printed by
    /// NumPy 2.4.6.
    #[test]
    fn philox_seed_5_matches_numpy() {
        let key = SeedSequence::new(5).generate_state_u64(2);
        assert_eq!(key, vec![12631478326263854183, 4464650224815488352]);
        let mut p = Philox::new(5);
        let raw: Vec<u64> = (0..5).map(|_| p.next_u64()).collect();
        assert_eq!(
            raw,
            vec![
                0xdb8a4d5edd3ecd25,
                0xecd2d645266ca8cb,
                0x6bdf0392cf928043,
                0x2bba74199c501b76,
                0x895eaa150ce5c147
            ]
        );
    }

    #[test]
    fn integers_edge_ranges() {
        let mut g = NumpyGenerator::philox(1);
        assert_eq!(g.integers(3, 3), None);
        let before = g.clone();
        assert_eq!(g.integers(7, 8), Some(7));
        assert_eq!(g, before, "a single-value range draws nothing");
        for _ in 0..100 {
            let v = g.integers(-5, 9).unwrap_or(i64::MIN);
            assert!((-5..9).contains(&v));
        }
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut g = NumpyGenerator::philox(9);
        let mut p = g.permutation(50);
        p.sort_unstable();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }
}
