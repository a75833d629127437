//! Making values: scalars, containers, strings and bytes, references to
//! futures and delayed calls, msgpack in and out, copies, freeing.

use std::ffi::c_char;

use dask_core::RawValue;

use crate::error::{dask_error, dask_result};
use crate::ffi::{self, borrow, boxed, c_str, call, guard};

use super::*;

/// A new null value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_null() -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Null))
    })
}

/// A new bool value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_bool(value: bool) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Bool(value)))
    })
}

/// A new integer value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_int(value: i64) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Int(value)))
    })
}

/// A new unsigned integer value (for values above INT64_MAX). Never NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_uint(value: u64) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(match i64::try_from(value) {
            Ok(i) => Kind::Int(i),
            Err(_) => Kind::UInt(value),
        }))
    })
}

/// A new float value. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_double(value: f64) -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value::scalar(Kind::Float(value)))
    })
}

/// A new empty array; fill it with dask_value_array_push*. Never NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_array() -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value {
            kind: Kind::Array(Vec::new()),
            depth: 1,
        })
    })
}

/// A new empty map; fill it with dask_value_map_set. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_map() -> *mut dask_value {
    guard(std::ptr::null_mut(), || {
        boxed(dask_value {
            kind: Kind::Map(Vec::new()),
            depth: 1,
        })
    })
}

/// A new string value from a NUL-terminated UTF-8 string (copied).
/// `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_string(
    text: *const c_char,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_string", err, || {
        let out = ffi::out(out, "out")?;
        let text = c_str(text, "text")?;
        *out = boxed(dask_value::string(text));
        Ok(())
    })
}

/// A new binary value from `len` bytes at `data` (copied; (NULL, 0) is the
/// empty binary). `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_bytes(
    data: *const u8,
    len: usize,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_bytes", err, || {
        let out = ffi::out(out, "out")?;
        let data = ffi::bytes(data, len, "data")?;
        *out = boxed(dask_value::scalar(Kind::Bytes(data.to_vec())));
        Ok(())
    })
}

/// A new reference to the result of `future`, for the arguments of
/// dask_client_submit or dask_delayed_new: the task then runs on that
/// result. The value holds its own reference to the key (the future may be
/// freed). `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_future(
    future: *const crate::future::dask_future,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_future", err, || {
        let out = ffi::out(out, "out")?;
        let future = borrow(future, "future")?;
        *out = boxed(dask_value::scalar(Kind::Future(future.inner.clone())));
        Ok(())
    })
}

/// A new reference to the result of the delayed call `delayed`, for the
/// arguments of another call: computing that call computes this one first.
/// `*out` is owned by the caller (the delayed call may be freed). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_new_delayed(
    delayed: *const crate::delayed::dask_delayed,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_new_delayed", err, || {
        let out = ffi::out(out, "out")?;
        let delayed = borrow(delayed, "delayed")?;
        *out = boxed(dask_value::scalar(Kind::Delayed(delayed.inner.clone())));
        Ok(())
    })
}

/// Decodes `len` bytes of msgpack holding exactly one value (checked like
/// the protocol checks values: well formed, UTF-8 strings, at most 100
/// levels deep, nothing after it). `*out` is owned by the caller.
/// Bad bytes give DASK_INVALID_MSGPACK. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_from_msgpack(
    data: *const u8,
    len: usize,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_from_msgpack", err, || {
        let out = ffi::out(out, "out")?;
        let data = ffi::bytes(data, len, "data")?;
        *out = boxed(dask_value::from_msgpack(data)?);
        Ok(())
    })
}

/// Encodes `value` as msgpack (canonical: smallest forms, floats as 64-bit;
/// a task reference becomes ext type 1 holding its key). `*out` is owned by
/// the caller (dask_bytes_free). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_to_msgpack(
    value: *const dask_value,
    out: *mut *mut dask_bytes,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_value_to_msgpack", err, || {
        let out = ffi::out(out, "out")?;
        let value = borrow(value, "value")?;
        let raw = RawValue::from_value(&value.to_rmpv(true)?);
        *out = boxed(dask_bytes {
            data: raw.into_bytes(),
        });
        Ok(())
    })
}

/// A deep copy of `value`, owned by the caller; NULL for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_value_clone(value: *const dask_value) -> *mut dask_value {
    guard(std::ptr::null_mut(), || match unsafe { value.as_ref() } {
        Some(v) => boxed(v.deep_clone()),
        None => std::ptr::null_mut(),
    })
}

/// Frees a value made by the library (not one borrowed from another value).
/// NULL is a no-op. No other call on `value` may be in progress.
#[no_mangle]
pub extern "C" fn dask_value_free(value: *mut dask_value) {
    ffi::free_box(value);
}
