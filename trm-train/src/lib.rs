//! A libtorch trainer for Tiny Recursive Models (TRM, arXiv 2510.04871).
//!
//! - [`device`]: choosing CPU or CUDA;
//! - [`info`]: what libtorch the process runs on;
//! - [`model`]: the TRM network in tch, with the reference implementation's tensor names.
#![deny(missing_docs)]

pub mod device;
pub mod info;
pub mod model;
