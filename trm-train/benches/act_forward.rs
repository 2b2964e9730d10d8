//! One ACT step of the libtorch model in evaluation (no gradient), batch 1, fp32, one CPU
//! thread, random weights, for the paper's Sudoku configs (mlp_t and attention, D=512, and
//! the D=128 mlp_t one): the
//! libtorch figure beside trm-nostd's float and integer engines (`cargo bench -p trm-nostd`).
//!
//! `cargo bench -p trm-train --bench act_forward`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tch::{Device, Kind, Tensor, nn};
use trm_nostd::Config;
use trm_train::model::Trm;

fn bench_config(c: &mut Criterion, name: &str, config: Config) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Trm::new(&vs.root(), &config).expect("model");
    let tokens: Vec<i64> = (0..config.seq_len)
        .map(|i| i64::from(i % config.vocab_size))
        .collect();
    let inputs = Tensor::from_slice(&tokens).view([1, i64::from(config.seq_len)]);
    let ids = Tensor::zeros([1], (Kind::Int64, Device::Cpu));
    let _no_grad = tch::no_grad_guard();
    let rows = model.puzzle_rows(&ids).expect("puzzle rows");
    let x = model.input_embeddings(&inputs, rows.as_ref()).expect("x");
    let carry = model.initial_carry(1).expect("carry");
    let mut group = c.benchmark_group("libtorch_act_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(20));
    group.bench_function(name, |b| {
        b.iter(|| black_box(model.act_step(&carry, &x).expect("step")))
    });
    group.finish();
}

fn act_forward(c: &mut Criterion) {
    tch::set_num_threads(1);
    bench_config(c, "sudoku_mlp_t", Config::sudoku_mlp_t());
    bench_config(c, "sudoku_attention", Config::sudoku_attention());
    bench_config(c, "sudoku_mlp_t_d128", Config::sudoku_mlp_t_d128());
}

criterion_group!(benches, act_forward);
criterion_main!(benches);
