//! Why keys wait (dask/1.1 `key-waiting`) and progress counts.

use super::*;
use crate::messages::{KeyWaiting, WaitingKey, WaitingKeys, WaitingKeysReply};

/// A session whose scheduler speaks 1.1 and agreed to `key-waiting`.
fn with_key_waiting() -> ClientSession {
    let mut s = ClientSession::new(None, 1);
    let _ = drain(&mut s);
    let Message::Hello(mut hello) = scheduler_hello(3) else {
        unreachable!()
    };
    hello.version = Version { major: 1, minor: 1 };
    hello.features = Some(vec!["key-waiting".into()]);
    s.handle_message(Message::Hello(hello));
    let _ = events(&mut s);
    assert!(s.has_key_waiting());
    s
}

fn waiting(key: &Key, task: Option<&str>, request: Option<u64>) -> Message {
    Message::KeyWaiting(KeyWaiting {
        key: key.clone(),
        reason: "no-function".into(),
        message: "no connected worker offers function `fft`".into(),
        task: task.map(Key::from),
        request,
    })
}

#[test]
fn a_key_waiting_event_is_kept_on_the_key_until_it_leaves_pending() {
    let mut s = with_key_waiting();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    let request = s.submit(vec![t], vec![key.clone()]);
    let _ = drain(&mut s);
    // An event of an older want (another request) is stale: ignored.
    s.handle_message(waiting(&key, None, Some(request.0 + 100)));
    assert_eq!(s.waiting(key.as_str()), None);
    s.handle_message(waiting(&key, Some("x"), Some(request.0)));
    let got = events(&mut s);
    let [ClientEvent::KeyWaiting { key: k, waiting: w }] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(k, &key);
    assert_eq!(w.task.as_ref().map(Key::as_str), Some("x"));
    assert_eq!(
        w.to_string(),
        "x, which it needs, cannot run: no connected worker offers function `fft`"
    );
    assert_eq!(s.waiting(key.as_str()), Some(w));
    let p = s.progress([&key]);
    assert_eq!((p.total, p.pending, p.waiting, p.done()), (1, 1, 1, 0));
    // Finished: no longer waiting.
    s.handle_message(finished(&key));
    assert_eq!(s.waiting(key.as_str()), None);
    let p = s.progress([&key, &Key::from("not-held")]);
    assert_eq!((p.total, p.finished, p.failed, p.pending), (2, 1, 1, 0));
    // Not held: ignored.
    s.handle_message(waiting(&Key::from("other"), None, None));
    assert!(events(&mut s)
        .iter()
        .all(|e| !matches!(e, ClientEvent::KeyWaiting { .. })));
}

#[test]
fn waiting_keys_asks_the_scheduler_only_when_it_agreed_to_the_feature() {
    let mut s = connected();
    assert!(!s.has_key_waiting());
    let r = s.waiting_keys(None, 0, None);
    assert!(drain(&mut s).is_empty(), "nothing sent to a 1.0 scheduler");
    let got = events(&mut s);
    assert!(
        matches!(&got[..], [ClientEvent::RequestFailed { request, error }]
            if *request == r && error.message.contains("key-waiting")),
        "{got:?}"
    );

    let mut s = with_key_waiting();
    let r = s.waiting_keys(Some("no-worker"), 4096, Some(10));
    assert_eq!(
        drain(&mut s),
        [Message::WaitingKeys(WaitingKeys {
            request: r.0,
            state: Some("no-worker".into()),
            cursor: Some(4096),
            limit: Some(10),
        })]
    );
    let tasks = vec![WaitingKey {
        key: Key::from("x"),
        state: "no-worker".into(),
        reason: "no-workers".into(),
        message: "no worker is connected".into(),
    }];
    s.handle_message(Message::WaitingKeysReply(WaitingKeysReply {
        request: r.0,
        tasks: tasks.clone(),
        next: None,
    }));
    assert_eq!(
        events(&mut s),
        [ClientEvent::WaitingKeys {
            request: r,
            tasks,
            next: None
        }]
    );
}
