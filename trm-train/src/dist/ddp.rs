//! Data-parallel helpers over a [`ProcessGroup`]: bucketed all-reduce and broadcast of many
//! tensors (as DDP does: tensors of one dtype and device flattened into buckets of about
//! [`DEFAULT_BUCKET_BYTES`], one collective per bucket, not one per tensor), and an all-gather
//! concatenated along the first dimension with a shape check first.
//!
//! Tensors on a device the backend does not take (a CUDA tensor under Gloo) are staged through
//! the backend's device and copied back.

use tch::{Device, Kind, Tensor};

use super::{Backend, DistError, ProcessGroup, ReduceOp};

/// The bucket size PyTorch's DDP uses by default (25 MiB).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Groups tensors, given as `(kind, device, bytes)` in a fixed order, into buckets: indices into
/// that order, each bucket holding tensors of one kind and device, consecutive in the order,
/// and at most `bucket_bytes` in all unless a single tensor is larger (it then has a bucket of
/// its own). Every rank must pass the same list to get the same buckets.
pub fn bucket_plan(tensors: &[(Kind, Device, usize)], bucket_bytes: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    let mut key: Option<(Kind, Device)> = None;
    for (i, &(kind, device, size)) in tensors.iter().enumerate() {
        let same = key == Some((kind, device));
        if !current.is_empty() && (!same || bytes + size > bucket_bytes) {
            buckets.push(std::mem::take(&mut current));
            bytes = 0;
        }
        key = Some((kind, device));
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        buckets.push(current);
    }
    buckets
}

fn tch_err(what: &str) -> impl FnOnce(tch::TchError) -> DistError + '_ {
    move |e| DistError::InvalidArgument(format!("{what}: {e}"))
}

fn byte_size(t: &Tensor) -> usize {
    t.numel() * t.kind().elt_size_in_bytes()
}

impl ProcessGroup {
    /// The device a tensor must be on for this group's backend, given where it is now.
    fn comm_device(&self, on: Device) -> Device {
        match (self.backend(), on) {
            (Backend::Gloo, _) => Device::Cpu,
            (Backend::Nccl, Device::Cuda(i)) => Device::Cuda(i),
            (Backend::Nccl, _) => Device::Cuda(self.local_rank()),
        }
    }

    /// Runs `f` on the flat concatenation of `tensors` (one kind and device), in buckets of at
    /// most `bucket_bytes`, and writes the results back into the tensors.
    fn bucketed(
        &self,
        what: &str,
        tensors: &mut [Tensor],
        bucket_bytes: usize,
        f: impl Fn(&Self, &mut Tensor) -> Result<(), DistError>,
    ) -> Result<usize, DistError> {
        let shape: Vec<(Kind, Device, usize)> = tensors
            .iter()
            .map(|t| (t.kind(), t.device(), byte_size(t)))
            .collect();
        let plan = bucket_plan(&shape, bucket_bytes);
        let _guard = tch::no_grad_guard();
        for bucket in &plan {
            let first = &tensors[bucket[0]];
            let dev = self.comm_device(first.device());
            let flats = bucket
                .iter()
                .map(|&i| tensors[i].f_reshape([-1]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(tch_err(what))?;
            let mut flat = Tensor::f_cat(&flats, 0)
                .and_then(|t| t.f_to_device(dev))
                .map_err(tch_err(what))?;
            f(self, &mut flat)?;
            let mut offset = 0i64;
            for &i in bucket {
                let t = &mut tensors[i];
                let n = t.numel() as i64;
                let part = flat
                    .f_narrow(0, offset, n)
                    .and_then(|p| p.f_view(t.size().as_slice()))
                    .map_err(tch_err(what))?;
                t.f_copy_(&part).map_err(tch_err(what))?;
                offset += n;
            }
        }
        Ok(plan.len())
    }

    /// Sums every tensor across ranks in place, one all-reduce per bucket of
    /// [`bucket_plan`]; returns the number of buckets (collectives) used. Every rank must pass
    /// tensors of the same kinds, devices and shapes in the same order.
    pub fn all_reduce_sum_bucketed(
        &self,
        tensors: &mut [Tensor],
        bucket_bytes: usize,
    ) -> Result<usize, DistError> {
        self.bucketed("bucketed all_reduce", tensors, bucket_bytes, |pg, t| {
            pg.all_reduce(t, ReduceOp::Sum)
        })
    }

    /// Copies rank `root`'s tensors into every rank's, in buckets (see
    /// [`ProcessGroup::all_reduce_sum_bucketed`]).
    pub fn broadcast_bucketed(
        &self,
        tensors: &mut [Tensor],
        root: usize,
        bucket_bytes: usize,
    ) -> Result<usize, DistError> {
        self.bucketed("bucketed broadcast", tensors, bucket_bytes, |pg, t| {
            pg.broadcast(t, root)
        })
    }

    /// Sums `t` (any device) into rank `root`; the result is meaningful on `root` only.
    pub fn reduce_sum_to(&self, t: &Tensor, root: usize) -> Result<Tensor, DistError> {
        let dev = self.comm_device(t.device());
        let mut c = t
            .f_to_device(dev)
            .and_then(|c| c.f_contiguous())
            .and_then(|c| c.f_detach_copy())
            .map_err(tch_err("reduce"))?;
        self.reduce(&mut c, root, ReduceOp::Sum)?;
        Ok(c)
    }

    /// Every rank's `t` (any device, any kind, bool included) concatenated along dimension 0 in
    /// rank order, on `t`'s device. Every rank must pass the same shape; this is checked first
    /// (one small all-gather), so that ranks passing different shapes get a [`DistError::InvalidArgument`] naming them, not a hang.
    pub fn all_gather_cat(&self, t: &Tensor) -> Result<Tensor, DistError> {
        const MAX_DIMS: usize = 8;
        let size = t.size();
        if size.is_empty() || size.len() > MAX_DIMS {
            return Err(DistError::InvalidArgument(format!(
                "all_gather_cat: needs 1 to {MAX_DIMS} dimensions, got {size:?}"
            )));
        }
        let dev = self.comm_device(t.device());
        let mut meta = vec![size.len() as i64];
        meta.extend(&size);
        meta.resize(MAX_DIMS + 1, -1);
        let meta = Tensor::from_slice(&meta)
            .f_to_device(dev)
            .map_err(tch_err("all_gather_cat"))?;
        let metas = self.all_gather(&meta)?;
        let first: Vec<i64> = Vec::<i64>::try_from(&metas[0].to_device(Device::Cpu))
            .map_err(tch_err("all_gather_cat"))?;
        for (r, m) in metas.iter().enumerate() {
            let v: Vec<i64> = Vec::<i64>::try_from(&m.to_device(Device::Cpu))
                .map_err(tch_err("all_gather_cat"))?;
            if v != first {
                let dims = |x: &[i64]| x[1..=(x[0].clamp(0, MAX_DIMS as i64) as usize)].to_vec();
                return Err(DistError::InvalidArgument(format!(
                    "all_gather_cat: rank {r} has shape {:?} but rank 0 has {:?} (every rank \
                     must pass the same shape)",
                    dims(&v),
                    dims(&first)
                )));
            }
        }
        let kind = t.kind();
        let staged = if kind == Kind::Bool {
            t.f_to_kind(Kind::Uint8)
        } else {
            Ok(t.shallow_clone())
        }
        .and_then(|s| s.f_to_device(dev))
        .and_then(|s| s.f_contiguous())
        .map_err(tch_err("all_gather_cat"))?;
        let parts = self.all_gather(&staged)?;
        let cat = Tensor::f_cat(&parts, 0)
            .and_then(|c| c.f_to_device(t.device()))
            .and_then(|c| c.f_to_kind(kind))
            .map_err(tch_err("all_gather_cat"))?;
        Ok(cat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_on_kind_device_and_size() {
        let f = Kind::Float;
        let b = Kind::BFloat16;
        let c = Device::Cpu;
        let plan = bucket_plan(
            &[
                (f, c, 10),
                (f, c, 10),
                (f, c, 10),
                (b, c, 4),
                (f, c, 50),
                (f, c, 1),
                (f, Device::Cuda(0), 1),
            ],
            25,
        );
        assert_eq!(
            plan,
            vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5], vec![6]]
        );
        assert!(bucket_plan(&[], 25).is_empty());
        let all: Vec<_> = (0..100).map(|_| (f, c, 4)).collect();
        let plan = bucket_plan(&all, DEFAULT_BUCKET_BYTES);
        assert_eq!(plan, vec![(0..100).collect::<Vec<_>>()]);
    }
}
