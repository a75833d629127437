//! `update-graph`: atomic validation, insertion, and graph order.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use dask_core::messages::{TaskSpec, UpdateGraph};
use dask_core::msgpack::Reader;
use dask_core::refusal::{describe_cycle, show_keys};

use super::*;

/// A refused graph: the error code, a message, the offending keys.
struct Refusal {
    code: ErrorCode,
    message: String,
    keys: Vec<Key>,
}

/// A reference from a new task: to another new task of the same graph (by
/// its position in [`Plan::new`]) or to a task the scheduler knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ref {
    New(u32),
    Known(TaskId),
}

/// An accepted graph, every key already resolved, so accepting it hashes
/// each new key once more (to index it) and nothing else.
struct Plan {
    /// Index into the graph's specs of each new task, in submission order.
    new: Vec<usize>,
    /// The distinct references of every new task, in order of appearance,
    /// flattened: new task `p`'s are `refs[ref_start[p]..ref_start[p + 1]]`.
    refs: Vec<Ref>,
    ref_start: Vec<usize>,
    /// Graph order of each new task, counted from 0 within this graph.
    order: Vec<u64>,
}

impl Plan {
    fn refs_of(&self, p: usize) -> &[Ref] {
        &self.refs[self.ref_start[p]..self.ref_start[p + 1]]
    }
}

/// A task's references at most this many are deduplicated by scanning;
/// beyond, with a set (a task may refer to millions of keys).
const REFS_SCANNED_MAX: usize = 16;

/// Whether a known task has the same definition as `spec` (scattered data
/// has none, so never does).
fn same_def(def: &Option<TaskDef>, spec: &TaskSpec) -> bool {
    match def {
        Some(d) => {
            d.function == spec.function && d.args == spec.args && d.kwargs() == spec.kwargs.as_ref()
        }
        None => false,
    }
}

fn same_spec(a: &TaskSpec, b: &TaskSpec) -> bool {
    a.function == b.function && a.args == b.args && a.kwargs == b.kwargs
}

fn sorted_unique(mut keys: Vec<Key>) -> Vec<Key> {
    keys.sort();
    keys.dedup();
    keys
}

impl SchedulerState {
    pub(crate) fn update_graph(&mut self, conn: ConnId, mut m: UpdateGraph) {
        match self.check_graph(&m) {
            Err(r) => self.reply_error(conn, r.code, r.message, Some(m.request), Some(r.keys)),
            Ok(plan) => {
                // dask/1.1 ack: the ok comes before any event the graph
                // causes (keys already in memory or erred get theirs now).
                if m.ack == Some(true) {
                    self.acknowledge(conn, m.request);
                }
                self.graph_accepted(conn, &m, plan.new.len());
                let tasks = std::mem::take(&mut m.tasks);
                self.accept_graph(conn, tasks, plan, &m.wanted, m.request);
            }
        }
    }

    /// Validates a graph against itself and the known tasks, changing
    /// nothing.
    fn check_graph(&self, m: &UpdateGraph) -> Result<Plan, Refusal> {
        let shape: Vec<Key> = m
            .tasks
            .iter()
            .filter(|s| !s.args.is_array() || s.kwargs.as_ref().is_some_and(|k| !k.is_string_map()))
            .map(|s| s.key.clone())
            .collect();
        if !shape.is_empty() {
            let keys = sorted_unique(shape);
            return Err(Refusal {
                code: ErrorCode::WrongType,
                message: format!(
                    "args must be a msgpack array and kwargs a map with string keys: {}",
                    show_keys(&keys)
                ),
                keys,
            });
        }

        // Keys defined by this graph (first occurrence) and what each
        // resolves to: a new task, or a known one with the same definition.
        let n = m.tasks.len();
        let mut in_graph: HashMap<&str, Ref> = HashMap::with_capacity(n);
        let mut new: Vec<usize> = Vec::new();
        let mut duplicates: Vec<Key> = Vec::new();
        for (i, spec) in m.tasks.iter().enumerate() {
            let entry = match in_graph.entry(spec.key.as_str()) {
                Entry::Vacant(entry) => entry,
                Entry::Occupied(first) => {
                    let same = match *first.get() {
                        Ref::New(p) => same_spec(&m.tasks[new[p as usize]], spec),
                        Ref::Known(t) => same_def(&self.tasks[t.0].def, spec),
                    };
                    if !same {
                        duplicates.push(spec.key.clone());
                    }
                    continue;
                }
            };
            if self.is_scattering(&spec.key) {
                // Scattered data, stored but not yet announced.
                duplicates.push(spec.key.clone());
                continue;
            }
            match self.task_by_key.get(&spec.key) {
                Some(&t) => {
                    if !same_def(&self.tasks[t.0].def, spec) {
                        duplicates.push(spec.key.clone());
                    }
                    entry.insert(Ref::Known(t));
                }
                None => {
                    entry.insert(Ref::New(new.len() as u32));
                    new.push(i);
                }
            }
        }
        if !duplicates.is_empty() {
            let keys = sorted_unique(duplicates);
            return Err(Refusal {
                code: ErrorCode::DuplicateKey,
                message: format!(
                    "keys already defined differently (in this graph or on the scheduler): {}",
                    show_keys(&keys)
                ),
                keys,
            });
        }

        let resolve = |k: &str| -> Option<Ref> {
            in_graph
                .get(k)
                .copied()
                .or_else(|| self.task_by_key.get(k).map(|&t| Ref::Known(t)))
        };
        let mut unknown: Vec<Key> = Vec::new();
        let mut refs: Vec<Ref> = Vec::with_capacity(new.len() * 2);
        let mut ref_start: Vec<usize> = Vec::with_capacity(new.len() + 1);
        for &i in &new {
            let spec = &m.tasks[i];
            let start = refs.len();
            ref_start.push(start);
            let mut seen: Option<HashSet<Ref>> = None;
            let mut on_ref = |k: &str| {
                let Some(r) = resolve(k) else {
                    unknown.push(Key::from(k));
                    return;
                };
                let fresh = match &mut seen {
                    Some(set) => set.insert(r),
                    None if refs.len() - start < REFS_SCANNED_MAX => !refs[start..].contains(&r),
                    None => {
                        let set = seen.insert(refs[start..].iter().copied().collect());
                        set.insert(r)
                    }
                };
                if fresh {
                    refs.push(r);
                }
            };
            // The shapes were checked above, so these walks cannot fail.
            let _ = Reader::new(spec.args.as_bytes()).skip_value(&mut on_ref);
            if let Some(kwargs) = &spec.kwargs {
                let _ = Reader::new(kwargs.as_bytes()).skip_value(&mut on_ref);
            }
        }
        ref_start.push(refs.len());
        unknown.extend(
            m.wanted
                .iter()
                .filter(|k| resolve(k.as_str()).is_none())
                .cloned(),
        );
        if !unknown.is_empty() {
            let keys = sorted_unique(unknown);
            return Err(Refusal {
                code: ErrorCode::UnknownKey,
                message: format!(
                    "references or wanted keys name no task of this graph or the scheduler: {}",
                    show_keys(&keys)
                ),
                keys,
            });
        }

        let mut plan = Plan {
            new,
            refs,
            ref_start,
            order: Vec::new(),
        };
        match graph_order(&plan) {
            Some(order) => plan.order = order,
            None => {
                let on_cycle = cycle_members(&plan);
                let key = |p: usize| &m.tasks[plan.new[p]].key;
                let path: Vec<&Key> = cycle_path(&plan, &on_cycle).into_iter().map(key).collect();
                return Err(Refusal {
                    code: ErrorCode::Cycle,
                    message: format!(
                        "the tasks depend on each other in a cycle: {}",
                        describe_cycle(&path)
                    ),
                    keys: sorted_unique(
                        (0..on_cycle.len())
                            .filter(|&p| on_cycle[p])
                            .map(|p| key(p).clone())
                            .collect(),
                    ),
                });
            }
        }
        Ok(plan)
    }

    fn accept_graph(
        &mut self,
        conn: ConnId,
        specs: Vec<TaskSpec>,
        plan: Plan,
        wanted: &[Key],
        request: u64,
    ) {
        let n = plan.new.len();
        self.tasks.reserve(n);
        self.task_by_key.reserve(n);
        let mut ids: Vec<TaskId> = Vec::with_capacity(n);
        // `plan.new` lists spec indices in increasing order.
        let mut new_specs = plan.new.iter().enumerate().peekable();
        for (i, spec) in specs.into_iter().enumerate() {
            let Some((p, _)) = new_specs.next_if(|&(_, &j)| j == i) else {
                continue;
            };
            let def = TaskDef::new(
                spec.function,
                spec.args,
                spec.kwargs,
                spec.resources,
                spec.workers,
            );
            let order = self.next_order + plan.order[p];
            let mut task = Task::new(spec.key.clone(), Some(def), TaskState::Released, order);
            task.group = self
                .observe
                .task_added(spec.key.as_str(), TaskState::Released);
            task.priority = spec.priority.unwrap_or(0);
            task.retries_left = spec.retries.unwrap_or(0);
            let t = TaskId(self.tasks.insert(task));
            self.task_by_key.insert(spec.key, t);
            ids.push(t);
        }
        self.next_order += n as u64;
        for (p, &t) in ids.iter().enumerate() {
            let deps: Vec<TaskId> = plan
                .refs_of(p)
                .iter()
                .map(|r| match *r {
                    Ref::New(q) => ids[q as usize],
                    Ref::Known(d) => d,
                })
                .collect();
            for &d in &deps {
                self.tasks[d.0].dependents.insert(t);
            }
            self.tasks[t.0].dependencies = deps;
        }

        let mut seen: HashSet<&Key> = HashSet::with_capacity(wanted.len());
        for key in wanted {
            if !seen.insert(key) {
                continue;
            }
            if let Some(&t) = self.task_by_key.get(key) {
                self.add_want(conn, t, request);
            }
        }
        // New tasks nothing wants or needs are forgotten right away.
        self.to_check.extend(ids);
    }
}

/// The graph order of a plan's new tasks (see [`Plan::order`]): from each
/// new task no other new task depends on, in submission order, a
/// depth-first post-order walk of its dependencies, so a branch finishes
/// before the next starts and intermediates can be freed early. Known
/// tasks already have their order. `None` when the new tasks have a cycle.
fn graph_order(plan: &Plan) -> Option<Vec<u64>> {
    const UNSEEN: u64 = u64::MAX;
    const VISITING: u64 = u64::MAX - 1;
    let n = plan.new.len();
    let mut has_dependent = vec![false; n];
    for r in &plan.refs {
        if let Ref::New(q) = *r {
            has_dependent[q as usize] = true;
        }
    }
    let mut order = vec![UNSEEN; n];
    let mut next = 0;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for sink in (0..n).filter(|&p| !has_dependent[p]) {
        order[sink] = VISITING;
        stack.push((sink, 0));
        while let Some(top) = stack.last_mut() {
            let (p, i) = *top;
            match plan.refs_of(p).get(i) {
                Some(r) => {
                    top.1 += 1;
                    if let Ref::New(q) = *r {
                        match order[q as usize] {
                            UNSEEN => {
                                order[q as usize] = VISITING;
                                stack.push((q as usize, 0));
                            }
                            VISITING => return None,
                            _ => {}
                        }
                    }
                }
                None => {
                    order[p] = next;
                    next += 1;
                    stack.pop();
                }
            }
        }
    }
    // A task on a cycle that nothing outside it depends on has no sink
    // above it, so it was never reached.
    (next == n as u64).then_some(order)
}

/// Which new tasks are on a dependency cycle (Kahn's algorithm from both
/// ends: what is left is on a cycle or between two). Only for the refusal.
fn cycle_members(plan: &Plan) -> Vec<bool> {
    let n = plan.new.len();
    // Edges among new tasks: dependency -> dependent.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    let mut outdegree = vec![0usize; n];
    for (p, degree) in indegree.iter_mut().enumerate() {
        for r in plan.refs_of(p) {
            if let Ref::New(q) = *r {
                dependents[q as usize].push(p);
                *degree += 1;
            }
        }
    }
    let mut removed = vec![false; n];
    let mut ready: Vec<usize> = (0..n).filter(|&p| indegree[p] == 0).collect();
    while let Some(p) = ready.pop() {
        removed[p] = true;
        for &q in &dependents[p] {
            indegree[q] -= 1;
            if indegree[q] == 0 {
                ready.push(q);
            }
        }
    }
    // Peel what only hangs below a cycle (nothing left depends on it).
    for p in 0..n {
        if !removed[p] {
            outdegree[p] = dependents[p].iter().filter(|&&q| !removed[q]).count();
        }
    }
    let mut sinks: Vec<usize> = (0..n)
        .filter(|&p| !removed[p] && outdegree[p] == 0)
        .collect();
    while let Some(p) = sinks.pop() {
        removed[p] = true;
        for r in plan.refs_of(p) {
            if let Ref::New(q) = *r {
                let q = q as usize;
                if !removed[q] {
                    outdegree[q] -= 1;
                    if outdegree[q] == 0 {
                        sinks.push(q);
                    }
                }
            }
        }
    }
    removed.into_iter().map(|r| !r).collect()
}

/// One cycle among the members, each task followed by one it depends on,
/// the first repeated at the end. Every member depends on another member
/// (what depended on nothing left was peeled), so walking dependencies
/// from any member comes back to a task already seen.
fn cycle_path(plan: &Plan, on_cycle: &[bool]) -> Vec<usize> {
    let Some(start) = on_cycle.iter().position(|&c| c) else {
        return Vec::new();
    };
    let mut position = vec![usize::MAX; on_cycle.len()];
    let mut path = vec![start];
    position[start] = 0;
    let mut p = start;
    loop {
        let next = plan.refs_of(p).iter().find_map(|r| match *r {
            Ref::New(q) if on_cycle[q as usize] => Some(q as usize),
            _ => None,
        });
        let Some(q) = next else {
            return path;
        };
        if position[q] != usize::MAX {
            let mut cycle = path.split_off(position[q]);
            cycle.push(q);
            return cycle;
        }
        position[q] = path.len();
        path.push(q);
        p = q;
    }
}
