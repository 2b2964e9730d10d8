// trm-train's bridge to libtorch's c10d: see trm_dist.h for the conventions.
#include "trm_dist.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#ifdef TRM_DIST_NCCL
// Defined in trm_dist_nccl.cpp (compiled only when the NCCL and CUDA headers are present).
c10::intrusive_ptr<c10d::Backend> trm_dist_make_nccl(const c10::intrusive_ptr<c10d::Store>& store,
                                                     int rank, int world_size,
                                                     std::chrono::milliseconds timeout);
#endif

struct TrmDistStore {
  c10::intrusive_ptr<c10d::Store> store;
  bool is_server;
};

struct TrmDistPg {
  c10::intrusive_ptr<c10d::Backend> backend;
  int world_size;
};

namespace {

// An error with its TRM_DIST_* code, thrown inside the bridge.
struct TrmError {
  int code;
  std::string msg;
};

char* dup_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p != nullptr) {
    std::memcpy(p, s.c_str(), s.size() + 1);
  }
  return p;
}

bool mentions_timeout(const std::string& s) {
  return s.find("timeout") != std::string::npos || s.find("timed out") != std::string::npos ||
         s.find("Timeout") != std::string::npos || s.find("Timed out") != std::string::npos;
}

// Runs f, turning every exception into a code and a message: nothing escapes to the caller.
template <class F>
int guarded(char** err, F&& f) {
  int code = TRM_DIST_ERROR;
  std::string msg;
  try {
    f();
    return TRM_DIST_OK;
  } catch (const TrmError& e) {
    code = e.code;
    msg = e.msg;
  } catch (const c10::DistNetworkError& e) {
    msg = e.what_without_backtrace();
    code = mentions_timeout(msg) ? TRM_DIST_TIMEOUT : TRM_DIST_NETWORK;
  } catch (const c10::DistStoreError& e) {
    msg = e.what_without_backtrace();
    code = mentions_timeout(msg) ? TRM_DIST_TIMEOUT : TRM_DIST_ERROR;
  } catch (const c10::DistBackendError& e) {
    msg = e.what_without_backtrace();
    code = mentions_timeout(msg) ? TRM_DIST_TIMEOUT : TRM_DIST_BACKEND;
  } catch (const c10::Error& e) {
    msg = e.what_without_backtrace();
    code = mentions_timeout(msg) ? TRM_DIST_TIMEOUT : TRM_DIST_ERROR;
  } catch (const std::exception& e) {
    msg = e.what();
    code = mentions_timeout(msg) ? TRM_DIST_TIMEOUT : TRM_DIST_ERROR;
  } catch (...) {
    msg = "unknown C++ exception";
  }
  if (err != nullptr) {
    *err = dup_string(msg);
  }
  return code;
}

void require(bool ok, int code, const std::string& msg) {
  if (!ok) {
    throw TrmError{code, msg};
  }
}

std::string to_string(const std::vector<uint8_t>& v) {
  return std::string(v.begin(), v.end());
}

std::vector<uint8_t> to_bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::string this_process() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) {
    std::strcpy(host, "?");
  }
  return std::string(host) + ":" + std::to_string(static_cast<long>(getpid()));
}

TrmDistPg* checked_pg(TrmDistPg* pg) {
  require(pg != nullptr, TRM_DIST_INVALID, "null process group handle");
  return pg;
}

at::Tensor checked_tensor(void* t, const char* what) {
  require(t != nullptr, TRM_DIST_INVALID, std::string(what) + ": null tensor pointer");
  const at::Tensor& tensor = *static_cast<at::Tensor*>(t);
  require(tensor.defined(), TRM_DIST_INVALID, std::string(what) + ": undefined tensor");
  return tensor;
}

void check_root(const TrmDistPg* pg, int root) {
  require(root >= 0 && root < pg->world_size, TRM_DIST_INVALID,
          "root rank " + std::to_string(root) + " is outside 0.." +
              std::to_string(pg->world_size - 1));
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case TRM_DIST_SUM:
      return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case TRM_DIST_PRODUCT:
      return c10d::ReduceOp(c10d::ReduceOp::PRODUCT);
    case TRM_DIST_MIN:
      return c10d::ReduceOp(c10d::ReduceOp::MIN);
    case TRM_DIST_MAX:
      return c10d::ReduceOp(c10d::ReduceOp::MAX);
    default:
      throw TrmError{TRM_DIST_INVALID, "unknown reduce op " + std::to_string(op)};
  }
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  require(static_cast<bool>(work), TRM_DIST_BACKEND, "the backend returned no work handle");
  work->wait();
}

}  // namespace

extern "C" {

void trm_dist_free_string(char* s) { std::free(s); }

int trm_dist_has_nccl(void) {
#ifdef TRM_DIST_NCCL
  return 1;
#else
  return 0;
#endif
}

int trm_dist_store_create(const char* host, uint16_t port, int is_server, int world_size,
                          int64_t timeout_ms, const char* prefix, TrmDistStore** out, char** err) {
  return guarded(err, [&] {
    require(out != nullptr && host != nullptr, TRM_DIST_INVALID, "null argument");
    require(world_size > 0, TRM_DIST_INVALID, "world size must be positive");
    require(timeout_ms > 0, TRM_DIST_INVALID, "timeout must be positive");
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    // The rendezvous check (trm_dist_store_check_world) waits for the workers with clearer
    // errors than the server's own wait.
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    *out = new TrmDistStore{std::move(store), opts.isServer};
  });
}

int trm_dist_store_check_world(TrmDistStore* handle, int rank, int world_size, int64_t timeout_ms,
                               char** err) {
  return guarded(err, [&] {
    require(handle != nullptr, TRM_DIST_INVALID, "null store handle");
    require(world_size > 0 && rank >= 0 && rank < world_size, TRM_DIST_INVALID,
            "rank " + std::to_string(rank) + " is outside 0.." + std::to_string(world_size - 1));
    auto& store = handle->store;
    const std::string abort_key = "trm_dist/abort";
    // A rank that finds a mismatch records it, so that the ranks already waiting fail with the
    // same message instead of a timeout.
    // The value is "<code>:<message>". The rank hosting the store lingers a little so that the
    // others (polling every 20 ms) read it before the store goes away with this process.
    auto fail = [&](int code, const std::string& msg) {
      try {
        store->set(abort_key, to_bytes(std::to_string(code) + ":" + msg));
        if (handle->is_server) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      } catch (...) {
      }
      throw TrmError{code, msg};
    };
    const std::string ws = std::to_string(world_size);
    // The first rank to arrive records its world size; every later one must agree.
    const std::string agreed =
        to_string(store->compareSet("trm_dist/world_size", {}, to_bytes(ws)));
    if (agreed != ws) {
      fail(TRM_DIST_MISMATCH, "world size mismatch: rank " + std::to_string(rank) + " has world size " + ws +
           " but another rank registered world size " + agreed +
           " (check WORLD_SIZE / --nproc-per-node)");
    }
    const std::string me = this_process();
    const std::string rank_key = "trm_dist/rank/" + std::to_string(rank);
    const std::string owner = to_string(store->compareSet(rank_key, {}, to_bytes(me)));
    if (owner != me) {
      fail(TRM_DIST_MISMATCH, "rank " + std::to_string(rank) + " was claimed twice: by " + owner + " and by " + me +
           " (check RANK)");
    }
    const int64_t joined = store->add("trm_dist/joined", 1);
    if (joined > world_size) {
      fail(TRM_DIST_MISMATCH, "world size mismatch: " + std::to_string(joined) +
           " processes joined a world of size " + ws);
    }
    std::vector<std::string> keys;
    keys.reserve(static_cast<std::size_t>(world_size));
    for (int r = 0; r < world_size; ++r) {
      keys.push_back("trm_dist/rank/" + std::to_string(r));
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    // Polls (every 20 ms) rather than Store::wait, to see an abort from another rank.
    while (true) {
      try {
        if (store->check({abort_key})) {
          const std::string v = to_string(store->get(abort_key));
          const auto colon = v.find(':');
          int code = TRM_DIST_MISMATCH;
          std::string msg = v;
          if (colon != std::string::npos) {
            code = std::atoi(v.substr(0, colon).c_str());
            msg = v.substr(colon + 1);
          }
          throw TrmError{code, msg};
        }
        if (store->check(keys)) {
          return;
        }
      } catch (const c10::DistError& e) {
        throw TrmError{TRM_DIST_NETWORK,
                       std::string("lost the rendezvous store while waiting for the other ranks "
                                   "(did rank 0 exit?): ") +
                           e.what_without_backtrace()};
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        int64_t n = -1;
        try {
          n = store->add("trm_dist/joined", 0);
        } catch (...) {
        }
        const std::string seen = n >= 0 ? std::to_string(n) : std::string("?");
        fail(TRM_DIST_TIMEOUT, "timed out after " + std::to_string(timeout_ms) +
                                   " ms waiting for the other ranks: " + seen + " of " + ws +
                                   " joined (are all ranks launched, with the same WORLD_SIZE?)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
}

void trm_dist_store_destroy(TrmDistStore* store) {
  try {
    delete store;
  } catch (...) {
  }
}

int trm_dist_pg_gloo(TrmDistStore* handle, int rank, int world_size, int64_t timeout_ms,
                     const char* hostname, const char* iface, TrmDistPg** out, char** err) {
  return guarded(err, [&] {
    require(handle != nullptr && out != nullptr, TRM_DIST_INVALID, "null argument");
    require(world_size > 0 && rank >= 0 && rank < world_size, TRM_DIST_INVALID,
            "rank " + std::to_string(rank) + " is outside 0.." + std::to_string(world_size - 1));
    require(timeout_ms > 0, TRM_DIST_INVALID, "timeout must be positive");
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    if (iface != nullptr && iface[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    } else if (hostname != nullptr && hostname[0] != '\0') {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupGloo>(handle->store, rank, world_size, opts);
    *out = new TrmDistPg{std::move(backend), world_size};
  });
}

int trm_dist_pg_nccl(TrmDistStore* handle, int rank, int world_size, int64_t timeout_ms,
                     TrmDistPg** out, char** err) {
  return guarded(err, [&] {
    require(handle != nullptr && out != nullptr, TRM_DIST_INVALID, "null argument");
    require(world_size > 0 && rank >= 0 && rank < world_size, TRM_DIST_INVALID,
            "rank " + std::to_string(rank) + " is outside 0.." + std::to_string(world_size - 1));
    require(timeout_ms > 0, TRM_DIST_INVALID, "timeout must be positive");
#ifdef TRM_DIST_NCCL
    auto backend =
        trm_dist_make_nccl(handle->store, rank, world_size, std::chrono::milliseconds(timeout_ms));
    *out = new TrmDistPg{std::move(backend), world_size};
#else
    throw TrmError{TRM_DIST_UNAVAILABLE,
                   "this build of trm-train has no NCCL backend (its build script found no "
                   "NCCL/CUDA headers: see trm-train/build.rs)"};
#endif
  });
}

void trm_dist_pg_destroy(TrmDistPg* pg) {
  try {
    delete pg;
  } catch (...) {
  }
}

int trm_dist_all_reduce(TrmDistPg* pg, void* tensor, int op, char** err) {
  return guarded(err, [&] {
    checked_pg(pg);
    std::vector<at::Tensor> ts{checked_tensor(tensor, "all_reduce")};
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    wait(pg->backend->allreduce(ts, opts));
  });
}

int trm_dist_broadcast(TrmDistPg* pg, void* tensor, int root, char** err) {
  return guarded(err, [&] {
    check_root(checked_pg(pg), root);
    std::vector<at::Tensor> ts{checked_tensor(tensor, "broadcast")};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    wait(pg->backend->broadcast(ts, opts));
  });
}

int trm_dist_reduce(TrmDistPg* pg, void* tensor, int root, int op, char** err) {
  return guarded(err, [&] {
    check_root(checked_pg(pg), root);
    std::vector<at::Tensor> ts{checked_tensor(tensor, "reduce")};
    c10d::ReduceOptions opts;
    opts.rootRank = root;
    opts.reduceOp = reduce_op(op);
    wait(pg->backend->reduce(ts, opts));
  });
}

int trm_dist_all_gather(TrmDistPg* pg, void* const* outputs, size_t n_outputs, void* input,
                        char** err) {
  return guarded(err, [&] {
    checked_pg(pg);
    require(outputs != nullptr, TRM_DIST_INVALID, "all_gather: null output array");
    require(n_outputs == static_cast<size_t>(pg->world_size), TRM_DIST_INVALID,
            "all_gather: " + std::to_string(n_outputs) + " outputs for a world of size " +
                std::to_string(pg->world_size));
    std::vector<at::Tensor> in{checked_tensor(input, "all_gather input")};
    std::vector<std::vector<at::Tensor>> outs(1);
    outs[0].reserve(n_outputs);
    for (size_t i = 0; i < n_outputs; ++i) {
      outs[0].push_back(checked_tensor(outputs[i], "all_gather output"));
    }
    wait(pg->backend->allgather(outs, in));
  });
}

int trm_dist_barrier(TrmDistPg* pg, char** err) {
  return guarded(err, [&] { wait(checked_pg(pg)->backend->barrier()); });
}

}  // extern "C"
