//! `build-dataset` (this crate's binary; `trm-train build-dataset` is the same command), run as
//! users run it: the built binary in a subprocess.
//!
//! The outputs are read back with a small `.npy` reader of this file (not trm-data's) and
//! checked against the inputs the tests write or read themselves: shapes and dtypes, the
//! group/puzzle indices, tokens of original examples, validity of augmented Sudokus, the set of
//! dihedral images of a maze. The Maze and ARC tests use the shared data folder (`$TRM_SHARED`,
//! else `<workspace>/../shared`) and fail, saying so, when it is absent.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

fn build_dataset(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_build-dataset"))
        .args(args)
        .output();
    match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run build-dataset {args:?}: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `build-dataset <args>`, asserts success, returns stdout.
fn build_ok(args: &[&str]) -> String {
    let out = build_dataset(args);
    assert!(
        out.status.success(),
        "build-dataset {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `build-dataset <args>`, asserts failure with `code`, returns stderr.
fn build_fails(args: &[&str], code: i32) -> String {
    let out = build_dataset(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "build-dataset {args:?}: expected exit code {code}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

// ---------------------------------------------------------------------------------------------
// Reading the output (independent of trm-data)
// ---------------------------------------------------------------------------------------------

/// A `.npy` array with integer elements widened to i64.
#[derive(Debug)]
struct Npy {
    descr: String,
    shape: Vec<usize>,
    data: Vec<i64>,
}

impl Npy {
    fn row(&self, i: usize) -> &[i64] {
        let w = self.shape[1];
        &self.data[i * w..(i + 1) * w]
    }
}

fn read_npy(path: &Path) -> Result<Npy, Box<dyn std::error::Error>> {
    let bytes = fs::read(path)?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not a .npy file", path.display()).into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len])?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(key)
            .ok_or_else(|| format!("{}: no {key} in {header}", path.display()))?;
        Ok(&header[at + key.len()..])
    };
    let descr = field("'descr': '")?
        .split('\'')
        .next()
        .unwrap_or_default()
        .to_string();
    if !field("'fortran_order': ")?.starts_with("False") {
        return Err(format!("{}: Fortran order", path.display()).into());
    }
    let shape_text = field("'shape': (")?.split(')').next().unwrap_or_default();
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::parse::<usize>)
        .collect::<Result<Vec<_>, _>>()?;
    let body = &bytes[start + header_len..];
    let data: Vec<i64> = match descr.as_str() {
        "|u1" => body.iter().map(|&b| i64::from(b)).collect(),
        "<i4" => body
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        "<i8" => body
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        other => return Err(format!("{}: unexpected dtype {other}", path.display()).into()),
    };
    if data.len() != shape.iter().product::<usize>() {
        return Err(format!(
            "{}: {} elements for shape {shape:?}",
            path.display(),
            data.len()
        )
        .into());
    }
    Ok(Npy { descr, shape, data })
}

/// The five arrays of set `all` of a split.
struct SplitArrays {
    inputs: Npy,
    labels: Npy,
    puzzle_identifiers: Npy,
    puzzle_indices: Npy,
    group_indices: Npy,
}

fn read_split(dir: &Path) -> Result<SplitArrays, Box<dyn std::error::Error>> {
    let f = |field: &str| read_npy(&dir.join(format!("all__{field}.npy")));
    Ok(SplitArrays {
        inputs: f("inputs")?,
        labels: f("labels")?,
        puzzle_identifiers: f("puzzle_identifiers")?,
        puzzle_indices: f("puzzle_indices")?,
        group_indices: f("group_indices")?,
    })
}

fn read_json(path: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(serde_json::from_str(&fs::read_to_string(path)?)?)
}

/// `0, step, 2*step, ..., n*step`.
fn arithmetic(n: usize, step: usize) -> Vec<i64> {
    (0..=n).map(|k| (k * step) as i64).collect()
}

// ---------------------------------------------------------------------------------------------
// Sudoku helpers (independent of trm-data)
// ---------------------------------------------------------------------------------------------

/// Whether the cells `cells` of `digits` hold 1..=9 once each.
fn unit_ok(digits: &[i64], cells: impl Iterator<Item = usize>) -> bool {
    let mut seen = [false; 10];
    let mut count = 0;
    for i in cells {
        let d = digits[i];
        if !(1..=9).contains(&d) || std::mem::replace(&mut seen[d as usize], true) {
            return false;
        }
        count += 1;
    }
    count == 9
}

/// Whether `digits` (81 values 1..=9, row-major) is a solved Sudoku.
fn is_solution(digits: &[i64]) -> bool {
    digits.len() == 81
        && (0..9).all(|r| unit_ok(digits, (0..9).map(|c| r * 9 + c)))
        && (0..9).all(|c| unit_ok(digits, (0..9).map(|r| r * 9 + c)))
        && (0..9).all(|b| {
            unit_ok(
                digits,
                (0..9).map(|k| (b / 3 * 3 + k / 3) * 9 + b % 3 * 3 + k % 3),
            )
        })
}

/// A Sudoku token row (0 pad, 1 blank, d + 1 digit) -> digits (0 for blank and pad).
fn digits_of(tokens: &[i64]) -> Vec<i64> {
    tokens.iter().map(|&t| (t - 1).max(0)).collect()
}

/// Checks one (input, label) Sudoku example: the label is a solution, every given of the input
/// agrees with it; returns the number of blanks.
fn check_sudoku_example(input: &[i64], label: &[i64]) -> usize {
    assert!(
        is_solution(&digits_of(label)),
        "label is not a solution: {label:?}"
    );
    assert!(
        input.iter().all(|&t| (1..=10).contains(&t)),
        "input tokens outside 1..=10: {input:?}"
    );
    let mut blanks = 0;
    for (&i, &l) in input.iter().zip(label) {
        if i == 1 {
            blanks += 1;
        } else {
            assert_eq!(i, l, "a given disagrees with the label");
        }
    }
    blanks
}

/// Solved grid number `k`: the classic shifted pattern with its digits relabelled by `k`.
fn solution(k: usize) -> String {
    (0..81)
        .map(|i| {
            let (r, c) = (i / 9, i % 9);
            let d = (r * 3 + r / 3 + c + k) % 9 + 1;
            char::from(b'0' + d as u8)
        })
        .collect()
}

/// `solution(k)` with every third cell (shifted by `k`) blanked, as `.`, or as `0` in row 0.
fn question(k: usize) -> String {
    solution(k)
        .chars()
        .enumerate()
        .map(|(i, ch)| match ((i + k) % 3, i < 9) {
            (0, true) => '0',
            (0, false) => '.',
            _ => ch,
        })
        .collect()
}

/// Tokens of a CSV question or answer: `.`/`0` -> 1, digit d -> d + 1.
fn sudoku_tokens(text: &str) -> Vec<i64> {
    text.bytes()
        .map(|b| match b {
            b'.' | b'0' => 1,
            d => i64::from(d - b'0') + 1,
        })
        .collect()
}

fn write_sudoku_csv(path: &Path, puzzles: &[usize]) -> std::io::Result<()> {
    let mut csv = String::from("source,question,answer,rating\n");
    for &k in puzzles {
        csv.push_str(&format!("test,{},{},{k}\n", question(k), solution(k)));
    }
    fs::write(path, csv)
}

// ---------------------------------------------------------------------------------------------
// Sudoku
// ---------------------------------------------------------------------------------------------

#[test]
fn sudoku_generate_writes_reference_metadata_and_valid_puzzles() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("gen");
    let (n_train, n_test, blanks) = (6, 4, 30);
    let run = |out: &Path, seed: &str| {
        let (train, test, k) = (n_train.to_string(), n_test.to_string(), blanks.to_string());
        build_ok(&[
            "sudoku-generate",
            "--output-dir",
            s(out),
            "--train",
            &train,
            "--test",
            &test,
            "--blanks",
            &k,
            "--seed",
            seed,
            "--no-progress",
        ])
    };
    let stdout = run(&out, "11");
    assert!(
        stdout.contains(&format!("train {n_train} examples in {n_train} groups")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("test {n_test} examples in {n_test} groups")),
        "{stdout}"
    );

    assert_eq!(
        read_json(&out.join("identifiers.json"))?,
        serde_json::json!(["<blank>"])
    );
    // pad + blank + the nine digits.
    let vocab = 1 + 1 + 9;
    for (split, n) in [("train", n_train), ("test", n_test)] {
        let meta = read_json(&out.join(split).join("dataset.json"))?;
        let expected = serde_json::json!({
            "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0,
            "vocab_size": vocab, "seq_len": 81, "num_puzzle_identifiers": 1,
            "total_groups": n, "mean_puzzle_examples": 1.0, "total_puzzles": n,
            "sets": ["all"],
        });
        assert_eq!(meta, expected, "{split}/dataset.json");
        let a = read_split(&out.join(split))?;
        assert_eq!(
            (a.inputs.descr.as_str(), &a.inputs.shape[..]),
            ("|u1", &[n, 81][..])
        );
        assert_eq!(a.labels.shape, [n, 81]);
        assert_eq!(a.puzzle_identifiers.data, vec![0; n]);
        assert_eq!(a.puzzle_indices.data, arithmetic(n, 1));
        assert_eq!(a.group_indices.data, arithmetic(n, 1));
        for i in 0..n {
            assert_eq!(
                check_sudoku_example(a.inputs.row(i), a.labels.row(i)),
                blanks
            );
        }
    }

    // The seed decides everything: the same seed gives the same bytes, another one other puzzles.
    let again = tmp.path().join("again");
    let other = tmp.path().join("other");
    run(&again, "11");
    run(&other, "12");
    for file in [
        "train/all__inputs.npy",
        "test/all__labels.npy",
        "train/dataset.json",
    ] {
        assert_eq!(
            fs::read(out.join(file))?,
            fs::read(again.join(file))?,
            "{file}"
        );
    }
    assert_ne!(
        fs::read(out.join("train/all__inputs.npy"))?,
        fs::read(other.join("train/all__inputs.npy"))?
    );
    Ok(())
}

#[test]
fn sudoku_csv_with_augmentation_has_reference_shapes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (train, test) = (tmp.path().join("train.csv"), tmp.path().join("test.csv"));
    let train_puzzles = [0, 1, 2];
    let test_puzzles = [3, 4];
    write_sudoku_csv(&train, &train_puzzles)?;
    write_sudoku_csv(&test, &test_puzzles)?;
    let num_aug = 2;
    let group = num_aug + 1;
    let build = |out: &Path, extra: &[&str]| {
        let mut a = vec!["sudoku", "--train-csv", s(&train), "--test-csv", s(&test)];
        a.extend(["--output-dir", s(out), "--num-aug", "2", "--seed", "5"]);
        a.extend_from_slice(extra);
        build_ok(&a)
    };
    let out = tmp.path().join("sudoku-aug");
    let stdout = build(&out, &[]);
    let n = train_puzzles.len();
    assert!(
        stdout.contains(&format!("train {} examples in {n} groups", n * group)),
        "{stdout}"
    );

    let a = read_split(&out.join("train"))?;
    // The reference's digit permutation is int64, so its augmented arrays are int64.
    assert_eq!(a.inputs.descr, "<i8");
    assert_eq!(a.labels.descr, "<i8");
    assert_eq!(a.inputs.shape, [n * group, 81]);
    assert_eq!(a.labels.shape, [n * group, 81]);
    assert_eq!(
        (
            a.puzzle_identifiers.descr.as_str(),
            &a.puzzle_identifiers.shape[..]
        ),
        ("<i4", &[n * group][..])
    );
    assert!(a.puzzle_identifiers.data.iter().all(|&id| id == 0));
    assert_eq!(a.puzzle_indices.data, arithmetic(n * group, 1));
    assert_eq!(a.group_indices.descr, "<i4");
    assert_eq!(a.group_indices.data, arithmetic(n, group));
    for (g, &k) in train_puzzles.iter().enumerate() {
        // Each group starts with the CSV puzzle itself, in file order.
        let first = g * group;
        assert_eq!(a.inputs.row(first), sudoku_tokens(&question(k)));
        assert_eq!(a.labels.row(first), sudoku_tokens(&solution(k)));
        let blanks = question(k)
            .bytes()
            .filter(|&b| b == b'.' || b == b'0')
            .count();
        // Then its augmentations: valid, as many blanks, and not all equal to the original.
        let mut distinct = BTreeSet::new();
        for e in first..first + group {
            assert_eq!(
                check_sudoku_example(a.inputs.row(e), a.labels.row(e)),
                blanks
            );
            distinct.insert(a.labels.row(e).to_vec());
        }
        assert!(
            distinct.len() > 1,
            "group {g}: augmentations equal to the original"
        );
    }
    let meta = read_json(&out.join("train/dataset.json"))?;
    assert_eq!(meta["total_groups"], n);
    assert_eq!(meta["seq_len"], 81);

    let t = read_split(&out.join("test"))?;
    assert_eq!(t.inputs.descr, "|u1", "test is never augmented: uint8");
    assert_eq!(t.inputs.shape, [test_puzzles.len(), 81]);
    assert_eq!(t.group_indices.data, arithmetic(test_puzzles.len(), 1));
    for (i, &k) in test_puzzles.iter().enumerate() {
        assert_eq!(t.inputs.row(i), sudoku_tokens(&question(k)));
        assert_eq!(t.labels.row(i), sudoku_tokens(&solution(k)));
    }

    // --compact-tokens changes the storage only.
    let compact = tmp.path().join("sudoku-compact");
    build(&compact, &["--compact-tokens"]);
    let c = read_split(&compact.join("train"))?;
    assert_eq!(c.inputs.descr, "|u1");
    assert_eq!(c.inputs.shape, a.inputs.shape);
    assert_eq!(c.inputs.data, a.inputs.data);
    assert_eq!(c.labels.data, a.labels.data);
    Ok(())
}

#[test]
fn malformed_csv_fails_with_file_and_line_and_writes_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("csv");
    fs::create_dir(&data)?;
    write_sudoku_csv(&data.join("test.csv"), &[3])?;
    // Line 1 is the header; the puzzle on line 3 has 80 cells.
    let mut bad = String::from("source,question,answer,rating\n");
    bad.push_str(&format!("ok,{},{},1\n", question(0), solution(0)));
    bad.push_str(&format!("short,{},{},1\n", &question(1)[1..], solution(1)));
    bad.push_str(&format!("ok,{},{},1\n", question(2), solution(2)));
    fs::write(data.join("train.csv"), bad)?;

    let out_parent = tmp.path().join("out");
    fs::create_dir(&out_parent)?;
    let out = out_parent.join("sudoku");
    let stderr = build_fails(
        &[
            "sudoku",
            "--input-dir",
            s(&data),
            "--output-dir",
            s(&out),
            "--num-aug",
            "2",
        ],
        1,
    );
    assert!(stderr.contains("train.csv:3"), "no file:line in: {stderr}");
    assert!(stderr.contains("question"), "no field in: {stderr}");
    assert!(!out.exists(), "a failed build left {}", out.display());
    let left: Vec<_> = fs::read_dir(&out_parent)?.collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "a failed build left {left:?}");

    // An answer that does not solve its question fails too (line 2 of test.csv).
    let mut wrong = solution(3).into_bytes();
    wrong.swap(0, 1);
    fs::write(
        data.join("test.csv"),
        format!(
            "source,question,answer,rating\nx,{},{},1\n",
            question(3),
            String::from_utf8(wrong)?
        ),
    )?;
    write_sudoku_csv(&data.join("train.csv"), &[0])?;
    let stderr = build_fails(
        &["sudoku", "--input-dir", s(&data), "--output-dir", s(&out)],
        1,
    );
    assert!(stderr.contains("test.csv:2"), "no file:line in: {stderr}");
    assert!(!out.exists());
    Ok(())
}

#[test]
fn usage_errors_and_existing_output() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("csv");
    fs::create_dir(&data)?;
    write_sudoku_csv(&data.join("train.csv"), &[0, 1])?;
    write_sudoku_csv(&data.join("test.csv"), &[2])?;
    let out = tmp.path().join("out");

    // clap validation: exit code 2, nothing written.
    let e = build_fails(
        &[
            "sudoku",
            "--train-csv",
            s(&data.join("train.csv")),
            "--output-dir",
            s(&out),
        ],
        2,
    );
    assert!(e.contains("--test-csv"), "{e}");
    let e = build_fails(
        &[
            "sudoku",
            "--input-dir",
            s(&data),
            "--train-csv",
            "x.csv",
            "--test-csv",
            "y.csv",
            "--output-dir",
            s(&out),
        ],
        2,
    );
    assert!(e.contains("cannot be used with"), "{e}");
    let e = build_fails(
        &[
            "sudoku-generate",
            "--output-dir",
            s(&out),
            "--train",
            "2",
            "--test",
            "1",
            "--blanks",
            "65",
        ],
        2,
    );
    assert!(e.contains("at most 64"), "{e}");
    let e = build_fails(
        &[
            "maze",
            "--input-dir",
            s(&data),
            "--output-dir",
            s(&out),
            "--subsample-size",
            "0",
        ],
        2,
    );
    assert!(e.contains("at least 1"), "{e}");
    assert!(!out.exists());

    // An existing output is kept unless --overwrite.
    build_ok(&["sudoku", "--input-dir", s(&data), "--output-dir", s(&out)]);
    let before = fs::read(out.join("train/all__inputs.npy"))?;
    assert_eq!(read_npy(&out.join("train/all__inputs.npy"))?.shape, [2, 81]);
    write_sudoku_csv(&data.join("train.csv"), &[0, 1, 2, 3])?;
    let e = build_fails(
        &["sudoku", "--input-dir", s(&data), "--output-dir", s(&out)],
        1,
    );
    assert!(
        e.contains("already exists") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(fs::read(out.join("train/all__inputs.npy"))?, before);
    build_ok(&[
        "sudoku",
        "--input-dir",
        s(&data),
        "--output-dir",
        s(&out),
        "--overwrite",
    ]);
    assert_eq!(read_npy(&out.join("train/all__inputs.npy"))?.shape, [4, 81]);

    // --overwrite never deletes the inputs.
    let inside = out.join("inputs");
    fs::create_dir(&inside)?;
    fs::copy(data.join("train.csv"), inside.join("train.csv"))?;
    fs::copy(data.join("test.csv"), inside.join("test.csv"))?;
    let e = build_fails(
        &[
            "sudoku",
            "--input-dir",
            s(&inside),
            "--output-dir",
            s(&out),
            "--overwrite",
        ],
        1,
    );
    assert!(e.contains("would delete"), "{e}");
    assert!(inside.join("train.csv").exists());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Maze (shared data)
// ---------------------------------------------------------------------------------------------

#[test]
fn maze_from_shared_data_with_dihedral_augmentation() -> TestResult {
    let train_src = common::shared("data/maze-hard/train.csv");
    let test_src = common::shared("data/maze-hard/test.csv");
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("maze");
    fs::create_dir(&data)?;
    // The header and the first mazes of each file.
    let (n_train, n_test) = (12, 5);
    let mut mazes = HashMap::new();
    for (src, name, rows) in [
        (&train_src, "train.csv", n_train),
        (&test_src, "test.csv", n_test),
    ] {
        let text = fs::read_to_string(src)?;
        let lines: Vec<&str> = text.lines().take(rows + 1).collect();
        fs::write(data.join(name), lines.join("\n") + "\n")?;
        // Fields are quoted and hold only "# SGo".
        let header: Vec<&str> = lines[0].split(',').map(|h| h.trim_matches('"')).collect();
        let col = |c: &str| header.iter().position(|h| *h == c).expect("column");
        let (q, a) = (col("question"), col("answer"));
        let parsed: Vec<(String, String)> = lines[1..]
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(',').map(|x| x.trim_matches('"')).collect();
                (f[q].to_string(), f[a].to_string())
            })
            .collect();
        mazes.insert(name, parsed);
    }
    let tokens = |m: &str| -> Vec<i64> {
        m.bytes()
            .map(|b| "# SGo".bytes().position(|c| c == b).expect("maze char") as i64 + 1)
            .collect()
    };
    let side = (mazes["train.csv"][0].0.len() as f64).sqrt() as usize;
    assert_eq!(side * side, mazes["train.csv"][0].0.len());

    let out = tmp.path().join("maze-out");
    let stdout = build_ok(&[
        "maze",
        "--input-dir",
        s(&data),
        "--output-dir",
        s(&out),
        "--aug",
        "--no-progress",
    ]);
    assert!(
        stdout.contains(&format!(
            "train {} examples in {n_train} groups",
            8 * n_train
        )),
        "{stdout}"
    );

    let meta = read_json(&out.join("train/dataset.json"))?;
    assert_eq!(meta["seq_len"], side * side);
    assert_eq!(meta["vocab_size"], 1 + "# SGo".len());
    assert_eq!(meta["total_groups"], n_train);
    let a = read_split(&out.join("train"))?;
    assert_eq!(
        (a.inputs.descr.as_str(), &a.inputs.shape[..]),
        ("|u1", &[8 * n_train, side * side][..])
    );
    assert_eq!(a.labels.shape, a.inputs.shape);
    assert_eq!(a.group_indices.data, arithmetic(n_train, 8));
    assert_eq!(a.puzzle_indices.data, arithmetic(8 * n_train, 1));
    for (g, (q, ans)) in mazes["train.csv"].iter().enumerate() {
        let (q, ans) = (tokens(q), tokens(ans));
        assert_eq!(a.inputs.row(8 * g), q, "maze {g} is not first in its group");
        assert_eq!(a.labels.row(8 * g), ans);
        // The group holds the 8 dihedral images of the maze, each label transformed as its
        // input.
        let q_images = dihedral_images(&q, side);
        let a_images = dihedral_images(&ans, side);
        let members: BTreeSet<&[i64]> = (8 * g..8 * g + 8).map(|e| a.inputs.row(e)).collect();
        let images: BTreeSet<&[i64]> = q_images.iter().map(Vec::as_slice).collect();
        assert_eq!(members, images, "maze {g}");
        for e in 8 * g..8 * g + 8 {
            let k = q_images
                .iter()
                .position(|img| img.as_slice() == a.inputs.row(e))
                .ok_or("not an image")?;
            assert_eq!(a_images[k], a.labels.row(e), "maze {g} example {e}");
        }
    }
    let t = read_split(&out.join("test"))?;
    assert_eq!(t.inputs.shape, [n_test, side * side]);
    for (i, (q, ans)) in mazes["test.csv"].iter().enumerate() {
        assert_eq!(t.inputs.row(i), tokens(q));
        assert_eq!(t.labels.row(i), tokens(ans));
    }
    Ok(())
}

#[test]
fn maze_without_augmentation_equals_the_reference_build() -> TestResult {
    // npy/ holds the arrays TRM's own build_maze_dataset.py made from these mazes (see the
    // folder's PROVENANCE.md); without --aug or subsampling the build is deterministic.
    let csv_dir = common::shared("data/maze-hard");
    let reference = common::shared("data/maze-hard/npy");
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("maze");
    build_ok(&[
        "maze",
        "--input-dir",
        s(&csv_dir),
        "--output-dir",
        s(&out),
        "--no-progress",
    ]);
    for split in ["train", "test"] {
        for field in [
            "inputs",
            "labels",
            "puzzle_identifiers",
            "puzzle_indices",
            "group_indices",
        ] {
            let file = format!("{split}/all__{field}.npy");
            assert!(
                fs::read(out.join(&file))? == fs::read(reference.join(&file))?,
                "{file} differs from the reference build"
            );
        }
        // Same values; the key order of that build's dataset.json is not the reference's
        // current common.py order, so compare parsed.
        let file = format!("{split}/dataset.json");
        assert_eq!(
            read_json(&out.join(&file))?,
            read_json(&reference.join(&file))?,
            "{file}"
        );
    }
    assert_eq!(
        read_json(&out.join("identifiers.json"))?,
        read_json(&reference.join("identifiers.json"))?
    );
    Ok(())
}

/// The 8 images of an n x n grid under the dihedral group, computed directly: the four
/// rotations, then the four rotations of the mirror image.
fn dihedral_images(grid: &[i64], n: usize) -> Vec<Vec<i64>> {
    // out[i][j] = g[n-1-j][i] (a quarter turn) and out[i][j] = g[i][n-1-j] (a mirror).
    let rot =
        |g: &[i64]| -> Vec<i64> { (0..n * n).map(|k| g[(n - 1 - k % n) * n + k / n]).collect() };
    let mirror =
        |g: &[i64]| -> Vec<i64> { (0..n * n).map(|k| g[(k / n) * n + n - 1 - k % n]).collect() };
    let mut out = Vec::new();
    for start in [grid.to_vec(), mirror(grid)] {
        let mut g = start;
        for _ in 0..4 {
            let next = rot(&g);
            out.push(g);
            g = next;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// ARC (shared data)
// ---------------------------------------------------------------------------------------------

/// Counts of one ARC task read from the challenges JSON.
struct TaskCounts {
    subset: &'static str,
    train: usize,
    test: usize,
    /// The first test input grid.
    first_test_input: Vec<Vec<i64>>,
}

#[test]
fn arc1_with_one_augmentation_matches_its_inputs() -> TestResult {
    let arc_dir = common::shared("data/arc");
    let prefix = arc_dir.join("arc-agi");
    let subsets = ["training", "evaluation", "concept"];
    let mut tasks: HashMap<String, TaskCounts> = HashMap::new();
    for subset in subsets {
        let path = common::shared(&format!("data/arc/arc-agi_{subset}_challenges.json"));
        let json = read_json(&path)?;
        for (id, task) in json.as_object().ok_or("challenges: not an object")? {
            let grid: Vec<Vec<i64>> = serde_json::from_value(task["test"][0]["input"].clone())?;
            let counts = TaskCounts {
                subset,
                train: task["train"].as_array().map_or(0, Vec::len),
                test: task["test"].as_array().map_or(0, Vec::len),
                first_test_input: grid,
            };
            assert!(
                tasks.insert(id.clone(), counts).is_none(),
                "task {id} in two subsets"
            );
        }
    }
    let n_eval = tasks.values().filter(|t| t.subset == "evaluation").count();

    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("arc1");
    let started = std::time::Instant::now();
    let mut args = vec![
        "arc",
        "--input-file-prefix",
        s(&prefix),
        "--output-dir",
        s(&out),
        "--subsets",
    ];
    args.extend(subsets);
    args.extend(["--test-set-name", "evaluation", "--num-aug", "1"]);
    let stdout = build_ok(&args);
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        seconds < 10.0,
        "ARC-AGI-1 with 1 augmentation took {seconds:.1} s"
    );
    assert!(
        stdout.contains(&format!("{} tasks", tasks.len())),
        "{stdout}"
    );

    let identifiers: Vec<String> =
        serde_json::from_value(read_json(&out.join("identifiers.json"))?)?;
    assert_eq!(identifiers[0], "<blank>");
    let test_puzzles = read_json(&out.join("test_puzzles.json"))?;
    let test_ids: BTreeSet<&String> = test_puzzles
        .as_object()
        .ok_or("not an object")?
        .keys()
        .collect();
    let eval_ids: BTreeSet<&String> = tasks
        .iter()
        .filter(|(_, t)| t.subset == "evaluation")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(test_ids, eval_ids);

    for (split, groups) in [("train", tasks.len()), ("test", n_eval)] {
        let meta = read_json(&out.join(split).join("dataset.json"))?;
        assert_eq!(meta["total_groups"], groups, "{split}");
        assert_eq!(meta["num_puzzle_identifiers"], identifiers.len(), "{split}");
        assert_eq!(
            (meta["seq_len"].as_u64(), meta["vocab_size"].as_u64()),
            (Some(900), Some(12))
        );
        let a = read_split(&out.join(split))?;
        assert_eq!(a.inputs.descr, "|u1");
        assert_eq!(a.inputs.shape[1], 900);
        let gi = &a.group_indices.data;
        let pi = &a.puzzle_indices.data;
        assert_eq!(gi.len(), groups + 1);
        assert_eq!(pi.len(), a.puzzle_identifiers.data.len() + 1);
        assert_eq!(*pi.last().ok_or("empty")? as usize, a.inputs.shape[0]);
        for g in 0..groups {
            let puzzles = gi[g] as usize..gi[g + 1] as usize;
            // The original and at most one augmentation, all of one task.
            assert!(
                (1..=2).contains(&puzzles.len()),
                "{split} group {g}: {} puzzles",
                puzzles.len()
            );
            let names: Vec<&str> = puzzles
                .clone()
                .map(|p| identifiers[a.puzzle_identifiers.data[p] as usize].as_str())
                .collect();
            let base = names[0];
            assert!(
                !base.contains("|||"),
                "{split} group {g} starts with {base}"
            );
            let task = &tasks[base];
            for (p, name) in puzzles.zip(&names) {
                assert_eq!(name.split("|||").next(), Some(base));
                let expected = match (split, task.subset) {
                    ("test", _) => task.test,
                    (_, "evaluation") => task.train,
                    _ => task.train + task.test,
                };
                assert_eq!(
                    (pi[p + 1] - pi[p]) as usize,
                    expected,
                    "{split} puzzle {name}"
                );
            }
            if split == "test" {
                // The test split is not translated: the first test input sits at the top left,
                // colour c as token c + 2.
                let row = a.inputs.row(pi[gi[g] as usize] as usize);
                for (r, cells) in task.first_test_input.iter().enumerate() {
                    for (c, &colour) in cells.iter().enumerate() {
                        assert_eq!(row[r * 30 + c], colour + 2, "{base} test input ({r},{c})");
                    }
                }
            }
        }
        if split == "train" {
            // The train split holds every puzzle, each named once.
            let ids: BTreeSet<i64> = a.puzzle_identifiers.data.iter().copied().collect();
            assert_eq!(ids.len(), a.puzzle_identifiers.data.len());
            assert_eq!(ids.len() + 1, identifiers.len());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Leftovers of killed builds
// ---------------------------------------------------------------------------------------------

/// The pid of a process that has exited and been reaped (no process runs under it now, unless
/// the system reuses it within the test).
fn dead_pid() -> Result<u32, Box<dyn std::error::Error>> {
    let mut child = Command::new("true").spawn()?;
    let pid = child.id();
    child.wait()?;
    Ok(pid)
}

/// A temporary directory as a build killed with SIGKILL leaves it: named after the build's pid,
/// with a partial split inside.
fn leftover(dir: &Path, pid: u32) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let tmp = dir.join(format!(".gen.tmp-{pid}-0"));
    fs::create_dir_all(tmp.join("train"))?;
    fs::write(tmp.join("train/all__inputs.npy"), b"\x93NUMPY partial")?;
    Ok(tmp)
}

#[test]
fn a_killed_builds_temporary_is_removed_by_the_next_build() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("gen");
    let dead = leftover(tmp.path(), dead_pid()?)?;
    // A build still running (a live process) keeps its temporary directory.
    let mut running = Command::new("sleep").arg("600").spawn()?;
    let live = leftover(tmp.path(), running.id())?;
    // Another dataset's temporary directory is not this build's business.
    let other = tmp.path().join(format!(".other.tmp-{}-0", dead_pid()?));
    fs::create_dir(&other)?;

    let result = build_dataset(&[
        "sudoku-generate",
        "--output-dir",
        s(&out),
        "--train",
        "3",
        "--test",
        "2",
        "--blanks",
        "10",
        "--no-progress",
    ]);
    let live_kept = live.is_dir();
    running.kill()?;
    running.wait()?;
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stderr = text(&result.stderr);
    assert!(!dead.exists(), "the dead build's leftover is still there");
    assert!(
        stderr.contains(&format!("removed {}", dead.display())) && stderr.contains("killed"),
        "not reported: {stderr}"
    );
    assert!(live_kept, "a running build's directory was removed");
    assert!(!stderr.contains(&live.display().to_string()), "{stderr}");
    assert!(other.is_dir());
    assert!(out.join("train/dataset.json").is_file());
    Ok(())
}
