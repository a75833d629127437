//! The crate's one error type.

use std::fmt;

use dask_core::worker::TaskError;
use dask_core::Key;

use crate::plan::GraphError;

/// Why a wanted key has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The key's task failed, or one it depends on did.
    Task {
        /// The wanted key.
        key: Key,
        /// The error, as a worker would report it.
        error: TaskError,
        /// The key of the task that failed, when not `key`.
        cause: Option<Key>,
    },
    /// The run was cancelled (or stopped at another key's error) before
    /// the key's task ran.
    Cancelled {
        /// The wanted key.
        key: Key,
    },
    /// The graph was refused before anything ran.
    Graph(GraphError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Task { key, error, cause } => {
                write!(f, "{key}: {}: {}", error.error_type, error.message)?;
                match cause {
                    Some(c) => write!(f, " (raised by {c})"),
                    None => Ok(()),
                }
            }
            Error::Cancelled { key } => write!(f, "{key}: cancelled before it ran"),
            Error::Graph(e) => write!(f, "graph refused ({}): {e}", e.code.name()),
        }
    }
}

impl std::error::Error for Error {}

impl From<GraphError> for Error {
    fn from(e: GraphError) -> Error {
        Error::Graph(e)
    }
}
