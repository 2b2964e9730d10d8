//! The config's `evaluators` (the reference's `evaluators/`): what evaluation feeds with every
//! test batch's predictions besides the loss head's metrics. One is implemented, the ARC
//! evaluator (`arc@ARC`, [`trm_data::arc_eval::ArcEvaluator`]): votes over the augmented copies
//! of each test input, `ARC/pass@K` metrics and a Kaggle `submission.json`.
//!
//! Its options, as the reference's `ARC.__init__` takes them: `submission_K` (attempts per test
//! input, 2), `pass_Ks` (the K of pass@K, `[1, 2, 5, 10, 100, 1000]`) and `aggregated_voting`
//! (true: the votes of every evaluation of a training run are pooled, as the reference does;
//! false: each evaluation votes afresh). A resumed run pools from its resume on (the reference
//! keeps no votes in its checkpoints either). An unknown evaluator name or option is an error
//! when the evaluators are built, before any training.
//!
//! Distributed, every rank feeds its shard of each test batch; the rows are all-gathered per
//! batch and rank 0's evaluator takes them in the global batch order, so that the votes (and
//! the order that breaks ties of count and confidence) are those of one process. (The
//! reference gathers each rank's votes after the evaluation, rank after rank: the same votes,
//! in another order, which only matters for exact ties.)

use std::path::Path;

use tch::{Device, Kind, Tensor};
use trm_data::arc_eval::{ArcEvaluator, DEFAULT_PASS_KS, DEFAULT_SUBMISSION_K};

use super::RunError;
use crate::config::EvaluatorConfig;
use crate::dist::ProcessGroup;

/// The reference name of the ARC evaluator (`evaluators/arc.py`, class `ARC`).
pub const ARC_EVALUATOR: &str = "arc@ARC";

/// The file the ARC evaluator writes (`submission.json`, Kaggle's format).
pub const SUBMISSION_FILE: &str = "submission.json";

/// What one evaluator reports after an evaluation (on rank 0).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorResult {
    /// The evaluator's class name (`ARC`), as the reference names its save folder
    /// (`evaluator_<class>_step_<N>`).
    pub class: String,
    /// Metrics, named as the reference logs them (`ARC/pass@1`, ...).
    pub metrics: Vec<(String, f64)>,
    /// Files to write: `(file name, contents)`.
    pub files: Vec<(String, String)>,
}

/// The ARC evaluator's options (the reference's `ARC.__init__` keyword arguments).
#[derive(Debug, Clone, PartialEq)]
struct ArcOptions {
    pass_ks: Vec<usize>,
    submission_k: usize,
    aggregated_voting: bool,
}

/// Reads and checks the options of an `arc@ARC` entry.
fn arc_options(cfg: &EvaluatorConfig, at: usize) -> Result<ArcOptions, RunError> {
    let mut o = ArcOptions {
        pass_ks: DEFAULT_PASS_KS.to_vec(),
        submission_k: DEFAULT_SUBMISSION_K,
        aggregated_voting: true,
    };
    let bad = |key: &str, what: &str, v: &dyn std::fmt::Debug| {
        RunError::Invalid(format!(
            "evaluators[{at}] ({}): {key} must be {what}, got {v:?}",
            cfg.name
        ))
    };
    let positive = |v: Option<i64>| v.and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0);
    for (key, value) in &cfg.options {
        match key.as_str() {
            "submission_K" => {
                o.submission_k = positive(value.as_i64())
                    .ok_or_else(|| bad(key, "a positive integer", value))?;
            }
            "pass_Ks" => {
                let list = value
                    .as_vec()
                    .ok_or_else(|| bad(key, "a list of positive integers", value))?;
                o.pass_ks = list
                    .iter()
                    .map(|v| positive(v.as_i64()))
                    .collect::<Option<Vec<usize>>>()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| bad(key, "a list of positive integers", value))?;
            }
            "aggregated_voting" => {
                o.aggregated_voting = value
                    .as_bool()
                    .ok_or_else(|| bad(key, "true or false", value))?;
            }
            other => {
                return Err(RunError::Invalid(format!(
                    "evaluators[{at}] ({}): unknown option {other}; the ARC evaluator takes \
                     submission_K, pass_Ks and aggregated_voting",
                    cfg.name
                )));
            }
        }
    }
    Ok(o)
}

/// Checks the `evaluators` of a config: known names (only [`ARC_EVALUATOR`]), each at most
/// once, valid options. Reads no file.
pub fn check_evaluators(configs: &[EvaluatorConfig]) -> Result<(), RunError> {
    for (i, cfg) in configs.iter().enumerate() {
        if cfg.name != ARC_EVALUATOR {
            return Err(RunError::Invalid(format!(
                "evaluators[{i}]: unknown evaluator {:?}; this trainer implements {ARC_EVALUATOR} \
                 (ARC pass@K and submission.json)",
                cfg.name
            )));
        }
        if configs[..i].iter().any(|c| c.name == cfg.name) {
            return Err(RunError::Invalid(format!(
                "evaluators lists {} twice (their metrics and files would collide)",
                cfg.name
            )));
        }
        arc_options(cfg, i)?;
    }
    Ok(())
}

/// The ARC evaluator of a run: on rank 0 the [`ArcEvaluator`], elsewhere only the options (the
/// rank sends its rows).
#[derive(Debug)]
struct ArcRun {
    options: ArcOptions,
    evaluator: Option<ArcEvaluator>,
}

/// The evaluators of a run or of an evaluation, fed batch by batch during evaluation.
#[derive(Debug, Default)]
pub struct Evaluators {
    arc: Option<ArcRun>,
}

impl Evaluators {
    /// Builds the evaluators of `configs` (checked by [`check_evaluators`]) over the dataset in
    /// `dataset_dir` (the first evaluation dataset, as the reference: identifiers.json and
    /// test_puzzles.json are read there, on rank 0 only), whose padding rows carry
    /// `blank_identifier_id`.
    pub fn load(
        configs: &[EvaluatorConfig],
        dataset_dir: &Path,
        blank_identifier_id: i64,
        rank: usize,
    ) -> Result<Self, RunError> {
        check_evaluators(configs)?;
        let mut out = Evaluators::default();
        for (i, cfg) in configs.iter().enumerate() {
            let options = arc_options(cfg, i)?;
            // Every rank checks that the files are there (rank 0 alone reads them), so that a
            // wrong dataset stops all ranks alike rather than leaving them waiting for rank 0.
            for file in [
                trm_data::layout::IDENTIFIERS_FILE,
                trm_data::arc::TEST_PUZZLES_FILE,
            ] {
                let path = dataset_dir.join(file);
                if !path.is_file() {
                    return Err(RunError::Invalid(format!(
                        "the ARC evaluator ({ARC_EVALUATOR}, in the config's evaluators) needs \
                         {} (an ARC dataset built by `trm-train build-dataset arc`), which is \
                         missing; for other datasets set evaluators=[]",
                        path.display()
                    )));
                }
            }
            let evaluator = if rank == 0 {
                let ev = ArcEvaluator::load(dataset_dir, blank_identifier_id).map_err(|e| {
                    RunError::Invalid(format!(
                        "the ARC evaluator ({ARC_EVALUATOR}, in the config's evaluators) cannot \
                         read its dataset {} (an ARC dataset built by `trm-train build-dataset \
                         arc`; for other datasets set evaluators=[]): {e}",
                        dataset_dir.display()
                    ))
                })?;
                Some(ev.with_ks(&options.pass_ks, options.submission_k))
            } else {
                None
            };
            out.arc = Some(ArcRun { options, evaluator });
        }
        Ok(out)
    }

    /// Whether there is no evaluator.
    pub fn is_empty(&self) -> bool {
        self.arc.is_none()
    }

    /// Starts an evaluation: forgets earlier votes unless they are pooled
    /// (`aggregated_voting`, the reference's `begin_eval`).
    pub fn begin_eval(&mut self) {
        if let Some(ArcRun {
            options,
            evaluator: Some(ev),
        }) = &mut self.arc
            && !options.aggregated_voting
        {
            ev.clear();
        }
    }

    /// Feeds one test batch (this rank's rows): `inputs` and `preds` `[b, seq]`,
    /// `puzzle_identifiers` and `q_halt_logits` `[b]`. With `pg`, a collective: every rank's
    /// rows are gathered and rank 0 takes them in rank order.
    pub(crate) fn update(
        &mut self,
        inputs: &Tensor,
        puzzle_identifiers: &Tensor,
        preds: &Tensor,
        q_halt_logits: &Tensor,
        pg: Option<&ProcessGroup>,
    ) -> Result<(), RunError> {
        let Some(arc) = &mut self.arc else {
            return Ok(());
        };
        let b = inputs.size().first().copied().unwrap_or(0);
        // One f64 row per example: input tokens, predicted tokens, identifier, halting logit
        // (identifiers below 2^53 and f32 logits are exact in f64).
        let packed = Tensor::f_cat(
            &[
                inputs.f_to_kind(Kind::Double)?.f_view([b, -1])?,
                preds.f_to_kind(Kind::Double)?.f_view([b, -1])?,
                puzzle_identifiers.f_to_kind(Kind::Double)?.f_view([b, 1])?,
                q_halt_logits.f_to_kind(Kind::Double)?.f_view([b, 1])?,
            ],
            1,
        )?
        .f_contiguous()?;
        let parts = match pg {
            Some(pg) => pg.all_gather(&packed)?,
            None => vec![packed],
        };
        let Some(ev) = &mut arc.evaluator else {
            return Ok(());
        };
        for part in parts {
            let part = part.f_to_device(Device::Cpu)?;
            let cols = part.size().get(1).copied().unwrap_or(0);
            let seq = (cols - 2) / 2;
            let tokens = |from: i64| -> Result<Vec<i64>, RunError> {
                let t = part.f_narrow(1, from, seq)?.f_to_kind(Kind::Int64)?;
                Ok(Vec::<i64>::try_from(&t.f_contiguous()?.f_view([-1])?)?)
            };
            let column = |at: i64| -> Result<Vec<f64>, RunError> {
                let t = part.f_select(1, at)?.f_contiguous()?;
                Ok(Vec::<f64>::try_from(&t)?)
            };
            let ids: Vec<i64> = column(2 * seq)?.into_iter().map(|v| v as i64).collect();
            ev.update_batch(&ids, &tokens(0)?, &tokens(seq)?, &column(2 * seq + 1)?)
                .map_err(|e| RunError::Invalid(format!("the ARC evaluator: {e}")))?;
        }
        Ok(())
    }

    /// The results of the votes so far (empty on ranks other than 0).
    pub fn results(&self) -> Vec<EvaluatorResult> {
        let Some(ArcRun {
            evaluator: Some(ev),
            ..
        }) = &self.arc
        else {
            return Vec::new();
        };
        let r = ev.result();
        vec![EvaluatorResult {
            class: "ARC".to_owned(),
            metrics: r.metrics(),
            files: vec![(SUBMISSION_FILE.to_owned(), r.submission_json())],
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;

    fn evaluators(yaml_list: &str) -> Vec<EvaluatorConfig> {
        TrainConfig::from_overrides(&[
            "data_paths=[x]".to_owned(),
            format!("evaluators={yaml_list}"),
        ])
        .expect("config")
        .evaluators
    }

    #[test]
    fn arc_options_are_read_and_checked() {
        let cfgs = evaluators("[{name: arc@ARC, pass_Ks: [1, 3], submission_K: 3}]");
        check_evaluators(&cfgs).expect("valid");
        let o = arc_options(&cfgs[0], 0).expect("options");
        assert_eq!(o.pass_ks, vec![1, 3]);
        assert_eq!(o.submission_k, 3);
        assert!(o.aggregated_voting);
        let o = arc_options(&evaluators("[{name: arc@ARC}]")[0], 0).expect("defaults");
        assert_eq!(o.pass_ks, DEFAULT_PASS_KS.to_vec());
        assert_eq!(o.submission_k, DEFAULT_SUBMISSION_K);
        for (list, needle) in [
            ("[{name: arc@ARC, pass_Ks: [0]}]", "pass_Ks"),
            ("[{name: arc@ARC, submission_K: two}]", "submission_K"),
            (
                "[{name: arc@ARC, aggregated_voting: 1}]",
                "aggregated_voting",
            ),
            ("[{name: arc@ARC, top_k: 1}]", "unknown option top_k"),
            ("[{name: sudoku@Sudoku}]", "unknown evaluator"),
            ("[{name: arc@ARC}, {name: arc@ARC}]", "twice"),
        ] {
            let err = check_evaluators(&evaluators(list))
                .expect_err(list)
                .to_string();
            assert!(err.contains(needle), "{list}: {err}");
        }
    }
}
