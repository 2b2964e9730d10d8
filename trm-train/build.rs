//! Makes every binary, test and bench of trm-train find libtorch at run time without
//! LD_LIBRARY_PATH, and hands the libtorch directory on to dependent crates.
//!
//! torch-sys (`links = "tch"`) exports the directory it linked against as `libtorch_lib`, which
//! reaches this script as `DEP_TCH_LIBTORCH_LIB`. We put it in the RUNPATH of our own link
//! targets and re-export it (`links = "trm_train"`) as `DEP_TRM_TRAIN_LIBTORCH_LIB`: a crate that
//! depends on trm-train and builds executables needs a build.rs with this one line:
//!
//! ```text
//! fn main() { if let Ok(d) = std::env::var("DEP_TRM_TRAIN_LIBTORCH_LIB") { println!("cargo:rustc-link-arg=-Wl,-rpath,{d}"); } }
//! ```
//! (add `-Wl,--no-as-needed,-ltorch_cuda,--as-needed` too if it needs CUDA without calling into
//! trm-train's `device` module, which already forces libtorch_cuda in).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch directory: no rpath set");
        return;
    };
    let lib_dir = Path::new(&lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // Rust links with --as-needed, which drops libtorch_cuda.so (nothing references it by
    // symbol) and leaves CUDA unavailable at run time; keep it in when the libtorch has it.
    // A CPU-only machine still loads it fine: the CUDA driver is only opened on first use.
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:libtorch_lib={lib}");

    // The version of the libtorch we compile against, for `trm-train info`: the wheel layout has
    // torch/version.py, the C++ distribution a `build-version` file.
    let root = lib_dir.parent().unwrap_or(lib_dir);
    let version = read_version(root).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TRM_LIBTORCH_BUILD_VERSION={version}");
    println!("cargo:rustc-env=TRM_LIBTORCH_BUILD_LIB={lib}");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("version.py").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("build-version").display()
    );
}

fn read_version(root: &Path) -> Option<String> {
    if let Ok(s) = std::fs::read_to_string(root.join("build-version")) {
        return Some(s.trim().to_owned());
    }
    let py = std::fs::read_to_string(root.join("version.py")).ok()?;
    py.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
}
