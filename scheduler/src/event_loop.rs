//! The scheduler's event loop: one thread, a [`Reactor`] holding every
//! connection, and the [`SchedulerState`]. It moves the reactor's events
//! and the time (a [`Clock`]'s timestamps) into the state and the state's
//! outputs back to the reactor; nothing else. The reactor does the socket
//! work: accept (with the retry when descriptors run out), the bounds on
//! connections before their hello, one write per connection per wakeup,
//! closing with linger.
//!
//! Per wakeup: every event first (all the input that waited), then the
//! state's timeouts if due, after reading once more without waiting, so
//! time the scheduler did not run (a pause of the process) never counts
//! against peers whose messages wait unread.
//! The loop sleeps until the state's next deadline or an event: there is
//! no fixed tick.
//!
//! What waits for the journal (`--journal`): the state's records go to the
//! journal's writing thread ([`JournalWriter`]) as each wakeup ends, and
//! the loop goes on without waiting for their `fdatasync`. A message to
//! any peer but a registered worker (clients: acknowledgements, outcomes,
//! replies) is held until every record appended before it is durable, and
//! then sent, in order. Messages to workers are not held: what a worker
//! does on a record a crash loses is either adopted when it lists what it
//! holds, or dropped (see `state::durable`), and no client was told. The
//! loop asks the thread to sync only records a held message waits for;
//! the others are written at once and synced within a second.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dask_core::auth::AuthConfig;
use dask_core::log::{Level, LogRecord};
use dask_core::{ConnId, Message, Timestamp};
use dask_net::log::Logger;
use dask_net::{
    Clock, CloseReason, NetEvent, Reactor, ReactorConfig, Waker, ACCEPT_RETRY_INTERVAL,
};

use crate::dashboard::{
    Dashboard, DashboardConfig, DashboardLink, LoopStats, Published, QueryKind, PUBLISH_INTERVAL,
    QUERIES_PER_WAKEUP,
};
use crate::journal::holdback::Holdback;
use crate::journal::writer::JournalWriter;
use crate::state::{SchedulerOutput, SchedulerState, SchedulerStateConfig};
use journal_open::{journal_failed, open_journal};

mod config;
mod handle;
mod journal_open;

pub use config::{SchedulerConfig, DEFAULT_PORT, WRITE_TIMEOUT_DEFAULT};
pub use dask_net::{CLOSE_LINGER, CONNECTIONS_MAX, HANDSHAKE_BYTES_MAX};
pub use handle::{serve, SchedulerHandle};
pub use journal_open::JournalRefused;

/// Longest [`EventLoop::run`] waits, once stopped, for peers to take their
/// `close` and hang up.
pub const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);

/// How often [`EventLoop::run`] looks at its `also_stop` flag while
/// nothing else wakes it (a [`Stopper`] wakes it at once).
pub const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A wakeup whose handling takes longer than this is logged (the
/// scheduler answered nobody meanwhile).
pub const SLOW_EVENT: Duration = Duration::from_secs(1);

/// How long a wakeup handles events before it writes what they sent so
/// far. The reactor reads a client's whole burst of graph parts in one
/// wakeup; without this the workers would wait for the last part to be
/// taken in before they saw the first part's tasks.
pub const FLUSH_WITHIN_WAKEUP: Duration = Duration::from_millis(1);

/// What a Python Dask client or worker that reached this scheduler is told
/// (it raises it as an exception, or logs it).
const PYTHON_DASK_REFUSAL: &str =
    "this is a dask-rs (dask/1) scheduler, not a Python Dask one: Python Dask's clients and \
     workers cannot use it (use dask-rs's: Rust, C, C++, Node, or the dask-rs command)";

/// Stops a running [`EventLoop`] from any thread (or a signal handler:
/// it stores to an atomic and writes to an eventfd).
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Waker,
}

impl Stopper {
    /// Asks the loop to say `close` to everyone and return.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A bound scheduler, ready to [`run`](EventLoop::run).
pub struct EventLoop {
    reactor: Reactor,
    address: String,
    stopper: Stopper,
    state: SchedulerState,
    /// Turns the loop's `Instant`s into the state's timestamps.
    clock: Clock,
    logger: Logger,
    /// The HTTP side and its link, when served.
    dashboard: Option<(Dashboard, DashboardLink)>,
    stats: LoopMeasures,
    /// The journal, with `--journal`: records are appended as the state
    /// emits them and handed to its writing thread before each poll.
    journal: Option<JournalWriter>,
    /// Outputs waiting for the journal (see the module docs).
    held: Holdback<SchedulerOutput>,
}

/// What the loop measures of itself between publications.
#[derive(Debug, Default)]
struct LoopMeasures {
    totals: LoopStats,
    busy_since_publish: Duration,
    longest_since_publish: Duration,
    last_publish: Option<Instant>,
}

/// The `tcp://HOST:PORT` (or `tls://`) form, with brackets around IPv6
/// hosts.
fn display_address(host: &str, port: u16, tls: bool) -> String {
    let scheme = if tls { "tls" } else { "tcp" };
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

impl EventLoop {
    /// Binds the listening socket.
    pub fn bind(config: &SchedulerConfig) -> io::Result<EventLoop> {
        let host = config.host.trim_start_matches('[').trim_end_matches(']');
        let addr: SocketAddr = (host, config.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "host resolves to nothing")
            })?;
        let mut reactor = Reactor::new(ReactorConfig {
            handshake_bytes_max: config.handshake_bytes_max,
            frame_bytes_max: config.frame_bytes_max,
            write_timeout: config.write_timeout,
            busy_poll: config.busy_poll,
            python_dask_refusal: PYTHON_DASK_REFUSAL.to_owned(),
            tls: config.tls.clone(),
            ..ReactorConfig::default()
        })?;
        let listener = match config.tls {
            Some(_) => reactor.listen_tls(addr)?,
            None => reactor.listen(addr)?,
        };
        let port = reactor.local_addr(listener)?.port();
        let dashboard = match &config.dashboard {
            None => None,
            Some(d) => {
                let d = DashboardConfig {
                    access: d.access.clone().for_cluster(config.credentials.as_ref()),
                    ..d.clone()
                };
                let (dashboard, link, fell_back) =
                    Dashboard::start(&d, reactor.waker()).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot serve the dashboard on {}:{}: {e}", d.host, d.port),
                        )
                    })?;
                if let Some(f) = fell_back {
                    config.logger.log(&LogRecord::new(
                        Level::Warn,
                        "dashboard-port-taken",
                        format!(
                            "port {} is taken: the dashboard is on port {} instead",
                            f.wanted,
                            dashboard.address().port()
                        ),
                    ));
                }
                Some((dashboard, link))
            }
        };
        let clock = Clock::new();
        let mut state = SchedulerState::new(
            SchedulerStateConfig {
                heartbeat_timeout: config.heartbeat_timeout,
                handshake_timeout: config.handshake_timeout,
                validate: config.validate,
                allowed_failures: config.allowed_failures,
                spill_failed_timeout: config.spill_failed_timeout,
                auth: config.credentials.clone().map(|credentials| AuthConfig {
                    credentials,
                    nonce_seed: dask_net::credentials::nonce(),
                }),
                journal: config.journal.is_some(),
                session_seed: dask_net::credentials::nonce(),
                ..SchedulerStateConfig::default()
            },
            clock.now(),
        );
        let journal = match &config.journal {
            None => None,
            Some(dir) => Some(JournalWriter::start(
                open_journal(dir, &mut state, &config.logger)?,
                reactor.waker(),
            )?),
        };
        Ok(EventLoop {
            stopper: Stopper {
                flag: Arc::new(AtomicBool::new(false)),
                waker: reactor.waker(),
            },
            reactor,
            address: display_address(host, port, config.tls.is_some()),
            state,
            clock,
            logger: config.logger.clone(),
            dashboard,
            stats: LoopMeasures::default(),
            journal,
            held: Holdback::default(),
        })
    }

    /// Where the dashboard listens, when served.
    pub fn dashboard_address(&self) -> Option<SocketAddr> {
        self.dashboard.as_ref().map(|(d, _)| d.address())
    }

    /// The dashboard's page, `http://HOST:PORT/PREFIX/status` (with
    /// `?token=TOKEN` when it needs one), when served.
    pub fn dashboard_url(&self) -> Option<String> {
        self.dashboard.as_ref().map(|(d, _)| d.url())
    }

    /// The address clients and workers connect to, `tcp://HOST:PORT`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// A handle that stops the loop.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Serves until stopped by a [`Stopper`] or until `also_stop` becomes
    /// true (checked at least every [`STOP_CHECK_INTERVAL`]; a signal
    /// handler may set it, and should also call [`Stopper::stop`] to stop
    /// at once), then says `close` to every connection and returns.
    pub fn run(mut self, also_stop: Option<&AtomicBool>) -> io::Result<()> {
        let stopped = |s: &Stopper| {
            s.flag.load(Ordering::SeqCst) || also_stop.is_some_and(|f| f.load(Ordering::SeqCst))
        };
        while !stopped(&self.stopper) {
            self.report_output();
            let mut deadline = self.state.poll_timeout().map(|t| self.clock.instant(t));
            if also_stop.is_some() {
                let check = Instant::now() + STOP_CHECK_INTERVAL;
                deadline = Some(deadline.map_or(check, |d| d.min(check)));
            }
            if let Some(at) = self.next_publish() {
                deadline = Some(deadline.map_or(at, |d| d.min(at)));
            }
            self.commit_journal()?;
            self.reactor.poll(deadline)?;
            let woke = Instant::now();
            // A wakeup is one step of a release, whatever it reads.
            self.state.begin_wakeup();
            self.handle_events(self.clock.now());
            if self
                .state
                .poll_timeout()
                .is_some_and(|at| at <= self.clock.now())
            {
                // What waits unread is read before any timeout is judged,
                // at a time taken before that read: time the scheduler did
                // not run (a pause of the process, a long event) must not
                // count against peers whose messages wait in the sockets.
                let now = self.clock.now();
                self.commit_journal()?;
                self.reactor.poll(Some(Instant::now()))?;
                self.handle_events(now);
                self.state.handle_timeout(now);
                self.drain_outputs();
            }
            if self.state.take_shrunk() {
                return_freed_memory();
            }
            self.answer_queries();
            self.write_logs();
            self.measure(woke);
            self.maybe_publish();
        }
        self.shut_down()
    }

    /// Hands the records of this wakeup to the journal's thread, compacts
    /// when the events outweigh the live state, and sends what waited for
    /// records that are durable now. A failure of the journal stops the
    /// scheduler: it cannot keep its promise that what it acknowledged
    /// survives a crash, so it acknowledges nothing more (what waits for
    /// the journal is never sent).
    fn commit_journal(&mut self) -> io::Result<()> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        journal.add_framed(self.state.take_journal());
        journal.submit();
        // Records only outputs wait for need a sync (see `journal::writer`).
        journal.want_durable(self.held.waits_for());
        let live_tasks = self.state.task_count();
        if journal.should_compact(live_tasks) {
            journal.compact(self.state.journal_snapshot(), live_tasks);
        }
        journal.check().map_err(journal_failed)?;
        self.send_durable();
        Ok(())
    }

    /// Sends the held outputs whose records are durable, in order.
    fn send_durable(&mut self) {
        let durable = self
            .journal
            .as_ref()
            .map_or(u64::MAX, JournalWriter::durable);
        while let Some(output) = self.held.release(durable) {
            self.perform(output);
        }
    }

    /// When the next snapshot is due (with a dashboard).
    fn next_publish(&self) -> Option<Instant> {
        self.dashboard.as_ref()?;
        Some(
            self.stats
                .last_publish
                .map_or_else(Instant::now, |at| at + PUBLISH_INTERVAL),
        )
    }

    /// Counts this wakeup's handling time; logs a slow one.
    fn measure(&mut self, woke: Instant) {
        let took = woke.elapsed();
        let s = &mut self.stats;
        s.totals.wakeups_total += 1;
        s.totals.busy_seconds_total += took.as_secs_f64();
        s.busy_since_publish += took;
        s.longest_since_publish = s.longest_since_publish.max(took);
        if let Some(record) = slow_event(took) {
            self.logger.log(&record);
        }
    }

    /// Publishes a snapshot when one is due.
    fn maybe_publish(&mut self) {
        let Some((_, link)) = &self.dashboard else {
            return;
        };
        let now = Instant::now();
        let s = &mut self.stats;
        if s.last_publish.is_some_and(|at| now < at + PUBLISH_INTERVAL) {
            return;
        }
        let interval = s
            .last_publish
            .map_or(PUBLISH_INTERVAL, |at| now.duration_since(at));
        s.totals.busy_fraction =
            (s.busy_since_publish.as_secs_f64() / interval.as_secs_f64().max(1e-9)).min(1.0);
        s.totals.longest_event_seconds = s.longest_since_publish.as_secs_f64();
        s.busy_since_publish = Duration::ZERO;
        s.longest_since_publish = Duration::ZERO;
        s.last_publish = Some(now);
        link.publish(Published {
            address: self.address.clone(),
            state: self.state.snapshot(),
            event_loop: s.totals.clone(),
            at: Some(now),
        });
    }

    /// Answers the dashboard's queries waiting, a bounded number.
    fn answer_queries(&mut self) {
        let Some((_, link)) = &self.dashboard else {
            return;
        };
        for _ in 0..QUERIES_PER_WAKEUP {
            let Some(query) = link.next_query() else {
                break;
            };
            let answer = match &query.kind {
                QueryKind::Task(key) => self.state.task_detail(key).unwrap_or_default(),
                QueryKind::Waiting {
                    cursor,
                    limit,
                    state,
                } => self
                    .state
                    .waiting_page(*cursor, *limit, state.as_deref())
                    .to_json(),
            };
            self.stats.totals.queries_total += 1;
            let _ = query.reply.try_send(answer);
        }
    }

    /// Writes the state's log records.
    fn write_logs(&mut self) {
        while let Some(record) = self.state.poll_log() {
            self.logger.log(&record);
        }
    }

    /// Hands every event that is ready to the state, stamped `now`.
    fn handle_events(&mut self, now: Timestamp) {
        let mut flushed = Instant::now();
        while let Some(event) = self.reactor.next_event() {
            self.on_event(now, event);
            if flushed.elapsed() >= FLUSH_WITHIN_WAKEUP {
                self.reactor.flush();
                flushed = Instant::now();
            }
        }
    }

    /// Writes what was sent, then tells the state how much still waits
    /// for the clients it sent gather replies to: their next gathers start
    /// only once they read (see `state::outflow`).
    fn report_output(&mut self) {
        self.reactor.flush();
        let queued: Vec<(ConnId, u64)> = self
            .state
            .clients_with_output()
            .map(|conn| (conn, self.reactor.queued_bytes(conn) as u64))
            .collect();
        if !queued.is_empty() {
            self.state.handle_output_queued(self.clock.now(), &queued);
            self.drain_outputs();
        }
    }

    fn on_event(&mut self, now: Timestamp, event: NetEvent) {
        match event {
            NetEvent::Accepted { conn, .. } => {
                self.state.handle_connected(now, conn);
                if let Some(binding) = self.reactor.channel_binding(conn) {
                    self.state.handle_channel_binding(conn, binding);
                }
            }
            NetEvent::Frame { conn, messages } => self.state.handle_frame(now, conn, messages),
            NetEvent::Closed { conn, reason } => {
                match &reason {
                    CloseReason::Protocol(e) => {
                        let _ = self.reactor.send(conn, &Message::error(e, None));
                        self.state.handle_refused(now, conn, e.code, &e.message);
                    }
                    &CloseReason::WriteTimeout { unwritten, idle } => {
                        self.state
                            .handle_write_timeout(now, conn, unwritten as u64, idle);
                    }
                    _ => {}
                }
                self.state.handle_closed(now, conn);
            }
            NetEvent::AcceptFailed { error, .. } => {
                self.logger.log(&LogRecord::new(
                    Level::Error,
                    "accept-failed",
                    format!(
                        "accept failed: {error} (retrying every {} ms)",
                        ACCEPT_RETRY_INTERVAL.as_millis()
                    ),
                ));
            }
            // The scheduler makes no outgoing connections.
            NetEvent::Connected { .. } | NetEvent::ConnectFailed { .. } => {}
        }
        self.drain_outputs();
    }

    /// Hands the state's outputs to the reactor, or to the journal; holds
    /// what must wait for the journal (see the module docs).
    fn drain_outputs(&mut self) {
        while let Some(output) = self.state.poll_output() {
            let Some(journal) = &mut self.journal else {
                self.perform(output);
                continue;
            };
            let conn = match &output {
                // Its bytes are in the state's buffer, handed over before
                // the next submit (`commit_journal`).
                SchedulerOutput::Journal => {
                    journal.count_framed();
                    continue;
                }
                SchedulerOutput::Send(conn, _) | SchedulerOutput::Close(conn) => *conn,
            };
            let (appended, durable) = (journal.appended(), journal.durable());
            // Nothing waits and every record is durable: it leaves,
            // whoever it is for.
            let all_clear = self.held.is_empty() && appended <= durable;
            if !all_clear
                && self
                    .held
                    .must_wait(conn, appended, durable, self.state.is_worker_conn(conn))
            {
                self.held.hold(conn, output, appended);
            } else {
                self.perform(output);
            }
        }
    }

    /// Sends or closes now.
    fn perform(&mut self, output: SchedulerOutput) {
        match output {
            SchedulerOutput::Send(conn, message) => self.send(conn, &message),
            SchedulerOutput::Close(conn) => self.reactor.close(conn),
            // Only without a journal (`drain_outputs` counts them otherwise).
            SchedulerOutput::Journal => {}
        }
    }

    fn send(&mut self, conn: ConnId, message: &Message) {
        if let Err(e) = self.reactor.send(conn, message) {
            // Too large for any frame: say so instead.
            let _ = self
                .reactor
                .send(conn, &Message::error(&e, request_of(message)));
        }
    }

    /// Says `close` to everyone, delivers it, and waits a little for the
    /// peers to hang up.
    fn shut_down(mut self) -> io::Result<()> {
        let now = Instant::now();
        self.state.handle_shutdown(self.clock.at(now));
        self.drain_outputs();
        if let Some(mut journal) = self.journal.take() {
            journal.add_framed(self.state.take_journal());
            journal.finish().map_err(journal_failed)?;
        }
        self.send_durable();
        self.write_logs();
        if let Some((dashboard, _)) = self.dashboard.take() {
            dashboard.stop();
        }
        // Connections the state did not know (no hello yet) close too.
        self.reactor.close_all(now + SHUTDOWN_LINGER);
        Ok(())
    }
}

/// Returns the pages malloc holds free to the OS, after the state shrank
/// its tables (glibc keeps freed memory in its heap otherwise: a scheduler
/// that once held a large graph would keep its peak). Elsewhere nothing:
/// other allocators return pages themselves, or cannot be asked.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointer and only walks
        // malloc's own arenas, under their locks; any thread may call it.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The `request` of a message that answers one.
fn request_of(message: &Message) -> Option<u64> {
    match message {
        Message::GatherReply(m) => Some(m.request),
        Message::WhoHasReply(m) => Some(m.request),
        Message::ClusterInfoReply(m) => Some(m.request),
        Message::Dataset(m) => Some(m.request),
        Message::Datasets(m) => Some(m.request),
        Message::PutData(m) => Some(m.request),
        Message::GetData(m) => Some(m.request),
        _ => None,
    }
}

/// The operator's line for a wakeup that took `took`, when that is at
/// least [`SLOW_EVENT`].
fn slow_event(took: Duration) -> Option<LogRecord> {
    (took >= SLOW_EVENT).then(|| {
        LogRecord::new(
            Level::Warn,
            "slow-event",
            format!(
                "the event loop was busy for {} ms in one wakeup: no peer was answered meanwhile",
                took.as_millis()
            ),
        )
        .with("seconds", took.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wakeup_of_a_second_or_more_is_one_warning_line() {
        assert!(slow_event(SLOW_EVENT - Duration::from_millis(1)).is_none());
        let record = slow_event(Duration::from_millis(1500)).expect("a slow wakeup");
        assert_eq!((record.level, record.event), (Level::Warn, "slow-event"));
        assert!(record.message.contains("1500 ms"), "{}", record.message);
    }
}
