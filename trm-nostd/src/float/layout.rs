//! The float engine's scratch: the sizes of its buffers for a config ([`Layout`]) and their
//! carving from the caller's f32 scratch.

use crate::config::{Config, PosEncoding};
use crate::engine::carve;
use crate::float::kernels::{Arith, BlockBuffers, ROW_BLOCK};
use crate::float::optimized::{self, Isa};

/// The carried states x, y, z (`[L, D]` f32 each).
pub(super) type States<'s> = [&'s mut [f32]; 3];

/// Sizes of the scratch carving, shared by the scratch sizes and the carving itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    l: usize,
    d: usize,
    work: usize,
    rope: usize,
    /// One weight row (the widest).
    wrow: usize,
    /// The weight tile of the optimized products (replaces `wrow` in a large scratch).
    tile: usize,
    /// Attention scores of one row and head.
    scores: usize,
    /// The optimized attention's scratch (replaces `scores` in a large scratch).
    scores_fast: usize,
    /// `2 * inter` of the widest SwiGLU.
    gu_per_row: usize,
    /// Width of the widest SwiGLU output row.
    out_per_row: usize,
    /// Rows of the largest row-blocked product.
    pub(super) rows_max: usize,
}

impl Layout {
    /// The layout of a (validated) config.
    pub(super) fn new(c: &Config) -> Self {
        let l = c.seq_total();
        let d = c.d();
        let inter = c.mlp_inter();
        let attention = !c.mlp_t;
        let (work, inter_max, n_max, rows_max) = if attention {
            (3 * l * d, inter, d, l)
        } else {
            (l * d, inter.max(c.mlp_t_inter()), d.max(l), l.max(d))
        };
        Layout {
            l,
            d,
            work,
            rope: if attention && c.pos_encodings == PosEncoding::Rope {
                2 * l * c.head_dim()
            } else {
                0
            },
            wrow: inter_max.max(n_max),
            tile: optimized::tile_len(inter_max.max(n_max)),
            scores: if attention { l } else { 0 },
            scores_fast: if attention {
                optimized::attention_len(l, c.num_heads as usize, c.head_dim()).max(l)
            } else {
                0
            },
            gu_per_row: 2 * inter_max,
            out_per_row: n_max,
            rows_max,
        }
    }

    /// Values of the weight buffer: the tile, or one row.
    fn wbuf(&self, tiled: bool) -> usize {
        if tiled { self.tile } else { self.wrow }
    }

    /// f32 values independent of the row block.
    fn base(&self, tiled: bool) -> usize {
        3 * self.l * self.d + self.work + self.rope + self.wbuf(tiled) + self.sbuf(tiled)
    }

    /// Values of the attention scores buffer: the optimized attention's, or one row's.
    fn sbuf(&self, tiled: bool) -> usize {
        if tiled { self.scores_fast } else { self.scores }
    }

    /// f32 values per row of a row block.
    fn per_row(&self) -> usize {
        self.gu_per_row + self.out_per_row
    }

    /// The smallest row block: [`ROW_BLOCK`] rows (or as many as there are).
    pub(super) fn min_rows(&self) -> usize {
        ROW_BLOCK.min(self.rows_max).max(1)
    }

    /// f32 values with row blocks of `rows` rows and one weight row (no tile).
    pub(super) fn len(&self, rows: usize) -> usize {
        self.base(false) + rows * self.per_row()
    }

    /// f32 values with which every product runs in one pass, on a whole weight tile.
    pub(super) fn len_fast(&self) -> usize {
        self.base(true) + self.rows_max * self.per_row()
    }

    /// The carving for `got` values (which hold at least `len(min_rows())`): a weight tile if
    /// it fits with the smallest row block, then the largest row block that fits.
    pub(super) fn fit(&self, got: usize) -> (usize, bool) {
        let tiled = got >= self.base(true) + self.min_rows() * self.per_row();
        let rows = ((got - self.base(tiled)) / self.per_row()).min(self.rows_max);
        (rows, tiled)
    }

    /// Carves x, y, z and the network buffers (row blocks of `rows` rows, a weight tile if
    /// `tiled`, kernels on `isa`) from the front of `scratch` (which holds at least
    /// `base(tiled) + rows * per_row()`), and returns the f32 values carved.
    pub(super) fn carve<'s>(
        &self,
        scratch: &'s mut [f32],
        rows: usize,
        tiled: bool,
        isa: Isa,
    ) -> (States<'s>, BlockBuffers<'s>, usize) {
        let got = scratch.len();
        let ld = self.l * self.d;
        let mut rest: &'s mut [f32] = scratch;
        let x = carve(&mut rest, ld);
        let y = carve(&mut rest, ld);
        let z = carve(&mut rest, ld);
        let work = carve(&mut rest, self.work);
        let cos = carve(&mut rest, self.rope / 2);
        let sin = carve(&mut rest, self.rope / 2);
        let wrow = carve(&mut rest, self.wbuf(tiled));
        let scores = carve(&mut rest, self.sbuf(tiled));
        let gu = carve(&mut rest, rows * self.gu_per_row);
        let out = carve(&mut rest, rows * self.out_per_row);
        let used = got - rest.len();
        let bufs = BlockBuffers {
            work,
            cos,
            sin,
            wrow,
            gu,
            out,
            scores,
            rows,
            isa,
            arith: Arith::Separate,
        };
        ([x, y, z], bufs, used)
    }
}
