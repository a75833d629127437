//! [`KeyIndex`]: the task of each key, holding task ids and hashes only.
//!
//! A `HashMap<Key, TaskId>` kept a second copy of every key beside the
//! task's own (24 bytes in the table and a heap block of its own, ~90
//! bytes a task with the table's slack): a fifth of the scheduler's memory
//! for a 10M-task graph. This index holds 8-byte entries: the task's
//! 4-byte id and 32 bits of its key's hash.
//!
//! The hash bits in the entry spare two costs of probing through the task
//! table: a probe that meets another key's entry is ruled out without
//! reading that task's record and key (a cache miss each), and growing
//! the table moves entries without reading any key (growing a 10M-key
//! index by hashing every key again stalled the loop 36 s at load 20).
//!
//! Keys come from clients, so the hash is keyed with a random seed per
//! index (foldhash: a fast keyed hash where std's SipHash cost more than
//! the probing; HashDoS needs the seed, which never leaves the process).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use slab::Slab;

use super::{Task, TaskId};

/// One entry: a task and 32 bits of its key's hash.
#[derive(Debug, Clone, Copy)]
struct Entry {
    task: TaskId,
    hash: u32,
}

/// The table's hash of an entry's 32 bits: the table takes its bucket
/// from the low bits and a 7-bit tag from the top ones, and multiplying
/// by an odd constant spreads every bit of `hash` into the top ones.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    table: HashTable<Entry>,
    hasher: RandomState,
}

impl KeyIndex {
    /// The 32 bits of `key`'s hash an entry keeps.
    fn hash(&self, key: &[u8]) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    /// The task whose key is `key`.
    pub(crate) fn get(&self, tasks: &Slab<Task>, key: &str) -> Option<TaskId> {
        let key = key.as_bytes();
        let hash = self.hash(key);
        self.table
            .find(spread(hash), |e| {
                e.hash == hash && tasks[e.task].key_bytes() == key
            })
            .map(|e| e.task)
    }

    /// Indexes `t` (in `tasks`, its key not indexed yet) under its key.
    pub(crate) fn insert(&mut self, tasks: &Slab<Task>, t: TaskId) {
        let hash = self.hash(tasks[t].key_bytes());
        self.table
            .insert_unique(spread(hash), Entry { task: t, hash }, |e| spread(e.hash));
    }

    /// Unindexes `t`, whose key is `key` (the task may already be out of
    /// the table: only ids are compared).
    pub(crate) fn remove(&mut self, key: &str, t: TaskId) -> bool {
        let hash = self.hash(key.as_bytes());
        match self.table.find_entry(spread(hash), |e| e.task == t) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Room for `more` keys (growing reads no key: see the module docs).
    pub(crate) fn reserve(&mut self, more: usize) {
        self.table.reserve(more, |e| spread(e.hash));
    }

    /// Gives back the room beyond its keys.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.table.shrink_to_fit(|e| spread(e.hash));
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Every indexed task, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.table.iter().map(|e| e.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TaskState;
    use dask_core::Key;

    fn task(key: &str) -> Task {
        Task::new(Key::from(key), None, TaskState::Released, 0)
    }

    #[test]
    fn finds_every_key_and_forgets_removed_ones() {
        let mut tasks = Slab::new();
        let mut index = KeyIndex::default();
        let keys: Vec<String> = (0..5000).map(|i| format!("k-{i}")).collect();
        for k in &keys {
            let t = TaskId::new(tasks.insert(task(k)));
            index.insert(&tasks, t);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(index.get(&tasks, k), Some(TaskId::new(i)), "{k}");
        }
        assert_eq!(index.get(&tasks, "k-5000"), None);
        assert_eq!(index.get(&tasks, ""), None);
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            assert!(index.remove(k, TaskId::new(i)));
            assert!(!index.remove(k, TaskId::new(i)));
        }
        for (i, k) in keys.iter().enumerate() {
            let want = (i % 2 == 1).then(|| TaskId::new(i));
            assert_eq!(index.get(&tasks, k), want, "{k}");
        }
        assert_eq!(index.len(), 2500);
    }

    /// Growing and shrinking move entries by their kept hash bits: a
    /// table that read the keys again would index tasks that are gone
    /// here (and, at ten million keys, read ten million of them at once).
    #[test]
    fn growing_and_shrinking_read_no_key() {
        let mut tasks = Slab::new();
        let mut index = KeyIndex::default();
        for i in 0..1000 {
            let t = TaskId::new(tasks.insert(task(&format!("x-{i}"))));
            index.insert(&tasks, t);
        }
        tasks.clear();
        let capacity = index.capacity();
        index.reserve(100_000);
        assert!(index.capacity() >= 101_000 && index.capacity() > capacity);
        index.shrink_to_fit();
        assert!(index.capacity() < 100_000);
        assert_eq!(index.len(), 1000);
        // The entries survived both moves.
        assert!(index.remove("x-7", TaskId::new(7)));
        assert_eq!(index.len(), 999);
    }
}
