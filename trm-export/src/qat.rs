//! Exports of checkpoints trained with quantization-aware training (QAT, the trainer's
//! `quant` config group): their weight matrices are on the grid of `quant.weights` (int8 or
//! int16), so the fixed export stores every such matrix at that precision ([`int16_for`]) and
//! checks that quantizing rounds nothing ([`check_grid`]).

use anyhow::bail;
use trm_nostd::fixed::prepare::{quantize_row_i8, quantize_row_i16};
use trm_nostd::{Config, TensorId};
use trm_reference::config::WeightQuant;

use crate::quantize::Int16Weights;

/// The largest rounding error, in steps of the grid, that still counts as on the grid: 1e-4,
/// or `levels * 2^-21` when larger. An on-grid weight is stored as the f32 `q * scale`, and
/// the export recomputes the scale from f32 values: both roundings leave `|w / scale - q|` up
/// to about `levels * 2^-23` (1.5e-5 for int8, 3.9e-3 for int16, where f32's 24 bits hold the
/// 16-bit integer with little to spare); any error below 1/2 still gives back the same `q`.
pub fn on_grid_tolerance(grid: WeightQuant) -> f64 {
    let levels = f64::from(grid.levels().unwrap_or(0));
    (levels * 2f64.powi(-21)).max(1e-4)
}

/// What [`check_grid`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridCheck {
    /// The grid of the checkpoint (`quant.weights`).
    pub grid: WeightQuant,
    /// The weights checked (every element of the quantized matrices).
    pub weights: usize,
    /// The largest `|w / scale - q|` over them, in steps of the grid.
    pub max_error: f64,
    /// The weights whose error exceeds [`on_grid_tolerance`].
    pub off_grid: usize,
    /// The matrix holding the largest error.
    pub worst: Option<TensorId>,
}

impl GridCheck {
    /// Whether every weight is on the grid.
    pub fn on_grid(&self) -> bool {
        self.off_grid == 0
    }
}

impl std::fmt::Display for GridCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QAT checkpoint (quant.weights: {}): {} weights checked, largest rounding error \
             {:.3e} of a step",
            self.grid.name(),
            self.weights,
            self.max_error
        )?;
        if let Some(id) = self.worst {
            write!(f, " (in {id})")?;
        }
        if self.on_grid() {
            write!(f, ", every weight on the grid")
        } else {
            write!(
                f,
                ", {} weights off the grid (more than {:.1e} of a step)",
                self.off_grid,
                on_grid_tolerance(self.grid)
            )
        }
    }
}

/// The rounding error of every weight of the matrices QAT quantizes
/// ([`WeightQuant::matrices`]) under the exporter's rule for `grid` (`quantize_row_i8` or
/// `quantize_row_i16`, per output row): `|w / scale - q|`, in steps.
pub fn check_grid(
    config: &Config,
    tensors: &[(TensorId, Vec<f32>)],
    grid: WeightQuant,
) -> anyhow::Result<GridCheck> {
    let Some(levels) = grid.levels() else {
        bail!("quant.weights is none: no grid to check");
    };
    let tolerance = on_grid_tolerance(grid);
    let mut check = GridCheck {
        grid,
        weights: 0,
        max_error: 0.0,
        off_grid: 0,
        worst: None,
    };
    for id in WeightQuant::matrices(config) {
        let Some((_, w)) = tensors.iter().find(|(t, _)| *t == id) else {
            bail!("missing tensor {id}");
        };
        let cols = id.shape(config).cols as usize;
        for row in w.chunks_exact(cols.max(1)) {
            let (scale, q) = quantize_row(row, levels);
            for (&v, q) in row.iter().zip(q) {
                let e = (f64::from(v) / scale - q).abs();
                // NaN counts as off the grid.
                if e.is_nan() || e > tolerance {
                    check.off_grid += 1;
                }
                if e.is_nan() || e > check.max_error {
                    check.max_error = if e.is_nan() { f64::INFINITY } else { e };
                    check.worst = Some(id);
                }
                check.weights += 1;
            }
        }
    }
    Ok(check)
}

/// The int16 weight groups of a fixed export of a QAT checkpoint on `grid`: none for int8,
/// all for int16. `requested` (the `--int16-weights` option) must be none (the default) or
/// agree; any other choice would round weights that QAT put on the grid: an error.
pub fn int16_for(grid: WeightQuant, requested: Int16Weights) -> anyhow::Result<Int16Weights> {
    let want = match grid {
        WeightQuant::Int8 => Int16Weights::NONE,
        WeightQuant::Int16 => Int16Weights::ALL,
        WeightQuant::None => return Ok(requested),
    };
    if requested == Int16Weights::NONE || requested == want {
        return Ok(want);
    }
    bail!(
        "the checkpoint was fine-tuned on the {} grid (quant.weights: {}): its matrices are \
         exported as {}; --int16-weights {} would round them: leave the option out",
        grid.name(),
        grid.name(),
        grid.name(),
        requested.name()
    )
}

/// One weight row quantized as the exporter quantizes it (`levels` 127: int8, else int16): its
/// scale and integer values (as f64).
pub fn quantize_row(row: &[f32], levels: u32) -> (f64, Vec<f64>) {
    let mut bytes = Vec::new();
    if levels == 127 {
        let s = quantize_row_i8(row, &mut bytes);
        (s, bytes.iter().map(|&b| f64::from(b as i8)).collect())
    } else {
        let s = quantize_row_i16(row, &mut bytes);
        let q = bytes
            .chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
            .collect();
        (s, q)
    }
}
