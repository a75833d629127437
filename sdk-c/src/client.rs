//! `dask_client` (a connection to a scheduler) and `dask_local_cluster`
//! (a scheduler and workers inside this process).

use std::ffi::{c_char, CString};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use ::dask_client::{Arg, Client, ClientOptions};
use dask_cluster::{LocalCluster, LocalClusterBuilder};

use crate::delayed::dask_delayed;
use crate::error::{c_string, dask_error, dask_result, Failure, Fallible};
use crate::ffi::{self, borrow, boxed, c_str, call, guard, handles, out_array};
use crate::future::{dask_as_completed, dask_future};
use crate::security::dask_security;
use crate::value::dask_value;
use crate::worker::dask_functions;

/// A connection to a scheduler. A background thread does the network I/O:
/// submitting never blocks. Every function on a client is thread-safe
/// except dask_client_free.
pub struct dask_client {
    /// `None` once closed.
    client: RwLock<Option<Client>>,
    /// The embedded cluster of dask_client_start_local, stopped after the
    /// connection closes (fields drop in this order too).
    cluster: Mutex<Option<LocalCluster>>,
    address: CString,
}

impl dask_client {
    /// A client, owning `cluster` when given.
    fn new(client: Client, cluster: Option<LocalCluster>) -> dask_client {
        let address = c_string(client.address());
        dask_client {
            client: RwLock::new(Some(client)),
            cluster: Mutex::new(cluster),
            address,
        }
    }

    /// The open client, or DASK_CLOSED. Holding the guard keeps a
    /// concurrent dask_client_close waiting.
    fn open(&self) -> Fallible<ClientRef<'_>> {
        let guard = self.client.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(Failure::new(
                dask_result::DASK_CLOSED,
                "the client is closed (dask_client_close): only dask_client_free may follow",
            ));
        }
        Ok(ClientRef(guard))
    }
}

struct ClientRef<'a>(RwLockReadGuard<'a, Option<Client>>);

impl std::ops::Deref for ClientRef<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // `open` checked it is Some and the read guard keeps it so.
        self.0.as_ref().expect("checked open")
    }
}

/// What a client or worker of this process proves to the scheduler at
/// `address`, as `role`: the secrets of an embedded cluster of this
/// process at that address, else the credentials file found as every
/// dask-rs program finds it (`DASK_CREDENTIALS`, then the file
/// dask-scheduler created on this machine); none when there is none (a
/// scheduler requiring them then refuses with 3003, saying so).
pub(crate) fn credentials_for(
    address: &str,
    role: dask_core::messages::Role,
) -> Fallible<Option<dask_core::auth::Credentials>> {
    use dask_net::credentials;
    if let Some(local) = dask_cluster::credentials_of_local_cluster(address) {
        return Ok(credentials::for_role(&local, role));
    }
    let found = credentials::discover(None).map_err(|e| Failure::invalid(e.to_string()))?;
    let Some(file) = found else { return Ok(None) };
    match credentials::for_role(&file.credentials, role) {
        Some(own) => Ok(Some(own)),
        None => Err(Failure::invalid(format!(
            "the credentials file {} holds no {} secret (it was exported for another role)",
            file.path.display(),
            role.as_str()
        ))),
    }
}

/// `tcp://HOST:PORT`, or also `tls://HOST:PORT` when `tls_allowed`.
pub(crate) fn check_address(address: &str, tls_allowed: bool) -> Fallible {
    let endpoint = dask_net::parse_endpoint(address)
        .map_err(|e| Failure::invalid(format!("bad address {address:?}: {e}")))?;
    if endpoint.tls && !tls_allowed {
        return Err(Failure::invalid(format!(
            "{address:?} is a TLS address: connect with the _secure function and the \
             cluster's CA in its dask_security"
        )));
    }
    Ok(())
}

fn cluster_builder(
    workers: usize,
    threads_per_worker: usize,
    functions: *const dask_functions,
) -> LocalClusterBuilder {
    let mut builder = LocalCluster::builder().workers(workers.max(1));
    if threads_per_worker > 0 {
        builder = builder.threads_per_worker(threads_per_worker);
    }
    if let Some(f) = unsafe { functions.as_ref() } {
        builder = builder.functions(f.registry.clone());
    }
    builder
}

/// Connects to the scheduler at `address` (`tcp://HOST:PORT`), waiting at
/// most `timeout_ms` (at least 1 ms; negative: no limit but the operating
/// system's own) for the connection and handshake.
/// It proves the cluster's client secret: an embedded cluster's of this
/// process at `address`, else the credentials file every dask-rs program
/// finds (DASK_CREDENTIALS, else the file dask-scheduler created on this
/// machine: $DASK_RS_HOME/credentials.json or ~/.dask-rs/credentials.json);
/// a scheduler requiring credentials refuses a client without them
/// (DASK_REFUSED, 3003, saying what to give).
/// A malformed address gives DASK_INVALID_ARGUMENT; an unreachable one
/// DASK_CONNECTION. `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_connect(
    address: *const c_char,
    timeout_ms: i64,
    out: *mut *mut dask_client,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_connect", err, || {
        connect(address, timeout_ms, std::ptr::null(), out)
    })
}

/// As dask_client_connect, with the credentials and TLS files `security`
/// names (NULL: as dask_client_connect): `tls://` addresses need its
/// `tls_ca_file`. A file that cannot be read or holds no client secret
/// gives DASK_INVALID_ARGUMENT, naming it. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_connect_secure(
    address: *const c_char,
    timeout_ms: i64,
    security: *const dask_security,
    out: *mut *mut dask_client,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_connect_secure", err, || {
        connect(address, timeout_ms, security, out)
    })
}

fn connect(
    address: *const c_char,
    timeout_ms: i64,
    security: *const dask_security,
    out: *mut *mut dask_client,
) -> Fallible {
    let out = ffi::out(out, "out")?;
    let address = c_str(address, "address")?;
    check_address(address, !security.is_null())?;
    let (credentials, tls) =
        crate::security::resolve(address, dask_core::messages::Role::Client, security)?;
    let options = ClientOptions {
        connect_timeout: ffi::timeout(timeout_ms)
            .unwrap_or(ffi::TIMEOUT_MAX)
            .max(Duration::from_millis(1)),
        credentials,
        tls,
        ..ClientOptions::default()
    };
    *out = boxed(dask_client::new(
        Client::connect_with(address, options)?,
        None,
    ));
    Ok(())
}

/// Starts an embedded cluster (a scheduler on 127.0.0.1 and `workers`
/// workers of `threads_per_worker` threads, all in this process; 0 gives 1
/// worker / one thread per core) and connects a client that owns it: the
/// cluster stops when the client is freed. `functions` is what the workers
/// offer (copied; NULL: the built-in library). `*out` is owned by the
/// caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_start_local(
    workers: usize,
    threads_per_worker: usize,
    functions: *const dask_functions,
    out: *mut *mut dask_client,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_start_local", err, || {
        let out = ffi::out(out, "out")?;
        let cluster = cluster_builder(workers, threads_per_worker, functions).build()?;
        let client = cluster.client()?;
        *out = boxed(dask_client::new(client, Some(cluster)));
        Ok(())
    })
}

/// The scheduler's address, `tcp://HOST:PORT`. Borrowed from `client`,
/// valid until it is freed; "" for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_address(client: *const dask_client) -> *const c_char {
    guard(c"".as_ptr(), || match unsafe { client.as_ref() } {
        Some(c) => c.address.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// Whether the connection is up (false for NULL or a closed client).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_is_connected(client: *const dask_client) -> bool {
    guard(false, || match unsafe { client.as_ref() } {
        Some(c) => c.open().is_ok_and(|c| c.is_connected()),
        None => false,
    })
}

/// Number of workers connected to the scheduler now, in `*out`. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_worker_count(
    client: *const dask_client,
    out: *mut usize,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_worker_count", err, || {
        let out = ffi::out_value(out, "out")?;
        let client = borrow(client, "client")?.open()?;
        *out = client.workers()?.len();
        Ok(())
    })
}

/// Submits one call of `function` with `args` (an array value, one
/// argument per item, copied; NULL for none; items may be references made
/// by dask_value_new_future). Returns at once: `*out` is the future of the
/// result, owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_submit(
    client: *const dask_client,
    function: *const c_char,
    args: *const dask_value,
    out: *mut *mut dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_submit", err, || {
        let out = ffi::out(out, "out")?;
        let client = borrow(client, "client")?.open()?;
        let function = c_str(function, "function")?;
        if function.is_empty() {
            return Err(Failure::invalid("`function` is empty"));
        }
        let args = dask_value::to_args(unsafe { args.as_ref() })?;
        *out = boxed(dask_future::new(client.submit(function, args)));
        Ok(())
    })
}

/// Like dask_client_submit, the arguments given as the msgpack encoding of
/// an array (`len` bytes at `args`; task references are ext type 1 holding
/// a key the scheduler knows; copied). Bad msgpack gives
/// DASK_INVALID_MSGPACK. `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_submit_msgpack(
    client: *const dask_client,
    function: *const c_char,
    args: *const u8,
    len: usize,
    out: *mut *mut dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_submit_msgpack", err, || {
        let out = ffi::out(out, "out")?;
        let client = borrow(client, "client")?.open()?;
        let function = c_str(function, "function")?;
        if function.is_empty() {
            return Err(Failure::invalid("`function` is empty"));
        }
        let args = dask_value::from_msgpack(ffi::bytes(args, len, "args")?)?;
        let args = match args.to_rmpv(false)? {
            rmpv::Value::Array(items) => items.into_iter().map(Arg::Value).collect(),
            _ => {
                return Err(Failure::invalid(
                    "the arguments must be the msgpack encoding of an array",
                ))
            }
        };
        *out = boxed(dask_future::new(client.submit(function, args)));
        Ok(())
    })
}

/// Submits the delayed call `delayed` and every call it refers to, as one
/// graph; only `delayed`'s result is kept (intermediates are freed once
/// used). `*out` is its future, owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_compute(
    client: *const dask_client,
    delayed: *const dask_delayed,
    out: *mut *mut dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_compute", err, || {
        let out = ffi::out(out, "out")?;
        let client = borrow(client, "client")?.open()?;
        let delayed = borrow(delayed, "delayed")?;
        *out = boxed(dask_future::new(client.compute(&delayed.inner)));
        Ok(())
    })
}

/// Submits `n` delayed calls (and every call they refer to) as one graph;
/// `futures` (an array of `n` slots) receives their futures, each owned by
/// the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_compute_many(
    client: *const dask_client,
    delayed: *const *const dask_delayed,
    n: usize,
    futures: *mut *mut dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_compute_many", err, || {
        let slots = out_array(futures, n, "futures")?;
        let client = borrow(client, "client")?.open()?;
        let calls: Vec<_> = handles(delayed, n, "delayed")?
            .into_iter()
            .map(|d| d.inner.clone())
            .collect();
        for (slot, f) in slots.iter_mut().zip(client.compute_all(&calls)) {
            *slot = boxed(dask_future::new(f));
        }
        Ok(())
    })
}

/// Waits for `n` futures (all at most `timeout_ms` together; negative: no
/// limit) and fetches every result in one request; `results` (an array of
/// `n` slots) receives the values, each owned by the caller. Any future
/// that failed fails the call (no partial results). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_gather(
    client: *const dask_client,
    futures: *const *const dask_future,
    n: usize,
    timeout_ms: i64,
    results: *mut *mut dask_value,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_gather", err, || {
        let slots = out_array(results, n, "results")?;
        let client = borrow(client, "client")?.open()?;
        let futures: Vec<_> = handles(futures, n, "futures")?
            .into_iter()
            .map(|f| f.inner.clone())
            .collect();
        if let Some(t) = ffi::timeout(timeout_ms) {
            let deadline = Instant::now() + t;
            for f in &futures {
                f.wait_timeout(deadline.saturating_duration_since(Instant::now()))?;
            }
        }
        let values = client.gather(&futures)?;
        for (slot, v) in slots.iter_mut().zip(values) {
            *slot = boxed(dask_value::from_rmpv(v));
        }
        Ok(())
    })
}

/// Counts of futures by state, as the client knows them now
/// (dask_client_progress): what a progress bar draws.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct dask_progress {
    /// Futures counted.
    pub total: u64,
    /// Finished: the result is in memory.
    pub finished: u64,
    /// Erred (the task or one it needs raised).
    pub erred: u64,
    /// Cancelled, lost, or failed (request refused, connection closed).
    pub failed: u64,
    /// Not done yet.
    pub pending: u64,
    /// Of the pending, those the scheduler said cannot run on any
    /// connected worker now (dask_future_waiting tells why).
    pub waiting: u64,
}

/// Counts the `n` futures of `futures` by state into `*out` (does not
/// wait). Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_progress(
    client: *const dask_client,
    futures: *const *const dask_future,
    n: usize,
    out: *mut dask_progress,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_progress", err, || {
        let out = ffi::out_value(out, "out")?;
        let client = borrow(client, "client")?.open()?;
        let futures = handles(futures, n, "futures")?;
        let p = client.progress(futures.iter().map(|f| &f.inner));
        *out = dask_progress {
            total: p.total,
            finished: p.finished,
            erred: p.erred,
            failed: p.failed,
            pending: p.pending,
            waiting: p.waiting,
        };
        Ok(())
    })
}

/// Stores `n` values on the cluster (copied) and waits until they are
/// stored; `futures` (an array of `n` slots) receives one future per value,
/// each owned by the caller, usable at once in the arguments of calls.
/// No connected worker gives DASK_REFUSED. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_scatter(
    client: *const dask_client,
    values: *const *const dask_value,
    n: usize,
    futures: *mut *mut dask_future,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_scatter", err, || {
        let slots = out_array(futures, n, "futures")?;
        let client = borrow(client, "client")?.open()?;
        let values = handles(values, n, "values")?
            .into_iter()
            .map(|v| v.to_rmpv(false))
            .collect::<Fallible<Vec<_>>>()?;
        for (slot, f) in slots.iter_mut().zip(client.scatter(values)?) {
            *slot = boxed(dask_future::new(f));
        }
        Ok(())
    })
}

/// An iterator over `n` futures (it takes its own references: the caller
/// still owns them) giving them as they complete; see
/// dask_as_completed_next. `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_client_as_completed(
    client: *const dask_client,
    futures: *const *const dask_future,
    n: usize,
    out: *mut *mut dask_as_completed,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_as_completed", err, || {
        let out = ffi::out(out, "out")?;
        let client = borrow(client, "client")?.open()?;
        let futures: Vec<_> = handles(futures, n, "futures")?
            .into_iter()
            .map(|f| f.inner.clone())
            .collect();
        *out = boxed(dask_as_completed::new(client.as_completed(futures)));
        Ok(())
    })
}

/// Closes the connection (the scheduler releases everything this client
/// wanted; its futures then fail with DASK_CONNECTION) and, for a client of
/// dask_client_start_local, stops the embedded cluster. Later calls give
/// DASK_CLOSED; closing twice is DASK_OK. Thread-safe: waits for calls in
/// progress on other threads to return.
#[no_mangle]
pub extern "C" fn dask_client_close(
    client: *const dask_client,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_client_close", err, || {
        let client = borrow(client, "client")?;
        let taken = client
            .client
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = taken {
            c.close();
        }
        let cluster = client
            .cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(cluster);
        Ok(())
    })
}

/// Closes (as dask_client_close) and frees the client; joins its threads.
/// Futures of this client stay valid. NULL is a no-op. No other call on
/// `client` may be in progress.
#[no_mangle]
pub extern "C" fn dask_client_free(client: *mut dask_client) {
    ffi::free_box(client);
}

// ---- embedded cluster ---------------------------------------------------------

/// A scheduler and workers running inside this process, on 127.0.0.1.
/// dask_local_cluster_address and dask_local_cluster_client are
/// thread-safe; dask_local_cluster_free is not.
pub struct dask_local_cluster {
    cluster: LocalCluster,
    address: CString,
}

/// Starts a scheduler (on a free port of 127.0.0.1) and `workers` workers
/// of `threads_per_worker` threads (0 gives 1 worker / one thread per
/// core) offering `functions` (copied; NULL: the built-in library), and
/// waits until every worker has registered. `*out` is owned by the caller.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_local_cluster_start(
    workers: usize,
    threads_per_worker: usize,
    functions: *const dask_functions,
    out: *mut *mut dask_local_cluster,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_local_cluster_start", err, || {
        let out = ffi::out(out, "out")?;
        let cluster = cluster_builder(workers, threads_per_worker, functions).build()?;
        let address = c_string(cluster.address());
        *out = boxed(dask_local_cluster { cluster, address });
        Ok(())
    })
}

/// The scheduler's address, `tcp://127.0.0.1:PORT`, for dask_client_connect
/// or a dask_worker_start of this process or another. Borrowed from
/// `cluster`; "" for NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_local_cluster_address(cluster: *const dask_local_cluster) -> *const c_char {
    guard(c"".as_ptr(), || match unsafe { cluster.as_ref() } {
        Some(c) => c.address.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// Connects a new client to the cluster (it does not own the cluster: free
/// the client before or after the cluster; after, its calls fail with
/// DASK_CONNECTION). `*out` is owned by the caller. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_local_cluster_client(
    cluster: *const dask_local_cluster,
    out: *mut *mut dask_client,
    err: *mut *mut dask_error,
) -> dask_result {
    call("dask_local_cluster_client", err, || {
        let out = ffi::out(out, "out")?;
        let cluster = borrow(cluster, "cluster")?;
        *out = boxed(dask_client::new(cluster.cluster.client()?, None));
        Ok(())
    })
}

/// Stops the workers, then the scheduler, joins their threads and frees the
/// cluster. NULL is a no-op. No other call on `cluster` may be in progress.
#[no_mangle]
pub extern "C" fn dask_local_cluster_free(cluster: *mut dask_local_cluster) {
    ffi::free_box(cluster);
}
