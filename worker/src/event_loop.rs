//! The worker's event loop: one thread, a [`Reactor`] holding the data
//! listener and every connection, the executor pool, and the
//! [`WorkerState`]. It moves the reactor's events, executor completions and
//! the time (a [`Clock`]'s timestamps) into the machine, and does what the
//! machine says (connect, send, end a frame, close, listen anew, run a job,
//! withdraw one); nothing else. Which connection is which, the hellos and
//! their deadlines, registration and registering again after losing the
//! scheduler are the machine's; accept, the bounds before a hello, one
//! write per connection per wakeup and closing with linger are the
//! reactor's.
//!
//! Per wakeup: every event first, then completions, then the machine's
//! timeouts if due (after reading once more without waiting, so time the
//! worker did not run never counts against what waits in its sockets),
//! then its outputs, all at once: fetches and task starts are decided for
//! everything that arrived together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::auth::{AuthConfig, Credentials};
use dask_core::log::Level;
use dask_core::worker::{
    Job, TaskDone, WorkerError, WorkerErrorKind, WorkerOutput, WorkerState, WorkerStateConfig,
    HANDSHAKE_TIMEOUT, MEMORY_PAUSE_FRACTION_DEFAULT, MEMORY_TARGET_FRACTION_DEFAULT,
};
use dask_core::{ConnId, Timestamp};
use dask_net::log::{LogFormat, Logger};
use dask_net::{
    parse_endpoint, Clock, CloseReason, Endpoint, ListenerId, NetEvent, Reactor, ReactorConfig,
    TlsConfig, Waker, ACCEPT_RETRY_INTERVAL, BUSY_POLL,
};

use crate::executor::ExecutorPool;
use crate::function::FunctionRegistry;
use crate::local::{self, LocalReader};
use crate::spill::{default_local_directory, FileSpillStore};

/// How long a stopping worker keeps trying to deliver its last messages
/// (and waits for its peers to hang up).
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a Python Dask client or worker that reached a worker's data port
/// is told.
const PYTHON_DASK_REFUSAL: &str =
    "this is a dask-rs (dask/1) worker's data address, not a Python Dask one: Python Dask's \
     clients and workers cannot use it";

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The scheduler's address, `tcp://HOST:PORT` or `tls://HOST:PORT`.
    pub scheduler: String,
    /// Tasks run at once, on executor threads; a quick function's job
    /// ([`FunctionRegistry::mark_quick`]) may run on the event loop's
    /// thread beside them. Default: the machine's available parallelism.
    pub nthreads: usize,
    /// Unique name. Default: `worker-<host>-<pid>-<n>`, unique in the process.
    pub name: Option<String>,
    /// Host the data listener binds (on a free port). Default "127.0.0.1".
    pub host: String,
    /// Resources offered, e.g. {"GPU": 2}. Default: none.
    pub resources: BTreeMap<String, f64>,
    /// Memory limit in bytes (the sum of the sizes of the values held in
    /// memory), announced to the scheduler; past fractions of it values
    /// are spilled to disk and task starts paused. `None` or 0: no limit.
    /// Default: none.
    pub memory_limit: Option<u64>,
    /// Values are spilled to disk while the bytes in memory exceed this
    /// fraction of the limit. `None`: never spill. Default
    /// [`MEMORY_TARGET_FRACTION_DEFAULT`] (Dask's
    /// `distributed.worker.memory.target`).
    pub memory_target_fraction: Option<f64>,
    /// No task is started while the bytes in memory exceed this fraction of
    /// the limit. `None`: never pause. Default
    /// [`MEMORY_PAUSE_FRACTION_DEFAULT`] (Dask's
    /// `distributed.worker.memory.pause`).
    pub memory_pause_fraction: Option<f64>,
    /// Where the worker makes its own directory (`worker-<pid>-<n>`) for
    /// spilled values, removed when the worker stops; made only when it
    /// spills (a limit and a target). Default:
    /// [`default_local_directory`] (`<temp dir>/dask-worker-space`).
    pub local_directory: Option<PathBuf>,
    /// An incoming data connection that sends no `hello` for this long is
    /// refused (3002) and closed. Default [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// After losing the scheduler (not after its `close`), try for this
    /// long to register again as a new, empty worker (same name, a new data
    /// address), every second; [`WorkerHandle::join`] ends with the error
    /// only if that fails. Zero (the default): it ends at once.
    pub reconnect_timeout: Duration,
    /// Functions offered. Default: [`FunctionRegistry::builtins`].
    pub functions: FunctionRegistry,
    /// The cluster's credentials (the worker secret is used): the worker
    /// proves it to the scheduler and to the workers it fetches from,
    /// requires them to prove it back, and serves its data address only
    /// to peers that prove it. `None`: no proofs, and anyone who reaches
    /// the data address is served (for a scheduler started with
    /// `--no-auth-anyone-can-connect`). Default `None`; `dask-worker`
    /// finds the cluster's file unless told not to.
    pub credentials: Option<Credentials>,
    /// TLS: a certificate and key make the data address `tls://` (and,
    /// with the CA, require peers' certificates); the CA lets the worker
    /// connect to a `tls://` scheduler and to TLS peers. Default `None`.
    pub tls: Option<TlsConfig>,
    /// Largest frame the worker sends ([`dask_net::ReactorConfig::frame_bytes_max`]:
    /// lower only for tests). Default [`dask_core::FRAME_BYTES_MAX`].
    pub frame_bytes_max: usize,
    /// Where the operator's log records go (a lost scheduler, spilling,
    /// a failing disk, the pause). Default: `info` and above, as text, to
    /// standard error.
    pub logger: Logger,
    /// How long the event loop and each executor thread look for more
    /// work without sleeping after their last
    /// ([`dask_net::ReactorConfig::busy_poll`]). Default [`BUSY_POLL`].
    pub busy_poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            scheduler: "tcp://127.0.0.1:8796".into(),
            nthreads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            name: None,
            host: "127.0.0.1".into(),
            resources: BTreeMap::new(),
            memory_limit: None,
            memory_target_fraction: Some(MEMORY_TARGET_FRACTION_DEFAULT),
            memory_pause_fraction: Some(MEMORY_PAUSE_FRACTION_DEFAULT),
            local_directory: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            reconnect_timeout: Duration::ZERO,
            functions: FunctionRegistry::builtins(),
            credentials: None,
            tls: None,
            frame_bytes_max: dask_core::FRAME_BYTES_MAX,
            logger: Logger::new("dask-worker", Level::Info, LogFormat::Text),
            busy_poll: BUSY_POLL,
        }
    }
}

/// Shared between a handle and its event loop.
struct Control {
    stop: AtomicBool,
    waker: Waker,
    /// The data address registered last, and how many registrations so far.
    registration: Mutex<(String, u64)>,
}

/// A running worker: its event loop and executor threads.
pub struct WorkerHandle {
    name: String,
    spill_directory: Option<PathBuf>,
    control: Arc<Control>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl WorkerHandle {
    /// Binds the data listener, connects to the scheduler, registers, and
    /// returns once the scheduler accepted the worker (`worker-registered`),
    /// or an error (refused, unreachable, no answer within the machine's
    /// register timeout, 10 s).
    pub fn start(config: WorkerConfig) -> io::Result<WorkerHandle> {
        let nthreads = config.nthreads.max(1);
        let name = config.name.clone().unwrap_or_else(default_name);
        let scheduler = parse_endpoint(&config.scheduler)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listens_tls = config.tls.as_ref().is_some_and(|t| t.can_listen());
        if scheduler.tls && !config.tls.as_ref().is_some_and(|t| t.can_connect()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the scheduler's address {} is TLS: give this worker the cluster's CA \
                     certificate (--tls-ca-file)",
                    config.scheduler
                ),
            ));
        }
        // First, so a failure leaves nothing running; removed on any error
        // below when the store is dropped.
        let memory_limit = config.memory_limit.filter(|&limit| limit > 0);
        let mut spill_store = if memory_limit.is_some() && config.memory_target_fraction.is_some() {
            let parent = config
                .local_directory
                .clone()
                .unwrap_or_else(default_local_directory);
            Some(FileSpillStore::create_in(&parent)?)
        } else {
            None
        };
        let spill_directory = spill_store.as_ref().map(|s| s.directory().to_path_buf());
        let mut reactor = Reactor::new(ReactorConfig {
            python_dask_refusal: PYTHON_DASK_REFUSAL.to_owned(),
            tls: config.tls.clone(),
            frame_bytes_max: config.frame_bytes_max,
            busy_poll: config.busy_poll,
            frame_buffers_bytes_max: value_buffers_bytes_max(memory_limit),
            frame_buffers_idle: VALUE_BUFFERS_IDLE,
            ..ReactorConfig::default()
        })?;
        if let Some(store) = spill_store.as_mut() {
            // Values read back take dropped values' buffers, as received ones do.
            store.use_buffers(reactor.frame_buffers());
        }
        let listener = listen(&mut reactor, resolve(&config.host)?, listens_tls)?;
        let address = data_address(&reactor, listener, listens_tls)?;
        let waker = reactor.waker();
        let local_reads = LocalReader::new(reactor.frame_buffers(), waker.clone());
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            waker: waker.clone(),
            registration: Mutex::new((address.clone(), 0)),
        });
        let wake = Box::new(move || drop(waker.wake()));
        let pool = ExecutorPool::start(
            nthreads,
            config.functions.clone(),
            wake,
            &name,
            config.busy_poll,
        )?;
        let functions = config.functions.names().into_iter().collect::<HashSet<_>>();
        let mut state_config =
            WorkerStateConfig::new(&config.scheduler, &name, address, nthreads, functions);
        state_config.pid = Some(std::process::id());
        state_config.local = local::identity();
        state_config.resources = config.resources.clone();
        state_config.memory_limit = memory_limit;
        state_config.memory_target_fraction = config.memory_target_fraction;
        state_config.memory_pause_fraction = config.memory_pause_fraction;
        state_config.handshake_timeout = config.handshake_timeout;
        state_config.reconnect_timeout = config.reconnect_timeout;
        state_config.auth = config.credentials.clone().map(|credentials| AuthConfig {
            credentials,
            nonce_seed: dask_net::credentials::nonce(),
        });
        let clock = Clock::new();
        let mut state = WorkerState::new(state_config, clock.now());
        if let Some(store) = spill_store {
            state = state.with_spill_store(Box::new(store));
        }
        let (registered_tx, registered_rx) = mpsc::channel();
        let mut event_loop = EventLoop {
            reactor,
            clock,
            state,
            host: config.host.clone(),
            listens_tls,
            listener,
            pool: Some(pool),
            local_reads,
            new_jobs: Vec::new(),
            completions: Vec::new(),
            control: Arc::clone(&control),
            registered: Some(registered_tx),
            connect_errors: HashMap::new(),
            stopping: false,
            exit: None,
            logger: config.logger.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("{name}-loop"))
            .spawn(move || event_loop.run())?;
        let mut handle = WorkerHandle {
            name,
            spill_directory,
            control,
            thread: Some(thread),
        };
        match registered_rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.stop_and_join();
                Err(e)
            }
            Err(mpsc::RecvError) => Err(handle
                .stop_and_join()
                .err()
                .unwrap_or_else(|| io::Error::other("the worker stopped while registering"))),
        }
    }

    /// The data address peers fetch from, `tcp://HOST:PORT` (a new one
    /// after registering again).
    pub fn address(&self) -> String {
        self.registration().0
    }

    /// How many times the worker registered so far (more than once after
    /// losing its scheduler and registering again).
    pub fn registrations(&self) -> u64 {
        self.registration().1
    }

    fn registration(&self) -> (String, u64) {
        match self.control.registration.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory spilled values go to (when the worker spills: a
    /// memory limit and a target); removed when the worker stops.
    pub fn spill_directory(&self) -> Option<&std::path::Path> {
        self.spill_directory.as_deref()
    }

    /// Whether the worker has stopped (closed by the scheduler, connection
    /// lost, or stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Sends `close` to the scheduler and stops; returns once the event
    /// loop has exited.
    pub fn stop(mut self) {
        let _ = self.stop_and_join();
    }

    /// Runs until the scheduler closes the worker (`Ok`) or the connection
    /// is lost or broken and not registered again (`Err`).
    pub fn join(mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the worker's event loop panicked"))),
            None => Ok(()),
        }
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.control.stop.store(true, Ordering::Release);
        let _ = self.control.waker.wake();
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the worker's event loop panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_and_join();
        }
    }
}

fn default_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("worker-{host}-{}-{n}", std::process::id())
}

/// A data listener at `addr`, TLS or not.
fn listen(reactor: &mut Reactor, addr: SocketAddr, tls: bool) -> io::Result<ListenerId> {
    match tls {
        true => reactor.listen_tls(addr),
        false => reactor.listen(addr),
    }
}

/// The address peers fetch from: `tls://HOST:PORT` for a TLS listener,
/// `tcp://HOST:PORT` otherwise.
fn data_address(reactor: &Reactor, listener: ListenerId, tls: bool) -> io::Result<String> {
    let addr = reactor.local_addr(listener)?;
    Ok(Endpoint { addr, tls }.to_string())
}

/// The address a data listener binds: `host`, any free port.
fn resolve(host: &str) -> io::Result<SocketAddr> {
    (host, 0)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host resolves to nothing"))
}

struct EventLoop {
    reactor: Reactor,
    clock: Clock,
    state: WorkerState,
    /// Where new data listeners bind.
    host: String,
    /// Whether data listeners speak TLS.
    listens_tls: bool,
    /// The data listener.
    listener: ListenerId,
    pool: Option<ExecutorPool>,
    /// Copies of values from holders on this host.
    local_reads: LocalReader,
    /// Jobs of the current drain, handed to the pool together.
    new_jobs: Vec<Job>,
    /// Completions taken from the pool (kept for its capacity).
    completions: Vec<TaskDone>,
    control: Arc<Control>,
    /// Told the first registration's outcome, then dropped.
    registered: Option<mpsc::Sender<io::Result<()>>>,
    /// Why scheduler connects failed, for the error a failed start returns
    /// (the operating system's error tells a refused connect from the
    /// scheduler's refusal).
    connect_errors: HashMap<ConnId, io::Error>,
    stopping: bool,
    /// Set when the loop should end, with what `join` returns.
    exit: Option<Option<WorkerError>>,
    /// Where the machine's log records go.
    logger: Logger,
}

impl EventLoop {
    fn run(&mut self) -> io::Result<()> {
        let result = self.run_inner();
        self.finish();
        let result = match (result, self.exit.take()) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(Some(error))) => Err(self.io_error(error)),
            (Ok(()), _) => Ok(()),
        };
        let Some(tx) = self.registered.take() else {
            return result;
        };
        // The start waiting for the registration gets the error itself (a
        // refused connect keeps the operating system's error code).
        match result {
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                let _ = tx.send(Err(e));
                Err(copy)
            }
            Ok(()) => {
                let e = io::Error::other("the worker stopped while registering");
                let _ = tx.send(Err(e));
                Ok(())
            }
        }
    }

    /// The error `join` (or a failed start) returns for `error`.
    fn io_error(&mut self, error: WorkerError) -> io::Error {
        let kind = match error.kind {
            WorkerErrorKind::Unreachable => {
                // The OS's own error, when a connect failed.
                if let Some(e) = self.connect_errors.drain().map(|(_, e)| e).next() {
                    return e;
                }
                io::ErrorKind::ConnectionAborted
            }
            WorkerErrorKind::Refused => io::ErrorKind::ConnectionRefused,
            WorkerErrorKind::TimedOut => io::ErrorKind::TimedOut,
            WorkerErrorKind::Protocol => io::ErrorKind::InvalidData,
            WorkerErrorKind::Lost => io::ErrorKind::ConnectionAborted,
            WorkerErrorKind::Untrusted => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, error.message)
    }

    fn run_inner(&mut self) -> io::Result<()> {
        self.drain_outputs(self.clock.now());
        while self.exit.is_none() {
            let deadline = self.state.poll_timeout().map(|t| self.clock.instant(t));
            self.reactor.poll(deadline)?;
            let now = self.clock.now();
            self.handle_events(now);
            self.take_completions(now);
            for (read, result) in self.local_reads.take() {
                self.state.handle_local_read(now, read, result);
            }
            if self.control.stop.load(Ordering::Acquire) && !self.stopping {
                self.stopping = true;
                self.state.handle_stop(now);
            }
            if self.state.poll_timeout().is_some_and(|at| at <= now) {
                // What waits unread is read before any timeout is judged,
                // at a time taken before that read.
                self.reactor.poll(Some(Instant::now()))?;
                self.handle_events(now);
                self.state.handle_timeout(now);
            }
            self.drain_outputs(now);
        }
        Ok(())
    }

    /// Hands every event that is ready to the machine, stamped `now`, and
    /// tells it which replies have been written.
    fn handle_events(&mut self, now: Timestamp) {
        while let Some(event) = self.reactor.next_event() {
            self.on_event(now, event);
        }
        let written: Vec<ConnId> = self
            .state
            .replying_to()
            .filter(|&conn| self.reactor.is_flushed(conn))
            .collect();
        for conn in written {
            self.state.handle_drained(now, conn);
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
            NetEvent::Closed { conn, reason } => match reason {
                CloseReason::Protocol(e) => self.state.handle_protocol_error(now, conn, e),
                CloseReason::PeerClosed => {
                    self.state
                        .handle_closed(now, conn, "closed by the other side")
                }
                CloseReason::PeerClosedMidFrame => self.state.handle_closed(
                    now,
                    conn,
                    "closed by the other side in the middle of a frame",
                ),
                CloseReason::Io(e) => self.state.handle_closed(now, conn, &e.to_string()),
                CloseReason::WriteTimeout { .. } => {
                    self.state
                        .handle_closed(now, conn, "it read nothing for the write timeout")
                }
            },
            NetEvent::ConnectFailed { conn, error } => {
                let reason = error.to_string();
                if self.state.scheduler_conn() == Some(conn) {
                    self.connect_errors.insert(conn, error);
                }
                self.state.handle_closed(now, conn, &reason);
            }
            // What the machine sent meanwhile goes out now; over TLS its
            // proofs cover the session's binding, known from now.
            NetEvent::Connected { conn } => {
                if let Some(binding) = self.reactor.channel_binding(conn) {
                    self.state.handle_channel_binding(conn, binding);
                }
            }
            NetEvent::AcceptFailed { error, .. } => eprintln!(
                "dask-worker: accept failed: {error} (retrying every {} ms)",
                ACCEPT_RETRY_INTERVAL.as_millis()
            ),
        }
    }

    fn take_completions(&mut self, now: Timestamp) {
        if let Some(pool) = self.pool.as_mut() {
            pool.take_completions(&mut self.completions);
            for done in self.completions.drain(..) {
                self.state.handle_task_done(now, done);
            }
        }
    }

    /// Last writes (the `close` to the scheduler and the like) and the
    /// peers' hang-ups, then the executor stops.
    fn finish(&mut self) {
        self.reactor.close_all(Instant::now() + CLOSE_FLUSH_TIMEOUT);
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
    }

    /// Does every output of the machine: quick jobs run here, and what
    /// their completions start next too.
    fn drain_outputs(&mut self, now: Timestamp) {
        loop {
            while let Some(output) = self.state.poll_output() {
                self.handle_output(now, output);
            }
            if !self.run_quick_jobs(now) {
                break;
            }
        }
        if !self.new_jobs.is_empty() {
            if let Some(pool) = self.pool.as_mut() {
                pool.submit(self.new_jobs.drain(..));
            }
        }
    }

    /// Runs the jobs of this drain that the pool runs on this thread
    /// ([`ExecutorPool::run_here`]) and hands their completions to the
    /// machine; whether there were any.
    fn run_quick_jobs(&mut self, now: Timestamp) -> bool {
        let Some(pool) = self.pool.as_ref() else {
            return false;
        };
        let completions = &mut self.completions;
        self.new_jobs.retain(|job| match pool.run_here(job) {
            Some(done) => {
                completions.push(done);
                false
            }
            None => true,
        });
        let ran = !self.completions.is_empty();
        for done in self.completions.drain(..) {
            self.state.handle_task_done(now, done);
        }
        ran
    }

    fn handle_output(&mut self, now: Timestamp, output: WorkerOutput) {
        match output {
            WorkerOutput::Connect { address } => {
                let started =
                    parse_endpoint(&address).map(|endpoint| self.reactor.connect_to(endpoint));
                self.state.handle_connecting(now, started);
            }
            WorkerOutput::Send(conn, message) => {
                if let Err(e) = self.reactor.send(conn, &message) {
                    // Only a message over the frame limit is refused, and
                    // the machine never builds one; report rather than
                    // lose it silently.
                    eprintln!("dask-worker: cannot send `{}`: {e}", message.op());
                }
            }
            WorkerOutput::EndFrame(conn) => self.reactor.end_frame(conn),
            WorkerOutput::Close(conn) => self.reactor.close(conn),
            WorkerOutput::Listen => self.listen(now),
            WorkerOutput::Execute(job) => self.new_jobs.push(job),
            WorkerOutput::ReadLocal(read) => self.local_reads.start(read),
            WorkerOutput::Withdraw { run_id } => {
                // A job of this same drain is not in the pool yet.
                let withdrawn = match self.new_jobs.iter().position(|j| j.run_id == run_id) {
                    Some(at) => {
                        self.new_jobs.remove(at);
                        true
                    }
                    None => self.pool.as_mut().is_some_and(|pool| pool.withdraw(run_id)),
                };
                self.state.handle_withdrawn(now, run_id, withdrawn);
            }
            WorkerOutput::Registered { address, .. } => {
                if let Ok(mut registration) = self.control.registration.lock() {
                    registration.0 = address;
                    registration.1 += 1;
                }
                self.connect_errors.clear();
                if let Some(tx) = self.registered.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            WorkerOutput::Log(record) => self.logger.log(&record),
            WorkerOutput::Finished { error } => {
                if self.exit.is_none() {
                    self.exit = Some(error);
                }
            }
        }
    }

    /// A new data listener in place of the old one.
    fn listen(&mut self, now: Timestamp) {
        let tls = self.listens_tls;
        let bound = resolve(&self.host)
            .and_then(|addr| listen(&mut self.reactor, addr, tls))
            .and_then(|listener| {
                let address = data_address(&self.reactor, listener, tls);
                if address.is_err() {
                    self.reactor.close_listener(listener);
                }
                Ok((listener, address?))
            });
        match bound {
            Ok((listener, address)) => {
                self.reactor.close_listener(self.listener);
                self.listener = listener;
                self.state.handle_listening(now, address);
            }
            Err(e) => self.state.handle_listen_failed(now, &e.to_string()),
        }
    }
}

/// Most bytes of received values' buffers a worker keeps once the values
/// are dropped, for the next values (dask_net::ReactorConfig::frame_buffers_bytes_max):
/// a fresh buffer costs the kernel a page mapped per 4 KiB, about as much
/// CPU as the socket's copy of the bytes. One value of up to 1 GiB, or a
/// quarter of the memory limit if that is less (kept buffers are not
/// counted as the worker's data).
fn value_buffers_bytes_max(memory_limit: Option<u64>) -> usize {
    let most = VALUE_BUFFERS_BYTES_MAX as u64;
    memory_limit.map_or(most, |limit| (limit / 4).min(most)) as usize
}

/// See [`value_buffers_bytes_max`].
const VALUE_BUFFERS_BYTES_MAX: usize = 1 << 30;

/// How long a worker keeps received values' buffers while none is used:
/// long enough to span the work between two large transfers.
const VALUE_BUFFERS_IDLE: Duration = Duration::from_secs(30);
