//! `run --dump FILE` on the demo models: the file's tensor names, types and shapes; the float
//! dump equal, bit for bit, to the float engine run in-process; the last step's logits giving
//! the run's printed prediction; a fixed dump whose dequantized y is near the float engine's.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::tiny;
use safetensors::{Dtype, SafeTensors};
use trm_nostd::sudoku::{self, CELLS, PAD, Tokens};
use trm_nostd::{Engine, FloatEngine, Model};

fn demo_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-examples/models")
        .join(name)
}

/// Two puzzles the demo model was trained for (6 blanks).
fn rows() -> Vec<trm_export::puzzles::PuzzleRow> {
    tiny::puzzles(2, 6, 11)
}

/// Runs `run --dump` on `model`; returns the dump's bytes and the printed predictions.
fn run_with_dump(dir: &Path, model: &Path, threads: &str) -> (Vec<u8>, Vec<String>) {
    let csv = dir.join("p.csv");
    tiny::write_csv(&csv, &rows());
    let out = dir.join("dump.safetensors");
    let o = tiny::cli(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--puzzles",
        csv.to_str().unwrap(),
        "--limit",
        "2",
        "--no-boards",
        "--threads",
        threads,
        "--dump",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", tiny::text(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let predictions: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("TRM-RESULT "))
        .map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("prediction="))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(predictions.len(), 2, "{stdout}");
    // Written atomically: no temporary file is left beside it.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dump.safetensors", "p.csv"]);
    (std::fs::read(&out).unwrap(), predictions)
}

fn question(i: usize) -> Tokens {
    let mut q: Tokens = [PAD; CELLS];
    sudoku::parse_puzzle(&rows()[i].question, &mut q).unwrap();
    q
}

fn f32s(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i32s(st: &SafeTensors<'_>, name: &str) -> Vec<i32> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::I32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i16s(st: &SafeTensors<'_>, name: &str) -> Vec<i16> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::I16, "{name}");
    t.data()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The board line of the argmax (ties to the lowest index) of `[seq_len, vocab]` logits.
fn argmax_line<T: PartialOrd + Copy>(logits: &[T], vocab: usize) -> String {
    let mut tokens: Tokens = [PAD; CELLS];
    for (t, row) in tokens.iter_mut().zip(logits.chunks_exact(vocab)) {
        let mut best = 0;
        for (k, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = k;
            }
        }
        *t = best as u8;
    }
    let mut line = String::new();
    sudoku::write_line(&mut line, &tokens).unwrap();
    line
}

/// Checks the names, types' sizes and shapes of a dump of the 2 puzzles; returns the steps.
fn check_layout(bytes: &[u8], st: &SafeTensors<'_>, model: &Model<'_>, fixed: bool) -> u32 {
    let c = model.config();
    let (seq_len, vocab, d) = (c.seq_len as usize, c.vocab_size as usize, c.d());
    let rows = c.puzzle_emb_len as usize + seq_len;
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["scheme"], if fixed { "fixed" } else { "float" });
    assert_eq!(meta["halt"], "all");
    assert_eq!(meta["puzzles"], "2");
    let steps = c.halt_max_steps;
    let mut want = BTreeSet::new();
    for i in 0..2 {
        assert_eq!(meta[&format!("puzzle{i}.steps")], steps.to_string());
        for k in 1..=steps {
            let p = format!("puzzle{i}.step{k}");
            for (n, shape) in [
                ("logits", vec![seq_len, vocab]),
                ("q_halt", vec![1]),
                ("q_continue", vec![1]),
                ("y", vec![rows, d]),
                ("z", vec![rows, d]),
            ] {
                let name = format!("{p}.{n}");
                assert_eq!(st.tensor(&name).unwrap().shape(), shape, "{name}");
                want.insert(name);
            }
        }
    }
    if fixed {
        for n in ["state_scale", "logit_scale", "q_scale", "x_scale"] {
            let v = f32s(st, n);
            assert_eq!(v.len(), 1, "{n}");
            assert!(v[0].is_finite() && v[0] > 0.0, "{n} = {}", v[0]);
            want.insert(n.to_string());
        }
    }
    let got: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    assert_eq!(got, want);
    steps
}

#[test]
fn a_float_dump_holds_the_float_engines_numbers_bit_for_bit() {
    let dir = tiny::temp_dir("dump-float");
    let path = demo_model("sudoku-d32-f32.trm");
    // Several threads for the run: the dump is the same puzzles in order.
    let (bytes, predictions) = run_with_dump(&dir, &path, "2");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let model_bytes = std::fs::read(&path).unwrap();
    let model = Model::parse(&model_bytes).unwrap();
    let steps = check_layout(&bytes, &st, &model, false);
    let c = *model.config();
    let vocab = c.vocab_size as usize;
    let mut scratch = vec![0f32; FloatEngine::scratch_len(&c).f32s];
    let mut engine = FloatEngine::new(&c, &model, &mut scratch).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut logits = vec![0f32; c.seq_len as usize * vocab];
    for (i, prediction) in predictions.iter().enumerate() {
        engine.start(&question(i), 0).unwrap();
        for k in 1..=steps {
            let s = engine.step();
            engine.logits(&mut logits).unwrap();
            let p = format!("puzzle{i}.step{k}");
            assert_eq!(
                bits(&f32s(&st, &format!("{p}.logits"))),
                bits(&logits),
                "{p}"
            );
            assert_eq!(bits(&f32s(&st, &format!("{p}.q_halt"))), bits(&[s.q_halt]));
            assert_eq!(
                bits(&f32s(&st, &format!("{p}.q_continue"))),
                bits(&[s.q_continue])
            );
            assert_eq!(bits(&f32s(&st, &format!("{p}.y"))), bits(engine.y()), "{p}");
            assert_eq!(bits(&f32s(&st, &format!("{p}.z"))), bits(engine.z()), "{p}");
        }
        let last = f32s(&st, &format!("puzzle{i}.step{steps}.logits"));
        assert_eq!(&argmax_line(&last, vocab), prediction, "puzzle {i}");
    }
}

#[test]
fn a_fixed_dump_holds_raw_integers_whose_real_values_follow_the_float_engine() {
    let dir = tiny::temp_dir("dump-fixed");
    let (bytes, predictions) = run_with_dump(&dir, &demo_model("sudoku-d32-fixed.trm"), "1");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let fixed_bytes = std::fs::read(demo_model("sudoku-d32-fixed.trm")).unwrap();
    let steps = check_layout(&bytes, &st, &Model::parse(&fixed_bytes).unwrap(), true);
    let float_bytes = std::fs::read(demo_model("sudoku-d32-f32.trm")).unwrap();
    let model = Model::parse(&float_bytes).unwrap();
    let c = *model.config();
    let vocab = c.vocab_size as usize;
    let mut scratch = vec![0f32; FloatEngine::scratch_len(&c).f32s];
    let mut engine = FloatEngine::new(&c, &model, &mut scratch).unwrap();
    let scale = f64::from(f32s(&st, "state_scale")[0]);
    for (i, prediction) in predictions.iter().enumerate() {
        engine.start(&question(i), 0).unwrap();
        for k in 1..=steps {
            engine.step();
            let p = format!("puzzle{i}.step{k}");
            for (name, float) in [("y", engine.y()), ("z", engine.z())] {
                let raw = i16s(&st, &format!("{p}.{name}"));
                assert_eq!(raw.len(), float.len());
                let (mut err, mut norm) = (0f64, 0f64);
                for (&q, &f) in raw.iter().zip(float) {
                    let f = f64::from(f);
                    err += (f64::from(q) * scale - f).powi(2);
                    norm += f * f;
                }
                let rel = (err / norm).sqrt();
                assert!(rel < 0.1, "{p}.{name}: relative error {rel}");
            }
            assert_eq!(i32s(&st, &format!("{p}.q_halt")).len(), 1);
            assert_eq!(i32s(&st, &format!("{p}.q_continue")).len(), 1);
        }
        let last = i32s(&st, &format!("puzzle{i}.step{steps}.logits"));
        assert_eq!(&argmax_line(&last, vocab), prediction, "puzzle {i}");
    }
}
