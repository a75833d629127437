//! The I/O edge of a client: a background thread runs a mio loop over one
//! [`Conn`] and drives the [`ClientSession`]; user threads share the
//! session through a mutex, wait on a condvar, and wake the loop with a
//! [`Waker`] when they queued something to send.
//!
//! The loop only moves bytes: every decision is the session's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::TcpStream as StdTcpStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::client::{ClientEvent, ClientSession, RequestId};
use dask_core::{Key, Message};
use dask_net::{Conn, ConnError, ReadStatus, READ_CHUNK_BYTES};
use mio::{Events, Poll, Token, Waker};

use crate::error::{Error, Result};

const CONN: Token = Token(0);
const WAKE: Token = Token(1);

/// How long the loop keeps trying to write its last messages (an `error`
/// or `close`) after the session closed.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys an `as_completed` iterator waits for, and those that completed.
#[derive(Default)]
pub(crate) struct Watcher {
    pub(crate) waiting: HashSet<Key>,
    pub(crate) done: VecDeque<Key>,
}

/// Everything user threads and the loop share, behind one mutex.
pub(crate) struct State {
    pub(crate) session: ClientSession,
    /// Replies by request, until their requester takes them.
    replies: HashMap<RequestId, ClientEvent>,
    /// Requests whose requester gave up (timed out): their replies are dropped.
    abandoned: HashSet<RequestId>,
    pub(crate) watchers: HashMap<u64, Watcher>,
    pub(crate) next_watcher: u64,
    /// The last non-fatal error the scheduler sent that named no request.
    pub(crate) last_server_error: Option<String>,
    /// The loop was woken and has not yet drained the session.
    wake_pending: bool,
    /// The user asked the loop to close the connection and stop.
    shutdown: bool,
    /// The loop has stopped.
    io_done: bool,
}

impl State {
    /// Moves the session's events to where waiters look for them. Returns
    /// whether there were any.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.session.poll_event() {
            any = true;
            let request = match &event {
                ClientEvent::KeyUpdated { key, state } => {
                    if state.is_terminal() {
                        for w in self.watchers.values_mut() {
                            if w.waiting.remove(key) {
                                w.done.push_back(key.clone());
                            }
                        }
                    }
                    continue;
                }
                ClientEvent::ServerError(e) => {
                    self.last_server_error = Some(e.to_string());
                    continue;
                }
                ClientEvent::Connected { .. } | ClientEvent::Closed { .. } => continue,
                ClientEvent::Gathered { request, .. }
                | ClientEvent::WhoHas { request, .. }
                | ClientEvent::ClusterInfo { request, .. }
                | ClientEvent::Dataset { request, .. }
                | ClientEvent::Datasets { request, .. }
                | ClientEvent::Done { request }
                | ClientEvent::RequestFailed { request, .. } => *request,
            };
            if self.abandoned.remove(&request) {
                // Nobody will wrap a dataset's keys in futures: drop the
                // references the session took for them.
                if let ClientEvent::Dataset { keys, .. } = &event {
                    for k in keys {
                        self.session.release(k.as_str());
                    }
                }
                continue;
            }
            self.replies.insert(request, event);
        }
        any
    }
}

/// The shared half of a client, held by the client, its futures and the
/// I/O thread.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    waker: Waker,
}

impl Shared {
    /// Locks the state. A panic while locked cannot leave the session in a
    /// state worse than its own invariants, so a poisoned lock is entered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state, then hands new events to waiters and wakes
    /// the loop when the session has something to send.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.lock();
        let out = f(&mut st);
        self.after_change(&mut st);
        out
    }

    fn after_change(&self, st: &mut State) {
        if st.dispatch() {
            self.changed.notify_all();
        }
        if st.session.wants_transmit() && !st.wake_pending && !st.io_done {
            st.wake_pending = true;
            // A failed wake means the loop is gone; waiters notice io_done.
            let _ = self.waker.wake();
        }
    }

    /// Waits on the condvar until `ready` gives a value, the deadline
    /// passes (`Error::Timeout`), or the loop stops with nothing ready.
    pub(crate) fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T> {
        let mut st = self.lock();
        loop {
            if let Some(v) = ready(&mut st) {
                self.after_change(&mut st);
                return Ok(v);
            }
            if st.io_done {
                let reason = st
                    .session
                    .closed_reason()
                    .unwrap_or("the connection's thread stopped")
                    .to_owned();
                return Err(Error::Connection(reason));
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::Timeout);
                    }
                    self.changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Starts a request with `start` and waits for its reply event.
    pub(crate) fn request(
        &self,
        timeout: Option<Duration>,
        start: impl FnOnce(&mut ClientSession) -> RequestId,
    ) -> Result<ClientEvent> {
        let id = self.with(|st| start(&mut st.session));
        let deadline = timeout.map(|t| Instant::now() + t);
        let result = self.wait_until(deadline, |st| st.replies.remove(&id));
        match result {
            Ok(ClientEvent::RequestFailed { error, .. }) => Err(Error::from_request(&error)),
            Ok(event) => Ok(event),
            Err(e) => {
                self.with(|st| {
                    if st.replies.remove(&id).is_none() {
                        st.abandoned.insert(id);
                    }
                });
                Err(e)
            }
        }
    }
}

/// A running connection: the shared state and the I/O thread.
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Connection {
    /// Connects to `address`, starts the I/O thread and waits (up to
    /// `timeout`) for the handshake.
    pub(crate) fn open(address: &str, name: Option<String>, timeout: Duration) -> Result<Self> {
        let addr = dask_net::parse_address(address).map_err(Error::Connection)?;
        let stream = StdTcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| Error::Connection(format!("cannot connect to {address}: {e}")))?;
        stream.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let mut conn = Conn::new(mio::net::TcpStream::from_std(stream));
        conn.register(poll.registry(), CONN)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session: ClientSession::new(name, random_seed()),
                replies: HashMap::new(),
                abandoned: HashSet::new(),
                watchers: HashMap::new(),
                next_watcher: 0,
                last_server_error: None,
                wake_pending: false,
                shutdown: false,
                io_done: false,
            }),
            changed: Condvar::new(),
            waker,
        });
        let loop_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dask-client-io".into())
            .spawn(move || io_loop(poll, conn, &loop_shared))?;
        let connection = Connection {
            shared,
            thread: Some(thread),
        };
        let deadline = Instant::now() + timeout;
        connection
            .shared
            .wait_until(Some(deadline), |st| {
                if st.session.is_connected() {
                    Some(Ok(()))
                } else {
                    st.session
                        .closed_reason()
                        .map(|r| Err(Error::Connection(format!("{address}: {r}"))))
                }
            })
            .and_then(|r| r)
            .map_err(|e| match e {
                Error::Timeout => Error::Connection(format!(
                    "no handshake reply from {address} within {timeout:?}"
                )),
                e => e,
            })?;
        Ok(connection)
    }

    /// Closes the session (sending `close`) and joins the I/O thread.
    pub(crate) fn close(&mut self) {
        self.shared.with(|st| {
            st.shutdown = true;
            st.session.close();
        });
        let _ = self.shared.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// A seed for generated keys that differs between processes and clients:
/// std's randomly keyed hasher over the time, the process id and a counter.
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// The I/O thread: read frames into the session, write what it queues.
fn io_loop(mut poll: Poll, mut conn: Conn, shared: &Shared) {
    let mut events = Events::with_capacity(16);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES];
    let mut inbox: Vec<Message> = Vec::new();
    let mut transport_error: Option<String> = None;
    let mut decode_error = None;
    let mut final_deadline: Option<Instant> = None;
    loop {
        // Exchange with the session under the lock; socket calls outside it.
        let closed = {
            let mut st = shared.lock();
            st.wake_pending = false;
            for m in inbox.drain(..) {
                st.session.handle_message(m);
            }
            if let Some(e) = decode_error.take() {
                st.session.handle_protocol_error(e);
            }
            if let Some(reason) = transport_error.take() {
                st.session.handle_close(&reason);
            }
            if st.shutdown {
                st.session.close();
            }
            // Dispatching may queue messages (releases of abandoned
            // replies), and an unsendable message makes events: loop.
            loop {
                if st.dispatch() {
                    shared.changed.notify_all();
                }
                if !st.session.wants_transmit() {
                    break;
                }
                while let Some(m) = st.session.poll_transmit() {
                    if let Err(e) = conn.send(&m) {
                        st.session.handle_unsendable(&m, &e);
                    }
                }
            }
            st.session.is_closed()
        };
        let flushed = match conn.flush() {
            Ok(done) => done,
            Err(e) => {
                if closed {
                    break;
                }
                transport_error = Some(e.to_string());
                continue;
            }
        };
        if closed {
            let deadline =
                *final_deadline.get_or_insert_with(|| Instant::now() + FINAL_FLUSH_TIMEOUT);
            if flushed || Instant::now() >= deadline {
                break;
            }
        }
        if conn.update_interest(poll.registry(), CONN).is_err() {
            transport_error = Some("cannot register the socket".into());
            continue;
        }
        let timeout = final_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            transport_error = Some(format!("poll failed: {e}"));
            continue;
        }
        for event in events.iter() {
            if event.token() != CONN || closed {
                continue;
            }
            match conn.read(&mut scratch, &mut |frame| inbox.extend(frame)) {
                Ok(ReadStatus::Open) => {}
                Ok(ReadStatus::Closed) => {
                    transport_error = Some("the scheduler closed the connection".into())
                }
                Ok(ReadStatus::ClosedMidFrame) => {
                    transport_error =
                        Some("the scheduler closed the connection in the middle of a frame".into())
                }
                Err(ConnError::Wire(e)) => decode_error = Some(e),
                Err(ConnError::Io(e)) => transport_error = Some(e.to_string()),
            }
        }
    }
    conn.shutdown();
    let mut st = shared.lock();
    st.session.handle_close("the connection's thread stopped");
    st.io_done = true;
    st.dispatch();
    shared.changed.notify_all();
}
