//! Quantization at export: a float model (any [`TensorSource`]) becomes a `Fixed` `.trm` file
//! (format version 2) for [`trm_nostd::fixed::FixedEngine`].
//!
//! 1. Calibration ([`calibrate`]): the float engine ([`FloatEngine`]) runs on a sample of
//!    puzzles with an [`Observer`] that records the largest `|value|` at every activation site
//!    ([`Site`]: the network input `z + y + x` / `y + z`, SwiGLU gate / up / product of every
//!    block and mixer, attention q, k (before and after RoPE), v and scores, pre-norm
//!    residuals, block outputs, halting logits); x, y and z at the start and the logits come
//!    from the engine's accessors. The recorded values are the float engine's own.
//! 2. Scales: block outputs and the states y, z use the post-norm bound `|v| <= sqrt(n)`
//!    (scale `sqrt(n) / 32767`, no calibration and no saturation); x uses the exact bound of
//!    its embedding tables; the other sites `margin * max / 32767` (int16) or `margin * max /
//!    2^24` (the i32 logits).
//! 3. Prepare ([`quantize`]): int8 symmetric per-output-channel weights (int16 for the
//!    matrices [`Int16Weights`] names: the scheme is then
//!    [`FIXED_I16_I16`]), every real multiplier
//!    folded into [`Requant`] mantissas and shifts, SiLU
//!    and Q15 RoPE tables, RMSNorm eps terms, written as the tables of
//!    [`trm_nostd::fixed::tables`].

use anyhow::{Context as _, anyhow, bail};
use trm_nostd::fixed::kernels::{self, NORM_ONE, Requant};
use trm_nostd::fixed::prepare;
use trm_nostd::fixed::tables::{self, push_i16s, push_words};
use trm_nostd::float::{Observer, Site, Sublayer};
use trm_nostd::format::{FIXED_I8_I16, FIXED_I16_I16, ModelWriter, SourceRecord};
use trm_nostd::{
    Config, DType, Engine, FloatEngine, LayerTensor, PosEncoding, TensorId, TensorSource,
};

/// Largest `|value|` seen at each activation site of one block.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockSites {
    /// Token mixer SwiGLU (mlp_t): gate, up, `silu(gate) * up`.
    pub mix_gate: f32,
    /// mlp_t up.
    pub mix_up: f32,
    /// mlp_t product.
    pub mix_prod: f32,
    /// Attention queries (before and after RoPE).
    pub q: f32,
    /// Attention keys (before and after RoPE).
    pub k: f32,
    /// Attention values.
    pub v: f32,
    /// Attention scores `q . k / sqrt(hd)` (reported; the integer softmax needs no scale).
    pub scores: f32,
    /// Channel SwiGLU gate.
    pub gate: f32,
    /// Channel SwiGLU up.
    pub up: f32,
    /// Channel SwiGLU product.
    pub prod: f32,
    /// The block output (bounded by `sqrt(D)`; reported).
    pub out: f32,
    /// The sequence mixer's pre-norm residual `h + mixer(h)` (checked against
    /// [`RESIDUAL_MAX`](trm_nostd::fixed::kernels::RESIDUAL_MAX) at the block input's scale).
    pub mix_residual: f32,
    /// The channel SwiGLU's pre-norm residual `h + swiglu(h)`.
    pub residual: f32,
}

/// Largest `|value|` per activation site over a calibration run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    /// Input embedding x.
    pub x: f32,
    /// Network input `z + y + x` and `y + z`.
    pub input: f32,
    /// y and z.
    pub states: f32,
    /// Per block.
    pub blocks: Vec<BlockSites>,
    /// Logits.
    pub logits: f32,
    /// Halting logits (q_halt, q_continue) before the bias.
    pub q: f32,
    /// Puzzles run.
    pub puzzles: usize,
    /// ACT steps run per puzzle.
    pub steps: u32,
}

fn amax(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn layer_ids(c: &Config, i: usize) -> [TensorId; 4] {
    let id = |tensor| TensorId::Layer {
        layer: i as u8,
        tensor,
    };
    let (a, b) = if c.mlp_t {
        (LayerTensor::MlpTGateUp, LayerTensor::MlpTDown)
    } else {
        (LayerTensor::QkvProj, LayerTensor::OProj)
    };
    [
        id(a),
        id(b),
        id(LayerTensor::MlpGateUp),
        id(LayerTensor::MlpDown),
    ]
}

/// Records the largest `|value|` per [`Site`] of the float engine's steps.
struct Recorder {
    cal: Calibration,
    /// Index of the last block (its output is the network's output: a state).
    last: u8,
}

/// `*m = max(*m, v)`.
fn raise(m: &mut f32, v: f32) {
    *m = m.max(v);
}

impl Observer for Recorder {
    fn observe(&mut self, site: Site, values: &[f32]) {
        let m = amax(values);
        let cal = &mut self.cal;
        match site {
            Site::NetInput => raise(&mut cal.input, m),
            Site::QHead => raise(&mut cal.q, m),
            _ => {
                if site == (Site::BlockOutput { layer: self.last }) {
                    raise(&mut cal.states, m);
                }
                let block = site.layer().and_then(|l| cal.blocks.get_mut(l as usize));
                if let Some(slot) = block.and_then(|b| block_slot(b, site)) {
                    raise(slot, m);
                }
            }
        }
    }
}

/// The statistic of block `b` that `site` (one of that block's sites) feeds.
fn block_slot(b: &mut BlockSites, site: Site) -> Option<&mut f32> {
    use Sublayer::{Mixer, Mlp};
    Some(match site {
        Site::Gate { sub: Mixer, .. } => &mut b.mix_gate,
        Site::Up { sub: Mixer, .. } => &mut b.mix_up,
        Site::Product { sub: Mixer, .. } => &mut b.mix_prod,
        Site::Residual { sub: Mixer, .. } => &mut b.mix_residual,
        Site::Gate { sub: Mlp, .. } => &mut b.gate,
        Site::Up { sub: Mlp, .. } => &mut b.up,
        Site::Product { sub: Mlp, .. } => &mut b.prod,
        Site::Residual { sub: Mlp, .. } => &mut b.residual,
        // As projected and, with RoPE, as rotated.
        Site::Query { .. } => &mut b.q,
        Site::Key { .. } => &mut b.k,
        Site::Value { .. } => &mut b.v,
        Site::Scores { .. } => &mut b.scores,
        Site::BlockOutput { .. } => &mut b.out,
        Site::NetInput | Site::QHead => return None,
    })
}

/// Runs the float engine on `puzzles` (tokens, puzzle id) for `steps` ACT steps each (all
/// steps, no halting) with an observer that records the largest `|value|` per site; x, the
/// start states and the logits are read from the engine.
pub fn calibrate<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    puzzles: &[(Vec<u8>, u32)],
    steps: u32,
) -> anyhow::Result<Calibration> {
    c.validate()?;
    let mut scratch = vec![0f32; FloatEngine::scratch_len_fast(c).f32s];
    let mut engine = FloatEngine::new(c, src, &mut scratch)
        .map_err(|e| anyhow!("the float engine refuses the model: {e}"))?;
    let mut rec = Recorder {
        cal: Calibration {
            blocks: vec![BlockSites::default(); c.l_layers as usize],
            steps,
            ..Calibration::default()
        },
        last: (c.l_layers - 1) as u8,
    };
    let mut logits = vec![0f32; c.seq_len as usize * c.vocab_size as usize];
    for (tokens, pid) in puzzles {
        engine
            .start(tokens, *pid)
            .map_err(|e| anyhow!("calibration puzzle does not fit the config: {e}"))?;
        let cal = &mut rec.cal;
        raise(&mut cal.x, amax(engine.x()));
        raise(&mut cal.states, amax(engine.y()).max(amax(engine.z())));
        for _ in 0..steps {
            engine.step_observed(&mut rec);
            engine.logits(&mut logits)?;
            raise(&mut rec.cal.logits, amax(&logits));
        }
        rec.cal.puzzles += 1;
    }
    Ok(rec.cal)
}

/// Which weight matrices are stored as int16 instead of int8 (per output channel either way).
///
/// int16 weights cost twice the flash of int8 ones and run through the int16 x int16 kernel;
/// they make the weight rounding 256 times finer, which is what decides the answers of models
/// whose logits are close (see docs/EXPORT.md, "int16 weights").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Int16Weights {
    /// The sequence mixer of every block: mlp_t's token-mixing SwiGLU (gate_up, down), or
    /// attention's qkv and o projections.
    pub mixer: bool,
    /// The channel SwiGLU (gate_up, down) of every block.
    pub mlp: bool,
    /// The output heads, lm_head and q_head.
    pub heads: bool,
}

impl Int16Weights {
    /// Every matrix int8.
    pub const NONE: Int16Weights = Int16Weights {
        mixer: false,
        mlp: false,
        heads: false,
    };
    /// Every matrix int16.
    pub const ALL: Int16Weights = Int16Weights {
        mixer: true,
        mlp: true,
        heads: true,
    };

    /// Whether any matrix is int16.
    pub fn any(&self) -> bool {
        self.mixer || self.mlp || self.heads
    }

    /// The option's text form: `none`, `all`, or a comma list of `mixer`, `mlp`, `heads`.
    pub fn name(&self) -> String {
        if *self == Self::NONE {
            return "none".into();
        }
        if *self == Self::ALL {
            return "all".into();
        }
        let parts: Vec<&str> = [
            (self.mixer, "mixer"),
            (self.mlp, "mlp"),
            (self.heads, "heads"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        parts.join(",")
    }
}

impl std::str::FromStr for Int16Weights {
    type Err = String;

    /// `none`, `all`, or a comma list of `mixer`, `mlp`, `heads`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut w = Int16Weights::NONE;
        for part in s.split(',').map(str::trim) {
            match part {
                "none" => {}
                "all" => w = Int16Weights::ALL,
                "mixer" => w.mixer = true,
                "mlp" => w.mlp = true,
                "heads" => w.heads = true,
                other => {
                    return Err(format!(
                        "unknown weight group '{other}' (expected none, all, or a comma list of \
                         mixer, mlp, heads)"
                    ));
                }
            }
        }
        Ok(w)
    }
}

pub use trm_nostd::fixed::prepare::DEFAULT_SILU_KNOTS;

/// Quantization settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantizeOptions {
    /// Headroom over the calibrated maximum of each calibrated site (1.25: a value up to 25%
    /// beyond the largest seen is still represented; beyond it saturates).
    pub margin: f64,
    /// The weight matrices stored as int16 (default none: every matrix int8).
    pub int16: Int16Weights,
    /// Entries of each SiLU table: `2^b + 1` for `b` in 8..=12 (257 ... 4097). More knots
    /// cost `2 * knots` bytes of flash per SwiGLU and make the interpolation error
    /// (`h^2 s / 16` LSB at knot spacing `h`) smaller; see [`trm_nostd::fixed::kernels::silu`].
    pub silu_knots: usize,
    /// Keep the SwiGLU products `silu(gate) * up` exact into the `down` projection instead of
    /// rounding them to int16 ([`tables::TAG_EXACT_PRODUCTS`]): the largest activation error
    /// of the integer path gone, for a `down` projection that runs twice (over the two int16
    /// halves of each product).
    pub exact_products: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            margin: 1.25,
            int16: Int16Weights::NONE,
            silu_knots: DEFAULT_SILU_KNOTS,
            exact_products: false,
        }
    }
}

fn floats<'a, S: TensorSource<'a> + ?Sized>(
    src: &S,
    c: &Config,
    id: TensorId,
) -> anyhow::Result<Vec<f32>> {
    let v = src
        .tensor(id)
        .with_context(|| format!("missing tensor {id}"))?;
    let n = id.shape(c).numel();
    (0..n)
        .map(|i| {
            v.get_f32(i)
                .with_context(|| format!("tensor {id}: not float"))
        })
        .collect()
}

fn requant(m: f64, what: &str) -> anyhow::Result<Requant> {
    prepare::requant(m).with_context(|| format!("{what}: multiplier {m} out of range"))
}

fn q16(v: f64) -> i16 {
    prepare::round_half_up(v).clamp(-32768.0, 32767.0) as i16
}

fn i16_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An int8 (int16 when `wide`) matrix and its channel block: row `o` requantized by
/// `in_scale * s_w[o] / out(o)`.
fn quant_matrix(
    w: &[f32],
    cols: usize,
    in_scale: f64,
    out_scale: impl Fn(usize) -> f64,
    wide: bool,
    what: &str,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let rows = w.len() / cols.max(1);
    let mut data = Vec::with_capacity(if wide { 2 } else { 1 } * w.len());
    let mut table = Vec::new();
    push_words(&mut table, &[rows as i32]);
    for (o, row) in w.chunks_exact(cols).enumerate() {
        let s_w = if wide {
            prepare::quantize_row_i16(row, &mut data)
        } else {
            prepare::quantize_row_i8(row, &mut data)
        };
        let r = requant(in_scale * s_w / out_scale(o), what)?;
        push_words(&mut table, &[r.mult, r.shift as i32]);
    }
    Ok((data, table))
}

fn site(margin: f64, max: f32, what: &str) -> anyhow::Result<f64> {
    if !max.is_finite() {
        bail!("calibration of {what} is not finite");
    }
    Ok(margin * (max as f64).max(1e-6) / 32767.0)
}

/// Quantizes a float model into a `Fixed` `.trm` file (see the module documentation).
pub fn quantize<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    cal: &Calibration,
    opts: &QuantizeOptions,
) -> anyhow::Result<Vec<u8>> {
    Ok(quantize_with_warnings(c, src, cal, opts)?.0)
}

/// [`quantize`], also returning warnings: the calibrated pre-norm residuals (with the margin)
/// that exceed [`RESIDUAL_MAX`](trm_nostd::fixed::kernels::RESIDUAL_MAX) units of their block
/// input's scale, where the integer engine would saturate.
pub fn quantize_with_warnings<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    cal: &Calibration,
    opts: &QuantizeOptions,
) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    quantize_with_source(c, src, cal, opts, None)
}

/// [`quantize_with_warnings`], recording `source` (the checkpoint the float weights came from)
/// in the written file.
pub fn quantize_with_source<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    cal: &Calibration,
    opts: &QuantizeOptions,
    source: Option<&SourceRecord<'_>>,
) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut check_residual = |what: String, max: f32, scale: f64| {
        let units = opts.margin * max as f64 / scale;
        let limit = kernels::RESIDUAL_MAX as f64;
        if units > limit {
            warnings.push(format!(
                "{what}: pre-norm residuals reach {:.2}x the integer range ({units:.3e} of \
                 {limit:.3e} units, margin included); larger values saturate",
                units / limit
            ));
        }
    };
    c.validate()?;
    let margin = opts.margin;
    let Some(silu_bits) = kernels::silu_knot_bits(opts.silu_knots) else {
        bail!(
            "SiLU tables of {} knots are not supported (257, 513, 1025, 2049 or 4097)",
            opts.silu_knots
        );
    };
    let (l, d) = (c.seq_total(), c.d());
    let norm_scale = |n: usize| (n as f64).sqrt() / NORM_ONE as f64;
    let s_state = norm_scale(d);
    let eps = c.rms_norm_eps as f64;
    let wide = opts.int16;
    let wdt = |on: bool| if on { DType::I16 } else { DType::I8 };
    let scheme = if wide.any() {
        FIXED_I16_I16
    } else {
        FIXED_I8_I16
    };
    let mut w = ModelWriter::new(*c, scheme)?;

    // x: the float engine's x = k * (c * (emb + pos)) with k = sqrt(D) (in f32).
    let k = (d as f64).sqrt() as f32 as f64;
    let learned = c.pos_encodings == PosEncoding::Learned;
    let cpos = if learned {
        trm_nostd::float::LEARNED_POS_SCALE as f64
    } else {
        1.0
    };
    let emb = floats(src, c, TensorId::EmbedTokens)?;
    let pz = if c.puzzle_emb_ndim > 0 {
        floats(src, c, TensorId::PuzzleEmb)?
    } else {
        Vec::new()
    };
    let pos = if learned {
        floats(src, c, TensorId::EmbedPos)?
    } else {
        Vec::new()
    };
    let max_e = amax(&emb).max(amax(&pz)) as f64;
    let x_bound = k * cpos * (max_e + amax(&pos) as f64);
    let s_x = x_bound.max(1e-6) / 32767.0;
    let to_x =
        |v: &[f32]| -> Vec<i16> { v.iter().map(|&e| q16(k * cpos * e as f64 / s_x)).collect() };

    // Network input: calibrated, capped by its bound 2 sqrt(D) + max |x|.
    let in_bound = 2.0 * (d as f64).sqrt() + x_bound;
    let s_in = site(margin, cal.input, "network input")?.min(in_bound / 32767.0);
    let rq_z = prepare::requant2(s_state / s_in, s_x / s_in).context("input requant")?;
    let rq_y = requant(s_state / s_in, "input requant")?;
    let rope_half = if !c.mlp_t && c.pos_encodings == PosEncoding::Rope {
        l * c.head_dim() / 2
    } else {
        0
    };
    let mut global = Vec::new();
    push_words(
        &mut global,
        &[
            if opts.exact_products {
                tables::TAG_EXACT_PRODUCTS
            } else {
                tables::TAG
            },
            rq_z.ma,
            rq_z.mb,
            rq_z.shift as i32,
            rq_y.mult,
            rq_y.shift as i32,
            (s_x as f32).to_bits() as i32,
            (s_state as f32).to_bits() as i32,
            (s_in as f32).to_bits() as i32,
            rope_half as i32,
        ],
    );
    if rope_half > 0 {
        let (cos, sin) = prepare::rope_tables_q15(l, c.head_dim(), c.rope_theta as f64);
        push_i16s(&mut global, &cos);
        push_i16s(&mut global, &sin);
    }
    w.add_raw(
        TensorId::EmbedTokens,
        DType::I16,
        i16_bytes(&to_x(&emb)),
        global,
    )?;
    if learned {
        w.add_raw(
            TensorId::EmbedPos,
            DType::I16,
            i16_bytes(&to_x(&pos)),
            Vec::new(),
        )?;
    }
    if c.puzzle_emb_ndim > 0 {
        w.add_raw(
            TensorId::PuzzleEmb,
            DType::I16,
            i16_bytes(&to_x(&pz)),
            Vec::new(),
        )?;
    }
    for id in [TensorId::HInit, TensorId::LInit] {
        let v = floats(src, c, id)?;
        if amax(&v) as f64 > (d as f64).sqrt() {
            bail!("{id} exceeds the state range sqrt(D)");
        }
        let q: Vec<i16> = v.iter().map(|&x| q16(x as f64 / s_state)).collect();
        w.add_raw(id, DType::I16, i16_bytes(&q), Vec::new())?;
    }

    // Heads.
    let s_logit = margin * (cal.logits as f64).max(1e-6) / (1 << 24) as f64;
    let (data, mut t) = quant_matrix(
        &floats(src, c, TensorId::LmHead)?,
        d,
        s_state,
        |_| s_logit,
        wide.heads,
        "lm_head",
    )?;
    push_words(&mut t, &[(s_logit as f32).to_bits() as i32]);
    w.add_raw(TensorId::LmHead, wdt(wide.heads), data, t)?;
    let bias = floats(src, c, TensorId::QHeadBias)?;
    let s_q = margin * (cal.q as f64).max(amax(&bias) as f64).max(1e-6) / (1 << 24) as f64;
    let (data, mut t) = quant_matrix(
        &floats(src, c, TensorId::QHeadWeight)?,
        d,
        s_state,
        |_| s_q,
        wide.heads,
        "q_head",
    )?;
    push_words(&mut t, &[(s_q as f32).to_bits() as i32]);
    w.add_raw(TensorId::QHeadWeight, wdt(wide.heads), data, t)?;
    let qb: Vec<u8> = bias
        .iter()
        .flat_map(|&b| (prepare::round_half_up(b as f64 / s_q) as i32).to_le_bytes())
        .collect();
    w.add_raw(TensorId::QHeadBias, DType::I32, qb, Vec::new())?;

    // Blocks.
    for (i, b) in cal.blocks.iter().enumerate().take(c.l_layers as usize) {
        let [a_id, b_id, g_id, d_id] = layer_ids(c, i);
        let s_h = if i == 0 { s_in } else { s_state };
        let s_mid = if c.mlp_t {
            // Token mixer over the sequence axis.
            let (sg, su, sp) = (
                site(margin, b.mix_gate, "mlp_t gate")?,
                site(margin, b.mix_up, "mlp_t up")?,
                site(margin, b.mix_prod, "mlp_t product")?,
            );
            add_swiglu(
                &mut w,
                c,
                src,
                [a_id, b_id],
                l,
                s_h,
                (sg, su, sp, silu_bits),
                eps,
                wide.mixer,
            )?;
            norm_scale(l)
        } else {
            let (sq, sk, sv) = (
                site(margin, b.q, "q")?,
                site(margin, b.k, "k")?,
                site(margin, b.v, "v")?,
            );
            let qkv = floats(src, c, a_id)?;
            let (data, mut t) = quant_matrix(
                &qkv,
                d,
                s_h,
                |o| [sq, sk, sv][(o / d).min(2)],
                wide.mixer,
                "qkv_proj",
            )?;
            let score = sq * sk / (c.head_dim() as f64).sqrt()
                * std::f64::consts::LOG2_E
                * (1u64 << trm_nostd::fixed::kernels::EXP_FRAC_BITS) as f64;
            let r = requant(score, "attention scores")?;
            push_words(&mut t, &[r.mult, r.shift as i32]);
            w.add_raw(a_id, wdt(wide.mixer), data, t)?;
            let (data, mut t) =
                quant_matrix(&floats(src, c, b_id)?, d, sv, |_| s_h, wide.mixer, "o_proj")?;
            let e = prepare::eps_term(d, eps, s_h);
            push_words(&mut t, &[e as u32 as i32, (e >> 32) as u32 as i32]);
            w.add_raw(b_id, wdt(wide.mixer), data, t)?;
            norm_scale(d)
        };
        let mixer = if c.mlp_t { "token mixer" } else { "attention" };
        check_residual(format!("block {i} {mixer}"), b.mix_residual, s_h);
        check_residual(format!("block {i} SwiGLU"), b.residual, s_mid);
        let (sg, su, sp) = (
            site(margin, b.gate, "gate")?,
            site(margin, b.up, "up")?,
            site(margin, b.prod, "product")?,
        );
        add_swiglu(
            &mut w,
            c,
            src,
            [g_id, d_id],
            d,
            s_mid,
            (sg, su, sp, silu_bits),
            eps,
            wide.mlp,
        )?;
    }
    if let Some(r) = source {
        w.set_source(r)?;
    }
    Ok((w.finish()?, warnings))
}

/// A SwiGLU over rows of `n` values at scale `s_h`, residual at `s_h`.
#[allow(clippy::too_many_arguments)]
fn add_swiglu<'a, S: TensorSource<'a> + ?Sized>(
    w: &mut ModelWriter<'_>,
    c: &Config,
    src: &S,
    [gate_up, down]: [TensorId; 2],
    n: usize,
    s_h: f64,
    (sg, su, sp, silu_bits): (f64, f64, f64, u32),
    eps: f64,
    wide: bool,
) -> anyhow::Result<()> {
    let dtype = if wide { DType::I16 } else { DType::I8 };
    let gu = floats(src, c, gate_up)?;
    let inter = gu.len() / n / 2;
    let (data, mut t) = quant_matrix(
        &gu,
        n,
        s_h,
        |o| if o < inter { sg } else { su },
        wide,
        "gate_up",
    )?;
    let r = requant(sg * su / sp, "swiglu product")?;
    push_words(&mut t, &[r.mult, r.shift as i32]);
    push_i16s(&mut t, &prepare::silu_table_knots(sg, sg, silu_bits));
    w.add_raw(gate_up, dtype, data, t)?;
    let (data, mut t) = quant_matrix(&floats(src, c, down)?, inter, sp, |_| s_h, wide, "down")?;
    let e = prepare::eps_term(n, eps, s_h);
    push_words(&mut t, &[e as u32 as i32, (e >> 32) as u32 as i32]);
    w.add_raw(down, dtype, data, t)?;
    Ok(())
}
