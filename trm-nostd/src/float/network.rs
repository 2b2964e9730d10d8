//! The float engine's network: the `l_layers` blocks applied to one state (token mixer, then the
//! channel SwiGLU; the sub-blocks are [`kernels`](super::kernels)).

use super::kernels::{self, BlockBuffers};
use super::observer::{Observer, Site, Sublayer, Tap};
use super::weights::Weights;
use crate::config::Config;

/// The `l_layers` blocks of the network on `h: [L, D]` (the injection is already added),
/// reporting their sites to `obs`.
pub(super) fn net_blocks<O: Observer + ?Sized>(
    c: &Config,
    w: &Weights<'_>,
    b: &mut BlockBuffers<'_>,
    h: &mut [f32],
    obs: &mut O,
) {
    let l = c.seq_total();
    let eps = c.rms_norm_eps;
    for (i, lw) in w.layers.iter().take(c.l_layers as usize).enumerate() {
        // l_layers <= MAX_LAYERS (checked by the engine), so the index fits.
        let layer = i as u8;
        let mut mixer = Tap {
            observer: &mut *obs,
            layer,
            sub: Sublayer::Mixer,
        };
        if c.mlp_t {
            kernels::mlp_t_mixer(&lw.mix_a, &lw.mix_b, h, l, eps, b, &mut mixer);
        } else {
            let heads = c.num_heads as usize;
            kernels::attention_mixer(&lw.mix_a, &lw.mix_b, h, heads, eps, b, &mut mixer);
        }
        let mut mlp = Tap {
            observer: &mut *obs,
            layer,
            sub: Sublayer::Mlp,
        };
        kernels::channel_mlp(&lw.gate_up, &lw.down, h, l, eps, b, &mut mlp);
        obs.observe(Site::BlockOutput { layer }, h);
    }
}
