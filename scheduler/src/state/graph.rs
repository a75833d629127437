//! `update-graph`: atomic validation, insertion, and graph order.

use std::collections::{HashMap, HashSet};

use dask_core::messages::{TaskSpec, UpdateGraph};
use dask_core::msgpack::Reader;

use super::*;

/// A refused graph: the error code, a message, the offending keys.
struct Refusal {
    code: ErrorCode,
    message: String,
    keys: Vec<Key>,
}

/// An accepted graph: which specs are new, with their dependency keys.
struct Plan {
    /// (index into `tasks`, distinct referenced keys in order).
    new: Vec<(usize, Vec<Key>)>,
}

/// Whether `raw` is a msgpack array.
fn is_array(raw: &RawValue) -> bool {
    matches!(raw.as_bytes().first(), Some(0x90..=0x9f | 0xdc | 0xdd))
}

/// Whether `raw` is a msgpack map whose keys are all strings.
fn is_string_map(raw: &RawValue) -> bool {
    let mut r = Reader::new(raw.as_bytes());
    let Ok(len) = r.read_map_len() else {
        return false;
    };
    for _ in 0..len {
        if r.read_str().is_err() || r.skip_value(&mut |_| {}).is_err() {
            return false;
        }
    }
    true
}

/// Whether a known task has the same definition as `spec` (scattered data
/// has none, so never does).
fn same_def(def: &Option<TaskDef>, spec: &TaskSpec) -> bool {
    match def {
        Some(d) => d.function == spec.function && d.args == spec.args && d.kwargs == spec.kwargs,
        None => false,
    }
}

fn same_spec(a: &TaskSpec, b: &TaskSpec) -> bool {
    a.function == b.function && a.args == b.args && a.kwargs == b.kwargs
}

/// The distinct task references of a spec's args and kwargs, in order.
fn references(spec: &TaskSpec) -> Vec<Key> {
    let mut refs: Vec<Key> = Vec::new();
    let mut push = |k: &str| {
        if !refs.iter().any(|r| r.as_str() == k) {
            refs.push(Key::from(k));
        }
    };
    for k in spec.args.refs() {
        push(k);
    }
    if let Some(kwargs) = &spec.kwargs {
        for k in kwargs.refs() {
            push(k);
        }
    }
    refs
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
                let tasks = std::mem::take(&mut m.tasks);
                self.accept_graph(conn, tasks, plan, &m.wanted);
            }
        }
    }

    /// Validates a graph against itself and the known tasks, changing
    /// nothing.
    fn check_graph(&self, m: &UpdateGraph) -> Result<Plan, Refusal> {
        let shape: Vec<Key> = m
            .tasks
            .iter()
            .filter(|s| !is_array(&s.args) || s.kwargs.as_ref().is_some_and(|k| !is_string_map(k)))
            .map(|s| s.key.clone())
            .collect();
        if !shape.is_empty() {
            return Err(Refusal {
                code: ErrorCode::WrongType,
                message: "args must be a msgpack array and kwargs a map with string keys".into(),
                keys: sorted_unique(shape),
            });
        }

        // Keys defined by this graph (first occurrence), and which are new.
        let mut in_graph: HashMap<&Key, usize> = HashMap::with_capacity(m.tasks.len());
        let mut new: Vec<usize> = Vec::new();
        let mut duplicates: Vec<Key> = Vec::new();
        for (i, spec) in m.tasks.iter().enumerate() {
            if let Some(&j) = in_graph.get(&spec.key) {
                if !same_spec(&m.tasks[j], spec) {
                    duplicates.push(spec.key.clone());
                }
                continue;
            }
            in_graph.insert(&spec.key, i);
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
                }
                None => new.push(i),
            }
        }
        if !duplicates.is_empty() {
            return Err(Refusal {
                code: ErrorCode::DuplicateKey,
                message: "keys already defined differently (in this graph or on the scheduler)"
                    .into(),
                keys: sorted_unique(duplicates),
            });
        }

        let known = |k: &Key| in_graph.contains_key(k) || self.task_by_key.contains_key(k);
        let mut unknown: Vec<Key> = Vec::new();
        let mut plan = Plan {
            new: Vec::with_capacity(new.len()),
        };
        for &i in &new {
            let refs = references(&m.tasks[i]);
            unknown.extend(refs.iter().filter(|k| !known(k)).cloned());
            plan.new.push((i, refs));
        }
        unknown.extend(m.wanted.iter().filter(|k| !known(k)).cloned());
        if !unknown.is_empty() {
            return Err(Refusal {
                code: ErrorCode::UnknownKey,
                message: "references or wanted keys name no task of this graph or the scheduler"
                    .into(),
                keys: sorted_unique(unknown),
            });
        }

        let cyclic = cycle_members(&m.tasks, &plan);
        if !cyclic.is_empty() {
            return Err(Refusal {
                code: ErrorCode::Cycle,
                message: "the tasks depend on each other in a cycle".into(),
                keys: sorted_unique(cyclic),
            });
        }
        Ok(plan)
    }

    fn accept_graph(&mut self, conn: ConnId, specs: Vec<TaskSpec>, plan: Plan, wanted: &[Key]) {
        let mut specs: Vec<Option<TaskSpec>> = specs.into_iter().map(Some).collect();
        let mut created: Vec<(TaskId, Vec<Key>)> = Vec::with_capacity(plan.new.len());
        for (i, refs) in plan.new {
            let Some(spec) = specs[i].take() else {
                continue;
            };
            let t = TaskId(self.tasks.insert(Task {
                key: spec.key.clone(),
                def: Some(TaskDef {
                    function: spec.function,
                    args: spec.args,
                    kwargs: spec.kwargs,
                    resources: spec.resources,
                    workers: spec.workers,
                }),
                state: TaskState::Released,
                priority: spec.priority.unwrap_or(0),
                order: 0,
                retries_left: spec.retries.unwrap_or(0),
                suspicious: 0,
                lost_on: Vec::new(),
                dependencies: Vec::new(),
                dependents: BTreeSet::new(),
                waiting_on: 0,
                waiters: 0,
                wanted_by: Vec::new(),
                dataset_refs: 0,
                who_has: Vec::new(),
                nbytes: 0,
                error: None,
                steal_pending: false,
            }));
            self.task_by_key.insert(spec.key, t);
            created.push((t, refs));
        }
        for (t, refs) in &created {
            let deps: Vec<TaskId> = refs
                .iter()
                .filter_map(|k| self.task_by_key.get(k).copied())
                .collect();
            for &d in &deps {
                self.tasks[d.0].dependents.insert(*t);
            }
            self.tasks[t.0].dependencies = deps;
        }
        let new_ids: Vec<TaskId> = created.iter().map(|(t, _)| *t).collect();
        self.assign_order(&new_ids);

        let mut seen: HashSet<&Key> = HashSet::with_capacity(wanted.len());
        for key in wanted {
            if !seen.insert(key) {
                continue;
            }
            if let Some(&t) = self.task_by_key.get(key) {
                self.add_want(conn, t);
            }
        }
        // New tasks nothing wants or needs are forgotten right away.
        self.to_check.extend(new_ids);
    }

    /// Gives the new tasks their graph order: from each task nothing in the
    /// graph depends on (in submission order), a depth-first post-order
    /// walk of its dependencies, so a branch finishes before the next starts
    /// and intermediates can be freed early. Orders grow across graphs.
    fn assign_order(&mut self, new_ids: &[TaskId]) {
        const VISITING: u64 = u64::MAX;
        let mut stack: Vec<(TaskId, usize)> = Vec::new();
        for &sink in new_ids {
            if !self.tasks[sink.0].dependents.is_empty() || self.tasks[sink.0].order != 0 {
                continue;
            }
            self.tasks[sink.0].order = VISITING;
            stack.push((sink, 0));
            while let Some(top) = stack.last_mut() {
                let (t, i) = *top;
                if let Some(&d) = self.tasks[t.0].dependencies.get(i) {
                    top.1 += 1;
                    if self.tasks[d.0].order == 0 {
                        self.tasks[d.0].order = VISITING;
                        stack.push((d, 0));
                    }
                } else {
                    self.tasks[t.0].order = self.next_order;
                    self.next_order += 1;
                    stack.pop();
                }
            }
        }
    }
}

/// Keys of new tasks on a dependency cycle (Kahn's algorithm from both
/// ends: what is left is on a cycle or between two).
fn cycle_members(tasks: &[TaskSpec], plan: &Plan) -> Vec<Key> {
    let n = plan.new.len();
    let position: HashMap<&Key, usize> = plan
        .new
        .iter()
        .enumerate()
        .map(|(p, (i, _))| (&tasks[*i].key, p))
        .collect();
    // Edges among new tasks: dependency -> dependent.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    let mut outdegree = vec![0usize; n];
    let mut dependencies: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (p, (_, refs)) in plan.new.iter().enumerate() {
        for r in refs {
            if let Some(&q) = position.get(r) {
                dependents[q].push(p);
                dependencies[p].push(q);
                indegree[p] += 1;
                outdegree[q] += 1;
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
    if removed.iter().all(|&r| r) {
        return Vec::new();
    }
    // Peel what only hangs below a cycle (nothing left depends on it).
    for p in 0..n {
        if removed[p] {
            continue;
        }
        outdegree[p] = dependents[p].iter().filter(|&&q| !removed[q]).count();
    }
    let mut sinks: Vec<usize> = (0..n)
        .filter(|&p| !removed[p] && outdegree[p] == 0)
        .collect();
    while let Some(p) = sinks.pop() {
        removed[p] = true;
        for &q in &dependencies[p] {
            if !removed[q] {
                outdegree[q] -= 1;
                if outdegree[q] == 0 {
                    sinks.push(q);
                }
            }
        }
    }
    (0..n)
        .filter(|&p| !removed[p])
        .map(|p| tasks[plan.new[p].0].key.clone())
        .collect()
}
