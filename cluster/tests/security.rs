//! A scheduler that requires credentials, over TCP and over TLS, with
//! the Rust client: the holder of the client secret is served; a stranger,
//! a worker's credential and another cluster's secret are refused, each
//! with a message saying what happened, while the scheduler keeps serving.

use std::time::Duration;

use dask_client::{Client, ClientOptions};
use dask_core::auth::Credentials;
use dask_net::tls::ClusterCa;
use dask_net::{credentials, TlsConfig, TlsPem};
use dask_scheduler::{SchedulerConfig, SchedulerHandle};

fn options(credentials: Option<Credentials>, tls: Option<TlsConfig>) -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(20),
        credentials,
        tls,
        ..ClientOptions::default()
    }
}

/// TLS settings of a cluster member: the CA and a certificate it signed.
fn member_tls(ca: &ClusterCa) -> TlsConfig {
    let cert = ca.issue(&[], 24).unwrap();
    TlsConfig::from_pem(&TlsPem {
        ca: Some(ca.cert_pem()),
        cert: Some(cert.cert),
        key: Some(cert.key),
    })
    .unwrap()
}

/// A scheduler on plain TCP, requiring `cluster`'s secrets if given.
fn plain_scheduler(cluster: Option<&Credentials>) -> SchedulerHandle {
    SchedulerHandle::start(SchedulerConfig {
        port: 0,
        validate: true,
        credentials: cluster.cloned(),
        ..SchedulerConfig::default()
    })
    .unwrap()
}

/// A scheduler requiring `cluster`'s secrets, at a `tls://` address with
/// a certificate of `ca`.
fn tls_scheduler(cluster: &Credentials, ca: &ClusterCa) -> SchedulerHandle {
    SchedulerHandle::start(SchedulerConfig {
        port: 0,
        credentials: Some(cluster.clone()),
        tls: Some(member_tls(ca)),
        ..SchedulerConfig::default()
    })
    .unwrap()
}

fn connect_error(address: &str, options: ClientOptions) -> String {
    match Client::connect_with(address, options) {
        Ok(_) => panic!("connected without the right credentials"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn only_the_client_secret_gets_in_and_the_scheduler_keeps_serving() {
    let cluster = credentials::generate();
    let scheduler = plain_scheduler(Some(&cluster));
    let address = scheduler.address();
    let member = Client::connect_with(&address, options(Some(cluster.clone()), None))
        .expect("the client secret gets in");
    assert!(member.cluster_info().is_ok());

    let e = connect_error(&address, options(None, None));
    assert!(e.contains("authentication required"), "{e}");

    // A worker's credential holds no client secret: it cannot even offer.
    let worker_only = credentials::for_role(&cluster, dask_core::messages::Role::Worker);
    let e = connect_error(&address, options(worker_only, None));
    assert!(e.contains("authentication required"), "{e}");

    let e = connect_error(&address, options(Some(credentials::generate()), None));
    assert!(e.contains("failed to prove"), "{e}");

    assert!(
        member.cluster_info().is_ok(),
        "still serving its own client"
    );
    drop(member);
    scheduler.stop();
}

#[test]
fn over_tls_with_a_cluster_ca_and_credentials() {
    let cluster = credentials::generate();
    let ca = ClusterCa::generate().unwrap();
    let member_tls = || member_tls(&ca);
    let scheduler = tls_scheduler(&cluster, &ca);
    let address = scheduler.address();
    assert!(address.starts_with("tls://"), "{address}");
    let client = Client::connect_with(&address, options(Some(cluster.clone()), Some(member_tls())))
        .expect("a member connects over TLS");
    assert!(client.cluster_info().is_ok());

    // A plain client at the TLS address is told so.
    let plain = address.replacen("tls://", "tcp://", 1);
    let e = connect_error(&plain, options(Some(cluster.clone()), None));
    assert!(e.contains("this address speaks TLS"), "{e}");

    // A certificate of another CA is refused in one line.
    let stranger = ClusterCa::generate().unwrap().issue(&[], 24).unwrap();
    let e = connect_error(
        &address,
        options(
            Some(cluster),
            Some(
                TlsConfig::from_pem(&TlsPem {
                    ca: Some(ca.cert_pem()),
                    cert: Some(stranger.cert),
                    key: Some(stranger.key),
                })
                .unwrap(),
            ),
        ),
    );
    assert!(e.contains("refused this side's certificate"), "{e}");
    drop(client);
    scheduler.stop();
}

// ---- workers -------------------------------------------------------------

use std::io;

use dask_client::{args, delayed, Arg};
use dask_core::auth::{ConnectorAuth, Secret};
use dask_core::handshake;
use dask_core::messages::{AuthProof, Bin32, GetData, ListDatasets, Role};
use dask_core::Message;
use dask_testkit::hostile::{assert_refused_inside_tls, hello};
use dask_testkit::wire::{exchange, messages_frame, Received};
use dask_worker::{WorkerConfig, WorkerHandle};

/// Longest a stranger waits for its refusal (the refusal comes at once).
const REFUSAL_WAIT: Duration = Duration::from_secs(20);

fn start_worker(
    scheduler: &str,
    name: &str,
    credentials: Option<Credentials>,
    tls: Option<TlsConfig>,
) -> io::Result<WorkerHandle> {
    WorkerHandle::start(WorkerConfig {
        scheduler: scheduler.to_owned(),
        nthreads: 1,
        name: Some(name.to_owned()),
        credentials,
        tls,
        ..WorkerConfig::default()
    })
}

/// The error a worker that must not register got.
fn refused(started: io::Result<WorkerHandle>) -> io::Error {
    match started {
        Ok(_) => panic!("the worker registered"),
        Err(e) => e,
    }
}

/// `a` held by one worker, `b` by the other: their sum makes one worker
/// fetch from the other, so the peers prove the worker secret to each
/// other.
fn sum_across_workers(client: &Client, a: i64, b: i64) -> rmpv::Value {
    let a = client
        .scatter_with(vec![a.into()], Some(vec!["w0".into()]), false)
        .expect("scatter to w0");
    let b = client
        .scatter_with(vec![b.into()], Some(vec!["w1".into()]), false)
        .expect("scatter to w1");
    let sum = client.compute(&delayed("add", args![Arg::from(&a[0]), Arg::from(&b[0])]));
    sum.result_timeout(Duration::from_secs(60))
        .expect("the sum computes")
}

/// A peer that holds no credentials, pipelining a `get-data` for `key`
/// behind its hello.
fn stranger_asks_for(address: &str, key: &dask_core::Key) -> Received {
    let get = Message::GetData(GetData {
        request: 1,
        keys: vec![key.clone()],
    });
    let bytes = messages_frame(&[hello(Role::Peer), get]);
    exchange(address, &bytes, false, REFUSAL_WAIT)
}

/// A stranger on this host: its hello lists `value-local` with this host's
/// tag, as a worker's of this host would, and still proves nothing.
fn local_stranger_asks_for(address: &str, key: &dask_core::Key) -> Received {
    let mut offer = handshake::offer(Role::Peer, Some("local stranger".into()));
    offer.local = dask_worker::local::identity();
    if offer.local.is_some() {
        offer
            .features
            .get_or_insert_with(Vec::new)
            .push(handshake::VALUE_LOCAL.into());
    }
    let get = Message::GetData(GetData {
        request: 1,
        keys: vec![key.clone()],
    });
    let bytes = messages_frame(&[Message::from(offer), get]);
    exchange(address, &bytes, false, REFUSAL_WAIT)
}

/// A peer that offers auth, then sends a made-up proof and a `get-data`.
fn forger_asks_for(address: &str, key: &dask_core::Key) -> Received {
    let mut offer = handshake::offer(Role::Peer, Some("forger".into()));
    let guess = ConnectorAuth::new(Role::Peer, Secret::from_bytes([7; 32]), [9; 32]);
    offer.auth = Some(guess.offer());
    let mut bytes = messages_frame(&[Message::from(offer)]);
    bytes.extend(messages_frame(&[Message::AuthProof(AuthProof {
        proof: Bin32([0; 32]),
    })]));
    bytes.extend(messages_frame(&[Message::GetData(GetData {
        request: 1,
        keys: vec![key.clone()],
    })]));
    exchange(address, &bytes, false, REFUSAL_WAIT)
}

fn assert_no_data(received: &Received, case: &str) {
    assert!(
        !received
            .messages
            .iter()
            .any(|m| matches!(m, Message::Data(_) | Message::DataLocal(_))),
        "{case}: a value was served: {:?}",
        received.messages
    );
}

#[test]
fn workers_prove_the_worker_secret_and_strangers_get_nothing_anywhere() {
    let cluster = credentials::generate();
    let scheduler = plain_scheduler(Some(&cluster));
    let address = scheduler.address();
    let worker_file = credentials::for_role(&cluster, Role::Worker);
    let w0 = start_worker(&address, "w0", worker_file.clone(), None).expect("w0 registers");
    let w1 = start_worker(&address, "w1", worker_file, None).expect("w1 registers");
    let client_file = credentials::for_role(&cluster, Role::Client);
    let client = Client::connect_with(&address, options(client_file, None)).unwrap();
    assert_eq!(sum_across_workers(&client, 10, 20), rmpv::Value::from(30));
    let held = client
        .scatter_with(vec![42.into()], Some(vec!["w0".into()]), false)
        .unwrap();
    let key = held[0].key().clone();
    // 2 MiB: a peer of this host that proved the secret would be lent it.
    let big = client
        .scatter_with(
            vec![rmpv::Value::Binary(vec![7; 2 << 20])],
            Some(vec!["w0".into()]),
            false,
        )
        .unwrap();

    // The scheduler's port: a stranger cannot register, submit or list.
    let as_worker = exchange(
        &address,
        &messages_frame(&[hello(Role::Worker)]),
        false,
        REFUSAL_WAIT,
    );
    as_worker.assert_fatal(3003, "a stranger registering");
    let list = Message::ListDatasets(ListDatasets { request: 1 });
    let as_client = exchange(
        &address,
        &messages_frame(&[hello(Role::Client), list]),
        false,
        REFUSAL_WAIT,
    );
    as_client.assert_fatal(3003, "a stranger listing datasets");
    assert!(
        !as_client
            .messages
            .iter()
            .any(|m| matches!(m, Message::Datasets(_))),
        "{:?}",
        as_client.messages
    );

    // Every worker's data port: no value for a stranger or a forger.
    for worker in [&w0, &w1] {
        let data = worker.address();
        let got = stranger_asks_for(&data, &key);
        got.assert_fatal(3003, "a stranger at a data port");
        assert_no_data(&got, "a stranger at a data port");
        let got = local_stranger_asks_for(&data, big[0].key());
        got.assert_fatal(3003, "a stranger of this host at a data port");
        assert_no_data(&got, "a stranger of this host at a data port");
        let got = forger_asks_for(&data, &key);
        got.assert_fatal(3003, "a made-up proof at a data port");
        assert_no_data(&got, "a made-up proof at a data port");
    }

    // The cluster kept serving its own client and workers.
    assert_eq!(sum_across_workers(&client, 1, 2), rmpv::Value::from(3));
    assert_eq!(client.gather(&held).unwrap(), vec![rmpv::Value::from(42)]);
    drop(client);
    w0.stop();
    w1.stop();
    scheduler.stop();
}

#[test]
fn a_worker_registers_only_where_both_sides_hold_the_worker_secret() {
    let cluster = credentials::generate();
    let scheduler = plain_scheduler(Some(&cluster));
    let address = scheduler.address();
    let e = refused(start_worker(&address, "none", None, None));
    assert!(e.to_string().contains("authentication required"), "{e}");
    let other = credentials::generate();
    let e = refused(start_worker(&address, "other", Some(other), None));
    assert!(e.to_string().contains("failed to prove"), "{e}");
    // A client's file holds no worker secret: a worker cannot use it.
    let client_file = credentials::for_role(&cluster, Role::Client);
    let e = refused(start_worker(&address, "client-file", client_file, None));
    assert!(e.to_string().contains("authentication required"), "{e}");

    // A scheduler that proves nothing is not trusted by a worker that
    // holds the secret.
    let open = plain_scheduler(None);
    let e = refused(start_worker(
        &open.address(),
        "careful",
        Some(cluster),
        None,
    ));
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("did not prove"), "{e}");
    open.stop();
    scheduler.stop();
}

#[test]
fn workers_over_tls_with_credentials() {
    let cluster = credentials::generate();
    let ca = ClusterCa::generate().unwrap();
    let member_tls = || member_tls(&ca);
    let scheduler = tls_scheduler(&cluster, &ca);
    let address = scheduler.address();
    let w0 = start_worker(&address, "w0", Some(cluster.clone()), Some(member_tls())).unwrap();
    let w1 = start_worker(&address, "w1", Some(cluster.clone()), Some(member_tls())).unwrap();
    assert!(w0.address().starts_with("tls://"), "{}", w0.address());
    let client =
        Client::connect_with(&address, options(Some(cluster.clone()), Some(member_tls()))).unwrap();
    assert_eq!(sum_across_workers(&client, 5, 6), rmpv::Value::from(11));

    // A plain stranger at a TLS data port is told so, and served nothing.
    let plain = w1.address().replacen("tls://", "tcp://", 1);
    let held = client
        .scatter_with(vec![1.into()], Some(vec!["w1".into()]), false)
        .unwrap();
    let got = stranger_asks_for(&plain, held[0].key());
    assert_no_data(&got, "plain bytes at a TLS data port");
    let said = format!("{:?}", got.messages);
    assert!(said.contains("this address speaks TLS"), "{said}");

    // A worker without TLS settings cannot reach the TLS scheduler.
    let e = refused(start_worker(&address, "no-ca", Some(cluster), None));
    assert!(e.to_string().contains("--tls-ca-file"), "{e}");
    assert_eq!(sum_across_workers(&client, 7, 8), rmpv::Value::from(15));
    drop(client);
    w0.stop();
    w1.stop();
    scheduler.stop();
}

#[test]
fn bad_bytes_inside_tls_and_half_done_tls_handshakes_leave_the_cluster_serving() {
    let cluster = credentials::generate();
    let ca = ClusterCa::generate().unwrap();
    let scheduler = tls_scheduler(&cluster, &ca);
    let address = scheduler.address();
    let w0 = start_worker(&address, "w0", Some(cluster.clone()), Some(member_tls(&ca))).unwrap();
    let w1 = start_worker(&address, "w1", Some(cluster.clone()), Some(member_tls(&ca))).unwrap();
    let client = Client::connect_with(
        &address,
        options(Some(cluster.clone()), Some(member_tls(&ca))),
    )
    .unwrap();
    assert_eq!(sum_across_workers(&client, 1, 2), rmpv::Value::from(3));

    let mut rng = dask_testkit::Rng(0x5eed_7e15);
    let mut half_done = Vec::new();
    for endpoint in [address.clone(), w0.address(), w1.address()] {
        // Random bytes inside a TLS session (a member's certificate, so
        // TLS lets them through): refused by dask/1, then closed.
        for case in 0..4 {
            let mut conn =
                dask_net::BlockingConn::connect_tls_raw(&endpoint, &member_tls(&ca), REFUSAL_WAIT)
                    .expect("a member's TLS session");
            conn.set_read_timeout(Some(REFUSAL_WAIT)).unwrap();
            let _ = conn.send_raw(&rng.bytes(64 + 997 * case));
            assert_refused_inside_tls(&mut conn, &format!("random bytes {case} at {endpoint}"));
        }
        // A hello without auth inside TLS: 3003, as over plain TCP.
        let mut conn =
            dask_net::BlockingConn::connect_tls_raw(&endpoint, &member_tls(&ca), REFUSAL_WAIT)
                .unwrap();
        conn.set_read_timeout(Some(REFUSAL_WAIT)).unwrap();
        let role = if endpoint == address {
            Role::Client
        } else {
            Role::Peer
        };
        conn.send(&[hello(role)]).unwrap();
        match conn.recv() {
            Ok(Message::ErrorReport(e)) => assert_eq!(e.code, 3003, "{e:?}"),
            other => panic!(
                "a hello without auth inside TLS got {:?}",
                other.map(|m| m.op())
            ),
        }
        // TLS handshakes that stop half way: a ClientHello's first bytes,
        // then silence, held open while the members go on.
        let plain = endpoint.replacen("tls://", "", 1);
        for _ in 0..16 {
            let mut stream = std::net::TcpStream::connect(&plain).unwrap();
            use std::io::Write;
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
                .unwrap();
            half_done.push(stream);
        }
    }
    assert_eq!(sum_across_workers(&client, 20, 22), rmpv::Value::from(42));
    let another =
        Client::connect_with(&address, options(Some(cluster), Some(member_tls(&ca)))).unwrap();
    assert!(another.cluster_info().is_ok());
    drop(half_done);
    drop((client, another));
    w0.stop();
    w1.stop();
    scheduler.stop();
}
