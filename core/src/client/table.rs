//! The table of held keys: each key's entry by name.
//!
//! A hash map from the name to a slot, the entries in a slab beside it: a
//! graph's entries lie in the order they were wanted, and the scheduler's
//! events come back in about that order. With the entries in the map's own
//! buckets (256 bytes each, spread by the hash), each `key-finished` was a
//! cache miss or two into tens of MB (100k keys: 33 MB of buckets, a third
//! of the I/O thread's time in `key_finished`); the map's buckets are now
//! 32 bytes.

use std::borrow::Borrow;
use std::hash::Hash;

use slab::Slab;

use super::KeyEntry;
use crate::wire::Key;

#[derive(Debug, Default)]
pub(super) struct KeyTable {
    slots: foldhash::HashMap<Key, usize>,
    entries: Slab<KeyEntry>,
}

impl KeyTable {
    pub(super) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&KeyEntry>
    where
        Key: Borrow<Q>,
    {
        self.entries.get(*self.slots.get(key)?)
    }

    pub(super) fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut KeyEntry>
    where
        Key: Borrow<Q>,
    {
        self.entries.get_mut(*self.slots.get(key)?)
    }

    pub(super) fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        Key: Borrow<Q>,
    {
        self.slots.contains_key(key)
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Room for `additional` more keys without growing.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.entries.reserve(additional);
    }

    /// Adds a key not held yet (a held one's entry is replaced).
    pub(super) fn insert(&mut self, key: Key, entry: KeyEntry) {
        let slot = self.entries.insert(entry);
        if let Some(old) = self.slots.insert(key, slot) {
            self.entries.try_remove(old);
        }
    }

    pub(super) fn remove_entry<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(Key, KeyEntry)>
    where
        Key: Borrow<Q>,
    {
        let (key, slot) = self.slots.remove_entry(key)?;
        Some((key, self.entries.try_remove(slot)?))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &KeyEntry)> {
        self.slots
            .iter()
            .filter_map(|(k, &slot)| Some((k, self.entries.get(slot)?)))
    }
}
