//! A story for the scheduler's state machine: connections, messages,
//! raw bytes, hang-ups and time, played into `SchedulerState` with
//! `validate()` after every event. The messages are drawn from a small
//! vocabulary of keys, names and requests, so they collide: results for
//! tasks assigned to another worker, replies to real and made-up requests,
//! registrations under live names, every op from every role.
//!
//! Shared by the `scheduler_messages` fuzz target (bytes in: [`run`]) and
//! `scheduler/tests/hostile.rs` (proptest builds [`Step`]s; crashers are
//! replayed through [`run`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dask_core::frame::FrameDecoder;
use dask_core::handshake;
use dask_core::messages::*;
use dask_core::msgpack::task_ref_value;
use dask_core::{Key, Message, RawValue, Timestamp};
use dask_scheduler::{ConnId, SchedulerOutput, SchedulerState, SchedulerStateConfig};
use rmpv::Value;

use super::common;
use super::common::small;

const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];
const FUNCTIONS: [&str; 3] = ["f", "g", "missing"];
const NAMES: [&str; 3] = ["w0", "w1", "w2"];
const DATASETS: [&str; 2] = ["d0", "d1"];
/// Vocabulary numbers (see [`message`]) a client may send.
const CLIENT_OPS: [u8; 16] = [2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 3];
/// Vocabulary numbers a registered worker may send.
const WORKER_OPS: [u8; 11] = [2, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28];
/// Size of the vocabulary.
const OPS: u8 = 34;

/// One step of a story, as plain numbers (so proptest shrinks them).
#[derive(Debug, Clone)]
pub enum Step {
    /// A new connection; 0: nothing sent yet, 1: a client, 2: a
    /// registered worker.
    Connect { role: u8 },
    /// A message (two now and then) of the vocabulary on a connection.
    Message {
        conn: u8,
        op: u8,
        a: u8,
        b: u8,
        n: u64,
    },
    /// Raw bytes through a frame decoder, as the event loop reads them.
    Bytes { conn: u8, bytes: Vec<u8> },
    /// The peer hangs up.
    Close { conn: u8 },
    /// Time passes (timeouts, retries).
    Tick { millis: u16 },
}

impl Step {
    /// Reads one step from the front of `data` (a fuzzer's bytes); `None`
    /// when they are used up.
    pub fn parse(data: &mut &[u8]) -> Option<Step> {
        let kind = common::take_byte(data)?;
        let mut byte = || common::take_byte(data).unwrap_or(0);
        Some(match kind % 21 {
            0 => Step::Connect { role: byte() % 3 },
            1..=16 => {
                let (conn, op, a, b) = (byte(), byte(), byte(), byte());
                let n = u64::from_le_bytes(std::array::from_fn(|_| byte()));
                Step::Message { conn, op, a, b, n }
            }
            17 => {
                let conn = byte();
                let len = (byte() % 64) as usize;
                let bytes = (0..len).map(|_| byte()).collect();
                Step::Bytes { conn, bytes }
            }
            18 => Step::Close { conn: byte() },
            _ => Step::Tick {
                millis: u16::from_le_bytes([byte(), byte()]),
            },
        })
    }
}

/// Plays the steps `data` encodes after the opening of [`Story::opened`];
/// panics, naming the step, when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut story = Story::opened();
    common::play_steps("scheduler", data, Step::parse, |step| story.play(step));
}

fn key(i: u8) -> Key {
    common::pool_key(&KEYS, i)
}

/// The keys of a bit mask.
fn keys(mask: u8) -> Vec<Key> {
    common::pool_keys(&KEYS, mask)
}

/// A graph of the vocabulary: tasks for a run of consecutive keys,
/// each referring to earlier keys of the run (a bit mask from `b`),
/// wanting some of them. When `n & 7 == 0` the references may go
/// anywhere (cycles, unknown keys) and the wanted keys are any.
fn graph(request: u64, a: u8, b: u8, n: u64) -> UpdateGraph {
    let first = a as usize % KEYS.len();
    let count = 1 + (b as usize % (KEYS.len() - first));
    let wild = n & 7 == 0;
    let tasks: Vec<TaskSpec> = (first..first + count)
        .map(|j| {
            let mask = (n >> (8 * (j - first))) as u8;
            let mask = if wild {
                mask
            } else {
                mask & (((1u16 << j) - (1u16 << first)) as u8)
            };
            let args: Vec<Value> = keys(mask)
                .iter()
                .map(|k| task_ref_value(k.as_str()))
                .chain([Value::from(j)])
                .collect();
            TaskSpec {
                key: key(j as u8),
                function: FUNCTIONS[match (n >> (j + 40)) % 8 {
                    0 => 2,
                    1..=3 => 1,
                    _ => 0,
                }]
                .into(),
                args: RawValue::from_value(&Value::Array(args)),
                kwargs: None,
                priority: Some(i64::from(b % 4)),
                resources: None,
                retries: Some(u32::from(a % 2)),
                workers: None,
            }
        })
        .collect();
    let wanted = if wild {
        keys(a)
    } else {
        tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i + 1 == count || (n >> (48 + i)) % 2 == 1)
            .map(|(_, t)| t.key.clone())
            .collect()
    };
    UpdateGraph {
        request,
        tasks,
        wanted,
        ack: None,
    }
}

/// What a story has seen the scheduler do, for replies that match.
#[derive(Default)]
struct Seen {
    /// Request ids of put-data / get-data the scheduler sent.
    requests: Vec<u64>,
    /// Keys of compute-task / steal-request per worker connection.
    assigned: BTreeMap<ConnId, Vec<Key>>,
}

/// Message number `op` of the vocabulary, its fields picked by `a`,
/// `b` and `n`.
fn message(op: u8, a: u8, b: u8, n: u64, seen: &Seen, conn: ConnId) -> Message {
    // Two times in three a request the scheduler made.
    let request = match (seen.requests.len(), n % 3) {
        (0, _) | (_, 0) => small(n),
        (len, _) => seen.requests[(n as usize / 3) % len],
    };
    let assigned = seen.assigned.get(&conn).map_or(&[][..], |v| &v[..]);
    let worker_key = match assigned.len() {
        len if len > 0 && b & 3 > 0 => assigned[(n as usize) % len].clone(),
        _ => key(a),
    };
    let name = NAMES[a as usize % NAMES.len()];
    let nbytes: BTreeMap<Key, u64> = keys(b).into_iter().map(|k| (k, small(n))).collect();
    let data: BTreeMap<Key, RawValue> = keys(b)
        .into_iter()
        .map(|k| (k, RawValue::from_value(&Value::from(a))))
        .collect();
    match op % OPS {
        0 => Message::from(handshake::offer(
            [Role::Client, Role::Worker, Role::Peer, Role::Scheduler][b as usize % 4],
            None,
        )),
        1 => Message::RegisterWorker(RegisterWorker {
            name: name.into(),
            address: format!("tcp://127.0.0.1:{}", 1 + u16::from(a % 3)),
            nthreads: u32::from(b % 3),
            memory_limit: None,
            resources: None,
            functions: FUNCTIONS[..1 + (a as usize % FUNCTIONS.len())]
                .iter()
                .map(|f| f.to_string())
                .collect(),
            pid: None,
            held: None,
        }),
        2 => Message::Heartbeat(Heartbeat { metrics: None }),
        3 => Message::Close(Close {
            reason: None,
            reconnect: None,
        }),
        4 => Message::ErrorReport(ErrorReport {
            code: 4001,
            message: "x".into(),
            fatal: b & 1 == 0,
            request: Some(request),
            keys: None,
        }),
        5..=8 => Message::UpdateGraph(graph(request, a, b, n)),
        9 => Message::ReleaseKeys(ReleaseKeys {
            keys: keys(a).into(),
        }),
        10 => Message::CancelKeys(CancelKeys {
            keys: keys(a),
            force: Some(b & 1 == 0),
        }),
        11 => Message::Scatter(Scatter {
            request,
            data,
            workers: None,
            broadcast: Some(a & 1 == 0),
            ack: None,
        }),
        12 => Message::Gather(Gather {
            request,
            keys: keys(a),
        }),
        13 => Message::WhoHas(WhoHas {
            request,
            keys: keys(a),
        }),
        14 => Message::ClusterInfo(ClusterInfo { request }),
        15 => Message::PublishDataset(PublishDataset {
            request,
            name: DATASETS[a as usize % 2].into(),
            keys: keys(b),
            overwrite: Some(a % 3 < 1),
        }),
        16 => Message::UnpublishDataset(UnpublishDataset {
            request,
            name: DATASETS[a as usize % 2].into(),
        }),
        17 => Message::GetDataset(GetDataset {
            request,
            name: DATASETS[a as usize % 2].into(),
        }),
        18 => Message::ListDatasets(ListDatasets { request }),
        19..=21 => Message::TaskFinished(TaskFinished {
            key: worker_key,
            nbytes: small(n),
            duration_us: Some(small(n)),
            value: None,
        }),
        22 => Message::TaskErred(TaskErred {
            key: worker_key,
            error_type: "E".into(),
            message: "m".into(),
            traceback: String::new(),
        }),
        23 => Message::AddKeys(AddKeys { nbytes }),
        24 => Message::MissingData(MissingData {
            key: key(b),
            addresses: vec![format!("tcp://127.0.0.1:{}", 1 + u16::from(b % 3))],
            task: worker_key,
        }),
        25 => Message::StealResponse(StealResponse {
            key: worker_key,
            stolen: b & 1 == 0,
        }),
        26 => Message::DataStored(DataStored { request, nbytes }),
        27 => Message::Data(Data {
            request,
            data,
            missing: keys(b.rotate_left(3)),
        }),
        28 => Message::Busy(Busy { request }),
        // Ops only the scheduler or a worker's data port may send.
        29 => Message::KeyFinished(KeyFinished {
            key: key(a),
            nbytes: 1,
            request: None,
            value: None,
        }),
        30 => Message::ComputeTask(ComputeTask {
            key: key(a),
            function: "f".into(),
            args: RawValue::from_value(&Value::Array(vec![])),
            kwargs: None,
            who_has: BTreeMap::new(),
            priority: None,
            resources: None,
        }),
        31 => Message::FreeKeys(FreeKeys {
            keys: keys(a).into(),
        }),
        32 => Message::GetData(GetData {
            request,
            keys: keys(a),
        }),
        _ => Message::OkReply(OkReply { request }),
    }
}

/// The scheduler and its connections, as the event loop sees them.
pub struct Story {
    state: SchedulerState,
    now: Timestamp,
    next_conn: u64,
    next_worker: usize,
    /// Open connections and the role each completed a handshake as.
    open: Vec<(ConnId, Option<Role>)>,
    closed: BTreeSet<ConnId>,
    decoders: BTreeMap<ConnId, FrameDecoder>,
    seen: Seen,
}

impl Default for Story {
    fn default() -> Self {
        Story::new()
    }
}

impl Story {
    /// A scheduler with connections that completed their handshake as a
    /// client, two workers (registered), a client again, and one that has
    /// sent nothing yet: stories start past the hello.
    pub fn opened() -> Story {
        let mut story = Story::new();
        for role in [1, 2, 2, 1, 0] {
            if let Err(e) = story.play(&Step::Connect { role }) {
                panic!("opening: {e}");
            }
        }
        story
    }

    /// A scheduler with no connection.
    pub fn new() -> Story {
        let now = Timestamp::ZERO;
        Story {
            state: SchedulerState::new(
                SchedulerStateConfig {
                    heartbeat_timeout: Duration::from_secs(5),
                    handshake_timeout: Duration::from_secs(3),
                    ..SchedulerStateConfig::default()
                },
                now,
            ),
            now,
            next_conn: 0,
            next_worker: 0,
            open: Vec::new(),
            closed: BTreeSet::new(),
            decoders: BTreeMap::new(),
            seen: Seen::default(),
        }
    }

    fn conn(&self, i: u8) -> Option<(ConnId, Option<Role>)> {
        match self.open.len() {
            0 => None,
            len => Some(self.open[i as usize % len]),
        }
    }

    /// Plays one step, then checks every invariant.
    pub fn play(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Connect { role } => self.connect(*role)?,
            Step::Message { conn, op, a, b, n } => {
                let Some((c, role)) = self.conn(*conn) else {
                    return Ok(());
                };
                // Mostly ops the role may send (to get past the
                // checks), sometimes anything.
                let op = match (role, n % 5) {
                    (Some(Role::Client), 1..) => CLIENT_OPS[*op as usize % CLIENT_OPS.len()],
                    (Some(Role::Worker), 1..) => WORKER_OPS[*op as usize % WORKER_OPS.len()],
                    _ => *op,
                };
                let mut frame = vec![message(op, *a, *b, *n, &self.seen, c)];
                if n % 7 == 0 {
                    frame.push(message(op ^ 1, *b, *a, n / 7, &self.seen, c));
                }
                self.state.handle_frame(self.now, c, frame);
            }
            Step::Bytes { conn, bytes } => {
                let Some((c, _)) = self.conn(*conn) else {
                    return Ok(());
                };
                self.feed(c, bytes)?;
            }
            Step::Close { conn } => {
                let Some((c, _)) = self.conn(*conn) else {
                    return Ok(());
                };
                self.state.handle_closed(self.now, c);
                self.forget(c);
            }
            Step::Tick { millis } => {
                self.now += Duration::from_millis(u64::from(*millis) % 4000);
                self.state.handle_timeout(self.now);
            }
        }
        self.drain()?;
        self.state.validate()
    }

    fn connect(&mut self, role: u8) -> Result<(), String> {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        self.state.handle_connected(self.now, c);
        let role = match role {
            1 => Some(Role::Client),
            2 => Some(Role::Worker),
            _ => None,
        };
        self.open.push((c, role));
        let Some(role) = role else {
            return Ok(());
        };
        self.state
            .handle_message(self.now, c, Message::from(handshake::offer(role, None)));
        if role == Role::Worker {
            self.next_worker += 1;
            self.state.handle_message(
                self.now,
                c,
                Message::RegisterWorker(RegisterWorker {
                    name: format!("registered-{}", self.next_worker),
                    address: format!("tcp://127.0.0.1:{}", 100 + self.next_worker),
                    nthreads: 1 + (self.next_worker % 2) as u32,
                    memory_limit: None,
                    resources: None,
                    functions: vec!["f".into(), "g".into()],
                    pid: None,
                    held: None,
                }),
            );
        }
        Ok(())
    }

    /// Bytes through the connection's decoder, frames to the state;
    /// a decoding error closes the connection (after the loop's
    /// `error`).
    pub fn feed(&mut self, c: ConnId, bytes: &[u8]) -> Result<(), String> {
        self.decoders.entry(c).or_default().push(bytes);
        loop {
            let Some(decoder) = self.decoders.get_mut(&c) else {
                return Ok(());
            };
            match decoder.poll() {
                Ok(Some(batch)) => self.state.handle_frame(self.now, c, batch),
                Ok(None) => return Ok(()),
                Err(_) => {
                    self.state.handle_closed(self.now, c);
                    self.forget(c);
                }
            }
            self.drain()?;
            self.state.validate()?;
        }
    }

    fn forget(&mut self, c: ConnId) {
        self.open.retain(|&(x, _)| x != c);
        self.decoders.remove(&c);
        self.closed.insert(c);
    }

    /// Takes the outputs, remembering requests and assignments.
    fn drain(&mut self) -> Result<(), String> {
        while let Some(output) = self.state.poll_output() {
            match output {
                SchedulerOutput::Send(c, m) => {
                    if self.closed.contains(&c) {
                        return Err(format!("`{}` sent to closed {c:?}", m.op()));
                    }
                    match m {
                        Message::PutData(p) => self.seen.requests.push(p.request),
                        Message::GetData(g) => self.seen.requests.push(g.request),
                        Message::ComputeTask(t) => {
                            self.seen.assigned.entry(c).or_default().push(t.key)
                        }
                        Message::StealRequest(s) => {
                            self.seen.assigned.entry(c).or_default().push(s.key)
                        }
                        _ => {}
                    }
                    if self.seen.requests.len() > 16 {
                        self.seen.requests.remove(0);
                    }
                    if let Some(keys) = self.seen.assigned.get_mut(&c) {
                        if keys.len() > 16 {
                            keys.remove(0);
                        }
                    }
                }
                SchedulerOutput::Close(c) => self.forget(c),
                SchedulerOutput::Journal => {
                    let _ = self.state.take_journal();
                }
            }
        }
        Ok(())
    }

    /// The first open connection.
    pub fn first(&self) -> Option<ConnId> {
        self.open.first().map(|&(c, _)| c)
    }
}
