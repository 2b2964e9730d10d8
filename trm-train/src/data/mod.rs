//! The trainer's data pipeline: the reference's `puzzle_dataset.py` (`PuzzleDataset`).
//!
//! A [`PuzzleDataset`] reads one split (`train` or `test`) of one or more datasets in the
//! reference layout ([`trm_data::layout`]) and yields [`Batch`]es of `i32` tensors:
//!
//! - **train mode** ([`PuzzleDatasetConfig::test_set_mode`] false), per set and per call of
//!   [`PuzzleDataset::iter`] (one "iteration" of `pretrain.py`): the iteration counter goes up
//!   by one, a NumPy `Generator(Philox(seed + counter))` shuffles the groups `epochs_per_iter`
//!   times (the permutations concatenated); global batches are filled in that order with one
//!   random puzzle of each group and as many of that puzzle's examples as fit (distinct
//!   examples, chosen at random); the last, partial global batch is dropped; each rank takes
//!   its slice `rank * local .. (rank + 1) * local` of every global batch.
//! - **test mode**: every example of every set, in order, in global batches of
//!   `global_batch_size` rows, each rank taking its slice; a short local batch is padded to the
//!   local batch size with `pad_id` inputs, ignored labels and the blank puzzle identifier.
//!   [`DataBatch::real_rows`] counts the rows that are not padding. Padding never goes past the
//!   data: a set smaller than one global batch is read in one batch of its own size (rounded up
//!   to a multiple of the rank count), where the reference pads it to `global_batch_size` (its
//!   evaluation `q_halt_loss` then also sums over those padding rows, every other metric
//!   ignoring them). A set of at least `global_batch_size` examples is batched exactly as the
//!   reference batches it.
//!
//! Labels equal to the dataset's `ignore_label_id` become [`IGNORE_LABEL_ID`] (-100).
//!
//! # Reproducing the reference's batches
//!
//! Group shuffling and puzzle choice reproduce NumPy's `Generator(Philox)` bit for bit
//! ([`numpy_rng`]), so with the same seed and the same dataset, the groups and puzzles of every
//! batch are the reference's. The reference draws *which examples* of a multi-example puzzle
//! (ARC, `np.random.choice`) from NumPy's global legacy `RandomState`, which torch's DataLoader
//! worker seeds from torch's RNG state (not reproducible across frameworks); we draw them from
//! a legacy MT19937 seeded with `seed mod 2^32` ([`trm_data::arc::NumpyLegacyRng`]), so that the
//! reference gives exactly our batches after `np.random.seed(seed % 2**32)`
//! (`tests/fixtures/data/gen_reference_batches.py` does that). Two consequences: every rank
//! draws the same examples (in the reference, ranks may disagree on them and so on the global
//! batch), and single-example puzzles (Sudoku, Maze) are not affected at all.
//!
//! Several `dataset_paths` are merged as the reference merges them: their metadata must agree
//! (sequence length, vocabulary, padding, ignore label, blank identifier, set names and the
//! number of puzzle identifiers), `num_puzzle_identifiers`, `total_groups` and
//! `total_puzzles` are summed and `mean_puzzle_examples` is averaged weighted by
//! `total_puzzles`. The sets of the `i`-th path (`i > 0`) are named `<set><i>` (`all1`, ...).
//! Like the reference, puzzle identifiers are *not* offset: the second dataset's identifiers
//! index the same embedding rows as the first's, and the rows beyond the first dataset's
//! count stay unused.

pub mod numpy_rng;

use std::fmt;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};
use trm_data::arc::NumpyLegacyRng;
use trm_data::layout::{DatasetMetadata, LayoutError, METADATA_FILE, PuzzleSet, Split};

use self::numpy_rng::NumpyGenerator;

/// Label value that carries no loss (`IGNORE_LABEL_ID` of the reference's `models/losses.py`).
pub const IGNORE_LABEL_ID: i32 = -100;

/// What to read and how to batch it (`PuzzleDatasetConfig` of the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuzzleDatasetConfig {
    /// Base seed: iteration `k` (counted from 1) of a set shuffles with `seed + k`.
    pub seed: u64,
    /// Dataset directories (each holding `train/` and `test/`); several are merged.
    pub dataset_paths: Vec<PathBuf>,
    /// Rows of one global batch, over all ranks.
    pub global_batch_size: usize,
    /// Iterate every example in order (evaluation) instead of sampling groups.
    pub test_set_mode: bool,
    /// Epochs (group permutations) per iteration (per call of [`PuzzleDataset::iter`]).
    pub epochs_per_iter: usize,
    /// This process's rank, `0..num_replicas`.
    pub rank: usize,
    /// Number of ranks (data-parallel processes).
    pub num_replicas: usize,
}

/// Why a dataset could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// A dataset directory does not exist.
    MissingDataset {
        /// The directory.
        path: PathBuf,
    },
    /// A dataset directory has no `<split>/dataset.json`.
    MissingMetadata {
        /// The missing `dataset.json`.
        path: PathBuf,
    },
    /// The metadata of two data paths disagree.
    IncompatibleMetadata {
        /// What differs (`seq_len`, `sets`, ...).
        field: &'static str,
        /// The first data path and its value.
        first: (PathBuf, String),
        /// The disagreeing data path and its value.
        other: (PathBuf, String),
    },
    /// The configuration cannot be used (batch size, rank, no data path, ...).
    Config(String),
    /// The dataset files could not be read or are inconsistent.
    Layout(LayoutError),
    /// A set's contents cannot be sampled (message names the set).
    Invalid(String),
    /// libtorch failed to build a batch tensor.
    Tensor(tch::TchError),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HINT: &str =
            "build it with `trm-train build-dataset` (see `trm-train build-dataset --help`)";
        match self {
            Self::MissingDataset { path } => {
                write!(
                    f,
                    "dataset directory {} does not exist; {HINT}",
                    path.display()
                )
            }
            Self::MissingMetadata { path } => write!(
                f,
                "{} not found: not a dataset in the reference layout; {HINT}",
                path.display()
            ),
            Self::IncompatibleMetadata {
                field,
                first,
                other,
            } => write!(
                f,
                "incompatible datasets: {field} is {} in {} but {} in {}",
                first.1,
                first.0.display(),
                other.1,
                other.0.display()
            ),
            Self::Config(msg) | Self::Invalid(msg) => f.write_str(msg),
            Self::Layout(e) => write!(f, "{e}"),
            Self::Tensor(e) => write!(f, "building a batch tensor: {e}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Layout(e) => Some(e),
            Self::Tensor(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LayoutError> for DataError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

impl From<tch::TchError> for DataError {
    fn from(e: tch::TchError) -> Self {
        Self::Tensor(e)
    }
}

/// The `<dataset>/<split>` directory, checked to hold a `dataset.json`.
fn split_dir(dataset: &Path, split: &str) -> Result<PathBuf, DataError> {
    if !dataset.is_dir() {
        return Err(DataError::MissingDataset {
            path: dataset.to_path_buf(),
        });
    }
    let dir = dataset.join(split);
    let meta = dir.join(METADATA_FILE);
    if !meta.is_file() {
        return Err(DataError::MissingMetadata { path: meta });
    }
    Ok(dir)
}

/// Merges the metadata of several data paths as the reference does (see the module docs).
/// `metas` pairs each path with its split's metadata; at least one.
pub fn merge_metadata(metas: &[(PathBuf, DatasetMetadata)]) -> Result<DatasetMetadata, DataError> {
    let Some((first_path, first)) = metas.first() else {
        return Err(DataError::Config("no dataset path given".into()));
    };
    let mut merged = first.clone();
    merged.num_puzzle_identifiers = 0;
    merged.total_groups = 0;
    merged.total_puzzles = 0;
    let mut weighted_examples = 0.0;
    for (path, m) in metas {
        let checks: [(&'static str, String, String); 7] = [
            ("seq_len", first.seq_len.to_string(), m.seq_len.to_string()),
            (
                "vocab_size",
                first.vocab_size.to_string(),
                m.vocab_size.to_string(),
            ),
            ("pad_id", first.pad_id.to_string(), m.pad_id.to_string()),
            (
                "ignore_label_id",
                format!("{:?}", first.ignore_label_id),
                format!("{:?}", m.ignore_label_id),
            ),
            (
                "blank_identifier_id",
                first.blank_identifier_id.to_string(),
                m.blank_identifier_id.to_string(),
            ),
            ("sets", format!("{:?}", first.sets), format!("{:?}", m.sets)),
            (
                "num_puzzle_identifiers",
                first.num_puzzle_identifiers.to_string(),
                m.num_puzzle_identifiers.to_string(),
            ),
        ];
        for (field, a, b) in checks {
            if a != b {
                return Err(DataError::IncompatibleMetadata {
                    field,
                    first: (first_path.clone(), a),
                    other: (path.clone(), b),
                });
            }
        }
        weighted_examples += m.mean_puzzle_examples * m.total_puzzles as f64;
        merged.total_puzzles += m.total_puzzles;
        merged.total_groups += m.total_groups;
        merged.num_puzzle_identifiers += m.num_puzzle_identifiers;
    }
    if merged.total_puzzles == 0 {
        return Err(DataError::Config(format!(
            "{}: total_puzzles is 0 in every dataset",
            first_path.display()
        )));
    }
    merged.mean_puzzle_examples = weighted_examples / merged.total_puzzles as f64;
    Ok(merged)
}

/// One set of the merged dataset (`all`, `all1`, ...).
#[derive(Debug, Clone)]
struct NamedSet {
    name: String,
    data: PuzzleSet,
}

/// The sampled rows of one local batch, before they become tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Index of the set in [`PuzzleDataset::set_names`].
    pub set: usize,
    /// Example index (within the set) of each real row of this rank's batch.
    pub examples: Vec<usize>,
    /// Puzzle index (within the set) of each real row.
    pub puzzles: Vec<usize>,
    /// Rows of this rank's batch, padding included: the local batch size, or in test mode for
    /// a set smaller than one global batch, its share of that set (see the module docs).
    pub rows: usize,
    /// Real rows of the *global* batch (all ranks); the reference's third yielded value.
    /// In train mode always `global_batch_size`; in test mode smaller for the last batch.
    pub global_effective_batch_size: usize,
}

/// One local batch, padded to [`BatchPlan::rows`] rows (the local batch size
/// `global_batch_size / num_replicas`, less for a test set smaller than one global batch).
#[derive(Debug)]
pub struct Batch {
    /// Input tokens, `i32 [local_batch, seq_len]`.
    pub inputs: Tensor,
    /// Label tokens, `i32 [local_batch, seq_len]`, [`IGNORE_LABEL_ID`] where no loss applies
    /// (the dataset's ignore label and every padding row).
    pub labels: Tensor,
    /// Puzzle identifier of each row, `i32 [local_batch]` (the blank identifier on padding).
    pub puzzle_identifiers: Tensor,
}

impl Batch {
    /// The batch on `device` (tensors are built on the CPU).
    pub fn to_device(&self, device: tch::Device) -> Result<Self, DataError> {
        Ok(Self {
            inputs: self.inputs.f_to_device(device)?,
            labels: self.labels.f_to_device(device)?,
            puzzle_identifiers: self.puzzle_identifiers.f_to_device(device)?,
        })
    }
}

/// What the pipeline yields: the reference's `(set_name, batch, global_batch_size)` plus the
/// number of real rows of this rank's batch.
#[derive(Debug)]
pub struct DataBatch {
    /// The set the batch comes from (`all`, or `all1` for the second data path, ...).
    pub set_name: String,
    /// The tensors.
    pub batch: Batch,
    /// Real rows of the global batch (the reference's `global_batch_size` value).
    pub global_effective_batch_size: usize,
    /// Real rows of this rank's batch: its first `real_rows` rows; the rest is padding (only
    /// in test mode).
    pub real_rows: usize,
}

/// The reference's `PuzzleDataset` over one split, read into memory.
#[derive(Debug, Clone)]
pub struct PuzzleDataset {
    config: PuzzleDatasetConfig,
    split: String,
    metadata: DatasetMetadata,
    local_batch_size: usize,
    sets: Vec<NamedSet>,
    /// Sets started in train mode so far (the reference's `_iters`).
    iters: u64,
    /// Stands for NumPy's global RandomState (`np.random.choice` of examples).
    example_rng: NumpyLegacyRng,
}

impl PuzzleDataset {
    /// Reads `split` (`"train"` or `"test"`) of every data path of `config`.
    pub fn open(config: PuzzleDatasetConfig, split: &str) -> Result<Self, DataError> {
        if config.num_replicas == 0 {
            return Err(DataError::Config("num_replicas must be at least 1".into()));
        }
        if config.global_batch_size == 0 {
            return Err(DataError::Config(
                "global_batch_size must be at least 1".into(),
            ));
        }
        if !config.global_batch_size.is_multiple_of(config.num_replicas) {
            return Err(DataError::Config(format!(
                "global batch size {} is not a multiple of the number of ranks {}",
                config.global_batch_size, config.num_replicas
            )));
        }
        if config.rank >= config.num_replicas {
            return Err(DataError::Config(format!(
                "rank {} out of range for {} ranks",
                config.rank, config.num_replicas
            )));
        }
        if !config.test_set_mode && config.epochs_per_iter == 0 {
            return Err(DataError::Config(
                "epochs_per_iter must be at least 1".into(),
            ));
        }
        let mut dirs = Vec::with_capacity(config.dataset_paths.len());
        let mut metas = Vec::with_capacity(config.dataset_paths.len());
        for path in &config.dataset_paths {
            let dir = split_dir(path, split)?;
            metas.push((path.clone(), DatasetMetadata::read(&dir)?));
            dirs.push(dir);
        }
        let metadata = merge_metadata(&metas)?;
        // Each path's sets, taken out one by one below (no copy of the data).
        let mut splits: Vec<Vec<Option<PuzzleSet>>> = Vec::with_capacity(dirs.len());
        for dir in &dirs {
            let split_data = Split::open(dir)?;
            splits.push(split_data.sets.into_iter().map(|(_, s)| Some(s)).collect());
        }
        // The reference's order: for each set name, that set of every data path.
        let mut sets = Vec::new();
        for (k, set_name) in metadata.sets.iter().enumerate() {
            for (i, split_sets) in splits.iter_mut().enumerate() {
                let name = if i == 0 {
                    set_name.clone()
                } else {
                    format!("{set_name}{i}")
                };
                let data = split_sets
                    .get_mut(k)
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        DataError::Invalid(format!("{}: set {set_name} missing", dirs[i].display()))
                    })?;
                if data.num_examples() > u32::MAX as usize {
                    return Err(DataError::Invalid(format!(
                        "{}: set {set_name} has more than 2^32 examples",
                        dirs[i].display()
                    )));
                }
                sets.push(NamedSet { name, data });
            }
        }
        let local_batch_size = config.global_batch_size / config.num_replicas;
        // NumPy's legacy seeding takes 0..2^32: the low 32 bits of the seed.
        let example_rng = NumpyLegacyRng::seed((config.seed & 0xffff_ffff) as u32);
        Ok(Self {
            config,
            split: split.to_owned(),
            metadata,
            local_batch_size,
            sets,
            iters: 0,
            example_rng,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PuzzleDatasetConfig {
        &self.config
    }

    /// The split read (`train` or `test`).
    pub fn split(&self) -> &str {
        &self.split
    }

    /// The merged metadata (what the model is sized from: `seq_len`, `vocab_size`,
    /// `num_puzzle_identifiers`; and the step count: `total_groups`, `mean_puzzle_examples`).
    pub fn metadata(&self) -> &DatasetMetadata {
        &self.metadata
    }

    /// Rows of each yielded batch: `global_batch_size / num_replicas`.
    pub fn local_batch_size(&self) -> usize {
        self.local_batch_size
    }

    /// Names of the sets in iteration order (`all`, `all1`, ...).
    pub fn set_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.sets.iter().map(|s| s.name.as_str())
    }

    /// Sets started in train mode so far (the reference's `_iters`): the next set shuffles
    /// with seed `seed + iterations() + 1`.
    pub fn iterations(&self) -> u64 {
        self.iters
    }

    /// Sets the counter of [`iterations`](Self::iterations) (resuming a run). The example
    /// RNG is not rewound, so only single-example puzzles resume exactly.
    pub fn set_iterations(&mut self, iters: u64) {
        self.iters = iters;
    }

    /// The most examples one train-mode iteration can draw from each set, by set name:
    /// `epochs_per_iter` times, for every group, the examples of its largest puzzle (for
    /// one-example puzzles, exactly the set's examples times `epochs_per_iter`). A set whose
    /// count is below `global_batch_size` never fills a batch (the last, partial batch of an
    /// iteration is dropped), so it yields no training step at all.
    pub fn max_train_rows_per_iter(&self) -> Vec<(&str, usize)> {
        self.sets
            .iter()
            .map(|s| {
                let per_epoch: usize = (0..s.data.num_groups())
                    .map(|g| {
                        s.data
                            .group_puzzles(g)
                            .map(|p| s.data.puzzle_examples(p).len())
                            .max()
                            .unwrap_or(0)
                    })
                    .sum();
                (
                    s.name.as_str(),
                    per_epoch.saturating_mul(self.config.epochs_per_iter),
                )
            })
            .collect()
    }

    /// Global batches one train-mode iteration yields per set (drop-last), without drawing:
    /// for datasets whose puzzles have one example each (Sudoku, Maze) it is exact; with
    /// multi-example puzzles it is a lower bound (a group may fill several rows).
    pub fn min_train_batches_per_iter(&self) -> usize {
        self.sets
            .iter()
            .map(|s| {
                s.data.num_groups() * self.config.epochs_per_iter / self.config.global_batch_size
            })
            .sum()
    }

    /// One pass (the reference's `__iter__`): in train mode `epochs_per_iter` epochs of every
    /// set, in test mode every example once. Yields index plans; see [`iter`](Self::iter) for
    /// tensors.
    pub fn plans(&mut self) -> BatchPlans<'_> {
        BatchPlans {
            ds: self,
            set: 0,
            state: None,
        }
    }

    /// One pass as tensors (the reference's `__iter__` followed by `_collate_batch`).
    pub fn iter(&mut self) -> Batches<'_> {
        Batches {
            plans: self.plans(),
        }
    }

    /// The name of set `set`.
    pub fn set_name(&self, set: usize) -> Option<&str> {
        self.sets.get(set).map(|s| s.name.as_str())
    }

    /// Builds the tensors of a plan (the reference's `_collate_batch`): `i32` conversion,
    /// ignore label to [`IGNORE_LABEL_ID`], padding to the local batch size.
    pub fn collate(&self, plan: &BatchPlan) -> Result<Batch, DataError> {
        let set = &self
            .sets
            .get(plan.set)
            .ok_or_else(|| DataError::Invalid(format!("no set {}", plan.set)))?
            .data;
        let rows = plan.rows.max(plan.examples.len());
        let seq = self.metadata.seq_len;
        let m = &self.metadata;
        let mut inputs = vec![m.pad_id; rows * seq];
        let mut labels = vec![IGNORE_LABEL_ID; rows * seq];
        let mut ids = vec![m.blank_identifier_id; rows];
        for (r, (&e, &p)) in plan.examples.iter().zip(&plan.puzzles).enumerate() {
            if e >= set.num_examples() || p >= set.num_puzzles() {
                return Err(DataError::Invalid(format!(
                    "example {e} / puzzle {p} out of range"
                )));
            }
            for (dst, &t) in inputs[r * seq..(r + 1) * seq].iter_mut().zip(set.input(e)) {
                *dst = i32::from(t);
            }
            for (dst, &t) in labels[r * seq..(r + 1) * seq].iter_mut().zip(set.label(e)) {
                let t = i32::from(t);
                *dst = if Some(t) == m.ignore_label_id {
                    IGNORE_LABEL_ID
                } else {
                    t
                };
            }
            ids[r] = set.puzzle_identifiers[p];
        }
        let shape = [rows as i64, seq as i64];
        Ok(Batch {
            inputs: Tensor::f_from_slice(&inputs)?.f_reshape(shape)?,
            labels: Tensor::f_from_slice(&labels)?.f_reshape(shape)?,
            puzzle_identifiers: Tensor::f_from_slice(&ids)?.f_to_kind(Kind::Int)?,
        })
    }
}

/// Train-mode state of the set being iterated.
#[derive(Debug)]
struct TrainState {
    rng: NumpyGenerator,
    group_order: Vec<usize>,
    start: usize,
}

/// Test-mode state of the set being iterated.
#[derive(Debug)]
struct TestState {
    start: usize,
}

#[derive(Debug)]
enum SetState {
    Train(TrainState),
    Test(TestState),
}

/// Iterator over the [`BatchPlan`]s of one pass ([`PuzzleDataset::plans`]).
#[derive(Debug)]
pub struct BatchPlans<'a> {
    ds: &'a mut PuzzleDataset,
    set: usize,
    state: Option<SetState>,
}

impl BatchPlans<'_> {
    /// The dataset being iterated.
    pub fn dataset(&self) -> &PuzzleDataset {
        self.ds
    }

    fn start_set(&mut self) -> SetState {
        if self.ds.config.test_set_mode {
            return SetState::Test(TestState { start: 0 });
        }
        self.ds.iters += 1;
        let mut rng =
            NumpyGenerator::philox(u128::from(self.ds.config.seed) + u128::from(self.ds.iters));
        let n_groups = self.ds.sets[self.set].data.num_groups();
        let group_order = (0..self.ds.config.epochs_per_iter)
            .flat_map(|_| rng.permutation(n_groups))
            .collect();
        SetState::Train(TrainState {
            rng,
            group_order,
            start: 0,
        })
    }

    /// The next plan of the current set; `None` when the set is done.
    fn next_in_set(&mut self, state: &mut SetState) -> Result<Option<BatchPlan>, DataError> {
        let ds = &mut *self.ds;
        let set = &ds.sets[self.set].data;
        let gbs = ds.config.global_batch_size;
        let local = ds.local_batch_size;
        let rank = ds.config.rank;
        match state {
            SetState::Test(st) => {
                let total = set.num_examples();
                if st.start >= total {
                    return Ok(None);
                }
                // Never padded past the data: a set smaller than one global batch is one batch
                // of its size, rounded up to split evenly over the ranks (for a set of at least
                // `gbs` examples this is `gbs` itself).
                let world = ds.config.num_replicas;
                let gbs = gbs.min(total.div_ceil(world).saturating_mul(world));
                let local = gbs / world;
                let end = total.min(st.start + gbs);
                let local_start = st.start + rank * local;
                let local_end = (st.start + (rank + 1) * local).min(end);
                let examples: Vec<usize> = (local_start..local_end).collect();
                let puzzles = examples.iter().map(|&i| set.puzzle_of_example(i)).collect();
                let plan = BatchPlan {
                    set: self.set,
                    examples,
                    puzzles,
                    rows: local,
                    global_effective_batch_size: end - st.start,
                };
                st.start += gbs;
                Ok(Some(plan))
            }
            SetState::Train(st) => {
                // `_sample_batch`: fill one global batch in group order.
                let mut examples = Vec::with_capacity(gbs);
                let mut puzzles = Vec::with_capacity(gbs);
                while st.start < st.group_order.len() && examples.len() < gbs {
                    let g = st.group_order[st.start];
                    let (lo, hi) = (set.group_indices[g], set.group_indices[g + 1]);
                    let puzzle = st
                        .rng
                        .integers(i64::from(lo), i64::from(hi))
                        .and_then(|p| usize::try_from(p).ok())
                        .ok_or_else(|| {
                            DataError::Invalid(format!(
                                "set {}: group {g} has no puzzle",
                                ds.sets[self.set].name
                            ))
                        })?;
                    st.start += 1;
                    let range = set.puzzle_examples(puzzle);
                    let size = range.len();
                    let take = size.min(gbs - examples.len());
                    // np.random.choice(size, take, replace=False) = permutation(size)[:take].
                    let mut perm: Vec<usize> = (0..size).collect();
                    ds.example_rng.shuffle(&mut perm);
                    examples.extend(perm[..take].iter().map(|&k| range.start + k));
                    puzzles.extend(std::iter::repeat_n(puzzle, take));
                }
                // Drop the last, partial global batch.
                if examples.len() < gbs {
                    return Ok(None);
                }
                let slice = rank * local..(rank + 1) * local;
                Ok(Some(BatchPlan {
                    set: self.set,
                    examples: examples[slice.clone()].to_vec(),
                    puzzles: puzzles[slice].to_vec(),
                    rows: local,
                    global_effective_batch_size: gbs,
                }))
            }
        }
    }
}

impl Iterator for BatchPlans<'_> {
    type Item = Result<BatchPlan, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.set < self.ds.sets.len() {
            let mut state = match self.state.take() {
                Some(s) => s,
                None => self.start_set(),
            };
            match self.next_in_set(&mut state) {
                Ok(Some(plan)) => {
                    self.state = Some(state);
                    return Some(Ok(plan));
                }
                Ok(None) => self.set += 1,
                Err(e) => {
                    // Stop after an error: skip the rest of the pass.
                    self.set = self.ds.sets.len();
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Iterator over the [`DataBatch`]es of one pass ([`PuzzleDataset::iter`]).
#[derive(Debug)]
pub struct Batches<'a> {
    plans: BatchPlans<'a>,
}

impl Iterator for Batches<'_> {
    type Item = Result<DataBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let plan = match self.plans.next()? {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let ds = self.plans.dataset();
        let item = ds.collate(&plan).map(|batch| DataBatch {
            set_name: ds.set_name(plan.set).unwrap_or_default().to_owned(),
            batch,
            global_effective_batch_size: plan.global_effective_batch_size,
            real_rows: plan.examples.len(),
        });
        Some(item)
    }
}
