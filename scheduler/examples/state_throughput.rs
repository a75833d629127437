//! Measures the state machine alone (no sockets): one client submits a
//! graph (`groups`: N independent tasks summed in groups of 100; `tree`: a
//! binary reduction over N leaves, the benchmark's tree shape at 65,536;
//! `stacked`: three reductions of the same N chunks; `overlap`: a 2-d
//! map-overlap over a grid of about N chunks, submitted in a scattered
//! order); two simulated workers with one thread each answer every
//! compute-task at once, a frame at a time. The update-graph is encoded
//! and decoded first, and that is timed too. Also counts the intermediate
//! results (not wanted) held on the workers at most, from compute-task to
//! free-keys: what the placement order costs in memory. Run with `cargo run --release -p
//! dask-scheduler --example state_throughput [N] [groups|tree|stacked|overlap]`.

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
        Message::from(handshake::offer(Role::Client, None)),
    );
    for (i, &w) in workers.iter().enumerate() {
        s.handle_connected(now, w);
        s.handle_message(now, w, Message::from(handshake::offer(Role::Worker, None)));
        s.handle_message(
            now,
            w,
            Message::RegisterWorker(RegisterWorker {
                name: format!("w{i}"),
                address: format!("tcp://127.0.0.1:{}", 9000 + i),
                nthreads: 1,
                memory_limit: None,
                resources: None,
                functions: vec!["inc".into(), "sum".into(), "identity".into()],
                pid: None,
                held: None,
            }),
        );
    }
    while s.poll_output().is_some() {}

    let shape = std::env::args().nth(2).unwrap_or_else(|| "groups".into());
    let (tasks, wanted) = match shape.as_str() {
        "tree" => tree(n),
        "stacked" => stacked(n),
        "overlap" => overlap(n),
        _ => groups(n),
    };
    let total = tasks.len();
    let wanted_set: std::collections::HashSet<Key> = wanted.iter().cloned().collect();
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
    let (mut held, mut held_max) = (0usize, 0usize);
    loop {
        let mut per_worker: [Vec<Message>; 2] = [Vec::new(), Vec::new()];
        while let Some(o) = s.poll_output() {
            match o {
                SchedulerOutput::Send(c, Message::ComputeTask(t)) => {
                    let i = workers.iter().position(|&w| w == c).unwrap();
                    if !wanted_set.contains(&t.key) {
                        held += 1;
                    }
                    per_worker[i].push(Message::TaskFinished(TaskFinished {
                        key: t.key,
                        nbytes: 8,
                        duration_us: None,
                        value: None,
                    }));
                }
                SchedulerOutput::Send(c, Message::KeyFinished(_)) if c == client => {
                    finished_events += 1
                }
                SchedulerOutput::Send(_, Message::FreeKeys(f)) => {
                    held -= f.keys.iter().filter(|k| !wanted_set.contains(*k)).count()
                }
                _ => {}
            }
        }
        if per_worker.iter().all(|f| f.is_empty()) {
            break;
        }
        for (i, frame) in per_worker.into_iter().enumerate() {
            done += frame.len();
            held_max = held_max.max(held);
            s.handle_frame(now, workers[i], frame);
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{total} tasks ({done} run, {finished_events} key-finished): submit {:?}, total {:?}, {:.0} tasks/s; {} tasks left; at most {held_max} intermediate results held on the workers",
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

/// A binary tree reduction over `n` leaves (as bench's `tree` shape; keys
/// `tree-{level}-{i}`). An odd one out at a level is summed alone.
fn tree(n: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let mut tasks: Vec<TaskSpec> = (0..n)
        .map(|i| spec(format!("tree-0-{i}"), "inc", vec![rmpv::Value::from(i)]))
        .collect();
    let leaves = tasks.iter().map(|t| t.key.clone()).collect();
    let (sums, root) = dask_testkit::graphs::reduction(leaves, 2, |node| {
        let key = format!("tree-{}-{}", node.depth, node.index);
        spec(key, "sum", dask_testkit::graphs::refs(node.inputs))
    });
    tasks.extend(sums);
    (tasks, vec![root])
}

fn spec(key: String, function: &str, args: Vec<rmpv::Value>) -> TaskSpec {
    TaskSpec {
        key: key.into(),
        function: function.into(),
        args: RawValue::from_value(&rmpv::Value::Array(args)),
        kwargs: None,
        priority: None,
        resources: None,
        retries: None,
        workers: None,
    }
}

/// Three reductions (split 4) of the same `n` chunks, wanted together
/// (an xarray-like mean of several variables).
fn stacked(n: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let mut tasks: Vec<TaskSpec> = (0..n)
        .map(|i| spec(format!("x-{i}"), "inc", vec![rmpv::Value::from(i)]))
        .collect();
    let mut wanted = Vec::new();
    for r in 0..3 {
        let mut level: Vec<String> = (0..n)
            .map(|i| {
                let key = format!("map-{r}-{i}");
                tasks.push(spec(
                    key.clone(),
                    "inc",
                    vec![task_ref_value(&format!("x-{i}"))],
                ));
                key
            })
            .collect();
        let mut depth = 0;
        while level.len() > 1 {
            depth += 1;
            level = level
                .chunks(4)
                .enumerate()
                .map(|(j, c)| {
                    let key = format!("red-{r}-{depth}-{j}");
                    let refs = c.iter().map(|k| task_ref_value(k)).collect();
                    tasks.push(spec(key.clone(), "sum", vec![rmpv::Value::Array(refs)]));
                    key
                })
                .collect();
        }
        wanted.push(level[0].clone().into());
    }
    (tasks, wanted)
}

/// A 2-d map-overlap over a side x side grid (side^2 about `n`): each
/// chunk, one border per neighbour, the chunk with its neighbours'
/// borders, then trimmed; submitted in a scattered order.
fn overlap(n: usize) -> (Vec<TaskSpec>, Vec<Key>) {
    let side = (n as f64).sqrt().max(2.0) as i64;
    let mut tasks = Vec::new();
    let mut wanted = Vec::new();
    let dirs: Vec<(i64, i64)> = (-1..=1)
        .flat_map(|a| (-1..=1).map(move |b| (a, b)))
        .filter(|&d| d != (0, 0))
        .collect();
    for i in 0..side {
        for j in 0..side {
            tasks.push(spec(
                format!("x-{i}-{j}"),
                "inc",
                vec![rmpv::Value::from(i * side + j)],
            ));
            for &(a, b) in &dirs {
                let arg = task_ref_value(&format!("x-{i}-{j}"));
                tasks.push(spec(format!("edge-{i}-{j}-{a}-{b}"), "identity", vec![arg]));
            }
        }
    }
    for i in 0..side {
        for j in 0..side {
            let mut refs = vec![task_ref_value(&format!("x-{i}-{j}"))];
            for &(a, b) in &dirs {
                let (p, q) = (i + a, j + b);
                if (0..side).contains(&p) && (0..side).contains(&q) {
                    refs.push(task_ref_value(&format!("edge-{p}-{q}-{}-{}", -a, -b)));
                }
            }
            tasks.push(spec(
                format!("overlap-{i}-{j}"),
                "sum",
                vec![rmpv::Value::Array(refs)],
            ));
            let trim = format!("trim-{i}-{j}");
            tasks.push(spec(
                trim.clone(),
                "inc",
                vec![task_ref_value(&format!("overlap-{i}-{j}"))],
            ));
            wanted.push(trim.into());
        }
    }
    // Scattered: a stride through the list that visits every task once.
    let len = tasks.len();
    let mut stride = len / 2 + 1;
    while gcd(stride, len) != 1 {
        stride += 1;
    }
    let mut slots: Vec<Option<TaskSpec>> = tasks.into_iter().map(Some).collect();
    let scattered = (0..len)
        .filter_map(|k| slots[(k * stride) % len].take())
        .collect();
    (scattered, wanted)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
