//! CRC-32C (Castagnoli), as TFRecord framing and the checkpoint manifests use it.
//!
//! The CRC itself is trm-reference's ([`trm_reference::run_checkpoint::Crc32c`]), the one that
//! verifies the manifests on reading; this module adds TFRecord's masking.

pub use trm_reference::run_checkpoint::{Crc32c, crc32c};

/// TFRecord's masked CRC: `((crc >> 15) | (crc << 17)) + 0xa282ead8`, wrapping.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_check_values() {
        // TFRecord's mask, ((crc >> 15) | (crc << 17)) + 0xa282ead8, of the CRC catalogue's
        // CRC-32/ISCSI check value 0xE3069283 and of the empty input's 0 (computed apart).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        assert_eq!(masked_crc32c(b""), 0xA282_EAD8);
    }
}
