//! Distributed data parallelism through libtorch's own c10d: a `TCPStore` rendezvous (optionally
//! under a `PrefixStore`) and a `ProcessGroupGloo` (CPU tensors) or `ProcessGroupNCCL` (CUDA
//! tensors), reached through the small C++ bridge in `trm-train/csrc/` that the build script
//! compiles against the venv's libtorch.
//!
//! Launching: [`ProcessGroup::from_env`] reads the variables `torchrun` sets (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`, `TORCHELASTIC_RESTART_COUNT`,
//! `TORCHELASTIC_USE_AGENT_STORE`); under torchrun the launcher hosts the store and every rank
//! connects to it as a client under the prefix `/worker/attempt_{restart count}`, otherwise rank 0
//! hosts it. [`ProcessGroup::new`] takes an explicit [`DistConfig`].
//!
//! Before the backend is built, every rank checks in with the store: ranks that disagree on the
//! world size, a rank number claimed twice, or ranks missing after the timeout give a
//! [`DistError`] (never a hang), as does a store that cannot be reached.
//!
//! The collectives are blocking and work in place on tch tensors; [`ddp`] adds the bucketed
//! all-reduce and broadcast and the gathers the training loop uses, [`env`] the launch
//! environments (torchrun, Slurm).

pub mod ddp;
pub mod env;
mod ffi;

pub use env::{LaunchEnv, detect};

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::{self, NonNull};
use std::time::Duration;

use tch::{Device, Tensor};

/// The communication backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Gloo, on CPU tensors.
    Gloo,
    /// NCCL, on CUDA tensors (needs the NCCL half of the bridge: [`nccl_available`]).
    Nccl,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// The element-wise reduction of [`ProcessGroup::all_reduce`] and [`ProcessGroup::reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Product.
    Product,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl ReduceOp {
    fn code(self) -> c_int {
        // The values of c10d::ReduceOp::RedOpType (TRM_DIST_SUM etc. in trm_dist.h).
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Product => 2,
            ReduceOp::Min => 3,
            ReduceOp::Max => 4,
        }
    }
}

/// Where the rendezvous `TCPStore` lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// Rank 0 hosts the store at `master_addr:master_port`; the others connect to it.
    RankZeroHosts,
    /// Someone else (torchrun's agent) hosts it; every rank connects and works under `prefix`.
    External {
        /// Key prefix, `/worker/attempt_{TORCHELASTIC_RESTART_COUNT}` under torchrun.
        prefix: String,
    },
}

/// Everything needed to join a process group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistConfig {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank within this node (the CUDA device index under NCCL).
    pub local_rank: usize,
    /// Host of the rendezvous store.
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
    /// Who hosts the store.
    pub store: StoreMode,
    /// Limit for reaching the store, for all ranks to check in, and for every collective.
    pub timeout: Duration,
    /// The communication backend.
    pub backend: Backend,
    /// Network interface for Gloo (`GLOO_SOCKET_IFNAME`); `None`: see [`ProcessGroup::new`].
    pub gloo_interface: Option<String>,
}

impl DistConfig {
    /// Reads the torchrun variables from the process environment: see [`DistConfig::from_vars`].
    pub fn from_env(backend: Backend, timeout: Duration) -> Result<Self, DistError> {
        Self::from_vars(|k| std::env::var(k).ok(), backend, timeout)
    }

    /// Builds the configuration from variables looked up by `var`: `RANK`, `WORLD_SIZE`,
    /// `MASTER_ADDR` and `MASTER_PORT` are required; `LOCAL_RANK` defaults to `RANK` (one node).
    /// The store is external (torchrun's agent) when `TORCHELASTIC_USE_AGENT_STORE` is `True`, or,
    /// that variable being absent, when `TORCHELASTIC_RESTART_COUNT` is set; the prefix is
    /// `/worker/attempt_{TORCHELASTIC_RESTART_COUNT or 0}`. `GLOO_SOCKET_IFNAME` picks Gloo's
    /// interface.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        backend: Backend,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        let required = |name: &'static str| -> Result<String, DistError> {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(DistError::MissingEnv { var: name })
        };
        let number = |name: &'static str, value: String| -> Result<usize, DistError> {
            value.parse::<usize>().map_err(|e| DistError::BadEnv {
                var: name,
                value: value.clone(),
                reason: e.to_string(),
            })
        };
        let rank = number("RANK", required("RANK")?)?;
        let world_size = number("WORLD_SIZE", required("WORLD_SIZE")?)?;
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", v.trim().to_owned())?,
            None => rank,
        };
        let master_addr = required("MASTER_ADDR")?;
        let port_text = required("MASTER_PORT")?;
        let master_port = port_text.parse::<u16>().map_err(|e| DistError::BadEnv {
            var: "MASTER_PORT",
            value: port_text.clone(),
            reason: e.to_string(),
        })?;
        let restart = var("TORCHELASTIC_RESTART_COUNT").map(|v| v.trim().to_owned());
        let agent_store = match var("TORCHELASTIC_USE_AGENT_STORE") {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => restart.is_some(),
        };
        let store = if agent_store {
            let attempt = match restart {
                Some(v) => number("TORCHELASTIC_RESTART_COUNT", v)?,
                None => 0,
            };
            StoreMode::External {
                prefix: format!("/worker/attempt_{attempt}"),
            }
        } else {
            StoreMode::RankZeroHosts
        };
        let cfg = DistConfig {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            store,
            timeout,
            backend,
            gloo_interface: var("GLOO_SOCKET_IFNAME").filter(|v| !v.trim().is_empty()),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the numbers against each other (rank inside the world, a usable timeout).
    pub fn validate(&self) -> Result<(), DistError> {
        if self.world_size == 0 || self.world_size > c_int::MAX as usize {
            return Err(DistError::InvalidArgument(format!(
                "world size {} is not in 1..={}",
                self.world_size,
                c_int::MAX
            )));
        }
        if self.rank >= self.world_size {
            return Err(DistError::InvalidArgument(format!(
                "rank {} is outside 0..{} (world size {}): check RANK and WORLD_SIZE",
                self.rank,
                self.world_size - 1,
                self.world_size
            )));
        }
        if self.local_rank >= self.world_size {
            return Err(DistError::InvalidArgument(format!(
                "local rank {} is not below the world size {}",
                self.local_rank, self.world_size
            )));
        }
        if self.timeout.as_millis() == 0 || self.timeout.as_millis() > i64::MAX as u128 {
            return Err(DistError::InvalidArgument(format!(
                "timeout {:?} must be at least 1 ms",
                self.timeout
            )));
        }
        Ok(())
    }

    fn timeout_ms(&self) -> i64 {
        // validate() bounds it.
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What went wrong joining a process group or running a collective.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DistError {
    /// A required environment variable is not set.
    MissingEnv {
        /// Its name.
        var: &'static str,
    },
    /// An environment variable does not parse.
    BadEnv {
        /// Its name.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A bad argument: rank outside the world, tensor on the wrong device, ...
    InvalidArgument(String),
    /// The store could not be reached, not every rank checked in, or a collective took too
    /// long, within the timeout.
    Timeout(String),
    /// A socket-level failure (connection refused or lost).
    Network(String),
    /// The ranks disagree on the world size, or two processes claim the same rank.
    WorldSizeMismatch(String),
    /// Gloo or NCCL reported an error.
    Backend(String),
    /// The bridge or the requested backend was not compiled into this build.
    Unavailable(String),
    /// Any other error from c10d.
    Other(String),
}

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistError::MissingEnv { var } => write!(
                f,
                "environment variable {var} is not set (launch with torchrun, or set RANK, \
                 WORLD_SIZE, MASTER_ADDR and MASTER_PORT)"
            ),
            DistError::BadEnv { var, value, reason } => {
                write!(
                    f,
                    "environment variable {var}={value:?} is invalid: {reason}"
                )
            }
            DistError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            DistError::Timeout(m) => write!(f, "timeout: {m}"),
            DistError::Network(m) => write!(f, "network error: {m}"),
            DistError::WorldSizeMismatch(m) => write!(f, "{m}"),
            DistError::Backend(m) => write!(f, "backend error: {m}"),
            DistError::Unavailable(m) => write!(f, "unavailable: {m}"),
            DistError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for DistError {}

impl DistError {
    fn from_code(code: c_int, msg: String) -> Self {
        match code {
            ffi::TRM_DIST_TIMEOUT => DistError::Timeout(msg),
            ffi::TRM_DIST_NETWORK => DistError::Network(msg),
            ffi::TRM_DIST_MISMATCH => DistError::WorldSizeMismatch(msg),
            ffi::TRM_DIST_INVALID => DistError::InvalidArgument(msg),
            ffi::TRM_DIST_UNAVAILABLE => DistError::Unavailable(msg),
            ffi::TRM_DIST_BACKEND => DistError::Backend(msg),
            _ => DistError::Other(msg),
        }
    }

    fn with_context(self, ctx: &str) -> Self {
        let add = |m: String| format!("{ctx}: {m}");
        match self {
            DistError::InvalidArgument(m) => DistError::InvalidArgument(add(m)),
            DistError::Timeout(m) => DistError::Timeout(add(m)),
            DistError::Network(m) => DistError::Network(add(m)),
            DistError::Backend(m) => DistError::Backend(add(m)),
            DistError::Unavailable(m) => DistError::Unavailable(add(m)),
            DistError::Other(m) => DistError::Other(add(m)),
            e => e,
        }
    }
}

/// Whether this build has the c10d bridge at all (Gloo).
pub fn bridge_available() -> bool {
    cfg!(trm_dist_bridge)
}

/// Whether this build has the NCCL backend.
pub fn nccl_available() -> bool {
    // SAFETY: a function without arguments or preconditions (a stand-in returning 0 when the
    // bridge is absent).
    unsafe { ffi::trm_dist_has_nccl() != 0 }
}

/// Runs one bridge call that reports failure through a code and a malloc'ed message, and turns
/// that into a `Result`, freeing the message.
fn check(call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), DistError> {
    let mut err: *mut c_char = ptr::null_mut();
    let code = call(&mut err);
    if code == ffi::TRM_DIST_OK {
        return Ok(());
    }
    let msg = if err.is_null() {
        if cfg!(trm_dist_bridge) {
            "c10d bridge error (no message)".to_owned()
        } else {
            "trm-train was built without the c10d bridge (no Gloo headers: install libgloo-dev \
             and rebuild)"
                .to_owned()
        }
    } else {
        // SAFETY: a non-null `err` is a NUL-terminated string the bridge malloc'ed for us and
        // nobody else holds; it is read once here and then freed exactly once by the bridge's
        // own free function.
        unsafe {
            let m = CStr::from_ptr(err).to_string_lossy().into_owned();
            ffi::trm_dist_free_string(err);
            m
        }
    };
    Err(DistError::from_code(code, msg))
}

fn c_string(what: &str, s: &str) -> Result<CString, DistError> {
    CString::new(s).map_err(|_| DistError::InvalidArgument(format!("{what} contains a NUL byte")))
}

/// A joined process group: a store connection plus a Gloo or NCCL backend. Dropping it leaves
/// the group (call [`ProcessGroup::barrier`] first when the others still need this rank).
pub struct ProcessGroup {
    // Declared before `store` only for readability: Drop destroys the backend first.
    pg: NonNull<ffi::TrmDistPg>,
    store: NonNull<ffi::TrmDistStore>,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    backend: Backend,
}

impl fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .field("backend", &self.backend)
            .finish()
    }
}

impl ProcessGroup {
    /// Joins the group described by the torchrun environment ([`DistConfig::from_env`]).
    pub fn from_env(backend: Backend, timeout: Duration) -> Result<Self, DistError> {
        Self::new(&DistConfig::from_env(backend, timeout)?)
    }

    /// Joins the group `cfg` describes: connects to (or, rank 0 with
    /// [`StoreMode::RankZeroHosts`], starts) the store, checks in with the other ranks, and
    /// builds the backend. Gloo binds to `cfg.gloo_interface` when set, to 127.0.0.1 when the
    /// master address is a loopback one, else to the address of this machine's hostname.
    pub fn new(cfg: &DistConfig) -> Result<Self, DistError> {
        cfg.validate()?;
        if cfg.backend == Backend::Nccl && !nccl_available() {
            return Err(DistError::Unavailable(
                "this build of trm-train has no NCCL backend (no NCCL/CUDA headers at build \
                 time; see trm-train/build.rs)"
                    .to_owned(),
            ));
        }
        let timeout_ms = cfg.timeout_ms();
        // validate() bounds world_size by c_int::MAX and rank below it.
        let rank = cfg.rank as c_int;
        let world = cfg.world_size as c_int;
        let host = c_string("MASTER_ADDR", &cfg.master_addr)?;
        let (is_server, prefix) = match &cfg.store {
            StoreMode::RankZeroHosts => (cfg.rank == 0, None),
            StoreMode::External { prefix } => (false, Some(c_string("store prefix", prefix)?)),
        };
        let mut store: *mut ffi::TrmDistStore = ptr::null_mut();
        check(|err| {
            // SAFETY: `host` and `prefix` are NUL-terminated strings that outlive the call (the
            // prefix pointer is null when absent, which the bridge accepts); `store` and `err`
            // are valid out-pointers.
            unsafe {
                ffi::trm_dist_store_create(
                    host.as_ptr(),
                    cfg.master_port,
                    c_int::from(is_server),
                    world,
                    timeout_ms,
                    prefix.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                    &mut store,
                    err,
                )
            }
        })
        .map_err(|e| {
            let role = if is_server { "host" } else { "reach" };
            e.with_context(&format!(
                "cannot {role} the rendezvous store at {}:{}",
                cfg.master_addr, cfg.master_port
            ))
        })?;
        let store = NonNull::new(store)
            .ok_or_else(|| DistError::Other("the bridge returned a null store".to_owned()))?;
        // From here on `guard` destroys the store on every error path.
        let guard = StoreGuard(store);
        check(|err| {
            // SAFETY: `store` is a live handle owned by `guard`; `err` is a valid out-pointer.
            unsafe { ffi::trm_dist_store_check_world(store.as_ptr(), rank, world, timeout_ms, err) }
        })?;

        let mut pg: *mut ffi::TrmDistPg = ptr::null_mut();
        match cfg.backend {
            Backend::Gloo => {
                let iface = c_string(
                    "GLOO_SOCKET_IFNAME",
                    cfg.gloo_interface.as_deref().unwrap_or(""),
                )?;
                let hostname = if is_loopback(&cfg.master_addr) {
                    "127.0.0.1"
                } else {
                    ""
                };
                let hostname = c_string("hostname", hostname)?;
                check(|err| {
                    // SAFETY: `store` is live (owned by `guard`); the strings are NUL-terminated
                    // and outlive the call; `pg` and `err` are valid out-pointers. The backend
                    // keeps its own reference to the store.
                    unsafe {
                        ffi::trm_dist_pg_gloo(
                            store.as_ptr(),
                            rank,
                            world,
                            timeout_ms,
                            hostname.as_ptr(),
                            iface.as_ptr(),
                            &mut pg,
                            err,
                        )
                    }
                })?;
            }
            Backend::Nccl => {
                check(|err| {
                    // SAFETY: as for Gloo: a live store handle and valid out-pointers.
                    unsafe {
                        ffi::trm_dist_pg_nccl(store.as_ptr(), rank, world, timeout_ms, &mut pg, err)
                    }
                })?;
            }
        }
        let pg = NonNull::new(pg).ok_or_else(|| {
            DistError::Other("the bridge returned a null process group".to_owned())
        })?;
        std::mem::forget(guard);
        Ok(ProcessGroup {
            pg,
            store,
            rank: cfg.rank,
            world_size: cfg.world_size,
            local_rank: cfg.local_rank,
            backend: cfg.backend,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Rank within this node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that `t` suits the backend: on its device kind, dense and contiguous.
    fn check_tensor(&self, what: &str, t: &Tensor) -> Result<(), DistError> {
        let ok_device = matches!(
            (self.backend, t.device()),
            (Backend::Gloo, Device::Cpu) | (Backend::Nccl, Device::Cuda(_))
        );
        if !ok_device {
            return Err(DistError::InvalidArgument(format!(
                "{what}: a tensor on {:?} cannot go through the {} backend",
                t.device(),
                self.backend.name()
            )));
        }
        if !t.is_contiguous() {
            return Err(DistError::InvalidArgument(format!(
                "{what}: the tensor must be contiguous"
            )));
        }
        Ok(())
    }

    fn check_root(&self, what: &str, root: usize) -> Result<c_int, DistError> {
        if root >= self.world_size {
            return Err(DistError::InvalidArgument(format!(
                "{what}: root rank {root} is outside 0..{}",
                self.world_size - 1
            )));
        }
        // world_size fits a c_int (validated at construction).
        Ok(root as c_int)
    }

    /// Replaces `t` on every rank by the element-wise `op` of all ranks' `t`.
    pub fn all_reduce(&self, t: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        self.check_tensor("all_reduce", t)?;
        let tp = t.as_mut_ptr() as *mut c_void;
        check(|err| {
            // SAFETY: `self.pg` is live for `&self`; `tp` points at the at::Tensor that `t`
            // owns (torch-sys's `tensor` is `torch::Tensor*`), borrowed mutably for the call,
            // which is blocking: the bridge keeps no reference after it returns.
            unsafe { ffi::trm_dist_all_reduce(self.pg.as_ptr(), tp, op.code(), err) }
        })
    }

    /// Copies rank `root`'s `t` into `t` on every rank (same shape and dtype everywhere).
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.check_tensor("broadcast", t)?;
        let root = self.check_root("broadcast", root)?;
        let tp = t.as_mut_ptr() as *mut c_void;
        check(|err| {
            // SAFETY: as in all_reduce: a live group and a mutably borrowed at::Tensor, for a
            // blocking call.
            unsafe { ffi::trm_dist_broadcast(self.pg.as_ptr(), tp, root, err) }
        })
    }

    /// Reduces every rank's `t` with `op` into `t` on rank `root`; on the other ranks `t` is
    /// left in an unspecified state (the backend may use it as scratch).
    pub fn reduce(&self, t: &mut Tensor, root: usize, op: ReduceOp) -> Result<(), DistError> {
        self.check_tensor("reduce", t)?;
        let root = self.check_root("reduce", root)?;
        let tp = t.as_mut_ptr() as *mut c_void;
        check(|err| {
            // SAFETY: as in all_reduce.
            unsafe { ffi::trm_dist_reduce(self.pg.as_ptr(), tp, root, op.code(), err) }
        })
    }

    /// Gathers every rank's `t` (same shape and dtype everywhere): element `i` of the result is
    /// rank `i`'s tensor.
    pub fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>, DistError> {
        self.check_tensor("all_gather", t)?;
        let mut outs: Vec<Tensor> = (0..self.world_size).map(|_| t.empty_like()).collect();
        let out_ptrs: Vec<*mut c_void> = outs
            .iter_mut()
            .map(|o| o.as_mut_ptr() as *mut c_void)
            .collect();
        let input = t.as_ptr() as *mut c_void;
        check(|err| {
            // SAFETY: `out_ptrs` holds world_size pointers to the at::Tensors owned by `outs`,
            // alive and not otherwise used during the blocking call; `input` points at `t`'s
            // at::Tensor, which the backend only reads (the *mut is what the C signature
            // takes; the at::Tensor handle itself is copied, never modified).
            unsafe {
                ffi::trm_dist_all_gather(
                    self.pg.as_ptr(),
                    out_ptrs.as_ptr(),
                    out_ptrs.len(),
                    input,
                    err,
                )
            }
        })?;
        Ok(outs)
    }

    /// Waits until every rank has reached this barrier.
    pub fn barrier(&self) -> Result<(), DistError> {
        check(|err| {
            // SAFETY: `self.pg` is live for `&self`; `err` is a valid out-pointer.
            unsafe { ffi::trm_dist_barrier(self.pg.as_ptr(), err) }
        })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: both handles came from the bridge, are owned by `self` alone and are destroyed
        // exactly once, the backend (which references the store) first.
        unsafe {
            ffi::trm_dist_pg_destroy(self.pg.as_ptr());
            ffi::trm_dist_store_destroy(self.store.as_ptr());
        }
    }
}

/// Destroys a store handle on the error paths of [`ProcessGroup::new`].
struct StoreGuard(NonNull<ffi::TrmDistStore>);

impl Drop for StoreGuard {
    fn drop(&mut self) {
        // SAFETY: the handle came from trm_dist_store_create and is owned by this guard only
        // (forgotten, not dropped, once a ProcessGroup takes it over).
        unsafe { ffi::trm_dist_store_destroy(self.0.as_ptr()) }
    }
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
