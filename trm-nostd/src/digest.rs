//! Digests that golden files use to compare runs on different machines.
//!
//! The digest is 32-bit FNV-1a (offset basis `0x811c9dc5`, prime `0x01000193`) over a byte
//! stream: for f32 slices, the little-endian bytes of each value's bit pattern (`to_bits`), so
//! two slices have the same digest only if (barring collisions) they are equal bit for bit —
//! `0.0` and `-0.0` differ, as do NaN payloads; for token slices, the bytes themselves.
//! A digest is not a checksum against tampering: it detects accidental differences between a
//! host run and a device run.

/// FNV-1a 32-bit offset basis.
pub const FNV_OFFSET: u32 = 0x811c_9dc5;
/// FNV-1a 32-bit prime.
pub const FNV_PRIME: u32 = 0x0100_0193;

/// An incremental FNV-1a 32 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u32);

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    /// The empty digest (the offset basis).
    pub const fn new() -> Self {
        Digest(FNV_OFFSET)
    }

    /// Feeds bytes.
    pub fn bytes(mut self, data: &[u8]) -> Self {
        for &b in data {
            self.0 ^= b as u32;
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// Feeds f32 values by bits, little-endian.
    pub fn f32s(mut self, data: &[f32]) -> Self {
        for v in data {
            self = self.bytes(&v.to_bits().to_le_bytes());
        }
        self
    }

    /// Feeds i16 values, little-endian bytes of each.
    pub fn i16s(mut self, data: &[i16]) -> Self {
        for v in data {
            self = self.bytes(&v.to_le_bytes());
        }
        self
    }

    /// The digest value.
    pub const fn value(self) -> u32 {
        self.0
    }
}

/// FNV-1a 32 of the bit patterns of `data` (little-endian bytes of each `to_bits()`).
pub fn digest_f32(data: &[f32]) -> u32 {
    Digest::new().f32s(data).value()
}

/// FNV-1a 32 of an i16 slice (the little-endian bytes of each value): the fixed engine's
/// int16 states.
pub fn digest_i16(data: &[i16]) -> u32 {
    Digest::new().i16s(data).value()
}

/// FNV-1a 32 of a token slice.
pub fn digest_tokens(tokens: &[u8]) -> u32 {
    Digest::new().bytes(tokens).value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        // Published FNV-1a 32 test vectors.
        assert_eq!(digest_tokens(b""), 0x811c_9dc5);
        assert_eq!(digest_tokens(b"a"), 0xe40c_292c);
        assert_eq!(digest_tokens(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn f32_digest_is_by_bits_little_endian() {
        let v = [1.0f32, -0.0, 3.5];
        let mut bytes = [0u8; 12];
        for (c, x) in bytes.chunks_exact_mut(4).zip(v) {
            c.copy_from_slice(&x.to_bits().to_le_bytes());
        }
        assert_eq!(digest_f32(&v), digest_tokens(&bytes));
        assert_ne!(digest_f32(&[0.0]), digest_f32(&[-0.0]));
        // Streaming equals one shot.
        assert_eq!(
            Digest::new().f32s(&v[..1]).f32s(&v[1..]).value(),
            digest_f32(&v)
        );
    }

    #[test]
    fn i16_digest_is_little_endian_bytes() {
        let v = [1i16, -2, 0x1234];
        let bytes = [0x01u8, 0x00, 0xfe, 0xff, 0x34, 0x12];
        assert_eq!(digest_i16(&v), digest_tokens(&bytes));
        assert_ne!(digest_i16(&[1, 0]), digest_i16(&[0, 1]));
        assert_eq!(
            Digest::new().i16s(&v[..2]).i16s(&v[2..]).value(),
            digest_i16(&v)
        );
    }
}
