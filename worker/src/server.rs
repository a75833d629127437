//! The worker's I/O edge: one mio event loop thread owning the scheduler
//! connection, the data listener, peer connections (incoming and outgoing)
//! and the executor pool. It moves bytes and `Instant::now()` into
//! [`WorkerState`] and writes what it polls out; every connection touched
//! in a wakeup is flushed once at its end, so a wakeup's messages to one
//! peer cost one write.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{Close, ErrorReport, GetData, RegisterWorker, Role};
use dask_core::{ErrorCode, Message, WireError};
use dask_net::{
    format_address, parse_address, Conn, ConnError, ReadStatus, HELLO_FRAME_BYTES_MAX,
    READ_CHUNK_BYTES,
};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::executor::ExecutorPool;
use crate::function::FunctionRegistry;
use crate::spill::{default_local_directory, FileSpillStore};
use crate::state::{
    Job, PeerId, PeerLink, PeerVerdict, TaskDone, WorkerOutput, WorkerState, WorkerStateConfig,
    MEMORY_PAUSE_FRACTION_DEFAULT, MEMORY_TARGET_FRACTION_DEFAULT,
};

/// How long [`WorkerHandle::start`] waits to connect and be registered.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping worker keeps trying to write its last messages.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Most peer connections (incoming and outgoing) at once; further
/// incoming connections are closed at once.
pub const PEER_CONNECTIONS_MAX: usize = 4096;

/// How long an incoming data connection may take to send its `hello`
/// before it gets 3002 and is closed (spec: "Handshake").
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a Python Dask client or worker that reached a worker's data port
/// is told.
const PYTHON_DASK_REFUSAL: &str =
    "this is a dask-rs (dask/1) worker's data address, not a Python Dask one: Python Dask's \
     clients and workers cannot use it";

/// Longest sleep of the event loop without an event (it wakes earlier for
/// heartbeats, retries, completions and stop requests).
const POLL_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// How often accepting peers is tried again after it failed for want of
/// descriptors or memory.
const ACCEPT_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Queued or running tasks per thread from which a worker is busy for a
/// while whatever the scheduler says: its reports (task-finished and the
/// rest) may then wait up to [`REPORT_DELAY_MAX`] to go out together.
/// Tasks of microseconds otherwise cost one frame, one write and one
/// scheduler wakeup per handful of tasks, which is most of the work; an
/// idle or nearly idle worker (a chain, a single task) reports at once.
/// Dask batches these streams too (every 2 ms, busy or not).
pub const REPORT_BATCH_BACKLOG_PER_THREAD: usize = 128;

/// Longest a report waits for others to join it.
pub const REPORT_DELAY_MAX: Duration = Duration::from_millis(1);

/// Whether messages for the scheduler may wait longer, with `backlog` tasks
/// queued or running on `nthreads` threads and the oldest message waiting
/// for `held_for`.
fn report_may_wait(backlog: usize, nthreads: usize, held_for: Duration) -> bool {
    backlog >= REPORT_BATCH_BACKLOG_PER_THREAD * nthreads && held_for < REPORT_DELAY_MAX
}

const SCHEDULER: Token = Token(0);
const LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
const PEER_TOKEN_BASE: usize = 3;

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The scheduler's address, `tcp://HOST:PORT`.
    pub scheduler: String,
    /// Tasks run at once. Default: the machine's available parallelism.
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
    /// Functions offered. Default: [`FunctionRegistry::builtins`].
    pub functions: FunctionRegistry,
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
            functions: FunctionRegistry::builtins(),
        }
    }
}

/// Shared between a handle and its event loop.
struct Control {
    stop: AtomicBool,
    waker: Arc<Waker>,
}

/// A running worker: its event loop and executor threads.
pub struct WorkerHandle {
    name: String,
    address: String,
    spill_directory: Option<PathBuf>,
    control: Arc<Control>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl WorkerHandle {
    /// Binds the data listener, connects to the scheduler, registers, and
    /// returns once the scheduler accepted the worker (`worker-registered`),
    /// or an error (refused, unreachable, no answer within
    /// [`REGISTER_TIMEOUT`]).
    pub fn start(config: WorkerConfig) -> io::Result<WorkerHandle> {
        let nthreads = config.nthreads.max(1);
        let name = config.name.clone().unwrap_or_else(default_name);
        // First, so a failure leaves nothing running; removed on any error
        // below when the store is dropped.
        let spill_store = if config.memory_limit.is_some_and(|limit| limit > 0)
            && config.memory_target_fraction.is_some()
        {
            let parent = config
                .local_directory
                .clone()
                .unwrap_or_else(default_local_directory);
            Some(FileSpillStore::create_in(&parent)?)
        } else {
            None
        };
        let spill_directory = spill_store.as_ref().map(|s| s.directory().to_path_buf());
        let listener = std::net::TcpListener::bind((config.host.as_str(), 0))?;
        let address = format_address(listener.local_addr()?);
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener);

        let scheduler_addr = parse_address(&config.scheduler)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = std::net::TcpStream::connect_timeout(&scheduler_addr, REGISTER_TIMEOUT)?;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let stream = TcpStream::from_std(stream);

        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            waker: Arc::clone(&waker),
        });
        let pool = ExecutorPool::start(nthreads, config.functions.clone(), waker, &name)?;
        let register = RegisterWorker {
            name: name.clone(),
            address: address.clone(),
            nthreads: nthreads as u32,
            memory_limit: config.memory_limit,
            resources: if config.resources.is_empty() {
                None
            } else {
                Some(config.resources.clone())
            },
            functions: config.functions.names(),
            pid: Some(std::process::id()),
        };
        let mut state_config = WorkerStateConfig::new(
            address.clone(),
            nthreads,
            config.functions.names().into_iter().collect::<HashSet<_>>(),
        );
        state_config.resources = config.resources.clone();
        state_config.memory_limit = config.memory_limit.filter(|&limit| limit > 0);
        state_config.memory_target_fraction = config.memory_target_fraction;
        state_config.memory_pause_fraction = config.memory_pause_fraction;
        let mut state = WorkerState::new(state_config, Instant::now());
        if let Some(store) = spill_store {
            state = state.with_spill_store(Box::new(store));
        }
        let (registered_tx, registered_rx) = mpsc::channel();
        let mut event_loop = EventLoop {
            poll,
            state,
            scheduler: Conn::new(stream),
            phase: Phase::AwaitHello,
            scheduler_touched: false,
            accept_failing: false,
            report_held_since: None,
            listener,
            peers: Slab::new(),
            outgoing: HashMap::new(),
            peer_ids: HashMap::new(),
            next_peer_id: 0,
            handshake_timeout: config.handshake_timeout,
            handshake_deadlines: VecDeque::new(),
            pool: Some(pool),
            new_jobs: Vec::new(),
            completions: Vec::new(),
            control: Arc::clone(&control),
            scratch: vec![0; READ_CHUNK_BYTES],
            registered: Some(registered_tx),
            name: name.clone(),
            touched: Vec::new(),
            exit: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("{name}-loop"))
            .spawn(move || event_loop.run(register))?;
        let mut handle = WorkerHandle {
            name,
            address,
            spill_directory,
            control,
            thread: Some(thread),
        };
        match registered_rx.recv_timeout(REGISTER_TIMEOUT) {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.stop_and_join();
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = handle.stop_and_join();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the scheduler did not answer the registration in time",
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err(handle
                .stop_and_join()
                .err()
                .unwrap_or_else(|| io::Error::other("the worker stopped while registering"))),
        }
    }

    /// The data address peers fetch from, `tcp://HOST:PORT`.
    pub fn address(&self) -> String {
        self.address.clone()
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
    /// is lost or broken (`Err`).
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

/// Where the scheduler connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitRegistered,
    Running,
}

#[derive(Debug)]
enum PeerKind {
    /// Someone fetching from us.
    Incoming { id: PeerId },
    /// Us fetching from the worker at `address`.
    Outgoing { address: String, connected: bool },
}

struct PeerConn {
    conn: Conn,
    kind: PeerKind,
    handshaken: bool,
    touched: bool,
    /// The state machine has been told this connection is over.
    forgotten: bool,
}

struct EventLoop {
    poll: Poll,
    state: WorkerState,
    scheduler: Conn,
    phase: Phase,
    scheduler_touched: bool,
    /// The last accept failed for want of descriptors or memory: it is
    /// tried again every [`ACCEPT_RETRY_INTERVAL`].
    accept_failing: bool,
    /// Since when messages for the scheduler are held back (see
    /// [`REPORT_BATCH_BACKLOG_PER_THREAD`]).
    report_held_since: Option<Instant>,
    listener: TcpListener,
    peers: Slab<PeerConn>,
    outgoing: HashMap<String, usize>,
    peer_ids: HashMap<PeerId, usize>,
    next_peer_id: u64,
    handshake_timeout: Duration,
    /// (deadline, peer) of incoming connections in accept order, so the
    /// deadlines only grow; entries of connections that completed their
    /// handshake or are gone are skipped when they come due.
    handshake_deadlines: VecDeque<(Instant, PeerId)>,
    pool: Option<ExecutorPool>,
    /// Jobs of the current drain, handed to the pool together.
    new_jobs: Vec<Job>,
    /// Completions taken from the pool (kept for its capacity).
    completions: Vec<TaskDone>,
    control: Arc<Control>,
    scratch: Vec<u8>,
    registered: Option<mpsc::Sender<io::Result<()>>>,
    name: String,
    touched: Vec<usize>,
    /// Set when the loop should end, with what `join` returns.
    exit: Option<io::Result<()>>,
}

impl EventLoop {
    fn run(&mut self, register: RegisterWorker) -> io::Result<()> {
        let result = self.run_inner(register);
        let result = match result {
            Ok(()) => self.exit.take().unwrap_or(Ok(())),
            Err(e) => Err(e),
        };
        if let Some(tx) = self.registered.take() {
            let e = match &result {
                Err(e) => io::Error::new(e.kind(), e.to_string()),
                Ok(()) => io::Error::other("the worker stopped while registering"),
            };
            let _ = tx.send(Err(e));
        }
        self.finish();
        result
    }

    fn run_inner(&mut self, register: RegisterWorker) -> io::Result<()> {
        let registry = self.poll.registry();
        self.listener.register_all(registry)?;
        let hello = Message::Hello(handshake::offer(Role::Worker, Some(self.name.clone())));
        // The hello goes alone in the first frame; register-worker follows
        // in a second frame without waiting for the reply.
        self.send_scheduler(&hello);
        self.scheduler.flush().map_err(conn_io_error)?;
        self.send_scheduler(&Message::RegisterWorker(register));
        self.scheduler.flush().map_err(conn_io_error)?;
        self.scheduler.register(self.poll.registry(), SCHEDULER)?;

        let mut events = Events::with_capacity(1024);
        while self.exit.is_none() {
            let now = Instant::now();
            let report_due = self
                .report_held_since
                .map(|since| (since + REPORT_DELAY_MAX).saturating_duration_since(now));
            let timeout = self
                .state
                .poll_timeout()
                .map(|at| at.saturating_duration_since(now))
                .unwrap_or(POLL_TIMEOUT_MAX)
                .min(POLL_TIMEOUT_MAX)
                .min(report_due.unwrap_or(POLL_TIMEOUT_MAX));
            let timeout = if self.accept_failing {
                timeout.min(ACCEPT_RETRY_INTERVAL)
            } else {
                timeout
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if self.accept_failing {
                self.accept_peers();
            }
            for event in events.iter() {
                match event.token() {
                    SCHEDULER => self.scheduler_event(now, event.is_readable()),
                    LISTENER => self.accept_peers(),
                    WAKER => {}
                    Token(t) if t >= PEER_TOKEN_BASE => self.peer_event(
                        now,
                        t - PEER_TOKEN_BASE,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable() || event.is_error(),
                    ),
                    Token(_) => {}
                }
            }
            if let Some(pool) = self.pool.as_mut() {
                pool.take_completions(&mut self.completions);
                for done in self.completions.drain(..) {
                    self.state.handle_task_done(now, done);
                }
            }
            if self.control.stop.load(Ordering::Acquire) && self.exit.is_none() {
                self.send_scheduler(&Message::Close(Close {
                    reason: Some("worker stopping".into()),
                }));
                self.exit = Some(Ok(()));
            }
            self.expire_handshakes(now);
            self.state.handle_tick(now);
            self.drain_and_flush(now);
        }
        Ok(())
    }

    /// Refuses incoming connections that sent no `hello` in time (the
    /// loop wakes at least every [`POLL_TIMEOUT_MAX`], which is precise
    /// enough for this).
    fn expire_handshakes(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.handshake_deadlines.front() {
            if deadline > now {
                return;
            }
            self.handshake_deadlines.pop_front();
            let Some(&slot) = self.peer_ids.get(&id) else {
                continue; // gone already
            };
            if self.peers.get(slot).is_some_and(|p| !p.handshaken) {
                let e = WireError::new(
                    ErrorCode::BadHandshake,
                    "no hello within the handshake timeout",
                );
                self.reject_peer(now, slot, &e);
            }
        }
    }

    /// Last writes to the scheduler, then everything is closed.
    fn finish(&mut self) {
        let deadline = Instant::now() + CLOSE_FLUSH_TIMEOUT;
        loop {
            match self.scheduler.flush() {
                Ok(true) | Err(_) => break,
                Ok(false) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(false) => break,
            }
        }
        self.scheduler.shutdown();
        for (_, peer) in self.peers.iter_mut() {
            peer.conn.shutdown();
        }
        self.peers.clear();
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
    }

    fn send_scheduler(&mut self, message: &Message) {
        if let Err(e) = self.scheduler.send(message) {
            // Only a message over the frame limit is refused, and the state
            // machine never builds one; report rather than lose it silently.
            eprintln!("dask-worker: cannot send `{}`: {e}", message.op());
        }
        self.scheduler_touched = true;
    }

    fn fail_registration(&mut self, error: io::Error) {
        let message = error.to_string();
        if let Some(tx) = self.registered.take() {
            let _ = tx.send(Err(error));
        }
        self.exit = Some(Err(io::Error::other(message)));
    }

    fn scheduler_event(&mut self, now: Instant, readable: bool) {
        self.scheduler_touched = true;
        if !readable || self.exit.is_some() {
            return;
        }
        let mut frames = Vec::new();
        let status = self
            .scheduler
            .read(&mut self.scratch, &mut |f| frames.push(f));
        for message in frames.into_iter().flatten() {
            if self.exit.is_some() {
                return;
            }
            self.scheduler_message(now, message);
        }
        if self.exit.is_some() {
            return;
        }
        let lost = match status {
            Ok(ReadStatus::Open) => return,
            Ok(ReadStatus::Closed) => "the scheduler closed the connection".to_string(),
            Ok(ReadStatus::ClosedMidFrame) => {
                "the scheduler closed the connection in the middle of a frame".to_string()
            }
            Err(ConnError::Wire(e)) => {
                self.scheduler_protocol_error(now, e);
                return;
            }
            Err(ConnError::Io(e)) => format!("scheduler connection failed: {e}"),
        };
        if self.phase != Phase::Running {
            return self.fail_registration(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("{lost} before registering the worker"),
            ));
        }
        self.state.handle_scheduler_lost(now, lost);
    }

    fn scheduler_protocol_error(&mut self, now: Instant, e: WireError) {
        if self.phase == Phase::Running {
            self.state
                .handle_scheduler_protocol_error(now, e.code, e.message);
            return;
        }
        self.send_scheduler(&Message::error(&e, None));
        self.fail_registration(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("scheduler broke the protocol while registering: {e}"),
        ));
    }

    fn scheduler_message(&mut self, now: Instant, message: Message) {
        match (self.phase, message) {
            (Phase::Running, message) => self.state.handle_scheduler_message(now, message),
            (Phase::AwaitHello, Message::Hello(hello)) => {
                match handshake::check_reply(&hello, Role::Scheduler) {
                    Ok(_) => self.phase = Phase::AwaitRegistered,
                    Err(e) => self.scheduler_protocol_error(now, e),
                }
            }
            (Phase::AwaitRegistered, Message::WorkerRegistered(r)) => {
                self.phase = Phase::Running;
                if let Some(tx) = self.registered.take() {
                    let _ = tx.send(Ok(()));
                }
                self.state
                    .handle_scheduler_message(now, Message::WorkerRegistered(r));
            }
            (_, Message::ErrorReport(e)) => self.fail_registration(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "the scheduler refused the worker ({}): {}",
                    e.code, e.message
                ),
            )),
            (Phase::AwaitHello, other) => self.scheduler_protocol_error(
                now,
                WireError::new(
                    ErrorCode::BadHandshake,
                    format!("expected hello, got `{}`", other.op()),
                ),
            ),
            (Phase::AwaitRegistered, other) => self.scheduler_protocol_error(
                now,
                WireError::new(
                    ErrorCode::UnexpectedMessage,
                    format!("expected worker-registered, got `{}`", other.op()),
                ),
            ),
        }
    }

    fn accept_peers(&mut self) {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_failing = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors or the like: readiness is edge
                // triggered, so the connections already waiting would wait
                // for a new one; try again every ACCEPT_RETRY_INTERVAL.
                Err(e) => {
                    if !self.accept_failing {
                        eprintln!(
                            "dask-worker: accept failed: {e} (retrying every {} ms)",
                            ACCEPT_RETRY_INTERVAL.as_millis()
                        );
                    }
                    self.accept_failing = true;
                    return;
                }
            };
            if self.peers.len() >= PEER_CONNECTIONS_MAX {
                drop(stream);
                continue;
            }
            let id = PeerId(self.next_peer_id);
            self.next_peer_id += 1;
            let mut conn = Conn::new(stream);
            // Before its hello a peer gets one small frame (the spec's
            // hello_frame_bytes_max), not a 256 MiB buffer.
            conn.limit_until_hello(HELLO_FRAME_BYTES_MAX, PYTHON_DASK_REFUSAL);
            let slot = self.peers.vacant_entry();
            let token = Token(PEER_TOKEN_BASE + slot.key());
            if conn.register(self.poll.registry(), token).is_err() {
                continue;
            }
            self.peer_ids.insert(id, slot.key());
            self.handshake_deadlines
                .push_back((Instant::now() + self.handshake_timeout, id));
            slot.insert(PeerConn {
                conn,
                kind: PeerKind::Incoming { id },
                handshaken: false,
                touched: false,
                forgotten: false,
            });
        }
    }

    fn connect_peer(&mut self, address: &str) -> io::Result<usize> {
        let addr: SocketAddr =
            parse_address(address).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if self.peers.len() >= PEER_CONNECTIONS_MAX {
            return Err(io::Error::other("too many peer connections"));
        }
        let mut conn = Conn::new(TcpStream::connect(addr)?);
        // Pipelined: the hello, then requests, before the reply arrives. The
        // hello goes alone in its frame (under hello_frame_bytes_max).
        conn.send(&Message::Hello(handshake::offer(
            Role::Peer,
            Some(self.name.clone()),
        )))
        .map_err(|e| io::Error::other(e.to_string()))?;
        conn.end_frame();
        let slot = self.peers.vacant_entry();
        let key = slot.key();
        conn.register(self.poll.registry(), Token(PEER_TOKEN_BASE + key))?;
        slot.insert(PeerConn {
            conn,
            kind: PeerKind::Outgoing {
                address: address.to_string(),
                connected: false,
            },
            handshaken: false,
            touched: false,
            forgotten: false,
        });
        self.outgoing.insert(address.to_string(), key);
        Ok(key)
    }

    fn fetch(&mut self, now: Instant, address: String, request: GetData) {
        let slot = match self.outgoing.get(&address) {
            Some(&slot) => slot,
            None => match self.connect_peer(&address) {
                Ok(slot) => slot,
                Err(_) => return self.state.handle_peer_failed(now, &address),
            },
        };
        let peer = &mut self.peers[slot];
        if peer.conn.send(&Message::GetData(request)).is_ok() {
            self.touch_peer(slot);
        }
    }

    fn touch_peer(&mut self, slot: usize) {
        if let Some(peer) = self.peers.get_mut(slot) {
            if !peer.touched {
                peer.touched = true;
                self.touched.push(slot);
            }
        }
    }

    fn peer_event(&mut self, now: Instant, slot: usize, readable: bool, writable: bool) {
        let Some(peer) = self.peers.get_mut(slot) else {
            return; // a token of a connection already gone
        };
        if let PeerKind::Outgoing { connected, .. } = &mut peer.kind {
            if !*connected {
                let stream = peer.conn.stream_mut();
                match (stream.take_error(), stream.peer_addr()) {
                    (Ok(None), Ok(_)) => *connected = true,
                    (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                    _ => return self.drop_peer(now, slot),
                }
            }
        }
        if writable {
            self.touch_peer(slot);
        }
        if !readable {
            return;
        }
        // A read before the hello stops right after the hello's frame: once
        // the hello is handled, read on (no new edge comes for the bytes
        // that followed it).
        while self.read_peer(now, slot) {}
    }

    /// One read pass of a peer connection. Returns whether to read again:
    /// the pass ended at the hello's frame and the connection is open.
    fn read_peer(&mut self, now: Instant, slot: usize) -> bool {
        let Some(peer) = self.peers.get_mut(slot) else {
            return false;
        };
        if peer.conn.is_closing() {
            return false;
        }
        let awaiting_hello = peer.conn.awaiting_hello();
        let mut frames = Vec::new();
        let status = peer.conn.read(&mut self.scratch, &mut |f| frames.push(f));
        for message in frames.into_iter().flatten() {
            if !self.peer_message(now, slot, message) {
                return false;
            }
        }
        let open = matches!(status, Ok(ReadStatus::Open));
        match status {
            Ok(ReadStatus::Open) => {}
            // A peer that half-closes after its requests (shutdown of its
            // write side) still gets the replies: they are queued when the
            // state machine's outputs are drained, later in this wakeup,
            // and the connection closes once they are written. (Touched so
            // that it closes even when nothing is queued.)
            Ok(ReadStatus::Closed)
                if matches!(self.peers[slot].kind, PeerKind::Incoming { .. }) =>
            {
                self.peers[slot].conn.close_after_flush();
                self.touch_peer(slot);
            }
            Ok(ReadStatus::Closed | ReadStatus::ClosedMidFrame) | Err(ConnError::Io(_)) => {
                self.drop_peer(now, slot)
            }
            Err(ConnError::Wire(e)) => self.reject_peer(now, slot, &e),
        }
        awaiting_hello
            && open
            && self
                .peers
                .get(slot)
                .is_some_and(|p| !p.conn.awaiting_hello() && !p.conn.is_closing())
    }

    /// Handles one message from a peer connection; false when the
    /// connection is being closed.
    fn peer_message(&mut self, now: Instant, slot: usize, message: Message) -> bool {
        let Some(peer) = self.peers.get_mut(slot) else {
            return false;
        };
        if peer.conn.is_closing() {
            return false;
        }
        let link = match &peer.kind {
            PeerKind::Incoming { id } => PeerLink::Incoming(*id),
            PeerKind::Outgoing { address, .. } => PeerLink::Outgoing(address),
        };
        let verdict =
            self.state
                .handle_peer_message(now, link, peer.handshaken, &self.name, message);
        match verdict {
            PeerVerdict::Continue => true,
            PeerVerdict::Handshaken(reply) => {
                peer.handshaken = true;
                if let Some(reply) = reply {
                    let _ = peer.conn.send(&reply);
                    self.touch_peer(slot);
                }
                true
            }
            PeerVerdict::Close => {
                self.drop_peer(now, slot);
                false
            }
            PeerVerdict::Reject(e) => {
                self.reject_peer(now, slot, &e);
                false
            }
        }
    }

    /// Sends a fatal error on a peer connection and closes it once written.
    fn reject_peer(&mut self, now: Instant, slot: usize, e: &WireError) {
        let Some(peer) = self.peers.get_mut(slot) else {
            return;
        };
        let _ = peer.conn.send(&Message::ErrorReport(ErrorReport {
            code: e.code.number(),
            message: e.message.clone(),
            fatal: true,
            request: None,
            keys: None,
        }));
        peer.conn.close_after_flush();
        self.forget_peer(now, slot);
        self.touch_peer(slot);
    }

    /// Tells the state machine a connection is over (it stays in the slab
    /// while a last error is written).
    fn forget_peer(&mut self, now: Instant, slot: usize) {
        let Some(peer) = self.peers.get_mut(slot) else {
            return;
        };
        if std::mem::replace(&mut peer.forgotten, true) {
            return;
        }
        match &peer.kind {
            PeerKind::Incoming { id } => {
                let id = *id;
                self.peer_ids.remove(&id);
                self.state.handle_peer_closed(id);
            }
            PeerKind::Outgoing { address, .. } => {
                let address = address.clone();
                if self.outgoing.get(&address) == Some(&slot) {
                    self.outgoing.remove(&address);
                }
                self.state.handle_peer_failed(now, &address);
            }
        }
    }

    fn drop_peer(&mut self, now: Instant, slot: usize) {
        if !self.peers.contains(slot) {
            return;
        }
        self.forget_peer(now, slot);
        let mut peer = self.peers.remove(slot);
        let _ = self.poll.registry().deregister(peer.conn.stream_mut());
        peer.conn.shutdown();
    }

    /// Handles every output of the state machine, then flushes each
    /// touched connection once. Flushing can fail a connection, which can
    /// produce more outputs (a fetch from the next holder, missing-data):
    /// repeat until nothing is left. Each round either drains or drops a
    /// connection, so this ends.
    fn drain_and_flush(&mut self, now: Instant) {
        loop {
            while let Some(output) = self.state.poll_output() {
                self.handle_output(now, output);
            }
            if !self.new_jobs.is_empty() {
                if let Some(pool) = self.pool.as_mut() {
                    pool.submit(self.new_jobs.drain(..));
                }
            }
            let scheduler_due = self.scheduler_touched && !self.hold_report(now);
            if !scheduler_due && self.touched.is_empty() {
                return;
            }
            self.flush_touched(now, scheduler_due);
        }
    }

    /// Whether messages queued for the scheduler may wait: the worker is
    /// busy (see [`REPORT_BATCH_BACKLOG_PER_THREAD`]) and they have not
    /// waited [`REPORT_DELAY_MAX`] yet.
    fn hold_report(&mut self, now: Instant) -> bool {
        if self.phase != Phase::Running || self.exit.is_some() {
            return false;
        }
        let since = *self.report_held_since.get_or_insert(now);
        report_may_wait(
            self.state.backlog(),
            self.state.config().nthreads,
            now.saturating_duration_since(since),
        )
    }

    fn handle_output(&mut self, now: Instant, output: WorkerOutput) {
        match output {
            WorkerOutput::ToScheduler(message) => self.send_scheduler(&message),
            WorkerOutput::FetchFromPeer { address, request } => self.fetch(now, address, request),
            WorkerOutput::ToPeer { peer, message } => {
                let Some(&slot) = self.peer_ids.get(&peer) else {
                    return; // that connection is gone
                };
                if let Err(e) = self.peers[slot].conn.send(&message) {
                    eprintln!("dask-worker: cannot send `{}`: {e}", message.op());
                }
                self.touch_peer(slot);
            }
            WorkerOutput::Execute(job) => self.new_jobs.push(job),
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
            WorkerOutput::CloseScheduler { error } => {
                if self.exit.is_none() {
                    self.exit = Some(match error {
                        None => Ok(()),
                        Some(e) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)),
                    });
                }
            }
        }
    }

    fn flush_touched(&mut self, now: Instant, scheduler: bool) {
        if scheduler && std::mem::take(&mut self.scheduler_touched) {
            self.report_held_since = None;
            let mut flushed = self.scheduler.flush().map(|_| ());
            if flushed.is_ok() {
                flushed = self
                    .scheduler
                    .update_interest(self.poll.registry(), SCHEDULER)
                    .map_err(ConnError::Io);
            }
            if let Err(e) = flushed {
                if self.phase == Phase::Running {
                    self.state
                        .handle_scheduler_lost(now, format!("scheduler connection failed: {e}"));
                } else {
                    self.fail_registration(conn_io_error(e));
                }
            }
        }
        for slot in std::mem::take(&mut self.touched) {
            let Some(peer) = self.peers.get_mut(slot) else {
                continue;
            };
            peer.touched = false;
            if let PeerKind::Outgoing {
                connected: false, ..
            } = peer.kind
            {
                continue; // flushed on the writable event that completes the connect
            }
            let token = Token(PEER_TOKEN_BASE + slot);
            let mut result = peer.conn.flush();
            if result.is_ok() {
                if let Err(e) = peer.conn.update_interest(self.poll.registry(), token) {
                    result = Err(ConnError::Io(e));
                }
            }
            match result {
                Ok(true) if peer.conn.is_closing() => self.drop_peer(now, slot),
                Ok(true) => {
                    if let PeerKind::Incoming { id } = peer.kind {
                        self.state.handle_peer_drained(id);
                    }
                }
                Ok(false) => {}
                Err(_) => self.drop_peer(now, slot),
            }
        }
    }
}

fn conn_io_error(e: ConnError) -> io::Error {
    match e {
        ConnError::Io(e) => e,
        ConnError::Wire(e) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// `register` for the listener (mio's `Source` needs the registry call).
trait RegisterAll {
    fn register_all(&mut self, registry: &mio::Registry) -> io::Result<()>;
}

impl RegisterAll for TcpListener {
    fn register_all(&mut self, registry: &mio::Registry) -> io::Result<()> {
        registry.register(self, LISTENER, Interest::READABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_wait_only_while_the_worker_is_busy_and_not_past_the_delay() {
        let busy = REPORT_BATCH_BACKLOG_PER_THREAD;
        // An idle or nearly idle worker (a chain, one task) reports at once.
        assert!(!report_may_wait(0, 1, Duration::ZERO));
        assert!(!report_may_wait(busy - 1, 1, Duration::ZERO));
        // A busy one batches, for at most REPORT_DELAY_MAX.
        assert!(report_may_wait(busy, 1, Duration::ZERO));
        assert!(report_may_wait(busy, 1, REPORT_DELAY_MAX / 2));
        assert!(!report_may_wait(busy, 1, REPORT_DELAY_MAX));
        // Busy is per thread.
        assert!(!report_may_wait(busy, 4, Duration::ZERO));
        assert!(report_may_wait(4 * busy, 4, Duration::ZERO));
    }
}
