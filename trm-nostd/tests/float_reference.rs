//! Whole-model check against the reference implementation's own outputs
//! (`reference-fixtures/sudoku-*-d64-f32`, see its README): eval logits of all 16 ACT steps,
//! halting logits and final predictions for the fixture's 8 puzzles.
//!
//! Ignored by default: the weights come from the reference `step_0` (a torch.save pickle), which
//! this crate cannot read yet. Until the pure-Rust importer lands, convert `step_0` to safetensors
//! (reference names) into a directory and run
//! `TRM_REF_WEIGHTS=<dir> cargo test -p trm-nostd --test float_reference -- --ignored --nocapture`
//! where `<dir>/<fixture>.safetensors` holds the weights. `TRM_REF_FIXTURES` overrides the
//! fixture root (default `/work/shared/reference-fixtures`).

mod float_common;

use float_common::{Fixture, rel_err};
use std::path::{Path, PathBuf};
use trm_nostd::float::{OwnedWeights, kernels};
use trm_nostd::{Config, FloatEngine, HaltMode, PosEncoding};

fn fixtures_root() -> PathBuf {
    std::env::var_os("TRM_REF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/reference-fixtures"))
}

/// The `arch:` settings of a reference `all_config.yaml` (flat `key: value` lines).
fn arch_config(dir: &Path, num_puzzle_identifiers: u32) -> Config {
    let text = std::fs::read_to_string(dir.join("all_config.yaml")).expect("all_config.yaml");
    let mut in_arch = false;
    let mut kv = std::collections::HashMap::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_arch = line.trim_end() == "arch:";
            continue;
        }
        if in_arch && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some((k, v)) = line.trim().split_once(':') {
                kv.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    let u = |k: &str| kv[k].parse::<u32>().unwrap_or_else(|_| panic!("arch.{k}"));
    let f = |k: &str, d: f32| kv.get(k).map_or(d, |v| v.parse().expect(k));
    let hidden = u("hidden_size");
    let ndim = u("puzzle_emb_ndim");
    Config {
        hidden_size: hidden,
        num_heads: u("num_heads"),
        expansion: f("expansion", 4.0),
        l_layers: u("L_layers"),
        h_cycles: u("H_cycles"),
        l_cycles: u("L_cycles"),
        mlp_t: kv.get("mlp_t").is_some_and(|v| v == "true"),
        pos_encodings: match kv["pos_encodings"].as_str() {
            "rope" => PosEncoding::Rope,
            "learned" => PosEncoding::Learned,
            _ => PosEncoding::None,
        },
        puzzle_emb_ndim: ndim,
        puzzle_emb_len: Config::resolve_puzzle_emb_len(u("puzzle_emb_len"), ndim, hidden),
        num_puzzle_identifiers,
        vocab_size: 11,
        seq_len: 81,
        halt_max_steps: u("halt_max_steps"),
        rms_norm_eps: f("rms_norm_eps", 1e-5),
        rope_theta: f("rope_theta", 10000.0),
    }
}

/// A C-order little-endian `.npy` array of u8 or i32, as i64 values.
fn npy(path: &Path) -> Vec<i64> {
    let b = std::fs::read(path).expect("npy");
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).expect("header");
    assert!(header.contains("'fortran_order': False"));
    let data = &b[10 + hlen..];
    if header.contains("'|u1'") {
        data.iter().map(|&v| v as i64).collect()
    } else if header.contains("'<i4'") {
        data.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect()
    } else {
        panic!("unsupported npy dtype in {header}")
    }
}

/// Weights from the converted `step_0` (reference names, f32). The lead replaces this with the
/// pure-Rust importer of `step_0`.
fn reference_weights(fixture: &str) -> (Config, OwnedWeights) {
    let dir = std::env::var("TRM_REF_WEIGHTS")
        .expect("set TRM_REF_WEIGHTS to a directory of converted step_0 safetensors");
    let f = Fixture::load(&format!("{dir}/{fixture}.safetensors"));
    let (_, shape) = f.f32("inner.puzzle_emb.weights");
    let config = arch_config(&fixtures_root().join(fixture), shape[0] as u32);
    let names = f.names();
    let vals: Vec<(String, Vec<f32>)> = names.iter().map(|n| (n.clone(), f.vals(n))).collect();
    let w = OwnedWeights::from_named_f32(
        &config,
        vals.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
    )
    .expect("reference names");
    (config, w)
}

/// Logits `[steps][batch * seq_len * vocab]`, q_halt `[steps][batch]` and final predictions of
/// every puzzle, all ACT steps from the initial carry.
struct Run {
    logits: Vec<Vec<f32>>,
    q_halt: Vec<Vec<f32>>,
    preds: Vec<u8>,
}

fn run_all(c: &Config, w: &OwnedWeights, inputs: &[i64], ids: &[i64]) -> Run {
    let (s, v) = (c.seq_len as usize, c.vocab_size as usize);
    let (batch, steps) = (ids.len(), c.halt_max_steps as usize);
    let mut r = Run {
        logits: vec![vec![0.0f32; batch * s * v]; steps],
        q_halt: vec![vec![0.0f32; batch]; steps],
        preds: vec![0u8; batch * s],
    };
    let mut scratch = vec![0.0; FloatEngine::scratch_len_fast(c)];
    let mut e = FloatEngine::new(c, &w.source(), &mut scratch).expect("engine");
    for b in 0..batch {
        let tokens: Vec<u8> = inputs[b * s..(b + 1) * s]
            .iter()
            .map(|&t| t as u8)
            .collect();
        e.start(&tokens, ids[b] as u32).expect("start");
        for k in 0..steps {
            let out = e.step();
            r.q_halt[k][b] = out.q_halt;
            e.logits(&mut r.logits[k][b * s * v..(b + 1) * s * v])
                .expect("logits");
        }
        e.predict(&mut r.preds[b * s..(b + 1) * s])
            .expect("predict");
        if b == 0 {
            // solve() in the reference's eval mode gives the same answer.
            let mut again = vec![0u8; s];
            let sum = e
                .solve(&tokens, ids[b] as u32, HaltMode::AllSteps, &mut again)
                .expect("solve");
            assert_eq!(sum.steps as usize, steps);
            assert_eq!(again, r.preds[..s]);
        }
    }
    r
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Checks the engine against the reference outputs and returns the max relative logits error of
/// each step.
///
/// The random-weight fixture models are chaotic maps: PyTorch itself in f64 differs from its f32
/// run by ~1e-3 (relative) after 2 steps and by O(1) after 4 (mlp_t), so no f32 implementation
/// with another summation order can stay within 1e-4 for 16 steps. The test therefore measures
/// the map's own sensitivity: a second run with H_init moved by one ulp (a rounding-sized
/// perturbation). Per step, the engine must be within 1e-4 of the reference, or within
/// `NOISE_FACTOR` times the one-ulp divergence; argmax and eval_preds must agree wherever the
/// reference's top-two margin exceeds twice that step's max absolute difference.
fn check_fixture(fixture: &str) -> Vec<f32> {
    const NOISE_FACTOR: f32 = 10.0;
    let (c, w) = reference_weights(fixture);
    let dir = fixtures_root().join(fixture);
    let expected = Fixture::load(dir.join("expected.safetensors").to_str().expect("path"));
    let inputs = npy(&dir.join("data/test/all__inputs.npy"));
    let ids = npy(&dir.join("data/test/all__puzzle_identifiers.npy"));
    let (s, v) = (c.seq_len as usize, c.vocab_size as usize);
    assert_eq!(inputs.len(), ids.len() * s);
    let steps = c.halt_max_steps as usize;

    let run = run_all(&c, &w, &inputs, &ids);
    let mut nudged = w.clone();
    let h: Vec<f32> = {
        let src = w.source();
        let view =
            trm_nostd::TensorSource::tensor(&src, trm_nostd::TensorId::HInit).expect("H_init");
        (0..view.shape.numel())
            .map(|i| f32::from_bits(view.get_f32(i).expect("f32").to_bits() + 1))
            .collect()
    };
    nudged.insert_f32(
        trm_nostd::TensorId::HInit,
        trm_nostd::Shape::vector(h.len()),
        &h,
    );
    let noise_run = run_all(&c, &nudged, &inputs, &ids);

    let mut errs = Vec::new();
    for k in 0..steps {
        let want = expected.vals(&format!("eval_logits_step{}", k + 1));
        let err = rel_err(&run.logits[k], &want);
        let noise = rel_err(&noise_run.logits[k], &run.logits[k]);
        let qwant = expected.vals(&format!("eval_q_halt_step{}", k + 1));
        let qerr = run.q_halt[k]
            .iter()
            .zip(&qwant)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs() / b.abs().max(1.0)));
        let qnoise = run.q_halt[k]
            .iter()
            .zip(&noise_run.q_halt[k])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs() / b.abs().max(1.0)));
        println!(
            "{fixture} step {:2}: logits rel err {err:.3e} (one-ulp noise {noise:.3e}), q_halt err {qerr:.3e} (noise {qnoise:.3e})",
            k + 1
        );
        if k == 0 {
            assert!(
                err <= 1e-4,
                "{fixture} step 1: logits relative error {err:e}"
            );
            assert!(qerr <= 1e-4, "{fixture} step 1: q_halt error {qerr:e}");
        }
        assert!(
            err <= 1e-4f32.max(NOISE_FACTOR * noise),
            "{fixture} step {}: logits relative error {err:e}, one-ulp noise {noise:e}",
            k + 1
        );
        assert!(
            qerr <= 1e-4f32.max(NOISE_FACTOR * qnoise),
            "{fixture} step {}: q_halt error {qerr:e}, one-ulp noise {qnoise:e}",
            k + 1
        );
        // Argmax agrees wherever the reference's margin exceeds our difference.
        let tol = 2.0 * max_abs_diff(&run.logits[k], &want);
        let mut checked = 0;
        for (row, wrow) in run.logits[k].chunks_exact(v).zip(want.chunks_exact(v)) {
            let mut sorted = wrow.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > tol {
                assert_eq!(
                    kernels::argmax(row),
                    kernels::argmax(wrow),
                    "step {}",
                    k + 1
                );
                checked += 1;
            }
        }
        if k == steps - 1 {
            let (_, _, raw) = expected.raw("eval_preds");
            let want_preds: Vec<u8> = raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u8)
                .collect();
            let mut same = 0;
            for (i, wrow) in want.chunks_exact(v).enumerate() {
                let mut sorted = wrow.to_vec();
                sorted.sort_by(|a, b| b.total_cmp(a));
                if sorted[0] - sorted[1] > tol {
                    assert_eq!(run.preds[i], want_preds[i], "eval_preds at {i}");
                }
                same += usize::from(run.preds[i] == want_preds[i]);
            }
            println!(
                "{fixture}: eval_preds identical at {same}/{} positions ({checked} had a margin above the difference)",
                want_preds.len()
            );
        }
        errs.push(err);
    }
    errs
}

#[test]
#[ignore = "needs TRM_REF_WEIGHTS (converted step_0) until the step_0 importer lands"]
fn reference_mlp_t_d64_f32() {
    check_fixture("sudoku-mlp_t-d64-f32");
}

#[test]
#[ignore = "needs TRM_REF_WEIGHTS (converted step_0) until the step_0 importer lands"]
fn reference_attention_d64_f32() {
    check_fixture("sudoku-att-d64-f32");
}
