//! Quantization-aware fine-tuning (`quant`): a float checkpoint fine-tuned a few steps with
//! `quant.weights=int8` saves every weight matrix on the int8 export grid (model and EMA), so
//! that `trm-export export --dtype fixed` rounds nothing; the fake-quantized forward pass is the
//! forward pass of the exported weights; gradients pass straight through; resume is exact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::OptimizerConfig as _;
use tch::{Device, Kind, Tensor, nn};
use trm_data::sudoku::SudokuOptions;
use trm_data::sudoku_gen::generate_dataset;
use trm_export::export::{CalibSettings, Format, export, load_float_weights};
use trm_nostd::fixed::prepare::quantize_row_i8;
use trm_nostd::{Config, DType, Model, TensorId};
use trm_reference::checkpoint::{ImportOptions, WeightsChoice};
use trm_train::ckpt;
use trm_train::config::{TrainConfig, WeightQuant};
use trm_train::model::Trm;
use trm_train::model::quant::{project_named, quantized_names};
use trm_train::run::{TrainRun, train};

fn ci_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sudoku_ci.yaml")
}

/// A small generated Sudoku dataset: 96 train puzzles, 16 test puzzles.
fn dataset(dir: &Path) -> PathBuf {
    let out = dir.join("sudoku");
    let opts = SudokuOptions {
        seed: 11,
        ..Default::default()
    };
    generate_dataset(&out, 96, 16, 8, &opts).expect("generate dataset");
    out
}

fn overrides(data: &Path, run_dir: &Path, extra: &[String]) -> Vec<String> {
    let mut v = vec![
        format!("data_paths=[{}]", data.display()),
        format!("checkpoint_path={}", run_dir.display()),
        "epochs=2".into(),
        "eval_interval=2".into(),
        "global_batch_size=16".into(),
        "lr=3e-3".into(),
        "arch.halt_exploration_prob=0.5".into(),
    ];
    v.extend_from_slice(extra);
    v
}

/// Trains `max_steps` steps (resuming when `resume`) and returns the newest checkpoint folder.
fn run(data: &Path, dir: &Path, extra: &[String], max_steps: u64, resume: bool) -> PathBuf {
    let cfg = TrainConfig::load(&ci_config(), &overrides(data, dir, extra)).expect("config");
    let mut run = TrainRun::new(cfg, Device::Cpu);
    run.quiet = true;
    run.resume = resume;
    run.max_steps = Some(max_steps);
    let s = train(&run).expect("training");
    assert_eq!(s.step, max_steps);
    s.last_checkpoint.expect("a checkpoint")
}

fn read_named(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// The model config of a checkpoint (sizes from its dataset).
fn model_config(step_dir: &Path) -> Config {
    let opts = ImportOptions {
        weights: WeightsChoice::Raw,
        ..Default::default()
    };
    load_float_weights(step_dir, &opts).expect("import").config
}

/// The largest rounding error, in int8 steps, of the matrices QAT quantizes, by the
/// exporter's rule (`quantize_row_i8`) applied to the saved values.
fn max_rounding_error(weights: &HashMap<String, Tensor>, c: &Config) -> f64 {
    let mut worst = 0f64;
    for name in quantized_names(c) {
        let t = weights.get(&name).unwrap_or_else(|| panic!("{name} saved"));
        let (rows, cols) = t.size2().expect("a matrix");
        let v = Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32");
        assert_eq!(v.len() as i64, rows * cols);
        for row in v.chunks_exact(cols as usize) {
            let mut q = Vec::new();
            let scale = quantize_row_i8(row, &mut q);
            for (&w, &q) in row.iter().zip(&q) {
                worst = worst.max((f64::from(w) / scale - f64::from(q as i8)).abs());
            }
        }
    }
    worst
}

/// (a), (b): float training, then QAT fine-tuning from its checkpoint (`load_checkpoint`);
/// the QAT checkpoint's model and EMA are on the int8 grid, the float one is not; the fixed
/// export reads the setting, finds no rounding, and its int8 values dequantize to the saved
/// weights.
#[test]
fn qat_fine_tuning_saves_weights_the_fixed_export_does_not_round() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path());
    let float_ck = run(&data, &tmp.path().join("float"), &[], 3, false);
    let c = model_config(&float_ck);
    let float_model = read_named(&float_ck.join(ckpt::MODEL_FILE));
    let float_err = max_rounding_error(&float_model, &c);
    assert!(
        float_err > 0.05,
        "float weights already on the grid? {float_err}"
    );

    let qat_dir = tmp.path().join("qat");
    let load = format!(
        "+load_checkpoint={}",
        float_ck.join(ckpt::MODEL_FILE).display()
    );
    let qat_ck = run(
        &data,
        &qat_dir,
        &[load, "quant.weights=int8".into()],
        3,
        false,
    );
    let config = std::fs::read_to_string(qat_ck.join("all_config.yaml")).expect("config");
    assert!(config.contains("quant:\n"), "{config}");
    assert!(config.contains("  weights: int8\n"), "{config}");
    let model = read_named(&qat_ck.join(ckpt::MODEL_FILE));
    let ema = read_named(&qat_ck.join(ckpt::EMA_FILE));
    let (me, ee) = (max_rounding_error(&model, &c), max_rounding_error(&ema, &c));
    assert!(me < 1e-4, "model weights off the grid by {me} steps");
    assert!(ee < 1e-4, "EMA weights off the grid by {ee} steps");
    // Fine-tuning moved the weights (not a copy of the projected float checkpoint).
    let name = TensorId::LmHead.to_string();
    let projected = project_named(
        vec![(name.clone(), float_model[&name].shallow_clone())],
        &c,
        127,
    )
    .expect("project");
    assert!(!projected[0].1.equal(&model[&name]));
    // The latent (float) values are kept for resume, off the grid.
    let opt = read_named(&qat_ck.join(ckpt::OPTIMIZER_FILE));
    let latent: HashMap<String, Tensor> = opt
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix("qat_latent.")
                .map(|n| (n.to_string(), t.shallow_clone()))
        })
        .collect();
    assert_eq!(latent.len(), quantized_names(&c).len());
    assert!(max_rounding_error(&latent, &c) > 0.01);

    // The fixed export: the EMA (what the run evaluates), int8, every weight on the grid.
    let weights = load_float_weights(&qat_ck, &ImportOptions::default()).expect("import");
    assert_eq!(weights.weight_grid, Some(WeightQuant::Int8));
    let out = tmp.path().join("export/");
    let written =
        export(&weights, &[Format::Fixed], &CalibSettings::default(), &out).expect("export fixed");
    let (q, _) = written[0].quantized.as_ref().expect("fixed");
    let grid = q.grid.expect("grid check of a QAT checkpoint");
    assert!(grid.on_grid() && grid.max_error < 1e-4, "{grid}");
    assert!(q.warnings.iter().all(|w| !w.contains("off the grid")));
    let bytes = std::fs::read(&written[0].path).expect("fixed file");
    let fixed = Model::parse(&bytes).expect("parse");
    let mut checked = 0;
    for (id, view) in fixed.tensors() {
        let Some(name) = quantized_names(&c)
            .into_iter()
            .find(|n| *n == id.to_string())
        else {
            continue;
        };
        assert_eq!(view.dtype, DType::I8, "{id}");
        let saved = Vec::<f32>::try_from(ema[&name].flatten(0, -1)).expect("f32");
        let cols = id.shape(&c).cols as usize;
        for (r, row) in saved.chunks_exact(cols).enumerate() {
            let mut want = Vec::new();
            let scale = quantize_row_i8(row, &mut want);
            let got = &view.data[r * cols..(r + 1) * cols];
            assert_eq!(got, want.as_slice(), "{id} row {r}");
            for (&w, &q) in row.iter().zip(got) {
                let deq = f64::from(q as i8) * scale;
                assert!(
                    (deq - f64::from(w)).abs()
                        <= f64::from(w.abs()) * 2.0 * f64::from(f32::EPSILON),
                    "{id} row {r}: {deq} vs {w}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0);

    // (b) the same export of the float checkpoint under a QAT setting would round: warned.
    let mut float_weights = load_float_weights(&float_ck, &ImportOptions::default()).expect("x");
    assert_eq!(float_weights.weight_grid, None);
    float_weights.weight_grid = Some(WeightQuant::Int8);
    let written = export(
        &float_weights,
        &[Format::Fixed],
        &CalibSettings::default(),
        &tmp.path().join("export-float/"),
    )
    .expect("export");
    let (q, _) = written[0].quantized.as_ref().expect("fixed");
    let grid = q.grid.expect("grid check");
    assert!(!grid.on_grid() && grid.max_error > 0.05, "{grid}");
    assert!(q.warnings.iter().any(|w| w.contains("off the grid")));
}

/// QAT with a later start and a stop + resume equals the straight run, bit for bit: the latent
/// weights come back from the optimizer file.
#[test]
fn qat_resume_equals_straight_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path());
    let extra = [
        "quant.weights=int8".to_string(),
        "quant.start_step=2".into(),
    ];
    let a = run(&data, &tmp.path().join("a"), &extra, 6, false);
    let b_dir = tmp.path().join("b");
    run(&data, &b_dir, &extra, 3, false);
    let b = run(&data, &b_dir, &extra, 6, true);
    for f in [ckpt::MODEL_FILE, ckpt::EMA_FILE, ckpt::OPTIMIZER_FILE] {
        let (x, y) = (
            std::fs::read(a.join(f)).expect("a"),
            std::fs::read(b.join(f)).expect("b"),
        );
        assert!(x == y, "{f} differs after resume");
    }
}

fn tiny_model(mlp_t: bool) -> (nn::VarStore, Trm) {
    let c = Config {
        hidden_size: 16,
        num_heads: 2,
        expansion: 2.0,
        l_layers: 2,
        h_cycles: 2,
        l_cycles: 2,
        mlp_t,
        pos_encodings: trm_nostd::PosEncoding::Rope,
        puzzle_emb_ndim: 0,
        puzzle_emb_len: 0,
        num_puzzle_identifiers: 1,
        vocab_size: 11,
        seq_len: 9,
        halt_max_steps: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
    };
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Trm::new(&vs.root(), &c).expect("model");
    // The q_head weight starts at zero: give it values, so that it is quantized too.
    let _g = tch::no_grad_guard();
    for (n, mut t) in vs.variables() {
        if n == TensorId::QHeadWeight.to_string() {
            t.copy_(
                &Tensor::randn(t.size(), (Kind::Float, Device::Cpu))
                    .f_mul_scalar(0.1)
                    .expect("x"),
            );
        }
    }
    (vs, model)
}

fn act_outputs(model: &Trm) -> Vec<Tensor> {
    let tokens = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        .view([2, 9]);
    let x = model.input_embeddings(&tokens, None).expect("x");
    let carry = model.initial_carry(2).expect("carry");
    let (carry, out) = model.act_step(&carry, &x).expect("step");
    vec![out.logits, out.q_halt, out.q_continue, carry.z_h, carry.z_l]
}

/// Replaces the quantized matrices of `vs` by `f(name, values)`.
fn replace_matrices(vs: &nn::VarStore, c: &Config, f: impl Fn(&Tensor) -> Tensor) {
    let names = quantized_names(c);
    let _g = tch::no_grad_guard();
    for (n, mut t) in vs.variables() {
        if names.contains(&n) {
            let v = f(&t);
            t.copy_(&v);
        }
    }
}

/// (c) The fake-quantized forward pass equals the plain forward pass of the on-grid weights
/// exactly, and that of the exporter's dequantized int8 values (`q * scale`) to f32 rounding.
#[test]
fn fake_quant_forward_is_the_forward_of_the_exported_weights() {
    for mlp_t in [false, true] {
        let (vs, mut model) = tiny_model(mlp_t);
        let c = *model.config();
        model.set_weight_quant(Some(WeightQuant::Int8));
        let fq = act_outputs(&model);
        model.set_weight_quant(None);
        let float = act_outputs(&model);
        assert!(!fq[0].equal(&float[0]), "quantization changed nothing");

        replace_matrices(&vs, &c, |t| {
            trm_train::model::quant::project(t, 127).expect("project")
        });
        let on_grid = act_outputs(&model);
        for (a, b) in fq.iter().zip(&on_grid) {
            assert!(a.equal(b), "mlp_t {mlp_t}: fake quant != on-grid weights");
        }

        // The exporter's integers times its scale.
        replace_matrices(&vs, &c, |t| {
            let (rows, cols) = t.size2().expect("matrix");
            let v = Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32");
            let mut out = Vec::with_capacity(v.len());
            for row in v.chunks_exact(cols as usize) {
                let mut q = Vec::new();
                let s = quantize_row_i8(row, &mut q);
                out.extend(q.iter().map(|&q| (f64::from(q as i8) * s) as f32));
            }
            Tensor::from_slice(&out).view([rows, cols])
        });
        let exported = act_outputs(&model);
        for (a, b) in fq.iter().zip(&exported) {
            let d = (a - b).abs().max().double_value(&[]);
            let m = a.abs().max().double_value(&[]).max(1.0);
            assert!(d <= 1e-5 * m, "mlp_t {mlp_t}: {d} vs scale {m}");
        }
    }
}

/// (e) Straight-through gradients: with QAT on, every quantized matrix gets a nonzero, finite
/// gradient, and gradient steps lower a loss.
#[test]
fn straight_through_gradients_flow_and_train() {
    let (vs, mut model) = tiny_model(true);
    let c = *model.config();
    model.set_weight_quant(Some(WeightQuant::Int8));
    let target = Tensor::from_slice(&[3i64; 18]).view([2, 9]);
    let loss_of = |model: &Trm| {
        let out = act_outputs(model);
        // The token loss, and the halting logit pulled towards 1 (so the q_head has a
        // gradient too).
        out[0]
            .view([-1, 11])
            .cross_entropy_for_logits(&target.view([-1]))
            + (&out[1] - 1.0).square().mean(Kind::Float)
    };
    let first = loss_of(&model);
    first.backward();
    let names = quantized_names(&c);
    let vars = vs.variables();
    for n in &names {
        let g = vars[n].grad();
        assert!(g.defined(), "{n}: no gradient");
        let a = g.abs().sum(Kind::Double).double_value(&[]);
        assert!(a.is_finite() && a > 0.0, "{n}: gradient {a}");
    }
    let mut opt = nn::Adam::default().build(&vs, 1e-2).expect("adam");
    let start = first.double_value(&[]);
    let mut last = start;
    for _ in 0..10 {
        opt.zero_grad();
        let l = loss_of(&model);
        l.backward();
        opt.step();
        last = l.double_value(&[]);
    }
    let end = loss_of(&model).double_value(&[]);
    assert!(end < start * 0.9, "loss {start} -> {last} -> {end}");
}

/// (d) Bad settings are errors naming the key.
#[test]
fn bad_quant_settings_are_clear_errors() {
    for (ov, want) in [
        ("quant.weights=int4", "expected int8, int16 or none"),
        ("quant.activations=int16", "not implemented yet"),
    ] {
        let e = TrainConfig::load(&ci_config(), &["quant.weights=int8", ov])
            .expect_err(ov)
            .to_string();
        assert!(
            e.contains(ov.split('=').next().unwrap_or_default()) && e.contains(want),
            "{e}"
        );
    }
}
