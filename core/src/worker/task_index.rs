//! The worker's tasks by key: slots of the task slab in a hash table that
//! hashes and compares the key kept in the task itself, so a task's key is
//! held once (a `HashMap<Key, usize>` beside the slab cost a key copy per
//! task, ~3% of a short task's work).

use std::hash::BuildHasher;

use slab::Slab;

use super::execute::Task;

/// Slots of `tasks` by their task's key; every call is given the slab
/// the slots are in, whose tasks keep their keys while indexed.
#[derive(Default)]
pub(super) struct TaskIndex {
    slots: hashbrown::HashTable<usize>,
    hasher: foldhash::fast::RandomState,
}

impl TaskIndex {
    /// The slot of the task under `key`.
    pub(super) fn get(&self, tasks: &Slab<Task>, key: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.slots
            .find(hash, |&slot| {
                tasks.get(slot).is_some_and(|t| t.key.as_str() == key)
            })
            .copied()
    }

    /// Indexes the task in `slot`, whose key is not indexed yet.
    pub(super) fn insert(&mut self, tasks: &Slab<Task>, slot: usize) {
        let TaskIndex { slots, hasher } = self;
        let hash = hasher.hash_one(tasks[slot].key.as_str());
        slots.insert_unique(hash, slot, |&other| {
            tasks
                .get(other)
                .map_or(0, |t| hasher.hash_one(t.key.as_str()))
        });
    }

    /// Forgets the task that was in `slot` under `key` (taken out of the
    /// slab already).
    pub(super) fn remove(&mut self, key: &str, slot: usize) {
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.slots.find_entry(hash, |&other| other == slot) {
            entry.remove();
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
    }
}
