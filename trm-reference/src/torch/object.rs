//! The Python objects the pickle machine builds, in an arena, and the globals it knows.

use std::collections::HashMap;
use std::rc::Rc;

use super::TorchLoadError;
use super::tensor::{Tensor, TorchDType};

/// Index of an object in the machine's arena.
pub(super) type ObjId = usize;

/// A Python callable or class that the machine knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`: a Parameter is loaded as its tensor.
    RebuildParameter,
    /// A storage class: `torch.FloatStorage` and friends, or `torch.UntypedStorage` (bytes).
    StorageType(TorchDType),
    /// A `torch.<dtype>` object.
    DType(TorchDType),
}

impl Global {
    pub(super) fn resolve(module: &str, name: &str) -> Result<Self, TorchLoadError> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch" | "torch.storage", "UntypedStorage") => Global::StorageType(TorchDType::U8),
            ("torch", n) => {
                if let Some(d) = TorchDType::from_storage_class(n) {
                    Global::StorageType(d)
                } else if let Some(d) = TorchDType::from_torch_attr(n) {
                    Global::DType(d)
                } else {
                    return Err(TorchLoadError::UnknownGlobal {
                        module: module.to_string(),
                        name: name.to_string(),
                    });
                }
            }
            _ => {
                return Err(TorchLoadError::UnknownGlobal {
                    module: module.to_string(),
                    name: name.to_string(),
                });
            }
        };
        Ok(g)
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::StorageType(d) => format!("storage class of {d}"),
            Global::DType(d) => format!("torch.{d}"),
        }
    }
}

/// A dictionary that keeps insertion order; string keys are unique as in Python.
#[derive(Debug, Default)]
pub(super) struct Dict {
    pub(super) items: Vec<(ObjId, ObjId)>,
    pub(super) by_str: HashMap<String, usize>,
}

/// A loaded storage: element type and its bytes (shared by every view of it).
#[derive(Debug)]
pub(super) struct Storage {
    pub(super) dtype: TorchDType,
    pub(super) key: String,
    pub(super) bytes: Rc<Vec<u8>>,
}

/// A Python object in the arena. Containers hold indices, never objects.
#[derive(Debug)]
pub(super) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// A float; its value is never needed (no state_dict field is a float).
    Float,
    Str(String),
    /// Bytes; their value is never needed.
    Bytes,
    Tuple(Vec<ObjId>),
    List(Vec<ObjId>),
    Dict(Dict),
    Global(Global),
    Storage(Storage),
    Tensor(Tensor),
}

impl Obj {
    /// The Python type with its article, for messages: `a list`, `an int`, `None`.
    pub(super) fn a_kind(&self) -> String {
        match self.kind() {
            "None" => "None".to_string(),
            k if k.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {k}"),
            k => format!("a {k}"),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) => "int",
            Obj::Float => "float",
            Obj::Str(_) => "str",
            Obj::Bytes => "bytes",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Global(_) => "class or function",
            Obj::Storage(_) => "storage",
            Obj::Tensor(_) => "tensor",
        }
    }
}
