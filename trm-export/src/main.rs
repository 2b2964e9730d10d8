//! `trm-export`: converts TRM checkpoints into `.trm` model files.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use trm_export::puzzles::{PuzzleRow, read_csv, read_dataset_split};
use trm_export::quantize::{Calibration, QuantizeOptions, calibrate, quantize};
use trm_export::reference::{ImportOptions, reference_to_trm_with};
use trm_fw_app::{Console, Counter, HaltMode, Options, Puzzle};
use trm_nostd::fixed::FixedEngine;
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};
use trm_nostd::{DType, FloatEngine, Model};

/// Converts TRM checkpoints into `.trm` model files.
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

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Quantizes a float `.trm` model into a fixed-point one (int8 weights, int16 activations,
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
        /// Headroom over each calibrated maximum (1.25: 25% beyond the largest value seen).
        #[arg(long, default_value_t = QuantizeOptions::default().margin)]
        margin: f64,
        /// Output `.trm` file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Prints a `.trm` file's config, scheme, sizes (flash bytes, RAM arena) and tensors.
    Inspect {
        /// The model file.
        model: PathBuf,
    },
    /// Runs a `.trm` model on Sudoku puzzles with the host engine of its scheme (float or
    /// fixed), through the same app code as the firmware: the `TRM-` lines equal the device's
    /// bit for bit (timing aside).
    Run {
        /// The model file.
        #[arg(short, long)]
        model: PathBuf,
        /// A CSV with a `question` column (and optionally `answer`, `source`).
        #[arg(long, conflicts_with_all = ["puzzle", "dataset"])]
        puzzles: Option<PathBuf>,
        /// A dataset split in the reference layout (e.g. `data/sudoku/test`).
        #[arg(long, conflicts_with = "puzzle")]
        dataset: Option<PathBuf>,
        /// One puzzle: 81 characters, `.` or `0` for blanks.
        #[arg(long)]
        puzzle: Option<String>,
        /// How many puzzles (CSV rows or dataset examples) to solve.
        #[arg(long, default_value_t = 3)]
        limit: usize,
        /// `all`: every ACT step (the reference's evaluation); `early`: stop when q_halt > 0.
        #[arg(long, value_enum, default_value = "all")]
        halt: Halt,
        /// Print a `TRM-STEP` line with state digests after every ACT step.
        #[arg(long)]
        step_digests: bool,
        /// Do not print the boards, only the `TRM-` lines.
        #[arg(long)]
        no_boards: bool,
    },
}

/// When a solve stops.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Halt {
    All,
    Early,
}

struct Stdout;

impl Console for Stdout {
    fn write_str(&mut self, s: &str) {
        print!("{s}");
    }
}

/// Wall-clock nanoseconds.
struct Clock(std::time::Instant);

impl Counter for Clock {
    fn now(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
    fn unit(&self) -> &'static str {
        "ns"
    }
}

fn inspect(path: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let model = Model::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let c = model.config();
    println!("file: {}", path.display());
    println!("{}", model.summary());
    println!("config: {c:?}");
    println!("scheme: {:?}", model.scheme());
    if model.scheme().is_fixed() {
        let need = FixedEngine::scratch_len(c);
        println!(
            "fixed engine RAM arena: {} bytes ({} i16 + {} i32)",
            need.bytes(),
            need.i16s,
            need.i32s
        );
        println!(
            "firmware app scratch: {} bytes (i16 part rounded to whole f32 words)",
            trm_fw_app::scratch_len(&model) * 4
        );
    } else {
        let arena = FloatEngine::scratch_len(c) * 4;
        let fast = FloatEngine::scratch_len_fast(c) * 4;
        println!("float engine RAM arena: {arena} bytes (minimum), {fast} bytes (fastest)");
    }
    println!("MACs per ACT step: {}", c.macs_per_act_step());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(
    model: &std::path::Path,
    puzzles: Option<PathBuf>,
    dataset: Option<PathBuf>,
    puzzle: Option<String>,
    limit: usize,
    halt: Halt,
    step_digests: bool,
    boards: bool,
) -> anyhow::Result<bool> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let rows: Vec<PuzzleRow> = match (puzzles, dataset, puzzle) {
        (Some(csv), _, _) => read_csv(&csv, limit)?,
        (None, Some(dir), _) => read_dataset_split(&dir, limit)?,
        (None, None, Some(q)) => vec![PuzzleRow {
            name: "cli".into(),
            question: q,
            answer: None,
        }],
        (None, None, None) => anyhow::bail!("give --puzzles CSV, --dataset DIR or --puzzle STRING"),
    };
    let list: Vec<Puzzle<'_>> = rows
        .iter()
        .map(|r| Puzzle {
            name: &r.name,
            question: &r.question,
            answer: r.answer.as_deref(),
        })
        .collect();
    // The fastest scratch size the model allows (results are identical for any size).
    let scratch_len = Model::parse(&bytes)
        .map(|m| trm_fw_app::scratch_len_fast(&m))
        .unwrap_or(0);
    let mut scratch = vec![0f32; scratch_len];
    let opts = Options {
        board: "host",
        halt: match halt {
            Halt::All => HaltMode::AllSteps,
            Halt::Early => HaltMode::EarlyHalt,
        },
        step_digests,
        boards,
    };
    let report = trm_fw_app::run(
        &mut Stdout,
        &mut Clock(std::time::Instant::now()),
        Some(&bytes),
        &list,
        &mut scratch,
        &opts,
    );
    Ok(report.success())
}

fn quantize_cmd(
    model: &std::path::Path,
    dataset: Option<PathBuf>,
    puzzles: Option<PathBuf>,
    calib: usize,
    margin: f64,
    output: &std::path::Path,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let m = Model::parse(&bytes).with_context(|| format!("parsing {}", model.display()))?;
    if m.scheme().is_fixed() {
        anyhow::bail!("{} is already a fixed-point model", model.display());
    }
    if !(margin.is_finite() && margin >= 1.0) {
        anyhow::bail!("--margin must be a finite number >= 1 (got {margin})");
    }
    let c = *m.config();
    if c.seq_len as usize != CELLS {
        anyhow::bail!("not a Sudoku model (seq_len {})", c.seq_len);
    }
    let rows = match (dataset, puzzles) {
        (Some(dir), _) => read_dataset_split(&dir, calib)?,
        (None, Some(csv)) => read_csv(&csv, calib)?,
        (None, None) => anyhow::bail!("give --dataset DIR or --puzzles CSV"),
    };
    if rows.is_empty() {
        anyhow::bail!("no calibration puzzles");
    }
    let set: Vec<(Vec<u8>, u32)> = rows
        .iter()
        .map(|r| {
            let mut t: Tokens = [PAD; CELLS];
            sudoku::parse_puzzle(&r.question, &mut t)
                .map_err(|e| anyhow::anyhow!("calibration puzzle {}: {e}", r.name))?;
            Ok((t.to_vec(), 0))
        })
        .collect::<anyhow::Result<_>>()?;
    let t = std::time::Instant::now();
    let cal = calibrate(&c, &m, &set, c.halt_max_steps)?;
    let out = quantize(&c, &m, &cal, &QuantizeOptions { margin })?;
    let fixed = Model::parse(&out).context("the written fixed model does not parse")?;
    // Build the engine once: the file is what the firmware will accept.
    let need = FixedEngine::scratch_len(&c);
    let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
    let engine = FixedEngine::new(&fixed, &mut s16, &mut s32)
        .map_err(|e| anyhow::anyhow!("the written fixed model is refused: {e}"))?;
    std::fs::write(output, &out).with_context(|| format!("writing {}", output.display()))?;
    print_calibration(&cal, c.mlp_t, margin);
    println!(
        "scales (real = int * scale): x {:.3e}, y/z {:.3e}, logits {:.3e}, q {:.3e}",
        engine.x_scale(),
        engine.state_scale(),
        engine.logit_scale(),
        engine.q_scale()
    );
    println!(
        "fixed engine RAM arena: {} bytes ({} i16 + {} i32)",
        need.bytes(),
        need.i16s,
        need.i32s
    );
    println!(
        "wrote {} ({} bytes, float model {} bytes; calibrated on {} puzzles x {} ACT steps in {:.1}s)",
        output.display(),
        out.len(),
        bytes.len(),
        cal.puzzles,
        cal.steps,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The calibrated maxima per site (int16 sites map `margin * max` to 32767).
fn print_calibration(cal: &Calibration, mlp_t: bool, margin: f64) {
    println!("calibration: largest |value| per site (margin {margin}):");
    println!(
        "  x {:.4}  network input {:.4}  y/z {:.4}  logits {:.4}  q {:.4}",
        cal.x, cal.input, cal.states, cal.logits, cal.q
    );
    for (i, b) in cal.blocks.iter().enumerate() {
        let mixer = if mlp_t {
            format!(
                "token mixer gate {:.4} up {:.4} prod {:.4}",
                b.mix_gate, b.mix_up, b.mix_prod
            )
        } else {
            format!(
                "attention q {:.4} k {:.4} v {:.4} scores {:.4}",
                b.q, b.k, b.v, b.scores
            )
        };
        println!(
            "  block {i}: {mixer} | SwiGLU gate {:.4} up {:.4} prod {:.4} | out {:.4}",
            b.gate, b.up, b.prod, b.out
        );
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::ImportReference {
            path,
            output,
            dtype,
            seq_len,
        } => {
            let bytes = reference_to_trm_with(&path, dtype.into(), &ImportOptions { seq_len })?;
            std::fs::write(&output, &bytes)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({} bytes)", output.display(), bytes.len());
        }
        Command::Inspect { model } => inspect(&model)?,
        Command::Quantize {
            model,
            dataset,
            puzzles,
            calib,
            margin,
            output,
        } => quantize_cmd(&model, dataset, puzzles, calib, margin, &output)?,
        Command::Puzzles {
            dataset,
            limit,
            output,
        } => {
            let rows = read_dataset_split(&dataset, limit)?;
            let mut csv = String::from("source,question,answer,rating\n");
            for r in &rows {
                let answer = r.answer.as_deref().unwrap_or("");
                csv.push_str(&format!("{},{},{answer},0\n", r.name, r.question));
            }
            std::fs::write(&output, csv)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} puzzles to {}", rows.len(), output.display());
        }
        Command::Run {
            model,
            puzzles,
            dataset,
            puzzle,
            limit,
            halt,
            step_digests,
            no_boards,
        } => {
            if !run(
                &model,
                puzzles,
                dataset,
                puzzle,
                limit,
                halt,
                step_digests,
                !no_boards,
            )? {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
