//! Importing reference checkpoints: the config against the one the reference derives (recorded
//! by tests/fixtures/gen_pickle_checks.py), tensors against the raw torch.save contents, and
//! the errors an import must give.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use trm_nostd::{Config, PosEncoding, TensorId};
use trm_reference::checkpoint::{ImportOptions, SizeSource, find_checkpoint, import_reference};
use trm_reference::config::{ConfigError, ImportConfig};
use trm_reference::names::map_tensors;
use trm_reference::torch::load_torch_file;

fn expected_config(fixture: &str) -> Config {
    let c = &checks()["reference"][fixture]["config"];
    let u = |k: &str| c[k].as_u64().unwrap() as u32;
    let f = |k: &str| c[k].as_f64().unwrap() as f32;
    Config {
        hidden_size: u("hidden_size"),
        num_heads: u("num_heads"),
        expansion: f("expansion"),
        l_layers: u("l_layers"),
        h_cycles: u("h_cycles"),
        l_cycles: u("l_cycles"),
        mlp_t: c["mlp_t"].as_bool().unwrap(),
        pos_encodings: match c["pos_encodings"].as_str().unwrap() {
            "rope" => PosEncoding::Rope,
            "learned" => PosEncoding::Learned,
            _ => PosEncoding::None,
        },
        puzzle_emb_ndim: u("puzzle_emb_ndim"),
        puzzle_emb_len: u("puzzle_emb_len"),
        num_puzzle_identifiers: u("num_puzzle_identifiers"),
        vocab_size: u("vocab_size"),
        seq_len: u("seq_len"),
        halt_max_steps: u("halt_max_steps"),
        rms_norm_eps: f("rms_norm_eps"),
        rope_theta: f("rope_theta"),
    }
}

#[test]
fn fixtures_import_with_the_reference_config_and_values() {
    let root = reference_fixtures();
    for fixture in REFERENCE_FIXTURES {
        let dir = root.join(fixture);
        let m = import_reference(&dir, &ImportOptions::default()).unwrap();
        assert_eq!(m.config, expected_config(fixture), "{fixture}");
        assert_eq!(m.checkpoint, dir.join("step_0"));
        assert_eq!(m.seq_len_source, SizeSource::Dataset);
        assert_eq!(m.vocab_source, SizeSource::Dataset);
        let want_dtype = if fixture.ends_with("bf16") {
            "bfloat16"
        } else {
            "float32"
        };
        assert_eq!(m.forward_dtype, want_dtype);
        // Every tensor of the config, in file order, equal to the raw checkpoint's values.
        let ids: Vec<TensorId> = TensorId::all(&m.config).collect();
        assert_eq!(m.tensors.iter().map(|t| t.0).collect::<Vec<_>>(), ids);
        let raw: HashMap<String, _> = load_torch_file(&dir.join("step_0"))
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(raw.len(), ids.len(), "{fixture}: extra or missing keys");
        for (id, values) in &m.tensors {
            let t = &raw[&format!("_orig_mod.model.{id}")];
            assert_eq!(values.len(), id.shape(&m.config).numel());
            let want: Vec<f32> = values_f64(t).iter().map(|&v| v as f32).collect();
            assert_eq!(values, &want, "{fixture} {id}");
        }
    }
}

#[test]
fn a_checkpoint_file_works_like_its_folder() {
    let dir = reference_fixtures().join("sudoku-att-d64-f32");
    assert_eq!(find_checkpoint(&dir).unwrap(), dir.join("step_0"));
    let a = import_reference(&dir, &ImportOptions::default()).unwrap();
    let b = import_reference(&dir.join("step_0"), &ImportOptions::default()).unwrap();
    assert_eq!(a.config, b.config);
    assert_eq!(a.tensors, b.tensors);
}

/// A temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch copy of a fixture (checkpoint and config, optionally the dataset).
fn scratch(fixture: &str, tag: &str, with_data: bool) -> Scratch {
    let src = reference_fixtures().join(fixture);
    let dir = std::env::temp_dir().join(format!(
        "trm-reference-test-{}-{fixture}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["step_0", "all_config.yaml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if with_data {
        std::fs::create_dir_all(dir.join("data/train")).unwrap();
        std::fs::copy(
            src.join("data/train/dataset.json"),
            dir.join("data/train/dataset.json"),
        )
        .unwrap();
    }
    Scratch(dir)
}

#[test]
fn sizes_come_from_shapes_without_the_dataset() {
    // mlp_t: seq_len from the token-mixer weights, vocab from the embedding.
    let dir = scratch("sudoku-mlp_t-d64-f32", "nodata", false);
    let m = import_reference(&dir, &ImportOptions::default()).unwrap();
    assert_eq!(m.config, expected_config("sudoku-mlp_t-d64-f32"));
    assert_eq!(m.seq_len_source, SizeSource::TensorShape);
    assert_eq!(m.vocab_source, SizeSource::TensorShape);
    assert!(m.dataset_json.is_none());

    // Attention with RoPE: the weights do not tell seq_len; the error says how to give it.
    let dir = scratch("sudoku-att-d64-f32", "nodata", false);
    let e = import_reference(&dir, &ImportOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--seq-len"), "{e:#}");
    let m = import_reference(
        &dir,
        &ImportOptions {
            seq_len: Some(81),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(m.config, expected_config("sudoku-att-d64-f32"));
    assert_eq!(m.seq_len_source, SizeSource::Option);
}

#[test]
fn wrong_arch_settings_are_reported_with_expected_and_got() {
    // A wrong hidden size: every shape disagrees; the message names a tensor and both shapes.
    let dir = scratch("sudoku-mlp_t-d64-f32", "hidden", true);
    let yaml = std::fs::read_to_string(dir.join("all_config.yaml")).unwrap();
    std::fs::write(
        dir.join("all_config.yaml"),
        yaml.replace("hidden_size: 64", "hidden_size: 128")
            .replace("puzzle_emb_ndim: 64", "puzzle_emb_ndim: 128"),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        import_reference(&dir, &ImportOptions::default()).unwrap_err()
    );
    assert!(e.contains("expected shape") && e.contains("got"), "{e}");

    // mlp_t switched off: the attention weights are missing, the mlp_t ones are extra.
    let dir = scratch("sudoku-mlp_t-d64-f32", "nomlpt", true);
    let yaml = std::fs::read_to_string(dir.join("all_config.yaml")).unwrap();
    std::fs::write(
        dir.join("all_config.yaml"),
        yaml.replace("mlp_t: true", "mlp_t: false")
            .replace("pos_encodings: none", "pos_encodings: rope"),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        import_reference(&dir, &ImportOptions::default()).unwrap_err()
    );
    assert!(
        e.contains("inner.L_level.layers.0.self_attn.qkv_proj.weight"),
        "{e}"
    );
}

#[test]
fn extra_and_missing_tensors_are_errors() {
    let dir = reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let config = import_reference(&dir, &ImportOptions::default())
        .unwrap()
        .config;
    let raw = load_torch_file(&dir.join("step_0")).unwrap();
    let strip = |n: &str| n.trim_start_matches("_orig_mod.model.").to_string();
    let full: HashMap<String, _> = raw.iter().map(|(n, t)| (strip(n), t.clone())).collect();
    assert_eq!(map_tensors(&config, full.clone()).unwrap().len(), 15);

    let mut extra = full.clone();
    extra.insert("inner.extra.weight".into(), raw[0].1.clone());
    // A known non-persistent buffer is tolerated.
    extra.insert("inner.rotary_emb.cos_cached".into(), raw[0].1.clone());
    let e = map_tensors(&config, extra).unwrap_err().to_string();
    assert!(
        e.contains("inner.extra.weight") && !e.contains("cos_cached"),
        "{e}"
    );

    let mut missing = full.clone();
    missing.remove("inner.q_head.bias");
    let e = map_tensors(&config, missing).unwrap_err().to_string();
    assert!(e.contains("inner.q_head.bias"), "{e}");

    let mut wrong_type = full;
    let mut t = wrong_type["inner.q_head.bias"].clone();
    t.dtype = trm_reference::torch::TorchDType::I32;
    t.data.truncate(8);
    wrong_type.insert("inner.q_head.bias".into(), t);
    let e = format!("{:#}", map_tensors(&config, wrong_type).unwrap_err());
    assert!(
        e.contains("inner.q_head.bias") && e.contains("int32"),
        "{e}"
    );
}

#[test]
fn all_config_defaults_and_errors() {
    let minimal = "arch:\n  hidden_size: 64\n  num_heads: 2\n  expansion: 2.5\n  L_layers: 1\n  \
                   H_cycles: 2\n  L_cycles: 3\n  pos_encodings: learned\n  halt_max_steps: 4\n";
    let s = ImportConfig::from_yaml_str(minimal, "minimal").unwrap();
    // The reference config class's defaults.
    assert!(!s.arch.mlp_t);
    assert_eq!(s.arch.puzzle_emb_ndim, 0);
    assert_eq!(s.arch.puzzle_emb_len, 16);
    assert_eq!(s.arch.rms_norm_eps, 1e-5);
    assert_eq!(s.arch.rope_theta, 10000.0);
    assert_eq!(s.arch.forward_dtype, "bfloat16");
    assert_eq!(s.arch.expansion, 2.5);
    assert_eq!(s.arch.pos_encodings, PosEncoding::Learned);
    assert!(s.data_paths.is_empty());

    for (bad, needle) in [
        (minimal.replace("  hidden_size: 64\n", ""), "hidden_size"),
        (minimal.replace("learned", "alibi"), "pos_encodings"),
        (
            minimal.replace("num_heads: 2", "num_heads: -2"),
            "num_heads",
        ),
        (
            minimal.replace("expansion: 2.5", "expansion: lots"),
            "expansion",
        ),
        (
            format!("{minimal}  name: recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1\n"),
            "hrm",
        ),
        ("lr: 1\n".to_string(), "arch"),
    ] {
        let e = ImportConfig::from_yaml_str(&bad, "bad")
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    assert!(matches!(
        ImportConfig::from_yaml_str("arch: [\n", "broken.yaml"),
        Err(ConfigError::Yaml { ref origin, .. }) if origin == "broken.yaml"
    ));
}

#[test]
fn an_import_ignores_what_it_does_not_read() {
    // Keys this schema does not know, at the top and in `arch`, and training settings that the
    // trainer would reject: an import reads `arch` and `data_paths` only.
    let text = "arch:\n  hidden_size: 64\n  num_heads: 2\n  expansion: 4\n  L_layers: 2\n  \
                H_cycles: 3\n  L_cycles: 6\n  pos_encodings: rope\n  halt_max_steps: 16\n  \
                forward_dtype: float64\n  some_new_option: 3\n  loss:\n    name: losses@Other\n    \
                loss_type: softmax_cross_entropy\n    extra: 1\n\
                data_paths: [data/sudoku]\nglobal_batch_size: 0\nnot_a_key: ${nowhere}\n";
    let s = ImportConfig::from_yaml_str(text, "reference").unwrap();
    assert_eq!(s.data_paths, ["data/sudoku"]);
    assert_eq!(s.arch.forward_dtype, "float64");
    assert_eq!(s.arch.loss.name, "losses@Other");
    // Keys an import does not use take the reference defaults when absent.
    assert_eq!(s.arch.name, trm_reference::config::TRM_ARCH_NAME);
    assert_eq!(s.arch.h_layers, 0);
    assert_eq!(s.arch.halt_exploration_prob, 0.1);
    // Interpolations in what it reads are resolved.
    let with_ref = text.replace(
        "num_heads: 2",
        "num_heads: 2\n  puzzle_emb_ndim: ${.hidden_size}",
    );
    let s = ImportConfig::from_yaml_str(&with_ref, "reference").unwrap();
    assert_eq!(s.arch.puzzle_emb_ndim, 64);
}

#[test]
fn missing_config_or_checkpoint_is_an_error() {
    let e = import_reference(Path::new("/nonexistent/dir"), &ImportOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/dir"));
    let dir = scratch("sudoku-mlp_t-d64-f32", "noyaml", false);
    std::fs::remove_file(dir.join("all_config.yaml")).unwrap();
    let e = import_reference(&dir, &ImportOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("all_config.yaml"));
}
