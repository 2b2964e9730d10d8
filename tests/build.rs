//! Puts libtorch (the directory trm-train's build script reports through its `links`
//! metadata) in the RUNPATH of the test executables, so they run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TRM_TRAIN_LIBTORCH_LIB");
    if let Ok(d) = std::env::var("DEP_TRM_TRAIN_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{d}");
    }
}
