//! The float engine's reference kernels: f32 only, `libm` for transcendental functions, and a
//! summation order fixed by the code (never by the target).
//!
//! Every dot product, whatever its length, uses [`LANES`] independent partial sums: element `k`
//! goes to lane `k % LANES` (lanes accumulate in increasing `k`), and the lanes are combined by
//! the fixed tree of [`reduce_lanes`]. Rust never contracts `a * b + c` into a fused
//! multiply-add, and no kernel calls `mul_add`, so the results are the same on x86_64, Cortex-M
//! and RISC-V. The lane layout is what lets LLVM vectorize the loops (two SSE or one AVX register
//! per accumulator) without reassociating anything.
//!
//! [`linear`] processes [`ROW_BLOCK`] activation rows per converted weight row (register
//! blocking); each output still comes from one [`dot`]-ordered sum, so blocking never changes a
//! result ([`dot4`] equals four [`dot`] calls bit for bit; a test checks it).
//!
//! # Fused arithmetic (opt-in)
//!
//! With [`Arith::Fused`] the multiply-accumulates of the matrix products and of attention (the
//! scores `q . k` and the weighted values `sum_j p_j v_j`) are fused, `lane = fmaf(x, w, lane)`
//! (one rounding: IEEE 754 `fusedMultiplyAdd`, `libm::fmaf` here, `vfmadd` on x86_64), in the
//! same lane order; everything else is unchanged. It is a second, equally exact specification:
//! its results are the same on every target, but not those of the default
//! [`Arith::Separate`] (today's results, what golden files hold). Its point is speed on hosts,
//! whose fused multiply-add does one operation where separate arithmetic does two.
//!
//! These kernels are the specification. The block kernels below run the matrix products, the
//! SiLU and the softmax exponentials through [`optimized`] with the [`Isa`] their buffers name:
//! on x86_64 blocked AVX-512 / AVX2 versions that give the same bits (separate vector multiplies
//! and adds in the same lane order, no fused multiply-add), elsewhere these kernels.
//!
//! The block kernels report their intermediate values to a [`Tap`] (an [`Observer`] and the
//! block they run in); [`Tap::none`] reports nothing and compiles away.
//!
//! Shapes in comments follow llm.c: `// h: [rows, n]` is row-major with `n` contiguous.

use crate::float::observer::{Observer, Site, Tap};
use crate::float::optimized::{self, Isa};
use crate::float::weights::MatRef;

/// Partial sums per dot product.
pub const LANES: usize = 8;

/// How the multiply-accumulates of the matrix products and of attention round (module
/// documentation, "Fused arithmetic").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Arith {
    /// `lane + x * w`: two roundings (the default; the results of golden files).
    #[default]
    Separate,
    /// `fmaf(x, w, lane)`: one rounding.
    Fused,
}

impl Arith {
    /// Both, the default first.
    pub const ALL: [Arith; 2] = [Arith::Separate, Arith::Fused];

    /// A short lowercase name (`separate`, `fused`).
    pub const fn name(self) -> &'static str {
        match self {
            Arith::Separate => "separate",
            Arith::Fused => "fused",
        }
    }

    /// The arithmetic named `name` ([`Arith::name`]).
    pub fn from_name(name: &str) -> Option<Arith> {
        Arith::ALL.into_iter().find(|a| a.name() == name)
    }

    /// `acc + x * y` with this arithmetic's rounding.
    #[inline(always)]
    pub fn mac(self, acc: f32, x: f32, y: f32) -> f32 {
        mac(acc, x, y, self == Arith::Fused)
    }
}

/// `acc + x * y`, fused when `fused` (a constant in the generic kernels below).
#[inline(always)]
fn mac(acc: f32, x: f32, y: f32, fused: bool) -> f32 {
    if fused {
        libm::fmaf(x, y, acc)
    } else {
        acc + x * y
    }
}

/// Activation rows processed per weight row in [`linear`].
pub const ROW_BLOCK: usize = 4;

/// Combines the lanes: `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))` (the order a pair of
/// 4-wide registers reduces in).
///
/// Kept out of line: inlined, it leads LLVM's SLP vectorizer to pack the lanes in the pairs of
/// this tree and to shuffle scalars in the hot loops instead of using whole registers.
#[inline(never)]
pub fn reduce_lanes(a: [f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `sum_k a[k] * b[k]` over `min(a.len(), b.len())` elements, in the fixed lane order.
///
/// The lanes are held as two 4-wide halves, the shape LLVM's SLP vectorizer reliably turns into
/// whole-register operations (one AVX or two SSE/NEON registers).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_in::<false>(a, b)
}

/// [`dot`] with the multiply-accumulates of [`Arith::Fused`] when `FUSED`.
#[inline]
fn dot_in<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let full = n / LANES * LANES;
    let mut acc = [[0.0f32; 4]; 2];
    let mut k = 0;
    while k < full {
        if let (Some(x), Some(y)) = (a.get(k..k + LANES), b.get(k..k + LANES)) {
            for h in 0..2 {
                for j in 0..4 {
                    acc[h][j] = mac(acc[h][j], x[4 * h + j], y[4 * h + j], FUSED);
                }
            }
        }
        k += LANES;
    }
    let mut lanes = [0.0f32; LANES];
    lanes[..4].copy_from_slice(&acc[0]);
    lanes[4..].copy_from_slice(&acc[1]);
    for (j, (x, y)) in a[full..n].iter().zip(&b[full..n]).enumerate() {
        lanes[j] = mac(lanes[j], *x, *y, FUSED);
    }
    reduce_lanes(lanes)
}

/// Four dot products of one weight row `w` with four activation rows, each in exactly the order
/// of [`dot`]`(a[i], w)`. Every `a[i]` must hold at least `w.len()` values (extra ones are
/// ignored); a shorter row gives the dot over the common prefix, like [`dot`].
#[inline]
pub fn dot4(w: &[f32], a: [&[f32]; 4]) -> [f32; 4] {
    dot4_in::<false>(w, a)
}

/// [`dot4`] with the multiply-accumulates of [`Arith::Fused`] when `FUSED` (each output
/// equals `dot_in::<FUSED>`).
#[inline]
fn dot4_in<const FUSED: bool>(w: &[f32], a: [&[f32]; 4]) -> [f32; 4] {
    let n = a.iter().fold(w.len(), |n, r| n.min(r.len()));
    let full = n / LANES * LANES;
    // Accumulators as 4-wide halves (lanes 0..4 and 4..8) of each row: whole registers.
    let mut acc = [[[0.0f32; 4]; 2]; 4];
    let mut k = 0;
    while k < full {
        if let Some(wc) = w.get(k..k + LANES) {
            for (row, acc_row) in a.iter().zip(acc.iter_mut()) {
                if let Some(x) = row.get(k..k + LANES) {
                    for h in 0..2 {
                        for j in 0..4 {
                            acc_row[h][j] = mac(acc_row[h][j], x[4 * h + j], wc[4 * h + j], FUSED);
                        }
                    }
                }
            }
        }
        k += LANES;
    }
    let mut out = [0.0f32; 4];
    for ((o, row), acc_row) in out.iter_mut().zip(a.iter()).zip(acc.iter()) {
        let mut lanes = [0.0f32; LANES];
        lanes[..4].copy_from_slice(&acc_row[0]);
        lanes[4..].copy_from_slice(&acc_row[1]);
        for (j, (x, y)) in row[full..n].iter().zip(&w[full..n]).enumerate() {
            lanes[j] = mac(lanes[j], *x, *y, FUSED);
        }
        *o = reduce_lanes(lanes);
    }
    out
}

/// `out[r, o] = dot(input[r, ..cols], W[o])` for `r < rows`, `o < W.rows()`: a bias-free
/// `F.linear`.
///
/// `input` rows start every `in_stride` values (`in_stride >= W.cols()`), `out` rows every
/// `out_stride` values (`>= W.rows()`). `wrow` holds one converted weight row (`>= W.cols()`
/// values). Each weight row is converted once and applied to all `rows` activation rows,
/// [`ROW_BLOCK`] at a time. Out-of-range buffers are the caller's bug: the engine sizes them from
/// the validated config (slicing would panic, never read out of bounds).
pub fn linear(
    w: &MatRef<'_>,
    wrow: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    linear_with(
        Arith::Separate,
        w,
        wrow,
        input,
        in_stride,
        rows,
        out,
        out_stride,
    );
}

/// [`linear`] with `arith`'s multiply-accumulates (per output the [`dot`] order, each
/// multiply-accumulate as [`Arith::mac`]).
#[allow(clippy::too_many_arguments)]
pub fn linear_with(
    arith: Arith,
    w: &MatRef<'_>,
    wrow: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    // One arithmetic per call: the loops below see a constant.
    match arith {
        Arith::Separate => {
            linear_in::<false>(w, wrow, input, in_stride, rows, out, out_stride);
        }
        Arith::Fused => linear_in::<true>(w, wrow, input, in_stride, rows, out, out_stride),
    }
}

fn linear_in<const FUSED: bool>(
    w: &MatRef<'_>,
    wrow: &mut [f32],
    input: &[f32],
    in_stride: usize,
    rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let cols = w.cols();
    let wrow = &mut wrow[..cols];
    let row = |r: usize| &input[r * in_stride..r * in_stride + cols];
    for o in 0..w.rows() {
        w.row_into(o, wrow);
        let mut r = 0;
        while r + ROW_BLOCK <= rows {
            let s = dot4_in::<FUSED>(wrow, [row(r), row(r + 1), row(r + 2), row(r + 3)]);
            for (i, v) in s.into_iter().enumerate() {
                out[(r + i) * out_stride + o] = v;
            }
            r += ROW_BLOCK;
        }
        while r < rows {
            out[r * out_stride + o] = dot_in::<FUSED>(row(r), wrow);
            r += 1;
        }
    }
}

/// RMSNorm without weight, in place: `v / sqrt(mean(v^2) + eps)`. The sum of squares uses the
/// [`dot`] order; the scale is computed once (`1 / sqrtf(..)`) and multiplied in.
pub fn rms_norm(v: &mut [f32], eps: f32) {
    if v.is_empty() {
        return;
    }
    let mean = dot(v, v) / v.len() as f32;
    let scale = 1.0 / libm::sqrtf(mean + eps);
    for x in v.iter_mut() {
        *x *= scale;
    }
}

/// `h = rms_norm(h + delta)` elementwise over one row; the pre-norm `h + delta` is reported as
/// the tap's [`Site::Residual`].
pub fn add_rms_norm<O: Observer>(h: &mut [f32], delta: &[f32], eps: f32, tap: &mut Tap<O>) {
    for (a, b) in h.iter_mut().zip(delta) {
        *a += *b;
    }
    let (layer, sub) = (tap.layer, tap.sub);
    tap.see(Site::Residual { layer, sub }, h);
    rms_norm(h, eps);
}

/// SiLU: `x / (1 + exp(-x))` with `libm::expf`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// Scratch of [`swiglu_residual_rms`] for a block of `rows` rows: `gu` holds `rows * 2 inter`
/// values, `out` `rows * n`, `wrow` `max(n, inter)` (or a whole weight tile,
/// [`optimized::tile_len`]).
#[derive(Debug)]
pub struct SwigluBuffers<'s> {
    /// One converted weight row, or the weight tile of the optimized products.
    pub wrow: &'s mut [f32],
    /// `[rb, 2 inter]`: gate_up outputs, then `silu(gate) * up` in the first half.
    pub gu: &'s mut [f32],
    /// `[rows, n]`: the SwiGLU outputs of the block.
    pub out: &'s mut [f32],
    /// Activation rows per block (`>= 1`; 0 counts as 1).
    pub rows: usize,
    /// The kernel implementation (every one gives the same results).
    pub isa: Isa,
    /// The multiply-accumulates of the products.
    pub arith: Arith,
}

/// Post-norm SwiGLU sub-block over every row of `h: [rows, n]`, in place:
/// `h[r] = rms_norm(h[r] + down(silu(gate(h[r])) * up(h[r])))`.
///
/// `gate_up: [2 inter, n]` (gate rows first, then up rows), `down: [n, inter]`. Rows are
/// independent, so they are processed in blocks of `bufs.rows` rows; the block size never
/// changes a result. Reports [`Site::Gate`], [`Site::Up`], [`Site::Product`] and
/// [`Site::Residual`] of every row to `tap`. The products and the SiLU run on `bufs.isa`.
pub fn swiglu_residual_rms<O: Observer>(
    gate_up: &MatRef<'_>,
    down: &MatRef<'_>,
    h: &mut [f32],
    rows: usize,
    eps: f32,
    bufs: &mut SwigluBuffers<'_>,
    tap: &mut Tap<O>,
) {
    let n = down.rows();
    let inter = down.cols();
    let rb = bufs.rows.max(1);
    let (isa, arith) = (bufs.isa, bufs.arith);
    let (layer, sub) = (tap.layer, tap.sub);
    let mut r0 = 0;
    while r0 < rows {
        let nb = rb.min(rows - r0);
        let block = &mut h[r0 * n..(r0 + nb) * n];
        // gu: [nb, 2 inter] = block @ gate_up^T
        optimized::linear_with(
            isa,
            arith,
            gate_up,
            bufs.wrow,
            block,
            n,
            nb,
            bufs.gu,
            2 * inter,
        );
        for r in 0..nb {
            let row = &mut bufs.gu[r * 2 * inter..(r + 1) * 2 * inter];
            let (gate, up) = row.split_at_mut(inter);
            tap.see(Site::Gate { layer, sub }, gate);
            tap.see(Site::Up { layer, sub }, up);
            optimized::silu_mul(isa, gate, up);
            tap.see(Site::Product { layer, sub }, gate);
        }
        // out: [nb, n] = (silu(gate) * up) @ down^T
        optimized::linear_with(
            isa,
            arith,
            down,
            bufs.wrow,
            bufs.gu,
            2 * inter,
            nb,
            bufs.out,
            n,
        );
        for r in 0..nb {
            add_rms_norm(
                &mut block[r * n..(r + 1) * n],
                &bufs.out[r * n..(r + 1) * n],
                eps,
                tap,
            );
        }
        r0 += nb;
    }
}

/// RoPE tables in the reference's f32 arithmetic: `inv_freq[i] = 1 / theta^(2i / hd)`,
/// `angle[p, i] = p * inv_freq[i]` (also at `i + hd/2`: the table is `cat(freqs, freqs)`),
/// `cos = cosf(angle)`, `sin = sinf(angle)`. `cos`, `sin`: `[positions, hd]`.
pub fn rope_tables(hd: usize, theta: f32, cos: &mut [f32], sin: &mut [f32]) {
    let half = hd / 2;
    if half == 0 {
        return;
    }
    for (p, (c, s)) in cos
        .chunks_exact_mut(hd)
        .zip(sin.chunks_exact_mut(hd))
        .enumerate()
    {
        for i in 0..half {
            let exponent = (2 * i) as f32 / hd as f32;
            let inv_freq = 1.0 / libm::powf(theta, exponent);
            let angle = p as f32 * inv_freq;
            let (cv, sv) = (libm::cosf(angle), libm::sinf(angle));
            c[i] = cv;
            c[i + half] = cv;
            s[i] = sv;
            s[i + half] = sv;
        }
    }
}

/// Rotate-half RoPE on one head vector `x: [hd]` in place:
/// `x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat(-x[hd/2..], x[..hd/2])`.
pub fn apply_rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos[i] + (-b) * sin[i];
        x[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

/// Non-causal multi-head attention over `qkv: [l, 3 D]` (per row: `heads` query vectors, then
/// `heads` keys, then `heads` values, `hd` values each), written in place of the queries: after
/// the call `qkv[r, ..D]` holds the attention output of row `r` (heads concatenated).
///
/// Per row `i` and head `h`: `s_j = dot(q_i, k_j) * (1 / sqrtf(hd))`, `p_j = expf(s_j - max s)`,
/// `out = (sum_j p_j v_j) / (sum_j p_j)`, sums over `j` in increasing order. `scores` holds `l`
/// values. RoPE, if any, is applied to q and k before the call. The scores `s_j` of every row
/// and head are reported as [`Site::Scores`], row by row, each row's heads in order.
///
/// With an optimized `isa` and `scores` holding
/// [`optimized::attention_len`]`(l, heads, hd)` values, the scores of all heads are computed
/// first as one blocked product per head, then the softmax rows, then the weighted values as
/// blocked products: the same operations on each value, so the same results.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn attention<O: Observer>(
    isa: Isa,
    arith: Arith,
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    scores: &mut [f32],
    tap: &mut Tap<O>,
) {
    let layer = tap.layer;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    if isa != Isa::Portable && scores.len() >= optimized::attention_len(l, heads, hd) {
        let (all, rest) = scores.split_at_mut(heads * l * l);
        let (sums, tile) = rest.split_at_mut(heads * l);
        if optimized::attention_scores(isa, arith, qkv, l, heads, hd, all, tile) {
            for i in 0..l {
                for h in 0..heads {
                    let row = &mut all[(h * l + i) * l..(h * l + i + 1) * l];
                    let mut max = f32::NEG_INFINITY;
                    for s in row.iter_mut() {
                        *s *= scale;
                        if *s > max {
                            max = *s;
                        }
                    }
                    tap.see(Site::Scores { layer }, row);
                    optimized::exp_sub(isa, row, max);
                    let mut sum = 0.0f32;
                    for s in row.iter() {
                        sum += *s;
                    }
                    sums[h * l + i] = sum;
                }
            }
            // The shapes fit (the scores ran), so this runs too and nothing falls through.
            if optimized::attention_values(isa, arith, qkv, l, heads, hd, all, sums) {
                return;
            }
        }
    }
    match arith {
        Arith::Separate => attention_rows::<false, O>(isa, qkv, l, heads, hd, scores, tap),
        Arith::Fused => attention_rows::<true, O>(isa, qkv, l, heads, hd, scores, tap),
    }
}

/// [`attention`] row by row (the specification's loops), `FUSED` the arithmetic.
fn attention_rows<const FUSED: bool, O: Observer>(
    isa: Isa,
    qkv: &mut [f32],
    l: usize,
    heads: usize,
    hd: usize,
    scores: &mut [f32],
    tap: &mut Tap<O>,
) {
    let layer = tap.layer;
    let d = heads * hd;
    let stride = 3 * d;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    let scores = &mut scores[..l];
    for i in 0..l {
        for h in 0..heads {
            let q_off = i * stride + h * hd;
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                let k_off = j * stride + d + h * hd;
                let v = dot_in::<FUSED>(&qkv[q_off..q_off + hd], &qkv[k_off..k_off + hd]) * scale;
                *s = v;
                if v > max {
                    max = v;
                }
            }
            tap.see(Site::Scores { layer }, scores);
            optimized::exp_sub(isa, scores, max);
            let mut sum = 0.0f32;
            for s in scores.iter() {
                sum += *s;
            }
            // q_i of this head is no longer needed: accumulate the output in its place.
            qkv[q_off..q_off + hd].fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let v_off = j * stride + 2 * d + h * hd;
                for c in 0..hd {
                    let v = qkv[v_off + c];
                    qkv[q_off + c] = mac(qkv[q_off + c], p, v, FUSED);
                }
            }
            for o in &mut qkv[q_off..q_off + hd] {
                *o /= sum;
            }
        }
    }
}

/// `dst: [cols, rows] = src: [rows, cols]^T`.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// Index of the largest value, ties to the lowest index (NaN never wins); 0 for an empty slice.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() && !x.is_nan() {
            best = i;
        }
    }
    best
}

/// Work buffers of one network application, carved by the engine (or a test) from one scratch.
#[derive(Debug)]
pub struct BlockBuffers<'s> {
    /// mlp_t: `[D, L]` (the transposed h); attention: `[L, 3 D]` (qkv).
    pub work: &'s mut [f32],
    /// `[L, head_dim]` RoPE cosines (empty: no RoPE).
    pub cos: &'s mut [f32],
    /// `[L, head_dim]` RoPE sines (empty: no RoPE).
    pub sin: &'s mut [f32],
    /// One converted weight row (`>=` the widest weight row).
    pub wrow: &'s mut [f32],
    /// `[rows, 2 inter]` for the widest SwiGLU.
    pub gu: &'s mut [f32],
    /// `[rows, n]` for the widest block output row.
    pub out: &'s mut [f32],
    /// `[L]` attention scores of one query row and head.
    pub scores: &'s mut [f32],
    /// Activation rows per block in the row-blocked products (`>= 1`).
    pub rows: usize,
    /// The kernel implementation (every one gives the same results).
    pub isa: Isa,
    /// The multiply-accumulates of the products and of attention.
    pub arith: Arith,
}

impl BlockBuffers<'_> {
    fn swiglu(&mut self) -> SwigluBuffers<'_> {
        SwigluBuffers {
            wrow: self.wrow,
            gu: self.gu,
            out: self.out,
            rows: self.rows,
            isa: self.isa,
            arith: self.arith,
        }
    }
}

/// Channel SwiGLU sub-block on `h: [l, D]`: `h = rms(h + SwiGLU_D(h))`, with `D = down.rows()`
/// (reports as [`swiglu_residual_rms`]).
pub fn channel_mlp<O: Observer>(
    gate_up: &MatRef<'_>,
    down: &MatRef<'_>,
    h: &mut [f32],
    l: usize,
    eps: f32,
    b: &mut BlockBuffers<'_>,
    tap: &mut Tap<O>,
) {
    swiglu_residual_rms(gate_up, down, h, l, eps, &mut b.swiglu(), tap);
}

/// mlp_t token mixing on `h: [l, D]`: on the transposed `h^T: [D, l]`,
/// `h^T = rms_over_l(h^T + SwiGLU_l(h^T))`, then transposed back. `gate_up: [2 inter_t, l]`,
/// `down: [l, inter_t]`; `D = h.len() / l`. Reports as [`swiglu_residual_rms`] (rows of the
/// transposed `h`: the residuals have `l` values).
pub fn mlp_t_mixer<O: Observer>(
    gate_up: &MatRef<'_>,
    down: &MatRef<'_>,
    h: &mut [f32],
    l: usize,
    eps: f32,
    b: &mut BlockBuffers<'_>,
    tap: &mut Tap<O>,
) {
    let d = h.len() / l.max(1);
    let ht = &mut b.work[..l * d];
    optimized::transpose(b.isa, h, l, d, ht);
    let mut bufs = SwigluBuffers {
        wrow: b.wrow,
        gu: b.gu,
        out: b.out,
        rows: b.rows,
        isa: b.isa,
        arith: b.arith,
    };
    swiglu_residual_rms(gate_up, down, ht, d, eps, &mut bufs, tap);
    optimized::transpose(b.isa, ht, d, l, h);
}

/// Attention mixing on `h: [l, D]`: `h = rms(h + o_proj(attn(rope(qkv_proj(h)))))`, with RoPE
/// when `b.cos` is non-empty. `qkv: [3 D, D]` (q heads, k heads, v heads), `o: [D, D]`;
/// `l = h.len() / D`. Reports [`Site::Query`], [`Site::Key`] (as projected, and rotated with
/// RoPE), [`Site::Value`], [`Site::Scores`] and [`Site::Residual`].
pub fn attention_mixer<O: Observer>(
    qkv_w: &MatRef<'_>,
    o_w: &MatRef<'_>,
    h: &mut [f32],
    heads: usize,
    eps: f32,
    b: &mut BlockBuffers<'_>,
    tap: &mut Tap<O>,
) {
    let d = o_w.rows();
    let l = h.len() / d.max(1);
    let hd = d / heads.max(1);
    let layer = tap.layer;
    let qkv = &mut b.work[..3 * l * d];
    optimized::linear_with(b.isa, b.arith, qkv_w, b.wrow, h, d, l, qkv, 3 * d);
    // (No slicing that could panic: with `Tap::none` the loop has no effect and is removed.)
    for row in qkv.chunks_exact(3 * d) {
        let mut parts = row.chunks_exact(d.max(1));
        if let (Some(q), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
            tap.see(
                Site::Query {
                    layer,
                    rotated: false,
                },
                q,
            );
            tap.see(
                Site::Key {
                    layer,
                    rotated: false,
                },
                k,
            );
            tap.see(Site::Value { layer }, v);
        }
    }
    if !b.cos.is_empty() {
        for (r, row) in qkv.chunks_exact_mut(3 * d).enumerate() {
            let cos = &b.cos[r * hd..(r + 1) * hd];
            let sin = &b.sin[r * hd..(r + 1) * hd];
            // Queries and keys: the first 2 D values of the row.
            for head in row[..2 * d].chunks_exact_mut(hd) {
                apply_rope(head, cos, sin);
            }
            tap.see(
                Site::Query {
                    layer,
                    rotated: true,
                },
                &row[..d],
            );
            tap.see(
                Site::Key {
                    layer,
                    rotated: true,
                },
                &row[d..2 * d],
            );
        }
    }
    attention(b.isa, b.arith, qkv, l, heads, hd, b.scores, tap);
    let rb = b.rows.max(1);
    let mut r0 = 0;
    while r0 < l {
        let nb = rb.min(l - r0);
        let out = &mut b.out[..nb * d];
        optimized::linear_with(
            b.isa,
            b.arith,
            o_w,
            b.wrow,
            &qkv[r0 * 3 * d..],
            3 * d,
            nb,
            out,
            d,
        );
        for r in 0..nb {
            let row = &mut h[(r0 + r) * d..(r0 + r + 1) * d];
            add_rms_norm(row, &out[r * d..(r + 1) * d], eps, tap);
        }
        r0 += nb;
    }
}
