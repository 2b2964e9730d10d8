//! One ACT step of the float engine, batch 1, one thread, random weights (f32), for the paper's
//! Sudoku configs (mlp_t and attention, D=512) and the D=128 mlp_t one, on every kernel
//! implementation this machine supports (`act_step/<config>/<isa>`: portable, avx2, avx512).
//!
//! `cargo bench -p trm-nostd --bench act_step` (one config or implementation: add a filter,
//! e.g. `-- sudoku_mlp_t/avx512`). The libtorch figure beside it:
//! `cargo bench -p trm-train --bench act_forward`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use trm_nostd::float::OwnedWeights;
use trm_nostd::float::optimized::Isa;
use trm_nostd::{Config, DType, Engine, FloatEngine};

fn bench_config(c: &mut Criterion, name: &str, config: Config) {
    let weights = OwnedWeights::random(&config, 1, DType::F32);
    let mut scratch = vec![0.0f32; FloatEngine::scratch_len_fast(&config).f32s];
    let mut engine = FloatEngine::new(&config, &weights.source(), &mut scratch).expect("engine");
    let tokens: Vec<u8> = (0..config.seq_len)
        .map(|i| (i % config.vocab_size) as u8)
        .collect();
    let mut group = c.benchmark_group("act_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(if config.d() > 128 { 20 } else { 5 }));
    for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
        assert!(engine.set_isa(isa));
        engine.start(&tokens, 0).expect("start");
        group.bench_function(format!("{name}/{}", isa.name()), |b| {
            b.iter(|| black_box(engine.step()))
        });
    }
    group.finish();
}

fn act_step(c: &mut Criterion) {
    bench_config(c, "sudoku_mlp_t_d128", Config::sudoku_mlp_t_d128());
    bench_config(c, "sudoku_mlp_t", Config::sudoku_mlp_t());
    bench_config(c, "sudoku_attention", Config::sudoku_attention());
}

criterion_group!(benches, act_step);
criterion_main!(benches);
