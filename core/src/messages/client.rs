//! Client <-> scheduler: graphs, releases, gathers, datasets and what
//! the scheduler tells a client of its keys.

use super::*;

wire_struct! {
    /// A task: a function name, arguments that may reference other tasks'
    /// results, and scheduling options.
    pub struct TaskSpec {
        /// The task's key.
        pub key: Key,
        /// Name of the function a worker runs.
        pub function: String,
        /// Positional arguments: an array (see validation below).
        pub args: RawValue,
        /// Keyword arguments: a map with `str` keys. Absent: no keyword arguments.
        pub kwargs: Option<RawValue>,
        /// Higher runs first. Absent: 0.
        pub priority: Option<i64>,
        /// Amounts one run holds, e.g. `{"GPU": 1.0}`. Absent: none.
        pub resources: Option<Resources>,
        /// Reruns after `task-erred` before the error is reported. Absent: 0.
        pub retries: Option<u32>,
        /// Names or data addresses of the only workers allowed to run it. Absent: any worker.
        pub workers: Option<Vec<String>>,
    }
}

wire_struct! {
    /// Client -> scheduler: add tasks to the graph and say which keys the
    /// client wants (holds futures for). All or nothing: on any error no
    /// task is accepted and the scheduler replies `error` with this `request`.
    pub struct UpdateGraph {
        /// Client-chosen id, echoed in an `error` about this graph. No reply on success.
        pub request: u64,
        /// New tasks, in any order; a task already known with the same definition is shared.
        pub tasks: Vec<TaskSpec>,
        /// Keys the client wants; each gets one [event](#key-finished).
        pub wanted: Vec<Key>,
        /// Ask for an `ok` once the graph is accepted (an `error` answers a refusal either way). Absent: false: no reply on success.
        #[schemars(extend("x-since" = "1.1"))]
        pub ack: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: the client no longer wants these keys.
    pub struct ReleaseKeys {
        /// Keys to release.
        pub keys: KeyList,
    }
}

wire_struct! {
    /// Client -> scheduler: stop computing these keys for this client (or for everyone with `force`).
    pub struct CancelKeys {
        /// Keys to cancel.
        pub keys: Vec<Key>,
        /// Cancel for every client that wants them. Absent: false.
        pub force: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: store these values on workers under these keys;
    /// the client wants them and receives key-finished for each.
    pub struct Scatter {
        /// Client-chosen id, echoed in an `error`.
        pub request: u64,
        /// The values by key.
        pub data: BTreeMap<Key, RawValue>,
        /// Names or data addresses of the workers to use. Absent: the scheduler chooses.
        pub workers: Option<Vec<String>>,
        /// Store every value on every (allowed) worker. Absent: false.
        pub broadcast: Option<bool>,
        /// Ask for an `ok` once the scatter is accepted (its `put-data` sent). Absent: false: no reply on success.
        #[schemars(extend("x-since" = "1.1"))]
        pub ack: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: send me these results.
    pub struct Gather {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// Keys wanted.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `gather`.
    pub struct GatherReply {
        /// The `gather` this answers.
        pub request: u64,
        /// Values by key.
        pub data: BTreeMap<Key, RawValue>,
        /// Keys not in memory anywhere.
        pub missing: Vec<Key>,
        /// For each key in `missing`: its scheduler state (`released`, `waiting`, `no-worker`, `queued`, `processing`, `memory`, `erred`; `forgotten` when no task of that key is kept), so a client can tell a key being recomputed from one that is gone. Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub status: Option<BTreeMap<Key, String>>,
    }
}

wire_struct! {
    /// Client -> scheduler: where are these keys held?
    pub struct WhoHas {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// Keys asked about.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `who-has`.
    pub struct WhoHasReply {
        /// The `who-has` this answers.
        pub request: u64,
        /// Holders' data addresses by key (an empty array when none, or when the key is unknown).
        pub who_has: BTreeMap<Key, Vec<String>>,
        /// For every requested key: its scheduler state (`released`, `waiting`, `no-worker`, `queued`, `processing`, `memory`, `erred`; `forgotten` when no task of that key is kept). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub status: Option<BTreeMap<Key, String>>,
    }
}

wire_struct! {
    /// Client -> scheduler: describe the cluster.
    pub struct ClusterInfo {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
    }
}

wire_struct! {
    /// One worker as the scheduler sees it.
    pub struct WorkerInfo {
        /// The worker's id (its hello reply's `id`).
        pub id: u64,
        /// Its name.
        pub name: String,
        /// Its data address.
        pub address: String,
        /// Tasks it runs at once.
        pub nthreads: u32,
        /// Memory limit in bytes. Absent: no limit.
        #[schemars(extend("x-ignorable" = true))]
        pub memory_limit: Option<u64>,
        /// Resources it offers (empty map when none).
        pub resources: Resources,
        /// Functions it offers.
        pub functions: Vec<String>,
        /// Tasks assigned to it now.
        #[schemars(extend("x-ignorable" = true))]
        pub processing: u64,
        /// Keys it holds.
        #[schemars(extend("x-ignorable" = true))]
        pub stored_keys: u64,
        /// Bytes it holds.
        #[schemars(extend("x-ignorable" = true))]
        pub stored_bytes: u64,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `cluster-info`.
    pub struct ClusterInfoReply {
        /// The `cluster-info` this answers.
        pub request: u64,
        /// Registered workers.
        pub workers: Vec<WorkerInfo>,
        /// Number of tasks in each [scheduler state](#scheduler-task-states), by state name; states with none are left out (`forgotten` never appears).
        pub tasks: BTreeMap<String, u64>,
        /// Connected clients, the asking one included.
        pub clients: u32,
    }
}

wire_struct! {
    /// Client -> scheduler: publish keys under a name so other clients can
    /// get them; the dataset holds the keys until unpublished. Replied with `ok`.
    pub struct PublishDataset {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
        /// The keys it holds; they must be known to the scheduler.
        pub keys: Vec<Key>,
        /// Replace a dataset of the same name (its keys are released). Absent: false.
        pub overwrite: Option<bool>,
    }
}

wire_struct! {
    /// Client -> scheduler: remove a published dataset. Replied with `ok`.
    pub struct UnpublishDataset {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
    }
}

wire_struct! {
    /// Client -> scheduler: the keys of a dataset. The client then wants them.
    pub struct GetDataset {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `get-dataset`.
    pub struct Dataset {
        /// The `get-dataset` this answers.
        pub request: u64,
        /// The dataset's name.
        pub name: String,
        /// Its keys, now wanted by the client.
        pub keys: Vec<Key>,
    }
}

wire_struct! {
    /// Client -> scheduler: the names of all datasets.
    pub struct ListDatasets {
        /// Client-chosen id, echoed in the reply.
        pub request: u64,
    }
}

wire_struct! {
    /// Scheduler -> client: the answer to `list-datasets`.
    pub struct Datasets {
        /// The `list-datasets` this answers.
        pub request: u64,
        /// Names, sorted by their UTF-8 bytes.
        pub names: Vec<String>,
    }
}

wire_struct! {
    /// Success reply to a request that returns nothing else.
    pub struct OkReply {
        /// The request this answers.
        pub request: u64,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key's result is in memory on a worker.
    pub struct KeyFinished {
        /// The key.
        pub key: Key,
        /// Size of the result's msgpack encoding.
        pub nbytes: u64,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
        /// The result itself, when its worker sent it with `task-finished`: the client needs no `gather` for it. Absent: fetch it with `gather`.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub value: Option<RawValue>,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key failed, itself or through a dependency.
    pub struct KeyErred {
        /// The key.
        pub key: Key,
        /// The error's type, e.g. `"ZeroDivisionError"`, `"UnknownFunction"`, `"KilledWorker"`.
        pub error_type: String,
        /// The error's message.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// The remote traceback text, possibly empty.
        #[schemars(extend("x-ignorable" = true))]
        pub traceback: String,
        /// The key whose task raised the error, when not this one. Absent: this key's own task raised.
        pub cause: Option<Key>,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key's data is gone and cannot be
    /// recomputed (scattered data whose last holder was lost, or a key that
    /// depends on such data).
    pub struct KeyLost {
        /// The key.
        pub key: Key,
        /// Why, for people.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> client: a wanted key was cancelled.
    pub struct KeyCancelled {
        /// The key.
        pub key: Key,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> client (feature `key-waiting`): a wanted key cannot progress: a task it needs cannot run on any connected worker.
    pub struct KeyWaiting {
        /// The wanted key.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// Why the task cannot run: `no-workers` (no worker is connected), `no-function` (no connected worker offers its function), `no-allowed-worker` (none of its `workers` is connected and offers the function), `no-resources` (no such worker has the resources it asks for), `spill-failed` (every worker that could run it is paused and cannot spill, [worker memory](#worker-memory)).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub reason: String,
        /// The same, for people, naming the function, workers or resources.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// The task that cannot run, one that `key` depends on. Absent: the task of `key` itself.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub task: Option<Key>,
        /// The `request` of the message that started the want this event answers (`update-graph`, `scatter` or `get-dataset`). Absent: not told (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub request: Option<u64>,
    }
}

wire_struct! {
    /// Client -> scheduler (feature `key-waiting`): one page of the tasks that wait, with why.
    pub struct WaitingKeys {
        /// Client-chosen id, echoed in the reply.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// Only tasks in this state: `waiting`, `no-worker` or `queued`. Absent: all three.
        #[schemars(extend("x-since" = "1.1"))]
        pub state: Option<String>,
        /// Where the page starts: the `next` of the previous reply. Absent: 0: the first page.
        #[schemars(extend("x-since" = "1.1"))]
        pub cursor: Option<u64>,
        /// Most tasks in the reply (at most 1000 are returned). Absent: 100.
        #[schemars(extend("x-since" = "1.1"))]
        pub limit: Option<u32>,
    }
}

wire_struct! {
    /// A task that waits, and why.
    pub struct WaitingKey {
        /// The task's key.
        #[schemars(extend("x-since" = "1.1"))]
        pub key: Key,
        /// Its scheduler state: `waiting`, `no-worker` or `queued`.
        #[schemars(extend("x-since" = "1.1"))]
        pub state: String,
        /// Why it waits: a [`key-waiting`](#key-waiting) reason (in `no-worker`), `dependencies` (in `waiting`: inputs not computed yet), `busy` (in `queued`: every worker that can run it is full) or `paused` (in `queued`: every worker that can run it is paused).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub reason: String,
        /// The same, for people.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
    }
}

wire_struct! {
    /// Scheduler -> client (feature `key-waiting`): the answer to `waiting-keys`.
    pub struct WaitingKeysReply {
        /// The `waiting-keys` this answers.
        #[schemars(extend("x-since" = "1.1"))]
        pub request: u64,
        /// The tasks of this page.
        #[schemars(extend("x-since" = "1.1"))]
        pub tasks: Vec<WaitingKey>,
        /// The `cursor` of the next page. Absent: this was the last page.
        #[schemars(extend("x-since" = "1.1"))]
        pub next: Option<u64>,
    }
}
