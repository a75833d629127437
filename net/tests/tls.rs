//! TLS in the reactor against real loopback sockets: frames both ways
//! (large ones through rustls's bounded buffers), mutual TLS with a
//! cluster CA, every refused certificate in one line, the plain/TLS
//! mismatches named, and half-done TLS handshakes held to the same bounds
//! as connections that never send their hello.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dask_core::handshake;
use dask_core::messages::{Data, Role};
use dask_core::{ConnId, ErrorCode, Key, Message, RawValue};
use dask_net::tls::ClusterCa;
use dask_net::{
    BlockingConn, CloseReason, NetEvent, Reactor, ReactorConfig, TlsConfig, TlsPem,
    TLS_HANDSHAKE_CHARGE,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// A CA and what each side of a cluster holds.
struct Cluster {
    ca: ClusterCa,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            ca: ClusterCa::generate().unwrap(),
        }
    }

    /// A member's settings: the CA and a certificate it signed.
    fn member(&self) -> TlsConfig {
        let cert = self.ca.issue(&[], 24).unwrap();
        TlsConfig::from_pem(&TlsPem {
            ca: Some(self.ca.cert_pem()),
            cert: Some(cert.cert),
            key: Some(cert.key),
        })
        .unwrap()
    }
}

fn hello() -> Message {
    Message::from(handshake::offer(Role::Client, None))
}

fn data(bytes: usize) -> Message {
    let value = RawValue::from_value(&rmpv::Value::Binary(vec![7; bytes]));
    Message::Data(Data {
        request: 1,
        data: BTreeMap::from([(Key::from("x"), value)]),
        missing: vec![],
    })
}

fn tls_listener(tls: TlsConfig) -> (Reactor, SocketAddr) {
    let mut reactor = Reactor::new(ReactorConfig {
        tls: Some(tls),
        ..ReactorConfig::default()
    })
    .unwrap();
    let listener = reactor.listen_tls("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.local_addr(listener).unwrap();
    (reactor, addr)
}

fn connector(tls: Option<TlsConfig>) -> Reactor {
    Reactor::new(ReactorConfig {
        tls,
        ..ReactorConfig::default()
    })
    .unwrap()
}

/// Turns both reactors until `until` says stop, handing it every event
/// (`true`: from the first reactor).
fn run_pair(
    a: &mut Reactor,
    b: &mut Reactor,
    mut until: impl FnMut(bool, &mut Reactor, NetEvent) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} in vain");
        for (first, reactor) in [(true, &mut *a), (false, &mut *b)] {
            reactor
                .poll(Some(Instant::now() + Duration::from_millis(2)))
                .unwrap();
            while let Some(event) = reactor.next_event() {
                if until(first, reactor, event) {
                    return;
                }
            }
        }
    }
}

/// Turns one reactor until `until` says stop.
fn run(reactor: &mut Reactor, mut until: impl FnMut(&mut Reactor, NetEvent) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} in vain");
        reactor
            .poll(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        while let Some(event) = reactor.next_event() {
            if until(reactor, event) {
                return;
            }
        }
    }
}

/// Connects `client` to `addr` over TLS; the outcome as the connector saw
/// it (Ok: connected and the acceptor's accepted conn) or the error text.
fn try_connect(
    server: &mut Reactor,
    client: &mut Reactor,
    addr: SocketAddr,
) -> Result<(ConnId, ConnId), String> {
    let conn = client.connect_tls(addr);
    let (mut connected, mut accepted) = (None, None);
    let mut failure = None;
    run_pair(client, server, |from_client, _, event| {
        match (from_client, event) {
            (true, NetEvent::Connected { conn: c }) if c == conn => connected = Some(c),
            (true, NetEvent::ConnectFailed { error, .. }) => failure = Some(error.to_string()),
            (true, NetEvent::Closed { reason, .. }) => failure = Some(format!("{reason:?}")),
            (false, NetEvent::Accepted { conn, .. }) => accepted = Some(conn),
            _ => {}
        }
        failure.is_some() || (connected.is_some() && accepted.is_some())
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((connected.unwrap(), accepted.unwrap())),
    }
}

#[test]
fn frames_flow_both_ways_over_mutual_tls_large_ones_too() {
    let cluster = Cluster::new();
    let (mut server, addr) = tls_listener(cluster.member());
    let mut client = connector(Some(cluster.member()));
    let (c, s) = try_connect(&mut server, &mut client, addr).expect("connects");
    let (cb_client, cb_server) = (client.channel_binding(c), server.channel_binding(s));
    assert!(
        cb_client.is_some(),
        "a TLS connection has a channel binding"
    );
    assert_eq!(cb_client, cb_server, "both ends see the same binding");

    // 16 MiB: far over rustls's buffer limit, so it goes in pieces.
    let big = 16 << 20;
    client.send(c, &hello()).unwrap();
    client.end_frame(c);
    client.send(c, &data(big)).unwrap();
    let mut got = Vec::new();
    run_pair(&mut client, &mut server, |from_client, reactor, event| {
        if let (false, NetEvent::Frame { conn, messages }) = (from_client, event) {
            got.extend(messages);
            if got.len() == 2 {
                reactor.send(conn, &data(big)).unwrap();
            }
        }
        got.len() >= 2
    });
    assert!(matches!(got[0], Message::Hello(_)));
    let Message::Data(d) = &got[1] else {
        panic!("expected data, got {:?}", got[1].op())
    };
    assert!(d.data[&Key::from("x")].as_bytes().len() > big);
    // And back.
    let mut back = None;
    run_pair(&mut client, &mut server, |from_client, _, event| {
        if let (true, NetEvent::Frame { messages, .. }) = (from_client, event) {
            back = messages.into_iter().next();
        }
        back.is_some()
    });
    assert!(matches!(back, Some(Message::Data(_))));

    // A second connection has another binding.
    let (c2, _) = try_connect(&mut server, &mut client, addr).unwrap();
    assert_ne!(client.channel_binding(c2), cb_client);
}

#[test]
fn a_certificate_from_another_ca_is_refused_both_ways_in_one_line() {
    let cluster = Cluster::new();
    let stranger = Cluster::new();
    // The acceptor's certificate is not the client's CA's.
    let (mut server, addr) = tls_listener(stranger.member());
    let mut client = connector(Some(cluster.member()));
    let e = try_connect(&mut server, &mut client, addr).unwrap_err();
    assert!(
        e.contains("the peer's certificate is not signed by the CA this side trusts"),
        "{e}"
    );
    // The client's certificate is not the acceptor's CA's.
    let (mut server, addr) = tls_listener(cluster.member());
    let mut client = connector(Some(stranger_with_ca_of(&stranger, &cluster)));
    let e = try_connect(&mut server, &mut client, addr).unwrap_err();
    assert!(
        e.contains("the peer refused this side's certificate"),
        "{e}"
    );
}

/// Trusts `ca_of`'s CA but presents a certificate `signer` signed.
fn stranger_with_ca_of(signer: &Cluster, ca_of: &Cluster) -> TlsConfig {
    let cert = signer.ca.issue(&[], 24).unwrap();
    TlsConfig::from_pem(&TlsPem {
        ca: Some(ca_of.ca.cert_pem()),
        cert: Some(cert.cert),
        key: Some(cert.key),
    })
    .unwrap()
}

#[test]
fn expired_self_signed_and_missing_certificates_are_refused() {
    let cluster = Cluster::new();
    // An expired acceptor certificate.
    let expired = cluster.ca.issue(&[], -1).unwrap();
    let (mut server, addr) = tls_listener(
        TlsConfig::from_pem(&TlsPem {
            ca: Some(cluster.ca.cert_pem()),
            cert: Some(expired.cert),
            key: Some(expired.key),
        })
        .unwrap(),
    );
    let mut client = connector(Some(cluster.member()));
    let e = try_connect(&mut server, &mut client, addr).unwrap_err();
    assert!(e.contains("has expired"), "{e}");

    // A self-signed client certificate no CA vouches for.
    let (mut server, addr) = tls_listener(cluster.member());
    let own = ClusterCa::self_signed().unwrap();
    let mut client = connector(Some(
        TlsConfig::from_pem(&TlsPem {
            ca: Some(cluster.ca.cert_pem()),
            cert: Some(own.cert),
            key: Some(own.key),
        })
        .unwrap(),
    ));
    let e = try_connect(&mut server, &mut client, addr).unwrap_err();
    assert!(e.contains("refused this side's certificate"), "{e}");

    // No client certificate at all, to an acceptor that requires one.
    let mut client = connector(Some(
        TlsConfig::from_pem(&TlsPem {
            ca: Some(cluster.ca.cert_pem()),
            ..TlsPem::default()
        })
        .unwrap(),
    ));
    let e = try_connect(&mut server, &mut client, addr).unwrap_err();
    assert!(e.contains("requires a certificate"), "{e}");
}

#[test]
fn a_plain_connector_at_a_tls_address_is_told_in_plain() {
    let cluster = Cluster::new();
    let (mut server, addr) = tls_listener(cluster.member());
    let mut plain = BlockingConn::connect_raw(&addr.to_string(), PATIENCE).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.send(&[hello()]).unwrap();
    let reply = std::thread::spawn(move || plain.recv());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !reply.is_finished() && Instant::now() < deadline {
        server
            .poll(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        if let Some(event) = server.next_event() {
            panic!("the event loop hears nothing of it, got {event:?}");
        }
    }
    match reply.join().unwrap() {
        Ok(Message::ErrorReport(e)) => {
            assert_eq!(e.code, ErrorCode::BadHandshake.number());
            assert!(
                e.message.contains("this address speaks TLS"),
                "{}",
                e.message
            );
            assert!(e.fatal);
        }
        other => panic!("expected a plain error, got {other:?}"),
    }
}

#[test]
fn a_tls_connector_at_a_plain_address_is_told_which() {
    let cluster = Cluster::new();
    let mut server = connector(None);
    let listener = server.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr(listener).unwrap();
    let mut client = connector(Some(cluster.member()));
    let conn = client.connect_tls(addr);
    let (mut client_error, mut server_error) = (None, None);
    run_pair(&mut client, &mut server, |from_client, reactor, event| {
        match (from_client, event) {
            (true, NetEvent::ConnectFailed { conn: c, error }) if c == conn => {
                client_error = Some(error.to_string())
            }
            (
                false,
                NetEvent::Closed {
                    conn,
                    reason: CloseReason::Protocol(e),
                },
            ) => {
                reactor.send(conn, &Message::error(&e, None)).unwrap();
                server_error = Some(e);
            }
            _ => {}
        }
        client_error.is_some() && server_error.is_some()
    });
    let client_error = client_error.unwrap();
    assert!(
        client_error.contains("answered in plain bytes, not TLS"),
        "{client_error}"
    );
    let server_error = server_error.unwrap();
    assert_eq!(server_error.code, ErrorCode::BadHandshake);
    assert!(
        server_error
            .message
            .contains("TLS handshake at a plain dask/1 address"),
        "{server_error}"
    );
}

#[test]
fn bad_bytes_inside_tls_are_a_protocol_error_answered_inside_tls() {
    let cluster = Cluster::new();
    let (mut server, addr) = tls_listener(cluster.member());
    let address = format!("tls://{addr}");
    let tls = cluster.member();
    let client = std::thread::spawn(move || {
        let mut conn = BlockingConn::connect_tls_raw(&address, &tls, PATIENCE).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        // A frame of 3 bytes that are not a msgpack array.
        conn.send_raw(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]).unwrap();
        conn.recv()
    });
    run(&mut server, |reactor, event| match event {
        NetEvent::Closed {
            conn,
            reason: CloseReason::Protocol(e),
        } => {
            reactor.send(conn, &Message::error(&e, None)).unwrap();
            true
        }
        NetEvent::Accepted { .. } => false,
        other => panic!("unexpected {other:?}"),
    });
    let deadline = Instant::now() + PATIENCE;
    while !client.is_finished() && Instant::now() < deadline {
        server
            .poll(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        while server.next_event().is_some() {}
    }
    match client.join().unwrap() {
        Ok(Message::ErrorReport(e)) => assert_eq!(e.code, ErrorCode::MalformedFrame.number()),
        other => panic!("expected the error inside TLS, got {other:?}"),
    }
}

#[test]
fn half_done_tls_handshakes_are_bounded_and_timed_out_while_others_connect() {
    let cluster = Cluster::new();
    let mut server = Reactor::new(ReactorConfig {
        tls: Some(cluster.member()),
        handshake_bytes_max: 4 * TLS_HANDSHAKE_CHARGE,
        tls_handshake_timeout: Duration::from_millis(300),
        ..ReactorConfig::default()
    })
    .unwrap();
    let listener = server.listen_tls("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr(listener).unwrap();
    // Eight connections that start a ClientHello and stop half way.
    let mut stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s
        })
        .collect();
    let until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < until {
        server
            .poll(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        if let Some(event) = server.next_event() {
            panic!("a half-done handshake reaches the loop: {event:?}");
        }
    }
    assert!(
        server.connection_count() <= 4,
        "at most 4 half-done handshakes held, got {}",
        server.connection_count()
    );
    // Past the timeout every one is closed, and a real member connects.
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        server
            .poll(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        while server.next_event().is_some() {}
    }
    assert_eq!(server.connection_count(), 0);
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        let n = loop {
            match s.read(&mut buf) {
                Ok(0) => break 0,
                Ok(_) => continue, // an alert, then EOF
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break 0,
                Err(e) => panic!("expected EOF, got {e}"),
            }
        };
        assert_eq!(n, 0);
    }
    let mut client = connector(Some(cluster.member()));
    try_connect(&mut server, &mut client, addr).expect("a member connects");
}
