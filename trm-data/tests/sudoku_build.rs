//! The Sudoku builder against the reference builder's own output, its augmentation (inverse
//! check), options and input validation.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use trm_data::input::BuildError;
use trm_data::layout::{DEFAULT_SET, Split};
use trm_data::sudoku::{
    self, Grid, SudokuOptions, SudokuSource, SudokuTransform, is_valid_solution, read_sudoku_csv,
};

fn sudoku_1k() -> PathBuf {
    common::shared("data/sudoku-extreme/sudoku-extreme-1k")
}

/// Header + the first `n` data lines of `src`, written to `dst`.
fn head_csv(src: &Path, dst: &Path, n: usize) {
    let f = BufReader::new(fs::File::open(src).unwrap());
    let lines: Vec<String> = f.lines().take(n + 1).map(Result::unwrap).collect();
    fs::write(dst, lines.join("\n") + "\n").unwrap();
}

fn source_with(dir: &Path, n: usize) -> SudokuSource {
    head_csv(&sudoku_1k().join("train.csv"), &dir.join("train.csv"), n);
    head_csv(&sudoku_1k().join("test_hard.csv"), &dir.join("test.csv"), n);
    SudokuSource::from_dir(dir)
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_augmentation_is_byte_identical_to_reference_builder() {
    // tests/fixtures/sudoku-ref/out was written by TRM's build_sudoku_dataset.py itself
    // (make_fixture.py) from the same first 20 rows of train.csv / test_hard.csv.
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with(tmp.path(), 20);
    let out = tmp.path().join("out");
    sudoku::build_dataset(&source, &out, &SudokuOptions::default()).unwrap();
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sudoku-ref/out");
    let files = all_files(&reference);
    assert_eq!(files.len(), 13);
    assert_eq!(all_files(&out), files);
    for f in files {
        assert!(
            fs::read(out.join(&f)).unwrap() == fs::read(reference.join(&f)).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

fn tokens_to_grid(t: &[u8]) -> Grid {
    let mut g = [0u8; 81];
    for (c, &v) in g.iter_mut().zip(t) {
        *c = v - 1;
    }
    g
}

#[test]
fn augmentations_map_back_to_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with(tmp.path(), 25);
    let records = read_sudoku_csv(&source.train).unwrap();
    let num_aug = 8;
    let opts = SudokuOptions {
        num_aug,
        seed: 7,
        keep_provenance: true,
        ..Default::default()
    };
    let (train, test) = sudoku::build_dataset(&source, &tmp.path().join("ds"), &opts).unwrap();
    assert_eq!(test.set.num_examples(), 25, "test is never augmented");
    let set = &train.set;
    assert_eq!(set.num_groups(), 25);
    assert_eq!(set.num_examples(), 25 * (1 + num_aug));
    assert_eq!(train.metadata.total_groups, 25);
    // As the reference: one puzzle per example, yet `total_puzzles` is the group count.
    assert_eq!(train.metadata.total_puzzles, 25);
    assert_eq!(set.num_puzzles(), 25 * (1 + num_aug));
    let mut transposed = 0;
    let mut changed = 0;
    assert_eq!(records.len(), set.num_groups());
    for (g, rec) in records.iter().enumerate() {
        let puzzles = set.group_puzzles(g);
        assert_eq!(puzzles.len(), 1 + num_aug);
        for (k, p) in puzzles.enumerate() {
            let ex = set.puzzle_examples(p);
            assert_eq!(ex.len(), 1);
            let e = set.example(ex.start);
            assert_eq!(e.puzzle_identifier, 0);
            let (rec_idx, t) = train.provenance[e.index];
            assert_eq!(rec_idx, g);
            let (q, a) = (tokens_to_grid(e.input), tokens_to_grid(e.label));
            // Independent of the transform: an augmented pair is itself a valid Sudoku whose
            // givens agree with its answer and has as many blanks as the original.
            assert!(is_valid_solution(&a));
            assert!((0..81).all(|i| q[i] == 0 || q[i] == a[i]));
            assert_eq!(
                q.iter().filter(|&&d| d == 0).count(),
                rec.question.iter().filter(|&&d| d == 0).count()
            );
            if k == 0 {
                assert_eq!(t, SudokuTransform::IDENTITY, "the original comes first");
                assert_eq!((q, a), (rec.question, rec.answer));
                continue;
            }
            // The recorded inverse maps the example back onto the original puzzle, and its label
            // onto a valid solution of the original (here: the given answer, which is unique).
            let back_q = t.invert(&q);
            let back_a = t.invert(&a);
            assert_eq!(back_q, rec.question);
            assert!(is_valid_solution(&back_a));
            assert!((0..81).all(|i| rec.question[i] == 0 || rec.question[i] == back_a[i]));
            assert_eq!(back_a, rec.answer);
            assert_eq!(t.digit_map[0], 0, "blank stays blank");
            transposed += usize::from(t.transpose);
            changed += usize::from(a != rec.answer);
        }
    }
    let n = 25 * num_aug;
    assert!(
        changed > n * 9 / 10,
        "augmentations should change the grid ({changed}/{n})"
    );
    assert!(
        transposed > n / 4 && transposed < n * 3 / 4,
        "transpose about half the time ({transposed}/{n})"
    );
}

#[test]
fn transform_permutes_rows_within_bands_only() {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for _ in 0..200 {
        let t = SudokuTransform::random(&mut rng);
        for perm in [t.row_perm, t.col_perm] {
            let mut seen = [false; 9];
            for (i, &r) in perm.iter().enumerate() {
                seen[r as usize] = true;
                // All rows of a new band come from one old band.
                assert_eq!(r / 3, perm[i / 3 * 3] / 3);
            }
            assert!(seen.iter().all(|&s| s));
        }
        let mut digits = t.digit_map[1..].to_vec();
        digits.sort();
        assert_eq!(digits, (1..=9).collect::<Vec<u8>>());
    }
}

#[test]
fn seeded_builds_are_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with(tmp.path(), 12);
    let build = |name: &str, seed: u64| {
        let opts = SudokuOptions {
            num_aug: 3,
            subsample_size: Some(8),
            seed,
            ..Default::default()
        };
        let out = tmp.path().join(name);
        sudoku::build_dataset(&source, &out, &opts).unwrap();
        fs::read(out.join("train/all__inputs.npy")).unwrap()
    };
    assert_eq!(build("a", 1), build("b", 1));
    assert_ne!(build("c", 1), build("d", 2));
}

#[test]
fn subsample_and_min_difficulty() {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with(tmp.path(), 40);
    let records = read_sudoku_csv(&source.train).unwrap();
    let min = 20;
    let hard: Vec<&sudoku::SudokuRecord> = records
        .iter()
        .filter(|r| r.rating.unwrap() >= min)
        .collect();
    assert!(
        !hard.is_empty() && hard.len() < records.len(),
        "fixture rows should straddle the cut"
    );
    let opts = SudokuOptions {
        min_difficulty: Some(min),
        subsample_size: Some(3),
        ..Default::default()
    };
    let out = tmp.path().join("ds");
    sudoku::build_dataset(&source, &out, &opts).unwrap();
    let train = Split::open(&out.join("train")).unwrap();
    let set = train.set(DEFAULT_SET).unwrap();
    assert_eq!(set.num_examples(), 3.min(hard.len()));
    let mut questions: Vec<Grid> = set.examples().map(|e| tokens_to_grid(e.input)).collect();
    for q in &questions {
        assert!(
            hard.iter().any(|r| &r.question == q),
            "subsampled puzzle not among the hard ones"
        );
    }
    questions.dedup();
    assert_eq!(
        questions.len(),
        set.num_examples(),
        "sampled without replacement"
    );
    // The test split is filtered by difficulty but not subsampled.
    let test_records = read_sudoku_csv(&source.test).unwrap();
    let test = Split::open(&out.join("test")).unwrap();
    let want = test_records
        .iter()
        .filter(|r| r.rating.unwrap() >= min)
        .count();
    assert_eq!(test.num_examples(), want);
}

fn expect_error(body: &str, line: u64, field: &str, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.csv");
    let good = fs::read_to_string(sudoku_1k().join("train.csv")).unwrap();
    let mut lines = good.lines();
    let mut f = fs::File::create(&path).unwrap();
    writeln!(f, "{}", lines.next().unwrap()).unwrap();
    writeln!(f, "{}", lines.next().unwrap()).unwrap();
    writeln!(f, "{body}").unwrap();
    drop(f);
    let err = read_sudoku_csv(&path).unwrap_err();
    let msg = err.to_string();
    match &err {
        BuildError::Field {
            line: l, field: fl, ..
        } => {
            assert_eq!((*l, fl.as_str()), (line, field), "{msg}");
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    assert!(msg.contains("bad.csv") && msg.contains(what), "{msg}");
}

#[test]
fn validation_names_file_line_and_field() {
    let good = fs::read_to_string(sudoku_1k().join("train.csv")).unwrap();
    let first: Vec<&str> = good.lines().nth(1).unwrap().split(',').collect();
    let (q, a) = (first[1], first[2]);
    // The pair itself is fine.
    let tmp = tempfile::tempdir().unwrap();
    let ok = tmp.path().join("ok.csv");
    fs::write(&ok, format!("source,question,answer,rating\nx,{q},{a},3\n")).unwrap();
    let recs = read_sudoku_csv(&ok).unwrap();
    assert_eq!((recs.len(), recs[0].rating, recs[0].line), (1, Some(3), 2));

    expect_error(
        &format!("x,{},{a},1", &q[1..]),
        3,
        "question",
        "bad length 80",
    );
    expect_error(
        &format!("x,{}x,{a},1", &q[1..]),
        3,
        "question",
        "bad character 'x'",
    );
    expect_error(
        &format!("x,{q},{}0,1", &a[1..]),
        3,
        "answer",
        "bad character '0'",
    );
    // 80 ASCII characters + one two-byte character: 81 characters, one of them bad.
    expect_error(
        &format!("x,{}é,{a},1", &q[1..]),
        3,
        "question",
        "bad character 'é'",
    );
    // A valid solution (digits relabelled) that contradicts the givens.
    let relabelled: String = a
        .chars()
        .map(|c| {
            if c == '1' {
                '2'
            } else if c == '2' {
                '1'
            } else {
                c
            }
        })
        .collect();
    expect_error(
        &format!("x,{q},{relabelled},1"),
        3,
        "answer",
        "inconsistent with question",
    );
    // First cell repeats the second: a duplicate in row 1.
    let broken = format!("{}{}", &a[1..2], &a[1..]);
    expect_error(
        &format!("x,{},{broken},1", ".".repeat(81)),
        3,
        "answer",
        "not a valid Sudoku solution",
    );
    expect_error(&format!("x,{q},{a},-1"), 3, "rating", "bad rating");
    expect_error(&format!("x,{q},{a},hard"), 3, "rating", "bad rating");
}

#[test]
fn missing_rating_column_is_an_option_error_only_with_min_difficulty() {
    // The decoded TRM 1k CSV has only question,answer.
    let trm = common::shared("data/sudoku-extreme/trm-1k-npy/train.csv");
    let tmp = tempfile::tempdir().unwrap();
    head_csv(&trm, &tmp.path().join("train.csv"), 5);
    head_csv(&trm, &tmp.path().join("test.csv"), 5);
    let source = SudokuSource::from_dir(tmp.path());
    assert!(
        sudoku::build_dataset(&source, &tmp.path().join("a"), &SudokuOptions::default()).is_ok()
    );
    let opts = SudokuOptions {
        min_difficulty: Some(1),
        ..Default::default()
    };
    let err = sudoku::build_dataset(&source, &tmp.path().join("b"), &opts).unwrap_err();
    assert!(matches!(err, BuildError::Options(_)), "{err}");
    assert!(!tmp.path().join("b").exists(), "no partial output");
}

/// The header bytes (magic to newline) of an npy file.
fn npy_header(bytes: &[u8]) -> &[u8] {
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    &bytes[..10 + hlen]
}

/// The header's dict text.
fn npy_dict(bytes: &[u8]) -> &str {
    std::str::from_utf8(&npy_header(bytes)[10..]).unwrap()
}

#[test]
fn augmented_build_has_the_reference_dtypes_shapes_indices_and_metadata() {
    // out-aug2: the reference builder on 3 puzzles with num_aug=2. Its boards are random
    // (unseeded NumPy), everything else is reproducible: int64 tokens, shapes, indices, json.
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with(tmp.path(), 3);
    let out = tmp.path().join("out");
    let opts = SudokuOptions {
        num_aug: 2,
        seed: 9,
        ..Default::default()
    };
    sudoku::build_dataset(&source, &out, &opts).unwrap();
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sudoku-ref/out-aug2");
    let files = all_files(&reference);
    assert_eq!(all_files(&out), files);
    for f in &files {
        let (ours, theirs) = (
            fs::read(out.join(f)).unwrap(),
            fs::read(reference.join(f)).unwrap(),
        );
        let name = f.to_string_lossy();
        if name.starts_with("train")
            && (name.ends_with("inputs.npy") || name.ends_with("labels.npy"))
        {
            assert_eq!(npy_header(&ours), npy_header(&theirs), "{name} header");
            assert!(npy_dict(&ours).contains("'<i8'"));
            assert_eq!(ours.len(), theirs.len(), "{name} size");
        } else {
            assert!(ours == theirs, "{name} differs");
        }
    }
    // The reference's own augmentations obey what ours are tested for: valid Sudokus, givens
    // agreeing with answers, as many blanks as the original (first of the group), which is
    // the CSV row unchanged.
    let records = read_sudoku_csv(&source.train).unwrap();
    let split = Split::open(&reference.join("train")).unwrap();
    let set = split.set(DEFAULT_SET).unwrap();
    for (g, rec) in records.iter().enumerate() {
        let blanks = rec.question.iter().filter(|&&d| d == 0).count();
        for (k, p) in set.group_puzzles(g).enumerate() {
            let e = set.example(set.puzzle_examples(p).start);
            let (q, a) = (tokens_to_grid(e.input), tokens_to_grid(e.label));
            if k == 0 {
                assert_eq!((q, a), (rec.question, rec.answer));
            }
            assert!(is_valid_solution(&a));
            assert!((0..81).all(|i| q[i] == 0 || q[i] == a[i]));
            assert_eq!(q.iter().filter(|&&d| d == 0).count(), blanks);
        }
    }
    // compact_tokens: uint8 files with the same tokens.
    let compact = tmp.path().join("compact");
    sudoku::build_dataset(
        &source,
        &compact,
        &SudokuOptions {
            compact_tokens: true,
            ..opts
        },
    )
    .unwrap();
    let bytes = fs::read(compact.join("train/all__inputs.npy")).unwrap();
    assert!(npy_dict(&bytes).contains("'|u1'"));
    let (a, b) = (
        Split::open(&out.join("train")).unwrap(),
        Split::open(&compact.join("train")).unwrap(),
    );
    let (sa, sb) = (a.set(DEFAULT_SET).unwrap(), b.set(DEFAULT_SET).unwrap());
    assert_eq!((&sa.inputs, &sa.labels), (&sb.inputs, &sb.labels));
    assert_ne!(sa.token_dtype, sb.token_dtype);
}
