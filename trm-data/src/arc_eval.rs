//! The ARC evaluator (reference `evaluators/arc.py`): votes over the predictions of every
//! augmented copy of a test input, reports pass@K and writes a Kaggle submission.
//!
//! For each predicted example (rows whose puzzle identifier is the blank one are skipped):
//! 1. the puzzle name (identifiers.json) gives the original puzzle and the augmentation;
//! 2. input and prediction are cropped to the largest top-left rectangle of colour tokens
//!    ([`crop_seq`]) and un-augmented (inverse dihedral transform, then inverse colour map);
//! 3. the prediction is recorded under (original puzzle, original input grid) with its
//!    confidence `sigmoid(q_halt_logit)` computed in `f64`.
//!
//! [`ArcEvaluator::result`] then, for every test pair of test_puzzles.json, counts identical
//! predicted grids, orders them by (count, mean confidence) descending (ties keep first-seen
//! order: the reference's stable `sorted(.., reverse=True)`), and calls the pair solved at K when
//! the correct grid is among the first K. A puzzle scores the fraction of its test pairs solved;
//! pass@K is the mean over puzzles. A test pair with no prediction at all scores 0 and, as in the
//! reference, gets no entry in the submission.
//!
//! Checked against the reference evaluator itself (tests/arc_eval.rs, fixture made by
//! tests/fixtures/arc/gen_reference.py): same pass@K, byte-identical submission.json. One
//! deliberate difference: the reference drops padding rows from the batch but not from the
//! halting logits, so a padding row *before* valid rows would shift their confidences; here each
//! confidence stays with its row. The reference's loader pads only at the end of a batch, where
//! both agree.

use std::collections::HashMap;
use std::path::Path;

use crate::arc::{
    ArcError, ArcTask, Augmentation, Grid, TEST_PUZZLES_FILE, crop_seq, push_py_grid, push_py_str,
    read_test_puzzles,
};
use crate::layout::read_identifiers;

/// The reference's K values for pass@K.
pub const DEFAULT_PASS_KS: [usize; 6] = [1, 2, 5, 10, 100, 1000];
/// Attempts per test input in a Kaggle submission.
pub const DEFAULT_SUBMISSION_K: usize = 2;

/// An error of the ARC evaluator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArcEvalError {
    /// Reading identifiers.json or test_puzzles.json failed.
    #[error(transparent)]
    Arc(#[from] ArcError),
    /// Reading the dataset layout failed.
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// A prediction names an identifier outside identifiers.json.
    #[error("puzzle identifier {0} is outside identifiers.json")]
    UnknownIdentifier(i64),
    /// A sequence does not have 900 tokens.
    #[error("{what} of puzzle {name} has {len} tokens, expected 900")]
    SeqLen {
        /// `input` or `prediction`.
        what: &'static str,
        /// The puzzle name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// Batch arrays of different lengths.
    #[error("batch fields disagree: {0}")]
    Batch(String),
}

/// Confidence of a halting logit, as the reference: `sigmoid` in `f64`.
pub fn halt_confidence(q_halt_logit: f64) -> f64 {
    1.0 / (1.0 + (-q_halt_logit).exp())
}

/// Result of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct ArcEvalResult {
    /// `(K, pass@K)` for each K, in the evaluator's order.
    pub pass_at: Vec<(usize, f64)>,
    /// The submission: per test puzzle (in test_puzzles.json order), one list of attempts per
    /// test input that got predictions.
    pub submission: Vec<(String, Vec<Vec<Grid>>)>,
    /// Test inputs that got no prediction, as (puzzle, test index).
    pub missing: Vec<(String, usize)>,
}

impl ArcEvalResult {
    /// Metrics named as the reference logs them: `ARC/pass@K`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        self.pass_at
            .iter()
            .map(|(k, v)| (format!("ARC/pass@{k}"), *v))
            .collect()
    }

    /// `submission.json` as the reference writes it (`json.dump`): `{id: [{"attempt_1": grid,
    /// "attempt_2": grid}, ..]}`.
    pub fn submission_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (name, inputs)) in self.submission.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_py_str(&mut out, name);
            out.push_str(": [");
            for (j, attempts) in inputs.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                out.push('{');
                for (a, grid) in attempts.iter().enumerate() {
                    if a > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&format!("\"attempt_{}\": ", a + 1));
                    push_py_grid(&mut out, grid);
                }
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
        out
    }
}

/// Collects predictions and votes (reference class `ARC`).
#[derive(Debug, Clone)]
pub struct ArcEvaluator {
    identifiers: Vec<String>,
    /// Parsed identifiers: (original name, augmentation).
    parsed: Vec<Option<(String, Augmentation)>>,
    test_puzzles: Vec<ArcTask>,
    blank_identifier_id: i64,
    pass_ks: Vec<usize>,
    submission_k: usize,
    /// Distinct predicted grids, interned.
    grids: Vec<Grid>,
    grid_ids: HashMap<Grid, u32>,
    /// original puzzle -> original input grid -> (prediction id, confidence) in arrival order.
    preds: HashMap<String, HashMap<Grid, Vec<(u32, f64)>>>,
}

impl ArcEvaluator {
    /// An evaluator over `test_puzzles` with the puzzle names of identifiers.json, pass@K for
    /// [`DEFAULT_PASS_KS`] and [`DEFAULT_SUBMISSION_K`] attempts.
    pub fn new(
        identifiers: Vec<String>,
        test_puzzles: Vec<ArcTask>,
        blank_identifier_id: i64,
    ) -> Self {
        let parsed = identifiers
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i as i64 == blank_identifier_id {
                    return None;
                }
                Augmentation::parse_name(n)
                    .ok()
                    .map(|(base, aug)| (base.to_string(), aug))
            })
            .collect();
        Self {
            identifiers,
            parsed,
            test_puzzles,
            blank_identifier_id,
            pass_ks: DEFAULT_PASS_KS.to_vec(),
            submission_k: DEFAULT_SUBMISSION_K,
            grids: Vec::new(),
            grid_ids: HashMap::new(),
            preds: HashMap::new(),
        }
    }

    /// Loads identifiers.json and test_puzzles.json from a dataset directory.
    pub fn load(dataset_dir: &Path, blank_identifier_id: i64) -> Result<Self, ArcEvalError> {
        let identifiers = read_identifiers(dataset_dir)?;
        let test_puzzles = read_test_puzzles(&dataset_dir.join(TEST_PUZZLES_FILE))?;
        Ok(Self::new(identifiers, test_puzzles, blank_identifier_id))
    }

    /// Uses other K values for pass@K and another number of submission attempts (at least 1).
    pub fn with_ks(mut self, pass_ks: &[usize], submission_k: usize) -> Self {
        self.pass_ks = pass_ks.to_vec();
        self.submission_k = submission_k.max(1);
        self
    }

    /// The test puzzles.
    pub fn test_puzzles(&self) -> &[ArcTask] {
        &self.test_puzzles
    }

    /// Forgets every prediction (the reference's `begin_eval` without aggregated voting).
    pub fn clear(&mut self) {
        self.grids.clear();
        self.grid_ids.clear();
        self.preds.clear();
    }

    /// Records one predicted example: its puzzle identifier, input tokens (900), predicted
    /// tokens (900) and halting logit. Rows of the blank identifier are ignored (returns
    /// `false`).
    pub fn update<T: Copy + Into<i64>>(
        &mut self,
        puzzle_identifier: i64,
        input: &[T],
        pred: &[T],
        q_halt_logit: f64,
    ) -> Result<bool, ArcEvalError> {
        if puzzle_identifier == self.blank_identifier_id {
            return Ok(false);
        }
        let idx = usize::try_from(puzzle_identifier)
            .ok()
            .filter(|&i| i < self.identifiers.len())
            .ok_or(ArcEvalError::UnknownIdentifier(puzzle_identifier))?;
        let (base, aug) = match &self.parsed[idx] {
            Some(p) => p.clone(),
            None => {
                // Re-parse for the error message.
                Augmentation::parse_name(&self.identifiers[idx])?;
                return Err(ArcEvalError::UnknownIdentifier(puzzle_identifier));
            }
        };
        let seq_err = |what, len| ArcEvalError::SeqLen {
            what,
            name: self.identifiers[idx].clone(),
            len,
        };
        let input_grid = crop_seq(input)
            .ok_or_else(|| seq_err("input", input.len()))?
            .unaugment(&aug);
        let pred_grid = crop_seq(pred)
            .ok_or_else(|| seq_err("prediction", pred.len()))?
            .unaugment(&aug);
        let next = self.grids.len() as u32;
        let id = *self.grid_ids.entry(pred_grid.clone()).or_insert(next);
        if id == next {
            self.grids.push(pred_grid);
        }
        self.preds
            .entry(base)
            .or_default()
            .entry(input_grid)
            .or_default()
            .push((id, halt_confidence(q_halt_logit)));
        Ok(true)
    }

    /// Records a batch: `identifiers[i]` with rows `i` of `inputs` and `preds` (each
    /// `[batch, 900]` row major) and `q_halt_logits[i]`. Returns the rows recorded.
    pub fn update_batch<T: Copy + Into<i64>>(
        &mut self,
        identifiers: &[i64],
        inputs: &[T],
        preds: &[T],
        q_halt_logits: &[f64],
    ) -> Result<usize, ArcEvalError> {
        let n = identifiers.len();
        if q_halt_logits.len() != n
            || inputs.len() != n * crate::arc::SEQ_LEN
            || preds.len() != inputs.len()
        {
            return Err(ArcEvalError::Batch(format!(
                "{n} identifiers, {} q_halt logits, {} input tokens, {} prediction tokens",
                q_halt_logits.len(),
                inputs.len(),
                preds.len()
            )));
        }
        let l = crate::arc::SEQ_LEN;
        let mut recorded = 0;
        for i in 0..n {
            if self.update(
                identifiers[i],
                &inputs[i * l..(i + 1) * l],
                &preds[i * l..(i + 1) * l],
                q_halt_logits[i],
            )? {
                recorded += 1;
            }
        }
        Ok(recorded)
    }

    /// Appends the predictions of another evaluator (another rank), after this one's: the
    /// reference gathers every rank's predictions to rank 0 in rank order.
    pub fn absorb(&mut self, other: &ArcEvaluator) {
        for (name, inputs) in &other.preds {
            for (input, list) in inputs {
                let mut mapped = Vec::with_capacity(list.len());
                for &(gid, q) in list {
                    let grid = &other.grids[gid as usize];
                    let next = self.grids.len() as u32;
                    let id = *self.grid_ids.entry(grid.clone()).or_insert(next);
                    if id == next {
                        self.grids.push(grid.clone());
                    }
                    mapped.push((id, q));
                }
                self.preds
                    .entry(name.clone())
                    .or_default()
                    .entry(input.clone())
                    .or_default()
                    .extend(mapped);
            }
        }
    }

    /// Votes and scores (reference `result`).
    pub fn result(&self) -> ArcEvalResult {
        let mut correct = vec![0.0f64; self.pass_ks.len()];
        let mut submission = Vec::with_capacity(self.test_puzzles.len());
        let mut missing = Vec::new();
        for puzzle in &self.test_puzzles {
            let mut attempts_of_puzzle = Vec::new();
            let mut num_correct = vec![0usize; self.pass_ks.len()];
            for (t, pair) in puzzle.test.iter().enumerate() {
                let list = self.preds.get(&puzzle.id).and_then(|m| m.get(&pair.input));
                let Some(list) = list.filter(|l| !l.is_empty()) else {
                    missing.push((puzzle.id.clone(), t));
                    continue;
                };
                // (grid id, count, sum of confidences) in first-seen order.
                let mut order: Vec<(u32, usize, f64)> = Vec::new();
                let mut pos: HashMap<u32, usize> = HashMap::new();
                for &(gid, q) in list {
                    let p = *pos.entry(gid).or_insert_with(|| {
                        order.push((gid, 0, 0.0));
                        order.len() - 1
                    });
                    order[p].1 += 1;
                    order[p].2 += q;
                }
                let mut ranked: Vec<(u32, usize, f64)> = order
                    .into_iter()
                    .map(|(g, c, s)| (g, c, s / c as f64))
                    .collect();
                // Stable sort, descending by (count, mean confidence).
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)));
                let label_id = self.grid_ids.get(&pair.output);
                for (i, &k) in self.pass_ks.iter().enumerate() {
                    let hit = ranked.iter().take(k).any(|(g, _, _)| Some(g) == label_id);
                    num_correct[i] += usize::from(hit);
                }
                let mut attempts: Vec<Grid> = ranked
                    .iter()
                    .take(self.submission_k)
                    .map(|(g, _, _)| self.grids[*g as usize].clone())
                    .collect();
                if let Some(first) = attempts.first().cloned() {
                    attempts.resize(self.submission_k, first);
                }
                attempts_of_puzzle.push(attempts);
            }
            if !puzzle.test.is_empty() {
                for (c, n) in correct.iter_mut().zip(&num_correct) {
                    *c += *n as f64 / puzzle.test.len() as f64;
                }
            }
            submission.push((puzzle.id.clone(), attempts_of_puzzle));
        }
        let n = self.test_puzzles.len().max(1) as f64;
        ArcEvalResult {
            pass_at: self
                .pass_ks
                .iter()
                .zip(&correct)
                .map(|(&k, &c)| (k, c / n))
                .collect(),
            submission,
            missing,
        }
    }
}
