//! What the worker is and may do: its configuration and the protocol's limits.

use std::collections::HashSet;
use std::time::Duration;

use crate::auth::AuthConfig;
use crate::messages::{LocalHost, Resources};
use crate::FRAME_BYTES_MAX;

/// Values of at least this many bytes in memory go to a peer on the same
/// host by `data-local` (feature `value-local`): under it, the extra round
/// trip and the reader's thread cost more than the socket's copy.
pub const LOCAL_VALUE_BYTES_MIN: usize = 1 << 20;

/// Most leases a worker keeps for one connection (values lent by
/// `data-local` and not yet given back): past it, values go by the
/// connection, so a peer that never says `value-local-done` pins at most
/// this many values (which the store holds anyway while they are wanted).
pub const LOCAL_LEASES_MAX: usize = 1024;

/// Room kept in a frame for everything around the values: the batch
/// header, op and field names, the request id and a key of up to 4096 bytes.
pub const FRAME_OVERHEAD_BYTES: usize = 64 * 1024;

/// Largest value that fits in one frame in a message of its own (spec:
/// value_bytes_max): a larger one can be sent only in parts, to a peer
/// that negotiated the feature `value-parts`.
pub const VALUE_BYTES_MAX: usize = FRAME_BYTES_MAX - FRAME_OVERHEAD_BYTES;

/// Largest value the worker stores by default: what a receiver holds in
/// parts for one message ([`crate::parts::PARTS_BYTES_MAX`]). Larger
/// results are reported as `task-erred` `ValueTooLarge`.
pub const STORED_VALUE_BYTES_MAX: usize = if crate::parts::PARTS_BYTES_MAX > usize::MAX as u64 {
    usize::MAX
} else {
    crate::parts::PARTS_BYTES_MAX as usize
};

/// Most bytes of `data` replies to peers queued and not yet written before
/// further peer requests are answered `busy`.
pub const REPLY_BYTES_IN_FLIGHT_MAX: usize = 512 * 1024 * 1024;

/// Fewest runs queued on the executor beyond nthreads (see
/// [`WorkerStateConfig::dispatch_ahead`]): each trip through the event loop costs
/// two thread wakeups, so with a queue a thread runs tiny tasks back to
/// back while the loop refills it in batches (measured: ~40k -> ~200k tiny
/// tasks/s on one thread).
pub const DISPATCH_AHEAD_MIN: usize = 16;

/// Heartbeat interval until the scheduler names one (design notes: 1000 ms).
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_millis(1000);

/// Shortest heartbeat interval honoured, whatever the scheduler asks.
pub const HEARTBEAT_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// Fraction of the memory limit above which values are spilled (Dask's
/// `distributed.worker.memory.target`).
pub const MEMORY_TARGET_FRACTION_DEFAULT: f64 = 0.6;

/// Fraction of the memory limit above which no task is started (Dask's
/// `distributed.worker.memory.pause`).
pub const MEMORY_PAUSE_FRACTION_DEFAULT: f64 = 0.8;

/// How long an incoming data connection may take to send its `hello`
/// before it gets 3002 and is closed (spec: "Handshake").
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the scheduler may take to answer the hello and the
/// registration before the attempt counts as failed.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before each attempt to register again after losing the scheduler.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Most data connections (incoming and outgoing) at once: further incoming
/// ones are refused, and a fetch that would need one more counts as a
/// failed holder.
pub const CONNECTIONS_MAX: usize = 4096;

/// Queued or running tasks per thread from which a worker is busy for a
/// while whatever the scheduler says: its reports (task-finished and the
/// rest) may then wait up to [`WorkerStateConfig::report_delay_max`] to go
/// out together. Tasks of microseconds otherwise cost one frame, one write
/// and one scheduler wakeup per handful of tasks, which is most of the
/// work; an idle or nearly idle worker (a chain, a single task) reports at
/// once. Dask batches these streams too (every 2 ms, busy or not).
pub const REPORT_BATCH_BACKLOG_PER_THREAD: usize = 128;

/// Longest a report waits for others to join it, by default.
pub const REPORT_DELAY_MAX: Duration = Duration::from_millis(1);

/// What the worker is and may do.
#[derive(Debug, Clone)]
pub struct WorkerStateConfig {
    /// The scheduler's address (`tcp://HOST:PORT`).
    pub scheduler: String,
    /// The name registered (unique in the cluster), also given in hellos.
    pub name: String,
    /// This worker's data address as registered (`tcp://..`): a who_has
    /// entry naming it is never fetched from. After a reconnection, the
    /// address of the new listener.
    pub address: String,
    /// The process id announced in `register-worker`, if any.
    pub pid: Option<u32>,
    /// Tasks run at once, at most.
    pub nthreads: usize,
    /// Runs handed to the executor beyond `nthreads`, queued there so a
    /// thread that finishes starts the next task without a round trip
    /// through the event loop. The executor runs at most `nthreads` at
    /// once; a queued run not yet started can still be withdrawn (steal,
    /// free-keys). Default: nthreads, at least [`DISPATCH_AHEAD_MIN`].
    pub dispatch_ahead: usize,
    /// Functions this worker offers; others err with `UnknownFunction`.
    pub functions: HashSet<String>,
    /// Resources offered; running tasks hold what they ask.
    pub resources: Resources,
    /// Largest value stored ([`STORED_VALUE_BYTES_MAX`]).
    pub value_bytes_max: usize,
    /// Largest value sent on a connection that did not negotiate the
    /// feature `value-parts` ([`VALUE_BYTES_MAX`]): a larger one is
    /// refused there with 5002.
    pub frame_value_bytes_max: usize,
    /// Most value bytes in one `data` message; a larger reply is split into
    /// several `data` messages with the same request id.
    pub reply_message_bytes_max: usize,
    /// [`REPLY_BYTES_IN_FLIGHT_MAX`].
    pub reply_bytes_in_flight_max: usize,
    /// Bytes of values this worker should keep in memory at most (the sum
    /// of their nbytes). `None`: no limit, nothing is spilled or paused.
    pub memory_limit: Option<u64>,
    /// Values are spilled while the bytes in memory exceed this fraction of
    /// the limit (and a [`SpillStore`](super::SpillStore) is given). `None`: never spill.
    /// Default [`MEMORY_TARGET_FRACTION_DEFAULT`].
    pub memory_target_fraction: Option<f64>,
    /// No task is started while the bytes in memory exceed this fraction
    /// of the limit. `None`: never pause. Default
    /// [`MEMORY_PAUSE_FRACTION_DEFAULT`].
    pub memory_pause_fraction: Option<f64>,
    /// An incoming data connection without a `hello` for this long is
    /// refused (3002). Default [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// [`REGISTER_TIMEOUT`].
    pub register_timeout: Duration,
    /// After losing a registered scheduler connection (closed, broken, a
    /// fatal error; not a `close`), try for this long to register again
    /// as a new, empty worker, every [`WorkerStateConfig::reconnect_delay`].
    /// Zero (the default): the worker finishes instead.
    pub reconnect_timeout: Duration,
    /// [`RECONNECT_DELAY`].
    pub reconnect_delay: Duration,
    /// [`CONNECTIONS_MAX`].
    pub connections_max: usize,
    /// Longest a report to the scheduler waits for others while the worker
    /// is busy ([`REPORT_BATCH_BACKLOG_PER_THREAD`]); zero: never waits.
    /// Default [`REPORT_DELAY_MAX`].
    pub report_delay_max: Duration,
    /// Authentication (spec: "Authentication"), with the cluster's
    /// worker secret: the worker proves it to the scheduler (role
    /// `worker`) and to the holders it fetches from (role `peer`),
    /// requires them to prove it back, and requires every peer that
    /// connects to its data address to prove it before anything is
    /// served. `None` (the default): no proofs, anyone who reaches the
    /// data address is served. Credentials without the worker secret
    /// count as `None`.
    pub auth: Option<AuthConfig>,
    /// Who this worker is on its host, when its edge can read a peer's
    /// memory (dask/1.1 feature `value-local`, spec "Values on one
    /// host"): listed in its peer hellos, so a fetcher on the same host
    /// reads large values from this worker's memory and this worker from
    /// theirs. `None` (the default): values go by the connection.
    pub local: Option<LocalHost>,
}

impl WorkerStateConfig {
    /// A worker named `name` registering with the scheduler at
    /// `scheduler`, serving data at `address`, with the protocol's limits.
    pub fn new(
        scheduler: impl Into<String>,
        name: impl Into<String>,
        address: impl Into<String>,
        nthreads: usize,
        functions: HashSet<String>,
    ) -> Self {
        WorkerStateConfig {
            scheduler: scheduler.into(),
            name: name.into(),
            address: address.into(),
            pid: None,
            nthreads: nthreads.max(1),
            dispatch_ahead: nthreads.max(DISPATCH_AHEAD_MIN),
            functions,
            resources: Resources::new(),
            value_bytes_max: STORED_VALUE_BYTES_MAX,
            frame_value_bytes_max: VALUE_BYTES_MAX,
            reply_message_bytes_max: VALUE_BYTES_MAX,
            reply_bytes_in_flight_max: REPLY_BYTES_IN_FLIGHT_MAX,
            memory_limit: None,
            memory_target_fraction: Some(MEMORY_TARGET_FRACTION_DEFAULT),
            memory_pause_fraction: Some(MEMORY_PAUSE_FRACTION_DEFAULT),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            register_timeout: REGISTER_TIMEOUT,
            reconnect_timeout: Duration::ZERO,
            reconnect_delay: RECONNECT_DELAY,
            connections_max: CONNECTIONS_MAX,
            report_delay_max: REPORT_DELAY_MAX,
            auth: None,
            local: None,
        }
    }

    /// `fraction` of the memory limit in bytes, when both are set.
    pub(super) fn limit_share(&self, fraction: Option<f64>) -> Option<u64> {
        let limit = self.memory_limit?;
        let fraction = fraction?;
        // Saturating: a fraction over 1 or a huge limit gives u64::MAX.
        Some((limit as f64 * fraction.max(0.0)) as u64)
    }
}
