//! x86_64 blocked matrix products (GEMM class) for [`super::matmul`]: AVX2 (`vpmaddwd`),
//! AVX-512 F + BW (`vpmaddwd` on 512 bits) and AVX-512 VNNI (`vpdpwssd`).
//!
//! # The blocking
//!
//! The output rows go in panels of `PR` rows (two vectors of lanes: 16 rows with AVX2, 32 with
//! AVX-512). A panel's weights are widened to int16 once into the scratch, in the order the
//! multiply-accumulate wants: per pair of columns `(2p, 2p + 1)`, one 32-bit lane per row
//! holding `(w[r, 2p], w[r, 2p + 1])` (a zero weight pads an odd last column and the rows past
//! the matrix). Then for each tile of `T` activation rows, per pair of columns: the panel's
//! vectors are loaded once, each activation row's pair `(a[t, 2p], a[t, 2p + 1])` is broadcast
//! to every lane, and `vpmaddwd` / `vpdpwssd` add `w[r, 2p] a[t, 2p] + w[r, 2p + 1] a[t, 2p +
//! 1]` to the lane of row `r` of the accumulator of row `t`. The `T x 2` accumulators stay in
//! registers (AVX-512: 12 rows x 2 vectors, 24 of the 32 registers; AVX2: 6 x 2 of 16); no
//! horizontal sum is needed, since each lane is one output. So every weight is loaded (and
//! widened) once per block of activation rows, and every activation once per panel.
//!
//! int16 weights are split into bytes, `w = 256 hi + lo` with `hi = w >> 8` in `[-128, 127]`
//! and `lo = w & 255` in `[0, 255]`: the panel holds `2 PR` lanes (the `hi` of each row, then
//! its `lo`), and the sum is `256 sum(hi a) + sum(lo a)`, formed in `i64`.
//!
//! # Exactness (why the sums equal the reference's bit for bit)
//!
//! Integer sums are exact in any order as long as no partial sum overflows:
//!
//! - one `vpmaddwd` / `vpdpwssd` lane adds two products `w a` with `|w| <= 256` (int8 weights:
//!   `|w| <= 128`; split int16 weights: `hi` in `[-128, 127]`, `lo` in `[0, 255]`) and `|a| <=
//!   2^15`: `|w a| <= 255 * 2^15 < 2^23`, so the pair is `< 2^24` and `vpmaddwd` never wraps
//!   (its one wrap, `(-2^15)^2 + (-2^15)^2`, needs both factors at `-2^15`);
//! - the `i32` lanes are reset every `CHUNK_PAIRS` = 128 pairs of columns, so a lane holds at
//!   most 256 products: with int8 weights `<= 256 * 2^22 = 2^30`, with `hi` bytes the same,
//!   with `lo` bytes `<= 256 * 255 * 2^15 = 2_139_095_040 < 2^31 - 1`: no `i32` partial sum
//!   overflows (`vpdpwssd` wraps instead of saturating, so a result in range is exact). This is
//!   the reference's own bound: `i32` partial sums of at most [`kernels::ACC_CHUNK`] = 256
//!   products;
//! - each chunk is sign-extended to `i64` and added to the row's `i64` total: `|total| <=
//!   cols * 2^22 < 2^44` (int8; `cols < 2^22`), or per half `< 2^45`, and `256 hi_total +
//!   lo_total < 2^54` (int16): no `i64` overflow.
//!
//! The requantizing epilogues (AVX-512) take a fast path only where it is exact: a sum that
//! fits `i32` times the channel multiplier (`|mult| <= 2^31`) is `< 2^62` in `i64`
//! (`vpmuldq`), plus the rounding term `2^(s-1) <= 2^61` for a shift `s <= 62`, then an
//! arithmetic shift: exactly `round_shift_i128` of the specification, without saturation
//! (`|result| < 2^62`). Any group of 8 outputs with a larger sum or shift goes through the
//! scalar [`Requant::apply`](kernels::Requant::apply).
//!
//! Every function that uses instructions beyond the baseline is reached only after
//! [`Isa::is_supported`] said yes (checked at the top of [`matmul`]).

use super::Isa;
use super::kernels::{self, RESIDUAL_MAX};
use super::matmul::{Epilogue, Matrix, Rows, scratch_len};
use crate::fixed::tables::Words;
use core::arch::asm;
use core::arch::x86_64::*;

/// Pairs of columns per `i32` accumulation chunk: 256 products per lane (see the module
/// documentation).
const CHUNK_PAIRS: usize = 128;

/// Most activation rows per tile (any shape).
const T_MAX: usize = 12;

/// Most `i64` sums of one tile: `T_MAX` rows x 64 lanes.
const TILE_LEN: usize = T_MAX * 64;

/// The tile shapes of one implementation.
#[derive(Clone, Copy)]
struct Shape {
    /// `i32` lanes per vector.
    lanes: usize,
    /// Activation rows per tile with int8 weights (two vectors per pair of columns).
    t_int8: usize,
    /// Activation rows per tile with int16 weights (four vectors: hi and lo bytes).
    t_split: usize,
}

impl Shape {
    fn of(isa: Isa) -> Option<Shape> {
        match isa {
            Isa::Avx2 => Some(Shape {
                lanes: 8,
                t_int8: 6,
                t_split: 2,
            }),
            Isa::Avx512 | Isa::Avx512Vnni => Some(Shape {
                lanes: 16,
                t_int8: 12,
                t_split: 6,
            }),
            _ => None,
        }
    }
}

/// The blocked product of `w` and `a` through `epi` with `isa`; `false` (nothing done) when
/// `isa` is not an x86 implementation supported here or `scratch` cannot hold a weight panel
/// and one activation row ([`scratch_len`]). The arguments are checked
/// ([`super::matmul::matmul`]).
pub(super) fn matmul(
    isa: Isa,
    w: &Matrix<'_>,
    a: &Rows<'_>,
    epi: &mut Epilogue<'_>,
    scratch: &mut [i16],
) -> bool {
    // AMX runs the int8 products it can; every other product as VNNI.
    let isa = if isa == Isa::Amx {
        if super::x86_amx::matmul(w, a, epi, scratch) {
            return true;
        }
        Isa::Avx512Vnni
    } else {
        isa
    };
    let Some(shape) = Shape::of(isa) else {
        return false;
    };
    if !isa.is_supported() || scratch.len() < scratch_len(w.cols, 1) {
        return false;
    }
    let lanes = shape.lanes;
    let pr = 2 * lanes;
    let split = w.wide;
    let nv = if split { 4 } else { 2 };
    let tmax = if split { shape.t_split } else { shape.t_int8 };
    let width = nv * lanes;
    let npairs = w.cols.div_ceil(2);
    let sub = if a.second.is_some() { 2 } else { 1 };
    // 64-byte aligned panel (scratch_len has 32 values of room for it), then the packed
    // activations of as many rows as fit.
    let off = scratch.as_ptr().align_offset(64).min(32);
    let (panel, acts) = scratch[off..].split_at_mut(npairs * width * 2);
    // VNNI with int8 weights reads the activation rows in place (no packed copy).
    let direct = isa == Isa::Avx512Vnni && !split && sub == 1;
    let per_row = sub * npairs * 2;
    let group = if direct {
        a.count
    } else {
        acts.len() / per_row.max(1)
    };
    if group == 0 {
        return a.count == 0;
    }
    let vector_epilogue = matches!(isa, Isa::Avx512 | Isa::Avx512Vnni)
        && matches!(
            epi,
            Epilogue::Sat16 { .. } | Epilogue::Residual { product: None, .. }
        );
    let mut tile = [0i64; TILE_LEN];
    let (mut lo, mut hi) = ([0i64; 32], [0i64; 32]);
    let mut t0 = 0;
    while t0 < a.count {
        let gn = group.min(a.count - t0);
        let vcount = gn * sub;
        if !direct {
            pack_rows(a, t0, gn, npairs, tmax, acts);
        }
        let mut o0 = 0;
        while o0 < w.rows {
            let n = pr.min(w.rows - o0);
            pack(isa, w, o0, n, pr, split, panel);
            let table = w.table.from(1 + 2 * o0);
            let prq = if vector_epilogue {
                // SAFETY: AVX-512 F is available (`isa` is supported).
                unsafe { PanelRq::new(table, n) }
            } else {
                None
            };
            for (vt, tn) in tiles(vcount, tmax, sub) {
                let out = &mut tile[..tn * width];
                if direct {
                    let first = (t0 + vt) * a.stride;
                    let rows = &a.data[first..first + (tn - 1) * a.stride + w.cols];
                    // SAFETY: VNNI is supported (checked above); the panel holds `npairs`
                    // pairs of 32 lanes; `rows` holds the tile's `tn` rows of `w.cols` values
                    // at `a.stride` (`Rows` holds its rows, `a.len >= w.cols`); `out` holds
                    // `32 tn` sums.
                    unsafe { run_tile_rows(tn, panel.as_ptr(), w.cols, rows, a.stride, out) };
                } else {
                    let tile_acts = &acts[vt * npairs * 2..(vt + tn) * npairs * 2];
                    // SAFETY: `isa` is supported (checked above); the panel holds `npairs`
                    // pairs of `width` lanes and `tile_acts` the `tn` rows' `npairs` pairs;
                    // `out` holds `tn * width` sums.
                    unsafe { run_tile(isa, nv, tn, panel.as_ptr(), npairs, tile_acts, out) };
                }
                let mut i = 0;
                while i < tn {
                    let t = t0 + (vt + i) / sub;
                    let sums = &out[i * width..][..width];
                    let acc: &[i64] = if split {
                        combine(sums, pr, &mut lo[..n]);
                        &lo[..n]
                    } else {
                        &sums[..n]
                    };
                    let acc2: &[i64] = if sub == 2 {
                        let sums2 = &out[(i + 1) * width..][..width];
                        if split {
                            combine(sums2, pr, &mut hi[..n]);
                        } else {
                            hi[..n].copy_from_slice(&sums2[..n]);
                        }
                        &hi[..n]
                    } else {
                        &[]
                    };
                    finish_row(prq.as_ref(), table, w, epi, t, o0, acc, acc2);
                    i += sub;
                }
            }
            o0 += pr;
        }
        t0 += gn;
    }
    true
}

/// The epilogue of activation row `t` and the panel's weight rows `o0..o0 + acc.len()`
/// (`table`: the table from row `o0` on; `acc2`: the second sums, or empty): the vectorized
/// requantizations where `prq` exists (AVX-512), else [`Epilogue::apply_scalar`].
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn finish_row(
    prq: Option<&PanelRq>,
    table: Words<'_>,
    w: &Matrix<'_>,
    epi: &mut Epilogue<'_>,
    t: usize,
    o0: usize,
    acc: &[i64],
    acc2: &[i64],
) {
    let n = acc.len();
    match (prq, epi) {
        (Some(p), Epilogue::Sat16 { out, stride }) => {
            let out = &mut out[t * *stride + o0..][..n];
            // SAFETY: AVX-512 F is available (`prq` exists).
            unsafe { sat16_avx512(p, table, acc, out) };
        }
        (Some(p), Epilogue::Residual { h, res, stride, .. }) => {
            let at = t * *stride + o0;
            // SAFETY: AVX-512 F is available (`prq` exists).
            unsafe { residual_avx512(p, table, acc, &h[at..][..n], &mut res[at..][..n]) };
        }
        (_, epi) => epi.apply_scalar(w.table, w.rows, t, o0, acc, acc2),
    }
}

/// The sums `256 hi + lo` of `out.len()` rows of split int16 weights from a tile row's lanes
/// (`hi` in lanes `0..pr`, `lo` in `pr..2 pr`).
#[inline]
fn combine(lanes: &[i64], pr: usize, out: &mut [i64]) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = (lanes[r] << 8) + lanes[pr + r];
    }
}

/// Packs activation rows `t0..t0 + gn` of `a` (and their second rows, each after its row)
/// into `dst` as the tile kernels read them: per tile of `tmax` rows (the last one shorter),
/// per pair of columns `p`, the pair `(a[t, 2p], a[t, 2p + 1])` of each row of the tile, one
/// after the other (an odd last column pairs with 0).
fn pack_rows(a: &Rows<'_>, t0: usize, gn: usize, npairs: usize, tmax: usize, dst: &mut [i16]) {
    let sub = if a.second.is_some() { 2 } else { 1 };
    let vcount = gn * sub;
    let full = a.len.min(2 * npairs) / 2;
    for (vt, tn) in tiles(vcount, tmax, sub) {
        let tile = &mut dst[vt * npairs * 2..(vt + tn) * npairs * 2];
        let mut rows: [&[i16]; T_MAX] = [&[]; T_MAX];
        for (i, r) in rows.iter_mut().enumerate().take(tn) {
            let v = vt + i;
            let t = t0 + v / sub;
            *r = if sub == 2 && v % 2 == 1 {
                a.second_row(t)
            } else {
                a.row(t)
            };
        }
        let rows = &rows[..tn];
        // The full pairs, written in order: pair p of rows 0..tn, then pair p + 1.
        let (body, rest) = tile.split_at_mut(2 * full * tn);
        let mut out = body.chunks_exact_mut(2);
        for p in 0..full {
            for (row, o) in rows.iter().zip(&mut out) {
                o.copy_from_slice(&row[2 * p..2 * p + 2]);
            }
        }
        if full < npairs {
            for (row, o) in rows.iter().zip(rest.chunks_exact_mut(2)) {
                o[0] = row.get(2 * full).copied().unwrap_or(0);
                o[1] = 0;
            }
        }
    }
}

/// The tiles `(first, rows)` of `vcount` activation rows: as few as hold `tmax` rows each, as
/// even as possible (97 rows in tiles of at most 12: seven of 11 and two of 10, not eight of
/// 12 and one of 1, whose kernel would run far below the others' speed), each a multiple of
/// `sub` rows (so a tile never separates a row from its second row; `tmax` and `vcount` are
/// multiples of `sub`).
fn tiles(vcount: usize, tmax: usize, sub: usize) -> impl Iterator<Item = (usize, usize)> {
    let units = vcount / sub;
    let per = (tmax / sub).max(1);
    let n = units.div_ceil(per);
    let (base, extra) = units
        .checked_div(n)
        .map_or((0, 0), |base| (base, units % n));
    (0..n).map(move |i| {
        let first = i * base + i.min(extra);
        let len = base + usize::from(i < extra);
        (first * sub, len * sub)
    })
}

/// Writes the panel of rows `o0..o0 + n` (`n <= pr`) of `w`, widened to int16 in the
/// multiply-accumulate's order (see the module documentation): per pair of columns, `pr`
/// lanes (`2 pr` when `split`) of two values each; zeros pad the missing rows and an odd last
/// column.
fn pack(isa: Isa, w: &Matrix<'_>, o0: usize, n: usize, pr: usize, split: bool, panel: &mut [i16]) {
    if !split && pr == 32 && n == 32 && matches!(isa, Isa::Avx512 | Isa::Avx512Vnni) {
        // SAFETY: AVX-512 F + BW are available (`isa` is supported).
        unsafe { pack_int8_avx512(w, o0, panel) };
        return;
    }
    pack_scalar(w, o0, n, pr, split, panel);
}

/// [`pack`] one value at a time.
fn pack_scalar(w: &Matrix<'_>, o0: usize, n: usize, pr: usize, split: bool, panel: &mut [i16]) {
    let width = if split { 2 * pr } else { pr };
    panel.fill(0);
    for r in 0..n {
        for k in 0..w.cols {
            let v = w.weight(o0 + r, k);
            let at = (k / 2) * width * 2 + (k & 1);
            if split {
                panel[at + 2 * r] = v >> 8;
                panel[at + 2 * (pr + r)] = v & 0xff;
            } else {
                panel[at + 2 * r] = v;
            }
        }
    }
}

/// [`pack`] of 32 full int8 rows with AVX-512: per block of 32 columns, each row's 32 bytes
/// are widened to 32 int16 (16 pairs), and the two 16 x 16 matrices of pairs (rows 0..16 and
/// 16..32) are transposed so that pair `p` of the 32 rows lies in one 64-byte line per 16
/// rows. The columns past the last block of 32 go one at a time.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn pack_int8_avx512(w: &Matrix<'_>, o0: usize, panel: &mut [i16]) {
    let cols = w.cols;
    let blocks = cols / 32;
    for b in 0..blocks {
        for h in 0..2 {
            let mut v = [_mm512_setzero_si512(); 16];
            for (r, vr) in v.iter_mut().enumerate() {
                let row = &w.row(o0 + 16 * h + r)[32 * b..32 * b + 32];
                // SAFETY: `row` holds 32 bytes.
                *vr = _mm512_cvtepi8_epi16(unsafe { _mm256_loadu_si256(row.as_ptr().cast()) });
            }
            let t = transpose16(v);
            for (p, tp) in t.iter().enumerate() {
                // Pair 16 b + p, rows 16 h..16 h + 16: 32 values at (16 b + p) * 64 + 32 h.
                let dst = &mut panel[(16 * b + p) * 64 + 32 * h..][..32];
                // SAFETY: `dst` holds 32 i16 (64 bytes).
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), *tp) };
            }
        }
    }
    // The last columns (fewer than 32), one at a time, and the pair they may leave half empty.
    let k0 = 32 * blocks;
    if k0 < cols {
        let npairs = cols.div_ceil(2);
        panel[(k0 / 2) * 64..npairs * 64].fill(0);
        for r in 0..32 {
            for k in k0..cols {
                panel[(k / 2) * 64 + 2 * r + (k & 1)] = w.weight(o0 + r, k);
            }
        }
    }
}

/// Transposes a 16 x 16 matrix of 32-bit elements (row `i` in `v[i]`): element `j` of the
/// result's row `i` is element `i` of `v[j]`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
pub(super) fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
    // 2 x 2 blocks of 32-bit elements.
    let mut a = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    // 4 x 4 blocks (64-bit pairs).
    let mut b = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        for j in 0..2 {
            let (x, y) = (a[4 * i + j], a[4 * i + 2 + j]);
            b[4 * i + 2 * j] = _mm512_unpacklo_epi64(x, y);
            b[4 * i + 2 * j + 1] = _mm512_unpackhi_epi64(x, y);
        }
    }
    // b[4i + m], 128-bit lane l: column 4l + m of rows 4i..4i + 4. Result row c = 4l + m
    // gathers lane l of b[m], b[4 + m], b[8 + m], b[12 + m]: two rounds of 128-bit shuffles.
    let mut c = [_mm512_setzero_si512(); 16];
    for i in 0..2 {
        for m in 0..4 {
            let (x, y) = (b[8 * i + m], b[8 * i + 4 + m]);
            c[8 * i + m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y);
            c[8 * i + 4 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y);
        }
    }
    let mut d = [_mm512_setzero_si512(); 16];
    for m in 0..8 {
        let (x, y) = (c[m], c[8 + m]);
        d[m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y);
        d[8 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y);
    }
    d
}

/// Runs the tile kernel of `isa` for `nv` vectors per pair and `tn` activation rows.
///
/// # Safety
///
/// `isa` is supported here; `panel` points to `npairs` pairs of `nv * lanes` lanes (two `i16`
/// each); `acts` holds `npairs * tn` pairs; `out.len() >= tn * nv * lanes`.
unsafe fn run_tile(
    isa: Isa,
    nv: usize,
    tn: usize,
    panel: *const i16,
    npairs: usize,
    acts: &[i16],
    out: &mut [i64],
) {
    macro_rules! by_rows {
        ($f:ident, $nv:literal) => {
            // SAFETY: the caller's contract, and `tn` is the kernel's `T`.
            unsafe {
                match tn {
                    1 => $f::<$nv, 1>(panel, npairs, acts, out),
                    2 => $f::<$nv, 2>(panel, npairs, acts, out),
                    3 => $f::<$nv, 3>(panel, npairs, acts, out),
                    4 => $f::<$nv, 4>(panel, npairs, acts, out),
                    5 => $f::<$nv, 5>(panel, npairs, acts, out),
                    6 => $f::<$nv, 6>(panel, npairs, acts, out),
                    7 => $f::<$nv, 7>(panel, npairs, acts, out),
                    8 => $f::<$nv, 8>(panel, npairs, acts, out),
                    9 => $f::<$nv, 9>(panel, npairs, acts, out),
                    10 => $f::<$nv, 10>(panel, npairs, acts, out),
                    11 => $f::<$nv, 11>(panel, npairs, acts, out),
                    _ => $f::<$nv, 12>(panel, npairs, acts, out),
                }
            }
        };
    }
    match (isa, nv) {
        (Isa::Avx512Vnni, 2) => {
            // SAFETY: the caller's contract (the same as the tile's).
            unsafe {
                match tn {
                    1 => tile_vnni_int8::<1>(panel, npairs, acts, out),
                    2 => tile_vnni_int8::<2>(panel, npairs, acts, out),
                    3 => tile_vnni_int8::<3>(panel, npairs, acts, out),
                    4 => tile_vnni_int8::<4>(panel, npairs, acts, out),
                    5 => tile_vnni_int8::<5>(panel, npairs, acts, out),
                    6 => tile_vnni_int8::<6>(panel, npairs, acts, out),
                    7 => tile_vnni_int8::<7>(panel, npairs, acts, out),
                    8 => tile_vnni_int8::<8>(panel, npairs, acts, out),
                    9 => tile_vnni_int8::<9>(panel, npairs, acts, out),
                    10 => tile_vnni_int8::<10>(panel, npairs, acts, out),
                    11 => tile_vnni_int8::<11>(panel, npairs, acts, out),
                    _ => tile_vnni_int8::<12>(panel, npairs, acts, out),
                }
            }
        }
        (Isa::Avx512Vnni, _) => by_rows!(tile_vnni, 4),
        (Isa::Avx512, 2) => by_rows!(tile_avx512, 2),
        (Isa::Avx512, _) => by_rows!(tile_avx512, 4),
        (_, 2) => by_rows!(tile_avx2, 2),
        _ => by_rows!(tile_avx2, 4),
    }
}

/// The multiply-accumulates of row `$t` of a tile (when `$t < T`): `acc[$t][v] += wv[v] * b`
/// for the `v < NV` of the list, `b` the row's broadcast pair. Literal indices (rather than a
/// loop) keep every accumulator in a register.
macro_rules! mac_row {
    ($mac:ident, $splat:ident, $acc:ident, $wv:ident, $pairs:ident, $p:ident, $t_n:ident,
     $nv:ident, $t:literal; $($v:literal)*) => {
        if $t < $t_n {
            // SAFETY: pair `p T + t < npairs T` of the packed rows (an unaligned read of two
            // i16).
            let b = $splat(unsafe { $pairs.add($p * $t_n + $t).read_unaligned() });
            $( if $v < $nv { $acc[$t][$v] = $mac($acc[$t][$v], $wv[$v], b); } )*
        }
    };
}

/// Defines a tile kernel: `T <= T_MAX` activation rows x `NV <= 4` vectors of lanes, the sums
/// added to `out[(t * NV + v) * lanes + j]` (lane `j` of vector `v` of row `t`).
macro_rules! tile_kernel {
    (
        $(#[$doc:meta])*
        $name:ident, $feat:literal, $v:ty, $lanes:expr,
        zero: $zero:ident, load: $load:ident, splat: $splat:ident,
        mac: $mac:ident, widen_add: $widen:ident
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// The CPU has the target features; `panel` points to `npairs` pairs of `NV * lanes`
        /// lanes of two `i16`; `acts` holds `npairs * T` pairs (pair `p` of row `t` at
        /// `2 (p T + t)`); `out.len() >= T * NV * lanes`.
        #[target_feature(enable = $feat)]
        unsafe fn $name<const NV: usize, const T: usize>(
            panel: *const i16,
            npairs: usize,
            acts: &[i16],
            out: &mut [i64],
        ) {
            const LANES: usize = $lanes;
            let acts = &acts[..2 * npairs * T];
            let pairs = acts.as_ptr().cast::<i32>();
            let out = &mut out[..T * NV * LANES];
            let pstride = NV * LANES * 2;
            let mut c = 0;
            while c < npairs {
                let end = (c + CHUNK_PAIRS).min(npairs);
                let mut acc: [[$v; 4]; T_MAX] = [[$zero(); 4]; T_MAX];
                for p in c..end {
                    let mut wv: [$v; 4] = [$zero(); 4];
                    for (v, x) in wv.iter_mut().enumerate().take(NV) {
                        // SAFETY: pair `p < npairs` of the panel: `NV` vectors of `LANES`
                        // pairs of i16.
                        *x = unsafe { $load(panel.add(p * pstride + v * LANES * 2)) };
                    }
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 0; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 1; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 2; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 3; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 4; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 5; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 6; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 7; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 8; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 9; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 10; 0 1 2 3);
                    mac_row!($mac, $splat, acc, wv, pairs, p, T, NV, 11; 0 1 2 3);
                }
                for (t, row) in acc.iter().enumerate().take(T) {
                    for (v, &x) in row.iter().enumerate().take(NV) {
                        $widen(x, &mut out[(t * NV + v) * LANES..][..LANES], c == 0);
                    }
                }
                c = end;
            }
        }
    };
}

tile_kernel!(
    /// The AVX-512 VNNI tile: `vpdpwssd` (multiply pairs and add to `i32` in one instruction).
    tile_vnni, "avx2,avx512f,avx512bw,avx512vnni", __m512i, 16,
    zero: _mm512_setzero_si512, load: load512, splat: _mm512_set1_epi32,
    mac: mac_vnni, widen_add: widen_add_512
);

tile_kernel!(
    /// The AVX-512 F + BW tile: `vpmaddwd` then `vpaddd`.
    tile_avx512, "avx2,avx512f,avx512bw", __m512i, 16,
    zero: _mm512_setzero_si512, load: load512, splat: _mm512_set1_epi32,
    mac: mac_avx512, widen_add: widen_add_512
);

tile_kernel!(
    /// The AVX2 tile: `vpmaddwd` then `vpaddd` on 256 bits.
    tile_avx2, "avx2", __m256i, 8,
    zero: _mm256_setzero_si256, load: load256, splat: _mm256_set1_epi32,
    mac: mac_avx2, widen_add: widen_add_256
);

/// The text of one pass of [`tile_vnni_int8`]'s loop: the pair's two weight vectors into
/// `zmm24`/`zmm25`, then per activation row `t` (offset `4 t` bytes in the pair's block) two
/// `vpdpwssd` with the row's pair broadcast from memory (`{1to16}`) into `zmm(2t)`, `zmm(2t+1)`.
macro_rules! vnni_int8_loop {
    ($($off:literal $r0:literal $r1:literal),*) => {
        concat!(
            "2:\n",
            "vmovdqu64 zmm24, zmmword ptr [{w}]\n",
            "vmovdqu64 zmm25, zmmword ptr [{w} + 64]\n",
            $(
                "vpdpwssd zmm", $r0, ", zmm24, dword ptr [{a} + ", $off, "]{{1to16}}\n",
                "vpdpwssd zmm", $r1, ", zmm25, dword ptr [{a} + ", $off, "]{{1to16}}\n",
            )*
            "add {w}, 128\n",
            "add {a}, {step}\n",
            "dec {n}\n",
            "jnz 2b\n",
        )
    };
}

/// One chunk of a VNNI int8 tile through `asm!`: the loop text `$loop!(rows)`, the
/// accumulators pinned to `zmm0..zmm23` (rows past `T` pass through untouched), the weight
/// vectors in `zmm24`/`zmm25`, and the loop's own operands.
macro_rules! vnni_asm {
    ($acc:ident, $loop:ident!($($rows:tt)*), $($operands:tt)*) => {
        asm!(
            $loop!($($rows)*),
            $($operands)*
            inout("zmm0") $acc[0], inout("zmm1") $acc[1], inout("zmm2") $acc[2],
            inout("zmm3") $acc[3], inout("zmm4") $acc[4], inout("zmm5") $acc[5],
            inout("zmm6") $acc[6], inout("zmm7") $acc[7], inout("zmm8") $acc[8],
            inout("zmm9") $acc[9], inout("zmm10") $acc[10], inout("zmm11") $acc[11],
            inout("zmm12") $acc[12], inout("zmm13") $acc[13], inout("zmm14") $acc[14],
            inout("zmm15") $acc[15], inout("zmm16") $acc[16], inout("zmm17") $acc[17],
            inout("zmm18") $acc[18], inout("zmm19") $acc[19], inout("zmm20") $acc[20],
            inout("zmm21") $acc[21], inout("zmm22") $acc[22], inout("zmm23") $acc[23],
            out("zmm24") _, out("zmm25") _,
            options(nostack, readonly),
        )
    };
}

/// One chunk of [`tile_vnni_int8`]: [`vnni_asm`] over packed rows.
macro_rules! vnni_int8_asm {
    ($acc:ident, $w:ident, $a:ident, $n:ident, $step:ident; $($rows:tt)*) => {
        vnni_asm!(
            $acc,
            vnni_int8_loop!($($rows)*),
            w = inout(reg) $w => _,
            a = inout(reg) $a => _,
            n = inout(reg) $n => _,
            step = in(reg) $step,
        )
    };
}

/// The AVX-512 VNNI tile of int8 weights (two vectors per pair of columns), `T` activation
/// rows: the [`tile_vnni`] arithmetic, its inner loop written in `asm!` so that the `2 T`
/// accumulators stay in registers (the compiler's allocation of the generic tile spilled and
/// shuffled them for `T >= 10`, about half of `vpdpwssd`'s throughput). Each row's pair is
/// broadcast straight from memory (`vpdpwssd ... {1to16}`), so a pass is two loads and `2 T`
/// multiply-accumulates. The same sums, in the same chunks, as [`tile_vnni`].
///
/// # Safety
///
/// As [`tile_vnni`] with `NV = 2`: AVX-512 F, BW and VNNI are available; `panel` points to
/// `npairs` pairs of 32 lanes of two `i16`; `acts` holds `npairs * T` pairs; `out.len() >=
/// 32 T`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni_int8<const T: usize>(
    panel: *const i16,
    npairs: usize,
    acts: &[i16],
    out: &mut [i64],
) {
    assert!((1..=T_MAX).contains(&T) && acts.len() >= 2 * npairs * T && out.len() >= 32 * T);
    let step = 4 * T;
    let mut c = 0;
    while c < npairs {
        let end = (c + CHUNK_PAIRS).min(npairs);
        let mut acc = [_mm512_setzero_si512(); 24];
        // SAFETY: pairs `c..end` of the panel (128 bytes each) and of the packed rows (`4 T`
        // bytes each) are in bounds (the caller's contract and the assertion); the loop runs
        // `end - c >= 1` passes and reads nothing else, writes only the named registers.
        unsafe {
            let w = panel.add(c * 64);
            let a = acts.as_ptr().add(2 * c * T);
            let n = end - c;
            match T {
                1 => vnni_int8_asm!(acc, w, a, n, step; 0 0 1),
                2 => vnni_int8_asm!(acc, w, a, n, step; 0 0 1, 4 2 3),
                3 => vnni_int8_asm!(acc, w, a, n, step; 0 0 1, 4 2 3, 8 4 5),
                4 => vnni_int8_asm!(acc, w, a, n, step; 0 0 1, 4 2 3, 8 4 5, 12 6 7),
                5 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9),
                6 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11),
                7 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11, 24 12 13),
                8 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11, 24 12 13, 28 14 15),
                9 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11, 24 12 13, 28 14 15,
                    32 16 17),
                10 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11, 24 12 13, 28 14 15,
                    32 16 17, 36 18 19),
                11 => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11, 24 12 13, 28 14 15,
                    32 16 17, 36 18 19, 40 20 21),
                _ => vnni_int8_asm!(acc, w, a, n, step;
                    0 0 1, 4 2 3, 8 4 5, 12 6 7, 16 8 9, 20 10 11, 24 12 13, 28 14 15,
                    32 16 17, 36 18 19, 40 20 21, 44 22 23),
            }
        }
        for (i, &x) in acc.iter().enumerate().take(2 * T) {
            widen_add_512(x, &mut out[i * 16..][..16], c == 0);
        }
        c = end;
    }
}

/// Runs [`tile_vnni_int8_rows`] for `tn` activation rows.
///
/// # Safety
///
/// As [`tile_vnni_int8_rows`] with `T = tn`.
unsafe fn run_tile_rows(
    tn: usize,
    panel: *const i16,
    cols: usize,
    rows: &[i16],
    stride: usize,
    out: &mut [i64],
) {
    macro_rules! by_rows {
        ($($t:literal)*) => {
            match tn {
                // SAFETY: the caller's contract with `T = tn`.
                $($t => unsafe { tile_vnni_int8_rows::<$t>(panel, cols, rows, stride, out) },)*
                _ => unreachable!("tiles hold 1..=T_MAX rows"),
            }
        };
    }
    by_rows!(1 2 3 4 5 6 7 8 9 10 11 12);
}

/// The text of one pass of [`tile_vnni_int8_rows`]'s loop: as [`vnni_int8_loop`], each
/// activation row's pair read in place (row `t` at `b + t s` bytes: `b`, `b5 = b + 5 s` and
/// `b10 = b + 10 s` with `s` and `s3 = 3 s` as index registers).
macro_rules! vnni_rows_loop {
    ($($addr:literal $r0:literal $r1:literal),*) => {
        concat!(
            "lea {s3}, [{s} + {s}*2]\n",
            "lea {b5}, [{b} + {s}*4]\n",
            "add {b5}, {s}\n",
            "lea {b10}, [{b5} + {s}*4]\n",
            "add {b10}, {s}\n",
            "2:\n",
            "vmovdqu64 zmm24, zmmword ptr [{w}]\n",
            "vmovdqu64 zmm25, zmmword ptr [{w} + 64]\n",
            $(
                "vpdpwssd zmm", $r0, ", zmm24, dword ptr ", $addr, "{{1to16}}\n",
                "vpdpwssd zmm", $r1, ", zmm25, dword ptr ", $addr, "{{1to16}}\n",
            )*
            "add {w}, 128\n",
            "add {b}, 4\n",
            "add {b5}, 4\n",
            "add {b10}, 4\n",
            "dec {n}\n",
            "jnz 2b\n",
        )
    };
}

/// One chunk of [`tile_vnni_int8_rows`]: [`vnni_asm`] over the rows in place.
macro_rules! vnni_rows_asm {
    ($acc:ident, $w:ident, $b:ident, $s:ident, $n:ident; $($rows:tt)*) => {
        vnni_asm!(
            $acc,
            vnni_rows_loop!($($rows)*),
            w = inout(reg) $w => _,
            b = inout(reg) $b => _,
            s = in(reg) $s,
            n = inout(reg) $n => _,
            s3 = out(reg) _,
            b5 = out(reg) _,
            b10 = out(reg) _,
        )
    };
}

/// [`tile_vnni_int8`] reading the `T` activation rows where they are (row `t` at `rows[t *
/// stride..]`, at least `cols` values each) instead of a packed copy: the same sums. The
/// pairs `(a[t, 2p], a[t, 2p + 1])` of the `cols / 2` full pairs are broadcast from the rows
/// themselves; an odd last column (whose pair would read past the row) is added after the
/// loop, its weight pair being `(w, 0)`.
///
/// # Safety
///
/// AVX-512 F, BW and VNNI are available; `panel` points to `cols.div_ceil(2)` pairs of 32
/// lanes of two `i16`; `rows.len() >= (T - 1) * stride + cols`; `out.len() >= 32 T`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni_int8_rows<const T: usize>(
    panel: *const i16,
    cols: usize,
    rows: &[i16],
    stride: usize,
    out: &mut [i64],
) {
    assert!(
        (1..=T_MAX).contains(&T)
            && cols > 0
            && rows.len() >= (T - 1) * stride + cols
            && out.len() >= 32 * T
    );
    let npairs = cols.div_ceil(2);
    let full = cols / 2;
    let s = 2 * stride;
    let mut c = 0;
    while c < npairs {
        let end = (c + CHUNK_PAIRS).min(npairs);
        let mut acc = [_mm512_setzero_si512(); 24];
        let n = end.min(full).saturating_sub(c);
        if n > 0 {
            let w = panel.wrapping_add(c * 64);
            let b = rows.as_ptr().wrapping_add(2 * c);
            // SAFETY: pairs `c..c + n` of the panel (128 bytes each) and of every row `t <
            // T` (4 bytes at `b + t s + 4 p`, within the row's `cols` values since `2 (c + n)
            // <= 2 full <= cols`) are in bounds (the caller's contract and the assertion); the
            // loop runs `n >= 1` passes, reads nothing else, writes only the named registers.
            unsafe {
                match T {
                    1 => vnni_rows_asm!(acc, w, b, s, n; "[{b}]" 0 1),
                    2 => vnni_rows_asm!(acc, w, b, s, n; "[{b}]" 0 1, "[{b} + {s}]" 2 3),
                    3 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5),
                    4 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7),
                    5 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9),
                    6 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11),
                    7 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11, "[{b5} + {s}]" 12 13),
                    8 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11, "[{b5} + {s}]" 12 13,
                        "[{b5} + {s}*2]" 14 15),
                    9 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11, "[{b5} + {s}]" 12 13,
                        "[{b5} + {s}*2]" 14 15, "[{b5} + {s3}]" 16 17),
                    10 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11, "[{b5} + {s}]" 12 13,
                        "[{b5} + {s}*2]" 14 15, "[{b5} + {s3}]" 16 17, "[{b5} + {s}*4]" 18 19),
                    11 => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11, "[{b5} + {s}]" 12 13,
                        "[{b5} + {s}*2]" 14 15, "[{b5} + {s3}]" 16 17, "[{b5} + {s}*4]" 18 19,
                        "[{b10}]" 20 21),
                    _ => vnni_rows_asm!(acc, w, b, s, n;
                        "[{b}]" 0 1, "[{b} + {s}]" 2 3, "[{b} + {s}*2]" 4 5, "[{b} + {s3}]" 6 7,
                        "[{b} + {s}*4]" 8 9, "[{b5}]" 10 11, "[{b5} + {s}]" 12 13,
                        "[{b5} + {s}*2]" 14 15, "[{b5} + {s3}]" 16 17, "[{b5} + {s}*4]" 18 19,
                        "[{b10}]" 20 21, "[{b10} + {s}]" 22 23),
                }
            }
        }
        if end > full {
            // The odd last column: pair `full` holds `(w[r, cols - 1], 0)` per lane.
            // SAFETY: pair `full < npairs` of the panel: two 32-value vectors.
            let (w0, w1) = unsafe {
                (
                    load512(panel.add(full * 64)),
                    load512(panel.add(full * 64 + 32)),
                )
            };
            for t in 0..T {
                let x = _mm512_set1_epi32(rows[t * stride + cols - 1] as u16 as i32);
                acc[2 * t] = _mm512_dpwssd_epi32(acc[2 * t], w0, x);
                acc[2 * t + 1] = _mm512_dpwssd_epi32(acc[2 * t + 1], w1, x);
            }
        }
        for (i, &x) in acc.iter().enumerate().take(2 * T) {
            widen_add_512(x, &mut out[i * 16..][..16], c == 0);
        }
        c = end;
    }
}

/// 32 `i16` from `p`.
///
/// # Safety
///
/// `p` points to 32 readable `i16`.
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn load512(p: *const i16) -> __m512i {
    // SAFETY: the caller's contract (an unaligned load).
    unsafe { _mm512_loadu_si512(p.cast()) }
}

/// 16 `i16` from `p`.
///
/// # Safety
///
/// `p` points to 16 readable `i16`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load256(p: *const i16) -> __m256i {
    // SAFETY: the caller's contract (an unaligned load).
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// `acc + w0 b0 + w1 b1` per `i32` lane (`vpdpwssd`).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
fn mac_vnni(acc: __m512i, w: __m512i, b: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(acc, w, b)
}

/// `acc + w0 b0 + w1 b1` per `i32` lane (`vpmaddwd`, `vpaddd`).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
fn mac_avx512(acc: __m512i, w: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(acc, _mm512_madd_epi16(w, b))
}

/// `acc + w0 b0 + w1 b1` per `i32` lane (`vpmaddwd`, `vpaddd`).
#[inline]
#[target_feature(enable = "avx2")]
fn mac_avx2(acc: __m256i, w: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(w, b))
}

/// Adds the 16 `i32` lanes of `x`, sign-extended, to `out[..16]` (stores them when `first`).
#[inline]
#[target_feature(enable = "avx2,avx512f")]
fn widen_add_512(x: __m512i, out: &mut [i64], first: bool) {
    let out = &mut out[..16];
    let mut lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(x));
    let mut hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(x));
    let p = out.as_mut_ptr();
    // SAFETY: `out` holds 16 i64 (two 64-byte vectors).
    unsafe {
        let p8 = p.add(8);
        if !first {
            lo = _mm512_add_epi64(_mm512_loadu_si512(p.cast()), lo);
            hi = _mm512_add_epi64(_mm512_loadu_si512(p8.cast()), hi);
        }
        _mm512_storeu_si512(p.cast(), lo);
        _mm512_storeu_si512(p8.cast(), hi);
    }
}

/// Adds the 8 `i32` lanes of `x`, sign-extended, to `out[..8]` (stores them when `first`).
#[inline]
#[target_feature(enable = "avx2")]
fn widen_add_256(x: __m256i, out: &mut [i64], first: bool) {
    let out = &mut out[..8];
    let mut lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(x));
    let mut hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(x));
    let p = out.as_mut_ptr();
    // SAFETY: `out` holds 8 i64 (two 32-byte vectors).
    unsafe {
        let p4 = p.add(4);
        if !first {
            lo = _mm256_add_epi64(_mm256_loadu_si256(p.cast()), lo);
            hi = _mm256_add_epi64(_mm256_loadu_si256(p4.cast()), hi);
        }
        _mm256_storeu_si256(p.cast(), lo);
        _mm256_storeu_si256(p4.cast(), hi);
    }
}

/// The requants of a panel of up to 32 weight rows as AVX-512 vectors (groups of 8 rows, the
/// `(mult, shift)` word pairs as 64-bit lanes), for the vectorized epilogues.
#[derive(Clone, Copy)]
pub(super) struct PanelRq {
    /// `(mult, shift)` per lane (`vpmuldq` reads the low, signed half).
    q: [__m512i; 4],
    shift: [__m512i; 4],
    /// `2^(shift - 1)`, or 0 for shift 0.
    round: [__m512i; 4],
    /// The lanes of each group that hold rows.
    mask: [__mmask8; 4],
    groups: usize,
}

impl PanelRq {
    /// The requants of rows `0..n` of `table` (the channel pairs from the panel's first row),
    /// or `None` when the table is short or a shift exceeds 62 (the fast path does not apply).
    ///
    /// # Safety
    ///
    /// AVX-512 F is available.
    #[target_feature(enable = "avx2,avx512f")]
    pub(super) fn new(table: Words<'_>, n: usize) -> Option<PanelRq> {
        if n > 32 || table.0.len() < 8 * n {
            return None;
        }
        let zero = _mm512_setzero_si512();
        let mut p = PanelRq {
            q: [zero; 4],
            shift: [zero; 4],
            round: [zero; 4],
            mask: [0; 4],
            groups: n.div_ceil(8),
        };
        let one = _mm512_set1_epi64(1);
        for g in 0..p.groups {
            let rows = (n - 8 * g).min(8);
            let mask = (((1u32 << rows) - 1) & 0xff) as __mmask8;
            // SAFETY: the lanes of `mask` read table bytes 64 g..64 g + 8 rows <= 8 n (checked);
            // the others are not accessed (masked loads suppress them).
            let q = unsafe { _mm512_maskz_loadu_epi64(mask, table.0.as_ptr().add(64 * g).cast()) };
            let shift = _mm512_srli_epi64::<32>(q);
            if _mm512_mask_cmpgt_epu64_mask(mask, shift, _mm512_set1_epi64(62)) != 0 {
                return None;
            }
            p.q[g] = q;
            p.shift[g] = shift;
            p.round[g] = _mm512_sllv_epi64(one, _mm512_sub_epi64(shift, one));
            p.mask[g] = mask;
        }
        Some(p)
    }
}

/// `round(acc * mult / 2^shift)` of the 8 outputs of group `g` (`acc`: their sums), or `None`
/// when a sum does not fit `i32` (then the exact fast path of the module documentation does
/// not apply).
#[inline]
#[target_feature(enable = "avx2,avx512f")]
fn requant_group(p: &PanelRq, g: usize, acc: __m512i) -> Option<__m512i> {
    let fits = _mm512_mask_cmpeq_epi64_mask(
        p.mask[g],
        acc,
        _mm512_srai_epi64::<32>(_mm512_slli_epi64::<32>(acc)),
    );
    if fits != p.mask[g] {
        return None;
    }
    // Low 32 bits of each lane, signed: the sum (it fits) times the multiplier.
    let prod = _mm512_mul_epi32(acc, p.q[g]);
    Some(_mm512_srav_epi64(
        _mm512_add_epi64(prod, p.round[g]),
        p.shift[g],
    ))
}

/// The sums of group `g` (`acc[8 g..]`, the group's rows only).
///
/// # Safety
///
/// AVX-512 F is available; `acc` holds the rows of the panel (`8 g + rows of the group`).
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn load_group(p: &PanelRq, g: usize, acc: &[i64]) -> __m512i {
    // SAFETY: the caller's contract; masked-off lanes are not accessed.
    unsafe { _mm512_maskz_loadu_epi64(p.mask[g], acc.as_ptr().add(8 * g).cast()) }
}

/// `out[i] = sat16(requant_i(acc[i]))` for the panel's rows (`acc.len() = out.len() = n`).
#[target_feature(enable = "avx2,avx512f")]
fn sat16_avx512(p: &PanelRq, table: Words<'_>, acc: &[i64], out: &mut [i16]) {
    let n = acc.len().min(out.len());
    if n == 32 && p.groups == 4 && sat16_full_panel(p, acc, out) {
        return;
    }
    for g in 0..p.groups {
        let lanes = 8 * g..(8 * g + 8).min(n);
        // SAFETY: AVX-512 F; `acc` holds the n rows.
        let a = unsafe { load_group(p, g, &acc[..n]) };
        match requant_group(p, g, a) {
            // SAFETY: the group's lanes write out[8 g..8 g + rows] (masked store).
            Some(r) => unsafe {
                _mm512_mask_cvtsepi64_storeu_epi16(out.as_mut_ptr().add(8 * g).cast(), p.mask[g], r)
            },
            None => {
                for j in lanes {
                    out[j] = kernels::sat16(table.requant(2 * j).apply(acc[j]));
                }
            }
        }
    }
}

/// [`sat16_avx512`] of a full panel (32 rows, every lane used): two unmasked 16-value stores;
/// `false`, writing nothing, when a sum does not fit `i32` (the general path then runs).
#[inline]
#[target_feature(enable = "avx2,avx512f")]
fn sat16_full_panel(p: &PanelRq, acc: &[i64], out: &mut [i16]) -> bool {
    let (acc, out) = (&acc[..32], &mut out[..32]);
    let mut r = [_mm_setzero_si128(); 4];
    for (g, rg) in r.iter_mut().enumerate() {
        // SAFETY: acc[8 g..8 g + 8] exists (32 values).
        let a = unsafe { _mm512_loadu_si512(acc.as_ptr().add(8 * g).cast()) };
        match requant_group(p, g, a) {
            Some(v) => *rg = _mm512_cvtsepi64_epi16(v),
            None => return false,
        }
    }
    // SAFETY: out[0..32] exists (two 32-byte stores).
    unsafe {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_set_m128i(r[1], r[0]));
        _mm256_storeu_si256(
            out.as_mut_ptr().add(16).cast(),
            _mm256_set_m128i(r[3], r[2]),
        );
    }
    true
}

/// `res[i] = sat_residual(h[i] + requant_i(acc[i]))` for the panel's rows.
#[target_feature(enable = "avx2,avx512f")]
fn residual_avx512(p: &PanelRq, table: Words<'_>, acc: &[i64], h: &[i16], res: &mut [i32]) {
    let n = acc.len().min(h.len()).min(res.len());
    let (lo, hi) = (
        _mm512_set1_epi64(-(RESIDUAL_MAX as i64)),
        _mm512_set1_epi64(RESIDUAL_MAX as i64),
    );
    for g in 0..p.groups {
        let lanes = 8 * g..(8 * g + 8).min(n);
        // SAFETY: AVX-512 F; `acc` holds the n rows.
        let a = unsafe { load_group(p, g, &acc[..n]) };
        match requant_group(p, g, a) {
            Some(r) => {
                // SAFETY: the group's lanes read h[8 g..8 g + rows] (masked load).
                let hv = unsafe { _mm_maskz_loadu_epi16(p.mask[g], h.as_ptr().add(8 * g).cast()) };
                // |r| < 2^62 and |h| < 2^15: the sum does not overflow, then the clamp.
                let s = _mm512_add_epi64(r, _mm512_cvtepi16_epi64(hv));
                let s = _mm512_min_epi64(_mm512_max_epi64(s, lo), hi);
                // SAFETY: the group's lanes write res[8 g..8 g + rows] (masked store).
                unsafe {
                    _mm512_mask_cvtepi64_storeu_epi32(
                        res.as_mut_ptr().add(8 * g).cast(),
                        p.mask[g],
                        s,
                    )
                };
            }
            None => {
                for j in lanes {
                    let delta = table.requant(2 * j).apply(acc[j]);
                    res[j] = kernels::sat_residual((h[j] as i64).saturating_add(delta));
                }
            }
        }
    }
}
