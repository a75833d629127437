//! The worker state machine, sans-IO: one machine for every worker (the
//! Rust worker's event loop and the JS SDK's drive it), owning the
//! worker's connections, its tasks, its data and its transfers.
//!
//! # Call order
//! [`WorkerState::new`] already asks for the scheduler connection. Inputs
//! arrive through the `handle_*` methods, each with the current time:
//! [`WorkerState::handle_connected`] when a peer connects to the data
//! listener (the machine names the connection), [`WorkerState::handle_frame`]
//! with each decoded batch of a connection, [`WorkerState::handle_protocol_error`]
//! when its bytes do not decode, [`WorkerState::handle_closed`] when it
//! ends, [`WorkerState::handle_drained`] when what was queued on it is
//! written, [`WorkerState::handle_task_done`] and
//! [`WorkerState::handle_withdrawn`] from the executor,
//! [`WorkerState::handle_listening`] for a new data listener,
//! [`WorkerState::handle_stop`], and [`WorkerState::handle_timeout`] once
//! [`WorkerState::poll_timeout`] has passed. After the inputs of a wakeup,
//! the edge drains [`WorkerState::poll_output`] until `None` and does what
//! each [`WorkerOutput`] says (connect, send, end a frame, close, listen,
//! execute, withdraw), then flushes each connection it wrote to once and
//! sleeps until the next event or [`WorkerState::poll_timeout`]. Fetches
//! and task starts are decided lazily inside `poll_output`, so everything
//! that arrived in one wakeup is batched: all keys wanted from one peer go
//! out in one `get-data`, all newly fetched keys in one `add-keys`. The
//! edge keeps no protocol state: which connection is which, the hellos,
//! their deadlines, registration and reconnection are all here
//! (`connection.rs`, `scheduler.rs`).
//!
//! Task states (design notes, "Worker task states"): *waiting* (some
//! dependency is being fetched), *ready* (queued for a thread, by priority
//! desc then arrival), *executing* (given to the executor), *memory* (the
//! result is in the data store; the task record is gone), *released* (no
//! record at all). An erred task is reported and released.
//!
//! The data store keeps every value as msgpack bytes ([`RawValue`]) behind
//! an `Arc`, so handing dependencies to an executor thread copies nothing;
//! values are decoded only on the executor thread that runs a task.
//!
//! Memory (as Dask's worker does it): with a memory limit
//! ([`WorkerStateConfig::memory_limit`]) and a [`SpillStore`]
//! ([`WorkerState::with_spill_store`]), values in memory past the target
//! fraction of the limit are written to the store, least recently used
//! first, until the bytes in memory are at or under the target; a value
//! out on the executor (a running or queued job holds it) is not spilled,
//! since that would free nothing. Spilling is synchronous, inside
//! [`WorkerState::poll_output`]. A spilled value is read back when a task
//! needs it (it returns to memory as the most recently used one) or to
//! answer a `get-data` (it stays spilled: the value leaves the process, so
//! it is no reason to push out values tasks here may use). Past the pause
//! fraction of the limit no task is started and no dependency fetched;
//! data is still served and stored. With synchronous spilling that happens
//! only when spilling cannot bring memory down: values held by jobs, a
//! failing store, spilling disabled. A failed write keeps the value in
//! memory (counted in [`WorkerState::memory`]; writes are tried again after
//! [`SPILL_RETRY_DELAY`]); a failed read loses the key here, and it is
//! reported the way a key missing here always is: `missing` in a `data`
//! reply, or `missing-data` naming this worker's address for a task that
//! needed it, so the scheduler drops this replica and recomputes. The
//! heartbeat's metrics say what is spilled, whether the worker is paused
//! and why spilling fails (dask/1.1); a pause, or spilling starting to
//! fail, is told at once in an extra heartbeat, so the scheduler stops
//! placing tasks here and takes back those not started. Each begins and
//! ends with one log line (spilling, a failing spill store, the pause).
//!
//! Time is a [`Timestamp`] since an origin the caller picks (the Rust worker:
//! its clock's start; the JS worker: `performance.now()`'s), never read from
//! a clock here, so this machine runs anywhere `core` builds, wasm32
//! included. Only differences of times matter; they must not go backwards.
//!
//! # Files
//! - `config.rs`: [`WorkerStateConfig`] and the protocol's limits;
//! - `job.rs`: what goes to the executor and comes back ([`Job`],
//!   [`TaskDone`], [`TaskError`]);
//! - `execute.rs`: compute-task, the ready queue, runs, steal, free-keys;
//! - `fetch.rs`: dependencies from peers (batching per holder, busy,
//!   failures, timeouts, missing-data);
//! - `memory.rs`: the data store, spilling and the pause;
//! - `serve.rs`: get-data and put-data (split replies, busy);
//! - `connection.rs`: the connections, routing, data connections' hellos;
//! - `scheduler.rs`: registration, heartbeats, batched reports, losing the
//!   scheduler and registering again;
//! - `tests/`: the tests, one file per concern.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::NonceSource;
use crate::log::{Level, LogRecord};
use crate::messages::{AddKeys, Metrics, Resources};
use crate::{ConnId, Key, Message, RawValue, Timestamp};
use slab::Slab;

pub mod arguments;
mod config;
mod connection;
mod execute;
mod fetch;
mod job;
mod local;
mod memory;
mod scheduler;
mod serve;
mod task_index;

pub use config::{
    WorkerStateConfig, CONNECTIONS_MAX, DISPATCH_AHEAD_MIN, FRAME_OVERHEAD_BYTES,
    HANDSHAKE_TIMEOUT, HEARTBEAT_INTERVAL_DEFAULT, HEARTBEAT_INTERVAL_MIN, LOCAL_LEASES_MAX,
    LOCAL_VALUE_BYTES_MIN, MEMORY_PAUSE_FRACTION_DEFAULT, MEMORY_TARGET_FRACTION_DEFAULT,
    RECONNECT_DELAY, REGISTER_TIMEOUT, REPLY_BYTES_IN_FLIGHT_MAX, REPORT_BATCH_BACKLOG_PER_THREAD,
    REPORT_DELAY_MAX, STORED_VALUE_BYTES_MAX, VALUE_BYTES_MAX,
};
pub use fetch::{
    BUSY_ANSWERS_MAX, BUSY_RETRY_DELAY_MAX, BUSY_RETRY_DELAY_MIN, FAILED_ADDRESS_MEMORY,
    FETCH_TIMEOUT,
};
pub use job::{Job, TaskDone, TaskError};
pub use local::{LocalRead, LEASE_GRACE};
pub use memory::{MemorySpillStore, MemoryUsage, SpillStore, SPILL_RETRY_DELAY};
pub use scheduler::{WorkerError, WorkerErrorKind};

use connection::{Connection, PendingConnect};
use execute::{ReadyQueue, Run, Task, TaskState, Withdrawal};
use fetch::{Fetch, PeerRequest};
use memory::Held;
use scheduler::{Listener, Phase};
use task_index::TaskIndex;

/// Something for the edge to do.
#[derive(Debug)]
pub enum WorkerOutput {
    /// Start connecting to `address` (`tcp://HOST:PORT`: the scheduler,
    /// or a holder's data address) and answer with the new connection's id
    /// through [`WorkerState::handle_connecting`] before polling on. If it
    /// fails later, report [`WorkerState::handle_closed`].
    Connect {
        /// Where to.
        address: String,
    },
    /// Queue a message on a connection (each connection is flushed once
    /// per wakeup).
    Send(ConnId, Message),
    /// The messages queued on this connection so far end their frame: the
    /// next one starts a new frame (a `hello` goes alone in its frame, as
    /// the receiver reads at most `hello_frame_bytes_max` before it).
    EndFrame(ConnId),
    /// Close this connection once what is queued on it is written (at once
    /// if it cannot be written); the machine has forgotten it, and hears
    /// nothing more about it.
    Close(ConnId),
    /// Bind a new data listener on the worker's host (any free port), in
    /// place of the old one, and report it with
    /// [`WorkerState::handle_listening`] (or
    /// [`WorkerState::handle_listen_failed`]).
    Listen,
    /// Queue a task on the executor (at most nthreads + dispatch_ahead
    /// runs are out at once).
    Execute(Job),
    /// Copy a value from a holder's memory on this host (feature
    /// `value-local`), off the loop thread: check the probe first, then
    /// read `nbytes` at `at`, check it is one well-formed value, and hand
    /// the value or why not to [`WorkerState::handle_local_read`].
    ReadLocal(LocalRead),
    /// Take back a run if no thread has started it; report whether it was
    /// taken back with [`WorkerState::handle_withdrawn`] (before polling on).
    Withdraw {
        /// The [`Job::run_id`].
        run_id: u64,
    },
    /// The scheduler registered the worker (again, after a reconnection)
    /// under `id`, with its data address `address`.
    Registered {
        /// The scheduler's id for this worker.
        id: u64,
        /// The data address registered.
        address: String,
    },
    /// A record for the operator's log (a lost scheduler, a pause, a
    /// failing spill store), with its level and event name: the edge
    /// filters and writes it (`--log-level`, `--log-format`).
    Log(LogRecord),
    /// The worker is over (every connection has been closed): the edge
    /// writes what is queued and stops. `error` is `None` after a `close`
    /// from the scheduler or [`WorkerState::handle_stop`].
    Finished {
        /// Why, when it is not a clean end.
        error: Option<WorkerError>,
    },
}

/// The worker's tasks, data and transfers. See the module docs.
///
/// The maps a task goes through (by key, runs, values, fetches) hash with
/// foldhash (randomly seeded): std's SipHash was ~7% of a worker's samples
/// running 100k independent tasks.
pub struct WorkerState {
    config: WorkerStateConfig,
    now: Timestamp,
    tasks: Slab<Task>,
    /// The tasks' slots by key (the keys are the tasks').
    by_key: TaskIndex,
    ready: ReadyQueue,
    next_seq: u64,
    running: foldhash::HashMap<u64, Run>,
    next_run_id: u64,
    withdrawals: foldhash::HashMap<u64, Withdrawal>,
    resources_used: Resources,
    data: foldhash::HashMap<Key, Held>,
    /// Bytes of every held value, in memory or spilled.
    stored_bytes: u64,
    /// Bytes of the values in memory.
    memory_bytes: u64,
    spilled_keys: u64,
    /// Values in memory by last use, least recent first; kept only when
    /// spilling is on (a store and a target), so it costs nothing otherwise.
    lru: BTreeMap<u64, Key>,
    next_tick: u64,
    spill: Option<Box<dyn SpillStore>>,
    /// No spill write before this (after a failed one).
    spill_retry_at: Option<Timestamp>,
    paused: bool,
    /// Why spilling fails now (see [`Metrics::spill_error`]).
    spill_error: Option<String>,
    /// What the log and the scheduler were last told of the memory (see
    /// `memory.rs`, `report_memory_changes`).
    memory_told: memory::MemoryTold,
    /// Counters of [`MemoryUsage`]; its live fields are filled on reading.
    memory_counters: MemoryUsage,
    fetches: foldhash::HashMap<Key, Fetch>,
    pending_fetches: Vec<Key>,
    delayed_fetches: Vec<(Timestamp, Key)>,
    requests: HashMap<u64, PeerRequest>,
    /// (deadline, request) in sending order; deadlines only grow.
    request_deadlines: VecDeque<(Timestamp, u64)>,
    next_request: u64,
    /// Microseconds and bytes of values fetched from peers since this
    /// registration (see [`Metrics::transfer_us`]).
    transfer_us: u64,
    transfer_bytes: u64,
    /// Of those, bytes read from holders' memory (`value-local`).
    transfer_local_bytes: u64,
    failed_addresses: HashMap<String, Timestamp>,
    reply_bytes_in_flight: HashMap<ConnId, usize>,
    add_keys: BTreeMap<Key, u64>,
    heartbeat_interval: Option<Duration>,
    next_heartbeat: Option<Timestamp>,
    /// Results of at most this many bytes go with `task-finished` (the
    /// scheduler's `inline_bytes_max`, dask/1.1).
    inline_bytes_max: Option<u64>,
    /// Every open connection (looked up for every message: foldhash, not
    /// SipHash; the ids are this worker's own).
    conns: foldhash::HashMap<ConnId, Connection>,
    /// The names of `config.functions`, hashed with foldhash: every
    /// compute-task looks its function up.
    offered: foldhash::HashSet<String>,
    /// Connections asked for, their ids not given yet (see
    /// [`WorkerState::handle_connecting`]).
    pending_connects: VecDeque<PendingConnect>,
    /// Outgoing data connections by the holder's address.
    outgoing: HashMap<String, ConnId>,
    /// (deadline, connection) of incoming connections in accept order, so
    /// the deadlines only grow; entries of connections that said hello or
    /// are gone are skipped.
    hello_deadlines: VecDeque<(Timestamp, ConnId)>,
    /// Where the worker is with its scheduler.
    phase: Phase,
    listener: Listener,
    /// While reconnecting: the last moment an attempt may start.
    reconnect_until: Option<Timestamp>,
    /// Reports for the scheduler waiting to go out together (see
    /// [`WorkerStateConfig::report_delay_max`]), and since when.
    held_reports: Vec<Message>,
    held_since: Option<Timestamp>,
    outputs: VecDeque<WorkerOutput>,
    dirty: bool,
    /// The nonces of this worker's handshakes (both sides), when it
    /// authenticates.
    nonces: Option<NonceSource>,
    /// Values lent on connections since closed, kept until then (see
    /// `local.rs`, `LEASE_GRACE`); the times only grow.
    retired_leases: VecDeque<(Timestamp, Vec<Arc<RawValue>>)>,
}

impl WorkerState {
    /// A worker holding nothing, listening at `config.address`; `now`
    /// starts its clock. It asks for the scheduler connection at once.
    pub fn new(config: WorkerStateConfig, now: Timestamp) -> WorkerState {
        let nonces = config
            .auth
            .as_ref()
            .filter(|auth| auth.credentials.worker.is_some())
            .map(|auth| NonceSource::new(auth.nonce_seed));
        let offered = config.functions.iter().cloned().collect();
        let mut state = WorkerState {
            nonces,
            offered,
            config,
            now,
            tasks: Slab::new(),
            by_key: TaskIndex::default(),
            ready: ReadyQueue::default(),
            next_seq: 0,
            running: foldhash::HashMap::default(),
            next_run_id: 0,
            withdrawals: foldhash::HashMap::default(),
            resources_used: Resources::new(),
            data: foldhash::HashMap::default(),
            stored_bytes: 0,
            memory_bytes: 0,
            spilled_keys: 0,
            lru: BTreeMap::new(),
            next_tick: 0,
            spill: None,
            spill_retry_at: None,
            paused: false,
            spill_error: None,
            memory_told: memory::MemoryTold::default(),
            memory_counters: MemoryUsage::default(),
            fetches: foldhash::HashMap::default(),
            pending_fetches: Vec::new(),
            delayed_fetches: Vec::new(),
            requests: HashMap::new(),
            request_deadlines: VecDeque::new(),
            next_request: 0,
            transfer_us: 0,
            transfer_bytes: 0,
            transfer_local_bytes: 0,
            failed_addresses: HashMap::new(),
            reply_bytes_in_flight: HashMap::new(),
            add_keys: BTreeMap::new(),
            heartbeat_interval: None,
            next_heartbeat: None,
            inline_bytes_max: None,
            conns: foldhash::HashMap::default(),
            pending_connects: VecDeque::new(),
            outgoing: HashMap::new(),
            hello_deadlines: VecDeque::new(),
            phase: Phase::Finished,
            listener: Listener::Ready,
            reconnect_until: None,
            held_reports: Vec::new(),
            held_since: None,
            outputs: VecDeque::new(),
            dirty: false,
            retired_leases: VecDeque::new(),
        };
        state.start_registration();
        state
    }

    /// The same worker spilling to `store` past the memory target (see the
    /// module docs); without a memory limit and target in the configuration
    /// the store is never used.
    pub fn with_spill_store(mut self, store: Box<dyn SpillStore>) -> WorkerState {
        self.spill = Some(store);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerStateConfig {
        &self.config
    }

    /// Current load, as sent in heartbeats. Runs queued on the executor
    /// beyond nthreads count as ready.
    pub fn metrics(&self) -> Metrics {
        let out = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, TaskState::Executing(_)))
            .count();
        let executing = out.min(self.config.nthreads);
        // Spilling and pausing need a limit: without one there is
        // nothing to tell.
        let limited = self.config.memory_limit.is_some();
        Metrics {
            executing: executing as u32,
            ready: (self.tasks.len() - executing) as u32,
            stored_keys: self.data.len() as u64,
            stored_bytes: self.stored_bytes,
            spilled_bytes: limited.then(|| self.stored_bytes - self.memory_bytes),
            paused: limited.then_some(self.paused),
            spill_error: self.spill_error.clone(),
            transfer_us: Some(self.transfer_us),
            transfer_bytes: Some(self.transfer_bytes),
            transfer_local_bytes: Some(self.transfer_local_bytes),
        }
    }

    /// Bytes in memory and spilled, pause, and what spilling did so far.
    pub fn memory(&self) -> MemoryUsage {
        MemoryUsage {
            memory_keys: self.data.len() as u64 - self.spilled_keys,
            memory_bytes: self.memory_bytes,
            spilled_keys: self.spilled_keys,
            spilled_bytes: self.stored_bytes - self.memory_bytes,
            paused: self.paused,
            ..self.memory_counters.clone()
        }
    }

    /// The value stored under `key`, when it is in memory (`None` when it
    /// is not held, or spilled: see [`WorkerState::holds`]).
    pub fn value(&self, key: &str) -> Option<&Arc<RawValue>> {
        self.data.get(key).and_then(|held| held.value.as_ref())
    }

    /// Whether a value is held under `key`, in memory or spilled.
    pub fn holds(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }

    /// Whether the value under `key` is spilled.
    pub fn is_spilled(&self, key: &str) -> bool {
        self.data.get(key).is_some_and(|held| held.value.is_none())
    }

    /// About how many tasks are queued for a thread or running (a queue
    /// entry left by a freed task may still count): while many are, the
    /// worker is busy for a while.
    pub fn backlog(&self) -> usize {
        self.ready.len() + self.running.len()
    }

    /// Runs out on the executor now (including discarded ones still running).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The key of the task out on run `run_id` ([`Job::run_id`]), while the
    /// run is out and its task not freed.
    pub fn run_key(&self, run_id: u64) -> Option<&Key> {
        let run = self.running.get(&run_id)?;
        self.tasks
            .get(run.slot)
            .filter(|t| t.state == TaskState::Executing(run_id))
            .map(|t| &t.key)
    }

    /// Time passed ([`WorkerState::poll_timeout`] is due): hello and
    /// registration deadlines, reconnection attempts, heartbeats, delayed
    /// fetches, fetch timeouts, spill retries and held reports.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        self.expire_hellos();
        self.expire_leases();
        self.scheduler_timeouts();
        if !self.is_registered() {
            return;
        }
        if self.delayed_fetches.iter().any(|(at, _)| *at <= now) {
            self.dirty = true;
        }
        // A pause ends, and failed spill writes are tried again, on a
        // later pump; make sure there is one.
        if self.paused || self.spill_retry_at.is_some_and(|at| at <= now) {
            self.dirty = true;
        }
        // Answered requests leave their entry behind: drop those from the
        // front too, so the queue holds little more than what is in flight.
        while let Some(&(deadline, id)) = self.request_deadlines.front() {
            let pending = self.requests.contains_key(&id);
            if pending && deadline > now {
                break;
            }
            self.request_deadlines.pop_front();
            if pending {
                self.request_failed(id);
            }
        }
    }

    /// When [`WorkerState::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let leases = self.retired_leases.front().map(|(until, _)| *until);
        let connections = [
            self.next_hello_deadline(),
            self.next_scheduler_timeout(),
            leases,
        ];
        let connections = connections.into_iter().flatten();
        if !self.is_registered() {
            return connections.min();
        }
        let fetch_deadline = self
            .request_deadlines
            .iter()
            .find(|(_, id)| self.requests.contains_key(id))
            .map(|(at, _)| *at);
        self.delayed_fetches
            .iter()
            .map(|(at, _)| *at)
            .chain(fetch_deadline)
            .chain(self.spill_retry_at)
            .chain(connections)
            .min()
    }

    /// The next thing to do; call until `None` after handling inputs.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<WorkerOutput> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            // A pump can leave work for another (a queued task whose
            // dependency was freed goes back to fetching).
            if self.dirty {
                self.dirty = false;
                self.pump();
                continue;
            }
            if !self.release_reports(false) {
                return None;
            }
        }
    }

    /// Decides fetches and task starts for everything handled since the
    /// last call.
    fn pump(&mut self) {
        if !self.is_registered() {
            self.pending_fetches.clear();
            self.delayed_fetches.clear();
            return;
        }
        let now = self.now;
        let due: Vec<Key> = {
            let mut due = Vec::new();
            self.delayed_fetches.retain(|(at, key)| {
                if *at <= now {
                    due.push(key.clone());
                    false
                } else {
                    true
                }
            });
            due
        };
        self.pending_fetches.extend(due);
        self.failed_addresses
            .retain(|_, at| now.saturating_duration_since(*at) < FAILED_ADDRESS_MEMORY);
        self.spill_to_target();
        if !self.update_paused() {
            self.send_fetches();
            self.start_ready_tasks();
            // Dependencies read back for the tasks started may push other
            // values out.
            self.spill_to_target();
        }
        let was_paused = self.paused;
        if !self.update_paused() && was_paused {
            self.dirty = true; // resumed: start what waits, in the next pump
        }
        if !self.add_keys.is_empty() {
            let nbytes = std::mem::take(&mut self.add_keys);
            self.emit(Message::AddKeys(AddKeys { nbytes }));
        }
        self.report_memory_changes();
    }
}

#[cfg(test)]
mod tests;
