//! The data pipeline (`trm_train::data`) against the reference's `puzzle_dataset.py`.
//!
//! - `reference_batches.json` (made by `tests/fixtures/data/gen_reference_batches.py`, which
//!   runs the reference code): NumPy's Philox/Generator draws and every batch the reference
//!   yields for several configurations; we must yield the same batches, row for row.
//! - Structural properties on Sudoku datasets generated here (`trm_data::sudoku_gen`).
//! - Errors that name what is wrong.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::{Kind, Tensor};
use trm_data::layout::Split;
use trm_data::sudoku::SudokuOptions;
use trm_data::sudoku_gen::generate_dataset;
use trm_train::data::numpy_rng::{NumpyGenerator, Philox, SeedSequence};
use trm_train::data::{
    BatchPlan, DataBatch, DataError, IGNORE_LABEL_ID, PuzzleDataset, PuzzleDatasetConfig,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn reference_json() -> Value {
    let path = fixtures_dir().join("reference_batches.json");
    let text = std::fs::read_to_string(&path).expect("reference_batches.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn resolve(path: &str) -> PathBuf {
    if let Some(rel) = path.strip_prefix("shared:") {
        return common::shared(&format!("data/{rel}"));
    }
    match path.strip_prefix("reference:") {
        Some(name) => common::shared(&format!("reference-fixtures/{name}/data")),
        None => fixtures_dir().join(path),
    }
}

/// The generator's row fingerprint: `sum(token_k * 31^k) mod 2^31 - 1`.
fn fingerprints(flat: &[i32], seq_len: usize) -> Vec<i32> {
    const MOD: i64 = (1 << 31) - 1;
    flat.chunks(seq_len)
        .map(|row| {
            let h = row
                .iter()
                .rev()
                .fold(0i64, |h, &t| (h * 31 + i64::from(t)).rem_euclid(MOD));
            h as i32
        })
        .collect()
}

fn to_vec_i32(t: &Tensor) -> Vec<i32> {
    assert_eq!(t.kind(), Kind::Int, "batch tensors are i32");
    Vec::<i32>::try_from(t.flatten(0, -1)).expect("i32 tensor")
}

fn json_ints(v: &Value) -> Vec<i32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<i32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_i64().expect("int") as i32),
            other => panic!("unexpected {other}"),
        }
    }
    walk(v, &mut out);
    out
}

fn u(v: &Value) -> usize {
    v.as_u64().expect("unsigned") as usize
}

fn big(v: &Value) -> u128 {
    v.as_str()
        .expect("decimal string")
        .parse()
        .expect("integer")
}

#[test]
fn numpy_philox_generator_matches_numpy() {
    let json = reference_json();
    let vectors = json["rng"].as_array().expect("rng vectors");
    assert!(vectors.len() >= 4);
    for vec in vectors {
        let seed = big(&vec["seed"]);
        let key: Vec<u128> = vec["key"].as_array().unwrap().iter().map(big).collect();
        let ours_key = SeedSequence::new(seed).generate_state_u64(2);
        assert_eq!(
            ours_key.iter().map(|&k| u128::from(k)).collect::<Vec<_>>(),
            key,
            "SeedSequence({seed}) key"
        );
        let raw: Vec<u128> = vec["raw"].as_array().unwrap().iter().map(big).collect();
        let mut p = Philox::new(seed);
        let ours_raw: Vec<u128> = (0..raw.len()).map(|_| u128::from(p.next_u64())).collect();
        assert_eq!(ours_raw, raw, "Philox({seed}) raw");
        // One generator through the whole interleaved sequence: 32-bit halves carried over
        // between permutation and integers must line up with NumPy's.
        let mut g = NumpyGenerator::philox(seed);
        for (k, d) in vec["draws"].as_array().unwrap().iter().enumerate() {
            match d["op"].as_str().unwrap() {
                "permutation" => {
                    let want: Vec<usize> = d["out"].as_array().unwrap().iter().map(u).collect();
                    assert_eq!(g.permutation(u(&d["n"])), want, "seed {seed} draw {k}");
                }
                "integers" => {
                    let (lo, hi) = (d["low"].as_i64().unwrap(), d["high"].as_i64().unwrap());
                    let got = g.integers(lo, hi);
                    assert_eq!(got, d["out"].as_i64(), "seed {seed} draw {k} [{lo},{hi})");
                }
                other => panic!("unknown op {other}"),
            }
        }
    }
}

fn config_of(case: &Value) -> PuzzleDatasetConfig {
    PuzzleDatasetConfig {
        seed: case["seed"].as_str().unwrap().parse().unwrap(),
        dataset_paths: case["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| resolve(p.as_str().unwrap()))
            .collect(),
        global_batch_size: u(&case["global_batch_size"]),
        test_set_mode: case["test_set_mode"].as_bool().unwrap(),
        epochs_per_iter: u(&case["epochs_per_iter"]),
        rank: u(&case["rank"]),
        num_replicas: u(&case["num_replicas"]),
    }
}

#[test]
fn batches_match_the_reference_puzzle_dataset() {
    let json = reference_json();
    let cases = json["cases"].as_array().expect("cases");
    assert!(cases.len() >= 6);
    let mut compared_batches = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let config = config_of(case);
        let mut ds = PuzzleDataset::open(config.clone(), case["split"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = &case["metadata"];
        let ours = ds.metadata();
        assert_eq!(ours.seq_len, u(&m["seq_len"]), "{name}");
        assert_eq!(ours.total_groups, u(&m["total_groups"]), "{name}");
        assert_eq!(ours.total_puzzles, u(&m["total_puzzles"]), "{name}");
        assert_eq!(
            ours.num_puzzle_identifiers,
            u(&m["num_puzzle_identifiers"]),
            "{name}"
        );
        let mean = m["mean_puzzle_examples"].as_f64().unwrap();
        assert!(
            (ours.mean_puzzle_examples - mean).abs() <= 1e-12 * mean,
            "{name}"
        );
        let local = config.global_batch_size / config.num_replicas;
        for (it, want_iter) in case["iterations"].as_array().unwrap().iter().enumerate() {
            let got: Vec<DataBatch> = ds
                .iter()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let want_iter = want_iter.as_array().unwrap();
            assert_eq!(got.len(), want_iter.len(), "{name} iteration {it}: batches");
            for (b, (g, w)) in got.iter().zip(want_iter).enumerate() {
                let at = format!("{name} iteration {it} batch {b}");
                assert_eq!(g.set_name, w["set"].as_str().unwrap(), "{at}");
                assert_eq!(
                    g.global_effective_batch_size,
                    u(&w["effective"]),
                    "{at}: effective size"
                );
                assert_eq!(g.batch.inputs.size(), vec![local as i64, ours_seq(&ds)]);
                let (inputs, labels) = (to_vec_i32(&g.batch.inputs), to_vec_i32(&g.batch.labels));
                if w.get("inputs_fingerprint").is_some() {
                    let seq = ours_seq(&ds) as usize;
                    let want_in = json_ints(&w["inputs_fingerprint"]);
                    assert_eq!(fingerprints(&inputs, seq), want_in, "{at}");
                    let want_lab = json_ints(&w["labels_fingerprint"]);
                    assert_eq!(fingerprints(&labels, seq), want_lab, "{at}");
                } else {
                    assert_eq!(inputs, json_ints(&w["inputs"]), "{at}");
                    assert_eq!(labels, json_ints(&w["labels"]), "{at}");
                }
                assert_eq!(
                    to_vec_i32(&g.batch.puzzle_identifiers),
                    json_ints(&w["puzzle_identifiers"]),
                    "{at}"
                );
                compared_batches += 1;
            }
        }
    }
    assert!(compared_batches > 50, "compared {compared_batches} batches");
}

fn ours_seq(ds: &PuzzleDataset) -> i64 {
    ds.metadata().seq_len as i64
}

/// A generated Sudoku dataset: `n_train` puzzles with `num_aug` augmentations each (groups of
/// `num_aug + 1` puzzles of one example), `n_test` test puzzles.
fn sudoku_dataset(dir: &Path, n_train: usize, n_test: usize, num_aug: usize) -> PathBuf {
    let out = dir.join(format!("sudoku-{n_train}-{num_aug}"));
    let opts = SudokuOptions {
        num_aug,
        seed: 5,
        compact_tokens: true,
        ..Default::default()
    };
    generate_dataset(&out, n_train, n_test, 6, &opts).expect("generate sudoku");
    out
}

fn train_config(
    path: &Path,
    gbs: usize,
    epochs: usize,
    rank: usize,
    nrep: usize,
) -> PuzzleDatasetConfig {
    PuzzleDatasetConfig {
        seed: 42,
        dataset_paths: vec![path.to_path_buf()],
        global_batch_size: gbs,
        test_set_mode: false,
        epochs_per_iter: epochs,
        rank,
        num_replicas: nrep,
    }
}

fn plans(ds: &mut PuzzleDataset) -> Vec<BatchPlan> {
    ds.plans().collect::<Result<_, _>>().expect("plans")
}

#[test]
fn train_sampling_structure_on_generated_sudoku() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sudoku_dataset(tmp.path(), 37, 5, 3);
    let split = Split::open(&path.join("train")).unwrap();
    let set = split.set("all").unwrap().clone();
    assert_eq!(set.num_groups(), 37);
    let group_of_puzzle = |p: usize| set.group_indices.partition_point(|&s| s as usize <= p) - 1;

    let (gbs, nrep, epochs) = (8, 4, 3);
    let mut global = PuzzleDataset::open(train_config(&path, gbs, epochs, 0, 1), "train").unwrap();
    let mut ranks: Vec<PuzzleDataset> = (0..nrep)
        .map(|r| PuzzleDataset::open(train_config(&path, gbs, epochs, r, nrep), "train").unwrap())
        .collect();
    for ds in &ranks {
        assert_eq!(ds.local_batch_size(), gbs / nrep);
    }
    let mut previous_orders = Vec::new();
    for iteration in 1..=3u64 {
        let g = plans(&mut global);
        assert_eq!(global.iterations(), iteration);
        // Groups are used once per epoch; full batches only (drop-last): 3 * 37 / 8 = 13.
        assert_eq!(g.len(), epochs * 37 / gbs);
        assert_eq!(g.len(), global.min_train_batches_per_iter());
        let groups: Vec<usize> = g
            .iter()
            .flat_map(|p| p.puzzles.iter().map(|&q| group_of_puzzle(q)))
            .collect();
        for (e, epoch) in groups.chunks(37).enumerate() {
            let distinct: BTreeSet<_> = epoch.iter().collect();
            assert_eq!(
                distinct.len(),
                epoch.len(),
                "iteration {iteration} epoch {e}: a group twice"
            );
        }
        for p in &g {
            assert_eq!(p.examples.len(), gbs);
            assert_eq!(p.global_effective_batch_size, gbs);
            for (&e, &q) in p.examples.iter().zip(&p.puzzles) {
                assert!(
                    set.puzzle_examples(q).contains(&e),
                    "example {e} not of puzzle {q}"
                );
            }
        }
        // Each rank takes its slice of the same global batch.
        let per_rank: Vec<Vec<BatchPlan>> = ranks.iter_mut().map(plans).collect();
        for (b, gp) in g.iter().enumerate() {
            let mut joined = Vec::new();
            for (r, rp) in per_rank.iter().enumerate() {
                assert_eq!(rp.len(), g.len(), "rank {r}");
                assert_eq!(rp[b].examples.len(), gbs / nrep);
                assert_eq!(rp[b].global_effective_batch_size, gbs);
                joined.extend_from_slice(&rp[b].examples);
            }
            assert_eq!(joined, gp.examples, "batch {b}: rank slices");
        }
        // A new iteration reshuffles (seed + iteration).
        assert!(
            !previous_orders.contains(&groups),
            "iteration {iteration} repeats an order"
        );
        previous_orders.push(groups);
    }
    // The same seed gives the same batches; another seed other batches.
    let mut again = PuzzleDataset::open(train_config(&path, gbs, epochs, 0, 1), "train").unwrap();
    let first_again = plans(&mut again);
    let mut fresh = PuzzleDataset::open(train_config(&path, gbs, epochs, 0, 1), "train").unwrap();
    assert_eq!(plans(&mut fresh), first_again);
    let mut other_cfg = train_config(&path, gbs, epochs, 0, 1);
    other_cfg.seed = 43;
    let mut other = PuzzleDataset::open(other_cfg, "train").unwrap();
    assert_ne!(plans(&mut other), first_again);
    // Resuming at iteration k reproduces iteration k + 1 (single-example puzzles).
    let mut resumed = PuzzleDataset::open(train_config(&path, gbs, epochs, 0, 1), "train").unwrap();
    resumed.set_iterations(1);
    let second = plans(&mut again);
    assert_eq!(plans(&mut resumed), second);
}

#[test]
fn collated_train_batch_matches_the_raw_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sudoku_dataset(tmp.path(), 12, 3, 1);
    let split = Split::open(&path.join("train")).unwrap();
    let set = split.set("all").unwrap().clone();
    let ignore = split.metadata.ignore_label_id;
    let mut ds = PuzzleDataset::open(train_config(&path, 6, 1, 1, 2), "train").unwrap();
    let plan = plans(&mut ds).into_iter().next().expect("a batch");
    let batch = ds.collate(&plan).unwrap();
    assert_eq!(batch.inputs.size(), vec![3, 81]);
    assert_eq!(batch.labels.size(), vec![3, 81]);
    assert_eq!(batch.puzzle_identifiers.size(), vec![3]);
    let inputs = to_vec_i32(&batch.inputs);
    let labels = to_vec_i32(&batch.labels);
    let ids = to_vec_i32(&batch.puzzle_identifiers);
    let mut saw_ignored = false;
    for (r, (&e, &p)) in plan.examples.iter().zip(&plan.puzzles).enumerate() {
        let want_in: Vec<i32> = set.input(e).iter().map(|&t| i32::from(t)).collect();
        assert_eq!(&inputs[r * 81..(r + 1) * 81], &want_in[..]);
        for (k, &t) in set.label(e).iter().enumerate() {
            let t = i32::from(t);
            let want = if Some(t) == ignore {
                IGNORE_LABEL_ID
            } else {
                t
            };
            saw_ignored |= want == IGNORE_LABEL_ID;
            assert_eq!(labels[r * 81 + k], want);
        }
        assert_eq!(ids[r], set.puzzle_identifiers[p]);
    }
    // Sudoku labels are all digits 1..=9 (+1): nothing to ignore unless the dataset says so.
    assert_eq!(saw_ignored, labels.contains(&IGNORE_LABEL_ID));
}

#[test]
fn test_mode_covers_every_example_once_and_pads() {
    let tmp = tempfile::tempdir().unwrap();
    let path = sudoku_dataset(tmp.path(), 4, 11, 0);
    let split = Split::open(&path.join("test")).unwrap();
    let set = split.set("all").unwrap().clone();
    let meta = split.metadata.clone();
    let (gbs, nrep) = (4, 2);
    let mut seen = Vec::new();
    let mut padded_rows = 0;
    for rank in 0..nrep {
        let mut cfg = train_config(&path, gbs, 1, rank, nrep);
        cfg.test_set_mode = true;
        let mut ds = PuzzleDataset::open(cfg, "test").unwrap();
        let batches: Vec<DataBatch> = ds.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 11usize.div_ceil(gbs));
        for (b, db) in batches.iter().enumerate() {
            assert_eq!(db.global_effective_batch_size, (11 - b * gbs).min(gbs));
            let rows = gbs / nrep;
            assert_eq!(db.batch.inputs.size(), vec![rows as i64, 81]);
            let inputs = to_vec_i32(&db.batch.inputs);
            let labels = to_vec_i32(&db.batch.labels);
            let ids = to_vec_i32(&db.batch.puzzle_identifiers);
            for r in 0..rows {
                let row_in = &inputs[r * 81..(r + 1) * 81];
                if r < db.real_rows {
                    let e = b * gbs + rank * rows + r;
                    let want: Vec<i32> = set.input(e).iter().map(|&t| i32::from(t)).collect();
                    assert_eq!(row_in, &want[..], "rank {rank} batch {b} row {r}");
                    assert_eq!(ids[r], set.puzzle_identifiers[set.puzzle_of_example(e)]);
                    seen.push(e);
                } else {
                    padded_rows += 1;
                    assert!(row_in.iter().all(|&t| t == meta.pad_id));
                    assert!(
                        labels[r * 81..(r + 1) * 81]
                            .iter()
                            .all(|&t| t == IGNORE_LABEL_ID)
                    );
                    assert_eq!(ids[r], meta.blank_identifier_id);
                }
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..11).collect::<Vec<_>>());
    // 11 examples in global batches of 4 over 2 ranks: the last global batch has 3 real rows,
    // so rank 1 pads one row.
    assert_eq!(padded_rows, 12 - 11);
}

#[test]
fn merged_metadata_sums_like_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let a = sudoku_dataset(tmp.path(), 6, 2, 1);
    let b = sudoku_dataset(tmp.path(), 9, 3, 2);
    let ma = Split::open(&a.join("train")).unwrap().metadata;
    let mb = Split::open(&b.join("train")).unwrap().metadata;
    let mut cfg = train_config(&a, 4, 1, 0, 1);
    cfg.dataset_paths.push(b.clone());
    let mut ds = PuzzleDataset::open(cfg, "train").unwrap();
    let m = ds.metadata().clone();
    assert_eq!(m.total_groups, ma.total_groups + mb.total_groups);
    assert_eq!(m.total_puzzles, ma.total_puzzles + mb.total_puzzles);
    assert_eq!(
        m.num_puzzle_identifiers,
        ma.num_puzzle_identifiers + mb.num_puzzle_identifiers
    );
    let want_mean = (ma.mean_puzzle_examples * ma.total_puzzles as f64
        + mb.mean_puzzle_examples * mb.total_puzzles as f64)
        / (ma.total_puzzles + mb.total_puzzles) as f64;
    assert!((m.mean_puzzle_examples - want_mean).abs() < 1e-12);
    assert_eq!(ds.set_names().collect::<Vec<_>>(), vec!["all", "all1"]);
    // Both sets are iterated, each with its own iteration counter step.
    let mut per_set: HashMap<String, usize> = HashMap::new();
    for db in ds.iter() {
        *per_set.entry(db.unwrap().set_name).or_default() += 1;
    }
    // One row per group (single-example puzzles), drop-last.
    assert_eq!(per_set.get("all"), Some(&(ma.total_groups / 4)));
    assert_eq!(per_set.get("all1"), Some(&(mb.total_groups / 4)));
    assert_eq!(ds.iterations(), 2);
}

fn open_err(cfg: PuzzleDatasetConfig, split: &str) -> String {
    match PuzzleDataset::open(cfg, split) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dataset");
    let msg = open_err(train_config(&missing, 4, 1, 0, 1), "train");
    assert!(
        msg.contains("no-such-dataset") && msg.contains("trm-train build-dataset"),
        "{msg}"
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("train")).unwrap();
    let msg = open_err(train_config(&empty, 4, 1, 0, 1), "train");
    assert!(
        msg.contains(
            &empty
                .join("train")
                .join("dataset.json")
                .display()
                .to_string()
        ) && msg.contains("trm-train build-dataset"),
        "{msg}"
    );

    let synth = fixtures_dir().join("synth_a");
    let sudoku = common::shared("reference-fixtures/sudoku-att-d64-f32/data");
    let mut cfg = train_config(&synth, 4, 1, 0, 1);
    cfg.dataset_paths.push(sudoku.clone());
    let msg = open_err(cfg, "train");
    assert!(
        msg.contains("seq_len") && msg.contains("4") && msg.contains("81"),
        "{msg}"
    );
    assert!(matches!(
        PuzzleDataset::open(
            PuzzleDatasetConfig {
                dataset_paths: vec![synth.clone(), sudoku],
                ..train_config(&synth, 4, 1, 0, 1)
            },
            "train"
        ),
        Err(DataError::IncompatibleMetadata {
            field: "seq_len",
            ..
        })
    ));

    let msg = open_err(train_config(&synth, 6, 1, 0, 4), "train");
    assert!(
        msg.contains("6") && msg.contains("4") && msg.contains("multiple"),
        "{msg}"
    );
    let msg = open_err(train_config(&synth, 8, 1, 4, 4), "train");
    assert!(msg.contains("rank 4"), "{msg}");
    let msg = open_err(train_config(&synth, 8, 0, 0, 1), "train");
    assert!(msg.contains("epochs_per_iter"), "{msg}");
}
