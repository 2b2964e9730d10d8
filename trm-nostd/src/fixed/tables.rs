//! The quantization tables of a `Fixed` model file: their layouts, shared by the exporter (which
//! writes them) and the engine (which reads them in place).
//!
//! A table is a run of little-endian `i32` words; `i16` tables inside it are packed two per
//! word (entry `2k` in the low half), padded with a zero half to a whole word. Which tensor
//! carries which table:
//!
//! | tensor | table words |
//! |---|---|
//! | `embed_tokens` (I16, x units) | the [global block](GLOBAL_WORDS): [`TAG`] (or [`TAG_EXACT_PRODUCTS`]), input requant of `z + y + x` (`ma`, `mb`, `shift`), input requant of `y + z` (`mult`, `shift`), the x, state and net-input scales as f32 bits, `P`; then `P` Q15 cosines and `P` Q15 sines (`P = seq_total * head_dim / 2`, 0 without RoPE) |
//! | `lm_head`, `q_head.weight` (I8) | [channel block](channel_words), then the output scale as f32 bits |
//! | SwiGLU `gate_up` (I8, `mlp` and `mlp_t`) | channel block (gate rows to the gate scale, up rows to the up scale), the product requant `silu(gate) * up` (`mult`, `shift`), then the SiLU knots (gate scale in and out): [`SILU_TABLE_LEN`] = 257 classic, or `2^b + 1` up to 4097 ([`gate_up_silu_knots`]) |
//! | `qkv_proj` (I8) | channel block (q, k, v rows to their scales), then the score requant `q . k` to Q16 `log2(e) * score / sqrt(hd)` (`mult`, `shift`) |
//! | SwiGLU `down`, `o_proj` (I8) | channel block (to the block input's scale: the residual), then the RMSNorm eps term as two words (low, high) |
//!
//! The channel block of a matrix of `R` rows: `R`, then `R` pairs (`mult`, `shift`) of
//! [`Requant`]: `1 + 2 R` words. Embeddings, `puzzle_emb`, `H_init`, `L_init` are I16 without a
//! table; `q_head.bias` is I32 at the q_head output scale.

#[allow(unused_imports)] // rustdoc links
use super::kernels::silu_knot_bits;
use super::kernels::{
    I16Table, Requant, Requant2, SILU_KNOT_BITS_MAX, SILU_KNOT_BITS_MIN, SILU_TABLE_LEN,
    silu_table_len,
};

/// First word of the global block: "FIX1".
pub const TAG: i32 = i32::from_le_bytes(*b"FIX1");

/// First word of the global block of a file with exact SwiGLU products: "FIX2". The layout is
/// [`TAG`]'s; only the SwiGLU changes: `silu(gate) * up` is not requantized to int16 but kept
/// exact (`i32`) into the `down` projection ([`kernels::dot_w8_prod`](super::kernels::dot_w8_prod)),
/// whose `i128` total then takes the product requant and the channel requant in turn. Builds
/// that predate it refuse such files (an invalid table) rather than misread them.
pub const TAG_EXACT_PRODUCTS: i32 = i32::from_le_bytes(*b"FIX2");

/// Words of the global block before the RoPE tables.
pub const GLOBAL_WORDS: usize = 10;

/// Words of the channel block of a matrix of `rows` rows.
pub const fn channel_words(rows: usize) -> usize {
    1 + 2 * rows
}

/// Words holding `n` packed `i16` values.
pub const fn i16_words(n: usize) -> usize {
    n.div_ceil(2)
}

/// Words of a SwiGLU `gate_up` table with the classic 257-knot SiLU table.
pub const fn gate_up_words(rows: usize) -> usize {
    gate_up_words_knots(rows, SILU_TABLE_LEN)
}

/// Words of a SwiGLU `gate_up` table whose SiLU table has `knots` entries.
pub const fn gate_up_words_knots(rows: usize, knots: usize) -> usize {
    channel_words(rows) + 2 + i16_words(knots)
}

/// The SiLU knots of a `gate_up` table of `words` words for `rows` rows: the `2^b + 1` (see
/// [`silu_knot_bits`]) that makes the length exact, or `None`.
pub const fn gate_up_silu_knots(rows: usize, words: usize) -> Option<usize> {
    let mut b = SILU_KNOT_BITS_MIN;
    while b <= SILU_KNOT_BITS_MAX {
        let knots = silu_table_len(b);
        if words == gate_up_words_knots(rows, knots) {
            return Some(knots);
        }
        b += 1;
    }
    None
}

/// Words of a `qkv_proj` table.
pub const fn qkv_words(rows: usize) -> usize {
    channel_words(rows) + 2
}

/// Words of a `down` / `o_proj` table.
pub const fn down_words(rows: usize) -> usize {
    channel_words(rows) + 2
}

/// Words of an `lm_head` / `q_head.weight` table.
pub const fn head_words(rows: usize) -> usize {
    channel_words(rows) + 1
}

/// A table borrowed from the model file, read word by word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Words<'a>(pub &'a [u8]);

impl<'a> Words<'a> {
    /// Number of whole words.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    /// Whether there is no whole word.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Word `i` (0 when out of range; the engine checks lengths when it loads a model).
    #[inline]
    pub fn word(&self, i: usize) -> i32 {
        match self.0.get(4 * i..4 * i + 4) {
            Some(b) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    /// Word `i` as unsigned.
    pub fn uword(&self, i: usize) -> u32 {
        self.word(i) as u32
    }

    /// The [`Requant`] in words `i, i + 1`.
    #[inline]
    pub fn requant(&self, i: usize) -> Requant {
        Requant {
            mult: self.word(i),
            shift: self.uword(i + 1),
        }
    }

    /// The [`Requant2`] in words `i..i + 3`.
    pub fn requant2(&self, i: usize) -> Requant2 {
        Requant2 {
            ma: self.word(i),
            mb: self.word(i + 1),
            shift: self.uword(i + 2),
        }
    }

    /// The requant of output channel `o` of a channel block at word 0.
    #[inline]
    pub fn channel(&self, o: usize) -> Requant {
        self.requant(1 + 2 * o)
    }

    /// The `i16` table of `n` entries starting at word `i`.
    pub fn i16s(&self, i: usize, n: usize) -> I16Table<'a> {
        let start = (4 * i).min(self.0.len());
        let end = (start + 2 * n).min(self.0.len());
        I16Table(&self.0[start..end])
    }

    /// Words `i` (low) and `i + 1` (high) as a `u64`.
    pub fn u64_at(&self, i: usize) -> u64 {
        self.uword(i) as u64 | (self.uword(i + 1) as u64) << 32
    }

    /// The words from `i` on.
    pub fn from(&self, i: usize) -> Words<'a> {
        Words(self.0.get(4 * i..).unwrap_or(&[]))
    }

    /// Whether words `1..1 + 2 rows` are valid requants and word 0 equals `rows`.
    pub fn channel_block_valid(&self, rows: usize) -> bool {
        self.word(0) as i64 == rows as i64
            && self.len() >= channel_words(rows)
            && (0..rows).all(|o| self.channel(o).is_valid())
    }
}

/// Appends words to a table (export side).
#[cfg(feature = "std")]
pub fn push_words(out: &mut std::vec::Vec<u8>, words: &[i32]) {
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// Appends packed `i16` values, padded to a whole word (export side).
#[cfg(feature = "std")]
pub fn push_i16s(out: &mut std::vec::Vec<u8>, values: &[i16]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if values.len() % 2 == 1 {
        out.extend_from_slice(&[0, 0]);
    }
}
