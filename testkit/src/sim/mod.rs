//! A cluster on one virtual clock, without sockets or threads: [`Sim`]
//! drives a `SchedulerState` and several `WorkerState`s (and clients it
//! plays itself), delivering each machine's outputs as the other
//! machines' inputs, the way quinn-proto's test `Pair` drives two
//! connections. Workers' jobs run on the calling thread, through the real
//! built-in functions (`dask_worker::executor::run_job`), and take virtual
//! time: [`Sim::set_job_duration`] says how long a job takes (by default a
//! `sleep(s)` takes `s` and does not sleep, and everything else takes no
//! time). Each worker runs at most `nthreads` jobs at once, the others
//! wait on its executor, highest priority first, as the real one does.
//!
//! A round ([`Sim::step`]) takes every machine's outputs (answering a
//! worker's `Connect` by opening the other end on the machine listening
//! at that address), runs the jobs the executors hold, then delivers what
//! is in flight: in order on each connection, the connections in an order
//! the seed picks, so different seeds try different interleavings and a
//! seed replays one exactly. [`Sim::drive`] steps until nothing moves;
//! [`Sim::run_until`] also jumps the clock to the next timeout of any
//! machine (heartbeats, fetch retries, reconnection attempts) or job
//! completion until a condition holds. [`run_seeds`] runs a story under several seeds and
//! names the seed of a failure (`DASK_SIM_SEED=N` replays one).
//!
//! Faults are what a test asks for: [`Sim::kill_worker`] (a process that
//! dies: what it had not delivered is lost, its peers see their
//! connections close), [`Sim::cut_scheduler_connection`] (the network drops
//! one connection).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use dask_core::frame::{FrameDecoder, FrameEncoder};
use dask_core::handshake;
use dask_core::messages::{Gather, Role, TaskSpec, UpdateGraph};
use dask_core::worker::{
    Job, SpillStore, TaskDone, WorkerError, WorkerOutput, WorkerState, WorkerStateConfig,
};
use dask_core::{ConnId, Key, Message, RawValue, Timestamp};
use dask_scheduler::{SchedulerOutput, SchedulerState, SchedulerStateConfig};
use dask_worker::executor::run_job;
use dask_worker::FunctionRegistry;
use rmpv::Value;

use crate::Rng;

mod connections;
mod faults;
mod running;

/// The scheduler's address in a simulation.
pub const SCHEDULER_ADDRESS: &str = "tcp://scheduler.sim:8786";

/// Rounds [`Sim::drive`] takes before it calls the cluster stuck.
const ROUNDS_MAX: usize = 100_000;

/// A machine of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The scheduler.
    Scheduler,
    /// Worker number `i` ([`Sim::workers`]).
    Worker(usize),
    /// Client number `i` ([`Sim::clients`]).
    Client(usize),
}

/// One end of a connection: a machine and its name for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct End {
    node: Node,
    conn: ConnId,
}

/// Something on its way to one end.
#[derive(Debug)]
enum Delivery {
    /// A frame's messages.
    Frame(End, Vec<Message>),
    /// The other end closed (or died).
    Closed(End),
}

impl Delivery {
    fn to(&self) -> End {
        match self {
            Delivery::Frame(end, _) | Delivery::Closed(end) => *end,
        }
    }
}

/// A worker of the simulation.
pub struct SimWorker {
    /// Its state machine.
    pub state: WorkerState,
    /// False once killed or finished: it takes no more input.
    pub alive: bool,
    /// Its data address now.
    pub address: String,
    /// The ids the scheduler registered it under, in order.
    pub registrations: Vec<u64>,
    /// How it finished, once it has.
    pub finished: Option<Option<WorkerError>>,
    /// Data addresses it opened connections to, in order.
    pub dialed: Vec<String>,
    /// The keys of the jobs it started, in order.
    pub started: Vec<Key>,
    /// The lines it logged, in order.
    pub logs: Vec<String>,
    /// Jobs on its executor, not started yet, with their task's key.
    queued: Vec<(Key, Job)>,
    /// Jobs started: their result, and when it is ready.
    running: Vec<Running>,
}

/// A started job.
struct Running {
    key: Key,
    finish: Timestamp,
    done: TaskDone,
}

impl SimWorker {
    /// Jobs waiting on its executor for a thread.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The keys of the jobs running now (at most its `nthreads`).
    pub fn running(&self) -> impl Iterator<Item = &Key> + '_ {
        self.running.iter().map(|r| &r.key)
    }
}

/// A client of the simulation, played by the test: it sends what the test
/// says and keeps what the scheduler sends it.
pub struct SimClient {
    /// The scheduler's name for the client's connection.
    scheduler_conn: ConnId,
    /// Every message from the scheduler so far, in order.
    pub received: Vec<Message>,
    /// How many of them are `key-finished`.
    finished: usize,
    /// The last request id used.
    last_request: u64,
}

/// A simulated cluster. See the module docs.
pub struct Sim {
    /// The scheduler.
    pub scheduler: SchedulerState,
    /// The workers, in the order they were added.
    pub workers: Vec<SimWorker>,
    /// The clients, in the order they connected.
    pub clients: Vec<SimClient>,
    /// The virtual clock.
    pub now: Timestamp,
    /// Thread-time lost to imbalance so far: for each stretch of virtual
    /// time, the idle threads of every worker while another worker had
    /// jobs waiting on its executor for a thread, times the stretch.
    pub idle_while_queued: Duration,
    /// The scheduler's journal records so far (with
    /// `SchedulerStateConfig::journal`), as a journal file would hold them.
    pub journal: Vec<Vec<u8>>,
    seed: u64,
    rng: Rng,
    registry: FunctionRegistry,
    job_duration: Box<dyn Fn(&Job) -> Duration>,
    /// Each end's other end.
    peers: HashMap<End, End>,
    /// Which worker listens at each data address.
    listening: HashMap<String, usize>,
    in_flight: VecDeque<Delivery>,
    /// Ends whose frame was ended ([`WorkerOutput::EndFrame`]): their next
    /// message starts a new frame.
    frame_ended: HashSet<End>,
    last_conn: u64,
    last_port: u16,
    /// Frames go through the codec ([`Sim::set_wire`]): each receiving
    /// end's codec, kept as a connection keeps its own (buffers reused).
    wire: Option<HashMap<End, Codec>>,
}

impl Sim {
    /// A scheduler (checking its invariants after every event) and no
    /// worker; `seed` picks the delivery order.
    pub fn new(seed: u64) -> Sim {
        let config = SchedulerStateConfig {
            validate: true,
            ..SchedulerStateConfig::default()
        };
        Sim::with_scheduler_config(seed, config)
    }

    /// As [`Sim::new`], with the scheduler configured by `config` (without
    /// `validate`, the scheduler does only what it does in production: the
    /// instruction counts of `dask-instructions` measure that).
    pub fn with_scheduler_config(seed: u64, config: SchedulerStateConfig) -> Sim {
        let now = Timestamp::ZERO;
        Sim {
            scheduler: SchedulerState::new(config, now),
            workers: Vec::new(),
            clients: Vec::new(),
            now,
            idle_while_queued: Duration::ZERO,
            journal: Vec::new(),
            seed,
            // Any seed, 0 included, gives a generator that is not stuck at 0.
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            registry: sim_registry(),
            job_duration: Box::new(sleep_duration),
            peers: HashMap::new(),
            listening: HashMap::new(),
            in_flight: VecDeque::new(),
            frame_ended: HashSet::new(),
            last_conn: 0,
            last_port: 9000,
            wire: None,
        }
    }

    /// From now on every frame is encoded and decoded on its way, as on a
    /// socket (off by default: the stories need only the messages).
    pub fn set_wire(&mut self, on: bool) {
        self.wire = on.then(HashMap::new);
    }

    /// How long each job takes from now on (its result is computed when
    /// it starts and handed over then), instead of the default: a
    /// `sleep(s)` takes `s`, everything else no time.
    pub fn set_job_duration(&mut self, duration: impl Fn(&Job) -> Duration + 'static) {
        self.job_duration = Box::new(duration);
    }

    /// The seed this simulation runs under.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a worker offering the built-in functions, with `nthreads`
    /// threads, named `w<i>`; `configure` may change its configuration.
    /// It registers as the simulation runs. Returns its number.
    pub fn add_worker(
        &mut self,
        nthreads: usize,
        configure: impl FnOnce(&mut WorkerStateConfig),
    ) -> usize {
        self.add_worker_spilling(nthreads, configure, None)
    }

    /// [`Sim::add_worker`], spilling to `store` when given (with a memory
    /// limit in its configuration; see `WorkerState::with_spill_store`).
    pub fn add_worker_spilling(
        &mut self,
        nthreads: usize,
        configure: impl FnOnce(&mut WorkerStateConfig),
        store: Option<Box<dyn SpillStore>>,
    ) -> usize {
        let i = self.workers.len();
        let address = self.new_address(i);
        let functions = self.registry.names().into_iter().collect();
        let mut config = WorkerStateConfig::new(
            SCHEDULER_ADDRESS,
            format!("w{i}"),
            &address,
            nthreads,
            functions,
        );
        configure(&mut config);
        let mut state = WorkerState::new(config, self.now);
        if let Some(store) = store {
            state = state.with_spill_store(store);
        }
        self.workers.push(SimWorker {
            state,
            alive: true,
            address,
            registrations: Vec::new(),
            finished: None,
            dialed: Vec::new(),
            started: Vec::new(),
            logs: Vec::new(),
            queued: Vec::new(),
            running: Vec::new(),
        });
        i
    }

    /// A client connected to the scheduler (its hello answered). Returns
    /// its number.
    pub fn add_client(&mut self) -> usize {
        let k = self.clients.len();
        let (client, scheduler) = (self.new_conn(), self.new_conn());
        let now = self.now;
        in_scheduler(|| self.scheduler.handle_connected(now, scheduler));
        let client_end = End {
            node: Node::Client(k),
            conn: client,
        };
        let scheduler_end = End {
            node: Node::Scheduler,
            conn: scheduler,
        };
        self.link(client_end, scheduler_end);
        self.clients.push(SimClient {
            scheduler_conn: scheduler,
            received: Vec::new(),
            finished: 0,
            last_request: 0,
        });
        let hello = Message::from(handshake::offer(Role::Client, None));
        self.client_send(k, hello);
        self.drive();
        k
    }

    /// Client `k` sends `message` to the scheduler.
    pub fn client_send(&mut self, k: usize, message: Message) {
        let to = End {
            node: Node::Scheduler,
            conn: self.clients[k].scheduler_conn,
        };
        self.in_flight.push_back(Delivery::Frame(to, vec![message]));
    }

    /// Client `k` submits `tasks`, wanting `wanted`; returns the request id.
    pub fn submit(&mut self, k: usize, tasks: Vec<TaskSpec>, wanted: &[&str]) -> u64 {
        let request = self.next_request(k);
        let wanted = wanted.iter().map(|w| Key::from(*w)).collect();
        let graph = UpdateGraph {
            request,
            tasks,
            wanted,
            ack: None,
        };
        self.client_send(k, Message::UpdateGraph(graph));
        request
    }

    /// Client `k` gathers `keys`, runs the cluster until the answer comes
    /// (at most `limit` of virtual time), and returns the values; panics
    /// naming what is missing otherwise.
    pub fn gather(&mut self, k: usize, keys: &[&str], limit: Duration) -> BTreeMap<Key, RawValue> {
        let request = self.next_request(k);
        let keys = keys.iter().map(|key| Key::from(*key)).collect();
        self.client_send(k, Message::Gather(Gather { request, keys }));
        let answered = |sim: &Sim| {
            sim.clients[k].received.iter().rev().find_map(|m| match m {
                Message::GatherReply(r) if r.request == request => Some(r.clone()),
                _ => None,
            })
        };
        assert!(
            self.run_until(|sim| answered(sim).is_some(), limit),
            "seed {}: no gather-reply in {limit:?}",
            self.seed
        );
        let reply = answered(self).unwrap_or_else(|| unreachable!());
        assert!(
            reply.missing.is_empty(),
            "seed {}: gather found {:?} missing ({:?})",
            self.seed,
            reply.missing,
            reply.status
        );
        reply.data
    }

    /// Whether client `k` was told `key` finished.
    pub fn finished_key(&self, k: usize, key: &str) -> bool {
        self.clients[k]
            .received
            .iter()
            .any(|m| matches!(m, Message::KeyFinished(f) if f.key.as_str() == key))
    }

    /// How many keys client `k` was told finished.
    pub fn finished_count(&self, k: usize) -> usize {
        self.clients[k].finished
    }

    /// The messages in flight to `node` (sent, not delivered yet).
    pub fn in_flight_to(&self, node: Node) -> impl Iterator<Item = &Message> + '_ {
        self.in_flight.iter().flat_map(move |d| match d {
            Delivery::Frame(to, messages) if to.node == node => messages.as_slice(),
            _ => &[],
        })
    }

    fn next_request(&mut self, k: usize) -> u64 {
        let client = &mut self.clients[k];
        client.last_request += 1;
        client.last_request
    }
}

// Every call into the scheduler goes through `in_scheduler`, every call
// into a worker (its machine and its executor's jobs) through `in_worker`,
// and frames through the codec (`Sim::set_wire`) through `through_codec`:
// functions never inlined, so that `valgrind --tool=callgrind
// --toggle-collect=*in_scheduler*` counts the instructions of one side
// alone (`dask-instructions`, scripts/ci/instructions.sh).

#[inline(never)]
fn in_scheduler<R>(call: impl FnOnce() -> R) -> R {
    call()
}

#[inline(never)]
fn in_worker<R>(call: impl FnOnce() -> R) -> R {
    call()
}

/// The frame codec of one direction of a connection, as `net::Conn`
/// keeps it: an encoder at the sender, a decoder at the receiver, and the
/// bytes between them.
#[derive(Default)]
struct Codec {
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    bytes: Vec<u8>,
}

/// `messages` encoded as one frame and decoded again, as on a socket.
#[inline(never)]
fn through_codec(codec: &mut Codec, messages: Vec<Message>) -> Vec<Message> {
    for m in &messages {
        codec.encoder.push(m).expect("a simulated message encodes");
    }
    drop(messages);
    codec.bytes.clear();
    codec.encoder.drain_into(&mut codec.bytes);
    codec.decoder.push(&codec.bytes);
    codec
        .decoder
        .poll()
        .expect("a simulated frame decodes")
        .unwrap_or_default()
}

/// The built-in functions, with a `sleep` that returns at once: its time
/// passes on the virtual clock ([`sleep_duration`]).
fn sim_registry() -> FunctionRegistry {
    let mut registry = FunctionRegistry::builtins();
    registry.register("sleep", |args: &[Value], _kwargs: &[(String, Value)]| {
        Ok(args.get(1).cloned().unwrap_or(Value::Nil))
    });
    registry
}

/// The default job duration: a `sleep(seconds, ...)` takes its seconds
/// (the first positional argument), everything else no time.
pub fn sleep_duration(job: &Job) -> Duration {
    if job.function != "sleep" {
        return Duration::ZERO;
    }
    let seconds = match job.args.to_value() {
        Ok(Value::Array(args)) => args.first().and_then(Value::as_f64),
        _ => None,
    };
    seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::ZERO, Duration::from_secs_f64)
}

/// Runs `story` under seeds 0..`count` (or only `DASK_SIM_SEED`, when
/// set); a failure names its seed.
pub fn run_seeds(count: u64, story: impl Fn(u64)) {
    let seeds: Vec<u64> = match std::env::var("DASK_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("DASK_SIM_SEED is a number")],
        Err(_) => (0..count).collect(),
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| story(seed)));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!(
                "the story failed with seed {seed} (replay it with DASK_SIM_SEED={seed}): {what}"
            );
        }
    }
}
