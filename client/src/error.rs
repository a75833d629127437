//! The client's one error type.

use std::fmt;

use dask_core::client::{KeyState, RequestError};
use dask_core::Key;

/// Everything a client call can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The task (or one it depends on) raised an error on a worker.
    Remote {
        /// The key whose result was asked for.
        key: Key,
        /// The remote error's type, e.g. "ZeroDivisionError".
        error_type: String,
        /// The remote error's message.
        message: String,
        /// The remote traceback, possibly empty.
        traceback: String,
        /// The key whose task raised the error, when not `key`.
        cause: Option<Key>,
    },
    /// The key was cancelled.
    Cancelled {
        /// The key.
        key: Key,
    },
    /// The key's data is gone and cannot be recomputed.
    Lost {
        /// The key.
        key: Key,
        /// Why.
        message: String,
    },
    /// The scheduler refused a request (e.g. unknown-key, duplicate-key,
    /// cycle, unknown-dataset, no-workers).
    Refused {
        /// The dask/1 error code.
        code: u32,
        /// The code's short name, when known.
        name: Option<&'static str>,
        /// The scheduler's message.
        message: String,
    },
    /// Could not connect, or the connection closed or broke the protocol.
    Connection(String),
    /// A graph or argument could not be built or read.
    Graph(String),
    /// A value came back that could not be decoded.
    Decode(String),
    /// The wait ran out of time.
    Timeout,
}

impl Error {
    /// The error a key in a terminal, non-finished state stands for.
    /// `None` for pending or finished keys.
    pub fn from_key_state(key: &Key, state: &KeyState) -> Option<Error> {
        Some(match state {
            KeyState::Pending | KeyState::Finished { .. } => return None,
            KeyState::Erred(f) => Error::Remote {
                key: key.clone(),
                error_type: f.error_type.clone(),
                message: f.message.clone(),
                traceback: f.traceback.clone(),
                cause: f.cause.clone(),
            },
            KeyState::Cancelled => Error::Cancelled { key: key.clone() },
            KeyState::Lost { message } => Error::Lost {
                key: key.clone(),
                message: message.clone(),
            },
            KeyState::Failed(e) => Error::from_request(e),
        })
    }

    /// The error for a failed request.
    pub fn from_request(e: &RequestError) -> Error {
        match e.code {
            Some(code) => Error::Refused {
                code,
                name: e.code_name(),
                message: e.message.clone(),
            },
            None => Error::Connection(e.message.clone()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote {
                key,
                error_type,
                message,
                cause,
                ..
            } => {
                write!(f, "RemoteError: {error_type}: {message}")?;
                match cause {
                    Some(c) if c != key => write!(f, " (raised by {c})"),
                    _ => Ok(()),
                }
            }
            Error::Cancelled { key } => write!(f, "CancelledError: {key}"),
            Error::Lost { key, message } => write!(f, "LostError: {key}: {message}"),
            Error::Refused {
                code,
                name,
                message,
            } => match name {
                Some(name) => write!(f, "refused by the scheduler ({name}, {code}): {message}"),
                None => write!(f, "refused by the scheduler ({code}): {message}"),
            },
            Error::Connection(m) => write!(f, "connection error: {m}"),
            Error::Graph(m) => write!(f, "graph error: {m}"),
            Error::Decode(m) => write!(f, "cannot decode a result: {m}"),
            Error::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Connection(e.to_string())
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
