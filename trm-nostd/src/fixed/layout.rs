//! The fixed engine's scratch: the sizes of its buffers for a config ([`Layout`]) and their
//! carving from the caller's i16 and i32 scratch ([`Bufs`]).

use super::optimized::matmul;
use crate::config::Config;
use crate::engine::{ScratchLen, carve};

/// Rows per weight pass with [`FixedEngine::scratch_len_fast`](crate::Engine::scratch_len_fast):
/// every weight row is read once per block of this many activation rows (from cache) instead of
/// once per row. 128 holds a whole sequence of the paper's Sudoku models (97 rows) in one
/// block, so the blocked matrix products widen each weight panel once per product.
pub const FAST_ROWS: usize = 128;

/// The buffers of one network application.
#[derive(Debug)]
pub(super) struct Bufs<'s> {
    /// mlp_t: `[D, L]`; attention: `[L, 3 D]`.
    pub(super) work: &'s mut [i16],
    /// The SwiGLU values of a block of rows: `[rows, 2 inter]`.
    pub(super) gu: &'s mut [i16],
    /// One head vector `[hd]`.
    pub(super) head: &'s mut [i16],
    /// The residuals of a block of rows `[rows, max(D, L)]`.
    pub(super) res: &'s mut [i32],
    /// One row of attention scores `[L]`.
    pub(super) scores: &'s mut [i32],
    /// The blocked matrix products' scratch ([`optimized::matmul::scratch_len`] of the longest
    /// row; empty in the smallest layout, where the products run one output at a time).
    pub(super) panel: &'s mut [i16],
}

/// The carried states x, y, z (`[L, D]` int16 each).
pub(super) type States<'s> = [&'s mut [i16]; 3];

/// Sizes of the scratch carving, shared by the scratch sizes and the carving itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    ld: usize,
    work: usize,
    /// SwiGLU values of one row (`2 inter`).
    gu: usize,
    head: usize,
    /// Residual values of one row (`max(D, L)`).
    res: usize,
    scores: usize,
    /// Rows per weight pass (the SwiGLU and residual buffers hold this many rows).
    rows: usize,
    /// Most rows a pass can use (`max(D, L)`, the longest row loop).
    rows_max: usize,
    /// The blocked products' scratch: 0, or [`matmul::scratch_len`] of the longest row for
    /// `rows` activation rows.
    panel: usize,
    /// The longest row any matrix reads: D, L or an intermediate width.
    cols_max: usize,
}

impl Layout {
    /// The smallest layout of a (validated) config: one row per pass.
    pub(super) fn new(c: &Config) -> Self {
        let (l, d) = (c.seq_total(), c.d());
        let attention = !c.mlp_t;
        let inter = if attention {
            c.mlp_inter()
        } else {
            c.mlp_inter().max(c.mlp_t_inter())
        };
        Layout {
            ld: l * d,
            work: if attention { 3 * l * d } else { l * d },
            gu: 2 * inter,
            head: if attention { c.head_dim() } else { 0 },
            res: d.max(l),
            scores: if attention { l } else { 0 },
            rows: 1,
            rows_max: d.max(l),
            panel: 0,
            cols_max: d.max(l).max(inter),
        }
    }

    /// The layout with [`FAST_ROWS`] rows per pass (or as many as there are rows) and the
    /// blocked products' scratch.
    pub(super) fn fast(mut self) -> Self {
        self.rows = FAST_ROWS.min(self.rows_max);
        self.panel = matmul::scratch_len(self.cols_max, self.rows);
        self
    }

    /// The i16 and i32 values this layout carves.
    pub(super) fn len(&self) -> ScratchLen {
        ScratchLen {
            i16s: 3 * self.ld + self.work + self.rows * self.gu + self.head + self.panel,
            i32s: self.rows * self.res + self.scores,
            f32s: 0,
        }
    }

    /// The blocked products' scratch if it fits in `got` beside one row per pass, then the
    /// most rows per pass that fit (at least 1; `got` holds at least `len()` of one row
    /// without the blocked products' scratch).
    pub(super) fn fit(mut self, got: ScratchLen) -> Self {
        let one = self.len();
        let extra32 = (got.i32s - one.i32s) / self.res.max(1);
        // The scratch of the blocked products: a fixed part and a part per row.
        let fixed = matmul::panel_len(self.cols_max);
        let per_row = matmul::scratch_len(self.cols_max, 1) - fixed;
        let extra16 = got.i16s - one.i16s;
        if extra16 >= fixed + per_row {
            let more = (extra16 - fixed - per_row) / (self.gu + per_row).max(1);
            self.rows = (1 + more.min(extra32)).min(self.rows_max);
            self.panel = matmul::scratch_len(self.cols_max, self.rows);
        } else {
            self.rows = (1 + (extra16 / self.gu.max(1)).min(extra32)).min(self.rows_max);
        }
        self
    }

    /// Carves x, y, z and the network buffers from the front of the scratch (which holds at
    /// least [`Layout::len`]).
    pub(super) fn carve<'s>(
        &self,
        scratch16: &'s mut [i16],
        scratch32: &'s mut [i32],
    ) -> (States<'s>, Bufs<'s>) {
        let mut r16: &'s mut [i16] = scratch16;
        let mut r32: &'s mut [i32] = scratch32;
        let x = carve(&mut r16, self.ld);
        let y = carve(&mut r16, self.ld);
        let z = carve(&mut r16, self.ld);
        let work = carve(&mut r16, self.work);
        let gu = carve(&mut r16, self.rows * self.gu);
        let head = carve(&mut r16, self.head);
        let panel = carve(&mut r16, self.panel);
        let res = carve(&mut r32, self.rows * self.res);
        let scores = carve(&mut r32, self.scores);
        let bufs = Bufs {
            work,
            gu,
            head,
            res,
            scores,
            panel,
        };
        ([x, y, z], bufs)
    }
}
