//! Why keys wait, and progress: the dask/1.1 `key-waiting` event (kept on
//! the key until it leaves pending, and reported as an event), the
//! `waiting-keys` request, and the counts of a set of keys by state that
//! progress bars draw.

use super::events::{ClientEvent, KeyState, RequestError, RequestId};
use super::{ClientSession, Pending};
use crate::handshake;
use crate::messages::{KeyWaiting, WaitingKeys, WaitingKeysReply};
use crate::wire::Key;
use crate::Message;

/// Why a pending key cannot progress, as the scheduler said
/// (`key-waiting`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `no-workers`, `no-function`, `no-allowed-worker`, `no-resources`
    /// (or a code of a later version).
    pub reason: String,
    /// The same, for people.
    pub message: String,
    /// The task that cannot run, when not the key's own.
    pub task: Option<Key>,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.task {
            Some(task) => write!(f, "{task}, which it needs, cannot run: {}", self.message),
            None => write!(f, "it cannot run: {}", self.message),
        }
    }
}

/// Counts of a set of keys by state (each key counted once per time it is
/// listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Keys counted.
    pub total: u64,
    /// Finished: the result is in memory.
    pub finished: u64,
    /// Erred (the task or one it needs failed).
    pub erred: u64,
    /// Cancelled, lost, or whose request failed.
    pub failed: u64,
    /// Not done yet (`waiting` of them cannot run now).
    pub pending: u64,
    /// Pending keys the scheduler said cannot run on any connected worker.
    pub waiting: u64,
}

impl Progress {
    /// Keys that will change no more: finished, erred or failed.
    pub fn done(&self) -> u64 {
        self.finished + self.erred + self.failed
    }
}

impl ClientSession {
    /// Why `key` waits, when the scheduler said (dask/1.1 `key-waiting`);
    /// cleared when the key leaves pending.
    pub fn waiting(&self, key: &str) -> Option<&Waiting> {
        self.keys.get(key)?.waiting.as_deref()
    }

    /// Counts of `keys` by state, from what this session knows (keys it
    /// does not hold count as failed).
    pub fn progress<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) -> Progress {
        let mut p = Progress::default();
        for key in keys {
            p.total += 1;
            match self.keys.get(key) {
                None => p.failed += 1,
                Some(e) => match &e.state {
                    KeyState::Pending => {
                        p.pending += 1;
                        p.waiting += u64::from(e.waiting.is_some());
                    }
                    KeyState::Finished { .. } => p.finished += 1,
                    KeyState::Erred(_) => p.erred += 1,
                    KeyState::Cancelled | KeyState::Lost { .. } | KeyState::Failed(_) => {
                        p.failed += 1
                    }
                },
            }
        }
        p
    }

    /// Whether the scheduler agreed to the feature `key-waiting`.
    pub fn has_key_waiting(&self) -> bool {
        self.negotiated
            .as_ref()
            .is_some_and(|n| n.features.iter().any(|f| f == handshake::KEY_WAITING))
    }

    /// Asks for one page of the tasks that wait on the scheduler, with why
    /// (`waiting-keys`); the answer is [`ClientEvent::WaitingKeys`]. Fails
    /// at once (as [`ClientEvent::RequestFailed`]) when the scheduler did
    /// not agree to the feature `key-waiting` (a dask/1.0 scheduler).
    pub fn waiting_keys(
        &mut self,
        state: Option<&str>,
        cursor: u64,
        limit: Option<u32>,
    ) -> RequestId {
        if !self.has_key_waiting() && !self.is_closed() {
            let request = RequestId(self.next_request);
            self.next_request += 1;
            let error = RequestError::local(
                "the scheduler does not list the feature key-waiting (a dask/1.0 scheduler, or \
                 the handshake is not done): it cannot list waiting tasks",
            );
            self.events
                .push_back(ClientEvent::RequestFailed { request, error });
            return request;
        }
        let state = state.map(str::to_owned);
        self.ask(Pending::WaitingKeys, |request| {
            Message::WaitingKeys(WaitingKeys {
                request,
                state,
                cursor: (cursor > 0).then_some(cursor),
                limit,
            })
        })
    }

    pub(super) fn handle_key_waiting(&mut self, m: KeyWaiting) {
        let Some(e) = self.keys.get_mut(&m.key) else {
            return;
        };
        if e.state != KeyState::Pending {
            return;
        }
        let waiting = Waiting {
            reason: m.reason,
            message: m.message,
            task: m.task,
        };
        e.waiting = Some(Box::new(waiting.clone()));
        self.events.push_back(ClientEvent::KeyWaiting {
            key: m.key,
            waiting,
        });
    }

    pub(super) fn handle_waiting_keys_reply(&mut self, m: WaitingKeysReply) {
        self.answer(RequestId(m.request), |kind, request| {
            matches!(kind, Pending::WaitingKeys).then_some(ClientEvent::WaitingKeys {
                request,
                tasks: m.tasks,
                next: m.next,
            })
        });
    }
}
