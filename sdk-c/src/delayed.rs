//! `dask_delayed`: a lazy call whose arguments may refer to other delayed
//! calls and futures; computing one submits every call it reaches as one
//! graph (dask_client_compute).

use std::ffi::{c_char, CString};

use dask_client::{delayed, Delayed};
use dask_core::msgpack::check_key;

use crate::error::{c_string, dask_error, dask_result, Failure};
use crate::ffi::{self, borrow_mut, boxed, c_str, call, guard};
use crate::value::dask_value;

/// A lazy function call, not yet submitted. Build graphs by passing
/// dask_value_new_delayed(d) in the arguments of other calls. Reading
/// (key, compute, new_delayed) is thread-safe; the dask_delayed_set_*
/// functions are not.
pub struct dask_delayed {
    pub(crate) inner: Delayed,
    key: CString,
}

impl dask_delayed {
    fn new(inner: Delayed) -> dask_delayed {
        let key = c_string(inner.key().as_str());
        dask_delayed { inner, key }
    }

    /// Applies a change to the call (its Arc is shared with values that
    /// refer to it: they keep the call as it was).
    fn change(&mut self, f: impl FnOnce(Delayed) -> Delayed) {
        let old = self.inner.clone();
        *self = dask_delayed::new(f(old));
    }
}

/// A lazy call of `function` with `args` (an array value, one argument per
/// item; NULL for none). Items may be plain values or references made by
/// dask_value_new_delayed / dask_value_new_future, also inside nested
/// arrays (not inside maps). `args` is copied, not consumed. Its key is
/// generated (`{function}-{random}-{n}`) unless set with
/// dask_delayed_set_key. `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_new(
    function: *const c_char,
    args: *const dask_value,
    out: *mut *mut dask_delayed,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_delayed_new", err, || {
        let out = ffi::out(out, "out")?;
        let function = c_str(function, "function")?;
        if function.is_empty() {
            return Err(Failure::invalid("`function` is empty"));
        }
        let args = dask_value::to_args(unsafe { args.as_ref() })?;
        *out = boxed(dask_delayed::new(delayed(function, args)));
        Ok(())
    })
}

/// The key the call's result will have. Borrowed from `delayed`, valid
/// until it is freed or its key is set; "" for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_key(delayed: *const dask_delayed) -> *const c_char {
    guard(c"".as_ptr(), || match unsafe { delayed.as_ref() } {
        Some(d) => d.key.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// Sets the call's key (1 to 4096 bytes of UTF-8). Set it before the call is
/// referred to: references made earlier keep the old key. Not thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_set_key(
    delayed: *mut dask_delayed,
    key: *const c_char,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_delayed_set_key", err, || {
        let delayed = borrow_mut(delayed, "delayed")?;
        let key = c_str(key, "key")?;
        check_key(key).map_err(|_| {
            Failure::invalid(format!("a key has 1 to 4096 bytes, got {}", key.len()))
        })?;
        delayed.change(|d| d.with_key(key));
        Ok(())
    })
}

/// Sets the call's priority (higher runs first; default 0). Not thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_set_priority(
    delayed: *mut dask_delayed,
    priority: i64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_delayed_set_priority", err, || {
        borrow_mut(delayed, "delayed")?.change(|d| d.priority(priority));
        Ok(())
    })
}

/// Sets how often the call is rerun after an error before the error is
/// reported (default 0). Not thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_set_retries(
    delayed: *mut dask_delayed,
    retries: u32,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_delayed_set_retries", err, || {
        borrow_mut(delayed, "delayed")?.change(|d| d.retries(retries));
        Ok(())
    })
}

/// A new handle to the same call (same key), owned by the caller; NULL for
/// NULL. Setting the key or options of one leaves the other as it was.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_clone(delayed: *const dask_delayed) -> *mut dask_delayed {
    guard(std::ptr::null_mut(), || match unsafe { delayed.as_ref() } {
        Some(d) => boxed(dask_delayed::new(d.inner.clone())),
        None => std::ptr::null_mut(),
    })
}

/// Frees the call (graphs already built from it keep their own copy).
/// NULL is a no-op. No other call on `delayed` may be in progress.
#[no_mangle]
pub extern "C" fn dask_delayed_free(delayed: *mut dask_delayed) {
    ffi::free_box(delayed);
}
