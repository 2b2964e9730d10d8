//! Helpers shared by the `format_*` tests: small configs, random weights, and a way to take a
//! valid file apart and put it back together (with fresh checksums) after changing one field.
#![allow(dead_code)]

use trm_nostd::format::{
    ALIGN, DirEntry, ENTRY_LEN, Header, ModelWriter, NumericScheme, PREAMBLE_LEN, crc32,
};
use trm_nostd::{Config, DType, PosEncoding, TensorId};

/// A small mlp_t config (no positions, puzzle prefix of 2 tokens).
pub fn tiny_mlp_t() -> Config {
    let mut c = Config::sudoku_mlp_t();
    c.hidden_size = 16;
    c.num_heads = 2;
    c.expansion = 1.0;
    c.puzzle_emb_ndim = 20;
    c.puzzle_emb_len = 2;
    c.num_puzzle_identifiers = 3;
    c.seq_len = 6;
    c.vocab_size = 5;
    c
}

/// A small attention config with the given positions.
pub fn tiny_attention(pos: PosEncoding) -> Config {
    let mut c = tiny_mlp_t();
    c.mlp_t = false;
    c.pos_encodings = pos;
    c.num_heads = 4;
    c.l_layers = 3;
    c
}

/// The smallest config the fuzz tests mutate: one block, D = 8, no puzzle embedding.
pub fn micro() -> Config {
    let mut c = tiny_mlp_t();
    c.hidden_size = 8;
    c.l_layers = 1;
    c.puzzle_emb_ndim = 0;
    c.puzzle_emb_len = 1;
    c.seq_len = 3;
    c.mlp_t = false;
    c.pos_encodings = PosEncoding::Learned;
    c
}

/// SplitMix64: a tiny deterministic generator, so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale), with every f32 mantissa bit exercised.
    pub fn weight(&mut self, scale: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * scale
    }
}

/// Random values for every tensor of `config`, in `TensorId::all` order.
pub fn random_weights(config: &Config, seed: u64) -> Vec<(TensorId, Vec<f32>)> {
    let mut rng = Rng(seed);
    TensorId::all(config)
        .enumerate()
        .map(|(i, id)| {
            // Scales from 2^-6 to 2^5 so that f16 sees small and large exponents.
            let scale = (2.0f32).powi((i % 12) as i32 - 6);
            let n = id.shape(config).numel();
            (id, (0..n).map(|_| rng.weight(scale)).collect())
        })
        .collect()
}

/// A valid file of `config` in `dtype` with random weights.
pub fn build(config: &Config, dtype: DType, seed: u64) -> Vec<u8> {
    let weights = random_weights(config, seed);
    let mut w = ModelWriter::new(*config, NumericScheme::Float(dtype)).expect("valid config");
    for (id, v) in &weights {
        w.add(*id, v).expect("valid tensor");
    }
    w.finish().expect("complete model")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A file taken apart. `entries` keep absolute offsets of the original layout; `assemble`
/// shifts them if the metadata changes size.
#[derive(Debug, Clone)]
pub struct Parts {
    pub version: u16,
    pub flags: u16,
    pub header: Header,
    pub entries: Vec<DirEntry>,
    /// Bytes from the original payload offset to the end.
    pub payload: Vec<u8>,
    pub payload_offset: u32,
}

/// Splits a valid file (panics on an invalid one: test helper).
pub fn split(bytes: &[u8]) -> Parts {
    let header_len = u32_at(bytes, 12) as usize;
    let payload_offset = u32_at(bytes, 16);
    let (header, rest) =
        postcard::take_from_bytes::<Header>(&bytes[PREAMBLE_LEN..PREAMBLE_LEN + header_len])
            .unwrap();
    assert!(rest.is_empty());
    let dir_start = PREAMBLE_LEN + header_len;
    let entries = (0..header.tensor_count as usize)
        .map(|i| {
            let at = dir_start + i * ENTRY_LEN;
            DirEntry::decode(bytes[at..at + ENTRY_LEN].try_into().unwrap())
        })
        .collect();
    Parts {
        version: u16::from_le_bytes([bytes[8], bytes[9]]),
        flags: u16::from_le_bytes([bytes[10], bytes[11]]),
        header,
        entries,
        payload: bytes[payload_offset as usize..].to_vec(),
        payload_offset,
    }
}

/// Options for [`assemble`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Fix {
    /// Keep `header.tensor_count` as given instead of setting it to `entries.len()`.
    pub keep_count: bool,
    /// Keep `header.payload_len` / `payload_crc` as given instead of recomputing them.
    pub keep_payload_fields: bool,
}

/// Puts a file back together with a consistent layout and fresh checksums, so that exactly the
/// field a test changed is wrong.
pub fn assemble(p: &Parts, fix: Fix) -> Vec<u8> {
    let mut header = p.header;
    if !fix.keep_count {
        header.tensor_count = p.entries.len() as u32;
    }
    if !fix.keep_payload_fields {
        header.payload_len = p.payload.len() as u32;
        header.payload_crc = crc32(&p.payload);
    }
    let hb = postcard::to_stdvec(&header).unwrap();
    let dir_end = PREAMBLE_LEN + hb.len() + p.entries.len() * ENTRY_LEN;
    let payload_offset = dir_end.div_ceil(ALIGN) * ALIGN;
    let shift = payload_offset as i64 - p.payload_offset as i64;
    let mut out = Vec::new();
    out.extend_from_slice(&trm_nostd::format::MAGIC);
    out.extend_from_slice(&p.version.to_le_bytes());
    out.extend_from_slice(&p.flags.to_le_bytes());
    out.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload_offset as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&hb);
    for e in &p.entries {
        let mut e = *e;
        e.offset = (e.offset as i64 + shift) as u32;
        out.extend_from_slice(&e.encode());
    }
    out.resize(payload_offset, 0);
    fix_meta_crc(&mut out);
    out.extend_from_slice(&p.payload);
    out
}

/// Recomputes the metadata checksum from the preamble's payload offset (clamped to the file).
pub fn fix_meta_crc(bytes: &mut [u8]) {
    if bytes.len() < PREAMBLE_LEN {
        return;
    }
    let end = (u32_at(bytes, 16) as usize).clamp(PREAMBLE_LEN, bytes.len());
    let c = crc32(&bytes[PREAMBLE_LEN..end]);
    bytes[20..24].copy_from_slice(&c.to_le_bytes());
}

/// Index of the directory entry of `id`.
pub fn entry_index(p: &Parts, id: TensorId) -> usize {
    p.entries.iter().position(|e| e.id() == Some(id)).unwrap()
}
