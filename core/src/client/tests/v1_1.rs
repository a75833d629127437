//! dask/1.1: events of a released want are told apart by their request,
//! a barrier is acknowledged (and fails against a 1.0 scheduler), a key
//! lost and being recomputed is wanted again.

use super::*;

/// A session whose scheduler speaks dask/1.1.
fn connected_1_1() -> ClientSession {
    let mut s = ClientSession::new(Some("test".into()), 0xabc);
    drain(&mut s);
    let Message::Hello(mut hello) = scheduler_hello(7) else {
        unreachable!()
    };
    hello.version.minor = 1;
    s.handle_message(Message::Hello(hello));
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Connected { client_id: Some(7) }]
    );
    s
}

fn finished_for(key: &Key, request: RequestId) -> Message {
    Message::KeyFinished(KeyFinished {
        key: key.clone(),
        nbytes: 1,
        request: Some(request.0),
        value: None,
    })
}

#[test]
fn an_event_of_a_released_want_is_not_taken_for_the_new_one() {
    let mut s = connected_1_1();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    let first = s.submit(vec![t.clone()], vec![key.clone()]);
    s.release(key.as_str());
    let second = s.submit(vec![t], vec![key.clone()]);
    drain(&mut s);
    // The first want's event was on its way: the new want is still pending.
    s.handle_message(finished_for(&key, first));
    assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Pending));
    assert!(events(&mut s).is_empty());
    s.handle_message(finished_for(&key, second));
    assert_eq!(
        s.key_state(key.as_str()),
        Some(&KeyState::Finished { nbytes: 1 })
    );
    // Wanted again once finished: the scheduler starts a new want and
    // answers with its request, which is not stale.
    let third = s.submit(vec![], vec![key.clone()]);
    s.handle_message(finished_for(&key, third));
    // A 1.0 scheduler's events carry no request and are never stale.
    s.handle_message(finished(&key));
    assert_eq!(s.ref_count(key.as_str()), 2);
}

#[test]
fn a_barrier_is_an_acked_empty_graph_answered_by_ok() {
    let mut s = connected_1_1();
    let barrier = s.barrier();
    let out = drain(&mut s);
    assert!(
        matches!(&out[..], [Message::UpdateGraph(g)]
            if g.request == barrier.0 && g.tasks.is_empty() && g.wanted.is_empty() && g.ack == Some(true)),
        "{out:?}"
    );
    s.handle_message(Message::OkReply(OkReply { request: barrier.0 }));
    assert_eq!(events(&mut s), vec![ClientEvent::Done { request: barrier }]);
}

#[test]
fn a_barrier_fails_against_a_dask_1_0_scheduler() {
    // Asked before the handshake: it fails once the reply says 1.0.
    let mut s = ClientSession::new(None, 1);
    let early = s.barrier();
    drain(&mut s);
    s.handle_message(scheduler_hello(3));
    let got = events(&mut s);
    assert!(
        matches!(&got[..], [ClientEvent::Connected { .. }, ClientEvent::RequestFailed { request, error }]
            if *request == early && error.message.contains("dask/1.0")),
        "{got:?}"
    );
    // Asked after: it fails at once, nothing is sent.
    let late = s.barrier();
    assert!(drain(&mut s).is_empty());
    assert!(
        matches!(&events(&mut s)[..], [ClientEvent::RequestFailed { request, .. }] if *request == late)
    );
}

#[test]
fn a_finished_key_wanted_again_is_pending_until_its_new_event() {
    let mut s = connected_1_1();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    let first = s.submit(vec![t], vec![key.clone()]);
    drain(&mut s);
    s.handle_message(finished_for(&key, first));
    events(&mut s);
    s.want_again(vec![key.clone(), Key::from("not-held")]);
    let out = drain(&mut s);
    let [Message::UpdateGraph(g)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((g.tasks.len(), &g.wanted), (0, &vec![key.clone()]));
    assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Pending));
    assert_eq!(s.ref_count(key.as_str()), 1, "no reference added");
    let again = RequestId(g.request);
    s.handle_message(finished_for(&key, again));
    assert_eq!(
        s.key_state(key.as_str()),
        Some(&KeyState::Finished { nbytes: 1 })
    );
    // Forgotten meanwhile: the scheduler refuses (4001) and the key fails.
    s.want_again(vec![key.clone()]);
    let out = drain(&mut s);
    let [Message::UpdateGraph(g)] = &out[..] else {
        panic!("{out:?}")
    };
    s.handle_message(Message::ErrorReport(ErrorReport {
        code: 4001,
        message: "unknown".into(),
        fatal: false,
        request: Some(g.request),
        keys: Some(vec![key.clone()]),
    }));
    assert!(matches!(
        s.key_state(key.as_str()),
        Some(KeyState::Failed(_))
    ));
}
