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
    /// Jobs on its executor, not started yet.
    queued: Vec<Job>,
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

    // ---- faults -----------------------------------------------------------

    /// Worker `i` dies: what it had not delivered is lost, and the other
    /// end of each of its connections sees it close.
    pub fn kill_worker(&mut self, i: usize) {
        let node = Node::Worker(i);
        self.workers[i].alive = false;
        self.workers[i].queued.clear();
        self.workers[i].running.clear();
        self.in_flight.retain(|d| d.to().node != node);
        self.listening.retain(|_, w| *w != i);
        let mut ends: Vec<End> = self
            .peers
            .keys()
            .filter(|e| e.node == node)
            .copied()
            .collect();
        ends.sort();
        for end in ends {
            if let Some(other) = self.unlink(end) {
                // What it sent and was not delivered yet is lost too.
                self.in_flight
                    .retain(|d| !matches!(d, Delivery::Frame(to, _) if *to == other));
                self.in_flight.push_back(Delivery::Closed(other));
            }
        }
    }

    /// The network drops worker `i`'s scheduler connection: both ends see
    /// it close (what was in flight on it is lost).
    pub fn cut_scheduler_connection(&mut self, i: usize) {
        let Some(conn) = self.workers[i].state.scheduler_conn() else {
            return;
        };
        let end = End {
            node: Node::Worker(i),
            conn,
        };
        if let Some(other) = self.unlink(end) {
            self.in_flight.retain(|d| d.to() != end && d.to() != other);
            self.in_flight.push_back(Delivery::Closed(end));
            self.in_flight.push_back(Delivery::Closed(other));
        }
    }

    /// The scheduler process dies and a new one starts on its journal
    /// (the records the old one emitted: give it a configuration with
    /// `journal` on): every connection to it closes, what was in flight to
    /// or from it is lost, and the new scheduler restores the records
    /// before anyone reconnects (workers do when their configuration has
    /// a reconnect timeout; clients with [`Sim::reconnect_client`]).
    pub fn crash_scheduler(&mut self) {
        let config = self.scheduler.config().clone();
        let mut ends: Vec<End> = self
            .peers
            .keys()
            .filter(|e| e.node == Node::Scheduler)
            .copied()
            .collect();
        ends.sort();
        for end in ends {
            if let Some(other) = self.unlink(end) {
                self.in_flight.retain(|d| d.to() != end && d.to() != other);
                self.in_flight.push_back(Delivery::Closed(other));
            }
        }
        self.in_flight.retain(|d| d.to().node != Node::Scheduler);
        let mut scheduler = SchedulerState::new(config, self.now);
        if let Err(e) = scheduler.restore(None, &self.journal) {
            panic!("seed {}: the journal does not restore: {e}", self.seed);
        }
        self.scheduler = scheduler;
    }

    /// Client `k` connects again, naming the session its last hello reply
    /// gave (dask/1.1 `session`), and the cluster runs until nothing moves.
    pub fn reconnect_client(&mut self, k: usize) {
        let session = self.clients[k].received.iter().rev().find_map(|m| match m {
            Message::Hello(h) => h.session.clone(),
            _ => None,
        });
        let (client, scheduler) = (self.new_conn(), self.new_conn());
        self.scheduler.handle_connected(self.now, scheduler);
        self.link(
            End {
                node: Node::Client(k),
                conn: client,
            },
            End {
                node: Node::Scheduler,
                conn: scheduler,
            },
        );
        self.clients[k].scheduler_conn = scheduler;
        let mut hello = handshake::offer(Role::Client, None);
        hello.session = session;
        self.client_send(k, Message::from(hello));
        self.drive();
    }

    // ---- running ----------------------------------------------------------

    /// One round: every machine's outputs, the executors' jobs, then what
    /// is in flight. Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let routed = self.route();
        let delivered = self.deliver();
        routed || delivered
    }

    /// Rounds until nothing moves (timeouts aside).
    pub fn drive(&mut self) {
        for _ in 0..ROUNDS_MAX {
            if !self.step() {
                return;
            }
        }
        panic!("seed {}: still busy after {ROUNDS_MAX} rounds", self.seed);
    }

    /// Rounds until `condition` holds, checked after each half of a round
    /// (outputs taken, then delivered), so a test can act between them
    /// (e.g. kill a worker while its reply is in flight). False when the
    /// cluster comes to rest first.
    pub fn step_until(&mut self, mut condition: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..ROUNDS_MAX {
            if condition(self) {
                return true;
            }
            let routed = self.route();
            if condition(self) {
                return true;
            }
            let delivered = self.deliver();
            if !routed && !delivered {
                return condition(self);
            }
        }
        panic!("seed {}: still busy after {ROUNDS_MAX} rounds", self.seed);
    }

    /// Drives the cluster and jumps the clock from timeout to timeout
    /// until `condition` holds (true; checked as [`Sim::step_until`]
    /// does, so the cluster stops at the first moment it holds) or `limit`
    /// of virtual time has passed (false).
    pub fn run_until(&mut self, mut condition: impl FnMut(&Sim) -> bool, limit: Duration) -> bool {
        let end = self.now + limit;
        loop {
            if self.step_until(&mut condition) {
                return true;
            }
            if !self.advance(end) {
                return condition(self);
            }
        }
    }

    /// Jumps the clock to the earliest timeout of any machine or job
    /// completion, if it is not past `end`, and runs the timeouts due (the
    /// next round hands over the results due). False when there is none.
    pub fn advance(&mut self, end: Timestamp) -> bool {
        let next = self
            .workers
            .iter()
            .filter(|w| w.alive)
            .filter_map(|w| w.state.poll_timeout())
            .chain(self.scheduler.poll_timeout())
            .chain(self.next_job_finish())
            .min();
        let Some(at) = next.filter(|&at| at <= end) else {
            return false;
        };
        if at > self.now {
            self.idle_while_queued += (at - self.now) * self.idle_threads_while_queued();
        }
        self.now = self.now.max(at);
        let now = self.now;
        if self.scheduler.poll_timeout().is_some_and(|t| t <= now) {
            in_scheduler(|| self.scheduler.handle_timeout(now));
        }
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            if w.alive && w.state.poll_timeout().is_some_and(|t| t <= now) {
                in_worker(|| w.state.handle_timeout(now));
                // As its loop does: outputs first (held reports go out),
                // then the next timeout.
                while let Some(output) = in_worker(|| self.workers[i].state.poll_output()) {
                    self.worker_output(i, output);
                }
                let next = self.workers[i].state.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > now),
                    "seed {}: worker {i}'s next timeout {next:?} is not after {now} (its loop would spin)",
                    self.seed
                );
            }
        }
        true
    }

    /// Idle threads of live workers, when another live worker has jobs
    /// waiting for a thread (else 0).
    pub fn idle_threads_while_queued(&self) -> u32 {
        let live = || self.workers.iter().enumerate().filter(|(_, w)| w.alive);
        let idle = |w: &SimWorker| w.state.config().nthreads.saturating_sub(w.running.len());
        live()
            .filter(|&(i, _)| live().any(|(j, v)| j != i && !v.queued.is_empty()))
            .map(|(_, w)| idle(w) as u32)
            .sum()
    }

    /// Takes every machine's outputs and runs the executors' jobs.
    fn route(&mut self) -> bool {
        let mut moved = false;
        while let Some(output) = in_scheduler(|| self.scheduler.poll_output()) {
            moved = true;
            match output {
                SchedulerOutput::Send(conn, message) => self.send_from(
                    End {
                        node: Node::Scheduler,
                        conn,
                    },
                    message,
                ),
                SchedulerOutput::Close(conn) => self.close_from(End {
                    node: Node::Scheduler,
                    conn,
                }),
                SchedulerOutput::Journal => self
                    .journal
                    .extend(in_scheduler(|| self.scheduler.take_journal_records())),
            }
        }
        for i in 0..self.workers.len() {
            while self.workers[i].alive {
                let Some(output) = in_worker(|| self.workers[i].state.poll_output()) else {
                    break;
                };
                moved = true;
                self.worker_output(i, output);
            }
            moved |= self.run_jobs(i);
        }
        moved
    }

    /// Delivers what is in flight now: in order per connection, the
    /// connections in the seed's order.
    fn deliver(&mut self) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let mut by_end: BTreeMap<End, Vec<Delivery>> = BTreeMap::new();
        for delivery in self.in_flight.drain(..) {
            by_end.entry(delivery.to()).or_default().push(delivery);
        }
        let mut groups: Vec<Vec<Delivery>> = by_end.into_values().collect();
        // Fisher-Yates with the seeded generator.
        for i in (1..groups.len()).rev() {
            let j = self.rng.below(i + 1);
            groups.swap(i, j);
        }
        let now = self.now;
        for mut delivery in groups.into_iter().flatten() {
            if let (Some(codecs), Delivery::Frame(to, messages)) = (&mut self.wire, &mut delivery) {
                let codec = codecs.entry(*to).or_default();
                *messages = through_codec(codec, std::mem::take(messages));
            }
            match delivery {
                Delivery::Frame(
                    End {
                        node: Node::Scheduler,
                        conn,
                    },
                    messages,
                ) => in_scheduler(|| self.scheduler.handle_frame(now, conn, messages)),
                Delivery::Closed(End {
                    node: Node::Scheduler,
                    conn,
                }) => in_scheduler(|| self.scheduler.handle_closed(now, conn)),
                Delivery::Frame(
                    End {
                        node: Node::Worker(i),
                        conn,
                    },
                    messages,
                ) => {
                    if self.workers[i].alive {
                        let w = &mut self.workers[i].state;
                        in_worker(|| w.handle_frame(now, conn, messages));
                    }
                }
                Delivery::Closed(End {
                    node: Node::Worker(i),
                    conn,
                }) => {
                    if self.workers[i].alive {
                        let reason = "closed by the other side";
                        let w = &mut self.workers[i].state;
                        in_worker(|| w.handle_closed(now, conn, reason));
                    }
                }
                Delivery::Frame(
                    End {
                        node: Node::Client(k),
                        ..
                    },
                    messages,
                ) => {
                    let client = &mut self.clients[k];
                    let finished = messages
                        .iter()
                        .filter(|m| matches!(m, Message::KeyFinished(_)));
                    client.finished += finished.count();
                    client.received.extend(messages)
                }
                Delivery::Closed(End {
                    node: Node::Client(_),
                    ..
                }) => {}
            }
        }
        true
    }

    fn worker_output(&mut self, i: usize, output: WorkerOutput) {
        let now = self.now;
        let me = |conn| End {
            node: Node::Worker(i),
            conn,
        };
        match output {
            WorkerOutput::Connect { address } => {
                let conn = self.new_conn();
                let w = &mut self.workers[i].state;
                in_worker(|| w.handle_connecting(now, Ok(conn)));
                self.workers[i].dialed.push(address.clone());
                let target = if address == SCHEDULER_ADDRESS {
                    Some(Node::Scheduler)
                } else {
                    self.listening
                        .get(&address)
                        .copied()
                        .filter(|&j| self.workers[j].alive)
                        .map(Node::Worker)
                };
                let Some(node) = target else {
                    // Nobody listens there: refused.
                    self.in_flight.push_back(Delivery::Closed(me(conn)));
                    return;
                };
                let other = self.new_conn();
                match node {
                    Node::Scheduler => in_scheduler(|| self.scheduler.handle_connected(now, other)),
                    Node::Worker(j) => {
                        let w = &mut self.workers[j].state;
                        in_worker(|| w.handle_connected(now, other))
                    }
                    Node::Client(_) => unreachable!("clients do not listen"),
                }
                self.link(me(conn), End { node, conn: other });
            }
            WorkerOutput::Send(conn, message) => self.send_from(me(conn), message),
            WorkerOutput::EndFrame(conn) => self.end_frame_from(me(conn)),
            WorkerOutput::Close(conn) => self.close_from(me(conn)),
            WorkerOutput::Listen => {
                let address = self.new_address(i);
                let old = std::mem::replace(&mut self.workers[i].address, address.clone());
                self.listening.remove(&old);
                let w = &mut self.workers[i].state;
                in_worker(|| w.handle_listening(now, address));
            }
            WorkerOutput::Execute(job) => self.workers[i].queued.push(job),
            WorkerOutput::Withdraw { run_id } => {
                let jobs = &mut self.workers[i].queued;
                let at = jobs.iter().position(|j| j.run_id == run_id);
                if let Some(at) = at {
                    jobs.remove(at);
                }
                let w = &mut self.workers[i].state;
                in_worker(|| w.handle_withdrawn(now, run_id, at.is_some()));
            }
            WorkerOutput::Registered { id, .. } => self.workers[i].registrations.push(id),
            // Simulated workers list no `value-local`: none comes.
            WorkerOutput::ReadLocal(read) => {
                let refused = Err("no memory is read in the simulation".to_owned());
                self.workers[i]
                    .state
                    .handle_local_read(self.now, read, refused);
            }
            WorkerOutput::Log(record) => self.workers[i].logs.push(record.message),
            WorkerOutput::Finished { error } => {
                let w = &mut self.workers[i];
                w.finished = Some(error);
                w.alive = false;
            }
        }
    }

    /// Worker `i`'s executor: starts queued jobs on its free threads
    /// (highest priority first, then in arrival order, as the real one
    /// does) and hands the worker the results due by now, earliest first.
    /// Returns whether anything started or finished.
    fn run_jobs(&mut self, i: usize) -> bool {
        let mut moved = false;
        loop {
            let w = &mut self.workers[i];
            if !w.alive {
                return moved;
            }
            let free = w.state.config().nthreads.saturating_sub(w.running.len());
            if free > 0 && !w.queued.is_empty() {
                w.queued
                    .sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
                let batch: Vec<Job> = w.queued.drain(..free.min(w.queued.len())).collect();
                for job in batch {
                    let took = (self.job_duration)(&job);
                    let mut done = in_worker(|| run_job(&self.registry, &job));
                    done.duration_us = took.as_micros() as u64;
                    let w = &mut self.workers[i];
                    w.started.push(job.key.clone());
                    w.running.push(Running {
                        key: job.key,
                        finish: self.now + took,
                        done,
                    });
                }
                moved = true;
            }
            let w = &mut self.workers[i];
            let now = self.now;
            let Some(at) = (0..w.running.len())
                .filter(|&r| w.running[r].finish <= now)
                .min_by_key(|&r| w.running[r].finish)
            else {
                return moved;
            };
            let finished = w.running.remove(at);
            in_worker(|| w.state.handle_task_done(now, finished.done));
            moved = true;
        }
    }

    /// When the next running job of any live worker finishes.
    fn next_job_finish(&self) -> Option<Timestamp> {
        self.workers
            .iter()
            .filter(|w| w.alive)
            .flat_map(|w| w.running.iter().map(|r| r.finish))
            .min()
    }

    // ---- connections ------------------------------------------------------

    fn new_conn(&mut self) -> ConnId {
        self.last_conn += 1;
        ConnId(self.last_conn)
    }

    fn new_address(&mut self, i: usize) -> String {
        self.last_port += 1;
        let address = format!("tcp://worker{i}.sim:{}", self.last_port);
        self.listening.insert(address.clone(), i);
        address
    }

    fn link(&mut self, a: End, b: End) {
        self.peers.insert(a, b);
        self.peers.insert(b, a);
    }

    fn unlink(&mut self, end: End) -> Option<End> {
        let other = self.peers.remove(&end)?;
        self.peers.remove(&other);
        self.frame_ended.remove(&end);
        self.frame_ended.remove(&other);
        Some(other)
    }

    /// `message` from `from` to the other end, in the frame being built
    /// there unless that frame was ended.
    fn send_from(&mut self, from: End, message: Message) {
        let Some(&to) = self.peers.get(&from) else {
            return; // the connection is gone
        };
        let new_frame = self.frame_ended.remove(&from);
        if let Some(Delivery::Frame(end, messages)) = self.in_flight.back_mut() {
            if *end == to && !new_frame {
                messages.push(message);
                return;
            }
        }
        self.in_flight.push_back(Delivery::Frame(to, vec![message]));
    }

    fn end_frame_from(&mut self, from: End) {
        self.frame_ended.insert(from);
    }

    fn close_from(&mut self, from: End) {
        if let Some(to) = self.unlink(from) {
            self.in_flight.push_back(Delivery::Closed(to));
        }
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
