//! The reference implementation's own formats (SamsungSAILMontreal/TinyRecursiveModels), read
//! and written in pure Rust, without libtorch or Python:
//!
//! - [`torch`]: `torch.save` checkpoint files (a zip archive holding a pickle), read by a small
//!   pickle machine that can only build a dictionary of tensors;
//! - [`config`]: the reference's config (`cfg_pretrain.yaml` + `arch/trm.yaml`, a run's
//!   `all_config.yaml`): every key declared once, with its default, type and validation, hydra's
//!   `key=value` overrides, and the `all_config.yaml` a run writes;
//! - [`names`]: the reference's state_dict names and how they map to [`trm_nostd::TensorId`];
//! - [`checkpoint`]: a reference checkpoint folder (or one of our trainer's) imported as a
//!   [`trm_nostd::Config`] and f32 tensors;
//! - [`run_checkpoint`]: our trainer's run checkpoint folders (`step_<N>/` with a `meta.json`
//!   manifest of sizes and CRC-32C checksums): the manifest and its verification, which the
//!   trainer's loader and the importer share, so that a corrupt checkpoint is refused by both.
//!   It is here rather than in trm-train because the exporter cannot depend on the trainer
//!   (libtorch).
#![deny(missing_docs)]

pub mod act_ranges;
pub mod checkpoint;
pub mod config;
pub mod names;
pub mod run_checkpoint;
pub mod torch;
