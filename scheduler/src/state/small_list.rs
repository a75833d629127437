//! [`SmallList`]: a short list of ids held in place in the task record.
//!
//! A task's dependencies, holders and wanting clients are a few ids each
//! (a tree task has two dependencies and one holder, a leaf none): a
//! `Vec` is 24 bytes in the record plus a heap block of its own (~32-48
//! bytes with the allocator's header) as soon as it holds one. This list
//! holds up to `N` ids in 16 bytes with no allocation, and moves to the
//! heap beyond (a boxed `Vec`, so the record stays 16 bytes).

use std::ops::{Deref, DerefMut};

use super::{ConnId, TaskId, WorkerIdx};

/// An id a [`SmallList`] holds, with a value to fill its unused places.
pub(crate) trait Id: Copy {
    const FILL: Self;
}

impl Id for TaskId {
    const FILL: Self = TaskId(0);
}

impl Id for WorkerIdx {
    const FILL: Self = WorkerIdx(0);
}

impl Id for ConnId {
    const FILL: Self = ConnId(0);
}

#[cfg(test)]
impl Id for u32 {
    const FILL: Self = 0;
}

#[cfg(test)]
impl Id for u64 {
    const FILL: Self = 0;
}

/// A list of up to `N` ids in place, more on the heap; reads as a slice.
#[derive(Clone)]
pub(crate) enum SmallList<T: Id, const N: usize> {
    Inline {
        len: u8,
        items: [T; N],
    },
    // Boxed: a `Vec` here would make every list 32 bytes.
    #[allow(clippy::box_collection)]
    Heap(Box<Vec<T>>),
}

impl<T: Id, const N: usize> Default for SmallList<T, N> {
    fn default() -> Self {
        SmallList::Inline {
            len: 0,
            items: [T::FILL; N],
        }
    }
}

impl<T: Id + std::fmt::Debug, const N: usize> std::fmt::Debug for SmallList<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Id + PartialEq, const N: usize> PartialEq for SmallList<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Id, const N: usize> SmallList<T, N> {
    /// The list of `items` (in place when they fit).
    pub(crate) fn from_vec(mut items: Vec<T>) -> Self {
        if items.len() <= N {
            let mut list = Self::default();
            for x in items {
                list.push(x);
            }
            return list;
        }
        items.shrink_to_fit();
        SmallList::Heap(Box::new(items))
    }

    pub(crate) fn push(&mut self, x: T) {
        match self {
            SmallList::Inline { len, items } if (*len as usize) < N => {
                items[*len as usize] = x;
                *len += 1;
            }
            SmallList::Inline { items, .. } => {
                let mut v = Vec::with_capacity(N * 2);
                v.extend_from_slice(&items[..]);
                v.push(x);
                *self = SmallList::Heap(Box::new(v));
            }
            SmallList::Heap(v) => v.push(x),
        }
    }

    /// Removes the element at `i`, keeping the order of the others.
    pub(crate) fn remove(&mut self, i: usize) -> T {
        match self {
            SmallList::Inline { len, items } => {
                let x = items[..*len as usize][i];
                items.copy_within(i + 1..*len as usize, i);
                *len -= 1;
                x
            }
            SmallList::Heap(v) => {
                let x = v.remove(i);
                if v.is_empty() {
                    *self = Self::default();
                }
                x
            }
        }
    }

    /// Keeps the elements for which `keep` is true, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match self {
            SmallList::Inline { len, items } => {
                let mut kept = 0;
                for i in 0..*len as usize {
                    if keep(&items[i]) {
                        items[kept] = items[i];
                        kept += 1;
                    }
                }
                *len = kept as u8;
            }
            SmallList::Heap(v) => {
                v.retain(keep);
                if v.is_empty() {
                    *self = Self::default();
                }
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

impl<T: Id, const N: usize> FromIterator<T> for SmallList<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let items = items.into_iter();
        if items.size_hint().0 > N {
            return Self::from_vec(items.collect());
        }
        let mut list = Self::default();
        for x in items {
            list.push(x);
        }
        list
    }
}

impl<T: Id, const N: usize> Deref for SmallList<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            SmallList::Inline { len, items } => &items[..*len as usize],
            SmallList::Heap(v) => v,
        }
    }
}

impl<T: Id, const N: usize> DerefMut for SmallList<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            SmallList::Inline { len, items } => &mut items[..*len as usize],
            SmallList::Heap(v) => v,
        }
    }
}

impl<'a, T: Id, const N: usize> IntoIterator for &'a SmallList<T, N> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The elements of a [`SmallList`], by value.
pub(crate) struct IntoIter<T: Id, const N: usize> {
    list: SmallList<T, N>,
    next: usize,
}

impl<T: Id, const N: usize> Iterator for IntoIter<T, N> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let x = self.list.get(self.next).copied();
        self.next += 1;
        x
    }
}

impl<T: Id, const N: usize> IntoIterator for SmallList<T, N> {
    type Item = T;
    type IntoIter = IntoIter<T, N>;

    fn into_iter(self) -> IntoIter<T, N> {
        IntoIter {
            list: self,
            next: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_vec_in_place_and_on_the_heap() {
        let mut list: SmallList<u32, 3> = SmallList::default();
        let mut model: Vec<u32> = Vec::new();
        // Deterministic pseudo-random pushes, removes and retains.
        let mut x: u64 = 11;
        for _ in 0..4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 40) as u32 % 50;
            match (x >> 20) % 8 {
                0 if !model.is_empty() => {
                    let i = v as usize % model.len();
                    assert_eq!(list.remove(i), model.remove(i));
                }
                1 => {
                    list.retain(|&y| y % 7 != v % 7);
                    model.retain(|&y| y % 7 != v % 7);
                }
                2 if v == 0 => {
                    list.clear();
                    model.clear();
                }
                _ => {
                    list.push(v);
                    model.push(v);
                }
            }
            assert_eq!(&list[..], &model[..]);
            assert_eq!(list.clone().into_iter().collect::<Vec<_>>(), model);
        }
        assert!(matches!(
            SmallList::<u32, 3>::from_vec(vec![1, 2]),
            SmallList::Inline { len: 2, .. }
        ));
        assert!(matches!(
            SmallList::<u32, 3>::from_vec(vec![1, 2, 3, 4]),
            SmallList::Heap(_)
        ));
        let collected: SmallList<u32, 3> = (0..3).collect();
        assert!(matches!(collected, SmallList::Inline { len: 3, .. }));
        let collected: SmallList<u32, 3> = (0..5).collect();
        assert_eq!(&collected[..], &[0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_list_of_a_few_ids_is_16_bytes() {
        assert_eq!(std::mem::size_of::<SmallList<u32, 3>>(), 16);
        assert_eq!(std::mem::size_of::<SmallList<u64, 1>>(), 16);
    }
}
