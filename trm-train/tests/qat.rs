//! Quantization-aware fine-tuning (`quant`): a float checkpoint fine-tuned a few steps with
//! `quant.weights=int8` saves every weight matrix on the int8 export grid (model and EMA), so
//! that `trm-export export --dtype fixed` rounds nothing; the fake-quantized forward pass is the
//! forward pass of the exported weights; gradients pass straight through; resume is exact.
//! With `quant.activations=int16` the activation ranges are calibrated as the exporter
//! calibrates them, frozen into the checkpoint, read back by resume and by the exporter, and the
//! rounded forward pass tracks the integer engine closer than the float one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tch::nn::OptimizerConfig as _;
use tch::{Device, Kind, Tensor, nn};
use trm_data::sudoku::SudokuOptions;
use trm_data::sudoku_gen::generate_dataset;
use trm_export::export::{CalibSettings, Format, export, load_float_weights};
use trm_export::quantize::{QuantizeOptions, calibrate, quantize};
use trm_nostd::fixed::FixedEngine;
use trm_nostd::fixed::prepare::quantize_row_i8;
use trm_nostd::float::OwnedWeights;
use trm_nostd::{Config, DType, Model, TensorId};
use trm_nostd::{Engine, FloatEngine};

/// Held by every test of this file: they seed libtorch's one global generator
/// (`tch::manual_seed`) and draw from it (model initialisation, training runs), so two tests at
/// once would interleave their draws and change each other's weights. Serial, every test's
/// model is the same on every run.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}
use trm_reference::act_ranges::ActRanges;
use trm_reference::checkpoint::{ImportOptions, WeightsChoice};
use trm_train::ckpt;
use trm_train::config::{TrainConfig, WeightQuant};
use trm_train::model::Trm;
use trm_train::model::quant::{ActQuant, project_named, quantized_names};
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
    let _serial = serial();
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
    let _serial = serial();
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
    let _serial = serial();
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
    let _serial = serial();
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
    let _serial = serial();
    for (ov, want) in [
        ("quant.weights=int4", "expected int8, int16 or none"),
        ("quant.activations=int4", "expected int16 or none"),
        ("quant.margin=0.9", "must be a finite number >= 1"),
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

/// The tokens of [`act_outputs`]' two puzzles.
const TOKENS: [u8; 18] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/// The model's weights (matrices already on the grid) as no_std float weights.
fn owned(vs: &nn::VarStore, c: &Config) -> OwnedWeights {
    let vals: Vec<(String, Vec<f32>)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32")))
        .collect();
    OwnedWeights::from_named_f32(c, vals.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        .expect("every tensor by name")
}

/// Records the activation ranges over every ACT step of [`TOKENS`]' puzzles.
fn record(model: &mut Trm) -> ActRanges {
    let layers = model.config().l_layers as usize;
    let empty = ActRanges::new(layers, 1.25);
    model
        .set_act_quant(Some(ActQuant::Record(std::sync::Mutex::new(empty))))
        .expect("record");
    let tokens = Tensor::from_slice(&TOKENS)
        .to_kind(Kind::Int64)
        .view([2, 9]);
    let _g = tch::no_grad_guard();
    let x = model.input_embeddings(&tokens, None).expect("x");
    let mut carry = model.initial_carry(2).expect("carry");
    for _ in 0..model.config().halt_max_steps {
        carry = model.act_step(&carry, &x).expect("step").0;
    }
    let r = model.act_ranges().expect("ranges");
    model.set_act_quant(None).expect("off");
    r
}

/// (f) The trainer's calibration is the exporter's: the same largest `|value|` at every site it
/// records (the float engine's values against libtorch's, f32 rounding apart).
#[test]
fn recorded_activation_ranges_are_the_exporters_calibration() {
    let _serial = serial();
    for mlp_t in [false, true] {
        let (vs, mut model) = tiny_model(mlp_t);
        let c = *model.config();
        replace_matrices(&vs, &c, |t| {
            trm_train::model::quant::project(t, 127).expect("project")
        });
        let r = record(&mut model);
        let w = owned(&vs, &c);
        let puzzles: Vec<(Vec<u8>, u32)> = TOKENS.chunks(9).map(|t| (t.to_vec(), 0)).collect();
        let cal = calibrate(&c, &w.source(), &puzzles, c.halt_max_steps).expect("calibrate");
        let close = |a: f32, b: f32, what: &str| {
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-3),
                "mlp_t {mlp_t} {what}: trainer {a} vs exporter {b}"
            );
        };
        close(r.input, cal.input, "input");
        assert!(r.input > 0.0);
        for (i, (t, e)) in r.blocks.iter().zip(&cal.blocks).enumerate() {
            let pairs = [
                (t.mix_gate, e.mix_gate, "mix_gate"),
                (t.mix_up, e.mix_up, "mix_up"),
                (t.mix_prod, e.mix_prod, "mix_prod"),
                (t.q, e.q, "q"),
                (t.k, e.k, "k"),
                (t.v, e.v, "v"),
                (t.gate, e.gate, "gate"),
                (t.up, e.up, "up"),
                (t.prod, e.prod, "prod"),
            ];
            for (a, b, what) in pairs {
                close(a, b, &format!("block {i} {what}"));
            }
            // The sites of the model's own mixer were seen, the other mixer's stay 0.
            let (seen, unseen) = if mlp_t {
                (t.mix_gate.min(t.mix_prod), t.q.max(t.v))
            } else {
                (t.q.min(t.v), t.mix_gate.max(t.mix_prod))
            };
            assert!(seen > 0.0 && unseen == 0.0, "mlp_t {mlp_t} block {i}");
        }
    }
}

/// (g) Rounding the activations with the frozen ranges makes the trainer's forward pass the
/// integer engine's, closer than the float forward pass is: the states after one ACT step of
/// the fixed file quantized with those ranges, against both.
#[test]
fn activation_fake_quant_tracks_the_integer_engine() {
    let _serial = serial();
    for mlp_t in [false, true] {
        let (vs, mut model) = tiny_model(mlp_t);
        // One ACT step of one H and one L cycle: two network applications.
        model.set_recursion(2, 1, 1).expect("recursion");
        let c = *model.config();
        replace_matrices(&vs, &c, |t| {
            trm_train::model::quant::project(t, 127).expect("project")
        });
        let ranges = record(&mut model);
        let float = act_outputs(&model);
        model
            .set_act_quant(Some(ActQuant::Apply(ranges.clone())))
            .expect("apply");
        let rounded = act_outputs(&model);
        assert!(!rounded[3].equal(&float[3]), "rounding changed nothing");

        // The fixed file, with the frozen ranges at the sites they cover.
        let w = owned(&vs, &c);
        let puzzles: Vec<(Vec<u8>, u32)> = TOKENS.chunks(9).map(|t| (t.to_vec(), 0)).collect();
        let mut cal = calibrate(&c, &w.source(), &puzzles, 1).expect("calibrate");
        trm_export::export::use_frozen_ranges(&mut cal, &ranges).expect("frozen");
        let bytes = quantize(&c, &w.source(), &cal, &QuantizeOptions::default()).expect("q");
        let m = Model::parse(&bytes).expect("parse");
        let need = FixedEngine::scratch_len(&c);
        let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
        let mut engine = FixedEngine::new(&m, &mut s16, &mut s32).expect("engine");
        let (mut d_float, mut d_rounded) = (0f64, 0f64);
        for (b, (tokens, pid)) in puzzles.iter().enumerate() {
            engine.start(tokens, *pid).expect("start");
            engine.step();
            let scale = f64::from(engine.state_scale());
            let fixed: Vec<f64> = engine.y().iter().map(|&v| f64::from(v) * scale).collect();
            let row = |t: &Tensor| Vec::<f32>::try_from(t.get(b as i64).flatten(0, -1)).expect("y");
            for (v, (f, r)) in fixed
                .iter()
                .zip(row(&float[3]).iter().zip(row(&rounded[3])))
            {
                d_float += (v - f64::from(*f)).powi(2);
                d_rounded += (v - f64::from(r)).powi(2);
            }
        }
        // mlp_t: the SwiGLU products' int16 rounding is the engine's largest error, and the
        // rounded forward pass reproduces most of it. Attention: the engine stays within about
        // one int16 unit per value of the float pass (the rounding floor), where the rounded
        // pass can only stay as close, not closer.
        let bound = if mlp_t { 0.75 * d_float } else { 2.5 * d_float };
        let units = d_float / (2 * 9 * 16) as f64 / (4.0f64 / 32767.0).powi(2);
        assert!(
            mlp_t || units < 4.0,
            "attention: {units:.2} units^2 per value"
        );
        assert!(
            d_rounded < bound,
            "mlp_t {mlp_t}: squared distance to the integer engine: rounded {d_rounded:.3e}, \
             float {d_float:.3e}"
        );
        // The float engine on the same weights agrees with the float forward pass (the check
        // above compares like with like).
        let mut scratch = vec![0f32; FloatEngine::scratch_len(&c).f32s];
        let mut fe = FloatEngine::new(&c, &w.source(), &mut scratch).expect("float engine");
        fe.start(&puzzles[0].0, 0).expect("start");
        fe.step();
        let y0 = Vec::<f32>::try_from(float[3].get(0).flatten(0, -1)).expect("y");
        let err = fe
            .y()
            .iter()
            .zip(&y0)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "float engine vs libtorch: {err}");
    }
}

/// (h) Activation QAT end to end: fine-tuning with `quant.activations=int16` from a float
/// checkpoint calibrates the ranges when QAT starts (step 2 here), freezes them into every
/// checkpoint's manifest, a resumed run reads them back (and equals the straight run bit for
/// bit), and the fixed export uses them in place of its own calibration.
#[test]
fn activation_qat_freezes_ranges_that_resume_and_export_read() {
    let _serial = serial();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = dataset(tmp.path());
    let float_ck = run(&data, &tmp.path().join("float"), &[], 2, false);
    let load = format!(
        "+load_checkpoint={}",
        float_ck.join(ckpt::MODEL_FILE).display()
    );
    let extra = [
        load,
        "quant.weights=int8".to_string(),
        "quant.activations=int16".into(),
        "quant.start_step=2".into(),
        "quant.calib_batches=2".into(),
    ];
    let a = run(&data, &tmp.path().join("a"), &extra, 5, false);
    let b_dir = tmp.path().join("b");
    let b_mid = run(&data, &b_dir, &extra, 3, false);
    let b = run(&data, &b_dir, &extra, 5, true);
    for f in [ckpt::MODEL_FILE, ckpt::EMA_FILE, ckpt::OPTIMIZER_FILE] {
        let (x, y) = (
            std::fs::read(a.join(f)).expect("a"),
            std::fs::read(b.join(f)).expect("b"),
        );
        assert!(x == y, "{f} differs after resume");
    }
    let manifest = |dir: &Path| {
        let m = trm_reference::run_checkpoint::read_manifest(dir).expect("manifest");
        let c = model_config(dir);
        ActRanges::from_json(&m.extra["act_ranges"], c.l_layers as usize).expect("ranges")
    };
    let r = manifest(&a);
    assert_eq!((r.step, r.puzzles, r.margin), (2, 32, 1.25));
    assert!(r.input > 0.0);
    assert!(
        r.blocks
            .iter()
            .all(|b| b.mix_gate > 0.0 && b.gate > 0.0 && b.prod > 0.0)
    );
    assert_eq!(manifest(&b_mid), r);
    assert_eq!(manifest(&b), r);
    // A resume that turns activation QAT off drops the ranges.
    let off: Vec<String> = extra
        .iter()
        .map(|e| {
            if e.starts_with("quant.activations") {
                "quant.activations=none".to_string()
            } else {
                e.clone()
            }
        })
        .collect();
    let b_off = run(&data, &b_dir, &off, 6, true);
    let m = trm_reference::run_checkpoint::read_manifest(&b_off).expect("manifest");
    assert!(!m.extra.contains_key("act_ranges"));
    // Before QAT starts nothing is calibrated: a run stopped at step 1 has no ranges.
    let early = run(&data, &tmp.path().join("early"), &extra, 1, false);
    let m = trm_reference::run_checkpoint::read_manifest(&early).expect("manifest");
    assert!(!m.extra.contains_key("act_ranges"));

    let weights = load_float_weights(&a, &ImportOptions::default()).expect("import");
    assert_eq!(weights.act_ranges.as_ref(), Some(&r));
    let written = export(
        &weights,
        &[Format::Fixed],
        &CalibSettings::default(),
        &tmp.path().join("export/"),
    )
    .expect("export fixed");
    let (q, _) = written[0].quantized.as_ref().expect("fixed");
    assert_eq!(q.frozen.as_ref(), Some(&r));
    assert_eq!(q.calibration.input, r.input);
    for (c, f) in q.calibration.blocks.iter().zip(&r.blocks) {
        assert_eq!((c.gate, c.up, c.prod), (f.gate, f.up, f.prod));
        assert_eq!(
            (c.mix_gate, c.mix_up, c.mix_prod),
            (f.mix_gate, f.mix_up, f.mix_prod)
        );
    }
    // A manifest without the ranges is a clear error, not a silent calibration.
    let meta = a.join("meta.json");
    let text = std::fs::read_to_string(&meta).expect("meta");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["extra"]
        .as_object_mut()
        .expect("extra")
        .remove("act_ranges");
    std::fs::write(&meta, v.to_string()).expect("write");
    let e = load_float_weights(&a, &ImportOptions::default())
        .expect_err("missing ranges accepted")
        .to_string();
    assert!(e.contains("act_ranges"), "{e}");
}
