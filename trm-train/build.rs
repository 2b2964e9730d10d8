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
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(trm_dist_bridge)");
    println!("cargo::rustc-check-cfg=cfg(trm_dist_nccl)");
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
    build_dist_bridge(lib_dir);

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

/// Compiles csrc/ (the C++ bridge to libtorch's c10d behind `trm_train::dist`) against the
/// libtorch in `lib_dir`, and sets `cfg(trm_dist_bridge)` when it did, `cfg(trm_dist_nccl)` when
/// the NCCL half is in too.
///
/// Gloo is always compiled when its headers are there (Debian's libgloo-dev, installed by
/// scripts/setup.sh; `GLOO_INCLUDE_DIR` points elsewhere): without them the crate still builds,
/// with a warning, and `ProcessGroup` reports the bridge unavailable. The NCCL half needs nccl.h
/// (the `nvidia-nccl` wheel) and the CUDA runtime, crt and cccl headers (the venv's
/// `nvidia/*/include`, or `CUDA_HOME`); it is tried only when those are found, and a failure to
/// compile it only drops NCCL. `TRM_DIST_NCCL=0` skips it. The PyTorch 2.13 CUDA 13 wheels
/// lack the crt and cccl headers: scripts/setup.sh installs the wheels that match the venv's
/// CUDA 13.0 runtime, `nvidia-cuda-crt==13.0.88` and `nvidia-cuda-cccl==13.0.85` (the `crt`
/// and `cccl` extras of the `cuda-toolkit==13.0.3.0` that torch requires).
fn build_dist_bridge(lib_dir: &Path) {
    for f in [
        "csrc/trm_dist.h",
        "csrc/trm_dist.cpp",
        "csrc/trm_dist_nccl.cpp",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    for v in [
        "GLOO_INCLUDE_DIR",
        "CUDA_HOME",
        "TRM_DIST_NCCL",
        "LIBTORCH_CXX11_ABI",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let torch_root = lib_dir.parent().unwrap_or(lib_dir);
    let torch_include = torch_root.join("include");
    if !torch_include
        .join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
        .exists()
    {
        println!(
            "cargo:warning=no c10d headers under {}: trm_train::dist is unavailable",
            torch_include.display()
        );
        return;
    }
    let gloo_include = env::var_os("GLOO_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    if !gloo_include.join("gloo/config.h").exists() {
        println!(
            "cargo:warning=no Gloo headers ({}/gloo/config.h; install libgloo-dev or set \
             GLOO_INCLUDE_DIR): trm_train::dist is unavailable",
            gloo_include.display()
        );
        return;
    }
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let base = || {
        let mut b = cc::Build::new();
        b.cpp(true)
            .std("c++17")
            .include("csrc")
            .include(&torch_include)
            .include(torch_include.join("torch/csrc/api/include"))
            .include(&gloo_include)
            .define("USE_C10D_GLOO", None)
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
            // libtorch's headers are noisy; our own two files are small.
            .warnings(false)
            .flag("-w");
        b
    };

    let nccl = env::var("TRM_DIST_NCCL").map_or(true, |v| v != "0")
        && match nccl_include_dirs(torch_root) {
            Some(dirs) => {
                let mut b = base();
                b.define("USE_C10D_NCCL", None)
                    .file("csrc/trm_dist_nccl.cpp")
                    .cargo_warnings(false);
                for d in &dirs {
                    b.include(d);
                }
                match b.try_compile("trm_dist_nccl") {
                    Ok(()) => true,
                    Err(e) => {
                        println!(
                            "cargo:warning=the NCCL half of trm_train::dist did not compile ({e}): Gloo only"
                        );
                        false
                    }
                }
            }
            None => false,
        };

    let mut b = base();
    b.file("csrc/trm_dist.cpp");
    if nccl {
        b.define("TRM_DIST_NCCL", None);
    }
    b.compile("trm_dist");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    for l in ["torch", "torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    println!("cargo:rustc-cfg=trm_dist_bridge");
    if nccl {
        for l in ["torch_cuda", "c10_cuda"] {
            println!("cargo:rustc-link-lib=dylib={l}");
        }
        println!("cargo:rustc-cfg=trm_dist_nccl");
    }
}

/// Include directories holding nccl.h, the CUDA runtime and its crt headers, from the venv's
/// `nvidia/*/include` (and `cu*/include/cccl`) next to torch, or `CUDA_HOME`; `None` when one is
/// missing.
fn nccl_include_dirs(torch_root: &Path) -> Option<Vec<PathBuf>> {
    let mut cands = Vec::new();
    if let Some(site) = torch_root
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        && let Ok(rd) = std::fs::read_dir(site.join("nvidia"))
    {
        let mut pkgs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        pkgs.sort();
        for p in pkgs {
            // Rebuild when headers are added there (e.g. the crt and cccl wheels installed
            // after a first build without them).
            if p.join("include").is_dir() {
                println!("cargo:rerun-if-changed={}", p.join("include").display());
            }
            cands.push(p.join("include"));
            cands.push(p.join("include/cccl"));
        }
    }
    for root in [
        env::var_os("CUDA_HOME").map(PathBuf::from),
        Some(PathBuf::from("/usr/local/cuda")),
    ]
    .into_iter()
    .flatten()
    {
        cands.push(root.join("include"));
        cands.push(root.join("include/cccl"));
    }
    let cands: Vec<PathBuf> = cands.into_iter().filter(|d| d.is_dir()).collect();
    let found = |h: &str| cands.iter().any(|d| d.join(h).exists());
    ["nccl.h", "cuda_runtime.h", "crt/host_config.h", "nv/target"]
        .iter()
        .all(|h| found(h))
        .then_some(cands)
}
