//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask sizes`: for Sudoku configs from D=16 to the paper's D=512, parameters, MACs per
//!   ACT step, `.trm` flash bytes (f32, bf16 and fixed point, each computed by writing the file)
//!   and the engines' RAM arenas (float minimum, fixed point), then the largest model each
//!   target board can hold, float and fixed.
//! - `cargo xtask elf-size <elf>...`: flash and RAM a firmware ELF takes, from its section
//!   headers (what `llvm-size -A` lists, summed by where each section lives).

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, SectionFlags, SectionKind};
use trm_nostd::fixed::tables;
use trm_nostd::format::{FIXED_I8_I16, ModelWriter, NumericScheme, write_model};
use trm_nostd::{
    Config, DType, Engine, FixedEngine, FloatEngine, LayerTensor, PosEncoding, TensorId,
};

/// A board the firmware examples target.
struct Board {
    name: &'static str,
    /// Flash for code and models, bytes.
    flash: u64,
    /// RAM the engine arena may use, bytes (the rest of the chip's RAM holds stack and buffers).
    arena: u64,
    /// What `arena` is.
    note: &'static str,
}

/// Code and constants of the firmware beside the model (measured: 105 KB on the RP2040,
/// see firmware-examples/README.md), rounded up.
const CODE_BYTES: u64 = 128 << 10;

const BOARDS: [Board; 4] = [
    Board {
        name: "STM32H743 Nucleo (Cortex-M7, 2 MB flash / 1 MB RAM)",
        flash: 2 << 20,
        arena: 512 << 10,
        note: "AXI SRAM (512 KB); DTCM holds stack and RTT",
    },
    Board {
        name: "RP2040 Pico (Cortex-M0+, 2 MB flash / 264 KB RAM)",
        flash: 2 << 20,
        arena: 200 << 10,
        note: "200 KB of the 264 KB SRAM; the rest is stack",
    },
    Board {
        name: "ESP32-C3 (RISC-V, 4 MB flash / 400 KB RAM), for reference",
        flash: 4 << 20,
        arena: 300 << 10,
        note: "300 KB of the 400 KB SRAM (assumed free for data)",
    },
    Board {
        name: "QEMU mps2-an386 (Cortex-M4F, 4 MB code / 4 MB RAM)",
        flash: 4 << 20,
        arena: 2 << 20,
        note: "the 2 MB static scratch of the 4 MB RAM",
    },
];

fn configs() -> Vec<(String, Config)> {
    let mut out = vec![
        ("mlp_t D=512 (paper)".to_string(), Config::sudoku_mlp_t()),
        (
            "attention D=512 (paper)".to_string(),
            Config::sudoku_attention(),
        ),
        ("mlp_t D=128".to_string(), Config::sudoku_mlp_t_d128()),
    ];
    for (d, heads) in [
        (256, 4),
        (192, 3),
        (96, 2),
        (64, 2),
        (48, 2),
        (32, 2),
        (16, 1),
    ] {
        for layers in [2, 1] {
            let mut c = Config::sudoku_mlp_t();
            c.hidden_size = d;
            c.num_heads = heads;
            c.puzzle_emb_ndim = d;
            c.l_layers = layers;
            out.push((format!("mlp_t D={d}"), c));
        }
    }
    // The project's own models (D=64: the real boards' default; D=32: the 6-blank one the
    // emulated Pico and the golden fixtures run), when they are there.
    for name in ["sudoku-d64", "sudoku-d32"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../firmware-examples/models/{name}-fixed.trm"));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(m) = trm_nostd::Model::parse(&bytes)
        {
            out.push((
                format!(
                    "models/{name} (expansion {}, {} prefix tokens)",
                    m.config().expansion,
                    m.config().puzzle_emb_len
                ),
                *m.config(),
            ));
        }
    }
    out
}

/// Exact `.trm` size of a float file: writes one of zero weights with this config.
fn file_bytes(config: &Config, dtype: DType) -> Result<u64> {
    let mut tensors = Vec::new();
    for id in TensorId::all(config) {
        tensors.push((id, vec![0f32; id.shape(config).numel()]));
    }
    let refs: Vec<(TensorId, &[f32])> = tensors.iter().map(|(i, v)| (*i, v.as_slice())).collect();
    let bytes = write_model(*config, NumericScheme::Float(dtype), refs)?;
    Ok(bytes.len() as u64)
}

/// Exact `.trm` size of a fixed-point file (int8 weights, int16 activations, SiLU tables of
/// `silu_knots` entries; the table uses the exporter's default): writes one with zero data and
/// zero tables of the lengths `trm_nostd::fixed::tables` defines.
fn fixed_file_bytes(c: &Config, silu_knots: usize) -> Result<u64> {
    let mut w = ModelWriter::new(*c, FIXED_I8_I16)?;
    for id in TensorId::all(c) {
        let rows = id.shape(c).rows as usize;
        let (dtype, words) = match id {
            TensorId::EmbedTokens => {
                let p = if c.pos_encodings == PosEncoding::Rope {
                    c.seq_total() * c.head_dim() / 2
                } else {
                    0
                };
                (DType::I16, tables::GLOBAL_WORDS + 2 * tables::i16_words(p))
            }
            TensorId::EmbedPos | TensorId::PuzzleEmb | TensorId::HInit | TensorId::LInit => {
                (DType::I16, 0)
            }
            TensorId::LmHead | TensorId::QHeadWeight => (DType::I8, tables::head_words(rows)),
            TensorId::QHeadBias => (DType::I32, 0),
            TensorId::Layer { tensor, .. } => match tensor {
                LayerTensor::MlpTGateUp | LayerTensor::MlpGateUp => {
                    (DType::I8, tables::gate_up_words_knots(rows, silu_knots))
                }
                LayerTensor::QkvProj => (DType::I8, tables::qkv_words(rows)),
                LayerTensor::OProj | LayerTensor::MlpTDown | LayerTensor::MlpDown => {
                    (DType::I8, tables::down_words(rows))
                }
            },
        };
        let n = id.shape(c).numel() * dtype.size();
        w.add_raw(id, dtype, vec![0; n], vec![0; words * 4])?;
    }
    Ok(w.finish()?.len() as u64)
}

/// One config's sizes.
struct Row {
    name: String,
    c: Config,
    f32b: u64,
    bf16b: u64,
    fixedb: u64,
    float_arena: u64,
    fixed_arena: u64,
}

fn rows() -> Result<Vec<Row>> {
    configs()
        .into_iter()
        .map(|(name, c)| {
            c.validate()?;
            let fx = FixedEngine::scratch_len(&c);
            Ok(Row {
                name,
                c,
                f32b: file_bytes(&c, DType::F32)?,
                bf16b: file_bytes(&c, DType::BF16)?,
                fixedb: fixed_file_bytes(&c, trm_nostd::fixed::prepare::DEFAULT_SILU_KNOTS)?,
                float_arena: FloatEngine::scratch_len(&c).bytes() as u64,
                // The firmware app's arena: the i16 part packed into whole f32 words.
                fixed_arena: fx.f32_words() as u64 * 4,
            })
        })
        .collect()
}

fn kb(b: u64) -> String {
    format!("{:.1} KB", b as f64 / 1024.0)
}

fn sizes() -> Result<()> {
    let rows = rows()?;
    println!(
        "| config | D | layers | params | MAC / ACT step | flash f32 | flash bf16 | flash fixed | RAM arena float | RAM arena fixed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.c.hidden_size,
            r.c.l_layers,
            r.c.parameter_count(),
            r.c.macs_per_act_step(),
            kb(r.f32b),
            kb(r.bf16b),
            kb(r.fixedb),
            kb(r.float_arena),
            kb(r.fixed_arena)
        );
    }
    println!();
    println!(
        "Flash available to the model: the board's flash less {} for code; arena: see the RAM column.",
        kb(CODE_BYTES)
    );
    println!();
    println!(
        "| board | flash for the model | RAM for the arena | largest float model (f32, bf16) | largest fixed model |"
    );
    println!("|---|---:|---:|---|---|");
    for b in BOARDS {
        let room = b.flash - CODE_BYTES;
        // The largest (most parameters) of those whose file and arena fit.
        let fits = |file: fn(&Row) -> u64, arena: fn(&Row) -> u64| {
            rows.iter()
                .filter(|r| file(r) <= room && arena(r) <= b.arena)
                .max_by_key(|r| r.c.parameter_count())
                .map_or("none".to_string(), |r| {
                    format!(
                        "{}, L={} ({} + {} arena)",
                        r.name,
                        r.c.l_layers,
                        kb(file(r)),
                        kb(arena(r))
                    )
                })
        };
        let f32_fit = fits(|r| r.f32b, |r| r.float_arena);
        let bf16_fit = fits(|r| r.bf16b, |r| r.float_arena);
        let fixed_fit = fits(|r| r.fixedb, |r| r.fixed_arena);
        println!(
            "| {} | {} | {} ({}) | f32: {f32_fit}; bf16: {bf16_fit} | {fixed_fit} |",
            b.name,
            kb(room),
            kb(b.arena),
            b.note
        );
    }
    Ok(())
}

/// An allocated ELF section: name, address, size.
type Section = (String, u64, u64);

/// Flash and RAM of a firmware ELF: allocated sections with contents are in flash (and in RAM
/// too when writable: `.data` is copied at start), those without (`.bss`, `.uninit`, NOLOAD
/// sections) only in RAM.
fn elf_size(path: &str) -> Result<(u64, u64, Vec<Section>)> {
    let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let file = object::File::parse(&*data).with_context(|| format!("parsing {path}"))?;
    let (mut flash, mut ram) = (0u64, 0u64);
    let mut list = Vec::new();
    for s in file.sections() {
        let SectionFlags::Elf { sh_flags } = s.flags() else {
            bail!("{path}: not an ELF file");
        };
        let alloc = sh_flags & u64::from(object::elf::SHF_ALLOC) != 0;
        if !alloc || s.size() == 0 {
            continue;
        }
        let write = sh_flags & u64::from(object::elf::SHF_WRITE) != 0;
        let name = s.name().unwrap_or("?").to_string();
        if s.kind() == SectionKind::UninitializedData {
            ram += s.size();
        } else {
            flash += s.size();
            if write {
                ram += s.size();
            }
        }
        list.push((name, s.address(), s.size()));
    }
    Ok((flash, ram, list))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sizes") => sizes(),
        Some("elf-size") if args.len() > 1 => {
            for path in &args[1..] {
                let (flash, ram, list) = elf_size(path)?;
                println!(
                    "{path}: flash {flash} B ({}), RAM {ram} B ({})",
                    kb(flash),
                    kb(ram)
                );
                for (name, addr, size) in list {
                    println!("  {name:<16} {addr:#010x} {size:>9}");
                }
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask sizes | cargo xtask elf-size <elf>..."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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

    /// The computed fixed size equals the size of the real fixed models the project exports
    /// (`trm-export quantize`/`export`), for each model's own config.
    #[test]
    fn fixed_size_equals_an_exported_file() {
        // The SiLU tables' knots of each (the D=32 model predates the 1025-knot default).
        for (name, want_knots) in [("sudoku-d32", 257), ("sudoku-d64", 1025)] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../firmware-examples/models/{name}-fixed.trm"));
            let bytes = std::fs::read(&path).unwrap();
            let m = trm_nostd::Model::parse(&bytes).unwrap();
            assert!(m.scheme().is_fixed());
            let c = m.config();
            let id = trm_nostd::TensorId::Layer {
                layer: 0,
                tensor: trm_nostd::LayerTensor::MlpGateUp,
            };
            let words = m.quant_table(id).unwrap().len() / 4;
            let rows = id.shape(c).rows as usize;
            let knots = trm_nostd::fixed::tables::gate_up_silu_knots(rows, words).unwrap();
            assert_eq!(knots, want_knots, "{name}");
            assert_eq!(
                fixed_file_bytes(c, knots).unwrap(),
                bytes.len() as u64,
                "{name}"
            );
        }
    }

    /// ELF sizes of a file written here: one code section, one data section, one bss section.
    #[test]
    fn elf_size_sums_sections_by_memory() {
        use object::write::{Object as WObject, StandardSection};
        let mut obj = WObject::new(
            object::BinaryFormat::Elf,
            object::Architecture::Arm,
            object::Endianness::Little,
        );
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0u8; 100], 4);
        let data = obj.section_id(StandardSection::Data);
        obj.append_section_data(data, &[1u8; 12], 4);
        let bss = obj.section_id(StandardSection::UninitializedData);
        obj.append_section_bss(bss, 4000, 4);
        let bytes = obj.write().unwrap();
        let path = std::env::temp_dir().join(format!("xtask-elf-{}.o", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let (flash, ram, _) = elf_size(path.to_str().unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((flash, ram), (100 + 12, 12 + 4000));
    }
}
