//! The scheduler connection: hello and registration, the messages a
//! scheduler may send, heartbeats, batched reports, and what happens when
//! the connection ends.
//!
//! The worker asks for the connection itself (a [`WorkerOutput::Connect`]
//! from [`WorkerState::new`]) and pipelines its `hello`, alone in the first
//! frame, and `register-worker` in a second frame. The scheduler must
//! answer `hello` (as a scheduler) and then `worker-registered` within
//! [`WorkerStateConfig::register_timeout`]; an `error` before that is a
//! refusal. Once registered ([`WorkerOutput::Registered`]) the worker
//! beats at the interval the scheduler named.
//!
//! How it ends:
//! - `close` from the scheduler is final: the worker finishes cleanly (the
//!   scheduler is shutting down, or declared this worker dead);
//! - [`WorkerState::handle_stop`]: `close` to the scheduler, then finish;
//! - a registration that fails (unreachable, refused, no answer in time, a
//!   broken protocol) finishes with an error ([`WorkerError`]);
//! - a registered connection that is lost (closed, broken, a fatal
//!   `error`, a protocol error of the scheduler's): with a
//!   [`WorkerStateConfig::reconnect_timeout`], the worker starts anew as a
//!   new worker of the same name: it drops every task and data connection
//!   (keeping its values, which it lists in `register-worker` `held` for a
//!   dask/1.1 scheduler to adopt), asks for a new data listener ([`WorkerOutput::Listen`],
//!   so no stale `who_has` entry can point at the new worker), and tries to
//!   register every [`WorkerStateConfig::reconnect_delay`] until it works
//!   or the timeout has passed (an attempt that fails after it ends the
//!   worker). Why start anew rather than exit: a scheduler that restarts,
//!   or a network that drops a connection, should not need every worker
//!   restarted by hand; why a *new* worker: the scheduler has forgotten
//!   the old one and rescheduled its work. Without a reconnect timeout the
//!   worker finishes with the error.
//!
//! [`WorkerStateConfig::register_timeout`]: super::WorkerStateConfig::register_timeout
//! [`WorkerStateConfig::reconnect_timeout`]: super::WorkerStateConfig::reconnect_timeout
//! [`WorkerStateConfig::reconnect_delay`]: super::WorkerStateConfig::reconnect_delay

use std::fmt;
use std::time::Duration;

use super::connection::ConnKind;
use super::{
    Level, LogRecord, Withdrawal, WorkerOutput, WorkerState, HEARTBEAT_INTERVAL_DEFAULT,
    HEARTBEAT_INTERVAL_MIN, REPORT_BATCH_BACKLOG_PER_THREAD,
};
use crate::handshake;
use crate::messages::{Close, FreeKeys, GetData, Heartbeat, RegisterWorker, Role, StealRequest};
use crate::{ConnId, ErrorCode, Message, Timestamp, WireError};

/// Where the worker is with its scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A scheduler connection asked for; its id not given yet.
    Connecting { deadline: Timestamp },
    /// `hello` and `register-worker` sent on `conn`; waiting for the
    /// scheduler's hello (`hello: false`), then `worker-registered`, until
    /// `deadline`.
    Registering {
        conn: ConnId,
        hello: bool,
        deadline: Timestamp,
    },
    /// Registered on `conn`.
    Registered { conn: ConnId },
    /// Lost the scheduler; the next registration attempt at `at` (once the
    /// new data listener is up).
    Reconnecting { at: Timestamp },
    /// Over: nothing more happens.
    Finished,
}

/// The worker's data listener, as the edge reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    /// Listening at `config.address`.
    Ready,
    /// Asked for ([`WorkerOutput::Listen`]), not reported yet.
    Pending,
    /// The last [`WorkerOutput::Listen`] failed.
    Failed,
}

/// Why a worker finished with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerError {
    /// What kind of end.
    pub kind: WorkerErrorKind,
    /// What happened, for people.
    pub message: String,
}

/// The kinds of [`WorkerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerErrorKind {
    /// The scheduler connection could not be opened, or ended before the
    /// scheduler's hello.
    Unreachable,
    /// The scheduler refused the worker (an `error` before
    /// `worker-registered`: a name in use, another protocol version...).
    Refused,
    /// No `worker-registered` within the register timeout.
    TimedOut,
    /// The scheduler broke the protocol before registering the worker.
    Protocol,
    /// The connection ended after the scheduler's hello: lost before or
    /// after registering, and not registered again.
    Lost,
    /// The scheduler did not prove it holds the cluster's worker secret
    /// (it runs without authentication, or with other credentials): the
    /// worker does not trust it.
    Untrusted,
}

impl WorkerError {
    fn new(kind: WorkerErrorKind, message: impl Into<String>) -> WorkerError {
        WorkerError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkerError {}

impl WorkerState {
    // ---- inputs ---------------------------------------------------------

    /// The worker is asked to stop: `close` to the scheduler (when
    /// connected), then it finishes cleanly.
    pub fn handle_stop(&mut self, now: Timestamp) {
        self.now = now;
        if let Phase::Registering { conn, .. } | Phase::Registered { conn } = self.phase {
            self.release_reports(true);
            let reason = Some("worker stopping".to_string());
            self.send(
                conn,
                Message::Close(Close {
                    reason,
                    reconnect: None,
                }),
            );
        }
        self.finish(None);
    }

    /// The data listener asked for with [`WorkerOutput::Listen`] is bound
    /// at `address` (`tcp://HOST:PORT`): the worker registers with it.
    pub fn handle_listening(&mut self, now: Timestamp, address: String) {
        self.now = now;
        if self.is_finished() {
            return;
        }
        self.config.address = address;
        self.listener = Listener::Ready;
        if matches!(self.phase, Phase::Reconnecting { at } if at <= now) {
            self.start_registration();
        }
    }

    /// The data listener asked for with [`WorkerOutput::Listen`] could not
    /// be bound: this registration attempt fails.
    pub fn handle_listen_failed(&mut self, now: Timestamp, error: &str) {
        self.now = now;
        if self.listener != Listener::Pending {
            return;
        }
        self.listener = Listener::Failed;
        if matches!(self.phase, Phase::Reconnecting { .. }) {
            let e = WorkerError::new(
                WorkerErrorKind::Unreachable,
                format!("cannot listen for peers: {error}"),
            );
            self.attempt_failed(e);
        }
    }

    // ---- inspection -----------------------------------------------------

    /// Whether the worker is registered with its scheduler now.
    pub fn is_registered(&self) -> bool {
        matches!(self.phase, Phase::Registered { .. })
    }

    /// Whether the worker is over (it said [`WorkerOutput::Finished`]).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The current scheduler connection, while there is one.
    pub fn scheduler_conn(&self) -> Option<ConnId> {
        match self.phase {
            Phase::Registering { conn, .. } | Phase::Registered { conn } => Some(conn),
            _ => None,
        }
    }

    // ---- registration -----------------------------------------------------

    /// Asks for a scheduler connection, with `register-worker` pipelined
    /// behind the hello.
    pub(super) fn start_registration(&mut self) {
        let config = &self.config;
        let mut functions: Vec<String> = config.functions.iter().cloned().collect();
        functions.sort();
        let register = RegisterWorker {
            name: config.name.clone(),
            address: config.address.clone(),
            nthreads: config.nthreads as u32,
            memory_limit: config.memory_limit,
            resources: Some(config.resources.clone()).filter(|r| !r.is_empty()),
            functions,
            pid: config.pid,
            // What it kept from before a lost scheduler (dask/1.1): a
            // scheduler restarted from its journal adopts it.
            held: (!self.data.is_empty()).then(|| {
                self.data
                    .iter()
                    .map(|(key, held)| (key.clone(), held.nbytes))
                    .collect()
            }),
        };
        let address = self.config.scheduler.clone();
        let register = vec![Message::RegisterWorker(register)];
        self.connect(ConnKind::Scheduler, &address, register);
        let deadline = self.now + self.config.register_timeout;
        self.phase = Phase::Connecting { deadline };
    }

    /// The scheduler connection asked for is `conn`.
    pub(super) fn scheduler_connecting(&mut self, conn: ConnId) {
        if let Phase::Connecting { deadline } = self.phase {
            self.phase = Phase::Registering {
                conn,
                hello: false,
                deadline,
            };
        }
    }

    /// The scheduler connection asked for could not even be started.
    pub(super) fn scheduler_unreachable(&mut self, reason: &str) {
        if let Phase::Connecting { .. } = self.phase {
            let message = format!(
                "cannot connect to the scheduler at {}: {reason}",
                self.config.scheduler
            );
            self.attempt_failed(WorkerError::new(WorkerErrorKind::Unreachable, message));
        }
    }

    /// A registration attempt failed: the worker finishes, or, while it
    /// reconnects and has time left, tries again later.
    fn registration_failed(&mut self, conn: ConnId, error: WorkerError) {
        self.forget_scheduler(conn);
        self.attempt_failed(error);
    }

    fn attempt_failed(&mut self, error: WorkerError) {
        match self.reconnect_until {
            Some(until) if self.now < until => {
                self.phase = Phase::Reconnecting {
                    at: self.now + self.config.reconnect_delay,
                };
            }
            Some(_) => {
                let message = format!(
                    "could not register again with {} within {} s: {error}",
                    self.config.scheduler,
                    self.config.reconnect_timeout.as_secs_f64()
                );
                self.finish(Some(WorkerError::new(error.kind, message)));
            }
            None => self.finish(Some(error)),
        }
    }

    fn registered(&mut self, conn: ConnId, id: u64) {
        self.phase = Phase::Registered { conn };
        self.reconnect_until = None;
        // The heartbeat's transfer totals count from a registration: a
        // scheduler that added a departed worker's totals to its own must
        // not count them again when the worker comes back.
        self.transfer_us = 0;
        self.transfer_bytes = 0;
        self.transfer_local_bytes = 0;
        let address = self.config.address.clone();
        self.outputs
            .push_back(WorkerOutput::Registered { id, address });
    }

    // ---- messages ---------------------------------------------------------

    /// A message on the scheduler connection `conn`.
    pub(super) fn scheduler_message(&mut self, conn: ConnId, message: Message) {
        match self.phase {
            Phase::Registered { conn: current } if current == conn => {
                self.registered_message(conn, message)
            }
            Phase::Registering {
                conn: current,
                hello,
                deadline,
            } if current == conn => match (hello, message) {
                (_, Message::ErrorReport(e)) => {
                    let message = format!(
                        "the scheduler refused the worker ({}): {}",
                        e.code, e.message
                    );
                    let e = WorkerError::new(WorkerErrorKind::Refused, message);
                    self.registration_failed(conn, e);
                }
                (false, Message::Hello(reply)) => {
                    let checked = handshake::check_reply(&reply, Role::Scheduler);
                    let proven = checked.and_then(|_| self.connector_proves(conn, &reply));
                    match proven {
                        Ok(()) => {
                            if let Some(c) = self.conns.get_mut(&conn) {
                                c.value_parts = handshake::lists_value_parts(&reply.features);
                            }
                            if !handshake::has_1_1(reply.version) {
                                // A dask/1.0 scheduler ignores `held`: it
                                // would never free those values.
                                self.drop_every_value();
                            }
                            self.phase = Phase::Registering {
                                conn,
                                hello: true,
                                deadline,
                            }
                        }
                        Err(e) if e.code == ErrorCode::AuthFailed => {
                            let hint = if reply.auth.is_none() {
                                " (if it runs with --no-auth-anyone-can-connect on purpose, \
                                 start this worker with that flag too)"
                            } else {
                                ""
                            };
                            let message = format!(
                                "not registering with {}: {}{hint}",
                                self.config.scheduler, e.message
                            );
                            let e = WorkerError::new(WorkerErrorKind::Untrusted, message);
                            self.registration_failed(conn, e);
                        }
                        Err(e) => self.scheduler_broke_protocol(conn, e),
                    }
                }
                (true, Message::WorkerRegistered(r)) => {
                    self.registered(conn, r.id);
                    self.registered_message(conn, Message::WorkerRegistered(r));
                }
                (false, other) => {
                    let e = WireError::new(
                        ErrorCode::BadHandshake,
                        format!("expected hello, got `{}`", other.op()),
                    );
                    self.scheduler_broke_protocol(conn, e);
                }
                (true, other) => {
                    let e = WireError::new(
                        ErrorCode::UnexpectedMessage,
                        format!("expected worker-registered, got `{}`", other.op()),
                    );
                    self.scheduler_broke_protocol(conn, e);
                }
            },
            _ => {}
        }
    }

    /// A message from the scheduler once registered.
    fn registered_message(&mut self, conn: ConnId, message: Message) {
        self.dirty = true;
        match message {
            Message::WorkerRegistered(r) => {
                self.inline_bytes_max = r.inline_bytes_max;
                let interval = Duration::from_millis(r.heartbeat_interval_ms);
                let interval = if r.heartbeat_interval_ms == 0 {
                    HEARTBEAT_INTERVAL_DEFAULT
                } else {
                    interval.max(HEARTBEAT_INTERVAL_MIN)
                };
                self.heartbeat_interval = Some(interval);
                self.next_heartbeat = Some(self.now + interval);
            }
            Message::ComputeTask(task) => self.compute_task(task),
            Message::FreeKeys(FreeKeys { keys }) => self.free_keys(keys),
            Message::StealRequest(StealRequest { key }) => self.steal(key),
            Message::PutData(put) => self.put_data(put),
            Message::GetData(GetData { request, keys }) => {
                for reply in self.data_replies(conn, request, &keys).0 {
                    self.emit(reply);
                }
            }
            Message::GetValueRange(request) => {
                let reply = self.value_range(request);
                self.emit(reply);
            }
            Message::Heartbeat(_) => {}
            // Told by a scheduler that misjudged it dead (dask/1.1): as
            // after a lost connection, when the worker reconnects at all.
            Message::Close(Close {
                reconnect: Some(true),
                reason,
            }) if !self.config.reconnect_timeout.is_zero() => {
                self.forget_scheduler(conn);
                let reason = reason.unwrap_or_else(|| "no reason given".into());
                self.scheduler_lost(format!("the scheduler said close ({reason})"));
            }
            Message::Close(_) => self.finish(None),
            Message::ErrorReport(e) if e.fatal => {
                self.forget_scheduler(conn);
                self.scheduler_lost(format!("scheduler error {}: {}", e.code, e.message));
            }
            // A non-fatal error (e.g. about a put-data we could not store)
            // changes nothing here.
            Message::ErrorReport(_) => {}
            other => {
                let e = WireError::new(
                    ErrorCode::UnexpectedMessage,
                    format!(
                        "`{}` is not a message a scheduler sends to a worker",
                        other.op()
                    ),
                );
                self.scheduler_broke_protocol(conn, e);
            }
        }
    }

    /// The scheduler broke a protocol rule (bad frame, a message not
    /// allowed): a fatal `error` goes out, then the connection is closed.
    pub(super) fn scheduler_broke_protocol(&mut self, conn: ConnId, e: WireError) {
        let registered = self.is_registered();
        if registered {
            self.release_reports(true);
        }
        self.send(conn, Message::error(&e, None));
        self.forget_scheduler(conn);
        if registered {
            self.scheduler_lost(e.message);
        } else {
            let message = format!("scheduler broke the protocol while registering: {e}");
            self.attempt_failed(WorkerError::new(WorkerErrorKind::Protocol, message));
        }
    }

    /// The scheduler connection `conn` ended (see
    /// [`WorkerState::handle_closed`]).
    pub(super) fn scheduler_closed(&mut self, conn: ConnId, reason: &str) {
        let phase = self.phase;
        self.forget_scheduler(conn);
        match phase {
            Phase::Registering { hello, .. } => {
                let (kind, what) = if hello {
                    (
                        WorkerErrorKind::Lost,
                        "ended before the worker was registered",
                    )
                } else {
                    (WorkerErrorKind::Unreachable, "could not be used")
                };
                let message = format!(
                    "the connection to the scheduler at {} {what}: {reason}",
                    self.config.scheduler
                );
                self.attempt_failed(WorkerError::new(kind, message));
            }
            Phase::Registered { .. } => {
                self.scheduler_lost(format!("lost the scheduler connection: {reason}"))
            }
            _ => {}
        }
    }

    /// Forgets the scheduler connection `conn` and has the edge close it.
    fn forget_scheduler(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.outputs.push_back(WorkerOutput::Close(conn));
        }
        self.held_reports.clear();
        self.held_since = None;
    }

    /// A registered scheduler connection is gone (already forgotten): the
    /// worker starts anew or finishes (see the module docs).
    fn scheduler_lost(&mut self, reason: String) {
        if self.config.reconnect_timeout.is_zero() {
            return self.finish(Some(WorkerError::new(WorkerErrorKind::Lost, reason)));
        }
        self.outputs.push_back(WorkerOutput::Log(LogRecord::new(
            Level::Warn,
            "scheduler-lost",
            format!(
                "{reason}; registering again as a new worker (for up to {} s)",
                self.config.reconnect_timeout.as_secs_f64()
            ),
        )));
        self.start_anew();
        self.reconnect_until = Some(self.now + self.config.reconnect_timeout);
        self.phase = Phase::Reconnecting {
            at: self.now + self.config.reconnect_delay,
        };
        self.listener = Listener::Pending;
        self.outputs.push_back(WorkerOutput::Listen);
    }

    /// Drops every task, fetch and data connection: what is left is a new
    /// worker holding only the values it had (listed as `held` when it
    /// registers, dask/1.1, and dropped if the scheduler speaks 1.0). Runs
    /// out on the executor are withdrawn where they have not started; the
    /// others end unheard (their task is gone), so no result of a run from
    /// before is ever reported.
    fn start_anew(&mut self) {
        self.close_data_connections();
        self.tasks.clear();
        self.by_key.clear();
        self.ready.clear();
        let mut runs: Vec<u64> = self.running.keys().copied().collect();
        runs.sort();
        for run_id in runs {
            if let std::collections::hash_map::Entry::Vacant(e) = self.withdrawals.entry(run_id) {
                e.insert(Withdrawal::Free);
                self.outputs.push_back(WorkerOutput::Withdraw { run_id });
            }
        }
        self.add_keys.clear();
        self.fetches.clear();
        self.pending_fetches.clear();
        self.delayed_fetches.clear();
        self.requests.clear();
        self.request_deadlines.clear();
        self.failed_addresses.clear();
        self.reply_bytes_in_flight.clear();
        self.heartbeat_interval = None;
        self.next_heartbeat = None;
        self.spill_retry_at = None;
        self.update_paused();
    }

    /// Drops every value held (a scheduler that will not hear of them).
    fn drop_every_value(&mut self) {
        let keys: Vec<_> = self.data.keys().cloned().collect();
        for key in keys {
            self.remove_held(&key);
        }
    }

    /// The worker is over: every connection closes, then
    /// [`WorkerOutput::Finished`].
    pub(super) fn finish(&mut self, error: Option<WorkerError>) {
        if self.is_finished() {
            return;
        }
        if let Some(conn) = self.scheduler_conn() {
            self.release_reports(true);
            self.forget_scheduler(conn);
        }
        self.close_data_connections();
        self.phase = Phase::Finished;
        self.outputs.push_back(WorkerOutput::Finished { error });
    }

    // ---- time -------------------------------------------------------------

    /// The scheduler side of [`WorkerState::handle_timeout`]: registration
    /// deadlines, reconnection attempts, heartbeats.
    pub(super) fn scheduler_timeouts(&mut self) {
        let now = self.now;
        match self.phase {
            Phase::Registering { conn, deadline, .. } if deadline <= now => {
                let message = "the scheduler did not answer the registration in time";
                self.send(
                    conn,
                    Message::Close(Close {
                        reason: None,
                        reconnect: None,
                    }),
                );
                let e = WorkerError::new(WorkerErrorKind::TimedOut, message);
                self.registration_failed(conn, e);
            }
            Phase::Connecting { deadline } if deadline <= now => {
                let message = "the scheduler connection was not started in time";
                let e = WorkerError::new(WorkerErrorKind::TimedOut, message);
                self.attempt_failed(e);
            }
            Phase::Reconnecting { at } if at <= now => match self.listener {
                Listener::Ready => self.start_registration(),
                Listener::Failed => {
                    self.listener = Listener::Pending;
                    self.outputs.push_back(WorkerOutput::Listen);
                }
                Listener::Pending => {}
            },
            Phase::Registered { .. } => self.heartbeat(),
            _ => {}
        }
    }

    fn heartbeat(&mut self) {
        let now = self.now;
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
    }

    /// When [`WorkerState::scheduler_timeouts`] next has something to do.
    pub(super) fn next_scheduler_timeout(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Connecting { deadline } | Phase::Registering { deadline, .. } => Some(deadline),
            Phase::Reconnecting { at } if self.listener != Listener::Pending => Some(at),
            Phase::Registered { .. } => {
                let release = self.held_since.map(|at| at + self.config.report_delay_max);
                [self.next_heartbeat, release].into_iter().flatten().min()
            }
            _ => None,
        }
    }

    // ---- reports ----------------------------------------------------------

    /// Queues a message for the scheduler (dropped when not registered).
    /// While the worker is busy, reports wait up to
    /// `config.report_delay_max` to go out together.
    pub(super) fn emit(&mut self, message: Message) {
        let Phase::Registered { conn } = self.phase else {
            return;
        };
        if self.config.report_delay_max.is_zero() {
            return self.send(conn, message);
        }
        self.held_reports.push(message);
        self.held_since.get_or_insert(self.now);
    }

    /// Sends the held reports unless they may wait longer (or `force`).
    /// True when it sent some.
    pub(super) fn release_reports(&mut self, force: bool) -> bool {
        if self.held_reports.is_empty() {
            return false;
        }
        let Phase::Registered { conn } = self.phase else {
            return false;
        };
        if !force {
            let held_for = self
                .now
                .saturating_duration_since(self.held_since.unwrap_or(self.now));
            let busy = REPORT_BATCH_BACKLOG_PER_THREAD * self.config.nthreads;
            if report_may_wait(self.backlog(), busy, held_for, self.config.report_delay_max) {
                return false;
            }
        }
        self.held_since = None;
        // The list keeps its room for the next batch: grown from nothing
        // each time, its reallocations copied every report again.
        let mut reports = std::mem::take(&mut self.held_reports);
        for message in reports.drain(..) {
            self.send(conn, message);
        }
        self.held_reports = reports;
        true
    }
}

/// Whether reports may wait longer, with `backlog` tasks queued or
/// running, `busy` of them making the worker busy, and the oldest report
/// waiting for `held_for` of at most `delay_max`.
pub(super) fn report_may_wait(
    backlog: usize,
    busy: usize,
    held_for: Duration,
    delay_max: Duration,
) -> bool {
    backlog >= busy && held_for < delay_max
}
