//! The Maze builder against the reference-built Maze-Hard arrays, its dihedral augmentation
//! (against the reference's transforms) and input validation.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use trm_data::input::BuildError;
use trm_data::layout::{DEFAULT_SET, DatasetMetadata, Split, read_identifiers};
use trm_data::maze::{self, MazeOptions, MazeSource, dihedral, read_maze_csv};

fn maze_dir() -> PathBuf {
    common::shared("data/maze-hard")
}

#[test]
fn build_matches_reference_arrays_byte_for_byte() {
    // shared maze-hard/npy was built by the reference builder (no augmentation); the CSVs hold
    // the same mazes (decoded from those arrays, see PROVENANCE.md).
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("maze");
    maze::build_dataset(
        &MazeSource::from_dir(&maze_dir()),
        &out,
        &MazeOptions::default(),
    )
    .unwrap();
    let reference = maze_dir().join("npy");
    for split in ["train", "test"] {
        for field in [
            "inputs",
            "labels",
            "puzzle_identifiers",
            "puzzle_indices",
            "group_indices",
        ] {
            let f = format!("{split}/all__{field}.npy");
            assert!(
                fs::read(out.join(&f)).unwrap() == fs::read(reference.join(&f)).unwrap(),
                "{f} differs"
            );
        }
        // The shared dataset.json lists the keys in another order (an older common.py), so
        // compare values.
        assert_eq!(
            DatasetMetadata::read(&out.join(split)).unwrap(),
            DatasetMetadata::read(&reference.join(split)).unwrap()
        );
    }
    assert_eq!(
        fs::read_to_string(out.join("identifiers.json")).unwrap(),
        fs::read_to_string(reference.join("identifiers.json")).unwrap()
    );
    assert_eq!(read_identifiers(&out).unwrap(), vec!["<blank>"]);
}

#[test]
fn dihedral_transforms_match_the_reference() {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/maze/dihedral.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = v["n"].as_u64().unwrap() as usize;
    let grid: Vec<u32> = (0..(n * n) as u32).collect();
    let want: Vec<Vec<u32>> = serde_json::from_value(v["transforms"].clone()).unwrap();
    let inverse: Vec<usize> = serde_json::from_value(v["inverse"].clone()).unwrap();
    assert_eq!(inverse, dihedral::INVERSE);
    for (tid, w) in want.iter().enumerate() {
        let got = dihedral::apply(&grid, n, tid);
        assert_eq!(&got, w, "transform {tid}");
        assert_eq!(dihedral::invert(&got, n, tid), grid, "inverse of {tid}");
    }
}

fn head_csv(src: &Path, dst: &Path, n: usize) {
    let text = fs::read_to_string(src).unwrap();
    let lines: Vec<&str> = text.lines().take(n + 1).collect();
    fs::write(dst, lines.join("\n") + "\n").unwrap();
}

#[test]
fn augmentation_adds_the_seven_other_transforms_per_group() {
    let tmp = tempfile::tempdir().unwrap();
    head_csv(
        &maze_dir().join("train.csv"),
        &tmp.path().join("train.csv"),
        4,
    );
    head_csv(
        &maze_dir().join("test.csv"),
        &tmp.path().join("test.csv"),
        3,
    );
    let source = MazeSource::from_dir(tmp.path());
    let (records, n) = read_maze_csv(&source.train).unwrap();
    assert_eq!(n, 30);
    let out = tmp.path().join("ds");
    maze::build_dataset(
        &source,
        &out,
        &MazeOptions {
            aug: true,
            ..Default::default()
        },
    )
    .unwrap();
    let train = Split::open(&out.join("train")).unwrap();
    let test = Split::open(&out.join("test")).unwrap();
    assert_eq!(test.num_examples(), 3, "test is never augmented");
    let set = train.set(DEFAULT_SET).unwrap();
    assert_eq!(
        (set.num_groups(), set.num_puzzles(), set.num_examples()),
        (4, 32, 32)
    );
    assert_eq!(
        train.metadata.total_puzzles, 4,
        "the reference writes the group count"
    );
    for (g, rec) in records.iter().enumerate() {
        let puzzles = set.group_puzzles(g);
        assert_eq!(puzzles.len(), 8);
        let mut distinct = std::collections::HashSet::new();
        for (tid, p) in puzzles.enumerate() {
            let e = set.example(set.puzzle_examples(p).start);
            assert_eq!(
                dihedral::invert(e.input, n, tid),
                rec.question,
                "group {g} transform {tid}"
            );
            assert_eq!(dihedral::invert(e.label, n, tid), rec.answer);
            // One start and one goal survive every transform.
            assert_eq!(e.input.iter().filter(|&&t| t == 3).count(), 1);
            assert_eq!(e.label.iter().filter(|&&t| t == 4).count(), 1);
            distinct.insert(e.input.to_vec());
        }
        assert_eq!(
            distinct.len(),
            8,
            "mazes have no symmetry, so all 8 transforms differ"
        );
    }
}

#[test]
fn subsampling_is_seeded_and_train_only() {
    let tmp = tempfile::tempdir().unwrap();
    head_csv(
        &maze_dir().join("train.csv"),
        &tmp.path().join("train.csv"),
        10,
    );
    head_csv(
        &maze_dir().join("test.csv"),
        &tmp.path().join("test.csv"),
        5,
    );
    let source = MazeSource::from_dir(tmp.path());
    let build = |name: &str, seed| {
        let out = tmp.path().join(name);
        let opts = MazeOptions {
            subsample_size: Some(4),
            seed,
            ..Default::default()
        };
        maze::build_dataset(&source, &out, &opts).unwrap();
        (
            Split::open(&out.join("train")).unwrap(),
            Split::open(&out.join("test")).unwrap(),
        )
    };
    let (a, at) = build("a", 1);
    let (b, _) = build("b", 1);
    let (c, _) = build("c", 2);
    assert_eq!(a.num_examples(), 4);
    assert_eq!(at.num_examples(), 5);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

fn expect_field_error(q: &str, a: &str, field: &str, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let good = fs::read_to_string(maze_dir().join("train.csv")).unwrap();
    let first = good.lines().nth(1).unwrap();
    let path = tmp.path().join("bad.csv");
    fs::write(
        &path,
        format!("question,answer\n{first}\n\"{q}\",\"{a}\"\n"),
    )
    .unwrap();
    let err = read_maze_csv(&path).unwrap_err();
    let msg = err.to_string();
    match &err {
        BuildError::Field { line, field: f, .. } => {
            assert_eq!((*line, f.as_str()), (3, field), "{msg}")
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    assert!(msg.contains("bad.csv:3") && msg.contains(what), "{msg}");
}

#[test]
fn validation_names_file_line_and_field() {
    let good = fs::read_to_string(maze_dir().join("train.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(good.as_bytes());
    let rec = rdr.records().next().unwrap().unwrap();
    let (q, a) = (rec[0].to_string(), rec[1].to_string());
    expect_field_error(&q[1..], &a, "question", "bad length 899");
    expect_field_error(&q, &format!("x{}", &a[1..]), "answer", "bad character 'x'");
    expect_field_error(
        &format!("{}é", &q[1..]),
        &a,
        "question",
        "bad character 'é'",
    );
    // Non-square first row.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("sq.csv");
    fs::write(&p, "question,answer\n\"# S\",\"# S\"\n").unwrap();
    assert!(
        read_maze_csv(&p)
            .unwrap_err()
            .to_string()
            .contains("not a square grid")
    );
    // Missing column.
    fs::write(&p, "question\n\"#\"\n").unwrap();
    assert!(matches!(read_maze_csv(&p), Err(BuildError::Csv { .. })));
}
