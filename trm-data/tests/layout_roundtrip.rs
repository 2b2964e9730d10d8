//! The dataset layout: byte-identical npy/json output against files NumPy and Python wrote,
//! round trips, atomic writes and error paths.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use trm_data::layout::{
    DEFAULT_SET, DatasetMetadata, DatasetWriter, LayoutError, PuzzleSet, Split, SplitStats,
    python_float_repr, read_identifiers, to_python_json,
};
use trm_data::npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Re-writes every `.npy` file of `dir` through our writer and compares bytes.
fn assert_npy_rewrites_identically(dir: &Path) {
    let mut seen = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "npy") {
            continue;
        }
        let original = fs::read(&path).unwrap();
        let (descr, _) = npy::read_npy_header(&path).unwrap();
        let mut rewritten = Vec::new();
        match descr.as_str() {
            "|u1" => {
                let a = npy::read_npy::<u8>(&path).unwrap();
                npy::write_npy(&mut rewritten, &a.shape, &a.data).unwrap();
            }
            "<i4" => {
                let a = npy::read_npy::<i32>(&path).unwrap();
                npy::write_npy(&mut rewritten, &a.shape, &a.data).unwrap();
            }
            other => panic!("{}: unexpected dtype {other}", path.display()),
        }
        assert!(
            original == rewritten,
            "{} differs after rewrite",
            path.display()
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        5,
        "expected the 5 arrays of one set in {}",
        dir.display()
    );
}

#[test]
fn npy_writer_matches_numpy_bytes() {
    // Written by the reference Sudoku builder (numpy.save), 20 rows.
    assert_npy_rewrites_identically(&fixtures().join("sudoku-ref/out/train"));
    // Written by the reference Maze builder, 1000 rows of 900.
    assert_npy_rewrites_identically(&common::shared("data/maze-hard/npy/train"));
}

#[test]
fn npy_header_padding_matches_numpy_for_many_shapes() {
    // NumPy's rule computed independently here: dict + growth spaces + '\n', padded so the
    // total is a multiple of 64, with a full 64 spaces when already aligned.
    for shape in [
        vec![0usize],
        vec![1],
        vec![9],
        vec![10],
        vec![1001],
        vec![12345678, 81],
    ] {
        let h = npy::numpy_header("<i4", &shape);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        let dict_end = text.find('}').unwrap() + 1;
        let spaces_after = text[dict_end..text.len() - 1].len();
        assert!(text[dict_end..text.len() - 1].bytes().all(|b| b == b' '));
        let growth = 21 - shape[0].to_string().len();
        assert!(
            spaces_after >= growth,
            "{shape:?}: {spaces_after} < growth {growth}"
        );
        assert!(
            spaces_after - growth <= 64 && spaces_after - growth >= 1,
            "{shape:?}"
        );
        assert_eq!(h.len() % 64, 0);
    }
}

#[test]
fn metadata_json_matches_reference_text() {
    for split in ["train", "test"] {
        let path = fixtures().join("sudoku-ref/out").join(split);
        let text = fs::read_to_string(path.join("dataset.json")).unwrap();
        let meta = DatasetMetadata::read(&path).unwrap();
        assert_eq!(meta.to_json().unwrap(), text);
    }
    let ids = read_identifiers(&fixtures().join("sudoku-ref/out")).unwrap();
    let text = fs::read_to_string(fixtures().join("sudoku-ref/out/identifiers.json")).unwrap();
    assert_eq!(to_python_json(&ids).unwrap(), text);
}

#[test]
fn python_json_floats_and_strings() {
    let text = fs::read_to_string(fixtures().join("json/python_json.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats: Vec<f64> = v["float_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| f64::from_bits(b.as_u64().unwrap()))
        .collect();
    assert_eq!(
        to_python_json(&floats).unwrap(),
        v["floats_dump"].as_str().unwrap()
    );
    let strings: Vec<String> = serde_json::from_value(v["strings"].clone()).unwrap();
    assert_eq!(
        to_python_json(&strings).unwrap(),
        v["strings_dump"].as_str().unwrap()
    );
    // Each float on its own, too (the list form could hide a separator bug behind a float one).
    let dumped: Vec<&str> = v["floats_dump"]
        .as_str()
        .unwrap()
        .trim_matches(['[', ']'])
        .split(", ")
        .collect();
    for (x, want) in floats.iter().zip(dumped) {
        assert_eq!(python_float_repr(*x), want, "bits {:#x}", x.to_bits());
    }
}

fn sample_set() -> PuzzleSet {
    // 2 groups: group 0 has puzzles with 2 and 1 examples, group 1 one puzzle of 3 examples.
    let mut s = PuzzleSet::new(4);
    let mut k = 0u8;
    for (group, puzzles) in [vec![2usize, 1], vec![3]].into_iter().enumerate() {
        for (p, n) in puzzles.into_iter().enumerate() {
            for _ in 0..n {
                s.push_example(&[k, k + 1, k + 2, 1], &[k % 5; 4]).unwrap();
                k += 1;
            }
            s.end_puzzle((group * 10 + p + 1) as i32).unwrap();
        }
        s.end_group().unwrap();
    }
    s
}

fn sample_metadata(set: &PuzzleSet) -> DatasetMetadata {
    let stats = SplitStats::of([set]);
    DatasetMetadata {
        pad_id: 0,
        ignore_label_id: Some(0),
        blank_identifier_id: 0,
        vocab_size: 12,
        seq_len: 4,
        num_puzzle_identifiers: 12,
        total_groups: stats.total_groups,
        mean_puzzle_examples: stats.total_examples as f64 / stats.total_puzzles as f64,
        total_puzzles: stats.total_puzzles,
        sets: vec![DEFAULT_SET.to_string()],
    }
}

#[test]
fn write_then_open_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("ds");
    let set = sample_set();
    assert_eq!(
        (set.num_examples(), set.num_puzzles(), set.num_groups()),
        (6, 3, 2)
    );
    let meta = sample_metadata(&set);
    assert_eq!(meta.total_puzzles, 3);
    let mut w = DatasetWriter::create(&target, false).unwrap();
    w.write_split("train", &meta, &[(DEFAULT_SET, &set)])
        .unwrap();
    w.write_identifiers(&["<blank>".to_string(), "a".to_string()])
        .unwrap();
    w.commit().unwrap();

    let split = Split::open(&target.join("train")).unwrap();
    assert_eq!(split.metadata, meta);
    let back = split.set(DEFAULT_SET).unwrap();
    assert_eq!(back, &set);
    // Iteration: puzzle of each example, found by the linear walk and by binary search.
    let puzzles: Vec<usize> = back.examples().map(|e| e.puzzle).collect();
    assert_eq!(puzzles, vec![0, 0, 1, 2, 2, 2]);
    for e in back.examples() {
        assert_eq!(back.puzzle_of_example(e.index), e.puzzle);
        assert_eq!(back.example(e.index), e);
        assert_eq!(e.puzzle_identifier, back.puzzle_identifiers[e.puzzle]);
        assert_eq!(e.input[0] as usize, e.index);
    }
    assert_eq!(back.group_puzzles(1), 2..3);
    assert_eq!(back.puzzle_examples(2), 3..6);
    assert_eq!(read_identifiers(&target).unwrap(), vec!["<blank>", "a"]);
    // No temporary directory left beside the target.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ds")]);
}

#[test]
fn writer_is_atomic_and_respects_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("ds");
    let set = sample_set();
    let meta = sample_metadata(&set);
    {
        // Dropped without commit: nothing at all remains.
        let mut w = DatasetWriter::create(&target, false).unwrap();
        w.write_split("train", &meta, &[(DEFAULT_SET, &set)])
            .unwrap();
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

    // A failing write (metadata names another set) leaves nothing either.
    {
        let mut bad = meta.clone();
        bad.sets = vec!["other".into()];
        let mut w = DatasetWriter::create(&target, false).unwrap();
        assert!(matches!(
            w.write_split("train", &bad, &[(DEFAULT_SET, &set)]),
            Err(LayoutError::Build(_))
        ));
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

    let mut w = DatasetWriter::create(&target, false).unwrap();
    w.write_split("train", &meta, &[(DEFAULT_SET, &set)])
        .unwrap();
    w.commit().unwrap();
    assert!(matches!(
        DatasetWriter::create(&target, false),
        Err(LayoutError::Exists(_))
    ));

    // Overwrite replaces the old content entirely (the old test split disappears).
    fs::create_dir(target.join("test")).unwrap();
    let mut w = DatasetWriter::create(&target, true).unwrap();
    w.write_split("train", &meta, &[(DEFAULT_SET, &set)])
        .unwrap();
    w.commit().unwrap();
    assert!(!target.join("test").exists());
    assert!(Split::open(&target.join("train")).is_ok());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn builder_rejects_misuse() {
    let mut s = PuzzleSet::new(3);
    assert!(s.push_example(&[1, 2], &[1, 2, 3]).is_err());
    assert!(s.end_puzzle(0).is_err(), "empty puzzle");
    assert!(s.end_group().is_err(), "empty group");
    s.push_example(&[1, 2, 3], &[1, 2, 3]).unwrap();
    assert!(s.end_group().is_err(), "open puzzle");
    s.end_puzzle(0).unwrap();
    s.end_group().unwrap();
    assert!(s.validate().is_ok());
}

#[test]
fn open_rejects_inconsistent_data() {
    let tmp = tempfile::tempdir().unwrap();
    let set = sample_set();
    let meta = sample_metadata(&set);
    let write = |name: &str, meta: &DatasetMetadata, set: &PuzzleSet| {
        let target = tmp.path().join(name);
        let mut w = DatasetWriter::create(&target, false).unwrap();
        w.write_split("train", meta, &[(DEFAULT_SET, set)]).unwrap();
        w.commit().unwrap();
        target.join("train")
    };
    // Token >= vocab_size.
    let mut small_vocab = meta.clone();
    small_vocab.vocab_size = 5;
    let err = Split::open(&write("vocab", &small_vocab, &set)).unwrap_err();
    assert!(err.to_string().contains("vocab_size"), "{err}");
    // Identifier outside the table.
    let mut few_ids = meta.clone();
    few_ids.num_puzzle_identifiers = 3;
    assert!(Split::open(&write("ids", &few_ids, &set)).is_err());
    // Broken indices on disk.
    let dir = write("idx", &meta, &set);
    npy::write_npy_file(&dir.join("all__puzzle_indices.npy"), &[4], &[0i32, 2, 2, 6]).unwrap();
    let err = Split::open(&dir).unwrap_err();
    assert!(err.to_string().contains("strictly increasing"), "{err}");
    // Truncated npy.
    let dir = write("trunc", &meta, &set);
    let p = dir.join("all__inputs.npy");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    assert!(Split::open(&dir).is_err());
    // Missing dataset.json.
    assert!(matches!(
        Split::open(tmp.path()),
        Err(LayoutError::Io { .. })
    ));
}

#[test]
fn reads_reference_built_shared_datasets() {
    let maze = Split::open(&common::shared("data/maze-hard/npy/test")).unwrap();
    let set = maze.set(DEFAULT_SET).unwrap();
    assert_eq!((set.num_examples(), set.seq_len()), (1000, 900));
    assert_eq!(set.num_groups(), maze.metadata.total_groups);
}

#[test]
fn token_dtypes_round_trip() {
    use trm_data::layout::TokenDtype;
    let tmp = tempfile::tempdir().unwrap();
    for (k, (dtype, descr, width)) in [
        (TokenDtype::U8, "|u1", 1),
        (TokenDtype::I32, "<i4", 4),
        (TokenDtype::I64, "<i8", 8),
    ]
    .into_iter()
    .enumerate()
    {
        let mut set = sample_set();
        set.token_dtype = dtype;
        let target = tmp.path().join(format!("ds{k}"));
        let mut w = DatasetWriter::create(&target, false).unwrap();
        w.write_split("train", &sample_metadata(&set), &[(DEFAULT_SET, &set)])
            .unwrap();
        w.commit().unwrap();
        let path = target.join("train/all__labels.npy");
        assert_eq!(
            npy::read_npy_header(&path).unwrap(),
            (descr.to_string(), vec![6, 4])
        );
        let header = npy::numpy_header(descr, &[6, 4]).len();
        assert_eq!(
            fs::metadata(&path).unwrap().len() as usize,
            header + 6 * 4 * width
        );
        let back = Split::open(&target.join("train")).unwrap();
        assert_eq!(back.set(DEFAULT_SET).unwrap(), &set);
    }
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_new_writer_removes_temporaries_of_dead_writers_only() {
    use trm_data::layout::{StaleAction, StaleTemporary, clean_stale_temporaries};
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("ds");
    let dead = dead_pid();
    let stale = tmp.path().join(format!(".ds.tmp-{dead}-3"));
    fs::create_dir_all(stale.join("train")).unwrap();
    // The previous dataset moved aside by a writer killed between its two renames: kept while
    // the target is missing (it is the only copy), removed once a dataset is in place.
    let aside = tmp.path().join(format!(".ds.tmp-{dead}-2.old"));
    fs::create_dir_all(aside.join("train")).unwrap();
    // This process is alive: its name pattern is never touched.
    let mine = tmp
        .path()
        .join(format!(".ds.tmp-{}-999", std::process::id()));
    fs::create_dir(&mine).unwrap();
    // Not a writer's temporary directory.
    let unrelated = tmp.path().join(format!(".ds.tmp-{dead}-x"));
    fs::create_dir(&unrelated).unwrap();

    let found = clean_stale_temporaries(&target).unwrap();
    assert_eq!(
        found,
        vec![
            StaleTemporary {
                path: aside.clone(),
                pid: dead,
                action: StaleAction::KeptPreviousDataset
            },
            StaleTemporary {
                path: stale.clone(),
                pid: dead,
                action: StaleAction::Removed
            },
        ]
    );
    assert!(!stale.exists() && aside.is_dir() && mine.is_dir() && unrelated.is_dir());
    assert!(
        found[1].to_string().contains("no longer running"),
        "{}",
        found[1]
    );

    // With the target in place, the writer removes the aside and reports it.
    fs::create_dir(&target).unwrap();
    let set = sample_set();
    let mut w = DatasetWriter::create(&target, true).unwrap();
    assert_eq!(
        w.stale_temporaries(),
        [StaleTemporary {
            path: aside.clone(),
            pid: dead,
            action: StaleAction::Removed
        }]
    );
    w.write_split("train", &sample_metadata(&set), &[(DEFAULT_SET, &set)])
        .unwrap();
    w.commit().unwrap();
    assert!(!aside.exists() && mine.is_dir());
}
