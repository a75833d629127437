//! Stories of what the scheduler shows of itself: the snapshot's task
//! groups, workers, clients and stream; why tasks wait; the operator's log.

use super::*;

fn finish_in(sim: &mut Sim, w: ConnId, key: &str, duration_us: u64) {
    sim.send(
        w,
        TaskFinished {
            key: key.into(),
            nbytes: 8,
            duration_us: Some(duration_us),
            value: None,
        },
    );
}

fn logs(sim: &mut Sim) -> Vec<LogRecord> {
    std::iter::from_fn(|| sim.s.poll_log()).collect()
}

fn events(records: &[LogRecord]) -> Vec<&'static str> {
    records.iter().map(|r| r.event).collect()
}

#[test]
fn the_snapshot_counts_task_groups_by_state_with_totals_and_the_stream() {
    let mut sim = Sim::new();
    let w = sim.worker("w1", &["inc", "add", "fail"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("load-a-1", "inc", vec![Value::from(1)]),
            spec("load-a-2", "inc", vec![Value::from(2)]),
            spec("sum", "add", vec![r("load-a-1"), r("load-a-2")]),
            spec("bad-1", "fail", vec![]),
        ],
        &["sum", "bad-1"],
    );
    let snap = sim.s.snapshot();
    let group = |s: &crate::state::observe::StateSnapshot, name: &str| {
        s.groups
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("no group {name} in {:?}", s.groups))
            .clone()
    };
    let load = group(&snap, "load-a");
    assert_eq!(load.states["processing"] + load.states["queued"], 2);
    assert_eq!(group(&snap, "sum").states["waiting"], 1);
    assert_eq!(snap.tasks.values().sum::<u64>(), 4);
    assert_eq!(snap.clients.len(), 1);
    assert_eq!(snap.clients[0].wants, 2);
    assert_eq!(snap.clients[0].graphs[0].tasks, 4);
    assert_eq!(snap.clients[0].graphs[0].group, "load-a");
    assert_eq!(snap.counters.tasks_submitted_total, 4);

    finish_in(&mut sim, w, "load-a-1", 1_500_000);
    finish_in(&mut sim, w, "load-a-2", 500_000);
    finish_in(&mut sim, w, "sum", 10);
    sim.fail(w, "bad-1", "no");
    let snap = sim.s.snapshot();
    let load = group(&snap, "load-a");
    assert_eq!(load.finished_total, 2);
    assert!((load.compute_seconds_total - 2.0).abs() < 1e-9);
    // The inputs were freed once `sum` was done, kept released as its
    // lineage.
    assert_eq!(load.states["released"], 2);
    assert_eq!(group(&snap, "sum").states["memory"], 1);
    assert_eq!(group(&snap, "bad").erred_total, 1);
    let stream_keys: Vec<Option<&str>> = snap.stream.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(
        stream_keys,
        [Some("load-a-1"), Some("load-a-2"), Some("sum")]
    );
    assert_eq!(snap.stream[0].group, "load-a");
    assert_eq!(snap.stream_total, 3);
    // Once released, the tasks are forgotten: the stream keeps their
    // group, not their key, and the groups count nothing kept.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["sum", "bad-1"]),
        },
    );
    let later = sim.s.snapshot();
    assert!(later.stream.iter().all(|r| r.key.is_none()));
    assert_eq!(later.tasks.values().sum::<u64>(), 0);
    assert_eq!(group(&later, "load-a").finished_total, 2);
    assert_eq!(snap.workers[0].name, "w1");
    assert_eq!(snap.workers[0].stored_keys, 1);

    // A heartbeat's metrics show on its worker.
    sim.send(
        w,
        Heartbeat {
            metrics: Some(Metrics {
                executing: 1,
                ready: 3,
                stored_keys: 1,
                stored_bytes: 8,
                spilled_bytes: None,
                paused: None,
                spill_error: None,
                transfer_us: None,
                transfer_bytes: None,
                transfer_local_bytes: None,
            }),
        },
    );
    let snap = sim.s.snapshot();
    assert_eq!(snap.workers[0].executing, Some(1));
    assert_eq!(snap.workers[0].ready, Some(3));
    assert_eq!(snap.reported_bytes, 8);
}

#[test]
fn why_a_task_waits_names_what_is_missing() {
    let mut sim = Sim::new();
    let c = sim.client();
    let mut gpu = spec("gpu-1", "inc", vec![Value::from(1)]);
    gpu.resources = Some([("GPU".to_string(), 1.0)].into());
    let mut pinned = spec("pinned-1", "inc", vec![Value::from(1)]);
    pinned.workers = Some(vec!["big".into()]);
    sim.submit(
        c,
        1,
        vec![
            spec("x-1", "inc", vec![Value::from(1)]),
            spec("y-1", "inc", vec![r("x-1")]),
            spec("odd-1", "mystery", vec![]),
            gpu,
            pinned,
        ],
        &["y-1", "odd-1", "gpu-1", "pinned-1"],
    );
    let reason = |sim: &Sim, key: &str| {
        let t = sim.s.task_id(key).expect("a known key");
        sim.s.wait_reason(t).map(|r| r.code)
    };
    assert_eq!(reason(&sim, "x-1"), Some("no-workers"));
    assert_eq!(reason(&sim, "y-1"), Some("dependencies"));
    let w = sim.worker("small", &["inc"], 1);
    assert_eq!(reason(&sim, "odd-1"), Some("no-function"));
    assert_eq!(reason(&sim, "gpu-1"), Some("no-resources"));
    assert_eq!(reason(&sim, "pinned-1"), Some("no-allowed-worker"));
    let detail = sim.s.task_detail("gpu-1").unwrap();
    assert_eq!(detail["waiting"]["reason"], "no-resources");
    assert!(detail["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("GPU=1"));
    assert_eq!(detail["wanted_by_clients"].as_array().unwrap().len(), 1);
    assert_eq!(sim.s.task_detail("nothing"), None);

    // Pages: three no-worker tasks, two per page, then the end.
    let first = sim.s.waiting_page(0, 2, Some("no-worker"));
    assert_eq!(first.tasks.len(), 2);
    let next = first.next.expect("a second page");
    let second = sim.s.waiting_page(next, 2, Some("no-worker"));
    let mut all: Vec<String> = first
        .tasks
        .iter()
        .chain(&second.tasks)
        .map(|t| t.key.to_string())
        .collect();
    all.sort();
    assert_eq!(all, ["gpu-1", "odd-1", "pinned-1"]);
    assert!(second.tasks.iter().all(|t| t.reason.needs_a_worker()));
    let everything = sim.s.waiting_page(0, 100, None);
    assert_eq!(everything.next, None);
    assert_eq!(everything.tasks.len(), 4, "{everything:?}");

    // x-1 runs; a second inc queues behind it on the one thread.
    sim.submit(
        c,
        2,
        vec![spec("z-1", "inc", vec![Value::from(3)])],
        &["z-1"],
    );
    sim.submit(
        c,
        3,
        vec![spec("z-2", "inc", vec![Value::from(4)])],
        &["z-2"],
    );
    assert_eq!(reason(&sim, "x-1"), None);
    assert_eq!(reason(&sim, "z-2"), Some("busy"));
    let _ = sim.recv(w);

    // A task's page: where it runs, who waits on it; then its error.
    let x = sim.s.task_detail("x-1").unwrap();
    assert_eq!(x["state"], "processing");
    assert_eq!(x["processing_on"]["name"], "small");
    assert_eq!(x["dependents"]["count"], 1);
    assert_eq!(x["dependents"]["shown"][0]["key"], "y-1");
    sim.fail(w, "x-1", "no good");
    let x = sim.s.task_detail("x-1").unwrap();
    assert_eq!(x["state"], "erred");
    assert_eq!(
        (&x["error"]["type"], &x["error"]["message"]),
        (&"ValueError".into(), &"no good".into())
    );
    assert_eq!(sim.s.task_detail("y-1").unwrap()["error"]["origin"], "x-1");
}

#[test]
fn operators_get_one_line_per_event_they_care_about() {
    let mut sim = Sim::new();
    let w1 = sim.worker("w1", &["inc"], 2);
    let w2 = sim.worker("w2", &["inc"], 1);
    let c = sim.client();
    // A stranger that does not say hello.
    let bad = sim.connect();
    sim.send(bad, Heartbeat { metrics: None });
    let records = logs(&mut sim);
    assert_eq!(
        events(&records),
        [
            "worker-joined",
            "worker-joined",
            "client-connected",
            "connection-refused"
        ]
    );
    assert!(records[0].message.contains("w1") && records[0].message.contains("2 threads"));
    assert!(records[3].message.contains("3002 bad-handshake"));

    // Many tasks err: ten lines, then one summary later; finishing tasks
    // logs nothing.
    let tasks: Vec<TaskSpec> = (0..30)
        .map(|i| spec(&format!("t-{i}"), "inc", vec![Value::from(i)]))
        .collect();
    let wanted: Vec<String> = (0..30).map(|i| format!("t-{i}")).collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    sim.submit(c, 1, tasks, &wanted);
    loop {
        let mut sent: Vec<(ConnId, String)> = Vec::new();
        for w in [w1, w2] {
            let got = sim.recv(w);
            sent.extend(computes(&got).iter().map(|m| (w, m.key.to_string())));
        }
        if sent.is_empty() {
            break;
        }
        for (w, k) in sent {
            sim.fail(w, &k, "boom");
        }
    }
    let records = logs(&mut sim);
    assert_eq!(events(&records), ["task-erred"; 10]);
    // A worker that closes leaves; one that goes silent is declared dead.
    sim.send(
        w1,
        Close {
            reason: None,
            reconnect: None,
        },
    );
    sim.advance(Duration::from_secs(11));
    sim.close(c);
    let records = logs(&mut sim);
    assert!(records
        .iter()
        .any(|r| r.event == "tasks-erred" && r.message.starts_with("20 more tasks erred")));
    let got = events(&records);
    assert!(got.contains(&"worker-left"), "{got:?}");
    assert!(got.contains(&"worker-lost"), "{got:?}");
    assert!(got.contains(&"client-left"), "{got:?}");
    let _ = w2;
    let dead = records.iter().find(|r| r.event == "worker-lost").unwrap();
    assert!(
        dead.message.contains("heartbeat timeout"),
        "{}",
        dead.message
    );
    let snap = sim.s.snapshot();
    assert_eq!(snap.counters.workers_removed["closed"], 1);
    assert_eq!(snap.counters.workers_removed["timeout"], 1);
    assert_eq!(snap.counters.connections_refused["bad-handshake"], 1);
    assert_eq!(snap.counters.clients_removed, 1);
}

fn waiting_events(messages: &[Message]) -> Vec<&KeyWaiting> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::KeyWaiting(k) => Some(k),
            _ => None,
        })
        .collect()
}

/// A client as dask-rs's: dask/1.1 with the feature `key-waiting` (and
/// the others it lists).
fn client_with_key_waiting(sim: &mut Sim) -> ConnId {
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Client, None));
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::Hello(h)] if h.features.as_ref().is_some_and(|f| f.iter().any(|f| f == "key-waiting"))),
        "{got:?}"
    );
    c
}

#[test]
fn a_client_is_told_once_why_its_key_waits_and_it_runs_when_a_worker_can() {
    let mut sim = Sim::new();
    let c = client_with_key_waiting(&mut sim);
    let quiet = sim.client();
    sim.submit(
        c,
        7,
        vec![spec("x", "fft", vec![]), spec("y", "inc", vec![r("x")])],
        &["y"],
    );
    sim.submit(quiet, 1, vec![], &["y"]);
    let got = sim.recv(c);
    let told = waiting_events(&got);
    assert_eq!(told.len(), 1, "{got:?}");
    assert_eq!(told[0].key.as_str(), "y");
    assert_eq!(told[0].task.as_ref().map(Key::as_str), Some("x"));
    assert_eq!(told[0].reason, "no-workers");
    assert_eq!(told[0].request, Some(7));
    assert!(waiting_events(&sim.recv(quiet)).is_empty());

    // A worker without the function changes the reason, not the want: no
    // second event.
    let _w1 = sim.worker("w1", &["inc"], 1);
    assert!(waiting_events(&sim.recv(c)).is_empty());
    let t = sim.s.task_id("x").expect("x is known");
    assert_eq!(sim.s.wait_reason(t).unwrap().code, "no-function");

    // A second client wanting y is told too, for its own want.
    let c2 = client_with_key_waiting(&mut sim);
    sim.submit(c2, 3, vec![], &["y"]);
    let told = sim.recv(c2);
    assert_eq!(waiting_events(&told).len(), 1, "{told:?}");

    // A worker that offers fft joins: x and then y run.
    let w2 = sim.worker("w2", &["fft", "inc"], 1);
    let sent = sim.recv(w2);
    assert_eq!(compute_keys(&sent), ["x"]);
    sim.finish(w2, "x", 8);
    let w_y = if compute_keys(&sim.recv(w2)) == ["y"] {
        w2
    } else {
        _w1
    };
    sim.finish(w_y, "y", 8);
    assert_eq!(finished(&sim.recv(c)), ["y"]);
}

#[test]
fn waiting_keys_pages_the_tasks_that_wait_for_clients_that_asked_for_it() {
    let mut sim = Sim::new();
    let c = client_with_key_waiting(&mut sim);
    let tasks: Vec<TaskSpec> = (0..5)
        .map(|i| spec(&format!("job-{i}"), "gpu", vec![]))
        .collect();
    sim.submit(c, 1, tasks, &["job-0", "job-1", "job-2", "job-3", "job-4"]);
    assert_eq!(waiting_events(&sim.recv(c)).len(), 5);
    let mut seen = Vec::new();
    let mut cursor = None;
    for request in 10.. {
        sim.send(
            c,
            WaitingKeys {
                request,
                state: Some("no-worker".into()),
                cursor,
                limit: Some(2),
            },
        );
        let got = sim.recv(c);
        let [Message::WaitingKeysReply(page)] = &got[..] else {
            panic!("{got:?}");
        };
        assert_eq!(page.request, request);
        assert!(page.tasks.len() <= 2);
        seen.extend(
            page.tasks
                .iter()
                .map(|t| (t.key.to_string(), t.reason.clone())),
        );
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|(_, reason)| reason == "no-workers"));
    // A state that is not a waiting one is refused, not fatal.
    sim.send(
        c,
        WaitingKeys {
            request: 99,
            state: Some("memory".into()),
            cursor: None,
            limit: None,
        },
    );
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!((e.code, e.fatal, e.request), (2003, false, Some(99)));
    // A client that did not list the feature may not ask.
    let quiet = sim.client();
    sim.send(
        quiet,
        WaitingKeys {
            request: 1,
            state: None,
            cursor: None,
            limit: None,
        },
    );
    assert_eq!(error_of(&sim.recv(quiet)).code, 2004);
    assert!(sim.is_closed(quiet));
}

/// A worker's heartbeat with these transfer totals (and an idle load).
fn transfer_heartbeat(us: Option<u64>, bytes: Option<u64>) -> Heartbeat {
    Heartbeat {
        metrics: Some(Metrics {
            executing: 0,
            ready: 0,
            stored_keys: 0,
            stored_bytes: 0,
            spilled_bytes: None,
            paused: None,
            spill_error: None,
            transfer_us: us,
            transfer_bytes: bytes,
            transfer_local_bytes: None,
        }),
    }
}

#[test]
fn transfer_totals_add_up_over_workers_and_never_go_down_when_one_leaves() {
    let mut sim = Sim::new();
    let a = sim.worker("a", &["inc"], 1);
    let b = sim.worker("b", &["inc"], 1);
    let totals = |sim: &Sim| {
        let t = sim.s.snapshot().transfers;
        (t.us, t.bytes)
    };
    assert_eq!(totals(&sim), (0, 0));
    sim.send(a, transfer_heartbeat(Some(2_000_000), Some(5_000)));
    sim.send(b, transfer_heartbeat(Some(500_000), Some(700)));
    assert_eq!(totals(&sim), (2_500_000, 5_700));
    assert_eq!(sim.s.snapshot().workers[0].transfers.bytes, 5_000);

    // A heartbeat saying less (or nothing) does not lower a total.
    sim.send(a, transfer_heartbeat(Some(1), None));
    assert_eq!(totals(&sim), (2_500_000, 5_700));
    sim.send(a, transfer_heartbeat(Some(3_000_000), Some(6_000)));
    assert_eq!(totals(&sim), (3_500_000, 6_700));

    // `a` leaves (lost): its last totals stay in the cluster's.
    sim.close(a);
    assert_eq!(sim.s.snapshot().workers.len(), 1);
    assert_eq!(totals(&sim), (3_500_000, 6_700));
    // It comes back as a new registration, counting from 0 again.
    let a2 = sim.worker("a", &["inc"], 1);
    sim.send(a2, transfer_heartbeat(Some(100), Some(10)));
    assert_eq!(totals(&sim), (3_500_100, 6_710));

    let published = crate::dashboard::Published {
        address: String::new(),
        state: sim.s.snapshot(),
        event_loop: Default::default(),
        at: None,
    };
    let text = crate::dashboard::render_metrics(&published, std::time::Instant::now());
    assert!(
        text.contains("# TYPE dask_worker_transfer_seconds_total counter\ndask_worker_transfer_seconds_total 3.5001\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE dask_worker_transfer_bytes_total counter\ndask_worker_transfer_bytes_total 6710\n"),
        "{text}"
    );
}

#[test]
fn a_result_lost_with_its_only_worker_counts_in_its_groups_lost_total() {
    let mut sim = Sim::new();
    let w = sim.worker("w1", &["inc"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("x-1", "inc", vec![Value::from(1)])],
        &["x-1"],
    );
    finish_in(&mut sim, w, "x-1", 10);
    let lost = |sim: &Sim| {
        let snap = sim.s.snapshot();
        snap.groups
            .iter()
            .find(|g| g.name == "x")
            .map(|g| (g.finished_total, g.lost_total))
    };
    assert_eq!(lost(&sim), Some((1, 0)));
    sim.close(w);
    assert_eq!(lost(&sim), Some((1, 1)), "its only copy went with w1");
}
