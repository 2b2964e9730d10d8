//! One ACT step of the integer engine, batch 1, one thread, beside the float engine, for the
//! paper's Sudoku configs (mlp_t and attention, D=512) and the D=128 mlp_t one: every kernel
//! implementation this machine supports (`portable`, `avx2`, `avx512`), with int8 weights,
//! (`fixed-<isa>-i16-fast` rows) every weight matrix int16, and (`-i16-exact-fast`) int16
//! weights with exact SwiGLU products, then the float engine (`float-f32`) and the float engine
//! with its opt-in fused multiply-adds (`float-f32-fused`).
//!
//! `cargo bench -p trm-nostd --bench fixed_step` (a filter selects rows, e.g.
//! `-- sudoku_mlp_t/avx2`). The fixed models are synthetic: random int8 weights with
//! multipliers prepared by `fixed::prepare` (see `tests/fixed_common`), which costs exactly what
//! a trained model costs: the integer path does the same operations whatever the values.

#[path = "../tests/fixed_common/mod.rs"]
mod fixed_common;

use criterion::{Criterion, criterion_group, criterion_main};
use fixed_common::{Fill, Weights, fixed_model, fixed_model_with};
use std::hint::black_box;
use std::time::Duration;
use trm_nostd::fixed::optimized::{self, Isa};
use trm_nostd::float::OwnedWeights;
use trm_nostd::float::kernels::Arith;
use trm_nostd::format::Model;
use trm_nostd::{Config, DType, Engine, FixedEngine, FloatEngine};

fn bench_config(c: &mut Criterion, name: &str, config: Config) {
    let tokens: Vec<u8> = (0..config.seq_len)
        .map(|i| (i % config.vocab_size) as u8)
        .collect();
    let big = config.d() > 128;
    let mut group = c.benchmark_group("act_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(if big { 15 } else { 5 }));

    let bytes = fixed_model(&config, 1, Fill::Random);
    let model = Model::parse(&bytes).expect("parse");
    let wide_bytes = fixed_model_with(&config, 1, Fill::Random, Weights::I16, |_| true);
    let wide_model = Model::parse(&wide_bytes).expect("parse");
    let exact_bytes = fixed_common::fixed_model_tagged(
        &config,
        1,
        Fill::Random,
        Weights::I16,
        |_| true,
        trm_nostd::fixed::tables::TAG_EXACT_PRODUCTS,
    );
    let exact_model = Model::parse(&exact_bytes).expect("parse");
    // Both scratch sizes: the device's minimum (one row per weight pass) and the host's fast one
    // (FAST_ROWS rows per pass, as the float engine's `scratch_len_fast`); int16 weights with the
    // fast one.
    for (scratch, need, model) in [
        ("fast", FixedEngine::scratch_len_fast(&config), &model),
        ("min", FixedEngine::scratch_len(&config), &model),
        (
            "i16-fast",
            FixedEngine::scratch_len_fast(&config),
            &wide_model,
        ),
        (
            "i16-exact-fast",
            FixedEngine::scratch_len_fast(&config),
            &exact_model,
        ),
    ] {
        let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
        let mut engine = FixedEngine::new(model, &mut s16, &mut s32).expect("fixed engine");
        engine.start(&tokens, 0).expect("start");
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            assert!(optimized::select(isa));
            group.bench_function(format!("{name}/fixed-{}-{scratch}", isa.name()), |b| {
                b.iter(|| black_box(engine.step()))
            });
        }
    }
    optimized::select(Isa::best());

    let weights = OwnedWeights::random(&config, 1, DType::F32);
    let mut scratch = vec![0.0f32; FloatEngine::scratch_len_fast(&config).f32s];
    let mut fe = FloatEngine::new(&config, &weights.source(), &mut scratch).expect("float engine");
    fe.start(&tokens, 0).expect("start");
    group.bench_function(format!("{name}/float-f32"), |b| {
        b.iter(|| black_box(fe.step()))
    });
    // The opt-in fused multiply-adds (another bit-exact arithmetic, not the golden files').
    fe.set_arith(Arith::Fused);
    group.bench_function(format!("{name}/float-f32-fused"), |b| {
        b.iter(|| black_box(fe.step()))
    });
    group.finish();
}

fn fixed_step(c: &mut Criterion) {
    bench_config(c, "sudoku_mlp_t_d128", Config::sudoku_mlp_t_d128());
    bench_config(c, "sudoku_mlp_t", Config::sudoku_mlp_t());
    bench_config(c, "sudoku_attention", Config::sudoku_attention());
}

criterion_group!(benches, fixed_step);
criterion_main!(benches);
