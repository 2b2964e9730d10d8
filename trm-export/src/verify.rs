//! `verify`: a float model against its fixed-point (or otherwise converted) counterpart on the
//! same puzzles, every ACT step: accuracy of each, agreement of their answers, cells and halting
//! steps, and the drift of the states y and z, with thresholds that make it a CI gate.
//!
//! Both models always run every ACT step (`halt_max_steps`), so the drift and the halting step
//! (the first step with `q_halt > 0`, `None` when it never is) are measured on every step; the
//! prediction of each model is taken where its own run would stop under the halting mode
//! ([`HaltMode::AllSteps`]: the last step; [`HaltMode::EarlyHalt`]: its halting step, as
//! `trm-export run --halt early` and the firmware do).
//!
//! Drift of a state at a step: over every puzzle and element, `max |b - a|` and
//! `mean |b - a|` where `a` is the float model's value and `b` the other model's (a fixed model's
//! integers times the file's state scale), and `rms(a)`; `rel_max = max / rms(a)` is the
//! scale-free figure the `max_state_drift` threshold bounds.
//!
//! Thresholds must be finite and in range ([`Thresholds::validate`]), and every comparison of
//! the gate is written so that a NaN figure fails it. Two checks are not options: puzzles whose
//! reference answer is not a solution of their question (the accuracies would be measured
//! against wrong answers) fail the gate as [`CONTRADICTING_ANSWERS`], with examples in the
//! report; and the report says, with a warning ([`Sources`]), when the two files do not record
//! the same source checkpoint (a stale file beside a fresh one).

use std::cmp::Ordering;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure};
use serde::Serialize;
use trm_data::arc_eval::ArcEvaluator;
use trm_nostd::act::should_stop;
use trm_nostd::{AnyEngine, DType, Model};

pub use trm_nostd::HaltMode;

use crate::engine::arena_for;
use crate::golden::halt_name;
use crate::puzzles::{PuzzleKind, TokenPuzzle};

/// The gate failure of puzzles whose reference answer contradicts their givens.
pub const CONTRADICTING_ANSWERS: &str = "answers-contradicting-givens";

/// Thresholds of the gate; `None` is not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Thresholds {
    /// Smallest fraction of puzzles with identical predicted grids.
    pub min_answer_agreement: Option<f64>,
    /// Smallest fraction of identical predicted cells.
    pub min_cell_agreement: Option<f64>,
    /// Largest drop of exact accuracy (fraction: 0.005 = half a point), float minus other.
    pub max_exact_drop: Option<f64>,
    /// Largest `rel_max` of y or z at any step.
    pub max_state_drift: Option<f64>,
    /// Smallest fraction of puzzles whose halting step agrees.
    pub min_halt_agreement: Option<f64>,
}

impl Thresholds {
    /// Checks that every threshold given is a finite number in its range: the fractions
    /// (agreements, exact drop) in [0, 1], the state drift >= 0. The error names the option.
    pub fn validate(&self) -> anyhow::Result<()> {
        let fractions = [
            ("min-answer-agreement", self.min_answer_agreement),
            ("min-cell-agreement", self.min_cell_agreement),
            ("min-halt-agreement", self.min_halt_agreement),
            ("max-exact-drop", self.max_exact_drop),
        ];
        for (name, v) in fractions {
            if let Some(v) = v {
                check_fraction(v).map_err(|e| anyhow!("--{name}: {e}"))?;
            }
        }
        if let Some(v) = self.max_state_drift {
            check_non_negative(v).map_err(|e| anyhow!("--max-state-drift: {e}"))?;
        }
        Ok(())
    }
}

/// `v` is a finite number in [0, 1].
pub fn check_fraction(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is not a fraction: give a finite number from 0 to 1"
        ))
    }
}

/// `v` is a finite number >= 0.
pub fn check_non_negative(v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite number >= 0"))
    }
}

/// The source record of one model file (see `trm_nostd::format::SourceRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// The checkpoint file the weights were exported from (`<folder>/<file>`).
    pub weights: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its CRC-32C, 8 hex digits.
    pub crc32c: String,
}

/// Where the two models come from, and the warning when that does not show one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sources {
    /// The float model's source record.
    pub float: Option<SourceInfo>,
    /// The other model's source record.
    pub fixed: Option<SourceInfo>,
    /// Whether both records name the same checkpoint file (same size and CRC-32C), or the
    /// other model records the float file itself as its source (quantized from it).
    pub same_checkpoint: bool,
    /// Why the pair may not be from one checkpoint (different records, or a record missing);
    /// `None` when it is.
    pub warning: Option<String>,
}

fn source_info(m: &Model<'_>) -> Option<SourceInfo> {
    m.source().map(|r| SourceInfo {
        weights: r.weights.to_string(),
        bytes: r.bytes,
        crc32c: format!("{:08x}", r.crc32c),
    })
}

/// Compares the source records of the two files (see [`Sources`]).
pub fn sources(float: &Model<'_>, fixed: &Model<'_>) -> Sources {
    let (f, q) = (float.source(), fixed.source());
    let digest = |r: &trm_nostd::format::SourceRecord<'_>| (r.bytes, r.crc32c);
    let same = match (f, q) {
        (Some(a), Some(b)) => digest(&a) == digest(&b),
        _ => false,
    };
    // Quantized from the float file itself (a float .trm without a record as the source).
    let from_float_file = q.is_some_and(|b| {
        b.bytes == float.bytes().len() as u64
            && b.crc32c == trm_reference::run_checkpoint::crc32c(float.bytes())
    });
    let name = |r: &trm_nostd::format::SourceRecord<'_>| {
        format!("{} (crc32c {:08x}, {} bytes)", r.weights, r.crc32c, r.bytes)
    };
    let warning = match (f, q) {
        _ if same || from_float_file => None,
        (Some(a), Some(b)) => Some(format!(
            "the two models were exported from different checkpoints: --float from {}, --fixed \
             from {}",
            name(&a),
            name(&b)
        )),
        (Some(_), None) => Some(
            "--fixed records no source checkpoint: it may not come from the checkpoint of \
             --float (re-export both with `trm-export export --dtype f32,fixed`)"
                .to_string(),
        ),
        (None, Some(_)) => Some(
            "--float records no source checkpoint: it may not be the model --fixed was \
             exported from (re-export both with `trm-export export --dtype f32,fixed`)"
                .to_string(),
        ),
        (None, None) => Some(
            "neither model records its source checkpoint: cannot tell whether they come from \
             the same one (files written by `trm-export export` record it)"
                .to_string(),
        ),
    };
    Sources {
        float: source_info(float),
        fixed: source_info(fixed),
        same_checkpoint: same || from_float_file,
        warning,
    }
}

/// A puzzle whose reference answer is not a solution of its question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContradictingAnswer {
    /// Its index among the puzzles.
    pub puzzle: usize,
    /// Why (the first violation).
    pub reason: String,
}

/// One model's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    /// Numeric scheme (`float:F32`, `fixed`, ...).
    pub scheme: String,
    /// CRC-32 of the `.trm` file.
    pub model_crc: String,
    /// Puzzles whose predicted grid equals the answer (of those with an answer).
    pub exact: usize,
    /// `exact / with_answer`, None without answers.
    pub exact_accuracy: Option<f64>,
    /// Cells equal to the answer / (cells per puzzle * with_answer), None without answers.
    pub cell_accuracy: Option<f64>,
    /// Predictions valid by the task's rule (Sudoku: solutions keeping the givens; maze: paths
    /// from start to goal; ARC: holding an output grid); None for a task without a rule.
    pub valid: Option<usize>,
    /// ARC: `(K, pass@K)` of the ARC evaluator (votes over the augmented copies of each test
    /// input) on this model's predictions; None for other tasks or without the dataset's
    /// identifiers and test puzzles.
    pub arc_pass: Option<Vec<(usize, f64)>>,
    /// Puzzles whose `q_halt` became positive at some step.
    pub halted: usize,
    /// Mean ACT steps a solve stops after under the halting mode.
    pub mean_steps: f64,
}

/// Drift of one state at one step (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Drift {
    /// Largest `|b - a|`.
    pub max_abs: f64,
    /// Mean `|b - a|`.
    pub mean_abs: f64,
    /// RMS of the float model's values.
    pub float_rms: f64,
    /// `max_abs / float_rms`.
    pub rel_max: f64,
}

/// The drift of y and z after one ACT step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepDrift {
    /// 1-based ACT step.
    pub step: u32,
    /// Drift of y.
    pub y: Drift,
    /// Drift of z.
    pub z: Drift,
}

/// A broken threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The threshold's name (as the command-line option without `--`).
    pub threshold: String,
    /// The limit.
    pub limit: f64,
    /// The measured value.
    pub value: f64,
}

/// `verify --original`: the float model before quantization-aware fine-tuning against the QAT
/// model's fixed export, on the same puzzles: what QAT cost in accuracy and what quantization
/// costs after it, side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OriginalComparison {
    /// The original (pre-QAT) float model's results.
    pub original: ModelStats,
    /// `original.exact_accuracy - float.exact_accuracy`: what the fine-tuning cost (negative:
    /// it gained), None without answers.
    pub qat_exact_cost: Option<f64>,
    /// Fraction of puzzles where the fixed model's predicted grid equals the original's.
    pub answer_agreement: f64,
    /// Fraction of identical predicted cells, fixed vs original.
    pub cell_agreement: f64,
    /// `original.exact_accuracy - fixed.exact_accuracy`, None without answers.
    pub exact_drop: Option<f64>,
    /// Fraction of puzzles whose halting step agrees, fixed vs original.
    pub halt_agreement: f64,
}

impl OriginalComparison {
    /// The comparison from `verify(original, fixed)`'s report and the main report's float
    /// model (the QAT float model).
    pub fn from_reports(vs_fixed: &VerifyReport, qat_float: &ModelStats) -> Self {
        let cost = match (vs_fixed.float.exact_accuracy, qat_float.exact_accuracy) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        OriginalComparison {
            original: vs_fixed.float.clone(),
            qat_exact_cost: cost,
            answer_agreement: vs_fixed.answer_agreement,
            cell_agreement: vs_fixed.cell_agreement,
            exact_drop: vs_fixed.exact_drop,
            halt_agreement: vs_fixed.halt_agreement,
        }
    }
}

/// Everything `verify` measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The task (`sudoku`, `maze`, `arc`, `tokens`).
    pub task: String,
    /// Puzzles run.
    pub puzzles: usize,
    /// Puzzles with a reference answer.
    pub with_answer: usize,
    /// Halting mode (`all` or `early`).
    pub halt: String,
    /// ACT steps run per puzzle (`halt_max_steps`).
    pub steps: u32,
    /// The float (reference) model.
    pub float: ModelStats,
    /// The other (fixed) model.
    pub fixed: ModelStats,
    /// Fraction of puzzles with identical predicted grids.
    pub answer_agreement: f64,
    /// Fraction of identical predicted cells.
    pub cell_agreement: f64,
    /// `float.exact_accuracy - fixed.exact_accuracy`, None without answers.
    pub exact_drop: Option<f64>,
    /// Fraction of puzzles whose halting step (first `q_halt > 0`, or never) agrees.
    pub halt_agreement: f64,
    /// Per ACT step.
    pub drift: Vec<StepDrift>,
    /// Largest `rel_max` of y and z over the steps.
    pub max_rel_drift: f64,
    /// Indices of the first puzzles (at most 20) whose predicted grids differ.
    pub disagreeing: Vec<usize>,
    /// Puzzles whose reference answer is not a solution of their question (a gate failure).
    pub contradicting_answers: usize,
    /// The first of them (at most 20).
    pub contradicting_examples: Vec<ContradictingAnswer>,
    /// The two files' source records, and a warning when they do not show one checkpoint.
    pub sources: Sources,
    /// The thresholds checked.
    pub thresholds: Thresholds,
    /// Broken thresholds (empty: the gate passes).
    pub failures: Vec<Failure>,
    /// `--original`: the pre-QAT float model against the fixed model (not gated).
    pub original: Option<OriginalComparison>,
    /// Wall-clock seconds of the runs.
    pub seconds: f64,
    /// Threads used.
    pub threads: usize,
}

/// Per puzzle, what both runs gave.
#[derive(Debug, Clone)]
struct PuzzleOutcome {
    pred: [Vec<u8>; 2],
    /// The halting logit (real value) at the step each prediction was taken.
    q_halt: [f64; 2],
    halt_step: [Option<u32>; 2],
    stop_step: [u32; 2],
    /// Per step: sums for y then z: (max |d|, sum |d|, sum a^2).
    sums: Vec<[(f64, f64, f64); 2]>,
}

fn scheme_name(m: &Model<'_>) -> String {
    match m.scheme() {
        trm_nostd::NumericScheme::Float(d) => format!("float:{d:?}"),
        trm_nostd::NumericScheme::Fixed {
            weights: DType::I16,
            ..
        } => "fixed:I16w".to_string(),
        s if s.is_fixed() => "fixed".to_string(),
        s => format!("{s:?}"),
    }
}

/// The real value of a halting logit as a step reports it (f32 bits, or an integer at the fixed
/// model's `q_scale`).
fn q_real(e: &AnyEngine<'_>, bits: u32) -> f64 {
    match e {
        AnyEngine::Float(_) => f64::from(f32::from_bits(bits)),
        AnyEngine::Fixed(f) => f64::from(bits as i32) * f64::from(f.q_scale()),
    }
}

fn run_one(
    engines: &mut [AnyEngine<'_>; 2],
    p: &TokenPuzzle,
    halt: HaltMode,
    bufs: &mut [Vec<f64>; 4],
) -> anyhow::Result<PuzzleOutcome> {
    let steps = engines[0].config().halt_max_steps;
    let seq = p.question.len();
    let mut out = PuzzleOutcome {
        pred: [vec![0; seq], vec![0; seq]],
        q_halt: [0.0; 2],
        halt_step: [None; 2],
        stop_step: [0; 2],
        sums: Vec::with_capacity(steps as usize),
    };
    for e in engines.iter_mut() {
        e.start(&p.question, p.puzzle_id)?;
    }
    for _ in 0..steps {
        for (k, e) in engines.iter_mut().enumerate() {
            let s = e.step();
            if s.halt && out.halt_step[k].is_none() {
                out.halt_step[k] = Some(s.step);
            }
            if out.stop_step[k] == 0 && should_stop(halt, s.step, steps, s.halt) {
                out.stop_step[k] = s.step;
                out.q_halt[k] = q_real(e, s.q_bits);
                e.predict(&mut out.pred[k])?;
            }
        }
        let [ya, za, yb, zb] = bufs;
        engines[0].states_real(ya, za)?;
        engines[1].states_real(yb, zb)?;
        let sums = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .fold((0f64, 0f64, 0f64), |(m, s, q), (&a, &b)| {
                    let d = (b - a).abs();
                    (m.max(d), s + d, q + a * a)
                })
        };
        out.sums.push([sums(ya, yb), sums(za, zb)]);
    }
    Ok(out)
}

/// Runs `float` and `fixed` on `puzzles` (see the module documentation) on `threads` threads
/// (0: as many as the machine has) and checks `thresholds`.
pub fn verify(
    float: &Model<'_>,
    fixed: &Model<'_>,
    puzzles: &[TokenPuzzle],
    halt: HaltMode,
    thresholds: &Thresholds,
    threads: usize,
) -> anyhow::Result<VerifyReport> {
    verify_with_arc(float, fixed, puzzles, halt, thresholds, threads, None)
}

/// [`verify`], and for ARC models the ARC evaluator's pass@K of each model's predictions
/// (`arc`: an evaluator loaded from the dataset the puzzles come from, see
/// [`ArcEvaluator::load`]).
pub fn verify_with_arc(
    float: &Model<'_>,
    fixed: &Model<'_>,
    puzzles: &[TokenPuzzle],
    halt: HaltMode,
    thresholds: &Thresholds,
    threads: usize,
    arc: Option<&ArcEvaluator>,
) -> anyhow::Result<VerifyReport> {
    let kind = PuzzleKind::of_model(float, "--float")?;
    let fixed_kind = PuzzleKind::of_model(fixed, "--fixed")?;
    ensure!(
        kind == fixed_kind,
        "the two models take different puzzles (--float: {} tokens of {} kinds, --fixed: {} of {})",
        kind.seq_len,
        kind.vocab,
        fixed_kind.seq_len,
        fixed_kind.vocab
    );
    if let Some((i, p)) = puzzles
        .iter()
        .enumerate()
        .find(|(_, p)| p.question.len() != kind.seq_len)
    {
        bail!(
            "puzzle {i} has {} tokens, the models take {}",
            p.question.len(),
            kind.seq_len
        );
    }
    if float.scheme().is_fixed() {
        bail!("--float: the model is a fixed-point one; give the float model it was made from");
    }
    let (cf, cq) = (float.config(), fixed.config());
    let same_shape = cf.hidden_size == cq.hidden_size
        && cf.seq_total() == cq.seq_total()
        && cf.halt_max_steps == cq.halt_max_steps
        && cf.l_layers == cq.l_layers
        && cf.mlp_t == cq.mlp_t;
    ensure!(
        same_shape,
        "the two models have different architectures (--float: D={} seq_total={} layers={} \
         mlp_t={} halt_max_steps={}; --fixed: D={} seq_total={} layers={} mlp_t={} \
         halt_max_steps={})",
        cf.hidden_size,
        cf.seq_total(),
        cf.l_layers,
        cf.mlp_t,
        cf.halt_max_steps,
        cq.hidden_size,
        cq.seq_total(),
        cq.l_layers,
        cq.mlp_t,
        cq.halt_max_steps
    );
    ensure!(!puzzles.is_empty(), "no puzzles to verify on");
    thresholds.validate()?;
    let with_answer = puzzles.iter().filter(|p| p.answer.is_some()).count();
    if with_answer < puzzles.len() && thresholds.max_exact_drop.is_some() {
        bail!(
            "--max-exact-drop needs every puzzle's answer ({} of {} have one)",
            with_answer,
            puzzles.len()
        );
    }
    let threads = crate::parallel::thread_count(threads, puzzles.len());
    let t0 = Instant::now();
    // Per thread: both engines, each in its own arena, and the real-valued state buffers.
    let mut arenas: Vec<[Vec<f32>; 2]> = (0..threads)
        .map(|_| [arena_for(float), arena_for(fixed)])
        .collect();
    let mut states = Vec::with_capacity(threads);
    for [sa, sb] in arenas.iter_mut() {
        let engines = [
            AnyEngine::new(float, sa).map_err(|e| anyhow!("--float: {e}"))?,
            AnyEngine::new(fixed, sb).map_err(|e| anyhow!("--fixed: {e}"))?,
        ];
        let n = engines[0].state_len();
        ensure!(
            engines[1].state_len() == n,
            "the models' states differ in size"
        );
        let bufs = [vec![0f64; n], vec![0f64; n], vec![0f64; n], vec![0f64; n]];
        states.push((engines, bufs));
    }
    let mut outcomes = Vec::with_capacity(puzzles.len());
    let mut failed = None;
    crate::parallel::for_each_ordered(
        states,
        puzzles.len(),
        |(engines, bufs), i| run_one(engines, &puzzles[i], halt, bufs),
        |_, outcome| match outcome {
            Ok(o) => {
                outcomes.push(o);
                true
            }
            // The first failing puzzle in puzzle order, as on one thread.
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mut report = summarize(
        float, fixed, &kind, puzzles, &outcomes, halt, thresholds, seconds, threads,
    );
    if let Some(arc) = arc {
        report.float.arc_pass = Some(arc_pass(arc, puzzles, &outcomes, 0)?);
        report.fixed.arc_pass = Some(arc_pass(arc, puzzles, &outcomes, 1)?);
    }
    Ok(report)
}

/// The ARC evaluator's pass@K of model `k`'s predictions.
fn arc_pass(
    arc: &ArcEvaluator,
    puzzles: &[TokenPuzzle],
    outcomes: &[PuzzleOutcome],
    k: usize,
) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut e = arc.clone();
    e.clear();
    for (p, o) in puzzles.iter().zip(outcomes) {
        e.update(i64::from(p.puzzle_id), &p.question, &o.pred[k], o.q_halt[k])
            .map_err(|err| anyhow!("ARC evaluator: {err}"))?;
    }
    Ok(e.result().pass_at)
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    float: &Model<'_>,
    fixed: &Model<'_>,
    kind: &PuzzleKind,
    puzzles: &[TokenPuzzle],
    outcomes: &[PuzzleOutcome],
    halt: HaltMode,
    thresholds: &Thresholds,
    seconds: f64,
    threads: usize,
) -> VerifyReport {
    let n = puzzles.len();
    let seq = kind.seq_len;
    let with_answer = puzzles.iter().filter(|p| p.answer.is_some()).count();
    let stats = |k: usize, m: &Model<'_>| {
        let (mut exact, mut cells, mut valid, mut halted, mut steps) = (0, 0, 0, 0, 0u64);
        for (p, o) in puzzles.iter().zip(outcomes) {
            let pred = &o.pred[k];
            if let Some(a) = &p.answer {
                let c = a.iter().zip(pred).filter(|(x, y)| x == y).count();
                cells += c;
                exact += usize::from(c == seq);
            }
            valid += usize::from(kind.check(pred, &p.question).is_ok());
            halted += usize::from(o.halt_step[k].is_some());
            steps += o.stop_step[k] as u64;
        }
        let frac = |v: usize, of: usize| (with_answer > 0).then(|| v as f64 / of as f64);
        ModelStats {
            scheme: scheme_name(m),
            model_crc: format!("{:08x}", trm_nostd::format::crc32(m.bytes())),
            exact,
            exact_accuracy: frac(exact, with_answer),
            cell_accuracy: frac(cells, with_answer * seq),
            valid: kind.has_rule().then_some(valid),
            arc_pass: None,
            halted,
            mean_steps: steps as f64 / n as f64,
        }
    };
    let fs = stats(0, float);
    let qs = stats(1, fixed);
    let mut same_answer = 0;
    let mut same_cells = 0;
    let mut same_halt = 0;
    let mut disagreeing = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let c = o.pred[0]
            .iter()
            .zip(&o.pred[1])
            .filter(|(a, b)| a == b)
            .count();
        same_cells += c;
        if c == seq {
            same_answer += 1;
        } else if disagreeing.len() < 20 {
            disagreeing.push(i);
        }
        same_halt += usize::from(o.halt_step[0] == o.halt_step[1]);
    }
    let steps = outcomes.first().map_or(0, |o| o.sums.len());
    let state_len = (float.config().seq_total() * float.config().d()) as f64;
    let mut drift = Vec::with_capacity(steps);
    for s in 0..steps {
        let mut d = [Drift::default(); 2];
        for (w, dw) in d.iter_mut().enumerate() {
            let (mut max, mut sum, mut sq) = (0f64, 0f64, 0f64);
            for o in outcomes {
                let (m, a, q) = o.sums[s][w];
                max = max.max(m);
                sum += a;
                sq += q;
            }
            let count = state_len * outcomes.len() as f64;
            let rms = (sq / count).sqrt();
            *dw = Drift {
                max_abs: max,
                mean_abs: sum / count,
                float_rms: rms,
                rel_max: if rms > 0.0 { max / rms } else { max },
            };
        }
        drift.push(StepDrift {
            step: s as u32 + 1,
            y: d[0],
            z: d[1],
        });
    }
    let max_rel_drift = drift
        .iter()
        .map(|d| d.y.rel_max.max(d.z.rel_max))
        .fold(0f64, f64::max);
    let exact_drop = match (fs.exact_accuracy, qs.exact_accuracy) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let mut contradicting_answers = 0;
    let mut contradicting_examples = Vec::new();
    for (i, p) in puzzles.iter().enumerate() {
        if let Some(Err(v)) = p.answer.as_ref().map(|a| kind.check(a, &p.question)) {
            contradicting_answers += 1;
            if contradicting_examples.len() < 20 {
                contradicting_examples.push(ContradictingAnswer {
                    puzzle: i,
                    reason: v,
                });
            }
        }
    }
    let mut report = VerifyReport {
        task: kind.task.name().to_string(),
        puzzles: n,
        with_answer,
        halt: halt_name(halt).to_string(),
        steps: float.config().halt_max_steps,
        float: fs,
        fixed: qs,
        answer_agreement: same_answer as f64 / n as f64,
        cell_agreement: same_cells as f64 / (n * seq) as f64,
        exact_drop,
        halt_agreement: same_halt as f64 / n as f64,
        drift,
        max_rel_drift,
        disagreeing,
        contradicting_answers,
        contradicting_examples,
        sources: sources(float, fixed),
        thresholds: *thresholds,
        failures: Vec::new(),
        original: None,
        seconds,
        threads,
    };
    report.failures = check(&report, thresholds);
    report
}

/// The thresholds `report` breaks, and [`CONTRADICTING_ANSWERS`] when a reference answer
/// contradicts its givens. Each comparison is written so that NaN (figure or limit) fails.
pub fn check(report: &VerifyReport, t: &Thresholds) -> Vec<Failure> {
    let mut out = Vec::new();
    if report.contradicting_answers > 0 {
        out.push(Failure {
            threshold: CONTRADICTING_ANSWERS.to_string(),
            limit: 0.0,
            value: report.contradicting_answers as f64,
        });
    }
    let mut at_least = |name: &str, limit: Option<f64>, value: f64| {
        if let Some(limit) = limit
            // A NaN figure compares as neither: it fails.
            && !matches!(
                value.partial_cmp(&limit),
                Some(Ordering::Greater | Ordering::Equal)
            )
        {
            out.push(Failure {
                threshold: name.to_string(),
                limit,
                value,
            });
        }
    };
    at_least(
        "min-answer-agreement",
        t.min_answer_agreement,
        report.answer_agreement,
    );
    at_least(
        "min-cell-agreement",
        t.min_cell_agreement,
        report.cell_agreement,
    );
    at_least(
        "min-halt-agreement",
        t.min_halt_agreement,
        report.halt_agreement,
    );
    let mut at_most = |name: &str, limit: Option<f64>, value: f64| {
        if let Some(limit) = limit
            && !matches!(
                value.partial_cmp(&limit),
                Some(Ordering::Less | Ordering::Equal)
            )
        {
            out.push(Failure {
                threshold: name.to_string(),
                limit,
                value,
            });
        }
    };
    at_most(
        "max-exact-drop",
        t.max_exact_drop,
        report.exact_drop.unwrap_or(f64::NAN),
    );
    at_most("max-state-drift", t.max_state_drift, report.max_rel_drift);
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v))
}

impl VerifyReport {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "verify: {} {} puzzles ({} with answers), halt={}, {} ACT steps, {:.2}s on {} threads",
            self.puzzles,
            self.task,
            self.with_answer,
            self.halt,
            self.steps,
            self.seconds,
            self.threads
        ));
        line(format!(
            "{:<10} {:<12} {:>10} {:>12} {:>12} {:>8} {:>8} {:>10}",
            "model", "scheme", "crc", "exact", "cells", "valid", "halted", "mean_steps"
        ));
        for (name, m) in [("float", &self.float), ("fixed", &self.fixed)] {
            line(format!(
                "{:<10} {:<12} {:>10} {:>12} {:>12} {:>8} {:>8} {:>10.3}",
                name,
                m.scheme,
                m.model_crc,
                format!("{} {}", m.exact, pct(m.exact_accuracy)),
                pct(m.cell_accuracy),
                m.valid.map_or("-".to_string(), |v| v.to_string()),
                m.halted,
                m.mean_steps
            ));
        }
        for (name, m) in [("float", &self.float), ("fixed", &self.fixed)] {
            if let Some(pass) = &m.arc_pass {
                let ks: Vec<String> = pass
                    .iter()
                    .map(|(k, v)| format!("pass@{k} {:.2}%", 100.0 * v))
                    .collect();
                line(format!("{name} ARC evaluator: {}", ks.join("  ")));
            }
        }
        line(format!(
            "exact drop {}  answer agreement {:.2}%  cell agreement {:.3}%  halting-step agreement {:.2}%",
            self.exact_drop
                .map_or("-".to_string(), |d| format!("{:+.2} points", 100.0 * d)),
            100.0 * self.answer_agreement,
            100.0 * self.cell_agreement,
            100.0 * self.halt_agreement
        ));
        if let Some(o) = &self.original {
            let m = &o.original;
            line(format!(
                "original (pre-QAT) float {} crc {}: exact {} {}, cells {}; QAT cost {}",
                m.scheme,
                m.model_crc,
                m.exact,
                pct(m.exact_accuracy),
                pct(m.cell_accuracy),
                o.qat_exact_cost
                    .map_or("-".to_string(), |d| format!("{:+.2} points", 100.0 * d))
            ));
            line(format!(
                "fixed vs original: exact drop {}  answer agreement {:.2}%  cell agreement {:.3}%  halting-step agreement {:.2}%",
                o.exact_drop
                    .map_or("-".to_string(), |d| format!("{:+.2} points", 100.0 * d)),
                100.0 * o.answer_agreement,
                100.0 * o.cell_agreement,
                100.0 * o.halt_agreement
            ));
        }
        line(format!(
            "{:>5} {:>11} {:>11} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9}",
            "step",
            "y max|d|",
            "y mean|d|",
            "y rms",
            "y rel",
            "z max|d|",
            "z mean|d|",
            "z rms",
            "z rel"
        ));
        for d in &self.drift {
            line(format!(
                "{:>5} {:>11.3e} {:>11.3e} {:>9.4} {:>9.4} {:>11.3e} {:>11.3e} {:>9.4} {:>9.4}",
                d.step,
                d.y.max_abs,
                d.y.mean_abs,
                d.y.float_rms,
                d.y.rel_max,
                d.z.max_abs,
                d.z.mean_abs,
                d.z.float_rms,
                d.z.rel_max
            ));
        }
        if !self.disagreeing.is_empty() {
            line(format!(
                "puzzles whose answers differ (first {}): {:?}",
                self.disagreeing.len(),
                self.disagreeing
            ));
        }
        if self.contradicting_answers > 0 {
            line(format!(
                "{} puzzles have a reference answer that is not a solution of their question \
                 (their accuracies are meaningless); first:",
                self.contradicting_answers
            ));
            for c in &self.contradicting_examples {
                line(format!("  puzzle {}: {}", c.puzzle, c.reason));
            }
        }
        if self.failures.is_empty() {
            line("gate: PASS".to_string());
        } else {
            for f in &self.failures {
                line(format!(
                    "gate: FAIL {}: {} (limit {})",
                    f.threshold, f.value, f.limit
                ));
            }
        }
        s
    }
}
