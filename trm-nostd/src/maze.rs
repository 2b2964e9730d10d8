//! Maze rules (Maze-Hard, the reference's `build_maze_dataset.py` tokens): does a predicted path
//! lead from the start to the goal?
//!
//! Tokens: 0 pad, [`WALL`], [`OPEN`], [`START`], [`GOAL`], [`PATH`]. A question holds walls, open
//! cells, one start and one goal; its answer is the question with the cells of a shortest path
//! set to [`PATH`]. A prediction is a valid path ([`check_path`]) when it keeps every wall, the
//! start and the goal of the question where they are, puts [`PATH`] only on open cells (an open
//! cell stays open or becomes path), and the start reaches the goal by steps up, down, left or
//! right through path cells. It need not be the shortest path; the exact-match metric says that.
//!
//! No heap: the flood fill keeps its visited cells in a fixed bit set of
//! [`crate::task::MAX_SEQ_LEN`] bits.

use core::fmt;

use crate::task::MAX_SEQ_LEN;

/// A wall, `#`.
pub const WALL: u8 = 1;
/// An open cell.
pub const OPEN: u8 = 2;
/// The start, `S`.
pub const START: u8 = 3;
/// The goal, `G`.
pub const GOAL: u8 = 4;
/// A cell of the path, `o`.
pub const PATH: u8 = 5;

/// Why a prediction is not a valid path of its maze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MazeViolation {
    /// The sequences are not `side * side` tokens long, or longer than the fill can hold.
    WrongSize {
        /// Tokens of the prediction.
        len: usize,
        /// Tokens of a `side x side` maze.
        expected: usize,
    },
    /// The question has no start or no goal (or more than one of either).
    BadQuestion,
    /// The prediction changes a cell it must keep, or puts something other than open or path on
    /// an open cell.
    CellChanged {
        /// Cell index, row-major.
        position: usize,
        /// The question's token there.
        was: u8,
        /// The prediction's token there.
        now: u8,
    },
    /// No chain of path cells leads from the start to the goal.
    NotConnected,
}

impl fmt::Display for MazeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MazeViolation::WrongSize { len, expected } => {
                write!(f, "maze: {len} cells, expected {expected}")
            }
            MazeViolation::BadQuestion => {
                write!(f, "maze: the question needs exactly one start and one goal")
            }
            MazeViolation::CellChanged { position, was, now } => write!(
                f,
                "maze: cell {position} changes from {} to {}",
                name(*was),
                name(*now)
            ),
            MazeViolation::NotConnected => {
                write!(f, "maze: no path from the start to the goal")
            }
        }
    }
}

fn name(t: u8) -> &'static str {
    match t {
        WALL => "wall",
        OPEN => "open",
        START => "start",
        GOAL => "goal",
        PATH => "path",
        _ => "padding",
    }
}

/// The one cell of the question holding `token`, if there is exactly one.
fn only(question: &[u8], token: u8) -> Option<usize> {
    let mut found = None;
    for (i, &t) in question.iter().enumerate() {
        if t == token {
            if found.is_some() {
                return None;
            }
            found = Some(i);
        }
    }
    found
}

/// Checks that `prediction` is a valid path of the maze `question` (`side x side` cells, see the
/// module documentation).
pub fn check_path(prediction: &[u8], question: &[u8], side: usize) -> Result<(), MazeViolation> {
    let expected = side * side;
    if prediction.len() != expected || question.len() != expected || expected > MAX_SEQ_LEN {
        return Err(MazeViolation::WrongSize {
            len: prediction.len(),
            expected,
        });
    }
    let (Some(start), Some(goal)) = (only(question, START), only(question, GOAL)) else {
        return Err(MazeViolation::BadQuestion);
    };
    for (position, (&now, &was)) in prediction.iter().zip(question).enumerate() {
        let ok = match was {
            OPEN => now == OPEN || now == PATH,
            _ => now == was,
        };
        if !ok {
            return Err(MazeViolation::CellChanged { position, was, now });
        }
    }
    // Flood fill from the start over path cells (and the goal), until nothing changes.
    let mut seen = [0u32; MAX_SEQ_LEN / 32];
    let mark = |seen: &mut [u32], i: usize| seen[i / 32] |= 1 << (i % 32);
    let has = |seen: &[u32], i: usize| seen[i / 32] & (1 << (i % 32)) != 0;
    mark(&mut seen, start);
    loop {
        let mut grew = false;
        for (i, &t) in prediction.iter().enumerate() {
            if has(&seen, i) || !(t == PATH || i == goal) {
                continue;
            }
            let (r, c) = (i / side, i % side);
            let near = (r > 0 && has(&seen, i - side))
                || (r + 1 < side && has(&seen, i + side))
                || (c > 0 && has(&seen, i - 1))
                || (c + 1 < side && has(&seen, i + 1));
            if near {
                mark(&mut seen, i);
                grew = true;
            }
        }
        if has(&seen, goal) {
            return Ok(());
        }
        if !grew {
            return Err(MazeViolation::NotConnected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 3x3: S . #
    //      # . .
    //      # # G
    const Q: [u8; 9] = [START, OPEN, WALL, WALL, OPEN, OPEN, WALL, WALL, GOAL];

    #[test]
    fn a_connected_path_is_valid_and_a_broken_one_is_not() {
        let path = [START, PATH, WALL, WALL, PATH, PATH, WALL, WALL, GOAL];
        assert_eq!(check_path(&path, &Q, 3), Ok(()));
        let broken = [START, PATH, WALL, WALL, OPEN, PATH, WALL, WALL, GOAL];
        assert_eq!(check_path(&broken, &Q, 3), Err(MazeViolation::NotConnected));
        // No path at all.
        assert_eq!(check_path(&Q, &Q, 3), Err(MazeViolation::NotConnected));
    }

    #[test]
    fn walls_start_and_goal_are_kept() {
        let mut p = [START, PATH, PATH, WALL, PATH, PATH, WALL, WALL, GOAL];
        assert_eq!(
            check_path(&p, &Q, 3),
            Err(MazeViolation::CellChanged {
                position: 2,
                was: WALL,
                now: PATH
            })
        );
        p[2] = WALL;
        p[0] = PATH;
        assert!(matches!(
            check_path(&p, &Q, 3),
            Err(MazeViolation::CellChanged { position: 0, .. })
        ));
        assert_eq!(
            check_path(&Q, &Q[..8], 3),
            Err(MazeViolation::WrongSize {
                len: 9,
                expected: 9
            })
        );
        let no_goal = [START, OPEN, WALL, WALL, OPEN, OPEN, WALL, WALL, OPEN];
        assert_eq!(
            check_path(&no_goal, &no_goal, 3),
            Err(MazeViolation::BadQuestion)
        );
    }

    #[test]
    fn the_shared_maze_answers_are_valid_paths() {
        extern crate std;
        let shared = std::env::var("TRM_SHARED")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| std::format!("{}/../../shared", env!("CARGO_MANIFEST_DIR")));
        let path = std::format!("{shared}/data/maze-hard/test.csv");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path} ({e}); set TRM_SHARED"));
        let task = crate::task::Task::Maze { side: 30 };
        let mut checked = 0;
        for line in text.lines().skip(1).take(50) {
            let fields: std::vec::Vec<&str> = line.split("\",\"").collect();
            let (q, a) = (fields[0].trim_matches('"'), fields[1].trim_matches('"'));
            let (mut qt, mut at) = ([0u8; 900], [0u8; 900]);
            task.parse_line(q, 6, &mut qt).unwrap();
            task.parse_line(a, 6, &mut at).unwrap();
            assert_eq!(check_path(&at, &qt, 30), Ok(()));
            // Removing one path cell next to the start breaks it.
            let s = qt.iter().position(|&t| t == START).unwrap();
            let mut cut = at;
            for n in [s.wrapping_sub(1), s + 1, s.wrapping_sub(30), s + 30] {
                if n < 900 && cut[n] == PATH {
                    cut[n] = OPEN;
                }
            }
            assert_eq!(check_path(&cut, &qt, 30), Err(MazeViolation::NotConnected));
            checked += 1;
        }
        assert_eq!(checked, 50);
    }
}
