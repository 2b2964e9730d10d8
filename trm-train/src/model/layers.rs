//! The building blocks of the TRM network, each following the reference's `models/layers.py`
//! operation by operation (same libtorch ops in the same order, so f32 results agree closely).
//!
//! Every function is fallible (`f_*` tch calls): a shape error surfaces as a [`TchError`]
//! instead of a panic.

use super::quant::ActSite;
use tch::{Kind, TchError, Tensor};

/// What a layer calls at each activation site it computes (the value as computed; the value
/// it goes on with): activation fake-quantization, calibration, or nothing ([`no_hook`]).
pub type ActHook<'a> = &'a dyn Fn(ActSite, Tensor) -> Result<Tensor, TchError>;

/// The hook that leaves every value as it is.
pub fn no_hook(_site: ActSite, t: Tensor) -> Result<Tensor, TchError> {
    Ok(t)
}

/// `F.linear(x, w)` with the weight cast to the input's element type (the reference's
/// `CastedLinear`, no bias).
pub fn casted_linear(x: &Tensor, weight: &Tensor) -> Result<Tensor, TchError> {
    x.f_linear(&weight.f_to_kind(x.kind())?, None::<Tensor>)
}

/// Weightless RMSNorm over the last axis, computed in f32 and cast back:
/// `x * rsqrt(mean(x^2) + eps)`.
pub fn rms_norm(x: &Tensor, eps: f64) -> Result<Tensor, TchError> {
    let kind = x.kind();
    let h = x.f_to_kind(Kind::Float)?;
    let variance = h.f_square()?.f_mean_dim(-1, true, None::<Kind>)?;
    let out = h.f_mul(&variance.f_add_scalar(eps)?.f_rsqrt()?)?;
    out.f_to_kind(kind)
}

/// A SwiGLU MLP: `down(silu(gate) * up)` with `[gate; up] = gate_up(x)`.
#[derive(Debug)]
pub struct SwiGlu {
    /// `gate_up_proj.weight` `[2 inter, n]`: gate rows, then up rows.
    pub gate_up: Tensor,
    /// `down_proj.weight` `[n, inter]`.
    pub down: Tensor,
}

impl SwiGlu {
    /// Applies the MLP over the last axis of `x` (`[.., n] -> [.., n]`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        self.forward_with(x, &no_hook)
    }

    /// [`SwiGlu::forward`], passing the gate, up and product values through `hook`.
    pub fn forward_with(&self, x: &Tensor, hook: ActHook<'_>) -> Result<Tensor, TchError> {
        let gu = casted_linear(x, &self.gate_up)?.f_chunk(2, -1)?;
        let [gate, up] = <[Tensor; 2]>::try_from(gu)
            .map_err(|_| TchError::Shape("gate_up output does not split in two".into()))?;
        let gate = hook(ActSite::Gate, gate)?;
        let up = hook(ActSite::Up, up)?;
        let silu = hook(ActSite::Silu, gate.f_silu()?)?;
        let product = hook(ActSite::Product, silu.f_mul(&up)?)?;
        casted_linear(&product, &self.down)
    }
}

/// Rotary position tables, rotate-half convention: `[positions, head_dim]` cos and sin of
/// `pos * base^(-2i / head_dim)`, the frequencies repeated for both halves.
#[derive(Debug)]
pub struct Rope {
    /// `cos` table, f32 `[positions, head_dim]`.
    pub cos: Tensor,
    /// `sin` table, f32 `[positions, head_dim]`.
    pub sin: Tensor,
}

impl Rope {
    /// Builds the tables as the reference's `RotaryEmbedding` does (f32 throughout).
    pub fn new(
        head_dim: i64,
        positions: i64,
        base: f64,
        device: tch::Device,
    ) -> Result<Self, TchError> {
        let exponent = Tensor::f_arange_start_step(0, head_dim, 2, (Kind::Float, device))?
            .f_div_scalar(head_dim)?;
        let inv_freq = Tensor::f_pow_scalar(base, &exponent)?.f_reciprocal()?;
        let t = Tensor::f_arange(positions, (Kind::Float, device))?;
        let freqs = t.f_outer(&inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Rope {
            cos: emb.f_cos()?,
            sin: emb.f_sin()?,
        })
    }

    /// Rotates `x` `[B, S, H, head_dim]` (computed in the tables' f32, cast back).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let kind = x.kind();
        let x = x.f_to_kind(self.cos.kind())?;
        let cos = self.cos.f_unsqueeze(-2)?;
        let sin = self.sin.f_unsqueeze(-2)?;
        let out = x.f_mul(&cos)?.f_add(&rotate_half(&x)?.f_mul(&sin)?)?;
        out.f_to_kind(kind)
    }
}

/// `[x1, x2] -> [-x2, x1]` over the last axis.
pub fn rotate_half(x: &Tensor) -> Result<Tensor, TchError> {
    let n = *x
        .size()
        .last()
        .ok_or_else(|| TchError::Shape("rotate_half of a scalar".into()))?;
    let x1 = x.f_narrow(-1, 0, n / 2)?;
    let x2 = x.f_narrow(-1, n / 2, n - n / 2)?;
    Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)
}

/// Non-causal multi-head self-attention with one fused qkv projection and no biases.
#[derive(Debug)]
pub struct Attention {
    /// `qkv_proj.weight` `[3 D, D]`: q heads, then k heads, then v heads.
    pub qkv: Tensor,
    /// `o_proj.weight` `[D, D]`.
    pub o: Tensor,
    /// Number of heads.
    pub num_heads: i64,
}

impl Attention {
    /// `[B, S, D] -> [B, S, D]`, with rotary positions when `rope` is given.
    pub fn forward(&self, h: &Tensor, rope: Option<&Rope>) -> Result<Tensor, TchError> {
        self.forward_with(h, rope, &no_hook)
    }

    /// [`Attention::forward`], passing q and k (as projected and after RoPE), v and the
    /// heads' outputs (the `o` projection's input) through `hook`.
    pub fn forward_with(
        &self,
        h: &Tensor,
        rope: Option<&Rope>,
        hook: ActHook<'_>,
    ) -> Result<Tensor, TchError> {
        let (b, s, d) = h.size3()?;
        let heads = self.num_heads;
        let head_dim = d / heads;
        let qkv = casted_linear(h, &self.qkv)?.f_view([b, s, 3 * heads, head_dim])?;
        let mut query = hook(ActSite::Query, qkv.f_narrow(2, 0, heads)?)?;
        let mut key = hook(ActSite::Key, qkv.f_narrow(2, heads, heads)?)?;
        let value = hook(ActSite::Value, qkv.f_narrow(2, 2 * heads, heads)?)?;
        if let Some(rope) = rope {
            query = hook(ActSite::Query, rope.apply(&query)?)?;
            key = hook(ActSite::Key, rope.apply(&key)?)?;
        }
        // [B, S, H, hd] -> [B, H, S, hd]
        let perm = [0i64, 2, 1, 3];
        let out = Tensor::f_scaled_dot_product_attention(
            &query.f_permute(perm)?,
            &key.f_permute(perm)?,
            &value.f_permute(perm)?,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        )?;
        // The heads' outputs, at the values' scale in the integer engine (convex combinations of
        // the values: recording them never raises the values' range).
        let out = hook(ActSite::Value, out.f_permute(perm)?.f_reshape([b, s, d])?)?;
        casted_linear(&out, &self.o)
    }
}

/// Fills `t` in place with the reference's truncated normal (JAX's `truncated_normal`
/// rescaled so the standard deviation is `std`, cut at two standard deviations).
pub fn trunc_normal_(t: &mut Tensor, std: f64) -> Result<(), TchError> {
    let _guard = tch::no_grad_guard();
    if std == 0.0 {
        let _ = t.f_zero_()?;
        return Ok(());
    }
    let (lower, upper) = (-2.0f64, 2.0f64);
    let sqrt2 = std::f64::consts::SQRT_2;
    let a = libm::erf(lower / sqrt2);
    let b = libm::erf(upper / sqrt2);
    let z = (b - a) / 2.0;
    let c = (2.0 * std::f64::consts::PI).powf(-0.5);
    let pdf_u = c * (-0.5 * lower * lower).exp();
    let pdf_l = c * (-0.5 * upper * upper).exp();
    let comp_std =
        std / (1.0 - (upper * pdf_u - lower * pdf_l) / z - ((pdf_u - pdf_l) / z).powi(2)).sqrt();
    let _ = t.f_uniform_(a, b)?;
    let _ = t.f_erfinv_()?;
    let _ = t.f_mul_scalar_(sqrt2 * comp_std)?;
    let _ = t.f_clip_(lower * comp_std, upper * comp_std)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    #[test]
    fn rms_norm_matches_hand_computation() {
        let x = [1.0f32, -2.0, 3.0, 0.5, 0.0, 4.0];
        let y = rms_norm(&t(&x, &[2, 3]), 1e-5).unwrap();
        let got = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
        for r in 0..2 {
            let row = &x[r * 3..r * 3 + 3];
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 3.0;
            for c in 0..3 {
                let want = row[c] as f64 / (ms + 1e-5).sqrt();
                assert!((got[r * 3 + c] as f64 - want).abs() < 1e-6, "{r},{c}");
            }
        }
    }

    #[test]
    fn swiglu_matches_hand_computation() {
        // n = 2, inter = 1: gate_up [2, 2], down [2, 1]
        let m = SwiGlu {
            gate_up: t(&[0.5, -1.0, 2.0, 0.25], &[2, 2]),
            down: t(&[1.5, -0.5], &[2, 1]),
        };
        let x = [0.3f32, 0.7];
        let y = Vec::<f32>::try_from(m.forward(&t(&x, &[1, 2])).unwrap().flatten(0, -1)).unwrap();
        let gate = 0.5 * 0.3 - 1.0 * 0.7;
        let up = 2.0 * 0.3 + 0.25 * 0.7;
        let silu = gate / (1.0 + f64::exp(-gate));
        let h = silu * up;
        assert!((y[0] as f64 - 1.5 * h).abs() < 1e-6);
        assert!((y[1] as f64 + 0.5 * h).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_of_halves() {
        let (hd, pos) = (4i64, 3i64);
        let rope = Rope::new(hd, pos, 10000.0, tch::Device::Cpu).unwrap();
        let x: Vec<f32> = (0..pos * hd).map(|i| i as f32 * 0.1 - 0.3).collect();
        let xt = t(&x, &[1, pos, 1, hd]);
        let y = Vec::<f32>::try_from(rope.apply(&xt).unwrap().flatten(0, -1)).unwrap();
        for p in 0..pos as usize {
            for i in 0..(hd / 2) as usize {
                let theta = p as f64 * 10000f64.powf(-2.0 * i as f64 / hd as f64);
                let (a, b) = (x[p * 4 + i] as f64, x[p * 4 + i + 2] as f64);
                let ya = a * theta.cos() - b * theta.sin();
                let yb = b * theta.cos() + a * theta.sin();
                assert!((y[p * 4 + i] as f64 - ya).abs() < 1e-5);
                assert!((y[p * 4 + i + 2] as f64 - yb).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn attention_matches_hand_softmax() {
        tch::manual_seed(3);
        let (b, s, d, heads) = (2i64, 5i64, 8i64, 2i64);
        let att = Attention {
            qkv: Tensor::randn([3 * d, d], (Kind::Float, tch::Device::Cpu)),
            o: Tensor::randn([d, d], (Kind::Float, tch::Device::Cpu)),
            num_heads: heads,
        };
        let h = Tensor::randn([b, s, d], (Kind::Float, tch::Device::Cpu));
        let got = att.forward(&h, None).unwrap();
        // Independent: per-head softmax(q k^T / sqrt(hd)) v in f64 loops.
        let hv = Vec::<f32>::try_from(h.flatten(0, -1)).unwrap();
        let wq = Vec::<f32>::try_from(att.qkv.flatten(0, -1)).unwrap();
        let wo = Vec::<f32>::try_from(att.o.flatten(0, -1)).unwrap();
        let g = Vec::<f32>::try_from(got.flatten(0, -1)).unwrap();
        let (s, d, hd) = (s as usize, d as usize, (d / heads) as usize);
        for bi in 0..b as usize {
            let x = |t: usize, k: usize| hv[(bi * s + t) * d + k] as f64;
            let proj = |t: usize, row: usize| {
                (0..d)
                    .map(|k| wq[row * d + k] as f64 * x(t, k))
                    .sum::<f64>()
            };
            let mut concat = vec![0f64; s * d];
            for hh in 0..heads as usize {
                for t in 0..s {
                    let scores: Vec<f64> = (0..s)
                        .map(|u| {
                            (0..hd)
                                .map(|j| proj(t, hh * hd + j) * proj(u, d + hh * hd + j))
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..hd {
                        concat[t * d + hh * hd + j] = (0..s)
                            .map(|u| e[u] / z * proj(u, 2 * d + hh * hd + j))
                            .sum();
                    }
                }
            }
            for t in 0..s {
                for o in 0..d {
                    let want: f64 = (0..d)
                        .map(|k| wo[o * d + k] as f64 * concat[t * d + k])
                        .sum();
                    let have = g[(bi * s + t) * d + o] as f64;
                    assert!(
                        (have - want).abs() < 1e-3 * (1.0 + want.abs()),
                        "{have} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn trunc_normal_has_requested_spread() {
        tch::manual_seed(0);
        let mut w = Tensor::zeros([200_000], (Kind::Float, tch::Device::Cpu));
        trunc_normal_(&mut w, 0.5).unwrap();
        let std = w.std(true).double_value(&[]);
        let max = w.abs().max().double_value(&[]);
        assert!((std - 0.5).abs() < 0.01, "{std}");
        // cut at 2 (corrected) standard deviations: 2 * 0.5 / 0.8796 = 1.137
        assert!(max <= 1.14 && max > 1.0, "{max}");
    }
}
