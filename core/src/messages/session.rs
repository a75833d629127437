//! A connection's life on any connection: the handshake (`hello`, its
//! `auth` and `auth-proof`), `error`, `close` and the heartbeat.

use super::*;

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
