//! Bad ARC input fails with an error naming the file, the puzzle and the field; grid
//! transforms agree with their definitions.

use std::path::Path;

use trm_data::arc::{
    ArcBuildConfig, Augmentation, Grid, build_arc_in_memory, inverse_dihedral_id, load_subset,
};

/// Writes `<dir>/x_training_{challenges,solutions}.json` and returns the error text of loading.
fn load_error(dir: &Path, challenges: &str, solutions: Option<&str>) -> String {
    std::fs::write(dir.join("x_training_challenges.json"), challenges).unwrap();
    let sol = dir.join("x_training_solutions.json");
    match solutions {
        Some(s) => std::fs::write(&sol, s).unwrap(),
        None => {
            let _ = std::fs::remove_file(&sol);
        }
    }
    let prefix = dir.join("x").to_string_lossy().into_owned();
    match load_subset(&prefix, "training") {
        Ok(_) => panic!("accepted: {challenges}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_file_puzzle_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ok_test = r#""test": [{"input": [[1]]}]"#;
    let cases = [
        (
            format!(
                r#"{{"abc": {{"train": [{{"input": [[1, 2], [3]], "output": [[1]]}}], {ok_test}}}}}"#
            ),
            Some(r#"{"abc": [[[1]]]}"#),
            "x_training_challenges.json: puzzle abc: train[0].input: non-rectangular grid",
        ),
        (
            format!(
                r#"{{"abc": {{"train": [{{"input": [[1]], "output": [[1, 10]]}}], {ok_test}}}}}"#
            ),
            Some(r#"{"abc": [[[1]]]}"#),
            "puzzle abc: train[0].output: colour 10 at row 0, column 1 is outside 0..=9",
        ),
        (
            format!(r#"{{"abc": {{"train": [{{"input": [[-1]], "output": [[1]]}}], {ok_test}}}}}"#),
            None,
            "puzzle abc: train[0].input: colour -1",
        ),
        (
            format!(
                r#"{{"abc": {{"train": [{{"input": [{}], "output": [[1]]}}], {ok_test}}}}}"#,
                vec!["[0]"; 31].join(", ")
            ),
            None,
            "puzzle abc: train[0].input: grid is 31x1, larger than 30x30",
        ),
        (
            format!(r#"{{"abc": {{"train": [{{"input": [[1]], "output": [[1]]}}], {ok_test}}}}}"#),
            Some(r#"{"abc": [[[1, 2], [1]]]}"#),
            "x_training_solutions.json: puzzle abc: test[0].output: non-rectangular grid",
        ),
        (
            format!(r#"{{"abc": {{"train": [{{"input": [[1]], "output": [[1]]}}], {ok_test}}}}}"#),
            Some(r#"{"zzz": [[[1]]]}"#),
            "x_training_solutions.json: puzzle abc: solutions: puzzle has no entry",
        ),
        (
            format!(r#"{{"abc": {{"train": [{{"input": [[1]], "output": [[1]]}}], {ok_test}}}}}"#),
            Some(r#"{"abc": [[[1]], [[2]]]}"#),
            "puzzle abc: solutions: 2 solution grids for 1 test inputs",
        ),
        (
            format!(r#"{{"abc": {{"train": [{{"input": [[1]]}}], {ok_test}}}}}"#),
            None,
            "puzzle abc: train[0].output: missing",
        ),
        (
            format!(r#"{{"abc": {{"train": [{{"input": [], "output": [[1]]}}], {ok_test}}}}}"#),
            None,
            "puzzle abc: train[0].input: empty grid",
        ),
        (
            r#"{"abc": {"train": []}}"#.to_string(),
            None,
            "x_training_challenges.json: invalid JSON: missing field `test`",
        ),
        (
            r#"{"abc": [1, 2"#.to_string(),
            None,
            "x_training_challenges.json: invalid JSON",
        ),
    ];
    for (challenges, solutions, want) in &cases {
        let err = load_error(d, challenges, *solutions);
        assert!(err.contains(want), "error {err:?} lacks {want:?}");
    }
    // A missing challenges file names the file.
    let prefix = d.join("nothing").to_string_lossy().into_owned();
    let err = load_subset(&prefix, "training").unwrap_err().to_string();
    assert!(err.contains("nothing_training_challenges.json"), "{err}");
}

#[test]
fn puzzles_without_examples_and_missing_solutions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Without a solutions file the test outputs are [[0]] (the reference's dummy).
    std::fs::write(
        d.join("y_evaluation_challenges.json"),
        r#"{"p": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]]}]}}"#,
    )
    .unwrap();
    let prefix = d.join("y").to_string_lossy().into_owned();
    let tasks = load_subset(&prefix, "evaluation").unwrap();
    assert_eq!(tasks[0].test[0].output, Grid::new(1, 1, vec![0]).unwrap());
    // A test puzzle without test pairs cannot form a test group.
    std::fs::write(
        d.join("y_evaluation_challenges.json"),
        r#"{"p": {"train": [{"input": [[1]], "output": [[2]]}], "test": []}}"#,
    )
    .unwrap();
    let mut c = ArcBuildConfig::new(&prefix, d.join("out"), &["evaluation"], "evaluation");
    c.num_aug = 1;
    let err = build_arc_in_memory(&c).unwrap_err().to_string();
    assert!(err.contains("puzzle p: test: no examples"), "{err}");
    assert!(
        build_arc_in_memory(&ArcBuildConfig {
            subsets: vec![],
            ..c
        })
        .is_err()
    );
}

fn sample() -> Grid {
    // 2x3, all cells distinct.
    Grid::new(2, 3, vec![1, 2, 3, 4, 5, 6]).unwrap()
}

#[test]
fn dihedral_transforms_match_their_definitions() {
    let g = sample();
    let rows = |g: &Grid| g.to_rows();
    // NumPy: rot90 (counter-clockwise) of [[1,2,3],[4,5,6]] is [[3,6],[2,5],[1,4]].
    assert_eq!(
        rows(&g.dihedral(1)),
        vec![vec![3, 6], vec![2, 5], vec![1, 4]]
    );
    assert_eq!(rows(&g.dihedral(2)), vec![vec![6, 5, 4], vec![3, 2, 1]]);
    assert_eq!(
        rows(&g.dihedral(3)),
        vec![vec![4, 1], vec![5, 2], vec![6, 3]]
    );
    assert_eq!(rows(&g.dihedral(4)), vec![vec![3, 2, 1], vec![6, 5, 4]]);
    assert_eq!(rows(&g.dihedral(5)), vec![vec![4, 5, 6], vec![1, 2, 3]]);
    assert_eq!(
        rows(&g.dihedral(6)),
        vec![vec![1, 4], vec![2, 5], vec![3, 6]]
    );
    assert_eq!(
        rows(&g.dihedral(7)),
        vec![vec![6, 3], vec![5, 2], vec![4, 1]]
    );
    // Group laws: rot90 composed is rot180 / rot270; each inverse undoes its transform; the
    // eight images of an asymmetric grid are distinct.
    assert_eq!(g.dihedral(1).dihedral(1), g.dihedral(2));
    assert_eq!(g.dihedral(1).dihedral(2), g.dihedral(3));
    assert_eq!(g.dihedral(1).dihedral(4), g.dihedral(7));
    let mut images = std::collections::HashSet::new();
    for t in 0..8 {
        assert_eq!(g.dihedral(t).inverse_dihedral(t), g, "t{t}");
        assert_eq!(g.dihedral(t).dihedral(inverse_dihedral_id(t)), g, "t{t}");
        images.insert(g.dihedral(t));
    }
    assert_eq!(images.len(), 8);
}

#[test]
fn augmentation_names_round_trip() {
    let g = sample();
    let aug = Augmentation::new(5, [0, 9, 8, 7, 6, 5, 4, 3, 2, 1]).unwrap();
    assert!(Augmentation::new(8, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_none());
    assert!(Augmentation::new(0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]).is_none());
    assert!(Augmentation::new(0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]).is_none());
    let name = aug.name("00d62c1b");
    assert_eq!(name, "00d62c1b|||t5|||0987654321");
    let (base, parsed) = Augmentation::parse_name(&name).unwrap();
    assert_eq!((base, parsed), ("00d62c1b", aug));
    let a = g.augment(&aug);
    assert_eq!(a.to_rows(), vec![vec![6, 5, 4], vec![9, 8, 7]]);
    assert_eq!(a.unaugment(&aug), g);
    assert_eq!(
        Augmentation::parse_name("plain").unwrap(),
        ("plain", Augmentation::IDENTITY)
    );
    for bad in [
        "x|||t8|||0123456789",
        "x|||5|||0123456789",
        "x|||t1|||012345678",
        "x|||t1|||0123456788",
        "x|||t1",
    ] {
        assert!(Augmentation::parse_name(bad).is_err(), "{bad}");
    }
}
