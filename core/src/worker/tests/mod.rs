//! Tests of the worker state machine, by concern.

use std::collections::BTreeMap;
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

/// A worker that hands out at most nthreads runs (no dispatch-ahead),
/// so tests see exactly what runs.
fn worker(nthreads: usize) -> (WorkerState, Timestamp) {
    let functions = ["f", "g"].iter().map(|s| s.to_string()).collect();
    let now = Timestamp::ZERO;
    let mut config = WorkerStateConfig::new(ME, nthreads, functions);
    config.dispatch_ahead = 0;
    (WorkerState::new(config, now), now)
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

fn drain(w: &mut WorkerState) -> Vec<WorkerOutput> {
    std::iter::from_fn(|| w.poll_output()).collect()
}

fn to_scheduler(outputs: &[WorkerOutput]) -> Vec<&Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::ToScheduler(m) => Some(m),
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

fn fetches(outputs: &[WorkerOutput]) -> Vec<(String, GetData)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::FetchFromPeer { address, request } => {
                Some((address.clone(), request.clone()))
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
mod memory;
mod serve;
