//! Fuzzes `Model::parse`: it must never panic, and an accepted model must hand out only tensors
//! inside the input with the sizes their shapes need.
//!
//! Each input is parsed twice: as given, and with the metadata checksum repaired, so that the
//! fuzzer's changes to the header and directory reach the checks behind the checksum.
//!
//! Run (from `trm-nostd/`): `cargo +nightly fuzz run parse_model fuzz/corpus/parse_model
//! tests/format_data -- -max_total_time=60` (the second directory seeds it with a valid file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trm_nostd::format::{ALIGN, Model, PREAMBLE_LEN, crc32};
use trm_nostd::{TensorId, TensorSource};

fn check(bytes: &[u8]) {
    let _ = Model::file_len(bytes);
    let Ok(model) = Model::parse(bytes) else {
        return;
    };
    let base = bytes.as_ptr() as usize;
    let end = base + bytes.len();
    let config = model.config();
    assert!(config.validate().is_ok());
    let mut count = 0;
    for (id, view) in model.tensors() {
        let start = view.data.as_ptr() as usize;
        assert!(
            start >= base && start + view.data.len() <= end,
            "{id} out of bounds"
        );
        assert_eq!((start - base) % ALIGN, 0, "{id} misaligned");
        assert_eq!(view.shape, id.shape(config));
        assert_eq!(view.data.len(), view.shape.numel() * view.dtype.size());
        count += 1;
    }
    assert_eq!(count, TensorId::all(config).count());
    for id in TensorId::all(config) {
        assert!(model.tensor(id).is_some(), "{id} not found");
    }
    let _ = model.summary();
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= PREAMBLE_LEN {
        let mut fixed = data.to_vec();
        let payload_offset = u32::from_le_bytes([data[16], data[17], data[18], data[19]]) as usize;
        let end = payload_offset.clamp(PREAMBLE_LEN, data.len());
        let crc = crc32(&fixed[PREAMBLE_LEN..end]);
        fixed[20..24].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
