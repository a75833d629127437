//! The [`Reactor`]: one mio `Poll` with its listeners and connections,
//! driven by a binary's event loop (see the crate docs for the loop).

mod bounds;
mod config;
mod conns;
mod events;
mod listen;
mod poll;
mod transfer;

pub use config::*;
pub use events::{CloseReason, ListenerId, NetEvent, Waker};

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use dask_core::frame::FrameBuffers;
use dask_core::ConnId;
use mio::net::TcpListener;
use mio::{Events, Poll, Token};
use slab::Slab;

use crate::conn::Conn;
use crate::READ_CHUNK_BYTES;

/// Readiness events taken from the OS per wait.
const EVENTS_CAPACITY: usize = 1024;

/// The waker's token; listeners count down below it, connections are
/// their slot index.
const WAKER: Token = Token(usize::MAX);

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

    fn touch(&mut self, index: usize) {
        if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
            if !slot.touched {
                slot.touched = true;
                self.touched.push(index);
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
