//! Data-parallel training through the `trm-train` binary on CPU (Gloo, loopback):
//! - 2 ranks (spawned with the torchrun variables) and 3 ranks (the built-in launcher) end with
//!   the weights of one process with the same global batch (1e-5 relative), log the same
//!   losses, and gather the same evaluation outputs, in the same order;
//! - a rank killed (SIGKILL) or hung (SIGSTOP) mid-run makes the other exit non-zero within the
//!   timeout with a clear message; resuming from the last checkpoint reaches the uninterrupted
//!   run's weights bit for bit; the launcher stops the other ranks when one dies;
//! - QAT (`quant.weights=int8`) data-parallel: the latents of one process (1e-4), weights on
//!   the grid;
//! - a bad environment (unreachable store, world sizes that disagree, a batch that does not
//!   split) is a clear error, quickly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use trm_data::sudoku::SudokuOptions;
use trm_data::sudoku_gen::generate_dataset;
use trm_export::export::load_float_weights;
use trm_export::qat::check_grid;
use trm_reference::checkpoint::ImportOptions;
use trm_reference::config::WeightQuant;
use trm_train::ckpt;
use trm_train::logs::{METRICS_FILE, read_jsonl};
use trm_train::model::quant::quantized_names;

fn ci_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sudoku_ci.yaml")
}

/// A small generated Sudoku dataset.
fn dataset(dir: &Path, train: usize, test: usize) -> PathBuf {
    let out = dir.join("sudoku");
    let opts = SudokuOptions {
        seed: 11,
        ..Default::default()
    };
    generate_dataset(&out, train, test, 8, &opts).expect("generate dataset");
    out
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The tiny-model overrides: no halting exploration (its RNG is per rank, as the reference's),
/// one L layer, a batch of 12 (splits over 1, 2, 3 and 4 ranks).
fn overrides(data: &Path, run_dir: &Path, epochs: u32) -> Vec<String> {
    vec![
        format!("data_paths=[{}]", data.display()),
        format!("checkpoint_path={}", run_dir.display()),
        format!("epochs={epochs}"),
        "eval_interval=1".into(),
        "global_batch_size=12".into(),
        "arch.halt_exploration_prob=0.0".into(),
        "arch.L_layers=1".into(),
        "checkpoint_keep_last=3".into(),
        "eval_save_outputs=[inputs,preds,q_halt_logits]".into(),
    ]
}

fn train_cmd(data: &Path, run_dir: &Path, epochs: u32, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trm-train"));
    cmd.arg("train")
        .arg("--config")
        .arg(ci_config())
        .args(["--device", "cpu", "--quiet"])
        .args(extra)
        .args(overrides(data, run_dir, epochs))
        .env("TRM_THREADS", "1")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("LOCAL_WORLD_SIZE")
        .env_remove("MASTER_ADDR")
        .env_remove("MASTER_PORT")
        .env_remove("TORCHELASTIC_RESTART_COUNT")
        .env_remove("SLURM_PROCID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `cmd` as rank `rank` of `world`, the store at 127.0.0.1:`port`.
fn as_rank(mut cmd: Command, rank: usize, world: usize, port: u16) -> Command {
    cmd.env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits for every child, killing all of them after `limit`.
fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<(Output, Duration)> {
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut pids = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        pids.push(c.id());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let out = c.wait_with_output();
            let _ = tx.send((i, out, t0.elapsed()));
        });
    }
    drop(tx);
    let mut outs: Vec<Option<(Output, Duration)>> = (0..pids.len()).map(|_| None).collect();
    while outs.iter().any(Option::is_none) {
        let left = limit.saturating_sub(t0.elapsed());
        match rx.recv_timeout(left) {
            Ok((i, out, at)) => outs[i] = Some((out.expect("wait"), at)),
            Err(_) => {
                for p in &pids {
                    let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
                }
                panic!("processes still running after {limit:?}");
            }
        }
    }
    outs.into_iter().map(|o| o.expect("collected")).collect()
}

fn run_ranks(data: &Path, run_dir: &Path, epochs: u32, world: usize, extra: &[&str]) {
    let port = free_port();
    let children: Vec<Child> = (0..world)
        .map(|r| {
            as_rank(train_cmd(data, run_dir, epochs, extra), r, world, port)
                .spawn()
                .expect("spawn rank")
        })
        .collect();
    for (r, (o, _)) in wait_all(children, Duration::from_secs(240))
        .iter()
        .enumerate()
    {
        assert!(o.status.success(), "rank {r} failed: {}", text(o));
    }
}

fn latest(dir: &Path) -> (u64, PathBuf) {
    ckpt::latest(dir)
        .expect("list checkpoints")
        .unwrap_or_else(|| panic!("{} has no checkpoint", dir.display()))
}

fn tensors(dir: &Path, file: &str) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Every tensor of `b` within `rel` of `a`'s (max abs difference over max abs value); returns
/// the largest relative difference seen.
fn assert_close(a: &[(String, Tensor)], b: &[(String, Tensor)], rel: f64, what: &str) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    let mut worst = 0.0f64;
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb, "{what}: names");
        assert_eq!(ta.size(), tb.size(), "{what}: {na} shape");
        let ta = ta.to_kind(Kind::Double);
        let tb = tb.to_kind(Kind::Double);
        let scale = ta.abs().max().double_value(&[]).max(1e-30);
        let diff = (&ta - &tb).abs().max().double_value(&[]);
        let r = diff / scale;
        assert!(
            r <= rel,
            "{what}: {na} differs by {r:e} relative (limit {rel:e})"
        );
        worst = worst.max(r);
    }
    worst
}

fn train_losses(dir: &Path) -> Vec<(u64, f64)> {
    read_jsonl(&dir.join(METRICS_FILE))
        .expect("metrics log")
        .into_iter()
        .filter(|r| r.kind == "train")
        .filter_map(|r| {
            r.metrics
                .iter()
                .find(|(n, _)| n == "lm_loss")
                .and_then(|(_, v)| *v)
                .map(|v| (r.step, v))
        })
        .collect()
}

#[test]
fn two_and_three_ranks_match_one_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 48, 12);
    let (one, two, three) = (
        tmp.path().join("one"),
        tmp.path().join("two"),
        tmp.path().join("three"),
    );
    let o = train_cmd(&data, &one, 2, &[]).output().expect("run");
    assert!(o.status.success(), "single process: {}", text(&o));
    run_ranks(&data, &two, 2, 2, &[]);
    let o = train_cmd(&data, &three, 2, &["--nproc-per-node", "3"])
        .output()
        .expect("launcher");
    assert!(o.status.success(), "launcher: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("[rank 0] step "), "rank 0's summary: {out}");

    let (s1, d1) = latest(&one);
    let initial = tensors(&ckpt::list(&one).expect("list")[0].1, ckpt::MODEL_FILE);
    for (name, dir) in [("2 ranks", &two), ("3 ranks", &three)] {
        let (s, d) = latest(dir);
        assert_eq!(s, s1, "{name}: steps");
        let w = assert_close(
            &tensors(&d1, ckpt::MODEL_FILE),
            &tensors(&d, ckpt::MODEL_FILE),
            1e-5,
            name,
        );
        assert_close(
            &tensors(&d1, ckpt::EMA_FILE),
            &tensors(&d, ckpt::EMA_FILE),
            1e-5,
            name,
        );
        eprintln!("{name}: weights within {w:e} of one process after {s} steps");
        // The carries of all ranks were gathered into the checkpoint, in global row order.
        let carry = |d: &Path| {
            tensors(d, ckpt::OPTIMIZER_FILE)
                .into_iter()
                .filter(|(n, _)| n.starts_with("carry.") && n != "carry.z_h" && n != "carry.z_l")
                .collect::<Vec<_>>()
        };
        assert_close(&carry(&d1), &carry(&d), 0.0, name);
        // Losses logged by rank 0 (reduced over ranks) equal the single process's.
        let (l1, l) = (train_losses(&one), train_losses(dir));
        assert_eq!(l1.len(), l.len(), "{name}: logged steps");
        for ((sa, a), (sb, b)) in l1.iter().zip(&l) {
            assert_eq!(sa, sb);
            assert!(
                (a - b).abs() <= 1e-5 * a.abs(),
                "{name} step {sa}: loss {b} vs {a}"
            );
        }
        // Evaluation outputs gathered on rank 0, in the order one process saves them.
        let preds = |d: &Path| {
            tensors(d, &format!("step_{s1}_all_preds.0.safetensors"))
                .into_iter()
                .filter(|(n, _)| n != "q_halt_logits")
                .collect::<Vec<_>>()
        };
        assert_close(&preds(&one), &preds(dir), 0.0, name);
        let q = |d: &Path| {
            tensors(d, &format!("step_{s1}_all_preds.0.safetensors"))
                .into_iter()
                .filter(|(n, _)| n == "q_halt_logits")
                .collect::<Vec<_>>()
        };
        assert_close(&q(&one), &q(dir), 1e-4, name);
        assert!(
            !dir.join(format!("step_{s1}_all_preds.1.safetensors"))
                .exists(),
            "only rank 0 writes"
        );
    }
    // Training moved the weights (the comparisons are not vacuous).
    let moved = assert_close(&initial, &initial, 0.0, "self");
    assert_eq!(moved, 0.0);
    let final1 = tensors(&d1, ckpt::MODEL_FILE);
    let changed = initial
        .iter()
        .zip(&final1)
        .any(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]) > 1e-4);
    assert!(changed, "training did not change the weights");
}

/// QAT (`quant.weights=int8`) trains data-parallel like float training: 2 ranks end with the
/// latent (float) weights of one process (1e-4 relative); the saved model and EMA of both runs
/// are on the exporter's int8 grid, and equal up to a weight that a 1e-7 latent difference moved
/// across a rounding boundary (one step of its row's grid, for a handful of weights at most).
#[test]
fn qat_two_ranks_match_one_process_on_the_grid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 48, 12);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let qat = ["quant.weights=int8"];
    let o = train_cmd(&data, &one, 2, &qat).output().expect("run");
    assert!(o.status.success(), "single process: {}", text(&o));
    run_ranks(&data, &two, 2, 2, &qat);
    let ((s1, d1), (s2, d2)) = (latest(&one), latest(&two));
    assert_eq!(s1, s2, "steps");
    let latents = |d: &Path| {
        tensors(d, ckpt::OPTIMIZER_FILE)
            .into_iter()
            .filter(|(n, _)| n.starts_with("qat_latent."))
            .collect::<Vec<_>>()
    };
    let (l1, l2) = (latents(&d1), latents(&d2));
    assert!(!l1.is_empty(), "QAT latents saved");
    // 1e-4, not float training's 1e-5: a weight that a reduction-order difference moves across
    // a rounding boundary changes the forward pass by a whole grid step.
    let w = assert_close(&l1, &l2, 1e-4, "QAT latents");
    eprintln!("QAT 2 ranks: latents within {w:e} of one process after {s1} steps");
    let mut config = None;
    for d in [&d1, &d2] {
        let weights = load_float_weights(d, &ImportOptions::default()).expect("import");
        assert_eq!(weights.weight_grid, Some(WeightQuant::Int8));
        let grid = check_grid(&weights.config, &weights.tensors, WeightQuant::Int8).expect("grid");
        assert!(grid.on_grid(), "{}: {grid}", d.display());
        config = Some(weights.config);
    }
    let on_grid = quantized_names(&config.expect("a config"));
    for file in [ckpt::MODEL_FILE, ckpt::EMA_FILE] {
        let (a, b) = (tensors(&d1, file), tensors(&d2, file));
        let mut moved = 0i64;
        for ((na, ta), (_, tb)) in a.iter().zip(&b) {
            let (ta, tb) = (ta.to_kind(Kind::Double), tb.to_kind(Kind::Double));
            let diff = (&ta - &tb).abs();
            if !on_grid.contains(na) {
                let r = diff.max().double_value(&[]) / ta.abs().max().double_value(&[]).max(1e-30);
                assert!(r <= 1e-5, "{file}: {na} differs by {r:e} relative");
                continue;
            }
            // One grid step of each row: max |w| / 127.
            let step = ta.abs().amax([-1i64].as_slice(), true) / 127.0;
            let over = diff
                .gt_tensor(&(&step * 1.01))
                .sum(Kind::Int64)
                .int64_value(&[]);
            assert_eq!(over, 0, "{file}: {na} differs by more than one grid step");
            moved += diff
                .gt_tensor(&(&step * 1e-3))
                .sum(Kind::Int64)
                .int64_value(&[]);
        }
        assert!(moved <= 8, "{file}: {moved} weights moved a grid step");
    }
}

/// Activation QAT (`quant.activations=int16`) data-parallel: each rank calibrates on its rows
/// of the calibration batches and the ranks take the maximum, so the frozen ranges are the
/// single process's (f32 rounding of the batched products apart), saved once in the manifest.
#[test]
fn activation_qat_two_ranks_freeze_the_ranges_of_one_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 48, 12);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let qat = ["quant.weights=int8", "quant.activations=int16"];
    let o = train_cmd(&data, &one, 2, &qat).output().expect("run");
    assert!(o.status.success(), "single process: {}", text(&o));
    run_ranks(&data, &two, 2, 2, &qat);
    let ((s1, d1), (s2, d2)) = (latest(&one), latest(&two));
    assert_eq!(s1, s2, "steps");
    let ranges = |d: &Path| {
        let w = load_float_weights(d, &ImportOptions::default()).expect("import");
        w.act_ranges.expect("frozen ranges in the manifest")
    };
    let (r1, r2) = (ranges(&d1), ranges(&d2));
    assert_eq!(
        (r1.step, r1.puzzles, r1.margin),
        (r2.step, r2.puzzles, r2.margin)
    );
    assert!(r1.puzzles > 0 && r1.input > 0.0);
    for (a, b) in r1.flat().iter().zip(r2.flat()) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
            "ranges differ: one process {a}, two ranks {b}"
        );
    }
}

/// Spawns 2 ranks that train for a while, waits for their first checkpoint, then applies
/// `fault` to rank 1; returns rank 0's output and how long after the fault it exited.
fn fault_run(
    data: &Path,
    run_dir: &Path,
    timeout_s: u64,
    fault: &str,
) -> (Output, Duration, Child) {
    let port = free_port();
    let t = timeout_s.to_string();
    let extra = ["--dist-timeout-s", t.as_str()];
    let r0 = as_rank(train_cmd(data, run_dir, 40, &extra), 0, 2, port)
        .spawn()
        .expect("rank 0");
    let mut r1 = as_rank(train_cmd(data, run_dir, 40, &extra), 1, 2, port)
        .spawn()
        .expect("rank 1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while ckpt::latest(run_dir).expect("list").is_none() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(r1.try_wait().expect("poll").is_none(), "rank 1 ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_at = Instant::now();
    let sig = Command::new("kill")
        .args([fault, &r1.id().to_string()])
        .status()
        .expect("kill");
    assert!(sig.success());
    let outs = wait_all(vec![r0], Duration::from_secs(timeout_s + 60));
    let (o, _) = outs.into_iter().next().expect("rank 0 output");
    (o, killed_at.elapsed(), r1)
}

#[test]
fn killed_rank_stops_the_other_and_resume_matches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 48, 12);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let epochs = 40;
    run_ranks(&data, &a, epochs, 2, &[]);

    let (o, after, mut r1) = fault_run(&data, &b, 10, "-KILL");
    let _ = r1.wait();
    assert!(
        !o.status.success(),
        "rank 0 survived its peer: {}",
        text(&o)
    );
    assert!(
        after < Duration::from_secs(10 + 15),
        "rank 0 took {after:?}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: distributed:"), "unclear error: {err}");
    let (step, dir) = latest(&b);
    eprintln!("killed after step {step}: rank 0 exited {after:?} later");
    // The last complete checkpoint is intact and the run resumes to the straight run's end.
    ckpt::load(&dir).expect("the last checkpoint loads");
    let (sa, da) = latest(&a);
    assert!(step < sa, "nothing left to resume");
    run_ranks(&data, &b, epochs, 2, &[]);
    let (sb, db) = latest(&b);
    assert_eq!(sa, sb);
    for f in [ckpt::MODEL_FILE, ckpt::EMA_FILE, ckpt::OPTIMIZER_FILE] {
        let (x, y) = (tensors(&da, f), tensors(&db, f));
        assert_close(&x, &y, 0.0, f);
    }
}

#[test]
fn hung_rank_times_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 48, 12);
    let run = tmp.path().join("run");
    let (o, after, mut r1) = fault_run(&data, &run, 3, "-STOP");
    let _ = r1.kill();
    let _ = r1.wait();
    assert!(!o.status.success(), "rank 0 did not fail: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error: distributed: timeout"),
        "no timeout error: {err}"
    );
    assert!(
        after >= Duration::from_secs(2) && after < Duration::from_secs(25),
        "rank 0 failed {after:?} after the hang (timeout 3 s)"
    );
}

#[test]
fn launcher_stops_the_other_ranks_when_one_dies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 48, 12);
    let run = tmp.path().join("run");
    let mut launcher = train_cmd(&data, &run, 40, &["--nproc-per-node", "2"])
        .spawn()
        .expect("launcher");
    let stderr = launcher.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(pid) = line.strip_prefix("rank ").and_then(|r| {
                let (rank, pid) = r.split_once(": pid ")?;
                Some((rank.parse::<usize>().ok()?, pid.trim().parse::<u32>().ok()?))
            }) {
                let _ = tx.send(pid);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut pids = [0u32; 2];
    for _ in 0..2 {
        let (rank, pid) = rx.recv_timeout(Duration::from_secs(30)).expect("pids");
        pids[rank] = pid;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ckpt::latest(&run).expect("list").is_none() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    Command::new("kill")
        .args(["-KILL", &pids[1].to_string()])
        .status()
        .expect("kill");
    let status = loop {
        if let Some(s) = launcher.try_wait().expect("poll") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "launcher still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = reader.join().expect("reader");
    assert!(!status.success(), "launcher succeeded: {err}");
    assert!(err.contains("rank 1 failed (signal 9)"), "launcher: {err}");
    // Rank 0 is gone too (killed by the launcher, or failed on its own).
    let alive = Command::new("kill")
        .args(["-0", &pids[0].to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("kill -0");
    assert!(!alive.success(), "rank 0 still running");
}

#[test]
fn bad_environments_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 24, 12);
    let run = tmp.path().join("run");
    let t2 = ["--dist-timeout-s", "2"];

    // Nobody hosts the store.
    let t0 = Instant::now();
    let o = as_rank(train_cmd(&data, &run, 1, &t2), 1, 2, free_port())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("cannot reach the rendezvous store"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    // Two ranks that disagree on the world size.
    let port = free_port();
    let kids = vec![
        as_rank(train_cmd(&data, &run, 1, &t2), 0, 2, port)
            .spawn()
            .expect("spawn"),
        as_rank(train_cmd(&data, &run, 1, &t2), 1, 3, port)
            .spawn()
            .expect("spawn"),
    ];
    for (r, (o, at)) in wait_all(kids, Duration::from_secs(60)).iter().enumerate() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "rank {r} succeeded");
        assert!(err.contains("world size mismatch"), "rank {r}: {err}");
        assert!(*at < Duration::from_secs(20), "rank {r} took {at:?}");
    }

    // A global batch that does not split, refused before any rendezvous.
    let mut cmd = as_rank(train_cmd(&data, &run, 1, &t2), 0, 5, free_port());
    let o = cmd.output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("global_batch_size 12 does not split evenly over 5 processes"),
        "{err}"
    );

    // The launcher flag under another launcher.
    let mut cmd = as_rank(
        train_cmd(&data, &run, 1, &["--nproc-per-node", "2"]),
        0,
        2,
        free_port(),
    );
    let o = cmd.output().expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("WORLD_SIZE is already set"));
    assert!(!run.exists() || ckpt::latest(&run).expect("list").is_none());
}

#[test]
fn torchrun_launches_the_binary_against_its_agent_store() {
    let torchrun = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/torchrun");
    assert!(
        torchrun.is_file(),
        "{} not found: scripts/setup.sh installs PyTorch, with torchrun, in the project venv",
        torchrun.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path(), 24, 12);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let o = train_cmd(&data, &one, 1, &[]).output().expect("run");
    assert!(o.status.success(), "single process: {}", text(&o));
    let plain = train_cmd(&data, &two, 1, &["--dist-timeout-s", "60"]);
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--no-python", "--nproc-per-node", "2"])
        .arg(plain.get_program())
        .args(plain.get_args())
        .env("TRM_THREADS", "1")
        .env_remove("WORLD_SIZE")
        .env_remove("RANK")
        .stdin(Stdio::null());
    let kids = vec![
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("torchrun"),
    ];
    let (o, _) = wait_all(kids, Duration::from_secs(180))
        .into_iter()
        .next()
        .expect("output");
    assert!(o.status.success(), "torchrun: {}", text(&o));
    let ((s1, d1), (s2, d2)) = (latest(&one), latest(&two));
    // Written by a run of two ranks (the meta records the world size of distributed runs).
    let meta = ckpt::load(&d2).expect("load").extra;
    assert_eq!(
        meta.get("world_size").and_then(|v| v.as_u64()),
        Some(2),
        "{meta:?}"
    );
    assert_eq!(s1, s2);
    assert_close(
        &tensors(&d1, ckpt::MODEL_FILE),
        &tensors(&d2, ckpt::MODEL_FILE),
        1e-5,
        "torchrun",
    );
}
