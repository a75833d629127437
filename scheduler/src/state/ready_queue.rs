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
//!
//! Tasks of priority 0 that become ready in increasing graph order (a
//! graph of independent tasks, made ready as it came, then placed from
//! the front) go to a sorted run instead of the map: appended at its back,
//! taken from its front, 16 bytes an entry and no search. The B-tree's
//! insertion and removal were ~340 instructions a task, 7% of the
//! scheduler's for independent tasks. A task leaving the run from the
//! middle (released, stranded, placed past a full worker's) leaves a
//! hole, dropped when an end reaches it or when holes are half the run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use super::{QueueKey, TaskId};

/// A run entry whose task left the queue.
const HOLE: u32 = u32::MAX;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    /// Tasks of priority 0 queued after every other in the run, by graph
    /// order: `(order, task id or HOLE)`, orders increasing, ends live.
    run: VecDeque<(u64, u32)>,
    /// Holes in `run`.
    holes: usize,
    /// The other tasks of priority 0, by graph order.
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
            (Reverse(0), order) => {
                if self.run.back().is_none_or(|&(last, _)| order > last) {
                    self.run.push_back((order, t.0));
                } else {
                    self.plain.insert(order, t);
                }
            }
            _ => {
                self.prioritized.insert(k, t);
            }
        }
    }

    pub(crate) fn remove(&mut self, k: &QueueKey) -> Option<TaskId> {
        match *k {
            (Reverse(0), order) => match self.run_position(order) {
                Some(i) => Some(self.remove_from_run(i)),
                None => self.plain.remove(&order),
            },
            _ => self.prioritized.remove(k),
        }
    }

    pub(crate) fn get(&self, k: &QueueKey) -> Option<TaskId> {
        match *k {
            (Reverse(0), order) => match self.run_position(order) {
                Some(i) => Some(TaskId(self.run[i].1)),
                None => self.plain.get(&order).copied(),
            },
            _ => self.prioritized.get(k).copied(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.run.is_empty() && self.plain.is_empty() && self.prioritized.is_empty()
    }

    /// Gives back the run's memory once it is empty (see `maybe_shrink`).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.run.shrink_to_fit();
    }

    /// Where the live task of graph order `order` is in the run.
    fn run_position(&self, order: u64) -> Option<usize> {
        let &(first, _) = self.run.front()?;
        let i = if first == order {
            0
        } else {
            self.run.binary_search_by_key(&order, |&(o, _)| o).ok()?
        };
        (self.run[i].1 != HOLE).then_some(i)
    }

    fn remove_from_run(&mut self, i: usize) -> TaskId {
        let t = TaskId(self.run[i].1);
        if i == 0 {
            self.run.pop_front();
            while self.run.front().is_some_and(|&(_, x)| x == HOLE) {
                self.run.pop_front();
                self.holes -= 1;
            }
        } else if i + 1 == self.run.len() {
            self.run.pop_back();
            while self.run.back().is_some_and(|&(_, x)| x == HOLE) {
                self.run.pop_back();
                self.holes -= 1;
            }
        } else {
            self.run[i].1 = HOLE;
            self.holes += 1;
        }
        // Holes at most half the run: a walk past them costs at most what
        // the live tasks around them do.
        if self.holes * 2 > self.run.len() {
            self.run.retain(|&(_, x)| x != HOLE);
            self.holes = 0;
        }
        t
    }

    /// The first live run entry after graph order `order` (from the
    /// front when `None`).
    fn run_after(&self, order: Option<u64>) -> Option<(u64, TaskId)> {
        let from = order.map_or(0, |o| self.run.partition_point(|&(x, _)| x <= o));
        self.run
            .range(from..)
            .find(|&&(_, t)| t != HOLE)
            .map(|&(o, t)| (o, TaskId(t)))
    }

    /// The first task of priority 0 after graph order `order` (from the
    /// first when `None`), from the run and the map.
    fn plain_after(&self, order: Option<u64>) -> Option<(u64, TaskId)> {
        earliest(self.run_after(order), first_after(&self.plain, order))
    }

    /// The first entry in queue order after `cursor` (from the front when
    /// `None`).
    pub(crate) fn next_after(&self, cursor: Option<QueueKey>) -> Option<(QueueKey, TaskId)> {
        let prioritized = first_after(&self.prioritized, cursor);
        let plain = match cursor {
            // Before the plain ones (a higher priority), or none.
            None => self.plain_after(None),
            Some((Reverse(p), _)) if p > 0 => self.plain_after(None),
            Some((Reverse(0), order)) => self.plain_after(Some(order)),
            // After every plain one (a lower priority).
            Some(_) => None,
        }
        .map(|(order, t)| (plain_key(order), t));
        earliest(prioritized, plain)
    }

    /// Every entry, in queue order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (QueueKey, TaskId)> + '_ {
        let zero = plain_key(0);
        let before = self.prioritized.range(..zero).map(|(&k, &t)| (k, t));
        let mut run = self
            .run
            .iter()
            .filter(|&&(_, t)| t != HOLE)
            .map(|&(o, t)| (o, TaskId(t)))
            .peekable();
        let mut map = self.plain.iter().map(|(&o, &t)| (o, t)).peekable();
        // The run and the map merged by graph order.
        let plain = std::iter::from_fn(move || match (run.peek(), map.peek()) {
            (Some(a), Some(b)) if a.0 < b.0 => run.next(),
            (Some(_), None) => run.next(),
            _ => map.next(),
        })
        .map(|(o, t)| (plain_key(o), t));
        let after = self
            .prioritized
            .range((Bound::Excluded(zero), Bound::Unbounded))
            .map(|(&k, &t)| (k, t));
        before.chain(plain).chain(after)
    }
}

/// The first entry of `map` after `after` (from the first when `None`).
fn first_after<K: Ord + Copy>(map: &BTreeMap<K, TaskId>, after: Option<K>) -> Option<(K, TaskId)> {
    match after {
        None => map.iter().next(),
        Some(k) => map.range((Bound::Excluded(k), Bound::Unbounded)).next(),
    }
    .map(|(&k, &t)| (k, t))
}

/// The one of two candidates that comes first by its key.
fn earliest<K: Ord>(a: Option<(K, TaskId)>, b: Option<(K, TaskId)>) -> Option<(K, TaskId)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
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

    /// Any sequence of insertions (mostly in increasing order, as the run
    /// takes them, some below, some prioritized) and removals (mostly from
    /// the front, some from anywhere) reads the same as one ordered map.
    #[test]
    fn the_run_and_the_maps_read_as_one_ordered_map() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let op = prop_oneof![
            6 => (0u64..4).prop_map(|step| (0u8, step)),
            1 => (0u64..1_000).prop_map(|order| (1u8, order)),
            1 => (0u64..1_000).prop_map(|order| (2u8, order)),
            4 => Just((3u8, 0)),
            2 => (0u64..1_000).prop_map(|at| (4u8, at)),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 256,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(op, 0..300), |ops| {
                let mut q = ReadyQueue::default();
                let mut model: BTreeMap<QueueKey, TaskId> = BTreeMap::new();
                let mut next = 0u64;
                let mut ids = 0usize;
                for (kind, n) in ops {
                    let key = match kind {
                        // The next orders, as a graph made ready in order.
                        0 => {
                            next += n + 1;
                            Some((Reverse(0), next))
                        }
                        // Below the latest: into the map.
                        1 => Some((Reverse(0), n)),
                        2 => Some((Reverse(n as i64 % 7 - 3), n)),
                        _ => None,
                    };
                    match key {
                        Some(k) if !model.contains_key(&k) => {
                            let t = TaskId::new(ids);
                            ids += 1;
                            q.insert(k, t);
                            model.insert(k, t);
                        }
                        Some(_) => {}
                        None => {
                            let at = if kind == 3 { 0 } else { n as usize };
                            if let Some(&k) = model.keys().nth(at % model.len().max(1)) {
                                prop_assert_eq!(q.remove(&k), model.remove(&k));
                                prop_assert_eq!(q.get(&k), None);
                                prop_assert_eq!(q.remove(&k), None);
                            }
                        }
                    }
                    prop_assert!(q.holes * 2 <= q.run.len());
                    prop_assert_eq!(q.is_empty(), model.is_empty());
                    let all: Vec<_> = model.iter().map(|(&k, &t)| (k, t)).collect();
                    prop_assert_eq!(q.iter().collect::<Vec<_>>(), all.clone());
                    let mut walked = Vec::new();
                    let mut cursor = None;
                    while let Some((k, t)) = q.next_after(cursor) {
                        prop_assert_eq!(q.get(&k), Some(t));
                        walked.push((k, t));
                        cursor = Some(k);
                    }
                    prop_assert_eq!(walked, all);
                }
                Ok(())
            })
            .unwrap();
    }
}
