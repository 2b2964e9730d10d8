//! A seeded Sudoku generator with unique solutions, and the exact solver it relies on.
//!
//! The solver is a bitmask backtracker: per row, column and box a 9-bit mask of used digits;
//! it always branches on the empty cell with the fewest candidates. It counts solutions up to a
//! limit (2 is enough to decide uniqueness).
//!
//! The generator draws a random complete grid (the solver with shuffled candidate order), then
//! blanks cells in random order, keeping a blank only if the puzzle still has exactly one
//! solution, until the requested number of blanks is reached. The number of blanks is the
//! difficulty knob: 8 gives a trivial puzzle (a learning smoke test), 50-60 gives puzzles
//! close to the minimal ones. More than 64 blanks (< 17 givens) is impossible.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::input::BuildError;
use crate::sudoku::{self, CELLS, Grid, SudokuOptions, SudokuRecord, SudokuSplit};

/// Most blanks a Sudoku with a unique solution can have (17 givens is the proven minimum).
pub const MAX_BLANKS: usize = 64;
/// Fresh solution grids tried before giving up on a blank count.
const MAX_ATTEMPTS: usize = 200;

const ALL: u16 = 0x3fe; // bits 1..=9

#[derive(Clone)]
struct Board {
    cells: Grid,
    rows: [u16; 9],
    cols: [u16; 9],
    boxes: [u16; 9],
}

#[inline]
fn box_of(i: usize) -> usize {
    (i / 27) * 3 + (i % 9) / 3
}

impl Board {
    /// `None` when a given is out of range or two givens conflict.
    fn new(grid: &Grid) -> Option<Self> {
        let mut b = Self {
            cells: [0; CELLS],
            rows: [0; 9],
            cols: [0; 9],
            boxes: [0; 9],
        };
        for (i, &d) in grid.iter().enumerate() {
            if d == 0 {
                continue;
            }
            if d > 9 || b.candidates(i) & (1 << d) == 0 {
                return None;
            }
            b.place(i, d);
        }
        Some(b)
    }

    #[inline]
    fn candidates(&self, i: usize) -> u16 {
        !(self.rows[i / 9] | self.cols[i % 9] | self.boxes[box_of(i)]) & ALL
    }

    #[inline]
    fn place(&mut self, i: usize, d: u8) {
        let bit = 1u16 << d;
        self.cells[i] = d;
        self.rows[i / 9] |= bit;
        self.cols[i % 9] |= bit;
        self.boxes[box_of(i)] |= bit;
    }

    #[inline]
    fn clear(&mut self, i: usize) {
        let bit = !(1u16 << self.cells[i]);
        self.cells[i] = 0;
        self.rows[i / 9] &= bit;
        self.cols[i % 9] &= bit;
        self.boxes[box_of(i)] &= bit;
    }

    /// The empty cell with fewest candidates: `None` when full, `Some((i, 0))` on a dead end.
    fn most_constrained(&self) -> Option<(usize, u16)> {
        let mut best: Option<(usize, u16)> = None;
        let mut best_n = u32::MAX;
        for i in 0..CELLS {
            if self.cells[i] != 0 {
                continue;
            }
            let c = self.candidates(i);
            let n = c.count_ones();
            if n < best_n {
                best = Some((i, c));
                best_n = n;
                if n <= 1 {
                    break;
                }
            }
        }
        best
    }

    /// Counts solutions up to `limit`, keeping the first one found in `first`.
    fn count(&mut self, limit: usize, found: &mut usize, first: &mut Option<Grid>) {
        let Some((i, mut cands)) = self.most_constrained() else {
            *found += 1;
            if first.is_none() {
                *first = Some(self.cells);
            }
            return;
        };
        while cands != 0 && *found < limit {
            let d = cands.trailing_zeros() as u8;
            cands &= cands - 1;
            self.place(i, d);
            self.count(limit, found, first);
            self.clear(i);
        }
    }

    /// Fills the board with a random solution (shuffled candidate order); false on a dead end.
    fn fill_random(&mut self, rng: &mut impl Rng) -> bool {
        let Some((i, cands)) = self.most_constrained() else {
            return true;
        };
        let mut digits: Vec<u8> = (1..=9).filter(|d| cands & (1 << d) != 0).collect();
        digits.shuffle(rng);
        for d in digits {
            self.place(i, d);
            if self.fill_random(rng) {
                return true;
            }
            self.clear(i);
        }
        false
    }
}

/// Number of solutions of `puzzle` (0 = blank), counting at most `limit`; with the first
/// solution found. Conflicting or out-of-range givens give 0.
pub fn count_solutions(puzzle: &Grid, limit: usize) -> (usize, Option<Grid>) {
    let Some(mut board) = Board::new(puzzle) else {
        return (0, None);
    };
    let (mut found, mut first) = (0, None);
    if limit > 0 {
        board.count(limit, &mut found, &mut first);
    }
    (found, first)
}

/// The solution of `puzzle` if it has exactly one.
pub fn solve_unique(puzzle: &Grid) -> Option<Grid> {
    match count_solutions(puzzle, 2) {
        (1, s) => s,
        _ => None,
    }
}

/// Some solution of `puzzle`, if any.
pub fn solve(puzzle: &Grid) -> Option<Grid> {
    count_solutions(puzzle, 1).1
}

/// A generated puzzle with its unique solution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSudoku {
    /// The puzzle, 0 = blank, exactly the requested number of blanks.
    pub puzzle: Grid,
    /// Its unique solution.
    pub solution: Grid,
}

/// An error of the generator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// More blanks than a unique puzzle can have.
    #[error("{0} blanks requested; a Sudoku with a unique solution has at most {MAX_BLANKS}")]
    TooManyBlanks(usize),
    /// No puzzle with that many blanks was found in the allowed attempts.
    #[error("no unique puzzle with {0} blanks found in {MAX_ATTEMPTS} attempts (try fewer blanks)")]
    NotFound(usize),
}

/// A random complete Sudoku grid.
pub fn random_solution(rng: &mut impl Rng) -> Grid {
    let mut board = Board {
        cells: [0; CELLS],
        rows: [0; 9],
        cols: [0; 9],
        boxes: [0; 9],
    };
    // An empty board always has a solution, so this cannot fail.
    let _filled = board.fill_random(rng);
    board.cells
}

/// Generates a puzzle with exactly `blanks` blanks and a unique solution.
pub fn generate(rng: &mut impl Rng, blanks: usize) -> Result<GeneratedSudoku, GenError> {
    if blanks > MAX_BLANKS {
        return Err(GenError::TooManyBlanks(blanks));
    }
    for _ in 0..MAX_ATTEMPTS {
        let solution = random_solution(rng);
        let mut puzzle = solution;
        let mut order: Vec<usize> = (0..CELLS).collect();
        order.shuffle(rng);
        let mut removed = 0;
        for &i in &order {
            if removed == blanks {
                break;
            }
            puzzle[i] = 0;
            // Removing one given from a unique puzzle keeps `solution` as a solution, so
            // uniqueness is all there is to check.
            if count_solutions(&puzzle, 2).0 == 1 {
                removed += 1;
            } else {
                puzzle[i] = solution[i];
            }
        }
        if removed == blanks {
            return Ok(GeneratedSudoku { puzzle, solution });
        }
    }
    Err(GenError::NotFound(blanks))
}

/// A seeded stream of generated puzzles.
#[derive(Debug, Clone)]
pub struct SudokuGenerator {
    rng: ChaCha8Rng,
    blanks: usize,
}

impl SudokuGenerator {
    /// Puzzles with `blanks` blanks, from `seed`.
    pub fn new(seed: u64, blanks: usize) -> Result<Self, GenError> {
        if blanks > MAX_BLANKS {
            return Err(GenError::TooManyBlanks(blanks));
        }
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            blanks,
        })
    }

    /// The next puzzle.
    pub fn next_puzzle(&mut self) -> Result<GeneratedSudoku, GenError> {
        generate(&mut self.rng, self.blanks)
    }

    /// `n` puzzles as builder records (no rating; `line` = 1-based index).
    pub fn records(&mut self, n: usize) -> Result<Vec<SudokuRecord>, GenError> {
        (0..n)
            .map(|k| {
                let g = self.next_puzzle()?;
                Ok(SudokuRecord {
                    question: g.puzzle,
                    answer: g.solution,
                    rating: None,
                    line: k as u64 + 1,
                })
            })
            .collect()
    }
}

/// Writes a generated Sudoku dataset in the reference layout: `n_train` and `n_test` puzzles
/// with `blanks` blanks (train and test drawn from different streams of `opts.seed`), built
/// with the options of [`sudoku::write_dataset`] (augmentation, subsampling, seed).
pub fn generate_dataset(
    out_dir: &Path,
    n_train: usize,
    n_test: usize,
    blanks: usize,
    opts: &SudokuOptions,
) -> Result<(SudokuSplit, SudokuSplit), BuildError> {
    let gen_err = |e: GenError| BuildError::Options(e.to_string());
    let train = SudokuGenerator::new(opts.seed, blanks)
        .map_err(gen_err)?
        .records(n_train)
        .map_err(gen_err)?;
    let test = SudokuGenerator::new(opts.seed ^ 0x9e37_79b9_7f4a_7c15, blanks)
        .map_err(gen_err)?
        .records(n_test)
        .map_err(gen_err)?;
    sudoku::write_dataset(&train, &test, out_dir, opts)
}
