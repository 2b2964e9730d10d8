//! Attention models with learned positions and with none reproduce the reference
//! implementation's eval outputs at every ACT step, within the rounding noise of the CPU the
//! fixtures were computed on. The fixtures are made by tests/fixtures/gen_pos_variants.py,
//! which runs the reference's own model code.

mod common;

use std::path::PathBuf;

use common::{NOISE_FACTOR, rel_to_max, spread};
use tch::{Device, Kind, Tensor, nn};
use trm_nostd::{Config, PosEncoding};
use trm_train::model::{Trm, load_named_tensors};

/// The sizes of gen_pos_variants.py's CONFIG.
fn config(pos: PosEncoding) -> Config {
    Config {
        hidden_size: 16,
        num_heads: 2,
        expansion: 4.0,
        l_layers: 2,
        h_cycles: 2,
        l_cycles: 2,
        mlp_t: false,
        pos_encodings: pos,
        puzzle_emb_ndim: 16,
        puzzle_emb_len: 2,
        num_puzzle_identifiers: 3,
        vocab_size: 11,
        seq_len: 9,
        halt_max_steps: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
    }
}

/// Runs all ACT steps of the fixture `file` three times (plain, then with H_init and with
/// L_init moved by one ulp: rounding-equivalent runs) and checks each step's logits and q_halt
/// against the reference's within [`common::NOISE_FACTOR`] times the spread of those runs plus
/// one ulp (relative to the largest expected value). The fixtures were computed on another CPU,
/// whose matmul kernels round differently, and the recursion amplifies rounding from step to
/// step; a wrong position encoding differs from the start by orders of magnitude more.
fn run(pos: PosEncoding, file: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let all = Tensor::read_safetensors(&path).unwrap();
    let take = |k: &str| {
        all.iter()
            .find(|(n, _)| n == k)
            .map(|(_, t)| t.shallow_clone())
            .unwrap_or_else(|| panic!("{file} lacks {k}"))
    };
    let c = config(pos);
    let inputs = take("batch.inputs");
    let ids = take("batch.puzzle_identifiers");
    let _no_grad = tch::no_grad_guard();
    let nudges = [None, Some("inner.H_init"), Some("inner.L_init")];
    let mut runs: Vec<_> = nudges
        .iter()
        .map(|nudge| {
            let weights: Vec<(String, Tensor)> = all
                .iter()
                .filter(|(n, _)| n.starts_with("_orig_mod.model."))
                .map(|(n, t)| (n.clone(), t.copy()))
                .collect();
            let vs = nn::VarStore::new(Device::Cpu);
            let model = Trm::new(&vs.root(), &c).unwrap();
            load_named_tensors(&vs, weights).unwrap();
            if let Some(var) = nudge {
                common::nudge_ulps(&vs, var, Kind::Float, 1);
            }
            let rows = model.puzzle_rows(&ids).unwrap();
            let x = model.input_embeddings(&inputs, rows.as_ref()).unwrap();
            let carry = model.initial_carry(inputs.size()[0]).unwrap();
            (vs, model, x, carry)
        })
        .collect();
    let floor = common::epsilon(Kind::Float);
    for step in 1..=c.halt_max_steps {
        let outs: Vec<(Tensor, Tensor)> = runs
            .iter_mut()
            .map(|(_, model, x, carry)| {
                let (next, out) = model.act_step(carry, x).unwrap();
                *carry = next;
                (out.logits.to_kind(Kind::Float), out.q_halt)
            })
            .collect();
        let want = take(&format!("expected.logits_step{step}"));
        let want_q = take(&format!("expected.q_halt_step{step}"));
        assert_eq!(outs[0].0.size(), want.size());
        let checks = [
            (
                "logits",
                rel_to_max(&outs[0].0, &want),
                spread(&outs, |a, b| rel_to_max(&a.0, &b.0)),
            ),
            (
                "q_halt",
                rel_to_max(&outs[0].1, &want_q),
                spread(&outs, |a, b| rel_to_max(&a.1, &b.1)),
            ),
        ];
        for (what, err, noise) in checks {
            println!("{file} step {step}: {what} error {err:.3e}, spread {noise:.3e}");
            assert!(
                err <= NOISE_FACTOR * noise + floor,
                "{file} step {step}: {what} error {err:e} > {NOISE_FACTOR} x spread {noise:e} \
                 + {floor:e}"
            );
        }
    }
}

#[test]
fn attention_learned_positions_match_reference() {
    run(PosEncoding::Learned, "pos_variants_learned.safetensors");
}

#[test]
fn attention_without_positions_matches_reference() {
    run(PosEncoding::None, "pos_variants_none.safetensors");
}

#[test]
fn checkpoint_of_another_variant_is_rejected() {
    // The learned-position file has inner.embed_pos, which a no-position model lacks.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pos_variants_learned.safetensors");
    let weights: Vec<(String, Tensor)> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.starts_with("_orig_mod.model."))
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Trm::new(&vs.root(), &config(PosEncoding::None)).unwrap();
    let err = load_named_tensors(&vs, weights).unwrap_err();
    assert!(err.to_string().contains("embed_pos"), "{err}");
}
