//! `trm-export`: converts TRM checkpoints into `.trm` model files.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use trm_export::puzzles::{PuzzleRow, read_csv, read_dataset_split};
use trm_export::reference::{ImportOptions, reference_to_trm_with};
use trm_fw_app::{Console, Counter, HaltMode, Options, Puzzle};
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
    /// Prints a `.trm` file's config, scheme, sizes (flash bytes, RAM arena) and tensors.
    Inspect {
        /// The model file.
        model: PathBuf,
    },
    /// Runs a `.trm` model on Sudoku puzzles with the host float engine, through the same app
    /// code as the firmware: the `TRM-` lines equal the device's bit for bit (timing aside).
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
    let arena = FloatEngine::scratch_len(c) * 4;
    let fast = FloatEngine::scratch_len_fast(c) * 4;
    println!("float engine RAM arena: {arena} bytes (minimum), {fast} bytes (fastest)");
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
    // The fastest scratch size the config allows (results are identical for any size).
    let scratch_len = Model::parse(&bytes)
        .map(|m| FloatEngine::scratch_len_fast(m.config()))
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
