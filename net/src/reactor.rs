//! The [`Reactor`]: one mio `Poll` with its listeners and connections,
//! driven by a binary's event loop (see the crate docs for the loop).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dask_core::frame::FrameBuffers;
use dask_core::{ConnId, ErrorCode, Message, WireError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::conn::{Conn, ConnError, ReadStatus};
use crate::tls::TlsConfig;
use crate::transport::Transport;
use crate::{HELLO_FRAME_BYTES_MAX, READ_CHUNK_BYTES, SEND_QUEUE_BYTES_MAX};

/// Default of [`ReactorConfig::connections_max`].
pub const CONNECTIONS_MAX: usize = 16 * 1024;

/// Default of [`ReactorConfig::handshake_bytes_max`].
pub const HANDSHAKE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Default of [`ReactorConfig::output_bytes_max`].
pub const OUTPUT_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Default of [`ReactorConfig::output_bytes_total_max`].
pub const OUTPUT_BYTES_TOTAL_MAX: usize = 256 * 1024 * 1024;

/// Default of [`ReactorConfig::output_bytes_share`].
pub const OUTPUT_BYTES_SHARE: usize = 1024 * 1024;

/// Default of [`ReactorConfig::read_bytes_per_wakeup`]: a few large
/// frames' worth, so a peer that streams (a client sending a 10M-task
/// graph in parts) is handled a part at a time between the others.
pub const READ_BYTES_PER_WAKEUP: usize = 4 * 1024 * 1024;

/// Default of [`ReactorConfig::busy_poll`] (chosen by measurement: see
/// BENCHMARKS.md, "Session 7: busy-polling").
pub const BUSY_POLL: Duration = Duration::from_micros(200);

/// Default of [`ReactorConfig::close_linger`].
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Default of [`ReactorConfig::accept_retry_interval`].
pub const ACCEPT_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Default of [`ReactorConfig::tls_handshake_timeout`].
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an accepted connection in its TLS handshake counts against
/// [`ReactorConfig::handshake_bytes_max`]: about what rustls may buffer
/// for it (a handshake message is at most 64 KiB), so a flood of
/// half-done TLS handshakes is held to the same bound as one of
/// connections that never send their hello.
pub const TLS_HANDSHAKE_CHARGE: usize = 64 * 1024;

/// Default of [`ReactorConfig::frame_buffers_bytes_max`]: one frame of
/// the largest size.
pub const FRAME_BUFFERS_BYTES_MAX: usize = dask_core::FRAME_BYTES_MAX;

/// Default of [`ReactorConfig::frame_buffers_idle`].
pub const FRAME_BUFFERS_IDLE: Duration = Duration::from_secs(2);

/// Readiness events taken from the OS per wait.
const EVENTS_CAPACITY: usize = 1024;

/// Extra waits without sleeping, per wakeup, while the OS keeps returning
/// a full batch of readiness events (see [`Reactor::next_event`]).
const FULL_BATCH_REPOLLS_MAX: u32 = 16;

/// The waker's token; listeners count down below it, connections are
/// their slot index.
const WAKER: Token = Token(usize::MAX);

/// Bounds and timings of a [`Reactor`].
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Most connections at once (accepted, connected and closing); one
    /// accepted past it is closed at once, a connect past it fails.
    /// Default [`CONNECTIONS_MAX`].
    pub connections_max: usize,
    /// Largest frame an accepted connection may send before a frame
    /// holding its `hello` (spec: `hello_frame_bytes_max`); over it, 1002.
    /// Default [`HELLO_FRAME_BYTES_MAX`].
    pub hello_frame_bytes_max: usize,
    /// Most bytes held in all for the unfinished frames of accepted
    /// connections that have not sent their `hello`; the connection whose
    /// bytes take the sum over it is refused (1002). Without it, a flood
    /// of slow connections could each hold a frame's worth. Default
    /// [`HANDSHAKE_BYTES_MAX`].
    pub handshake_bytes_max: usize,
    /// Most bytes queued for a peer that does not read; past it the
    /// connection fails ([`CloseReason::Io`]). Default
    /// [`SEND_QUEUE_BYTES_MAX`].
    pub send_queue_bytes_max: usize,
    /// Most bytes queued for an accepted connection before it is
    /// *backlogged*: its input is no longer read (its requests wait in the
    /// kernel, and TCP pushes back on the peer) until its output is
    /// written down to the bound again ([`Reactor::queued_bytes`] tells a
    /// loop what waits, to make no more large output meanwhile). Only
    /// accepted connections are held: the connecting side always reads, so
    /// two peers never both wait for the other to read. Default
    /// [`OUTPUT_BYTES_MAX`].
    pub output_bytes_max: usize,
    /// Most bytes queued for all connections together: past it, every
    /// accepted connection with more than
    /// [`ReactorConfig::output_bytes_share`] queued is backlogged too,
    /// while connections with little queued (peers that read) are served
    /// as before. Default [`OUTPUT_BYTES_TOTAL_MAX`].
    pub output_bytes_total_max: usize,
    /// See [`ReactorConfig::output_bytes_total_max`]. Default
    /// [`OUTPUT_BYTES_SHARE`].
    pub output_bytes_share: usize,
    /// Longest a closing connection is kept to deliver its last bytes and
    /// read the peer's until it hangs up. Default [`CLOSE_LINGER`].
    pub close_linger: Duration,
    /// How often an `accept` that failed for want of descriptors or memory
    /// is tried again (readiness is edge-triggered: the connections
    /// already waiting would otherwise wait for a new one). Default
    /// [`ACCEPT_RETRY_INTERVAL`].
    pub accept_retry_interval: Duration,
    /// What an accepted connection that speaks Python Dask's protocol is
    /// told, in its own framing, before the close (say what this endpoint
    /// is). Default [`PYTHON_DASK_REFUSAL`].
    pub python_dask_refusal: String,
    /// TLS settings for [`Reactor::listen_tls`] and
    /// [`Reactor::connect_tls`]. Default none.
    pub tls: Option<TlsConfig>,
    /// Longest an accepted TLS connection may take over its TLS handshake;
    /// then it is dropped (the event loop never heard of it). Default
    /// [`TLS_HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeout: Duration,
    /// Most bytes of buffers kept after large frames' values are dropped,
    /// for the next large frames (reading into fresh memory costs a page
    /// fault per 4 KiB, most of a large transfer's time), and for values
    /// arriving in parts (dask/1.1 `value-parts`). Kept buffers are given
    /// back once none was used for [`ReactorConfig::frame_buffers_idle`].
    /// 0: keep none. Default [`FRAME_BUFFERS_BYTES_MAX`].
    pub frame_buffers_bytes_max: usize,
    /// How long kept buffers stay while none is used (see
    /// [`ReactorConfig::frame_buffers_bytes_max`]). Default
    /// [`FRAME_BUFFERS_IDLE`].
    pub frame_buffers_idle: Duration,
    /// Largest frame this side sends (a receiver still takes frames up to
    /// the protocol's frame_bytes_max). Lower than the default only for
    /// tests: a value over it goes in parts to a peer that takes them
    /// (dask/1.1 `value-parts`), so a few MB exercise what a 1 GB value
    /// does. Default [`dask_core::FRAME_BYTES_MAX`].
    pub frame_bytes_max: usize,
    /// Bytes read from one connection per wakeup, at least: once a read
    /// took this many, it stops at the end of a frame, and the rest is
    /// read on the next wakeup, after the other connections. Without it a
    /// peer that keeps sending was read (and every frame decoded) in one
    /// wakeup, however long: 90 s of a 10M-task graph's parts while no
    /// worker was answered. Default [`READ_BYTES_PER_WAKEUP`].
    pub read_bytes_per_wakeup: usize,
    /// The write timeout: an accepted connection with more than
    /// [`ReactorConfig::output_bytes_share`] unwritten of which not a byte
    /// could be written for this long is closed
    /// ([`CloseReason::WriteTimeout`]), so peers that do not read cannot
    /// hold the output bounds (and what their owner holds for them) for
    /// ever. Judged after a write is tried, so time this process did not
    /// run does not count against a peer that reads. Default `None`
    /// (never; `dask-scheduler` sets it).
    pub write_timeout: Option<Duration>,
    /// How long after its last activity (readiness, or bytes sent)
    /// [`Reactor::poll`] keeps looking for readiness without sleeping,
    /// yielding the CPU between looks, before it blocks. An idle vCPU
    /// halts, and waking it takes tens of µs, while the answer to what
    /// was just sent (a task's result, the next task) often comes within
    /// that. Spent only after activity: a reactor idle for longer blocks
    /// at once. Zero: never. Default [`BUSY_POLL`].
    pub busy_poll: Duration,
}

/// What a Python Dask client or worker that reached a dask-rs endpoint is
/// told by default.
pub const PYTHON_DASK_REFUSAL: &str =
    "this is a dask-rs (dask/1) endpoint, not a Python Dask one: Python Dask's clients and \
     workers cannot use it (dask-rs has clients for Rust, C, C++ and Node)";

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            connections_max: CONNECTIONS_MAX,
            hello_frame_bytes_max: HELLO_FRAME_BYTES_MAX,
            handshake_bytes_max: HANDSHAKE_BYTES_MAX,
            send_queue_bytes_max: SEND_QUEUE_BYTES_MAX,
            output_bytes_max: OUTPUT_BYTES_MAX,
            output_bytes_total_max: OUTPUT_BYTES_TOTAL_MAX,
            output_bytes_share: OUTPUT_BYTES_SHARE,
            close_linger: CLOSE_LINGER,
            accept_retry_interval: ACCEPT_RETRY_INTERVAL,
            python_dask_refusal: PYTHON_DASK_REFUSAL.to_owned(),
            tls: None,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            frame_buffers_bytes_max: FRAME_BUFFERS_BYTES_MAX,
            frame_buffers_idle: FRAME_BUFFERS_IDLE,
            frame_bytes_max: dask_core::FRAME_BYTES_MAX,
            read_bytes_per_wakeup: READ_BYTES_PER_WAKEUP,
            write_timeout: None,
            busy_poll: BUSY_POLL,
        }
    }
}

/// A listening socket of a [`Reactor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub usize);

/// What happened on the network, handed to the event loop by
/// [`Reactor::next_event`].
#[derive(Debug)]
pub enum NetEvent {
    /// A listener accepted a connection (on a TLS listener: and its TLS
    /// handshake is done). Until a frame holding its `hello` has been
    /// read, its frames are held to [`ReactorConfig::hello_frame_bytes_max`].
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// The listener that accepted it.
        listener: ListenerId,
    },
    /// An outgoing connection ([`Reactor::connect`]) is established (over
    /// TLS: its TLS handshake is done too); what was sent on it meanwhile
    /// goes out now.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// An outgoing connection could not be established; it is gone.
    ConnectFailed {
        /// The connection.
        conn: ConnId,
        /// Why (the OS error, e.g. connection refused; over TLS, a line
        /// on what failed, e.g. the acceptor's certificate).
        error: io::Error,
    },
    /// The messages of one frame, in order.
    Frame {
        /// Where they came from.
        conn: ConnId,
        /// The frame's messages.
        messages: Vec<Message>,
    },
    /// The connection is over for the state machine: nothing more comes
    /// from it. Unless `reason` is [`CloseReason::Io`] or [`CloseReason::WriteTimeout`], what is sent to it
    /// in the same wakeup (an `error` answering a protocol error, replies
    /// to a peer that half-closed after its requests) is still written
    /// before it is shut; [`Reactor::close`] is not needed.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A listener's `accept` failed for want of descriptors or memory
    /// (EMFILE, ENFILE, ENOBUFS, ENOMEM); the reactor retries every
    /// [`ReactorConfig::accept_retry_interval`] until it works. Reported
    /// once per episode, for the log.
    AcceptFailed {
        /// The listener.
        listener: ListenerId,
        /// The error.
        error: io::Error,
    },
}

/// Why a connection ended ([`NetEvent::Closed`]).
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed its side between frames.
    PeerClosed,
    /// The peer closed its side in the middle of a frame.
    PeerClosedMidFrame,
    /// The peer broke the protocol (bytes that do not decode, a frame over
    /// a limit); its further input is discarded. Answer with an `error`.
    Protocol(WireError),
    /// The socket failed (reset, write error, or the send queue went over
    /// [`ReactorConfig::send_queue_bytes_max`]); the connection is gone.
    Io(io::Error),
    /// The peer read nothing for [`ReactorConfig::write_timeout`] while
    /// `unwritten` bytes waited for it; the connection is gone.
    WriteTimeout {
        /// Bytes that waited unwritten.
        unwritten: usize,
        /// How long no byte could be written.
        idle: Duration,
    },
}

/// Wakes a [`Reactor`]'s [`poll`](Reactor::poll) from another thread (or
/// a signal handler: it only writes to an eventfd).
#[derive(Debug, Clone)]
pub struct Waker(Arc<mio::Waker>);

impl Waker {
    /// Makes the reactor's current or next `poll` return.
    pub fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// An outgoing connect in progress (over TLS: until its TLS
    /// handshake is done).
    Connecting,
    /// Accepted on a TLS listener, its TLS handshake in progress: the loop
    /// hears of it once that is done.
    Securing,
    /// Frames flow both ways.
    Open,
    /// Being closed: what is queued is written, the write side shut, the
    /// peer's input read and dropped until it hangs up or the linger ends.
    Closing,
}

/// A connection and how far it got.
#[derive(Debug)]
struct Slot {
    conn: Conn,
    id: ConnId,
    phase: Phase,
    /// Nothing more is read from it as frames: EOF, a protocol error or a
    /// socket error was seen and its [`NetEvent::Closed`] is queued.
    input_over: bool,
    /// The socket failed: nothing more is read or written.
    failed: bool,
    /// The peer closed its side.
    eof: bool,
    /// Our write side is shut down (everything was written).
    write_shut: bool,
    /// In [`Reactor::touched`]: flushed at the next [`Reactor::flush`].
    touched: bool,
    /// Bytes of its unfinished frame counted in
    /// [`Reactor::handshake_bytes`] (before its hello only; while
    /// securing, [`TLS_HANDSHAKE_CHARGE`]).
    handshake_bytes: usize,
    /// The listener that accepted it.
    listener: Option<ListenerId>,
    /// Its queued bytes, as counted in the reactor's `queued_total`.
    queued_counted: usize,
    /// Its output is over the bounds: its input is not read.
    backlogged: bool,
    /// A read was skipped while backlogged: read once it is not (readiness
    /// is edge-triggered: no new edge comes for what waits).
    read_deferred: bool,
    /// Its read stopped at the per-wakeup budget this wakeup: it is read
    /// again on the next one, not again in this one.
    yielded: bool,
    /// Since when no byte of its output (over the write timeout's bound)
    /// could be written ([`ReactorConfig::write_timeout`]).
    stalled_since: Option<Instant>,
    /// Its bytes written when `stalled_since` was set.
    written_seen: u64,
}

/// An entry of the connection slab: a connection, or a connect that
/// failed before it had a socket (its [`NetEvent::ConnectFailed`] is
/// queued).
#[derive(Debug)]
enum Entry {
    Live(Box<Slot>),
    FailedConnect(ConnId),
}

impl Entry {
    fn id(&self) -> ConnId {
        match self {
            Entry::Live(slot) => slot.id,
            Entry::FailedConnect(id) => *id,
        }
    }
}

#[derive(Debug)]
struct Listener {
    socket: TcpListener,
    /// Its last accept failed for want of resources: retried on a timer.
    accept_failing: bool,
    /// Its connections speak TLS.
    tls: bool,
}

/// A readiness event, copied out of mio's buffer.
#[derive(Debug, Clone, Copy)]
struct Ready {
    token: Token,
    readable: bool,
    writable: bool,
}

/// Owns the `Poll`, the listeners and every connection of a process, and
/// all their socket bytes: accept (with a connection cap and the retry
/// when descriptors run out), non-blocking connects, framing, the bounds
/// on connections before their hello, one flush per touched connection
/// per wakeup, the send-queue bound, backpressure (an accepted connection
/// whose output is over [`ReactorConfig::output_bytes_max`] is not read
/// until it catches up), and closing with linger and half-close. It hands
/// the loop [`NetEvent`]s and takes messages.
///
/// Call order per wakeup: [`Reactor::poll`] (flushes what was sent since
/// the last one, then waits), then [`Reactor::next_event`] until `None`,
/// handing each event to the state machine and its outputs back with
/// [`Reactor::send`] / [`Reactor::close`]; then the state machine's
/// timeouts. See the crate docs for an example loop.
#[derive(Debug)]
pub struct Reactor {
    poll: Poll,
    events: Events,
    /// Readiness of the last waits not handled yet (from `ready_at`).
    ready: Vec<Ready>,
    ready_at: usize,
    /// The last wait returned a full batch: more readiness may wait.
    ready_full: bool,
    repolls: u32,
    /// When readiness arrived or bytes were sent last
    /// ([`ReactorConfig::busy_poll`]).
    active_at: Option<Instant>,
    waker: Waker,
    config: ReactorConfig,
    listeners: Vec<Option<Listener>>,
    conns: Slab<Entry>,
    /// Generation of the next connection in each slab slot.
    generations: Vec<u32>,
    /// Events to hand out before reading more.
    pending: VecDeque<NetEvent>,
    /// Connections whose read stopped after their hello's frame: read on
    /// once the events before are handed out (the state machine may have
    /// refused the hello and closed it).
    resume: Vec<usize>,
    /// Connections that stopped reading at their per-wakeup budget, read
    /// again on the next wakeup ([`ReactorConfig::read_bytes_per_wakeup`]).
    yielded: Vec<usize>,
    touched: Vec<usize>,
    /// Linger deadlines of closing connections, in the order they began
    /// closing (so deadlines only grow).
    lingering: VecDeque<(Instant, ConnId)>,
    /// TLS handshake deadlines of accepted connections, in accept order.
    securing: VecDeque<(Instant, ConnId)>,
    /// When failing accepts are tried again.
    accept_retry_at: Option<Instant>,
    /// Sum of [`Slot::handshake_bytes`].
    handshake_bytes: usize,
    /// Sum of [`Slot::queued_counted`]: bytes queued for every connection
    /// at the last flush of each.
    queued_total: usize,
    /// `queued_total` is over [`ReactorConfig::output_bytes_total_max`].
    over_total: bool,
    scratch: Vec<u8>,
    /// Buffers of large frames, shared by every connection.
    frame_buffers: Arc<FrameBuffers>,
    /// When kept frame buffers are next trimmed (while some are kept).
    frame_buffers_trim_at: Option<Instant>,
    /// When stalled connections are looked at next
    /// ([`ReactorConfig::write_timeout`]).
    write_check_at: Option<Instant>,
}

impl Reactor {
    /// A reactor with no listener and no connection.
    pub fn new(config: ReactorConfig) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Waker(Arc::new(mio::Waker::new(poll.registry(), WAKER)?));
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            ready: Vec::new(),
            ready_at: 0,
            ready_full: false,
            repolls: 0,
            active_at: None,
            waker,
            listeners: Vec::new(),
            conns: Slab::new(),
            generations: Vec::new(),
            pending: VecDeque::new(),
            resume: Vec::new(),
            yielded: Vec::new(),
            touched: Vec::new(),
            lingering: VecDeque::new(),
            securing: VecDeque::new(),
            accept_retry_at: None,
            handshake_bytes: 0,
            queued_total: 0,
            over_total: false,
            scratch: vec![0; READ_CHUNK_BYTES],
            frame_buffers: FrameBuffers::new(config.frame_buffers_bytes_max),
            frame_buffers_trim_at: None,
            write_check_at: None,
            config,
        })
    }

    /// The bounds and timings in force.
    pub fn config(&self) -> &ReactorConfig {
        &self.config
    }

    /// A handle that wakes [`Reactor::poll`] from any thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The buffers of dropped large values this reactor keeps, for other
    /// readers of whole values in this process (the worker's spill store):
    /// theirs go back here too when dropped.
    pub fn frame_buffers(&self) -> Arc<FrameBuffers> {
        Arc::clone(&self.frame_buffers)
    }

    // ---- listeners ------------------------------------------------------

    /// Listens on `addr` (port 0: a free one); connections come as
    /// [`NetEvent::Accepted`].
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        self.listen_with(addr, false)
    }

    /// Listens on `addr` with TLS ([`ReactorConfig::tls`] must be able to
    /// listen: a certificate and key); connections come as
    /// [`NetEvent::Accepted`] once their TLS handshake is done.
    pub fn listen_tls(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        if !self.config.tls.as_ref().is_some_and(|t| t.can_listen()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "listening with TLS needs a certificate and key (--tls-cert, --tls-key)",
            ));
        }
        self.listen_with(addr, true)
    }

    fn listen_with(&mut self, addr: SocketAddr, tls: bool) -> io::Result<ListenerId> {
        let mut socket = TcpListener::bind(addr)?;
        let id = ListenerId(self.listeners.len());
        self.poll
            .registry()
            .register(&mut socket, listener_token(id), Interest::READABLE)?;
        self.listeners.push(Some(Listener {
            socket,
            accept_failing: false,
            tls,
        }));
        Ok(id)
    }

    /// The address a listener is bound to (with the real port).
    pub fn local_addr(&self, listener: ListenerId) -> io::Result<SocketAddr> {
        match self.listeners.get(listener.0) {
            Some(Some(l)) => l.socket.local_addr(),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener")),
        }
    }

    /// Stops listening (connections already accepted stay).
    pub fn close_listener(&mut self, listener: ListenerId) {
        if let Some(slot) = self.listeners.get_mut(listener.0) {
            if let Some(mut l) = slot.take() {
                let _ = self.poll.registry().deregister(&mut l.socket);
            }
        }
    }

    // ---- connections ------------------------------------------------------

    /// Starts connecting to `addr` without waiting. The outcome comes as
    /// [`NetEvent::Connected`] or [`NetEvent::ConnectFailed`] (also for a
    /// connect that fails at once, or one past
    /// [`ReactorConfig::connections_max`]). Messages may be sent at once:
    /// they go out when connected.
    pub fn connect(&mut self, addr: SocketAddr) -> ConnId {
        self.connect_with(addr, false)
    }

    /// As [`Reactor::connect`], over TLS ([`ReactorConfig::tls`] must be
    /// able to connect: a CA). [`NetEvent::Connected`] comes once the TLS
    /// handshake is done; a certificate refused either way is a
    /// [`NetEvent::ConnectFailed`] that says which.
    pub fn connect_tls(&mut self, addr: SocketAddr) -> ConnId {
        self.connect_with(addr, true)
    }

    /// [`Reactor::connect`] or [`Reactor::connect_tls`], as `endpoint` says.
    pub fn connect_to(&mut self, endpoint: crate::Endpoint) -> ConnId {
        self.connect_with(endpoint.addr, endpoint.tls)
    }

    fn connect_with(&mut self, addr: SocketAddr, tls: bool) -> ConnId {
        let connector = match (tls, self.config.tls.as_ref().and_then(|t| t.connector())) {
            (false, _) => None,
            (true, Some(c)) => Some(c.clone()),
            (true, None) => {
                let id = self.insert(Entry::FailedConnect);
                self.pending.push_back(NetEvent::ConnectFailed {
                    conn: id,
                    error: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a tls:// address needs the cluster's CA certificate (--tls-ca-file)",
                    ),
                });
                return id;
            }
        };
        let started = if self.live_count() >= self.config.connections_max {
            Err(io::Error::other(format!(
                "too many connections ({} open)",
                self.config.connections_max
            )))
        } else {
            TcpStream::connect(addr)
        };
        let transport = started.and_then(|stream| {
            let _ = stream.set_nodelay(true);
            match connector {
                Some(config) => Transport::tls_connector(stream, config, addr),
                None => Ok(Transport::Plain(stream)),
            }
        });
        let transport = match transport {
            Ok(transport) => transport,
            Err(error) => {
                let id = self.insert(Entry::FailedConnect);
                self.pending
                    .push_back(NetEvent::ConnectFailed { conn: id, error });
                return id;
            }
        };
        let mut conn = self.new_conn(transport);
        let index = self.conns.vacant_key();
        if let Err(error) = conn.register_connecting(self.poll.registry(), Token(index)) {
            let id = self.insert(Entry::FailedConnect);
            self.pending
                .push_back(NetEvent::ConnectFailed { conn: id, error });
            return id;
        }
        self.insert(|id| Entry::Live(Box::new(Slot::new(conn, id, Phase::Connecting))))
    }

    /// Queues `message` on `conn`, in the frame being built for it this
    /// wakeup (flushed by the next [`Reactor::poll`] or
    /// [`Reactor::flush`]). A message too large for any frame is refused
    /// (`value-too-large`; the caller reports it instead). A message for a
    /// connection that is gone, or closing with its write side shut, is
    /// dropped.
    pub fn send(&mut self, conn: ConnId, message: &Message) -> Result<(), WireError> {
        let Some(slot) = self.live_mut(conn) else {
            return Ok(());
        };
        if slot.write_shut || slot.failed {
            return Ok(());
        }
        slot.conn.send(message)?;
        self.touch(conn_index(conn));
        Ok(())
    }

    /// Ends the frame being built for `conn`: what is sent next goes in a
    /// new frame (a connector's `hello` goes alone in its first frame,
    /// under `hello_frame_bytes_max`, before pipelined requests).
    pub fn end_frame(&mut self, conn: ConnId) {
        if let Some(slot) = self.live_mut(conn) {
            slot.conn.end_frame();
        }
    }

    /// Closes `conn` gracefully: no more of its frames are handed out; what
    /// is queued for it is written, then its write side is shut, then its
    /// input is read and dropped until the peer hangs up or
    /// [`ReactorConfig::close_linger`] passes (closing with unread input
    /// would reset the connection and could destroy our last message
    /// before the peer reads it). No event follows. A connect still in
    /// progress is abandoned.
    pub fn close(&mut self, conn: ConnId) {
        let index = conn_index(conn);
        let Some(slot) = self.live_mut(conn) else {
            // A failed connect whose event is not out yet: no event now.
            if self.conns.get(index).is_some_and(|e| e.id() == conn) {
                self.conns.remove(index);
            }
            return;
        };
        match slot.phase {
            Phase::Closing => {}
            _ if slot.failed => self.remove(index),
            Phase::Connecting | Phase::Securing => self.remove(index),
            Phase::Open => self.begin_close(index),
        }
    }

    /// Whether `conn` is connected or connecting and not closing.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.live(conn)
            .is_some_and(|s| s.phase != Phase::Closing && !s.input_over)
    }

    /// Whether everything queued for `conn` was written (or it is gone).
    pub fn is_flushed(&self, conn: ConnId) -> bool {
        self.live(conn)
            .is_none_or(|s| s.failed || (s.phase != Phase::Connecting && !s.conn.wants_write()))
    }

    /// Bytes queued for `conn` and not yet written.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.live(conn).map_or(0, |s| s.conn.queued_bytes())
    }

    /// The TLS channel binding of `conn` (RFC 9266 `tls-exporter`, what
    /// `dask_core::auth` proofs cover), known from its
    /// [`NetEvent::Accepted`] or [`NetEvent::Connected`] on; `None` for
    /// plain TCP.
    pub fn channel_binding(
        &self,
        conn: ConnId,
    ) -> Option<[u8; dask_core::auth::CHANNEL_BINDING_BYTES]> {
        self.live(conn).and_then(|s| s.conn.channel_binding())
    }

    /// The peer's address.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.live(conn).and_then(|s| s.conn.peer_addr())
    }

    /// Connections held, closing ones included.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    // ---- the wakeup ------------------------------------------------------

    /// Flushes every connection sent to since the last call (one write
    /// each), then waits until a socket is ready, [`Waker::wake`] is
    /// called, or `deadline` passes (`None`: no deadline). Returns at once
    /// when events are still to be handed out. Internal timers (linger
    /// ends, accept retries) wake it too. After a signal interrupts the
    /// wait (including SIGSTOP then SIGCONT), it collects what is ready
    /// without waiting and returns, so input that arrived meanwhile is
    /// handed out before the loop judges any timeout.
    pub fn poll(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.flush();
        // Readiness is edge-triggered: what a connection left unread at its
        // budget is read now, without a new edge.
        for index in std::mem::take(&mut self.yielded) {
            if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
                slot.yielded = false;
                self.resume.push(index);
            }
        }
        let now = Instant::now();
        let busy =
            !self.pending.is_empty() || !self.resume.is_empty() || self.ready_at < self.ready.len();
        if self.frame_buffers_trim_at.is_none() && self.frame_buffers.kept_bytes() > 0 {
            self.frame_buffers_trim_at = Some(now + self.config.frame_buffers_idle);
        }
        let wake_at = [
            deadline,
            self.lingering.front().map(|&(at, _)| at),
            self.securing.front().map(|&(at, _)| at),
            self.accept_retry_at,
            self.frame_buffers_trim_at,
            self.write_check_at,
        ]
        .into_iter()
        .flatten()
        .min();
        if busy {
            self.wait(Some(Duration::ZERO))?;
        } else if !self.busy_poll(wake_at)? {
            let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
            self.wait(timeout)?;
        }
        self.repolls = 0;
        let now = Instant::now();
        self.expire_lingering(now);
        self.expire_securing(now);
        if self.write_check_at.is_some_and(|at| now >= at) {
            self.expire_stalled(now);
        }
        if self.frame_buffers_trim_at.is_some_and(|at| now >= at) {
            self.frame_buffers.trim_unused();
            self.frame_buffers_trim_at = None;
        }
        if self.accept_retry_at.is_some_and(|at| now >= at) {
            self.accept_retry_at = None;
            for i in 0..self.listeners.len() {
                if self.listeners[i].as_ref().is_some_and(|l| l.accept_failing) {
                    self.accept(ListenerId(i));
                }
            }
        }
        Ok(())
    }

    /// Looks for readiness without sleeping until [`ReactorConfig::busy_poll`]
    /// after the last activity (or `wake_at`), yielding the CPU between
    /// looks (on two cores shared by several processes, a spinning thread
    /// must not hold a core another one needs). Whether readiness came.
    fn busy_poll(&mut self, wake_at: Option<Instant>) -> io::Result<bool> {
        let Some(active_at) = self.active_at else {
            return Ok(false);
        };
        let until = active_at + self.config.busy_poll;
        let until = wake_at.map_or(until, |at| at.min(until));
        while Instant::now() < until {
            self.wait(Some(Duration::ZERO))?;
            if self.ready_at < self.ready.len() {
                return Ok(true);
            }
            std::thread::yield_now();
        }
        Ok(false)
    }

    /// One wait of the OS poll, its readiness appended to `ready`.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut timeout = timeout;
        loop {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => break,
                // Interrupted by a signal (or stopped and continued): take
                // what is ready without sleeping, then let the loop look
                // at its flags.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if timeout == Some(Duration::ZERO) {
                        return Ok(());
                    }
                    timeout = Some(Duration::ZERO);
                }
                Err(e) => return Err(e),
            }
        }
        self.ready.drain(..self.ready_at);
        self.ready_at = 0;
        let mut count = 0;
        for event in self.events.iter() {
            count += 1;
            self.ready.push(Ready {
                token: event.token(),
                readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                writable: event.is_writable() || event.is_error(),
            });
        }
        self.ready_full = count >= EVENTS_CAPACITY;
        if count > 0 && !self.config.busy_poll.is_zero() {
            self.active_at = Some(Instant::now());
        }
        Ok(())
    }

    /// The next event, `None` when everything ready is handled. Call it
    /// until `None` after every [`Reactor::poll`]: readiness is
    /// edge-triggered, so what is left unread is not reported again. It
    /// reads every socket that is ready now (also past one batch of OS
    /// events) before returning `None`.
    pub fn next_event(&mut self) -> Option<NetEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if let Some(event) = self.deliverable(event) {
                    return Some(event);
                }
                continue;
            }
            if let Some(index) = self.resume.pop() {
                self.read(index);
                continue;
            }
            if let Some(&ready) = self.ready.get(self.ready_at) {
                self.ready_at += 1;
                self.on_ready(ready);
                continue;
            }
            if self.ready_full && self.repolls < FULL_BATCH_REPOLLS_MAX {
                self.repolls += 1;
                if self.wait(Some(Duration::ZERO)).is_ok() {
                    continue;
                }
            }
            return None;
        }
    }

    /// Writes what each connection sent to since the last flush has
    /// queued: one write each. [`Reactor::poll`] calls it first; call it
    /// directly before a blocking step.
    pub fn flush(&mut self) {
        if !self.touched.is_empty() && !self.config.busy_poll.is_zero() {
            self.active_at = Some(Instant::now());
        }
        while let Some(index) = self.touched.pop() {
            let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
                continue;
            };
            slot.touched = false;
            if slot.phase == Phase::Connecting || slot.failed {
                continue;
            }
            match slot.conn.flush() {
                Ok(true) if slot.phase == Phase::Closing => {
                    if slot.eof {
                        self.remove(index);
                        continue;
                    }
                    if !slot.write_shut {
                        slot.write_shut = true;
                        slot.conn.shutdown_write();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.fail(index, e);
                    continue;
                }
            }
            if let Err(e) = slot
                .conn
                .update_interest(self.poll.registry(), Token(index))
            {
                self.fail(index, ConnError::Io(e));
                continue;
            }
            self.recount(index);
        }
        let over_total = self.queued_total > self.config.output_bytes_total_max;
        if over_total != self.over_total {
            // Every connection's share is judged again (rare: the total
            // crossing its bound).
            self.over_total = over_total;
            let indexes: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
            for index in indexes {
                self.judge_backlog(index);
            }
        }
    }

    /// Counts what `index` has queued now in [`Reactor::queued_total`] and
    /// judges whether it is backlogged.
    fn recount(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        let queued = slot.conn.queued_bytes();
        self.queued_total = self.queued_total - slot.queued_counted + queued;
        slot.queued_counted = queued;
        self.judge_backlog(index);
        self.judge_stall(index);
    }

    /// Starts or restarts `index`'s write-timeout clock: from the last
    /// write that made progress, while more than the bound waits.
    fn judge_stall(&mut self, index: usize) {
        let Some(timeout) = self.config.write_timeout else {
            return;
        };
        let share = self.config.output_bytes_share;
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.listener.is_none() || slot.phase != Phase::Open || slot.queued_counted <= share {
            slot.stalled_since = None;
            return;
        }
        let written = slot.conn.written_bytes();
        if slot.stalled_since.is_none() || written != slot.written_seen {
            let now = Instant::now();
            slot.written_seen = written;
            slot.stalled_since = Some(now);
            if self.write_check_at.is_none() {
                self.write_check_at = Some(now + write_check_interval(timeout));
            }
        }
    }

    /// Closes the connections whose output could not be written for the
    /// write timeout: each is tried once more first (after a pause of this
    /// process, a peer that reads takes bytes at once).
    fn expire_stalled(&mut self, now: Instant) {
        self.write_check_at = None;
        let Some(timeout) = self.config.write_timeout else {
            return;
        };
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter_map(|(index, entry)| match entry {
                Entry::Live(slot)
                    if !slot.failed
                        && slot.stalled_since.is_some_and(|since| {
                            now.saturating_duration_since(since) >= timeout
                        }) =>
                {
                    Some(index)
                }
                _ => None,
            })
            .collect();
        for index in due {
            let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
                continue;
            };
            if let Err(e) = slot.conn.flush() {
                self.fail(index, e);
                continue;
            }
            self.recount(index);
            let Some(Entry::Live(slot)) = self.conns.get(index) else {
                continue;
            };
            let Some(since) = slot.stalled_since else {
                continue;
            };
            let idle = now.saturating_duration_since(since);
            if idle >= timeout {
                let unwritten = slot.queued_counted;
                self.fail_with(index, CloseReason::WriteTimeout { unwritten, idle });
            }
        }
        let stalled = self.conns.iter().any(|(_, entry)| {
            matches!(entry, Entry::Live(slot) if !slot.failed && slot.stalled_since.is_some())
        });
        if stalled {
            self.write_check_at = Some(now + write_check_interval(timeout));
        }
    }

    /// Whether an accepted, open connection's output is over the bounds
    /// (its own, or its share of the total); input skipped meanwhile is
    /// read once it is not.
    fn judge_backlog(&mut self, index: usize) {
        let (per_connection, share) =
            (self.config.output_bytes_max, self.config.output_bytes_share);
        let over_total = self.over_total;
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.listener.is_none() || slot.phase != Phase::Open || slot.input_over {
            return;
        }
        let queued = slot.queued_counted;
        let backlogged = queued > per_connection || (over_total && queued > share);
        if backlogged == slot.backlogged {
            return;
        }
        slot.backlogged = backlogged;
        self.release_if_readable(index);
    }

    /// Reads `index` again if a read was skipped and it is not backlogged
    /// now.
    fn release_if_readable(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.read_deferred && !slot.backlogged {
            slot.read_deferred = false;
            self.resume.push(index);
        }
    }

    /// Closes every connection gracefully and stops listening, then waits
    /// until each has written what was queued for it and its peer hung up,
    /// or until `deadline`; what is left then is dropped.
    pub fn close_all(&mut self, deadline: Instant) {
        for i in 0..self.listeners.len() {
            self.close_listener(ListenerId(i));
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|(_, e)| e.id()).collect();
        for id in ids {
            self.close(id);
        }
        self.pending.clear();
        while !self.conns.is_empty() && Instant::now() < deadline {
            if self.poll(Some(deadline)).is_err() {
                break;
            }
            while self.next_event().is_some() {}
        }
        self.flush();
    }

    // ---- inside ------------------------------------------------------------

    fn live(&self, conn: ConnId) -> Option<&Slot> {
        match self.conns.get(conn_index(conn)) {
            Some(Entry::Live(slot)) if slot.id == conn => Some(&**slot),
            _ => None,
        }
    }

    fn live_mut(&mut self, conn: ConnId) -> Option<&mut Slot> {
        match self.conns.get_mut(conn_index(conn)) {
            Some(Entry::Live(slot)) if slot.id == conn => Some(&mut **slot),
            _ => None,
        }
    }

    fn live_count(&self) -> usize {
        self.conns.len()
    }

    /// Inserts an entry under a fresh id for its slot.
    fn insert(&mut self, make: impl FnOnce(ConnId) -> Entry) -> ConnId {
        let index = self.conns.vacant_key();
        if self.generations.len() <= index {
            self.generations.resize(index + 1, 0);
        }
        let generation = self.generations[index];
        self.generations[index] = generation.wrapping_add(1);
        let id = ConnId(((generation as u64) << 32) | index as u64);
        self.conns.insert(make(id));
        id
    }

    /// Turns a queued event into what the loop gets, or drops it when the
    /// loop has closed that connection since.
    fn deliverable(&mut self, event: NetEvent) -> Option<NetEvent> {
        match event {
            NetEvent::AcceptFailed { .. } => Some(event),
            NetEvent::ConnectFailed { conn, .. } => {
                let index = conn_index(conn);
                if self.conns.get(index).is_none_or(|e| e.id() != conn) {
                    return None; // abandoned by close()
                }
                self.conns.remove(index);
                Some(event)
            }
            NetEvent::Accepted { conn, .. }
            | NetEvent::Connected { conn }
            | NetEvent::Frame { conn, .. } => {
                let slot = self.live(conn)?;
                (slot.phase == Phase::Open).then_some(event)
            }
            NetEvent::Closed { conn, ref reason } => {
                let index = conn_index(conn);
                let slot = self.live(conn)?;
                let open = slot.phase == Phase::Open;
                // A peer that does not read gets no linger either: what
                // waited for it is dropped with the socket.
                if matches!(
                    reason,
                    CloseReason::Io(_) | CloseReason::WriteTimeout { .. }
                ) {
                    self.remove(index);
                } else if open {
                    self.begin_close(index);
                }
                open.then_some(event)
            }
        }
    }

    fn on_ready(&mut self, ready: Ready) {
        if ready.token == WAKER {
            return;
        }
        if let Some(listener) = listener_of(ready.token) {
            return self.accept(listener);
        }
        let index = ready.token.0;
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return; // a connection already gone
        };
        if slot.failed {
            return;
        }
        if slot.phase == Phase::Securing {
            return self.secure(index);
        }
        if slot.phase == Phase::Connecting {
            match slot.conn.connect_result() {
                Ok(true) => {
                    slot.phase = Phase::Open;
                    self.pending
                        .push_back(NetEvent::Connected { conn: slot.id });
                    self.touch(index);
                }
                Ok(false) => return,
                Err(error) => {
                    let id = slot.id;
                    slot.conn.deregister(self.poll.registry());
                    self.conns[index] = Entry::FailedConnect(id);
                    self.pending
                        .push_back(NetEvent::ConnectFailed { conn: id, error });
                    return;
                }
            }
        }
        if ready.writable {
            self.touch(index);
        }
        if ready.readable {
            self.read(index);
        }
    }

    /// Reads what `index` has sent: frames for an open connection, dropped
    /// bytes for a closing one.
    fn read(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.failed || matches!(slot.phase, Phase::Connecting | Phase::Securing) {
            return;
        }
        if slot.phase == Phase::Closing || slot.input_over {
            if slot.conn.discard_input(&mut self.scratch) {
                slot.eof = true;
                if slot.write_shut {
                    return self.remove(index);
                }
            }
            self.touch(index);
            return;
        }
        if slot.yielded {
            return;
        }
        if slot.backlogged {
            // Backpressure: what the peer sends waits in the kernel.
            slot.read_deferred = true;
            return;
        }
        let id = slot.id;
        let pending = &mut self.pending;
        let mut result = slot.conn.read(&mut self.scratch, &mut |messages| {
            pending.push_back(NetEvent::Frame { conn: id, messages })
        });
        if result.is_ok() {
            if let Err(e) = self.count_handshake_bytes(index) {
                result = Err(ConnError::Wire(e));
            }
        }
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.conn.wants_write() {
            // Over TLS, reading can make records to send (a key update),
            // and plaintext held while the handshake ran can go now.
            self.touch(index);
        }
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        let reason = match result {
            Ok(ReadStatus::Open) => {
                // Stopped after a handshake frame: read on once the state
                // machine has seen it (no new edge comes for the rest).
                if slot.conn.take_paused() {
                    self.resume.push(index);
                } else if slot.conn.take_yielded() {
                    slot.yielded = true;
                    self.yielded.push(index);
                }
                return;
            }
            Ok(ReadStatus::Closed) => {
                slot.eof = true;
                CloseReason::PeerClosed
            }
            Ok(ReadStatus::ClosedMidFrame) => {
                slot.eof = true;
                CloseReason::PeerClosedMidFrame
            }
            Err(ConnError::Wire(e)) => CloseReason::Protocol(e),
            Err(ConnError::Io(e)) => {
                slot.failed = true;
                slot.conn.deregister(self.poll.registry());
                CloseReason::Io(e)
            }
        };
        slot.input_over = true;
        self.release_handshake_bytes(index);
        self.pending
            .push_back(NetEvent::Closed { conn: id, reason });
        // A protocol error leaves unread input: keep reading it (dropped)
        // so that the close does not reset the connection.
        self.read(index);
    }

    /// Counts what `index` holds before its hello against
    /// [`ReactorConfig::handshake_bytes_max`]; over it, the error to refuse
    /// it with.
    fn count_handshake_bytes(&mut self, index: usize) -> Result<(), WireError> {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return Ok(());
        };
        let held = if slot.conn.awaiting_hello() {
            slot.conn.buffered()
        } else {
            0
        };
        self.handshake_bytes = self.handshake_bytes - slot.handshake_bytes + held;
        slot.handshake_bytes = held;
        if self.handshake_bytes <= self.config.handshake_bytes_max {
            return Ok(());
        }
        let total = self.handshake_bytes;
        self.release_handshake_bytes(index);
        Err(WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "{total} bytes held for connections that have not sent their hello: over the \
                 limit of {} bytes (try again later)",
                self.config.handshake_bytes_max
            ),
        ))
    }

    /// Drops what `index` held before its hello, and its count.
    fn release_handshake_bytes(&mut self, index: usize) {
        if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
            if slot.handshake_bytes > 0 {
                self.handshake_bytes -= slot.handshake_bytes;
                slot.handshake_bytes = 0;
                slot.conn.discard_buffered();
            }
        }
    }

    fn accept(&mut self, listener: ListenerId) {
        loop {
            let Some(Some(l)) = self.listeners.get_mut(listener.0) else {
                return;
            };
            let tls = l.tls;
            let stream = match l.socket.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.accept_failing = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    if !l.accept_failing {
                        self.pending
                            .push_back(NetEvent::AcceptFailed { listener, error });
                    }
                    l.accept_failing = true;
                    let at = Instant::now() + self.config.accept_retry_interval;
                    self.accept_retry_at = Some(self.accept_retry_at.map_or(at, |t| t.min(at)));
                    return;
                }
            };
            if self.live_count() >= self.config.connections_max {
                drop(stream);
                continue;
            }
            if tls && self.handshake_bytes + TLS_HANDSHAKE_CHARGE > self.config.handshake_bytes_max
            {
                drop(stream); // too many half-done handshakes: try again later
                continue;
            }
            let _ = stream.set_nodelay(true);
            let acceptor = self.config.tls.as_ref().and_then(|t| t.acceptor());
            let transport = match (tls, acceptor) {
                (true, Some(config)) => match Transport::tls_acceptor(stream, config.clone()) {
                    Ok(t) => t,
                    Err(_) => continue,
                },
                _ => Transport::Plain(stream),
            };
            let mut conn = self.new_conn(transport);
            let index = self.conns.vacant_key();
            if conn.register(self.poll.registry(), Token(index)).is_err() {
                continue;
            }
            if !tls {
                conn.limit_until_hello(
                    self.config.hello_frame_bytes_max,
                    &self.config.python_dask_refusal,
                );
            }
            let phase = if tls { Phase::Securing } else { Phase::Open };
            let id = self.insert(|id| {
                let mut slot = Slot::new(conn, id, phase);
                slot.listener = Some(listener);
                Entry::Live(Box::new(slot))
            });
            if tls {
                if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
                    slot.handshake_bytes = TLS_HANDSHAKE_CHARGE;
                }
                self.handshake_bytes += TLS_HANDSHAKE_CHARGE;
                let at = Instant::now() + self.config.tls_handshake_timeout;
                self.securing.push_back((at, id));
            } else {
                self.pending
                    .push_back(NetEvent::Accepted { conn: id, listener });
            }
        }
    }

    /// Drives the TLS handshake of an accepted connection; once done, the
    /// loop hears of the connection and its frames are read.
    fn secure(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        match slot.conn.secure() {
            Ok(true) => {
                slot.phase = Phase::Open;
                slot.conn.limit_until_hello(
                    self.config.hello_frame_bytes_max,
                    &self.config.python_dask_refusal,
                );
                let (id, listener) = (slot.id, slot.listener.unwrap_or(ListenerId(0)));
                self.release_handshake_bytes(index);
                self.pending
                    .push_back(NetEvent::Accepted { conn: id, listener });
                self.touch(index);
                // The first frames may have come with the handshake's end.
                self.read(index);
            }
            Ok(false) => self.touch(index),
            Err(ConnError::Wire(refusal)) => {
                // A plain dask/1 peer: told in plain, then closed. Nothing
                // it sent is read.
                let _ = slot.conn.send(&Message::error(&refusal, None));
                self.begin_close(index);
            }
            Err(ConnError::Io(_)) => self.remove(index),
        }
    }

    fn new_conn(&self, transport: Transport) -> Conn {
        let mut conn = Conn::over(transport);
        conn.set_send_queue_bytes_max(self.config.send_queue_bytes_max);
        conn.set_read_bytes_per_call(self.config.read_bytes_per_wakeup);
        if self.config.frame_bytes_max != dask_core::FRAME_BYTES_MAX {
            conn.set_frame_bytes_max(self.config.frame_bytes_max);
        }
        conn.use_frame_buffers(Arc::clone(&self.frame_buffers));
        conn
    }

    fn touch(&mut self, index: usize) {
        if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
            if !slot.touched {
                slot.touched = true;
                self.touched.push(index);
            }
        }
    }

    fn begin_close(&mut self, index: usize) {
        self.release_handshake_bytes(index);
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.phase == Phase::Closing {
            return;
        }
        slot.phase = Phase::Closing;
        slot.conn.discard_buffered();
        let id = slot.id;
        self.lingering
            .push_back((Instant::now() + self.config.close_linger, id));
        self.touch(index);
        // Input that came before the close is read and dropped now.
        self.read(index);
    }

    /// The socket of `index` failed: an open connection is reported closed
    /// (and removed when that event is handed out), a closing one removed.
    fn fail(&mut self, index: usize, error: ConnError) {
        let error = match error {
            ConnError::Io(e) => e,
            ConnError::Wire(e) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        };
        self.fail_with(index, CloseReason::Io(error));
    }

    /// The connection is gone, for `reason`: its loop hears it once.
    fn fail_with(&mut self, index: usize, reason: CloseReason) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.phase != Phase::Open || slot.input_over {
            return self.remove(index);
        }
        slot.failed = true;
        slot.input_over = true;
        slot.stalled_since = None;
        slot.conn.deregister(self.poll.registry());
        let id = slot.id;
        self.release_handshake_bytes(index);
        self.pending
            .push_back(NetEvent::Closed { conn: id, reason });
    }

    fn expire_lingering(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now {
                return;
            }
            self.lingering.pop_front();
            if self.live(id).is_some_and(|s| s.phase == Phase::Closing) {
                self.remove(conn_index(id));
            }
        }
    }

    fn expire_securing(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.securing.front() {
            if at > now {
                return;
            }
            self.securing.pop_front();
            if self.live(id).is_some_and(|s| s.phase == Phase::Securing) {
                self.remove(conn_index(id));
            }
        }
    }

    fn remove(&mut self, index: usize) {
        self.release_handshake_bytes(index);
        if let Some(Entry::Live(mut slot)) = self.conns.try_remove(index) {
            self.queued_total -= slot.queued_counted;
            if !slot.failed {
                slot.conn.deregister(self.poll.registry());
            }
        }
    }
}

impl Slot {
    fn new(conn: Conn, id: ConnId, phase: Phase) -> Slot {
        Slot {
            conn,
            id,
            phase,
            input_over: false,
            failed: false,
            eof: false,
            write_shut: false,
            touched: false,
            handshake_bytes: 0,
            listener: None,
            queued_counted: 0,
            backlogged: false,
            read_deferred: false,
            yielded: false,
            stalled_since: None,
            written_seen: 0,
        }
    }
}

/// How often stalled connections are looked at: a quarter of the write
/// timeout, within 10 ms to 1 s.
fn write_check_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The slot index a [`ConnId`] of this reactor names.
fn conn_index(conn: ConnId) -> usize {
    (conn.0 & 0xffff_ffff) as usize
}

fn listener_token(listener: ListenerId) -> Token {
    Token(WAKER.0 - 1 - listener.0)
}

/// The listener a token names, if it is one (tokens just below the
/// waker's; connection slots never get that high).
fn listener_of(token: Token) -> Option<ListenerId> {
    let below_waker = WAKER.0 - token.0;
    (token != WAKER && below_waker <= 1024).then(|| ListenerId(below_waker - 1))
}
