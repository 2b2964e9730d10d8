//! From pickled calls to tensors: the storages (`persistent_load`), `_rebuild_tensor_v2` and its
//! strided views gathered into contiguous data, and the state_dict handed out.

use std::rc::Rc;

use super::TorchLoadError;
use super::limits::MAX_RANK;
use super::machine::Machine;
use super::object::{Dict, Global, Obj, ObjId, Storage};
use super::tensor::Tensor;

impl Machine<'_, '_, '_> {
    /// Calls a known global with a tuple of arguments.
    pub(super) fn call(&mut self, f: ObjId, args: ObjId) -> Result<ObjId, TorchLoadError> {
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
    pub(super) fn persistent_load(&mut self, pid: ObjId) -> Result<Obj, TorchLoadError> {
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

    /// Checks that the root is a dictionary of named tensors and hands them out in order.
    pub(super) fn into_state_dict(
        mut self,
        root: ObjId,
    ) -> Result<Vec<(String, Tensor)>, TorchLoadError> {
        // Named from the object taken out (the arena then holds None in its place).
        let d = match std::mem::replace(&mut self.arena[root], Obj::None) {
            Obj::Dict(d) => d,
            other => {
                return Err(TorchLoadError::NotAStateDict(format!(
                    "the pickled object is {}, not a dict",
                    other.a_kind()
                )));
            }
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
    use crate::torch::TorchDType;

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
