//! What the worker hands its executor and gets back: jobs, completions and task errors.

use std::fmt;
use std::sync::Arc;

use crate::{Key, RawValue};

/// A failed task, as reported in `task-erred`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The error's type, e.g. "TypeError" (Python's names where they fit).
    pub error_type: String,
    /// What went wrong, for people.
    pub message: String,
    /// Traceback text, possibly empty.
    pub traceback: String,
}

impl TaskError {
    /// An error of `error_type` with `message` and no traceback.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> TaskError {
        TaskError {
            error_type: error_type.into(),
            message: message.into(),
            traceback: String::new(),
        }
    }

    /// The same error with a traceback.
    pub fn with_traceback(mut self, traceback: impl Into<String>) -> TaskError {
        self.traceback = traceback.into();
        self
    }

    /// An argument has the wrong type or the wrong count of arguments came.
    pub fn type_error(message: impl Into<String>) -> TaskError {
        Self::new("TypeError", message)
    }

    /// An argument has the right type but an unusable value.
    pub fn value_error(message: impl Into<String>) -> TaskError {
        Self::new("ValueError", message)
    }

    /// Integer arithmetic left the signed 64-bit range.
    pub fn overflow_error(message: impl Into<String>) -> TaskError {
        Self::new("OverflowError", message)
    }

    /// An index outside a sequence.
    pub fn index_error(message: impl Into<String>) -> TaskError {
        Self::new("IndexError", message)
    }

    /// A key absent from a map.
    pub fn key_error(message: impl Into<String>) -> TaskError {
        Self::new("KeyError", message)
    }

    /// The worker does not offer the function a task names.
    pub fn unknown_function(name: &str) -> TaskError {
        Self::new(
            "UnknownFunction",
            format!("this worker has no function named {name:?}"),
        )
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for TaskError {}

/// A task handed to the executor. Its key is not in it: no executor
/// needs one, and a copy per run was ~4% of a short task's work on the
/// worker ([`WorkerState::run_key`] finds it while the run is out).
///
/// [`WorkerState::run_key`]: super::WorkerState::run_key
#[derive(Debug, Clone)]
pub struct Job {
    /// Identifies this run; the completion names it.
    pub run_id: u64,
    /// The task's priority: the executor starts queued jobs highest first.
    pub priority: i64,
    /// The task's arrival number: among equal priorities, lowest first.
    pub seq: u64,
    /// The function to call.
    pub function: String,
    /// Positional arguments, task references still inside.
    pub args: RawValue,
    /// Keyword arguments, if any.
    pub kwargs: Option<RawValue>,
    /// The value of every key referenced in args or kwargs.
    pub deps: Vec<(Key, Arc<RawValue>)>,
}

/// A finished run, from the executor.
#[derive(Debug, Clone)]
pub struct TaskDone {
    /// The [`Job::run_id`].
    pub run_id: u64,
    /// The encoded result or the error.
    pub result: Result<RawValue, TaskError>,
    /// Wall time the function ran.
    pub duration_us: u64,
}
