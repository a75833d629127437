//! How runs behave: errors with their cause, dependents of a failure never
//! started, cancel (no task starts once it returns), progress, the
//! synchronous scheduler on the calling thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use dask_inprocess::{compute, run, Cancel, Error, OnError, Options, Plan, Progress, Scheduler};
use dask_worker::{FunctionRegistry, TaskError};
use rmpv::Value;

fn key(s: &str) -> Key {
    Key::from(s)
}

/// The names of tasks in the order they started, shared with functions.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, name: &str) {
        self.0.lock().unwrap().push(name.to_owned());
    }

    fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Built-ins plus `log(name, ...)` (logs its first argument, returns it)
/// and `boom(name)` (logs, then fails).
fn registry(log: &Log) -> FunctionRegistry {
    let mut r = FunctionRegistry::builtins();
    let l = log.clone();
    r.register("log", move |args, _| {
        l.push(args[0].as_str().unwrap_or("?"));
        Ok(args[0].clone())
    });
    let l = log.clone();
    r.register("boom", move |args, _| {
        l.push(args[0].as_str().unwrap_or("?"));
        Err(TaskError::new("ZeroDivisionError", "division by zero"))
    });
    r
}

/// `name` calling `function` with its own name then `refs`.
fn call(name: &str, function: &str, refs: &[&str]) -> TaskSpec {
    let mut args = vec![Value::from(name)];
    args.extend(refs.iter().map(|r| task_ref_value(r)));
    task_spec(key(name), function, &args, &[])
}

/// boom fails; below it "below" and "bottom"; beside it ten independent
/// tasks and "top" joining everything.
fn graph_with_a_failure() -> Vec<TaskSpec> {
    let mut tasks = vec![
        call("boom", "boom", &[]),
        call("below", "log", &["boom"]),
        call("bottom", "log", &["below"]),
    ];
    let mut top = vec!["bottom"];
    let side: Vec<String> = (0..10).map(|i| format!("side-{i}")).collect();
    for s in &side {
        tasks.push(call(s, "log", &[]));
        top.push(s);
    }
    tasks.push(call("top", "log", &top));
    tasks
}

#[test]
fn the_first_error_comes_with_its_cause_and_nothing_starts_after_it() {
    let log = Log::default();
    let err = compute(
        graph_with_a_failure(),
        &[key("top")],
        &registry(&log),
        Scheduler::Sync,
    )
    .unwrap_err();
    let Error::Task {
        key: k,
        error,
        cause,
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(k, key("top"));
    assert_eq!(cause, Some(key("boom")));
    assert_eq!(
        (error.error_type.as_str(), error.message.as_str()),
        ("ZeroDivisionError", "division by zero")
    );
    let names = log.names();
    assert_eq!(names.last().map(String::as_str), Some("boom"), "{names:?}");
}

#[test]
fn on_threads_the_dependents_of_a_failure_never_start() {
    for _ in 0..20 {
        let log = Log::default();
        let err = compute(
            graph_with_a_failure(),
            &[key("top")],
            &registry(&log),
            Scheduler::Threads(4),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Task { cause: Some(c), .. } if *c == key("boom")),
            "{err}"
        );
        let names = log.names();
        assert!(names.contains(&"boom".to_owned()));
        for never in ["below", "bottom", "top"] {
            assert!(!names.contains(&never.to_owned()), "{never} ran: {names:?}");
        }
    }
}

#[test]
fn with_continue_every_key_reports_its_own_outcome() {
    let log = Log::default();
    let plan = Plan::new(
        graph_with_a_failure(),
        &[key("side-3"), key("bottom"), key("boom")],
    )
    .unwrap();
    let options = Options {
        scheduler: Scheduler::Threads(2),
        on_error: OnError::Continue,
        ..Options::default()
    };
    let results = run(plan, &registry(&log), &options);
    assert_eq!(results[0], (key("side-3"), Ok(Value::from("side-3"))));
    let cause_of = |i: usize| match &results[i].1 {
        Err(Error::Task { cause, error, .. }) => (cause.clone(), error.error_type.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(cause_of(1), (Some(key("boom")), "ZeroDivisionError".into()));
    assert_eq!(cause_of(2), (None, "ZeroDivisionError".into()));
}

#[test]
fn a_panic_is_a_task_error_and_retries_rerun_the_task() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut r = FunctionRegistry::new();
    r.register("panics", |_, _| panic!("out of cheese"));
    let a = Arc::clone(&attempts);
    r.register("third_time_lucky", move |_, _| {
        match a.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err(TaskError::new("Flaky", "not yet")),
            _ => Ok(Value::from(3)),
        }
    });
    let err = compute(
        vec![task_spec(key("p"), "panics", &[], &[])],
        &[key("p")],
        &r,
        Scheduler::Threads(2),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Panic: out of cheese"), "{err}");
    let mut lucky = task_spec(key("l"), "third_time_lucky", &[], &[]);
    lucky.retries = Some(2);
    let values = compute(vec![lucky], &[key("l")], &r, Scheduler::Sync).unwrap();
    assert_eq!(values, [Value::from(3)]);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[test]
fn graph_errors_come_before_anything_runs() {
    let log = Log::default();
    let err = compute(
        vec![call("a", "log", &["missing"])],
        &[key("a")],
        &registry(&log),
        Scheduler::Threads(2),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Graph(ref g) if g.code == dask_core::ErrorCode::UnknownKey));
    assert_eq!(
        err.to_string(),
        r#"graph refused (unknown-key): references or wanted keys name no task of this graph: "missing""#
    );
    assert!(log.names().is_empty());
}

/// A gate that tasks wait at until it opens, counting who is waiting.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 += 1;
        self.changed.notify_all();
        while !s.0 {
            s = self.changed.wait(s).unwrap();
        }
    }

    fn wait_for(&self, waiting: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = self.state.lock().unwrap();
        while s.1 < waiting {
            assert!(
                Instant::now() < deadline,
                "only {} tasks reached the gate",
                s.1
            );
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }
}

#[test]
fn no_task_starts_once_cancel_returns() {
    let log = Log::default();
    let gate = Arc::new(Gate::default());
    let mut r = registry(&log);
    let g = Arc::clone(&gate);
    let l = log.clone();
    r.register("gated", move |args, _| {
        l.push(args[0].as_str().unwrap_or("?"));
        g.pass();
        Ok(Value::Nil)
    });
    let names: Vec<String> = (0..30).map(|i| format!("g-{i}")).collect();
    let tasks: Vec<TaskSpec> = names.iter().map(|n| call(n, "gated", &[])).collect();
    let wanted: Vec<Key> = names.iter().map(|n| key(n)).collect();
    let cancel = Cancel::new();
    let (c, reg) = (cancel.clone(), r.clone());
    let running = std::thread::spawn(move || {
        let options = Options {
            scheduler: Scheduler::Threads(3),
            cancel: Some(&c),
            ..Options::default()
        };
        run(Plan::new(tasks, &wanted).unwrap(), &reg, &options)
    });
    // All three threads are inside a task: none is between tasks.
    gate.wait_for(3);
    cancel.cancel();
    let started_before = log.names();
    gate.open();
    let results = running.join().unwrap();
    assert_eq!(started_before.len(), 3);
    assert_eq!(
        log.names(),
        started_before,
        "a task started after cancel returned"
    );
    let finished = results.iter().filter(|(_, r)| r.is_ok()).count();
    let cancelled = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(Error::Cancelled { .. })))
        .count();
    assert_eq!((finished, cancelled), (3, 27));
}

#[test]
fn a_task_can_cancel_its_own_run() {
    let log = Log::default();
    let cancel = Cancel::new();
    let mut r = registry(&log);
    let (l, c) = (log.clone(), cancel.clone());
    r.register("stop_here", move |args, _| {
        l.push(args[0].as_str().unwrap_or("?"));
        c.cancel();
        Ok(Value::Nil)
    });
    let mut tasks: Vec<TaskSpec> = (0..5)
        .map(|i| call(&format!("a-{i}"), "log", &[]))
        .collect();
    tasks.push(call("stop", "stop_here", &[]));
    tasks.extend((0..5).map(|i| call(&format!("b-{i}"), "log", &[])));
    let wanted: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let options = Options {
        scheduler: Scheduler::Sync,
        cancel: Some(&cancel),
        ..Options::default()
    };
    let results = run(Plan::new(tasks, &wanted).unwrap(), &r, &options);
    assert_eq!(log.names(), ["a-0", "a-1", "a-2", "a-3", "a-4", "stop"]);
    assert!(matches!(results[6].1, Err(Error::Cancelled { .. })));
    // A run given a cancelled token stops before its first task.
    let again = run(
        Plan::new(vec![call("x", "log", &[])], &[key("x")]).unwrap(),
        &r,
        &options,
    );
    assert!(matches!(again[0].1, Err(Error::Cancelled { .. })));
    assert_eq!(log.names().len(), 6);
}

#[test]
fn progress_reaches_the_total_from_the_runner_threads() {
    let log = Log::default();
    let seen: Mutex<Vec<Progress>> = Mutex::new(Vec::new());
    let report = |p: Progress| seen.lock().unwrap().push(p);
    let side: Vec<String> = (0..10).map(|i| format!("side-{i}")).collect();
    let mut tasks: Vec<TaskSpec> = side.iter().map(|s| call(s, "log", &[])).collect();
    let refs: Vec<&str> = side.iter().map(String::as_str).collect();
    tasks.push(call("top", "log", &refs));
    let options = Options {
        scheduler: Scheduler::Threads(3),
        progress: Some(&report),
        ..Options::default()
    };
    let results = run(
        Plan::new(tasks, &[key("top")]).unwrap(),
        &registry(&log),
        &options,
    );
    assert_eq!(results[0].1, Ok(Value::from("top")));
    let done: Vec<usize> = seen.lock().unwrap().iter().map(|p| p.done).collect();
    // A call may cover several tasks (runners take short tasks in batches).
    assert!(
        !done.is_empty() && done.iter().all(|&d| (1..=11).contains(&d)),
        "{done:?}"
    );
    assert_eq!(done.iter().max(), Some(&11));
    assert!(seen.lock().unwrap().iter().all(|p| p.total == 11));
}

#[test]
fn the_synchronous_scheduler_runs_everything_on_the_calling_thread_in_graph_order() {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let mut r = FunctionRegistry::builtins();
    let t = Arc::clone(&threads);
    r.register("where", move |args, _| {
        t.lock().unwrap().push(std::thread::current().id());
        Ok(Value::from(args.len() as u64))
    });
    // A tree over eight leaves.
    let mut tasks: Vec<TaskSpec> = (0..8)
        .map(|i| task_spec(key(&format!("leaf-{i}")), "where", &[], &[]))
        .collect();
    let mut level: Vec<String> = (0..8).map(|i| format!("leaf-{i}")).collect();
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        level = level
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let name = format!("node-{depth}-{i}");
                let refs: Vec<Value> = pair.iter().map(|p| task_ref_value(p)).collect();
                tasks.push(task_spec(key(&name), "where", &refs, &[]));
                name
            })
            .collect();
    }
    let values = compute(tasks, &[key(&level[0])], &r, Scheduler::Sync).unwrap();
    assert_eq!(values, [Value::from(2)]);
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 15);
    assert!(threads.iter().all(|&id| id == std::thread::current().id()));
}
