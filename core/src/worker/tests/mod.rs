//! Tests of the worker state machine, by concern. The helpers here play
//! the scheduler and the peers through the machine's connections: a
//! worker from [`worker`] is registered, `handle_scheduler_message` and
//! `handle_peer_reply` (from [`Play`]) send on its scheduler connection and
//! on its connection to a holder, so every test goes through the routing.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::handshake;
use crate::messages::*;
use crate::msgpack::task_ref_value;
use crate::{ErrorCode, Key, Message, RawValue, Timestamp, WireError};
use rmpv::Value;

const ME: &str = "tcp://127.0.0.1:1000";
const PEER_A: &str = "tcp://127.0.0.1:2000";
const PEER_B: &str = "tcp://127.0.0.1:3000";
const SCHEDULER_ADDRESS: &str = "tcp://127.0.0.1:8786";

/// The configuration of [`worker`]: functions `f` and `g`, no
/// dispatch-ahead (so tests see exactly what runs).
fn config(nthreads: usize) -> WorkerStateConfig {
    let functions = ["f", "g"].iter().map(|s| s.to_string()).collect();
    let mut config = WorkerStateConfig::new(SCHEDULER_ADDRESS, "w", ME, nthreads, functions);
    config.dispatch_ahead = 0;
    config
}

/// A worker that hands out at most nthreads runs (no dispatch-ahead), so
/// tests see exactly what runs, registered with the scheduler.
fn worker(nthreads: usize) -> (WorkerState, Timestamp) {
    let now = Timestamp::ZERO;
    (register(WorkerState::new(config(nthreads), now), now), now)
}

/// `w`, just made, registered with the scheduler (without heartbeats,
/// which tests ask for when they want them).
fn register(mut w: WorkerState, now: Timestamp) -> WorkerState {
    let _ = drain(&mut w);
    let conn = w.scheduler_conn().expect("a scheduler connection");
    let mut hello = handshake::offer(Role::Scheduler, None);
    hello.id = Some(1);
    let registered = WorkerRegistered {
        id: 1,
        heartbeat_interval_ms: 1000,
        inline_bytes_max: None,
    };
    let messages = vec![Message::from(hello), Message::WorkerRegistered(registered)];
    w.handle_frame(now, conn, messages);
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::Registered { id: 1, .. }]
    ));
    w.heartbeat_interval = None;
    w.next_heartbeat = None;
    w
}

/// A peer connects to the worker's data address and says hello; the
/// worker's hello reply is drained.
fn incoming(w: &mut WorkerState, now: Timestamp) -> ConnId {
    let conn = new_conn();
    w.handle_connected(now, conn);
    let hello = Message::from(handshake::offer(Role::Peer, None));
    w.handle_message(now, conn, hello);
    let out = drain(w);
    assert!(
        matches!(&out[..], [WorkerOutput::Send(c, Message::Hello(_))] if *c == conn),
        "{out:?}"
    );
    conn
}

/// Inputs as the scheduler and the holders would send them, through the
/// worker's connections.
trait Play {
    /// A message on the scheduler connection (none once it is closed).
    fn handle_scheduler_message(&mut self, now: Timestamp, message: Message);
    /// A reply from the holder at `address` on the worker's connection to
    /// it, after the holder's hello if it has not said it yet.
    fn handle_peer_reply(&mut self, now: Timestamp, address: &str, message: Message);
    /// The worker's connection to the holder at `address` fails.
    fn handle_peer_failed(&mut self, now: Timestamp, address: &str);
}

impl Play for WorkerState {
    fn handle_scheduler_message(&mut self, now: Timestamp, message: Message) {
        if let Some(conn) = self.scheduler_conn() {
            self.handle_message(now, conn, message);
        }
    }

    fn handle_peer_reply(&mut self, now: Timestamp, address: &str, message: Message) {
        let Some(&conn) = self.outgoing.get(address) else {
            return;
        };
        if !self.conns[&conn].handshaken {
            let hello = Message::from(handshake::offer(Role::Worker, None));
            self.handle_message(now, conn, hello);
        }
        self.handle_message(now, conn, message);
    }

    fn handle_peer_failed(&mut self, now: Timestamp, address: &str) {
        if let Some(&conn) = self.outgoing.get(address) {
            self.handle_closed(now, conn, "connection refused");
        }
    }
}

thread_local! {
    /// The last connection id given (each test runs on a thread of its own).
    static LAST_CONN: RefCell<u64> = const { RefCell::new(0) };
    /// The address of every connection [`drain`] opened for a worker.
    static CONNECTED: RefCell<HashMap<ConnId, String>> = RefCell::new(HashMap::new());
}

/// A new connection id, as an edge names it.
fn new_conn() -> ConnId {
    LAST_CONN.with(|last| {
        *last.borrow_mut() += 1;
        ConnId(*last.borrow())
    })
}

/// Where the connection `conn` goes, if [`drain`] opened it.
fn connected_to(conn: ConnId) -> Option<String> {
    CONNECTED.with(|c| c.borrow().get(&conn).cloned())
}

fn withdrawals(outputs: &[WorkerOutput]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::Withdraw { run_id } => Some(*run_id),
            _ => None,
        })
        .collect()
}

fn raw(v: Value) -> RawValue {
    RawValue::from_value(&v)
}

fn compute(key: &str, args: Vec<Value>, who_has: &[(&str, &[&str])]) -> Message {
    Message::ComputeTask(ComputeTask {
        key: key.into(),
        function: "f".into(),
        args: raw(Value::Array(args)),
        kwargs: None,
        who_has: who_has
            .iter()
            .map(|(k, addrs)| (Key::from(*k), addrs.iter().map(|a| a.to_string()).collect()))
            .collect(),
        priority: None,
        resources: None,
    })
}

fn with_priority(mut m: Message, priority: i64) -> Message {
    if let Message::ComputeTask(ct) = &mut m {
        ct.priority = Some(priority);
    }
    m
}

/// Every output, as an edge takes them: a `Connect` is answered at once
/// with a new connection id.
fn drain(w: &mut WorkerState) -> Vec<WorkerOutput> {
    let mut out = Vec::new();
    while let Some(output) = w.poll_output() {
        if let WorkerOutput::Connect { address } = &output {
            let conn = new_conn();
            CONNECTED.with(|c| c.borrow_mut().insert(conn, address.clone()));
            let now = w.now;
            w.handle_connecting(now, Ok(conn));
        }
        out.push(output);
    }
    out
}

fn to_scheduler(outputs: &[WorkerOutput]) -> Vec<&Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::Send(conn, m)
                if connected_to(*conn).as_deref() == Some(SCHEDULER_ADDRESS) =>
            {
                Some(m)
            }
            _ => None,
        })
        .collect()
}

fn jobs(outputs: Vec<WorkerOutput>) -> Vec<Job> {
    outputs
        .into_iter()
        .filter_map(|o| match o {
            WorkerOutput::Execute(j) => Some(j),
            _ => None,
        })
        .collect()
}

/// The key of a job's task, asked of the worker (jobs carry none).
fn job_key(w: &WorkerState, job: &Job) -> String {
    w.run_key(job.run_id).expect("the run is out").to_string()
}

/// The get-data requests sent to holders, with the holders' addresses.
fn fetches(outputs: &[WorkerOutput]) -> Vec<(String, GetData)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::Send(conn, Message::GetData(request)) => {
                Some((connected_to(*conn)?, request.clone()))
            }
            _ => None,
        })
        .collect()
}

fn done(run_id: u64, v: Value) -> TaskDone {
    TaskDone {
        run_id,
        result: Ok(raw(v)),
        duration_us: 7,
    }
}

fn data_reply(request: u64, data: &[(&str, Value)], missing: &[&str]) -> Message {
    Message::Data(Data {
        request,
        data: data
            .iter()
            .map(|(k, v)| (Key::from(*k), raw(v.clone())))
            .collect(),
        missing: missing.iter().map(|k| Key::from(*k)).collect(),
    })
}

mod connection;
mod execute;
mod fetch;
mod local;
mod memory;
mod scheduler;
mod serve;
