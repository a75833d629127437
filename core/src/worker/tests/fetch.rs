//! Fetching dependencies from peers.

use super::*;

#[test]
fn dependencies_are_fetched_in_one_request_per_holder() {
    let (mut w, now) = worker(4);
    let r = task_ref_value;
    w.handle_scheduler_message(
        now,
        compute(
            "t1",
            vec![r("d1"), r("d2")],
            &[("d1", &[PEER_A]), ("d2", &[ME, PEER_A])],
        ),
    );
    w.handle_scheduler_message(
        now,
        compute("t2", vec![r("d3")], &[("d3", &[PEER_B, PEER_A])]),
    );
    let out = drain(&mut w);
    assert!(jobs(drain(&mut w)).is_empty());
    let mut sent = fetches(&out);
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, PEER_A);
    assert_eq!(sent[0].1.keys, vec![Key::from("d1"), Key::from("d2")]);
    assert_eq!(sent[1].0, PEER_B);
    assert_eq!(sent[1].1.keys, vec![Key::from("d3")]);

    let req_a = sent[0].1.request;
    w.handle_peer_reply(
        now,
        PEER_A,
        data_reply(
            req_a,
            &[("d1", Value::from(1)), ("d2", Value::from(2))],
            &[],
        ),
    );
    let out = drain(&mut w);
    assert!(to_scheduler(&out).contains(&&Message::AddKeys(AddKeys {
        nbytes: [(Key::from("d1"), 1), (Key::from("d2"), 1)]
            .into_iter()
            .collect()
    })));
    let started = jobs(out);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].key.as_str(), "t1");
    let dep_keys: Vec<&str> = started[0].deps.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(dep_keys, vec!["d1", "d2"]);
}

#[test]
fn a_holder_without_the_key_sends_the_worker_to_the_next_then_missing_data() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A, PEER_B])]));
    let sent = fetches(&drain(&mut w));
    assert_eq!(sent[0].0, PEER_A);
    w.handle_peer_reply(now, PEER_A, data_reply(sent[0].1.request, &[], &["d"]));
    let sent = fetches(&drain(&mut w));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, PEER_B);
    w.handle_peer_failed(now, PEER_B);
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::MissingData(MissingData {
            key: "d".into(),
            addresses: vec![PEER_A.into(), PEER_B.into()],
            task: "t".into()
        })]
    );
    assert_eq!(w.metrics().ready, 0, "the task was dropped");
    // The scheduler resends it later: accepted as new.
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    assert_eq!(fetches(&drain(&mut w)).len(), 1);
}

#[test]
fn a_dependency_with_no_holder_is_missing_at_once() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[ME])]));
    let out = drain(&mut w);
    assert_eq!(
        to_scheduler(&out),
        vec![&Message::MissingData(MissingData {
            key: "d".into(),
            addresses: vec![ME.into()],
            task: "t".into()
        })]
    );
}

#[test]
fn busy_holders_are_asked_again_later_or_another_first() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let sent = fetches(&drain(&mut w));
    w.handle_peer_reply(
        now,
        PEER_A,
        Message::Busy(Busy {
            request: sent[0].1.request,
        }),
    );
    assert!(fetches(&drain(&mut w)).is_empty());
    let at = w.poll_timeout().unwrap();
    assert!(at > now && at <= now + BUSY_RETRY_DELAY_MAX);
    w.handle_timeout(at);
    let again = fetches(&drain(&mut w));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, PEER_A);
    w.handle_peer_reply(
        at,
        PEER_A,
        data_reply(again[0].1.request, &[("d", Value::from(3))], &[]),
    );
    assert_eq!(jobs(drain(&mut w)).len(), 1);

    let (mut w, now) = worker(1);
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A, PEER_B])]));
    let sent = fetches(&drain(&mut w));
    w.handle_peer_reply(
        now,
        PEER_A,
        Message::Busy(Busy {
            request: sent[0].1.request,
        }),
    );
    let next = fetches(&drain(&mut w));
    assert_eq!(next[0].0, PEER_B, "another holder at once");
    w.handle_peer_reply(now, PEER_B, data_reply(next[0].1.request, &[], &["d"]));
    let last = fetches(&drain(&mut w));
    assert_eq!(last[0].0, PEER_A, "then the busy one again");
}

#[test]
fn a_failed_holder_is_tried_after_others() {
    let (mut w, now) = worker(2);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t1", vec![r("d1")], &[("d1", &[PEER_A])]));
    let sent = fetches(&drain(&mut w));
    w.handle_peer_failed(now, PEER_A);
    let _ = drain(&mut w);
    w.handle_scheduler_message(
        now,
        compute("t2", vec![r("d2")], &[("d2", &[PEER_A, PEER_B])]),
    );
    let next = fetches(&drain(&mut w));
    assert_eq!(next[0].0, PEER_B);
    assert_ne!(next[0].1.request, sent[0].1.request);
}

#[test]
fn a_holder_the_scheduler_no_longer_lists_is_not_waited_for() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let first = fetches(&drain(&mut w));
    assert_eq!(first[0].0, PEER_A);
    // PEER_A hangs; the scheduler declares it dead, takes t back and
    // sends it again with the holder that remains.
    w.handle_scheduler_message(now, Message::StealRequest(StealRequest { key: "t".into() }));
    let _ = drain(&mut w);
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_B])]));
    let second = fetches(&drain(&mut w));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].0, PEER_B);
    // A late answer from PEER_A is ignored; PEER_B's is used.
    w.handle_peer_reply(
        now,
        PEER_A,
        data_reply(first[0].1.request, &[("d", Value::from(1))], &[]),
    );
    assert!(jobs(drain(&mut w)).is_empty());
    assert!(w.value("d").is_none());
    w.handle_peer_reply(
        now,
        PEER_B,
        data_reply(second[0].1.request, &[("d", Value::from(2))], &[]),
    );
    let run = jobs(drain(&mut w));
    assert_eq!(run[0].deps[0].1.as_bytes(), &[2]);
    // The abandoned request does not time out into a failure later.
    w.handle_timeout(now + FETCH_TIMEOUT * 2);
    assert!(to_scheduler(&drain(&mut w))
        .iter()
        .all(|m| matches!(m, Message::Heartbeat(_))));
}

#[test]
fn put_data_satisfies_a_waiting_task_and_late_fetched_data_is_dropped() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let sent = fetches(&drain(&mut w));
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 1,
            data: [(Key::from("d"), raw(Value::from(5)))]
                .into_iter()
                .collect(),
        }),
    );
    let started = jobs(drain(&mut w));
    assert_eq!(started.len(), 1);
    w.handle_peer_reply(
        now,
        PEER_A,
        data_reply(sent[0].1.request, &[("d", Value::from(6))], &[]),
    );
    let out = drain(&mut w);
    assert!(
        to_scheduler(&out).is_empty(),
        "no add-keys for data nobody waits for"
    );
    assert_eq!(w.value("d").unwrap().as_bytes(), &[5]);
}

#[test]
fn a_dependency_freed_before_start_is_fetched_again() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("busy", vec![], &[]));
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 1,
            data: [(Key::from("d"), raw(Value::from(1)))]
                .into_iter()
                .collect(),
        }),
    );
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let first = jobs(drain(&mut w));
    assert_eq!(first.len(), 1);
    w.handle_scheduler_message(
        now,
        Message::FreeKeys(FreeKeys {
            keys: vec!["d".into()],
        }),
    );
    w.handle_task_done(now, done(first[0].run_id, Value::Nil));
    let out = drain(&mut w);
    let sent = fetches(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, PEER_A);
    assert!(jobs(out).is_empty());
}

#[test]
fn a_holder_that_never_answers_times_out_and_the_next_is_asked() {
    let (mut w, now) = worker(1);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A, PEER_B])]));
    let sent = fetches(&drain(&mut w));
    assert_eq!(sent[0].0, PEER_A);
    assert_eq!(w.poll_timeout(), Some(now + FETCH_TIMEOUT));
    w.handle_timeout(
        (now + FETCH_TIMEOUT)
            .checked_sub(Duration::from_millis(1))
            .unwrap(),
    );
    assert!(drain(&mut w).is_empty());
    let late = now + FETCH_TIMEOUT;
    w.handle_timeout(late);
    let next = fetches(&drain(&mut w));
    assert_eq!(next[0].0, PEER_B);
    // A late answer from the first holder is ignored.
    w.handle_peer_reply(
        late,
        PEER_A,
        data_reply(sent[0].1.request, &[("d", Value::from(1))], &[]),
    );
    assert!(jobs(drain(&mut w)).is_empty());
    w.handle_peer_reply(
        late,
        PEER_B,
        data_reply(next[0].1.request, &[("d", Value::from(2))], &[]),
    );
    let started = jobs(drain(&mut w));
    assert_eq!(started[0].deps[0].1.as_bytes(), &[2]);
}
