//! `trm-train`: the command-line front of the libtorch TRM trainer.

mod cli;

use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tch::{Device, Tensor};
use trm_train::config::TrainConfig;
use trm_train::device::DeviceChoice;
use trm_train::dist::{Backend, ProcessGroup};
use trm_train::info::LibtorchInfo;
use trm_train::run::{EvalCheckpoint, EvaluateOptions, TrainRun};

// `build-dataset` is trm-data's command line (also trm-data's own `build-dataset` binary).
use trm_data::cli::{self as build_dataset, BuildDatasetArgs, error_chain};

/// Train Tiny Recursive Models with libtorch.
#[derive(Debug, Parser)]
#[command(name = "trm-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the libtorch in use: versions, CUDA and cuDNN availability, device count, threads.
    Info {
        /// Also resolve this device request and print the result (auto, cpu, cuda, cuda:N).
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Build a dataset in the reference layout (Sudoku, Maze, ARC, generated Sudoku).
    BuildDataset(BuildDatasetArgs),
    /// Train a model as the reference's pretrain.py does (resumes when the run folder has a
    /// complete checkpoint).
    Train(TrainArgs),
    /// Evaluate a checkpoint on the test split of a dataset (ACT inference from the initial
    /// carry), with the checkpoint's config and key=value overrides; runs its evaluators (ARC)
    /// and saves the outputs it names.
    Evaluate(EvaluateArgs),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// The YAML config (e.g. trm-train/configs/sudoku_ci.yaml); without it, the reference
    /// defaults, or the config of the checkpoint being resumed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Resume the run in this folder (its checkpoint_path) from its latest complete checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Start afresh even if the run folder holds checkpoints.
    #[arg(long, conflicts_with = "resume")]
    no_resume: bool,
    /// Where to run: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Stop with a checkpoint once the run reaches this optimizer step (counted from the
    /// run's start; resume later). At least 1; a resumed run already at or past it runs no
    /// step and writes nothing.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Run N ranks on this machine (the built-in launcher: rank 0 hosts the store; see
    /// docs/DISTRIBUTED.md). Under torchrun or Slurm leave it out: the ranks come from the
    /// environment (RANK, WORLD_SIZE, ... or SLURM_PROCID, SLURM_NTASKS, ...).
    #[arg(long, value_name = "N")]
    nproc_per_node: Option<usize>,
    /// The built-in launcher's store port (default: a free port).
    #[arg(long, value_name = "PORT", requires = "nproc_per_node")]
    master_port: Option<u16>,
    /// Seconds a rank waits for the others (store, rendezvous, every collective) before failing
    /// with an error: a rank that died or hangs stops the run within this time.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    dist_timeout_s: u64,
    /// Config overrides in the reference's hydra syntax: `key=value` (`arch.L_layers=2`,
    /// `lr=1e-4`, `data_paths="[data/x]"`).
    overrides: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct EvaluateArgs {
    /// A trm-train checkpoint (step_N folder, or run folder: its latest checkpoint, an error
    /// if that one is damaged; name an older step_N folder to evaluate it) or a reference
    /// checkpoint (folder or step_N file with all_config.yaml beside it). The checkpoint
    /// evaluated is printed on stderr.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset folder(s) whose test split is evaluated (default: the checkpoint config's
    /// data_paths_test, else its data_paths). Values after it that hold `=` and are not
    /// existing paths are overrides (`--data d arch.halt_max_steps=2`).
    #[arg(long, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Where to run: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Evaluation batch size (default: the config's global_batch_size, 256 for reference
    /// checkpoints without a readable all_config.yaml).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Run K ACT steps from the initial carry (fewer or more than trained): shorthand for the
    /// override arch.halt_max_steps=K (and applied after the overrides).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    steps: Option<u32>,
    /// Where the outputs of eval_save_outputs (all_preds.safetensors) and the evaluators'
    /// files (submission.json) go (default: a checkpoint_path override, else
    /// evaluate_step_N beside the checkpoint). The files written are printed.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Print the metrics as one JSON object (the files written then go to stderr).
    #[arg(long)]
    json: bool,
    /// Overrides of the checkpoint's config, in train's syntax (`key=value`):
    /// `arch.halt_max_steps=4`, `global_batch_size=64`, `eval_save_outputs=[preds]`,
    /// `evaluators=[{name: arc@ARC}]`, `checkpoint_path=DIR`. Keys that fix the trained weights
    /// (arch.hidden_size, arch.L_layers, ...) must keep the checkpoint's values.
    overrides: Vec<String>,
}

/// Rank 0's run slug, sent to every rank (each would otherwise name its own run folder).
fn shared_slug(pg: &ProcessGroup) -> Result<String> {
    const LEN: usize = 256;
    let mut bytes = [0u8; LEN];
    if pg.rank() == 0 {
        let slug = trm_train::run::train::run_slug();
        let n = slug.len().min(LEN);
        bytes[..n].copy_from_slice(&slug.as_bytes()[..n]);
    }
    let mut t = [Tensor::from_slice(&bytes)];
    pg.broadcast_bucketed(&mut t, 0, LEN)
        .context("sharing the run name")?;
    let got = Vec::<u8>::try_from(&t[0])?;
    let end = got.iter().position(|b| *b == 0).unwrap_or(got.len());
    Ok(String::from_utf8_lossy(&got[..end]).into_owned())
}

fn run_train(args: TrainArgs) -> Result<()> {
    let launched = std::env::var_os("WORLD_SIZE").is_some();
    if let Some(n) = args.nproc_per_node {
        if launched {
            anyhow::bail!(
                "--nproc-per-node starts the built-in launcher, but WORLD_SIZE is already set \
                 (torchrun or another launcher): leave --nproc-per-node out"
            );
        }
        let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        return cli::launch::launch(n, args.master_port, &cli::launch::child_args(&argv));
    }
    let device = args.device.resolve()?;
    let backend = match device {
        Device::Cuda(_) => Backend::Nccl,
        _ => Backend::Gloo,
    };
    if args.dist_timeout_s == 0 {
        anyhow::bail!("--dist-timeout-s must be at least 1");
    }
    let timeout = Duration::from_secs(args.dist_timeout_s);
    let dist = trm_train::dist::detect(|k| std::env::var(k).ok(), backend, timeout)
        .context("reading the distributed launch environment")?
        .map(|(_, c)| c);
    let per_node = std::env::var("LOCAL_WORLD_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1);
    let threads =
        trm_train::run::configure_threads_shared(if dist.is_some() { per_node } else { 1 })?;
    // One GPU per rank: cuda:LOCAL_RANK.
    let device = match (&dist, device) {
        (Some(c), Device::Cuda(_)) => Device::Cuda(c.local_rank),
        (_, d) => d,
    };
    let mut config = match (&args.config, &args.resume) {
        (Some(path), _) => TrainConfig::load(path, &args.overrides)
            .with_context(|| format!("loading {}", path.display()))?,
        (None, Some(dir)) => {
            // The checkpoint training resumes from (it warns about newer damaged ones).
            let (_, step_dir) = trm_train::ckpt::newest(dir)?
                .usable
                .with_context(|| format!("{} has no complete checkpoint", dir.display()))?;
            TrainConfig::load(
                &step_dir.join(trm_train::config::ALL_CONFIG_FILE),
                &args.overrides,
            )?
        }
        (None, None) => TrainConfig::from_overrides(&args.overrides)?,
    };
    if let Some(dir) = &args.resume {
        config.checkpoint_path = Some(dir.to_string_lossy().into_owned());
    }
    let pg = match &dist {
        Some(c) => {
            // Checked before joining: every rank fails the same way, without a rendezvous.
            trm_train::run::check_world_size(&config, c.world_size)?;
            let pg = ProcessGroup::new(c).with_context(|| {
                format!(
                    "rank {} of {} joining the process group ({:?} backend, store {}:{})",
                    c.rank, c.world_size, c.backend, c.master_addr, c.master_port
                )
            })?;
            Some(Rc::new(pg))
        }
        None => None,
    };
    let slug = match &pg {
        Some(pg) => shared_slug(pg)?,
        None => trm_train::run::train::run_slug(),
    };
    config.fill_run_names(&slug);
    let rank = pg.as_ref().map_or(0, |p| p.rank());
    match &pg {
        Some(p) => eprintln!(
            "rank {} of {}: run folder {} on {device:?} ({threads} CPU threads, {:?})",
            p.rank(),
            p.world_size(),
            config.checkpoint_path.as_deref().unwrap_or_default(),
            p.backend()
        ),
        None => eprintln!(
            "run folder {} on {device:?} ({threads} CPU threads)",
            config.checkpoint_path.as_deref().unwrap_or_default()
        ),
    }
    let mut run = TrainRun::new(config, device);
    if let Some(pg) = pg {
        run = run.with_process_group(pg);
    }
    run.resume = !args.no_resume;
    run.max_steps = args.max_steps;
    run.quiet = args.quiet || rank != 0;
    let s = trm_train::run::train(&run)?;
    if rank != 0 {
        return Ok(());
    }
    let per_step = if s.steps_run > 0 {
        s.train_seconds / s.steps_run as f64
    } else {
        0.0
    };
    println!(
        "step {}/{} ({} steps run, {:.3} s/step, {:.1} examples/s){}",
        s.step,
        s.total_steps,
        s.steps_run,
        per_step,
        if per_step > 0.0 {
            f64::from(run.config.global_batch_size) / per_step
        } else {
            0.0
        },
        if s.finished { "" } else { ", stopped" }
    );
    if let Some(e) = &s.last_eval {
        for (n, v) in e.flat() {
            println!("eval {n} = {v:.6}");
        }
    }
    if let Some(c) = &s.last_checkpoint {
        println!("checkpoint {}", c.display());
    }
    Ok(())
}

fn run_evaluate(args: EvaluateArgs) -> Result<()> {
    trm_train::run::configure_threads()?;
    let device = args.device.resolve()?;
    let checkpoint = EvalCheckpoint::resolve(&args.checkpoint)?;
    eprintln!("evaluating {checkpoint}");
    // `--data` takes every value up to the next option: overrides written after it land there.
    let (data, late): (Vec<PathBuf>, Vec<PathBuf>) = args
        .data
        .into_iter()
        .partition(|p| !p.to_string_lossy().contains('=') || p.exists());
    let mut opts = EvaluateOptions::new(data, device);
    opts.batch_size = args.batch_size;
    opts.overrides = args.overrides;
    opts.overrides
        .extend(late.iter().map(|p| p.to_string_lossy().into_owned()));
    if let Some(k) = args.steps {
        opts.overrides.push(format!("arch.halt_max_steps={k}"));
    }
    opts.output_dir = args.output_dir;
    let done = trm_train::run::evaluate_checkpoint(&checkpoint, &opts)?;
    let out = &done.output;
    if args.json {
        let obj: serde_json::Map<String, serde_json::Value> = out
            .flat()
            .into_iter()
            .map(|(n, v)| (n, serde_json::json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(obj));
        for path in &done.written {
            eprintln!("wrote {}", path.display());
        }
    } else {
        for s in &out.sets {
            println!("{} ({} examples)", s.set, s.count);
            for (n, v) in &s.metrics {
                println!("  {n:<16} {v:.6}");
            }
        }
        for e in &out.evaluators {
            println!("{}", e.class);
            for (n, v) in &e.metrics {
                let short = n
                    .strip_prefix(&format!("{}/", e.class))
                    .unwrap_or(n.as_str());
                println!("  {short:<16} {v:.6}");
            }
        }
        for path in &done.written {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { device } => {
            println!("{}", LibtorchInfo::query());
            let yes = |b: bool| if b { "yes" } else { "no" };
            println!(
                "c10d bridge:      gloo {}, nccl {}",
                yes(trm_train::dist::bridge_available()),
                yes(trm_train::dist::nccl_available())
            );
            println!("device ({device}):      {:?}", device.resolve()?);
        }
        Command::BuildDataset(args) => build_dataset::run(args)?,
        Command::Train(args) => run_train(args)?,
        Command::Evaluate(args) => run_evaluate(args)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    // Usage errors exit with clap's status 2; failures of the command itself with 1.
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
