//! Host tests of the demo: every error path prints its line and counts as an error, and solves
//! report exactly what the float engine computes when called directly.

use trm_fw_app::{
    Console, Counter, HaltMode, NoCounter, Options, Puzzle, Report, begin_run, end_run, run,
    run_models, solve_puzzles,
};
use trm_nostd::digest::{digest_f32, digest_tokens};
use trm_nostd::format::{NumericScheme, write_model};
use trm_nostd::sudoku::{self, CELLS, PAD};
use trm_nostd::{AnyEngine, Config, DType, Engine, FixedEngine, FloatEngine, TensorId};

#[derive(Default)]
struct Buf(String);

impl Console for Buf {
    fn write_str(&mut self, s: &str) {
        self.0.push_str(s);
    }
}

/// Counts calls, so ticks are the number of `now` calls between start and end (1).
struct Calls(u64);

impl Counter for Calls {
    fn now(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
    fn unit(&self) -> &'static str {
        "calls"
    }
}

const Q: &str = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79";
const A: &str = "534678912672195348198342567859761423426853791713924856961537284287419635345286179";

fn opts(halt: HaltMode) -> Options<'static> {
    Options {
        board: "host",
        halt,
        step_digests: true,
        boards: false,
        float_arith: trm_nostd::float::kernels::Arith::Separate,
    }
}

fn go(
    model: Option<&[u8]>,
    puzzles: &[Puzzle<'_>],
    scratch: usize,
    halt: HaltMode,
) -> (Report, String) {
    let mut out = Buf::default();
    let mut scratch = vec![0.0f32; scratch];
    let r = run(
        &mut out,
        &mut Calls(0),
        model,
        puzzles,
        &mut scratch,
        &opts(halt),
    );
    (r, out.0)
}

fn lines<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.split(' ').next() == Some(tag))
        .collect()
}

#[test]
fn codec_run_reports_every_error() {
    let swapped: String = {
        // Swap two non-given cells of one row: rows stay fine, columns break.
        let mut b: Vec<u8> = A.bytes().collect();
        b.swap(2, 3);
        String::from_utf8(b).expect("ascii")
    };
    let bad_q = Q.replacen('.', "x", 1);
    let puzzles = [
        Puzzle {
            name: "good",
            puzzle_id: 0,
            question: Q,
            answer: Some(A),
        },
        Puzzle {
            name: "badchar",
            puzzle_id: 0,
            question: &bad_q,
            answer: Some(A),
        },
        Puzzle {
            name: "wrong",
            puzzle_id: 0,
            question: Q,
            answer: Some(&swapped),
        },
        Puzzle {
            name: "short",
            puzzle_id: 0,
            question: &Q[..80],
            answer: None,
        },
        Puzzle {
            name: "noanswer",
            puzzle_id: 0,
            question: Q,
            answer: None,
        },
    ];
    let (r, out) = go(None, &puzzles, 0, HaltMode::AllSteps);
    assert_eq!(
        r,
        Report {
            ok: 1,
            total: 5,
            errors: 3
        },
        "{out}"
    );
    assert!(!r.success());
    assert!(
        out.starts_with("TRM-BANNER app=trm-fw-app version="),
        "{out}"
    );
    assert!(out.contains("TRM-MODEL none\n"));
    // Every counted error has its TRM-ERROR line, naming the puzzle and the reason.
    let errors = lines(&out, "TRM-ERROR");
    assert_eq!(errors.len(), 3, "{out}");
    assert_eq!(
        errors[0],
        "TRM-ERROR stage=puzzle puzzle=1 msg=question: sudoku: bad character 'x' at position 2 (expected '.', '0' or '1'..'9')"
    );
    let answers = lines(&out, "TRM-ANSWER");
    assert_eq!(answers[0], "TRM-ANSWER puzzle=0 status=valid");
    let reason = answers[1]
        .strip_prefix("TRM-ANSWER puzzle=2 status=invalid msg=")
        .expect("the invalid answer's line");
    assert!(!reason.is_empty(), "{out}");
    assert_eq!(
        errors[1],
        format!(
            "TRM-ERROR stage=puzzle puzzle=2 msg=answer: not a solution of the question: {reason}"
        )
    );
    assert_eq!(
        errors[2],
        "TRM-ERROR stage=puzzle puzzle=3 msg=question: sudoku: 80 cells, expected 81"
    );
    assert_eq!(answers[2], "TRM-ANSWER puzzle=4 status=none");
    assert!(out.ends_with("TRM-DONE ok=1 total=5 errors=3\n"), "{out}");
}

#[test]
fn an_answer_contradicting_its_givens_is_an_error_with_its_reason() {
    // The right solution, but the question has one given changed: the answer contradicts it.
    let q = format!("6{}", &Q[1..]);
    let p = [Puzzle {
        name: "contradicts",
        puzzle_id: 0,
        question: &q,
        answer: Some(A),
    }];
    for model in [None, Some(model(&config(), -50.0))] {
        let (r, out) = go(model.as_deref(), &p, 1 << 20, HaltMode::AllSteps);
        assert_eq!(r.errors, 1, "{out}");
        assert_eq!(
            lines(&out, "TRM-ERROR"),
            [
                "TRM-ERROR stage=puzzle puzzle=0 msg=answer: not a solution of the question: cell 0 changes given 6 to 5 (token 6)"
            ],
            "{out}"
        );
        // Nothing is solved for it.
        assert!(lines(&out, "TRM-RESULT").is_empty(), "{out}");
    }
}

#[test]
fn bad_models_are_errors() {
    let p = [Puzzle {
        name: "good",
        puzzle_id: 0,
        question: Q,
        answer: Some(A),
    }];
    for bytes in [&b""[..], &b"\x89TRM\r\n\x1a\n"[..], &[0u8; 100][..]] {
        let (r, out) = go(Some(bytes), &p, 1024, HaltMode::AllSteps);
        assert_eq!(r.errors, 1, "{out}");
        let err = trm_nostd::Model::parse(bytes).expect_err("host rejects it");
        assert!(
            out.contains(&format!(
                "TRM-ERROR stage=model bytes={} msg={err}\n",
                bytes.len()
            )),
            "{out}"
        );
        assert!(lines(&out, "TRM-PUZZLE").is_empty());
    }
}

fn config() -> Config {
    let mut c = Config::sudoku_mlp_t();
    c.hidden_size = 16;
    c.num_heads = 2;
    c.puzzle_emb_ndim = 16;
    c.h_cycles = 2;
    c.l_cycles = 2;
    c.halt_max_steps = 4;
    c
}

/// Deterministic weights; `bias` is the q_head bias (positive: early halting stops at step 1).
fn model(c: &Config, bias: f32) -> Vec<u8> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let tensors: Vec<(TensorId, Vec<f32>)> = TensorId::all(c)
        .map(|id| {
            let shape = id.shape(c);
            let amp = (3.0 / shape.cols.max(1) as f32).sqrt();
            let v = (0..shape.numel())
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    if id == TensorId::QHeadBias {
                        bias
                    } else {
                        amp * (((s >> 40) as f32 / 8388608.0) - 1.0)
                    }
                })
                .collect();
            (id, v)
        })
        .collect();
    write_model(
        *c,
        NumericScheme::Float(DType::F32),
        tensors.iter().map(|(i, v)| (*i, v.as_slice())),
    )
    .expect("write")
}

#[test]
fn solves_match_the_engine() {
    let c = config();
    for (bias, halt) in [
        (-50.0, HaltMode::AllSteps),
        (50.0, HaltMode::EarlyHalt),
        (-50.0, HaltMode::EarlyHalt),
    ] {
        let bytes = model(&c, bias);
        let p = [Puzzle {
            name: "good",
            puzzle_id: 0,
            question: Q,
            answer: Some(A),
        }];
        let (r, out) = go(Some(&bytes), &p, FloatEngine::scratch_len(&c).f32s, halt);
        assert_eq!(r.errors, 0, "{out}");
        assert_eq!(r.total, 1);

        let m = trm_nostd::Model::parse(&bytes).expect("parse");
        let mut scratch = vec![0.0f32; FloatEngine::scratch_len(&c).f32s];
        let mut e = FloatEngine::new(&c, &m, &mut scratch).expect("engine");
        let mut q = [PAD; CELLS];
        sudoku::parse_puzzle(Q, &mut q).expect("q");
        let mut pred = [PAD; CELLS];
        let s = e.solve(&q, 0, halt, &mut pred).expect("solve");
        let expect_steps = if bias > 0.0 && halt == HaltMode::EarlyHalt {
            1
        } else {
            c.halt_max_steps
        };
        assert_eq!(s.steps, expect_steps);
        assert_eq!(lines(&out, "TRM-STEP").len(), s.steps as usize, "{out}");
        let digest = format!(
            "TRM-DIGEST puzzle=0 steps={} tokens={:08x} y={:08x}",
            s.steps,
            digest_tokens(&pred),
            digest_f32(e.y())
        );
        assert_eq!(lines(&out, "TRM-DIGEST"), [digest.as_str()], "{out}");
        let mut a = [PAD; CELLS];
        sudoku::parse_puzzle(A, &mut a).expect("a");
        let correct = a.iter().zip(&pred).filter(|(x, y)| x == y).count();
        let result = lines(&out, "TRM-RESULT");
        assert_eq!(result.len(), 1);
        assert!(
            result[0].contains(&format!(" correct={correct}/81 ")),
            "{out}"
        );
        let valid = sudoku::is_valid_solution(&pred, &q);
        assert!(result[0].contains(&format!(" valid={valid} ")), "{out}");
        assert_eq!(r.ok, usize::from(valid));
        // One `now` call at the start, one at the end: 1 tick; no frequency, no time.
        assert_eq!(
            lines(&out, "TRM-CYCLES"),
            [format!(
                "TRM-CYCLES puzzle=0 ticks=1 unit=calls steps={} per_step={}",
                s.steps,
                1 / s.steps
            )]
        );
    }
}

/// `run` as its parts: `begin_run`, `solve_puzzles` on `parts` (the puzzles split at the given
/// points, each part in its own console and with its own engine, as threads would), `end_run`.
fn go_in_parts(
    model: Option<&[u8]>,
    puzzles: &[Puzzle<'_>],
    scratch: usize,
    cuts: &[usize],
) -> (Report, String) {
    let opts = opts(HaltMode::EarlyHalt);
    let mut out = Buf::default();
    let mut main_scratch = vec![0.0f32; scratch];
    if let Err(r) = begin_run(&mut out, model, &mut main_scratch, &opts) {
        return (r, out.0);
    }
    let mut total = Report::default();
    let mut from = 0;
    for &to in cuts.iter().chain([&puzzles.len()]) {
        let mut part_scratch = vec![0.0f32; scratch];
        let mut sink = Buf::default();
        let mut engine = begin_run(&mut sink, model, &mut part_scratch, &opts).expect("engine");
        let mut part = Buf::default();
        let r = solve_puzzles(
            &mut part,
            &mut Calls(0),
            engine.as_mut(),
            from,
            &puzzles[from..to],
            &opts,
        );
        out.0.push_str(&part.0);
        total.ok += r.ok;
        total.total += r.total;
        total.errors += r.errors;
        from = to;
    }
    end_run(&mut out, &total);
    (total, out.0)
}

#[test]
fn a_run_in_parts_prints_what_run_prints() {
    let c = config();
    let good = model(&c, 0.0);
    let bad_q = Q.replacen('.', "x", 1);
    let mut puzzles = vec![
        Puzzle {
            name: "good",
            puzzle_id: 0,
            question: Q,
            answer: Some(A),
        };
        7
    ];
    puzzles[1].answer = None;
    puzzles[5].question = &bad_q;
    let scratch = FloatEngine::scratch_len(&c).f32s + 7;
    let models: [Option<&[u8]>; 3] = [Some(&good), None, Some(b"not a model")];
    for model in models {
        let (want_r, want) = {
            let mut out = Buf::default();
            let mut s = vec![0.0f32; scratch];
            let r = run(
                &mut out,
                &mut Calls(0),
                model,
                &puzzles,
                &mut s,
                &opts(HaltMode::EarlyHalt),
            );
            (r, out.0)
        };
        assert!(want_r.errors > 0, "{want}");
        for cuts in [&[][..], &[3], &[1, 2, 6]] {
            let (r, out) = go_in_parts(model, &puzzles, scratch, cuts);
            assert_eq!(out, want, "cuts {cuts:?}");
            assert_eq!(r, want_r, "cuts {cuts:?}");
        }
    }
}

#[test]
fn engine_errors_are_reported() {
    let c = config();
    let bytes = model(&c, -5.0);
    let p = [Puzzle {
        name: "good",
        puzzle_id: 0,
        question: Q,
        answer: None,
    }];
    let need = FloatEngine::scratch_len(&c).f32s;
    let (r, out) = go(Some(&bytes), &p, need - 1, HaltMode::AllSteps);
    assert_eq!(
        r,
        Report {
            ok: 0,
            total: 0,
            errors: 1
        },
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "TRM-ERROR stage=engine msg=scratch too small: need {need} f32, have {}\n",
            need - 1
        )),
        "{out}"
    );

    // A model of no task the app runs: more than 62 kinds of tokens.
    let mut c2 = c;
    c2.seq_len = 10;
    c2.vocab_size = 70;
    let (r, out) = go(Some(&model(&c2, -5.0)), &p, 1 << 20, HaltMode::AllSteps);
    assert_eq!(r.errors, 1, "{out}");
    assert!(
        out.contains(
            "TRM-ERROR stage=model msg=not a model of a task the app runs (seq_len 10, vocab 70;"
        ),
        "{out}"
    );

    // A model of another task (10 tokens of 11 kinds: no task rule) runs token lines; a Sudoku
    // string is refused naming the task.
    c2.vocab_size = 11;
    let tokens = [
        Puzzle {
            name: "t",
            puzzle_id: 0,
            question: "0123456789",
            answer: Some("0123456789"),
        },
        Puzzle {
            name: "s",
            puzzle_id: 0,
            question: Q,
            answer: None,
        },
    ];
    let (r, out) = go(
        Some(&model(&c2, -5.0)),
        &tokens,
        1 << 20,
        HaltMode::AllSteps,
    );
    assert_eq!(r.total, 2, "{out}");
    assert_eq!(r.errors, 1, "{out}");
    assert!(
        out.contains("TRM-PUZZLE puzzle=0 name=t task=tokens id=0 question=0123456789\n"),
        "{out}"
    );
    assert!(
        out.contains("TRM-RESULT puzzle=0 valid=n/a correct="),
        "{out}"
    );
    assert!(
        out.contains(
            "TRM-ERROR stage=puzzle puzzle=1 msg=question: tokens: 81 tokens, expected 10"
        ),
        "{out}"
    );

    // NoCounter reports zero ticks.
    let mut out = Buf::default();
    let mut scratch = vec![0.0f32; need];
    let r = run(
        &mut out,
        &mut NoCounter,
        Some(&bytes),
        &p,
        &mut scratch,
        &opts(HaltMode::EarlyHalt),
    );
    assert!(r.success(), "{}", out.0);
    let cycles = lines(&out.0, "TRM-CYCLES");
    assert_eq!(cycles.len(), 1, "{}", out.0);
    assert!(
        cycles[0].starts_with("TRM-CYCLES puzzle=0 ticks=0 unit=none steps=")
            && cycles[0].ends_with(" per_step=0"),
        "{}",
        out.0
    );
}

#[test]
fn run_models_runs_each_model_in_turn() {
    let c = config();
    let a = model(&c, -5.0);
    let b = model(&c, 5.0);
    let bad: &[u8] = b"not a model";
    let p = [Puzzle {
        name: "good",
        puzzle_id: 0,
        question: Q,
        answer: Some(A),
    }];
    let len = FloatEngine::scratch_len(&c).f32s;
    let models: [&[u8]; 3] = [&a, bad, &b];
    let mut out = Buf::default();
    let mut scratch = vec![0.0f32; len];
    let r = run_models(
        &mut out,
        &mut Calls(0),
        &models,
        &p,
        &mut scratch,
        &opts(HaltMode::AllSteps),
    );
    // The same as three separate runs, one after the other, with their reports summed.
    let mut expected = String::new();
    let mut sum = Report::default();
    for m in models {
        let (ri, oi) = go(Some(m), &p, len, HaltMode::AllSteps);
        expected.push_str(&oi);
        sum.ok += ri.ok;
        sum.total += ri.total;
        sum.errors += ri.errors;
    }
    assert_eq!(out.0, expected);
    assert_eq!(r, sum);
    assert_eq!((r.total, r.errors), (2, 1), "{}", out.0);
    assert_eq!(lines(&out.0, "TRM-BANNER").len(), 3);
    assert_eq!(lines(&out.0, "TRM-DONE").len(), 3);

    // No model: one codec-only run.
    let mut out = Buf::default();
    let r = run_models(
        &mut out,
        &mut Calls(0),
        &[],
        &p,
        &mut scratch,
        &opts(HaltMode::AllSteps),
    );
    let (r0, o0) = go(None, &p, len, HaltMode::AllSteps);
    assert_eq!((r, out.0.as_str()), (r0, o0.as_str()));
    assert!(o0.contains("TRM-MODEL none\n"), "{o0}");
}

/// Writes the float model (`fixed_config()`, q bias 0) that `tests/fixtures/make-fixed.sh` quantizes into `fixed-d16.trm`
/// (to the path in `TRM_WRITE_FLOAT_MODEL`); a generator, not a check.
#[test]
#[ignore = "fixture generator"]
fn write_float_model() {
    let path = std::env::var("TRM_WRITE_FLOAT_MODEL").expect("TRM_WRITE_FLOAT_MODEL");
    std::fs::write(path, model(&fixed_config(), 0.0)).expect("write");
}

/// A smaller `config()` (one block, expansion 2, two prefix positions): a small fixture.
fn fixed_config() -> Config {
    let mut c = config();
    c.l_layers = 1;
    c.expansion = 2.0;
    c.puzzle_emb_len = 2;
    c
}

/// `fixed_config()`'s model quantized by `trm-export quantize` (see `fixtures/make-fixed.sh`).
const FIXED: &[u8] = include_bytes!("fixtures/fixed-d16.trm");

/// FNV-1a over the little-endian bytes of i16 values, written out here from the byte digest.
fn digest_i16_bytes(v: &[i16]) -> u32 {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    digest_tokens(&bytes)
}

#[test]
fn fixed_models_run_on_the_fixed_engine() {
    let m = trm_nostd::Model::parse(FIXED).expect("parse");
    assert!(m.scheme().is_fixed());
    let c = *m.config();
    assert_eq!(c, fixed_config(), "the fixture is fixed_config()'s model");
    let need = FixedEngine::scratch_len(&c);
    let words = AnyEngine::arena_len(&m);
    assert_eq!(words, need.i16s.div_ceil(2) + need.i32s);
    // The fast arena is the fixed engine's fast scratch where its blocked products use it
    // (x86_64, Arm with DSP, RISC-V), the minimum elsewhere.
    let fast = FixedEngine::scratch_len_fast(&c).f32_words();
    let blocked = cfg!(any(
        target_arch = "x86_64",
        all(target_arch = "arm", target_feature = "dsp"),
        target_arch = "riscv32",
        target_arch = "riscv64"
    ));
    assert_eq!(
        AnyEngine::arena_len_fast(&m),
        if blocked { fast } else { words }
    );
    assert!(fast > words);
    let p = [
        Puzzle {
            name: "wiki",
            puzzle_id: 0,
            question: Q,
            answer: Some(A),
        },
        Puzzle {
            name: "empty",
            puzzle_id: 0,
            question: ".................................................................................",
            answer: None,
        },
    ];
    for halt in [HaltMode::AllSteps, HaltMode::EarlyHalt] {
        // Any arena from the minimum up gives the same lines.
        let (r, out) = go(Some(FIXED), &p, words, halt);
        let (r2, out2) = go(Some(FIXED), &p, words + 1000, halt);
        assert_eq!(r.errors, 0, "{out}");
        assert_eq!((r, strip_have(&out)), (r2, strip_have(&out2)));
        let model_line = lines(&out, "TRM-MODEL");
        assert_eq!(model_line.len(), 1);
        assert!(
            model_line[0].ends_with(&format!(
                " scratch_f32={words} scratch_have={words} scheme=fixed scratch_i16={} scratch_i32={}",
                need.i16s, need.i32s
            )),
            "{out}"
        );

        // The same solves, straight on the fixed engine.
        let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
        let mut e = FixedEngine::new(&m, &mut s16, &mut s32).expect("engine");
        let mut want_steps = Vec::new();
        let mut want_digests = Vec::new();
        let mut ok = 0;
        for (i, puzzle) in p.iter().enumerate() {
            let mut q = [PAD; CELLS];
            sudoku::parse_puzzle(puzzle.question, &mut q).expect("q");
            e.start(&q, 0).expect("start");
            let steps = loop {
                let s = e.step();
                want_steps.push(format!(
                    "TRM-STEP puzzle={i} step={} q_halt={:08x} y={:08x} z={:08x}",
                    s.step,
                    s.q_halt as u32,
                    digest_i16_bytes(e.y()),
                    digest_i16_bytes(e.z())
                ));
                let stop = match halt {
                    HaltMode::AllSteps => false,
                    _ => s.q_halt > 0,
                };
                if stop || s.step >= c.halt_max_steps {
                    break s.step;
                }
            };
            let mut pred = [PAD; CELLS];
            e.predict(&mut pred).expect("predict");
            want_digests.push(format!(
                "TRM-DIGEST puzzle={i} steps={steps} tokens={:08x} y={:08x}",
                digest_tokens(&pred),
                digest_i16_bytes(e.y())
            ));
            ok += usize::from(sudoku::is_valid_solution(&pred, &q));
        }
        assert_eq!(lines(&out, "TRM-STEP"), want_steps, "{out}");
        assert_eq!(lines(&out, "TRM-DIGEST"), want_digests, "{out}");
        assert_eq!(r.ok, ok);
        assert_eq!(r.total, 2);
    }
}

/// The output without the `scratch_have=` and `scratch_f32=` fields (they name the arena size).
fn strip_have(out: &str) -> String {
    out.lines()
        .map(|l| {
            l.split(' ')
                .filter(|f| !f.starts_with("scratch_have=") && !f.starts_with("scratch_f32="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fixed_scratch_too_small_is_an_engine_error() {
    let m = trm_nostd::Model::parse(FIXED).expect("parse");
    let words = AnyEngine::arena_len(&m);
    let p = [Puzzle {
        name: "wiki",
        puzzle_id: 0,
        question: Q,
        answer: Some(A),
    }];
    let (r, out) = go(Some(FIXED), &p, words - 1, HaltMode::AllSteps);
    assert_eq!(r.errors, 1, "{out}");
    assert_eq!(r.total, 0);
    assert!(
        out.contains(&format!(
            "TRM-ERROR stage=engine msg=scratch too small: need {words} f32, have {}\n",
            words - 1
        )),
        "{out}"
    );
    assert!(!out.contains("TRM-PUZZLE"), "{out}");
}

#[test]
fn run_models_mixes_float_and_fixed() {
    let c = fixed_config();
    let float = model(&c, -50.0);
    let m = trm_nostd::Model::parse(FIXED).expect("parse");
    let len = FloatEngine::scratch_len(&c)
        .f32s
        .max(AnyEngine::arena_len(&m));
    let p = [Puzzle {
        name: "wiki",
        puzzle_id: 0,
        question: Q,
        answer: Some(A),
    }];
    let both: [&[u8]; 2] = [&float, FIXED];
    let mut out = Buf::default();
    let mut scratch = vec![0.0f32; len];
    let r = run_models(
        &mut out,
        &mut Calls(0),
        &both,
        &p,
        &mut scratch,
        &opts(HaltMode::AllSteps),
    );
    assert_eq!(r.errors, 0, "{}", out.0);
    assert_eq!(r.total, 2);
    let schemes: Vec<bool> = lines(&out.0, "TRM-MODEL")
        .iter()
        .map(|l| l.contains(" scheme=fixed "))
        .collect();
    assert_eq!(schemes, [false, true], "{}", out.0);
    // Each block equals its model's run alone (the arena is reused in between).
    for (k, bytes) in both.iter().enumerate() {
        let (_, alone) = go(Some(bytes), &p, len, HaltMode::AllSteps);
        let block = out.0.split("TRM-BANNER").nth(k + 1).expect("block");
        assert_eq!(format!("TRM-BANNER{block}"), alone);
    }
}

/// A maze model's puzzles (token lines longer than the golden check's line buffer): the golden
/// comparison checks every byte of a long `TRM-RESULT` line, and the puzzle identifier reaches
/// the engine.
#[test]
fn long_token_lines_are_compared_whole_and_identifiers_reach_the_engine() {
    use trm_fw_app::run_checked;
    // A 16x16 maze (256 cells: lines longer than LINE_MAX), 4 puzzle identifiers.
    let mut c = config();
    c.seq_len = 256;
    c.vocab_size = 6;
    c.num_puzzle_identifiers = 4;
    let bytes = model(&c, -5.0);
    let mut q = vec![b'.'; 256];
    q[0] = b'S';
    q[255] = b'G';
    q[17] = b'#';
    let q = String::from_utf8(q).unwrap();
    let mut a = q.clone().into_bytes();
    a[1..16].fill(b'o');
    for r in 1..15 {
        a[r * 16 + 15] = b'o';
    }
    a[15 * 16 + 15] = b'G';
    let a = String::from_utf8(a).unwrap();
    let puzzles = [
        Puzzle {
            name: "m0",
            puzzle_id: 0,
            question: &q,
            answer: Some(&a),
        },
        Puzzle {
            name: "m3",
            puzzle_id: 3,
            question: &q,
            answer: Some(&a),
        },
    ];
    let (r, out) = go(Some(&bytes), &puzzles, 1 << 22, HaltMode::AllSteps);
    assert!(r.success(), "{out}");
    assert!(out.contains("TRM-ANSWER puzzle=0 status=valid"), "{out}");
    assert!(
        out.contains(" name=m3 task=maze id=3 question=S...."),
        "{out}"
    );
    // The same maze under another identifier: another puzzle embedding, other states.
    let digests = lines(&out, "TRM-DIGEST");
    let y = |l: &str| l.split(" y=").nth(1).unwrap().to_string();
    assert_ne!(y(digests[0]), y(digests[1]), "{out}");

    let golden: String = std::iter::once(format!(
        "# trm-golden v1 model_crc={:08x} halt=all puzzles=2",
        trm_fw_app::crc32(&bytes)
    ))
    .chain(
        out.lines()
            .filter(|l| {
                ["TRM-PUZZLE ", "TRM-STEP ", "TRM-DIGEST ", "TRM-RESULT "]
                    .iter()
                    .any(|t| l.starts_with(t))
            })
            .map(str::to_string),
    )
    .map(|l| l + "\n")
    .collect();
    let result = lines(&golden, "TRM-RESULT")[1].to_string();
    assert!(result.len() > trm_fw_app::LINE_MAX + 100, "{result}");
    let check = |golden: &str| {
        let mut o = Buf::default();
        let mut scratch = vec![0.0f32; 1 << 22];
        let r = run_checked(
            &mut o,
            &mut Calls(0),
            &bytes,
            golden,
            &puzzles,
            &mut scratch,
            &opts(HaltMode::AllSteps),
        );
        (r, o.0)
    };
    let (r, o) = check(&golden);
    assert!(r.success(), "{o}");
    assert!(o.contains("TRM-GOLDEN match=12/12"), "{o}");
    // One byte changed far past the line buffer, a byte added, a byte removed: each a
    // difference, reported with the golden line.
    let n = result.len();
    let mut flipped = result.clone().into_bytes();
    let k = n - 20;
    flipped[k] = if flipped[k] == b'.' { b'o' } else { b'.' };
    let flipped = String::from_utf8(flipped).unwrap();
    for edited in [flipped, format!("{result}."), result[..n - 1].to_string()] {
        let (r, o) = check(&golden.replace(&result, &edited));
        assert!(!r.success(), "{o}");
        assert!(o.contains("TRM-GOLDEN match=11/12"), "{o}");
        assert!(o.contains(&format!("expected `{edited}`, got `")), "{o}");
    }
}
