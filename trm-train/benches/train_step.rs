//! Training throughput: examples per second of the full training step (train-mode ACT step,
//! loss, backward of `loss / batch`, sign-SGD on the puzzle embedding rows, AdamATan2, EMA) for
//! the paper's configs, plus peak memory.
//!
//! ```text
//! cargo bench -p trm-train --bench train_step -- [--config sudoku_mlp_t,sudoku_att]
//!     [--device cpu|cuda|cuda:N] [--dtype f32|bf16] [--batch 64] [--warmup 1] [--steps 1]
//!     [--seq-len N] [--vocab N] [--puzzle-ids N] [key=value ...]
//! ```
//!
//! Every flag also reads an environment variable (`BENCH_CONFIG`, `BENCH_DEVICE`, `BENCH_DTYPE`,
//! `BENCH_BATCH`, `BENCH_WARMUP`, `BENCH_STEPS`); a flag wins over its variable. `--config`
//! takes names of `trm-train/configs/<name>.yaml` or YAML paths, comma-separated; `key=value`
//! overrides (`arch.hidden_size=64`) apply to every config, as `trm-train train` does;
//! `quant.weights=int8` measures the quantization-aware (fake-quantized) step, and with
//! `quant.activations=int16` also the activations' rounding.
//! Dataset sizes (seq_len, vocab, puzzle identifiers) default to the paper's datasets: Sudoku
//! 81 / 11 / 1, Maze 900 / 6 / 1, ARC 900 / 12 / 1,000,000 (the order of magnitude of
//! arc1concept-aug-1000's identifiers; a stated value, the real count is in its dataset.json).
//!
//! One training step runs one ACT step of every sequence of the batch, so examples/s is
//! `batch / seconds per step`, what `trm-train train` reports. Data is random tokens (the step's
//! cost does not depend on the values). Memory: host peak resident set (`VmHWM` of
//! `/proc/self/status`, whole process); on CUDA the device's `memory.used` as `nvidia-smi`
//! reports it, polled every 100 ms from a thread, peak minus the value before the model was
//! built (tch exposes no CUDA allocator statistics; this counts what libtorch's caching
//! allocator reserved plus the CUDA context, and any other process on that GPU).
//!
//! Each config prints a human-readable block and one line `RESULT key=value ...` for scripts.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tch::{Device, Kind, Tensor, nn};
use trm_reference::act_ranges::ActRanges;
use trm_train::config::TrainConfig;
use trm_train::device::DeviceChoice;
use trm_train::model::Trm;
use trm_train::model::quant::ActQuant;
use trm_train::optim::{AdamAtan2, AdamAtan2Config, Ema, SparseSignSgd, trainable_named};
use trm_train::train::{Batch, HaltingOptions, LossKind, TrainCarry, TrainOptions, train_step};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Benchmark the trainer's step (see the file's docs).
#[derive(Debug, Parser)]
#[command(name = "train_step")]
struct Args {
    /// Configs: names in trm-train/configs (sudoku_mlp_t, sudoku_att, arc1, arc2, maze) or
    /// YAML paths, comma-separated.
    #[arg(long, default_value_t = env_or("BENCH_CONFIG", "sudoku_mlp_t,sudoku_att"))]
    config: String,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value_t = env_or("BENCH_DEVICE", "cpu"))]
    device: String,
    /// Forward dtype: f32 or bf16 (parameters stay f32, as in the reference).
    #[arg(long, default_value_t = env_or("BENCH_DTYPE", "f32"))]
    dtype: String,
    /// Sequences per step.
    #[arg(long, default_value_t = env_or("BENCH_BATCH", "64"))]
    batch: String,
    /// Untimed steps first.
    #[arg(long, default_value_t = env_or("BENCH_WARMUP", "1"))]
    warmup: String,
    /// Timed steps.
    #[arg(long, default_value_t = env_or("BENCH_STEPS", "1"))]
    steps: String,
    /// Dataset seq_len (default: by config name, see the file's docs).
    #[arg(long)]
    seq_len: Option<u32>,
    /// Dataset vocabulary size.
    #[arg(long)]
    vocab: Option<u32>,
    /// Dataset puzzle identifiers (rows of the puzzle embedding).
    #[arg(long)]
    puzzle_ids: Option<u32>,
    /// `key=value` config overrides, applied to every config.
    overrides: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Dataset sizes of the paper's datasets, by config name.
fn dataset_sizes(name: &str) -> (u32, u32, u32) {
    if name.starts_with("arc") {
        (900, 12, 1_000_000)
    } else if name.starts_with("maze") {
        (900, 6, 1)
    } else {
        (81, 11, 1)
    }
}

fn config_path(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        return p.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(format!("{name}.yaml"))
}

/// `VmHWM` of this process in MiB (0 where /proc is unavailable).
fn host_peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `memory.used` (MiB) of GPU `index` from nvidia-smi, if it answers.
fn gpu_used_mib(index: usize) -> Option<u64> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            &format!("--id={index}"),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Polls nvidia-smi every 100 ms and keeps the maximum.
struct GpuPoller {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl GpuPoller {
    fn start(index: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = gpu_used_mib(index) {
                    p.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        GpuPoller {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

struct Model {
    vs: nn::VarStore,
    model: Trm,
    adam: AdamAtan2,
    sgd: Option<SparseSignSgd>,
    ema: Option<Ema>,
    carry: TrainCarry,
    options: TrainOptions,
    lr: f64,
    emb_lr: f64,
}

impl Model {
    fn build(
        cfg: &TrainConfig,
        sizes: (u32, u32, u32),
        batch: i64,
        device: Device,
    ) -> Result<Self> {
        let mc = cfg.model_config_sizes(sizes.0, sizes.1, sizes.2)?;
        let vs = nn::VarStore::new(device);
        let mut model = Trm::new(&vs.root(), &mc)?;
        let kind = trm_train::model::checkpoint::forward_kind(&cfg.arch.forward_dtype)
            .with_context(|| format!("unknown forward_dtype {}", cfg.arch.forward_dtype))?;
        model.set_forward_kind(kind)?;
        // QAT (`quant.weights=int8` among the overrides): the fake-quantized step.
        model.set_weight_quant(cfg.quant.as_ref().and_then(|q| q.weight_grid()));
        // `quant.activations=int16`: activations rounded at every site, with ranges of 4 (the
        // step's cost does not depend on the values; a run calibrates them).
        if cfg
            .quant
            .as_ref()
            .is_some_and(|q| q.activations == trm_train::config::ActivationQuant::Int16)
        {
            let mut r = ActRanges::new(mc.l_layers as usize, 1.25);
            let n = r.flat().len();
            r.set_flat(&vec![4.0; n]).map_err(anyhow::Error::msg)?;
            model.set_act_quant(Some(ActQuant::Apply(r)))?;
        }
        let adam = AdamAtan2::new(
            trainable_named(&vs),
            AdamAtan2Config {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                weight_decay: cfg.weight_decay,
            },
        )?;
        let sgd = match model.puzzle_emb() {
            Some(_) => Some(SparseSignSgd::new(cfg.puzzle_emb_weight_decay)?),
            None => None,
        };
        let ema = if cfg.ema {
            Some(Ema::register(&vs, cfg.ema_rate)?)
        } else {
            None
        };
        let carry = TrainCarry::new(&model, batch, device, cfg.seed)?;
        let name = cfg.arch.loss.loss_type.name();
        let loss = LossKind::from_reference_name(name)
            .with_context(|| format!("unsupported loss_type {name}"))?;
        let options = TrainOptions {
            loss,
            halting: HaltingOptions {
                halt_exploration_prob: cfg.arch.halt_exploration_prob,
                no_act_continue: cfg.arch.no_act_continue,
            },
        };
        Ok(Model {
            vs,
            model,
            adam,
            sgd,
            ema,
            carry,
            options,
            lr: cfg.lr,
            emb_lr: cfg.puzzle_emb_lr,
        })
    }

    /// One training step as `trm_train::run::train` runs it (the metrics are read back to the
    /// host, as the loop does for logging).
    fn step(&mut self, batch: &Batch, batch_size: i64) -> Result<f64> {
        let out = train_step(&self.model, &mut self.carry, batch, &self.options)?;
        out.loss
            .f_mul_scalar(1.0 / batch_size as f64)?
            .f_backward()?;
        if let (Some(sgd), Some(w), Some(table)) = (
            &self.sgd,
            &out.puzzle_local_weights,
            self.model.puzzle_emb(),
        ) {
            let g = w.f_grad()?;
            if g.defined() {
                sgd.step(table, &out.puzzle_local_ids, &g, self.emb_lr)?;
            }
        }
        self.adam.step(self.lr)?;
        self.adam.zero_grad();
        if let Some(e) = &mut self.ema {
            e.update()?;
        }
        let values = out.metrics.values()?;
        Ok(values
            .iter()
            .find(|(n, _)| *n == "lm_loss")
            .map_or(f64::NAN, |(_, v)| *v))
    }
}

fn random_batch(b: i64, seq_len: i64, vocab: i64, ids: i64, device: Device) -> Result<Batch> {
    let opts = (Kind::Int, device);
    Ok(Batch {
        inputs: Tensor::f_randint_low(1, vocab.max(2), [b, seq_len], opts)?,
        labels: Tensor::f_randint_low(1, vocab.max(2), [b, seq_len], opts)?,
        puzzle_identifiers: Tensor::f_randint(ids.max(1), [b], opts)?,
    })
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T> {
    s.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{what}: cannot parse {s:?}"))
}

fn run(args: &Args) -> Result<()> {
    let threads = trm_train::run::configure_threads()?;
    let choice: DeviceChoice = args
        .device
        .parse()
        .map_err(|e| anyhow::anyhow!("--device {}: {e}", args.device))?;
    let device = choice.resolve()?;
    let dtype = match args.dtype.to_ascii_lowercase().as_str() {
        "f32" | "float32" | "fp32" => "float32",
        "bf16" | "bfloat16" => "bfloat16",
        other => bail!("--dtype must be f32 or bf16, got {other}"),
    };
    let batch: i64 = parse("--batch", &args.batch)?;
    let warmup: usize = parse("--warmup", &args.warmup)?;
    let steps: usize = parse("--steps", &args.steps)?;
    if batch <= 0 || steps == 0 {
        bail!("--batch and --steps must be positive");
    }
    println!(
        "train_step bench: device {device:?}, forward dtype {dtype}, batch {batch}, \
         {warmup} warm-up + {steps} timed steps, {threads} CPU threads, libtorch {}",
        trm_train::info::LibtorchInfo::query().build_version
    );
    for name in args
        .config
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let path = config_path(name);
        let mut overrides = args.overrides.clone();
        overrides.push(format!("arch.forward_dtype={dtype}"));
        let cfg = TrainConfig::load(&path, &overrides)
            .with_context(|| format!("loading {}", path.display()))?;
        let stem = path
            .file_stem()
            .map_or_else(|| name.to_owned(), |s| s.to_string_lossy().into_owned());
        let d = dataset_sizes(&stem);
        let sizes = (
            args.seq_len.unwrap_or(d.0),
            args.vocab.unwrap_or(d.1),
            args.puzzle_ids.unwrap_or(d.2),
        );
        let gpu_index = match device {
            Device::Cuda(i) => Some(i),
            _ => None,
        };
        let gpu_base = gpu_index.and_then(gpu_used_mib);
        let poller = gpu_index.map(GpuPoller::start);
        tch::manual_seed(cfg.seed as i64);
        let t_build = Instant::now();
        let mut m = Model::build(&cfg, sizes, batch, device)?;
        let n_params: i64 = trainable_named(&m.vs)
            .iter()
            .map(|(_, t)| t.numel() as i64)
            .sum();
        let data = random_batch(
            batch,
            i64::from(sizes.0),
            i64::from(sizes.1),
            i64::from(sizes.2),
            device,
        )?;
        sync(device);
        let build_s = t_build.elapsed().as_secs_f64();
        let t_warm = Instant::now();
        for _ in 0..warmup {
            m.step(&data, batch)?;
        }
        sync(device);
        let warm_s = t_warm.elapsed().as_secs_f64();
        let mut times = Vec::with_capacity(steps);
        let mut loss = f64::NAN;
        for _ in 0..steps {
            let t = Instant::now();
            loss = m.step(&data, batch)? / batch as f64;
            sync(device);
            times.push(t.elapsed().as_secs_f64());
        }
        let total: f64 = times.iter().sum();
        let per_step = total / steps as f64;
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(0.0, f64::max);
        let eps = batch as f64 / per_step;
        let host = host_peak_mib();
        let gpu_peak = poller.map(GpuPoller::finish);
        let gpu = match (gpu_peak, gpu_base) {
            (Some(p), Some(b)) if p > 0 => format!("{}", p.saturating_sub(b)),
            (Some(_), _) => "n/a".to_owned(),
            (None, _) => "-".to_owned(),
        };
        let a = &cfg.arch;
        println!(
            "{stem}: D={} heads={} H_cycles={} L_cycles={} L_layers={} mlp_t={} pos={:?} \
             seq_len={} vocab={} puzzle_ids={} params={n_params}",
            a.hidden_size,
            a.num_heads,
            a.h_cycles,
            a.l_cycles,
            a.l_layers,
            a.mlp_t,
            a.pos_encodings,
            sizes.0,
            sizes.1,
            sizes.2
        );
        println!(
            "  build {build_s:.2} s, warm-up {warm_s:.2} s; step {per_step:.3} s \
             (min {min:.3}, max {max:.3}); {eps:.2} examples/s; lm_loss per example {loss:.4}; \
             host peak RSS {host:.0} MiB; GPU memory.used peak over baseline {gpu} MiB"
        );
        println!(
            "RESULT config={stem} device={device:?} dtype={dtype} batch={batch} steps={steps} \
             s_per_step={per_step:.4} examples_per_s={eps:.2} host_peak_mib={host:.0} \
             gpu_peak_mib={gpu}"
        );
        drop(m);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
