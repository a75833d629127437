//! End to end with real processes: the `dask-scheduler` binary, two
//! `dask-worker` binaries (`w1`, `w2`, one thread each) and Rust clients,
//! all over TCP on 127.0.0.1 (see `support` for the fixture). Each test
//! starts its own cluster and stops it on the way out, pass or fail.
//!
//! Sizes are big enough to mean something (thousands of tasks, megabytes
//! of data) and small enough to finish in seconds; waits are bounded by
//! [`PATIENCE`] and nothing asserts on speed.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use dask_client::{args, delayed, Client, ClusterInfoReply, Delayed, Error, Key, Status, Value};
use dask_core::messages::{GetData, Role};
use dask_core::Message;
use dask_net::BlockingConn;
use support::{eventually, port_of, tcp_bytes_received, Cluster, PortSide, PATIENCE};

#[test]
fn two_thousand_independent_tasks_run_on_both_workers() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let futures = client.map("inc", (0..2_000i64).map(|i| args![i]));
    let values = client.gather(&futures).unwrap();
    let expected: Vec<Value> = (1..=2_000i64).map(Value::from).collect();
    assert_eq!(values, expected);

    let info = client.cluster_info().unwrap();
    assert_eq!(info.tasks.get("memory"), Some(&2_000), "{:?}", info.tasks);
    // Every result is held exactly once, and both workers ran some.
    assert_eq!(
        info.workers.iter().map(|w| w.stored_keys).sum::<u64>(),
        2_000
    );
    for w in &info.workers {
        assert!(w.stored_keys > 0, "{} ran nothing: {info:?}", w.name);
    }
}

#[test]
fn a_tree_reduction_of_1024_leaves_sums_exactly_and_frees_intermediates() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let mut level: Vec<Delayed> = (0..1_024i64).map(|i| delayed("inc", args![i])).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| delayed("add", args![&pair[0], &pair[1]]))
            .collect();
    }
    let total = client.compute(&level[0]);
    // 1 + 2 + ... + 1024
    assert_eq!(
        total.result_timeout(PATIENCE).unwrap(),
        Value::from(524_800)
    );
    // The results of the 2,046 intermediates (and any replicas) are freed:
    // only the wanted root is in memory, on one worker. (The scheduler
    // keeps the intermediates' definitions, released, for lineage.)
    assert!(
        eventually(|| {
            let info = client.cluster_info().unwrap();
            info.tasks.get("memory") == Some(&1) && stored_keys(&info) == 1
        }),
        "{:?}",
        client.cluster_info()
    );
}

#[test]
fn a_chain_of_500_calls_computes() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let mut link = delayed("inc", args![0]);
    for _ in 1..500 {
        link = delayed("inc", args![&link]);
    }
    let end = client.compute(&link);
    assert_eq!(end.result_timeout(PATIENCE).unwrap(), Value::from(500));
}

#[test]
fn a_chain_alternating_between_workers_moves_every_link() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let on = |i: usize| vec![["w1", "w2"][i % 2].to_owned()];
    let mut link = delayed("inc", args![0]).workers(on(0));
    for i in 1..200 {
        link = delayed("inc", args![&link]).workers(on(i));
    }
    let end = client.compute(&link);
    assert_eq!(end.result_timeout(PATIENCE).unwrap(), Value::from(200));
    // Link 199 was pinned to w2, and only w2 holds it.
    let w2 = worker_address(&client, "w2");
    let who = client.who_has(std::slice::from_ref(&end)).unwrap();
    assert_eq!(who.get(end.key()), Some(&vec![w2]));
}

#[test]
fn a_50_by_50_all_to_all_shuffles_exactly() {
    const N: i64 = 50;
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    // Row i holds i*N .. i*N+N; output j sums element j of every row, so
    // each of the 50 outputs depends on all 50 rows (2,500 getitems).
    let rows: Vec<Delayed> = (0..N)
        .map(|i| delayed("range", args![i * N, (i + 1) * N]))
        .collect();
    let columns: Vec<Delayed> = (0..N)
        .map(|j| {
            let items: Vec<Delayed> = rows
                .iter()
                .map(|row| delayed("getitem", args![row, j]))
                .collect();
            delayed("sum", args![items])
        })
        .collect();
    let futures = client.compute_all(&columns);
    let values = client.gather(&futures).unwrap();
    // sum over i of (i*N + j) = N * N(N-1)/2 + N*j
    let expected: Vec<Value> = (0..N)
        .map(|j| Value::from(N * N * (N - 1) / 2 + N * j))
        .collect();
    assert_eq!(values, expected);
}

#[test]
fn a_dynamic_loop_submits_work_from_completed_results_until_done() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    // Collatz walks, one task (or two) per step: each finished step's
    // value decides the next step, which depends on the finished future
    // itself; a walk stops when it reaches 1.
    let starts = [6i64, 7, 27, 97, 871];
    let mut walk_of: HashMap<Key, i64> = HashMap::new();
    let mut steps: HashMap<i64, u32> = starts.iter().map(|&s| (s, 0)).collect();
    let mut peak: HashMap<i64, i64> = starts.iter().map(|&s| (s, s)).collect();
    let mut reached_one = Vec::new();
    let mut pending = client.as_completed(Vec::new()).with_timeout(PATIENCE);
    for &n in &starts {
        let f = client.submit("identity", args![n]);
        walk_of.insert(f.key().clone(), n);
        pending.add(f);
    }
    let mut rounds = 0;
    while let Some(done) = pending.next() {
        rounds += 1;
        assert!(rounds < 10_000, "the loop is bounded");
        let start = walk_of.remove(done.key()).expect("a future of this loop");
        let n = done
            .result_timeout(PATIENCE)
            .unwrap()
            .as_i64()
            .expect("an integer");
        let top = peak.get_mut(&start).expect("a walk");
        *top = (*top).max(n);
        if n == 1 {
            reached_one.push(start);
            continue;
        }
        let next = if n % 2 == 0 {
            client.submit("sub", args![&done, n / 2])
        } else {
            client.compute(&delayed("add", args![delayed("mul", args![&done, 3]), 1]))
        };
        *steps.get_mut(&start).expect("a walk") += 1;
        walk_of.insert(next.key().clone(), start);
        pending.add(next);
    }
    assert!(walk_of.is_empty(), "timed out waiting for {walk_of:?}");
    reached_one.sort_unstable();
    assert_eq!(reached_one, starts);
    let expected_steps: HashMap<i64, u32> =
        [(6, 8), (7, 16), (27, 111), (97, 118), (871, 178)].into();
    assert_eq!(steps, expected_steps);
    let expected_peak: HashMap<i64, i64> =
        [(6, 16), (7, 52), (27, 9_232), (97, 9_232), (871, 190_996)].into();
    assert_eq!(peak, expected_peak);
}

#[test]
fn an_error_reaches_every_dependent_with_the_remote_message_and_its_cause() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let message = "disk full on shard 7";
    // source (w1) -> failing (w2) -> middle -> leaf: the message itself is
    // a result that travels from w1 to w2 before the failure.
    let source = delayed("identity", args![message]).workers(vec!["w1".into()]);
    let failing = delayed("conformance.fail", args![&source]).workers(vec!["w2".into()]);
    let middle = delayed("inc", args![&failing]);
    let leaf = delayed("inc", args![&middle]);
    let futures = client.compute_all(&[source.clone(), failing.clone(), leaf.clone()]);
    let [source_f, failing_f, leaf_f] = &futures[..] else {
        unreachable!()
    };

    match leaf_f.result_timeout(PATIENCE) {
        Err(Error::Remote {
            key,
            error_type,
            message: m,
            cause,
            ..
        }) => {
            assert_eq!(&key, leaf.key());
            assert_eq!(error_type, "ConformanceError");
            assert_eq!(m, message);
            assert_eq!(cause.as_ref(), Some(failing.key()));
        }
        other => panic!("the leaf should carry the remote error, got {other:?}"),
    }
    assert_eq!(
        leaf_f.result().unwrap_err().to_string(),
        format!(
            "RemoteError: ConformanceError: {message} (raised by {})",
            failing.key()
        )
    );
    match failing_f.result_timeout(PATIENCE) {
        Err(Error::Remote {
            error_type,
            message: m,
            cause,
            ..
        }) => {
            assert_eq!(
                (error_type.as_str(), m.as_str()),
                ("ConformanceError", message)
            );
            assert_eq!(cause, None, "the failing task is its own cause");
        }
        other => panic!("the failing task should have erred, got {other:?}"),
    }
    assert_eq!(leaf_f.status(), Status::Erred);
    // What ran before the failure is intact.
    assert_eq!(
        source_f.result_timeout(PATIENCE).unwrap(),
        Value::from(message)
    );
    // The cluster carries on.
    let fine = client.submit("inc", args![41]);
    assert_eq!(fine.result_timeout(PATIENCE).unwrap(), Value::from(42));
}

#[test]
fn a_dependent_submitted_after_an_error_errs_with_its_cause() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let failing = client.submit("conformance.fail", args!["too late"]);
    assert!(matches!(
        failing.wait_timeout(PATIENCE),
        Err(Error::Remote { .. })
    ));
    let late = client.submit("inc", args![&failing]);
    match late.wait_timeout(PATIENCE) {
        Err(Error::Remote {
            error_type,
            message,
            cause,
            ..
        }) => {
            assert_eq!(
                (error_type.as_str(), message.as_str()),
                ("ConformanceError", "too late")
            );
            assert_eq!(cause.as_ref(), Some(failing.key()));
        }
        other => panic!("a late dependent should carry the error, got {other:?}"),
    }
}

#[test]
fn two_clients_share_a_key_and_one_release_does_not_take_it_from_the_other() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let alice = cluster.client();
    let bob = cluster.client();
    // The same key with the same definition from both; the task sleeps a
    // little so the second submission usually finds it running.
    let shared = || delayed("sleep", args![0.3, 42]).with_key("shared-answer");
    let a = alice.compute(&shared());
    let b = bob.compute(&shared());
    assert_eq!(a.result_timeout(PATIENCE).unwrap(), Value::from(42));
    assert_eq!(b.result_timeout(PATIENCE).unwrap(), Value::from(42));
    let info = alice.cluster_info().unwrap();
    assert_eq!(task_count(&info), 1, "one task for both: {:?}", info.tasks);

    drop(a);
    // Requests on one connection are handled in order: once this reply is
    // here, alice's release has been processed.
    let info = alice.cluster_info().unwrap();
    assert_eq!(info.tasks.get("memory"), Some(&1), "{:?}", info.tasks);
    alice.close();
    assert_eq!(b.result_timeout(PATIENCE).unwrap(), Value::from(42));
    let next = bob.submit("inc", args![&b]);
    assert_eq!(next.result_timeout(PATIENCE).unwrap(), Value::from(43));

    drop((b, next));
    assert!(
        eventually(|| {
            let info = bob.cluster_info().unwrap();
            task_count(&info) == 0 && stored_keys(&info) == 0
        }),
        "{:?}",
        bob.cluster_info()
    );
}

#[test]
fn a_dependency_moves_worker_to_worker_and_never_through_the_scheduler() {
    const SIZE: i64 = 8_000_000;
    // Its bytes are counted on w1's data port: not through memory.
    let cluster = Cluster::start_tcp_values(&["w1", "w2"]);
    let client = cluster.client();
    let (w1, w2) = (worker_address(&client, "w1"), worker_address(&client, "w2"));
    // Bytes the scheduler received (on the connections accepted on its
    // port) and bytes received from w1's data port (only w2 connects
    // there: the scheduler talks to w1 over w1's own connection).
    let scheduler_port = port_of(cluster.address());
    let w1_port = port_of(&w1);
    let counters = || {
        Some((
            tcp_bytes_received(PortSide::Local, scheduler_port)?,
            tcp_bytes_received(PortSide::Remote, w1_port)?,
        ))
    };
    let before = counters();

    let big = delayed("random_bytes", args![SIZE, 7]).workers(vec!["w1".into()]);
    let size = delayed("len", args![&big]).workers(vec!["w2".into()]);
    // `big` is wanted too, so it stays; it is never gathered.
    let futures = client.compute_all(&[big, size]);
    assert_eq!(
        futures[1].result_timeout(PATIENCE).unwrap(),
        Value::from(SIZE)
    );
    // w2 fetched a replica of `big` from w1 and announced it.
    let mut expected = vec![w1, w2];
    expected.sort();
    assert!(
        eventually(|| {
            let mut holders = client
                .who_has(&futures[..1])
                .unwrap()
                .remove(futures[0].key())
                .unwrap_or_default();
            holders.sort();
            holders == expected
        }),
        "{:?}",
        client.who_has(&futures[..1])
    );

    let (Some(before), Some(after)) = (before, counters()) else {
        eprintln!("`ss` (iproute2) is not available: byte counts not checked");
        return;
    };
    // (Saturating: a connection that closed meanwhile takes its count
    // with it, which can only lower these sums.)
    let scheduler_received = after.0.saturating_sub(before.0);
    let from_w1 = after.1.saturating_sub(before.1);
    // The 8 MB did travel, from w1's data port...
    assert!(from_w1 >= SIZE as u64, "only {from_w1} bytes came from w1");
    // ...and the scheduler received only messages (graph, task events,
    // heartbeats, these queries): kilobytes.
    assert!(
        scheduler_received < 1_000_000,
        "the scheduler received {scheduler_received} bytes during an 8 MB transfer"
    );
}

#[test]
fn releasing_results_frees_them_on_the_workers() {
    const SIZE: usize = 4_000_000;
    // The msgpack encoding of a binary that long: bin32 header + bytes.
    const NBYTES: u64 = SIZE as u64 + 5;
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let addresses = [worker_address(&client, "w1"), worker_address(&client, "w2")];

    // A computed result.
    let computed = client.submit("random_bytes", args![SIZE, 3]);
    computed.wait_timeout(PATIENCE).unwrap();
    let info = client.cluster_info().unwrap();
    assert_eq!(stored_bytes(&info), NBYTES, "{info:?}");
    let holder = info
        .workers
        .iter()
        .find(|w| w.stored_keys == 1)
        .expect("a worker holds it")
        .address
        .clone();
    let key = computed.key().clone();
    assert!(worker_holds(&cluster, &holder, &key));
    drop(computed);
    assert!(
        eventually(|| {
            let info = client.cluster_info().unwrap();
            stored_bytes(&info) == 0 && stored_keys(&info) == 0 && task_count(&info) == 0
        }),
        "{:?}",
        client.cluster_info()
    );
    // Not just the scheduler's bookkeeping: the worker itself no longer
    // has it (its free-keys and this probe's get-data come on different
    // connections: it may read the probe first).
    assert!(eventually(|| !worker_holds(&cluster, &holder, &key)));

    // Scattered data, on both workers.
    let scattered = client
        .scatter_with(vec![Value::Binary(vec![7; SIZE])], None, true)
        .unwrap();
    let key = scattered[0].key().clone();
    // scatter returns once the value is stored somewhere; the second copy
    // may still be on its way.
    assert!(
        eventually(|| stored_bytes(&client.cluster_info().unwrap()) == 2 * NBYTES),
        "{:?}",
        client.cluster_info()
    );
    for address in &addresses {
        assert!(
            worker_holds(&cluster, address, &key),
            "{address} lacks the broadcast"
        );
    }
    drop(scattered);
    assert!(
        eventually(|| {
            let info = client.cluster_info().unwrap();
            stored_bytes(&info) == 0 && stored_keys(&info) == 0 && task_count(&info) == 0
        }),
        "{:?}",
        client.cluster_info()
    );
    for address in &addresses {
        assert!(
            eventually(|| !worker_holds(&cluster, address, &key)),
            "{address} kept {key}"
        );
    }
}

#[test]
fn a_broadcast_scatter_released_at_once_leaves_nothing_behind() {
    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    for round in 0..20 {
        // Released as soon as scatter returns, possibly before the second
        // copy is stored.
        let scattered = client
            .scatter_with(vec![Value::Binary(vec![round; 1_000_000])], None, true)
            .unwrap();
        drop(scattered);
    }
    assert!(
        eventually(|| {
            let info = client.cluster_info().unwrap();
            stored_bytes(&info) == 0 && stored_keys(&info) == 0 && task_count(&info) == 0
        }),
        "{:?}",
        client.cluster_info()
    );
}

#[test]
fn a_task_no_worker_can_run_waits_until_a_worker_offering_it_joins() {
    use dask_worker::{FunctionRegistry, TaskError, WorkerConfig, WorkerHandle};

    let cluster = Cluster::start(&["w1", "w2"]);
    let client = cluster.client();
    let input = client.submit("inc", args![13]);
    let tripled = client.submit("triple", args![&input]);
    // Neither dask-worker offers `triple`: the task waits, it does not err.
    assert_eq!(
        tripled.wait_timeout(Duration::from_secs(1)),
        Err(Error::Timeout)
    );
    assert_eq!(tripled.status(), Status::Pending);
    assert!(
        eventually(|| client.cluster_info().unwrap().tasks.get("no-worker") == Some(&1)),
        "{:?}",
        client.cluster_info()
    );

    // A third worker, in this process, that offers it.
    let mut functions = FunctionRegistry::builtins();
    functions.register("triple", |args: &[Value], _: &[(String, Value)]| {
        args.first()
            .and_then(Value::as_i64)
            .and_then(|x| x.checked_mul(3))
            .map(Value::from)
            .ok_or_else(|| TaskError::new("TypeError", "triple takes an integer"))
    });
    let w3 = WorkerHandle::start(WorkerConfig {
        scheduler: cluster.address().to_owned(),
        nthreads: 1,
        name: Some("w3".into()),
        functions,
        credentials: Some(cluster.home().credentials()),
        ..Default::default()
    })
    .expect("w3 registers");
    // It runs there, on input fetched from a dask-worker process.
    assert_eq!(tripled.result_timeout(PATIENCE).unwrap(), Value::from(42));
    let who = client.who_has(std::slice::from_ref(&tripled)).unwrap();
    assert_eq!(who.get(tripled.key()), Some(&vec![w3.address()]));
    drop((client, input, tripled));
    w3.stop();
}

// ---- helpers ---------------------------------------------------------------

/// The data address of the worker named `name`.
fn worker_address(client: &Client, name: &str) -> String {
    client
        .workers()
        .unwrap()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no worker {name}"))
        .address
}

fn task_count(info: &ClusterInfoReply) -> u64 {
    info.tasks.values().sum()
}

fn stored_keys(info: &ClusterInfoReply) -> u64 {
    info.workers.iter().map(|w| w.stored_keys).sum()
}

fn stored_bytes(info: &ClusterInfoReply) -> u64 {
    info.workers.iter().map(|w| w.stored_bytes).sum()
}

/// Asks the worker at `address` directly, as a peer (proving `cluster`'s
/// worker secret), whether it holds `key` (a `get-data` on its data port).
fn worker_holds(cluster: &Cluster, address: &str, key: &Key) -> bool {
    let (mut conn, _) = BlockingConn::connect_proving(
        address,
        Role::Peer,
        Role::Worker,
        Some("e2e-probe".into()),
        PATIENCE,
        Some(&cluster.home().credentials()),
    )
    .unwrap_or_else(|e| panic!("peer connection to {address}: {e}"));
    for request in 1..=100u64 {
        conn.send(&[Message::GetData(GetData {
            request,
            keys: vec![key.clone()],
        })])
        .expect("send get-data");
        let reply = conn
            .recv_until(&mut |m| match m {
                Message::Data(d) => d.request == request,
                Message::Busy(b) => b.request == request,
                _ => false,
            })
            .expect("the worker answers get-data");
        match reply {
            Message::Data(d) => return d.data.contains_key(key),
            // Too many transfers in flight: ask again shortly.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("{address} stayed busy");
}
