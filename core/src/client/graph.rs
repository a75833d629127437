//! Graphs: task specs and their options, and the `Graph` a submit or a
//! graph file (JSON or msgpack) is built from.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::messages::{Resources, TaskSpec};
use crate::msgpack::{check_key, RawValue, Reader};
use crate::wire::{FieldTable, Key};

/// Options of one task, applied on top of [`task_spec`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    /// Higher runs first. `None`: 0.
    pub priority: Option<i64>,
    /// Resources one run holds. Empty: none.
    pub resources: Resources,
    /// Reruns after an error before reporting it. `None`: 0.
    pub retries: Option<u32>,
    /// Names or addresses of the only workers allowed to run it. `None`: any.
    pub workers: Option<Vec<String>>,
}

impl TaskOptions {
    /// Writes these options into `spec`.
    pub fn apply(&self, spec: &mut TaskSpec) {
        spec.priority = self.priority;
        spec.resources = (!self.resources.is_empty()).then(|| self.resources.clone());
        spec.retries = self.retries;
        spec.workers = self.workers.clone();
    }
}

/// The msgpack array of positional arguments.
pub fn encode_args(args: &[rmpv::Value]) -> RawValue {
    RawValue::from_value(&rmpv::Value::Array(args.to_vec()))
}

/// The msgpack map of keyword arguments (string keys).
pub fn encode_kwargs(kwargs: &[(String, rmpv::Value)]) -> RawValue {
    RawValue::from_value(&rmpv::Value::Map(
        kwargs
            .iter()
            .map(|(k, v)| (rmpv::Value::from(k.as_str()), v.clone()))
            .collect(),
    ))
}

/// A task spec with no options. References to other tasks inside `args`
/// and `kwargs` are [`crate::msgpack::task_ref_value`] values.
pub fn task_spec(
    key: Key,
    function: &str,
    args: &[rmpv::Value],
    kwargs: &[(String, rmpv::Value)],
) -> TaskSpec {
    TaskSpec {
        key,
        function: function.to_owned(),
        args: encode_args(args),
        kwargs: (!kwargs.is_empty()).then(|| encode_kwargs(kwargs)),
        priority: None,
        resources: None,
        retries: None,
        workers: None,
    }
}

/// Why a graph could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError(pub String);

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GraphError {}

/// Tasks collected for one `update-graph`, each key once.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    tasks: Vec<TaskSpec>,
    index: HashMap<Key, usize>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task. The same key again with the same definition is ignored
    /// (tasks are shared); with another definition it is an error.
    pub fn add(&mut self, spec: TaskSpec) -> Result<(), GraphError> {
        check_key(spec.key.as_str()).map_err(|e| GraphError(e.message))?;
        if let Some(&i) = self.index.get(&spec.key) {
            if self.tasks[i] == spec {
                return Ok(());
            }
            return Err(GraphError(format!(
                "key {:?} is defined twice, differently",
                spec.key.as_str()
            )));
        }
        self.index.insert(spec.key.clone(), self.tasks.len());
        self.tasks.push(spec);
        Ok(())
    }

    /// Whether a task with this key is in the graph.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The tasks, in the order they were added.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    /// The tasks, in the order they were added.
    pub fn into_tasks(self) -> Vec<TaskSpec> {
        self.tasks
    }

    /// Keys no task of this graph depends on, in the order added: the
    /// default `wanted` of a graph file.
    pub fn leaves(&self) -> Vec<Key> {
        let mut depended: HashSet<&str> = HashSet::new();
        for t in &self.tasks {
            depended.extend(t.args.refs());
            if let Some(kw) = &t.kwargs {
                depended.extend(kw.refs());
            }
        }
        self.tasks
            .iter()
            .filter(|t| !depended.contains(t.key.as_str()))
            .map(|t| t.key.clone())
            .collect()
    }

    /// Keys referenced by some task but not defined in this graph (they
    /// must already be known to the scheduler), sorted.
    pub fn external_refs(&self) -> Vec<Key> {
        let mut out: Vec<Key> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for t in &self.tasks {
            let mut refs = t.args.refs();
            if let Some(kw) = &t.kwargs {
                refs.extend(kw.refs());
            }
            for r in refs {
                if !self.index.contains_key(r) && seen.insert(r) {
                    out.push(Key::from(r));
                }
            }
        }
        out.sort();
        out
    }

    /// Reads a graph file in JSON form: `{"tasks": [TaskSpec...],
    /// "wanted": [key...]}`; wanted absent means [`Graph::leaves`].
    pub fn from_json(text: &str) -> Result<(Graph, Vec<Key>), GraphError> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| GraphError(format!("not JSON: {e}")))?;
        // The JSON form of the whole document, re-encoded as msgpack, is a
        // map the wire decoder reads exactly like a msgpack graph file.
        let bytes = crate::json::json_to_msgpack(&doc).map_err(GraphError)?;
        Graph::from_msgpack(&bytes)
    }

    /// Reads a graph file in msgpack: the same structure as
    /// [`Graph::from_json`].
    pub fn from_msgpack(bytes: &[u8]) -> Result<(Graph, Vec<Key>), GraphError> {
        let mut r = Reader::new(bytes);
        let table = FieldTable::read(&mut r).map_err(|e| GraphError(e.to_string()))?;
        if r.remaining() != 0 {
            return Err(GraphError("bytes after the graph".into()));
        }
        let tasks: Vec<TaskSpec> = table
            .field("tasks")
            .map_err(|e| GraphError(e.to_string()))?;
        let wanted: Option<Vec<Key>> = table
            .field("wanted")
            .map_err(|e| GraphError(e.to_string()))?;
        let mut graph = Graph::new();
        for t in tasks {
            if !matches!(t.args.as_bytes().first(), Some(0x90..=0x9f | 0xdc | 0xdd)) {
                return Err(GraphError(format!(
                    "task {:?}: args must be an array",
                    t.key.as_str()
                )));
            }
            graph.add(t)?;
        }
        let wanted = match wanted {
            Some(wanted) => wanted,
            None => graph.leaves(),
        };
        if wanted.is_empty() && !graph.is_empty() {
            // Every task is needed by another: in a finite graph, a cycle.
            let mut cycle = graph.a_cycle();
            if cycle.len() > 8 {
                let n = cycle.len() - 1;
                cycle.truncate(8);
                cycle.push(format!("... ({n} tasks on this cycle)"));
            }
            return Err(GraphError(format!(
                "no key is a leaf (every task is needed by another), so nothing would run: \
                 the graph has a cycle: {} (each depends on the next)",
                cycle.join(" -> ")
            )));
        }
        Ok((graph, wanted))
    }

    /// Keys of one dependency cycle, quoted, each depending on the next
    /// and the first repeated at the end, when every task has a dependent
    /// in this graph (empty otherwise).
    fn a_cycle(&self) -> Vec<String> {
        let mut dependent: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let mut refs = t.args.refs();
            if let Some(kw) = &t.kwargs {
                refs.extend(kw.refs());
            }
            for r in refs {
                dependent.entry(r).or_insert(i);
            }
        }
        let mut seen: HashMap<usize, usize> = HashMap::new();
        let mut path: Vec<usize> = Vec::new();
        let mut i = 0;
        while let Some(&j) = self
            .tasks
            .get(i)
            .and_then(|t| dependent.get(t.key.as_str()))
        {
            if let Some(&at) = seen.get(&i) {
                path.drain(..at);
                path.push(i);
                // The walk went from each task to one that needs it.
                path.reverse();
                return path
                    .iter()
                    .map(|&p| format!("{:?}", self.tasks[p].key.as_str()))
                    .collect();
            }
            seen.insert(i, path.len());
            path.push(i);
            i = j;
        }
        Vec::new()
    }
}
