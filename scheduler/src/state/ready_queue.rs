//! [`ReadyQueue`]: ready tasks waiting for a worker slot, in queue order
//! (priority descending, then graph order).
//!
//! A 10M-task tree has its 5M leaves ready at once. One ordered map keyed
//! by `(Reverse(priority), order)` took 16 bytes of key and 4 of value an
//! entry, in B-tree leaves about half full when filled in order: ~40
//! bytes a queued task, 20 a task of the tree. Nearly every task has
//! priority 0, so those are kept by their order alone (12 bytes an entry,
//! ~24 with the leaves' slack); the few others in a map of their own. The
//! two are read as one queue.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::{QueueKey, TaskId};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    /// Tasks of priority 0, by graph order.
    plain: BTreeMap<u64, TaskId>,
    /// Tasks of any other priority, by queue key.
    prioritized: BTreeMap<QueueKey, TaskId>,
}

/// The queue key of a task of priority 0 and graph order `order`.
fn plain_key(order: u64) -> QueueKey {
    (Reverse(0), order)
}

impl ReadyQueue {
    pub(crate) fn insert(&mut self, k: QueueKey, t: TaskId) {
        match k {
            (Reverse(0), order) => self.plain.insert(order, t),
            _ => self.prioritized.insert(k, t),
        };
    }

    pub(crate) fn remove(&mut self, k: &QueueKey) -> Option<TaskId> {
        match *k {
            (Reverse(0), order) => self.plain.remove(&order),
            _ => self.prioritized.remove(k),
        }
    }

    pub(crate) fn get(&self, k: &QueueKey) -> Option<TaskId> {
        match *k {
            (Reverse(0), order) => self.plain.get(&order).copied(),
            _ => self.prioritized.get(k).copied(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.prioritized.is_empty()
    }

    /// The first entry in queue order after `cursor` (from the front when
    /// `None`).
    pub(crate) fn next_after(&self, cursor: Option<QueueKey>) -> Option<(QueueKey, TaskId)> {
        let prioritized = match cursor {
            None => self.prioritized.iter().next(),
            Some(c) => self
                .prioritized
                .range((Bound::Excluded(c), Bound::Unbounded))
                .next(),
        }
        .map(|(&k, &t)| (k, t));
        let plain = match cursor {
            // Before the plain ones (a higher priority), or none.
            None => self.plain.iter().next(),
            Some((Reverse(p), _)) if p > 0 => self.plain.iter().next(),
            Some((Reverse(0), order)) => self
                .plain
                .range((Bound::Excluded(order), Bound::Unbounded))
                .next(),
            // After every plain one (a lower priority).
            Some(_) => None,
        }
        .map(|(&order, &t)| (plain_key(order), t));
        match (prioritized, plain) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Every entry, in queue order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (QueueKey, TaskId)> + '_ {
        let zero = plain_key(0);
        let before = self.prioritized.range(..zero).map(|(&k, &t)| (k, t));
        let plain = self.plain.iter().map(|(&o, &t)| (plain_key(o), t));
        let after = self
            .prioritized
            .range((Bound::Excluded(zero), Bound::Unbounded))
            .map(|(&k, &t)| (k, t));
        before.chain(plain).chain(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_and_orders_come_out_in_one_queue_order() {
        let mut q = ReadyQueue::default();
        let keys: Vec<QueueKey> = vec![
            (Reverse(0), 5),
            (Reverse(3), 9),
            (Reverse(-2), 1),
            (Reverse(0), 2),
            (Reverse(3), 4),
            (Reverse(0), 7),
            (Reverse(-2), 0),
            (Reverse(i64::MIN), 3),
            (Reverse(i64::MAX), 8),
        ];
        for (i, &k) in keys.iter().enumerate() {
            q.insert(k, TaskId::new(i));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        let iterated: Vec<QueueKey> = q.iter().map(|(k, _)| k).collect();
        assert_eq!(iterated, sorted);
        // Walking with a cursor visits the same entries in the same order.
        let mut walked = Vec::new();
        let mut cursor = None;
        while let Some((k, t)) = q.next_after(cursor) {
            assert_eq!(q.get(&k), Some(t));
            assert_eq!(keys[t.ix()], k);
            walked.push(k);
            cursor = Some(k);
        }
        assert_eq!(walked, sorted);

        for k in &sorted {
            assert!(q.remove(k).is_some());
            assert_eq!(q.get(k), None);
            assert!(q.remove(k).is_none());
        }
        assert!(q.is_empty());
        assert_eq!(q.next_after(None), None);
    }
}
