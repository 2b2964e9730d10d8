//! Puts `memory.x` where the linker finds it and generates `embedded.rs` (the models and puzzles
//! the firmware carries, chosen by `TRM_*` variables: see the `trm-fw-embed` crate).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    // memory.x next to link.x (riscv-rt's link.x INCLUDEs it).
    let memory = fs::read_to_string(manifest.join("memory.x")).expect("read memory.x");
    fs::write(out.join("memory.x"), &memory).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    // Models go to `FLASH` (the first 4 MiB of DRAM, see memory.x).
    let flash = trm_fw_embed::region_length(&memory, "FLASH").expect("FLASH in memory.x");
    trm_fw_embed::write_embedded(&manifest, &out, flash);
}
