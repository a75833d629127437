//! Measures the state machine alone (no sockets): one client submits a
//! graph (`groups`: N independent tasks summed in groups of 100; `tree`: a
//! binary reduction over N leaves, the benchmark's tree shape at 65,536);
//! two simulated workers with one thread each answer every compute-task
//! at once, a frame at a time. The update-graph is encoded and decoded
//! first, and that is timed too. Run with `cargo run --release -p
//! dask-scheduler --example state_throughput [N] [groups|tree]`.

use std::time::Instant;

use dask_core::handshake;
use dask_core::messages::{RegisterWorker, Role, TaskFinished, TaskSpec, UpdateGraph};
use dask_core::msgpack::task_ref_value;
use dask_core::{frame, Key, Message, RawValue, Timestamp};
use dask_scheduler::{ConnId, SchedulerOutput, SchedulerState, SchedulerStateConfig};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let now = Timestamp::ZERO;
    let mut s = SchedulerState::new(SchedulerStateConfig::default(), now);
    let client = ConnId(0);
    let workers = [ConnId(1), ConnId(2)];
    s.handle_connected(now, client);
    s.handle_message(
        now,
        client,
        Message::Hello(handshake::offer(Role::Client, None)),
    );
    for (i, &w) in workers.iter().enumerate() {
        s.handle_connected(now, w);
        s.handle_message(now, w, Message::Hello(handshake::offer(Role::Worker, None)));
        s.handle_message(
            now,
            w,
            Message::RegisterWorker(RegisterWorker {
                name: format!("w{i}"),
                address: format!("tcp://127.0.0.1:{}", 9000 + i),
                nthreads: 1,
                memory_limit: None,
                resources: None,
                functions: vec!["inc".into(), "sum".into()],
                pid: None,
            }),
        );
    }
    while s.poll_output().is_some() {}

    let shape = std::env::args().nth(2).unwrap_or_else(|| "groups".into());
    let (tasks, wanted) = match shape.as_str() {
        "tree" => tree(n),
        _ => groups(n),
    };
    let total = tasks.len();
    let message = Message::UpdateGraph(UpdateGraph {
        request: 1,
        tasks,
        wanted,
        ack: None,
    });
    let start = Instant::now();
    let bytes = frame::encode_frame(std::slice::from_ref(&message)).expect("encode");
    let encoded = start.elapsed();
    drop(message);
    let start = Instant::now();
    let mut decoder = frame::FrameDecoder::default();
    decoder.push(&bytes);
    let frame = decoder.poll().expect("decode").expect("one frame");
    let decoded = start.elapsed();
    println!(
        "update-graph of {total} tasks, {} bytes: encode {:.0} ns/task, decode {:.0} ns/task",
        bytes.len(),
        encoded.as_nanos() as f64 / total as f64,
        decoded.as_nanos() as f64 / total as f64
    );
    let start = Instant::now();
    s.handle_frame(now, client, frame);
    let submitted = start.elapsed();
    let mut done = 0;
    let mut finished_events = 0;
    loop {
        let mut per_worker: [Vec<Message>; 2] = [Vec::new(), Vec::new()];
        while let Some(o) = s.poll_output() {
            match o {
                SchedulerOutput::Send(c, Message::ComputeTask(t)) => {
                    let i = workers.iter().position(|&w| w == c).unwrap();
                    per_worker[i].push(Message::TaskFinished(TaskFinished {
                        key: t.key,
                        nbytes: 8,
                        duration_us: None,
                    }));
                }
                SchedulerOutput::Send(c, Message::KeyFinished(_)) if c == client => {
                    finished_events += 1
                }
                _ => {}
            }
        }
        if per_worker.iter().all(|f| f.is_empty()) {
            break;
        }
        for (i, frame) in per_worker.into_iter().enumerate() {
            done += frame.len();
            s.handle_frame(now, workers[i], frame);
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{total} tasks ({done} run, {finished_events} key-finished): submit {:?}, total {:?}, {:.0} tasks/s; {} tasks left",
        submitted,
        elapsed,
        done as f64 / elapsed.as_secs_f64(),
        s.task_count()
    );
}

/// `n` independent tasks, summed in groups of 100 (so results are freed).
fn groups(n: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let mut tasks = Vec::with_capacity(n + n / 100 + 1);
    let mut wanted = Vec::new();
    for g in 0..n / 100 {
        let mut refs = Vec::new();
        for i in 0..100 {
            let key = format!("inc-{g}-{i}");
            refs.push(task_ref_value(&key));
            tasks.push(TaskSpec {
                key: key.into(),
                function: "inc".into(),
                args: RawValue::from_value(&rmpv::Value::Array(vec![rmpv::Value::from(i)])),
                kwargs: None,
                priority: None,
                resources: None,
                retries: None,
                workers: None,
            });
        }
        let key = format!("sum-{g}");
        wanted.push(key.clone().into());
        tasks.push(TaskSpec {
            key: key.into(),
            function: "sum".into(),
            args: RawValue::from_value(&rmpv::Value::Array(refs)),
            kwargs: None,
            priority: None,
            resources: None,
            retries: None,
            workers: None,
        });
    }
    (tasks, wanted)
}

/// A binary tree reduction over `n` leaves (as bench's `tree` shape).
fn tree(n: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let name = |level: u32, i: usize| format!("tree-{level}-{i}");
    let spec = |key: String, function: &str, args: Vec<rmpv::Value>| TaskSpec {
        key: key.into(),
        function: function.into(),
        args: RawValue::from_value(&rmpv::Value::Array(args)),
        kwargs: None,
        priority: None,
        resources: None,
        retries: None,
        workers: None,
    };
    let mut tasks: Vec<TaskSpec> = (0..n)
        .map(|i| spec(name(0, i), "inc", vec![rmpv::Value::from(i)]))
        .collect();
    let (mut level, mut width) = (0, n);
    while width > 1 {
        for i in 0..width / 2 {
            let args = vec![
                task_ref_value(&name(level, 2 * i)),
                task_ref_value(&name(level, 2 * i + 1)),
            ];
            tasks.push(spec(name(level + 1, i), "sum", args));
        }
        level += 1;
        width /= 2;
    }
    (tasks, vec![name(level, 0).into()])
}
