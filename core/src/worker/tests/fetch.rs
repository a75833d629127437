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
    assert_eq!(job_key(&w, &started[0]), "t1");
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
    w.handle_scheduler_message(now, Message::FreeKeys(FreeKeys { keys: ["d"].into() }));
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

#[test]
fn heartbeats_tell_the_time_and_bytes_fetched_from_peers_since_registration() {
    let (mut w, now) = worker(2);
    let r = task_ref_value;
    let told = |w: &WorkerState| {
        let m = w.metrics();
        (m.transfer_us, m.transfer_bytes)
    };
    assert_eq!(told(&w), (Some(0), Some(0)));
    w.handle_scheduler_message(
        now,
        compute(
            "t1",
            vec![r("d1"), r("d2")],
            &[("d1", &[PEER_A]), ("d2", &[PEER_A])],
        ),
    );
    w.handle_scheduler_message(now, compute("t2", vec![r("d3")], &[("d3", &[PEER_B])]));
    let sent = fetches(&drain(&mut w));
    let request = |peer: &str| sent.iter().find(|(a, _)| a == peer).unwrap().1.request;
    let (a, b) = (request(PEER_A), request(PEER_B));
    let d1 = Value::from("x".repeat(1000));
    let d2 = Value::from(vec![Value::from(1); 10]);
    let size = |v: &Value| raw(v.clone()).as_bytes().len() as u64;

    // PEER_A answers in two parts, 100 ms then 300 ms after the request:
    // the request counts 300 ms once, and the bytes of both values.
    let ms = |n| now + Duration::from_millis(n);
    w.handle_peer_reply(ms(100), PEER_A, data_reply(a, &[("d1", d1.clone())], &[]));
    w.handle_peer_reply(ms(300), PEER_A, data_reply(a, &[("d2", d2.clone())], &[]));
    assert_eq!(told(&w), (Some(300_000), Some(size(&d1) + size(&d2))));
    assert!(size(&d1) > 1000);

    // PEER_B is busy: that adds nothing; asked again later, it answers
    // 50 ms after the second request.
    w.handle_peer_reply(ms(400), PEER_B, Message::Busy(Busy { request: b }));
    let _ = drain(&mut w);
    w.handle_timeout(ms(1000));
    let again = fetches(&drain(&mut w));
    assert_eq!(again.len(), 1, "{again:?}");
    let d3 = Value::from(3);
    w.handle_peer_reply(
        ms(1050),
        PEER_B,
        data_reply(again[0].1.request, &[("d3", d3.clone())], &[]),
    );
    assert_eq!(
        told(&w),
        (Some(350_000), Some(size(&d1) + size(&d2) + size(&d3)))
    );
    // A late or unknown reply adds nothing.
    w.handle_peer_reply(
        ms(2000),
        PEER_B,
        data_reply(again[0].1.request, &[("d3", d3)], &[]),
    );
    assert_eq!(told(&w).0, Some(350_000));
}

#[test]
fn transfer_totals_start_again_from_zero_when_the_worker_registers_again() {
    let now = Timestamp::ZERO;
    let mut config = config(1);
    config.reconnect_timeout = Duration::from_secs(30);
    let mut w = register(WorkerState::new(config, now), now);
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let sent = fetches(&drain(&mut w));
    let later = now + Duration::from_millis(20);
    w.handle_peer_reply(
        later,
        PEER_A,
        data_reply(sent[0].1.request, &[("d", Value::from(1))], &[]),
    );
    assert_eq!(w.metrics().transfer_us, Some(20_000));
    let s = w.scheduler_conn().unwrap();
    w.handle_closed(later, s, "connection reset by peer");
    let _ = drain(&mut w);
    w.handle_listening(later, ME.into());
    let again = later + RECONNECT_DELAY;
    w.handle_timeout(again);
    let w = register(w, again);
    assert_eq!(
        (w.metrics().transfer_us, w.metrics().transfer_bytes),
        (Some(0), Some(0)),
        "a scheduler that kept the totals of the worker that left must not count them twice"
    );
}
