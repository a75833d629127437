//! The client against a scripted scheduler: what it sends, and how it
//! turns replies into future states and results. No real scheduler needed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{connect, Mock, PATIENCE};
use dask_client::{args, delayed, Client, ClientOptions, Error, Status};
use dask_core::messages::{
    ClusterInfoReply, Dataset, Datasets, ErrorReport, GatherReply, KeyCancelled, KeyErred,
    KeyFinished, OkReply, WhoHasReply,
};
use dask_core::{Key, Message, RawValue};
use rmpv::Value;

fn finished(key: &Key) -> Message {
    Message::KeyFinished(KeyFinished {
        key: key.clone(),
        nbytes: 1,
        request: None,
        value: None,
    })
}

/// Answers the next message, which must be a gather, with `values`.
fn answer_gather(mock: &mut Mock, values: &[(&Key, Value)]) {
    let Message::Gather(g) = mock.recv() else {
        panic!("expected gather")
    };
    let data: BTreeMap<Key, RawValue> = values
        .iter()
        .map(|(k, v)| ((*k).clone(), RawValue::from_value(v)))
        .collect();
    mock.send(&[Message::GatherReply(GatherReply {
        request: g.request,
        data,
        missing: vec![],
        status: None,
    })]);
}

#[test]
fn submit_sends_one_graph_and_result_gathers() {
    let (client, mut mock) = connect();
    assert_eq!(client.id(), Some(42));
    let a = client.submit("inc", args![1]);
    let Message::UpdateGraph(g) = mock.recv() else {
        panic!("expected update-graph")
    };
    assert_eq!(g.wanted, vec![a.key().clone()]);
    assert_eq!(g.tasks.len(), 1);
    assert_eq!(g.tasks[0].function, "inc");
    assert_eq!(a.status(), Status::Pending);
    mock.send(&[finished(a.key())]);
    a.wait_timeout(PATIENCE).unwrap();
    assert_eq!(a.status(), Status::Finished);
    let key = a.key().clone();
    let fetch = std::thread::spawn(move || a.result());
    answer_gather(&mut mock, &[(&key, Value::from(2))]);
    assert_eq!(fetch.join().unwrap().unwrap(), Value::from(2));
}

#[test]
fn delayed_graph_goes_in_one_update_graph_wanting_only_the_root() {
    let (client, mut mock) = connect();
    let x = delayed("inc", args![1]);
    let y = delayed("inc", args![2]);
    let total = delayed("add", args![&x, &y]);
    let f = client.compute(&total);
    let Message::UpdateGraph(g) = mock.recv() else {
        panic!("expected update-graph")
    };
    assert_eq!(g.tasks.len(), 3);
    assert_eq!(g.wanted, vec![f.key().clone()]);
    let root = g.tasks.iter().find(|t| &t.key == total.key()).unwrap();
    assert_eq!(root.args.refs(), vec![x.key().as_str(), y.key().as_str()]);
}

#[test]
fn last_drop_releases_the_key_and_clones_keep_it() {
    let (client, mut mock) = connect();
    let a = client.submit("inc", args![1]);
    let b = client.submit("inc", args![2]);
    mock.recv();
    mock.recv();
    let a2 = a.clone();
    drop(a);
    drop(b);
    // Only b's key is released: a2 still holds a's.
    match mock.recv() {
        Message::ReleaseKeys(r) => assert_eq!(r.keys.len(), 1),
        other => panic!("expected release-keys, got {other:?}"),
    }
    let key = a2.key().clone();
    drop(a2);
    match mock.recv() {
        Message::ReleaseKeys(r) => assert_eq!(r.keys, vec![key]),
        other => panic!("expected release-keys, got {other:?}"),
    }
    drop(client);
}

#[test]
fn remote_errors_surface_with_their_type_and_message() {
    let (client, mut mock) = connect();
    let f = client.submit("div", args![1, 0]);
    mock.recv();
    mock.send(&[Message::KeyErred(KeyErred {
        key: f.key().clone(),
        error_type: "ZeroDivisionError".into(),
        message: "division by zero".into(),
        traceback: "tb".into(),
        cause: None,
        request: None,
    })]);
    let e = f.result().unwrap_err();
    assert_eq!(
        e.to_string(),
        "RemoteError: ZeroDivisionError: division by zero"
    );
    assert!(matches!(e, Error::Remote { traceback, .. } if traceback == "tb"));
    assert_eq!(f.status(), Status::Erred);
}

#[test]
fn a_refused_graph_fails_its_futures_with_the_code() {
    let (client, mut mock) = connect();
    let f = client.submit("inc", args![1]);
    let Message::UpdateGraph(g) = mock.recv() else {
        panic!("expected update-graph")
    };
    mock.send(&[Message::ErrorReport(ErrorReport {
        code: 4001,
        message: "unknown key \"zzz\"".into(),
        fatal: false,
        request: Some(g.request),
        keys: Some(vec![Key::from("zzz")]),
    })]);
    match f.wait_timeout(PATIENCE) {
        Err(Error::Refused {
            code: 4001,
            name: Some("unknown-key"),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(client.is_connected());
}

#[test]
fn cancel_sends_cancel_keys_and_the_future_ends_cancelled() {
    let (client, mut mock) = connect();
    let f = client.submit("sleep", args![1000]);
    mock.recv();
    f.cancel();
    let Message::CancelKeys(c) = mock.recv() else {
        panic!("expected cancel-keys")
    };
    assert_eq!(c.keys, vec![f.key().clone()]);
    mock.send(&[Message::KeyCancelled(KeyCancelled {
        key: f.key().clone(),
        request: None,
    })]);
    assert!(matches!(
        f.wait_timeout(PATIENCE),
        Err(Error::Cancelled { .. })
    ));
}

#[test]
fn as_completed_yields_in_completion_order_and_accepts_more() {
    let (client, mut mock) = connect();
    let fs = client.map("inc", (0..3).map(|i| args![i]));
    mock.recv();
    let keys: Vec<Key> = fs.iter().map(|f| f.key().clone()).collect();
    let mut ac = client.as_completed(fs).with_timeout(PATIENCE);
    mock.send(&[finished(&keys[2])]);
    assert_eq!(ac.next().unwrap().key(), &keys[2]);
    mock.send(&[finished(&keys[0]), finished(&keys[1])]);
    assert_eq!(ac.next().unwrap().key(), &keys[0]);
    // Extending from an iterator that submits does not deadlock.
    ac.extend((9..10).map(|i| client.submit("inc", args![i])));
    // (The future yielded above was dropped: its release may come first.)
    let g = loop {
        match mock.recv() {
            Message::UpdateGraph(g) => break g,
            Message::ReleaseKeys(_) => continue,
            other => panic!("expected update-graph, got {other:?}"),
        }
    };
    let extra_key = g.wanted[0].clone();
    assert_eq!(ac.next().unwrap().key(), &keys[1]);
    mock.send(&[finished(&extra_key)]);
    assert_eq!(ac.next().unwrap().key(), &extra_key);
    assert!(ac.next().is_none());
}

#[test]
fn scheduler_going_away_fails_waiting_futures() {
    let (client, mock) = connect();
    let f = client.submit("inc", args![1]);
    drop(mock);
    match f.wait_timeout(PATIENCE) {
        Err(Error::Connection(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(!client.is_connected());
    assert!(matches!(client.list_datasets(), Err(Error::Connection(_))));
}

#[test]
fn datasets_and_cluster_requests_round_trip() {
    let (client, mut mock) = connect();
    let f = client.submit("inc", args![1]);
    mock.recv();
    let key = f.key().clone();
    std::thread::scope(|s| {
        let c = &client;
        let worker = s.spawn(move || {
            c.publish_dataset("d", std::slice::from_ref(&f), false)
                .unwrap();
            let got = c.get_dataset("d").unwrap();
            let names = c.list_datasets().unwrap();
            let info = c.cluster_info().unwrap();
            let who = c.who_has(&got).unwrap();
            (got, names, info, who, f)
        });
        let Message::PublishDataset(p) = mock.recv() else {
            panic!()
        };
        assert_eq!(
            (p.name.as_str(), p.keys.clone(), p.overwrite),
            ("d", vec![key.clone()], None)
        );
        mock.send(&[Message::OkReply(OkReply { request: p.request })]);
        let Message::GetDataset(g) = mock.recv() else {
            panic!()
        };
        mock.send(&[Message::Dataset(Dataset {
            request: g.request,
            name: "d".into(),
            keys: vec![key.clone()],
        })]);
        let Message::ListDatasets(l) = mock.recv() else {
            panic!()
        };
        mock.send(&[Message::Datasets(Datasets {
            request: l.request,
            names: vec!["d".into()],
        })]);
        let Message::ClusterInfo(ci) = mock.recv() else {
            panic!()
        };
        mock.send(&[Message::ClusterInfoReply(ClusterInfoReply {
            request: ci.request,
            workers: vec![],
            tasks: BTreeMap::from([("memory".to_string(), 1u64)]),
            clients: 1,
        })]);
        let Message::WhoHas(w) = mock.recv() else {
            panic!()
        };
        mock.send(&[Message::WhoHasReply(WhoHasReply {
            request: w.request,
            who_has: BTreeMap::from([(key.clone(), vec!["tcp://127.0.0.1:1".to_string()])]),
            status: None,
        })]);
        let (got, names, info, who, _f) = worker.join().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].key(), &key);
        assert_eq!(names, vec!["d"]);
        assert_eq!(info.tasks.get("memory"), Some(&1));
        assert_eq!(who[&key].len(), 1);
    });
}

#[test]
fn unknown_dataset_is_refused() {
    let (client, mut mock) = connect();
    std::thread::scope(|s| {
        let c = &client;
        let t = s.spawn(move || c.get_dataset("nope"));
        let Message::GetDataset(g) = mock.recv() else {
            panic!()
        };
        mock.send(&[Message::ErrorReport(ErrorReport {
            code: 4004,
            message: "no dataset".into(),
            fatal: false,
            request: Some(g.request),
            keys: None,
        })]);
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::Refused { code: 4004, .. })
        ));
    });
}

#[test]
fn request_timeout_gives_up_and_a_late_reply_is_harmless() {
    let (client, mut mock) = common::connect_with(ClientOptions {
        request_timeout: Some(Duration::from_millis(50)),
        ..Default::default()
    });
    assert_eq!(client.get_dataset("slow").unwrap_err(), Error::Timeout);
    let Message::GetDataset(g) = mock.recv() else {
        panic!()
    };
    mock.send(&[Message::Dataset(Dataset {
        request: g.request,
        name: "slow".into(),
        keys: vec![Key::from("k")],
    })]);
    // The abandoned dataset's reference is released again.
    match mock.recv() {
        Message::ReleaseKeys(r) => assert_eq!(r.keys, vec![Key::from("k")]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn scatter_sends_values_and_waits_until_they_are_stored() {
    let (client, mut mock) = connect();
    std::thread::scope(|s| {
        let c = &client;
        let t = s.spawn(move || c.scatter(vec![Value::from(1), Value::from("two")]));
        let Message::Scatter(m) = mock.recv() else {
            panic!()
        };
        assert_eq!(m.data.len(), 2);
        assert!(m
            .data
            .values()
            .any(|v| v == &RawValue::from_value(&Value::from("two"))));
        let keys: Vec<Key> = m.data.keys().cloned().collect();
        mock.send(&[finished(&keys[0]), finished(&keys[1])]);
        let fs = t.join().unwrap().unwrap();
        assert!(fs.iter().all(|f| f.status() == Status::Finished));
    });
}

#[test]
fn scatter_without_workers_fails() {
    let (client, mut mock) = connect();
    std::thread::scope(|s| {
        let c = &client;
        let t = s.spawn(move || c.scatter(vec![Value::from(1)]));
        let Message::Scatter(m) = mock.recv() else {
            panic!()
        };
        mock.send(&[Message::ErrorReport(ErrorReport {
            code: 5001,
            message: "no workers".into(),
            fatal: false,
            request: Some(m.request),
            keys: None,
        })]);
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::Refused { code: 5001, .. })
        ));
    });
}

#[test]
fn refused_handshake_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = dask_net::BlockingConn::from_stream(stream);
        conn.recv().unwrap();
        conn.send(&[Message::ErrorReport(ErrorReport {
            code: 3001,
            message: "dask/2 only".into(),
            fatal: true,
            request: None,
            keys: None,
        })])
        .unwrap();
    });
    let e = Client::connect(&address).unwrap_err();
    assert!(e.to_string().contains("version-mismatch"), "{e}");
    server.join().unwrap();
}

#[test]
fn a_scheduler_that_never_replies_to_the_hello_fails_the_connect_in_time() {
    // PROTOCOL.md#handshake: a connector bounds its wait for the reply
    // (dask-rs: connect_timeout), then closes and tells its user.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = dask_net::BlockingConn::from_stream(stream);
        let hello = conn.recv().unwrap();
        assert!(matches!(hello, Message::Hello(_)), "{hello:?}");
        // No reply: the client gives up and closes its end (saying close
        // or error first is allowed).
        while let Ok(m) = conn.recv() {
            assert!(
                matches!(m, Message::ErrorReport(_) | Message::Close(_)),
                "{m:?}"
            );
        }
    });
    let e = Client::connect_timeout(&address, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert!(e.to_string().contains("no handshake reply"), "{e}");
    server.join().unwrap();
}

#[test]
fn connecting_to_a_closed_port_fails() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = Client::connect_timeout(&format!("tcp://127.0.0.1:{port}"), PATIENCE).unwrap_err();
    assert!(matches!(e, Error::Connection(_)));
}

#[test]
fn close_sends_close() {
    let (client, mut mock) = connect();
    client.close();
    assert!(matches!(mock.recv(), Message::Close(_)));
}

#[test]
fn against_a_dask_1_0_scheduler_the_1_1_calls_fail_saying_so() {
    let old = dask_core::messages::Version { major: 1, minor: 0 };
    let (client, mut mock) = common::connect_speaking(
        old,
        ClientOptions {
            request_timeout: Some(PATIENCE),
            ..Default::default()
        },
    );
    match client.wait_accepted() {
        Err(Error::Connection(m)) => assert!(m.contains("dask/1.0"), "{m}"),
        other => panic!("{other:?}"),
    }
    let a = client.submit("inc", args![1]);
    let Message::UpdateGraph(_) = mock.recv() else {
        panic!("expected update-graph")
    };
    let status = std::thread::scope(|scope| {
        let asking = scope.spawn(|| client.status(std::slice::from_ref(&a)));
        let Message::WhoHas(w) = mock.recv() else {
            panic!("expected who-has")
        };
        mock.send(&[Message::WhoHasReply(WhoHasReply {
            request: w.request,
            who_has: [(w.keys[0].clone(), vec![])].into(),
            status: None,
        })]);
        asking.join().expect("status thread")
    });
    match status {
        Err(Error::Connection(m)) => assert!(m.contains("dask/1.0"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wait_accepted_is_an_acknowledged_empty_graph() {
    let (client, mut mock) = connect();
    let a = client.submit("inc", args![1]);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| client.wait_accepted());
        let Message::UpdateGraph(g) = mock.recv() else {
            panic!("expected the graph")
        };
        assert_eq!(g.wanted, vec![a.key().clone()]);
        let Message::UpdateGraph(barrier) = mock.recv() else {
            panic!("expected the barrier")
        };
        assert!(barrier.tasks.is_empty() && barrier.wanted.is_empty());
        assert_eq!(barrier.ack, Some(true));
        mock.send(&[Message::OkReply(OkReply {
            request: barrier.request,
        })]);
        waiting.join().expect("thread").expect("accepted");
    });
}

#[test]
fn each_part_of_a_large_graph_goes_in_its_own_frame() {
    // The scheduler takes a frame in one event: parts batched in one frame
    // kept its loop busy for the whole graph.
    let (client, mut mock) = connect();
    let n = 200_000;
    let specs: Vec<_> = (0..n)
        .map(|i| {
            dask_core::client::task_spec(
                Key::from(format!("inc-{i}")),
                "inc",
                &[Value::from(i)],
                &[],
            )
        })
        .collect();
    let wanted = vec![Key::from(format!("inc-{}", n - 1))];
    let _futures = client.submit_tasks(specs, wanted);
    let mut defined = 0;
    let mut parts = 0;
    while defined < n {
        let frame = mock.conn.recv_frame().expect("a frame");
        match &frame[..] {
            [Message::UpdateGraph(g)] => {
                defined += g.tasks.len();
                parts += 1;
            }
            other => panic!(
                "expected one update-graph in the frame, got {} messages",
                other.len()
            ),
        }
    }
    assert!(parts >= 2, "{parts} parts");
    assert_eq!(defined, n);
}

#[test]
fn a_gather_started_before_the_results_takes_them_from_key_finished() {
    let (client, mut mock) = connect();
    let futures = vec![
        client.submit("inc", args![1]),
        client.submit("inc", args![2]),
    ];
    mock.recv();
    mock.recv();
    let keys: Vec<Key> = futures.iter().map(|f| f.key().clone()).collect();
    // The gather waits for the keys: their results then come inline.
    let gather = std::thread::spawn(move || {
        let values = client.gather(&futures);
        (client, values)
    });
    for (key, v) in keys.iter().zip([2, 3]) {
        mock.send(&[Message::KeyFinished(KeyFinished {
            key: key.clone(),
            nbytes: 1,
            request: None,
            value: Some(RawValue::from_value(&Value::from(v))),
        })]);
    }
    let (client, values) = gather.join().unwrap();
    assert_eq!(values.unwrap(), vec![Value::from(2), Value::from(3)]);
    // No gather went out: what comes next is the futures' release, in one
    // release-keys or two (the client's loop may run between the drops).
    let mut released = 0;
    while released < 2 {
        match mock.recv() {
            Message::ReleaseKeys(r) => released += r.keys.len(),
            other => panic!("expected release-keys, got {other:?}"),
        }
    }
    assert_eq!(released, 2);
    drop(client);
}

#[test]
fn a_gather_asks_the_scheduler_only_for_the_results_that_did_not_come_inline() {
    let (client, mut mock) = connect();
    let a = client.submit("inc", args![1]);
    let b = client.submit("inc", args![2]);
    let c = client.submit("inc", args![3]);
    for _ in 0..3 {
        mock.recv();
    }
    let inline = |key: &Key, v: i64| {
        Message::KeyFinished(KeyFinished {
            key: key.clone(),
            nbytes: 1,
            request: None,
            value: Some(RawValue::from_value(&Value::from(v))),
        })
    };
    // b's result is too large to come inline (say): it is gathered.
    mock.send(&[inline(a.key(), 2), finished(b.key()), inline(c.key(), 4)]);
    let kb = b.key().clone();
    // b twice, a and c around it: each handle gets its key's value, in order.
    let again = b.clone();
    let gather = std::thread::spawn(move || {
        let values = client.gather(&[a, b, c, again]);
        (client, values)
    });
    let Message::Gather(g) = mock.recv() else {
        panic!("expected gather")
    };
    assert_eq!(g.keys, vec![kb.clone()], "only b is asked for");
    mock.send(&[Message::GatherReply(GatherReply {
        request: g.request,
        data: BTreeMap::from([(kb, RawValue::from_value(&Value::from(3)))]),
        missing: vec![],
        status: None,
    })]);
    let (client, values) = gather.join().unwrap();
    assert_eq!(
        values.unwrap(),
        [2, 3, 4, 3].map(Value::from).to_vec(),
        "a, b, c, b"
    );
    drop(client);
}
