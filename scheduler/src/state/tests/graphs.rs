//! Graphs run: chains, placement, queues and the graph order.

use super::*;

#[test]
fn a_chain_runs_link_by_link_and_intermediates_are_freed() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["inc"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("c", "inc", vec![r("b")]),
            spec("b", "inc", vec![r("a")]),
            spec("a", "inc", vec![Value::from(1)]),
        ],
        &["c"],
    );
    let got = sim.recv(w);
    assert_eq!(compute_keys(&got), ["a"]);
    assert!(computes(&got)[0].who_has.is_empty());
    assert_eq!(sim.state("c"), Some("waiting"));

    sim.finish(w, "a", 1);
    let got = sim.recv(w);
    assert_eq!(compute_keys(&got), ["b"]);
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w")]);

    sim.finish(w, "b", 1);
    let got = sim.recv(w);
    // a is no longer needed once b is in memory.
    assert_eq!(freed(&got), ["a"]);
    assert_eq!(compute_keys(&got), ["c"]);
    assert_eq!(sim.state("a"), Some("released"));
    assert!(sim.recv(c).is_empty(), "no event before c finishes");

    sim.finish(w, "c", 9);
    assert_eq!(freed(&sim.recv(w)), ["b"]);
    assert!(
        matches!(&sim.recv(c)[..], [Message::KeyFinished(f)] if f.key.as_str() == "c" && f.nbytes == 9)
    );

    // Releasing c forgets the whole graph.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["c"]),
        },
    );
    assert_eq!(freed(&sim.recv(w)), ["c"]);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn tasks_nothing_wants_are_not_run() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["inc"], 2);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("x", "inc", vec![Value::from(1)]),
            spec("y", "inc", vec![Value::from(2)]),
        ],
        &["x"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["x"]);
    assert_eq!(sim.state("y"), None);
}

#[test]
fn placement_prefers_the_worker_holding_the_most_dependency_bytes() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 2);
    let w2 = sim.worker("w2", &["f"], 2);
    let c = sim.client();
    let pinned = |key: &str, worker: &str| {
        let mut s = spec(key, "f", vec![]);
        s.workers = Some(vec![worker.into()]);
        s
    };
    sim.submit(
        c,
        1,
        vec![pinned("big", "w1"), pinned("small", "w2")],
        &["big", "small"],
    );
    assert_eq!(compute_keys(&sim.recv(w1)), ["big"]);
    assert_eq!(compute_keys(&sim.recv(w2)), ["small"]);
    sim.finish(w1, "big", 1000);
    sim.finish(w2, "small", 10);
    // w1 is busier, but holds more of what the task needs.
    sim.submit(c, 2, vec![pinned("busy", "w1")], &["busy"]);
    assert_eq!(compute_keys(&sim.recv(w1)), ["busy"]);
    sim.submit(
        c,
        3,
        vec![spec("z", "f", vec![r("big"), r("small")])],
        &["z"],
    );
    let got = sim.recv(w1);
    assert_eq!(compute_keys(&got), ["z"]);
    let who = &computes(&got)[0].who_has;
    assert_eq!(who[&Key::from("big")], [address("w1")]);
    assert_eq!(who[&Key::from("small")], [address("w2")]);
    assert!(sim.recv(w2).is_empty());
}

#[test]
fn consecutive_roots_go_to_the_same_worker_so_their_dependent_needs_no_transfer() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["f"], 2);
    let w2 = sim.worker("w2", &["f"], 2);
    let c = sim.client();
    // Two small trees: (a, b) -> ab and (c, d) -> cd.
    sim.submit(
        c,
        1,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![]),
            spec("ab", "f", vec![r("a"), r("b")]),
            spec("c", "f", vec![]),
            spec("d", "f", vec![]),
            spec("cd", "f", vec![r("c"), r("d")]),
        ],
        &["ab", "cd"],
    );
    // w1 takes roots until its 4 slots are full; the rest go to w2.
    assert_eq!(compute_keys(&sim.recv(w1)), ["a", "b", "c", "d"]);
    assert!(compute_keys(&sim.recv(w2)).is_empty());
    for k in ["a", "b"] {
        sim.finish(w1, k, 8);
    }
    // ab's inputs are both on w1: it runs there with no fetch.
    let got = sim.recv(w1);
    assert_eq!(compute_keys(&got), ["ab"]);
    assert_eq!(computes(&got)[0].who_has[&Key::from("a")], [address("w1")]);
    assert_eq!(computes(&got)[0].who_has[&Key::from("b")], [address("w1")]);
}

#[test]
fn a_task_waits_in_no_worker_until_a_worker_offers_its_function() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    let mut gpu = spec("g", "inc", vec![]);
    gpu.resources = Some([("GPU".to_string(), 1.0)].into());
    let mut pinned = spec("p", "inc", vec![]);
    pinned.workers = Some(vec!["w3".into()]);
    sim.submit(
        c,
        1,
        vec![spec("m", "mul", vec![]), gpu, pinned],
        &["m", "g", "p"],
    );
    assert!(sim.recv(w1).is_empty());
    for k in ["m", "g", "p"] {
        assert_eq!(sim.state(k), Some("no-worker"), "{k}");
    }
    let w2 = sim.worker("w2", &["mul", "inc"], 4);
    assert_eq!(compute_keys(&sim.recv(w2)), ["m"]);
    // Resources and restrictions are checked too.
    let w3 = sim.connect();
    sim.send(w3, handshake::offer(Role::Worker, None));
    sim.send(
        w3,
        RegisterWorker {
            name: "w3".into(),
            address: address("w3"),
            nthreads: 2,
            memory_limit: None,
            resources: Some([("GPU".to_string(), 2.0)].into()),
            functions: vec!["inc".into()],
            pid: None,
            held: None,
        },
    );
    let mut got = compute_keys(&sim.recv(w3))
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, ["g", "p"]);
    // When the only capable worker leaves, its tasks wait again.
    sim.close(w3);
    assert_eq!(sim.state("p"), Some("no-worker"));
    assert_eq!(sim.state("g"), Some("no-worker"));
}

/// Placement finds a task's function among a worker's by the shared
/// name's address: tasks of two functions interleaved each get the answer
/// for their own.
#[test]
fn tasks_of_interleaved_functions_go_only_to_workers_offering_theirs() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["inc"], 1);
    let w2 = sim.worker("w2", &["inc", "mul"], 1);
    let c = sim.client();
    let specs: Vec<TaskSpec> = (0..40)
        .map(|i| {
            let function = if i % 2 == 0 { "inc" } else { "mul" };
            spec(&format!("{function}-{i}"), function, vec![])
        })
        .collect();
    let wanted: Vec<String> = specs.iter().map(|t| t.key.to_string()).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    sim.submit(c, 1, specs, &wanted);
    let mut ran = [0, 0];
    for _ in 0..100 {
        let on_w1: Vec<String> = compute_keys(&sim.recv(w1))
            .iter()
            .map(|k| k.to_string())
            .collect();
        let on_w2: Vec<String> = compute_keys(&sim.recv(w2))
            .iter()
            .map(|k| k.to_string())
            .collect();
        if on_w1.is_empty() && on_w2.is_empty() {
            break;
        }
        for k in &on_w1 {
            assert!(k.starts_with("inc-"), "w1 offers no mul, got {k}");
            sim.finish(w1, k, 1);
        }
        for k in &on_w2 {
            sim.finish(w2, k, 1);
        }
        ran[0] += on_w1.len();
        ran[1] += on_w2.len();
    }
    assert_eq!(ran[0] + ran[1], 40);
    assert!(ran[0] > 0, "w1 ran none of the inc tasks: {ran:?}");
    assert_eq!(finished(&sim.recv(c)).len(), 40);
}

/// Names past the bound on shared function names are held apart, by the
/// worker and by each task: a worker still offers them (found by text),
/// and one that does not is still refused them.
#[test]
fn functions_past_the_shared_names_bound_are_found_by_their_text() {
    let mut sim = Sim::new();
    let many: Vec<String> = (0..FUNCTION_NAMES_SHARED_MAX + 10)
        .map(|i| format!("f{i}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let w1 = sim.worker("w1", &many, 1);
    let late = format!("f{}", FUNCTION_NAMES_SHARED_MAX + 5);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("late", &late, vec![])], &["late"]);
    assert_eq!(compute_keys(&sim.recv(w1)), ["late"]);
    sim.finish(w1, "late", 1);
    // Another late name, offered by no worker: it waits for one.
    sim.submit(c, 2, vec![spec("none", "f-none", vec![])], &["none"]);
    assert!(sim.recv(w1).is_empty());
    assert_eq!(sim.state("none"), Some("no-worker"));
    assert_eq!(finished(&sim.recv(c)).len(), 1);
}

/// A worker's `task-finished` looks first among the tasks last sent to
/// it, a list of at most 1024: reports of tasks sent before those, in any
/// order, and reports for tasks it no longer runs, are found (or ignored)
/// as before.
#[test]
fn reports_beyond_the_recent_sends_and_stale_ones_are_handled_by_key() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["inc"], 1500);
    let c = sim.client();
    let specs: Vec<TaskSpec> = (0..1500)
        .map(|i| spec(&format!("inc-{i}"), "inc", vec![]))
        .collect();
    let wanted: Vec<String> = specs.iter().map(|t| t.key.to_string()).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    sim.submit(c, 1, specs, &wanted);
    let sent: Vec<String> = compute_keys(&sim.recv(w))
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(sent.len(), 1500);
    // The oldest first (out of the hints), then the rest newest first.
    for k in sent[..400].iter().chain(sent[400..].iter().rev()) {
        sim.finish(w, k, 1);
    }
    assert_eq!(finished(&sim.recv(c)).len(), 1500);
    // A report for a task it was never sent, and one reported twice,
    // change nothing.
    sim.finish(w, "inc-7", 1);
    sim.finish(w, "no-such-key", 1);
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.state("inc-7"), Some("memory"));
}

#[test]
fn a_worker_gets_at_most_twice_its_threads_and_the_rest_queue_in_priority_order() {
    let mut sim = Sim::new();
    let c = sim.client();
    let mut tasks: Vec<TaskSpec> = (0..6)
        .map(|i| spec(&format!("t{i}"), "f", vec![]))
        .collect();
    tasks[4].priority = Some(10);
    sim.submit(c, 1, tasks, &["t0", "t1", "t2", "t3", "t4", "t5"]);
    assert_eq!(sim.state("t0"), Some("no-worker"));
    let w = sim.worker("w", &["f"], 1);
    // 1 thread + queue depth 1: two in flight, the high-priority one first.
    assert_eq!(compute_keys(&sim.recv(w)), ["t4", "t0"]);
    assert_eq!(computes(&sim.mail_peek(w)).len(), 0);
    for k in ["t1", "t2", "t3", "t5"] {
        assert_eq!(sim.state(k), Some("queued"));
    }
    sim.finish(w, "t4", 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["t1"]);
    sim.finish(w, "t0", 1);
    sim.finish(w, "t1", 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["t2", "t3"]);
}

#[test]
fn a_worker_running_tiny_tasks_is_given_more_at_once() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let tasks: Vec<TaskSpec> = (0..300)
        .map(|i| spec(&format!("t-{i}"), "f", vec![]))
        .collect();
    let wanted: Vec<String> = (0..300).map(|i| format!("t-{i}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(|s| s.as_str()).collect();
    // One task group (`t`): durations are estimated per group.
    sim.submit(c, 1, tasks, &wanted);
    assert_eq!(
        compute_keys(&sim.recv(w)).len(),
        2,
        "unknown durations: 2 per thread"
    );
    let report = |sim: &mut Sim, key: &str, us: u64| {
        sim.send(
            w,
            TaskFinished {
                key: key.into(),
                nbytes: 1,
                duration_us: Some(us),
                value: None,
            },
        );
    };
    // 10 us tasks: 1 ms of queued work is 100 (under the cap of 256), plus
    // the running one.
    report(&mut sim, "t-0", 10);
    assert_eq!(compute_keys(&sim.recv(w)).len(), 100);
    assert_eq!(
        sim.s
            .tasks
            .iter()
            .filter(|(_, t)| t.state().name() == "processing")
            .count(),
        101
    );
    // Long tasks shrink it back to one queued per thread as the average grows.
    for i in 1..=100 {
        report(&mut sim, &format!("t-{i}"), 1_000_000);
    }
    let w_state = sim
        .s
        .workers
        .iter()
        .next()
        .map(|(_, w)| w.slots(&sim.s.durations));
    assert_eq!(w_state, Some(2));
}

impl Sim {
    /// Two workers and a client; task `a` runs on w1, then w1 goes silent
    /// for 12 s (past the heartbeat timeout) while w2 keeps beating.
    pub(super) fn with_a_running_on_w1_and_w1_gone_silent() -> (Sim, ConnId, ConnId, ConnId) {
        let mut sim = Sim::new();
        let w1 = sim.worker("w1", &["f"], 1);
        let w2 = sim.worker("w2", &["f"], 1);
        let c = sim.client();
        sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
        assert_eq!(compute_keys(&sim.recv(w1)), ["a"]);
        for _ in 0..12 {
            sim.advance(Duration::from_secs(1));
            sim.send(w2, Heartbeat { metrics: None });
        }
        (sim, w1, w2, c)
    }

    pub(super) fn mail_peek(&self, c: ConnId) -> Vec<Message> {
        self.mail
            .get(&c)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[test]
fn graph_order_is_depth_first_so_branches_finish_before_the_next_starts() {
    let mut sim = Sim::new();
    let c = sim.client();
    // total = sum(a0', a1', a2') with ai' = inc(ai).
    let mut tasks = vec![spec("total", "sum", vec![r("b0"), r("b1"), r("b2")])];
    for i in 0..3 {
        tasks.push(spec(&format!("a{i}"), "inc", vec![Value::from(i)]));
        tasks.push(spec(&format!("b{i}"), "inc", vec![r(&format!("a{i}"))]));
    }
    sim.submit(c, 1, tasks, &["total"]);
    let w = sim.worker("w", &["inc", "sum"], 1);
    assert_eq!(compute_keys(&sim.recv(w)), ["a0", "a1"]);
    sim.finish(w, "a0", 1);
    // b0 comes before a2: its branch finishes first.
    assert_eq!(compute_keys(&sim.recv(w)), ["b0"]);
}
