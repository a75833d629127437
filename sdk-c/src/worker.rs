//! Workers from C: `dask_functions` (C callbacks by name), the
//! `dask_task_output` a callback fills, and `dask_worker`, a worker
//! connected to a scheduler.

use std::ffi::{c_char, c_void, CString};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ::dask_worker::{FunctionRegistry, TaskError, TaskResult, WorkerConfig, WorkerHandle};
use dask_core::client::{encode_args, encode_kwargs};
use dask_core::RawValue;
use rmpv::Value;

use crate::error::{c_string, dask_error, dask_result, Failure, Fallible};
use crate::ffi::{self, borrow, borrow_mut, boxed, c_str, call, guard, opt_c_str};
use crate::security::dask_security;
use crate::value::dask_value;

/// A C function a worker runs for tasks naming it.
///
/// `args` holds the msgpack encoding (`args_len` bytes) of an array: the
/// task's positional arguments, with every task reference already replaced
/// by the referenced result; `kwargs` (`kwargs_len` bytes) the msgpack map
/// of its keyword arguments (an empty map when there are none). Both are
/// borrowed for the call only; decode them with dask_value_from_msgpack.
/// The function reports through `output` (dask_task_output_set_*): a
/// result, or an error with a type and message. Setting nothing gives null.
///
/// Called on the worker's task threads, several at once when the worker
/// has several threads: it must be thread-safe. It must return (not
/// longjmp, not throw a C++ exception) and must not stop or free its own
/// worker.
pub type dask_function = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        args: *const u8,
        args_len: usize,
        kwargs: *const u8,
        kwargs_len: usize,
        output: *mut dask_task_output,
    ),
>;

/// Frees the `user_data` of a registered function once no worker or
/// registry can call it any more (optional).
pub type dask_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Functions by name, for dask_worker_start and the embedded clusters.
/// Registering is not thread-safe; once built, a registry may be read by
/// several threads (the start functions copy it).
pub struct dask_functions {
    pub(crate) registry: FunctionRegistry,
}

/// What a C function reports: filled through dask_task_output_set_*, only
/// during the call that received it and on its thread.
pub struct dask_task_output {
    outcome: Outcome,
}

enum Outcome {
    Nil,
    Value(Value),
    Error(TaskError),
}

/// One registered C function and its user data.
struct Callback {
    function: unsafe extern "C" fn(
        *mut c_void,
        *const u8,
        usize,
        *const u8,
        usize,
        *mut dask_task_output,
    ),
    user_data: *mut c_void,
    free: dask_free_fn,
}

// SAFETY: the C side promises the function and its user data may be used
// from any thread, at once (documented on dask_function).
unsafe impl Send for Callback {}
unsafe impl Sync for Callback {}

impl Callback {
    fn run(&self, args: &[Value], kwargs: &[(String, Value)]) -> TaskResult {
        let args = encode_args(args).into_bytes();
        let kwargs = encode_kwargs(kwargs).into_bytes();
        let mut output = dask_task_output {
            outcome: Outcome::Nil,
        };
        // SAFETY: a C function pointer given to dask_functions_register,
        // with buffers that live for the call.
        unsafe {
            (self.function)(
                self.user_data,
                args.as_ptr(),
                args.len(),
                kwargs.as_ptr(),
                kwargs.len(),
                &mut output,
            )
        };
        match output.outcome {
            Outcome::Nil => Ok(Value::Nil),
            Outcome::Value(v) => Ok(v),
            Outcome::Error(e) => Err(e),
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // A panic cannot come from C; catch_unwind keeps a C abort
            // out of Rust's drop glue semantics all the same.
            let user_data = self.user_data;
            let _ = catch_unwind(AssertUnwindSafe(|| unsafe { free(user_data) }));
        }
    }
}

/// A new registry holding no function. Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_functions_new() -> *mut dask_functions {
    guard(std::ptr::null_mut(), || {
        boxed(dask_functions {
            registry: FunctionRegistry::new(),
        })
    })
}

/// A new registry holding dask-rs's built-in library (add, inc, sum, ...,
/// and the conformance.* functions; see `dask-worker --list-functions`).
/// Never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_functions_new_builtins() -> *mut dask_functions {
    guard(std::ptr::null_mut(), || {
        boxed(dask_functions {
            registry: FunctionRegistry::builtins(),
        })
    })
}

/// Registers `function` under `name` (copied), replacing a function of
/// that name. `user_data` is passed to every call; `free_user_data`
/// (optional) is called once on it when the last registry or worker holding
/// the function is gone (also when this call fails). Not thread-safe for
/// `functions`.
#[no_mangle]
pub extern "C" fn dask_functions_register(
    functions: *mut dask_functions,
    name: *const c_char,
    function: dask_function,
    user_data: *mut c_void,
    free_user_data: dask_free_fn,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_functions_register", err, || {
        // Owned from here on, so that every failure below frees user_data.
        let callback = Callback {
            function: match function {
                Some(f) => f,
                None => {
                    drop(Callback::dropper(user_data, free_user_data));
                    return Err(Failure::null("function"));
                }
            },
            user_data,
            free: free_user_data,
        };
        let functions = borrow_mut(functions, "functions")?;
        let name = c_str(name, "name")?;
        if name.is_empty() {
            return Err(Failure::invalid("`name` is empty"));
        }
        let callback = Arc::new(callback);
        functions
            .registry
            .register(name, move |args: &[Value], kwargs: &[(String, Value)]| {
                callback.run(args, kwargs)
            });
        Ok(())
    })
}

impl Callback {
    /// Only frees `user_data` when dropped (for a failed registration
    /// without a function).
    fn dropper(user_data: *mut c_void, free: dask_free_fn) -> Callback {
        unsafe extern "C" fn never(
            _: *mut c_void,
            _: *const u8,
            _: usize,
            _: *const u8,
            _: usize,
            _: *mut dask_task_output,
        ) {
        }
        Callback {
            function: never,
            user_data,
            free,
        }
    }
}

/// Whether a function named `name` is registered (false for NULL
/// arguments). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_functions_contains(
    functions: *const dask_functions,
    name: *const c_char,
) -> bool {
    guard(false, || {
        match (unsafe { functions.as_ref() }, c_str(name, "name")) {
            (Some(f), Ok(name)) => f.registry.contains(name),
            _ => false,
        }
    })
}

/// Number of registered functions; 0 for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_functions_len(functions: *const dask_functions) -> usize {
    guard(0, || {
        unsafe { functions.as_ref() }.map_or(0, |f| f.registry.len())
    })
}

/// Frees the registry (workers started from it keep their copy). NULL is
/// a no-op. No other call on `functions` may be in progress.
#[no_mangle]
pub extern "C" fn dask_functions_free(functions: *mut dask_functions) {
    ffi::free_box(functions);
}

// ---- task output ----------------------------------------------------------------

/// Sets the task's result to a copy of `value` (not consumed; task
/// references are refused). Only inside the function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_value(
    output: *mut dask_task_output,
    value: *const dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_value", err, || {
        let output = borrow_mut(output, "output")?;
        let value = borrow(value, "value")?.to_rmpv(false)?;
        output.outcome = Outcome::Value(value);
        Ok(())
    })
}

/// Sets the task's result to the msgpack value in `len` bytes at `data`
/// (copied, checked: bad bytes give DASK_INVALID_MSGPACK and leave the
/// output unchanged). Only inside the function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_msgpack(
    output: *mut dask_task_output,
    data: *const u8,
    len: usize,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_msgpack", err, || {
        let output = borrow_mut(output, "output")?;
        let data = ffi::bytes(data, len, "data")?;
        let raw = RawValue::from_bytes(data.to_vec()).map_err(|e| {
            Failure::new(
                dask_result::DASK_INVALID_MSGPACK,
                format!("not one valid msgpack value: {}", e.message),
            )
        })?;
        let value = raw
            .to_value()
            .map_err(|e| Failure::new(dask_result::DASK_INVALID_MSGPACK, e.message.to_string()))?;
        output.outcome = Outcome::Value(value);
        Ok(())
    })
}

/// Sets the task's result to an integer. Only inside the function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_int(
    output: *mut dask_task_output,
    value: i64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_int", err, || {
        borrow_mut(output, "output")?.outcome = Outcome::Value(Value::from(value));
        Ok(())
    })
}

/// Sets the task's result to a float. Only inside the function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_double(
    output: *mut dask_task_output,
    value: f64,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_double", err, || {
        borrow_mut(output, "output")?.outcome = Outcome::Value(Value::F64(value));
        Ok(())
    })
}

/// Sets the task's result to a binary of `len` bytes at `data` (copied;
/// (NULL, 0) is the empty binary). Only inside the function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_bytes(
    output: *mut dask_task_output,
    data: *const u8,
    len: usize,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_bytes", err, || {
        let output = borrow_mut(output, "output")?;
        let data = ffi::bytes(data, len, "data")?;
        output.outcome = Outcome::Value(Value::Binary(data.to_vec()));
        Ok(())
    })
}

/// Sets the task's result to a string (copied from NUL-terminated UTF-8).
/// Only inside the function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_string(
    output: *mut dask_task_output,
    value: *const c_char,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_string", err, || {
        let output = borrow_mut(output, "output")?;
        let value = c_str(value, "value")?;
        output.outcome = Outcome::Value(Value::from(value));
        Ok(())
    })
}

/// Makes the task fail with `error_type` (e.g. "ValueError"; NULL or ""
/// gives "Error") and `message` (NULL gives ""), both copied: the client
/// sees DASK_REMOTE_ERROR with this type and message. Only inside the
/// function's call.
#[no_mangle]
pub extern "C" fn dask_task_output_set_error(
    output: *mut dask_task_output,
    error_type: *const c_char,
    message: *const c_char,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_task_output_set_error", err, || {
        let output = borrow_mut(output, "output")?;
        let error_type = opt_c_str(error_type, "error_type")?
            .filter(|t| !t.is_empty())
            .unwrap_or("Error");
        let message = opt_c_str(message, "message")?.unwrap_or("");
        output.outcome = Outcome::Error(TaskError::new(error_type, message));
        Ok(())
    })
}

// ---- worker ----------------------------------------------------------------------

/// A worker connected to a scheduler, running tasks on its own threads.
/// dask_worker_stop, dask_worker_address and dask_worker_name are
/// thread-safe; dask_worker_run is called by one thread at a time;
/// dask_worker_free by no other thread than the last user.
pub struct dask_worker {
    name: CString,
    address: CString,
    state: Mutex<WorkerState>,
    changed: Condvar,
}

struct WorkerState {
    /// The running worker; taken by whoever stops or joins it.
    handle: Option<WorkerHandle>,
    /// How it ended, once it has.
    ended: Option<Result<(), String>>,
}

/// How often dask_worker_run looks whether the worker ended by itself.
const RUN_POLL: Duration = Duration::from_millis(20);

impl dask_worker {
    fn lock(&self) -> MutexGuard<'_, WorkerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, outcome: io::Result<()>) {
        let mut st = self.lock();
        if st.ended.is_none() {
            st.ended = Some(outcome.map_err(|e| e.to_string()));
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Blocks until the worker has ended; its outcome.
    fn wait_ended(&self, mut st: MutexGuard<'_, WorkerState>) -> Result<(), String> {
        loop {
            if let Some(ended) = &st.ended {
                return ended.clone();
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// How long a worker started by dask_worker_start or
/// dask_worker_start_secure registers again after losing its scheduler,
/// as `dask-worker` does by default.
const RECONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// Starts a worker: binds its data port on 127.0.0.1, connects to the
/// scheduler at `scheduler` (`tcp://HOST:PORT`), registers with `nthreads`
/// task threads (0: one per core), the name `name` (NULL: a generated unique
/// name) and the functions of `functions` (copied; NULL: the built-in
/// library), and returns once the scheduler accepted it (within 10 s). The
/// worker runs from then on; dask_worker_run waits for its end. If it
/// loses the scheduler (a crash, a restart, a network cut) it registers
/// again as a new worker of the same name every second for up to 60 s,
/// keeping the results it holds (a scheduler restarted on its journal
/// adopts them), as `dask-worker` does; dask_worker_start_reconnecting
/// sets that time. The
/// worker proves the cluster's worker secret, found as dask_client_connect
/// finds the client secret, and serves its data address only to workers
/// that prove it. An unreachable scheduler gives DASK_CONNECTION (or DASK_TIMEOUT); a
/// scheduler that refuses the worker (an `error` reply: its name is in use
/// (3004), another protocol version (3001)...) gives DASK_REFUSED, the
/// scheduler's code and message in the error's message.
/// `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_worker_start(
    scheduler: *const c_char,
    nthreads: usize,
    name: *const c_char,
    functions: *const dask_functions,
    out: *mut *mut dask_worker,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_worker_start", err, || {
        let reconnect = RECONNECT_TIMEOUT_DEFAULT;
        start(
            scheduler,
            nthreads,
            name,
            functions,
            std::ptr::null(),
            reconnect,
            out,
        )
    })
}

/// As dask_worker_start, with the credentials and TLS files `security`
/// names (NULL: as dask_worker_start): with `tls_cert_file` the worker's
/// data address is `tls://`, and `tls_ca_file` lets it reach a `tls://`
/// scheduler and TLS peers. A file that cannot be read or holds no worker
/// secret gives DASK_INVALID_ARGUMENT, naming it. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_worker_start_secure(
    scheduler: *const c_char,
    nthreads: usize,
    name: *const c_char,
    functions: *const dask_functions,
    security: *const dask_security,
    out: *mut *mut dask_worker,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_worker_start_secure", err, || {
        let reconnect = RECONNECT_TIMEOUT_DEFAULT;
        start(
            scheduler, nthreads, name, functions, security, reconnect, out,
        )
    })
}

/// As dask_worker_start_secure, registering again for at most
/// `reconnect_timeout_ms` after losing the scheduler (every second; the
/// default of the other start functions is 60000). 0: it never does, and
/// dask_worker_run gives DASK_CONNECTION as soon as the connection is
/// lost. A negative time gives DASK_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn dask_worker_start_reconnecting(
    scheduler: *const c_char,
    nthreads: usize,
    name: *const c_char,
    functions: *const dask_functions,
    security: *const dask_security,
    reconnect_timeout_ms: i64,
    out: *mut *mut dask_worker,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_worker_start_reconnecting", err, || {
        if reconnect_timeout_ms < 0 {
            return Err(Failure::new(
                dask_result::DASK_INVALID_ARGUMENT,
                format!(
                    "reconnect_timeout_ms is {reconnect_timeout_ms}; give 0 (never register \
                     again) or a number of milliseconds"
                ),
            ));
        }
        let reconnect = ffi::timeout(reconnect_timeout_ms).unwrap_or(Duration::ZERO);
        start(
            scheduler, nthreads, name, functions, security, reconnect, out,
        )
    })
}

fn start(
    scheduler: *const c_char,
    nthreads: usize,
    name: *const c_char,
    functions: *const dask_functions,
    security: *const dask_security,
    reconnect_timeout: Duration,
    out: *mut *mut dask_worker,
) -> Fallible {
    let out = ffi::out(out, "out")?;
    let scheduler = c_str(scheduler, "scheduler")?;
    crate::client::check_address(scheduler, !security.is_null())?;
    let name = opt_c_str(name, "name")?;
    let (credentials, tls) =
        crate::security::resolve(scheduler, dask_core::messages::Role::Worker, security)?;
    let mut config = WorkerConfig {
        scheduler: scheduler.to_owned(),
        name: name.map(str::to_owned),
        credentials,
        tls,
        reconnect_timeout,
        ..WorkerConfig::default()
    };
    if nthreads > 0 {
        config.nthreads = nthreads;
    }
    // SAFETY: a non-NULL pointer argument points to a valid value (rule 5).
    if let Some(f) = unsafe { functions.as_ref() } {
        config.functions = f.registry.clone();
    }
    let handle = WorkerHandle::start(config).map_err(|e| start_failure(e, scheduler))?;
    *out = boxed(dask_worker {
        name: c_string(handle.name()),
        address: c_string(&handle.address()),
        state: Mutex::new(WorkerState {
            handle: Some(handle),
            ended: None,
        }),
        changed: Condvar::new(),
    });
    Ok(())
}

/// Why [`WorkerHandle::start`] failed, as a status. The worker reports a
/// scheduler's refusal (an `error` reply to its hello or registration) as
/// `ConnectionRefused` with a message of its own; a refused TCP connect
/// has the same kind but carries the operating system's error code.
fn start_failure(e: io::Error, scheduler: &str) -> Failure {
    let refused_by_scheduler =
        e.kind() == io::ErrorKind::ConnectionRefused && e.raw_os_error().is_none();
    let mut f = Failure::from(e);
    if refused_by_scheduler {
        f.code = dask_result::DASK_REFUSED;
    }
    f.message = format!("cannot start a worker for {scheduler}: {}", f.message);
    f
}

/// Blocks until the worker ends: DASK_OK when the scheduler closed it or
/// dask_worker_stop stopped it; DASK_CONNECTION when the connection to the
/// scheduler was lost or broken (and registering again did not work within
/// the worker's reconnect time). Returns at once, with the same result,
/// once the worker has ended. One thread at a time.
#[no_mangle]
pub extern "C" fn dask_worker_run(
    worker: *const dask_worker,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_worker_run", err, || {
        let worker = borrow(worker, "worker")?;
        let mut st = worker.lock();
        let outcome = loop {
            if st.ended.is_some() || st.handle.is_none() {
                // Ended, or dask_worker_stop is stopping it.
                break worker.wait_ended(st);
            }
            if st.handle.as_ref().is_some_and(WorkerHandle::is_finished) {
                let handle = st.handle.take();
                drop(st);
                let outcome = handle.map_or(Ok(()), WorkerHandle::join);
                worker.finish(outcome);
                break worker.wait_ended(worker.lock());
            }
            // WorkerHandle::join would block dask_worker_stop out: poll.
            st = worker
                .changed
                .wait_timeout(st, RUN_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        outcome.map_err(|m| {
            Failure::new(
                dask_result::DASK_CONNECTION,
                format!("the worker lost its scheduler: {m}"),
            )
        })
    })
}

/// Stops the worker (it tells the scheduler it is closing, stops its
/// threads and closes its connections) and returns once it has stopped;
/// a dask_worker_run in progress then returns DASK_OK. Stopping a stopped
/// worker is DASK_OK. Thread-safe: meant to be called from another thread
/// than dask_worker_run's (not from a task function).
#[no_mangle]
pub extern "C" fn dask_worker_stop(
    worker: *const dask_worker,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_worker_stop", err, || {
        let worker = borrow(worker, "worker")?;
        let mut st = worker.lock();
        match st.handle.take() {
            Some(handle) => {
                drop(st);
                handle.stop();
                worker.finish(Ok(()));
            }
            None => {
                // Ending already (joined by dask_worker_run, or stopped by
                // another thread): wait for it to be over.
                let _ = worker.wait_ended(st);
            }
        }
        Ok(())
    })
}

/// The worker's data address (`tcp://127.0.0.1:PORT`), where peers fetch
/// its results. Borrowed from `worker`; "" for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_worker_address(worker: *const dask_worker) -> *const c_char {
    guard(c"".as_ptr(), || match unsafe { worker.as_ref() } {
        Some(w) => w.address.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// The worker's registered name. Borrowed from `worker`; "" for NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_worker_name(worker: *const dask_worker) -> *const c_char {
    guard(c"".as_ptr(), || match unsafe { worker.as_ref() } {
        Some(w) => w.name.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// Stops the worker if it still runs (as dask_worker_stop) and frees it.
/// NULL is a no-op. No other call on `worker` may be in progress (a
/// dask_worker_run must have returned).
#[no_mangle]
pub extern "C" fn dask_worker_free(worker: *mut dask_worker) {
    ffi::free_box(worker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_by_the_scheduler_is_refused_and_a_refused_connect_a_connection_failure() {
        let refusal = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "the scheduler refused the worker (3004): name in use",
        );
        let f = start_failure(refusal, "tcp://127.0.0.1:1");
        assert_eq!(f.code, dask_result::DASK_REFUSED);
        assert!(f.message.contains("(3004)"), "{}", f.message);
        // A real refused connect: a port nobody listens on any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if let Err(e) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let f = start_failure(e, "tcp://127.0.0.1:1");
            assert_eq!(f.code, dask_result::DASK_CONNECTION, "{}", f.message);
        }
    }
}
