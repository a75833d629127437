//! dask-client errors as the Python exceptions of `dask_rs._errors`.

use dask_client::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

static FROM_NATIVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The Python exception for `error` (built by `dask_rs._errors.from_native`,
/// so that a remote `ZeroDivisionError` is also caught as one).
pub fn to_pyerr(py: Python<'_>, error: Error) -> PyErr {
    match build(py, &error) {
        Ok(e) => e,
        Err(e) => e,
    }
}

fn build(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let fields = PyDict::new(py);
    let kind = match error {
        Error::Remote {
            key,
            error_type,
            message,
            traceback,
            cause,
        } => {
            fields.set_item("key", key.as_str())?;
            fields.set_item("error_type", error_type)?;
            fields.set_item("message", message)?;
            fields.set_item("traceback", traceback)?;
            fields.set_item("cause", cause.as_ref().map(|k| k.as_str()))?;
            "remote"
        }
        Error::Cancelled { key } => {
            fields.set_item("key", key.as_str())?;
            "cancelled"
        }
        Error::Lost { key, message } => {
            fields.set_item("key", key.as_str())?;
            fields.set_item("message", message)?;
            "lost"
        }
        Error::Refused {
            code,
            name,
            message,
        } => {
            fields.set_item("code", code)?;
            fields.set_item("name", name)?;
            fields.set_item("message", message)?;
            "refused"
        }
        Error::Timeout => "timeout",
        Error::Connection(m) | Error::Graph(m) | Error::Decode(m) => {
            fields.set_item("message", m)?;
            match error {
                Error::Connection(_) => "connection",
                Error::Graph(_) => "graph",
                _ => "decode",
            }
        }
    };
    fields.set_item("text", error.to_string())?;
    let from_native = FROM_NATIVE.import(py, "dask_rs._errors", "from_native")?;
    let exception = from_native.call1((kind, fields))?;
    Ok(PyErr::from_value(exception))
}

/// A Rust io error (starting a worker or scheduler) as `OSError`.
pub fn io_error(e: std::io::Error) -> PyErr {
    PyErr::from(e)
}
