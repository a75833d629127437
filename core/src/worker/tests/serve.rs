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
    let ask = |request| {
        Message::GetData(GetData {
            request,
            keys: vec!["big".into()],
        })
    };
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
