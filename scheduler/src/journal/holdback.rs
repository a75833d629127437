//! Which outputs wait for the journal, pure: the event loop's rule
//! ("What waits for the journal" in `event_loop.rs`) as a queue.
//!
//! Records are counted from 1 in the order they were appended. An output
//! is tagged with the count of the last record appended before it and may
//! leave once that many are durable. Outputs leave in the order they came,
//! except those the caller says need not wait (messages to workers): they
//! leave at once, unless an earlier output to the same connection waits
//! (a connection's messages never overtake each other).

use std::collections::VecDeque;

use dask_core::ConnId;

/// Outputs waiting for records to be durable (see the module docs).
#[derive(Debug)]
pub struct Holdback<T> {
    queue: VecDeque<(u64, ConnId, T)>,
    /// How many outputs of each connection wait (foldhash: asked for
    /// every message to a worker while anything waits; connection ids are
    /// the reactor's, not a peer's choice).
    waiting: foldhash::HashMap<ConnId, usize>,
}

impl<T> Default for Holdback<T> {
    fn default() -> Self {
        Holdback {
            queue: VecDeque::new(),
            waiting: foldhash::HashMap::default(),
        }
    }
}

impl<T> Holdback<T> {
    /// An output for `conn`, with `appended` records appended before it
    /// and `durable` of them durable: given back when it may leave now,
    /// else kept. `need_not_wait`: it does not depend on records (a
    /// message to a worker).
    pub fn admit(
        &mut self,
        conn: ConnId,
        output: T,
        appended: u64,
        durable: u64,
        need_not_wait: bool,
    ) -> Option<T> {
        if !self.must_wait(conn, appended, durable, need_not_wait) {
            return Some(output);
        }
        self.hold(conn, output, appended);
        None
    }

    /// Whether an output for `conn` must wait ([`Holdback::hold`]) or may
    /// leave now, as [`Holdback::admit`] decides; asked before the output
    /// is moved, so one that leaves (most: messages to workers) is not
    /// copied in and out (a scheduler output is over 200 bytes).
    pub fn must_wait(
        &self,
        conn: ConnId,
        appended: u64,
        durable: u64,
        need_not_wait: bool,
    ) -> bool {
        if need_not_wait {
            !self.waiting.is_empty() && self.waiting.contains_key(&conn)
        } else {
            !self.queue.is_empty() || appended > durable
        }
    }

    /// Keeps an output that [`Holdback::must_wait`], `appended` records
    /// appended before it.
    pub fn hold(&mut self, conn: ConnId, output: T, appended: u64) {
        *self.waiting.entry(conn).or_default() += 1;
        self.queue.push_back((appended, conn, output));
    }

    /// The next output that may leave now that `durable` records are.
    pub fn release(&mut self, durable: u64) -> Option<T> {
        if self.queue.front()?.0 > durable {
            return None;
        }
        let (_, conn, output) = self.queue.pop_front()?;
        if let Some(n) = self.waiting.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&conn);
            }
        }
        Some(output)
    }

    /// The count of records the waiting outputs wait for (the last one's:
    /// counts only grow), 0 when none waits.
    pub fn waits_for(&self) -> u64 {
        self.queue.back().map_or(0, |(appended, _, _)| *appended)
    }

    /// Outputs waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: ConnId = ConnId(1);
    const WORKER: ConnId = ConnId(2);

    fn released(h: &mut Holdback<&'static str>, durable: u64) -> Vec<&'static str> {
        std::iter::from_fn(|| h.release(durable)).collect()
    }

    #[test]
    fn a_reply_waits_until_the_records_before_it_are_durable() {
        let mut h = Holdback::default();
        // Nothing appended: leaves at once.
        assert_eq!(h.admit(CLIENT, "hello", 0, 0, false), Some("hello"));
        // Record 1 appended, not durable: the ack waits.
        assert_eq!(h.admit(CLIENT, "ack", 1, 0, false), None);
        assert_eq!(released(&mut h, 0), Vec::<&str>::new());
        assert_eq!(h.waits_for(), 1);
        assert_eq!(released(&mut h, 1), ["ack"]);
        assert!(h.is_empty());
        assert_eq!(h.waits_for(), 0);
    }

    #[test]
    fn a_message_to_a_worker_does_not_wait() {
        let mut h = Holdback::default();
        assert_eq!(h.admit(CLIENT, "key-finished", 3, 1, false), None);
        assert_eq!(
            h.admit(WORKER, "compute-task", 3, 1, true),
            Some("compute-task")
        );
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn nothing_overtakes_a_waiting_output_of_its_connection() {
        let mut h = Holdback::default();
        // A hello reply waits (the peer registers as a worker later).
        assert_eq!(h.admit(WORKER, "hello", 2, 1, false), None);
        assert_eq!(h.admit(WORKER, "registered", 2, 1, true), None);
        // A reply with no record of its own still waits its turn.
        assert_eq!(h.admit(CLIENT, "who-has", 2, 2, false), None);
        assert_eq!(released(&mut h, 1), Vec::<&str>::new());
        assert_eq!(released(&mut h, 2), ["hello", "registered", "who-has"]);
        assert_eq!(
            h.admit(WORKER, "compute-task", 2, 2, true),
            Some("compute-task")
        );
    }

    #[test]
    fn outputs_leave_in_order_as_records_become_durable() {
        let mut h = Holdback::default();
        for (after, m) in [(1, "a"), (2, "b"), (2, "c"), (4, "d")] {
            assert_eq!(h.admit(CLIENT, m, after, 0, false), None);
        }
        assert_eq!(h.waits_for(), 4);
        assert_eq!(released(&mut h, 1), ["a"]);
        assert_eq!(released(&mut h, 3), ["b", "c"]);
        assert_eq!(released(&mut h, 4), ["d"]);
    }
}
