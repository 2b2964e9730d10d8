//! The tch model reproduces the reference implementation's outputs on the shared fixtures
//! (`../shared/reference-fixtures` beside the workspace, see its README): eval logits and q_halt at all 16 ACT
//! steps, from the reference's own `torch.save` checkpoint.

use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use trm_train::model::{Carry, Trm, load_reference};

/// Relative errors are taken against max(|expected|, this), so values near zero do not turn
/// rounding noise into huge ratios.
const REL_FLOOR: f64 = 1e-2;

fn fixtures_root() -> PathBuf {
    std::env::var_os("TRM_REFERENCE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference-fixtures")
        })
}

fn read_npy(path: &Path) -> Tensor {
    Tensor::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Largest |a - b| / max(|b|, floor) over all elements.
fn max_rel(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    let diff = (a - b).abs();
    let denom = b.abs().clamp_min(floor);
    (diff / denom).max().double_value(&[])
}

/// Runs all ACT steps of a fixture and checks logits and q_halt within `tol` (relative),
/// and the final argmax predictions (all equal).
fn run_fixture(name: &str, kind: Kind, tol: f64) {
    let dir = fixtures_root().join(name);
    assert!(dir.exists(), "fixture {} missing", dir.display());
    let loaded = load_reference(&dir.join("step_0"), Device::Cpu).unwrap();
    assert_eq!(loaded.forward_kind, kind);
    assert_eq!(loaded.model.forward_kind(), kind);
    let model = &loaded.model;
    let config = *model.config();

    let inputs = read_npy(&dir.join("data/test/all__inputs.npy"));
    let ids = read_npy(&dir.join("data/test/all__puzzle_identifiers.npy"));
    let expected = Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap();
    let get = |k: &str| {
        expected
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, t)| t.shallow_clone())
            .unwrap_or_else(|| panic!("expected.safetensors lacks {k}"))
    };

    let _no_grad = tch::no_grad_guard();
    let rows = model.puzzle_rows(&ids).unwrap();
    let x = model.input_embeddings(&inputs, rows.as_ref()).unwrap();
    let mut carry = model.initial_carry(inputs.size()[0]).unwrap();
    let mut worst: f64 = 0.0;
    for step in 1..=config.halt_max_steps {
        let (next, out) = model.act_step(&carry, &x).unwrap();
        carry = next;
        let want_logits = get(&format!("eval_logits_step{step}"));
        let want_q = get(&format!("eval_q_halt_step{step}"));
        assert_eq!(out.logits.size(), want_logits.size());
        assert_eq!(out.q_halt.size(), want_q.size());
        assert_eq!(out.logits.kind(), kind);
        assert_eq!(out.q_halt.kind(), Kind::Float);
        let rl = max_rel(&out.logits.to_kind(Kind::Float), &want_logits, REL_FLOOR);
        let rq = max_rel(&out.q_halt, &want_q, REL_FLOOR);
        println!("{name} step {step:2}: logits max rel {rl:.3e}, q_halt max rel {rq:.3e}");
        worst = worst.max(rl).max(rq);
        assert!(rl < tol, "{name} step {step}: logits rel err {rl:e}");
        assert!(rq < tol, "{name} step {step}: q_halt rel err {rq:e}");
    }
    let preds = out_preds(model, &carry);
    let want_preds = get("eval_preds").to_kind(Kind::Int64);
    assert_eq!(preds.size(), want_preds.size());
    assert_eq!(
        preds
            .ne_tensor(&want_preds)
            .sum(Kind::Int64)
            .int64_value(&[]),
        0,
        "{name}: argmax predictions differ"
    );
    println!("{name}: worst relative error {worst:.3e}");
}

/// Argmax of the logits of the final y (the heads read only y, so no further step is run).
fn out_preds(model: &Trm, carry: &Carry) -> Tensor {
    model.heads(&carry.z_h).unwrap().logits.argmax(-1, false)
}

#[test]
fn mlp_t_f32_matches_reference_at_every_act_step() {
    run_fixture("sudoku-mlp_t-d64-f32", Kind::Float, 1e-5);
}

#[test]
fn attention_rope_f32_matches_reference_at_every_act_step() {
    run_fixture("sudoku-att-d64-f32", Kind::Float, 1e-5);
}

/// bf16 activations: the same libtorch ops in the same order give the reference's rounding,
/// so the tolerance is still tight (one bf16 ulp is 2^-8 = 3.9e-3 relative).
#[test]
fn mlp_t_bf16_matches_reference_at_every_act_step() {
    run_fixture("sudoku-mlp_t-d64-bf16", Kind::BFloat16, 1e-5);
}
