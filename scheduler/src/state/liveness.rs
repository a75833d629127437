//! Liveness: connections that send no hello in time, workers silent for
//! the heartbeat timeout, and stalls of the loop that drives the state.
//!
//! Peers are judged on time the scheduler ran. The loop hands over what
//! waited in the sockets before it judges a timeout; that covers a pause of
//! the scheduler alone (its peers' messages wait unread). When the whole
//! machine stops (a VM pause, a swap storm), nothing waits: the peers were
//! stopped too. So the state notices a *stall*: a call that comes more than
//! a heartbeat interval after the earliest deadline it had asked to be
//! woken at (see [`SchedulerState::poll_timeout`]) and after the previous
//! call. Every connection's timeout then starts again from the end of the
//! stall, and the stall is logged (`loop-stalled`): a peer that is really
//! gone is declared dead one timeout after the stall, one that was only
//! stopped with the scheduler has that time to be heard again (crediting
//! only the stall's length would leave it no time at all: at the deadline
//! it is due). A worker that is misjudged anyway is told `close` with
//! `reconnect: true` (dask/1.1), and registers again. A stuck worker's
//! wait for `SpillFailed` (see [`super::pause`]) starts again the same way:
//! other workers get that time to be heard or to join.

use dask_core::log::{Level, LogRecord};
use dask_core::messages::Close;
use dask_core::{ConnId, ErrorCode, Message, Timestamp};

use super::{Departure, Peer, SchedulerOutput, SchedulerState, JUST_AFTER};

impl SchedulerState {
    /// Every input passes its time here first: a stall of the loop is
    /// noticed (see the module docs), then `now` becomes the state's time.
    pub(super) fn set_now(&mut self, now: Timestamp) {
        if let Some(due) = self.next_liveness_check {
            let from = due.max(self.now);
            let stalled = now.saturating_duration_since(from);
            if stalled > self.heartbeat_interval_told() {
                for c in self.conns.values_mut() {
                    c.last_seen = now;
                    c.connected_at = now;
                }
                // Nor against a worker that cannot spill: its wait for
                // `SpillFailed` starts again too (a chaos seed found it: 60 s
                // of scheduler pauses in a minute made a stuck worker's
                // tasks err as the scheduler woke, while replacements for
                // killed workers were joining).
                for (_, w) in self.workers.iter_mut() {
                    if let Some(since) = w.stuck_since.as_mut() {
                        *since = now;
                    }
                }
                self.observe.log(
                    LogRecord::new(
                        Level::Warn,
                        "loop-stalled",
                        format!(
                            "the scheduler did not run for {} ms past a deadline (its process or \
                             machine was paused, or one event took that long): that time is not \
                             counted against workers' heartbeats or handshakes, whose timeouts start again now",
                            stalled.as_millis()
                        ),
                    )
                    .with("seconds", stalled.as_secs_f64()),
                );
            }
        }
        self.now = now;
        self.begin_input();
    }

    /// Closes connections that sent no hello within the handshake timeout
    /// and workers silent for the heartbeat timeout; notes when the next
    /// of the others can time out.
    pub(super) fn check_liveness(&mut self, now: Timestamp) {
        let mut dead: Vec<(ConnId, &'static str)> = Vec::new();
        let mut next: Option<Timestamp> = None;
        for (&conn, c) in &self.conns {
            let (since, timeout, why) = match c.peer {
                Peer::AwaitingHello => (c.connected_at, self.config.handshake_timeout, "no hello"),
                Peer::AwaitingProof => (
                    c.connected_at,
                    self.config.handshake_timeout,
                    "no auth-proof",
                ),
                Peer::Worker(_) => (
                    c.last_seen,
                    self.config.heartbeat_timeout,
                    "heartbeat timeout",
                ),
                Peer::Client => continue,
            };
            if now.saturating_duration_since(since) > timeout {
                dead.push((conn, why));
            } else {
                let at = since + timeout + JUST_AFTER;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.next_liveness_check = next;
        dead.sort();
        for (conn, why) in dead {
            if why == "no hello" {
                self.fatal(
                    conn,
                    ErrorCode::BadHandshake,
                    "no hello within the handshake timeout".into(),
                );
            } else {
                // The worker may be alive and only have been cut off (or
                // the judgement wrong): a dask/1.1 worker is asked to
                // register again rather than exit.
                let v1_1 = self.conns.get(&conn).is_some_and(|c| c.v1_1);
                self.send(
                    conn,
                    Message::Close(Close {
                        reason: Some(format!(
                            "no message for {} ms (heartbeat timeout)",
                            self.config.heartbeat_timeout.as_millis()
                        )),
                        reconnect: v1_1.then_some(true),
                    }),
                );
                self.drop_conn(conn, Departure::TimedOut);
                self.out.push_back(SchedulerOutput::Close(conn));
            }
        }
    }

    /// Makes sure the liveness check runs by `at` (a new deadline).
    pub(super) fn arm_liveness_check(&mut self, at: Timestamp) {
        self.next_liveness_check = Some(self.next_liveness_check.map_or(at, |t| t.min(at)));
    }
}
