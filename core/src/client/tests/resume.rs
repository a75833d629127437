//! A session that survives its scheduler's restart (dask/1.1 `session`,
//! spec "Reconnection"): a lost connection waits to be resumed, the
//! resuming hello names the session, and a scheduler that did not keep
//! the session makes every held key lost.

use super::*;
use crate::messages::UpdateGraph;

/// A resumable session whose dask/1.1 scheduler gave it session `token`.
fn with_session(token: &str) -> ClientSession {
    let mut s = ClientSession::new(Some("test".into()), 0xabc);
    s.set_resumable(true);
    drain(&mut s);
    s.handle_message(reply(token));
    events(&mut s);
    assert_eq!(s.session_token(), Some(token));
    s
}

fn reply(token: &str) -> Message {
    let Message::Hello(mut hello) = scheduler_hello(7) else {
        unreachable!()
    };
    hello.version.minor = 1;
    hello.session = Some(token.into());
    Message::Hello(hello)
}

#[test]
fn a_lost_connection_is_resumed_with_a_hello_naming_the_session() {
    let mut s = with_session("s1");
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t], vec![key.clone()]);
    let gather = s.gather(vec![key.clone()]);
    drain(&mut s);
    s.handle_close("reset by peer");
    assert!(s.wants_reconnect() && !s.is_closed() && !s.is_connected());
    // The gather's answer is lost: it fails; the key waits.
    let got = events(&mut s);
    assert!(
        matches!(&got[..], [ClientEvent::RequestFailed { request, .. }] if *request == gather),
        "{got:?}"
    );
    assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Pending));
    // Nothing goes out until a new connection is there.
    s.release(key.as_str());
    assert!(drain(&mut s).is_empty());
    s.resume(None);
    let out = drain(&mut s);
    assert!(
        matches!(&out[0], Message::Hello(h) if h.session.as_deref() == Some("s1")),
        "{out:?}"
    );
    assert!(matches!(&out[1..], [Message::ReleaseKeys(_)]), "{out:?}");
    s.handle_message(reply("s1"));
    assert!(s.is_connected());
}

/// A session that sent two graphs of one key each; the first was
/// acknowledged (an event of its key), not the second; then the
/// connection was lost. Returns both keys and the second graph's request.
fn two_graphs_the_first_acknowledged_then_cut() -> (ClientSession, Key, Key, RequestId) {
    let mut s = with_session("s1");
    let a = inc(&mut s, Value::from(1));
    let b = inc(&mut s, Value::from(2));
    let (ka, kb) = (a.key.clone(), b.key.clone());
    let first = s.submit(vec![a], vec![ka.clone()]);
    let second = s.submit(vec![b], vec![kb.clone()]);
    drain(&mut s);
    s.handle_message(Message::KeyFinished(KeyFinished {
        key: ka.clone(),
        nbytes: 1,
        request: Some(first.0),
        value: None,
    }));
    s.handle_close("reset");
    (s, ka, kb, second)
}

#[test]
fn a_session_the_scheduler_did_not_keep_loses_every_key_but_those_of_graphs_sent_again() {
    let (mut s, ka, kb, second) = two_graphs_the_first_acknowledged_then_cut();
    s.resume(None);
    let out = drain(&mut s);
    assert!(
        matches!(&out[1..], [Message::UpdateGraph(g)] if g.request == second.0),
        "{out:?}"
    );
    s.handle_message(reply("another"));
    assert!(matches!(
        s.key_state(ka.as_str()),
        Some(KeyState::Lost { message }) if message.contains("did not keep this client's session")
    ));
    // The second graph went again after the hello: the new session has it.
    assert_eq!(s.key_state(kb.as_str()), Some(&KeyState::Pending));
    assert_eq!(s.session_token(), Some("another"));
    s.handle_message(Message::KeyFinished(KeyFinished {
        key: kb.clone(),
        nbytes: 1,
        request: Some(second.0),
        value: None,
    }));
    assert!(matches!(
        s.key_state(kb.as_str()),
        Some(KeyState::Finished { .. })
    ));
}

#[test]
fn a_failed_attempt_waits_again_and_giving_up_closes() {
    let mut s = with_session("s1");
    s.handle_close("reset");
    s.resume(None);
    drain(&mut s);
    s.handle_close("connection refused");
    assert!(s.wants_reconnect(), "the attempt failed: try again");
    s.give_up();
    assert!(s.is_closed() && !s.wants_reconnect());
}

#[test]
fn without_a_session_or_a_driver_that_reconnects_a_lost_connection_closes() {
    let mut s = connected();
    s.set_resumable(true);
    s.handle_close("reset");
    assert!(
        s.is_closed(),
        "a scheduler without a journal gave no session"
    );
    let mut s = ClientSession::new(None, 1);
    drain(&mut s);
    s.handle_message(reply("s1"));
    s.handle_close("reset");
    assert!(s.is_closed(), "the driver did not say it reconnects");
}

#[test]
fn a_graph_nothing_acknowledged_goes_again_on_the_resumed_connection() {
    let (mut s, _, _, second) = two_graphs_the_first_acknowledged_then_cut();
    s.resume(None);
    let out = drain(&mut s);
    let graphs: Vec<u64> = out
        .iter()
        .filter_map(|m| match m {
            Message::UpdateGraph(g) => Some(g.request),
            _ => None,
        })
        .collect();
    assert_eq!(graphs, [second.0], "{out:?}");
    assert!(matches!(&out[0], Message::Hello(_)));
}

#[test]
fn a_key_wanted_again_takes_the_event_of_the_want_a_restarted_scheduler_kept() {
    let mut s = with_session("s1");
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    let first = s.submit(vec![t], vec![key.clone()]);
    drain(&mut s);
    let done = |request: RequestId| {
        Message::KeyFinished(KeyFinished {
            key: key.clone(),
            nbytes: 1,
            request: Some(request.0),
            value: None,
        })
    };
    s.handle_message(done(first));
    // The scheduler restarted: its gather said the value is not there yet.
    s.want_again(vec![key.clone()]);
    assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Pending));
    // The restored want kept the first request (it was pending there).
    s.handle_message(done(first));
    assert!(matches!(
        s.key_state(key.as_str()),
        Some(KeyState::Finished { .. })
    ));
}

/// The parts of a 64-leaf tree sent by a session with a token (split at
/// 1000 bytes), and the keys wanted only for later parts.
fn sent_in_parts(s: &mut ClientSession) -> (Vec<UpdateGraph>, Vec<Key>) {
    let (tasks, root) = super::parts::tree(64);
    s.set_submit_part_bytes(1000);
    s.submit(tasks, vec![root.clone()]);
    let mut parts = Vec::new();
    let mut released = Vec::new();
    for m in drain(s) {
        match m {
            Message::UpdateGraph(g) => parts.push(g),
            Message::ReleaseKeys(r) => released.extend(r.keys.to_keys()),
            other => panic!("{other:?}"),
        }
    }
    assert!(parts.len() >= 4, "{} parts", parts.len());
    assert!(!released.is_empty());
    (parts, released)
}

fn ok(request: u64) -> Message {
    Message::OkReply(OkReply { request })
}

#[test]
fn parts_not_acknowledged_go_again_as_sent_and_their_extra_wants_are_released_after() {
    let mut s = with_session("s1");
    let (parts, released) = sent_in_parts(&mut s);
    // Parts ask for an ok: their keys may all be released before any event.
    assert!(parts.iter().all(|p| p.ack == Some(true)));
    // The second part's ok: it and the first were handled.
    s.handle_message(ok(parts[1].request));
    s.handle_close("killed");
    s.resume(None);
    let out = drain(&mut s);
    assert!(matches!(&out[0], Message::Hello(h) if h.session.as_deref() == Some("s1")));
    let again: Vec<&UpdateGraph> = out
        .iter()
        .filter_map(|m| match m {
            Message::UpdateGraph(g) => Some(g),
            _ => None,
        })
        .collect();
    let expected: Vec<&UpdateGraph> = parts[2..].iter().collect();
    assert_eq!(again, expected, "the parts after the ok, as sent");
    // Then the keys wanted only for later parts, all of them: the first
    // release was never confirmed, and the parts sent again want theirs.
    let Some(Message::ReleaseKeys(r)) = out.last() else {
        panic!("no release after the parts: {out:?}")
    };
    let mut expected = released;
    expected.sort();
    assert_eq!(r.keys, expected);
    // A part's ok after the resume is taken; the root's event finishes it.
    s.handle_message(reply("s1"));
    for p in &parts[2..] {
        s.handle_message(ok(p.request));
    }
    assert!(s.unacked.is_empty());
    assert_eq!(s.key_state("t-6-0"), Some(&KeyState::Pending));
}

#[test]
fn a_release_a_later_reply_confirmed_is_not_sent_again() {
    for confirmed in [false, true] {
        let mut s = with_session("s1");
        let t = inc(&mut s, Value::from(1));
        let key = t.key.clone();
        let first = s.submit(vec![t], vec![key.clone()]);
        drain(&mut s);
        s.handle_message(Message::KeyFinished(KeyFinished {
            key: key.clone(),
            nbytes: 1,
            request: Some(first.0),
            value: None,
        }));
        s.release(key.as_str());
        let info = s.cluster_info();
        let out = drain(&mut s);
        assert!(matches!(&out[0], Message::ReleaseKeys(_)), "{out:?}");
        if confirmed {
            // The scheduler answered a request sent after the release.
            s.handle_message(Message::ErrorReport(ErrorReport {
                code: 1000,
                message: "x".into(),
                fatal: false,
                request: Some(info.0),
                keys: None,
            }));
        }
        s.handle_close("killed");
        s.resume(None);
        let out = drain(&mut s);
        let releases: Vec<&Message> = out
            .iter()
            .filter(|m| matches!(m, Message::ReleaseKeys(_)))
            .collect();
        if confirmed {
            assert!(releases.is_empty(), "{out:?}");
        } else {
            assert!(
                matches!(releases[..], [Message::ReleaseKeys(r)] if r.keys == [key.clone()]),
                "{out:?}"
            );
        }
    }
}

#[test]
fn an_inline_result_survives_the_events_sent_again_after_a_resume() {
    let mut s = with_session("s1");
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    let first = s.submit(vec![t], vec![key.clone()]);
    drain(&mut s);
    let finished = |value: Option<RawValue>| {
        Message::KeyFinished(KeyFinished {
            key: key.clone(),
            nbytes: 1,
            request: Some(first.0),
            value,
        })
    };
    s.handle_message(finished(Some(RawValue::from_bytes(vec![0x02]).unwrap())));
    s.handle_close("killed");
    s.resume(None);
    drain(&mut s);
    s.handle_message(reply("s1"));
    // The restarted scheduler keeps no result: its event has no value.
    s.handle_message(finished(None));
    assert_eq!(
        s.inline_result(key.as_str()).map(RawValue::as_bytes),
        Some(&[0x02][..])
    );
}
