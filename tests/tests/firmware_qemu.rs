//! Host vs microcontroller: builds the QEMU firmware of firmware-examples/ with Debian's Rust
//! through `scripts/cross.sh firmware <board>`, runs it under QEMU with a timeout, and checks
//! what it prints. Boards: `qemu-mps2-an386` (Cortex-M4F, thumbv7em-none-eabihf) and
//! `qemu-virt-riscv32` (RV32IMAFC). A firmware may embed several models
//! (`TRM_MODEL=a.trm:b.trm`): it then prints one block per model, from `TRM-BANNER` to
//! `TRM-DONE`, so one build and one QEMU run cover them all.
//!
//! - `codec_smoke_run`: no model; the firmware parses, prints and checks real Sudoku-Extreme
//!   puzzles; every field is compared with values computed here from the CSV.
//! - `bad_models_fail_cleanly` (Cortex-M4F) and `riscv32_bad_models_fail_cleanly`: an empty, a
//!   corrupted and a truncated model must print the reader's error (the same text the host
//!   reader gives), and a model whose engine scratch exceeds the board's 2 MiB buffer must print
//!   the engine's error; exit 1, never fault or hang.
//! - `oversized_model_fails_to_build`: a file larger than the 4 MiB code memory is a build error
//!   naming `TRM_MODEL` and the sizes, not a firmware that faults.
//! - `float_engine_matches_host` (Cortex-M4F) and `riscv32_float_engine_matches_host`: small
//!   random-weight models, mlp_t, attention with RoPE (libm's `powf`, `cosf`, `sinf` in the
//!   tables, `expf` in the softmax) and attention with learned positions; every per-step digest
//!   of y and z, every q_halt bit pattern, and the final token digest must equal the host float
//!   engine's. QEMU runs with `-icount shift=0`, so the cycle counters count instructions: the
//!   tests print instructions per ACT step.
//!
//! Needs /usr/bin/cargo (Debian's rustc-web, for -Z build-std), qemu-system-arm and
//! qemu-system-riscv32, installed by scripts/setup.sh. Without them the tests fail, unless
//! TRM_SKIP_QEMU=1.

use std::path::{Path, PathBuf};
use std::time::Duration;
use trm_nostd::act::should_stop;
use trm_nostd::digest::{digest_f32, digest_tokens};
use trm_nostd::format::{Model, NumericScheme, write_model};
use trm_nostd::sudoku::{self, CELLS, PAD};
use trm_nostd::{Config, DType, Engine, FloatEngine, HaltMode, PosEncoding, TensorId};
use trm_tests::qemu::{
    self, Board, MPS2, RISCV32, Record, cross_firmware, model_list, records, runs, tools_ready,
    with_tag,
};

/// Wall-clock limit of one QEMU run.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// `data/` of the shared folder (`$TRM_SHARED`); missing, the test fails saying how to set it.
fn data_dir() -> PathBuf {
    trm_tests::shared_dir()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .join("data")
}

/// The Sudoku CSV the firmware tests embed puzzles from.
fn puzzles_csv() -> PathBuf {
    data_dir().join("sudoku-extreme/sudoku-extreme-1k/test_hard.csv")
}

/// (source, question, answer) of the first `n` rows, read here independently of build.rs.
fn csv_rows(n: usize) -> Vec<(String, String, String)> {
    let path = puzzles_csv();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set TRM_SHARED)", path.display()));
    text.lines()
        .skip(1)
        .take(n)
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// Builds the firmware with these TRM_* settings (all others removed) and copies the ELF to
/// `CARGO_TARGET_TMPDIR/<name>.elf`.
fn build_firmware(name: &str, board: &Board, settings: &[(&str, &str)]) -> PathBuf {
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.elf"));
    qemu::build_firmware(board, settings, &dest);
    dest
}

#[test]
fn codec_smoke_run() {
    if !tools_ready("codec_smoke_run", &MPS2) {
        return;
    }
    let n = 3;
    let csv = puzzles_csv();
    let elf = build_firmware(
        "codec",
        &MPS2,
        &[
            ("TRM_PUZZLES", csv.to_str().expect("utf-8 path")),
            ("TRM_PUZZLES_N", &n.to_string()),
        ],
    );
    let (code, out) = qemu::run_qemu(&elf, &MPS2, &[], QEMU_TIMEOUT);
    assert_eq!(code, 0, "firmware failed:\n{out}");
    let recs = records(&out);
    let banner = with_tag(&recs, "TRM-BANNER");
    assert_eq!(banner.len(), 1, "{out}");
    assert_eq!(banner[0].get("board"), MPS2.name);
    assert!(out.contains("TRM-MODEL none\n"), "{out}");
    assert!(with_tag(&recs, "TRM-ERROR").is_empty(), "{out}");

    let rows = csv_rows(n);
    let puzzles = with_tag(&recs, "TRM-PUZZLE");
    let answers = with_tag(&recs, "TRM-ANSWER");
    assert_eq!(puzzles.len(), n, "{out}");
    assert_eq!(answers.len(), n, "{out}");
    for (i, ((src, q, _), (p, a))) in rows.iter().zip(puzzles.iter().zip(&answers)).enumerate() {
        assert_eq!(p.get("puzzle"), i.to_string());
        assert_eq!(p.get("name"), src);
        let givens = q.bytes().filter(|b| (b'1'..=b'9').contains(b)).count();
        assert_eq!(p.get("givens"), givens.to_string(), "puzzle {i}");
        assert_eq!(p.get("question"), q.replace('0', "."), "puzzle {i}");
        assert_eq!(a.get("puzzle"), i.to_string());
        assert_eq!(a.get("status"), "valid", "puzzle {i}");
    }
    // The printed boards read back, in order, to the questions.
    let board_cells: String = out
        .lines()
        .filter(|l| !l.starts_with("TRM-") && l.contains(" | "))
        .flat_map(|l| l.split([' ', '|']).filter(|s| !s.is_empty()))
        .collect();
    let questions: String = rows.iter().map(|(_, q, _)| q.replace('0', ".")).collect();
    assert_eq!(board_cells, questions);

    let done = with_tag(&recs, "TRM-DONE");
    assert_eq!(done.len(), 1, "{out}");
    assert_eq!(done[0].get("ok"), n.to_string());
    assert_eq!(done[0].get("total"), n.to_string());
    assert_eq!(done[0].get("errors"), "0");
}

/// A small Sudoku model: cheap enough for QEMU (a few seconds per puzzle), every code path of
/// the mlp_t network still used.
fn small_config() -> Config {
    let mut c = Config::sudoku_mlp_t();
    c.hidden_size = 32;
    c.num_heads = 2;
    c.puzzle_emb_ndim = 32;
    c.h_cycles = 2;
    c.l_cycles = 2;
    // Two ACT steps: the carry from one step to the next is still checked.
    c.halt_max_steps = 2;
    c
}

/// The attention network at the same small size: 2 heads of 16, over the 97 positions.
fn small_attention(pos: PosEncoding) -> Config {
    let mut c = small_config();
    c.mlp_t = false;
    c.pos_encodings = pos;
    c
}

/// f32 values of engine scratch the mps2-an386 board gives the app (`SCRATCH_F32` in its
/// `main.rs`: 2 MiB of its 4 MiB RAM). The firmware prints it as `scratch_have`.
const BOARD_SCRATCH_F32: usize = 512 * 1024;

/// Random weights from a seeded xorshift: uniform in ±sqrt(3 / cols), H_init and L_init in
/// ±1.7; the q_head bias varies per model so that halting logits are not all equal.
fn random_model(c: &Config, seed: u64, dtype: DType) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    };
    let tensors: Vec<(TensorId, Vec<f32>)> = TensorId::all(c)
        .map(|id| {
            let shape = id.shape(c);
            let amp = match id {
                TensorId::HInit | TensorId::LInit => 1.7,
                _ => (3.0 / shape.cols.max(1) as f32).sqrt(),
            };
            (id, (0..shape.numel()).map(|_| amp * next()).collect())
        })
        .collect();
    write_model(
        *c,
        NumericScheme::Float(dtype),
        tensors.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .expect("write model")
}

/// What a bad model's run must print.
enum Expect {
    /// The reader rejects the file with the host reader's message.
    Reader(String),
    /// The file parses, but the engine needs this many f32 of scratch.
    Scratch(usize),
}

#[test]
fn bad_models_fail_cleanly() {
    bad_models_on(&MPS2, "bad_models_fail_cleanly");
}

#[test]
fn riscv32_bad_models_fail_cleanly() {
    bad_models_on(&RISCV32, "riscv32_bad_models_fail_cleanly");
}

/// An empty, a corrupted, a truncated model and one whose engine scratch exceeds the board's
/// buffer, in one firmware for `board`: each must print its error and the run must exit 1.
fn bad_models_on(board: &Board, test: &str) {
    if !tools_ready(test, board) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let good = random_model(&small_config(), 3, DType::F32);
    // Flip one payload byte near the end: only the payload checksum can catch it.
    let mut corrupt = good.clone();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0x10;
    // A valid file (about 0.1 MB) whose engine state does not fit in the board's RAM: attention
    // over a 3000-token puzzle prefix needs [3081, 32] x, y, z and a [3081, 96] qkv buffer.
    let mut wide = small_attention(PosEncoding::Rope);
    wide.puzzle_emb_len = 3000;
    let wide_need = FloatEngine::scratch_len(&wide).f32s;
    assert!(wide_need > BOARD_SCRATCH_F32, "{wide_need}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("corrupt", corrupt),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("scratch", random_model(&wide, 5, DType::F32)),
    ];
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for (name, bytes) in &cases {
        let path = dir.join(format!("bad-{}-{name}.trm", board.arg));
        std::fs::write(&path, bytes).expect("write model");
        paths.push(path);
        expected.push(match Model::parse(bytes) {
            Err(e) => Expect::Reader(e.to_string()),
            Ok(m) => {
                assert_eq!(*m.config(), wide, "{name}: the host reader accepts it");
                Expect::Scratch(wide_need)
            }
        });
    }
    // One firmware, one run per model.
    let elf = build_firmware(
        &format!("bad-{}", board.arg),
        board,
        &[("TRM_MODEL", &model_list(&paths))],
    );
    let (code, out) = qemu::run_qemu(&elf, board, &[], QEMU_TIMEOUT);
    assert_eq!(code, 1, "exit code\n{out}");
    let all = runs(records(&out));
    assert_eq!(all.len(), cases.len(), "one run per model:\n{out}");
    for (((name, bytes), expect), recs) in cases.iter().zip(&expected).zip(&all) {
        let errors = with_tag(recs, "TRM-ERROR");
        assert_eq!(errors.len(), 1, "{name}:\n{out}");
        match expect {
            Expect::Reader(msg) => {
                assert_eq!(errors[0].get("stage"), "model", "{name}:\n{out}");
                assert_eq!(errors[0].get("bytes"), bytes.len().to_string());
                assert_eq!(errors[0].get("msg"), msg, "{name}");
                assert!(with_tag(recs, "TRM-MODEL").is_empty(), "{name}:\n{out}");
            }
            Expect::Scratch(need) => {
                let model = with_tag(recs, "TRM-MODEL");
                assert_eq!(model.len(), 1, "{name}:\n{out}");
                assert_eq!(model[0].get("bytes"), bytes.len().to_string());
                assert_eq!(model[0].get("scratch_f32"), need.to_string());
                assert_eq!(model[0].get("scratch_have"), BOARD_SCRATCH_F32.to_string());
                assert_eq!(errors[0].get("stage"), "engine", "{name}:\n{out}");
                assert_eq!(
                    errors[0].get("msg"),
                    format!("scratch too small: need {need} f32, have {BOARD_SCRATCH_F32}"),
                    "{name}"
                );
            }
        }
        assert!(with_tag(recs, "TRM-PUZZLE").is_empty(), "{name}:\n{out}");
        let done = with_tag(recs, "TRM-DONE");
        assert_eq!(done.len(), 1, "{name}:\n{out}");
        assert_eq!(done[0].get("errors"), "1");
        assert_eq!(done[0].get("total"), "0");
    }
}

#[test]
fn oversized_model_fails_to_build() {
    if !tools_ready("oversized_model_fails_to_build", &MPS2) {
        return;
    }
    // One byte more than the whole 4 MiB code memory (memory.x `FLASH`), whatever the code size.
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oversized.trm");
    std::fs::write(&path, vec![0u8; (4 << 20) + 1]).expect("write model");
    let out = cross_firmware(&MPS2, &[("TRM_MODEL", path.to_str().expect("utf-8 path"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build succeeded:\n{stderr}");
    // The build script's check, before the compiler copies 4 MiB around.
    let limit = format!(
        "TRM_MODEL: the model files take {} bytes, more than the {} bytes of memory",
        (4 << 20) + 64,
        4 << 20
    );
    assert!(stderr.contains(&limit), "no size error:\n{stderr}");
    assert!(stderr.contains("FAILED step 'firmware'"), "{stderr}");
}

/// What the host float engine computes for one puzzle, in the firmware's terms.
struct HostSolve {
    /// (q_halt bits, digest y, digest z) after each ACT step.
    steps: Vec<(u32, u32, u32)>,
    tokens: [u8; CELLS],
    y: u32,
}

fn host_solve(model_bytes: &[u8], question: &str) -> HostSolve {
    let model = Model::parse(model_bytes).expect("host parse");
    let c = *model.config();
    let mut scratch = vec![0.0f32; FloatEngine::scratch_len(&c).f32s];
    let mut engine = FloatEngine::new(&c, &model, &mut scratch).expect("engine");
    let mut q = [PAD; CELLS];
    sudoku::parse_puzzle(question, &mut q).expect("question");
    engine.start(&q, 0).expect("start");
    let mut steps = Vec::new();
    loop {
        let s = engine.step();
        steps.push((
            s.q_halt.to_bits(),
            digest_f32(engine.y()),
            digest_f32(engine.z()),
        ));
        if should_stop(HaltMode::AllSteps, s.step, c.halt_max_steps, s.q_halt > 0.0) {
            break;
        }
    }
    let mut tokens = [PAD; CELLS];
    engine.predict(&mut tokens).expect("predict");
    HostSolve {
        steps,
        tokens,
        y: digest_f32(engine.y()),
    }
}

/// Checks one firmware run of `bytes` on the `rows` puzzles against the host float engine;
/// returns (ACT steps, ticks) summed over the puzzles.
fn check_against_host(
    name: &str,
    board: &Board,
    bytes: &[u8],
    recs: &[Record],
    rows: &[(String, String, String)],
    out: &str,
) -> (u64, u64) {
    let c = *Model::parse(bytes).expect("host parse").config();
    let n = rows.len();
    assert!(with_tag(recs, "TRM-ERROR").is_empty(), "{name}:\n{out}");
    let banner = with_tag(recs, "TRM-BANNER");
    assert_eq!(banner.len(), 1, "{name}:\n{out}");
    assert_eq!(banner[0].get("board"), board.name);
    let model = with_tag(recs, "TRM-MODEL");
    assert_eq!(model.len(), 1, "{name}:\n{out}");
    assert_eq!(model[0].get("bytes"), bytes.len().to_string(), "{name}");
    assert_eq!(model[0].get("hidden"), c.hidden_size.to_string(), "{name}");
    assert_eq!(model[0].get("mlp_t"), c.mlp_t.to_string(), "{name}");

    let steps = with_tag(recs, "TRM-STEP");
    let digests = with_tag(recs, "TRM-DIGEST");
    let results = with_tag(recs, "TRM-RESULT");
    let cycles = with_tag(recs, "TRM-CYCLES");
    assert_eq!(digests.len(), n, "{name}:\n{out}");
    assert_eq!(results.len(), n, "{name}:\n{out}");
    assert_eq!(cycles.len(), n, "{name}:\n{out}");
    assert_eq!(steps.len(), n * c.halt_max_steps as usize, "{name}:\n{out}");
    let mut ok = 0;
    let (mut total_steps, mut total_ticks) = (0u64, 0u64);
    for (i, (_, q, a)) in rows.iter().enumerate() {
        let host = host_solve(bytes, q);
        let dev: Vec<&&Record> = steps
            .iter()
            .filter(|r| r.get("puzzle") == i.to_string())
            .collect();
        assert_eq!(dev.len(), host.steps.len(), "{name} puzzle {i}");
        for (k, (r, (qh, y, z))) in dev.iter().zip(&host.steps).enumerate() {
            let at = format!("{name} puzzle {i} step {}", k + 1);
            assert_eq!(r.get("step"), (k + 1).to_string(), "{at}");
            assert_eq!(r.get("q_halt"), format!("{qh:08x}"), "{at}");
            assert_eq!(r.get("y"), format!("{y:08x}"), "{at}");
            assert_eq!(r.get("z"), format!("{z:08x}"), "{at}");
        }
        let d = digests[i];
        assert_eq!(d.get("puzzle"), i.to_string());
        assert_eq!(d.get("steps"), host.steps.len().to_string());
        assert_eq!(
            d.get("tokens"),
            format!("{:08x}", digest_tokens(&host.tokens)),
            "{name} puzzle {i}"
        );
        assert_eq!(d.get("y"), format!("{:08x}", host.y), "{name} puzzle {i}");
        // The printed prediction and its checks agree with the host's tokens.
        let mut line = String::new();
        sudoku::write_line(&mut line, &host.tokens).expect("fmt");
        let r = results[i];
        assert_eq!(r.get("prediction"), line, "{name} puzzle {i}");
        let mut qt = [PAD; CELLS];
        sudoku::parse_puzzle(q, &mut qt).expect("question");
        let mut at = [PAD; CELLS];
        sudoku::parse_puzzle(a, &mut at).expect("answer");
        let correct = at.iter().zip(&host.tokens).filter(|(x, y)| x == y).count();
        assert_eq!(r.get("correct"), format!("{correct}/{CELLS}"));
        let valid = sudoku::is_valid_solution(&host.tokens, &qt);
        assert_eq!(r.get("valid"), valid.to_string());
        ok += usize::from(valid);
        assert_eq!(cycles[i].get("unit"), board.unit);
        total_steps += host.steps.len() as u64;
        total_ticks += cycles[i].get("ticks").parse::<u64>().expect("ticks");
    }
    let done = with_tag(recs, "TRM-DONE");
    assert_eq!(done.len(), 1, "{name}:\n{out}");
    assert_eq!(done[0].get("ok"), ok.to_string());
    assert_eq!(done[0].get("total"), n.to_string());
    assert_eq!(done[0].get("errors"), "0");
    (total_steps, total_ticks)
}

/// Builds `board`'s firmware with three small random-weight models (mlp_t, attention with
/// RoPE, attention with learned positions) and the first `n` test puzzles, runs it under
/// `-icount shift=0`, and checks every run against the host float engine.
fn float_models_match_host(test: &str, board: &Board, n: usize) {
    if !tools_ready(test, board) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let models = [
        ("mlp_t", small_config(), 11),
        ("rope", small_attention(PosEncoding::Rope), 12),
        ("learned", small_attention(PosEncoding::Learned), 13),
    ];
    let mut files = Vec::new();
    let mut paths = Vec::new();
    for (name, c, seed) in &models {
        let bytes = random_model(c, *seed, DType::F32);
        // Per test: the tests run in parallel and must not rewrite each other's inputs.
        let path = dir.join(format!("{test}-{name}.trm"));
        std::fs::write(&path, &bytes).expect("write model");
        paths.push(path);
        files.push(bytes);
    }
    let csv = puzzles_csv();
    let elf = build_firmware(
        test,
        board,
        &[
            ("TRM_MODEL", &model_list(&paths)),
            ("TRM_PUZZLES", csv.to_str().expect("utf-8 path")),
            ("TRM_PUZZLES_N", &n.to_string()),
            ("TRM_HALT", "all"),
            ("TRM_STEP_DIGESTS", "1"),
        ],
    );
    // Instruction counting: virtual time advances 1 ns per instruction.
    let (code, out) = qemu::run_qemu(&elf, board, &["-icount", "shift=0"], QEMU_TIMEOUT);
    assert_eq!(code, 0, "firmware failed:\n{out}");
    let all = runs(records(&out));
    assert_eq!(all.len(), models.len(), "one run per model:\n{out}");
    let rows = csv_rows(n);
    for (((name, c, _), bytes), recs) in models.iter().zip(&files).zip(&all) {
        let (steps, units) = check_against_host(name, board, bytes, recs, &rows, &out);
        eprintln!(
            "{test}: {name}: {} MACs/ACT step, about {} instructions/ACT step ({units} {} over {steps} steps)",
            c.macs_per_act_step(),
            units * board.instructions_per_unit / steps.max(1),
            board.unit
        );
    }
}

/// Cortex-M4F (thumbv7em-none-eabihf) against x86_64.
#[test]
fn float_engine_matches_host() {
    float_models_match_host("float_engine_matches_host", &MPS2, 2);
}

/// RV32IMAFC (riscv32imafc-unknown-none-elf) against x86_64: one puzzle, QEMU runs RISC-V
/// floating point about half as fast as Arm's.
#[test]
fn riscv32_float_engine_matches_host() {
    float_models_match_host("riscv32_float_engine_matches_host", &RISCV32, 1);
}
