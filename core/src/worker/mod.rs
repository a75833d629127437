//! The worker state machine, sans-IO.
//!
//! Inputs arrive through the `handle_*` methods, each with the current
//! time; outputs ([`WorkerOutput`]) are drained with [`WorkerState::poll_output`]
//! until it returns `None`. Call order per event-loop wakeup: every
//! `handle_*` for what arrived (scheduler messages, peer replies and
//! requests, executor completions, [`WorkerState::handle_tick`]), then
//! `poll_output` until `None`, then sleep until [`WorkerState::poll_timeout`].
//! Fetches and task starts are decided lazily inside `poll_output`, so
//! everything that arrived in one wakeup is batched: all keys wanted from
//! one peer go out in one `get-data`, all newly fetched keys in one
//! `add-keys`.
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
//! needed it, so the scheduler drops this replica and recomputes.
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
//! - `connection.rs`: data connections' hello exchange and routing;
//! - `tests/`: the tests, one file per concern.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::messages::{
    AddKeys, ErrorReport, FreeKeys, GetData, Heartbeat, Metrics, Resources, StealRequest,
};
use crate::{ErrorCode, Key, Message, RawValue, Timestamp};
use slab::Slab;

mod config;
mod connection;
mod execute;
mod fetch;
mod job;
mod memory;
mod serve;

pub use config::{
    WorkerStateConfig, DISPATCH_AHEAD_MIN, FRAME_OVERHEAD_BYTES, HEARTBEAT_INTERVAL_DEFAULT,
    HEARTBEAT_INTERVAL_MIN, MEMORY_PAUSE_FRACTION_DEFAULT, MEMORY_TARGET_FRACTION_DEFAULT,
    REPLY_BYTES_IN_FLIGHT_MAX, VALUE_BYTES_MAX,
};
pub use connection::{PeerId, PeerLink, PeerVerdict};
pub use fetch::{
    BUSY_ANSWERS_MAX, BUSY_RETRY_DELAY_MAX, BUSY_RETRY_DELAY_MIN, FAILED_ADDRESS_MEMORY,
    FETCH_TIMEOUT,
};
pub use job::{Job, TaskDone, TaskError};
pub use memory::{MemorySpillStore, MemoryUsage, SpillStore, SPILL_RETRY_DELAY};

use execute::{ReadyEntry, Run, Task, TaskState, Withdrawal};
use fetch::{Fetch, PeerRequest};
use memory::Held;

/// Something for the event loop to do.
#[derive(Debug)]
pub enum WorkerOutput {
    /// Queue a message on the scheduler connection.
    ToScheduler(Message),
    /// Send this `get-data` to the worker at `address` (connecting if
    /// needed); report the answer with [`WorkerState::handle_peer_reply`]
    /// or a failure with [`WorkerState::handle_peer_failed`].
    FetchFromPeer {
        /// Data address of the holder.
        address: String,
        /// The request.
        request: GetData,
    },
    /// Queue a reply (`data` or `busy`) on a peer's connection.
    ToPeer {
        /// The connection the request came on.
        peer: PeerId,
        /// The reply.
        message: Message,
    },
    /// Queue a task on the executor (at most nthreads + dispatch_ahead
    /// runs are out at once).
    Execute(Job),
    /// Take back a run if no thread has started it; report whether it was
    /// taken back with [`WorkerState::handle_withdrawn`] (before polling on).
    Withdraw {
        /// The [`Job::run_id`].
        run_id: u64,
    },
    /// Close the scheduler connection after writing what is queued, and
    /// stop. `error` is `None` when the scheduler asked for it (`close`).
    CloseScheduler {
        /// Why, when it is not a clean close.
        error: Option<String>,
    },
}

/// The worker's tasks, data and transfers. See the module docs.
pub struct WorkerState {
    config: WorkerStateConfig,
    now: Timestamp,
    tasks: Slab<Task>,
    by_key: HashMap<Key, usize>,
    ready: BinaryHeap<ReadyEntry>,
    next_seq: u64,
    running: HashMap<u64, Run>,
    next_run_id: u64,
    withdrawals: HashMap<u64, Withdrawal>,
    resources_used: Resources,
    data: HashMap<Key, Held>,
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
    /// Counters of [`MemoryUsage`]; its live fields are filled on reading.
    memory_counters: MemoryUsage,
    fetches: HashMap<Key, Fetch>,
    pending_fetches: Vec<Key>,
    delayed_fetches: Vec<(Timestamp, Key)>,
    requests: HashMap<u64, PeerRequest>,
    /// (deadline, request) in sending order; deadlines only grow.
    request_deadlines: VecDeque<(Timestamp, u64)>,
    next_request: u64,
    failed_addresses: HashMap<String, Timestamp>,
    reply_bytes_in_flight: HashMap<PeerId, usize>,
    add_keys: BTreeMap<Key, u64>,
    heartbeat_interval: Option<Duration>,
    next_heartbeat: Option<Timestamp>,
    outputs: VecDeque<WorkerOutput>,
    dirty: bool,
    closed: bool,
}

impl WorkerState {
    /// A worker holding nothing; `now` starts its clock.
    pub fn new(config: WorkerStateConfig, now: Timestamp) -> WorkerState {
        WorkerState {
            config,
            now,
            tasks: Slab::new(),
            by_key: HashMap::new(),
            ready: BinaryHeap::new(),
            next_seq: 0,
            running: HashMap::new(),
            next_run_id: 0,
            withdrawals: HashMap::new(),
            resources_used: Resources::new(),
            data: HashMap::new(),
            stored_bytes: 0,
            memory_bytes: 0,
            spilled_keys: 0,
            lru: BTreeMap::new(),
            next_tick: 0,
            spill: None,
            spill_retry_at: None,
            paused: false,
            memory_counters: MemoryUsage::default(),
            fetches: HashMap::new(),
            pending_fetches: Vec::new(),
            delayed_fetches: Vec::new(),
            requests: HashMap::new(),
            request_deadlines: VecDeque::new(),
            next_request: 0,
            failed_addresses: HashMap::new(),
            reply_bytes_in_flight: HashMap::new(),
            add_keys: BTreeMap::new(),
            heartbeat_interval: None,
            next_heartbeat: None,
            outputs: VecDeque::new(),
            dirty: false,
            closed: false,
        }
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

    /// Whether the scheduler connection is over (closed or failed).
    pub fn is_closed(&self) -> bool {
        self.closed
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
        Metrics {
            executing: executing as u32,
            ready: (self.tasks.len() - executing) as u32,
            stored_keys: self.data.len() as u64,
            stored_bytes: self.stored_bytes,
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

    /// A message from the scheduler (after the handshake).
    pub fn handle_scheduler_message(&mut self, now: Timestamp, message: Message) {
        self.now = now;
        if self.closed {
            return;
        }
        self.dirty = true;
        match message {
            Message::WorkerRegistered(r) => {
                let interval = Duration::from_millis(r.heartbeat_interval_ms);
                let interval = if r.heartbeat_interval_ms == 0 {
                    HEARTBEAT_INTERVAL_DEFAULT
                } else {
                    interval.max(HEARTBEAT_INTERVAL_MIN)
                };
                self.heartbeat_interval = Some(interval);
                self.next_heartbeat = Some(now + interval);
            }
            Message::ComputeTask(task) => self.compute_task(task),
            Message::FreeKeys(FreeKeys { keys }) => self.free_keys(keys),
            Message::StealRequest(StealRequest { key }) => self.steal(key),
            Message::PutData(put) => self.put_data(put),
            Message::GetData(GetData { request, keys }) => {
                for reply in self.data_replies(request, &keys).0 {
                    self.emit(reply);
                }
            }
            Message::Heartbeat(_) => {}
            Message::Close(_) => {
                self.closed = true;
                self.outputs
                    .push_back(WorkerOutput::CloseScheduler { error: None });
            }
            Message::ErrorReport(e) if e.fatal => {
                self.closed = true;
                self.outputs.push_back(WorkerOutput::CloseScheduler {
                    error: Some(format!("scheduler error {}: {}", e.code, e.message)),
                });
            }
            // A non-fatal error (e.g. about a put-data we could not store)
            // changes nothing here.
            Message::ErrorReport(_) => {}
            other => self.protocol_error(format!(
                "`{}` is not a message a scheduler sends to a worker",
                other.op()
            )),
        }
    }

    /// The scheduler connection broke a protocol rule (bad frame, message
    /// not allowed): report `code` and close.
    pub fn handle_scheduler_protocol_error(
        &mut self,
        now: Timestamp,
        code: ErrorCode,
        message: String,
    ) {
        self.now = now;
        if self.closed {
            return;
        }
        self.emit(Message::ErrorReport(ErrorReport {
            code: code.number(),
            message: message.clone(),
            fatal: true,
            request: None,
            keys: None,
        }));
        self.closed = true;
        self.outputs.push_back(WorkerOutput::CloseScheduler {
            error: Some(message),
        });
    }

    /// The scheduler connection is gone: the worker stops.
    pub fn handle_scheduler_lost(&mut self, now: Timestamp, reason: String) {
        self.now = now;
        if self.closed {
            return;
        }
        self.closed = true;
        self.outputs.push_back(WorkerOutput::CloseScheduler {
            error: Some(reason),
        });
    }

    /// Time passed: heartbeats, delayed fetches and spill retries fall due.
    pub fn handle_tick(&mut self, now: Timestamp) {
        self.now = now;
        if self.closed {
            return;
        }
        if let (Some(due), Some(interval)) = (self.next_heartbeat, self.heartbeat_interval) {
            if now >= due {
                let metrics = self.metrics();
                self.emit(Message::Heartbeat(Heartbeat {
                    metrics: Some(metrics),
                }));
                // Skip missed beats rather than burst them.
                let mut next = due + interval;
                if next <= now {
                    next = now + interval;
                }
                self.next_heartbeat = Some(next);
            }
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

    /// When [`WorkerState::handle_tick`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let delayed = self
            .delayed_fetches
            .iter()
            .map(|(at, _)| *at)
            .chain(
                self.request_deadlines
                    .iter()
                    .find(|(_, id)| self.requests.contains_key(id))
                    .map(|(at, _)| *at),
            )
            .chain(self.spill_retry_at.filter(|_| !self.closed))
            .min();
        match (self.next_heartbeat.filter(|_| !self.closed), delayed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next thing to do; call until `None` after handling inputs.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<WorkerOutput> {
        // A pump can leave work for another (a queued task whose
        // dependency was freed goes back to fetching).
        while self.outputs.is_empty() && self.dirty {
            self.dirty = false;
            self.pump();
        }
        self.outputs.pop_front()
    }

    fn emit(&mut self, message: Message) {
        self.outputs.push_back(WorkerOutput::ToScheduler(message));
    }

    fn protocol_error(&mut self, message: String) {
        let now = self.now;
        self.handle_scheduler_protocol_error(now, ErrorCode::UnexpectedMessage, message);
    }

    /// Decides fetches and task starts for everything handled since the
    /// last call.
    fn pump(&mut self) {
        if self.closed {
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
    }
}

#[cfg(test)]
mod tests;
