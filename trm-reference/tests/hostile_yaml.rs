//! Hostile YAML (issue 14, item 1): every YAML the project reads (a training config, a
//! checkpoint's `all_config.yaml` through the importer, an override value) is refused with a
//! clear error when it would expand past the alias budget, nest too deep or is too long, before
//! the tree is built: the 478-byte anchor bomb that grew `trm-train train --config` to 23 GB now
//! fails in milliseconds.

use std::path::Path;

use trm_reference::checkpoint::import_reference;
use trm_reference::config::yaml::{MAX_DEPTH, MAX_INPUT_BYTES};
use trm_reference::config::{ConfigError, ImportConfig, TrainConfig};

/// The document: `a0` a list of 9 strings, each `a<i>` a list of 9 aliases of
/// `a<i-1>` (9^10 strings once expanded), 478 bytes.
fn anchor_bomb() -> String {
    let items = |x: &str| format!("[{}]", [x; 9].join(","));
    let mut text = format!("a0: &a0 {}\n", items("\"lol\""));
    for i in 1..10 {
        text.push_str(&format!("a{i}: &a{i} {}\n", items(&format!("*a{}", i - 1))));
    }
    text
}

fn yaml_message(e: &ConfigError) -> &str {
    match e {
        ConfigError::Yaml { message, .. } => message,
        other => panic!("expected a YAML error, got {other:?}"),
    }
}

#[test]
fn the_anchor_bomb_is_refused_everywhere() {
    let bomb = anchor_bomb();
    assert_eq!(bomb.len(), 478);
    let e = TrainConfig::from_yaml_str::<&str>(&bomb, "bomb.yaml", &[]).expect_err("bomb");
    assert!(yaml_message(&e).contains("expands to more than"), "{e}");
    assert!(e.to_string().contains("bomb.yaml"), "{e}");
    let e = ImportConfig::from_yaml_str(&bomb, "all_config.yaml").expect_err("bomb");
    assert!(yaml_message(&e).contains("expands to more than"), "{e}");

    // As files: `trm-train train --config` and a checkpoint folder's all_config.yaml
    // (`trm-export export`, `trm-train evaluate` on a reference checkpoint).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("all_config.yaml");
    std::fs::write(&path, &bomb).expect("write");
    let e = TrainConfig::load::<&str>(&path, &[]).expect_err("bomb file");
    assert!(yaml_message(&e).contains("expands to more than"), "{e}");
    std::fs::write(
        dir.path().join("step_1"),
        b"not read: the config fails first",
    )
    .expect("ckpt");
    let e = import_reference(dir.path(), &Default::default()).expect_err("bomb checkpoint");
    assert!(format!("{e:#}").contains("expands to more than"), "{e:#}");
}

#[test]
fn an_anchor_bomb_in_an_override_value_is_refused() {
    let mut value = "[&a0 [x,x,x,x,x,x,x,x,x]".to_string();
    for i in 1..10 {
        value.push_str(&format!(
            ", &a{i} [{}]",
            vec![format!("*a{}", i - 1); 9].join(",")
        ));
    }
    value.push(']');
    let e = TrainConfig::from_overrides(&[format!("data_paths={value}")]).expect_err("bomb");
    match &e {
        ConfigError::BadOverride { reason, .. } => {
            assert!(reason.contains("expands to more than"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn aliases_of_long_text_are_bounded_by_bytes() {
    // 100 KiB of text, repeated by 64 aliases: 6.4 MiB once expanded, from a 100 KiB file.
    let text = format!(
        "s: &s {}\nl: [{}]\n",
        "x".repeat(100 << 10),
        vec!["*s"; 64].join(",")
    );
    assert!(text.len() < MAX_INPUT_BYTES);
    let e = TrainConfig::from_yaml_str::<&str>(&text, "long.yaml", &[]).expect_err("bytes");
    assert!(yaml_message(&e).contains("bytes of text"), "{e}");
}

#[test]
fn deep_nesting_is_refused() {
    // Block sequences nested on one line, flow lists (the scanner allows 255 levels), block
    // mappings by indentation: all past the limit.
    let block = format!("{}x\n", "- ".repeat(100_000));
    let flow = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
    let mut mapping = String::new();
    for level in 0..(MAX_DEPTH + 1) {
        mapping.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
    }
    mapping.push_str(&format!("{}v: 1\n", " ".repeat(MAX_DEPTH + 1)));
    for (name, text) in [("block", block), ("flow", flow), ("mapping", mapping)] {
        let e = TrainConfig::from_yaml_str::<&str>(&text, name, &[]).expect_err(name);
        assert!(
            yaml_message(&e).contains("nests deeper than"),
            "{name}: {e}"
        );
    }
    // Nesting within the limit (the root mapping and MAX_DEPTH - 1 lists) is parsed, then
    // checked as a config as before.
    let ok = format!(
        "a: {}{}\n",
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    let e = TrainConfig::from_yaml_str::<&str>(&ok, "ok", &[]).expect_err("not a config");
    assert!(!matches!(e, ConfigError::Yaml { .. }), "{e:?}");
}

#[test]
fn a_file_over_the_size_limit_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.yaml");
    let mut text = "# padding\n".repeat(MAX_INPUT_BYTES / 10 + 1);
    text.push_str("lr: 0.1\n");
    std::fs::write(&path, &text).expect("write");
    let e = TrainConfig::load::<&str>(&path, &[]).expect_err("too big");
    assert!(yaml_message(&e).contains("larger than"), "{e}");
    let e = ImportConfig::load(&path).expect_err("too big");
    assert!(yaml_message(&e).contains("larger than"), "{e}");
    let e = TrainConfig::from_yaml_str::<&str>(&text, "big", &[]).expect_err("too long");
    assert!(yaml_message(&e).contains("bytes"), "{e}");
    // The reference's own config files are far below every limit.
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trm-train/configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&configs).expect("configs") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            TrainConfig::load::<&str>(&p, &[]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            seen += 1;
        }
    }
    assert!(seen > 0);
}
