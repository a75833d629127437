//! A story for the worker's state machine (`dask_core::worker`): messages
//! and raw bytes from the scheduler, requests from peers, replies from the
//! holders it fetches from, connections that fail, executor completions
//! and time, played into `WorkerState` through its connections (the
//! scheduler's, registered first; peers that connect and say hello; the
//! connections it opens to holders, which answer hello before their first
//! reply) while a model of the executor and of the edge checks what comes
//! out:
//!
//! - every send, frame end and close names a connection that is open (one
//!   the worker asked for, or a peer's), and each is closed once;
//! - the runs out on the executor are exactly the ones the model holds
//!   (`running()`), never more than nthreads + dispatch_ahead;
//! - a withdrawal is answered at once, as the event loop does;
//! - nothing goes to the scheduler after the worker closed that connection;
//! - every message it emits encodes and decodes again (no key, value or
//!   depth a peer would refuse);
//! - after a tick, the next timeout is not in the past (a loop waiting for
//!   it would spin), unless the scheduler connection is closed (the loop
//!   then ends).
//!
//! Each story is played twice: by a worker without a memory limit, and by
//! one with a small limit spilling to a store in memory whose writes and
//! reads fail while the story says so ([`Story::spilling`]); there the
//! accounting is checked too: values in memory and spilled add up to the
//! stored ones, and the store holds exactly the spilled keys.
//!
//! Keys, addresses and request ids come from small pools, so messages
//! collide: results for freed tasks, replies to requests never made,
//! dependencies whose only holder is the worker itself.
//!
//! Shared by the `worker_messages` fuzz target (bytes in: [`run`]) and
//! `worker/tests/hostile.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use dask_core::frame::FrameDecoder;
use dask_core::handshake;
use dask_core::messages::*;
use dask_core::msgpack::task_ref_value;
use dask_core::worker::{
    Job, MemorySpillStore, SpillStore, TaskDone, TaskError, WorkerOutput, WorkerState,
    WorkerStateConfig,
};
use dask_core::{ConnId, Key, Message, RawValue, Timestamp};
use rmpv::Value;

use super::common;
use super::common::small;

const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];
/// The worker's own data address, then two other holders.
const ADDRESSES: [&str; 3] = [
    "tcp://127.0.0.1:1000",
    "tcp://127.0.0.1:1001",
    "tcp://127.0.0.1:1002",
];
const FUNCTIONS: [&str; 3] = ["f", "g", "unknown"];
/// The scheduler's address.
const SCHEDULER: &str = "tcp://127.0.0.1:8786";
const NTHREADS: usize = 2;
const DISPATCH_AHEAD: usize = 2;
/// Memory limit of the spilling worker: one of the story's larger results
/// (up to 255 bytes), or a few small values, take it past the target
/// (60 %) and the pause (80 %).
const MEMORY_LIMIT: u64 = 64;

/// One step of a story, as plain numbers (so proptest shrinks them).
#[derive(Debug, Clone)]
pub enum Step {
    /// A message of the vocabulary from the scheduler.
    Scheduler { op: u8, a: u8, b: u8, n: u64 },
    /// Raw bytes on the scheduler connection, through a frame decoder.
    SchedulerBytes { bytes: Vec<u8> },
    /// A peer asks for keys.
    PeerRequest { peer: u8, keys: u8 },
    /// A holder answers one of our fetches (or a made-up request).
    PeerReply { which: u8, a: u8, b: u8, n: u64 },
    /// The connection to a holder failed.
    PeerFailed { which: u8 },
    /// A peer's replies were written out.
    PeerDrained { peer: u8 },
    /// A peer hung up.
    PeerClosed { peer: u8 },
    /// The executor finishes one of the runs it holds.
    Done { which: u8, ok: bool, size: u8 },
    /// Time passes.
    Tick { millis: u16 },
    /// From now on the spill store's writes, reads fail or work (bits 0
    /// and 1 of `fails`); nothing for a worker without a store.
    Store { fails: u8 },
}

impl Step {
    /// Reads one step from the front of `data` (a fuzzer's bytes); `None`
    /// when they are used up.
    pub fn parse(data: &mut &[u8]) -> Option<Step> {
        let kind = common::take_byte(data)?;
        let mut byte = || common::take_byte(data).unwrap_or(0);
        Some(match kind % 32 {
            0..=9 | 24..=31 => {
                let (op, a, b) = (byte(), byte(), byte());
                let n = u64::from_le_bytes(std::array::from_fn(|_| byte()));
                Step::Scheduler { op, a, b, n }
            }
            10 => {
                let len = (byte() % 64) as usize;
                Step::SchedulerBytes {
                    bytes: (0..len).map(|_| byte()).collect(),
                }
            }
            11 | 12 => Step::PeerRequest {
                peer: byte(),
                keys: byte(),
            },
            13..=15 => {
                let (which, a, b) = (byte(), byte(), byte());
                let n = u64::from_le_bytes(std::array::from_fn(|_| byte()));
                Step::PeerReply { which, a, b, n }
            }
            16 => Step::PeerFailed { which: byte() },
            17 => Step::PeerDrained { peer: byte() },
            18 => Step::PeerClosed { peer: byte() },
            19..=21 => Step::Done {
                which: byte(),
                ok: byte() % 4 != 0,
                size: byte(),
            },
            22 => Step::Store { fails: byte() },
            _ => Step::Tick {
                millis: u16::from_le_bytes([byte(), byte()]),
            },
        })
    }
}

/// Plays the steps `data` encodes, by a worker without a memory limit and
/// by a spilling one; panics, naming the step, when a check fails.
pub fn run(data: &[u8]) {
    let mut story = Story::new();
    common::play_steps("worker", data, Step::parse, |step| story.play(step));
    let mut story = Story::spilling();
    common::play_steps("spilling worker", data, Step::parse, |step| {
        story.play(step)
    });
}

fn key(i: u8) -> Key {
    common::pool_key(&KEYS, i)
}

/// The keys of a bit mask.
fn keys(mask: u8) -> Vec<Key> {
    common::pool_keys(&KEYS, mask)
}

fn value(i: u8) -> RawValue {
    RawValue::from_value(&Value::from(i))
}

/// Message number `op` of the vocabulary, as the scheduler would send it.
fn scheduler_message(op: u8, a: u8, b: u8, n: u64) -> Message {
    match op % 64 {
        0..=27 => {
            // About one dependency in four keys.
            let deps = keys(b & (b >> 4) & !(1 << (a as usize % KEYS.len())));
            let who_has: BTreeMap<Key, Vec<String>> = deps
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let holders = (n >> (3 * i)) & 7;
                    let addresses = (0..3)
                        .filter(|j| holders & (1 << j) != 0)
                        .map(|j| ADDRESSES[j].to_string())
                        .collect();
                    (k.clone(), addresses)
                })
                .collect();
            let args: Vec<Value> = deps
                .iter()
                .map(|k| task_ref_value(k.as_str()))
                .chain([Value::from(a)])
                .collect();
            Message::ComputeTask(ComputeTask {
                key: key(a),
                function: FUNCTIONS[match (n >> 32) % 8 {
                    0 => 2,
                    1 | 2 => 1,
                    _ => 0,
                }]
                .into(),
                args: RawValue::from_value(&Value::Array(args)),
                kwargs: None,
                who_has,
                priority: Some(i64::from(b % 3)),
                resources: match (n >> 40) % 4 {
                    0 => Some([("GPU".to_string(), 1.0)].into()),
                    1 => Some([("GPU".to_string(), 5.0)].into()),
                    _ => None,
                },
            })
        }
        28..=35 => Message::FreeKeys(FreeKeys {
            keys: keys(a).into(),
        }),
        36..=39 => Message::StealRequest(StealRequest { key: key(a) }),
        40..=43 => Message::PutData(PutData {
            request: small(n),
            data: keys(a).into_iter().map(|k| (k, value(b))).collect(),
        }),
        44..=47 => Message::GetData(GetData {
            request: small(n),
            keys: keys(a),
        }),
        48..=51 => Message::Heartbeat(Heartbeat { metrics: None }),
        52..=55 => Message::WorkerRegistered(WorkerRegistered {
            id: 1,
            heartbeat_interval_ms: small(n),
            inline_bytes_max: None,
        }),
        56..=60 => Message::ErrorReport(ErrorReport {
            code: 4001,
            message: "not fatal".into(),
            fatal: false,
            request: Some(small(n)),
            keys: None,
        }),
        // The ends of a story: close, a fatal error, a message a scheduler
        // never sends.
        61 => Message::Close(Close {
            reason: None,
            reconnect: None,
        }),
        62 => Message::ErrorReport(ErrorReport {
            code: 2001,
            message: "fatal".into(),
            fatal: true,
            request: None,
            keys: None,
        }),
        _ => Message::KeyFinished(KeyFinished {
            key: key(a),
            nbytes: 1,
            request: None,
            value: None,
        }),
    }
}

/// The worker, its executor and its edge as models, and the fetches it
/// asked for.
pub struct Story {
    state: WorkerState,
    now: Timestamp,
    /// Runs out on the executor, oldest first; the first NTHREADS are
    /// "started" (not withdrawable).
    jobs: Vec<Job>,
    /// Fetches sent and not answered: (address, request).
    fetches: Vec<(String, GetData)>,
    decoder: FrameDecoder,
    /// The scheduler connection, until it is closed.
    scheduler: Option<ConnId>,
    /// The finished worker's loop would have ended.
    closed: bool,
    /// Connections open, as the edge sees them.
    open: HashSet<ConnId>,
    /// The last connection id given (the story plays the edge).
    last_conn: u64,
    /// Peers' connections to the worker, by peer number.
    peers: HashMap<u8, ConnId>,
    /// The worker's connections to holders, by address, and whether the
    /// holder has said hello on it.
    holders: HashMap<String, (ConnId, bool)>,
    /// Alternates the answers to withdrawals that could go either way.
    coin: u64,
    /// The spilling worker's store (shared with the state).
    store: Option<FlakyStore>,
}

/// A spill store in memory whose writes and reads fail while told to.
#[derive(Clone, Default)]
struct FlakyStore(Arc<Mutex<Flaky>>);

#[derive(Default)]
struct Flaky {
    entries: MemorySpillStore,
    /// Keys held, as the store sees them (to compare with the state's).
    keys: HashSet<Key>,
    fail_writes: bool,
    fail_reads: bool,
}

impl FlakyStore {
    fn with<T>(&self, f: impl FnOnce(&mut Flaky) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl SpillStore for FlakyStore {
    fn put(&mut self, key: &Key, value: &RawValue) -> Result<(), String> {
        self.with(|s| {
            if s.fail_writes {
                return Err("disk full".into());
            }
            if !s.keys.insert(key.clone()) {
                return Err(format!("{key} put twice"));
            }
            s.entries.put(key, value)
        })
    }

    fn get(&mut self, key: &Key) -> Result<RawValue, String> {
        self.with(|s| {
            if s.fail_reads {
                return Err("unreadable".into());
            }
            s.entries.get(key)
        })
    }

    fn remove(&mut self, key: &Key) {
        self.with(|s| {
            s.keys.remove(key);
            s.entries.remove(key);
        })
    }
}

impl Default for Story {
    fn default() -> Self {
        Story::new()
    }
}

impl Story {
    /// A worker with 2 threads, one GPU, functions `f` and `g`, and small
    /// reply limits (so replies split and peers get `busy`), registered.
    pub fn new() -> Story {
        Story::with(None)
    }

    /// The same worker with a memory limit of [`MEMORY_LIMIT`] bytes,
    /// spilling to a store that fails when a [`Step::Store`] says so.
    pub fn spilling() -> Story {
        Story::with(Some(FlakyStore::default()))
    }

    fn with(store: Option<FlakyStore>) -> Story {
        let functions: HashSet<String> = ["f", "g"].iter().map(|f| f.to_string()).collect();
        let mut config =
            WorkerStateConfig::new(SCHEDULER, "story", ADDRESSES[0], NTHREADS, functions);
        config.dispatch_ahead = DISPATCH_AHEAD;
        config.resources = [("GPU".to_string(), 1.0)].into();
        config.value_bytes_max = 1024;
        config.reply_message_bytes_max = 64;
        config.reply_bytes_in_flight_max = 256;
        if store.is_some() {
            config.memory_limit = Some(MEMORY_LIMIT);
        }
        let mut state = WorkerState::new(config, Timestamp::ZERO);
        if let Some(store) = &store {
            state = state.with_spill_store(Box::new(store.clone()));
        }
        let mut story = Story {
            state,
            now: Timestamp::ZERO,
            jobs: Vec::new(),
            fetches: Vec::new(),
            decoder: FrameDecoder::default(),
            scheduler: None,
            closed: false,
            open: HashSet::new(),
            last_conn: 0,
            peers: HashMap::new(),
            holders: HashMap::new(),
            coin: 0,
            store,
        };
        story.register();
        story
    }

    /// Plays the scheduler's side of the registration.
    fn register(&mut self) {
        if let Err(e) = self.drain() {
            panic!("registering: {e}");
        }
        let conn = self.state.scheduler_conn().expect("a scheduler connection");
        self.scheduler = Some(conn);
        let mut hello = handshake::offer(Role::Scheduler, None);
        hello.id = Some(1);
        let registered = WorkerRegistered {
            id: 1,
            heartbeat_interval_ms: 1000,
            inline_bytes_max: None,
        };
        let messages = vec![Message::from(hello), Message::WorkerRegistered(registered)];
        self.state.handle_frame(self.now, conn, messages);
        if let Err(e) = self.drain() {
            panic!("registering: {e}");
        }
        assert!(self.state.is_registered());
    }

    /// Peer `peer`'s connection, connecting and saying hello first when it
    /// has none (`None`: refused).
    fn peer(&mut self, peer: u8) -> Result<Option<ConnId>, String> {
        let peer = peer % 3;
        if let Some(&conn) = self.peers.get(&peer) {
            if self.open.contains(&conn) {
                return Ok(Some(conn));
            }
        }
        let conn = self.new_conn();
        self.state.handle_connected(self.now, conn);
        self.drain()?;
        if !self.open.contains(&conn) {
            return Ok(None); // refused
        }
        self.peers.insert(peer, conn);
        let hello = Message::from(handshake::offer(Role::Peer, None));
        self.state.handle_message(self.now, conn, hello);
        self.drain()?;
        Ok(Some(conn))
    }

    /// A connection id the edge has not given before, open from now on.
    fn new_conn(&mut self) -> ConnId {
        self.last_conn += 1;
        let conn = ConnId(self.last_conn);
        self.open.insert(conn);
        conn
    }

    /// The worker's memory counts (spills, failures, pauses so far).
    pub fn memory(&self) -> dask_core::worker::MemoryUsage {
        self.state.memory()
    }

    /// Plays one step, then drains and checks.
    pub fn play(&mut self, step: &Step) -> Result<(), String> {
        let now = self.now;
        match step {
            Step::Scheduler { op, a, b, n } => {
                let m = scheduler_message(*op, *a, *b, *n);
                if let Some(conn) = self.scheduler {
                    self.state.handle_message(now, conn, m);
                }
            }
            Step::SchedulerBytes { bytes } => {
                let Some(conn) = self.scheduler else {
                    return Ok(());
                };
                self.decoder.push(bytes);
                loop {
                    match self.decoder.poll() {
                        Ok(Some(batch)) => self.state.handle_frame(now, conn, batch),
                        Ok(None) => break,
                        Err(e) => {
                            self.state.handle_protocol_error(now, conn, e);
                            self.decoder = FrameDecoder::default();
                            break;
                        }
                    }
                    self.drain()?;
                }
            }
            Step::PeerRequest { peer, keys: mask } => {
                let request = GetData {
                    request: u64::from(*mask),
                    keys: keys(*mask),
                };
                if let Some(conn) = self.peer(*peer)? {
                    self.state
                        .handle_message(now, conn, Message::GetData(request));
                }
            }
            Step::PeerReply { which, a, b, n } => {
                let (address, request, asked) = match self.fetches.len() {
                    len if len > 0 && n % 4 > 0 => {
                        let (address, get) = self.fetches.remove(*which as usize % len);
                        (address, get.request, get.keys)
                    }
                    _ => (
                        ADDRESSES[*which as usize % ADDRESSES.len()].to_string(),
                        small(*n),
                        keys(*a),
                    ),
                };
                let reply = if b & 7 == 7 {
                    Message::Busy(Busy { request })
                } else {
                    // Found: the asked keys the mask keeps; the rest missing
                    // (or, now and then, left out: a holder that says
                    // nothing about a key).
                    let mut found = Vec::new();
                    let mut missing = Vec::new();
                    for (i, k) in asked.into_iter().enumerate() {
                        if b & (1 << (i % 8)) != 0 {
                            found.push(k);
                        } else {
                            missing.push(k);
                        }
                    }
                    Message::Data(Data {
                        request,
                        data: found.into_iter().map(|k| (k, value(*a))).collect(),
                        missing: if n & 8 == 0 { missing } else { Vec::new() },
                    })
                };
                // The reply comes on the worker's connection to that
                // holder, after the holder's hello.
                let Some((conn, said_hello)) = self.holders.get_mut(&address) else {
                    return Ok(());
                };
                let conn = *conn;
                if !std::mem::replace(said_hello, true) {
                    let hello = Message::from(handshake::offer(Role::Worker, None));
                    self.state.handle_message(now, conn, hello);
                }
                self.state.handle_message(now, conn, reply);
            }
            Step::PeerFailed { which } => {
                let address = ADDRESSES[*which as usize % ADDRESSES.len()];
                self.fetches.retain(|(a, _)| a != address);
                if let Some(&(conn, _)) = self.holders.get(address) {
                    self.state.handle_closed(now, conn, "connection reset");
                }
            }
            Step::PeerDrained { peer } => {
                if let Some(&conn) = self.peers.get(&(peer % 3)) {
                    self.state.handle_drained(now, conn);
                }
            }
            Step::PeerClosed { peer } => {
                if let Some(&conn) = self.peers.get(&(peer % 3)) {
                    self.state.handle_closed(now, conn, "end of stream");
                }
            }
            Step::Done { which, ok, size } => {
                if self.jobs.is_empty() {
                    return Ok(());
                }
                // Only a started run can finish.
                let started = self.jobs.len().min(NTHREADS);
                let job = self.jobs.remove(*which as usize % started);
                let result = if *ok {
                    // Now and then over value_bytes_max: ValueTooLarge.
                    let len = if *size > 250 {
                        2000
                    } else {
                        usize::from(*size)
                    };
                    let bytes = vec![*size; len];
                    Ok(RawValue::from_value(&Value::Binary(bytes)))
                } else {
                    Err(TaskError::new("E", "failed"))
                };
                self.state.handle_task_done(
                    now,
                    TaskDone {
                        run_id: job.run_id,
                        result,
                        duration_us: 1,
                    },
                );
            }
            Step::Tick { millis } => {
                self.now += std::time::Duration::from_millis(u64::from(*millis));
                self.state.handle_timeout(self.now);
            }
            Step::Store { fails } => {
                if let Some(store) = &self.store {
                    store.with(|s| {
                        s.fail_writes = fails & 1 != 0;
                        s.fail_reads = fails & 2 != 0;
                    });
                }
            }
        }
        self.drain()?;
        self.check(matches!(step, Step::Tick { .. }))
    }

    /// Takes every output, answering withdrawals at once, and checks that
    /// it names connections that are open.
    fn drain(&mut self) -> Result<(), String> {
        while let Some(output) = self.state.poll_output() {
            match output {
                WorkerOutput::Connect { address } => {
                    if address == ADDRESSES[0] {
                        return Err("a connection to its own address".into());
                    }
                    let conn = self.new_conn();
                    if address != SCHEDULER {
                        if self.holders.contains_key(&address) {
                            return Err(format!("a second connection to {address}"));
                        }
                        self.holders.insert(address, (conn, false));
                    }
                    self.state.handle_connecting(self.now, Ok(conn));
                }
                WorkerOutput::Send(conn, m) => {
                    if !self.open.contains(&conn) {
                        return Err(format!("`{}` on {conn:?}, which is not open", m.op()));
                    }
                    round_trips(&m)?;
                    if let Message::GetData(request) = m {
                        let holder = self.holders.iter().find(|(_, (c, _))| *c == conn);
                        if let Some((address, _)) = holder {
                            self.fetches.push((address.clone(), request));
                        }
                    }
                }
                WorkerOutput::EndFrame(conn) => {
                    if !self.open.contains(&conn) {
                        return Err(format!("frame end on {conn:?}, which is not open"));
                    }
                }
                WorkerOutput::Close(conn) => {
                    if !self.open.remove(&conn) {
                        return Err(format!("{conn:?} closed but not open"));
                    }
                    if self.scheduler == Some(conn) {
                        self.scheduler = None;
                    }
                    self.holders.retain(|_, (c, _)| *c != conn);
                }
                WorkerOutput::Execute(job) => self.jobs.push(job),
                WorkerOutput::Withdraw { run_id } => {
                    let at = self.jobs.iter().position(|j| j.run_id == run_id);
                    self.coin = self.coin.wrapping_add(1);
                    let withdrawn = match at {
                        Some(at) if at >= NTHREADS => !matches!(self.coin % 3, 0),
                        _ => false,
                    };
                    if withdrawn {
                        if let Some(at) = at {
                            self.jobs.remove(at);
                        }
                    }
                    self.state.handle_withdrawn(self.now, run_id, withdrawn);
                }
                WorkerOutput::Finished { .. } => {
                    self.closed = true;
                    if !self.open.is_empty() {
                        return Err(format!("finished with {:?} open", self.open));
                    }
                }
                WorkerOutput::Listen | WorkerOutput::Registered { .. } | WorkerOutput::Log(_) => {}
                // Stories' workers list no `value-local`: none comes.
                WorkerOutput::ReadLocal(read) => {
                    let refused = Err("no memory is read here".to_owned());
                    self.state.handle_local_read(self.now, read, refused);
                }
            }
        }
        Ok(())
    }

    fn check(&self, after_tick: bool) -> Result<(), String> {
        if self.state.running() != self.jobs.len() {
            return Err(format!(
                "the state counts {} runs, the executor holds {}",
                self.state.running(),
                self.jobs.len()
            ));
        }
        if self.jobs.len() > NTHREADS + DISPATCH_AHEAD {
            return Err(format!("{} runs out at once", self.jobs.len()));
        }
        if let Some(store) = &self.store {
            let usage = self.state.memory();
            let metrics = self.state.metrics();
            if usage.memory_keys + usage.spilled_keys != metrics.stored_keys
                || usage.memory_bytes + usage.spilled_bytes != metrics.stored_bytes
            {
                return Err(format!(
                    "memory and spilled do not add up to stored: {usage:?}, {metrics:?}"
                ));
            }
            let spilled: HashSet<Key> = KEYS
                .iter()
                .filter(|k| self.state.is_spilled(k))
                .map(|k| Key::from(*k))
                .collect();
            let stored = store.with(|s| s.keys.clone());
            if spilled != stored || usage.spilled_keys != spilled.len() as u64 {
                return Err(format!(
                    "spilled {spilled:?} ({} counted), the store holds {stored:?}",
                    usage.spilled_keys
                ));
            }
        }
        // (A closed worker's loop ends: its timeouts no longer matter.)
        if after_tick && !self.closed {
            if let Some(at) = self.state.poll_timeout() {
                if at <= self.now {
                    return Err(format!(
                        "after a tick at {:?} the next timeout is {at:?}",
                        self.now
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every message the worker emits must decode to itself.
fn round_trips(m: &Message) -> Result<(), String> {
    let bytes = m.to_bytes();
    match Message::from_bytes(&bytes) {
        Ok(back) if back == *m => Ok(()),
        Ok(back) => Err(format!("`{}` decodes to {back:?}", m.op())),
        Err(e) => Err(format!("`{}` does not decode: {e}", m.op())),
    }
}
