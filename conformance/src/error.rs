//! The crate's one error type.

use std::fmt;

/// A problem with case files, the command line or the runner's own I/O
/// (not a worker's failure: that is a case outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What was expected and what came.
    pub message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
