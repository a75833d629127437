//! What the spec says about frames, lineage and 4001 (issue 18.6).

use super::*;

#[test]
fn a_frame_releasing_a_key_then_redefining_it_is_handled_in_order() {
    // PROTOCOL.md#framing: "The receiver handles the messages of a frame in
    // array order": the release is done before the new definition comes.
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f", "g"], 1);
    sim.submit(c, 1, vec![spec("k", "f", vec![])], &["k"]);
    compute(&mut sim, w, "k");
    assert_eq!(finished(&sim.recv(c)), ["k"]);
    sim.send_frame(
        c,
        vec![
            ReleaseKeys {
                keys: key_list(&["k"]),
            }
            .into(),
            UpdateGraph {
                request: 2,
                tasks: vec![spec("k", "g", vec![])],
                wanted: keys(&["k"]),
                ack: None,
            }
            .into(),
        ],
    );
    let got = sim.recv(c);
    assert!(got.is_empty(), "no error for the redefinition: {got:?}");
    let got = sim.recv(w);
    let runs: Vec<(&str, &str)> = computes(&got)
        .iter()
        .map(|t| (t.key.as_str(), t.function.as_str()))
        .collect();
    assert_eq!(runs, [("k", "g")], "the new definition runs: {got:?}");
    // The old result is freed on the worker before the new task comes.
    let free = got
        .iter()
        .position(|m| matches!(m, Message::FreeKeys(f) if f.keys == keys(&["k"])));
    let run = got
        .iter()
        .position(|m| matches!(m, Message::ComputeTask(_)));
    assert!(free < run, "{got:?}");
}

#[test]
fn a_dependency_no_longer_needed_keeps_its_definition_while_a_dependent_is_kept() {
    // PROTOCOL.md#task-model: a task no longer needed stays known (released,
    // its definition kept) while a task the scheduler keeps depends on it,
    // so a lost result can be recomputed; it is forgotten with the last one.
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    sim.submit(
        c,
        1,
        vec![spec("x", "f", vec![]), spec("y", "f", vec![r("x")])],
        &["y"],
    );
    compute(&mut sim, w, "x");
    compute(&mut sim, w, "y");
    assert_eq!(finished(&sim.recv(c)), ["y"]);
    assert_eq!(
        sim.state("x"),
        Some("released"),
        "data freed, definition kept"
    );
    // Still known: a different definition is a duplicate...
    sim.submit(c, 2, vec![spec("x", "other", vec![])], &["x"]);
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!((e.code, e.keys.clone()), (4002, Some(keys(&["x"]))));
    // ...and a reference to it is accepted, and computes it again.
    sim.submit(c, 3, vec![spec("z", "f", vec![r("x")])], &["z"]);
    assert!(sim.recv(c).is_empty());
    compute(&mut sim, w, "x");
    compute(&mut sim, w, "z");
    assert_eq!(finished(&sim.recv(c)), ["z"]);
    // Once nothing kept depends on it, it is forgotten: unknown from then on.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["y", "z"]),
        },
    );
    assert_eq!(sim.state("x"), None);
    sim.submit(c, 4, vec![spec("x", "other", vec![])], &["x"]);
    // (No worker offers `other`: the client hears why x waits.)
    assert!(
        !sim.recv(c)
            .iter()
            .any(|m| matches!(m, Message::ErrorReport(_))),
        "a new definition of a forgotten key"
    );
}

#[test]
fn unknown_key_errors_list_the_keys_the_scheduler_does_not_know() {
    // PROTOCOL.md#requests-replies-and-errors: 4001's keys are the unknown
    // keys (referenced or wanted), not the tasks that hold the references.
    let mut sim = Sim::new();
    let c = sim.client();
    sim.submit(
        c,
        7,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![r("a"), r("zz")]),
        ],
        &["b", "nope"],
    );
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!(
        (e.code, e.fatal, e.request, e.keys.clone()),
        (4001, false, Some(7), Some(keys(&["nope", "zz"])))
    );
    assert_eq!(sim.state("a"), None, "nothing of the graph was accepted");
}
