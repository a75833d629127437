//! # dask-sdk-js: the wasm half of the JS SDK
//!
//! The npm package in this folder wraps this crate compiled to
//! `wasm32-unknown-unknown`. Every protocol decision a Node client or
//! worker makes is made here, by dask-core: the codec, framing, the
//! handshake, the client session ([`client::ClientDriver`] over
//! `dask_core::client::ClientSession`) and the worker state machine
//! ([`worker::WorkerDriver`] over `dask_core::worker::WorkerState`). JS owns
//! only sockets, timers, Promises and the user's functions.
//!
//! ## The ABI
//!
//! Plain exported functions over numbers (no wasm-bindgen): the module
//! imports nothing and is loaded with `WebAssembly.instantiate(bytes, {})`.
//! Byte buffers go in through memory JS asks for with [`dask_alloc`] (and
//! gives back with [`dask_dealloc`]); every call that produces bytes leaves
//! them in one result buffer, read with [`dask_result_ptr`] /
//! [`dask_result_len`] before the next call. Structured inputs and outputs
//! are msgpack maps (the package's JS value codec reads and writes them);
//! the codec entry point speaks JSON for the golden vectors.
//!
//! | export | arguments | returns |
//! |---|---|---|
//! | `dask_abi_version` | | ABI version, [`ABI_VERSION`] |
//! | `dask_alloc` / `dask_dealloc` | `len` / `ptr, len` | a pointer (0 when out of memory) / nothing |
//! | `dask_result_ptr` / `dask_result_len` | | where the last output is |
//! | `dask_client_new` | config | handle (0: failed; message in the result) |
//! | `dask_client_command` | handle, command | status; reply map |
//! | `dask_client_receive` | handle, bytes | status |
//! | `dask_client_channel_binding` | handle, binding (32 bytes) | status |
//! | `dask_client_transport_closed` | handle, reason (UTF-8) | status |
//! | `dask_client_drain` | handle | status; `{transmit, events, close, reconnect}` |
//! | `dask_client_free` | handle | |
//! | `dask_worker_new` | config | handle (0: failed) |
//! | `dask_worker_accept` | handle, now_ms | connection number (0: refused) |
//! | `dask_worker_receive` | handle, conn, now_ms, bytes | status |
//! | `dask_worker_channel_binding` | handle, conn, binding (32 bytes) | status |
//! | `dask_worker_conn_closed` | handle, conn, now_ms, reason | status |
//! | `dask_worker_conn_drained` | handle, conn | status |
//! | `dask_worker_task_done` | handle, command, value bytes | status |
//! | `dask_worker_tick` / `dask_worker_stop` | handle, now_ms | status |
//! | `dask_worker_listening` / `dask_worker_listen_failed` | handle, now_ms, address / error (UTF-8) | status |
//! | `dask_worker_drain` | handle, now_ms | status; the actions map |
//! | `dask_worker_free` | handle | |
//! | `dask_inprocess_new` | graph, stop_on_error | handle (0: refused; `{code, code_name, message}` in the result) |
//! | `dask_inprocess_next` | handle | status; the next task or `{done: true}` |
//! | `dask_inprocess_finished` / `_failed` | handle, task, value / error | status |
//! | `dask_inprocess_results` | handle | status; each wanted key's outcome |
//! | `dask_inprocess_free` | handle | |
//! | `dask_codec` | op name, input | status; output |
//!
//! Each byte argument is two parameters, pointer and length; `now_ms` is
//! an f64; handles and connection numbers are u32. Status: [`STATUS_OK`],
//! [`STATUS_ERROR`] (the result holds a UTF-8 message) or
//! [`STATUS_REFUSED`] (the codec refused its input; the result holds JSON
//! `{code, error, message}`). The commands, replies and actions are
//! documented on [`client::ClientDriver`], [`worker::WorkerDriver`] and
//! [`inprocess::InProcessDriver`].
//!
//! Nothing here panics on input from JS or the network; a bug that does
//! traps the module (a `RuntimeError` in JS).
#![deny(missing_docs)]

pub mod client;
pub mod codec;
pub mod inprocess;
pub mod pack;
pub mod worker;

use std::alloc::Layout;
use std::cell::RefCell;

use slab::Slab;

use client::ClientDriver;
use inprocess::InProcessDriver;
use worker::WorkerDriver;

/// Bumped whenever an export or a command changes incompatibly; the JS
/// package refuses a module of another version.
pub const ABI_VERSION: u32 = 2;

/// The call succeeded.
pub const STATUS_OK: u32 = 0;
/// The call failed; the result holds a UTF-8 message.
pub const STATUS_ERROR: u32 = 1;
/// The codec refused its input; the result holds `{code, error, message}`.
pub const STATUS_REFUSED: u32 = 2;

thread_local! {
    static RESULT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static CLIENTS: RefCell<Slab<ClientDriver>> = const { RefCell::new(Slab::new()) };
    static WORKERS: RefCell<Slab<WorkerDriver>> = const { RefCell::new(Slab::new()) };
    static RUNS: RefCell<Slab<InProcessDriver>> = const { RefCell::new(Slab::new()) };
}

fn set_result(bytes: Vec<u8>) {
    RESULT.with(|r| *r.borrow_mut() = bytes);
}

fn finish(outcome: Result<Vec<u8>, String>) -> u32 {
    match outcome {
        Ok(bytes) => {
            set_result(bytes);
            STATUS_OK
        }
        Err(message) => {
            set_result(message.into_bytes());
            STATUS_ERROR
        }
    }
}

/// The bytes JS passed as (`ptr`, `len`).
///
/// # Safety
/// `ptr` must point to `len` readable bytes (or `len` be 0).
unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: the caller promises `len` readable bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

fn handle_key(handle: u32) -> Option<usize> {
    (handle as usize).checked_sub(1)
}

fn with_client<T>(handle: u32, f: impl FnOnce(&mut ClientDriver) -> T) -> Result<T, String> {
    CLIENTS.with(|c| {
        let mut clients = c.borrow_mut();
        handle_key(handle)
            .and_then(|k| clients.get_mut(k))
            .map(f)
            .ok_or_else(|| format!("no client with handle {handle}"))
    })
}

fn with_worker<T>(handle: u32, f: impl FnOnce(&mut WorkerDriver) -> T) -> Result<T, String> {
    WORKERS.with(|w| {
        let mut workers = w.borrow_mut();
        handle_key(handle)
            .and_then(|k| workers.get_mut(k))
            .map(f)
            .ok_or_else(|| format!("no worker with handle {handle}"))
    })
}

fn with_run<T>(handle: u32, f: impl FnOnce(&mut InProcessDriver) -> T) -> Result<T, String> {
    RUNS.with(|r| {
        let mut runs = r.borrow_mut();
        handle_key(handle)
            .and_then(|k| runs.get_mut(k))
            .map(f)
            .ok_or_else(|| format!("no in-process run with handle {handle}"))
    })
}

fn status(r: Result<(), String>) -> u32 {
    finish(r.map(|()| Vec::new()))
}

/// The ABI version ([`ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn dask_abi_version() -> u32 {
    ABI_VERSION
}

/// `len` bytes for JS to write an input into; 0 when out of memory.
#[no_mangle]
pub extern "C" fn dask_alloc(len: usize) -> *mut u8 {
    let Ok(layout) = Layout::array::<u8>(len.max(1)) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size.
    unsafe { std::alloc::alloc(layout) }
}

/// Frees memory from [`dask_alloc`].
///
/// # Safety
/// `ptr` must come from `dask_alloc(len)` and not be freed yet.
#[no_mangle]
pub unsafe extern "C" fn dask_dealloc(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    if let Ok(layout) = Layout::array::<u8>(len.max(1)) {
        // SAFETY: same pointer and layout as the allocation.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// Where the output of the last call starts.
#[no_mangle]
pub extern "C" fn dask_result_ptr() -> *const u8 {
    RESULT.with(|r| r.borrow().as_ptr())
}

/// How long the output of the last call is.
#[no_mangle]
pub extern "C" fn dask_result_len() -> usize {
    RESULT.with(|r| r.borrow().len())
}

/// A client session from its configuration map; 0 on failure.
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_client_new(ptr: *const u8, len: usize) -> u32 {
    // SAFETY: forwarded from the caller.
    match ClientDriver::new(unsafe { input(ptr, len) }) {
        Ok(driver) => CLIENTS.with(|c| c.borrow_mut().insert(driver) as u32 + 1),
        Err(e) => {
            set_result(e.into_bytes());
            0
        }
    }
}

/// Runs a client command ([`ClientDriver::command`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_client_command(handle: u32, ptr: *const u8, len: usize) -> u32 {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { input(ptr, len) };
    finish(with_client(handle, |c| c.command(bytes)).and_then(|r| r))
}

/// Bytes from the client's socket.
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_client_receive(handle: u32, ptr: *const u8, len: usize) -> u32 {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { input(ptr, len) };
    status(with_client(handle, |c| c.receive(bytes)))
}

/// The client's TLS socket's channel binding
/// ([`ClientDriver::channel_binding`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_client_channel_binding(
    handle: u32,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let binding = unsafe { input(ptr, len) };
    status(with_client(handle, |c| c.channel_binding(binding)).and_then(|r| r))
}

/// The client's socket closed, for the reason given (UTF-8).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_client_transport_closed(
    handle: u32,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let reason = String::from_utf8_lossy(unsafe { input(ptr, len) }).into_owned();
    status(with_client(handle, |c| c.transport_closed(&reason)))
}

/// What the client has to send and report ([`ClientDriver::drain`]).
#[no_mangle]
pub extern "C" fn dask_client_drain(handle: u32) -> u32 {
    finish(with_client(handle, |c| c.drain()))
}

/// Frees a client session; unknown handles are ignored.
#[no_mangle]
pub extern "C" fn dask_client_free(handle: u32) {
    CLIENTS.with(|c| {
        let mut clients = c.borrow_mut();
        if let Some(k) = handle_key(handle).filter(|k| clients.contains(*k)) {
            clients.remove(k);
        }
    });
}

/// A worker from its configuration map ([`WorkerDriver::new`]); 0 on failure.
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_new(ptr: *const u8, len: usize) -> u32 {
    // SAFETY: forwarded from the caller.
    match WorkerDriver::new(unsafe { input(ptr, len) }) {
        Ok(driver) => WORKERS.with(|w| w.borrow_mut().insert(driver) as u32 + 1),
        Err(e) => {
            set_result(e.into_bytes());
            0
        }
    }
}

/// A peer connected; its connection number, 0 when refused.
#[no_mangle]
pub extern "C" fn dask_worker_accept(handle: u32, now_ms: f64) -> u32 {
    with_worker(handle, |w| w.accept(now_ms)).unwrap_or(0)
}

/// Bytes from one of the worker's connections.
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_receive(
    handle: u32,
    conn: u32,
    now_ms: f64,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { input(ptr, len) };
    status(with_worker(handle, |w| w.receive(conn, now_ms, bytes)))
}

/// A TLS connection's channel binding ([`WorkerDriver::channel_binding`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_channel_binding(
    handle: u32,
    conn: u32,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let binding = unsafe { input(ptr, len) };
    status(with_worker(handle, |w| w.channel_binding(conn, binding)).and_then(|r| r))
}

/// One of the worker's connections closed or could not be opened.
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_conn_closed(
    handle: u32,
    conn: u32,
    now_ms: f64,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let reason = String::from_utf8_lossy(unsafe { input(ptr, len) }).into_owned();
    status(with_worker(handle, |w| {
        w.conn_closed(conn, now_ms, &reason)
    }))
}

/// Everything written on a connection has been flushed.
#[no_mangle]
pub extern "C" fn dask_worker_conn_drained(handle: u32, conn: u32) -> u32 {
    status(with_worker(handle, |w| w.conn_drained(conn)))
}

/// A run ended ([`WorkerDriver::task_done`]).
///
/// # Safety
/// Both (`ptr`, `len`) pairs must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_task_done(
    handle: u32,
    ptr: *const u8,
    len: usize,
    value_ptr: *const u8,
    value_len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let (command, value) = unsafe { (input(ptr, len), input(value_ptr, value_len)) };
    finish(
        with_worker(handle, |w| w.task_done(command, value))
            .and_then(|r| r)
            .map(|()| Vec::new()),
    )
}

/// Time passed for the worker.
#[no_mangle]
pub extern "C" fn dask_worker_tick(handle: u32, now_ms: f64) -> u32 {
    status(with_worker(handle, |w| w.tick(now_ms)))
}

/// The worker leaves the cluster.
#[no_mangle]
pub extern "C" fn dask_worker_stop(handle: u32, now_ms: f64) -> u32 {
    status(with_worker(handle, |w| w.stop(now_ms)))
}

/// The new data listener is bound at this address
/// ([`worker::WorkerDriver::listening`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_listening(
    handle: u32,
    now_ms: f64,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let address = String::from_utf8_lossy(unsafe { input(ptr, len) }).into_owned();
    status(with_worker(handle, |w| w.listening(now_ms, &address)))
}

/// The new data listener could not be bound
/// ([`worker::WorkerDriver::listen_failed`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_worker_listen_failed(
    handle: u32,
    now_ms: f64,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let error = String::from_utf8_lossy(unsafe { input(ptr, len) }).into_owned();
    status(with_worker(handle, |w| w.listen_failed(now_ms, &error)))
}

/// What the worker has to do ([`WorkerDriver::drain`]).
#[no_mangle]
pub extern "C" fn dask_worker_drain(handle: u32, now_ms: f64) -> u32 {
    finish(with_worker(handle, |w| w.drain(now_ms)))
}

/// Frees a worker; unknown handles are ignored.
#[no_mangle]
pub extern "C" fn dask_worker_free(handle: u32) {
    WORKERS.with(|w| {
        let mut workers = w.borrow_mut();
        if let Some(k) = handle_key(handle).filter(|k| workers.contains(*k)) {
            workers.remove(k);
        }
    });
}

/// An in-process run of a graph ([`InProcessDriver::new`]); 0 on failure.
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_inprocess_new(ptr: *const u8, len: usize, stop_on_error: u32) -> u32 {
    // SAFETY: forwarded from the caller.
    match InProcessDriver::new(unsafe { input(ptr, len) }, stop_on_error != 0) {
        Ok(driver) => RUNS.with(|r| r.borrow_mut().insert(driver) as u32 + 1),
        Err(refusal) => {
            set_result(refusal);
            0
        }
    }
}

/// The next task to run, or done ([`InProcessDriver::next_task`]).
#[no_mangle]
pub extern "C" fn dask_inprocess_next(handle: u32) -> u32 {
    finish(with_run(handle, |r| r.next_task()).and_then(|r| r))
}

/// The running task returned a value ([`InProcessDriver::finished`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_inprocess_finished(
    handle: u32,
    task: u32,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let value = unsafe { input(ptr, len) };
    status(with_run(handle, |r| r.finished(task, value)).and_then(|r| r))
}

/// The running task failed ([`InProcessDriver::failed`]).
///
/// # Safety
/// (`ptr`, `len`) must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_inprocess_failed(
    handle: u32,
    task: u32,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let error = unsafe { input(ptr, len) };
    status(with_run(handle, |r| r.failed(task, error)).and_then(|r| r))
}

/// Each wanted key's outcome ([`InProcessDriver::results`]).
#[no_mangle]
pub extern "C" fn dask_inprocess_results(handle: u32) -> u32 {
    finish(with_run(handle, |r| r.results()))
}

/// Frees an in-process run; unknown handles are ignored.
#[no_mangle]
pub extern "C" fn dask_inprocess_free(handle: u32) {
    RUNS.with(|r| {
        let mut runs = r.borrow_mut();
        if let Some(k) = handle_key(handle).filter(|k| runs.contains(*k)) {
            runs.remove(k);
        }
    });
}

/// Runs a codec operation ([`codec::run`]) named by the UTF-8 `op`.
///
/// # Safety
/// Both (`ptr`, `len`) pairs must be readable.
#[no_mangle]
pub unsafe extern "C" fn dask_codec(
    op_ptr: *const u8,
    op_len: usize,
    ptr: *const u8,
    len: usize,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let (op, bytes) = unsafe { (input(op_ptr, op_len), input(ptr, len)) };
    let op = String::from_utf8_lossy(op);
    match codec::run(&op, bytes) {
        Ok(out) => {
            set_result(out);
            STATUS_OK
        }
        Err(codec::CodecError::Request(m)) => {
            set_result(m.into_bytes());
            STATUS_ERROR
        }
        Err(e) => {
            set_result(serde_json::to_vec(&e.to_json()).unwrap_or_default());
            STATUS_REFUSED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> Vec<u8> {
        // SAFETY: the result buffer is valid until the next call.
        unsafe { input(dask_result_ptr(), dask_result_len()).to_vec() }
    }

    #[test]
    fn handles_are_checked_and_memory_round_trips() {
        assert_eq!(dask_client_drain(0), STATUS_ERROR);
        assert_eq!(dask_client_drain(99), STATUS_ERROR);
        assert!(String::from_utf8(result()).unwrap().contains("no client"));
        let p = dask_alloc(16);
        assert!(!p.is_null());
        // SAFETY: p came from dask_alloc(16).
        unsafe { dask_dealloc(p, 16) };
        // SAFETY: a zero-length input needs no memory.
        let h = unsafe { dask_client_new(std::ptr::null(), 0) };
        assert_eq!(h, 0, "an empty config is not a map");
        let config = pack::string_map(&[("name", "t")]);
        // SAFETY: config is readable.
        let h = unsafe { dask_client_new(config.as_ptr(), config.len()) };
        assert!(h > 0);
        assert_eq!(dask_client_drain(h), STATUS_OK);
        dask_client_free(h);
        dask_client_free(h);
        assert_eq!(dask_client_drain(h), STATUS_ERROR);
    }

    #[test]
    fn codec_statuses() {
        let op = b"value_decode";
        // SAFETY: both buffers are readable.
        let s = unsafe { dask_codec(op.as_ptr(), op.len(), [0xc1u8].as_ptr(), 1) };
        assert_eq!(s, STATUS_REFUSED);
        let v: serde_json::Value = serde_json::from_slice(&result()).unwrap();
        assert_eq!(v["code"], 1001);
    }
}
