//! Quantization at export: a float model (any [`TensorSource`]) becomes a `Fixed` `.trm` file
//! (format version 2) for [`trm_nostd::fixed::FixedEngine`].
//!
//! 1. Calibration ([`calibrate`]): the float network runs on a sample of puzzles, recording the
//!    largest `|value|` at every activation site (x, the network input `z + y + x` / `y + z`,
//!    y and z, SwiGLU gate / up / product of every block and mixer, attention q, k (before and
//!    after RoPE), v and scores, logits, halting logits). The instrumented forward pass uses the
//!    float engine's own kernels in the float engine's order; the test
//!    `quantize::calibration_replays_the_float_engine` checks that its states equal
//!    [`FloatEngine`](trm_nostd::FloatEngine)'s bit for bit, so the recorded values are the float engine's.
//! 2. Scales: block outputs and the states y, z use the post-norm bound `|v| <= sqrt(n)`
//!    (scale `sqrt(n) / 32767`, no calibration and no saturation); x uses the exact bound of
//!    its embedding tables; the other sites `margin * max / 32767` (int16) or `margin * max /
//!    2^24` (the i32 logits).
//! 3. Prepare ([`quantize`]): int8 symmetric per-output-channel weights (int16 for the
//!    matrices [`Int16Weights`] names: the scheme is then
//!    [`FIXED_I16_I16`](trm_nostd::format::FIXED_I16_I16)), every real multiplier
//!    folded into [`Requant`] mantissas and shifts, SiLU
//!    and Q15 RoPE tables, RMSNorm eps terms, written as the tables of
//!    [`trm_nostd::fixed::tables`].

use anyhow::{Context as _, bail};
use trm_nostd::fixed::kernels::{self, NORM_ONE, Requant};
use trm_nostd::fixed::prepare;
use trm_nostd::fixed::tables::{self, push_i16s, push_words};
use trm_nostd::float::MatRef;
use trm_nostd::float::kernels as fk;
use trm_nostd::float::recursion::{self, Recurrence};
use trm_nostd::format::{FIXED_I8_I16, FIXED_I16_I16, ModelWriter};
use trm_nostd::{Config, DType, LayerTensor, PosEncoding, TensorId, TensorSource};

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
    /// Halting logits (q_halt, q_continue).
    pub q: f32,
    /// Puzzles run.
    pub puzzles: usize,
    /// ACT steps run per puzzle.
    pub steps: u32,
}

fn amax(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn mat<'a, S: TensorSource<'a> + ?Sized>(
    src: &S,
    c: &Config,
    id: TensorId,
) -> anyhow::Result<MatRef<'a>> {
    if !id.present(c) {
        return Ok(MatRef::empty());
    }
    let v = src
        .tensor(id)
        .with_context(|| format!("missing tensor {id}"))?;
    MatRef::new(&v).with_context(|| format!("tensor {id}: not a float tensor of its shape"))
}

struct LayerF<'a> {
    mix_a: MatRef<'a>,
    mix_b: MatRef<'a>,
    gate_up: MatRef<'a>,
    down: MatRef<'a>,
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

/// The float network with recording hooks, driven by the shared [`Recurrence`] schedule.
struct Calibrator<'a> {
    c: Config,
    layers: Vec<LayerF<'a>>,
    x: Vec<f32>,
    y: Vec<f32>,
    z: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    cal: Calibration,
}

impl Calibrator<'_> {
    fn swiglu(
        gate_up: &MatRef<'_>,
        down: &MatRef<'_>,
        h: &mut [f32],
        rows: usize,
        eps: f32,
    ) -> [f32; 4] {
        let n = down.rows();
        let inter = down.cols();
        let mut wrow = vec![0f32; n.max(inter)];
        let mut gu = vec![0f32; rows * 2 * inter];
        fk::linear(gate_up, &mut wrow, h, n, rows, &mut gu, 2 * inter);
        let mut m = [0f32; 4];
        for row in gu.chunks_exact_mut(2 * inter) {
            let (g, u) = row.split_at_mut(inter);
            m[0] = m[0].max(amax(g));
            m[1] = m[1].max(amax(u));
            for (g, u) in g.iter_mut().zip(u.iter()) {
                *g = fk::silu(*g) * *u;
            }
            m[2] = m[2].max(amax(&row[..inter]));
        }
        let mut out = vec![0f32; rows * n];
        fk::linear(down, &mut wrow, &gu, 2 * inter, rows, &mut out, n);
        for (hr, o) in h.chunks_exact_mut(n).zip(out.chunks_exact(n)) {
            m[3] = m[3].max(residual_max(hr, o));
            fk::add_rms_norm(hr, o, eps);
        }
        m
    }

    fn net(&mut self, which: bool) {
        let c = self.c;
        let (l, d) = (c.seq_total(), c.d());
        let eps = c.rms_norm_eps;
        let mut h = if which {
            std::mem::take(&mut self.z)
        } else {
            std::mem::take(&mut self.y)
        };
        for (i, lw) in self.layers.iter().enumerate() {
            let b = &mut self.cal.blocks[i];
            if c.mlp_t {
                let mut ht = vec![0f32; l * d];
                fk::transpose(&h, l, d, &mut ht);
                let m = Self::swiglu(&lw.mix_a, &lw.mix_b, &mut ht, d, eps);
                b.mix_gate = b.mix_gate.max(m[0]);
                b.mix_up = b.mix_up.max(m[1]);
                b.mix_prod = b.mix_prod.max(m[2]);
                b.mix_residual = b.mix_residual.max(m[3]);
                fk::transpose(&ht, d, l, &mut h);
            } else {
                let heads = c.num_heads as usize;
                let hd = c.head_dim();
                let mut wrow = vec![0f32; d];
                let mut qkv = vec![0f32; 3 * l * d];
                fk::linear(&lw.mix_a, &mut wrow, &h, d, l, &mut qkv, 3 * d);
                for row in qkv.chunks_exact(3 * d) {
                    b.q = b.q.max(amax(&row[..d]));
                    b.k = b.k.max(amax(&row[d..2 * d]));
                    b.v = b.v.max(amax(&row[2 * d..]));
                }
                if !self.cos.is_empty() {
                    for (r, row) in qkv.chunks_exact_mut(3 * d).enumerate() {
                        let cos = &self.cos[r * hd..(r + 1) * hd];
                        let sin = &self.sin[r * hd..(r + 1) * hd];
                        for head in row[..2 * d].chunks_exact_mut(hd) {
                            fk::apply_rope(head, cos, sin);
                        }
                        b.q = b.q.max(amax(&row[..d]));
                        b.k = b.k.max(amax(&row[d..2 * d]));
                    }
                }
                let scale = 1.0 / libm_sqrt(hd as f32);
                for i in 0..l {
                    for hh in 0..heads {
                        let q = &qkv[i * 3 * d + hh * hd..][..hd];
                        for j in 0..l {
                            let k = &qkv[j * 3 * d + d + hh * hd..][..hd];
                            b.scores = b.scores.max((fk::dot(q, k) * scale).abs());
                        }
                    }
                }
                let mut scores = vec![0f32; l];
                fk::attention(&mut qkv, l, heads, hd, &mut scores);
                let mut out = vec![0f32; l * d];
                fk::linear(&lw.mix_b, &mut wrow, &qkv, 3 * d, l, &mut out, d);
                for (hr, o) in h.chunks_exact_mut(d).zip(out.chunks_exact(d)) {
                    b.mix_residual = b.mix_residual.max(residual_max(hr, o));
                    fk::add_rms_norm(hr, o, eps);
                }
            }
            let m = Self::swiglu(&lw.gate_up, &lw.down, &mut h, l, eps);
            b.gate = b.gate.max(m[0]);
            b.up = b.up.max(m[1]);
            b.prod = b.prod.max(m[2]);
            b.residual = b.residual.max(m[3]);
            b.out = b.out.max(amax(&h));
        }
        self.cal.states = self.cal.states.max(amax(&h));
        if which {
            self.z = h;
        } else {
            self.y = h;
        }
    }
}

/// `sqrtf` (IEEE square root is correctly rounded: equal to `libm::sqrtf`).
fn libm_sqrt(v: f32) -> f32 {
    v.sqrt()
}

impl Recurrence for Calibrator<'_> {
    fn update_z(&mut self) {
        for ((z, y), x) in self.z.iter_mut().zip(&self.y).zip(&self.x) {
            *z += *y + *x;
        }
        self.cal.input = self.cal.input.max(amax(&self.z));
        self.net(true);
    }

    fn update_y(&mut self) {
        for (y, z) in self.y.iter_mut().zip(&self.z) {
            *y += *z;
        }
        self.cal.input = self.cal.input.max(amax(&self.y));
        self.net(false);
    }
}

/// One calibration run's states after each ACT step, for the replay test.
pub type StepStates = Vec<(Vec<f32>, Vec<f32>)>;

/// Runs the float network on `puzzles` (tokens, puzzle id) for `steps` ACT steps each (all
/// steps, no halting) and records the largest `|value|` per site. Also returns the (y, z) of
/// every step of the first puzzle, which the tests compare with the float engine.
pub fn calibrate_with_states<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    puzzles: &[(Vec<u8>, u32)],
    steps: u32,
) -> anyhow::Result<(Calibration, StepStates)> {
    c.validate()?;
    let layers = (0..c.l_layers as usize)
        .map(|i| {
            let [a, b, g, d] = layer_ids(c, i);
            Ok(LayerF {
                mix_a: mat(src, c, a)?,
                mix_b: mat(src, c, b)?,
                gate_up: mat(src, c, g)?,
                down: mat(src, c, d)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lm = mat(src, c, TensorId::LmHead)?;
    let qw = mat(src, c, TensorId::QHeadWeight)?;
    let (l, d) = (c.seq_total(), c.d());
    let emb = mat(src, c, TensorId::EmbedTokens)?;
    let pos = mat(src, c, TensorId::EmbedPos)?;
    let pz = mat(src, c, TensorId::PuzzleEmb)?;
    let h_init = mat(src, c, TensorId::HInit)?;
    let l_init = mat(src, c, TensorId::LInit)?;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    if !c.mlp_t && c.pos_encodings == PosEncoding::Rope {
        cos = vec![0f32; l * c.head_dim()];
        sin = vec![0f32; l * c.head_dim()];
        fk::rope_tables(c.head_dim(), c.rope_theta, &mut cos, &mut sin);
    }
    let mut cal = Calibrator {
        c: *c,
        layers,
        x: Vec::new(),
        y: Vec::new(),
        z: Vec::new(),
        cos,
        sin,
        cal: Calibration {
            blocks: vec![BlockSites::default(); c.l_layers as usize],
            steps,
            ..Calibration::default()
        },
    };
    let mut states = Vec::new();
    for (pi, (tokens, pid)) in puzzles.iter().enumerate() {
        cal.x = float_x(c, &emb, &pos, &pz, tokens, *pid)?;
        cal.y = vec![0f32; l * d];
        cal.z = vec![0f32; l * d];
        for (y, z) in cal.y.chunks_exact_mut(d).zip(cal.z.chunks_exact_mut(d)) {
            h_init.row_into(0, y);
            l_init.row_into(0, z);
        }
        cal.cal.x = cal.cal.x.max(amax(&cal.x));
        cal.cal.states = cal.cal.states.max(amax(&cal.y)).max(amax(&cal.z));
        for _ in 0..steps {
            recursion::act_step_cycles(&mut cal, c.h_cycles, c.l_cycles);
            for t in 0..l {
                let y = &cal.y[t * d..(t + 1) * d];
                if t >= c.puzzle_emb_len as usize {
                    for k in 0..c.vocab_size as usize {
                        cal.cal.logits = cal.cal.logits.max(lm.dot_row(k, y).abs());
                    }
                }
            }
            let y0 = &cal.y[..d];
            for k in 0..2 {
                cal.cal.q = cal.cal.q.max(qw.dot_row(k, y0).abs());
            }
            if pi == 0 {
                states.push((cal.y.clone(), cal.z.clone()));
            }
        }
        cal.cal.puzzles += 1;
    }
    Ok((cal.cal, states))
}

/// The float engine's input embedding, in its arithmetic (`FloatEngine::start`): prefix and
/// token rows, `LEARNED_POS_SCALE * (v + pos)` with learned positions, then `* sqrt(D)` (f32).
fn float_x(
    c: &Config,
    emb: &MatRef<'_>,
    pos: &MatRef<'_>,
    pz: &MatRef<'_>,
    tokens: &[u8],
    pid: u32,
) -> anyhow::Result<Vec<f32>> {
    let (l, d) = (c.seq_total(), c.d());
    if tokens.len() != c.seq_len as usize
        || tokens.iter().any(|&t| t as u32 >= c.vocab_size)
        || pid >= c.num_puzzle_identifiers
    {
        bail!("calibration puzzle does not fit the config");
    }
    let mut x = vec![0f32; l * d];
    let ndim = c.puzzle_emb_ndim as usize;
    if ndim > 0 {
        pz.row_into(pid as usize, &mut x[..ndim]);
    }
    let prefix = c.puzzle_emb_len as usize;
    for (t, &tok) in tokens.iter().enumerate() {
        emb.row_into(tok as usize, &mut x[(prefix + t) * d..(prefix + t + 1) * d]);
    }
    if c.pos_encodings == PosEncoding::Learned {
        let mut p = vec![0f32; d];
        for (r, row) in x.chunks_exact_mut(d).enumerate() {
            pos.row_into(r, &mut p);
            for (v, q) in row.iter_mut().zip(&p) {
                *v = trm_nostd::float::LEARNED_POS_SCALE * (*v + *q);
            }
        }
    }
    let scale = (d as f64).sqrt() as f32;
    for v in x.iter_mut() {
        *v *= scale;
    }
    Ok(x)
}

/// [`calibrate_with_states`] without the states.
pub fn calibrate<'a, S: TensorSource<'a> + ?Sized>(
    c: &Config,
    src: &S,
    puzzles: &[(Vec<u8>, u32)],
    steps: u32,
) -> anyhow::Result<Calibration> {
    Ok(calibrate_with_states(c, src, puzzles, steps)?.0)
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

/// `max |h + o|` of a row and its block output (before the norm).
fn residual_max(h: &[f32], o: &[f32]) -> f32 {
    h.iter().zip(o).fold(0f32, |m, (a, b)| m.max((a + b).abs()))
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
