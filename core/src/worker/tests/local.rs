//! Values on one host (feature `value-local`): the holder's lending and
//! leases, the fetcher's reads through the edge and its fallback.

use super::*;

fn identity(host: u8) -> LocalHost {
    LocalHost {
        host: Bin32([host; 32]),
        pid: 4242,
        probe_at: 0x7000_0000,
        probe: Bin32([9; 32]),
    }
}

/// A registered worker of host 1 whose edge reads peers' memory.
fn local_worker() -> (WorkerState, Timestamp) {
    let now = Timestamp::ZERO;
    let mut config = config(1);
    config.local = Some(identity(1));
    (register(WorkerState::new(config, now), now), now)
}

fn peer_hello(role: Role, host: Option<u8>) -> Message {
    let mut hello = handshake::offer(role, None);
    if let Some(host) = host {
        hello
            .features
            .get_or_insert_with(Vec::new)
            .push(handshake::VALUE_LOCAL.into());
        hello.local = Some(identity(host));
    }
    Message::from(hello)
}

/// The fetcher asked PEER_A for `d` (a task needs it), and the holder
/// answered hello (of `host`, or without the feature): the connection and
/// the request id.
fn asked(w: &mut WorkerState, now: Timestamp, host: Option<u8>) -> (ConnId, u64) {
    let r = task_ref_value;
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let out = drain(w);
    let hello = out
        .iter()
        .find_map(|o| match o {
            WorkerOutput::Send(_, Message::Hello(h)) => Some(h.clone()),
            _ => None,
        })
        .expect("a hello to the holder");
    assert!(handshake::lists(&hello.features, handshake::VALUE_LOCAL));
    assert_eq!(hello.local, Some(identity(1)));
    let sent = fetches(&out);
    let conn = w.outgoing[PEER_A];
    w.handle_message(now, conn, peer_hello(Role::Worker, host));
    (conn, sent[0].1.request)
}

fn lent(request: u64, key: &str, nbytes: u64, lease: u64) -> Message {
    let value = LocalValue {
        at: 0x5000_0000,
        nbytes,
        lease,
    };
    Message::DataLocal(DataLocal {
        request,
        values: [(Key::from(key), value)].into_iter().collect(),
    })
}

fn reads(out: &[WorkerOutput]) -> Vec<LocalRead> {
    out.iter()
        .filter_map(|o| match o {
            WorkerOutput::ReadLocal(read) => Some(read.clone()),
            _ => None,
        })
        .collect()
}

fn dones(out: &[WorkerOutput]) -> Vec<ValueLocalDone> {
    out.iter()
        .filter_map(|o| match o {
            WorkerOutput::Send(_, Message::ValueLocalDone(d)) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_value_lent_by_a_holder_of_this_host_is_read_by_the_edge_and_its_lease_given_back() {
    let (mut w, now) = local_worker();
    let (conn, request) = asked(&mut w, now, Some(1));
    let value = raw(Value::Binary(vec![7; 100]));
    let n = value.len() as u64;
    w.handle_message(now, conn, lent(request, "d", n, 5));
    let out = drain(&mut w);
    let read = reads(&out);
    assert_eq!(
        read,
        vec![LocalRead {
            conn,
            request,
            key: "d".into(),
            pid: 4242,
            probe_at: 0x7000_0000,
            probe: [9; 32],
            at: 0x5000_0000,
            nbytes: n,
            lease: 5,
        }]
    );
    assert!(jobs(out).is_empty(), "nothing runs before the read is done");

    let later = now + Duration::from_millis(3);
    w.handle_local_read(later, read[0].clone(), Ok(value.clone()));
    let out = drain(&mut w);
    assert_eq!(
        dones(&out),
        vec![ValueLocalDone {
            leases: vec![5],
            failed: None
        }]
    );
    let started = jobs(out);
    assert_eq!(started.len(), 1);
    assert_eq!(*started[0].deps[0].1, value);
    let metrics = w.metrics();
    assert_eq!(metrics.transfer_local_bytes, Some(n));
    assert_eq!(metrics.transfer_bytes, Some(n));
    assert_eq!(metrics.transfer_us, Some(3000));
}

#[test]
fn a_failed_read_gives_the_lease_back_failed_and_asks_again_by_the_connection() {
    let (mut w, now) = local_worker();
    let (conn, request) = asked(&mut w, now, Some(1));
    w.handle_message(now, conn, lent(request, "d", 100, 0));
    let read = reads(&drain(&mut w));
    let refused = Err("process_vm_readv: Operation not permitted (os error 1)".to_owned());
    w.handle_local_read(now, read[0].clone(), refused);
    let out = drain(&mut w);
    assert_eq!(
        dones(&out),
        vec![ValueLocalDone {
            leases: vec![0],
            failed: Some(true)
        }]
    );
    let again = fetches(&out);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.request, request, "the same request");
    assert!(out.iter().any(
        |o| matches!(o, WorkerOutput::Log(r) if r.message.contains("reading its memory failed"))
    ));
    // A data-local the holder sent before it heard is not read either.
    w.handle_message(now, conn, lent(request, "d", 100, 1));
    let out = drain(&mut w);
    assert!(reads(&out).is_empty());
    assert_eq!(dones(&out)[0].leases, vec![1]);
    w.handle_message(
        now,
        conn,
        data_reply(request, &[("d", Value::from(3))], &[]),
    );
    assert_eq!(
        jobs(drain(&mut w)).len(),
        1,
        "the value came by the connection"
    );
    assert_eq!(w.metrics().transfer_local_bytes, Some(0));
}

#[test]
fn a_read_of_the_wrong_length_is_a_failed_read() {
    let (mut w, now) = local_worker();
    let (conn, request) = asked(&mut w, now, Some(1));
    w.handle_message(now, conn, lent(request, "d", 100, 0));
    let read = reads(&drain(&mut w));
    w.handle_local_read(now, read[0].clone(), Ok(raw(Value::from(1))));
    let out = drain(&mut w);
    assert_eq!(dones(&out)[0].failed, Some(true));
    assert_eq!(fetches(&out).len(), 1);
    assert!(jobs(out).is_empty());
}

#[test]
fn hostile_lending_is_never_read_into_a_large_allocation() {
    let (mut w, now) = local_worker();
    let (conn, request) = asked(&mut w, now, Some(1));
    // Over the value bound: never read, asked again.
    let huge = w.config.value_bytes_max as u64 + 1;
    w.handle_message(now, conn, lent(request, "d", huge, 0));
    let out = drain(&mut w);
    assert!(reads(&out).is_empty());
    assert_eq!(dones(&out)[0].failed, Some(true));
    assert_eq!(fetches(&out)[0].1.keys, vec![Key::from("d")]);
    // A key not asked for, a request not made: the lease goes back, unread.
    w.handle_message(now, conn, lent(request, "other", 10, 1));
    w.handle_message(now, conn, lent(request + 100, "d", 10, 2));
    let out = drain(&mut w);
    assert!(reads(&out).is_empty());
    let leases: Vec<u64> = dones(&out).into_iter().flat_map(|d| d.leases).collect();
    assert_eq!(leases, vec![1, 2]);
}

#[test]
fn data_local_on_a_connection_that_did_not_negotiate_it_is_refused() {
    let (mut w, now) = local_worker();
    // The holder is of another host: the path is off, data-local refused.
    let (conn, request) = asked(&mut w, now, Some(2));
    w.handle_message(now, conn, lent(request, "d", 10, 0));
    let out = drain(&mut w);
    assert!(reads(&out).is_empty());
    assert!(out.iter().any(|o| matches!(
        o,
        WorkerOutput::Send(c, Message::ErrorReport(e))
            if *c == conn && e.code == ErrorCode::UnexpectedMessage.number() && e.fatal
    )));
    assert!(out
        .iter()
        .any(|o| matches!(o, WorkerOutput::Close(c) if *c == conn)));
}

/// A peer of `host` connects and says hello (with the feature when
/// `host` is given): the connection and the worker's reply.
fn incoming_peer(w: &mut WorkerState, now: Timestamp, host: Option<u8>) -> (ConnId, Hello) {
    let conn = new_conn();
    w.handle_connected(now, conn);
    w.handle_message(now, conn, peer_hello(Role::Peer, host));
    let out = drain(w);
    let reply = out
        .into_iter()
        .find_map(|o| match o {
            WorkerOutput::Send(c, Message::Hello(h)) if c == conn => Some(*h),
            _ => None,
        })
        .expect("a hello reply");
    (conn, reply)
}

fn holder_with(w: &mut WorkerState, key: &str, bytes: usize) -> Arc<RawValue> {
    let value = raw(Value::Binary(vec![1; bytes]));
    w.store(Key::from(key), Arc::new(value));
    Arc::clone(w.value(key).expect("stored"))
}

#[test]
fn a_holder_lends_large_values_in_memory_to_a_peer_of_its_host_until_done() {
    let (mut w, now) = local_worker();
    let big = holder_with(&mut w, "big", 2 << 20);
    holder_with(&mut w, "small", 10);
    let (conn, reply) = incoming_peer(&mut w, now, Some(1));
    assert!(handshake::lists(&reply.features, handshake::VALUE_LOCAL));
    assert_eq!(reply.local, Some(identity(1)));
    let get = GetData {
        request: 9,
        keys: vec!["big".into(), "small".into(), "gone".into()],
    };
    w.handle_message(now, conn, Message::GetData(get));
    let out = drain(&mut w);
    let sent: Vec<&Message> = out
        .iter()
        .filter_map(|o| match o {
            WorkerOutput::Send(c, m) if *c == conn => Some(m),
            _ => None,
        })
        .collect();
    let [Message::DataLocal(lent), Message::Data(data)] = &sent[..] else {
        panic!("{sent:?}");
    };
    assert_eq!(lent.request, 9);
    let entry = &lent.values[&Key::from("big")];
    assert_eq!(entry.at, big.as_bytes().as_ptr() as u64);
    assert_eq!(entry.nbytes, big.len() as u64);
    assert_eq!(
        data.data.keys().collect::<Vec<_>>(),
        vec![&Key::from("small")]
    );
    assert_eq!(data.missing, vec![Key::from("gone")]);
    // Freed here, the value stays where it is, lent, until done.
    assert_eq!(
        Arc::strong_count(&big),
        3,
        "the store, the lease, this test"
    );
    w.handle_scheduler_message(
        now,
        Message::FreeKeys(FreeKeys {
            keys: ["big"].into(),
        }),
    );
    let _ = drain(&mut w);
    assert_eq!(Arc::strong_count(&big), 2, "the lease and this test");
    let done = ValueLocalDone {
        leases: vec![entry.lease, 999],
        failed: None,
    };
    w.handle_message(now, conn, Message::ValueLocalDone(done));
    assert_eq!(Arc::strong_count(&big), 1, "given back");
    assert!(w.knows(conn), "an unknown lease is ignored");
}

#[test]
fn after_a_failed_read_or_to_another_host_values_go_in_data() {
    let (mut w, now) = local_worker();
    holder_with(&mut w, "big", 2 << 20);
    let get = |request| {
        Message::GetData(GetData {
            request,
            keys: vec!["big".into()],
        })
    };
    let replies = |w: &mut WorkerState, conn| -> Vec<&'static str> {
        drain(w)
            .into_iter()
            .filter_map(|o| match o {
                WorkerOutput::Send(c, m) if c == conn => Some(m.op()),
                _ => None,
            })
            .collect()
    };
    // Another host, and a peer without the feature: `data`.
    for host in [Some(2), None] {
        let (conn, reply) = incoming_peer(&mut w, now, host);
        assert_eq!(reply.local.is_some(), host.is_some());
        w.handle_message(now, conn, get(1));
        assert_eq!(replies(&mut w, conn), vec!["data"]);
    }
    // This host: lent, until the peer says a read failed.
    let (conn, _) = incoming_peer(&mut w, now, Some(1));
    w.handle_message(now, conn, get(1));
    assert_eq!(replies(&mut w, conn), vec!["data-local"]);
    let failed = ValueLocalDone {
        leases: vec![0],
        failed: Some(true),
    };
    w.handle_message(now, conn, Message::ValueLocalDone(failed));
    w.handle_message(now, conn, get(1));
    assert_eq!(replies(&mut w, conn), vec!["data"]);
}

#[test]
fn a_worker_whose_edge_reads_no_memory_lists_no_value_local() {
    let (mut w, now) = worker(1);
    let (_, reply) = incoming_peer(&mut w, now, Some(1));
    assert!(!handshake::lists(&reply.features, handshake::VALUE_LOCAL));
    assert_eq!(reply.local, None);
}

#[test]
fn values_lent_on_a_closed_connection_are_kept_for_the_grace_then_let_go() {
    let (mut w, now) = local_worker();
    let big = holder_with(&mut w, "big", 2 << 20);
    let (conn, _) = incoming_peer(&mut w, now, Some(1));
    let get = GetData {
        request: 1,
        keys: vec!["big".into()],
    };
    w.handle_message(now, conn, Message::GetData(get));
    let _ = drain(&mut w);
    let free = FreeKeys {
        keys: ["big"].into(),
    };
    w.handle_scheduler_message(now, Message::FreeKeys(free));
    w.handle_closed(now, conn, "closed by the other side");
    let _ = drain(&mut w);
    // A fetcher may still be copying it: its buffer takes no other value.
    assert_eq!(
        Arc::strong_count(&big),
        2,
        "the retired lease and this test"
    );
    let due = w.poll_timeout().expect("the grace's end is a timeout");
    assert!(due <= now + LEASE_GRACE);
    w.handle_timeout(now + (LEASE_GRACE - Duration::from_millis(1)));
    assert_eq!(Arc::strong_count(&big), 2, "not before the grace is over");
    w.handle_timeout(now + LEASE_GRACE);
    assert_eq!(Arc::strong_count(&big), 1, "let go");
}
