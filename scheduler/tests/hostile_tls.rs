//! Hostile input over TLS against the real `dask-scheduler` binary, run as
//! users run it for several machines: TLS with the files of `dask-rs
//! credentials tls` and the credentials it creates on first start. Bad
//! bytes inside TLS sessions (random bytes, a length prefix promising a
//! huge frame), TLS handshakes that stop half way, and a flood of
//! half-open TLS connections (TCP connected and silent, or TLS done and no
//! dask/1 hello), bounded in count. Meanwhile a member client keeps
//! computing through a member worker, the scheduler's resident memory
//! stays under the bound of the plain hostile suites (tests/hostile.rs),
//! and each hostile connection is refused, or timed out, and closed.
//!
//! On 127.0.0.1 with ports picked by the OS; counts and waits bounded;
//! nothing asserts on timing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dask_client::{args, delayed, Arg, Client, ClientOptions};
use dask_core::Message;
use dask_net::{BlockingConn, TlsConfig};
use dask_testkit::home::DaskHome;
use dask_testkit::hostile::{
    assert_refused_inside_tls, HANDSHAKE_TIMEOUT_SECS, RSS_BYTES_MAX, TIMEOUT,
};
use dask_testkit::process::{open_files_limit, Process};
use dask_testkit::Rng;
use dask_worker::{WorkerConfig, WorkerHandle};

/// TLS handshakes left half way, held at once.
const HALF_DONE_HANDSHAKES: usize = 64;

/// Half-open TLS connections of each kind in the flood (fewer when the
/// open-files limit is low).
const FLOOD_TLS_CONNECTIONS: usize = 256;

/// TLS sessions sending random bytes, and the largest of them.
const NOISE_SESSIONS: usize = 24;
const NOISE_BYTES_MAX: usize = 256 * 1024;

/// The first bytes of a TLS ClientHello record, and no more.
const CLIENT_HELLO_START: [u8; 8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01];

/// The scheduler binary at a `tls://` address, with its own home.
struct TlsScheduler {
    process: Process,
    address: String,
    home: DaskHome,
    member: TlsConfig,
}

impl TlsScheduler {
    fn start() -> TlsScheduler {
        let home = DaskHome::new();
        let files = dask_net::tls::write_cluster_files(&home.dir().join("tls"), &[], 1)
            .expect("dask-rs credentials tls's files");
        let (ca, cert) = (files.ca.to_string_lossy(), files.cert.to_string_lossy());
        let timeout = HANDSHAKE_TIMEOUT_SECS.to_string();
        let (process, address) = home.start_scheduler(
            &[
                "--handshake-timeout",
                &timeout,
                "--tls-ca-file",
                &ca,
                "--tls-cert",
                &cert,
            ],
            TIMEOUT,
        );
        assert!(address.starts_with("tls://"), "{address}");
        let member = TlsConfig::from_files(Some(&files.ca), Some(&files.cert), None).unwrap();
        TlsScheduler {
            process,
            address,
            home,
            member,
        }
    }

    fn assert_serving(&mut self, client: &Client, during: &str) {
        self.process.assert_alive(during);
        self.process.assert_rss_below(RSS_BYTES_MAX, during);
        if let Some(rss) = self.process.rss_bytes() {
            eprintln!("scheduler RSS {} MiB {during}", rss >> 20);
        }
        let sum = client.compute(&delayed("add", args![Arg::from(20i64), Arg::from(22i64)]));
        assert_eq!(
            sum.result_timeout(TIMEOUT).expect(during),
            rmpv::Value::from(42),
            "{during}"
        );
    }

    /// `host:port`, for raw TCP connections.
    fn socket_address(&self) -> &str {
        self.address.trim_start_matches("tls://")
    }
}

/// A member's TLS session, no dask/1 handshake.
fn member_session(address: &str, tls: &TlsConfig) -> BlockingConn {
    let conn = BlockingConn::connect_tls_raw(address, tls, TIMEOUT).expect("a TLS session");
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn
}

/// Whether the peer closed `stream` (EOF or reset) within `wait`;
/// anything it sends first is read and dropped.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

fn flood_count() -> usize {
    open_files_limit()
        .map_or(FLOOD_TLS_CONNECTIONS, |limit| {
            FLOOD_TLS_CONNECTIONS.min(limit.saturating_sub(256) / 4)
        })
        .max(10)
}

#[test]
fn hostile_tls_input_is_refused_within_bounded_memory_while_members_are_served() {
    let mut scheduler = TlsScheduler::start();
    let credentials = scheduler.home.credentials();
    let worker = WorkerHandle::start(WorkerConfig {
        scheduler: scheduler.address.clone(),
        nthreads: 2,
        credentials: Some(credentials.clone()),
        tls: Some(scheduler.member.clone()),
        ..WorkerConfig::default()
    })
    .expect("a member worker registers over TLS");
    let client = Client::connect_with(
        &scheduler.address,
        ClientOptions {
            connect_timeout: TIMEOUT,
            credentials: Some(credentials),
            tls: Some(scheduler.member.clone()),
            ..ClientOptions::default()
        },
    )
    .expect("a member client connects over TLS");
    scheduler.assert_serving(&client, "at start");

    // Bad bytes inside TLS sessions (a member's certificate, so TLS lets
    // them through to dask/1): each refused, then closed.
    let mut rng = Rng(0x7153_ba0d);
    for case in 0..NOISE_SESSIONS {
        let mut conn = member_session(&scheduler.address, &scheduler.member);
        let len = 1 + (rng.next_u64() as usize) % NOISE_BYTES_MAX;
        let _ = conn.send_raw(&rng.bytes(len));
        assert_refused_inside_tls(&mut conn, &format!("{len} random bytes (session {case})"));
    }
    // A length prefix promising a frame of 256 MiB, and 1 MiB of it: refused
    // by the bound on a first frame, not buffered up to the promise.
    let mut lying: Vec<u8> = (256u32 * 1024 * 1024 - 1).to_be_bytes().to_vec();
    lying.extend(rng.bytes(1024 * 1024));
    for case in 0..4 {
        let mut conn = member_session(&scheduler.address, &scheduler.member);
        let _ = conn.send_raw(&lying);
        assert_refused_inside_tls(&mut conn, &format!("a lying length prefix ({case})"));
    }
    scheduler.assert_serving(&client, "after bad bytes inside TLS");

    // TLS handshakes that stop half way (the first bytes of a ClientHello),
    // then a flood of half-open connections: TCP connected and silent,
    // and TLS done without a dask/1 hello. All held at once.
    let connect = || TcpStream::connect(scheduler.socket_address()).expect("connect");
    let mut half_done: Vec<TcpStream> = (0..HALF_DONE_HANDSHAKES)
        .map(|_| {
            let mut s = connect();
            s.write_all(&CLIENT_HELLO_START).unwrap();
            s
        })
        .collect();
    let flood = flood_count();
    let mut silent: Vec<TcpStream> = (0..flood).map(|_| connect()).collect();
    let mut tls_no_hello: Vec<BlockingConn> = (0..flood / 4)
        .map(|_| member_session(&scheduler.address, &scheduler.member))
        .collect();
    scheduler.assert_serving(
        &client,
        &format!(
            "holding {HALF_DONE_HANDSHAKES} half-done TLS handshakes, {flood} silent \
             connections and {} TLS sessions without a hello",
            flood / 4
        ),
    );

    // Each is ended by the scheduler: the TLS sessions with the handshake
    // timeout's refusal (3002) inside TLS, the others by a close.
    for (i, conn) in tls_no_hello.iter_mut().enumerate() {
        match conn.recv() {
            Ok(Message::ErrorReport(e)) => {
                assert_eq!((e.code, e.fatal), (3002, true), "session {i}: {e:?}")
            }
            other => panic!(
                "TLS session {i} without a hello got {:?}",
                other.map(|m| m.op())
            ),
        }
    }
    let wait = TIMEOUT + Duration::from_secs(HANDSHAKE_TIMEOUT_SECS);
    for (i, s) in half_done.iter_mut().enumerate() {
        assert!(
            closed_within(s, wait),
            "half-done TLS handshake {i} not closed"
        );
    }
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(closed_within(s, wait), "silent connection {i} not closed");
    }
    drop((half_done, silent, tls_no_hello));
    scheduler.assert_serving(&client, "after the flood");

    drop(client);
    worker.stop();
}
