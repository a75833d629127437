//! The ABI boundary: panic catching, NULL checks, and reading C strings,
//! buffers and timeouts. Every exported function goes through [`call`] or
//! [`guard`], so no panic unwinds into C.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::Duration;

use crate::error::{dask_error, dask_result, Failure, Fallible};

/// Longest timeout honoured; longer ones are cut to it so that adding it to
/// `Instant::now()` cannot overflow (about 31 years).
const TIMEOUT_MS_MAX: u64 = 1_000_000_000_000;

/// [`TIMEOUT_MS_MAX`] as a duration, for waits that need one to mean "no limit".
pub(crate) const TIMEOUT_MAX: Duration = Duration::from_millis(TIMEOUT_MS_MAX);

/// Runs a fallible body inside the panic boundary and reports through
/// `err`: NULL on success, a new [`dask_error`] (message prefixed with
/// `function`) on failure. `DASK_DONE` is reported without an error object.
pub(crate) fn call(
    function: &'static str,
    err: *mut *mut dask_error,
    body: impl FnOnce() -> Fallible,
) -> dask_result {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(panic) => Some(Failure::new(
            dask_result::DASK_PANIC,
            format!("internal error (please report): {}", panic_message(&*panic)),
        )),
    };
    let code = failure.as_ref().map_or(dask_result::DASK_OK, |f| f.code);
    if !err.is_null() {
        let object = match failure {
            Some(f) if f.code != dask_result::DASK_DONE => {
                // Building the message allocates only: it cannot panic short
                // of running out of memory, which aborts anyway.
                Box::into_raw(Box::new(dask_error::from_failure(function, f)))
            }
            _ => ptr::null_mut(),
        };
        // SAFETY: the caller passed a writable `dask_error **` (rule 4).
        unsafe { *err = object };
    }
    code
}

/// Runs an infallible body inside the panic boundary; `fallback` when it
/// panics.
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Frees a `Box` handed out with `Box::into_raw`; NULL is a no-op.
pub(crate) fn free_box<T>(p: *mut T) {
    guard((), || {
        if !p.is_null() {
            // SAFETY: `p` came from Box::into_raw and is freed once (rule 1).
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

/// Hands a new object to C.
pub(crate) fn boxed<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// A shared reference to a handle, or a null-parameter failure.
pub(crate) fn borrow<'a, T>(p: *const T, what: &str) -> Fallible<&'a T> {
    // SAFETY: a non-NULL handle pointer is one the library handed out and
    // the caller has not freed (rules 1 and 8).
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// An exclusive reference to a handle, or a null-parameter failure.
pub(crate) fn borrow_mut<'a, T>(p: *mut T, what: &str) -> Fallible<&'a mut T> {
    // SAFETY: as for `borrow`; the function documents it is not thread-safe.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// An output slot, cleared to NULL at once so that a failure leaves NULL.
pub(crate) fn out<'a, T>(p: *mut *mut T, what: &str) -> Fallible<&'a mut *mut T> {
    // SAFETY: a non-NULL output pointer points to a writable slot (rule 6).
    let slot = unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))?;
    *slot = ptr::null_mut();
    Ok(slot)
}

/// A plain output (number, borrowed pointer) slot.
pub(crate) fn out_value<'a, T>(p: *mut T, what: &str) -> Fallible<&'a mut T> {
    // SAFETY: as for `out`.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// A NUL-terminated UTF-8 string argument.
pub(crate) fn c_str<'a>(p: *const c_char, what: &str) -> Fallible<&'a str> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: a non-NULL string argument is NUL-terminated (rule 5).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes)
        .map_err(|e| Failure::invalid(format!("`{what}` is not valid UTF-8: {e}")))
}

/// An optional string argument: NULL gives `None`.
pub(crate) fn opt_c_str<'a>(p: *const c_char, what: &str) -> Fallible<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        c_str(p, what).map(Some)
    }
}

/// A (pointer, length) buffer argument; (NULL, 0) is the empty buffer.
pub(crate) fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Fallible<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("`{what}` is longer than memory")));
    }
    // SAFETY: the caller passed `len` readable bytes at `p` (rule 5).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A (pointer, count) array of handle pointers, each non-NULL.
pub(crate) fn handles<'a, T>(p: *const *const T, n: usize, what: &str) -> Fallible<Vec<&'a T>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if n > isize::MAX as usize / std::mem::size_of::<*const T>() {
        return Err(Failure::invalid(format!("`{what}` is longer than memory")));
    }
    // SAFETY: the caller passed `n` readable pointers at `p`.
    let items = unsafe { std::slice::from_raw_parts(p, n) };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| borrow(*item, &format!("{what}[{i}]")))
        .collect()
}

/// A (pointer, count) array of output slots, all cleared to NULL at once.
pub(crate) fn out_array<'a, T>(p: *mut *mut T, n: usize, what: &str) -> Fallible<&'a mut [*mut T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if n > isize::MAX as usize / std::mem::size_of::<*mut T>() {
        return Err(Failure::invalid(format!("`{what}` is longer than memory")));
    }
    // SAFETY: the caller passed `n` writable slots at `p`.
    let slots = unsafe { std::slice::from_raw_parts_mut(p, n) };
    slots.iter_mut().for_each(|s| *s = ptr::null_mut());
    Ok(slots)
}

/// A timeout in milliseconds; negative waits without limit.
pub(crate) fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms)
        .ok()
        .map(|ms| Duration::from_millis(ms.min(TIMEOUT_MS_MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{dask_error_code, dask_error_free, dask_error_message};

    fn message(err: *const dask_error) -> String {
        // SAFETY: dask_error_message returns a NUL-terminated string.
        unsafe { CStr::from_ptr(dask_error_message(err)) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_dask_panic_with_its_message() {
        let mut err: *mut dask_error = ptr::null_mut();
        let code = call("dask_test", &mut err, || panic!("boom"));
        assert_eq!(code, dask_result::DASK_PANIC);
        assert_eq!(dask_error_code(err), dask_result::DASK_PANIC);
        assert_eq!(
            message(err),
            "dask_test: internal error (please report): boom"
        );
        dask_error_free(err);
        assert_eq!(guard(7, || -> i32 { panic!("boom") }), 7);
    }

    #[test]
    fn err_is_cleared_on_success_and_left_out_for_done() {
        let mut err: *mut dask_error = ptr::dangling_mut::<dask_error>(); // garbage to overwrite
        assert_eq!(call("dask_test", &mut err, || Ok(())), dask_result::DASK_OK);
        assert!(err.is_null());
        err = ptr::dangling_mut::<dask_error>();
        let code = call("dask_test", &mut err, || Err(Failure::done()));
        assert_eq!(code, dask_result::DASK_DONE);
        assert!(err.is_null());
        let code = call("dask_test", ptr::null_mut(), || Err(Failure::null("x")));
        assert_eq!(code, dask_result::DASK_NULL_PARAMETER);
    }

    #[test]
    fn arguments_are_checked() {
        assert!(c_str(ptr::null(), "s").is_err());
        assert_eq!(c_str(c"ok".as_ptr(), "s").unwrap(), "ok");
        let bad = [0xffu8, 0];
        let e = c_str(bad.as_ptr().cast(), "s").unwrap_err();
        assert_eq!(e.code, dask_result::DASK_INVALID_ARGUMENT);
        assert_eq!(bytes(ptr::null(), 0, "b").unwrap(), &[] as &[u8]);
        assert!(bytes(ptr::null(), 1, "b").is_err());
        assert_eq!(timeout(-1), None);
        assert_eq!(timeout(5), Some(Duration::from_millis(5)));
        assert_eq!(
            timeout(i64::MAX),
            Some(Duration::from_millis(TIMEOUT_MS_MAX))
        );
    }
}
