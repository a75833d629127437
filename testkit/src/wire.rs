//! Raw connections for tests that feed a dask/1 endpoint bad bytes (the
//! scheduler's and the worker's hostile-input tests), frames built by hand,
//! and the codes a frame decoder may answer with; and the `compute-task` a
//! test playing the scheduler sends a worker.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use dask_core::error::ErrorCode;
use dask_core::frame::{encode_frame, FrameDecoder};
use dask_core::msgpack::write;
use dask_core::Message;
use rmpv::Value;

/// Codes a frame decoder may return (spec/PROTOCOL.md, "Error codes"):
/// any other from a decoder is a bug. The rest are sent by the state
/// machines (handshake, scheduler, worker). [`FIRST_BYTES_CODE`] is one
/// more, before the first frame only.
pub const DECODER_CODES: [ErrorCode; 6] = [
    ErrorCode::MalformedFrame,
    ErrorCode::FrameTooLarge,
    ErrorCode::UnknownOp,
    ErrorCode::MissingField,
    ErrorCode::WrongType,
    // Values in parts that do not add up (dask/1.1 `value-part`).
    ErrorCode::UnexpectedMessage,
];

/// The code a decoder answers when a connection's first bytes are another
/// protocol's (Python Dask's framing, a TLS ClientHello: `core::foreign`,
/// spec/PROTOCOL.md "Transport"), and only before it decoded a frame.
pub const FIRST_BYTES_CODE: ErrorCode = ErrorCode::BadHandshake;

/// Connect timeout of [`connect_raw`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What came back on a connection.
#[derive(Debug)]
pub struct Received {
    /// Every message received.
    pub messages: Vec<Message>,
    /// Whether the peer closed (EOF or reset) before the wait ended.
    pub closed: bool,
}

impl Received {
    /// The (code, fatal) of every `error` received.
    pub fn error_codes(&self) -> Vec<(u32, bool)> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::ErrorReport(e) => Some((e.code, e.fatal)),
                _ => None,
            })
            .collect()
    }

    /// Exactly this fatal error (after a hello or registration reply, if
    /// any), then the close.
    pub fn assert_fatal(&self, code: u32, case: &str) {
        let rest: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| !matches!(m, Message::Hello(_) | Message::WorkerRegistered(_)))
            .collect();
        assert!(
            matches!(rest[..], [Message::ErrorReport(e)] if e.code == code && e.fatal),
            "{case}: expected one fatal error {code}, got {:?}",
            self.messages
        );
        assert!(self.closed, "{case}: the peer did not close");
    }
}

/// A plain TCP connection to `address`.
pub fn connect_raw(address: &str) -> TcpStream {
    let addr = dask_net::parse_address(address).expect("address");
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `bytes` on a new connection (write errors ignored: the peer may
/// close before reading everything), shuts our write side when
/// `shut_write`, then reads until the peer closes or `wait` passes.
pub fn exchange(address: &str, bytes: &[u8], shut_write: bool, wait: Duration) -> Received {
    let mut stream = connect_raw(address);
    let _ = stream.write_all(bytes);
    if shut_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_received(&mut stream, wait)
}

/// Reads frames until EOF (or a reset) or `wait` passes.
pub fn read_received(stream: &mut TcpStream, wait: Duration) -> Received {
    let deadline = Instant::now() + wait;
    let mut decoder = FrameDecoder::default();
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                decoder.push(&buf[..n]);
                while let Some(batch) = decoder.poll().expect("the peer sends valid frames") {
                    messages.extend(batch);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true, // reset: closed
        }
    };
    Received { messages, closed }
}

/// One frame around `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A frame holding exactly this msgpack value (which need not be a batch).
pub fn value_frame(v: &Value) -> Vec<u8> {
    let mut payload = Vec::new();
    write::value(&mut payload, v);
    frame(&payload)
}

/// A well-formed frame holding `messages`.
pub fn messages_frame(messages: &[Message]) -> Vec<u8> {
    encode_frame(messages).expect("encodes")
}

/// A map with string keys.
pub fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// What a frame decoder made of a stream (see [`decode_pieces`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The batches decoded before the first error.
    pub batches: Vec<Vec<Message>>,
    /// The code of the error that stopped the decoder, if any.
    pub error: Option<ErrorCode>,
    /// Whether bytes of an unfinished frame were left (no error).
    pub mid_frame: bool,
}

/// Feeds `pieces` one after the other into a frame decoder with `limit`,
/// as a connection reads them: into the decoder's own buffer for a large
/// frame while it offers one (`frame_room`), pushed otherwise; polling
/// after each step. Fails the test when an error's code is not one of
/// [`DECODER_CODES`] (or [`FIRST_BYTES_CODE`] before the first batch) or
/// when the decoder does not stay failed after it.
pub fn decode_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>, limit: usize) -> Decoded {
    let mut d = FrameDecoder::new(limit);
    let mut batches = Vec::new();
    for piece in pieces {
        let mut rest = piece;
        while !rest.is_empty() {
            match d.frame_room() {
                Some(room) => {
                    let n = rest.len().min(room.len());
                    room[..n].copy_from_slice(&rest[..n]);
                    d.filled(n);
                    rest = &rest[n..];
                }
                None => {
                    d.push(rest);
                    rest = &[];
                }
            }
            loop {
                match d.poll() {
                    Ok(Some(batch)) => batches.push(batch),
                    Ok(None) => break,
                    Err(e) => {
                        let first_bytes = batches.is_empty() && e.code == FIRST_BYTES_CODE;
                        assert!(
                            DECODER_CODES.contains(&e.code) || first_bytes,
                            "unexpected code {} after {} batches",
                            e.code,
                            batches.len()
                        );
                        assert_eq!(
                            d.poll().map_err(|e| e.code),
                            Err(e.code),
                            "a failed decoder stays failed"
                        );
                        return Decoded {
                            batches,
                            error: Some(e.code),
                            mid_frame: false,
                        };
                    }
                }
            }
        }
    }
    Decoded {
        batches,
        error: None,
        mid_frame: d.is_mid_frame(),
    }
}

/// The `compute-task` of `key`: `function` on `args`, its dependencies'
/// holders as (key, address) pairs (a key may come twice), no priority.
pub fn compute_task(
    key: &str,
    function: &str,
    args: Vec<Value>,
    who_has: &[(&str, &str)],
) -> Message {
    let mut holders: std::collections::BTreeMap<dask_core::Key, Vec<String>> =
        std::collections::BTreeMap::new();
    for (k, address) in who_has {
        holders
            .entry(dask_core::Key::from(*k))
            .or_default()
            .push(address.to_string());
    }
    Message::ComputeTask(dask_core::messages::ComputeTask {
        key: key.into(),
        function: function.into(),
        args: dask_core::RawValue::from_value(&Value::Array(args)),
        kwargs: None,
        who_has: holders,
        priority: None,
        resources: None,
    })
}
