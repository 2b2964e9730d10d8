//! The build plan: options, loading and shuffling, augmentation draws, identifiers, and the
//! emission of each split's examples (in the reference's RNG order) into a [`SplitSink`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::{
    AUGMENT_RETRIES_FACTOR, ArcError, ArcExample, ArcTask, Augmentation, GRID_SIZE, Grid,
    NUM_COLOURS, NumpyLegacyRng, PAD, SEQ_LEN, VOCAB_SIZE, challenges_path, grid_to_seq,
    load_subset,
};
use crate::layout::{BLANK_IDENTIFIER, DEFAULT_SET as SET_NAME, DatasetMetadata};

/// Options of the ARC builder (reference `DataProcessConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArcBuildConfig {
    /// Path prefix of the JSON files, e.g. `data/arc/arc-agi` for
    /// `data/arc/arc-agi_training_challenges.json`.
    pub input_file_prefix: String,
    /// Output directory.
    pub output_dir: PathBuf,
    /// Subsets to read, in order (e.g. `training`, `evaluation`, `concept`).
    pub subsets: Vec<String>,
    /// The subset whose test examples form the test split (e.g. `evaluation`).
    pub test_set_name: String,
    /// A second test subset (reference default `your_test_set`).
    pub test_set_name2: String,
    /// Seed of NumPy's legacy global RNG (reference default 42).
    pub seed: u32,
    /// Augmentations per puzzle (reference default 1000).
    pub num_aug: usize,
    /// First puzzle identifier (0 is `<blank>`; reference default 1).
    pub puzzle_identifiers_start: u32,
    /// Replace `output_dir` if it exists (the reference writes into it whatever it holds).
    pub overwrite: bool,
}

impl ArcBuildConfig {
    /// A configuration with the reference defaults (seed 42, 1000 augmentations, identifiers
    /// from 1, second test set `your_test_set`).
    pub fn new(
        input_file_prefix: impl Into<String>,
        output_dir: impl Into<PathBuf>,
        subsets: &[&str],
        test_set_name: impl Into<String>,
    ) -> Self {
        Self {
            input_file_prefix: input_file_prefix.into(),
            output_dir: output_dir.into(),
            subsets: subsets.iter().map(|s| s.to_string()).collect(),
            test_set_name: test_set_name.into(),
            test_set_name2: "your_test_set".into(),
            seed: 42,
            num_aug: 1000,
            puzzle_identifiers_start: 1,
            overwrite: false,
        }
    }

    fn is_test_subset(&self, subset: &str) -> bool {
        subset == self.test_set_name || subset == self.test_set_name2
    }
}

/// The two splits of an ARC dataset, in output order.
pub const SPLITS: [&str; 2] = ["train", "test"];

/// One task with its accepted augmentations (identity first).
#[derive(Debug, Clone)]
struct PlannedGroup {
    task: usize,
    /// Whether the task's test examples go to the test split.
    test_subset: bool,
    augs: Vec<Augmentation>,
}

/// The augmentation plan of a build: tasks in processing order and their augmentations.
/// Memory is small (a few bytes per augmentation); the sequences are produced while writing.
#[derive(Debug, Clone)]
pub struct ArcPlan {
    pub(super) tasks: Vec<ArcTask>,
    groups: Vec<PlannedGroup>,
    /// Names of test-subset tasks, in processing order (test_puzzles.json).
    test_tasks: Vec<usize>,
    /// Every puzzle name, index = identifier (index 0 is `<blank>`).
    pub(super) identifiers: Vec<String>,
    /// The RNG state after planning (the writing phase continues the stream).
    rng: NumpyLegacyRng,
    identifiers_start: u32,
    /// Puzzles whose group has fewer than `num_aug + 1` members (all draws were duplicates).
    pub incomplete_groups: Vec<(String, usize)>,
}

/// Canonical key of a puzzle's examples for duplicate detection: the sorted multiset of
/// (input, output) pairs (the reference hashes the same multiset with SHA-256).
fn puzzle_key(pairs: impl Iterator<Item = (Grid, Grid)>) -> Vec<(Grid, Grid)> {
    let mut v: Vec<(Grid, Grid)> = pairs.collect();
    v.sort_unstable();
    v
}

fn plan_group(task: &ArcTask, num_aug: usize, rng: &mut NumpyLegacyRng) -> Vec<Augmentation> {
    let mut augs = vec![Augmentation::IDENTITY];
    if num_aug == 0 {
        return augs;
    }
    let all = || task.train.iter().chain(&task.test);
    let mut seen: HashSet<Vec<(Grid, Grid)>> = HashSet::new();
    seen.insert(puzzle_key(
        all().map(|e| (e.input.clone(), e.output.clone())),
    ));
    const COLOURS_1_TO_9: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    for _ in 0..AUGMENT_RETRIES_FACTOR * num_aug {
        // Reference `aug`: randint(0, 8) then permutation(1..=9); 0..8 is never empty.
        let trans_id = rng.randint(0, 8).unwrap_or(0) as u8;
        let perm = rng.permutation(&COLOURS_1_TO_9);
        let mut colours = [0u8; NUM_COLOURS];
        colours[1..].copy_from_slice(&perm);
        let aug = Augmentation { trans_id, colours };
        let key = puzzle_key(all().map(|e| (e.input.augment(&aug), e.output.augment(&aug))));
        if seen.insert(key) {
            augs.push(aug);
        }
        if augs.len() > num_aug {
            break;
        }
    }
    augs
}

impl ArcPlan {
    /// Loads the subsets and draws the augmentations (phases 1 and 2 of the reference: loading,
    /// shuffling, augmenting, naming).
    pub fn new(config: &ArcBuildConfig) -> Result<Self, ArcError> {
        if config.subsets.is_empty() {
            return Err(ArcError::Config("no subsets given".into()));
        }
        let mut rng = NumpyLegacyRng::seed(config.seed);
        let mut tasks = Vec::new();
        let mut groups = Vec::new();
        let mut test_tasks = Vec::new();
        let mut test_pos: HashMap<String, usize> = HashMap::new();
        let mut incomplete_groups = Vec::new();
        for subset in &config.subsets {
            let mut loaded = load_subset(&config.input_file_prefix, subset)?;
            rng.shuffle(&mut loaded);
            let test_subset = config.is_test_subset(subset);
            let path = challenges_path(&config.input_file_prefix, subset);
            for task in loaded {
                // The reference fails on a puzzle without examples in a split (randint(0, 0)).
                let empty = if task.train.is_empty() {
                    Some("train")
                } else if test_subset && task.test.is_empty() {
                    Some("test")
                } else {
                    None
                };
                if let Some(field) = empty {
                    return Err(ArcError::Puzzle {
                        path,
                        puzzle: task.id,
                        field: field.into(),
                        msg: "no examples".into(),
                    });
                }
                let augs = plan_group(&task, config.num_aug, &mut rng);
                if augs.len() < config.num_aug + 1 {
                    incomplete_groups.push((task.id.clone(), augs.len()));
                }
                let index = tasks.len();
                if test_subset {
                    // A Python dict: a repeated id keeps its first position, takes the new value.
                    match test_pos.get(&task.id) {
                        Some(&p) => test_tasks[p] = index,
                        None => {
                            test_pos.insert(task.id.clone(), test_tasks.len());
                            test_tasks.push(index);
                        }
                    }
                }
                groups.push(PlannedGroup {
                    task: index,
                    test_subset,
                    augs,
                });
                tasks.push(task);
            }
        }
        // Identifiers in order of first appearance; the train split holds every puzzle.
        let start = config.puzzle_identifiers_start;
        let mut identifiers: Vec<String> = (0..start).map(|_| BLANK_IDENTIFIER.into()).collect();
        let mut seen = HashSet::new();
        for g in &groups {
            for aug in &g.augs {
                let name = puzzle_name(&tasks[g.task].id, aug);
                if seen.insert(name.clone()) {
                    identifiers.push(name);
                }
            }
        }
        Ok(Self {
            tasks,
            groups,
            test_tasks,
            identifiers,
            rng,
            identifiers_start: start,
            incomplete_groups,
        })
    }

    /// Puzzle names by identifier (identifiers.json); entries below `puzzle_identifiers_start`
    /// are `<blank>`.
    pub fn identifiers(&self) -> &[String] {
        &self.identifiers
    }

    /// The tasks of the test subsets in processing order (test_puzzles.json).
    pub fn test_tasks(&self) -> impl Iterator<Item = &ArcTask> {
        self.test_tasks.iter().map(|&i| &self.tasks[i])
    }

    /// Produces the splits, calling `sink` for each; consumes the plan (the RNG stream
    /// continues from planning, as in the reference).
    pub fn emit<S: SplitSink>(mut self, sink: &mut S) -> Result<(), ArcError> {
        let id_of: HashMap<&str, i32> = self
            .identifiers
            .iter()
            .enumerate()
            .skip(self.identifiers_start as usize)
            .map(|(i, n)| (n.as_str(), i as i32))
            .collect();
        let num_identifiers = self.identifiers.len();
        for split in SPLITS {
            let is_train = split == "train";
            let examples_of = |g: &PlannedGroup| -> Vec<&ArcExample> {
                let t = &self.tasks[g.task];
                if is_train {
                    if g.test_subset {
                        t.train.iter().collect()
                    } else {
                        t.all_examples().collect()
                    }
                } else if g.test_subset {
                    t.test.iter().collect()
                } else {
                    Vec::new()
                }
            };
            let total_examples: usize = self
                .groups
                .iter()
                .map(|g| examples_of(g).len() * g.augs.len())
                .sum();
            let in_split: Vec<&PlannedGroup> = self
                .groups
                .iter()
                .filter(|g| is_train || g.test_subset)
                .collect();
            if in_split.is_empty() {
                continue;
            }
            sink.begin(split, total_examples)?;
            let mut puzzle_identifiers = Vec::new();
            let mut puzzle_indices = vec![0i32];
            let mut group_indices = vec![0i32];
            let mut example_id = 0usize;
            let (mut inp, mut out) = ([0u8; SEQ_LEN], [0u8; SEQ_LEN]);
            for g in in_split {
                let examples = examples_of(g);
                let task = &self.tasks[g.task];
                for aug in &g.augs {
                    // Non-empty: checked when planning.
                    let n = examples.len() as u32;
                    let no_aug_id = self.rng.randint(0, n).unwrap_or(0) as usize;
                    for (i, ex) in examples.iter().enumerate() {
                        let (gi, go) = (ex.input.augment(aug), ex.output.augment(aug));
                        let (mut pad_r, mut pad_c) = (0, 0);
                        if is_train && i != no_aug_id {
                            let max_r = gi.rows.max(go.rows);
                            let max_c = gi.cols.max(go.cols);
                            // Bounds are >= 1: grids are at most 30 wide.
                            pad_r = self
                                .rng
                                .randint(0, (GRID_SIZE - max_r + 1) as u32)
                                .unwrap_or(0) as usize;
                            pad_c = self
                                .rng
                                .randint(0, (GRID_SIZE - max_c + 1) as u32)
                                .unwrap_or(0) as usize;
                        }
                        grid_to_seq(&gi, pad_r, pad_c, &mut inp);
                        grid_to_seq(&go, pad_r, pad_c, &mut out);
                        sink.push(&inp, &out)?;
                        example_id += 1;
                    }
                    puzzle_indices.push(example_id as i32);
                    let name = puzzle_name(&task.id, aug);
                    puzzle_identifiers.push(id_of.get(name.as_str()).copied().unwrap_or(0));
                }
                group_indices.push(puzzle_identifiers.len() as i32);
            }
            let total_puzzles = puzzle_identifiers.len();
            let meta = ArcSplitMetadata {
                num_puzzle_identifiers: num_identifiers,
                total_groups: group_indices.len() - 1,
                total_puzzles,
                mean_puzzle_examples: example_id as f64 / total_puzzles.max(1) as f64,
            };
            sink.finish(
                split,
                SplitIndices {
                    puzzle_identifiers,
                    puzzle_indices,
                    group_indices,
                },
                meta,
            )?;
        }
        Ok(())
    }
}

fn puzzle_name(id: &str, aug: &Augmentation) -> String {
    if *aug == Augmentation::IDENTITY {
        id.to_string()
    } else {
        aug.name(id)
    }
}

/// The per-puzzle and per-group index arrays of one split (`all__<field>.npy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitIndices {
    /// Identifier of each puzzle (`puzzle_identifiers`).
    pub puzzle_identifiers: Vec<i32>,
    /// First example of each puzzle, plus the total (`puzzle_indices`, length puzzles + 1).
    pub puzzle_indices: Vec<i32>,
    /// First puzzle of each group, plus the total (`group_indices`, length groups + 1).
    pub group_indices: Vec<i32>,
}

/// The split-dependent fields of `dataset.json` (the others are ARC constants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArcSplitMetadata {
    /// Number of identifiers including `<blank>` (the same in every split).
    pub num_puzzle_identifiers: usize,
    /// Groups in the split.
    pub total_groups: usize,
    /// Puzzles in the split.
    pub total_puzzles: usize,
    /// Examples per puzzle.
    pub mean_puzzle_examples: f64,
}

impl ArcSplitMetadata {
    /// The split's `dataset.json` (the ARC constants plus these counts).
    pub fn to_dataset_metadata(&self) -> DatasetMetadata {
        DatasetMetadata {
            pad_id: PAD as i32,
            ignore_label_id: Some(PAD as i32),
            blank_identifier_id: 0,
            vocab_size: VOCAB_SIZE as u32,
            seq_len: SEQ_LEN,
            num_puzzle_identifiers: self.num_puzzle_identifiers,
            total_groups: self.total_groups,
            mean_puzzle_examples: self.mean_puzzle_examples,
            total_puzzles: self.total_puzzles,
            sets: vec![SET_NAME.to_string()],
        }
    }
}

/// Receives a split's examples as they are produced.
pub trait SplitSink {
    /// A split starts; `total_examples` rows will follow.
    fn begin(&mut self, split: &str, total_examples: usize) -> Result<(), ArcError>;
    /// One example (input and label sequences of [`SEQ_LEN`] tokens).
    fn push(&mut self, input: &[u8; SEQ_LEN], label: &[u8; SEQ_LEN]) -> Result<(), ArcError>;
    /// The split ends with its index arrays and metadata.
    fn finish(
        &mut self,
        split: &str,
        indices: SplitIndices,
        meta: ArcSplitMetadata,
    ) -> Result<(), ArcError>;
}
