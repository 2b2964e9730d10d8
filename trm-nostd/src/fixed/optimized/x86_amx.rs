//! x86_64 AMX-INT8 matrix products of int8 weights ([`Isa::Amx`](super::Isa::Amx)): the tile
//! unit multiplies 16 x 64 int8 by 64 x 16 int8 into 16 x 16 `i32` per instruction.
//!
//! # The scheme
//!
//! The int16 activations are split into bytes, `a = 256 hi + lo` with `hi = a >> 8` in
//! `[-128, 127]` (signed) and `lo = a & 255` in `[0, 255]` (unsigned), each row-major (`A`
//! tiles: 16 activation rows x 64 columns). A panel of 32 weight rows is packed once per
//! product as `B` tiles (per 64 columns and 16 weight rows: row `k4` holds, for each weight
//! row `n`, its 4 weights `4 k4 .. 4 k4 + 4`), the layout `tdpb*d` reads. For each group of
//! 16 activation rows, four accumulator tiles sum `hi x W` (`tdpbssd`, signed x signed) and
//! `lo x W` (`tdpbusd`, unsigned x signed) for the panel's two halves over all the columns;
//! then `sum = 256 sum_hi + sum_lo` in `i64` per output, and the epilogue of the x86 products.
//!
//! int16 weights are split the same way, `w = 256 w_hi + w_lo`, into two B tiles per 16 weight
//! rows: three accumulators sum `a_hi w_hi` (`tdpbssd`), `a_hi w_lo + a_lo w_hi` (`tdpbsud`,
//! `tdpbusd`) and `a_lo w_lo` (`tdpbuud`), and `sum = 65536 hh + 256 mid + ll`.
//!
//! # Exactness
//!
//! `|w hi| <= 128 * 128 = 2^14` and `|w lo| <= 128 * 255 = 32640`: over at most [`COLS_MAX`]
//! = 65536 columns the `i32` sums stay below `2^30` and `2^31 - 1` (32640 * 65536 =
//! 2_139_095_040); the tile unit adds in `i32` without saturation, so every sum is exact, and
//! `256 sum_hi + sum_lo` (in `i64`) is the exact dot product, as every order of integer
//! additions gives the same. With int16 weights the middle sum has two such products per
//! column and the low one `255 * 255 = 65025`: exact over at most [`COLS_MAX_WIDE`] = 32768
//! columns (`2 * 32640 * 32768 < 2^31`, `65025 * 32768 < 2^31`). Padding (activation rows
//! past the block, columns past the row, weight rows past the matrix) is zero on one side of
//! each product.

use super::matmul::{Epilogue, Matrix, Rows};
use super::x86_matmul::{PanelRq, finish_row, transpose16};
use core::arch::asm;
use core::arch::x86_64::*;

/// Longest row of the int8-weight products (see the module's exactness notes).
const COLS_MAX: usize = 1 << 16;

/// Longest row of the int16-weight products.
const COLS_MAX_WIDE: usize = 1 << 15;

/// Bytes of one tile (16 rows of 64 bytes).
const TILE: usize = 1024;

/// The tile configuration (`ldtilecfg`'s 64-byte block): palette 1, tiles 0..8 of 16 rows x
/// 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// [`super::matmul`] with AMX; `false` (nothing done) for second rows, empty rows, rows longer
/// than [`COLS_MAX`] ([`COLS_MAX_WIDE`] with int16 weights), without AMX, or when `scratch`
/// cannot hold a panel and 16 activation rows.
pub(super) fn matmul(
    w: &Matrix<'_>,
    a: &Rows<'_>,
    epi: &mut Epilogue<'_>,
    scratch: &mut [i16],
) -> bool {
    let max = if w.wide { COLS_MAX_WIDE } else { COLS_MAX };
    if a.second.is_some() || w.cols == 0 || w.cols > max || !super::x86::has_amx() {
        return false;
    }
    // Weight rows per panel: two halves of 16 (int8), or one block of 16 split in two bytes.
    let block = if w.wide { 16 } else { 32 };
    let kc = w.cols.div_ceil(64);
    // The scratch as bytes, 64-byte aligned: the panel's B tiles (2 halves x kc), then the
    // activations' hi and lo bytes of as many groups of 16 rows as fit.
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(scratch);
    let off = bytes.as_ptr().align_offset(64).min(bytes.len());
    let bytes = &mut bytes[off..];
    let panel_len = 2 * kc * TILE;
    let group_len = 2 * kc * TILE;
    if bytes.len() < panel_len + group_len {
        return false;
    }
    let (panel, acts) = bytes.split_at_mut(panel_len);
    let groups_fit = acts.len() / group_len;
    let vector_epilogue = matches!(
        epi,
        Epilogue::Sat16 { .. } | Epilogue::Residual { product: None, .. }
    );
    // SAFETY: AMX-TILE is available (`has_amx`); the configuration is a valid palette-1
    // block, 64-byte aligned.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) &CONFIG, options(nostack, readonly)) };
    let mut c = Sums([0; 1024]);
    let mut acc = [0i64; 32];
    let mut t0 = 0;
    while t0 < a.count {
        let gn = (groups_fit * 16).min(a.count - t0);
        let groups = gn.div_ceil(16);
        // SAFETY: AVX-512 F, BW and VL are available (`has_amx` checks them).
        unsafe { pack_activations(a, t0, gn, w.cols, &mut acts[..groups * group_len]) };
        let mut o0 = 0;
        while o0 < w.rows {
            let n = block.min(w.rows - o0);
            // SAFETY: AVX-512 BW is available.
            unsafe {
                if w.wide {
                    pack_panel_wide(w, o0, kc, panel)
                } else {
                    pack_panel(w, o0, kc, panel)
                }
            };
            let table = w.table.from(1 + 2 * o0);
            let prq = if vector_epilogue {
                // SAFETY: AVX-512 F is available.
                unsafe { PanelRq::new(table, n) }
            } else {
                None
            };
            for g in 0..groups {
                let act = &acts[g * group_len..(g + 1) * group_len];
                // SAFETY: AMX is configured (above); `act` holds the group's hi and lo tiles
                // (kc each, rows at a stride of 64 kc bytes), `panel` the 2 kc B tiles, `c`
                // 4 tiles of sums.
                unsafe {
                    if w.wide {
                        group_sums_wide(act, panel, kc, &mut c)
                    } else {
                        group_sums(act, panel, kc, &mut c)
                    }
                };
                for i in 0..16.min(gn - 16 * g) {
                    let t = t0 + 16 * g + i;
                    // SAFETY: AVX-512 F is available.
                    unsafe {
                        if w.wide {
                            combine_row_wide(&c, i, &mut acc)
                        } else {
                            combine_row(&c, i, &mut acc)
                        }
                    };
                    finish_row(prq.as_ref(), table, w, epi, t, o0, &acc[..n], &[]);
                }
            }
            o0 += block;
        }
        t0 += gn;
    }
    // SAFETY: AMX-TILE is available; releases the tile state.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    true
}

/// Four accumulator tiles as stored: `hi` x first half, `hi` x second half, `lo` x first
/// half, `lo` x second half; each 16 activation rows x 16 weight rows of `i32`.
#[repr(C, align(64))]
struct Sums([i32; 1024]);

/// The sums of one group of 16 activation rows with the panel's 32 weight rows into `c`.
///
/// # Safety
///
/// AMX-INT8 is available and configured ([`CONFIG`]); `act` holds `2 kc` tiles' bytes laid
/// out as [`pack_activations`] writes them (hi rows then lo rows, `64 kc` bytes per row),
/// `panel` the `2 kc` B tiles of [`pack_panel`].
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn group_sums(act: &[u8], panel: &[u8], kc: usize, c: &mut Sums) {
    assert!(act.len() >= 2 * kc * TILE && panel.len() >= 2 * kc * TILE && kc > 0);
    let stride = 64 * kc;
    let hi = act.as_ptr();
    let lo = act[kc * TILE..].as_ptr();
    let b0 = panel.as_ptr();
    let b1 = panel[kc * TILE..].as_ptr();
    // SAFETY: each pass reads one 16 x 64-byte tile of hi and lo rows (at `stride`, within
    // `act`), and one B tile of each half (within `panel`), for `kc` passes; the stores
    // write the 4 KiB of `c`. The tile registers are the only other state touched.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{hi} + {stride}*1]",
            "tileloadd tmm5, [{lo} + {stride}*1]",
            "tileloadd tmm6, [{b0} + {s64}*1]",
            "tileloadd tmm7, [{b1} + {s64}*1]",
            "tdpbssd tmm0, tmm4, tmm6",
            "tdpbssd tmm1, tmm4, tmm7",
            "tdpbusd tmm2, tmm5, tmm6",
            "tdpbusd tmm3, tmm5, tmm7",
            "add {hi}, 64",
            "add {lo}, 64",
            "add {b0}, 1024",
            "add {b1}, 1024",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c} + {s64}*1], tmm0",
            "add {c}, 1024",
            "tilestored [{c} + {s64}*1], tmm1",
            "add {c}, 1024",
            "tilestored [{c} + {s64}*1], tmm2",
            "add {c}, 1024",
            "tilestored [{c} + {s64}*1], tmm3",
            hi = inout(reg) hi => _,
            lo = inout(reg) lo => _,
            b0 = inout(reg) b0 => _,
            b1 = inout(reg) b1 => _,
            n = inout(reg) kc => _,
            c = inout(reg) c.0.as_mut_ptr() => _,
            stride = in(reg) stride,
            s64 = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// The sums of one group of 16 activation rows with a block of 16 int16 weight rows into
/// tiles 0 (`hh`), 1 (`mid`) and 2 (`ll`) of `c`.
///
/// # Safety
///
/// As [`group_sums`], with the `2 kc` B tiles of [`pack_panel_wide`] (hi bytes, then lo).
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn group_sums_wide(act: &[u8], panel: &[u8], kc: usize, c: &mut Sums) {
    assert!(act.len() >= 2 * kc * TILE && panel.len() >= 2 * kc * TILE && kc > 0);
    let stride = 64 * kc;
    let hi = act.as_ptr();
    let lo = act[kc * TILE..].as_ptr();
    let bh = panel.as_ptr();
    let bl = panel[kc * TILE..].as_ptr();
    // SAFETY: as in `group_sums`: `kc` passes over tiles within `act` and `panel`; the stores
    // write 3 KiB of `c`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "2:",
            "tileloadd tmm4, [{hi} + {stride}*1]",
            "tileloadd tmm5, [{lo} + {stride}*1]",
            "tileloadd tmm6, [{bh} + {s64}*1]",
            "tileloadd tmm7, [{bl} + {s64}*1]",
            "tdpbssd tmm0, tmm4, tmm6",
            "tdpbsud tmm1, tmm4, tmm7",
            "tdpbusd tmm1, tmm5, tmm6",
            "tdpbuud tmm2, tmm5, tmm7",
            "add {hi}, 64",
            "add {lo}, 64",
            "add {bh}, 1024",
            "add {bl}, 1024",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c} + {s64}*1], tmm0",
            "add {c}, 1024",
            "tilestored [{c} + {s64}*1], tmm1",
            "add {c}, 1024",
            "tilestored [{c} + {s64}*1], tmm2",
            hi = inout(reg) hi => _,
            lo = inout(reg) lo => _,
            bh = inout(reg) bh => _,
            bl = inout(reg) bl => _,
            n = inout(reg) kc => _,
            c = inout(reg) c.0.as_mut_ptr() => _,
            stride = in(reg) stride,
            s64 = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// `acc[r] = 65536 hh[i][r] + 256 mid[i][r] + ll[i][r]` for the 16 weight rows of activation
/// row `i` of `c` (tiles 0, 1, 2).
///
/// # Safety
///
/// AVX-512 F is available.
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn combine_row_wide(c: &Sums, i: usize, acc: &mut [i64; 32]) {
    let s = &c.0;
    // SAFETY: row i (< 16) of tiles 0, 1, 2: 16 i32 each, in `c`.
    let (hh, mid, ll) = unsafe {
        (
            _mm512_loadu_si512(s[16 * i..].as_ptr().cast()),
            _mm512_loadu_si512(s[256 + 16 * i..].as_ptr().cast()),
            _mm512_loadu_si512(s[512 + 16 * i..].as_ptr().cast()),
        )
    };
    for q in 0..2 {
        let part = |v: __m512i| {
            _mm512_cvtepi32_epi64(if q == 0 {
                _mm512_castsi512_si256(v)
            } else {
                _mm512_extracti64x4_epi64::<1>(v)
            })
        };
        let v = _mm512_add_epi64(
            _mm512_add_epi64(
                _mm512_slli_epi64::<16>(part(hh)),
                _mm512_slli_epi64::<8>(part(mid)),
            ),
            part(ll),
        );
        // SAFETY: acc[8 q..][..8] exists.
        unsafe { _mm512_storeu_si512(acc[8 * q..].as_mut_ptr().cast(), v) };
    }
}

/// `acc[r] = 256 hi[i][r] + lo[i][r]` for the 32 weight rows of activation row `i` of `c`.
///
/// # Safety
///
/// AVX-512 F is available.
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn combine_row(c: &Sums, i: usize, acc: &mut [i64; 32]) {
    let s = &c.0;
    for half in 0..2 {
        // SAFETY: row i (< 16) of tiles `half` and `2 + half`: 16 i32 each, in `c`.
        let (h, l) = unsafe {
            (
                _mm512_loadu_si512(s[half * 256 + 16 * i..].as_ptr().cast()),
                _mm512_loadu_si512(s[(2 + half) * 256 + 16 * i..].as_ptr().cast()),
            )
        };
        for q in 0..2 {
            let (hq, lq) = if q == 0 {
                (_mm512_castsi512_si256(h), _mm512_castsi512_si256(l))
            } else {
                (
                    _mm512_extracti64x4_epi64::<1>(h),
                    _mm512_extracti64x4_epi64::<1>(l),
                )
            };
            let v = _mm512_add_epi64(
                _mm512_slli_epi64::<8>(_mm512_cvtepi32_epi64(hq)),
                _mm512_cvtepi32_epi64(lq),
            );
            // SAFETY: acc[16 half + 8 q..][..8] exists.
            unsafe { _mm512_storeu_si512(acc[16 * half + 8 * q..].as_mut_ptr().cast(), v) };
        }
    }
}

/// Writes the hi and lo bytes of the first `cols` values of activation rows `t0..t0 + gn` in
/// groups of 16: per group, `kc = ceil(cols / 64)` blocks of 64 bytes per row, hi rows (16 x
/// `64 kc` bytes) then lo rows; rows past `gn` and columns past `cols` are zero.
///
/// # Safety
///
/// AVX-512 F, BW and VL are available; `dst` holds `gn.div_ceil(16)` groups of `2 kc` tiles;
/// `a`'s rows hold at least `cols` values.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
unsafe fn pack_activations(a: &Rows<'_>, t0: usize, gn: usize, cols: usize, dst: &mut [u8]) {
    let kc = cols.div_ceil(64);
    let stride = 64 * kc;
    let group_len = 2 * kc * TILE;
    dst.fill(0);
    for i in 0..gn {
        let row = &a.row(t0 + i)[..cols];
        let (g, r) = (i / 16, i % 16);
        let (his, los) = dst[g * group_len..(g + 1) * group_len].split_at_mut(kc * TILE);
        let hi = &mut his[r * stride..(r + 1) * stride];
        let lo = &mut los[r * stride..(r + 1) * stride];
        let mut k = 0;
        while k < cols {
            let m = (cols - k).min(32);
            let mask = if m == 32 { u32::MAX } else { (1u32 << m) - 1 };
            // SAFETY: the lanes of `mask` read row[k..k + m] (in the row); the stores write
            // hi[k..k + m], lo[k..k + m] (m <= 32, k + m <= cols <= 64 kc).
            unsafe {
                let x = _mm512_maskz_loadu_epi16(mask, row[k..].as_ptr().cast());
                let h = _mm512_cvtepi16_epi8(_mm512_srai_epi16::<8>(x));
                let l = _mm512_cvtepi16_epi8(x);
                _mm256_mask_storeu_epi8(hi[k..].as_mut_ptr().cast(), mask, h);
                _mm256_mask_storeu_epi8(lo[k..].as_mut_ptr().cast(), mask, l);
            }
            k += m;
        }
    }
}

/// Packs int16 weight rows `o0..o0 + 16` (zeros past the matrix) as `2 kc` B tiles: tile `j`
/// the high bytes (signed) of columns `64 j..`, tile `kc + j` the low bytes (unsigned), each
/// laid out as in [`pack_panel`].
///
/// # Safety
///
/// AVX-512 F + BW are available; `panel` holds `2 kc` tiles; `w` is wide.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn pack_panel_wide(w: &Matrix<'_>, o0: usize, kc: usize, panel: &mut [u8]) {
    let panel = &mut panel[..2 * kc * TILE];
    for j in 0..kc {
        let k0 = 64 * j;
        let m = (w.cols - k0).min(64);
        let mut hi = [_mm512_setzero_si512(); 16];
        let mut lo = [_mm512_setzero_si512(); 16];
        for n in 0..16 {
            let o = o0 + n;
            if o >= w.rows {
                continue;
            }
            let row = &w.row(o)[2 * k0..2 * (k0 + m)];
            let mut h = [_mm256_setzero_si256(); 2];
            let mut l = [_mm256_setzero_si256(); 2];
            for q in 0..2 {
                let k = 32 * q;
                if k >= m {
                    break;
                }
                let cnt = (m - k).min(32);
                let mask = if cnt == 32 {
                    u32::MAX
                } else {
                    (1u32 << cnt) - 1
                };
                // SAFETY: the lanes of `mask` read int16 values k..k + cnt of the row's
                // slice (2 (k + cnt) <= 2 m bytes).
                let x = unsafe { _mm512_maskz_loadu_epi16(mask, row[2 * k..].as_ptr().cast()) };
                h[q] = _mm512_cvtepi16_epi8(_mm512_srai_epi16::<8>(x));
                l[q] = _mm512_cvtepi16_epi8(x);
            }
            hi[n] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(h[0]), h[1]);
            lo[n] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l[0]), l[1]);
        }
        for (part, v) in [(0, hi), (1, lo)] {
            let t = transpose16(v);
            let tile = &mut panel[(part * kc + j) * TILE..][..TILE];
            for (k4, tk) in t.iter().enumerate() {
                // SAFETY: row k4 of the tile: 64 bytes.
                unsafe { _mm512_storeu_si512(tile[64 * k4..].as_mut_ptr().cast(), *tk) };
            }
        }
    }
}

/// Packs weight rows `o0..o0 + 32` (zeros past the matrix) as `2 kc` B tiles: half `h`,
/// columns `64 j..`: tile `h kc + j`, whose row `k4` holds for weight row `n` (of the half)
/// the 4 weights `64 j + 4 k4 ..` at bytes `4 n ..` (zeros past the row).
///
/// # Safety
///
/// AVX-512 F + BW are available; `panel` holds `2 kc` tiles.
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn pack_panel(w: &Matrix<'_>, o0: usize, kc: usize, panel: &mut [u8]) {
    let panel = &mut panel[..2 * kc * TILE];
    for h in 0..2 {
        for j in 0..kc {
            let k0 = 64 * j;
            let m = (w.cols - k0).min(64);
            let mask = if m == 64 { u64::MAX } else { (1u64 << m) - 1 };
            let mut v = [_mm512_setzero_si512(); 16];
            for (n, vn) in v.iter_mut().enumerate() {
                let o = o0 + 16 * h + n;
                if o < w.rows {
                    let row = &w.row(o)[k0..k0 + m];
                    // SAFETY: the lanes of `mask` read row[..m] (in the row).
                    *vn = unsafe { _mm512_maskz_loadu_epi8(mask, row.as_ptr().cast()) };
                }
            }
            // Element (n, k4) of the 16 x 16 dwords becomes (k4, n).
            let t = transpose16(v);
            let tile = &mut panel[(h * kc + j) * TILE..][..TILE];
            for (k4, tk) in t.iter().enumerate() {
                // SAFETY: row k4 of the tile: 64 bytes.
                unsafe { _mm512_storeu_si512(tile[64 * k4..].as_mut_ptr().cast(), *tk) };
            }
        }
    }
}
