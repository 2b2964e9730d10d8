//! Checkpoints: round trip, shape errors, corruption, interrupted writes, keep-last-N.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tch::{Device, Kind, Tensor, nn};
use trm_train::ckpt::{self, Checkpoint, CkptError};
use trm_train::config::TrainConfig;
use trm_train::model::Trm;

fn ci_config() -> TrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sudoku_ci.yaml");
    TrainConfig::load::<&str>(&path, &[]).expect("sudoku_ci.yaml")
}

/// A tiny model's variables, from the CI config with `overrides`.
fn model_vs(overrides: &[&str]) -> (nn::VarStore, Trm) {
    let cfg = ci_config().apply_overrides(overrides).expect("overrides");
    let model_cfg = cfg.model_config_sizes(81, 11, 3).expect("model config");
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Trm::new(&vs.root(), &model_cfg).expect("model");
    (vs, model)
}

fn optimizer_state(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (name, t) in ckpt::named_variables(vs) {
        out.push((format!("adam.{name}.exp_avg"), t.randn_like()));
        out.push((format!("adam.{name}.exp_avg_sq"), t.randn_like().abs()));
    }
    out.push(("adam.step".into(), Tensor::from_slice(&[17i64])));
    out
}

fn checkpoint(step: u64, vs: &nn::VarStore) -> Checkpoint {
    let model = ckpt::named_variables(vs);
    let ema = model
        .iter()
        .map(|(n, t)| (n.clone(), t.detach() * 0.5 + 1.0))
        .collect();
    let mut extra = Map::new();
    extra.insert("epoch".into(), Value::from(3));
    extra.insert("examples_seen".into(), Value::from(12345u64));
    Checkpoint {
        step,
        model,
        ema: Some(ema),
        optimizer: optimizer_state(vs),
        rng: vec![
            ("torch_cpu".into(), (0..=255u8).collect()),
            ("sampler".into(), vec![7, 0, 0, 9]),
            ("empty".into(), Vec::new()),
        ],
        extra,
        config: ci_config(),
    }
}

fn same(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.len(), b.len());
    let mut a: Vec<_> = a.iter().collect();
    let mut b: Vec<_> = b.iter().collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    for ((na, ta), (nb, tb)) in a.into_iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(ta.kind(), tb.kind(), "{na}");
        assert!(ta.equal(tb), "{na} differs");
    }
}

fn corrupt_byte(path: &Path, from_end: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = bytes.len() - from_end as usize;
    bytes[i] ^= 0x5A;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn round_trip_restores_everything() {
    tch::manual_seed(1);
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _model) = model_vs(&[]);
    let saved = checkpoint(40, &vs);
    let dir = ckpt::save(root.path(), &saved).expect("save");
    assert_eq!(dir, root.path().join("step_40"));
    assert_eq!(
        ckpt::latest(root.path()).expect("latest"),
        Some((40, dir.clone()))
    );

    let loaded = ckpt::load(&dir).expect("load");
    assert_eq!(loaded.step, 40);
    same(&loaded.model, &saved.model);
    same(
        loaded.ema.as_deref().expect("ema"),
        saved.ema.as_deref().expect("ema"),
    );
    same(&loaded.optimizer, &saved.optimizer);
    let mut rng = loaded.rng.clone();
    rng.sort();
    let mut want = saved.rng.clone();
    want.sort();
    assert_eq!(rng, want);
    assert_eq!(loaded.extra, saved.extra);
    assert_eq!(loaded.config, saved.config);

    // The model file is plain safetensors under reference names: the model loader reads it.
    let via_loader =
        trm_train::model::read_checkpoint(&dir.join(ckpt::MODEL_FILE)).expect("read_checkpoint");
    same(&via_loader, &saved.model);
    assert!(
        saved.model.iter().any(|(n, _)| n == "inner.lm_head.weight"),
        "reference names"
    );

    // Restore into a freshly initialised model and into fresh optimizer buffers.
    tch::manual_seed(2);
    let (vs2, _m2) = model_vs(&[]);
    let before = ckpt::named_variables(&vs2);
    assert!(
        before
            .iter()
            .zip(&saved.model)
            .any(|((_, a), (_, b))| !a.equal(b)),
        "a fresh model differs before restoring"
    );
    ckpt::restore_model(&vs2, loaded.model).expect("restore model");
    same(&ckpt::named_variables(&vs2), &saved.model);
    let live_opt: Vec<(String, Tensor)> = saved
        .optimizer
        .iter()
        .map(|(n, t)| (n.clone(), t.zeros_like()))
        .collect();
    ckpt::restore_named("optimizer", &live_opt, loaded.optimizer).expect("restore optimizer");
    same(&live_opt, &saved.optimizer);
}

#[test]
fn wrong_shapes_name_the_tensor() {
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _m) = model_vs(&[]);
    let dir = ckpt::save(root.path(), &checkpoint(1, &vs)).expect("save");
    let loaded = ckpt::load(&dir).expect("load");

    // A wider model: the first tensor (sorted) whose shape differs is named, with both shapes.
    let (wide, _m) = model_vs(&["arch.hidden_size=64"]);
    let err = ckpt::restore_model(&wide, loaded.model).expect_err("shape");
    let msg = err.to_string();
    match &err {
        CkptError::Model(trm_train::model::CheckpointError::Shape {
            name,
            expected,
            found,
        }) => {
            let live = ckpt::named_variables(&wide);
            let t = &live.iter().find(|(n, _)| n == name).expect("live").1;
            assert_eq!(&t.size(), expected);
            assert_ne!(expected, found);
            assert!(msg.contains(name.as_str()), "{msg}");
        }
        other => panic!("{other:?}"),
    }

    // The same for named optimizer states.
    let mut live: Vec<(String, Tensor)> = loaded
        .optimizer
        .iter()
        .map(|(n, t)| (n.clone(), t.zeros_like()))
        .collect();
    let victim = live[0].0.clone();
    live[0].1 = Tensor::zeros([3, 5], (Kind::Float, Device::Cpu));
    let err = ckpt::restore_named(
        "optimizer",
        &live,
        loaded
            .optimizer
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
    )
    .expect_err("shape");
    match &err {
        CkptError::Shape {
            what,
            name,
            expected,
            found,
        } => {
            assert_eq!(what, "optimizer");
            assert_eq!(name, &victim);
            assert_eq!(expected, &vec![3, 5]);
            assert_ne!(found, expected);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&victim), "{err}");

    // Missing and unexpected names.
    let mut fewer = live
        .iter()
        .map(|(n, t)| (n.clone(), t.zeros_like()))
        .collect::<Vec<_>>();
    let _dropped = fewer.remove(0);
    let err = ckpt::restore_named(
        "optimizer",
        &fewer,
        loaded
            .optimizer
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
    )
    .expect_err("unexpected");
    assert!(matches!(err, CkptError::Unexpected { ref name, .. } if *name == victim));
    let extra = vec![(
        "not.there".to_string(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    )];
    let err = ckpt::restore_named("optimizer", &extra, Vec::new()).expect_err("missing");
    assert!(matches!(err, CkptError::Missing { ref name, .. } if name == "not.there"));
}

#[test]
fn truncated_or_corrupt_files_are_errors() {
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _m) = model_vs(&[]);
    let dir = ckpt::save(root.path(), &checkpoint(5, &vs)).expect("save");
    assert!(ckpt::load(&dir).is_ok());

    // A flipped byte in the tensor data keeps the size: the CRC catches it.
    let model = dir.join(ckpt::MODEL_FILE);
    let pristine = std::fs::read(&model).expect("read");
    corrupt_byte(&model, 3);
    match ckpt::load(&dir).expect_err("crc") {
        CkptError::Corrupt { path, reason } => {
            assert_eq!(path, model);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // A truncated file: named, and the checkpoint no longer counts as finished.
    std::fs::write(&model, &pristine[..pristine.len() / 2]).expect("truncate");
    match ckpt::load(&dir).expect_err("truncated") {
        CkptError::Corrupt { path, .. } => assert_eq!(path, model),
        other => panic!("{other:?}"),
    }
    assert_eq!(ckpt::latest(root.path()).expect("latest"), None);

    // A damaged manifest.
    std::fs::write(&model, &pristine).expect("restore");
    assert!(ckpt::load(&dir).is_ok());
    std::fs::write(dir.join(ckpt::META_FILE), "{\"format\": \"trm-train-chec").expect("meta");
    assert!(matches!(ckpt::load(&dir), Err(CkptError::Corrupt { .. })));
    std::fs::remove_file(dir.join(ckpt::META_FILE)).expect("rm meta");
    assert!(matches!(
        ckpt::load(&dir),
        Err(CkptError::Incomplete { .. })
    ));
}

/// Copies a finished checkpoint folder without its manifest, as a crash before the manifest is
/// written would leave it (had it been written in place).
fn copy_without_meta(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        if e.file_name() != ckpt::META_FILE {
            std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_crash_mid_write_leaves_the_previous_checkpoint_latest() {
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _m) = model_vs(&[]);
    let first = ckpt::save(root.path(), &checkpoint(10, &vs)).expect("save");

    // An interrupted save of step 20: its temporary folder, half written.
    let tmp: PathBuf = root.path().join(".tmp-step_20-999-1");
    copy_without_meta(&first, &tmp);
    let half = tmp.join(ckpt::MODEL_FILE);
    let bytes = std::fs::read(&half).expect("read");
    std::fs::write(&half, &bytes[..bytes.len() / 3]).expect("truncate");
    // A `step_30` folder without a manifest (copied by hand, or written by something else).
    copy_without_meta(&first, &root.path().join("step_30"));

    assert_eq!(
        ckpt::latest(root.path()).expect("latest"),
        Some((10, first.clone()))
    );
    let loaded = ckpt::load(&first).expect("load");
    assert_eq!(loaded.step, 10);

    // A later save still works, and pruning removes the leftover.
    let second = ckpt::save(root.path(), &checkpoint(20, &vs)).expect("save 20");
    assert_eq!(
        ckpt::latest(root.path()).expect("latest"),
        Some((20, second))
    );
    let removed = ckpt::prune(root.path(), 5).expect("prune");
    assert!(removed.contains(&tmp), "{removed:?}");
    assert!(!tmp.exists());
}

#[test]
fn keep_last_n_and_overwrite() {
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _m) = model_vs(&[]);
    for step in [1u64, 2, 3, 4, 5] {
        ckpt::save(root.path(), &checkpoint(step, &vs)).expect("save");
        ckpt::prune(root.path(), 2).expect("prune");
    }
    let steps: Vec<u64> = ckpt::list(root.path())
        .expect("list")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [4, 5]);
    let names: Vec<String> = std::fs::read_dir(root.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Saving a step again replaces it.
    let mut again = checkpoint(5, &vs);
    again.extra.insert("epoch".into(), Value::from(99));
    ckpt::save(root.path(), &again).expect("resave");
    let loaded = ckpt::load(&root.path().join("step_5")).expect("load");
    assert_eq!(loaded.extra["epoch"], Value::from(99));
    assert_eq!(ckpt::list(root.path()).expect("list").len(), 2);
}

#[test]
fn duplicate_names_are_rejected_and_nothing_is_published() {
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _m) = model_vs(&[]);
    let mut c = checkpoint(3, &vs);
    c.optimizer.push((
        c.optimizer[0].0.clone(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    assert!(matches!(
        ckpt::save(root.path(), &c),
        Err(CkptError::Duplicate { .. })
    ));
    assert_eq!(ckpt::latest(root.path()).expect("latest"), None);
    assert_eq!(std::fs::read_dir(root.path()).expect("dir").count(), 0);
}

#[test]
fn a_damaged_newest_checkpoint_is_reported_not_skipped() {
    let root = tempfile::tempdir().expect("tempdir");
    let (vs, _m) = model_vs(&[]);
    let ten = ckpt::save(root.path(), &checkpoint(10, &vs)).expect("save 10");
    let twenty = ckpt::save(root.path(), &checkpoint(20, &vs)).expect("save 20");
    let n = ckpt::newest(root.path()).expect("newest");
    assert_eq!(n.usable, Some((20, twenty.clone())));
    assert!(n.unusable.is_empty());
    assert_eq!(
        ckpt::latest_strict(root.path()).expect("strict"),
        Some((20, twenty.clone()))
    );

    // step_20 truncated: `latest` still silently gives step_10 (for callers that want the
    // newest finished one); `newest` says what it skipped, `latest_strict` refuses.
    let model = twenty.join(ckpt::MODEL_FILE);
    let bytes = std::fs::read(&model).expect("read");
    std::fs::write(&model, &bytes[..bytes.len() - 1]).expect("truncate");
    assert_eq!(
        ckpt::latest(root.path()).expect("latest"),
        Some((10, ten.clone()))
    );
    let n = ckpt::newest(root.path()).expect("newest");
    assert_eq!(n.usable, Some((10, ten.clone())));
    match n.unusable.as_slice() {
        [(20, dir, CkptError::Corrupt { path, .. })] => {
            assert_eq!((dir, path), (&twenty, &model));
        }
        other => panic!("{other:?}"),
    }
    match ckpt::latest_strict(root.path()).expect_err("strict") {
        CkptError::LatestUnusable { dir, older, reason } => {
            assert_eq!((dir, older), (twenty.clone(), Some(ten.clone())));
            assert!(matches!(*reason, CkptError::Corrupt { .. }));
        }
        other => panic!("{other:?}"),
    }

    // A folder whose manifest names another step is not that step's checkpoint.
    std::fs::remove_dir_all(&twenty).expect("rm 20");
    let thirty = root.path().join("step_30");
    std::fs::create_dir(&thirty).expect("mkdir");
    for e in std::fs::read_dir(&ten).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), thirty.join(e.file_name())).expect("copy");
    }
    let n = ckpt::newest(root.path()).expect("newest");
    assert_eq!(n.usable, Some((10, ten.clone())));
    assert!(
        matches!(&n.unusable[..], [(30, _, CkptError::Corrupt { reason, .. })] if reason.contains("step 10")),
        "{:?}",
        n.unusable
    );
    assert_eq!(ckpt::read_step(&thirty).expect("step"), 10);
}
