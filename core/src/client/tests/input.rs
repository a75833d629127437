//! What the scheduler sends: the handshake, key events, replies and errors, the end of the transport.

use super::*;

#[test]
fn refused_handshake_closes_and_fails_pending_keys() {
    let mut s = ClientSession::new(None, 1);
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t], vec![key.clone()]);
    let gather = s.gather(vec![key.clone()]);
    drain(&mut s);
    s.handle_message(Message::ErrorReport(ErrorReport {
        code: 3001,
        message: "speak dask/2".into(),
        fatal: true,
        request: None,
        keys: None,
    }));
    assert!(s.is_closed());
    let ev = events(&mut s);
    assert!(matches!(&ev[0], ClientEvent::RequestFailed { request, .. } if *request == gather));
    assert!(
        matches!(&ev[1], ClientEvent::KeyUpdated { state: KeyState::Failed(e), .. } if e.code.is_none())
    );
    assert!(
        matches!(&ev[2], ClientEvent::Closed { reason } if reason.contains("version-mismatch"))
    );
}

#[test]
fn a_scheduler_answering_with_the_wrong_role_is_a_protocol_error() {
    let mut s = ClientSession::new(None, 1);
    drain(&mut s);
    let mut hello = scheduler_hello(1);
    if let Message::Hello(h) = &mut hello {
        h.role = Role::Worker;
    }
    s.handle_message(hello);
    assert!(s.is_closed());
    let out = drain(&mut s);
    assert!(
        matches!(&out[..], [Message::ErrorReport(e)] if e.fatal && e.code == ErrorCode::BadHandshake.number())
    );
}

#[test]
fn unexpected_ops_close_with_an_error_first() {
    let mut s = connected();
    s.handle_message(Message::FreeKeys(crate::messages::FreeKeys {
        keys: [].into(),
    }));
    assert!(s.is_closed());
    let out = drain(&mut s);
    assert!(
        matches!(&out[..], [Message::ErrorReport(e)] if e.code == ErrorCode::UnexpectedMessage.number())
    );
}

#[test]
fn refused_graph_fails_only_the_keys_it_introduced() {
    let mut s = connected();
    let a = inc(&mut s, Value::from(1));
    let a_key = a.key.clone();
    s.submit(vec![a.clone()], vec![a_key.clone()]);
    s.handle_message(finished(&a_key));
    let b = inc(&mut s, task_ref_value(a_key.as_str()));
    let b_key = b.key.clone();
    let r2 = s.submit(vec![a, b], vec![a_key.clone(), b_key.clone()]);
    drain(&mut s);
    events(&mut s);
    s.handle_message(Message::ErrorReport(ErrorReport {
        code: 4003,
        message: "cycle".into(),
        fatal: false,
        request: Some(r2.0),
        keys: None,
    }));
    assert_eq!(
        s.key_state(a_key.as_str()),
        Some(&KeyState::Finished { nbytes: 1 })
    );
    match s.key_state(b_key.as_str()) {
        Some(KeyState::Failed(e)) => {
            assert_eq!(e.code, Some(4003));
            assert_eq!(e.to_string(), "cycle: cycle");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.ref_count(a_key.as_str()), 2);
    assert!(s.requests.is_empty());
}

#[test]
fn gather_reply_is_an_event_for_its_request() {
    let mut s = connected();
    let r = s.gather(vec![Key::from("a"), Key::from("b")]);
    drain(&mut s);
    let mut data = BTreeMap::new();
    data.insert(Key::from("a"), RawValue::from_value(&Value::from(3)));
    let reply = Message::GatherReply(GatherReply {
        request: r.0,
        data: data.clone(),
        missing: vec![Key::from("b")],
        status: None,
    });
    s.handle_message(reply.clone());
    // A second reply to the same request is ignored.
    s.handle_message(reply);
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Gathered {
            request: r,
            data,
            missing: vec![Key::from("b")],
            status: None,
        }]
    );
}

#[test]
fn request_errors_fail_their_request() {
    let mut s = connected();
    let r = s.get_dataset("nope");
    s.handle_message(Message::ErrorReport(ErrorReport {
        code: 4004,
        message: "no dataset \"nope\"".into(),
        fatal: false,
        request: Some(r.0),
        keys: None,
    }));
    s.handle_message(Message::ErrorReport(ErrorReport {
        code: 4001,
        message: "stray".into(),
        fatal: false,
        request: None,
        keys: None,
    }));
    let ev = events(&mut s);
    assert!(
        matches!(&ev[0], ClientEvent::RequestFailed { request, error } if *request == r && error.code_name() == Some("unknown-dataset"))
    );
    assert!(matches!(&ev[1], ClientEvent::ServerError(_)));
    assert!(!s.is_closed());
}

#[test]
fn a_reply_of_the_wrong_kind_is_ignored() {
    let mut s = connected();
    let r = s.cluster_info();
    s.handle_message(Message::OkReply(OkReply { request: r.0 }));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.requests.len(), 1);
}

#[test]
fn transport_loss_fails_pending_keys_but_keeps_finished_ones() {
    let mut s = connected();
    let specs: Vec<TaskSpec> = (0..2).map(|i| inc(&mut s, Value::from(i))).collect();
    let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
    s.submit(specs, keys.clone());
    s.handle_message(finished(&keys[0]));
    s.handle_close("reset by peer");
    assert!(matches!(
        s.key_state(keys[0].as_str()),
        Some(KeyState::Finished { .. })
    ));
    assert!(matches!(
        s.key_state(keys[1].as_str()),
        Some(KeyState::Failed(_))
    ));
    assert!(s.closed_reason().unwrap_or("").contains("reset by peer"));
}

#[test]
fn a_python_dask_scheduler_is_named() {
    let mut s = ClientSession::new(None, 1);
    drain(&mut s);
    s.handle_bytes(&crate::foreign::python_dask_refusal("unused"));
    assert_eq!(s.closed_reason(), Some(PYTHON_DASK_SCHEDULER));
    // Nothing is sent to it: it would not understand.
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_result_inline_in_key_finished_is_kept_until_the_key_changes_or_goes() {
    let mut s = connected();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t], vec![key.clone()]);
    drain(&mut s);
    let value = RawValue::from_value(&Value::from(2));
    s.handle_message(Message::KeyFinished(KeyFinished {
        key: key.clone(),
        nbytes: 1,
        request: None,
        value: Some(value.clone()),
    }));
    assert_eq!(s.inline_result(key.as_str()), Some(&value));
    // Lost later: the result is no longer the client's to give.
    s.handle_message(Message::KeyLost(KeyLost {
        key: key.clone(),
        message: "gone".into(),
        request: None,
    }));
    assert_eq!(s.inline_result(key.as_str()), None);
    // A key-finished without a value keeps nothing.
    let t = inc(&mut s, Value::from(5));
    let other = t.key.clone();
    s.submit(vec![t], vec![other.clone()]);
    s.handle_message(finished(&other));
    assert_eq!(s.inline_result(other.as_str()), None);
}
