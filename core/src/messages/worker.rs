//! Worker <-> scheduler: registration, tasks to compute and their
//! outcomes, freed keys, stealing and data a worker stores or misses.

use super::*;

wire_struct! {
    /// Worker -> scheduler, right after the handshake: what the worker offers.
    pub struct RegisterWorker {
        /// Unique among registered workers.
        pub name: String,
        /// Its data address, where peers connect, e.g. `"tcp://127.0.0.1:40123"`.
        pub address: String,
        /// Tasks it runs at once (at least 1).
        pub nthreads: u32,
        /// Memory limit in bytes: the most bytes of values (sum of nbytes) it means to keep in memory ([worker memory](#worker-memory)). Absent: no limit.
        #[schemars(extend("x-ignorable" = true))]
        pub memory_limit: Option<u64>,
        /// Resources it offers. Absent: none.
        pub resources: Option<Resources>,
        /// Names of the functions it can run.
        pub functions: Vec<String>,
        /// Its operating-system process id, for people. Absent: unknown.
        #[schemars(extend("x-ignorable" = true))]
        pub pid: Option<u32>,
        /// Values it holds already, by key, with their `nbytes`: kept from before it lost its scheduler (see [Reconnection](#reconnection)). The scheduler adopts those of tasks it knows that are not in memory and frees the others with `free-keys`. Absent: none.
        #[schemars(extend("x-since" = "1.1"))]
        pub held: Option<BTreeMap<Key, u64>>,
    }
}

wire_struct! {
    /// Scheduler -> worker: registration accepted.
    pub struct WorkerRegistered {
        /// The worker's id: the `id` of the scheduler's hello reply on this connection.
        pub id: u64,
        /// The worker MUST send `heartbeat` at least this often (dask-rs default: 1000, at most a third of its heartbeat timeout).
        pub heartbeat_interval_ms: u64,
        /// A result whose nbytes is at most this MAY travel in `task-finished`'s `value` (dask-rs: 4096). Absent: none does (a dask/1.0 scheduler).
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub inline_bytes_max: Option<u64>,
    }
}

wire_struct! {
    /// Scheduler -> worker: run this task once its dependencies are here.
    pub struct ComputeTask {
        /// The task's key.
        pub key: Key,
        /// Function to run.
        pub function: String,
        /// Positional arguments (an array), with task references.
        pub args: RawValue,
        /// Keyword arguments (a map with `str` keys), with task references. Absent: none.
        pub kwargs: Option<RawValue>,
        /// Every referenced key with its holders' data addresses (possibly this worker's own).
        pub who_has: BTreeMap<Key, Vec<String>>,
        /// Higher runs first among this worker's ready tasks. Absent: 0.
        pub priority: Option<i64>,
        /// Resources the run holds. Absent: none.
        pub resources: Option<Resources>,
    }
}

wire_struct! {
    /// Worker -> scheduler: a task's result is stored.
    pub struct TaskFinished {
        /// The task's key.
        pub key: Key,
        /// Size of the result's msgpack encoding.
        pub nbytes: u64,
        /// Wall time the function ran, in microseconds. Absent: unknown.
        #[schemars(extend("x-ignorable" = true))]
        pub duration_us: Option<u64>,
        /// The result itself, when its nbytes is at most the `inline_bytes_max` of `worker-registered` (the worker holds it all the same). Absent: not sent.
        #[schemars(extend("x-since" = "1.1"))]
        #[schemars(extend("x-ignorable" = true))]
        pub value: Option<RawValue>,
    }
}

wire_struct! {
    /// Worker -> scheduler: a task's function failed (or its arguments could not be built).
    pub struct TaskErred {
        /// The task's key.
        pub key: Key,
        /// The error's type.
        pub error_type: String,
        /// The error's message.
        #[schemars(extend("x-ignorable" = true))]
        pub message: String,
        /// Traceback text, possibly empty.
        #[schemars(extend("x-ignorable" = true))]
        pub traceback: String,
    }
}

wire_struct! {
    /// Scheduler -> worker: forget these keys: drop their data and any
    /// queued or running task for them. No reply.
    pub struct FreeKeys {
        /// Keys to forget.
        pub keys: KeyList,
    }
}

wire_struct! {
    /// Scheduler -> worker: give this task back if it has not started.
    pub struct StealRequest {
        /// The task's key.
        pub key: Key,
    }
}

wire_struct! {
    /// Worker -> scheduler: the answer to `steal-request`.
    pub struct StealResponse {
        /// The task's key.
        pub key: Key,
        /// Whether the worker dropped the task (only one that had not started).
        pub stolen: bool,
    }
}

wire_struct! {
    /// Scheduler -> worker: store these values (scatter). Replied with `data-stored`.
    pub struct PutData {
        /// Scheduler-chosen id, echoed in the reply.
        pub request: u64,
        /// Values by key.
        pub data: BTreeMap<Key, RawValue>,
    }
}

wire_struct! {
    /// Worker -> scheduler: the answer to `put-data`.
    pub struct DataStored {
        /// The `put-data` this answers.
        pub request: u64,
        /// Size of each stored value.
        pub nbytes: BTreeMap<Key, u64>,
    }
}

wire_struct! {
    /// Worker -> scheduler: the worker now also holds these keys (copies fetched from peers).
    pub struct AddKeys {
        /// Size of each key's value.
        pub nbytes: BTreeMap<Key, u64>,
    }
}

wire_struct! {
    /// Worker -> scheduler: a dependency could not be fetched from any
    /// address in who_has. The worker has dropped `task`; the scheduler
    /// sends it again (to some worker) once the dependency is back.
    pub struct MissingData {
        /// The dependency.
        pub key: Key,
        /// The addresses that did not have it or could not be reached.
        pub addresses: Vec<String>,
        /// The task the worker gave back.
        pub task: Key,
    }
}
