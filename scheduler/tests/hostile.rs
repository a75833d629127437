//! Hostile input against the real `dask-scheduler` binary (issue 7, part 4):
//! random bytes, truncated frames, oversized length prefixes, frames of the
//! wrong shape, unknown ops, refused graphs (cycle, unknown key, duplicate
//! key), deeply nested values and a flood of connections that never finish
//! the handshake. Each gets the error and close of the spec's table
//! (spec/PROTOCOL.md "Error codes"), while a well-behaved client on the
//! same scheduler keeps computing graphs and gets the right answers, and
//! the scheduler's resident memory stays under a generous bound.
//!
//! The last part feeds random message sequences and random bytes straight
//! into the pure [`SchedulerState`] with `validate()` after every event
//! (proptest; deterministic, no sockets).
//!
//! Everything runs on 127.0.0.1 with ports picked by the OS; counts and
//! waits are bounded; nothing asserts on timing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use dask_core::client::task_spec;
use dask_core::frame::FrameDecoder;
use dask_core::messages::*;
use dask_core::msgpack::task_ref_value;
use dask_core::{Key, Message, RawValue, FRAME_BYTES_MAX};
use dask_net::HELLO_FRAME_BYTES_MAX;
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_testkit::good_client::GoodClient;
use dask_testkit::hostile::{
    assert_bad_first_frames_refused, assert_cut_hellos_closed_silently,
    assert_random_bytes_refused, hello, Noise, UnfinishedHandshakes, HANDSHAKE_TIMEOUT_SECS,
    RSS_BYTES_MAX, SMALL_OPEN_FILES, TIMEOUT,
};
use dask_testkit::process::{with_open_files, Process};
use dask_testkit::stories::scheduler as story;
use dask_testkit::wire::{connect_raw, frame, map, messages_frame, read_received, value_frame};
use dask_worker::{WorkerConfig, WorkerHandle};
use rmpv::Value;

// ---- processes ------------------------------------------------------------

/// The `dask-scheduler` binary, killed (by its id) when dropped.
struct Scheduler {
    process: Process,
    address: String,
}

impl Scheduler {
    fn start() -> Scheduler {
        Scheduler::spawn(Command::new(env!("CARGO_BIN_EXE_dask-scheduler")))
    }

    /// Started by `sh` after `ulimit -n open_files`: it runs out of
    /// descriptors after a few dozen connections.
    fn start_with_open_files(open_files: u32) -> Scheduler {
        Scheduler::spawn(with_open_files(
            open_files,
            env!("CARGO_BIN_EXE_dask-scheduler"),
        ))
    }

    fn spawn(mut command: Command) -> Scheduler {
        // Open on purpose: these frames must reach the parsers behind the
        // hello, which a stranger to an authenticating scheduler never
        // reaches (its refusal is tested in dask-cluster's
        // tests/security.rs); the good client connects without credentials.
        command
            .arg("--no-auth-anyone-can-connect")
            .args(["--port", "0", "--validate"])
            .args(["--handshake-timeout", &HANDSHAKE_TIMEOUT_SECS.to_string()]);
        let process = Process::spawn("dask-scheduler", &mut command);
        let line = process.expect_line("", TIMEOUT);
        let address = line
            .strip_prefix("Scheduler at ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Scheduler { process, address }
    }

    fn assert_alive(&mut self, during: &str) {
        self.process.assert_alive(during);
    }

    fn assert_rss_bounded(&self, during: &str) {
        self.process.assert_rss_below(RSS_BYTES_MAX, during);
    }
}

/// A scheduler process, a worker registered with it and a good client.
struct Cluster {
    scheduler: Scheduler,
    worker: Option<WorkerHandle>,
}

impl Cluster {
    fn start() -> Cluster {
        let scheduler = Scheduler::start();
        let worker = WorkerHandle::start(WorkerConfig {
            scheduler: scheduler.address.clone(),
            nthreads: 2,
            ..WorkerConfig::default()
        })
        .expect("worker registers");
        Cluster {
            scheduler,
            worker: Some(worker),
        }
    }

    fn address(&self) -> String {
        self.scheduler.address.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

// ---- bytes on the wire ------------------------------------------------------

fn spec(key: &str, function: &str, args: Vec<Value>) -> TaskSpec {
    task_spec(Key::from(key), function, &args, &[])
}

fn update_graph(request: u64, tasks: Vec<TaskSpec>, wanted: &[&str]) -> Message {
    Message::UpdateGraph(UpdateGraph {
        request,
        tasks,
        wanted: wanted.iter().map(|k| Key::from(*k)).collect(),
        ack: None,
    })
}

/// An `update-graph` frame whose single task `key` has `args_bytes` as its
/// args, spliced in raw (the encoder would not build an over-deep value).
fn update_graph_with_raw_args(request: u64, key: &str, args_bytes: &[u8]) -> Vec<u8> {
    const MARKER: [u8; 10] = [0xc4, 8, 0xd1, 0x5e, 0xa5, 0xe0, 0x0d, 0xde, 0xad, 0x42];
    let mut task = spec(key, "identity", vec![]);
    task.args = RawValue::from_bytes(MARKER.to_vec()).expect("marker");
    let bytes = messages_frame(&[update_graph(request, vec![task], &[key])]);
    let payload = &bytes[4..];
    let at = payload
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("marker in the frame");
    let mut spliced = payload[..at].to_vec();
    spliced.extend_from_slice(args_bytes);
    spliced.extend_from_slice(&payload[at + MARKER.len()..]);
    frame(&spliced)
}

/// `depth` nested one-element arrays around nil.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut out = vec![0x91; depth];
    out.push(0xc0);
    out
}

// ---- before the handshake -----------------------------------------------------

/// Bad first frames: each gets its fatal error and the connection closes.
fn bad_first_frames(address: &str) {
    assert_bad_first_frames_refused(
        address,
        Role::Client,
        &[Role::Scheduler, Role::Peer],
        &Message::ClusterInfo(ClusterInfo { request: 1 }),
    );
}

/// Every cut of a hello frame, then our EOF: the scheduler closes without
/// acting on (or answering) the part it got.
fn truncated_frames(address: &str) {
    assert_cut_hellos_closed_silently(address, Role::Client);
    // After the hello, the largest frame.
    let mut s = Session::open(address, Role::Client);
    let _ = s.stream.write_all(&(FRAME_BYTES_MAX as u32).to_be_bytes());
    let _ = s.stream.shutdown(std::net::Shutdown::Write);
    let outcome = read_received(&mut s.stream, TIMEOUT);
    assert!(outcome.closed && outcome.messages.is_empty(), "{outcome:?}");
}

/// A hello, then a frame over the hello limit and a request, in one
/// write: all served (the limit is for frames before the hello), the
/// bytes behind the hello read without waiting for more to arrive.
fn large_frame_pipelined_after_the_hello(address: &str) {
    let big = spec(
        "pipelined-big",
        "identity",
        vec![Value::Binary(vec![7; 4 * HELLO_FRAME_BYTES_MAX])],
    );
    let bytes = [
        messages_frame(&[hello(Role::Client)]),
        messages_frame(&[update_graph(1, vec![big], &["pipelined-big"])]),
        messages_frame(&[Message::ClusterInfo(ClusterInfo { request: 2 })]),
    ]
    .concat();
    let mut s = Session::connect(address);
    s.stream.write_all(&bytes).expect("send");
    s.expect_hello();
    s.cluster_info_reply(2);
}

/// Random bytes, each stream on its own connection: a fatal decoding or
/// handshake error, or (an unfinished frame) a close at our EOF.
fn random_bytes(address: &str) {
    assert_random_bytes_refused(address, 0x5eed_0000_0000_0007, &[Noise::Raw, Noise::Framed]);
}

// ---- after the handshake ----------------------------------------------------

/// A client connection that stays open for several requests.
struct Session {
    stream: TcpStream,
    decoder: FrameDecoder,
    pending: std::collections::VecDeque<Message>,
}

impl Session {
    fn open(address: &str, role: Role) -> Session {
        let mut s = Session::connect(address);
        s.send(&[hello(role)]);
        s.expect_hello();
        s
    }

    /// Connected, nothing sent yet.
    fn connect(address: &str) -> Session {
        Session {
            stream: connect_raw(address),
            decoder: FrameDecoder::default(),
            pending: Default::default(),
        }
    }

    fn expect_hello(&mut self) {
        match self.recv() {
            Some(Message::Hello(h)) => assert_eq!(h.role, Role::Scheduler),
            other => panic!("expected hello, got {other:?}"),
        }
    }

    fn send(&mut self, messages: &[Message]) {
        self.stream
            .write_all(&messages_frame(messages))
            .expect("send");
    }

    fn recv(&mut self) -> Option<Message> {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            if let Some(batch) = self.decoder.poll().expect("valid frames") {
                self.pending.extend(batch);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.push(&buf[..n]),
            }
        }
    }

    /// The next error report (other messages, e.g. key events, skipped).
    fn error(&mut self) -> ErrorReport {
        loop {
            match self.recv() {
                Some(Message::ErrorReport(e)) => return e,
                Some(_) => continue,
                None => panic!("no error came"),
            }
        }
    }

    /// The connection still answers: cluster-info round trip.
    fn assert_serving(&mut self, request: u64) -> ClusterInfoReply {
        self.send(&[Message::ClusterInfo(ClusterInfo { request })]);
        self.cluster_info_reply(request)
    }

    /// The reply to cluster-info `request` (other messages skipped).
    fn cluster_info_reply(&mut self, request: u64) -> ClusterInfoReply {
        loop {
            match self.recv() {
                Some(Message::ClusterInfoReply(r)) if r.request == request => return r,
                Some(Message::ErrorReport(e)) => panic!("unexpected error {e:?}"),
                Some(_) => continue,
                None => panic!("the connection stopped answering"),
            }
        }
    }

    /// Sends raw bytes, then expects one fatal error and the close.
    fn send_raw_expect_fatal(mut self, bytes: &[u8], code: u32, case: &str) {
        let _ = self.stream.write_all(bytes);
        let mut outcome = read_received(&mut self.stream, TIMEOUT);
        let mut messages: Vec<Message> = self.pending.drain(..).collect();
        messages.append(&mut outcome.messages);
        outcome.messages = messages;
        outcome.assert_fatal(code, case);
    }
}

/// Fatal errors after a client's handshake.
fn bad_frames_after_handshake(address: &str) {
    let unknown_op = value_frame(&Value::Array(vec![map(&[("op", "nope".into())])]));
    Session::open(address, Role::Client).send_raw_expect_fatal(&unknown_op, 2001, "unknown op");
    Session::open(address, Role::Client).send_raw_expect_fatal(
        &messages_frame(&[hello(Role::Client)]),
        2004,
        "a second hello",
    );
    Session::open(address, Role::Client).send_raw_expect_fatal(
        &messages_frame(&[Message::TaskFinished(TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        })]),
        2004,
        "a worker's message from a client",
    );
    Session::open(address, Role::Client).send_raw_expect_fatal(
        &messages_frame(&[Message::KeyFinished(KeyFinished {
            key: "x".into(),
            nbytes: 1,
            request: None,
            value: None,
        })]),
        2004,
        "a scheduler's message from a client",
    );
    Session::open(address, Role::Client).send_raw_expect_fatal(
        &[0x7f, 0xff, 0xff, 0xff],
        1002,
        "an oversized prefix",
    );
    // A good request and an unknown op in one frame: nothing is answered.
    let bytes = value_frame(&Value::Array(vec![
        map(&[("op", "cluster-info".into()), ("request", 9.into())]),
        map(&[("op", "nope".into())]),
    ]));
    Session::open(address, Role::Client).send_raw_expect_fatal(
        &bytes,
        2001,
        "a good request and an unknown op in one frame",
    );
    // Values nested too deep, at the limit plus one and far beyond it
    // (a recursive decoder would overflow its stack on the latter).
    for depth in [101, 100_000, 4_000_000] {
        Session::open(address, Role::Client).send_raw_expect_fatal(
            &update_graph_with_raw_args(1, "deep", &nested_arrays(depth)),
            1001,
            &format!("args nested {depth} deep"),
        );
    }
    // A worker that sends work messages before registering, and one with
    // zero threads.
    Session::open(address, Role::Worker).send_raw_expect_fatal(
        &messages_frame(&[Message::TaskFinished(TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        })]),
        2004,
        "task-finished before register-worker",
    );
    Session::open(address, Role::Worker).send_raw_expect_fatal(
        &messages_frame(&[Message::RegisterWorker(RegisterWorker {
            name: "zero".into(),
            address: "tcp://127.0.0.1:1".into(),
            nthreads: 0,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        })]),
        2003,
        "register-worker with nthreads 0",
    );
}

/// Refused graphs: the documented non-fatal error, nothing applied, the
/// connection goes on.
fn refused_graphs(address: &str) {
    let mut s = Session::open(address, Role::Client);
    let r = task_ref_value;
    s.assert_serving(100);

    let cases: Vec<(&str, Message, u32, Vec<&str>)> = vec![
        (
            "a cycle",
            update_graph(
                1,
                vec![
                    spec("cyc-a", "inc", vec![r("cyc-b")]),
                    spec("cyc-b", "inc", vec![r("cyc-a")]),
                ],
                &["cyc-a"],
            ),
            4003,
            vec![],
        ),
        (
            "a task that refers to itself",
            update_graph(2, vec![spec("self", "inc", vec![r("self")])], &["self"]),
            4003,
            vec![],
        ),
        (
            "a reference to an unknown key",
            update_graph(
                3,
                vec![spec("orphan", "inc", vec![r("nowhere")])],
                &["orphan"],
            ),
            4001,
            vec!["nowhere"],
        ),
        (
            "a wanted key that is unknown",
            update_graph(4, vec![spec("fine", "inc", vec![1.into()])], &["absent"]),
            4001,
            vec!["absent"],
        ),
        (
            "a key twice in one graph, defined differently",
            update_graph(
                5,
                vec![
                    spec("twice", "inc", vec![1.into()]),
                    spec("twice", "inc", vec![2.into()]),
                ],
                &["twice"],
            ),
            4002,
            vec!["twice"],
        ),
        (
            "args that are not an array",
            update_graph(
                6,
                vec![TaskSpec {
                    args: RawValue::from_value(&Value::from(1)),
                    ..spec("flat", "inc", vec![])
                }],
                &["flat"],
            ),
            2003,
            vec!["flat"],
        ),
    ];
    for (case, message, code, keys) in cases {
        s.send(&[message]);
        let e = s.error();
        assert_eq!((e.code, e.fatal), (code, false), "{case}: {e:?}");
        for key in keys {
            assert!(
                e.keys.iter().flatten().any(|k| k.as_str() == key),
                "{case}: {key} not named in {e:?}"
            );
        }
    }
    // Nothing of the refused graphs was accepted: wanting their keys now
    // names every one of them unknown.
    let refused = ["cyc-a", "cyc-b", "self", "orphan", "fine", "twice", "flat"];
    s.send(&[update_graph(10, vec![], &refused)]);
    let e = s.error();
    assert_eq!((e.code, e.request), (4001, Some(10)), "{e:?}");
    for key in refused {
        assert!(
            e.keys.iter().flatten().any(|k| k.as_str() == key),
            "{key} of a refused graph is known: {e:?}"
        );
    }

    // A key known to the scheduler, defined again differently.
    s.send(&[update_graph(
        7,
        vec![spec("known", "inc", vec![1.into()])],
        &["known"],
    )]);
    loop {
        match s.recv() {
            Some(Message::KeyFinished(f)) if f.key.as_str() == "known" => break,
            Some(Message::ErrorReport(e)) => panic!("{e:?}"),
            Some(_) => continue,
            None => panic!("known never finished"),
        }
    }
    s.send(&[update_graph(
        8,
        vec![spec("known", "inc", vec![2.into()])],
        &["known"],
    )]);
    let e = s.error();
    assert_eq!(
        (e.code, e.fatal, e.request),
        (4002, false, Some(8)),
        "{e:?}"
    );

    // A value exactly at the depth limit is accepted and computed.
    s.stream
        .write_all(&update_graph_with_raw_args(
            9,
            "deep-ok",
            &nested_arrays(99).iter().fold(vec![0x91], |mut v, b| {
                v.push(*b);
                v
            }),
        ))
        .expect("send");
    loop {
        match s.recv() {
            Some(Message::KeyFinished(f)) if f.key.as_str() == "deep-ok" => break,
            Some(Message::KeyErred(e)) if e.key.as_str() == "deep-ok" => break,
            Some(Message::ErrorReport(e)) => panic!("a value 100 deep was refused: {e:?}"),
            Some(_) => continue,
            None => panic!("deep-ok never finished"),
        }
    }
    s.assert_serving(102);
}

/// A registered worker that lies: results for tasks it never got, replies
/// to requests never made, unknown keys. The scheduler (with --validate)
/// ignores them and keeps its invariants; the worker stays connected.
fn lying_worker(address: &str) {
    let mut w = Session::open(address, Role::Worker);
    w.send(&[Message::RegisterWorker(RegisterWorker {
        name: "liar".into(),
        address: "tcp://127.0.0.1:9".into(),
        nthreads: 1,
        memory_limit: None,
        resources: None,
        functions: vec!["liar-fn".into()],
        pid: None,
        held: None,
    })]);
    match w.recv() {
        Some(Message::WorkerRegistered(_)) => {}
        other => panic!("expected worker-registered, got {other:?}"),
    }
    // Two real tasks for it, "finished" with absurd sizes (their sum
    // overflows a u64), then a gather of one of them.
    let mut c = Session::open(address, Role::Client);
    c.send(&[update_graph(
        1,
        vec![
            spec("lie-1", "liar-fn", vec![1.into()]),
            spec("lie-2", "liar-fn", vec![2.into()]),
        ],
        &["lie-1", "lie-2"],
    )]);
    let mut assigned = Vec::new();
    while assigned.len() < 2 {
        match w.recv() {
            Some(Message::ComputeTask(t)) => assigned.push(t.key),
            Some(_) => continue,
            None => panic!("the liar got {assigned:?} only"),
        }
    }
    w.send(&[
        Message::TaskFinished(TaskFinished {
            key: "lie-1".into(),
            nbytes: u64::MAX,
            duration_us: Some(u64::MAX),
            value: None,
        }),
        Message::TaskFinished(TaskFinished {
            key: "lie-2".into(),
            nbytes: u64::MAX - 1,
            duration_us: Some(0),
            value: None,
        }),
    ]);
    let mut finished = 0;
    while finished < 2 {
        match c.recv() {
            Some(Message::KeyFinished(_)) => finished += 1,
            Some(other) => panic!("expected key-finished, got {other:?}"),
            None => panic!("the lies were not taken as results"),
        }
    }
    c.send(&[Message::Gather(Gather {
        request: 2,
        keys: vec!["lie-1".into()],
    })]);
    // Its value is asked whole, or (dask/1.1 value-ranges: the lie makes
    // it large) a range at a time; the liar sends its one byte either way.
    let one = RawValue::from_value(&Value::from(1));
    loop {
        match w.recv() {
            Some(Message::GetData(get)) => {
                break w.send(&[Message::Data(Data {
                    request: get.request,
                    data: [(Key::from("lie-1"), one)].into(),
                    missing: vec![],
                })])
            }
            Some(Message::GetValueRange(get)) => {
                break w.send(&[Message::ValueRange(ValueRange {
                    request: get.request,
                    key: get.key,
                    nbytes: one.len() as u64,
                    offset: 0,
                    part: Bin(one.into_shared()),
                })])
            }
            Some(_) => continue,
            None => panic!("no get-data for the gather"),
        }
    }
    match c.recv() {
        Some(Message::GatherReply(g)) => assert_eq!(g.data.len(), 1, "{g:?}"),
        other => panic!("expected gather-reply, got {other:?}"),
    }
    let nbytes: BTreeMap<Key, u64> = [(Key::from("never"), 1u64 << 40)].into();
    w.send(&[
        Message::TaskFinished(TaskFinished {
            key: "never".into(),
            nbytes: u64::MAX,
            duration_us: Some(u64::MAX),
            value: None,
        }),
        Message::TaskErred(TaskErred {
            key: "never".into(),
            error_type: "E".into(),
            message: "m".into(),
            traceback: String::new(),
        }),
        Message::AddKeys(AddKeys {
            nbytes: nbytes.clone(),
        }),
        Message::MissingData(MissingData {
            key: "never".into(),
            addresses: vec!["tcp://127.0.0.1:9".into()],
            task: "other".into(),
        }),
        Message::StealResponse(StealResponse {
            key: "never".into(),
            stolen: true,
        }),
        Message::DataStored(DataStored {
            request: 12345,
            nbytes,
        }),
        Message::Data(Data {
            request: 777,
            data: [(Key::from("never"), RawValue::nil())].into(),
            missing: vec!["other".into()],
        }),
        Message::Busy(Busy { request: 778 }),
        Message::Heartbeat(Heartbeat { metrics: None }),
    ]);
    // Still registered and served: a second registration under its name is
    // refused (3004), which shows the first is alive.
    Session::open(address, Role::Worker).send_raw_expect_fatal(
        &messages_frame(&[Message::RegisterWorker(RegisterWorker {
            name: "liar".into(),
            address: "tcp://127.0.0.1:10".into(),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        })]),
        3004,
        "a second worker with a live name",
    );
    w.send(&[Message::Close(Close {
        reason: None,
        reconnect: None,
    })]);
}

// ---- the tests ------------------------------------------------------------

/// A named part of the hostile test, run against the scheduler's address.
type Scenario = (&'static str, fn(&str));

#[test]
fn hostile_frames_get_their_documented_errors_while_a_good_client_computes() {
    let mut cluster = Cluster::start();
    let address = cluster.address();
    let good = GoodClient::start(&address);
    let scenarios: [Scenario; 7] = [
        ("bad first frames", bad_first_frames),
        ("truncated frames", truncated_frames),
        (
            "a large frame pipelined after the hello",
            large_frame_pipelined_after_the_hello,
        ),
        ("random bytes", random_bytes),
        ("bad frames after the handshake", bad_frames_after_handshake),
        ("refused graphs", refused_graphs),
        ("a lying worker", lying_worker),
    ];
    for (name, scenario) in scenarios {
        scenario(&address);
        cluster.scheduler.assert_alive(name);
        cluster.scheduler.assert_rss_bounded(name);
    }
    let rounds = good.finish();
    assert!(rounds >= 2, "{rounds} rounds");
    cluster
        .scheduler
        .assert_alive("the good client's last round");
}

#[test]
fn a_flood_of_unfinished_handshakes_is_timed_out_while_others_are_served() {
    let mut cluster = Cluster::start();
    let address = cluster.address();
    let rss_before = cluster.scheduler.process.rss_bytes();
    let good = GoodClient::start(&address);

    // Silent connections, and connections that sent half a hello frame.
    let flood = UnfinishedHandshakes::open(&address, Role::Client);

    // While they hang, a new client still gets through and is served.
    let mut s = Session::open(&address, Role::Client);
    s.assert_serving(1);
    cluster.scheduler.assert_alive("the flood");
    cluster.scheduler.assert_rss_bounded("the flood");

    // Each flood connection gets 3002 after the handshake timeout, and is
    // closed.
    flood.assert_timed_out();
    s.assert_serving(2);
    let rounds = good.finish();
    assert!(rounds >= 2, "{rounds} rounds");
    cluster.scheduler.assert_alive("the end of the flood");
    cluster.scheduler.assert_rss_bounded("the flood");
    if let (Some(before), Some(after)) = (rss_before, cluster.scheduler.process.rss_bytes()) {
        eprintln!(
            "dask-scheduler RSS: {} KiB before the flood, {} KiB after",
            before >> 10,
            after >> 10
        );
    }
}

#[test]
fn bytes_held_before_the_hello_are_bounded_in_all() {
    const HELD_MAX: usize = 1 << 20;
    const PER_CONNECTION: usize = 50_000;
    const CONNECTIONS: usize = 2 * HELD_MAX / PER_CONNECTION;
    let scheduler = SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        handshake_timeout: Duration::from_secs(HANDSHAKE_TIMEOUT_SECS),
        handshake_bytes_max: HELD_MAX,
        ..SchedulerConfig::default()
    })
    .expect("scheduler starts");
    let address = scheduler.address();

    // Each sends most of a frame under the hello limit and stops: together
    // twice what the scheduler holds for unfinished handshakes.
    let unfinished = [
        &((PER_CONNECTION + 1000) as u32).to_be_bytes()[..],
        &vec![0x90; PER_CONNECTION],
    ]
    .concat();
    let mut flood: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = connect_raw(&address);
            stream.write_all(&unfinished).expect("send");
            stream
        })
        .collect();

    // Those that took the sum over the bound got 1002 at once, the others
    // 3002 at the handshake timeout; a few of each, all closed.
    let (mut refused, mut timed_out) = (0, 0);
    for (i, stream) in flood.iter_mut().enumerate() {
        let outcome = read_received(stream, TIMEOUT);
        match outcome.error_codes()[..] {
            [(1002, true)] => refused += 1,
            [(3002, true)] => timed_out += 1,
            _ => panic!("connection {i}: {:?}", outcome.messages),
        }
        assert!(outcome.closed, "connection {i} not closed");
    }
    assert!(refused >= 1, "none refused");
    assert!(
        (1..=HELD_MAX / PER_CONNECTION).contains(&timed_out),
        "{timed_out} held at once"
    );

    // The bytes are released: a new connection gets its hello.
    let mut s = Session::open(&address, Role::Client);
    s.assert_serving(1);
    scheduler.stop();
}

#[test]
fn a_connection_that_waited_while_descriptors_ran_out_is_accepted_once_some_are_free() {
    let mut scheduler = Scheduler::start_with_open_files(SMALL_OPEN_FILES);
    let address = scheduler.address.clone();
    let worker = WorkerHandle::start(WorkerConfig {
        scheduler: address.clone(),
        nthreads: 2,
        ..WorkerConfig::default()
    })
    .expect("worker registers");

    // Twice as many connections as the scheduler has descriptors: it
    // accepts what it can, the rest wait in its listen backlog.
    let flood: Vec<TcpStream> = (0..2 * SMALL_OPEN_FILES)
        .map(|_| connect_raw(&address))
        .collect();
    // Queued behind them (its TCP handshake is done by the kernel).
    let mut late = Session::connect(&address);
    late.send(&[hello(Role::Client)]);
    scheduler.assert_alive("the descriptor exhaustion");

    // Descriptors come free, but no new connection arrives to wake the
    // listener: the scheduler must retry accepting by itself.
    drop(flood);
    late.expect_hello();
    late.assert_serving(1);

    let good = GoodClient::start(&address);
    let rounds = good.finish();
    assert!(rounds >= 2, "{rounds} rounds");
    worker.stop();
    scheduler.assert_alive("the end");
}

// ---- the state machine, fed random input ------------------------------------

mod properties {
    use super::story::{run, Step, Story};
    use dask_core::frame::encode_frame;
    use dask_core::handshake;
    use dask_core::messages::Role;
    use dask_core::Message;
    use dask_testkit::stories::replay_crashers;
    use proptest::prelude::*;

    /// A random step; mostly messages.
    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => (0u8..3).prop_map(|role| Step::Connect { role }),
            16 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u64>())
                .prop_map(|(conn, op, a, b, n)| Step::Message { conn, op, a, b, n }),
            1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(conn, bytes)| Step::Bytes { conn, bytes }),
            1 => any::<u8>().prop_map(|conn| Step::Close { conn }),
            2 => any::<u16>().prop_map(|millis| Step::Tick { millis }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any sequence of (often protocol-breaking) messages from clients
        /// and workers keeps every invariant and never panics.
        #[test]
        fn random_message_sequences_keep_the_invariants(
            steps in proptest::collection::vec(step(), 1..120)
        ) {
            let mut story = Story::opened();
            for (i, s) in steps.iter().enumerate() {
                story
                    .play(s)
                    .map_err(|e| TestCaseError::fail(format!("step {i} {s:?}: {e}")))?;
            }
        }

        /// Random bytes, after a good hello or without one, never panic and
        /// keep the invariants.
        #[test]
        fn random_bytes_keep_the_invariants(
            role in 0u8..3,
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut story = Story::new();
            story.play(&Step::Connect { role: 0 }).map_err(TestCaseError::fail)?;
            let c = story.first().expect("connected");
            let mut stream = match role {
                0 => Vec::new(),
                r => encode_frame(&[Message::from(handshake::offer(
                    if r == 1 { Role::Client } else { Role::Worker },
                    None,
                ))])
                .expect("encodes"),
            };
            stream.extend_from_slice(&bytes);
            story.feed(c, &stream).map_err(TestCaseError::fail)?;
        }

        /// The fuzz target's input format, fed random bytes (a stable
        /// stand-in for a fuzzing run).
        #[test]
        fn the_fuzz_story_survives_random_input(
            data in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            run(&data);
        }
    }

    /// Inputs the `scheduler_messages` fuzz target found (or that were
    /// made by hand), replayed: each must play without a panic.
    #[test]
    fn fuzz_crashers_replay_cleanly() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashers");
        let played = replay_crashers(&dir, run);
        assert!(played > 0, "no crasher in {}", dir.display());
    }
}
