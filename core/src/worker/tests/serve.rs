//! Serving values: split replies, busy.

use super::*;

#[test]
fn large_replies_are_split_over_messages_with_one_request_id() {
    let (mut w, now) = worker(1);
    w.config.reply_message_bytes_max = 100;
    let data = (0..4)
        .map(|i| (Key::from(format!("k{i}")), raw(Value::Binary(vec![i; 60]))))
        .collect();
    w.handle_scheduler_message(now, Message::PutData(PutData { request: 1, data }));
    let _ = drain(&mut w);
    w.handle_scheduler_message(
        now,
        Message::GetData(GetData {
            request: 2,
            keys: vec![
                "k0".into(),
                "k1".into(),
                "k2".into(),
                "k3".into(),
                "nope".into(),
            ],
        }),
    );
    let out = drain(&mut w);
    let replies = to_scheduler(&out);
    assert_eq!(replies.len(), 4);
    let mut keys = Vec::new();
    for (i, m) in replies.iter().enumerate() {
        let Message::Data(d) = m else { panic!("{m:?}") };
        assert_eq!(d.request, 2);
        assert_eq!(d.missing.is_empty(), i != 0);
        keys.extend(d.data.keys().cloned());
    }
    assert_eq!(keys.len(), 4);
}

#[test]
fn peers_get_busy_while_too_many_reply_bytes_are_unwritten() {
    let (mut w, now) = worker(1);
    w.config.reply_bytes_in_flight_max = 100;
    let data = [(Key::from("big"), raw(Value::Binary(vec![1; 80])))]
        .into_iter()
        .collect();
    w.handle_scheduler_message(now, Message::PutData(PutData { request: 1, data }));
    let _ = drain(&mut w);
    let ask = |request| get_data(request, &["big"]);
    let (p1, p2) = (incoming(&mut w, now), incoming(&mut w, now));
    w.handle_message(now, p1, ask(1));
    w.handle_message(now, p2, ask(2));
    let out = drain(&mut w);
    let replies: Vec<(ConnId, &str)> = out
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::Send(peer, message) => Some((*peer, message.op())),
            _ => None,
        })
        .collect();
    assert_eq!(replies, vec![(p1, "data"), (p2, "busy")]);
    w.handle_drained(now, p1);
    w.handle_message(now, p2, ask(3));
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::Send(peer, Message::Data(_))] if *peer == p2
    ));
}

#[test]
fn a_value_too_large_for_a_frame_is_served_only_where_parts_were_negotiated() {
    let (mut w, now) = worker(1);
    w.config.frame_value_bytes_max = 100;
    let data = [
        (Key::from("big"), raw(Value::Binary(vec![1; 200]))),
        (Key::from("small"), raw(Value::Binary(vec![2; 10]))),
    ]
    .into_iter()
    .collect();
    w.handle_scheduler_message(now, Message::PutData(PutData { request: 1, data }));
    let _ = drain(&mut w);
    let ask = |request| get_data(request, &["big", "small"]);
    // A peer that listed `value-parts` (as dask-rs's do) gets the value:
    // its connection sends it in parts.
    let modern = incoming(&mut w, now);
    w.handle_message(now, modern, ask(2));
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::Send(peer, Message::Data(d))] if *peer == modern && d.data.len() == 2
    ));
    // One that did not (a dask/1.0 peer) gets 5002 naming the key that
    // fits in no frame, and asks again for the rest.
    let old = new_conn();
    w.handle_connected(now, old);
    let mut hello = handshake::offer(Role::Peer, None);
    hello.features = None;
    hello.version = crate::messages::Version { major: 1, minor: 0 };
    w.handle_message(now, old, Message::from(hello));
    let out = drain(&mut w);
    assert!(
        matches!(&out[..], [WorkerOutput::Send(_, Message::Hello(h))] if h.features.as_deref() == Some(&[][..])),
        "{out:?}"
    );
    w.handle_message(now, old, ask(3));
    let out = drain(&mut w);
    let [WorkerOutput::Send(peer, Message::ErrorReport(e))] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(*peer, old);
    assert_eq!(e.code, ErrorCode::ValueTooLarge.number());
    assert!(!e.fatal);
    assert_eq!(e.request, Some(3));
    assert_eq!(e.keys.as_deref(), Some(&[Key::from("big")][..]));
}

/// A `get-data` for `keys`.
fn get_data(request: u64, keys: &[&str]) -> Message {
    Message::GetData(GetData {
        request,
        keys: keys.iter().map(|&k| Key::from(k)).collect(),
    })
}
