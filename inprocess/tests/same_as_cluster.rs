//! The in-process scheduler gives what a cluster gives: every example
//! graph and random graphs of built-in functions, run both ways (an
//! embedded scheduler and worker over loopback TCP, and in this process),
//! results and errors compared key by key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use dask_client::Error as ClusterError;
use dask_cluster::{LocalClient, LocalCluster};
use dask_core::client::{task_spec, Graph};
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use dask_inprocess::{run, Error, OnError, Options, Plan, Scheduler};
use dask_worker::FunctionRegistry;
use proptest::prelude::*;
use rmpv::Value;

/// One cluster for the whole file (keys differ per graph).
fn cluster() -> &'static LocalClient {
    static CLIENT: OnceLock<LocalClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        LocalCluster::start()
            .and_then(|c| c.into_client().map_err(std::io::Error::other))
            .expect("an embedded cluster")
    })
}

/// A key's result, or the error as both sides can say it: type, message
/// and the key that raised it (when not this one).
type Outcome = Result<Value, (String, String, Option<Key>)>;

fn on_cluster(tasks: Vec<TaskSpec>, wanted: &[Key]) -> Vec<(Key, Outcome)> {
    let futures = cluster().submit_tasks(tasks, wanted.to_vec());
    futures
        .iter()
        .map(|f| (f.key().clone(), cluster_outcome(f.result())))
        .collect()
}

/// A result from the cluster as an [`Outcome`]; anything but a task's
/// error fails the test.
fn cluster_outcome(result: Result<Value, ClusterError>) -> Outcome {
    match result {
        Ok(v) => Ok(v),
        Err(ClusterError::Remote {
            error_type,
            message,
            cause,
            ..
        }) => Err((error_type, message, cause)),
        Err(other) => panic!("the cluster failed otherwise: {other}"),
    }
}

fn in_process(tasks: Vec<TaskSpec>, wanted: &[Key], scheduler: Scheduler) -> Vec<(Key, Outcome)> {
    let plan = Plan::new(tasks, wanted).expect("a valid graph");
    let options = Options {
        scheduler,
        on_error: OnError::Continue,
        ..Options::default()
    };
    let mut results: Vec<(Key, Outcome)> = run(plan, &FunctionRegistry::builtins(), &options)
        .into_iter()
        .map(|(key, result)| {
            let outcome = match result {
                Ok(v) => Ok(v),
                Err(Error::Task { error, cause, .. }) => {
                    Err((error.error_type, error.message, cause))
                }
                Err(other) => panic!("{key}: failed otherwise in process: {other}"),
            };
            (key, outcome)
        })
        .collect();
    // In the order of `wanted`, as the cluster's futures are.
    results.sort_by_key(|(k, _)| wanted.iter().position(|w| w == k));
    results
}

fn assert_same(tasks: Vec<TaskSpec>, wanted: &[Key]) {
    let expected = without_racing_causes(&tasks, on_cluster(tasks.clone(), wanted));
    for scheduler in [
        Scheduler::Sync,
        Scheduler::Threads(1),
        Scheduler::Threads(3),
    ] {
        let got = in_process(tasks.clone(), wanted, scheduler);
        assert_eq!(
            without_racing_causes(&tasks, got),
            expected,
            "{scheduler:?}"
        );
    }
}

/// A key below two failed tasks reports whichever failed first, on a
/// cluster as here: such a cause is checked to be one of them, then hidden.
fn without_racing_causes(tasks: &[TaskSpec], outcomes: Vec<(Key, Outcome)>) -> Vec<(Key, Outcome)> {
    let all: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let failed: HashSet<Key> = in_process(tasks.to_vec(), &all, Scheduler::Sync)
        .into_iter()
        .filter(|(_, o)| matches!(o, Err((_, _, None))))
        .map(|(k, _)| k)
        .collect();
    let failed_above = |key: &Key| {
        let mut seen: HashSet<Key> = HashSet::new();
        let mut stack = vec![key.clone()];
        while let Some(k) = stack.pop() {
            let Some(t) = tasks.iter().find(|t| t.key == k) else {
                continue;
            };
            for r in t.args.refs() {
                if seen.insert(Key::from(r)) {
                    stack.push(Key::from(r));
                }
            }
        }
        seen.intersection(&failed).count()
    };
    outcomes
        .into_iter()
        .map(|(key, outcome)| match outcome {
            Err((error_type, _, Some(cause))) if failed_above(&key) > 1 => {
                assert!(
                    failed.contains(&cause),
                    "{key}: caused by {cause}, which did not fail"
                );
                (
                    key,
                    Err((error_type, "one of several failures".into(), None)),
                )
            }
            other => (key, other),
        })
        .collect()
}

#[test]
fn every_example_graph_gives_what_the_cluster_gives() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (graph, wanted) = Graph::from_json(&text).unwrap();
        let wanted = if wanted.is_empty() {
            graph.leaves()
        } else {
            wanted
        };
        assert_same(graph.into_tasks(), &wanted);
        seen += 1;
    }
    assert!(seen >= 4, "examples/*.json: {seen} graphs");
}

/// A task of a random graph: a built-in function of earlier tasks' results
/// and small numbers.
#[derive(Debug, Clone)]
enum Call {
    Inc(Arg),
    Add(Arg, Arg),
    Mul(Arg, Arg),
    Sum(Vec<Arg>),
    /// `{"sum": [...]}` then getitem: a map with a reference inside.
    Nested(Arg),
    /// Fails: conformance.fail with this message.
    Fail,
}

#[derive(Debug, Clone)]
enum Arg {
    Number(i64),
    /// The result of the task this many places earlier (modulo).
    Earlier(usize),
}

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        (-5i64..5).prop_map(Arg::Number),
        (1usize..8).prop_map(Arg::Earlier),
        (1usize..40).prop_map(Arg::Earlier),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => arg().prop_map(Call::Inc),
        4 => (arg(), arg()).prop_map(|(a, b)| Call::Add(a, b)),
        2 => (arg(), arg()).prop_map(|(a, b)| Call::Mul(a, b)),
        2 => proptest::collection::vec(arg(), 0..6).prop_map(Call::Sum),
        1 => arg().prop_map(Call::Nested),
        1 => Just(Call::Fail),
    ]
}

/// The graph's tasks: task `i` refers only to tasks before it.
fn graph(calls: &[Call], run_id: u64) -> Vec<TaskSpec> {
    let key = |i: usize| Key::from(format!("random-{run_id}-{i}").as_str());
    let mut tasks = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let value = |a: &Arg| match *a {
            Arg::Earlier(back) if i > 0 => task_ref_value(key(i - 1 - (back - 1) % i).as_str()),
            Arg::Earlier(_) => Value::from(1),
            Arg::Number(n) => Value::from(n),
        };
        let (function, args) = match call {
            Call::Inc(a) => ("inc", vec![value(a)]),
            Call::Add(a, b) => ("add", vec![value(a), value(b)]),
            Call::Mul(a, b) => ("mul", vec![value(a), value(b)]),
            Call::Sum(items) => ("sum", vec![Value::Array(items.iter().map(value).collect())]),
            Call::Nested(a) => (
                "getitem",
                vec![
                    Value::Map(vec![(Value::from("x"), value(a))]),
                    Value::from("x"),
                ],
            ),
            Call::Fail => (
                "conformance.fail",
                vec![Value::from(format!("task {i} fails"))],
            ),
        };
        tasks.push(task_spec(key(i), function, &args, &[]));
    }
    tasks
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_graphs_give_what_the_cluster_gives(
        calls in proptest::collection::vec(call(), 1..60),
        wanted_every in 1usize..5,
    ) {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let run_id = RUNS.fetch_add(1, Ordering::Relaxed);
        let tasks = graph(&calls, run_id);
        // Every few keys, and always the last.
        let wanted: Vec<Key> = tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| i % wanted_every == 0 || *i == tasks.len() - 1)
            .map(|(_, t)| t.key.clone())
            .collect();
        assert_same(tasks, &wanted);
    }
}

#[test]
fn delayed_calls_give_what_the_cluster_gives_and_futures_are_refused() {
    use dask_client::{args, delayed};
    use dask_inprocess::compute_delayed;

    let leaves: Vec<_> = (0..10).map(|i| delayed("inc", args![i])).collect();
    let total = delayed("sum", args![leaves.clone()]);
    let mean = delayed("mean", args![leaves]).kwarg("unused", 1);
    let calls = [total, mean];
    let on_cluster: Vec<Outcome> = calls
        .iter()
        .map(|d| cluster_outcome(cluster().compute(d).result()))
        .collect();
    for scheduler in [Scheduler::Sync, Scheduler::Threads(2)] {
        let got = compute_delayed(&calls[..1], &FunctionRegistry::builtins(), scheduler);
        assert_eq!(
            got.map(|v| Ok(v[0].clone())).ok(),
            Some(on_cluster[0].clone())
        );
        // mean() takes no keyword `unused`: the same TypeError both ways.
        match compute_delayed(&calls[1..], &FunctionRegistry::builtins(), scheduler) {
            Err(Error::Task { error, cause, .. }) => {
                assert_eq!(Err((error.error_type, error.message, cause)), on_cluster[1]);
            }
            other => panic!("{other:?}"),
        }
    }
    let future = cluster().submit("inc", args![1]);
    let on_a_future = delayed("inc", args![&future]);
    let refused = compute_delayed(
        &[on_a_future],
        &FunctionRegistry::builtins(),
        Scheduler::Sync,
    );
    match refused {
        Err(Error::Graph(g)) => {
            assert_eq!(g.code, dask_core::ErrorCode::UnknownKey);
            assert_eq!(g.keys, [future.key().clone()]);
        }
        other => panic!("{other:?}"),
    }
}
