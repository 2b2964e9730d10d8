//! Observing the float forward pass: an [`Observer`] sees the values at every place where the
//! fixed-point engine rescales ([`Site`]), as [`FloatEngine::step_observed`] computes them.
//!
//! The exporter's calibration is the float engine plus an observer that records the largest
//! `|value|` per site. [`Engine::step`](crate::Engine::step) is `step_observed` with
//! [`NoObserver`], whose empty `observe` compiles away: the plain step costs nothing extra.
//!
//! x, y, z and the logits are not sites: they are read through the
//! [`Engine`](crate::Engine) accessors (`x`, `y`, `z`, `logits`).
//!
//! [`FloatEngine::step_observed`]: crate::FloatEngine::step_observed

/// Sees the values at each [`Site`] of a float ACT step.
pub trait Observer {
    /// Called with the values at `site` (lengths in [`Site`]'s documentation), in the order the
    /// engine computes them; the values are the engine's own, before it uses them further.
    fn observe(&mut self, site: Site, values: &[f32]);
}

/// The observer that looks at nothing (compiles away).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoObserver;

impl Observer for NoObserver {
    #[inline(always)]
    fn observe(&mut self, _site: Site, _values: &[f32]) {}
}

impl<O: Observer + ?Sized> Observer for &mut O {
    #[inline(always)]
    fn observe(&mut self, site: Site, values: &[f32]) {
        (**self).observe(site, values);
    }
}

/// The two sub-layers of a block, each followed by its residual and RMSNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sublayer {
    /// The token mixer: the mlp_t SwiGLU over the sequence axis, or attention.
    Mixer,
    /// The channel SwiGLU.
    Mlp,
}

/// A place in the float forward pass where the fixed-point engine requantizes. `layer` is the
/// block index; `L` is `seq_len + puzzle_emb_len`, `D` the hidden size, `inter` the SwiGLU's
/// hidden width ([`Config::mlp_inter`](crate::Config::mlp_inter) for the channel SwiGLU,
/// [`Config::mlp_t_inter`](crate::Config::mlp_t_inter) for the mlp_t mixer), `n` the width of
/// the rows a sub-layer works on (`L` for the mlp_t mixer, which works on the transposed
/// state; `D` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// The network input `z + y + x` (z update) or `y + z` (y update): `[L, D]`, once per
    /// network application.
    NetInput,
    /// A SwiGLU's gate projection (before SiLU): `[inter]`, once per row.
    Gate {
        /// Block index.
        layer: u8,
        /// Which SwiGLU.
        sub: Sublayer,
    },
    /// A SwiGLU's up projection: `[inter]`, once per row.
    Up {
        /// Block index.
        layer: u8,
        /// Which SwiGLU.
        sub: Sublayer,
    },
    /// A SwiGLU's product `silu(gate) * up` (the input of `down`): `[inter]`, once per row.
    Product {
        /// Block index.
        layer: u8,
        /// Which SwiGLU.
        sub: Sublayer,
    },
    /// Attention queries of one position, heads concatenated: `[D]`, once per row as
    /// projected and, with RoPE, once more as rotated.
    Query {
        /// Block index.
        layer: u8,
        /// After RoPE.
        rotated: bool,
    },
    /// Attention keys of one position, like [`Site::Query`].
    Key {
        /// Block index.
        layer: u8,
        /// After RoPE.
        rotated: bool,
    },
    /// Attention values of one position: `[D]`, once per row.
    Value {
        /// Block index.
        layer: u8,
    },
    /// Attention scores `q_i . k_j / sqrt(head_dim)` of one query position `i` and head, over
    /// every key position `j` (before the softmax): `[L]`.
    Scores {
        /// Block index.
        layer: u8,
    },
    /// A sub-layer's pre-norm residual `h + sublayer(h)` of one row: `[n]`, once per row.
    Residual {
        /// Block index.
        layer: u8,
        /// Which sub-layer.
        sub: Sublayer,
    },
    /// The block output (after the channel SwiGLU's norm): `[L, D]`. The last block's output
    /// is the network's output, the new z or y.
    BlockOutput {
        /// Block index.
        layer: u8,
    },
    /// The halting head's products `q_head(y[0])` before the bias: `[2]` (halt, continue),
    /// once per step.
    QHead,
}

impl Site {
    /// The block index of a block's site (`None` for [`Site::NetInput`] and
    /// [`Site::QHead`]).
    pub fn layer(&self) -> Option<u8> {
        match *self {
            Site::NetInput | Site::QHead => None,
            Site::Gate { layer, .. }
            | Site::Up { layer, .. }
            | Site::Product { layer, .. }
            | Site::Query { layer, .. }
            | Site::Key { layer, .. }
            | Site::Value { layer }
            | Site::Scores { layer }
            | Site::Residual { layer, .. }
            | Site::BlockOutput { layer } => Some(layer),
        }
    }
}

/// What a block kernel reports to: an observer, and the block and sub-layer the kernel runs
/// as (the [`Site`]s it reports carry them).
#[derive(Debug)]
pub struct Tap<O: Observer> {
    /// The observer.
    pub observer: O,
    /// Block index.
    pub layer: u8,
    /// The sub-layer the kernel computes.
    pub sub: Sublayer,
}

impl Tap<NoObserver> {
    /// A tap that reports nothing (for running a kernel alone).
    pub fn none() -> Self {
        Tap {
            observer: NoObserver,
            layer: 0,
            sub: Sublayer::Mixer,
        }
    }
}

impl<O: Observer> Tap<O> {
    /// Reports `values` at `site`.
    #[inline(always)]
    pub(crate) fn see(&mut self, site: Site, values: &[f32]) {
        self.observer.observe(site, values);
    }
}
