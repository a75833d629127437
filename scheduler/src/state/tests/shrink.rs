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
