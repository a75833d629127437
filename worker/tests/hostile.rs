//! Hostile input against a real `dask-worker`'s data port (issue 7, part
//! 4): random bytes, truncated frames, oversized length prefixes, frames
//! of the wrong shape, unknown ops, messages a peer may not send, deeply
//! nested values and a flood of connections that never finish the
//! handshake. Each gets the error and close of the spec's table
//! (spec/PROTOCOL.md "Error codes"), while a well-behaved client keeps
//! computing graphs on that worker and a well-behaved peer keeps fetching
//! from it, and the worker's resident memory stays under a generous bound.
//!
//! The last part feeds random scheduler messages, peer requests and
//! replies, executor completions and time straight into the pure
//! `dask_core::worker::WorkerState` (proptest; deterministic, no sockets).
//!
//! Everything runs on 127.0.0.1 with ports picked by the OS; counts and
//! waits are bounded; nothing asserts on timing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use dask_client::{Arg, Client};
use dask_core::frame::FrameDecoder;
use dask_core::messages::*;
use dask_core::msgpack::write;
use dask_core::{Key, Message};
use dask_net::HELLO_FRAME_BYTES_MAX;
use dask_scheduler::{SchedulerConfig, SchedulerHandle};
use dask_testkit::good_client::GoodClient;
use dask_testkit::home::DaskHome;
use dask_testkit::hostile::{
    after_hello, assert_bad_first_frames_refused, assert_cut_hellos_closed_silently,
    assert_random_bytes_refused, hello, Noise, UnfinishedHandshakes, HANDSHAKE_TIMEOUT_SECS,
    RSS_BYTES_MAX, SMALL_OPEN_FILES, TIMEOUT,
};
use dask_testkit::process::{with_open_files, Process};
use dask_testkit::stories::worker as story;
use dask_testkit::wire::{
    connect_raw, exchange, frame, map, messages_frame, read_received, value_frame,
};
use rmpv::Value;

// ---- processes ------------------------------------------------------------

/// A scheduler in this process and a `dask-worker` process registered
/// with it; the worker is killed (by its id) when dropped.
struct Cluster {
    scheduler: Option<SchedulerHandle>,
    worker: Process,
    /// The worker's data address.
    data_address: String,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::spawn(Command::new(env!("CARGO_BIN_EXE_dask-worker")))
    }

    /// The worker under `ulimit -n open_files`.
    fn start_with_open_files(open_files: u32) -> Cluster {
        Cluster::spawn(with_open_files(
            open_files,
            env!("CARGO_BIN_EXE_dask-worker"),
        ))
    }

    fn spawn(mut command: Command) -> Cluster {
        let scheduler = SchedulerHandle::start(SchedulerConfig {
            port: 0,
            validate: true,
            ..SchedulerConfig::default()
        })
        .expect("scheduler starts");
        // Open (no credentials on either side): the hostile frames reach
        // the parsers behind the hello (tests/security.rs in dask-cluster
        // has the strangers of an authenticating cluster).
        let worker = Process::spawn(
            "dask-worker",
            DaskHome::apply_none(&mut command)
                .arg(scheduler.address())
                .args(["--nthreads", "2", "--name", "target"])
                .args(["--handshake-timeout", &HANDSHAKE_TIMEOUT_SECS.to_string()]),
        );
        let line = worker.expect_line("", TIMEOUT);
        // "Worker NAME at tcp://HOST:PORT, connected to tcp://..."
        let data_address = line
            .split_once(" at ")
            .and_then(|(_, rest)| rest.split_once(','))
            .map(|(address, _)| address.to_string())
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
        Cluster {
            scheduler: Some(scheduler),
            worker,
            data_address,
        }
    }

    fn scheduler_address(&self) -> String {
        self.scheduler.as_ref().expect("running").address()
    }

    fn assert_alive(&mut self, during: &str) {
        self.worker.assert_alive(during);
    }

    fn assert_rss_bounded(&self, during: &str) {
        self.worker.assert_rss_below(RSS_BYTES_MAX, during);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.worker.kill();
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.stop();
        }
    }
}

// ---- bytes on the wire ------------------------------------------------------

fn get_data(request: u64, keys: &[&str]) -> Message {
    Message::GetData(GetData {
        request,
        keys: keys.iter().map(|k| Key::from(*k)).collect(),
    })
}

/// Reads until the first `data` message (after the hello reply).
fn next_data(stream: &mut TcpStream) -> Result<Data, String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(batch) = decoder.poll().map_err(|e| e.to_string())? {
            for m in batch {
                match m {
                    Message::Hello(h) if h.role == Role::Worker => {}
                    Message::Data(d) => return Ok(d),
                    other => return Err(format!("unexpected {other:?}")),
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no data in time".into());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Err("closed before data".into()),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Fetches `key` as a well-behaved peer and returns its value.
fn fetch(address: &str, key: &str) -> Value {
    let mut stream = connect_raw(address);
    stream
        .write_all(&after_hello(
            Role::Peer,
            &messages_frame(&[get_data(1, &[key])]),
        ))
        .expect("send");
    let d = next_data(&mut stream).unwrap_or_else(|e| panic!("fetch {key}: {e}"));
    d.data
        .get(&Key::from(key))
        .unwrap_or_else(|| panic!("{key} missing: {d:?}"))
        .to_value()
        .expect("a value")
}

// ---- scenarios ----------------------------------------------------------------

/// Bad first frames: each gets its fatal error and the connection closes.
fn bad_first_frames(address: &str) {
    assert_bad_first_frames_refused(
        address,
        Role::Peer,
        &[Role::Client, Role::Worker, Role::Scheduler],
        &get_data(1, &["x"]),
    );
}

/// Fatal errors after a good peer hello.
fn bad_frames_after_handshake(address: &str) {
    let deep_unknown_field = {
        // get-data with an unknown field nested far beyond 102 levels.
        let mut payload = vec![0x91, 0x83];
        write::value(&mut payload, &"op".into());
        write::value(&mut payload, &"get-data".into());
        write::value(&mut payload, &"request".into());
        write::value(&mut payload, &1.into());
        write::value(&mut payload, &"x-deep".into());
        payload.extend(std::iter::repeat_n(0x91, 1_000_000));
        payload.push(0xc0);
        // keys left out on purpose: depth is checked first or second,
        // either way a fatal decoding error.
        frame(&payload)
    };
    let cases: Vec<(&str, Vec<u8>, &[u32])> = vec![
        (
            "an unknown op",
            value_frame(&Value::Array(vec![map(&[("op", "nope".into())])])),
            &[2001],
        ),
        (
            "a second hello",
            messages_frame(&[hello(Role::Peer)]),
            &[2004],
        ),
        (
            "a scheduler's message",
            messages_frame(&[Message::FreeKeys(FreeKeys { keys: [].into() })]),
            &[2004],
        ),
        (
            "a client's message",
            messages_frame(&[Message::ClusterInfo(ClusterInfo { request: 1 })]),
            &[2004],
        ),
        (
            "a reply on an incoming connection",
            messages_frame(&[Message::Busy(Busy { request: 1 })]),
            &[2004],
        ),
        ("an oversized prefix", vec![0x7f, 0xff, 0xff, 0xff], &[1002]),
        (
            "a get-data with a field nested a million deep",
            deep_unknown_field,
            &[1001, 2002],
        ),
        (
            "a good request and an unknown op in one frame",
            value_frame(&Value::Array(vec![
                map(&[
                    ("op", "get-data".into()),
                    ("request", 1.into()),
                    ("keys", Value::Array(vec![])),
                ]),
                map(&[("op", "nope".into())]),
            ])),
            &[2001],
        ),
    ];
    for (case, bytes, codes) in cases {
        let mut stream = connect_raw(address);
        let _ = stream.write_all(&after_hello(Role::Peer, &bytes));
        let outcome = read_received(&mut stream, TIMEOUT);
        let errors = outcome.error_codes();
        assert!(
            matches!(errors[..], [(code, true)] if codes.contains(&code)),
            "{case}: expected one fatal error of {codes:?}, got {:?}",
            outcome.messages
        );
        assert!(
            !outcome
                .messages
                .iter()
                .any(|m| matches!(m, Message::Data(_))),
            "{case}: part of a bad frame was acted on: {:?}",
            outcome.messages
        );
        assert!(outcome.closed, "{case}: not closed");
    }
}

/// Every cut of a frame, then our EOF: closed without an answer.
fn truncated_frames(address: &str) {
    assert_cut_hellos_closed_silently(address, Role::Peer);
    // A hello, then a request cut short: nothing but (perhaps) the hello
    // reply comes back. (The worker drops a connection at the peer's EOF
    // without flushing what it queued for it, so the reply may be lost.)
    let request = messages_frame(&[get_data(1, &["x"])]);
    for cut in 1..request.len() {
        let outcome = exchange(
            address,
            &after_hello(Role::Peer, &request[..cut]),
            true,
            TIMEOUT,
        );
        assert!(outcome.closed, "request cut at {cut}: not closed");
        assert!(
            outcome
                .messages
                .iter()
                .all(|m| matches!(m, Message::Hello(_))),
            "request cut at {cut}: {:?}",
            outcome.messages
        );
    }
}

/// Random bytes: a fatal error, or (an unfinished frame) a close at EOF.
fn random_bytes(address: &str) {
    assert_random_bytes_refused(
        address,
        0x5eed_0000_0000_0011,
        &[
            Noise::Raw,
            Noise::Framed,
            Noise::FramedAfterHello(Role::Peer),
        ],
    );
}

/// Requests that are valid but odd: many keys, unknown keys, repeated
/// keys, a key of the maximum length. Each gets its `data`.
fn odd_requests(address: &str) {
    let long = "k".repeat(4096);
    let many: Vec<String> = (0..50_000).map(|i| format!("absent-{i}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Message, usize)> = vec![
        ("no keys", get_data(1, &[]), 0),
        ("unknown keys", get_data(2, &["a", "b"]), 2),
        ("a key repeated", get_data(3, &["a", "a", "a"]), 1),
        ("a key of 4096 bytes", get_data(4, &[&long]), 1),
        ("50,000 keys", get_data(5, &many_refs), 50_000),
    ];
    for (case, request, missing) in cases {
        let mut stream = connect_raw(address);
        stream
            .write_all(&after_hello(Role::Peer, &messages_frame(&[request])))
            .expect("send");
        match next_data(&mut stream) {
            Ok(d) => assert!(
                d.data.is_empty() && d.missing.len() == missing,
                "{case}: {} found, {} missing",
                d.data.len(),
                d.missing.len()
            ),
            Err(other) => panic!("{case}: {other}"),
        }
    }
}

// ---- the tests ------------------------------------------------------------

/// A named part of the hostile test, run against the data address.
type Scenario = (&'static str, fn(&str));

#[test]
fn hostile_frames_on_the_data_port_get_their_errors_while_the_worker_computes() {
    let mut cluster = Cluster::start();
    let address = cluster.data_address.clone();
    let good = GoodClient::start(&cluster.scheduler_address());
    let keeper = Client::connect_timeout(&cluster.scheduler_address(), TIMEOUT).expect("client");
    let kept = keeper.submit("range", vec![Arg::from(5)]);
    kept.result_timeout(TIMEOUT).expect("kept computes");
    let expected = fetch(&address, kept.key().as_str());

    let scenarios: [Scenario; 5] = [
        ("bad first frames", bad_first_frames),
        ("bad frames after the handshake", bad_frames_after_handshake),
        ("truncated frames", truncated_frames),
        ("random bytes", random_bytes),
        ("odd requests", odd_requests),
    ];
    // The hello limit is for frames before the hello: a get-data over it,
    // pipelined behind the hello in one write, is served (the bytes after
    // the hello's frame are read without waiting for more to arrive).
    let many: Vec<String> = (0..2 * HELLO_FRAME_BYTES_MAX / 16)
        .map(|i| format!("absent-key-{i:05}"))
        .collect();
    let mut keys: Vec<&str> = many.iter().map(|k| k.as_str()).collect();
    keys.push(kept.key().as_str());
    let request = messages_frame(&[get_data(1, &keys)]);
    assert!(request.len() > HELLO_FRAME_BYTES_MAX);
    let mut stream = connect_raw(&address);
    stream
        .write_all(&after_hello(Role::Peer, &request))
        .expect("send");
    let reply = next_data(&mut stream).expect("a big get-data after the hello is served");
    assert_eq!(
        reply.data.get(kept.key()).and_then(|v| v.to_value().ok()),
        Some(expected.clone())
    );
    for (name, scenario) in scenarios {
        scenario(&address);
        cluster.assert_alive(name);
        cluster.assert_rss_bounded(name);
        // A well-behaved peer is still served.
        assert_eq!(fetch(&address, kept.key().as_str()), expected, "{name}");
    }
    let rounds = good.finish();
    assert!(rounds >= 2, "{rounds} rounds");
    keeper.close();
    cluster.assert_alive("the end");
}

#[test]
fn a_peer_that_waited_while_descriptors_ran_out_is_accepted_once_some_are_free() {
    let mut cluster = Cluster::start_with_open_files(SMALL_OPEN_FILES);
    let address = cluster.data_address.clone();
    let keeper = Client::connect_timeout(&cluster.scheduler_address(), TIMEOUT).expect("client");
    let kept = keeper.submit("range", vec![Arg::from(5)]);
    kept.result_timeout(TIMEOUT).expect("kept computes");

    // Twice as many connections as the worker has descriptors: it accepts
    // what it can, the rest wait in its listen backlog.
    let flood: Vec<TcpStream> = (0..2 * SMALL_OPEN_FILES)
        .map(|_| connect_raw(&address))
        .collect();
    // Queued behind them (its TCP handshake is done by the kernel).
    let mut late = connect_raw(&address);
    late.write_all(&after_hello(
        Role::Peer,
        &messages_frame(&[get_data(1, &[kept.key().as_str()])]),
    ))
    .expect("send");
    cluster.assert_alive("the descriptor exhaustion");

    // Descriptors come free, but no new connection arrives to wake the
    // listener: the worker must retry accepting by itself.
    drop(flood);
    let reply = next_data(&mut late).expect("the late peer is served");
    assert!(reply.data.contains_key(kept.key()), "{reply:?}");
    keeper.close();
    cluster.assert_alive("the end");
}

#[test]
fn a_flood_of_unfinished_handshakes_on_the_data_port_is_timed_out() {
    let mut cluster = Cluster::start();
    let address = cluster.data_address.clone();
    let good = GoodClient::start(&cluster.scheduler_address());
    let keeper = Client::connect_timeout(&cluster.scheduler_address(), TIMEOUT).expect("client");
    let kept = keeper.submit("range", vec![Arg::from(3)]);
    kept.result_timeout(TIMEOUT).expect("kept computes");

    let flood = UnfinishedHandshakes::open(&address, Role::Peer);
    // While they hang, a well-behaved peer is served.
    assert_eq!(
        fetch(&address, kept.key().as_str()),
        Value::Array((0..3).map(Value::from).collect())
    );
    cluster.assert_alive("the flood");
    cluster.assert_rss_bounded("the flood");

    flood.assert_timed_out();
    let rounds = good.finish();
    assert!(rounds >= 2, "{rounds} rounds");
    keeper.close();
    cluster.assert_alive("the end of the flood");
    cluster.assert_rss_bounded("the flood");
}

// ---- the state machine, fed random input ------------------------------------

mod properties {
    use super::story::{run, Step, Story};
    use dask_testkit::stories::replay_crashers;
    use proptest::prelude::*;

    /// A random step; mostly scheduler messages and completions.
    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            40 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<u64>())
                .prop_map(|(op, a, b, n)| Step::Scheduler { op, a, b, n }),
            // Random bytes mostly end the story (a protocol error): rare.
            1 => proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|bytes| Step::SchedulerBytes { bytes }),
            8 => (any::<u8>(), any::<u8>()).prop_map(|(peer, keys)| Step::PeerRequest { peer, keys }),
            12 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<u64>())
                .prop_map(|(which, a, b, n)| Step::PeerReply { which, a, b, n }),
            4 => any::<u8>().prop_map(|which| Step::PeerFailed { which }),
            4 => any::<u8>().prop_map(|peer| Step::PeerDrained { peer }),
            4 => any::<u8>().prop_map(|peer| Step::PeerClosed { peer }),
            16 => (any::<u8>(), any::<bool>(), any::<u8>())
                .prop_map(|(which, ok, size)| Step::Done { which, ok, size }),
            8 => any::<u16>().prop_map(|millis| Step::Tick { millis }),
            2 => any::<u8>().prop_map(|fails| Step::Store { fails }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any sequence of inputs keeps the executor model and the state
        /// in step, and never panics.
        #[test]
        fn random_input_sequences_keep_the_worker_consistent(
            steps in proptest::collection::vec(step(), 1..150)
        ) {
            let mut story = Story::new();
            for (i, s) in steps.iter().enumerate() {
                story
                    .play(s)
                    .map_err(|e| TestCaseError::fail(format!("step {i} {s:?}: {e}")))?;
            }
        }

        /// The same with a small memory limit and a spill store that fails
        /// now and then: the accounting adds up after every step too.
        #[test]
        fn random_input_sequences_keep_a_spilling_worker_consistent(
            steps in proptest::collection::vec(step(), 1..150)
        ) {
            let mut story = Story::spilling();
            for (i, s) in steps.iter().enumerate() {
                story
                    .play(s)
                    .map_err(|e| TestCaseError::fail(format!("step {i} {s:?}: {e}")))?;
            }
        }

        /// The fuzz target's input format, fed random bytes (a stable
        /// stand-in for a fuzzing run).
        #[test]
        fn the_fuzz_story_survives_random_input(
            data in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            run(&data);
        }
    }

    /// The spilling story reaches what it is there for: values spilled
    /// and read back, failed writes and reads, pauses (seeded random
    /// stories, so the same every run).
    #[test]
    fn the_spilling_story_spills_fails_and_pauses() {
        let mut rng = dask_testkit::Rng(0x5eed_0000_0000_5b11);
        let mut total = dask_core::worker::MemoryUsage::default();
        for _ in 0..200 {
            let data = rng.bytes(1024);
            let mut data = &data[..];
            let mut story = Story::spilling();
            while let Some(step) = Step::parse(&mut data) {
                story.play(&step).expect("the story plays");
            }
            let m = story.memory();
            total.spill_writes += m.spill_writes;
            total.spill_reads += m.spill_reads;
            total.spill_write_failures += m.spill_write_failures;
            total.spill_read_failures += m.spill_read_failures;
            total.pauses += m.pauses;
        }
        assert!(
            total.spill_writes > 0
                && total.spill_reads > 0
                && total.spill_write_failures > 0
                && total.spill_read_failures > 0
                && total.pauses > 0,
            "{total:?}"
        );
        eprintln!("200 spilling stories: {total:?}");
    }

    /// Inputs the `worker_messages` fuzz target found (or that were made by
    /// hand), replayed: each must play without a panic.
    #[test]
    fn fuzz_crashers_replay_cleanly() {
        // None found yet, perhaps: then none is played.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashers");
        replay_crashers(&dir, run);
    }
}
