//! The TRM model: input embedding, the one shared network, the recursion of one ACT step.
//!
//! Shapes: B batch, S = `seq_len` puzzle tokens, P = `puzzle_emb_len` prefix tokens,
//! L = S + P, D = `hidden_size`, V = `vocab_size`.

use super::ModelError;
use super::layers::{Attention, Rope, SwiGlu, casted_linear, rms_norm, trunc_normal_};
use super::quant::{
    ACT_LEVELS, ActQuant, ActSite, SwiGluOf, abs_max, fake_quant, fake_quant_act,
    fake_quant_act_within, range_slot,
};
use std::borrow::Cow;
use tch::TchError;
use tch::{Device, Kind, Tensor, nn};
use trm_nostd::{Config, LayerTensor, PosEncoding, TensorId};
use trm_reference::act_ranges::ActRanges;
use trm_reference::config::WeightQuant;

/// The reference's literal 1/sqrt(2) for learned positions, kept to its digits (libtorch
/// rounds the scalar to f32 for f32 and bf16 tensors, where it equals `FRAC_1_SQRT_2`).
#[allow(clippy::approx_constant)]
const LEARNED_POS_SCALE: f64 = 0.707106781;

/// The range of a sub-layer's output joining its residual, in units of the residual's scale
/// (the integer engine's `RESIDUAL_MAX`).
const RESIDUAL_LEVELS: f64 = trm_nostd::fixed::kernels::RESIDUAL_MAX as f64;

/// The token mixer of a block.
#[derive(Debug)]
enum Mixer {
    /// Self-attention over the L positions.
    Attention(Attention),
    /// A SwiGLU over the sequence axis (`mlp_t`).
    MlpT(SwiGlu),
}

/// One post-norm block: mixer, then channel MLP, each followed by a weightless RMSNorm.
#[derive(Debug)]
struct Block {
    mixer: Mixer,
    mlp: SwiGlu,
}

/// The recurrent state carried across ACT steps: y ("z_H") and z ("z_L"), each `[B, L, D]`.
#[derive(Debug)]
pub struct Carry {
    /// y, the answer state (`z_H`).
    pub z_h: Tensor,
    /// z, the latent reasoning state (`z_L`).
    pub z_l: Tensor,
}

/// What one ACT step produces.
#[derive(Debug)]
pub struct ActOutput {
    /// Token logits at the puzzle positions, `[B, S, V]`.
    pub logits: Tensor,
    /// Halting logit, f32 `[B]` (`q_head` row 0 at position 0).
    pub q_halt: Tensor,
    /// Continue logit, f32 `[B]` (`q_head` row 1).
    pub q_continue: Tensor,
}

/// The weight matrices of a forward pass: the variables, or their fake-quantized values.
struct Weights<'a> {
    blocks: Cow<'a, [Block]>,
    lm_head: Tensor,
    q_head_weight: Tensor,
}

impl Clone for Block {
    fn clone(&self) -> Self {
        let mixer = match &self.mixer {
            Mixer::Attention(a) => Mixer::Attention(Attention {
                qkv: a.qkv.shallow_clone(),
                o: a.o.shallow_clone(),
                num_heads: a.num_heads,
            }),
            Mixer::MlpT(m) => Mixer::MlpT(swiglu_clone(m)),
        };
        Block {
            mixer,
            mlp: swiglu_clone(&self.mlp),
        }
    }
}

fn swiglu_clone(m: &SwiGlu) -> SwiGlu {
    SwiGlu {
        gate_up: m.gate_up.shallow_clone(),
        down: m.down.shallow_clone(),
    }
}

/// A TRM model whose weights live in a [`nn::VarStore`] under reference names.
#[derive(Debug)]
pub struct Trm {
    config: Config,
    forward_kind: Kind,
    /// QAT: the grid the weight matrices are fake-quantized onto in the forward pass.
    weight_quant: Option<WeightQuant>,
    /// QAT: activation fake-quantization (or its calibration).
    act: Option<ActQuant>,
    embed_tokens: Tensor,
    embed_pos: Option<Tensor>,
    puzzle_emb: Option<Tensor>,
    h_init: Tensor,
    l_init: Tensor,
    lm_head: Tensor,
    q_head_weight: Tensor,
    q_head_bias: Tensor,
    blocks: Vec<Block>,
    rope: Option<Rope>,
}

/// The ranges behind `m`, also after a panic elsewhere poisoned the lock (they are plain
/// numbers, valid whatever was interrupted).
fn lock(m: &std::sync::Mutex<ActRanges>) -> std::sync::MutexGuard<'_, ActRanges> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Raises the maximum `slot` picks in the ranges behind `m` (none: nothing) to `max |t|`.
fn record(
    m: &std::sync::Mutex<ActRanges>,
    t: &Tensor,
    slot: impl FnOnce(&mut ActRanges) -> Option<&mut f32>,
) -> Result<(), TchError> {
    let v = abs_max(t)?;
    if let Some(s) = slot(&mut lock(m)) {
        *s = s.max(v);
    }
    Ok(())
}

/// Where a tensor id lives in the var store: every path component but the last, and the last.
fn split_name(id: TensorId) -> (Vec<String>, String) {
    let name = id.to_string();
    let mut parts: Vec<String> = name.split('.').map(str::to_owned).collect();
    let last = parts.pop().unwrap_or_default();
    (parts, last)
}

/// The reference's initialisation of a tensor (`models/recursive_reasoning/trm.py`):
/// truncated LeCun normal for linear weights, std 1/sqrt(D) for embeddings, 1 for the initial
/// states, zero for the puzzle embedding and the q_head weight, -5 for the q_head bias.
fn init_tensor(
    id: TensorId,
    c: &Config,
    dims: &[i64],
    device: Device,
) -> Result<Tensor, ModelError> {
    let mut t = Tensor::f_zeros(dims, (Kind::Float, device))?;
    let d = c.d() as f64;
    let fan_in = dims.last().copied().unwrap_or(1).max(1) as f64;
    let std = match id {
        TensorId::EmbedTokens | TensorId::EmbedPos => 1.0 / d.sqrt(),
        TensorId::PuzzleEmb | TensorId::QHeadWeight => 0.0,
        TensorId::HInit | TensorId::LInit => 1.0,
        TensorId::QHeadBias => {
            let _g = tch::no_grad_guard();
            let _ = t.f_fill_(-5.0)?;
            return Ok(t);
        }
        TensorId::LmHead | TensorId::Layer { .. } => 1.0 / fan_in.sqrt(),
    };
    trunc_normal_(&mut t, std)?;
    Ok(t)
}

impl Trm {
    /// Creates the model's variables under `root` (normally `vs.root()`), freshly initialised
    /// as the reference does. Buffers (H_init, L_init and the puzzle embedding, which has its
    /// own sign-SGD optimizer) are not trainable variables of the store.
    pub fn new(root: &nn::Path, config: &Config) -> Result<Self, ModelError> {
        config.validate()?;
        let device = root.device();
        let get = |id: TensorId| -> Result<Tensor, ModelError> {
            let shape = id.shape(config);
            let dims: Vec<i64> = if shape.rank == 1 {
                vec![shape.cols as i64]
            } else {
                vec![shape.rows as i64, shape.cols as i64]
            };
            let (path, last) = split_name(id);
            let mut p = root.clone();
            for part in &path {
                p = p.sub(part);
            }
            let t = init_tensor(id, config, &dims, device)?;
            let trainable = id.is_trained() && id != TensorId::PuzzleEmb;
            Ok(p.add(&last, t, trainable))
        };
        let embed_tokens = get(TensorId::EmbedTokens)?;
        let embed_pos = TensorId::EmbedPos
            .present(config)
            .then(|| get(TensorId::EmbedPos))
            .transpose()?;
        let puzzle_emb = TensorId::PuzzleEmb
            .present(config)
            .then(|| get(TensorId::PuzzleEmb))
            .transpose()?;
        let h_init = get(TensorId::HInit)?;
        let l_init = get(TensorId::LInit)?;
        let lm_head = get(TensorId::LmHead)?;
        let q_head_weight = get(TensorId::QHeadWeight)?;
        let q_head_bias = get(TensorId::QHeadBias)?;
        let mut blocks = Vec::with_capacity(config.l_layers as usize);
        for layer in 0..config.l_layers as u8 {
            let w = |tensor| get(TensorId::Layer { layer, tensor });
            let mixer = if config.mlp_t {
                Mixer::MlpT(SwiGlu {
                    gate_up: w(LayerTensor::MlpTGateUp)?,
                    down: w(LayerTensor::MlpTDown)?,
                })
            } else {
                Mixer::Attention(Attention {
                    qkv: w(LayerTensor::QkvProj)?,
                    o: w(LayerTensor::OProj)?,
                    num_heads: config.num_heads as i64,
                })
            };
            let mlp = SwiGlu {
                gate_up: w(LayerTensor::MlpGateUp)?,
                down: w(LayerTensor::MlpDown)?,
            };
            blocks.push(Block { mixer, mlp });
        }
        let rope = (!config.mlp_t && config.pos_encodings == PosEncoding::Rope)
            .then(|| {
                Rope::new(
                    config.head_dim() as i64,
                    config.seq_total() as i64,
                    config.rope_theta as f64,
                    device,
                )
            })
            .transpose()?;
        Ok(Trm {
            config: *config,
            forward_kind: Kind::Float,
            weight_quant: None,
            act: None,
            embed_tokens,
            embed_pos,
            puzzle_emb,
            h_init,
            l_init,
            lm_head,
            q_head_weight,
            q_head_bias,
            blocks,
            rope,
        })
    }

    /// The element type of activations (f32 by default; the reference's `forward_dtype`).
    /// Weights stay f32 and are cast per use, RMSNorm and RoPE compute in f32, the Q logits
    /// are returned in f32, as in the reference.
    pub fn set_forward_kind(&mut self, kind: Kind) -> Result<(), ModelError> {
        if !matches!(
            kind,
            Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
        ) {
            return Err(ModelError::BadInput(format!(
                "forward kind must be a float type, got {kind:?}"
            )));
        }
        self.forward_kind = kind;
        Ok(())
    }

    /// The element type of activations.
    pub fn forward_kind(&self) -> Kind {
        self.forward_kind
    }

    /// Quantization-aware training: with `Some(grid)` (int8 or int16), every forward pass
    /// uses the weight matrices of [`WeightQuant::matrices`] fake-quantized onto `grid` by the
    /// exporter's rule, gradients passing straight through (see [`super::quant`]); `None` or
    /// [`WeightQuant::None`]: the float weights.
    pub fn set_weight_quant(&mut self, grid: Option<WeightQuant>) {
        self.weight_quant = grid.filter(|g| *g != WeightQuant::None);
    }

    /// The grid the forward pass fake-quantizes the weight matrices onto, if any.
    pub fn weight_quant(&self) -> Option<WeightQuant> {
        self.weight_quant
    }

    /// Quantization-aware training of the activations (see [`super::quant`]):
    /// [`ActQuant::Record`] to calibrate their ranges, [`ActQuant::Apply`] to round them with
    /// frozen ranges, `None` for float activations.
    pub fn set_act_quant(&mut self, act: Option<ActQuant>) -> Result<(), ModelError> {
        let ranges = match &act {
            Some(ActQuant::Apply(r)) => Some(r.blocks.len()),
            Some(ActQuant::Record(m)) => Some(lock(m).blocks.len()),
            None => None,
        };
        if let Some(n) = ranges
            && n != self.blocks.len()
        {
            return Err(ModelError::BadInput(format!(
                "activation ranges of {n} blocks for a model of {}",
                self.blocks.len()
            )));
        }
        self.act = act;
        Ok(())
    }

    /// The activation fake-quantization in force, if any.
    pub fn act_quant(&self) -> Option<&ActQuant> {
        self.act.as_ref()
    }

    /// The activation ranges: the frozen ones, or those recorded so far.
    pub fn act_ranges(&self) -> Option<ActRanges> {
        match &self.act {
            Some(ActQuant::Apply(r)) => Some(r.clone()),
            Some(ActQuant::Record(m)) => Some(lock(m).clone()),
            None => None,
        }
    }

    /// The frozen ranges when activations are rounded.
    fn applied(&self) -> Option<&ActRanges> {
        match &self.act {
            Some(ActQuant::Apply(r)) => Some(r),
            _ => None,
        }
    }

    /// `t` rounded at `scale` when activations are rounded; as it is otherwise.
    fn round_at(&self, t: Tensor, scale: f64) -> Result<Tensor, TchError> {
        match self.applied() {
            Some(_) => fake_quant_act(&t, scale),
            None => Ok(t),
        }
    }

    /// A sub-layer's output rounded at `scale`, the scale of the residual it joins (an i32
    /// in the engine: no int16 clamp), when activations are rounded.
    fn round_residual(&self, t: Tensor, scale: f64) -> Result<Tensor, TchError> {
        match self.applied() {
            Some(_) => fake_quant_act_within(&t, scale, RESIDUAL_LEVELS),
            None => Ok(t),
        }
    }

    /// The scale of a normalized output over `n` values (`|v| <= sqrt(n)`): `sqrt(n) / 32767`.
    fn norm_scale(n: i64) -> f64 {
        (n as f64).sqrt() / ACT_LEVELS
    }

    /// The exporter's bound of x: `sqrt(D) * c * (max |embedding| + max |position|)`, with
    /// `c` the learned positions' 1/sqrt(2) (1 without).
    fn x_bound(&self) -> Result<f64, TchError> {
        let k = (self.config.d() as f64).sqrt() as f32 as f64;
        let mut max_e = abs_max(&self.embed_tokens)?;
        if let Some(p) = &self.puzzle_emb {
            max_e = max_e.max(abs_max(p)?);
        }
        let (cpos, max_pos) = match &self.embed_pos {
            Some(p) => (LEARNED_POS_SCALE as f32 as f64, abs_max(p)?),
            None => (1.0, 0.0),
        };
        Ok(k * cpos * (f64::from(max_e) + f64::from(max_pos)))
    }

    /// The network input `h + injection` through its activation site (`scale`: its int16
    /// scale, [`Trm::input_scale`]).
    fn net_input(&self, t: Tensor, scale: f64) -> Result<Tensor, TchError> {
        match &self.act {
            None => Ok(t),
            Some(ActQuant::Record(m)) => {
                record(m, &t, |r| Some(&mut r.input))?;
                Ok(t)
            }
            Some(ActQuant::Apply(_)) => fake_quant_act(&t, scale),
        }
    }

    /// The scale of the network input (what block 0's mixer adds its output to): the frozen
    /// range's, capped by the input's bound `2 sqrt(D) + max |x|` as the exporter caps it (1
    /// when activations are not rounded). Once per ACT step: it reads the embedding tables.
    fn input_scale(&self) -> Result<f64, TchError> {
        match self.applied() {
            Some(r) => {
                let bound = 2.0 * (self.config.d() as f64).sqrt() + self.x_bound()?;
                Ok(r.scale(r.input).min(bound / ACT_LEVELS))
            }
            None => Ok(1.0),
        }
    }

    /// A block's activation site `site` of SwiGLU `which`.
    fn site(
        &self,
        layer: usize,
        which: SwiGluOf,
        site: ActSite,
        t: Tensor,
    ) -> Result<Tensor, TchError> {
        match &self.act {
            None => Ok(t),
            Some(ActQuant::Record(_)) if site == ActSite::Silu => Ok(t),
            Some(ActQuant::Record(m)) => {
                record(m, &t, |r| {
                    let b = r.blocks.get_mut(layer)?;
                    Some(range_slot(b, site, which))
                })?;
                Ok(t)
            }
            Some(ActQuant::Apply(r)) => {
                let mut b = r.blocks.get(layer).copied().unwrap_or_default();
                let max = *range_slot(&mut b, site, which);
                fake_quant_act(&t, r.scale(max))
            }
        }
    }

    /// The weight matrices of one forward pass: borrowed, or fake-quantized once (per ACT
    /// step, not per use).
    fn weights(&self) -> Result<Weights<'_>, ModelError> {
        let Some(levels) = self.weight_quant.and_then(WeightQuant::levels) else {
            return Ok(Weights {
                blocks: Cow::Borrowed(&self.blocks),
                lm_head: self.lm_head.shallow_clone(),
                q_head_weight: self.q_head_weight.shallow_clone(),
            });
        };
        let fq = |t: &Tensor| fake_quant(t, levels);
        let swiglu = |m: &SwiGlu| -> Result<SwiGlu, ModelError> {
            Ok(SwiGlu {
                gate_up: fq(&m.gate_up)?,
                down: fq(&m.down)?,
            })
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let mixer = match &b.mixer {
                    Mixer::Attention(a) => Mixer::Attention(Attention {
                        qkv: fq(&a.qkv)?,
                        o: fq(&a.o)?,
                        num_heads: a.num_heads,
                    }),
                    Mixer::MlpT(m) => Mixer::MlpT(swiglu(m)?),
                };
                Ok(Block {
                    mixer,
                    mlp: swiglu(&b.mlp)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Weights {
            blocks: Cow::Owned(blocks),
            lm_head: fq(&self.lm_head)?,
            q_head_weight: fq(&self.q_head_weight)?,
        })
    }

    /// Sets the recursion counts, on which no weight depends: `halt_max_steps` (ACT steps),
    /// `h_cycles` and `l_cycles`, e.g. to evaluate at another depth than the model was trained
    /// at. The counts are checked as [`Config::validate`] checks them.
    pub fn set_recursion(
        &mut self,
        halt_max_steps: u32,
        h_cycles: u32,
        l_cycles: u32,
    ) -> Result<(), ModelError> {
        let mut c = self.config;
        c.halt_max_steps = halt_max_steps;
        c.h_cycles = h_cycles;
        c.l_cycles = l_cycles;
        c.validate()?;
        self.config = c;
        Ok(())
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The puzzle embedding table `[num_puzzle_identifiers, puzzle_emb_ndim]`, if any.
    pub fn puzzle_emb(&self) -> Option<&Tensor> {
        self.puzzle_emb.as_ref()
    }

    /// The puzzle embedding rows of a batch, `[B, puzzle_emb_ndim]` (`None` without a puzzle
    /// embedding). For training, detach the result and mark it as requiring grad: its gradient
    /// is what the sign-SGD optimizer of the puzzle embedding consumes.
    pub fn puzzle_rows(&self, puzzle_identifiers: &Tensor) -> Result<Option<Tensor>, ModelError> {
        let Some(table) = &self.puzzle_emb else {
            return Ok(None);
        };
        let ids = puzzle_identifiers.f_to_kind(Kind::Int64)?;
        let n = self.config.num_puzzle_identifiers as i64;
        if ids.numel() > 0 {
            let (lo, hi) = (ids.f_min()?.int64_value(&[]), ids.f_max()?.int64_value(&[]));
            if lo < 0 || hi >= n {
                return Err(ModelError::BadInput(format!(
                    "puzzle identifier out of range 0..{n}: [{lo}, {hi}]"
                )));
            }
        }
        Ok(Some(table.f_index_select(0, &ids)?))
    }

    /// The input embedding x `[B, L, D]` of puzzle tokens `[B, S]` (any integer kind) and the
    /// puzzle embedding rows from [`Trm::puzzle_rows`]: the puzzle prefix, then the tokens,
    /// then learned positions (if any, scaled by 1/sqrt(2)), all scaled by sqrt(D).
    pub fn input_embeddings(
        &self,
        inputs: &Tensor,
        puzzle_rows: Option<&Tensor>,
    ) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let size = inputs.size();
        if size.len() != 2 || size[1] != c.seq_len as i64 {
            return Err(ModelError::BadInput(format!(
                "inputs must be [B, {}], got {size:?}",
                c.seq_len
            )));
        }
        if inputs.is_floating_point() {
            return Err(ModelError::BadInput("inputs must be integer tokens".into()));
        }
        let tokens = inputs.f_to_kind(Kind::Int64)?;
        if tokens.numel() > 0 {
            let (lo, hi) = (
                tokens.f_min()?.int64_value(&[]),
                tokens.f_max()?.int64_value(&[]),
            );
            if lo < 0 || hi >= c.vocab_size as i64 {
                return Err(ModelError::BadInput(format!(
                    "token out of range 0..{}: [{lo}, {hi}]",
                    c.vocab_size
                )));
            }
        }
        let weight = self.embed_tokens.f_to_kind(self.forward_kind)?;
        let mut embedding = Tensor::f_embedding(&weight, &tokens, -1, false, false)?;
        let d = c.d() as i64;
        let p = c.puzzle_emb_len as i64;
        if c.puzzle_emb_ndim > 0 {
            let rows = puzzle_rows.ok_or_else(|| {
                ModelError::BadInput("the model has a puzzle embedding: rows required".into())
            })?;
            let b = size[0];
            if rows.size() != [b, c.puzzle_emb_ndim as i64] {
                return Err(ModelError::BadInput(format!(
                    "puzzle rows must be [{b}, {}], got {:?}",
                    c.puzzle_emb_ndim,
                    rows.size()
                )));
            }
            let mut pe = rows.f_to_kind(self.forward_kind)?;
            let pad = p * d - c.puzzle_emb_ndim as i64;
            if pad > 0 {
                pe = pe.f_constant_pad_nd([0, pad])?;
            }
            embedding = Tensor::f_cat(&[&pe.f_view([-1, p, d])?, &embedding], -2)?;
        }
        if let Some(pos) = &self.embed_pos {
            embedding = embedding
                .f_add(&pos.f_to_kind(self.forward_kind)?)?
                .f_mul_scalar(LEARNED_POS_SCALE)?;
        }
        let x = embedding.f_mul_scalar((c.d() as f64).sqrt())?;
        if self.applied().is_some() {
            let scale = self.x_bound()?.max(1e-6) / ACT_LEVELS;
            return Ok(fake_quant_act(&x, scale)?);
        }
        Ok(x)
    }

    /// The initial carry of a batch: y = H_init and z = L_init at every position.
    pub fn initial_carry(&self, batch: i64) -> Result<Carry, ModelError> {
        let (l, d) = (self.config.seq_total() as i64, self.config.d() as i64);
        let fill = |init: &Tensor| -> Result<Tensor, ModelError> {
            Ok(init
                .f_to_kind(self.forward_kind)?
                .f_view([1, 1, d])?
                .f_expand([batch, l, d], false)?
                .f_contiguous()?)
        };
        let state = Self::norm_scale(self.config.d() as i64);
        Ok(Carry {
            z_h: self.round_at(fill(&self.h_init)?, state)?,
            z_l: self.round_at(fill(&self.l_init)?, state)?,
        })
    }

    /// Block `layer` on `h`, whose int16 scale (activation QAT) is `h_scale`: each sub-layer's
    /// output is rounded at the scale of the residual it joins, each normalized output at
    /// `sqrt(n) / 32767`.
    fn block(
        &self,
        layer: usize,
        block: &Block,
        h: &Tensor,
        h_scale: f64,
    ) -> Result<Tensor, ModelError> {
        let eps = self.config.rms_norm_eps as f64;
        let (l, d) = (self.config.seq_total() as i64, self.config.d() as i64);
        let (h, mixed_scale) = match &block.mixer {
            Mixer::MlpT(mlp_t) => {
                // Token mixing: [B, L, D] -> [B, D, L], norm over L, back.
                let ht = h.f_transpose(1, 2)?;
                let hook = |site, t| self.site(layer, SwiGluOf::Mixer, site, t);
                let out = self.round_residual(mlp_t.forward_with(&ht, &hook)?, h_scale)?;
                let normed = rms_norm(&ht.f_add(&out)?, eps)?;
                let scale = Self::norm_scale(l);
                (self.round_at(normed, scale)?.f_transpose(1, 2)?, scale)
            }
            Mixer::Attention(att) => {
                let hook = |site, t| self.site(layer, SwiGluOf::Mlp, site, t);
                let out = att.forward_with(h, self.rope.as_ref(), &hook)?;
                let out = self.round_residual(out, h_scale)?;
                let scale = Self::norm_scale(d);
                (
                    self.round_at(rms_norm(&h.f_add(&out)?, eps)?, scale)?,
                    scale,
                )
            }
        };
        let hook = |site, t| self.site(layer, SwiGluOf::Mlp, site, t);
        let out = self.round_residual(block.mlp.forward_with(&h, &hook)?, mixed_scale)?;
        let normed = rms_norm(&h.f_add(&out)?, eps)?;
        Ok(self.round_at(normed, Self::norm_scale(d))?)
    }

    /// The one shared network: `h = h + injection`, then every block.
    pub fn net(&self, h: &Tensor, injection: &Tensor) -> Result<Tensor, ModelError> {
        self.net_with(&self.weights()?.blocks, h, injection, self.input_scale()?)
    }

    fn net_with(
        &self,
        blocks: &[Block],
        h: &Tensor,
        injection: &Tensor,
        in_scale: f64,
    ) -> Result<Tensor, ModelError> {
        let mut h = self.net_input(h.f_add(injection)?, in_scale)?;
        let mut scale = in_scale;
        for (layer, block) in blocks.iter().enumerate() {
            h = self.block(layer, block, &h, scale)?;
            scale = Self::norm_scale(self.config.d() as i64);
        }
        Ok(h)
    }

    /// The heads on y `[B, L, D]`: token logits at the puzzle positions and the Q logits at
    /// position 0 (in f32).
    pub fn heads(&self, z_h: &Tensor) -> Result<ActOutput, ModelError> {
        self.heads_with(&self.weights()?, z_h)
    }

    fn heads_with(&self, w: &Weights<'_>, z_h: &Tensor) -> Result<ActOutput, ModelError> {
        let c = &self.config;
        let p = c.puzzle_emb_len as i64;
        let logits = casted_linear(z_h, &w.lm_head)?.f_narrow(1, p, c.seq_len as i64)?;
        let first = z_h.f_select(1, 0)?;
        let q = first
            .f_linear(
                &w.q_head_weight.f_to_kind(first.kind())?,
                Some(&self.q_head_bias.f_to_kind(first.kind())?),
            )?
            .f_to_kind(Kind::Float)?;
        Ok(ActOutput {
            logits,
            q_halt: q.f_select(-1, 0)?,
            q_continue: q.f_select(-1, 1)?,
        })
    }

    /// One ACT step from `carry` with input embedding `x`: `h_cycles` times { `l_cycles` times
    /// z = net(z, y + x); y = net(y, z) }, all but the last outer cycle without gradient (as the
    /// reference). Returns the detached new carry and the heads' outputs (which carry gradient
    /// when gradient is enabled).
    pub fn act_step(&self, carry: &Carry, x: &Tensor) -> Result<(Carry, ActOutput), ModelError> {
        let c = &self.config;
        let w = self.weights()?;
        let blocks = &w.blocks;
        let s = self.input_scale()?;
        let (mut z_h, mut z_l) = (carry.z_h.shallow_clone(), carry.z_l.shallow_clone());
        {
            let _no_grad = tch::no_grad_guard();
            for _ in 1..c.h_cycles {
                for _ in 0..c.l_cycles {
                    z_l = self.net_with(blocks, &z_l, &z_h.f_add(x)?, s)?;
                }
                z_h = self.net_with(blocks, &z_h, &z_l, s)?;
            }
        }
        for _ in 0..c.l_cycles {
            z_l = self.net_with(blocks, &z_l, &z_h.f_add(x)?, s)?;
        }
        z_h = self.net_with(blocks, &z_h, &z_l, s)?;

        let out = self.heads_with(&w, &z_h)?;
        let carry = Carry {
            z_h: z_h.f_detach()?,
            z_l: z_l.f_detach()?,
        };
        Ok((carry, out))
    }
}
