//! What libtorch this process runs on: versions, threads, CUDA and cuDNN.

use std::fmt;
use std::path::{Path, PathBuf};

/// The libtorch version the crate was compiled against (read from the LIBTORCH directory by
/// build.rs: `version.py` of a PyTorch wheel or `build-version` of a C++ distribution).
pub const BUILD_LIBTORCH_VERSION: &str = env!("TRM_LIBTORCH_BUILD_VERSION");

/// The libtorch library directory the crate was linked against (and put in the RUNPATH).
pub const BUILD_LIBTORCH_LIB: &str = env!("TRM_LIBTORCH_BUILD_LIB");

/// A description of the libtorch in use.
#[derive(Debug, Clone, PartialEq)]
pub struct LibtorchInfo {
    /// Version at build time (`2.13.0+cu130`).
    pub build_version: String,
    /// Directory of the `libtorch_cpu.so` actually loaded by this process, if found.
    pub loaded_lib_dir: Option<PathBuf>,
    /// Version of the loaded libtorch, read beside the loaded library, if found.
    pub loaded_version: Option<String>,
    /// Whether libtorch sees a usable CUDA device.
    pub cuda_available: bool,
    /// Number of CUDA devices.
    pub cuda_device_count: usize,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// cuDNN version compiled into libtorch (0 without CUDA).
    pub cudnn_version: i64,
    /// CUDA runtime version compiled into libtorch (0 without CUDA).
    pub cudart_version: i64,
    /// Intra-op threads libtorch uses.
    pub num_threads: i32,
    /// Inter-op threads libtorch uses.
    pub num_interop_threads: i32,
}

impl LibtorchInfo {
    /// Queries the running libtorch.
    pub fn query() -> Self {
        let loaded_lib_dir = loaded_libtorch_dir();
        let loaded_version = loaded_lib_dir
            .as_deref()
            .and_then(|d| d.parent())
            .and_then(read_libtorch_version);
        let cuda_available = tch::Cuda::is_available();
        let (cudnn_version, cudart_version) = if cuda_available {
            (tch::utils::version_cudnn(), tch::utils::version_cudart())
        } else {
            (0, 0)
        };
        LibtorchInfo {
            build_version: BUILD_LIBTORCH_VERSION.to_owned(),
            loaded_lib_dir,
            loaded_version,
            cuda_available,
            cuda_device_count: crate::device::cuda_device_count(),
            cudnn_available: tch::Cuda::cudnn_is_available(),
            cudnn_version,
            cudart_version,
            num_threads: tch::get_num_threads(),
            num_interop_threads: tch::get_num_interop_threads(),
        }
    }
}

impl fmt::Display for LibtorchInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tch crate:          0.26")?;
        writeln!(f, "libtorch (build):   {}", self.build_version)?;
        writeln!(
            f,
            "libtorch (loaded):  {}",
            self.loaded_version.as_deref().unwrap_or("unknown")
        )?;
        match &self.loaded_lib_dir {
            Some(d) => writeln!(f, "libtorch lib dir:   {}", d.display())?,
            None => writeln!(f, "libtorch lib dir:   unknown")?,
        }
        writeln!(f, "cuda available:     {}", self.cuda_available)?;
        writeln!(f, "cuda devices:       {}", self.cuda_device_count)?;
        if self.cuda_available {
            writeln!(f, "cuda runtime:       {}", self.cudart_version)?;
        }
        writeln!(
            f,
            "cudnn available:    {}{}",
            self.cudnn_available,
            if self.cudnn_available {
                format!(" (version {})", self.cudnn_version)
            } else {
                String::new()
            }
        )?;
        writeln!(f, "intra-op threads:   {}", self.num_threads)?;
        write!(f, "inter-op threads:   {}", self.num_interop_threads)
    }
}

/// The directory of the `libtorch_cpu` shared library mapped into this process (Linux only:
/// read from /proc/self/maps).
pub fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libtorch_cpu."))
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The libtorch version recorded in a libtorch root directory (the parent of `lib/`).
pub fn read_libtorch_version(root: &Path) -> Option<String> {
    if let Ok(s) = std::fs::read_to_string(root.join("build-version")) {
        return Some(s.trim().to_owned());
    }
    let py = std::fs::read_to_string(root.join("version.py")).ok()?;
    parse_version_py(&py)
}

/// The `__version__ = '...'` value of a torch `version.py`.
pub fn parse_version_py(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("__version__"))
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_py() {
        let t = "from typing import Optional\n__version__ = '2.13.0+cu130'\ndebug = False\n";
        assert_eq!(parse_version_py(t).as_deref(), Some("2.13.0+cu130"));
        assert_eq!(
            parse_version_py("__version__=\"1.2\"").as_deref(),
            Some("1.2")
        );
        assert_eq!(parse_version_py("version = '3'"), None);
    }

    #[test]
    fn loaded_library_is_found_after_first_use() {
        // Touch libtorch so it is certainly mapped.
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0]);
        assert_eq!(t.size(), vec![2]);
        let dir = loaded_libtorch_dir().expect("libtorch_cpu mapped");
        assert!(dir.join("libtorch_cpu.so").exists(), "{}", dir.display());
    }
}
