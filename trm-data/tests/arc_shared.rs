//! The ARC builder and evaluator on ARC-AGI-1 from the shared data folder (`$TRM_SHARED`, else
//! `../shared` beside the repository; missing, the tests fail): training + evaluation + concept, test set evaluation, 8
//! augmentations. Compared with digests of the reference builder's output
//! (`tests/fixtures/arc/gen_reference.py --shared`), and checked for structure: shapes, vocab,
//! groups, every augmented example transforming back to its original, identifiers and test
//! puzzles consistent.

mod common;

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use trm_data::arc::{
    ArcBuildConfig, ArcTask, Augmentation, EOS, GRID_SIZE, Grid, PAD, SEQ_LEN, VOCAB_SIZE,
    build_arc_dataset, crop_seq, grid_to_seq, load_subset, read_test_puzzles,
};
use trm_data::arc_eval::ArcEvaluator;
use trm_data::layout::{DatasetMetadata, Split, read_identifiers};

const SUBSETS: [&str; 3] = ["training", "evaluation", "concept"];

fn arc_prefix() -> String {
    let training = common::shared("data/arc/arc-agi_training_challenges.json");
    training
        .with_file_name("arc-agi")
        .to_string_lossy()
        .into_owned()
}

fn build(out: &Path) -> ArcBuildConfig {
    let mut c = ArcBuildConfig::new(arc_prefix(), out, &SUBSETS, "evaluation");
    c.num_aug = 8;
    build_arc_dataset(&c).unwrap();
    c
}

/// The grid in a sequence whose grid may be translated: the crop from the first row and
/// column that hold a colour token.
fn find_grid(seq: &[u8]) -> Grid {
    let first = seq
        .iter()
        .position(|&t| t >= 2)
        .expect("sequence without colours");
    let (r0, _) = (first / GRID_SIZE, first % GRID_SIZE);
    let c0 = (0..GRID_SIZE)
        .find(|&c| (0..GRID_SIZE).any(|r| seq[r * GRID_SIZE + c] >= 2))
        .unwrap();
    let mut shifted = [PAD; SEQ_LEN];
    for r in r0..GRID_SIZE {
        for c in c0..GRID_SIZE {
            shifted[(r - r0) * GRID_SIZE + (c - c0)] = seq[r * GRID_SIZE + c];
        }
    }
    crop_seq(&shifted).unwrap()
}

#[test]
fn arc1_aug8_build_matches_reference_and_inverts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("arc1");
    let config = build(&out);

    // 1. Digests of the reference builder's output.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arc/arc1_aug8_digests.json");
    let digests: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let mut mismatched = Vec::new();
    for (rel, want) in digests.as_object().unwrap() {
        let bytes = std::fs::read(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        // Arrays are hashed without their header (the fixture hashes the raw data).
        let data = if rel.ends_with(".npy") {
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            &bytes[10 + hlen..]
        } else {
            &bytes[..]
        };
        let got = format!("{:x}", Sha256::digest(data));
        if got != want["sha256"].as_str().unwrap() {
            mismatched.push(rel.clone());
        }
    }
    assert!(
        mismatched.is_empty(),
        "files differing from the reference builder: {mismatched:?}"
    );

    // 2. Structure.
    let identifiers = read_identifiers(&out).unwrap();
    let test_puzzles = read_test_puzzles(&out.join("test_puzzles.json")).unwrap();
    let mut tasks: HashMap<String, (bool, ArcTask)> = HashMap::new();
    for subset in SUBSETS {
        for t in load_subset(&config.input_file_prefix, subset).unwrap() {
            tasks.insert(t.id.clone(), (subset == "evaluation", t));
        }
    }
    let n_eval = tasks.values().filter(|(e, _)| *e).count();
    assert_eq!(test_puzzles.len(), n_eval);
    for t in &test_puzzles {
        let (is_eval, orig) = &tasks[&t.id];
        assert!(
            is_eval,
            "{} in test_puzzles.json is not an evaluation puzzle",
            t.id
        );
        assert_eq!(t, orig, "test_puzzles.json entry {}", t.id);
    }
    let mut id_seen = std::collections::HashSet::new();
    for (i, name) in identifiers.iter().enumerate() {
        assert!(id_seen.insert(name), "identifier {name} repeated");
        if i == 0 {
            assert_eq!(name, "<blank>");
        }
    }

    for split_name in ["train", "test"] {
        let dir = out.join(split_name);
        let meta = DatasetMetadata::read(&dir).unwrap();
        let split = Split::open(&dir).unwrap();
        let set = split.set("all").unwrap();
        assert_eq!(meta.seq_len, SEQ_LEN);
        assert_eq!(meta.vocab_size as usize, VOCAB_SIZE);
        assert_eq!(meta.num_puzzle_identifiers, identifiers.len());
        let groups = if split_name == "train" {
            tasks.len()
        } else {
            n_eval
        };
        assert_eq!(set.num_groups(), groups, "{split_name} groups");
        assert_eq!(meta.total_groups, groups);
        assert_eq!(meta.total_puzzles, set.num_puzzles());
        assert!(
            set.inputs
                .iter()
                .chain(&set.labels)
                .all(|&t| (t as usize) < VOCAB_SIZE)
        );
        assert_eq!(set.inputs.len(), set.num_examples() * SEQ_LEN);

        for g in 0..set.num_groups() {
            let puzzles = set.group_puzzles(g);
            assert!(puzzles.len() <= config.num_aug + 1);
            let mut base_of_group = None;
            for p in puzzles {
                let name = &identifiers[set.puzzle_identifiers[p] as usize];
                let (base, aug) = Augmentation::parse_name(name).unwrap();
                assert_eq!(
                    *base_of_group.get_or_insert(base.to_string()),
                    base,
                    "group {g} mixes puzzles"
                );
                let (is_eval, task) = &tasks[base];
                let originals: Vec<_> = match (split_name, is_eval) {
                    ("test", _) => task.test.iter().collect(),
                    (_, true) => task.train.iter().collect(),
                    (_, false) => task.all_examples().collect(),
                };
                let range = set.puzzle_examples(p);
                assert_eq!(range.len(), originals.len(), "{name}: examples");
                let mut untranslated = 0;
                for (i, orig) in range.zip(originals) {
                    let (inp, lab) = (set.input(i), set.label(i));
                    let gi = find_grid(inp).unaugment(&aug);
                    let go = find_grid(lab).unaugment(&aug);
                    assert_eq!(gi, orig.input, "{name} example {i}: input does not invert");
                    assert_eq!(go, orig.output, "{name} example {i}: label does not invert");
                    // The encoding of the augmented grid at the same offset is the sequence.
                    let aug_in = orig.input.augment(&aug);
                    let first = inp.iter().position(|&t| t >= 2).unwrap();
                    let c0 = (0..GRID_SIZE)
                        .find(|&c| (0..GRID_SIZE).any(|r| inp[r * GRID_SIZE + c] >= 2))
                        .unwrap();
                    let mut expect = [0u8; SEQ_LEN];
                    grid_to_seq(&aug_in, first / GRID_SIZE, c0, &mut expect);
                    assert_eq!(&expect[..], inp, "{name} example {i}: encoding");
                    if first == 0 && c0 == 0 {
                        untranslated += 1;
                    }
                    // EOS is missing only when the grid touches both the bottom and right edges.
                    let touches = first / GRID_SIZE + aug_in.rows() == GRID_SIZE
                        && c0 + aug_in.cols() == GRID_SIZE;
                    assert_eq!(inp.contains(&EOS), !touches, "{name} example {i}: EOS");
                }
                // One example per puzzle is left in place (and all of them in the test split).
                assert!(untranslated >= 1, "{name}: every example translated");
            }
        }
    }

    // 3. Evaluator end to end: the labels as predictions solve everything; the inputs as
    // predictions solve exactly the pairs whose output equals the input.
    let set_dir = out.join("test");
    let split = Split::open(&set_dir).unwrap();
    let set = split.set("all").unwrap();
    let ids: Vec<i64> = (0..set.num_examples())
        .map(|i| set.puzzle_identifiers[set.puzzle_of_example(i)] as i64)
        .collect();
    let q = vec![0.0f64; ids.len()];
    let mut perfect = ArcEvaluator::load(&out, 0).unwrap();
    perfect
        .update_batch(&ids, &set.inputs, &set.labels, &q)
        .unwrap();
    let r = perfect.result();
    assert!(r.missing.is_empty());
    for (k, v) in &r.pass_at {
        assert_eq!(*v, 1.0, "pass@{k} of perfect predictions");
    }
    for ((name, attempts), t) in r.submission.iter().zip(&test_puzzles) {
        assert_eq!(name, &t.id);
        for (a, pair) in attempts.iter().zip(&t.test) {
            assert_eq!(a, &vec![pair.output.clone(), pair.output.clone()]);
        }
    }
    let mut identity = ArcEvaluator::load(&out, 0).unwrap();
    identity
        .update_batch(&ids, &set.inputs, &set.inputs, &q)
        .unwrap();
    let expected: f64 = test_puzzles
        .iter()
        .map(|t| t.test.iter().filter(|p| p.input == p.output).count() as f64 / t.test.len() as f64)
        .sum::<f64>()
        / test_puzzles.len() as f64;
    assert_eq!(identity.result().pass_at[0].1, expected);
}

/// Builds ARC-AGI-1 into `$ARC_BUILD_OUT` with `$ARC_NUM_AUG` augmentations (default 1000),
/// for benchmarks and manual comparison with the reference builder:
/// `ARC_BUILD_OUT=/tmp/arc1 cargo test --release -p trm-data --test arc_shared -- --ignored`.
#[test]
#[ignore = "benchmark: builds into $ARC_BUILD_OUT"]
fn build_arc1_into_env_dir() {
    let Some(out) = std::env::var_os("ARC_BUILD_OUT") else {
        panic!("set ARC_BUILD_OUT to the output directory");
    };
    let num_aug = std::env::var("ARC_NUM_AUG").map_or(1000, |v| v.parse().unwrap());
    let mut c = ArcBuildConfig::new(arc_prefix(), Path::new(&out), &SUBSETS, "evaluation");
    c.num_aug = num_aug;
    c.overwrite = true;
    let t = std::time::Instant::now();
    let summary = build_arc_dataset(&c).unwrap();
    eprintln!(
        "built {} tasks, {} identifiers, {} incomplete groups in {:.2} s",
        summary.total_tasks,
        summary.num_identifiers,
        summary.incomplete_groups.len(),
        t.elapsed().as_secs_f64()
    );
}
