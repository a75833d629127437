//! Handshakes and worker registration.

use super::*;

#[test]
fn handshake_gives_each_connection_an_id() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Client, Some("me".into())));
    let got = sim.recv(c);
    let Message::Hello(h) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (h.role, h.id, h.version),
        (Role::Scheduler, Some(1), handshake::VERSION)
    );
    assert!(handshake::check_reply(h, Role::Scheduler).is_ok());
    let w = sim.connect();
    sim.send(w, handshake::offer(Role::Worker, None));
    let Message::Hello(h) = &sim.recv(w)[0] else {
        panic!()
    };
    assert_eq!(h.id, Some(2));
}

#[test]
fn another_major_version_is_refused_with_3001_and_closed() {
    let mut sim = Sim::new();
    let c = sim.connect();
    let mut hello = handshake::offer(Role::Client, None);
    hello.version.major = 2;
    sim.send(c, hello);
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!((e.code, e.fatal), (3001, true));
    assert!(sim.is_closed(c));
}

#[test]
fn first_message_not_hello_and_peer_role_are_bad_handshakes() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.send(c, Heartbeat { metrics: None });
    assert_eq!(error_of(&sim.recv(c)).code, 3002);
    assert!(sim.is_closed(c));
    let p = sim.connect();
    sim.send(p, handshake::offer(Role::Peer, None));
    assert_eq!(error_of(&sim.recv(p)).code, 3002);
    assert!(sim.is_closed(p));
}

#[test]
fn poll_timeout_is_the_next_handshake_heartbeat_or_retry_deadline() {
    let mut sim = Sim::new();
    assert_eq!(sim.s.poll_timeout(), None, "nothing to time");
    let after = |sim: &Sim, d: Duration| Some(sim.now + d + JUST_AFTER);
    let c = sim.connect();
    assert_eq!(sim.s.poll_timeout(), after(&sim, Duration::from_secs(10)));
    sim.send(c, handshake::offer(Role::Client, None));
    sim.recv(c);
    // A client has no deadline: the next check finds nothing and stops.
    sim.advance(Duration::from_secs(11));
    assert_eq!(sim.s.poll_timeout(), None);
    let w = sim.worker("w", &["f"], 1);
    assert_eq!(sim.s.poll_timeout(), after(&sim, Duration::from_secs(10)));
    // A heartbeat moves the deadline, found at the next check.
    sim.advance(Duration::from_secs(4));
    sim.send(w, Heartbeat { metrics: None });
    let beat = sim.now;
    sim.advance(Duration::from_secs(7));
    assert!(!sim.is_closed(w));
    assert_eq!(
        sim.s.poll_timeout(),
        Some(beat + Duration::from_secs(10) + JUST_AFTER)
    );
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let mut sim = Sim::new();
    let c = sim.connect();
    sim.advance(Duration::from_secs(11));
    assert_eq!(error_of(&sim.recv(c)).code, 3002);
    assert!(sim.is_closed(c));
}

#[test]
fn a_second_worker_with_a_live_name_gets_3004_and_the_first_keeps_working() {
    let mut sim = Sim::new();
    let w1 = sim.worker("alice", &["inc"], 1);
    let w2 = sim.connect();
    sim.send(w2, handshake::offer(Role::Worker, None));
    sim.recv(w2);
    let mut reg = RegisterWorker {
        name: "alice".into(),
        address: address("other"),
        nthreads: 1,
        memory_limit: None,
        resources: None,
        functions: vec![],
        pid: None,
        held: None,
    };
    sim.send(w2, reg.clone());
    let e = error_of(&sim.recv(w2)).clone();
    assert_eq!((e.code, e.fatal), (3004, true));
    assert!(sim.is_closed(w2) && !sim.is_closed(w1));
    assert_eq!(sim.s.worker_count(), 1);
    // Once alice is gone the name is free again.
    sim.close(w1);
    let w3 = sim.connect();
    sim.send(w3, handshake::offer(Role::Worker, None));
    reg.address = address("alice");
    sim.send(w3, reg);
    assert!(
        matches!(&sim.recv(w3)[1], Message::WorkerRegistered(r) if r.heartbeat_interval_ms == 1000)
    );
}

#[test]
fn a_message_not_allowed_for_the_role_closes_only_that_connection() {
    let mut sim = Sim::new();
    let good = sim.client();
    let bad = sim.client();
    sim.send(
        bad,
        TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        },
    );
    let e = error_of(&sim.recv(bad)).clone();
    assert_eq!((e.code, e.fatal), (2004, true));
    assert!(sim.is_closed(bad) && !sim.is_closed(good));
    // A worker may not submit graphs either, nor talk before registering.
    let w = sim.connect();
    sim.send(w, handshake::offer(Role::Worker, None));
    sim.recv(w);
    sim.send(w, Heartbeat { metrics: None });
    assert!(!sim.is_closed(w));
    sim.send(
        w,
        TaskFinished {
            key: "x".into(),
            nbytes: 1,
            duration_us: None,
            value: None,
        },
    );
    assert_eq!(error_of(&sim.recv(w)).code, 2004);
    sim.send(good, ListDatasets { request: 1 });
    assert!(matches!(&sim.recv(good)[..], [Message::Datasets(_)]));
}
