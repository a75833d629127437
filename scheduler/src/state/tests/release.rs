//! A large lineage is released in bounded steps (issue 19 item 4): no
//! input forgets more than [`SchedulerStateConfig::release_step`] tasks,
//! the rest goes on in steps [`SchedulerState::poll_timeout`] asks for at
//! once, peers are answered between steps, and the release ends with
//! every task forgotten and the tables given back.

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
            keys: keys(&[&root]),
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
            keys: keys(&[&root]),
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
