//! The task tables give back the capacity of a released graph (issue 20
//! item 5; the process's RSS is checked in tests/memory_returned.rs).

use super::*;
use crate::state::shrink::SHRINK_FLOOR;

#[test]
fn tables_shrink_once_a_large_graph_is_released() {
    let mut sim = Sim::new();
    sim.s.config.validate = false;
    let c = sim.client();
    let n = SHRINK_FLOOR * 2;
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|i| spec(&format!("t-{i}"), "nobody-offers-this", vec![]))
        .collect();
    let names: Vec<String> = (0..n).map(|i| format!("t-{i}")).collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.submit(c, 1, tasks, &wanted);
    assert!(sim.s.tasks.capacity() >= n);
    assert!(!sim.s.take_shrunk(), "nothing to give back yet");
    // Half released: not yet (the bound is a quarter of the capacity).
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&wanted[..n / 2]),
        },
    );
    assert!(!sim.s.take_shrunk());
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&wanted[n / 2..]),
        },
    );
    assert!(sim.s.take_shrunk(), "the loop is told to give memory back");
    assert_eq!(sim.s.tasks.capacity(), 0);
    assert!(sim.s.key_index.capacity() < SHRINK_FLOOR);
    // Nothing more to give back: not told again.
    sim.send(c, Heartbeat { metrics: None });
    assert!(!sim.s.take_shrunk());
}

#[test]
fn a_workers_and_a_clients_sets_shrink_once_their_tasks_are_released() {
    let mut sim = Sim::new();
    sim.s.config.validate = false;
    let c = sim.client();
    let w = sim.worker("w", &["inc"], 1);
    let n = SHRINK_FLOOR * 2;
    let names: Vec<String> = (0..n).map(|i| format!("t-{i}")).collect();
    let tasks: Vec<TaskSpec> = names
        .iter()
        .map(|k| spec(k, "inc", vec![Value::from(1)]))
        .collect();
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.submit(c, 1, tasks, &wanted);
    // Run every task on w, as it is sent.
    let mut done = 0;
    while done < n {
        let got = sim.recv(w);
        let keys: Vec<String> = compute_keys(&got).iter().map(|k| k.to_string()).collect();
        assert!(
            !keys.is_empty(),
            "w was sent nothing more after {done} tasks"
        );
        for k in keys {
            sim.finish(w, &k, 8);
            done += 1;
        }
    }
    let ix = sim.s.worker_by_conn[&w];
    assert!(sim.s.workers[ix.ix()].has_what.capacity() >= n);
    assert!(sim.s.clients[&c].wants.capacity() >= n);
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&wanted),
        },
    );
    assert!(sim.s.take_shrunk());
    let worker = &sim.s.workers[ix.ix()];
    assert!(
        worker.has_what.capacity() < SHRINK_FLOOR,
        "{}",
        worker.has_what.capacity()
    );
    assert!(worker.processing.capacity() < SHRINK_FLOOR);
    assert!(sim.s.clients[&c].wants.capacity() < SHRINK_FLOOR);
}
