//! Tasks: the ready queue, runs, steal, free-keys.

use super::*;

#[test]
fn a_task_with_literal_args_runs_and_finishes() {
    let (mut w, now) = worker(1);
    w.handle_scheduler_message(now, compute("x", vec![Value::from(1)], &[]));
    let out = jobs(drain(&mut w));
    assert_eq!(out.len(), 1);
    assert_eq!(job_key(&w, &out[0]), "x");
    assert_eq!(out[0].args, raw(Value::Array(vec![Value::from(1)])));
    w.handle_task_done(now, done(out[0].run_id, Value::from(2)));
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::TaskFinished(TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: Some(7),
            value: None,
        })]
    );
    assert_eq!(w.value("x").unwrap().as_bytes(), &[2]);
    assert_eq!(w.metrics().stored_keys, 1);
    assert_eq!(w.metrics().stored_bytes, 1);
}

#[test]
fn unknown_function_errs_without_running() {
    let (mut w, now) = worker(1);
    let mut m = compute("x", vec![], &[]);
    if let Message::ComputeTask(ct) = &mut m {
        ct.function = "nope".into();
    }
    w.handle_scheduler_message(now, m);
    let out = drain(&mut w);
    assert!(matches!(
        to_scheduler(&out)[..],
        [Message::TaskErred(TaskErred { error_type, .. })] if error_type == "UnknownFunction"
    ));
    assert!(jobs(out).is_empty());
}

#[test]
fn errors_and_too_large_results_are_reported_as_task_erred() {
    let (mut w, now) = worker(2);
    w.config.value_bytes_max = 10;
    w.handle_scheduler_message(now, compute("a", vec![], &[]));
    w.handle_scheduler_message(now, compute("b", vec![], &[]));
    let out = jobs(drain(&mut w));
    w.handle_task_done(
        now,
        TaskDone {
            run_id: out[0].run_id,
            result: Err(TaskError::new("Panic", "boom")),
            duration_us: 1,
        },
    );
    w.handle_task_done(now, done(out[1].run_id, Value::Binary(vec![0; 11])));
    let out = drain(&mut w);
    let types: Vec<&str> = to_scheduler(&out)
        .iter()
        .map(|m| match m {
            Message::TaskErred(e) => e.error_type.as_str(),
            _ => "other",
        })
        .collect();
    assert_eq!(types, vec!["Panic", "ValueTooLarge"]);
    assert!(w.value("b").is_none());
}

#[test]
fn never_more_than_nthreads_and_ready_order_is_priority_then_arrival() {
    let (mut w, now) = worker(2);
    for (key, priority) in [("a", 0), ("b", 5), ("c", 1), ("d", 5), ("e", 0)] {
        w.handle_scheduler_message(now, with_priority(compute(key, vec![], &[]), priority));
    }
    let first = jobs(drain(&mut w));
    let keys: Vec<String> = first.iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(keys, vec!["b", "d"]);
    assert_eq!(w.running(), 2);
    assert_eq!(w.metrics().executing, 2);
    assert_eq!(w.metrics().ready, 3);
    let mut order = Vec::new();
    let mut pending = first;
    while let Some(job) = pending.pop() {
        w.handle_task_done(now, done(job.run_id, Value::Nil));
        let next = jobs(drain(&mut w));
        assert!(w.running() <= 2);
        order.extend(next.iter().map(|j| job_key(&w, j)));
        pending.extend(next);
    }
    assert_eq!(order, vec!["c", "a", "e"]);
}

#[test]
fn free_keys_drops_data_and_discards_a_running_result() {
    let (mut w, now) = worker(1);
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 4,
            data: [(Key::from("p"), raw(Value::from("v")))]
                .into_iter()
                .collect(),
        }),
    );
    w.handle_scheduler_message(now, compute("x", vec![], &[]));
    w.handle_scheduler_message(now, compute("y", vec![], &[]));
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::DataStored(DataStored {
            request: 4,
            nbytes: [(Key::from("p"), 2)].into_iter().collect()
        })]
    );
    let running = jobs(out);
    assert_eq!(job_key(&w, &running[0]), "x");
    w.handle_scheduler_message(
        now,
        Message::FreeKeys(FreeKeys {
            keys: ["p", "x", "y"].into(),
        }),
    );
    let out = drain(&mut w);
    assert_eq!(withdrawals(&out), vec![running[0].run_id]);
    assert_eq!(
        out.len(),
        1,
        "y was dropped, x is withdrawn if it has not started"
    );
    w.handle_withdrawn(now, running[0].run_id, false);
    assert!(drain(&mut w).is_empty(), "x started: it holds the thread");
    w.handle_task_done(now, done(running[0].run_id, Value::from(1)));
    assert!(
        drain(&mut w).is_empty(),
        "no task-finished for a freed task"
    );
    w.handle_scheduler_message(
        now,
        Message::GetData(GetData {
            request: 9,
            keys: vec!["p".into(), "x".into()],
        }),
    );
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::Data(Data {
            request: 9,
            data: BTreeMap::new(),
            missing: vec!["p".into(), "x".into()]
        })]
    );
    assert_eq!(w.metrics().stored_bytes, 0);
}

#[test]
fn steal_takes_only_tasks_that_have_not_started() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("run", vec![], &[]));
    w.handle_scheduler_message(now, compute("queued", vec![], &[]));
    w.handle_scheduler_message(now, compute("fetching", vec![r("d")], &[("d", &[PEER_A])]));
    let out = drain(&mut w);
    let running = jobs(out);
    for (key, stolen) in [("queued", true), ("fetching", true), ("zzz", false)] {
        w.handle_scheduler_message(now, Message::StealRequest(StealRequest { key: key.into() }));
        let out = drain(&mut w);
        assert_eq!(
            to_scheduler(&out),
            vec![&Message::StealResponse(StealResponse {
                key: key.into(),
                stolen
            })]
        );
    }
    // Out on the executor: the executor decides (here: already started).
    w.handle_scheduler_message(
        now,
        Message::StealRequest(StealRequest { key: "run".into() }),
    );
    let out = drain(&mut w);
    assert_eq!(withdrawals(&out), vec![running[0].run_id]);
    assert!(
        to_scheduler(&out).is_empty(),
        "the answer waits for the executor"
    );
    w.handle_withdrawn(now, running[0].run_id, false);
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::StealResponse(StealResponse {
            key: "run".into(),
            stolen: false
        })]
    );
    w.handle_task_done(now, done(running[0].run_id, Value::Nil));
    let out = drain(&mut w);
    assert_eq!(to_scheduler(&out).len(), 1, "only run's task-finished");
    assert!(jobs(out).is_empty(), "the stolen task never runs");
}

#[test]
fn a_key_already_in_memory_is_reported_finished_again() {
    let (mut w, now) = worker(1);
    w.handle_scheduler_message(now, compute("x", vec![], &[]));
    let job = jobs(drain(&mut w)).remove(0);
    w.handle_task_done(now, done(job.run_id, Value::from(300)));
    let _ = drain(&mut w);
    w.handle_scheduler_message(now, compute("x", vec![], &[]));
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::TaskFinished(TaskFinished {
            key: "x".into(),
            nbytes: 3,
            duration_us: None,
            value: None,
        })]
    );
    assert!(jobs(out).is_empty());
}

#[test]
fn resources_limit_concurrency_and_impossible_asks_err() {
    let functions = ["f".to_string()].into_iter().collect();
    let now = Timestamp::ZERO;
    let mut config = WorkerStateConfig::new(SCHEDULER_ADDRESS, "w", ME, 4, functions);
    config.dispatch_ahead = 0;
    config.resources.insert("GPU".into(), 1.0);
    let mut w = register(WorkerState::new(config, now), now);
    let gpu = |key: &str, amount: f64| {
        let mut m = compute(key, vec![], &[]);
        if let Message::ComputeTask(ct) = &mut m {
            ct.resources = Some([("GPU".to_string(), amount)].into_iter().collect());
        }
        m
    };
    w.handle_scheduler_message(now, gpu("a", 1.0));
    w.handle_scheduler_message(now, gpu("b", 1.0));
    w.handle_scheduler_message(now, compute("c", vec![], &[]));
    w.handle_scheduler_message(now, gpu("huge", 2.0));
    let out = drain(&mut w);
    assert!(matches!(
        to_scheduler(&out)[..],
        [Message::TaskErred(TaskErred { error_type, .. })] if error_type == "ResourceError"
    ));
    let started: Vec<String> = jobs(out).iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(started, vec!["a", "c"]);
    w.handle_task_done(now, done(0, Value::Nil));
    let started: Vec<String> = jobs(drain(&mut w)).iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(started, vec!["b"]);
}

#[test]
fn runs_are_dispatched_ahead_and_unstarted_ones_can_be_withdrawn() {
    let functions = ["f".to_string()].into_iter().collect();
    let now = Timestamp::ZERO;
    let mut config = WorkerStateConfig::new(SCHEDULER_ADDRESS, "w", ME, 1, functions);
    assert_eq!(config.dispatch_ahead, DISPATCH_AHEAD_MIN);
    config.dispatch_ahead = 1;
    let mut w = register(WorkerState::new(config, now), now);
    for key in ["a", "b", "c"] {
        w.handle_scheduler_message(now, compute(key, vec![], &[]));
    }
    let out = jobs(drain(&mut w));
    let keys: Vec<String> = out.iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(keys, vec!["a", "b"], "nthreads 1 + 1 queued ahead");
    assert_eq!(w.metrics().executing, 1);
    assert_eq!(w.metrics().ready, 2);

    // b is queued on the executor, not started: a steal takes it back.
    w.handle_scheduler_message(now, Message::StealRequest(StealRequest { key: "b".into() }));
    let out = drain(&mut w);
    assert_eq!(withdrawals(&out), vec![1], "b is run 1");
    w.handle_withdrawn(now, 1, true);
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::StealResponse(StealResponse {
            key: "b".into(),
            stolen: true
        })]
    );
    let next: Vec<String> = jobs(out).iter().map(|j| job_key(&w, j)).collect();
    assert_eq!(
        next,
        vec!["c"],
        "the freed slot goes to the next ready task"
    );

    // Freeing a queued run withdraws it too; no reply to the scheduler.
    w.handle_scheduler_message(now, Message::FreeKeys(FreeKeys { keys: ["c"].into() }));
    let out = drain(&mut w);
    assert_eq!(withdrawals(&out), vec![2]);
    w.handle_withdrawn(now, 2, true);
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.running(), 1);
    // A completion of a withdrawn run is ignored.
    w.handle_task_done(now, done(2, Value::Nil));
    assert!(drain(&mut w).is_empty());
}

#[test]
fn results_under_the_schedulers_inline_bound_go_with_task_finished() {
    let (mut w, now) = worker(2);
    // The scheduler's bound (dask/1.1 worker-registered inline_bytes_max).
    w.inline_bytes_max = Some(8);
    w.handle_scheduler_message(now, compute("small", vec![], &[]));
    w.handle_scheduler_message(now, compute("large", vec![], &[]));
    let out = jobs(drain(&mut w));
    w.handle_task_done(now, done(out[0].run_id, Value::from(7)));
    w.handle_task_done(now, done(out[1].run_id, Value::Binary(vec![0; 20])));
    let out = drain(&mut w);
    let inline: Vec<(&str, Option<&RawValue>)> = to_scheduler(&out)
        .iter()
        .filter_map(|m| match m {
            Message::TaskFinished(f) => Some((f.key.as_str(), f.value.as_ref())),
            _ => None,
        })
        .collect();
    let seven = RawValue::from_value(&Value::from(7));
    assert_eq!(inline, vec![("small", Some(&seven)), ("large", None)]);
    // Both are held as any result.
    assert!(w.value("small").is_some() && w.value("large").is_some());
}
