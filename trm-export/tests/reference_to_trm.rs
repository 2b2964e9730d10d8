//! A reference checkpoint as a float `.trm` file: the library (`reference_to_trm`) and the
//! `import-reference` command. What the import reads is tested in trm-reference.

mod common;

use common::reference_fixtures;
use trm_export::export::reference_to_trm;
use trm_nostd::format::Model;
use trm_nostd::{DType, TensorId, TensorSource};
use trm_reference::checkpoint::{ImportOptions, import_reference};

#[test]
fn trm_file_round_trips_the_weights() {
    let dir = reference_fixtures().join("sudoku-mlp_t-d64-bf16");
    let m = import_reference(&dir, &ImportOptions::default()).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let bytes = reference_to_trm(&dir, dtype).unwrap();
        let model = Model::parse(&bytes).unwrap();
        assert_eq!(*model.config(), m.config);
        for (id, values) in &m.tensors {
            let v = model.tensor(*id).unwrap();
            assert_eq!(v.dtype, dtype);
            for (i, &x) in values.iter().enumerate() {
                let want = match dtype {
                    DType::BF16 => half::bf16::from_f32(x).to_f32(),
                    _ => x,
                };
                assert_eq!(v.get_f32(i), Some(want), "{id}[{i}]");
            }
        }
    }
}

#[test]
fn cli_imports_a_reference_checkpoint() {
    let dir = reference_fixtures().join("sudoku-att-d64-f32");
    let out = std::env::temp_dir().join(format!("trm-export-cli-{}.trm", std::process::id()));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_trm-export"))
        .args(["import-reference", "--dtype", "f16", "-o"])
        .arg(&out)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let model = Model::parse(&bytes).unwrap();
    let imported = import_reference(&dir, &ImportOptions::default()).unwrap();
    assert_eq!(*model.config(), imported.config);
    let bias = model.tensor(TensorId::QHeadBias).unwrap();
    assert_eq!(bias.dtype, DType::F16);
    assert_eq!(bias.get_f32(0), Some(half::f16::from_f32(0.1).to_f32()));

    // A bad input: non-zero exit and a message naming the path.
    let failed = std::process::Command::new(env!("CARGO_BIN_EXE_trm-export"))
        .args(["import-reference", "/nonexistent/ckpt", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("/nonexistent/ckpt"));
}
