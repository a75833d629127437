//! The worker state machine, sans-IO, on the event loop's clock.
//!
//! The machine itself lives in [`dask_core::worker`] so that every worker
//! (this one, the JS SDK's through wasm) runs the same logic; there time is
//! a [`Timestamp`] since an arbitrary origin because `core` reads no clock.
//! [`WorkerState`] here is that machine with its origin fixed at the
//! `Instant` it was created, so this crate's event loop and tests speak
//! `Instant` as before. See [`dask_core::worker`] for the call order, the
//! task states and the outputs.

use std::sync::Arc;
use std::time::Instant;

use dask_core::messages::{GetData, Metrics};
use dask_core::{ErrorCode, Message, RawValue, Timestamp};

pub use dask_core::worker::{
    Job, MemorySpillStore, MemoryUsage, PeerId, PeerLink, PeerVerdict, SpillStore, TaskDone,
    WorkerOutput, WorkerStateConfig, BUSY_ANSWERS_MAX, BUSY_RETRY_DELAY_MAX, BUSY_RETRY_DELAY_MIN,
    DISPATCH_AHEAD_MIN, FAILED_ADDRESS_MEMORY, FETCH_TIMEOUT, FRAME_OVERHEAD_BYTES,
    HEARTBEAT_INTERVAL_DEFAULT, HEARTBEAT_INTERVAL_MIN, MEMORY_PAUSE_FRACTION_DEFAULT,
    MEMORY_TARGET_FRACTION_DEFAULT, REPLY_BYTES_IN_FLIGHT_MAX, SPILL_RETRY_DELAY, VALUE_BYTES_MAX,
};

/// The worker's tasks, data and transfers ([`dask_core::worker::WorkerState`]
/// with `Instant` time).
pub struct WorkerState {
    inner: dask_core::worker::WorkerState,
    /// The `Instant` that is time zero for `inner`.
    origin: Instant,
}

impl WorkerState {
    /// A worker holding nothing; `now` starts its clock.
    pub fn new(config: WorkerStateConfig, now: Instant) -> WorkerState {
        WorkerState {
            inner: dask_core::worker::WorkerState::new(config, Timestamp::ZERO),
            origin: now,
        }
    }

    /// `now` as the inner machine's time; an `Instant` before the origin
    /// counts as the origin.
    fn since_origin(&self, now: Instant) -> Timestamp {
        Timestamp::from_duration(now.saturating_duration_since(self.origin))
    }

    /// The same worker spilling to `store` past its memory target.
    pub fn with_spill_store(self, store: Box<dyn SpillStore>) -> WorkerState {
        WorkerState {
            inner: self.inner.with_spill_store(store),
            origin: self.origin,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerStateConfig {
        self.inner.config()
    }

    /// Whether the scheduler connection is over (closed or failed).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Current load, as sent in heartbeats.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics()
    }

    /// Bytes in memory and spilled, pause, and what spilling did so far.
    pub fn memory(&self) -> MemoryUsage {
        self.inner.memory()
    }

    /// The value stored under `key`, when it is in memory.
    pub fn value(&self, key: &str) -> Option<&Arc<RawValue>> {
        self.inner.value(key)
    }

    /// Whether a value is held under `key`, in memory or spilled.
    pub fn holds(&self, key: &str) -> bool {
        self.inner.holds(key)
    }

    /// Whether the value under `key` is spilled.
    pub fn is_spilled(&self, key: &str) -> bool {
        self.inner.is_spilled(key)
    }

    /// Runs out on the executor now (including discarded ones still running).
    pub fn running(&self) -> usize {
        self.inner.running()
    }

    /// About how many tasks are queued for a thread or running.
    pub fn backlog(&self) -> usize {
        self.inner.backlog()
    }

    /// A message from the scheduler (after the handshake).
    pub fn handle_scheduler_message(&mut self, now: Instant, message: Message) {
        let now = self.since_origin(now);
        self.inner.handle_scheduler_message(now, message)
    }

    /// The scheduler connection broke a protocol rule: report `code` and close.
    pub fn handle_scheduler_protocol_error(
        &mut self,
        now: Instant,
        code: ErrorCode,
        message: String,
    ) {
        let now = self.since_origin(now);
        self.inner
            .handle_scheduler_protocol_error(now, code, message)
    }

    /// The scheduler connection is gone: the worker stops.
    pub fn handle_scheduler_lost(&mut self, now: Instant, reason: String) {
        let now = self.since_origin(now);
        self.inner.handle_scheduler_lost(now, reason)
    }

    /// A `get-data` from a peer connection: answered with `data` or `busy`.
    pub fn handle_peer_request(&mut self, now: Instant, peer: PeerId, request: GetData) {
        let now = self.since_origin(now);
        self.inner.handle_peer_request(now, peer, request)
    }

    /// A message on a data connection: the hello exchange, then requests
    /// and replies ([`dask_core::worker::WorkerState::handle_peer_message`]).
    pub fn handle_peer_message(
        &mut self,
        now: Instant,
        link: PeerLink<'_>,
        handshaken: bool,
        name: &str,
        message: Message,
    ) -> PeerVerdict {
        let now = self.since_origin(now);
        self.inner
            .handle_peer_message(now, link, handshaken, name, message)
    }

    /// Everything queued on a peer's connection has been written.
    pub fn handle_peer_drained(&mut self, peer: PeerId) {
        self.inner.handle_peer_drained(peer)
    }

    /// A peer's connection closed.
    pub fn handle_peer_closed(&mut self, peer: PeerId) {
        self.inner.handle_peer_closed(peer)
    }

    /// A `data` or `busy` from the holder at `address`.
    pub fn handle_peer_reply(&mut self, now: Instant, address: &str, message: Message) {
        let now = self.since_origin(now);
        self.inner.handle_peer_reply(now, address, message)
    }

    /// The connection to the holder at `address` failed.
    pub fn handle_peer_failed(&mut self, now: Instant, address: &str) {
        let now = self.since_origin(now);
        self.inner.handle_peer_failed(now, address)
    }

    /// A run finished on the executor.
    pub fn handle_task_done(&mut self, now: Instant, done: TaskDone) {
        let now = self.since_origin(now);
        self.inner.handle_task_done(now, done)
    }

    /// The answer to [`WorkerOutput::Withdraw`].
    pub fn handle_withdrawn(&mut self, now: Instant, run_id: u64, withdrawn: bool) {
        let now = self.since_origin(now);
        self.inner.handle_withdrawn(now, run_id, withdrawn)
    }

    /// Time passed: heartbeats and delayed fetches fall due.
    pub fn handle_tick(&mut self, now: Instant) {
        let now = self.since_origin(now);
        self.inner.handle_tick(now)
    }

    /// When [`WorkerState::handle_tick`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.inner
            .poll_timeout()
            .map(|at| self.origin + at.since_origin())
    }

    /// The next thing to do; call until `None` after handling inputs.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<WorkerOutput> {
        self.inner.poll_output()
    }
}

#[cfg(test)]
mod tests {
    //! The machine's own tests are in `dask_core::worker`; these check the
    //! clock translation.
    use super::*;
    use dask_core::messages::WorkerRegistered;
    use std::time::Duration;

    #[test]
    fn timeouts_come_back_on_the_instant_clock() {
        let start = Instant::now();
        let mut w = WorkerState::new(
            WorkerStateConfig::new("tcp://127.0.0.1:1", 1, Default::default()),
            start,
        );
        assert_eq!(w.poll_timeout(), None);
        let later = start + Duration::from_secs(5);
        w.handle_scheduler_message(
            later,
            Message::WorkerRegistered(WorkerRegistered {
                id: 1,
                heartbeat_interval_ms: 50,
            }),
        );
        assert_eq!(w.poll_timeout(), Some(later + Duration::from_millis(50)));
        w.handle_tick(later + Duration::from_millis(50));
        assert!(matches!(
            w.poll_output(),
            Some(WorkerOutput::ToScheduler(Message::Heartbeat(_)))
        ));
        assert_eq!(w.poll_timeout(), Some(later + Duration::from_millis(100)));
    }
}
