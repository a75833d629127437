//! `dask_future`: a handle to one key's result on the cluster, and
//! `dask_as_completed`, which yields futures in the order they complete.

use std::ffi::{c_char, CString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dask_client::{AsCompleted, Future, Status};

use crate::error::{c_string, dask_error, dask_result, Failure};
use crate::ffi::{self, borrow, boxed, call, guard};
use crate::value::{dask_bytes, dask_value};

/// A handle to the result of one key on the cluster. Each handle holds one
/// reference to the key: when the last handle (and every value referring to
/// it) is freed, the cluster may forget the result. Futures stay valid after
/// their client is freed (they then fail with DASK_CONNECTION).
/// Every function on a future is thread-safe except dask_future_free.
pub struct dask_future {
    pub(crate) inner: Future,
    key: CString,
}

impl dask_future {
    pub(crate) fn new(inner: Future) -> dask_future {
        let key = c_string(inner.key().as_str());
        dask_future { inner, key }
    }
}

/// Where a future's key is, as the client last heard (dask_future_status).
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dask_status {
    /// Not finished yet.
    DASK_STATUS_PENDING = 0,
    /// The result is in memory on a worker.
    DASK_STATUS_FINISHED = 1,
    /// The task (or a dependency) raised an error.
    DASK_STATUS_ERRED = 2,
    /// The key was cancelled.
    DASK_STATUS_CANCELLED = 3,
    /// The key's data is gone.
    DASK_STATUS_LOST = 4,
    /// The request failed, or the connection closed.
    DASK_STATUS_FAILED = 5,
    /// Not a future: the pointer was NULL.
    DASK_STATUS_INVALID = 6,
}

/// The future's key, e.g. "add-3f2a...-0". Borrowed from `future`, valid
/// until it is freed; "" for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_key(future: *const dask_future) -> *const c_char {
    guard(c"".as_ptr(), || match unsafe { future.as_ref() } {
        Some(f) => f.key.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// The key's status now (does not wait); DASK_STATUS_INVALID for NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_status(future: *const dask_future) -> dask_status {
    use dask_status::*;
    guard(DASK_STATUS_INVALID, || match unsafe { future.as_ref() } {
        None => DASK_STATUS_INVALID,
        Some(f) => match f.inner.status() {
            Status::Pending => DASK_STATUS_PENDING,
            Status::Finished => DASK_STATUS_FINISHED,
            Status::Erred => DASK_STATUS_ERRED,
            Status::Cancelled => DASK_STATUS_CANCELLED,
            Status::Lost => DASK_STATUS_LOST,
            Status::Failed => DASK_STATUS_FAILED,
        },
    })
}

/// Why the key cannot progress now, when the scheduler said (a task it
/// needs cannot run on any connected worker; dask/1.1 `key-waiting`), as
/// "REASON: EXPLANATION" (REASON: no-workers, no-function,
/// no-allowed-worker, no-resources). It still runs when a suitable worker
/// joins. Like snprintf: writes at most `size - 1` bytes and a NUL into
/// `buf` (nothing when `buf` is NULL or `size` is 0) and returns the
/// length of the whole text; 0 when the key is not waiting (or `future` is
/// NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_waiting(
    future: *const dask_future,
    buf: *mut c_char,
    size: usize,
) -> usize {
    guard(0, || {
        let Some(f) = (unsafe { future.as_ref() }) else {
            return 0;
        };
        let Some(w) = f.inner.waiting() else {
            return 0;
        };
        let text = format!("{}: {w}", w.reason);
        if !buf.is_null() && size > 0 {
            let n = text.len().min(size - 1);
            // SAFETY: the caller gives `size` writable bytes at `buf`.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        text.len()
    })
}

/// Waits until the key is finished, at most `timeout_ms` (negative: no
/// limit). DASK_OK when finished; DASK_TIMEOUT; or why it ended otherwise
/// (DASK_REMOTE_ERROR, DASK_CANCELLED, DASK_LOST, DASK_CONNECTION).
/// Thread-safe (several threads may wait on one future).
#[no_mangle]
pub extern "C" fn dask_future_wait(
    future: *const dask_future,
    timeout_ms: i64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_future_wait", err, || {
        let future = borrow(future, "future")?;
        match ffi::timeout(timeout_ms) {
            Some(t) => future.inner.wait_timeout(t)?,
            None => future.inner.wait()?,
        }
        Ok(())
    })
}

/// Waits (at most `timeout_ms`; negative: no limit) and fetches the result.
/// `*out` is a new value owned by the caller. Fails like dask_future_wait.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_result(
    future: *const dask_future,
    timeout_ms: i64,
    out: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_future_result", err, || {
        let out = ffi::out(out, "out")?;
        let future = borrow(future, "future")?;
        let value = match ffi::timeout(timeout_ms) {
            Some(t) => future.inner.result_timeout(t)?,
            None => future.inner.result()?,
        };
        *out = boxed(dask_value::from_rmpv(value));
        Ok(())
    })
}

/// Like dask_future_result, the result as its msgpack bytes (`*out` owned
/// by the caller, dask_bytes_free). The wait is bounded by `timeout_ms`, the
/// fetch that follows by the connection. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_result_msgpack(
    future: *const dask_future,
    timeout_ms: i64,
    out: *mut *mut dask_bytes,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_future_result_msgpack", err, || {
        let out = ffi::out(out, "out")?;
        let future = borrow(future, "future")?;
        if let Some(t) = ffi::timeout(timeout_ms) {
            future.inner.wait_timeout(t)?;
        }
        let raw = future.inner.result_raw()?;
        *out = boxed(dask_bytes::new(raw.into_bytes()));
        Ok(())
    })
}

/// Cancels the key for this client: the future then ends DASK_CANCELLED
/// (unless it finished first). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_cancel(
    future: *const dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_future_cancel", err, || {
        borrow(future, "future")?.inner.cancel();
        Ok(())
    })
}

/// A new handle to the same key (one more reference), owned by the caller;
/// NULL for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_future_clone(future: *const dask_future) -> *mut dask_future {
    guard(std::ptr::null_mut(), || match unsafe { future.as_ref() } {
        Some(f) => boxed(dask_future::new(f.inner.clone())),
        None => std::ptr::null_mut(),
    })
}

/// Releases the handle: when no handle or value refers to the key any
/// more, the cluster may forget its result. NULL is a no-op. No other call
/// on `future` may be in progress.
#[no_mangle]
pub extern "C" fn dask_future_free(future: *mut dask_future) {
    ffi::free_box(future);
}

// ---- as completed -------------------------------------------------------------

/// Yields futures as they complete (finished or not), in completion order;
/// more can be added while iterating. Made by dask_client_as_completed,
/// freed with dask_as_completed_free. Its functions are thread-safe: calls
/// on one iterator run one at a time (a dask_as_completed_add from another
/// thread waits while dask_as_completed_next waits).
pub struct dask_as_completed {
    /// `None` only while a call holds it, or after a panic inside one.
    inner: Mutex<Option<AsCompleted>>,
}

impl dask_as_completed {
    pub(crate) fn new(inner: AsCompleted) -> dask_as_completed {
        dask_as_completed {
            inner: Mutex::new(Some(inner)),
        }
    }
}

/// Longest single wait of an unlimited dask_as_completed_next.
const WAIT_SLICE: Duration = Duration::from_secs(3600);

fn broken() -> Failure {
    Failure::new(
        dask_result::DASK_PANIC,
        "the iterator was left broken by an earlier internal error",
    )
}

/// Adds a future to wait for (the iterator takes its own reference: the
/// caller still owns `future`). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_as_completed_add(
    iterator: *const dask_as_completed,
    future: *const dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_as_completed_add", err, || {
        let iterator = borrow(iterator, "iterator")?;
        let future = borrow(future, "future")?;
        let mut guard = iterator.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().ok_or_else(broken)?.add(future.inner.clone());
        Ok(())
    })
}

/// Waits (at most `timeout_ms`; negative: no limit) for the next future to
/// complete and gives it in `*out` (a new handle owned by the caller; read
/// its result or error with dask_future_result). DASK_DONE with `*out` NULL
/// when every future was given; DASK_TIMEOUT when none completed in time.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_as_completed_next(
    iterator: *const dask_as_completed,
    timeout_ms: i64,
    out: *mut *mut dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_as_completed_next", err, || {
        let out = ffi::out(out, "out")?;
        let iterator = borrow(iterator, "iterator")?;
        let limit = ffi::timeout(timeout_ms);
        let mut guard = iterator.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut ac = guard.take().ok_or_else(broken)?;
        let started = Instant::now();
        let outcome = loop {
            if ac.is_empty() {
                break Err(Failure::done());
            }
            let slice = match limit {
                Some(t) => t.saturating_sub(started.elapsed()),
                None => WAIT_SLICE,
            };
            let slice_start = Instant::now();
            ac = ac.with_timeout(slice);
            if let Some(f) = ac.next() {
                break Ok(f);
            }
            if ac.is_empty() {
                break Err(Failure::done());
            }
            // The iterator gives up early only when the connection is gone.
            if slice_start.elapsed() < slice {
                break Err(Failure::new(
                    dask_result::DASK_CONNECTION,
                    "the client's connection is closed",
                ));
            }
            if limit.is_some() {
                break Err(Failure::new(
                    dask_result::DASK_TIMEOUT,
                    format!("no future completed within {timeout_ms} ms"),
                ));
            }
        };
        *guard = Some(ac);
        *out = boxed(dask_future::new(outcome?));
        Ok(())
    })
}

/// Number of futures not yet given by dask_as_completed_next; 0 for NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_as_completed_count(iterator: *const dask_as_completed) -> usize {
    guard(0, || match unsafe { iterator.as_ref() } {
        Some(it) => it
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, AsCompleted::count),
        None => 0,
    })
}

/// Frees the iterator and the references it holds. NULL is a no-op. No
/// other call on `iterator` may be in progress.
#[no_mangle]
pub extern "C" fn dask_as_completed_free(iterator: *mut dask_as_completed) {
    ffi::free_box(iterator);
}
