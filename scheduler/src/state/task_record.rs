//! The task record: ids, states, a task's definition and what few tasks
//! have, held small because a 10M-task graph holds ten million of them.

use std::cmp::Reverse;
use std::sync::Arc;

use dask_core::messages::Resources;
use dask_core::{Key, RawValue};
use slab::Slab;

use super::observe::GroupId;
use super::small_list::SmallList;
use super::task_set::TaskSet;
use super::task_text::TaskText;
use super::{ConnId, Worker, KILLED_WORKER_NAMES_MAX};

/// Index of a task in the task slab. Four bytes: task records hold many
/// (dependencies, dependents), and a scheduler holding four billion tasks
/// would need some 600 GB for their records first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TaskId(pub(super) u32);

/// Index of a registered worker in the worker slab (four bytes: a task
/// record holds its holders and the worker processing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WorkerIdx(pub(super) u32);

impl TaskId {
    /// The id of the task at slab index `i`.
    pub(crate) fn new(i: usize) -> TaskId {
        // Out of memory long before (see the type's docs).
        TaskId(u32::try_from(i).expect("fewer than 2^32 tasks"))
    }

    /// Its slab index.
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

impl WorkerIdx {
    /// The index of the worker at slab index `i`.
    pub(crate) fn new(i: usize) -> WorkerIdx {
        // Each worker is a connection: far fewer than 2^32. The values
        // past `PackedState::PROCESSING_MAX` name the other task states.
        let w = u32::try_from(i).expect("fewer than 2^32 workers");
        assert!(
            w <= PackedState::PROCESSING_MAX,
            "fewer than 2^32 - 8 workers"
        );
        WorkerIdx(w)
    }

    /// Its slab index.
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

impl std::ops::Index<TaskId> for Slab<Task> {
    type Output = Task;

    fn index(&self, t: TaskId) -> &Task {
        &self[t.ix()]
    }
}

impl std::ops::IndexMut<TaskId> for Slab<Task> {
    fn index_mut(&mut self, t: TaskId) -> &mut Task {
        &mut self[t.ix()]
    }
}

impl std::ops::Index<&TaskId> for Slab<Task> {
    type Output = Task;

    fn index(&self, t: &TaskId) -> &Task {
        &self[t.ix()]
    }
}

impl std::ops::Index<&WorkerIdx> for Slab<Worker> {
    type Output = Worker;

    fn index(&self, w: &WorkerIdx) -> &Worker {
        &self[w.ix()]
    }
}

impl std::ops::Index<WorkerIdx> for Slab<Worker> {
    type Output = Worker;

    fn index(&self, w: WorkerIdx) -> &Worker {
        &self[w.ix()]
    }
}

impl std::ops::IndexMut<WorkerIdx> for Slab<Worker> {
    fn index_mut(&mut self, w: WorkerIdx) -> &mut Worker {
        &mut self[w.ix()]
    }
}

/// A task's state in the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Known, not computed, nothing running (lineage of a result, or new).
    Released,
    /// Needed; some dependency is not in memory yet.
    Waiting,
    /// Ready, but no connected worker offers its function, resources or
    /// restriction.
    NoWorker,
    /// Ready; workers exist but all are saturated.
    Queued,
    /// Sent to this worker.
    Processing(WorkerIdx),
    /// In memory on at least one worker.
    Memory,
    /// Failed, itself or through a dependency (or lost beyond recompute).
    Erred,
}

impl TaskState {
    /// The state's name on the wire (cluster-info) and in docs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting => "waiting",
            TaskState::NoWorker => "no-worker",
            TaskState::Queued => "queued",
            TaskState::Processing(_) => "processing",
            TaskState::Memory => "memory",
            TaskState::Erred => "erred",
        }
    }

    /// Whether the task is on its way to memory: its dependencies' data is
    /// needed (it counts as a *waiter* of each dependency).
    pub(crate) fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::NoWorker | TaskState::Queued | TaskState::Processing(_)
        )
    }
}

/// A [`TaskState`] in four bytes, where the enum takes eight (its tag
/// beside the worker's index): the worker's index for `Processing`, else
/// one of the few values no worker index reaches (see [`WorkerIdx::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedState(u32);

impl PackedState {
    /// The largest worker index; the seven values above name the states.
    pub(crate) const PROCESSING_MAX: u32 = u32::MAX - 8;

    pub(crate) fn new(state: TaskState) -> PackedState {
        PackedState(match state {
            TaskState::Processing(w) => w.0,
            TaskState::Released => u32::MAX,
            TaskState::Waiting => u32::MAX - 1,
            TaskState::NoWorker => u32::MAX - 2,
            TaskState::Queued => u32::MAX - 3,
            TaskState::Memory => u32::MAX - 4,
            TaskState::Erred => u32::MAX - 5,
        })
    }

    pub(crate) fn get(self) -> TaskState {
        match u32::MAX - self.0 {
            0 => TaskState::Released,
            1 => TaskState::Waiting,
            2 => TaskState::NoWorker,
            3 => TaskState::Queued,
            4 => TaskState::Memory,
            5 => TaskState::Erred,
            // Only `new` makes one: anything else is a worker's index.
            _ => TaskState::Processing(WorkerIdx(self.0)),
        }
    }
}

/// A function name, shared by its tasks and by the workers that offer it
/// (`SchedulerState::shared_function`), with its index among the shared
/// names: a worker's offers are a bit per index ([`Worker::offers`]).
#[derive(Debug)]
pub(crate) struct FunctionName {
    pub(crate) name: String,
    /// Its index among the shared names, or [`FunctionName::NOT_SHARED`]
    /// for a name held apart (past the bound on shared names).
    pub(crate) index: u32,
}

impl FunctionName {
    pub(crate) const NOT_SHARED: u32 = u32::MAX;
}

// Equal, and hashed, by the name alone: the shared set is looked up with
// a name not yet given an index.
impl PartialEq for FunctionName {
    fn eq(&self, other: &FunctionName) -> bool {
        self.name == other.name
    }
}

impl Eq for FunctionName {}

impl std::hash::Hash for FunctionName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl std::ops::Deref for FunctionName {
    type Target = String;
    fn deref(&self) -> &String {
        &self.name
    }
}

/// How to compute a task (absent for scattered data, which has no
/// lineage), as a graph gives it; the task record keeps its parts apart
/// (see [`Task`]) and gives them back as a [`Def`].
#[derive(Debug, Clone)]
pub(crate) struct TaskDef {
    /// Shared by every task of the function (see `SchedulerState::functions`).
    pub(crate) function: Arc<FunctionName>,
    pub(crate) args: RawValue,
    /// kwargs, resources and worker restrictions: few tasks have any, and
    /// the scheduler keeps tasks by the million, so they go with the rare
    /// fields (`None` when all are absent).
    pub(crate) options: Option<Box<TaskOptions>>,
}

/// The rarely given parts of a [`TaskDef`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskOptions {
    pub(crate) kwargs: Option<RawValue>,
    pub(crate) resources: Option<Resources>,
    pub(crate) workers: Option<Vec<String>>,
}

impl TaskDef {
    pub(crate) fn new(
        function: Arc<FunctionName>,
        args: RawValue,
        kwargs: Option<RawValue>,
        resources: Option<Resources>,
        workers: Option<Vec<String>>,
    ) -> TaskDef {
        let options = (kwargs.is_some() || resources.is_some() || workers.is_some()).then(|| {
            Box::new(TaskOptions {
                kwargs,
                resources,
                workers,
            })
        });
        TaskDef {
            function,
            args,
            options,
        }
    }
}

/// A task's definition, read from its record ([`Task::def`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Def<'a> {
    pub(crate) function: &'a Arc<FunctionName>,
    args: &'a [u8],
    /// The arguments are these tasks' references, in order (`args` is
    /// empty then: see [`Task::args_are_dependencies`]).
    args_are: Option<&'a SmallList<TaskId, 3>>,
    options: Option<&'a TaskOptions>,
}

impl<'a> Def<'a> {
    /// Writes the arguments' encoding to `out`, the dependencies' keys
    /// read from `tasks` when the record holds only their references.
    pub(crate) fn write_args(&self, tasks: &Slab<Task>, out: &mut Vec<u8>) {
        match self.args_are {
            None => out.extend_from_slice(self.args),
            Some(deps) => write_refs(tasks, deps, out),
        }
    }

    /// Whether the arguments are encoded as `bytes`.
    pub(crate) fn args_equal(&self, tasks: &Slab<Task>, bytes: &[u8]) -> bool {
        match self.args_are {
            None => self.args == bytes,
            Some(_) => {
                let mut out = Vec::with_capacity(bytes.len());
                self.write_args(tasks, &mut out);
                out == bytes
            }
        }
    }

    /// The arguments, copied out for a message (`scratch` holds them
    /// while they are written from the dependencies' keys).
    pub(crate) fn args(&self, tasks: &Slab<Task>, scratch: &mut Vec<u8>) -> RawValue {
        match self.args_are {
            None => RawValue::copy_of_trusted(self.args),
            Some(_) => {
                scratch.clear();
                self.write_args(tasks, scratch);
                RawValue::copy_of_trusted(scratch)
            }
        }
    }

    pub(crate) fn kwargs(&self) -> Option<&'a RawValue> {
        self.options?.kwargs.as_ref()
    }

    pub(crate) fn resources(&self) -> Option<&'a Resources> {
        self.options?.resources.as_ref()
    }

    pub(crate) fn workers(&self) -> Option<&'a Vec<String>> {
        self.options?.workers.as_ref()
    }
}

/// Writes an array of references to `deps`' keys: the arguments of a
/// task whose arguments are its dependencies (`add(a, b)`), canonically.
pub(crate) fn write_refs(tasks: &Slab<Task>, deps: &SmallList<TaskId, 3>, out: &mut Vec<u8>) {
    use dask_core::msgpack::{write, TASK_REF_EXT};
    write::array_len(out, deps.len());
    for d in deps.iter() {
        write::ext(out, TASK_REF_EXT, tasks[d].key_bytes());
    }
}

/// Why a task is erred; shared by every dependent the error reached.
#[derive(Debug)]
pub(crate) struct TaskError {
    /// The key whose task raised it (or whose data was lost).
    pub(crate) origin: Key,
    pub(crate) error_type: String,
    pub(crate) message: String,
    pub(crate) traceback: String,
    /// Scattered data lost with its last worker: clients get `key-lost`.
    pub(crate) lost: bool,
}

impl TaskError {
    /// The error a worker reported for its own task (`task-erred`).
    pub(crate) fn reported(m: dask_core::messages::TaskErred) -> Arc<TaskError> {
        Arc::new(TaskError {
            origin: m.key,
            error_type: m.error_type,
            message: m.message,
            traceback: m.traceback,
            lost: false,
        })
    }
}

/// One task: ten million of them for a 10M-task graph, so every field
/// counts (a test holds the record to its size). Ids are four bytes, lists
/// of a few ids are held in place ([`SmallList`]), short keys and
/// arguments too ([`TaskText`]), and what few tasks have is boxed
/// ([`TaskRare`]).
#[derive(Debug)]
pub(crate) struct Task {
    /// Its key and its arguments' encoding (empty for scattered data):
    /// in place when short, else one block (see [`task_text`]).
    text: TaskText,
    /// Shared by every task of the function (see
    /// `SchedulerState::functions`); `None` for scattered data, which has
    /// no definition (and no lineage). An `Arc<FunctionName>`, a thin pointer:
    /// 8 bytes where an `Arc<str>` took 16; the name is read through one
    /// more pointer, into a block every task of the function shares.
    function: Option<Arc<FunctionName>>,
    /// Its [`TaskState`] (read with [`Task::state`]; set through
    /// `SchedulerState::set_state`, which keeps the queues in step).
    state: PackedState,
    /// Graph order: `dask_core::order` within a graph, graphs in
    /// submission order.
    pub(crate) order: u64,
    /// Retries, lost workers, the error and the definition's options,
    /// which few tasks have.
    pub(crate) rare: Option<Box<TaskRare>>,
    /// Distinct tasks referenced by the arguments, in order of appearance.
    pub(crate) dependencies: SmallList<TaskId, 3>,
    pub(crate) dependents: TaskSet,
    /// In `Waiting`: dependencies not in memory.
    pub(crate) waiting_on: u32,
    /// Dependents in an active state.
    pub(crate) waiters: u32,
    /// Clients that want it (few: one in place).
    pub(crate) wanted_by: SmallList<ConnId, 1>,
    /// Workers holding its data.
    pub(crate) who_has: SmallList<WorkerIdx, 3>,
    pub(crate) nbytes: u64,
    /// [`Task::STEAL_PENDING`], [`Task::STEAL_REFUSED`] and
    /// [`Task::ARGS_ARE_DEPENDENCIES`]: one byte where three bools took
    /// three (the record is held to its size).
    flags: u8,
    /// Its task group (key prefix), for the dashboard's aggregates and
    /// the duration estimates placement works with.
    pub(crate) group: GroupId,
}

impl Task {
    /// A task with no dependencies, dependents, wants or holders yet.
    pub(crate) fn new(key: Key, def: Option<TaskDef>, state: TaskState, order: u64) -> Task {
        let (function, text, options) = match def {
            Some(d) => (
                Some(d.function),
                TaskText::new(&key.0, d.args.as_bytes()),
                d.options,
            ),
            None => (None, TaskText::new(&key.0, &[]), None),
        };
        let mut task = Task {
            text,
            function,
            state: PackedState::new(state),
            order,
            rare: None,
            dependencies: SmallList::default(),
            dependents: TaskSet::default(),
            waiting_on: 0,
            waiters: 0,
            wanted_by: SmallList::default(),
            who_has: SmallList::default(),
            nbytes: 0,
            flags: 0,
            group: GroupId::OTHER,
        };
        if let Some(options) = options {
            task.rare_mut().options = Some(options);
        }
        task
    }

    /// A steal-request for it is in flight.
    const STEAL_PENDING: u8 = 1;
    /// Its worker refused to give it up: it is running there.
    const STEAL_REFUSED: u8 = 2;
    /// Its arguments are the canonical array of references to its
    /// dependencies, in order (`add(a, b)`, most reductions): they are not
    /// held, but written from the dependencies' keys when sent.
    const ARGS_ARE_DEPENDENCIES: u8 = 4;

    /// Its state.
    pub(crate) fn state(&self) -> TaskState {
        self.state.get()
    }

    /// Only `SchedulerState::set_state` calls this.
    pub(crate) fn put_state(&mut self, state: TaskState) {
        self.state = PackedState::new(state);
    }

    fn flag(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// See [`Task::STEAL_PENDING`].
    pub(crate) fn steal_pending(&self) -> bool {
        self.flag(Task::STEAL_PENDING)
    }

    pub(crate) fn set_steal_pending(&mut self, on: bool) {
        self.set_flag(Task::STEAL_PENDING, on);
    }

    /// See [`Task::STEAL_REFUSED`].
    pub(crate) fn steal_refused(&self) -> bool {
        self.flag(Task::STEAL_REFUSED)
    }

    pub(crate) fn set_steal_refused(&mut self, on: bool) {
        self.set_flag(Task::STEAL_REFUSED, on);
    }

    /// See [`Task::ARGS_ARE_DEPENDENCIES`].
    pub(crate) fn args_are_dependencies(&self) -> bool {
        self.flag(Task::ARGS_ARE_DEPENDENCIES)
    }

    pub(crate) fn set_args_are_dependencies(&mut self, on: bool) {
        self.set_flag(Task::ARGS_ARE_DEPENDENCIES, on);
    }

    /// Its key.
    pub(crate) fn key(&self) -> &str {
        self.text.key()
    }

    /// Its key's bytes (comparing them needs no UTF-8 check).
    pub(crate) fn key_bytes(&self) -> &[u8] {
        self.text.key_bytes()
    }

    /// Its key, owned (for a message).
    pub(crate) fn key_owned(&self) -> Key {
        Key(self.key().to_string())
    }

    /// How to compute it (`None` for scattered data).
    pub(crate) fn def(&self) -> Option<Def<'_>> {
        Some(Def {
            function: self.function.as_ref()?,
            args: self.text.args(),
            args_are: self.args_are_dependencies().then_some(&self.dependencies),
            options: self.rare.as_deref().and_then(|r| r.options.as_deref()),
        })
    }

    /// Its priority (0 unless its graph gave one).
    pub(crate) fn priority(&self) -> i64 {
        self.rare.as_ref().map_or(0, |r| r.priority)
    }

    /// Wanted by a client or a dataset.
    pub(crate) fn is_wanted(&self) -> bool {
        !self.wanted_by.is_empty() || self.rare().dataset_refs > 0
    }

    /// The key of its entry in the ready queue.
    pub(crate) fn queue_key(&self) -> QueueKey {
        (Reverse(self.priority()), self.order)
    }
}

/// What few tasks have, boxed: a pointer in every task rather than 40
/// bytes.
#[derive(Debug, Default)]
pub(crate) struct TaskRare {
    pub(crate) retries_left: u32,
    /// Times a worker was lost while the task was processing on it.
    pub(crate) suspicious: u32,
    /// Names of those workers (the last [`KILLED_WORKER_NAMES_MAX`]).
    pub(crate) lost_on: Vec<String>,
    /// Why it is erred, while it is.
    pub(crate) error: Option<Arc<TaskError>>,
    /// Its definition's kwargs, resources and worker restrictions.
    pub(crate) options: Option<Box<TaskOptions>>,
    /// Its priority, when its graph gave one other than 0 (few do).
    pub(crate) priority: i64,
    /// Datasets holding it.
    pub(crate) dataset_refs: u32,
}

impl TaskRare {
    /// One more worker lost while the task ran on it (`""`: a count
    /// restored without its name).
    pub(crate) fn count_lost_worker(&mut self, worker: &str) {
        self.suspicious = self.suspicious.saturating_add(1);
        if worker.is_empty() {
            return;
        }
        if self.lost_on.len() == KILLED_WORKER_NAMES_MAX {
            self.lost_on.remove(0);
        }
        self.lost_on.push(worker.to_string());
    }
}

/// A task's [`TaskRare`] when it has none.
static NO_RARE: TaskRare = TaskRare {
    retries_left: 0,
    suspicious: 0,
    lost_on: Vec::new(),
    error: None,
    options: None,
    priority: 0,
    dataset_refs: 0,
};

impl Task {
    /// Its retries, lost workers and error.
    pub(crate) fn rare(&self) -> &TaskRare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    pub(crate) fn rare_mut(&mut self) -> &mut TaskRare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// Ready-queue order: priority descending, then graph/submission order.
pub(crate) type QueueKey = (Reverse<i64>, u64);
