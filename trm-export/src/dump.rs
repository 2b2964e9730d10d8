//! `run --dump FILE`: the engine's numbers of every ACT step of every puzzle, as a safetensors
//! file, to compare with PyTorch in a notebook.
//!
//! The puzzles are solved again, in order, on one engine of the model's scheme, with the same
//! tokens, puzzle identifier and halting rule as the firmware app, so the dump holds the
//! numbers behind the run's transcript. Tensors (little-endian, row-major), for puzzle `i`
//! (its index in the run, 0-based) and ACT step `k` (1-based: `step1` is after the first step):
//!
//! | name | shape | float | fixed |
//! |---|---|---|---|
//! | `puzzle{i}.step{k}.logits` | `[seq_len, vocab]` | F32 | I32 (integers at `logit_scale`) |
//! | `puzzle{i}.step{k}.q_halt` | `[1]` | F32 | I32 (at `q_scale`) |
//! | `puzzle{i}.step{k}.q_continue` | `[1]` | F32 | I32 (at `q_scale`) |
//! | `puzzle{i}.step{k}.y` | `[seq_total, D]` | F32 | I16 (at `state_scale`) |
//! | `puzzle{i}.step{k}.z` | `[seq_total, D]` | F32 | I16 (at `state_scale`) |
//!
//! `seq_total` is `puzzle_emb_len + seq_len` (the puzzle-embedding prefix rows come first). A
//! fixed model's scales are per model: F32 tensors `[1]` named `state_scale` (y and z),
//! `logit_scale`, `q_scale` and `x_scale`, each with real = integer * scale. The header's
//! metadata holds `scheme` (`float` or `fixed`), `halt` (`all` or `early`), `puzzles` (the
//! count dumped) and `puzzle{i}.steps` (the steps of puzzle `i`). A puzzle whose question does
//! not parse (an error of the run) has no tensors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use safetensors::{Dtype, View};
use trm_nostd::act::should_stop;
use trm_nostd::float::kernels::Arith;
use trm_nostd::{AnyEngine, Engine, HaltMode, Model};

use crate::puzzles::{PuzzleKind, PuzzleRow};

/// One tensor of the dump, owning its little-endian bytes.
#[derive(Debug, Clone)]
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// An element the dump stores: its safetensors type and little-endian bytes.
trait Element: Copy {
    const DTYPE: Dtype;
    fn extend(values: &[Self], out: &mut Vec<u8>);
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn extend(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
}

impl Element for i16 {
    const DTYPE: Dtype = Dtype::I16;
    fn extend(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
}

impl Element for i32 {
    const DTYPE: Dtype = Dtype::I32;
    fn extend(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
}

fn tensor<T: Element>(values: &[T], shape: Vec<usize>) -> Tensor {
    let mut data = Vec::with_capacity(values.len() * T::DTYPE.bitsize() / 8);
    T::extend(values, &mut data);
    Tensor {
        dtype: T::DTYPE,
        shape,
        data,
    }
}

/// The tensors being collected, and the header's metadata.
#[derive(Default)]
struct Dump {
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
}

/// Solves one puzzle on `engine` as the app does, adding every step's tensors to `dump`;
/// returns the steps run.
fn dump_puzzle<E>(
    engine: &mut E,
    i: usize,
    question: &[u8],
    puzzle_id: u32,
    halt: HaltMode,
    dump: &mut Dump,
) -> anyhow::Result<u32>
where
    E: Engine,
    E::State: Element,
    E::Logit: Element + Default,
{
    let c = *engine.config();
    let (seq_len, vocab, d) = (c.seq_len as usize, c.vocab_size as usize, c.d());
    engine
        .start(question, puzzle_id)
        .map_err(|e| anyhow::anyhow!("puzzle {i}: {e}"))?;
    let mut logits = vec![E::Logit::default(); seq_len * vocab];
    loop {
        let s = engine.step();
        engine
            .logits(&mut logits)
            .map_err(|e| anyhow::anyhow!("puzzle {i}: {e}"))?;
        let p = format!("puzzle{i}.step{}", s.step);
        let rows = engine.y().len() / d;
        dump.tensors.extend([
            (format!("{p}.logits"), tensor(&logits, vec![seq_len, vocab])),
            (format!("{p}.q_halt"), tensor(&[s.q_halt], vec![1])),
            (format!("{p}.q_continue"), tensor(&[s.q_continue], vec![1])),
            (format!("{p}.y"), tensor(engine.y(), vec![rows, d])),
            (format!("{p}.z"), tensor(engine.z(), vec![rows, d])),
        ]);
        if should_stop(halt, s.step, c.halt_max_steps, s.halts()) {
            return Ok(s.step);
        }
    }
}

/// Solves `rows` with `model` (every puzzle whose question parses, in order, with its puzzle
/// identifier, stopping as `halt` says; a float model with `arith`'s multiply-accumulates) and
/// returns the safetensors bytes described in the module documentation.
pub fn dump_bytes(
    model: &[u8],
    rows: &[PuzzleRow],
    halt: HaltMode,
    arith: Arith,
) -> anyhow::Result<Vec<u8>> {
    let m = Model::parse(model).context("the model is not a valid .trm file")?;
    let mut arena = crate::engine::arena_for(&m);
    let mut engine = AnyEngine::new(&m, &mut arena).context("building the engine")?;
    engine.set_float_arith(arith);
    let kind = PuzzleKind::of(m.config());
    let mut dump = Dump::default();
    let scheme = if engine.is_fixed() { "fixed" } else { "float" };
    dump.metadata.insert("scheme".into(), scheme.into());
    let halt_name = match halt {
        HaltMode::AllSteps => "all",
        HaltMode::EarlyHalt => "early",
    };
    dump.metadata.insert("halt".into(), halt_name.into());
    if let AnyEngine::Fixed(e) = &engine {
        for (name, v) in [
            ("state_scale", e.state_scale()),
            ("logit_scale", e.logit_scale()),
            ("q_scale", e.q_scale()),
            ("x_scale", e.x_scale()),
        ] {
            dump.tensors.push((name.into(), tensor(&[v], vec![1])));
        }
    }
    let mut dumped = 0usize;
    for (i, r) in rows.iter().enumerate() {
        let Ok(question) = kind.parse(&r.question) else {
            continue; // The run reports it (TRM-ERROR).
        };
        let id = r.puzzle_id;
        let steps = match &mut engine {
            AnyEngine::Float(e) => dump_puzzle(e, i, &question, id, halt, &mut dump)?,
            AnyEngine::Fixed(e) => dump_puzzle(e, i, &question, id, halt, &mut dump)?,
        };
        dump.metadata
            .insert(format!("puzzle{i}.steps"), steps.to_string());
        dumped += 1;
    }
    dump.metadata.insert("puzzles".into(), dumped.to_string());
    let views: Vec<(&str, &Tensor)> = dump.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    safetensors::serialize(views, Some(dump.metadata)).context("serializing the dump")
}

/// [`dump_bytes`] written to `path` atomically: into a temporary file beside it, then renamed.
pub fn write_dump(
    path: &Path,
    model: &[u8],
    rows: &[PuzzleRow],
    halt: HaltMode,
    arith: Arith,
) -> anyhow::Result<()> {
    let bytes = dump_bytes(model, rows, halt, arith)?;
    let Some(name) = path.file_name() else {
        bail!("--dump {}: not a file name", path.display());
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("renaming {} to {}: {e}", tmp.display(), path.display())
    })
}
