//! Mutated quantized (format version 2) files never panic: not in `Model::parse`, not in
//! `FixedEngine::new`, and not in an ACT step of whatever the engine accepts. Payload mutations
//! have their checksum repaired half of the time, so that corrupt tables reach the engine.

use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;
use trm_export::quantize::{QuantizeOptions, calibrate, quantize};
use trm_nostd::float::OwnedWeights;
use trm_nostd::format::{Header, Model, crc32};
use trm_nostd::{Config, DType, Engine, FixedEngine, PosEncoding};

fn bases() -> &'static [Vec<u8>] {
    static B: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    B.get_or_init(|| {
        [(true, PosEncoding::None), (false, PosEncoding::Rope)]
            .into_iter()
            .map(|(mlp_t, pos)| {
                let c = Config {
                    hidden_size: 8,
                    num_heads: 2,
                    expansion: 1.0,
                    l_layers: 1,
                    h_cycles: 1,
                    l_cycles: 1,
                    mlp_t,
                    pos_encodings: pos,
                    puzzle_emb_ndim: 8,
                    puzzle_emb_len: 1,
                    num_puzzle_identifiers: 2,
                    vocab_size: 4,
                    seq_len: 3,
                    halt_max_steps: 2,
                    rms_norm_eps: 1e-5,
                    rope_theta: 10000.0,
                };
                let w = OwnedWeights::random(&c, 7, DType::F32);
                let cal = calibrate(&c, &w.source(), &[(vec![1, 2, 3], 1)], 2).unwrap();
                quantize(&c, &w.source(), &cal, &QuantizeOptions::default()).unwrap()
            })
            .collect()
    })
}

/// Recomputes both checksums (payload CRC in the header, then the metadata CRC).
fn repair(b: &mut [u8]) {
    if b.len() < 24 {
        return;
    }
    let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let payload_offset = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
    if payload_offset > b.len() || 24 + header_len > payload_offset {
        return;
    }
    let Ok((mut h, [])) = postcard::take_from_bytes::<Header>(&b[24..24 + header_len]) else {
        return;
    };
    h.payload_crc = crc32(&b[payload_offset..]);
    let Ok(enc) = postcard::to_stdvec(&h) else {
        return;
    };
    if enc.len() != header_len {
        return;
    }
    b[24..24 + header_len].copy_from_slice(&enc);
    let meta = crc32(&b[24..payload_offset]);
    b[20..24].copy_from_slice(&meta.to_le_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]
    #[test]
    fn mutated_fixed_files_never_panic(
        which in 0usize..2,
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        fix in any::<bool>(),
        tokens in prop::collection::vec(0u8..6, 3),
    ) {
        let mut b = bases()[which].clone();
        for (i, v) in &edits {
            let at = i.index(b.len());
            b[at] = *v;
        }
        if fix {
            repair(&mut b);
        }
        if let Ok(m) = Model::parse(&b) {
            let need = FixedEngine::scratch_len(m.config());
            let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
            if let Ok(mut e) = FixedEngine::new(&m, &mut s16, &mut s32)
                && e.start(&tokens, 1).is_ok()
            {
                e.step();
                let mut out = vec![0u8; 3];
                let _ = e.predict(&mut out);
            }
        }
    }
}
