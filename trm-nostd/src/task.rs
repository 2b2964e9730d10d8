//! The paper's tasks as token grids: which task a model solves, how its tokens read and print as
//! one line or as a grid, and what makes a prediction valid.
//!
//! A model file does not name its task; [`Task::of`] tells it from the dataset sizes the model
//! was built for, which differ between the reference's datasets:
//!
//! | task | `seq_len` | `vocab_size` | tokens |
//! |---|---|---|---|
//! | [`Task::Sudoku`] | 81 | 11 (or more) | 0 pad, 1 blank, 2..=10 digits 1..=9 |
//! | [`Task::Maze`] | a square (900: 30x30) | 6 | 0 pad, 1 wall `#`, 2 open, 3 start `S`, 4 goal `G`, 5 path `o` |
//! | [`Task::Arc`] | 900 (30x30) | 12 | 0 pad, 1 end of grid, 2..=11 colours 0..=9 |
//! | [`Task::Tokens`] | any other | up to 62 | no task rule |
//!
//! Every task but Sudoku (whose codec is [`crate::sudoku`], with its own line form) reads and
//! writes a puzzle as a *token line*: one character per token, the task's alphabet
//! ([`Task::alphabet`]): maze `_#.SGo` (an open cell is `.`; a space is read as `.` too, as the
//! Maze-Hard CSVs write it), ARC `_|0123456789` (`|` ends a grid's row or column), other tasks
//! `0-9a-zA-Z` (the token's value as a base-62 digit).
//!
//! Validity ([`Task::check`]): a maze prediction must keep the question's walls, start and goal,
//! put path cells only on open cells, and connect start and goal through path cells
//! ([`crate::maze`]); an ARC prediction must hold an output grid ([`arc_grid`]: the largest
//! top-left rectangle of colour tokens, as the reference's evaluator crops it, is not empty).

use core::fmt;

use crate::config::Config;
use crate::maze::{self, MazeViolation};

/// Longest token line the host tools and the firmware app handle (ARC and Maze-Hard: 900).
pub const MAX_SEQ_LEN: usize = 1024;

/// Side of an ARC grid in tokens (the reference pads every grid to 30x30).
pub const ARC_SIDE: usize = 30;

/// The task a model solves (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Task {
    /// 9x9 Sudoku (codec: [`crate::sudoku`]).
    Sudoku,
    /// A square maze of `side` x `side` cells.
    Maze {
        /// Cells per row.
        side: u16,
    },
    /// ARC-AGI: a 30x30 grid of colours with end-of-grid markers.
    Arc,
    /// Any other token sequence: no task rule, exact match only.
    Tokens,
}

const MAZE_ALPHABET: &[u8] = b"_#.SGo";
const ARC_ALPHABET: &[u8] = b"_|0123456789";
const SUDOKU_ALPHABET: &[u8] = b"_.123456789";
const BASE62: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Why a token line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LineError {
    /// The line does not hold exactly the model's `seq_len` characters.
    WrongLength {
        /// Characters expected.
        expected: usize,
        /// Characters found.
        len: usize,
    },
    /// A character outside the task's alphabet, or one standing for a token outside the model's
    /// vocabulary.
    BadChar {
        /// Its index, counted in characters from 0.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The task has no token line (Sudoku: see [`crate::sudoku::parse_puzzle`]), or its
    /// vocabulary is larger than an alphabet of 62 characters.
    NoAlphabet,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::WrongLength { expected, len } => {
                write!(f, "{len} tokens, expected {expected}")
            }
            LineError::BadChar { position, ch } => {
                write!(f, "bad character {ch:?} at position {position}")
            }
            LineError::NoAlphabet => write!(f, "this task has no token-line form"),
        }
    }
}

impl core::error::Error for LineError {}

/// Why a prediction is not valid for its task ([`Task::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TaskViolation {
    /// A maze rule is broken.
    Maze(MazeViolation),
    /// The prediction holds no ARC output grid (no colour at the top-left corner).
    NoGrid,
    /// Sudoku predictions are checked by [`crate::sudoku::check_solution`].
    NotThisTask,
}

impl fmt::Display for TaskViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskViolation::Maze(v) => write!(f, "{v}"),
            TaskViolation::NoGrid => write!(f, "no output grid (no colour at the top-left cell)"),
            TaskViolation::NotThisTask => write!(f, "checked by the Sudoku codec"),
        }
    }
}

impl core::error::Error for TaskViolation {}

/// The size of an ARC output grid: rows and columns of the largest top-left rectangle of colour
/// tokens (2..=11) of a 30x30 token sequence, as the reference evaluator crops predictions
/// (`None`: not 900 tokens, or no colour in the corner).
pub fn arc_grid(tokens: &[u8]) -> Option<(usize, usize)> {
    if tokens.len() != ARC_SIDE * ARC_SIDE {
        return None;
    }
    let colour = |t: u8| (2..=11).contains(&t);
    let (mut best_area, mut best) = (0, (0, 0));
    let mut cols = ARC_SIDE;
    for rows in 1..=ARC_SIDE {
        let row = &tokens[(rows - 1) * ARC_SIDE..][..cols];
        if let Some(c) = row.iter().position(|&t| !colour(t)) {
            cols = c;
        }
        if rows * cols > best_area {
            best_area = rows * cols;
            best = (rows, cols);
        }
    }
    (best_area > 0).then_some(best)
}

impl Task {
    /// The task of a model built for `config`'s dataset sizes (see the module documentation).
    pub fn of(config: &Config) -> Task {
        Task::from_sizes(config.seq_len as usize, config.vocab_size as usize)
    }

    /// The task of a dataset of `seq_len` tokens per puzzle over `vocab_size` tokens.
    pub fn from_sizes(seq_len: usize, vocab_size: usize) -> Task {
        let side = (1..=seq_len).take_while(|s| s * s <= seq_len).last();
        match (seq_len, vocab_size) {
            (81, v) if v >= 11 => Task::Sudoku,
            (900, 12) => Task::Arc,
            (_, 6) if side.is_some_and(|s| s * s == seq_len) => Task::Maze {
                side: side.and_then(|s| u16::try_from(s).ok()).unwrap_or(0),
            },
            _ => Task::Tokens,
        }
    }

    /// The task's name: `sudoku`, `maze`, `arc` or `tokens`.
    pub const fn name(self) -> &'static str {
        match self {
            Task::Sudoku => "sudoku",
            Task::Maze { .. } => "maze",
            Task::Arc => "arc",
            Task::Tokens => "tokens",
        }
    }

    /// Cells per printed row of a grid ([`Task::write_board`]); `None` prints one line.
    pub const fn row_len(self) -> Option<usize> {
        match self {
            Task::Sudoku => Some(9),
            Task::Maze { side } => Some(side as usize),
            Task::Arc => Some(ARC_SIDE),
            Task::Tokens => None,
        }
    }

    /// The characters of the tokens: token `t` is `alphabet()[t]`. Sudoku's is the one of its
    /// boards (`_` padding, `.` blank, digits).
    pub const fn alphabet(self) -> &'static [u8] {
        match self {
            Task::Sudoku => SUDOKU_ALPHABET,
            Task::Maze { .. } => MAZE_ALPHABET,
            Task::Arc => ARC_ALPHABET,
            Task::Tokens => BASE62,
        }
    }

    /// The character token `t` prints as (`?` outside the alphabet).
    pub fn token_char(self, t: u8) -> char {
        self.alphabet()
            .get(usize::from(t))
            .map_or('?', |&b| char::from(b))
    }

    /// Parses a token line into `out` (its length is the model's `seq_len`); every token must be
    /// below `vocab_size`. On error `out` may be partly written.
    pub fn parse_line(self, s: &str, vocab_size: u32, out: &mut [u8]) -> Result<(), LineError> {
        if self == Task::Sudoku || vocab_size as usize > BASE62.len() {
            return Err(LineError::NoAlphabet);
        }
        let len = s.chars().count();
        if len != out.len() {
            return Err(LineError::WrongLength {
                expected: out.len(),
                len,
            });
        }
        let alphabet = self.alphabet();
        for (position, (ch, slot)) in s.chars().zip(out.iter_mut()).enumerate() {
            // The Maze-Hard CSVs write open cells as spaces.
            let c = match (self, ch) {
                (Task::Maze { .. }, ' ') => '.',
                _ => ch,
            };
            let token = alphabet
                .iter()
                .position(|&b| u32::from(b) == u32::from(c))
                .filter(|&t| t < vocab_size as usize)
                .ok_or(LineError::BadChar { position, ch })?;
            // The alphabets have at most 62 characters.
            *slot = token as u8;
        }
        Ok(())
    }

    /// Writes `tokens` as one token line (no newline).
    pub fn write_line<W: fmt::Write>(self, w: &mut W, tokens: &[u8]) -> fmt::Result {
        for &t in tokens {
            w.write_char(self.token_char(t))?;
        }
        Ok(())
    }

    /// Writes `tokens` as a grid for humans, one row per line each ended by `\n`: a maze as its
    /// rows; an ARC sequence as its grid ([`arc_grid`]: the top-left rectangle of colours, the
    /// colours as digits) when it holds one, else as its 30x30 rows; anything else as one line.
    /// Sudoku: see [`crate::sudoku::write_board`].
    pub fn write_board<W: fmt::Write>(self, w: &mut W, tokens: &[u8]) -> fmt::Result {
        if let (Task::Arc, Some((rows, cols))) = (self, arc_grid(tokens)) {
            for r in 0..rows {
                self.write_line(w, &tokens[r * ARC_SIDE..][..cols])?;
                w.write_char('\n')?;
            }
            return Ok(());
        }
        let row = self.row_len().unwrap_or(tokens.len()).max(1);
        for chunk in tokens.chunks(row) {
            self.write_line(w, chunk)?;
            w.write_char('\n')?;
        }
        Ok(())
    }

    /// Checks a prediction against its question by the task's rule (see the module
    /// documentation); a task without one ([`Task::Tokens`]) accepts anything.
    pub fn check(self, prediction: &[u8], question: &[u8]) -> Result<(), TaskViolation> {
        match self {
            Task::Sudoku => Err(TaskViolation::NotThisTask),
            Task::Maze { side } => maze::check_path(prediction, question, usize::from(side))
                .map_err(TaskViolation::Maze),
            Task::Arc => arc_grid(prediction)
                .map(|_| ())
                .ok_or(TaskViolation::NoGrid),
            Task::Tokens => Ok(()),
        }
    }

    /// Whether puzzles of `seq_len` tokens of `vocab_size` kinds of this task can be written as
    /// text: Sudoku strings, or token lines of at most [`MAX_SEQ_LEN`] tokens of at most 62
    /// kinds (what [`Task::parse_line`] accepts).
    pub const fn has_text_form(self, seq_len: usize, vocab_size: u32) -> bool {
        seq_len <= MAX_SEQ_LEN
            && (matches!(self, Task::Sudoku) || vocab_size as usize <= BASE62.len())
    }

    /// Whether the task has a validity rule ([`Task::check`] can fail).
    pub const fn has_rule(self) -> bool {
        !matches!(self, Task::Tokens)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn tasks_follow_the_dataset_sizes() {
        assert_eq!(Task::from_sizes(81, 11), Task::Sudoku);
        assert_eq!(Task::from_sizes(900, 6), Task::Maze { side: 30 });
        assert_eq!(Task::from_sizes(16, 6), Task::Maze { side: 4 });
        assert_eq!(Task::from_sizes(900, 12), Task::Arc);
        assert_eq!(Task::from_sizes(899, 6), Task::Tokens);
        assert_eq!(Task::from_sizes(81, 12), Task::Sudoku);
        assert_eq!(Task::from_sizes(80, 11), Task::Tokens);
    }

    #[test]
    fn token_lines_round_trip_and_bad_characters_are_named() {
        let maze = Task::Maze { side: 2 };
        let mut t = [0u8; 4];
        maze.parse_line("S #G", 6, &mut t).unwrap();
        assert_eq!(t, [3, 2, 1, 4]);
        let mut s = String::new();
        maze.write_line(&mut s, &t).unwrap();
        assert_eq!(s, "S.#G");
        assert_eq!(
            maze.parse_line("S.xG", 6, &mut t),
            Err(LineError::BadChar {
                position: 2,
                ch: 'x'
            })
        );
        assert_eq!(
            maze.parse_line("S.G", 6, &mut t),
            Err(LineError::WrongLength {
                expected: 4,
                len: 3
            })
        );
        // A token outside the model's vocabulary is refused.
        assert!(maze.parse_line("o.#G", 5, &mut t).is_err());
        let mut t = [0u8; 3];
        Task::Tokens.parse_line("0aZ", 62, &mut t).unwrap();
        assert_eq!(t, [0, 10, 61]);
        assert_eq!(
            Task::Sudoku.parse_line("1..", 11, &mut t),
            Err(LineError::NoAlphabet)
        );
    }

    #[test]
    fn arc_grids_are_cropped_as_the_evaluator_does() {
        let mut seq = [0u8; 900];
        assert_eq!(arc_grid(&seq), None);
        // A 2x3 grid, its end markers after it.
        for r in 0..2 {
            for c in 0..3 {
                seq[r * 30 + c] = 2 + (r + c) as u8;
            }
            seq[r * 30 + 3] = 1;
        }
        assert_eq!(arc_grid(&seq), Some((2, 3)));
        assert_eq!(Task::Arc.check(&seq, &seq), Ok(()));
        seq[0] = 1;
        assert_eq!(Task::Arc.check(&seq, &seq), Err(TaskViolation::NoGrid));
        assert_eq!(arc_grid(&seq[..899]), None);
    }
}
