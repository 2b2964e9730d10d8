//! Tiny Sudoku models (random weights) and valid Sudoku puzzles for the command tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trm_export::puzzles::PuzzleRow;
use trm_export::quantize::{QuantizeOptions, calibrate, quantize, quantize_with_source};
use trm_nostd::float::OwnedWeights;
use trm_nostd::format::{ModelWriter, NumericScheme, SourceRecord, write_model};
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};
use trm_nostd::{Config, DType, Model, PosEncoding, TensorId, TensorSource};

/// A small mlp_t Sudoku config (81 cells, 11 tokens) that runs in milliseconds.
pub fn config() -> Config {
    Config {
        hidden_size: 16,
        num_heads: 2,
        expansion: 2.0,
        l_layers: 1,
        h_cycles: 1,
        l_cycles: 2,
        mlp_t: true,
        pos_encodings: PosEncoding::None,
        puzzle_emb_ndim: 16,
        puzzle_emb_len: 1,
        num_puzzle_identifiers: 1,
        vocab_size: 11,
        seq_len: 81,
        halt_max_steps: 3,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
    }
}

/// A float `.trm` of `c` with random weights (seeded) and the halting bias `q_bias` (0 lets
/// the halting logit's sign vary between puzzles).
pub fn float_model(c: &Config, seed: u64, q_bias: f32) -> Vec<u8> {
    let w = OwnedWeights::random(c, seed, DType::F32);
    let src = w.source();
    let tensors: Vec<(TensorId, Vec<f32>)> = TensorId::all(c)
        .map(|id| {
            let v = src.tensor(id).unwrap();
            let n = id.shape(c).numel();
            let vals = (0..n)
                .map(|i| {
                    if id == TensorId::QHeadBias {
                        q_bias
                    } else {
                        v.get_f32(i).unwrap()
                    }
                })
                .collect();
            (id, vals)
        })
        .collect();
    write_model(
        *c,
        NumericScheme::Float(DType::F32),
        tensors.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .unwrap()
}

/// `bytes` (a float `.trm`) written again with `source` as its source record: the same
/// config, storage type and values (every float type round-trips exactly through f32).
pub fn float_with_source(bytes: &[u8], source: &SourceRecord<'_>) -> Vec<u8> {
    let m = Model::parse(bytes).unwrap();
    let c = *m.config();
    let values: Vec<(TensorId, Vec<f32>)> = TensorId::all(&c)
        .map(|id| {
            let v = m.tensor(id).unwrap();
            let n = id.shape(&c).numel();
            (id, (0..n).map(|i| v.get_f32(i).unwrap()).collect())
        })
        .collect();
    let mut w = ModelWriter::new(c, m.scheme()).unwrap();
    for (id, v) in &values {
        w.add(*id, v).unwrap();
    }
    w.set_source(source).unwrap();
    w.finish().unwrap()
}

/// [`fixed_model`] recording `source`.
pub fn fixed_model_with_source(
    float: &[u8],
    rows: &[PuzzleRow],
    source: &SourceRecord<'_>,
) -> Vec<u8> {
    let m = Model::parse(float).unwrap();
    let c = *m.config();
    let cal = calibrate(&c, &m, &calibration_set(rows), c.halt_max_steps).unwrap();
    quantize_with_source(&c, &m, &cal, &QuantizeOptions::default(), Some(source))
        .unwrap()
        .0
}

fn calibration_set(rows: &[PuzzleRow]) -> Vec<(Vec<u8>, u32)> {
    rows.iter()
        .map(|r| {
            let mut t: Tokens = [PAD; CELLS];
            sudoku::parse_puzzle(&r.question, &mut t).unwrap();
            (t.to_vec(), 0)
        })
        .collect()
}

/// `float` quantized by the library (calibrated on `rows`, every ACT step, default margin).
pub fn fixed_model(float: &[u8], rows: &[PuzzleRow]) -> Vec<u8> {
    let m = Model::parse(float).unwrap();
    let c = *m.config();
    let cal = calibrate(&c, &m, &calibration_set(rows), c.halt_max_steps).unwrap();
    quantize(&c, &m, &cal, &QuantizeOptions::default()).unwrap()
}

/// `n` valid Sudoku puzzles (a shifted base grid with digits relabelled) with `blanks` blanks
/// each, and their answers.
pub fn puzzles(n: usize, blanks: usize, seed: u64) -> Vec<PuzzleRow> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|i| {
            let mut perm: Vec<u8> = (1..=9).collect();
            for k in (1..9).rev() {
                perm.swap(k, (next() % (k as u64 + 1)) as usize);
            }
            let answer: Vec<u8> = (0..CELLS)
                .map(|cell| {
                    let (r, c) = (cell / 9, cell % 9);
                    perm[(3 * (r % 3) + r / 3 + c) % 9]
                })
                .collect();
            let mut question = answer.clone();
            let mut blanked = 0;
            while blanked < blanks {
                let k = (next() % CELLS as u64) as usize;
                if question[k] != 0 {
                    question[k] = 0;
                    blanked += 1;
                }
            }
            let text = |v: &[u8]| -> String {
                v.iter()
                    .map(|&d| if d == 0 { '.' } else { (b'0' + d) as char })
                    .collect()
            };
            PuzzleRow {
                name: format!("p{i}"),
                question: text(&question),
                answer: Some(text(&answer)),
                puzzle_id: 0,
            }
        })
        .collect()
}

/// Writes `rows` as a `source,question,answer` CSV.
pub fn write_csv(path: &Path, rows: &[PuzzleRow]) {
    let mut text = String::from("source,question,answer\n");
    for r in rows {
        text.push_str(&format!(
            "{},{},{}\n",
            r.name,
            r.question,
            r.answer.as_deref().unwrap_or("")
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trm-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `trm-export` binary.
pub fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trm-export"))
        .args(args)
        .output()
        .unwrap()
}

/// stdout + stderr of a run, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
