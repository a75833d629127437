//! End to end: the client against a real in-process scheduler and workers
//! (`LocalCluster`), over TCP on 127.0.0.1.

use std::time::{Duration, Instant};

use dask_client::{args, delayed, Arg, Client, ClientOptions, Error, Status, Value};
use dask_cluster::{FunctionRegistry, LocalCluster, TaskError};

/// Generous limit for any single wait: tests never depend on speed.
const PATIENCE: Duration = Duration::from_secs(60);

fn cluster(workers: usize, threads: usize) -> LocalCluster {
    LocalCluster::builder()
        .workers(workers)
        .threads_per_worker(threads)
        .build()
        .expect("local cluster starts")
}

fn client(cluster: &LocalCluster) -> Client {
    Client::connect_with(
        cluster.address(),
        ClientOptions {
            request_timeout: Some(PATIENCE),
            ..cluster.client_options()
        },
    )
    .expect("client connects")
}

/// Polls `check` until it is true or PATIENCE runs out.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_tree_of_delayed_calls_computes() {
    let cluster = cluster(2, 1);
    let client = client(&cluster);
    let leaves: Vec<_> = (0..8).map(|i| delayed("inc", args![i])).collect();
    let mut level = leaves;
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| delayed("add", args![&p[0], &p[1]]))
            .collect();
    }
    let total = client.compute(&level[0]);
    // sum of 1..=8
    assert_eq!(total.result_timeout(PATIENCE).unwrap(), Value::from(36));
}

#[test]
fn futures_feed_later_calls_and_gather_returns_in_order() {
    let cluster = cluster(1, 2);
    let client = client(&cluster);
    let xs = client.map("inc", (0..100).map(|i| args![i]));
    let total = client.submit("sum", args![xs.iter().map(Arg::from).collect::<Vec<_>>()]);
    let values = client.gather(&xs).unwrap();
    assert_eq!(values[0], Value::from(1));
    assert_eq!(values[99], Value::from(100));
    assert_eq!(total.result().unwrap(), Value::from(5050));
}

#[test]
fn a_failing_task_reports_a_remote_error_to_it_and_its_dependents() {
    let cluster = cluster(1, 1);
    let client = client(&cluster);
    let bad = client.submit("conformance.fail", args!["boom"]);
    let after = client.submit("inc", args![&bad]);
    let e = bad.result().unwrap_err();
    assert_eq!(e.to_string(), "RemoteError: ConformanceError: boom");
    match after.wait_timeout(PATIENCE) {
        Err(Error::Remote {
            error_type, cause, ..
        }) => {
            assert_eq!(error_type, "ConformanceError");
            assert_eq!(cause.as_ref(), Some(bad.key()));
        }
        other => panic!("{other:?}"),
    }
    // No worker offers this function: the task waits (no-worker) rather
    // than fail, so a worker that offers it may still join.
    let unknown = client.submit("no.such.function", args![]);
    assert_eq!(
        unknown.wait_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    );
    assert_eq!(unknown.status(), Status::Pending);
}

#[test]
fn a_conflicting_key_is_refused_and_nothing_else_breaks() {
    let cluster = cluster(1, 1);
    let client = client(&cluster);
    let a = client.compute(&delayed("inc", args![1]).with_key("fixed"));
    a.wait_timeout(PATIENCE).unwrap();
    let b = client.compute(&delayed("inc", args![2]).with_key("fixed"));
    // Same key, other definition: the scheduler refuses the graph
    // (duplicate-key). Futures are per key, so `b` is another handle to the
    // key `a` already holds and sees its result; the refusal is reported
    // as the client's last server error.
    assert_eq!(b.result().unwrap(), Value::from(2));
    assert!(eventually(|| client
        .last_server_error()
        .is_some_and(|e| e.starts_with("duplicate-key"))));
    let fresh = client.compute(&delayed("inc", args![3]).with_key("fixed-too"));
    let clash = client.compute(&delayed("inc", args![4]).with_key("fixed-too"));
    assert_eq!(fresh.result().unwrap(), Value::from(4));
    drop(clash);
    let c = client.compute(&delayed("inc", args![5]).with_key("other"));
    assert_eq!(c.result().unwrap(), Value::from(6));
    drop(b);
    assert_eq!(a.result().unwrap(), Value::from(2));
}

#[test]
fn released_results_are_forgotten_by_the_cluster() {
    let cluster = cluster(1, 1);
    let client = client(&cluster);
    let fs = client.map("inc", (0..20).map(|i| args![i]));
    let copy = fs[0].clone();
    client.gather(&fs).unwrap();
    drop(fs);
    // Only `copy`'s key is still wanted.
    assert!(eventually(|| {
        let info = client.cluster_info().unwrap();
        info.tasks.values().sum::<u64>() == 1
    }));
    assert_eq!(copy.result().unwrap(), Value::from(1));
    drop(copy);
    assert!(eventually(|| client
        .cluster_info()
        .unwrap()
        .tasks
        .values()
        .sum::<u64>()
        == 0));
}

#[test]
fn scatter_then_compute_on_the_data() {
    let cluster = cluster(2, 1);
    let client = client(&cluster);
    let data = client
        .scatter(vec![Value::from(40), Value::from(2)])
        .unwrap();
    let total = client.submit("add", args![&data[0], &data[1]]);
    assert_eq!(total.result().unwrap(), Value::from(42));
    let who = client.who_has(&data).unwrap();
    assert_eq!(who.len(), 2);
    assert!(who.values().all(|holders| !holders.is_empty()));
}

#[test]
fn datasets_are_shared_between_clients() {
    let cluster = cluster(1, 1);
    let alice = client(&cluster);
    let bob = client(&cluster);
    let f = alice.submit("inc", args![41]);
    alice
        .publish_dataset("answer", std::slice::from_ref(&f), false)
        .unwrap();
    assert!(matches!(
        alice.publish_dataset("answer", std::slice::from_ref(&f), false),
        Err(Error::Refused { code: 4005, .. })
    ));
    drop(f);
    assert_eq!(bob.list_datasets().unwrap(), vec!["answer"]);
    let got = bob.get_dataset("answer").unwrap();
    assert_eq!(got[0].result().unwrap(), Value::from(42));
    bob.unpublish_dataset("answer").unwrap();
    assert!(matches!(
        bob.get_dataset("answer"),
        Err(Error::Refused { code: 4004, .. })
    ));
}

#[test]
fn as_completed_drives_a_dynamic_workflow() {
    let cluster = cluster(2, 2);
    let client = client(&cluster);
    // Keep incrementing every finished value until it reaches 10.
    let start = client.map("inc", (0..4).map(|i| args![i]));
    let mut ac = client.as_completed(start).with_timeout(PATIENCE);
    let mut done = Vec::new();
    let mut rounds = 0;
    while let Some(f) = ac.next() {
        rounds += 1;
        assert!(rounds < 1000, "bounded");
        let v = f.result().unwrap().as_i64().unwrap();
        if v < 10 {
            ac.add(client.submit("inc", args![&f]));
        } else {
            done.push(v);
        }
    }
    assert_eq!(done, vec![10, 10, 10, 10]);
}

#[test]
fn cancel_ends_a_running_future_as_cancelled() {
    let cluster = cluster(1, 1);
    let client = client(&cluster);
    let slow = client.submit("sleep", args![30]);
    let queued = client.submit("inc", args![&slow]);
    slow.cancel();
    assert!(matches!(
        slow.wait_timeout(PATIENCE),
        Err(Error::Cancelled { .. })
    ));
    assert_eq!(slow.status(), Status::Cancelled);
    queued.cancel();
    assert!(queued.wait_timeout(PATIENCE).is_err());
}

#[test]
fn workers_describe_the_cluster() {
    let cluster = cluster(2, 3);
    let client = client(&cluster);
    let workers = client.workers().unwrap();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.nthreads == 3));
    let mut names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["local-0", "local-1"]);
    assert!(workers
        .iter()
        .all(|w| w.functions.iter().any(|f| f == "inc")));
}

#[test]
fn custom_functions_run_on_the_cluster() {
    let mut functions = FunctionRegistry::builtins();
    functions.register(
        "shout",
        |args: &[Value], _kwargs: &[(String, Value)]| match args.first().and_then(Value::as_str) {
            Some(s) => Ok(Value::from(s.to_uppercase())),
            None => Err(TaskError::new("TypeError", "shout takes a string")),
        },
    );
    let cluster = LocalCluster::builder()
        .workers(1)
        .threads_per_worker(1)
        .functions(functions)
        .build()
        .unwrap();
    let client = cluster.into_client().unwrap();
    let f = client.submit("shout", args!["hi"]);
    assert_eq!(f.result().unwrap(), Value::from("HI"));
    let bad = client.submit("shout", args![1]);
    assert_eq!(
        bad.result().unwrap_err().to_string(),
        "RemoteError: TypeError: shout takes a string"
    );
}

#[test]
fn a_local_client_owns_its_cluster() {
    let client = LocalCluster::start().unwrap().into_client().unwrap();
    assert_eq!(client.cluster().address(), client.address());
    let f = client.submit("inc", args![1]);
    assert_eq!(f.result().unwrap(), Value::from(2));
    drop(client);
    // The future outlived its client: it fails instead of hanging.
    assert!(f.result().is_err());
}

#[test]
fn closing_the_client_releases_its_keys_on_the_scheduler() {
    let cluster = cluster(1, 1);
    let watcher = client(&cluster);
    let client = client(&cluster);
    let fs = client.map("inc", (0..10).map(|i| args![i]));
    client.gather(&fs).unwrap();
    client.close();
    assert!(eventually(|| watcher
        .cluster_info()
        .unwrap()
        .tasks
        .values()
        .sum::<u64>()
        == 0));
}

#[test]
fn many_small_tasks_complete() {
    let cluster = cluster(2, 1);
    let client = client(&cluster);
    let fs = client.map("inc", (0..20_000).map(|i| args![i]));
    let values = client.gather(&fs).unwrap();
    assert_eq!(values.len(), 20_000);
    assert_eq!(values[19_999], Value::from(20_000));
}

#[test]
fn the_same_future_twice_in_gather() {
    let cluster = cluster(1, 1);
    let client = client(&cluster);
    let f = client.submit("inc", args![1]);
    let values = client.gather(&[f.clone(), f.clone(), f]).unwrap();
    assert_eq!(values, vec![Value::from(2); 3]);
}

#[test]
fn a_client_that_reaches_a_worker_is_told_so() {
    let cluster = cluster(1, 1);
    let worker = client(&cluster).workers().unwrap().remove(0).address;
    let Err(e) = Client::connect(&worker) else {
        panic!("a worker is not a scheduler")
    };
    let Error::Connection(message) = e else {
        panic!("{e:?}")
    };
    assert!(
        message.starts_with(&format!(
            "{worker}: the handshake was refused (a dask/1 scheduler was expected): \
             bad-handshake: role \"client\" is not served here: this is a dask/1 worker's data \
             address"
        )),
        "{message}"
    );
    assert!(message.ends_with("clients and workers connect to the scheduler's address"));
}
