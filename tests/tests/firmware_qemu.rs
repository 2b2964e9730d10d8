//! Host vs Cortex-M4F: builds the QEMU mps2-an386 firmware (firmware-examples/) with Debian's
//! Rust through `scripts/cross.sh firmware`, runs it under `qemu-system-arm` with a timeout, and
//! checks what it prints.
//!
//! - `codec_smoke_run`: no model; the firmware parses, prints and checks real Sudoku-Extreme
//!   puzzles; every field is compared with values computed here from the CSV.
//! - `bad_models_fail_cleanly`: an empty and a corrupted model must print the reader's error (the
//!   same text the host reader gives) and exit 1, never fault or hang.
//! - `float_engine_matches_host`: a small random-weight model; every per-step digest of y and z,
//!   every q_halt bit pattern, and the final token digest must equal the host float engine's.
//!
//! Needs /usr/bin/cargo (Debian's rustc-web, for -Z build-std) and qemu-system-arm, both
//! installed by scripts/setup.sh. Without them the tests fail, unless TRM_SKIP_QEMU=1.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use trm_nostd::digest::{digest_f32, digest_tokens};
use trm_nostd::float::{FloatEngine, HaltMode, recursion};
use trm_nostd::format::{Model, NumericScheme, write_model};
use trm_nostd::sudoku::{self, CELLS, PAD};
use trm_nostd::{Config, DType, TensorId};

/// Wall-clock limit of one QEMU run.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// One firmware build at a time: every build writes the same ELF path, which is copied away
/// under this lock.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether to run; panics with the set-up hint when a tool is missing and skipping was not asked.
fn tools_ready(test: &str) -> bool {
    let missing: Vec<&str> = ["/usr/bin/cargo", "/usr/bin/rustc"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .chain(
            Command::new("qemu-system-arm")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
                .then_some("qemu-system-arm"),
        )
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("TRM_SKIP_QEMU").as_deref() == Ok("1") {
        eprintln!("{test}: skipped (TRM_SKIP_QEMU=1; missing {missing:?})");
        return false;
    }
    panic!(
        "{test}: missing {missing:?}: run scripts/setup.sh (Debian rustc-web/cargo-web/rust-web-src, \
         lld, qemu-system-arm), or set TRM_SKIP_QEMU=1 to skip the firmware tests"
    );
}

fn data_dir() -> PathBuf {
    std::env::var_os("TRM_DATA_DIR").map_or_else(
        || trm_tests::shared_dir().expect("shared data").join("data"),
        PathBuf::from,
    )
}

/// The Sudoku CSV the firmware tests embed puzzles from.
fn puzzles_csv() -> PathBuf {
    data_dir().join("sudoku-extreme/sudoku-extreme-1k/test_hard.csv")
}

/// (source, question, answer) of the first `n` rows, read here independently of build.rs.
fn csv_rows(n: usize) -> Vec<(String, String, String)> {
    let path = puzzles_csv();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set TRM_DATA_DIR)", path.display()));
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
fn build_firmware(name: &str, settings: &[(&str, &str)]) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(root().join("scripts/cross.sh"));
    cmd.arg("firmware").current_dir(root());
    for var in [
        "TRM_MODEL",
        "TRM_PUZZLES",
        "TRM_PUZZLES_N",
        "TRM_HALT",
        "TRM_STEP_DIGESTS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in settings {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = cmd.output().expect("run scripts/cross.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/cross.sh firmware failed ({}):\n{stderr}",
        out.status
    );
    eprintln!(
        "{name}: firmware built in {:.1}s\n{stderr}",
        t0.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let elf = PathBuf::from(stdout.lines().last().expect("ELF path").trim());
    let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.elf"));
    std::fs::copy(&elf, &dest).expect("copy ELF");
    dest
}

/// Runs the ELF under QEMU; returns (exit code, stdout). Panics on timeout.
fn run_qemu(elf: &Path) -> (i32, String) {
    let mut child = Command::new("qemu-system-arm")
        .args([
            "-machine",
            "mps2-an386",
            "-cpu",
            "cortex-m4",
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
        ])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu-system-arm");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status;
        }
        if t0.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let partial = reader.join().unwrap_or_default();
            panic!("QEMU timed out after {QEMU_TIMEOUT:?}; output so far:\n{partial}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().expect("reader thread");
    eprintln!(
        "{}: QEMU ran {:.2}s, {status}",
        elf.display(),
        t0.elapsed().as_secs_f64()
    );
    (status.code().unwrap_or(-1), text)
}

/// A `TRM-` line: its tag and fields (`msg=` runs to the end of the line).
#[derive(Debug)]
struct Record {
    tag: String,
    fields: HashMap<String, String>,
}

impl Record {
    fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("{} has no field {k}: {:?}", self.tag, self.fields))
    }
}

fn records(out: &str) -> Vec<Record> {
    out.lines()
        .filter(|l| l.starts_with("TRM-"))
        .map(|l| {
            let (head, msg) = match l.find(" msg=") {
                Some(i) => (&l[..i], Some(&l[i + 5..])),
                None => (l, None),
            };
            let mut parts = head.split(' ');
            let tag = parts.next().unwrap_or_default().to_string();
            let mut fields: HashMap<String, String> = parts
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Some(m) = msg {
                fields.insert("msg".into(), m.to_string());
            }
            Record { tag, fields }
        })
        .collect()
}

fn with_tag<'r>(recs: &'r [Record], tag: &str) -> Vec<&'r Record> {
    recs.iter().filter(|r| r.tag == tag).collect()
}

#[test]
fn codec_smoke_run() {
    if !tools_ready("codec_smoke_run") {
        return;
    }
    let n = 3;
    let csv = puzzles_csv();
    let elf = build_firmware(
        "codec",
        &[
            ("TRM_PUZZLES", csv.to_str().expect("utf-8 path")),
            ("TRM_PUZZLES_N", &n.to_string()),
        ],
    );
    let (code, out) = run_qemu(&elf);
    assert_eq!(code, 0, "firmware failed:\n{out}");
    let recs = records(&out);
    let banner = with_tag(&recs, "TRM-BANNER");
    assert_eq!(banner.len(), 1, "{out}");
    assert_eq!(banner[0].get("board"), "qemu-mps2-an386");
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
    c.halt_max_steps = 3;
    c
}

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

#[test]
fn bad_models_fail_cleanly() {
    if !tools_ready("bad_models_fail_cleanly") {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let good = random_model(&small_config(), 3, DType::F32);
    // Flip one payload byte near the end: only the payload checksum can catch it.
    let mut corrupt = good.clone();
    let last = corrupt.len() - 3;
    corrupt[last] ^= 0x10;
    let cases: [(&str, Vec<u8>); 3] = [
        ("empty", Vec::new()),
        ("corrupt", corrupt),
        ("truncated", good[..good.len() / 2].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(format!("bad-{name}.trm"));
        std::fs::write(&path, &bytes).expect("write model");
        let expected = match Model::parse(&bytes) {
            Ok(_) => panic!("{name}: the host reader accepts it"),
            Err(e) => e.to_string(),
        };
        let elf = build_firmware(
            &format!("bad-{name}"),
            &[("TRM_MODEL", path.to_str().expect("utf-8 path"))],
        );
        let (code, out) = run_qemu(&elf);
        assert_eq!(code, 1, "{name}: exit code\n{out}");
        let recs = records(&out);
        let errors = with_tag(&recs, "TRM-ERROR");
        assert_eq!(errors.len(), 1, "{name}:\n{out}");
        assert_eq!(errors[0].get("stage"), "model", "{name}:\n{out}");
        assert_eq!(errors[0].get("bytes"), bytes.len().to_string());
        assert_eq!(errors[0].get("msg"), expected, "{name}");
        let done = with_tag(&recs, "TRM-DONE");
        assert_eq!(done.len(), 1, "{name}:\n{out}");
        assert_eq!(done[0].get("errors"), "1");
    }
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
    let mut scratch = vec![0.0f32; FloatEngine::scratch_len(&c)];
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
        if recursion::should_stop(HaltMode::AllSteps, s.step, c.halt_max_steps, s.q_halt > 0.0) {
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

#[test]
fn float_engine_matches_host() {
    if !tools_ready("float_engine_matches_host") {
        return;
    }
    let n = 2;
    let c = small_config();
    let bytes = random_model(&c, 11, DType::F32);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("small-mlp_t.trm");
    std::fs::write(&path, &bytes).expect("write model");
    let csv = puzzles_csv();
    let elf = build_firmware(
        "float",
        &[
            ("TRM_MODEL", path.to_str().expect("utf-8 path")),
            ("TRM_PUZZLES", csv.to_str().expect("utf-8 path")),
            ("TRM_PUZZLES_N", &n.to_string()),
            ("TRM_HALT", "all"),
            ("TRM_STEP_DIGESTS", "1"),
        ],
    );
    let (code, out) = run_qemu(&elf);
    assert_eq!(code, 0, "firmware failed:\n{out}");
    let recs = records(&out);
    assert!(with_tag(&recs, "TRM-ERROR").is_empty(), "{out}");
    let model = with_tag(&recs, "TRM-MODEL");
    assert_eq!(model.len(), 1, "{out}");
    assert_eq!(model[0].get("bytes"), bytes.len().to_string());
    assert_eq!(model[0].get("hidden"), c.hidden_size.to_string());

    let rows = csv_rows(n);
    let steps = with_tag(&recs, "TRM-STEP");
    let digests = with_tag(&recs, "TRM-DIGEST");
    let results = with_tag(&recs, "TRM-RESULT");
    assert_eq!(digests.len(), n, "{out}");
    assert_eq!(results.len(), n, "{out}");
    assert_eq!(steps.len(), n * c.halt_max_steps as usize, "{out}");
    let mut ok = 0;
    for (i, (_, q, a)) in rows.iter().enumerate() {
        let host = host_solve(&bytes, q);
        let dev: Vec<&&Record> = steps
            .iter()
            .filter(|r| r.get("puzzle") == i.to_string())
            .collect();
        assert_eq!(dev.len(), host.steps.len(), "puzzle {i}");
        for (k, (r, (qh, y, z))) in dev.iter().zip(&host.steps).enumerate() {
            assert_eq!(r.get("step"), (k + 1).to_string());
            assert_eq!(
                r.get("q_halt"),
                format!("{qh:08x}"),
                "puzzle {i} step {}",
                k + 1
            );
            assert_eq!(r.get("y"), format!("{y:08x}"), "puzzle {i} step {}", k + 1);
            assert_eq!(r.get("z"), format!("{z:08x}"), "puzzle {i} step {}", k + 1);
        }
        let d = digests[i];
        assert_eq!(d.get("puzzle"), i.to_string());
        assert_eq!(d.get("steps"), host.steps.len().to_string());
        assert_eq!(
            d.get("tokens"),
            format!("{:08x}", digest_tokens(&host.tokens))
        );
        assert_eq!(d.get("y"), format!("{:08x}", host.y));
        // The printed prediction and its checks agree with the host's tokens.
        let mut line = String::new();
        sudoku::write_line(&mut line, &host.tokens).expect("fmt");
        let r = results[i];
        assert_eq!(r.get("prediction"), line, "puzzle {i}");
        let mut qt = [PAD; CELLS];
        sudoku::parse_puzzle(q, &mut qt).expect("question");
        let mut at = [PAD; CELLS];
        sudoku::parse_puzzle(a, &mut at).expect("answer");
        let correct = at.iter().zip(&host.tokens).filter(|(x, y)| x == y).count();
        assert_eq!(r.get("correct"), format!("{correct}/{CELLS}"));
        let valid = sudoku::is_valid_solution(&host.tokens, &qt);
        assert_eq!(r.get("valid"), valid.to_string());
        ok += usize::from(valid);
    }
    let done = with_tag(&recs, "TRM-DONE");
    assert_eq!(done.len(), 1, "{out}");
    assert_eq!(done[0].get("ok"), ok.to_string());
    assert_eq!(done[0].get("total"), n.to_string());
    assert_eq!(done[0].get("errors"), "0");
}
