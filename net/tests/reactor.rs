//! The reactor against real loopback sockets: what an event loop sees and
//! what a peer gets, for each part of a connection's life.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use dask_core::auth::{ConnectorAuth, Secret};
use dask_core::frame::encode_frame;
use dask_core::handshake;
use dask_core::messages::{AuthProof, Bin32, Close, Data, Heartbeat, Role};
use dask_core::{ConnId, ErrorCode, Key, Message, RawValue};
use dask_net::{BlockingConn, CloseReason, NetEvent, Reactor, ReactorConfig};

/// Long enough for anything on loopback; tests end as soon as they see
/// what they wait for.
const PATIENCE: Duration = Duration::from_secs(20);

fn hello() -> Message {
    Message::from(handshake::offer(Role::Client, None))
}

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat { metrics: None })
}

fn close_message(reason: &str) -> Message {
    Message::Close(Close {
        reason: Some(reason.into()),
        reconnect: None,
    })
}

/// A `data` message holding one binary value of `bytes` bytes.
fn data(bytes: usize) -> Message {
    let value = RawValue::from_value(&rmpv::Value::Binary(vec![7; bytes]));
    Message::Data(Data {
        request: 1,
        data: BTreeMap::from([(Key::from("x"), value)]),
        missing: vec![],
    })
}

fn reactor(config: ReactorConfig) -> (Reactor, SocketAddr) {
    let mut reactor = Reactor::new(config).expect("reactor");
    let listener = reactor
        .listen("127.0.0.1:0".parse().unwrap())
        .expect("listen");
    let addr = reactor.local_addr(listener).expect("address");
    (reactor, addr)
}

fn peer(addr: SocketAddr) -> BlockingConn {
    let conn = BlockingConn::connect_raw(&addr.to_string(), PATIENCE).expect("connect");
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    conn
}

/// A reactor with `config` and a peer whose hello it has read.
fn greeted(config: ReactorConfig) -> (Reactor, BlockingConn, ConnId) {
    let (mut reactor, addr) = reactor(config);
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    let conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor), (conn, vec![hello()]));
    (reactor, p, conn)
}

/// Runs the reactor, handing each event to `on_event` (which may send and
/// close), until it returns true. What the handler sends is flushed by the
/// next poll, as in an event loop (the same wakeup).
fn until(reactor: &mut Reactor, mut on_event: impl FnMut(&mut Reactor, NetEvent) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} in vain");
        reactor.poll(Some(deadline)).expect("poll");
        while let Some(event) = reactor.next_event() {
            if on_event(reactor, event) {
                return;
            }
        }
    }
}

/// One wakeup (at most a few milliseconds); the events it brought.
fn turn(reactor: &mut Reactor) -> Vec<NetEvent> {
    reactor
        .poll(Some(Instant::now() + Duration::from_millis(5)))
        .expect("poll");
    std::iter::from_fn(|| reactor.next_event()).collect()
}

/// The next event, whatever it is.
fn next(reactor: &mut Reactor) -> NetEvent {
    let mut got = None;
    until(reactor, |_, e| {
        got = Some(e);
        true
    });
    got.unwrap()
}

fn accepted(reactor: &mut Reactor) -> ConnId {
    match next(reactor) {
        NetEvent::Accepted { conn, .. } => conn,
        other => panic!("expected a connection, got {other:?}"),
    }
}

fn frame(reactor: &mut Reactor) -> (ConnId, Vec<Message>) {
    match next(reactor) {
        NetEvent::Frame { conn, messages } => (conn, messages),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn closed(reactor: &mut Reactor) -> (ConnId, CloseReason) {
    match next(reactor) {
        NetEvent::Closed { conn, reason } => (conn, reason),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// Reads until EOF; the messages that came.
fn read_to_eof(peer: &mut BlockingConn) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        match peer.recv() {
            Ok(m) => got.push(m),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return got,
            Err(e) => panic!("expected EOF after {got:?}, got {e}"),
        }
    }
}

/// Keeps the reactor turning (so it writes, lingers and reads) while
/// `busy` says so.
fn turn_while(reactor: &mut Reactor, mut busy: impl FnMut(&Reactor) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while busy(reactor) {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} in vain");
        reactor
            .poll(Some(Instant::now() + Duration::from_millis(10)))
            .expect("poll");
        while reactor.next_event().is_some() {}
    }
}

#[test]
fn frames_come_in_order_and_a_close_delivers_the_reply_first() {
    let (mut reactor, addr) = reactor(ReactorConfig::default());
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    p.send(&[heartbeat(), heartbeat()]).unwrap();
    let conn = accepted(&mut reactor);
    assert_eq!(
        reactor.peer_addr(conn),
        Some(p.stream().local_addr().unwrap())
    );
    assert_eq!(frame(&mut reactor), (conn, vec![hello()]));
    assert_eq!(frame(&mut reactor), (conn, vec![heartbeat(), heartbeat()]));
    reactor.send(conn, &close_message("bye")).unwrap();
    reactor.close(conn);
    assert!(!reactor.is_open(conn));
    turn_while(&mut reactor, |r| !r.is_flushed(conn));
    assert_eq!(read_to_eof(&mut p), vec![close_message("bye")]);
    drop(p);
    turn_while(&mut reactor, |r| r.connection_count() > 0);
}

#[test]
fn a_peer_that_half_closes_after_its_request_gets_the_reply_sent_in_that_wakeup() {
    let (mut reactor, addr) = reactor(ReactorConfig::default());
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    p.send(&[heartbeat()]).unwrap();
    p.stream().shutdown(Shutdown::Write).unwrap();
    let conn = accepted(&mut reactor);
    let mut frames = 0;
    until(&mut reactor, |r, event| match event {
        NetEvent::Frame { .. } => {
            frames += 1;
            false
        }
        NetEvent::Closed { conn: c, reason } => {
            assert_eq!(c, conn);
            assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
            r.send(conn, &close_message("reply")).unwrap();
            true
        }
        other => panic!("{other:?}"),
    });
    assert_eq!(frames, 2);
    reactor.flush();
    assert_eq!(read_to_eof(&mut p), vec![close_message("reply")]);
    turn_while(&mut reactor, |r| r.connection_count() > 0);
}

#[test]
fn undecodable_bytes_are_reported_and_the_answer_reaches_the_peer_before_the_close() {
    let (mut reactor, addr) = reactor(ReactorConfig::default());
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    // A frame holding the reserved byte 0xc1, then more bytes the reactor
    // must read and drop so that the close is not a reset.
    p.send_raw(&[0, 0, 0, 1, 0xc1]).unwrap();
    p.send_raw(&[0x55; 100_000]).unwrap();
    let conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor).1, vec![hello()]);
    let (c, reason) = closed(&mut reactor);
    assert_eq!(c, conn);
    let CloseReason::Protocol(e) = reason else {
        panic!("{reason:?}")
    };
    assert_eq!(e.code, ErrorCode::MalformedFrame);
    reactor.send(conn, &Message::error(&e, None)).unwrap();
    reactor.flush();
    let got = read_to_eof(&mut p);
    assert!(
        matches!(&got[..], [Message::ErrorReport(r)] if r.code == ErrorCode::MalformedFrame.number()),
        "{got:?}"
    );
    drop(p);
    turn_while(&mut reactor, |r| r.connection_count() > 0);
}

#[test]
fn before_its_hello_a_connection_is_held_to_one_small_frame() {
    let config = ReactorConfig {
        hello_frame_bytes_max: 1024,
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    // Over the limit: refused at the prefix.
    let mut p = peer(addr);
    p.send_raw(&2000u32.to_be_bytes()).unwrap();
    let conn = accepted(&mut reactor);
    let (c, reason) = closed(&mut reactor);
    assert_eq!(c, conn);
    assert!(
        matches!(&reason, CloseReason::Protocol(e) if e.code == ErrorCode::FrameTooLarge),
        "{reason:?}"
    );
    // After a frame holding the hello, large frames are read.
    let mut p = peer(addr);
    let big = data(100_000);
    p.send(&[hello()]).unwrap();
    p.send(std::slice::from_ref(&big)).unwrap();
    let conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor), (conn, vec![hello()]));
    assert_eq!(frame(&mut reactor), (conn, vec![big]));
}

#[test]
fn a_connection_that_offers_auth_stays_held_until_its_proof() {
    let config = ReactorConfig {
        hello_frame_bytes_max: 1024,
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    let auth = ConnectorAuth::new(Role::Client, Secret::from_bytes([1; 32]), [2; 32]);
    let mut offer = handshake::offer(Role::Client, None);
    offer.auth = Some(auth.offer());
    let offer = Message::from(offer);
    // A large frame pipelined before the proof: refused at its prefix.
    let mut p = peer(addr);
    p.send(std::slice::from_ref(&offer)).unwrap();
    p.send(&[data(100_000)]).unwrap();
    let conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor), (conn, vec![offer.clone()]));
    let (c, reason) = closed(&mut reactor);
    assert_eq!(c, conn);
    assert!(
        matches!(&reason, CloseReason::Protocol(e) if e.code == ErrorCode::FrameTooLarge),
        "{reason:?}"
    );
    // After the frame holding the proof, large frames are read.
    let proof = Message::AuthProof(AuthProof {
        proof: Bin32([3; 32]),
    });
    let big = data(100_000);
    let mut p = peer(addr);
    p.send(std::slice::from_ref(&offer)).unwrap();
    p.send(std::slice::from_ref(&proof)).unwrap();
    p.send(std::slice::from_ref(&big)).unwrap();
    let conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor), (conn, vec![offer]));
    assert_eq!(frame(&mut reactor), (conn, vec![proof]));
    assert_eq!(frame(&mut reactor), (conn, vec![big]));
}

#[test]
fn bytes_held_before_hellos_are_bounded_in_total() {
    let config = ReactorConfig {
        hello_frame_bytes_max: 1024,
        handshake_bytes_max: 1000,
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    let mut unfinished = 1000u32.to_be_bytes().to_vec();
    unfinished.extend([0x90; 600]);
    let mut first = peer(addr);
    first.send_raw(&unfinished).unwrap();
    let a = accepted(&mut reactor);
    // The reactor reads the first one's bytes before the second comes.
    for _ in 0..3 {
        assert!(turn(&mut reactor).is_empty());
    }
    let mut second = peer(addr);
    second.send_raw(&unfinished).unwrap();
    let b = accepted(&mut reactor);
    let (c, reason) = closed(&mut reactor);
    assert_eq!(c, b, "the connection that took the sum over is refused");
    assert!(
        matches!(&reason, CloseReason::Protocol(e) if e.code == ErrorCode::FrameTooLarge
            && e.message.contains("have not sent their hello")),
        "{reason:?}"
    );
    assert!(reactor.is_open(a));
    drop(first);
    drop(second);
}

#[test]
fn connections_past_the_cap_are_closed_at_once() {
    let config = ReactorConfig {
        connections_max: 2,
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    let _a = peer(addr);
    let _b = peer(addr);
    accepted(&mut reactor);
    accepted(&mut reactor);
    let c = peer(addr);
    c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "the third connection was kept");
        assert!(turn(&mut reactor).is_empty(), "the third was handed out");
        match c.stream().try_clone().unwrap().read(&mut [0u8; 1]) {
            Ok(0) => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected EOF, got {other:?}"),
        }
    }
    assert_eq!(reactor.connection_count(), 2);
}

#[test]
fn connects_report_success_or_failure_as_events_and_may_send_before_connected() {
    let (mut reactor, _) = reactor(ReactorConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = reactor.connect(listener.local_addr().unwrap());
    reactor.send(conn, &hello()).unwrap();
    reactor.end_frame(conn);
    reactor.send(conn, &heartbeat()).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let mut far = BlockingConn::from_stream(stream);
    far.set_read_timeout(Some(PATIENCE)).unwrap();
    assert!(matches!(next(&mut reactor), NetEvent::Connected { conn: c } if c == conn));
    reactor.flush();
    assert_eq!(far.recv().unwrap(), hello());
    assert_eq!(far.recv().unwrap(), heartbeat());
    far.send(&[close_message("hi")]).unwrap();
    assert_eq!(frame(&mut reactor), (conn, vec![close_message("hi")]));

    // Nobody listens there any more: refused.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let refused = reactor.connect(gone);
    reactor.send(refused, &hello()).unwrap();
    match next(&mut reactor) {
        NetEvent::ConnectFailed { conn, error } => {
            assert_eq!(conn, refused);
            assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!reactor.is_open(refused));
}

#[test]
fn a_closed_connection_gets_no_more_events_and_its_id_is_never_reused() {
    let (mut reactor, addr) = reactor(ReactorConfig::default());
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    p.send(&[heartbeat()]).unwrap();
    let first = accepted(&mut reactor);
    // Closed by the loop before its frames are handed out: none are.
    reactor.close(first);
    drop(p);
    let mut q = peer(addr);
    q.send(&[hello()]).unwrap();
    let second = accepted(&mut reactor);
    assert_ne!(first, second);
    assert_eq!(frame(&mut reactor), (second, vec![hello()]));
    // Nothing sent to the old id reaches the new connection.
    reactor.send(first, &close_message("stale")).unwrap();
    reactor.send(second, &close_message("fresh")).unwrap();
    reactor.close(second);
    turn_while(&mut reactor, |r| !r.is_flushed(second));
    assert_eq!(read_to_eof(&mut q), vec![close_message("fresh")]);
}

#[test]
fn the_waker_ends_a_wait_without_a_deadline() {
    let (mut reactor, _) = reactor(ReactorConfig::default());
    let waker = reactor.waker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        waker.wake().unwrap();
    });
    reactor.poll(None).expect("poll");
    assert!(reactor.next_event().is_none());
    t.join().unwrap();
}

#[test]
fn a_peer_that_never_hangs_up_is_let_go_after_the_linger() {
    let config = ReactorConfig {
        close_linger: Duration::from_millis(100),
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    let conn = accepted(&mut reactor);
    reactor.close(conn);
    turn_while(&mut reactor, |r| r.connection_count() > 0);
    assert_eq!(read_to_eof(&mut p), vec![]);
}

#[test]
fn a_peer_that_does_not_read_fails_past_the_send_queue_bound() {
    let config = ReactorConfig {
        send_queue_bytes_max: 1 << 20,
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    let p = peer(addr);
    let conn = accepted(&mut reactor);
    let big = data(256 * 1024);
    let mut failed = false;
    for _ in 0..10_000 {
        reactor.send(conn, &big).unwrap();
        reactor.poll(Some(Instant::now())).unwrap();
        while let Some(event) = reactor.next_event() {
            match event {
                NetEvent::Closed {
                    conn: c,
                    reason: CloseReason::Io(e),
                } if c == conn => {
                    assert!(e.to_string().contains("send queue"), "{e}");
                    failed = true;
                }
                other => panic!("{other:?}"),
            }
        }
        if failed {
            break;
        }
    }
    assert!(failed, "the send queue grew without bound");
    assert_eq!(reactor.connection_count(), 0);
    drop(p);
}

#[test]
fn a_peer_that_does_not_read_is_not_read_either_until_it_catches_up() {
    let config = ReactorConfig {
        output_bytes_max: 1 << 20,
        ..ReactorConfig::default()
    };
    let (mut reactor, mut p, conn) = greeted(config);
    // Far more than the socket buffers take: most of it stays queued.
    let sent = 64;
    for _ in 0..sent {
        reactor.send(conn, &data(256 * 1024)).unwrap();
    }
    turn(&mut reactor);
    assert!(reactor.queued_bytes(conn) > 1 << 20);
    // What it sends now is not read while it does not read.
    p.send(&[heartbeat()]).unwrap();
    for _ in 0..20 {
        let events = turn(&mut reactor);
        assert!(events.is_empty(), "{events:?}");
    }
    // It reads everything: it is read again, and its heartbeat comes.
    let reader = std::thread::spawn(move || {
        for _ in 0..sent {
            assert!(matches!(p.recv().unwrap(), Message::Data(_)));
        }
        p
    });
    assert_eq!(frame(&mut reactor), (conn, vec![heartbeat()]));
    assert!(reactor.queued_bytes(conn) <= 1 << 20);
    // The rest is written while the reactor turns.
    turn_while(&mut reactor, |r| !r.is_flushed(conn));
    drop(reader.join().unwrap());
}

#[test]
fn a_peer_that_reads_nothing_for_the_write_timeout_is_closed_and_a_slow_reader_is_not() {
    let timeout = Duration::from_millis(500);
    let config = ReactorConfig {
        write_timeout: Some(timeout),
        output_bytes_share: 64 * 1024,
        ..ReactorConfig::default()
    };
    let (mut reactor, addr) = reactor(config);
    let mut stuck = peer(addr);
    stuck.send(&[hello()]).unwrap();
    let stuck_conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor), (stuck_conn, vec![hello()]));
    let mut slow = peer(addr);
    slow.send(&[hello()]).unwrap();
    let slow_conn = accepted(&mut reactor);
    assert_eq!(frame(&mut reactor), (slow_conn, vec![hello()]));
    // Far more than the socket buffers take, for each.
    let sent = 64;
    for _ in 0..sent {
        reactor.send(stuck_conn, &data(256 * 1024)).unwrap();
        reactor.send(slow_conn, &data(256 * 1024)).unwrap();
    }
    turn(&mut reactor);
    assert!(reactor.queued_bytes(stuck_conn) > 1 << 20);
    assert!(reactor.queued_bytes(slow_conn) > 1 << 20);
    // One reads a message now and then, each well within the timeout;
    // the other reads nothing.
    let reader = std::thread::spawn(move || {
        for _ in 0..sent {
            assert!(matches!(slow.recv().unwrap(), Message::Data(_)));
            std::thread::sleep(Duration::from_millis(15));
        }
        slow
    });
    let started = Instant::now();
    let (conn, reason) = closed(&mut reactor);
    assert_eq!(conn, stuck_conn, "{reason:?}");
    let CloseReason::WriteTimeout { unwritten, idle } = reason else {
        panic!("{reason:?}")
    };
    assert!(unwritten > 1 << 20, "{unwritten}");
    assert!(idle >= timeout, "{idle:?}");
    assert!(started.elapsed() < PATIENCE);
    // The slow reader gets everything, and is never closed.
    turn_while(&mut reactor, |r| !r.is_flushed(slow_conn));
    let slow = reader.join().unwrap();
    assert!(reactor.is_open(slow_conn));
    drop(slow);
    assert!(!reactor.is_open(stuck_conn));
    drop(stuck);
}

#[test]
fn without_a_write_timeout_a_peer_that_reads_nothing_stays() {
    let (mut reactor, stuck, conn) = greeted(ReactorConfig::default());
    for _ in 0..32 {
        reactor.send(conn, &data(256 * 1024)).unwrap();
    }
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let events = turn(&mut reactor);
        assert!(events.is_empty(), "{events:?}");
    }
    assert!(reactor.is_open(conn));
    drop(stuck);
}

#[test]
fn close_all_delivers_last_messages_and_stops_listening() {
    let (mut reactor, addr) = reactor(ReactorConfig::default());
    let mut p = peer(addr);
    p.send(&[hello()]).unwrap();
    let conn = accepted(&mut reactor);
    reactor.send(conn, &close_message("shutting down")).unwrap();
    let far = std::thread::spawn(move || read_to_eof(&mut p));
    reactor.close_all(Instant::now() + PATIENCE);
    assert_eq!(reactor.connection_count(), 0);
    assert_eq!(far.join().unwrap(), vec![close_message("shutting down")]);
    // Nobody listens any more: refused, or at most accepted by the OS
    // and closed without a byte.
    let answer = TcpStream::connect(addr).and_then(|mut s| {
        s.write_all(&encode_frame(&[hello()]).unwrap())?;
        s.read(&mut [0u8; 1])
    });
    assert!(!matches!(answer, Ok(n) if n > 0), "{answer:?}");
}

#[test]
fn a_peer_that_keeps_sending_is_read_a_budget_per_wakeup_and_nothing_is_lost() {
    let config = ReactorConfig {
        read_bytes_per_wakeup: 1,
        ..ReactorConfig::default()
    };
    let (mut reactor, mut p, conn) = greeted(config);
    // Eight frames each larger than one read of the socket: with a budget
    // of one byte a wakeup reads once, so it completes at most one frame.
    let sent = 8;
    let value = || data(300 * 1024);
    let writer = std::thread::spawn(move || {
        for _ in 0..sent {
            p.send(&[value()]).unwrap();
        }
        p
    });
    let mut got = 0;
    let deadline = Instant::now() + PATIENCE;
    while got < sent {
        assert!(Instant::now() < deadline, "{got} of {sent} frames came");
        let frames = turn(&mut reactor)
            .into_iter()
            .filter(|e| matches!(e, NetEvent::Frame { conn: c, messages } if *c == conn && messages == &[value()]))
            .count();
        // A wakeup stops reading at the first frame's end past the budget.
        assert!(frames <= 1, "{frames} frames in one wakeup");
        got += frames;
    }
    drop(writer.join().unwrap());
}

/// How many times a thread of this process slept so far (blocked in a
/// wait or on a lock; yielding the CPU is not counted), from /proc:
/// `thread` is its directory, `/proc/thread-self` or `/proc/self/task/TID`.
fn sleeps(thread: &str) -> u64 {
    let status = std::fs::read_to_string(format!("{thread}/status")).expect("thread status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches in a thread's status")
}

/// Sends a heartbeat to a peer that answers 20 ms after it has it (without
/// busy-polling: once the polling thread sleeps), and polls until the
/// answer comes; how many times the polling thread slept in that wait,
/// counted by the peer's thread from when it has the heartbeat. With
/// busy-polling the start is not counted: there a thread may wait on the
/// process's memory-map lock while another allocates (1 failure in CI at
/// idle), which is not the reactor choosing to sleep.
fn sleeps_awaiting_an_answer(busy_poll: Duration) -> u64 {
    let config = ReactorConfig {
        busy_poll,
        ..ReactorConfig::default()
    };
    let (mut reactor, mut p, conn) = greeted(config);
    let (started, start) = std::sync::mpsc::channel();
    let poller = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        started.send((tid, sleeps("/proc/thread-self"))).unwrap();
        reactor.send(conn, &heartbeat()).unwrap();
        assert_eq!(frame(&mut reactor), (conn, vec![heartbeat()]));
    });
    let (tid, at_start) = start.recv().unwrap();
    let poller_task = format!("/proc/self/task/{tid}");
    assert_eq!(p.recv().unwrap(), heartbeat());
    // Without busy-polling the poller may be asleep already: count from
    // its start.
    let before = if busy_poll.is_zero() {
        at_start
    } else {
        sleeps(&poller_task)
    };
    std::thread::sleep(Duration::from_millis(20));
    if busy_poll.is_zero() {
        // However late the poller got to its wait, it sleeps before the answer.
        let deadline = Instant::now() + PATIENCE;
        while sleeps(&poller_task) == before {
            assert!(Instant::now() < deadline, "the poller never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let slept = sleeps(&poller_task) - before;
    p.send(&[heartbeat()]).unwrap();
    poller.join().unwrap();
    slept
}

#[test]
fn after_activity_the_reactor_looks_for_the_answer_without_sleeping() {
    // Polling for longer than the answer takes: the answer is found
    // without a sleep (a sleeping thread's vCPU may halt, and waking it
    // costs tens of µs).
    assert_eq!(sleeps_awaiting_an_answer(PATIENCE), 0);
    // Without busy-polling the same wait sleeps.
    assert!(sleeps_awaiting_an_answer(Duration::ZERO) > 0);
}

#[test]
fn an_idle_reactor_sleeps_at_once() {
    let config = ReactorConfig {
        busy_poll: Duration::from_millis(50),
        ..ReactorConfig::default()
    };
    let (mut reactor, _p, _) = greeted(config);
    while reactor.next_event().is_some() {}
    // Idle for longer than the busy-poll since the hello came.
    std::thread::sleep(Duration::from_millis(100));
    let before = sleeps("/proc/thread-self");
    reactor
        .poll(Some(Instant::now() + Duration::from_millis(20)))
        .expect("poll");
    assert!(reactor.next_event().is_none());
    assert!(
        sleeps("/proc/thread-self") > before,
        "an idle reactor spun instead of sleeping"
    );
}
