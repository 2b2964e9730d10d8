//! Grids as 900-token sequences (a 30x30 canvas with EOS markers) and back.

use super::{COLOUR_OFFSET, EOS, GRID_SIZE, Grid, PAD, SEQ_LEN};

/// Writes `grid` into a 900-token canvas at offset `(pad_r, pad_c)` with EOS markers, exactly as
/// the reference's `np_grid_to_seq_translational_augment` does for one grid. Returns `false`,
/// leaving the canvas all PAD, when the grid does not fit at that offset.
pub fn grid_to_seq(grid: &Grid, pad_r: usize, pad_c: usize, out: &mut [u8; SEQ_LEN]) -> bool {
    out.fill(PAD);
    let (nr, nc) = (grid.rows, grid.cols);
    if pad_r + nr > GRID_SIZE || pad_c + nc > GRID_SIZE {
        return false;
    }
    for r in 0..nr {
        let dst = (pad_r + r) * GRID_SIZE + pad_c;
        for (o, &v) in out[dst..dst + nc]
            .iter_mut()
            .zip(&grid.cells[r * nc..(r + 1) * nc])
        {
            *o = v + COLOUR_OFFSET;
        }
    }
    let (eos_row, eos_col) = (pad_r + nr, pad_c + nc);
    if eos_row < GRID_SIZE {
        out[eos_row * GRID_SIZE + pad_c..eos_row * GRID_SIZE + eos_col].fill(EOS);
    }
    if eos_col < GRID_SIZE {
        for r in pad_r..eos_row {
            out[r * GRID_SIZE + eos_col] = EOS;
        }
    }
    true
}

/// The grid an encoded sequence holds: the largest top-left rectangle without PAD or EOS
/// (reference evaluator `_crop`). Tokens outside `2..=11` end a row; the grid may be empty.
pub fn crop_seq<T: Copy + Into<i64>>(seq: &[T]) -> Option<Grid> {
    if seq.len() != SEQ_LEN {
        return None;
    }
    let is_colour = |t: T| (2..=11).contains(&t.into());
    let (mut best_area, mut best) = (0, (0, 0));
    let mut num_c = GRID_SIZE;
    for num_r in 1..=GRID_SIZE {
        let row = &seq[(num_r - 1) * GRID_SIZE..num_r * GRID_SIZE];
        if let Some(c) = row[..num_c].iter().position(|&t| !is_colour(t)) {
            num_c = c;
        }
        if num_r * num_c > best_area {
            best_area = num_r * num_c;
            best = (num_r, num_c);
        }
    }
    let (rows, cols) = best;
    let mut cells = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        // Cells were checked to be colour tokens 2..=11.
        cells.extend(
            seq[r * GRID_SIZE..r * GRID_SIZE + cols]
                .iter()
                .map(|&t| (t.into() - COLOUR_OFFSET as i64) as u8),
        );
    }
    Some(Grid { rows, cols, cells })
}
