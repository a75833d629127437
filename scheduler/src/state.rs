//! The scheduler as a pure state machine: connections, clients, workers,
//! tasks and datasets, with no socket, clock or thread.
//!
//! # Call order
//! The event loop calls [`SchedulerState::handle_connected`] when it accepts
//! a connection, [`SchedulerState::handle_frame`] (or
//! [`SchedulerState::handle_message`]) with each decoded batch,
//! [`SchedulerState::handle_closed`] when a peer goes away and
//! [`SchedulerState::handle_timeout`] once [`SchedulerState::poll_timeout`]
//! has come (earlier or extra calls are harmless); after each call it
//! drains [`SchedulerState::poll_output`] and sends what comes out. The
//! loop should hand over the input that waited before it judges a
//! timeout: time the scheduler itself did not run (a pause of the process)
//! must not count against its peers; a stall of the loop itself is noticed
//! from the time of the calls (see [`liveness`]). An
//! [`SchedulerOutput::Close`] means the state has already forgotten that connection:
//! the loop closes it once its queued bytes are written and does not report
//! it closed again (doing so is harmless). After each flush of its
//! connections it reports how much still waits unwritten for the clients
//! of [`SchedulerState::clients_with_output`] with
//! [`SchedulerState::handle_output_queued`]: gathers wait while their
//! client does not read (see [`outflow`]).
//!
//! # Tasks
//! States: released, waiting, no-worker, queued, processing, memory, erred
//! (forgotten tasks are removed). Two counts decide what stays:
//! - a task's *data* is kept while a client or dataset wants it or some
//!   *waiter* (a dependent in waiting / no-worker / queued / processing)
//!   still needs it; otherwise workers get `free-keys` and it goes back to
//!   released;
//! - a task's *definition* is kept while it is wanted or has dependents, so
//!   lost results can be recomputed from their lineage; a released or erred
//!   task with neither is forgotten. An erred task keeps its error while it
//!   is kept: a task that comes to depend on it errs at once.
//!
//! Every handler ends with `finish_event`: pending reference checks run,
//! batched `free-keys` go out, queued tasks are placed on workers with free
//! slots (see [`placement`]).
//!
//! # Choices the design notes leave open
//! - Client events: `key-finished` is sent at most once per want (a result
//!   recomputed after a worker loss is not announced again) — except that
//!   wanting a key again (update-graph, get-dataset) while it is in memory
//!   or erred answers with its event again. `key-cancelled` and `key-lost`
//!   end the want (the client needs no release-keys after them); they may
//!   follow a `key-finished` when the result is later lost for good or
//!   force-cancelled by another client.
//! - `key-erred` does not end the want (as in Dask): the erred task is kept,
//!   with its error, while a client or dataset wants it or an erred
//!   dependent refers to it, and the client releases it like a finished
//!   one. A task submitted later on an erred key errs at once: wanting
//!   clients get `key-erred` with the error and `cause` (the key whose task
//!   raised it) instead of a 4001 refusal. Submitting a failed key again
//!   computes it again only once it is forgotten.
//! - `cancel-keys` without force sends `key-cancelled` for each listed key
//!   the client wanted (finished, erred or pending, or still being
//!   scattered); other keys are ignored.
//! - Scatter: a key becomes a task, in memory on every worker that stored
//!   it, only once every `put-data` of it was answered (or its worker
//!   left): with broadcast, `key-finished` means every copy is in place
//!   (Dask waits for every copy too). Until then the key is not known to
//!   graphs (update-graph refuses it with 4002, like a scatter of it) and
//!   a release, cancel or disconnect of its client makes the stored copies
//!   be freed when the last answer comes, creating nothing.
//! - Scattered data has no lineage: when its last copy is lost, wanting
//!   clients get `key-lost` and so do clients wanting tasks that depend on
//!   it; a scattered key that no worker stored (every worker left before
//!   `data-stored`, or left out the key) is lost too.
//! - `missing-data` drops the sender's own replica (and frees it there,
//!   keeping its store in step); another holder it lists is asked first
//!   (see [`claims`]). The task is placed again once its dependencies are
//!   back, recomputing them if no copy remains. `add-keys` counts only for
//!   keys the worker was sent to fetch.
//! - A `get-data` answered `busy` is asked again after
//!   [`GATHER_BUSY_RETRY_INTERVAL`], at most
//!   [`data::GATHER_BUSY_RETRIES_MAX`] times; keys a holder does not have
//!   are asked of another holder, else reported missing.
//! - `register-worker` with `nthreads: 0` is refused with 2003 (fatal).
//! - A connection that sends no hello within the handshake timeout (the
//!   default 10 s) gets 3002 and is closed.
//! - Workers are told to beat at the configured interval or a third of the
//!   heartbeat timeout, whichever is shorter: none is declared dead before
//!   three intervals without a frame from it.
//! - A worker silent for the heartbeat timeout gets `close` (with
//!   `reconnect: true` for a dask/1.1 worker: it may only have been
//!   misjudged, and registers again) and is removed like a closed one; the connection is forgotten, so whatever the worker
//!   sends after (it may only have been hung) is never heard: no late
//!   `task-finished` is accepted.
//! - A worker that is *lost* (connection dropped, heartbeat timeout, a
//!   fatal error), not one that said `close`, counts against each task
//!   processing on it; a task lost with more than `allowed_failures`
//!   workers (default 3) errs with error_type `KilledWorker`, the message
//!   naming the key and the workers, instead of being placed again.
//! - A worker whose heartbeat says it is paused (dask/1.1) gets no task
//!   and is asked back what it holds; one paused that cannot spill runs
//!   nothing, and tasks only such workers could run err with `SpillFailed`
//!   after `spill_failed_timeout` (see [`pause`]).
//! - When a worker is removed, tasks processing on other workers that
//!   depend on data it held (and their worker does not) are asked back
//!   with `steal-request` and placed again with the holders that remain:
//!   their worker may be waiting for a fetch from a peer that hangs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use dask_core::auth::{AcceptorAuth, NonceSource, CHANNEL_BINDING_BYTES};
use dask_core::handshake;
use dask_core::log::{Level, LogRecord};
use dask_core::messages::{
    Close, ErrorReport, KeyCancelled, KeyErred, KeyFinished, KeyList, KeyListBuilder, KeyLost,
    Metrics, Resources, Role, StealRequest, WorkerRegistered,
};
use dask_core::{ErrorCode, Key, Message, RawValue, Timestamp};
use key_index::KeyIndex;
use observe::{GroupId, Observer};
use placement::GroupDurations;
use ready_queue::ReadyQueue;
use slab::Slab;
use small_list::SmallList;

use crate::journal::record::JournalRecord;

mod claims;
mod config;
mod connections;
pub mod data;
pub mod durable;
mod graph;
pub mod inspect;
mod key_index;
pub mod liveness;
pub mod observe;
pub mod outflow;
pub mod pause;
mod peers;
pub mod placement;
mod ready_queue;
pub mod relay;
pub mod release;
pub mod shrink;
mod small_list;
mod snapshot;
mod task_record;
mod task_set;
mod task_text;
mod tasks;
mod validate;
pub mod waiting;
mod workers;

#[cfg(test)]
mod tests;

pub use config::{
    SchedulerStateConfig, ALLOWED_FAILURES_DEFAULT, CLIENT_GRACE_DEFAULT, INLINE_BYTES_MAX_DEFAULT,
    RELEASE_STEP_DEFAULT, RESTORE_WORKER_WAIT_DEFAULT, SPILL_FAILED_TIMEOUT_DEFAULT,
};
pub use dask_core::ConnId;
pub(crate) use peers::{Client, Connection, Departure, Peer, Want, Worker};
pub(crate) use task_record::{
    Def, FunctionName, QueueKey, Task, TaskDef, TaskError, TaskId, TaskState, WorkerIdx,
};

/// How long after a `get-data` is answered `busy` it is asked again.
pub const GATHER_BUSY_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A deadline "after `d`" is the first timestamp at which more than `d`
/// has passed: timeouts are strict (`elapsed > timeout`).
const JUST_AFTER: Duration = Duration::from_nanos(1);

/// What the event loop must do.
// Nearly every output is a `Send`, drained at once: boxing its message
// would cost an allocation per message to save space in a short queue.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerOutput {
    /// Send this message on this connection (batched per wakeup).
    Send(ConnId, Message),
    /// Close this connection after writing what is queued for it.
    Close(ConnId),
    /// One more record for the journal (only with
    /// [`SchedulerStateConfig::journal`]), framed in the state's buffer
    /// that [`SchedulerState::take_journal`] hands over: it must be
    /// durable before any message that comes after it is sent.
    Journal,
}

/// Most function names shared between tasks (see
/// `SchedulerState::functions`); tasks of further names get their own copy.
const FUNCTION_NAMES_SHARED_MAX: usize = 4096;

/// Most names of lost workers a task remembers for its `KilledWorker`
/// message.
const KILLED_WORKER_NAMES_MAX: usize = 8;

/// The scheduler. See the module docs for the call order.
#[derive(Debug)]
pub struct SchedulerState {
    config: SchedulerStateConfig,
    now: Timestamp,
    next_id: u64,
    next_order: u64,
    next_request: u64,
    /// Connections and clients by id (foldhash, as `worker_by_conn`: one
    /// look-up or more per message, and SipHash was ~10% of the
    /// instructions per task; the ids are the reactor's, not a peer's).
    conns: foldhash::HashMap<ConnId, Connection>,
    pub(crate) clients: foldhash::HashMap<ConnId, Client>,
    pub(crate) workers: Slab<Worker>,
    /// Registered workers by connection (foldhash: asked for most outputs
    /// of a journaling scheduler; connection ids are the reactor's, not a
    /// peer's choice).
    worker_by_conn: foldhash::HashMap<ConnId, WorkerIdx>,
    worker_by_name: HashMap<String, WorkerIdx>,
    pub(crate) tasks: Slab<Task>,
    /// The task of each key.
    pub(crate) key_index: KeyIndex,
    /// Ready tasks waiting for a worker slot.
    pub(crate) queue: ReadyQueue,
    pub(crate) no_worker: BTreeSet<TaskId>,
    pub(crate) datasets: BTreeMap<String, Vec<TaskId>>,
    /// Tasks whose reference counts changed; examined in `finish_event`,
    /// at most [`SchedulerStateConfig::release_step`] releases per step
    /// (see [`SchedulerState::run_checks`]).
    to_check: Vec<TaskId>,
    /// Units of release work this step may still do (see [`release`]).
    release_budget: usize,
    /// The loop tells each wakeup ([`SchedulerState::begin_wakeup`]):
    /// steps are wakeups, not inputs.
    steps_by_wakeup: bool,
    /// `release-keys` not taken in yet (see [`release`]).
    releases: release::ReleaseQueue,
    /// `free-keys` not yet sent, per worker.
    pending_free: BTreeMap<WorkerIdx, KeyListBuilder>,
    /// Workers registered during this event: they may steal once the
    /// queue is placed.
    joined: Vec<WorkerIdx>,
    /// Duration estimates per task group (placement).
    pub(crate) durations: GroupDurations,
    /// One copy of each function name for all its tasks (a `String` per
    /// task was 56 bytes of a 10M-task graph's ~500 per task), at most
    /// [`FUNCTION_NAMES_SHARED_MAX`] names.
    /// (foldhash: a tree alternates two functions, so every other task of
    /// a graph looks its name up.)
    /// Each has its index in the order shared ([`FunctionName::index`]).
    functions: foldhash::HashSet<Arc<FunctionName>>,
    /// The name [`SchedulerState::shared_function`] gave last.
    last_function: Option<Arc<FunctionName>>,
    /// The worker each steal in flight is for.
    pub(crate) steal_thieves: BTreeMap<TaskId, WorkerIdx>,
    /// The worker that got the last task without dependencies (see
    /// placement: consecutive root tasks go to the same worker).
    pub(crate) last_root_worker: Option<WorkerIdx>,
    data: data::DataRequests,
    /// Gathers waiting for their client to read (see [`outflow`]).
    outflow: outflow::Outflow,
    /// Workers' claims about data not yet settled (see [`claims`]).
    claims: claims::Claims,
    out: VecDeque<SchedulerOutput>,
    /// With `validate`: tasks changed by the current event.
    touched: Vec<TaskId>,
    /// With `validate`: when the whole state was last checked.
    last_full_validation: Option<Timestamp>,
    /// The task table's capacity after the last shrink (see [`shrink`]).
    shrink_tried_at: usize,
    /// The tables were shrunk: the loop returns freed memory to the OS.
    shrunk: bool,
    /// No connection can time out (handshake or heartbeat) before this:
    /// the earliest deadline seen at the last scan, or armed since by a
    /// new connection or worker. Deadlines only move later as messages
    /// arrive, so it may be early (a scan that finds nothing), never late.
    next_liveness_check: Option<Timestamp>,
    /// Nonces of the handshakes, when authentication is required.
    nonces: Option<NonceSource>,
    /// Aggregates for the dashboard, `/metrics` and the log.
    observe: Observer,
    /// Tasks that became no-worker during this event: their wanting
    /// clients get `key-waiting` at its end.
    stuck: Vec<TaskId>,
    /// When the next stuck worker has been so for `spill_failed_timeout`.
    next_spill_failed_check: Option<Timestamp>,
    /// The journal side: sessions, a restore in progress.
    durable: durable::Durable,
    /// Where arguments written from dependencies' keys are put together
    /// (see [`Task::args_are_dependencies`]): one buffer, not one a task.
    pub(crate) args_scratch: Vec<u8>,
    /// `expand`'s stack, kept between calls: a wanted task is expanded
    /// alone, and a stack allocated and freed for each was ~140
    /// instructions of an independent task's.
    pub(crate) expand_stack: Vec<(TaskId, bool)>,
}

/// Most tasks a worker's [`Worker::sent`] hints at: more than the tasks
/// placement gives a worker of a few threads at once.
const SENT_HINTS_MAX: usize = 1024;

/// The name the scheduler gives itself in its hello.
const SCHEDULER_NAME: &str = "dask-scheduler";

impl SchedulerState {
    /// A scheduler with no connection and no task.
    pub fn new(config: SchedulerStateConfig, now: Timestamp) -> SchedulerState {
        let nonces = config.auth.as_ref().map(|a| NonceSource::new(a.nonce_seed));
        SchedulerState {
            nonces,
            config,
            now,
            next_id: 1,
            next_order: 1,
            next_request: 1,
            conns: foldhash::HashMap::default(),
            last_root_worker: None,
            clients: foldhash::HashMap::default(),
            workers: Slab::new(),
            worker_by_conn: foldhash::HashMap::default(),
            worker_by_name: HashMap::new(),
            tasks: Slab::new(),
            key_index: KeyIndex::default(),
            queue: ReadyQueue::default(),
            no_worker: BTreeSet::new(),
            datasets: BTreeMap::new(),
            to_check: Vec::new(),
            release_budget: 0,
            steps_by_wakeup: false,
            releases: release::ReleaseQueue::default(),
            pending_free: BTreeMap::new(),
            joined: Vec::new(),
            durations: GroupDurations::default(),
            functions: foldhash::HashSet::default(),
            last_function: None,
            steal_thieves: BTreeMap::new(),
            data: data::DataRequests::default(),
            outflow: outflow::Outflow::default(),
            claims: claims::Claims::default(),
            out: VecDeque::new(),
            touched: Vec::new(),
            last_full_validation: None,
            shrink_tried_at: 0,
            shrunk: false,
            next_liveness_check: None,
            observe: Observer::new(now),
            stuck: Vec::new(),
            next_spill_failed_check: None,
            durable: durable::Durable::default(),
            args_scratch: Vec::new(),
            expand_stack: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerStateConfig {
        &self.config
    }

    /// The `heartbeat_interval_ms` workers are given: the configured
    /// interval, or a third of the heartbeat timeout when that is shorter
    /// (the protocol forbids declaring a worker dead before three intervals
    /// without a frame from it), and at least 1 ms.
    pub fn heartbeat_interval_told(&self) -> Duration {
        self.config
            .heartbeat_interval
            .min(self.config.heartbeat_timeout / 3)
            .max(Duration::from_millis(1))
    }

    // ---- inputs ---------------------------------------------------------

    /// A connection was accepted; its first message must be `hello`.
    pub fn handle_connected(&mut self, now: Timestamp, conn: ConnId) {
        self.set_now(now);
        self.arm_liveness_check(now + self.config.handshake_timeout + JUST_AFTER);
        self.conns.insert(
            conn,
            Connection {
                peer: Peer::AwaitingHello,
                id: 0,
                connected_at: now,
                last_seen: now,
                channel_binding: None,
                auth: None,
                v1_1: false,
                key_waiting: false,
                value_parts: false,
                value_ranges: false,
                name: None,
                session: None,
            },
        );
    }

    /// `conn` is TLS, with this channel binding (call it after
    /// [`SchedulerState::handle_connected`], before any message of it):
    /// proofs on it cover the binding.
    pub fn handle_channel_binding(&mut self, conn: ConnId, binding: [u8; CHANNEL_BINDING_BYTES]) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.channel_binding = Some(binding);
        }
    }

    /// One message arrived on `conn`.
    pub fn handle_message(&mut self, now: Timestamp, conn: ConnId, message: Message) {
        self.set_now(now);
        self.dispatch(conn, message);
        self.finish_event();
    }

    /// A frame's messages arrived on `conn`, handled in order: each one
    /// sees the effect of those before it (a key released is forgotten
    /// before the next message), as if each had come in a frame of its
    /// own; placement and batched `free-keys` wait for the frame's end.
    /// Messages after one that closed the connection are ignored.
    pub fn handle_frame(&mut self, now: Timestamp, conn: ConnId, messages: Vec<Message>) {
        self.set_now(now);
        for m in messages {
            if !self.conns.contains_key(&conn) {
                break;
            }
            self.dispatch(conn, m);
            self.run_checks();
        }
        self.finish_event();
    }

    /// The peer of `conn` went away (or the loop closed it).
    pub fn handle_closed(&mut self, now: Timestamp, conn: ConnId) {
        self.set_now(now);
        self.drop_conn(conn, Departure::Lost);
        self.finish_event();
    }

    /// Time passed: heartbeat and handshake timeouts and `busy` retries
    /// that are due by `now` happen, and the next step of a release larger
    /// than [`SchedulerStateConfig::release_step`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.set_now(now);
        if self.next_liveness_check.is_some_and(|at| at <= now) {
            self.check_liveness(now);
        }
        if self.data.busy_retry_at.is_some_and(|at| at <= now) {
            self.data.busy_retry_at = None;
            self.retry_busy_gets();
        }
        if self.next_spill_failed_check.is_some_and(|at| at <= now) {
            self.check_stuck_workers(now);
        }
        if self.durable_deadline().is_some_and(|at| at <= now) {
            self.durable_timeout(now);
        }
        self.finish_event();
    }

    /// When [`SchedulerState::handle_timeout`] has something to do next
    /// (`None`: nothing, until another input).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.next_liveness_check,
            self.data.busy_retry_at,
            self.next_spill_failed_check,
            self.durable_deadline(),
            // The rest of a release larger than a step: due at once.
            self.is_releasing().then_some(self.now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Says goodbye to every connection (the server is stopping): `close`
    /// then [`SchedulerOutput::Close`] for each.
    pub fn handle_shutdown(&mut self, now: Timestamp) {
        self.set_now(now);
        // Its clients are not gone: the next scheduler on the journal
        // keeps their sessions.
        self.journal_quiet();
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort();
        for conn in conns {
            if !matches!(
                self.conns[&conn].peer,
                Peer::AwaitingHello | Peer::AwaitingProof
            ) {
                self.send(
                    conn,
                    Message::Close(Close {
                        reason: Some("scheduler shutting down".into()),
                        reconnect: None,
                    }),
                );
            }
            self.drop_conn(conn, Departure::Closed);
            self.out.push_back(SchedulerOutput::Close(conn));
        }
        self.finish_event();
    }

    /// Whether `conn` is a registered worker's connection (the journal
    /// holds back messages to every other peer until it is durable).
    pub fn is_worker_conn(&self, conn: ConnId) -> bool {
        self.worker_by_conn.contains_key(&conn)
    }

    /// The next thing for the event loop to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<SchedulerOutput> {
        self.out.pop_front()
    }

    // ---- inspection (tests, tools) ---------------------------------------

    /// The scheduler state name of `key` (`None` when forgotten or unknown).
    pub fn task_state(&self, key: &str) -> Option<&'static str> {
        let t = self.task_id(key)?;
        Some(self.tasks[t].state().name())
    }

    /// The task of `key`, if the scheduler knows it.
    pub(crate) fn task_id<K: std::borrow::Borrow<str> + ?Sized>(&self, key: &K) -> Option<TaskId> {
        self.key_index.get(&self.tasks, key.borrow())
    }

    /// Number of tasks the scheduler knows.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Number of registered workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The shared copy of the function name `name`.
    pub(crate) fn shared_function(&mut self, name: String) -> Arc<FunctionName> {
        // Consecutive tasks mostly run one function: no hashing then.
        if let Some(last) = self.last_function.as_ref().filter(|f| f.name == name) {
            return Arc::clone(last);
        }
        let mut probe = FunctionName {
            name,
            index: FunctionName::NOT_SHARED,
        };
        if let Some(f) = self.functions.get(&probe) {
            self.last_function = Some(Arc::clone(f));
            return Arc::clone(f);
        }
        if self.functions.len() < FUNCTION_NAMES_SHARED_MAX {
            probe.index = self.functions.len() as u32;
            let f = Arc::new(probe);
            self.functions.insert(Arc::clone(&f));
            self.last_function = Some(Arc::clone(&f));
            return f;
        }
        Arc::new(probe)
    }

    /// Notes that `t` changed, for the validation after this event.
    pub(crate) fn touch(&mut self, t: TaskId) {
        if self.config.validate {
            self.touched.push(t);
        }
    }

    pub(crate) fn send(&mut self, conn: ConnId, message: Message) {
        // A detached session has no connection: its client gets its
        // events again when it comes back.
        if Self::is_detached(conn) {
            return;
        }
        // Nothing may come between the parts of a value and the reply
        // carrying it: the client's other messages wait for that reply.
        if let Some(held) = self.data.held_during_relay(conn) {
            return held.push(message);
        }
        self.out.push_back(SchedulerOutput::Send(conn, message));
    }

    /// Sends to a worker, after any `free-keys` still pending for it (so a
    /// worker never frees what a later message gave it).
    pub(crate) fn send_worker(&mut self, w: WorkerIdx, message: Message) {
        let Some(worker) = self.workers.get(w.ix()) else {
            return;
        };
        let conn = worker.conn;
        if let Some(keys) = self.pending_free.remove(&w) {
            self.send(
                conn,
                Message::FreeKeys(dask_core::messages::FreeKeys {
                    keys: keys.finish(),
                }),
            );
        }
        self.send(conn, message);
    }

    /// Queues `free-keys` for `key` on worker `w` (sent batched).
    pub(crate) fn free_on<K: std::borrow::Borrow<str> + ?Sized>(&mut self, w: WorkerIdx, key: &K) {
        if self.workers.contains(w.ix()) {
            self.pending_free.entry(w).or_default().push(key.borrow());
        }
    }

    /// Queues `free-keys` for task `t`'s key on worker `w`, without a copy
    /// of the key (a released graph frees every key).
    pub(crate) fn free_task_on(&mut self, w: WorkerIdx, t: TaskId) {
        if let (true, Some(task)) = (self.workers.contains(w.ix()), self.tasks.get(t.ix())) {
            self.pending_free.entry(w).or_default().push(task.key());
        }
    }
}
