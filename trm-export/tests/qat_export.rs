//! The fixed export of QAT checkpoints (weights on the int8 or int16 grid, `quant.weights`):
//! every quantized matrix at the grid's precision, the rounding error checked (0 for weights
//! on the grid, a warning otherwise), a contradicting `--int16-weights` refused. The trainer's
//! end-to-end test (fine-tune, save, export) is trm-train's `tests/qat.rs`.

mod common;

use common::tiny;
use trm_export::export::{CalibSettings, FloatWeights, Format, Origin, export};
use trm_export::puzzles::PuzzleSource;
use trm_export::qat::{check_grid, int16_for, on_grid_tolerance, quantize_row};
use trm_export::quantize::Int16Weights;
use trm_nostd::float::OwnedWeights;
use trm_nostd::{Config, DType, Model, TensorId, TensorSource};
use trm_reference::act_ranges::ActRanges;
use trm_reference::config::WeightQuant;

/// Random float weights of `c`, the QAT matrices projected onto `grid` when given (what a QAT
/// run saves: `f32(q * scale)` per row by the exporter's rule).
fn weights(c: &Config, grid: Option<WeightQuant>) -> Vec<(TensorId, Vec<f32>)> {
    let w = OwnedWeights::random(c, 3, DType::F32);
    let src = w.source();
    let matrices = WeightQuant::matrices(c);
    TensorId::all(c)
        .map(|id| {
            let v = src.tensor(id).unwrap();
            let n = id.shape(c).numel();
            // The q_head weight of a random model is nonzero here; keep it so.
            let mut vals: Vec<f32> = (0..n).map(|i| v.get_f32(i).unwrap()).collect();
            if let Some(g) = grid.filter(|_| matrices.contains(&id)) {
                let cols = id.shape(c).cols as usize;
                for row in vals.chunks_exact_mut(cols) {
                    let levels = if g == WeightQuant::Int8 { 127 } else { 32767 };
                    let (s, q) = quantize_row(row, levels);
                    for (x, q) in row.iter_mut().zip(q) {
                        *x = (q * s) as f32;
                    }
                }
            }
            (id, vals)
        })
        .collect()
}

fn float_weights(grid: Option<WeightQuant>, on_grid: bool) -> FloatWeights {
    let c = tiny::config();
    let tensors = weights(&c, grid.filter(|_| on_grid));
    FloatWeights {
        config: c,
        tensors,
        source: "step_1/model.safetensors".into(),
        origin: Origin::new(std::path::Path::new("step_1/model.safetensors"), 1, 2),
        train_split: None,
        weight_grid: grid,
        act_ranges: None,
    }
}

fn calib(dir: &std::path::Path) -> CalibSettings {
    let csv = dir.join("calib.csv");
    tiny::write_csv(&csv, &tiny::puzzles(8, 10, 5));
    CalibSettings {
        source: Some(PuzzleSource::Csv(csv)),
        count: 8,
        ..Default::default()
    }
}

#[test]
fn on_grid_weights_export_without_rounding() {
    let dir = tiny::temp_dir("qat-export");
    for (grid, dtype) in [
        (WeightQuant::Int8, DType::I8),
        (WeightQuant::Int16, DType::I16),
    ] {
        let w = float_weights(Some(grid), true);
        let written = export(&w, &[Format::Fixed], &calib(&dir), &dir.join("out/")).unwrap();
        let (q, _) = written[0].quantized.as_ref().unwrap();
        let g = q.grid.expect("grid check");
        // int8: 1e-4 of a step; int16: f32 storage of the 16-bit grid, still far below 1/2.
        assert!(g.on_grid() && g.max_error <= on_grid_tolerance(grid), "{g}");
        assert!(on_grid_tolerance(grid) < 0.02);
        assert_eq!(g.grid, grid);
        assert!(q.warnings.iter().all(|w| !w.contains("off the grid")));
        let bytes = std::fs::read(&written[0].path).unwrap();
        let m = Model::parse(&bytes).unwrap();
        let matrices = WeightQuant::matrices(&w.config);
        let mut seen = 0;
        for (id, view) in m.tensors() {
            if matrices.contains(&id) {
                assert_eq!(view.dtype, dtype, "{id} ({grid:?})");
                seen += 1;
            }
        }
        assert_eq!(seen, matrices.len());
    }
}

#[test]
fn off_grid_weights_are_found_and_warned() {
    let dir = tiny::temp_dir("qat-export-off");
    let w = float_weights(Some(WeightQuant::Int8), false);
    let g = check_grid(&w.config, &w.tensors, WeightQuant::Int8).unwrap();
    assert!(!g.on_grid() && g.max_error > 0.05, "{g}");
    let written = export(&w, &[Format::Fixed], &calib(&dir), &dir.join("out/")).unwrap();
    let (q, _) = written[0].quantized.as_ref().unwrap();
    assert!(
        q.warnings.iter().any(|w| w.contains("off the grid")),
        "{:?}",
        q.warnings
    );
    // A float checkpoint (no QAT) is not checked.
    let w = float_weights(None, false);
    let written = export(&w, &[Format::Fixed], &calib(&dir), &dir.join("out2/")).unwrap();
    assert!(written[0].quantized.as_ref().unwrap().0.grid.is_none());
}

#[test]
fn contradicting_int16_option_is_refused() {
    let mixer = Int16Weights {
        mixer: true,
        ..Int16Weights::NONE
    };
    assert_eq!(
        int16_for(WeightQuant::Int8, Int16Weights::NONE).unwrap(),
        Int16Weights::NONE
    );
    assert_eq!(
        int16_for(WeightQuant::Int16, Int16Weights::NONE).unwrap(),
        Int16Weights::ALL
    );
    let e = int16_for(WeightQuant::Int8, mixer).unwrap_err().to_string();
    assert!(
        e.contains("quant.weights: int8") && e.contains("--int16-weights mixer"),
        "{e}"
    );
    let e = int16_for(WeightQuant::Int16, mixer)
        .unwrap_err()
        .to_string();
    assert!(e.contains("int16"), "{e}");

    let dir = tiny::temp_dir("qat-export-conflict");
    let w = float_weights(Some(WeightQuant::Int8), true);
    let mut settings = calib(&dir);
    settings.quantize.int16 = mixer;
    let e = export(&w, &[Format::Fixed], &settings, &dir.join("out/")).unwrap_err();
    assert!(format!("{e:#}").contains("leave the option out"), "{e:#}");
    assert!(!dir.join("out/model-fixed.trm").exists());
}

/// A checkpoint with frozen activation ranges (`quant.activations: int16`): the fixed file is
/// quantized with them (and their margin) at the sites they cover, the others calibrated; the
/// written scales differ from a plain export's; ranges of another depth are refused.
#[test]
fn frozen_activation_ranges_replace_the_calibrated_ones() {
    let dir = tiny::temp_dir("qat-export-act");
    let mut w = float_weights(Some(WeightQuant::Int8), true);
    let plain = export(&w, &[Format::Fixed], &calib(&dir), &dir.join("plain/")).unwrap();
    let (p, _) = plain[0].quantized.as_ref().unwrap();
    assert!(p.frozen.is_none());
    let layers = w.config.l_layers as usize;
    let mut r = ActRanges::new(layers, 1.5);
    // Twice the calibrated maxima: a visible change of every covered scale.
    r.input = 2.0 * p.calibration.input;
    for (f, c) in r.blocks.iter_mut().zip(&p.calibration.blocks) {
        (f.mix_gate, f.mix_up, f.mix_prod) = (2.0 * c.mix_gate, 2.0 * c.mix_up, 2.0 * c.mix_prod);
        (f.q, f.k, f.v) = (2.0 * c.q, 2.0 * c.k, 2.0 * c.v);
        (f.gate, f.up, f.prod) = (2.0 * c.gate, 2.0 * c.up, 2.0 * c.prod);
    }
    w.act_ranges = Some(r.clone());
    let frozen = export(&w, &[Format::Fixed], &calib(&dir), &dir.join("frozen/")).unwrap();
    let (q, _) = frozen[0].quantized.as_ref().unwrap();
    assert_eq!(q.frozen.as_ref(), Some(&r));
    assert_eq!(q.calibration.input, r.input);
    for (c, f) in q.calibration.blocks.iter().zip(&r.blocks) {
        assert_eq!((c.gate, c.up, c.prod), (f.gate, f.up, f.prod));
        assert_eq!((c.q, c.k, c.v), (f.q, f.k, f.v));
        assert_eq!(
            (c.mix_gate, c.mix_up, c.mix_prod),
            (f.mix_gate, f.mix_up, f.mix_prod)
        );
    }
    // Sites the ranges do not cover are calibrated as before.
    assert_eq!(q.calibration.logits, p.calibration.logits);
    assert_eq!(q.calibration.states, p.calibration.states);
    assert_ne!(q.bytes, p.bytes);

    w.act_ranges = Some(ActRanges::new(layers + 1, 1.25));
    let e = export(&w, &[Format::Fixed], &calib(&dir), &dir.join("bad/")).unwrap_err();
    let chain = format!("{e:#}");
    assert!(
        chain.contains("frozen activation ranges of 2 blocks for a model of 1"),
        "{chain}"
    );
    assert!(!dir.join("bad").join("model-fixed.trm").exists());
}
