//! Declarations of the C interface in `trm-train/csrc/trm_dist.h` (kept in step by hand), or,
//! when the build script could not compile the bridge, stand-ins that report it unavailable.

use std::os::raw::{c_char, c_int, c_void};

/// Opaque store handle (`TrmDistStore`).
#[repr(C)]
pub struct TrmDistStore {
    _private: [u8; 0],
}

/// Opaque process-group handle (`TrmDistPg`).
#[repr(C)]
pub struct TrmDistPg {
    _private: [u8; 0],
}

pub const TRM_DIST_OK: c_int = 0;
pub const TRM_DIST_TIMEOUT: c_int = 2;
pub const TRM_DIST_NETWORK: c_int = 3;
pub const TRM_DIST_MISMATCH: c_int = 4;
pub const TRM_DIST_INVALID: c_int = 5;
pub const TRM_DIST_UNAVAILABLE: c_int = 6;
pub const TRM_DIST_BACKEND: c_int = 7;

#[cfg(trm_dist_bridge)]
unsafe extern "C" {
    pub fn trm_dist_free_string(s: *mut c_char);
    pub fn trm_dist_has_nccl() -> c_int;
    pub fn trm_dist_store_create(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world_size: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut TrmDistStore,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_store_check_world(
        store: *mut TrmDistStore,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_store_destroy(store: *mut TrmDistStore);
    pub fn trm_dist_pg_gloo(
        store: *mut TrmDistStore,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        hostname: *const c_char,
        iface: *const c_char,
        out: *mut *mut TrmDistPg,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_pg_nccl(
        store: *mut TrmDistStore,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        out: *mut *mut TrmDistPg,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_pg_destroy(pg: *mut TrmDistPg);
    pub fn trm_dist_all_reduce(
        pg: *mut TrmDistPg,
        tensor: *mut c_void,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_broadcast(
        pg: *mut TrmDistPg,
        tensor: *mut c_void,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_reduce(
        pg: *mut TrmDistPg,
        tensor: *mut c_void,
        root: c_int,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_all_gather(
        pg: *mut TrmDistPg,
        outputs: *const *mut c_void,
        n_outputs: usize,
        input: *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn trm_dist_barrier(pg: *mut TrmDistPg, err: *mut *mut c_char) -> c_int;
}

/// Stand-ins with the bridge's signatures: only store creation is ever reached (it fails), so
/// no handle exists for the others to see.
#[cfg(not(trm_dist_bridge))]
mod stub {
    #![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
    use super::*;

    pub unsafe fn trm_dist_free_string(_s: *mut c_char) {}
    pub unsafe fn trm_dist_has_nccl() -> c_int {
        0
    }
    pub unsafe fn trm_dist_store_create(
        _host: *const c_char,
        _port: u16,
        _is_server: c_int,
        _world_size: c_int,
        _timeout_ms: i64,
        _prefix: *const c_char,
        _out: *mut *mut TrmDistStore,
        _err: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_store_check_world(
        _: *mut TrmDistStore,
        _: c_int,
        _: c_int,
        _: i64,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_store_destroy(_: *mut TrmDistStore) {}
    pub unsafe fn trm_dist_pg_gloo(
        _: *mut TrmDistStore,
        _: c_int,
        _: c_int,
        _: i64,
        _: *const c_char,
        _: *const c_char,
        _: *mut *mut TrmDistPg,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_pg_nccl(
        _: *mut TrmDistStore,
        _: c_int,
        _: c_int,
        _: i64,
        _: *mut *mut TrmDistPg,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_pg_destroy(_: *mut TrmDistPg) {}
    pub unsafe fn trm_dist_all_reduce(
        _: *mut TrmDistPg,
        _: *mut c_void,
        _: c_int,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_broadcast(
        _: *mut TrmDistPg,
        _: *mut c_void,
        _: c_int,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_reduce(
        _: *mut TrmDistPg,
        _: *mut c_void,
        _: c_int,
        _: c_int,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_all_gather(
        _: *mut TrmDistPg,
        _: *const *mut c_void,
        _: usize,
        _: *mut c_void,
        _: *mut *mut c_char,
    ) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
    pub unsafe fn trm_dist_barrier(_: *mut TrmDistPg, _: *mut *mut c_char) -> c_int {
        TRM_DIST_UNAVAILABLE
    }
}
#[cfg(not(trm_dist_bridge))]
pub use stub::*;
