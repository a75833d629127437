//! The I/O edge of a client: a background thread runs an [`EventLoop`]
//! over a [`Reactor`] holding the one connection to the scheduler, and
//! drives the [`ClientSession`](dask_core::client::ClientSession) that user
//! threads share with it ([`Shared`]).
//!
//! The loop only moves messages: every decision is the session's.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dask_core::client::ClientAuth;
use dask_core::{ConnId, Message, WireError};
use dask_net::{CloseReason, NetEvent, Reactor, ReactorConfig};

use crate::client::ClientOptions;
use crate::error::{Error, Result};
use crate::shared::{Shared, State};

/// How long the loop keeps trying to write its last messages (an `error`
/// or `close`) after the session closed.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session whose connection was lost is tried on new
/// connections (a scheduler with a journal restarting: dask-rs's keeps a
/// session 60 s) before it closes.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(60);

/// Time between two attempts to reach a restarting scheduler.
const RESUME_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A running connection: the shared state and the I/O thread.
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Connection {
    /// Connects to `address` (within `timeout`, here, so an unreachable
    /// scheduler fails the call), starts the I/O thread and waits (up to
    /// `timeout`) for the handshake.
    pub(crate) fn open(address: &str, options: &ClientOptions) -> Result<Self> {
        let timeout = options.connect_timeout;
        let endpoint = dask_net::parse_endpoint(address).map_err(Error::Connection)?;
        let deadline = Instant::now() + timeout;
        let mut reactor = Reactor::new(ReactorConfig {
            tls: options.tls.clone(),
            frame_bytes_max: options.frame_bytes_max,
            busy_poll: options.busy_poll,
            ..ReactorConfig::default()
        })?;
        let conn = connect(&mut reactor, endpoint, deadline)
            .map_err(|e| Error::Connection(format!("cannot connect to {address}: {e}")))?;
        let auth = options
            .credentials
            .as_ref()
            .and_then(|c| c.client.clone())
            .map(|secret| ClientAuth {
                secret,
                nonce: dask_net::credentials::nonce(),
                tls: endpoint.tls,
            });
        let mut state = State::new(options.name.clone(), auth);
        // This loop connects again when the session can be resumed.
        state.session.set_resumable(true);
        state
            .session
            .set_submit_part_bytes(options.submit_part_bytes);
        if let Some(binding) = reactor.channel_binding(conn) {
            state.session.handle_channel_binding(binding);
        }
        let shared = Arc::new(Shared::new(state, reactor.waker(), options.busy_poll));
        let event_loop = EventLoop {
            reactor,
            conn,
            shared: Arc::clone(&shared),
            inbox: Vec::new(),
            outbox: Vec::new(),
            transport_error: None,
            protocol_error: None,
            endpoint,
            secret: options.credentials.as_ref().and_then(|c| c.client.clone()),
            connect_timeout: timeout,
        };
        let thread = std::thread::Builder::new()
            .name("dask-client-io".into())
            .spawn(move || event_loop.run())?;
        let connection = Connection {
            shared,
            thread: Some(thread),
        };
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

/// Connects `reactor` to `addr` by `deadline`: the connection, or the OS
/// error (refused, unreachable) or a timeout.
fn connect(
    reactor: &mut Reactor,
    endpoint: dask_net::Endpoint,
    deadline: Instant,
) -> io::Result<ConnId> {
    let conn = reactor.connect_to(endpoint);
    loop {
        if Instant::now() >= deadline {
            reactor.close(conn);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ));
        }
        reactor.poll(Some(deadline))?;
        while let Some(event) = reactor.next_event() {
            match event {
                NetEvent::Connected { .. } => return Ok(conn),
                NetEvent::ConnectFailed { error, .. } => return Err(error),
                _ => {}
            }
        }
    }
}

/// The I/O thread: frames from the reactor into the session, what the
/// session queues back to the reactor.
struct EventLoop {
    reactor: Reactor,
    conn: ConnId,
    shared: Arc<Shared>,
    /// Messages read and not yet handed to the session (it is locked once
    /// per wakeup, not per frame).
    inbox: Vec<Message>,
    /// Messages taken from the session, to send without its lock (kept
    /// empty, for its allocation).
    outbox: Vec<Message>,
    /// Why the connection ended, for the session.
    transport_error: Option<String>,
    protocol_error: Option<WireError>,
    /// Where to connect again to resume the session.
    endpoint: dask_net::Endpoint,
    secret: Option<dask_core::auth::Secret>,
    connect_timeout: Duration,
}

impl EventLoop {
    fn run(mut self) {
        let mut final_deadline: Option<Instant> = None;
        loop {
            // Exchange with the session under the lock; socket work outside it.
            let closed = self.exchange();
            if !closed && self.shared.lock().session.wants_reconnect() {
                self.resume();
                continue;
            }
            if closed {
                let deadline =
                    *final_deadline.get_or_insert_with(|| Instant::now() + FINAL_FLUSH_TIMEOUT);
                // The last messages (a `close`, an `error`) are written; the
                // socket is dropped once they are, or at the deadline.
                self.reactor.close(self.conn);
                self.reactor.flush();
                if self.reactor.is_flushed(self.conn) || Instant::now() >= deadline {
                    break;
                }
            }
            if let Err(e) = self.reactor.poll(final_deadline) {
                self.transport_error = Some(format!("poll failed: {e}"));
                continue;
            }
            while let Some(event) = self.reactor.next_event() {
                if !closed {
                    self.on_event(event);
                }
            }
        }
        drop(self.reactor);
        let mut st = self.shared.lock();
        st.session.handle_close("the connection's thread stopped");
        st.io_done = true;
        st.dispatch();
        self.shared.notify_changed();
    }

    /// Connects again, for [`RESUME_TIMEOUT`], and resumes the session on
    /// the new connection; gives up (the session closes) after that or
    /// when the client is closed meanwhile.
    fn resume(&mut self) {
        self.reactor.close(self.conn);
        self.inbox.clear();
        let give_up_at = Instant::now() + RESUME_TIMEOUT;
        loop {
            if self.shared.lock().shutdown || Instant::now() >= give_up_at {
                let mut st = self.shared.lock();
                st.session.give_up();
                st.dispatch();
                self.shared.notify_changed();
                return;
            }
            let deadline = (Instant::now() + self.connect_timeout).min(give_up_at);
            match connect(&mut self.reactor, self.endpoint, deadline) {
                Ok(conn) => {
                    self.conn = conn;
                    let auth = self.secret.clone().map(|secret| ClientAuth {
                        secret,
                        nonce: dask_net::credentials::nonce(),
                        tls: self.endpoint.tls,
                    });
                    let mut st = self.shared.lock();
                    st.session.resume(auth);
                    if let Some(binding) = self.reactor.channel_binding(conn) {
                        st.session.handle_channel_binding(binding);
                    }
                    return;
                }
                Err(_) => std::thread::sleep(RESUME_RETRY_INTERVAL),
            }
        }
    }

    /// Hands what arrived to the session and what it queued to the
    /// reactor; whether the session is closed.
    fn exchange(&mut self) -> bool {
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        st.wake_pending = false;
        for m in self.inbox.drain(..) {
            st.session.handle_message(m);
        }
        if let Some(e) = self.protocol_error.take() {
            st.session.handle_protocol_error(e);
        }
        if let Some(reason) = self.transport_error.take() {
            st.session.handle_close(&reason);
        }
        if st.shutdown {
            st.session.close();
        }
        // Dispatching may queue messages (releases of abandoned replies),
        // and an unsendable message makes events: loop.
        loop {
            if st.dispatch() {
                shared.notify_changed();
            }
            if !st.session.wants_transmit() {
                break;
            }
            // Taken under the lock, encoded and written without it: a user
            // thread handing the session the next part of a graph waits
            // for no encoding (a part of 2 MiB is milliseconds of it).
            let mut out = std::mem::take(&mut self.outbox);
            out.extend(std::iter::from_fn(|| st.session.poll_transmit()));
            drop(st);
            let mut unsendable = Vec::new();
            for m in out.drain(..) {
                if let Err(e) = self.reactor.send(self.conn, &m) {
                    unsendable.push((m, e));
                    continue;
                }
                if matches!(
                    m,
                    Message::Hello(_)
                        | Message::AuthProof(_)
                        | Message::UpdateGraph(_)
                        | Message::ReleaseKeys(_)
                ) {
                    // A hello or proof alone in its frame (under
                    // hello_frame_bytes_max, which holds until the proof): a
                    // resumed session's requests may be large and wait right
                    // behind. A graph ends its frame: the scheduler takes a
                    // frame in one event, and the parts of a large graph in
                    // one frame kept its loop busy for the whole graph (so
                    // the parts of a large release, too).
                    self.reactor.end_frame(self.conn);
                }
                if matches!(m, Message::UpdateGraph(_)) {
                    // Written now, not once every part of a large graph is
                    // encoded: the scheduler takes this part while the
                    // next ones are encoded (a 10M-task graph is seconds
                    // of encoding).
                    self.reactor.flush();
                }
            }
            self.outbox = out;
            st = shared.lock();
            for (m, e) in unsendable {
                st.session.handle_unsendable(&m, &e);
            }
        }
        st.session.is_closed()
    }

    fn on_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Frame { messages, .. } => self.inbox.extend(messages),
            NetEvent::Closed { reason, .. } => match reason {
                CloseReason::PeerClosed => {
                    self.transport_error = Some("the scheduler closed the connection".into())
                }
                CloseReason::PeerClosedMidFrame => {
                    self.transport_error =
                        Some("the scheduler closed the connection in the middle of a frame".into())
                }
                CloseReason::Protocol(e) => self.protocol_error = Some(e),
                CloseReason::Io(e) => self.transport_error = Some(e.to_string()),
                // Only accepted connections time out; this one connects.
                CloseReason::WriteTimeout { .. } => {
                    self.transport_error = Some("the write timeout closed the connection".into())
                }
            },
            // Connected before the loop started; it accepts nothing.
            NetEvent::Connected { .. }
            | NetEvent::ConnectFailed { .. }
            | NetEvent::Accepted { .. }
            | NetEvent::AcceptFailed { .. } => {}
        }
    }
}
