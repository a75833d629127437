//! Stories of the scheduler, told without sockets: a [`Sim`] feeds
//! messages as clients and workers would and reads what comes back. Every
//! event is followed by `validate()` (the config turns it on).

use std::collections::{HashMap, HashSet, VecDeque};

use dask_core::client::task_spec;
use dask_core::handshake;
use dask_core::messages::*;
use dask_core::msgpack::task_ref_value;
use rmpv::Value;

use super::*;

struct Sim {
    s: SchedulerState,
    now: Timestamp,
    next_conn: u64,
    mail: HashMap<ConnId, VecDeque<Message>>,
    closed: HashSet<ConnId>,
    /// Journal records emitted (with `config.journal`).
    journal: Vec<Vec<u8>>,
}

fn raw(v: Value) -> RawValue {
    RawValue::from_value(&v)
}

fn r(key: &str) -> Value {
    task_ref_value(key)
}

fn spec(key: &str, function: &str, args: Vec<Value>) -> TaskSpec {
    task_spec(Key::from(key), function, &args, &[])
}

fn keys(ks: &[&str]) -> Vec<Key> {
    ks.iter().map(|k| Key::from(*k)).collect()
}

fn address(name: &str) -> String {
    format!("tcp://{name}:1")
}

impl Sim {
    fn new() -> Sim {
        Sim::with_config(SchedulerStateConfig {
            validate: true,
            ..SchedulerStateConfig::default()
        })
    }

    fn with_config(config: SchedulerStateConfig) -> Sim {
        let now = Timestamp::ZERO;
        Sim {
            s: SchedulerState::new(config, now),
            now,
            next_conn: 0,
            mail: HashMap::new(),
            closed: HashSet::new(),
            journal: Vec::new(),
        }
    }

    fn pump(&mut self) {
        while let Some(o) = self.s.poll_output() {
            match o {
                SchedulerOutput::Send(c, m) => {
                    assert!(!self.closed.contains(&c), "sent {m:?} to closed {c:?}");
                    self.mail.entry(c).or_default().push_back(m);
                }
                SchedulerOutput::Close(c) => {
                    self.closed.insert(c);
                }
                SchedulerOutput::Journal => self.journal.extend(self.s.take_journal_records()),
            }
        }
    }

    fn connect(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        self.s.handle_connected(self.now, c);
        self.pump();
        c
    }

    fn send(&mut self, c: ConnId, m: impl Into<Message>) {
        self.s.handle_message(self.now, c, m.into());
        self.pump();
    }

    /// Messages arriving together, in one frame.
    fn send_frame(&mut self, c: ConnId, messages: Vec<Message>) {
        self.s.handle_frame(self.now, c, messages);
        self.pump();
    }

    fn close(&mut self, c: ConnId) {
        self.s.handle_closed(self.now, c);
        self.pump();
    }

    /// Time passes by `d` as a loop that runs lets it pass: the state's
    /// timeouts run at each `poll_timeout` that comes meanwhile, and at
    /// the end (sooner is harmless).
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.s.poll_timeout().filter(|&at| at < until) {
            self.now = at;
            self.timeout();
        }
        self.now = until;
        self.timeout();
    }

    /// Time passes by `d` while the loop does not run (its process or
    /// machine paused): the state hears of it at the end only.
    fn stall(&mut self, d: Duration) {
        self.now += d;
        self.timeout();
    }

    fn timeout(&mut self) {
        self.s.handle_timeout(self.now);
        self.pump();
        let next = self.s.poll_timeout();
        // A release larger than a step asks for its next step at once (it
        // ends: the tests of `release` count its steps).
        assert!(
            next.is_none_or(|at| at > self.now || self.s.is_releasing()),
            "poll_timeout {next:?} is not after {:?}: the loop would spin",
            self.now
        );
    }

    /// Everything sent to `c` since the last look.
    fn recv(&mut self, c: ConnId) -> Vec<Message> {
        self.mail.remove(&c).map(Vec::from).unwrap_or_default()
    }

    fn is_closed(&self, c: ConnId) -> bool {
        self.closed.contains(&c)
    }

    /// A dask/1.1 client without the feature `key-waiting` (the stories
    /// of that feature are in `tests/observe.rs`).
    fn client(&mut self) -> ConnId {
        let c = self.connect();
        let mut hello = handshake::offer(Role::Client, None);
        hello.features = Some(Vec::new());
        self.send(c, hello);
        let got = self.recv(c);
        assert!(
            matches!(&got[..], [Message::Hello(h)] if h.role == Role::Scheduler),
            "{got:?}"
        );
        c
    }

    fn worker(&mut self, name: &str, functions: &[&str], nthreads: u32) -> ConnId {
        self.worker_holding(name, functions, nthreads, None)
    }

    /// A worker that registers listing `held` (dask/1.1: values it kept
    /// from before it lost its scheduler).
    fn worker_holding(
        &mut self,
        name: &str,
        functions: &[&str],
        nthreads: u32,
        held: Option<BTreeMap<Key, u64>>,
    ) -> ConnId {
        let c = self.connect();
        self.send(c, handshake::offer(Role::Worker, Some(name.into())));
        self.send(
            c,
            RegisterWorker {
                name: name.into(),
                address: address(name),
                nthreads,
                memory_limit: None,
                resources: None,
                functions: functions.iter().map(|f| f.to_string()).collect(),
                pid: None,
                held,
            },
        );
        let got = self.recv(c);
        assert!(
            matches!(
                &got[..],
                [Message::Hello(_), Message::WorkerRegistered(_), ..]
            ),
            "{got:?}"
        );
        // Anything after registration (compute-task) stays for the test.
        for m in got.into_iter().skip(2).rev() {
            self.mail.entry(c).or_default().push_front(m);
        }
        c
    }

    fn submit(&mut self, c: ConnId, request: u64, tasks: Vec<TaskSpec>, wanted: &[&str]) {
        self.send(
            c,
            UpdateGraph {
                request,
                tasks,
                wanted: keys(wanted),
                ack: None,
            },
        );
    }

    fn finish(&mut self, w: ConnId, key: &str, nbytes: u64) {
        self.send(
            w,
            TaskFinished {
                key: key.into(),
                nbytes,
                duration_us: None,
                value: None,
            },
        );
    }

    fn fail(&mut self, w: ConnId, key: &str, message: &str) {
        self.send(
            w,
            TaskErred {
                key: key.into(),
                error_type: "ValueError".into(),
                message: message.into(),
                traceback: String::new(),
            },
        );
    }

    fn state(&self, key: &str) -> Option<&'static str> {
        self.s.task_state(key)
    }
}

/// The compute-tasks in `messages`.
fn computes(messages: &[Message]) -> Vec<&ComputeTask> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::ComputeTask(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn compute_keys(messages: &[Message]) -> Vec<&str> {
    computes(messages).iter().map(|c| c.key.as_str()).collect()
}

fn freed(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::FreeKeys(f) => Some(f.keys.iter().map(|k| k.as_str())),
            _ => None,
        })
        .flatten()
        .collect()
}

fn finished(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::KeyFinished(f) => Some(f.key.as_str()),
            _ => None,
        })
        .collect()
}

fn error_of(messages: &[Message]) -> &ErrorReport {
    messages
        .iter()
        .find_map(|m| match m {
            Message::ErrorReport(e) => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error in {messages:?}"))
}

// ---- handshake and registration ----------------------------------------

#[test]
fn handshake_gives_each_connection_an_id() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Client, Some("me".into())));
    let got = sim.recv(c);
    let Message::Hello(h) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (h.role, h.id, h.version),
        (Role::Scheduler, Some(1), handshake::VERSION)
    );
    assert!(handshake::check_reply(h, Role::Scheduler).is_ok());
    let w = sim.connect();
    sim.send(w, handshake::offer(Role::Worker, None));
    let Message::Hello(h) = &sim.recv(w)[0] else {
        panic!()
    };
    assert_eq!(h.id, Some(2));
}

#[test]
fn another_major_version_is_refused_with_3001_and_closed() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut hello = handshake::offer(Role::Client, None);
    hello.version.major = 2;
    sim.send(c, hello);
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!((e.code, e.fatal), (3001, true));
    assert!(sim.is_closed(c));
}

#[test]
fn first_message_not_hello_and_peer_role_are_bad_handshakes() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, Heartbeat { metrics: None });
    assert_eq!(error_of(&sim.recv(c)).code, 3002);
    assert!(sim.is_closed(c));
    let p = sim.connect();
    sim.send(p, handshake::offer(Role::Peer, None));
    assert_eq!(error_of(&sim.recv(p)).code, 3002);
    assert!(sim.is_closed(p));
}

#[test]
fn poll_timeout_is_the_next_handshake_heartbeat_or_retry_deadline() {
    let mut sim = Sim::new();
    assert_eq!(sim.s.poll_timeout(), None, "nothing to time");
    let after = |sim: &Sim, d: Duration| Some(sim.now + d + JUST_AFTER);
    let c = sim.connect();
    assert_eq!(sim.s.poll_timeout(), after(&sim, Duration::from_secs(10)));
    sim.send(c, handshake::offer(Role::Client, None));
    sim.recv(c);
    // A client has no deadline: the next check finds nothing and stops.
    sim.advance(Duration::from_secs(11));
    assert_eq!(sim.s.poll_timeout(), None);
    let w = sim.worker("w", &["f"], 1);
    assert_eq!(sim.s.poll_timeout(), after(&sim, Duration::from_secs(10)));
    // A heartbeat moves the deadline, found at the next check.
    sim.advance(Duration::from_secs(4));
    sim.send(w, Heartbeat { metrics: None });
    let beat = sim.now;
    sim.advance(Duration::from_secs(7));
    assert!(!sim.is_closed(w));
    assert_eq!(
        sim.s.poll_timeout(),
        Some(beat + Duration::from_secs(10) + JUST_AFTER)
    );
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.advance(Duration::from_secs(11));
    assert_eq!(error_of(&sim.recv(c)).code, 3002);
    assert!(sim.is_closed(c));
}

#[test]
fn a_second_worker_with_a_live_name_gets_3004_and_the_first_keeps_working() {
    let mut sim = Sim::new();
    let w1 = sim.worker("alice", &["inc"], 1);
    let w2 = sim.connect();
    sim.send(w2, handshake::offer(Role::Worker, None));
    sim.recv(w2);
    let mut reg = RegisterWorker {
        name: "alice".into(),
        address: address("other"),
        nthreads: 1,
        memory_limit: None,
        resources: None,
        functions: vec![],
        pid: None,
        held: None,
    };
    sim.send(w2, reg.clone());
    let e = error_of(&sim.recv(w2)).clone();
    assert_eq!((e.code, e.fatal), (3004, true));
    assert!(sim.is_closed(w2) && !sim.is_closed(w1));
    assert_eq!(sim.s.worker_count(), 1);
    // Once alice is gone the name is free again.
    sim.close(w1);
    let w3 = sim.connect();
    sim.send(w3, handshake::offer(Role::Worker, None));
    reg.address = address("alice");
    sim.send(w3, reg);
    assert!(
        matches!(&sim.recv(w3)[1], Message::WorkerRegistered(r) if r.heartbeat_interval_ms == 1000)
    );
}

#[test]
fn a_message_not_allowed_for_the_role_closes_only_that_connection() {
    let mut sim = Sim::new();
    let good = sim.client();
    let bad = sim.client();
    sim.send(
        bad,
        TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        },
    );
    let e = error_of(&sim.recv(bad)).clone();
    assert_eq!((e.code, e.fatal), (2004, true));
    assert!(sim.is_closed(bad) && !sim.is_closed(good));
    // A worker may not submit graphs either, nor talk before registering.
    let w = sim.connect();
    sim.send(w, handshake::offer(Role::Worker, None));
    sim.recv(w);
    sim.send(w, Heartbeat { metrics: None });
    assert!(!sim.is_closed(w));
    sim.send(
        w,
        TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        },
    );
    assert_eq!(error_of(&sim.recv(w)).code, 2004);
    sim.send(good, ListDatasets { request: 1 });
    assert!(matches!(&sim.recv(good)[..], [Message::Datasets(_)]));
}

// ---- graphs -----------------------------------------------------------------

#[test]
fn a_chain_runs_link_by_link_and_intermediates_are_freed() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["inc"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("c", "inc", vec![r("b")]),
            spec("b", "inc", vec![r("a")]),
            spec("a", "inc", vec![Value::from(1)]),
        ],
        &["c"],
    );
    let got = sim.recv(w);
    assert_eq!(compute_keys(&got), ["a"]);
    assert!(computes(&got)[0].who_has.is_empty());
    assert_eq!(sim.state("c"), Some("waiting"));

    sim.finish(w, "a", 1);
    let got = sim.recv(w);
    assert_eq!(compute_keys(&got), ["b"]);
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w")]);

    sim.finish(w, "b", 1);
    let got = sim.recv(w);
    // a is no longer needed once b is in memory.
    assert_eq!(freed(&got), ["a"]);
    assert_eq!(compute_keys(&got), ["c"]);
    assert_eq!(sim.state("a"), Some("released"));
    assert!(sim.recv(c).is_empty(), "no event before c finishes");

    sim.finish(w, "c", 9);
    assert_eq!(freed(&sim.recv(w)), ["b"]);
    assert!(
        matches!(&sim.recv(c)[..], [Message::KeyFinished(f)] if f.key.as_str() == "c" && f.nbytes == 9)
    );

    // Releasing c forgets the whole graph.
    sim.send(c, ReleaseKeys { keys: keys(&["c"]) });
    assert_eq!(freed(&sim.recv(w)), ["c"]);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn tasks_nothing_wants_are_not_run() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["inc"], 2);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("x", "inc", vec![Value::from(1)]),
            spec("y", "inc", vec![Value::from(2)]),
        ],
        &["x"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["x"]);
    assert_eq!(sim.state("y"), None);
}

#[test]
fn placement_prefers_the_worker_holding_the_most_dependency_bytes() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 2);
    let w2 = sim.worker("w2", &["f"], 2);
    let c = sim.client();
    let pinned = |key: &str, worker: &str| {
        let mut s = spec(key, "f", vec![]);
        s.workers = Some(vec![worker.into()]);
        s
    };
    sim.submit(
        c,
        1,
        vec![pinned("big", "w1"), pinned("small", "w2")],
        &["big", "small"],
    );
    assert_eq!(compute_keys(&sim.recv(w1)), ["big"]);
    assert_eq!(compute_keys(&sim.recv(w2)), ["small"]);
    sim.finish(w1, "big", 1000);
    sim.finish(w2, "small", 10);
    // w1 is busier, but holds more of what the task needs.
    sim.submit(c, 2, vec![pinned("busy", "w1")], &["busy"]);
    assert_eq!(compute_keys(&sim.recv(w1)), ["busy"]);
    sim.submit(
        c,
        3,
        vec![spec("z", "f", vec![r("big"), r("small")])],
        &["z"],
    );
    let got = sim.recv(w1);
    assert_eq!(compute_keys(&got), ["z"]);
    let who = &computes(&got)[0].who_has;
    assert_eq!(who[&Key::from("big")], [address("w1")]);
    assert_eq!(who[&Key::from("small")], [address("w2")]);
    assert!(sim.recv(w2).is_empty());
}

#[test]
fn consecutive_roots_go_to_the_same_worker_so_their_dependent_needs_no_transfer() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 2);
    let w2 = sim.worker("w2", &["f"], 2);
    let c = sim.client();
    // Two small trees: (a, b) -> ab and (c, d) -> cd.
    sim.submit(
        c,
        1,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![]),
            spec("ab", "f", vec![r("a"), r("b")]),
            spec("c", "f", vec![]),
            spec("d", "f", vec![]),
            spec("cd", "f", vec![r("c"), r("d")]),
        ],
        &["ab", "cd"],
    );
    // w1 takes roots until its 4 slots are full; the rest go to w2.
    assert_eq!(compute_keys(&sim.recv(w1)), ["a", "b", "c", "d"]);
    assert!(compute_keys(&sim.recv(w2)).is_empty());
    for k in ["a", "b"] {
        sim.finish(w1, k, 8);
    }
    // ab's inputs are both on w1: it runs there with no fetch.
    let got = sim.recv(w1);
    assert_eq!(compute_keys(&got), ["ab"]);
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w1")]);
    assert_eq!(computes(&got)[0].who_has[&Key::from("b")], [address("w1")]);
}

#[test]
fn a_task_waits_in_no_worker_until_a_worker_offers_its_function() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    let mut gpu = spec("g", "inc", vec![]);
    gpu.resources = Some([("GPU".to_string(), 1.0)].into());
    let mut pinned = spec("p", "inc", vec![]);
    pinned.workers = Some(vec!["w3".into()]);
    sim.submit(
        c,
        1,
        vec![spec("m", "mul", vec![]), gpu, pinned],
        &["m", "g", "p"],
    );
    assert!(sim.recv(w1).is_empty());
    for k in ["m", "g", "p"] {
        assert_eq!(sim.state(k), Some("no-worker"), "{k}");
    }
    let w2 = sim.worker("w2", &["mul", "inc"], 4);
    assert_eq!(compute_keys(&sim.recv(w2)), ["m"]);
    // Resources and restrictions are checked too.
    let w3 = sim.connect();
    sim.send(w3, handshake::offer(Role::Worker, None));
    sim.send(
        w3,
        RegisterWorker {
            name: "w3".into(),
            address: address("w3"),
            nthreads: 2,
            memory_limit: None,
            resources: Some([("GPU".to_string(), 2.0)].into()),
            functions: vec!["inc".into()],
            pid: None,
            held: None,
        },
    );
    let mut got = compute_keys(&sim.recv(w3))
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["g", "p"]);
    // When the only capable worker leaves, its tasks wait again.
    sim.close(w3);
    assert_eq!(sim.state("p"), Some("no-worker"));
    assert_eq!(sim.state("g"), Some("no-worker"));
}

#[test]
fn a_worker_gets_at_most_twice_its_threads_and_the_rest_queue_in_priority_order() {
    let mut sim = Sim::new();
    let c = sim.client();
    let mut tasks: Vec<TaskSpec> = (0..6)
        .map(|i| spec(&format!("t{i}"), "f", vec![]))
        .collect();
    tasks[4].priority = Some(10);
    sim.submit(c, 1, tasks, &["t0", "t1", "t2", "t3", "t4", "t5"]);
    assert_eq!(sim.state("t0"), Some("no-worker"));
    let w = sim.worker("w", &["f"], 1);
    // 1 thread + queue depth 1: two in flight, the high-priority one first.
    assert_eq!(compute_keys(&sim.recv(w)), ["t4", "t0"]);
    assert_eq!(computes(&sim.mail_peek(w)).len(), 0);
    for k in ["t1", "t2", "t3", "t5"] {
        assert_eq!(sim.state(k), Some("queued"));
    }
    sim.finish(w, "t4", 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["t1"]);
    sim.finish(w, "t0", 1);
    sim.finish(w, "t1", 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["t2", "t3"]);
}

#[test]
fn a_worker_running_tiny_tasks_is_given_more_at_once() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let tasks: Vec<TaskSpec> = (0..300)
        .map(|i| spec(&format!("t-{i}"), "f", vec![]))
        .collect();
    let wanted: Vec<String> = (0..300).map(|i| format!("t-{i}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(|s| s.as_str()).collect();
    // One task group (`t`): durations are estimated per group.
    sim.submit(c, 1, tasks, &wanted);
    assert_eq!(
        compute_keys(&sim.recv(w)).len(),
        2,
        "unknown durations: 2 per thread"
    );
    let report = |sim: &mut Sim, key: &str, us: u64| {
        sim.send(
            w,
            TaskFinished {
                key: key.into(),
                nbytes: 1,
                duration_us: Some(us),
                value: None,
            },
        );
    };
    // 10 us tasks: 1 ms of queued work is 100 (under the cap of 256), plus
    // the running one.
    report(&mut sim, "t-0", 10);
    assert_eq!(compute_keys(&sim.recv(w)).len(), 100);
    assert_eq!(
        sim.s
            .tasks
            .iter()
            .filter(|(_, t)| t.state().name() == "processing")
            .count(),
        101
    );
    // Long tasks shrink it back to one queued per thread as the average grows.
    for i in 1..=100 {
        report(&mut sim, &format!("t-{i}"), 1_000_000);
    }
    let w_state = sim
        .s
        .workers
        .iter()
        .next()
        .map(|(_, w)| w.slots(&sim.s.durations));
    assert_eq!(w_state, Some(2));
}

impl Sim {
    /// Two workers and a client; task `a` runs on w1, then w1 goes silent
    /// for 12 s (past the heartbeat timeout) while w2 keeps beating.
    fn with_a_running_on_w1_and_w1_gone_silent() -> (Sim, ConnId, ConnId, ConnId) {
        let mut sim = Sim::new();
        let w1 = sim.worker("w1", &["f"], 1);
        let w2 = sim.worker("w2", &["f"], 1);
        let c = sim.client();
        sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
        assert_eq!(compute_keys(&sim.recv(w1)), ["a"]);
        for _ in 0..12 {
            sim.advance(Duration::from_secs(1));
            sim.send(w2, Heartbeat { metrics: None });
        }
        (sim, w1, w2, c)
    }

    fn mail_peek(&self, c: ConnId) -> Vec<Message> {
        self.mail
            .get(&c)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[test]
fn graph_order_is_depth_first_so_branches_finish_before_the_next_starts() {
    let mut sim = Sim::new();
    let c = sim.client();
    // total = sum(a0', a1', a2') with ai' = inc(ai).
    let mut tasks = vec![spec("total", "sum", vec![r("b0"), r("b1"), r("b2")])];
    for i in 0..3 {
        tasks.push(spec(&format!("a{i}"), "inc", vec![Value::from(i)]));
        tasks.push(spec(&format!("b{i}"), "inc", vec![r(&format!("a{i}"))]));
    }
    sim.submit(c, 1, tasks, &["total"]);
    let w = sim.worker("w", &["inc", "sum"], 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["a0", "a1"]);
    sim.finish(w, "a0", 1);
    // b0 comes before a2: its branch finishes first.
    assert_eq!(compute_keys(&sim.recv(w)), ["b0"]);
}

#[test]
fn an_error_reaches_every_dependent_with_its_cause() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![r("a")]),
            spec("c", "f", vec![r("b")]),
        ],
        &["a", "c"],
    );
    sim.recv(w);
    sim.fail(w, "a", "boom");
    let got = sim.recv(c);
    assert_eq!(got.len(), 2, "{got:?}");
    for m in &got {
        let Message::KeyErred(e) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (e.error_type.as_str(), e.message.as_str()),
            ("ValueError", "boom")
        );
        match e.key.as_str() {
            "a" => assert_eq!(e.cause, None),
            "c" => assert_eq!(e.cause, Some(Key::from("a"))),
            other => panic!("event for {other}"),
        }
    }
    // key-erred does not end a want: the erred keys stay while wanted (b
    // between them), so a task built on one later errs at once, with the
    // cause, instead of being refused as unknown.
    assert_eq!(
        [sim.state("a"), sim.state("b"), sim.state("c")],
        [Some("erred"); 3]
    );
    sim.submit(c, 2, vec![spec("d", "f", vec![r("c")])], &["d"]);
    let got = sim.recv(c);
    let [Message::KeyErred(e)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (e.key.as_str(), e.message.as_str(), e.cause.as_ref()),
        ("d", "boom", Some(&Key::from("a")))
    );
    let got = sim.recv(w);
    assert!(compute_keys(&got).is_empty(), "nothing runs: {got:?}");
    // Wanting an erred key again repeats its event.
    sim.submit(c, 3, vec![], &["a"]);
    assert!(matches!(&sim.recv(c)[..], [Message::KeyErred(e)] if e.key.as_str() == "a"));
    // Released, they are forgotten; submitting again computes again.
    sim.send(
        c,
        ReleaseKeys {
            keys: keys(&["a", "c", "d"]),
        },
    );
    assert_eq!(sim.s.task_count(), 0);
    sim.submit(c, 4, vec![spec("a", "f", vec![])], &["a"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
}

#[test]
fn an_erred_key_is_kept_for_each_client_until_it_releases_it() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(c1, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.submit(c2, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.recv(w);
    sim.fail(w, "a", "boom");
    for c in [c1, c2] {
        assert!(matches!(&sim.recv(c)[..], [Message::KeyErred(e)] if e.key.as_str() == "a"));
    }
    sim.send(c1, ReleaseKeys { keys: keys(&["a"]) });
    assert_eq!(sim.state("a"), Some("erred"), "c2 still holds it");
    // A dataset holds it like a client.
    sim.send(
        c2,
        PublishDataset {
            request: 2,
            name: "failed".into(),
            keys: keys(&["a"]),
            overwrite: None,
        },
    );
    sim.close(c2);
    assert_eq!(sim.state("a"), Some("erred"));
    // Another client getting the dataset gets the error and wants the key.
    sim.send(
        c1,
        GetDataset {
            request: 3,
            name: "failed".into(),
        },
    );
    let got = sim.recv(c1);
    assert!(
        matches!(&got[..], [Message::Dataset(_), Message::KeyErred(e)] if e.key.as_str() == "a"),
        "{got:?}"
    );
    sim.send(
        c1,
        UnpublishDataset {
            request: 4,
            name: "failed".into(),
        },
    );
    assert_eq!(sim.state("a"), Some("erred"));
    // cancel-keys ends the want too, and says so.
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["a"]),
            force: None,
        },
    );
    let got = sim.recv(c1);
    assert!(
        matches!(&got[..], [Message::OkReply(_), Message::KeyCancelled(k)] if k.key.as_str() == "a"),
        "{got:?}"
    );
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn a_task_with_retries_runs_again_before_its_error_is_reported() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let mut flaky = spec("flaky", "f", vec![]);
    flaky.retries = Some(1);
    sim.submit(c, 1, vec![flaky.clone()], &["flaky"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["flaky"]);
    sim.fail(w, "flaky", "once");
    assert_eq!(compute_keys(&sim.recv(w)), ["flaky"]);
    assert!(sim.recv(c).is_empty());
    sim.fail(w, "flaky", "twice");
    assert!(matches!(&sim.recv(c)[..], [Message::KeyErred(e)] if e.message == "twice"));
    // And a retry that succeeds reports success (once the failed key is
    // released, the same key is a new task).
    sim.send(
        c,
        ReleaseKeys {
            keys: keys(&["flaky"]),
        },
    );
    sim.submit(c, 2, vec![flaky], &["flaky"]);
    sim.recv(w);
    sim.fail(w, "flaky", "once");
    sim.recv(w);
    sim.finish(w, "flaky", 3);
    assert_eq!(finished(&sim.recv(c)), ["flaky"]);
}

#[test]
fn a_refused_cycle_is_named_in_the_message() {
    let mut sim = Sim::new();
    sim.worker("w", &["f"], 1);
    let c = sim.client();
    let cases: Vec<(Vec<TaskSpec>, &str)> = vec![
        (
            vec![
                spec("root", "f", vec![]),
                spec("a", "f", vec![r("root"), r("b")]),
                spec("b", "f", vec![r("c")]),
                spec("c", "f", vec![r("a")]),
                spec("below", "f", vec![r("c")]),
            ],
            r#"cycle: "a" -> "b" -> "c" -> "a" (each depends on the next)"#,
        ),
        (
            vec![spec("me", "f", vec![r("me")])],
            r#"cycle: "me" -> "me" (a task that depends on itself)"#,
        ),
    ];
    for (request, (tasks, named)) in cases.into_iter().enumerate() {
        sim.submit(c, request as u64, tasks, &[]);
        let e = error_of(&sim.recv(c)).clone();
        assert_eq!(e.code, 4003);
        assert!(e.message.ends_with(named), "{}", e.message);
    }
    // A long cycle of long keys: the message stays short, `keys` has all.
    let long = |i: usize| format!("{}{i:03}", "k".repeat(200));
    let tasks: Vec<TaskSpec> = (0..100)
        .map(|i| spec(&long(i), "f", vec![r(&long((i + 1) % 100))]))
        .collect();
    sim.submit(c, 9, tasks, &[]);
    let e = error_of(&sim.recv(c)).clone();
    assert!(e.message.len() < 1500, "{}", e.message.len());
    assert!(
        e.message.contains("... (100 tasks on this cycle)"),
        "{}",
        e.message
    );
    assert_eq!(e.keys.map(|k| k.len()), Some(100));
}

#[test]
fn refused_graphs_change_nothing() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    // (graph, wanted, expected code, expected offending keys)
    type Case<'a> = (Vec<TaskSpec>, Vec<&'a str>, u32, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        // unknown reference (the good task in the same graph is refused too)
        (
            vec![spec("ok", "f", vec![]), spec("x", "f", vec![r("nope")])],
            vec!["x"],
            4001,
            vec!["nope"],
        ),
        // unknown wanted key
        (
            vec![spec("ok", "f", vec![])],
            vec!["ok", "ghost"],
            4001,
            vec!["ghost"],
        ),
        // the same key twice with different definitions
        (
            vec![spec("d", "f", vec![]), spec("d", "g", vec![])],
            vec!["d"],
            4002,
            vec!["d"],
        ),
        // a cycle, and a task hanging below it
        (
            vec![
                spec("ok", "f", vec![]),
                spec("p", "f", vec![r("q"), r("ok")]),
                spec("q", "f", vec![r("p")]),
                spec("below", "f", vec![r("q")]),
            ],
            vec!["below"],
            4003,
            vec!["p", "q"],
        ),
        // a cycle nothing outside it depends on (no sink above it)
        (
            vec![
                spec("ok", "f", vec![]),
                spec("a", "f", vec![r("b")]),
                spec("b", "f", vec![r("a")]),
            ],
            vec!["ok"],
            4003,
            vec!["a", "b"],
        ),
        // a task depending on itself
        (
            vec![spec("me", "f", vec![r("me")])],
            vec!["me"],
            4003,
            vec!["me"],
        ),
    ];
    for (request, (tasks, wanted, code, bad)) in cases.into_iter().enumerate() {
        sim.submit(c, request as u64, tasks, &wanted);
        let got = sim.recv(c);
        let e = error_of(&got);
        assert_eq!(e.code, code, "{e:?}");
        assert!(!e.fatal);
        assert_eq!(e.request, Some(request as u64));
        assert_eq!(e.keys, Some(keys(&bad)));
        assert!(
            e.message.contains(&format!("{:?}", bad[0])),
            "{}",
            e.message
        );
        assert_eq!(sim.s.task_count(), 0);
        assert!(sim.recv(w).is_empty());
        assert!(!sim.is_closed(c));
    }
    // args that are not an array, kwargs that are not a map: 2003, not fatal.
    let mut bad = spec("bad", "f", vec![]);
    bad.args = raw(Value::from(1));
    sim.submit(c, 9, vec![bad], &["bad"]);
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!(
        (e.code, e.fatal, e.keys),
        (2003, false, Some(keys(&["bad"])))
    );
    let mut bad = spec("bad", "f", vec![]);
    bad.kwargs = Some(raw(Value::Array(vec![])));
    sim.submit(c, 10, vec![bad], &["bad"]);
    assert_eq!(error_of(&sim.recv(c)).code, 2003);
    // A known key with another definition is a duplicate too.
    sim.submit(c, 11, vec![spec("k", "f", vec![])], &["k"]);
    sim.submit(c, 12, vec![spec("k", "f", vec![Value::from(1)])], &["k"]);
    assert_eq!(error_of(&sim.recv(c)).code, 4002);
}

#[test]
fn arguments_reach_the_worker_as_given_whether_or_not_the_record_holds_them() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 64);
    let c = sim.client();
    let long = "a-key-longer-than-the-twenty-one-bytes-held-in-place";
    let graph = |sim: &mut Sim, request: u64, last: Value| {
        sim.submit(
            c,
            request,
            vec![
                spec("a", "f", vec![]),
                spec(long, "f", vec![]),
                // Only references to its dependencies, in order: not held.
                spec("ab", "f", vec![r("a"), r(long)]),
                // The same dependency twice, a reference and a value, a
                // dependency defined after it: held as given.
                spec("aa", "f", vec![r("a"), r("a")]),
                spec("a1", "f", vec![r("a"), Value::from(1)]),
                spec("later", "f", vec![r("z")]),
                spec("z", "f", vec![last]),
            ],
            &["ab", "aa", "a1", "later"],
        )
    };
    graph(&mut sim, 1, Value::from(2));
    let derived = |sim: &Sim, key: &str| {
        let t = sim.s.task_id(key).expect("a task");
        sim.s.tasks[t].args_are_dependencies()
    };
    assert!(derived(&sim, "ab"));
    for key in ["aa", "a1", "later", "a", "z"] {
        assert!(!derived(&sim, key), "{key}");
    }
    // The same graph again is the same definition; another is refused.
    graph(&mut sim, 2, Value::from(2));
    assert!(sim.recv(c).is_empty());
    graph(&mut sim, 3, Value::from(3));
    assert_eq!(error_of(&sim.recv(c)).code, ErrorCode::DuplicateKey as u32);
    sim.submit(c, 4, vec![spec("ab", "f", vec![r(long), r("a")])], &[]);
    assert_eq!(error_of(&sim.recv(c)).code, ErrorCode::DuplicateKey as u32);

    for k in ["a", long, "z"] {
        sim.finish(w, k, 1);
    }
    let mut sent: Vec<(String, RawValue)> = Vec::new();
    for m in sim.recv(w) {
        if let Message::ComputeTask(ct) = m {
            sent.push((ct.key.0, ct.args));
        }
    }
    sent.sort_by(|x, y| x.0.cmp(&y.0));
    let expected = [
        ("a", raw(Value::Array(vec![]))),
        (long, raw(Value::Array(vec![]))),
        ("a1", raw(Value::Array(vec![r("a"), Value::from(1)]))),
        ("aa", raw(Value::Array(vec![r("a"), r("a")]))),
        ("ab", raw(Value::Array(vec![r("a"), r(long)]))),
        ("later", raw(Value::Array(vec![r("z")]))),
        ("z", raw(Value::Array(vec![Value::from(2)]))),
    ];
    let sent: Vec<(&str, &RawValue)> = sent.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let expected: Vec<(&str, &RawValue)> = expected.iter().map(|(k, a)| (*k, a)).collect();
    assert_eq!(sent, expected);
}

#[test]
fn a_key_referenced_many_times_is_one_dependency() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 64);
    let c = sim.client();
    let leaves: Vec<String> = (0..40).map(|i| format!("leaf-{i}")).collect();
    let mut tasks: Vec<TaskSpec> = leaves.iter().map(|k| spec(k, "f", vec![])).collect();
    // Each leaf twice, in two nested lists: past the scanned dedup limit.
    let refs: Vec<Value> = leaves.iter().map(|k| r(k)).collect();
    tasks.push(spec(
        "all",
        "f",
        vec![Value::Array(refs.clone()), Value::Array(refs)],
    ));
    sim.submit(c, 1, tasks, &["all"]);
    assert_eq!(compute_keys(&sim.recv(w)).len(), 40);
    for k in &leaves {
        sim.finish(w, k, 1);
    }
    let got = sim.recv(w);
    let all = computes(&got);
    assert_eq!(all.len(), 1);
    let deps: Vec<&str> = all[0].who_has.keys().map(|k| k.as_str()).collect();
    let mut expected: Vec<&str> = leaves.iter().map(|k| k.as_str()).collect();
    expected.sort();
    assert_eq!(deps, expected);
}

#[test]
fn two_clients_share_a_key_and_its_data_lives_until_both_release_it() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(c1, 1, vec![spec("s", "f", vec![Value::from(1)])], &["s"]);
    sim.submit(c2, 1, vec![spec("s", "f", vec![Value::from(1)])], &["s"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["s"], "computed once");
    sim.finish(w, "s", 5);
    assert_eq!(finished(&sim.recv(c1)), ["s"]);
    assert_eq!(finished(&sim.recv(c2)), ["s"]);
    sim.send(c1, ReleaseKeys { keys: keys(&["s"]) });
    assert!(freed(&sim.recv(w)).is_empty());
    // A client joining later gets the event at once.
    let c3 = sim.client();
    sim.submit(c3, 1, vec![spec("s", "f", vec![Value::from(1)])], &["s"]);
    assert_eq!(finished(&sim.recv(c3)), ["s"]);
    sim.close(c3);
    sim.send(
        c2,
        Close {
            reason: None,
            reconnect: None,
        },
    );
    assert!(sim.is_closed(c2));
    assert_eq!(freed(&sim.recv(w)), ["s"]);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn a_key_wanted_twice_in_one_graph_gets_one_event() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    // New in this graph, listed twice: computed once, finished once.
    sim.submit(
        c,
        1,
        vec![spec("s", "f", vec![Value::from(1)])],
        &["s", "s"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["s"]);
    sim.finish(w, "s", 5);
    assert_eq!(finished(&sim.recv(c)), ["s"]);
    // Known and in memory, listed twice with a new task that refers to it:
    // one key-finished for it now, one for the new task later.
    sim.submit(c, 2, vec![spec("t", "f", vec![r("s")])], &["s", "t", "s"]);
    assert_eq!(finished(&sim.recv(c)), ["s"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["t"]);
    sim.finish(w, "t", 5);
    assert_eq!(finished(&sim.recv(c)), ["t"]);
}

#[test]
fn cancelling_frees_running_work_and_tells_the_client() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(
        c1,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["b", "unknown"]),
            force: None,
        },
    );
    assert!(matches!(&sim.recv(c1)[..], [Message::KeyCancelled(k)] if k.key.as_str() == "b"));
    assert_eq!(freed(&sim.recv(w)), ["a"]);
    assert_eq!(sim.s.task_count(), 0);
    // A late result of a cancelled task is ignored.
    sim.finish(w, "a", 1);
    assert_eq!(sim.s.task_count(), 0);

    // Without force, other clients keep the key; with force, nobody does.
    sim.submit(c1, 2, vec![spec("s", "f", vec![])], &["s"]);
    sim.submit(c2, 2, vec![spec("s", "f", vec![])], &["s"]);
    sim.recv(w);
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["s"]),
            force: None,
        },
    );
    assert_eq!(sim.recv(c1).len(), 1);
    assert_eq!(sim.state("s"), Some("processing"));
    sim.submit(c1, 3, vec![spec("s", "f", vec![])], &["s"]);
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["s"]),
            force: Some(true),
        },
    );
    assert!(matches!(&sim.recv(c1)[..], [Message::KeyCancelled(_)]));
    assert!(matches!(&sim.recv(c2)[..], [Message::KeyCancelled(_)]));
    assert_eq!(freed(&sim.recv(w)), ["s"]);
    assert_eq!(sim.state("s"), None);
}

#[test]
fn a_disconnected_client_releases_its_wants() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.recv(w);
    sim.close(c);
    assert_eq!(freed(&sim.recv(w)), ["a"]);
    assert_eq!(sim.s.task_count(), 0);
}

// ---- data -------------------------------------------------------------------

fn scatter_one(sim: &mut Sim, c: ConnId, key: &str, value: i64) -> Scatter {
    let m = Scatter {
        request: 7,
        data: [(Key::from(key), raw(Value::from(value)))].into(),
        workers: None,
        broadcast: None,
        ack: None,
    };
    sim.send(c, m.clone());
    m
}

#[test]
fn scatter_stores_on_a_worker_and_gather_fetches_over_its_connection() {
    let mut sim = Sim::new();
    let c = sim.client();
    scatter_one(&mut sim, c, "x", 42);
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!((e.code, e.fatal, e.request), (5001, false, Some(7)));

    let w = sim.worker("w", &["f"], 1);
    scatter_one(&mut sim, c, "x", 42);
    let got = sim.recv(w);
    let [Message::PutData(put)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(put.data[&Key::from("x")], raw(Value::from(42)));
    sim.send(
        w,
        DataStored {
            request: put.request,
            nbytes: [(Key::from("x"), 1)].into(),
        },
    );
    assert_eq!(finished(&sim.recv(c)), ["x"]);
    assert_eq!(sim.state("x"), Some("memory"));
    // The same key again is a duplicate.
    scatter_one(&mut sim, c, "x", 1);
    assert_eq!(error_of(&sim.recv(c)).code, 4002);

    sim.send(
        c,
        Gather {
            request: 8,
            keys: keys(&["x", "nothing"]),
        },
    );
    let got = sim.recv(w);
    let [Message::GetData(get)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(get.keys, keys(&["x"]));
    assert!(sim.recv(c).is_empty(), "the reply waits for the worker");
    sim.send(
        w,
        Data {
            request: get.request,
            data: [(Key::from("x"), raw(Value::from(42)))].into(),
            missing: vec![],
        },
    );
    let got = sim.recv(c);
    let [Message::GatherReply(g)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((g.request, &g.missing), (8, &keys(&["nothing"])));
    assert_eq!(g.data[&Key::from("x")], raw(Value::from(42)));

    // Scattered data feeds tasks like any result.
    sim.submit(c, 9, vec![spec("y", "f", vec![r("x")])], &["y"]);
    let got = sim.recv(w);
    assert_eq!(computes(&got)[0].who_has[&Key::from("x")], [address("w")]);
}

/// The put-data request `w` got (and nothing else).
fn put_request(sim: &mut Sim, w: ConnId) -> u64 {
    let got = sim.recv(w);
    let [Message::PutData(put)] = &got[..] else {
        panic!("{got:?}")
    };
    put.request
}

fn broadcast(sim: &mut Sim, c: ConnId, request: u64, key: &str) {
    sim.send(
        c,
        Scatter {
            request,
            data: [(Key::from(key), raw(Value::from(1)))].into(),
            workers: None,
            broadcast: Some(true),
            ack: None,
        },
    );
}

fn stored(sim: &mut Sim, w: ConnId, request: u64, key: &str) {
    sim.send(
        w,
        DataStored {
            request,
            nbytes: [(Key::from(key), 1)].into(),
        },
    );
}

#[test]
fn broadcast_puts_every_value_on_every_worker() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2) = (sim.worker("w1", &["f"], 1), sim.worker("w2", &["f"], 1));
    broadcast(&mut sim, c, 1, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));
    stored(&mut sim, w1, p1, "b");
    // Not announced, nor known, until every copy is stored.
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.state("b"), None);
    // Graphs may not use the key meanwhile (it holds scattered data).
    sim.submit(c, 2, vec![spec("b", "f", vec![])], &["b"]);
    assert_eq!(error_of(&sim.recv(c)).code, 4002);
    stored(&mut sim, w2, p2, "b");
    assert_eq!(finished(&sim.recv(c)), ["b"], "one event for two copies");
    sim.send(
        c,
        WhoHas {
            request: 2,
            keys: keys(&["b"]),
        },
    );
    let got = sim.recv(c);
    let [Message::WhoHasReply(r)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(r.who_has[&Key::from("b")], [address("w1"), address("w2")]);
}

#[test]
fn a_scatter_released_before_every_copy_is_stored_leaves_nothing() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2) = (sim.worker("w1", &[], 1), sim.worker("w2", &[], 1));
    broadcast(&mut sim, c, 1, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));
    stored(&mut sim, w1, p1, "b");
    sim.send(c, ReleaseKeys { keys: keys(&["b"]) });
    stored(&mut sim, w2, p2, "b");
    // No event, no task; both copies are freed.
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(freed(&sim.recv(w1)), ["b"]);
    assert_eq!(freed(&sim.recv(w2)), ["b"]);
    // The key can be scattered again.
    broadcast(&mut sim, c, 2, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));

    // Cancelled: the same, and the client is told.
    stored(&mut sim, w2, p2, "b");
    sim.send(
        c,
        CancelKeys {
            keys: keys(&["b"]),
            force: None,
        },
    );
    assert!(matches!(&sim.recv(c)[..], [Message::KeyCancelled(k)] if k.key.as_str() == "b"));
    stored(&mut sim, w1, p1, "b");
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(freed(&sim.recv(w1)), ["b"]);
    assert_eq!(freed(&sim.recv(w2)), ["b"]);

    // The client leaves: the same.
    broadcast(&mut sim, c, 3, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));
    stored(&mut sim, w1, p1, "b");
    sim.close(c);
    stored(&mut sim, w2, p2, "b");
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(freed(&sim.recv(w1)), ["b"]);
    assert_eq!(freed(&sim.recv(w2)), ["b"]);
}

#[test]
fn a_broadcast_is_finished_once_every_targeted_worker_answered_or_left() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2, w3) = (
        sim.worker("w1", &[], 1),
        sim.worker("w2", &[], 1),
        sim.worker("w3", &[], 1),
    );
    broadcast(&mut sim, c, 1, "b");
    let p1 = put_request(&mut sim, w1);
    let p2 = put_request(&mut sim, w2);
    sim.recv(w3);
    // w2 stores it and then leaves; w3 leaves before storing it.
    stored(&mut sim, w2, p2, "b");
    sim.close(w2);
    assert!(sim.recv(c).is_empty());
    sim.close(w3);
    assert!(sim.recv(c).is_empty());
    stored(&mut sim, w1, p1, "b");
    assert_eq!(finished(&sim.recv(c)), ["b"]);
    sim.send(
        c,
        WhoHas {
            request: 2,
            keys: keys(&["b"]),
        },
    );
    let got = sim.recv(c);
    let [Message::WhoHasReply(r)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(r.who_has[&Key::from("b")], [address("w1")]);

    // When no copy is left at the end, the key is lost.
    let w4 = sim.worker("w4", &[], 1);
    broadcast(&mut sim, c, 3, "l");
    let p1 = put_request(&mut sim, w1);
    let p4 = put_request(&mut sim, w4);
    stored(&mut sim, w4, p4, "l");
    sim.close(w4);
    sim.send(
        w1,
        DataStored {
            request: p1,
            nbytes: BTreeMap::new(),
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::KeyLost(l)] if l.key.as_str() == "l"),
        "{got:?}"
    );
    assert_eq!(sim.state("l"), None);
}

/// Scatters `keys` (values 1, 2, ...) to the one worker `w` and answers
/// its put-data.
fn scatter_to(sim: &mut Sim, c: ConnId, w: ConnId, ks: &[&str]) {
    sim.send(
        c,
        Scatter {
            request: 1,
            data: ks
                .iter()
                .zip(1..)
                .map(|(k, i)| (Key::from(*k), raw(Value::from(i))))
                .collect(),
            workers: None,
            broadcast: None,
            ack: None,
        },
    );
    let request = put_request(sim, w);
    sim.send(
        w,
        DataStored {
            request,
            nbytes: ks.iter().map(|k| (Key::from(*k), 1)).collect(),
        },
    );
    assert_eq!(finished(&sim.recv(c)).len(), ks.len());
}

/// The get-data requests `w` got, as (request, keys).
fn gets(sim: &mut Sim, w: ConnId) -> Vec<(u64, Vec<Key>)> {
    sim.recv(w)
        .into_iter()
        .map(|m| match m {
            Message::GetData(g) => (g.request, g.keys),
            other => panic!("expected get-data, got {other:?}"),
        })
        .collect()
}

fn too_large(request: u64, ks: &[&str]) -> ErrorReport {
    ErrorReport {
        code: 5002,
        message: "values do not fit in one message".into(),
        fatal: false,
        request: Some(request),
        keys: Some(keys(ks)),
    }
}

#[test]
fn a_holder_refusing_a_get_with_5002_gets_the_keys_asked_apart_and_the_client_5002() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_to(&mut sim, c, w, &["a", "b", "c"]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a", "b", "c"]),
        },
    );
    let [(first, asked)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    assert_eq!(asked, &keys(&["a", "b", "c"]));
    // Too large together, and b by itself: b alone, the others together.
    sim.send(w, too_large(*first, &["b"]));
    assert!(sim.recv(c).is_empty(), "the gather is still being answered");
    let again = gets(&mut sim, w);
    let asked: Vec<&Vec<Key>> = again.iter().map(|(_, k)| k).collect();
    assert_eq!(asked, [&keys(&["b"]), &keys(&["a", "c"])]);
    sim.send(
        w,
        Data {
            request: again[1].0,
            data: [("a", 1), ("c", 3)]
                .into_iter()
                .map(|(k, v)| (Key::from(k), raw(Value::from(v))))
                .collect(),
            missing: vec![],
        },
    );
    assert!(sim.recv(c).is_empty());
    sim.send(w, too_large(again[0].0, &["b"]));
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!(
        (e.code, e.fatal, e.request, e.keys.clone()),
        (5002, false, Some(2), Some(keys(&["b"]))),
        "{got:?}"
    );
    assert!(e.message.contains("\"b\""), "{}", e.message);
    // The refusal costs no replica: b is still there to be used.
    assert_eq!(sim.state("b"), Some("memory"));

    // A holder naming none of the keys: each is asked for alone.
    sim.send(
        c,
        Gather {
            request: 3,
            keys: keys(&["a", "c"]),
        },
    );
    let [(request, _)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    sim.send(w, too_large(*request, &[]));
    let asked: Vec<Vec<Key>> = gets(&mut sim, w).into_iter().map(|(_, k)| k).collect();
    assert_eq!(asked, [keys(&["a"]), keys(&["c"])]);
}

#[test]
fn a_gather_reply_that_would_not_fit_in_a_frame_is_a_5002_listing_its_keys() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_to(&mut sim, c, w, &["a", "b"]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a", "b"]),
        },
    );
    let [(request, _)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    // Two values of 130 MiB each: each fits in a frame, not both.
    let big = raw(Value::Binary(vec![0; 130 << 20]));
    sim.send(
        w,
        Data {
            request: *request,
            data: [(Key::from("a"), big.clone()), (Key::from("b"), big)].into(),
            missing: vec![],
        },
    );
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!(
        (e.code, e.request, e.keys.clone()),
        (5002, Some(2), Some(keys(&["a", "b"])))
    );
    assert!(e.message.contains("fewer keys"), "{}", e.message);
}

#[test]
fn an_implausible_nbytes_is_reported_clamped() {
    // PROTOCOL.md#value-too-large: no value is larger than what a receiver
    // holds in parts (dask-rs: 64 GiB), so a larger nbytes is false;
    // dask-rs clamps it, and key-finished carries the clamped value (issue
    // 18.2: this was undocumented).
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("k", "f", vec![])], &["k"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["k"]);
    sim.finish(w, "k", u64::MAX);
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.nbytes == dask_core::parts::PARTS_BYTES_MAX),
        "{got:?}"
    );
}

#[test]
fn a_key_gathered_twice_in_one_request_is_asked_and_answered_once() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_to(&mut sim, c, w, &["a"]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a", "a"]),
        },
    );
    let [(request, asked)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    assert_eq!(asked, &keys(&["a"]));
    sim.send(
        w,
        Data {
            request: *request,
            data: [(Key::from("a"), raw(Value::from(1)))].into(),
            missing: vec![],
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::GatherReply(g)] if g.data.len() == 1 && g.missing.is_empty()),
        "{got:?}"
    );
    assert_eq!(
        sim.state("a"),
        Some("memory"),
        "the holder keeps its replica"
    );
}

#[test]
fn a_put_data_refused_with_an_error_loses_its_keys_instead_of_hanging() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_one(&mut sim, c, "x", 1);
    let request = put_request(&mut sim, w);
    sim.send(w, too_large(request, &["x"]));
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::KeyLost(l)] if l.key.as_str() == "x" && l.message.contains("refused")),
        "{got:?}"
    );
    assert_eq!(sim.state("x"), None);
}

#[test]
fn gather_asks_another_holder_when_one_says_missing() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2) = (sim.worker("w1", &[], 1), sim.worker("w2", &[], 1));
    sim.send(
        c,
        Scatter {
            request: 1,
            data: [(Key::from("b"), raw(Value::from(1)))].into(),
            workers: None,
            broadcast: Some(true),
            ack: None,
        },
    );
    for w in [w1, w2] {
        let Message::PutData(put) = &sim.recv(w)[0] else {
            panic!()
        };
        let request = put.request;
        sim.send(
            w,
            DataStored {
                request,
                nbytes: [(Key::from("b"), 1)].into(),
            },
        );
    }
    sim.recv(c);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["b"]),
        },
    );
    let Message::GetData(get) = &sim.recv(w1)[0] else {
        panic!()
    };
    let request = get.request;
    sim.send(
        w1,
        Data {
            request,
            data: Default::default(),
            missing: keys(&["b"]),
        },
    );
    let Message::GetData(get) = &sim.recv(w2)[0] else {
        panic!()
    };
    let request = get.request;
    sim.send(w2, Busy { request });
    assert_eq!(
        sim.s.poll_timeout(),
        Some(sim.now + GATHER_BUSY_RETRY_INTERVAL),
        "the retry is the next deadline"
    );
    sim.advance(Duration::from_millis(100));
    let Message::GetData(again) = &sim.recv(w2)[0] else {
        panic!()
    };
    assert_eq!(again.request, request);
    sim.send(
        w2,
        Data {
            request,
            data: [(Key::from("b"), raw(Value::from(1)))].into(),
            missing: vec![],
        },
    );
    assert!(matches!(&sim.recv(c)[..], [Message::GatherReply(g)] if g.missing.is_empty()));
}

#[test]
fn datasets_hold_keys_for_other_clients() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(c1, 1, vec![spec("r", "f", vec![])], &["r"]);
    sim.recv(w);
    sim.finish(w, "r", 4);
    sim.recv(c1);
    let publish = |name: &str, overwrite| PublishDataset {
        request: 2,
        name: name.into(),
        keys: keys(&["r"]),
        overwrite,
    };
    sim.send(c1, publish("ds", None));
    assert!(matches!(
        &sim.recv(c1)[..],
        [Message::OkReply(OkReply { request: 2 })]
    ));
    sim.send(c1, publish("ds", None));
    assert_eq!(error_of(&sim.recv(c1)).code, 4005);
    sim.send(c1, publish("ds", Some(true)));
    assert!(matches!(&sim.recv(c1)[..], [Message::OkReply(_)]));
    sim.send(
        c1,
        PublishDataset {
            request: 3,
            name: "bad".into(),
            keys: keys(&["zz"]),
            overwrite: None,
        },
    );
    assert_eq!(error_of(&sim.recv(c1)).code, 4001);
    // The publisher leaves; the dataset keeps the data.
    sim.close(c1);
    assert!(freed(&sim.recv(w)).is_empty());
    sim.send(c2, ListDatasets { request: 4 });
    assert!(matches!(&sim.recv(c2)[..], [Message::Datasets(d)] if d.names == ["ds"]));
    sim.send(
        c2,
        GetDataset {
            request: 5,
            name: "ds".into(),
        },
    );
    let got = sim.recv(c2);
    assert!(matches!(&got[0], Message::Dataset(d) if d.keys == keys(&["r"])));
    assert_eq!(finished(&got), ["r"]);
    sim.send(
        c2,
        GetDataset {
            request: 6,
            name: "nope".into(),
        },
    );
    assert_eq!(error_of(&sim.recv(c2)).code, 4004);
    sim.send(
        c2,
        UnpublishDataset {
            request: 7,
            name: "ds".into(),
        },
    );
    assert!(matches!(&sim.recv(c2)[..], [Message::OkReply(_)]));
    sim.send(
        c2,
        UnpublishDataset {
            request: 8,
            name: "ds".into(),
        },
    );
    assert_eq!(error_of(&sim.recv(c2)).code, 4004);
    assert_eq!(sim.state("r"), Some("memory"), "c2 still wants it");
    sim.send(c2, ReleaseKeys { keys: keys(&["r"]) });
    assert_eq!(freed(&sim.recv(w)), ["r"]);
}

#[test]
fn cluster_info_counts_workers_clients_and_task_states() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 3);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    sim.send(c, ClusterInfo { request: 2 });
    let got = sim.recv(c);
    let [Message::ClusterInfoReply(info)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(info.clients, 1);
    assert_eq!(info.workers.len(), 1);
    assert_eq!(
        (info.workers[0].nthreads, info.workers[0].processing),
        (3, 1)
    );
    assert_eq!(
        info.tasks,
        [("processing".to_string(), 1), ("waiting".to_string(), 1)].into()
    );
    let _ = w;
}

// ---- failures ---------------------------------------------------------------

#[test]
fn a_lost_worker_has_its_work_rescheduled_and_its_results_recomputed() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![r("a")]),
            spec("c", "f", vec![r("b")]),
        ],
        &["c"],
    );
    sim.recv(w1);
    sim.finish(w1, "a", 1);
    assert_eq!(compute_keys(&sim.recv(w1)), ["b"]);
    let w2 = sim.worker("w2", &["f"], 1);
    sim.close(w1);
    // a existed only on w1: it is computed again, then b.
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
    assert_eq!(sim.state("b"), Some("waiting"));
    sim.finish(w2, "a", 1);
    assert_eq!(compute_keys(&sim.recv(w2)), ["b"]);
    sim.finish(w2, "b", 1);
    sim.finish(w2, "c", 1);
    assert_eq!(finished(&sim.recv(c)), ["c"]);
}

#[test]
fn a_silent_worker_is_declared_dead_after_the_heartbeat_timeout() {
    let (mut sim, w1, w2, _client) = Sim::with_a_running_on_w1_and_w1_gone_silent();
    assert!(sim.is_closed(w1) && !sim.is_closed(w2));
    assert!(matches!(&sim.recv(w1)[..], [Message::Close(_)]));
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
}

#[test]
fn workers_are_told_to_beat_at_least_three_times_per_heartbeat_timeout() {
    let mut sim = Sim::new();
    sim.s.config.heartbeat_timeout = Duration::from_secs(2);
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Worker, Some("w".into())));
    sim.send(
        c,
        RegisterWorker {
            name: "w".into(),
            address: address("w"),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::Hello(_), Message::WorkerRegistered(r)] if r.heartbeat_interval_ms == 666),
        "{got:?}"
    );
    // Silent for three of those intervals and a bit: dead.
    sim.advance(Duration::from_millis(1999));
    assert!(!sim.is_closed(c));
    sim.advance(Duration::from_millis(2));
    assert!(sim.is_closed(c));
}

#[test]
fn lost_scattered_data_is_reported_lost_to_wanting_clients() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    scatter_one(&mut sim, c, "x", 1);
    let Message::PutData(put) = &sim.recv(w)[0] else {
        panic!()
    };
    let request = put.request;
    sim.send(
        w,
        DataStored {
            request,
            nbytes: [(Key::from("x"), 1)].into(),
        },
    );
    sim.submit(c, 2, vec![spec("y", "f", vec![r("x")])], &["y"]);
    sim.recv(c);
    sim.close(w);
    let mut got: Vec<&str> = Vec::new();
    let mail = sim.recv(c);
    for m in &mail {
        let Message::KeyLost(l) = m else {
            panic!("{m:?}")
        };
        got.push(l.key.as_str());
    }
    got.sort();
    assert_eq!(got, ["x", "y"]);
    assert_eq!(sim.s.task_count(), 0);

    // A put in flight when its worker leaves is lost too.
    let w2 = sim.worker("w2", &["f"], 1);
    scatter_one(&mut sim, c, "z", 1);
    sim.close(w2);
    assert!(matches!(&sim.recv(c)[..], [Message::KeyLost(l)] if l.key.as_str() == "z"));
}

#[test]
fn missing_data_drops_the_replica_and_recomputes_the_dependency() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    sim.recv(w1);
    sim.finish(w1, "a", 1);
    assert_eq!(compute_keys(&sim.recv(w1)), ["b"]);
    // w1 is saturated by another task so b's retry goes to w2.
    let w2 = sim.worker("w2", &["f"], 1);
    sim.send(
        w1,
        MissingData {
            key: "a".into(),
            addresses: vec![address("w1")],
            task: "b".into(),
        },
    );
    // w1's copy is forgotten there too, and a is computed again.
    let got = sim.recv(w1);
    let got2 = sim.recv(w2);
    let mut all = compute_keys(&got);
    all.extend(compute_keys(&got2));
    assert_eq!(all, ["a"]);
    assert!(freed(&got).contains(&"a"));
    assert_eq!(sim.state("b"), Some("waiting"));
}

#[test]
fn a_new_worker_steals_tasks_queued_on_a_saturated_one() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![])],
        &["a", "b"],
    );
    assert_eq!(compute_keys(&sim.recv(w1)), ["a", "b"]);
    let w2 = sim.worker("w2", &["f"], 1);
    let got = sim.recv(w1);
    assert!(
        matches!(&got[..], [Message::StealRequest(s)] if s.key.as_str() == "b"),
        "{got:?}"
    );
    sim.send(
        w1,
        StealResponse {
            key: "b".into(),
            stolen: true,
        },
    );
    assert_eq!(compute_keys(&sim.recv(w2)), ["b"]);
    // A refused steal changes nothing.
    sim.submit(
        c,
        2,
        vec![
            spec("d", "f", vec![]),
            spec("e", "f", vec![]),
            spec("g", "f", vec![]),
        ],
        &["d", "e", "g"],
    );
    sim.recv(w1);
    sim.recv(w2);
    let w3 = sim.worker("w3", &["f"], 1);
    let _ = w3;
    let mut requests = Vec::new();
    for w in [w1, w2] {
        for m in sim.recv(w) {
            if let Message::StealRequest(s) = m {
                requests.push((w, s.key));
            }
        }
    }
    assert!(!requests.is_empty());
    for (w, key) in requests {
        sim.send(w, StealResponse { key, stolen: false });
    }
}

#[test]
fn a_task_whose_workers_keep_dying_errs_with_killed_worker() {
    let mut sim = Sim::new();
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("poison", "f", vec![]),
            spec("after", "f", vec![r("poison")]),
        ],
        &["after"],
    );
    // A worker that leaves with `close` does not count against the task.
    let polite = sim.worker("polite", &["f"], 1);
    assert_eq!(compute_keys(&sim.recv(polite)), ["poison"]);
    sim.send(
        polite,
        Close {
            reason: None,
            reconnect: None,
        },
    );
    // Lost workers do: three are allowed, the fourth errs the task.
    for i in 0..=ALLOWED_FAILURES_DEFAULT {
        let w = sim.worker(&format!("w{i}"), &["f"], 1);
        assert_eq!(compute_keys(&sim.recv(w)), ["poison"], "worker {i}");
        assert!(sim.recv(c).is_empty(), "no event before the last loss");
        sim.close(w);
    }
    let got = sim.recv(c);
    let [Message::KeyErred(e)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(e.key.as_str(), "after");
    assert_eq!(e.cause.as_ref().map(|k| k.as_str()), Some("poison"));
    assert_eq!(e.error_type, "KilledWorker");
    for name in ["poison", "\"w0\"", "\"w3\"", "4 workers"] {
        assert!(e.message.contains(name), "{name} not in {:?}", e.message);
    }
    assert!(!e.message.contains("polite"), "{:?}", e.message);
    // The operator is told once, as is `/metrics`.
    let killed: Vec<_> = std::iter::from_fn(|| sim.s.poll_log())
        .filter(|l| l.event == "killed-worker")
        .collect();
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!(
        killed[0].message.starts_with("KilledWorker: ") && killed[0].message.contains("poison")
    );
    assert_eq!(sim.s.snapshot().counters.killed_worker_total, 1);
    // The erred tasks stay while the client wants `after`; a new worker
    // gets nothing.
    assert_eq!(
        [sim.state("poison"), sim.state("after")],
        [Some("erred"); 2]
    );
    let w = sim.worker("w9", &["f"], 1);
    assert!(sim.recv(w).is_empty());
    sim.send(
        c,
        ReleaseKeys {
            keys: keys(&["after"]),
        },
    );
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn a_task_is_not_killed_by_losses_it_was_not_processing_for() {
    let mut sim = Sim::new();
    let c = sim.client();
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    // a is lost with three workers, and finishes on the fourth: the count
    // only matters while the task keeps being lost.
    for i in 0..ALLOWED_FAILURES_DEFAULT {
        let w = sim.worker(&format!("w{i}"), &["f"], 1);
        assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
        sim.close(w);
    }
    let w = sim.worker("last", &["f"], 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
    sim.finish(w, "a", 1);
    assert_eq!(finished(&sim.recv(c)), ["a"]);
}

#[test]
fn a_worker_declared_dead_is_not_heard_any_more() {
    let (mut sim, w1, w2, c) = Sim::with_a_running_on_w1_and_w1_gone_silent();
    assert!(sim.is_closed(w1));
    assert!(matches!(&sim.recv(w1)[..], [Message::Close(_)]));
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
    // w1 wakes up and reports what it was doing: none of it is taken.
    sim.finish(w1, "a", 1);
    sim.send(
        w1,
        AddKeys {
            nbytes: [(Key::from("a"), 1)].into(),
        },
    );
    sim.send(w1, Heartbeat { metrics: None });
    assert!(sim.recv(c).is_empty());
    assert!(sim.recv(w1).is_empty());
    assert_eq!(sim.state("a"), Some("processing"));
    assert_eq!(sim.s.worker_count(), 1);
    sim.finish(w2, "a", 1);
    assert_eq!(finished(&sim.recv(c)), ["a"]);
}

#[test]
fn tasks_that_may_be_fetching_from_a_lost_worker_are_asked_back() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    let c = sim.client();
    let mut b = spec("b", "f", vec![r("a")]);
    b.workers = Some(vec!["w2".into()]);
    sim.submit(c, 1, vec![spec("a", "f", vec![]), b], &["b"]);
    assert_eq!(compute_keys(&sim.recv(w1)), ["a"]);
    sim.finish(w1, "a", 1);
    let got = sim.recv(w2);
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w1")]);
    // w1 hangs and is declared dead: w2 may be waiting for w1 forever, so
    // b is asked back and placed again once a is computed again.
    sim.close(w1);
    let got = sim.recv(w2);
    assert!(
        got.iter()
            .any(|m| matches!(m, Message::StealRequest(s) if s.key.as_str() == "b")),
        "{got:?}"
    );
    assert_eq!(compute_keys(&got), ["a"]);
    sim.send(
        w2,
        StealResponse {
            key: "b".into(),
            stolen: true,
        },
    );
    assert_eq!(sim.state("b"), Some("waiting"));
    sim.finish(w2, "a", 1);
    let got = sim.recv(w2);
    assert_eq!(computes(&got)[0].key.as_str(), "b");
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w2")]);
    sim.finish(w2, "b", 1);
    assert_eq!(finished(&sim.recv(c)), ["b"]);
}

#[test]
fn validate_names_a_broken_invariant() {
    let mut sim = Sim::new();
    let _w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    assert_eq!(sim.s.validate(), Ok(()));
    let a = sim.s.task_id("a").expect("a is known");
    sim.s.tasks[a].waiters = 7;
    let e = sim.s.validate().unwrap_err();
    assert!(e.contains("task a") && e.contains("waiters 7"), "{e}");
}

#[test]
#[should_panic(expected = "scheduler invariant violated: task t5 (waiting): waiting_on 9")]
fn in_a_large_state_the_tasks_an_event_touches_are_checked() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let n = validate::VALIDATE_ALL_TASKS_MAX + 10;
    let mut tasks = vec![spec("t0", "f", vec![])];
    for i in 1..n {
        tasks.push(spec(&format!("t{i}"), "f", vec![r(&format!("t{}", i - 1))]));
    }
    sim.submit(c, 1, tasks, &[&format!("t{}", n - 1)]);
    // The whole state was checked once; the next full check is a second
    // away, so only what an event touches is checked until then.
    let t5 = sim.s.task_id("t5").expect("t5 is known");
    sim.s.tasks[t5].waiting_on = 9;
    sim.finish(w, "t0", 1);
    // t1 is sent out, t5 untouched: fine so far. Finishing t4 touches t5.
    for i in 1..5 {
        sim.finish(w, &format!("t{i}"), 1);
    }
}

#[test]
fn unregistered_and_bad_worker_registrations() {
    let mut sim = Sim::new();
    let w = sim.connect();
    sim.send(w, handshake::offer(Role::Worker, None));
    sim.recv(w);
    sim.send(
        w,
        RegisterWorker {
            name: "zero".into(),
            address: address("zero"),
            nthreads: 0,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        },
    );
    assert_eq!(error_of(&sim.recv(w)).code, 2003);
    assert!(sim.is_closed(w));
}

mod auth;
mod chaos;
mod claims;
mod durable;
mod liveness;
mod observe;
mod outflow;
mod record;
mod relay;
mod release;
mod shrink;

// ---- what the spec says about frames, lineage and 4001 (issue 18.6) -------

/// Runs `key` (already sent to `w`) to memory.
fn compute(sim: &mut Sim, w: ConnId, key: &str) {
    let got = sim.recv(w);
    assert!(
        computes(&got).iter().any(|c| c.key.as_str() == key),
        "no compute-task for {key}: {got:?}"
    );
    sim.finish(w, key, 1);
}

#[test]
fn a_frame_releasing_a_key_then_redefining_it_is_handled_in_order() {
    // PROTOCOL.md#framing: "The receiver handles the messages of a frame in
    // array order": the release is done before the new definition comes.
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f", "g"], 1);
    sim.submit(c, 1, vec![spec("k", "f", vec![])], &["k"]);
    compute(&mut sim, w, "k");
    assert_eq!(finished(&sim.recv(c)), ["k"]);
    sim.send_frame(
        c,
        vec![
            ReleaseKeys { keys: keys(&["k"]) }.into(),
            UpdateGraph {
                request: 2,
                tasks: vec![spec("k", "g", vec![])],
                wanted: keys(&["k"]),
                ack: None,
            }
            .into(),
        ],
    );
    let got = sim.recv(c);
    assert!(got.is_empty(), "no error for the redefinition: {got:?}");
    let got = sim.recv(w);
    let runs: Vec<(&str, &str)> = computes(&got)
        .iter()
        .map(|t| (t.key.as_str(), t.function.as_str()))
        .collect();
    assert_eq!(runs, [("k", "g")], "the new definition runs: {got:?}");
    // The old result is freed on the worker before the new task comes.
    let free = got
        .iter()
        .position(|m| matches!(m, Message::FreeKeys(f) if f.keys == keys(&["k"])));
    let run = got
        .iter()
        .position(|m| matches!(m, Message::ComputeTask(_)));
    assert!(free < run, "{got:?}");
}

#[test]
fn a_dependency_no_longer_needed_keeps_its_definition_while_a_dependent_is_kept() {
    // PROTOCOL.md#task-model: a task no longer needed stays known (released,
    // its definition kept) while a task the scheduler keeps depends on it,
    // so a lost result can be recomputed; it is forgotten with the last one.
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    sim.submit(
        c,
        1,
        vec![spec("x", "f", vec![]), spec("y", "f", vec![r("x")])],
        &["y"],
    );
    compute(&mut sim, w, "x");
    compute(&mut sim, w, "y");
    assert_eq!(finished(&sim.recv(c)), ["y"]);
    assert_eq!(
        sim.state("x"),
        Some("released"),
        "data freed, definition kept"
    );
    // Still known: a different definition is a duplicate...
    sim.submit(c, 2, vec![spec("x", "other", vec![])], &["x"]);
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!((e.code, e.keys.clone()), (4002, Some(keys(&["x"]))));
    // ...and a reference to it is accepted, and computes it again.
    sim.submit(c, 3, vec![spec("z", "f", vec![r("x")])], &["z"]);
    assert!(sim.recv(c).is_empty());
    compute(&mut sim, w, "x");
    compute(&mut sim, w, "z");
    assert_eq!(finished(&sim.recv(c)), ["z"]);
    // Once nothing kept depends on it, it is forgotten: unknown from then on.
    sim.send(
        c,
        ReleaseKeys {
            keys: keys(&["y", "z"]),
        },
    );
    assert_eq!(sim.state("x"), None);
    sim.submit(c, 4, vec![spec("x", "other", vec![])], &["x"]);
    // (No worker offers `other`: the client hears why x waits.)
    assert!(
        !sim.recv(c)
            .iter()
            .any(|m| matches!(m, Message::ErrorReport(_))),
        "a new definition of a forgotten key"
    );
}

#[test]
fn unknown_key_errors_list_the_keys_the_scheduler_does_not_know() {
    // PROTOCOL.md#requests-replies-and-errors: 4001's keys are the unknown
    // keys (referenced or wanted), not the tasks that hold the references.
    let mut sim = Sim::new();
    let c = sim.client();
    sim.submit(
        c,
        7,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![r("a"), r("zz")]),
        ],
        &["b", "nope"],
    );
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!(
        (e.code, e.fatal, e.request, e.keys.clone()),
        (4001, false, Some(7), Some(keys(&["nope", "zz"])))
    );
    assert_eq!(sim.state("a"), None, "nothing of the graph was accepted");
}

// ---- dask/1.1: ack, the want's request on events, key states (issue 18.7) --

impl Sim {
    /// A client that offers dask/1.0: it gets the 1.0 protocol.
    fn client_1_0(&mut self) -> ConnId {
        let c = self.connect();
        let mut hello = handshake::offer(Role::Client, None);
        hello.version.minor = 0;
        self.send(c, hello);
        let got = self.recv(c);
        assert!(
            matches!(&got[..], [Message::Hello(h)] if h.version.minor == 0),
            "{got:?}"
        );
        c
    }

    fn submit_acked(&mut self, c: ConnId, request: u64, tasks: Vec<TaskSpec>, wanted: &[&str]) {
        self.send(
            c,
            UpdateGraph {
                request,
                tasks,
                wanted: keys(wanted),
                ack: Some(true),
            },
        );
    }
}

/// (key, request) of each event in `messages`.
fn event_requests(messages: &[Message]) -> Vec<(&str, Option<u64>)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::KeyFinished(e) => Some((e.key.as_str(), e.request)),
            Message::KeyErred(e) => Some((e.key.as_str(), e.request)),
            Message::KeyLost(e) => Some((e.key.as_str(), e.request)),
            Message::KeyCancelled(e) => Some((e.key.as_str(), e.request)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_acked_graph_gets_ok_before_the_events_it_causes() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    sim.recv(c);
    // x is in memory: its event comes at once, after the ok.
    sim.submit_acked(c, 2, vec![spec("y", "f", vec![r("x")])], &["x", "y"]);
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::OkReply(ok), Message::KeyFinished(f)]
            if ok.request == 2 && f.key.as_str() == "x"),
        "{got:?}"
    );
    sim.recv(w);
    // A refused graph gets its error, and no ok.
    sim.submit_acked(c, 3, vec![spec("z", "f", vec![r("nope")])], &["z"]);
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::ErrorReport(e)] if e.request == Some(3) && e.code == 4001),
        "{got:?}"
    );
    // An acked scatter is acknowledged once its put-data are sent.
    sim.send(
        c,
        Scatter {
            request: 4,
            data: [(Key::from("s"), raw(Value::from(1)))].into(),
            workers: None,
            broadcast: None,
            ack: Some(true),
        },
    );
    assert!(matches!(&sim.recv(c)[..], [Message::OkReply(ok)] if ok.request == 4));
    let request = put_request(&mut sim, w);
    sim.send(
        w,
        DataStored {
            request,
            nbytes: [(Key::from("s"), 1)].into(),
        },
    );
    assert_eq!(event_requests(&sim.recv(c)), [("s", Some(4))]);
}

#[test]
fn a_dask_1_0_client_gets_the_1_0_protocol() {
    let mut sim = Sim::new();
    let c = sim.client_1_0();
    let w = sim.worker("w", &["f"], 1);
    sim.submit_acked(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    assert!(
        sim.recv(c).is_empty(),
        "no ok: a 1.0 scheduler does not know ack"
    );
    compute(&mut sim, w, "x");
    assert_eq!(event_requests(&sim.recv(c)), [("x", None)]);
    sim.send(
        c,
        WhoHas {
            request: 2,
            keys: keys(&["x"]),
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::WhoHasReply(r)] if r.status.is_none()),
        "{got:?}"
    );
}

#[test]
fn events_carry_the_request_that_started_their_want() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f", "g"], 1);
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    // Wanted again while pending: the same want, its events answer 1.
    sim.submit(c, 2, vec![], &["x"]);
    compute(&mut sim, w, "x");
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(1))]);
    // Wanted again after its event: a new want, the event comes again.
    sim.submit(c, 3, vec![], &["x"]);
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(3))]);
    // Released, then wanted anew with another definition: an event for
    // the old want still in flight is told apart by its request.
    sim.send(c, ReleaseKeys { keys: keys(&["x"]) });
    sim.submit(c, 4, vec![spec("x", "g", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(4))]);
    // Errors and cancellations carry it too.
    sim.submit(c, 5, vec![spec("bad", "f", vec![])], &["bad"]);
    let got = sim.recv(w);
    assert_eq!(computes(&got)[0].key.as_str(), "bad");
    sim.fail(w, "bad", "boom");
    assert_eq!(event_requests(&sim.recv(c)), [("bad", Some(5))]);
    sim.submit(c, 6, vec![spec("slow", "f", vec![])], &["slow"]);
    sim.send(
        c,
        CancelKeys {
            keys: keys(&["slow"]),
            force: None,
        },
    );
    assert_eq!(event_requests(&sim.recv(c)), [("slow", Some(6))]);
}

#[test]
fn who_has_and_gather_tell_each_keys_state() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    sim.submit(c, 2, vec![spec("y", "f", vec![])], &["y"]);
    compute(&mut sim, w, "x");
    sim.send(
        c,
        WhoHas {
            request: 3,
            keys: keys(&["x", "y", "nope"]),
        },
    );
    let got = sim.recv(c);
    let reply = got
        .iter()
        .find_map(|m| match m {
            Message::WhoHasReply(r) => Some(r),
            _ => None,
        })
        .expect("who-has-reply");
    let status: Vec<(&str, &str)> = reply
        .status
        .iter()
        .flatten()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        status,
        [("nope", "forgotten"), ("x", "memory"), ("y", "processing")]
    );
    // The holder dies: gather lists x missing, and says it is being
    // computed again, not gone.
    sim.close(w);
    sim.send(
        c,
        Gather {
            request: 4,
            keys: keys(&["x", "nope"]),
        },
    );
    let got = sim.recv(c);
    let [Message::GatherReply(g)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(g.missing, keys(&["x", "nope"]));
    let status: Vec<(&str, &str)> = g
        .status
        .iter()
        .flatten()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    assert_eq!(status, [("nope", "forgotten"), ("x", "no-worker")]);
}

#[test]
fn a_task_freed_while_processing_counts_as_a_busy_thread_until_the_next_result() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let tasks = vec![spec("a", "f", vec![]), spec("b", "f", vec![])];
    sim.submit(c, 1, tasks, &["a", "b"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["a", "b"]);
    let abandoned = |sim: &Sim| sim.s.workers.iter().next().map(|(_, x)| x.abandoned);
    // An erred task is a result, not a run left behind.
    sim.fail(w, "a", "no");
    assert_eq!(abandoned(&sim), Some(0));
    // b cancelled while processing: the worker may still be running it.
    sim.send(
        c,
        CancelKeys {
            keys: vec!["b".into()],
            force: None,
        },
    );
    assert_eq!(abandoned(&sim), Some(1));
    // The next result from the worker means its thread came free.
    sim.submit(c, 2, vec![spec("d", "f", vec![])], &["d"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["d"]);
    sim.finish(w, "d", 1);
    assert_eq!(abandoned(&sim), Some(0));
}

#[test]
fn a_small_result_goes_inline_to_clients_that_speak_1_1() {
    // dask/1.1 inline results: the worker is told the bound, sends a small
    // result with task-finished, and the wanting 1.1 client gets it with
    // key-finished; a 1.0 client gets key-finished alone; over the bound,
    // nothing goes inline.
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Worker, Some("w".into())));
    sim.send(
        c,
        RegisterWorker {
            name: "w".into(),
            address: address("w"),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec!["f".into()],
            pid: None,
            held: None,
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::Hello(_), Message::WorkerRegistered(r)]
            if r.inline_bytes_max == Some(crate::state::INLINE_BYTES_MAX_DEFAULT)),
        "{got:?}"
    );
    let w = c;
    let modern = sim.client();
    let old = sim.connect();
    let mut hello = handshake::offer(Role::Client, None);
    hello.version = Version { major: 1, minor: 0 };
    sim.send(old, hello);
    let _ = sim.recv(old);
    sim.submit(modern, 1, vec![spec("k", "f", vec![])], &["k"]);
    sim.submit(old, 1, vec![spec("k", "f", vec![])], &["k"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["k"]);
    let value = RawValue::from_value(&rmpv::Value::from(42));
    sim.send(
        w,
        TaskFinished {
            key: "k".into(),
            nbytes: value.len() as u64,
            duration_us: None,
            value: Some(value.clone()),
        },
    );
    let got = sim.recv(modern);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.value.as_ref() == Some(&value)),
        "{got:?}"
    );
    let got = sim.recv(old);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.value.is_none()),
        "{got:?}"
    );
    // Over the bound: not passed on (the client gathers it).
    sim.submit(modern, 2, vec![spec("big", "f", vec![])], &["big"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["big"]);
    let big = RawValue::from_value(&rmpv::Value::Binary(vec![0; 5000]));
    sim.send(
        w,
        TaskFinished {
            key: "big".into(),
            nbytes: big.len() as u64,
            duration_us: None,
            value: Some(big),
        },
    );
    let got = sim.recv(modern);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.value.is_none()),
        "{got:?}"
    );
}
