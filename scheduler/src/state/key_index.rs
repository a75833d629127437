//! [`KeyIndex`]: the task of each key, holding task ids only.
//!
//! A `HashMap<Key, TaskId>` kept a second copy of every key beside the
//! task's own (24 bytes in the table and a heap block of its own, ~90
//! bytes a task with the table's slack): a fifth of the scheduler's memory
//! for a 10M-task graph. This index holds 8-byte ids and compares the
//! probed ids' keys in the task table. Hashing is std's (SipHash with a
//! random key per process): keys come from clients.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use slab::Slab;

use super::{Task, TaskId};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    table: HashTable<TaskId>,
    hasher: RandomState,
}

impl KeyIndex {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The task whose key is `key`.
    pub(crate) fn get(&self, tasks: &Slab<Task>, key: &str) -> Option<TaskId> {
        self.table
            .find(self.hash(key), |t| tasks[t].key() == key)
            .copied()
    }

    /// Indexes `t` (in `tasks`, its key not indexed yet) under its key.
    pub(crate) fn insert(&mut self, tasks: &Slab<Task>, t: TaskId) {
        let hash = self.hash(tasks[t].key());
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, t, |x| hasher.hash_one(tasks[x].key()));
    }

    /// Unindexes `t`, whose key is `key` (the task may already be out of
    /// the table: only ids are compared).
    pub(crate) fn remove(&mut self, key: &str, t: TaskId) -> bool {
        match self.table.find_entry(self.hash(key), |&x| x == t) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Room for `more` keys.
    pub(crate) fn reserve(&mut self, tasks: &Slab<Task>, more: usize) {
        let hasher = &self.hasher;
        self.table
            .reserve(more, |x| hasher.hash_one(tasks[x].key()));
    }

    /// Gives back the room beyond its keys.
    pub(crate) fn shrink_to_fit(&mut self, tasks: &Slab<Task>) {
        let hasher = &self.hasher;
        self.table
            .shrink_to_fit(|x| hasher.hash_one(tasks[x].key()));
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
        self.table.iter().copied()
    }
}
