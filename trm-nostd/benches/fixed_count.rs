//! A plain program (no criterion) for load-independent instruction counts of the integer
//! engine: `valgrind --tool=callgrind` (or any instruction counter) around
//!
//! ```text
//! target/release/deps/fixed_count-<hash> <config> <isa> <steps>
//! ```
//!
//! `config`: `sudoku_mlp_t`, `sudoku_attention` or `sudoku_mlp_t_d128`; `isa`: `portable`,
//! `avx2`, `avx512` (refused when not supported: valgrind does not emulate AVX-512, and the run
//! time detection sees that); `steps`: ACT steps to run after the setup; an optional fourth
//! argument `min` uses the minimum scratch (one row per weight pass) instead of
//! `scratch_len_fast`. The count of one step
//! is the difference between a run with `steps` and one with 0. Build it with
//! `cargo bench -p trm-nostd --bench fixed_count --no-run`.

#[path = "../tests/fixed_common/mod.rs"]
mod fixed_common;

use fixed_common::{Fill, fixed_model};
use std::hint::black_box;
use std::time::Instant;
use trm_nostd::fixed::optimized::{self, Isa};
use trm_nostd::format::Model;
use trm_nostd::{Config, Engine, FixedEngine};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`: run nothing then.
    if args.iter().any(|a| a.starts_with("--")) || !(3..=4).contains(&args.len()) {
        eprintln!("usage: fixed_count <config> <isa> <steps> [min]");
        return;
    }
    let config = match args[0].as_str() {
        "sudoku_mlp_t" => Config::sudoku_mlp_t(),
        "sudoku_attention" => Config::sudoku_attention(),
        "sudoku_mlp_t_d128" => Config::sudoku_mlp_t_d128(),
        other => panic!("unknown config {other}"),
    };
    let isa = Isa::ALL
        .into_iter()
        .find(|i| i.name() == args[1])
        .expect("unknown isa");
    assert!(
        optimized::select(isa),
        "{} is not supported here",
        isa.name()
    );
    let steps: u32 = args[2].parse().expect("steps");
    let bytes = fixed_model(&config, 1, Fill::Random);
    let model = Model::parse(&bytes).expect("parse");
    let min = args.get(3).is_some_and(|a| a == "min");
    let need = if min {
        FixedEngine::scratch_len(&config)
    } else {
        FixedEngine::scratch_len_fast(&config)
    };
    let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
    let mut engine = FixedEngine::new(&model, &mut s16, &mut s32).expect("engine");
    let tokens: Vec<u8> = (0..config.seq_len)
        .map(|i| (i % config.vocab_size) as u8)
        .collect();
    engine.start(&tokens, 0).expect("start");
    let t = Instant::now();
    for _ in 0..steps {
        black_box(engine.step());
    }
    let macs = config.macs_per_act_step();
    println!(
        "config={} isa={} scratch={} steps={steps} seconds={:.3} macs_per_step={macs}",
        args[0],
        isa.name(),
        if min { "min" } else { "fast" },
        t.elapsed().as_secs_f64()
    );
}
