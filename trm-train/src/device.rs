//! Choosing where tensors live: CPU or a CUDA device.
//!
//! The binary links `libtorch_cuda` explicitly (see build.rs), so CUDA is found whenever the
//! libtorch in use was built with it and a driver and a GPU are present. On a machine without
//! either, `Auto` quietly falls back to the CPU and an explicit `cuda` request is an error.

use std::fmt;
use std::str::FromStr;
use tch::Device;

/// A device request, as given on the command line (`auto`, `cpu`, `cuda`, `cuda:1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 if one is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device of this ordinal.
    Cuda(usize),
}

/// Why a [`DeviceChoice`] cannot be parsed or used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceError {
    /// The text is not `auto`, `cpu`, `cuda` or `cuda:<n>`.
    Parse(String),
    /// CUDA was requested but libtorch sees no CUDA device.
    CudaUnavailable,
    /// The CUDA ordinal is beyond the number of devices.
    NoSuchCuda {
        /// The requested ordinal.
        ordinal: usize,
        /// How many CUDA devices libtorch sees.
        count: usize,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Parse(s) => {
                write!(f, "bad device {s:?}: expected auto, cpu, cuda or cuda:<n>")
            }
            DeviceError::CudaUnavailable => write!(
                f,
                "CUDA requested but libtorch sees no CUDA device (no GPU, no driver, or a CPU-only libtorch)"
            ),
            DeviceError::NoSuchCuda { ordinal, count } => {
                write!(
                    f,
                    "cuda:{ordinal} requested but only {count} CUDA device(s) exist"
                )
            }
        }
    }
}

impl std::error::Error for DeviceError {}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| DeviceError::Parse(s.to_owned())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Number of CUDA devices libtorch sees (0 on a machine without a GPU or driver).
pub fn cuda_device_count() -> usize {
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

impl DeviceChoice {
    /// The device to use, given how many CUDA devices exist (`cuda_count`); separated from
    /// [`DeviceChoice::resolve`] so the rule is testable on any machine.
    pub fn resolve_with(self, cuda_count: usize) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if cuda_count > 0 => Ok(Device::Cuda(0)),
            DeviceChoice::Auto => Ok(Device::Cpu),
            DeviceChoice::Cuda(_) if cuda_count == 0 => Err(DeviceError::CudaUnavailable),
            DeviceChoice::Cuda(ordinal) if ordinal >= cuda_count => Err(DeviceError::NoSuchCuda {
                ordinal,
                count: cuda_count,
            }),
            DeviceChoice::Cuda(ordinal) => Ok(Device::Cuda(ordinal)),
        }
    }

    /// The device to use on this machine.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        self.resolve_with(cuda_device_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
        assert!(matches!(
            "cuda:x".parse::<DeviceChoice>(),
            Err(DeviceError::Parse(_))
        ));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        for c in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(2)] {
            assert_eq!(c.to_string().parse::<DeviceChoice>(), Ok(c));
        }
    }

    #[test]
    fn resolution_rule() {
        assert_eq!(DeviceChoice::Auto.resolve_with(0), Ok(Device::Cpu));
        assert_eq!(DeviceChoice::Auto.resolve_with(2), Ok(Device::Cuda(0)));
        assert_eq!(DeviceChoice::Cpu.resolve_with(2), Ok(Device::Cpu));
        assert_eq!(
            DeviceChoice::Cuda(0).resolve_with(0),
            Err(DeviceError::CudaUnavailable)
        );
        assert_eq!(
            DeviceChoice::Cuda(2).resolve_with(2),
            Err(DeviceError::NoSuchCuda {
                ordinal: 2,
                count: 2
            })
        );
        assert_eq!(DeviceChoice::Cuda(1).resolve_with(2), Ok(Device::Cuda(1)));
    }

    #[test]
    fn resolve_on_this_machine_agrees_with_libtorch() {
        let n = cuda_device_count();
        assert_eq!(n > 0, tch::Cuda::is_available());
        let d = DeviceChoice::Auto.resolve();
        assert_eq!(d, Ok(if n > 0 { Device::Cuda(0) } else { Device::Cpu }));
    }
}
