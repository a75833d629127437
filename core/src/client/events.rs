//! What the session reports: request ids and errors, key states and the
//! events a driver drains with `poll_event`.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ErrorCode;
use crate::messages::{ClusterInfoReply, WaitingKey};
use crate::msgpack::RawValue;
use crate::wire::Key;

/// Identifies one request of this session; echoed by the scheduler in its
/// reply or error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a request failed: an `error` reply from the scheduler (with its
/// code), or a local reason (no code): the connection closed, or the
/// message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The dask/1 error code, when the scheduler (or the frame encoder) gave one.
    pub code: Option<u32>,
    /// What went wrong.
    pub message: String,
}

impl RequestError {
    /// The code's short name (e.g. `unknown-key`), when it is a known code.
    pub fn code_name(&self) -> Option<&'static str> {
        self.code
            .and_then(ErrorCode::from_number)
            .map(ErrorCode::name)
    }

    pub(super) fn local(message: impl Into<String>) -> Self {
        RequestError {
            code: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.code_name()) {
            (Some(_), Some(name)) => write!(f, "{name}: {}", self.message),
            (Some(code), None) => write!(f, "error {code}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// A task's failure as reported in `key-erred`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The remote error's type, e.g. "ZeroDivisionError".
    pub error_type: String,
    /// The remote error's message.
    pub message: String,
    /// The remote traceback text, possibly empty.
    pub traceback: String,
    /// The key whose task raised the error, when not this one.
    pub cause: Option<Key>,
}

/// What this client knows about a key it holds futures for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Not finished yet (or not yet known to have finished).
    Pending,
    /// The result is in memory on a worker.
    Finished {
        /// Size of the result's msgpack encoding.
        nbytes: u64,
    },
    /// The task, or one it depends on, failed.
    Erred(TaskFailure),
    /// The key was cancelled.
    Cancelled,
    /// The key's data is gone and cannot be recomputed.
    Lost {
        /// Why, for people.
        message: String,
    },
    /// The request that wanted the key failed (the graph was refused, the
    /// scatter had no worker) or the connection closed before it finished.
    Failed(RequestError),
}

impl KeyState {
    /// Whether no more events are expected (anything but `Pending`).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, KeyState::Pending)
    }

    /// A short name: pending, finished, erred, cancelled, lost, failed.
    pub fn name(&self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Finished { .. } => "finished",
            KeyState::Erred(_) => "erred",
            KeyState::Cancelled => "cancelled",
            KeyState::Lost { .. } => "lost",
            KeyState::Failed(_) => "failed",
        }
    }
}

/// What the session reports to its driver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The scheduler accepted the handshake.
    Connected {
        /// The id the scheduler gave this client.
        client_id: Option<u64>,
    },
    /// A held key changed state.
    KeyUpdated {
        /// The key.
        key: Key,
        /// Its new state.
        state: KeyState,
    },
    /// The answer to [`ClientSession::gather`](super::ClientSession::gather).
    Gathered {
        /// The request.
        request: RequestId,
        /// Values by key.
        data: BTreeMap<Key, RawValue>,
        /// Keys not in memory anywhere.
        missing: Vec<Key>,
        /// dask/1.1: the scheduler state of each missing key (one being
        /// computed again is `waiting`, `processing`...; one gone is
        /// `forgotten` or `erred`). `None` from a dask/1.0 scheduler.
        status: Option<BTreeMap<Key, String>>,
    },
    /// The answer to [`ClientSession::who_has`](super::ClientSession::who_has).
    WhoHas {
        /// The request.
        request: RequestId,
        /// Data addresses of the holders of each key.
        who_has: BTreeMap<Key, Vec<String>>,
        /// dask/1.1: the scheduler state of each key (`forgotten` when it
        /// keeps no task of that key). `None` from a dask/1.0 scheduler.
        status: Option<BTreeMap<Key, String>>,
    },
    /// The answer to [`ClientSession::cluster_info`](super::ClientSession::cluster_info).
    ClusterInfo {
        /// The request.
        request: RequestId,
        /// The scheduler's description of the cluster.
        info: ClusterInfoReply,
    },
    /// The answer to [`ClientSession::get_dataset`](super::ClientSession::get_dataset). The session now holds
    /// one reference to each key (the driver owns them: wrap each in a
    /// handle, or [`ClientSession::release`](super::ClientSession::release) it).
    Dataset {
        /// The request.
        request: RequestId,
        /// The dataset's name.
        name: String,
        /// Its keys.
        keys: Vec<Key>,
    },
    /// The answer to [`ClientSession::list_datasets`](super::ClientSession::list_datasets).
    Datasets {
        /// The request.
        request: RequestId,
        /// Dataset names, sorted.
        names: Vec<String>,
    },
    /// A request that answers with `ok` succeeded (publish, unpublish, a
    /// [`ClientSession::barrier`](super::ClientSession::barrier)).
    Done {
        /// The request.
        request: RequestId,
    },
    /// A request that expects a reply failed. (A failed submit or scatter
    /// shows as [`KeyState::Failed`] on its keys instead.)
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        error: RequestError,
    },
    /// A held, pending key cannot progress: a task it needs cannot run on
    /// any connected worker (dask/1.1 `key-waiting`; once per want). It
    /// stays pending and runs when a suitable worker joins.
    KeyWaiting {
        /// The key.
        key: Key,
        /// Why.
        waiting: super::Waiting,
    },
    /// The answer to [`ClientSession::waiting_keys`](super::ClientSession::waiting_keys).
    WaitingKeys {
        /// The request.
        request: RequestId,
        /// The tasks of this page, with why each waits.
        tasks: Vec<WaitingKey>,
        /// The cursor of the next page; `None` at the end.
        next: Option<u64>,
    },
    /// A non-fatal `error` from the scheduler that names no request of ours.
    ServerError(RequestError),
    /// The session is over; every later request fails at once.
    Closed {
        /// Why, for people.
        reason: String,
    },
}
