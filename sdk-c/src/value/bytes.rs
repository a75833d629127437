//! Buffers of bytes handed to C (a value's msgpack): their data, length,
//! and freeing.

use crate::ffi::{self, guard};

use super::*;

/// The bytes of `bytes` (borrowed, valid until dask_bytes_free); NULL for
/// NULL or an empty buffer. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_bytes_data(bytes: *const dask_bytes) -> *const u8 {
    guard(std::ptr::null(), || match unsafe { bytes.as_ref() } {
        Some(b) if !b.data.is_empty() => b.data.as_ptr(),
        _ => std::ptr::null(),
    })
}

/// The number of bytes in `bytes`; 0 for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_bytes_len(bytes: *const dask_bytes) -> usize {
    guard(0, || unsafe { bytes.as_ref() }.map_or(0, |b| b.data.len()))
}

/// Frees a buffer. NULL is a no-op. No other call on `bytes` may be in
/// progress.
#[no_mangle]
pub extern "C" fn dask_bytes_free(bytes: *mut dask_bytes) {
    ffi::free_box(bytes);
}
