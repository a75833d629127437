//! Status codes and error objects: how every fallible call reports.

use std::ffi::{c_char, CString};

/// What a fallible call did. `DASK_OK` (0) is success, anything else a
/// failure (except `DASK_DONE`, which ends an iteration). Values are fixed:
/// new codes are only ever added.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum dask_result {
    /// Success.
    DASK_OK = 0,
    /// A required pointer argument was NULL.
    DASK_NULL_PARAMETER = 1,
    /// An argument has an unusable value (invalid UTF-8, a bad address, a
    /// bad key, args that are not an array, a future of another client...).
    DASK_INVALID_ARGUMENT = 2,
    /// Bytes that should hold one msgpack value do not.
    DASK_INVALID_MSGPACK = 3,
    /// A value is not of the type asked for (e.g. dask_value_as_int on a string).
    DASK_WRONG_TYPE = 4,
    /// A number or an index is outside the range asked for.
    DASK_OUT_OF_RANGE = 5,
    /// A map has no entry of that key.
    DASK_NOT_FOUND = 6,
    /// Could not connect, or the connection closed or broke the protocol.
    DASK_CONNECTION = 7,
    /// The wait ran out of time.
    DASK_TIMEOUT = 8,
    /// The task (or one it depends on) raised an error, on a worker or in
    /// this process (dask_delayed_compute_in_process); see
    /// dask_error_remote_type() and dask_error_remote_message().
    DASK_REMOTE_ERROR = 9,
    /// The key was cancelled.
    DASK_CANCELLED = 10,
    /// The key's data is gone and cannot be recomputed.
    DASK_LOST = 11,
    /// The scheduler refused a request (unknown key, duplicate key, cycle,
    /// no workers...), or refused a worker (its name in use, another
    /// protocol version...); or a graph computed in this process was refused
    /// for the same reasons.
    DASK_REFUSED = 12,
    /// The handle was closed (dask_client_close) and can only be freed.
    DASK_CLOSED = 13,
    /// A local operating system call failed (e.g. binding a port).
    DASK_IO = 14,
    /// Not a failure: an iteration has nothing more to give.
    DASK_DONE = 15,
    /// A bug inside the library was caught at the ABI boundary (a Rust
    /// panic). The handle involved may be unusable; please report it.
    DASK_PANIC = 16,
}

/// A failure's code and message, returned through an optional
/// `dask_error **err` parameter. Free with dask_error_free().
pub struct dask_error {
    code: dask_result,
    message: CString,
    remote_type: Option<CString>,
    remote_message: Option<CString>,
}

/// Inside the library: a failed call, before it becomes a [`dask_error`].
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: dask_result,
    pub(crate) message: String,
    /// (error_type, message) of a remote task error.
    pub(crate) remote: Option<(String, String)>,
}

/// What a function body returns inside the panic boundary.
pub(crate) type Fallible<T = ()> = Result<T, Failure>;

impl Failure {
    pub(crate) fn new(code: dask_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            remote: None,
        }
    }

    pub(crate) fn null(what: &str) -> Failure {
        Failure::new(
            dask_result::DASK_NULL_PARAMETER,
            format!("`{what}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(dask_result::DASK_INVALID_ARGUMENT, message)
    }

    pub(crate) fn wrong_type(expected: &str, got: &str) -> Failure {
        Failure::new(
            dask_result::DASK_WRONG_TYPE,
            format!("expected {expected}, got {got}"),
        )
    }

    pub(crate) fn done() -> Failure {
        Failure::new(dask_result::DASK_DONE, "nothing left")
    }
}

impl From<dask_client::Error> for Failure {
    fn from(e: dask_client::Error) -> Failure {
        use dask_client::Error as E;
        use dask_result::*;
        let code = match &e {
            E::Remote { .. } => DASK_REMOTE_ERROR,
            E::Cancelled { .. } => DASK_CANCELLED,
            E::Lost { .. } => DASK_LOST,
            E::Refused { .. } => DASK_REFUSED,
            E::Connection(_) => DASK_CONNECTION,
            E::Graph(_) => DASK_INVALID_ARGUMENT,
            E::Decode(_) => DASK_INVALID_MSGPACK,
            E::Timeout => DASK_TIMEOUT,
        };
        let remote = match &e {
            E::Remote {
                error_type,
                message,
                ..
            } => Some((error_type.clone(), message.clone())),
            _ => None,
        };
        Failure {
            code,
            message: e.to_string(),
            remote,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        use std::io::ErrorKind as K;
        let code = match e.kind() {
            K::InvalidInput => dask_result::DASK_INVALID_ARGUMENT,
            K::TimedOut => dask_result::DASK_TIMEOUT,
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::AddrNotAvailable => dask_result::DASK_CONNECTION,
            _ => dask_result::DASK_IO,
        };
        Failure::new(code, e.to_string())
    }
}

/// A C string of `text`; a NUL inside (which C cannot show) becomes U+FFFD.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

impl dask_error {
    pub(crate) fn from_failure(function: &str, f: Failure) -> dask_error {
        dask_error {
            code: f.code,
            message: c_string(&format!("{function}: {}", f.message)),
            remote_type: f.remote.as_ref().map(|(t, _)| c_string(t)),
            remote_message: f.remote.as_ref().map(|(_, m)| c_string(m)),
        }
    }
}

/// The error's message: which function failed and why, e.g.
/// `dask_client_connect: connection error: cannot connect to tcp://127.0.0.1:1: Connection refused`.
/// Borrowed from `err`, valid until dask_error_free(err). NULL `err` gives "".
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_error_message(err: *const dask_error) -> *const c_char {
    crate::ffi::guard(c"".as_ptr(), || match unsafe { err.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// The error's code (never DASK_OK for an error the library made; DASK_OK for NULL).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_error_code(err: *const dask_error) -> dask_result {
    crate::ffi::guard(dask_result::DASK_PANIC, || match unsafe { err.as_ref() } {
        Some(e) => e.code,
        None => dask_result::DASK_OK,
    })
}

/// For DASK_REMOTE_ERROR: the remote error's type, e.g. "ZeroDivisionError"
/// or the type a C function gave dask_task_output_set_error(). NULL for
/// other errors. Borrowed from `err`. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_error_remote_type(err: *const dask_error) -> *const c_char {
    crate::ffi::guard(std::ptr::null(), || {
        unsafe { err.as_ref() }
            .and_then(|e| e.remote_type.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// For DASK_REMOTE_ERROR: the remote error's own message (without the
/// function name and type that dask_error_message() adds). NULL for other
/// errors. Borrowed from `err`. Thread-safe.
#[no_mangle]
pub extern "C" fn dask_error_remote_message(err: *const dask_error) -> *const c_char {
    crate::ffi::guard(std::ptr::null(), || {
        unsafe { err.as_ref() }
            .and_then(|e| e.remote_message.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Frees an error. NULL is a no-op. Not thread-safe with other calls on `err`.
#[no_mangle]
pub extern "C" fn dask_error_free(err: *mut dask_error) {
    crate::ffi::free_box(err);
}

/// The name of a status code as a static string, e.g. "DASK_TIMEOUT"
/// ("DASK_UNKNOWN_RESULT" for a value that is not a code). Never freed.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dask_result_name(result: u32) -> *const c_char {
    use dask_result::*;
    const NAMES: [(dask_result, &std::ffi::CStr); 17] = [
        (DASK_OK, c"DASK_OK"),
        (DASK_NULL_PARAMETER, c"DASK_NULL_PARAMETER"),
        (DASK_INVALID_ARGUMENT, c"DASK_INVALID_ARGUMENT"),
        (DASK_INVALID_MSGPACK, c"DASK_INVALID_MSGPACK"),
        (DASK_WRONG_TYPE, c"DASK_WRONG_TYPE"),
        (DASK_OUT_OF_RANGE, c"DASK_OUT_OF_RANGE"),
        (DASK_NOT_FOUND, c"DASK_NOT_FOUND"),
        (DASK_CONNECTION, c"DASK_CONNECTION"),
        (DASK_TIMEOUT, c"DASK_TIMEOUT"),
        (DASK_REMOTE_ERROR, c"DASK_REMOTE_ERROR"),
        (DASK_CANCELLED, c"DASK_CANCELLED"),
        (DASK_LOST, c"DASK_LOST"),
        (DASK_REFUSED, c"DASK_REFUSED"),
        (DASK_CLOSED, c"DASK_CLOSED"),
        (DASK_IO, c"DASK_IO"),
        (DASK_DONE, c"DASK_DONE"),
        (DASK_PANIC, c"DASK_PANIC"),
    ];
    NAMES
        .iter()
        .find(|(code, _)| *code as u32 == result)
        .map_or(c"DASK_UNKNOWN_RESULT".as_ptr(), |(_, name)| name.as_ptr())
}
