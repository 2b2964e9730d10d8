//! Maze-Hard and ARC through the whole chain (issue 17): for each task, a tiny model trained a
//! few steps by trm-train's loop on the real data in `../shared/data` (built into the reference
//! layout by trm-data), exported by trm-export as the `export` command does (float and fixed,
//! calibrated on the training split), then
//!
//! 1. run by the firmware app on the host (`trm-export run`): the puzzles are the task's token
//!    lines with their puzzle identifiers, the results checked by the task's rule;
//! 2. compared float vs fixed by `verify` (task metrics; ARC: the evaluator's pass@K), whose
//!    float exact count must equal the app's;
//! 3. written to a golden file and checked against it; an edited prediction far into a long
//!    line fails the check;
//! 4. Maze only: the fixed model and that golden file in the Cortex-M4F firmware under QEMU
//!    (mps2-an386): the device's lines equal the host's (TRM_SKIP_QEMU=1 skips this part, as in
//!    tests/firmware_qemu.rs).
//!
//! The models are too small and too briefly trained to solve anything: these tests check the
//! chain, not accuracy (the figures of longer runs are in docs/BENCHMARKS.md). About a minute
//! each on one core, plus the maze firmware's build and QEMU run (about two).

use std::path::{Path, PathBuf};

use tch::Device;
use trm_data::arc::ArcBuildConfig;
use trm_data::maze::{MazeOptions, MazeSource};
use trm_export::export::{CalibSettings, Format, export, load_float_weights};
use trm_export::golden::{CheckOutcome, check_golden, parse_golden, run_app, write_golden};
use trm_export::puzzles::{PuzzleKind, PuzzleSource, read_dataset_split, to_tokens};
use trm_export::verify::{Thresholds, VerifyReport, verify_with_arc};
use trm_nostd::{HaltMode, Model, Task};
use trm_reference::checkpoint::ImportOptions;
use trm_train::config::TrainConfig;
use trm_train::run::{TrainRun, train};

/// Held-out puzzles run, verified and golden-checked per task.
const N_TEST: usize = 6;

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work folder");
    dir
}

/// Trains `config` (a file of trm-train/configs) shrunk to a tiny attention model for `steps`
/// optimizer steps on `data`, in `dir/run`.
fn train_tiny(config: &str, data: &Path, dir: &Path, steps: u64) -> PathBuf {
    let run_dir = dir.join("run");
    let config = trm_tests::workspace_root()
        .join("trm-train/configs")
        .join(config);
    let overrides = [
        format!("data_paths=[{}]", data.display()),
        format!("checkpoint_path={}", run_dir.display()),
        "arch.hidden_size=16".into(),
        "arch.num_heads=2".into(),
        "arch.expansion=2".into(),
        "arch.L_layers=1".into(),
        "arch.H_cycles=1".into(),
        "arch.L_cycles=1".into(),
        "arch.halt_max_steps=2".into(),
        "arch.puzzle_emb_len=2".into(),
        "arch.forward_dtype=float32".into(),
        "global_batch_size=8".into(),
        "lr=1e-3".into(),
        "lr_warmup_steps=1".into(),
        "epochs=1".into(),
        "eval_interval=1".into(),
        "evaluators=[]".into(),
    ];
    let cfg = TrainConfig::load(&config, &overrides).expect("config");
    tch::set_num_threads(1);
    let mut run = TrainRun::new(cfg, Device::Cpu);
    run.quiet = true;
    run.resume = false;
    run.max_steps = Some(steps);
    train(&run).expect("training");
    run_dir
}

/// Exports `run` as f32 and fixed `.trm` files calibrated on `calib` (a training split).
fn export_both(run: &Path, calib: &Path, dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let weights = load_float_weights(run, &ImportOptions::default()).expect("weights");
    let settings = CalibSettings {
        source: Some(PuzzleSource::Dataset(calib.to_path_buf())),
        count: 4,
        ..CalibSettings::default()
    };
    let out = dir.join("models/");
    export(&weights, &[Format::F32, Format::Fixed], &settings, &out).expect("export");
    let read = |f: &str| std::fs::read(out.join(f)).expect("model file");
    (read("model-f32.trm"), read("model-fixed.trm"))
}

/// The chain after training, for a task's test split; returns verify's report and the golden
/// file of the fixed model.
fn check_chain(task: Task, float: &[u8], fixed: &[u8], test: &Path) -> (VerifyReport, String) {
    let fm = Model::parse(float).expect("float model");
    let qm = Model::parse(fixed).expect("fixed model");
    let kind = PuzzleKind::of_model(&fm, "float").expect("kind");
    assert_eq!(kind.task, task);
    let rows = PuzzleSource::Dataset(test.to_path_buf())
        .load(N_TEST, &kind)
        .expect("test puzzles");
    assert_eq!(rows.len(), N_TEST);
    let (_, split_rows) = read_dataset_split(test, N_TEST).expect("split");
    assert_eq!(rows, split_rows);

    // 1. The firmware app on the host: every puzzle read as its task's token line, with its
    // identifier; one result each, no error.
    let (out, report) = run_app(float, &rows, HaltMode::AllSteps, false, false, 1);
    assert!(report.success(), "{out}");
    assert_eq!(report.total, N_TEST, "{out}");
    for (i, r) in rows.iter().enumerate() {
        let head = format!(
            "TRM-PUZZLE puzzle={i} name={} task={} id={} question={}\n",
            r.name,
            task.name(),
            r.puzzle_id,
            r.question
        );
        assert!(out.contains(&head), "{head}\n{out}");
    }
    let app_exact = out
        .lines()
        .filter(|l| {
            l.starts_with("TRM-RESULT ") && l.contains(&format!(" correct={0}/{0} ", kind.seq_len))
        })
        .count();

    // 2. Float vs fixed with the task's metrics.
    let puzzles = to_tokens(&rows, &kind).expect("tokens");
    let arc = (task == Task::Arc).then(|| {
        let meta = trm_data::layout::DatasetMetadata::read(test).expect("metadata");
        trm_data::arc_eval::ArcEvaluator::load(
            test.parent().expect("dataset root"),
            i64::from(meta.blank_identifier_id),
        )
        .expect("ARC evaluator")
    });
    let v = verify_with_arc(
        &fm,
        &qm,
        &puzzles,
        HaltMode::AllSteps,
        &Thresholds::default(),
        1,
        arc.as_ref(),
    )
    .expect("verify");
    assert_eq!(v.task, task.name());
    assert_eq!(v.puzzles, N_TEST);
    assert_eq!(
        v.float.exact, app_exact,
        "verify and the app disagree\n{out}"
    );
    assert!(v.float.valid.is_some() && v.fixed.valid.is_some());
    assert!((0.0..=1.0).contains(&v.cell_agreement));
    assert!(v.float.cell_accuracy.is_some());

    // 3. Golden file of the fixed model: written, checked; a prediction edited far into its
    // line (past the firmware's line buffer) is a difference.
    let text = write_golden(fixed, &rows, HaltMode::AllSteps, 2).expect("golden");
    let g = parse_golden(&text).expect("parse golden");
    assert_eq!(g.puzzles.len(), N_TEST);
    for (p, r) in g.puzzles.iter().zip(&rows) {
        assert_eq!(p.row.puzzle_id, r.puzzle_id);
    }
    assert!(matches!(
        check_golden(&g, fixed, 1).expect("check"),
        CheckOutcome::Same { .. }
    ));
    let result = text
        .lines()
        .find(|l| l.starts_with("TRM-RESULT "))
        .expect("a result line");
    let k = result.find(" prediction=").expect("prediction") + " prediction=".len() + 600;
    let mut edited = result.as_bytes().to_vec();
    edited[k] = if edited[k] == b'#' { b'.' } else { b'#' };
    let edited = String::from_utf8(edited).expect("utf-8");
    let g2 = parse_golden(&text.replacen(result, &edited, 1)).expect("parse edited");
    assert!(matches!(
        check_golden(&g2, fixed, 1).expect("check"),
        CheckOutcome::Differs(_)
    ));
    (v, text)
}

/// The fixed maze model on the emulated Cortex-M4F with the first puzzle of `test` and its
/// golden file: every line of the device equals the host's.
fn maze_on_mps2(fixed: &[u8], test: &Path, dir: &Path) {
    use trm_tests::qemu::{self, MPS2, records, runs, tools_ready, with_tag};
    if !tools_ready("maze_hard_goes_through_the_chain", &MPS2) {
        return;
    }
    let (_, rows) = read_dataset_split(test, 1).expect("rows");
    let r = &rows[0];
    // What `trm-export puzzles` writes for another task than Sudoku.
    let csv = dir.join("maze.csv");
    let answer = r.answer.as_deref().unwrap_or("");
    std::fs::write(
        &csv,
        format!(
            "source,question,answer,puzzle_id\n{},{},{answer},{}\n",
            r.name, r.question, r.puzzle_id
        ),
    )
    .expect("csv");
    let model = dir.join("maze-fixed.trm");
    std::fs::write(&model, fixed).expect("model");
    let golden = dir.join("maze-golden.txt");
    let text = write_golden(fixed, &rows, HaltMode::AllSteps, 1).expect("golden");
    std::fs::write(&golden, &text).expect("golden file");
    let elf = dir.join("maze-mps2.elf");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    qemu::build_firmware(
        &MPS2,
        &[
            ("TRM_MODEL", &path(&model)),
            ("TRM_GOLDEN", &path(&golden)),
            ("TRM_PUZZLES", &path(&csv)),
            ("TRM_PUZZLES_N", "1"),
        ],
        &elf,
    );
    let (code, out) = qemu::run_qemu(
        &elf,
        &MPS2,
        &["-icount", "shift=0"],
        std::time::Duration::from_secs(600),
    );
    assert_eq!(code, 0, "exit code\n{out}");
    let all = runs(records(&out));
    assert_eq!(all.len(), 1, "{out}");
    let g = parse_golden(&text).expect("golden");
    let total = g.puzzles.len() * 2 + g.step_count();
    let verdict = with_tag(&all[0], "TRM-GOLDEN");
    assert_eq!(verdict.len(), 1, "{out}");
    assert_eq!(verdict[0].get("match"), format!("{total}/{total}"), "{out}");
    assert_eq!(g.compare(&out).expect("device lines"), total);
    let per_step = with_tag(&all[0], "TRM-CYCLES")[0]
        .get("per_step")
        .parse::<u64>()
        .expect("per_step");
    eprintln!(
        "maze on Cortex-M4F: {total}/{total} golden lines equal, {:.1} M instructions per ACT step",
        (per_step * MPS2.instructions_per_unit) as f64 / 1e6
    );
}

#[test]
fn maze_hard_goes_through_the_chain() {
    let dir = work_dir("chain-maze");
    let shared = trm_data::layout::shared_dir().join("data/maze-hard");
    // 32 training mazes (subsampled), the 1000 test mazes.
    let opts = MazeOptions {
        subsample_size: Some(32),
        progress: false,
        ..MazeOptions::default()
    };
    let data = dir.join("data");
    trm_data::maze::build_dataset(&MazeSource::from_dir(&shared), &data, &opts).expect("dataset");
    let run = train_tiny("maze.yaml", &data, &dir, 3);
    let (float, fixed) = export_both(&run, &data.join("train"), &dir);
    let (v, _) = check_chain(Task::Maze { side: 30 }, &float, &fixed, &data.join("test"));
    assert!(v.float.arc_pass.is_none());
    // The reference answers are valid paths (a contradicting one would be a gate failure).
    assert_eq!(v.contradicting_answers, 0);
    maze_on_mps2(&fixed, &data.join("test"), &dir);
}

#[test]
fn arc_goes_through_the_chain() {
    let dir = work_dir("chain-arc");
    let shared = trm_data::layout::shared_dir().join("data/arc/arc-agi");
    // ARC-AGI-1 evaluation: its train pairs to train, its test inputs to test; one augmentation
    // per puzzle, so that the evaluator votes over two copies.
    let data = dir.join("data");
    let mut cfg = ArcBuildConfig::new(
        shared.to_string_lossy(),
        &data,
        &["evaluation"],
        "evaluation",
    );
    cfg.num_aug = 1;
    trm_data::arc::build_arc_dataset(&cfg).expect("dataset");
    let run = train_tiny("arc1.yaml", &data, &dir, 3);
    let (float, fixed) = export_both(&run, &data.join("train"), &dir);
    let (v, _) = check_chain(Task::Arc, &float, &fixed, &data.join("test"));
    // Identifiers of augmented puzzles reach the engine (0 is the blank one).
    let (_, rows) = read_dataset_split(&data.join("test"), N_TEST).expect("rows");
    assert!(rows.iter().all(|r| r.puzzle_id > 0), "{rows:?}");
    for m in [&v.float, &v.fixed] {
        let pass = m.arc_pass.as_ref().expect("ARC pass@K");
        let ks: Vec<usize> = pass.iter().map(|(k, _)| *k).collect();
        assert_eq!(ks, trm_data::arc_eval::DEFAULT_PASS_KS);
        assert!(pass.iter().all(|(_, p)| (0.0..=1.0).contains(p)));
    }
}
