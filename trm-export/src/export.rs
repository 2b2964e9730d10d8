//! `export`: one command from a checkpoint (our trainer's run folder or `step_N` folder, a
//! reference checkpoint folder or file, or a float `.trm` file) to `.trm` files of several
//! formats: `f32`, `f16`, `bf16` (float storage) and `fixed` (int8 weights, int16 activations,
//! calibrated with the float engine on puzzles of a dataset; see [`crate::quantize`]).
//!
//! Output naming ([`output_path`]): `-o DIR` (an existing directory, or a path ending in `/`)
//! writes `DIR/model-<format>.trm`; any other `-o PREFIX` writes `PREFIX-<format>.trm`.
//!
//! The fixed file is exactly what `import-reference --dtype f32` followed by `quantize` gives,
//! except for the source record.
//!
//! Which weights: of one of our trainer's checkpoints with EMA on, the EMA weights
//! (`ema.safetensors`) are exported by default, as the trainer evaluates them (and as the
//! reference evaluates and saves them); `--weights raw` exports the trained weights
//! (`model.safetensors`), `--weights ema` demands the average (an error for a run without
//! EMA). See [`trm_reference::checkpoint::WeightsChoice`].
//!
//! Every file records its source ([`Origin`], the `.trm` format's optional source record): the
//! checkpoint file read (as `<folder>/<file>`), its size and its CRC-32C (for our trainer's
//! checkpoints, the manifest's, verified before anything is read), and which weights it holds
//! (raw or EMA) when that is known. From a float `.trm` file, its own record is kept, or, when
//! it has none, the `.trm` file itself is recorded. `verify` warns when two files do not
//! record the same source.
//!
//! A checkpoint of a run with quantization-aware training (`quant.weights` in its
//! `all_config.yaml`, [`FloatWeights::weight_grid`]) is exported fixed with its matrices at the
//! grid's precision (int8, or int16 for `int16`), after checking that each weight is on the
//! grid ([`crate::qat`]): the fixed file's weights then dequantize to the trained ones; a
//! weight off the grid is a warning naming the largest rounding error.
//!
//! Writing is all or nothing: every file is built in memory first, then written into a
//! temporary folder beside the output and fsynced, and only then renamed into place (files it
//! replaces are moved aside first and put back if a rename fails). A failure leaves the output
//! folder as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use trm_nostd::format::{
    MAX_SOURCE_NAME, ModelWriter, NumericScheme, SourceRecord, WeightsKind, write_model,
};
use trm_nostd::{Config, DType, Model, TensorId, TensorSource};
use trm_nostd::{Engine, FixedEngine, ScratchLen};
use trm_reference::checkpoint::{ImportOptions, import_reference};

use crate::puzzles::{PuzzleKind, PuzzleRow, PuzzleSource, to_tokens};
use crate::qat::{GridCheck, check_grid, int16_for};
use crate::quantize::{
    Calibration, Int16Weights, QuantizeOptions, calibrate, quantize_with_source,
};
use trm_reference::act_ranges::ActRanges;
use trm_reference::config::WeightQuant;

/// A `.trm` format `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Float, f32 storage.
    F32,
    /// Float, f16 storage.
    F16,
    /// Float, bf16 storage.
    Bf16,
    /// Fixed point: int8 weights, int16 activations.
    Fixed,
}

impl Format {
    /// The name in file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Bf16 => "bf16",
            Format::Fixed => "fixed",
        }
    }

    /// The storage type of a float format.
    pub fn float_dtype(self) -> Option<DType> {
        match self {
            Format::F32 => Some(DType::F32),
            Format::F16 => Some(DType::F16),
            Format::Bf16 => Some(DType::BF16),
            Format::Fixed => None,
        }
    }
}

/// Where `format`'s file goes for `-o out` (see the module documentation).
pub fn output_path(out: &Path, format: Format) -> PathBuf {
    let is_dir = out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/');
    if is_dir {
        out.join(format!("model-{}.trm", format.name()))
    } else {
        let mut s = out.as_os_str().to_os_string();
        s.push(format!("-{}.trm", format.name()));
        PathBuf::from(s)
    }
}

/// Where a model's weights come from: the contents of its `.trm` source record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file read, as `<folder>/<file>` (at most
    /// [`MAX_SOURCE_NAME`] bytes, no control characters).
    pub weights: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its CRC-32C.
    pub crc32c: u32,
    /// Which weights of the run it holds, when known.
    pub kind: Option<WeightsKind>,
}

impl Origin {
    /// The origin of the file `path` with this size and CRC-32C: its name is the last two
    /// components of the path, control characters replaced by `?`, cut to
    /// [`MAX_SOURCE_NAME`] bytes.
    pub fn new(path: &Path, bytes: u64, crc32c: u32) -> Self {
        let parts: Vec<String> = path
            .components()
            .rev()
            .take(2)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut weights: String = parts
            .iter()
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        while weights.len() > MAX_SOURCE_NAME {
            weights.remove(0);
        }
        if weights.is_empty() {
            weights.push('?');
        }
        Origin {
            weights,
            bytes,
            crc32c,
            kind: None,
        }
    }

    /// The same origin, holding weights of `kind`.
    pub fn with_kind(self, kind: Option<WeightsKind>) -> Self {
        Origin { kind, ..self }
    }

    /// As the `.trm` record.
    pub fn record(&self) -> SourceRecord<'_> {
        SourceRecord {
            weights: &self.weights,
            bytes: self.bytes,
            crc32c: self.crc32c,
            kind: self.kind,
        }
    }

    /// From a `.trm` record.
    pub fn from_record(r: &SourceRecord<'_>) -> Self {
        Origin {
            weights: r.weights.to_string(),
            bytes: r.bytes,
            crc32c: r.crc32c,
            kind: r.kind,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes, CRC-32C {:08x})",
            self.weights, self.bytes, self.crc32c
        )?;
        match self.kind {
            Some(k) => write!(f, ", {}", weights_kind_text(k)),
            None => Ok(()),
        }
    }
}

/// How `export` and `inspect` name a [`WeightsKind`]: `weights: ema (the exponential moving
/// average)` or `weights: raw (the trained weights, no average)`.
pub fn weights_kind_text(kind: WeightsKind) -> String {
    let what = match kind {
        WeightsKind::Ema => "the exponential moving average",
        WeightsKind::Raw => "the trained weights, no average",
    };
    format!("weights: {} ({what})", kind.name())
}

/// The float weights of a checkpoint, as f32.
#[derive(Debug, Clone)]
pub struct FloatWeights {
    /// The architecture.
    pub config: Config,
    /// Every tensor of `config`, as f32.
    pub tensors: Vec<(TensorId, Vec<f32>)>,
    /// What was read (the checkpoint file or the `.trm` file).
    pub source: PathBuf,
    /// What the written files record as their source.
    pub origin: Origin,
    /// The training split of the checkpoint's dataset, when found (the default calibration
    /// set).
    pub train_split: Option<PathBuf>,
    /// The grid the run fine-tuned the weight matrices onto (QAT, its `quant.weights`);
    /// `None` for float training and `.trm` inputs.
    pub weight_grid: Option<WeightQuant>,
    /// The activation ranges a run with int16 activation QAT froze (from its manifest);
    /// the fixed export uses them instead of calibrating those sites.
    pub act_ranges: Option<ActRanges>,
}

impl FloatWeights {
    /// The weights as a `.trm` file of `dtype` (F32, F16 or BF16), recording their origin.
    pub fn to_trm(&self, dtype: DType) -> anyhow::Result<Vec<u8>> {
        let write = || {
            let mut w = ModelWriter::new(self.config, NumericScheme::Float(dtype))?;
            for (id, v) in &self.tensors {
                w.add(*id, v)?;
            }
            w.set_source(&self.origin.record())?;
            w.finish()
        };
        write().with_context(|| format!("writing {} as {dtype:?} .trm", self.source.display()))
    }
}

/// Reads float weights from a checkpoint (see [`import_reference`]; `options.weights` chooses
/// which weights of one of our checkpoints) or a float `.trm` file (whose record must then
/// show the chosen weights).
pub fn load_float_weights(path: &Path, options: &ImportOptions) -> anyhow::Result<FloatWeights> {
    if path.is_file() && path.extension().is_some_and(|e| e == "trm") {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let m = Model::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?;
        if m.scheme().is_fixed() {
            bail!(
                "{} is a fixed-point model: export needs float weights (a checkpoint or a float .trm)",
                path.display()
            );
        }
        let c = *m.config();
        let tensors = TensorId::all(&c)
            .map(|id| {
                let v = m
                    .tensor(id)
                    .with_context(|| format!("{}: missing tensor {id}", path.display()))?;
                let n = id.shape(&c).numel();
                let values = (0..n)
                    .map(|i| v.get_f32(i).context("not a float tensor"))
                    .collect::<anyhow::Result<Vec<f32>>>()
                    .with_context(|| format!("{}: tensor {id}", path.display()))?;
                Ok((id, values))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let origin = match m.source() {
            Some(r) => Origin::from_record(&r),
            None => Origin::new(
                path,
                bytes.len() as u64,
                trm_reference::run_checkpoint::crc32c(&bytes),
            ),
        };
        if let Some(want) = options.weights.demanded()
            && origin.kind != Some(want)
        {
            let has = match origin.kind {
                Some(k) => format!("{} weights", k.name()),
                None => "no weights kind".to_string(),
            };
            bail!(
                "{} records {has} in its source record, not {} weights: export it without \
                 `--weights`, or export the checkpoint",
                path.display(),
                want.name()
            );
        }
        return Ok(FloatWeights {
            config: c,
            tensors,
            source: path.to_path_buf(),
            origin,
            train_split: None,
            weight_grid: None,
            act_ranges: None,
        });
    }
    let m = import_reference(path, options)?;
    let train_split = m
        .dataset_json
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| d.file_name().is_some_and(|n| n == "train"))
        .map(Path::to_path_buf);
    Ok(FloatWeights {
        config: m.config,
        origin: Origin::new(&m.checkpoint, m.digest.bytes, m.digest.crc32c).with_kind(m.weights),
        tensors: m.tensors,
        source: m.checkpoint,
        train_split,
        weight_grid: m.weight_grid,
        act_ranges: m.act_ranges,
    })
}

/// Imports a reference checkpoint (see [`import_reference`]) and writes it as a `.trm` file
/// storing every tensor as `dtype` (F32, F16 or BF16).
pub fn reference_to_trm(path: &Path, dtype: DType) -> anyhow::Result<Vec<u8>> {
    reference_to_trm_with(path, dtype, &ImportOptions::default())
}

/// [`reference_to_trm`] with explicit [`ImportOptions`].
pub fn reference_to_trm_with(
    path: &Path,
    dtype: DType,
    options: &ImportOptions,
) -> anyhow::Result<Vec<u8>> {
    let model = import_reference(path, options)?;
    let bytes = write_model(
        model.config,
        NumericScheme::Float(dtype),
        model.tensors.iter().map(|(id, v)| (*id, v.as_slice())),
    )
    .with_context(|| format!("writing {} as .trm", model.checkpoint.display()))?;
    Ok(bytes)
}

/// A quantized model and what its export found.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The `Fixed` `.trm` file.
    pub bytes: Vec<u8>,
    /// The calibrated maxima.
    pub calibration: Calibration,
    /// Real value of one integer unit: x, y/z, logits, q.
    pub scales: [f32; 4],
    /// The fixed engine's RAM arena.
    pub arena: ScratchLen,
    /// Seconds spent calibrating and quantizing.
    pub seconds: f64,
    /// What calibration found beyond the integer ranges (see
    /// [`quantize_with_warnings`]), and weights of a QAT checkpoint off its grid.
    pub warnings: Vec<String>,
    /// The int16 weight groups used (the options', or those of a QAT checkpoint's grid).
    pub int16: Int16Weights,
    /// Of a QAT checkpoint: the rounding errors of its weights on the grid.
    pub grid: Option<GridCheck>,
    /// Of a checkpoint fine-tuned with int16 activation QAT: the frozen activation ranges
    /// used in place of calibrated ones at the network input, SwiGLU and attention sites.
    pub frozen: Option<ActRanges>,
}

/// Calibrates `float` (a float `.trm` file) on `rows` (every ACT step, no halting) and
/// quantizes it with `opts` (margin, int16 weight groups); the written file is checked by
/// building the fixed engine on it. The float file's source record, if any, is kept.
pub fn quantize_float_model(
    float: &[u8],
    rows: &[PuzzleRow],
    opts: &QuantizeOptions,
) -> anyhow::Result<Quantized> {
    quantize_float_model_recording(float, rows, opts, None, None)
}

/// [`quantize_float_model`], recording `fallback` as the source when the float file has no
/// source record of its own (`quantize` records the float file itself); with `frozen` (a run
/// with int16 activation QAT), those ranges and their margin in place of the calibrated ones
/// at the sites they cover ([`use_frozen_ranges`]).
pub fn quantize_float_model_recording(
    float: &[u8],
    rows: &[PuzzleRow],
    opts: &QuantizeOptions,
    fallback: Option<&Origin>,
    frozen: Option<&ActRanges>,
) -> anyhow::Result<Quantized> {
    let mut opts = *opts;
    if let Some(r) = frozen {
        opts.margin = r.margin;
    }
    let opts = &opts;
    let margin = opts.margin;
    let m = Model::parse(float).context("parsing the float model")?;
    if m.scheme().is_fixed() {
        bail!("the model is already a fixed-point model");
    }
    if !(margin.is_finite() && margin >= 1.0) {
        bail!("the margin must be a finite number >= 1 (got {margin})");
    }
    let c = *m.config();
    let kind = PuzzleKind::of_model(&m, "the float model")?;
    if rows.is_empty() {
        bail!("no calibration puzzles");
    }
    let set: Vec<(Vec<u8>, u32)> = to_tokens(rows, &kind)
        .context("calibration puzzles")?
        .into_iter()
        .map(|p| (p.question, p.puzzle_id))
        .collect();
    let t = Instant::now();
    let mut cal = calibrate(&c, &m, &set, c.halt_max_steps)?;
    if let Some(r) = frozen {
        use_frozen_ranges(&mut cal, r)?;
    }
    let source = m.source().or(fallback.map(Origin::record));
    let (out, warnings) = quantize_with_source(&c, &m, &cal, opts, source.as_ref())?;
    let fixed = Model::parse(&out).context("the written fixed model does not parse")?;
    let need = FixedEngine::scratch_len(&c);
    let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
    let engine = FixedEngine::new(&fixed, &mut s16, &mut s32)
        .map_err(|e| anyhow!("the written fixed model is refused: {e}"))?;
    let scales = [
        engine.x_scale(),
        engine.state_scale(),
        engine.logit_scale(),
        engine.q_scale(),
    ];
    Ok(Quantized {
        bytes: out,
        calibration: cal,
        scales,
        arena: need,
        seconds: t.elapsed().as_secs_f64(),
        warnings,
        int16: opts.int16,
        grid: None,
        frozen: frozen.cloned(),
    })
}

/// Puts the ranges a QAT run froze (`quant.activations: int16`) in place of the calibrated
/// maxima of the sites they cover (network input; SwiGLU gate, up, product; attention q, k,
/// v): the fixed file then rounds activations with exactly the trained scales.
pub fn use_frozen_ranges(cal: &mut Calibration, r: &ActRanges) -> anyhow::Result<()> {
    if r.blocks.len() != cal.blocks.len() {
        bail!(
            "frozen activation ranges of {} blocks for a model of {}",
            r.blocks.len(),
            cal.blocks.len()
        );
    }
    cal.input = r.input;
    for (b, f) in cal.blocks.iter_mut().zip(&r.blocks) {
        b.mix_gate = f.mix_gate;
        b.mix_up = f.mix_up;
        b.mix_prod = f.mix_prod;
        b.q = f.q;
        b.k = f.k;
        b.v = f.v;
        b.gate = f.gate;
        b.up = f.up;
        b.prod = f.prod;
    }
    Ok(())
}

/// The calibrated maxima per site, as lines of text (int16 sites map `margin * max` to 32767).
pub fn calibration_text(cal: &Calibration, mlp_t: bool, margin: f64) -> String {
    let mut s = format!("calibration: largest |value| per site (margin {margin}):\n");
    s.push_str(&format!(
        "  x {:.4}  network input {:.4}  y/z {:.4}  logits {:.4}  q {:.4}\n",
        cal.x, cal.input, cal.states, cal.logits, cal.q
    ));
    for (i, b) in cal.blocks.iter().enumerate() {
        let mixer = if mlp_t {
            format!(
                "token mixer gate {:.4} up {:.4} prod {:.4}",
                b.mix_gate, b.mix_up, b.mix_prod
            )
        } else {
            format!(
                "attention q {:.4} k {:.4} v {:.4} scores {:.4}",
                b.q, b.k, b.v, b.scores
            )
        };
        s.push_str(&format!(
            "  block {i}: {mixer} | SwiGLU gate {:.4} up {:.4} prod {:.4} | out {:.4} | \
             pre-norm residuals {:.4} / {:.4}\n",
            b.gate, b.up, b.prod, b.out, b.mix_residual, b.residual
        ));
    }
    s
}

/// Calibration settings of a fixed export.
#[derive(Debug, Clone)]
pub struct CalibSettings {
    /// The puzzles (None: the checkpoint's training split, when found).
    pub source: Option<PuzzleSource>,
    /// How many puzzles.
    pub count: usize,
    /// Margin and precision options of the quantization.
    pub quantize: QuantizeOptions,
    /// The calibration's budget of multiply-accumulates ([`crate::budget`]).
    pub max_macs: u64,
}

impl Default for CalibSettings {
    fn default() -> Self {
        CalibSettings {
            source: None,
            count: 64,
            quantize: QuantizeOptions::default(),
            max_macs: crate::budget::DEFAULT_MAX_MACS,
        }
    }
}

/// One written file.
#[derive(Debug, Clone)]
pub struct Written {
    /// Its format.
    pub format: Format,
    /// Where.
    pub path: PathBuf,
    /// Its size (the flash it takes).
    pub bytes: usize,
    /// For `fixed`: the quantization, and the calibration source used.
    pub quantized: Option<(Quantized, PuzzleSource)>,
}

/// Writes `weights` in every format of `formats` (duplicates written once) to
/// [`output_path`]`(out, format)`.
pub fn export(
    weights: &FloatWeights,
    formats: &[Format],
    calib: &CalibSettings,
    out: &Path,
) -> anyhow::Result<Vec<Written>> {
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    if formats.is_empty() {
        bail!("no format to write");
    }
    // QAT: the matrices at the grid's precision, each weight checked on the grid.
    let mut quantize_opts = calib.quantize;
    let grid_check = match weights.weight_grid {
        Some(grid) if formats.contains(&Format::Fixed) => {
            quantize_opts.int16 = int16_for(grid, calib.quantize.int16)?;
            Some(check_grid(&weights.config, &weights.tensors, grid)?)
        }
        _ => None,
    };
    // Check the calibration source before any file is written.
    let calib_source = if formats.contains(&Format::Fixed) {
        let source = match (&calib.source, &weights.train_split) {
            (Some(s), _) => s.clone(),
            (None, Some(t)) => PuzzleSource::Dataset(t.clone()),
            (None, None) => bail!(
                "the fixed format needs calibration puzzles: give --calib-dataset DIR (a training \
                 split) or --calib-puzzles CSV (none found from {})",
                weights.source.display()
            ),
        };
        let rows = source
            .load(calib.count, &PuzzleKind::of(&weights.config))
            .context("calibration puzzles")?;
        crate::budget::check(&weights.config, rows.len(), calib.max_macs, "calibration")?;
        Some((source, rows))
    } else {
        None
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
        && !out.as_os_str().to_string_lossy().ends_with('/')
        && !parent.is_dir()
    {
        bail!("output folder {} does not exist", parent.display());
    }
    if out.as_os_str().to_string_lossy().ends_with('/') {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    // Every file in memory first: a failure (calibration, quantization) writes nothing.
    let mut built = Vec::new();
    let mut f32_bytes: Option<Vec<u8>> = None;
    for &format in &formats {
        let path = output_path(out, format);
        let (bytes, quantized) = match format.float_dtype() {
            Some(dtype) => {
                let b = weights.to_trm(dtype)?;
                if dtype == DType::F32 {
                    f32_bytes = Some(b.clone());
                }
                (b, None)
            }
            None => {
                let float = match f32_bytes.take() {
                    Some(b) => b,
                    None => weights.to_trm(DType::F32)?,
                };
                let (source, rows) = calib_source
                    .as_ref()
                    .context("calibration source missing")?;
                let mut q = quantize_float_model_recording(
                    &float,
                    rows,
                    &quantize_opts,
                    None,
                    weights.act_ranges.as_ref(),
                )
                .context("the fixed format (no file was written)")?;
                if let Some(g) = grid_check {
                    if !g.on_grid() {
                        q.warnings.push(format!(
                            "{g}: the fixed file rounds them (was the checkpoint saved by a QAT \
                             run?)"
                        ));
                    }
                    q.grid = Some(g);
                }
                (q.bytes.clone(), Some((q, source.clone())))
            }
        };
        built.push((format, path, bytes, quantized));
    }
    let files: Vec<(&Path, &[u8])> = built
        .iter()
        .map(|(_, p, b, _)| (p.as_path(), b.as_slice()))
        .collect();
    write_all_or_none(&files)?;
    Ok(built
        .into_iter()
        .map(|(format, path, bytes, quantized)| Written {
            format,
            path,
            bytes: bytes.len(),
            quantized,
        })
        .collect())
}

/// Writes every `(path, bytes)` or none (see the module documentation). The paths share one
/// folder; the temporary folder is made there (same file system: renames are atomic).
pub fn write_all_or_none(files: &[(&Path, &[u8])]) -> anyhow::Result<()> {
    let Some((first, _)) = files.first() else {
        return Ok(());
    };
    let dir = match first.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for (p, _) in files {
        let parent = p.parent().filter(|q| !q.as_os_str().is_empty());
        if parent.unwrap_or(Path::new(".")) != dir {
            bail!("{} is not in {}", p.display(), dir.display());
        }
        if p.is_dir() {
            bail!(
                "{} is a folder, not a file that can be replaced",
                p.display()
            );
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(".trm-export-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = stage_and_place(files, &tmp);
    // Best effort: after success the folder holds only replaced files; after a failure, staged
    // files (and the replaced files the error names, if they could not be put back: kept).
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        let _ = remove_staged(&tmp, files.len());
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    result
}

/// Removes the new files staged in `tmp` and the folder, when nothing else is left there.
fn remove_staged(tmp: &Path, n: usize) -> std::io::Result<()> {
    for i in 0..n {
        let _ = std::fs::remove_file(tmp.join(format!("new-{i}")));
    }
    std::fs::remove_dir(tmp)
}

/// Writes the files into `tmp` (fsynced), moves the files they replace aside into `tmp`, and
/// renames the new ones into place; on a failure, undoes what was placed and puts the old
/// files back.
fn stage_and_place(files: &[(&Path, &[u8])], tmp: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    for (i, (p, bytes)) in files.iter().enumerate() {
        let staged = tmp.join(format!("new-{i}"));
        let mut f = std::fs::File::create(&staged)
            .with_context(|| format!("writing {} (staged in {})", p.display(), tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {} (staged in {})", p.display(), tmp.display()))?;
    }
    let mut aside = Vec::new();
    let mut placed = Vec::new();
    let mut place = || -> anyhow::Result<()> {
        for (i, (p, _)) in files.iter().enumerate() {
            if std::fs::symlink_metadata(p).is_ok() {
                std::fs::rename(p, tmp.join(format!("old-{i}")))
                    .with_context(|| format!("moving {} aside", p.display()))?;
                aside.push(i);
            }
        }
        for (i, (p, _)) in files.iter().enumerate() {
            std::fs::rename(tmp.join(format!("new-{i}")), p)
                .with_context(|| format!("writing {}", p.display()))?;
            placed.push(i);
        }
        Ok(())
    };
    let result = place();
    if result.is_err() {
        for &i in &placed {
            let _ = std::fs::remove_file(files[i].0);
        }
        let mut lost = Vec::new();
        for &i in &aside {
            if std::fs::rename(tmp.join(format!("old-{i}")), files[i].0).is_err() {
                lost.push(format!(
                    "{} (kept as {})",
                    files[i].0.display(),
                    tmp.join(format!("old-{i}")).display()
                ));
            }
        }
        if !lost.is_empty() {
            return result.with_context(|| {
                format!(
                    "and the files replaced could not be put back: {}",
                    lost.join(", ")
                )
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_are_prefix_or_folder() {
        let dir = std::env::temp_dir();
        assert_eq!(
            output_path(&dir, Format::Fixed),
            dir.join("model-fixed.trm")
        );
        assert_eq!(
            output_path(Path::new("out/new/"), Format::Bf16),
            Path::new("out/new/model-bf16.trm")
        );
        assert_eq!(
            output_path(Path::new("out/m"), Format::F32),
            Path::new("out/m-f32.trm")
        );
    }
}
