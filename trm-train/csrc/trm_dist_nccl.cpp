// The NCCL half of the c10d bridge: compiled (with -DUSE_C10D_NCCL) only when trm-train's build
// script finds the NCCL and CUDA headers, and only used by trm_dist.cpp under TRM_DIST_NCCL.
#include <chrono>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

c10::intrusive_ptr<c10d::Backend> trm_dist_make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                                     int rank, int world_size,
                                                     std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, opts);
}
