//! Reads `torch.save` files (state_dicts) in pure Rust, without libtorch or Python.
//!
//! A `torch.save` file (PyTorch >= 1.6) is a zip archive whose entries share one top folder:
//!
//! - `<name>/data.pkl`: a pickle of the saved object, in which every storage is a *persistent id*
//!   `('storage', storage_type, key, location, numel)`;
//! - `<name>/data/<key>`: the raw bytes of each storage;
//! - `<name>/byteorder`: `little` or `big` (absent in old files, which are little-endian);
//! - `<name>/version` and a few others, ignored here.
//!
//! [`load_torch_bytes`] runs a small pickle machine that knows only what `torch.save` emits for a
//! state_dict (protocol 2 to 5: containers, numbers, strings, memo, `REDUCE`/`BUILD`/`NEWOBJ`,
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the storage types). Anything
//! else is an error naming the opcode or global: a pickle can run arbitrary code in Python, and
//! here it can only build a dictionary of tensors.
//!
//! Objects live in an arena and refer to each other by index, so the memo shares objects as Python
//! does, cycles cost nothing, and dropping never recurses: fuzzed input gives errors, not panics
//! or stack overflows.

mod archive;
mod error;
mod limits;
mod machine;
mod object;
mod opcodes;
mod rebuild;
mod tensor;

use std::path::Path;

use anyhow::Context as _;

pub use error::TorchLoadError;
pub use tensor::{Tensor, TorchDType};

use archive::Archive;
use machine::Machine;

/// Reads a `torch.save` file holding a state_dict: `(name, tensor)` in the file's order.
pub fn load_torch_file(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    load_torch_bytes(&bytes).with_context(|| format!("loading torch checkpoint {}", path.display()))
}

/// Reads a `torch.save` archive from memory: `(name, tensor)` in the pickled dictionary's order.
pub fn load_torch_bytes(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, TorchLoadError> {
    let mut archive = Archive::open(bytes)?;
    archive.check_byteorder()?;
    let pickle = archive.read("data.pkl")?;
    let mut vm = Machine::new(&pickle, &mut archive, limits::output_budget(bytes.len()));
    let root = vm.run()?;
    vm.into_state_dict(root)
}
