//! Failures: lost and silent workers, missing data, stealing, KilledWorker,
//! validation.

use super::data::scatter_one;
use super::*;

#[test]
fn a_lost_worker_has_its_work_rescheduled_and_its_results_recomputed() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![r("a")]),
            spec("c", "f", vec![r("b")]),
        ],
        &["c"],
    );
    sim.recv(w1);
    sim.finish(w1, "a", 1);
    assert_eq!(compute_keys(&sim.recv(w1)), ["b"]);
    let w2 = sim.worker("w2", &["f"], 1);
    sim.close(w1);
    // a existed only on w1: it is computed again, then b.
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
    assert_eq!(sim.state("b"), Some("waiting"));
    sim.finish(w2, "a", 1);
    assert_eq!(compute_keys(&sim.recv(w2)), ["b"]);
    sim.finish(w2, "b", 1);
    sim.finish(w2, "c", 1);
    assert_eq!(finished(&sim.recv(c)), ["c"]);
}

#[test]
fn a_silent_worker_is_declared_dead_after_the_heartbeat_timeout() {
    let (mut sim, w1, w2, _client) = Sim::with_a_running_on_w1_and_w1_gone_silent();
    assert!(sim.is_closed(w1) && !sim.is_closed(w2));
    assert!(matches!(&sim.recv(w1)[..], [Message::Close(_)]));
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
}

#[test]
fn workers_are_told_to_beat_at_least_three_times_per_heartbeat_timeout() {
    let mut sim = Sim::new();
    sim.s.config.heartbeat_timeout = Duration::from_secs(2);
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Worker, Some("w".into())));
    sim.send(
        c,
        RegisterWorker {
            name: "w".into(),
            address: address("w"),
            nthreads: 1,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::Hello(_), Message::WorkerRegistered(r)] if r.heartbeat_interval_ms == 666),
        "{got:?}"
    );
    // Silent for three of those intervals and a bit: dead.
    sim.advance(Duration::from_millis(1999));
    assert!(!sim.is_closed(c));
    sim.advance(Duration::from_millis(2));
    assert!(sim.is_closed(c));
}

#[test]
fn lost_scattered_data_is_reported_lost_to_wanting_clients() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &["f"], 1);
    scatter_one(&mut sim, c, "x", 1);
    let Message::PutData(put) = &sim.recv(w)[0] else {
        panic!()
    };
    let request = put.request;
    sim.send(
        w,
        DataStored {
            request,
            nbytes: [(Key::from("x"), 1)].into(),
        },
    );
    sim.submit(c, 2, vec![spec("y", "f", vec![r("x")])], &["y"]);
    sim.recv(c);
    sim.close(w);
    let mut got: Vec<&str> = Vec::new();
    let mail = sim.recv(c);
    for m in &mail {
        let Message::KeyLost(l) = m else {
            panic!("{m:?}")
        };
        got.push(l.key.as_str());
    }
    got.sort();
    assert_eq!(got, ["x", "y"]);
    assert_eq!(sim.s.task_count(), 0);

    // A put in flight when its worker leaves is lost too.
    let w2 = sim.worker("w2", &["f"], 1);
    scatter_one(&mut sim, c, "z", 1);
    sim.close(w2);
    assert!(matches!(&sim.recv(c)[..], [Message::KeyLost(l)] if l.key.as_str() == "z"));
}

#[test]
fn missing_data_drops_the_replica_and_recomputes_the_dependency() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    sim.recv(w1);
    sim.finish(w1, "a", 1);
    assert_eq!(compute_keys(&sim.recv(w1)), ["b"]);
    // w1 is saturated by another task so b's retry goes to w2.
    let w2 = sim.worker("w2", &["f"], 1);
    sim.send(
        w1,
        MissingData {
            key: "a".into(),
            addresses: vec![address("w1")],
            task: "b".into(),
        },
    );
    // w1's copy is forgotten there too, and a is computed again.
    let got = sim.recv(w1);
    let got2 = sim.recv(w2);
    let mut all = compute_keys(&got);
    all.extend(compute_keys(&got2));
    assert_eq!(all, ["a"]);
    assert!(freed(&got).contains(&"a"));
    assert_eq!(sim.state("b"), Some("waiting"));
}

#[test]
fn a_new_worker_steals_tasks_queued_on_a_saturated_one() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![])],
        &["a", "b"],
    );
    assert_eq!(compute_keys(&sim.recv(w1)), ["a", "b"]);
    let w2 = sim.worker("w2", &["f"], 1);
    let got = sim.recv(w1);
    assert!(
        matches!(&got[..], [Message::StealRequest(s)] if s.key.as_str() == "b"),
        "{got:?}"
    );
    sim.send(
        w1,
        StealResponse {
            key: "b".into(),
            stolen: true,
        },
    );
    assert_eq!(compute_keys(&sim.recv(w2)), ["b"]);
    // A refused steal changes nothing.
    sim.submit(
        c,
        2,
        vec![
            spec("d", "f", vec![]),
            spec("e", "f", vec![]),
            spec("g", "f", vec![]),
        ],
        &["d", "e", "g"],
    );
    sim.recv(w1);
    sim.recv(w2);
    let w3 = sim.worker("w3", &["f"], 1);
    let _ = w3;
    let mut requests = Vec::new();
    for w in [w1, w2] {
        for m in sim.recv(w) {
            if let Message::StealRequest(s) = m {
                requests.push((w, s.key));
            }
        }
    }
    assert!(!requests.is_empty());
    for (w, key) in requests {
        sim.send(w, StealResponse { key, stolen: false });
    }
}

#[test]
fn a_task_whose_workers_keep_dying_errs_with_killed_worker() {
    let mut sim = Sim::new();
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("poison", "f", vec![]),
            spec("after", "f", vec![r("poison")]),
        ],
        &["after"],
    );
    // A worker that leaves with `close` does not count against the task.
    let polite = sim.worker("polite", &["f"], 1);
    assert_eq!(compute_keys(&sim.recv(polite)), ["poison"]);
    sim.send(
        polite,
        Close {
            reason: None,
            reconnect: None,
        },
    );
    // Lost workers do: three are allowed, the fourth errs the task.
    for i in 0..=ALLOWED_FAILURES_DEFAULT {
        let w = sim.worker(&format!("w{i}"), &["f"], 1);
        assert_eq!(compute_keys(&sim.recv(w)), ["poison"], "worker {i}");
        assert!(sim.recv(c).is_empty(), "no event before the last loss");
        sim.close(w);
    }
    let got = sim.recv(c);
    let [Message::KeyErred(e)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(e.key.as_str(), "after");
    assert_eq!(e.cause.as_ref().map(|k| k.as_str()), Some("poison"));
    assert_eq!(e.error_type, "KilledWorker");
    for name in ["poison", "\"w0\"", "\"w3\"", "4 workers"] {
        assert!(e.message.contains(name), "{name} not in {:?}", e.message);
    }
    assert!(!e.message.contains("polite"), "{:?}", e.message);
    // The operator is told once, as is `/metrics`.
    let killed: Vec<_> = std::iter::from_fn(|| sim.s.poll_log())
        .filter(|l| l.event == "killed-worker")
        .collect();
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!(
        killed[0].message.starts_with("KilledWorker: ") && killed[0].message.contains("poison")
    );
    assert_eq!(sim.s.snapshot().counters.killed_worker_total, 1);
    // The erred tasks stay while the client wants `after`; a new worker
    // gets nothing.
    assert_eq!(
        [sim.state("poison"), sim.state("after")],
        [Some("erred"); 2]
    );
    let w = sim.worker("w9", &["f"], 1);
    assert!(sim.recv(w).is_empty());
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["after"]),
        },
    );
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn a_task_is_not_killed_by_losses_it_was_not_processing_for() {
    let mut sim = Sim::new();
    let c = sim.client();
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    // a is lost with three workers, and finishes on the fourth: the count
    // only matters while the task keeps being lost.
    for i in 0..ALLOWED_FAILURES_DEFAULT {
        let w = sim.worker(&format!("w{i}"), &["f"], 1);
        assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
        sim.close(w);
    }
    let w = sim.worker("last", &["f"], 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
    sim.finish(w, "a", 1);
    assert_eq!(finished(&sim.recv(c)), ["a"]);
}

#[test]
fn a_worker_declared_dead_is_not_heard_any_more() {
    let (mut sim, w1, w2, c) = Sim::with_a_running_on_w1_and_w1_gone_silent();
    assert!(sim.is_closed(w1));
    assert!(matches!(&sim.recv(w1)[..], [Message::Close(_)]));
    assert_eq!(compute_keys(&sim.recv(w2)), ["a"]);
    // w1 wakes up and reports what it was doing: none of it is taken.
    sim.finish(w1, "a", 1);
    sim.send(
        w1,
        AddKeys {
            nbytes: [(Key::from("a"), 1)].into(),
        },
    );
    sim.send(w1, Heartbeat { metrics: None });
    assert!(sim.recv(c).is_empty());
    assert!(sim.recv(w1).is_empty());
    assert_eq!(sim.state("a"), Some("processing"));
    assert_eq!(sim.s.worker_count(), 1);
    sim.finish(w2, "a", 1);
    assert_eq!(finished(&sim.recv(c)), ["a"]);
}

#[test]
fn tasks_that_may_be_fetching_from_a_lost_worker_are_asked_back() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    let c = sim.client();
    let mut b = spec("b", "f", vec![r("a")]);
    b.workers = Some(vec!["w2".into()]);
    sim.submit(c, 1, vec![spec("a", "f", vec![]), b], &["b"]);
    assert_eq!(compute_keys(&sim.recv(w1)), ["a"]);
    sim.finish(w1, "a", 1);
    let got = sim.recv(w2);
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w1")]);
    // w1 hangs and is declared dead: w2 may be waiting for w1 forever, so
    // b is asked back and placed again once a is computed again.
    sim.close(w1);
    let got = sim.recv(w2);
    assert!(
        got.iter()
            .any(|m| matches!(m, Message::StealRequest(s) if s.key.as_str() == "b")),
        "{got:?}"
    );
    assert_eq!(compute_keys(&got), ["a"]);
    sim.send(
        w2,
        StealResponse {
            key: "b".into(),
            stolen: true,
        },
    );
    assert_eq!(sim.state("b"), Some("waiting"));
    sim.finish(w2, "a", 1);
    let got = sim.recv(w2);
    assert_eq!(computes(&got)[0].key.as_str(), "b");
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w2")]);
    sim.finish(w2, "b", 1);
    assert_eq!(finished(&sim.recv(c)), ["b"]);
}

#[test]
fn validate_names_a_broken_invariant() {
    let mut sim = Sim::new();
    let _w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    assert_eq!(sim.s.validate(), Ok(()));
    let a = sim.s.task_id("a").expect("a is known");
    sim.s.tasks[a].waiters = 7;
    let e = sim.s.validate().unwrap_err();
    assert!(e.contains("task a") && e.contains("waiters 7"), "{e}");
}

#[test]
#[should_panic(expected = "scheduler invariant violated: task t5 (waiting): waiting_on 9")]
fn in_a_large_state_the_tasks_an_event_touches_are_checked() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let n = validate::VALIDATE_ALL_TASKS_MAX + 10;
    let mut tasks = vec![spec("t0", "f", vec![])];
    for i in 1..n {
        tasks.push(spec(&format!("t{i}"), "f", vec![r(&format!("t{}", i - 1))]));
    }
    sim.submit(c, 1, tasks, &[&format!("t{}", n - 1)]);
    // The whole state was checked once; the next full check is a second
    // away, so only what an event touches is checked until then.
    let t5 = sim.s.task_id("t5").expect("t5 is known");
    sim.s.tasks[t5].waiting_on = 9;
    sim.finish(w, "t0", 1);
    // t1 is sent out, t5 untouched: fine so far. Finishing t4 touches t5.
    for i in 1..5 {
        sim.finish(w, &format!("t{i}"), 1);
    }
}

#[test]
fn unregistered_and_bad_worker_registrations() {
    let mut sim = Sim::new();
    let w = sim.connect();
    sim.send(w, handshake::offer(Role::Worker, None));
    sim.recv(w);
    sim.send(
        w,
        RegisterWorker {
            name: "zero".into(),
            address: address("zero"),
            nthreads: 0,
            memory_limit: None,
            resources: None,
            functions: vec![],
            pid: None,
            held: None,
        },
    );
    assert_eq!(error_of(&sim.recv(w)).code, 2003);
    assert!(sim.is_closed(w));
}
