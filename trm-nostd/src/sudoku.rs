//! Sudoku codecs: puzzle strings to model tokens and back, solution checks, a board printer.
//!
//! The token vocabulary is the reference dataset's (`dataset/build_sudoku_dataset.py`): token 0 is
//! padding, token 1 a blank cell, tokens 2..=10 the digits 1..=9 (`token = digit + 1`). Puzzle
//! strings are the 81-character row-major form of the public Sudoku CSVs, with `.` or `0` for a
//! blank and `1`..`9` for a digit.
//!
//! Everything here works on caller-owned fixed-size arrays: no allocation, no panics on bad input.

use core::fmt;

/// Side of the grid.
pub const SIDE: usize = 9;

/// Cells in a puzzle, the model's `seq_len` for Sudoku.
pub const CELLS: usize = SIDE * SIDE;

/// Tokens in the reference Sudoku vocabulary.
pub const VOCAB: usize = 11;

/// Padding token (never part of a valid puzzle).
pub const PAD: u8 = 0;

/// Token of a blank cell.
pub const BLANK: u8 = 1;

/// Token of a digit `d` in 1..=9 is `d + DIGIT_OFFSET`.
pub const DIGIT_OFFSET: u8 = 1;

/// A puzzle or solution as model tokens, row-major.
pub type Tokens = [u8; CELLS];

/// Why a puzzle string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError {
    /// A character that is neither a blank (`.`, `0`) nor a digit `1`..`9`.
    BadChar {
        /// Its index, counted in characters from 0.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The string does not hold exactly [`CELLS`] characters.
    WrongLength {
        /// Characters found.
        len: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadChar { position, ch } => write!(
                f,
                "sudoku: bad character {ch:?} at position {position} (expected '.', '0' or '1'..'9')"
            ),
            ParseError::WrongLength { len } => {
                write!(f, "sudoku: {len} cells, expected {CELLS}")
            }
        }
    }
}

impl core::error::Error for ParseError {}

/// A token that does not stand for a cell (padding or outside the vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenError {
    /// Cell index, row-major.
    pub position: usize,
    /// The token found there.
    pub token: u8,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sudoku: token {} at cell {} is not a blank or a digit",
            self.token, self.position
        )
    }
}

impl core::error::Error for TokenError {}

/// A row, column or 3x3 box, numbered 0..9 (boxes row-major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Unit {
    /// A row.
    Row(u8),
    /// A column.
    Column(u8),
    /// A 3x3 box.
    Box(u8),
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Row(i) => write!(f, "row {i}"),
            Unit::Column(i) => write!(f, "column {i}"),
            Unit::Box(i) => write!(f, "box {i}"),
        }
    }
}

/// The first reason a grid is not a solution of a puzzle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Violation {
    /// A cell of the solution holds a token that is not a digit (blank, padding, out of range).
    NotDigit {
        /// Cell index, row-major.
        position: usize,
        /// The token found there.
        token: u8,
    },
    /// A digit appears twice in a row, column or box.
    Duplicate {
        /// Where.
        unit: Unit,
        /// The repeated digit, 1..=9.
        digit: u8,
    },
    /// The solution changes a given of the puzzle.
    GivenChanged {
        /// Cell index, row-major.
        position: usize,
        /// The puzzle's digit there, 1..=9.
        given: u8,
        /// The solution's token there.
        token: u8,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotDigit { position, token } => {
                write!(f, "cell {position} holds token {token}, not a digit")
            }
            Violation::Duplicate { unit, digit } => write!(f, "digit {digit} repeats in {unit}"),
            Violation::GivenChanged {
                position,
                given,
                token,
            } => write!(
                f,
                "cell {position} changes given {given} to {} (token {token})",
                token_char(*token)
            ),
        }
    }
}

/// The digit 1..=9 of a digit token, `None` for anything else.
pub const fn token_digit(token: u8) -> Option<u8> {
    if token > DIGIT_OFFSET && token <= 9 + DIGIT_OFFSET {
        Some(token - DIGIT_OFFSET)
    } else {
        None
    }
}

/// Parses an 81-character puzzle (`.`/`0` blank, `1`..`9` digits) into tokens.
///
/// Returns the number of givens (non-blank cells). On error `tokens` may be partly written.
pub fn parse_puzzle(s: &str, tokens: &mut Tokens) -> Result<usize, ParseError> {
    let mut len = 0usize;
    let mut givens = 0usize;
    for (position, ch) in s.chars().enumerate() {
        let token = match ch {
            '.' | '0' => BLANK,
            '1'..='9' => {
                givens += 1;
                // The match arm guarantees an ASCII digit 1..=9.
                (ch as u8 - b'0') + DIGIT_OFFSET
            }
            _ => return Err(ParseError::BadChar { position, ch }),
        };
        if let Some(slot) = tokens.get_mut(position) {
            *slot = token;
        }
        len = position + 1;
    }
    if len != CELLS {
        return Err(ParseError::WrongLength { len });
    }
    Ok(givens)
}

/// Converts tokens to digits: 0 for a blank, 1..=9 for a digit. Padding and tokens outside the
/// vocabulary are errors.
pub fn tokens_to_digits(tokens: &Tokens, digits: &mut [u8; CELLS]) -> Result<(), TokenError> {
    for (position, (&token, digit)) in tokens.iter().zip(digits.iter_mut()).enumerate() {
        *digit = match token {
            BLANK => 0,
            t => token_digit(t).ok_or(TokenError { position, token })?,
        };
    }
    Ok(())
}

/// Checks that `solution` fills every cell with a digit, repeats no digit in any row, column or
/// box, and keeps every given of `givens` (a puzzle's tokens; blanks are free).
pub fn check_solution(solution: &Tokens, givens: &Tokens) -> Result<(), Violation> {
    for (position, (&token, &given)) in solution.iter().zip(givens.iter()).enumerate() {
        let Some(digit) = token_digit(token) else {
            return Err(Violation::NotDigit { position, token });
        };
        match token_digit(given) {
            Some(g) if g != digit => {
                return Err(Violation::GivenChanged {
                    position,
                    given: g,
                    token,
                });
            }
            _ => {}
        }
    }
    for i in 0..SIDE {
        let (br, bc) = ((i / 3) * 3, (i % 3) * 3);
        let units = [
            (Unit::Row(i as u8), core::array::from_fn(|k| i * SIDE + k)),
            (
                Unit::Column(i as u8),
                core::array::from_fn(|k| k * SIDE + i),
            ),
            (
                Unit::Box(i as u8),
                core::array::from_fn(|k| (br + k / 3) * SIDE + bc + k % 3),
            ),
        ];
        for (unit, cells) in units {
            let cells: [usize; SIDE] = cells;
            let mut seen = 0u16;
            for c in cells {
                // Every cell was checked to be a digit above.
                let digit = token_digit(solution[c]).unwrap_or(0);
                let bit = 1u16 << digit;
                if seen & bit != 0 {
                    return Err(Violation::Duplicate { unit, digit });
                }
                seen |= bit;
            }
        }
    }
    Ok(())
}

/// True when `solution` is a complete, valid grid that keeps every given of `givens`.
pub fn is_valid_solution(solution: &Tokens, givens: &Tokens) -> bool {
    check_solution(solution, givens).is_ok()
}

/// The character a token prints as: `.` blank, `1`..`9` digits, `?` anything else.
pub const fn token_char(token: u8) -> char {
    match token_digit(token) {
        Some(d) => (b'0' + d) as char,
        None if token == BLANK => '.',
        None => '?',
    }
}

/// Writes the tokens as one 81-character line in the puzzle-string form (no newline).
pub fn write_line<W: fmt::Write>(w: &mut W, tokens: &Tokens) -> fmt::Result {
    for &t in tokens {
        w.write_char(token_char(t))?;
    }
    Ok(())
}

/// Writes the tokens as a 9-line board with box separators, each line ended by `\n`:
///
/// ```text
/// 5 3 . | . 7 . | . . .
/// ...
/// ------+-------+------
/// ```
pub fn write_board<W: fmt::Write>(w: &mut W, tokens: &Tokens) -> fmt::Result {
    for r in 0..SIDE {
        if r == 3 || r == 6 {
            w.write_str("------+-------+------\n")?;
        }
        for c in 0..SIDE {
            if c > 0 {
                w.write_str(if c == 3 || c == 6 { " | " } else { " " })?;
            }
            w.write_char(token_char(tokens[r * SIDE + c]))?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    /// The shared Sudoku-Extreme 1k training split (read at test time, never copied).
    fn train_csv() -> String {
        // The shared folder: `$TRM_SHARED`, else `../shared` beside the repository.
        let shared = std::env::var("TRM_SHARED")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| std::format!("{}/../../shared", env!("CARGO_MANIFEST_DIR")));
        let path = std::format!("{shared}/data/sudoku-extreme/sudoku-extreme-1k/train.csv");
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {path} ({e}); set TRM_SHARED to the shared folder (the one holding \
                 data/ and reference-fixtures/; by default ../shared beside the repository)"
            )
        })
    }

    /// (question, answer) of the first `n` rows.
    fn rows(n: usize) -> Vec<(String, String)> {
        let csv = train_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().map(str::trim),
            Some("source,question,answer,rating")
        );
        let out: Vec<_> = lines
            .take(n)
            .map(|l| {
                let f: Vec<&str> = l.trim().split(',').collect();
                assert_eq!(f.len(), 4, "row {l:?}");
                (f[1].to_string(), f[2].to_string())
            })
            .collect();
        assert_eq!(out.len(), n);
        out
    }

    fn parse(s: &str) -> Tokens {
        let mut t = [PAD; CELLS];
        parse_puzzle(s, &mut t).expect("parse");
        t
    }

    /// An independent validity check: every row, column and box, as sorted digit lists, is 1..=9.
    fn brute_valid(d: &[u8; CELLS]) -> bool {
        let mut groups: Vec<Vec<u8>> = Vec::new();
        for i in 0..9 {
            groups.push((0..9).map(|k| d[i * 9 + k]).collect());
            groups.push((0..9).map(|k| d[k * 9 + i]).collect());
            groups.push(
                (0..9)
                    .map(|k| d[(i / 3 * 3 + k / 3) * 9 + i % 3 * 3 + k % 3])
                    .collect(),
            );
        }
        groups.into_iter().all(|mut g| {
            g.sort_unstable();
            g == (1..=9).collect::<Vec<u8>>()
        })
    }

    #[test]
    fn dataset_answers_are_valid_and_consistent() {
        for (i, (q, a)) in rows(50).iter().enumerate() {
            let mut qt = [PAD; CELLS];
            let givens = parse_puzzle(q, &mut qt).expect("question");
            assert_eq!(
                givens,
                q.chars()
                    .filter(|c| c.is_ascii_digit() && *c != '0')
                    .count()
            );
            let at = parse(a);
            assert_eq!(check_solution(&at, &qt), Ok(()), "row {i}");
            // Tokens decode back to the characters they came from.
            let mut digits = [0u8; CELLS];
            tokens_to_digits(&at, &mut digits).expect("digits");
            let expect: Vec<u8> = a.bytes().map(|b| b - b'0').collect();
            assert_eq!(&digits[..], &expect[..]);
            assert!(brute_valid(&digits));
            let mut line = String::new();
            write_line(&mut line, &qt).expect("fmt");
            assert_eq!(line, q.replace('0', "."));
        }
    }

    #[test]
    fn corrupting_one_cell_invalidates() {
        for (i, (q, a)) in rows(50).iter().enumerate() {
            let qt = parse(q);
            let at = parse(a);
            // A different cell per row; pick a blank of the puzzle so only the grid rule can fail.
            let blanks: Vec<usize> = (0..CELLS).filter(|&c| qt[c] == BLANK).collect();
            let c = blanks[(i * 7) % blanks.len()];
            for delta in 1..9u8 {
                let mut bad = at;
                let d = token_digit(at[c]).expect("digit");
                bad[c] = (d - 1 + delta) % 9 + 1 + DIGIT_OFFSET;
                assert!(
                    !is_valid_solution(&bad, &qt),
                    "row {i} cell {c} delta {delta}"
                );
                let mut digits = [0u8; CELLS];
                tokens_to_digits(&bad, &mut digits).expect("digits");
                assert!(!brute_valid(&digits));
                assert!(matches!(
                    check_solution(&bad, &qt),
                    Err(Violation::Duplicate { digit, .. }) if digit == token_digit(bad[c]).unwrap()
                ));
            }
            // A given changed into another valid grid's digit is reported as such: check against
            // a puzzle whose given at a blank cell disagrees with the answer.
            let mut q2 = qt;
            let d = token_digit(at[c]).expect("digit");
            q2[c] = d % 9 + 1 + DIGIT_OFFSET;
            assert_eq!(
                check_solution(&at, &q2),
                Err(Violation::GivenChanged {
                    position: c,
                    given: d % 9 + 1,
                    token: at[c]
                })
            );
            // A blank or padding left in the solution is not a solution.
            for t in [BLANK, PAD, 11, 255] {
                let mut bad = at;
                bad[c] = t;
                assert_eq!(
                    check_solution(&bad, &qt),
                    Err(Violation::NotDigit {
                        position: c,
                        token: t
                    })
                );
            }
        }
    }

    #[test]
    fn latin_square_that_breaks_boxes_is_invalid() {
        // Rows are cyclic shifts by one: rows and columns are fine, boxes are not.
        let mut t = [PAD; CELLS];
        for r in 0..9 {
            for c in 0..9 {
                t[r * 9 + c] = ((r + c) % 9) as u8 + 1 + DIGIT_OFFSET;
            }
        }
        let blank = [BLANK; CELLS];
        assert!(matches!(
            check_solution(&t, &blank),
            Err(Violation::Duplicate {
                unit: Unit::Box(0),
                ..
            })
        ));
        // Shifts by three within bands and by one across bands give a valid grid.
        for r in 0..9 {
            for c in 0..9 {
                t[r * 9 + c] = ((r * 3 + r / 3 + c) % 9) as u8 + 1 + DIGIT_OFFSET;
            }
        }
        let mut digits = [0u8; CELLS];
        tokens_to_digits(&t, &mut digits).expect("digits");
        assert!(brute_valid(&digits));
        assert_eq!(check_solution(&t, &blank), Ok(()));
    }

    #[test]
    fn parse_errors_name_position_and_char() {
        let (q, _) = rows(1).remove(0);
        let mut t = [PAD; CELLS];
        for (pos, ch) in [(0usize, 'x'), (40, ' '), (80, 'é'), (17, 'A')] {
            let s: String = q
                .chars()
                .enumerate()
                .map(|(i, c)| if i == pos { ch } else { c })
                .collect();
            assert_eq!(
                parse_puzzle(&s, &mut t),
                Err(ParseError::BadChar { position: pos, ch })
            );
        }
        assert_eq!(
            parse_puzzle(&q[..80], &mut t),
            Err(ParseError::WrongLength { len: 80 })
        );
        let long = std::format!("{q}1");
        assert_eq!(
            parse_puzzle(&long, &mut t),
            Err(ParseError::WrongLength { len: 82 })
        );
        assert_eq!(
            parse_puzzle("", &mut t),
            Err(ParseError::WrongLength { len: 0 })
        );
        // '0' and '.' are both blanks.
        let zeros = q.replace('.', "0");
        assert_eq!(parse(&zeros), parse(&q));
        assert!(
            std::format!(
                "{}",
                ParseError::BadChar {
                    position: 3,
                    ch: 'x'
                }
            )
            .contains("3")
        );
    }

    #[test]
    fn tokens_to_digits_rejects_padding() {
        let (q, _) = rows(1).remove(0);
        let mut t = parse(&q);
        t[5] = PAD;
        let mut d = [0u8; CELLS];
        assert_eq!(
            tokens_to_digits(&t, &mut d),
            Err(TokenError {
                position: 5,
                token: PAD
            })
        );
        t[5] = 11;
        assert_eq!(
            tokens_to_digits(&t, &mut d),
            Err(TokenError {
                position: 5,
                token: 11
            })
        );
    }

    #[test]
    fn board_layout() {
        let (_, a) = rows(1).remove(0);
        let t = parse(&a);
        let mut s = String::new();
        write_board(&mut s, &t).expect("fmt");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[3], "------+-------+------");
        assert_eq!(lines[7], "------+-------+------");
        // Reading the digits back in order gives the answer string.
        let back: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
        assert_eq!(back, a);
        for l in lines.iter().filter(|l| !l.starts_with('-')) {
            assert_eq!(l.len(), 21, "{l:?}");
        }
    }
}
