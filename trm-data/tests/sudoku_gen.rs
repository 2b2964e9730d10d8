//! The exact solver on published hard puzzles, and the generator's guarantees.

mod common;

use std::fs;

use rand::SeedableRng;
use trm_data::layout::{DEFAULT_SET, Split};
use trm_data::sudoku::{Grid, SudokuOptions, is_valid_solution, read_sudoku_csv};
use trm_data::sudoku_gen::{
    GenError, MAX_BLANKS, SudokuGenerator, count_solutions, generate, generate_dataset, solve,
    solve_unique,
};

fn parse_line(line: &str) -> Grid {
    let mut g = [0u8; 81];
    for (c, b) in g.iter_mut().zip(line.bytes()) {
        *c = if b.is_ascii_digit() { b - b'0' } else { 0 };
    }
    g
}

#[test]
fn solver_finds_the_given_answer_of_test_hard_and_it_is_unique() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fs::read_to_string(common::shared(
        "data/sudoku-extreme/sudoku-extreme-1k/test_hard.csv",
    ))
    .unwrap();
    let head: Vec<&str> = src.lines().take(101).collect();
    let path = tmp.path().join("head.csv");
    fs::write(&path, head.join("\n")).unwrap();
    let records = read_sudoku_csv(&path).unwrap();
    assert_eq!(records.len(), 100);
    for r in &records {
        let (n, first) = count_solutions(&r.question, 2);
        assert_eq!(n, 1, "line {}", r.line);
        assert_eq!(first, Some(r.answer), "line {}", r.line);
        assert_eq!(solve_unique(&r.question), Some(r.answer));
    }
}

#[test]
fn solver_counts_multiple_solutions_and_conflicts() {
    // tdoku's serg benchmark: puzzles with 2 or more solutions (see its PROVENANCE.md).
    let text =
        fs::read_to_string(common::shared("data/sudoku-hard/puzzles7_serg_benchmark")).unwrap();
    let puzzles: Vec<Grid> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 81 && !l.starts_with('#'))
        .take(20)
        .map(parse_line)
        .collect();
    assert_eq!(puzzles.len(), 20);
    for p in &puzzles {
        assert_eq!(count_solutions(p, 2).0, 2);
        let s = solve(p).unwrap();
        assert!(is_valid_solution(&s));
        assert!((0..81).all(|i| p[i] == 0 || p[i] == s[i]));
        assert_eq!(solve_unique(p), None);
    }
    // Empty grid: many solutions; the count stops at the limit.
    assert_eq!(count_solutions(&[0; 81], 5).0, 5);
    // Two equal givens in a row: no solution.
    let mut bad = [0u8; 81];
    bad[0] = 4;
    bad[8] = 4;
    assert_eq!(count_solutions(&bad, 2), (0, None));
    bad[8] = 10;
    assert_eq!(count_solutions(&bad, 2), (0, None));
}

#[test]
fn generated_puzzles_have_the_requested_blanks_and_a_unique_solution() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for blanks in [0, 8, 30, 45, 55] {
        for _ in 0..3 {
            let g = generate(&mut rng, blanks).unwrap();
            assert_eq!(g.puzzle.iter().filter(|&&d| d == 0).count(), blanks);
            assert!(is_valid_solution(&g.solution));
            assert!((0..81).all(|i| g.puzzle[i] == 0 || g.puzzle[i] == g.solution[i]));
            assert_eq!(count_solutions(&g.puzzle, 2), (1, Some(g.solution)));
        }
    }
    assert_eq!(
        generate(&mut rng, MAX_BLANKS + 1),
        Err(GenError::TooManyBlanks(MAX_BLANKS + 1))
    );
}

#[test]
fn generator_is_seeded() {
    let a = SudokuGenerator::new(5, 40).unwrap().records(3).unwrap();
    let b = SudokuGenerator::new(5, 40).unwrap().records(3).unwrap();
    let c = SudokuGenerator::new(6, 40).unwrap().records(3).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a[0], a[1]);
}

#[test]
fn generated_dataset_is_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gen");
    let opts = SudokuOptions {
        num_aug: 2,
        seed: 3,
        ..Default::default()
    };
    generate_dataset(&out, 10, 4, 8, &opts).unwrap();
    let train = Split::open(&out.join("train")).unwrap();
    let test = Split::open(&out.join("test")).unwrap();
    assert_eq!(train.num_examples(), 30);
    assert_eq!(test.num_examples(), 4);
    for e in train.set(DEFAULT_SET).unwrap().examples() {
        assert_eq!(
            e.input.iter().filter(|&&t| t == 1).count(),
            8,
            "8 blanks (token 1)"
        );
    }
}
