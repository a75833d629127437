//! Requests and their replies: submit, scatter, datasets, after close.

use super::*;

#[test]
fn handshake_then_submit_then_finish() {
    let mut s = connected();
    let a = inc(&mut s, Value::from(1));
    let b_key = s.new_key("inc");
    let b = task_spec(b_key.clone(), "inc", &[task_ref_value(a.key.as_str())], &[]);
    let request = s.submit(vec![a, b], vec![b_key.clone()]);
    assert_eq!(s.key_state(b_key.as_str()), Some(&KeyState::Pending));
    let out = drain(&mut s);
    match &out[..] {
        [Message::UpdateGraph(g)] => {
            assert_eq!(g.request, request.0);
            assert_eq!(g.tasks.len(), 2);
            assert_eq!(g.wanted, vec![b_key.clone()]);
        }
        other => panic!("unexpected {other:?}"),
    }
    s.handle_message(finished(&b_key));
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::KeyUpdated {
            key: b_key.clone(),
            state: KeyState::Finished { nbytes: 1 }
        }]
    );
    // The graph's bookkeeping is gone once every wanted key reported.
    assert!(s.requests.is_empty());
}

#[test]
fn datasets_give_the_client_references() {
    let mut s = connected();
    let publish = s.publish_dataset("d", vec![Key::from("k")], false);
    let get = s.get_dataset("d");
    let list = s.list_datasets();
    let out = drain(&mut s);
    assert_eq!(out.len(), 3);
    s.handle_message(Message::OkReply(OkReply { request: publish.0 }));
    s.handle_message(Message::Dataset(Dataset {
        request: get.0,
        name: "d".into(),
        keys: vec![Key::from("k")],
    }));
    s.handle_message(Message::Datasets(Datasets {
        request: list.0,
        names: vec!["d".into()],
    }));
    let ev = events(&mut s);
    assert_eq!(ev[0], ClientEvent::Done { request: publish });
    assert!(matches!(&ev[1], ClientEvent::Dataset { keys, .. } if keys.len() == 1));
    assert!(matches!(&ev[2], ClientEvent::Datasets { names, .. } if names == &["d"]));
    assert_eq!(s.ref_count("k"), 1);
    assert_eq!(s.key_state("k"), Some(&KeyState::Pending));
}

#[test]
fn scatter_wants_its_keys() {
    let mut s = connected();
    let mut data = BTreeMap::new();
    data.insert(Key::from("x"), RawValue::from_value(&Value::from(1)));
    let r = s.scatter(data, None, false);
    assert_eq!(s.key_state("x"), Some(&KeyState::Pending));
    let out = drain(&mut s);
    assert!(matches!(&out[..], [Message::Scatter(m)] if m.request == r.0 && m.broadcast.is_none()));
    s.handle_message(Message::ErrorReport(ErrorReport {
        code: 5001,
        message: "no workers".into(),
        fatal: false,
        request: Some(r.0),
        keys: None,
    }));
    assert!(
        matches!(s.key_state("x"), Some(KeyState::Failed(e)) if e.code_name() == Some("no-workers"))
    );
}

#[test]
fn after_close_requests_fail_at_once_and_nothing_is_sent() {
    let mut s = connected();
    s.close();
    let out = drain(&mut s);
    assert!(matches!(&out[..], [Message::Close(_)]));
    events(&mut s);
    let r = s.gather(vec![Key::from("a")]);
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t], vec![key.clone()]);
    assert!(drain(&mut s).is_empty());
    assert!(matches!(
        s.key_state(key.as_str()),
        Some(KeyState::Failed(_))
    ));
    assert!(matches!(
        &events(&mut s)[0],
        ClientEvent::RequestFailed { request, .. } if *request == r
    ));
    s.release(key.as_str());
    assert!(drain(&mut s).is_empty());
}
