//! The reference's state_dict names: the prefixes its checkpoints put before them, the buffers
//! it does not persist, and the match of every name to a [`TensorId`] of a [`Config`].
//!
//! `pretrain.py` saves names such as `_orig_mod.model.inner.L_level.layers.0.mlp.gate_up_proj.weight`
//! (`_orig_mod.` from `torch.compile`, `model.` from the loss head wrapping the model); without
//! the prefixes they are [`TensorId`]'s names (`inner.L_level.layers.0.mlp.gate_up_proj.weight`).

use std::collections::HashMap;

use anyhow::{Context as _, bail, ensure};
use trm_nostd::{Config, TensorId};

use crate::torch::Tensor;

/// The prefixes the reference puts before its state_dict names, outermost first.
const PREFIXES: [&str; 2] = ["_orig_mod.", "model."];

/// State_dict entries the reference declares non-persistent; ignored if a checkpoint has them.
const NON_PERSISTENT: &[&str] = &[
    "inner.rotary_emb.cos_cached",
    "inner.rotary_emb.sin_cached",
    "inner.puzzle_emb.local_weights",
    "inner.puzzle_emb.local_ids",
];

/// A reference name without the `_orig_mod.` / `model.` prefixes.
pub fn strip_reference_prefix(name: &str) -> &str {
    let mut n = name;
    for p in PREFIXES {
        n = n.strip_prefix(p).unwrap_or(n);
    }
    n
}

/// The checkpoint's tensors by reference name, with the `_orig_mod.` and `model.` prefixes
/// removed.
pub(crate) fn strip_names(raw: Vec<(String, Tensor)>) -> anyhow::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::with_capacity(raw.len());
    for (name, t) in raw {
        let short = name.strip_prefix("_orig_mod.").unwrap_or(&name);
        let short = short.strip_prefix("model.").unwrap_or(short).to_string();
        if out.insert(short.clone(), t).is_some() {
            bail!("two checkpoint entries are named {short} once prefixes are removed");
        }
    }
    Ok(out)
}

/// Matches the (prefix-free) checkpoint tensors to every [`TensorId`] of `config`, checks
/// shapes, converts to f32, and rejects leftovers.
pub fn map_tensors(
    config: &Config,
    mut tensors: HashMap<String, Tensor>,
) -> anyhow::Result<Vec<(TensorId, Vec<f32>)>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for id in TensorId::all(config) {
        let name = id.to_string();
        let Some(t) = tensors.remove(&name) else {
            missing.push(name);
            continue;
        };
        let s = id.shape(config);
        let expected: Vec<usize> = if s.rank == 1 {
            vec![s.cols as usize]
        } else {
            vec![s.rows as usize, s.cols as usize]
        };
        ensure!(
            t.shape == expected,
            "tensor {name}: expected shape {expected:?}, got {:?}",
            t.shape
        );
        let values = t.to_f32().with_context(|| format!("tensor {name}"))?;
        out.push((id, values));
    }
    ensure!(
        missing.is_empty(),
        "checkpoint lacks tensors the config needs: {}",
        missing.join(", ")
    );
    for n in NON_PERSISTENT {
        tensors.remove(*n);
    }
    if !tensors.is_empty() {
        let mut extra: Vec<_> = tensors.into_keys().collect();
        extra.sort();
        bail!(
            "checkpoint has tensors this config does not use (wrong arch settings?): {}",
            extra.join(", ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_in_order() {
        assert_eq!(
            strip_reference_prefix("_orig_mod.model.inner.H_init"),
            "inner.H_init"
        );
        assert_eq!(strip_reference_prefix("model.inner.H_init"), "inner.H_init");
        assert_eq!(strip_reference_prefix("inner.H_init"), "inner.H_init");
        // Only in the reference's order, each at most once.
        assert_eq!(
            strip_reference_prefix("model._orig_mod.inner.H_init"),
            "_orig_mod.inner.H_init"
        );
    }
}
