//! The scheduler connection and data connections.

use super::*;

#[test]
fn heartbeats_follow_the_registered_interval() {
    let (mut w, now) = worker(1);
    assert_eq!(w.poll_timeout(), None);
    w.handle_scheduler_message(
        now,
        Message::WorkerRegistered(WorkerRegistered {
            id: 1,
            heartbeat_interval_ms: 50,
        }),
    );
    let due = w.poll_timeout().unwrap();
    assert_eq!(due, now + Duration::from_millis(50));
    w.handle_tick(now + Duration::from_millis(10));
    assert!(drain(&mut w).is_empty());
    w.handle_tick(due);
    let out = drain(&mut w);
    assert!(matches!(
        to_scheduler(&out)[..],
        [Message::Heartbeat(Heartbeat { metrics: Some(_) })]
    ));
    assert_eq!(w.poll_timeout().unwrap(), due + Duration::from_millis(50));
}

#[test]
fn close_and_protocol_errors_end_the_scheduler_connection() {
    let (mut w, now) = worker(1);
    w.handle_scheduler_message(now, Message::Close(Close { reason: None }));
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::CloseScheduler { error: None }]
    ));
    assert!(w.is_closed());

    let (mut w, now) = worker(1);
    w.handle_scheduler_message(
        now,
        Message::GetDataset(crate::messages::GetDataset {
            request: 1,
            name: "x".into(),
        }),
    );
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::ToScheduler(Message::ErrorReport(ErrorReport {
                code: 2004,
                fatal: true,
                ..
            })),
            WorkerOutput::CloseScheduler { error: Some(_) }
        ]
    ));
    w.handle_scheduler_message(now, compute("x", vec![], &[]));
    assert!(drain(&mut w).is_empty(), "nothing after close");
}

#[test]
fn data_connections_shake_hands_then_route_requests_and_replies() {
    let (mut w, now) = worker(1);
    let incoming = PeerLink::Incoming(PeerId(4));
    let peer_hello = Message::Hello(handshake::offer(Role::Peer, None));
    // Before the hello: only a hello (or an error, which just closes).
    let get = |request| {
        Message::GetData(GetData {
            request,
            keys: vec!["x".into()],
        })
    };
    assert!(matches!(
        w.handle_peer_message(now, incoming, false, "w", get(1)),
        PeerVerdict::Reject(e) if e.code == ErrorCode::BadHandshake
    ));
    assert!(matches!(
        w.handle_peer_message(
            now,
            incoming,
            false,
            "w",
            Message::error(&WireError::new(ErrorCode::MalformedFrame, "x"), None)
        ),
        PeerVerdict::Close
    ));
    let client_hello = Message::Hello(handshake::offer(Role::Client, None));
    assert!(matches!(
        w.handle_peer_message(now, incoming, false, "w", client_hello),
        PeerVerdict::Reject(e) if e.code == ErrorCode::BadHandshake
    ));
    let PeerVerdict::Handshaken(Some(Message::Hello(reply))) =
        w.handle_peer_message(now, incoming, false, "w", peer_hello.clone())
    else {
        panic!("hello reply expected");
    };
    assert_eq!(
        (reply.role, reply.name.as_deref()),
        (Role::Worker, Some("w"))
    );
    // Handshaken: get-data is answered through poll_output.
    assert!(matches!(
        w.handle_peer_message(now, incoming, true, "w", get(2)),
        PeerVerdict::Continue
    ));
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::ToPeer { peer: PeerId(4), message: Message::Data(d) }] if d.request == 2
    ));
    // Replies are not for incoming connections; requests not for outgoing.
    let outgoing = PeerLink::Outgoing(PEER_A);
    assert!(matches!(
        w.handle_peer_message(now, incoming, true, "w", data_reply(1, &[], &[])),
        PeerVerdict::Reject(e) if e.code == ErrorCode::UnexpectedMessage
    ));
    assert!(matches!(
        w.handle_peer_message(now, outgoing, true, "w", get(3)),
        PeerVerdict::Reject(e) if e.code == ErrorCode::UnexpectedMessage
    ));
    // An outgoing connection expects a worker's hello and sends no reply.
    assert!(matches!(
        w.handle_peer_message(now, outgoing, false, "w", peer_hello),
        PeerVerdict::Reject(_)
    ));
    let worker_hello = Message::Hello(handshake::offer(Role::Worker, None));
    assert!(matches!(
        w.handle_peer_message(now, outgoing, false, "w", worker_hello),
        PeerVerdict::Handshaken(None)
    ));
    assert!(matches!(
        w.handle_peer_message(
            now,
            outgoing,
            true,
            "w",
            Message::Close(Close { reason: None })
        ),
        PeerVerdict::Close
    ));
}
