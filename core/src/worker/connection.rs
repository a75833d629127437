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
//! With [`WorkerStateConfig::auth`] every connection proves the worker
//! secret both ways (spec: "Authentication"): the worker's hellos offer
//! `auth` (role `worker` to the scheduler, `peer` to holders) and what
//! would be pipelined behind them waits until the acceptor has proven
//! the secret and this side's `auth-proof` has gone (an acceptor that
//! proves nothing gets `error{3003}` and the connection is dropped); an
//! incoming peer's hello is answered with this worker's proof, and
//! nothing but its `auth-proof` is accepted next (3003 otherwise). Over
//! TLS the edge hands each connection's channel binding in with
//! [`WorkerState::handle_channel_binding`], and proofs cover it.
//!
//! [`WorkerStateConfig::handshake_timeout`]: super::WorkerStateConfig::handshake_timeout
//! [`WorkerStateConfig::auth`]: super::WorkerStateConfig::auth

use super::{Level, LogRecord, WorkerOutput, WorkerState};
use crate::auth::{self, AcceptorAuth, ConnectorAuth, Credentials, CHANNEL_BINDING_BYTES};
use crate::handshake;
use crate::messages::{ErrorReport, GetData, Hello, Role};
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
    /// The hello exchange is complete (data connections), its proofs
    /// included.
    pub(super) handshaken: bool,
    /// Where its authentication stands.
    auth: ConnAuth,
    /// What this side sends while its proof is not out yet (a connector
    /// that offered `auth` sends nothing after its hello until then).
    held: Vec<Message>,
    /// Its TLS channel binding, which proofs cover.
    channel_binding: Option<[u8; CHANNEL_BINDING_BYTES]>,
    /// Both sides listed the feature `value-parts`: a value too large for
    /// a frame can be sent on it (in parts).
    pub(super) value_parts: bool,
    /// Values on one host (feature `value-local`, `local.rs`).
    pub(super) local: super::local::ConnLocal,
}

/// Authentication on one connection.
#[derive(Debug)]
enum ConnAuth {
    /// None asked, or done.
    Settled,
    /// This side connected and offered `auth`: the acceptor's proof is due
    /// in its reply; this side holds what it sends until it answers.
    Offered(ConnectorAuth),
    /// A peer connected and this side replied with its proof: the peer's
    /// `auth-proof` is due, and nothing else is accepted.
    ProofDue(Box<AcceptorAuth>),
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
        let tls = match &pending.kind {
            ConnKind::Outgoing(address) => is_tls(address),
            _ => is_tls(&self.config.scheduler),
        };
        self.add_conn(conn, pending.kind);
        // Pipelined: the hello alone in its frame (the receiver reads at
        // most hello_frame_bytes_max before it), then the rest (held
        // until this side's proof when it offers auth).
        let mut hello = handshake::offer(role, Some(self.config.name.clone()));
        if role == Role::Peer {
            self.offer_local(&mut hello);
        }
        if let Some(connector) = self.connector_auth(role) {
            hello.auth = Some(connector.offer());
            hello.tls = Some(tls);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.auth = ConnAuth::Offered(connector);
            }
        }
        self.send_now(conn, Message::from(hello));
        self.outputs.push_back(WorkerOutput::EndFrame(conn));
        for message in pending.after_hello {
            self.send(conn, message);
        }
    }

    /// `conn` (just accepted or connected) is TLS, with this channel
    /// binding: proofs on it cover the binding. Call it before any frame
    /// of `conn`.
    pub fn handle_channel_binding(&mut self, conn: ConnId, binding: [u8; CHANNEL_BINDING_BYTES]) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.channel_binding = Some(binding);
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
        let connection = Connection {
            kind,
            handshaken: false,
            auth: ConnAuth::Settled,
            held: Vec::new(),
            channel_binding: None,
            value_parts: false,
            local: Default::default(),
        };
        self.conns.insert(conn, connection);
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

    /// Sends `message` on `conn`, or holds it while this side's proof is
    /// not out yet.
    pub(super) fn send(&mut self, conn: ConnId, message: Message) {
        if self.nonces.is_some() {
            if let Some(c) = self.conns.get_mut(&conn) {
                if matches!(c.auth, ConnAuth::Offered(_)) {
                    return c.held.push(message);
                }
            }
        }
        self.send_now(conn, message);
    }

    /// Sends `message` on `conn`, held or not (hellos, proofs, refusals).
    fn send_now(&mut self, conn: ConnId, message: Message) {
        self.outputs.push_back(WorkerOutput::Send(conn, message));
    }

    // ---- authentication -----------------------------------------------------

    /// The worker secret, when authentication is on.
    fn credentials(&self) -> Option<&Credentials> {
        let auth = self.config.auth.as_ref()?;
        auth.credentials.worker.as_ref()?;
        Some(&auth.credentials)
    }

    /// The offer of a connection of `role` this worker opens, when
    /// authentication is on.
    fn connector_auth(&mut self, role: Role) -> Option<ConnectorAuth> {
        let secret = self.credentials()?.secret_for(role)?.clone();
        let nonce = self.nonces.as_mut()?.next_nonce();
        Some(ConnectorAuth::new(role, secret, nonce))
    }

    /// The acceptor's reply `hello` on `conn`, opened by this worker, has
    /// been checked: when this side offered `auth`, the reply must prove
    /// the worker secret; then this side's `auth-proof` goes, and what it
    /// held after it. On error (the acceptor proved nothing, or not the
    /// secret) only `error{3003}` goes out; the caller drops the
    /// connection.
    pub(super) fn connector_proves(
        &mut self,
        conn: ConnId,
        reply: &Hello,
    ) -> Result<(), WireError> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let ConnAuth::Offered(connector) = std::mem::replace(&mut c.auth, ConnAuth::Settled) else {
            return Ok(());
        };
        let held = std::mem::take(&mut c.held);
        match connector.answer(reply, c.channel_binding.as_ref()) {
            Ok(proof) => {
                self.send_now(conn, Message::AuthProof(proof));
                for message in held {
                    self.send_now(conn, message);
                }
                Ok(())
            }
            Err(e) => {
                self.send_now(conn, Message::error(&auth::failed(), None));
                Err(e)
            }
        }
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
                Message::ValueLocalDone(done) => self.leases_done(conn, done),
                Message::Heartbeat(_) => {}
                Message::Close(_) | Message::ErrorReport(_) => self.close(conn),
                other => self.reject(conn, not_on_a_data_connection(&other)),
            },
            (ConnKind::Outgoing(address), true) => match message {
                m @ (Message::Data(_) | Message::Busy(_)) => {
                    let address = address.clone();
                    self.peer_reply(&address, m);
                }
                Message::DataLocal(m) => {
                    let address = address.clone();
                    if let Err(e) = self.data_local_arrived(conn, &address, m) {
                        self.reject(conn, e);
                    }
                }
                Message::Close(_) | Message::ErrorReport(_) => self.close(conn),
                other => self.reject(conn, not_on_a_data_connection(&other)),
            },
        }
    }

    /// The first messages on a data connection: the hello exchange. This
    /// worker accepts role `peer` on incoming connections (and answers with
    /// its own hello, and proof) and expects a worker to answer on
    /// outgoing ones; with authentication on, an incoming peer's
    /// `auth-proof` comes next.
    fn data_hello(&mut self, conn: ConnId, message: Message) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let ConnAuth::ProofDue(_) = c.auth {
            let ConnAuth::ProofDue(pending) = std::mem::replace(&mut c.auth, ConnAuth::Settled)
            else {
                return;
            };
            let verdict = match &message {
                Message::AuthProof(proof) => pending.verify(proof),
                _ => Err(auth::failed()),
            };
            return match verdict {
                Ok(()) => c.handshaken = true,
                Err(e) => self.reject(conn, e),
            };
        }
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
        if let ConnKind::Outgoing(address) = &c.kind {
            let address = address.clone();
            let checked = handshake::check_reply(&hello, Role::Worker)
                .and_then(|_| self.connector_proves(conn, &hello));
            return match checked {
                Ok(()) => {
                    self.holder_hello(conn, &hello);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.handshaken = true;
                    }
                }
                Err(e) if e.code == ErrorCode::AuthFailed => {
                    let line = format!("the worker at {address} is not trusted: {}", e.message);
                    let record = LogRecord::new(Level::Warn, "peer-not-trusted", line)
                        .with("address", address.as_str());
                    self.outputs.push_back(WorkerOutput::Log(record));
                    self.close(conn);
                }
                Err(e) => self.reject(conn, e),
            };
        }
        let binding = c.channel_binding;
        let accepted = handshake::accept(
            &hello,
            Role::Worker,
            &[Role::Peer],
            conn.0,
            Some(self.config.name.clone()),
        );
        let mut reply = match accepted {
            Ok((reply, _)) => reply,
            Err(e) => return self.reject(conn, e),
        };
        // The peer's `local` is trusted only after its proof: it is used
        // for `get-data`, which comes after.
        let local = self.same_host(&hello);
        if handshake::lists(&hello.features, handshake::VALUE_LOCAL) {
            self.offer_local(&mut reply);
        }
        let mut next = ConnAuth::Settled;
        let nonce = match self.credentials() {
            Some(_) => self.nonces.as_mut().map(|n| n.next_nonce()),
            None => None,
        };
        if let (Some(nonce), Some(credentials)) = (nonce, self.credentials()) {
            match AcceptorAuth::challenge(&hello, credentials, nonce, binding) {
                Ok((auth, pending)) => {
                    reply.auth = Some(auth);
                    reply.tls = Some(binding.is_some());
                    next = ConnAuth::ProofDue(Box::new(pending));
                }
                Err(e) => return self.reject(conn, e),
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.handshaken = matches!(next, ConnAuth::Settled);
            c.auth = next;
            c.value_parts = handshake::lists_value_parts(&reply.features);
            c.local.usable = local;
        }
        self.send_now(conn, Message::from(reply));
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
        self.send_now(
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
                self.retire_leases(c.local);
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

/// Whether `address` is a TLS one (`tls://`): the edge connects with TLS
/// to those, and the hello's `tls` says so.
fn is_tls(address: &str) -> bool {
    address.starts_with("tls://")
}

fn not_on_a_data_connection(message: &Message) -> WireError {
    WireError::new(
        ErrorCode::UnexpectedMessage,
        format!("`{}` is not allowed on a data connection", message.op()),
    )
}
