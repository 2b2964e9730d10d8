/* C interface of trm-train's bridge to libtorch's c10d (TCPStore, PrefixStore,
 * ProcessGroupGloo, ProcessGroupNCCL). Mirrored by trm-train/src/dist/ffi.rs.
 *
 * Conventions: every fallible call returns a TRM_DIST_* code (0 = success) and, on failure,
 * stores a malloc'ed NUL-terminated message in *err (free it with trm_dist_free_string; err may
 * be NULL). No C++ exception crosses this interface. Tensor arguments are `at::Tensor*` passed as
 * `void*` (what tch's `Tensor::as_ptr()` returns: torch-sys's `tensor` typedef is
 * `torch::Tensor*`, and torch::Tensor is at::Tensor). Handles are opaque and owned by the caller,
 * who destroys each exactly once. */
#ifndef TRM_DIST_H
#define TRM_DIST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  TRM_DIST_OK = 0,
  TRM_DIST_ERROR = 1,       /* any other failure */
  TRM_DIST_TIMEOUT = 2,     /* a store wait, connection or collective ran out of time */
  TRM_DIST_NETWORK = 3,     /* socket-level failure (connection refused, reset, ...) */
  TRM_DIST_MISMATCH = 4,    /* the ranks disagree on the world size, or a rank is claimed twice */
  TRM_DIST_INVALID = 5,     /* a bad argument (rank out of range, undefined tensor, ...) */
  TRM_DIST_UNAVAILABLE = 6, /* the backend was not compiled into this bridge */
  TRM_DIST_BACKEND = 7      /* the communication backend (Gloo, NCCL) reported an error */
};

/* Reduction operators (values of c10d::ReduceOp::RedOpType). */
enum { TRM_DIST_SUM = 0, TRM_DIST_PRODUCT = 2, TRM_DIST_MIN = 3, TRM_DIST_MAX = 4 };

typedef struct TrmDistStore TrmDistStore;
typedef struct TrmDistPg TrmDistPg;

void trm_dist_free_string(char* s);
/* 1 when ProcessGroupNCCL was compiled in, else 0. */
int trm_dist_has_nccl(void);

/* A TCPStore at host:port, the server when is_server (expecting world_size workers, not waiting
 * for them), else a client that retries connecting until timeout_ms. prefix (may be NULL or
 * empty) wraps it in a PrefixStore. */
int trm_dist_store_create(const char* host, uint16_t port, int is_server, int world_size,
                          int64_t timeout_ms, const char* prefix, TrmDistStore** out, char** err);
/* Rendezvous check: every rank announces (rank, world_size) and waits up to timeout_ms for all
 * world_size ranks; fails with TRM_DIST_MISMATCH when the ranks disagree on the world size or a
 * rank is claimed twice, TRM_DIST_TIMEOUT when not all ranks arrive. */
int trm_dist_store_check_world(TrmDistStore* store, int rank, int world_size, int64_t timeout_ms,
                               char** err);
void trm_dist_store_destroy(TrmDistStore* store);

/* ProcessGroupGloo (CPU tensors). Its transport binds to `iface` when non-empty, else to the
 * address `hostname` resolves to when non-empty, else to the machine's hostname. */
int trm_dist_pg_gloo(TrmDistStore* store, int rank, int world_size, int64_t timeout_ms,
                     const char* hostname, const char* iface, TrmDistPg** out, char** err);
/* ProcessGroupNCCL (CUDA tensors); TRM_DIST_UNAVAILABLE when not compiled in. */
int trm_dist_pg_nccl(TrmDistStore* store, int rank, int world_size, int64_t timeout_ms,
                     TrmDistPg** out, char** err);
void trm_dist_pg_destroy(TrmDistPg* pg);

/* Blocking collectives, in place on `tensor` (an at::Tensor*). */
int trm_dist_all_reduce(TrmDistPg* pg, void* tensor, int op, char** err);
int trm_dist_broadcast(TrmDistPg* pg, void* tensor, int root, char** err);
int trm_dist_reduce(TrmDistPg* pg, void* tensor, int root, int op, char** err);
/* outputs: world_size at::Tensor* of the input's shape, dtype and device. */
int trm_dist_all_gather(TrmDistPg* pg, void* const* outputs, size_t n_outputs, void* input,
                        char** err);
int trm_dist_barrier(TrmDistPg* pg, char** err);

#ifdef __cplusplus
}
#endif

#endif
