//! [`TaskSet`]: a set of task ids that is cheap when small.
//!
//! Most tasks have one or two dependents, and a `BTreeSet` costs a node
//! allocation (and pointer chasing) even for one element; a few tasks
//! (scattered data, the inputs of an all-to-all) have thousands, where a
//! list would make each removal a scan. So: up to three ids in place in
//! the task record (most tasks of a tree or a chain have one dependent: no
//! allocation, which was 48 bytes a task with the allocator's header), a
//! list on the heap up to [`FEW_MAX`] elements, a `BTreeSet` beyond; 16
//! bytes in the record either way. Iteration order is deterministic
//! (insertion order while few, id order once many), so scheduler decisions
//! and tests stay reproducible.

use std::collections::BTreeSet;

use super::small_list::SmallList;
use super::TaskId;

/// Most elements kept in a plain list.
const FEW_MAX: usize = 32;

/// A set of task ids; see the module docs.
#[derive(Debug, Clone)]
pub(crate) enum TaskSet {
    /// Distinct ids in insertion order, at most [`FEW_MAX`].
    Few(SmallList<TaskId, 3>),
    /// More than [`FEW_MAX`] ids. Boxed: a `BTreeSet` here would make
    /// every set 32 bytes.
    #[allow(clippy::box_collection)]
    Many(Box<BTreeSet<TaskId>>),
}

impl Default for TaskSet {
    fn default() -> Self {
        TaskSet::Few(SmallList::default())
    }
}

impl TaskSet {
    /// Adds `t`; returns whether it was new.
    pub(crate) fn insert(&mut self, t: TaskId) -> bool {
        match self {
            TaskSet::Few(v) => {
                if v.contains(&t) {
                    return false;
                }
                v.push(t);
                if v.len() > FEW_MAX {
                    *self = TaskSet::Many(Box::new(v.iter().copied().collect()));
                }
                true
            }
            TaskSet::Many(s) => s.insert(t),
        }
    }

    /// Removes `t`; returns whether it was there.
    pub(crate) fn remove(&mut self, t: TaskId) -> bool {
        match self {
            TaskSet::Few(v) => match v.iter().position(|&x| x == t) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            TaskSet::Many(s) => s.remove(&t),
        }
    }

    pub(crate) fn contains(&self, t: TaskId) -> bool {
        match self {
            TaskSet::Few(v) => v.contains(&t),
            TaskSet::Many(s) => s.contains(&t),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            TaskSet::Few(v) => v.is_empty(),
            TaskSet::Many(s) => s.is_empty(),
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_> {
        match self {
            TaskSet::Few(v) => Iter::Few(v.iter()),
            TaskSet::Many(s) => Iter::Many(s.iter()),
        }
    }

    /// The ids, copied out (for loops that change the tasks).
    pub(crate) fn to_vec(&self) -> Vec<TaskId> {
        self.iter().collect()
    }
}

/// Iterator over a [`TaskSet`].
pub(crate) enum Iter<'a> {
    Few(std::slice::Iter<'a, TaskId>),
    Many(std::collections::btree_set::Iter<'a, TaskId>),
}

impl Iterator for Iter<'_> {
    type Item = TaskId;

    fn next(&mut self) -> Option<TaskId> {
        match self {
            Iter::Few(i) => i.next().copied(),
            Iter::Many(i) => i.next().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_set_across_the_switch_to_a_tree() {
        let mut s = TaskSet::default();
        let mut model = BTreeSet::new();
        // Deterministic pseudo-random inserts and removes over 0..100.
        let mut x: u64 = 7;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = TaskId((x >> 33) as u32 % 100);
            if (x >> 20) & 3 == 0 {
                assert_eq!(s.remove(t), model.remove(&t));
            } else {
                assert_eq!(s.insert(t), model.insert(t));
            }
            assert_eq!(s.is_empty(), model.is_empty());
            assert_eq!(s.contains(t), model.contains(&t));
            let mut got = s.to_vec();
            got.sort();
            assert_eq!(got, model.iter().copied().collect::<Vec<_>>());
        }
        assert!(matches!(s, TaskSet::Many(_)));
    }

    #[test]
    fn few_keeps_insertion_order() {
        let mut s = TaskSet::default();
        for i in [5, 1, 3] {
            s.insert(TaskId(i));
        }
        s.remove(TaskId(1));
        assert_eq!(s.to_vec(), vec![TaskId(5), TaskId(3)]);
    }

    #[test]
    fn a_few_ids_are_held_in_place() {
        let mut s = TaskSet::default();
        s.insert(TaskId(4));
        assert!(matches!(&s, TaskSet::Few(SmallList::Inline { len: 1, .. })));
        assert!(!s.insert(TaskId(4)));
        s.insert(TaskId(2));
        assert_eq!(s.to_vec(), vec![TaskId(4), TaskId(2)]);
        assert!(s.remove(TaskId(4)) && s.remove(TaskId(2)));
        assert!(s.is_empty());
        s.insert(TaskId(9));
        assert_eq!(s.to_vec(), vec![TaskId(9)]);
        assert!(!s.remove(TaskId(1)) && s.remove(TaskId(9)) && s.is_empty());
    }
}
