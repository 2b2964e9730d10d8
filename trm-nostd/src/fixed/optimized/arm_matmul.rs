//! Blocked matrix products on Arm with the DSP extension (Cortex-M4/M7/M33). int8 weights:
//! four activation rows per weight row pass, their values packed once per product into the
//! scratch so that the inner loop is loads and dual multiply-accumulates only; one activation
//! row: three weight rows per pass. int16 weights ([`each_output_w16`]): three weight rows per
//! pass over each activation row in place, `SMLALD`.
//!
//! # Packing
//!
//! The activation rows are taken four at a time (a tile; the last one padded with zero rows).
//! For each group of four columns `4g..4g + 4` and each row `j` of the tile, two words are
//! stored: `[a_j[4g], a_j[4g + 2]]` and `[a_j[4g + 1], a_j[4g + 3]]` (halfwords, low first),
//! the pairs `SMLAD` multiplies with the sign-extended weight bytes `SXTB16 w` = `[w0, w2]` and
//! `SXTB16 w, ROR #8` = `[w1, w3]`: 16 values per group and tile, word aligned, chunk by chunk
//! of 64 groups (all tiles of a chunk, then the next chunk).
//!
//! # Inner loop (one group of four columns, four rows: 16 multiply-accumulates)
//!
//! ```text
//! LDR    w13, [wp], #4          ; four weights
//! SXTB16 w02, w13               ; [w0, w2]
//! SXTB16 w13, w13, ROR #8       ; [w1, w3]
//! LDRD   x, y, [ap], #8         ; row 0: [a0, a2], [a1, a3]
//! SMLAD  c0, w02, x, c0
//! SMLAD  c0, w13, y, c0
//! ...                           ; rows 1, 2, 3 the same
//! SUBS   n, n, #1
//! BNE    loop
//! ```
//!
//! 17 instructions per 16 multiply-accumulates (the per-output path of `dot_w8_a16` needs
//! about 3). One assembly loop runs every tile of a weight row over one `i32` chunk of 256
//! columns (16 more instructions per tile: four sums stored, the weights rewound); the tiles are
//! packed chunk-major so that each chunk's tiles follow one another. The columns past the last
//! whole group (`cols % 4`) are added by the reference.
//!
//! # One activation row (a matrix-vector product)
//!
//! With a single activation row a tile would be three quarters padding. The row is packed
//! once the same way (`[a0, a2]`, `[a1, a3]` per group, four values per group) and the weight
//! rows go three per pass, sharing each activation load ([`rows3_sums`]):
//!
//! ```text
//! LDRD   x, y, [ap], #8         ; [a0, a2], [a1, a3]
//! LDR    w13, [b0, n]           ; row 1's four weights (b0: row 0, n: the row stride)
//! SXTB16 w02, w13
//! SXTB16 w13, w13, ROR #8
//! SMLAD  c1, w02, x, c1
//! SMLAD  c1, w13, y, c1
//! LDR    w13, [b0, n, LSL #1]   ; row 2
//! ...
//! LDR    w13, [b0], #4          ; row 0, and on to the next group
//! ...
//! ```
//!
//! 16 instructions per 12 multiply-accumulates, unrolled four groups deep (the loop's compare
//! and branch once per 48), eleven registers; the rows past the last whole triple take the
//! per-output kernel.
//!
//! # Exactness
//!
//! Each accumulator is an `i32` reset every [`ACC_CHUNK`] columns (64 groups, 128 `SMLAD`s of
//! at most `2 * 128 * 2^15 = 2^23` each: `|acc| <= 2^30`), then added to an `i64`: no partial
//! sum wraps, so every output is the reference's dot product bit for bit.

use super::kernels::{ACC_CHUNK, RESIDUAL_MAX, sat_residual, sat16};
use super::matmul::{Epilogue, Matrix, Rows};
use crate::fixed::tables::Words;
use core::arch::asm;

/// Rows of a tile.
const TILE: usize = 4;

/// Whether [`matmul`] takes a product of `count` rows of `cols` with `scratch_len` values of
/// scratch: at least one whole group of columns, and room for the packed tiles (plus one value
/// to align them).
pub(super) fn fits(count: usize, cols: usize, scratch_len: usize) -> bool {
    let groups = cols / 4;
    // One row is packed alone (no padding rows), its last partial group too.
    let need = if count == 1 {
        4 * cols.div_ceil(4)
    } else {
        count.div_ceil(TILE) * TILE * 4 * groups
    };
    groups > 0 && need < scratch_len
}

/// Every output of `w` and `a` (no second rows) through `epi`, or `false` (nothing done) when
/// the product is not one this path takes (exact products; int8 weights whose packed rows do
/// not [`fits`] the scratch): the caller then runs the per-output path.
pub(super) fn matmul(
    w: &Matrix<'_>,
    a: &Rows<'_>,
    epi: &mut Epilogue<'_>,
    scratch: &mut [i16],
) -> bool {
    if a.second.is_some() || (!w.wide && !fits(a.count, w.cols, scratch.len())) {
        return false;
    }
    let groups = w.cols / 4;
    // Word-align the packed tiles (LDRD needs it). int16 weights read the rows in place.
    let skip = (scratch.as_ptr() as usize / 2) % 2;
    let packed = match scratch.get_mut(skip..) {
        Some(p) if !w.wide => {
            pack(a, groups, p);
            &*p
        }
        _ => &[][..],
    };
    let table = w.table;
    let rows = w.rows;
    // `false` (the packed rows too short; never after `fits`): the per-output path writes
    // every output again.
    match epi {
        Epilogue::Sat16 { out, stride } => outputs(
            w,
            a,
            packed,
            &mut Sat16Out {
                out,
                stride: *stride,
                table,
            },
        ),
        Epilogue::Residual {
            h,
            res,
            stride,
            product: None,
        } => outputs(
            w,
            a,
            packed,
            &mut ResidualOut {
                h,
                res,
                stride: *stride,
                table,
            },
        ),
        Epilogue::Raw { out, .. } => outputs(
            w,
            a,
            packed,
            &mut Each(|t: usize, o: usize, acc: i64| out[t * rows + o] = acc),
        ),
        // Exact products have a second set of rows (refused above).
        Epilogue::Residual {
            product: Some(_), ..
        } => false,
    }
}

/// What becomes of the exact sums: output `(t, o)` (activation row `t`, weight row `o`) one at
/// a time, or a run of the outputs of weight row `o` for consecutive activation rows
/// `t0, t0 + 1, ...`, whose per-row requantization is then looked up once.
trait Finish {
    /// Output `(t, o)` with the sum `acc`.
    fn one(&mut self, t: usize, o: usize, acc: i64);

    /// Outputs `(t0 + j, o)` with the sums `sums[j]`, each within `i32`.
    #[inline(always)]
    fn run_i32(&mut self, t0: usize, o: usize, sums: &[i32]) {
        self.each_i32(t0, o, sums);
    }

    /// [`Finish::one`] for each sum of a run (what [`Finish::run_i32`] does by default).
    #[inline(always)]
    fn each_i32(&mut self, t0: usize, o: usize, sums: &[i32]) {
        for (j, &s) in sums.iter().enumerate() {
            self.one(t0 + j, o, i64::from(s));
        }
    }

    /// Outputs `(t0 + j, o)` with the sums `sums[j]`.
    #[inline(always)]
    fn run_i64(&mut self, t0: usize, o: usize, sums: &[i64]) {
        for (j, &s) in sums.iter().enumerate() {
            self.one(t0 + j, o, s);
        }
    }
}

/// A closure called for each output.
struct Each<F>(F);

impl<F: FnMut(usize, usize, i64)> Finish for Each<F> {
    #[inline(always)]
    fn one(&mut self, t: usize, o: usize, acc: i64) {
        (self.0)(t, o, acc)
    }
}

/// [`Epilogue::Sat16`]: `out[t * stride + o] = sat16(requant_o(acc))`. A run of sums within
/// `i32` through a channel whose multiplier has the
/// [`HighWord`](super::kernels::HighWord) form (the usual case) takes it: a
/// multiply-accumulate, a shift and a saturation per output, the same integers as
/// [`Requant::apply`](super::kernels::Requant::apply) (`kernels` tests the equality for every
/// shift of the form).
struct Sat16Out<'o, 't> {
    out: &'o mut [i16],
    stride: usize,
    table: Words<'t>,
}

impl Finish for Sat16Out<'_, '_> {
    #[inline(always)]
    fn one(&mut self, t: usize, o: usize, acc: i64) {
        self.out[t * self.stride + o] = sat16(self.table.channel(o).apply(acc));
    }

    #[inline(always)]
    fn run_i32(&mut self, t0: usize, o: usize, sums: &[i32]) {
        let q = self.table.channel(o);
        // The run's outputs are every `stride`-th value of `dst`, all inside it: the epilogue
        // holds `(count - 1) stride + rows` values (`Epilogue::fits` in `optimized::matmul`;
        // the engine sizes its buffers so for `matmul::run`).
        let (Some(hw), Some(dst)) = (q.high_word(), self.out.get_mut(t0 * self.stride + o..))
        else {
            return self.each_i32(t0, o, sums);
        };
        for (d, &s) in dst.iter_mut().step_by(self.stride).zip(sums) {
            *d = hw.apply_sat16(s);
        }
    }

    #[inline(always)]
    fn run_i64(&mut self, t0: usize, o: usize, sums: &[i64]) {
        let q = self.table.channel(o);
        let hw = q.high_word();
        for (j, &s) in sums.iter().enumerate() {
            let i = (t0 + j) * self.stride + o;
            self.out[i] = match (hw, i32::try_from(s)) {
                (Some(hw), Ok(s)) => hw.apply_sat16(s),
                _ => sat16(q.apply(s)),
            };
        }
    }
}

/// [`Epilogue::Residual`] without exact products: `res[i] = sat_residual(h[i] +
/// requant_o(acc))`, `i = t * stride + o`; runs within `i32` through a
/// [`HighWord`](super::kernels::HighWord) multiplier in 32-bit words (`|h[i] + delta| < 2^15 +
/// 2^30`: no overflow), the same integers.
struct ResidualOut<'o, 't> {
    h: &'o [i16],
    res: &'o mut [i32],
    stride: usize,
    table: Words<'t>,
}

impl ResidualOut<'_, '_> {
    /// Output `i` from a delta of the [`HighWord`](super::kernels::HighWord) path.
    #[inline(always)]
    fn put(&mut self, i: usize, delta: i32) {
        self.res[i] = (i32::from(self.h[i]) + delta).clamp(-RESIDUAL_MAX, RESIDUAL_MAX);
    }
}

impl Finish for ResidualOut<'_, '_> {
    #[inline(always)]
    fn one(&mut self, t: usize, o: usize, acc: i64) {
        let i = t * self.stride + o;
        let delta = self.table.channel(o).apply(acc);
        self.res[i] = sat_residual(i64::from(self.h[i]).saturating_add(delta));
    }

    #[inline(always)]
    fn run_i32(&mut self, t0: usize, o: usize, sums: &[i32]) {
        let Some(hw) = self.table.channel(o).high_word() else {
            return self.each_i32(t0, o, sums);
        };
        for (j, &s) in sums.iter().enumerate() {
            self.put((t0 + j) * self.stride + o, hw.apply(s));
        }
    }

    #[inline(always)]
    fn run_i64(&mut self, t0: usize, o: usize, sums: &[i64]) {
        let hw = self.table.channel(o).high_word();
        for (j, &s) in sums.iter().enumerate() {
            match (hw, i32::try_from(s)) {
                (Some(hw), Ok(s)) => self.put((t0 + j) * self.stride + o, hw.apply(s)),
                _ => self.one(t0 + j, o, s),
            }
        }
    }
}

/// [`each_output`], or [`each_output_of_one_row`] for one activation row, or
/// [`each_output_w16`] for int16 weights.
#[inline(always)]
fn outputs(w: &Matrix<'_>, a: &Rows<'_>, packed: &[i16], fin: &mut impl Finish) -> bool {
    if w.wide {
        each_output_w16(w, a, |t, o, acc| fin.one(t, o, acc))
    } else if a.count == 1 {
        each_output_of_one_row(w, a, packed, |t, o, acc| fin.one(t, o, acc))
    } else {
        each_output(w, a, packed, fin)
    }
}

/// Groups of four columns per `i32` chunk ([`ACC_CHUNK`] columns).
const CHUNK_GROUPS: usize = ACC_CHUNK / 4;

/// Packs `a`'s rows, four per tile, `groups` whole groups of four columns each (module
/// documentation) into `packed` (word aligned, long enough: [`fits`]), chunk-major: the tiles
/// of the first [`CHUNK_GROUPS`] groups, then those of the next, so that each chunk's tiles
/// follow one another.
fn pack(a: &Rows<'_>, groups: usize, packed: &mut [i16]) {
    if a.count == 1 {
        // One row alone, group after group, the last partial group padded with zeros.
        let row = a.row(0);
        for (g, d) in packed
            .chunks_exact_mut(4)
            .take(row.len().div_ceil(4))
            .enumerate()
        {
            let v = |k: usize| row.get(4 * g + k).copied().unwrap_or(0);
            d.copy_from_slice(&[v(0), v(2), v(1), v(3)]);
        }
        return;
    }
    let tiles = a.count.div_ceil(TILE);
    let mut at = 0;
    for g0 in (0..groups).step_by(CHUNK_GROUPS) {
        let g1 = (g0 + CHUNK_GROUPS).min(groups);
        for tile in 0..tiles {
            for g in g0..g1 {
                for j in 0..TILE {
                    let t = tile * TILE + j;
                    let row = if t < a.count { a.row(t) } else { &[][..] };
                    let d = &mut packed[at..at + 4];
                    match row.get(4 * g..4 * g + 4) {
                        Some(&[a0, a1, a2, a3]) => d.copy_from_slice(&[a0, a2, a1, a3]),
                        _ => d.fill(0),
                    }
                    at += 4;
                }
            }
        }
    }
}

/// Tiles whose sums [`row_sums`] writes at a time (128 activation rows: 512 bytes of stack).
const TILES_PER_PASS: usize = 32;

/// Hands `W[o] . a_t` for every weight row `o` (outer) and activation row `t` to `fin`, a run
/// of activation rows at a time: for each pass of up to [`TILES_PER_PASS`] tiles, each chunk's
/// `i32` sums by [`row_sums`] (one chunk: the sums themselves; more: added in `i64`), plus the
/// columns past the last whole group. `false` when the packed rows are
/// shorter than [`fits`] makes them (never, for a caller that checked it): some outputs may
/// then be written, and the caller's per-output path writes them all again.
#[inline(always)]
fn each_output(w: &Matrix<'_>, a: &Rows<'_>, packed: &[i16], fin: &mut impl Finish) -> bool {
    let cols = w.cols;
    let groups = cols / 4;
    let whole = 4 * groups;
    let tiles = a.count.div_ceil(TILE);
    let mut sums = [0i32; TILE * TILES_PER_PASS];
    let mut totals = [0i64; TILE * TILES_PER_PASS];
    for o in 0..w.rows {
        let wrow = w.row(o);
        let wtail = wrow.get(whole..cols).unwrap_or(&[]);
        let tail = |t: usize| -> i64 {
            if wtail.is_empty() {
                return 0;
            }
            wtail
                .iter()
                .zip(&a.row(t)[whole..cols])
                .map(|(&wv, &av)| (wv as i8 as i64) * (av as i64))
                .sum()
        };
        let mut tile0 = 0;
        while tile0 < tiles {
            let n = TILES_PER_PASS.min(tiles - tile0);
            let t0 = tile0 * TILE;
            if groups <= CHUNK_GROUPS {
                // One chunk: the i32 sums are the totals.
                let (Some(wc), Some(ap)) = (wrow.get(..whole), packed.get(tile0 * 16 * groups..))
                else {
                    return false;
                };
                if !row_sums(wc, ap, n, &mut sums[..TILE * n]) {
                    return false;
                }
                let sums = &mut sums[..(TILE * n).min(a.count - t0)];
                if !wtail.is_empty() {
                    // `|sum| <= 2^30` and `|tail| < 3 * 2^22`: the total stays within `i32`.
                    for (j, s) in sums.iter_mut().enumerate() {
                        *s += tail(t0 + j) as i32;
                    }
                }
                fin.run_i32(t0, o, sums);
                tile0 += n;
                continue;
            }
            let totals = &mut totals[..TILE * n];
            totals.fill(0);
            // Chunk `g0..g1` of every tile starts at `16 g0 tiles` (chunk-major packing).
            for g0 in (0..groups).step_by(CHUNK_GROUPS) {
                let g1 = (g0 + CHUNK_GROUPS).min(groups);
                let len = 16 * (g1 - g0);
                let start = 16 * g0 * tiles + tile0 * len;
                let (Some(wc), Some(ap)) = (wrow.get(4 * g0..4 * g1), packed.get(start..)) else {
                    return false;
                };
                if !row_sums(wc, ap, n, &mut sums[..TILE * n]) {
                    return false;
                }
                for (t, &c) in totals.iter_mut().zip(&sums[..TILE * n]) {
                    *t += c as i64;
                }
            }
            let totals = &mut totals[..(TILE * n).min(a.count - t0)];
            if !wtail.is_empty() {
                for (j, s) in totals.iter_mut().enumerate() {
                    *s += tail(t0 + j);
                }
            }
            fin.run_i64(t0, o, totals);
            tile0 += n;
        }
    }
    true
}

/// The sums `w . a_t` of `tiles` packed tiles (`ap`: `16 * groups` values each) and one weight
/// row `w` of `4 * groups` bytes, `groups <= ACC_CHUNK / 4` (each sum fits an `i32`: module
/// documentation), into `out` (`4 * tiles` values, row order).
#[inline(always)]
fn row_sums(w: &[u8], ap: &[i16], tiles: usize, out: &mut [i32]) -> bool {
    let groups = w.len() / 4;
    if tiles == 0
        || groups == 0
        || groups > ACC_CHUNK / 4
        || ap.len() < 16 * groups * tiles
        || out.len() < TILE * tiles
    {
        return false;
    }
    let wp = w.as_ptr();
    let wend = w[4 * groups..].as_ptr();
    // The row start, the output pointer and the tiles left, kept on the stack by the loop.
    let mut frame = [wp as u32, out.as_mut_ptr() as u32, tiles as u32];
    // SAFETY: `wp..wend` are the `4 groups` readable bytes of `w`, read as words with LDR
    // (unaligned addresses are allowed for LDR on ARMv7-M with the default CCR.UNALIGN_TRP =
    // 0), once per tile; `ap` holds `16 groups tiles` readable values (checked above), word
    // aligned (the caller aligns the packed buffer; a tile is a multiple of 16 values), read
    // sequentially with LDRD; `out` has room for `4 tiles` words (checked above), word aligned
    // (an `i32` slice), written with STRD; `frame` is a live local array of three words that
    // the loop reads and writes through `fp`. `groups >= 1` and `tiles >= 1`. Register-only
    // otherwise (SMLAD may set the sticky Q flag, which nothing reads); the target has the DSP
    // extension (`cfg(target_feature = "dsp")` on this module).
    unsafe {
        asm!(
            "3:",
            "mov {c0}, #0",
            "mov {c1}, #0",
            "mov {c2}, #0",
            "mov {c3}, #0",
            "2:",
            "ldr {w13}, [{wp}], #4",
            "sxtb16 {w02}, {w13}",
            "sxtb16 {w13}, {w13}, ror #8",
            "ldrd {x}, {y}, [{ap}], #8",
            "smlad {c0}, {w02}, {x}, {c0}",
            "smlad {c0}, {w13}, {y}, {c0}",
            "ldrd {x}, {y}, [{ap}], #8",
            "smlad {c1}, {w02}, {x}, {c1}",
            "smlad {c1}, {w13}, {y}, {c1}",
            "ldrd {x}, {y}, [{ap}], #8",
            "smlad {c2}, {w02}, {x}, {c2}",
            "smlad {c2}, {w13}, {y}, {c2}",
            "ldrd {x}, {y}, [{ap}], #8",
            "smlad {c3}, {w02}, {x}, {c3}",
            "smlad {c3}, {w13}, {y}, {c3}",
            "cmp {wp}, {wend}",
            "bne 2b",
            // Store the tile's four sums, rewind the weights, count the tile.
            "ldr {x}, [{fp}, #4]",
            "strd {c0}, {c1}, [{x}], #8",
            "strd {c2}, {c3}, [{x}], #8",
            "str {x}, [{fp}, #4]",
            "ldr {wp}, [{fp}]",
            "ldr {x}, [{fp}, #8]",
            "subs {x}, {x}, #1",
            "str {x}, [{fp}, #8]",
            "bne 3b",
            wp = inout(reg) wp => _,
            wend = in(reg) wend,
            ap = inout(reg) ap.as_ptr() => _,
            fp = in(reg) frame.as_mut_ptr(),
            w02 = out(reg) _,
            w13 = out(reg) _,
            x = out(reg) _,
            y = out(reg) _,
            c0 = out(reg) _,
            c1 = out(reg) _,
            c2 = out(reg) _,
            c3 = out(reg) _,
            options(nostack),
        );
    }
    true
}

/// Triples of weight rows whose `i64` totals [`each_output_of_one_row`] keeps at a time when a
/// row spans several `i32` chunks (96 rows: 768 bytes of stack).
const TRIPLES_PER_PASS: usize = 32;

/// Calls `f(0, o, W[o] . a_0)` for every weight row `o` of a product with one activation row,
/// packed alone in `packed` ([`pack`], the last partial group padded with zeros): three weight
/// rows per call of [`rows3_sums`]. A row within one `i32` chunk takes one call per triple;
/// longer rows go by passes of [`TRIPLES_PER_PASS`] triples, chunk after chunk, the `i32` sums
/// added to `i64` totals. A partial last group reads up to three bytes past each row (the next
/// row's, or past the matrix: then the pass reads the whole groups only and adds the remaining
/// columns apart), which the zero activations cancel. The rows past the last whole triple
/// take the per-output kernel. `false` when `packed` or the matrix is shorter than it must be
/// (never, for a caller that checked [`fits`] and built the matrix).
fn each_output_of_one_row(
    w: &Matrix<'_>,
    a: &Rows<'_>,
    packed: &[i16],
    mut f: impl FnMut(usize, usize, i64),
) -> bool {
    let cols = w.cols;
    let groups = cols / 4;
    let whole = 4 * groups;
    let row = a.row(0);
    let triples = w.rows / 3;
    let padded = 4 * cols.div_ceil(4);
    let Some(packed) = packed.get(..padded) else {
        return false;
    };
    // LDRD reads the packed activations: word aligned (the caller aligns them).
    if row.len() < cols
        || groups == 0
        || (packed.as_ptr() as usize) % 4 != 0
        || w.data.len() < 3 * triples * cols
    {
        return false;
    }
    let row_tail = &row[whole..cols];
    // Whether triple `t` may read its padded last group in place: row 2's last word inside the
    // matrix (always without a partial group, as `padded = cols` then).
    let in_place = |t: usize| 3 * t * cols + 2 * cols + padded <= w.data.len();
    // The columns past the whole groups of weight row `o`, apart.
    let tail =
        |o: usize| super::kernels::dot_w8_a16(&w.data[o * cols + whole..(o + 1) * cols], row_tail);
    if padded / 4 <= CHUNK_GROUPS {
        // One chunk: one call per triple.
        for t in 0..triples {
            let here = in_place(t);
            let g = if here { padded / 4 } else { groups };
            // SAFETY: `4 g` bytes from each of the triple's rows lie inside `w.data` (the
            // triples' rows: checked above; the padded group past them: `here`), `packed` holds
            // `padded >= 4 g` values, word aligned (checked above), and `1 <= g <= CHUNK_GROUPS`.
            let sums =
                unsafe { rows3_sums(w.data.as_ptr().add(3 * t * cols), cols, packed.as_ptr(), g) };
            for (k, s) in sums.into_iter().enumerate() {
                let o = 3 * t + k;
                let rest = if here { 0 } else { tail(o) };
                f(0, o, i64::from(s) + rest);
            }
        }
    } else {
        let mut totals = [0i64; 3 * TRIPLES_PER_PASS];
        let mut t0 = 0;
        while t0 < triples {
            let n = TRIPLES_PER_PASS.min(triples - t0);
            // The padded group when every triple of the pass may read it in place.
            let here = in_place(t0 + n - 1);
            let gx = if here { padded / 4 } else { groups };
            let totals = &mut totals[..3 * n];
            totals.fill(0);
            let mut g0 = 0;
            while g0 < gx {
                let g = CHUNK_GROUPS.min(gx - g0);
                for (j, tot) in totals.chunks_exact_mut(3).enumerate() {
                    // SAFETY: `4 (g0 + g) <= 4 gx` bytes from each row start of triple `t0 +
                    // j` lie inside `w.data` (the rows: checked above; the padded group: `here`, as
                    // `in_place` grows with `t`), `packed` holds `4 gx` values from which the
                    // `4 g` at `4 g0` are read, word aligned (checked above; `4 g0` values are
                    // whole words), and `1 <= g <= CHUNK_GROUPS`.
                    let sums = unsafe {
                        rows3_sums(
                            w.data.as_ptr().add(3 * (t0 + j) * cols + 4 * g0),
                            cols,
                            packed.as_ptr().add(4 * g0),
                            g,
                        )
                    };
                    for (t, s) in tot.iter_mut().zip(sums) {
                        *t += i64::from(s);
                    }
                }
                g0 += g;
            }
            for (i, &total) in totals.iter().enumerate() {
                let o = 3 * t0 + i;
                let rest = if here { 0 } else { tail(o) };
                f(0, o, total + rest);
            }
            t0 += n;
        }
    }
    for o in 3 * triples..w.rows {
        f(0, o, super::arm_dsp::dot_w8_a16(w.row(o), &row[..cols]));
    }
    true
}

/// One group of [`rows3_sums`]' loop (four columns of the three rows: rows 1 and 2 first,
/// then row 0, whose load moves on to the next group), as assembly text.
macro_rules! rows3_step {
    () => {
        concat!(
            "ldrd {x}, {y}, [{ap}], #8\n",
            "ldr {w13}, [{b0}, {n}]\n",
            "sxtb16 {w02}, {w13}\n",
            "sxtb16 {w13}, {w13}, ror #8\n",
            "smlad {c1}, {w02}, {x}, {c1}\n",
            "smlad {c1}, {w13}, {y}, {c1}\n",
            "ldr {w13}, [{b0}, {n}, lsl #1]\n",
            "sxtb16 {w02}, {w13}\n",
            "sxtb16 {w13}, {w13}, ror #8\n",
            "smlad {c2}, {w02}, {x}, {c2}\n",
            "smlad {c2}, {w13}, {y}, {c2}\n",
            "ldr {w13}, [{b0}], #4\n",
            "sxtb16 {w02}, {w13}\n",
            "sxtb16 {w13}, {w13}, ror #8\n",
            "smlad {c0}, {w02}, {x}, {c0}\n",
            "smlad {c0}, {w13}, {y}, {c0}",
        )
    };
}

/// One pair of columns of [`rows3_sums_w16`]' loop, as assembly text (the same order).
macro_rules! rows3_w16_step {
    () => {
        concat!(
            "ldr {x}, [{ap}], #4\n",
            "ldr {w}, [{b0}, {n}]\n",
            "smlald {l1}, {h1}, {w}, {x}\n",
            "ldr {w}, [{b0}, {n}, lsl #1]\n",
            "smlald {l2}, {h2}, {w}, {x}\n",
            "ldr {w}, [{b0}], #4\n",
            "smlald {l0}, {h0}, {w}, {x}",
        )
    };
}

/// The sums `r_k . a` of the three weight rows at `r0`, `r0 + stride` and `r0 + 2 stride`
/// over `4 groups` columns, with the packed activations of those columns at `ap`.
///
/// # Safety
///
/// `4 groups` bytes must be readable from each of the three row addresses, `4 groups` values
/// from `ap`, which must be word aligned, and `1 <= groups <= ACC_CHUNK / 4` (so that each sum
/// fits an `i32`: module documentation).
#[inline(always)]
unsafe fn rows3_sums(r0: *const u8, stride: usize, ap: *const i16, groups: usize) -> [i32; 3] {
    // SAFETY: within the `4 groups` values the caller guarantees readable.
    let aend = unsafe { ap.add(4 * groups) };
    let (mut c0, mut c1, mut c2): (i32, i32, i32);
    // SAFETY: the loads read `4 groups` bytes from `r0`, `r0 + stride` and `r0 + 2 stride`
    // (readable: the function's contract) as words with LDR (unaligned addresses are allowed
    // for LDR on ARMv7-M with the default CCR.UNALIGN_TRP = 0), and the `4 groups` values at
    // `ap`, word aligned (the contract), with LDRD. `groups >= 1`; the first pass enters the
    // unrolled body at the step that leaves a multiple of four groups. Register-only otherwise
    // (SMLAD may set the sticky Q flag, which nothing reads); the target has the DSP extension
    // (`cfg(target_feature = "dsp")` on this module).
    unsafe {
        asm!(
            "mov {c0}, #0",
            "mov {c1}, #0",
            "mov {c2}, #0",
            "cmp {x}, #1",
            "beq 8f",
            "cmp {x}, #2",
            "beq 7f",
            "cmp {x}, #3",
            "beq 6f",
            "5:",
            rows3_step!(),
            "6:",
            rows3_step!(),
            "7:",
            rows3_step!(),
            "8:",
            rows3_step!(),
            "cmp {ap}, {aend}",
            "bne 5b",
            b0 = inout(reg) r0 => _,
            n = in(reg) stride,
            ap = inout(reg) ap => _,
            aend = in(reg) aend,
            x = inout(reg) groups % 4 => _,
            y = out(reg) _,
            w02 = out(reg) _,
            w13 = out(reg) _,
            c0 = out(reg) c0,
            c1 = out(reg) c1,
            c2 = out(reg) c2,
            options(nostack, readonly),
        );
    }
    [c0, c1, c2]
}

/// Calls `f(t, o, W[o] . a_t)` for every activation row `t` (outer) and int16 weight row `o`:
/// three weight rows per pass of [`rows3_sums_w16`] over the row in place (each activation
/// word loaded once for three `SMLALD`s: 64-bit sums, exact for any int16 values), the last
/// column of an odd row and the rows past the last whole triple by the reference. `false`
/// when the matrix or a row is shorter than its shape says (never, for a built matrix).
fn each_output_w16(w: &Matrix<'_>, a: &Rows<'_>, mut f: impl FnMut(usize, usize, i64)) -> bool {
    let cols = w.cols;
    let stride = 2 * cols;
    let pairs = cols / 2;
    let triples = w.rows / 3;
    if pairs == 0 || w.data.len() < w.rows * stride {
        return false;
    }
    for t in 0..a.count {
        let row = a.row(t);
        if row.len() < cols {
            return false;
        }
        for tr in 0..triples {
            let at = 3 * tr * stride;
            // SAFETY: the triple's rows are `w.data[at..at + 3 stride]` (inside: checked above),
            // of which the loads read the first `4 pairs <= stride` bytes of each; `row` holds
            // `2 pairs <= cols` values (checked above); `pairs >= 1`.
            let sums =
                unsafe { rows3_sums_w16(w.data.as_ptr().add(at), stride, row.as_ptr(), pairs) };
            for (k, s) in sums.into_iter().enumerate() {
                let o = 3 * tr + k;
                // The last column of an odd row.
                let last = if cols % 2 == 1 {
                    super::kernels::dot_w16_a16(
                        &w.data[o * stride + 4 * pairs..(o + 1) * stride],
                        &row[2 * pairs..cols],
                    )
                } else {
                    0
                };
                f(t, o, s + last);
            }
        }
        for o in 3 * triples..w.rows {
            f(t, o, super::kernels::dot_w16_a16(w.row(o), &row[..cols]));
        }
    }
    true
}

/// The sums `r_k . a` of the three int16 weight rows at `r0`, `r0 + stride` and
/// `r0 + 2 stride` (little-endian byte pairs) and the activations at `a`, over `2 pairs`
/// columns, each in 64 bits (`SMLALD`: exact).
///
/// ```text
/// LDR    x, [ap], #4            ; [a0, a1]
/// LDR    w, [b0, n]             ; row 1: [w0, w1]
/// SMLALD l1, h1, w, x
/// LDR    w, [b0, n, LSL #1]     ; row 2
/// SMLALD l2, h2, w, x
/// LDR    w, [b0], #4            ; row 0, and on to the next pair
/// SMLALD l0, h0, w, x
/// ```
///
/// Seven instructions per six multiply-accumulates, unrolled four pairs deep, twelve
/// registers.
///
/// # Safety
///
/// `4 pairs` bytes must be readable from each of the three row addresses, `2 pairs` values
/// from `a`, and `pairs >= 1`.
#[inline(always)]
unsafe fn rows3_sums_w16(r0: *const u8, stride: usize, a: *const i16, pairs: usize) -> [i64; 3] {
    // SAFETY: within the `2 pairs` values the caller guarantees readable.
    let aend = unsafe { a.add(2 * pairs) };
    let (mut l0, mut h0, mut l1, mut h1, mut l2, mut h2): (u32, u32, u32, u32, u32, u32);
    // SAFETY: the loads read `4 pairs` bytes from `r0`, `r0 + stride` and `r0 + 2 stride` and
    // `2 pairs` values from `a` (readable: the function's contract), as words with LDR
    // (unaligned addresses are allowed for LDR on ARMv7-M with the default CCR.UNALIGN_TRP =
    // 0). `pairs >= 1`; the first pass enters the unrolled body at the step that leaves a
    // multiple of four pairs. Register-only otherwise (SMLALD sets no flags); the target has the
    // DSP extension (`cfg(target_feature = "dsp")` on this module).
    unsafe {
        asm!(
            "mov {l0}, #0",
            "mov {h0}, #0",
            "mov {l1}, #0",
            "mov {h1}, #0",
            "mov {l2}, #0",
            "mov {h2}, #0",
            "cmp {x}, #1",
            "beq 8f",
            "cmp {x}, #2",
            "beq 7f",
            "cmp {x}, #3",
            "beq 6f",
            "5:",
            rows3_w16_step!(),
            "6:",
            rows3_w16_step!(),
            "7:",
            rows3_w16_step!(),
            "8:",
            rows3_w16_step!(),
            "cmp {ap}, {aend}",
            "bne 5b",
            b0 = inout(reg) r0 => _,
            n = in(reg) stride,
            ap = inout(reg) a => _,
            aend = in(reg) aend,
            x = inout(reg) pairs % 4 => _,
            w = out(reg) _,
            l0 = out(reg) l0,
            h0 = out(reg) h0,
            l1 = out(reg) l1,
            h1 = out(reg) h1,
            l2 = out(reg) l2,
            h2 = out(reg) h2,
            options(nostack, readonly),
        );
    }
    let join = |lo: u32, hi: u32| (((hi as u64) << 32) | lo as u64) as i64;
    [join(l0, h0), join(l1, h1), join(l2, h2)]
}
