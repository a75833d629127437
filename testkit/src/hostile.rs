//! Hostile input that the scheduler's and the worker's tests both send to
//! a listening dask/1 endpoint (the scheduler's port, the worker's data
//! port): bad first frames, cut hellos, random bytes, a flood of
//! connections that never finish the handshake. Each gets the error and
//! close of the spec's table (spec/PROTOCOL.md, "Error codes").

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use dask_core::handshake;
use dask_core::messages::Role;
use dask_core::{Message, FRAME_BYTES_MAX};
use dask_net::HELLO_FRAME_BYTES_MAX;
use rmpv::Value;

use crate::process::open_files_limit;
use crate::wire::{connect_raw, exchange, frame, map, messages_frame, read_received, value_frame};
use crate::Rng;

/// Generous: tests must not fail on a slow machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The handshake timeout the endpoint under test runs with (seconds).
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 2;

/// Resident memory the process under test may reach: there to catch a
/// buffer sized by a length prefix or a leak per connection, not to
/// measure.
pub const RSS_BYTES_MAX: u64 = 500 * 1024 * 1024;

/// Connections of each kind in the flood (fewer when the open-files limit
/// is low: the test and the endpoint each hold one descriptor per
/// connection).
pub const FLOOD_CONNECTIONS: usize = 1000;

/// Open-files limit of the process under test in the descriptor-exhaustion
/// tests.
pub const SMALL_OPEN_FILES: u32 = 64;

/// Fatal codes a stream of random bytes may get.
pub const RANDOM_BYTES_CODES: [u32; 7] = [1001, 1002, 2001, 2002, 2003, 2004, 3002];

/// Reads what a hostile TLS connection gets until the peer ends it: no
/// `hello`, no value (a fatal error at most).
pub fn assert_refused_inside_tls(conn: &mut dask_net::BlockingConn, case: &str) {
    for _ in 0..16 {
        match conn.recv() {
            Ok(Message::ErrorReport(e)) => assert!(e.fatal, "{case}: {e:?}"),
            Ok(other) => panic!("{case}: got {}", other.op()),
            Err(_) => return,
        }
    }
    panic!("{case}: the peer did not close");
}

/// A well-formed `hello` of `role`.
pub fn hello(role: Role) -> Message {
    Message::from(handshake::offer(role, Some("hostile-test".into())))
}

/// A hello as a tree, to be broken field by field.
pub fn hello_tree(protocol: &str, version: Value, role: &str) -> Value {
    map(&[
        ("op", "hello".into()),
        ("protocol", protocol.into()),
        ("version", version),
        ("role", role.into()),
    ])
}

/// A `[major, minor]` version.
pub fn version(major: u64, minor: u64) -> Value {
    Value::Array(vec![major.into(), minor.into()])
}

/// A hello frame of `role` followed by `rest` (pipelined, as the spec
/// allows).
pub fn after_hello(role: Role, rest: &[u8]) -> Vec<u8> {
    let mut bytes = messages_frame(&[hello(role)]);
    bytes.extend_from_slice(rest);
    bytes
}

/// Bad first frames, each with the fatal code it gets, for an endpoint
/// that takes hellos of the `accepted` role and refuses the `refused`
/// ones; `request` is a request it serves after a hello.
pub fn bad_first_frames(
    accepted: Role,
    refused: &[Role],
    request: &Message,
) -> Vec<(String, Vec<u8>, u32)> {
    let role = accepted.as_str();
    let hello_frame = messages_frame(&[hello(accepted)]);
    let mut truncated_payload = hello_frame[4..].to_vec();
    truncated_payload.pop();
    let mut trailing = hello_frame[4..].to_vec();
    trailing.push(0xc0);
    let mut cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("an empty frame", vec![0, 0, 0, 0], 1001),
        (
            "a map, not a batch",
            value_frame(&map(&[("op", "hello".into())])),
            1001,
        ),
        (
            "a batch of integers",
            value_frame(&Value::Array(vec![1.into(), 2.into()])),
            1001,
        ),
        (
            "a truncated msgpack object",
            frame(&truncated_payload),
            1001,
        ),
        ("bytes after the batch", frame(&trailing), 1001),
        ("the reserved byte 0xc1", frame(&[0x91, 0xc1]), 1001),
        (
            "an op that is not UTF-8",
            frame(&[0x91, 0x81, 0xa2, b'o', b'p', 0xa2, 0xff, 0xfe]),
            1001,
        ),
        (
            "a field twice",
            frame(&[
                0x91, 0x82, 0xa2, b'o', b'p', 0xa5, b'c', b'l', b'o', b's', b'e', 0xa2, b'o', b'p',
                0xa5, b'c', b'l', b'o', b's', b'e',
            ]),
            1001,
        ),
        (
            "a message without op",
            value_frame(&Value::Array(vec![map(&[("x", 1.into())])])),
            2002,
        ),
        (
            "an op that is not a string",
            value_frame(&Value::Array(vec![map(&[("op", 5.into())])])),
            2003,
        ),
        (
            "an unknown op",
            value_frame(&Value::Array(vec![map(&[("op", "nope".into())])])),
            2001,
        ),
        (
            "a hello without version",
            value_frame(&Value::Array(vec![map(&[
                ("op", "hello".into()),
                ("protocol", "dask".into()),
                ("role", role.into()),
            ])])),
            2002,
        ),
        (
            "a hello whose version is a string",
            value_frame(&Value::Array(vec![hello_tree("dask", "1.0".into(), role)])),
            2003,
        ),
        (
            "a hello with an unknown role",
            value_frame(&Value::Array(vec![hello_tree(
                "dask",
                version(1, 0),
                "emperor",
            )])),
            2003,
        ),
        (
            "a request before hello",
            messages_frame(std::slice::from_ref(request)),
            3002,
        ),
        (
            "another protocol",
            value_frame(&Value::Array(vec![hello_tree("http", version(1, 0), role)])),
            3002,
        ),
        (
            "another major version",
            value_frame(&Value::Array(vec![hello_tree("dask", version(2, 0), role)])),
            3001,
        ),
        (
            "a hello frame over the limit before the hello",
            messages_frame(&[Message::from(handshake::offer(
                accepted,
                Some("n".repeat(HELLO_FRAME_BYTES_MAX)),
            ))]),
            1002,
        ),
        (
            "a length prefix one over the limit before the hello",
            ((HELLO_FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec(),
            1002,
        ),
        (
            "a length prefix of 4 GiB - 1, then bytes",
            [&[0xff, 0xff, 0xff, 0xff][..], &vec![0x90; 1 << 20]].concat(),
            1002,
        ),
        (
            "a length prefix one over the limit",
            ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec(),
            1002,
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            1002,
        ),
        (
            // Recognised: told it reached a plain address (3002), not
            // that its "frame" is too large.
            "a TLS client hello",
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            3002,
        ),
    ];
    let refused: Vec<(String, Vec<u8>, u32)> = refused
        .iter()
        .map(|r| {
            (
                format!("the {} role", r.as_str()),
                messages_frame(&[hello(*r)]),
                3002,
            )
        })
        .collect();
    cases
        .drain(..)
        .map(|(name, bytes, code)| (name.to_owned(), bytes, code))
        .chain(refused)
        .collect()
}

/// Sends each of [`bad_first_frames`] on its own connection, the write
/// side left open (the error must come without our EOF): each gets its
/// fatal error and the close. Then a good hello and an unknown op in one
/// frame: the whole frame is discarded (no hello reply), one error.
pub fn assert_bad_first_frames_refused(
    address: &str,
    accepted: Role,
    refused: &[Role],
    request: &Message,
) {
    for (case, bytes, code) in bad_first_frames(accepted, refused, request) {
        let mut stream = connect_raw(address);
        let _ = stream.write_all(&bytes);
        read_received(&mut stream, TIMEOUT).assert_fatal(code, &case);
    }
    let bytes = value_frame(&Value::Array(vec![
        hello_tree("dask", version(1, 0), accepted.as_str()),
        map(&[("op", "nope".into())]),
    ]));
    let outcome = exchange(address, &bytes, false, TIMEOUT);
    assert!(
        !outcome
            .messages
            .iter()
            .any(|m| matches!(m, Message::Hello(_))),
        "a frame with a bad message was partly acted on: {:?}",
        outcome.messages
    );
    outcome.assert_fatal(2001, "a good hello and an unknown op in one frame");
}

/// Every cut of a hello frame of `role`, then our EOF: closed without
/// acting on (or answering) the part it got. Then a legal length prefix
/// (the largest frame before a hello) and no payload: no allocation of its
/// size, just a close at our EOF.
pub fn assert_cut_hellos_closed_silently(address: &str, role: Role) {
    let bytes = messages_frame(&[hello(role)]);
    for cut in 1..bytes.len() {
        let outcome = exchange(address, &bytes[..cut], true, TIMEOUT);
        assert!(
            outcome.closed && outcome.messages.is_empty(),
            "cut at {cut}: {outcome:?}"
        );
    }
    let outcome = exchange(
        address,
        &(HELLO_FRAME_BYTES_MAX as u32).to_be_bytes(),
        true,
        TIMEOUT,
    );
    assert!(outcome.closed && outcome.messages.is_empty(), "{outcome:?}");
}

/// How random bytes are sent.
#[derive(Debug, Clone, Copy)]
pub enum Noise {
    /// As they are: mostly a length prefix over a limit.
    Raw,
    /// In a frame whose length prefix matches, so they reach the msgpack
    /// decoder instead of the limit check.
    Framed,
    /// Framed, after a good hello of this role (its reply may come back).
    FramedAfterHello(Role),
}

/// 200 streams of random bytes from `seed` (1 to 2048 bytes), each on its
/// own connection, stream `i` sent as `noise[i % noise.len()]`, then our
/// EOF: each gets at most one fatal error of [`RANDOM_BYTES_CODES`] (or,
/// an unfinished frame, none) and the close, nothing else but a hello
/// reply after a hello.
pub fn assert_random_bytes_refused(address: &str, seed: u64, noise: &[Noise]) {
    let mut rng = Rng(seed);
    for i in 0..200 {
        let len = 1 + (rng.next_u64() % 2048) as usize;
        let bytes = rng.bytes(len);
        let how = noise[i % noise.len()];
        let bytes = match how {
            Noise::Raw => bytes,
            Noise::Framed => frame(&bytes),
            Noise::FramedAfterHello(role) => after_hello(role, &frame(&bytes)),
        };
        let outcome = exchange(address, &bytes, true, TIMEOUT);
        assert!(outcome.closed, "stream {i}: not closed: {outcome:?}");
        let errors = outcome.error_codes();
        let others = outcome
            .messages
            .iter()
            .filter(|m| match m {
                Message::ErrorReport(_) => false,
                Message::Hello(_) => !matches!(how, Noise::FramedAfterHello(_)),
                _ => true,
            })
            .count();
        assert!(
            others == 0
                && errors.len() <= 1
                && errors
                    .iter()
                    .all(|(c, f)| *f && RANDOM_BYTES_CODES.contains(c)),
            "stream {i} ({bytes:02x?}): {:?}",
            outcome.messages
        );
    }
}

/// Connections that never finish the handshake: half of them silent, half
/// having sent half a hello frame.
pub struct UnfinishedHandshakes {
    streams: Vec<TcpStream>,
}

impl UnfinishedHandshakes {
    /// Opens [`FLOOD_CONNECTIONS`] of each kind to `address` (fewer when
    /// the open-files limit is low), the half hellos of `role`.
    pub fn open(address: &str, role: Role) -> UnfinishedHandshakes {
        let per_kind = open_files_limit()
            .map_or(FLOOD_CONNECTIONS, |limit| {
                FLOOD_CONNECTIONS.min(limit.saturating_sub(256) / 2)
            })
            .max(10);
        let half_hello = {
            let bytes = messages_frame(&[hello(role)]);
            bytes[..bytes.len() / 2].to_vec()
        };
        let mut streams = Vec::with_capacity(2 * per_kind);
        for i in 0..2 * per_kind {
            let mut stream = connect_raw(address);
            if i % 2 == 1 {
                stream.write_all(&half_hello).expect("half a hello");
            }
            streams.push(stream);
        }
        UnfinishedHandshakes { streams }
    }

    /// Each gets 3002 after the handshake timeout, and is closed.
    pub fn assert_timed_out(mut self) {
        for (i, stream) in self.streams.iter_mut().enumerate() {
            let outcome = read_received(stream, TIMEOUT);
            assert_eq!(
                outcome.error_codes(),
                [(3002, true)],
                "flood connection {i}: {:?}",
                outcome.messages
            );
            assert!(outcome.closed, "flood connection {i} not closed");
        }
    }
}
