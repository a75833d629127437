//! Stories of the state machine, driven by hand: no threads, no values.

use std::sync::Arc;

use dask_core::client::task_spec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

use super::*;

/// A run over tasks given as (key, dependency keys); `wanted` by key.
fn run(tasks: &[(&str, &[&str])], wanted: &[&str], on_error: OnError) -> RunState {
    let specs = tasks
        .iter()
        .map(|(key, deps)| {
            let args: Vec<Value> = deps.iter().map(|d| task_ref_value(d)).collect();
            task_spec(Key::from(*key), "f", &args, &[])
        })
        .collect();
    let wanted: Vec<Key> = wanted.iter().map(|&k| Key::from(k)).collect();
    RunState::new(Arc::new(Plan::new(specs, &wanted).unwrap()), on_error)
}

fn key(s: &RunState, t: TaskId) -> &str {
    s.plan().task(t).key.as_str()
}

fn id(s: &RunState, k: &str) -> TaskId {
    (0..s.plan().len() as u32)
        .map(TaskId)
        .find(|&t| key(s, t) == k)
        .unwrap()
}

fn start(s: &mut RunState) -> Option<String> {
    s.poll_run().map(|t| key(s, t).to_owned())
}

fn releases(s: &mut RunState) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_release() {
        out.push(key(s, t).to_owned());
    }
    out.sort();
    out
}

fn finish(s: &mut RunState, k: &str) {
    let t = id(s, k);
    s.handle_finished(t);
}

/// Runs every task one at a time, as the synchronous runner does, and
/// returns the keys in the order they started.
fn run_sequentially(s: &mut RunState) -> Vec<String> {
    let mut started = Vec::new();
    while let Some(t) = s.poll_run() {
        started.push(key(s, t).to_owned());
        while s.poll_release().is_some() {}
        s.handle_finished(t);
    }
    started
}

const SUM: &[(&str, &[&str])] = &[
    ("one", &[]),
    ("two", &[]),
    ("three", &[]),
    ("four", &[]),
    ("left", &["one", "two"]),
    ("right", &["three", "four"]),
    ("total", &["left", "right"]),
];

#[test]
fn a_reduction_runs_depth_first_and_frees_inputs_as_their_consumer_starts() {
    let mut s = run(SUM, &["total"], OnError::Stop);
    assert_eq!(start(&mut s).as_deref(), Some("one"));
    finish(&mut s, "one");
    assert_eq!(start(&mut s).as_deref(), Some("two"));
    finish(&mut s, "two");
    // left is ready and runs before the other half starts; its inputs go
    // as it starts (it took them).
    assert_eq!(start(&mut s).as_deref(), Some("left"));
    assert_eq!(releases(&mut s), ["one", "two"]);
    finish(&mut s, "left");
    assert_eq!(
        run_sequentially(&mut s),
        ["three", "four", "right", "total"]
    );
    assert!(s.is_finished());
    let total = id(&s, "total");
    assert_eq!(s.outcome(total), Outcome::Finished);
}

#[test]
fn wanted_results_are_never_released() {
    let mut s = run(SUM, &["total", "left"], OnError::Stop);
    let mut released = Vec::new();
    while let Some(t) = s.poll_run() {
        while let Some(r) = s.poll_release() {
            released.push(key(&s, r).to_owned());
        }
        s.handle_finished(t);
    }
    released.sort();
    assert_eq!(released, ["four", "one", "right", "three", "two"]);
}

#[test]
fn several_runners_take_ready_tasks_in_priority_order() {
    let mut s = run(SUM, &["total"], OnError::Stop);
    // Two runners: each takes a task before either finishes.
    assert_eq!(start(&mut s).as_deref(), Some("one"));
    assert_eq!(start(&mut s).as_deref(), Some("two"));
    assert_eq!(s.running(), 2);
    assert!(s.has_ready());
    finish(&mut s, "two");
    assert_eq!(start(&mut s).as_deref(), Some("three"));
    finish(&mut s, "one");
    // left became ready and comes before four in the graph order.
    assert_eq!(start(&mut s).as_deref(), Some("left"));
    assert!(!s.is_finished());
}

#[test]
fn a_failure_stops_the_run_by_default() {
    let mut s = run(SUM, &["total"], OnError::Stop);
    assert_eq!(start(&mut s).as_deref(), Some("one"));
    assert_eq!(start(&mut s).as_deref(), Some("two"));
    let one = id(&s, "one");
    s.handle_failed(one);
    assert_eq!(s.poll_run(), None, "nothing starts after a failure");
    assert!(!s.is_finished(), "two still runs");
    finish(&mut s, "two");
    assert!(s.is_finished());
    assert_eq!(s.stopped(), Some(Stopped::Failed(one)));
    let total = id(&s, "total");
    assert_eq!(s.outcome(total), Outcome::NotRun);
}

#[test]
fn with_continue_only_the_dependents_of_a_failure_are_blocked() {
    let mut s = run(SUM, &["total", "right"], OnError::Continue);
    assert_eq!(start(&mut s).as_deref(), Some("one"));
    let one = id(&s, "one");
    s.handle_failed(one);
    // two still runs (nothing can use it: its result goes at once), and
    // the other half runs on.
    assert_eq!(run_sequentially(&mut s), ["two", "three", "four", "right"]);
    assert!(s.is_finished());
    assert_eq!(s.stopped(), None);
    let (left, total, right) = (id(&s, "left"), id(&s, "total"), id(&s, "right"));
    assert_eq!(s.outcome(left), Outcome::Blocked { cause: one });
    assert_eq!(s.outcome(total), Outcome::Blocked { cause: one });
    assert_eq!(s.outcome(right), Outcome::Finished);
}

#[test]
fn a_result_whose_dependents_were_all_blocked_is_released_when_it_finishes() {
    let mut s = run(
        &[("a", &[]), ("bad", &[]), ("c", &["a", "bad"])],
        &["c"],
        OnError::Continue,
    );
    assert_eq!(start(&mut s).as_deref(), Some("a"));
    assert_eq!(start(&mut s).as_deref(), Some("bad"));
    let bad = id(&s, "bad");
    s.handle_failed(bad);
    assert_eq!(releases(&mut s), Vec::<String>::new(), "a still runs");
    finish(&mut s, "a");
    assert_eq!(releases(&mut s), ["a"]);
    assert!(s.is_finished());
}

#[test]
fn cancel_stops_starting_tasks_and_the_run_ends_when_the_running_return() {
    let mut s = run(SUM, &["total"], OnError::Stop);
    assert_eq!(start(&mut s).as_deref(), Some("one"));
    s.handle_cancel();
    assert_eq!(s.poll_run(), None);
    assert!(!s.has_ready());
    assert!(!s.is_finished());
    finish(&mut s, "one");
    assert!(s.is_finished());
    assert_eq!(s.stopped(), Some(Stopped::Cancelled));
}

#[test]
fn events_for_tasks_not_running_are_ignored() {
    let mut s = run(SUM, &["total"], OnError::Stop);
    let total = id(&s, "total");
    s.handle_finished(total);
    s.handle_failed(total);
    assert_eq!(s.ended(), 0);
    assert_eq!(run_sequentially(&mut s).len(), 7);
}

#[test]
fn an_empty_plan_is_finished_at_once() {
    let s = run(&[("a", &[])], &[], OnError::Stop);
    assert!(s.is_finished());
}
