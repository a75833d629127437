//! Graphs computed in this process: `dask_delayed_compute_in_process`, with no
//! scheduler and no sockets (the in-process scheduler, `dask-inprocess`).

use dask_inprocess::{compute_delayed, Error, Scheduler};

use crate::delayed::dask_delayed;
use crate::error::{dask_error, dask_result, Failure};
use crate::ffi::{self, borrow, boxed, call, handles, out_array};
use crate::value::dask_value;
use crate::worker::dask_functions;

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        use dask_result::*;
        match e {
            Error::Task { ref error, .. } => Failure {
                code: DASK_REMOTE_ERROR,
                message: e.to_string(),
                remote: Some((error.error_type.clone(), error.message.clone())),
            },
            Error::Cancelled { .. } => Failure::new(DASK_CANCELLED, e.to_string()),
            Error::Graph(_) => Failure::new(DASK_REFUSED, e.to_string()),
        }
    }
}

/// `threads` as the C functions take it: 0 is the calling thread alone.
fn scheduler(threads: usize) -> Scheduler {
    match threads {
        0 => Scheduler::Sync,
        n => Scheduler::Threads(n),
    }
}

/// Computes `delayed` and every call it refers to in this process, with no
/// scheduler and no sockets, calling functions from `functions` (C
/// functions registered as for a worker, and the built-ins of
/// dask_functions_new_builtins). `threads` threads run the tasks (the
/// calling thread is one of them; C functions must then be thread-safe);
/// 0 runs every task on the calling thread, one at a time, for a debugger.
/// Each intermediate result is freed once the last task needing it has
/// started. `*result` is the result, owned by the caller.
///
/// The first failure stops the run: DASK_REMOTE_ERROR when a task failed
/// (dask_error_remote_type() and dask_error_remote_message() give its
/// error; the message names the task that raised it), DASK_REFUSED when
/// the graph cannot run (a call refers to a dask_future, whose result is on
/// a cluster; a key defined twice). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_compute_in_process(
    delayed: *const dask_delayed,
    functions: *const dask_functions,
    threads: usize,
    result: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_delayed_compute_in_process", err, || {
        let result = ffi::out(result, "result")?;
        let delayed = borrow(delayed, "delayed")?;
        let functions = borrow(functions, "functions")?;
        let calls = [delayed.inner.clone()];
        let mut values = compute_delayed(&calls, &functions.registry, scheduler(threads))?;
        *result = boxed(dask_value::from_rmpv(
            values.pop().unwrap_or(rmpv::Value::Nil),
        ));
        Ok(())
    })
}

/// Like dask_delayed_compute_in_process for `n` delayed calls computed together
/// (a call several of them need runs once): `results` (an array of `n`
/// slots) receives their results, each owned by the caller. On failure no
/// slot is set. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_delayed_compute_in_process_many(
    delayed: *const *const dask_delayed,
    n: usize,
    functions: *const dask_functions,
    threads: usize,
    results: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_delayed_compute_in_process_many", err, || {
        let slots = out_array(results, n, "results")?;
        let calls: Vec<_> = handles(delayed, n, "delayed")?
            .into_iter()
            .map(|d| d.inner.clone())
            .collect();
        let functions = borrow(functions, "functions")?;
        let values = compute_delayed(&calls, &functions.registry, scheduler(threads))?;
        for (slot, value) in slots.iter_mut().zip(values) {
            *slot = boxed(dask_value::from_rmpv(value));
        }
        Ok(())
    })
}
