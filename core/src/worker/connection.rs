//! The worker's connections: which there are, what may come on each, and
//! the data connections' hello exchange.
//!
//! Three kinds: the scheduler connection (see `scheduler.rs`), incoming
//! data connections (a peer fetching from this worker: it must say `hello`
//! as a peer within [`WorkerStateConfig::handshake_timeout`], then sends
//! `get-data`) and outgoing ones (this worker fetching from the holder at
//! an address: opened on the first fetch from it, `hello` then the
//! requests pipelined, the hello alone in its frame; the holder answers
//! `hello` as a worker, then `data` or `busy`). Anything else on a data
//! connection is a protocol error: a fatal `error` on it, then it is
//! closed. A peer's `close` or `error` closes it without a word.
//!
//! The edge names connections ([`ConnId`]): an accepted one comes with
//! its id ([`WorkerState::handle_connected`]); for one the machine asks
//! for ([`WorkerOutput::Connect`]) the edge starts connecting and answers
//! with its id at once ([`WorkerState::handle_connecting`], before polling
//! on); what the machine sends on it meanwhile waits for it.
//!
//! Every connection ends with exactly one [`WorkerOutput::Close`] from the
//! machine, whoever ended it: the edge frees the connection then (after
//! writing what is queued on it, if it still can).
//!
//! [`WorkerStateConfig::handshake_timeout`]: super::WorkerStateConfig::handshake_timeout

use super::{WorkerOutput, WorkerState};
use crate::handshake;
use crate::messages::{ErrorReport, GetData, Role};
use crate::{ConnId, ErrorCode, Message, Timestamp, WireError};

/// What a connection is for.
#[derive(Debug)]
pub(super) enum ConnKind {
    /// The scheduler connection (see `WorkerState::phase` for its state).
    Scheduler,
    /// A peer connected to this worker's data address: it fetches from us.
    Incoming,
    /// This worker connected to the holder at this data address: we fetch.
    Outgoing(String),
}

/// A connection the machine knows.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) kind: ConnKind,
    /// The hello exchange is complete (data connections).
    pub(super) handshaken: bool,
}

/// A connection asked for with [`WorkerOutput::Connect`] whose id the
/// edge has not given yet, and what goes on it after the hello.
#[derive(Debug)]
pub(super) struct PendingConnect {
    pub(super) kind: ConnKind,
    pub(super) after_hello: Vec<Message>,
}

impl WorkerState {
    // ---- inputs ---------------------------------------------------------

    /// A peer connected to this worker's data address as `conn`. Its first
    /// message must be a `hello`. Refused (a [`WorkerOutput::Close`] at
    /// once) when there are too many connections or the worker is over.
    pub fn handle_connected(&mut self, now: Timestamp, conn: ConnId) {
        self.now = now;
        if self.conns.contains_key(&conn) {
            return;
        }
        if self.is_finished() || self.conns.len() >= self.config.connections_max {
            return self.outputs.push_back(WorkerOutput::Close(conn));
        }
        self.add_conn(conn, ConnKind::Incoming);
        let deadline = now + self.config.handshake_timeout;
        self.hello_deadlines.push_back((deadline, conn));
    }

    /// The answer to the [`WorkerOutput::Connect`] just polled: the edge is
    /// connecting as `conn` (what the machine sends on it goes out once it
    /// is established; a failure later comes as
    /// [`WorkerState::handle_closed`]), or could not even start (`Err`,
    /// why). Call it before polling on.
    pub fn handle_connecting(&mut self, now: Timestamp, result: Result<ConnId, String>) {
        self.now = now;
        let Some(pending) = self.pending_connects.pop_front() else {
            return;
        };
        let conn = match result {
            Ok(conn) => conn,
            Err(reason) => {
                return match pending.kind {
                    ConnKind::Scheduler => self.scheduler_unreachable(&reason),
                    ConnKind::Outgoing(address) => self.holder_failed(&address),
                    ConnKind::Incoming => {}
                };
            }
        };
        let role = match &pending.kind {
            ConnKind::Scheduler => {
                self.scheduler_connecting(conn);
                Role::Worker
            }
            ConnKind::Outgoing(address) => {
                self.outgoing.insert(address.clone(), conn);
                Role::Peer
            }
            ConnKind::Incoming => return,
        };
        self.add_conn(conn, pending.kind);
        // Pipelined: the hello alone in its frame (the receiver reads at
        // most hello_frame_bytes_max before it), then the rest.
        let hello = handshake::offer(role, Some(self.config.name.clone()));
        self.send(conn, Message::Hello(hello));
        self.outputs.push_back(WorkerOutput::EndFrame(conn));
        for message in pending.after_hello {
            self.send(conn, message);
        }
    }

    /// The messages of one frame arrived on `conn`, in order. Messages
    /// after one that ended the connection are ignored.
    pub fn handle_frame(&mut self, now: Timestamp, conn: ConnId, messages: Vec<Message>) {
        self.now = now;
        for message in messages {
            if !self.conns.contains_key(&conn) {
                break;
            }
            self.dispatch(conn, message);
        }
    }

    /// One message arrived on `conn`.
    pub fn handle_message(&mut self, now: Timestamp, conn: ConnId, message: Message) {
        self.now = now;
        self.dispatch(conn, message);
    }

    /// The bytes on `conn` break the framing or do not decode (`error`
    /// says how): a fatal `error` goes out on it and it is closed.
    pub fn handle_protocol_error(&mut self, now: Timestamp, conn: ConnId, error: WireError) {
        self.now = now;
        match self.conns.get(&conn).map(|c| &c.kind) {
            None => {}
            Some(ConnKind::Scheduler) => self.scheduler_broke_protocol(conn, error),
            Some(_) => self.reject(conn, error),
        }
    }

    /// Nothing more will come on `conn`: the other end closed it, it
    /// failed, or it could not be opened (`reason` says which, for
    /// people). What the machine queued on it still goes out if it can (a
    /// peer that half-closes after its requests gets its replies).
    pub fn handle_closed(&mut self, now: Timestamp, conn: ConnId, reason: &str) {
        self.now = now;
        match self.conns.get(&conn).map(|c| &c.kind) {
            None => {}
            Some(ConnKind::Scheduler) => self.scheduler_closed(conn, reason),
            Some(_) => self.close(conn),
        }
    }

    /// Everything queued on `conn` has been written.
    pub fn handle_drained(&mut self, now: Timestamp, conn: ConnId) {
        self.now = now;
        self.reply_bytes_in_flight.remove(&conn);
    }

    // ---- inspection -----------------------------------------------------

    /// The data address an outgoing connection goes to (`None` for other
    /// connections and forgotten ones).
    pub fn holder_address(&self, conn: ConnId) -> Option<&str> {
        match &self.conns.get(&conn)?.kind {
            ConnKind::Outgoing(address) => Some(address),
            _ => None,
        }
    }

    /// Connections open now (all kinds).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The connections with replies not yet reported written (see
    /// [`WorkerState::handle_drained`]): while they are unwritten, further
    /// requests may be answered `busy`.
    pub fn replying_to(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.reply_bytes_in_flight.keys().copied()
    }

    /// Whether `conn` is a connection the machine holds (not refused, not
    /// closed).
    pub fn knows(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    // ---- routing ----------------------------------------------------------

    fn add_conn(&mut self, conn: ConnId, kind: ConnKind) {
        let handshaken = false;
        self.conns.insert(conn, Connection { kind, handshaken });
    }

    /// Asks the edge for a connection to `address` (see
    /// [`WorkerState::handle_connecting`]); `after_hello` goes on it after
    /// the hello.
    pub(super) fn connect(&mut self, kind: ConnKind, address: &str, after_hello: Vec<Message>) {
        self.outputs.push_back(WorkerOutput::Connect {
            address: address.to_string(),
        });
        let pending = PendingConnect { kind, after_hello };
        self.pending_connects.push_back(pending);
    }

    pub(super) fn send(&mut self, conn: ConnId, message: Message) {
        self.outputs.push_back(WorkerOutput::Send(conn, message));
    }

    fn dispatch(&mut self, conn: ConnId, message: Message) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match (&c.kind, c.handshaken) {
            (ConnKind::Scheduler, _) => self.scheduler_message(conn, message),
            (_, false) => self.data_hello(conn, message),
            (ConnKind::Incoming, true) => match message {
                Message::GetData(request) => self.peer_request(conn, request),
                Message::Heartbeat(_) => {}
                Message::Close(_) | Message::ErrorReport(_) => self.close(conn),
                other => self.reject(conn, not_on_a_data_connection(&other)),
            },
            (ConnKind::Outgoing(address), true) => match message {
                m @ (Message::Data(_) | Message::Busy(_)) => {
                    let address = address.clone();
                    self.peer_reply(&address, m);
                }
                Message::Close(_) | Message::ErrorReport(_) => self.close(conn),
                other => self.reject(conn, not_on_a_data_connection(&other)),
            },
        }
    }

    /// The first message on a data connection: the hello exchange. This
    /// worker accepts role `peer` on incoming connections (and answers with
    /// its own hello) and expects a worker to answer on outgoing ones.
    fn data_hello(&mut self, conn: ConnId, message: Message) {
        let hello = match message {
            Message::Hello(hello) => hello,
            Message::ErrorReport(_) => return self.close(conn),
            other => {
                let e = WireError::new(
                    ErrorCode::BadHandshake,
                    format!("expected hello, got `{}`", other.op()),
                );
                return self.reject(conn, e);
            }
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let checked = match c.kind {
            ConnKind::Incoming => handshake::accept(
                &hello,
                Role::Worker,
                &[Role::Peer],
                conn.0,
                Some(self.config.name.clone()),
            )
            .map(|(reply, _)| Some(Message::Hello(reply))),
            _ => handshake::check_reply(&hello, Role::Worker).map(|_| None),
        };
        match checked {
            Ok(reply) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.handshaken = true;
                }
                if let Some(reply) = reply {
                    self.send(conn, reply);
                }
            }
            Err(e) => self.reject(conn, e),
        }
    }

    /// Sends `request` to the holder at `address`, asking for a connection
    /// to it first if there is none (the request pipelined behind the
    /// hello). False when no connection can be opened (too many): the
    /// request fails at once.
    pub(super) fn send_to_holder(&mut self, address: &str, request: GetData) -> bool {
        let message = Message::GetData(request);
        if let Some(&conn) = self.outgoing.get(address) {
            self.send(conn, message);
            return true;
        }
        let pending = self
            .pending_connects
            .iter_mut()
            .find(|p| matches!(&p.kind, ConnKind::Outgoing(a) if a == address));
        if let Some(pending) = pending {
            pending.after_hello.push(message);
            return true;
        }
        if self.conns.len() + self.pending_connects.len() >= self.config.connections_max {
            return false;
        }
        let kind = ConnKind::Outgoing(address.to_string());
        self.connect(kind, address, vec![message]);
        true
    }

    /// Sends a fatal error on a data connection, then closes it.
    pub(super) fn reject(&mut self, conn: ConnId, e: WireError) {
        self.send(
            conn,
            Message::ErrorReport(ErrorReport {
                code: e.code.number(),
                message: e.message,
                fatal: true,
                request: None,
                keys: None,
            }),
        );
        self.close(conn);
    }

    /// Forgets a data connection and has the edge close it: an incoming
    /// one's reply bytes no longer count, an outgoing one's requests are
    /// asked elsewhere.
    pub(super) fn close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.outputs.push_back(WorkerOutput::Close(conn));
        match c.kind {
            ConnKind::Incoming => {
                self.reply_bytes_in_flight.remove(&conn);
            }
            ConnKind::Outgoing(address) => {
                if self.outgoing.get(&address) == Some(&conn) {
                    self.outgoing.remove(&address);
                }
                self.holder_failed(&address);
            }
            ConnKind::Scheduler => {}
        }
    }

    /// Closes every data connection (the worker finishes or starts anew).
    pub(super) fn close_data_connections(&mut self) {
        let mut data: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !matches!(c.kind, ConnKind::Scheduler))
            .map(|(&conn, _)| conn)
            .collect();
        data.sort();
        for conn in data {
            self.close(conn);
        }
        self.hello_deadlines.clear();
    }

    /// Refuses incoming connections that sent no `hello` in time.
    pub(super) fn expire_hellos(&mut self) {
        while let Some(&(deadline, conn)) = self.hello_deadlines.front() {
            let waiting = self.conns.get(&conn).is_some_and(|c| !c.handshaken);
            if waiting && deadline > self.now {
                return;
            }
            self.hello_deadlines.pop_front();
            if waiting {
                let e = WireError::new(
                    ErrorCode::BadHandshake,
                    "no hello within the handshake timeout",
                );
                self.reject(conn, e);
            }
        }
    }

    /// When the first incoming connection still without a hello is due.
    pub(super) fn next_hello_deadline(&self) -> Option<Timestamp> {
        self.hello_deadlines
            .iter()
            .find(|(_, conn)| self.conns.get(conn).is_some_and(|c| !c.handshaken))
            .map(|(at, _)| *at)
    }
}

fn not_on_a_data_connection(message: &Message) -> WireError {
    WireError::new(
        ErrorCode::UnexpectedMessage,
        format!("`{}` is not allowed on a data connection", message.op()),
    )
}
