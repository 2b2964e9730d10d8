//! Build-script helper shared by the firmware board crates: generates `embedded.rs`, the models
//! and puzzles a firmware carries, from `TRM_*` environment variables read at build time.
//!
//! - `TRM_MODEL`: path of a `.trm` file to embed, or several paths in the platform's `PATH`
//!   syntax (`a.trm:b.trm` on Unix); relative paths are relative to the board crate's folder.
//!   Unset or empty: no model, the firmware does a codec-only smoke run. Each file is embedded as
//!   it is, 64-byte aligned (the `.trm` section alignment), so the engine reads weights in place;
//!   an empty or malformed file is embedded too, and the firmware must report it and exit 1.
//! - `TRM_PUZZLES`: a Sudoku CSV in the public dataset layout (`source,question,answer,rating`
//!   with a header line), or for another task (maze, ARC) the CSV `trm-export puzzles` writes
//!   (`source,question,answer,puzzle_id`: token lines and the puzzle identifiers). Unset: two
//!   well-known public Sudoku puzzles built in here.
//! - `TRM_PUZZLES_N`: how many rows of `TRM_PUZZLES` to embed (default 3).
//! - `TRM_HALT`: `all` (default, the reference's evaluation: every ACT step) or `early` (stop
//!   at the first positive q_halt).
//! - `TRM_STEP_DIGESTS`: `1` (default) prints a digest line after every ACT step, `0` does not.
//! - `TRM_GOLDEN`: a golden file (`# trm-golden v1 model_crc=... halt=... puzzles=...`, then the
//!   host's `TRM-PUZZLE`/`TRM-STEP`/`TRM-DIGEST`/`TRM-RESULT` lines), or one per model in `PATH`
//!   syntax. The firmware compares its own lines with it and prints `TRM-GOLDEN match=<n>/<total>`
//!   (see `trm_fw_app::run_firmware`). When `TRM_HALT` or `TRM_STEP_DIGESTS` are unset they follow
//!   the golden file (its `halt=` field; step digests when it has `TRM-STEP` lines); set to
//!   something else they fail the build.
//!
//! The generated file defines `MODELS: &[&[u8]]`, `PUZZLES: &[trm_fw_app::Puzzle]`,
//! `GOLDEN: &[&str]`, `HALT: trm_fw_app::HaltMode`, `STEP_DIGESTS: bool` and
//! `FIRMWARE: trm_fw_app::Firmware` (all of them together). A board's `build.rs` calls
//! [`build_board`] (or [`write_embedded`]); its `main.rs` includes `$OUT_DIR/embedded.rs`.
//!
//! Bad settings (a missing file, a malformed number) fail the build with a message naming the
//! variable: this runs on the build machine, where a panic is the build script's error report.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Every variable the generated code depends on.
pub const VARS: [&str; 6] = [
    "TRM_MODEL",
    "TRM_PUZZLES",
    "TRM_PUZZLES_N",
    "TRM_HALT",
    "TRM_STEP_DIGESTS",
    "TRM_GOLDEN",
];

/// What a board crate's `build.rs` tells [`build_board`].
#[derive(Debug, Clone, Copy)]
pub struct BoardBuild<'a> {
    /// The `MEMORY` region of the board's `memory.x` the models are linked into (`FLASH`).
    pub model_region: &'a str,
    /// The model embedded when `TRM_MODEL` is unset, relative to the board crate's folder
    /// (`None`: no model, a codec-only run). `TRM_MODEL=` (set but empty) always means no model.
    pub default_model: Option<&'a str>,
}

/// Everything a board's `build.rs` does: copies its `memory.x` into `OUT_DIR` and puts that on
/// the linker's search path (cortex-m-rt's and riscv-rt's `link.x` `INCLUDE` it), then writes
/// `embedded.rs` with the models limited to `board.model_region`'s `LENGTH`.
///
/// Runs in a build script: problems (no `memory.x`, no such region, bad `TRM_*` settings) panic
/// with a message, which cargo reports as the build error.
pub fn build_board(board: &BoardBuild<'_>) {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let memory = fs::read_to_string(manifest.join("memory.x")).expect("read memory.x");
    fs::write(out.join("memory.x"), &memory).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    let region = board.model_region;
    let size = region_length(&memory, region)
        .unwrap_or_else(|| panic!("memory.x: no `{region}` region with a LENGTH"));
    let code = generate_with_default(&manifest, size, board.default_model);
    for var in VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    fs::write(out.join("embedded.rs"), code).expect("write embedded.rs");
}

/// Built-in puzzles when `TRM_PUZZLES` is unset: the Wikipedia "Sudoku" article's example and
/// Arto Inkala's 2012 puzzle, with their unique solutions.
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "wikipedia",
        "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79",
        "534678912672195348198342567859761423426853791713924856961537284287419635345286179",
    ),
    (
        "inkala2012",
        "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..",
        "812753649943682175675491283154237896369845721287169534521974368438526917796318452",
    ),
];

/// Writes `embedded.rs` into `out_dir` and prints the `cargo:rerun-if-*` lines for the
/// variables and the files they name. `manifest_dir` resolves relative paths.
///
/// `model_memory` is the size in bytes of the memory the models are linked into (the board's
/// flash or code memory). Models larger than that fail the build here with a message naming
/// `TRM_MODEL`, before the compiler copies them; models that fit alone but not beside the code
/// are left to the linker (`section ... will not fit in region ...`).
pub fn write_embedded(manifest_dir: &Path, out_dir: &Path, model_memory: u64) {
    for var in VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let code = generate(manifest_dir, model_memory);
    fs::write(out_dir.join("embedded.rs"), code).expect("write embedded.rs");
}

/// The text of `embedded.rs` for the current environment (see [`write_embedded`]).
pub fn generate(manifest_dir: &Path, model_memory: u64) -> String {
    generate_with_default(manifest_dir, model_memory, None)
}

/// [`generate`], with `default_model` (relative to `manifest_dir`) embedded when `TRM_MODEL` is
/// unset.
pub fn generate_with_default(
    manifest_dir: &Path,
    model_memory: u64,
    default_model: Option<&str>,
) -> String {
    let mut code = String::from("// Generated by trm-fw-embed; do not edit.\n");
    let paths = model_paths_or(manifest_dir, default_model);
    code.push_str(&models_code(&paths, model_memory));
    code.push_str(&puzzles_code(manifest_dir));
    let golden = golden_files(manifest_dir, paths.len());
    code.push_str(&golden_code(&golden));
    let golden_halt = common(golden.iter().map(|g| g.halt.clone()), "halt=");
    let halt = match (env::var("TRM_HALT").ok(), golden_halt) {
        (None, None) => "all".to_string(),
        (None, Some(g)) => g,
        (Some(h), None) => h,
        (Some(h), Some(g)) if h == g => h,
        (Some(h), Some(g)) => panic!("TRM_HALT={h} but TRM_GOLDEN was made with halt={g}"),
    };
    let halt = match halt.as_str() {
        "all" => "AllSteps",
        "early" => "EarlyHalt",
        other => panic!("TRM_HALT must be `all` or `early`, not {other:?}"),
    };
    let _ = writeln!(
        code,
        "/// When a solve stops (TRM_HALT).\npub const HALT: trm_fw_app::HaltMode = trm_fw_app::HaltMode::{halt};"
    );
    let golden_steps = common(golden.iter().map(|g| g.has_steps), "TRM-STEP lines");
    let digests = match (env::var("TRM_STEP_DIGESTS").ok(), golden_steps) {
        (None, g) => g.unwrap_or(true),
        (Some(v), None) => v != "0",
        (Some(v), Some(g)) if (v != "0") == g => g,
        (Some(v), Some(g)) => panic!(
            "TRM_STEP_DIGESTS={v} but TRM_GOLDEN {} TRM-STEP lines",
            if g { "has" } else { "has no" }
        ),
    };
    let _ = writeln!(
        code,
        "/// Print per-step digests (TRM_STEP_DIGESTS).\npub const STEP_DIGESTS: bool = {digests};"
    );
    code.push_str(
        "/// All of the above, for `trm_fw_app::run_firmware`.\n\
         pub static FIRMWARE: trm_fw_app::Firmware<'static> = trm_fw_app::Firmware {\n    \
         models: MODELS,\n    puzzles: PUZZLES,\n    golden: GOLDEN,\n    halt: HALT,\n    \
         step_digests: STEP_DIGESTS,\n};\n",
    );
    code
}

/// The one value every golden file agrees on; `None` without golden files. Panics (a build
/// error) when they disagree.
fn common<T: PartialEq + std::fmt::Debug>(
    mut it: impl Iterator<Item = T>,
    what: &str,
) -> Option<T> {
    let first = it.next()?;
    for other in it {
        assert!(
            other == first,
            "TRM_GOLDEN: the golden files disagree on {what} ({first:?} vs {other:?})"
        );
    }
    Some(first)
}

/// What the build needs to know of a golden file.
struct GoldenFile {
    path: PathBuf,
    /// `halt=` of the header.
    halt: String,
    /// Whether it has `TRM-STEP` lines (made with step digests).
    has_steps: bool,
}

/// The golden files of `TRM_GOLDEN`: none, or one per model.
fn golden_files(manifest_dir: &Path, models: usize) -> Vec<GoldenFile> {
    let Some(list) = env::var_os("TRM_GOLDEN") else {
        return Vec::new();
    };
    let paths: Vec<PathBuf> = env::split_paths(&list)
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| resolve(manifest_dir, &p))
        .collect();
    if paths.is_empty() {
        return Vec::new();
    }
    assert!(
        paths.len() == models,
        "TRM_GOLDEN names {} golden files for {models} models: give one per model, in the order of TRM_MODEL",
        paths.len()
    );
    paths
        .into_iter()
        .map(|path| {
            println!("cargo:rerun-if-changed={}", path.display());
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("TRM_GOLDEN: {}: {e}", path.display()));
            let header = parse_golden_header(&text)
                .unwrap_or_else(|e| panic!("TRM_GOLDEN: {}: {e}", path.display()));
            let halt = header
                .iter()
                .find(|(k, _)| k == "halt")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    panic!("TRM_GOLDEN: {}: no halt= in the header", path.display())
                });
            let has_steps = text.lines().any(|l| l.starts_with("TRM-STEP "));
            GoldenFile {
                path,
                halt,
                has_steps,
            }
        })
        .collect()
}

/// The `key=value` fields of a golden file's first line, `# trm-golden v1 k=v ...`.
pub fn parse_golden_header(text: &str) -> Result<Vec<(String, String)>, String> {
    let first = text.lines().next().unwrap_or("");
    let rest = first.strip_prefix("# trm-golden v1").ok_or_else(|| {
        format!("the first line must start with `# trm-golden v1`, not {first:?}")
    })?;
    rest.split_whitespace()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("header field {f:?} is not key=value"))
        })
        .collect()
}

/// `GOLDEN: &[&str]`.
fn golden_code(files: &[GoldenFile]) -> String {
    let mut list = String::new();
    for g in files {
        let _ = write!(list, "include_str!({:?}), ", g.path.display().to_string());
    }
    format!(
        "/// The golden files (TRM_GOLDEN), one per model; empty when unset.\n\
         pub static GOLDEN: &[&str] = &[{list}];\n"
    )
}

/// `LENGTH` of a `MEMORY` region in a linker script (`FLASH : ORIGIN = 0, LENGTH = 4M`), in
/// bytes; `K` and `M` suffixes and `0x` hex are understood. `None` when the region or its length
/// is not found.
pub fn region_length(script: &str, region: &str) -> Option<u64> {
    let line = script.lines().find(|l| {
        l.trim_start()
            .strip_prefix(region)
            .is_some_and(|rest| rest.trim_start().starts_with([':', '(']))
    })?;
    let value = line
        .split("LENGTH")
        .nth(1)?
        .trim_start()
        .strip_prefix('=')?;
    let value = value.trim().trim_end_matches([',', ';']).trim();
    let (digits, scale) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 1 << 10),
        b'M' | b'm' => (&value[..value.len() - 1], 1 << 20),
        _ => (value, 1),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(scale)
}

fn resolve(manifest_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        manifest_dir.join(p)
    }
}

/// The model paths of `TRM_MODEL`, resolved; empty when unset or empty.
pub fn model_paths(manifest_dir: &Path) -> Vec<PathBuf> {
    model_paths_or(manifest_dir, None)
}

/// The model paths of `TRM_MODEL`, resolved; `default` (resolved) when unset, nothing when set
/// but empty.
pub fn model_paths_or(manifest_dir: &Path, default: Option<&str>) -> Vec<PathBuf> {
    match env::var_os("TRM_MODEL") {
        None => default
            .map(|d| resolve(manifest_dir, Path::new(d)))
            .into_iter()
            .collect(),
        Some(list) => env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| resolve(manifest_dir, &p))
            .collect(),
    }
}

/// `MODELS: &[&[u8]]`, each file in its own 64-byte aligned static.
fn models_code(paths: &[PathBuf], model_memory: u64) -> String {
    let mut total = 0u64;
    let mut code = String::from(
        "#[repr(C, align(64))]\n#[allow(dead_code)]\nstruct Aligned64<const N: usize>([u8; N]);\n",
    );
    let mut list = String::new();
    for (i, path) in paths.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", path.display());
        let len = fs::metadata(path)
            .unwrap_or_else(|e| panic!("TRM_MODEL: {}: {e}", path.display()))
            .len();
        // Each file starts on a 64-byte boundary.
        total += len.next_multiple_of(64);
        let shown = path.display().to_string();
        let _ = writeln!(
            code,
            "/// {shown}\nstatic MODEL_{i}: Aligned64<{len}> = Aligned64(*include_bytes!({shown:?}));"
        );
        let _ = write!(list, "&MODEL_{i}.0, ");
    }
    assert!(
        total <= model_memory,
        "TRM_MODEL: the model files take {total} bytes, more than the {model_memory} bytes of \
         memory the board links them into; use a smaller model (or f16/bf16 weights)"
    );
    let _ = writeln!(
        code,
        "/// The embedded model files (TRM_MODEL), in order; empty for a codec-only run.\n\
         pub static MODELS: &[&[u8]] = &[{list}];"
    );
    code
}

/// `PUZZLES: &[Puzzle]`.
fn puzzles_code(manifest_dir: &Path) -> String {
    let mut rows: Vec<(String, String, Option<String>, u32)> = Vec::new();
    match env::var_os("TRM_PUZZLES") {
        None => {
            for (n, q, a) in BUILTIN {
                rows.push((n.to_string(), q.to_string(), Some(a.to_string()), 0));
            }
        }
        Some(path) => {
            let path = resolve(manifest_dir, Path::new(&path));
            println!("cargo:rerun-if-changed={}", path.display());
            let n: usize = env::var("TRM_PUZZLES_N")
                .map(|v| v.parse().expect("TRM_PUZZLES_N must be a number"))
                .unwrap_or(3);
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("TRM_PUZZLES={}: {e}", path.display()));
            // The fourth column holds puzzle identifiers when the header names it `puzzle_id`.
            let ids = text
                .lines()
                .next()
                .is_some_and(|h| h.trim().split(',').nth(3) == Some("puzzle_id"));
            for (i, line) in text.lines().skip(1).take(n).enumerate() {
                let f: Vec<&str> = line.trim().split(',').collect();
                let name = f
                    .first()
                    .map(|s| s.replace(|c: char| c.is_whitespace(), "_"))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| format!("row{i}"));
                // Strings are embedded as they are: the firmware validates them and reports.
                let q = f.get(1).copied().unwrap_or("").to_string();
                let a = f.get(2).map(|s| s.to_string()).filter(|s| !s.is_empty());
                let id = match f.get(3) {
                    Some(v) if ids => v.trim().parse().unwrap_or_else(|_| {
                        panic!("TRM_PUZZLES row {}: puzzle_id `{v}` is not a number", i + 1)
                    }),
                    _ => 0,
                };
                rows.push((name, q, a, id));
            }
        }
    }
    let mut code = String::from(
        "/// The embedded puzzles (TRM_PUZZLES or the built-in list).\npub static PUZZLES: &[trm_fw_app::Puzzle<'static>] = &[\n",
    );
    for (name, q, a, id) in rows {
        let _ = writeln!(
            code,
            "    trm_fw_app::Puzzle {{ name: {name:?}, question: {q:?}, answer: {a:?}, puzzle_id: {id} }},"
        );
    }
    code.push_str("];\n");
    code
}

#[cfg(test)]
mod tests {
    use super::region_length;

    #[test]
    fn region_lengths() {
        let script = "MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 4M\n  RAM   : ORIGIN = 0x20000000, LENGTH = 0x400000\n  SRAM (rwx) : ORIGIN = 0x1000, LENGTH = 16K\n}\n";
        assert_eq!(region_length(script, "FLASH"), Some(4 << 20));
        assert_eq!(region_length(script, "RAM"), Some(0x40_0000));
        assert_eq!(region_length(script, "SRAM"), Some(16 << 10));
        assert_eq!(region_length(script, "ROM"), None);
        assert_eq!(
            region_length("FLASH : ORIGIN = 0, LENGTH = x", "FLASH"),
            None
        );
    }
}
