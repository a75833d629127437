//! A large lineage is released in bounded steps (issue 19 item 4): no
//! input forgets more than [`SchedulerStateConfig::release_step`] tasks,
//! the rest goes on in steps [`SchedulerState::poll_timeout`] asks for at
//! once, peers are answered between steps, and the release ends with
//! every task forgotten and the tables given back.

use super::v1_1::event_requests;
use super::*;
use crate::state::shrink::SHRINK_FLOOR;

/// Tasks released or forgotten per step in these stories.
const STEP: usize = 100;

fn sim_with_small_steps() -> Sim {
    Sim::with_config(SchedulerStateConfig {
        validate: true,
        release_step: STEP,
        ..SchedulerStateConfig::default()
    })
}

/// A binary tree of `add`s over `leaves` `inc` leaves (`leaves` a power
/// of two): its tasks and its root's key.
fn tree(leaves: usize) -> (Vec<TaskSpec>, String) {
    let name = |level: u32, i: usize| format!("t-{level}-{i}");
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|i| spec(&name(0, i), "inc", vec![Value::from(i)]))
        .collect();
    let (mut level, mut width) = (0, leaves);
    while width > 1 {
        level += 1;
        width /= 2;
        for i in 0..width {
            let args = vec![r(&name(level - 1, 2 * i)), r(&name(level - 1, 2 * i + 1))];
            tasks.push(spec(&name(level, i), "add", args));
        }
    }
    (tasks, name(level, 0))
}

/// Finishes every task `w` is given until none is left to run.
fn run_all(sim: &mut Sim, w: ConnId) {
    loop {
        let got = sim.recv(w);
        let keys: Vec<String> = compute_keys(&got).iter().map(|k| k.to_string()).collect();
        if keys.is_empty() {
            return;
        }
        for k in keys {
            sim.finish(w, &k, 8);
        }
    }
}

#[test]
fn a_large_lineage_is_forgotten_in_bounded_steps_and_peers_are_answered_between() {
    let mut sim = sim_with_small_steps();
    let w = sim.worker("w", &["inc", "add"], 4);
    let a = sim.client();
    let leaves = 4096;
    let (tasks, root) = tree(leaves);
    let n = tasks.len();
    assert!(n > SHRINK_FLOOR, "large enough for the tables to shrink");
    sim.submit(a, 1, tasks, &[&root]);
    run_all(&mut sim, w);
    assert_eq!(finished(&sim.recv(a)), [root.as_str()]);
    assert_eq!(
        sim.s.task_count(),
        n,
        "the lineage is kept while its root is wanted"
    );
    let capacity = sim.s.tasks.capacity();

    // The root released: the first step forgets at most a step's worth.
    sim.send(
        a,
        ReleaseKeys {
            keys: key_list(&[&root]),
        },
    );
    let left = sim.s.task_count();
    assert!(
        left >= n - STEP && left < n,
        "one step forgot {} of {n} tasks",
        n - left
    );
    assert!(sim.s.is_releasing());
    assert_eq!(
        sim.s.poll_timeout(),
        Some(sim.now),
        "the next step is due at once"
    );
    assert!(!sim.s.take_shrunk(), "no shrink in the middle of a release");
    // The root's data is freed on the worker in the first step.
    assert_eq!(freed(&sim.recv(w)), [root.as_str()]);

    // Another client is answered between steps: its graph runs meanwhile.
    let b = sim.client();
    sim.submit(
        b,
        1,
        vec![spec("b-0", "inc", vec![Value::from(1)])],
        &["b-0"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["b-0"]);
    sim.finish(w, "b-0", 8);
    assert_eq!(finished(&sim.recv(b)), ["b-0"]);

    let mut steps = 1;
    while sim.s.is_releasing() {
        let before = sim.s.task_count();
        sim.timeout();
        steps += 1;
        let forgotten = before - sim.s.task_count();
        assert!(
            forgotten <= STEP,
            "step {steps} forgot {forgotten} tasks, more than a step's {STEP}"
        );
        assert!(steps <= 2 * n / STEP + 2, "the release does not end");
    }
    // (b's events were steps too.)
    assert!(
        steps > n / STEP / 2,
        "{n} tasks forgotten in {steps} steps of at most {STEP}"
    );
    // Nothing lost: b's key stays; everything of the lineage is gone.
    assert_eq!(sim.s.task_count(), 1);
    assert_eq!(sim.state("b-0"), Some("memory"));
    assert_eq!(sim.state(&root), None);
    assert_eq!(sim.state("t-0-0"), None);
    assert!(sim.s.validate().is_ok());
    // Memory given back once, at the end.
    assert!(
        sim.s.take_shrunk(),
        "the tables shrink once the release ends"
    );
    assert!(sim.s.tasks.capacity() < capacity);
}

#[test]
fn a_key_wanted_again_during_a_release_is_kept_and_a_redefined_one_is_accepted() {
    let mut sim = sim_with_small_steps();
    let w = sim.worker("w", &["inc", "add", "dec"], 4);
    let a = sim.client();
    let (tasks, root) = tree(1024);
    let kept = tasks[..4].to_vec();
    sim.submit(a, 1, tasks, &[&root]);
    run_all(&mut sim, w);
    sim.recv(a);
    sim.send(
        a,
        ReleaseKeys {
            keys: key_list(&[&root]),
        },
    );
    assert!(sim.s.is_releasing());

    // The same definitions, wanted again before the release reaches them:
    // revived and computed, not forgotten under the client's feet.
    sim.submit(a, 2, kept, &["t-0-0", "t-0-1"]);
    let mut again = compute_keys(&sim.recv(w))
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>();
    again.sort();
    assert_eq!(again, ["t-0-0", "t-0-1"]);
    sim.finish(w, "t-0-0", 8);
    sim.finish(w, "t-0-1", 8);
    let mut done = finished(&sim.recv(a))
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>();
    done.sort();
    assert_eq!(done, ["t-0-0", "t-0-1"]);

    // A key of the lineage given another definition: the release ends
    // first, so the graph is accepted as if the key had been forgotten.
    assert!(sim.s.is_releasing());
    sim.submit(
        a,
        3,
        vec![spec("t-0-5", "dec", vec![Value::from(7)])],
        &["t-0-5"],
    );
    let got = sim.recv(a);
    assert!(
        !got.iter().any(|m| matches!(m, Message::ErrorReport(_))),
        "refused: {got:?}"
    );
    assert!(!sim.s.is_releasing());
    assert_eq!(compute_keys(&sim.recv(w)), ["t-0-5"]);
    let mut left: Vec<&str> = ["t-0-0", "t-0-1", "t-0-5"]
        .into_iter()
        .filter(|k| sim.state(k).is_some())
        .collect();
    left.sort();
    assert_eq!(left, ["t-0-0", "t-0-1", "t-0-5"]);
    assert_eq!(
        sim.s.task_count(),
        3,
        "the rest of the lineage is forgotten"
    );
}

/// `n` independent `inc` tasks `{prefix}-{i}` submitted by `c` and run
/// to memory on `w`: their keys.
fn independent(sim: &mut Sim, c: ConnId, w: ConnId, prefix: &str, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let tasks = names
        .iter()
        .map(|k| spec(k, "inc", vec![Value::from(1)]))
        .collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.submit(c, 1, tasks, &wanted);
    run_all(sim, w);
    sim.recv(c);
    names
}

fn release(sim: &mut Sim, c: ConnId, names: &[String]) {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&names),
        },
    );
}

#[test]
fn releases_arriving_in_one_wakeup_share_a_step_and_peers_are_answered() {
    // A client dropping 1M futures sends many `release-keys`, which the
    // loop reads in one wakeup: a step per input made ~20-40 steps
    // (0.5-1 s) of one wakeup while other peers waited.
    let mut sim = sim_with_small_steps();
    let w = sim.worker("w", &["inc"], 4);
    let a = sim.client();
    let probe = sim.client();
    let parts = 10;
    let names = independent(&mut sim, a, w, "x", parts * STEP);
    let n = sim.s.task_count();
    assert_eq!(n, parts * STEP);

    sim.s.begin_wakeup();
    for part in names.chunks(STEP) {
        release(&mut sim, a, part);
    }
    // The other client's question, read in the same wakeup, is answered.
    sim.send(probe, ClusterInfo { request: 9 });
    assert!(
        matches!(&sim.recv(probe)[..], [Message::ClusterInfoReply(r)] if r.request == 9),
        "the probe is answered in the wakeup"
    );
    let forgotten = n - sim.s.task_count();
    assert!(
        forgotten > 0 && forgotten <= STEP,
        "{parts} inputs of one wakeup forgot {forgotten} tasks, more than a step's {STEP}"
    );
    assert!(sim.s.is_releasing());
    assert_eq!(sim.s.poll_timeout(), Some(sim.now), "the next step at once");
    let mut steps = 1;
    while sim.s.is_releasing() {
        let before = sim.s.task_count();
        sim.s.begin_wakeup();
        sim.timeout();
        steps += 1;
        assert!(before - sim.s.task_count() <= STEP);
        assert!(steps <= 2 * parts + 2, "the release does not end");
    }
    assert!(steps > parts, "{n} keys released in {steps} steps");
    assert_eq!(sim.s.task_count(), 0, "every released task is forgotten");
    assert_eq!(
        freed(&sim.recv(w)).len(),
        n,
        "every result is freed on the worker"
    );
    assert!(sim.s.validate().is_ok());
}

/// A sim whose wakeup's budget went to client `a`'s release of
/// `2 * STEP` keys: what comes next in this wakeup waits in the queue.
fn budget_spent(sim: &mut Sim, w: ConnId) {
    let a = sim.client();
    let names = independent(sim, a, w, "a", 2 * STEP);
    sim.s.begin_wakeup();
    release(sim, a, &names);
    assert!(sim.s.is_releasing());
}

#[test]
fn a_client_that_releases_then_resubmits_a_key_sees_its_release_first_when_queued() {
    // As `events_carry_the_request_that_started_their_want` (tests/v1_1.rs)
    // and `spec_frames`, with the release queued behind another's.
    let mut sim = sim_with_small_steps();
    let w = sim.worker("w", &["inc", "f", "g"], 4);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    sim.submit(c, 2, vec![spec("y", "f", vec![])], &["y"]);
    compute(&mut sim, w, "y");
    assert_eq!(
        event_requests(&sim.recv(c)),
        [("x", Some(1)), ("y", Some(2))]
    );
    budget_spent(&mut sim, w);

    // The same definition wanted again: a new want, its event again.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["x"]),
        },
    );
    sim.submit(c, 3, vec![spec("x", "f", vec![])], &["x"]);
    assert_eq!(event_requests(&sim.recv(c)), [("x", Some(3))]);
    // Another definition: the release ends first, the graph is accepted
    // and its event answers the new request.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["y"]),
        },
    );
    sim.submit(c, 4, vec![spec("y", "g", vec![])], &["y"]);
    let got = sim.recv(c);
    assert!(
        !got.iter().any(|m| matches!(m, Message::ErrorReport(_))),
        "refused: {got:?}"
    );
    compute(&mut sim, w, "y");
    assert_eq!(event_requests(&sim.recv(c)), [("y", Some(4))]);
    assert!(sim.s.validate().is_ok());
}

#[test]
fn a_queued_release_comes_before_the_clients_cancel_and_goes_with_the_client() {
    let mut sim = sim_with_small_steps();
    let w = sim.worker("w", &["inc", "f"], 4);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    sim.recv(c);
    budget_spent(&mut sim, w);

    // Released, then cancelled: it was no longer wanted, no key-cancelled.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["x"]),
        },
    );
    sim.send(
        c,
        CancelKeys {
            keys: keys(&["x"]),
            force: None,
        },
    );
    assert!(sim.recv(c).is_empty(), "cancelled what it had released");

    // A client that leaves with a release queued: its wants go with it.
    let d = sim.client();
    sim.submit(d, 1, vec![spec("z", "f", vec![])], &["z"]);
    compute(&mut sim, w, "z");
    sim.send(
        d,
        ReleaseKeys {
            keys: key_list(&["z"]),
        },
    );
    sim.close(d);
    assert!(sim.s.validate().is_ok());
    while sim.s.is_releasing() {
        sim.s.begin_wakeup();
        sim.timeout();
    }
    assert_eq!(sim.s.task_count(), 0);
    assert!(freed(&sim.recv(w)).contains(&"z"));
}

#[test]
fn a_snapshot_taken_while_releases_wait_restores_them_released() {
    let mut sim = Sim::with_config(SchedulerStateConfig {
        validate: true,
        journal: true,
        release_step: STEP,
        ..SchedulerStateConfig::default()
    });
    let w = sim.worker("w", &["inc", "f"], 4);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("x", "f", vec![])], &["x"]);
    compute(&mut sim, w, "x");
    budget_spent(&mut sim, w);
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["x"]),
        },
    );
    assert!(sim.s.task_count() > 0);

    let snapshot = sim.s.journal_snapshot();
    let mut new = Sim::with_config(SchedulerStateConfig {
        validate: true,
        journal: true,
        ..SchedulerStateConfig::default()
    });
    new.now = sim.now;
    new.s.restore(Some(&snapshot), &[]).expect("restore");
    assert_eq!(
        new.s.task_count(),
        0,
        "released keys come back wanted: {:?}",
        new.state("x")
    );
}
