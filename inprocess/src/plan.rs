//! A graph made ready to run: keys resolved to positions, what the wanted
//! keys need (nothing else runs), the graph order, both directions of
//! every dependency. Refused as the scheduler refuses an `update-graph`,
//! with the same error codes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use dask_core::messages::TaskSpec;
use dask_core::msgpack::Reader;
use dask_core::order::Dag;
use dask_core::refusal::{describe_cycle, show_keys};
use dask_core::{ErrorCode, Key, RawValue};

/// The multiply-rotate hash of rustc (FxHash): keys are hashed once or
/// twice per task, and SipHash's resistance to chosen collisions buys
/// nothing for a graph this process was handed to run anyway.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // A product's low bits depend only on the input's low bits, and
        // the table indexes by low bits: bring the mixed middle down.
        self.0.rotate_left(26)
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn hash_key(key: &str) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// Each distinct key's position, in tables of positions alone (4 bytes a
/// slot, where a `&str` beside each would take 20: the keys stay in the
/// specs), one per partition of the hashes. At millions of tasks one table
/// outgrows the caches and every insert misses them; filled partition by
/// partition, each table is built while it fits in cache.
struct KeyIndex {
    tables: Vec<hashbrown::HashTable<u32>>,
    /// A hash's partition is `(hash >> PARTITION_SHIFT) & mask`: middle
    /// bits, apart from the low bits a table indexes by and the top seven
    /// it keeps as tags.
    mask: u64,
}

const PARTITION_SHIFT: u32 = 40;

/// About this many keys per partition (a table of some 64 KiB).
const KEYS_PER_PARTITION: usize = 8192;

impl KeyIndex {
    fn partition(&self, hash: u64) -> usize {
        ((hash >> PARTITION_SHIFT) & self.mask) as usize
    }

    fn get(&self, key: &str, tasks: &[TaskSpec], distinct: &[usize]) -> Option<u32> {
        let hash = hash_key(key);
        let key_of = |p: &u32| tasks[distinct[*p as usize]].key.as_str();
        self.tables[self.partition(hash)]
            .find(hash, |p| key_of(p) == key)
            .copied()
    }
}

/// A task's position in a [`Plan`], from 0 in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u32);

impl TaskId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// A graph the plan refuses, as the scheduler would: the dask/1 error
/// code (wrong-type, unknown-key, duplicate-key, cycle), what is wrong
/// (naming the first keys as the scheduler does), and all the keys
/// concerned, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// The code the scheduler refuses such a graph with.
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
    /// The keys concerned, sorted.
    pub keys: Vec<Key>,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GraphError {}

/// A refusal whose message ends with the keys it names.
fn refusal(code: ErrorCode, message: &str, mut keys: Vec<Key>) -> GraphError {
    keys.sort();
    keys.dedup();
    GraphError {
        code,
        message: format!("{message}: {}", show_keys(&keys)),
        keys,
    }
}

/// What a task runs.
#[derive(Debug, Clone)]
pub struct PlannedTask {
    /// Its key.
    pub key: Key,
    /// Index of its function's name in [`Plan::functions`].
    pub function: u32,
    /// Positional arguments (a msgpack array), task references inside.
    pub args: RawValue,
    /// Keyword arguments (a msgpack map with string keys), if any.
    pub kwargs: Option<RawValue>,
    /// How often to rerun it after an error before reporting the error.
    pub retries: u32,
    /// Whether a dependency is referred to more than once in its
    /// arguments (its value is then copied, never moved).
    pub repeats_refs: bool,
}

/// A graph ready to run. Only the tasks the wanted keys need are in it.
#[derive(Debug)]
pub struct Plan {
    tasks: Vec<PlannedTask>,
    functions: Vec<String>,
    /// `deps[dep_start[i]..dep_start[i + 1]]`: task `i`'s dependencies,
    /// each once, in order of first appearance.
    dep_start: Vec<usize>,
    deps: Vec<TaskId>,
    /// The same edges the other way.
    dependent_start: Vec<usize>,
    dependents: Vec<TaskId>,
    /// User priority (higher first), then graph order (lower first).
    priority: Vec<i64>,
    order: Vec<u32>,
    /// The wanted tasks, each once, in the order first asked for.
    wanted: Vec<TaskId>,
    is_wanted: Vec<bool>,
    /// For each wanted key as given (repeats included), its index in
    /// `wanted`.
    asked: Vec<u32>,
}

impl Plan {
    /// Plans `tasks` to compute `wanted`. A key given twice with the same
    /// definition is one task; differently, or in a cycle, or with a
    /// reference or wanted key naming no task, the graph is refused.
    pub fn new(tasks: Vec<TaskSpec>, wanted: &[Key]) -> Result<Plan, GraphError> {
        check_shapes(&tasks)?;
        let (distinct, index) = distinct_tasks(&tasks)?;
        let (refs, wanted_positions) = resolve_refs(&tasks, &distinct, &index, wanted)?;

        // The order of every distinct task (as the scheduler, which refuses a
        // cycle even among tasks nothing wants), then only what is needed.
        let dag = &refs.dag;
        let full_order = dag.order().map_err(|_| {
            let key = |p: u32| &tasks[distinct[p as usize]].key;
            let path: Vec<&Key> = dag.cycle_path().into_iter().map(key).collect();
            let mut keys: Vec<Key> = dag
                .on_cycles()
                .into_iter()
                .map(|p| key(p).clone())
                .collect();
            keys.sort();
            GraphError {
                code: ErrorCode::Cycle,
                message: format!(
                    "the tasks depend on each other in a cycle: {}",
                    describe_cycle(&path)
                ),
                keys,
            }
        })?;
        let needed = needed_positions(&refs, &wanted_positions, distinct.len());
        drop(index);

        let n = needed.iter().filter(|&&p| p != u32::MAX).count();
        let mut plan = Plan {
            tasks: Vec::with_capacity(n),
            functions: Vec::new(),
            dep_start: Vec::with_capacity(n + 1),
            deps: Vec::new(),
            dependent_start: Vec::new(),
            dependents: Vec::new(),
            priority: Vec::with_capacity(n),
            order: Vec::with_capacity(n),
            wanted: Vec::new(),
            is_wanted: vec![false; n],
            asked: Vec::with_capacity(wanted.len()),
        };
        plan.dep_start.push(0);
        let mut function_index: HashMap<String, u32> = HashMap::new();
        let mut last_function = u32::MAX;
        // Distinct positions come in increasing spec order: one pass.
        let mut next_distinct = 0usize;
        for (spec_index, spec) in tasks.into_iter().enumerate() {
            if distinct.get(next_distinct) != Some(&spec_index) {
                continue;
            }
            let p = next_distinct;
            next_distinct += 1;
            if needed[p] == u32::MAX {
                continue;
            }
            // Neighbouring tasks mostly call the same function.
            let function = match plan.functions.get(last_function as usize) {
                Some(name) if *name == spec.function => last_function,
                _ => match function_index.get(&spec.function) {
                    Some(&f) => f,
                    None => {
                        let f = plan.functions.len() as u32;
                        function_index.insert(spec.function.clone(), f);
                        plan.functions.push(spec.function);
                        f
                    }
                },
            };
            last_function = function;
            plan.deps.extend(
                dag.deps(p as u32)
                    .iter()
                    .map(|&d| TaskId(needed[d as usize])),
            );
            plan.dep_start.push(plan.deps.len());
            plan.priority.push(spec.priority.unwrap_or(0));
            plan.order.push(full_order[p]);
            plan.tasks.push(PlannedTask {
                key: spec.key,
                function,
                args: spec.args,
                kwargs: spec.kwargs,
                retries: spec.retries.unwrap_or(0),
                repeats_refs: refs.repeats[p],
            });
        }
        let mut wanted_index = vec![u32::MAX; n];
        for &w in &wanted_positions {
            let t = needed[w as usize] as usize;
            if !plan.is_wanted[t] {
                plan.is_wanted[t] = true;
                wanted_index[t] = plan.wanted.len() as u32;
                plan.wanted.push(TaskId(t as u32));
            }
            plan.asked.push(wanted_index[t]);
        }
        plan.invert();
        Ok(plan)
    }

    /// Fills the dependents from the dependencies.
    fn invert(&mut self) {
        let n = self.tasks.len();
        let mut start = vec![0usize; n + 1];
        for d in &self.deps {
            start[d.index() + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut dependents = vec![TaskId(0); self.deps.len()];
        for t in 0..n {
            for d in &self.deps[self.dep_start[t]..self.dep_start[t + 1]] {
                dependents[fill[d.index()]] = TaskId(t as u32);
                fill[d.index()] += 1;
            }
        }
        self.dependent_start = start;
        self.dependents = dependents;
    }

    /// Number of tasks (those the wanted keys need).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// A task.
    pub fn task(&self, t: TaskId) -> &PlannedTask {
        &self.tasks[t.index()]
    }

    /// The names of the functions the tasks call, each once.
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// A task's dependencies, each once.
    pub fn deps(&self, t: TaskId) -> &[TaskId] {
        &self.deps[self.dep_start[t.index()]..self.dep_start[t.index() + 1]]
    }

    /// The tasks depending on `t`.
    pub fn dependents(&self, t: TaskId) -> &[TaskId] {
        &self.dependents[self.dependent_start[t.index()]..self.dependent_start[t.index() + 1]]
    }

    /// The wanted tasks, each once, in the order first asked for.
    pub fn wanted(&self) -> &[TaskId] {
        &self.wanted
    }

    /// For each wanted key in the order given to [`Plan::new`], repeats
    /// included, its index in [`Plan::wanted`].
    pub fn asked(&self) -> &[u32] {
        &self.asked
    }

    /// Whether `t`'s result is wanted (kept to the end).
    pub fn is_wanted(&self, t: TaskId) -> bool {
        self.is_wanted[t.index()]
    }

    /// Among ready tasks, which runs first: the higher user priority, then
    /// the lower place in the graph order.
    pub fn runs_before(&self, a: TaskId, b: TaskId) -> bool {
        self.rank(a) < self.rank(b)
    }

    /// The sort key of [`Plan::runs_before`].
    pub(crate) fn rank(&self, t: TaskId) -> (std::cmp::Reverse<i64>, u32) {
        (
            std::cmp::Reverse(self.priority[t.index()]),
            self.order[t.index()],
        )
    }
}

/// Refuses args that are not an array and kwargs that are not a map with
/// string keys (as the scheduler does).
fn check_shapes(tasks: &[TaskSpec]) -> Result<(), GraphError> {
    let bad: Vec<Key> = tasks
        .iter()
        .filter(|s| !s.args.is_array() || s.kwargs.as_ref().is_some_and(|k| !k.is_string_map()))
        .map(|s| s.key.clone())
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(refusal(
        ErrorCode::WrongType,
        "args must be a msgpack array and kwargs a map with string keys",
        bad,
    ))
}

/// The first spec of each key (by spec index) and each key's position
/// among them. The same key again must have the same definition.
fn distinct_tasks(tasks: &[TaskSpec]) -> Result<(Vec<usize>, KeyIndex), GraphError> {
    let hashes: Vec<u64> = tasks.iter().map(|t| hash_key(t.key.as_str())).collect();
    let partitions = (tasks.len() / KEYS_PER_PARTITION)
        .clamp(1, 1 << 12)
        .next_power_of_two();
    let mut index = KeyIndex {
        tables: Vec::with_capacity(partitions),
        mask: partitions as u64 - 1,
    };
    // The specs grouped by partition, in spec order within each (a counting
    // sort), so that the first spec of a key is met first.
    let mut starts = vec![0usize; partitions + 1];
    for &h in &hashes {
        starts[index.partition(h) + 1] += 1;
    }
    for p in 0..partitions {
        starts[p + 1] += starts[p];
    }
    let mut grouped = vec![0u32; tasks.len()];
    let mut fill = starts.clone();
    for (i, &h) in hashes.iter().enumerate() {
        let p = index.partition(h);
        grouped[fill[p]] = i as u32;
        fill[p] += 1;
    }
    // Each table holds spec indices while it is filled, then positions.
    let mut is_first = vec![false; tasks.len()];
    let mut duplicates: Vec<Key> = Vec::new();
    for p in 0..partitions {
        let members = &grouped[starts[p]..starts[p + 1]];
        let mut table = hashbrown::HashTable::with_capacity(members.len());
        for &i in members {
            let spec = &tasks[i as usize];
            let hash = hashes[i as usize];
            let key_of = |s: &u32| tasks[*s as usize].key.as_str();
            match table.find(hash, |s| key_of(s) == spec.key.as_str()) {
                None => {
                    table.insert_unique(hash, i, |s| hashes[*s as usize]);
                    is_first[i as usize] = true;
                }
                Some(&first) => {
                    let first = &tasks[first as usize];
                    let same = first.function == spec.function
                        && first.args == spec.args
                        && first.kwargs == spec.kwargs;
                    if !same {
                        duplicates.push(spec.key.clone());
                    }
                }
            }
        }
        index.tables.push(table);
    }
    let mut position = vec![u32::MAX; tasks.len()];
    let mut distinct: Vec<usize> = Vec::with_capacity(tasks.len());
    for (i, _) in is_first.iter().enumerate().filter(|(_, &first)| first) {
        position[i] = distinct.len() as u32;
        distinct.push(i);
    }
    for table in &mut index.tables {
        for slot in table.iter_mut() {
            *slot = position[*slot as usize];
        }
    }
    if !duplicates.is_empty() {
        return Err(refusal(
            ErrorCode::DuplicateKey,
            "keys defined twice, differently",
            duplicates,
        ));
    }
    Ok((distinct, index))
}

/// Every distinct task's references as positions, each once (task `p`
/// of the graph is distinct task `p`).
struct Refs {
    dag: Dag,
    /// Whether a task refers to some dependency more than once.
    repeats: Vec<bool>,
}

/// A task's references at most this many are deduplicated by scanning;
/// beyond, with a set.
const REFS_SCANNED_MAX: usize = 16;

/// The references of every distinct task, and the positions of the wanted
/// keys; refused when a reference or a wanted key names no task.
fn resolve_refs(
    tasks: &[TaskSpec],
    distinct: &[usize],
    index: &KeyIndex,
    wanted: &[Key],
) -> Result<(Refs, Vec<u32>), GraphError> {
    let mut refs = Refs {
        dag: Dag::with_capacity(distinct.len(), distinct.len() * 2),
        repeats: Vec::with_capacity(distinct.len()),
    };
    let mut unknown: Vec<Key> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut finder = Finder::new(tasks, distinct, index);
    for &i in distinct {
        let spec = &tasks[i];
        let mut repeats = false;
        let mut seen: Option<HashSet<u32>> = None;
        let mut on_ref = |k: &str| {
            let Some(p) = finder.find(k) else {
                unknown.push(Key::from(k));
                return;
            };
            let fresh = match &mut seen {
                Some(set) => set.insert(p),
                None if current.len() < REFS_SCANNED_MAX => !current.contains(&p),
                None => seen.insert(current.iter().copied().collect()).insert(p),
            };
            if fresh {
                current.push(p);
            } else {
                repeats = true;
            }
        };
        // The shapes were checked, so these walks do not fail.
        let _ = Reader::new(spec.args.as_bytes()).skip_value(&mut on_ref);
        if let Some(kwargs) = &spec.kwargs {
            let _ = Reader::new(kwargs.as_bytes()).skip_value(&mut on_ref);
        }
        refs.dag.push(current.drain(..));
        refs.repeats.push(repeats);
    }
    let mut wanted_positions = Vec::with_capacity(wanted.len());
    let mut finder = Finder::new(tasks, distinct, index);
    for k in wanted {
        match finder.find(k.as_str()) {
            Some(p) => wanted_positions.push(p),
            None => unknown.push(k.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(refusal(
            ErrorCode::UnknownKey,
            "references or wanted keys name no task of this graph",
            unknown,
        ));
    }
    Ok((refs, wanted_positions))
}

/// Finds the distinct task a key names. Graphs are mostly written in
/// order: the wanted keys of a map come in the order of its tasks, and
/// the references of one level of a tree name the previous level's tasks
/// one after the other. So the task after the last one found is tried
/// first, and the index (a random access into a table the size of the
/// graph, a cache miss once graphs outgrow the cache) only when it is not
/// the one.
struct Finder<'t> {
    tasks: &'t [TaskSpec],
    distinct: &'t [usize],
    index: &'t KeyIndex,
    next: usize,
}

impl<'t> Finder<'t> {
    fn new(tasks: &'t [TaskSpec], distinct: &'t [usize], index: &'t KeyIndex) -> Self {
        Finder {
            tasks,
            distinct,
            index,
            next: 0,
        }
    }

    fn find(&mut self, key: &str) -> Option<u32> {
        let guessed = self.distinct.get(self.next).map(|&i| &self.tasks[i]);
        let p = if guessed.is_some_and(|spec| spec.key.as_str() == key) {
            self.next as u32
        } else {
            self.index.get(key, self.tasks, self.distinct)?
        };
        self.next = p as usize + 1;
        Some(p)
    }
}

/// For each distinct task, its position among the needed ones (in
/// submission order), or `u32::MAX` when no wanted key needs it.
fn needed_positions(refs: &Refs, wanted: &[u32], n: usize) -> Vec<u32> {
    let mut needed = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    for &w in wanted {
        if !needed[w as usize] {
            needed[w as usize] = true;
            stack.push(w);
        }
    }
    while let Some(p) = stack.pop() {
        for &d in refs.dag.deps(p) {
            if !needed[d as usize] {
                needed[d as usize] = true;
                stack.push(d);
            }
        }
    }
    let mut next = 0u32;
    needed
        .into_iter()
        .map(|is| {
            if is {
                next += 1;
                next - 1
            } else {
                u32::MAX
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::client::task_spec;
    use dask_core::msgpack::task_ref_value;
    use rmpv::Value;

    fn spec(key: &str, function: &str, args: &[Value]) -> TaskSpec {
        task_spec(Key::from(key), function, args, &[])
    }

    fn r(key: &str) -> Value {
        task_ref_value(key)
    }

    fn keys(plan: &Plan, ids: &[TaskId]) -> Vec<String> {
        ids.iter()
            .map(|&t| plan.task(t).key.as_str().to_owned())
            .collect()
    }

    #[test]
    fn only_what_the_wanted_keys_need_is_planned() {
        let plan = Plan::new(
            vec![
                spec("a", "inc", &[Value::from(1)]),
                spec("unused", "inc", &[r("a")]),
                spec("b", "add", &[r("a"), r("a")]),
                spec("c", "inc", &[r("b")]),
            ],
            &[Key::from("c"), Key::from("b"), Key::from("c")],
        )
        .unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(keys(&plan, plan.wanted()), ["c", "b"]);
        let b = plan.wanted()[1];
        assert_eq!(keys(&plan, plan.deps(b)), ["a"]);
        assert!(plan.task(b).repeats_refs);
        assert_eq!(keys(&plan, plan.dependents(plan.deps(b)[0])), ["b"]);
        assert_eq!(plan.functions(), ["inc", "add"]);
    }

    #[test]
    fn graphs_are_refused_with_the_schedulers_codes() {
        let unknown = Plan::new(vec![spec("a", "inc", &[r("nope")])], &[Key::from("a")]);
        assert_eq!(unknown.unwrap_err().code, ErrorCode::UnknownKey);
        let unknown_wanted = Plan::new(vec![spec("a", "inc", &[])], &[Key::from("b")]);
        assert_eq!(unknown_wanted.unwrap_err().keys, [Key::from("b")]);
        let twice = Plan::new(
            vec![spec("a", "inc", &[]), spec("a", "dec", &[])],
            &[Key::from("a")],
        );
        assert_eq!(twice.unwrap_err().code, ErrorCode::DuplicateKey);
        let same_twice = Plan::new(
            vec![spec("a", "inc", &[]), spec("a", "inc", &[])],
            &[Key::from("a")],
        );
        assert_eq!(same_twice.unwrap().len(), 1);
        // A cycle is refused even when nothing wants it.
        let cycle = Plan::new(
            vec![
                spec("x", "inc", &[r("y")]),
                spec("y", "inc", &[r("x")]),
                spec("z", "inc", &[r("y")]),
                spec("a", "inc", &[]),
            ],
            &[Key::from("a")],
        )
        .unwrap_err();
        assert_eq!(cycle.code, ErrorCode::Cycle);
        assert_eq!(cycle.keys, [Key::from("x"), Key::from("y")]);
        assert_eq!(
            cycle.message,
            r#"the tasks depend on each other in a cycle: "x" -> "y" -> "x" (each depends on the next)"#
        );
        let mut bad = spec("a", "inc", &[]);
        bad.args = RawValue::from_value(&Value::from(1));
        let shape = Plan::new(vec![bad], &[Key::from("a")]).unwrap_err();
        assert_eq!(shape.code, ErrorCode::WrongType);
        assert_eq!(
            shape.to_string(),
            r#"args must be a msgpack array and kwargs a map with string keys: "a""#
        );
    }

    #[test]
    fn graphs_of_several_key_partitions_are_planned_and_refused_alike() {
        // 40,000 tasks: the key index is split into partitions; each task
        // refers to one far back, so most references miss the guess.
        let n = 40_000;
        let key = |i: usize| format!("k-{i}");
        let mut specs: Vec<TaskSpec> = (0..n)
            .map(|i| match i {
                0 => spec(&key(0), "inc", &[]),
                _ => spec(&key(i), "inc", &[r(&key((i * 7919) % i))]),
            })
            .collect();
        // The same definition again is the same task.
        specs.push(specs[12_345].clone());
        let wanted: Vec<Key> = (0..n).rev().map(|i| Key::from(key(i).as_str())).collect();
        let plan = Plan::new(specs.clone(), &wanted).unwrap();
        assert_eq!(plan.len(), n);
        for (asked, &t) in wanted.iter().zip(plan.wanted()) {
            assert_eq!(&plan.task(t).key, asked);
        }
        let t = plan.wanted()[n - 1 - 30_001];
        assert_eq!(keys(&plan, plan.deps(t)), [key((30_001 * 7919) % 30_001)]);
        // A key defined twice differently is refused wherever it falls.
        specs.push(spec(&key(29_999), "dec", &[]));
        specs.push(spec(&key(7), "dec", &[]));
        let refused = Plan::new(specs, &wanted).unwrap_err();
        assert_eq!(refused.code, ErrorCode::DuplicateKey);
        assert_eq!(refused.keys, [Key::from("k-29999"), Key::from("k-7")]);
        // And an unknown reference is named.
        let unknown = Plan::new(
            (0..n)
                .map(|i| spec(&key(i), "inc", &[r(&key(i + 1))]))
                .collect(),
            &[Key::from("k-0")],
        )
        .unwrap_err();
        assert_eq!(unknown.keys, [Key::from(key(n).as_str())]);
    }

    #[test]
    fn higher_user_priority_runs_first_then_graph_order() {
        let mut urgent = spec("urgent", "inc", &[]);
        urgent.priority = Some(5);
        let plan = Plan::new(
            vec![spec("first", "inc", &[]), urgent],
            &[Key::from("first"), Key::from("urgent")],
        )
        .unwrap();
        let (first, urgent) = (plan.wanted()[0], plan.wanted()[1]);
        assert!(plan.runs_before(urgent, first));
    }
}
