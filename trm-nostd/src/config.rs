//! The TRM architecture settings shared by the trainer, the exporter and the engines.
//!
//! Field names follow the reference implementation's `arch` config
//! (`TinyRecursiveReasoningModel_ACTV1Config`), so a reference `all_config.yaml` maps one to one.

use core::fmt;
use serde::{Deserialize, Serialize};

/// How positions enter the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PosEncoding {
    /// Rotary embeddings on queries and keys (rotate-half convention, `rope_theta`).
    Rope,
    /// A learned `[seq_total, hidden]` table added to the input embedding, scaled by 1/sqrt(2).
    Learned,
    /// No position information (the paper's Sudoku mlp_t setting).
    None,
}

/// Every architecture setting of a TRM model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Model width D (`hidden_size`).
    pub hidden_size: u32,
    /// Attention heads; `hidden_size` must be a multiple. Unused by mlp_t blocks.
    pub num_heads: u32,
    /// SwiGLU expansion factor (4.0 in the paper).
    pub expansion: f32,
    /// Blocks in the one shared network (`L_layers`, 2 in the paper).
    pub l_layers: u32,
    /// Outer recursion count per ACT step (`H_cycles`, 3 in the paper).
    pub h_cycles: u32,
    /// Inner recursion count per outer cycle (`L_cycles`: 6 Sudoku, 4 others).
    pub l_cycles: u32,
    /// Token mixing by a SwiGLU over the sequence axis instead of attention.
    pub mlp_t: bool,
    /// Position encoding.
    pub pos_encodings: PosEncoding,
    /// Values per puzzle embedding (0: no puzzle embedding).
    pub puzzle_emb_ndim: u32,
    /// Prefix tokens holding the puzzle embedding (16 in the paper). Already resolved: the
    /// reference's "0 means ceil(ndim / hidden)" is applied by [`Config::resolve_puzzle_emb_len`].
    pub puzzle_emb_len: u32,
    /// Number of puzzle identifiers (rows of the puzzle embedding table).
    pub num_puzzle_identifiers: u32,
    /// Token vocabulary (Sudoku: 11).
    pub vocab_size: u32,
    /// Puzzle tokens, without the prefix (Sudoku: 81).
    pub seq_len: u32,
    /// Maximum ACT steps (16 in the paper).
    pub halt_max_steps: u32,
    /// RMSNorm epsilon (1e-5).
    pub rms_norm_eps: f32,
    /// RoPE base (1e4).
    pub rope_theta: f32,
}

/// Why a [`Config`] is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A size that must be positive is zero.
    Zero(&'static str),
    /// A size is beyond what the engines support.
    TooLarge(&'static str),
    /// `hidden_size` is not a multiple of `num_heads`, or the head dimension is odd (RoPE).
    BadHeads,
    /// `expansion`, `rms_norm_eps` or `rope_theta` is not a finite positive number.
    BadFloat(&'static str),
    /// `puzzle_emb_ndim` does not fit in `puzzle_emb_len * hidden_size` values.
    PuzzleEmbTooWide,
    /// One puzzle (`halt_max_steps` ACT steps) would take more work than the engines run in
    /// sane time: more multiply-accumulates than [`MAX_MACS_PER_PUZZLE`], or more block
    /// applications than [`MAX_BLOCK_RUNS_PER_PUZZLE`].
    TooMuchWork {
        /// What is counted (`multiply-accumulates`, `block applications`).
        what: &'static str,
        /// The count for one puzzle.
        count: u64,
        /// The limit.
        limit: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero(what) => write!(f, "config: {what} must be positive"),
            ConfigError::TooLarge(what) => write!(f, "config: {what} is too large"),
            ConfigError::BadHeads => write!(
                f,
                "config: hidden_size must be a multiple of num_heads with an even head dimension"
            ),
            ConfigError::BadFloat(what) => {
                write!(f, "config: {what} must be a finite positive number")
            }
            ConfigError::PuzzleEmbTooWide => write!(
                f,
                "config: puzzle_emb_ndim exceeds puzzle_emb_len * hidden_size"
            ),
            ConfigError::TooMuchWork { what, count, limit } => write!(
                f,
                "config: one puzzle (halt_max_steps ACT steps) takes {count} {what}, more than \
                 the engines' limit of {limit}"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Limit on every size field, so that products of sizes always fit in `usize` on 32-bit targets.
pub const MAX_DIM: u32 = 1 << 16;

/// Most multiply-accumulates one puzzle may take (`halt_max_steps` ACT steps of
/// [`Config::macs_per_act_step`]): 2^45, about 3.5e13. The paper's largest configs are far
/// below: ARC-AGI and Maze-Hard (attention, D=512, 900 + 16 tokens, H_cycles 3, L_cycles 4,
/// 16 steps) take about 1.9e12 (an 18x margin), Sudoku-Extreme mlp_t (D=512) 2.1e11 (170x).
/// At the host engines' 10 GMAC/s or so, one puzzle at the limit takes about an hour; the
/// format's other maxima (1024 cycles and steps, 64 layers) together would take years.
pub const MAX_MACS_PER_PUZZLE: u64 = 1 << 45;

/// Most applications of the network's blocks one puzzle may take (`halt_max_steps * H_cycles *
/// (L_cycles + 1) * L_layers`): 2^20. The paper's configs take 672 (Sudoku: 16 * 3 * 7 * 2) and
/// 480 (ARC, Maze); the bound keeps tiny but deeply recursive configs, whose cost is the
/// per-application overhead rather than multiply-accumulates, in sane time too.
pub const MAX_BLOCK_RUNS_PER_PUZZLE: u64 = 1 << 20;

/// `ceil(a / b) * b`.
const fn find_multiple(a: u64, b: u64) -> u64 {
    a.div_ceil(b) * b
}

/// The reference SwiGLU intermediate width: `ceil(round(expansion * n * 2 / 3) / 256) * 256`.
///
/// `round` is Python's `round` on a float, which rounds half to even; the argument here is
/// computed in f64 exactly as Python does.
pub fn swiglu_inter(n: u32, expansion: f32) -> u32 {
    let v = expansion as f64 * n as f64 * 2.0 / 3.0;
    let r = round_half_even(v);
    find_multiple(r as u64, 256) as u32
}

fn round_half_even(v: f64) -> f64 {
    let f = libm::floor(v);
    let diff = v - f;
    // Round up above one half, and at exactly one half only when the floor is odd.
    let up = diff > 0.5 || (diff == 0.5 && libm::fmod(f, 2.0) != 0.0);
    if up { f + 1.0 } else { f }
}

impl Config {
    /// The reference rule for the prefix length: `puzzle_emb_len` if non-zero, else
    /// `ceil(puzzle_emb_ndim / hidden_size)`.
    pub fn resolve_puzzle_emb_len(
        puzzle_emb_len: u32,
        puzzle_emb_ndim: u32,
        hidden_size: u32,
    ) -> u32 {
        if puzzle_emb_len != 0 {
            puzzle_emb_len
        } else if hidden_size == 0 {
            0
        } else {
            puzzle_emb_ndim.div_ceil(hidden_size)
        }
    }

    /// The paper's Sudoku-Extreme mlp_t model (D=512, 5.0M parameters).
    pub const fn sudoku_mlp_t() -> Self {
        Config {
            hidden_size: 512,
            num_heads: 8,
            expansion: 4.0,
            l_layers: 2,
            h_cycles: 3,
            l_cycles: 6,
            mlp_t: true,
            pos_encodings: PosEncoding::None,
            puzzle_emb_ndim: 512,
            puzzle_emb_len: 16,
            num_puzzle_identifiers: 1,
            vocab_size: 11,
            seq_len: 81,
            halt_max_steps: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
        }
    }

    /// The paper's Sudoku-Extreme attention model (D=512, RoPE, 6.8M parameters).
    pub const fn sudoku_attention() -> Self {
        let mut c = Self::sudoku_mlp_t();
        c.mlp_t = false;
        c.pos_encodings = PosEncoding::Rope;
        c
    }

    /// A small Sudoku mlp_t model (D=128) of the size the project's demos train.
    pub const fn sudoku_mlp_t_d128() -> Self {
        let mut c = Self::sudoku_mlp_t();
        c.hidden_size = 128;
        c.num_heads = 2;
        c.puzzle_emb_ndim = 128;
        c
    }

    /// Checks every field; the engines and the file loader accept only validated configs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            (self.hidden_size, "hidden_size"),
            (self.num_heads, "num_heads"),
            (self.l_layers, "l_layers"),
            (self.h_cycles, "h_cycles"),
            (self.l_cycles, "l_cycles"),
            (self.vocab_size, "vocab_size"),
            (self.seq_len, "seq_len"),
            (self.halt_max_steps, "halt_max_steps"),
            (self.num_puzzle_identifiers, "num_puzzle_identifiers"),
        ];
        for (v, name) in sizes {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
            if v > MAX_DIM {
                return Err(ConfigError::TooLarge(name));
            }
        }
        if self.puzzle_emb_len > MAX_DIM {
            return Err(ConfigError::TooLarge("puzzle_emb_len"));
        }
        if self.vocab_size > 256 {
            // Tokens are bytes in the engines' API.
            return Err(ConfigError::TooLarge("vocab_size"));
        }
        if self.l_layers > 64
            || self.h_cycles > 1024
            || self.l_cycles > 1024
            || self.halt_max_steps > 1024
        {
            return Err(ConfigError::TooLarge("recursion counts"));
        }
        if !self.hidden_size.is_multiple_of(self.num_heads)
            || !(self.hidden_size / self.num_heads).is_multiple_of(2)
        {
            return Err(ConfigError::BadHeads);
        }
        for (v, name) in [
            (self.expansion, "expansion"),
            (self.rms_norm_eps, "rms_norm_eps"),
            (self.rope_theta, "rope_theta"),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::BadFloat(name));
            }
        }
        if self.expansion > 64.0 {
            return Err(ConfigError::TooLarge("expansion"));
        }
        if self.puzzle_emb_ndim as u64 > self.puzzle_emb_len as u64 * self.hidden_size as u64 {
            return Err(ConfigError::PuzzleEmbTooWide);
        }
        if self.seq_total() as u32 > MAX_DIM {
            return Err(ConfigError::TooLarge("seq_len + puzzle_emb_len"));
        }
        // Last, with every size in range: the work of one puzzle.
        for (what, count, limit) in [
            (
                "block applications",
                self.block_runs_per_puzzle(),
                MAX_BLOCK_RUNS_PER_PUZZLE,
            ),
            (
                "multiply-accumulates",
                self.macs_per_puzzle(),
                MAX_MACS_PER_PUZZLE,
            ),
        ] {
            if count > limit {
                return Err(ConfigError::TooMuchWork { what, count, limit });
            }
        }
        Ok(())
    }

    /// Hidden width D.
    pub const fn d(&self) -> usize {
        self.hidden_size as usize
    }

    /// Sequence length inside the network: `seq_len + puzzle_emb_len` (Sudoku: 97).
    pub const fn seq_total(&self) -> usize {
        self.seq_len as usize + self.puzzle_emb_len as usize
    }

    /// Per-head dimension.
    pub const fn head_dim(&self) -> usize {
        (self.hidden_size / self.num_heads) as usize
    }

    /// SwiGLU intermediate width of the channel MLP (over D).
    pub fn mlp_inter(&self) -> usize {
        swiglu_inter(self.hidden_size, self.expansion) as usize
    }

    /// SwiGLU intermediate width of the mlp_t token mixer (over the sequence, L = seq_total).
    pub fn mlp_t_inter(&self) -> usize {
        swiglu_inter(self.seq_total() as u32, self.expansion) as usize
    }

    /// Number of trained scalars (puzzle embedding table included; buffers H_init/L_init not).
    pub fn parameter_count(&self) -> u64 {
        crate::tensor::TensorId::all(self)
            .filter(|t| t.is_trained())
            .map(|t| t.shape(self).numel() as u64)
            .sum()
    }

    /// Multiply-accumulates of one ACT step for batch 1 (matrix products only). Saturates at
    /// `u64::MAX` (only for configs [`Config::validate`] rejects).
    pub fn macs_per_act_step(&self) -> u64 {
        let l = self.seq_total() as u64;
        let d = self.d() as u64;
        let inter = self.mlp_inter() as u64;
        let per_block_mlp = l.saturating_mul(d.saturating_mul(3).saturating_mul(inter));
        let mixer = if self.mlp_t {
            let lt = self.mlp_t_inter() as u64;
            d.saturating_mul(l.saturating_mul(3).saturating_mul(lt))
        } else {
            // qkv + o projections, scores and weighted values
            let proj = l.saturating_mul(d).saturating_mul(4 * d);
            proj.saturating_add(l.saturating_mul(l).saturating_mul(2 * d))
        };
        let per_net = (self.l_layers as u64).saturating_mul(per_block_mlp.saturating_add(mixer));
        let nets = self.h_cycles as u64 * (self.l_cycles as u64 + 1);
        let heads = l
            .saturating_mul(d)
            .saturating_mul(self.vocab_size as u64)
            .saturating_add(2 * d);
        per_net.saturating_mul(nets).saturating_add(heads)
    }

    /// Multiply-accumulates of one puzzle at most: `halt_max_steps` ACT steps (saturating).
    pub fn macs_per_puzzle(&self) -> u64 {
        self.macs_per_act_step()
            .saturating_mul(self.halt_max_steps as u64)
    }

    /// Applications of a network block in one puzzle at most: `halt_max_steps * H_cycles *
    /// (L_cycles + 1) * L_layers` (each H cycle runs the network L_cycles times on z and once
    /// on y).
    pub fn block_runs_per_puzzle(&self) -> u64 {
        (self.halt_max_steps as u64)
            .saturating_mul(self.h_cycles as u64)
            .saturating_mul(self.l_cycles as u64 + 1)
            .saturating_mul(self.l_layers as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_inter_matches_reference_rule() {
        // round(4 * 512 * 2/3) = round(1365.33) = 1365 -> 1536
        assert_eq!(swiglu_inter(512, 4.0), 1536);
        // L = 97: round(258.67) = 259 -> 512
        assert_eq!(swiglu_inter(97, 4.0), 512);
        // D = 64: round(170.67) = 171 -> 256
        assert_eq!(swiglu_inter(64, 4.0), 256);
        // exact multiple stays: 384 * 2/3 = 256
        assert_eq!(swiglu_inter(96, 4.0), 256);
        // half to even: 1.5 * 3 * 2/3 = 3.0; 0.75*1*2/3=0.5 -> 0 -> 0
        assert_eq!(swiglu_inter(1, 0.75), 0);
    }

    #[test]
    fn paper_configs_validate_and_count() {
        let c = Config::sudoku_mlp_t();
        c.validate().unwrap();
        assert_eq!(c.seq_total(), 97);
        // The paper quotes 5.0M for mlp_t and 6.8M for attention (with the 1-row puzzle table).
        let p = c.parameter_count();
        assert!((4_900_000..5_200_000).contains(&p), "{p}");
        let a = Config::sudoku_attention();
        a.validate().unwrap();
        let pa = a.parameter_count();
        assert!((6_700_000..7_000_000).contains(&pa), "{pa}");
        // DESIGN.md: about 12.8 GMAC per ACT step for mlp_t D=512.
        let macs = c.macs_per_act_step();
        assert!((12_500_000_000..13_100_000_000).contains(&macs), "{macs}");
    }

    #[test]
    fn validation_rejects_bad_fields() {
        let mut c = Config::sudoku_mlp_t();
        c.hidden_size = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("hidden_size")));
        let mut c = Config::sudoku_attention();
        c.num_heads = 3;
        assert_eq!(c.validate(), Err(ConfigError::BadHeads));
        let mut c = Config::sudoku_mlp_t();
        c.expansion = f32::NAN;
        assert_eq!(c.validate(), Err(ConfigError::BadFloat("expansion")));
        let mut c = Config::sudoku_mlp_t();
        c.puzzle_emb_ndim = 512 * 16 + 1;
        assert_eq!(c.validate(), Err(ConfigError::PuzzleEmbTooWide));
        let mut c = Config::sudoku_mlp_t();
        c.vocab_size = 300;
        assert_eq!(c.validate(), Err(ConfigError::TooLarge("vocab_size")));
    }

    /// The paper's ARC-AGI config (Maze-Hard has the same sizes but a vocabulary of 6).
    fn arc_attention() -> Config {
        let mut c = Config::sudoku_attention();
        c.h_cycles = 3;
        c.l_cycles = 4;
        c.seq_len = 900;
        c.vocab_size = 12;
        c
    }

    #[test]
    fn paper_configs_are_within_the_work_limits_with_margin() {
        let arc = arc_attention();
        arc.validate().unwrap();
        let mut maze = arc;
        maze.vocab_size = 6;
        maze.validate().unwrap();
        for (c, at_least) in [
            (Config::sudoku_mlp_t(), 150),
            (Config::sudoku_attention(), 100),
            (arc, 15),
            (maze, 15),
        ] {
            let macs = c.macs_per_puzzle();
            assert!(macs * at_least < MAX_MACS_PER_PUZZLE, "{macs} x {at_least}");
            assert!(c.block_runs_per_puzzle() * 1000 < MAX_BLOCK_RUNS_PER_PUZZLE);
        }
        // ARC: about 1.9e12 multiply-accumulates per puzzle.
        let m = arc.macs_per_puzzle();
        assert!((1_800_000_000_000..2_000_000_000_000).contains(&m), "{m}");
        assert_eq!(Config::sudoku_mlp_t().block_runs_per_puzzle(), 672);
    }

    #[test]
    fn configs_beyond_the_work_limits_are_rejected_naming_the_numbers() {
        // Every recursion count at the old maxima: each within its own range, far beyond the
        // work a puzzle may take.
        let mut c = Config::sudoku_mlp_t_d128();
        c.h_cycles = 1024;
        c.l_cycles = 1024;
        c.halt_max_steps = 1024;
        let Err(ConfigError::TooMuchWork { what, count, limit }) = c.validate() else {
            panic!("{:?}", c.validate());
        };
        assert_eq!(what, "block applications");
        assert_eq!(count, 1024 * 1024 * 1025 * 2);
        assert_eq!(limit, MAX_BLOCK_RUNS_PER_PUZZLE);
        let text = c.validate().unwrap_err().to_string();
        assert!(text.contains(&count.to_string()), "{text}");
        // Few block applications, each huge: the multiply-accumulates bound.
        let mut c = arc_attention();
        c.hidden_size = 4096;
        c.num_heads = 32;
        c.puzzle_emb_ndim = 4096;
        c.seq_len = 8000;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooMuchWork {
                what: "multiply-accumulates",
                ..
            })
        ));
        // The counts saturate instead of overflowing for any field values.
        let mut c = Config::sudoku_attention();
        for v in [
            &mut c.hidden_size,
            &mut c.seq_len,
            &mut c.puzzle_emb_len,
            &mut c.h_cycles,
            &mut c.l_cycles,
            &mut c.l_layers,
            &mut c.halt_max_steps,
            &mut c.vocab_size,
        ] {
            *v = u32::MAX;
        }
        c.expansion = 64.0;
        assert_eq!(c.macs_per_puzzle(), u64::MAX);
        assert_eq!(c.block_runs_per_puzzle(), u64::MAX);
        assert!(c.validate().is_err());
    }

    #[test]
    fn puzzle_emb_len_rule() {
        assert_eq!(Config::resolve_puzzle_emb_len(16, 512, 512), 16);
        assert_eq!(Config::resolve_puzzle_emb_len(0, 513, 512), 2);
        assert_eq!(Config::resolve_puzzle_emb_len(0, 0, 512), 0);
    }
}
