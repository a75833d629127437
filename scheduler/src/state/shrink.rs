//! Memory given back (issue 20 item 5). The tables that grow with tasks
//! keep the capacity of the largest graph they held: a long-lived
//! scheduler that once ran a million tasks would hold that memory for
//! ever. When the tasks fall to a quarter of the task table's capacity
//! (past [`SHRINK_FLOOR`]), those tables are shrunk, and
//! [`SchedulerState::take_shrunk`] tells the loop, which returns the freed
//! pages to the OS.

use super::*;

/// Task tables smaller than this are never shrunk (not worth a rehash).
pub const SHRINK_FLOOR: usize = 4096;

impl SchedulerState {
    /// Shrinks the task tables when they are mostly empty (see the module
    /// docs). Runs at the end of every event: cheap unless it shrinks.
    pub(crate) fn maybe_shrink(&mut self) {
        let capacity = self.tasks.capacity();
        if capacity < SHRINK_FLOOR || self.tasks.len() * 4 > capacity {
            return;
        }
        // Not in the middle of a release: each step would shrink (and
        // rehash the index) again; once at its end.
        if self.is_releasing() {
            return;
        }
        // The slab keeps the slots up to its highest live key: it may not
        // shrink; then only an emptier table tries again.
        if !self.tasks.is_empty() && capacity == self.shrink_tried_at {
            return;
        }
        if self.tasks.is_empty() {
            self.tasks = Slab::new();
        } else {
            self.tasks.shrink_to_fit();
        }
        self.key_index.shrink_to_fit();
        self.to_check.shrink_to_fit();
        self.touched.shrink_to_fit();
        // An event may have queued a message per task (key-waiting for a
        // graph no worker can run); the loop drained them since.
        self.out.shrink_to_fit();
        self.queue.shrink_to_fit();
        self.claims_shrink_to_fit();
        // Hash sets and maps keep their capacity when emptied (the B-trees
        // they replaced did not).
        for (_, worker) in self.workers.iter_mut() {
            worker.processing.shrink_to_fit();
            worker.has_what.shrink_to_fit();
        }
        for client in self.clients.values_mut() {
            client.wants.shrink_to_fit();
        }
        self.shrink_tried_at = self.tasks.capacity();
        self.shrunk = true;
    }

    /// Whether the tables were shrunk since the last call: the loop then
    /// returns freed memory to the OS.
    pub fn take_shrunk(&mut self) -> bool {
        std::mem::take(&mut self.shrunk)
    }
}
