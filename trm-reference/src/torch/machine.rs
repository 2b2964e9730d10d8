//! The pickle machine's state (stack, mark stack, memo, object arena) and the primitives the
//! opcodes and the tensor rebuild share.

use std::collections::HashMap;
use std::rc::Rc;

use super::TorchLoadError;
use super::archive::Archive;
use super::limits::OUTPUT_BUDGET_FACTOR;
use super::object::{Obj, ObjId};

/// The pickle machine: stack, mark stack, memo and object arena.
pub(super) struct Machine<'p, 'a, 'z> {
    pub(super) code: &'p [u8],
    pub(super) pos: usize,
    /// Offset of the opcode being run, for errors.
    pub(super) op_pos: usize,
    pub(super) archive: &'a mut Archive<'z>,
    pub(super) arena: Vec<Obj>,
    pub(super) stack: Vec<ObjId>,
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, ObjId>,
    /// Storages read so far, by key: each record is read once however many tensors view it.
    pub(super) storage_cache: HashMap<String, Rc<Vec<u8>>>,
    /// Bytes of tensor data still allowed (see [`OUTPUT_BUDGET_FACTOR`]).
    pub(super) budget: usize,
}

impl<'p, 'a, 'z> Machine<'p, 'a, 'z> {
    pub(super) fn new(code: &'p [u8], archive: &'a mut Archive<'z>, budget: usize) -> Self {
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

    pub(super) fn err(&self, msg: impl Into<String>) -> TorchLoadError {
        TorchLoadError::Malformed {
            pos: self.op_pos,
            msg: msg.into(),
        }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'p [u8], TorchLoadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.code.len())
            .ok_or(TorchLoadError::Truncated { pos: self.pos })?;
        let s = &self.code[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(super) fn u8(&mut self) -> Result<u8, TorchLoadError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, TorchLoadError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, TorchLoadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, TorchLoadError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(super) fn len_u64(&mut self) -> Result<usize, TorchLoadError> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| TorchLoadError::Truncated { pos: self.pos })
    }

    /// A newline-terminated line (for `GLOBAL`), without the newline.
    pub(super) fn line(&mut self) -> Result<&'p str, TorchLoadError> {
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

    pub(super) fn utf8(&self, b: &[u8]) -> Result<String, TorchLoadError> {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| self.err("string is not valid UTF-8"))
    }

    pub(super) fn alloc(&mut self, o: Obj) -> ObjId {
        self.arena.push(o);
        self.arena.len() - 1
    }

    pub(super) fn push(&mut self, o: Obj) {
        let id = self.alloc(o);
        self.stack.push(id);
    }

    pub(super) fn pop(&mut self) -> Result<ObjId, TorchLoadError> {
        // A pop may not reach below the innermost mark.
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    pub(super) fn top(&self) -> Result<ObjId, TorchLoadError> {
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
    pub(super) fn pop_mark(&mut self) -> Result<Vec<ObjId>, TorchLoadError> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK"))?;
        Ok(self.stack.split_off(m))
    }

    pub(super) fn obj(&self, id: ObjId) -> &Obj {
        // Ids only come from `alloc`, so they are always in range.
        &self.arena[id]
    }

    /// Takes `n` bytes of tensor data from the budget.
    pub(super) fn spend(&mut self, n: usize) -> Result<(), TorchLoadError> {
        self.budget = self.budget.checked_sub(n).ok_or_else(|| {
            TorchLoadError::Unsupported(format!(
                "tensors total more than {OUTPUT_BUDGET_FACTOR} times the file size"
            ))
        })?;
        Ok(())
    }

    pub(super) fn memo_get(&mut self, key: u64) -> Result<(), TorchLoadError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    pub(super) fn memo_put(&mut self, key: u64) -> Result<(), TorchLoadError> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    pub(super) fn as_int(&self, id: ObjId, what: &str) -> Result<i64, TorchLoadError> {
        match self.obj(id) {
            Obj::Int(v) => Ok(*v),
            Obj::Bool(b) => Ok(*b as i64),
            o => Err(self.err(format!("{what}: expected int, got {}", o.kind()))),
        }
    }

    pub(super) fn as_usize(&self, id: ObjId, what: &str) -> Result<usize, TorchLoadError> {
        let v = self.as_int(id, what)?;
        usize::try_from(v).map_err(|_| self.err(format!("{what}: {v} is negative or too large")))
    }

    pub(super) fn as_str(&self, id: ObjId, what: &str) -> Result<&str, TorchLoadError> {
        match self.obj(id) {
            Obj::Str(s) => Ok(s),
            o => Err(self.err(format!("{what}: expected str, got {}", o.kind()))),
        }
    }

    pub(super) fn as_tuple(&self, id: ObjId, what: &str) -> Result<&[ObjId], TorchLoadError> {
        match self.obj(id) {
            Obj::Tuple(t) => Ok(t),
            o => Err(self.err(format!("{what}: expected tuple, got {}", o.kind()))),
        }
    }

    pub(super) fn set_item(
        &mut self,
        dict: ObjId,
        key: ObjId,
        value: ObjId,
    ) -> Result<(), TorchLoadError> {
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

    pub(super) fn append(&mut self, list: ObjId, items: &[ObjId]) -> Result<(), TorchLoadError> {
        let kind = self.obj(list).kind();
        match &mut self.arena[list] {
            Obj::List(l) => {
                l.extend_from_slice(items);
                Ok(())
            }
            _ => Err(self.err(format!("APPEND on a {kind}"))),
        }
    }

    pub(super) fn set_items(&mut self, dict: ObjId, items: &[ObjId]) -> Result<(), TorchLoadError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        for kv in items.chunks_exact(2) {
            self.set_item(dict, kv[0], kv[1])?;
        }
        Ok(())
    }

    pub(super) fn int_tuple(&self, id: ObjId, what: &str) -> Result<Vec<usize>, TorchLoadError> {
        self.as_tuple(id, what)?
            .iter()
            .map(|&i| self.as_usize(i, what))
            .collect()
    }
}
