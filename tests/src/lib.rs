//! Helpers shared by the cross-crate tests in `tests/tests/`.
//!
//! Shared material (`../shared` beside the workspace: reference fixtures and puzzle data) is found
//! through `$TRM_SHARED`, else `<workspace>/../shared`.
#![deny(missing_docs)]

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// How to point the tests at the shared folder, for the errors that find it missing.
const SET_TRM_SHARED: &str = "set TRM_SHARED to the shared folder (the one holding data/ and \
     reference-fixtures/; by default ../shared beside the repository)";

/// The shared folder ([`trm_data::layout::shared_dir`]: `$TRM_SHARED`, else
/// `<workspace>/../shared`); an error says how to set it.
pub fn shared_dir() -> Result<PathBuf> {
    let dir = trm_data::layout::shared_dir();
    if !dir.is_dir() {
        bail!(
            "shared material not found at {}: {SET_TRM_SHARED}",
            dir.display()
        );
    }
    Ok(dir)
}

/// One folder of `reference-fixtures/`.
pub fn reference_fixture(name: &str) -> Result<PathBuf> {
    let dir = shared_dir()?.join("reference-fixtures").join(name);
    if !dir.is_dir() {
        bail!(
            "reference fixture {} is missing: {SET_TRM_SHARED}",
            dir.display()
        );
    }
    Ok(dir)
}

/// Reads a C-order `.npy` array of integers (u8 or i32, as the reference datasets store them).
pub fn read_npy_ints(path: &Path) -> Result<(Vec<u64>, Vec<i64>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let npy =
        npyz::NpyFile::new(&bytes[..]).with_context(|| format!("parsing {}", path.display()))?;
    let shape = npy.shape().to_vec();
    let values: Vec<i64> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1 => {
            npy.into_vec::<u8>()?.into_iter().map(i64::from).collect()
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int && t.size_field() == 4 => {
            npy.into_vec::<i32>()?.into_iter().map(i64::from).collect()
        }
        other => bail!("{}: unsupported dtype {other:?}", path.display()),
    };
    Ok((shape, values))
}

/// The f32 values of one tensor in a safetensors file's bytes.
pub fn safetensor_f32(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let t = st.tensor(name).with_context(|| format!("tensor {name}"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        bail!("tensor {name} is {:?}, expected F32", t.dtype());
    }
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((t.shape().to_vec(), v))
}

/// The i32 values of one tensor in a safetensors file's bytes.
pub fn safetensor_i32(bytes: &[u8], name: &str) -> Result<Vec<i32>> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let t = st.tensor(name).with_context(|| format!("tensor {name}"))?;
    if t.dtype() != safetensors::Dtype::I32 {
        bail!("tensor {name} is {:?}, expected I32", t.dtype());
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// `max |a - b| / max |b|`: the error relative to the scale of the expected values.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// `max |a - b|`.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The index of the largest value (the first on ties), as `torch.argmax` picks it.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// The gap between the largest and the second largest value of a row (infinite for one value).
pub fn top_two_margin(row: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in row {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    a - b
}

/// How an argmax comparison went: rows whose expected top-two margin exceeded the tolerance
/// (`checked`), and the positions among them where the argmax differs (`mismatches`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArgmaxCheck {
    /// Rows compared.
    pub rows: usize,
    /// Rows whose expected margin exceeded the tolerance (the argmax is then decided).
    pub checked: usize,
    /// Row indices among the checked ones where the argmaxes differ.
    pub mismatches: Vec<usize>,
}

/// Compares the argmax of every `vocab`-wide row of `ours` with that of `want` wherever `want`'s
/// top-two margin exceeds `tol` (a difference of `tol / 2` in every logit cannot flip such a
/// row, so a differing argmax there is a real disagreement).
pub fn argmax_agreement(ours: &[f32], want: &[f32], vocab: usize, tol: f32) -> ArgmaxCheck {
    assert_eq!(ours.len(), want.len(), "length mismatch");
    let mut out = ArgmaxCheck::default();
    for (i, (o, w)) in ours
        .chunks_exact(vocab)
        .zip(want.chunks_exact(vocab))
        .enumerate()
    {
        out.rows += 1;
        if top_two_margin(w) > tol {
            out.checked += 1;
            if argmax(o) != argmax(w) {
                out.mismatches.push(i);
            }
        }
    }
    out
}

/// A reference fixture (`reference-fixtures/<name>`) with its test batch and expected outputs.
#[derive(Debug)]
pub struct RefFixture {
    /// The fixture folder.
    pub dir: PathBuf,
    /// Puzzle tokens, `[batch, seq_len]` row-major.
    pub inputs: Vec<u8>,
    /// Puzzle identifiers, `[batch]`.
    pub ids: Vec<u32>,
    /// Puzzles in the batch.
    pub batch: usize,
    /// Tokens per puzzle.
    pub seq_len: usize,
    /// The bytes of `expected.safetensors`.
    pub expected: Vec<u8>,
}

impl RefFixture {
    /// Loads the test batch (`data/test/all__inputs.npy`, `all__puzzle_identifiers.npy`) and
    /// `expected.safetensors` of a fixture.
    pub fn load(name: &str) -> Result<Self> {
        let dir = reference_fixture(name)?;
        let (shape, inputs) = read_npy_ints(&dir.join("data/test/all__inputs.npy"))?;
        let (id_shape, ids) = read_npy_ints(&dir.join("data/test/all__puzzle_identifiers.npy"))?;
        let [batch, seq_len] = shape[..] else {
            bail!("all__inputs.npy has shape {shape:?}, expected [batch, seq_len]");
        };
        if id_shape != [batch] {
            bail!("all__puzzle_identifiers.npy has shape {id_shape:?}, expected [{batch}]");
        }
        let inputs = inputs
            .into_iter()
            .map(u8::try_from)
            .collect::<Result<Vec<u8>, _>>()
            .context("a token does not fit in u8")?;
        let ids = ids
            .into_iter()
            .map(u32::try_from)
            .collect::<Result<Vec<u32>, _>>()
            .context("a puzzle identifier does not fit in u32")?;
        let expected = std::fs::read(dir.join("expected.safetensors"))
            .with_context(|| format!("reading {}/expected.safetensors", dir.display()))?;
        Ok(RefFixture {
            dir,
            inputs,
            ids,
            batch: batch as usize,
            seq_len: seq_len as usize,
            expected,
        })
    }

    /// The tokens of puzzle `b`.
    pub fn tokens(&self, b: usize) -> &[u8] {
        &self.inputs[b * self.seq_len..(b + 1) * self.seq_len]
    }

    /// `eval_logits_step{k}`, `[batch, seq_len, vocab]` row-major (shape checked).
    pub fn logits(&self, k: u32, vocab: usize) -> Result<Vec<f32>> {
        let (shape, v) = safetensor_f32(&self.expected, &format!("eval_logits_step{k}"))?;
        if shape != [self.batch, self.seq_len, vocab] {
            bail!("eval_logits_step{k} has shape {shape:?}");
        }
        Ok(v)
    }

    /// `eval_q_halt_step{k}`, `[batch]`.
    pub fn q_halt(&self, k: u32) -> Result<Vec<f32>> {
        let (shape, v) = safetensor_f32(&self.expected, &format!("eval_q_halt_step{k}"))?;
        if shape != [self.batch] {
            bail!("eval_q_halt_step{k} has shape {shape:?}");
        }
        Ok(v)
    }

    /// `eval_preds` (argmax after the last step), `[batch, seq_len]`.
    pub fn preds(&self) -> Result<Vec<u8>> {
        let v = safetensor_i32(&self.expected, "eval_preds")?;
        if v.len() != self.batch * self.seq_len {
            bail!("eval_preds holds {} values", v.len());
        }
        v.into_iter()
            .map(|p| u8::try_from(p).context("eval_preds value out of range"))
            .collect()
    }

    /// The fixture imported the way a user imports a reference checkpoint:
    /// `trm_export::export::reference_to_trm` of its folder, `.trm` bytes stored as `dtype`.
    pub fn trm_bytes(&self, dtype: trm_nostd::DType) -> Result<Vec<u8>> {
        trm_export::export::reference_to_trm(&self.dir, dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_and_margin() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(top_two_margin(&[1.0, 3.0, 2.5, -1.0]), 0.5);
        assert_eq!(top_two_margin(&[3.0, 3.0]), 0.0);
        assert_eq!(top_two_margin(&[2.0]), f32::INFINITY);
    }

    #[test]
    fn argmax_agreement_skips_undecided_rows() {
        // Row 0: margin 1, argmax differs -> mismatch; row 1: margin 0.1, undecided at tol 0.2.
        let want = [2.0, 1.0, 0.0, 0.5, 0.4, 0.0];
        let ours = [1.0, 2.0, 0.0, 0.4, 0.5, 0.0];
        let r = argmax_agreement(&ours, &want, 3, 0.2);
        assert_eq!((r.rows, r.checked, r.mismatches), (2, 1, vec![0]));
        let r = argmax_agreement(&want, &want, 3, 0.05);
        assert_eq!((r.checked, r.mismatches.len()), (2, 0));
    }

    #[test]
    fn relative_error_is_scaled_by_the_expected_maximum() {
        assert_eq!(rel_err(&[1.0, 2.5], &[1.0, -4.0]), 6.5 / 4.0);
        assert_eq!(max_abs_diff(&[1.0, 2.5], &[1.5, 2.0]), 0.5);
    }
}

/// Building the QEMU firmware of `firmware-examples/` and running it, for `tests/firmware_qemu.rs`
/// and `tests/chain.rs`. Boards: `qemu-mps2-an386` (Cortex-M4F) and `qemu-virt-riscv32`
/// (RV32IMAFC).
///
/// Needs /usr/bin/cargo and /usr/bin/rustc (Debian's rustc-web, for -Z build-std),
/// qemu-system-arm and qemu-system-riscv32, installed by scripts/setup.sh.
pub mod qemu {
    use std::collections::HashMap;
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// One firmware build at a time (per test binary): every build writes the same ELF path,
    /// which is copied away under this lock.
    static BUILD_LOCK: Mutex<()> = Mutex::new(());

    /// A QEMU board of firmware-examples/.
    #[derive(Debug, Clone, Copy)]
    pub struct Board {
        /// `scripts/cross.sh firmware <arg>`.
        pub arg: &'static str,
        /// What the firmware prints as `board=`.
        pub name: &'static str,
        /// The QEMU program and its machine options.
        pub qemu: &'static [&'static str],
        /// `unit=` of `TRM-CYCLES`.
        pub unit: &'static str,
        /// Instructions per counter unit under `-icount shift=0` (1 ns of virtual time per
        /// instruction).
        pub instructions_per_unit: u64,
    }

    /// Cortex-M4F (thumbv7em-none-eabihf) on QEMU's mps2-an386. SysTick runs on the 25 MHz
    /// core clock: one tick every 40 ns, 40 instructions.
    pub const MPS2: Board = Board {
        arg: "mps2",
        name: "qemu-mps2-an386",
        qemu: &[
            "qemu-system-arm",
            "-machine",
            "mps2-an386",
            "-cpu",
            "cortex-m4",
        ],
        unit: "systick",
        instructions_per_unit: 40,
    };

    /// RV32IMAFC (riscv32imafc-unknown-none-elf) in machine mode on QEMU's virt board. QEMU's
    /// `mcycle` counts instructions under `-icount`.
    pub const RISCV32: Board = Board {
        arg: "riscv",
        name: "qemu-virt-riscv32",
        qemu: &["qemu-system-riscv32", "-machine", "virt", "-bios", "none"],
        unit: "mcycle",
        instructions_per_unit: 1,
    };

    /// Whether to run the firmware part of `test`: true when the tools are there; false (with
    /// a note) when they are missing and `TRM_SKIP_QEMU=1`; otherwise panics with the set-up
    /// hint (the message of `tests/firmware_qemu.rs`).
    pub fn tools_ready(test: &str, board: &Board) -> bool {
        let qemu = board.qemu[0];
        let missing: Vec<&str> = ["/usr/bin/cargo", "/usr/bin/rustc"]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .chain(
                Command::new(qemu)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_or(true, |s| !s.success())
                    .then_some(qemu),
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
             lld, qemu-system-arm, qemu-system-misc), or set TRM_SKIP_QEMU=1 to skip the firmware tests"
        );
    }

    /// Runs `scripts/cross.sh firmware <board>` with these TRM_* settings (all others
    /// removed), under the build lock; returns the script's output, successful or not.
    pub fn cross_firmware(board: &Board, settings: &[(&str, &str)]) -> Output {
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        run_cross(board, settings)
    }

    /// `scripts/cross.sh firmware <board>` with these TRM_* settings; callers hold `BUILD_LOCK`.
    fn run_cross(board: &Board, settings: &[(&str, &str)]) -> Output {
        let root = crate::workspace_root();
        let mut cmd = Command::new(root.join("scripts/cross.sh"));
        cmd.args(["firmware", board.arg]).current_dir(&root);
        for var in [
            "TRM_MODEL",
            "TRM_PUZZLES",
            "TRM_PUZZLES_N",
            "TRM_HALT",
            "TRM_STEP_DIGESTS",
            "TRM_GOLDEN",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in settings {
            cmd.env(k, v);
        }
        cmd.output().expect("run scripts/cross.sh")
    }

    /// Runs `scripts/cross.sh firmware <board>` with these TRM_* settings (all others removed)
    /// and copies the ELF to `dest`. Panics with the script's output when the build fails.
    pub fn build_firmware(board: &Board, settings: &[(&str, &str)], dest: &Path) {
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let t0 = Instant::now();
        let out = run_cross(board, settings);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scripts/cross.sh firmware failed ({}):\n{stderr}",
            out.status
        );
        eprintln!(
            "{}: firmware built in {:.1}s\n{stderr}",
            dest.display(),
            t0.elapsed().as_secs_f64()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let elf = PathBuf::from(stdout.lines().last().expect("ELF path").trim());
        std::fs::copy(&elf, dest).expect("copy ELF");
    }

    /// `TRM_MODEL` for several files: the paths in `PATH` syntax.
    pub fn model_list(paths: &[PathBuf]) -> String {
        std::env::join_paths(paths)
            .expect("model paths without ':'")
            .into_string()
            .expect("utf-8 paths")
    }

    /// Runs the ELF under the board's QEMU with `extra` QEMU options; returns (exit code,
    /// stdout). Panics after `timeout`, with the output so far.
    pub fn run_qemu(elf: &Path, board: &Board, extra: &[&str], timeout: Duration) -> (i32, String) {
        let mut child = Command::new(board.qemu[0])
            .args(&board.qemu[1..])
            .args(extra)
            .args([
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
            .unwrap_or_else(|e| panic!("start {}: {e}", board.qemu[0]));
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
            if t0.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                let partial = reader.join().unwrap_or_default();
                panic!("QEMU timed out after {timeout:?}; output so far:\n{partial}");
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
    #[derive(Debug, Clone)]
    pub struct Record {
        /// The tag (`TRM-STEP`, ...).
        pub tag: String,
        /// The whole line.
        pub line: String,
        /// `key=value` fields.
        pub fields: HashMap<String, String>,
    }

    impl Record {
        /// A field's value; panics naming the record when it is missing.
        pub fn get(&self, k: &str) -> &str {
            self.fields
                .get(k)
                .unwrap_or_else(|| panic!("{} has no field {k}: {}", self.tag, self.line))
        }
    }

    /// The `TRM-` lines of a firmware's output, parsed.
    pub fn records(out: &str) -> Vec<Record> {
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
                Record {
                    tag,
                    line: l.to_string(),
                    fields,
                }
            })
            .collect()
    }

    /// The records with this tag.
    pub fn with_tag<'r>(recs: &'r [Record], tag: &str) -> Vec<&'r Record> {
        recs.iter().filter(|r| r.tag == tag).collect()
    }

    /// The records of each run (one per embedded model): split at every `TRM-BANNER`.
    pub fn runs(recs: Vec<Record>) -> Vec<Vec<Record>> {
        let mut out: Vec<Vec<Record>> = Vec::new();
        for r in recs {
            if r.tag == "TRM-BANNER" || out.is_empty() {
                out.push(Vec::new());
            }
            out.last_mut().expect("a run").push(r);
        }
        out
    }
}

/// Running the tch model the way the trainer evaluates, for comparisons with the engines.
pub mod tch_model {
    use tch::{Kind, Tensor};
    use trm_train::model::Trm;

    /// A tensor's values as a flat `Vec<f32>`.
    pub fn flat(t: &Tensor) -> Vec<f32> {
        let t = t.to_kind(Kind::Float).contiguous().view(-1);
        Vec::<f32>::try_from(&t).expect("f32 values")
    }

    /// The input embedding x `[B, L, D]` of a batch: `inputs` is `[B, seq_len]` tokens
    /// row-major, `ids` one puzzle identifier per row. Runs without gradient.
    pub fn input_embeddings(model: &Trm, inputs: &[u8], ids: &[u32]) -> Tensor {
        let c = model.config();
        let b = ids.len() as i64;
        let _no_grad = tch::no_grad_guard();
        let inputs = Tensor::from_slice(inputs)
            .to_kind(Kind::Int64)
            .view([b, c.seq_len as i64]);
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let ids = Tensor::from_slice(&ids);
        let rows = model.puzzle_rows(&ids).expect("puzzle rows");
        model
            .input_embeddings(&inputs, rows.as_ref())
            .expect("input embeddings")
    }
}
