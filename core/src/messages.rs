//! Every message of dask/1. Each is a msgpack map whose first entry is
//! `op` (its name) followed by its fields; see `spec/PROTOCOL.md` for who
//! sends which and when.
//!
//! Each field's doc comment is the Meaning column of its row in the spec's
//! field tables, followed by "Absent: ..." for an optional (`Option`)
//! field, which a sender leaves out (or sends as nil). A field or message
//! added after dask/1.0 says so with `#[schemars(extend("x-since" =
//! "1.1"))]`, a field a receiver may ignore with `extend("x-ignorable" =
//! true)`. `core/tests/spec_tables.rs` holds the tables to all of this.

use std::collections::BTreeMap;

use crate::error::{ErrorCode, WireError};
use crate::msgpack::{write, RawValue, Reader, WriteBuf};
use crate::wire::{check_struct_len, Key, Wire, FIELD_DEPTH_MAX};
use crate::{wire_enum, wire_struct};

/// A protocol version: `[major, minor]` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Peers with different majors cannot talk.
    pub major: u32,
    /// Peers speak the lower of their minors.
    pub minor: u32,
}

impl Wire for Version {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::array_len(w, 2);
        write::uint(w, self.major as u64);
        write::uint(w, self.minor as u64);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        if r.read_array_len()? != 2 {
            return Err(WireError::wrong_type(
                "[major, minor]",
                "array of another length",
            ));
        }
        Ok(Version {
            major: u32::read(r)?,
            minor: u32::read(r)?,
        })
    }
}

impl schemars::JsonSchema for Version {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Version".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "[major, minor]",
            "type": "array",
            "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 0}],
            "items": false,
            "minItems": 2
        })
    }
}

wire_enum! {
    /// What a connection is for, declared in `hello`.
    pub enum Role {
        /// A program that submits graphs and reads results (connects to the scheduler).
        Client = "client",
        /// A worker registering with the scheduler.
        Worker = "worker",
        /// Anything that connects to a worker's data address to fetch data.
        Peer = "peer",
        /// The scheduler, in its `hello` reply.
        Scheduler = "scheduler",
    }
}

/// 32 bytes, a msgpack bin of exactly that length (a nonce or a proof).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bin32(pub [u8; 32]);

impl std::fmt::Debug for Bin32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bin32(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Wire for Bin32 {
    fn write(&self, w: &mut WriteBuf<'_>) {
        write::bin(w, &self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let bytes = r.read_bin()?;
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            WireError::wrong_type(
                "a bin of 32 bytes",
                &format!("a bin of {} bytes", bytes.len()),
            )
        })?;
        Ok(Bin32(array))
    }
}

impl schemars::JsonSchema for Bin32 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bin32".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "32 bytes: a msgpack bin of exactly 32 bytes; its JSON form is {\"$bin\": 64 hex digits}.",
            "type": "object",
            "patternProperties": {"^\\$bin$": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
            "required": ["$bin"],
            "additionalProperties": false
        })
    }
}

/// Binary data of any length, a msgpack bin (the bytes of a value in
/// parts). Large ones share the frame they were read from and are written
/// from where they are kept, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin(pub bytes::Bytes);

impl Wire for Bin {
    fn write(&self, w: &mut WriteBuf<'_>) {
        w.shared_bin(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.read_bin_shared().map(Bin)
    }
}

impl schemars::JsonSchema for Bin {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bin".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Binary data: a msgpack bin (bin 8, 16 or 32); its JSON form is {\"$bin\": hex}.",
            "type": "object",
            "patternProperties": {"^\\$bin$": {"type": "string", "pattern": "^([0-9a-f]{2})*$"}},
            "required": ["$bin"],
            "additionalProperties": false
        })
    }
}

impl crate::schema::WireType for Bin {
    fn wire_type() -> String {
        "bin".to_owned()
    }
}

impl crate::schema::WireType for Bin32 {
    fn wire_type() -> String {
        "bin32".to_owned()
    }
}

wire_struct! {
    /// The `auth` of a `hello` (since 1.1): the connector names the method and
    /// sends its nonce; the acceptor's reply sends its nonce and its proof.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct Auth {
        /// The proof method; dask/1.1 defines `"hmac-sha256"`.
        #[schemars(extend("x-since" = "1.1"))]
        pub method: String,
        /// 32 fresh random bytes of the sender, never sent twice.
        #[schemars(extend("x-since" = "1.1"))]
        pub nonce: Bin32,
        /// Reply only: the acceptor's proof. Absent: none (in a connector's hello).
        #[schemars(extend("x-since" = "1.1"))]
        pub proof: Option<Bin32>,
    }
}

wire_struct! {
    /// Connector -> acceptor (since 1.1): the connector's proof that it holds
    /// the secret of its role, its first message after the acceptor's reply.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct AuthProof {
        /// HMAC-SHA256, keyed by the secret of the connector's role, of the connector's transcript.
        #[schemars(extend("x-since" = "1.1"))]
        pub proof: Bin32,
    }
}

/// Resource amounts by name, e.g. `{"GPU": 2}`.
pub type Resources = BTreeMap<String, f64>;

wire_struct! {
    /// First message each way on every connection. The connecting side sends
    /// its own; the accepting side replies with its own, or with `error`
    /// (version-mismatch / bad-handshake) and closes.
    pub struct Hello {
        /// Always `"dask"`.
        pub protocol: String,
        /// Connector: the highest version it speaks. Reply: the version both speak.
        pub version: Version,
        /// The sender's role.
        pub role: Role,
        /// A human-readable name, for logs. Absent: no name.
        #[schemars(extend("x-ignorable" = true))]
        pub name: Option<String>,
        /// Reply only: the id the acceptor gives this connection. An acceptor ignores it. Absent: no id.
        pub id: Option<u64>,
        /// Connector: the optional features it supports. Reply: those both support. Absent: none.
        pub features: Option<Vec<String>>,
        /// Authentication (since 1.1, see [Authentication](#authentication)): connector: the method and its nonce; reply: the acceptor's nonce and proof. Not sent in 1.0. Absent: none.
        pub auth: Option<Auth>,
        /// Since 1.1, with `auth`: whether the sender's end of the connection is TLS (see [Authentication](#authentication)). Never changes the transport. Absent: false.
        #[schemars(extend("x-ignorable" = true))]
        pub tls: Option<bool>,
        /// Since 1.1, a client's session with a scheduler that keeps a journal (see [Reconnection](#reconnection)): reply: the client's session token; connector: the token of the session to resume, from an earlier reply. Absent: a new session.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub session: Option<String>,
        /// Since 1.1, a peer hello (either way) whose sender lists `value-local` (see [Values on one host](#values-on-one-host)): who the sender is on its host. Absent: not known.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub local: Option<LocalHost>,
    }
}

wire_struct! {
    /// The `local` of a peer `hello` (since 1.1, feature `value-local`):
    /// what a peer on the same host checks before it reads values from
    /// the sender's memory.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct LocalHost {
        /// HMAC-SHA256, keyed by the 32 bytes of the host's id file (readable by the sender's user alone), of `dask-rs value-local`: equal for two processes of one user on one host.
        #[schemars(extend("x-since" = "1.1"))]
        pub host: Bin32,
        /// The sender's process id.
        #[schemars(extend("x-since" = "1.1"))]
        pub pid: u64,
        /// The address, in the sender's memory, of `probe`.
        #[schemars(extend("x-since" = "1.1"))]
        pub probe_at: u64,
        /// 32 random bytes the sender keeps at `probe_at` while it runs: a reader checks them there first, so a reused pid or a namesake host is not read.
        #[schemars(extend("x-since" = "1.1"))]
        pub probe: Bin32,
    }
}

wire_struct! {
    /// An error report. When `fatal` is true the sender closes the connection
    /// right after this message.
    pub struct ErrorReport {
        /// A code from [Error codes](#error-codes).
        pub code: u32,
        /// What went wrong, for people: what was expected and what came.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// Whether the sender closes the connection after this message.
        pub fatal: bool,
        /// The `request` of the message this answers. Absent: about no request.
        pub request: Option<u64>,
        /// The keys the error is about (e.g. the tasks of a refused graph that are at fault). Absent: none.
        pub keys: Option<Vec<Key>>,
    }
}

wire_struct! {
    /// Polite end of a connection: the sender closes after writing it.
    pub struct Close {
        /// Why, for logs. Absent: none given.
        #[schemars(extend("x-ignorable" = true))]
        pub reason: Option<String>,
        /// From the scheduler to a worker it declared dead (heartbeat timeout): the worker may be alive and only misjudged, so it registers again as after a lost connection instead of exiting. Absent: false: the close is final.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub reconnect: Option<bool>,
    }
}

wire_struct! {
    /// A worker's load and memory, sent in its heartbeats.
    pub struct Metrics {
        /// Tasks running now.
        #[schemars(extend("x-ignorable" = true))]
        pub executing: u32,
        /// Tasks assigned and not running (waiting for dependencies or a thread).
        #[schemars(extend("x-ignorable" = true))]
        pub ready: u32,
        /// Keys held, spilled ones included ([worker memory](#worker-memory)).
        #[schemars(extend("x-ignorable" = true))]
        pub stored_keys: u64,
        /// Bytes held (sum of nbytes), spilled ones included.
        #[schemars(extend("x-ignorable" = true))]
        pub stored_bytes: u64,
        /// Of `stored_bytes`, those spilled out of memory ([worker memory](#worker-memory)). Absent: not told (a worker without a memory limit, or a dask/1.0 worker).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub spilled_bytes: Option<u64>,
        /// The worker is paused: its memory is over its pause threshold, so it starts no task and fetches nothing ([worker memory](#worker-memory)). Absent: false.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub paused: Option<bool>,
        /// Why the worker cannot spill now: the error of its last spill write, sent while no write has succeeded since and memory is over its target. Absent: spilling works, or is not needed.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub spill_error: Option<String>,
        /// Microseconds the worker spent fetching values from peers since it registered (this registration: a worker registering again starts from 0), summed over its `get-data` requests from sending to their last `data` reply ([transfer totals](#transfer-totals)). Absent: not told.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub transfer_us: Option<u64>,
        /// Bytes of values (their msgpack encoding) that `data` replies from peers brought since it registered ([transfer totals](#transfer-totals)). Absent: not told.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub transfer_bytes: Option<u64>,
        /// Of `transfer_bytes`, those read from peers' memory on the same host ([Values on one host](#values-on-one-host)). Absent: not told.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub transfer_local_bytes: Option<u64>,
    }
}

wire_struct! {
    /// Liveness signal, client -> scheduler and worker -> scheduler. The
    /// scheduler does not reply.
    pub struct Heartbeat {
        /// A worker's current load; workers SHOULD send it, clients do not. Absent: none.
        #[schemars(extend("x-ignorable" = true))]
        pub metrics: Option<Metrics>,
    }
}

wire_struct! {
    /// A task: a function name, arguments that may reference other tasks'
    /// results, and scheduling options.
    pub struct TaskSpec {
        /// The task's key.
        pub key: Key,
        /// Name of the function a worker runs.
        pub function: String,
        /// Positional arguments: an array (see validation below).
        pub args: RawValue,
        /// Keyword arguments: a map with `str` keys. Absent: no keyword arguments.
        pub kwargs: Option<RawValue>,
        /// Higher runs first. Absent: 0.
        pub priority: Option<i64>,
        /// Amounts one run holds, e.g. `{"GPU": 1.0}`. Absent: none.
        pub resources: Option<Resources>,
        /// Reruns after `task-erred` before the error is reported. Absent: 0.
        pub retries: Option<u32>,
        /// Names or data addresses of the only workers allowed to run it. Absent: any worker.
        pub workers: Option<Vec<String>>,
    }
}

wire_struct! {
    /// Client -> scheduler: add tasks to the graph and say which keys the
    /// client wants (holds futures for). All or nothing: on any error no
    /// task is accepted and the scheduler replies `error` with this `request`.
    pub struct UpdateGraph {
        /// Client-chosen id, echoed in an `error` about this graph. No reply on success.
        pub request: u64,
        /// New tasks, in any order; a task already known with the same definition is shared.
        pub tasks: Vec<TaskSpec>,
        /// Keys the client wants; each gets one [event](#key-finished).
        pub wanted: Vec<Key>,
        /// Ask for an `ok` once the graph is accepted (an `error` answers a refusal either way). Absent: false: no reply on success.
        #[schemars(extend("x-since" = "1.1"))]
        pub ack: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: the client no longer wants these keys.
    pub struct ReleaseKeys {
        /// Keys to release.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Client -> scheduler: stop computing these keys for this client (or for everyone with `force`).
    pub struct CancelKeys {
        /// Keys to cancel.
        pub keys: Vec<Key>,
        /// Cancel for every client that wants them. Absent: false.
        pub force: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: store these values on workers under these keys;
    /// the client wants them and receives key-finished for each.
    pub struct Scatter {
        /// Client-chosen id, echoed in an `error`.
        pub request: u64,
        /// The values by key.
        pub data: BTreeMap<Key, RawValue>,
        /// Names or data addresses of the workers to use. Absent: the scheduler chooses.
        pub workers: Option<Vec<String>>,
        /// Store every value on every (allowed) worker. Absent: false.
        pub broadcast: Option<bool>,
        /// Ask for an `ok` once the scatter is accepted (its `put-data` sent). Absent: false: no reply on success.
        #[schemars(extend("x-since" = "1.1"))]
        pub ack: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: send me these results.
    pub struct Gather {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// Keys wanted.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `gather`.
    pub struct GatherReply {
        /// The `gather` this answers.
        pub request: u64,
        /// Values by key.
        pub data: BTreeMap<Key, RawValue>,
        /// Keys not in memory anywhere.
        pub missing: Vec<Key>,
        /// For each key in `missing`: its scheduler state (`released`, `waiting`, `no-worker`, `queued`, `processing`, `memory`, `erred`; `forgotten` when no task of that key is kept), so a client can tell a key being recomputed from one that is gone. Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub status: Option<BTreeMap<Key, String>>,
    }
}

wire_struct! {
    /// Client -> scheduler: where are these keys held?
    pub struct WhoHas {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// Keys asked about.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `who-has`.
    pub struct WhoHasReply {
        /// The `who-has` this answers.
        pub request: u64,
        /// Holders' data addresses by key (an empty array when none, or when the key is unknown).
        pub who_has: BTreeMap<Key, Vec<String>>,
        /// For every requested key: its scheduler state (`released`, `waiting`, `no-worker`, `queued`, `processing`, `memory`, `erred`; `forgotten` when no task of that key is kept). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub status: Option<BTreeMap<Key, String>>,
    }
}

wire_struct! {
    /// Client -> scheduler: describe the cluster.
    pub struct ClusterInfo {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
    }
}

wire_struct! {
    /// One worker as the scheduler sees it.
    pub struct WorkerInfo {
        /// The worker's id (its hello reply's `id`).
        pub id: u64,
        /// Its name.
        pub name: String,
        /// Its data address.
        pub address: String,
        /// Tasks it runs at once.
        pub nthreads: u32,
        /// Memory limit in bytes. Absent: no limit.
        #[schemars(extend("x-ignorable" = true))]
        pub memory_limit: Option<u64>,
        /// Resources it offers (empty map when none).
        pub resources: Resources,
        /// Functions it offers.
        pub functions: Vec<String>,
        /// Tasks assigned to it now.
        #[schemars(extend("x-ignorable" = true))]
        pub processing: u64,
        /// Keys it holds.
        #[schemars(extend("x-ignorable" = true))]
        pub stored_keys: u64,
        /// Bytes it holds.
        #[schemars(extend("x-ignorable" = true))]
        pub stored_bytes: u64,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `cluster-info`.
    pub struct ClusterInfoReply {
        /// The `cluster-info` this answers.
        pub request: u64,
        /// Registered workers.
        pub workers: Vec<WorkerInfo>,
        /// Number of tasks in each [scheduler state](#scheduler-task-states), by state name; states with none are left out (`forgotten` never appears).
        pub tasks: BTreeMap<String, u64>,
        /// Connected clients, the asking one included.
        pub clients: u32,
    }
}

wire_struct! {
    /// Client -> scheduler: publish keys under a name so other clients can
    /// get them; the dataset holds the keys until unpublished. Replied with `ok`.
    pub struct PublishDataset {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
        /// The keys it holds; they must be known to the scheduler.
        pub keys: Vec<Key>,
        /// Replace a dataset of the same name (its keys are released). Absent: false.
        pub overwrite: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: remove a published dataset. Replied with `ok`.
    pub struct UnpublishDataset {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
    }
}

wire_struct! {
    /// Client -> scheduler: the keys of a dataset. The client then wants them.
    pub struct GetDataset {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `get-dataset`.
    pub struct Dataset {
        /// The `get-dataset` this answers.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
        /// Its keys, now wanted by the client.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Client -> scheduler: the names of all datasets.
    pub struct ListDatasets {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `list-datasets`.
    pub struct Datasets {
        /// The `list-datasets` this answers.
        pub request: u64,
        /// Names, sorted by their UTF-8 bytes.
        pub names: Vec<String>,
    }
}

wire_struct! {
    /// Success reply to a request that returns nothing else.
    pub struct OkReply {
        /// The request this answers.
        pub request: u64,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key's result is in memory on a worker.
    pub struct KeyFinished {
        /// The key.
        pub key: Key,
        /// Size of the result's msgpack encoding.
        pub nbytes: u64,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
        /// The result itself, when its worker sent it with `task-finished`: the client needs no `gather` for it. Absent: fetch it with `gather`.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub value: Option<RawValue>,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key failed, itself or through a dependency.
    pub struct KeyErred {
        /// The key.
        pub key: Key,
        /// The error's type, e.g. `"ZeroDivisionError"`, `"UnknownFunction"`, `"KilledWorker"`.
        pub error_type: String,
        /// The error's message.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// The remote traceback text, possibly empty.
        #[schemars(extend("x-ignorable" = true))]
        pub traceback: String,
        /// The key whose task raised the error, when not this one. Absent: this key's own task raised.
        pub cause: Option<Key>,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key's data is gone and cannot be
    /// recomputed (scattered data whose last holder was lost, or a key that
    /// depends on such data).
    pub struct KeyLost {
        /// The key.
        pub key: Key,
        /// Why, for people.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key was cancelled.
    pub struct KeyCancelled {
        /// The key.
        pub key: Key,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> client (feature `key-waiting`): a wanted key cannot progress: a task it needs cannot run on any connected worker.
    pub struct KeyWaiting {
        /// The wanted key.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// Why the task cannot run: `no-workers` (no worker is connected), `no-function` (no connected worker offers its function), `no-allowed-worker` (none of its `workers` is connected and offers the function), `no-resources` (no such worker has the resources it asks for), `spill-failed` (every worker that could run it is paused and cannot spill, [worker memory](#worker-memory)).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub reason: String,
        /// The same, for people, naming the function, workers or resources.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// The task that cannot run, one that `key` depends on. Absent: the task of `key` itself.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub task: Option<Key>,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Client -> scheduler (feature `key-waiting`): one page of the tasks that wait, with why.
    pub struct WaitingKeys {
        /// Client-chosen id, echoed in the reply.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// Only tasks in this state: `waiting`, `no-worker` or `queued`. Absent: all three.
        #[schemars(extend("x-since" = "1.1"))]
        pub state: Option<String>,
        /// Where the page starts: the `next` of the previous reply. Absent: 0: the first page.
        #[schemars(extend("x-since" = "1.1"))]
        pub cursor: Option<u64>,
        /// Most tasks in the reply (at most 1000 are returned). Absent: 100.
        #[schemars(extend("x-since" = "1.1"))]
        pub limit: Option<u32>,
    }
}

wire_struct! {
    /// A task that waits, and why.
    pub struct WaitingKey {
        /// The task's key.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// Its scheduler state: `waiting`, `no-worker` or `queued`.
        #[schemars(extend("x-since" = "1.1"))]
        pub state: String,
        /// Why it waits: a [`key-waiting`](#key-waiting) reason (in `no-worker`), `dependencies` (in `waiting`: inputs not computed yet), `busy` (in `queued`: every worker that can run it is full) or `paused` (in `queued`: every worker that can run it is paused).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub reason: String,
        /// The same, for people.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
    }
}

wire_struct! {
    /// Scheduler -> client (feature `key-waiting`): the answer to `waiting-keys`.
    pub struct WaitingKeysReply {
        /// The `waiting-keys` this answers.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// The tasks of this page.
        #[schemars(extend("x-since" = "1.1"))]
        pub tasks: Vec<WaitingKey>,
        /// The `cursor` of the next page. Absent: this was the last page.
        #[schemars(extend("x-since" = "1.1"))]
        pub next: Option<u64>,
    }
}

wire_struct! {
    /// Worker -> scheduler, right after the handshake: what the worker offers.
    pub struct RegisterWorker {
        /// Unique among registered workers.
        pub name: String,
        /// Its data address, where peers connect, e.g. `"tcp://127.0.0.1:40123"`.
        pub address: String,
        /// Tasks it runs at once (at least 1).
        pub nthreads: u32,
        /// Memory limit in bytes: the most bytes of values (sum of nbytes) it means to keep in memory ([worker memory](#worker-memory)). Absent: no limit.
        #[schemars(extend("x-ignorable" = true))]
        pub memory_limit: Option<u64>,
        /// Resources it offers. Absent: none.
        pub resources: Option<Resources>,
        /// Names of the functions it can run.
        pub functions: Vec<String>,
        /// Its operating-system process id, for people. Absent: unknown.
        #[schemars(extend("x-ignorable" = true))]
        pub pid: Option<u32>,
        /// Values it holds already, by key, with their `nbytes`: kept from before it lost its scheduler (see [Reconnection](#reconnection)). The scheduler adopts those of tasks it knows that are not in memory and frees the others with `free-keys`. Absent: none.
        #[schemars(extend("x-since" = "1.1"))]
        pub held: Option<BTreeMap<Key, u64>>,
    }
}

wire_struct! {
    /// Scheduler -> worker: registration accepted.
    pub struct WorkerRegistered {
        /// The worker's id: the `id` of the scheduler's hello reply on this connection.
        pub id: u64,
        /// The worker MUST send `heartbeat` at least this often (dask-rs default: 1000, at most a third of its heartbeat timeout).
        pub heartbeat_interval_ms: u64,
        /// A result whose nbytes is at most this MAY travel in `task-finished`'s `value` (dask-rs: 4096). Absent: none does (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub inline_bytes_max: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> worker: run this task once its dependencies are here.
    pub struct ComputeTask {
        /// The task's key.
        pub key: Key,
        /// Function to run.
        pub function: String,
        /// Positional arguments (an array), with task references.
        pub args: RawValue,
        /// Keyword arguments (a map with `str` keys), with task references. Absent: none.
        pub kwargs: Option<RawValue>,
        /// Every referenced key with its holders' data addresses (possibly this worker's own).
        pub who_has: BTreeMap<Key, Vec<String>>,
        /// Higher runs first among this worker's ready tasks. Absent: 0.
        pub priority: Option<i64>,
        /// Resources the run holds. Absent: none.
        pub resources: Option<Resources>,
    }
}

wire_struct! {
    /// Worker -> scheduler: a task's result is stored.
    pub struct TaskFinished {
        /// The task's key.
        pub key: Key,
        /// Size of the result's msgpack encoding.
        pub nbytes: u64,
        /// Wall time the function ran, in microseconds. Absent: unknown.
        #[schemars(extend("x-ignorable" = true))]
        pub duration_us: Option<u64>,
        /// The result itself, when its nbytes is at most the `inline_bytes_max` of `worker-registered` (the worker holds it all the same). Absent: not sent.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub value: Option<RawValue>,
    }
}

wire_struct! {
    /// Worker -> scheduler: a task's function failed (or its arguments could not be built).
    pub struct TaskErred {
        /// The task's key.
        pub key: Key,
        /// The error's type.
        pub error_type: String,
        /// The error's message.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// Traceback text, possibly empty.
        #[schemars(extend("x-ignorable" = true))]
        pub traceback: String,
    }
}

wire_struct! {
    /// Scheduler -> worker: forget these keys: drop their data and any
    /// queued or running task for them. No reply.
    pub struct FreeKeys {
        /// Keys to forget.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Scheduler -> worker: give this task back if it has not started.
    pub struct StealRequest {
        /// The task's key.
        pub key: Key,
    }
}

wire_struct! {
    /// Worker -> scheduler: the answer to `steal-request`.
    pub struct StealResponse {
        /// The task's key.
        pub key: Key,
        /// Whether the worker dropped the task (only one that had not started).
        pub stolen: bool,
    }
}

wire_struct! {
    /// Scheduler -> worker: store these values (scatter). Replied with `data-stored`.
    pub struct PutData {
        /// Scheduler-chosen id, echoed in the reply.
        pub request: u64,
        /// Values by key.
        pub data: BTreeMap<Key, RawValue>,
    }
}

wire_struct! {
    /// Worker -> scheduler: the answer to `put-data`.
    pub struct DataStored {
        /// The `put-data` this answers.
        pub request: u64,
        /// Size of each stored value.
        pub nbytes: BTreeMap<Key, u64>,
    }
}

wire_struct! {
    /// Worker -> scheduler: the worker now also holds these keys (copies fetched from peers).
    pub struct AddKeys {
        /// Size of each key's value.
        pub nbytes: BTreeMap<Key, u64>,
    }
}

wire_struct! {
    /// Worker -> scheduler: a dependency could not be fetched from any
    /// address in who_has. The worker has dropped `task`; the scheduler
    /// sends it again (to some worker) once the dependency is back.
    pub struct MissingData {
        /// The dependency.
        pub key: Key,
        /// The addresses that did not have it or could not be reached.
        pub addresses: Vec<String>,
        /// The task the worker gave back.
        pub task: Key,
    }
}

wire_struct! {
    /// Any connection to a worker (a peer, or the scheduler): send me these values.
    pub struct GetData {
        /// Requester-chosen id, echoed in the reply.
        pub request: u64,
        /// Keys wanted.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Worker -> requester: the answer to `get-data`.
    pub struct Data {
        /// The `get-data` this answers.
        pub request: u64,
        /// Values by key, for the keys it holds.
        pub data: BTreeMap<Key, RawValue>,
        /// Requested keys it does not hold.
        pub missing: Vec<Key>,
    }
}

wire_struct! {
    /// Holder -> fetcher (since 1.1, feature `value-local`): values
    /// answering a `get-data` that the fetcher reads from the holder's
    /// memory; the holder keeps each where it is until its lease is done.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct DataLocal {
        /// The `get-data` this answers (its other keys come in `data`).
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// Where each value's encoding is, by key.
        #[schemars(extend("x-since" = "1.1"))]
        pub values: BTreeMap<Key, LocalValue>,
    }
}

wire_struct! {
    /// One value of a `data-local`.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct LocalValue {
        /// The address of the value's encoding in the holder's memory.
        #[schemars(extend("x-since" = "1.1"))]
        pub at: u64,
        /// The length of the encoding (its nbytes).
        #[schemars(extend("x-since" = "1.1"))]
        pub nbytes: u64,
        /// The holder's id of this loan, unique on the connection, given back in `value-local-done`.
        #[schemars(extend("x-since" = "1.1"))]
        pub lease: u64,
    }
}

wire_struct! {
    /// Fetcher -> holder (since 1.1, feature `value-local`): these leases
    /// are over (read, or failed); the holder may let the values go.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct ValueLocalDone {
        /// Leases of `data-local` values; unknown ones are ignored.
        #[schemars(extend("x-since" = "1.1"))]
        pub leases: Vec<u64>,
        /// A read failed: the holder sends no more `data-local` on this connection (the fetcher asks those keys again). Absent: false.
        #[schemars(extend("x-since" = "1.1"))]
        pub failed: Option<bool>,
    }
}

wire_struct! {
    /// Scheduler -> worker: the bytes of one value's encoding from
    /// `offset`, at most `bytes_max` of them (feature `value-ranges`): a
    /// gather relays a large value to its client a range at a time.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct GetValueRange {
        /// Requester-chosen id, echoed in the reply.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// The key of the value.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// Where the range starts in the value's encoding.
        #[schemars(extend("x-since" = "1.1"))]
        pub offset: u64,
        /// The most bytes wanted (a worker sends at least one, and MAY send
        /// fewer than asked: dask-rs sends at most what one of its `data`
        /// replies holds).
        #[schemars(extend("x-since" = "1.1"))]
        pub bytes_max: u64,
    }
}

wire_struct! {
    /// Worker -> requester: the answer to `get-value-range` (feature
    /// `value-ranges`); a key it does not hold is answered with `data`
    /// listing it missing.
    #[schemars(extend("x-since" = "1.1"))]
    pub struct ValueRange {
        /// The `get-value-range` this answers.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// The key of the value.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// The whole value's nbytes (the length of its encoding).
        #[schemars(extend("x-since" = "1.1"))]
        pub nbytes: u64,
        /// The request's `offset`: where `part` starts.
        #[schemars(extend("x-since" = "1.1"))]
        pub offset: u64,
        /// The bytes from `offset`: at least one and at most `bytes_max`,
        /// fewer only at the end of the value; none when `offset` is at or
        /// past `nbytes`.
        #[schemars(extend("x-since" = "1.1"))]
        pub part: Bin,
    }
}

wire_struct! {
    /// The next bytes of a value too large for one frame, sent in parts
    /// right before the `data`, `gather-reply`, `put-data` or `scatter`
    /// carrying it (feature `value-parts`).
    #[schemars(extend("x-since" = "1.1"))]
    pub struct ValuePart {
        /// The key of the value; the message after its parts carries it.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// The whole value's nbytes (the same in each of its parts).
        #[schemars(extend("x-since" = "1.1"))]
        pub nbytes: u64,
        /// The next bytes of the value's msgpack encoding (at least one).
        #[schemars(extend("x-since" = "1.1"))]
        pub part: Bin,
    }
}

wire_struct! {
    /// Worker -> requester: too many transfers in flight; ask again later.
    pub struct Busy {
        /// The `get-data` this answers.
        pub request: u64,
    }
}

/// Declares the message enum: one variant per op.
macro_rules! messages {
    (boxed { $($boxed:ident = $boxed_op:literal),* $(,)? } plain { $($variant:ident = $op:literal),* $(,)? }) => {
        /// Any dask/1 message.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Message {
            $(#[doc = concat!("`", $boxed_op, "`")] $boxed(Box<$boxed>),)*
            $(#[doc = concat!("`", $op, "`")] $variant($variant),)*
        }

        /// Every op with the name of its Rust type, in spec order.
        pub const OPS: &[(&str, &str)] = &[$(($boxed_op, stringify!($boxed)),)* $(($op, stringify!($variant)),)*];

        impl Message {
            /// The message's op.
            pub fn op(&self) -> &'static str {
                match self { $(Message::$boxed(_) => $boxed_op,)* $(Message::$variant(_) => $op,)* }
            }

            /// Appends the canonical encoding: a map with `op` first.
            pub fn write(&self, w: &mut WriteBuf<'_>) {
                match self {
                    $(Message::$boxed(m) => {
                        write::map_len(w, m.field_count() + 1);
                        write::str(w, "op");
                        write::str(w, $boxed_op);
                        m.write_fields(w);
                    })*
                    $(Message::$variant(m) => {
                        write::map_len(w, m.field_count() + 1);
                        write::str(w, "op");
                        write::str(w, $op);
                        m.write_fields(w);
                    })*
                }
            }

            /// Reads one message.
            pub fn read(r: &mut Reader<'_>) -> Result<Message, WireError> {
                let op = find_op(r.clone())?;
                match op {
                    $($boxed_op => <$boxed as Wire>::read(r).map(Message::from),)*
                    $($op => <$variant as Wire>::read(r).map(Message::$variant),)*
                    _ => Err(WireError::new(ErrorCode::UnknownOp, format!("unknown op {op:?}"))),
                }
                .map_err(|e| e.in_op(op))
            }

            /// Reads one message by first indexing its map (every value
            /// checked), then each field by name: the reader `read` was
            /// before it went over the map once. Kept to test that both
            /// accept the same messages and read them the same.
            #[doc(hidden)]
            pub fn read_indexed(r: &mut Reader<'_>) -> Result<Message, WireError> {
                let table = crate::wire::FieldTable::read(r)?;
                let op = table.str_field("op")?;
                match op {
                    $($boxed_op => $boxed::from_table(&table).map(Message::from),)*
                    $($op => $variant::from_table(&table).map(Message::$variant),)*
                    _ => Err(WireError::new(ErrorCode::UnknownOp, format!("unknown op {op:?}"))),
                }
                .map_err(|e| e.in_op(op))
            }

            /// JSON Schema of each message, by op.
            pub fn schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($boxed_op, g.subschema_for::<$boxed>()),)* $(($op, g.subschema_for::<$variant>()),)*]
            }
        }

        $(impl From<$boxed> for Message {
            fn from(m: $boxed) -> Message { Message::$boxed(Box::new(m)) }
        })*

        $(impl From<$variant> for Message {
            fn from(m: $variant) -> Message { Message::$variant(m) }
        })*
    };
}

/// The `op` of the message map `r` is at, found without reading the other
/// fields: canonical encoders put it first, so one entry is read; entries
/// before it are checked as when skipped.
fn find_op<'a>(mut r: Reader<'a>) -> Result<&'a str, WireError> {
    let len = r.read_map_len()?;
    check_struct_len(len)?;
    for _ in 0..len {
        let name = r.read_str().map_err(|e| e.in_field("<field name>"))?;
        if name == "op" {
            return r.read_str().map_err(|e| e.in_field("op"));
        }
        r.skip_nested(FIELD_DEPTH_MAX, &mut |_| {})
            .map_err(|e| e.in_field(name))?;
    }
    Err(WireError::missing_field("op"))
}

// `hello` (312 bytes, once per connection) is boxed so that every message
// is at most `compute-task`'s size: a message moves about 15 times between
// decoding and sending, and memcpy of the largest variant was ~15% of the
// worker's instructions per task.
messages! {
    boxed {
    Hello = "hello",
    }
    plain {
    AuthProof = "auth-proof",
    ErrorReport = "error",
    Close = "close",
    Heartbeat = "heartbeat",
    UpdateGraph = "update-graph",
    ReleaseKeys = "release-keys",
    CancelKeys = "cancel-keys",
    Scatter = "scatter",
    Gather = "gather",
    GatherReply = "gather-reply",
    WhoHas = "who-has",
    WhoHasReply = "who-has-reply",
    ClusterInfo = "cluster-info",
    ClusterInfoReply = "cluster-info-reply",
    PublishDataset = "publish-dataset",
    UnpublishDataset = "unpublish-dataset",
    GetDataset = "get-dataset",
    Dataset = "dataset",
    ListDatasets = "list-datasets",
    Datasets = "datasets",
    OkReply = "ok",
    KeyFinished = "key-finished",
    KeyErred = "key-erred",
    KeyLost = "key-lost",
    KeyCancelled = "key-cancelled",
    KeyWaiting = "key-waiting",
    WaitingKeys = "waiting-keys",
    WaitingKeysReply = "waiting-keys-reply",
    RegisterWorker = "register-worker",
    WorkerRegistered = "worker-registered",
    ComputeTask = "compute-task",
    TaskFinished = "task-finished",
    TaskErred = "task-erred",
    FreeKeys = "free-keys",
    StealRequest = "steal-request",
    StealResponse = "steal-response",
    PutData = "put-data",
    DataStored = "data-stored",
    AddKeys = "add-keys",
    MissingData = "missing-data",
    GetData = "get-data",
    Data = "data",
    Busy = "busy",
    ValuePart = "value-part",
    GetValueRange = "get-value-range",
    ValueRange = "value-range",
    DataLocal = "data-local",
    ValueLocalDone = "value-local-done",
    }
}

impl Message {
    /// The canonical encoding of one message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::new();
        self.write(&mut WriteBuf::new(&mut w));
        w
    }

    /// Decodes exactly one message from `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader::new(bytes);
        let m = Message::read(&mut r)?;
        if r.remaining() != 0 {
            return Err(WireError::malformed("bytes after the end of the message"));
        }
        Ok(m)
    }

    /// An `error` message for a [`WireError`].
    pub fn error(e: &WireError, request: Option<u64>) -> Message {
        Message::ErrorReport(ErrorReport {
            code: e.code.number(),
            message: e.message.clone(),
            fatal: e.code.is_fatal(),
            request,
            keys: None,
        })
    }
}
