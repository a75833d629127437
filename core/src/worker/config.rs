//! What the worker is and may do: its configuration and the protocol's limits.

use std::collections::HashSet;
use std::time::Duration;

use crate::messages::Resources;
use crate::FRAME_BYTES_MAX;

/// Room kept in a frame for everything around the values: the batch
/// header, op and field names, the request id and a key of up to 4096 bytes.
pub const FRAME_OVERHEAD_BYTES: usize = 64 * 1024;

/// Largest value the worker stores: larger results are reported as
/// `task-erred` `ValueTooLarge`, since no `data` message could carry them.
pub const VALUE_BYTES_MAX: usize = FRAME_BYTES_MAX - FRAME_OVERHEAD_BYTES;

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

/// What the worker is and may do.
#[derive(Debug, Clone)]
pub struct WorkerStateConfig {
    /// This worker's data address as registered (`tcp://..`): a who_has
    /// entry naming it is never fetched from.
    pub address: String,
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
    /// Largest value stored ([`VALUE_BYTES_MAX`]).
    pub value_bytes_max: usize,
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
}

impl WorkerStateConfig {
    /// A configuration with the protocol's limits.
    pub fn new(address: impl Into<String>, nthreads: usize, functions: HashSet<String>) -> Self {
        WorkerStateConfig {
            address: address.into(),
            nthreads: nthreads.max(1),
            dispatch_ahead: nthreads.max(DISPATCH_AHEAD_MIN),
            functions,
            resources: Resources::new(),
            value_bytes_max: VALUE_BYTES_MAX,
            reply_message_bytes_max: VALUE_BYTES_MAX,
            reply_bytes_in_flight_max: REPLY_BYTES_IN_FLIGHT_MAX,
            memory_limit: None,
            memory_target_fraction: Some(MEMORY_TARGET_FRACTION_DEFAULT),
            memory_pause_fraction: Some(MEMORY_PAUSE_FRACTION_DEFAULT),
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
