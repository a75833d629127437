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

fn key_list(ks: &[&str]) -> KeyList {
    ks.iter().copied().collect()
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
            Message::FreeKeys(f) => Some(f.keys.iter()),
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

/// Runs `key` (already sent to `w`) to memory.
fn compute(sim: &mut Sim, w: ConnId, key: &str) {
    let got = sim.recv(w);
    assert!(
        computes(&got).iter().any(|c| c.key.as_str() == key),
        "no compute-task for {key}: {got:?}"
    );
    sim.finish(w, key, 1);
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

mod data;
mod errors_and_wants;
mod failures;
mod graphs;
mod handshakes;
mod spec_frames;
mod v1_1;
