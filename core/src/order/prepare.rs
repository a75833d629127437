//! The graph as the walk reads it: lists both ways, sorted by preference,
//! and the static measures.

use super::{Dag, OrderError};

/// Lists in compressed form: list `i` is `items[start[i]..start[i + 1]]`.
pub(super) struct Lists {
    pub(super) start: Vec<usize>,
    pub(super) deps: Vec<u32>,
}

impl Lists {
    pub(super) fn of(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.deps[self.start[i]..self.start[i + 1]]
    }

    fn of_mut(&mut self, i: u32) -> &mut [u32] {
        let i = i as usize;
        &mut self.deps[self.start[i]..self.start[i + 1]]
    }
}

/// Each task's dependencies, repeats removed (short lists keep their
/// order; long ones, deduplicated by sorting, come sorted).
pub(super) fn unique_lists(dag: &Dag) -> Lists {
    /// Lists up to this long are deduplicated by scanning.
    const SCANNED_MAX: usize = 32;
    let mut start = Vec::with_capacity(dag.len() + 1);
    let mut deps = Vec::with_capacity(dag.deps.len());
    start.push(0);
    for i in 0..dag.len() as u32 {
        let first = deps.len();
        let given = dag.deps(i);
        if given.len() <= SCANNED_MAX {
            for &d in given {
                if !deps[first..].contains(&d) {
                    deps.push(d);
                }
            }
        } else {
            deps.extend_from_slice(given);
            deps[first..].sort_unstable();
            let mut kept = first + 1;
            for k in first + 1..deps.len() {
                if deps[k] != deps[kept - 1] {
                    deps[kept] = deps[k];
                    kept += 1;
                }
            }
            deps.truncate(kept);
        }
        start.push(deps.len());
    }
    Lists { start, deps }
}

/// The graph with what the walk needs: both directions, each list sorted
/// by preference, and the static measures.
pub(super) struct Prepared {
    /// Dependencies, the one to compute first first.
    pub(super) children: Lists,
    /// Dependents, the one to aim for first first.
    pub(super) parents: Lists,
    /// Tasks without dependents, in submission order.
    pub(super) sinks: Vec<u32>,
    /// Whether what follows a task is only tails: each dependent has it as
    /// its only dependency and is itself followed only by tails (so a sink
    /// follows only tails).
    pub(super) tail_head: Vec<bool>,
}

impl Prepared {
    pub(super) fn new(dag: &Dag) -> Result<Prepared, OrderError> {
        let n = dag.len();
        let mut children = unique_lists(dag);
        for i in 0..n as u32 {
            if let Some(&dep) = children.of(i).iter().find(|&&d| d as usize >= n) {
                return Err(OrderError::UnknownTask { task: i, dep });
            }
        }
        let parents = invert(&children, n);

        // In dependency order (Kahn), which also finds cycles: `size` is
        // the number of tasks behind a task (shared ones counted once per
        // path, as dask.order's ndependencies does), `need` the results
        // held at most while computing it alone, its dependencies in the
        // order chosen below.
        let mut waiting: Vec<u32> = (0..n as u32).map(|i| children.of(i).len() as u32).collect();
        let mut ready: Vec<u32> = (0..n as u32)
            .filter(|&i| waiting[i as usize] == 0)
            .collect();
        let mut size = vec![1u64; n];
        let mut need = vec![1u32; n];
        let mut topological: Vec<u32> = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            topological.push(i);
            let list = children.of_mut(i);
            list.sort_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                need[b]
                    .cmp(&need[a])
                    .then(size[b].cmp(&size[a]))
                    .then(a.cmp(&b))
            });
            let mut s = 1u64;
            let mut m = list.len() as u32;
            for (k, &c) in list.iter().enumerate() {
                s = s.saturating_add(size[c as usize]);
                m = m.max(need[c as usize].saturating_add(k as u32));
            }
            size[i as usize] = s;
            need[i as usize] = m.max(1);
            for &p in parents.of(i) {
                waiting[p as usize] -= 1;
                if waiting[p as usize] == 0 {
                    ready.push(p);
                }
            }
        }
        if topological.len() != n {
            return Err(OrderError::Cycle);
        }
        let mut tail_head = vec![false; n];
        for &i in topological.iter().rev() {
            tail_head[i as usize] = parents
                .of(i)
                .iter()
                .all(|&u| children.of(u).len() == 1 && tail_head[u as usize]);
        }
        let sinks = (0..n as u32)
            .filter(|&i| parents.of(i).is_empty())
            .collect();
        Ok(Prepared {
            children,
            parents,
            sinks,
            tail_head,
        })
    }
}

/// The reverse lists of `lists` (over `n` tasks), each in increasing order.
fn invert(lists: &Lists, n: usize) -> Lists {
    let mut count = vec![0usize; n + 1];
    for &d in &lists.deps {
        count[d as usize + 1] += 1;
    }
    for i in 0..n {
        count[i + 1] += count[i];
    }
    let start = count.clone();
    let mut fill = count;
    let mut items = vec![0u32; lists.deps.len()];
    for i in 0..n as u32 {
        for &d in lists.of(i) {
            items[fill[d as usize]] = i;
            fill[d as usize] += 1;
        }
    }
    Lists { start, deps: items }
}
