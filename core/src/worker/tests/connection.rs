//! Data connections: hellos, their deadline, routing, the connection limit.

use super::*;

fn get(request: u64) -> Message {
    Message::GetData(GetData {
        request,
        keys: vec!["x".into()],
    })
}

/// The fatal error the worker sent on `conn` before closing it, if it
/// did exactly that.
fn rejection(out: &[WorkerOutput], conn: ConnId) -> Option<ErrorCode> {
    match out {
        [WorkerOutput::Send(c, Message::ErrorReport(e)), WorkerOutput::Close(c2)]
            if *c == conn && *c2 == conn && e.fatal =>
        {
            ErrorCode::from_number(e.code)
        }
        _ => None,
    }
}

#[test]
fn data_connections_shake_hands_then_route_requests_and_replies() {
    let (mut w, now) = worker(1);
    let peer_hello = Message::from(handshake::offer(Role::Peer, None));
    // Before the hello: only a hello (or an error, which just closes).
    let conn = new_conn();
    w.handle_connected(now, conn);
    w.handle_message(now, conn, get(1));
    assert_eq!(
        rejection(&drain(&mut w), conn),
        Some(ErrorCode::BadHandshake)
    );
    let conn = new_conn();
    w.handle_connected(now, conn);
    let error = Message::error(&WireError::new(ErrorCode::MalformedFrame, "x"), None);
    w.handle_message(now, conn, error);
    assert!(matches!(&drain(&mut w)[..], [WorkerOutput::Close(c)] if *c == conn));
    let conn = new_conn();
    w.handle_connected(now, conn);
    let client_hello = Message::from(handshake::offer(Role::Client, None));
    w.handle_message(now, conn, client_hello);
    assert_eq!(
        rejection(&drain(&mut w), conn),
        Some(ErrorCode::BadHandshake)
    );
    let incoming = new_conn();
    w.handle_connected(now, incoming);
    w.handle_message(now, incoming, peer_hello.clone());
    let out = drain(&mut w);
    let [WorkerOutput::Send(c, Message::Hello(reply))] = &out[..] else {
        panic!("hello reply expected: {out:?}");
    };
    assert_eq!(*c, incoming);
    assert_eq!(
        (reply.role, reply.name.as_deref()),
        (Role::Worker, Some("w"))
    );
    // Handshaken: get-data is answered.
    w.handle_message(now, incoming, get(2));
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::Send(c, Message::Data(d))] if *c == incoming && d.request == 2
    ));
    // Replies are not for incoming connections; requests not for outgoing.
    w.handle_message(now, incoming, data_reply(1, &[], &[]));
    assert_eq!(
        rejection(&drain(&mut w), incoming),
        Some(ErrorCode::UnexpectedMessage)
    );
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let out = drain(&mut w);
    let outgoing = w.outgoing[PEER_A];
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::Connect { address },
            WorkerOutput::Send(c2, Message::Hello(h)),
            WorkerOutput::EndFrame(c3),
            WorkerOutput::Send(c4, Message::GetData(_)),
        ] if [*c2, *c3, *c4] == [outgoing; 3] && address == PEER_A
            && h.role == Role::Peer && h.name.as_deref() == Some("w")
    ));
    let worker_hello = Message::from(handshake::offer(Role::Worker, None));
    w.handle_message(now, outgoing, worker_hello.clone());
    w.handle_message(now, outgoing, get(3));
    let out = drain(&mut w);
    assert_eq!(
        rejection(&out[..2], outgoing),
        Some(ErrorCode::UnexpectedMessage)
    );
    // Its request is asked again (of nobody else: missing-data).
    assert!(matches!(to_scheduler(&out)[..], [Message::MissingData(_)]));
    // An outgoing connection expects a worker's hello and sends no reply.
    w.handle_scheduler_message(now, compute("u", vec![r("e")], &[("e", &[PEER_B])]));
    let _ = drain(&mut w);
    let outgoing = w.outgoing[PEER_B];
    w.handle_message(now, outgoing, peer_hello);
    assert_eq!(
        rejection(&drain(&mut w)[..2], outgoing),
        Some(ErrorCode::BadHandshake)
    );
    w.handle_scheduler_message(now, compute("v", vec![r("e")], &[("e", &[PEER_B])]));
    let _ = drain(&mut w);
    let outgoing = w.outgoing[PEER_B];
    w.handle_message(now, outgoing, worker_hello);
    assert!(drain(&mut w).is_empty(), "no reply to a holder's hello");
    w.handle_message(
        now,
        outgoing,
        Message::Close(Close {
            reason: None,
            reconnect: None,
        }),
    );
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::Close(c), ..] if *c == outgoing
    ));
}

#[test]
fn an_incoming_connection_without_a_hello_in_time_is_refused() {
    let (mut w, now) = worker(1);
    w.config.handshake_timeout = Duration::from_secs(10);
    let silent = new_conn();
    w.handle_connected(now, silent);
    let later = now + Duration::from_secs(4);
    let polite = new_conn();
    w.handle_connected(later, polite);
    assert_eq!(w.poll_timeout(), Some(now + Duration::from_secs(10)));
    let hello = Message::from(handshake::offer(Role::Peer, None));
    w.handle_message(later, polite, hello);
    let _ = drain(&mut w);
    w.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(
        rejection(&drain(&mut w), silent),
        Some(ErrorCode::BadHandshake)
    );
    assert_eq!(w.poll_timeout(), None, "the polite one said hello");
    w.handle_timeout(now + Duration::from_secs(20));
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.connections(), 2, "the scheduler's and the polite one");
}

#[test]
fn a_peer_that_half_closes_still_gets_its_replies_then_the_connection_closes() {
    let (mut w, now) = worker(1);
    let peer = incoming(&mut w, now);
    w.handle_message(now, peer, get(1));
    w.handle_closed(now, peer, "end of stream");
    assert!(matches!(
        &drain(&mut w)[..],
        [WorkerOutput::Send(c1, Message::Data(_)), WorkerOutput::Close(c2)]
            if *c1 == peer && *c2 == peer
    ));
    // Late events about it are ignored.
    w.handle_message(now, peer, get(2));
    w.handle_closed(now, peer, "again");
    assert!(drain(&mut w).is_empty());
}

#[test]
fn connections_are_bounded() {
    let (mut w, now) = worker(1);
    w.config.connections_max = 3;
    for _ in 0..2 {
        w.handle_connected(now, new_conn());
    }
    let refused = new_conn();
    w.handle_connected(now, refused);
    assert!(
        matches!(&drain(&mut w)[..], [WorkerOutput::Close(c)] if *c == refused),
        "the scheduler's is the third"
    );
    // A fetch that would need a fourth fails at once: missing-data.
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let out = drain(&mut w);
    assert!(fetches(&out).is_empty());
    assert!(matches!(to_scheduler(&out)[..], [Message::MissingData(_)]));
}

#[test]
fn a_bad_frame_on_a_data_connection_gets_an_error_and_a_close() {
    let (mut w, now) = worker(1);
    let peer = incoming(&mut w, now);
    let e = WireError::new(ErrorCode::FrameTooLarge, "frame of 1 GiB");
    w.handle_protocol_error(now, peer, e);
    assert_eq!(
        rejection(&drain(&mut w), peer),
        Some(ErrorCode::FrameTooLarge)
    );
}
