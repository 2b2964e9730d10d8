//! Our trainer's checkpoint folders (`step_<N>/model.safetensors` + `all_config.yaml`) import
//! through the same path as reference checkpoints, and give the same `.trm` file for the same
//! weights.

mod common;

use std::collections::HashMap;

use common::write_our_checkpoint;

use trm_export::export::reference_to_trm;
use trm_nostd::DType;
use trm_reference::checkpoint::find_checkpoint;

#[test]
fn our_checkpoint_folders_import_like_reference_files() {
    let fixture = common::reference_fixtures().join("sudoku-mlp_t-d64-f32");
    let run = std::env::temp_dir().join(format!("trm-our-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    write_our_checkpoint(&fixture, &run, 2);
    write_our_checkpoint(&fixture, &run, 10);
    // An incomplete folder (no weights yet) with a larger step is skipped.
    std::fs::create_dir_all(run.join("step_20")).unwrap();

    let found = find_checkpoint(&run).unwrap();
    assert_eq!(found, run.join("step_10").join("model.safetensors"));
    assert_eq!(
        find_checkpoint(&run.join("step_2")).unwrap(),
        run.join("step_2").join("model.safetensors")
    );

    let want = reference_to_trm(&fixture, DType::F32).unwrap();
    let got = reference_to_trm(&run, DType::F32).unwrap();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the .trm from our checkpoint differs from the reference import"
    );

    // Every tensor name must be known: an extra one is an error naming it.
    let dir = run.join("step_10");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut named: HashMap<String, safetensors::tensor::TensorView<'_>> =
        st.tensors().into_iter().collect();
    let h = named["inner.H_init"].clone();
    named.insert("inner.unexpected".into(), h);
    let bytes2 = safetensors::serialize(named, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes2).unwrap();
    let err = format!("{:#}", reference_to_trm(&run, DType::F32).unwrap_err());
    assert!(err.contains("inner.unexpected"), "{err}");
    std::fs::remove_dir_all(&run).unwrap();
}
