//! The client session: the sans-IO state machine behind every dask/1
//! client (the Rust client, the C SDK, the wasm/JS SDK).
//!
//! It owns the handshake, request ids, key generation, the state of every
//! key the client holds futures for, a local reference count per key, and
//! the outstanding requests. It performs no I/O and reads no clock.
//!
//! # Call order
//!
//! 1. [`ClientSession::new`] queues the `hello` offer: send it first.
//! 2. Feed every message received with [`ClientSession::handle_message`]
//!    (or raw bytes with [`ClientSession::handle_bytes`]); when the
//!    transport closes call [`ClientSession::handle_close`].
//! 3. After each input or API call, drain [`ClientSession::poll_transmit`]
//!    (or [`ClientSession::drain_transmit_into`]) and send what it gives,
//!    in order; then drain [`ClientSession::poll_event`].
//! 4. Once [`ClientSession::is_closed`] is true and the transmit queue is
//!    empty, close the transport.
//!
//! Requests may be made before the handshake completes: they are queued
//! after the `hello` (dask/1 lets a connector pipeline frames). A session
//! made with [`ClientSession::with_auth`] proves the client secret
//! (spec: "Authentication"): it sends its `hello` alone, holds every
//! request until the scheduler has proven the same secret and its own
//! `auth-proof` has gone, and sends none to a scheduler that did not
//! prove it. Over TLS, hand it the connection's channel binding with
//! [`ClientSession::handle_channel_binding`] before any input.
//!
//! # Reconnection
//!
//! A scheduler that keeps a journal gives the session a token (dask/1.1
//! hello `session`; spec: "Reconnection"). When such a session's
//! connection is lost and its driver said it reconnects
//! ([`ClientSession::set_resumable`]), [`ClientSession::handle_close`] does
//! not close it:
//! requests in flight fail (send them again), held keys keep their state
//! and [`ClientSession::wants_reconnect`] says the driver should connect
//! again (to the same scheduler, restarted) and call
//! [`ClientSession::resume`], which queues a hello naming the session, or
//! [`ClientSession::give_up`]. A resumed session gets the events of its
//! keys again; one the scheduler no longer has (its reply names another
//! session) reports every held key lost, but those of the graphs sent on
//! the new connection (sent again, nothing had acknowledged them, or not
//! sent before): the new session takes them. Graphs and releases that may
//! have died with the scheduler go again: graphs nothing acknowledged
//! (the parts of a large graph ask for `ok`), releases no later reply
//! confirmed.
//!
//! # References
//!
//! Every wanted key (from [`ClientSession::submit`], [`ClientSession::scatter`]
//! or a `dataset` reply) gets one local reference per time it is wanted; a
//! handle adds more with [`ClientSession::retain`] and drops them with
//! [`ClientSession::release`]. When the count reaches zero the key is
//! forgotten locally and a `release-keys` is queued (batched with other
//! releases, and always sent before any later request so a key released
//! and then submitted again stays wanted). It is queued whatever the key's
//! state: the scheduler keeps a finished key's result, and an erred key
//! with its error (so that tasks built on it err with its cause), until
//! the client releases it; for a cancelled or lost key the want has
//! already ended there and the release is ignored.
//!
//! # Files
//!
//! - `mod.rs`: the session, its lifecycle and its output queue;
//! - `events.rs`: request ids and errors, key states, the events;
//! - `keys.rs`: key names, held keys and their reference counts;
//! - `table.rs`: the table of held keys;
//! - `requests.rs`: what the driver asks (submit, scatter, gather, ...);
//! - `input.rs`: what the scheduler sends, and the transport's end;
//! - `graph.rs`: task specs, options and graphs (and graph files);
//! - `parts.rs`: a large graph submitted as several `update-graph`s;
//! - `waiting.rs`: why keys wait (dask/1.1 `key-waiting`), progress counts;
//! - `tests/`: the tests, one file per concern.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::auth::{ConnectorAuth, Secret, CHANNEL_BINDING_BYTES, NONCE_BYTES};
use crate::frame::{FrameDecoder, FrameEncoder};
use crate::handshake::{self, Negotiated};
use crate::messages::Role;
use crate::msgpack::RawValue;
use crate::wire::Key;
use crate::Message;

mod events;
mod graph;
mod input;
mod keys;
mod parts;
mod requests;
mod table;
mod waiting;

pub use events::{ClientEvent, KeyState, RequestError, RequestId, TaskFailure};
pub use graph::{encode_args, encode_kwargs, task_spec, Graph, GraphError, TaskOptions};
pub use input::PYTHON_DASK_SCHEDULER;
pub use keys::{format_key, is_valid_key, KeyGenerator, KEY_FUNCTION_BYTES_MAX};
pub use parts::{GraphPart, SubmitPlan, SUBMIT_FIRST_PART_BYTES, SUBMIT_PART_BYTES};
pub use waiting::{Progress, Waiting};

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// `hello` sent, reply not yet received.
    Handshaking,
    /// Handshake done.
    Ready,
    /// Over, for the reason given.
    Closed(String),
}

/// One held key.
#[derive(Debug)]
struct KeyEntry {
    state: KeyState,
    /// Local handles (references) to the key.
    refs: u64,
    /// The submit or scatter that made the key wanted, until the key's
    /// first event shows the scheduler accepted it.
    origin: Option<RequestId>,
    /// The request whose want the scheduler's events for the key answer
    /// (dask/1.1 events carry it): an event for another one is stale, left
    /// over from a want this client has since released.
    want_request: RequestId,
    /// Why it cannot progress, while pending (dask/1.1 `key-waiting`);
    /// boxed: rare, and the entry of every key is 64 bytes smaller.
    waiting: Option<Box<Waiting>>,
    /// Its result, while finished, when `key-finished` carried it
    /// (dask/1.1 inline results): no `gather` is needed for it.
    inline: Option<RawValue>,
}

/// A request not yet answered.
#[derive(Debug)]
enum Pending {
    /// update-graph or scatter: no success reply; `outstanding` counts the
    /// keys still waiting for their first event (the entry is dropped at 0).
    Wants {
        keys: Vec<Key>,
        outstanding: usize,
    },
    Gather,
    WhoHas,
    ClusterInfo,
    Ok,
    /// An acknowledged empty `update-graph` (dask/1.1): answered by `ok`.
    Barrier,
    GetDataset,
    ListDatasets,
    WaitingKeys,
}

/// The client side of one connection to a scheduler. See the module doc
/// for the call order.
#[derive(Debug)]
pub struct ClientSession {
    name: Option<String>,
    phase: Phase,
    negotiated: Option<Negotiated>,
    keygen: KeyGenerator,
    next_request: u64,
    /// The held keys (foldhash: the client's own keys, hashed several
    /// times each per task; std's SipHash was a good part of a 1M-task
    /// graph's client time).
    keys: table::KeyTable,
    requests: HashMap<RequestId, Pending>,
    transmit: VecDeque<Message>,
    to_release: Vec<Key>,
    events: VecDeque<ClientEvent>,
    decoder: FrameDecoder,
    /// Whether `close` was asked for by the user (and queued).
    close_sent: bool,
    /// The proof in progress: set from the hello until the proof is sent.
    auth: Option<ConnectorAuth>,
    /// The hello went out and the proof is not sent yet: nothing more goes.
    holding: bool,
    /// This connection's TLS channel binding.
    channel_binding: Option<[u8; CHANNEL_BINDING_BYTES]>,
    /// Graphs larger than this go in parts (see `parts.rs`).
    part_bytes: usize,
    /// The session token the scheduler gave (dask/1.1, a scheduler with a
    /// journal): a lost connection can be resumed (see the module docs).
    session_token: Option<String>,
    /// The connection was lost and the session can be resumed: why, until
    /// the driver calls [`ClientSession::resume`] or
    /// [`ClientSession::give_up`].
    lost: Option<String>,
    /// The handshake under way resumes the session.
    resuming: bool,
    /// Its driver reconnects (see [`ClientSession::set_resumable`]).
    resumable: bool,
    /// Graphs sent to a scheduler that keeps a journal, until something
    /// shows it accepted them (an event of one of their keys, their own or
    /// a later `ok`) or refused them: a resumed session sends them again,
    /// since one the scheduler had not accepted when it died is lost.
    unacked: BTreeMap<RequestId, UnackedGraph>,
    /// Parts of a graph sent in parts (`parts.rs`) not yet transmitted:
    /// they are tracked in `unacked` even once none of their keys is held.
    part_requests: HashSet<RequestId>,
    /// Keys released (`release-keys` queued) on a connection that can be
    /// resumed, until a reply to a later request shows the scheduler
    /// handled the release (and wrote it to its journal): a resumed session
    /// releases them again, since a release that had not arrived when the
    /// scheduler died is lost, and the scheduler would keep their wants.
    unconfirmed_releases: Vec<Key>,
    /// The first request id queued after the last of those releases: a
    /// reply to it or a later one confirms them.
    release_watermark: u64,
    /// Keys wanted again ([`ClientSession::want_again`]) and the request of
    /// their earlier want: a scheduler restarted from its journal kept that
    /// want, pending, and answers it (a pending want keeps its request), so
    /// its events are not stale. Few entries: kept until the key is released.
    earlier_requests: foldhash::HashMap<Key, RequestId>,
}

/// A graph sent and not known to be accepted (see `ClientSession::unacked`).
#[derive(Debug)]
struct UnackedGraph {
    graph: crate::messages::UpdateGraph,
    /// One part of a graph sent in parts: later parts refer to its keys, so
    /// it goes again whole even when none of its keys is held any more, and
    /// it is acknowledged only by an event of its keys or an `ok`.
    in_parts: bool,
}

/// What a client proves: the client secret, with a fresh nonce from the
/// edge, and whether its connection is TLS.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The cluster's client secret.
    pub secret: Secret,
    /// 32 fresh random bytes.
    pub nonce: [u8; NONCE_BYTES],
    /// Whether this end of the connection is TLS (the hello's `tls`).
    pub tls: bool,
}

impl ClientSession {
    /// A session that introduces itself as `name`; its generated keys carry
    /// `key_seed` (pass a random number when other clients share the
    /// scheduler). The `hello` offer is queued for transmission.
    pub fn new(name: Option<String>, key_seed: u64) -> Self {
        Self::with_auth(name, key_seed, None)
    }

    /// [`ClientSession::new`] that proves `auth` (see the module docs);
    /// `None` is [`ClientSession::new`].
    pub fn with_auth(name: Option<String>, key_seed: u64, auth: Option<ClientAuth>) -> Self {
        let mut s = ClientSession {
            name: name.clone(),
            phase: Phase::Handshaking,
            negotiated: None,
            keygen: KeyGenerator::new(key_seed),
            next_request: 1,
            keys: table::KeyTable::default(),
            requests: HashMap::new(),
            transmit: VecDeque::new(),
            to_release: Vec::new(),
            events: VecDeque::new(),
            decoder: FrameDecoder::default(),
            close_sent: false,
            auth: None,
            holding: false,
            channel_binding: None,
            part_bytes: SUBMIT_PART_BYTES,
            session_token: None,
            lost: None,
            resuming: false,
            resumable: false,
            unacked: BTreeMap::new(),
            part_requests: HashSet::new(),
            unconfirmed_releases: Vec::new(),
            release_watermark: 0,
            earlier_requests: foldhash::HashMap::default(),
        };
        let mut hello = handshake::offer(Role::Client, name);
        if let Some(auth) = auth {
            let connector = ConnectorAuth::new(Role::Client, auth.secret, auth.nonce);
            hello.auth = Some(connector.offer());
            hello.tls = Some(auth.tls);
            s.auth = Some(connector);
        }
        s.transmit.push_back(Message::from(hello));
        s
    }

    /// This connection's TLS channel binding (from the edge's transport,
    /// once its TLS handshake is done, before any input); proofs cover it.
    pub fn handle_channel_binding(&mut self, binding: [u8; CHANNEL_BINDING_BYTES]) {
        self.channel_binding = Some(binding);
    }

    /// The name given to [`ClientSession::new`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the handshake agreed, once done.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether the handshake completed (and the session is not closed).
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Says that the driver reconnects when [`ClientSession::wants_reconnect`]
    /// (see the module docs); without it a lost connection closes the
    /// session, as with a scheduler that keeps no journal.
    pub fn set_resumable(&mut self, resumable: bool) {
        self.resumable = resumable;
    }

    /// Whether the connection was lost and the session waits to be
    /// resumed on a new one (see the module docs).
    pub fn wants_reconnect(&self) -> bool {
        self.lost.is_some()
    }

    /// The session token the scheduler gave, if it keeps a journal.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// Resumes a lost session on a new connection (whose channel binding,
    /// over TLS, comes next with [`ClientSession::handle_channel_binding`]):
    /// a hello naming the session is queued first, proving `auth` (a fresh
    /// nonce) when given. Does nothing unless [`ClientSession::wants_reconnect`].
    pub fn resume(&mut self, auth: Option<ClientAuth>) {
        if self.lost.take().is_none() {
            return;
        }
        self.decoder = FrameDecoder::default();
        self.channel_binding = None;
        self.holding = false;
        self.resuming = true;
        self.phase = Phase::Handshaking;
        let mut hello = handshake::offer(Role::Client, self.name.clone());
        hello.session = self.session_token.clone();
        self.auth = None;
        if let Some(auth) = auth {
            let connector = ConnectorAuth::new(Role::Client, auth.secret, auth.nonce);
            hello.auth = Some(connector.offer());
            hello.tls = Some(auth.tls);
            self.auth = Some(connector);
        }
        // Graphs not known to be accepted go again. A whole graph wants
        // only the keys still waiting for it (a graph accepted twice is
        // shared). A part wants what it wanted (later parts refer to its
        // keys), and the keys no longer held are released after the parts.
        let unacked = std::mem::take(&mut self.unacked);
        let mut again = Vec::with_capacity(unacked.len());
        let mut release_after: Vec<Key> = Vec::new();
        for (id, mut sent) in unacked {
            if sent.in_parts {
                release_after.extend(
                    sent.graph
                        .wanted
                        .iter()
                        .filter(|k| !self.keys.contains_key(*k))
                        .cloned(),
                );
            } else {
                if !matches!(self.requests.get(&id), Some(Pending::Wants { .. })) {
                    continue;
                }
                sent.graph
                    .wanted
                    .retain(|k| self.keys.get(k).is_some_and(|e| e.origin == Some(id)));
            }
            again.push(sent);
        }
        release_after.extend(
            std::mem::take(&mut self.unconfirmed_releases)
                .into_iter()
                .filter(|k| !self.keys.contains_key(k)),
        );
        release_after.sort_unstable();
        release_after.dedup();
        // Still unconfirmed: sent again, it is confirmed as the first was.
        self.unconfirmed_releases.clone_from(&release_after);
        if !release_after.is_empty() {
            self.transmit
                .push_front(Message::ReleaseKeys(crate::messages::ReleaseKeys {
                    keys: release_after.as_slice().into(),
                }));
        }
        for sent in again.into_iter().rev() {
            // poll_transmit tracks it again (a part by its flag).
            if sent.in_parts {
                self.part_requests.insert(RequestId(sent.graph.request));
            }
            self.transmit.push_front(Message::UpdateGraph(sent.graph));
        }
        self.transmit.push_front(Message::from(hello));
    }

    /// Stops waiting to resume a lost session: it closes, as any session
    /// whose connection is lost.
    pub fn give_up(&mut self) {
        if let Some(reason) = self.lost.take() {
            self.enter_closed(format!("connection lost and not resumed: {reason}"));
        }
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// Why the session closed, once it has.
    pub fn closed_reason(&self) -> Option<&str> {
        match &self.phase {
            Phase::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// A new key for a task running `function`, unique to this session.
    pub fn new_key(&mut self, function: &str) -> Key {
        self.keygen.next_key(function)
    }

    // ---- output -------------------------------------------------------

    /// The next message to send, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        // Held while the proof is due, and while the connection is lost
        // (it all goes on the next one, after the resuming hello).
        if self.holding || self.lost.is_some() {
            return None;
        }
        if self.transmit.is_empty() {
            self.flush_releases();
        }
        let mut m = self.transmit.pop_front();
        if self.auth.is_some() && matches!(m, Some(Message::Hello(_))) {
            self.holding = true;
        }
        if let Some(Message::UpdateGraph(g)) = &mut m {
            let id = RequestId(g.request);
            let in_parts = self.part_requests.remove(&id);
            let wants = matches!(self.requests.get(&id), Some(Pending::Wants { .. }));
            if (wants || in_parts) && self.resumable && self.session_token.is_some() {
                if in_parts {
                    // Nothing else may answer a part (its keys can all be
                    // released before any event): its `ok` does.
                    g.ack = Some(true);
                }
                let graph = g.clone();
                self.unacked.insert(id, UnackedGraph { graph, in_parts });
            }
        }
        m
    }

    /// Whether a message waits in the transmit queue.
    pub fn wants_transmit(&self) -> bool {
        !self.holding
            && self.lost.is_none()
            && (!self.transmit.is_empty() || !self.to_release.is_empty())
    }

    /// Moves every queued message into `encoder` (one batch). A message too
    /// large for a frame is not sent: its request fails.
    pub fn drain_transmit_into(&mut self, encoder: &mut FrameEncoder) {
        while let Some(m) = self.poll_transmit() {
            if let Err(e) = encoder.push(&m) {
                self.handle_unsendable(&m, &e);
            }
            if matches!(m, Message::Hello(_) | Message::AuthProof(_)) {
                // The hello and the proof go alone in their frames, which
                // must stay under hello_frame_bytes_max; requests pipeline
                // in the next.
                encoder.finish();
            }
            if matches!(m, Message::ReleaseKeys(_) | Message::UpdateGraph(_)) {
                // The scheduler takes a frame in one event: the parts of a
                // large graph or release go in frames of their own (in one
                // frame, the workers waited for the whole graph's intake).
                encoder.finish();
            }
        }
    }

    /// Every queued message as frame bytes, ready to write.
    pub fn transmit_bytes(&mut self) -> Vec<u8> {
        let mut enc = FrameEncoder::default();
        self.drain_transmit_into(&mut enc);
        enc.take()
    }

    /// The next event, in order.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
