//! Quantization-aware training (QAT): fake quantization of the weight matrices onto the grid
//! `trm-export` stores them on.
//!
//! The grid is the exporter's (`trm_nostd::fixed::prepare::quantize_row_i8` / `_i16`): per
//! output row, scale `max|w| / levels` computed in f64 (1 for an all-zero row), integer
//! `floor(w / scale + 1/2)` clamped to `[-levels, levels]`. Here the same operations run in
//! f64 on libtorch tensors (IEEE division and floor, as the exporter's), and the value used is
//! `f32(q * scale)`: the exporter, reading that value back, finds the same integer `q`.
//!
//! - [`fake_quant`]: the on-grid value in the forward pass with a straight-through gradient
//!   (`d out / d w = 1`): `project(w).detach() + (w - w.detach())`, whose value is exactly the
//!   projection (`x + 0` is exact), unlike `w + (q - w).detach()`, which rounds twice.
//! - [`project`]: the on-grid values without gradient, what checkpoints save.
//!
//! Activations (`quant.activations: int16`, [`ActQuant`]): at each of the integer engine's
//! requantization sites the forward pass rounds the values onto the engine's int16 grid
//! ([`fake_quant_act`], straight-through gradient), with the exporter's scales: frozen
//! calibrated ranges ([`ActRanges`], `margin * max / 32767`) for the network input, the SwiGLU
//! gate, up and product and attention q, k, v; `sqrt(n) / 32767` for the normalized outputs
//! of every sub-layer (the states among them); the embedding tables' bound for x; a sub-layer's
//! output rounded at the scale of the residual it is added to. The logits and halting logits
//! (24-bit integers in the engine) stay float.

use std::sync::Mutex;
use tch::{Kind, TchError, Tensor};
use trm_nostd::{Config, TensorId};
use trm_reference::act_ranges::{ActRanges, BlockRanges};
use trm_reference::config::WeightQuant;

/// The largest int16 magnitude of the activation grid.
pub const ACT_LEVELS: f64 = 32767.0;

/// A calibrated activation site of a block (see [`BlockRanges`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActSite {
    /// A SwiGLU's gate projection (before SiLU).
    Gate,
    /// `silu(gate)`, which the engine's SiLU table gives at the gate's scale (not a range of
    /// its own: nothing is recorded).
    Silu,
    /// A SwiGLU's up projection.
    Up,
    /// A SwiGLU's product `silu(gate) * up`.
    Product,
    /// Attention queries (as projected, and again after RoPE).
    Query,
    /// Attention keys (as projected, and again after RoPE).
    Key,
    /// Attention values.
    Value,
}

/// Which SwiGLU of a block a [`ActSite::Gate`], `Up` or `Product` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwiGluOf {
    /// The mlp_t token mixer.
    Mixer,
    /// The channel MLP.
    Mlp,
}

/// The slot of `ranges` that `site` of `which` SwiGLU (ignored for attention sites) feeds.
pub fn range_slot(ranges: &mut BlockRanges, site: ActSite, which: SwiGluOf) -> &mut f32 {
    match (site, which) {
        (ActSite::Gate | ActSite::Silu, SwiGluOf::Mixer) => &mut ranges.mix_gate,
        (ActSite::Up, SwiGluOf::Mixer) => &mut ranges.mix_up,
        (ActSite::Product, SwiGluOf::Mixer) => &mut ranges.mix_prod,
        (ActSite::Gate | ActSite::Silu, SwiGluOf::Mlp) => &mut ranges.gate,
        (ActSite::Up, SwiGluOf::Mlp) => &mut ranges.up,
        (ActSite::Product, SwiGluOf::Mlp) => &mut ranges.prod,
        (ActSite::Query, _) => &mut ranges.q,
        (ActSite::Key, _) => &mut ranges.k,
        (ActSite::Value, _) => &mut ranges.v,
    }
}

/// Activation fake-quantization of a model's forward pass.
#[derive(Debug)]
pub enum ActQuant {
    /// Calibration: the forward pass stays float and records the largest `|value|` at every
    /// calibrated site.
    Record(Mutex<ActRanges>),
    /// Training and evaluation: every site rounded with the scales of these frozen ranges.
    Apply(ActRanges),
}

/// `t` rounded onto the int16 grid of `scale` (`floor(t / scale + 1/2)` clamped to
/// `[-32767, 32767]`, times `scale`, in f32), with a straight-through gradient.
pub fn fake_quant_act(t: &Tensor, scale: f64) -> Result<Tensor, TchError> {
    fake_quant_act_within(t, scale, ACT_LEVELS)
}

/// [`fake_quant_act`] clamped to `[-levels, levels]` instead: a sub-layer's output joins its
/// residual as an i32 (the engine's `RESIDUAL_MAX` range), not an int16.
pub fn fake_quant_act_within(t: &Tensor, scale: f64, levels: f64) -> Result<Tensor, TchError> {
    let kind = t.kind();
    let q = {
        let _no_grad = tch::no_grad_guard();
        // One new tensor, then in place (the activations of a step are many).
        let mut q = t.f_detach()?.f_to_kind(Kind::Float)?.f_div_scalar(scale)?;
        let _ = q.f_add_scalar_(0.5)?;
        let _ = q.f_floor_()?;
        let _ = q.f_clamp_(-levels, levels)?;
        let _ = q.f_mul_scalar_(scale)?;
        q.f_to_kind(kind)?
    };
    if t.requires_grad() {
        q.f_add(&t.f_sub(&t.f_detach()?)?)
    } else {
        Ok(q)
    }
}

/// The largest `|value|` of `t`.
pub fn abs_max(t: &Tensor) -> Result<f32, TchError> {
    let _no_grad = tch::no_grad_guard();
    if t.numel() == 0 {
        return Ok(0.0);
    }
    Ok(t.f_abs()?
        .f_max()?
        .f_to_kind(Kind::Float)?
        .f_double_value(&[])? as f32)
}

/// The on-grid values of a matrix `[rows, cols]` (f32), no gradient: each row quantized with
/// `levels` (127 for int8, 32767 for int16) by the exporter's rule and dequantized.
pub fn project(w: &Tensor, levels: u32) -> Result<Tensor, TchError> {
    let _no_grad = tch::no_grad_guard();
    let levels = f64::from(levels);
    let w64 = w.f_detach()?.f_to_kind(Kind::Double)?;
    let max = w64.f_abs()?.f_amax([-1i64].as_slice(), true)?;
    let scale = max.f_div_scalar(levels)?;
    // An all-zero row has scale 1 (its values are 0 whatever the scale).
    let scale = scale.f_where_scalarother(&max.f_gt(0.0)?, 1.0)?;
    let q = w64
        .f_div(&scale)?
        .f_add_scalar(0.5)?
        .f_floor()?
        .f_clamp(-levels, levels)?;
    q.f_mul(&scale)?.f_to_kind(w.kind())
}

/// `w` fake-quantized: the value of [`project`], the gradient of `w` (straight-through).
pub fn fake_quant(w: &Tensor, levels: u32) -> Result<Tensor, TchError> {
    let q = project(w, levels)?;
    q.f_add(&w.f_sub(&w.f_detach()?)?)
}

/// The reference names (`inner.lm_head.weight`, ...) of the matrices QAT puts on the grid
/// ([`WeightQuant::matrices`]).
pub fn quantized_names(config: &Config) -> Vec<String> {
    WeightQuant::matrices(config)
        .into_iter()
        .map(|id: TensorId| id.to_string())
        .collect()
}

/// Replaces the values of the named matrices QAT quantizes by their projection onto the grid
/// (`levels`), leaving every other tensor as it is.
pub fn project_named(
    named: Vec<(String, Tensor)>,
    config: &Config,
    levels: u32,
) -> Result<Vec<(String, Tensor)>, TchError> {
    let names = quantized_names(config);
    named
        .into_iter()
        .map(|(n, t)| {
            if names.contains(&n) {
                Ok((n, project(&t, levels)?))
            } else {
                Ok((n, t))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trm_nostd::fixed::prepare::{quantize_row_i8, quantize_row_i16};

    fn rows() -> Tensor {
        tch::manual_seed(7);
        let w = Tensor::randn([6, 33], (Kind::Float, tch::Device::Cpu)).f_mul_scalar(0.3);
        let mut v = Vec::<f32>::try_from(w.expect("randn").flatten(0, -1)).expect("values");
        // An all-zero row and a row of evenly spaced values.
        v[33..66].fill(0.0);
        for (i, x) in v[66..99].iter_mut().enumerate() {
            *x = (i as f32 - 16.0) * 0.5;
        }
        Tensor::from_slice(&v).view([6, 33])
    }

    /// The projection is the exporter's: integer for integer, and `q * scale` to f32.
    #[test]
    fn projection_is_the_exporters_rule() {
        let w = rows();
        for (levels, wide) in [(127u32, false), (32767, true)] {
            let p = project(&w, levels).expect("project");
            for r in 0..w.size()[0] {
                let row = Vec::<f32>::try_from(w.get(r)).expect("row");
                let got = Vec::<f32>::try_from(p.get(r)).expect("row");
                let mut bytes = Vec::new();
                let scale = if wide {
                    quantize_row_i16(&row, &mut bytes)
                } else {
                    quantize_row_i8(&row, &mut bytes)
                };
                let q: Vec<f64> = if wide {
                    bytes
                        .chunks_exact(2)
                        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
                        .collect()
                } else {
                    bytes.iter().map(|&b| f64::from(b as i8)).collect()
                };
                for (g, q) in got.iter().zip(&q) {
                    assert_eq!(*g, (q * scale) as f32, "row {r} levels {levels}");
                }
                // And the exporter finds the same integers in the projected row.
                let mut again = Vec::new();
                if wide {
                    quantize_row_i16(&got, &mut again);
                } else {
                    quantize_row_i8(&got, &mut again);
                }
                assert_eq!(again, bytes, "row {r} levels {levels}");
            }
        }
    }

    #[test]
    fn fake_quant_has_the_projected_value_and_a_straight_through_gradient() {
        let w = rows().set_requires_grad(true);
        let fq = fake_quant(&w, 127).expect("fake quant");
        assert!(fq.equal(&project(&w, 127).expect("project")));
        let weights = Tensor::randn([6, 33], (Kind::Float, tch::Device::Cpu));
        fq.f_mul(&weights).expect("mul").sum(Kind::Float).backward();
        assert!(w.grad().equal(&weights));
    }

    #[test]
    fn activation_fake_quant_rounds_to_the_grid_clamps_and_passes_gradients() {
        let scale = 0.25;
        let v = [0.1f32, 0.13, -0.13, 0.375, -0.375, 1e6, -1e6, 0.0];
        let t = Tensor::from_slice(&v).set_requires_grad(true);
        let q = fake_quant_act(&t, scale).expect("fake quant");
        let got = Vec::<f32>::try_from(q.detach()).expect("values");
        // floor(v / s + 1/2): 0.4 -> 0, 0.52 -> 1, -0.52 -> -1, 1.5 -> 2, -1.5 -> -1; clamped.
        let want = [
            0.0f32,
            0.25,
            -0.25,
            0.5,
            -0.25,
            32767.0 * 0.25,
            -32767.0 * 0.25,
            0.0,
        ];
        assert_eq!(got, want);
        let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        q.f_mul(&w).expect("mul").sum(Kind::Float).backward();
        assert!(t.grad().equal(&w));
        // A wider clamp for residual outputs.
        let r = fake_quant_act_within(&t.detach(), scale, 1e7).expect("wide");
        assert_eq!(Vec::<f32>::try_from(r).expect("values")[5], 1e6);
    }
}
