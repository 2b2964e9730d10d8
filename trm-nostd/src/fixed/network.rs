//! The fixed engine's network: the `l_layers` blocks applied to one state (token mixer, then
//! the channel SwiGLU, each with its residual and RMSNorm), integer only.

use super::kernels::{
    self, I16Table, Requant, SILU_KNOT_BITS_MIN, SILU_TABLE_LEN, rope, sat16, sat32, softmax_q30,
};
use super::layout::Bufs;
// The hot kernels through the optimized implementations (bit-identical to the reference ones).
use super::optimized::{self, Epilogue, Isa, Rows, dot_a16_a16};
use super::tables;
use super::weights::{LayerQ, MatQ, WeightsQ};
use crate::config::Config;

/// Every output of `w` and the rows `a` through `epi`, with the implementation `isa`
/// ([`optimized::matmul`]; `panel` is its blocking scratch). The engine's buffers always fit;
/// a shape that did not would leave the outputs as they were (checked in debug builds).
#[inline]
fn product(isa: Isa, w: &MatQ<'_>, a: Option<Rows<'_>>, mut epi: Epilogue<'_>, panel: &mut [i16]) {
    let done = a.is_some_and(|a| optimized::matmul(isa, &w.matrix(), &a, &mut epi, panel));
    debug_assert!(done, "matrix product shapes");
}

/// The `l_layers` blocks on `h: [L, D]` (the input requant is done).
pub(super) fn net(c: &Config, w: &WeightsQ<'_>, b: &mut Bufs<'_>, h: &mut [i16]) {
    let l = c.seq_total();
    for lw in w.layers.iter().take(c.l_layers as usize) {
        if c.mlp_t {
            let d = c.d();
            let ht = &mut b.work[..l * d];
            transpose(h, l, d, ht);
            swiglu_residual_rms(
                &lw.mix_a,
                &lw.mix_b,
                ht,
                d,
                w.exact_products,
                b.gu,
                b.res,
                b.panel,
            );
            transpose(ht, d, l, h);
        } else {
            attention_mixer(c, w, lw, h, b);
        }
        swiglu_residual_rms(
            &lw.gate_up,
            &lw.down,
            h,
            l,
            w.exact_products,
            b.gu,
            b.res,
            b.panel,
        );
    }
}

/// `dst: [cols, rows] = src: [rows, cols]^T`.
fn transpose(src: &[i16], rows: usize, cols: usize, dst: &mut [i16]) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// `h[r] = rms(h[r] + down(silu(gate(h[r])) * up(h[r])))` over `rows` rows of `n = down.rows`.
///
/// The product `silu(gate) * up` is requantized to int16 before `down`, or, with
/// `exact_products`, kept exact: `down` then sums `w * silu * up` and requantizes the total.
///
/// Rows go in blocks of as many as `gu` (`[block, 2 inter]`) and `res` (`[block, n]`) hold;
/// each matrix product covers a whole block ([`optimized::matmul`]: each weight row, or panel
/// of weight rows, is applied to every row of a block before the next), so the weights stream
/// once per block. Every output is the same expression as row by row.
#[allow(clippy::too_many_arguments)]
fn swiglu_residual_rms(
    gate_up: &MatQ<'_>,
    down: &MatQ<'_>,
    h: &mut [i16],
    rows: usize,
    exact_products: bool,
    gu: &mut [i16],
    res: &mut [i32],
    panel: &mut [i16],
) {
    let isa = optimized::selected();
    let n = down.rows;
    let inter = down.cols;
    let base = tables::channel_words(gate_up.rows);
    let prod_rq = gate_up.table.requant(base);
    let knots = tables::gate_up_silu_knots(gate_up.rows, gate_up.table.len());
    let silu_t: I16Table<'_> = gate_up
        .table
        .i16s(base + 2, knots.unwrap_or(SILU_TABLE_LEN));
    let silu_step = 16 - kernels::silu_knot_bits(silu_t.len()).unwrap_or(SILU_KNOT_BITS_MIN);
    let dbase = tables::channel_words(n);
    let eps = down.table.u64_at(dbase);
    let gw = 2 * inter;
    let block = (gu.len() / gw.max(1)).min(res.len() / n.max(1)).max(1);
    let len = (rows * n).min(h.len());
    let h = &mut h[..len];
    for hb in h.chunks_mut(block * n) {
        let r = hb.len() / n;
        let gu = &mut gu[..r * gw];
        let res = &mut res[..r * n];
        // gu: [r, 2 inter] = gate_up(rows): gate at the gate scale, up at the up scale.
        let out = Epilogue::Sat16 {
            out: gu,
            stride: gw,
        };
        product(isa, gate_up, Rows::new(hb, r, n, n), out, panel);
        // One loop per kind of product, so the int16 one stays as lean as it was.
        if exact_products {
            // [gate | up] <- [lo | hi] of the exact product silu(gate) * up.
            silu_pass(isa, silu_step, gu, gw, inter, silu_t, None);
            for g in gu.chunks_exact_mut(gw) {
                let (gate, up) = g.split_at_mut(inter);
                for (s, u) in gate.iter_mut().zip(up.iter_mut()) {
                    (*s, *u) = kernels::split_product(*s, *u);
                }
            }
            // res: [r, n] = rows + down(lo, hi) at the rows' scale.
            let a = Rows::new(gu, r, inter, gw).and_then(|a| a.with_second(inter));
            let out = Epilogue::Residual {
                h: hb,
                res,
                stride: n,
                product: Some(prod_rq),
            };
            product(isa, down, a, out, panel);
        } else {
            // gate <- the int16 product.
            silu_pass(isa, silu_step, gu, gw, inter, silu_t, Some(prod_rq));
            // res: [r, n] = rows + down(prod) at the rows' scale, then the norm.
            let out = Epilogue::Residual {
                h: hb,
                res,
                stride: n,
                product: None,
            };
            product(isa, down, Rows::new(gu, r, inter, gw), out, panel);
        }
        for (rr, row) in res.chunks_exact(n).zip(hb.chunks_exact_mut(n)) {
            optimized::rms_norm(isa, rr, eps, row);
        }
    }
}

/// Over rows `[gate | up]` of `gu` (`gw = 2 inter` values each): `gate <- silu(gate)`, or with
/// `prod` the int16 product `gate <- prod(silu(gate) * up)`: with `isa`'s vector kernel
/// ([`optimized::swiglu_silu`]) where there is one, else the reference, whose knot spacing
/// `2^step` becomes a constant of the loop (a variable shift per value cost 2% of a step on
/// Cortex-M4F).
fn silu_pass(
    isa: Isa,
    step: u32,
    gu: &mut [i16],
    gw: usize,
    inter: usize,
    table: I16Table<'_>,
    prod: Option<Requant>,
) {
    fn pass<const STEP: u32>(
        gu: &mut [i16],
        gw: usize,
        inter: usize,
        table: I16Table<'_>,
        prod: Option<Requant>,
    ) {
        for g in gu.chunks_exact_mut(gw) {
            let (gate, up) = g.split_at_mut(inter);
            match prod {
                Some(rq) => {
                    for (g, u) in gate.iter_mut().zip(up.iter()) {
                        let s = kernels::silu_spaced(table, STEP, *g);
                        *g = sat16(rq.apply(s as i64 * *u as i64));
                    }
                }
                None => {
                    for g in gate.iter_mut() {
                        *g = kernels::silu_spaced(table, STEP, *g);
                    }
                }
            }
        }
    }
    let mut rows = gu.chunks_exact_mut(gw);
    if let Some(first) = rows.next() {
        let (gate, up) = first.split_at_mut(inter);
        if optimized::swiglu_silu(isa, table, step, gate, up, prod) {
            for g in rows {
                let (gate, up) = g.split_at_mut(inter);
                optimized::swiglu_silu(isa, table, step, gate, up, prod);
            }
            return;
        }
    }
    match step {
        4 => pass::<4>(gu, gw, inter, table, prod),
        5 => pass::<5>(gu, gw, inter, table, prod),
        6 => pass::<6>(gu, gw, inter, table, prod),
        7 => pass::<7>(gu, gw, inter, table, prod),
        _ => pass::<8>(gu, gw, inter, table, prod),
    }
}

/// `h = rms(h + o_proj(attn(rope(qkv(h)))))` on `h: [L, D]`.
fn attention_mixer(c: &Config, w: &WeightsQ<'_>, lw: &LayerQ<'_>, h: &mut [i16], b: &mut Bufs<'_>) {
    let (l, d) = (c.seq_total(), c.d());
    let heads = c.num_heads as usize;
    let hd = c.head_dim();
    let half = hd / 2;
    let qkv_m = &lw.mix_a;
    let isa = optimized::selected();
    let qkv = &mut b.work[..3 * l * d];
    // qkv: [L, 3 D], every sequence row in one pass over the weights.
    let out = Epilogue::Sat16 {
        out: qkv,
        stride: 3 * d,
    };
    product(isa, qkv_m, Rows::new(h, l, d, d), out, b.panel);
    let rope_half = w.global.uword(9) as usize;
    if rope_half > 0 {
        let cos_w = tables::GLOBAL_WORDS;
        let sin_w = cos_w + tables::i16_words(rope_half);
        let cos_all = w.global.i16s(cos_w, rope_half);
        let sin_all = w.global.i16s(sin_w, rope_half);
        for (r, row) in qkv.chunks_exact_mut(3 * d).enumerate() {
            let span = r * half * 2..(r + 1) * half * 2;
            let cos = I16Table(cos_all.0.get(span.clone()).unwrap_or(&[]));
            let sin = I16Table(sin_all.0.get(span).unwrap_or(&[]));
            for head in row[..2 * d].chunks_exact_mut(hd) {
                rope(head, cos, sin);
            }
        }
    }
    let score_rq = qkv_m.table.requant(tables::channel_words(qkv_m.rows));
    let stride = 3 * d;
    if !blocked_heads(isa, qkv, l, d, heads, score_rq, b.gu, b.scores, b.panel) {
        per_row_heads(isa, qkv, l, d, heads, score_rq, b.scores, b.head);
    }
    let o_m = &lw.mix_b;
    let eps = o_m.table.u64_at(tables::channel_words(d));
    let block = (b.res.len() / d).max(1);
    for (hb, ab) in h.chunks_mut(block * d).zip(qkv.chunks(block * stride)) {
        let rows = hb.len() / d;
        let res = &mut b.res[..hb.len()];
        let out = Epilogue::Residual {
            h: hb,
            res,
            stride: d,
            product: None,
        };
        product(isa, o_m, Rows::new(ab, rows, d, stride), out, b.panel);
        let res = &b.res[..hb.len()];
        for (r, row) in res.chunks_exact(d).zip(hb.chunks_exact_mut(d)) {
            optimized::rms_norm(isa, r, eps, row);
        }
    }
}

/// The heads of attention one query row at a time (the specification's order): scores `q .
/// k` per key, their requant, the integer softmax and the value rows' weighted sum, each
/// head's output written over its query (which no later row reads).
#[allow(clippy::too_many_arguments)]
fn per_row_heads(
    isa: Isa,
    qkv: &mut [i16],
    l: usize,
    d: usize,
    heads: usize,
    score_rq: Requant,
    scores: &mut [i32],
    head: &mut [i16],
) {
    let hd = d / heads;
    let stride = 3 * d;
    let scores = &mut scores[..l];
    let head_out = &mut head[..hd];
    for i in 0..l {
        for hh in 0..heads {
            let q_off = i * stride + hh * hd;
            for (j, s) in scores.iter_mut().enumerate() {
                let k_off = j * stride + d + hh * hd;
                let acc = dot_a16_a16(&qkv[q_off..q_off + hd], &qkv[k_off..k_off + hd]);
                *s = sat32(score_rq.apply(acc));
            }
            let sum = softmax_q30(scores);
            let v_base = 2 * d + hh * hd;
            optimized::attention::attention_row(isa, scores, sum, &qkv[v_base..], stride, head_out);
            qkv[q_off..q_off + hd].copy_from_slice(head_out);
        }
    }
}

/// The heads of attention as matrix products, on x86_64 when the SwiGLU buffer `gu` is free
/// and large enough (the host's fast scratch; `false`, changing nothing, otherwise): per head,
/// the scores of every query and key at once (`Q_h K_h^T` through [`optimized::matmul`] with
/// the keys as an int16 matrix, exact sums), their requant and softmax per row as
/// [`per_row_heads`] does, then the numerators `sum_j p_j v_j[c]` as one more product: with
/// `p = 2^16 ph + pl`, `ph = p >> 16 <= 2^14` and `pl - 2^15` both int16, `sum_j p_j v_j =
/// 2^16 (ph . v) + ((pl - 2^15) . v) + 2^15 sum_j v_j`, exact in `i64` (`|ph . v| <= l 2^29`).
/// Every result equals [`per_row_heads`]'s: integer sums in any order, then the same requant,
/// softmax and division (test `fixed_kernels_simd::row_blocks_change_only_the_speed`, which
/// runs both).
#[allow(clippy::too_many_arguments)]
fn blocked_heads(
    isa: Isa,
    qkv: &mut [i16],
    l: usize,
    d: usize,
    heads: usize,
    score_rq: Requant,
    gu: &mut [i16],
    scores: &mut [i32],
    panel: &mut [i16],
) -> bool {
    if !cfg!(target_arch = "x86_64") || panel.is_empty() || scores.len() < l {
        return false;
    }
    let hd = d / heads;
    let stride = 3 * d;
    // gu: the two planes of p (2 l l), the keys (l hd), the values transposed (hd l), then
    // in i64: the scores' sums (l l), the numerators' two parts (2 l hd), the rows' sums of p
    // (l) and the values' column sums (hd).
    if gu.len() < 2 * l * l + 2 * l * hd {
        return false;
    }
    let (planes, rest) = gu.split_at_mut(2 * l * l);
    let (keys, rest) = rest.split_at_mut(l * hd);
    let (vt, rest) = rest.split_at_mut(hd * l);
    let (_, wide, _) = bytemuck::pod_align_to_mut::<i16, i64>(rest);
    if wide.len() < l * l + 2 * l * hd + l + hd {
        return false;
    }
    let (sums, wide) = wide.split_at_mut(l * l);
    let (num_hi, wide) = wide.split_at_mut(l * hd);
    let (num_lo, wide) = wide.split_at_mut(l * hd);
    let (p_sums, wide) = wide.split_at_mut(l);
    let col_sums = &mut wide[..hd];
    let scores = &mut scores[..l];
    // Every head has the same shapes, so a `false` below can only come at the first head,
    // before any output is written over its queries: the per-row path then starts afresh.
    for hh in 0..heads {
        // The head's keys (row-major) and values (transposed) as int16 matrices: their bytes
        // are little-endian int16 pairs, as the matrices want, on x86_64.
        for j in 0..l {
            let at = j * stride + hh * hd;
            keys[j * hd..(j + 1) * hd].copy_from_slice(&qkv[at + d..at + d + hd]);
            for (c, &x) in qkv[at + 2 * d..at + 2 * d + hd].iter().enumerate() {
                vt[c * l + j] = x;
            }
        }
        let no_table = tables::Words(&[]);
        let kmat = optimized::Matrix::new(bytemuck::cast_slice(keys), l, hd, true, no_table);
        let vmat = optimized::Matrix::new(bytemuck::cast_slice(vt), hd, l, true, no_table);
        let (Some(kmat), Some(vmat)) = (kmat, vmat) else {
            return false;
        };
        let mut raw = Epilogue::Raw {
            out: sums,
            second: &mut [],
        };
        let queries = Rows::new(&qkv[hh * hd..], l, hd, stride);
        if !queries.is_some_and(|q| optimized::matmul(isa, &kmat, &q, &mut raw, panel)) {
            return false;
        }
        // Each query row's softmax, split into the planes ph | pl - 2^15.
        let (ph, pl) = planes.split_at_mut(l * l);
        for (i, p_sum) in p_sums.iter_mut().enumerate() {
            let row = i * l..(i + 1) * l;
            *p_sum = optimized::attention::softmax_planes(
                isa,
                &sums[row.clone()],
                score_rq,
                scores,
                &mut ph[row.clone()],
                &mut pl[row],
            );
        }
        let mut raw = Epilogue::Raw {
            out: num_hi,
            second: num_lo,
        };
        let probs = Rows::new(planes, l, l, l).and_then(|r| r.with_second(l * l));
        if !probs.is_some_and(|p| optimized::matmul(isa, &vmat, &p, &mut raw, panel)) {
            return false;
        }
        for (c, cs) in col_sums.iter_mut().enumerate() {
            *cs = vt[c * l..(c + 1) * l].iter().map(|&x| x as i64).sum();
        }
        for i in 0..l {
            let div = optimized::attention::DivRound::new(p_sums[i]);
            let out = &mut qkv[i * stride + hh * hd..][..hd];
            for (c, o) in out.iter_mut().enumerate() {
                let num = (num_hi[i * hd + c] << 16) + num_lo[i * hd + c] + (col_sums[c] << 15);
                *o = sat16(div.apply(num));
            }
        }
    }
    true
}
