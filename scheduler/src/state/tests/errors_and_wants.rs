//! Errors, retries, refused graphs, arguments, and what clients want,
//! share, cancel and drop.

use super::*;

#[test]
fn an_error_reaches_every_dependent_with_its_cause() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![
            spec("a", "f", vec![]),
            spec("b", "f", vec![r("a")]),
            spec("c", "f", vec![r("b")]),
        ],
        &["a", "c"],
    );
    sim.recv(w);
    sim.fail(w, "a", "boom");
    let got = sim.recv(c);
    assert_eq!(got.len(), 2, "{got:?}");
    for m in &got {
        let Message::KeyErred(e) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (e.error_type.as_str(), e.message.as_str()),
            ("ValueError", "boom")
        );
        match e.key.as_str() {
            "a" => assert_eq!(e.cause, None),
            "c" => assert_eq!(e.cause, Some(Key::from("a"))),
            other => panic!("event for {other}"),
        }
    }
    // key-erred does not end a want: the erred keys stay while wanted (b
    // between them), so a task built on one later errs at once, with the
    // cause, instead of being refused as unknown.
    assert_eq!(
        [sim.state("a"), sim.state("b"), sim.state("c")],
        [Some("erred"); 3]
    );
    sim.submit(c, 2, vec![spec("d", "f", vec![r("c")])], &["d"]);
    let got = sim.recv(c);
    let [Message::KeyErred(e)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (e.key.as_str(), e.message.as_str(), e.cause.as_ref()),
        ("d", "boom", Some(&Key::from("a")))
    );
    let got = sim.recv(w);
    assert!(compute_keys(&got).is_empty(), "nothing runs: {got:?}");
    // Wanting an erred key again repeats its event.
    sim.submit(c, 3, vec![], &["a"]);
    assert!(matches!(&sim.recv(c)[..], [Message::KeyErred(e)] if e.key.as_str() == "a"));
    // Released, they are forgotten; submitting again computes again.
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["a", "c", "d"]),
        },
    );
    assert_eq!(sim.s.task_count(), 0);
    sim.submit(c, 4, vec![spec("a", "f", vec![])], &["a"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
}

#[test]
fn an_erred_key_is_kept_for_each_client_until_it_releases_it() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(c1, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.submit(c2, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.recv(w);
    sim.fail(w, "a", "boom");
    for c in [c1, c2] {
        assert!(matches!(&sim.recv(c)[..], [Message::KeyErred(e)] if e.key.as_str() == "a"));
    }
    sim.send(
        c1,
        ReleaseKeys {
            keys: key_list(&["a"]),
        },
    );
    assert_eq!(sim.state("a"), Some("erred"), "c2 still holds it");
    // A dataset holds it like a client.
    sim.send(
        c2,
        PublishDataset {
            request: 2,
            name: "failed".into(),
            keys: keys(&["a"]),
            overwrite: None,
        },
    );
    sim.close(c2);
    assert_eq!(sim.state("a"), Some("erred"));
    // Another client getting the dataset gets the error and wants the key.
    sim.send(
        c1,
        GetDataset {
            request: 3,
            name: "failed".into(),
        },
    );
    let got = sim.recv(c1);
    assert!(
        matches!(&got[..], [Message::Dataset(_), Message::KeyErred(e)] if e.key.as_str() == "a"),
        "{got:?}"
    );
    sim.send(
        c1,
        UnpublishDataset {
            request: 4,
            name: "failed".into(),
        },
    );
    assert_eq!(sim.state("a"), Some("erred"));
    // cancel-keys ends the want too, and says so.
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["a"]),
            force: None,
        },
    );
    let got = sim.recv(c1);
    assert!(
        matches!(&got[..], [Message::OkReply(_), Message::KeyCancelled(k)] if k.key.as_str() == "a"),
        "{got:?}"
    );
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn a_task_with_retries_runs_again_before_its_error_is_reported() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    let mut flaky = spec("flaky", "f", vec![]);
    flaky.retries = Some(1);
    sim.submit(c, 1, vec![flaky.clone()], &["flaky"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["flaky"]);
    sim.fail(w, "flaky", "once");
    assert_eq!(compute_keys(&sim.recv(w)), ["flaky"]);
    assert!(sim.recv(c).is_empty());
    sim.fail(w, "flaky", "twice");
    assert!(matches!(&sim.recv(c)[..], [Message::KeyErred(e)] if e.message == "twice"));
    // And a retry that succeeds reports success (once the failed key is
    // released, the same key is a new task).
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["flaky"]),
        },
    );
    sim.submit(c, 2, vec![flaky], &["flaky"]);
    sim.recv(w);
    sim.fail(w, "flaky", "once");
    sim.recv(w);
    sim.finish(w, "flaky", 3);
    assert_eq!(finished(&sim.recv(c)), ["flaky"]);
}

#[test]
fn a_refused_cycle_is_named_in_the_message() {
    let mut sim = Sim::new();
    sim.worker("w", &["f"], 1);
    let c = sim.client();
    let cases: Vec<(Vec<TaskSpec>, &str)> = vec![
        (
            vec![
                spec("root", "f", vec![]),
                spec("a", "f", vec![r("root"), r("b")]),
                spec("b", "f", vec![r("c")]),
                spec("c", "f", vec![r("a")]),
                spec("below", "f", vec![r("c")]),
            ],
            r#"cycle: "a" -> "b" -> "c" -> "a" (each depends on the next)"#,
        ),
        (
            vec![spec("me", "f", vec![r("me")])],
            r#"cycle: "me" -> "me" (a task that depends on itself)"#,
        ),
    ];
    for (request, (tasks, named)) in cases.into_iter().enumerate() {
        sim.submit(c, request as u64, tasks, &[]);
        let e = error_of(&sim.recv(c)).clone();
        assert_eq!(e.code, 4003);
        assert!(e.message.ends_with(named), "{}", e.message);
    }
    // A long cycle of long keys: the message stays short, `keys` has all.
    let long = |i: usize| format!("{}{i:03}", "k".repeat(200));
    let tasks: Vec<TaskSpec> = (0..100)
        .map(|i| spec(&long(i), "f", vec![r(&long((i + 1) % 100))]))
        .collect();
    sim.submit(c, 9, tasks, &[]);
    let e = error_of(&sim.recv(c)).clone();
    assert!(e.message.len() < 1500, "{}", e.message.len());
    assert!(
        e.message.contains("... (100 tasks on this cycle)"),
        "{}",
        e.message
    );
    assert_eq!(e.keys.map(|k| k.len()), Some(100));
}

#[test]
fn refused_graphs_change_nothing() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    // (graph, wanted, expected code, expected offending keys)
    type Case<'a> = (Vec<TaskSpec>, Vec<&'a str>, u32, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        // unknown reference (the good task in the same graph is refused too)
        (
            vec![spec("ok", "f", vec![]), spec("x", "f", vec![r("nope")])],
            vec!["x"],
            4001,
            vec!["nope"],
        ),
        // unknown wanted key
        (
            vec![spec("ok", "f", vec![])],
            vec!["ok", "ghost"],
            4001,
            vec!["ghost"],
        ),
        // the same key twice with different definitions
        (
            vec![spec("d", "f", vec![]), spec("d", "g", vec![])],
            vec!["d"],
            4002,
            vec!["d"],
        ),
        // a cycle, and a task hanging below it
        (
            vec![
                spec("ok", "f", vec![]),
                spec("p", "f", vec![r("q"), r("ok")]),
                spec("q", "f", vec![r("p")]),
                spec("below", "f", vec![r("q")]),
            ],
            vec!["below"],
            4003,
            vec!["p", "q"],
        ),
        // a cycle nothing outside it depends on (no sink above it)
        (
            vec![
                spec("ok", "f", vec![]),
                spec("a", "f", vec![r("b")]),
                spec("b", "f", vec![r("a")]),
            ],
            vec!["ok"],
            4003,
            vec!["a", "b"],
        ),
        // a task depending on itself
        (
            vec![spec("me", "f", vec![r("me")])],
            vec!["me"],
            4003,
            vec!["me"],
        ),
    ];
    for (request, (tasks, wanted, code, bad)) in cases.into_iter().enumerate() {
        sim.submit(c, request as u64, tasks, &wanted);
        let got = sim.recv(c);
        let e = error_of(&got);
        assert_eq!(e.code, code, "{e:?}");
        assert!(!e.fatal);
        assert_eq!(e.request, Some(request as u64));
        assert_eq!(e.keys, Some(keys(&bad)));
        assert!(
            e.message.contains(&format!("{:?}", bad[0])),
            "{}",
            e.message
        );
        assert_eq!(sim.s.task_count(), 0);
        assert!(sim.recv(w).is_empty());
        assert!(!sim.is_closed(c));
    }
    // args that are not an array, kwargs that are not a map: 2003, not fatal.
    let mut bad = spec("bad", "f", vec![]);
    bad.args = raw(Value::from(1));
    sim.submit(c, 9, vec![bad], &["bad"]);
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!(
        (e.code, e.fatal, e.keys),
        (2003, false, Some(keys(&["bad"])))
    );
    let mut bad = spec("bad", "f", vec![]);
    bad.kwargs = Some(raw(Value::Array(vec![])));
    sim.submit(c, 10, vec![bad], &["bad"]);
    assert_eq!(error_of(&sim.recv(c)).code, 2003);
    // A known key with another definition is a duplicate too.
    sim.submit(c, 11, vec![spec("k", "f", vec![])], &["k"]);
    sim.submit(c, 12, vec![spec("k", "f", vec![Value::from(1)])], &["k"]);
    assert_eq!(error_of(&sim.recv(c)).code, 4002);
}

#[test]
fn arguments_reach_the_worker_as_given_whether_or_not_the_record_holds_them() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 64);
    let c = sim.client();
    let long = "a-key-longer-than-the-twenty-one-bytes-held-in-place";
    let graph = |sim: &mut Sim, request: u64, last: Value| {
        sim.submit(
            c,
            request,
            vec![
                spec("a", "f", vec![]),
                spec(long, "f", vec![]),
                // Only references to its dependencies, in order: not held.
                spec("ab", "f", vec![r("a"), r(long)]),
                // The same dependency twice, a reference and a value, a
                // dependency defined after it: held as given.
                spec("aa", "f", vec![r("a"), r("a")]),
                spec("a1", "f", vec![r("a"), Value::from(1)]),
                spec("later", "f", vec![r("z")]),
                spec("z", "f", vec![last]),
            ],
            &["ab", "aa", "a1", "later"],
        )
    };
    graph(&mut sim, 1, Value::from(2));
    let derived = |sim: &Sim, key: &str| {
        let t = sim.s.task_id(key).expect("a task");
        sim.s.tasks[t].args_are_dependencies()
    };
    assert!(derived(&sim, "ab"));
    for key in ["aa", "a1", "later", "a", "z"] {
        assert!(!derived(&sim, key), "{key}");
    }
    // The same graph again is the same definition; another is refused.
    graph(&mut sim, 2, Value::from(2));
    assert!(sim.recv(c).is_empty());
    graph(&mut sim, 3, Value::from(3));
    assert_eq!(error_of(&sim.recv(c)).code, ErrorCode::DuplicateKey as u32);
    sim.submit(c, 4, vec![spec("ab", "f", vec![r(long), r("a")])], &[]);
    assert_eq!(error_of(&sim.recv(c)).code, ErrorCode::DuplicateKey as u32);

    for k in ["a", long, "z"] {
        sim.finish(w, k, 1);
    }
    let mut sent: Vec<(String, RawValue)> = Vec::new();
    for m in sim.recv(w) {
        if let Message::ComputeTask(ct) = m {
            sent.push((ct.key.0, ct.args));
        }
    }
    sent.sort_by(|x, y| x.0.cmp(&y.0));
    let expected = [
        ("a", raw(Value::Array(vec![]))),
        (long, raw(Value::Array(vec![]))),
        ("a1", raw(Value::Array(vec![r("a"), Value::from(1)]))),
        ("aa", raw(Value::Array(vec![r("a"), r("a")]))),
        ("ab", raw(Value::Array(vec![r("a"), r(long)]))),
        ("later", raw(Value::Array(vec![r("z")]))),
        ("z", raw(Value::Array(vec![Value::from(2)]))),
    ];
    let sent: Vec<(&str, &RawValue)> = sent.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let expected: Vec<(&str, &RawValue)> = expected.iter().map(|(k, a)| (*k, a)).collect();
    assert_eq!(sent, expected);
}

#[test]
fn a_key_referenced_many_times_is_one_dependency() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 64);
    let c = sim.client();
    let leaves: Vec<String> = (0..40).map(|i| format!("leaf-{i}")).collect();
    let mut tasks: Vec<TaskSpec> = leaves.iter().map(|k| spec(k, "f", vec![])).collect();
    // Each leaf twice, in two nested lists: past the scanned dedup limit.
    let refs: Vec<Value> = leaves.iter().map(|k| r(k)).collect();
    tasks.push(spec(
        "all",
        "f",
        vec![Value::Array(refs.clone()), Value::Array(refs)],
    ));
    sim.submit(c, 1, tasks, &["all"]);
    assert_eq!(compute_keys(&sim.recv(w)).len(), 40);
    for k in &leaves {
        sim.finish(w, k, 1);
    }
    let got = sim.recv(w);
    let all = computes(&got);
    assert_eq!(all.len(), 1);
    let deps: Vec<&str> = all[0].who_has.keys().map(|k| k.as_str()).collect();
    let mut expected: Vec<&str> = leaves.iter().map(|k| k.as_str()).collect();
    expected.sort();
    assert_eq!(deps, expected);
}

#[test]
fn two_clients_share_a_key_and_its_data_lives_until_both_release_it() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(c1, 1, vec![spec("s", "f", vec![Value::from(1)])], &["s"]);
    sim.submit(c2, 1, vec![spec("s", "f", vec![Value::from(1)])], &["s"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["s"], "computed once");
    sim.finish(w, "s", 5);
    assert_eq!(finished(&sim.recv(c1)), ["s"]);
    assert_eq!(finished(&sim.recv(c2)), ["s"]);
    sim.send(
        c1,
        ReleaseKeys {
            keys: key_list(&["s"]),
        },
    );
    assert!(freed(&sim.recv(w)).is_empty());
    // A client joining later gets the event at once.
    let c3 = sim.client();
    sim.submit(c3, 1, vec![spec("s", "f", vec![Value::from(1)])], &["s"]);
    assert_eq!(finished(&sim.recv(c3)), ["s"]);
    sim.close(c3);
    sim.send(
        c2,
        Close {
            reason: None,
            reconnect: None,
        },
    );
    assert!(sim.is_closed(c2));
    assert_eq!(freed(&sim.recv(w)), ["s"]);
    assert_eq!(sim.s.task_count(), 0);
}

#[test]
fn a_key_wanted_twice_in_one_graph_gets_one_event() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    // New in this graph, listed twice: computed once, finished once.
    sim.submit(
        c,
        1,
        vec![spec("s", "f", vec![Value::from(1)])],
        &["s", "s"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["s"]);
    sim.finish(w, "s", 5);
    assert_eq!(finished(&sim.recv(c)), ["s"]);
    // Known and in memory, listed twice with a new task that refers to it:
    // one key-finished for it now, one for the new task later.
    sim.submit(c, 2, vec![spec("t", "f", vec![r("s")])], &["s", "t", "s"]);
    assert_eq!(finished(&sim.recv(c)), ["s"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["t"]);
    sim.finish(w, "t", 5);
    assert_eq!(finished(&sim.recv(c)), ["t"]);
}

#[test]
fn cancelling_frees_running_work_and_tells_the_client() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(
        c1,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    assert_eq!(compute_keys(&sim.recv(w)), ["a"]);
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["b", "unknown"]),
            force: None,
        },
    );
    assert!(matches!(&sim.recv(c1)[..], [Message::KeyCancelled(k)] if k.key.as_str() == "b"));
    assert_eq!(freed(&sim.recv(w)), ["a"]);
    assert_eq!(sim.s.task_count(), 0);
    // A late result of a cancelled task is ignored.
    sim.finish(w, "a", 1);
    assert_eq!(sim.s.task_count(), 0);

    // Without force, other clients keep the key; with force, nobody does.
    sim.submit(c1, 2, vec![spec("s", "f", vec![])], &["s"]);
    sim.submit(c2, 2, vec![spec("s", "f", vec![])], &["s"]);
    sim.recv(w);
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["s"]),
            force: None,
        },
    );
    assert_eq!(sim.recv(c1).len(), 1);
    assert_eq!(sim.state("s"), Some("processing"));
    sim.submit(c1, 3, vec![spec("s", "f", vec![])], &["s"]);
    sim.send(
        c1,
        CancelKeys {
            keys: keys(&["s"]),
            force: Some(true),
        },
    );
    assert!(matches!(&sim.recv(c1)[..], [Message::KeyCancelled(_)]));
    assert!(matches!(&sim.recv(c2)[..], [Message::KeyCancelled(_)]));
    assert_eq!(freed(&sim.recv(w)), ["s"]);
    assert_eq!(sim.state("s"), None);
}

#[test]
fn a_disconnected_client_releases_its_wants() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("a", "f", vec![])], &["a"]);
    sim.recv(w);
    sim.close(c);
    assert_eq!(freed(&sim.recv(w)), ["a"]);
    assert_eq!(sim.s.task_count(), 0);
}
