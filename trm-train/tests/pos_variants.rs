//! Attention models with learned positions and with none reproduce the reference
//! implementation's eval outputs at every ACT step. The fixtures are made by
//! tests/fixtures/gen_pos_variants.py, which runs the reference's own model code.

use std::path::PathBuf;
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

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    ((a - b).abs() / b.abs().clamp_min(1e-2))
        .max()
        .double_value(&[])
}

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
    let weights: Vec<(String, Tensor)> = all
        .iter()
        .filter(|(n, _)| n.starts_with("_orig_mod.model."))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let c = config(pos);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Trm::new(&vs.root(), &c).unwrap();
    load_named_tensors(&vs, weights).unwrap();

    let _no_grad = tch::no_grad_guard();
    let inputs = take("batch.inputs");
    let rows = model
        .puzzle_rows(&take("batch.puzzle_identifiers"))
        .unwrap();
    let x = model.input_embeddings(&inputs, rows.as_ref()).unwrap();
    let mut carry = model.initial_carry(inputs.size()[0]).unwrap();
    for step in 1..=c.halt_max_steps {
        let (next, out) = model.act_step(&carry, &x).unwrap();
        carry = next;
        let want = take(&format!("expected.logits_step{step}"));
        let want_q = take(&format!("expected.q_halt_step{step}"));
        assert_eq!(out.logits.size(), want.size());
        let rl = max_rel(&out.logits.to_kind(Kind::Float), &want);
        let rq = max_rel(&out.q_halt, &want_q);
        println!("{file} step {step}: logits max rel {rl:.3e}, q_halt {rq:.3e}");
        assert!(rl < 1e-5, "{file} step {step}: logits rel err {rl:e}");
        assert!(rq < 1e-5, "{file} step {step}: q_halt rel err {rq:e}");
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
