//! What the scheduler holds for clients' gathers (issue 20 item 3): a
//! client that asks for large values and never reads them must not make
//! the scheduler hold gigabytes, nor slow anyone else down.
//!
//! A gather's values pass through the scheduler, each one whole (a slice
//! of the frame its holder sent, written to the client from there), but
//! for large values relayed a range at a time to clients that take parts
//! ([`relay`](super::relay)), which hold a window and count for nothing
//! here. The bounds:
//! - a client's gathers are answered one at a time, in order: the next
//!   one starts (its `get-data` goes out) once the one before is answered;
//! - and only while at most [`CLIENT_OUTPUT_BYTES_MAX`] wait unwritten for
//!   that client: the bytes of the replies sent to it, until the loop
//!   reports how much of them is still queued
//!   ([`SchedulerState::handle_output_queued`]). A client that does not
//!   read holds that bound and one reply at most;
//! - a large gather (its values' `nbytes` over [`GATHER_SMALL_BYTES`])
//!   starts only while the large gathers in flight and the replies waiting
//!   for all clients sum to at most [`GATHERS_HELD_BYTES_MAX`] with it (or
//!   nothing is held). A small one always may: clients that read are
//!   served as before, whatever the others do.
//!
//! Other requests answer with little; the reactor's backpressure (it stops
//! reading a connection whose output is over its bound) bounds them per
//! connection.

use std::collections::{BTreeMap, VecDeque};

use dask_core::messages::Gather;

use super::*;

/// Most bytes waiting unwritten for a client when its next gather starts.
pub const CLIENT_OUTPUT_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A gather of at most this many bytes (by its values' `nbytes`) starts
/// whatever the other clients hold.
pub const GATHER_SMALL_BYTES: u64 = 1024 * 1024;

/// Most bytes of large gathers in flight and of replies waiting unwritten
/// for clients, together, when a large gather starts.
pub const GATHERS_HELD_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Gathers waiting to start, and what waits unwritten for clients.
#[derive(Debug, Default)]
pub(crate) struct Outflow {
    /// Gathers not started yet, in order, per client.
    waiting: BTreeMap<ConnId, VecDeque<Gather>>,
    /// Bytes waiting unwritten for a client (as last reported, plus the
    /// replies sent since); clients with none are absent.
    queued: BTreeMap<ConnId, u64>,
    /// Something changed that may let a waiting gather start.
    may_start: bool,
}

impl SchedulerState {
    /// The clients the loop should report the queued bytes of, after each
    /// flush ([`SchedulerState::handle_output_queued`]).
    pub fn clients_with_output(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.outflow.queued.keys().copied()
    }

    /// How many bytes still wait unwritten for each of these clients
    /// (those of [`SchedulerState::clients_with_output`]), right after the
    /// loop flushed its connections: gathers held back for them may start.
    pub fn handle_output_queued(&mut self, now: Timestamp, queued: &[(ConnId, u64)]) {
        self.set_now(now);
        for &(conn, bytes) in queued {
            let Some(held) = self.outflow.queued.get_mut(&conn) else {
                continue;
            };
            if bytes < *held {
                self.outflow.may_start = true;
            }
            if bytes == 0 {
                self.outflow.queued.remove(&conn);
            } else {
                *held = bytes;
            }
        }
        self.finish_event();
    }

    /// A client's `gather`: started now if it may, else when it may.
    pub(crate) fn gather(&mut self, conn: ConnId, m: Gather) {
        self.outflow.waiting.entry(conn).or_default().push_back(m);
        self.outflow.may_start = true;
    }

    /// A gather was answered with `bytes` of values (or dropped: 0): the
    /// client's next may start.
    pub(crate) fn gather_answered(&mut self, conn: ConnId, bytes: u64) {
        if bytes > 0 && self.clients.contains_key(&conn) {
            *self.outflow.queued.entry(conn).or_default() += bytes;
        }
        self.outflow.may_start = true;
    }

    /// A client left: its waiting gathers go with it.
    pub(crate) fn outflow_client_left(&mut self, conn: ConnId) {
        self.outflow.waiting.remove(&conn);
        self.outflow.queued.remove(&conn);
        self.outflow.may_start = true;
    }

    /// Bytes waiting unwritten for client `conn` (as last reported, plus
    /// what was sent since).
    pub(crate) fn outflow_queued(&self, conn: ConnId) -> u64 {
        self.outflow.queued.get(&conn).copied().unwrap_or(0)
    }

    /// `bytes` more were sent to client `conn` (a relayed part).
    pub(crate) fn outflow_sent(&mut self, conn: ConnId, bytes: u64) {
        *self.outflow.queued.entry(conn).or_default() += bytes;
    }

    /// Starts the waiting gathers that may start, and asks the next range
    /// of relays whose client caught up (at the end of an event).
    pub(crate) fn start_waiting_gathers(&mut self) {
        if !std::mem::take(&mut self.outflow.may_start) {
            return;
        }
        self.resume_relays();
        let clients: Vec<ConnId> = self.outflow.waiting.keys().copied().collect();
        for conn in clients {
            let queued = self.outflow.queued.get(&conn).copied().unwrap_or(0);
            if queued > CLIENT_OUTPUT_BYTES_MAX || self.gather_in_progress(conn) {
                continue;
            }
            let Some(next) = self.outflow.waiting.get(&conn).and_then(|q| q.front()) else {
                continue;
            };
            let estimate = self.gather_estimate(conn, &next.keys);
            if estimate > GATHER_SMALL_BYTES {
                let held = self
                    .outflow
                    .queued
                    .values()
                    .fold(self.large_gathers_in_flight(), |a, &b| a.saturating_add(b));
                if held > 0 && held.saturating_add(estimate) > GATHERS_HELD_BYTES_MAX {
                    continue;
                }
            }
            let Some(queue) = self.outflow.waiting.get_mut(&conn) else {
                continue;
            };
            let Some(m) = queue.pop_front() else {
                continue;
            };
            if queue.is_empty() {
                self.outflow.waiting.remove(&conn);
            }
            self.start_gather(conn, m, estimate);
        }
    }

    /// Bytes the values of `keys` take (as their holders reported them),
    /// but for those relayed: those hold a window at most.
    fn gather_estimate(&self, conn: ConnId, keys: &[Key]) -> u64 {
        keys.iter()
            .filter(|k| !self.relays(conn, k))
            .filter_map(|k| self.task_id(k))
            .map(|t| self.tasks[t].nbytes)
            .fold(0u64, u64::saturating_add)
    }

    /// Gathers waiting to start (tests).
    #[cfg(test)]
    pub(crate) fn gathers_waiting(&self) -> usize {
        self.outflow.waiting.values().map(VecDeque::len).sum()
    }

    /// Gathers wait, and output is counted, only for known clients
    /// (validation).
    pub(crate) fn validate_outflow(&self) -> Result<(), String> {
        for conn in self
            .outflow
            .waiting
            .keys()
            .chain(self.outflow.queued.keys())
        {
            if !self.clients.contains_key(conn) {
                return Err(format!(
                    "gathers or output held for {conn:?}, which is no client"
                ));
            }
        }
        Ok(())
    }
}
