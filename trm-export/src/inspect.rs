//! `inspect`: what a `.trm` file holds and what running it takes: config, numeric scheme,
//! the source checkpoint it was exported from and which weights of the run (raw or EMA; when
//! recorded), sizes (flash bytes, parameters),
//! the RAM arena of its engine and of the firmware app, the work of an ACT step and of a
//! puzzle (multiply-accumulates), and the tensors.

use serde::Serialize;
use trm_nostd::format::WeightsKind;
use trm_nostd::{
    AnyEngine, Config, DType, Engine, FixedEngine, FloatEngine, LayerTensor, Model, NumericScheme,
    TensorId,
};

/// One tensor of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Reference name.
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Rows, columns.
    pub shape: [u32; 2],
    /// Bytes of data.
    pub bytes: usize,
    /// Bytes of its quantization table (fixed models).
    pub table_bytes: usize,
}

/// RAM the engines need, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Arena {
    /// Float models: the float engine's smallest f32 arena.
    pub float_min_bytes: Option<usize>,
    /// Float models: the f32 arena that lets the float engine go fastest.
    pub float_fast_bytes: Option<usize>,
    /// Fixed models: i16 values of the fixed engine's arena.
    pub fixed_i16s: Option<usize>,
    /// Fixed models: i32 values of the fixed engine's arena.
    pub fixed_i32s: Option<usize>,
    /// Fixed models: the fixed arena in bytes (`2 * i16s + 4 * i32s`).
    pub fixed_bytes: Option<usize>,
    /// Fixed models: the arena with which the fixed engine goes fastest on a host (its blocked
    /// matrix products' scratch and row blocks: `FixedEngine::scratch_len_fast`), in bytes.
    pub fixed_fast_bytes: Option<usize>,
    /// The firmware app's scratch for this model, in bytes (f32 words; a fixed model's i16 part
    /// rounded up to whole words).
    pub app_scratch_bytes: usize,
}

/// Everything `inspect` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The file's format version.
    pub version: u16,
    /// `float` or `fixed`.
    pub kind: String,
    /// The numeric scheme (`Float(F32)`, `Fixed { weights: I8, activations: I16 }`).
    pub scheme: String,
    /// The architecture.
    pub config: Config,
    /// CRC-32 of the whole file (as in golden files).
    pub crc32: String,
    /// Bytes of the whole file: the flash it takes.
    pub flash_bytes: usize,
    /// Preamble, header, directory and padding.
    pub metadata_bytes: usize,
    /// Tensor data without padding.
    pub tensor_bytes: u64,
    /// Trained scalars.
    pub parameters: u64,
    /// Every stored scalar, buffers included.
    pub stored_values: u64,
    /// RAM the engines need.
    pub arena: Arena,
    /// Multiply-accumulates of one ACT step.
    pub macs_per_act_step: u64,
    /// Multiply-accumulates of one puzzle at most (`halt_max_steps` ACT steps): what the run
    /// budget (`--max-macs`) counts.
    pub macs_per_puzzle: u64,
    /// The checkpoint file the weights were exported from, when the file records it.
    pub source: Option<crate::verify::SourceInfo>,
    /// Which weights of the run that checkpoint file holds, `ema` (the exponential moving
    /// average: what the trainer evaluates when EMA is on) or `raw` (the trained weights), when
    /// the file records it.
    pub source_weights: Option<String>,
    /// Fixed models: real value of one integer unit of x, y/z, logits and q.
    pub scales: Option<[f32; 4]>,
    /// Fixed models: the precision options the file was exported with.
    pub precision: Option<FixedPrecision>,
    /// The tensors.
    pub tensors: Vec<TensorInfo>,
}

/// The precision options of a fixed file (`trm-export export --int16-weights`,
/// `--silu-knots`, `--exact-products`), read back from its tensors and tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixedPrecision {
    /// Weight matrices stored as int8.
    pub int8_matrices: usize,
    /// Weight matrices stored as int16.
    pub int16_matrices: usize,
    /// The SiLU table sizes found (one per SwiGLU; normally all equal).
    pub silu_knots: Vec<usize>,
    /// Whether SwiGLU products are kept exact (global tag `FIX2`).
    pub exact_products: bool,
}

fn fixed_precision(model: &Model<'_>) -> FixedPrecision {
    use trm_nostd::fixed::tables;
    let c = model.config();
    let (mut int8_matrices, mut int16_matrices) = (0, 0);
    let mut silu_knots = Vec::new();
    for (id, v) in model.tensors() {
        let TensorId::Layer { tensor, .. } = id else {
            if matches!(id, TensorId::LmHead | TensorId::QHeadWeight) {
                match v.dtype {
                    DType::I16 => int16_matrices += 1,
                    _ => int8_matrices += 1,
                }
            }
            continue;
        };
        match v.dtype {
            DType::I16 => int16_matrices += 1,
            _ => int8_matrices += 1,
        }
        if matches!(tensor, LayerTensor::MlpGateUp | LayerTensor::MlpTGateUp) {
            let words = model.quant_table(id).map_or(0, |t| t.len() / 4);
            let rows = id.shape(c).rows as usize;
            if let Some(k) = tables::gate_up_silu_knots(rows, words)
                && !silu_knots.contains(&k)
            {
                silu_knots.push(k);
            }
        }
    }
    let tag = tables::Words(model.quant_table(TensorId::EmbedTokens).unwrap_or(&[])).word(0);
    FixedPrecision {
        int8_matrices,
        int16_matrices,
        silu_knots,
        exact_products: tag == tables::TAG_EXACT_PRODUCTS,
    }
}

/// Inspects a parsed model. Fails when a fixed model's tables do not build an engine.
pub fn inspect(model: &Model<'_>) -> anyhow::Result<Inspection> {
    let c = *model.config();
    let s = model.summary();
    let fixed = model.scheme().is_fixed();
    let arena = if fixed {
        let need = FixedEngine::scratch_len(&c);
        Arena {
            float_min_bytes: None,
            float_fast_bytes: None,
            fixed_i16s: Some(need.i16s),
            fixed_i32s: Some(need.i32s),
            fixed_bytes: Some(need.bytes()),
            fixed_fast_bytes: Some(FixedEngine::scratch_len_fast(&c).bytes()),
            app_scratch_bytes: AnyEngine::arena_len(model) * 4,
        }
    } else {
        Arena {
            float_min_bytes: Some(FloatEngine::scratch_len(&c).bytes()),
            float_fast_bytes: Some(FloatEngine::scratch_len_fast(&c).bytes()),
            fixed_i16s: None,
            fixed_i32s: None,
            fixed_bytes: None,
            fixed_fast_bytes: None,
            app_scratch_bytes: AnyEngine::arena_len(model) * 4,
        }
    };
    let scales = if fixed {
        let need = FixedEngine::scratch_len(&c);
        let (mut s16, mut s32) = (vec![0i16; need.i16s], vec![0i32; need.i32s]);
        let e = FixedEngine::new(model, &mut s16, &mut s32)
            .map_err(|e| anyhow::anyhow!("the fixed engine refuses the model: {e}"))?;
        Some([e.x_scale(), e.state_scale(), e.logit_scale(), e.q_scale()])
    } else {
        None
    };
    let tensors = model
        .tensors()
        .map(|(id, v)| TensorInfo {
            name: id.to_string(),
            dtype: format!("{:?}", v.dtype),
            shape: [v.shape.rows, v.shape.cols],
            bytes: v.data.len(),
            table_bytes: model.quant_table(id).map_or(0, <[u8]>::len),
        })
        .collect();
    Ok(Inspection {
        version: s.version,
        kind: if fixed { "fixed" } else { "float" }.to_string(),
        scheme: match model.scheme() {
            NumericScheme::Float(d) => format!("Float({d:?})"),
            other => format!("{other:?}"),
        },
        config: c,
        crc32: format!("{:08x}", trm_nostd::format::crc32(model.bytes())),
        flash_bytes: s.file_bytes,
        metadata_bytes: s.metadata_bytes,
        tensor_bytes: s.tensor_bytes,
        parameters: s.parameter_count,
        stored_values: s.stored_elements,
        arena,
        macs_per_act_step: c.macs_per_act_step(),
        macs_per_puzzle: c.macs_per_puzzle(),
        source: model.source().map(|r| crate::verify::SourceInfo {
            weights: r.weights.to_string(),
            bytes: r.bytes,
            crc32c: format!("{:08x}", r.crc32c),
        }),
        source_weights: model
            .source()
            .and_then(|r| r.kind)
            .map(|k| k.name().to_string()),
        scales,
        precision: fixed.then(|| fixed_precision(model)),
        tensors,
    })
}

impl Inspection {
    /// The report as text.
    pub fn text(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "format: .trm v{}, {} model, scheme {}",
            self.version, self.kind, self.scheme
        ));
        line(format!(
            "config: D={} heads={} expansion={} layers={} H_cycles={} L_cycles={} {} pos={:?} \
             vocab={} seq_len={}+{} puzzle_ids={} puzzle_emb_ndim={} halt_max_steps={} eps={:e} \
             rope_theta={}",
            c.hidden_size,
            c.num_heads,
            c.expansion,
            c.l_layers,
            c.h_cycles,
            c.l_cycles,
            if c.mlp_t { "mlp_t" } else { "attention" },
            c.pos_encodings,
            c.vocab_size,
            c.seq_len,
            c.puzzle_emb_len,
            c.num_puzzle_identifiers,
            c.puzzle_emb_ndim,
            c.halt_max_steps,
            c.rms_norm_eps,
            c.rope_theta
        ));
        line(format!(
            "flash: {} bytes (metadata {}, tensor data {}), crc32 {}",
            self.flash_bytes, self.metadata_bytes, self.tensor_bytes, self.crc32
        ));
        let kind = match self.source_weights.as_deref() {
            Some("ema") => Some(WeightsKind::Ema),
            Some("raw") => Some(WeightsKind::Raw),
            _ => None,
        };
        match (&self.source, kind) {
            (Some(src), Some(k)) => line(format!(
                "source: {} ({} bytes, CRC-32C {}), {}",
                src.weights,
                src.bytes,
                src.crc32c,
                crate::export::weights_kind_text(k)
            )),
            (Some(src), None) => line(format!(
                "source: {} ({} bytes, CRC-32C {})",
                src.weights, src.bytes, src.crc32c
            )),
            (None, _) => line("source: not recorded".to_string()),
        }
        line(format!(
            "parameters: {} trained ({} stored values)",
            self.parameters, self.stored_values
        ));
        let a = &self.arena;
        // `fixed engine RAM arena:` and `float engine RAM arena:` lines are read by scripts.
        if let (Some(b), Some(i16s), Some(i32s)) = (a.fixed_bytes, a.fixed_i16s, a.fixed_i32s) {
            let fast = a
                .fixed_fast_bytes
                .map_or(String::new(), |f| format!(", {f} bytes (fastest, host)"));
            line(format!(
                "fixed engine RAM arena: {b} bytes ({i16s} i16 + {i32s} i32){fast}"
            ));
        }
        if let (Some(min), Some(fast)) = (a.float_min_bytes, a.float_fast_bytes) {
            line(format!(
                "float engine RAM arena: {min} bytes (minimum), {fast} bytes (fastest)"
            ));
        }
        line(format!(
            "firmware app scratch: {} bytes",
            a.app_scratch_bytes
        ));
        if let Some([x, st, lg, q]) = self.scales {
            line(format!(
                "scales (real = int * scale): x {x:.3e}, y/z {st:.3e}, logits {lg:.3e}, q {q:.3e}"
            ));
        }
        if let Some(p) = &self.precision {
            let knots: Vec<String> = p.silu_knots.iter().map(usize::to_string).collect();
            line(format!(
                "precision: {} int8 + {} int16 weight matrices, SiLU tables of {} knots, SwiGLU \
                 products {}",
                p.int8_matrices,
                p.int16_matrices,
                knots.join("/"),
                if p.exact_products { "exact" } else { "int16" }
            ));
        }
        line(format!(
            "MACs per ACT step: {} ({:.3e}); per puzzle, {} ACT steps at most: {:.3e}",
            self.macs_per_act_step,
            self.macs_per_act_step as f64,
            c.halt_max_steps,
            self.macs_per_puzzle as f64
        ));
        line(format!("tensors ({}):", self.tensors.len()));
        for t in &self.tensors {
            let table = if t.table_bytes > 0 {
                format!(" + table {} bytes", t.table_bytes)
            } else {
                String::new()
            };
            line(format!(
                "  {:<48} {:<5} [{}, {}] {} bytes{table}",
                t.name, t.dtype, t.shape[0], t.shape[1], t.bytes
            ));
        }
        s
    }
}
