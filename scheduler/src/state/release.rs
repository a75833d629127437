//! Releases in bounded steps (issue 19 item 4). A `release-keys` is
//! queued whole; its keys are taken off the queue (each want removed, its
//! task checked and maybe forgotten, its lineage after it) at most
//! [`SchedulerStateConfig::release_step`] units of work per *step*: a key
//! taken off the queue is a unit, a task forgotten or released is one.
//!
//! A step is one wakeup of the loop once the loop has said so
//! ([`SchedulerState::begin_wakeup`]): a wakeup reads many inputs (a client
//! dropping 1M futures sent 20-40 `release-keys` frames per wakeup, 300-450k
//! keys, ~0.5-1 s while other peers waited). Without that call (the stories
//! of `tests/`) each input is a step, as before. What is left goes on at
//! once in the next wakeup ([`SchedulerState::poll_timeout`] is due now).
//!
//! No ordering a client can see changes: its queued releases are applied
//! (wants removed, without a budget) before any other message of its own
//! is handled and when it leaves; a graph that redefines a key applies
//! everyone's and ends the release (as `update_graph` did already), and so
//! does a forced `cancel-keys`, which acts for every client. Messages of
//! different connections have no order on the wire, so another client
//! seeing a released key still known is a race it always had (as with a
//! release larger than a step). A compaction's snapshot writes the queued
//! releases after the wants they remove.

use super::*;

/// Keys taken off the queue at a time, between checks of the tasks they
/// released (so the checks stack stays small); at most half the budget
/// left, so a step forgets what it released rather than only queueing
/// checks for the next.
const KEYS_PER_TURN: usize = 256;

/// The queued `release-keys` messages, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ReleaseQueue {
    entries: VecDeque<QueuedRelease>,
}

#[derive(Debug)]
struct QueuedRelease {
    conn: ConnId,
    /// The keys not released yet: a slice of the frame they came in.
    keys: KeyList,
}

impl ReleaseQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn holds(&self, conn: ConnId) -> bool {
        self.entries.iter().any(|e| e.conn == conn)
    }

    /// The keys not released yet, by client, oldest first.
    pub(crate) fn pending(&self) -> impl Iterator<Item = (ConnId, &KeyList)> {
        self.entries.iter().map(|e| (e.conn, &e.keys))
    }
}

impl SchedulerState {
    /// The loop woke up: a new step of a release begins (see the module
    /// docs). From the first call on, inputs no longer start steps.
    pub fn begin_wakeup(&mut self) {
        self.steps_by_wakeup = true;
        self.release_budget = self.config.release_step.max(1);
    }

    /// An input began: without wakeups told, it is a step of its own.
    pub(super) fn begin_input(&mut self) {
        if !self.steps_by_wakeup {
            self.release_budget = self.config.release_step.max(1);
        }
    }

    /// `release-keys`: `conn` no longer wants `keys` (queued, see the
    /// module docs).
    pub(super) fn queue_release(&mut self, conn: ConnId, keys: KeyList) {
        if !keys.is_empty() {
            self.releases
                .entries
                .push_back(QueuedRelease { conn, keys });
        }
    }

    /// Before another message of `conn`: its queued releases take effect.
    pub(super) fn apply_releases_of(&mut self, conn: ConnId) {
        if !self.releases.holds(conn) {
            return;
        }
        let entries = std::mem::take(&mut self.releases.entries);
        let (mine, others): (VecDeque<_>, VecDeque<_>) =
            entries.into_iter().partition(|e| e.conn == conn);
        self.releases.entries = others;
        for mut e in mine {
            self.release_keys(&mut e, usize::MAX);
        }
    }

    /// Every queued release takes effect (wants removed; the checks left
    /// to `run_checks` or `run_all_checks`).
    pub(crate) fn apply_all_releases(&mut self) {
        for mut e in std::mem::take(&mut self.releases.entries) {
            self.release_keys(&mut e, usize::MAX);
        }
    }

    /// A client left: its queued releases are moot (all its wants go).
    pub(super) fn drop_releases_of(&mut self, conn: ConnId) {
        self.releases.entries.retain(|e| e.conn != conn);
    }

    /// Up to `max` keys off the front of the queue, each a unit of the
    /// budget; whether there were any.
    pub(super) fn release_queued(&mut self, max: usize) -> bool {
        let Some(mut e) = self.releases.entries.pop_front() else {
            return false;
        };
        let done = self.release_keys(&mut e, max);
        self.release_budget = self.release_budget.saturating_sub(done);
        if !e.keys.is_empty() {
            self.releases.entries.push_front(e);
        }
        true
    }

    /// Releases up to `max` of `e`'s keys; how many.
    fn release_keys(&mut self, e: &mut QueuedRelease, max: usize) -> usize {
        let mut keys = e.keys.iter();
        let mut done = 0;
        for key in keys.by_ref().take(max) {
            match self.task_id(key) {
                Some(t) => {
                    self.remove_want(e.conn, t);
                }
                None => {
                    self.abandon_scatter(e.conn, key);
                }
            }
            done += 1;
        }
        let rest = keys.rest();
        e.keys = rest;
        done
    }

    /// Runs the pending reference checks and the queued releases:
    /// tasks no longer needed release their data and are forgotten. Done
    /// after every message, so the next message of a frame sees their
    /// effect (messages are handled in order), up to
    /// [`SchedulerStateConfig::release_step`] units per step (see the
    /// module docs): a larger release goes on in the next steps
    /// ([`Self::poll_timeout`] asks for them at once), so no wakeup forgets
    /// 10M tasks while peers wait. Meanwhile a task nothing needs may
    /// still be known: it is revived if a graph wants it again, and a
    /// graph that redefines its key runs the release to its end first
    /// (see `update_graph`).
    pub(crate) fn run_checks(&mut self) {
        while self.release_budget > 0 {
            if let Some(t) = self.to_check.pop() {
                if self.check(t) {
                    self.release_budget -= 1;
                }
            } else if !self.release_queued(self.release_budget.div_ceil(2).min(KEYS_PER_TURN)) {
                return;
            }
        }
    }

    /// Runs every pending reference check and queued release, however
    /// many (a restore, or a graph that must not see a released key still
    /// known).
    pub(crate) fn run_all_checks(&mut self) {
        self.apply_all_releases();
        while let Some(t) = self.to_check.pop() {
            self.check(t);
        }
    }

    /// Whether a release larger than a step is still under way: then
    /// [`SchedulerState::poll_timeout`] is due at once until it ends.
    pub fn is_releasing(&self) -> bool {
        !self.to_check.is_empty() || !self.releases.is_empty()
    }

    /// Invariants of the queue (see [`SchedulerState::validate`]).
    pub(crate) fn validate_releases(&self) -> Result<(), String> {
        for e in &self.releases.entries {
            if !self.clients.contains_key(&e.conn) {
                return Err(format!(
                    "a release is queued for {:?}, not a client",
                    e.conn
                ));
            }
            if e.keys.is_empty() {
                return Err("an empty release is queued".into());
            }
        }
        Ok(())
    }
}
