//! The pickle opcodes `torch.save` emits for a state_dict (protocols 2 to 5); any other is an
//! error naming it.

use super::TorchLoadError;
use super::limits::MAX_PROTOCOL;
use super::machine::Machine;
use super::object::{Dict, Global, Obj, ObjId};

impl Machine<'_, '_, '_> {
    /// Runs the pickle to `STOP`; returns the root object.
    pub(super) fn run(&mut self) -> Result<ObjId, TorchLoadError> {
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
}
