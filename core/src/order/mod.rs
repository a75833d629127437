//! Graph order: a static priority for every task of a graph, computed once
//! in linear time, that keeps few results in memory when the graph runs in
//! that order. Used by the in-process scheduler (`dask-inprocess`) and by
//! the distributed scheduler's placement. The spirit is `dask.order`'s
//! ("small goals, big steps"); the rules are ours.
//!
//! [`Dag::order`] walks the graph as a sequential run would, numbering
//! tasks in the order it runs them, and counts the results held on the
//! way. After each placement these rules run until none applies:
//!
//! - **1. Free at once.** A ready task that is the last consumer of a held
//!   result (or has no dependents) runs now: it holds one result and drops
//!   at least one, so running it later could only hold more in between.
//! - **1b. Complete a reduction.** A task of several dependencies whose
//!   missing ones were all made ready by earlier placements (not roots
//!   still to load) runs now with them, the one waiting for the fewest
//!   first. Reductions over shared inputs so advance together (an
//!   xarray-like `mean` of several variables, dask/dask#10384).
//! - **1c. Finish the tails.** A held result whose remaining dependents
//!   are all ready and lead only to sinks through single-dependency tasks
//!   has those run now, one tail at a time: each holds at most one more
//!   result for a moment, and the held one goes.
//!
//! Otherwise the walk picks a **goal** and descends from it, always into
//! the first unplaced dependency, to a ready task, and places that.
//! Dependencies are tried in a static order: the one whose computation
//! alone holds the most results first (Sethi and Ullman's rule, the least
//! peak for a tree of unit results), then the one with more tasks behind
//! it. Two ways to pick goals give two orders, and the one with the lower
//! peak is kept:
//!
//! - **Frontier** (small goals): among the tasks a placement touched, the
//!   one with the fewest dependencies still to load (neither placed nor
//!   made ready), the most recently touched among equals; when none is
//!   touched, the next sink. Grids and overlapping windows grow as a
//!   compact front rather than a snake, whatever the submission order.
//! - **Sinks** (big steps): each task without dependents in submission
//!   order, reached depth first. Best where the submission order already
//!   follows the data (random graphs built front to back).
//!
//! Every task and edge is visited a bounded number of times per walk (the
//! walks advance cursors that never go back; bucket queues by small
//! counts replace heaps), and sorting each task's dependencies adds
//! `O(d log d)` per task of `d` dependencies. `bench/order_pressure.py`
//! compares the peaks with `dask.order`'s on the same graphs.
//!
//! [`Dag::peak_pressure`] measures an order the way
//! `dask.order.diagnostics` measures "pressure": the most results held at
//! once in a sequential run, counting a result from its task until its
//! last dependent ran, and never counting results of tasks without
//! dependents.

use std::fmt;

mod prepare;
#[cfg(test)]
mod tests;
mod walk;

use prepare::{unique_lists, Prepared};
use walk::{Goals, Walk};

/// A task graph by position: task `i` depends on the tasks `deps(i)`.
/// Positions are `u32`, so a graph holds fewer than 2^32 tasks.
#[derive(Debug, Clone)]
pub struct Dag {
    /// `deps[dep_start[i]..dep_start[i + 1]]` are task `i`'s dependencies.
    dep_start: Vec<usize>,
    deps: Vec<u32>,
}

impl Default for Dag {
    fn default() -> Self {
        Dag::new()
    }
}

/// Why a graph has no order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    /// Tasks depend on each other in a cycle.
    Cycle,
    /// A dependency names a position past the last task.
    UnknownTask {
        /// The task whose dependency it is.
        task: u32,
        /// The position named.
        dep: u32,
    },
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::Cycle => f.write_str("the tasks depend on each other in a cycle"),
            OrderError::UnknownTask { task, dep } => write!(
                f,
                "task {task} depends on task {dep}, past the last task of the graph"
            ),
        }
    }
}

impl std::error::Error for OrderError {}

/// Not yet given a place in the order.
const UNPLACED: u32 = u32::MAX;

impl Dag {
    /// An empty graph.
    pub fn new() -> Dag {
        Dag {
            dep_start: vec![0],
            deps: Vec::new(),
        }
    }

    /// An empty graph with room for `tasks` tasks and `edges` dependencies.
    pub fn with_capacity(tasks: usize, edges: usize) -> Dag {
        let mut dep_start = Vec::with_capacity(tasks + 1);
        dep_start.push(0);
        Dag {
            dep_start,
            deps: Vec::with_capacity(edges),
        }
    }

    /// Adds a task depending on `deps` (positions of tasks added before or
    /// after it; a repeated dependency counts once) and returns its position.
    pub fn push(&mut self, deps: impl IntoIterator<Item = u32>) -> u32 {
        let position = self.len() as u32;
        self.deps.extend(deps);
        self.dep_start.push(self.deps.len());
        position
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.dep_start.len() - 1
    }

    /// Whether the graph has no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dependencies of task `i`, as given.
    pub fn deps(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.deps[self.dep_start[i]..self.dep_start[i + 1]]
    }

    /// The place of every task in a memory-sparing sequential run (see the
    /// module docs): `order[i]` is task `i`'s place, from 0; lower runs
    /// first. Every task comes after its dependencies.
    pub fn order(&self) -> Result<Vec<u32>, OrderError> {
        let graph = Prepared::new(self)?;
        let (frontier, frontier_peak) = Walk::new(&graph).run(Goals::Frontier);
        // Every input of a task is held when it runs: no order does better
        // than the most inputs a task has.
        let bound = (0..graph.children.start.len() - 1)
            .map(|i| graph.children.of(i as u32).len())
            .max()
            .unwrap_or(0);
        if frontier_peak <= bound {
            return Ok(frontier);
        }
        let (sinks, sinks_peak) = Walk::new(&graph).run(Goals::Sinks);
        Ok(if sinks_peak < frontier_peak {
            sinks
        } else {
            frontier
        })
    }

    /// The tasks on a dependency cycle or between two (Kahn's algorithm
    /// from both ends: what is left), for an error message; empty when
    /// [`Dag::order`] succeeds.
    pub fn on_cycles(&self) -> Vec<u32> {
        let n = self.len();
        let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut waiting = vec![0usize; n];
        for p in 0..n as u32 {
            for &d in self.deps(p).iter().filter(|&&d| (d as usize) < n) {
                dependents[d as usize].push(p);
                waiting[p as usize] += 1;
            }
        }
        let mut removed = vec![false; n];
        let mut ready: Vec<u32> = (0..n as u32)
            .filter(|&p| waiting[p as usize] == 0)
            .collect();
        while let Some(p) = ready.pop() {
            removed[p as usize] = true;
            for &q in &dependents[p as usize] {
                waiting[q as usize] -= 1;
                if waiting[q as usize] == 0 {
                    ready.push(q);
                }
            }
        }
        let mut consumers: Vec<usize> = (0..n)
            .map(|p| {
                dependents[p]
                    .iter()
                    .filter(|&&q| !removed[q as usize])
                    .count()
            })
            .collect();
        let mut sinks: Vec<u32> = (0..n as u32)
            .filter(|&p| !removed[p as usize] && consumers[p as usize] == 0)
            .collect();
        while let Some(p) = sinks.pop() {
            removed[p as usize] = true;
            for &d in self.deps(p).iter().filter(|&&d| (d as usize) < n) {
                if !removed[d as usize] {
                    consumers[d as usize] -= 1;
                    if consumers[d as usize] == 0 {
                        sinks.push(d);
                    }
                }
            }
        }
        (0..n as u32).filter(|&p| !removed[p as usize]).collect()
    }

    /// One dependency cycle, each task followed by one it depends on and
    /// the first repeated at the end (`[a, b, a]`); empty when there is
    /// none. Every task [`Dag::on_cycles`] names depends on another such
    /// task, so following dependencies among them comes back to one seen.
    pub fn cycle_path(&self) -> Vec<u32> {
        let members = self.on_cycles();
        let Some(&start) = members.first() else {
            return Vec::new();
        };
        let mut on_cycle = vec![false; self.len()];
        for &m in &members {
            on_cycle[m as usize] = true;
        }
        let mut position = vec![usize::MAX; self.len()];
        let mut path = vec![start];
        position[start as usize] = 0;
        let mut p = start;
        while let Some(&q) = self.deps(p).iter().find(|&&q| on_cycle[q as usize]) {
            if position[q as usize] != usize::MAX {
                let mut cycle = path.split_off(position[q as usize]);
                cycle.push(q);
                return cycle;
            }
            position[q as usize] = path.len();
            path.push(q);
            p = q;
        }
        path
    }

    /// The most results held at once when the tasks run one at a time in
    /// `order` (as from [`Dag::order`]), counted as `dask.order.diagnostics`
    /// counts its "pressure". `order` must be a permutation that puts every
    /// task after its dependencies.
    pub fn peak_pressure(&self, order: &[u32]) -> usize {
        let n = self.len();
        let mut sequence = vec![0u32; n];
        for (i, &place) in order.iter().enumerate() {
            sequence[place as usize] = i as u32;
        }
        let lists = unique_lists(self);
        let mut consumers = vec![0u32; n];
        for &d in &lists.deps {
            consumers[d as usize] += 1;
        }
        let has_dependents: Vec<bool> = consumers.iter().map(|&c| c > 0).collect();
        let (mut held, mut peak) = (0usize, 0usize);
        for &i in &sequence {
            peak = peak.max(held);
            let mut released = 0;
            for &d in lists.of(i) {
                consumers[d as usize] -= 1;
                if consumers[d as usize] == 0 {
                    released += 1;
                }
            }
            held -= released;
            if has_dependents[i as usize] {
                held += 1;
            }
        }
        peak
    }
}
