//! `update-graph`: atomic validation, insertion, and graph order.

use std::collections::hash_map::Entry;
use std::collections::HashSet;

use dask_core::messages::{TaskSpec, UpdateGraph};
use dask_core::msgpack::Reader;
use dask_core::order::Dag;
use dask_core::refusal::{describe_cycle, show_keys};

use super::*;
use crate::journal::record::RecordKind;

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
    /// Graph order of each new task, counted from 0 within this graph
    /// ([`dask_core::order`]: few results held at once); empty when no new
    /// task refers to another, as then the order is the submission order
    /// ([`Plan::order_of`]).
    order: Vec<u64>,
    /// What each wanted key resolved to, in the message's order: accepting
    /// looks no wanted key up again (a probe of the key index reads a
    /// task's record and key, two cache misses a key).
    wanted: Vec<Ref>,
}

impl Plan {
    /// New task `p`'s graph order.
    fn order_of(&self, p: usize) -> u64 {
        self.order.get(p).copied().unwrap_or(p as u64)
    }

    /// Whether some new task refers to another new task.
    fn has_edges(&self) -> bool {
        self.refs.iter().any(|r| matches!(r, Ref::New(_)))
    }

    fn refs_of(&self, p: usize) -> &[Ref] {
        &self.refs[self.ref_start[p]..self.ref_start[p + 1]]
    }

    /// The new tasks and their dependencies among themselves (known tasks
    /// already have their place), for [`dask_core::order`].
    fn dag(&self) -> Dag {
        let mut dag = Dag::with_capacity(self.new.len(), self.refs.len());
        for p in 0..self.new.len() {
            dag.push(self.refs_of(p).iter().filter_map(|r| match *r {
                Ref::New(q) => Some(q),
                Ref::Known(_) => None,
            }));
        }
        dag
    }
}

/// A task's references at most this many are deduplicated by scanning;
/// beyond, with a set (a task may refer to millions of keys).
const REFS_SCANNED_MAX: usize = 16;

/// Whether a known task has the same definition as `spec` (scattered data
/// has none, so never does).
fn same_def(tasks: &Slab<Task>, def: Option<Def<'_>>, spec: &TaskSpec) -> bool {
    match def {
        Some(d) => {
            d.function.name == spec.function
                && d.args_equal(tasks, spec.args.as_bytes())
                && d.kwargs() == spec.kwargs.as_ref()
        }
        None => false,
    }
}

/// Values at most this long are scanned for an ext's first byte before
/// they are walked for task references.
const REF_SCAN_BYTES_MAX: usize = 64;

/// Whether msgpack `value` may hold a task reference. Only an ext can, and
/// every ext starts with one of these bytes, so a short value with none of
/// them holds none: walking `[17]` to learn that was ~260 instructions.
fn may_refer(value: &[u8]) -> bool {
    value.len() > REF_SCAN_BYTES_MAX
        || value
            .iter()
            .any(|&b| matches!(b, 0xc7..=0xc9 | 0xd4..=0xd8))
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
    /// Accepts or refuses a graph; whether it was accepted.
    pub(crate) fn update_graph(&mut self, conn: ConnId, mut m: UpdateGraph) -> bool {
        let mut checked = self.check_graph(&m);
        if matches!(&checked, Err(r) if r.code == ErrorCode::DuplicateKey) && self.is_releasing() {
            // A redefined key may be a released task that a release not
            // done yet still holds: it ends now, as if it had in one step.
            self.run_all_checks();
            checked = self.check_graph(&m);
        }
        match checked {
            Err(r) => {
                self.reply_error(conn, r.code, r.message, Some(m.request), Some(r.keys));
                false
            }
            Ok(plan) => {
                // dask/1.1 ack: the ok comes before any event the graph
                // causes (keys already in memory or erred get theirs now).
                if m.ack == Some(true) {
                    self.acknowledge(conn, m.request);
                }
                if self.config.journal {
                    let message = Message::UpdateGraph(UpdateGraph { ack: None, ..m });
                    if let Message::UpdateGraph(graph) =
                        self.journal_message(RecordKind::Graph, conn, message)
                    {
                        m = graph;
                    } else {
                        return false;
                    }
                }
                self.graph_accepted(conn, &m, plan.new.len());
                let tasks = std::mem::take(&mut m.tasks);
                self.accept_graph(conn, tasks, plan, m.request);
                // New wants may wait on tasks already stuck.
                self.recheck_stuck();
                true
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
        let mut in_graph: foldhash::HashMap<&str, Ref> =
            foldhash::HashMap::with_capacity_and_hasher(n, Default::default());
        let mut new: Vec<usize> = Vec::new();
        let mut duplicates: Vec<Key> = Vec::new();
        for (i, spec) in m.tasks.iter().enumerate() {
            let entry = match in_graph.entry(spec.key.as_str()) {
                Entry::Vacant(entry) => entry,
                Entry::Occupied(first) => {
                    let same = match *first.get() {
                        Ref::New(p) => same_spec(&m.tasks[new[p as usize]], spec),
                        Ref::Known(t) => same_def(&self.tasks, self.tasks[t].def(), spec),
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
            match self.task_id(&spec.key) {
                Some(t) => {
                    if !same_def(&self.tasks, self.tasks[t].def(), spec) {
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
                .or_else(|| self.task_id(k).map(Ref::Known))
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
            if may_refer(spec.args.as_bytes()) {
                let _ = Reader::new(spec.args.as_bytes()).skip_value(&mut on_ref);
            }
            if let Some(kwargs) = &spec.kwargs {
                let _ = Reader::new(kwargs.as_bytes()).skip_value(&mut on_ref);
            }
        }
        ref_start.push(refs.len());
        let mut wanted: Vec<Ref> = Vec::with_capacity(m.wanted.len());
        for k in &m.wanted {
            match resolve(k.as_str()) {
                Some(r) => wanted.push(r),
                None => unknown.push(k.clone()),
            }
        }
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
            wanted,
        };
        if !plan.has_edges() {
            // Tasks that refer to no other new task run in the order they
            // came (what `Dag::order` gives them, checked in the tests):
            // ordering 100k independent tasks was ~500 instructions each.
            return Ok(plan);
        }
        let dag = plan.dag();
        match dag.order() {
            Ok(order) => plan.order = order.into_iter().map(u64::from).collect(),
            Err(_) => {
                let key = |p: u32| &m.tasks[plan.new[p as usize]].key;
                let path: Vec<&Key> = dag.cycle_path().into_iter().map(key).collect();
                return Err(Refusal {
                    code: ErrorCode::Cycle,
                    message: format!(
                        "the tasks depend on each other in a cycle: {}",
                        describe_cycle(&path)
                    ),
                    keys: sorted_unique(
                        dag.on_cycles()
                            .into_iter()
                            .map(|p| key(p).clone())
                            .collect(),
                    ),
                });
            }
        }
        Ok(plan)
    }

    /// Whether new task `p`'s arguments are exactly the canonical array
    /// of references to its dependencies, in order (its plan's refs), each
    /// one already a task (`ids` holds the new tasks made so far): then
    /// the record need not hold them ([`Task::args_are_dependencies`]).
    fn args_are_refs(
        &self,
        plan: &Plan,
        ids: &[TaskId],
        p: usize,
        args: &[u8],
        scratch: &mut Vec<u8>,
    ) -> bool {
        let refs = plan.refs_of(p);
        if refs.is_empty() {
            return false;
        }
        scratch.clear();
        dask_core::msgpack::write::array_len(scratch, refs.len());
        for r in refs {
            let t = match *r {
                Ref::Known(t) => t,
                Ref::New(q) => match ids.get(q as usize) {
                    Some(&t) => t,
                    // Defined later in the graph: no key to read yet.
                    None => return false,
                },
            };
            let key = self.tasks[t].key_bytes();
            dask_core::msgpack::write::ext(scratch, dask_core::msgpack::TASK_REF_EXT, key);
            if !args.starts_with(scratch) {
                return false;
            }
        }
        args == scratch.as_slice()
    }

    fn accept_graph(&mut self, conn: ConnId, specs: Vec<TaskSpec>, plan: Plan, request: u64) {
        let n = plan.new.len();
        self.tasks.reserve(n);
        self.key_index.reserve(n);
        let mut ids: Vec<TaskId> = Vec::with_capacity(n);
        let mut refs_encoded: Vec<u8> = Vec::new();
        // `plan.new` lists spec indices in increasing order.
        let mut new_specs = plan.new.iter().enumerate().peekable();
        for (i, spec) in specs.into_iter().enumerate() {
            let Some((p, _)) = new_specs.next_if(|&(_, &j)| j == i) else {
                continue;
            };
            let args_are_dependencies =
                self.args_are_refs(&plan, &ids, p, spec.args.as_bytes(), &mut refs_encoded);
            let args = if args_are_dependencies {
                // Written again from the dependencies' keys when sent.
                RawValue::default()
            } else {
                spec.args
            };
            let def = TaskDef::new(
                self.shared_function(spec.function),
                args,
                spec.kwargs,
                spec.resources,
                spec.workers,
            );
            let order = self.next_order + plan.order_of(p);
            let group = self
                .observe
                .task_added(spec.key.as_str(), TaskState::Released);
            // The key moves into the task: the index holds no copy.
            let mut task = Task::new(spec.key, Some(def), TaskState::Released, order);
            task.group = group;
            task.set_args_are_dependencies(args_are_dependencies);
            if let Some(priority) = spec.priority.filter(|&p| p != 0) {
                task.rare_mut().priority = priority;
            }
            if let Some(retries) = spec.retries.filter(|&r| r > 0) {
                task.rare_mut().retries_left = retries;
            }
            let t = TaskId::new(self.tasks.insert(task));
            self.key_index.insert(&self.tasks, t);
            ids.push(t);
        }
        self.next_order += n as u64;
        for (p, &t) in ids.iter().enumerate() {
            // Collected in place: a vector per task, freed at once, had
            // the allocator sort millions of small free blocks.
            let deps: SmallList<TaskId, 3> = plan
                .refs_of(p)
                .iter()
                .map(|r| match *r {
                    Ref::New(q) => ids[q as usize],
                    Ref::Known(d) => d,
                })
                .collect();
            for &d in deps.iter() {
                self.tasks[d].dependents.insert(t);
            }
            self.tasks[t].dependencies = deps;
        }

        // A key listed twice is wanted once (`add_want` would send an
        // erred key's event again): new tasks are told apart by a bit of
        // their position, where a hash set of every wanted task was ~100
        // instructions a task.
        let mut seen_new = vec![0u64; n.div_ceil(64)];
        let mut seen_known: foldhash::HashSet<TaskId> = Default::default();
        for r in &plan.wanted {
            let fresh = match *r {
                Ref::New(q) => {
                    let (word, bit) = (q as usize / 64, 1u64 << (q % 64));
                    let fresh = seen_new[word] & bit == 0;
                    seen_new[word] |= bit;
                    fresh
                }
                Ref::Known(t) => seen_known.insert(t),
            };
            if fresh {
                let t = match *r {
                    Ref::New(q) => ids[q as usize],
                    Ref::Known(t) => t,
                };
                self.add_want(conn, t, request);
            }
        }
        // New tasks nothing wants or needs are forgotten right away.
        self.to_check.extend(ids);
    }
}

#[cfg(test)]
mod tests {
    use dask_core::order::Dag;

    /// `check_graph` skips `Dag::order` for a graph whose tasks refer to
    /// no other new task and takes the submission order: that must be
    /// the order `Dag::order` would give.
    #[test]
    fn tasks_without_edges_are_ordered_as_submitted() {
        for n in [0u32, 1, 2, 3, 7, 64, 1_000] {
            let mut dag = Dag::with_capacity(n as usize, 0);
            for _ in 0..n {
                dag.push(std::iter::empty());
            }
            assert_eq!(dag.order().unwrap(), (0..n).collect::<Vec<_>>(), "{n}");
        }
    }

    /// A short value that holds a task reference is always walked.
    #[test]
    fn only_values_without_an_ext_byte_skip_the_walk() {
        use dask_core::msgpack::{write, TASK_REF_EXT};

        for key in ["a", "x-1", "('inc-3f2a', 17)", &"k".repeat(40)] {
            let mut args = Vec::new();
            write::array_len(&mut args, 1);
            write::ext(&mut args, TASK_REF_EXT, key.as_bytes());
            assert!(super::may_refer(&args), "{key}");
        }
        for plain in [&[0x91, 0x11][..], &[0x90], &[0xa3, b'a', b'b', b'c']] {
            assert!(!super::may_refer(plain));
        }
        // Long values are walked whatever bytes they hold.
        assert!(super::may_refer(&[0x00; super::REF_SCAN_BYTES_MAX + 1]));
    }
}
