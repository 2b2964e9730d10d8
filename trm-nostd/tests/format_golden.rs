//! A committed `.trm` file (`tests/format_data/tiny_f16.trm`) pins the byte layout: a change to
//! the writer that alters it must be deliberate (and bump `FORMAT_VERSION` if old readers would
//! misread the new bytes). The rustdoc example of `include_model!` embeds the same file.
//!
//! Regenerate with
//! `cargo test -p trm-nostd --test format_golden -- --ignored regenerate_fixture`.

use trm_nostd::format::{MAGIC, Model, NumericScheme, write_model};
use trm_nostd::{Config, DType, PosEncoding, TensorId, TensorSource};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/format_data/tiny_f16.trm"
);

fn fixture_config() -> Config {
    let mut c = Config::sudoku_mlp_t();
    c.hidden_size = 8;
    c.num_heads = 2;
    c.expansion = 1.0;
    c.l_layers = 1;
    c.mlp_t = true;
    c.pos_encodings = PosEncoding::None;
    c.puzzle_emb_ndim = 8;
    c.puzzle_emb_len = 1;
    c.num_puzzle_identifiers = 2;
    c.vocab_size = 5;
    c.seq_len = 3;
    c
}

/// Value `i` of the `t`-th tensor: multiples of 1/8 in [-15/8, 15/8], exact in f16.
fn value(t: usize, i: usize) -> f32 {
    ((i * 7 + t * 13) % 31) as f32 / 8.0 - 15.0 / 8.0
}

fn fixture_weights(c: &Config) -> Vec<(TensorId, Vec<f32>)> {
    TensorId::all(c)
        .enumerate()
        .map(|(t, id)| (id, (0..id.shape(c).numel()).map(|i| value(t, i)).collect()))
        .collect()
}

fn write_fixture() -> Vec<u8> {
    let c = fixture_config();
    let w = fixture_weights(&c);
    write_model(
        c,
        NumericScheme::Float(DType::F16),
        w.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .unwrap()
}

#[test]
#[ignore = "writes the fixture; run by hand after a deliberate format change"]
fn regenerate_fixture() {
    std::fs::write(PATH, write_fixture()).unwrap();
}

#[test]
fn committed_fixture_parses_with_expected_values() {
    let bytes = std::fs::read(PATH).unwrap();
    assert_eq!(&bytes[..8], &MAGIC);
    let model = Model::parse(&bytes).unwrap();
    let c = fixture_config();
    assert_eq!(*model.config(), c);
    assert_eq!(model.scheme(), NumericScheme::Float(DType::F16));
    for (t, id) in TensorId::all(&c).enumerate() {
        let view = model.tensor(id).unwrap();
        for i in 0..id.shape(&c).numel() {
            assert_eq!(view.get_f32(i), Some(value(t, i)), "{id}[{i}]");
        }
    }
}

#[test]
fn writer_reproduces_the_committed_fixture() {
    let bytes = std::fs::read(PATH).unwrap();
    assert!(
        write_fixture() == bytes,
        "the writer's output changed: if deliberate, regenerate the fixture (see the file doc)"
    );
}

#[test]
fn include_model_aligns() {
    static M: &[u8] = trm_nostd::include_model!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/format_data/tiny_f16.trm"
    ));
    assert_eq!(M.as_ptr() as usize % 64, 0);
    assert_eq!(M, std::fs::read(PATH).unwrap().as_slice());
    let model = Model::parse(M).unwrap();
    for (id, view) in model.tensors() {
        assert_eq!(view.data.as_ptr() as usize % 64, 0, "{id}");
    }
}
