//! The scheduler's peers: connections as far as their handshake got,
//! registered workers and connected clients.

use std::collections::VecDeque;

use dask_core::auth::{AcceptorAuth, CHANNEL_BINDING_BYTES};
use dask_core::messages::{Metrics, Resources};
use dask_core::{ConnId, Timestamp};

use super::observe::{self, GroupId};
use super::{TaskId, WorkerIdx};

/// A registered worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) conn: ConnId,
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) nthreads: u32,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) resources: Resources,
    /// The functions it offers, sorted by [`placement::function_order`](super::placement::function_order)
    /// and without duplicates: a name not shared is looked up here (see
    /// [`Worker::offers`]).
    pub(crate) functions: Vec<String>,
    /// The functions it offers among the shared names
    /// (`SchedulerState::shared_function`): bit `i % 64` of word `i / 64`
    /// for the name of index `i`.
    pub(crate) offered: Vec<u64>,
    pub(crate) function_list: Vec<String>,
    /// The tasks processing on it. Sets of foldhash, as `has_what`: one
    /// insertion and one removal a task, where B-tree searches were ~8%
    /// of the instructions per task; where their order reaches messages
    /// they are sorted first.
    pub(crate) processing: foldhash::HashSet<TaskId>,
    /// The tasks last sent to it to compute, oldest first, with their
    /// keys' hash bits (at most [`SENT_HINTS_MAX`](super::SENT_HINTS_MAX)): where its
    /// `task-finished` looks first (see `SchedulerState::finished_task`).
    /// A hint, not a record: an entry may be stale (the task stolen,
    /// freed, even forgotten), so a key found here is compared first.
    pub(crate) sent: VecDeque<(u32, TaskId)>,
    pub(crate) has_what: foldhash::HashSet<TaskId>,
    pub(crate) stored_bytes: u64,
    /// Moving average of the task durations it reported.
    pub(crate) average_duration_us: Option<f64>,
    /// How many of its processing tasks are in each task group: its
    /// occupancy follows the groups' estimates as they change.
    pub(crate) processing_groups: Vec<(GroupId, u32)>,
    /// Tasks freed while processing here, which may still hold a thread
    /// (the worker does not say when such a run ends), since its last
    /// result; see placement.
    pub(crate) abandoned: u32,
    /// What its last heartbeat said of its load and memory.
    pub(crate) metrics: Option<Metrics>,
    /// The transfer totals its heartbeats told since it registered.
    pub(crate) transfers: observe::TransferTotals,
    /// Its last heartbeat said it is paused (dask/1.1): no task is placed
    /// on it (see [`pause`](super::pause)).
    pub(crate) paused: bool,
    /// Since when it has been paused and unable to spill: it can run
    /// nothing until it recovers (see [`pause`](super::pause)).
    pub(crate) stuck_since: Option<Timestamp>,
    /// Stuck for longer than `spill_failed_timeout`: tasks only it could
    /// run err with `SpillFailed`.
    pub(crate) stuck_for_good: bool,
}

/// How a connection ended: a worker that said `close` left on purpose;
/// one whose connection dropped, timed out or broke the protocol was lost,
/// and its processing tasks count it against their allowed failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    Closed,
    Lost,
    /// Lost: silent for the heartbeat timeout.
    TimedOut,
}

/// What a connection is, as far as the handshake got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    AwaitingHello,
    /// Replied to the hello; its `auth-proof` is due (and nothing else).
    AwaitingProof,
    Client,
    /// A worker; `None` until it registered.
    Worker(Option<WorkerIdx>),
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) peer: Peer,
    pub(crate) id: u64,
    pub(crate) connected_at: Timestamp,
    pub(crate) last_seen: Timestamp,
    /// Its TLS channel binding, which proofs cover.
    pub(crate) channel_binding: Option<[u8; CHANNEL_BINDING_BYTES]>,
    /// The proof it owes, while [`Peer::AwaitingProof`].
    pub(crate) auth: Option<Box<AcceptorAuth>>,
    /// The version negotiated in its hello has dask/1.1's additions.
    pub(crate) v1_1: bool,
    /// Both sides listed the feature `key-waiting` in their hellos.
    pub(crate) key_waiting: bool,
    /// Both sides listed the feature `value-parts`: values too large for a
    /// frame go to it in parts.
    pub(crate) value_parts: bool,
    /// Both sides listed the feature `value-ranges`: a worker that answers
    /// `get-value-range`, so gathers relay its large values a range at a
    /// time ([`relay`](super::relay)).
    pub(crate) value_ranges: bool,
    /// The name in its hello, for the dashboard and the log.
    pub(crate) name: Option<String>,
    /// A client's session token, told in the hello reply: the detached
    /// session its hello asked to resume (dask/1.1), or a new one.
    pub(crate) session: Option<String>,
}

/// A connected client.
#[derive(Debug, Default)]
pub(crate) struct Client {
    /// Wanted tasks. A foldhash map: looked up several times a task
    /// (B-tree searches were ~4% of the instructions per task); where the
    /// order reaches messages or the journal, it is the tasks' order
    /// ([`Client::wanted_in_order`]).
    pub(crate) wants: foldhash::HashMap<TaskId, Want>,
    /// It speaks dask/1.1: its events carry their want's request, its
    /// `who-has` and `gather` replies the keys' states, and `ack` gets `ok`.
    pub(crate) v1_1: bool,
    /// It negotiated the feature `key-waiting`: it gets `key-waiting`
    /// events and may send `waiting-keys`.
    pub(crate) key_waiting: bool,
    /// It negotiated the feature `value-parts`: a `gather-reply` too large
    /// for a frame goes to it (its values in parts) rather than 5002.
    pub(crate) value_parts: bool,
    /// Its session token (see [`durable`](super::durable)).
    pub(crate) session: String,
}

impl Client {
    /// Its wanted tasks, in the order of their ids.
    pub(crate) fn wanted_in_order(&self) -> Vec<TaskId> {
        let mut wanted: Vec<TaskId> = self.wants.keys().copied().collect();
        wanted.sort_unstable();
        wanted
    }
}

/// One key a client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    /// Its `key-finished` was sent.
    pub(crate) finished_sent: bool,
    /// The `request` of the message that started it (or started it again
    /// after its event was sent), which dask/1.1 events carry.
    pub(crate) request: u64,
    /// Its `key-waiting` was sent (once per want).
    pub(crate) waiting_told: bool,
}
