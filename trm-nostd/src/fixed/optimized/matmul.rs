//! Matrix products: every output `acc(t, o) = W[o] . a_t` of a weight matrix `W` (int8, or
//! int16 little-endian pairs) and a block of int16 activation rows `a_t`, with what becomes of
//! it ([`Epilogue`]: a requant to int16, a residual sum, or the raw sums).
//!
//! The specification of every output is the per-output expression of the reference kernels:
//! [`kernels::dot_w8_a16`] / [`kernels::dot_w16_a16`] of one weight row and one activation row,
//! then the channel's [`Requant`] (and, for exact SwiGLU products, the halves of
//! [`kernels::split_product`] combined by [`kernels::prod_from_halves`]). [`matmul`] computes
//! exactly that, with the implementation `isa`:
//!
//! - [`Isa::Portable`] (and any implementation given too little scratch, and int16 weights or
//!   exact products on Arm): one dot product per output, weight row outer, activation rows
//!   inner (each weight row is read once per block of rows), through the implementation's dot
//!   kernels;
//! - [`Isa::Portable`] on RISC-V, int8 weights:
//!   four activation rows per pass over a weight row ([`tiles_portable`]), each weight byte
//!   loaded once for four products;
//! - [`Isa::ArmDsp`] (the `arm_matmul` module): int8 weights with the activation rows packed
//!   once per product, four at a time, into the scratch; each weight word then feeds 8 `SMLAD`s
//!   (17 instructions per 16 multiply-accumulates in the inner loop); one activation row:
//!   three weight rows per pass (16 per 12); int16 weights: three weight rows per pass with
//!   `SMLALD` (7 per 6);
//! - the x86_64 implementations ([`Isa::Avx2`], [`Isa::Avx512`], [`Isa::Avx512Vnni`]): blocked
//!   products of GEMM class (the `x86_matmul` module): a panel of 16 or 32 weight rows is
//!   widened to int16 once into the scratch, then applied to tiles of activation rows with the
//!   accumulators in registers (the VNNI tile's loop in `asm!`, reading the activation rows in
//!   place); integer sums are exact, so the results are the same bit for bit (tests
//!   `fixed_matmul.rs`);
//! - [`Isa::Amx`] (the `x86_amx` module): the AMX tile unit, activations and int16 weights
//!   split into bytes, 32-bit tile sums exact over the row lengths it accepts (65536 columns,
//!   32768 with int16 weights), everything else as VNNI.
//!
//! The scratch of the blocked products is [`scratch_len`] `i16` values for the longest row of
//! the matrices and a block of activation rows (the engine's fast arena holds it; its minimum
//! arena does not, and then the per-output path runs).

use super::Isa;
use super::kernels::{self, Requant, sat_residual, sat16};
use crate::fixed::tables::Words;

/// A weight matrix of `rows x cols` (int8, or int16 as little-endian byte pairs when `wide`),
/// row-major, with its channel table (`Words`: the per-row [`Requant`]s at words `1 + 2 o`).
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub(in crate::fixed) data: &'a [u8],
    pub(in crate::fixed) rows: usize,
    pub(in crate::fixed) cols: usize,
    pub(in crate::fixed) wide: bool,
    pub(in crate::fixed) table: Words<'a>,
}

impl<'a> Matrix<'a> {
    /// The matrix of `data` (`rows * cols` bytes, or `2 * rows * cols` when `wide`); `None` when
    /// `data` is shorter. `table` is read by the requantizing epilogues ([`Epilogue::Sat16`],
    /// [`Epilogue::Residual`]) only; missing words read as zero.
    pub fn new(
        data: &'a [u8],
        rows: usize,
        cols: usize,
        wide: bool,
        table: Words<'a>,
    ) -> Option<Self> {
        let need = rows
            .checked_mul(cols)?
            .checked_mul(if wide { 2 } else { 1 })?;
        (data.len() >= need).then_some(Matrix {
            data,
            rows,
            cols,
            wide,
            table,
        })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes per row.
    #[inline]
    pub(super) fn stride(&self) -> usize {
        if self.wide { 2 * self.cols } else { self.cols }
    }

    /// Row `o`'s bytes.
    #[inline]
    pub(super) fn row(&self, o: usize) -> &'a [u8] {
        let s = self.stride();
        self.data.get(o * s..(o + 1) * s).unwrap_or(&[])
    }

    /// Weight `(o, k)` as an integer (`o < rows`, `k < cols`); the x86 kernels' panel packing.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(super) fn weight(&self, o: usize, k: usize) -> i16 {
        let s = self.stride();
        if self.wide {
            let i = o * s + 2 * k;
            i16::from_le_bytes([self.data[i], self.data[i + 1]])
        } else {
            self.data[o * s + k] as i8 as i16
        }
    }
}

/// `count` activation rows of `len` int16 values, row `t` starting at `t * stride` of `data`;
/// optionally a second set of rows at `offset` after each (`t * stride + offset`), for the
/// exact SwiGLU products (the `lo` and `hi` halves of [`kernels::split_product`]).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub(super) data: &'a [i16],
    pub(super) count: usize,
    pub(super) len: usize,
    pub(super) stride: usize,
    pub(super) second: Option<usize>,
}

impl<'a> Rows<'a> {
    /// The rows; `None` when `data` does not hold them all.
    pub fn new(data: &'a [i16], count: usize, len: usize, stride: usize) -> Option<Self> {
        let r = Rows {
            data,
            count,
            len,
            stride,
            second: None,
        };
        r.fits(0).then_some(r)
    }

    /// The same rows with a second row at `offset` after each one; `None` when `data` does not
    /// hold them.
    pub fn with_second(self, offset: usize) -> Option<Self> {
        let r = Rows {
            second: Some(offset),
            ..self
        };
        r.fits(offset).then_some(r)
    }

    /// Whether the rows shifted by `offset` lie inside `data`.
    fn fits(&self, offset: usize) -> bool {
        if self.count == 0 {
            return true;
        }
        (self.count - 1)
            .checked_mul(self.stride)
            .and_then(|s| s.checked_add(offset))
            .and_then(|s| s.checked_add(self.len))
            .is_some_and(|end| end <= self.data.len())
    }

    /// Row `t`.
    #[inline]
    pub(super) fn row(&self, t: usize) -> &'a [i16] {
        &self.data[t * self.stride..t * self.stride + self.len]
    }

    /// The second row of `t` (row `t` itself without a second set).
    #[inline]
    pub(super) fn second_row(&self, t: usize) -> &'a [i16] {
        let at = t * self.stride + self.second.unwrap_or(0);
        &self.data[at..at + self.len]
    }
}

/// What becomes of the sums `acc(t, o)` (and, with a second set of rows, `acc2(t, o)`), with
/// `requant_o` the matrix table's [`Requant`] of row `o`.
#[derive(Debug)]
pub enum Epilogue<'o> {
    /// `out[t * rows + o] = acc`, `second[t * rows + o] = acc2` (when the rows have a second
    /// set): the exact sums (tests, benchmarks).
    Raw {
        /// `[count, rows]`.
        out: &'o mut [i64],
        /// `[count, rows]` with a second set of rows, else unused (may be empty).
        second: &'o mut [i64],
    },
    /// `out[t * stride + o] = sat16(requant_o(acc))` (a projection to int16 activations).
    Sat16 {
        /// `[count, stride]`, `stride >= rows`.
        out: &'o mut [i16],
        /// Values per output row.
        stride: usize,
    },
    /// `res[t * stride + o] = sat_residual(h[t * stride + o] + delta)` with `delta =
    /// requant_o(acc)`, or with `product` (and a second set of rows: the halves of the exact
    /// SwiGLU products) `delta = requant_o(product.apply_i128(prod_from_halves(acc, acc2)))`.
    Residual {
        /// The block input `[count, stride]`.
        h: &'o [i16],
        /// The residual sums `[count, stride]`.
        res: &'o mut [i32],
        /// Values per row of `h` and `res`, `>= rows`.
        stride: usize,
        /// The product requant of exact SwiGLU products.
        product: Option<Requant>,
    },
}

impl Epilogue<'_> {
    /// Whether the outputs hold `count` rows of `rows` values (and `second` the second sums).
    fn fits(&self, count: usize, rows: usize, second: bool) -> bool {
        let within = |len: usize, stride: usize| {
            count == 0
                || (stride >= rows
                    && (count - 1)
                        .checked_mul(stride)
                        .and_then(|s| s.checked_add(rows))
                        .is_some_and(|end| end <= len))
        };
        match self {
            Epilogue::Raw { out, second: s } => {
                within(out.len(), rows) && (!second || within(s.len(), rows))
            }
            Epilogue::Sat16 { out, stride } => within(out.len(), *stride),
            Epilogue::Residual {
                h,
                res,
                stride,
                product,
            } => {
                within(h.len(), *stride)
                    && within(res.len(), *stride)
                    && (product.is_none() || second)
            }
        }
    }

    /// Applies the epilogue to the sums of activation row `t` and weight rows `o0..o0 +
    /// acc.len()` (`acc2`: the second sums, as long as `acc`, or empty), as the specification
    /// says, one output at a time.
    #[inline]
    pub(super) fn apply_scalar(
        &mut self,
        table: Words<'_>,
        rows: usize,
        t: usize,
        o0: usize,
        acc: &[i64],
        acc2: &[i64],
    ) {
        match self {
            Epilogue::Raw { out, second } => {
                out[t * rows + o0..][..acc.len()].copy_from_slice(acc);
                if !acc2.is_empty() {
                    second[t * rows + o0..][..acc2.len()].copy_from_slice(acc2);
                }
            }
            Epilogue::Sat16 { out, stride } => {
                let out = &mut out[t * *stride + o0..][..acc.len()];
                for (i, (o, &a)) in out.iter_mut().zip(acc).enumerate() {
                    *o = sat16(table.channel(o0 + i).apply(a));
                }
            }
            Epilogue::Residual {
                h,
                res,
                stride,
                product,
            } => {
                let at = t * *stride + o0;
                let h = &h[at..][..acc.len()];
                let res = &mut res[at..][..acc.len()];
                for (i, (r, &hv)) in res.iter_mut().zip(h).enumerate() {
                    let rq = table.channel(o0 + i);
                    let delta = match product {
                        Some(p) => {
                            rq.apply(p.apply_i128(kernels::prod_from_halves(acc[i], acc2[i])))
                        }
                        None => rq.apply(acc[i]),
                    };
                    *r = sat_residual((hv as i64).saturating_add(delta));
                }
            }
        }
    }
}

/// `i16` values of scratch with which the blocked products take `rows` activation rows of
/// `cols` values at a time. x86_64 (and every target without a blocked path): a panel of 32
/// weight rows (int16 weights: 64 lanes, high and low bytes) over the row, widened to int16
/// ([`panel_len`]), and the rows packed by pairs of columns (two sets per row for exact
/// products: `4 ceil(cols / 2)` values per row). Arm with DSP: the rows packed four at a time,
/// `4 ceil(cols / 4)` values per row, up to three padding rows and one value of alignment
/// ([`panel_len`]). Less scratch takes fewer rows at a time; below `scratch_len(cols, 1)` the
/// per-output path runs.
pub const fn scratch_len(cols: usize, rows: usize) -> usize {
    panel_len(cols) + rows * row_len(cols)
}

/// The part of [`scratch_len`] per activation row.
const fn row_len(cols: usize) -> usize {
    match SCRATCH {
        Scratch::Panel => 4 * cols.div_ceil(2),
        Scratch::Packed => 4 * cols.div_ceil(4),
        Scratch::None => 0,
    }
}

/// The fixed part of [`scratch_len`]. x86_64: the weight panel, `128 ceil(cols / 2)` values,
/// plus 32 to align it to 64 bytes; Arm with DSP: three padding rows and two values; other
/// targets: none (their blocked path, [`tiles_portable`], reads the rows in place).
pub const fn panel_len(cols: usize) -> usize {
    match SCRATCH {
        Scratch::Panel => 128 * cols.div_ceil(2) + 32,
        Scratch::Packed => 3 * row_len(cols) + 2,
        Scratch::None => 0,
    }
}

/// What the blocked products of this build keep in the scratch.
#[allow(dead_code)]
enum Scratch {
    /// x86_64: a widened weight panel and the rows packed by column pairs.
    Panel,
    /// Arm with DSP (`arm_matmul`): the rows packed four at a time.
    Packed,
    /// Other targets (RISC-V, Cortex-M0+): nothing (RISC-V's [`tiles_portable`] reads the
    /// rows in place).
    None,
}

#[cfg(target_arch = "x86_64")]
const SCRATCH: Scratch = Scratch::Panel;
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
const SCRATCH: Scratch = Scratch::Packed;
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "arm", target_feature = "dsp")
)))]
const SCRATCH: Scratch = Scratch::None;

/// Whether [`run`] takes [`tiles_portable`] for the reference implementation: on RISC-V
/// (where [`Isa::Portable`] is what the engine runs; 31 registers hold the four sums and five
/// row pointers). Not on Cortex-M0+, whose eight low registers do not (measured slower in
/// rp2040js), nor on x86_64, where the reference path stays the specification's
/// one-output-at-a-time loop.
const PORTABLE_TILES: bool = cfg!(any(target_arch = "riscv32", target_arch = "riscv64"));

/// Every output of `w` and `a` through `epi` (see the module documentation), with the
/// implementation `isa` (the reference's path where `isa` is not supported here). `scratch`
/// (any length) is the blocked products' working memory ([`scratch_len`]; with fewer than
/// `scratch_len(cols, 1)` values the per-output path runs); the results are the same. Returns `false`, writing
/// nothing, when the outputs of `epi` are too short for `a.count` rows of `w.rows()` values, or
/// `a`'s rows are shorter than `w`'s or lack the second set a product needs.
pub fn matmul(
    isa: Isa,
    w: &Matrix<'_>,
    a: &Rows<'_>,
    epi: &mut Epilogue<'_>,
    scratch: &mut [i16],
) -> bool {
    if a.len < w.cols || !epi.fits(a.count, w.rows, a.second.is_some()) {
        return false;
    }
    let isa = if isa.is_supported() {
        isa
    } else {
        Isa::Portable
    };
    run(isa, w, a, epi, scratch);
    true
}

/// [`matmul`] for checked arguments and a supported `isa`.
#[inline]
pub(in crate::fixed) fn run(
    isa: Isa,
    w: &Matrix<'_>,
    a: &Rows<'_>,
    epi: &mut Epilogue<'_>,
    scratch: &mut [i16],
) {
    #[cfg(target_arch = "x86_64")]
    if super::x86_matmul::matmul(isa, w, a, epi, scratch) {
        return;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if isa == Isa::ArmDsp && super::arm_matmul::matmul(w, a, epi, scratch) {
        return;
    }
    let _ = scratch;
    if PORTABLE_TILES && tiles_portable(w, a, epi) {
        return;
    }
    per_output(isa, w, a, epi);
}

/// Rows per tile of [`tiles_portable`].
const PTILE: usize = 4;

/// Every output of an int8 `w` and `a` (no second rows) through `epi`, four activation rows
/// per pass over a weight row (each weight byte loaded once for four products), in plain
/// integer code for RISC-V (no SIMD kernels); `false` (nothing done) for int16 weights,
/// exact products or fewer than two rows. The sums are the reference's: `i32` partial sums
/// over [`kernels::ACC_CHUNK`] columns (each product at most `2^22` in magnitude, so a chunk
/// stays within `2^30`), added in `i64`; integer addition in any order gives the same sum.
pub fn tiles_portable(w: &Matrix<'_>, a: &Rows<'_>, epi: &mut Epilogue<'_>) -> bool {
    if w.wide || a.second.is_some() || a.count < 2 {
        return false;
    }
    let table = w.table;
    let rows = w.rows;
    match epi {
        Epilogue::Sat16 { out, stride } => each_tile_output(w, a, |t, o, acc| {
            out[t * *stride + o] = sat16(table.channel(o).apply(acc));
        }),
        Epilogue::Residual {
            h,
            res,
            stride,
            product: None,
        } => each_tile_output(w, a, |t, o, acc| {
            let i = t * *stride + o;
            res[i] = sat_residual((h[i] as i64).saturating_add(table.channel(o).apply(acc)));
        }),
        Epilogue::Raw { out, .. } => each_tile_output(w, a, |t, o, acc| {
            out[t * rows + o] = acc;
        }),
        Epilogue::Residual {
            product: Some(_), ..
        } => return false,
    }
    true
}

/// Calls `f(t, o, W[o] . a_t)` for every weight row `o` (outer) and activation row `t`, the
/// rows four at a time (the last tile shorter).
#[inline(always)]
fn each_tile_output(w: &Matrix<'_>, a: &Rows<'_>, mut f: impl FnMut(usize, usize, i64)) {
    let cols = w.cols;
    for o in 0..w.rows {
        let wrow = &w.row(o)[..cols];
        let mut t0 = 0;
        while t0 + PTILE <= a.count {
            let r = [a.row(t0), a.row(t0 + 1), a.row(t0 + 2), a.row(t0 + 3)];
            let mut total = [0i64; PTILE];
            for (c, wc) in wrow.chunks(kernels::ACC_CHUNK).enumerate() {
                let at = c * kernels::ACC_CHUNK;
                let n = wc.len();
                let (r0, r1, r2, r3) = (
                    &r[0][at..at + n],
                    &r[1][at..at + n],
                    &r[2][at..at + n],
                    &r[3][at..at + n],
                );
                let mut acc = [0i32; PTILE];
                for k in 0..n {
                    let wk = wc[k] as i8 as i32;
                    acc[0] += wk * r0[k] as i32;
                    acc[1] += wk * r1[k] as i32;
                    acc[2] += wk * r2[k] as i32;
                    acc[3] += wk * r3[k] as i32;
                }
                for (t, c) in total.iter_mut().zip(acc) {
                    *t += c as i64;
                }
            }
            for (j, &sum) in total.iter().enumerate() {
                f(t0 + j, o, sum);
            }
            t0 += PTILE;
        }
        for t in t0..a.count {
            f(t, o, kernels::dot_w8_a16(wrow, &a.row(t)[..cols]));
        }
    }
}

/// One dot product per output, weight row outer (the reference's path, and the device's).
fn per_output(isa: Isa, w: &Matrix<'_>, a: &Rows<'_>, epi: &mut Epilogue<'_>) {
    let table = w.table;
    let cols = w.cols;
    let wide = w.wide;
    // The weight row is sliced once per output, not once per (output, token) pair: on a
    // Cortex-M the slicing is a measurable share of a small model's dot products.
    let dot = |wrow: &[u8], x: &[i16]| {
        if wide {
            isa.dot_w16_a16_unchecked(wrow, x)
        } else {
            isa.dot_w8_a16_unchecked(wrow, x)
        }
    };
    match epi {
        Epilogue::Sat16 { out, stride } => {
            for o in 0..w.rows {
                let rq = table.channel(o);
                let wrow = w.row(o);
                for t in 0..a.count {
                    out[t * *stride + o] = sat16(rq.apply(dot(wrow, &a.row(t)[..cols])));
                }
            }
        }
        Epilogue::Residual {
            h,
            res,
            stride,
            product: None,
        } => {
            for o in 0..w.rows {
                let rq = table.channel(o);
                let wrow = w.row(o);
                for t in 0..a.count {
                    let delta = rq.apply(dot(wrow, &a.row(t)[..cols]));
                    let i = t * *stride + o;
                    res[i] = sat_residual((h[i] as i64).saturating_add(delta));
                }
            }
        }
        Epilogue::Residual {
            h,
            res,
            stride,
            product: Some(p),
        } => {
            for o in 0..w.rows {
                let rq = table.channel(o);
                let wrow = w.row(o);
                for t in 0..a.count {
                    let lo = dot(wrow, &a.row(t)[..cols]);
                    let hi = dot(wrow, &a.second_row(t)[..cols]);
                    let delta = rq.apply(p.apply_i128(kernels::prod_from_halves(lo, hi)));
                    let i = t * *stride + o;
                    res[i] = sat_residual((h[i] as i64).saturating_add(delta));
                }
            }
        }
        Epilogue::Raw { .. } => {
            let (mut acc, mut acc2) = ([0i64], [0i64]);
            let second = a.second.is_some();
            for o in 0..w.rows {
                let wrow = w.row(o);
                for t in 0..a.count {
                    acc[0] = dot(wrow, &a.row(t)[..cols]);
                    let acc2 = if second {
                        acc2[0] = dot(wrow, &a.second_row(t)[..cols]);
                        &acc2[..]
                    } else {
                        &[]
                    };
                    epi.apply_scalar(table, w.rows, t, o, &acc, acc2);
                }
            }
        }
    }
}
