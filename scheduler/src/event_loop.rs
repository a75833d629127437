//! The scheduler's event loop: one thread, one mio `Poll`, a `Slab` of
//! connections by `Token`. It moves bytes and the time (a [`Clock`]'s timestamps) into the
//! [`SchedulerState`] and writes what the state says; nothing else.
//!
//! Per wakeup: every readable connection is read until it would block and
//! each decoded frame is handed to the state; the outputs are queued on
//! their connections right away (encoding only); at the end of the wakeup
//! each connection that got output is flushed once, so a peer receives one
//! write per wakeup however many messages it was sent.
//!
//! Closing: a connection the state closes (or that sent undecodable bytes,
//! after an `error`) is flushed, its write side shut down, and what it
//! still sends is read and discarded until it closes or
//! [`CLOSE_LINGER`] passes — closing with unread input would reset the
//! connection and could destroy the error message before the peer reads it.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::{ErrorCode, Message, WireError};
use dask_net::{Clock, Conn, ConnError, ReadStatus, HELLO_FRAME_BYTES_MAX, READ_CHUNK_BYTES};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::state::{ConnId, Output, SchedulerState, StateConfig};

/// How often the state gets a tick (timeouts, retries).
pub const TICK: Duration = Duration::from_millis(100);

/// Longest a closing connection is kept to deliver its last bytes.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Longest [`Server::run`] waits, once stopped, for peers to take their
/// `close` and hang up.
pub const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);

/// Most connections open at once; more are accepted and dropped at once.
pub const CONNECTIONS_MAX: usize = 16 * 1024;

/// Default of [`SchedulerConfig::handshake_bytes_max`].
pub const HANDSHAKE_BYTES_MAX: usize = 64 * 1024 * 1024;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Settings of a scheduler process.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Interface to listen on. Default "127.0.0.1".
    pub host: String,
    /// Port to listen on; 0 picks a free one. Default 8786.
    pub port: u16,
    /// A worker silent for this long is declared dead. Default 10 s.
    pub heartbeat_timeout: Duration,
    /// A connection that sends no `hello` for this long gets 3002 and is
    /// closed. Default 10 s.
    pub handshake_timeout: Duration,
    /// Check the state's invariants after every event (slow; for tests and
    /// debugging). A violation panics the loop. Default false.
    pub validate: bool,
    /// Lost workers a task may be processing on before it errs with
    /// `KilledWorker` (see [`StateConfig::allowed_failures`]). Default 3.
    pub allowed_failures: u32,
    /// Most bytes held in all for the unfinished frames of connections
    /// that have not sent their `hello` (each holds at most
    /// [`HELLO_FRAME_BYTES_MAX`]); a connection whose bytes take the sum
    /// over it gets 1002 and is closed. Without it, a flood of slow
    /// connections could each hold a frame's worth. Default
    /// [`HANDSHAKE_BYTES_MAX`].
    pub handshake_bytes_max: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            host: "127.0.0.1".into(),
            port: 8786,
            heartbeat_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            validate: false,
            allowed_failures: crate::state::ALLOWED_FAILURES_DEFAULT,
            handshake_bytes_max: HANDSHAKE_BYTES_MAX,
        }
    }
}

/// Stops a running [`Server`] from any thread.
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    /// Asks the loop to say `close` to everyone and return.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// One connection and how far its closing got.
struct Slot {
    conn: Conn,
    /// Set when closing: drop it at this instant at the latest.
    closing: Option<Instant>,
    /// Our write side is shut down (everything was written).
    write_shut: bool,
    /// The peer closed its side.
    eof: bool,
    /// Has output to flush this wakeup.
    touched: bool,
    /// Bytes of its unfinished frame counted in [`Server::handshake_bytes`]
    /// (before its hello only).
    handshake_bytes: usize,
}

/// A bound scheduler, ready to [`run`](Server::run).
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    address: String,
    stopper: Stopper,
    state: SchedulerState,
    /// Turns the loop's `Instant`s into the state's timestamps.
    clock: Clock,
    conns: Slab<Slot>,
    touched: Vec<usize>,
    scratch: Vec<u8>,
    /// The last accept failed for want of descriptors or memory: retried
    /// every tick until it works. With edge-triggered readiness the
    /// connections already waiting in the backlog would otherwise stay
    /// there until a new one arrives.
    accept_failing: bool,
    /// Bytes held for connections that have not sent their hello: the sum
    /// of their [`Slot::handshake_bytes`].
    handshake_bytes: usize,
    handshake_bytes_max: usize,
}

/// The `tcp://HOST:PORT` form, with brackets around IPv6 hosts.
fn display_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("tcp://[{host}]:{port}")
    } else {
        format!("tcp://{host}:{port}")
    }
}

impl Server {
    /// Binds the listening socket.
    pub fn bind(config: &SchedulerConfig) -> io::Result<Server> {
        let host = config.host.trim_start_matches('[').trim_end_matches(']');
        let addr: SocketAddr = (host, config.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "host resolves to nothing")
            })?;
        let mut listener = TcpListener::bind(addr)?;
        let port = listener.local_addr()?.port();
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let clock = Clock::new();
        let state = SchedulerState::new(
            StateConfig {
                heartbeat_timeout: config.heartbeat_timeout,
                handshake_timeout: config.handshake_timeout,
                validate: config.validate,
                allowed_failures: config.allowed_failures,
                ..StateConfig::default()
            },
            clock.now(),
        );
        Ok(Server {
            poll,
            listener,
            address: display_address(host, port),
            stopper: Stopper {
                flag: Arc::new(AtomicBool::new(false)),
                waker,
            },
            state,
            clock,
            conns: Slab::new(),
            touched: Vec::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            accept_failing: false,
            handshake_bytes: 0,
            handshake_bytes_max: config.handshake_bytes_max,
        })
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
    /// true (checked at least every [`TICK`]; a signal handler may set it),
    /// then says `close` to every connection and returns.
    pub fn run(mut self, also_stop: Option<&AtomicBool>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        let stopped = |s: &Stopper| {
            s.flag.load(Ordering::SeqCst) || also_stop.is_some_and(|f| f.load(Ordering::SeqCst))
        };
        while !stopped(&self.stopper) {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    Token(i) => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_ready(now, i, readable, event.is_writable());
                    }
                }
            }
            if now >= next_tick {
                if self.accept_failing {
                    self.accept(now);
                }
                self.state.handle_tick(self.clock.at(now));
                self.drain_outputs();
                self.expire_closing(now);
                next_tick = now + TICK;
            }
            self.flush_touched(now);
        }
        self.shut_down()
    }

    /// Accepts until the backlog is empty. On a failure other than
    /// `WouldBlock` (EMFILE, ENFILE, ENOBUFS, ENOMEM) the rest of the
    /// backlog is left for the next tick: no new readiness edge may come.
    fn accept(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_failing = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if !self.accept_failing {
                        eprintln!(
                            "dask-scheduler: accept failed: {e} (retrying every {} ms)",
                            TICK.as_millis()
                        );
                    }
                    self.accept_failing = true;
                    return;
                }
            };
            if self.conns.len() >= CONNECTIONS_MAX {
                drop(stream);
                continue;
            }
            let entry = self.conns.vacant_entry();
            let i = entry.key();
            let mut conn = Conn::new(stream);
            conn.limit_until_hello(HELLO_FRAME_BYTES_MAX);
            if conn.register(self.poll.registry(), Token(i)).is_err() {
                continue;
            }
            entry.insert(Slot {
                conn,
                closing: None,
                write_shut: false,
                eof: false,
                touched: false,
                handshake_bytes: 0,
            });
            self.state.handle_connected(self.clock.at(now), ConnId(i));
            self.drain_outputs();
        }
    }

    fn on_ready(&mut self, now: Instant, i: usize, readable: bool, writable: bool) {
        if !self.conns.contains(i) {
            return;
        }
        if writable {
            self.touch(i);
        }
        if !readable {
            return;
        }
        let Some(slot) = self.conns.get_mut(i) else {
            return;
        };
        if slot.closing.is_some() {
            return self.discard_input(i);
        }
        // A read before the hello stops right after the hello's frame:
        // once the state has accepted it, read on (no new edge will come
        // for the bytes that followed).
        while self.read_frames(now, i) {}
    }

    /// One read pass of a connection and the state's handling of what it
    /// sent. Returns whether to read again: a hello ended the pass and the
    /// connection is still open.
    fn read_frames(&mut self, now: Instant, i: usize) -> bool {
        let Some(slot) = self.conns.get_mut(i) else {
            return false;
        };
        let awaiting_hello = slot.conn.awaiting_hello();
        let mut frames: Vec<Vec<Message>> = Vec::new();
        let mut result = slot
            .conn
            .read(&mut self.scratch, &mut |frame| frames.push(frame));
        if result.is_ok() {
            if let Err(e) = self.count_handshake_bytes(i) {
                result = Err(ConnError::Wire(e));
            }
        }
        for frame in frames {
            if self.conns.get(i).is_none_or(|s| s.closing.is_some()) {
                break;
            }
            self.state
                .handle_frame(self.clock.at(now), ConnId(i), frame);
            self.drain_outputs();
        }
        let closing = self.conns.get(i).is_none_or(|s| s.closing.is_some());
        let still_open = matches!(result, Ok(ReadStatus::Open));
        match result {
            Ok(ReadStatus::Open) => {}
            Ok(ReadStatus::Closed | ReadStatus::ClosedMidFrame) => {
                if !closing {
                    self.state.handle_closed(self.clock.at(now), ConnId(i));
                    self.drain_outputs();
                }
                if let Some(slot) = self.conns.get_mut(i) {
                    slot.eof = true;
                }
                self.begin_close(now, i);
            }
            Err(ConnError::Wire(e)) => {
                if !closing {
                    if let Some(slot) = self.conns.get_mut(i) {
                        let _ = slot.conn.send(&Message::error(&e, None));
                    }
                    self.state.handle_closed(self.clock.at(now), ConnId(i));
                    self.drain_outputs();
                }
                self.begin_close(now, i);
                self.discard_input(i);
            }
            Err(ConnError::Io(_)) => {
                if !closing {
                    self.state.handle_closed(self.clock.at(now), ConnId(i));
                    self.drain_outputs();
                }
                self.remove(i);
            }
        }
        awaiting_hello
            && still_open
            && self
                .conns
                .get(i)
                .is_some_and(|s| s.closing.is_none() && !s.conn.awaiting_hello())
    }

    /// Counts what connection `i` holds before its hello against
    /// [`SchedulerConfig::handshake_bytes_max`]; over it, the error to
    /// refuse it with.
    fn count_handshake_bytes(&mut self, i: usize) -> Result<(), WireError> {
        let Some(slot) = self.conns.get_mut(i) else {
            return Ok(());
        };
        let held = if slot.conn.awaiting_hello() {
            slot.conn.buffered()
        } else {
            0
        };
        self.handshake_bytes = self.handshake_bytes - slot.handshake_bytes + held;
        slot.handshake_bytes = held;
        if self.handshake_bytes <= self.handshake_bytes_max {
            return Ok(());
        }
        let total = self.handshake_bytes;
        self.release_handshake_bytes(i);
        Err(WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "{total} bytes held for connections that have not sent their hello: over the \
                 limit of {} bytes (try again later)",
                self.handshake_bytes_max
            ),
        ))
    }

    /// Drops what connection `i` held before its hello, and its count.
    fn release_handshake_bytes(&mut self, i: usize) {
        if let Some(slot) = self.conns.get_mut(i) {
            if slot.handshake_bytes > 0 {
                self.handshake_bytes -= slot.handshake_bytes;
                slot.handshake_bytes = 0;
                slot.conn.discard_buffered();
            }
        }
    }

    /// Reads and drops what a closing connection still sends; removes it
    /// once the peer has closed and our bytes are out.
    fn discard_input(&mut self, i: usize) {
        let Some(slot) = self.conns.get_mut(i) else {
            return;
        };
        loop {
            match slot.conn.stream_mut().read(&mut self.scratch) {
                Ok(0) => {
                    slot.eof = true;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    slot.eof = true;
                    break;
                }
            }
        }
        if slot.eof && slot.write_shut {
            self.remove(i);
        } else {
            self.touch(i);
        }
    }

    fn touch(&mut self, i: usize) {
        if let Some(slot) = self.conns.get_mut(i) {
            if !slot.touched {
                slot.touched = true;
                self.touched.push(i);
            }
        }
    }

    fn begin_close(&mut self, now: Instant, i: usize) {
        self.release_handshake_bytes(i);
        if let Some(slot) = self.conns.get_mut(i) {
            if slot.closing.is_none() {
                slot.closing = Some(now + CLOSE_LINGER);
            }
        }
        self.touch(i);
    }

    /// Queues the state's outputs on their connections.
    fn drain_outputs(&mut self) {
        let now = Instant::now();
        while let Some(output) = self.state.poll_output() {
            match output {
                Output::Send(ConnId(i), message) => {
                    let Some(slot) = self.conns.get_mut(i) else {
                        continue;
                    };
                    if slot.write_shut {
                        continue;
                    }
                    if let Err(e) = slot.conn.send(&message) {
                        // Too large for any frame: say so instead.
                        let _ = slot.conn.send(&Message::error(&e, request_of(&message)));
                    }
                    self.touch(i);
                }
                Output::Close(ConnId(i)) => self.begin_close(now, i),
            }
        }
    }

    /// Writes what each touched connection has queued: one flush each.
    fn flush_touched(&mut self, now: Instant) {
        while let Some(i) = self.touched.pop() {
            let Some(slot) = self.conns.get_mut(i) else {
                continue;
            };
            slot.touched = false;
            match slot.conn.flush() {
                Ok(true) if slot.closing.is_some() => {
                    if slot.eof {
                        self.remove(i);
                        continue;
                    }
                    if !slot.write_shut {
                        slot.write_shut = true;
                        let _ = slot.conn.stream_mut().shutdown(Shutdown::Write);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    let closing = slot.closing.is_some();
                    if !closing {
                        self.state.handle_closed(self.clock.at(now), ConnId(i));
                        self.drain_outputs();
                    }
                    self.remove(i);
                    continue;
                }
            }
            if let Some(slot) = self.conns.get_mut(i) {
                if slot
                    .conn
                    .update_interest(self.poll.registry(), Token(i))
                    .is_err()
                {
                    self.remove(i);
                }
            }
        }
    }

    fn expire_closing(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| s.closing.is_some_and(|d| now >= d))
            .map(|(i, _)| i)
            .collect();
        for i in expired {
            self.remove(i);
        }
    }

    fn remove(&mut self, i: usize) {
        self.release_handshake_bytes(i);
        if let Some(mut slot) = self.conns.try_remove(i) {
            let _ = self.poll.registry().deregister(slot.conn.stream_mut());
        }
    }

    /// Says `close` to everyone, delivers it, and waits a little for the
    /// peers to hang up.
    fn shut_down(mut self) -> io::Result<()> {
        let now = Instant::now();
        self.state.handle_shutdown(self.clock.at(now));
        self.drain_outputs();
        // Connections the state did not know (no hello yet) close too.
        let open: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for i in open {
            self.begin_close(now, i);
        }
        self.flush_touched(now);
        let deadline = now + SHUTDOWN_LINGER;
        let mut events = Events::with_capacity(256);
        while !self.conns.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(deadline - now)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            for event in events.iter() {
                let Token(i) = event.token();
                if i == LISTENER.0 || i == WAKER.0 {
                    continue;
                }
                if event.is_writable() {
                    self.touch(i);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.discard_input(i);
                }
            }
            self.flush_touched(Instant::now());
        }
        Ok(())
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

/// A scheduler running on its own thread.
pub struct SchedulerHandle {
    address: String,
    stopper: Stopper,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SchedulerHandle {
    /// Binds and starts the loop on a new thread.
    pub fn start(config: SchedulerConfig) -> io::Result<SchedulerHandle> {
        let server = Server::bind(&config)?;
        let address = server.address();
        let stopper = server.stopper();
        let thread = std::thread::Builder::new()
            .name("dask-scheduler".into())
            .spawn(move || server.run(None))?;
        Ok(SchedulerHandle {
            address,
            stopper,
            thread: Some(thread),
        })
    }

    /// Where to connect: `tcp://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Closes every connection cleanly (each peer gets `close`) and waits
    /// for the loop's thread to end.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds and serves in the foreground until `stop` becomes true (e.g. set
/// by a signal handler). The binary uses [`Server`] directly to print the
/// address in between.
pub fn serve(config: SchedulerConfig, stop: Option<&AtomicBool>) -> io::Result<()> {
    Server::bind(&config)?.run(stop)
}
