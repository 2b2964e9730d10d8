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

use std::collections::HashMap;
use std::fmt;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use anyhow::Context as _;

/// Element type of a tensor read from a `torch.save` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TorchDType {
    /// `torch.float64`.
    F64,
    /// `torch.float32`.
    F32,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.int64`.
    I64,
    /// `torch.int32`.
    I32,
    /// `torch.int16`.
    I16,
    /// `torch.int8`.
    I8,
    /// `torch.uint8` (also the element of an untyped storage).
    U8,
    /// `torch.bool`, one byte per element.
    Bool,
}

impl TorchDType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            TorchDType::F64 | TorchDType::I64 => 8,
            TorchDType::F32 | TorchDType::I32 => 4,
            TorchDType::F16 | TorchDType::BF16 | TorchDType::I16 => 2,
            TorchDType::I8 | TorchDType::U8 | TorchDType::Bool => 1,
        }
    }

    /// The PyTorch name (`float32`, `bfloat16`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            TorchDType::F64 => "float64",
            TorchDType::F32 => "float32",
            TorchDType::F16 => "float16",
            TorchDType::BF16 => "bfloat16",
            TorchDType::I64 => "int64",
            TorchDType::I32 => "int32",
            TorchDType::I16 => "int16",
            TorchDType::I8 => "int8",
            TorchDType::U8 => "uint8",
            TorchDType::Bool => "bool",
        }
    }

    /// The element type of a legacy typed storage class (`torch.FloatStorage`, ...).
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => TorchDType::F64,
            "FloatStorage" => TorchDType::F32,
            "HalfStorage" => TorchDType::F16,
            "BFloat16Storage" => TorchDType::BF16,
            "LongStorage" => TorchDType::I64,
            "IntStorage" => TorchDType::I32,
            "ShortStorage" => TorchDType::I16,
            "CharStorage" => TorchDType::I8,
            "ByteStorage" => TorchDType::U8,
            "BoolStorage" => TorchDType::Bool,
            _ => return None,
        })
    }

    /// The element type named by a `torch.<dtype>` global (`torch.float32`, `torch.half`, ...).
    fn from_torch_attr(name: &str) -> Option<Self> {
        Some(match name {
            "float64" | "double" => TorchDType::F64,
            "float32" | "float" => TorchDType::F32,
            "float16" | "half" => TorchDType::F16,
            "bfloat16" => TorchDType::BF16,
            "int64" | "long" => TorchDType::I64,
            "int32" | "int" => TorchDType::I32,
            "int16" | "short" => TorchDType::I16,
            "int8" => TorchDType::I8,
            "uint8" => TorchDType::U8,
            "bool" => TorchDType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for TorchDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor read from a `torch.save` file, gathered into contiguous row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: TorchDType,
    /// Sizes, outermost first (empty for a 0-d tensor).
    pub shape: Vec<usize>,
    /// `numel * dtype.size()` little-endian bytes, row-major.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as f32, for float32, bfloat16 and float16 tensors (exact conversions).
    pub fn to_f32(&self) -> Result<Vec<f32>, TorchLoadError> {
        let out = match self.dtype {
            TorchDType::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            TorchDType::BF16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            TorchDType::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(TorchLoadError::Unsupported(format!(
                    "cannot convert a {other} tensor to f32 (only float32, bfloat16, float16)"
                )));
            }
        };
        Ok(out)
    }
}

/// Why a `torch.save` file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TorchLoadError {
    /// The zip container is unreadable (includes the pre-1.6 legacy format, which is not zip).
    Zip(String),
    /// A record the pickle or the format needs is missing from the archive.
    MissingRecord(String),
    /// The pickle ends before `STOP` or inside an opcode's argument.
    Truncated {
        /// Byte offset in `data.pkl` where more bytes were needed.
        pos: usize,
    },
    /// An opcode this reader does not implement.
    UnknownOpcode {
        /// The opcode byte.
        op: u8,
        /// Its offset in `data.pkl`.
        pos: usize,
    },
    /// A global (class or function) this reader does not know.
    UnknownGlobal {
        /// Python module.
        module: String,
        /// Name in that module.
        name: String,
    },
    /// The pickle is well-formed bytes but not a structure `torch.save` writes.
    Malformed {
        /// Offset of the opcode that failed in `data.pkl`.
        pos: usize,
        /// What was wrong.
        msg: String,
    },
    /// The file holds something other than a dictionary of named tensors.
    NotAStateDict(String),
    /// A feature of the format that this reader does not support (big-endian data, ...).
    Unsupported(String),
}

impl fmt::Display for TorchLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TorchLoadError::Zip(m) => write!(
                f,
                "not a readable torch.save zip archive ({m}); files from torch < 1.6 must be re-saved"
            ),
            TorchLoadError::MissingRecord(r) => write!(f, "archive has no record '{r}'"),
            TorchLoadError::Truncated { pos } => write!(f, "pickle truncated at byte {pos}"),
            TorchLoadError::UnknownOpcode { op, pos } => {
                write!(f, "unsupported pickle opcode 0x{op:02x} at byte {pos}")
            }
            TorchLoadError::UnknownGlobal { module, name } => {
                write!(f, "unsupported pickle global {module}.{name}")
            }
            TorchLoadError::Malformed { pos, msg } => {
                write!(f, "malformed pickle at byte {pos}: {msg}")
            }
            TorchLoadError::NotAStateDict(m) => write!(f, "not a state_dict: {m}"),
            TorchLoadError::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

impl std::error::Error for TorchLoadError {}

/// Reads a `torch.save` file holding a state_dict: `(name, tensor)` in the file's order.
pub fn load_torch_file(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    load_torch_bytes(&bytes).with_context(|| format!("loading torch checkpoint {}", path.display()))
}

/// Reads a `torch.save` archive from memory: `(name, tensor)` in the pickled dictionary's order.
pub fn load_torch_bytes(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, TorchLoadError> {
    let mut archive = Archive::open(bytes)?;
    if let Some(order) = archive.read_optional("byteorder")? {
        match order.as_slice() {
            b"little" => {}
            b"big" => {
                return Err(TorchLoadError::Unsupported(
                    "big-endian torch.save file".to_string(),
                ));
            }
            _ => {
                return Err(TorchLoadError::Unsupported(format!(
                    "byteorder record {:?}",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
    }
    let pickle = archive.read("data.pkl")?;
    // Views of one storage each get their own copy; bound the total so that a small file cannot
    // ask for gigabytes (legitimate sharing, such as tied weights, stays far below this).
    let budget = bytes
        .len()
        .saturating_mul(OUTPUT_BUDGET_FACTOR)
        .saturating_add(1 << 20);
    let mut vm = Machine::new(&pickle, &mut archive, budget);
    let root = vm.run()?;
    vm.into_state_dict(root)
}

/// The zip archive and the folder name its records share.
struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    prefix: String,
}

impl<'a> Archive<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, TorchLoadError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| TorchLoadError::Zip(e.to_string()))?;
        let mut prefix = None;
        for name in zip.file_names() {
            if let Some(p) = name.strip_suffix("/data.pkl")
                && !p.is_empty()
                && !p.contains('/')
            {
                if prefix.is_some() {
                    return Err(TorchLoadError::Zip(
                        "more than one <name>/data.pkl record".to_string(),
                    ));
                }
                prefix = Some(p.to_string());
            }
        }
        let prefix =
            prefix.ok_or_else(|| TorchLoadError::MissingRecord("<name>/data.pkl".into()))?;
        Ok(Archive { zip, prefix })
    }

    /// The bytes of `<prefix>/<record>`, or `None` if there is no such record.
    fn read_optional(&mut self, record: &str) -> Result<Option<Vec<u8>>, TorchLoadError> {
        let name = format!("{}/{}", self.prefix, record);
        let mut file = match self.zip.by_name(&name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(TorchLoadError::Zip(format!("{name}: {e}"))),
        };
        // Stored entries cannot yield more than the archive holds, so this read is bounded by
        // the input size even when the declared size is a lie.
        let mut out = Vec::new();
        file.read_to_end(&mut out)
            .map_err(|e| TorchLoadError::Zip(format!("{name}: {e}")))?;
        Ok(Some(out))
    }

    fn read(&mut self, record: &str) -> Result<Vec<u8>, TorchLoadError> {
        self.read_optional(record)?
            .ok_or_else(|| TorchLoadError::MissingRecord(format!("{}/{}", self.prefix, record)))
    }
}

/// Index of an object in the machine's arena.
type ObjId = usize;

/// A Python callable or class that the machine knows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
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
    fn resolve(module: &str, name: &str) -> Result<Self, TorchLoadError> {
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

    fn describe(&self) -> String {
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
struct Dict {
    items: Vec<(ObjId, ObjId)>,
    by_str: HashMap<String, usize>,
}

/// A loaded storage: element type and its bytes (shared by every view of it).
#[derive(Debug)]
struct Storage {
    dtype: TorchDType,
    key: String,
    bytes: Rc<Vec<u8>>,
}

/// A Python object in the arena. Containers hold indices, never objects.
#[derive(Debug)]
enum Obj {
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
    fn kind(&self) -> &'static str {
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

/// Highest pickle protocol this reader accepts.
const MAX_PROTOCOL: u8 = 5;
/// The tensors read may total at most this many times the file's size (plus 1 MiB).
const OUTPUT_BUDGET_FACTOR: usize = 16;
/// Most dimensions a tensor may have (torch allows 64; state_dicts use far fewer).
const MAX_RANK: usize = 64;

/// The pickle machine: stack, mark stack, memo and object arena.
struct Machine<'p, 'a, 'z> {
    code: &'p [u8],
    pos: usize,
    /// Offset of the opcode being run, for errors.
    op_pos: usize,
    archive: &'a mut Archive<'z>,
    arena: Vec<Obj>,
    stack: Vec<ObjId>,
    marks: Vec<usize>,
    memo: HashMap<u64, ObjId>,
    /// Storages read so far, by key: each record is read once however many tensors view it.
    storage_cache: HashMap<String, Rc<Vec<u8>>>,
    /// Bytes of tensor data still allowed (see [`OUTPUT_BUDGET_FACTOR`]).
    budget: usize,
}

impl<'p, 'a, 'z> Machine<'p, 'a, 'z> {
    fn new(code: &'p [u8], archive: &'a mut Archive<'z>, budget: usize) -> Self {
        Machine {
            code,
            pos: 0,
            op_pos: 0,
            archive,
            arena: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storage_cache: HashMap::new(),
            budget,
        }
    }

    fn err(&self, msg: impl Into<String>) -> TorchLoadError {
        TorchLoadError::Malformed {
            pos: self.op_pos,
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'p [u8], TorchLoadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.code.len())
            .ok_or(TorchLoadError::Truncated { pos: self.pos })?;
        let s = &self.code[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, TorchLoadError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TorchLoadError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TorchLoadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TorchLoadError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len_u64(&mut self) -> Result<usize, TorchLoadError> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| TorchLoadError::Truncated { pos: self.pos })
    }

    /// A newline-terminated line (for `GLOBAL`), without the newline.
    fn line(&mut self) -> Result<&'p str, TorchLoadError> {
        let rest = &self.code[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(TorchLoadError::Truncated {
                pos: self.code.len(),
            })?;
        let line = &rest[..n];
        self.pos += n + 1;
        std::str::from_utf8(line).map_err(|_| self.err("GLOBAL name is not UTF-8"))
    }

    fn utf8(&self, b: &[u8]) -> Result<String, TorchLoadError> {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn alloc(&mut self, o: Obj) -> ObjId {
        self.arena.push(o);
        self.arena.len() - 1
    }

    fn push(&mut self, o: Obj) {
        let id = self.alloc(o);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<ObjId, TorchLoadError> {
        // A pop may not reach below the innermost mark.
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<ObjId, TorchLoadError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err("stack underflow"))
    }

    /// Pops everything above the innermost mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<ObjId>, TorchLoadError> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK"))?;
        Ok(self.stack.split_off(m))
    }

    fn obj(&self, id: ObjId) -> &Obj {
        // Ids only come from `alloc`, so they are always in range.
        &self.arena[id]
    }

    /// Takes `n` bytes of tensor data from the budget.
    fn spend(&mut self, n: usize) -> Result<(), TorchLoadError> {
        self.budget = self.budget.checked_sub(n).ok_or_else(|| {
            TorchLoadError::Unsupported(format!(
                "tensors total more than {OUTPUT_BUDGET_FACTOR} times the file size"
            ))
        })?;
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), TorchLoadError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), TorchLoadError> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn as_int(&self, id: ObjId, what: &str) -> Result<i64, TorchLoadError> {
        match self.obj(id) {
            Obj::Int(v) => Ok(*v),
            Obj::Bool(b) => Ok(*b as i64),
            o => Err(self.err(format!("{what}: expected int, got {}", o.kind()))),
        }
    }

    fn as_usize(&self, id: ObjId, what: &str) -> Result<usize, TorchLoadError> {
        let v = self.as_int(id, what)?;
        usize::try_from(v).map_err(|_| self.err(format!("{what}: {v} is negative or too large")))
    }

    fn as_str(&self, id: ObjId, what: &str) -> Result<&str, TorchLoadError> {
        match self.obj(id) {
            Obj::Str(s) => Ok(s),
            o => Err(self.err(format!("{what}: expected str, got {}", o.kind()))),
        }
    }

    fn as_tuple(&self, id: ObjId, what: &str) -> Result<&[ObjId], TorchLoadError> {
        match self.obj(id) {
            Obj::Tuple(t) => Ok(t),
            o => Err(self.err(format!("{what}: expected tuple, got {}", o.kind()))),
        }
    }

    fn set_item(&mut self, dict: ObjId, key: ObjId, value: ObjId) -> Result<(), TorchLoadError> {
        let key_str = match self.obj(key) {
            Obj::Str(s) => Some(s.clone()),
            _ => None,
        };
        let kind = self.obj(dict).kind();
        let Obj::Dict(d) = &mut self.arena[dict] else {
            return Err(self.err(format!("SETITEM on a {kind}")));
        };
        match key_str {
            Some(k) => match d.by_str.get(&k) {
                Some(&i) => d.items[i].1 = value,
                None => {
                    d.by_str.insert(k, d.items.len());
                    d.items.push((key, value));
                }
            },
            None => d.items.push((key, value)),
        }
        Ok(())
    }

    fn append(&mut self, list: ObjId, items: &[ObjId]) -> Result<(), TorchLoadError> {
        let kind = self.obj(list).kind();
        match &mut self.arena[list] {
            Obj::List(l) => {
                l.extend_from_slice(items);
                Ok(())
            }
            _ => Err(self.err(format!("APPEND on a {kind}"))),
        }
    }

    /// Runs the pickle to `STOP`; returns the root object.
    fn run(&mut self) -> Result<ObjId, TorchLoadError> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let v = self.u8()?;
                    if v > MAX_PROTOCOL {
                        return Err(self.err(format!("pickle protocol {v} is newer than 5")));
                    }
                }
                // FRAME: a length hint only.
                0x95 => {
                    self.u64()?;
                }
                // STOP
                b'.' => return self.pop(),
                // MARK
                b'(' => self.marks.push(self.stack.len()),
                // POP, POP_MARK, DUP
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                // Constants.
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Obj::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(v as i64));
                }
                // LONG1: little-endian two's complement of n bytes.
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v =
                        long_from_bytes(b).ok_or_else(|| self.err("LONG1 wider than 64 bits"))?;
                    self.push(Obj::Int(v));
                }
                // BINFLOAT: big-endian f64.
                b'G' => {
                    self.take(8)?;
                    self.push(Obj::Float);
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.push(Obj::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.push(Obj::Str(s));
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    let s = self.utf8(b)?;
                    self.push(Obj::Str(s));
                }
                // BINBYTES, SHORT_BINBYTES
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Obj::Bytes);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Obj::Bytes);
                }
                // Containers.
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'}' => self.push(Obj::Dict(Dict::default())),
                b']' => self.push(Obj::List(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.alloc(Obj::Dict(Dict::default()));
                    self.set_items(d, &items)?;
                    self.stack.push(d);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                // SETITEM, SETITEMS
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_item(d, k, v)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, &items)?;
                }
                // APPEND, APPENDS
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append(l, &[v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append(l, &items)?;
                }
                // Memo: BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(k)?;
                }
                // GLOBAL, STACK_GLOBAL
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::resolve(module, name)?;
                    self.push(Obj::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let name = self.as_str(name, "STACK_GLOBAL name")?;
                    let module = self.as_str(module, "STACK_GLOBAL module")?;
                    let g = Global::resolve(module, name)?;
                    self.push(Obj::Global(g));
                }
                // BINPERSID
                b'Q' => {
                    let pid = self.pop()?;
                    let o = self.persistent_load(pid)?;
                    self.push(o);
                }
                // REDUCE
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let out = self.call(f, args)?;
                    self.stack.push(out);
                }
                // NEWOBJ: cls.__new__(cls, *args)
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let out = self.call(cls, args)?;
                    self.stack.push(out);
                }
                // BUILD: set the state of the object below.
                b'b' => {
                    let _state = self.pop()?;
                    let target = self.top()?;
                    match self.obj(target) {
                        // An OrderedDict's state is its attributes (state_dict's `_metadata`),
                        // which carry no weights.
                        Obj::Dict(_) => {}
                        o => return Err(self.err(format!("BUILD on a {}", o.kind()))),
                    }
                }
                _ => {
                    return Err(TorchLoadError::UnknownOpcode {
                        op,
                        pos: self.op_pos,
                    });
                }
            }
        }
    }

    fn set_items(&mut self, dict: ObjId, items: &[ObjId]) -> Result<(), TorchLoadError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        for kv in items.chunks_exact(2) {
            self.set_item(dict, kv[0], kv[1])?;
        }
        Ok(())
    }

    /// Calls a known global with a tuple of arguments.
    fn call(&mut self, f: ObjId, args: ObjId) -> Result<ObjId, TorchLoadError> {
        let g = match self.obj(f) {
            Obj::Global(g) => *g,
            o => return Err(self.err(format!("cannot call a {}", o.kind()))),
        };
        let args = self.as_tuple(args, "call arguments")?.to_vec();
        match g {
            Global::OrderedDict if args.is_empty() => Ok(self.alloc(Obj::Dict(Dict::default()))),
            Global::RebuildTensorV2 => {
                let t = self.rebuild_tensor(&args)?;
                self.spend(t.data.len())?;
                Ok(self.alloc(Obj::Tensor(t)))
            }
            Global::RebuildParameter => match args.first() {
                Some(&data) if matches!(self.obj(data), Obj::Tensor(_)) => Ok(data),
                _ => Err(self.err("_rebuild_parameter without a tensor")),
            },
            other => Err(self.err(format!(
                "unsupported call of {} with {} arguments",
                other.describe(),
                args.len()
            ))),
        }
    }

    /// `('storage', storage_type, key, location, numel)` -> the storage, read from the archive.
    fn persistent_load(&mut self, pid: ObjId) -> Result<Obj, TorchLoadError> {
        let t = self.as_tuple(pid, "persistent id")?.to_vec();
        if t.len() != 5 {
            return Err(self.err(format!(
                "persistent id has {} fields, expected 5 ('storage', type, key, location, numel)",
                t.len()
            )));
        }
        let tag = self.as_str(t[0], "persistent id tag")?;
        if tag != "storage" {
            return Err(self.err(format!("persistent id tag '{tag}', expected 'storage'")));
        }
        let dtype = match self.obj(t[1]) {
            Obj::Global(Global::StorageType(d)) => *d,
            o => {
                return Err(self.err(format!(
                    "persistent id storage type is a {}, not a storage class",
                    o.kind()
                )));
            }
        };
        let key = self.as_str(t[2], "storage key")?.to_string();
        let numel = self.as_usize(t[4], "storage numel")?;
        let bytes = match self.storage_cache.get(&key) {
            Some(b) => Rc::clone(b),
            None => {
                let b = Rc::new(self.archive.read(&format!("data/{key}"))?);
                self.storage_cache.insert(key.clone(), Rc::clone(&b));
                b
            }
        };
        let need = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| self.err("storage size overflows"))?;
        if bytes.len() < need {
            return Err(self.err(format!(
                "storage '{key}' has {} bytes, its persistent id says {numel} x {dtype} = {need}",
                bytes.len()
            )));
        }
        Ok(Obj::Storage(Storage { dtype, key, bytes }))
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, meta])`.
    fn rebuild_tensor(&self, args: &[ObjId]) -> Result<Tensor, TorchLoadError> {
        if !(6..=7).contains(&args.len()) {
            return Err(self.err(format!(
                "_rebuild_tensor_v2 takes 6 or 7 arguments, got {}",
                args.len()
            )));
        }
        let Obj::Storage(storage) = self.obj(args[0]) else {
            return Err(self.err(format!(
                "_rebuild_tensor_v2 storage is a {}",
                self.obj(args[0]).kind()
            )));
        };
        let offset = self.as_usize(args[1], "storage_offset")?;
        let size = self.int_tuple(args[2], "size")?;
        let stride = self.int_tuple(args[3], "stride")?;
        if size.len() != stride.len() {
            return Err(self.err(format!(
                "size has {} dimensions, stride {}",
                size.len(),
                stride.len()
            )));
        }
        if size.len() > MAX_RANK {
            return Err(self.err(format!("tensor rank {} exceeds {MAX_RANK}", size.len())));
        }
        gather(storage, offset, &size, &stride).map_err(|m| self.err(m))
    }

    fn int_tuple(&self, id: ObjId, what: &str) -> Result<Vec<usize>, TorchLoadError> {
        self.as_tuple(id, what)?
            .iter()
            .map(|&i| self.as_usize(i, what))
            .collect()
    }

    /// Checks that the root is a dictionary of named tensors and hands them out in order.
    fn into_state_dict(mut self, root: ObjId) -> Result<Vec<(String, Tensor)>, TorchLoadError> {
        let Obj::Dict(d) = std::mem::replace(&mut self.arena[root], Obj::None) else {
            return Err(TorchLoadError::NotAStateDict(format!(
                "the pickled object is a {}, not a dict",
                self.obj(root).kind()
            )));
        };
        let mut out = Vec::with_capacity(d.items.len());
        for (k, v) in d.items {
            let name = match self.obj(k) {
                Obj::Str(s) => s.clone(),
                o => {
                    return Err(TorchLoadError::NotAStateDict(format!(
                        "a key is a {}, not a str",
                        o.kind()
                    )));
                }
            };
            // The same tensor object may appear under two names: copy, do not move.
            let len = match self.obj(v) {
                Obj::Tensor(t) => t.data.len(),
                _ => 0,
            };
            self.spend(len)?;
            let t = match self.obj(v) {
                Obj::Tensor(t) => t.clone(),
                o => {
                    return Err(TorchLoadError::NotAStateDict(format!(
                        "'{name}' is a {}, not a tensor",
                        o.kind()
                    )));
                }
            };
            out.push((name, t));
        }
        Ok(out)
    }
}

/// Sign-extends a little-endian two's-complement integer of at most 8 bytes.
fn long_from_bytes(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return Some(0);
    }
    if b.len() > 8 {
        return None;
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut a = [fill; 8];
    a[..b.len()].copy_from_slice(b);
    Some(i64::from_le_bytes(a))
}

/// Copies the strided view `(offset, size, stride)` of a storage into a contiguous tensor.
fn gather(
    storage: &Storage,
    offset: usize,
    size: &[usize],
    stride: &[usize],
) -> Result<Tensor, String> {
    let es = storage.dtype.size();
    let storage_numel = storage.bytes.len() / es;
    let numel = size
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .ok_or("tensor size overflows")?;
    let shape = size.to_vec();
    if numel == 0 {
        return Ok(Tensor {
            dtype: storage.dtype,
            shape,
            data: Vec::new(),
        });
    }
    // The furthest element the view reaches must lie in the storage.
    let last = size
        .iter()
        .zip(stride)
        .try_fold(offset, |a, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| a.checked_add(x))
        })
        .ok_or("tensor extent overflows")?;
    if last >= storage_numel {
        return Err(format!(
            "view (offset {offset}, size {size:?}, stride {stride:?}) reaches element {last} \
             of storage '{}' which has {storage_numel}",
            storage.key
        ));
    }
    // A view with more elements than its storage overlaps itself (stride 0, expand): refusing
    // it bounds the output by the input size.
    if numel > storage_numel {
        return Err(format!(
            "view of {numel} elements on storage '{}' of {storage_numel} overlaps itself",
            storage.key
        ));
    }
    let src = storage.bytes.as_slice();
    let mut data = Vec::with_capacity(numel * es);
    let mut contiguous = true;
    let mut expect = 1usize;
    for (&n, &s) in size.iter().zip(stride).rev() {
        if n != 1 && s != expect {
            contiguous = false;
        }
        expect *= n;
    }
    if contiguous {
        data.extend_from_slice(&src[offset * es..(offset + numel) * es]);
    } else {
        // Odometer over the multi-index, last axis fastest.
        let rank = size.len();
        let mut idx = vec![0usize; rank];
        let mut at = offset;
        for _ in 0..numel {
            data.extend_from_slice(&src[at * es..at * es + es]);
            // Wrapping arithmetic: an axis of size 1 may have any stride, and stepping past its
            // end then rewinding is exact modulo 2^64; every index read was bounds-checked above.
            for ax in (0..rank).rev() {
                idx[ax] += 1;
                at = at.wrapping_add(stride[ax]);
                if idx[ax] < size[ax] {
                    break;
                }
                at = at.wrapping_sub(stride[ax].wrapping_mul(size[ax]));
                idx[ax] = 0;
            }
        }
    }
    Ok(Tensor {
        dtype: storage.dtype,
        shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_sign_extends() {
        assert_eq!(long_from_bytes(&[]), Some(0));
        assert_eq!(long_from_bytes(&[0xff]), Some(-1));
        assert_eq!(long_from_bytes(&[0x00, 0x01]), Some(256));
        assert_eq!(long_from_bytes(&[0x00, 0x80]), Some(-32768));
        assert_eq!(long_from_bytes(&[0; 9]), None);
    }

    fn storage(dtype: TorchDType, values: &[u8]) -> Storage {
        Storage {
            dtype,
            key: "k".into(),
            bytes: Rc::new(values.to_vec()),
        }
    }

    #[test]
    fn gather_transposed_and_offset_views() {
        // Storage 0..12 as u8, viewed as a 3x4 matrix, then transposed (4x3, strides (1, 4)).
        let s = storage(TorchDType::U8, &(0u8..12).collect::<Vec<_>>());
        let t = gather(&s, 0, &[4, 3], &[1, 4]).unwrap();
        assert_eq!(t.data, vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // Rows 1..3, columns 1..3 of the 3x4 matrix: offset 5, strides (4, 1).
        let t = gather(&s, 5, &[2, 2], &[4, 1]).unwrap();
        assert_eq!(t.data, vec![5, 6, 9, 10]);
        // Contiguous slice with an offset.
        let t = gather(&s, 10, &[2], &[1]).unwrap();
        assert_eq!(t.data, vec![10, 11]);
        // 0-d tensor.
        let t = gather(&s, 7, &[], &[]).unwrap();
        assert_eq!((t.numel(), t.data), (1, vec![7]));
    }

    #[test]
    fn gather_rejects_out_of_range_and_overlapping_views() {
        let s = storage(TorchDType::F32, &[0u8; 16]);
        assert!(gather(&s, 1, &[4], &[1]).is_err());
        assert!(gather(&s, 0, &[2, 3], &[3, 1]).is_err());
        assert!(gather(&s, 0, &[8], &[0]).is_err());
        assert!(gather(&s, usize::MAX, &[2], &[1]).is_err());
        assert!(gather(&s, 0, &[usize::MAX, 2], &[1, 1]).is_err());
    }
}
