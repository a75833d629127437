//! Moving bytes: reading frames from a ready connection, and one write per
//! touched connection per wakeup.

use std::time::Instant;

use mio::Token;

use super::{CloseReason, Entry, NetEvent, Phase, Reactor};
use crate::conn::{ConnError, ReadStatus};

impl Reactor {
    /// Writes what each connection sent to since the last flush has
    /// queued: one write each. [`Reactor::poll`] calls it first; call it
    /// directly before a blocking step.
    pub fn flush(&mut self) {
        if !self.touched.is_empty() && !self.config.busy_poll.is_zero() {
            self.active_at = Some(Instant::now());
        }
        while let Some(index) = self.touched.pop() {
            let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
                continue;
            };
            slot.touched = false;
            if slot.phase == Phase::Connecting || slot.failed {
                continue;
            }
            match slot.conn.flush() {
                Ok(true) if slot.phase == Phase::Closing => {
                    if slot.eof {
                        self.remove(index);
                        continue;
                    }
                    if !slot.write_shut {
                        slot.write_shut = true;
                        slot.conn.shutdown_write();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.fail(index, e);
                    continue;
                }
            }
            if let Err(e) = slot
                .conn
                .update_interest(self.poll.registry(), Token(index))
            {
                self.fail(index, ConnError::Io(e));
                continue;
            }
            self.recount(index);
        }
        let over_total = self.queued_total > self.config.output_bytes_total_max;
        if over_total != self.over_total {
            // Every connection's share is judged again (rare: the total
            // crossing its bound).
            self.over_total = over_total;
            let indexes: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
            for index in indexes {
                self.judge_backlog(index);
            }
        }
    }

    /// Reads what `index` has sent: frames for an open connection, dropped
    /// bytes for a closing one.
    pub(super) fn read(&mut self, index: usize) {
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.failed || matches!(slot.phase, Phase::Connecting | Phase::Securing) {
            return;
        }
        if slot.phase == Phase::Closing || slot.input_over {
            if slot.conn.discard_input(&mut self.scratch) {
                slot.eof = true;
                if slot.write_shut {
                    return self.remove(index);
                }
            }
            self.touch(index);
            return;
        }
        if slot.yielded {
            return;
        }
        if slot.backlogged {
            // Backpressure: what the peer sends waits in the kernel.
            slot.read_deferred = true;
            return;
        }
        let id = slot.id;
        let pending = &mut self.pending;
        let mut result = slot.conn.read(&mut self.scratch, &mut |messages| {
            pending.push_back(NetEvent::Frame { conn: id, messages })
        });
        if result.is_ok() {
            if let Err(e) = self.count_handshake_bytes(index) {
                result = Err(ConnError::Wire(e));
            }
        }
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        if slot.conn.wants_write() {
            // Over TLS, reading can make records to send (a key update),
            // and plaintext held while the handshake ran can go now.
            self.touch(index);
        }
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return;
        };
        let reason = match result {
            Ok(ReadStatus::Open) => {
                // Stopped after a handshake frame: read on once the state
                // machine has seen it (no new edge comes for the rest).
                if slot.conn.take_paused() {
                    self.resume.push(index);
                } else if slot.conn.take_yielded() {
                    slot.yielded = true;
                    self.yielded.push(index);
                }
                return;
            }
            Ok(ReadStatus::Closed) => {
                slot.eof = true;
                CloseReason::PeerClosed
            }
            Ok(ReadStatus::ClosedMidFrame) => {
                slot.eof = true;
                CloseReason::PeerClosedMidFrame
            }
            Err(ConnError::Wire(e)) => CloseReason::Protocol(e),
            Err(ConnError::Io(e)) => {
                slot.failed = true;
                slot.conn.deregister(self.poll.registry());
                CloseReason::Io(e)
            }
        };
        slot.input_over = true;
        self.release_handshake_bytes(index);
        self.pending
            .push_back(NetEvent::Closed { conn: id, reason });
        // A protocol error leaves unread input: keep reading it (dropped)
        // so that the close does not reset the connection.
        self.read(index);
    }
}
