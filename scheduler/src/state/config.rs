//! The state machine's settings and their defaults.

use std::time::Duration;

use dask_core::auth::AuthConfig;

/// Settings of the state machine.
#[derive(Debug, Clone)]
pub struct SchedulerStateConfig {
    /// A worker that sends nothing for this long is declared dead.
    pub heartbeat_timeout: Duration,
    /// The interval workers are told to send heartbeats at, at most: they
    /// are told a third of `heartbeat_timeout` when that is shorter, so a
    /// worker is never declared dead before three intervals of silence
    /// (see [`SchedulerState::heartbeat_interval_told`](super::SchedulerState::heartbeat_interval_told)).
    pub heartbeat_interval: Duration,
    /// A connection that sends no hello for this long is closed.
    pub handshake_timeout: Duration,
    /// Check the invariants after every event and panic on a violation
    /// (tests and `--validate`); see [`SchedulerState::validate`](super::SchedulerState::validate).
    pub validate: bool,
    /// Times a task may be on a worker that is lost (connection dropped or
    /// heartbeat timeout, not a `close`) and be rescheduled; one more and
    /// it errs with `KilledWorker` instead: a task that kills its workers
    /// must not kill them all, one after the other, forever. Default
    /// [`ALLOWED_FAILURES_DEFAULT`] (Dask's `allowed-failures`).
    pub allowed_failures: u32,
    /// Require every connection to prove the cluster's credentials
    /// (spec: "Authentication"): clients the client secret, workers the
    /// worker secret. `None`: anyone who reaches the port is served (the
    /// opt-out; tests of the state machine).
    pub auth: Option<AuthConfig>,
    /// How long a worker may stay paused and unable to spill (a full
    /// disk) before the tasks that only such workers could run err with
    /// `SpillFailed` instead of waiting for it (see [`pause`](super::pause)). Default
    /// [`SPILL_FAILED_TIMEOUT_DEFAULT`].
    pub spill_failed_timeout: Duration,
    /// Results of at most this many bytes travel inline (dask/1.1): the
    /// worker sends them with `task-finished`, and wanting clients get
    /// them with `key-finished`, without a `gather`. 0: none. Default
    /// [`INLINE_BYTES_MAX_DEFAULT`].
    pub inline_bytes_max: u64,
    /// Emit [`SchedulerOutput::Journal`](super::SchedulerOutput::Journal) records of every change a client
    /// may rely on (see [`durable`](super::durable)). Default false.
    pub journal: bool,
    /// Key of client session tokens (the edge gives 32 random bytes):
    /// tokens are HMAC-SHA256 of a count under it, so a client that knows
    /// its own token learns nothing of another's.
    pub session_seed: [u8; 32],
    /// After a restore, placement waits at most this long for the workers
    /// the journal named as holders. Default
    /// [`RESTORE_WORKER_WAIT_DEFAULT`].
    pub restore_worker_wait: Duration,
    /// After a restore, a client session waits this long for its client
    /// to reconnect; then its wants end. Default [`CLIENT_GRACE_DEFAULT`].
    pub client_grace: Duration,
    /// Most units of release work in one step (a released key taken off
    /// the queue, a task released or forgotten; see [`super::release`]):
    /// the rest of a larger release (a 10M-task lineage once its result
    /// is released, 1M keys a client dropped) waits for the next steps,
    /// each its own wakeup of the loop, so peers are answered between
    /// them. Default [`RELEASE_STEP_DEFAULT`].
    pub release_step: usize,
}

/// See [`SchedulerStateConfig::release_step`]: 50,000 tasks forgotten
/// take ~30 ms on an idle machine (a 10M-task lineage forgotten at once
/// kept the loop busy for 6 s idle, 124 s at load 20).
pub const RELEASE_STEP_DEFAULT: usize = 50_000;

/// Results up to this size travel with `task-finished` and `key-finished`
/// by default: a few numbers or a short string, the results a client
/// waits on one at a time, whose `gather` would cost a round trip through
/// the scheduler to a worker and back.
pub const INLINE_BYTES_MAX_DEFAULT: u64 = 4096;

/// How long a worker may be paused and unable to spill before the tasks
/// only it could run err, by default: long enough for a disk that fills
/// for a moment (the worker tries again every second).
pub const SPILL_FAILED_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// See [`SchedulerStateConfig::restore_worker_wait`].
pub const RESTORE_WORKER_WAIT_DEFAULT: Duration = Duration::from_secs(10);

/// See [`SchedulerStateConfig::client_grace`].
pub const CLIENT_GRACE_DEFAULT: Duration = Duration::from_secs(60);

/// Workers a task may lose before it errs with `KilledWorker`, by default.
pub const ALLOWED_FAILURES_DEFAULT: u32 = 3;

impl Default for SchedulerStateConfig {
    fn default() -> Self {
        SchedulerStateConfig {
            heartbeat_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(1000),
            handshake_timeout: Duration::from_secs(10),
            validate: false,
            allowed_failures: ALLOWED_FAILURES_DEFAULT,
            inline_bytes_max: INLINE_BYTES_MAX_DEFAULT,
            auth: None,
            spill_failed_timeout: SPILL_FAILED_TIMEOUT_DEFAULT,
            journal: false,
            session_seed: [0; 32],
            restore_worker_wait: RESTORE_WORKER_WAIT_DEFAULT,
            client_grace: CLIENT_GRACE_DEFAULT,
            release_step: RELEASE_STEP_DEFAULT,
        }
    }
}
