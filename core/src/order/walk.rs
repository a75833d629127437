//! The walk that places tasks one by one (the rules of the module docs).

use super::prepare::Prepared;
use super::UNPLACED;

/// Where the walk looks for its next goal (rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goals {
    /// The touched task that waits for the fewest dependencies to be
    /// loaded, else the next sink.
    Frontier,
    /// The sinks in submission order, each reached depth-first.
    Sinks,
}

/// Frontier and completable buckets: counts past this share the last one.
const BUCKETS: usize = 32;

/// One task's state during a walk (kept together: the walk visits tasks
/// in graph order, not memory order, so each visit costs one cache line).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The task's place, [`UNPLACED`] until it has one.
    place: u32,
    /// Dependencies not yet placed.
    waiting: u32,
    /// Dependencies neither placed nor made ready by a placement (one
    /// without dependencies counts until it is placed).
    unready: u32,
    /// Dependents not yet placed, and the xor of their positions (which
    /// names the last one when one is left).
    remaining: u32,
    remaining_xor: u32,
    /// Dependents neither placed nor ready heads of tails (rule 1c).
    blocking: u32,
    /// How many of its (sorted) dependencies, and of its dependents, are
    /// surely placed.
    child_cursor: u32,
    parent_cursor: u32,
    /// Counted as a ready head of tails in its dependencies' `blocking`.
    ready_tail: bool,
}

/// The sequential walk that gives each task its place.
pub(super) struct Walk<'g> {
    graph: &'g Prepared,
    slots: Vec<Slot>,
    next: u32,
    /// Results held now and at most (the pressure of the order so far).
    held: usize,
    peak: usize,
    /// Ready tasks that free a result (rule 1), to place now.
    eager: Vec<u32>,
    /// Held results whose every remaining dependent is a ready head of
    /// tails (rule 1c).
    drain: Vec<u32>,
    /// Tasks of several dependencies whose unplaced ones were all made
    /// ready by placements (rule 1b), by how many they waited for when
    /// pushed (a stale bucket is corrected when popped).
    completable: Buckets,
    /// Unplaced tasks that a placement touched, by unready dependencies
    /// (rule 2, frontier goals); an entry is stale once its task is
    /// placed or has moved buckets.
    frontier: Buckets,
    sink_cursor: usize,
}

/// The first task of `list` from `cursor` on that is not placed; moves
/// `cursor` past the placed ones (they stay placed).
fn first_unplaced(slots: &[Slot], list: &[u32], cursor: &mut u32) -> Option<u32> {
    let mut k = *cursor as usize;
    while k < list.len() && slots[list[k] as usize].place != UNPLACED {
        k += 1;
    }
    *cursor = k as u32;
    list.get(k).copied()
}

/// Task lists by a small count, most recent last in each.
struct Buckets {
    lists: Vec<Vec<u32>>,
    /// No list below this one holds anything.
    lowest: usize,
}

impl Buckets {
    fn new() -> Buckets {
        Buckets {
            lists: vec![Vec::new(); BUCKETS],
            lowest: BUCKETS,
        }
    }

    fn push(&mut self, count: u32, task: u32) {
        let b = (count as usize).min(BUCKETS - 1);
        self.lists[b].push(task);
        self.lowest = self.lowest.min(b);
    }

    /// The most recent task of the lowest list from `from` up whose count
    /// (by `current`) still matches its list; stale entries are dropped.
    fn pop(&mut self, from: usize, current: impl Fn(u32) -> Option<u32>) -> Option<u32> {
        let mut b = self.lowest.max(from);
        while b < BUCKETS {
            match self.lists[b].pop() {
                None => {
                    if b == self.lowest {
                        self.lowest += 1;
                    }
                    b += 1;
                }
                Some(t) => match current(t) {
                    Some(c) if (c as usize).min(BUCKETS - 1) == b => return Some(t),
                    Some(c) if ((c as usize).min(BUCKETS - 1)) < b => {
                        // Closer than when pushed: try it where it is now.
                        self.push(c, t);
                        b = self.lowest.max(from);
                    }
                    _ => {}
                },
            }
        }
        None
    }
}

impl<'g> Walk<'g> {
    pub(super) fn new(graph: &'g Prepared) -> Walk<'g> {
        let n = graph.children.start.len() - 1;
        let slots = (0..n as u32)
            .map(|i| {
                let deps = graph.children.of(i).len() as u32;
                let parents = graph.parents.of(i);
                Slot {
                    place: UNPLACED,
                    waiting: deps,
                    unready: deps,
                    remaining: parents.len() as u32,
                    remaining_xor: parents.iter().fold(0, |x, &p| x ^ p),
                    blocking: parents.len() as u32,
                    child_cursor: 0,
                    parent_cursor: 0,
                    ready_tail: false,
                }
            })
            .collect();
        Walk {
            graph,
            slots,
            next: 0,
            held: 0,
            peak: 0,
            eager: Vec::new(),
            drain: Vec::new(),
            completable: Buckets::new(),
            frontier: Buckets::new(),
            sink_cursor: 0,
        }
    }

    /// Places every task; returns the places and the peak pressure.
    pub(super) fn run(mut self, goals: Goals) -> (Vec<u32>, usize) {
        let n = self.slots.len() as u32;
        match goals {
            Goals::Frontier => {
                while self.next < n {
                    let goal = self.goal();
                    let task = self.descend(goal);
                    self.place(task);
                    self.settle();
                }
            }
            Goals::Sinks => {
                let mut path: Vec<u32> = Vec::new();
                while self.next < n {
                    let Some(&task) = path.last() else {
                        path.push(self.next_sink());
                        continue;
                    };
                    if self.placed(task) {
                        path.pop();
                        continue;
                    }
                    match self.first_unplaced_child(task) {
                        Some(child) => path.push(child),
                        None => {
                            path.pop();
                            self.place(task);
                            self.settle();
                        }
                    }
                }
            }
        }
        let peak = self.peak;
        (self.slots.into_iter().map(|s| s.place).collect(), peak)
    }

    fn placed(&self, i: u32) -> bool {
        self.slots[i as usize].place != UNPLACED
    }

    /// Places what rules 1, 1c and 1b ask for, until they ask for nothing.
    fn settle(&mut self) {
        loop {
            if let Some(t) = self.eager.pop() {
                if !self.placed(t) {
                    self.place(t);
                }
                continue;
            }
            if let Some(&x) = self.drain.last() {
                // One tail at a time: rule 1 follows it to its sinks
                // before the next starts.
                match self.first_unplaced_parent(x) {
                    Some(u) => self.place(u),
                    None => {
                        self.drain.pop();
                    }
                }
                continue;
            }
            let slots = &self.slots;
            let next = self.completable.pop(0, |t| {
                let s = &slots[t as usize];
                (s.place == UNPLACED).then_some(s.waiting)
            });
            let Some(r) = next else {
                return;
            };
            // Ready already (nothing to complete it with): rules 1 and 2
            // decide when it runs.
            if self.slots[r as usize].waiting == 0 {
                continue;
            }
            while let Some(c) = self.first_unplaced_child(r) {
                self.place(c);
            }
            self.place(r);
        }
    }

    /// Rule 2, frontier: the touched task with the fewest unready
    /// dependencies (the most recently touched among equals), else the
    /// next sink.
    fn goal(&mut self) -> u32 {
        let slots = &self.slots;
        let touched = self.frontier.pop(1, |t| {
            let s = &slots[t as usize];
            (s.place == UNPLACED).then_some(s.unready)
        });
        match touched {
            Some(t) => t,
            None => self.next_sink(),
        }
    }

    /// The first unplaced task without dependents, in submission order.
    fn next_sink(&mut self) -> u32 {
        let sinks = &self.graph.sinks;
        while self.slots[sinks[self.sink_cursor] as usize].place != UNPLACED {
            self.sink_cursor += 1;
        }
        sinks[self.sink_cursor]
    }

    /// The first of `task`'s dependencies, in their sorted order, that is
    /// not placed.
    fn first_unplaced_child(&mut self, task: u32) -> Option<u32> {
        let mut cursor = self.slots[task as usize].child_cursor;
        let found = first_unplaced(&self.slots, self.graph.children.of(task), &mut cursor);
        self.slots[task as usize].child_cursor = cursor;
        found
    }

    /// The first of `task`'s dependents that is not placed.
    fn first_unplaced_parent(&mut self, task: u32) -> Option<u32> {
        let mut cursor = self.slots[task as usize].parent_cursor;
        let found = first_unplaced(&self.slots, self.graph.parents.of(task), &mut cursor);
        self.slots[task as usize].parent_cursor = cursor;
        found
    }

    /// Rule 3: from `goal` down its first unplaced dependencies to a task
    /// that is ready.
    fn descend(&mut self, goal: u32) -> u32 {
        let mut task = goal;
        while let Some(child) = self.first_unplaced_child(task) {
            task = child;
        }
        task
    }

    /// Gives `task` (ready) the next place, counts the pressure, and notes
    /// what the rules now ask for.
    fn place(&mut self, task: u32) {
        let graph = self.graph;
        self.peak = self.peak.max(self.held);
        let t = task as usize;
        self.slots[t].place = self.next;
        self.next += 1;
        let counted = self.slots[t].ready_tail;
        let children = graph.children.of(task);
        for &x in children {
            if !counted {
                self.unblock(x);
            }
            let s = &mut self.slots[x as usize];
            s.remaining -= 1;
            s.remaining_xor ^= task;
            match s.remaining {
                0 => self.held -= 1,
                1 => {
                    // Rule 1: its last consumer frees it once ready.
                    let last = s.remaining_xor;
                    if self.slots[last as usize].waiting == 0 && !self.placed(last) {
                        self.eager.push(last);
                    }
                }
                _ => {}
            }
        }
        let parents = graph.parents.of(task);
        if !parents.is_empty() {
            self.held += 1;
        }
        let is_root = children.is_empty();
        for &p in parents {
            let s = &mut self.slots[p as usize];
            s.waiting -= 1;
            if is_root {
                s.unready -= 1;
            }
            let (waiting, unready) = (s.waiting, s.unready);
            if waiting == 0 {
                self.made_ready(p);
            } else if unready > 0 {
                self.frontier.push(unready, p);
            }
            if is_root && unready == 0 {
                self.completable.push(waiting, p);
            }
        }
    }

    /// `p`'s last dependency was placed.
    fn made_ready(&mut self, p: u32) {
        let graph = self.graph;
        if self.frees(p) {
            self.eager.push(p);
        }
        if graph.tail_head[p as usize] {
            self.slots[p as usize].ready_tail = true;
            for &x in graph.children.of(p) {
                self.unblock(x);
            }
        }
        // One fewer unready dependency for its dependents (rule 1b).
        for &q in graph.parents.of(p) {
            let s = &mut self.slots[q as usize];
            s.unready -= 1;
            let (waiting, unready) = (s.waiting, s.unready);
            if unready == 0 {
                if graph.children.of(q).len() >= 2 {
                    self.completable.push(waiting, q);
                }
            } else {
                self.frontier.push(unready, q);
            }
        }
    }

    /// One fewer dependent of `x` stands in the way of rule 1c.
    fn unblock(&mut self, x: u32) {
        let s = &mut self.slots[x as usize];
        s.blocking -= 1;
        if s.blocking == 0 && s.place != UNPLACED && s.remaining > 0 {
            self.drain.push(x);
        }
    }

    /// Whether running ready task `t` now holds no more results than
    /// before: it has no dependents, or it is the last consumer of one.
    fn frees(&self, t: u32) -> bool {
        self.graph.parents.of(t).is_empty()
            || self
                .graph
                .children
                .of(t)
                .iter()
                .any(|&x| self.slots[x as usize].remaining == 1)
    }
}
