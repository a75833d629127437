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
//! after the `hello` (dask/1 lets a connector pipeline frames).
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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use crate::error::{ErrorCode, WireError};
use crate::frame::{FrameDecoder, FrameEncoder};
use crate::handshake::{self, Negotiated};
use crate::messages::{
    CancelKeys, Close, ClusterInfo, ClusterInfoReply, ErrorReport, Gather, GetDataset,
    ListDatasets, PublishDataset, ReleaseKeys, Resources, Role, Scatter, TaskSpec,
    UnpublishDataset, UpdateGraph, WhoHas,
};
use crate::msgpack::{check_key, RawValue, Reader, KEY_BYTES_MAX};
use crate::wire::{FieldTable, Key};
use crate::Message;

/// Identifies one request of this session; echoed by the scheduler in its
/// reply or error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a request failed: an `error` reply from the scheduler (with its
/// code), or a local reason (no code): the connection closed, or the
/// message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The dask/1 error code, when the scheduler (or the frame encoder) gave one.
    pub code: Option<u32>,
    /// What went wrong.
    pub message: String,
}

impl RequestError {
    /// The code's short name (e.g. `unknown-key`), when it is a known code.
    pub fn code_name(&self) -> Option<&'static str> {
        self.code
            .and_then(ErrorCode::from_number)
            .map(ErrorCode::name)
    }

    fn local(message: impl Into<String>) -> Self {
        RequestError {
            code: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.code_name()) {
            (Some(_), Some(name)) => write!(f, "{name}: {}", self.message),
            (Some(code), None) => write!(f, "error {code}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

/// A task's failure as reported in `key-erred`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The remote error's type, e.g. "ZeroDivisionError".
    pub error_type: String,
    /// The remote error's message.
    pub message: String,
    /// The remote traceback text, possibly empty.
    pub traceback: String,
    /// The key whose task raised the error, when not this one.
    pub cause: Option<Key>,
}

/// What this client knows about a key it holds futures for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Not finished yet (or not yet known to have finished).
    Pending,
    /// The result is in memory on a worker.
    Finished {
        /// Size of the result's msgpack encoding.
        nbytes: u64,
    },
    /// The task, or one it depends on, failed.
    Erred(TaskFailure),
    /// The key was cancelled.
    Cancelled,
    /// The key's data is gone and cannot be recomputed.
    Lost {
        /// Why, for people.
        message: String,
    },
    /// The request that wanted the key failed (the graph was refused, the
    /// scatter had no worker) or the connection closed before it finished.
    Failed(RequestError),
}

impl KeyState {
    /// Whether no more events are expected (anything but `Pending`).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, KeyState::Pending)
    }

    /// A short name: pending, finished, erred, cancelled, lost, failed.
    pub fn name(&self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Finished { .. } => "finished",
            KeyState::Erred(_) => "erred",
            KeyState::Cancelled => "cancelled",
            KeyState::Lost { .. } => "lost",
            KeyState::Failed(_) => "failed",
        }
    }
}

/// What the session reports to its driver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The scheduler accepted the handshake.
    Connected {
        /// The id the scheduler gave this client.
        client_id: Option<u64>,
    },
    /// A held key changed state.
    KeyUpdated {
        /// The key.
        key: Key,
        /// Its new state.
        state: KeyState,
    },
    /// The answer to [`ClientSession::gather`].
    Gathered {
        /// The request.
        request: RequestId,
        /// Values by key.
        data: BTreeMap<Key, RawValue>,
        /// Keys not in memory anywhere.
        missing: Vec<Key>,
    },
    /// The answer to [`ClientSession::who_has`].
    WhoHas {
        /// The request.
        request: RequestId,
        /// Data addresses of the holders of each key.
        who_has: BTreeMap<Key, Vec<String>>,
    },
    /// The answer to [`ClientSession::cluster_info`].
    ClusterInfo {
        /// The request.
        request: RequestId,
        /// The scheduler's description of the cluster.
        info: ClusterInfoReply,
    },
    /// The answer to [`ClientSession::get_dataset`]. The session now holds
    /// one reference to each key (the driver owns them: wrap each in a
    /// handle, or [`ClientSession::release`] it).
    Dataset {
        /// The request.
        request: RequestId,
        /// The dataset's name.
        name: String,
        /// Its keys.
        keys: Vec<Key>,
    },
    /// The answer to [`ClientSession::list_datasets`].
    Datasets {
        /// The request.
        request: RequestId,
        /// Dataset names, sorted.
        names: Vec<String>,
    },
    /// A request that answers with `ok` succeeded (publish, unpublish).
    Done {
        /// The request.
        request: RequestId,
    },
    /// A request that expects a reply failed. (A failed submit or scatter
    /// shows as [`KeyState::Failed`] on its keys instead.)
    RequestFailed {
        /// The request.
        request: RequestId,
        /// Why.
        error: RequestError,
    },
    /// A non-fatal `error` from the scheduler that names no request of ours.
    ServerError(RequestError),
    /// The session is over; every later request fails at once.
    Closed {
        /// Why, for people.
        reason: String,
    },
}

/// Makes keys unique to one client: `{function}-{seed in hex}-{n}`.
///
/// The seed comes from the caller (core reads no clock and has no RNG): a
/// client that shares a scheduler with others should pass a random one.
#[derive(Debug, Clone)]
pub struct KeyGenerator {
    seed: u64,
    next: u64,
}

/// Most bytes of a function name copied into a generated key.
pub const KEY_FUNCTION_BYTES_MAX: usize = 200;

impl KeyGenerator {
    /// A generator whose keys carry `seed`.
    pub fn new(seed: u64) -> Self {
        KeyGenerator { seed, next: 0 }
    }

    /// The next key for a task running `function`.
    pub fn next_key(&mut self, function: &str) -> Key {
        let n = self.next;
        self.next += 1;
        format_key(function, self.seed, n)
    }
}

/// The key `{function}-{seed:x}-{n}`, the function name cut (at a char
/// boundary) to [`KEY_FUNCTION_BYTES_MAX`] bytes and never empty.
pub fn format_key(function: &str, seed: u64, n: u64) -> Key {
    let mut end = function.len().min(KEY_FUNCTION_BYTES_MAX);
    while !function.is_char_boundary(end) {
        end -= 1;
    }
    let name = if end == 0 { "task" } else { &function[..end] };
    Key(format!("{name}-{seed:x}-{n}"))
}

/// Options of one task, applied on top of [`task_spec`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    /// Higher runs first. `None`: 0.
    pub priority: Option<i64>,
    /// Resources one run holds. Empty: none.
    pub resources: Resources,
    /// Reruns after an error before reporting it. `None`: 0.
    pub retries: Option<u32>,
    /// Names or addresses of the only workers allowed to run it. `None`: any.
    pub workers: Option<Vec<String>>,
}

impl TaskOptions {
    /// Writes these options into `spec`.
    pub fn apply(&self, spec: &mut TaskSpec) {
        spec.priority = self.priority;
        spec.resources = (!self.resources.is_empty()).then(|| self.resources.clone());
        spec.retries = self.retries;
        spec.workers = self.workers.clone();
    }
}

/// The msgpack array of positional arguments.
pub fn encode_args(args: &[rmpv::Value]) -> RawValue {
    RawValue::from_value(&rmpv::Value::Array(args.to_vec()))
}

/// The msgpack map of keyword arguments (string keys).
pub fn encode_kwargs(kwargs: &[(String, rmpv::Value)]) -> RawValue {
    RawValue::from_value(&rmpv::Value::Map(
        kwargs
            .iter()
            .map(|(k, v)| (rmpv::Value::from(k.as_str()), v.clone()))
            .collect(),
    ))
}

/// A task spec with no options. References to other tasks inside `args`
/// and `kwargs` are [`crate::msgpack::task_ref_value`] values.
pub fn task_spec(
    key: Key,
    function: &str,
    args: &[rmpv::Value],
    kwargs: &[(String, rmpv::Value)],
) -> TaskSpec {
    TaskSpec {
        key,
        function: function.to_owned(),
        args: encode_args(args),
        kwargs: (!kwargs.is_empty()).then(|| encode_kwargs(kwargs)),
        priority: None,
        resources: None,
        retries: None,
        workers: None,
    }
}

/// Why a graph could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError(pub String);

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GraphError {}

/// Tasks collected for one `update-graph`, each key once.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    tasks: Vec<TaskSpec>,
    index: HashMap<Key, usize>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task. The same key again with the same definition is ignored
    /// (tasks are shared); with another definition it is an error.
    pub fn add(&mut self, spec: TaskSpec) -> Result<(), GraphError> {
        check_key(spec.key.as_str()).map_err(|e| GraphError(e.message))?;
        if let Some(&i) = self.index.get(&spec.key) {
            if self.tasks[i] == spec {
                return Ok(());
            }
            return Err(GraphError(format!(
                "key {:?} is defined twice, differently",
                spec.key.as_str()
            )));
        }
        self.index.insert(spec.key.clone(), self.tasks.len());
        self.tasks.push(spec);
        Ok(())
    }

    /// Whether a task with this key is in the graph.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The tasks, in the order they were added.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    /// The tasks, in the order they were added.
    pub fn into_tasks(self) -> Vec<TaskSpec> {
        self.tasks
    }

    /// Keys no task of this graph depends on, in the order added: the
    /// default `wanted` of a graph file.
    pub fn leaves(&self) -> Vec<Key> {
        let mut depended: HashSet<&str> = HashSet::new();
        for t in &self.tasks {
            depended.extend(t.args.refs());
            if let Some(kw) = &t.kwargs {
                depended.extend(kw.refs());
            }
        }
        self.tasks
            .iter()
            .filter(|t| !depended.contains(t.key.as_str()))
            .map(|t| t.key.clone())
            .collect()
    }

    /// Keys referenced by some task but not defined in this graph (they
    /// must already be known to the scheduler), sorted.
    pub fn external_refs(&self) -> Vec<Key> {
        let mut out: Vec<Key> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for t in &self.tasks {
            let mut refs = t.args.refs();
            if let Some(kw) = &t.kwargs {
                refs.extend(kw.refs());
            }
            for r in refs {
                if !self.index.contains_key(r) && seen.insert(r) {
                    out.push(Key::from(r));
                }
            }
        }
        out.sort();
        out
    }

    /// Reads a graph file in JSON form: `{"tasks": [TaskSpec...],
    /// "wanted": [key...]}`; wanted absent means [`Graph::leaves`].
    pub fn from_json(text: &str) -> Result<(Graph, Vec<Key>), GraphError> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| GraphError(format!("not JSON: {e}")))?;
        // The JSON form of the whole document, re-encoded as msgpack, is a
        // map the wire decoder reads exactly like a msgpack graph file.
        let bytes = crate::json::json_to_msgpack(&doc).map_err(GraphError)?;
        Graph::from_msgpack(&bytes)
    }

    /// Reads a graph file in msgpack: the same structure as
    /// [`Graph::from_json`].
    pub fn from_msgpack(bytes: &[u8]) -> Result<(Graph, Vec<Key>), GraphError> {
        let mut r = Reader::new(bytes);
        let table = FieldTable::read(&mut r).map_err(|e| GraphError(e.to_string()))?;
        if r.remaining() != 0 {
            return Err(GraphError("bytes after the graph".into()));
        }
        let tasks: Vec<TaskSpec> = table
            .field("tasks")
            .map_err(|e| GraphError(e.to_string()))?;
        let wanted: Option<Vec<Key>> = table
            .field("wanted")
            .map_err(|e| GraphError(e.to_string()))?;
        let mut graph = Graph::new();
        for t in tasks {
            if !matches!(t.args.as_bytes().first(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
                return Err(GraphError(format!(
                    "task {:?}: args must be an array",
                    t.key.as_str()
                )));
            }
            graph.add(t)?;
        }
        let wanted = match wanted {
            Some(wanted) => wanted,
            None => graph.leaves(),
        };
        if wanted.is_empty() && !graph.is_empty() {
            // Every task is needed by another: in a finite graph, a cycle.
            let mut cycle = graph.a_cycle();
            if cycle.len() > 8 {
                let n = cycle.len() - 1;
                cycle.truncate(8);
                cycle.push(format!("... ({n} tasks on this cycle)"));
            }
            return Err(GraphError(format!(
                "no key is a leaf (every task is needed by another), so nothing would run: \
                 the graph has a cycle: {} (each depends on the next)",
                cycle.join(" -> ")
            )));
        }
        Ok((graph, wanted))
    }

    /// Keys of one dependency cycle, quoted, each depending on the next
    /// and the first repeated at the end, when every task has a dependent
    /// in this graph (empty otherwise).
    fn a_cycle(&self) -> Vec<String> {
        let mut dependent: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let mut refs = t.args.refs();
            if let Some(kw) = &t.kwargs {
                refs.extend(kw.refs());
            }
            for r in refs {
                dependent.entry(r).or_insert(i);
            }
        }
        let mut seen: HashMap<usize, usize> = HashMap::new();
        let mut path: Vec<usize> = Vec::new();
        let mut i = 0;
        while let Some(&j) = self
            .tasks
            .get(i)
            .and_then(|t| dependent.get(t.key.as_str()))
        {
            if let Some(&at) = seen.get(&i) {
                path.drain(..at);
                path.push(i);
                // The walk went from each task to one that needs it.
                path.reverse();
                return path
                    .iter()
                    .map(|&p| format!("{:?}", self.tasks[p].key.as_str()))
                    .collect();
            }
            seen.insert(i, path.len());
            path.push(i);
            i = j;
        }
        Vec::new()
    }
}

/// Why a session closed whose scheduler turned out to be Python Dask's.
pub const PYTHON_DASK_SCHEDULER: &str =
    "this is a Python Dask scheduler, not a dask/1 one (its first bytes are Python Dask's \
     framing): connect a Python Dask client to it, or give the address of a dask-rs scheduler";

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
    GetDataset,
    ListDatasets,
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
    keys: HashMap<Key, KeyEntry>,
    requests: HashMap<RequestId, Pending>,
    transmit: VecDeque<Message>,
    to_release: Vec<Key>,
    events: VecDeque<ClientEvent>,
    decoder: FrameDecoder,
    /// Whether `close` was asked for by the user (and queued).
    close_sent: bool,
}

impl ClientSession {
    /// A session that introduces itself as `name`; its generated keys carry
    /// `key_seed` (pass a random number when other clients share the
    /// scheduler). The `hello` offer is queued for transmission.
    pub fn new(name: Option<String>, key_seed: u64) -> Self {
        let mut s = ClientSession {
            name: name.clone(),
            phase: Phase::Handshaking,
            negotiated: None,
            keygen: KeyGenerator::new(key_seed),
            next_request: 1,
            keys: HashMap::new(),
            requests: HashMap::new(),
            transmit: VecDeque::new(),
            to_release: Vec::new(),
            events: VecDeque::new(),
            decoder: FrameDecoder::default(),
            close_sent: false,
        };
        s.transmit
            .push_back(Message::Hello(handshake::offer(Role::Client, name)));
        s
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

    // ---- state of held keys ------------------------------------------

    /// The state of a held key; `None` when the client holds no reference.
    pub fn key_state(&self, key: &str) -> Option<&KeyState> {
        self.keys.get(key).map(|e| &e.state)
    }

    /// Local references to a key (0 when not held).
    pub fn ref_count(&self, key: &str) -> u64 {
        self.keys.get(key).map_or(0, |e| e.refs)
    }

    /// Number of keys held.
    pub fn held_keys(&self) -> usize {
        self.keys.len()
    }

    /// Adds a reference to a held key. Returns false (and does nothing)
    /// when the key is not held: a reference can only be copied from one.
    pub fn retain(&mut self, key: &str) -> bool {
        match self.keys.get_mut(key) {
            Some(e) => {
                e.refs += 1;
                true
            }
            None => false,
        }
    }

    /// Drops a reference. At zero the key is forgotten locally and a
    /// `release-keys` is queued. Unknown keys are ignored.
    pub fn release(&mut self, key: &str) {
        let Some(e) = self.keys.get_mut(key) else {
            return;
        };
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return;
        }
        let Some((key, e)) = self.keys.remove_entry(key) else {
            return;
        };
        if let Some(origin) = e.origin {
            self.settle_want(origin);
        }
        if !self.is_closed() {
            self.to_release.push(key);
        }
    }

    /// Adds one reference to `key` as wanted by `origin` (None: wanted
    /// by the scheduler's own doing, e.g. a dataset).
    fn want(&mut self, key: &Key, origin: Option<RequestId>) -> bool {
        match self.keys.get_mut(key) {
            Some(e) => {
                e.refs += 1;
                // A key whose want ended without a result is asked for
                // anew. An erred key stays erred: the scheduler keeps it,
                // and answers `key-erred` again.
                if matches!(
                    e.state,
                    KeyState::Cancelled | KeyState::Lost { .. } | KeyState::Failed(_)
                ) {
                    e.state = KeyState::Pending;
                    let old = std::mem::replace(&mut e.origin, origin);
                    if let Some(old) = old {
                        self.settle_want(old);
                    }
                    return true;
                }
                false
            }
            None => {
                self.keys.insert(
                    key.clone(),
                    KeyEntry {
                        state: KeyState::Pending,
                        refs: 1,
                        origin,
                    },
                );
                true
            }
        }
    }

    /// One key of a submit/scatter got its first event or was released.
    fn settle_want(&mut self, request: RequestId) {
        if let Some(Pending::Wants { outstanding, .. }) = self.requests.get_mut(&request) {
            *outstanding = outstanding.saturating_sub(1);
            if *outstanding == 0 {
                self.requests.remove(&request);
            }
        }
    }

    fn set_state(&mut self, key: &Key, state: KeyState) {
        let Some(e) = self.keys.get_mut(key) else {
            // Not held (released, or never ours): nothing to report.
            return;
        };
        if let Some(origin) = e.origin.take() {
            self.settle_want(origin);
        }
        let Some(e) = self.keys.get_mut(key) else {
            return;
        };
        if e.state == state {
            return;
        }
        e.state = state.clone();
        self.events.push_back(ClientEvent::KeyUpdated {
            key: key.clone(),
            state,
        });
    }

    // ---- requests -------------------------------------------------------

    fn request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    fn queue(&mut self, message: Message) {
        self.flush_releases();
        self.transmit.push_back(message);
    }

    fn flush_releases(&mut self) {
        if !self.to_release.is_empty() {
            let keys = std::mem::take(&mut self.to_release);
            self.transmit
                .push_back(Message::ReleaseKeys(ReleaseKeys { keys }));
        }
    }

    /// Queues a request that expects a reply, or fails it at once when the
    /// session is closed.
    fn ask(&mut self, kind: Pending, message: impl FnOnce(u64) -> Message) -> RequestId {
        let id = self.request_id();
        if let Some(reason) = self.closed_reason() {
            let error = RequestError::local(format!("connection closed: {reason}"));
            self.events
                .push_back(ClientEvent::RequestFailed { request: id, error });
            return id;
        }
        self.requests.insert(id, kind);
        self.queue(message(id.0));
        id
    }

    /// Registers the wants of a submit or scatter and queues its message.
    fn ask_wants(&mut self, keys: &[Key], message: impl FnOnce(u64) -> Message) -> RequestId {
        let id = self.request_id();
        let mut fresh = Vec::new();
        for k in keys {
            if self.want(k, Some(id)) {
                fresh.push(k.clone());
            }
        }
        if let Some(reason) = self.closed_reason().map(str::to_owned) {
            let error = RequestError::local(format!("connection closed: {reason}"));
            for k in &fresh {
                self.set_state(k, KeyState::Failed(error.clone()));
            }
            return id;
        }
        if !fresh.is_empty() {
            let outstanding = fresh.len();
            self.requests.insert(
                id,
                Pending::Wants {
                    keys: fresh,
                    outstanding,
                },
            );
        }
        self.queue(message(id.0));
        id
    }

    /// Submits `tasks` and wants each key of `wanted` (one local reference
    /// per entry). A refused graph turns its newly wanted keys to
    /// [`KeyState::Failed`].
    pub fn submit(&mut self, tasks: Vec<TaskSpec>, wanted: Vec<Key>) -> RequestId {
        let mut unique: Vec<Key> = Vec::with_capacity(wanted.len());
        let mut seen: HashSet<&Key> = HashSet::with_capacity(wanted.len());
        for k in &wanted {
            if seen.insert(k) {
                unique.push(k.clone());
            }
        }
        drop(seen);
        self.ask_wants(&wanted, move |request| {
            Message::UpdateGraph(UpdateGraph {
                request,
                tasks,
                wanted: unique,
            })
        })
    }

    /// Stores values on workers under these keys (one local reference per
    /// key); each becomes finished when stored.
    pub fn scatter(
        &mut self,
        data: BTreeMap<Key, RawValue>,
        workers: Option<Vec<String>>,
        broadcast: bool,
    ) -> RequestId {
        let keys: Vec<Key> = data.keys().cloned().collect();
        self.ask_wants(&keys, move |request| {
            Message::Scatter(Scatter {
                request,
                data,
                workers,
                broadcast: broadcast.then_some(true),
            })
        })
    }

    /// Asks for the values of `keys`: answered by [`ClientEvent::Gathered`].
    pub fn gather(&mut self, keys: Vec<Key>) -> RequestId {
        self.ask(Pending::Gather, |request| {
            Message::Gather(Gather { request, keys })
        })
    }

    /// Asks where `keys` are held: answered by [`ClientEvent::WhoHas`].
    pub fn who_has(&mut self, keys: Vec<Key>) -> RequestId {
        self.ask(Pending::WhoHas, |request| {
            Message::WhoHas(WhoHas { request, keys })
        })
    }

    /// Asks for the cluster's description: answered by
    /// [`ClientEvent::ClusterInfo`].
    pub fn cluster_info(&mut self) -> RequestId {
        self.ask(Pending::ClusterInfo, |request| {
            Message::ClusterInfo(ClusterInfo { request })
        })
    }

    /// Publishes `keys` under `name`: answered by [`ClientEvent::Done`].
    pub fn publish_dataset(&mut self, name: &str, keys: Vec<Key>, overwrite: bool) -> RequestId {
        let name = name.to_owned();
        self.ask(Pending::Ok, |request| {
            Message::PublishDataset(PublishDataset {
                request,
                name,
                keys,
                overwrite: overwrite.then_some(true),
            })
        })
    }

    /// Removes a dataset: answered by [`ClientEvent::Done`].
    pub fn unpublish_dataset(&mut self, name: &str) -> RequestId {
        let name = name.to_owned();
        self.ask(Pending::Ok, |request| {
            Message::UnpublishDataset(UnpublishDataset { request, name })
        })
    }

    /// Asks for a dataset's keys, which the client then holds: answered by
    /// [`ClientEvent::Dataset`].
    pub fn get_dataset(&mut self, name: &str) -> RequestId {
        let name = name.to_owned();
        self.ask(Pending::GetDataset, |request| {
            Message::GetDataset(GetDataset { request, name })
        })
    }

    /// Asks for the dataset names: answered by [`ClientEvent::Datasets`].
    pub fn list_datasets(&mut self) -> RequestId {
        self.ask(Pending::ListDatasets, |request| {
            Message::ListDatasets(ListDatasets { request })
        })
    }

    /// Cancels keys (for every client with `force`); each held one gets a
    /// `key-cancelled` event from the scheduler.
    pub fn cancel(&mut self, keys: Vec<Key>, force: bool) {
        if self.is_closed() || keys.is_empty() {
            return;
        }
        self.queue(Message::CancelKeys(CancelKeys {
            keys,
            force: force.then_some(true),
        }));
    }

    /// Ends the session politely: queues `close`; the session is closed
    /// once the driver has sent it.
    pub fn close(&mut self) {
        if self.is_closed() || self.close_sent {
            return;
        }
        self.close_sent = true;
        self.queue(Message::Close(Close {
            reason: Some("client closed".into()),
        }));
        self.enter_closed("closed by the client".into());
    }

    // ---- input ------------------------------------------------------------

    /// Handles raw bytes received from the transport. A framing error is
    /// answered with a fatal `error` and closes the session.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.poll() {
                Ok(Some(frame)) => {
                    for m in frame {
                        self.handle_message(m);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail_protocol(e);
                    return;
                }
            }
        }
    }

    /// Handles one message from the scheduler.
    pub fn handle_message(&mut self, message: Message) {
        if self.is_closed() {
            return;
        }
        if self.phase == Phase::Handshaking {
            return self.handle_handshake(message);
        }
        match message {
            Message::KeyFinished(m) => {
                self.set_state(&m.key, KeyState::Finished { nbytes: m.nbytes })
            }
            Message::KeyErred(m) => self.set_state(
                &m.key,
                KeyState::Erred(TaskFailure {
                    error_type: m.error_type,
                    message: m.message,
                    traceback: m.traceback,
                    cause: m.cause,
                }),
            ),
            Message::KeyCancelled(m) => self.set_state(&m.key, KeyState::Cancelled),
            Message::KeyLost(m) => self.set_state(&m.key, KeyState::Lost { message: m.message }),
            Message::GatherReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::Gather).then_some(ClientEvent::Gathered {
                    request,
                    data: m.data,
                    missing: m.missing,
                })
            }),
            Message::WhoHasReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::WhoHas).then_some(ClientEvent::WhoHas {
                    request,
                    who_has: m.who_has,
                })
            }),
            Message::ClusterInfoReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::ClusterInfo)
                    .then_some(ClientEvent::ClusterInfo { request, info: m })
            }),
            Message::Datasets(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::ListDatasets).then_some(ClientEvent::Datasets {
                    request,
                    names: m.names,
                })
            }),
            Message::OkReply(m) => self.answer(RequestId(m.request), |kind, request| {
                matches!(kind, Pending::Ok).then_some(ClientEvent::Done { request })
            }),
            Message::Dataset(m) => {
                let request = RequestId(m.request);
                if !matches!(self.requests.get(&request), Some(Pending::GetDataset)) {
                    return;
                }
                self.requests.remove(&request);
                for k in &m.keys {
                    self.want(k, None);
                }
                self.events.push_back(ClientEvent::Dataset {
                    request,
                    name: m.name,
                    keys: m.keys,
                });
            }
            Message::ErrorReport(e) => self.handle_error(e),
            Message::Close(c) => {
                let reason = c.reason.unwrap_or_else(|| "no reason given".into());
                self.enter_closed(format!("the scheduler closed the connection: {reason}"));
            }
            Message::Heartbeat(_) => {}
            other => self.fail_protocol(WireError::new(
                ErrorCode::UnexpectedMessage,
                format!("`{}` is not sent to a client", other.op()),
            )),
        }
    }

    fn handle_handshake(&mut self, message: Message) {
        match message {
            Message::Hello(h) => match handshake::check_reply(&h, Role::Scheduler) {
                Ok(n) => {
                    let client_id = n.id;
                    self.negotiated = Some(n);
                    self.phase = Phase::Ready;
                    self.events.push_back(ClientEvent::Connected { client_id });
                }
                Err(e) => self.fail_protocol(e),
            },
            Message::ErrorReport(e) => {
                let error = RequestError {
                    code: Some(e.code),
                    message: e.message,
                };
                self.enter_closed(format!(
                    "the handshake was refused (a dask/1 scheduler was expected): {error}"
                ));
            }
            other => self.fail_protocol(WireError::new(
                ErrorCode::BadHandshake,
                format!("expected hello, got `{}`", other.op()),
            )),
        }
    }

    /// Delivers the reply to `request` when it is outstanding and of the
    /// kind `make` accepts; anything else is ignored (a reply nobody waits
    /// for harms no one).
    fn answer(
        &mut self,
        request: RequestId,
        make: impl FnOnce(&Pending, RequestId) -> Option<ClientEvent>,
    ) {
        let Some(kind) = self.requests.get(&request) else {
            return;
        };
        if let Some(event) = make(kind, request) {
            self.requests.remove(&request);
            self.events.push_back(event);
        }
    }

    fn handle_error(&mut self, e: ErrorReport) {
        let error = RequestError {
            code: Some(e.code),
            message: e.message,
        };
        if e.fatal {
            self.enter_closed(format!("the scheduler reported a fatal error: {error}"));
            return;
        }
        let Some(request) = e.request.map(RequestId) else {
            self.events.push_back(ClientEvent::ServerError(error));
            return;
        };
        match self.requests.remove(&request) {
            Some(Pending::Wants { keys, .. }) => {
                for k in keys {
                    let ours = self
                        .keys
                        .get(&k)
                        .is_some_and(|entry| entry.origin == Some(request));
                    if ours {
                        if let Some(entry) = self.keys.get_mut(&k) {
                            entry.origin = None;
                        }
                        self.set_state(&k, KeyState::Failed(error.clone()));
                    }
                }
            }
            Some(_) => self
                .events
                .push_back(ClientEvent::RequestFailed { request, error }),
            None => self.events.push_back(ClientEvent::ServerError(error)),
        }
    }

    /// The transport closed (or failed). Every pending key and request
    /// fails with `reason`.
    pub fn handle_close(&mut self, reason: &str) {
        if self.phase == Phase::Handshaking {
            // Nothing answered yet: whatever is there is no dask/1
            // scheduler, or it went away at once.
            self.enter_closed(format!(
                "closed before the handshake completed (no dask/1 scheduler answered): {reason}"
            ));
            return;
        }
        self.enter_closed(format!("connection lost: {reason}"));
    }

    /// The driver could not send `message` (for instance it is larger than
    /// a frame): the request it carried fails with `error`.
    pub fn handle_unsendable(&mut self, message: &Message, error: &WireError) {
        let request = match message {
            Message::UpdateGraph(m) => m.request,
            Message::Scatter(m) => m.request,
            Message::Gather(m) => m.request,
            Message::WhoHas(m) => m.request,
            Message::ClusterInfo(m) => m.request,
            Message::PublishDataset(m) => m.request,
            Message::UnpublishDataset(m) => m.request,
            Message::GetDataset(m) => m.request,
            Message::ListDatasets(m) => m.request,
            _ => return,
        };
        self.handle_error(ErrorReport {
            code: error.code.number(),
            message: format!("not sent: {}", error.message),
            fatal: false,
            request: Some(request),
            keys: None,
        });
    }

    /// The driver's own decoder rejected what the scheduler sent: queues a
    /// fatal `error` (send it, then close the transport) and closes.
    pub fn handle_protocol_error(&mut self, e: WireError) {
        self.fail_protocol(e);
    }

    fn fail_protocol(&mut self, e: WireError) {
        if self.is_closed() {
            return;
        }
        if crate::foreign::is_python_dask_peer_error(&e) {
            // It could not read a dask/1 error anyway.
            self.enter_closed(PYTHON_DASK_SCHEDULER.into());
            return;
        }
        self.transmit.push_back(Message::ErrorReport(ErrorReport {
            code: e.code.number(),
            message: e.message.clone(),
            fatal: true,
            request: None,
            keys: None,
        }));
        self.enter_closed(format!("protocol error from the scheduler: {e}"));
    }

    fn enter_closed(&mut self, reason: String) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed(reason.clone());
        let error = RequestError::local(format!("connection closed: {reason}"));
        let mut requests: Vec<(RequestId, Pending)> = self.requests.drain().collect();
        requests.sort_by_key(|(id, _)| *id);
        for (request, kind) in requests {
            if !matches!(kind, Pending::Wants { .. }) {
                self.events.push_back(ClientEvent::RequestFailed {
                    request,
                    error: error.clone(),
                });
            }
        }
        let mut pending: Vec<Key> = self
            .keys
            .iter()
            .filter(|(_, e)| e.state == KeyState::Pending)
            .map(|(k, _)| k.clone())
            .collect();
        pending.sort();
        for k in pending {
            if let Some(e) = self.keys.get_mut(&k) {
                e.origin = None;
            }
            self.set_state(&k, KeyState::Failed(error.clone()));
        }
        self.to_release.clear();
        self.events.push_back(ClientEvent::Closed { reason });
    }

    // ---- output -------------------------------------------------------

    /// The next message to send, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        if self.transmit.is_empty() {
            self.flush_releases();
        }
        self.transmit.pop_front()
    }

    /// Whether a message waits in the transmit queue.
    pub fn wants_transmit(&self) -> bool {
        !self.transmit.is_empty() || !self.to_release.is_empty()
    }

    /// Moves every queued message into `encoder` (one batch). A message too
    /// large for a frame is not sent: its request fails.
    pub fn drain_transmit_into(&mut self, encoder: &mut FrameEncoder) {
        while let Some(m) = self.poll_transmit() {
            if let Err(e) = encoder.push(&m) {
                self.handle_unsendable(&m, &e);
            }
            if matches!(m, Message::Hello(_)) {
                // The hello goes alone in its frame, which must stay under
                // hello_frame_bytes_max; requests pipeline in the next.
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

/// Whether `key` is a valid key (1 to [`KEY_BYTES_MAX`] bytes).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_BYTES_MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{
        Dataset, Datasets, GatherReply, Hello, KeyCancelled, KeyErred, KeyFinished, KeyLost,
        OkReply, Version,
    };
    use crate::msgpack::task_ref_value;
    use rmpv::Value;

    fn scheduler_hello(id: u64) -> Message {
        Message::Hello(Hello {
            protocol: "dask".into(),
            version: Version { major: 1, minor: 0 },
            role: Role::Scheduler,
            name: None,
            id: Some(id),
            features: Some(vec![]),
            auth: None,
            tls: None,
        })
    }

    fn drain(s: &mut ClientSession) -> Vec<Message> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn events(s: &mut ClientSession) -> Vec<ClientEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn connected() -> ClientSession {
        let mut s = ClientSession::new(Some("test".into()), 0xabc);
        let out = drain(&mut s);
        assert!(matches!(&out[..], [Message::Hello(h)] if h.role == Role::Client));
        s.handle_message(scheduler_hello(7));
        assert_eq!(
            events(&mut s),
            vec![ClientEvent::Connected { client_id: Some(7) }]
        );
        s
    }

    fn inc(s: &mut ClientSession, x: Value) -> TaskSpec {
        let key = s.new_key("inc");
        task_spec(key, "inc", &[x], &[])
    }

    fn finished(key: &Key) -> Message {
        Message::KeyFinished(KeyFinished {
            key: key.clone(),
            nbytes: 1,
        })
    }

    #[test]
    fn keys_carry_the_function_seed_and_a_counter() {
        let mut g = KeyGenerator::new(0xabc);
        assert_eq!(g.next_key("inc").as_str(), "inc-abc-0");
        assert_eq!(g.next_key("inc").as_str(), "inc-abc-1");
        assert_eq!(format_key("", 1, 2).as_str(), "task-1-2");
        let long = "é".repeat(300);
        let k = format_key(&long, 1, 2);
        assert!(k.as_str().len() <= KEY_FUNCTION_BYTES_MAX + 10);
        assert!(is_valid_key(k.as_str()));
    }

    #[test]
    fn handshake_then_submit_then_finish() {
        let mut s = connected();
        let a = inc(&mut s, Value::from(1));
        let b_key = s.new_key("inc");
        let b = task_spec(b_key.clone(), "inc", &[task_ref_value(a.key.as_str())], &[]);
        let request = s.submit(vec![a, b], vec![b_key.clone()]);
        assert_eq!(s.key_state(b_key.as_str()), Some(&KeyState::Pending));
        let out = drain(&mut s);
        match &out[..] {
            [Message::UpdateGraph(g)] => {
                assert_eq!(g.request, request.0);
                assert_eq!(g.tasks.len(), 2);
                assert_eq!(g.wanted, vec![b_key.clone()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        s.handle_message(finished(&b_key));
        assert_eq!(
            events(&mut s),
            vec![ClientEvent::KeyUpdated {
                key: b_key.clone(),
                state: KeyState::Finished { nbytes: 1 }
            }]
        );
        // The graph's bookkeeping is gone once every wanted key reported.
        assert!(s.requests.is_empty());
    }

    #[test]
    fn requests_pipeline_behind_the_hello() {
        let mut s = ClientSession::new(None, 1);
        let t = inc(&mut s, Value::from(1));
        let key = t.key.clone();
        s.submit(vec![t], vec![key]);
        let ops: Vec<&str> = drain(&mut s).iter().map(Message::op).collect();
        assert_eq!(ops, vec!["hello", "update-graph"]);
    }

    #[test]
    fn the_hello_goes_alone_in_its_frame_whatever_is_pipelined() {
        let mut s = ClientSession::new(None, 1);
        // A graph far over hello_frame_bytes_max, submitted before anything
        // was sent.
        let tasks: Vec<TaskSpec> = (0..5000).map(|i| inc(&mut s, Value::from(i))).collect();
        let wanted = tasks.iter().map(|t| t.key.clone()).collect();
        s.submit(tasks, wanted);
        let mut d = crate::frame::FrameDecoder::default();
        d.push(&s.transmit_bytes());
        let first = d.poll().ok().flatten().unwrap_or_default();
        assert_eq!(first.iter().map(Message::op).collect::<Vec<_>>(), ["hello"]);
        let second = d.poll().ok().flatten().unwrap_or_default();
        assert_eq!(
            second.iter().map(Message::op).collect::<Vec<_>>(),
            ["update-graph"]
        );
    }

    #[test]
    fn refused_handshake_closes_and_fails_pending_keys() {
        let mut s = ClientSession::new(None, 1);
        let t = inc(&mut s, Value::from(1));
        let key = t.key.clone();
        s.submit(vec![t], vec![key.clone()]);
        let gather = s.gather(vec![key.clone()]);
        drain(&mut s);
        s.handle_message(Message::ErrorReport(ErrorReport {
            code: 3001,
            message: "speak dask/2".into(),
            fatal: true,
            request: None,
            keys: None,
        }));
        assert!(s.is_closed());
        let ev = events(&mut s);
        assert!(matches!(&ev[0], ClientEvent::RequestFailed { request, .. } if *request == gather));
        assert!(
            matches!(&ev[1], ClientEvent::KeyUpdated { state: KeyState::Failed(e), .. } if e.code.is_none())
        );
        assert!(
            matches!(&ev[2], ClientEvent::Closed { reason } if reason.contains("version-mismatch"))
        );
    }

    #[test]
    fn a_scheduler_answering_with_the_wrong_role_is_a_protocol_error() {
        let mut s = ClientSession::new(None, 1);
        drain(&mut s);
        let mut hello = scheduler_hello(1);
        if let Message::Hello(h) = &mut hello {
            h.role = Role::Worker;
        }
        s.handle_message(hello);
        assert!(s.is_closed());
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [Message::ErrorReport(e)] if e.fatal && e.code == ErrorCode::BadHandshake.number())
        );
    }

    #[test]
    fn unexpected_ops_close_with_an_error_first() {
        let mut s = connected();
        s.handle_message(Message::FreeKeys(crate::messages::FreeKeys {
            keys: vec![],
        }));
        assert!(s.is_closed());
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [Message::ErrorReport(e)] if e.code == ErrorCode::UnexpectedMessage.number())
        );
    }

    #[test]
    fn refused_graph_fails_only_the_keys_it_introduced() {
        let mut s = connected();
        let a = inc(&mut s, Value::from(1));
        let a_key = a.key.clone();
        s.submit(vec![a.clone()], vec![a_key.clone()]);
        s.handle_message(finished(&a_key));
        let b = inc(&mut s, task_ref_value(a_key.as_str()));
        let b_key = b.key.clone();
        let r2 = s.submit(vec![a, b], vec![a_key.clone(), b_key.clone()]);
        drain(&mut s);
        events(&mut s);
        s.handle_message(Message::ErrorReport(ErrorReport {
            code: 4003,
            message: "cycle".into(),
            fatal: false,
            request: Some(r2.0),
            keys: None,
        }));
        assert_eq!(
            s.key_state(a_key.as_str()),
            Some(&KeyState::Finished { nbytes: 1 })
        );
        match s.key_state(b_key.as_str()) {
            Some(KeyState::Failed(e)) => {
                assert_eq!(e.code, Some(4003));
                assert_eq!(e.to_string(), "cycle: cycle");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.ref_count(a_key.as_str()), 2);
        assert!(s.requests.is_empty());
    }

    #[test]
    fn task_errors_cancels_and_losses_reach_the_key() {
        let mut s = connected();
        let specs: Vec<TaskSpec> = (0..3).map(|i| inc(&mut s, Value::from(i))).collect();
        let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
        s.submit(specs, keys.clone());
        s.handle_message(Message::KeyErred(KeyErred {
            key: keys[0].clone(),
            error_type: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            traceback: String::new(),
            cause: Some(Key::from("x")),
        }));
        s.handle_message(Message::KeyCancelled(KeyCancelled {
            key: keys[1].clone(),
        }));
        s.handle_message(Message::KeyLost(KeyLost {
            key: keys[2].clone(),
            message: "worker died".into(),
        }));
        assert!(
            matches!(s.key_state(keys[0].as_str()), Some(KeyState::Erred(f)) if f.cause == Some(Key::from("x")))
        );
        assert_eq!(s.key_state(keys[1].as_str()), Some(&KeyState::Cancelled));
        assert_eq!(
            s.key_state(keys[2].as_str()).map(KeyState::name),
            Some("lost")
        );
        // Events about keys never held are ignored.
        s.handle_message(finished(&Key::from("someone-else")));
        assert_eq!(events(&mut s).len(), 3);
    }

    #[test]
    fn resubmitting_a_cancelled_key_makes_it_pending_again() {
        let mut s = connected();
        let t = inc(&mut s, Value::from(1));
        let key = t.key.clone();
        s.submit(vec![t.clone()], vec![key.clone()]);
        s.handle_message(Message::KeyCancelled(KeyCancelled { key: key.clone() }));
        assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Cancelled));
        s.submit(vec![t], vec![key.clone()]);
        assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Pending));
        assert_eq!(s.ref_count(key.as_str()), 2);
        s.handle_message(finished(&key));
        assert_eq!(
            s.key_state(key.as_str()),
            Some(&KeyState::Finished { nbytes: 1 })
        );
        assert!(s.requests.is_empty());
    }

    #[test]
    fn last_release_sends_release_keys_in_one_batch() {
        let mut s = connected();
        let specs: Vec<TaskSpec> = (0..3).map(|i| inc(&mut s, Value::from(i))).collect();
        let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
        s.submit(specs, keys.clone());
        drain(&mut s);
        assert!(s.retain(keys[0].as_str()));
        assert!(!s.retain("not-held"));
        s.release(keys[0].as_str());
        assert!(!s.wants_transmit(), "one handle is left");
        for k in &keys {
            s.release(k.as_str());
        }
        assert_eq!(s.held_keys(), 0);
        let out = drain(&mut s);
        assert!(matches!(&out[..], [Message::ReleaseKeys(r)] if r.keys == keys));
        // The graph had no reply yet; releasing settles its bookkeeping.
        assert!(s.requests.is_empty());
    }

    #[test]
    fn a_key_is_released_whatever_its_state() {
        let mut s = connected();
        let specs: Vec<TaskSpec> = (0..4).map(|i| inc(&mut s, Value::from(i))).collect();
        let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
        s.submit(specs, keys.clone());
        drain(&mut s);
        s.handle_message(finished(&keys[0]));
        s.handle_message(Message::KeyErred(KeyErred {
            key: keys[1].clone(),
            error_type: "ValueError".into(),
            message: "no".into(),
            traceback: String::new(),
            cause: None,
        }));
        s.handle_message(Message::KeyCancelled(KeyCancelled {
            key: keys[2].clone(),
        }));
        s.handle_message(Message::KeyLost(KeyLost {
            key: keys[3].clone(),
            message: "gone".into(),
        }));
        assert!(!s.wants_transmit(), "no event releases anything");
        for k in &keys {
            s.release(k.as_str());
        }
        // The erred key above all: the scheduler keeps it until then.
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [Message::ReleaseKeys(r)] if r.keys == keys),
            "{out:?}"
        );
    }

    #[test]
    fn a_release_goes_out_before_a_later_resubmission() {
        let mut s = connected();
        let t = inc(&mut s, Value::from(1));
        let key = t.key.clone();
        s.submit(vec![t.clone()], vec![key.clone()]);
        drain(&mut s);
        s.release(key.as_str());
        s.submit(vec![t], vec![key.clone()]);
        let ops: Vec<&str> = drain(&mut s).iter().map(Message::op).collect();
        assert_eq!(ops, vec!["release-keys", "update-graph"]);
        assert_eq!(s.ref_count(key.as_str()), 1);
    }

    #[test]
    fn gather_reply_is_an_event_for_its_request() {
        let mut s = connected();
        let r = s.gather(vec![Key::from("a"), Key::from("b")]);
        drain(&mut s);
        let mut data = BTreeMap::new();
        data.insert(Key::from("a"), RawValue::from_value(&Value::from(3)));
        let reply = Message::GatherReply(GatherReply {
            request: r.0,
            data: data.clone(),
            missing: vec![Key::from("b")],
        });
        s.handle_message(reply.clone());
        // A second reply to the same request is ignored.
        s.handle_message(reply);
        assert_eq!(
            events(&mut s),
            vec![ClientEvent::Gathered {
                request: r,
                data,
                missing: vec![Key::from("b")]
            }]
        );
    }

    #[test]
    fn request_errors_fail_their_request() {
        let mut s = connected();
        let r = s.get_dataset("nope");
        s.handle_message(Message::ErrorReport(ErrorReport {
            code: 4004,
            message: "no dataset \"nope\"".into(),
            fatal: false,
            request: Some(r.0),
            keys: None,
        }));
        s.handle_message(Message::ErrorReport(ErrorReport {
            code: 4001,
            message: "stray".into(),
            fatal: false,
            request: None,
            keys: None,
        }));
        let ev = events(&mut s);
        assert!(
            matches!(&ev[0], ClientEvent::RequestFailed { request, error } if *request == r && error.code_name() == Some("unknown-dataset"))
        );
        assert!(matches!(&ev[1], ClientEvent::ServerError(_)));
        assert!(!s.is_closed());
    }

    #[test]
    fn datasets_give_the_client_references() {
        let mut s = connected();
        let publish = s.publish_dataset("d", vec![Key::from("k")], false);
        let get = s.get_dataset("d");
        let list = s.list_datasets();
        let out = drain(&mut s);
        assert_eq!(out.len(), 3);
        s.handle_message(Message::OkReply(OkReply { request: publish.0 }));
        s.handle_message(Message::Dataset(Dataset {
            request: get.0,
            name: "d".into(),
            keys: vec![Key::from("k")],
        }));
        s.handle_message(Message::Datasets(Datasets {
            request: list.0,
            names: vec!["d".into()],
        }));
        let ev = events(&mut s);
        assert_eq!(ev[0], ClientEvent::Done { request: publish });
        assert!(matches!(&ev[1], ClientEvent::Dataset { keys, .. } if keys.len() == 1));
        assert!(matches!(&ev[2], ClientEvent::Datasets { names, .. } if names == &["d"]));
        assert_eq!(s.ref_count("k"), 1);
        assert_eq!(s.key_state("k"), Some(&KeyState::Pending));
    }

    #[test]
    fn a_reply_of_the_wrong_kind_is_ignored() {
        let mut s = connected();
        let r = s.cluster_info();
        s.handle_message(Message::OkReply(OkReply { request: r.0 }));
        assert!(events(&mut s).is_empty());
        assert_eq!(s.requests.len(), 1);
    }

    #[test]
    fn scatter_wants_its_keys() {
        let mut s = connected();
        let mut data = BTreeMap::new();
        data.insert(Key::from("x"), RawValue::from_value(&Value::from(1)));
        let r = s.scatter(data, None, false);
        assert_eq!(s.key_state("x"), Some(&KeyState::Pending));
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [Message::Scatter(m)] if m.request == r.0 && m.broadcast.is_none())
        );
        s.handle_message(Message::ErrorReport(ErrorReport {
            code: 5001,
            message: "no workers".into(),
            fatal: false,
            request: Some(r.0),
            keys: None,
        }));
        assert!(
            matches!(s.key_state("x"), Some(KeyState::Failed(e)) if e.code_name() == Some("no-workers"))
        );
    }

    #[test]
    fn after_close_requests_fail_at_once_and_nothing_is_sent() {
        let mut s = connected();
        s.close();
        let out = drain(&mut s);
        assert!(matches!(&out[..], [Message::Close(_)]));
        events(&mut s);
        let r = s.gather(vec![Key::from("a")]);
        let t = inc(&mut s, Value::from(1));
        let key = t.key.clone();
        s.submit(vec![t], vec![key.clone()]);
        assert!(drain(&mut s).is_empty());
        assert!(matches!(
            s.key_state(key.as_str()),
            Some(KeyState::Failed(_))
        ));
        assert!(matches!(
            &events(&mut s)[0],
            ClientEvent::RequestFailed { request, .. } if *request == r
        ));
        s.release(key.as_str());
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn transport_loss_fails_pending_keys_but_keeps_finished_ones() {
        let mut s = connected();
        let specs: Vec<TaskSpec> = (0..2).map(|i| inc(&mut s, Value::from(i))).collect();
        let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
        s.submit(specs, keys.clone());
        s.handle_message(finished(&keys[0]));
        s.handle_close("reset by peer");
        assert!(matches!(
            s.key_state(keys[0].as_str()),
            Some(KeyState::Finished { .. })
        ));
        assert!(matches!(
            s.key_state(keys[1].as_str()),
            Some(KeyState::Failed(_))
        ));
        assert!(s.closed_reason().unwrap_or("").contains("reset by peer"));
    }

    #[test]
    fn bytes_in_bytes_out() {
        let mut s = ClientSession::new(None, 1);
        let hello_frame = s.transmit_bytes();
        let mut d = FrameDecoder::default();
        d.push(&hello_frame);
        assert!(matches!(d.poll(), Ok(Some(m)) if m.len() == 1));
        let reply = crate::frame::encode_frame(&[scheduler_hello(3)]).unwrap_or_default();
        let (a, b) = reply.split_at(3);
        s.handle_bytes(a);
        assert!(!s.is_connected());
        s.handle_bytes(b);
        assert!(s.is_connected());
        s.handle_bytes(&[0xff, 0xff, 0xff, 0xff]);
        assert!(s.is_closed());
        let out = drain(&mut s);
        assert!(
            matches!(&out[..], [Message::ErrorReport(e)] if e.code == ErrorCode::FrameTooLarge.number())
        );
    }

    #[test]
    fn a_python_dask_scheduler_is_named() {
        let mut s = ClientSession::new(None, 1);
        drain(&mut s);
        s.handle_bytes(&crate::foreign::python_dask_refusal("unused"));
        assert_eq!(s.closed_reason(), Some(PYTHON_DASK_SCHEDULER));
        // Nothing is sent to it: it would not understand.
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn unsendable_messages_fail_their_request() {
        let mut s = connected();
        let mut data = BTreeMap::new();
        data.insert(
            Key::from("big"),
            RawValue::from_value(&Value::Binary(vec![0; 64])),
        );
        s.scatter(data, None, false);
        let mut enc = FrameEncoder::new(32);
        s.drain_transmit_into(&mut enc);
        assert!(enc.is_empty());
        assert!(
            matches!(s.key_state("big"), Some(KeyState::Failed(e)) if e.code_name() == Some("value-too-large"))
        );
    }

    #[test]
    fn graph_leaves_and_external_refs() {
        let mut g = Graph::new();
        let a = task_spec(Key::from("a"), "inc", &[Value::from(1)], &[]);
        let b = task_spec(
            Key::from("b"),
            "add",
            &[task_ref_value("a"), task_ref_value("outside")],
            &[("k".into(), task_ref_value("z"))],
        );
        g.add(a.clone()).unwrap();
        g.add(b).unwrap();
        g.add(a).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.leaves(), vec![Key::from("b")]);
        assert_eq!(
            g.external_refs(),
            vec![Key::from("outside"), Key::from("z")]
        );
        let other = task_spec(Key::from("a"), "inc", &[Value::from(2)], &[]);
        assert!(g.add(other).is_err());
    }

    #[test]
    fn graph_files_read_from_json() {
        let text = r#"{"tasks": [
            {"key": "x", "function": "inc", "args": [1]},
            {"key": "y", "function": "add", "args": [{"$ref": "x"}, 2], "priority": 3,
             "resources": {"GPU": 1}, "retries": 2}
        ]}"#;
        let (g, wanted) = Graph::from_json(text).unwrap();
        assert_eq!(wanted, vec![Key::from("y")]);
        assert_eq!(g.tasks()[1].priority, Some(3));
        assert_eq!(g.tasks()[1].retries, Some(2));
        let explicit =
            r#"{"tasks": [{"key": "x", "function": "inc", "args": [1]}], "wanted": ["x"]}"#;
        assert_eq!(Graph::from_json(explicit).unwrap().1, vec![Key::from("x")]);
        for bad in [
            "[]",
            "{}",
            r#"{"tasks": [{"key": "x", "function": "inc", "args": 1}]}"#,
            r#"{"tasks": [{"key": "", "function": "inc", "args": []}]}"#,
            "not json",
        ] {
            assert!(Graph::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_graph_file_whose_every_task_is_needed_is_a_cycle() {
        let cycle = r#"{"tasks": [
            {"key": "a", "function": "inc", "args": [{"$ref": "b"}]},
            {"key": "b", "function": "inc", "args": [{"$ref": "c"}]},
            {"key": "c", "function": "inc", "args": [{"$ref": "a"}]}
        ]}"#;
        let e = Graph::from_json(cycle).unwrap_err().0;
        assert!(e.contains("no key is a leaf"), "{e}");
        assert!(
            e.contains(r#"cycle: "a" -> "b" -> "c" -> "a" (each"#),
            "{e}"
        );
        let me = r#"{"tasks": [{"key": "me", "function": "inc", "args": [{"$ref": "me"}]}]}"#;
        let e = Graph::from_json(me).unwrap_err().0;
        assert!(e.contains(r#"cycle: "me" -> "me" (each"#), "{e}");
        // Explicit wanted, or an empty graph, is left to the scheduler.
        let wanted = r#"{"tasks": [{"key": "me", "function": "inc", "args": [{"$ref": "me"}]}],
                         "wanted": ["me"]}"#;
        assert!(Graph::from_json(wanted).is_ok());
        assert!(Graph::from_json(r#"{"tasks": []}"#).is_ok());
    }

    #[test]
    fn options_apply_to_a_spec() {
        let mut spec = task_spec(Key::from("a"), "f", &[], &[]);
        let mut opts = TaskOptions {
            priority: Some(5),
            retries: Some(1),
            workers: Some(vec!["w1".into()]),
            ..Default::default()
        };
        opts.resources.insert("GPU".into(), 1.0);
        opts.apply(&mut spec);
        assert_eq!(spec.priority, Some(5));
        assert_eq!(spec.resources.as_ref().map(|r| r.len()), Some(1));
        assert_eq!(spec.workers, Some(vec!["w1".to_string()]));
    }
}
