//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask sizes`: for the shipped Sudoku configs, parameters, MACs per ACT step,
//!   `.trm` flash bytes (f32 and bf16, computed by writing the file) and the engines' RAM arenas
//!   (float minimum, fixed point), beside the flash and RAM of the boards the project targets.

use anyhow::{Result, bail};
use trm_nostd::fixed::FixedEngine;
use trm_nostd::format::{NumericScheme, write_model};
use trm_nostd::{Config, DType, FloatEngine, TensorId};

/// A board the firmware examples target: name, flash bytes, RAM bytes.
const BOARDS: [(&str, u64, u64); 4] = [
    ("QEMU mps2-an386 (Cortex-M4F)", 4 << 20, 4 << 20),
    ("STM32H743 (Cortex-M7)", 2 << 20, 1 << 20),
    ("RP2040 Pico (Cortex-M0+)", 2 << 20, 264 << 10),
    ("ESP32-C3 (RISC-V)", 4 << 20, 400 << 10),
];

fn configs() -> Vec<(&'static str, Config)> {
    let mut d64 = Config::sudoku_mlp_t();
    d64.hidden_size = 64;
    d64.num_heads = 2;
    d64.puzzle_emb_ndim = 64;
    let mut d32 = d64;
    d32.hidden_size = 32;
    d32.puzzle_emb_ndim = 32;
    let mut d32_l1 = d32;
    d32_l1.l_layers = 1;
    vec![
        ("sudoku mlp_t D=512 (paper)", Config::sudoku_mlp_t()),
        ("sudoku attention D=512 (paper)", Config::sudoku_attention()),
        ("sudoku mlp_t D=128", Config::sudoku_mlp_t_d128()),
        ("sudoku mlp_t D=64", d64),
        ("sudoku mlp_t D=32", d32),
        ("sudoku mlp_t D=32, 1 layer", d32_l1),
    ]
}

/// Exact `.trm` size: writes a file of zero weights with this config.
fn file_bytes(config: &Config, dtype: DType) -> Result<u64> {
    let mut tensors = Vec::new();
    for id in TensorId::all(config) {
        tensors.push((id, vec![0f32; id.shape(config).numel()]));
    }
    let refs: Vec<(TensorId, &[f32])> = tensors.iter().map(|(i, v)| (*i, v.as_slice())).collect();
    let bytes = write_model(*config, NumericScheme::Float(dtype), refs)?;
    Ok(bytes.len() as u64)
}

fn sizes() -> Result<()> {
    println!(
        "| config | params | MAC / ACT step | .trm f32 | .trm bf16 | float arena | fixed arena |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for (name, c) in configs() {
        c.validate()?;
        let f32b = file_bytes(&c, DType::F32)?;
        let bf16b = file_bytes(&c, DType::BF16)?;
        let float_arena = FloatEngine::scratch_len(&c) as u64 * 4;
        let fx = FixedEngine::scratch_len(&c);
        let fixed_arena = fx.i16s as u64 * 2 + fx.i32s as u64 * 4;
        println!(
            "| {name} | {} | {} | {f32b} | {bf16b} | {float_arena} | {fixed_arena} |",
            c.parameter_count(),
            c.macs_per_act_step()
        );
        rows.push((name, bf16b, float_arena));
    }
    println!();
    println!("Largest of these whose bf16 file fits flash and whose float arena fits RAM:");
    for (board, flash, ram) in BOARDS {
        let best = rows
            .iter()
            .find(|(_, f, a)| *f <= flash && *a <= ram)
            .map_or("none", |(n, _, _)| n);
        println!("- {board} (flash {flash} B, RAM {ram} B): {best}");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sizes") => sizes(),
        _ => bail!("usage: cargo xtask sizes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_size_grows_with_weights_and_halves_in_bf16_payload() {
        let c = Config::sudoku_mlp_t_d128();
        let f32b = file_bytes(&c, DType::F32).unwrap();
        let bf16b = file_bytes(&c, DType::BF16).unwrap();
        let values: u64 = TensorId::all(&c).map(|t| t.shape(&c).numel() as u64).sum();
        // Payload plus metadata: at least the raw weights, at most that plus padding per tensor.
        let tensors = TensorId::all(&c).count() as u64;
        assert!(f32b >= values * 4 && f32b <= values * 4 + 64 * (tensors + 16));
        assert!(bf16b >= values * 2 && bf16b <= values * 2 + 64 * (tensors + 16));
    }
}
