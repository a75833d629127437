//! The bounds on what connections hold: backpressure on output, the write
//! timeout, and bytes held before a hello.

use std::time::{Duration, Instant};

use dask_core::{ErrorCode, WireError};

#[cfg(doc)]
use super::ReactorConfig;
use super::{CloseReason, Entry, Phase, Reactor};

impl Reactor {
    /// Counts what `index` has queued now in [`Reactor::queued_total`] and
    /// judges whether it is backlogged.
    pub(super) fn recount(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        let queued = slot.conn.queued_bytes();
        self.queued_total = self.queued_total - slot.queued_counted + queued;
        slot.queued_counted = queued;
        self.judge_backlog(index);
        self.judge_stall(index);
    }

    /// Starts or restarts `index`'s write-timeout clock: from the last
    /// write that made progress, while more than the bound waits.
    pub(super) fn judge_stall(&mut self, index: usize) {
        let Some(timeout) = self.config.write_timeout else {
            return;
        };
        let share = self.config.output_bytes_share;
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.listener.is_none() || slot.phase != Phase::Open || slot.queued_counted <= share {
            slot.stalled_since = None;
            return;
        }
        let written = slot.conn.written_bytes();
        if slot.stalled_since.is_none() || written != slot.written_seen {
            let now = Instant::now();
            slot.written_seen = written;
            slot.stalled_since = Some(now);
            if self.write_check_at.is_none() {
                self.write_check_at = Some(now + write_check_interval(timeout));
            }
        }
    }

    /// Closes the connections whose output could not be written for the
    /// write timeout: each is tried once more first (after a pause of this
    /// process, a peer that reads takes bytes at once).
    pub(super) fn expire_stalled(&mut self, now: Instant) {
        self.write_check_at = None;
        let Some(timeout) = self.config.write_timeout else {
            return;
        };
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter_map(|(index, entry)| match entry {
                Entry::Live(slot)
                    if !slot.failed
                        && slot.stalled_since.is_some_and(|since| {
                            now.saturating_duration_since(since) >= timeout
                        }) =>
                {
                    Some(index)
                }
                _ => None,
            })
            .collect();
        for index in due {
            let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
                continue;
            };
            if let Err(e) = slot.conn.flush() {
                self.fail(index, e);
                continue;
            }
            self.recount(index);
            let Some(Entry::Live(slot)) = self.conns.get(index) else {
                continue;
            };
            let Some(since) = slot.stalled_since else {
                continue;
            };
            let idle = now.saturating_duration_since(since);
            if idle >= timeout {
                let unwritten = slot.queued_counted;
                self.fail_with(index, CloseReason::WriteTimeout { unwritten, idle });
            }
        }
        let stalled = self.conns.iter().any(|(_, entry)| {
            matches!(entry, Entry::Live(slot) if !slot.failed && slot.stalled_since.is_some())
        });
        if stalled {
            self.write_check_at = Some(now + write_check_interval(timeout));
        }
    }

    /// Whether an accepted, open connection's output is over the bounds
    /// (its own, or its share of the total); input skipped meanwhile is
    /// read once it is not.
    pub(super) fn judge_backlog(&mut self, index: usize) {
        let (per_connection, share) =
            (self.config.output_bytes_max, self.config.output_bytes_share);
        let over_total = self.over_total;
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.listener.is_none() || slot.phase != Phase::Open || slot.input_over {
            return;
        }
        let queued = slot.queued_counted;
        let backlogged = queued > per_connection || (over_total && queued > share);
        if backlogged == slot.backlogged {
            return;
        }
        slot.backlogged = backlogged;
        self.release_if_readable(index);
    }

    /// Reads `index` again if a read was skipped and it is not backlogged
    /// now.
    pub(super) fn release_if_readable(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.read_deferred && !slot.backlogged {
            slot.read_deferred = false;
            self.resume.push(index);
        }
    }

    /// Counts what `index` holds before its hello against
    /// [`ReactorConfig::handshake_bytes_max`]; over it, the error to refuse
    /// it with.
    pub(super) fn count_handshake_bytes(&mut self, index: usize) -> Result<(), WireError> {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return Ok(());
        };
        let held = if slot.conn.awaiting_hello() {
            slot.conn.buffered()
        } else {
            0
        };
        self.handshake_bytes = self.handshake_bytes - slot.handshake_bytes + held;
        slot.handshake_bytes = held;
        if self.handshake_bytes <= self.config.handshake_bytes_max {
            return Ok(());
        }
        let total = self.handshake_bytes;
        self.release_handshake_bytes(index);
        Err(WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "{total} bytes held for connections that have not sent their hello: over the \
                 limit of {} bytes (try again later)",
                self.config.handshake_bytes_max
            ),
        ))
    }

    /// Drops what `index` held before its hello, and its count.
    pub(super) fn release_handshake_bytes(&mut self, index: usize) {
        if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
            if slot.handshake_bytes > 0 {
                self.handshake_bytes -= slot.handshake_bytes;
                slot.handshake_bytes = 0;
                slot.conn.discard_buffered();
            }
        }
    }
}

/// How often stalled connections are looked at: a quarter of the write
/// timeout, within 10 ms to 1 s.
fn write_check_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}
