//! The run budget of the commands that run models (`run`, `golden`, `verify`, and the
//! calibration of `export --dtype fixed` and `quantize`): the multiply-accumulates a command
//! would take at most (every puzzle to `halt_max_steps` ACT steps, [`Config::macs_per_puzzle`]),
//! checked before any work against `--max-macs`, so that a hostile or mistaken `.trm` file
//! cannot pin a machine for days.
//!
//! [`Config::validate`] already bounds one puzzle ([`trm_nostd::config::MAX_MACS_PER_PUZZLE`],
//! about an hour on a host); the budget bounds the whole command. The default,
//! [`DEFAULT_MAX_MACS`] (1e14: a few hours on one host core), runs every paper config on a few
//! puzzles: Sudoku-Extreme mlp_t (2.1e11 per puzzle) on about 480 puzzle runs, ARC-AGI and
//! Maze-Hard (1.9e12) on about 50.

use anyhow::bail;
use trm_nostd::Config;

/// The default `--max-macs`: 1e14 multiply-accumulates.
pub const DEFAULT_MAX_MACS: u64 = 100_000_000_000_000;

/// Checks that `runs` puzzle solves (puzzles times models) of a model with config `c` fit in
/// `max_macs`; the error names every number and the option to raise. `what` names the work
/// (`run`, `calibration`, ...).
pub fn check(c: &Config, runs: usize, max_macs: u64, what: &str) -> anyhow::Result<()> {
    let per_puzzle = c.macs_per_puzzle();
    let total = per_puzzle.saturating_mul(runs as u64);
    if total > max_macs {
        bail!(
            "the {what} would take up to {total:.3e} multiply-accumulates ({runs} puzzle runs x \
             {per_puzzle:.3e}: {} ACT steps of {:.3e}), more than --max-macs {max_macs:.3e}; \
             give fewer puzzles, or a larger --max-macs if this is intended",
            c.halt_max_steps,
            c.macs_per_act_step() as f64,
            total = total as f64,
            per_puzzle = per_puzzle as f64,
            max_macs = max_macs as f64,
        );
    }
    Ok(())
}

/// Parses a `--max-macs` value: a positive integer, or a number in scientific notation
/// (`1e15`) that is a whole number within `u64`.
pub fn parse_max_macs(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return if n > 0 {
            Ok(n)
        } else {
            Err("must be positive".to_string())
        };
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number (e.g. 1e14)"))?;
    // 2^64 is the first f64 beyond u64's range.
    if !(v.is_finite() && (1.0..18_446_744_073_709_551_616.0).contains(&v) && v.fract() == 0.0) {
        return Err(format!(
            "`{s}` is not a positive whole number of multiply-accumulates below 2^64"
        ));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_macs_parse_as_positive_whole_numbers() {
        assert_eq!(parse_max_macs("1000"), Ok(1000));
        assert_eq!(parse_max_macs("1e14"), Ok(DEFAULT_MAX_MACS));
        assert_eq!(parse_max_macs("2.5e3"), Ok(2500));
        for bad in ["0", "-1", "NaN", "inf", "1e30", "0.5", "1.5", "", "many"] {
            assert!(parse_max_macs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_runs_the_paper_configs_on_a_few_puzzles() {
        let sudoku = Config::sudoku_mlp_t();
        check(&sudoku, 400, DEFAULT_MAX_MACS, "run").unwrap();
        let mut arc = Config::sudoku_attention();
        arc.h_cycles = 3;
        arc.l_cycles = 4;
        arc.seq_len = 900;
        arc.vocab_size = 12;
        check(&arc, 40, DEFAULT_MAX_MACS, "run").unwrap();
        let err = check(&arc, 1000, DEFAULT_MAX_MACS, "run")
            .unwrap_err()
            .to_string();
        assert!(err.contains("1000 puzzle runs"), "{err}");
        assert!(err.contains("--max-macs"), "{err}");
    }
}
