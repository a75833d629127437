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
//!
//! The table is its entries alone, probed in a line (open addressing,
//! linear probing, at most 4/5 full): a look-up reads one slot, nearly
//! always in the first line it touches, then the task. `hashbrown`'s table
//! keeps a control byte per entry apart from the entries, so each look-up
//! of a large index missed the cache twice before reaching the task
//! (`KeyIndex::get` was 17% of the scheduler's samples in the 1M-task tree,
//! most of it the task-finished look-ups). Removal shifts the entries after
//! the removed one back (no tombstones), so probes stay short.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use slab::Slab;

use super::{Task, TaskId};

/// One slot: a task and 32 bits of its key's hash, or free.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The task's id, or [`FREE`].
    task: u32,
    hash: u32,
}

/// A free slot's `task` (no task id reaches it: ids count the tasks held).
const FREE: u32 = u32::MAX;

const FREE_SLOT: Slot = Slot {
    task: FREE,
    hash: 0,
};

/// Spreads `hash` over 64 bits: the slot is taken from the top bits, and
/// multiplying by an odd constant carries every bit of `hash` into them.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    /// A power of two of slots (or none).
    slots: Vec<Slot>,
    /// Slots in use.
    len: usize,
    hasher: RandomState,
}

impl KeyIndex {
    /// The 32 bits of `key`'s hash an entry keeps.
    pub(crate) fn hash(&self, key: &[u8]) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    /// The slot where probing for `hash` starts (`slots` is not empty).
    fn home(&self, hash: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // `bits` is at least 1 (see `grow_to`): the shift is below 64.
        (spread(hash) >> (64 - bits)) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Most entries `slots` slots hold (4/5 of them).
    fn room(slots: usize) -> usize {
        slots / 5 * 4
    }

    /// The task whose key is `key`.
    pub(crate) fn get(&self, tasks: &Slab<Task>, key: &str) -> Option<TaskId> {
        self.get_hashed(tasks, key, self.hash(key.as_bytes()))
    }

    /// [`KeyIndex::get`] of a key whose [`KeyIndex::hash`] is `hash`.
    pub(crate) fn get_hashed(&self, tasks: &Slab<Task>, key: &str, hash: u32) -> Option<TaskId> {
        if self.len == 0 {
            return None;
        }
        let key = key.as_bytes();
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot.task == FREE {
                return None;
            }
            if slot.hash == hash {
                let t = TaskId(slot.task);
                if tasks[t].key_bytes() == key {
                    return Some(t);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Indexes `t` (in `tasks`, its key not indexed yet) under its key.
    pub(crate) fn insert(&mut self, tasks: &Slab<Task>, t: TaskId) {
        assert!(t.0 != FREE, "fewer than 2^32 - 1 tasks");
        self.reserve(1);
        let hash = self.hash(tasks[t].key_bytes());
        self.put(Slot { task: t.0, hash });
        self.len += 1;
    }

    /// Puts `slot` in the first free slot from its home (there is one).
    fn put(&mut self, slot: Slot) {
        let mask = self.mask();
        let mut i = self.home(slot.hash);
        while self.slots[i].task != FREE {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    /// Unindexes `t`, whose key is `key` (the task may already be out of
    /// the table: only ids are compared).
    pub(crate) fn remove(&mut self, key: &str, t: TaskId) -> bool {
        if self.len == 0 {
            return false;
        }
        let hash = self.hash(key.as_bytes());
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot.task == FREE {
                return false;
            }
            if slot.task == t.0 {
                break;
            }
            i = (i + 1) & mask;
        }
        // Shift back each later entry of the run that may sit at `i`: one
        // whose home is not cyclically in (i, j].
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot.task == FREE {
                break;
            }
            let home = self.home(slot.hash);
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = slot;
                i = j;
            }
        }
        self.slots[i] = FREE_SLOT;
        self.len -= 1;
        true
    }

    /// Room for `more` keys (growing reads no key: see the module docs).
    pub(crate) fn reserve(&mut self, more: usize) {
        let needed = self.len.saturating_add(more);
        if needed <= Self::room(self.slots.len()) {
            return;
        }
        let mut slots = self.slots.len().max(8);
        while Self::room(slots) < needed {
            slots = slots
                .checked_mul(2)
                .expect("a key index of fewer than 2^63 slots");
        }
        self.grow_to(slots);
    }

    /// Moves every entry into a table of `slots` slots (a power of two of
    /// at least 2, with room for them all), by their kept hash bits.
    fn grow_to(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![FREE_SLOT; slots]);
        for slot in old.into_iter().filter(|s| s.task != FREE) {
            self.put(slot);
        }
    }

    /// Gives back the room beyond its keys.
    pub(crate) fn shrink_to_fit(&mut self) {
        if self.len == 0 {
            self.slots = Vec::new();
            return;
        }
        let mut slots = 8;
        while Self::room(slots) < self.len {
            slots *= 2;
        }
        if slots < self.slots.len() {
            self.grow_to(slots);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        Self::room(self.slots.len())
    }

    /// Every indexed task, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.slots
            .iter()
            .filter(|s| s.task != FREE)
            .map(|s| TaskId(s.task))
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

    /// Removals shift later entries of a run back (wrapping past the
    /// table's end too): after any mix of inserts and removals, at up to
    /// 4/5 full, every key left is found and no removed one is.
    #[test]
    fn removals_keep_every_run_reachable() {
        let mut tasks = Slab::new();
        let mut index = KeyIndex::default();
        let mut live: Vec<(String, TaskId)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..20_000 {
            if live.len() < 64 || next() % 3 != 0 {
                let key = format!("k-{step}");
                let t = TaskId::new(tasks.insert(task(&key)));
                index.insert(&tasks, t);
                live.push((key, t));
            } else {
                let (key, t) = live.swap_remove(next() as usize % live.len());
                assert!(index.remove(&key, t), "{key}");
                tasks.remove(t.ix());
                assert_eq!(index.get(&tasks, &key), None, "{key}");
            }
            if step % 997 == 0 {
                for (key, t) in &live {
                    assert_eq!(index.get(&tasks, key), Some(*t), "{key} at step {step}");
                }
            }
        }
        assert_eq!(index.len(), live.len());
        assert!(index.len() <= index.capacity());
        for (key, t) in &live {
            assert_eq!(index.get(&tasks, key), Some(*t), "{key}");
        }
        let mut all: Vec<TaskId> = index.iter().collect();
        all.sort();
        let mut want: Vec<TaskId> = live.iter().map(|(_, t)| *t).collect();
        want.sort();
        assert_eq!(all, want);
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
