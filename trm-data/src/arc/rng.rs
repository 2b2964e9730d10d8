//! NumPy's legacy `RandomState` (MT19937), the random stream of the reference builder.

use std::fmt;

/// NumPy's legacy global random state (`np.random.seed` / `RandomState`): MT19937 with
/// NumPy's bounded-integer algorithms, so that the draws equal the reference builder's.
///
/// Only what the ARC builder uses: [`seed`](Self::seed) (integer seeding, `init_genrand`),
/// [`randint`](Self::randint) (masked rejection sampling, `RandomState.randint`),
/// [`shuffle`](Self::shuffle) and [`permutation`](Self::permutation) (Fisher-Yates from the end
/// with `random_interval`).
#[derive(Clone)]
pub struct NumpyLegacyRng {
    key: [u32; 624],
    pos: usize,
}

impl fmt::Debug for NumpyLegacyRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NumpyLegacyRng")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl NumpyLegacyRng {
    const N: usize = 624;
    const M: usize = 397;

    /// `np.random.seed(seed)` for an integer seed in `0..2^32`.
    pub fn seed(seed: u32) -> Self {
        let mut key = [0u32; 624];
        let mut s = seed;
        for (i, k) in key.iter_mut().enumerate() {
            *k = s;
            // Knuth's multiplier, as mt19937_seed / init_genrand (i < 624 fits in u32).
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(i as u32 + 1);
        }
        Self { key, pos: Self::N }
    }

    fn generate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..Self::N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % Self::N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.key[i] = self.key[(i + Self::M) % Self::N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output (tempered), NumPy's `next_uint32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == Self::N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A uniform integer in `0..=max` by masked rejection (NumPy's `random_interval`).
    pub fn random_interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `np.random.randint(low, high)`: uniform in `low..high`; draws nothing when
    /// `high == low + 1`. Returns `None` when the range is empty (NumPy raises).
    pub fn randint(&mut self, low: u32, high: u32) -> Option<u32> {
        if high <= low {
            return None;
        }
        // Same masked rejection as random_interval (NumPy's buffered_bounded_masked_uint32).
        Some(low + self.random_interval(high - 1 - low))
    }

    /// `np.random.shuffle(x)` for a list or a 1-D array.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // Puzzle lists hold far fewer than 2^32 items.
            let j = self.random_interval(i as u32) as usize;
            items.swap(i, j);
        }
    }

    /// `np.random.permutation(items)`: a shuffled copy.
    pub fn permutation<T: Clone>(&mut self, items: &[T]) -> Vec<T> {
        let mut v = items.to_vec();
        self.shuffle(&mut v);
        v
    }
}
