//! The frozen activation ranges of a run with int16 activation fake-quantization (QAT,
//! `quant.activations: int16`): the largest `|value|` calibrated at each of the integer
//! engine's calibrated requantization sites when QAT started, and the margin over them.
//!
//! The trainer calibrates them once (its own forward pass on `quant.calib_batches` training
//! batches, every ACT step, weights on their grid), then rounds every forward pass's
//! activations with the scales they give, and stores them in each checkpoint's manifest
//! (`meta.json`, `extra.act_ranges`). `trm-export` reads them back and quantizes with exactly
//! those scales instead of calibrating its own, so the fixed file's int16 grid is the one the
//! model was fine-tuned on.
//!
//! The sites and the scale rule are the exporter's (`trm_export::quantize`): scale
//! `margin * max / 32767` for the network input, the SwiGLU gate, up and product of the mlp_t
//! mixer and the channel MLP, and attention q, k, v. The other sites need no calibration
//! (states and normalized outputs: `sqrt(n) / 32767`; x: the bound of the embedding tables;
//! logits and halting logits: 24-bit ranges calibrated at export).

use serde_json::{Map, Value, json};

/// The key of the ranges in a checkpoint manifest's `extra` object.
pub const MANIFEST_KEY: &str = "act_ranges";

/// Largest `|value|` at the calibrated sites of one block (0 for the sites its mixer lacks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockRanges {
    /// mlp_t mixer: gate.
    pub mix_gate: f32,
    /// mlp_t mixer: up.
    pub mix_up: f32,
    /// mlp_t mixer: `silu(gate) * up`.
    pub mix_prod: f32,
    /// Attention queries (before and after RoPE).
    pub q: f32,
    /// Attention keys (before and after RoPE).
    pub k: f32,
    /// Attention values.
    pub v: f32,
    /// Channel SwiGLU gate.
    pub gate: f32,
    /// Channel SwiGLU up.
    pub up: f32,
    /// Channel SwiGLU product.
    pub prod: f32,
}

/// The names of [`BlockRanges`]' fields in JSON, in order.
const BLOCK_FIELDS: [&str; 9] = [
    "mix_gate", "mix_up", "mix_prod", "q", "k", "v", "gate", "up", "prod",
];

impl BlockRanges {
    /// The fields in [`BLOCK_FIELDS`] order.
    pub fn values(&self) -> [f32; 9] {
        [
            self.mix_gate,
            self.mix_up,
            self.mix_prod,
            self.q,
            self.k,
            self.v,
            self.gate,
            self.up,
            self.prod,
        ]
    }

    fn from_values(v: [f32; 9]) -> Self {
        let [mix_gate, mix_up, mix_prod, q, k, v, gate, up, prod] = v;
        BlockRanges {
            mix_gate,
            mix_up,
            mix_prod,
            q,
            k,
            v,
            gate,
            up,
            prod,
        }
    }

    /// Fieldwise maximum with `other`.
    pub fn raise(&mut self, other: &BlockRanges) {
        let (a, b) = (self.values(), other.values());
        *self = Self::from_values(std::array::from_fn(|i| a[i].max(b[i])));
    }
}

/// The frozen ranges of a QAT run (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActRanges {
    /// Headroom over each maximum (`quant.margin`).
    pub margin: f64,
    /// The optimizer steps done when they were calibrated.
    pub step: u64,
    /// Puzzles they were calibrated on (all ranks together).
    pub puzzles: u64,
    /// The network input `z + y + x` / `y + z`.
    pub input: f32,
    /// Per block.
    pub blocks: Vec<BlockRanges>,
}

impl ActRanges {
    /// Empty ranges (every maximum 0) for `layers` blocks.
    pub fn new(layers: usize, margin: f64) -> Self {
        ActRanges {
            margin,
            blocks: vec![BlockRanges::default(); layers],
            ..ActRanges::default()
        }
    }

    /// The real value of one int16 unit at a site whose largest `|value|` is `max`: the
    /// exporter's `margin * max(max, 1e-6) / 32767`.
    pub fn scale(&self, max: f32) -> f64 {
        self.margin * f64::from(max).max(1e-6) / 32767.0
    }

    /// Every maximum as one list (input, then each block's fields): what ranks reduce.
    pub fn flat(&self) -> Vec<f32> {
        let mut v = vec![self.input];
        for b in &self.blocks {
            v.extend(b.values());
        }
        v
    }

    /// Sets every maximum from a list of [`ActRanges::flat`]'s layout.
    pub fn set_flat(&mut self, v: &[f32]) -> Result<(), String> {
        if v.len() != 1 + 9 * self.blocks.len() {
            return Err(format!(
                "{} values for {} blocks (expected {})",
                v.len(),
                self.blocks.len(),
                1 + 9 * self.blocks.len()
            ));
        }
        self.input = v[0];
        for (b, chunk) in self.blocks.iter_mut().zip(v[1..].chunks_exact(9)) {
            let mut a = [0f32; 9];
            a.copy_from_slice(chunk);
            *b = BlockRanges::from_values(a);
        }
        Ok(())
    }

    /// As JSON (what the manifest stores).
    pub fn to_json(&self) -> Value {
        let blocks: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| {
                let m: Map<String, Value> = BLOCK_FIELDS
                    .iter()
                    .zip(b.values())
                    .map(|(k, v)| ((*k).to_string(), json!(v)))
                    .collect();
                Value::Object(m)
            })
            .collect();
        json!({
            "margin": self.margin,
            "step": self.step,
            "puzzles": self.puzzles,
            "input": self.input,
            "blocks": blocks,
        })
    }

    /// Reads [`ActRanges::to_json`]'s form back for a model of `layers` blocks; every maximum
    /// must be finite and not negative, the margin finite and at least 1.
    pub fn from_json(v: &Value, layers: usize) -> Result<Self, String> {
        let num = |v: &Value, what: &str| -> Result<f64, String> {
            v.as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{what} is not a finite number >= 0: {v}"))
        };
        let int = |v: &Value, what: &str| -> Result<u64, String> {
            v.as_u64()
                .ok_or_else(|| format!("{what} is not a whole number: {v}"))
        };
        let margin = num(&v["margin"], "margin")?;
        if margin < 1.0 {
            return Err(format!("margin {margin} is below 1"));
        }
        let blocks = v["blocks"]
            .as_array()
            .ok_or_else(|| "blocks is not a list".to_string())?;
        if blocks.len() != layers {
            return Err(format!(
                "ranges of {} blocks for a model of {layers}",
                blocks.len()
            ));
        }
        let mut out = ActRanges {
            margin,
            step: int(&v["step"], "step")?,
            puzzles: int(&v["puzzles"], "puzzles")?,
            input: num(&v["input"], "input")? as f32,
            blocks: Vec::with_capacity(layers),
        };
        for (i, b) in blocks.iter().enumerate() {
            let mut a = [0f32; 9];
            for (slot, key) in a.iter_mut().zip(BLOCK_FIELDS) {
                *slot = num(&b[key], &format!("blocks[{i}].{key}"))? as f32;
            }
            out.blocks.push(BlockRanges::from_values(a));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ActRanges {
        let mut r = ActRanges::new(2, 1.25);
        r.step = 7;
        r.puzzles = 256;
        r.set_flat(&(0..19).map(|i| i as f32 * 0.37 + 0.1).collect::<Vec<_>>())
            .expect("19 values");
        r
    }

    #[test]
    fn json_round_trips_exactly() {
        let r = sample();
        let back = ActRanges::from_json(&r.to_json(), 2).expect("read back");
        assert_eq!(back, r);
        assert_eq!(back.flat(), r.flat());
    }

    #[test]
    fn bad_json_is_an_error() {
        let good = sample().to_json();
        assert!(
            ActRanges::from_json(&good, 3)
                .unwrap_err()
                .contains("2 blocks")
        );
        let mut v = good.clone();
        v["blocks"][1]["up"] = json!(-1.0);
        assert!(
            ActRanges::from_json(&v, 2)
                .unwrap_err()
                .contains("blocks[1].up")
        );
        let mut v = good.clone();
        v["margin"] = json!(0.5);
        assert!(ActRanges::from_json(&v, 2).unwrap_err().contains("margin"));
        let mut v = good;
        v["input"] = json!("big");
        assert!(ActRanges::from_json(&v, 2).unwrap_err().contains("input"));
        assert!(sample().set_flat(&[1.0; 3]).is_err());
    }

    #[test]
    fn scale_is_the_exporters_rule() {
        let r = sample();
        assert_eq!(r.scale(2.0), 1.25 * 2.0 / 32767.0);
        assert_eq!(r.scale(0.0), 1.25 * 1e-6 / 32767.0);
        let mut a = BlockRanges::default();
        a.raise(&r.blocks[1]);
        assert_eq!(a, r.blocks[1]);
    }
}
