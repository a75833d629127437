//! # dask-sdk-c: libdask
//!
//! The C ABI of dask-rs: `libdask.so` / `libdask.a` and the header
//! `include/libdask.h`, generated from this crate by cbindgen (see
//! `build.rs`; a test fails when the committed header differs). The rules
//! every function follows are at the top of the header (`cbindgen.toml`).
//!
//! This crate holds no protocol logic: it wraps the Rust client
//! ([`dask_client`]: `Client`, `Future`, `Delayed`), the embedded cluster
//! ([`dask_cluster`]: `LocalCluster`) and the worker library
//! ([`dask_worker`]: `WorkerHandle`, `FunctionRegistry`) and the in-process
//! scheduler ([`dask_inprocess`]) in opaque handles, with a panic boundary
//! around every body.
#![deny(missing_docs)]
// The C ABI cannot mark functions unsafe to call; every pointer argument's
// contract is stated in the header's rules and on each function.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
// C names: dask_client, dask_result, DASK_OK.
#![allow(non_camel_case_types)]

// In this order in the header: errors, values, futures, graphs, clients, workers.
pub mod client;
pub mod delayed;
pub mod error;
pub(crate) mod ffi;
pub mod future;
pub mod inprocess;
pub mod security;
pub mod value;
pub mod worker;

use std::ffi::c_char;

/// Major version of the library (checked against Cargo.toml by a test).
pub const DASK_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const DASK_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const DASK_VERSION_PATCH: u32 = 0;
/// A timeout that waits without limit.
pub const DASK_NO_TIMEOUT: i64 = -1;

/// The library's version, "MAJOR.MINOR.PATCH" (static, never freed): compare
/// with the DASK_VERSION_* macros the program was compiled with.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_version() -> *const c_char {
    static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}
