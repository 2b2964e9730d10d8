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

use tch::{Kind, TchError, Tensor};
use trm_nostd::{Config, TensorId};
use trm_reference::config::WeightQuant;

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
}
