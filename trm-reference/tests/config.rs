//! The training config: reference defaults, hydra overrides, paper experiment files (trm-train's
//! `configs/`), errors, and the `all_config.yaml` it writes (read back by us and by the
//! checkpoint importer's lenient reading).

mod common;

use std::path::{Path, PathBuf};

use trm_nostd::{Config, PosEncoding};
use trm_reference::config::{ConfigError, ImportConfig, LossType, TRM_ARCH_NAME, TrainConfig};

/// The trainer's experiment files: the paper's runs in the reference's config layout.
fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trm-train/configs")
}

fn load(name: &str) -> TrainConfig {
    let path = configs_dir().join(name);
    TrainConfig::load::<&str>(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The reference README's commands, as override lists over `cfg_pretrain.yaml`.
fn readme_commands() -> Vec<(&'static str, Vec<&'static str>)> {
    let sudoku_common = [
        "data_paths=\"[data/sudoku-extreme-1k-aug-1000]\"",
        "evaluators=\"[]\"",
        "epochs=50000",
        "eval_interval=5000",
        "lr=1e-4",
        "puzzle_emb_lr=1e-4",
        "weight_decay=1.0",
        "puzzle_emb_weight_decay=1.0",
    ];
    let mut mlp_t = sudoku_common.to_vec();
    mlp_t.extend([
        "arch.mlp_t=True",
        "arch.pos_encodings=none",
        "arch.L_layers=2",
        "arch.H_cycles=3",
        "arch.L_cycles=6",
        "+run_name=pretrain_mlp_t_sudoku",
        "ema=True",
    ]);
    let mut att = sudoku_common.to_vec();
    att.extend([
        "arch.L_layers=2",
        "arch.H_cycles=3",
        "arch.L_cycles=6",
        "+run_name=pretrain_att_sudoku",
        "ema=True",
    ]);
    vec![
        (
            "arc1.yaml",
            vec![
                "data_paths=\"[data/arc1concept-aug-1000]\"",
                "arch.L_layers=2",
                "arch.H_cycles=3",
                "arch.L_cycles=4",
                "+run_name=pretrain_att_arc1concept_4",
                "ema=True",
            ],
        ),
        (
            "arc2.yaml",
            vec![
                "data_paths=\"[data/arc2concept-aug-1000]\"",
                "arch.L_layers=2",
                "arch.H_cycles=3",
                "arch.L_cycles=4",
                "+run_name=pretrain_att_arc2concept_4",
                "ema=True",
            ],
        ),
        ("sudoku_mlp_t.yaml", mlp_t),
        ("sudoku_att.yaml", att),
        (
            "maze.yaml",
            vec![
                "data_paths=\"[data/maze-30x30-hard-1k]\"",
                "evaluators=\"[]\"",
                "epochs=50000",
                "eval_interval=5000",
                "lr=1e-4",
                "puzzle_emb_lr=1e-4",
                "weight_decay=1.0",
                "puzzle_emb_weight_decay=1.0",
                "arch.L_layers=2",
                "arch.H_cycles=3",
                "arch.L_cycles=4",
                "+run_name=pretrain_att_maze30x30",
                "ema=True",
            ],
        ),
    ]
}

#[test]
fn paper_configs_equal_the_readme_commands() {
    for (file, overrides) in readme_commands() {
        let from_file = load(file);
        let from_command = TrainConfig::from_overrides(&overrides)
            .unwrap_or_else(|e| panic!("{file} command: {e}"));
        assert_eq!(from_file, from_command, "{file}");
    }
}

#[test]
fn reference_defaults_are_cfg_pretrain_and_arch_trm() {
    let c = TrainConfig::reference_defaults().expect("defaults");
    // cfg_pretrain.yaml
    assert_eq!(c.data_paths, ["data/arc-aug-1000"]);
    assert_eq!(c.evaluators.len(), 1);
    assert_eq!(c.evaluators[0].name, "arc@ARC");
    assert_eq!(c.global_batch_size, 768);
    assert_eq!(c.epochs, 100000);
    assert_eq!(c.eval_interval, Some(10000));
    assert!(c.checkpoint_every_eval);
    assert_eq!((c.lr, c.lr_min_ratio, c.lr_warmup_steps), (1e-4, 1.0, 2000));
    assert_eq!((c.beta1, c.beta2, c.weight_decay), (0.9, 0.95, 0.1));
    assert_eq!((c.puzzle_emb_lr, c.puzzle_emb_weight_decay), (1e-2, 0.1));
    assert_eq!((c.seed, c.min_eval_interval), (0, Some(0)));
    assert!(!c.ema && !c.freeze_weights);
    assert_eq!(c.ema_rate, 0.999);
    assert_eq!(c.run_name, None);
    // arch/trm.yaml
    let a = &c.arch;
    assert_eq!(a.name, TRM_ARCH_NAME);
    assert_eq!(a.loss.loss_type, LossType::StablemaxCrossEntropy);
    assert_eq!((a.h_cycles, a.l_cycles, a.l_layers), (3, 6, 2));
    assert_eq!((a.hidden_size, a.num_heads, a.expansion), (512, 8, 4.0));
    assert_eq!(a.puzzle_emb_ndim, a.hidden_size);
    assert_eq!(a.pos_encodings, PosEncoding::Rope);
    assert_eq!(a.forward_dtype, "bfloat16");
    assert_eq!(
        (a.mlp_t, a.puzzle_emb_len, a.no_act_continue),
        (false, 16, true)
    );
    assert_eq!((a.halt_max_steps, a.halt_exploration_prob), (16, 0.1));
}

#[test]
fn hydra_overrides() {
    let c = TrainConfig::from_overrides(&[
        "arch.L_layers=1",
        "lr=3e-4",
        "ema=True",
        "data_paths=\"[data/a,data/b]\"",
        "+run_name=x",
        "arch.hidden_size=128",
        "arch.num_heads=4",
        "eval_interval=null",
    ])
    .expect("overrides");
    assert_eq!(c.arch.l_layers, 1);
    assert_eq!(c.lr, 3e-4);
    assert!(c.ema);
    assert_eq!(c.data_paths, ["data/a", "data/b"]);
    assert_eq!(c.run_name.as_deref(), Some("x"));
    // `puzzle_emb_ndim: ${.hidden_size}` follows the override.
    assert_eq!(c.arch.puzzle_emb_ndim, 128);
    assert_eq!(c.eval_interval, None);
    // An explicit value replaces the interpolation.
    let c = TrainConfig::from_overrides(&["arch.puzzle_emb_ndim=0"]).expect("ndim");
    assert_eq!(c.arch.puzzle_emb_ndim, 0);
    // Overrides on top of a loaded config.
    let c = load("sudoku_ci.yaml")
        .apply_overrides(&["arch.L_cycles=3", "epochs=8"])
        .expect("apply");
    assert_eq!((c.arch.l_cycles, c.epochs), (3, 8));
}

#[test]
fn a_defaults_list_composes_over_the_reference_defaults() {
    let text = "defaults:\n  - arch: trm\n  - _self_\nlr: 2e-4\narch:\n  L_cycles: 4\n";
    let c = TrainConfig::from_yaml_str::<&str>(text, "test", &[]).expect("compose");
    let d = TrainConfig::reference_defaults().expect("defaults");
    assert_eq!(c.lr, 2e-4);
    assert_eq!(c.arch.l_cycles, 4);
    assert_eq!(c.arch.hidden_size, d.arch.hidden_size);
    assert_eq!(c.global_batch_size, d.global_batch_size);
    let bad = "defaults:\n  - arch: hrm\n";
    assert!(matches!(
        TrainConfig::from_yaml_str::<&str>(bad, "test", &[]),
        Err(ConfigError::Invalid { key, .. }) if key == "defaults"
    ));
}

#[test]
fn errors_name_the_key() {
    let e = TrainConfig::from_overrides(&["arch.L_layer=3"]).expect_err("unknown");
    match &e {
        ConfigError::UnknownKey { key, suggestion } => {
            assert_eq!(key, "arch.L_layer");
            assert_eq!(suggestion.as_deref(), Some("arch.L_layers"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("arch.L_layer"), "{e}");
    let e = TrainConfig::from_overrides(&["+lerning_rate=1"]).expect_err("unknown");
    assert!(matches!(e, ConfigError::UnknownKey { ref key, .. } if key == "lerning_rate"));

    let e = TrainConfig::from_overrides(&["lr=fast"]).expect_err("bad");
    assert!(
        matches!(e, ConfigError::BadValue { ref key, .. } if key == "lr"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`lr`"), "{e}");
    let e = TrainConfig::from_overrides(&["ema=maybe"]).expect_err("bad");
    assert!(
        matches!(e, ConfigError::BadValue { ref key, .. } if key == "ema"),
        "{e:?}"
    );
    let e = TrainConfig::from_overrides(&["arch.hidden_size=-4"]).expect_err("bad");
    assert!(matches!(e, ConfigError::BadValue { ref key, .. } if key == "arch.hidden_size"));
    let e = TrainConfig::from_overrides(&["data_paths=data/a"]).expect_err("bad");
    assert!(matches!(e, ConfigError::BadValue { ref key, .. } if key == "data_paths"));
    let e = TrainConfig::from_overrides(&["arch.pos_encodings=alibi"]).expect_err("bad");
    assert!(matches!(e, ConfigError::Invalid { ref key, .. } if key == "arch.pos_encodings"));
    let e = TrainConfig::from_overrides(&["eval_interval=3"]).expect_err("divides");
    assert!(matches!(e, ConfigError::Invalid { ref key, .. } if key == "eval_interval"));
    let e = TrainConfig::from_overrides(&["arch.num_heads=3"]).expect_err("heads");
    assert!(matches!(e, ConfigError::Arch(_)), "{e:?}");
    let e = TrainConfig::from_overrides(&["lr"]).expect_err("syntax");
    assert!(matches!(e, ConfigError::BadOverride { .. }));

    // A complete file missing a required key.
    let text = load("sudoku_ci.yaml").to_yaml();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("global_batch_size:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    let e = TrainConfig::from_yaml_str::<&str>(&without, "test", &[]).expect_err("missing");
    assert!(
        matches!(e, ConfigError::Missing { ref key } if key == "global_batch_size"),
        "{e:?}"
    );
    let e =
        TrainConfig::from_yaml_str::<&str>("lr: [1, 2\n", "broken.yaml", &[]).expect_err("yaml");
    assert!(e.to_string().contains("broken.yaml"), "{e}");
}

#[test]
fn all_config_round_trips_and_the_importer_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "arc1.yaml",
        "arc2.yaml",
        "sudoku_mlp_t.yaml",
        "sudoku_att.yaml",
        "maze.yaml",
        "sudoku_ci.yaml",
    ] {
        let mut c = load(file);
        c.fill_run_names("test-slug");
        let path = c.write_all_config(dir.path()).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        // Ours reads it back to the same config.
        let back = TrainConfig::from_yaml_str::<&str>(&text, file, &[]).expect("reload");
        assert_eq!(back, c, "{file}:\n{text}");
        // The checkpoint importer reads the same architecture and data paths.
        let r = ImportConfig::from_yaml_str(&text, file).expect("import reading");
        assert_eq!(r.arch, c.arch, "{file}");
        assert_eq!(r.data_paths, c.data_paths);
    }
}

/// The exact `all_config.yaml` text (PyYAML's layout: sorted keys, block style, Python floats,
/// YAML 1.1 words quoted), as written before the schema became one table per section.
#[test]
fn all_config_text_is_unchanged() {
    let mut c = TrainConfig::from_overrides(&[
        "data_paths=[data/sudoku-extreme-1k-aug-1000]",
        "evaluators=[{name: arc@ARC, submission_K: 2, pass_Ks: [1, 2]}]",
        "arch.expansion=2.5",
        "arch.hidden_size=64",
        "arch.num_heads=2",
        "arch.mlp_t=True",
        "arch.pos_encodings=none",
        "arch.rms_norm_eps=1e-6",
        "lr=1e-4",
        "eval_save_outputs=[inputs, logits]",
        "checkpoint_keep_last=3",
        "+run_name=yes",
    ])
    .expect("overrides");
    c.fill_run_names("happy-otter");
    let want = "\
arch:
  H_cycles: 3
  H_layers: 0
  L_cycles: 6
  L_layers: 2
  expansion: 2.5
  forward_dtype: bfloat16
  halt_exploration_prob: 0.1
  halt_max_steps: 16
  hidden_size: 64
  loss:
    loss_type: stablemax_cross_entropy
    name: losses@ACTLossHead
  mlp_t: true
  name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1
  no_ACT_continue: true
  num_heads: 2
  pos_encodings: none
  puzzle_emb_len: 16
  puzzle_emb_ndim: 64
  rms_norm_eps: 1.0e-06
  rope_theta: 10000.0
beta1: 0.9
beta2: 0.95
checkpoint_every_eval: true
checkpoint_keep_last: 3
checkpoint_path: checkpoints/Sudoku-extreme-1k-aug-1000-ACT-torch/yes
data_paths:
- data/sudoku-extreme-1k-aug-1000
data_paths_test: []
ema: false
ema_rate: 0.999
epochs: 100000
eval_interval: 10000
eval_save_outputs:
- inputs
- logits
evaluators:
- name: arc@ARC
  pass_Ks:
  - 1
  - 2
  submission_K: 2
freeze_weights: false
global_batch_size: 768
load_checkpoint: null
lr: 0.0001
lr_min_ratio: 1.0
lr_warmup_steps: 2000
min_eval_interval: 0
project_name: Sudoku-extreme-1k-aug-1000-ACT-torch
puzzle_emb_lr: 0.01
puzzle_emb_weight_decay: 0.1
run_name: \"yes\"
seed: 0
weight_decay: 0.1
";
    assert_eq!(c.to_yaml(), want);
    // Unset, our own key is left out (the reference has no such key).
    c.checkpoint_keep_last = None;
    assert_eq!(c.to_yaml(), want.replace("checkpoint_keep_last: 3\n", ""));
}

#[test]
fn run_names_follow_the_reference() {
    let mut c = load("sudoku_att.yaml");
    c.run_name = None;
    c.fill_run_names("happy-otter");
    assert_eq!(
        c.project_name.as_deref(),
        Some("Sudoku-extreme-1k-aug-1000-ACT-torch")
    );
    assert_eq!(
        c.run_name.as_deref(),
        Some("TinyRecursiveReasoningModel_ACTV1 happy-otter")
    );
    let expected = Path::new("checkpoints")
        .join("Sudoku-extreme-1k-aug-1000-ACT-torch")
        .join("TinyRecursiveReasoningModel_ACTV1 happy-otter");
    assert_eq!(c.checkpoint_path.as_deref(), expected.to_str());
}

#[test]
fn reference_all_config_files_load() {
    let root = common::reference_fixtures();
    let mut seen = 0;
    for entry in std::fs::read_dir(&root).expect("reference fixtures") {
        let path = entry.expect("entry").path().join("all_config.yaml");
        if !path.is_file() {
            continue;
        }
        seen += 1;
        let c = TrainConfig::load::<&str>(&path, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).expect("read");
        let r = ImportConfig::from_yaml_str(&text, "all_config.yaml").expect("parse");
        assert_eq!(c.arch, r.arch);
        assert_eq!(c.data_paths, r.data_paths);
    }
    assert!(seen > 0, "no all_config.yaml under {}", root.display());
}

#[test]
fn model_config_takes_sizes_from_the_dataset() {
    let meta = trm_data::layout::DatasetMetadata {
        pad_id: 0,
        ignore_label_id: Some(0),
        blank_identifier_id: 0,
        vocab_size: 11,
        seq_len: 81,
        num_puzzle_identifiers: 1,
        total_groups: 1000,
        mean_puzzle_examples: 1.0,
        total_puzzles: 1000,
        sets: vec!["all".into()],
    };
    let c = load("sudoku_mlp_t.yaml")
        .model_config(&meta)
        .expect("mlp_t");
    assert_eq!(c, Config::sudoku_mlp_t());
    let c = load("sudoku_att.yaml").model_config(&meta).expect("att");
    assert_eq!(c, Config::sudoku_attention());
    // puzzle_emb_len 0 resolves to ceil(ndim / hidden).
    let c = TrainConfig::from_overrides(&["arch.puzzle_emb_len=0", "arch.puzzle_emb_ndim=600"])
        .expect("len 0")
        .model_config(&meta)
        .expect("config");
    assert_eq!(c.puzzle_emb_len, 2);
    let mut huge = meta.clone();
    huge.seq_len = 1 << 20;
    assert!(load("sudoku_ci.yaml").model_config(&huge).is_err());
}

/// `quant` (QAT): absent means none; set by overrides (with or without `+`), defaults filled,
/// written into `all_config.yaml` and read back by the trainer and by the checkpoint importer.
#[test]
fn quant_section_reads_writes_and_imports() {
    use trm_reference::config::{ActivationQuant, WeightQuant};
    let plain = load("sudoku_ci.yaml");
    assert_eq!(plain.quant, None);
    assert!(!plain.to_yaml().contains("quant"));

    let path = configs_dir().join("sudoku_ci.yaml");
    for weights in ["quant.weights=int8", "+quant.weights=int8"] {
        let c = TrainConfig::load(&path, &[weights, "quant.start_step=5"]).expect("quant");
        let q = c.quant.clone().expect("quant section");
        assert_eq!(q.weights, WeightQuant::Int8);
        assert_eq!(q.activations, ActivationQuant::None);
        assert_eq!(q.start_step, 5);
        assert_eq!(q.weight_grid(), Some(WeightQuant::Int8));
        let text = c.to_yaml();
        assert!(
            text.contains(
                "quant:\n  activations: none\n  calib_batches: 4\n  margin: 1.25\n  \
                 start_step: 5\n  weights: int8\n"
            ),
            "{text}"
        );
        let back = TrainConfig::from_yaml_str(&text, "all_config.yaml", &[] as &[&str])
            .expect("read back");
        assert_eq!(back, c);
        let imported = ImportConfig::from_yaml_str(&text, "all_config.yaml").expect("import");
        assert_eq!(imported.weight_grid(), Some(WeightQuant::Int8));
    }
    let c = TrainConfig::load(&path, &["quant.weights=int16"]).expect("int16");
    assert_eq!(
        c.quant.as_ref().map(|q| q.weights),
        Some(WeightQuant::Int16)
    );
    assert_eq!(c.quant.as_ref().map(|q| q.start_step), Some(0));
    let act = TrainConfig::load(&path, &["quant.weights=int8", "quant.activations=int16"])
        .expect("int16 activations");
    let q = act.quant.clone().expect("quant section");
    assert_eq!(q.activations, ActivationQuant::Int16);
    assert_eq!((q.margin, q.calib_batches), (1.25, 4));
    let back = TrainConfig::from_yaml_str(&act.to_yaml(), "all_config.yaml", &[] as &[&str])
        .expect("read back");
    assert_eq!(back, act);
    let off = TrainConfig::load(&path, &["quant.weights=none"]).expect("none");
    assert_eq!(off.quant.as_ref().and_then(|q| q.weight_grid()), None);
    let imported = ImportConfig::from_yaml_str(&plain.to_yaml(), "all_config.yaml").expect("x");
    assert_eq!(imported.weight_grid(), None);
}

/// Bad `quant` settings are errors naming the key and what is accepted.
#[test]
fn quant_section_rejects_bad_settings() {
    let path = configs_dir().join("sudoku_ci.yaml");
    let err = |ov: &[&str]| {
        TrainConfig::load(&path, ov)
            .expect_err(&format!("{ov:?} accepted"))
            .to_string()
    };
    let e = err(&["quant.weights=int4"]);
    assert!(
        e.contains("quant.weights") && e.contains("int8, int16 or none"),
        "{e}"
    );
    let e = err(&["quant.weights=int8", "quant.margin=0.5"]);
    assert!(e.contains("quant.margin"), "{e}");
    let e = err(&["quant.weights=int8", "quant.calib_batches=0"]);
    assert!(e.contains("quant.calib_batches"), "{e}");
    let e = err(&["quant.weights=int8", "quant.activations=int4"]);
    assert!(e.contains("quant.activations"), "{e}");
    let e = err(&["quant.start_step=3"]);
    assert!(e.contains("quant.weights"), "{e}");
    let e = err(&["quant.weights=int8", "quant.start_step=-1"]);
    assert!(e.contains("quant.start_step"), "{e}");
    let e = err(&["quant.weights=int8", "quant.bits=8"]);
    assert!(e.contains("quant.bits"), "{e}");
}
