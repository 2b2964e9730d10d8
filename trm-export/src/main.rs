//! `trm-export`: converts TRM checkpoints into `.trm` model files, and runs, inspects, checks
//! and compares them on the host.
//!
//! Exit status: 0 success; 1 an error (bad input, I/O; the message says which); 3 a check
//! failed (`verify` broke a threshold, `golden --check` found a difference).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use trm_export::budget::{DEFAULT_MAX_MACS, parse_max_macs};
use trm_export::export::{self, CalibSettings, Format, Origin, reference_to_trm_with};
use trm_export::golden::{self, CheckOutcome};
use trm_export::puzzles::{PuzzleKind, PuzzleSource, read_dataset_split, to_tokens};
use trm_export::quantize::{DEFAULT_SILU_KNOTS, Int16Weights, QuantizeOptions};
use trm_export::solve::HostRun;
use trm_export::verify::{self, CONTRADICTING_ANSWERS, Thresholds};
use trm_fw_app::{Counter, HaltMode};
use trm_nostd::{DType, Model};
use trm_reference::checkpoint::{ImportOptions, WeightsChoice};

/// Exit status of a failed check (a broken `verify` threshold, a `golden --check` difference).
const EXIT_CHECK_FAILED: i32 = 3;

/// Converts TRM checkpoints into `.trm` model files, and runs, inspects and checks them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Storage type of the weights in the written file.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FloatType {
    F32,
    F16,
    Bf16,
}

impl From<FloatType> for DType {
    fn from(t: FloatType) -> Self {
        match t {
            FloatType::F32 => DType::F32,
            FloatType::F16 => DType::F16,
            FloatType::Bf16 => DType::BF16,
        }
    }
}

/// A format of `export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    F32,
    F16,
    Bf16,
    Fixed,
}

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::F32 => Format::F32,
            ExportFormat::F16 => Format::F16,
            ExportFormat::Bf16 => Format::Bf16,
            ExportFormat::Fixed => Format::Fixed,
        }
    }
}

/// Which weights of a run `export` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Weights {
    /// The exponential moving average (`ema.safetensors`); an error for a run without EMA.
    Ema,
    /// The trained weights (`model.safetensors`).
    Raw,
}

impl From<Weights> for WeightsChoice {
    fn from(w: Weights) -> Self {
        match w {
            Weights::Ema => WeightsChoice::Ema,
            Weights::Raw => WeightsChoice::Raw,
        }
    }
}

/// A float model's multiply-accumulates (`trm_nostd::float::kernels::Arith`).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FloatArith {
    /// A multiply and an add, two roundings: the float engine's specification, the bits of
    /// golden files and of the boards.
    Separate,
    /// Fused multiply-add, one rounding: faster on hosts (x86_64 FMA), bit-exact in itself on
    /// every target, but not the bits of `separate`.
    Fused,
}

impl From<FloatArith> for trm_nostd::float::kernels::Arith {
    fn from(a: FloatArith) -> Self {
        match a {
            FloatArith::Separate => Self::Separate,
            FloatArith::Fused => Self::Fused,
        }
    }
}

/// When a solve stops.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Halt {
    /// Every ACT step (the reference's evaluation).
    All,
    /// Stop after the first step with q_halt > 0.
    Early,
}

impl From<Halt> for HaltMode {
    fn from(h: Halt) -> Self {
        match h {
            Halt::All => HaltMode::AllSteps,
            Halt::Early => HaltMode::EarlyHalt,
        }
    }
}

/// A number parsed as a finite f64 (NaN and infinities refused), then checked by `check`.
fn finite(s: &str, check: fn(f64) -> Result<f64, String>) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    check(v)
}

/// A threshold that is a fraction: a finite number in [0, 1].
fn fraction(s: &str) -> Result<f64, String> {
    finite(s, verify::check_fraction)
}

/// A threshold that is a finite number >= 0.
fn non_negative(s: &str) -> Result<f64, String> {
    finite(s, verify::check_non_negative)
}

/// The quantization margin: a finite number >= 1.
fn margin(s: &str) -> Result<f64, String> {
    finite(s, |v| {
        if v.is_finite() && v >= 1.0 {
            Ok(v)
        } else {
            Err(format!("{v} is not a finite number >= 1"))
        }
    })
}

/// The run budget of a command that runs models (see `trm_export::budget`).
#[derive(Debug, Clone, Copy, clap::Args)]
struct BudgetArgs {
    /// Refuse, before any work, to run more than this many multiply-accumulates in all
    /// (puzzles x models x `halt_max_steps` ACT steps each; `inspect` shows a model's MACs per
    /// puzzle). Accepts `1e15`. The default, 1e14, is a few hours on one host core.
    #[arg(long, default_value_t = DEFAULT_MAX_MACS, value_parser = parse_max_macs)]
    max_macs: u64,
}

/// The threads of a command that solves puzzles (`run`, `golden`, `verify`).
#[derive(Debug, Clone, Copy, clap::Args)]
struct ThreadArgs {
    /// Solve the puzzles on this many threads (0: one per core). The output is the same, byte
    /// for byte, for any number (timing figures aside).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Quantization options of `export` (for its fixed format) and `quantize`.
#[derive(Debug, clap::Args)]
struct QuantArgs {
    /// Fixed: headroom over each calibrated maximum (1.25: 25% beyond the largest value).
    #[arg(long, default_value_t = QuantizeOptions::default().margin, value_parser = margin)]
    margin: f64,
    /// Fixed: weight matrices stored as int16 instead of int8: `none`, `all`, or a comma list
    /// of `mixer` (mlp_t token mixer / attention projections), `mlp` (channel SwiGLU), `heads`
    /// (lm_head, q_head). Twice the flash for those matrices, finer rounding.
    #[arg(long, default_value = "none")]
    int16_weights: Int16Weights,
    /// Fixed: entries of each SiLU table (257, 513, 1025, 2049 or 4097; 2 bytes each per
    /// SwiGLU): more knots, smaller interpolation error.
    #[arg(long, default_value_t = DEFAULT_SILU_KNOTS)]
    silu_knots: usize,
    /// Fixed: keep the SwiGLU products exact into the down projection instead of rounding them
    /// to int16 (more accurate; the down projection runs twice).
    #[arg(long)]
    exact_products: bool,
}

impl QuantArgs {
    fn options(&self) -> QuantizeOptions {
        QuantizeOptions {
            margin: self.margin,
            int16: self.int16_weights,
            silu_knots: self.silu_knots,
            exact_products: self.exact_products,
        }
    }
}

/// Puzzles of a command: exactly one of the three.
#[derive(Debug, clap::Args)]
struct PuzzleArgs {
    /// A CSV with a `question` column (and optionally `answer`, `source`).
    #[arg(long, conflicts_with_all = ["puzzle", "dataset"])]
    puzzles: Option<PathBuf>,
    /// A dataset split in the reference layout (e.g. `data/sudoku/test`).
    #[arg(long, conflicts_with = "puzzle")]
    dataset: Option<PathBuf>,
    /// One puzzle: 81 characters, `.` or `0` for blanks.
    #[arg(long)]
    puzzle: Option<String>,
}

impl PuzzleArgs {
    fn source(self) -> anyhow::Result<PuzzleSource> {
        PuzzleSource::from_options(self.puzzles, self.dataset, self.puzzle)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes `.trm` files of several formats from one checkpoint: our trainer's run folder
    /// (the latest complete `step_N` is read) or `step_N` folder, a reference checkpoint folder
    /// or file, or a float `.trm` file. `-o DIR` (an existing folder, or ending in `/`) writes
    /// `DIR/model-<format>.trm`; `-o PREFIX` writes `PREFIX-<format>.trm`.
    Export {
        /// The checkpoint (folder or file) or float `.trm` file.
        path: PathBuf,
        /// Output folder or prefix.
        #[arg(short, long)]
        output: PathBuf,
        /// Formats to write: repeat the option or give a list (`--dtype f32,fixed`).
        #[arg(
            long = "dtype",
            visible_alias = "formats",
            value_enum,
            value_delimiter = ',',
            default_value = "f32"
        )]
        dtype: Vec<ExportFormat>,
        /// Fixed: calibration puzzles from a dataset split (best the training split, so
        /// held-out puzzles stay unseen). Default: the checkpoint's `data_paths` training split.
        #[arg(long, conflicts_with = "calib_puzzles")]
        calib_dataset: Option<PathBuf>,
        /// Fixed: calibration puzzles from a CSV with a `question` column.
        #[arg(long)]
        calib_puzzles: Option<PathBuf>,
        /// Fixed: how many calibration puzzles.
        #[arg(long, default_value_t = 64)]
        calib: usize,
        #[command(flatten)]
        quant: QuantArgs,
        /// Puzzle tokens per example, when the dataset's dataset.json is not found and the
        /// weights do not tell (attention models).
        #[arg(long)]
        seq_len: Option<u32>,
        /// Which weights of the run: `ema` (the exponential moving average) or `raw` (the
        /// trained weights). Default: what the trainer evaluates, the EMA when the checkpoint
        /// has it (`ema: true`), else the trained weights. The files record which.
        #[arg(long, value_enum)]
        weights: Option<Weights>,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Imports a reference (SamsungSAILMontreal/TinyRecursiveModels) checkpoint: a folder with
    /// `all_config.yaml` and `step_N` files (the latest is read), or one `step_N` file.
    ImportReference {
        /// Checkpoint folder or file.
        path: PathBuf,
        /// Output `.trm` file.
        #[arg(short, long)]
        output: PathBuf,
        /// Storage type of the weights.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: FloatType,
        /// Puzzle tokens per example, when the dataset's dataset.json is not found and the
        /// weights do not tell (attention models).
        #[arg(long)]
        seq_len: Option<u32>,
    },
    /// Writes Sudoku puzzles of a dataset split as a CSV (`source,question,answer,rating`, the
    /// Sudoku-Extreme layout that `run --puzzles` and the firmware build read).
    Puzzles {
        /// A dataset split in the reference layout (e.g. `data/sudoku/test`).
        #[arg(long)]
        dataset: PathBuf,
        /// How many examples to write.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output CSV.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Quantizes a float `.trm` model into a fixed-point one (int8 or int16 weights, int16 activations,
    /// format version 2): calibrates activation ranges with the float network on Sudoku puzzles
    /// (every ACT step, no halting), then writes the `Fixed` file and prints the scales.
    Quantize {
        /// The float model file (f32, f16 or bf16).
        #[arg(short, long)]
        model: PathBuf,
        /// Calibration puzzles: a dataset split in the reference layout (best the training
        /// split, so held-out puzzles stay unseen).
        #[arg(long, conflicts_with = "puzzles", required_unless_present = "puzzles")]
        dataset: Option<PathBuf>,
        /// Calibration puzzles: a CSV with a `question` column.
        #[arg(long)]
        puzzles: Option<PathBuf>,
        /// How many calibration puzzles.
        #[arg(long, default_value_t = 64)]
        calib: usize,
        #[command(flatten)]
        quant: QuantArgs,
        /// Output `.trm` file.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Prints a `.trm` file's config, scheme, sizes (flash bytes, parameters), RAM arenas
    /// (float f32 arena, fixed i16/i32 arena, firmware app scratch) and tensors.
    Inspect {
        /// The model file.
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Runs a `.trm` model on Sudoku puzzles with the host engine of its scheme (float or
    /// fixed), through the same app code as the firmware: the `TRM-` lines equal the device's
    /// bit for bit (timing aside). With boards, each prediction is followed by its checks
    /// (valid grid, givens kept, answer matched); a summary line with the exact accuracy ends
    /// the output. Exits 1 when the run had errors (bad model or puzzle string; each also on
    /// stderr, with its puzzle).
    Run {
        /// The model file.
        #[arg(short, long)]
        model: PathBuf,
        #[command(flatten)]
        source: PuzzleArgs,
        /// How many puzzles (CSV rows or dataset examples) to solve.
        #[arg(long, default_value_t = 3)]
        limit: usize,
        /// `all`: every ACT step (the reference's evaluation); `early`: stop when q_halt > 0.
        #[arg(long, value_enum, default_value = "all")]
        halt: Halt,
        /// Print a `TRM-STEP` line with state digests after every ACT step.
        #[arg(long)]
        step_digests: bool,
        /// Do not print the boards (nor their checks), only the `TRM-` lines and the summary.
        #[arg(long)]
        no_boards: bool,
        /// A float model's multiply-accumulates (a fixed model ignores it). `fused` runs the
        /// host's FMA: about 1.5x faster on x86_64, other bits than golden files.
        #[arg(long, value_enum, default_value = "separate")]
        float_arith: FloatArith,
        /// Also write the engine's numbers of every ACT step of every puzzle (logits, q_halt,
        /// q_continue, y, z; a fixed model's raw integers and its scales) to this safetensors
        /// file (names in docs/EXPORT.md). The puzzles are solved a second time for it, on one
        /// thread, in order, whatever `--threads` says; the whole dump is held in memory.
        #[arg(long)]
        dump: Option<PathBuf>,
        #[command(flatten)]
        threads: ThreadArgs,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Writes a golden file: per-ACT-step digests of y and z and the final tokens of a model on
    /// a puzzle set (the app's lines of `run --step-digests --no-boards`; format in
    /// docs/EXPORT.md). With `--check FILE`, re-runs the file's puzzles on the model and exits 3
    /// at the first differing line.
    Golden {
        /// The model file.
        #[arg(short, long)]
        model: PathBuf,
        #[command(flatten)]
        source: PuzzleArgs,
        /// How many puzzles.
        #[arg(long, default_value_t = 16)]
        limit: usize,
        /// `all`: every ACT step; `early`: stop when q_halt > 0.
        #[arg(long, value_enum, default_value = "all")]
        halt: Halt,
        /// Output golden file.
        #[arg(
            short,
            long,
            required_unless_present = "check",
            conflicts_with = "check"
        )]
        output: Option<PathBuf>,
        /// Check this golden file against the model instead of writing one.
        #[arg(long)]
        check: Option<PathBuf>,
        #[command(flatten)]
        threads: ThreadArgs,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Float vs fixed on the same puzzles, every ACT step: cell and exact accuracy of each,
    /// answer, cell and halting-step agreement, per-step drift of y and z. Prints a table
    /// (and JSON with --json); exits 3 naming each broken threshold: a CI gate. Reference
    /// answers that contradict their givens fail the gate too; a warning says when the two
    /// files do not record the same source checkpoint.
    Verify {
        /// The float model (the reference).
        #[arg(long = "float")]
        float: PathBuf,
        /// The fixed-point model (or another conversion of the float one, e.g. bf16).
        #[arg(long = "fixed")]
        fixed: PathBuf,
        /// The float model before quantization-aware fine-tuning (issue 16): also compared
        /// with the fixed model, and its exact accuracy with the QAT float model's (`--float`),
        /// so the report shows what QAT cost and what quantization costs after it. Not gated.
        #[arg(long)]
        original: Option<PathBuf>,
        #[command(flatten)]
        source: PuzzleArgs,
        /// How many puzzles.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// How predictions are taken: `all` after every ACT step, `early` at each model's own
        /// halting step.
        #[arg(long, value_enum, default_value = "all")]
        halt: Halt,
        /// Write the report as JSON to this file (`-` for stdout).
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        threads: ThreadArgs,
        /// Fail below this fraction of identical predicted grids (e.g. 0.99).
        #[arg(long, value_parser = fraction)]
        min_answer_agreement: Option<f64>,
        /// Fail below this fraction of identical predicted cells (e.g. 0.999).
        #[arg(long, value_parser = fraction)]
        min_cell_agreement: Option<f64>,
        /// Fail when exact accuracy drops by more than this fraction (0.005 = half a point).
        #[arg(long, value_parser = fraction)]
        max_exact_drop: Option<f64>,
        /// Fail when max |fixed - float| of y or z at any step exceeds this multiple of the
        /// float state's RMS.
        #[arg(long, value_parser = non_negative)]
        max_state_drift: Option<f64>,
        /// Fail below this fraction of puzzles whose halting step agrees.
        #[arg(long, value_parser = fraction)]
        min_halt_agreement: Option<f64>,
        #[command(flatten)]
        budget: BudgetArgs,
    },
}

/// Wall-clock nanoseconds (since one instant, for every thread's clone).
#[derive(Clone)]
struct Clock(std::time::Instant);

impl Counter for Clock {
    fn now(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn unit(&self) -> &'static str {
        "ns"
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> anyhow::Result<Model<'a>> {
    Model::parse(bytes).with_context(|| format!("{} is not a valid .trm file", path.display()))
}

/// The ARC evaluator of an ARC dataset split's dataset (`identifiers.json` and
/// `test_puzzles.json` beside the split), for `verify`'s pass@K; None for other tasks or puzzle
/// sources (a CSV, one puzzle).
fn arc_evaluator(
    kind: &PuzzleKind,
    source: &PuzzleSource,
) -> anyhow::Result<Option<trm_data::arc_eval::ArcEvaluator>> {
    let (trm_nostd::Task::Arc, PuzzleSource::Dataset(split)) = (kind.task, source) else {
        return Ok(None);
    };
    let root = split.parent().unwrap_or(Path::new("."));
    let meta = trm_data::layout::DatasetMetadata::read(split)
        .with_context(|| format!("reading {}", split.display()))?;
    let e = trm_data::arc_eval::ArcEvaluator::load(root, i64::from(meta.blank_identifier_id))
        .with_context(|| format!("loading the ARC evaluator of {}", root.display()))?;
    Ok(Some(e))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn quantize_cmd(
    model: &Path,
    source: PuzzleSource,
    calib: usize,
    opts: QuantizeOptions,
    output: &Path,
    budget: BudgetArgs,
) -> anyhow::Result<()> {
    let margin = opts.margin;
    let bytes = read(model)?;
    let m = parse(&bytes, model)?;
    if m.scheme().is_fixed() {
        anyhow::bail!("{} is already a fixed-point model", model.display());
    }
    let rows = source.load(calib, &PuzzleKind::of(m.config()))?;
    trm_export::budget::check(m.config(), rows.len(), budget.max_macs, "calibration")?;
    // The float file's own source record is kept; without one, the float file is the source.
    let fallback = Origin::new(
        model,
        bytes.len() as u64,
        trm_reference::run_checkpoint::crc32c(&bytes),
    );
    let q = export::quantize_float_model_recording(&bytes, &rows, &opts, Some(&fallback), None)
        .with_context(|| format!("quantizing {}", model.display()))?;
    write(output, &q.bytes)?;
    for w in &q.warnings {
        eprintln!("warning: {w}");
    }
    print!(
        "{}",
        export::calibration_text(&q.calibration, m.config().mlp_t, margin)
    );
    let [x, s, l, qs] = q.scales;
    println!("scales (real = int * scale): x {x:.3e}, y/z {s:.3e}, logits {l:.3e}, q {qs:.3e}");
    println!(
        "fixed engine RAM arena: {} bytes ({} i16 + {} i32)",
        q.arena.bytes(),
        q.arena.i16s,
        q.arena.i32s
    );
    println!(
        "wrote {} ({} bytes, float model {} bytes; calibrated on {} puzzles x {} ACT steps in {:.1}s)",
        output.display(),
        q.bytes.len(),
        bytes.len(),
        q.calibration.puzzles,
        q.calibration.steps,
        q.seconds
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn export_cmd(
    path: &Path,
    output: &Path,
    formats: Vec<ExportFormat>,
    calib_dataset: Option<PathBuf>,
    calib_puzzles: Option<PathBuf>,
    calib: usize,
    quantize: QuantizeOptions,
    seq_len: Option<u32>,
    choice: Option<Weights>,
    budget: BudgetArgs,
) -> anyhow::Result<()> {
    let options = ImportOptions {
        seq_len,
        weights: choice.map_or(WeightsChoice::Evaluated, WeightsChoice::from),
    };
    let weights = export::load_float_weights(path, &options)?;
    let settings = CalibSettings {
        source: match (calib_dataset, calib_puzzles) {
            (Some(d), _) => Some(PuzzleSource::Dataset(d)),
            (None, Some(c)) => Some(PuzzleSource::Csv(c)),
            (None, None) => None,
        },
        count: calib,
        quantize,
        max_macs: budget.max_macs,
    };
    let formats: Vec<Format> = formats.into_iter().map(Format::from).collect();
    if formats.contains(&Format::Bf16) {
        eprintln!(
            "note: bf16 is a storage type: the engines widen the weights to f32 and compute in \
             f32 (the results differ from a PyTorch model computing in bf16)"
        );
    }
    println!("read {}", weights.source.display());
    println!("source recorded in the files: {}", weights.origin);
    for w in export::export(&weights, &formats, &settings, output)? {
        println!(
            "wrote {} ({}, {} bytes)",
            w.path.display(),
            w.format.name(),
            w.bytes
        );
        if let Some((q, source)) = &w.quantized {
            let from = match source {
                PuzzleSource::Dataset(d) => d.display().to_string(),
                PuzzleSource::Csv(c) => c.display().to_string(),
                PuzzleSource::One(_) => "one puzzle".to_string(),
            };
            println!(
                "  calibrated on {} puzzles of {from} x {} ACT steps in {:.1}s (margin {}, int16 \
                 weights: {}, SiLU knots {}, exact products: {})",
                q.calibration.puzzles,
                q.calibration.steps,
                q.seconds,
                q.frozen.as_ref().map_or(quantize.margin, |r| r.margin),
                q.int16.name(),
                quantize.silu_knots,
                quantize.exact_products
            );
            let [x, s, l, qs] = q.scales;
            println!(
                "  scales (real = int * scale): x {x:.3e}, y/z {s:.3e}, logits {l:.3e}, q {qs:.3e}"
            );
            if let Some(g) = &q.grid {
                println!("  {g}");
            }
            if let Some(r) = &q.frozen {
                println!(
                    "  activation QAT (quant.activations: int16): the network input, SwiGLU and \
                     attention sites use the ranges frozen at step {} on {} puzzles (margin {}), \
                     not calibrated ones",
                    r.step, r.puzzles, r.margin
                );
            }
            for w in &q.warnings {
                eprintln!("warning: {w}");
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn golden_cmd(
    model: &Path,
    source: PuzzleArgs,
    limit: usize,
    halt: Halt,
    output: Option<PathBuf>,
    check: Option<PathBuf>,
    threads: ThreadArgs,
    budget: BudgetArgs,
) -> anyhow::Result<i32> {
    let bytes = read(model)?;
    let config = *parse(&bytes, model)?.config();
    if let Some(file) = check {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let g = golden::parse_golden(&text).with_context(|| format!("in {}", file.display()))?;
        trm_export::budget::check(&config, g.puzzles.len(), budget.max_macs, "golden check")?;
        return Ok(match golden::check_golden(&g, &bytes, threads.threads)? {
            CheckOutcome::Same { lines } => {
                println!(
                    "golden check passed: {} puzzles, {} ACT steps, {lines} lines identical ({})",
                    g.puzzles.len(),
                    g.step_count(),
                    file.display()
                );
                0
            }
            CheckOutcome::OtherModel { golden, model: crc } => {
                eprintln!(
                    "golden check FAILED: {} was written for the model with CRC-32 {golden:08x}; \
                     {} has {crc:08x}",
                    file.display(),
                    model.display()
                );
                EXIT_CHECK_FAILED
            }
            CheckOutcome::Differs(m) => {
                eprintln!("golden check FAILED ({}): {m}", file.display());
                EXIT_CHECK_FAILED
            }
            CheckOutcome::BadPuzzle { line_no, reason } => {
                eprintln!(
                    "golden check FAILED ({}): line {line_no}: {reason} (the file was edited: \
                     `golden` never writes such a puzzle)",
                    file.display()
                );
                EXIT_CHECK_FAILED
            }
        });
    }
    let rows = source.source()?.load(limit, &PuzzleKind::of(&config))?;
    trm_export::budget::check(&config, rows.len(), budget.max_macs, "golden run")?;
    let text = golden::write_golden(&bytes, &rows, halt.into(), threads.threads)
        .with_context(|| format!("running {}", model.display()))?;
    let out = output.context("give -o FILE or --check FILE")?;
    write(&out, text.as_bytes())?;
    let g = golden::parse_golden(&text).context("the written golden file does not parse")?;
    println!(
        "wrote {} ({} puzzles, {} ACT steps, model crc {:08x})",
        out.display(),
        g.puzzles.len(),
        g.step_count(),
        g.model_crc
    );
    Ok(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Export {
            path,
            output,
            dtype,
            calib_dataset,
            calib_puzzles,
            calib,
            quant,
            seq_len,
            weights,
            budget,
        } => {
            export_cmd(
                &path,
                &output,
                dtype,
                calib_dataset,
                calib_puzzles,
                calib,
                quant.options(),
                seq_len,
                weights,
                budget,
            )?;
            0
        }
        Command::ImportReference {
            path,
            output,
            dtype,
            seq_len,
        } => {
            let options = ImportOptions {
                seq_len,
                ..ImportOptions::default()
            };
            let bytes = reference_to_trm_with(&path, dtype.into(), &options)?;
            write(&output, &bytes)?;
            println!("wrote {} ({} bytes)", output.display(), bytes.len());
            0
        }
        Command::Inspect { model, json } => {
            let bytes = read(&model)?;
            let m = parse(&bytes, &model)?;
            let report = trm_export::inspect::inspect(&m)
                .with_context(|| format!("inspecting {}", model.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("file: {}", model.display());
                print!("{}", report.text());
            }
            0
        }
        Command::Quantize {
            model,
            dataset,
            puzzles,
            calib,
            quant,
            output,
            budget,
        } => {
            let source = PuzzleSource::from_options(puzzles, dataset, None)?;
            quantize_cmd(&model, source, calib, quant.options(), &output, budget)?;
            0
        }
        Command::Puzzles {
            dataset,
            limit,
            output,
        } => {
            let (kind, rows) = read_dataset_split(&dataset, limit)?;
            // Through the csv crate: a name holding a comma or a quote is quoted.
            let mut w = csv::Writer::from_writer(Vec::new());
            let sudoku = kind == PuzzleKind::SUDOKU;
            let last = if sudoku { "rating" } else { "puzzle_id" };
            w.write_record(["source", "question", "answer", last])?;
            for r in &rows {
                let answer = r.answer.as_deref().unwrap_or("");
                let id = r.puzzle_id.to_string();
                let last = if sudoku { "0" } else { id.as_str() };
                w.write_record([r.name.as_str(), &r.question, answer, last])?;
            }
            let csv = w
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
            write(&output, &csv)?;
            println!("wrote {} puzzles to {}", rows.len(), output.display());
            0
        }
        Command::Run {
            model,
            source,
            limit,
            halt,
            step_digests,
            no_boards,
            float_arith,
            dump,
            threads,
            budget,
        } => {
            let bytes = read(&model)?;
            // A model that does not parse is reported by the app (its TRM-ERROR line).
            let config = Model::parse(&bytes).ok().map(|m| *m.config());
            let kind = config.map_or(PuzzleKind::SUDOKU, |c| PuzzleKind::of(&c));
            let rows = source.source()?.load(limit, &kind)?;
            if let Some(c) = &config {
                // With --dump every puzzle is solved twice.
                let runs = rows.len() * if dump.is_some() { 2 } else { 1 };
                trm_export::budget::check(c, runs, budget.max_macs, "run")?;
            }
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            let mut stderr = std::io::stderr();
            let how = HostRun {
                halt: halt.into(),
                step_digests,
                boards: !no_boards,
                threads: threads.threads,
                float_arith: float_arith.into(),
            };
            let sum = trm_export::solve::run_puzzles(
                &mut lock,
                &mut stderr,
                &Clock(std::time::Instant::now()),
                &bytes,
                &rows,
                &how,
            );
            if let Some(path) = dump {
                trm_export::dump::write_dump(&path, &bytes, &rows, halt.into(), float_arith.into())
                    .with_context(|| format!("--dump {}", path.display()))?;
                eprintln!("wrote the engine's numbers to {}", path.display());
            }
            i32::from(!sum.report.success())
        }
        Command::Golden {
            model,
            source,
            limit,
            halt,
            output,
            check,
            threads,
            budget,
        } => golden_cmd(&model, source, limit, halt, output, check, threads, budget)?,
        Command::Verify {
            float,
            fixed,
            original,
            source,
            limit,
            halt,
            json,
            threads,
            min_answer_agreement,
            min_cell_agreement,
            max_exact_drop,
            max_state_drift,
            min_halt_agreement,
            budget,
        } => {
            let fb = read(&float)?;
            let qb = read(&fixed)?;
            let fm = parse(&fb, &float)?;
            let qm = parse(&qb, &fixed)?;
            let kind = PuzzleKind::of_model(&fm, "--float")?;
            let source = source.source()?;
            let rows = source.load(limit, &kind)?;
            // Both models, every puzzle, every ACT step.
            for m in [&fm, &qm] {
                trm_export::budget::check(m.config(), 2 * rows.len(), budget.max_macs, "verify")?;
            }
            let puzzles = to_tokens(&rows, &kind)?;
            let arc = arc_evaluator(&kind, &source)?;
            let thresholds = Thresholds {
                min_answer_agreement,
                min_cell_agreement,
                max_exact_drop,
                max_state_drift,
                min_halt_agreement,
            };
            let mut report = verify::verify_with_arc(
                &fm,
                &qm,
                &puzzles,
                halt.into(),
                &thresholds,
                threads.threads,
                arc.as_ref(),
            )?;
            if let Some(path) = &original {
                let ob = read(path)?;
                let om = parse(&ob, path)?;
                trm_export::budget::check(om.config(), rows.len(), budget.max_macs, "verify")?;
                let vs = verify::verify_with_arc(
                    &om,
                    &qm,
                    &puzzles,
                    halt.into(),
                    &Thresholds::default(),
                    threads.threads,
                    arc.as_ref(),
                )
                .with_context(|| format!("--original {}", path.display()))?;
                report.original =
                    Some(verify::OriginalComparison::from_reports(&vs, &report.float));
                report.seconds += vs.seconds;
            }
            print!("{}", report.table());
            if let Some(w) = &report.sources.warning {
                eprintln!("verify: warning: {w}");
            }
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                if path.as_os_str() == "-" {
                    println!("{text}");
                } else {
                    write(&path, text.as_bytes())?;
                }
            }
            if report.failures.is_empty() {
                0
            } else {
                for f in &report.failures {
                    if f.threshold == CONTRADICTING_ANSWERS {
                        let names: Vec<String> = report
                            .contradicting_examples
                            .iter()
                            .map(|c| {
                                let name = rows.get(c.puzzle).map_or("?", |r| r.name.as_str());
                                format!("puzzle {} (`{name}`): {}", c.puzzle, c.reason)
                            })
                            .collect();
                        eprintln!(
                            "verify: {} puzzles have a reference answer that is not a solution \
                             of their question; first: {}",
                            report.contradicting_answers,
                            names.join("; ")
                        );
                    } else {
                        eprintln!(
                            "verify: threshold --{} broken: {} (limit {})",
                            f.threshold, f.value, f.limit
                        );
                    }
                }
                EXIT_CHECK_FAILED
            }
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
