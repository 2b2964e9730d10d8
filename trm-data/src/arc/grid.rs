//! ARC grids, the dihedral group and colour permutations (the augmentations), and augmented
//! puzzle names.

use super::{ArcError, GRID_SIZE, NUM_COLOURS, PUZZLE_ID_SEPARATOR};

/// A rectangular grid of colours 0..=9, at most 30x30, row major.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grid {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) cells: Vec<u8>,
}

/// Why a list of rows is not a valid ARC grid.
fn grid_problem(rows: &[Vec<i64>]) -> Option<String> {
    if rows.is_empty() {
        return Some("empty grid (no rows)".into());
    }
    let cols = rows[0].len();
    if cols == 0 {
        return Some("empty grid (row 0 has no cells)".into());
    }
    for (r, row) in rows.iter().enumerate() {
        if row.len() != cols {
            return Some(format!(
                "non-rectangular grid: row {r} has {} cells, row 0 has {cols}",
                row.len()
            ));
        }
    }
    if rows.len() > GRID_SIZE || cols > GRID_SIZE {
        return Some(format!(
            "grid is {}x{}, larger than {GRID_SIZE}x{GRID_SIZE}",
            rows.len(),
            cols
        ));
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if !(0..NUM_COLOURS as i64).contains(&v) {
                return Some(format!(
                    "colour {v} at row {r}, column {c} is outside 0..=9"
                ));
            }
        }
    }
    None
}

impl Grid {
    /// A grid from its size and row-major cells; `None` unless `1 <= rows, cols <= 30`,
    /// `cells.len() == rows * cols` and every cell is in 0..=9.
    pub fn new(rows: usize, cols: usize, cells: Vec<u8>) -> Option<Self> {
        let ok = (1..=GRID_SIZE).contains(&rows)
            && (1..=GRID_SIZE).contains(&cols)
            && cells.len() == rows * cols
            && cells.iter().all(|&c| (c as usize) < NUM_COLOURS);
        ok.then_some(Self { rows, cols, cells })
    }

    /// A grid from JSON-style rows, with the reason when they are not a valid grid.
    pub fn from_rows(rows: &[Vec<i64>]) -> Result<Self, String> {
        if let Some(problem) = grid_problem(rows) {
            return Err(problem);
        }
        let cells = rows
            .iter()
            .flat_map(|r| r.iter().map(|&v| v as u8))
            .collect();
        Ok(Self {
            rows: rows.len(),
            cols: rows[0].len(),
            cells,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The cells, row major.
    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    /// The cell at `(row, col)`, `None` outside the grid.
    pub fn get(&self, row: usize, col: usize) -> Option<u8> {
        (row < self.rows && col < self.cols).then(|| self.cells[row * self.cols + col])
    }

    /// The grid as rows of integers (the JSON form).
    pub fn to_rows(&self) -> Vec<Vec<u8>> {
        if self.cols == 0 {
            return Vec::new();
        }
        self.cells.chunks(self.cols).map(<[u8]>::to_vec).collect()
    }

    /// The reference's `dihedral_transform(grid, tid)` (tid 0..=7; others are the identity, as
    /// in the reference): 0 identity, 1 `rot90` (counter-clockwise), 2 `rot180`, 3 `rot270`,
    /// 4 `fliplr`, 5 `flipud`, 6 transpose, 7 anti-transpose (`fliplr(rot90)`).
    pub fn dihedral(&self, tid: u8) -> Grid {
        let (r, c) = (self.rows, self.cols);
        let swap = matches!(tid, 1 | 3 | 6 | 7);
        let (nr, nc) = if swap { (c, r) } else { (r, c) };
        let mut cells = Vec::with_capacity(r * c);
        for i in 0..nr {
            for j in 0..nc {
                // Source cell of output (i, j), NumPy's definitions of each transform.
                let (si, sj) = match tid {
                    1 => (j, c - 1 - i),
                    2 => (r - 1 - i, c - 1 - j),
                    3 => (r - 1 - j, i),
                    4 => (i, c - 1 - j),
                    5 => (r - 1 - i, j),
                    6 => (j, i),
                    7 => (r - 1 - j, c - 1 - i),
                    _ => (i, j),
                };
                cells.push(self.cells[si * c + sj]);
            }
        }
        Grid {
            rows: nr,
            cols: nc,
            cells,
        }
    }

    /// The inverse of [`dihedral`](Self::dihedral) (reference `inverse_dihedral_transform`).
    pub fn inverse_dihedral(&self, tid: u8) -> Grid {
        self.dihedral(inverse_dihedral_id(tid))
    }

    /// Every cell `v` replaced by `mapping[v]`.
    pub fn map_colours(&self, mapping: &[u8; NUM_COLOURS]) -> Grid {
        Grid {
            rows: self.rows,
            cols: self.cols,
            cells: self.cells.iter().map(|&v| mapping[v as usize]).collect(),
        }
    }

    /// The reference's augmentation map: colours first, then the dihedral transform.
    pub fn augment(&self, aug: &Augmentation) -> Grid {
        self.map_colours(&aug.colours).dihedral(aug.trans_id)
    }

    /// The inverse of [`augment`](Self::augment) (reference `inverse_aug`'s map).
    pub fn unaugment(&self, aug: &Augmentation) -> Grid {
        self.inverse_dihedral(aug.trans_id)
            .map_colours(&aug.inverse_colours())
    }
}

/// The dihedral id undoing `tid` (reference `DIHEDRAL_INVERSE`): rotations by 90 and 270
/// degrees invert each other, every other element is its own inverse.
pub fn inverse_dihedral_id(tid: u8) -> u8 {
    match tid {
        1 => 3,
        3 => 1,
        t => t,
    }
}

/// One augmentation: a colour map (a permutation of 0..=9) then a dihedral transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Augmentation {
    pub(super) trans_id: u8,
    pub(super) colours: [u8; NUM_COLOURS],
}

impl Augmentation {
    /// An augmentation from a dihedral id (0..=7) and a colour map (`colours[v]` is the new
    /// colour of `v`; a permutation of 0..=9). `None` otherwise. The builder's maps keep 0
    /// fixed; the evaluator accepts any permutation, as the reference's `inverse_aug`.
    pub fn new(trans_id: u8, colours: [u8; NUM_COLOURS]) -> Option<Self> {
        let mut seen = [false; NUM_COLOURS];
        for &c in &colours {
            if c as usize >= NUM_COLOURS || std::mem::replace(&mut seen[c as usize], true) {
                return None;
            }
        }
        (trans_id < 8).then_some(Self { trans_id, colours })
    }

    /// The dihedral transform id, 0..=7 (see [`Grid::dihedral`]).
    pub fn trans_id(&self) -> u8 {
        self.trans_id
    }

    /// The colour map: `colours()[v]` is the new colour of colour `v`.
    pub fn colours(&self) -> [u8; NUM_COLOURS] {
        self.colours
    }

    /// The identity augmentation.
    pub const IDENTITY: Self = Self {
        trans_id: 0,
        colours: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    };

    /// The inverse colour map (`inv[colours[v]] == v`).
    pub fn inverse_colours(&self) -> [u8; NUM_COLOURS] {
        let mut inv = [0u8; NUM_COLOURS];
        for (v, &m) in self.colours.iter().enumerate() {
            if let Some(slot) = inv.get_mut(m as usize) {
                *slot = v as u8;
            }
        }
        inv
    }

    /// The augmented name `<base>|||t<k>|||<colour digits>` (reference `aug`).
    pub fn name(&self, base: &str) -> String {
        let digits: String = self.colours.iter().map(|d| char::from(b'0' + d)).collect();
        format!(
            "{base}{PUZZLE_ID_SEPARATOR}t{}{PUZZLE_ID_SEPARATOR}{digits}",
            self.trans_id
        )
    }

    /// Splits a puzzle name into its base id and augmentation (reference `inverse_aug`): a
    /// name without the separator is an original puzzle (identity).
    pub fn parse_name(name: &str) -> Result<(&str, Augmentation), ArcError> {
        if !name.contains(PUZZLE_ID_SEPARATOR) {
            return Ok((name, Self::IDENTITY));
        }
        let bad = |msg: &str| ArcError::Name {
            name: name.to_string(),
            msg: msg.to_string(),
        };
        let parts: Vec<&str> = name.split(PUZZLE_ID_SEPARATOR).collect();
        // As the reference: the base is the first part, the transform the last two.
        let [.., t, perm] = parts.as_slice() else {
            return Err(bad("expected <id>|||t<k>|||<colours>"));
        };
        let trans_id = t
            .strip_prefix('t')
            .and_then(|k| k.parse::<u8>().ok())
            .filter(|&k| k < 8)
            .ok_or_else(|| bad("transform must be t0..t7"))?;
        let bytes = perm.as_bytes();
        if bytes.len() != NUM_COLOURS {
            return Err(bad("colour map must have 10 digits"));
        }
        let mut colours = [0u8; NUM_COLOURS];
        let mut seen = [false; NUM_COLOURS];
        for (slot, &b) in colours.iter_mut().zip(bytes) {
            let d = b.wrapping_sub(b'0');
            if d as usize >= NUM_COLOURS || seen[d as usize] {
                return Err(bad("colour map must be a permutation of the digits 0..9"));
            }
            seen[d as usize] = true;
            *slot = d;
        }
        Ok((parts[0], Augmentation { trans_id, colours }))
    }
}
