//! Data: scatter, broadcast, gather, datasets and cluster info.

use super::*;

pub(super) fn scatter_one(sim: &mut Sim, c: ConnId, key: &str, value: i64) -> Scatter {
    let m = Scatter {
        request: 7,
        data: [(Key::from(key), raw(Value::from(value)))].into(),
        workers: None,
        broadcast: None,
        ack: None,
    };
    sim.send(c, m.clone());
    m
}

#[test]
fn scatter_stores_on_a_worker_and_gather_fetches_over_its_connection() {
    let mut sim = Sim::new();
    let c = sim.client();
    scatter_one(&mut sim, c, "x", 42);
    let e = error_of(&sim.recv(c)).clone();
    assert_eq!((e.code, e.fatal, e.request), (5001, false, Some(7)));

    let w = sim.worker("w", &["f"], 1);
    scatter_one(&mut sim, c, "x", 42);
    let got = sim.recv(w);
    let [Message::PutData(put)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(put.data[&Key::from("x")], raw(Value::from(42)));
    sim.send(
        w,
        DataStored {
            request: put.request,
            nbytes: [(Key::from("x"), 1)].into(),
        },
    );
    assert_eq!(finished(&sim.recv(c)), ["x"]);
    assert_eq!(sim.state("x"), Some("memory"));
    // The same key again is a duplicate.
    scatter_one(&mut sim, c, "x", 1);
    assert_eq!(error_of(&sim.recv(c)).code, 4002);

    sim.send(
        c,
        Gather {
            request: 8,
            keys: keys(&["x", "nothing"]),
        },
    );
    let got = sim.recv(w);
    let [Message::GetData(get)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(get.keys, keys(&["x"]));
    assert!(sim.recv(c).is_empty(), "the reply waits for the worker");
    sim.send(
        w,
        Data {
            request: get.request,
            data: [(Key::from("x"), raw(Value::from(42)))].into(),
            missing: vec![],
        },
    );
    let got = sim.recv(c);
    let [Message::GatherReply(g)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!((g.request, &g.missing), (8, &keys(&["nothing"])));
    assert_eq!(g.data[&Key::from("x")], raw(Value::from(42)));

    // Scattered data feeds tasks like any result.
    sim.submit(c, 9, vec![spec("y", "f", vec![r("x")])], &["y"]);
    let got = sim.recv(w);
    assert_eq!(computes(&got)[0].who_has[&Key::from("x")], [address("w")]);
}

/// The put-data request `w` got (and nothing else).
pub(super) fn put_request(sim: &mut Sim, w: ConnId) -> u64 {
    let got = sim.recv(w);
    let [Message::PutData(put)] = &got[..] else {
        panic!("{got:?}")
    };
    put.request
}

pub(super) fn broadcast(sim: &mut Sim, c: ConnId, request: u64, key: &str) {
    sim.send(
        c,
        Scatter {
            request,
            data: [(Key::from(key), raw(Value::from(1)))].into(),
            workers: None,
            broadcast: Some(true),
            ack: None,
        },
    );
}

pub(super) fn stored(sim: &mut Sim, w: ConnId, request: u64, key: &str) {
    sim.send(
        w,
        DataStored {
            request,
            nbytes: [(Key::from(key), 1)].into(),
        },
    );
}

#[test]
fn broadcast_puts_every_value_on_every_worker() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2) = (sim.worker("w1", &["f"], 1), sim.worker("w2", &["f"], 1));
    broadcast(&mut sim, c, 1, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));
    stored(&mut sim, w1, p1, "b");
    // Not announced, nor known, until every copy is stored.
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.state("b"), None);
    // Graphs may not use the key meanwhile (it holds scattered data).
    sim.submit(c, 2, vec![spec("b", "f", vec![])], &["b"]);
    assert_eq!(error_of(&sim.recv(c)).code, 4002);
    stored(&mut sim, w2, p2, "b");
    assert_eq!(finished(&sim.recv(c)), ["b"], "one event for two copies");
    sim.send(
        c,
        WhoHas {
            request: 2,
            keys: keys(&["b"]),
        },
    );
    let got = sim.recv(c);
    let [Message::WhoHasReply(r)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(r.who_has[&Key::from("b")], [address("w1"), address("w2")]);
}

#[test]
fn a_scatter_released_before_every_copy_is_stored_leaves_nothing() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2) = (sim.worker("w1", &[], 1), sim.worker("w2", &[], 1));
    broadcast(&mut sim, c, 1, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));
    stored(&mut sim, w1, p1, "b");
    sim.send(
        c,
        ReleaseKeys {
            keys: key_list(&["b"]),
        },
    );
    stored(&mut sim, w2, p2, "b");
    // No event, no task; both copies are freed.
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(freed(&sim.recv(w1)), ["b"]);
    assert_eq!(freed(&sim.recv(w2)), ["b"]);
    // The key can be scattered again.
    broadcast(&mut sim, c, 2, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));

    // Cancelled: the same, and the client is told.
    stored(&mut sim, w2, p2, "b");
    sim.send(
        c,
        CancelKeys {
            keys: keys(&["b"]),
            force: None,
        },
    );
    assert!(matches!(&sim.recv(c)[..], [Message::KeyCancelled(k)] if k.key.as_str() == "b"));
    stored(&mut sim, w1, p1, "b");
    assert!(sim.recv(c).is_empty());
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(freed(&sim.recv(w1)), ["b"]);
    assert_eq!(freed(&sim.recv(w2)), ["b"]);

    // The client leaves: the same.
    broadcast(&mut sim, c, 3, "b");
    let (p1, p2) = (put_request(&mut sim, w1), put_request(&mut sim, w2));
    stored(&mut sim, w1, p1, "b");
    sim.close(c);
    stored(&mut sim, w2, p2, "b");
    assert_eq!(sim.s.task_count(), 0);
    assert_eq!(freed(&sim.recv(w1)), ["b"]);
    assert_eq!(freed(&sim.recv(w2)), ["b"]);
}

#[test]
fn a_broadcast_is_finished_once_every_targeted_worker_answered_or_left() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2, w3) = (
        sim.worker("w1", &[], 1),
        sim.worker("w2", &[], 1),
        sim.worker("w3", &[], 1),
    );
    broadcast(&mut sim, c, 1, "b");
    let p1 = put_request(&mut sim, w1);
    let p2 = put_request(&mut sim, w2);
    sim.recv(w3);
    // w2 stores it and then leaves; w3 leaves before storing it.
    stored(&mut sim, w2, p2, "b");
    sim.close(w2);
    assert!(sim.recv(c).is_empty());
    sim.close(w3);
    assert!(sim.recv(c).is_empty());
    stored(&mut sim, w1, p1, "b");
    assert_eq!(finished(&sim.recv(c)), ["b"]);
    sim.send(
        c,
        WhoHas {
            request: 2,
            keys: keys(&["b"]),
        },
    );
    let got = sim.recv(c);
    let [Message::WhoHasReply(r)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(r.who_has[&Key::from("b")], [address("w1")]);

    // When no copy is left at the end, the key is lost.
    let w4 = sim.worker("w4", &[], 1);
    broadcast(&mut sim, c, 3, "l");
    let p1 = put_request(&mut sim, w1);
    let p4 = put_request(&mut sim, w4);
    stored(&mut sim, w4, p4, "l");
    sim.close(w4);
    sim.send(
        w1,
        DataStored {
            request: p1,
            nbytes: BTreeMap::new(),
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::KeyLost(l)] if l.key.as_str() == "l"),
        "{got:?}"
    );
    assert_eq!(sim.state("l"), None);
}

/// Scatters `keys` (values 1, 2, ...) to the one worker `w` and answers
/// its put-data.
pub(super) fn scatter_to(sim: &mut Sim, c: ConnId, w: ConnId, ks: &[&str]) {
    sim.send(
        c,
        Scatter {
            request: 1,
            data: ks
                .iter()
                .zip(1..)
                .map(|(k, i)| (Key::from(*k), raw(Value::from(i))))
                .collect(),
            workers: None,
            broadcast: None,
            ack: None,
        },
    );
    let request = put_request(sim, w);
    sim.send(
        w,
        DataStored {
            request,
            nbytes: ks.iter().map(|k| (Key::from(*k), 1)).collect(),
        },
    );
    assert_eq!(finished(&sim.recv(c)).len(), ks.len());
}

/// The get-data requests `w` got, as (request, keys).
pub(super) fn gets(sim: &mut Sim, w: ConnId) -> Vec<(u64, Vec<Key>)> {
    sim.recv(w)
        .into_iter()
        .map(|m| match m {
            Message::GetData(g) => (g.request, g.keys),
            other => panic!("expected get-data, got {other:?}"),
        })
        .collect()
}

pub(super) fn too_large(request: u64, ks: &[&str]) -> ErrorReport {
    ErrorReport {
        code: 5002,
        message: "values do not fit in one message".into(),
        fatal: false,
        request: Some(request),
        keys: Some(keys(ks)),
    }
}

#[test]
fn a_holder_refusing_a_get_with_5002_gets_the_keys_asked_apart_and_the_client_5002() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_to(&mut sim, c, w, &["a", "b", "c"]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a", "b", "c"]),
        },
    );
    let [(first, asked)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    assert_eq!(asked, &keys(&["a", "b", "c"]));
    // Too large together, and b by itself: b alone, the others together.
    sim.send(w, too_large(*first, &["b"]));
    assert!(sim.recv(c).is_empty(), "the gather is still being answered");
    let again = gets(&mut sim, w);
    let asked: Vec<&Vec<Key>> = again.iter().map(|(_, k)| k).collect();
    assert_eq!(asked, [&keys(&["b"]), &keys(&["a", "c"])]);
    sim.send(
        w,
        Data {
            request: again[1].0,
            data: [("a", 1), ("c", 3)]
                .into_iter()
                .map(|(k, v)| (Key::from(k), raw(Value::from(v))))
                .collect(),
            missing: vec![],
        },
    );
    assert!(sim.recv(c).is_empty());
    sim.send(w, too_large(again[0].0, &["b"]));
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!(
        (e.code, e.fatal, e.request, e.keys.clone()),
        (5002, false, Some(2), Some(keys(&["b"]))),
        "{got:?}"
    );
    assert!(e.message.contains("\"b\""), "{}", e.message);
    // The refusal costs no replica: b is still there to be used.
    assert_eq!(sim.state("b"), Some("memory"));

    // A holder naming none of the keys: each is asked for alone.
    sim.send(
        c,
        Gather {
            request: 3,
            keys: keys(&["a", "c"]),
        },
    );
    let [(request, _)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    sim.send(w, too_large(*request, &[]));
    let asked: Vec<Vec<Key>> = gets(&mut sim, w).into_iter().map(|(_, k)| k).collect();
    assert_eq!(asked, [keys(&["a"]), keys(&["c"])]);
}

#[test]
fn a_gather_reply_that_would_not_fit_in_a_frame_is_a_5002_listing_its_keys() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_to(&mut sim, c, w, &["a", "b"]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a", "b"]),
        },
    );
    let [(request, _)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    // Two values of 130 MiB each: each fits in a frame, not both.
    let big = raw(Value::Binary(vec![0; 130 << 20]));
    sim.send(
        w,
        Data {
            request: *request,
            data: [(Key::from("a"), big.clone()), (Key::from("b"), big)].into(),
            missing: vec![],
        },
    );
    let got = sim.recv(c);
    let e = error_of(&got);
    assert_eq!(
        (e.code, e.request, e.keys.clone()),
        (5002, Some(2), Some(keys(&["a", "b"])))
    );
    assert!(e.message.contains("fewer keys"), "{}", e.message);
}

#[test]
fn an_implausible_nbytes_is_reported_clamped() {
    // PROTOCOL.md#value-too-large: no value is larger than what a receiver
    // holds in parts (dask-rs: 64 GiB), so a larger nbytes is false;
    // dask-rs clamps it, and key-finished carries the clamped value (issue
    // 18.2: this was undocumented).
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let c = sim.client();
    sim.submit(c, 1, vec![spec("k", "f", vec![])], &["k"]);
    assert_eq!(compute_keys(&sim.recv(w)), ["k"]);
    sim.finish(w, "k", u64::MAX);
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::KeyFinished(f)] if f.nbytes == dask_core::parts::PARTS_BYTES_MAX),
        "{got:?}"
    );
}

#[test]
fn a_key_gathered_twice_in_one_request_is_asked_and_answered_once() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_to(&mut sim, c, w, &["a"]);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["a", "a"]),
        },
    );
    let [(request, asked)] = &gets(&mut sim, w)[..] else {
        panic!()
    };
    assert_eq!(asked, &keys(&["a"]));
    sim.send(
        w,
        Data {
            request: *request,
            data: [(Key::from("a"), raw(Value::from(1)))].into(),
            missing: vec![],
        },
    );
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::GatherReply(g)] if g.data.len() == 1 && g.missing.is_empty()),
        "{got:?}"
    );
    assert_eq!(
        sim.state("a"),
        Some("memory"),
        "the holder keeps its replica"
    );
}

#[test]
fn a_put_data_refused_with_an_error_loses_its_keys_instead_of_hanging() {
    let mut sim = Sim::new();
    let c = sim.client();
    let w = sim.worker("w", &[], 1);
    scatter_one(&mut sim, c, "x", 1);
    let request = put_request(&mut sim, w);
    sim.send(w, too_large(request, &["x"]));
    let got = sim.recv(c);
    assert!(
        matches!(&got[..], [Message::KeyLost(l)] if l.key.as_str() == "x" && l.message.contains("refused")),
        "{got:?}"
    );
    assert_eq!(sim.state("x"), None);
}

#[test]
fn gather_asks_another_holder_when_one_says_missing() {
    let mut sim = Sim::new();
    let c = sim.client();
    let (w1, w2) = (sim.worker("w1", &[], 1), sim.worker("w2", &[], 1));
    sim.send(
        c,
        Scatter {
            request: 1,
            data: [(Key::from("b"), raw(Value::from(1)))].into(),
            workers: None,
            broadcast: Some(true),
            ack: None,
        },
    );
    for w in [w1, w2] {
        let Message::PutData(put) = &sim.recv(w)[0] else {
            panic!()
        };
        let request = put.request;
        sim.send(
            w,
            DataStored {
                request,
                nbytes: [(Key::from("b"), 1)].into(),
            },
        );
    }
    sim.recv(c);
    sim.send(
        c,
        Gather {
            request: 2,
            keys: keys(&["b"]),
        },
    );
    let Message::GetData(get) = &sim.recv(w1)[0] else {
        panic!()
    };
    let request = get.request;
    sim.send(
        w1,
        Data {
            request,
            data: Default::default(),
            missing: keys(&["b"]),
        },
    );
    let Message::GetData(get) = &sim.recv(w2)[0] else {
        panic!()
    };
    let request = get.request;
    sim.send(w2, Busy { request });
    assert_eq!(
        sim.s.poll_timeout(),
        Some(sim.now + GATHER_BUSY_RETRY_INTERVAL),
        "the retry is the next deadline"
    );
    sim.advance(Duration::from_millis(100));
    let Message::GetData(again) = &sim.recv(w2)[0] else {
        panic!()
    };
    assert_eq!(again.request, request);
    sim.send(
        w2,
        Data {
            request,
            data: [(Key::from("b"), raw(Value::from(1)))].into(),
            missing: vec![],
        },
    );
    assert!(matches!(&sim.recv(c)[..], [Message::GatherReply(g)] if g.missing.is_empty()));
}

#[test]
fn datasets_hold_keys_for_other_clients() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 1);
    let (c1, c2) = (sim.client(), sim.client());
    sim.submit(c1, 1, vec![spec("r", "f", vec![])], &["r"]);
    sim.recv(w);
    sim.finish(w, "r", 4);
    sim.recv(c1);
    let publish = |name: &str, overwrite| PublishDataset {
        request: 2,
        name: name.into(),
        keys: keys(&["r"]),
        overwrite,
    };
    sim.send(c1, publish("ds", None));
    assert!(matches!(
        &sim.recv(c1)[..],
        [Message::OkReply(OkReply { request: 2 })]
    ));
    sim.send(c1, publish("ds", None));
    assert_eq!(error_of(&sim.recv(c1)).code, 4005);
    sim.send(c1, publish("ds", Some(true)));
    assert!(matches!(&sim.recv(c1)[..], [Message::OkReply(_)]));
    sim.send(
        c1,
        PublishDataset {
            request: 3,
            name: "bad".into(),
            keys: keys(&["zz"]),
            overwrite: None,
        },
    );
    assert_eq!(error_of(&sim.recv(c1)).code, 4001);
    // The publisher leaves; the dataset keeps the data.
    sim.close(c1);
    assert!(freed(&sim.recv(w)).is_empty());
    sim.send(c2, ListDatasets { request: 4 });
    assert!(matches!(&sim.recv(c2)[..], [Message::Datasets(d)] if d.names == ["ds"]));
    sim.send(
        c2,
        GetDataset {
            request: 5,
            name: "ds".into(),
        },
    );
    let got = sim.recv(c2);
    assert!(matches!(&got[0], Message::Dataset(d) if d.keys == keys(&["r"])));
    assert_eq!(finished(&got), ["r"]);
    sim.send(
        c2,
        GetDataset {
            request: 6,
            name: "nope".into(),
        },
    );
    assert_eq!(error_of(&sim.recv(c2)).code, 4004);
    sim.send(
        c2,
        UnpublishDataset {
            request: 7,
            name: "ds".into(),
        },
    );
    assert!(matches!(&sim.recv(c2)[..], [Message::OkReply(_)]));
    sim.send(
        c2,
        UnpublishDataset {
            request: 8,
            name: "ds".into(),
        },
    );
    assert_eq!(error_of(&sim.recv(c2)).code, 4004);
    assert_eq!(sim.state("r"), Some("memory"), "c2 still wants it");
    sim.send(
        c2,
        ReleaseKeys {
            keys: key_list(&["r"]),
        },
    );
    assert_eq!(freed(&sim.recv(w)), ["r"]);
}

#[test]
fn cluster_info_counts_workers_clients_and_task_states() {
    let mut sim = Sim::new();
    let w = sim.worker("w", &["f"], 3);
    let c = sim.client();
    sim.submit(
        c,
        1,
        vec![spec("a", "f", vec![]), spec("b", "f", vec![r("a")])],
        &["b"],
    );
    sim.send(c, ClusterInfo { request: 2 });
    let got = sim.recv(c);
    let [Message::ClusterInfoReply(info)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(info.clients, 1);
    assert_eq!(info.workers.len(), 1);
    assert_eq!(
        (info.workers[0].nthreads, info.workers[0].processing),
        (3, 1)
    );
    assert_eq!(
        info.tasks,
        [("processing".to_string(), 1), ("waiting".to_string(), 1)].into()
    );
    let _ = w;
}
