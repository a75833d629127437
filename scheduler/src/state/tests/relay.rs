//! Large values relayed a range at a time (issue 20 item 3): the client
//! gets them as value-parts, the next range is asked only while its window
//! has room, nothing else comes between the parts and the reply, a lost
//! holder is replaced at the same offset, and a value that cannot be
//! finished closes only that client.

use dask_core::parts::ValueAssembler;

use super::*;
use crate::state::relay::{RELAY_RANGE_BYTES, RELAY_VALUE_BYTES_MIN};

/// The value relayed: a binary a few ranges long.
fn big_value() -> RawValue {
    let n = (RELAY_VALUE_BYTES_MIN + RELAY_RANGE_BYTES + 12_345) as usize;
    raw(Value::Binary((0..n).map(|i| (i % 251) as u8).collect()))
}

/// A dask/1.1 client that lists `value-parts` (as dask-rs's do).
fn parts_client(sim: &mut Sim) -> ConnId {
    let c = sim.connect();
    sim.send(c, handshake::offer(Role::Client, None));
    assert!(matches!(&sim.recv(c)[..], [Message::Hello(_)]));
    c
}

/// `big` scattered to every worker in `ws` (each then holds it), and
/// `small` (a few bytes) to the first.
fn scatter_to(sim: &mut Sim, c: ConnId, ws: &[ConnId], value: &RawValue) {
    sim.send(
        c,
        Scatter {
            request: 1,
            data: [(Key::from("big"), value.clone())].into(),
            workers: None,
            broadcast: Some(true),
            ack: None,
        },
    );
    for &w in ws {
        let got = sim.recv(w);
        let [Message::PutData(put)] = &got[..] else {
            panic!("{got:?}")
        };
        let request = put.request;
        sim.send(
            w,
            DataStored {
                request,
                nbytes: [(Key::from("big"), value.len() as u64)].into(),
            },
        );
    }
    sim.send(
        c,
        Scatter {
            request: 2,
            data: [(Key::from("small"), raw(Value::from(7)))].into(),
            workers: Some(vec![address("w1")]),
            broadcast: None,
            ack: None,
        },
    );
    let got = sim.recv(ws[0]);
    let [Message::PutData(put)] = &got[..] else {
        panic!("{got:?}")
    };
    let request = put.request;
    sim.send(
        ws[0],
        DataStored {
            request,
            nbytes: [(Key::from("small"), 1)].into(),
        },
    );
    let got = sim.recv(c);
    assert_eq!(finished(&got), ["big", "small"], "{got:?}");
}

/// The one `get-value-range` sent to `w` since the last look, if any.
fn range_asked(sim: &mut Sim, w: ConnId) -> Option<GetValueRange> {
    let got = sim.recv(w);
    let ranges: Vec<&GetValueRange> = got
        .iter()
        .filter_map(|m| match m {
            Message::GetValueRange(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(ranges.len() <= 1, "one range at a time: {got:?}");
    ranges.first().map(|r| (*r).clone())
}

/// `w` answers `asked` with the bytes of `value` it names.
fn send_range(sim: &mut Sim, w: ConnId, asked: &GetValueRange, value: &RawValue) {
    let bytes = value.clone().into_shared();
    let start = asked.offset as usize;
    let end = (start + asked.bytes_max as usize).min(bytes.len());
    sim.send(
        w,
        ValueRange {
            request: asked.request,
            key: asked.key.clone(),
            nbytes: bytes.len() as u64,
            offset: asked.offset,
            part: Bin(bytes.slice(start..end)),
        },
    );
}

/// Client `c` gathers `ks` (request 10).
fn gather(sim: &mut Sim, c: ConnId, ks: &[&str]) {
    sim.send(
        c,
        Gather {
            request: 10,
            keys: keys(ks),
        },
    );
}

/// `w` answers `asked`: it does not hold the value.
fn not_there(sim: &mut Sim, w: ConnId, asked: &GetValueRange) {
    sim.send(
        w,
        Data {
            request: asked.request,
            data: BTreeMap::new(),
            missing: vec![asked.key.clone()],
        },
    );
}

/// The client read everything: the loop reports nothing waits for it.
fn client_read(sim: &mut Sim, c: ConnId) {
    sim.s.handle_output_queued(sim.now, &[(c, 0)]);
    sim.pump();
}

/// A client gathering `big`, held by two workers: the client, the holder
/// asked first with its range, the other holder, and the value.
fn gather_from_two_holders(sim: &mut Sim) -> (ConnId, (ConnId, GetValueRange), ConnId, RawValue) {
    let c = parts_client(sim);
    let w1 = sim.worker("w1", &["f"], 1);
    let w2 = sim.worker("w2", &["f"], 1);
    let value = big_value();
    scatter_to(sim, c, &[w1, w2], &value);
    gather(sim, c, &["big"]);
    let (first, other) = match (range_asked(sim, w1), range_asked(sim, w2)) {
        (Some(r), None) => ((w1, r), w2),
        (None, Some(r)) => ((w2, r), w1),
        asked => panic!("one holder is asked: {asked:?}"),
    };
    (c, first, other, value)
}

/// What the client acts on: its messages with the parts put back.
fn assembled(messages: Vec<Message>) -> Vec<Message> {
    ValueAssembler::default()
        .take(messages)
        .expect("the parts and the reply carrying them are in order")
}

#[test]
fn a_large_value_goes_to_the_client_a_range_at_a_time_within_its_window() {
    let mut sim = Sim::new();
    let c = parts_client(&mut sim);
    let w = sim.worker("w1", &["f"], 1);
    let value = big_value();
    scatter_to(&mut sim, c, &[w], &value);

    gather(&mut sim, c, &["big", "small"]);
    // The small value first, as before; then the large one, by ranges.
    let got = sim.recv(w);
    let [Message::GetData(get)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(get.keys, keys(&["small"]));
    let request = get.request;
    sim.send(
        w,
        Data {
            request,
            data: [(Key::from("small"), raw(Value::from(7)))].into(),
            missing: vec![],
        },
    );
    let mut to_client = Vec::new();
    let mut asked = range_asked(&mut sim, w).expect("the first range");
    assert_eq!((asked.offset, asked.bytes_max), (0, RELAY_RANGE_BYTES));
    let mut first = true;
    loop {
        send_range(&mut sim, w, &asked, &value);
        if first {
            // The client asks something else once a part went: its answer
            // waits for the gather's reply, after the parts.
            sim.send(c, ClusterInfo { request: 11 });
            first = false;
        }
        to_client.extend(sim.recv(c));
        // The client has not read: no range is asked until it does.
        assert!(range_asked(&mut sim, w).is_none(), "the window is full");
        client_read(&mut sim, c);
        match range_asked(&mut sim, w) {
            Some(next) => asked = next,
            None => {
                to_client.extend(sim.recv(c));
                break;
            }
        }
    }
    let parts = to_client
        .iter()
        .filter(|m| matches!(m, Message::ValuePart(_)))
        .count();
    assert_eq!(parts as u64, value.len() as u64 / RELAY_RANGE_BYTES + 1);
    let acted_on = assembled(to_client);
    let [Message::GatherReply(reply), Message::ClusterInfoReply(_)] = &acted_on[..] else {
        panic!("{acted_on:?}")
    };
    assert_eq!(reply.request, 10);
    assert_eq!(reply.data.get(&Key::from("big")), Some(&value));
    assert_eq!(
        reply.data.get(&Key::from("small")),
        Some(&raw(Value::from(7)))
    );
    assert!(reply.missing.is_empty());
}

#[test]
fn a_client_without_value_parts_gets_the_large_value_whole() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w1", &["f"], 1);
    let value = big_value();
    scatter_to(&mut sim, c, &[w], &value);
    gather(&mut sim, c, &["big"]);
    let got = sim.recv(w);
    assert!(
        matches!(&got[..], [Message::GetData(g)] if g.keys == keys(&["big"])),
        "{got:?}"
    );
}

#[test]
fn a_holder_lost_mid_value_is_replaced_by_another_at_the_same_offset() {
    let mut sim = Sim::new();
    let (c, first, other, value) = gather_from_two_holders(&mut sim);
    send_range(&mut sim, first.0, &first.1, &value);
    let mut to_client = sim.recv(c);
    client_read(&mut sim, c);
    assert!(range_asked(&mut sim, first.0).is_some());
    // The holder goes: the other one goes on where it stopped.
    sim.close(first.0);
    let mut asked = range_asked(&mut sim, other).expect("the other holder is asked");
    assert_eq!(asked.offset, RELAY_RANGE_BYTES);
    loop {
        send_range(&mut sim, other, &asked, &value);
        to_client.extend(sim.recv(c));
        client_read(&mut sim, c);
        match range_asked(&mut sim, other) {
            Some(next) => asked = next,
            None => break,
        }
    }
    to_client.extend(sim.recv(c));
    let acted_on = assembled(to_client);
    // `small` was on w1 alone: if w1 went, its key-lost waited for the
    // reply.
    let [Message::GatherReply(reply), rest @ ..] = &acted_on[..] else {
        panic!("{acted_on:?}")
    };
    assert!(
        rest.iter().all(|m| matches!(m, Message::KeyLost(_))),
        "{acted_on:?}"
    );
    assert_eq!(reply.data.get(&Key::from("big")), Some(&value));
}

#[test]
fn a_value_partly_sent_that_no_holder_can_finish_closes_only_that_client() {
    let mut sim = Sim::new();
    let c = parts_client(&mut sim);
    let other = parts_client(&mut sim);
    let w = sim.worker("w1", &["f"], 1);
    let value = big_value();
    scatter_to(&mut sim, c, &[w], &value);
    gather(&mut sim, c, &["big"]);
    let asked = range_asked(&mut sim, w).expect("the first range");
    send_range(&mut sim, w, &asked, &value);
    assert!(matches!(&sim.recv(c)[..], [Message::ValuePart(_)]));
    client_read(&mut sim, c);
    let asked = range_asked(&mut sim, w).expect("the next range");
    // The holder no longer has it, and nobody else does.
    not_there(&mut sim, w, &asked);
    assert!(sim.is_closed(c), "the half-sent value cannot be finished");
    assert!(!sim.is_closed(other));
    sim.send(other, ClusterInfo { request: 3 });
    assert!(matches!(
        &sim.recv(other)[..],
        [Message::ClusterInfoReply(_)]
    ));
    assert!(!sim.is_closed(w), "the worker stays");
}

#[test]
fn a_value_no_holder_has_before_any_part_is_listed_missing() {
    let mut sim = Sim::new();
    let c = parts_client(&mut sim);
    let w = sim.worker("w1", &["f"], 1);
    let value = big_value();
    scatter_to(&mut sim, c, &[w], &value);
    gather(&mut sim, c, &["big"]);
    let asked = range_asked(&mut sim, w).expect("the first range");
    not_there(&mut sim, w, &asked);
    let got = sim.recv(c);
    let reply = got
        .iter()
        .find_map(|m| match m {
            Message::GatherReply(r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(reply.missing, keys(&["big"]));
    assert!(!sim.is_closed(c));
}

#[test]
fn a_holder_that_leaves_while_the_client_is_slow_is_replaced_when_it_reads() {
    let mut sim = Sim::new();
    let (c, first, other, value) = gather_from_two_holders(&mut sim);
    send_range(&mut sim, first.0, &first.1, &value);
    // The client has not read: nothing is asked; meanwhile the holder goes.
    sim.close(first.0);
    assert!(range_asked(&mut sim, other).is_none());
    client_read(&mut sim, c);
    let asked = range_asked(&mut sim, other).expect("the other holder is asked");
    assert_eq!(asked.offset, RELAY_RANGE_BYTES);
}
